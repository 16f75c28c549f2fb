/*
 * metrics.h -- the metrics registry: counters, gauges and histograms kept
 * per shard, rendered as Prometheus text (exposition format 0.0.4).
 *
 * Shape.  Families (a name, help text and type) and their series (each
 * with at most one label of its own) are registered once, before any
 * shard runs; pt_metrics_seal() then gives every shard its own block of
 * 64-bit slots, aligned to the cache line so no two shards ever write the
 * same line.  A shard writes only its own block, with relaxed atomic
 * stores (a load and a store, not a locked read-modify-write: there is one
 * writer per slot); anyone may read any block with relaxed loads at any
 * time.  So an increment costs what a plain `n++` costs, and a scrape
 * neither stops nor slows a shard.
 *
 * Kinds of slot:
 *
 *   counter    pt_metrics_add (or pt_metrics_set from a monotonic source);
 *   gauge      pt_metrics_set / pt_metrics_add (signed, two's complement);
 *   histogram  pt_metrics_observe: fixed buckets (upper bounds, in the unit
 *              values are observed in, e.g. nanoseconds), one overflow
 *              bucket and the sum.  Rendered cumulative, with +Inf, _sum
 *              and _count; _count is the sum of the buckets read, so the
 *              +Inf bucket and _count always agree.  A scrape racing an
 *              observation may see its bucket without its sum (never an
 *              inconsistent bucket series).
 *   table      rows of gauges whose label values change at run time (queue
 *              names): each shard publishes up to `cap` rows at a time,
 *              the largest by the first column; the renderer adds up rows
 *              of equal label from every shard.  Publication is a seqlock
 *              over two copies: the writer fills the copy readers are not
 *              told about, then flips, so a reader never waits for a
 *              writer (even one preempted mid-copy) and a writer never
 *              waits at all.
 *
 * Rendering.  For each family in registration order: HELP, TYPE, then the
 * total over shards of every series (added; or the largest, for a family
 * registered with PT_METRIC_MAX), then the table rows.  A family
 * registered `by_shard` is followed by a family NAME_by_shard holding the
 * same series once per shard with the label shard="N" first; both come
 * from one read of each slot, so the total is the sum of the shard lines
 * printed next to it.  Label values are escaped (backslash, double quote,
 * line feed) and invalid UTF-8 becomes U+FFFD; help text is escaped
 * (backslash, line feed).
 *
 * Thread safety: registration and seal on one thread before the shards
 * start; pt_metrics_add/set/observe/publish only on the thread that owns
 * the block; pt_metrics_render on any thread, any number at once.
 */
#ifndef PT_METRICS_H
#define PT_METRICS_H

#include <stdatomic.h>

#include "core/buf.h"

#define PT_METRICS_LABEL_MAX   256 /* bytes of a table row's label, NUL included */
#define PT_METRICS_COLS_MAX    4   /* gauges per table row */
#define PT_METRICS_BUCKETS_MAX 32  /* finite buckets of a histogram */

enum pt_metric_type { PT_METRIC_COUNTER, PT_METRIC_GAUGE, PT_METRIC_HISTOGRAM };

/* How a series' shard values make its total. */
enum pt_metric_agg {
	PT_METRIC_SUM = 0, /* counts: connections, messages, bytes */
	PT_METRIC_MAX,	   /* one thing seen by every shard (free disk space) */
};

/* A family as registered (every string is copied). */
struct pt_metric_family {
	const char *name; /* [a-zA-Z_:][a-zA-Z0-9_:]* */
	const char *help;
	enum pt_metric_type type;
	enum pt_metric_agg agg;
	bool by_shard; /* also render NAME_by_shard{shard="N",...} */
	/* Histograms: upper bounds, strictly increasing, in the unit values
	 * are observed in; rendered as bound / unit, unit a power of ten
	 * (1000000000 for nanoseconds shown as seconds). */
	const uint64_t *bounds;
	unsigned n_bounds;
	uint64_t unit;
};

struct pt_metrics;

/* One shard's block.  Fields are read-only after pt_metrics_seal. */
struct pt_metrics_shard {
	const struct pt_metrics *reg;
	unsigned shard;
	_Atomic uint64_t *v; /* the slots, cache-line aligned */
};

/* A new registry for n_shards blocks.  NULL when out of memory. */
struct pt_metrics *pt_metrics_new(unsigned n_shards);
/* Free m and its blocks (no render may be running). */
void pt_metrics_free(struct pt_metrics *m);

/*
 * Register a family.  Its index (>= 0), or PT_ERROR: a bad or duplicate
 * name, a histogram without valid bounds or unit, a call after seal;
 * PT_NOMEM.
 */
int pt_metrics_family(struct pt_metrics *m, const struct pt_metric_family *f);
/*
 * Register a series of family `family` with one label (label_name NULL:
 * none).  Returns its id: for a counter or gauge, the slot to pass to
 * pt_metrics_add/set (scalars are numbered 0, 1, ... in registration
 * order); for a histogram, the id for pt_metrics_observe (0, 1, ...).
 * PT_ERROR: unknown family, a bad label name ("le", "shard" and names
 * starting "__" are reserved), after seal; PT_NOMEM.
 */
int pt_metrics_series(struct pt_metrics *m, int family, const char *label_name,
		      const char *label_value);
/*
 * Register a table: rows of n_cols gauges, column i in gauge family
 * families[i], each row's label being label_name = label_prefix + the
 * row's label.  At most cap rows per shard are kept.  Returns its id
 * (0, 1, ...) for pt_metrics_publish, or PT_ERROR / PT_NOMEM.
 */
int pt_metrics_table(struct pt_metrics *m, const char *label_name, const char *label_prefix,
		     const int *families, unsigned n_cols, unsigned cap);
/* Allocate every shard's block (zeroed); registration ends.  PT_OK,
 * PT_NOMEM, PT_ERROR when called twice. */
int pt_metrics_seal(struct pt_metrics *m);
/* Shard i's block (after seal), or NULL. */
struct pt_metrics_shard *pt_metrics_shard(struct pt_metrics *m, unsigned i);
unsigned pt_metrics_n_shards(const struct pt_metrics *m);

/* ---- Writing: only on the thread that owns b ---- */

static inline void pt_metrics_add(struct pt_metrics_shard *b, unsigned id, uint64_t n)
{
	_Atomic uint64_t *p = &b->v[id];

	/* One writer per slot: load + store, no lock prefix.  Relaxed: a
	 * reader needs the value, not an order with anything else. */
	atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline void pt_metrics_set(struct pt_metrics_shard *b, unsigned id, int64_t value)
{
	atomic_store_explicit(&b->v[id], (uint64_t)value, memory_order_relaxed);
}

/* Count value (in the family's unit) into histogram id. */
void pt_metrics_observe(struct pt_metrics_shard *b, unsigned id, uint64_t value);

/* A row to publish: label not copied (read during the call); labels longer
 * than PT_METRICS_LABEL_MAX - 1 bytes are cut at a UTF-8 boundary. */
struct pt_metrics_row {
	const char *label;
	uint64_t v[PT_METRICS_COLS_MAX];
};
/*
 * Replace this shard's rows of table id with rows[0..n).  When n is over
 * the table's cap, the cap rows largest by v[0] are kept (rows is
 * reordered).  Never waits for readers.
 */
void pt_metrics_publish(struct pt_metrics_shard *b, unsigned id, struct pt_metrics_row *rows,
			size_t n);

/* ---- Reading: any thread ---- */

/* Shard i's current value of scalar slot id (a relaxed load). */
uint64_t pt_metrics_read(const struct pt_metrics *m, unsigned i, unsigned id);
/* A table row read back: its label and columns, summed over shards. */
struct pt_metrics_trow {
	char label[PT_METRICS_LABEL_MAX];
	uint64_t v[PT_METRICS_COLS_MAX];
};
/*
 * Table id's rows of every shard (as last published), equal labels added
 * up, sorted by label: an array the caller frees, its length in *n_out.
 * NULL when out of memory or id is no table.  Any thread, like render.
 */
struct pt_metrics_trow *pt_metrics_table_rows(const struct pt_metrics *m, unsigned id,
					      size_t *n_out);
/* Append the exposition text of every family to out.  PT_OK or PT_NOMEM
 * (out then holds a prefix of it). */
int pt_metrics_render(const struct pt_metrics *m, struct pt_buf *out);

#endif
