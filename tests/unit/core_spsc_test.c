/*
 * core_spsc_test.c -- the SPSC ring: capacity rounding, the exact full and
 * empty edges, FIFO order across many wrap-arounds, and a two-thread stress
 * run that checks every one of 5,000,000 entries arrives once, in order.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>

#include "core/spsc.h"

#define ITEM(i) ((void *)(uintptr_t)((i) + 1)) /* +1: never NULL */

Test(spsc, capacity_rounds_up_to_power_of_two)
{
	static const size_t in[] = {0, 1, 2, 3, 4, 5, 1000, 1024, 1025};
	static const size_t want[] = {2, 2, 2, 4, 4, 8, 1024, 1024, 2048};

	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		struct pt_spsc *r = pt_spsc_new(in[i]);
		cr_assert_not_null(r);
		cr_assert_eq(pt_spsc_capacity(r), want[i], "capacity(%zu) = %zu", in[i],
			     pt_spsc_capacity(r));
		pt_spsc_free(r);
	}
	pt_spsc_free(NULL);
}

Test(spsc, empty_ring_pops_null)
{
	struct pt_spsc *r = pt_spsc_new(4);

	cr_assert_null(pt_spsc_pop(r));
	cr_assert_eq(pt_spsc_count(r), 0);
	cr_assert(pt_spsc_push(r, ITEM(0)));
	cr_assert_eq(pt_spsc_pop(r), ITEM(0));
	cr_assert_null(pt_spsc_pop(r));
	cr_assert_null(pt_spsc_pop(r));
	pt_spsc_free(r);
}

Test(spsc, full_ring_refuses_exactly_at_capacity)
{
	struct pt_spsc *r = pt_spsc_new(8);

	for (size_t i = 0; i < 8; i++) {
		cr_assert(pt_spsc_push(r, ITEM(i)), "push %zu", i);
		cr_assert_eq(pt_spsc_count(r), i + 1);
	}
	cr_assert_not(pt_spsc_push(r, ITEM(8)));
	cr_assert_eq(pt_spsc_count(r), 8);
	/* One pop frees exactly one slot. */
	cr_assert_eq(pt_spsc_pop(r), ITEM(0));
	cr_assert(pt_spsc_push(r, ITEM(8)));
	cr_assert_not(pt_spsc_push(r, ITEM(9)));
	for (size_t i = 1; i <= 8; i++)
		cr_assert_eq(pt_spsc_pop(r), ITEM(i), "pop %zu", i);
	cr_assert_null(pt_spsc_pop(r));
	cr_assert_eq(pt_spsc_count(r), 0);
	pt_spsc_free(r);
}

Test(spsc, fifo_order_across_many_wraps)
{
	struct pt_spsc *r = pt_spsc_new(4);
	size_t pushed = 0, popped = 0;

	/* Uneven batches so head and tail cross slot 0 at every offset. */
	for (int round = 0; round < 1000; round++) {
		size_t batch = 1 + (size_t)round % 4;
		for (size_t i = 0; i < batch; i++)
			cr_assert(pt_spsc_push(r, ITEM(pushed++)));
		cr_assert_eq(pt_spsc_count(r), batch);
		for (size_t i = 0; i < batch; i++)
			cr_assert_eq(pt_spsc_pop(r), ITEM(popped++));
		cr_assert_null(pt_spsc_pop(r));
	}
	cr_assert_eq(popped, pushed);
	pt_spsc_free(r);
}

#define STRESS_N 5000000u

struct stress {
	struct pt_spsc *r;
	size_t n_full; /* pushes refused: proves the ring really ran full */
};

static void *stress_producer(void *arg)
{
	struct stress *s = arg;

	for (size_t i = 0; i < STRESS_N; i++) {
		while (!pt_spsc_push(s->r, ITEM(i))) {
			s->n_full++;
			sched_yield();
		}
	}
	return NULL;
}

/* The consumer runs on the test thread; the producer on a second thread. */
Test(spsc, two_threads_five_million_in_order, .timeout = 120)
{
	struct stress s = {.r = pt_spsc_new(1024), .n_full = 0};
	pthread_t producer;
	size_t expect = 0, n_empty = 0;

	cr_assert_not_null(s.r);
	cr_assert_eq(pthread_create(&producer, NULL, stress_producer, &s), 0);
	while (expect < STRESS_N) {
		void *p = pt_spsc_pop(s.r);
		if (p == NULL) {
			n_empty++;
			sched_yield();
			continue;
		}
		if (p != ITEM(expect))
			cr_assert_fail("entry %zu: got %zu", expect, (size_t)(uintptr_t)p - 1);
		expect++;
	}
	cr_assert_eq(pthread_join(producer, NULL), 0);
	cr_assert_eq(expect, STRESS_N);
	cr_assert_null(pt_spsc_pop(s.r), "nothing beyond the last entry");
	cr_assert_eq(pt_spsc_count(s.r), 0);
	cr_log_info("ring full %zu times, empty %zu times", s.n_full, n_empty);
	pt_spsc_free(s.r);
}
