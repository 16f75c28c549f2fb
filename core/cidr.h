/*
 * cidr.h -- lists of IPv4/IPv6 networks ("127.0.0.0/8", "::1", "10.1.2.3")
 * for relay_hosts and trusted_hosts.  An IPv4-mapped IPv6 peer
 * (::ffff:a.b.c.d) matches IPv4 entries.
 */
#ifndef PT_CIDR_H
#define PT_CIDR_H

#include "core/pt.h"
#include <sys/socket.h>

struct pt_cidr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t prefix; /* bits */
	uint8_t addr[16];
};

struct pt_cidr_list {
	struct pt_cidr *items;
	size_t n;
};

/* Parse one entry; PT_OK or PT_ERROR (bad syntax or prefix out of range). */
int pt_cidr_parse(const char *s, struct pt_cidr *out);
/* Append a parsed entry (copied).  PT_OK, PT_ERROR (syntax) or PT_NOMEM. */
int pt_cidr_list_add(struct pt_cidr_list *l, const char *s);
bool pt_cidr_list_match(const struct pt_cidr_list *l, const struct sockaddr *sa);
void pt_cidr_list_free(struct pt_cidr_list *l);
/* "a.b.c.d" or "x:y::z" for a sockaddr (no port); out holds 64 bytes. */
const char *pt_sockaddr_ip(const struct sockaddr *sa, char out[64]);

#endif
