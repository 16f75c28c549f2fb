/*
 * core_metrics_rows_test.c -- pt_metrics_table_rows, the table read back
 * (the admin API's queue summary): every shard's rows merged by label and
 * summed, sorted, the prefix not added, an unknown table refused, a new
 * publication replacing a shard's rows.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"

static int gauge(struct pt_metrics *m, const char *name)
{
	struct pt_metric_family f = {.name = name, .help = name, .type = PT_METRIC_GAUGE};

	return pt_metrics_family(m, &f);
}

Test(metrics_rows, merged_summed_and_sorted_by_label)
{
	struct pt_metrics *m = pt_metrics_new(2);
	int cols[2] = {gauge(m, "ready_count"), gauge(m, "connection_count")};
	int t = pt_metrics_table(m, "service", "smtp_client:", cols, 2, 8);
	struct pt_metrics_row a[2] = {{.label = "s->b", .v = {5, 1}},
				      {.label = "s->a", .v = {2, 0}}};
	struct pt_metrics_row b[1] = {{.label = "s->b", .v = {10, 4}}};
	struct pt_metrics_trow *rows;
	size_t n = 99;

	cr_assert_eq(pt_metrics_seal(m), PT_OK);
	rows = pt_metrics_table_rows(m, (unsigned)t, &n);
	cr_assert_not_null(rows);
	cr_assert_eq(n, 0); /* nothing published yet */
	free(rows);

	pt_metrics_publish(pt_metrics_shard(m, 0), (unsigned)t, a, 2);
	pt_metrics_publish(pt_metrics_shard(m, 1), (unsigned)t, b, 1);
	rows = pt_metrics_table_rows(m, (unsigned)t, &n);
	cr_assert_not_null(rows);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(rows[0].label, "s->a"); /* no "smtp_client:" prefix */
	cr_assert_eq(rows[0].v[0], 2);
	cr_assert_eq(rows[0].v[1], 0);
	cr_assert_str_eq(rows[1].label, "s->b");
	cr_assert_eq(rows[1].v[0], 15);
	cr_assert_eq(rows[1].v[1], 5);
	free(rows);

	/* Shard 1 publishes nothing now: only shard 0's rows remain. */
	pt_metrics_publish(pt_metrics_shard(m, 1), (unsigned)t, NULL, 0);
	rows = pt_metrics_table_rows(m, (unsigned)t, &n);
	cr_assert_eq(n, 2);
	cr_assert_eq(rows[1].v[0], 5);
	free(rows);

	cr_assert_null(pt_metrics_table_rows(m, (unsigned)t + 1, &n));
	cr_assert_eq(n, 0);
	pt_metrics_free(m);
}
