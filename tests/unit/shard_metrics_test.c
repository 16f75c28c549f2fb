/*
 * shard_metrics_test.c -- the shard side of the metrics (shard_metrics.c):
 * Petrel's families register with the ids the hot path uses, a shard's
 * once-a-second tick publishes its connections, spool, scheduled and
 * ready queues, Lua handler times land in their event's histogram, and
 * shard_unit_set_state keeps a queue's count of active units exact.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/shard_int.h"
#include "tests/unit/test_util.h"

static char tmpdir[64];

static void setup(void)
{
	test_tmpdir_make(tmpdir, sizeof(tmpdir), "shard_metrics");
}

static void teardown(void)
{
	test_tmpdir_remove(tmpdir);
}

TestSuite(shard_metrics, .init = setup, .fini = teardown, .timeout = 30);

static char *render(struct pt_metrics *m)
{
	struct pt_buf b = PT_BUF_INIT;
	char *s;

	cr_assert_eq(pt_metrics_render(m, &b), PT_OK);
	s = strdup(pt_buf_cstr(&b));
	pt_buf_free(&b);
	return s;
}

/* The text holds this exact line. */
static void assert_line(const char *text, const char *line)
{
	char want[512];

	snprintf(want, sizeof(want), "\n%s\n", line);
	cr_assert_not_null(strstr(text, want), "no line \"%s\" in:\n%s", line, text);
}

Test(shard_metrics, registers_every_family_with_the_enum_ids)
{
	struct pt_metrics *m = shard_metrics_new(2);
	char *t;

	cr_assert_not_null(m);
	/* Each id reaches the series the enum names. */
	pt_metrics_add(pt_metrics_shard(m, 1), SHARD_M_DELIVERED, 7);
	pt_metrics_add(pt_metrics_shard(m, 0), SHARD_M_CONN_TOTAL_OUT, 3);
	pt_metrics_set(pt_metrics_shard(m, 0), SHARD_M_DISK_FREE_BYTES, 10);
	pt_metrics_set(pt_metrics_shard(m, 1), SHARD_M_DISK_FREE_BYTES, 12);
	pt_metrics_add(pt_metrics_shard(m, 0), SHARD_M_DNS_TEMPFAIL, 2);
	t = render(m);
	assert_line(t, "total_messages_delivered{service=\"smtp_client\"} 7");
	assert_line(t, "total_messages_delivered_by_shard{shard=\"1\",service=\"smtp_client\"} 7");
	assert_line(t, "total_messages_delivered_by_shard{shard=\"0\",service=\"smtp_client\"} 0");
	assert_line(t, "total_connection_count{service=\"smtp_client\"} 3");
	assert_line(t, "total_connection_count{service=\"esmtp_listener\"} 0");
	assert_line(t, "disk_free_bytes{name=\"data\"} 12");
	assert_line(t, "dns_lookup_tempfail 2");
	assert_line(t, "# TYPE lua_event_latency histogram");
	cr_assert_null(strstr(t, "disk_free_bytes_by_shard"));
	free(t);
	pt_metrics_free(m);
}

Test(shard_metrics, lua_handler_times_land_in_their_event)
{
	struct pt_metrics *m = shard_metrics_new(1);
	struct shard s;
	char *t;

	memset(&s, 0, sizeof(s));
	s.metrics = pt_metrics_shard(m, 0);
	shard_metrics_lua_event(&s, "get_queue_config", 3000000);	       /* 3 ms */
	shard_metrics_lua_event(&s, "get_queue_config", 20000);		       /* 20 us */
	shard_metrics_lua_event(&s, "smtp_server_message_received", 12000000); /* 12 ms */
	shard_metrics_lua_event(&s, "no_such_event", 1000);		       /* not counted */
	t = render(m);
	assert_line(t, "lua_event_latency_bucket{event=\"get_queue_config\",le=\"0.000025\"} 1");
	assert_line(t, "lua_event_latency_bucket{event=\"get_queue_config\",le=\"0.0025\"} 1");
	assert_line(t, "lua_event_latency_bucket{event=\"get_queue_config\",le=\"0.005\"} 2");
	assert_line(t, "lua_event_latency_sum{event=\"get_queue_config\"} 0.00302");
	assert_line(t, "lua_event_latency_count{event=\"get_queue_config\"} 2");
	assert_line(t,
		    "lua_event_latency_bucket{event=\"smtp_server_message_received\",le=\"0.01\"} "
		    "0");
	assert_line(t,
		    "lua_event_latency_bucket{event=\"smtp_server_message_received\",le=\"0.025\"} "
		    "1");
	assert_line(t, "lua_event_latency_count{event=\"get_egress_pool\"} 0");
	cr_assert_null(strstr(t, "no_such_event"));
	free(t);
	pt_metrics_free(m);
}

static struct shard_sched *sched_new(struct shard *s, const char *name, size_t n_units)
{
	struct shard_sched *sq = calloc(1, sizeof(*sq));

	sq->name = strdup(name);
	sq->n_units = n_units;
	cr_assert_eq(pt_strmap_put(&s->scheds, sq->name, sq), PT_OK);
	return sq;
}

static struct shard_ready *ready_new(struct shard *s, const char *key, size_t n_ready,
				     unsigned n_conns)
{
	struct shard_ready *rq = calloc(1, sizeof(*rq));

	rq->key = strdup(key);
	rq->n_ready = n_ready;
	rq->n_conns = n_conns;
	cr_assert_eq(pt_strmap_put(&s->readies, rq->key, rq), PT_OK);
	return rq;
}

Test(shard_metrics, tick_publishes_connections_spool_and_queues)
{
	struct pt_metrics *m = shard_metrics_new(2);
	struct spool_config sc = {.path = tmpdir, .shard = 1};
	struct shard s;
	struct shard_sched *a, *b;
	struct shard_unit u[3];
	char err[256], *t, line[128];
	size_t pos = 0;
	void *v;

	memset(&s, 0, sizeof(s));
	memset(u, 0, sizeof(u));
	s.metrics = pt_metrics_shard(m, 1);
	cr_assert_eq(spool_open(&s.spool, &sc, NULL, NULL, err, sizeof(err)), PT_OK, "%s", err);
	s.n_conns = 4;
	s.n_out = 2;
	a = sched_new(&s, "tenant@example.com", 0);
	b = sched_new(&s, "camp:t\"x@example.org", 0);
	/* Three units of a: one waits, one is ready, one is in a transaction. */
	for (int i = 0; i < 3; i++) {
		u[i].sched = a;
		a->n_units++;
		shard_unit_set_state(&u[i], UNIT_SCHEDULED);
	}
	shard_unit_set_state(&u[1], UNIT_READY);
	shard_unit_set_state(&u[2], UNIT_READY);
	shard_unit_set_state(&u[2], UNIT_INFLIGHT);
	cr_assert_eq(a->n_active, 2);
	b->n_units = 5;
	ready_new(&s, "unspecified->mx.example.com", 2, 1);
	ready_new(&s, "ip-1->(mx1|mx2).example.net", 0, 3);
	shard_metrics_tick(&s);
	t = render(m);
	assert_line(t, "connection_count_by_shard{shard=\"1\",service=\"esmtp_listener\"} 4");
	assert_line(t, "connection_count{service=\"smtp_client\"} 2");
	assert_line(t, "connection_count{service=\"smtp_client:ip-1->(mx1|mx2).example.net\"} 3");
	assert_line(t, "connection_count{service=\"smtp_client:unspecified->mx.example.com\"} 1");
	assert_line(t, "scheduled_count_total 6");
	assert_line(t, "scheduled_count{queue=\"camp:t\\\"x@example.org\"} 5");
	assert_line(t, "scheduled_count{queue=\"tenant@example.com\"} 1");
	assert_line(t, "ready_count{service=\"smtp_client\"} 2");
	assert_line(t, "ready_count{service=\"smtp_client:unspecified->mx.example.com\"} 2");
	assert_line(t, "ready_count{service=\"smtp_client:ip-1->(mx1|mx2).example.net\"} 0");
	snprintf(line, sizeof(line), "spool_segments_by_shard{shard=\"1\"} %llu",
		 (unsigned long long)spool_segments(s.spool));
	assert_line(t, line);
	cr_assert_geq(spool_segments(s.spool), 1);
	free(t);

	/* Units leave: the next tick shows it, and a queue gone from the map
	 * is gone from the text. */
	shard_unit_set_state(&u[2], UNIT_SCHEDULED);
	cr_assert_eq(a->n_active, 1);
	pt_strmap_del(&s.scheds, b->name);
	shard_metrics_tick(&s);
	t = render(m);
	assert_line(t, "scheduled_count_total 2");
	assert_line(t, "scheduled_count{queue=\"tenant@example.com\"} 2");
	cr_assert_null(strstr(t, "example.org"), "%s", t);
	free(t);

	free(b->name);
	free(b);
	while ((v = pt_strmap_next(&s.scheds, &pos))) {
		free(((struct shard_sched *)v)->name);
		free(v);
	}
	pos = 0;
	while ((v = pt_strmap_next(&s.readies, &pos))) {
		free(((struct shard_ready *)v)->key);
		free(v);
	}
	pt_strmap_free(&s.scheds);
	pt_strmap_free(&s.readies);
	free(s.metric_rows);
	spool_close(s.spool);
	pt_metrics_free(m);
}
