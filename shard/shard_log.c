/*
 * shard_log.c -- the shard's JSON log: one record per line, KumoMTA's record
 * shape (Reception, Delivery, TransientFailure, Bounce, Expiration, and OOB
 * and Feedback for reports sent to listener domains), written as
 * zstd-compressed segments <log_dir>/<shard>/<YYYYMMDD-HHMMSS.nnnnnnnnn>
 * (the format, rotation and repair are shard_logseg.c's design comment).
 *
 * Records collect in `pending` as JSON text.  Once per loop iteration, when
 * no write is in flight, shard_log_kick takes a batch (at most
 * SHARD_LOGSEG_BATCH_MAX, cut where the segment fills), compresses it with a
 * flush into `tx` and writes that with one ring WRITE at the segment's end.
 * Records logged meanwhile wait for the next batch, so compression happens
 * as records are written, a bounded amount per iteration, and never as a
 * pass over a finished file.  The log is not synced: it is a record of
 * what happened, not the source of truth (the spool is).
 *
 * Blocking calls, once per segment: open (O_EXCL) when a record needs a new
 * segment, fchmod and close when one is finished, as the spool opens its
 * segments.  A segment is finished by the write that carries its frame end:
 * after the record that fills max_file_size, or at the first batch after
 * max_segment_duration (a timer on the wheel; with nothing pending the
 * write is the 3-byte frame end alone).
 *
 * What can be lost.  SIGTERM: nothing; the drain waits for the write in
 * flight and shard_log_close writes what is pending and closes the frame.
 * kill -9 (or a crash): the records not yet handed to the kernel (those
 * logged since the last write began, at most about one loop iteration's
 * worth) and possibly the write in flight; the segment is left open and
 * the next start closes it at its last whole block (shard_logseg_repair).
 * Written bytes are in the page cache, so only a power failure loses more
 * (the log is never synced).  A failed write (a full disk) loses its batch:
 * the segment is cut back to what was written, closed there, and the next
 * segment is tried no sooner than a second later; the loss is logged with
 * a count of records.
 *
 * Log hooks (shard_loghook.c).  Every finished record is also handed to
 * shard_loghook_offer, except records about a hook's own message.  With
 * hooks but no configure_local_logs, struct shard_log exists without a
 * segment directory (`local` false): records are written into `line`, one
 * at a time, for the hooks only.
 *
 * Headers (configure_local_logs / configure_log_hook `headers`).  Inbound
 * records capture them from the message at hand; a delivery record writes
 * the object its unit was given when it was made (shard_log_capture, once
 * per message at acceptance or spool recovery, shared by its units), so no
 * body is read for a record.
 *
 * A record is about the shard that writes it: Reception on the shard that
 * accepted the message, the delivery records on the shard that owns the
 * recipient's site when the attempt ends.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/dir.h"
#include "core/json.h"
#include "core/ptime.h"
#include "shard/shard_int.h"
#include "shard/shard_logseg.h"

#define LOG_HOLD_MS	  1000		      /* after a failed write, before a new segment */
#define LOG_PENDING_LIMIT (64u * 1024 * 1024) /* records kept while no segment can be written */

struct shard_log {
	struct shard *s;
	struct shard_logseg *seg;
	char dir[4096];
	char path[4200];	/* the open segment's file */
	int fd;			/* -1: no segment file open */
	uint64_t file_len;	/* bytes of the segment file written */
	struct pt_buf pending;	/* JSON lines not compressed yet */
	size_t pending_off;	/* bytes of pending already taken */
	struct pt_buf tx;	/* the compressed batch being written */
	size_t tx_off;		/* bytes of tx written */
	size_t tx_records;	/* records in tx, for loss reports */
	bool tx_ends;		/* tx closes the frame: finish the segment after it */
	bool busy;		/* a write is in the ring */
	bool expired;		/* the segment's age timer fired */
	uint64_t hold_until_ms; /* no new segment before this (after a failed write) */
	struct pt_timer age_timer;
	struct pt_buf scratch; /* one record's queue name */
	bool local;	       /* configure_local_logs: records go to segments */
	struct pt_buf line;    /* without local logs: the record being written */
	size_t record_start;   /* where the record being written begins */
};

static size_t shard_log_count_lines(const char *p, size_t n)
{
	size_t count = 0;

	for (const char *end = p + n; p < end && (p = memchr(p, '\n', (size_t)(end - p))); p++)
		count++;
	return count;
}

/* Start-up: close and mark done every segment a previous run left open. */
static int shard_log_repair_dir(struct shard_log *l)
{
	DIR *d = opendir(l->dir);
	struct dirent *de;
	int rc = PT_OK;

	if (d == NULL) {
		pt_error("log directory %s: %s", l->dir, strerror(errno));
		return PT_ERROR;
	}
	while ((de = readdir(d)) != NULL && rc == PT_OK) {
		char path[4400], err[512];
		enum shard_logseg_repair what;
		struct stat st;

		if (!shard_logseg_name_valid(de->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", l->dir, de->d_name);
		if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0222))
			continue; /* finished segments are read-only */
		if (shard_logseg_repair(path, &what, err, sizeof(err)) != PT_OK) {
			pt_error("log segment repair: %s", err);
			rc = PT_ERROR;
		} else if (what == SHARD_LOGSEG_CLOSED) {
			pt_warn(
			    "log segment %s was left open (petreld stopped without closing it): "
			    "closed after its last whole block",
			    path);
		} else if (what == SHARD_LOGSEG_REMOVED) {
			pt_info("log segment %s held no record: removed", path);
		} else if (what == SHARD_LOGSEG_FOREIGN) {
			pt_warn(
			    "log segment %s is not a zstd frame petreld can close: left as it is",
			    path);
		}
	}
	closedir(d);
	return rc;
}

static void shard_log_age(struct pt_timer *t)
{
	pt_container_of(t, struct shard_log, age_timer)->expired = true;
}

static void shard_log_free(struct shard_log *l)
{
	if (l->fd >= 0)
		close(l->fd);
	shard_logseg_free(l->seg);
	pt_buf_free(&l->pending);
	pt_buf_free(&l->tx);
	pt_buf_free(&l->scratch);
	pt_buf_free(&l->line);
	free(l);
}

int shard_log_open(struct shard *s)
{
	const struct policy_config *pc = policy_config(s->policy);
	struct shard_logseg_config cfg = {
	    .max_file_size = pc->log_max_file_size,
	    .max_duration_ms = pc->log_max_segment_duration_ms,
	    .compression_level = pc->log_compression_level,
	};
	struct shard_log *l;
	int rc;

	s->log = NULL;
	if (!pc->log_dir && pc->n_log_hooks == 0)
		return PT_OK;
	if ((l = calloc(1, sizeof(*l))) == NULL || (l->seg = shard_logseg_new(&cfg)) == NULL) {
		pt_error("log: out of memory");
		free(l);
		return PT_ERROR;
	}
	l->s = s;
	l->fd = -1;
	pt_timer_init(&l->age_timer, shard_log_age);
	if (!pc->log_dir) {
		s->log = l; /* records for the log hooks only */
		return PT_OK;
	}
	l->local = true;
	snprintf(l->dir, sizeof(l->dir), "%s/%u", pc->log_dir, s->id);
	if ((rc = pt_mkdir_p(l->dir, 0750)) < 0) {
		pt_error("log directory %s: %s", l->dir, strerror(-rc));
		shard_log_free(l);
		return PT_ERROR;
	}
	if (shard_log_repair_dir(l) != PT_OK) {
		shard_log_free(l);
		return PT_ERROR;
	}
	s->log = l;
	return PT_OK;
}

/* A new segment file, named by the time now.  PT_OK or PT_ERROR (logged). */
static int shard_log_segment_open(struct shard_log *l)
{
	struct timespec ts;
	uint64_t ns;
	char name[SHARD_LOGSEG_NAME_LEN + 1];

	clock_gettime(CLOCK_REALTIME, &ts);
	ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	/* O_EXCL: never append to another segment; a clash moves a nanosecond on. */
	for (int i = 0; i < 16; i++, ns++) {
		shard_logseg_name(ns, name);
		snprintf(l->path, sizeof(l->path), "%s/%s", l->dir, name);
		l->fd = open(l->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
		if (l->fd >= 0 || errno != EEXIST)
			break;
	}
	if (l->fd < 0) {
		pt_error("log segment %s: %m", l->path);
		return PT_ERROR;
	}
	l->file_len = 0;
	l->expired = false;
	if (shard_logseg_begin(l->seg, pt_monotonic_ms()) != PT_OK) {
		pt_error("log segment %s: zstd: cannot start a frame", l->path);
		close(l->fd);
		unlink(l->path);
		l->fd = -1;
		return PT_ERROR;
	}
	if (shard_logseg_deadline_ms(l->seg))
		pt_timer_add(&l->s->wheel, &l->age_timer, shard_logseg_deadline_ms(l->seg));
	return PT_OK;
}

/* The segment's frame is complete on disk: mark it done and close it. */
static void shard_log_segment_done(struct shard_log *l)
{
	int rc = shard_logseg_mark_done_fd(l->fd);

	if (rc < 0)
		pt_warn("log segment %s: cannot mark it done: %s", l->path, strerror(-rc));
	close(l->fd);
	l->fd = -1;
	l->expired = false;
	if (pt_timer_armed(&l->age_timer))
		pt_timer_del(&l->s->wheel, &l->age_timer);
}

/*
 * A write of the segment failed (err: errno): its records are lost.  Cut
 * the file back to where the batch began (a block boundary; a short write
 * may have put part of it there), close the frame and finish the segment;
 * no new one for a second.
 */
static void shard_log_segment_failed(struct shard_log *l, int err)
{
	uint64_t good = l->file_len - l->tx_off;

	pt_error("log segment %s: write failed: %s (%zu records lost)", l->path, strerror(err),
		 l->tx_records);
	shard_logseg_abandon(l->seg);
	if (ftruncate(l->fd, (off_t)good) != 0 ||
	    pwrite(l->fd, shard_logseg_epilogue, sizeof(shard_logseg_epilogue), (off_t)good) !=
		(ssize_t)sizeof(shard_logseg_epilogue))
		pt_error("log segment %s: cannot close it after the failed write (%m): "
			 "petreld closes it at the next start",
			 l->path);
	else
		shard_log_segment_done(l);
	if (l->fd >= 0) {
		close(l->fd);
		l->fd = -1;
		if (pt_timer_armed(&l->age_timer))
			pt_timer_del(&l->s->wheel, &l->age_timer);
	}
	l->tx.len = l->tx_off = 0;
	l->hold_until_ms = pt_monotonic_ms() + LOG_HOLD_MS;
}

/* No segment can be written and too much waits: drop it, counted. */
static void shard_log_drop_pending(struct shard_log *l)
{
	size_t n = l->pending.len - l->pending_off;

	pt_error("log: %zu records lost: no log segment could be written",
		 shard_log_count_lines(l->pending.data + l->pending_off, n));
	l->pending.len = l->pending_off = 0;
}

/*
 * Compress the next batch into tx (the segment must be open).  PT_OK, or
 * PT_ERROR after the segment was given up (logged).
 */
static int shard_log_batch(struct shard_log *l)
{
	const char *p = l->pending.data + l->pending_off;
	size_t avail = l->pending.len - l->pending_off, n;
	bool fills, end;
	int rc;

	n = shard_logseg_take(l->seg, p, avail, &fills);
	/* An aged segment ends with the records logged before the kick. */
	end = fills || (l->expired && n == avail);
	l->tx.len = l->tx_off = 0;
	l->tx_records = shard_log_count_lines(p, n);
	if ((rc = shard_logseg_compress(l->seg, p, n, end, &l->tx)) != PT_OK) {
		shard_log_segment_failed(l, rc == PT_NOMEM ? ENOMEM : EIO);
		return PT_ERROR;
	}
	l->tx_ends = end;
	l->pending_off += n;
	if (l->pending_off == l->pending.len)
		l->pending.len = l->pending_off = 0;
	return PT_OK;
}

static void shard_log_submit(struct shard_log *l)
{
	struct io_uring_sqe *sqe = shard_sqe(l->s);

	io_uring_prep_write(sqe, l->fd, l->tx.data + l->tx_off, (unsigned)(l->tx.len - l->tx_off),
			    l->file_len);
	shard_prep(sqe, &l->s->log_op);
	l->busy = true;
}

void shard_log_kick(struct shard *s)
{
	struct shard_log *l = s->log;
	size_t avail;

	if (l == NULL || !l->local || l->busy)
		return;
	avail = l->pending.len - l->pending_off;
	if (l->fd < 0) {
		if (avail == 0)
			return;
		if (pt_monotonic_ms() < l->hold_until_ms) {
			if (avail > LOG_PENDING_LIMIT)
				shard_log_drop_pending(l);
			return;
		}
		if (shard_log_segment_open(l) != PT_OK) {
			l->hold_until_ms = pt_monotonic_ms() + LOG_HOLD_MS;
			return;
		}
	} else if (avail == 0 && !l->expired) {
		return;
	}
	if (shard_log_batch(l) == PT_OK)
		shard_log_submit(l);
}

void shard_handle_log(struct shard *s, struct io_uring_cqe *cqe)
{
	struct shard_log *l = s->log;

	l->busy = false;
	if (cqe->res <= 0) {
		/* A write of a non-empty batch that wrote nothing is a failure too. */
		shard_log_segment_failed(l, cqe->res < 0 ? -cqe->res : EIO);
		return;
	}
	l->file_len += (uint64_t)cqe->res;
	l->tx_off += (size_t)cqe->res;
	if (l->tx_off < l->tx.len) {
		/* Short write (a full disk, usually): the rest goes before newer records. */
		shard_log_submit(l);
		return;
	}
	l->tx.len = l->tx_off = 0;
	if (l->tx_ends)
		shard_log_segment_done(l);
}

bool shard_log_busy(const struct shard *s)
{
	return s->log != NULL && s->log->busy;
}

bool shard_log_idle(const struct shard *s)
{
	const struct shard_log *l = s->log;

	/* Records held back after a failed write do not keep a drain waiting:
	 * shard_log_close tries them once more. */
	return l == NULL || (!l->busy && (l->pending.len == l->pending_off ||
					  pt_monotonic_ms() < l->hold_until_ms));
}

/* Shutdown: write tx whole with plain writes (the ring is idle). */
static int shard_log_write_sync(struct shard_log *l)
{
	while (l->tx_off < l->tx.len) {
		ssize_t n = pwrite(l->fd, l->tx.data + l->tx_off, l->tx.len - l->tx_off,
				   (off_t)l->file_len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			shard_log_segment_failed(l, n < 0 ? errno : EIO);
			return PT_ERROR;
		}
		l->file_len += (uint64_t)n;
		l->tx_off += (size_t)n;
	}
	l->tx.len = l->tx_off = 0;
	if (l->tx_ends)
		shard_log_segment_done(l);
	return PT_OK;
}

void shard_log_close(struct shard *s)
{
	struct shard_log *l = s->log;

	if (l == NULL)
		return;
	/* The drain waited for the write in flight: the ring has none of ours.
	 * Write what is pending, then close the frame of the open segment; a
	 * failed write gets one more try in a new segment. */
	for (int failures = 0;
	     l->local && failures < 2 && (l->pending.len > l->pending_off || l->fd >= 0);) {
		if (l->fd < 0 && shard_log_segment_open(l) != PT_OK)
			break;
		l->expired = true;
		if (shard_log_batch(l) != PT_OK || shard_log_write_sync(l) != PT_OK)
			failures++;
	}
	if (l->pending.len > l->pending_off)
		shard_log_drop_pending(l);
	if (pt_timer_armed(&l->age_timer))
		pt_timer_del(&s->wheel, &l->age_timer);
	shard_log_free(l);
	s->log = NULL;
}

/*
 * Start a record: j writes to the local log's pending lines, or, without
 * local logs, to a line of its own for the hooks.  False: no record is
 * wanted (neither local logs nor hooks).
 */
static bool shard_log_begin(struct shard *s, struct pt_json *j)
{
	struct shard_log *l = s->log;

	if (l == NULL)
		return false;
	l->line.len = 0;
	l->record_start = l->local ? l->pending.len : 0;
	pt_json_init(j, l->local ? &l->pending : &l->line);
	return true;
}

/*
 * The record begun by shard_log_begin is written: end its line and offer
 * it to the log hooks (shard_loghook.c), unless it is about a hook's own
 * message (reception_protocol "LogRecord"): those are never offered again.
 * sender is the record's (NULL: "").
 */
static void shard_log_end(struct shard *s, const char *sender, bool about_hook_message)
{
	struct shard_log *l = s->log;
	struct pt_buf *out = l->local ? &l->pending : &l->line;

	pt_buf_append(out, "\n", 1);
	if (!about_hook_message)
		shard_loghook_offer(s, sender, out->data + l->record_start,
				    out->len - l->record_start - 1);
}

static void shard_log_response(struct pt_json *j, const char *id)
{
	char content[64];

	snprintf(content, sizeof(content), "OK id=%s", id);
	pt_json_key(j, "response");
	pt_json_obj_begin(j);
	pt_json_key_int(j, "code", 250);
	pt_json_key(j, "enhanced_code");
	pt_json_obj_begin(j);
	pt_json_key_int(j, "class", 2);
	pt_json_key_int(j, "subject", 0);
	pt_json_key_int(j, "detail", 0);
	pt_json_obj_end(j);
	pt_json_key_str(j, "content", content);
	pt_json_key_str(j, "command", NULL);
	pt_json_obj_end(j);
}

static void shard_log_recipients(struct pt_json *j, char *const *rcpts, size_t n)
{
	/* KumoMTA writes a string for one recipient; a list when there are several. */
	if (n == 1) {
		pt_json_key_str(j, "recipient", rcpts[0]);
		return;
	}
	pt_json_key(j, "recipient");
	pt_json_arr_begin(j);
	for (size_t i = 0; i < n; i++)
		pt_json_str(j, rcpts[i]);
	pt_json_arr_end(j);
}

static void shard_log_meta(struct pt_json *j, const struct pt_message *m)
{
	pt_json_key(j, "meta");
	pt_json_obj_begin(j);
	for (size_t i = 0; i < m->n_meta; i++)
		pt_json_key_raw(j, m->meta[i].key, m->meta[i].json, strlen(m->meta[i].json));
	pt_json_obj_end(j);
}

/* "headers": the configured fields of m (pt_message_capture_headers), or
 * {} at the cost of one branch when none are configured. */
static void shard_log_headers(struct shard *s, struct pt_json *j, const struct pt_message *m)
{
	const struct policy_config *pc = policy_config(s->policy);

	pt_json_key(j, "headers");
	if (pc->n_log_headers == 0) {
		pt_json_raw(j, "{}", 2);
		return;
	}
	if (pt_message_capture_headers(m, pc->log_headers, pc->n_log_headers, j) != PT_OK)
		pt_error("message %s: out of memory capturing its headers for the log", m->id);
}

struct shard_log_headers *shard_log_capture(struct shard *s, const struct pt_message *m)
{
	const struct policy_config *pc = policy_config(s->policy);
	struct pt_buf out = PT_BUF_INIT;
	struct shard_log_headers *h = NULL;
	struct pt_json j;

	/* Not s->log: spool recovery makes units before shard_log_open.  Only
	 * configure_local_logs and configure_log_hook add names. */
	if (pc->n_log_headers == 0)
		return NULL;
	pt_json_init(&j, &out);
	if (pt_message_capture_headers(m, pc->log_headers, pc->n_log_headers, &j) == PT_OK &&
	    out.data != NULL && (h = malloc(sizeof(*h) + out.len)) != NULL) {
		atomic_init(&h->refs, 1);
		h->len = out.len;
		memcpy(h->json, out.data, out.len);
	} else {
		pt_error("message %s: out of memory capturing its headers for the log; its "
			 "delivery records carry none",
			 m->id);
	}
	pt_buf_free(&out);
	return h;
}

struct shard_log_headers *shard_log_headers_get(struct shard_log_headers *h)
{
	if (h)
		atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
	return h;
}

/* acq_rel: the shard freeing h sees every other shard's use of it done. */
void shard_log_headers_put(struct shard_log_headers *h)
{
	if (h && atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1)
		free(h);
}

/* The queue name of m for recipient rcpt (its domain; NULL: none) in the log's scratch. */
static const char *shard_log_queue(struct shard *s, const struct pt_message *m, const char *rcpt)
{
	struct pt_buf *queue = &s->log->scratch; /* reused: no allocation per message */
	const char *at = rcpt ? strrchr(rcpt, '@') : NULL;

	queue->len = 0;
	shard_queue_name(m, at ? at + 1 : "", queue);
	return pt_buf_cstr(queue);
}

/*
 * A Reception record, or the Feedback record KumoMTA writes in its place
 * for a feedback report (arf set): the same fields, feedback_report
 * filled, and Petrel's original_id.  rcpts are the envelope recipients
 * as received.
 */
/*
 * The fields every inbound record (Reception, Feedback, OOB) ends with, from
 * "timestamp" (at, wall clock us) to the closing brace and the line end.
 * arf fills feedback_report (else null); tls the TLS fields (else null);
 * sender is the record's (for the hooks).
 */
static void shard_log_inbound_tail(struct shard *s, struct pt_json *j, const struct pt_message *m,
				   const char *sender, uint64_t at, const struct pt_arf *arf,
				   struct tls_conn *tls)
{
	char when[32], created[32];

	pt_json_key_str(j, "timestamp", pt_time_rfc3339(at, when));
	pt_json_key_str(j, "created", pt_time_rfc3339(m->created_us, created));
	pt_json_key_int(j, "num_attempts", 0);
	pt_json_key_str(j, "bounce_classification", "Uncategorized");
	pt_json_key_null(j, "egress_pool");
	pt_json_key_null(j, "egress_source");
	pt_json_key(j, "feedback_report");
	if (arf)
		pt_arf_json(arf, j);
	else
		pt_json_raw(j, "null", 4);
	shard_log_meta(j, m);
	shard_log_headers(s, j, m);
	pt_json_key_null(j, "delivery_protocol");
	pt_json_key_str(j, "reception_protocol", m->reception_protocol);
	pt_json_key_str(j, "nodeid", s->group->cfg.nodeid);
	pt_json_key_str(j, "tls_cipher", tls ? tls_conn_cipher(tls) : NULL);
	pt_json_key_str(j, "tls_protocol_version", tls ? tls_conn_version(tls) : NULL);
	pt_json_obj_end(j);
	shard_log_end(s, sender, false);
}

static void shard_log_received(struct shard *s, const struct pt_message *m, const char *peer_ip,
			       struct tls_conn *tls, char *const *rcpts, size_t n_rcpts,
			       const struct pt_arf *arf)
{
	struct pt_json j;

	if (!shard_log_begin(s, &j))
		return;
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "type", arf ? "Feedback" : "Reception");
	pt_json_key_str(&j, "id", m->id);
	if (arf)
		pt_json_key_str(&j, "original_id", arf->original_id[0] ? arf->original_id : NULL);
	pt_json_key_str(&j, "sender", m->sender);
	shard_log_recipients(&j, rcpts, n_rcpts);
	pt_json_key_str(&j, "queue", shard_log_queue(s, m, n_rcpts ? rcpts[0] : NULL));
	pt_json_key_str(&j, "site", "");
	pt_json_key_int(&j, "size", (int64_t)pt_message_size(m));
	shard_log_response(&j, m->id);
	pt_json_key(&j, "peer_address");
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "name", m->ehlo ? m->ehlo : "");
	pt_json_key_str(&j, "addr", peer_ip);
	pt_json_obj_end(&j);
	shard_log_inbound_tail(s, &j, m, m->sender, pt_wall_us(), arf, tls);
}

void shard_log_reception(struct shard *s, const struct pt_message *m, const struct shard_conn *c)
{
	shard_log_received(s, m, c->peer_ip, c->st.tls_state == CONN_TLS_ON ? c->st.tls : NULL,
			   m->rcpts, m->n_rcpts, NULL);
}

void shard_log_reception_from(struct shard *s, const struct pt_message *m, const char *peer_ip,
			      struct tls_conn *tls)
{
	shard_log_received(s, m, peer_ip, tls, m->rcpts, m->n_rcpts, NULL);
}

/*
 * KumoMTA's response of an OOB record: an "smtp" Diagnostic-Code split at
 * its first space into code and content when the first word is a number,
 * else 550 with the whole text (or "" without such a diagnostic); the
 * enhanced code is the Status field.
 */
static void shard_log_oob_response(struct pt_json *j, const struct pt_dsn_rcpt *r)
{
	const char *content = "";
	long code = 550;

	if (r->diagnostic != NULL && strcasecmp(r->diagnostic_type, "smtp") == 0) {
		const char *space = strchr(r->diagnostic, ' ');
		char *end;
		long n = strtol(r->diagnostic, &end, 10);

		content = r->diagnostic;
		if (space != NULL && end == space && n >= 0 && n <= 65535) {
			code = n;
			content = space + 1;
		}
	}
	pt_json_key(j, "response");
	pt_json_obj_begin(j);
	pt_json_key_int(j, "code", code);
	pt_json_key(j, "enhanced_code");
	pt_json_obj_begin(j);
	pt_json_key_int(j, "class", r->status_class);
	pt_json_key_int(j, "subject", r->status_subject);
	pt_json_key_int(j, "detail", r->status_detail);
	pt_json_obj_end(j);
	pt_json_key_str(j, "content", content);
	pt_json_key_null(j, "command");
	pt_json_obj_end(j);
}

/*
 * One OOB record for a failed recipient of a DSN, as KumoMTA writes it:
 * id is the DSN's own, sender the DSN's first envelope recipient (the
 * bounce address, the original message's envelope sender), recipient the
 * bounced one (Original-Recipient, else Final-Recipient), size 0, the
 * peer named by Reporting-MTA, timestamp the Last-Attempt-Date when
 * given.  original_id (Petrel's) is the id of the message that bounced,
 * when the returned headers carry it.
 */
static void shard_log_oob(struct shard *s, const struct pt_message *m, const struct shard_conn *c,
			  const struct shard_report *rep, const struct pt_dsn_rcpt *r)
{
	struct pt_json j;
	uint64_t at = r->last_attempt_us >= 0 ? (uint64_t)r->last_attempt_us : pt_wall_us();
	const char *sender = rep->n_rcpts ? rep->rcpts[0] : "";

	if (!shard_log_begin(s, &j))
		return;
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "type", "OOB");
	pt_json_key_str(&j, "id", m->id);
	pt_json_key_str(&j, "original_id", rep->dsn.original_id[0] ? rep->dsn.original_id : NULL);
	pt_json_key_str(&j, "sender", sender);
	pt_json_key_str(&j, "recipient",
			r->original_recipient ? r->original_recipient : r->final_recipient);
	pt_json_key_str(&j, "queue", shard_log_queue(s, m, rep->n_rcpts ? rep->rcpts[0] : NULL));
	pt_json_key_str(&j, "site", "");
	pt_json_key_int(&j, "size", 0);
	shard_log_oob_response(&j, r);
	pt_json_key(&j, "peer_address");
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "name", rep->dsn.reporting_mta);
	pt_json_key_str(&j, "addr", c->peer_ip);
	pt_json_obj_end(&j);
	shard_log_inbound_tail(s, &j, m, sender, at, NULL, NULL);
}

void shard_log_report(struct shard *s, const struct pt_message *m, const struct shard_conn *c,
		      const struct shard_report *rep)
{
	if (s->log == NULL)
		return;
	if (rep->is_arf) {
		shard_log_received(s, m, c->peer_ip, c->st.tls_state == CONN_TLS_ON ? c->st.tls : NULL,
				   rep->rcpts, rep->n_rcpts, &rep->arf);
		return;
	}
	/* KumoMTA logs failed recipients only; a delay or a delivery is no bounce. */
	for (size_t i = 0; i < rep->dsn.n_rcpts; i++)
		if (strcmp(rep->dsn.rcpts[i].action, "failed") == 0)
			shard_log_oob(s, m, c, rep, &rep->dsn.rcpts[i]);
}

static void shard_log_reply(struct pt_json *j, const struct smtp_client_reply *r)
{
	pt_json_key(j, "response");
	pt_json_obj_begin(j);
	pt_json_key_int(j, "code", r->code);
	if (r->enh_class >= 0) {
		pt_json_key(j, "enhanced_code");
		pt_json_obj_begin(j);
		pt_json_key_int(j, "class", r->enh_class);
		pt_json_key_int(j, "subject", r->enh_subject);
		pt_json_key_int(j, "detail", r->enh_detail);
		pt_json_obj_end(j);
	} else {
		pt_json_key_null(j, "enhanced_code");
	}
	pt_json_key_str(j, "content", r->content);
	pt_json_key_str(j, "command", r->command);
	pt_json_obj_end(j);
}

/* KumoMTA's source_address: {address, protocol, server}; protocol and
 * server name a proxy, which Petrel does not use.  null without a
 * connection. */
static void shard_log_source_address(struct pt_json *j, const char *address)
{
	if (!address) {
		pt_json_key_null(j, "source_address");
		return;
	}
	pt_json_key(j, "source_address");
	pt_json_obj_begin(j);
	pt_json_key_str(j, "address", address);
	pt_json_key_null(j, "protocol");
	pt_json_key_null(j, "server");
	pt_json_obj_end(j);
}

/*
 * One Delivery, TransientFailure, Bounce or Expiration record for unit u:
 * egress_pool is the queue's pool (null when it has none), egress_source
 * the source chosen for this attempt ("unspecified" without a pool; null
 * when the pool could not give one), source_address our end of the
 * connection.
 * num_attempts counts the attempts made before this one (KumoMTA's
 * meaning): 0 on a first-try delivery.
 */
void shard_log_delivery(struct shard *s, const struct shard_unit *u,
			const struct shard_log_outcome *o)
{
	struct pt_json j;
	char now[32], created[32];

	if (!shard_log_begin(s, &j))
		return;
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "type", o->type);
	pt_json_key_str(&j, "id", u->id);
	pt_json_key_str(&j, "sender", u->sender);
	pt_json_key_str(&j, "recipient", u->recipient);
	pt_json_key_str(&j, "queue", u->queue);
	pt_json_key_str(&j, "site", u->site ? u->site : u->domain);
	pt_json_key_int(&j, "size", (int64_t)u->size);
	shard_log_reply(&j, o->reply);
	if (o->peer_addr) {
		pt_json_key(&j, "peer_address");
		pt_json_obj_begin(&j);
		pt_json_key_str(&j, "name", o->peer_name ? o->peer_name : "");
		pt_json_key_str(&j, "addr", o->peer_addr);
		pt_json_obj_end(&j);
	} else {
		pt_json_key_null(&j, "peer_address");
	}
	pt_json_key_str(&j, "timestamp", pt_time_rfc3339(pt_wall_us(), now));
	pt_json_key_str(&j, "created", pt_time_rfc3339(u->created_us, created));
	pt_json_key_int(&j, "num_attempts", u->num_attempts);
	pt_json_key_str(&j, "bounce_classification", "Uncategorized");
	pt_json_key_str(&j, "egress_pool", u->pool);
	pt_json_key_str(&j, "egress_source",
			u->source ? u->source : u->pool ? NULL : POLICY_SOURCE_UNSPECIFIED);
	shard_log_source_address(&j, o->source_address);
	pt_json_key_null(&j, "feedback_report");
	pt_json_key(&j, "meta");
	pt_json_obj_begin(&j);
	pt_json_obj_end(&j);
	if (u->log_headers)
		pt_json_key_raw(&j, "headers", u->log_headers->json, u->log_headers->len);
	else
		pt_json_key_raw(&j, "headers", "{}", 2);
	pt_json_key_str(&j, "delivery_protocol", o->protocol ? o->protocol : "ESMTP");
	/* A hook's message says so (KumoMTA's log_hooks helper looks for it). */
	pt_json_key_str(&j, "reception_protocol", u->log_record ? SHARD_LOGHOOK_PROTOCOL : NULL);
	pt_json_key_str(&j, "nodeid", s->group->cfg.nodeid);
	pt_json_key_str(&j, "tls_cipher", o->tls_cipher);
	pt_json_key_str(&j, "tls_protocol_version", o->tls_version);
	pt_json_obj_end(&j);
	shard_log_end(s, u->sender, u->log_record);
}
