/*
 * dns_int.h -- private to net/dns*.c: answers and their cache
 * (dns_answer.c), DNS response walking (dns_wire.c), names.  Never included
 * from another folder.
 */
#ifndef PT_DNS_INT_H
#define PT_DNS_INT_H

#include "core/strmap.h"
#include "net/dns.h"

#include <ares.h>

#define DNS_NAME_MAX 253 /* RFC 1035 2.3.4, as text without the trailing dot */

/* RFC 1035 3.2.2, 3.2.4; RFC 3596 2.1 */
#define DNS_TYPE_A     1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_SOA   6
#define DNS_TYPE_MX    15
#define DNS_TYPE_AAAA  28
#define DNS_CLASS_IN   1

enum dns_kind { DNS_KIND_MX, DNS_KIND_HOST, DNS_KIND_N };

/*
 * An answer: a dns_result and everything it points at, in one allocation,
 * never changed once built.  Reference-counted: the cache holds one
 * reference, a job delivering it another, the resolver's "held" slot
 * (results returned with PT_OK) a third.
 */
struct dns_answer {
	struct dns_result result;
	enum dns_kind kind;
	unsigned refs;
	bool cached;
	struct dns_answer *older, *newer; /* the cache's insertion order */
};

/* What an answer is built from (nothing is owned; dns_answer_new copies). */
struct dns_draft_host {
	const char *name;
	uint16_t preference;
	const struct dns_addr *addrs;
	size_t n_addrs;
};

struct dns_draft {
	enum dns_kind kind;
	enum dns_status status;
	const char *name;
	const char *error; /* NULL: "" */
	bool implicit_mx;
	const struct dns_draft_host *hosts;
	size_t n_hosts;
	const char *site; /* NULL: the name */
	uint64_t expires_ms;
};

/* A new answer with one reference, or NULL when out of memory. */
struct dns_answer *dns_answer_new(const struct dns_draft *d);
struct dns_answer *dns_answer_ref(struct dns_answer *a);
void dns_answer_unref(struct dns_answer *a);

/* The cache: one map per kind, and a FIFO over both for eviction. */
struct dns_cache {
	struct pt_strmap map[DNS_KIND_N];
	struct dns_answer *oldest, *newest;
	size_t n, max;
};

/* The live answer for (kind, name) or NULL; an expired one is dropped. */
struct dns_answer *dns_cache_get(struct dns_cache *c, enum dns_kind kind, const char *name,
				 uint64_t now_ms);
/* Add a (takes its own reference; replaces one with the same name; evicts
 * the oldest past max).  PT_OK or PT_NOMEM (then nothing is cached). */
int dns_cache_put(struct dns_cache *c, struct dns_answer *a);
void dns_cache_free(struct dns_cache *c);

/* Lowercase, drop one trailing dot, check RFC 1035 lengths and the
 * letters-digits-hyphen (and underscore) alphabet.  out holds
 * DNS_NAME_MAX + 1 bytes.  PT_OK or PT_ERROR. */
int dns_name_normalize(const char *in, char *out);

/* dns_site_name into a new string (malloc), or NULL when out of memory. */
char *dns_site_factor(const char *const *names, size_t n_names);

/*
 * Walking a response (dns_wire.c).  Every function checks bounds and
 * answers PT_ERROR for a malformed message.
 */
struct dns_wire_mx {
	char *name; /* malloc'd, as received (may be "" for the root) */
	uint16_t preference;
};

/* MX records of the answer section (at most max; the rest counted in
 * *n_seen), and the smallest TTL over the answer section's MX and CNAME
 * records (UINT32_MAX when none). */
int dns_wire_mx(const unsigned char *msg, int len, struct dns_wire_mx *out, size_t max,
		size_t *n_out, uint32_t *min_ttl);
/* A (family AF_INET) or AAAA (AF_INET6) records of the answer section, up
 * to max, with the smallest TTL as above. */
int dns_wire_addrs(const unsigned char *msg, int len, int family, struct dns_addr *out, size_t max,
		   size_t *n_out, uint32_t *min_ttl);
/* The negative-caching TTL of RFC 2308 5 from the authority section's SOA:
 * min(SOA TTL, SOA MINIMUM).  PT_OK, or PT_DECLINED when there is no SOA. */
int dns_wire_negative_ttl(const unsigned char *msg, int len, uint32_t *ttl);

/* Fill a from a parsed address (port 0, text set). */
void dns_addr_set(struct dns_addr *a, int family, const void *bytes);

/* ---- jobs (dns_job.c) and the resolver (dns.c) ---- */

extern const char dns_nomem_text[];

enum dns_outcome { DNS_OUT_DATA, DNS_OUT_NODATA, DNS_OUT_NXDOMAIN, DNS_OUT_TEMPFAIL };
enum dns_phase { DNS_PHASE_QUERIES, DNS_PHASE_HOSTS };

/* What one query said, and how long that may be believed. */
struct dns_reply {
	enum dns_outcome outcome;
	uint64_t valid_ms; /* not for DNS_OUT_TEMPFAIL */
	int ares_status;   /* DNS_OUT_TEMPFAIL: why */
};

struct dns_job;

/* The arg of one ares_query. */
struct dns_query {
	struct dns_job *job;
	int slot; /* HOST: 0 for A, 1 for AAAA; MX: 0 */
};

/* A caller waiting on a job: a callback, or an MX job waiting for a host. */
struct dns_waiter {
	struct dns_waiter *next;
	dns_result_fn cb;
	void *arg;
	struct dns_job *parent;
	size_t index; /* in parent->hosts */
};

struct dns_mx_host {
	char *name;
	uint16_t preference;
	struct dns_answer *answer; /* a reference, once known */
};

/* A lookup in flight (dns_job.c). */
struct dns_job {
	struct dns_resolver *r;
	enum dns_kind kind;
	enum dns_phase phase;
	char name[DNS_NAME_MAX + 1];
	struct dns_job *prev, *next; /* on r->running_jobs or r->done_jobs */
	uint64_t start_ms;
	unsigned pending;
	bool starting, done;
	struct dns_waiter *waiters, **waiters_tail;
	struct dns_answer *answer; /* once done */
	struct dns_query query[2];
	struct dns_reply reply[2];
	/* HOST */
	struct dns_addr *addrs[2];
	size_t n_addrs[2];
	/* MX */
	struct dns_mx_host *hosts;
	size_t n_hosts;
	bool null_mx, implicit_mx;
};

struct dns_joblist {
	struct dns_job *head, *tail;
};

/* The resolver (dns.c); jobs (dns_job.c) use its channel, cache and lists. */
struct dns_resolver {
	ares_channel channel;
	dns_watch_fn watch;
	void *watch_arg;
	uint64_t min_ttl_ms, max_ttl_ms, negative_ttl_ms;
	struct dns_cache cache;
	struct pt_strmap running[DNS_KIND_N]; /* name -> job */
	struct dns_joblist running_jobs, done_jobs;
	struct dns_answer *held;  /* the last answer returned with PT_OK */
	struct dns_answer *nomem; /* the answer when building one fails */
	struct dns_stats stats;
	bool destroying, delivering;
};

void dns_joblist_remove(struct dns_joblist *l, struct dns_job *job);
/* Free a job that is on no list and in no map. */
void dns_job_free(struct dns_job *job);
/* Add a waiter: a callback (parent NULL) or an MX job's host.  PT_OK or PT_NOMEM. */
int dns_wait(struct dns_job *job, dns_result_fn cb, void *arg, struct dns_job *parent,
	     size_t index);
/*
 * The answer for (kind, name), name normalized, if it can be had now (PT_OK,
 * a reference in *answer; *cached says whether the cache gave it), else the
 * job that will give it (PT_AGAIN, *job), or PT_NOMEM.
 */
int dns_obtain(struct dns_resolver *r, enum dns_kind kind, const char *name, uint64_t now_ms,
	       struct dns_answer **answer, struct dns_job **job, bool *cached);
/* An answer made on the spot, not cached: for addr, or (addr NULL) for a
 * name that is not a valid domain name.  PT_OK with a reference, or PT_NOMEM. */
int dns_answer_now(struct dns_resolver *r, enum dns_kind kind, const char *name,
		   const struct dns_addr *addr, uint64_t now_ms, struct dns_answer **answer);

#endif
