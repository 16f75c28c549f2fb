/*
 * metrics.c -- the metrics registry and its Prometheus text renderer (the
 * design is the comment at the top of metrics.h).
 *
 * A shard's block is one cache-line-aligned array of 64-bit atomic slots:
 *
 *   [0, n_scalars)       counters and gauges, one slot each, in
 *                        registration order (a scalar's id is its slot);
 *   per histogram        n_bounds + 1 bucket counts (the last one counts
 *                        values above every bound), then the sum;
 *   per table            `published` (how many publications so far), then
 *                        two copies, each [seq][n_rows][rows], a row being
 *                        PT_METRICS_LABEL_MAX / 8 words of label (NUL
 *                        terminated) and n_cols values.
 *
 * Tables are a seqlock with every word atomic (Boehm's form: the writer
 * makes seq odd, fences, stores relaxed, makes seq even with release; the
 * reader loads seq with acquire, loads relaxed, fences with acquire,
 * loads seq again), over two copies: publication k goes to copy k & 1 and
 * then `published` becomes k.  A reader reads copy published & 1, which
 * the writer will not touch until the publication after next, so in
 * practice a reader never retries; it gives up on a shard after
 * TABLE_READ_TRIES (that shard's rows are then missing from one scrape).
 *
 * Rendering allocates its scratch memory per call and holds no lock, so
 * any number of threads may render at once while the shards write.
 */
#include "core/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_LINE	 64
#define LABEL_WORDS	 (PT_METRICS_LABEL_MAX / 8)
#define TABLE_READ_TRIES 100

struct family {
	char *name, *help;
	enum pt_metric_type type;
	enum pt_metric_agg agg;
	bool by_shard;
	uint64_t bounds[PT_METRICS_BUCKETS_MAX];
	unsigned n_bounds;
	uint64_t unit;
};

struct series {
	unsigned family;
	char *label_name, *label_value; /* NULL: no label */
	unsigned id;			/* scalar slot, or histogram index */
};

struct hist {
	unsigned family;
	unsigned slot; /* first bucket; the sum is at slot + n_bounds + 1 */
};

struct table {
	char *label_name, *label_prefix;
	unsigned families[PT_METRICS_COLS_MAX];
	unsigned n_cols, cap;
	unsigned slot; /* `published`; the copies follow */
};

struct pt_metrics {
	unsigned n_shards;
	bool sealed;
	struct family *families;
	unsigned n_families;
	struct series *series;
	unsigned n_series;
	struct hist *hists;
	unsigned n_hists;
	struct table *tables;
	unsigned n_tables;
	unsigned n_scalars;
	size_t n_slots;
	struct pt_metrics_shard **blocks;
};

/* ---- Registration ---- */

static bool name_valid(const char *s, bool colon)
{
	if (!s || !*s || (*s >= '0' && *s <= '9'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || (colon && *s == ':')))
			return false;
	return true;
}

static bool label_name_valid(const char *s)
{
	return name_valid(s, false) && strncmp(s, "__", 2) != 0 && strcmp(s, "le") != 0 &&
	       strcmp(s, "shard") != 0;
}

/* Is `name` taken by a family, or by a family's NAME_by_shard? */
static bool name_taken(const struct pt_metrics *m, const char *name)
{
	size_t n = strlen(name);

	for (unsigned i = 0; i < m->n_families; i++) {
		const struct family *f = &m->families[i];
		size_t fn = strlen(f->name);

		if (strcmp(f->name, name) == 0)
			return true;
		/* name is f's _by_shard, or f is name's */
		if ((f->by_shard && n == fn + 9 && strncmp(name, f->name, fn) == 0 &&
		     strcmp(name + fn, "_by_shard") == 0) ||
		    (fn == n + 9 && strncmp(f->name, name, n) == 0 &&
		     strcmp(f->name + n, "_by_shard") == 0))
			return true;
	}
	return false;
}

static bool unit_valid(uint64_t unit)
{
	while (unit >= 10 && unit % 10 == 0)
		unit /= 10;
	return unit == 1;
}

static bool buckets_valid(const struct pt_metric_family *f)
{
	if (f->n_bounds == 0 || f->n_bounds > PT_METRICS_BUCKETS_MAX || !f->bounds ||
	    !unit_valid(f->unit))
		return false;
	for (unsigned i = 1; i < f->n_bounds; i++)
		if (f->bounds[i] <= f->bounds[i - 1])
			return false;
	return true;
}

/* arr grown to n + 1 elements, the new one zeroed; NULL on failure (arr
 * is then unchanged). */
static void *grow(void *arr, unsigned n, size_t size)
{
	char *p = realloc(arr, (size_t)(n + 1) * size);

	if (p)
		memset(p + (size_t)n * size, 0, size);
	return p;
}

struct pt_metrics *pt_metrics_new(unsigned n_shards)
{
	struct pt_metrics *m;

	if (n_shards == 0)
		return NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->n_shards = n_shards;
	return m;
}

void pt_metrics_free(struct pt_metrics *m)
{
	if (!m)
		return;
	for (unsigned i = 0; i < m->n_families; i++) {
		free(m->families[i].name);
		free(m->families[i].help);
	}
	for (unsigned i = 0; i < m->n_series; i++) {
		free(m->series[i].label_name);
		free(m->series[i].label_value);
	}
	for (unsigned i = 0; i < m->n_tables; i++) {
		free(m->tables[i].label_name);
		free(m->tables[i].label_prefix);
	}
	for (unsigned i = 0; m->blocks && i < m->n_shards; i++)
		free(m->blocks[i]);
	free(m->blocks);
	free(m->families);
	free(m->series);
	free(m->hists);
	free(m->tables);
	free(m);
}

int pt_metrics_family(struct pt_metrics *m, const struct pt_metric_family *f)
{
	struct family *x;

	if (m->sealed || !name_valid(f->name, true) || strlen(f->name) > 200 || !f->help ||
	    name_taken(m, f->name))
		return PT_ERROR;
	if (f->by_shard) {
		char by[256];

		if (snprintf(by, sizeof(by), "%s_by_shard", f->name) >= (int)sizeof(by) ||
		    name_taken(m, by))
			return PT_ERROR;
	}
	if (f->type == PT_METRIC_HISTOGRAM && !buckets_valid(f))
		return PT_ERROR;
	if (!(x = grow(m->families, m->n_families, sizeof(*x))))
		return PT_NOMEM;
	m->families = x;
	x += m->n_families;
	x->name = strdup(f->name);
	x->help = strdup(f->help);
	if (!x->name || !x->help) {
		free(x->name);
		free(x->help);
		return PT_NOMEM;
	}
	x->type = f->type;
	x->agg = f->agg;
	x->by_shard = f->by_shard;
	if (f->type == PT_METRIC_HISTOGRAM) {
		memcpy(x->bounds, f->bounds, f->n_bounds * sizeof(*f->bounds));
		x->n_bounds = f->n_bounds;
		x->unit = f->unit;
	}
	return (int)m->n_families++;
}

int pt_metrics_series(struct pt_metrics *m, int family, const char *label_name,
		      const char *label_value)
{
	struct series *s;

	if (m->sealed || family < 0 || (unsigned)family >= m->n_families)
		return PT_ERROR;
	if (label_name && (!label_name_valid(label_name) || !label_value))
		return PT_ERROR;
	if (!(s = grow(m->series, m->n_series, sizeof(*s))))
		return PT_NOMEM;
	m->series = s;
	s += m->n_series;
	s->family = (unsigned)family;
	if (label_name) {
		s->label_name = strdup(label_name);
		s->label_value = strdup(label_value);
		if (!s->label_name || !s->label_value) {
			free(s->label_name);
			free(s->label_value);
			return PT_NOMEM;
		}
	}
	if (m->families[family].type == PT_METRIC_HISTOGRAM) {
		struct hist *h = grow(m->hists, m->n_hists, sizeof(*h));

		if (!h) {
			free(s->label_name);
			free(s->label_value);
			s->label_name = s->label_value = NULL;
			return PT_NOMEM;
		}
		m->hists = h;
		h += m->n_hists;
		h->family = (unsigned)family;
		s->id = m->n_hists++;
	} else {
		s->id = m->n_scalars++;
	}
	m->n_series++;
	return (int)s->id;
}

int pt_metrics_table(struct pt_metrics *m, const char *label_name, const char *label_prefix,
		     const int *families, unsigned n_cols, unsigned cap)
{
	struct table *t;

	if (m->sealed || !label_name_valid(label_name) || n_cols == 0 ||
	    n_cols > PT_METRICS_COLS_MAX || cap == 0 || cap > 65536)
		return PT_ERROR;
	for (unsigned i = 0; i < n_cols; i++)
		if (families[i] < 0 || (unsigned)families[i] >= m->n_families ||
		    m->families[families[i]].type != PT_METRIC_GAUGE)
			return PT_ERROR;
	if (!(t = grow(m->tables, m->n_tables, sizeof(*t))))
		return PT_NOMEM;
	m->tables = t;
	t += m->n_tables;
	t->label_name = strdup(label_name);
	t->label_prefix = strdup(label_prefix ? label_prefix : "");
	if (!t->label_name || !t->label_prefix) {
		free(t->label_name);
		free(t->label_prefix);
		return PT_NOMEM;
	}
	for (unsigned i = 0; i < n_cols; i++)
		t->families[i] = (unsigned)families[i];
	t->n_cols = n_cols;
	t->cap = cap;
	return (int)m->n_tables++;
}

static size_t row_words(const struct table *t)
{
	return LABEL_WORDS + t->n_cols;
}

static size_t copy_words(const struct table *t)
{
	return 2 + (size_t)t->cap * row_words(t);
}

static size_t copy_base(const struct table *t, uint64_t copy)
{
	return t->slot + 1 + (size_t)(copy & 1) * copy_words(t);
}

static size_t round_up(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

int pt_metrics_seal(struct pt_metrics *m)
{
	size_t slot = m->n_scalars, hdr = round_up(sizeof(struct pt_metrics_shard), CACHE_LINE);
	size_t size;

	if (m->sealed)
		return PT_ERROR;
	for (unsigned i = 0; i < m->n_hists; i++) {
		m->hists[i].slot = (unsigned)slot;
		slot += m->families[m->hists[i].family].n_bounds + 2;
	}
	for (unsigned i = 0; i < m->n_tables; i++) {
		m->tables[i].slot = (unsigned)slot;
		slot += 1 + 2 * copy_words(&m->tables[i]);
	}
	m->n_slots = slot;
	size = hdr + round_up(PT_MAX(slot, 1) * sizeof(uint64_t), CACHE_LINE);
	if (!(m->blocks = calloc(m->n_shards, sizeof(*m->blocks))))
		return PT_NOMEM;
	for (unsigned i = 0; i < m->n_shards; i++) {
		struct pt_metrics_shard *b = aligned_alloc(CACHE_LINE, size);

		if (!b)
			return PT_NOMEM; /* pt_metrics_free releases the others */
		memset(b, 0, size);
		b->reg = m;
		b->shard = i;
		b->v = (_Atomic uint64_t *)((char *)b + hdr);
		m->blocks[i] = b;
	}
	m->sealed = true;
	return PT_OK;
}

struct pt_metrics_shard *pt_metrics_shard(struct pt_metrics *m, unsigned i)
{
	return m->sealed && i < m->n_shards ? m->blocks[i] : NULL;
}

unsigned pt_metrics_n_shards(const struct pt_metrics *m)
{
	return m->n_shards;
}

/* ---- Writing ---- */

void pt_metrics_observe(struct pt_metrics_shard *b, unsigned id, uint64_t value)
{
	const struct hist *h = &b->reg->hists[id];
	const struct family *f = &b->reg->families[h->family];
	unsigned lo = 0, hi = f->n_bounds;

	/* The first bucket whose bound is >= value (Prometheus' "le"); past
	 * every bound, the overflow bucket at n_bounds. */
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;

		if (f->bounds[mid] < value)
			lo = mid + 1;
		else
			hi = mid;
	}
	pt_metrics_add(b, h->slot + lo, 1);
	pt_metrics_add(b, h->slot + f->n_bounds + 1, value);
}

static void heap_sift(struct pt_metrics_row *rows, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, min = i;
		struct pt_metrics_row tmp;

		if (l < n && rows[l].v[0] < rows[min].v[0])
			min = l;
		if (r < n && rows[r].v[0] < rows[min].v[0])
			min = r;
		if (min == i)
			return;
		tmp = rows[i];
		rows[i] = rows[min];
		rows[min] = tmp;
		i = min;
	}
}

/* Move the k rows largest by v[0] to rows[0..k): a min-heap of k, so
 * O(n log k) for a shard with many more queues than it publishes. */
static void rows_keep_largest(struct pt_metrics_row *rows, size_t n, size_t k)
{
	for (size_t i = k / 2; i-- > 0;)
		heap_sift(rows, k, i);
	for (size_t i = k; i < n; i++) {
		if (rows[i].v[0] <= rows[0].v[0])
			continue;
		rows[0] = rows[i];
		heap_sift(rows, k, 0);
	}
}

/* The length of label kept: at most PT_METRICS_LABEL_MAX - 1 bytes, never
 * ending inside a UTF-8 sequence. */
static size_t label_cut(const char *s)
{
	size_t n = strlen(s);

	if (n < PT_METRICS_LABEL_MAX)
		return n;
	n = PT_METRICS_LABEL_MAX - 1;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

static void row_store(_Atomic uint64_t *w, const struct pt_metrics_row *row, unsigned n_cols)
{
	char label[PT_METRICS_LABEL_MAX];
	size_t n = label_cut(row->label ? row->label : "");

	memset(label, 0, sizeof(label));
	memcpy(label, row->label ? row->label : "", n);
	/* Only the words up to the terminator: the reader stops at the NUL. */
	for (size_t i = 0; i <= n / 8; i++) {
		uint64_t x;

		memcpy(&x, label + i * 8, 8);
		atomic_store_explicit(&w[i], x, memory_order_relaxed);
	}
	for (unsigned c = 0; c < n_cols; c++)
		atomic_store_explicit(&w[LABEL_WORDS + c], row->v[c], memory_order_relaxed);
}

void pt_metrics_publish(struct pt_metrics_shard *b, unsigned id, struct pt_metrics_row *rows,
			size_t n)
{
	const struct table *t = &b->reg->tables[id];
	_Atomic uint64_t *published = &b->v[t->slot];
	uint64_t pub = atomic_load_explicit(published, memory_order_relaxed);
	_Atomic uint64_t *c = &b->v[copy_base(t, pub + 1)];
	uint64_t seq = atomic_load_explicit(&c[0], memory_order_relaxed);

	if (n > t->cap) {
		rows_keep_largest(rows, n, t->cap);
		n = t->cap;
	}
	atomic_store_explicit(&c[0], seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&c[1], n, memory_order_relaxed);
	for (size_t i = 0; i < n; i++)
		row_store(&c[2 + i * row_words(t)], &rows[i], t->n_cols);
	atomic_store_explicit(&c[0], seq + 2, memory_order_release);
	atomic_store_explicit(published, pub + 1, memory_order_release);
}

/* ---- Reading ---- */

uint64_t pt_metrics_read(const struct pt_metrics *m, unsigned i, unsigned id)
{
	return atomic_load_explicit(&m->blocks[i]->v[id], memory_order_relaxed);
}

#define trow pt_metrics_trow /* the public row type (metrics.h) */

/* One shard's rows of t into out (room for t->cap).  The number read; 0
 * when the copy never held still (see the top of the file). */
static size_t table_read(const struct pt_metrics *m, const struct table *t, unsigned shard,
			 struct trow *out)
{
	_Atomic uint64_t *v = m->blocks[shard]->v;

	for (int tries = 0; tries < TABLE_READ_TRIES; tries++) {
		uint64_t pub = atomic_load_explicit(&v[t->slot], memory_order_acquire);
		_Atomic uint64_t *c = &v[copy_base(t, pub)];
		uint64_t s1 = atomic_load_explicit(&c[0], memory_order_acquire), n;

		if (s1 & 1)
			continue;
		n = PT_MIN(atomic_load_explicit(&c[1], memory_order_relaxed), (uint64_t)t->cap);
		for (size_t i = 0; i < n; i++) {
			_Atomic uint64_t *w = &c[2 + i * row_words(t)];

			for (size_t k = 0; k < LABEL_WORDS; k++) {
				uint64_t x = atomic_load_explicit(&w[k], memory_order_relaxed);

				memcpy(out[i].label + k * 8, &x, 8);
				if (memchr(&x, 0, 8))
					break;
			}
			out[i].label[PT_METRICS_LABEL_MAX - 1] = '\0';
			for (unsigned col = 0; col < t->n_cols; col++)
				out[i].v[col] = atomic_load_explicit(&w[LABEL_WORDS + col],
								     memory_order_relaxed);
		}
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&c[0], memory_order_relaxed) == s1)
			return n;
	}
	return 0;
}

static int trow_cmp(const void *a, const void *b)
{
	return strcmp(((const struct trow *)a)->label, ((const struct trow *)b)->label);
}

/* Every shard's rows of t, sorted by label, equal labels added up. */
static struct trow *table_merge(const struct pt_metrics *m, const struct table *t, size_t *n_out)
{
	struct trow *rows = malloc((size_t)m->n_shards * t->cap * sizeof(*rows));
	size_t n = 0, k = 0;

	*n_out = 0;
	if (!rows)
		return NULL;
	for (unsigned i = 0; i < m->n_shards; i++)
		n += table_read(m, t, i, rows + n);
	qsort(rows, n, sizeof(*rows), trow_cmp);
	for (size_t i = 0; i < n; i++) {
		if (k > 0 && strcmp(rows[k - 1].label, rows[i].label) == 0) {
			for (unsigned c = 0; c < t->n_cols; c++)
				rows[k - 1].v[c] += rows[i].v[c];
			continue;
		}
		if (k != i)
			rows[k] = rows[i];
		k++;
	}
	*n_out = k;
	return rows;
}

struct pt_metrics_trow *pt_metrics_table_rows(const struct pt_metrics *m, unsigned id,
					      size_t *n_out)
{
	*n_out = 0;
	if (id >= m->n_tables)
		return NULL;
	return table_merge(m, &m->tables[id], n_out);
}

/* ---- Text ---- */

struct render {
	const struct pt_metrics *m;
	struct pt_buf *out;
	int rc;
	struct trow **rows; /* per table, merged */
	size_t *n_rows;
};

static void put(struct render *r, const char *s, size_t n)
{
	if (r->rc == PT_OK && pt_buf_append(r->out, s, n) != PT_OK)
		r->rc = PT_NOMEM;
}

static void puts_(struct render *r, const char *s)
{
	put(r, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlong forms,
 * no surrogates, nothing past U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		len = 2, cp = s[0] & 0x1F;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		len = 3, cp = s[0] & 0x0F;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return len;
}

/*
 * Text with the exposition format's escapes: backslash and line feed
 * always, the double quote too inside a label value.  Bytes that are not
 * UTF-8 become U+FFFD (the format is UTF-8; a queue name may not be).
 */
static void put_escaped(struct render *r, const char *text, bool quote)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t n = strlen(text), i = 0, run = 0;

	while (i < n) {
		size_t len = utf8_len(s + i, n - i);
		const char *esc = NULL;

		if (len == 1 && s[i] == '\\')
			esc = "\\\\";
		else if (len == 1 && s[i] == '\n')
			esc = "\\n";
		else if (len == 1 && s[i] == '"' && quote)
			esc = "\\\"";
		else if (len == 0)
			esc = "\xEF\xBF\xBD";
		if (!esc) {
			i += len;
			run += len;
			continue;
		}
		put(r, (const char *)s + i - run, run);
		puts_(r, esc);
		run = 0;
		i += len ? len : 1;
	}
	put(r, (const char *)s + i - run, run);
}

/* "{shard="N",name="prefix value",le="x"}": each part optional (shard < 0,
 * name NULL, le NULL); nothing when all are absent. */
static void put_labels(struct render *r, int shard, const char *name, const char *prefix,
		       const char *value, const char *le)
{
	char num[16];
	bool any = false;

	if (shard < 0 && !name && !le)
		return;
	puts_(r, "{");
	if (shard >= 0) {
		snprintf(num, sizeof(num), "%d", shard);
		puts_(r, "shard=\"");
		puts_(r, num);
		puts_(r, "\"");
		any = true;
	}
	if (name) {
		puts_(r, any ? "," : "");
		puts_(r, name);
		puts_(r, "=\"");
		if (prefix)
			put_escaped(r, prefix, true);
		put_escaped(r, value, true);
		puts_(r, "\"");
		any = true;
	}
	if (le) {
		puts_(r, any ? "," : "");
		puts_(r, "le=\"");
		puts_(r, le);
		puts_(r, "\"");
	}
	puts_(r, "}");
}

/* v / unit in decimal, exactly: "0.005", "1", "2.5" (unit a power of ten). */
static void fmt_scaled(char *out, size_t len, uint64_t v, uint64_t unit)
{
	char frac[24];
	int n = 0;

	if (unit <= 1 || v % unit == 0) {
		snprintf(out, len, "%llu", (unsigned long long)(v / (unit ? unit : 1)));
		return;
	}
	/* The fraction's digits, most significant first, without trailing zeros. */
	for (uint64_t u = unit / 10, rest = v % unit; u > 0 && rest > 0; u /= 10) {
		frac[n++] = (char)('0' + rest / u);
		rest %= u;
	}
	frac[n] = '\0';
	snprintf(out, len, "%llu.%s", (unsigned long long)(v / unit), frac);
}

static void put_header(struct render *r, const struct family *f, const char *suffix)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};

	puts_(r, "# HELP ");
	puts_(r, f->name);
	puts_(r, suffix);
	puts_(r, " ");
	put_escaped(r, f->help, false);
	puts_(r, "\n# TYPE ");
	puts_(r, f->name);
	puts_(r, suffix);
	puts_(r, " ");
	puts_(r, types[f->type]);
	puts_(r, "\n");
}

static void put_value(struct render *r, const struct family *f, uint64_t v)
{
	char num[32];

	if (f->type == PT_METRIC_GAUGE)
		snprintf(num, sizeof(num), " %lld\n", (long long)(int64_t)v);
	else
		snprintf(num, sizeof(num), " %llu\n", (unsigned long long)v);
	puts_(r, num);
}

static void put_sample(struct render *r, const struct family *f, const char *suffix, int shard,
		       const struct series *s, uint64_t v)
{
	puts_(r, f->name);
	puts_(r, suffix);
	put_labels(r, shard, s->label_name, NULL, s->label_value, NULL);
	put_value(r, f, v);
}

static uint64_t agg(const struct family *f, uint64_t total, uint64_t v, bool first)
{
	if (f->agg == PT_METRIC_MAX)
		return first || (int64_t)v > (int64_t)total ? v : total;
	return total + v;
}

/* Counters and gauges of family fi: totals, table rows, then per shard. */
static void render_scalars(struct render *r, unsigned fi)
{
	const struct pt_metrics *m = r->m;
	const struct family *f = &m->families[fi];
	uint64_t *vals = calloc((size_t)m->n_series * m->n_shards + 1, sizeof(*vals));

	if (!vals) {
		r->rc = PT_NOMEM;
		return;
	}
	/* One read per slot: the total and the shard lines agree. */
	for (unsigned si = 0; si < m->n_series; si++)
		for (unsigned i = 0; m->series[si].family == fi && i < m->n_shards; i++)
			vals[(size_t)si * m->n_shards + i] =
			    pt_metrics_read(m, i, m->series[si].id);
	put_header(r, f, "");
	for (unsigned si = 0; si < m->n_series; si++) {
		uint64_t total = 0;

		if (m->series[si].family != fi)
			continue;
		for (unsigned i = 0; i < m->n_shards; i++)
			total = agg(f, total, vals[(size_t)si * m->n_shards + i], i == 0);
		put_sample(r, f, "", -1, &m->series[si], total);
	}
	for (unsigned ti = 0; ti < m->n_tables; ti++) {
		const struct table *t = &m->tables[ti];

		for (unsigned c = 0; c < t->n_cols; c++) {
			if (t->families[c] != fi)
				continue;
			for (size_t k = 0; k < r->n_rows[ti]; k++) {
				puts_(r, f->name);
				put_labels(r, -1, t->label_name, t->label_prefix,
					   r->rows[ti][k].label, NULL);
				put_value(r, f, r->rows[ti][k].v[c]);
			}
		}
	}
	if (f->by_shard) {
		put_header(r, f, "_by_shard");
		for (unsigned si = 0; si < m->n_series; si++)
			for (unsigned i = 0; m->series[si].family == fi && i < m->n_shards; i++)
				put_sample(r, f, "_by_shard", (int)i, &m->series[si],
					   vals[(size_t)si * m->n_shards + i]);
	}
	free(vals);
}

/* One histogram's lines from its buckets b[0..n_bounds] (not cumulative)
 * and sum. */
static void put_histogram(struct render *r, const struct family *f, const char *suffix, int shard,
			  const struct series *s, const uint64_t *b, uint64_t sum)
{
	char le[48], name[300];
	uint64_t cum = 0;

	snprintf(name, sizeof(name), "%s%s_bucket", f->name, suffix);
	for (unsigned k = 0; k <= f->n_bounds; k++) {
		cum += b[k];
		if (k < f->n_bounds)
			fmt_scaled(le, sizeof(le), f->bounds[k], f->unit);
		else
			snprintf(le, sizeof(le), "+Inf");
		puts_(r, name);
		put_labels(r, shard, s->label_name, NULL, s->label_value, le);
		put_value(r, f, cum);
	}
	snprintf(name, sizeof(name), "%s%s_sum", f->name, suffix);
	puts_(r, name);
	put_labels(r, shard, s->label_name, NULL, s->label_value, NULL);
	fmt_scaled(le, sizeof(le), sum, f->unit);
	puts_(r, " ");
	puts_(r, le);
	puts_(r, "\n");
	snprintf(name, sizeof(name), "%s%s_count", f->name, suffix);
	puts_(r, name);
	put_labels(r, shard, s->label_name, NULL, s->label_value, NULL);
	put_value(r, f, cum);
}

static void render_histograms(struct render *r, unsigned fi)
{
	const struct pt_metrics *m = r->m;
	const struct family *f = &m->families[fi];
	size_t width = f->n_bounds + 2; /* buckets, overflow, sum */
	uint64_t *vals = malloc(((size_t)m->n_shards + 1) * width * sizeof(*vals));

	if (!vals) {
		r->rc = PT_NOMEM;
		return;
	}
	put_header(r, f, "");
	for (int pass = 0; pass < (f->by_shard ? 2 : 1); pass++) {
		if (pass == 1)
			put_header(r, f, "_by_shard");
		for (unsigned si = 0; si < m->n_series; si++) {
			const struct series *s = &m->series[si];
			const struct hist *h = &m->hists[s->id];
			uint64_t *total = vals + (size_t)m->n_shards * width;

			if (s->family != fi)
				continue;
			memset(total, 0, width * sizeof(*total));
			for (unsigned i = 0; i < m->n_shards; i++) {
				uint64_t *v = vals + (size_t)i * width;

				for (size_t k = 0; k < width; k++) {
					v[k] = pt_metrics_read(m, i, h->slot + (unsigned)k);
					total[k] += v[k];
				}
				if (pass == 1)
					put_histogram(r, f, "_by_shard", (int)i, s, v,
						      v[width - 1]);
			}
			if (pass == 0)
				put_histogram(r, f, "", -1, s, total, total[width - 1]);
		}
	}
	free(vals);
}

int pt_metrics_render(const struct pt_metrics *m, struct pt_buf *out)
{
	struct render r = {.m = m, .out = out, .rc = PT_OK};

	if (!m->sealed)
		return PT_OK;
	r.rows = calloc(m->n_tables + 1, sizeof(*r.rows));
	r.n_rows = calloc(m->n_tables + 1, sizeof(*r.n_rows));
	if (!r.rows || !r.n_rows)
		r.rc = PT_NOMEM;
	for (unsigned ti = 0; r.rc == PT_OK && ti < m->n_tables; ti++)
		if (!(r.rows[ti] = table_merge(m, &m->tables[ti], &r.n_rows[ti])))
			r.rc = PT_NOMEM;
	for (unsigned fi = 0; r.rc == PT_OK && fi < m->n_families; fi++) {
		if (m->families[fi].type == PT_METRIC_HISTOGRAM)
			render_histograms(&r, fi);
		else
			render_scalars(&r, fi);
	}
	for (unsigned ti = 0; r.rows && ti < m->n_tables; ti++)
		free(r.rows[ti]);
	free(r.rows);
	free(r.n_rows);
	return r.rc;
}
