/*
 * core_cidr_test.c -- network lists: parsing (with and without prefix, bad
 * syntax, prefix range), IPv4 and IPv6 matching at prefix edges, and
 * IPv4-mapped IPv6 peers against IPv4 entries (and the reverse).
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "core/cidr.h"

static struct sockaddr_storage ss;

/* A sockaddr for a literal IPv4 or IPv6 address (port 25, ignored). */
static const struct sockaddr *sa(const char *ip)
{
	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') == NULL) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(25);
		cr_assert_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1, "%s", ip);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(25);
		cr_assert_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1, "%s", ip);
	}
	return (const struct sockaddr *)&ss;
}

static bool match1(const char *entry, const char *ip)
{
	struct pt_cidr_list l = {0};
	bool m;

	cr_assert_eq(pt_cidr_list_add(&l, entry), PT_OK, "%s", entry);
	m = pt_cidr_list_match(&l, sa(ip));
	pt_cidr_list_free(&l);
	return m;
}

Test(cidr, parse_fields)
{
	struct pt_cidr c;

	cr_assert_eq(pt_cidr_parse("127.0.0.0/8", &c), PT_OK);
	cr_assert_eq(c.family, AF_INET);
	cr_assert_eq(c.prefix, 8);
	cr_assert_eq(c.addr[0], 127);
	cr_assert_eq(pt_cidr_parse("10.1.2.3", &c), PT_OK);
	cr_assert_eq(c.prefix, 32);
	cr_assert_eq(c.addr[3], 3);
	/* Host bits are cleared. */
	cr_assert_eq(pt_cidr_parse("10.1.2.3/12", &c), PT_OK);
	cr_assert_eq(c.addr[0], 10);
	cr_assert_eq(c.addr[1], 0);
	cr_assert_eq(c.addr[2], 0);
	cr_assert_eq(pt_cidr_parse("::1", &c), PT_OK);
	cr_assert_eq(c.family, AF_INET6);
	cr_assert_eq(c.prefix, 128);
	cr_assert_eq(c.addr[15], 1);
	cr_assert_eq(pt_cidr_parse("2001:db8::/32", &c), PT_OK);
	cr_assert_eq(c.prefix, 32);
	cr_assert_eq(pt_cidr_parse(" 0.0.0.0/0 ", &c), PT_OK);
	cr_assert_eq(c.prefix, 0);
	/* A mapped entry becomes the IPv4 network it names. */
	cr_assert_eq(pt_cidr_parse("::ffff:192.168.0.0/112", &c), PT_OK);
	cr_assert_eq(c.family, AF_INET);
	cr_assert_eq(c.prefix, 16);
	cr_assert_eq(c.addr[0], 192);
	cr_assert_eq(c.addr[1], 168);
}

Test(cidr, parse_rejects_bad_syntax_and_prefix)
{
	static const char *bad[] = {
	    "",		  " ",		"localhost",   "1.2.3",
	    "1.2.3.4.5",  "256.0.0.1",	"1.2.3.4/",    "1.2.3.4/33",
	    "1.2.3.4/-1", "1.2.3.4/+8", "1.2.3.4/8x",  "1.2.3.4/0008",
	    "::1/129",	  "::g",	"1.2.3.4/8/9", "1:2:3:4:5:6:7:8:9",
	};
	struct pt_cidr c;
	struct pt_cidr_list l = {0};

	for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++)
		cr_assert_eq(pt_cidr_parse(bad[i], &c), PT_ERROR, "\"%s\" accepted", bad[i]);
	cr_assert_eq(pt_cidr_list_add(&l, "nope"), PT_ERROR);
	cr_assert_eq(l.n, 0);
	cr_assert_eq(pt_cidr_parse("1.2.3.4/32", &c), PT_OK);
	cr_assert_eq(pt_cidr_parse("::/0", &c), PT_OK);
	cr_assert_eq(pt_cidr_parse("::1/128", &c), PT_OK);
}

Test(cidr, ipv4_prefix_edges)
{
	cr_assert(match1("127.0.0.0/8", "127.0.0.1"));
	cr_assert(match1("127.0.0.0/8", "127.255.255.255"));
	cr_assert_not(match1("127.0.0.0/8", "128.0.0.1"));
	cr_assert_not(match1("127.0.0.0/8", "126.255.255.255"));
	cr_assert(match1("10.1.2.3", "10.1.2.3"));
	cr_assert_not(match1("10.1.2.3", "10.1.2.4"));
	cr_assert(match1("192.168.4.0/23", "192.168.5.200"));
	cr_assert_not(match1("192.168.4.0/23", "192.168.6.1"));
	cr_assert_not(match1("192.168.4.0/23", "192.168.3.255"));
	cr_assert(match1("0.0.0.0/0", "203.0.113.9"));
	cr_assert(match1("172.16.0.0/12", "172.31.255.255"));
	cr_assert_not(match1("172.16.0.0/12", "172.32.0.0"));
}

Test(cidr, ipv6_prefix_edges)
{
	cr_assert(match1("::1", "::1"));
	cr_assert_not(match1("::1", "::2"));
	cr_assert(match1("2001:db8::/32", "2001:db8:ffff::1"));
	cr_assert_not(match1("2001:db8::/32", "2001:db9::1"));
	cr_assert(match1("fe80::/10", "febf::1"));
	cr_assert_not(match1("fe80::/10", "fec0::1"));
	cr_assert(match1("2001:db8:0:1::/63", "2001:db8:0:0:ffff::1"));
	cr_assert_not(match1("2001:db8:0:2::/63", "2001:db8:0:1::1"));
	cr_assert(match1("::/0", "2a00:1450::1"));
	/* Families never cross, except through the mapped form. */
	cr_assert_not(match1("::/0", "1.2.3.4"));
	cr_assert_not(match1("0.0.0.0/0", "2001:db8::1"));
}

Test(cidr, v4_mapped_peer_matches_v4_entry)
{
	cr_assert(match1("127.0.0.0/8", "::ffff:127.0.0.1"));
	cr_assert(match1("10.0.0.5", "::ffff:10.0.0.5"));
	cr_assert_not(match1("10.0.0.5", "::ffff:10.0.0.6"));
	cr_assert_not(match1("127.0.0.0/8", "::ffff:128.0.0.1"));
	/* Not mapped (the IPv4-compatible form ::a.b.c.d is deprecated and not mapped). */
	cr_assert_not(match1("127.0.0.0/8", "::127.0.0.1"));
	/* And a mapped entry matches plain IPv4 and mapped peers alike. */
	cr_assert(match1("::ffff:10.0.0.0/104", "10.200.1.1"));
	cr_assert(match1("::ffff:10.0.0.0/104", "::ffff:10.200.1.1"));
	cr_assert_not(match1("::ffff:10.0.0.0/104", "11.0.0.1"));
}

Test(cidr, list_of_several_entries)
{
	struct pt_cidr_list l = {0};
	static const char *entries[] = {"127.0.0.0/8", "::1", "192.0.2.0/24", "2001:db8::/48"};

	for (size_t i = 0; i < PT_ARRAY_LEN(entries); i++)
		cr_assert_eq(pt_cidr_list_add(&l, entries[i]), PT_OK);
	cr_assert_eq(l.n, 4);
	cr_assert(pt_cidr_list_match(&l, sa("127.1.2.3")));
	cr_assert(pt_cidr_list_match(&l, sa("::1")));
	cr_assert(pt_cidr_list_match(&l, sa("192.0.2.77")));
	cr_assert(pt_cidr_list_match(&l, sa("2001:db8:0:1::")));
	cr_assert(pt_cidr_list_match(&l, sa("::ffff:192.0.2.1")));
	cr_assert_not(pt_cidr_list_match(&l, sa("192.0.3.1")));
	cr_assert_not(pt_cidr_list_match(&l, sa("2001:db8:1::1")));
	cr_assert_not(pt_cidr_list_match(&l, sa("::2")));
	pt_cidr_list_free(&l);
	cr_assert_eq(l.n, 0);
	cr_assert_null(l.items);
	cr_assert_not(pt_cidr_list_match(&l, sa("127.0.0.1")), "empty list matches nothing");
}

Test(cidr, non_ip_sockaddr_never_matches)
{
	struct pt_cidr_list l = {0};
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char out[64];

	cr_assert_eq(pt_cidr_list_add(&l, "0.0.0.0/0"), PT_OK);
	cr_assert_eq(pt_cidr_list_add(&l, "::/0"), PT_OK);
	cr_assert_not(pt_cidr_list_match(&l, (struct sockaddr *)&sun));
	cr_assert_str_eq(pt_sockaddr_ip((struct sockaddr *)&sun, out), "unknown");
	pt_cidr_list_free(&l);
}

Test(cidr, sockaddr_ip_text)
{
	char out[64];

	cr_assert_str_eq(pt_sockaddr_ip(sa("127.0.0.1"), out), "127.0.0.1");
	cr_assert_str_eq(pt_sockaddr_ip(sa("2001:db8:0:0:0:0:0:1"), out), "2001:db8::1");
	cr_assert_str_eq(pt_sockaddr_ip(sa("::ffff:10.0.0.1"), out), "::ffff:10.0.0.1");
	cr_assert_eq(pt_sockaddr_ip(sa("::1"), out), out);
}
