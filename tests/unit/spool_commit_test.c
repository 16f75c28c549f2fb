/*
 * spool_commit_test.c -- group commit: appends made while a batch is in
 * flight all go out together in the next batch (one pwritev, one fdatasync);
 * a batch never holds more than SPOOL_BATCH_IOV_MAX iovecs (a record that
 * does not fit waits for the next batch) and consecutive tombstones share an
 * iovec; segments rotate after the batch that crosses segment_max; a
 * completion callback may append but not start a batch; counters add up.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool/spool_int.h"
#include "tests/unit/test_util.h"

static char tmpdir[64];
static struct pt_idgen idgen;
static unsigned n_pwritev, n_fdatasync;

static void setup(void)
{
	test_tmpdir_make(tmpdir, sizeof(tmpdir), "spool_commit");
	pt_idgen_init(&idgen, 1);
	n_pwritev = n_fdatasync = 0;
}

static void teardown(void)
{
	test_tmpdir_remove(tmpdir);
}

TestSuite(spool_commit, .init = setup, .fini = teardown, .timeout = 120);

#define MAX_IDS 512

struct ids {
	char id[MAX_IDS][PT_ID_LEN + 1];
	uint64_t segment[MAX_IDS];
	size_t n;
};

static void collect(void *arg, const struct spool_entry *e)
{
	struct ids *c = arg;

	cr_assert_lt(c->n, MAX_IDS);
	c->segment[c->n] = e->segment;
	strcpy(c->id[c->n++], e->id);
}

static struct spool *open_spool(uint64_t segment_max, struct ids *found)
{
	struct spool_config cfg = {.path = tmpdir, .shard = 2, .segment_max = segment_max};
	struct spool *sp = NULL;
	char err[256] = "";

	found->n = 0;
	cr_assert_eq(spool_open(&sp, &cfg, collect, found, err, sizeof(err)), PT_OK, "%s", err);
	return sp;
}

/* A message whose body has all four parts (prefix, headers, appended, rest). */
static void make_message(struct pt_message *m, size_t i)
{
	char s[64];
	int n;

	pt_message_init(m);
	pt_id_next(&idgen, m->id);
	m->created_us = 1764064245000000ull + i;
	pt_message_set_sender(m, "s@example.com", 13);
	pt_message_add_rcpt(m, "r@example.org", 13);
	n = snprintf(s, sizeof(s), "Subject: %zu\r\n\r\nbody %zu\r\n", i, i);
	pt_buf_append(&m->data, s, (size_t)n);
	pt_message_scan_headers(m);
	pt_message_prepend_header(m, "Received", "from commit test");
	pt_message_append_header(m, "X-Seq", "1");
}

/* The shard's part: one WRITEV at io.offset and one FSYNC(DATASYNC). */
static void perform(const struct spool_io *io, int *wres, int *sres)
{
	ssize_t w = pwritev(io->fd, io->iov, io->n_iov, (off_t)io->offset);

	n_pwritev++;
	*wres = w < 0 ? -errno : (int)w;
	*sres = -ECANCELED;
	if (w == (ssize_t)io->len) {
		n_fdatasync++;
		*sres = fdatasync(io->fd) == 0 ? 0 : -errno;
	}
}

struct done_log {
	void *tokens[MAX_IDS * 4];
	int status[MAX_IDS * 4];
	size_t n;
};

static void log_done(void *arg, void *token, int status, const struct spool_loc *loc)
{
	(void)loc;
	struct done_log *d = arg;

	d->tokens[d->n] = token;
	d->status[d->n++] = status;
}

static void run_one_batch(struct spool *sp, struct done_log *d, struct spool_io *io_out)
{
	struct spool_io io;
	int w, s;

	cr_assert_eq(spool_batch_start(sp, &io), PT_OK);
	perform(&io, &w, &s);
	cr_assert_eq(w, (int)io.len);
	cr_assert_eq(s, 0);
	spool_batch_done(sp, w, s, log_done, d);
	if (io_out != NULL)
		*io_out = io;
}

Test(spool_commit, appends_during_flight_share_the_next_batch)
{
	struct pt_message m[5];
	struct done_log d = {.n = 0};
	struct ids found;
	struct spool *sp = open_spool(0, &found);
	struct spool_io io1, io2;
	int w, s;
	size_t len = 0;

	for (size_t i = 0; i < 5; i++)
		make_message(&m[i], i);
	cr_assert(!spool_batch_ready(sp));
	cr_assert_eq(spool_batch_start(sp, &io1), PT_AGAIN, "nothing pending");
	cr_assert_eq(spool_append_message(sp, &m[0], &m[0]), PT_OK);
	cr_assert(spool_batch_ready(sp));
	cr_assert_eq(spool_batch_start(sp, &io1), PT_OK);
	cr_assert_eq(io1.len, spool_record_message_len(&m[0]));
	cr_assert_eq(io1.offset, 48);
	cr_assert(spool_batch_busy(sp));

	/* While batch 1 is in flight: four messages and a tombstone. */
	for (size_t i = 1; i < 5; i++) {
		cr_assert_eq(spool_append_message(sp, &m[i], &m[i]), PT_OK);
		len += spool_record_message_len(&m[i]);
	}
	cr_assert_eq(spool_append_tombstone(sp, m[2].id, &d), PT_OK);
	len += 48;
	cr_assert(!spool_batch_ready(sp), "one batch at a time");
	cr_assert_eq(spool_batch_start(sp, &io2), PT_AGAIN);

	perform(&io1, &w, &s);
	spool_batch_done(sp, w, s, log_done, &d);
	cr_assert_eq(d.n, 1, "only batch 1's record completed");
	cr_assert_eq(d.tokens[0], &m[0]);
	cr_assert_eq(d.status[0], PT_OK);

	cr_assert(spool_batch_ready(sp));
	cr_assert_eq(spool_batch_start(sp, &io2), PT_OK);
	cr_assert_eq(io2.offset, io1.offset + io1.len);
	cr_assert_eq(io2.len, len, "every record appended during the flight");
	cr_assert_eq(io2.n_iov, 4 * 5 + 1);
	perform(&io2, &w, &s);
	spool_batch_done(sp, w, s, log_done, &d);
	cr_assert_eq(n_pwritev, 2);
	cr_assert_eq(n_fdatasync, 2);
	cr_assert_eq(d.n, 6);
	for (size_t i = 1; i < 5; i++) {
		cr_assert_eq(d.tokens[i], &m[i], "completion order");
		cr_assert_eq(d.status[i], PT_OK);
	}
	cr_assert_eq(d.tokens[5], &d);
	cr_assert_eq(d.status[5], PT_OK);
	cr_assert(!spool_batch_ready(sp));
	spool_close(sp);

	sp = open_spool(0, &found);
	cr_assert_eq(found.n, 4);
	cr_assert_str_eq(found.id[0], m[0].id);
	cr_assert_str_eq(found.id[1], m[1].id);
	cr_assert_str_eq(found.id[2], m[3].id);
	cr_assert_str_eq(found.id[3], m[4].id);
	spool_close(sp);
	for (size_t i = 0; i < 5; i++)
		pt_message_clear(&m[i]);
}

/* 300 messages of 5 iovecs: 204 fit in 1024 iovecs, the rest wait. */
Test(spool_commit, iovec_cap_splits_batches)
{
	static struct pt_message m[300];
	struct done_log *d = calloc(1, sizeof(*d));
	struct ids found;
	struct spool *sp = open_spool(0, &found);
	struct spool_io io;

	for (size_t i = 0; i < 300; i++) {
		make_message(&m[i], i);
		cr_assert_eq(spool_append_message(sp, &m[i], &m[i]), PT_OK);
	}
	run_one_batch(sp, d, &io);
	cr_assert_eq(io.n_iov, 204 * 5);
	cr_assert_eq(d->n, 204);
	cr_assert(spool_batch_ready(sp), "the rest waits for the next batch");
	run_one_batch(sp, d, &io);
	cr_assert_eq(io.n_iov, 96 * 5);
	cr_assert_eq(d->n, 300);
	for (size_t i = 0; i < 300; i++) {
		cr_assert_eq(d->tokens[i], &m[i]);
		cr_assert_eq(d->status[i], PT_OK);
	}
	cr_assert(!spool_batch_ready(sp));
	spool_close(sp);
	sp = open_spool(0, &found);
	cr_assert_eq(found.n, 300);
	for (size_t i = 0; i < 300; i++)
		cr_assert_str_eq(found.id[i], m[i].id);
	spool_close(sp);
	for (size_t i = 0; i < 300; i++)
		pt_message_clear(&m[i]);
	free(d);
}

/* Consecutive tombstones (and a following envelope) share one iovec. */
Test(spool_commit, tombstones_share_an_iovec)
{
	static struct pt_message m[300];
	struct done_log *d = calloc(1, sizeof(*d));
	struct pt_message x;
	struct ids found;
	struct spool *sp = open_spool(0, &found);
	struct spool_io io;

	for (size_t i = 0; i < 300; i++) {
		make_message(&m[i], i);
		cr_assert_eq(spool_append_message(sp, &m[i], NULL), PT_OK);
	}
	cr_assert_eq(spool_flush_sync(sp, NULL, NULL), PT_OK);
	for (size_t i = 0; i < 300; i++)
		cr_assert_eq(spool_append_tombstone(sp, m[i].id, NULL), PT_OK);
	run_one_batch(sp, d, &io);
	cr_assert_eq(io.n_iov, 1);
	cr_assert_eq(io.len, 300 * 48);

	/* T T M T: the message's envelope joins the tombstones' iovec. */
	make_message(&x, 1000);
	cr_assert_eq(spool_append_tombstone(sp, m[0].id, NULL), PT_OK);
	cr_assert_eq(spool_append_tombstone(sp, m[1].id, NULL), PT_OK);
	cr_assert_eq(spool_append_message(sp, &x, NULL), PT_OK);
	cr_assert_eq(spool_append_tombstone(sp, m[2].id, NULL), PT_OK);
	run_one_batch(sp, d, &io);
	cr_assert_eq(io.n_iov, 1 + 4 + 1);
	cr_assert_eq(io.iov[0].iov_len,
		     48 + 48 + spool_record_message_len(&x) - pt_message_size(&x));
	cr_assert_eq(io.iov[5].iov_len, 48);
	spool_close(sp);
	sp = open_spool(0, &found);
	cr_assert_eq(found.n, 1);
	cr_assert_str_eq(found.id[0], x.id);
	spool_close(sp);
	for (size_t i = 0; i < 300; i++)
		pt_message_clear(&m[i]);
	pt_message_clear(&x);
	free(d);
}

/* segment_max 1000: the batch that crosses it stays in the old segment, the
 * next one goes to a new segment. */
Test(spool_commit, rotation_after_the_batch_that_crosses_segment_max)
{
	struct pt_message m[12];
	uint64_t seg_of[12], off = 48, seg = 1;
	struct ids found;
	struct spool *sp = open_spool(1000, &found);
	struct spool_io io;
	struct done_log d = {.n = 0};

	for (size_t i = 0; i < 12; i++) {
		make_message(&m[i], i);
		cr_assert_eq(spool_append_message(sp, &m[i], NULL), PT_OK);
		run_one_batch(sp, &d, &io);
		cr_assert_eq(io.offset, off, "message %zu", i);
		seg_of[i] = seg;
		off += spool_record_message_len(&m[i]);
		if (off >= 1000) {
			seg++;
			off = 48;
		}
		cr_assert_eq(spool_current_segment(sp), seg);
	}
	cr_assert_geq(seg, 3);
	cr_assert_eq(spool_segments(sp), seg);
	spool_close(sp);
	sp = open_spool(1000, &found);
	cr_assert_eq(found.n, 12);
	for (size_t i = 0; i < 12; i++) {
		cr_assert_str_eq(found.id[i], m[i].id);
		cr_assert_eq(found.segment[i], seg_of[i], "message %zu", i);
	}
	spool_close(sp);
	for (size_t i = 0; i < 12; i++)
		pt_message_clear(&m[i]);
}

struct reentry {
	struct spool *sp;
	const char *id;
	int n_calls;
};

/* A completion callback that tries to start a batch and appends a tombstone. */
static void reenter(void *arg, void *token, int status, const struct spool_loc *loc)
{
	(void)loc;
	struct reentry *r = arg;
	struct spool_io io;

	(void)token;
	cr_assert_eq(status, PT_OK);
	cr_assert(spool_batch_busy(r->sp), "still in flight during callbacks");
	cr_assert_eq(spool_batch_start(r->sp, &io), PT_AGAIN);
	cr_assert_eq(spool_append_tombstone(r->sp, r->id, NULL), PT_OK);
	r->n_calls++;
}

Test(spool_commit, callback_may_append_but_not_start)
{
	struct pt_message m;
	struct ids found;
	struct spool *sp = open_spool(0, &found);
	struct reentry r = {.sp = sp};
	struct spool_io io;
	int w, s;

	make_message(&m, 0);
	r.id = m.id;
	cr_assert_eq(spool_append_message(sp, &m, NULL), PT_OK);
	cr_assert_eq(spool_batch_start(sp, &io), PT_OK);
	cr_assert_eq(spool_flush_sync(sp, NULL, NULL), PT_ERROR, "busy");
	perform(&io, &w, &s);
	spool_batch_done(sp, w, s, reenter, &r);
	cr_assert_eq(r.n_calls, 1);
	cr_assert(!spool_batch_busy(sp));
	cr_assert(spool_batch_ready(sp), "the callback's tombstone is pending");
	cr_assert_eq(spool_flush_sync(sp, NULL, NULL), PT_OK);
	spool_close(sp);
	sp = open_spool(0, &found);
	cr_assert_eq(found.n, 0);
	spool_close(sp);
	pt_message_clear(&m);
}

/* spool_bytes and spool_segments match the files on disk. */
Test(spool_commit, counters_match_the_disk)
{
	struct pt_message m[20];
	struct ids found;
	struct spool *sp = open_spool(700, &found);
	char dir[128];
	uint64_t *seqs, total = 0;
	size_t n;
	int fd;

	for (size_t i = 0; i < 20; i++) {
		make_message(&m[i], i);
		cr_assert_eq(spool_append_message(sp, &m[i], NULL), PT_OK);
		if (i % 3 == 2)
			cr_assert_eq(spool_flush_sync(sp, NULL, NULL), PT_OK);
	}
	cr_assert_eq(spool_flush_sync(sp, NULL, NULL), PT_OK);
	snprintf(dir, sizeof(dir), "%s/2", tmpdir);
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(spool_segment_list(fd, &seqs, &n), 0);
	for (size_t i = 0; i < n; i++) {
		char name[SPOOL_SEGMENT_NAME_LEN + 1];
		struct stat st;

		spool_segment_name(seqs[i], name);
		cr_assert_eq(fstatat(fd, name, &st, 0), 0);
		total += (uint64_t)st.st_size;
	}
	close(fd);
	cr_assert_gt(n, 2);
	cr_assert_eq(spool_segments(sp), n);
	cr_assert_eq(spool_bytes(sp), total);
	cr_assert_eq(spool_current_segment(sp), seqs[n - 1]);
	free(seqs);
	spool_close(sp);
	for (size_t i = 0; i < 20; i++)
		pt_message_clear(&m[i]);
}

/* Closing with records pending drops them without callbacks (and leaks nothing). */
Test(spool_commit, close_with_pending_records)
{
	struct pt_message m;
	struct ids found;
	struct spool *sp = open_spool(0, &found);
	struct spool_io io;

	make_message(&m, 0);
	cr_assert_eq(spool_append_message(sp, &m, NULL), PT_OK);
	cr_assert_eq(spool_batch_start(sp, &io), PT_OK);
	cr_assert_eq(spool_append_message(sp, &m, NULL), PT_OK);
	spool_close(sp);
	sp = open_spool(0, &found);
	cr_assert_eq(found.n, 0, "nothing was written");
	spool_close(sp);
	pt_message_clear(&m);
}
