/*
 * timer.h -- a hashed timer wheel for per-shard timeouts (idle sessions,
 * DATA deadlines, shutdown).  Millisecond ticks; 4096 slots; a timer further
 * away than one revolution carries a `rounds` count.  Add and delete are
 * O(1); advancing is O(expired + slots passed).  Not thread-safe: one wheel
 * per shard.
 *
 * Timers are intrusive: the caller embeds struct pt_timer in its own object
 * and recovers it with pt_container_of in the callback.
 */
#ifndef PT_TIMER_H
#define PT_TIMER_H

#include "core/pt.h"

struct pt_timer;
typedef void (*pt_timer_fn)(struct pt_timer *t);

struct pt_timer {
	struct pt_timer *next, *prev; /* slot list; prev == NULL when not armed */
	uint64_t deadline_ms;
	uint64_t rounds;
	pt_timer_fn fn;
};

#define PT_WHEEL_SLOTS 4096

struct pt_wheel {
	struct pt_timer slots[PT_WHEEL_SLOTS]; /* list heads (sentinels) */
	uint64_t now_ms;		       /* time up to which timers have fired */
	size_t n_armed;
};

/* Initialise an empty wheel at time now_ms. */
void pt_wheel_init(struct pt_wheel *w, uint64_t now_ms);
/* Zero a timer before first use (so pt_timer_armed() is false). */
void pt_timer_init(struct pt_timer *t, pt_timer_fn fn);
/* Arm (or re-arm) t to fire at deadline_ms (a deadline in the past fires on
 * the next advance).  t must not be freed while armed. */
void pt_timer_add(struct pt_wheel *w, struct pt_timer *t, uint64_t deadline_ms);
/* Disarm; harmless when not armed. */
void pt_timer_del(struct pt_wheel *w, struct pt_timer *t);
bool pt_timer_armed(const struct pt_timer *t);
/* Fire, in deadline order within a tick, every timer due at or before
 * now_ms.  A callback may add or delete any timer, itself included.
 * Returns the number fired. */
size_t pt_wheel_advance(struct pt_wheel *w, uint64_t now_ms);
/* Milliseconds from w->now_ms until the earliest armed timer may be due
 * (0 if overdue), or -1 when none is armed.  May under-estimate (never
 * over-estimate), which only costs an early wake-up. */
int64_t pt_wheel_next_ms(const struct pt_wheel *w);

#endif
