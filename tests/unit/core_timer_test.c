/*
 * core_timer_test.c -- the timer wheel: firing order, deletion and re-arming
 * from callbacks, deadlines many revolutions away, big clock jumps, overdue
 * timers, and pt_wheel_next_ms().
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "core/timer.h"

/* A test timer records the order it fired in and can act on the wheel. */
struct tt {
	struct pt_timer timer;
	int id;
	uint64_t fired_at; /* wheel time when fired */
	int n_fired;
	/* optional actions in the callback */
	struct tt *del_other;
	uint64_t rearm_in_ms; /* 0: none */
	int rearm_times;
};

static struct pt_wheel wheel;
static int order[64];
static int n_order;

static void tt_fire(struct pt_timer *t)
{
	struct tt *x = pt_container_of(t, struct tt, timer);

	cr_assert_not(pt_timer_armed(t), "timer is disarmed before its callback");
	x->fired_at = wheel.now_ms;
	x->n_fired++;
	if (n_order < (int)PT_ARRAY_LEN(order))
		order[n_order++] = x->id;
	if (x->del_other != NULL)
		pt_timer_del(&wheel, &x->del_other->timer);
	if (x->rearm_in_ms != 0 && x->rearm_times > 0) {
		x->rearm_times--;
		pt_timer_add(&wheel, t, wheel.now_ms + x->rearm_in_ms);
	}
}

static void tt_init(struct tt *x, int id)
{
	*x = (struct tt){.id = id};
	pt_timer_init(&x->timer, tt_fire);
}

static void setup(void)
{
	pt_wheel_init(&wheel, 1000);
	n_order = 0;
}

TestSuite(timer, .init = setup);

Test(timer, fires_in_deadline_order_at_the_right_time)
{
	struct tt a, b, c, d;

	tt_init(&a, 1);
	tt_init(&b, 2);
	tt_init(&c, 3);
	tt_init(&d, 4);
	pt_timer_add(&wheel, &c.timer, 1030);
	pt_timer_add(&wheel, &a.timer, 1010);
	pt_timer_add(&wheel, &d.timer, 1030); /* same deadline as c, armed later */
	pt_timer_add(&wheel, &b.timer, 1020);
	cr_assert_eq(wheel.n_armed, 4);
	cr_assert_eq(pt_wheel_advance(&wheel, 1009), 0);
	cr_assert_eq(pt_wheel_advance(&wheel, 1010), 1);
	cr_assert_eq(a.fired_at, 1010);
	cr_assert_eq(pt_wheel_advance(&wheel, 1029), 1);
	cr_assert_eq(pt_wheel_advance(&wheel, 1030), 2);
	cr_assert_eq(n_order, 4);
	cr_assert_eq(order[0], 1);
	cr_assert_eq(order[1], 2);
	cr_assert_eq(order[2], 3);
	cr_assert_eq(order[3], 4);
	cr_assert_eq(wheel.n_armed, 0);
	cr_assert_eq(pt_wheel_next_ms(&wheel), -1);
}

Test(timer, one_advance_over_many_deadlines_fires_them_sorted)
{
	struct tt t[10];

	/* Armed in scrambled order, all fired by one advance. */
	static const int deadline_off[10] = {50, 3, 900, 7, 4095, 4096, 1, 333, 8000, 2};
	for (int i = 0; i < 10; i++) {
		tt_init(&t[i], i);
		pt_timer_add(&wheel, &t[i].timer, 1000 + (uint64_t)deadline_off[i]);
	}
	cr_assert_eq(pt_wheel_advance(&wheel, 1000 + 9000), 10);
	static const int want[10] = {6, 9, 1, 3, 0, 7, 2, 4, 5, 8};
	for (int i = 0; i < 10; i++)
		cr_assert_eq(order[i], want[i], "position %d: %d", i, order[i]);
}

Test(timer, delete_and_rearm_before_due)
{
	struct tt a, b;

	tt_init(&a, 1);
	tt_init(&b, 2);
	pt_timer_add(&wheel, &a.timer, 1005);
	pt_timer_add(&wheel, &b.timer, 1005);
	cr_assert(pt_timer_armed(&a.timer));
	pt_timer_del(&wheel, &a.timer);
	cr_assert_not(pt_timer_armed(&a.timer));
	pt_timer_del(&wheel, &a.timer); /* harmless twice */
	cr_assert_eq(wheel.n_armed, 1);
	pt_timer_add(&wheel, &b.timer, 1100); /* re-arm moves it */
	cr_assert_eq(wheel.n_armed, 1);
	cr_assert_eq(pt_wheel_advance(&wheel, 1099), 0);
	cr_assert_eq(a.n_fired, 0);
	cr_assert_eq(pt_wheel_advance(&wheel, 1100), 1);
	cr_assert_eq(b.n_fired, 1);
	cr_assert_eq(b.fired_at, 1100);
}

Test(timer, callback_deletes_a_timer_due_in_the_same_advance)
{
	struct tt a, b, c;

	tt_init(&a, 1);
	tt_init(&b, 2);
	tt_init(&c, 3);
	a.del_other = &b;
	pt_timer_add(&wheel, &a.timer, 1001);
	pt_timer_add(&wheel, &b.timer, 1002);
	pt_timer_add(&wheel, &c.timer, 1003);
	cr_assert_eq(pt_wheel_advance(&wheel, 1010), 2);
	cr_assert_eq(a.n_fired, 1);
	cr_assert_eq(b.n_fired, 0);
	cr_assert_eq(c.n_fired, 1);
	cr_assert_not(pt_timer_armed(&b.timer));
	cr_assert_eq(wheel.n_armed, 0);
	cr_assert_eq(pt_wheel_next_ms(&wheel), -1);
}

Test(timer, callback_deletes_a_later_timer)
{
	struct tt a, b;

	tt_init(&a, 1);
	tt_init(&b, 2);
	a.del_other = &b;
	pt_timer_add(&wheel, &a.timer, 1001);
	pt_timer_add(&wheel, &b.timer, 9000);
	cr_assert_eq(pt_wheel_advance(&wheel, 1001), 1);
	cr_assert_eq(wheel.n_armed, 0);
	cr_assert_eq(pt_wheel_advance(&wheel, 20000), 0);
	cr_assert_eq(b.n_fired, 0);
}

Test(timer, callback_rearms_itself)
{
	struct tt a;

	tt_init(&a, 1);
	a.rearm_in_ms = 10;
	a.rearm_times = 3;
	pt_timer_add(&wheel, &a.timer, 1010);
	/* Even a big advance fires a self-re-arming timer only once per call. */
	cr_assert_eq(pt_wheel_advance(&wheel, 1010), 1);
	cr_assert(pt_timer_armed(&a.timer));
	cr_assert_eq(a.timer.deadline_ms, 1020);
	cr_assert_eq(pt_wheel_next_ms(&wheel), 10);
	cr_assert_eq(pt_wheel_advance(&wheel, 1019), 0);
	cr_assert_eq(pt_wheel_advance(&wheel, 1020), 1);
	cr_assert_eq(pt_wheel_advance(&wheel, 5000), 1); /* fires at 5000, re-arms 5010 */
	cr_assert_eq(a.timer.deadline_ms, 5010);
	cr_assert_eq(pt_wheel_advance(&wheel, 5010), 1);
	cr_assert_eq(a.n_fired, 4);
	cr_assert_not(pt_timer_armed(&a.timer));
	cr_assert_eq(wheel.n_armed, 0);
}

static void rearm_in_past(struct pt_timer *t)
{
	struct tt *x = pt_container_of(t, struct tt, timer);

	x->n_fired++;
	/* A deadline already passed: must wait for the next advance, not loop. */
	if (x->n_fired < 3)
		pt_timer_add(&wheel, t, wheel.now_ms - 5);
}

Test(timer, rearm_into_the_past_fires_on_next_advance_not_now)
{
	struct tt a;

	tt_init(&a, 1);
	a.timer.fn = rearm_in_past;
	pt_timer_add(&wheel, &a.timer, 1001);
	cr_assert_eq(pt_wheel_advance(&wheel, 1001), 1);
	cr_assert_eq(a.n_fired, 1);
	cr_assert_eq(pt_wheel_next_ms(&wheel), 0);
	/* Same time again: an overdue timer still fires. */
	cr_assert_eq(pt_wheel_advance(&wheel, 1001), 1);
	cr_assert_eq(a.n_fired, 2);
	cr_assert_eq(pt_wheel_advance(&wheel, 1002), 1);
	cr_assert_eq(a.n_fired, 3);
	cr_assert_eq(pt_wheel_advance(&wheel, 1003), 0);
}

Test(timer, past_deadline_fires_on_next_advance)
{
	struct tt a;

	tt_init(&a, 1);
	pt_timer_add(&wheel, &a.timer, 10); /* long before the wheel's time 1000 */
	cr_assert_eq(a.timer.rounds, 0);
	cr_assert_eq(pt_wheel_next_ms(&wheel), 0);
	cr_assert_eq(pt_wheel_advance(&wheel, 1000), 1);
	cr_assert_eq(a.fired_at, 1000);
	/* A clock that goes back is treated as standing still. */
	pt_timer_add(&wheel, &a.timer, 1003);
	cr_assert_eq(pt_wheel_advance(&wheel, 500), 0);
	cr_assert_eq(wheel.now_ms, 1000);
	cr_assert_eq(pt_wheel_advance(&wheel, 1003), 1);
}

Test(timer, far_deadline_ten_hours_fires_exactly_once_on_time)
{
	struct tt far, near;
	uint64_t ten_h = 10ull * 3600 * 1000;

	tt_init(&far, 1);
	tt_init(&near, 2);
	pt_timer_add(&wheel, &far.timer, 1000 + ten_h);
	cr_assert_eq(far.timer.rounds, ten_h / PT_WHEEL_SLOTS);
	/* A near timer on the same slot must not drag the far one along. */
	pt_timer_add(&wheel, &near.timer, 1000 + ten_h % PT_WHEEL_SLOTS);
	cr_assert_eq((1000 + ten_h) % PT_WHEEL_SLOTS, near.timer.deadline_ms % PT_WHEEL_SLOTS);
	cr_assert_eq(pt_wheel_next_ms(&wheel), (int64_t)(ten_h % PT_WHEEL_SLOTS));

	/* Walk the clock in uneven steps, as an event loop would. */
	size_t fired = 0;
	uint64_t now = 1000;
	while (now < 1000 + ten_h - 1) {
		now += 997;
		if (now > 1000 + ten_h - 1)
			now = 1000 + ten_h - 1;
		fired += pt_wheel_advance(&wheel, now);
	}
	cr_assert_eq(fired, 1, "only the near timer so far");
	cr_assert_eq(near.n_fired, 1);
	cr_assert_eq(far.n_fired, 0);
	cr_assert_eq(pt_wheel_next_ms(&wheel), 1);
	cr_assert_eq(pt_wheel_advance(&wheel, 1000 + ten_h), 1);
	cr_assert_eq(far.n_fired, 1);
	cr_assert_eq(far.fired_at, 1000 + ten_h);
}

Test(timer, big_jump_fires_everything_due_and_keeps_the_rest)
{
	enum { N = 50 };
	struct tt t[N];
	uint64_t base = 1000;

	/* Deadlines spread over ~100 s, i.e. many revolutions. */
	for (int i = 0; i < N; i++) {
		tt_init(&t[i], i);
		pt_timer_add(&wheel, &t[i].timer, base + 1 + (uint64_t)i * 2047);
	}
	/* Jump 60 s at once: timers 0..29 (deadline <= base + 60000) are due. */
	size_t n = pt_wheel_advance(&wheel, base + 60000);
	size_t want = 0;
	for (int i = 0; i < N; i++)
		if (base + 1 + (uint64_t)i * 2047 <= base + 60000)
			want++;
	cr_assert_eq(n, want);
	cr_assert_eq(n, 30);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(t[i].n_fired, i < 30 ? 1 : 0, "timer %d", i);
		cr_assert_eq(pt_timer_armed(&t[i].timer), i >= 30);
	}
	for (int i = 0; i < 30; i++)
		cr_assert_eq(order[i], i, "deadline order after a jump");
	cr_assert_eq(wheel.n_armed, N - 30);
	cr_assert_eq(pt_wheel_next_ms(&wheel), (int64_t)(base + 1 + 30 * 2047 - (base + 60000)));
	/* A jump of years: the rest fire, once each. */
	cr_assert_eq(pt_wheel_advance(&wheel, base + 3ull * 365 * 86400 * 1000), N - 30);
	for (int i = 0; i < N; i++)
		cr_assert_eq(t[i].n_fired, 1);
	cr_assert_eq(wheel.n_armed, 0);
}

Test(timer, empty_wheel_jumps_without_work)
{
	struct tt a;

	cr_assert_eq(pt_wheel_next_ms(&wheel), -1);
	cr_assert_eq(pt_wheel_advance(&wheel, UINT64_C(1) << 50), 0);
	cr_assert_eq(wheel.now_ms, UINT64_C(1) << 50);
	tt_init(&a, 1);
	pt_timer_add(&wheel, &a.timer, (UINT64_C(1) << 50) + 7);
	cr_assert_eq(pt_wheel_next_ms(&wheel), 7);
	cr_assert_eq(pt_wheel_advance(&wheel, (UINT64_C(1) << 50) + 7), 1);
}

Test(timer, next_ms_is_exact_and_tracks_earliest)
{
	struct tt a, b, c;

	tt_init(&a, 1);
	tt_init(&b, 2);
	tt_init(&c, 3);
	pt_timer_add(&wheel, &a.timer, 1000 + 300000); /* 5 minutes */
	cr_assert_eq(pt_wheel_next_ms(&wheel), 300000);
	pt_timer_add(&wheel, &b.timer, 1000 + 4000);
	cr_assert_eq(pt_wheel_next_ms(&wheel), 4000);
	pt_timer_add(&wheel, &c.timer, 1000 + 1);
	cr_assert_eq(pt_wheel_next_ms(&wheel), 1);
	pt_timer_del(&wheel, &c.timer);
	cr_assert_eq(pt_wheel_next_ms(&wheel), 4000);
	cr_assert_eq(pt_wheel_advance(&wheel, 2000), 0);
	cr_assert_eq(pt_wheel_next_ms(&wheel), 3000);
	cr_assert_eq(pt_wheel_advance(&wheel, 5000), 1);
	cr_assert_eq(pt_wheel_next_ms(&wheel), 296000);
	pt_timer_del(&wheel, &a.timer);
	cr_assert_eq(pt_wheel_next_ms(&wheel), -1);
}

/* Randomised check against a brute-force model: every timer fires exactly
 * once, at the first advance whose time reaches its deadline. */
Test(timer, random_schedule_matches_model)
{
	enum { N = 2000 };
	struct tt *t = calloc(N, sizeof(*t));
	uint64_t *due = calloc(N, sizeof(*due));
	uint64_t now = 1000, seed = 42;

	cr_assert_not_null(t);
	for (int i = 0; i < N; i++) {
		tt_init(&t[i], i);
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		due[i] = now + (seed >> 33) % 30000;
		pt_timer_add(&wheel, &t[i].timer, due[i]);
	}
	while (wheel.n_armed > 0) {
		uint64_t prev = now;
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		now += (seed >> 33) % 700;
		size_t want = 0;
		for (int i = 0; i < N; i++)
			if (due[i] > prev && due[i] <= now)
				want++;
		cr_assert_eq(pt_wheel_advance(&wheel, now), want, "at %lu", (unsigned long)now);
		for (int i = 0; i < N; i++) {
			if (due[i] <= now)
				cr_assert_eq(t[i].n_fired, 1);
			if (due[i] <= now && due[i] > prev)
				cr_assert_eq(t[i].fired_at, now);
			if (due[i] > now)
				cr_assert_eq(t[i].n_fired, 0);
		}
	}
	free(t);
	free(due);
}
