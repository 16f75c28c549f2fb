/*
 * spool_state_test.c -- RCPT_STATE records and reading back by location:
 * the record's exact bytes; recipient states survive a reopen (attempts,
 * due, done) in recipient order; the newest state wins, across batches,
 * segments and squeezes of the recovery index; a newer copy of a message
 * (compaction) resets its states; states of a tombstoned or unknown message
 * or of a recipient the message does not have are ignored; a segment that
 * holds the state that counts is not deleted at open; spool_done_fn's loc
 * says where each MESSAGE record landed (NULL for other records and on
 * failure), and spool_decode_record of the bytes read there gives the
 * message back, PT_CORRUPT for a flipped byte, a wrong id or a wrong
 * length; a torn tail cut at every byte with states in it recovers exactly
 * the states of the whole records before the cut.
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
#include "tests/unit/spool_test_util.h"

SPOOL_TEST_SUITE(spool_state, 5, 120);

#define MAX_ENTRIES 64
#define MAX_STATES  8

/* What spool_open / spool_scan reported, states copied out of the callback. */
struct found {
	struct spool_entry e[MAX_ENTRIES];
	struct spool_rcpt_state st[MAX_ENTRIES][MAX_STATES];
	size_t n;
};

static void collect(void *arg, const struct spool_entry *e)
{
	struct found *f = arg;

	cr_assert_lt(f->n, MAX_ENTRIES);
	cr_assert_leq(e->n_states, MAX_STATES);
	cr_assert_eq(e->n_states == 0, e->states == NULL,
		     "states NULL exactly when there are none");
	f->e[f->n] = *e;
	if (e->n_states > 0)
		memcpy(f->st[f->n], e->states, e->n_states * sizeof(*e->states));
	f->e[f->n].states = f->st[f->n];
	f->n++;
}

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
	pt_message_set_meta(m, "campaign", "\"spring\"");
	n = snprintf(s, sizeof(s), "Subject: message %zu\r\n\r\nbody %zu\r\n", i, i);
	pt_buf_append(&m->data, s, (size_t)n);
	pt_message_scan_headers(m);
	pt_message_prepend_header(m, "Received", "from state test");
	pt_message_append_header(m, "X-Appended", "1");
}

static struct spool *open_at(const char *path, uint64_t segment_max, struct found *f)
{
	struct spool_config cfg = {.path = path, .shard = 0, .segment_max = segment_max};
	struct spool *sp = NULL;
	char err[512] = "";

	f->n = 0;
	cr_assert_eq(spool_open(&sp, &cfg, collect, f, err, sizeof(err)), PT_OK, "%s", err);
	return sp;
}

static void flush(struct spool *sp)
{
	cr_assert_eq(spool_flush_sync(sp, NULL, NULL), PT_OK);
}

static struct spool_rcpt_state state(uint32_t rcpt, bool done, uint32_t attempts, uint64_t due)
{
	struct spool_rcpt_state st = {
	    .rcpt = rcpt, .done = done, .num_attempts = attempts, .due_us = due};

	return st;
}

static void put_state(struct spool *sp, const char *id, uint32_t rcpt, bool done, uint32_t attempts,
		      uint64_t due)
{
	struct spool_rcpt_state st = state(rcpt, done, attempts, due);

	cr_assert_eq(spool_append_rcpt_state(sp, id, &st, NULL), PT_OK);
}

/* The entry for id in f, or NULL. */
static const struct spool_entry *find(const struct found *f, const char *id)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->e[i].id, id) == 0)
			return &f->e[i];
	return NULL;
}

static void expect_state(const struct spool_entry *e, size_t k, struct spool_rcpt_state want)
{
	cr_assert_lt(k, e->n_states, "%s: state %zu missing", e->id, k);
	cr_assert_eq(e->states[k].rcpt, want.rcpt, "%s: state %zu rcpt", e->id, k);
	cr_assert_eq(e->states[k].done, want.done, "%s: state %zu done", e->id, k);
	cr_assert_eq(e->states[k].num_attempts, want.num_attempts, "%s: state %zu attempts", e->id,
		     k);
	cr_assert_eq(e->states[k].due_us, want.due_us, "%s: state %zu due", e->id, k);
}

static off_t file_size(const char *file)
{
	struct stat st;

	return stat(file, &st) == 0 ? st.st_size : -1;
}

static void segment_file(const char *path, uint64_t seq, char *out, size_t len)
{
	snprintf(out, len, "%s/0/%016llx.seg", path, (unsigned long long)seq);
}

Test(spool_state, record_bytes_match_the_format_table)
{
	struct spool_rcpt_state st = state(7, true, 0x01020304u, 0x1122334455667788ull);
	struct spool_rcpt_state back;
	struct spool_record_header h;
	struct pt_buf b = PT_BUF_INIT;
	char id[PT_ID_LEN + 1];
	const uint8_t *p;

	pt_id_next(&idgen, id);
	cr_assert_eq(spool_record_encode_rcpt_state(&b, id, &st), PT_OK);
	cr_assert_eq(b.len, 16 + 56);
	p = (const uint8_t *)b.data;
	cr_assert_eq(memcmp(p, "PTSR", 4), 0);
	cr_assert_eq(p[4], 4, "type RCPT_STATE");
	cr_assert_eq(p[5] | p[6] | p[7], 0);
	cr_assert_eq(spool_get_le32(p + 8), 56);
	cr_assert_null(spool_record_check_header(p, &h));
	cr_assert_eq(h.type, SPOOL_RECORD_RCPT_STATE);
	cr_assert(spool_record_crc_ok(p, p + 16, 56, 0));
	p += 16;
	cr_assert_eq(memcmp(p, id, 32), 0);
	cr_assert_eq(memcmp(p + 32, "\x07\x00\x00\x00", 4), 0, "rcpt");
	cr_assert_eq(memcmp(p + 36, "\x01\x00\x00\x00", 4), 0, "flags: done");
	cr_assert_eq(memcmp(p + 40, "\x04\x03\x02\x01", 4), 0, "num_attempts");
	cr_assert_eq(memcmp(p + 44, "\x00\x00\x00\x00", 4), 0, "reserved");
	cr_assert_eq(memcmp(p + 48, "\x88\x77\x66\x55\x44\x33\x22\x11", 8), 0, "due_us");
	cr_assert_null(spool_record_check_rcpt_state(p, 56, &back));
	cr_assert_eq(back.rcpt, 7);
	cr_assert(back.done);
	cr_assert_eq(back.num_attempts, 0x01020304u);
	cr_assert_eq(back.due_us, 0x1122334455667788ull);
	cr_assert_str_eq(spool_record_type_name(SPOOL_RECORD_RCPT_STATE), "rcpt_state");
	pt_buf_free(&b);
}

Test(spool_state, bad_payloads_are_refused)
{
	struct spool_rcpt_state st = state(1, false, 2, 3), back;
	struct pt_buf b = PT_BUF_INIT;
	char id[PT_ID_LEN + 1];
	uint8_t p[56];
	struct spool_config cfg = {.path = tmpdir};
	struct spool *sp = NULL;
	char err[256];

	pt_id_next(&idgen, id);
	cr_assert_eq(spool_record_encode_rcpt_state(&b, id, &st), PT_OK);
	memcpy(p, b.data + 16, 56);
	p[36] = 2; /* an unknown flag */
	cr_assert_str_eq(spool_record_check_rcpt_state(p, 56, &back),
			 "nonzero reserved rcpt_state bits");
	p[36] = 0;
	p[45] = 1;
	cr_assert_str_eq(spool_record_check_rcpt_state(p, 56, &back),
			 "nonzero reserved rcpt_state bits");
	p[45] = 0;
	p[0] = 'X';
	cr_assert_str_eq(spool_record_check_rcpt_state(p, 56, &back), "bad id in rcpt_state");
	cr_assert_str_eq(spool_record_check_rcpt_state(p, 55, &back), "bad rcpt_state length");
	/* The header check bounds the length by type. */
	spool_put_le32((uint8_t *)b.data + 8, 57);
	cr_assert_str_eq(
	    spool_record_check_header((const uint8_t *)b.data, &(struct spool_record_header){0}),
	    "bad rcpt_state length");
	pt_buf_free(&b);

	cr_assert_eq(spool_open(&sp, &cfg, NULL, NULL, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(spool_append_rcpt_state(sp, "not-an-id", &st, NULL), PT_ERROR);
	cr_assert_eq(spool_append_rcpt_state(sp, "0123456789ABCDEF0123456789abcdef", &st, NULL),
		     PT_ERROR);
	cr_assert(!spool_batch_ready(sp), "nothing queued");
	spool_close(sp);
}

Test(spool_state, states_survive_reopen_in_rcpt_order)
{
	struct pt_message a, b;
	struct found f;
	const struct spool_entry *e;
	struct spool *sp = open_at(tmpdir, 0, &f);

	make_message(&a, 1, 4);
	make_message(&b, 2, 2);
	cr_assert_eq(spool_append_message(sp, &a, NULL), PT_OK);
	cr_assert_eq(spool_append_message(sp, &b, NULL), PT_OK);
	flush(sp);
	put_state(sp, a.id, 3, false, 2, 1764064300000000ull);
	put_state(sp, a.id, 0, true, 1, 0);
	put_state(sp, a.id, 2, false, 5, 1764064999000000ull);
	flush(sp);
	spool_close(sp);

	for (int round = 0; round < 3; round++) {
		sp = open_at(tmpdir, 0, &f);
		cr_assert_eq(f.n, 2);
		e = find(&f, a.id);
		cr_assert_not_null(e);
		cr_assert_eq(e->n_rcpts, 4);
		cr_assert_eq(e->n_states, 3, "round %d", round);
		expect_state(e, 0, state(0, true, 1, 0));
		expect_state(e, 1, state(2, false, 5, 1764064999000000ull));
		expect_state(e, 2, state(3, false, 2, 1764064300000000ull));
		e = find(&f, b.id);
		cr_assert_not_null(e);
		cr_assert_eq(e->n_states, 0);
		spool_close(sp);
	}
	pt_message_clear(&a);
	pt_message_clear(&b);
}

/* The newest state of a recipient wins, wherever it is; with segment_max = 1
 * every batch is its own segment, and the segments that hold only states
 * (no live message, no tombstone) must survive open while a state in them
 * counts. */
Test(spool_state, newest_wins_across_segments_and_pins_its_segment)
{
	struct pt_message m;
	struct found f;
	const struct spool_entry *e;
	struct spool *sp = open_at(tmpdir, 1, &f);
	char file[200];

	make_message(&m, 1, 2);
	cr_assert_eq(spool_append_message(sp, &m, NULL), PT_OK);
	flush(sp); /* m in 1 */
	put_state(sp, m.id, 0, false, 1, 100);
	put_state(sp, m.id, 1, false, 1, 200);
	flush(sp); /* 2 */
	put_state(sp, m.id, 0, false, 2, 300);
	put_state(sp, m.id, 0, true, 3, 0);
	flush(sp); /* 3: rcpt 0 done */
	put_state(sp, m.id, 1, false, 2, 400);
	flush(sp); /* 4: rcpt 1's newest */
	spool_close(sp);

	for (int round = 0; round < 2; round++) {
		sp = open_at(tmpdir, 1, &f);
		cr_assert_eq(f.n, 1);
		e = &f.e[0];
		cr_assert_eq(e->segment, 1);
		cr_assert_eq(e->n_states, 2);
		expect_state(e, 0, state(0, true, 3, 0));
		expect_state(e, 1, state(1, false, 2, 400));
		spool_close(sp);
		segment_file(tmpdir, 2, file, sizeof(file));
		cr_assert_eq(file_size(file), -1, "2's states are all superseded: deleted");
		segment_file(tmpdir, 3, file, sizeof(file));
		cr_assert_gt(file_size(file), 48, "3 holds rcpt 0's newest state: kept");
		segment_file(tmpdir, 4, file, sizeof(file));
		cr_assert_gt(file_size(file), 48, "4 holds rcpt 1's newest state: kept");
	}
	pt_message_clear(&m);
}

/* A second MESSAGE record with the same id (compaction) resets the states;
 * states written after it count again. */
Test(spool_state, compaction_copy_resets_states)
{
	struct pt_message m;
	struct found f;
	const struct spool_entry *e;
	struct spool *sp = open_at(tmpdir, 0, &f);

	make_message(&m, 1, 3);
	cr_assert_eq(spool_append_message(sp, &m, NULL), PT_OK);
	flush(sp);
	put_state(sp, m.id, 0, true, 1, 0);
	put_state(sp, m.id, 2, false, 4, 555);
	flush(sp);
	spool_close(sp);

	sp = open_at(tmpdir, 0, &f);
	cr_assert_eq(f.n, 1);
	cr_assert_eq(f.e[0].n_states, 2);
	cr_assert_eq(f.e[0].segment, 1);
	/* The copy, without its states: every recipient is pending again. */
	cr_assert_eq(spool_append_message(sp, &m, NULL), PT_OK);
	flush(sp);
	spool_close(sp);
	sp = open_at(tmpdir, 0, &f);
	cr_assert_eq(f.n, 1, "one entry for the id");
	cr_assert_eq(f.e[0].segment, 2, "at the newest copy");
	cr_assert_eq(f.e[0].offset, 48);
	cr_assert_eq(f.e[0].n_states, 0, "the copy reset the states");
	/* Compaction writes the states again after the copy. */
	cr_assert_eq(spool_append_message(sp, &m, NULL), PT_OK);
	put_state(sp, m.id, 2, false, 4, 555);
	flush(sp);
	spool_close(sp);
	sp = open_at(tmpdir, 0, &f);
	cr_assert_eq(f.n, 1);
	e = &f.e[0];
	cr_assert_eq(e->segment, 3);
	cr_assert_eq(e->n_states, 1);
	expect_state(e, 0, state(2, false, 4, 555));
	spool_close(sp);
	pt_message_clear(&m);
}

/* States of a tombstoned message, of an unknown id and of a recipient past
 * the message's count are ignored; the others' states are untouched. */
Test(spool_state, ignored_states)
{
	struct pt_message a, b;
	char unknown[PT_ID_LEN + 1];
	struct found f;
	const struct spool_entry *e;
	struct spool *sp = open_at(tmpdir, 0, &f);
	uint64_t n_bad = 9;
	char err[256];

	make_message(&a, 1, 2);
	make_message(&b, 2, 2);
	pt_id_next(&idgen, unknown);
	/* A state before its message exists: nothing to apply it to. */
	put_state(sp, b.id, 0, true, 9, 9);
	cr_assert_eq(spool_append_message(sp, &a, NULL), PT_OK);
	cr_assert_eq(spool_append_message(sp, &b, NULL), PT_OK);
	put_state(sp, a.id, 0, false, 1, 10);
	put_state(sp, b.id, 1, false, 2, 20);
	put_state(sp, unknown, 0, true, 1, 0);
	put_state(sp, b.id, 2, true, 1, 0); /* b has recipients 0 and 1 */
	put_state(sp, b.id, 0xffffffffu, true, 1, 0);
	flush(sp);
	cr_assert_eq(spool_append_tombstone(sp, a.id, NULL), PT_OK);
	put_state(sp, a.id, 1, false, 3, 30); /* after the tombstone */
	flush(sp);
	spool_close(sp);

	for (int round = 0; round < 2; round++) {
		sp = open_at(tmpdir, 0, &f);
		cr_assert_eq(f.n, 1);
		e = &f.e[0];
		cr_assert_str_eq(e->id, b.id);
		cr_assert_eq(e->n_states, 1);
		expect_state(e, 0, state(1, false, 2, 20));
		spool_close(sp);
	}
	/* The read-only scan reports the same, and no record is bad. */
	f.n = 0;
	cr_assert_eq(spool_scan(tmpdir, 0, collect, &f, &n_bad, err, sizeof(err)), PT_OK, "%s",
		     err);
	cr_assert_eq(n_bad, 0);
	cr_assert_eq(f.n, 1);
	cr_assert_eq(f.e[0].n_states, 1);
	expect_state(&f.e[0], 0, state(1, false, 2, 20));
	pt_message_clear(&a);
	pt_message_clear(&b);
}

/* Far more state records than the index starts with (so it is squeezed many
 * times), interleaved with a copy and other messages' tombstones: the newest
 * state of each recipient after the newest copy wins. */
Test(spool_state, many_retries_squeeze_correctly)
{
	struct pt_message m[4];
	struct found f;
	const struct spool_entry *e;
	struct spool *sp = open_at(tmpdir, 0, &f);

	for (size_t i = 0; i < 4; i++) {
		make_message(&m[i], i, 3);
		cr_assert_eq(spool_append_message(sp, &m[i], NULL), PT_OK);
	}
	flush(sp);
	for (uint32_t k = 1; k <= 3000; k++) {
		put_state(sp, m[k % 4].id, k % 3, false, k, 1000 + k);
		if (k == 2990)
			cr_assert_eq(spool_append_message(sp, &m[1], NULL), PT_OK); /* a copy */
		if (k == 2000)
			cr_assert_eq(spool_append_tombstone(sp, m[2].id, NULL), PT_OK);
		if (k % 500 == 0)
			flush(sp);
	}
	flush(sp);
	spool_close(sp);
	sp = open_at(tmpdir, 0, &f);
	cr_assert_eq(f.n, 3);
	/* m0: k = 0 mod 4; newest k for rcpt r: largest k <= 3000 with k%4==0, k%3==r. */
	e = find(&f, m[0].id);
	cr_assert_not_null(e);
	cr_assert_eq(e->n_states, 3);
	expect_state(e, 0, state(0, false, 3000, 4000));
	expect_state(e, 1, state(1, false, 2992, 3992));
	expect_state(e, 2, state(2, false, 2996, 3996));
	/* m1 was copied after k = 2990: only 2993 (rcpt 2) and 2997 (rcpt 0)
	 * follow the copy; rcpt 1's newest (2989) came before it. */
	e = find(&f, m[1].id);
	cr_assert_not_null(e);
	cr_assert_eq(e->n_states, 2);
	expect_state(e, 0, state(0, false, 2997, 3997));
	expect_state(e, 1, state(2, false, 2993, 3993));
	cr_assert_null(find(&f, m[2].id), "tombstoned");
	e = find(&f, m[3].id);
	cr_assert_not_null(e);
	cr_assert_eq(e->n_states, 3);
	expect_state(e, 0, state(0, false, 2991, 3991));
	expect_state(e, 1, state(1, false, 2995, 3995));
	expect_state(e, 2, state(2, false, 2999, 3999));
	spool_close(sp);
	for (size_t i = 0; i < 4; i++)
		pt_message_clear(&m[i]);
}

/* ---- Locations and spool_decode_record ---- */

struct loc_log {
	size_t n;
	void *token[16];
	int status[16];
	bool has_loc[16];
	struct spool_loc loc[16];
};

static void log_loc(void *arg, void *token, int status, const struct spool_loc *loc)
{
	struct loc_log *l = arg;

	cr_assert_lt(l->n, 16);
	l->token[l->n] = token;
	l->status[l->n] = status;
	l->has_loc[l->n] = loc != NULL;
	if (loc != NULL)
		l->loc[l->n] = *loc;
	l->n++;
}

/* The record bytes at loc, read with pread through spool_read_fd. */
static char *read_at(struct spool *sp, const struct spool_loc *loc)
{
	int fd = spool_read_fd(sp, loc->segment);
	char *buf = malloc(loc->length);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, buf, loc->length, (off_t)loc->offset), (ssize_t)loc->length);
	return buf;
}

/* m2 equals m: envelope, meta, and the body bytes as stored. */
static void expect_same_message(const struct pt_message *m, struct pt_message *m2)
{
	struct iovec iov[4];
	struct pt_buf want = PT_BUF_INIT;
	int n = pt_message_iov(m, iov);

	for (int i = 0; i < n; i++)
		pt_buf_append(&want, iov[i].iov_base, iov[i].iov_len);
	cr_assert_str_eq(m2->id, m->id);
	cr_assert_eq(m2->created_us, m->created_us);
	cr_assert_str_eq(m2->sender, m->sender);
	cr_assert_eq(m2->n_rcpts, m->n_rcpts);
	for (size_t i = 0; i < m->n_rcpts; i++)
		cr_assert_str_eq(m2->rcpts[i], m->rcpts[i]);
	cr_assert_eq(m2->n_meta, m->n_meta);
	for (size_t i = 0; i < m->n_meta; i++) {
		cr_assert_str_eq(m2->meta[i].key, m->meta[i].key);
		cr_assert_str_eq(m2->meta[i].json, m->meta[i].json);
	}
	cr_assert_eq(m2->data.len, want.len);
	cr_assert_eq(memcmp(m2->data.data, want.data, want.len), 0);
	cr_assert_eq(m2->prefix.len, 0);
	cr_assert_eq(m2->appended.len, 0);
	/* header_end: the blank line, found again in the composed body. */
	cr_assert_eq(m2->header_end,
		     (size_t)(strstr(pt_buf_cstr(&want), "\r\n\r\n") + 2 - want.data));
	pt_buf_free(&want);
}

Test(spool_state, loc_points_at_the_record_and_decodes_back)
{
	struct pt_message a, b, back;
	struct loc_log l = {.n = 0};
	struct found f;
	struct spool *sp = open_at(tmpdir, 0, &f);
	const char *why = NULL;
	uint64_t off_b;
	char *rec;

	make_message(&a, 1, 3);
	make_message(&b, 2, 1);
	cr_assert_eq(spool_append_message(sp, &a, (void *)1), PT_OK);
	cr_assert_eq(spool_append_tombstone(sp, a.id, (void *)2), PT_OK);
	put_state(sp, b.id, 0, false, 1, 5); /* token NULL */
	cr_assert_eq(spool_append_message(sp, &b, (void *)4), PT_OK);
	cr_assert_eq(spool_flush_sync(sp, log_loc, &l), PT_OK);
	cr_assert_eq(l.n, 4);
	cr_assert_eq(l.token[0], (void *)1);
	cr_assert(l.has_loc[0]);
	cr_assert_eq(l.loc[0].segment, 1);
	cr_assert_eq(l.loc[0].offset, 48);
	cr_assert_eq(l.loc[0].length, spool_record_message_len(&a));
	cr_assert(!l.has_loc[1], "a tombstone has no loc");
	cr_assert(!l.has_loc[2], "a state has no loc");
	cr_assert_eq(l.token[3], (void *)4);
	cr_assert(l.has_loc[3]);
	off_b = 48 + spool_record_message_len(&a) + 48 + 72;
	cr_assert_eq(l.loc[3].segment, 1);
	cr_assert_eq(l.loc[3].offset, off_b);
	cr_assert_eq(l.loc[3].length, spool_record_message_len(&b));
	for (size_t i = 0; i < 4; i++)
		cr_assert_eq(l.status[i], PT_OK);

	rec = read_at(sp, &l.loc[0]);
	pt_message_init(&back);
	cr_assert_eq(spool_decode_record(rec, l.loc[0].length, spool_segment_mask(sp, 1), a.id, &back, &why), PT_OK, "%s",
		     why);
	expect_same_message(&a, &back);
	pt_message_clear(&back);
	/* Stored under segment 1's mask (format 2): unmasked, the CRC fails. */
	cr_assert_eq(spool_segment_mask(sp, 1), 1);
	cr_assert_eq(spool_decode_record(rec, l.loc[0].length, 0, a.id, &back, &why), PT_CORRUPT);
	cr_assert_str_eq(why, "CRC mismatch");
	pt_message_clear(&back);
	/* expect_id NULL: no id check. */
	cr_assert_eq(spool_decode_record(rec, l.loc[0].length, spool_segment_mask(sp, 1), NULL, &back, &why), PT_OK);
	pt_message_clear(&back);
	/* Another id expected: the location holds someone else's record. */
	cr_assert_eq(spool_decode_record(rec, l.loc[0].length, spool_segment_mask(sp, 1), b.id, &back, &why), PT_CORRUPT);
	cr_assert_str_eq(why, "another message's record");
	pt_message_clear(&back);
	/* A length that is not the record's. */
	cr_assert_eq(spool_decode_record(rec, l.loc[0].length - 1, spool_segment_mask(sp, 1), a.id, &back, &why), PT_CORRUPT);
	cr_assert_str_eq(why, "record length does not match its location");
	pt_message_clear(&back);
	cr_assert_eq(spool_decode_record(rec, 20, spool_segment_mask(sp, 1), a.id, &back, &why), PT_CORRUPT);
	pt_message_clear(&back);
	/* Every single byte flipped is caught. */
	for (uint32_t i = 0; i < l.loc[0].length; i++) {
		rec[i] ^= 0x10;
		why = NULL;
		cr_assert_eq(spool_decode_record(rec, l.loc[0].length, spool_segment_mask(sp, 1), a.id, &back, &why),
			     PT_CORRUPT, "byte %u", i);
		cr_assert_not_null(why);
		pt_message_clear(&back);
		rec[i] ^= 0x10;
	}
	free(rec);

	rec = read_at(sp, &l.loc[3]);
	cr_assert_eq(spool_decode_record(rec, l.loc[3].length, spool_segment_mask(sp, 1), b.id, &back, &why), PT_OK);
	expect_same_message(&b, &back);
	pt_message_clear(&back);
	free(rec);
	/* A tombstone's bytes are not a message. */
	rec = read_at(sp, &(struct spool_loc){.segment = 1,
					      .offset = l.loc[0].offset + l.loc[0].length,
					      .length = 48});
	cr_assert_eq(spool_decode_record(rec, 48, spool_segment_mask(sp, 1), a.id, &back, &why), PT_CORRUPT);
	pt_message_clear(&back);
	free(rec);
	spool_close(sp);
	pt_message_clear(&a);
	pt_message_clear(&b);
}

/* The loc names the batch's segment even when the batch rotated it; a failed
 * batch gets no loc. */
Test(spool_state, loc_across_rotation_and_failure)
{
	struct pt_message a, b, back;
	struct loc_log l = {.n = 0};
	struct found f;
	struct spool *sp = open_at(tmpdir, 1, &f);
	struct spool_io io;
	const char *why;
	char *rec;

	make_message(&a, 1, 1);
	make_message(&b, 2, 1);
	cr_assert_eq(spool_append_message(sp, &a, (void *)1), PT_OK);
	cr_assert_eq(spool_flush_sync(sp, log_loc, &l), PT_OK);
	cr_assert_eq(spool_current_segment(sp), 2, "rotated before the callback");
	cr_assert(l.has_loc[0]);
	cr_assert_eq(l.loc[0].segment, 1);
	cr_assert_eq(l.loc[0].offset, 48);
	rec = read_at(sp, &l.loc[0]);
	pt_message_init(&back);
	cr_assert_eq(spool_decode_record(rec, l.loc[0].length, spool_segment_mask(sp, 1), a.id, &back, &why), PT_OK);
	pt_message_clear(&back);
	free(rec);

	cr_assert_eq(spool_append_message(sp, &b, (void *)2), PT_OK);
	cr_assert_eq(spool_batch_start(sp, &io), PT_OK);
	spool_batch_done(sp, -EIO, -ECANCELED, log_loc, &l);
	cr_assert_eq(l.n, 2);
	cr_assert_eq(l.status[1], PT_ERROR);
	cr_assert(!l.has_loc[1], "no loc on failure");
	spool_close(sp);
	pt_message_clear(&a);
	pt_message_clear(&b);
}

Test(spool_state, read_fd_cached_per_segment)
{
	struct pt_message a;
	struct found f;
	struct spool *sp = open_at(tmpdir, 1, &f);
	int fd1, fd2;

	make_message(&a, 1, 1);
	cr_assert_eq(spool_append_message(sp, &a, NULL), PT_OK);
	flush(sp); /* a in 1; current 2 */
	fd1 = spool_read_fd(sp, 1);
	cr_assert_geq(fd1, 0);
	cr_assert_eq(spool_read_fd(sp, 1), fd1, "cached");
	fd2 = spool_read_fd(sp, 2);
	cr_assert_geq(fd2, 0, "the current segment can be read");
	cr_assert_neq(fd2, fd1);
	cr_assert_eq(fcntl(fd2, F_GETFL) & O_ACCMODE, O_RDONLY);
	cr_assert(fcntl(fd2, F_GETFD) & FD_CLOEXEC);
	cr_assert_eq(spool_read_fd(sp, 3), -1, "no such segment");
	cr_assert_eq(spool_read_fd(sp, 0), -1);
	/* Rotation does not touch the read fd of the old current segment. */
	cr_assert_eq(spool_append_tombstone(sp, a.id, NULL), PT_OK);
	flush(sp); /* 2 rotates to 3 */
	cr_assert_eq(spool_current_segment(sp), 3);
	cr_assert_eq(spool_read_fd(sp, 2), fd2);
	cr_assert_eq(fcntl(fd2, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC, "still open");
	spool_close(sp);
	pt_message_clear(&a);
}

/* ---- Torn tail with states ---- */

enum rec_kind { REC_MSG, REC_TOMB, REC_STATE };

struct rec {
	enum rec_kind kind;
	size_t msg;
	struct spool_rcpt_state st;
	uint64_t end; /* file offset just past it */
};

#define TORN_MSGS 3

/* What recovery must report for the records ending at or before cut. */
static void torn_expect(const struct rec *recs, size_t n_recs, uint64_t cut, bool live[],
			struct spool_rcpt_state st[][4], bool has[][4])
{
	memset(live, 0, TORN_MSGS * sizeof(*live));
	memset(has, 0, TORN_MSGS * sizeof(*has));
	for (size_t i = 0; i < n_recs && recs[i].end <= cut; i++) {
		const struct rec *r = &recs[i];

		if (r->kind == REC_MSG) {
			live[r->msg] = true;
			memset(has[r->msg], 0, sizeof(has[r->msg]));
		} else if (r->kind == REC_TOMB) {
			live[r->msg] = false;
		} else if (live[r->msg] && r->st.rcpt < 4) {
			st[r->msg][r->st.rcpt] = r->st;
			has[r->msg][r->st.rcpt] = true;
		}
	}
}

static void copy_prefix(const char *src, const char *dst, size_t len)
{
	char *buf = malloc(len + 1);
	int in = open(src, O_RDONLY), out;

	cr_assert_geq(in, 0);
	cr_assert_eq(pread(in, buf, len, 0), (ssize_t)len);
	close(in);
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	cr_assert_geq(out, 0);
	cr_assert_eq(write(out, buf, len), (ssize_t)len);
	close(out);
	free(buf);
}

static void torn_check(const struct pt_message *m, const struct found *f, const bool live[],
		       struct spool_rcpt_state st[][4], bool has[][4], uint64_t cut)
{
	size_t n_live = 0;

	for (size_t i = 0; i < TORN_MSGS; i++) {
		const struct spool_entry *e = find(f, m[i].id);
		size_t k = 0;

		cr_assert_eq(e != NULL, live[i], "cut %llu: message %zu", (unsigned long long)cut,
			     i);
		if (e == NULL)
			continue;
		n_live++;
		for (uint32_t r = 0; r < 4; r++)
			if (has[i][r])
				expect_state(e, k++, st[i][r]);
		cr_assert_eq(e->n_states, k, "cut %llu: message %zu", (unsigned long long)cut, i);
	}
	cr_assert_eq(f->n, n_live);
}

/*
 * One segment: messages, states (a copy in the middle resets one message's)
 * and a tombstone.  Cut at every byte, recovery reports exactly the messages
 * and the newest states of the records wholly before the cut.
 */
Test(spool_state, torn_tail_at_every_byte_with_states)
{
	struct pt_message m[TORN_MSGS];
	struct rec recs[32];
	size_t n_recs = 0;
	struct spool_rcpt_state st[TORN_MSGS][4];
	bool live[TORN_MSGS], has[TORN_MSGS][4];
	char src[200], dir[100], file[200];
	struct found f;
	struct spool *sp = open_at(tmpdir, 0, &f);
	uint64_t end = 48;

	for (size_t i = 0; i < TORN_MSGS; i++)
		make_message(&m[i], i, 3);
#define ADD_MSG(i)                                                                                 \
	do {                                                                                       \
		cr_assert_eq(spool_append_message(sp, &m[i], NULL), PT_OK);                        \
		end += spool_record_message_len(&m[i]);                                            \
		recs[n_recs++] = (struct rec){REC_MSG, i, {0}, end};                               \
	} while (0)
#define ADD_STATE(i, r, d, a, due)                                                                 \
	do {                                                                                       \
		put_state(sp, m[i].id, r, d, a, due);                                              \
		end += 72;                                                                         \
		recs[n_recs++] = (struct rec){REC_STATE, i, state(r, d, a, due), end};             \
	} while (0)
	ADD_MSG(0);
	ADD_MSG(1);
	flush(sp);
	ADD_STATE(0, 1, false, 1, 1000);
	ADD_STATE(1, 0, true, 1, 0);
	ADD_STATE(0, 1, false, 2, 2000);
	flush(sp);
	ADD_MSG(2);
	ADD_STATE(0, 2, true, 1, 0);
	ADD_MSG(0); /* a compaction copy of 0 */
	ADD_STATE(0, 1, false, 2, 2000);
	flush(sp);
	ADD_STATE(2, 0, false, 7, 7000);
	cr_assert_eq(spool_append_tombstone(sp, m[1].id, NULL), PT_OK);
	end += 48;
	recs[n_recs++] = (struct rec){REC_TOMB, 1, {0}, end};
	ADD_STATE(1, 1, false, 3, 3000); /* after its tombstone: ignored */
	ADD_STATE(0, 0, false, 1, 9000);
	flush(sp);
#undef ADD_MSG
#undef ADD_STATE
	spool_close(sp);
	segment_file(tmpdir, 1, src, sizeof(src));
	cr_assert_eq((uint64_t)file_size(src), end);

	for (uint64_t c = 0; c <= end; c++) {
		snprintf(dir, sizeof(dir), "%s/cut_%llu", tmpdir, (unsigned long long)c);
		snprintf(file, sizeof(file), "%s/0", dir);
		cr_assert_eq(mkdir(dir, 0750), 0);
		cr_assert_eq(mkdir(file, 0750), 0);
		segment_file(dir, 1, file, sizeof(file));
		copy_prefix(src, file, c);
		torn_expect(recs, n_recs, c, live, st, has);
		sp = open_at(dir, 0, &f);
		torn_check(m, &f, live, st, has, c);
		spool_close(sp);
		test_tmpdir_remove(dir);
	}
	for (size_t i = 0; i < TORN_MSGS; i++)
		pt_message_clear(&m[i]);
}
