/*
 * dns_wire_fuzz.c -- libFuzzer entry point for the resolver's DNS response
 * walker (net/dns_wire.c) and the name checks its MX names go through next
 * (dns_name_normalize, dns_site_factor in net/dns_answer.c).
 *
 * The whole input is one DNS message as c-ares hands it to the query
 * callback (RFC 1035 4.1), so the seeds in tests/fuzz/corpus/dns_wire are
 * plain responses.  No byte selects the query type: every input goes
 * through every walker, as net/dns_job.c calls them,
 *
 *   dns_wire_mx(msg, len, mx, DNS_WIRE_MX_MAX, ...)   an MX reply, then each
 *       exchange through dns_name_normalize and the kept ones through
 *       dns_site_factor (dns_mx_keep, dns_mx_finish)
 *   dns_wire_addrs(msg, len, AF_INET / AF_INET6, addrs, DNS_MAX_ADDRS, ...)
 *   dns_wire_negative_ttl(msg, len, ...)              a negative reply
 *
 * and once more with max = 1 (and 0 for MX), which must agree with the
 * full walk.
 *
 * Besides the sanitizers (ASan also reports a leaked MX name), the run
 * aborts when a promise is broken:
 *   - every walker answers PT_OK or PT_ERROR (negative_ttl: or PT_DECLINED);
 *   - n_out <= max, and 0 after PT_ERROR;
 *   - a TTL is never above INT32_MAX (RFC 2181 8); min_ttl is UINT32_MAX
 *     only when no record counted, so never with n_out > 0;
 *   - an address has the asked family, its sa_len, and text that reads back
 *     (inet_pton) to the same bytes;
 *   - an MX name is at most 4 * 255 characters (255 octets on the wire,
 *     each written as at most "\DDD");
 *   - a normalized name is 1..DNS_NAME_MAX octets of [a-z0-9_.-];
 *   - with max = 1 the walk stops reading MX names after the first, so a
 *     full walk that succeeds implies a short one that succeeds with the
 *     same min_ttl and the same first record; for addresses every record
 *     is checked either way, so both walks agree on the status too.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/dns_int.h"

#define DNS_WIRE_MX_MAX 256   /* as in net/dns_job.c */
#define FUZZ_MAX_LEN	65535 /* a DNS message over TCP (RFC 1035 4.2.2) */

static void fuzz_fail(const char *what)
{
	fprintf(stderr, "dns_wire_fuzz: %s\n", what);
	abort();
}

static void fuzz_check_ttl(uint32_t ttl, size_t n)
{
	if (ttl != UINT32_MAX && ttl > INT32_MAX)
		fuzz_fail("TTL above INT32_MAX");
	if (n > 0 && ttl == UINT32_MAX)
		fuzz_fail("records without a TTL");
}

static void fuzz_free_mx(struct dns_wire_mx *mx, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ares_free_string(mx[i].name);
}

/* A normalized name: 1..DNS_NAME_MAX octets, lowercase LDH, underscore, dot. */
static void fuzz_check_normal(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > DNS_NAME_MAX)
		fuzz_fail("normalized name of a bad length");
	for (size_t i = 0; i < len; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789-_.", name[i]))
			fuzz_fail("normalized name with a bad octet");
}

/* What dns_mx_keep and the site name do with the exchanges. */
static void fuzz_mx_names(const struct dns_wire_mx *mx, size_t n)
{
	static char normal[DNS_WIRE_MX_MAX][DNS_NAME_MAX + 1];
	const char *names[DNS_MAX_MX_HOSTS];
	size_t kept = 0;
	char *site;

	for (size_t i = 0; i < n; i++)
		if (mx[i].name[0] == '\0') /* RFC 7505 3: a null MX, no names */
			return;
	for (size_t i = 0; i < n; i++) {
		if (dns_name_normalize(mx[i].name, normal[i]) != PT_OK)
			continue;
		fuzz_check_normal(normal[i]);
		if (kept < DNS_MAX_MX_HOSTS)
			names[kept++] = normal[i];
	}
	if (kept == 0)
		return;
	site = dns_site_factor(names, kept);
	if (site == NULL)
		return;
	if (strlen(site) == 0)
		fuzz_fail("empty site name");
	free(site);
}

static void fuzz_mx(const unsigned char *msg, int len)
{
	static struct dns_wire_mx mx[DNS_WIRE_MX_MAX];
	struct dns_wire_mx few[1];
	size_t n = 99, n_few = 99;
	uint32_t ttl, ttl_few;
	int rc, rc_few;

	rc = dns_wire_mx(msg, len, mx, DNS_WIRE_MX_MAX, &n, &ttl);
	if (rc != PT_OK && rc != PT_ERROR)
		fuzz_fail("dns_wire_mx: bad status");
	if (n > (rc == PT_OK ? DNS_WIRE_MX_MAX : 0))
		fuzz_fail("dns_wire_mx: bad count");
	if (rc == PT_OK)
		fuzz_check_ttl(ttl, n);
	/* A name is at most 255 octets on the wire (RFC 1035 3.1), and ares
	 * writes an octet as at most four characters ("\DDD"). */
	for (size_t i = 0; i < n; i++)
		if (strlen(mx[i].name) > 4 * 255)
			fuzz_fail("dns_wire_mx: name longer than RFC 1035 allows");
	fuzz_mx_names(mx, n);

	for (size_t max = 0; max <= 1; max++) {
		rc_few = dns_wire_mx(msg, len, few, max, &n_few, &ttl_few);
		if (rc_few != PT_OK && rc_few != PT_ERROR)
			fuzz_fail("dns_wire_mx (short): bad status");
		if (n_few > (rc_few == PT_OK ? max : 0))
			fuzz_fail("dns_wire_mx (short): bad count");
		if (rc == PT_OK) {
			if (rc_few != PT_OK || n_few != PT_MIN(n, max) || ttl_few != ttl)
				fuzz_fail("dns_wire_mx (short): disagrees with the full walk");
			if (n_few == 1 && (few[0].preference != mx[0].preference ||
					   strcmp(few[0].name, mx[0].name) != 0))
				fuzz_fail("dns_wire_mx (short): another first record");
		}
		fuzz_free_mx(few, n_few);
	}
	fuzz_free_mx(mx, n);
}

static void fuzz_check_addr(const struct dns_addr *a, int family)
{
	unsigned char parsed[16];

	if (a->sa.ss_family != family)
		fuzz_fail("dns_wire_addrs: wrong family");
	if (memchr(a->text, '\0', sizeof(a->text)) == NULL)
		fuzz_fail("dns_wire_addrs: text not terminated");
	if (inet_pton(family, a->text, parsed) != 1)
		fuzz_fail("dns_wire_addrs: text does not parse");
	if (family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->sa;
		if (a->sa_len != sizeof(*sin) || memcmp(parsed, &sin->sin_addr, 4) != 0 ||
		    sin->sin_port != 0)
			fuzz_fail("dns_wire_addrs: IPv4 address disagrees with its text");
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->sa;
		if (a->sa_len != sizeof(*sin6) || memcmp(parsed, &sin6->sin6_addr, 16) != 0 ||
		    sin6->sin6_port != 0)
			fuzz_fail("dns_wire_addrs: IPv6 address disagrees with its text");
	}
}

static void fuzz_addrs(const unsigned char *msg, int len, int family)
{
	struct dns_addr addrs[DNS_MAX_ADDRS], one[1];
	size_t n = 99, n_one = 99;
	uint32_t ttl, ttl_one;
	int rc, rc_one;

	rc = dns_wire_addrs(msg, len, family, addrs, DNS_MAX_ADDRS, &n, &ttl);
	if (rc != PT_OK && rc != PT_ERROR)
		fuzz_fail("dns_wire_addrs: bad status");
	if (n > (rc == PT_OK ? DNS_MAX_ADDRS : 0))
		fuzz_fail("dns_wire_addrs: bad count");
	if (rc == PT_OK)
		fuzz_check_ttl(ttl, n);
	for (size_t i = 0; i < n; i++)
		fuzz_check_addr(&addrs[i], family);

	rc_one = dns_wire_addrs(msg, len, family, one, 1, &n_one, &ttl_one);
	if (rc_one != rc || n_one != PT_MIN(n, 1))
		fuzz_fail("dns_wire_addrs (short): disagrees with the full walk");
	if (rc == PT_OK && ttl_one != ttl)
		fuzz_fail("dns_wire_addrs (short): another TTL");
	if (n_one == 1 && memcmp(&one[0], &addrs[0], sizeof(one[0])) != 0)
		fuzz_fail("dns_wire_addrs (short): another first address");
}

static void fuzz_negative(const unsigned char *msg, int len)
{
	uint32_t ttl = UINT32_MAX;
	int rc = dns_wire_negative_ttl(msg, len, &ttl);

	if (rc != PT_OK && rc != PT_DECLINED && rc != PT_ERROR)
		fuzz_fail("dns_wire_negative_ttl: bad status");
	if (rc == PT_OK && ttl > INT32_MAX)
		fuzz_fail("dns_wire_negative_ttl: TTL above INT32_MAX");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int len;

	if (size > FUZZ_MAX_LEN)
		return 0;
	len = (int)size;
	fuzz_mx(data, len);
	fuzz_addrs(data, len, AF_INET);
	fuzz_addrs(data, len, AF_INET6);
	fuzz_negative(data, len);
	return 0;
}
