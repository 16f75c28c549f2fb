/*
 * shard_route.c -- scheduled queues, routing and outcomes of delivery units.
 *
 * A unit (one recipient of one message, struct shard_unit) lives on one
 * shard at a time and is in one of four states:
 *
 *   SCHEDULED  its due time is in the future: a timer on the wheel;
 *   ROUTING    due now, waiting for the DNS answer that names its site;
 *   READY      in the ready queue of its site, on the site's owner shard
 *              (shard_ready.c);
 *   INFLIGHT   in a transaction on one of that queue's connections.
 *
 * Routing (DESIGN.md, Message life 2): the scheduled queue's config comes
 * from the policy's get_queue_config (cached per queue name for
 * SHARD_CONFIG_TTL_MS); its egress pool gives the unit's egress source
 * (shard_source.c: weighted round robin, one pick per message); a queue
 * with protocol.smtp.mx_list goes to that
 * fixed host list, whose site name is the list itself; one with
 * protocol.http to its URL's "http://host:port" (shard_out_http.c), one with
 * protocol.amqp to its broker's "amqp://user@host:port/vhost" (shard_out_amqp.c); otherwise the
 * recipient's domain is looked up (MX, then A/AAAA; dns.h) on this shard's
 * resolver and its site is the MX rollup name.  The site's owner is
 * pt_hash_str(site) % N, whatever the source: every ready queue of a site
 * ("source->site") lives on that shard.  When that is another shard the
 * unit's pointer is sent over the ring and the owner adopts it; every
 * throttle therefore lives on exactly one shard and needs no lock.
 *
 * A unit is routed afresh every time it becomes due, so a retry follows
 * DNS changes (a site can move to another owner between attempts).
 *
 * Outcomes (from a connection, or from routing itself for DNS answers):
 *   2xx            Delivery, done;
 *   5xx            Bounce, done;  null MX and NXDOMAIN are 5xx too;
 *   4xx            TransientFailure; the next attempt is due after
 *                  retry_interval * 2^(attempts - 1), capped at
 *                  max_retry_interval; if that is past created + max_age
 *                  the unit expires instead (Expiration, done).
 * The home shard hears about each outcome (shard_home.c) and records it in
 * its spool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ptime.h"
#include "shard/shard_int.h"

#define SHARD_CONFIG_TTL_MS 60000
#define SHARD_SCHED_IDLE_MS 60000

/* "campaign:tenant@domain!routing_domain" into b, parts NULL or "" left out. */
static void queue_compose(struct pt_buf *b, const char *campaign, const char *tenant,
			  const char *domain, const char *routing_domain)
{
	if (campaign && campaign[0])
		pt_buf_printf(b, "%s:", campaign);
	if (tenant && tenant[0])
		pt_buf_printf(b, "%s@", tenant);
	pt_buf_append_str(b, domain);
	if (routing_domain && routing_domain[0])
		pt_buf_printf(b, "!%s", routing_domain);
}

void shard_unit_queue_name(const struct shard_unit *u, struct pt_buf *b)
{
	queue_compose(b, u->campaign, u->tenant, u->domain, u->routing_domain);
}

void shard_queue_name(const struct pt_message *m, const char *domain, struct pt_buf *b)
{
	const char *q = pt_message_get_meta(m, "queue");
	const char *keys[3] = {"campaign", "tenant", "routing_domain"};
	char parts[3][256];

	if (q && policy_meta_string(q, parts[0], sizeof(parts[0])) == PT_OK && parts[0][0]) {
		pt_buf_append_str(b, parts[0]);
		return;
	}
	for (int i = 0; i < 3; i++) {
		const char *json = pt_message_get_meta(m, keys[i]);

		if (!json || policy_meta_string(json, parts[i], sizeof(parts[i])) != PT_OK)
			parts[i][0] = '\0';
	}
	queue_compose(b, parts[0], parts[1], domain, parts[2]);
}

static void unit_dns_cb(void *arg, const struct dns_result *res);

void shard_route_init(struct shard *s)
{
	memset(&s->scheds, 0, sizeof(s->scheds));
}

static void sched_free(struct shard_sched *sq)
{
	policy_queue_config_free(&sq->cfg);
	free(sq->mx_site);
	free(sq->wrr);
	free(sq->name);
	free(sq);
}

void shard_route_free(struct shard *s)
{
	size_t pos = 0;
	struct shard_sched *sq;

	while ((sq = pt_strmap_next(&s->scheds, &pos)))
		sched_free(sq);
	pt_strmap_free(&s->scheds);
}

/* The site name of a fixed host list: the hosts, in order, comma separated. */
static char *sched_mx_site(const struct policy_queue_config *cfg)
{
	struct pt_buf b = PT_BUF_INIT;
	char *site;

	for (size_t i = 0; i < cfg->n_mx_list; i++) {
		if (i)
			pt_buf_append(&b, ",", 1);
		pt_buf_append_str(&b, cfg->mx_list[i]);
	}
	site = strdup(pt_buf_cstr(&b));
	pt_buf_free(&b);
	return site;
}

static void sched_load(struct shard *s, struct shard_sched *sq, const struct shard_unit *u)
{
	struct policy_queue_config cfg;
	char err[512];

	if (policy_get_queue_config(s->policy, u->domain, u->tenant, u->campaign, u->routing_domain,
				    &cfg, err, sizeof(err)) != PT_OK) {
		pt_error("get_queue_config for queue %s: %s; using the defaults", sq->name, err);
		policy_queue_config_defaults(&cfg);
	}
	policy_queue_config_free(&sq->cfg);
	free(sq->mx_site);
	sq->cfg = cfg;
	sq->mx_site = cfg.n_mx_list ? sched_mx_site(&cfg) : NULL;
	if ((cfg.http || cfg.amqp) &&
	    !(sq->mx_site = strdup(cfg.http ? cfg.http->site : cfg.amqp->site)))
		pt_panic("out of memory for queue %s", sq->name);
	shard_rate_set(&sq->rate, &cfg.max_message_rate);
	sq->cfg_expires_ms = pt_monotonic_ms() + SHARD_CONFIG_TTL_MS;
}

static bool unit_active(const struct shard_unit *u)
{
	return u->state == UNIT_READY || u->state == UNIT_INFLIGHT;
}

/* Count u in this shard's scheduled queue for it, made on first use with
 * its config not loaded yet (cfg_expires_ms 0: the next shard_sched_get
 * asks the policy).  Never fails: without memory we panic (a unit must
 * not be dropped silently, and it cannot be kept without its queue). */
static struct shard_sched *sched_attach(struct shard *s, struct shard_unit *u)
{
	struct shard_sched *sq = u->sched;

	if (sq)
		return sq;
	sq = pt_strmap_get(&s->scheds, u->queue);
	if (!sq) {
		sq = calloc(1, sizeof(*sq));
		if (!sq || !(sq->name = strdup(u->queue)) ||
		    pt_strmap_put(&s->scheds, sq->name, sq) != PT_OK)
			pt_panic("out of memory for scheduled queue %s", u->queue);
		policy_queue_config_defaults(&sq->cfg);
	}
	u->sched = sq;
	sq->n_units++;
	if (unit_active(u))
		sq->n_active++;
	return sq;
}

/* This shard's scheduled queue for u, its config loaded or refreshed when
 * due; u is counted in it.  Never NULL (sched_attach). */
struct shard_sched *shard_sched_get(struct shard *s, struct shard_unit *u)
{
	struct shard_sched *sq = sched_attach(s, u);

	if (pt_monotonic_ms() >= sq->cfg_expires_ms)
		sched_load(s, sq, u);
	return sq;
}

static void sched_release(struct shard *s, struct shard_unit *u)
{
	if (!u->sched)
		return;
	if (unit_active(u))
		u->sched->n_active--;
	if (--u->sched->n_units == 0)
		u->sched->idle_since_ms = pt_monotonic_ms();
	u->sched = NULL;
	(void)s;
}

void shard_unit_own(struct shard *s, struct shard_unit *u)
{
	u->at = s;
	u->all_prev = NULL;
	u->all_next = s->units;
	if (s->units)
		s->units->all_prev = u;
	s->units = u;
	s->n_units++;
}

static void unit_disown(struct shard *s, struct shard_unit *u)
{
	if (u->all_prev)
		u->all_prev->all_next = u->all_next;
	else
		s->units = u->all_next;
	if (u->all_next)
		u->all_next->all_prev = u->all_prev;
	u->all_prev = u->all_next = NULL;
	s->n_units--;
	u->at = NULL;
}

void shard_unit_destroy(struct shard_unit *u)
{
	free(u->sender);
	free(u->recipient);
	free(u->queue);
	free(u->tenant);
	free(u->campaign);
	free(u->routing_domain);
	free(u->site);
	free(u->source);
	free(u->pool);
	shard_log_headers_put(u->log_headers);
	free(u);
}

void shard_unit_free(struct shard *s, struct shard_unit *u)
{
	if (!u)
		return;
	pt_timer_del(&s->wheel, &u->timer);
	if (u->state == UNIT_ROUTING)
		dns_cancel(s->dns, unit_dns_cb, u);
	sched_release(s, u);
	unit_disown(s, u);
	shard_unit_destroy(u);
}

void shard_units_free(struct shard *s)
{
	while (s->units)
		shard_unit_free(s, s->units);
}

/* ---- Outcomes ---- */

static void unit_tell_home(struct shard *s, struct shard_unit *u, bool done)
{
	struct shard_msg *msg;

	if (u->home == s->id) {
		shard_home_outcome(s, u->slot, u->rcpt, done, u->num_attempts, u->due_us);
		return;
	}
	msg = calloc(1, sizeof(*msg));
	if (!msg)
		pt_panic("out of memory sending an outcome");
	msg->kind = SHARD_MSG_OUTCOME;
	msg->from = s->id;
	msg->slot = u->slot;
	msg->rcpt = u->rcpt;
	msg->done = done;
	msg->num_attempts = u->num_attempts;
	msg->due_us = u->due_us;
	shard_mailbox_post(s, u->home, msg);
}

static void unit_done(struct shard *s, struct shard_unit *u)
{
	unit_tell_home(s, u, true);
	shard_unit_free(s, u);
}

void shard_unit_delivered(struct shard *s, struct shard_unit *u, const struct shard_log_outcome *o)
{
	struct shard_log_outcome lo = *o;

	lo.type = "Delivery";
	shard_log_delivery(s, u, &lo);
	shard_count(s, SHARD_M_DELIVERED);
	unit_done(s, u);
}

static void unit_expire(struct shard *s, struct shard_unit *u, const struct shard_sched *sq)
{
	struct smtp_client_reply r;
	struct shard_log_outcome o = {.type = "Expiration", .reply = &r};

	smtp_client_local_reply(&r, 551, 4, 7, NULL,
				"message expired: max_age of %llu seconds passed after %u attempts",
				(unsigned long long)(sq->cfg.max_age_ms / 1000), u->num_attempts);
	shard_log_delivery(s, u, &o);
	shard_count(s, SHARD_M_EXPIRED);
	unit_done(s, u);
}

void shard_unit_admin_bounce(struct shard *s, struct shard_unit *u, const char *reason)
{
	struct smtp_client_reply r;
	struct shard_log_outcome o = {.type = "AdminBounce", .reply = &r};

	/* KumoMTA's AdminBounce response: 551 5.6.0 Administrator bounced: reason. */
	smtp_client_local_reply(&r, 551, 6, 0, NULL, "Administrator bounced: %s",
				reason ? reason : "no reason given");
	shard_log_delivery(s, u, &o);
	unit_done(s, u);
}

static bool unit_expired_at(const struct shard_unit *u, const struct shard_sched *sq,
			    uint64_t at_us)
{
	return at_us >= u->created_us + sq->cfg.max_age_ms * 1000;
}

static uint64_t unit_retry_delay_ms(const struct shard_unit *u, const struct shard_sched *sq)
{
	uint64_t delay = sq->cfg.retry_interval_ms;

	/* retry_interval, doubling per attempt, capped (KumoMTA's schedule). */
	for (uint32_t i = 1; i < u->num_attempts && delay < (1ull << 50); i++)
		delay *= 2;
	if (sq->cfg.max_retry_interval_ms && delay > sq->cfg.max_retry_interval_ms)
		delay = sq->cfg.max_retry_interval_ms;
	return delay;
}

void shard_unit_failed(struct shard *s, struct shard_unit *u, const struct shard_log_outcome *o)
{
	struct shard_log_outcome lo = *o;
	struct shard_sched *sq;
	uint64_t now_us = pt_wall_us();

	if (o->reply->code >= 500) {
		lo.type = "Bounce";
		shard_log_delivery(s, u, &lo);
		shard_count(s, SHARD_M_FAIL);
		unit_done(s, u);
		return;
	}
	lo.type = "TransientFailure";
	shard_log_delivery(s, u, &lo);
	shard_count(s, SHARD_M_TRANSFAIL);
	sq = shard_sched_get(s, u);
	u->num_attempts++;
	u->due_us = now_us + unit_retry_delay_ms(u, sq) * 1000;
	if (unit_expired_at(u, sq, u->due_us)) {
		unit_expire(s, u, sq);
		return;
	}
	unit_tell_home(s, u, false);
	shard_unit_schedule(s, u);
}

/* A failure found by routing (no connection): log it as from Petrel. */
static void unit_fail_local(struct shard *s, struct shard_unit *u,
			    const struct smtp_client_reply *r)
{
	struct shard_log_outcome o = {.reply = r};

	shard_unit_failed(s, u, &o);
}

/* ---- Scheduling and routing ---- */

static void unit_timer_fn(struct pt_timer *t)
{
	struct shard_unit *u = pt_container_of(t, struct shard_unit, timer);

	shard_unit_route(u->at, u);
}

void shard_unit_schedule(struct shard *s, struct shard_unit *u)
{
	uint64_t now_us = pt_wall_us();
	uint64_t delay_ms = u->due_us > now_us ? (u->due_us - now_us + 999) / 1000 : 0;

	u->at = s;
	shard_unit_set_state(u, UNIT_SCHEDULED);
	u->ready = NULL;
	/* Counted in its queue while it waits (scheduled_count), also a unit
	 * recovered from the spool that has not been routed yet; the queue's
	 * config is asked for when the unit is due. */
	sched_attach(s, u);
	pt_timer_init(&u->timer, unit_timer_fn);
	pt_timer_add(&s->wheel, &u->timer, pt_monotonic_ms() + delay_ms);
}

void shard_unit_requeue(struct shard *s, struct shard_unit *u, char *queue, bool flush)
{
	pt_timer_del(&s->wheel, &u->timer);
	sched_release(s, u);
	free(u->queue);
	u->queue = queue;
	if (flush)
		u->due_us = pt_wall_us();
	shard_unit_schedule(s, u); /* counted in its new queue */
}

static void unit_release_fn(struct pt_timer *t)
{
	struct shard_unit *u = pt_container_of(t, struct shard_unit, timer);

	shard_ready_add(u->at, u);
}

/*
 * Into its ready queue, on the site's owner shard, no faster than the
 * scheduled queue's max_message_rate: each unit reserves the next slot of
 * the queue's GCRA (one per interval, no burst) and waits on a timer until
 * then.  Units of one queue and site all come to this shard, so the rate
 * holds for the queue, not per shard.
 */
static void unit_enter_ready(struct shard *s, struct shard_unit *u)
{
	struct shard_sched *sq = shard_sched_get(s, u);
	uint64_t now_us = pt_monotonic_ns() / 1000, slot_us;

	if (sq->rate.interval_us == 0) {
		shard_ready_add(s, u);
		return;
	}
	slot_us = PT_MAX(sq->rate.tat_us, now_us);
	sq->rate.tat_us = slot_us + sq->rate.interval_us;
	if (slot_us <= now_us) {
		shard_ready_add(s, u);
		return;
	}
	shard_unit_set_state(u, UNIT_SCHEDULED);
	pt_timer_init(&u->timer, unit_release_fn);
	pt_timer_add(&s->wheel, &u->timer, pt_monotonic_ms() + (slot_us - now_us + 999) / 1000);
}

static void unit_route_to_site(struct shard *s, struct shard_unit *u, const char *site)
{
	unsigned owner = (unsigned)(pt_hash_str(site) % s->group->n);
	struct shard_msg *msg;

	free(u->site);
	u->site = strdup(site);
	if (!u->site)
		pt_panic("out of memory routing a unit");
	if (owner == s->id) {
		unit_enter_ready(s, u);
		return;
	}
	/* Ownership moves with the pointer; the owner counts it in its own queue. */
	sched_release(s, u);
	unit_disown(s, u);
	msg = calloc(1, sizeof(*msg));
	if (!msg)
		pt_panic("out of memory routing a unit");
	msg->kind = SHARD_MSG_UNIT;
	msg->from = s->id;
	msg->unit = u;
	shard_mailbox_post(s, owner, msg);
}

static void unit_route_dns(struct shard *s, struct shard_unit *u, const struct dns_result *res)
{
	struct smtp_client_reply r;

	shard_unit_set_state(u, UNIT_SCHEDULED);
	switch (res->status) {
	case DNS_OK:
		unit_route_to_site(s, u, res->site);
		return;
	case DNS_NULL_MX:
		/* RFC 7505 4.2: 556 5.1.10 */
		smtp_client_local_reply(
		    &r, 556, 1, 10, NULL,
		    "Recipient address rejected: %s does not accept mail (null MX)", u->domain);
		break;
	case DNS_NXDOMAIN:
		smtp_client_local_reply(&r, 550, 1, 2, NULL, "domain %s does not exist (NXDOMAIN)",
					u->domain);
		break;
	case DNS_NO_ADDRESS:
		smtp_client_local_reply(&r, 550, 4, 4, NULL, "unable to route to %s: %s", u->domain,
					res->error ? res->error : "no address");
		break;
	default:
		smtp_client_local_reply(&r, 451, 4, 3, NULL, "DNS lookup for %s failed: %s",
					u->domain, res->error ? res->error : "temporary failure");
		break;
	}
	unit_fail_local(s, u, &r);
}

static void unit_dns_cb(void *arg, const struct dns_result *res)
{
	struct shard_unit *u = arg;

	unit_route_dns(u->at, u, res);
}

void shard_unit_route(struct shard *s, struct shard_unit *u)
{
	struct shard_sched *sq = shard_sched_get(s, u);
	const struct dns_result *res = NULL;
	struct smtp_client_reply r;
	int rc;

	u->at = s;
	if (unit_expired_at(u, sq, pt_wall_us())) {
		unit_expire(s, u, sq);
		return;
	}
	/* An admin suspension holds it, an admin bounce ends it (shard_admin.c). */
	if (shard_admin_hold(s, u))
		return;
	/* The egress source, per message, from the queue's pool (shard_source.c). */
	if (shard_source_pick(s, sq, u, &r) != PT_OK) {
		unit_fail_local(s, u, &r);
		return;
	}
	if (sq->mx_site) {
		unit_route_to_site(s, u, sq->mx_site);
		return;
	}
	shard_unit_set_state(u, UNIT_ROUTING);
	/* KumoMTA's routing_domain: the domain whose MX is used instead. */
	rc = dns_lookup_mx(s->dns, u->routing_domain ? u->routing_domain : u->domain,
			   pt_monotonic_ms(), unit_dns_cb, u, &res);
	if (rc == PT_OK) {
		unit_route_dns(s, u, res);
	} else if (rc != PT_AGAIN) {
		shard_unit_set_state(u, UNIT_SCHEDULED);
		smtp_client_local_reply(&r, 451, 3, 0, NULL, "out of memory looking up %s",
					u->domain);
		unit_fail_local(s, u, &r);
	}
}

void shard_unit_adopt(struct shard *s, struct shard_unit *u)
{
	shard_unit_own(s, u);
	unit_enter_ready(s, u);
}

/* Once a second: forget scheduled queues idle for a while (their config is
 * fetched again on next use). */
void shard_routes_housekeeping(struct shard *s)
{
	uint64_t now = pt_monotonic_ms();
	size_t pos = 0;
	struct shard_sched *sq, *gone[64];
	size_t n_gone = 0;

	while (n_gone < PT_ARRAY_LEN(gone) && (sq = pt_strmap_next(&s->scheds, &pos)))
		if (sq->n_units == 0 && now - sq->idle_since_ms > SHARD_SCHED_IDLE_MS)
			gone[n_gone++] = sq;
	for (size_t i = 0; i < n_gone; i++) {
		pt_strmap_del(&s->scheds, gone[i]->name);
		sched_free(gone[i]);
	}
}
