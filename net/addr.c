/*
 * addr.c -- listen addresses: "HOST:PORT" text to a sockaddr, and the
 * listening socket on it.
 *
 * The parser takes the last ':' as the separator for unbracketed forms, so
 * "::1:25" reads as [::1]:25; brackets are the unambiguous way to write
 * IPv6 ("[::]:25", as KumoMTA's listen).  The port goes through strtol, as
 * the callers always parsed it (so a leading blank or '+' passes).  The
 * host part is copied into a bounded buffer only to NUL-terminate it for
 * inet_pton.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/addr.h"

/* Split "host:port" / "[host]:port": host copied into buf, *port_s points into text. */
static int addr_split(const char *text, char *buf, size_t buf_len, const char **port_s)
{
	const char *host = text, *end;

	if (text[0] == '[') {
		end = strchr(text, ']');
		if (!end || end[1] != ':')
			return PT_ERROR;
		host = text + 1;
		*port_s = end + 2;
	} else {
		end = strrchr(text, ':');
		if (!end)
			return PT_ERROR;
		*port_s = end + 1;
	}
	if ((size_t)(end - host) >= buf_len)
		return PT_ERROR;
	memcpy(buf, host, (size_t)(end - host));
	buf[end - host] = '\0';
	return PT_OK;
}

int net_addr_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	const char *port_s;
	char host[128];
	char *end;
	long port;

	memset(ss, 0, sizeof(*ss));
	if (addr_split(text, host, sizeof(host), &port_s) != PT_OK)
		return PT_ERROR;
	port = strtol(port_s, &end, 10);
	if (*port_s == '\0' || *end != '\0' || port < 0 || port > 65535)
		return PT_ERROR;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		*len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		*len = sizeof(*sin6);
	} else {
		return PT_ERROR;
	}
	net_addr_set_port(ss, (unsigned)port);
	return PT_OK;
}

unsigned net_addr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

void net_addr_set_port(struct sockaddr_storage *ss, unsigned port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

int net_addr_listen(const struct sockaddr_storage *ss, socklen_t len, int backlog, char *err,
		    size_t err_len)
{
	int fd, one = 1;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, err_len, "socket: %s", strerror(errno));
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    bind(fd, (const struct sockaddr *)ss, len) || listen(fd, backlog)) {
		snprintf(err, err_len, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}
