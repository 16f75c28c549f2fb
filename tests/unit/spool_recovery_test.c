/*
 * spool_recovery_test.c -- spool_open after a clean stop and after crashes:
 * exactly the untombstoned messages come back in spool order, tombstones
 * work across segments, dead segments are deleted only when that cannot
 * bring a message back, a torn tail cut at EVERY byte of the newest segment
 * recovers exactly the records that lie wholly before the cut and truncates
 * the file there (and the spool works afterwards), a bad record in an older
 * segment skips the rest of that segment without truncating it, and files
 * that are not ours stop the open.
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

SPOOL_TEST_SUITE(spool_recovery, 0, 120);

#define MAX_IDS 256

struct ids {
	char id[MAX_IDS][PT_ID_LEN + 1];
	struct spool_entry e[MAX_IDS];
	size_t n;
};

static void collect(void *arg, const struct spool_entry *e)
{
	struct ids *c = arg;

	cr_assert_lt(c->n, MAX_IDS);
	strcpy(c->id[c->n], e->id);
	c->e[c->n++] = *e;
}

static void make_message(struct pt_message *m, size_t i)
{
	char s[128];
	int n;

	pt_message_init(m);
	pt_id_next(&idgen, m->id);
	m->created_us = 1764064245000000ull + i;
	pt_message_set_sender(m, "s@example.com", 13);
	n = snprintf(s, sizeof(s), "r%zu@example.org", i);
	pt_message_add_rcpt(m, s, (size_t)n);
	n = snprintf(s, sizeof(s), "Subject: message %zu\r\n\r\n%.*s\r\n", i, (int)(i % 40),
		     "0123456789012345678901234567890123456789");
	pt_buf_append(&m->data, s, (size_t)n);
	pt_message_scan_headers(m);
	if (i % 3 == 1)
		pt_message_prepend_header(m, "Received", "from test");
	if (i % 4 == 2)
		pt_message_append_header(m, "X-Tag", "t");
}

static struct spool *open_at(const char *path, uint64_t segment_max, struct ids *found)
{
	struct spool_config cfg = {.path = path, .shard = 0, .segment_max = segment_max};
	struct spool *sp = NULL;
	char err[512] = "";

	found->n = 0;
	cr_assert_eq(spool_open(&sp, &cfg, collect, found, err, sizeof(err)), PT_OK, "%s", err);
	return sp;
}

static void expect_ok(void *arg, void *token, int status, const struct spool_loc *loc)
{
	(void)loc;
	(void)token;
	cr_assert_eq(status, PT_OK);
	if (arg != NULL)
		(*(int *)arg)++;
}

static void flush(struct spool *sp)
{
	cr_assert_eq(spool_flush_sync(sp, expect_ok, NULL), PT_OK);
}

/* The segment numbers in <path>/0, ascending. */
static size_t list_segments(const char *path, uint64_t *out, size_t max)
{
	char dir[128];
	uint64_t *seqs;
	size_t n;
	int fd;

	snprintf(dir, sizeof(dir), "%s/0", path);
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(spool_segment_list(fd, &seqs, &n), 0);
	close(fd);
	cr_assert_leq(n, max);
	memcpy(out, seqs, n * sizeof(*seqs));
	free(seqs);
	return n;
}

static void segment_file(const char *path, uint64_t seq, char *out, size_t len)
{
	snprintf(out, len, "%s/0/%016llx.seg", path, (unsigned long long)seq);
}

static off_t file_size(const char *file)
{
	struct stat st;

	if (stat(file, &st) != 0)
		return -1;
	return st.st_size;
}

static void expect_ids(const struct ids *got, char want[][PT_ID_LEN + 1], size_t n)
{
	cr_assert_eq(got->n, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_str_eq(got->id[i], want[i], "entry %zu", i);
}

Test(spool_recovery, reopen_returns_untombstoned_in_order)
{
	struct pt_message m[60];
	char want[60][PT_ID_LEN + 1];
	struct ids found;
	struct spool *sp = open_at(tmpdir, 0, &found);
	size_t n_want = 0;
	int n_ok = 0;

	cr_assert_eq(found.n, 0);
	cr_assert_eq(spool_current_segment(sp), 1);
	for (size_t i = 0; i < 60; i++) {
		make_message(&m[i], i);
		cr_assert_eq(spool_append_message(sp, &m[i], NULL), PT_OK);
		if (i % 10 == 9)
			cr_assert_eq(spool_flush_sync(sp, expect_ok, &n_ok), PT_OK);
	}
	cr_assert_eq(n_ok, 60);
	for (size_t i = 0; i < 60; i += 3)
		cr_assert_eq(spool_append_tombstone(sp, m[i].id, NULL), PT_OK);
	flush(sp);
	for (size_t i = 0; i < 60; i++)
		if (i % 3 != 0)
			strcpy(want[n_want++], m[i].id);
	spool_close(sp);

	sp = open_at(tmpdir, 0, &found);
	expect_ids(&found, want, n_want);
	cr_assert_eq(n_want, 40);
	for (size_t i = 0, k = 0; i < 60; i++) {
		if (i % 3 == 0)
			continue;
		cr_assert_eq(found.e[k].segment, 1);
		cr_assert_eq(found.e[k].n_rcpts, 1);
		cr_assert_eq(found.e[k].created_us, m[i].created_us);
		cr_assert_eq(found.e[k].size, pt_message_size(&m[i]));
		k++;
	}
	cr_assert_eq(spool_current_segment(sp), 2);
	spool_close(sp);
	/* Reopening again changes nothing. */
	sp = open_at(tmpdir, 0, &found);
	expect_ids(&found, want, n_want);
	cr_assert_eq(spool_current_segment(sp), 3);
	spool_close(sp);
	for (size_t i = 0; i < 60; i++)
		pt_message_clear(&m[i]);
}

/* With segment_max = 1 every batch rotates: a message and its tombstone end
 * up in different segments. */
Test(spool_recovery, tombstone_in_later_segment_and_dead_segments_deleted)
{
	struct pt_message a, b, c;
	char want[1][PT_ID_LEN + 1];
	uint64_t segs[16];
	struct ids found;
	struct spool *sp = open_at(tmpdir, 1, &found);

	make_message(&a, 1);
	make_message(&b, 2);
	make_message(&c, 3);
	cr_assert_eq(spool_append_message(sp, &a, NULL), PT_OK);
	flush(sp); /* a in 1 */
	cr_assert_eq(spool_current_segment(sp), 2);
	cr_assert_eq(spool_append_message(sp, &b, NULL), PT_OK);
	flush(sp); /* b in 2 */
	cr_assert_eq(spool_append_message(sp, &c, NULL), PT_OK);
	flush(sp); /* c in 3 */
	cr_assert_eq(spool_append_tombstone(sp, a.id, NULL), PT_OK);
	cr_assert_eq(spool_append_tombstone(sp, c.id, NULL), PT_OK);
	flush(sp); /* tombstones in 4 */
	cr_assert_eq(spool_current_segment(sp), 5);
	cr_assert_eq(spool_segments(sp), 5);
	spool_close(sp);
	cr_assert_eq(list_segments(tmpdir, segs, 16), 5);

	strcpy(want[0], b.id);
	sp = open_at(tmpdir, 1, &found);
	expect_ids(&found, want, 1);
	cr_assert_eq(found.e[0].segment, 2);
	/* 1 (a, dead), 3 (c, dead), 4 (their tombstones), 5 (empty) are gone;
	 * 2 holds b; 6 is new. */
	cr_assert_eq(list_segments(tmpdir, segs, 16), 2);
	cr_assert_eq(segs[0], 2);
	cr_assert_eq(segs[1], 6);
	cr_assert_eq(spool_segments(sp), 2);
	spool_close(sp);
	sp = open_at(tmpdir, 1, &found);
	expect_ids(&found, want, 1);
	spool_close(sp);
	pt_message_clear(&a);
	pt_message_clear(&b);
	pt_message_clear(&c);
}

/* A segment whose tombstone names a message in a segment that must stay
 * (it holds another live message) must stay too, or the message returns. */
Test(spool_recovery, tombstone_segment_kept_while_its_message_segment_lives)
{
	struct pt_message x, y;
	char want[1][PT_ID_LEN + 1];
	uint64_t segs[16];
	struct ids found;
	struct spool *sp = open_at(tmpdir, 1, &found);

	make_message(&x, 1);
	make_message(&y, 2);
	cr_assert_eq(spool_append_message(sp, &x, NULL), PT_OK);
	cr_assert_eq(spool_append_message(sp, &y, NULL), PT_OK);
	flush(sp); /* x, y in 1 */
	cr_assert_eq(spool_append_tombstone(sp, x.id, NULL), PT_OK);
	flush(sp); /* tombstone of x in 2 */
	spool_close(sp);
	strcpy(want[0], y.id);
	for (int round = 0; round < 3; round++) {
		sp = open_at(tmpdir, 1, &found);
		expect_ids(&found, want, 1);
		spool_close(sp);
		cr_assert_eq(list_segments(tmpdir, segs, 16), 3);
		cr_assert_eq(segs[0], 1);
		cr_assert_eq(segs[1], 2, "the tombstone's segment is kept");
	}
	pt_message_clear(&x);
	pt_message_clear(&y);
}

/* Copy the first `len` bytes of src to dst. */
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

#define TORN_N 6

/*
 * The crash test: records M0 M1 T(M0) M2 M3 M4 in one segment; for every cut
 * position c, a spool holding only that segment cut at c recovers exactly the
 * messages whose records end at or before c (M0 back to life when its
 * tombstone is cut), truncates the file to the end of the last whole record
 * (or removes it when the cut is inside the segment header), and then takes
 * a new message that survives another reopen.
 */
Test(spool_recovery, torn_tail_at_every_byte)
{
	struct pt_message m[TORN_N];
	uint64_t ends[TORN_N + 2]; /* record ends: header, M0, M1, T, M2, M3, M4 */
	char src[200], dir[100], file[200], want[TORN_N + 1][PT_ID_LEN + 1];
	struct ids found;
	struct spool *sp = open_at(tmpdir, 0, &found);
	off_t size;

	for (size_t i = 0; i < TORN_N - 1; i++)
		make_message(&m[i], i + 4);
	make_message(&m[TORN_N - 1], 5); /* the message appended after each cut */
	cr_assert_eq(spool_append_message(sp, &m[0], NULL), PT_OK);
	cr_assert_eq(spool_append_message(sp, &m[1], NULL), PT_OK);
	flush(sp);
	cr_assert_eq(spool_append_tombstone(sp, m[0].id, NULL), PT_OK);
	cr_assert_eq(spool_append_message(sp, &m[2], NULL), PT_OK);
	flush(sp);
	cr_assert_eq(spool_append_message(sp, &m[3], NULL), PT_OK);
	cr_assert_eq(spool_append_message(sp, &m[4], NULL), PT_OK);
	flush(sp);
	spool_close(sp);
	segment_file(tmpdir, 1, src, sizeof(src));
	size = file_size(src);
	ends[0] = 48;
	ends[1] = ends[0] + spool_record_message_len(&m[0]);
	ends[2] = ends[1] + spool_record_message_len(&m[1]);
	ends[3] = ends[2] + 48;
	ends[4] = ends[3] + spool_record_message_len(&m[2]);
	ends[5] = ends[4] + spool_record_message_len(&m[3]);
	ends[6] = ends[5] + spool_record_message_len(&m[4]);
	cr_assert_eq((uint64_t)size, ends[6]);

	for (uint64_t c = 0; c <= ends[6]; c++) {
		size_t n_want = 0, whole = 0;

		snprintf(dir, sizeof(dir), "%s/cut_%llu", tmpdir, (unsigned long long)c);
		snprintf(file, sizeof(file), "%s/0", dir);
		cr_assert_eq(mkdir(dir, 0750), 0);
		cr_assert_eq(mkdir(file, 0750), 0);
		segment_file(dir, 1, file, sizeof(file));
		copy_prefix(src, file, c);
		while (whole < TORN_N + 1 && ends[whole] <= c)
			whole++; /* records wholly before c, the header counted */
		if (whole >= 2 && whole < 4)
			strcpy(want[n_want++], m[0].id); /* M0 while its tombstone is cut */
		if (whole >= 3)
			strcpy(want[n_want++], m[1].id);
		for (size_t k = 5; k <= 7; k++)
			if (whole >= k)
				strcpy(want[n_want++], m[k - 3].id);

		sp = open_at(dir, 0, &found);
		expect_ids(&found, want, n_want);
		if (whole <= 1) /* a torn header, or only a header: removed */
			cr_assert_eq(file_size(file), -1, "cut %llu: segment removed",
				     (unsigned long long)c);
		else
			cr_assert_eq(file_size(file), (off_t)ends[whole - 1], "cut %llu",
				     (unsigned long long)c);
		cr_assert_eq(spool_current_segment(sp), 2);
		cr_assert_eq(spool_append_message(sp, &m[TORN_N - 1], NULL), PT_OK);
		flush(sp);
		spool_close(sp);

		strcpy(want[n_want++], m[TORN_N - 1].id);
		sp = open_at(dir, 0, &found);
		expect_ids(&found, want, n_want);
		spool_close(sp);
		test_tmpdir_remove(dir);
	}
	for (size_t i = 0; i < TORN_N; i++)
		pt_message_clear(&m[i]);
}


/* Corruption inside an older segment: the records before it and every later
 * segment survive, the rest of that segment is skipped, nothing is truncated. */
Test(spool_recovery, bad_record_in_older_segment_skips_rest_only)
{
	struct pt_message m[4];
	char want[2][PT_ID_LEN + 1], file[128], err[256];
	uint64_t n_bad = 0;
	struct ids found;
	struct spool *sp = open_at(tmpdir, 1, &found);
	off_t size;

	for (size_t i = 0; i < 4; i++)
		make_message(&m[i], i + 10);
	for (size_t i = 0; i < 3; i++)
		cr_assert_eq(spool_append_message(sp, &m[i], NULL), PT_OK);
	flush(sp); /* m0 m1 m2 in 1 */
	cr_assert_eq(spool_append_message(sp, &m[3], NULL), PT_OK);
	flush(sp); /* m3 in 2 */
	spool_close(sp);
	segment_file(tmpdir, 1, file, sizeof(file));
	size = file_size(file);
	/* Last byte of m1's body. */
	flip_byte(file, 48 + spool_record_message_len(&m[0]) + spool_record_message_len(&m[1]) - 1);

	strcpy(want[0], m[0].id);
	strcpy(want[1], m[3].id);
	found.n = 0;
	cr_assert_eq(spool_scan(tmpdir, 0, collect, &found, &n_bad, err, sizeof(err)), PT_OK);
	expect_ids(&found, want, 2);
	cr_assert_eq(n_bad, 1);
	sp = open_at(tmpdir, 1, &found);
	expect_ids(&found, want, 2);
	spool_close(sp);
	cr_assert_eq(file_size(file), size, "an older segment is never truncated");
	found.n = 0;
	cr_assert_eq(spool_scan(tmpdir, 0, collect, &found, &n_bad, err, sizeof(err)), PT_OK);
	expect_ids(&found, want, 2);
	cr_assert_eq(n_bad, 1);
	for (size_t i = 0; i < 4; i++)
		pt_message_clear(&m[i]);
}

/* A newest segment of zero bytes (crash right after creat) is removed. */
Test(spool_recovery, empty_newest_segment_removed)
{
	struct pt_message m;
	char want[1][PT_ID_LEN + 1], file[128];
	uint64_t segs[8];
	struct ids found;
	struct spool *sp = open_at(tmpdir, 0, &found);
	int fd;

	make_message(&m, 1);
	cr_assert_eq(spool_append_message(sp, &m, NULL), PT_OK);
	flush(sp);
	spool_close(sp);
	segment_file(tmpdir, 2, file, sizeof(file));
	fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0640);
	cr_assert_geq(fd, 0);
	close(fd);
	strcpy(want[0], m.id);
	sp = open_at(tmpdir, 0, &found);
	expect_ids(&found, want, 1);
	cr_assert_eq(file_size(file), -1);
	cr_assert_eq(spool_current_segment(sp), 3);
	spool_close(sp);
	cr_assert_eq(list_segments(tmpdir, segs, 8), 2);
	cr_assert_eq(segs[0], 1);
	cr_assert_eq(segs[1], 3);
	pt_message_clear(&m);
}

/* A segment of shard 0 copied into shard 1's directory is not repaired away. */
Test(spool_recovery, foreign_segment_refused)
{
	struct spool_config cfg = {.path = tmpdir, .shard = 1};
	struct pt_message m;
	char src[128], dst[128], err[512] = "";
	struct ids found;
	struct spool *sp = open_at(tmpdir, 0, &found);

	make_message(&m, 1);
	cr_assert_eq(spool_append_message(sp, &m, NULL), PT_OK);
	flush(sp);
	spool_close(sp);
	segment_file(tmpdir, 1, src, sizeof(src));
	snprintf(dst, sizeof(dst), "%s/1", tmpdir);
	cr_assert_eq(mkdir(dst, 0750), 0);
	snprintf(dst, sizeof(dst), "%s/1/%016llx.seg", tmpdir, 1ull);
	copy_prefix(src, dst, (size_t)file_size(src));
	sp = NULL;
	cr_assert_eq(spool_open(&sp, &cfg, collect, &found, err, sizeof(err)), PT_ERROR);
	cr_assert_null(sp);
	cr_assert_not_null(strstr(err, dst), "%s", err);
	cr_assert_not_null(strstr(err, "another shard"), "%s", err);
	cr_assert_eq(file_size(dst), file_size(src), "left as it was");
	pt_message_clear(&m);
}

Test(spool_recovery, unusable_path_is_an_error_naming_it)
{
	char file[128], path[160], err[512] = "";
	struct spool_config cfg = {.path = path, .shard = 0};
	struct spool *sp = NULL;
	int fd;

	snprintf(file, sizeof(file), "%s/plainfile", tmpdir);
	fd = open(file, O_WRONLY | O_CREAT, 0640);
	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/spool", file);
	cr_assert_eq(spool_open(&sp, &cfg, NULL, NULL, err, sizeof(err)), PT_ERROR);
	cr_assert_not_null(strstr(err, path), "%s", err);
	cr_assert_not_null(strstr(err, "Not a directory"), "%s", err);
	cr_assert_eq(spool_scan(path, 0, NULL, NULL, NULL, err, sizeof(err)), PT_ERROR);
	cr_assert_not_null(strstr(err, path), "%s", err);
}

/* spool_open creates a nested path, and the totals cover what is on disk. */
Test(spool_recovery, open_creates_path_and_counts_bytes)
{
	char path[160], file[200];
	struct pt_message m;
	struct ids found;
	struct spool *sp;

	snprintf(path, sizeof(path), "%s/a/b/c", tmpdir);
	sp = open_at(path, 0, &found);
	cr_assert_eq(spool_bytes(sp), 48);
	cr_assert_eq(spool_segments(sp), 1);
	make_message(&m, 7);
	cr_assert_eq(spool_append_message(sp, &m, NULL), PT_OK);
	flush(sp);
	cr_assert_eq(spool_bytes(sp), 48 + spool_record_message_len(&m));
	spool_close(sp);
	sp = open_at(path, 0, &found);
	cr_assert_eq(found.n, 1);
	cr_assert_eq(spool_bytes(sp), 48 + spool_record_message_len(&m) + 48);
	cr_assert_eq(spool_segments(sp), 2);
	snprintf(file, sizeof(file), "%s/0/%016llx.seg", path, 2ull);
	cr_assert_eq(file_size(file), 48);
	spool_close(sp);
	pt_message_clear(&m);
}
