/*
 * dns_job.c -- lookups in flight: the queries of one name, and the rules
 * of RFC 5321 5.1 and RFC 7505 over what they answer.
 *
 * A lookup in flight is a job, one per (kind, name), found through
 * r->running so later lookups for the same name wait on it instead of
 * querying again.
 *
 *   HOST job   A and AAAA queries at once; when both are back, an answer
 *              with one host (IPv4 addresses first).
 *   MX job     the MX query; then, for each MX host (or for the domain
 *              itself when there are no MX records: implicit MX), the
 *              host's answer: from the cache, from a HOST job already
 *              running (shared with other domains that use the same MX
 *              host), or from a new HOST job.  When every host is known,
 *              the MX answer is built from them.
 *
 * A job counts what it waits for in `pending` (its queries, then for an MX
 * job its hosts) and moves on when that reaches zero.  c-ares can call a
 * query's callback before ares_query returns (a socket that could not be
 * opened), so while a job is issuing queries or collecting hosts it is
 * `starting`, and only the code that set `starting` moves it on.
 *
 * A finished job's answer goes into the cache (unless it is a temporary
 * failure), the MX jobs waiting on it are told at once, and the job moves
 * to r->done_jobs, where dns.c runs the callers' callbacks.
 *
 * Time: cache expiry counts from the now_ms of the lookup that started the
 * job (an MX job's hosts use the MX job's): the answer arrives later, so it
 * expires a little early, never late.
 */
#include "net/dns_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DNS_WIRE_MX_MAX 256 /* MX records read from one answer, before sorting */
#define DNS_ERROR_LEN	320

const char dns_nomem_text[] = "out of memory in the DNS resolver";

static void dns_job_step(struct dns_job *job);

static void dns_joblist_append(struct dns_joblist *l, struct dns_job *job)
{
	job->next = NULL;
	job->prev = l->tail;
	if (l->tail)
		l->tail->next = job;
	else
		l->head = job;
	l->tail = job;
}

void dns_joblist_remove(struct dns_joblist *l, struct dns_job *job)
{
	if (job->prev)
		job->prev->next = job->next;
	else
		l->head = job->next;
	if (job->next)
		job->next->prev = job->prev;
	else
		l->tail = job->prev;
	job->prev = job->next = NULL;
}

static uint64_t dns_clamp_ttl(const struct dns_resolver *r, uint32_t ttl_s)
{
	uint64_t ms = (uint64_t)ttl_s * 1000;

	return PT_MIN(PT_MAX(ms, r->min_ttl_ms), r->max_ttl_ms);
}

/* ---- jobs: waiting and finishing ---------------------------------------- */

int dns_wait(struct dns_job *job, dns_result_fn cb, void *arg, struct dns_job *parent, size_t index)
{
	struct dns_waiter *w = calloc(1, sizeof(*w));

	if (!w)
		return PT_NOMEM;
	w->cb = cb;
	w->arg = arg;
	w->parent = parent;
	w->index = index;
	*job->waiters_tail = w;
	job->waiters_tail = &w->next;
	return PT_OK;
}

void dns_job_free(struct dns_job *job)
{
	struct dns_waiter *w;

	while ((w = job->waiters) != NULL) {
		job->waiters = w->next;
		free(w);
	}
	for (size_t i = 0; i < job->n_hosts; i++) {
		free(job->hosts[i].name);
		dns_answer_unref(job->hosts[i].answer);
	}
	free(job->hosts);
	free(job->addrs[0]);
	free(job->addrs[1]);
	dns_answer_unref(job->answer);
	free(job);
}

/* Hand the answer to the MX jobs waiting for this host; callers' callbacks
 * stay on the job for dns_deliver. */
static void dns_job_notify_parents(struct dns_job *job)
{
	struct dns_waiter *parents = NULL, **wp = &job->waiters, *w;

	job->waiters_tail = &job->waiters;
	while ((w = *wp) != NULL) {
		if (w->parent) {
			*wp = w->next;
			w->next = parents;
			parents = w;
		} else {
			job->waiters_tail = &w->next;
			wp = &w->next;
		}
	}
	while ((w = parents) != NULL) {
		struct dns_job *parent = w->parent;
		parents = w->next;
		parent->hosts[w->index].answer = dns_answer_ref(job->answer);
		free(w);
		if (--parent->pending == 0 && !parent->starting)
			dns_job_step(parent);
	}
}

static void dns_job_finish(struct dns_job *job, const struct dns_draft *d)
{
	struct dns_resolver *r = job->r;
	struct dns_answer *a = dns_answer_new(d);

	if (!a)
		a = dns_answer_ref(r->nomem);
	job->answer = a;
	job->done = true;
	pt_strmap_del(&r->running[job->kind], job->name);
	dns_joblist_remove(&r->running_jobs, job);
	dns_joblist_append(&r->done_jobs, job);
	/* Out of memory here only means the next lookup asks again. */
	if (a->result.status != DNS_TEMPFAIL)
		(void)dns_cache_put(&r->cache, a);
	dns_job_notify_parents(job);
}

/* ---- replies ------------------------------------------------------------ */

static void dns_reply_tempfail(struct dns_reply *reply, int ares_status)
{
	reply->outcome = DNS_OUT_TEMPFAIL;
	reply->ares_status = ares_status;
	reply->valid_ms = 0;
}

/* NXDOMAIN, no data, or a failure; negative answers last as RFC 2308 5 says. */
static void dns_reply_negative(const struct dns_resolver *r, struct dns_reply *reply, int status,
			       const unsigned char *abuf, int alen)
{
	uint32_t ttl;

	if (status != ARES_ENODATA && status != ARES_ENOTFOUND) {
		dns_reply_tempfail(reply, status);
		return;
	}
	reply->outcome = status == ARES_ENOTFOUND ? DNS_OUT_NXDOMAIN : DNS_OUT_NODATA;
	if (dns_wire_negative_ttl(abuf, alen, &ttl) == PT_OK)
		reply->valid_ms = dns_clamp_ttl(r, ttl);
	else
		reply->valid_ms = r->negative_ttl_ms;
}

static int dns_mx_host_cmp(const void *a, const void *b)
{
	const struct dns_mx_host *x = a, *y = b;

	if (x->preference != y->preference)
		return x->preference < y->preference ? -1 : 1;
	return strcmp(x->name, y->name);
}

static bool dns_mx_seen(const struct dns_mx_host *hosts, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(hosts[i].name, name) == 0)
			return true;
	return false;
}

/*
 * Keep the MX hosts: preference order, ties by name (RFC 5321 5.1 leaves
 * ties to chance; a fixed order keeps every shard's site name the same), a
 * name listed twice only at its best preference, at most DNS_MAX_MX_HOSTS.
 * Exchanges that are not valid host names are dropped.
 */
static int dns_mx_keep(struct dns_job *job, const struct dns_wire_mx *mx, size_t n)
{
	char name[DNS_NAME_MAX + 1];
	size_t kept = 0;

	for (size_t i = 0; i < n; i++)
		if (mx[i].name[0] == '\0') /* RFC 7505 3: exchange "." */
			job->null_mx = true;
	if (job->null_mx)
		return PT_OK;
	job->hosts = calloc(n, sizeof(*job->hosts));
	if (!job->hosts)
		return PT_NOMEM;
	for (size_t i = 0; i < n; i++) {
		if (dns_name_normalize(mx[i].name, name) != PT_OK)
			continue;
		job->hosts[kept].name = strdup(name);
		if (!job->hosts[kept].name)
			return PT_NOMEM;
		job->hosts[kept++].preference = mx[i].preference;
		job->n_hosts = kept;
	}
	qsort(job->hosts, kept, sizeof(*job->hosts), dns_mx_host_cmp);
	job->n_hosts = 0;
	for (size_t i = 0; i < kept; i++) {
		if (job->n_hosts < DNS_MAX_MX_HOSTS &&
		    !dns_mx_seen(job->hosts, job->n_hosts, job->hosts[i].name))
			job->hosts[job->n_hosts++] = job->hosts[i];
		else
			free(job->hosts[i].name);
	}
	return PT_OK;
}

static void dns_mx_reply(struct dns_job *job, int status, const unsigned char *abuf, int alen)
{
	struct dns_wire_mx mx[DNS_WIRE_MX_MAX];
	size_t n = 0;
	uint32_t ttl;
	int rc;

	if (status == ARES_SUCCESS &&
	    dns_wire_mx(abuf, alen, mx, DNS_WIRE_MX_MAX, &n, &ttl) != PT_OK)
		status = ARES_EBADRESP;
	if (status == ARES_SUCCESS && n > 0) {
		rc = dns_mx_keep(job, mx, n);
		for (size_t i = 0; i < n; i++)
			ares_free_string(mx[i].name);
		if (rc != PT_OK) {
			dns_reply_tempfail(&job->reply[0], ARES_ENOMEM);
			return;
		}
		job->reply[0].outcome = DNS_OUT_DATA;
		job->reply[0].valid_ms = dns_clamp_ttl(job->r, ttl);
		return;
	}
	if (status == ARES_SUCCESS) /* only CNAMEs: no MX at the end of the chain */
		status = ARES_ENODATA;
	dns_reply_negative(job->r, &job->reply[0], status, abuf, alen);
}

static void dns_host_reply(struct dns_job *job, int slot, int status, const unsigned char *abuf,
			   int alen)
{
	int family = slot == 0 ? AF_INET : AF_INET6;
	struct dns_addr addrs[DNS_MAX_ADDRS];
	size_t n = 0;
	uint32_t ttl;

	if (status == ARES_SUCCESS &&
	    dns_wire_addrs(abuf, alen, family, addrs, DNS_MAX_ADDRS, &n, &ttl) != PT_OK)
		status = ARES_EBADRESP;
	if (status == ARES_SUCCESS && n > 0) {
		job->addrs[slot] = malloc(n * sizeof(*addrs));
		if (!job->addrs[slot]) {
			dns_reply_tempfail(&job->reply[slot], ARES_ENOMEM);
			return;
		}
		memcpy(job->addrs[slot], addrs, n * sizeof(*addrs));
		job->n_addrs[slot] = n;
		job->reply[slot].outcome = DNS_OUT_DATA;
		job->reply[slot].valid_ms = dns_clamp_ttl(job->r, ttl);
		return;
	}
	if (status == ARES_SUCCESS)
		status = ARES_ENODATA;
	dns_reply_negative(job->r, &job->reply[slot], status, abuf, alen);
}

static void dns_query_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_query *q = arg;
	struct dns_job *job = q->job;

	(void)timeouts;
	if (job->r->destroying) /* ARES_EDESTRUCTION: dns_resolver_free frees the job */
		return;
	if (job->kind == DNS_KIND_MX)
		dns_mx_reply(job, status, abuf, alen);
	else
		dns_host_reply(job, q->slot, status, abuf, alen);
	if (--job->pending == 0 && !job->starting)
		dns_job_step(job);
}

static void dns_job_query(struct dns_job *job, int slot, int type)
{
	job->query[slot].job = job;
	job->query[slot].slot = slot;
	job->pending++;
	job->r->stats.queries_sent++;
	ares_query(job->r->channel, job->name, DNS_CLASS_IN, type, dns_query_done,
		   &job->query[slot]);
}

/* ---- finishing a host job ------------------------------------------------ */

static void dns_host_finish(struct dns_job *job)
{
	const struct dns_reply *v4 = &job->reply[0], *v6 = &job->reply[1];
	const struct dns_reply *failed = v4->outcome == DNS_OUT_TEMPFAIL   ? v4
					 : v6->outcome == DNS_OUT_TEMPFAIL ? v6
									   : NULL;
	struct dns_addr addrs[2 * DNS_MAX_ADDRS];
	struct dns_draft_host host = {.name = job->name, .addrs = addrs};
	struct dns_draft d = {.kind = DNS_KIND_HOST, .name = job->name};
	uint64_t valid = UINT64_MAX;
	char error[DNS_ERROR_LEN];

	for (int i = 0; i < 2; i++) {
		if (job->n_addrs[i] > 0)
			memcpy(addrs + host.n_addrs, job->addrs[i],
			       job->n_addrs[i] * sizeof(*addrs));
		host.n_addrs += job->n_addrs[i];
		if (job->reply[i].outcome != DNS_OUT_TEMPFAIL)
			valid = PT_MIN(valid, job->reply[i].valid_ms);
	}
	if (host.n_addrs > 0) {
		d.status = DNS_OK;
		d.hosts = &host;
		d.n_hosts = 1;
		if (failed) /* the other family failed: ask again soon */
			valid = PT_MIN(valid, job->r->negative_ttl_ms);
	} else if (failed) {
		d.status = DNS_TEMPFAIL;
		valid = 0;
		snprintf(error, sizeof(error), "A/AAAA lookup for %s failed: %s", job->name,
			 ares_strerror(failed->ares_status));
		d.error = error;
	} else if (v4->outcome == DNS_OUT_NXDOMAIN && v6->outcome == DNS_OUT_NXDOMAIN) {
		d.status = DNS_NXDOMAIN;
		snprintf(error, sizeof(error), "%s: no such domain (NXDOMAIN)", job->name);
		d.error = error;
	} else {
		d.status = DNS_NO_ADDRESS;
		snprintf(error, sizeof(error), "%s has no A or AAAA record", job->name);
		d.error = error;
	}
	d.expires_ms = job->start_ms + valid;
	dns_job_finish(job, &d);
}

/* ---- finishing an MX job ------------------------------------------------- */

static void dns_job_fail(struct dns_job *job, enum dns_status status, uint64_t valid_ms,
			 const char *error)
{
	struct dns_draft d = {
	    .kind = job->kind,
	    .status = status,
	    .name = job->name,
	    .error = error,
	    .expires_ms = job->start_ms + valid_ms,
	};

	dns_job_finish(job, &d);
}

/* Look up one MX host's addresses, or wait for them. */
static void dns_mx_host_obtain(struct dns_job *job, size_t i);

/* The MX reply is in: fail, or go and find the hosts' addresses. */
static void dns_mx_answered(struct dns_job *job)
{
	const struct dns_reply *mx = &job->reply[0];
	char error[DNS_ERROR_LEN];

	switch (mx->outcome) {
	case DNS_OUT_TEMPFAIL:
		snprintf(error, sizeof(error), "MX lookup for %s failed: %s", job->name,
			 ares_strerror(mx->ares_status));
		dns_job_fail(job, DNS_TEMPFAIL, 0, error);
		return;
	case DNS_OUT_NXDOMAIN:
		snprintf(error, sizeof(error), "%s: no such domain (NXDOMAIN)", job->name);
		dns_job_fail(job, DNS_NXDOMAIN, mx->valid_ms, error);
		return;
	case DNS_OUT_NODATA: /* RFC 5321 5.1: the domain is its own MX */
		job->hosts = calloc(1, sizeof(*job->hosts));
		if (!job->hosts || !(job->hosts[0].name = strdup(job->name))) {
			dns_job_fail(job, DNS_TEMPFAIL, 0, dns_nomem_text);
			return;
		}
		job->n_hosts = 1;
		job->implicit_mx = true;
		break;
	case DNS_OUT_DATA:
		if (job->null_mx) {
			snprintf(error, sizeof(error),
				 "%s does not accept mail (null MX, RFC 7505)", job->name);
			dns_job_fail(job, DNS_NULL_MX, mx->valid_ms, error);
			return;
		}
		break;
	}
	job->phase = DNS_PHASE_HOSTS;
	job->starting = true;
	for (size_t i = 0; i < job->n_hosts; i++)
		dns_mx_host_obtain(job, i);
	job->starting = false;
	if (job->pending == 0)
		dns_job_step(job);
}

static void dns_mx_finish(struct dns_job *job)
{
	struct dns_draft_host ok[DNS_MAX_MX_HOSTS];
	const char *names[DNS_MAX_MX_HOSTS];
	const char *failed = NULL;
	struct dns_draft d = {
	    .kind = DNS_KIND_MX,
	    .name = job->name,
	    .implicit_mx = job->implicit_mx,
	    .hosts = ok,
	    .expires_ms = job->start_ms + job->reply[0].valid_ms,
	};
	char error[DNS_ERROR_LEN], *site = NULL;

	for (size_t i = 0; i < job->n_hosts; i++) {
		const struct dns_result *h = &job->hosts[i].answer->result;
		names[i] = job->hosts[i].name;
		if (h->status == DNS_TEMPFAIL) {
			failed = failed ? failed : h->error;
			continue;
		}
		d.expires_ms = PT_MIN(d.expires_ms, h->expires_ms);
		if (h->status != DNS_OK)
			continue;
		ok[d.n_hosts].name = job->hosts[i].name;
		ok[d.n_hosts].preference = job->hosts[i].preference;
		ok[d.n_hosts].addrs = h->hosts[0].addrs;
		ok[d.n_hosts++].n_addrs = h->hosts[0].n_addrs;
	}
	if (d.n_hosts > 0) {
		d.status = DNS_OK;
		if (failed) /* one host is missing for now: ask again soon */
			d.expires_ms =
			    PT_MIN(d.expires_ms, job->start_ms + job->r->negative_ttl_ms);
		/* Every MX host counts, with an address or not: the site must not
		 * change with one host's passing trouble. */
		if (!job->implicit_mx && !(d.site = site = dns_site_factor(names, job->n_hosts))) {
			dns_job_fail(job, DNS_TEMPFAIL, 0, dns_nomem_text);
			return;
		}
	} else if (failed) {
		d.status = DNS_TEMPFAIL;
		d.expires_ms = job->start_ms;
		if (job->implicit_mx)
			snprintf(error, sizeof(error), "%s", failed);
		else
			snprintf(error, sizeof(error), "no MX host of %s could be resolved: %s",
				 job->name, failed);
		d.error = error;
	} else {
		d.status = DNS_NO_ADDRESS;
		if (job->implicit_mx)
			snprintf(error, sizeof(error),
				 "%s has no MX record and no A or AAAA record", job->name);
		else
			snprintf(error, sizeof(error), "no MX host of %s has an A or AAAA record",
				 job->name);
		d.error = error;
	}
	dns_job_finish(job, &d);
	free(site);
}

static void dns_job_step(struct dns_job *job)
{
	if (job->kind == DNS_KIND_HOST)
		dns_host_finish(job);
	else if (job->phase == DNS_PHASE_QUERIES)
		dns_mx_answered(job);
	else
		dns_mx_finish(job);
}

/* ---- starting jobs ------------------------------------------------------- */

/* A new job for name (normalized).  It may be done already when this
 * returns (a query failed at once).  NULL when out of memory. */
static struct dns_job *dns_job_start(struct dns_resolver *r, enum dns_kind kind, const char *name,
				     uint64_t now_ms)
{
	struct dns_job *job = calloc(1, sizeof(*job));

	if (!job)
		return NULL;
	job->r = r;
	job->kind = kind;
	job->start_ms = now_ms;
	job->waiters_tail = &job->waiters;
	strcpy(job->name, name);
	if (pt_strmap_put(&r->running[kind], job->name, job) != PT_OK) {
		free(job);
		return NULL;
	}
	dns_joblist_append(&r->running_jobs, job);
	job->starting = true;
	if (kind == DNS_KIND_MX) {
		dns_job_query(job, 0, DNS_TYPE_MX);
	} else {
		dns_job_query(job, 0, DNS_TYPE_A);
		dns_job_query(job, 1, DNS_TYPE_AAAA);
	}
	job->starting = false;
	if (job->pending == 0)
		dns_job_step(job);
	return job;
}

/* An answer made on the spot (not cached): an address literal, or a name
 * that is not one.  PT_OK with a reference in *answer, or PT_NOMEM. */
int dns_answer_now(struct dns_resolver *r, enum dns_kind kind, const char *name,
		   const struct dns_addr *addr, uint64_t now_ms, struct dns_answer **answer)
{
	char shown[DNS_NAME_MAX + 1], error[DNS_ERROR_LEN];
	struct dns_draft_host host = {.name = addr ? addr->text : "", .addrs = addr, .n_addrs = 1};
	struct dns_draft d = {.kind = kind, .name = shown, .expires_ms = now_ms};
	size_t i;

	/* Lowercase, and nothing unprintable: it goes into logs and bounces. */
	for (i = 0; name[i] && i < DNS_NAME_MAX; i++) {
		unsigned char c = (unsigned char)name[i];
		shown[i] = c < 0x20 || c >= 0x7f ? '?' : (char)tolower(c);
	}
	shown[i] = '\0';
	if (addr) {
		d.status = DNS_OK;
		d.implicit_mx = kind == DNS_KIND_MX;
		d.hosts = &host;
		d.n_hosts = 1;
		d.site = addr->text;
		d.expires_ms = now_ms + r->max_ttl_ms;
	} else {
		d.status = DNS_NXDOMAIN;
		snprintf(error, sizeof(error), "\"%s\" is not a valid domain name", shown);
		d.error = error;
	}
	*answer = dns_answer_new(&d);
	return *answer ? PT_OK : PT_NOMEM;
}

/*
 * The answer for (kind, name) if it can be had now (PT_OK, a reference in
 * *answer; *cached says whether the cache gave it), else the job that will
 * give it (PT_AGAIN, *job), or PT_NOMEM.
 */
int dns_obtain(struct dns_resolver *r, enum dns_kind kind, const char *name, uint64_t now_ms,
	       struct dns_answer **answer, struct dns_job **job, bool *cached)
{
	struct dns_addr addr;

	*cached = false;
	if (kind == DNS_KIND_HOST && dns_parse_ip(name, &addr) == PT_OK)
		return dns_answer_now(r, kind, name, &addr, now_ms, answer);
	*answer = dns_cache_get(&r->cache, kind, name, now_ms);
	if (*answer) {
		dns_answer_ref(*answer);
		*cached = true;
		return PT_OK;
	}
	*job = pt_strmap_get(&r->running[kind], name);
	if (*job)
		return PT_AGAIN;
	*job = dns_job_start(r, kind, name, now_ms);
	if (!*job)
		return PT_NOMEM;
	if (!(*job)->done)
		return PT_AGAIN;
	/* Done before anyone could wait on it: nothing to deliver. */
	*answer = dns_answer_ref((*job)->answer);
	dns_joblist_remove(&r->done_jobs, *job);
	dns_job_free(*job);
	return PT_OK;
}

static void dns_mx_host_obtain(struct dns_job *job, size_t i)
{
	struct dns_mx_host *host = &job->hosts[i];
	struct dns_job *host_job;
	bool cached;
	int rc;

	rc = dns_obtain(job->r, DNS_KIND_HOST, host->name, job->start_ms, &host->answer, &host_job,
			&cached);
	if (rc == PT_AGAIN && dns_wait(host_job, NULL, NULL, job, i) == PT_OK)
		job->pending++;
	else if (rc != PT_OK)
		host->answer = dns_answer_ref(job->r->nomem);
}
