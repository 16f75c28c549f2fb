/*
 * core_metrics_test.c -- the metrics registry: counters, gauges,
 * histograms and tables per shard, the exact exposition text (HELP/TYPE,
 * escaping, cumulative buckets with +Inf, _sum and _count, the by_shard
 * families), registration errors, and writers racing a renderer.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"

static char *render(const struct pt_metrics *m)
{
	struct pt_buf b = PT_BUF_INIT;
	char *s;

	cr_assert_eq(pt_metrics_render(m, &b), PT_OK);
	s = strdup(pt_buf_cstr(&b));
	pt_buf_free(&b);
	return s;
}

static void assert_text(const struct pt_metrics *m, const char *want)
{
	char *got = render(m);

	cr_assert_str_eq(got, want, "got:\n%s\nwant:\n%s", got, want);
	free(got);
}

static int family(struct pt_metrics *m, const char *name, const char *help,
		  enum pt_metric_type type, bool by_shard)
{
	struct pt_metric_family f = {
	    .name = name, .help = help, .type = type, .by_shard = by_shard};

	return pt_metrics_family(m, &f);
}

Test(metrics, counters_and_gauges_total_and_by_shard)
{
	struct pt_metrics *m = pt_metrics_new(2);
	int fc = family(m, "total_messages_delivered", "total number of messages ever delivered.",
			PT_METRIC_COUNTER, true);
	int fg = family(m, "connection_count", "open connections", PT_METRIC_GAUGE, false);
	int c = pt_metrics_series(m, fc, "service", "smtp_client");
	int in = pt_metrics_series(m, fg, "service", "esmtp_listener");
	int out = pt_metrics_series(m, fg, "service", "smtp_client");

	cr_assert_eq(c, 0);
	cr_assert_eq(in, 1);
	cr_assert_eq(out, 2);
	cr_assert_eq(pt_metrics_seal(m), PT_OK);
	pt_metrics_add(pt_metrics_shard(m, 0), (unsigned)c, 3);
	pt_metrics_add(pt_metrics_shard(m, 1), (unsigned)c, 4);
	pt_metrics_add(pt_metrics_shard(m, 1), (unsigned)c, 1);
	pt_metrics_set(pt_metrics_shard(m, 0), (unsigned)in, 7);
	pt_metrics_set(pt_metrics_shard(m, 1), (unsigned)in, 2);
	pt_metrics_add(pt_metrics_shard(m, 1), (unsigned)out, 5);
	pt_metrics_add(pt_metrics_shard(m, 1), (unsigned)out, (uint64_t)-2);
	pt_metrics_set(pt_metrics_shard(m, 0), (unsigned)out, -1);
	assert_text(m, "# HELP total_messages_delivered total number of messages ever delivered.\n"
		       "# TYPE total_messages_delivered counter\n"
		       "total_messages_delivered{service=\"smtp_client\"} 8\n"
		       "# HELP total_messages_delivered_by_shard total number of messages ever "
		       "delivered.\n"
		       "# TYPE total_messages_delivered_by_shard counter\n"
		       "total_messages_delivered_by_shard{shard=\"0\",service=\"smtp_client\"} 3\n"
		       "total_messages_delivered_by_shard{shard=\"1\",service=\"smtp_client\"} 5\n"
		       "# HELP connection_count open connections\n"
		       "# TYPE connection_count gauge\n"
		       "connection_count{service=\"esmtp_listener\"} 9\n"
		       "connection_count{service=\"smtp_client\"} 2\n");
	cr_assert_eq(pt_metrics_read(m, 1, (unsigned)c), 5);
	pt_metrics_free(m);
}

Test(metrics, unlabelled_series_and_max_aggregation)
{
	struct pt_metrics *m = pt_metrics_new(3);
	struct pt_metric_family f = {.name = "disk_free_bytes",
				     .help = "free bytes",
				     .type = PT_METRIC_GAUGE,
				     .agg = PT_METRIC_MAX,
				     .by_shard = true};
	int fi = pt_metrics_family(m, &f);
	int fs = family(m, "spool_segments", "segments", PT_METRIC_GAUGE, false);
	int d = pt_metrics_series(m, fi, "name", "data");
	int s = pt_metrics_series(m, fs, NULL, NULL);

	cr_assert_eq(pt_metrics_seal(m), PT_OK);
	pt_metrics_set(pt_metrics_shard(m, 0), (unsigned)d, 100);
	pt_metrics_set(pt_metrics_shard(m, 1), (unsigned)d, 300);
	pt_metrics_set(pt_metrics_shard(m, 2), (unsigned)d, 200);
	pt_metrics_set(pt_metrics_shard(m, 2), (unsigned)s, 4);
	assert_text(m, "# HELP disk_free_bytes free bytes\n"
		       "# TYPE disk_free_bytes gauge\n"
		       "disk_free_bytes{name=\"data\"} 300\n"
		       "# HELP disk_free_bytes_by_shard free bytes\n"
		       "# TYPE disk_free_bytes_by_shard gauge\n"
		       "disk_free_bytes_by_shard{shard=\"0\",name=\"data\"} 100\n"
		       "disk_free_bytes_by_shard{shard=\"1\",name=\"data\"} 300\n"
		       "disk_free_bytes_by_shard{shard=\"2\",name=\"data\"} 200\n"
		       "# HELP spool_segments segments\n"
		       "# TYPE spool_segments gauge\n"
		       "spool_segments 4\n");
	pt_metrics_free(m);
}

static const uint64_t bounds_ns[] = {5000000, 10000000, 1000000000, 2500000000};

static int latency_family(struct pt_metrics *m, const char *name, bool by_shard)
{
	struct pt_metric_family f = {.name = name,
				     .help = "how long a given lua event callback took.",
				     .type = PT_METRIC_HISTOGRAM,
				     .by_shard = by_shard,
				     .bounds = bounds_ns,
				     .n_bounds = 4,
				     .unit = 1000000000};

	return pt_metrics_family(m, &f);
}

Test(metrics, histogram_buckets_are_cumulative_with_inf_sum_and_count)
{
	struct pt_metrics *m = pt_metrics_new(2);
	int fi = latency_family(m, "lua_event_latency", false);
	int h0 = pt_metrics_series(m, fi, "event", "get_queue_config");
	int h1 = pt_metrics_series(m, fi, "event", "smtp_server_message_received");
	struct pt_metrics_shard *a, *b;

	cr_assert_eq(h0, 0);
	cr_assert_eq(h1, 1);
	cr_assert_eq(pt_metrics_seal(m), PT_OK);
	a = pt_metrics_shard(m, 0);
	b = pt_metrics_shard(m, 1);
	pt_metrics_observe(a, 0, 1000);	      /* 1 us: le 0.005 */
	pt_metrics_observe(a, 0, 5000000);    /* exactly on the bound: le 0.005 */
	pt_metrics_observe(b, 0, 5000001);    /* just over: le 0.01 */
	pt_metrics_observe(b, 0, 2000000000); /* 2 s: le 2.5 */
	pt_metrics_observe(a, 0, 3000000000); /* 3 s: only +Inf */
	assert_text(
	    m, "# HELP lua_event_latency how long a given lua event callback took.\n"
	       "# TYPE lua_event_latency histogram\n"
	       "lua_event_latency_bucket{event=\"get_queue_config\",le=\"0.005\"} 2\n"
	       "lua_event_latency_bucket{event=\"get_queue_config\",le=\"0.01\"} 3\n"
	       "lua_event_latency_bucket{event=\"get_queue_config\",le=\"1\"} 3\n"
	       "lua_event_latency_bucket{event=\"get_queue_config\",le=\"2.5\"} 4\n"
	       "lua_event_latency_bucket{event=\"get_queue_config\",le=\"+Inf\"} 5\n"
	       "lua_event_latency_sum{event=\"get_queue_config\"} 5.010001001\n"
	       "lua_event_latency_count{event=\"get_queue_config\"} 5\n"
	       "lua_event_latency_bucket{event=\"smtp_server_message_received\",le=\"0.005\"} 0\n"
	       "lua_event_latency_bucket{event=\"smtp_server_message_received\",le=\"0.01\"} 0\n"
	       "lua_event_latency_bucket{event=\"smtp_server_message_received\",le=\"1\"} 0\n"
	       "lua_event_latency_bucket{event=\"smtp_server_message_received\",le=\"2.5\"} 0\n"
	       "lua_event_latency_bucket{event=\"smtp_server_message_received\",le=\"+Inf\"} 0\n"
	       "lua_event_latency_sum{event=\"smtp_server_message_received\"} 0\n"
	       "lua_event_latency_count{event=\"smtp_server_message_received\"} 0\n");
	pt_metrics_free(m);
}

Test(metrics, histogram_by_shard_and_without_label)
{
	struct pt_metrics *m = pt_metrics_new(2);
	int fi = latency_family(m, "spool_sync_latency", true);

	cr_assert_eq(pt_metrics_series(m, fi, NULL, NULL), 0);
	cr_assert_eq(pt_metrics_seal(m), PT_OK);
	pt_metrics_observe(pt_metrics_shard(m, 0), 0, 250000); /* 0.25 ms */
	pt_metrics_observe(pt_metrics_shard(m, 1), 0, 20000000);
	assert_text(m,
		    "# HELP spool_sync_latency how long a given lua event callback took.\n"
		    "# TYPE spool_sync_latency histogram\n"
		    "spool_sync_latency_bucket{le=\"0.005\"} 1\n"
		    "spool_sync_latency_bucket{le=\"0.01\"} 1\n"
		    "spool_sync_latency_bucket{le=\"1\"} 2\n"
		    "spool_sync_latency_bucket{le=\"2.5\"} 2\n"
		    "spool_sync_latency_bucket{le=\"+Inf\"} 2\n"
		    "spool_sync_latency_sum 0.02025\n"
		    "spool_sync_latency_count 2\n"
		    "# HELP spool_sync_latency_by_shard how long a given lua event callback took.\n"
		    "# TYPE spool_sync_latency_by_shard histogram\n"
		    "spool_sync_latency_by_shard_bucket{shard=\"0\",le=\"0.005\"} 1\n"
		    "spool_sync_latency_by_shard_bucket{shard=\"0\",le=\"0.01\"} 1\n"
		    "spool_sync_latency_by_shard_bucket{shard=\"0\",le=\"1\"} 1\n"
		    "spool_sync_latency_by_shard_bucket{shard=\"0\",le=\"2.5\"} 1\n"
		    "spool_sync_latency_by_shard_bucket{shard=\"0\",le=\"+Inf\"} 1\n"
		    "spool_sync_latency_by_shard_sum{shard=\"0\"} 0.00025\n"
		    "spool_sync_latency_by_shard_count{shard=\"0\"} 1\n"
		    "spool_sync_latency_by_shard_bucket{shard=\"1\",le=\"0.005\"} 0\n"
		    "spool_sync_latency_by_shard_bucket{shard=\"1\",le=\"0.01\"} 0\n"
		    "spool_sync_latency_by_shard_bucket{shard=\"1\",le=\"1\"} 1\n"
		    "spool_sync_latency_by_shard_bucket{shard=\"1\",le=\"2.5\"} 1\n"
		    "spool_sync_latency_by_shard_bucket{shard=\"1\",le=\"+Inf\"} 1\n"
		    "spool_sync_latency_by_shard_sum{shard=\"1\"} 0.02\n"
		    "spool_sync_latency_by_shard_count{shard=\"1\"} 1\n");
	pt_metrics_free(m);
}

Test(metrics, help_and_label_values_are_escaped)
{
	struct pt_metrics *m = pt_metrics_new(1);
	int fi =
	    family(m, "scheduled_count", "a \\ back\nslash \"quoted\"", PT_METRIC_GAUGE, false);
	int cols[1] = {fi};
	int t = pt_metrics_table(m, "queue", NULL, cols, 1, 8);
	struct pt_metrics_row rows[4] = {
	    {.label = "a\"b\\c\nd", .v = {1}},
	    {.label = "caf\xc3\xa9@example.com", .v = {2}}, /* valid UTF-8 kept */
	    {.label = "bad\xff\xc3(x", .v = {3}},	    /* invalid bytes replaced */
	    {.label = "", .v = {4}},
	};

	cr_assert_eq(t, 0);
	cr_assert_eq(pt_metrics_seal(m), PT_OK);
	pt_metrics_publish(pt_metrics_shard(m, 0), 0, rows, 4);
	assert_text(m, "# HELP scheduled_count a \\\\ back\\nslash \"quoted\"\n"
		       "# TYPE scheduled_count gauge\n"
		       "scheduled_count{queue=\"\"} 4\n"
		       "scheduled_count{queue=\"a\\\"b\\\\c\\nd\"} 1\n"
		       "scheduled_count{queue=\"bad\xef\xbf\xbd\xef\xbf\xbd(x\"} 3\n"
		       "scheduled_count{queue=\"caf\xc3\xa9@example.com\"} 2\n");
	pt_metrics_free(m);
}

Test(metrics, tables_merge_shards_keep_the_largest_and_cut_long_labels)
{
	struct pt_metrics *m = pt_metrics_new(2);
	int ready = family(m, "ready_count", "ready", PT_METRIC_GAUGE, false);
	int conns = family(m, "connection_count", "conns", PT_METRIC_GAUGE, false);
	int cols[2] = {ready, conns};
	int t = pt_metrics_table(m, "service", "smtp_client:", cols, 2, 3);
	char longname[400];
	struct pt_metrics_row a[5] = {
	    {.label = "s->x", .v = {5, 1}}, {.label = "s->y", .v = {1, 0}},
	    {.label = "s->z", .v = {9, 2}}, {.label = "s->w", .v = {7, 3}},
	    {.label = "s->v", .v = {2, 0}},
	};
	struct pt_metrics_row b[2] = {{.label = "s->x", .v = {10, 4}},
				      {.label = longname, .v = {1}}};

	/* 253 ASCII bytes then a 3-byte character straddling byte 255: cut before it. */
	memset(longname, 'q', 253);
	strcpy(longname + 253, "\xe2\x82\xac-tail");
	cr_assert_eq(pt_metrics_seal(m), PT_OK);
	cr_assert_eq(pt_metrics_series(m, ready, NULL, NULL), PT_ERROR); /* sealed */
	pt_metrics_publish(pt_metrics_shard(m, 0), (unsigned)t, a, 5);	 /* keeps z, w, x */
	pt_metrics_publish(pt_metrics_shard(m, 1), (unsigned)t, b, 2);
	{
		char want[4096];

		snprintf(want, sizeof(want),
			 "# HELP ready_count ready\n"
			 "# TYPE ready_count gauge\n"
			 "ready_count{service=\"smtp_client:%.253s\"} 1\n"
			 "ready_count{service=\"smtp_client:s->w\"} 7\n"
			 "ready_count{service=\"smtp_client:s->x\"} 15\n"
			 "ready_count{service=\"smtp_client:s->z\"} 9\n"
			 "# HELP connection_count conns\n"
			 "# TYPE connection_count gauge\n"
			 "connection_count{service=\"smtp_client:%.253s\"} 0\n"
			 "connection_count{service=\"smtp_client:s->w\"} 3\n"
			 "connection_count{service=\"smtp_client:s->x\"} 5\n"
			 "connection_count{service=\"smtp_client:s->z\"} 2\n",
			 longname, longname);
		assert_text(m, want);
	}
	/* A new publication replaces the shard's rows; an empty one removes them. */
	a[0] = (struct pt_metrics_row){.label = "s->y", .v = {1, 0}}; /* a was reordered */
	pt_metrics_publish(pt_metrics_shard(m, 0), (unsigned)t, a, 1);
	pt_metrics_publish(pt_metrics_shard(m, 1), (unsigned)t, NULL, 0);
	assert_text(m, "# HELP ready_count ready\n"
		       "# TYPE ready_count gauge\n"
		       "ready_count{service=\"smtp_client:s->y\"} 1\n"
		       "# HELP connection_count conns\n"
		       "# TYPE connection_count gauge\n"
		       "connection_count{service=\"smtp_client:s->y\"} 0\n");
	pt_metrics_free(m);
}

Test(metrics, registration_refuses_bad_names_buckets_and_labels)
{
	struct pt_metrics *m = pt_metrics_new(1);
	uint64_t down[] = {10, 5};
	struct pt_metric_family h = {.name = "h",
				     .help = "h",
				     .type = PT_METRIC_HISTOGRAM,
				     .bounds = down,
				     .n_bounds = 2,
				     .unit = 1000};
	int ok = family(m, "ok_name:sub", "x", PT_METRIC_COUNTER, true);
	int cols[1] = {ok};

	cr_assert_geq(ok, 0);
	cr_assert_eq(family(m, "9starts_with_digit", "x", PT_METRIC_COUNTER, false), PT_ERROR);
	cr_assert_eq(family(m, "has-dash", "x", PT_METRIC_COUNTER, false), PT_ERROR);
	cr_assert_eq(family(m, "", "x", PT_METRIC_COUNTER, false), PT_ERROR);
	cr_assert_eq(family(m, "ok_name:sub", "x", PT_METRIC_GAUGE, false), PT_ERROR);
	cr_assert_eq(family(m, "ok_name:sub_by_shard", "x", PT_METRIC_GAUGE, false), PT_ERROR);
	cr_assert_eq(family(m, "ok_name", "x", PT_METRIC_GAUGE, true), 1);
	cr_assert_eq(family(m, "ok_name_by_shard", "x", PT_METRIC_GAUGE, false), PT_ERROR);
	cr_assert_eq(pt_metrics_family(m, &h), PT_ERROR); /* bounds not increasing */
	down[0] = 1;
	h.unit = 7;
	cr_assert_eq(pt_metrics_family(m, &h), PT_ERROR); /* unit not a power of ten */
	h.unit = 1000;
	h.n_bounds = 0;
	cr_assert_eq(pt_metrics_family(m, &h), PT_ERROR);
	h.n_bounds = 2;
	cr_assert_geq(pt_metrics_family(m, &h), 0);
	cr_assert_eq(pt_metrics_series(m, ok, "le", "1"), PT_ERROR);
	cr_assert_eq(pt_metrics_series(m, ok, "shard", "1"), PT_ERROR);
	cr_assert_eq(pt_metrics_series(m, ok, "__name", "1"), PT_ERROR);
	cr_assert_eq(pt_metrics_series(m, ok, "bad-name", "1"), PT_ERROR);
	cr_assert_eq(pt_metrics_series(m, ok, "good", NULL), PT_ERROR);
	cr_assert_eq(pt_metrics_series(m, 99, NULL, NULL), PT_ERROR);
	cr_assert_eq(pt_metrics_table(m, "queue", NULL, cols, 1, 4), PT_ERROR); /* not a gauge */
	cr_assert_eq(pt_metrics_seal(m), PT_OK);
	cr_assert_eq(pt_metrics_seal(m), PT_ERROR);
	cr_assert_eq(family(m, "late", "x", PT_METRIC_COUNTER, false), PT_ERROR);
	pt_metrics_free(m);
}

Test(metrics, shard_blocks_are_cache_line_aligned_and_apart)
{
	struct pt_metrics *m = pt_metrics_new(4);
	int fi = family(m, "c", "c", PT_METRIC_COUNTER, false);

	cr_assert_eq(pt_metrics_series(m, fi, NULL, NULL), 0);
	cr_assert_eq(pt_metrics_seal(m), PT_OK);
	for (unsigned i = 0; i < 4; i++) {
		uintptr_t v = (uintptr_t)pt_metrics_shard(m, i)->v;

		cr_assert_eq(v % 64, 0, "shard %u block at %#lx", i, (unsigned long)v);
		for (unsigned j = 0; j < i; j++) {
			uintptr_t w = (uintptr_t)pt_metrics_shard(m, j)->v;

			cr_assert(v / 64 != w / 64, "shards %u and %u share a line", i, j);
		}
	}
	cr_assert_null(pt_metrics_shard(m, 4));
	pt_metrics_free(m);
}

/* ---- Writers racing a renderer ---- */

#define RACE_SHARDS 4
#define RACE_N	    200000

struct race {
	struct pt_metrics *m;
	unsigned shard;
	_Atomic bool *stop;
	unsigned long renders;
	char error[256];
};

static void *race_writer(void *arg)
{
	struct race *r = arg;
	struct pt_metrics_shard *b = pt_metrics_shard(r->m, r->shard);
	char label[64];

	for (uint64_t i = 1; i <= RACE_N; i++) {
		pt_metrics_add(b, 0, 1);
		pt_metrics_set(b, 1, (int64_t)i);
		pt_metrics_observe(b, 0, i % 3 == 0 ? 20000000 : 1000);
		if (i % 1000 == 0) {
			struct pt_metrics_row row[2] = {{.label = "common", .v = {i}},
							{.label = label, .v = {1}}};

			snprintf(label, sizeof(label), "shard-%u-%llu", r->shard,
				 (unsigned long long)(i / 1000 % 4));
			pt_metrics_publish(b, 0, row, 2);
		}
	}
	return NULL;
}

/* Value of the first line starting with prefix, or -1. */
static long long sample(const char *text, const char *prefix)
{
	const char *p = strstr(text, prefix);

	return p ? atoll(p + strlen(prefix)) : -1;
}

static void *race_reader(void *arg)
{
	struct race *r = arg;
	long long last = 0;

	while (!atomic_load(r->stop) && !r->error[0]) {
		char *t = render(r->m);
		long long n = sample(t, "\nmsgs "), inf = sample(t, "lat_bucket{le=\"+Inf\"} "),
			  count = sample(t, "\nlat_count "), sum = 0;
		const char *p = t;

		if (n < last)
			snprintf(r->error, sizeof(r->error), "counter went back: %lld < %lld", n,
				 last);
		else if (inf != count)
			snprintf(r->error, sizeof(r->error), "+Inf %lld != _count %lld", inf,
				 count);
		/* every shard line of the by_shard family adds up to the total */
		while ((p = strstr(p, "msgs_by_shard{shard=")))
			p = strchr(p, '}') + 2, sum += atoll(p);
		if (!r->error[0] && sum != n)
			snprintf(r->error, sizeof(r->error), "shards add to %lld, total %lld", sum,
				 n);
		if (!strstr(t, "# TYPE q gauge\n"))
			snprintf(r->error, sizeof(r->error), "no table family");
		last = n;
		r->renders++;
		free(t);
	}
	return NULL;
}

Test(metrics, concurrent_writers_and_renderer_lose_nothing)
{
	static const uint64_t b[] = {1000000, 10000000, 100000000};
	struct pt_metrics *m = pt_metrics_new(RACE_SHARDS);
	struct pt_metric_family lat = {.name = "lat",
				       .help = "l",
				       .type = PT_METRIC_HISTOGRAM,
				       .bounds = b,
				       .n_bounds = 3,
				       .unit = 1000000000};
	int fc = family(m, "msgs", "m", PT_METRIC_COUNTER, true);
	int fg = family(m, "last", "g", PT_METRIC_GAUGE, false);
	int fl = pt_metrics_family(m, &lat);
	int fq = family(m, "q", "q", PT_METRIC_GAUGE, false);
	int cols[1] = {fq};
	_Atomic bool stop = false;
	struct race w[RACE_SHARDS], rd = {.m = m, .stop = &stop};
	pthread_t tw[RACE_SHARDS], tr;
	char *text;

	cr_assert_eq(pt_metrics_series(m, fc, NULL, NULL), 0);
	cr_assert_eq(pt_metrics_series(m, fg, NULL, NULL), 1);
	cr_assert_eq(pt_metrics_series(m, fl, NULL, NULL), 0);
	cr_assert_eq(pt_metrics_table(m, "queue", NULL, cols, 1, 2), 0);
	cr_assert_eq(pt_metrics_seal(m), PT_OK);
	cr_assert_eq(pthread_create(&tr, NULL, race_reader, &rd), 0);
	for (unsigned i = 0; i < RACE_SHARDS; i++) {
		w[i] = (struct race){.m = m, .shard = i, .stop = &stop};
		cr_assert_eq(pthread_create(&tw[i], NULL, race_writer, &w[i]), 0);
	}
	for (unsigned i = 0; i < RACE_SHARDS; i++)
		pthread_join(tw[i], NULL);
	atomic_store(&stop, true);
	pthread_join(tr, NULL);
	cr_assert_eq(rd.error[0], '\0', "%s", rd.error);
	cr_assert_gt(rd.renders, 0);
	text = render(m);
	cr_assert_eq(sample(text, "\nmsgs "), RACE_SHARDS * RACE_N, "%s", text);
	cr_assert_eq(sample(text, "\nlast "), RACE_SHARDS * RACE_N);
	cr_assert_eq(sample(text, "lat_count "), RACE_SHARDS * RACE_N);
	cr_assert_eq(sample(text, "lat_bucket{le=\"0.001\"} "),
		     RACE_SHARDS * (RACE_N - RACE_N / 3));
	cr_assert_eq(sample(text, "q{queue=\"common\"} "), RACE_SHARDS * RACE_N);
	for (unsigned i = 0; i < RACE_SHARDS; i++) {
		char want[64];

		snprintf(want, sizeof(want), "q{queue=\"shard-%u-0\"} 1\n", i);
		cr_assert_not_null(strstr(text, want), "%s missing:\n%s", want, text);
	}
	free(text);
	pt_metrics_free(m);
}
