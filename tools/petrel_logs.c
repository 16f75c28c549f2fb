/*
 * petrel_logs.c -- petrel-logs, the reader of Petrel's JSON log segments.
 *
 *     petrel-logs cat [--type T] [--id ID] DIR|FILE...
 *     petrel-logs tail [-f] [-n N] [--type T] [--id ID] DIR
 *
 * petreld writes <log_dir>/<shard>/<YYYYMMDD-HHMMSS.nnnnnnnnn>, each file a
 * zstd frame of JSON lines (shard/shard_logseg.c).  A DIR is a log_dir
 * (numbered shard directories in it), or one directory of segments (a
 * shard's, or a KumoMTA log_dir).  Segment files are those named
 * "YYYYMMDD-HHMMSS..."; anything else is ignored.  Files that do not start
 * with the zstd magic are read as plain JSON lines (the logs of Petrel
 * before compression).
 *
 * The segment being written.  petreld ends every write on a zstd block
 * boundary (a flush), so the open segment decodes up to its last write
 * even though its frame is not closed yet; a finished segment is a closed
 * frame and read-only (its write bits cleared, KumoMTA's marker).  So a
 * frame that stops early is normal in a file that is still writable, and
 * an error (reported, exit status 1) in a read-only one.  A line still
 * being written (no newline yet) is held back until it is whole.
 *
 * cat prints every record of the named files in the order given; for a
 * DIR, of every segment sorted by name (the segment's start time), shard
 * number breaking ties, each in the order written.  tail prints the last N
 * records (default 10) of the newest segments of every shard, merged by
 * their "timestamp" field; with -f it then follows every shard: the open
 * segment as it grows, the next one when it appears, and new shard
 * directories, polling every 200 ms until SIGINT or SIGTERM.  Records are
 * printed exactly as stored, one per line; --type (repeatable, or a comma
 * list) and --id keep only matching records.
 *
 * Only reads; safe beside a live petreld.  Exit status: 0 fine, 1 a
 * segment could not be read or decoded, 2 bad usage.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "core/buf.h"

#define TOOL	       "petrel-logs"
#define MAX_TYPES      32
#define READ_CHUNK     (128u * 1024)
#define FOLLOW_POLL_MS 200

static const unsigned char zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};

struct filter {
	const char *types[MAX_TYPES];
	size_t n_types;
	const char *id;
};

/* One line kept for tail: the record and its timestamp (for the merge). */
struct line {
	char *text;
	size_t len;
	char *timestamp; /* "" when the record has none */
	size_t seq;	 /* order of arrival, so the sort is stable */
};

struct lines {
	struct line *v;
	size_t n, cap;
};

/* A segment read a piece at a time: cat reads it to its end once, tail -f
 * comes back to it as it grows. */
struct reader {
	char path[4400];
	int fd;
	uint64_t off;	   /* bytes of the file consumed */
	bool zstd, probed; /* format known after the first 4 bytes */
	bool frame_done;   /* the last frame ended (zstd's return 0) */
	bool failed;	   /* a read or decode error was reported */
	ZSTD_DCtx *dctx;
	struct pt_buf partial; /* a line without its newline yet */
};

typedef void (*line_fn)(void *ctx, const char *line, size_t len);

static volatile sig_atomic_t stop_requested;
static int exit_status;

static void usage(FILE *f)
{
	fprintf(f, "usage: " TOOL " cat [--type T] [--id ID] DIR|FILE...\n"
		   "       " TOOL " tail [-f] [-n N] [--type T] [--id ID] DIR\n"
		   "\n"
		   "Read Petrel's JSON log: zstd-compressed segments in <log_dir>/<shard>/,\n"
		   "named by their start time.  Only reads; safe beside a running petreld.\n"
		   "\n"
		   "  cat    print every record, segments in time order (DIR: a log_dir or\n"
		   "         one directory of segments; FILE: a segment, in the order given)\n"
		   "  tail   print the last N records (default 10) of every shard's newest\n"
		   "         segments, merged by timestamp; -f: then follow the log as it\n"
		   "         grows and rotates, until interrupted\n"
		   "\n"
		   "  --type T   only records of type T (Reception, Delivery, Bounce,\n"
		   "             TransientFailure, Expiration, OOB, Feedback, ...);\n"
		   "             repeat it or give a comma list\n"
		   "  --id ID    only records of message ID\n"
		   "  -n N       tail: how many records (0: none, just follow)\n"
		   "  -f         tail: follow\n"
		   "\n"
		   "The segment being written decodes up to petreld's last write (every\n"
		   "write ends on a zstd block boundary).  Exit status: 0 fine, 1 a\n"
		   "segment could not be read or decoded, 2 bad usage.\n");
}

static void fail(const char *path, const char *what)
{
	fprintf(stderr, TOOL ": %s: %s\n", path, what);
	exit_status = 1;
}

/* --------------------------------------------------------------------- */
/* Records: filtering and timestamps (jansson, only when needed). */

static bool filter_active(const struct filter *f)
{
	return f->n_types > 0 || f->id != NULL;
}

static const char *record_string(json_t *rec, const char *key)
{
	json_t *v = json_object_get(rec, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool filter_match_json(const struct filter *f, json_t *rec)
{
	const char *type = record_string(rec, "type"), *id = record_string(rec, "id");
	bool ok = f->n_types == 0;

	for (size_t i = 0; !ok && type && i < f->n_types; i++)
		ok = strcmp(type, f->types[i]) == 0;
	return ok && (f->id == NULL || (id != NULL && strcmp(id, f->id) == 0));
}

/* Parse line (NULL when it is not a JSON object). */
static json_t *record_parse(const char *line, size_t len)
{
	json_t *rec = json_loadb(line, len, 0, NULL);

	if (rec != NULL && !json_is_object(rec)) {
		json_decref(rec);
		rec = NULL;
	}
	return rec;
}

/* --------------------------------------------------------------------- */
/* Reading a segment. */

static void reader_init(struct reader *r, const char *path)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->path, sizeof(r->path), "%s", path);
	r->fd = -1;
}

static void reader_free(struct reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	ZSTD_freeDCtx(r->dctx);
	r->dctx = NULL;
	pt_buf_free(&r->partial);
}

/* Split out whole lines of decoded bytes; keep the rest for later. */
static void reader_lines(struct reader *r, const char *p, size_t n, line_fn fn, void *ctx)
{
	const char *end = p + n;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl == NULL) {
			pt_buf_append(&r->partial, p, (size_t)(end - p));
			return;
		}
		if (r->partial.len > 0) {
			pt_buf_append(&r->partial, p, (size_t)(nl - p));
			fn(ctx, r->partial.data, r->partial.len);
			r->partial.len = 0;
		} else if (nl > p) {
			fn(ctx, p, (size_t)(nl - p));
		}
		p = nl + 1;
	}
}

static int reader_decode(struct reader *r, const char *buf, size_t n, line_fn fn, void *ctx)
{
	static char out[1 << 17];
	ZSTD_inBuffer in = {buf, n, 0};

	while (in.pos < in.size) {
		ZSTD_outBuffer o = {out, sizeof(out), 0};
		size_t rc = ZSTD_decompressStream(r->dctx, &o, &in);

		if (ZSTD_isError(rc)) {
			char why[160];

			snprintf(why, sizeof(why), "zstd: %s (near byte %llu)",
				 ZSTD_getErrorName(rc), (unsigned long long)(r->off + in.pos));
			fail(r->path, why);
			r->failed = true;
			return -1;
		}
		reader_lines(r, out, o.pos, fn, ctx);
		/* 0: a frame ended; more input would start the next one. */
		r->frame_done = rc == 0;
	}
	/* Drain what zstd still holds after the input is consumed. */
	for (;;) {
		ZSTD_outBuffer o = {out, sizeof(out), 0};
		ZSTD_inBuffer none = {NULL, 0, 0};
		size_t rc = ZSTD_decompressStream(r->dctx, &o, &none);

		if (ZSTD_isError(rc) || o.pos == 0)
			break;
		reader_lines(r, out, o.pos, fn, ctx);
		r->frame_done = rc == 0;
	}
	return 0;
}

/* Read what the file has beyond r->off and hand over its whole lines.
 * 0, or -1 after an error (reported). */
static int reader_poll(struct reader *r, line_fn fn, void *ctx)
{
	static char buf[READ_CHUNK];

	if (r->failed)
		return -1;
	if (r->fd < 0 && (r->fd = open(r->path, O_RDONLY | O_CLOEXEC)) < 0) {
		fail(r->path, strerror(errno));
		r->failed = true;
		return -1;
	}
	for (;;) {
		ssize_t n = pread(r->fd, buf, sizeof(buf), (off_t)r->off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail(r->path, strerror(errno));
			r->failed = true;
			return -1;
		}
		if (n == 0)
			return 0;
		if (!r->probed) {
			if (r->off + (uint64_t)n < 4 && memcmp(buf, zstd_magic, (size_t)n) == 0)
				return 0; /* too short to tell yet */
			r->probed = true;
			r->zstd = n >= 4 && memcmp(buf, zstd_magic, 4) == 0;
			if (r->zstd && (r->dctx = ZSTD_createDCtx()) == NULL) {
				fail(r->path, "out of memory");
				r->failed = true;
				return -1;
			}
		}
		if (r->zstd) {
			if (reader_decode(r, buf, (size_t)n, fn, ctx) != 0)
				return -1;
		} else {
			reader_lines(r, buf, (size_t)n, fn, ctx);
		}
		r->off += (uint64_t)n;
	}
}

/* Still writable: petreld has not finished it (or stopped without doing so). */
static bool segment_open(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && (st.st_mode & 0222) != 0;
}

/*
 * The end of a read to EOF: a finished segment must be whole.  petreld
 * writes a segment's end before it clears the write bits, so one more read
 * after seeing them cleared gets everything: a read that raced the last
 * write is not taken for a cut.
 */
static void reader_check_end(struct reader *r, line_fn fn, void *ctx)
{
	if (r->failed || segment_open(r->path) || reader_poll(r, fn, ctx) != 0 || !r->probed)
		return;
	if (r->zstd && !r->frame_done)
		fail(r->path,
		     "the segment is finished (read-only) but its zstd frame is cut short");
	else if (r->partial.len > 0)
		fail(r->path, "the segment ends inside a record (no newline)");
}

/* --------------------------------------------------------------------- */
/* Finding segments. */

struct segment {
	char name[256];
	char path[4400];
	long shard; /* -1: a directory without shard subdirectories */
};

struct segments {
	struct segment *v;
	size_t n, cap;
};

/* "YYYYMMDD-HHMMSS" and anything after it (Petrel's, KumoMTA's names). */
static bool segment_name(const char *name)
{
	for (int i = 0; i < 15; i++)
		if (i == 8 ? name[i] != '-' : (name[i] < '0' || name[i] > '9'))
			return false;
	return true;
}

/* A shard number ("0", "17"; no sign, no leading zero). */
static long shard_number(const char *name)
{
	long v = 0;

	if (name[0] < '0' || name[0] > '9' || (name[0] == '0' && name[1] != '\0'))
		return -1;
	for (const char *p = name; *p; p++) {
		if (*p < '0' || *p > '9' || v > 65535)
			return -1;
		v = v * 10 + (*p - '0');
	}
	return v;
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void segments_add(struct segments *s, const char *dir, const char *name, long shard)
{
	struct segment *g;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct segment *v = realloc(s->v, cap * sizeof(*v));

		if (v == NULL) {
			fprintf(stderr, TOOL ": out of memory\n");
			exit(1);
		}
		s->v = v;
		s->cap = cap;
	}
	g = &s->v[s->n++];
	snprintf(g->name, sizeof(g->name), "%s", name);
	snprintf(g->path, sizeof(g->path), "%s/%s", dir, name);
	g->shard = shard;
}

/* The segments directly in dir.  false when dir cannot be read (reported). */
static bool list_segments(const char *dir, long shard, struct segments *out)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL) {
		fail(dir, strerror(errno));
		return false;
	}
	while ((de = readdir(d)) != NULL) {
		char path[4400];
		struct stat st;

		if (!segment_name(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			segments_add(out, dir, de->d_name, shard);
	}
	closedir(d);
	return true;
}

/* The shard directories of root, or none (root is itself one directory of
 * segments).  Into shards (sorted); the count. */
static size_t list_shards(const char *root, long *shards, size_t max)
{
	DIR *d = opendir(root);
	struct dirent *de;
	size_t n = 0;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL && n < max) {
		char path[4400];
		long shard = shard_number(de->d_name);

		snprintf(path, sizeof(path), "%s/%s", root, de->d_name);
		if (shard >= 0 && is_dir(path))
			shards[n++] = shard;
	}
	closedir(d);
	for (size_t i = 1; i < n; i++) /* insertion sort: a few dozen at most */
		for (size_t j = i; j > 0 && shards[j - 1] > shards[j]; j--) {
			long t = shards[j];

			shards[j] = shards[j - 1];
			shards[j - 1] = t;
		}
	return n;
}

static int segment_cmp(const void *a, const void *b)
{
	const struct segment *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : (x->shard > y->shard) - (x->shard < y->shard);
}

#define MAX_SHARDS 4096

/* Every segment under a log_dir (or in one directory), sorted. */
static void collect_dir(const char *root, struct segments *out)
{
	static long shards[MAX_SHARDS];
	size_t n = list_shards(root, shards, MAX_SHARDS);
	size_t first = out->n;

	if (n == 0) {
		list_segments(root, -1, out);
	} else {
		for (size_t i = 0; i < n; i++) {
			char dir[4400];

			snprintf(dir, sizeof(dir), "%s/%ld", root, shards[i]);
			list_segments(dir, shards[i], out);
		}
	}
	if (out->n > first)
		qsort(out->v + first, out->n - first, sizeof(*out->v), segment_cmp);
}

/* --------------------------------------------------------------------- */
/* cat */

struct printer {
	const struct filter *filter;
};

static void print_line(void *ctx, const char *line, size_t len)
{
	const struct printer *p = ctx;

	if (filter_active(p->filter)) {
		json_t *rec = record_parse(line, len);
		bool keep = rec != NULL && filter_match_json(p->filter, rec);

		json_decref(rec);
		if (!keep)
			return;
	}
	fwrite(line, 1, len, stdout);
	putchar('\n');
}

static void cat_file(const char *path, const struct filter *f)
{
	struct printer p = {f};
	struct reader r;

	reader_init(&r, path);
	if (reader_poll(&r, print_line, &p) == 0)
		reader_check_end(&r, print_line, &p);
	reader_free(&r);
}

static int cmd_cat(char **paths, int n, const struct filter *f)
{
	for (int i = 0; i < n; i++) {
		struct segments segs = {0};

		if (!is_dir(paths[i])) {
			cat_file(paths[i], f);
			continue;
		}
		collect_dir(paths[i], &segs);
		for (size_t k = 0; k < segs.n; k++)
			cat_file(segs.v[k].path, f);
		free(segs.v);
	}
	return exit_status;
}

/* --------------------------------------------------------------------- */
/* tail */

struct collector {
	const struct filter *filter;
	struct lines *out;
	size_t keep;  /* the newest this many are wanted (0: all) */
	bool discard; /* want none: only move the reader on */
	size_t *seq;
};

static void line_free(struct line *l)
{
	free(l->text);
	free(l->timestamp);
}

static void lines_push(struct lines *ls, struct line l)
{
	if (ls->n == ls->cap) {
		size_t cap = ls->cap ? ls->cap * 2 : 16;
		struct line *v = realloc(ls->v, cap * sizeof(*v));

		if (v == NULL) {
			fprintf(stderr, TOOL ": out of memory\n");
			exit(1);
		}
		ls->v = v;
		ls->cap = cap;
	}
	ls->v[ls->n++] = l;
}

/* Keep only the newest `keep` lines. */
static void lines_trim(struct lines *ls, size_t keep)
{
	size_t drop = ls->n > keep ? ls->n - keep : 0;

	if (drop == 0)
		return;
	for (size_t i = 0; i < drop; i++)
		line_free(&ls->v[i]);
	memmove(ls->v, ls->v + drop, (ls->n - drop) * sizeof(*ls->v));
	ls->n -= drop;
}

static void collect_line(void *ctx, const char *line, size_t len)
{
	struct collector *c = ctx;
	json_t *rec;
	const char *ts;
	struct line l;

	if (c->discard)
		return;
	rec = record_parse(line, len);
	if (filter_active(c->filter) && (rec == NULL || !filter_match_json(c->filter, rec))) {
		json_decref(rec);
		return;
	}
	ts = rec ? record_string(rec, "timestamp") : NULL;
	l.text = strndup(line, len);
	l.len = len;
	l.timestamp = strdup(ts ? ts : "");
	l.seq = (*c->seq)++;
	json_decref(rec);
	if (l.text == NULL || l.timestamp == NULL) {
		fprintf(stderr, TOOL ": out of memory\n");
		exit(1);
	}
	/* A tail of a big segment: trim now and then, not per line. */
	if (c->keep && c->out->n >= 2 * c->keep)
		lines_trim(c->out, c->keep);
	lines_push(c->out, l);
}

static int line_cmp(const void *a, const void *b)
{
	const struct line *x = a, *y = b;
	int c = strcmp(x->timestamp, y->timestamp);

	return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* Print the last `last` of lines (all: SIZE_MAX) in timestamp order; empty it. */
static void lines_flush(struct lines *ls, size_t last)
{
	size_t from;

	if (ls->n == 0)
		return;
	qsort(ls->v, ls->n, sizeof(*ls->v), line_cmp);
	from = ls->n > last ? ls->n - last : 0;
	for (size_t i = 0; i < ls->n; i++) {
		if (i >= from) {
			fwrite(ls->v[i].text, 1, ls->v[i].len, stdout);
			putchar('\n');
		}
		line_free(&ls->v[i]);
	}
	ls->n = 0;
	fflush(stdout);
}

/* A followed shard: the segment being read and its name. */
struct follow {
	long shard;
	char dir[4096];
	char name[256]; /* "" before the first segment */
	struct reader r;
	bool active; /* r is open on name */
};

/* The name of the first segment in dir after `after` ("" for the first). */
static bool next_segment(const char *dir, const char *after, char *name, size_t len)
{
	struct segments segs = {0};
	bool found = false;

	list_segments(dir, 0, &segs);
	for (size_t i = 0; i < segs.n; i++) {
		if (strcmp(segs.v[i].name, after) <= 0)
			continue;
		if (!found || strcmp(segs.v[i].name, name) < 0)
			snprintf(name, len, "%s", segs.v[i].name);
		found = true;
	}
	free(segs.v);
	return found;
}

static void follow_start(struct follow *f, const char *name)
{
	char path[4400];

	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	reader_init(&f->r, path);
	f->active = true;
}

/*
 * Read what is new in f's current segment; true when the reader is to move
 * on: the segment is gone, unreadable, a closed frame, or finished (no
 * write bits; read to its very end); a plain file once a newer segment
 * exists.  A zstd segment still writable is being written: stay.
 */
static bool follow_segment_over(struct follow *f, struct collector *c)
{
	struct reader *r = &f->r;
	char next[256];

	if (access(r->path, F_OK) != 0)
		return true;
	if (reader_poll(r, collect_line, c) != 0 || (r->zstd && r->frame_done))
		return true;
	if (!segment_open(r->path))
		return true;
	return r->probed && !r->zstd && next_segment(f->dir, f->name, next, sizeof(next));
}

/* Read what is new in f's shard: the current segment, then the ones after
 * it as they appear. */
static void follow_poll(struct follow *f, struct collector *c)
{
	char next[256];

	for (int hops = 0; hops < 64; hops++) {
		if (f->active) {
			if (!follow_segment_over(f, c))
				return;
			if (access(f->r.path, F_OK) == 0)
				reader_check_end(&f->r, collect_line, c);
			reader_free(&f->r);
			f->active = false;
		}
		if (!next_segment(f->dir, f->name, next, sizeof(next)))
			return;
		follow_start(f, next);
	}
}

/*
 * The last `keep` matching records of a shard's segments into out, reading
 * from the newest segment back as far as needed; f then follows the
 * newest from where this stopped.
 */
static void tail_shard(struct follow *f, const struct filter *flt, size_t keep, struct lines *out,
		       size_t *seq)
{
	struct segments segs = {0};
	struct lines mine = {0};
	struct collector c = {flt, &mine, keep, keep == 0, seq};

	list_segments(f->dir, f->shard, &segs);
	if (segs.n > 0) {
		qsort(segs.v, segs.n, sizeof(*segs.v), segment_cmp);
		follow_start(f, segs.v[segs.n - 1].name);
		follow_poll(f, &c);
		lines_trim(&mine, keep);
	}
	for (size_t i = segs.n ? segs.n - 1 : 0; i-- > 0 && mine.n < keep;) {
		struct lines older = {0};
		struct collector oc = {flt, &older, keep - mine.n, false, seq};
		struct reader r;

		reader_init(&r, segs.v[i].path);
		if (reader_poll(&r, collect_line, &oc) == 0)
			reader_check_end(&r, collect_line, &oc);
		reader_free(&r);
		lines_trim(&older, keep - mine.n);
		for (size_t k = 0; k < mine.n; k++)
			lines_push(&older, mine.v[k]);
		free(mine.v);
		mine = older;
	}
	/* Number them in the order written, for a stable merge. */
	for (size_t k = 0; k < mine.n; k++) {
		mine.v[k].seq = (*seq)++;
		lines_push(out, mine.v[k]);
	}
	free(mine.v);
	free(segs.v);
}

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

struct follows {
	struct follow *v;
	size_t n;
	bool flat; /* root holds segments itself */
};

static struct follow *follows_add(struct follows *fs, long shard, const char *root)
{
	struct follow *v = realloc(fs->v, (fs->n + 1) * sizeof(*v)), *f;

	if (v == NULL) {
		fprintf(stderr, TOOL ": out of memory\n");
		exit(1);
	}
	fs->v = v;
	f = &fs->v[fs->n++];
	memset(f, 0, sizeof(*f));
	f->shard = shard;
	if (shard < 0)
		snprintf(f->dir, sizeof(f->dir), "%s", root);
	else
		snprintf(f->dir, sizeof(f->dir), "%s/%ld", root, shard);
	return f;
}

/* New shard directories since the last look (a daemon started later). */
static void follows_refresh(struct follows *fs, const char *root)
{
	static long shards[MAX_SHARDS];
	size_t n = list_shards(root, shards, MAX_SHARDS);

	if (n > 0 && fs->flat && fs->n == 1 && !fs->v[0].active && !fs->v[0].name[0]) {
		fs->n = 0; /* the root became a log_dir: follow its shards instead */
		fs->flat = false;
	}
	if (fs->flat)
		return;
	for (size_t i = 0; i < n; i++) {
		bool known = false;

		for (size_t k = 0; k < fs->n && !known; k++)
			known = fs->v[k].shard == shards[i];
		if (!known)
			follows_add(fs, shards[i], root);
	}
}

static int cmd_tail(const char *root, bool follow, size_t n, const struct filter *flt)
{
	static long shards[MAX_SHARDS];
	struct follows fs = {0};
	struct lines batch = {0};
	size_t seq = 0, n_shards;

	if (!is_dir(root)) {
		fail(root, "not a directory");
		return exit_status;
	}
	n_shards = list_shards(root, shards, MAX_SHARDS);
	if (n_shards == 0) {
		fs.flat = true;
		follows_add(&fs, -1, root);
	}
	for (size_t i = 0; i < n_shards; i++)
		follows_add(&fs, shards[i], root);
	for (size_t i = 0; i < fs.n; i++)
		tail_shard(&fs.v[i], flt, n, &batch, &seq);
	lines_flush(&batch, n);
	if (follow) {
		struct sigaction sa = {0};

		sa.sa_handler = on_stop;
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	while (follow && !stop_requested) {
		struct timespec ts = {0, FOLLOW_POLL_MS * 1000000L};

		nanosleep(&ts, NULL);
		follows_refresh(&fs, root);
		for (size_t i = 0; i < fs.n && !stop_requested; i++) {
			struct collector c = {flt, &batch, 0, false, &seq};

			follow_poll(&fs.v[i], &c);
		}
		lines_flush(&batch, SIZE_MAX);
		if (ferror(stdout))
			break;
	}
	for (size_t i = 0; i < fs.n; i++)
		reader_free(&fs.v[i].r);
	free(fs.v);
	free(batch.v);
	return exit_status;
}

/* --------------------------------------------------------------------- */

static int add_types(struct filter *f, char *list)
{
	for (char *save = NULL, *t = strtok_r(list, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		if (f->n_types == MAX_TYPES) {
			fprintf(stderr, TOOL ": too many --type values (%d at most)\n", MAX_TYPES);
			return -1;
		}
		f->types[f->n_types++] = t;
	}
	return 0;
}

static int finish_stdout(int status)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, TOOL ": writing to stdout: %s\n", strerror(errno));
		return 1;
	}
	return status;
}

int main(int argc, char **argv)
{
	struct filter f = {0};
	bool follow = false, tail;
	size_t n = 10;
	int i = 2, first;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc < 2 || (strcmp(argv[1], "cat") != 0 && strcmp(argv[1], "tail") != 0)) {
		usage(stderr);
		return 2;
	}
	tail = strcmp(argv[1], "tail") == 0;
	for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		const char *a = argv[i];
		bool has_value = i + 1 < argc;

		if (strcmp(a, "--") == 0) {
			i++;
			break;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--type") == 0 && has_value) {
			if (add_types(&f, argv[++i]) != 0)
				return 2;
		} else if (strcmp(a, "--id") == 0 && has_value) {
			f.id = argv[++i];
		} else if (tail && strcmp(a, "-f") == 0) {
			follow = true;
		} else if (tail && strcmp(a, "-n") == 0 && has_value) {
			char *end;
			unsigned long long v = strtoull(argv[++i], &end, 10);

			if (*argv[i] == '\0' || *end != '\0' || argv[i][0] == '-') {
				fprintf(stderr, TOOL ": -n wants a number of records, got '%s'\n",
					argv[i]);
				return 2;
			}
			n = (size_t)v;
		} else {
			fprintf(stderr, TOOL ": unknown or incomplete option '%s' (see --help)\n",
				a);
			return 2;
		}
	}
	first = i;
	if (first >= argc || (tail && argc - first != 1)) {
		usage(stderr);
		return 2;
	}
	if (!tail)
		return finish_stdout(cmd_cat(argv + first, argc - first, &f));
	signal(SIGPIPE, SIG_DFL);
	return finish_stdout(cmd_tail(argv[first], follow, n, &f));
}
