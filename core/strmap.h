/*
 * strmap.h -- a string-keyed hash map (open addressing, linear probing,
 * backward-shift deletion, so there are no tombstones to clean up).  Used
 * per shard for queues by name and ready queues by site; not thread-safe.
 *
 * Keys are not copied: a key must stay valid and unchanged while its entry
 * is in the map (callers point it at a string inside the value).
 *
 * pt_hash_str() is also the hash that picks a site's owner shard, so it
 * must give the same value on every shard and every run: FNV-1a, 64 bits.
 */
#ifndef PT_STRMAP_H
#define PT_STRMAP_H

#include "core/pt.h"

struct pt_strmap_slot {
	const char *key; /* NULL: empty */
	uint64_t hash;
	void *value;
};

struct pt_strmap {
	struct pt_strmap_slot *slots;
	size_t cap; /* power of two, or 0 before the first put */
	size_t n;
};

uint64_t pt_hash_str(const char *s);
/* The value for key, or NULL. */
void *pt_strmap_get(const struct pt_strmap *m, const char *key);
/* Insert or replace.  PT_OK or PT_NOMEM. */
int pt_strmap_put(struct pt_strmap *m, const char *key, void *value);
/* Remove key; returns its value or NULL. */
void *pt_strmap_del(struct pt_strmap *m, const char *key);
/* Free the table (not the keys or values). */
void pt_strmap_free(struct pt_strmap *m);
/* Iterate: *pos starts at 0; returns the next value or NULL at the end.
 * The map must not change during the walk. */
void *pt_strmap_next(const struct pt_strmap *m, size_t *pos);

#endif
