/*
 * spool.h -- the per-shard append-only segment store (see spool_segment.c
 * for the on-disk format and why a crash at any point is safe).
 *
 * One `struct spool` per shard owns the directory <path>/<shard>/.  Writing
 * is group commit, driven by the shard's ring without the spool doing I/O
 * itself on the hot path:
 *
 *   spool_append_message(sp, msg, token)  encode into the pending batch
 *   spool_batch_start(sp, &io)            when no batch is in flight and one
 *                                         is pending: hands out the segment
 *                                         fd, file offset and iovecs
 *   (shard submits linked WRITEV at io.offset + FSYNC(DATASYNC))
 *   spool_batch_done(sp, wres, sres, cb)  calls cb(token, status) for every
 *                                         record of the batch: PT_OK only if
 *                                         the whole write and the sync
 *                                         succeeded
 *
 * So one fdatasync covers everything that arrived while the previous one was
 * in flight.  A failed write or sync is final for the segment (fsyncgate):
 * every record of the batch fails, the segment is sealed and a new one is
 * opened.  Segments rotate past segment_max bytes.
 *
 * Opening, recovering and rotating segments use ordinary blocking calls;
 * they happen at start-up and once per segment_max bytes (64 MiB by
 * default), not per message.
 */
#ifndef PT_SPOOL_H
#define PT_SPOOL_H

#include "core/message.h"
#include <sys/uio.h>

#define SPOOL_SEGMENT_MAX_DEFAULT (64ull << 20)
#define SPOOL_BATCH_IOV_MAX 1024

struct spool;

struct spool_config {
	const char *path;     /* spool root; the shard's dir is <path>/<shard> (created) */
	unsigned shard;
	uint64_t segment_max; /* 0 -> SPOOL_SEGMENT_MAX_DEFAULT */
};

/* Per-recipient delivery state, kept by RCPT_STATE records so a restart
 * brings every unit back with its schedule. */
struct spool_rcpt_state {
	uint32_t rcpt;	       /* index into the message's recipients */
	bool done;	       /* delivered, bounced or expired: never again */
	uint32_t num_attempts; /* attempts made so far */
	uint64_t due_us;       /* next attempt, wall clock microseconds (0: now) */
};

/* Where a MESSAGE record landed. */
struct spool_loc {
	uint64_t segment;
	uint64_t offset;
	uint32_t length; /* header + payload */
};

/* A live (not tombstoned) message found by recovery or a scan. */
struct spool_entry {
	char id[PT_ID_LEN + 1];
	uint64_t segment;    /* segment sequence number */
	uint64_t offset;     /* record offset in the segment file */
	uint32_t length;     /* record length on disk */
	uint64_t created_us;
	uint32_t n_rcpts;
	uint64_t size;	     /* message size (bytes of body) */
	/* The newest state of each recipient that has one (RCPT_STATE records
	 * written after the newest copy of the message), in recipient order;
	 * recipients without one are pending with no attempts.  Valid during
	 * the callback. */
	const struct spool_rcpt_state *states;
	size_t n_states;
};

typedef void (*spool_entry_fn)(void *arg, const struct spool_entry *e);

/*
 * Open the shard's spool: create the directory if needed, scan every segment
 * in order, verify every record's CRC, truncate a torn tail of the newest
 * segment (logged with the offset), call fn for every live message, then open
 * a fresh segment for appends.  A corrupt record in the middle of a segment is
 * reported and the rest of that segment skipped (not truncated).
 * Returns PT_OK and *out, or PT_ERROR with err filled (path and reason).
 */
int spool_open(struct spool **out, const struct spool_config *cfg, spool_entry_fn fn, void *arg,
	       char *err, size_t err_len);
/* Close files and free.  Pending (unstarted) records are dropped: callers drain first. */
void spool_close(struct spool *sp);

/* Queue a message record (the message is encoded by reference: m and its
 * buffers must stay unchanged until the token's callback).  PT_OK, PT_NOMEM;
 * PT_ERROR when m->id is not a valid id or the record would pass 1 GiB. */
int spool_append_message(struct spool *sp, const struct pt_message *m, void *token);
/* Queue a tombstone for id (copied).  PT_OK, PT_NOMEM, PT_ERROR (invalid id). */
int spool_append_tombstone(struct spool *sp, const char *id, void *token);
/* Queue a RCPT_STATE record for recipient st->rcpt of message id (copied).
 * PT_OK, PT_NOMEM, PT_ERROR (invalid id). */
int spool_append_rcpt_state(struct spool *sp, const char *id, const struct spool_rcpt_state *st,
			    void *token);

struct spool_io {
	int fd;
	uint64_t offset;
	struct iovec *iov; /* owned by the spool, valid until spool_batch_done */
	int n_iov;
	size_t len;	   /* total bytes */
};

/* True when records are pending and no batch is in flight. */
bool spool_batch_ready(const struct spool *sp);
/* True while a batch is in flight. */
bool spool_batch_busy(const struct spool *sp);
/* Take the pending records as the in-flight batch.  PT_OK or PT_AGAIN (nothing to do / busy). */
int spool_batch_start(struct spool *sp, struct spool_io *io);
/* Complete the in-flight batch: write_res is the WRITEV result (bytes or
 * -errno), sync_res the FSYNC result (0 or -errno, -ECANCELED when the link
 * was broken).  cb is called once per record in order with PT_OK or
 * PT_ERROR; loc is where a MESSAGE record now lies (NULL for other records
 * and on failure). */
typedef void (*spool_done_fn)(void *arg, void *token, int status, const struct spool_loc *loc);
void spool_batch_done(struct spool *sp, int write_res, int sync_res, spool_done_fn cb, void *arg);

/* Convenience for tools and tests: run a batch synchronously with
 * pwritev + fdatasync.  Returns PT_OK or PT_ERROR. */
int spool_flush_sync(struct spool *sp, spool_done_fn cb, void *arg);

/* Counters for logs and metrics. */
uint64_t spool_bytes(const struct spool *sp);
uint64_t spool_segments(const struct spool *sp);
/* Sequence number of the segment appends go to. */
uint64_t spool_current_segment(const struct spool *sp);

/* ---- Runtime: reading back, liveness, deleting dead segments ---- */

/*
 * A read-only fd for segment `segment`, for reading records back through the
 * ring (a body when its unit becomes ready; compaction).  Opened on first use
 * (a blocking open, once per segment) and kept until the segment is deleted;
 * the spool owns it.  -1 when the segment does not exist.
 */
int spool_read_fd(struct spool *sp, uint64_t segment);
/*
 * Check one whole record as read from disk (len bytes = the location's
 * length): magic, type MESSAGE, length, CRC, structure, and that its id is
 * expect_id (when not NULL); then decode it into m (initialised by the
 * caller; envelope, meta and the body into m->data with header_end set).
 * PT_OK, PT_CORRUPT (reason in *why, static), PT_NOMEM.
 */
int spool_decode_record(const void *rec, size_t len, uint32_t mask, const char *expect_id,
			struct pt_message *m, const char **why);
/* The CRC mask of segment `segment`'s records (spool_decode_record's mask):
 * tied to the segment's sequence since format version 2, 0 in version 1. */
uint32_t spool_segment_mask(const struct spool *sp, uint64_t segment);
/*
 * The live copy of a message in `segment` is gone: its tombstone is durable,
 * or a newer copy of it (compaction) is.  Every live message counts once in
 * the segment of its newest copy: recovered ones from spool_open, appended
 * ones from the batch that made them durable (counted before that batch's
 * callbacks run).  Panics when the segment holds no live message: the
 * caller's bookkeeping is broken, and going on could delete live mail.
 */
void spool_unref(struct spool *sp, uint64_t segment);
/*
 * Delete dead segments: from the oldest, while a segment is not the current
 * one and holds no live message (so every tombstone in it names a message
 * whose copies are in it or in segments already deleted), then fsync the
 * directory.  When every segment is dead, no batch is pending or in flight
 * and the current one holds at least rotate_min bytes, a new current
 * segment is started first so the old one can go.  A segment in which
 * recovery found a bad record is renamed to "<name>.bad" rather than
 * deleted (kept for the operator; logged).  Read fds of removed segments
 * are closed.  Blocking unlink/fsync (tools and tests; a shard uses
 * spool_collect_detach).  Returns the number of segments removed.
 */
unsigned spool_collect(struct spool *sp, uint64_t rotate_min);

/* "%016x.seg": the length of a segment file name; "%016x.free" a spare's. */
#define SPOOL_SEGMENT_NAME_LEN 20u
#define SPOOL_SPARE_NAME_LEN   21u

/* A dead segment taken out of the spool's books, for the caller to delete
 * or to keep as a spare. */
struct spool_dead {
	/* In the spool directory (spool_dir_fd); "" for a bad segment, which
	 * was renamed already: nothing to do. */
	char name[SPOOL_SEGMENT_NAME_LEN + 1];
	/* Not "": rename name to this instead of unlinking it, and tell the
	 * spool how it went with spool_spare_done (its blocks are reused for
	 * a later segment). */
	char spare[SPOOL_SPARE_NAME_LEN + 1];
	int read_fd; /* the spool's read fd on it, or -1: close it */
};

/*
 * What spool_collect does, without the blocking part: up to max dead
 * segments leave the spool's books (bad ones are renamed here, as in
 * spool_collect) and are described in out[].  The caller must, in this
 * order, unlink each name relative to spool_dir_fd() (or rename it to its
 * `spare` name, then call spool_spare_done) and close its read_fd, then
 * fsync spool_dir_fd() once; freeing a large file's blocks can take tens
 * of milliseconds, so a shard does it through its ring.  Returns the
 * number filled in.
 */
unsigned spool_collect_detach(struct spool *sp, uint64_t rotate_min, struct spool_dead *out,
			      unsigned max);
/* The rename of d->name to d->spare (spool_collect_detach) ended: ok when
 * it succeeded, and the spare may then make a later segment. */
void spool_spare_done(struct spool *sp, const struct spool_dead *d, bool ok);
/* Spare files kept for reuse (spool_collect's renames that completed). */
unsigned spool_spares(const struct spool *sp);
/* The spool directory's fd and path (valid until spool_close). */
int spool_dir_fd(const struct spool *sp);
const char *spool_dir(const struct spool *sp);
/* The oldest segment still on disk and its live message count (for
 * compaction: when it is old and nearly empty, move its messages forward). */
uint64_t spool_oldest_segment(const struct spool *sp, uint64_t *n_live);

/* ---- Offline reading (petrel-spool, tests, later: body read-back) ---- */

/* Scan <path>/<shard> read-only (no truncation): fn for each live message.
 * n_bad != NULL gets a count of bad records.  PT_OK or PT_ERROR. */
int spool_scan(const char *path, unsigned shard, spool_entry_fn fn, void *arg,
	       uint64_t *n_bad, char *err, size_t err_len);
/* Read one message (envelope, meta, body into m->data) by entry.
 * PT_OK, PT_CORRUPT, PT_ERROR. */
int spool_read_message(const char *path, unsigned shard, const struct spool_entry *e,
		       struct pt_message *m);

/* One segment file as spool_verify found it. */
struct spool_segment_report {
	const char *path;    /* <path>/<shard>/<seq>.seg, valid during the call */
	uint64_t segment;    /* sequence number */
	uint64_t size;	     /* file size */
	uint64_t n_records;  /* good records, the segment header included */
	uint64_t n_bad;	     /* bad records: a bad one ends the segment's scan, so 0 or 1 */
	uint64_t bad_offset; /* where the bad record starts, when n_bad != 0 */
	const char *reason;  /* why it is bad ("CRC mismatch", ...), or NULL */
};

typedef void (*spool_segment_fn)(void *arg, const struct spool_segment_report *r);

/* Scan <path>/<shard> read-only like spool_scan, calling fn once per segment
 * file in sequence order.  PT_OK (bad records are reported, not errors) or
 * PT_ERROR with err filled. */
int spool_verify(const char *path, unsigned shard, spool_segment_fn fn, void *arg, char *err,
		 size_t err_len);

#endif
