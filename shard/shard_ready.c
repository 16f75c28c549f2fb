/*
 * shard_ready.c -- ready queues and the shaping of each egress path.
 *
 * A ready queue holds the units that are due now for one (egress source,
 * site) pair, named "source->site", on the shard that owns the site, oldest
 * first.  Its config comes from the policy's
 * get_egress_path_config(routing_domain, source, site), cached for
 * SHARD_CONFIG_TTL_MS, with a copy of the source's (bind address, EHLO
 * name, port: shard_source.c) taken at the same time.  A source the policy
 * cannot resolve fails each unit that arrives (451 4.3.5, its retry
 * follows), never sends it from another address.  The limits it enforces,
 * all on this one shard, so none needs a lock:
 *
 *   connection_limit        open connections (connecting ones included);
 *   max_connection_rate     new connections, GCRA spacing;
 *   max_message_rate        transactions started (one per message, however
 *                           many recipients it carries), GCRA spacing;
 *   max_deliveries_per_connection   then the connection says QUIT;
 *   idle_timeout            a connection with nothing to send says QUIT.
 *
 * Rates are enforced as evenly spaced events with no burst: "20/s" lets a
 * transaction start every 50 ms.  A receiver's limit is usually a rate it
 * measures over short windows, so spacing is the polite reading of it;
 * KumoMTA's throttle allows a burst (documented in docs/ARCHITECTURE.md).
 *
 * Connections are opened while there are more ready units than connections
 * still connecting, up to connection_limit.  An idle connection (READY, no
 * transaction) takes new units at once.  When a connection fails before
 * its session was ready (every address refused or timed out, a banner or
 * EHLO refusal, TLS required but not offered), and it was the queue's last
 * connection, every ready unit gets the failure as a TransientFailure and
 * is rescheduled: a dead site never spins.  While other connections live,
 * no new one is opened until one succeeds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ptime.h"
#include "shard/shard_int.h"

#define SHARD_CONFIG_TTL_MS	 60000
#define SHARD_READY_IDLE_MS	 60000
#define SHARD_BATCH_SKIP	 8 /* units of other messages shard_ready_take passes over */

void shard_rate_set(struct shard_rate *r, const struct policy_rate *rate)
{
	r->interval_us = rate->n ? rate->period_ms * 1000 / rate->n : 0;
	if (rate->n && r->interval_us == 0)
		r->interval_us = 1;
}

/* GCRA with no burst: an event may happen when the theoretical arrival
 * time has come; each event pushes it one interval further. */
bool shard_rate_take(struct shard_rate *r, uint64_t now_us, uint64_t *wait_us)
{
	if (r->interval_us == 0)
		return true;
	if (r->tat_us > now_us) {
		*wait_us = r->tat_us - now_us;
		return false;
	}
	/* Idle time banks nothing: the next event is one interval after this. */
	r->tat_us = PT_MAX(r->tat_us, now_us) + r->interval_us;
	return true;
}

/* The source's config (cached per shard: shard_source.c), copied so that a
 * refresh of the cache never changes a queue with open connections. */
static void ready_load_source(struct shard *s, struct shard_ready *rq)
{
	struct shard_source *src = shard_source_get(s, rq->source);

	policy_egress_source_free(&rq->src);
	free(rq->src_error);
	rq->src_error = NULL;
	rq->has_bind = false;
	if (!src->error && policy_egress_source_copy(&rq->src, &src->cfg) == PT_OK) {
		rq->bind = src->bind;
		rq->has_bind = src->has_bind;
		return;
	}
	rq->src_error = strdup(src->error ? src->error : "out of memory copying its configuration");
	if (!rq->src_error)
		pt_panic("out of memory for ready queue %s", rq->key);
}

static void ready_load(struct shard *s, struct shard_ready *rq)
{
	struct policy_egress_path cfg;
	char err[512];

	ready_load_source(s, rq);
	if (policy_get_egress_path_config(s->policy, rq->routing_domain, rq->source, rq->site, &cfg,
					  err, sizeof(err)) != PT_OK) {
		pt_error("get_egress_path_config for %s: %s; using the defaults", rq->key, err);
		policy_egress_path_defaults(&cfg);
	}
	policy_egress_path_free(&rq->cfg);
	rq->cfg = cfg;
	if (rq->cfg.connection_limit == 0)
		rq->cfg.connection_limit = 1;
	if (rq->cfg.max_recipients_per_batch == 0)
		rq->cfg.max_recipients_per_batch = 1;
	shard_auto_apply_overrides(rq); /* automation's SetConfig wins while in force */
	shard_rate_set(&rq->msg_rate, &rq->cfg.max_message_rate);
	shard_rate_set(&rq->conn_rate, &rq->cfg.max_connection_rate);
	rq->cfg_expires_ms = pt_monotonic_ms() + SHARD_CONFIG_TTL_MS;
}

void shard_ready_limits_changed(struct shard_ready *rq)
{
	if (rq->cfg.connection_limit == 0)
		rq->cfg.connection_limit = 1;
	shard_rate_set(&rq->msg_rate, &rq->cfg.max_message_rate);
	shard_rate_set(&rq->conn_rate, &rq->cfg.max_connection_rate);
}

static void ready_free(struct shard_ready *rq)
{
	shard_auto_free(rq);
	policy_egress_path_free(&rq->cfg);
	policy_egress_source_free(&rq->src);
	free(rq->src_error);
	for (size_t i = 0; i < rq->n_mx_list; i++)
		free(rq->mx_list[i]);
	free(rq->mx_list);
	policy_queue_amqp_free(rq->amqp);
	free(rq->key);
	free(rq->site);
	free(rq->source);
	free(rq->domain);
	free(rq->routing_domain);
	free(rq);
}

static void ready_kick_timer_fn(struct pt_timer *t)
{
	struct shard_ready *rq = pt_container_of(t, struct shard_ready, kick_timer);

	shard_ready_kick(rq->shard, rq);
}

static struct shard_ready *ready_new(struct shard *s, struct shard_unit *u, const char *key)
{
	struct shard_ready *rq = calloc(1, sizeof(*rq));
	const struct policy_queue_config *qc = &u->sched->cfg;

	if (!rq)
		return NULL;
	rq->shard = s;
	rq->key = strdup(key);
	rq->site = strdup(u->site);
	rq->source = strdup(u->source);
	rq->domain = strdup(u->routing_domain ? u->routing_domain : u->domain); /* for MX */
	rq->routing_domain = strdup(u->routing_domain ? u->routing_domain : u->domain);
	if (!rq->key || !rq->site || !rq->source || !rq->domain || !rq->routing_domain)
		goto fail;
	rq->proto = &shard_out_smtp;
	if (qc->http) {
		/* The URL's host:port is the one host to connect to. */
		rq->proto = &shard_out_http;
		if (!(rq->mx_list = calloc(1, sizeof(char *))) ||
		    !(rq->mx_list[0] = strdup(qc->http->connect)))
			goto fail;
		rq->n_mx_list = 1;
	} else if (qc->amqp) {
		/* The broker is the one host; its login is the site's (the URL's
		 * user and vhost are in the site, policy_queue_amqp.c). */
		rq->proto = &shard_out_amqp;
		if (policy_queue_amqp_copy(&rq->amqp, qc->amqp) != PT_OK ||
		    !(rq->mx_list = calloc(1, sizeof(char *))) ||
		    !(rq->mx_list[0] = strdup(qc->amqp->connect)))
			goto fail;
		rq->n_mx_list = 1;
	} else if (qc->n_mx_list) {
		rq->mx_list = calloc(qc->n_mx_list, sizeof(char *));
		if (!rq->mx_list)
			goto fail;
		for (size_t i = 0; i < qc->n_mx_list; i++, rq->n_mx_list++)
			if (!(rq->mx_list[i] = strdup(qc->mx_list[i])))
				goto fail;
	}
	pt_timer_init(&rq->kick_timer, ready_kick_timer_fn);
	policy_egress_path_defaults(&rq->cfg);
	ready_load(s, rq);
	if (pt_strmap_put(&s->readies, rq->key, rq) != PT_OK)
		goto fail;
	return rq;
fail:
	ready_free(rq);
	return NULL;
}

/* The queue's source could not be resolved: u waits for its retry. */
static void ready_fail_source(struct shard *s, struct shard_ready *rq, struct shard_unit *u)
{
	struct smtp_client_reply r;
	struct shard_log_outcome lo = {.reply = &r};

	smtp_client_local_reply(&r, 451, 3, 5, NULL, "egress source '%s' is not usable: %s",
				rq->source, rq->src_error);
	u->ready = NULL;
	shard_unit_set_state(u, UNIT_SCHEDULED);
	if (rq->n_ready == 0 && rq->n_conns == 0)
		rq->idle_since_ms = pt_monotonic_ms();
	shard_unit_failed(s, u, &lo);
}

/* The ready queue "source->site" of u, made on first use.  The key is as
 * long as it needs to be: a smart-host site can run to kilobytes. */
static struct shard_ready *ready_of(struct shard *s, struct shard_unit *u)
{
	char buf[512], *key = buf;
	size_t n_source, n_site;
	struct shard_ready *rq;

	/* Routing chose the source (shard_source_pick) before it chose the site. */
	if (!u->source)
		pt_panic("unit %s for %s reached a ready queue without an egress source", u->id,
			 u->recipient);
	n_source = strlen(u->source);
	n_site = strlen(u->site);
	if (n_source + 2 + n_site + 1 > sizeof(buf) && !(key = malloc(n_source + 2 + n_site + 1)))
		pt_panic("out of memory for a ready queue name");
	memcpy(key, u->source, n_source);
	memcpy(key + n_source, "->", 2);
	memcpy(key + n_source + 2, u->site, n_site + 1);
	rq = pt_strmap_get(&s->readies, key);
	if (!rq && !(rq = ready_new(s, u, key)))
		pt_panic("out of memory for ready queue %s", key);
	if (key != buf)
		free(key);
	return rq;
}

void shard_ready_add(struct shard *s, struct shard_unit *u)
{
	struct shard_ready *rq = ready_of(s, u);

	if (pt_monotonic_ms() >= rq->cfg_expires_ms && rq->n_conns == 0)
		ready_load(s, rq);
	if (rq->src_error) {
		ready_fail_source(s, rq, u);
		return;
	}
	shard_unit_set_state(u, UNIT_READY);
	u->ready = rq;
	u->next = NULL;
	u->prev = rq->tail;
	if (rq->tail)
		rq->tail->next = u;
	else
		rq->head = u;
	rq->tail = u;
	rq->n_ready++;
	shard_ready_kick(s, rq);
}

static void ready_unlink(struct shard_ready *rq, struct shard_unit *u)
{
	if (u->prev)
		u->prev->next = u->next;
	else
		rq->head = u->next;
	if (u->next)
		u->next->prev = u->prev;
	else
		rq->tail = u->prev;
	u->prev = u->next = NULL;
	rq->n_ready--;
}

void shard_ready_requeue(struct shard *s, struct shard_ready *rq, struct shard_unit *u)
{
	(void)s;
	shard_unit_set_state(u, UNIT_READY);
	u->ready = rq;
	u->prev = NULL;
	u->next = rq->head;
	if (rq->head)
		rq->head->prev = u;
	else
		rq->tail = u;
	rq->head = u;
	rq->n_ready++;
}

/* Recipients of one message travel together (one transaction, several
 * RCPTs); they arrive together and sit next to each other. */
bool shard_ready_same_message(const struct shard_unit *first, const struct shard_unit *u)
{
	return u->home == first->home && u->slot == first->slot;
}

bool shard_ready_same_queue(const struct shard_unit *first, const struct shard_unit *u)
{
	return u->sched == first->sched;
}

/* A few units that do not go with the head (SHARD_BATCH_SKIP) are passed
 * over, so a queue of units that never go together costs no long walk. */
size_t shard_ready_take(struct shard_ready *rq, struct shard_unit **out, size_t max)
{
	struct shard_unit *first = rq->head, *u, *next;
	size_t n = 0, skipped = 0;

	if (!first || max == 0)
		return 0;
	for (u = first; u && n < max && skipped < SHARD_BATCH_SKIP; u = next) {
		next = u->next;
		if (u != first && !rq->proto->same_batch(first, u)) {
			skipped++;
			continue;
		}
		ready_unlink(rq, u);
		shard_unit_set_state(u, UNIT_INFLIGHT);
		out[n++] = u;
	}
	return n;
}

/* True when the ready units make more than k transactions: units next to
 * each other that go together (the protocol's same_batch: shard_ready_take)
 * make one, so a 1,000-recipient message needs one connection, not one per
 * recipient. */
static bool ready_more_batches_than(const struct shard_ready *rq, unsigned k)
{
	const struct shard_unit *u = rq->head, *first = NULL;
	size_t max = rq->proto->batch_max(rq);
	unsigned n_batches = 0, in_batch = 0;

	for (; u; u = u->next) {
		if (!first || !rq->proto->same_batch(first, u) || in_batch == max) {
			if (++n_batches > k)
				return true;
			first = u;
			in_batch = 0;
		}
		in_batch++;
	}
	return false;
}

bool shard_ready_suspended(struct shard *s, struct shard_ready *rq, uint64_t *until_ms)
{
	return shard_auto_suspended(rq, pt_monotonic_ms(), until_ms) ||
	       shard_admin_ready_held(s, rq, until_ms);
}

void shard_ready_kick(struct shard *s, struct shard_ready *rq)
{
	uint64_t wait_us, until_ms;

	if (!s || s->state != SHARD_RUNNING || rq->n_ready == 0)
		return;
	if (shard_ready_suspended(s, rq, &until_ms)) {
		/* Shaping automation or suspend-ready-q: nothing starts until then. */
		pt_timer_add(&s->wheel, &rq->kick_timer, until_ms + 1);
		return;
	}
	for (struct shard_out *o = rq->conns; o && rq->n_ready > 0; o = o->next)
		if (o->ready && !o->waiting_rate && !o->closing)
			shard_out_wake(o);
	while (rq->n_conns < rq->cfg.connection_limit && rq->n_consecutive_failures == 0 &&
	       ready_more_batches_than(rq, rq->n_connecting)) {
		if (!shard_rate_take(&rq->conn_rate, pt_wall_us(), &wait_us)) {
			pt_timer_add(&s->wheel, &rq->kick_timer,
				     pt_monotonic_ms() + wait_us / 1000 + 1);
			break;
		}
		if (!shard_out_open(s, rq))
			break;
	}
}

/* The site cannot be reached now: every ready unit is deferred with the
 * last connection's failure. */
static void ready_defer_all(struct shard *s, struct shard_ready *rq, struct shard_out *o)
{
	struct smtp_client_reply r = o->fail;
	struct shard_log_outcome lo = {.reply = &r, .protocol = rq->proto->name};

	shard_auto_observe(s, rq, &r);
	if (o->cur) {
		lo.peer_name = o->cur->name;
		lo.peer_addr = o->cur->addr.text;
	}
	while (rq->head) {
		struct shard_unit *u = rq->head;

		ready_unlink(rq, u);
		u->ready = NULL;
		shard_unit_failed(s, u, &lo);
	}
}

void shard_ready_conn_gone(struct shard *s, struct shard_ready *rq, struct shard_out *o,
			   bool failed_before_ready)
{
	if (failed_before_ready)
		rq->n_consecutive_failures++;
	if (rq->n_conns == 0) {
		if (failed_before_ready)
			ready_defer_all(s, rq, o);
		rq->n_consecutive_failures = 0;
		if (rq->n_ready == 0)
			rq->idle_since_ms = pt_monotonic_ms();
	}
	shard_ready_kick(s, rq);
}

/* Once a second: forget idle ready queues, refresh configs. */
void shard_readies_housekeeping(struct shard *s)
{
	uint64_t now = pt_monotonic_ms();
	struct shard_ready *rq, *gone[64];
	size_t pos = 0, n_gone = 0;

	while ((rq = pt_strmap_next(&s->readies, &pos))) {
		uint64_t expiry = shard_auto_next_expiry(rq);

		if (expiry && expiry <= now)
			ready_load(s, rq); /* an automation override is over */
		if (rq->n_ready == 0 && rq->n_conns == 0 && !pt_timer_armed(&rq->kick_timer) &&
		    now - rq->idle_since_ms > SHARD_READY_IDLE_MS && n_gone < PT_ARRAY_LEN(gone))
			gone[n_gone++] = rq;
	}
	for (size_t i = 0; i < n_gone; i++) {
		pt_strmap_del(&s->readies, gone[i]->key);
		ready_free(gone[i]);
	}
}

/* Drain: idle connections say QUIT; busy ones finish their transaction. */
void shard_readies_shutdown(struct shard *s)
{
	struct shard_ready *rq;
	size_t pos = 0;

	while ((rq = pt_strmap_next(&s->readies, &pos))) {
		pt_timer_del(&s->wheel, &rq->kick_timer);
		for (struct shard_out *o = rq->conns, *next; o; o = next) {
			next = o->next;
			if (o->ready || o->state != OUT_SESSION)
				shard_out_quit(o);
		}
	}
}

void shard_readies_free(struct shard *s)
{
	struct shard_ready *rq;
	size_t pos = 0;

	while ((rq = pt_strmap_next(&s->readies, &pos))) {
		while (rq->head) {
			struct shard_unit *u = rq->head;

			ready_unlink(rq, u);
			shard_unit_free(s, u);
		}
		ready_free(rq);
	}
	pt_strmap_free(&s->readies);
}
