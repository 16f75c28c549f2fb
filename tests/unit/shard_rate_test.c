/* shard_rate_test.c -- the GCRA spacing behind max_message_rate and
 * max_connection_rate (shard_ready.c). */
#include <criterion/criterion.h>

#include "shard/shard_int.h"

static struct shard_rate rate_of(uint64_t n, uint64_t period_ms)
{
	struct policy_rate pr = { n, period_ms };
	struct shard_rate r = { 0 };

	shard_rate_set(&r, &pr);
	return r;
}

Test(shard_rate, unlimited_always_allows)
{
	struct shard_rate r = rate_of(0, 0);
	uint64_t wait = 12345;

	for (int i = 0; i < 1000; i++)
		cr_assert(shard_rate_take(&r, 1000000, &wait));
	cr_assert_eq(wait, 12345); /* untouched */
}

Test(shard_rate, twenty_per_second_spaces_events_50ms_apart)
{
	struct shard_rate r = rate_of(20, 1000);
	uint64_t now = 5000000, wait = 0;

	cr_assert_eq(r.interval_us, 50000);
	cr_assert(shard_rate_take(&r, now, &wait));
	/* No burst: the next one must wait the whole interval. */
	cr_assert_not(shard_rate_take(&r, now, &wait));
	cr_assert_eq(wait, 50000);
	cr_assert_not(shard_rate_take(&r, now + 49999, &wait));
	cr_assert_eq(wait, 1);
	cr_assert(shard_rate_take(&r, now + 50000, &wait));
}

Test(shard_rate, n_events_over_time_match_the_rate)
{
	struct shard_rate r = rate_of(20, 1000);
	uint64_t now = 1000000, wait, first = 0, last = 0;
	int n = 0;

	/* Ask every millisecond for 10 s: 20/s allows exactly 200 (+1 at t=0). */
	for (uint64_t t = 0; t <= 10000000; t += 1000) {
		if (shard_rate_take(&r, now + t, &wait)) {
			if (n++ == 0)
				first = t;
			last = t;
		}
	}
	cr_assert_eq(n, 201);
	cr_assert_eq(last - first, 10000000);
}

Test(shard_rate, idle_time_does_not_bank_a_burst)
{
	struct shard_rate r = rate_of(5000, 3600000); /* "5000/h": one per 720 ms */
	uint64_t wait;

	cr_assert_eq(r.interval_us, 720000);
	cr_assert(shard_rate_take(&r, 1000000, &wait));
	/* An hour later: one event, then the spacing again. */
	cr_assert(shard_rate_take(&r, 3601000000ull, &wait));
	cr_assert_not(shard_rate_take(&r, 3601000000ull, &wait));
	cr_assert_eq(wait, 720000);
}
