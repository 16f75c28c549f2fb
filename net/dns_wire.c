/*
 * dns_wire.c -- reading the records we need out of a DNS response.
 *
 * c-ares 1.18 parses MX and A/AAAA replies, but its MX parser drops the
 * TTLs the cache needs, and nothing in it reads the authority section's SOA
 * for negative caching (RFC 2308 5).  So the resolver walks the message
 * itself; names inside records are expanded by ares_expand_name, which
 * follows compression pointers with loop and bounds checks (but not the
 * 255-octet limit: dns_name_fits checks that first).
 *
 * The message (RFC 1035 4.1):
 *
 *   header     12 octets: id, flags, QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT
 *   question   QDCOUNT x (name, type 16, class 16)
 *   answer     ANCOUNT x RR
 *   authority  NSCOUNT x RR
 *   additional ARCOUNT x RR (not read)
 *
 *   RR         name, type 16, class 16, TTL 32, RDLENGTH 16, RDATA
 *
 * A name is a run of labels (length octet 1..63, then the octets) ending in
 * a zero octet or in a two-octet compression pointer (top bits 11).  Only
 * class IN records count.  Walking never reads past len: a malformed
 * message is PT_ERROR, which the resolver treats as a temporary failure.
 */
#include "net/dns_int.h"

#include <ares.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define DNS_HEADER_LEN	  12
#define DNS_NAME_WIRE_MAX 255 /* RFC 1035 3.1: label and length octets */

enum dns_section { DNS_SECTION_ANSWER, DNS_SECTION_AUTHORITY };

struct dns_rr {
	uint16_t type, rclass;
	uint32_t ttl;
	const unsigned char *rdata;
	size_t rdlength;
};

struct dns_walk {
	const unsigned char *msg;
	size_t len, off;
	unsigned n_left; /* records left in the section being walked */
};

static uint16_t dns_get16(const unsigned char *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t dns_get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Step over a name at w->off (its labels, or up to a compression pointer). */
static int dns_skip_name(struct dns_walk *w)
{
	for (;;) {
		if (w->off >= w->len)
			return PT_ERROR;
		unsigned char c = w->msg[w->off];
		if ((c & 0xc0) == 0xc0) {
			if (w->off + 2 > w->len)
				return PT_ERROR;
			w->off += 2;
			return PT_OK;
		}
		if (c & 0xc0) /* 01 and 10 prefixes are reserved (RFC 6891 removed EDNS0 labels) */
			return PT_ERROR;
		w->off += 1 + (size_t)c;
		if (c == 0)
			return w->off <= w->len ? PT_OK : PT_ERROR;
	}
}

/*
 * Position w at the first record of a section: skip the question and, for
 * the authority section, the answers.
 */
static int dns_walk_start(struct dns_walk *w, const unsigned char *msg, int len,
			  enum dns_section section)
{
	unsigned qd, an, ns;

	if (!msg || len < DNS_HEADER_LEN)
		return PT_ERROR;
	w->msg = msg;
	w->len = (size_t)len;
	w->off = DNS_HEADER_LEN;
	qd = dns_get16(msg + 4);
	an = dns_get16(msg + 6);
	ns = dns_get16(msg + 8);
	for (unsigned i = 0; i < qd; i++) {
		if (dns_skip_name(w) != PT_OK || w->off + 4 > w->len)
			return PT_ERROR;
		w->off += 4;
	}
	w->n_left = an;
	if (section == DNS_SECTION_ANSWER)
		return PT_OK;
	for (unsigned i = 0; i < an; i++) {
		if (dns_skip_name(w) != PT_OK || w->off + 10 > w->len)
			return PT_ERROR;
		w->off += 10 + dns_get16(w->msg + w->off + 8);
		if (w->off > w->len)
			return PT_ERROR;
	}
	w->n_left = ns;
	return PT_OK;
}

/* The next record of the section: PT_OK, PT_DECLINED at its end, PT_ERROR. */
static int dns_walk_next(struct dns_walk *w, struct dns_rr *rr)
{
	if (w->n_left == 0)
		return PT_DECLINED;
	w->n_left--;
	if (dns_skip_name(w) != PT_OK || w->off + 10 > w->len)
		return PT_ERROR;
	rr->type = dns_get16(w->msg + w->off);
	rr->rclass = dns_get16(w->msg + w->off + 2);
	rr->ttl = dns_get32(w->msg + w->off + 4);
	rr->rdlength = dns_get16(w->msg + w->off + 8);
	rr->rdata = w->msg + w->off + 10;
	w->off += 10 + rr->rdlength;
	if (w->off > w->len)
		return PT_ERROR;
	/* RFC 2181 8: a TTL with the top bit set is read as zero. */
	if (rr->ttl > INT32_MAX)
		rr->ttl = 0;
	return PT_OK;
}

/*
 * Whether the name at off, followed through its compression pointers, is at
 * most DNS_NAME_WIRE_MAX octets (RFC 1035 3.1).  ares_expand_name (1.18)
 * does not check this, and pointers that re-enter a run of labels at other
 * offsets expand a few hundred octets into megabytes: found by fuzzing, a
 * 64 KB answer of 256 such MX records cost 470 MB and 2 s in dns_wire_mx.
 * Bounded: each step adds a pointer hop or at least one octet.
 */
static bool dns_name_fits(const unsigned char *msg, size_t len, size_t off)
{
	size_t total = 0;
	unsigned hops = 0;

	while (off < len && hops <= DNS_NAME_WIRE_MAX) {
		unsigned char c = msg[off];
		if ((c & 0xc0) == 0xc0) {
			if (off + 2 > len)
				return false;
			off = dns_get16(msg + off) & 0x3fff;
			hops++;
			continue;
		}
		if (c & 0xc0) /* reserved label types, as in dns_skip_name */
			return false;
		total += 1 + (size_t)c;
		if (total > DNS_NAME_WIRE_MAX)
			return false;
		if (c == 0)
			return true;
		off += 1 + (size_t)c;
	}
	return false;
}

static void dns_free_mx(struct dns_wire_mx *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ares_free_string(out[i].name);
}

/* One MX record's RDATA: preference, then the exchange name. */
static int dns_read_mx(struct dns_walk *w, const struct dns_rr *rr, struct dns_wire_mx *mx)
{
	long enclen;
	char *name;

	if (rr->rdlength < 3 || !dns_name_fits(w->msg, w->len, (size_t)(rr->rdata + 2 - w->msg)))
		return PT_ERROR;
	if (ares_expand_name(rr->rdata + 2, w->msg, (int)w->len, &name, &enclen) != ARES_SUCCESS)
		return PT_ERROR;
	if ((size_t)enclen + 2 > rr->rdlength) {
		ares_free_string(name);
		return PT_ERROR;
	}
	mx->preference = dns_get16(rr->rdata);
	mx->name = name;
	return PT_OK;
}

int dns_wire_mx(const unsigned char *msg, int len, struct dns_wire_mx *out, size_t max,
		size_t *n_out, uint32_t *min_ttl)
{
	struct dns_walk w;
	struct dns_rr rr;
	size_t n = 0;
	int rc;

	*n_out = 0;
	*min_ttl = UINT32_MAX;
	if (dns_walk_start(&w, msg, len, DNS_SECTION_ANSWER) != PT_OK)
		return PT_ERROR;
	while ((rc = dns_walk_next(&w, &rr)) == PT_OK) {
		if (rr.rclass != DNS_CLASS_IN)
			continue;
		if (rr.type == DNS_TYPE_CNAME)
			*min_ttl = PT_MIN(*min_ttl, rr.ttl);
		if (rr.type != DNS_TYPE_MX)
			continue;
		*min_ttl = PT_MIN(*min_ttl, rr.ttl);
		if (n == max)
			continue;
		if (dns_read_mx(&w, &rr, &out[n]) != PT_OK) {
			dns_free_mx(out, n);
			return PT_ERROR;
		}
		n++;
	}
	if (rc == PT_ERROR) {
		dns_free_mx(out, n);
		return PT_ERROR;
	}
	*n_out = n;
	return PT_OK;
}

void dns_addr_set(struct dns_addr *a, int family, const void *bytes)
{
	memset(a, 0, sizeof(*a));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, bytes, 4);
		a->sa_len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, bytes, 16);
		a->sa_len = sizeof(*sin6);
	}
	inet_ntop(family, bytes, a->text, sizeof(a->text));
}

int dns_wire_addrs(const unsigned char *msg, int len, int family, struct dns_addr *out, size_t max,
		   size_t *n_out, uint32_t *min_ttl)
{
	uint16_t type = family == AF_INET ? DNS_TYPE_A : DNS_TYPE_AAAA;
	size_t size = family == AF_INET ? 4 : 16;
	struct dns_walk w;
	struct dns_rr rr;
	size_t n = 0;
	int rc;

	*n_out = 0;
	*min_ttl = UINT32_MAX;
	if (dns_walk_start(&w, msg, len, DNS_SECTION_ANSWER) != PT_OK)
		return PT_ERROR;
	while ((rc = dns_walk_next(&w, &rr)) == PT_OK) {
		if (rr.rclass != DNS_CLASS_IN)
			continue;
		if (rr.type == DNS_TYPE_CNAME)
			*min_ttl = PT_MIN(*min_ttl, rr.ttl);
		if (rr.type != type)
			continue;
		if (rr.rdlength != size)
			return PT_ERROR;
		*min_ttl = PT_MIN(*min_ttl, rr.ttl);
		if (n < max)
			dns_addr_set(&out[n++], family, rr.rdata);
	}
	if (rc == PT_ERROR)
		return PT_ERROR;
	*n_out = n;
	return PT_OK;
}

int dns_wire_negative_ttl(const unsigned char *msg, int len, uint32_t *ttl)
{
	struct dns_walk w;
	struct dns_rr rr;
	int rc;

	if (dns_walk_start(&w, msg, len, DNS_SECTION_AUTHORITY) != PT_OK)
		return PT_ERROR;
	while ((rc = dns_walk_next(&w, &rr)) == PT_OK) {
		if (rr.rclass != DNS_CLASS_IN || rr.type != DNS_TYPE_SOA)
			continue;
		/* RDATA: MNAME, RNAME, then SERIAL REFRESH RETRY EXPIRE MINIMUM,
		 * 32 bits each: MINIMUM is the last four octets. */
		if (rr.rdlength < 2 + 20)
			return PT_ERROR;
		uint32_t minimum = dns_get32(rr.rdata + rr.rdlength - 4);
		if (minimum > INT32_MAX)
			minimum = 0;
		*ttl = PT_MIN(rr.ttl, minimum);
		return PT_OK;
	}
	return rc == PT_ERROR ? PT_ERROR : PT_DECLINED;
}
