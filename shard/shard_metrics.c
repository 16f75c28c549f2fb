/*
 * shard_metrics.c -- Petrel's metrics: the families (KumoMTA's names where
 * KumoMTA has the same thing), what each shard writes into them, and the
 * renderer GET /metrics calls.
 *
 * Families, in the order they are rendered:
 *
 *   total_messages_received{service="esmtp_listener"|"http_listener"}
 *                                                        counter   KumoMTA
 *       messages made durable (250 sent; for HTTP, one per generated
 *       message of an injection);
 *   total_messages_delivered / _transfail / _fail{service="smtp_client"}
 *                                                        counter   KumoMTA
 *       Delivery, TransientFailure and Bounce records: one per recipient
 *       (Petrel's delivery unit; KumoMTA's messages have one recipient);
 *   total_messages_rejected{service="esmtp_listener"}    counter   Petrel
 *       messages refused at the end of DATA (policy, listener domain,
 *       or 451 when the spool write failed or memory ran out);
 *   total_messages_expired                               counter   Petrel
 *       Expiration records;
 *   total_connection_count{service}                      counter   KumoMTA
 *       connections accepted (esmtp_listener) and opened (smtp_client);
 *   total_connections_denied{service="esmtp_listener"}   counter   KumoMTA
 *       connections turned away with 421 by max_connections;
 *   connection_count{service}                            gauge     KumoMTA
 *       open now: "esmtp_listener", "smtp_client" (the sum), and
 *       "smtp_client:SOURCE->SITE" per ready queue;
 *   scheduled_count_total                                gauge     KumoMTA
 *       recipients waiting in scheduled queues (for their retry time, DNS
 *       or the queue's max_message_rate): held by a shard, not in a ready
 *       queue or a transaction;
 *   scheduled_count{queue}                               gauge     KumoMTA
 *       the same per scheduled queue name;
 *   ready_count{service}                                 gauge     KumoMTA
 *       recipients in ready queues: "smtp_client" (the sum) and
 *       "smtp_client:SOURCE->SITE" per ready queue;
 *   spool_bytes, spool_segments                          gauge     Petrel
 *       the size and number of the shards' segment files;
 *   disk_free_bytes / disk_free_inodes{name="data"}      gauge     KumoMTA
 *       on the spool's file system (the largest any shard saw);
 *   dns_cache_hit, dns_cache_miss, dns_queries_sent, dns_lookup_tempfail
 *                                                        counter   Petrel
 *       the shards' resolvers (MX and address lookups; net/dns.h);
 *   log_hook_dropped                                     counter   Petrel
 *       records a log hook wanted that the spool could not take
 *       (shard_loghook.c);
 *   spool_sync_latency                                   histogram Petrel
 *       seconds from submitting a group-commit batch (its writev linked to
 *       an fdatasync) to the fdatasync's completion: the disk's share of
 *       every 250;
 *   lua_event_latency{event}                             histogram KumoMTA
 *       seconds a policy event handler took.
 *
 * Every scalar family except disk_free_* is also rendered NAME_by_shard
 * with shard="N" (the totals keep KumoMTA's series exactly, so a KumoMTA
 * query never counts twice); the histograms' buckets are KumoMTA's
 * (0.005 s to 10 s) with finer ones below, since a disk sync or a Lua hook
 * here takes micro- to milliseconds.
 *
 * Label cardinality: the per-queue series (scheduled_count{queue},
 * ready_count and connection_count per ready queue) come from each
 * shard's SHARD_METRICS_QUEUES_MAX largest queues, published once a
 * second; shards hold different queues, so a scrape has at most
 * shards x SHARD_METRICS_QUEUES_MAX of each.  The sums (scheduled_count_total,
 * ready_count{service="smtp_client"}, connection_count{service="smtp_client"})
 * count every queue.  A queue name over 255 bytes is cut (at a UTF-8
 * boundary) in its label.
 */
#include <stdlib.h>
#include <string.h>

#include "core/ptime.h"
#include "shard/shard_int.h"

const char *const shard_lua_events[] = {
    "smtp_server_message_received",
    "get_listener_domain",
    "get_queue_config",
    "get_egress_path_config",
    "get_egress_source",
    "get_egress_pool",
    "http_message_generated",
    "http_server_validate_auth_basic",
    "should_enqueue_log_record",
};
const unsigned shard_n_lua_events = PT_ARRAY_LEN(shard_lua_events);

/* Seconds, as nanoseconds: KumoMTA's buckets (0.005 ... 10) and finer ones
 * below them. */
static const uint64_t latency_bounds_ns[] = {
    10000,     25000,	   50000,      100000,	   250000,	500000,	   1000000,
    2500000,   5000000,	   10000000,   25000000,   50000000,	100000000, 250000000,
    500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};

struct scalar_def {
	const char *family;
	const char *label_name, *label_value;
};

/* In enum shard_metric order. */
static const struct scalar_def scalars[SHARD_M_COUNT] = {
    [SHARD_M_RECEIVED] = {"total_messages_received", "service", "esmtp_listener"},
    [SHARD_M_RECEIVED_HTTP] = {"total_messages_received", "service", "http_listener"},
    [SHARD_M_DELIVERED] = {"total_messages_delivered", "service", "smtp_client"},
    [SHARD_M_TRANSFAIL] = {"total_messages_transfail", "service", "smtp_client"},
    [SHARD_M_FAIL] = {"total_messages_fail", "service", "smtp_client"},
    [SHARD_M_REJECTED] = {"total_messages_rejected", "service", "esmtp_listener"},
    [SHARD_M_EXPIRED] = {"total_messages_expired", NULL, NULL},
    [SHARD_M_CONN_TOTAL_IN] = {"total_connection_count", "service", "esmtp_listener"},
    [SHARD_M_CONN_TOTAL_OUT] = {"total_connection_count", "service", "smtp_client"},
    [SHARD_M_CONN_DENIED] = {"total_connections_denied", "service", "esmtp_listener"},
    [SHARD_M_CONN_IN] = {"connection_count", "service", "esmtp_listener"},
    [SHARD_M_CONN_OUT] = {"connection_count", "service", "smtp_client"},
    [SHARD_M_SCHEDULED] = {"scheduled_count_total", NULL, NULL},
    [SHARD_M_READY] = {"ready_count", "service", "smtp_client"},
    [SHARD_M_SPOOL_BYTES] = {"spool_bytes", NULL, NULL},
    [SHARD_M_SPOOL_SEGMENTS] = {"spool_segments", NULL, NULL},
    [SHARD_M_DISK_FREE_BYTES] = {"disk_free_bytes", "name", "data"},
    [SHARD_M_DISK_FREE_INODES] = {"disk_free_inodes", "name", "data"},
    [SHARD_M_DNS_HIT] = {"dns_cache_hit", NULL, NULL},
    [SHARD_M_DNS_MISS] = {"dns_cache_miss", NULL, NULL},
    [SHARD_M_DNS_QUERIES] = {"dns_queries_sent", NULL, NULL},
    [SHARD_M_DNS_TEMPFAIL] = {"dns_lookup_tempfail", NULL, NULL},
    [SHARD_M_LOG_HOOK_DROPPED] = {"log_hook_dropped", NULL, NULL},
};

struct family_def {
	const char *name;
	enum pt_metric_type type;
	const char *help;
	enum pt_metric_agg agg;
	bool by_shard;
};

/* Render order.  Help texts are KumoMTA's where the family is. */
static const struct family_def families[] = {
    {"total_messages_received", PT_METRIC_COUNTER, "total number of messages ever received.",
     PT_METRIC_SUM, true},
    {"total_messages_delivered", PT_METRIC_COUNTER,
     "total number of messages ever delivered (Petrel: recipients).", PT_METRIC_SUM, true},
    {"total_messages_transfail", PT_METRIC_COUNTER,
     "total number of message delivery attempts that transiently failed (Petrel: per "
     "recipient).",
     PT_METRIC_SUM, true},
    {"total_messages_fail", PT_METRIC_COUNTER,
     "total number of message delivery attempts that permanently failed (Petrel: per "
     "recipient).",
     PT_METRIC_SUM, true},
    {"total_messages_rejected", PT_METRIC_COUNTER,
     "messages refused at the end of DATA: by the policy or a listener domain, or with 451 "
     "when the spool could not take them.",
     PT_METRIC_SUM, true},
    {"total_messages_expired", PT_METRIC_COUNTER,
     "total number of recipients that expired (max_age passed) without delivery.", PT_METRIC_SUM,
     true},
    {"total_connection_count", PT_METRIC_COUNTER, "total number of active connections ever made.",
     PT_METRIC_SUM, true},
    {"total_connections_denied", PT_METRIC_COUNTER,
     "total number of connections rejected due to load shedding or concurrency limits.",
     PT_METRIC_SUM, true},
    {"connection_count", PT_METRIC_GAUGE,
     "number of open connections, keyed by the service name (per ready queue: the largest "
     "ready queues of each shard).",
     PT_METRIC_SUM, true},
    {"scheduled_count_total", PT_METRIC_GAUGE,
     "total number of messages (Petrel: recipients) across all scheduled queues.", PT_METRIC_SUM,
     true},
    {"scheduled_count", PT_METRIC_GAUGE,
     "number of messages (Petrel: recipients) in the scheduled queue (the largest queues "
     "of each shard).",
     PT_METRIC_SUM, false},
    {"ready_count", PT_METRIC_GAUGE,
     "number of messages (Petrel: recipients) in the ready queue (per ready queue: the "
     "largest of each shard).",
     PT_METRIC_SUM, true},
    {"spool_bytes", PT_METRIC_GAUGE, "bytes in the spool's segment files.", PT_METRIC_SUM, true},
    {"spool_segments", PT_METRIC_GAUGE, "number of spool segment files.", PT_METRIC_SUM, true},
    {"disk_free_bytes", PT_METRIC_GAUGE, "number of available bytes in a monitored location.",
     PT_METRIC_MAX, false},
    {"disk_free_inodes", PT_METRIC_GAUGE, "number of available inodes in a monitored location.",
     PT_METRIC_MAX, false},
    {"dns_cache_hit", PT_METRIC_COUNTER,
     "DNS lookups (MX and address) answered from the cache, positive or negative.", PT_METRIC_SUM,
     true},
    {"dns_cache_miss", PT_METRIC_COUNTER, "DNS lookups (MX and address) not in the cache.",
     PT_METRIC_SUM, true},
    {"dns_queries_sent", PT_METRIC_COUNTER, "DNS queries (MX, A, AAAA) sent to the resolvers.",
     PT_METRIC_SUM, true},
    {"dns_lookup_tempfail", PT_METRIC_COUNTER, "DNS lookups that ended in a temporary failure.",
     PT_METRIC_SUM, true},
    {"log_hook_dropped", PT_METRIC_COUNTER,
     "log records a log hook wanted that could not be spooled (free-space floor, memory, a "
     "failed spool batch).",
     PT_METRIC_SUM, true},
    {"spool_sync_latency", PT_METRIC_HISTOGRAM,
     "seconds from submitting a spool group-commit batch (writev linked to fdatasync) to the "
     "fdatasync's completion.",
     PT_METRIC_SUM, true},
    {"lua_event_latency", PT_METRIC_HISTOGRAM, "how long a given lua event callback took.",
     PT_METRIC_SUM, false},
};

static int family_index(const char *name)
{
	for (size_t i = 0; i < PT_ARRAY_LEN(families); i++)
		if (strcmp(families[i].name, name) == 0)
			return (int)i;
	return PT_ERROR;
}

static int register_families(struct pt_metrics *m)
{
	for (size_t i = 0; i < PT_ARRAY_LEN(families); i++) {
		struct pt_metric_family f = {
		    .name = families[i].name,
		    .help = families[i].help,
		    .type = families[i].type,
		    .agg = families[i].agg,
		    .by_shard = families[i].by_shard,
		    .bounds = latency_bounds_ns,
		    .n_bounds = PT_ARRAY_LEN(latency_bounds_ns),
		    .unit = 1000000000,
		};

		if (pt_metrics_family(m, &f) != (int)i)
			return PT_ERROR;
	}
	return PT_OK;
}

/* Series ids must come out as the enums say: the hot path indexes by them. */
static int register_series(struct pt_metrics *m)
{
	int ready = family_index("ready_count"), conns = family_index("connection_count");
	int sched = family_index("scheduled_count"), lua = family_index("lua_event_latency");
	int cols_ready[2] = {ready, conns}, cols_sched[1] = {sched};

	for (int i = 0; i < SHARD_M_COUNT; i++)
		if (pt_metrics_series(m, family_index(scalars[i].family), scalars[i].label_name,
				      scalars[i].label_value) != i)
			return PT_ERROR;
	if (pt_metrics_series(m, family_index("spool_sync_latency"), NULL, NULL) !=
	    SHARD_H_SPOOL_SYNC)
		return PT_ERROR;
	for (unsigned i = 0; i < shard_n_lua_events; i++)
		if (pt_metrics_series(m, lua, "event", shard_lua_events[i]) !=
		    (int)(SHARD_H_LUA_FIRST + i))
			return PT_ERROR;
	if (pt_metrics_table(m, "queue", NULL, cols_sched, 1, SHARD_METRICS_QUEUES_MAX) !=
		SHARD_T_SCHEDULED ||
	    pt_metrics_table(m, "service", "smtp_client:", cols_ready, 2,
			     SHARD_METRICS_QUEUES_MAX) != SHARD_T_READY)
		return PT_ERROR;
	return PT_OK;
}

struct pt_metrics *shard_metrics_new(unsigned n_shards)
{
	struct pt_metrics *m = pt_metrics_new(n_shards);

	if (!m)
		return NULL;
	/* Every failure but memory is a mistake in the tables above. */
	if (register_families(m) != PT_OK || register_series(m) != PT_OK)
		pt_panic("metrics: Petrel's metric definitions do not register");
	if (pt_metrics_seal(m) != PT_OK) {
		pt_metrics_free(m);
		return NULL;
	}
	return m;
}

int shard_metrics_render(const struct shard_group *g, struct pt_buf *out)
{
	return pt_metrics_render(g->metrics, out);
}

void shard_metrics_lua_event(void *ctx, const char *event, uint64_t ns)
{
	struct shard *s = ctx;

	for (unsigned i = 0; i < shard_n_lua_events; i++)
		if (strcmp(event, shard_lua_events[i]) == 0) {
			pt_metrics_observe(s->metrics, SHARD_H_LUA_FIRST + i, ns);
			return;
		}
}

void shard_metrics_spool_synced(struct shard *s, uint64_t start_ns)
{
	pt_metrics_observe(s->metrics, SHARD_H_SPOOL_SYNC, pt_monotonic_ns() - start_ns);
}

/* Room for n rows in s->metric_rows (kept between ticks).  False when out
 * of memory: the shard's previous rows then stay published. */
static bool rows_reserve(struct shard *s, size_t n)
{
	if (n > s->metric_rows_cap) {
		size_t cap = PT_MAX(n, 2 * s->metric_rows_cap);
		struct pt_metrics_row *r = realloc(s->metric_rows, cap * sizeof(*r));

		if (!r)
			return false;
		s->metric_rows = r;
		s->metric_rows_cap = cap;
	}
	return true;
}

/* scheduled_count per queue, and its sum: a queue's units on this shard
 * that are in no ready queue and no transaction (shard_unit_set_state). */
static void tick_scheduled(struct shard *s)
{
	bool rows = rows_reserve(s, s->scheds.n);
	struct shard_sched *sq;
	size_t pos = 0, n = 0;
	uint64_t total = 0;

	while ((sq = pt_strmap_next(&s->scheds, &pos))) {
		/* n_active <= n_units always; a slip must not show 2^64 - 1. */
		uint64_t waiting = sq->n_units >= sq->n_active ? sq->n_units - sq->n_active : 0;

		total += waiting;
		if (rows)
			s->metric_rows[n++] =
			    (struct pt_metrics_row){.label = sq->name, .v = {waiting}};
	}
	pt_metrics_set(s->metrics, SHARD_M_SCHEDULED, (int64_t)total);
	if (rows)
		pt_metrics_publish(s->metrics, SHARD_T_SCHEDULED, s->metric_rows, n);
}

/* ready_count and connection_count per ready queue, and the ready sum. */
static void tick_ready(struct shard *s)
{
	bool rows = rows_reserve(s, s->readies.n);
	struct shard_ready *rq;
	size_t pos = 0, n = 0;
	uint64_t total = 0;

	while ((rq = pt_strmap_next(&s->readies, &pos))) {
		total += rq->n_ready;
		if (rows)
			s->metric_rows[n++] = (struct pt_metrics_row){
			    .label = rq->key, .v = {rq->n_ready, rq->n_conns}};
	}
	pt_metrics_set(s->metrics, SHARD_M_READY, (int64_t)total);
	if (rows)
		pt_metrics_publish(s->metrics, SHARD_T_READY, s->metric_rows, n);
}

void shard_metrics_tick(struct shard *s)
{
	struct pt_metrics_shard *b = s->metrics;
	struct dns_stats ds;

	pt_metrics_set(b, SHARD_M_CONN_IN, s->n_conns);
	pt_metrics_set(b, SHARD_M_CONN_OUT, s->n_out);
	pt_metrics_set(b, SHARD_M_SPOOL_BYTES, (int64_t)spool_bytes(s->spool));
	pt_metrics_set(b, SHARD_M_SPOOL_SEGMENTS, (int64_t)spool_segments(s->spool));
	if (s->dns) {
		/* The resolver lives as long as the shard: its counts only grow. */
		dns_get_stats(s->dns, &ds);
		pt_metrics_set(b, SHARD_M_DNS_HIT, (int64_t)ds.cache_hits);
		pt_metrics_set(b, SHARD_M_DNS_MISS, (int64_t)(ds.lookups - ds.cache_hits));
		pt_metrics_set(b, SHARD_M_DNS_QUERIES, (int64_t)ds.queries_sent);
		pt_metrics_set(b, SHARD_M_DNS_TEMPFAIL, (int64_t)ds.failures);
	}
	tick_scheduled(s);
	tick_ready(s);
}
