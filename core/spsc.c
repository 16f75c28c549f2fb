/*
 * spsc.c -- bounded lock-free single-producer single-consumer pointer ring.
 *
 * Indices run free (they are never reduced modulo the capacity; size_t
 * wraps harmlessly because the capacity is a power of two), so
 * tail - head is the number of entries and "full" needs no wasted slot.
 *
 * Layout, one cache line each (the layout of Rigtorp's SPSCQueue):
 *
 *     line 0   tail (written by the producer)   head_cache (producer's copy)
 *     line 1   head (written by the consumer)   tail_cache (consumer's copy)
 *     line 2   mask, slots pointer (read-only after creation)
 *
 * Each side keeps a private copy of the other's index and reloads the
 * shared one only when its copy says the ring is full (producer) or empty
 * (consumer).  In steady state that is once per lap rather than once per
 * entry, so the two cores mostly touch only their own line.
 *
 * Ordering: the producer writes the slot, then stores tail with release;
 * the consumer loads tail with acquire before reading the slot, so it sees
 * the pointer (and, transitively, everything the producer wrote into the
 * entry before pushing it).  Symmetrically the consumer stores head with
 * release after reading the slot, and the producer loads head with acquire
 * before overwriting it.  The owner reads its own index relaxed: no one else
 * writes it.
 */
#include "core/spsc.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPSC_LINE 64

struct pt_spsc {
	alignas(SPSC_LINE) _Atomic size_t tail;
	size_t head_cache;
	alignas(SPSC_LINE) _Atomic size_t head;
	size_t tail_cache;
	alignas(SPSC_LINE) size_t mask;
	void **slots;
};

/*
 * A ring of at least `capacity` entries (rounded up to a power of two, at
 * least 2).  NULL when out of memory or the capacity is absurd.
 */
struct pt_spsc *pt_spsc_new(size_t capacity)
{
	struct pt_spsc *r;
	size_t cap = 2;

	while (cap < capacity) {
		if (cap > SIZE_MAX / 2 / sizeof(void *))
			return NULL;
		cap *= 2;
	}
	r = aligned_alloc(SPSC_LINE, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->slots = calloc(cap, sizeof(void *));
	if (r->slots == NULL) {
		free(r);
		return NULL;
	}
	atomic_init(&r->tail, 0);
	atomic_init(&r->head, 0);
	r->head_cache = 0;
	r->tail_cache = 0;
	r->mask = cap - 1;
	return r;
}

/* Free the ring (not the entries still in it).  NULL is ignored. */
void pt_spsc_free(struct pt_spsc *r)
{
	if (r == NULL)
		return;
	free(r->slots);
	free(r);
}

/* Producer: queue p (not NULL).  false when the ring is full. */
bool pt_spsc_push(struct pt_spsc *r, void *p)
{
	size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);

	if (tail - r->head_cache > r->mask) {
		/* Looks full: refresh our view of the consumer's progress. */
		r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
		if (tail - r->head_cache > r->mask)
			return false;
	}
	r->slots[tail & r->mask] = p;
	atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
	return true;
}

/* Consumer: the oldest entry, or NULL when the ring is empty. */
void *pt_spsc_pop(struct pt_spsc *r)
{
	size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	void *p;

	if (head == r->tail_cache) {
		/* Looks empty: refresh our view of the producer's progress. */
		r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
		if (head == r->tail_cache)
			return NULL;
	}
	p = r->slots[head & r->mask];
	atomic_store_explicit(&r->head, head + 1, memory_order_release);
	return p;
}

/*
 * Entries in the ring.  Exact when only one side is running; while both
 * run it is a snapshot that may be stale by the time it is used.  Reading
 * head first keeps the result within [0, capacity] even then.
 */
size_t pt_spsc_count(const struct pt_spsc *r)
{
	size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	size_t n = tail - head;

	return n > r->mask + 1 ? r->mask + 1 : n;
}

/* The ring's capacity (a power of two). */
size_t pt_spsc_capacity(const struct pt_spsc *r)
{
	return r->mask + 1;
}
