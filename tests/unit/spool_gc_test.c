/*
 * spool_gc_test.c -- run-time liveness and deleting dead segments:
 * spool_collect deletes only a dead prefix (a live message in the oldest
 * segment pins every younger one, dead or not; after its unref they all
 * go), never the current segment while it holds a live message, rotates a
 * dead current segment past rotate_min (not below it, not while a batch is
 * pending or in flight), closes the read fds of what it deleted, keeps the
 * counters equal to the disk, renames a segment with a bad record instead of
 * deleting it; compaction (a second copy, then unref of the old segment)
 * frees the old segment; spool_unref of a segment with nothing live panics.
 * And a randomized model test: random appends, states, tombstones,
 * compaction copies, batches, collects and reopens with a small segment_max
 * against a model -- after every collect the disk holds exactly the live set
 * with its states (nothing resurrected, nothing lost), and so does every
 * reopen.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool/spool_int.h"
#include "tests/unit/spool_test_util.h"

SPOOL_TEST_SUITE(spool_gc, 6, 240);

static void make_message(struct pt_message *m, size_t i, size_t n_rcpts)
{
	char s[128];
	int n;

	pt_message_init(m);
	pt_id_next(&idgen, m->id);
	m->created_us = 1764064245000000ull + i;
	pt_message_set_sender(m, "s@example.com", 13);
	for (size_t k = 0; k < n_rcpts; k++) {
		n = snprintf(s, sizeof(s), "r%zu.%zu@example.org", i, k);
		pt_message_add_rcpt(m, s, (size_t)n);
	}
	n = snprintf(s, sizeof(s), "Subject: gc %zu\r\n\r\n%.*s\r\n", i, (int)(i % 50),
		     "01234567890123456789012345678901234567890123456789");
	pt_buf_append(&m->data, s, (size_t)n);
	pt_message_scan_headers(m);
}

static struct spool *open_at(const char *path, uint64_t segment_max, spool_entry_fn fn, void *arg)
{
	struct spool_config cfg = {.path = path, .shard = 0, .segment_max = segment_max};
	struct spool *sp = NULL;
	char err[512] = "";

	cr_assert_eq(spool_open(&sp, &cfg, fn, arg, err, sizeof(err)), PT_OK, "%s", err);
	return sp;
}

/* A completion callback that stores the loc of every MESSAGE record in the
 * struct spool_loc its token points at. */
static void store_loc(void *arg, void *token, int status, const struct spool_loc *loc)
{
	(void)arg;
	cr_assert_eq(status, PT_OK);
	if (token != NULL) {
		cr_assert_not_null(loc);
		*(struct spool_loc *)token = *loc;
	}
}

static void flush(struct spool *sp)
{
	cr_assert_eq(spool_flush_sync(sp, store_loc, NULL), PT_OK);
}

/* Append m and flush; its loc is returned. */
static struct spool_loc put_message(struct spool *sp, struct pt_message *m)
{
	struct spool_loc loc = {0};

	cr_assert_eq(spool_append_message(sp, m, &loc), PT_OK);
	flush(sp);
	cr_assert_neq(loc.length, 0);
	return loc;
}

static void put_tombstone(struct spool *sp, const char *id)
{
	cr_assert_eq(spool_append_tombstone(sp, id, NULL), PT_OK);
	flush(sp);
}

static void segment_file(uint64_t seq, char *out, size_t len)
{
	snprintf(out, len, "%s/0/%016llx.seg", tmpdir, (unsigned long long)seq);
}

static bool segment_exists(uint64_t seq)
{
	char file[200];

	segment_file(seq, file, sizeof(file));
	return access(file, F_OK) == 0;
}

/* Segment files on disk (count and total bytes), as the directory says. */
static size_t disk_segments(uint64_t *bytes)
{
	char dir[128], file[400];
	struct dirent *de;
	uint64_t seq;
	size_t n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/0", tmpdir);
	d = opendir(dir);
	cr_assert_not_null(d);
	*bytes = 0;
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		if (!spool_segment_parse_name(de->d_name, &seq))
			continue;
		snprintf(file, sizeof(file), "%s/%s", dir, de->d_name);
		cr_assert_eq(stat(file, &st), 0);
		*bytes += (uint64_t)st.st_size;
		n++;
	}
	closedir(d);
	return n;
}

static void expect_counters_match_disk(const struct spool *sp)
{
	uint64_t bytes;
	size_t n = disk_segments(&bytes);

	cr_assert_eq(spool_segments(sp), n);
	cr_assert_eq(spool_bytes(sp), bytes);
}

/* With segment_max = 1 every batch is its own segment. */
Test(spool_gc, live_oldest_pins_dead_younger_segments)
{
	struct pt_message a, b, c;
	struct spool_loc la, lb, lc;
	struct spool *sp = open_at(tmpdir, 1, NULL, NULL);
	struct spool_ids found = {.n = 0};
	uint64_t n_live;

	make_message(&a, 1, 1);
	make_message(&b, 2, 1);
	make_message(&c, 3, 2);
	la = put_message(sp, &a); /* 1 */
	lb = put_message(sp, &b); /* 2 */
	lc = put_message(sp, &c); /* 3 */
	cr_assert_eq(la.segment, 1);
	cr_assert_eq(lb.segment, 2);
	cr_assert_eq(lc.segment, 3);
	cr_assert_eq(spool_current_segment(sp), 4);
	cr_assert_eq(spool_oldest_segment(sp, &n_live), 1);
	cr_assert_eq(n_live, 1);
	cr_assert_eq(spool_collect(sp, 0), 0, "nothing dead at the front");

	cr_assert_eq(spool_append_tombstone(sp, b.id, NULL), PT_OK);
	cr_assert_eq(spool_append_tombstone(sp, c.id, NULL), PT_OK);
	flush(sp); /* tombstones in 4; current 5 */
	spool_unref(sp, lb.segment);
	spool_unref(sp, lc.segment);
	cr_assert_eq(spool_collect(sp, 0), 0, "a in 1 pins 2, 3 and 4");
	for (uint64_t s = 1; s <= 5; s++)
		cr_assert(segment_exists(s), "segment %llu", (unsigned long long)s);
	expect_counters_match_disk(sp);

	put_tombstone(sp, a.id); /* in 5; current 6 */
	spool_unref(sp, la.segment);
	cr_assert_eq(spool_oldest_segment(sp, &n_live), 1);
	cr_assert_eq(n_live, 0);
	cr_assert_eq(spool_collect(sp, 1ull << 40), 5, "1..5 go; 6 is current");
	for (uint64_t s = 1; s <= 5; s++)
		cr_assert(!segment_exists(s), "segment %llu", (unsigned long long)s);
	cr_assert(segment_exists(6));
	cr_assert_eq(spool_oldest_segment(sp, &n_live), 6);
	cr_assert_eq(n_live, 0);
	cr_assert_eq(spool_segments(sp), 1);
	cr_assert_eq(spool_bytes(sp), 48);
	expect_counters_match_disk(sp);
	cr_assert_eq(spool_collect(sp, 1ull << 40), 0, "the current one stays");
	spool_close(sp);

	sp = open_at(tmpdir, 1, spool_ids_collect, &found);
	cr_assert_eq(found.n, 0, "nothing comes back");
	spool_close(sp);
	pt_message_clear(&a);
	pt_message_clear(&b);
	pt_message_clear(&c);
}

/* The dead prefix goes; the first live segment and everything after stays. */
Test(spool_gc, deletes_up_to_the_first_live_segment)
{
	struct pt_message a, b, c;
	struct spool_loc la, lb;
	struct spool *sp = open_at(tmpdir, 1, NULL, NULL);
	struct spool_ids found = {.n = 0};

	make_message(&a, 1, 1);
	make_message(&b, 2, 1);
	make_message(&c, 3, 1);
	la = put_message(sp, &a); /* 1 */
	lb = put_message(sp, &b); /* 2 */
	put_message(sp, &c);	  /* 3 */
	put_tombstone(sp, a.id);  /* 4 */
	spool_unref(sp, la.segment);
	cr_assert_eq(spool_collect(sp, 0), 1);
	cr_assert(!segment_exists(1));
	for (uint64_t s = 2; s <= 5; s++)
		cr_assert(segment_exists(s), "segment %llu", (unsigned long long)s);
	put_tombstone(sp, b.id); /* 5 */
	spool_unref(sp, lb.segment);
	cr_assert_eq(spool_collect(sp, 0), 1, "2 goes, c in 3 pins 4 and 5");
	cr_assert(segment_exists(3));
	expect_counters_match_disk(sp);
	spool_close(sp);
	sp = open_at(tmpdir, 1, spool_ids_collect, &found);
	cr_assert_eq(found.n, 1);
	cr_assert_str_eq(found.id[0], c.id);
	cr_assert_eq(found.segment[0], 3);
	spool_close(sp);
	pt_message_clear(&a);
	pt_message_clear(&b);
	pt_message_clear(&c);
}

Test(spool_gc, dead_current_segment_rotates_past_rotate_min)
{
	struct pt_message a;
	struct spool_loc la;
	struct spool *sp = open_at(tmpdir, 0, NULL, NULL);
	struct spool_io io;
	uint64_t size, n_live;
	char file[200];

	make_message(&a, 1, 1);
	la = put_message(sp, &a);
	cr_assert_eq(la.segment, 1);
	cr_assert_eq(spool_collect(sp, 0), 0, "the current segment holds a live message");
	cr_assert_eq(spool_current_segment(sp), 1);
	put_tombstone(sp, a.id);
	spool_unref(sp, 1);
	segment_file(1, file, sizeof(file));
	size = 48 + la.length + 48;
	cr_assert_eq(spool_bytes(sp), size);
	cr_assert_eq(spool_collect(sp, size + 1), 0, "below rotate_min: kept");
	cr_assert_eq(spool_current_segment(sp), 1);

	/* Not while a record is pending, nor while a batch is in flight. */
	cr_assert_eq(spool_append_tombstone(sp, a.id, NULL), PT_OK);
	cr_assert_eq(spool_collect(sp, size), 0, "pending");
	cr_assert_eq(spool_batch_start(sp, &io), PT_OK);
	cr_assert_eq(spool_collect(sp, size), 0, "in flight");
	cr_assert_eq(spool_current_segment(sp), 1);
	cr_assert_eq(pwritev(io.fd, io.iov, io.n_iov, (off_t)io.offset), (ssize_t)io.len);
	spool_batch_done(sp, (int)io.len, fdatasync(io.fd), NULL, NULL);
	size += 48;

	cr_assert_eq(spool_collect(sp, size), 1, "idle, dead and big enough: rotated");
	cr_assert_eq(spool_current_segment(sp), 2);
	cr_assert(!segment_exists(1));
	cr_assert(segment_exists(2));
	cr_assert_eq(spool_segments(sp), 1);
	cr_assert_eq(spool_bytes(sp), 48);
	cr_assert_eq(spool_oldest_segment(sp, &n_live), 2);
	cr_assert_eq(n_live, 0);
	expect_counters_match_disk(sp);
	cr_assert_eq(spool_collect(sp, 0), 1, "rotate_min 0: rotates even a header-only segment");
	cr_assert_eq(spool_current_segment(sp), 3);
	/* The spool still works. */
	la = put_message(sp, &a);
	cr_assert_eq(la.segment, 3);
	cr_assert_eq(la.offset, 48);
	spool_close(sp);
	pt_message_clear(&a);
}

Test(spool_gc, current_segment_with_a_live_message_is_never_deleted)
{
	struct pt_message a, b;
	struct spool *sp = open_at(tmpdir, 0, NULL, NULL);
	struct spool_loc la;

	make_message(&a, 1, 1);
	make_message(&b, 2, 1);
	la = put_message(sp, &a);
	put_message(sp, &b);
	put_tombstone(sp, a.id);
	spool_unref(sp, la.segment);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(spool_collect(sp, 0), 0);
	cr_assert_eq(spool_current_segment(sp), 1);
	cr_assert(segment_exists(1));
	spool_close(sp);
	pt_message_clear(&a);
	pt_message_clear(&b);
}

/* Compaction: the copy lands in the current segment and counts there; the
 * old segment goes once the caller unrefs it; a reopen finds the copy. */
Test(spool_gc, compaction_copy_frees_the_old_segment)
{
	struct pt_message a, b;
	struct spool_loc la, la2, lb;
	struct spool *sp = open_at(tmpdir, 1, NULL, NULL);
	struct spool_ids found = {.n = 0};
	uint64_t n_live;

	make_message(&a, 1, 2);
	make_message(&b, 2, 1);
	la = put_message(sp, &a); /* 1 */
	lb = put_message(sp, &b); /* 2 */
	put_tombstone(sp, b.id);  /* 3 */
	spool_unref(sp, lb.segment);
	cr_assert_eq(spool_collect(sp, 0), 0);
	la2 = put_message(sp, &a); /* the copy, in 4 */
	cr_assert_eq(la2.segment, 4);
	cr_assert_eq(la2.length, la.length);
	cr_assert_eq(spool_oldest_segment(sp, &n_live), 1);
	cr_assert_eq(n_live, 1, "still counted until the caller unrefs it");
	spool_unref(sp, la.segment);
	cr_assert_eq(spool_collect(sp, 0), 3, "1, 2 and 3 go; the copy pins 4");
	cr_assert_eq(spool_oldest_segment(sp, &n_live), 4);
	cr_assert_eq(n_live, 1);
	expect_counters_match_disk(sp);
	spool_close(sp);
	sp = open_at(tmpdir, 1, spool_ids_collect, &found);
	cr_assert_eq(found.n, 1);
	cr_assert_str_eq(found.id[0], a.id);
	cr_assert_eq(found.segment[0], 4);
	spool_close(sp);
	pt_message_clear(&a);
	pt_message_clear(&b);
}

/* A message counts in the segment of its newest copy: recovered entries too. */
Test(spool_gc, recovered_messages_count_where_their_newest_copy_is)
{
	struct pt_message a, b;
	struct spool *sp = open_at(tmpdir, 1, NULL, NULL);
	struct spool_ids found = {.n = 0};
	uint64_t n_live;

	make_message(&a, 1, 1);
	make_message(&b, 2, 1);
	put_message(sp, &a); /* 1 */
	put_message(sp, &b); /* 2 */
	put_message(sp, &a); /* 3: a copy of a */
	spool_close(sp);
	sp = open_at(tmpdir, 1, spool_ids_collect, &found);
	cr_assert_eq(found.n, 2);
	/* 1 holds only a's old copy: dead, deleted at open already. */
	cr_assert(!segment_exists(1));
	cr_assert_eq(spool_oldest_segment(sp, &n_live), 2);
	cr_assert_eq(n_live, 1);
	spool_unref(sp, 2);
	cr_assert_eq(spool_collect(sp, 0), 1);
	cr_assert_eq(spool_oldest_segment(sp, &n_live), 3);
	cr_assert_eq(n_live, 1);
	spool_close(sp);
	pt_message_clear(&a);
	pt_message_clear(&b);
}

Test(spool_gc, collect_closes_read_fds_of_deleted_segments)
{
	struct pt_message a, b;
	struct spool_loc la;
	struct spool *sp = open_at(tmpdir, 1, NULL, NULL);
	int fd1, fd2;

	make_message(&a, 1, 1);
	make_message(&b, 2, 1);
	la = put_message(sp, &a); /* 1 */
	put_message(sp, &b);	  /* 2 */
	fd1 = spool_read_fd(sp, 1);
	fd2 = spool_read_fd(sp, 2);
	cr_assert_geq(fd1, 0);
	cr_assert_geq(fd2, 0);
	put_tombstone(sp, a.id);
	spool_unref(sp, la.segment);
	cr_assert_eq(spool_collect(sp, 0), 1);
	cr_assert_eq(fcntl(fd1, F_GETFD), -1, "closed");
	cr_assert_eq(errno, EBADF);
	cr_assert_neq(fcntl(fd2, F_GETFD), -1, "2 is kept, and its fd");
	cr_assert_eq(spool_read_fd(sp, 1), -1);
	cr_assert_eq(spool_read_fd(sp, 2), fd2);
	spool_close(sp);
	pt_message_clear(&a);
	pt_message_clear(&b);
}


/* A segment in which recovery found a bad record leaves the spool renamed to
 * "<name>.bad" when its turn comes, not deleted. */
Test(spool_gc, segment_with_a_bad_record_is_renamed_not_deleted)
{
	struct pt_message m[3];
	struct spool_loc l0, l1;
	struct spool *sp = open_at(tmpdir, 0, NULL, NULL);
	struct spool_ids found = {.n = 0};
	char file[200], bad[220];
	uint64_t n_bad = 0;
	char err[256];

	for (size_t i = 0; i < 3; i++)
		make_message(&m[i], i, 1);
	cr_assert_eq(spool_append_message(sp, &m[0], &l0), PT_OK);
	cr_assert_eq(spool_append_message(sp, &m[1], &l1), PT_OK);
	flush(sp);
	spool_close(sp); /* m0 m1 in 1 */
	sp = open_at(tmpdir, 0, NULL, NULL);
	put_message(sp, &m[2]); /* m2 in 2 */
	spool_close(sp);
	segment_file(1, file, sizeof(file));
	flip_byte(file, l1.offset + l1.length - 1);

	sp = open_at(tmpdir, 0, spool_ids_collect, &found);
	cr_assert_eq(found.n, 2, "m0 and m2; m1 is unreadable");
	cr_assert_str_eq(found.id[0], m[0].id);
	cr_assert_eq(spool_current_segment(sp), 3);
	put_tombstone(sp, m[0].id);
	spool_unref(sp, 1);
	cr_assert_eq(spool_collect(sp, 0), 1);
	cr_assert(!segment_exists(1));
	snprintf(bad, sizeof(bad), "%s.bad", file);
	cr_assert_eq(access(bad, F_OK), 0, "kept for inspection");
	expect_counters_match_disk(sp);
	spool_close(sp);
	found.n = 0;
	cr_assert_eq(spool_scan(tmpdir, 0, spool_ids_collect, &found, &n_bad, err, sizeof(err)), PT_OK);
	cr_assert_eq(n_bad, 0, "the .bad file is no longer part of the spool");
	cr_assert_eq(found.n, 1);
	cr_assert_str_eq(found.id[0], m[2].id);
	for (size_t i = 0; i < 3; i++)
		pt_message_clear(&m[i]);
}

Test(spool_gc, unref_of_a_segment_without_live_messages_panics, .signal = SIGABRT)
{
	struct pt_message a;
	struct spool *sp = open_at(tmpdir, 0, NULL, NULL);

	make_message(&a, 1, 1);
	put_message(sp, &a);
	spool_unref(sp, 1);
	spool_unref(sp, 1);
}

Test(spool_gc, unref_of_an_unknown_segment_panics, .signal = SIGABRT)
{
	struct spool *sp = open_at(tmpdir, 0, NULL, NULL);

	spool_unref(sp, 7);
}

/* ---- The model test ---- */

#define MODEL_MSGS  400
#define MODEL_RCPTS 3

enum model_status { M_UNUSED, M_PENDING, M_LIVE, M_TOMB_PENDING, M_DEAD };

struct model_msg {
	struct pt_message m;
	enum model_status status;
	bool copy_pending;
	struct spool_loc loc; /* the newest durable copy */
	struct spool_rcpt_state st[MODEL_RCPTS];
	bool has[MODEL_RCPTS];
};

struct model {
	struct spool *sp;
	struct model_msg msgs[MODEL_MSGS];
	size_t n_msgs;
	uint64_t rng;
	uint64_t segment_max;
	unsigned n_collected, n_reopens, n_copies, n_tombs, n_states;
};

enum { TOKEN_NEW = 1, TOKEN_COPY = 2, TOKEN_TOMB = 3 };

static void *model_token(size_t i, int kind)
{
	return (void *)(uintptr_t)(i << 2 | (size_t)kind);
}

static uint64_t model_rand(struct model *w, uint64_t n)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return w->rng % n;
}

/* The shard's part of a completion: record where copies land, unref the old
 * copy's segment once the new one (or the tombstone) is durable. */
static void model_done(void *arg, void *token, int status, const struct spool_loc *loc)
{
	struct model *w = arg;
	uintptr_t t = (uintptr_t)token;
	struct model_msg *x;

	cr_assert_eq(status, PT_OK);
	if (token == NULL) {
		cr_assert_null(loc, "a state has no loc");
		return;
	}
	x = &w->msgs[t >> 2];
	switch (t & 3) {
	case TOKEN_NEW:
		cr_assert_not_null(loc);
		x->loc = *loc;
		x->status = M_LIVE;
		break;
	case TOKEN_COPY:
		cr_assert_not_null(loc);
		spool_unref(w->sp, x->loc.segment);
		x->loc = *loc;
		x->copy_pending = false;
		break;
	case TOKEN_TOMB:
		cr_assert_null(loc);
		spool_unref(w->sp, x->loc.segment);
		x->status = M_DEAD;
		break;
	}
}

static void model_flush(struct model *w)
{
	cr_assert_eq(spool_flush_sync(w->sp, model_done, w), PT_OK);
}

/* A random message in one of the given states (and no copy in flight when
 * stable), or NULL. */
static struct model_msg *model_pick(struct model *w, bool live_only, bool stable)
{
	for (int tries = 0; tries < 8 && w->n_msgs > 0; tries++) {
		struct model_msg *x = &w->msgs[model_rand(w, w->n_msgs)];

		if (x->status != M_LIVE && (live_only || x->status != M_PENDING))
			continue;
		if (stable && x->copy_pending)
			continue;
		return x;
	}
	return NULL;
}

static void model_new(struct model *w)
{
	struct model_msg *x;

	if (w->n_msgs == MODEL_MSGS)
		return;
	x = &w->msgs[w->n_msgs];
	make_message(&x->m, w->n_msgs, 1 + model_rand(w, MODEL_RCPTS));
	x->status = M_PENDING;
	cr_assert_eq(spool_append_message(w->sp, &x->m, model_token(w->n_msgs, TOKEN_NEW)), PT_OK);
	w->n_msgs++;
}

static void model_state(struct model *w)
{
	struct model_msg *x = model_pick(w, false, false);
	struct spool_rcpt_state st;

	if (x == NULL)
		return;
	st.rcpt = (uint32_t)model_rand(w, x->m.n_rcpts);
	st.done = model_rand(w, 4) == 0;
	st.num_attempts = (uint32_t)model_rand(w, 100);
	st.due_us = model_rand(w, 3) == 0 ? 0 : 1764064245000000ull + model_rand(w, 1u << 30);
	cr_assert_eq(spool_append_rcpt_state(w->sp, x->m.id, &st, NULL), PT_OK);
	x->st[st.rcpt] = st;
	x->has[st.rcpt] = true;
	w->n_states++;
}

static void model_tombstone(struct model *w)
{
	struct model_msg *x = model_pick(w, true, true);

	if (x == NULL)
		return;
	cr_assert_eq(
	    spool_append_tombstone(w->sp, x->m.id, model_token((size_t)(x - w->msgs), TOKEN_TOMB)),
	    PT_OK);
	x->status = M_TOMB_PENDING;
	w->n_tombs++;
}

/* A live message whose copy lies in the oldest segment (what compaction
 * moves), or NULL. */
static struct model_msg *model_pick_oldest(struct model *w)
{
	uint64_t n_live, oldest = spool_oldest_segment(w->sp, &n_live);

	for (size_t i = 0; i < w->n_msgs; i++) {
		struct model_msg *x = &w->msgs[i];

		if (x->status == M_LIVE && !x->copy_pending && x->loc.segment == oldest)
			return x;
	}
	return NULL;
}

/* Compaction: a copy of the record, then (usually) its states again. */
static void model_copy(struct model *w)
{
	struct model_msg *x = model_rand(w, 2) ? model_pick_oldest(w) : model_pick(w, true, true);

	if (x == NULL)
		return;
	cr_assert_eq(
	    spool_append_message(w->sp, &x->m, model_token((size_t)(x - w->msgs), TOKEN_COPY)),
	    PT_OK);
	x->copy_pending = true;
	w->n_copies++;
	if (model_rand(w, 4) == 0) {
		memset(x->has, 0, sizeof(x->has)); /* the states reset with the copy */
		return;
	}
	for (uint32_t r = 0; r < MODEL_RCPTS; r++)
		if (x->has[r])
			cr_assert_eq(spool_append_rcpt_state(w->sp, x->m.id, &x->st[r], NULL),
				     PT_OK);
}

/* The disk (read-only scan) or a reopen reported exactly the model's live set. */
struct model_check {
	struct model *w;
	bool seen[MODEL_MSGS];
	size_t n;
};

static struct model_msg *model_find(struct model *w, const char *id)
{
	for (size_t i = 0; i < w->n_msgs; i++)
		if (strcmp(w->msgs[i].m.id, id) == 0)
			return &w->msgs[i];
	return NULL;
}

static void model_check_entry(void *arg, const struct spool_entry *e)
{
	struct model_check *c = arg;
	struct model_msg *x = model_find(c->w, e->id);
	size_t k = 0, i;

	cr_assert_not_null(x, "unknown message %s", e->id);
	i = (size_t)(x - c->w->msgs);
	cr_assert(x->status == M_LIVE, "message %zu (status %d) came back", i, x->status);
	cr_assert(!c->seen[i], "message %zu twice", i);
	c->seen[i] = true;
	c->n++;
	cr_assert_eq(e->segment, x->loc.segment, "message %zu", i);
	cr_assert_eq(e->offset, x->loc.offset, "message %zu", i);
	cr_assert_eq(e->length, x->loc.length, "message %zu", i);
	cr_assert_eq(e->n_rcpts, x->m.n_rcpts);
	for (uint32_t r = 0; r < MODEL_RCPTS; r++) {
		if (!x->has[r])
			continue;
		cr_assert_lt(k, e->n_states, "message %zu: rcpt %u's state lost", i, r);
		cr_assert_eq(e->states[k].rcpt, r, "message %zu", i);
		cr_assert_eq(e->states[k].done, x->st[r].done, "message %zu rcpt %u", i, r);
		cr_assert_eq(e->states[k].num_attempts, x->st[r].num_attempts);
		cr_assert_eq(e->states[k].due_us, x->st[r].due_us);
		k++;
	}
	cr_assert_eq(e->n_states, k, "message %zu: states", i);
}

static size_t model_n_live(const struct model *w)
{
	size_t n = 0;

	for (size_t i = 0; i < w->n_msgs; i++)
		n += w->msgs[i].status == M_LIVE;
	return n;
}

/* After a flush and a collect: the disk holds exactly the live set; no live
 * message lies before the oldest segment, which counts its own right. */
static void model_check_disk(struct model *w)
{
	struct model_check c = {.w = w};
	uint64_t n_bad = 9, n_live, oldest, count = 0;
	char err[256];

	cr_assert_eq(spool_scan(tmpdir, 0, model_check_entry, &c, &n_bad, err, sizeof(err)), PT_OK,
		     "%s", err);
	cr_assert_eq(n_bad, 0);
	cr_assert_eq(c.n, model_n_live(w), "a live message is missing on disk");
	oldest = spool_oldest_segment(w->sp, &n_live);
	for (size_t i = 0; i < w->n_msgs; i++) {
		if (w->msgs[i].status != M_LIVE)
			continue;
		cr_assert_geq(w->msgs[i].loc.segment, oldest);
		count += w->msgs[i].loc.segment == oldest;
	}
	cr_assert_eq(n_live, count, "live count of the oldest segment %llu",
		     (unsigned long long)oldest);
	cr_assert(segment_exists(oldest) || oldest == spool_current_segment(w->sp));
	for (uint64_t s = 1; s < oldest; s++)
		cr_assert(!segment_exists(s), "segment %llu older than the oldest",
			  (unsigned long long)s);
	expect_counters_match_disk(w->sp);
}

static void model_collect(struct model *w)
{
	model_flush(w);
	w->n_collected += spool_collect(w->sp, model_rand(w, 2) ? 0 : 4096);
	model_check_disk(w);
}

static void model_reopen(struct model *w)
{
	struct model_check c = {.w = w};

	model_flush(w);
	spool_close(w->sp);
	w->sp = open_at(tmpdir, w->segment_max, model_check_entry, &c);
	cr_assert_eq(c.n, model_n_live(w), "a live message is missing after reopen");
	expect_counters_match_disk(w->sp);
	w->n_reopens++;
}

static void model_step(struct model *w)
{
	uint64_t r = model_rand(w, 100);

	if (r < 25)
		model_new(w);
	else if (r < 50)
		model_state(w);
	else if (r < 60)
		model_tombstone(w);
	else if (r < 67)
		model_copy(w);
	else if (r < 88)
		model_flush(w);
	else if (r < 99)
		model_collect(w);
	else
		model_reopen(w);
}

static void model_run(uint64_t seed, uint64_t segment_max, unsigned steps)
{
	struct model *w = calloc(1, sizeof(*w));

	w->rng = seed;
	w->segment_max = segment_max;
	w->sp = open_at(tmpdir, segment_max, NULL, NULL);
	for (unsigned i = 0; i < steps; i++)
		model_step(w);
	model_collect(w);
	model_reopen(w);
	/* Tombstone everything: the spool collects back to one small segment. */
	for (size_t i = 0; i < w->n_msgs; i++) {
		struct model_msg *x = &w->msgs[i];

		if (x->status != M_LIVE)
			continue;
		cr_assert_eq(spool_append_tombstone(w->sp, x->m.id, model_token(i, TOKEN_TOMB)),
			     PT_OK);
		x->status = M_TOMB_PENDING;
	}
	model_flush(w);
	spool_collect(w->sp, 0);
	model_check_disk(w);
	cr_assert_eq(spool_segments(w->sp), 1);
	cr_assert_eq(spool_bytes(w->sp), 48);
	cr_assert_gt(w->n_collected, 0, "seed %llu: the test collected nothing",
		     (unsigned long long)seed);
	cr_assert_gt(w->n_copies, 0);
	cr_assert_gt(w->n_tombs, 0);
	model_reopen(w);
	spool_close(w->sp);
	for (size_t i = 0; i < w->n_msgs; i++)
		pt_message_clear(&w->msgs[i].m);
	free(w);
	test_tmpdir_remove(tmpdir);
	cr_assert_eq(mkdir(tmpdir, 0700), 0);
}

Test(spool_gc, random_model_small_segments)
{
	model_run(0x9e3779b97f4a7c15ull, 1500, 3000);
	model_run(0x243f6a8885a308d3ull, 4000, 3000);
}

Test(spool_gc, random_model_one_batch_per_segment)
{
	model_run(0x13198a2e03707344ull, 1, 2000);
}
