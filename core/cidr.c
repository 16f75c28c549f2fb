/*
 * cidr.c -- IPv4/IPv6 network lists for relay_hosts and trusted_hosts.
 *
 * An entry is an address with an optional "/prefix" (all bits when absent).
 * Host bits below the prefix are cleared at parse time, so "10.1.2.3/8" is
 * the network 10.0.0.0/8 and matching is a masked compare.
 *
 * IPv4 and IPv6 meet in one place: an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, RFC 4291 2.5.5.2) is what a dual-stack listener reports
 * for an IPv4 peer, so both a mapped peer and a mapped entry (with a prefix
 * of at least 96) are turned into plain IPv4 before comparing.  Then
 * "127.0.0.0/8" matches a peer seen as ::ffff:127.0.0.1, and
 * "::ffff:10.0.0.0/104" matches a peer seen as 10.1.1.1.
 *
 * Lists are short (a few entries of configuration) and matched once per
 * connection, so the match is a linear scan.
 */
#include "core/cidr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t cidr_v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Clear the bits of addr below `prefix`. */
static void cidr_mask(uint8_t *addr, size_t addr_len, unsigned prefix)
{
	for (size_t i = 0; i < addr_len; i++) {
		unsigned bits = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * i : 0;
		addr[i] &= (uint8_t)(0xff00u >> bits);
	}
}

/* Parse "/N" digits in s (NUL-terminated) into *prefix, at most max.  0 or -1. */
static int cidr_parse_prefix(const char *s, unsigned max, unsigned *prefix)
{
	unsigned v = 0;

	if (*s == '\0' || strlen(s) > 3)
		return -1;
	for (; *s != '\0'; s++) {
		if (!isdigit((unsigned char)*s))
			return -1;
		v = v * 10 + (unsigned)(*s - '0');
	}
	if (v > max)
		return -1;
	*prefix = v;
	return 0;
}

/* Rewrite a v4-mapped v6 network (prefix >= 96) as the IPv4 network it is. */
static void cidr_unmap(struct pt_cidr *c)
{
	if (c->family != AF_INET6 || c->prefix < 96 ||
	    memcmp(c->addr, cidr_v4_mapped, sizeof(cidr_v4_mapped)) != 0)
		return;
	c->family = AF_INET;
	c->prefix -= 96;
	memmove(c->addr, c->addr + 12, 4);
	memset(c->addr + 4, 0, 12);
}

/*
 * Parse "a.b.c.d[/n]" or "x:y::z[/n]" (surrounding spaces ignored) into out.
 * PT_OK, or PT_ERROR for bad syntax or a prefix out of range.
 */
int pt_cidr_parse(const char *s, struct pt_cidr *out)
{
	char text[INET6_ADDRSTRLEN + 8];
	char *slash, *end;
	unsigned prefix, max;
	size_t len;

	while (isspace((unsigned char)*s))
		s++;
	len = strlen(s);
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	if (len == 0 || len >= sizeof(text))
		return PT_ERROR;
	memcpy(text, s, len);
	text[len] = '\0';
	slash = strchr(text, '/');
	if (slash != NULL)
		*slash = '\0';
	end = text;
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, end, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, end, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return PT_ERROR;
	}
	prefix = max;
	if (slash != NULL && cidr_parse_prefix(slash + 1, max, &prefix) != 0)
		return PT_ERROR;
	out->prefix = (uint8_t)prefix;
	cidr_mask(out->addr, max / 8, prefix);
	cidr_unmap(out);
	return PT_OK;
}

/* Parse s and append it to l.  PT_OK, PT_ERROR (syntax; l unchanged) or PT_NOMEM. */
int pt_cidr_list_add(struct pt_cidr_list *l, const char *s)
{
	struct pt_cidr c, *items;

	if (pt_cidr_parse(s, &c) != PT_OK)
		return PT_ERROR;
	items = reallocarray(l->items, l->n + 1, sizeof(*items));
	if (items == NULL)
		return PT_NOMEM;
	items[l->n++] = c;
	l->items = items;
	return PT_OK;
}

/* The peer address of sa as a full-length pt_cidr (v4-mapped made IPv4); false if not IP. */
static bool cidr_from_sockaddr(const struct sockaddr *sa, struct pt_cidr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		out->family = AF_INET;
		out->prefix = 32;
		memcpy(out->addr, &sin->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		out->family = AF_INET6;
		out->prefix = 128;
		memcpy(out->addr, &sin6->sin6_addr, 16);
		cidr_unmap(out);
	} else {
		return false;
	}
	return true;
}

/* True when the first `prefix` bits of a and b are equal. */
static bool cidr_prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	size_t whole = prefix / 8;
	unsigned rest = prefix % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[whole] ^ b[whole]) & (uint8_t)(0xff00u >> rest)) == 0;
}

/* True when the peer address in sa lies in any network of l (false for non-IP). */
bool pt_cidr_list_match(const struct pt_cidr_list *l, const struct sockaddr *sa)
{
	struct pt_cidr peer;

	if (sa == NULL || !cidr_from_sockaddr(sa, &peer))
		return false;
	for (size_t i = 0; i < l->n; i++) {
		const struct pt_cidr *c = &l->items[i];
		if (c->family == peer.family && cidr_prefix_equal(c->addr, peer.addr, c->prefix))
			return true;
	}
	return false;
}

/* Free the entries; the list is empty and reusable afterwards. */
void pt_cidr_list_free(struct pt_cidr_list *l)
{
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

/*
 * The address of sa without port ("a.b.c.d", "x:y::z", as inet_ntop writes
 * it) in out[64], which is returned; "unknown" for a non-IP family.
 */
const char *pt_sockaddr_ip(const struct sockaddr *sa, char out[64])
{
	const void *addr = NULL;

	if (sa != NULL && sa->sa_family == AF_INET)
		addr = &((const struct sockaddr_in *)sa)->sin_addr;
	else if (sa != NULL && sa->sa_family == AF_INET6)
		addr = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (addr == NULL || inet_ntop(sa->sa_family, addr, out, 64) == NULL)
		snprintf(out, 64, "unknown");
	return out;
}
