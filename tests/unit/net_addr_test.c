/*
 * net_addr_test.c -- listen addresses (net/addr.c): the numeric HOST:PORT
 * forms accepted and the ones refused, port get/set for both families, and
 * real listening sockets on loopback: SO_REUSEPORT lets a second socket
 * bind the same port, a connection is accepted, and each failure step
 * words its error as the contract says.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/addr.h"

static void parse_ok(const char *text, sa_family_t family, unsigned port)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;

	cr_assert_eq(net_addr_parse(text, &ss, &len), PT_OK, "%s", text);
	cr_assert_eq(ss.ss_family, family, "%s", text);
	cr_assert_eq(len,
		     family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6),
		     "%s", text);
	cr_assert_eq(net_addr_port(&ss), port, "%s: port %u", text, net_addr_port(&ss));
}

Test(addr, parses_ipv4)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char ip[INET_ADDRSTRLEN];

	parse_ok("127.0.0.1:2525", AF_INET, 2525);
	parse_ok("0.0.0.0:25", AF_INET, 25);
	parse_ok("127.0.0.1:0", AF_INET, 0);
	parse_ok("127.0.0.1:65535", AF_INET, 65535);
	parse_ok("[127.0.0.1]:25", AF_INET, 25);
	cr_assert_eq(net_addr_parse("127.0.0.2:587", &ss, &len), PT_OK);
	inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
	cr_assert_str_eq(ip, "127.0.0.2");
	cr_assert_eq(((struct sockaddr_in *)&ss)->sin_port, htons(587));
}

Test(addr, parses_ipv6_in_brackets)
{
	struct sockaddr_storage ss;
	socklen_t len;

	parse_ok("[::1]:25", AF_INET6, 25);
	parse_ok("[::]:2525", AF_INET6, 2525);
	/* Unbracketed, the last ':' is the separator: "::1:25" is [::1]:25. */
	parse_ok("::1:25", AF_INET6, 25);
	cr_assert_eq(net_addr_parse("[::1]:26", &ss, &len), PT_OK);
	cr_assert(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr));
	cr_assert_eq(((struct sockaddr_in6 *)&ss)->sin6_port, htons(26));
}

Test(addr, refuses_what_is_not_numeric_host_and_port)
{
	static const char *bad[] = {
	    "",
	    "127.0.0.1",
	    "127.0.0.1:",
	    ":25",
	    "127.0.0.1:-1",
	    "127.0.0.1:65536",
	    "127.0.0.1:2x",
	    "localhost:25",
	    "[::1]25",
	    "[::1]",
	    "[::1:25",
	    "[]:25",
	    "1.2.3:25",
	    "[::1]:99999",
	};
	struct sockaddr_storage ss;
	socklen_t len;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(net_addr_parse(bad[i], &ss, &len), PT_ERROR, "'%s' accepted", bad[i]);
}

Test(addr, long_host_is_refused_and_longest_ipv6_fits)
{
	char text[300];
	struct sockaddr_storage ss;
	socklen_t len;

	/* Hosts of 127 and 250 bytes: refused (the second before any copy; ASan checks). */
	memset(text, '1', 127);
	strcpy(text + 127, ":25");
	cr_assert_eq(net_addr_parse(text, &ss, &len), PT_ERROR);
	memset(text, '1', 250);
	strcpy(text + 250, ":25");
	cr_assert_eq(net_addr_parse(text, &ss, &len), PT_ERROR);
	text[0] = '[';
	strcpy(text + 250, "]:25");
	cr_assert_eq(net_addr_parse(text, &ss, &len), PT_ERROR);
	/* The longest IPv6 text form (39 bytes) fits. */
	cr_assert_eq(net_addr_parse("[0000:0000:0000:0000:0000:0000:0000:0001]:25", &ss, &len),
		     PT_OK);
	cr_assert(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr));
	cr_assert_eq(net_addr_port(&ss), 25);
}

Test(addr, set_port_then_port_round_trips)
{
	struct sockaddr_storage ss;
	socklen_t len;

	cr_assert_eq(net_addr_parse("127.0.0.1:1", &ss, &len), PT_OK);
	net_addr_set_port(&ss, 40000);
	cr_assert_eq(net_addr_port(&ss), 40000);
	cr_assert_eq(((struct sockaddr_in *)&ss)->sin_port, htons(40000));
	cr_assert_eq(net_addr_parse("[::1]:1", &ss, &len), PT_OK);
	net_addr_set_port(&ss, 65535);
	cr_assert_eq(net_addr_port(&ss), 65535);
	cr_assert_eq(((struct sockaddr_in6 *)&ss)->sin6_port, htons(65535));
}

static unsigned bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	cr_assert_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	return net_addr_port(&ss);
}

static void listen_twice_and_connect(const char *text)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256] = "";
	int fd1, fd2, cfd, afd, one = 0;
	socklen_t olen = sizeof(one);
	unsigned port;

	cr_assert_eq(net_addr_parse(text, &ss, &len), PT_OK);
	fd1 = net_addr_listen(&ss, len, 16, err, sizeof(err));
	cr_assert_geq(fd1, 0, "%s: %s", text, err);
	port = bound_port(fd1);
	cr_assert_neq(port, 0);
	cr_assert_eq(getsockopt(fd1, SOL_SOCKET, SO_REUSEPORT, &one, &olen), 0);
	cr_assert_eq(one, 1);
	/* SO_REUSEPORT: a second socket binds the very same port. */
	net_addr_set_port(&ss, port);
	fd2 = net_addr_listen(&ss, len, 16, err, sizeof(err));
	cr_assert_geq(fd2, 0, "%s second bind: %s", text, err);
	cr_assert_eq(bound_port(fd2), port);
	close(fd2);
	/* It listens: a connection completes and is accepted. */
	cfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(cfd, 0);
	cr_assert_eq(connect(cfd, (struct sockaddr *)&ss, len), 0, "connect: %s", strerror(errno));
	afd = accept(fd1, NULL, NULL);
	cr_assert_geq(afd, 0, "accept: %s", strerror(errno));
	close(afd);
	close(cfd);
	close(fd1);
}

Test(addr, listens_with_reuseport_on_ipv4_loopback)
{
	listen_twice_and_connect("127.0.0.1:0");
}

Test(addr, listens_with_reuseport_on_ipv6_loopback)
{
	listen_twice_and_connect("[::1]:0");
}

Test(addr, bind_failure_gives_the_reason)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256], want[256];

	/* 192.0.2.1 (TEST-NET-1) is no address of this host: EADDRNOTAVAIL at bind. */
	cr_assert_eq(net_addr_parse("192.0.2.1:0", &ss, &len), PT_OK);
	cr_assert_eq(net_addr_listen(&ss, len, 16, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s", strerror(EADDRNOTAVAIL));
	cr_assert_str_eq(err, want);
}

Test(addr, socket_failure_is_named)
{
	struct sockaddr_storage ss;
	char err[256], want[256];

	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNSPEC; /* socket(2) refuses it: EAFNOSUPPORT */
	cr_assert_eq(net_addr_listen(&ss, sizeof(ss), 16, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "socket: %s", strerror(EAFNOSUPPORT));
	cr_assert_str_eq(err, want);
}
