/*
 * timer.c -- a hashed timer wheel (Varghese and Lauck) with 1 ms ticks.
 *
 * A timer with deadline d sits on the list of slot d % 4096.  Timers due
 * later than one revolution share slots with nearer ones; rather than
 * trusting a decremented `rounds` counter, every scan compares the exact
 * deadline, so visiting a slot twice or skipping ahead can never fire a
 * timer early or lose one.  `rounds` is kept as information (revolutions
 * still to go, refreshed whenever the slot is scanned).
 *
 * Invariant between calls: every armed timer is either on slot
 * deadline % 4096 with deadline > now_ms, or overdue (deadline <= now_ms,
 * armed after the advance that covered its deadline) and on slot
 * now_ms % 4096, the first slot the next advance scans.  So an overdue timer
 * fires on the very next advance even when the clock has not moved, and the
 * event loop never spins waiting for the next millisecond.
 *
 * Advance runs in two phases:
 *
 *  1. collect: scan the slots for ticks now_ms .. new now (at most one full
 *     revolution, however far the clock jumped) and move every timer with
 *     deadline <= new now onto a local list;
 *  2. fire: sort that list by deadline (stable merge sort, so equal
 *     deadlines fire in the order they were armed) and call each timer
 *     after unlinking it.
 *
 * Because the local list is an ordinary doubly-linked list, a callback may
 * delete a collected timer (it is simply unlinked and will not fire), re-arm
 * one, or re-arm itself: now_ms already holds the new time, so a re-armed
 * timer lands in the wheel proper and fires on a later advance even if its
 * deadline has passed -- a callback cannot make advance loop forever.
 *
 * Cost: add and delete O(1); advance O(slots scanned + timers in them +
 * k log k for k fired); with nothing armed it only moves now_ms.
 */
#include "core/timer.h"

#define WHEEL_MASK ((uint64_t)PT_WHEEL_SLOTS - 1)

/* Make the sentinel `head` an empty list. */
static void timer_list_init(struct pt_timer *head)
{
	head->next = head;
	head->prev = head;
}

/* Insert t at the tail of the list headed by `head`. */
static void timer_list_append(struct pt_timer *head, struct pt_timer *t)
{
	t->prev = head->prev;
	t->next = head;
	head->prev->next = t;
	head->prev = t;
}

/* Remove t from whatever list it is on and mark it not armed. */
static void timer_list_unlink(struct pt_timer *t)
{
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->next = NULL;
	t->prev = NULL;
}

/* Initialise an empty wheel whose time is now_ms. */
void pt_wheel_init(struct pt_wheel *w, uint64_t now_ms)
{
	for (size_t i = 0; i < PT_WHEEL_SLOTS; i++)
		timer_list_init(&w->slots[i]);
	w->now_ms = now_ms;
	w->n_armed = 0;
}

/* Zero t and set its callback; not armed afterwards. */
void pt_timer_init(struct pt_timer *t, pt_timer_fn fn)
{
	t->next = NULL;
	t->prev = NULL;
	t->deadline_ms = 0;
	t->rounds = 0;
	t->fn = fn;
}

/* True while t is on the wheel (or collected and about to fire). */
bool pt_timer_armed(const struct pt_timer *t)
{
	return t->prev != NULL;
}

/* Disarm t; harmless when not armed. */
void pt_timer_del(struct pt_wheel *w, struct pt_timer *t)
{
	if (t->prev == NULL)
		return;
	timer_list_unlink(t);
	w->n_armed--;
}

/* Arm or re-arm t for deadline_ms; a past deadline fires on the next advance. */
void pt_timer_add(struct pt_wheel *w, struct pt_timer *t, uint64_t deadline_ms)
{
	uint64_t tick;

	pt_timer_del(w, t);
	tick = deadline_ms > w->now_ms ? deadline_ms : w->now_ms;
	t->deadline_ms = deadline_ms;
	t->rounds = (tick - w->now_ms) / PT_WHEEL_SLOTS;
	timer_list_append(&w->slots[tick & WHEEL_MASK], t);
	w->n_armed++;
}

/*
 * Move the timers of `slot` that are due at or before now onto `due`;
 * refresh `rounds` of the rest.  Returns how many were moved.
 */
static size_t wheel_collect_slot(struct pt_timer *slot, struct pt_timer *due, uint64_t now)
{
	struct pt_timer *t = slot->next, *next;
	size_t n = 0;

	for (; t != slot; t = next) {
		next = t->next;
		if (t->deadline_ms <= now) {
			timer_list_unlink(t);
			timer_list_append(due, t);
			n++;
		} else {
			t->rounds = (t->deadline_ms - now) / PT_WHEEL_SLOTS;
		}
	}
	return n;
}

/* Merge two next-linked lists sorted by deadline; ties take a first (stability). */
static struct pt_timer *wheel_merge(struct pt_timer *a, struct pt_timer *b)
{
	struct pt_timer head, *tail = &head;

	while (a != NULL && b != NULL) {
		if (b->deadline_ms < a->deadline_ms) {
			tail->next = b;
			b = b->next;
		} else {
			tail->next = a;
			a = a->next;
		}
		tail = tail->next;
	}
	tail->next = a != NULL ? a : b;
	return head.next;
}

/* Stable sort of a NULL-terminated next-linked list of n timers by deadline. */
static struct pt_timer *wheel_sort(struct pt_timer *list, size_t n)
{
	struct pt_timer *mid, *second;

	if (n < 2)
		return list;
	mid = list;
	for (size_t i = 1; i < n / 2; i++)
		mid = mid->next;
	second = mid->next;
	mid->next = NULL;
	return wheel_merge(wheel_sort(list, n / 2), wheel_sort(second, n - n / 2));
}

/* Sort the n timers on the list `due` by deadline and rebuild its prev links. */
static void wheel_sort_due(struct pt_timer *due, size_t n)
{
	struct pt_timer *t, *sorted;

	if (n < 2)
		return;
	due->prev->next = NULL;
	sorted = wheel_sort(due->next, n);
	timer_list_init(due);
	for (t = sorted; t != NULL; t = sorted) {
		sorted = t->next;
		timer_list_append(due, t);
	}
}

/*
 * Fire every timer due at or before now_ms, in deadline order, and set the
 * wheel's time to now_ms (a time earlier than the wheel's is taken as the
 * wheel's).  Callbacks may add or delete any timer.  Returns the number fired.
 */
size_t pt_wheel_advance(struct pt_wheel *w, uint64_t now_ms)
{
	struct pt_timer due;
	uint64_t from = w->now_ms, n_ticks;
	size_t n_due = 0, fired = 0;

	if (now_ms < from)
		now_ms = from;
	w->now_ms = now_ms;
	if (w->n_armed == 0)
		return 0; /* nothing to scan: jump straight to now */

	/* Ticks from..now_ms inclusive, but never more than one revolution. */
	n_ticks = now_ms - from >= PT_WHEEL_SLOTS ? PT_WHEEL_SLOTS : now_ms - from + 1;
	timer_list_init(&due);
	for (uint64_t i = 0; i < n_ticks && n_due < w->n_armed; i++)
		n_due += wheel_collect_slot(&w->slots[(from + i) & WHEEL_MASK], &due, now_ms);
	wheel_sort_due(&due, n_due);

	while (due.next != &due) {
		struct pt_timer *t = due.next;

		/* Unlink before the call so the callback sees t disarmed and may re-arm it. */
		timer_list_unlink(t);
		w->n_armed--;
		fired++;
		t->fn(t);
	}
	return fired;
}

/* The earliest deadline among the timers on `slot`, or UINT64_MAX if it is empty. */
static uint64_t wheel_slot_min(const struct pt_timer *slot)
{
	uint64_t min = UINT64_MAX;

	for (const struct pt_timer *t = slot->next; t != slot; t = t->next)
		if (t->deadline_ms < min)
			min = t->deadline_ms;
	return min;
}

/*
 * Milliseconds from now_ms to the earliest armed deadline (0 if overdue),
 * -1 when nothing is armed.  By the invariant at the top, a timer on the
 * slot k ticks ahead is due no sooner than k ms from now, so the scan stops
 * as soon as k reaches the best deadline found: the result is exact, and
 * the scan is O(distance to it), at most one revolution of slots.
 */
int64_t pt_wheel_next_ms(const struct pt_wheel *w)
{
	uint64_t best = UINT64_MAX;

	if (w->n_armed == 0)
		return -1;
	for (uint64_t k = 0; k < PT_WHEEL_SLOTS && k < best; k++) {
		uint64_t min = wheel_slot_min(&w->slots[(w->now_ms + k) & WHEEL_MASK]);

		if (min == UINT64_MAX)
			continue;
		min = min > w->now_ms ? min - w->now_ms : 0;
		if (min < best)
			best = min;
	}
	/* Armed but on no slot: collected by an advance that is calling us back. */
	if (best == UINT64_MAX)
		return 0;
	return best > INT64_MAX ? INT64_MAX : (int64_t)best;
}
