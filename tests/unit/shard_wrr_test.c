/* shard_wrr_test.c -- the smooth weighted round robin that picks a message's
 * egress source from its pool (shard_source.c): exact counts, smoothness,
 * zero weights, and the first cycle's order. */
#include <criterion/criterion.h>
#include <string.h>

#include "shard/shard_int.h"

#define MAX_ENTRIES 8

struct wrr {
	struct policy_egress_pool_entry entries[MAX_ENTRIES];
	int64_t current[MAX_ENTRIES];
	size_t n;
};

static struct wrr wrr_of(const uint32_t *weights, size_t n)
{
	static char *names[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
	struct wrr w;

	memset(&w, 0, sizeof(w));
	w.n = n;
	for (size_t i = 0; i < n; i++) {
		w.entries[i].name = names[i];
		w.entries[i].weight = weights[i];
	}
	return w;
}

static size_t pick(struct wrr *w)
{
	return shard_wrr_pick(w->current, w->entries, w->n);
}

Test(shard_wrr, three_to_one_is_exact_over_4000_picks_and_smooth)
{
	struct wrr w = wrr_of((uint32_t[]){3, 1}, 2);
	size_t count[2] = {0, 0}, run = 0, longest = 0;

	for (int i = 0; i < 4000; i++) {
		size_t k = pick(&w);

		cr_assert_lt(k, 2);
		count[k]++;
		run = k == 0 ? run + 1 : 0;
		longest = run > longest ? run : longest;
		/* Exact at the end of every cycle of 4, not only overall. */
		if (i % 4 == 3) {
			cr_assert_eq(count[0], (size_t)(i + 1) / 4 * 3, "after %d picks", i + 1);
			cr_assert_eq(count[1], (size_t)(i + 1) / 4, "after %d picks", i + 1);
		}
	}
	cr_assert_eq(count[0], 3000);
	cr_assert_eq(count[1], 1000);
	cr_assert_leq(longest, 3, "the heavier source ran %zu times in a row", longest);
}

Test(shard_wrr, first_cycle_order_is_interleaved)
{
	struct wrr w = wrr_of((uint32_t[]){3, 1}, 2);
	size_t want[] = {0, 0, 1, 0, 0, 0, 1, 0};

	for (size_t i = 0; i < PT_ARRAY_LEN(want); i++)
		cr_assert_eq(pick(&w), want[i], "pick %zu", i);
}

Test(shard_wrr, five_three_two_spreads_each_source_evenly)
{
	struct wrr w = wrr_of((uint32_t[]){5, 3, 2}, 3);
	size_t count[3] = {0}, last[3] = {0}, gap_max[3] = {0};

	for (size_t i = 1; i <= 10000; i++) {
		size_t k = pick(&w);

		count[k]++;
		if (last[k] && i - last[k] > gap_max[k])
			gap_max[k] = i - last[k];
		last[k] = i;
	}
	cr_assert_eq(count[0], 5000);
	cr_assert_eq(count[1], 3000);
	cr_assert_eq(count[2], 2000);
	/* Smooth: a source of weight w out of 10 waits at most about 10 / w
	 * picks between turns, never a whole cycle of the others. */
	cr_assert_leq(gap_max[0], 3);
	cr_assert_leq(gap_max[1], 4);
	cr_assert_leq(gap_max[2], 5);
}

Test(shard_wrr, zero_weight_is_never_chosen)
{
	struct wrr w = wrr_of((uint32_t[]){0, 2, 0, 1}, 4);
	size_t count[4] = {0};

	for (int i = 0; i < 300; i++)
		count[pick(&w)]++;
	cr_assert_eq(count[0], 0);
	cr_assert_eq(count[2], 0);
	cr_assert_eq(count[1], 200);
	cr_assert_eq(count[3], 100);
}

Test(shard_wrr, no_positive_weight_picks_nothing)
{
	struct wrr w = wrr_of((uint32_t[]){0, 0}, 2);

	cr_assert_eq(pick(&w), SIZE_MAX);
	cr_assert_eq(w.current[0], 0);
	cr_assert_eq(w.current[1], 0);
	w = wrr_of(NULL, 0);
	cr_assert_eq(pick(&w), SIZE_MAX);
}

Test(shard_wrr, equal_weights_alternate_and_one_entry_always_wins)
{
	struct wrr w = wrr_of((uint32_t[]){4, 4, 4}, 3);

	for (int i = 0; i < 30; i++)
		cr_assert_eq(pick(&w), (size_t)(i % 3));
	w = wrr_of((uint32_t[]){7}, 1);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(pick(&w), 0);
}

Test(shard_wrr, huge_weights_do_not_overflow)
{
	struct wrr w = wrr_of((uint32_t[]){UINT32_MAX, UINT32_MAX - 1, 1}, 3);
	size_t count[3] = {0};

	for (int i = 0; i < 100000; i++)
		count[pick(&w)]++;
	cr_assert_eq(count[2], 0); /* 1 in 2^33: not within 100,000 picks */
	cr_assert_geq(count[0], 49999);
	cr_assert_geq(count[1], 49999);
}
