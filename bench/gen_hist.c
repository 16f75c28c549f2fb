/*
 * gen_hist.c -- petrel-gen's latency histogram (see gen.h for the layout).
 *
 * Index of a value v in ns:
 *
 *   v < 256           index v (exact)
 *   v >= 256          m = the index of v's top bit (8..35), shift = m - 7,
 *                     index 256 + (shift - 1) * 128 + (v >> shift) - 128
 *
 * so every power of two above 256 ns is cut into 128 equal buckets of width
 * 2^shift, at most 1/128 of the values they hold.  Recording is a count
 * leading zeros, a shift and an add: cheap enough for every message.  The
 * range ends at 2^36 ns (68.7 s), beyond --timeout's useful values; larger
 * values land in the last bucket (max_ns keeps the exact maximum).
 */
#include <math.h>

#include "bench/gen.h"

static unsigned hist_index(uint64_t v)
{
	unsigned msb, shift;

	if (v < 2 * GEN_HIST_SUB)
		return (unsigned)v;
	if (v >> GEN_HIST_TOP_BIT)
		return GEN_HIST_BUCKETS - 1;
	msb = 63 - (unsigned)__builtin_clzll(v);
	shift = msb - GEN_HIST_SUB_BITS;
	return 2 * GEN_HIST_SUB + (shift - 1) * GEN_HIST_SUB +
	       (unsigned)((v >> shift) - GEN_HIST_SUB);
}

/* [low, high) of bucket i, the inverse of hist_index(). */
static void hist_bounds(unsigned i, uint64_t *low, uint64_t *high)
{
	unsigned shift;

	if (i < 2 * GEN_HIST_SUB) {
		*low = i;
		*high = (uint64_t)i + 1;
		return;
	}
	shift = (i - 2 * GEN_HIST_SUB) / GEN_HIST_SUB + 1;
	*low = ((uint64_t)GEN_HIST_SUB + (i - 2 * GEN_HIST_SUB) % GEN_HIST_SUB) << shift;
	*high = *low + ((uint64_t)1 << shift);
}

void gen_hist_record(struct gen_hist *h, uint64_t ns)
{
	unsigned i = hist_index(ns);

	GEN_ADD(h->bucket[i], 1);
	GEN_ADD(h->count, 1);
	GEN_ADD(h->sum_ns, ns);
	if (ns > h->max_ns)
		__atomic_store_n(&h->max_ns, ns, __ATOMIC_RELAXED);
}

void gen_hist_merge(struct gen_hist *dst, const struct gen_hist *src)
{
	uint64_t max = GEN_LOAD(src->max_ns);

	/* Buckets first, count last: a live reader may see a count a little
	 * lower than the buckets' sum, never higher, so a percentile's rank
	 * always falls inside the buckets. */
	for (unsigned i = 0; i < GEN_HIST_BUCKETS; i++)
		dst->bucket[i] += GEN_LOAD(src->bucket[i]);
	dst->sum_ns += GEN_LOAD(src->sum_ns);
	dst->count += GEN_LOAD(src->count);
	if (max > dst->max_ns)
		dst->max_ns = max;
}

uint64_t gen_hist_percentile(const struct gen_hist *h, double p)
{
	uint64_t rank, seen = 0, low, high, mid;

	if (h->count == 0)
		return 0;
	/* The smallest value with at least p% of the values at or below it. */
	rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
	if (rank < 1)
		rank = 1;
	if (rank > h->count)
		rank = h->count;
	for (unsigned i = 0; i < GEN_HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen < rank)
			continue;
		hist_bounds(i, &low, &high);
		mid = low + (high - low - 1) / 2;
		return mid < h->max_ns ? mid : h->max_ns;
	}
	return h->max_ns;
}
