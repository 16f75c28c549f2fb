/*
 * spool_fault_test.c -- failures of the write or the sync, SQLite *fault
 * style: the test plays the shard, runs every batch by hand (pwritev +
 * fdatasync), and for every batch position N and every kind of fault (the
 * Nth write fails with -EIO, the Nth write is short, the Nth fdatasync fails
 * with -EIO) checks that every record of the failed batch gets PT_ERROR and
 * no other record does, that the failed segment is cut back and sealed and
 * later batches go to a new one, and that after a reopen every acknowledged
 * record is there (none lost) and no failed one is (none resurrected).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "spool/spool.h"
#include "tests/unit/test_util.h"

static char tmpdir[64];
static struct pt_idgen idgen;

static void setup(void)
{
	test_tmpdir_make(tmpdir, sizeof(tmpdir), "spool_fault");
	pt_idgen_init(&idgen, 3);
}

static void teardown(void)
{
	test_tmpdir_remove(tmpdir);
}

TestSuite(spool_fault, .init = setup, .fini = teardown, .timeout = 120);

enum fault { FAULT_WRITE, FAULT_SHORT, FAULT_SYNC };

#define N_BATCHES 6
#define PER_BATCH 3
#define N_MSGS	  (N_BATCHES * PER_BATCH)

/* One record the test queued: what it is and what the spool said. */
struct rec {
	int status; /* 1: not called yet */
	int calls;
	bool tombstone;
	size_t msg; /* the message it is, or the one it tombstones */
};

struct world {
	struct pt_message m[N_MSGS];
	struct rec recs[N_MSGS + N_BATCHES];
	size_t n_recs;
	unsigned n_writes, n_syncs;
};

static void done(void *arg, void *token, int status, const struct spool_loc *loc)
{
	(void)loc;
	struct rec *r = token;

	(void)arg;
	r->status = status;
	r->calls++;
}

static void make_message(struct pt_message *m, size_t i)
{
	char body[160];
	int n;

	pt_message_init(m);
	pt_id_next(&idgen, m->id);
	m->created_us = 1764064245000000ull + i;
	pt_message_set_sender(m, "s@example.com", 13);
	pt_message_add_rcpt(m, "a@example.org", 13);
	pt_message_add_rcpt(m, "b@example.org", 13);
	pt_message_set_meta(m, "n", "42");
	n = snprintf(body, sizeof(body), "Subject: %zu\r\n\r\nbody of message %zu\r\n", i, i);
	pt_buf_append(&m->data, body, (size_t)n);
	pt_message_scan_headers(m);
	pt_message_prepend_header(m, "Received", "from fault test");
}

static struct rec *new_rec(struct world *w, bool tombstone, size_t msg)
{
	struct rec *r = &w->recs[w->n_recs++];

	r->status = 1;
	r->calls = 0;
	r->tombstone = tombstone;
	r->msg = msg;
	return r;
}

/* Queue batch b's records: PER_BATCH messages, and in batch 2 a tombstone for
 * message 0 and in batch 4 one for message 4. */
static void queue_batch(struct world *w, struct spool *sp, size_t b)
{
	for (size_t j = 0; j < PER_BATCH; j++) {
		size_t i = b * PER_BATCH + j;

		cr_assert_eq(spool_append_message(sp, &w->m[i], new_rec(w, false, i)), PT_OK);
	}
	if (b == 2 || b == 4) {
		size_t victim = b == 2 ? 0 : 4;

		cr_assert_eq(spool_append_tombstone(sp, w->m[victim].id, new_rec(w, true, victim)),
			     PT_OK);
	}
}

/* pwritev the first `limit` bytes of io (a short write when limit < io->len). */
static ssize_t write_limited(const struct spool_io *io, size_t limit)
{
	struct iovec iov[SPOOL_BATCH_IOV_MAX];
	int n = 0;

	for (int i = 0; i < io->n_iov && limit > 0; i++) {
		iov[n] = io->iov[i];
		if (iov[n].iov_len > limit)
			iov[n].iov_len = limit;
		limit -= iov[n].iov_len;
		n++;
	}
	return pwritev(io->fd, iov, n, (off_t)io->offset);
}

/*
 * Play the shard's ring for one batch: WRITEV then (linked) FSYNC, with the
 * fault injected when fire is set.  A failed or short write breaks the link,
 * so the sync reports -ECANCELED, as io_uring does.  Returns the io used.
 */
static struct spool_io run_batch(struct world *w, struct spool *sp, enum fault kind, bool fire)
{
	struct spool_io io;
	ssize_t wres;
	int sres;

	cr_assert(spool_batch_ready(sp));
	cr_assert_eq(spool_batch_start(sp, &io), PT_OK);
	cr_assert(spool_batch_busy(sp));
	w->n_writes++;
	if (fire && kind == FAULT_WRITE)
		wres = -EIO;
	else if (fire && kind == FAULT_SHORT)
		wres = write_limited(&io, io.len / 2);
	else
		wres = write_limited(&io, io.len);
	if (wres < 0 && !(fire && kind == FAULT_WRITE))
		wres = -errno;
	sres = -ECANCELED;
	if (wres == (ssize_t)io.len) {
		w->n_syncs++;
		sres = fire && kind == FAULT_SYNC ? -EIO : (fdatasync(io.fd) == 0 ? 0 : -errno);
	}
	spool_batch_done(sp, (int)wres, sres, done, NULL);
	cr_assert(!spool_batch_busy(sp));
	return io;
}

struct ids {
	char id[N_MSGS][PT_ID_LEN + 1];
	size_t n;
};

static void collect(void *arg, const struct spool_entry *e)
{
	struct ids *c = arg;

	cr_assert_lt(c->n, N_MSGS);
	strcpy(c->id[c->n++], e->id);
}

static off_t segment_size(const char *path, uint64_t seq)
{
	char file[256];
	struct stat st;

	snprintf(file, sizeof(file), "%s/0/%016llx.seg", path, (unsigned long long)seq);
	return stat(file, &st) == 0 ? st.st_size : -1;
}

/* One scenario: N_BATCHES batches, the one at index `at` faulted. */
static void scenario(enum fault kind, size_t at)
{
	struct spool_config cfg = {.path = tmpdir, .shard = 0};
	struct world *w = calloc(1, sizeof(*w));
	struct spool *sp = NULL;
	struct ids found = {.n = 0};
	char err[256], dir[128];
	bool ok[N_MSGS] = {false}, dead[N_MSGS] = {false};
	size_t n_want = 0;

	snprintf(dir, sizeof(dir), "%s/s%d_%zu", tmpdir, (int)kind, at);
	cfg.path = dir;
	for (size_t i = 0; i < N_MSGS; i++)
		make_message(&w->m[i], i);
	cr_assert_eq(spool_open(&sp, &cfg, collect, &found, err, sizeof(err)), PT_OK, "%s", err);
	for (size_t b = 0; b < N_BATCHES; b++) {
		size_t first = w->n_recs;
		uint64_t seg = spool_current_segment(sp);
		struct spool_io io;

		queue_batch(w, sp, b);
		io = run_batch(w, sp, kind, b == at);
		for (size_t k = first; k < w->n_recs; k++) {
			cr_assert_eq(w->recs[k].calls, 1);
			cr_assert_eq(w->recs[k].status, b == at ? PT_ERROR : PT_OK,
				     "fault %d at batch %zu: record %zu of batch %zu", (int)kind,
				     at, k, b);
		}
		if (b == at) {
			/* Sealed and cut back; the next batch starts a new segment. */
			cr_assert_eq(spool_current_segment(sp), seg + 1);
			cr_assert_eq(segment_size(dir, seg), (off_t)io.offset);
		} else {
			cr_assert_eq(spool_current_segment(sp), seg);
			cr_assert_eq(segment_size(dir, seg), (off_t)(io.offset + io.len));
		}
	}
	cr_assert_eq(w->n_writes, N_BATCHES);
	cr_assert_eq(w->n_syncs, kind == FAULT_SYNC ? N_BATCHES : N_BATCHES - 1);
	spool_close(sp);

	for (size_t k = 0; k < w->n_recs; k++) {
		const struct rec *r = &w->recs[k];

		if (r->status == PT_OK && r->tombstone)
			dead[r->msg] = true;
		else if (r->status == PT_OK)
			ok[r->msg] = true;
	}
	sp = NULL;
	found.n = 0;
	cr_assert_eq(spool_open(&sp, &cfg, collect, &found, err, sizeof(err)), PT_OK, "%s", err);
	for (size_t i = 0; i < N_MSGS; i++) {
		if (!ok[i] || dead[i])
			continue;
		cr_assert_lt(n_want, found.n, "acknowledged message %zu lost", i);
		cr_assert_str_eq(found.id[n_want], w->m[i].id, "message %zu", i);
		n_want++;
	}
	cr_assert_eq(found.n, n_want, "fault %d at %zu: a failed record came back", (int)kind, at);
	spool_close(sp);
	for (size_t i = 0; i < N_MSGS; i++)
		pt_message_clear(&w->m[i]);
	free(w);
}

Test(spool_fault, nth_write_fails)
{
	for (size_t at = 0; at < N_BATCHES; at++)
		scenario(FAULT_WRITE, at);
}

Test(spool_fault, nth_write_is_short)
{
	for (size_t at = 0; at < N_BATCHES; at++)
		scenario(FAULT_SHORT, at);
}

Test(spool_fault, nth_sync_fails)
{
	for (size_t at = 0; at < N_BATCHES; at++)
		scenario(FAULT_SYNC, at);
}

/* The batch in flight fails; what was appended meanwhile is not touched and
 * goes, alone, to the new segment. */
Test(spool_fault, pending_records_survive_a_failed_batch)
{
	struct spool_config cfg = {.path = tmpdir, .shard = 0};
	struct world *w = calloc(1, sizeof(*w));
	struct spool *sp = NULL;
	struct ids found = {.n = 0};
	struct spool_io io;
	struct rec *a, *b;
	char err[256];

	make_message(&w->m[0], 0);
	make_message(&w->m[1], 1);
	cr_assert_eq(spool_open(&sp, &cfg, collect, &found, err, sizeof(err)), PT_OK, "%s", err);
	a = new_rec(w, false, 0);
	b = new_rec(w, false, 1);
	cr_assert_eq(spool_append_message(sp, &w->m[0], a), PT_OK);
	cr_assert_eq(spool_batch_start(sp, &io), PT_OK);
	cr_assert_eq(spool_append_message(sp, &w->m[1], b), PT_OK);
	cr_assert_eq(write_limited(&io, io.len), (ssize_t)io.len);
	spool_batch_done(sp, (int)io.len, -EIO, done, NULL);
	cr_assert_eq(a->status, PT_ERROR);
	cr_assert_eq(b->calls, 0, "the pending record is not part of the failed batch");
	cr_assert_eq(spool_current_segment(sp), 2);
	cr_assert_eq(segment_size(tmpdir, 1), 48, "the failed batch was cut off");
	run_batch(w, sp, FAULT_WRITE, false);
	cr_assert_eq(b->status, PT_OK);
	cr_assert_eq(b->calls, 1);
	spool_close(sp);
	found.n = 0;
	cr_assert_eq(spool_open(&sp, &cfg, collect, &found, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(found.n, 1);
	cr_assert_str_eq(found.id[0], w->m[1].id);
	spool_close(sp);
	pt_message_clear(&w->m[0]);
	pt_message_clear(&w->m[1]);
	free(w);
}

/* Open a spool in tmpdir with every message of w made. */
static struct spool *open_world(struct world *w)
{
	struct spool_config cfg = {.path = tmpdir, .shard = 0};
	struct spool *sp = NULL;
	struct ids found = {.n = 0};
	char err[256];

	for (size_t i = 0; i < N_MSGS; i++)
		make_message(&w->m[i], i);
	cr_assert_eq(spool_open(&sp, &cfg, collect, &found, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(found.n, 0);
	return sp;
}

/* Reopen tmpdir: exactly messages [first, first + n) are live. */
static void expect_after_reopen(struct world *w, size_t first, size_t n)
{
	struct spool_config cfg = {.path = tmpdir, .shard = 0};
	struct spool *sp = NULL;
	struct ids found = {.n = 0};
	char err[256];

	cr_assert_eq(spool_open(&sp, &cfg, collect, &found, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(found.n, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_str_eq(found.id[i], w->m[first + i].id);
	spool_close(sp);
}

static void free_world(struct world *w)
{
	for (size_t i = 0; i < N_MSGS; i++)
		pt_message_clear(&w->m[i]);
	free(w);
}

static void expect_batch_status(const struct world *w, size_t first, size_t n, int status)
{
	for (size_t k = first; k < first + n; k++) {
		cr_assert_eq(w->recs[k].calls, 1, "record %zu", k);
		cr_assert_eq(w->recs[k].status, status, "record %zu", k);
	}
}

/* Two failures in a row seal two segments; the third batch succeeds. */
Test(spool_fault, consecutive_failures_then_success)
{
	struct world *w = calloc(1, sizeof(*w));
	struct spool *sp = open_world(w);
	struct spool_io io;

	queue_batch(w, sp, 0);
	run_batch(w, sp, FAULT_SYNC, true);
	cr_assert_eq(spool_current_segment(sp), 2);
	queue_batch(w, sp, 1);
	run_batch(w, sp, FAULT_WRITE, true);
	cr_assert_eq(spool_current_segment(sp), 3);
	queue_batch(w, sp, 3);
	io = run_batch(w, sp, FAULT_WRITE, false);
	cr_assert_eq(spool_current_segment(sp), 3);
	expect_batch_status(w, 0, 2 * PER_BATCH, PT_ERROR);
	expect_batch_status(w, 2 * PER_BATCH, PER_BATCH, PT_OK);
	cr_assert_eq(segment_size(tmpdir, 1), 48);
	cr_assert_eq(segment_size(tmpdir, 2), 48);
	cr_assert_eq(segment_size(tmpdir, 3), (off_t)(48 + io.len));
	spool_close(sp);
	expect_after_reopen(w, 3 * PER_BATCH, PER_BATCH);
	free_world(w);
}

/* When no new segment can be created, batches still complete (with
 * PT_ERROR, fd -1 makes the write fail) instead of waiting forever, and
 * creation is retried for each batch until it works. */
Test(spool_fault, no_segment_fails_batches_until_one_can_be_created)
{
	struct world *w = calloc(1, sizeof(*w));
	struct spool *sp = open_world(w);
	struct spool_io io;
	char name[256];

	/* Occupy segment names 2..33: creation gives up after 16 taken names. */
	for (unsigned long long seq = 2; seq <= 33; seq++) {
		snprintf(name, sizeof(name), "%s/0/%016llx.seg", tmpdir, seq);
		cr_assert_eq(mkdir(name, 0750), 0);
	}
	queue_batch(w, sp, 0);
	run_batch(w, sp, FAULT_SYNC, true); /* seals 1; 2..17 taken */
	cr_assert_eq(spool_current_segment(sp), 18);
	queue_batch(w, sp, 1);
	io = run_batch(w, sp, FAULT_WRITE, false); /* 18..33 taken: no segment */
	cr_assert_eq(io.fd, -1);
	cr_assert_eq(spool_current_segment(sp), 34, "created after the failed batch");
	queue_batch(w, sp, 3);
	io = run_batch(w, sp, FAULT_WRITE, false);
	cr_assert_geq(io.fd, 0);
	expect_batch_status(w, 0, 2 * PER_BATCH, PT_ERROR);
	expect_batch_status(w, 2 * PER_BATCH, PER_BATCH, PT_OK);
	spool_close(sp);
	for (unsigned long long seq = 2; seq <= 33; seq++) {
		snprintf(name, sizeof(name), "%s/0/%016llx.seg", tmpdir, seq);
		cr_assert_eq(rmdir(name), 0);
	}
	expect_after_reopen(w, 3 * PER_BATCH, PER_BATCH);
	free_world(w);
}
