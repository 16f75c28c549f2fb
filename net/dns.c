/*
 * dns.c -- the resolver: one c-ares channel per shard, driven by the
 * shard's ring, lookups as jobs, and RFC 5321 5.1 / RFC 7505 over the
 * answers.
 *
 * c-ares.  The channel is made with ARES_OPT_SOCK_STATE_CB, so c-ares tells
 * us (and we tell the shard, through the watch callback) which sockets to
 * watch; the shard calls dns_process_fd when one is ready and
 * dns_process_timeouts when dns_next_timeout_ms says so.  Queries go out
 * with ares_query: no search list, no /etc/hosts, no getaddrinfo, so nothing
 * reads a file or the network in a blocking way after dns_resolver_new.
 * EDNS0 is on with a 1232-octet payload (the 2020 DNS flag day value), so
 * large MX sets rarely need TCP; when they do, c-ares retries over TCP by
 * itself and asks for write readiness while it connects.
 *
 * Lookups are jobs (dns_job.c): one per name in flight, shared by every
 * caller asking for that name meanwhile.  A finished job waits on
 * r->done_jobs; its callers' callbacks run in dns_deliver, at the end of
 * dns_process_fd / dns_process_timeouts: never from inside c-ares, and never
 * from the dns_lookup_* call that registered them, so a callback may start
 * new lookups or cancel others freely.  A lookup that finishes at once (an
 * answer in the cache, a query that failed before leaving) returns PT_OK;
 * its answer stays alive in r->held until the next call.
 *
 * Time.  Cache expiry is computed from the now_ms the caller passed to the
 * lookup (dns_job.c says how); c-ares keeps its own retry timers on the
 * monotonic clock.
 *
 * Start-up.  ares_init_options reads /etc/resolv.conf (for its options, and
 * for the servers when the policy names none) once, in dns_resolver_new,
 * before the shard's loop runs.  ares_library_init is not called: on Linux
 * c-ares 1.18 needs it for nothing, and it is not safe to call from several
 * shards at once.  Each shard has its own channel; nothing is shared.
 */
#include "net/dns_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DNS_EDNS_PAYLOAD 1232

/* Keep a reference to a in r->held (released at the next call). */
static void dns_hold(struct dns_resolver *r, struct dns_answer *a)
{
	dns_answer_unref(r->held);
	r->held = a;
}

/* ---- the c-ares channel ------------------------------------------------- */

static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_resolver *r = data;

	r->watch(r->watch_arg, fd, readable != 0, writable != 0);
}

/* "1.2.3.4", "1.2.3.4:53", "::1", "[::1]", "[::1]:53" into n. */
static int dns_server_parse(const char *s, struct ares_addr_port_node *n)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL, *colon = strchr(s, ':');
	size_t len = strlen(s);

	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || (end[1] != '\0' && end[1] != ':'))
			return PT_ERROR;
		port = end[1] == ':' ? end + 2 : NULL;
		s++;
		len = (size_t)(end - s);
	} else if (colon && !strchr(colon + 1, ':')) { /* one colon: IPv4 with a port */
		port = colon + 1;
		len = (size_t)(colon - s);
	}
	if (len == 0 || len >= sizeof(host))
		return PT_ERROR;
	memcpy(host, s, len);
	host[len] = '\0';
	n->udp_port = 53;
	if (port) {
		char *end;
		long p = strtol(port, &end, 10);
		if (*port < '0' || *port > '9' || *end != '\0' || p < 1 || p > 65535)
			return PT_ERROR;
		n->udp_port = (int)p;
	}
	n->tcp_port = n->udp_port;
	if (inet_pton(AF_INET, host, &n->addr.addr4) == 1)
		n->family = AF_INET;
	else if (inet_pton(AF_INET6, host, &n->addr.addr6) == 1)
		n->family = AF_INET6;
	else
		return PT_ERROR;
	return PT_OK;
}

static int dns_servers_set(struct dns_resolver *r, const struct dns_config *cfg, char *err,
			   size_t err_len)
{
	struct ares_addr_port_node *nodes;
	int rc;

	if (!cfg->name_servers || cfg->n_name_servers == 0)
		return PT_OK; /* c-ares read /etc/resolv.conf */
	nodes = calloc(cfg->n_name_servers, sizeof(*nodes));
	if (!nodes) {
		snprintf(err, err_len, "out of memory");
		return PT_NOMEM;
	}
	for (size_t i = 0; i < cfg->n_name_servers; i++) {
		if (dns_server_parse(cfg->name_servers[i], &nodes[i]) != PT_OK) {
			snprintf(err, err_len,
				 "bad name server \"%s\": expected ADDRESS, ADDRESS:PORT or "
				 "[IPv6]:PORT",
				 cfg->name_servers[i]);
			free(nodes);
			return PT_ERROR;
		}
		nodes[i].next = i + 1 < cfg->n_name_servers ? &nodes[i + 1] : NULL;
	}
	rc = ares_set_servers_ports(r->channel, nodes);
	free(nodes);
	if (rc != ARES_SUCCESS) {
		snprintf(err, err_len, "c-ares: setting name servers: %s", ares_strerror(rc));
		return PT_ERROR;
	}
	return PT_OK;
}

static int dns_channel_init(struct dns_resolver *r, const struct dns_config *cfg, char *err,
			    size_t err_len)
{
	struct ares_options o;
	char lookups[] = "b"; /* DNS only, never /etc/hosts */
	int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB |
		   ARES_OPT_DOMAINS | ARES_OPT_LOOKUPS | ARES_OPT_EDNSPSZ;
	int rc;

	memset(&o, 0, sizeof(o));
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_EDNS;
	o.timeout = (int)PT_MIN(cfg->timeout_ms ? cfg->timeout_ms : 5000, (uint64_t)INT32_MAX);
	o.tries = cfg->tries ? (int)cfg->tries : 3;
	o.sock_state_cb = dns_sock_state;
	o.sock_state_cb_data = r;
	o.domains = NULL; /* no search list */
	o.ndomains = 0;
	o.lookups = lookups;
	o.ednspsz = DNS_EDNS_PAYLOAD;
	rc = ares_init_options(&r->channel, &o, mask);
	if (rc != ARES_SUCCESS) {
		snprintf(err, err_len, "c-ares: %s", ares_strerror(rc));
		r->channel = NULL;
		return PT_ERROR;
	}
	return dns_servers_set(r, cfg, err, err_len);
}

struct dns_resolver *dns_resolver_new(const struct dns_config *cfg, dns_watch_fn watch,
				      void *watch_arg, char *err, size_t err_len)
{
	struct dns_draft nomem = {
	    .kind = DNS_KIND_HOST,
	    .status = DNS_TEMPFAIL,
	    .name = "",
	    .error = dns_nomem_text,
	};
	struct dns_resolver *r = calloc(1, sizeof(*r));

	if (!r) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	r->watch = watch;
	r->watch_arg = watch_arg;
	r->min_ttl_ms = cfg->cache_min_ttl_ms ? cfg->cache_min_ttl_ms : 1000;
	r->max_ttl_ms = cfg->cache_max_ttl_ms ? cfg->cache_max_ttl_ms : 86400000;
	r->max_ttl_ms = PT_MAX(r->max_ttl_ms, r->min_ttl_ms);
	r->negative_ttl_ms = cfg->negative_ttl_ms ? cfg->negative_ttl_ms : 300000;
	r->cache.max = cfg->cache_max_entries ? cfg->cache_max_entries : 65536;
	r->nomem = dns_answer_new(&nomem);
	if (!r->nomem) {
		snprintf(err, err_len, "out of memory");
		goto fail;
	}
	if (dns_channel_init(r, cfg, err, err_len) != PT_OK)
		goto fail;
	return r;
fail:
	if (r->channel)
		ares_destroy(r->channel);
	dns_answer_unref(r->nomem);
	free(r);
	return NULL;
}

/* ---- lookups ------------------------------------------------------------- */

static int dns_lookup(struct dns_resolver *r, enum dns_kind kind, const char *name, uint64_t now_ms,
		      dns_result_fn cb, void *arg, const struct dns_result **result)
{
	char normal[DNS_NAME_MAX + 1];
	struct dns_answer *a = NULL;
	struct dns_addr addr;
	struct dns_job *job = NULL;
	bool cached = false;
	int rc;

	dns_hold(r, NULL);
	r->stats.lookups++;
	if (kind == DNS_KIND_MX ? name[0] == '[' : dns_parse_ip(name, &addr) == PT_OK) {
		bool literal = dns_parse_ip(name, &addr) == PT_OK;
		rc = dns_answer_now(r, kind, name, literal ? &addr : NULL, now_ms, &a);
	} else if (dns_name_normalize(name, normal) != PT_OK) {
		rc = dns_answer_now(r, kind, name, NULL, now_ms, &a);
	} else {
		rc = dns_obtain(r, kind, normal, now_ms, &a, &job, &cached);
	}
	if (rc == PT_AGAIN)
		return dns_wait(job, cb, arg, NULL, 0) == PT_OK ? PT_AGAIN : PT_NOMEM;
	if (rc != PT_OK)
		return rc;
	if (cached) {
		r->stats.cache_hits++;
		r->stats.negative_hits += a->result.status != DNS_OK;
	}
	r->stats.failures += a->result.status == DNS_TEMPFAIL;
	dns_hold(r, a);
	*result = &a->result;
	return PT_OK;
}

int dns_lookup_mx(struct dns_resolver *r, const char *domain, uint64_t now_ms, dns_result_fn cb,
		  void *arg, const struct dns_result **result)
{
	return dns_lookup(r, DNS_KIND_MX, domain, now_ms, cb, arg, result);
}

int dns_lookup_host(struct dns_resolver *r, const char *name, uint64_t now_ms, dns_result_fn cb,
		    void *arg, const struct dns_result **result)
{
	return dns_lookup(r, DNS_KIND_HOST, name, now_ms, cb, arg, result);
}

static void dns_cancel_in(struct dns_joblist *l, dns_result_fn cb, void *arg)
{
	for (struct dns_job *job = l->head; job; job = job->next) {
		struct dns_waiter **wp = &job->waiters, *w;
		while ((w = *wp) != NULL) {
			if (!w->parent && w->cb == cb && w->arg == arg) {
				*wp = w->next;
				free(w);
			} else {
				wp = &w->next;
			}
		}
		job->waiters_tail = wp;
	}
}

void dns_cancel(struct dns_resolver *r, dns_result_fn cb, void *arg)
{
	dns_cancel_in(&r->running_jobs, cb, arg);
	dns_cancel_in(&r->done_jobs, cb, arg);
}

/* ---- driving ------------------------------------------------------------- */

/*
 * Run the callbacks of finished jobs, oldest first.  A callback may start
 * lookups (which may finish more jobs: they join the list) or cancel
 * others; the job being delivered keeps its answer alive meanwhile.
 */
static void dns_deliver(struct dns_resolver *r)
{
	struct dns_job *job;
	struct dns_waiter *w;

	if (r->delivering)
		return;
	r->delivering = true;
	while ((job = r->done_jobs.head) != NULL) {
		while ((w = job->waiters) != NULL) {
			job->waiters = w->next;
			if (!job->waiters)
				job->waiters_tail = &job->waiters;
			dns_result_fn cb = w->cb;
			void *arg = w->arg;
			free(w);
			r->stats.failures += job->answer->result.status == DNS_TEMPFAIL;
			cb(arg, &job->answer->result);
		}
		dns_joblist_remove(&r->done_jobs, job);
		dns_job_free(job);
	}
	r->delivering = false;
}

void dns_process_fd(struct dns_resolver *r, int fd, bool readable, bool writable)
{
	dns_hold(r, NULL);
	/* An error or hang-up on the socket: let c-ares read it and see. */
	if (!readable && !writable)
		readable = true;
	ares_process_fd(r->channel, readable ? fd : ARES_SOCKET_BAD,
			writable ? fd : ARES_SOCKET_BAD);
	dns_deliver(r);
}

int64_t dns_next_timeout_ms(struct dns_resolver *r)
{
	struct timeval tv, *next;

	if (r->done_jobs.head)
		return 0;
	next = ares_timeout(r->channel, NULL, &tv);
	if (!next)
		return -1;
	/* Round up: waking a little late is harmless, early would spin. */
	return (int64_t)next->tv_sec * 1000 + (next->tv_usec + 999) / 1000;
}

void dns_process_timeouts(struct dns_resolver *r)
{
	dns_hold(r, NULL);
	ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_deliver(r);
}

void dns_get_stats(const struct dns_resolver *r, struct dns_stats *out)
{
	*out = r->stats;
}

static void dns_free_jobs(struct dns_joblist *l)
{
	struct dns_job *job;

	while ((job = l->head) != NULL) {
		dns_joblist_remove(l, job);
		dns_job_free(job);
	}
}

void dns_resolver_free(struct dns_resolver *r)
{
	if (!r)
		return;
	/* ares_destroy calls every query's callback with ARES_EDESTRUCTION;
	 * destroying makes them return at once, and the jobs go below. */
	r->destroying = true;
	ares_destroy(r->channel);
	dns_free_jobs(&r->running_jobs);
	dns_free_jobs(&r->done_jobs);
	for (int k = 0; k < DNS_KIND_N; k++)
		pt_strmap_free(&r->running[k]);
	dns_cache_free(&r->cache);
	dns_answer_unref(r->held);
	dns_answer_unref(r->nomem);
	free(r);
}
