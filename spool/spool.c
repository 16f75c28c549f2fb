/*
 * spool.c -- the per-shard spool: opening (recovery, then a fresh segment),
 * group commit, failure handling and rotation.  The on-disk format, the sync
 * order and the crash argument are at the top of spool_segment.c.
 *
 * GROUP COMMIT
 *
 * Appends never do I/O.  spool_append_message() encodes the record header
 * and envelope into the pending batch's buffer, computes the CRC over the
 * envelope and the message's body iovecs, and remembers those iovecs: the
 * body is written from the message's own buffers, never copied.
 *
 *     pending batches (FIFO)        in flight (at most one)
 *     [b2: r5 r6 r7] <- appends     [b1: r1 r2 r3 r4]  pwritev + fdatasync
 *
 * spool_batch_start() takes the oldest pending batch, resolves its iovecs
 * (envelopes of consecutive tombstones merge into one) and hands out fd,
 * offset and iovecs; the shard links a WRITEV and an FSYNC(DATASYNC) on its
 * ring.  Everything appended meanwhile lands in the next batch, so one
 * fdatasync covers all the messages that arrived while the previous one ran.
 * In steady state two batch objects alternate (double buffering) and their
 * buffers are reused, so the hot path does not allocate.
 *
 * A batch holds at most SPOOL_BATCH_IOV_MAX iovecs (IOV_MAX: one writev
 * takes no more) and SPOOL_BATCH_BYTES_MAX bytes; a record that does not fit
 * starts the next batch, which waits behind the current one.  More than two
 * batches exist only when more than a batch's worth arrives during one
 * fdatasync; spares beyond two are freed when they come back.
 *
 * COMPLETION
 *
 * spool_batch_done() gets the WRITEV and FSYNC results.  Only a full-length
 * write followed by a successful sync makes the batch's records PT_OK.
 * Anything else -- a short write, -EIO, -ENOSPC, -ECANCELED from a broken
 * link -- fails every record of the batch and nothing else: the segment is
 * cut back to the batch's start (best effort), sealed, and the next batch
 * goes to a new segment.  The old file is not fsync'd again: after a failed
 * fsync the kernel may have dropped the dirty pages and a retry can report
 * success over lost data (PostgreSQL "fsyncgate", 2018).  If the new segment
 * cannot be created, fd stays -1: the next batch's write fails with -EBADF,
 * its records fail, and creation is tried again -- no record ever waits on a
 * spool that cannot write.
 *
 * ROTATION
 *
 * After a successful batch leaves the segment at or past segment_max, the
 * next segment is created (blocking: open, header, two syncs) and the old
 * file closed.  Nothing is in flight at that moment, so the old segment is
 * complete.  If creation fails the old segment stays current and rotation is
 * tried again after the next batch.
 *
 * LIVENESS AND DELETION
 *
 * The spool keeps one small entry per segment on disk (struct spool_seg, in
 * sequence order): its size, a cached read fd, and n_live, the number of
 * messages whose newest copy lies in it.  n_live starts from recovery's count
 * and grows by one for every MESSAGE record of a successful batch, a second
 * copy of an id (compaction) included; the caller, which knows which
 * messages are done, calls spool_unref() when a tombstone is durable or a
 * newer copy is (the loc its callback got says where that copy is).  The
 * spool never tracks ids at run time: a counter per segment is all it needs.
 *
 * spool_collect() deletes from the oldest segment while it is dead and not
 * the current one (the prefix rule; why that is safe: "DELETING DEAD
 * SEGMENTS" in spool_segment.c), then fsyncs the directory once.  When even
 * the current segment is dead and idle and holds rotate_min bytes, it starts
 * a new segment first, so a spool whose mail is all delivered shrinks back
 * to one small file.  A prefix is the price of not indexing tombstones at
 * run time: one long-deferred message pins every younger segment, which is
 * what compaction (the caller's: read the record back, append it again,
 * unref the old segment) is for.
 *
 * Read fds (spool_read_fd) are opened on first use, one per segment, and
 * closed when the segment goes; the current segment gets its own read fd
 * too, so rotation never closes an fd a reader holds.
 */
#include "spool/spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Spare batch objects kept after use (two alternate in steady state). */
#define SPOOL_SPARE_BATCHES 2

/* One queued record of a batch. */
struct spool_rec {
	void *token;
	uint8_t type;	 /* enum spool_record_type */
	uint32_t length; /* header + payload on disk */
	size_t enc_off;	 /* header (+ envelope) in the batch's enc buffer */
	size_t enc_len;
	struct iovec body[4]; /* into the message; not copied */
	int n_body;
};

struct spool_batch {
	struct spool_batch *next;
	struct pt_buf enc; /* record headers and envelopes, back to back */
	struct spool_rec *recs;
	size_t n_recs, cap_recs;
	int n_iov;	   /* iovecs the records need (counted at append) */
	size_t len;	   /* bytes */
	size_t n_messages; /* MESSAGE records among recs */
	uint64_t segment;  /* where it is written (set by spool_batch_start) */
	uint64_t offset;
	struct iovec iov[SPOOL_BATCH_IOV_MAX];
};

/* A segment on disk as the running spool tracks it (see LIVENESS above). */
struct spool_seg {
	uint64_t seq;
	uint64_t n_live; /* messages whose newest copy is here */
	uint64_t bytes;	 /* its share of sp->bytes */
	int read_fd;	 /* spool_read_fd's, -1 until first used */
	bool bad;	 /* recovery found a bad record in it: renamed, not deleted */
	uint32_t mask;	 /* spool_record_mask of its records */
};

struct spool {
	char *dir; /* <path>/<shard> */
	unsigned shard;
	uint64_t segment_max;
	int dir_fd;
	int fd;	      /* current segment, -1 when none could be created */
	uint64_t seq; /* current segment, or the next one to create when fd < 0 */
	uint64_t end; /* bytes in the current segment */
	/* The current segment's file length when it was made: more than `end`
	 * for a recycled file, whose old bytes lie past end until overwritten
	 * (cut off when the segment stops being current before that). */
	uint64_t file_size;
	/* Spare files (RECYCLING in spool_segment.c), oldest first, and the
	 * renames to spares still in flight (spool_collect_detach's caller's). */
	char spares[SPOOL_SPARES_MAX][SPOOL_SPARE_NAME_LEN + 1];
	unsigned n_spares, n_spares_pending;
	struct spool_batch *pending, *pending_tail;
	struct spool_batch *inflight;
	struct spool_batch *spare;
	unsigned n_spare;
	uint64_t bytes;
	struct spool_seg *segs; /* every segment on disk, oldest first */
	size_t n_segs, cap_segs;
};

/* "<dir>/<segment file name>" of seq, for messages. */
static const char *spool_path(const struct spool *sp, uint64_t seq, char *out, size_t len)
{
	char name[SPOOL_SEGMENT_NAME_LEN + 1];

	spool_segment_name(seq, name);
	snprintf(out, len, "%s/%s", sp->dir, name);
	return out;
}

/* Room for one more entry in sp->segs.  PT_OK or PT_NOMEM. */
static int spool_seg_reserve(struct spool *sp)
{
	struct spool_seg *p;
	size_t cap;

	if (sp->n_segs < sp->cap_segs)
		return PT_OK;
	cap = sp->cap_segs ? sp->cap_segs * 2 : 16;
	p = reallocarray(sp->segs, cap, sizeof(*p));
	if (p == NULL)
		return PT_NOMEM;
	sp->segs = p;
	sp->cap_segs = cap;
	return PT_OK;
}

/* Track segment seq (newer than every tracked one; room reserved). */
static void spool_seg_add(struct spool *sp, uint64_t seq, uint64_t bytes, uint64_t n_live, bool bad,
			  uint32_t mask)
{
	struct spool_seg *g = &sp->segs[sp->n_segs++];

	g->seq = seq;
	g->n_live = n_live;
	g->bytes = bytes;
	g->read_fd = -1;
	g->bad = bad;
	g->mask = mask;
	sp->bytes += bytes;
}

/* The entry of segment seq, or NULL when it is not on disk.  Binary search. */
static struct spool_seg *spool_seg_find(const struct spool *sp, uint64_t seq)
{
	size_t lo = 0, hi = sp->n_segs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (sp->segs[mid].seq == seq)
			return &sp->segs[mid];
		if (sp->segs[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/*
 * Create segment sp->seq (or the next free number) and make it current,
 * from a spare file when use_spare and there is one (not for the idle
 * rotation of a dead segment: a spare is for a segment that will fill).
 * PT_OK, or PT_ERROR (logged) with sp->fd left at -1.
 */
static int spool_segment_next(struct spool *sp, bool use_spare)
{
	char path[4200];
	uint64_t size, first = sp->seq;
	int fd = -1, rc;

	if (spool_seg_reserve(sp) != PT_OK) {
		pt_error("spool %s: cannot create a segment: out of memory", sp->dir);
		return PT_ERROR;
	}

	/* A spare first (the newest: its blocks were written last); one that
	 * fails is dropped from the list (logged) and a new file made. */
	while (use_spare && sp->n_spares > 0) {
		char *spare = sp->spares[sp->n_spares - 1];

		rc = spool_segment_recycle(sp->dir_fd, spare, sp->shard, sp->seq, &fd, &size,
					   &sp->file_size);
		sp->n_spares--;
		if (rc == 0) {
			sp->fd = fd;
			sp->end = size;
			spool_seg_add(sp, sp->seq, size, 0, false,
				      spool_record_mask(sp->seq, SPOOL_FORMAT_VERSION));
			return PT_OK;
		}
		pt_warn("spool %s/%s: cannot reuse the spare file for segment %llu: %s", sp->dir,
			spare, (unsigned long long)sp->seq, strerror(-rc));
		if (rc == -EEXIST)
			sp->seq++;
	}

	/* EEXIST: a stray file with this number (say, left by a failed creation
	 * that could not even unlink it); numbers are cheap, take the next. */
	for (;;) {
		rc = spool_segment_create(sp->dir_fd, sp->shard, sp->seq, &fd, &size);
		if (rc != -EEXIST || sp->seq - first >= 15)
			break;
		sp->seq++;
	}
	if (rc < 0) {
		pt_error("spool %s: cannot create segment: %s%s",
			 spool_path(sp, sp->seq, path, sizeof(path)), strerror(-rc),
			 rc == -EEXIST ? " (and so did the 15 numbers before it)" : "");
		if (rc == -EEXIST)
			sp->seq++;
		return PT_ERROR;
	}
	sp->fd = fd;
	sp->end = size;
	sp->file_size = size;
	spool_seg_add(sp, sp->seq, size, 0, false,
		      spool_record_mask(sp->seq, SPOOL_FORMAT_VERSION));
	return PT_OK;
}

/* fsync the directory holding path (its last component is new). */
static int spool_sync_parent(const char *path)
{
	char parent[4096];
	const char *slash = strrchr(path, '/');
	int fd, rc = 0;

	if (slash == NULL)
		snprintf(parent, sizeof(parent), ".");
	else if (slash == path)
		snprintf(parent, sizeof(parent), "/");
	else
		snprintf(parent, sizeof(parent), "%.*s", (int)(slash - path), path);
	fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

/*
 * mkdir -p path (mode 0750), syncing the parent of every directory created
 * so the spool directory itself survives a crash.  PT_OK or PT_ERROR with
 * err filled ("<dir>: reason").
 */
int spool_mkdir_p(const char *path, char *err, size_t err_len)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf)) {
		snprintf(err, err_len, "%s: bad spool path", path);
		return PT_ERROR;
	}
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0750) == 0) {
			int rc = spool_sync_parent(buf);

			if (rc < 0) {
				snprintf(err, err_len, "%s: cannot sync parent: %s", buf,
					 strerror(-rc));
				return PT_ERROR;
			}
		} else if (errno != EEXIST) {
			snprintf(err, err_len, "%s: cannot create directory: %s", buf,
				 strerror(errno));
			return PT_ERROR;
		}
		buf[i] = i < n ? '/' : '\0';
	}
	return PT_OK;
}

/* Track the segments recovery left on disk, with their live counts.  Frees
 * res->segs.  PT_OK or PT_NOMEM. */
static int spool_open_segments(struct spool *sp, struct spool_recovery_result *res)
{
	int rc = PT_OK;

	for (size_t i = 0; i < res->n_segments && rc == PT_OK; i++) {
		const struct spool_recovered_segment *r = &res->segs[i];

		rc = spool_seg_reserve(sp);
		if (rc == PT_OK)
			spool_seg_add(sp, r->seq, r->size, r->n_live, r->bad, r->mask);
	}
	free(res->segs);
	res->segs = NULL;
	return rc;
}

static int spool_name_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/*
 * Find the spare files a previous run left: the newest SPOOL_SPARES_MAX are
 * kept for reuse, older ones deleted (a smaller SPOOL_SPARES_MAX, or spares
 * left by a crash during a rename).  Failures are logged, never fatal: a
 * spool without spares makes new files.
 */
static void spool_spares_load(struct spool *sp)
{
	char names[64][SPOOL_SPARE_NAME_LEN + 1];
	size_t n = 0, removed = 0;
	struct dirent *de;
	int fd = dup(sp->dir_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (d == NULL) {
		pt_warn("spool %s: cannot list spare files: %s", sp->dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (!spool_spare_parse_name(de->d_name))
			continue;
		if (n == PT_ARRAY_LEN(names)) {
			/* More than we track: this one goes now. */
			if (unlinkat(sp->dir_fd, de->d_name, 0) == 0)
				removed++;
			continue;
		}
		memcpy(names[n++], de->d_name, SPOOL_SPARE_NAME_LEN + 1);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), spool_name_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i + SPOOL_SPARES_MAX < n) {
			if (unlinkat(sp->dir_fd, names[i], 0) == 0)
				removed++;
			else
				pt_warn("spool %s/%s: cannot remove a spare file: %s", sp->dir,
					names[i], strerror(errno));
			continue;
		}
		memcpy(sp->spares[sp->n_spares++], names[i], SPOOL_SPARE_NAME_LEN + 1);
	}
	if (removed > 0 && fsync(sp->dir_fd) != 0)
		pt_warn("spool %s: fsync after removing spare files: %s", sp->dir, strerror(errno));
}

/*
 * Open the shard's spool (spool.h).  Order matters: recovery first, since it
 * repairs the newest segment, then the new segment (max + 1), so the
 * repaired file is never appended to.  fn may already have been called when
 * a later step fails.
 */
int spool_open(struct spool **out, const struct spool_config *cfg, spool_entry_fn fn, void *arg,
	       char *err, size_t err_len)
{
	struct spool_recovery_result res;
	struct spool *sp = calloc(1, sizeof(*sp));

	if (sp == NULL || asprintf(&sp->dir, "%s/%u", cfg->path, cfg->shard) < 0) {
		snprintf(err, err_len, "%s: out of memory", cfg->path);
		free(sp);
		return PT_ERROR;
	}
	sp->fd = -1;
	sp->dir_fd = -1;
	sp->shard = cfg->shard;
	sp->segment_max = cfg->segment_max ? cfg->segment_max : SPOOL_SEGMENT_MAX_DEFAULT;
	if (spool_mkdir_p(sp->dir, err, err_len) != PT_OK)
		goto fail;
	sp->dir_fd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dir_fd < 0) {
		snprintf(err, err_len, "%s: %s", sp->dir, strerror(errno));
		goto fail;
	}
	if (spool_recover(sp->dir_fd, sp->dir, sp->shard, true, fn, arg, NULL, NULL, &res, err,
			  err_len) != PT_OK) {
		free(res.segs);
		goto fail;
	}
	if (spool_open_segments(sp, &res) != PT_OK) {
		snprintf(err, err_len, "%s: out of memory", sp->dir);
		goto fail;
	}
	spool_spares_load(sp);
	sp->seq = res.max_seq + 1;
	if (spool_segment_next(sp, true) != PT_OK) {
		snprintf(err, err_len, "%s: cannot create a new segment (see the log)", sp->dir);
		goto fail;
	}
	*out = sp;
	return PT_OK;
fail:
	spool_close(sp);
	return PT_ERROR;
}

static void spool_batch_free(struct spool_batch *b)
{
	pt_buf_free(&b->enc);
	free(b->recs);
	free(b);
}

static void spool_batch_free_list(struct spool_batch *b)
{
	while (b != NULL) {
		struct spool_batch *next = b->next;

		spool_batch_free(b);
		b = next;
	}
}

/*
 * A recycled current segment that stops being current before its new
 * records reached the file's old length: cut the old bytes off and sync, so
 * that the segment, no longer the newest, ends where its records do (a bad
 * record in an older segment is reported as damage).  Nothing may be in
 * flight.  Logged on failure; the next start then reports the old bytes as
 * a bad record, and nothing is lost.
 */
static void spool_cut_stale_tail(struct spool *sp)
{
	char path[4200];

	if (sp->fd < 0 || sp->end >= sp->file_size)
		return;
	if (ftruncate(sp->fd, (off_t)sp->end) != 0 || fdatasync(sp->fd) != 0)
		pt_warn("spool %s: cannot cut the reused file at %llu: %s",
			spool_path(sp, sp->seq, path, sizeof(path)), (unsigned long long)sp->end,
			strerror(errno));
	else
		sp->file_size = sp->end;
}

/* Close the files and free everything; pending records are dropped (no callbacks). */
void spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->inflight == NULL)
		spool_cut_stale_tail(sp);
	if (sp->fd >= 0)
		close(sp->fd);
	if (sp->dir_fd >= 0)
		close(sp->dir_fd);
	for (size_t i = 0; i < sp->n_segs; i++)
		if (sp->segs[i].read_fd >= 0)
			close(sp->segs[i].read_fd);
	free(sp->segs);
	spool_batch_free_list(sp->pending);
	spool_batch_free_list(sp->spare);
	if (sp->inflight != NULL)
		spool_batch_free(sp->inflight);
	free(sp->dir);
	free(sp);
}

/* Iovecs a record with n_body body parts adds to b: its envelope merges with
 * the previous record's when that one had no body (consecutive tombstones). */
static int spool_batch_need(const struct spool_batch *b, int n_body)
{
	bool merge = b->n_recs > 0 && b->recs[b->n_recs - 1].n_body == 0;

	return (merge ? 0 : 1) + n_body;
}

/* An empty batch: a spare one, or a new one.  NULL when out of memory. */
static struct spool_batch *spool_batch_get(struct spool *sp)
{
	struct spool_batch *b = sp->spare;

	if (b != NULL) {
		sp->spare = b->next;
		sp->n_spare--;
	} else {
		b = calloc(1, sizeof(*b));
		if (b == NULL)
			return NULL;
	}
	b->next = NULL;
	return b;
}

/*
 * The pending batch a record of len bytes and n_body body parts goes to:
 * the newest one if it fits there, else a new one queued behind it.  NULL
 * when out of memory.
 */
static struct spool_batch *spool_batch_for(struct spool *sp, int n_body, uint64_t len)
{
	struct spool_batch *b = sp->pending_tail;

	if (b != NULL &&
	    (b->n_recs == 0 || (b->n_iov + spool_batch_need(b, n_body) <= SPOOL_BATCH_IOV_MAX &&
				b->len + len <= SPOOL_BATCH_BYTES_MAX)))
		return b;
	b = spool_batch_get(sp);
	if (b == NULL)
		return NULL;
	if (sp->pending_tail != NULL)
		sp->pending_tail->next = b;
	else
		sp->pending = b;
	sp->pending_tail = b;
	return b;
}

/* A free slot at the end of b->recs (not yet counted).  NULL when out of memory. */
static struct spool_rec *spool_batch_slot(struct spool_batch *b)
{
	struct spool_rec *p;
	size_t cap;

	if (b->n_recs == b->cap_recs) {
		cap = b->cap_recs ? b->cap_recs * 2 : 64;
		p = reallocarray(b->recs, cap, sizeof(*p));
		if (p == NULL)
			return NULL;
		b->recs = p;
		b->cap_recs = cap;
	}
	return &b->recs[b->n_recs];
}

/* Count rec (already encoded at enc_off) into b. */
static void spool_batch_commit(struct spool_batch *b, struct spool_rec *rec, uint64_t len)
{
	rec->enc_len = b->enc.len - rec->enc_off;
	rec->length = (uint32_t)len;
	b->n_iov += spool_batch_need(b, rec->n_body);
	b->len += len;
	b->n_recs++;
	if (rec->type == SPOOL_RECORD_MESSAGE)
		b->n_messages++;
}

/*
 * Queue m's MESSAGE record (spool.h).  The header and envelope are encoded
 * now, the CRC taken over them and the body; the body iovecs point into m.
 * PT_OK, PT_NOMEM, or PT_ERROR (invalid id, record over 1 GiB).
 */
int spool_append_message(struct spool *sp, const struct pt_message *m, void *token)
{
	uint64_t len = spool_record_message_len(m);
	struct spool_batch *b;
	struct spool_rec *rec;
	size_t rec_len;
	int n_body, rc;
	struct iovec body[4];

	if (!pt_id_valid(m->id, strnlen(m->id, PT_ID_LEN + 1)) ||
	    len - SPOOL_RECORD_HEADER_LEN > SPOOL_PAYLOAD_MAX)
		return PT_ERROR;
	n_body = pt_message_iov(m, body);
	b = spool_batch_for(sp, n_body, len);
	if (b == NULL || (rec = spool_batch_slot(b)) == NULL)
		return PT_NOMEM;
	rec->token = token;
	rec->type = SPOOL_RECORD_MESSAGE;
	rec->enc_off = b->enc.len;
	rec->n_body = n_body;
	memcpy(rec->body, body, sizeof(body));
	rc = spool_record_encode_message(&b->enc, m, body, n_body, &rec_len);
	if (rc != PT_OK)
		return rc;
	spool_batch_commit(b, rec, rec_len);
	return PT_OK;
}

/* Queue a body-less record of id (copied): a TOMBSTONE, or a RCPT_STATE
 * when st is not NULL.  PT_OK, PT_NOMEM, PT_ERROR (invalid id). */
static int spool_append_small(struct spool *sp, const char *id, const struct spool_rcpt_state *st,
			      void *token)
{
	const uint64_t len = SPOOL_RECORD_HEADER_LEN + (st != NULL ? SPOOL_RCPT_STATE_PAYLOAD_LEN
								   : SPOOL_TOMBSTONE_PAYLOAD_LEN);
	struct spool_batch *b;
	struct spool_rec *rec;
	int rc;

	if (!pt_id_valid(id, strnlen(id, PT_ID_LEN + 1)))
		return PT_ERROR;
	b = spool_batch_for(sp, 0, len);
	if (b == NULL || (rec = spool_batch_slot(b)) == NULL)
		return PT_NOMEM;
	rec->token = token;
	rec->type = st != NULL ? SPOOL_RECORD_RCPT_STATE : SPOOL_RECORD_TOMBSTONE;
	rec->enc_off = b->enc.len;
	rec->n_body = 0;
	rc = st != NULL ? spool_record_encode_rcpt_state(&b->enc, id, st)
			: spool_record_encode_tombstone(&b->enc, id);
	if (rc != PT_OK)
		return rc;
	spool_batch_commit(b, rec, len);
	return PT_OK;
}

/* Queue a TOMBSTONE for id (copied).  PT_OK, PT_NOMEM, PT_ERROR (invalid id). */
int spool_append_tombstone(struct spool *sp, const char *id, void *token)
{
	return spool_append_small(sp, id, NULL, token);
}

/* Queue a RCPT_STATE for recipient st->rcpt of id (both copied).  PT_OK,
 * PT_NOMEM, PT_ERROR (invalid id). */
int spool_append_rcpt_state(struct spool *sp, const char *id, const struct spool_rcpt_state *st,
			    void *token)
{
	return spool_append_small(sp, id, st, token);
}

/* True when a batch could start now. */
bool spool_batch_ready(const struct spool *sp)
{
	return sp->inflight == NULL && sp->pending != NULL && sp->pending->n_recs > 0;
}

/* True while a batch is in flight (from spool_batch_start to the end of spool_batch_done). */
bool spool_batch_busy(const struct spool *sp)
{
	return sp->inflight != NULL;
}

/* Point b->iov at its records: envelopes in b->enc (final now), bodies in the messages. */
static void spool_batch_build_iov(struct spool_batch *b)
{
	int n = 0;

	for (size_t i = 0; i < b->n_recs; i++) {
		const struct spool_rec *rec = &b->recs[i];

		/* Same rule as spool_batch_need(): enc is contiguous, so a
		 * record following a body-less one extends its iovec. */
		if (i > 0 && b->recs[i - 1].n_body == 0) {
			b->iov[n - 1].iov_len += rec->enc_len;
		} else {
			b->iov[n].iov_base = b->enc.data + rec->enc_off;
			b->iov[n].iov_len = rec->enc_len;
			n++;
		}
		for (int k = 0; k < rec->n_body; k++)
			b->iov[n++] = rec->body[k];
	}
	if (n != b->n_iov)
		pt_panic("spool batch: %d iovecs built, %d counted", n, b->n_iov);
}

/*
 * Take the oldest pending batch as the in-flight one and describe its write
 * in io (spool.h).  When no segment is open (creation failed before), try
 * again here; if that fails too, io->fd is -1 so the write fails with
 * -EBADF and the batch's records are answered with failure.  PT_OK, or
 * PT_AGAIN when nothing is pending or a batch is in flight.
 */
/* Store each record's CRC under the mask of the segment the batch goes to
 * (appends computed it unmasked, before the segment was known). */
static void spool_batch_mask(struct spool_batch *b, uint32_t mask)
{
	for (size_t i = 0; i < b->n_recs; i++) {
		uint8_t *h = (uint8_t *)b->enc.data + b->recs[i].enc_off;

		spool_put_le32(h + SPOOL_HDR_CRC, spool_get_le32(h + SPOOL_HDR_CRC) ^ mask);
	}
}

int spool_batch_start(struct spool *sp, struct spool_io *io)
{
	struct spool_batch *b;

	if (!spool_batch_ready(sp))
		return PT_AGAIN;
	if (sp->fd < 0)
		spool_segment_next(sp, true);
	b = sp->pending;
	sp->pending = b->next;
	if (sp->pending == NULL)
		sp->pending_tail = NULL;
	b->next = NULL;
	spool_batch_build_iov(b);
	b->segment = sp->seq;
	b->offset = sp->end;
	spool_batch_mask(b, spool_record_mask(sp->seq, SPOOL_FORMAT_VERSION));
	sp->inflight = b;
	io->fd = sp->fd;
	io->offset = b->offset;
	io->iov = b->iov;
	io->n_iov = b->n_iov;
	io->len = b->len;
	return PT_OK;
}

/* A WRITEV result for the log: the error, or "n of len bytes". */
static const char *spool_write_text(int res, size_t len, char *out, size_t out_len)
{
	if (res < 0)
		snprintf(out, out_len, "%s", strerror(-res));
	else
		snprintf(out, out_len, "%d of %zu bytes", res, len);
	return out;
}

/*
 * The batch b failed: cut its bytes off the segment (best effort), seal the
 * segment, and create the next one for later batches.  Loud: this is an
 * operator's alarm (disk error or full), and 451s are going out.
 */
static void spool_batch_failed(struct spool *sp, const struct spool_batch *b, int write_res,
			       int sync_res)
{
	char path[4200], wtext[64];

	if (sp->fd < 0) {
		pt_error("spool %s: no segment to write to (creating one failed): batch of %zu "
			 "records failed, they get a temporary failure",
			 sp->dir, b->n_recs);
		spool_segment_next(sp, true);
		return;
	}
	spool_path(sp, sp->seq, path, sizeof(path));
	pt_error("spool %s: batch of %zu records (%zu bytes at offset %llu) failed (write: %s, "
		 "fdatasync: %s): segment sealed, the batch's records get a temporary failure",
		 path, b->n_recs, b->len, (unsigned long long)b->offset,
		 spool_write_text(write_res, b->len, wtext, sizeof(wtext)),
		 sync_res < 0 ? strerror(-sync_res) : "ok");
	/* Best effort and never synced (see top): if it does not reach the disk
	 * the batch's records may come back after a crash, as duplicates. */
	if (ftruncate(sp->fd, (off_t)b->offset) != 0)
		pt_error("spool %s: cannot cut the failed batch off at offset %llu: %s", path,
			 (unsigned long long)b->offset, strerror(errno));
	close(sp->fd);
	sp->fd = -1;
	sp->seq++;
	spool_segment_next(sp, true);
}

/* Start the next segment (nothing in flight).  PT_OK; PT_ERROR (logged) when
 * it cannot be created: the old one stays current. */
static int spool_rotate(struct spool *sp, bool use_spare)
{
	int old_fd = sp->fd;
	uint64_t old_seq, old_end, old_file_size;

	spool_cut_stale_tail(sp);
	old_seq = sp->seq;
	old_end = sp->end;
	old_file_size = sp->file_size;
	sp->fd = -1;
	sp->seq++;
	if (spool_segment_next(sp, use_spare) != PT_OK) {
		sp->fd = old_fd;
		sp->seq = old_seq;
		sp->end = old_end;
		sp->file_size = old_file_size;
		return PT_ERROR;
	}
	close(old_fd);
	return PT_OK;
}

/*
 * The batch b is durable: count its bytes and its messages (each is now the
 * newest copy of its id, in b's segment), then start the next segment once
 * this one passed segment_max (if that fails, the next batch tries again).
 */
static void spool_batch_landed(struct spool *sp, const struct spool_batch *b)
{
	struct spool_seg *g = spool_seg_find(sp, b->segment);

	if (g == NULL || b->segment != sp->seq)
		pt_panic("spool %s: batch written to segment %llu, which is not current", sp->dir,
			 (unsigned long long)b->segment);
	sp->end += b->len;
	sp->bytes += b->len;
	g->bytes += b->len;
	g->n_live += b->n_messages;
	/* A recycled file is filled to its old length first: its old bytes are
	 * then all overwritten, and nothing is left to cut at rotation. */
	if (sp->end >= sp->segment_max && sp->end >= sp->file_size)
		spool_rotate(sp, true);
}

/* Give a used batch back: kept as a spare (buffers and all) or freed. */
static void spool_batch_put(struct spool *sp, struct spool_batch *b)
{
	if (sp->n_spare >= SPOOL_SPARE_BATCHES) {
		spool_batch_free(b);
		return;
	}
	b->enc.len = 0;
	b->n_recs = 0;
	b->n_iov = 0;
	b->len = 0;
	b->n_messages = 0;
	b->next = sp->spare;
	sp->spare = b;
	sp->n_spare++;
}

/* Call cb for every record of b in order; MESSAGE records of a successful
 * batch get where they landed. */
static void spool_batch_report(const struct spool_batch *b, bool ok, spool_done_fn cb, void *arg)
{
	struct spool_loc loc = {.segment = b->segment, .offset = b->offset};

	for (size_t i = 0; cb != NULL && i < b->n_recs; i++) {
		const struct spool_rec *rec = &b->recs[i];
		bool is_message = ok && rec->type == SPOOL_RECORD_MESSAGE;

		loc.length = rec->length;
		cb(arg, rec->token, ok ? PT_OK : PT_ERROR, is_message ? &loc : NULL);
		loc.offset += rec->length;
	}
}

/*
 * Complete the in-flight batch (spool.h).  cb (may be NULL) gets every
 * record's token in order, PT_OK only when the write was whole and the sync
 * succeeded, and for a MESSAGE record then its location.  The batch's
 * messages are counted live before the callbacks run, so a callback may
 * spool_unref() any of them.  While the callbacks run the batch still counts
 * as in flight, so a callback may append (to the next batch) but not start
 * one.
 */
void spool_batch_done(struct spool *sp, int write_res, int sync_res, spool_done_fn cb, void *arg)
{
	struct spool_batch *b = sp->inflight;
	bool ok;

	if (b == NULL)
		pt_panic("spool_batch_done without a batch in flight");
	ok = write_res >= 0 && (size_t)write_res == b->len && sync_res == 0;
	if (ok)
		spool_batch_landed(sp, b);
	else
		spool_batch_failed(sp, b, write_res, sync_res);
	spool_batch_report(b, ok, cb, arg);
	sp->inflight = NULL;
	spool_batch_put(sp, b);
}

/* pwritev all of io, continuing after short writes.  Bytes written, or -errno.
 * Advances io->iov entries in place (they are rebuilt for every batch). */
static ssize_t spool_pwritev_all(struct spool_io *io)
{
	struct iovec *iov = io->iov;
	int n = io->n_iov;
	size_t done = 0;

	while (done < io->len) {
		ssize_t w = pwritev(io->fd, iov, n, (off_t)(io->offset + done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return (ssize_t)done; /* no progress: report it as a short write */
		done += (size_t)w;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return (ssize_t)done;
}

/*
 * Write and sync every pending batch now with pwritev + fdatasync (tools
 * and tests; the shard uses its ring).  cb as for spool_batch_done.
 * PT_OK when every batch succeeded; PT_ERROR when one failed or a batch
 * is already in flight.
 */
int spool_flush_sync(struct spool *sp, spool_done_fn cb, void *arg)
{
	struct spool_io io;
	int rc = PT_OK;

	if (spool_batch_busy(sp))
		return PT_ERROR;
	while (spool_batch_start(sp, &io) == PT_OK) {
		ssize_t w = spool_pwritev_all(&io);
		int s = -ECANCELED; /* as the ring reports a sync whose write failed */

		if (w == (ssize_t)io.len)
			s = fdatasync(io.fd) == 0 ? 0 : -errno;
		if (s != 0)
			rc = PT_ERROR;
		spool_batch_done(sp, (int)w, s, cb, arg);
	}
	return rc;
}

/* Bytes in the shard's segment files, as far as this spool knows. */
uint64_t spool_bytes(const struct spool *sp)
{
	return sp->bytes;
}

/* Segment files in the shard's directory, the current one included. */
uint64_t spool_segments(const struct spool *sp)
{
	return sp->n_segs;
}

/* Sequence number of the segment appends go to. */
uint64_t spool_current_segment(const struct spool *sp)
{
	return sp->seq;
}

/* ---- Run time: reading back, liveness, deleting dead segments ---- */

/*
 * A read-only fd for segment `segment` (spool.h): opened on first use and
 * cached in its entry until the segment is deleted.  -1 when the segment is
 * not on disk (or cannot be opened: logged).
 */
int spool_read_fd(struct spool *sp, uint64_t segment)
{
	struct spool_seg *g = spool_seg_find(sp, segment);
	char path[4200];

	if (g == NULL)
		return -1;
	if (g->read_fd < 0) {
		char name[SPOOL_SEGMENT_NAME_LEN + 1];

		spool_segment_name(segment, name);
		g->read_fd = openat(sp->dir_fd, name, O_RDONLY | O_CLOEXEC);
		if (g->read_fd < 0)
			pt_error("spool %s: cannot open for reading: %s",
				 spool_path(sp, segment, path, sizeof(path)), strerror(errno));
	}
	return g->read_fd;
}

/* One live message less in `segment` (spool.h).  A segment that is not
 * tracked or already has none is a broken invariant of the caller's. */
void spool_unref(struct spool *sp, uint64_t segment)
{
	struct spool_seg *g = spool_seg_find(sp, segment);

	if (g == NULL || g->n_live == 0)
		pt_panic("spool %s: unref of segment %llu, which %s", sp->dir,
			 (unsigned long long)segment,
			 g == NULL ? "is not on disk" : "holds no live message");
	g->n_live--;
}

/* True when g is the segment appends go to. */
static bool spool_seg_current(const struct spool *sp, const struct spool_seg *g)
{
	return sp->fd >= 0 && g->seq == sp->seq;
}

/*
 * Take the oldest segment out of the spool's books.  A segment in which
 * recovery found a bad record is renamed to "<name>.bad" here (rare; kept
 * for the operator, see spool_segment.c) and *d is left empty; any other is
 * handed to the caller in *d to unlink and close.  The counters drop.  The
 * directory is not synced here.  PT_OK, or PT_ERROR (logged) when a bad
 * segment cannot be renamed (it stays, and so does everything after it).
 */
static int spool_seg_detach_oldest(struct spool *sp, struct spool_dead *d)
{
	struct spool_seg *g = &sp->segs[0];
	char bad[SPOOL_SEGMENT_NAME_LEN + 8], path[4200];

	spool_segment_name(g->seq, d->name);
	d->spare[0] = '\0';
	d->read_fd = -1;
	if (g->bad) {
		spool_path(sp, g->seq, path, sizeof(path));
		snprintf(bad, sizeof(bad), "%s.bad", d->name);
		if (renameat(sp->dir_fd, d->name, sp->dir_fd, bad) != 0 && errno != ENOENT) {
			pt_error("spool %s: cannot rename dead segment: %s", path, strerror(errno));
			return PT_ERROR;
		}
		pt_warn("spool %s: no live messages left; it held a bad record, so it is kept "
			"as %s.bad for inspection (remove it when done)",
			path, path);
		d->name[0] = '\0';
		if (g->read_fd >= 0)
			close(g->read_fd);
	} else {
		d->read_fd = g->read_fd;
		/* Kept as a spare when it has the current format (its records'
		 * mask is tied to its sequence, so they cannot be read as a later
		 * segment's) and is full size, segments being large enough for
		 * their blocks to be worth reusing. */
		if (g->mask != 0 && sp->segment_max >= SPOOL_RECYCLE_MIN && g->bytes >= sp->segment_max &&
		    sp->n_spares + sp->n_spares_pending < SPOOL_SPARES_MAX) {
			spool_spare_name(g->seq, d->spare);
			sp->n_spares_pending++;
		}
	}
	sp->bytes -= g->bytes;
	sp->n_segs--;
	memmove(sp->segs, sp->segs + 1, sp->n_segs * sizeof(*sp->segs));
	return PT_OK;
}

/* True when the current segment is the only one, dead, idle and at least rotate_min long. */
static bool spool_collect_rotate_ok(const struct spool *sp, uint64_t rotate_min)
{
	return sp->n_segs == 1 && spool_seg_current(sp, &sp->segs[0]) && sp->segs[0].n_live == 0 &&
	       sp->inflight == NULL && !spool_batch_ready(sp) && sp->end >= rotate_min;
}

/*
 * Detach dead segments (spool.h): the oldest while it is dead and not
 * current -- the prefix rule, safe by the argument in spool_segment.c --
 * then, when only a dead and idle current segment of rotate_min bytes or
 * more is left, start a new one and detach the old.
 */
unsigned spool_collect_detach(struct spool *sp, uint64_t rotate_min, struct spool_dead *out,
			      unsigned max)
{
	unsigned n = 0;

	while (n < max && sp->n_segs > 0 && !spool_seg_current(sp, &sp->segs[0]) &&
	       sp->segs[0].n_live == 0) {
		if (spool_seg_detach_oldest(sp, &out[n]) != PT_OK)
			return n; /* never skip one: a later segment's tombstones may need it gone */
		n++;
	}
	if (n < max && spool_collect_rotate_ok(sp, rotate_min) && spool_rotate(sp, false) == PT_OK &&
	    spool_seg_detach_oldest(sp, &out[n]) == PT_OK)
		n++;
	return n;
}

unsigned spool_collect(struct spool *sp, uint64_t rotate_min)
{
	struct spool_dead dead[16], spares[SPOOL_SPARES_MAX];
	bool spare_ok[SPOOL_SPARES_MAX];
	unsigned n, total = 0, n_spares = 0;
	bool synced;

	do {
		n = spool_collect_detach(sp, rotate_min, dead, PT_ARRAY_LEN(dead));
		for (unsigned i = 0; i < n; i++) {
			if (dead[i].spare[0]) {
				bool ok = renameat(sp->dir_fd, dead[i].name, sp->dir_fd,
						   dead[i].spare) == 0;

				if (!ok)
					pt_error("spool %s/%s: cannot keep dead segment as a spare: %s",
						 sp->dir, dead[i].name, strerror(errno));
				/* detach hands out at most SPOOL_SPARES_MAX pending */
				spares[n_spares] = dead[i];
				spare_ok[n_spares++] = ok;
			} else if (dead[i].name[0] && unlinkat(sp->dir_fd, dead[i].name, 0) != 0 &&
				   errno != ENOENT) {
				pt_error("spool %s/%s: cannot delete dead segment: %s", sp->dir,
					 dead[i].name, strerror(errno));
			}
			if (dead[i].read_fd >= 0)
				close(dead[i].read_fd);
		}
		total += n;
	} while (n == PT_ARRAY_LEN(dead));
	synced = total == 0 || fsync(sp->dir_fd) == 0;
	if (!synced)
		pt_warn("spool %s: fsync after deleting segments: %s", sp->dir, strerror(errno));
	/* A spare is used only once its new name is durable (RECYCLING). */
	for (unsigned i = 0; i < n_spares; i++)
		spool_spare_done(sp, &spares[i], spare_ok[i] && synced);
	return total;
}

void spool_spare_done(struct spool *sp, const struct spool_dead *d, bool ok)
{
	if (sp->n_spares_pending > 0)
		sp->n_spares_pending--;
	if (ok && sp->n_spares < SPOOL_SPARES_MAX)
		memcpy(sp->spares[sp->n_spares++], d->spare, SPOOL_SPARE_NAME_LEN + 1);
}

unsigned spool_spares(const struct spool *sp)
{
	return sp->n_spares;
}

uint32_t spool_segment_mask(const struct spool *sp, uint64_t segment)
{
	const struct spool_seg *g = spool_seg_find(sp, segment);

	return g ? g->mask : spool_record_mask(segment, SPOOL_FORMAT_VERSION);
}

int spool_dir_fd(const struct spool *sp)
{
	return sp->dir_fd;
}

const char *spool_dir(const struct spool *sp)
{
	return sp->dir;
}

/* The oldest segment on disk and its live count (spool.h).  With none on disk
 * (only when no segment could be created), the next sequence and 0. */
uint64_t spool_oldest_segment(const struct spool *sp, uint64_t *n_live)
{
	if (sp->n_segs == 0) {
		*n_live = 0;
		return sp->seq;
	}
	*n_live = sp->segs[0].n_live;
	return sp->segs[0].seq;
}
