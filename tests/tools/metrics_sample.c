/*
 * metrics_sample.c -- print Petrel's /metrics text for known values, for
 * the e2e suite's check with Python's prometheus_client parser
 * (tests/e2e/test_metrics.py).  Not installed.
 *
 * It registers the families petreld registers (shard_metrics_new), for
 * SAMPLE_SHARDS shards, writes every series through the same calls the
 * shards make, and prints shard_metrics' render.  The values, which the
 * Python test recomputes:
 *
 *   scalar k on shard i          1000 * k + i + 1   (pt_metrics_add for
 *                                counters, pt_metrics_set for gauges);
 *   spool_sync_latency, shard i  7 us + i ns, 3 ms, 20 s;
 *   lua_event_latency, event j   (j + 1) ms once on every shard;
 *   scheduled_count rows         on every shard: "common" 1000, the
 *                                hostile labels below and a 299-byte
 *                                name 500 each, and 100 rows "bulk-N" =
 *                                N (each shard keeps its
 *                                SHARD_METRICS_QUEUES_MAX largest);
 *   ready/connection rows        "unspecified->mx.example.com" = i + 1 / 1
 *                                on every shard.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/shard_metrics.h"

#define SAMPLE_SHARDS 3

/* Label values a queue name may carry: quote, backslash, line feed,
 * invalid UTF-8, valid UTF-8, and a name past the label limit. */
static const char *hostile[] = {
    "tenant\"quoted\"@example.com", "back\\slash@example.com", "line\nfeed@example.com",
    "bad\xff\xfe@example.com",	    "caf\xc3\xa9@example.com",
};

static bool is_counter(int k)
{
	return k <= SHARD_M_CONN_DENIED || k >= SHARD_M_DNS_HIT;
}

static void fill_scalars(struct pt_metrics_shard *b, unsigned i)
{
	for (int k = 0; k < SHARD_M_COUNT; k++) {
		uint64_t v = 1000ull * (unsigned)k + i + 1;

		if (is_counter(k))
			pt_metrics_add(b, (unsigned)k, v);
		else
			pt_metrics_set(b, (unsigned)k, (int64_t)v);
	}
}

static void fill_histograms(struct pt_metrics_shard *b, unsigned i)
{
	pt_metrics_observe(b, SHARD_H_SPOOL_SYNC, 7000 + i);
	pt_metrics_observe(b, SHARD_H_SPOOL_SYNC, 3000000);
	pt_metrics_observe(b, SHARD_H_SPOOL_SYNC, 20000000000ull);
	for (unsigned j = 0; j < shard_n_lua_events; j++)
		pt_metrics_observe(b, SHARD_H_LUA_FIRST + j, (j + 1) * 1000000ull);
}

static void fill_tables(struct pt_metrics_shard *b, unsigned i, const char *longname)
{
	static char bulk[100][16];
	struct pt_metrics_row rows[1 + PT_ARRAY_LEN(hostile) + 1 + 100], ready[1];
	size_t n = 0;

	rows[n++] = (struct pt_metrics_row){.label = "common", .v = {1000}};
	for (size_t h = 0; h < PT_ARRAY_LEN(hostile); h++)
		rows[n++] = (struct pt_metrics_row){.label = hostile[h], .v = {500}};
	rows[n++] = (struct pt_metrics_row){.label = longname, .v = {500}};
	for (unsigned k = 0; k < 100; k++) {
		snprintf(bulk[k], sizeof(bulk[k]), "bulk-%u", k);
		rows[n++] = (struct pt_metrics_row){.label = bulk[k], .v = {k}};
	}
	pt_metrics_publish(b, SHARD_T_SCHEDULED, rows, n);
	ready[0] = (struct pt_metrics_row){.label = "unspecified->mx.example.com", .v = {i + 1, 1}};
	pt_metrics_publish(b, SHARD_T_READY, ready, 1);
}

int main(void)
{
	struct pt_metrics *m = shard_metrics_new(SAMPLE_SHARDS);
	struct pt_buf out = PT_BUF_INIT;
	char longname[300];

	if (!m) {
		fprintf(stderr, "metrics-sample: out of memory\n");
		return 1;
	}
	memset(longname, 'x', 299);
	longname[299] = '\0';
	for (unsigned i = 0; i < SAMPLE_SHARDS; i++) {
		struct pt_metrics_shard *b = pt_metrics_shard(m, i);

		fill_scalars(b, i);
		fill_histograms(b, i);
		fill_tables(b, i, longname);
	}
	if (pt_metrics_render(m, &out) != PT_OK) {
		fprintf(stderr, "metrics-sample: out of memory rendering\n");
		return 1;
	}
	fwrite(out.data, 1, out.len, stdout);
	pt_buf_free(&out);
	pt_metrics_free(m);
	return fflush(stdout) == 0 ? 0 : 1;
}
