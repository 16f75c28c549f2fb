/*
 * shard_commit.c -- group commit of accepted messages, and the reception log.
 *
 * Group commit.  A message accepted by the policy is queued in the spool's
 * pending batch (spool_append_message) and its connection waits.  Once per
 * loop iteration, if no batch is in flight, shard_commit_kick() takes the
 * whole pending batch and submits one WRITEV at the segment's offset linked
 * (IOSQE_IO_LINK) to one FSYNC(DATASYNC).  Everything that arrives while
 * that sync runs waits for the next batch: one fdatasync covers every
 * message that arrived during the previous one, so the sync rate, not the
 * message rate, bounds the disk cost.  Only when the sync's completion
 * reports success does any of the batch's clients get its 250; a failed
 * write or sync answers 451 to all of them (spool_batch_done seals the
 * segment).
 *
 * Free-space floor (DESIGN.md, Faults).  Once a second the shard checks
 * the spool's file system with statvfs (a metadata read that does not wait
 * for I/O on a local file system); under 10% free blocks or inodes, or less
 * room than one maximum-size message, new transactions get 452 4.3.1 at
 * MAIL FROM until space returns.  Transactions already past MAIL go on: the
 * floor leaves room for them.
 *
 * Reception log.  One JSON line per accepted message, KumoMTA's record
 * shape, appended to <log_dir>/<shard>/<YYYYMMDD-HHMMSS>.log.  Lines collect
 * in log_pending and go out in one WRITE per loop iteration (double
 * buffered like connection output).  The log is not synced: it is a record
 * of what happened, not the source of truth (the spool is).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "core/dir.h"
#include "core/json.h"
#include "core/ptime.h"
#include "shard/shard_int.h"

#define SHARD_DISK_CHECK_MS	 1000
#define SHARD_DISK_FLOOR_PERCENT 10

static void shard_disk_check(struct pt_timer *t)
{
	struct shard *s = pt_container_of(t, struct shard, disk_timer);
	const char *path = policy_config(s->policy)->spool_path;
	struct statvfs v;
	bool full;

	pt_timer_add(&s->wheel, t, pt_monotonic_ms() + SHARD_DISK_CHECK_MS);
	if (statvfs(path, &v) != 0) {
		pt_warn("statvfs %s: %m", path);
		return;
	}
	full = (uint64_t)v.f_bavail * v.f_frsize < s->spool_floor_bytes ||
	       (uint64_t)v.f_bavail * 100 < (uint64_t)v.f_blocks * SHARD_DISK_FLOOR_PERCENT ||
	       (v.f_files > 0 &&
		(uint64_t)v.f_favail * 100 < (uint64_t)v.f_files * SHARD_DISK_FLOOR_PERCENT);
	if (full != s->spool_full)
		pt_log(full ? PT_LOG_ERROR : PT_LOG_INFO,
		       "spool %s: %s (%llu MiB free of %llu MiB, %llu inodes "
		       "free): %s",
		       path, full ? "under the free-space floor" : "space is back",
		       (unsigned long long)(v.f_bavail * v.f_frsize >> 20),
		       (unsigned long long)(v.f_blocks * v.f_frsize >> 20),
		       (unsigned long long)v.f_favail,
		       full ? "new transactions get 452 4.3.1" : "accepting again");
	s->spool_full = full;
}

void shard_disk_watch_start(struct shard *s)
{
	pt_timer_init(&s->disk_timer, shard_disk_check);
	shard_disk_check(&s->disk_timer);
}

int shard_commit_message(struct shard *s, struct shard_conn *c, struct pt_message *m)
{
	return spool_append_message(s->spool, m, c);
}

void shard_commit_kick(struct shard *s)
{
	struct spool_io io;
	struct io_uring_sqe *sqe;

	if (!spool_batch_ready(s->spool) || spool_batch_start(s->spool, &io) != PT_OK)
		return;
	sqe = shard_sqe(s);
	io_uring_prep_writev(sqe, io.fd, io.iov, (unsigned)io.n_iov, io.offset);
	sqe->flags |= IOSQE_IO_LINK;
	shard_prep(sqe, &s->spool_write_op);
	sqe = shard_sqe(s);
	io_uring_prep_fsync(sqe, io.fd, IORING_FSYNC_DATASYNC);
	shard_prep(sqe, &s->spool_sync_op);
	s->spool_ops_pending = 2;
	s->spool_write_res = 0;
	s->spool_sync_res = 0;
}

static void shard_commit_done_one(void *arg, void *token, int status)
{
	(void)arg;
	shard_conn_commit_done(token, status);
}

void shard_handle_spool(struct shard *s, struct shard_op *op, struct io_uring_cqe *cqe)
{
	if (op->kind == SHARD_OP_SPOOL_WRITE)
		s->spool_write_res = cqe->res;
	else
		s->spool_sync_res = cqe->res;
	if (--s->spool_ops_pending > 0)
		return;
	if (s->spool_write_res < 0 || s->spool_sync_res < 0)
		pt_error(
		    "spool batch failed: write %d, fdatasync %d: answering 451 to its messages",
		    s->spool_write_res, s->spool_sync_res);
	spool_batch_done(s->spool, s->spool_write_res, s->spool_sync_res, shard_commit_done_one,
			 NULL);
}

int shard_log_open(struct shard *s)
{
	const struct policy_config *pc = policy_config(s->policy);
	char dir[4096], path[4200];
	time_t now = time(NULL);
	struct tm tm;
	int rc;

	s->log_fd = -1;
	if (!pc->log_dir)
		return PT_OK;
	snprintf(dir, sizeof(dir), "%s/%u", pc->log_dir, s->id);
	if ((rc = pt_mkdir_p(dir, 0750)) < 0) {
		pt_error("log directory %s: %s", dir, strerror(-rc));
		return PT_ERROR;
	}
	gmtime_r(&now, &tm);
	snprintf(path, sizeof(path), "%s/%04d%02d%02d-%02d%02d%02d.log", dir, tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	/* O_APPEND: a restart within the same second continues the same file. */
	s->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (s->log_fd < 0) {
		pt_error("log file %s: %m", path);
		return PT_ERROR;
	}
	return PT_OK;
}

/* "campaign:tenant@domain", from meta and the first recipient's domain. */
static void shard_queue_name(const struct pt_message *m, struct pt_buf *b)
{
	const char *q = pt_message_get_meta(m, "queue");
	const char *campaign = pt_message_get_meta(m, "campaign");
	const char *tenant = pt_message_get_meta(m, "tenant");
	const char *at = m->n_rcpts ? strrchr(m->rcpts[0], '@') : NULL;

	/* Meta values are JSON text; only plain strings name a queue. */
	if (q && q[0] == '"') {
		pt_buf_append(b, q + 1, strlen(q) - 2);
		return;
	}
	if (campaign && campaign[0] == '"')
		pt_buf_printf(b, "%.*s:", (int)strlen(campaign) - 2, campaign + 1);
	if (tenant && tenant[0] == '"')
		pt_buf_printf(b, "%.*s@", (int)strlen(tenant) - 2, tenant + 1);
	pt_buf_append_str(b, at ? at + 1 : "");
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

static void shard_log_recipients(struct pt_json *j, const struct pt_message *m)
{
	/* KumoMTA writes a string for one recipient; a list when there are several. */
	if (m->n_rcpts == 1) {
		pt_json_key_str(j, "recipient", m->rcpts[0]);
		return;
	}
	pt_json_key(j, "recipient");
	pt_json_arr_begin(j);
	for (size_t i = 0; i < m->n_rcpts; i++)
		pt_json_str(j, m->rcpts[i]);
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

void shard_log_reception(struct shard *s, const struct pt_message *m, const struct shard_conn *c)
{
	struct pt_buf *queue = &s->log_scratch; /* reused: no allocation per message */
	struct pt_json j;
	char now[32], created[32];

	if (s->log_fd < 0)
		return;
	queue->len = 0;
	shard_queue_name(m, queue);
	pt_json_init(&j, &s->log_pending);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "type", "Reception");
	pt_json_key_str(&j, "id", m->id);
	pt_json_key_str(&j, "sender", m->sender);
	shard_log_recipients(&j, m);
	pt_json_key_str(&j, "queue", pt_buf_cstr(queue));
	pt_json_key_str(&j, "site", "");
	pt_json_key_int(&j, "size", (int64_t)pt_message_size(m));
	shard_log_response(&j, m->id);
	pt_json_key(&j, "peer_address");
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "name", m->ehlo ? m->ehlo : "");
	pt_json_key_str(&j, "addr", c->peer_ip);
	pt_json_obj_end(&j);
	pt_json_key_str(&j, "timestamp", pt_time_rfc3339(pt_wall_us(), now));
	pt_json_key_str(&j, "created", pt_time_rfc3339(m->created_us, created));
	pt_json_key_int(&j, "num_attempts", 0);
	pt_json_key_str(&j, "bounce_classification", "Uncategorized");
	pt_json_key_null(&j, "egress_pool");
	pt_json_key_null(&j, "egress_source");
	pt_json_key_null(&j, "feedback_report");
	shard_log_meta(&j, m);
	pt_json_key(&j, "headers");
	pt_json_obj_begin(&j);
	pt_json_obj_end(&j);
	pt_json_key_null(&j, "delivery_protocol");
	pt_json_key_str(&j, "reception_protocol", m->reception_protocol);
	pt_json_key_str(&j, "nodeid", s->group->cfg.nodeid);
	pt_json_key_str(&j, "tls_cipher",
			c->tls_state == CONN_TLS_ON ? tls_conn_cipher(c->tls) : NULL);
	pt_json_key_str(&j, "tls_protocol_version",
			c->tls_state == CONN_TLS_ON ? tls_conn_version(c->tls) : NULL);
	pt_json_obj_end(&j);
	pt_buf_append(&s->log_pending, "\n", 1);
}

static void shard_log_submit(struct shard *s)
{
	struct io_uring_sqe *sqe = shard_sqe(s);

	/* The file is O_APPEND: the offset is ignored and each write lands at the end. */
	io_uring_prep_write(sqe, s->log_fd, s->log_tx.data, (unsigned)s->log_tx.len, 0);
	shard_prep(sqe, &s->log_op);
	s->log_busy = true;
}

void shard_log_kick(struct shard *s)
{
	struct pt_buf t;

	if (s->log_busy || s->log_pending.len == 0 || s->log_fd < 0)
		return;
	t = s->log_tx;
	s->log_tx = s->log_pending;
	s->log_pending = t;
	s->log_pending.len = 0;
	shard_log_submit(s);
}

void shard_handle_log(struct shard *s, struct io_uring_cqe *cqe)
{
	s->log_busy = false;
	if (cqe->res > 0 && (size_t)cqe->res < s->log_tx.len) {
		/* Short write (a full disk, usually): the rest goes before newer lines. */
		pt_buf_consume(&s->log_tx, (size_t)cqe->res);
		shard_log_submit(s);
		return;
	}
	if (cqe->res < 0)
		pt_error("log write: %s (%zu bytes of records lost)", strerror(-cqe->res),
			 s->log_tx.len);
	s->log_tx.len = 0;
}

void shard_log_close(struct shard *s)
{
	/* Shutdown: the ring is idle; a plain write is fine here. */
	if (s->log_fd >= 0 && s->log_pending.len > 0 &&
	    write(s->log_fd, s->log_pending.data, s->log_pending.len) < 0)
		pt_error("log write at shutdown: %m");
	if (s->log_fd >= 0)
		close(s->log_fd);
	s->log_fd = -1;
	pt_buf_free(&s->log_pending);
	pt_buf_free(&s->log_tx);
	pt_buf_free(&s->log_scratch);
}
