/*
 * spsc.h -- a bounded, lock-free, single-producer single-consumer ring of
 * pointers: the only way shards talk to each other.  One ring per ordered
 * pair of shards (A->B), so every ring has exactly one writer thread and one
 * reader thread.
 *
 * Memory ordering: the producer fills the slot, then publishes `tail` with a
 * release store; the consumer reads `tail` with an acquire load before it
 * reads the slot, and publishes `head` with release after it is done with
 * the slot.  Each side caches the other's index to touch the shared cache
 * line only when the cached value says the ring looks full/empty.  head and
 * tail live on separate cache lines to avoid false sharing.
 *
 * The ring does not own what the pointers point to: by convention the
 * producer allocates an entry and the consumer frees it.
 */
#ifndef PT_SPSC_H
#define PT_SPSC_H

#include "core/pt.h"

struct pt_spsc;

/* capacity is rounded up to a power of two (>= 2).  NULL on allocation failure. */
struct pt_spsc *pt_spsc_new(size_t capacity);
void pt_spsc_free(struct pt_spsc *r);
/* Producer side.  false when full (entry not queued). p must not be NULL. */
bool pt_spsc_push(struct pt_spsc *r, void *p);
/* Consumer side.  NULL when empty. */
void *pt_spsc_pop(struct pt_spsc *r);
/* Approximate number of entries (exact when called by either side alone). */
size_t pt_spsc_count(const struct pt_spsc *r);
size_t pt_spsc_capacity(const struct pt_spsc *r);

#endif
