/*
 * id.c -- message ids (format in id.h).
 *
 * An id is 128 bits printed as 32 lowercase hex digits, most significant
 * first, so ids sort by creation time as strings:
 *
 *     hex digits  0..15   wall-clock microseconds (64 bits)
 *     hex digits 16..19   shard number (16 bits)
 *     hex digits 20..31   per-shard counter (48 bits, wraps)
 *
 * The counter starts at a random 48-bit value, so two runs of the same shard
 * within the same microsecond (a restart after a clock step back) are still
 * unlikely to collide.  A generator belongs to one shard: no atomics.
 */
#include "core/id.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/ptime.h"

#define ID_COUNTER_MASK ((UINT64_C(1) << 48) - 1)

/* Seed the counter from getrandom(); fall back to time and pid if it fails. */
void pt_idgen_init(struct pt_idgen *g, uint16_t shard)
{
	uint64_t seed;

	g->shard = shard;
	/* GRND_NONBLOCK: early in boot the pool may not be ready; don't wait. */
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
		seed = pt_monotonic_ns() ^ pt_wall_us() ^ ((uint64_t)getpid() << 32);
	g->counter = seed & ID_COUNTER_MASK;
}

/* Write `digits` hex digits of v, most significant first, at out. */
static void id_hex(char *out, uint64_t v, int digits)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = digits - 1; i >= 0; i--) {
		out[i] = hex[v & 0xf];
		v >>= 4;
	}
}

/* Write the next id and a NUL into out (PT_ID_LEN + 1 bytes). */
void pt_id_next(struct pt_idgen *g, char out[PT_ID_LEN + 1])
{
	uint64_t counter = g->counter;

	g->counter = (counter + 1) & ID_COUNTER_MASK;
	id_hex(out, pt_wall_us(), 16);
	id_hex(out + 16, g->shard, 4);
	id_hex(out + 20, counter, 12);
	out[PT_ID_LEN] = '\0';
}

/* True when s[0, len) is exactly 32 lowercase hex digits. */
bool pt_id_valid(const char *s, size_t len)
{
	if (s == NULL || len != PT_ID_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}
