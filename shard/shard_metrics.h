/*
 * shard_metrics.h -- private to shard/ (and tests): Petrel's metric
 * families, registered in core/metrics, and what the shards write into
 * them.  shard_metrics.c has the list with the reasons.
 *
 * Counters are bumped where things happen (shard_count); gauges and the
 * per-queue tables are refreshed by each shard once a second
 * (shard_metrics_tick), from its own data, so a scrape reads values at
 * most a second old and never touches a shard's structures.
 */
#ifndef PT_SHARD_METRICS_H
#define PT_SHARD_METRICS_H

#include "core/buf.h"
#include "core/metrics.h"

struct shard;
struct shard_group;

/* Scalar series; registered in this order, so each is its own slot. */
enum shard_metric {
	SHARD_M_RECEIVED,	  /* total_messages_received{service="esmtp_listener"} */
	SHARD_M_RECEIVED_HTTP,	  /* total_messages_received{service="http_listener"} */
	SHARD_M_DELIVERED,	  /* total_messages_delivered{service="smtp_client"} */
	SHARD_M_TRANSFAIL,	  /* total_messages_transfail{service="smtp_client"} */
	SHARD_M_FAIL,		  /* total_messages_fail{service="smtp_client"} */
	SHARD_M_REJECTED,	  /* total_messages_rejected{service="esmtp_listener"} */
	SHARD_M_EXPIRED,	  /* total_messages_expired */
	SHARD_M_CONN_TOTAL_IN,	  /* total_connection_count{service="esmtp_listener"} */
	SHARD_M_CONN_TOTAL_OUT,	  /* total_connection_count{service="smtp_client"} */
	SHARD_M_CONN_DENIED,	  /* total_connections_denied{service="esmtp_listener"} */
	SHARD_M_CONN_IN,	  /* connection_count{service="esmtp_listener"} */
	SHARD_M_CONN_OUT,	  /* connection_count{service="smtp_client"} */
	SHARD_M_SCHEDULED,	  /* scheduled_count_total */
	SHARD_M_READY,		  /* ready_count{service="smtp_client"} */
	SHARD_M_SPOOL_BYTES,	  /* spool_bytes */
	SHARD_M_SPOOL_SEGMENTS,	  /* spool_segments */
	SHARD_M_DISK_FREE_BYTES,  /* disk_free_bytes{name="data"} */
	SHARD_M_DISK_FREE_INODES, /* disk_free_inodes{name="data"} */
	SHARD_M_DNS_HIT,	  /* dns_cache_hit */
	SHARD_M_DNS_MISS,	  /* dns_cache_miss */
	SHARD_M_DNS_QUERIES,	  /* dns_queries_sent */
	SHARD_M_DNS_TEMPFAIL,	  /* dns_lookup_tempfail */
	SHARD_M_LOG_HOOK_DROPPED, /* log_hook_dropped */
	SHARD_M_COUNT
};

/* Histograms. */
enum shard_histogram {
	SHARD_H_SPOOL_SYNC, /* spool_sync_latency */
	SHARD_H_LUA_FIRST,  /* lua_event_latency{event=shard_lua_events[i]} is FIRST + i */
};

/* Tables (rows published once a second, SHARD_METRICS_QUEUES_MAX per shard). */
enum shard_table {
	SHARD_T_SCHEDULED, /* scheduled_count{queue} */
	SHARD_T_READY,	   /* ready_count, connection_count{service="smtp_client:SOURCE->SITE"} */
};
#define SHARD_METRICS_QUEUES_MAX 64

/* The events lua_event_latency has a series for: every event Petrel runs. */
extern const char *const shard_lua_events[];
extern const unsigned shard_n_lua_events;

/* A registry with Petrel's families for n_shards, sealed.  NULL when out
 * of memory.  Free with pt_metrics_free. */
struct pt_metrics *shard_metrics_new(unsigned n_shards);

/*
 * GET /metrics: the group's metrics as Prometheus text (format 0.0.4),
 * appended to out.  Safe on any thread, shard or not, while every shard
 * runs: it only reads relaxed atomics.  PT_OK or PT_NOMEM.
 */
int shard_metrics_render(const struct shard_group *g, struct pt_buf *out);

/* Once a second on s's thread: gauges and queue tables. */
void shard_metrics_tick(struct shard *s);
/* policy_event_timing_fn for s's policy (ctx is the shard). */
void shard_metrics_lua_event(void *ctx, const char *event, uint64_t ns);
/* The shard's spool batch's fdatasync completed, started at start_ns. */
void shard_metrics_spool_synced(struct shard *s, uint64_t start_ns);

/* One more of a counter, on s's own thread. */
#define shard_count(s, id) pt_metrics_add((s)->metrics, (id), 1)

#endif
