/*
 * dns.h -- asynchronous MX and address resolution for delivery (c-ares),
 * with a TTL-honouring cache.  One resolver per shard; never blocks.
 *
 * The resolver does no I/O of its own choosing: c-ares opens its UDP/TCP
 * sockets, and the shard watches them on its ring.  The shard drives it as
 *
 *   dns_resolver_new(cfg, watch_fn, arg)   watch_fn(arg, fd, read, write) is
 *                                          called whenever c-ares wants an fd
 *                                          watched (read/write) or dropped
 *                                          (both false)
 *   dns_process_fd(r, fd, readable, writable)   when the ring reports the fd
 *   dns_next_timeout_ms(r)                      when to call dns_process_timeouts
 *   dns_process_timeouts(r)                     on that deadline
 *
 * Completion callbacks run only from dns_process_fd and dns_process_timeouts
 * (never from inside the lookup call that registered them).  Ask
 * dns_next_timeout_ms again after lookups too: it answers 0 when callbacks
 * are due without any socket being ready (a query that failed at once).
 *
 * Lookups:
 *
 *   dns_lookup_mx(r, domain, now_ms, cb, arg, &result)
 *
 * resolves a destination the way RFC 5321 5.1 says: MX records in preference
 * order (ties broken by name, so every shard sees the same order), each MX
 * host's A and AAAA addresses; when the domain has no MX records, the domain
 * itself as the only host (implicit MX, A/AAAA fall-back).  A null MX
 * (RFC 7505: an MX whose exchange is ".") is a permanent failure.  Names are
 * absolute: no search domains, no /etc/hosts.  A domain literal
 * ("[127.0.0.1]", "[IPv6:::1]") answers at once with that address.
 *
 *   dns_lookup_host(r, name, now_ms, cb, arg, &result)
 *
 * resolves one host name (A and AAAA) into a result with one host (for smart
 * hosts given by name).  An IP address given as the name answers at once.
 *
 * Both return PT_OK with *result set when the answer is cached (the result
 * is then valid until the next call into the resolver; copy what you keep),
 * or PT_AGAIN when the answer will come later through cb(arg, result), with
 * result valid only during the callback.  Lookups for the same name while
 * one is in flight share its queries (MX hosts shared by several domains
 * too).  PT_NOMEM on allocation failure.  A name that is not a valid domain
 * name answers at once with DNS_NXDOMAIN.
 *
 * Caching: a positive answer lives for the smallest TTL of the records it
 * was built from (bounded to [cache_min_ttl, cache_max_ttl]); NXDOMAIN and
 * "no such record" answers are cached for the SOA minimum when the response
 * carries one (RFC 2308 5: the smaller of the SOA's TTL and MINIMUM, bounded
 * the same way), else negative_ttl; temporary failures are not cached.  An
 * answer built partly from a temporary failure (one MX host timed out, the
 * others answered) is used but cached for at most negative_ttl.  Expiry
 * counts from the now_ms of the lookup that sent the queries.
 *
 * Bounds: at most DNS_MAX_MX_HOSTS MX hosts per domain (the most preferred)
 * and DNS_MAX_ADDRS addresses per family per host are kept.
 */
#ifndef PT_DNS_H
#define PT_DNS_H

#include "core/pt.h"

#include <netinet/in.h>
#include <sys/socket.h>

#define DNS_MAX_MX_HOSTS 64
#define DNS_MAX_ADDRS	 16

struct dns_resolver;

struct dns_config {
	/* "127.0.0.1:5353", "[::1]:53", "::1", "10.0.0.1" (port 53); NULL/0 ->
	 * the system's /etc/resolv.conf (read once, at dns_resolver_new). */
	const char *const *name_servers;
	size_t n_name_servers;
	uint64_t timeout_ms;	   /* per try; 0 -> 5000 */
	unsigned tries;		   /* 0 -> 3 */
	uint64_t cache_min_ttl_ms; /* 0 -> 1000 */
	uint64_t cache_max_ttl_ms; /* 0 -> 1 day */
	uint64_t negative_ttl_ms;  /* 0 -> 300000 */
	size_t cache_max_entries;  /* 0 -> 65536; the oldest entries go first */
};

enum dns_status {
	DNS_OK = 0,	/* hosts[] holds at least one host with an address */
	DNS_NULL_MX,	/* permanent: the domain publishes a null MX (RFC 7505) */
	DNS_NXDOMAIN,	/* permanent: the domain does not exist (or is not a valid name) */
	DNS_NO_ADDRESS, /* permanent: no MX and no A/AAAA, or no MX host has an address */
	DNS_TEMPFAIL,	/* temporary: timeout, SERVFAIL, refused, network error, or
			 * every MX host's lookup failed temporarily */
};

struct dns_addr {
	struct sockaddr_storage sa; /* AF_INET or AF_INET6, port 0 */
	socklen_t sa_len;
	char text[INET6_ADDRSTRLEN]; /* "127.0.0.2" */
};

struct dns_host {
	const char *name; /* lowercase, no trailing dot */
	uint16_t preference;
	const struct dns_addr *addrs; /* IPv4 first, then IPv6; each in the server's order */
	size_t n_addrs;
};

struct dns_result {
	enum dns_status status;
	const char *name;  /* what was asked (lowercase, no trailing dot) */
	const char *error; /* a sentence for logs and bounce text when status != DNS_OK, else "" */
	bool implicit_mx;  /* no MX records: the domain itself is the host */
	const struct dns_host *hosts; /* preference order; hosts without addresses omitted */
	size_t n_hosts;
	/*
	 * The MX rollup site name, KumoMTA's: the MX host names in preference
	 * order (all of them, with or without addresses), factored label by
	 * label from the right (dns_site_name): "(mx1|mx2).example.com", or
	 * "mx.example.com" for one host.  For an implicit MX, a host lookup or
	 * a failure: the name itself.
	 */
	const char *site;
	uint64_t expires_ms; /* cache expiry (a monotonic time like now_ms) */
};

typedef void (*dns_watch_fn)(void *arg, int fd, bool want_read, bool want_write);
typedef void (*dns_result_fn)(void *arg, const struct dns_result *result);

/*
 * A resolver (c-ares channel) with its own cache.  cfg is not kept.  NULL
 * with err filled on bad name server syntax or c-ares init failure.  watch
 * is called as described above, also from dns_resolver_free (drops).
 */
struct dns_resolver *dns_resolver_new(const struct dns_config *cfg, dns_watch_fn watch,
				      void *watch_arg, char *err, size_t err_len);
/* Pending lookups are dropped without callbacks.  Not from a callback. */
void dns_resolver_free(struct dns_resolver *r);

/*
 * Start or answer a lookup (see the top of this file).  domain/name are
 * copied.  now_ms: the caller's monotonic clock, for cache expiry.  The
 * callback may start lookups and cancel others, but not free the resolver.
 */
int dns_lookup_mx(struct dns_resolver *r, const char *domain, uint64_t now_ms, dns_result_fn cb,
		  void *arg, const struct dns_result **result);
int dns_lookup_host(struct dns_resolver *r, const char *name, uint64_t now_ms, dns_result_fn cb,
		    void *arg, const struct dns_result **result);
/* Forget every pending callback registered with this (cb, arg) pair (the
 * queries themselves go on and fill the cache).  Costs O(lookups in flight). */
void dns_cancel(struct dns_resolver *r, dns_result_fn cb, void *arg);

/* The fd reported by the watch callback is ready; runs due callbacks. */
void dns_process_fd(struct dns_resolver *r, int fd, bool readable, bool writable);
/* Milliseconds until dns_process_timeouts should run (0: now), or -1 when
 * nothing is in flight. */
int64_t dns_next_timeout_ms(struct dns_resolver *r);
/* Handle expired tries (resend or fail) and run due callbacks. */
void dns_process_timeouts(struct dns_resolver *r);

/*
 * Blocking MX lookups (dns_sync.c): a private resolver built from cfg,
 * driven by poll(2) until all n answers are in or timeout_ms has passed
 * (those left get DNS_TEMPFAIL "DNS lookup timed out").  out[i] answers
 * domains[i]: site is the MX rollup name as dns_result's (for a failure,
 * the name itself), error a sentence ("" when fine); free with
 * dns_sync_mx_free.  PT_OK, or PT_ERROR/PT_NOMEM with err when no resolver
 * could be made.  It blocks the calling thread: for start-up and reload
 * paths only.
 */
struct dns_sync_mx {
	enum dns_status status;
	bool implicit_mx;
	char *site;
	char *error;
};
int dns_sync_mx(const struct dns_config *cfg, const char *const *domains, size_t n,
		uint64_t timeout_ms, struct dns_sync_mx *out, char *err, size_t err_len);
void dns_sync_mx_free(struct dns_sync_mx *out, size_t n);

/* Counters for logs and metrics. */
struct dns_stats {
	uint64_t lookups;	/* dns_lookup_mx/dns_lookup_host calls */
	uint64_t cache_hits;	/* of them, answered from the cache (positive or negative) */
	uint64_t negative_hits; /* of the cache hits, those with status != DNS_OK */
	uint64_t queries_sent;	/* DNS queries handed to c-ares (MX, A, AAAA) */
	uint64_t failures;	/* lookups answered DNS_TEMPFAIL */
};
void dns_get_stats(const struct dns_resolver *r, struct dns_stats *out);

/*
 * Parse an IP literal ("127.0.0.1", "::1", "[::1]", "[127.0.0.1]",
 * "[IPv6:::1]" as RFC 5321 4.1.3 writes it) into a; for smart hosts given
 * as addresses.  PT_OK or PT_ERROR.
 */
int dns_parse_ip(const char *s, struct dns_addr *a);

/*
 * KumoMTA's site name for a list of MX host names, in the order given
 * (lowercased, trailing dots ignored): the labels are compared position by
 * position from the right; a position where all names agree is written
 * once, one where they differ as "(a|b)" in order of first appearance, and
 * a trailing "?" marks a position some names are too short to have:
 * {mx1.a.test, mx2.a.test} -> "(mx1|mx2).a.test";
 * {x.l.google.com, alt1.x.l.google.com} -> "alt1?.x.l.google.com".
 * PT_OK, or PT_ERROR when out_len is too small (or n_names is 0).
 */
int dns_site_name(const char *const *names, size_t n_names, char *out, size_t out_len);

#endif
