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
#include "core/ptime.h"
#include "shard/shard_int.h"

#define SHARD_DISK_CHECK_MS	 1000
#define SHARD_COMMIT_LAZY_MS	 50
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
	pt_metrics_set(s->metrics, SHARD_M_DISK_FREE_BYTES, (int64_t)(v.f_bavail * v.f_frsize));
	pt_metrics_set(s->metrics, SHARD_M_DISK_FREE_INODES, (int64_t)v.f_favail);
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

int shard_commit_message(struct shard *s, void *token, struct pt_message *m)
{
	int rc = spool_append_message(s->spool, m, token);

	if (rc == PT_OK)
		s->n_commit_urgent++;
	return rc;
}

static void shard_commit_lazy_fn(struct pt_timer *t)
{
	struct shard *s = pt_container_of(t, struct shard, commit_lazy_timer);

	s->commit_lazy_due = true;
}

/*
 * Records nobody waits for (tombstones, recipient states, compaction
 * copies, log hooks' messages) do not start a batch of their own at once:
 * they ride along with the next batch of received messages, or go after
 * SHARD_COMMIT_LAZY_MS.
 * Otherwise every delivery would cost an extra fdatasync, and a sync of
 * tombstones in flight delays the 250s of the messages behind it.
 */
static bool shard_commit_due(struct shard *s)
{
	if (s->n_commit_urgent > 0 || s->commit_lazy_due || s->state != SHARD_RUNNING)
		return true;
	if (!pt_timer_armed(&s->commit_lazy_timer)) {
		pt_timer_init(&s->commit_lazy_timer, shard_commit_lazy_fn);
		pt_timer_add(&s->wheel, &s->commit_lazy_timer,
			     pt_monotonic_ms() + SHARD_COMMIT_LAZY_MS);
	}
	return false;
}

void shard_commit_kick(struct shard *s)
{
	struct spool_io io;
	struct io_uring_sqe *sqe;

	if (!spool_batch_ready(s->spool) || !shard_commit_due(s) ||
	    spool_batch_start(s->spool, &io) != PT_OK)
		return;
	s->n_commit_urgent = 0;
	s->commit_lazy_due = false;
	pt_timer_del(&s->wheel, &s->commit_lazy_timer);
	sqe = shard_sqe(s);
	io_uring_prep_writev(sqe, io.fd, io.iov, (unsigned)io.n_iov, io.offset);
	sqe->flags |= IOSQE_IO_LINK;
	shard_prep(sqe, &s->spool_write_op);
	sqe = shard_sqe(s);
	io_uring_prep_fsync(sqe, io.fd, IORING_FSYNC_DATASYNC);
	shard_prep(sqe, &s->spool_sync_op);
	s->spool_ops_pending = 2;
	s->spool_batch_start_ns = pt_monotonic_ns();
	s->spool_write_res = 0;
	s->spool_sync_res = 0;
}

/* Tokens: a connection waiting for its 250 (a pointer), a home-side
 * record (a tagged integer with the low bit set, see shard_home.c), a
 * message of an HTTP injection (a pointer with bit 1 set, shard_inject.c),
 * or a log hook's message (a pointer with bit 2 set, shard_loghook.c). */
static void shard_commit_done_one(void *arg, void *token, int status, const struct spool_loc *loc)
{
	if ((uintptr_t)token & 1)
		shard_home_spool_done(arg, (uintptr_t)token, status, loc);
	else if ((uintptr_t)token & 2)
		shard_inject_committed(token, status, loc);
	else if ((uintptr_t)token & 4)
		shard_loghook_committed(arg, token, status, loc);
	else if (token)
		shard_conn_commit_done(token, status, loc);
}

void shard_handle_spool(struct shard *s, struct shard_op *op, struct io_uring_cqe *cqe)
{
	if (op->kind == SHARD_OP_SPOOL_WRITE)
		s->spool_write_res = cqe->res;
	else
		s->spool_sync_res = cqe->res;
	if (--s->spool_ops_pending > 0)
		return;
	if (s->spool_write_res >= 0 && s->spool_sync_res >= 0)
		shard_metrics_spool_synced(s, s->spool_batch_start_ns);
	if (s->spool_write_res < 0 || s->spool_sync_res < 0)
		pt_error(
		    "spool batch failed: write %d, fdatasync %d: answering 451 to its messages",
		    s->spool_write_res, s->spool_sync_res);
	spool_batch_done(s->spool, s->spool_write_res, s->spool_sync_res, shard_commit_done_one,
			 s);
}

