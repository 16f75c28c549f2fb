/*
 * strmap.c -- see strmap.h.  The table stays at most 3/4 full, so a lookup
 * probes a handful of slots; it doubles when it would pass that.
 */
#include "core/strmap.h"

#include <stdlib.h>
#include <string.h>

uint64_t pt_hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

static size_t strmap_find(const struct pt_strmap *m, const char *key, uint64_t h)
{
	size_t mask = m->cap - 1, i = h & mask;

	while (m->slots[i].key &&
	       (m->slots[i].hash != h || strcmp(m->slots[i].key, key) != 0))
		i = (i + 1) & mask;
	return i;
}

void *pt_strmap_get(const struct pt_strmap *m, const char *key)
{
	size_t i;

	if (m->cap == 0)
		return NULL;
	i = strmap_find(m, key, pt_hash_str(key));
	return m->slots[i].key ? m->slots[i].value : NULL;
}

static int strmap_grow(struct pt_strmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 16;
	struct pt_strmap_slot *old = m->slots, *slots = calloc(cap, sizeof(*slots));
	size_t old_cap = m->cap;

	if (!slots)
		return PT_NOMEM;
	m->slots = slots;
	m->cap = cap;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].key)
			m->slots[strmap_find(m, old[i].key, old[i].hash)] = old[i];
	free(old);
	return PT_OK;
}

int pt_strmap_put(struct pt_strmap *m, const char *key, void *value)
{
	uint64_t h = pt_hash_str(key);
	size_t i;

	if ((m->n + 1) * 4 > m->cap * 3 && strmap_grow(m) != PT_OK)
		return PT_NOMEM;
	i = strmap_find(m, key, h);
	if (!m->slots[i].key)
		m->n++;
	m->slots[i].key = key;
	m->slots[i].hash = h;
	m->slots[i].value = value;
	return PT_OK;
}

void *pt_strmap_del(struct pt_strmap *m, const char *key)
{
	size_t mask, i, j;
	void *value;

	if (m->cap == 0)
		return NULL;
	mask = m->cap - 1;
	i = strmap_find(m, key, pt_hash_str(key));
	if (!m->slots[i].key)
		return NULL;
	value = m->slots[i].value;
	/* Backward shift: pull later members of the probe run into the hole. */
	for (j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
		size_t home = m->slots[j].hash & mask;

		/* Move j to i only when i lies on j's probe path (home .. j, cyclic). */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i].key = NULL;
	m->n--;
	return value;
}

void pt_strmap_free(struct pt_strmap *m)
{
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

void *pt_strmap_next(const struct pt_strmap *m, size_t *pos)
{
	for (; *pos < m->cap; (*pos)++)
		if (m->slots[*pos].key)
			return m->slots[(*pos)++].value;
	return NULL;
}
