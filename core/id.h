/*
 * id.h -- message ids.  32 lowercase hex characters (128 bits), like
 * KumoMTA's spool ids:
 *
 *   bits 127..64  wall-clock microseconds at creation
 *   bits  63..48  shard number
 *   bits  47..0   per-shard counter, seeded randomly at start
 *
 * Unique without coordination between shards, sortable by creation time,
 * and unique across restarts as long as the clock does not step back by more
 * than the counter's random seed covers.
 */
#ifndef PT_ID_H
#define PT_ID_H

#include "core/pt.h"

#define PT_ID_LEN 32

struct pt_idgen {
	uint16_t shard;
	uint64_t counter;
};

/* Seed from getrandom(); never fails (falls back to time and pid). */
void pt_idgen_init(struct pt_idgen *g, uint16_t shard);
/* Write a new id and a terminating NUL into out (PT_ID_LEN + 1 bytes). */
void pt_id_next(struct pt_idgen *g, char out[PT_ID_LEN + 1]);
/* True when s is exactly 32 lowercase hex digits. */
bool pt_id_valid(const char *s, size_t len);

#endif
