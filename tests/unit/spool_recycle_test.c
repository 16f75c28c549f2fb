/*
 * spool_recycle_test.c -- dead segments kept as spare files and reused for
 * later segments (RECYCLING in spool/spool_segment.c): the spare's blocks
 * are the new segment's, its old records never come back (after a clean
 * close, after a crash, after a restart), and format version 1 segments
 * are still read and never reused.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "spool/spool_int.h"
#include "tests/unit/spool_test_util.h"

SPOOL_TEST_SUITE(spool_recycle, 7, 120);

#define SEG_MAX	  SPOOL_RECYCLE_MIN /* the smallest segments that are recycled */
#define BODY_SIZE (200u * 1024)	    /* six messages fill a segment */

static void make_message(struct pt_message *m, size_t i, size_t body)
{
	char s[128];
	int n;

	pt_message_init(m);
	pt_id_next(&idgen, m->id);
	m->created_us = 1764064245000000ull + i;
	pt_message_set_sender(m, "s@example.com", 13);
	n = snprintf(s, sizeof(s), "r%zu@example.org", i);
	pt_message_add_rcpt(m, s, (size_t)n);
	n = snprintf(s, sizeof(s), "Subject: recycle %zu\r\n\r\n", i);
	pt_buf_append(&m->data, s, (size_t)n);
	for (size_t k = 0; k < body / 64; k++)
		pt_buf_append(&m->data,
			      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abc\r\n", 64);
	pt_message_scan_headers(m);
}

static struct spool *open_at(spool_entry_fn fn, void *arg)
{
	struct spool_config cfg = {.path = tmpdir, .shard = 0, .segment_max = SEG_MAX};
	struct spool *sp = NULL;
	char err[512] = "";

	cr_assert_eq(spool_open(&sp, &cfg, fn, arg, err, sizeof(err)), PT_OK, "%s", err);
	return sp;
}

static void store_loc(void *arg, void *token, int status, const struct spool_loc *loc)
{
	(void)arg;
	cr_assert_eq(status, PT_OK);
	if (token != NULL)
		*(struct spool_loc *)token = *loc;
}

static struct spool_loc put_message(struct spool *sp, struct pt_message *m)
{
	struct spool_loc loc = {0};

	cr_assert_eq(spool_append_message(sp, m, &loc), PT_OK);
	cr_assert_eq(spool_flush_sync(sp, store_loc, NULL), PT_OK);
	return loc;
}

static void put_tombstone(struct spool *sp, const char *id, uint64_t segment)
{
	cr_assert_eq(spool_append_tombstone(sp, id, NULL), PT_OK);
	cr_assert_eq(spool_flush_sync(sp, store_loc, NULL), PT_OK);
	spool_unref(sp, segment);
}

static void file_of(const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/0/%s", tmpdir, name);
}

static void seg_file(uint64_t seq, char *out, size_t len)
{
	char name[SPOOL_SEGMENT_NAME_LEN + 1];

	spool_segment_name(seq, name);
	file_of(name, out, len);
}

static bool stat_seg(uint64_t seq, struct stat *st)
{
	char f[256];

	seg_file(seq, f, sizeof(f));
	return stat(f, st) == 0;
}

static size_t count_spare_files(void)
{
	char dir[128];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/0", tmpdir);
	d = opendir(dir);
	cr_assert_not_null(d);
	while ((de = readdir(d)) != NULL)
		n += spool_spare_parse_name(de->d_name);
	closedir(d);
	return n;
}

/*
 * Fill segment 1 with six messages (it rotates to 2), make them all done
 * and collect: segment 1 becomes the spare "0000000000000001.free".  Then
 * fill segment 2 until it rotates: segment 3 is the spare's file.  *ino1
 * gets segment 1's inode, m[0..5] are segment 1's messages (done) and
 * m[6..11] segment 2's (live).
 */
static struct spool *make_recycled_third(struct pt_message m[12], ino_t *ino1)
{
	struct spool *sp = open_at(NULL, NULL);
	struct spool_loc loc[6];
	struct stat st;
	char spare[256];

	for (size_t i = 0; i < 6; i++) {
		make_message(&m[i], i, BODY_SIZE);
		loc[i] = put_message(sp, &m[i]);
		cr_assert_eq(loc[i].segment, 1);
	}
	cr_assert_eq(spool_current_segment(sp), 2, "segment 1 full: rotated");
	cr_assert(stat_seg(1, &st));
	*ino1 = st.st_ino;
	for (size_t i = 0; i < 6; i++)
		put_tombstone(sp, m[i].id, loc[i].segment);
	cr_assert_eq(spool_collect(sp, 1ull << 40), 1);
	cr_assert(!stat_seg(1, &st), "segment 1 left the spool");
	file_of("0000000000000001.free", spare, sizeof(spare));
	cr_assert_eq(stat(spare, &st), 0, "kept as a spare");
	cr_assert_eq(st.st_ino, *ino1);
	cr_assert_eq(spool_spares(sp), 1);

	for (size_t i = 6; i < 12; i++) {
		make_message(&m[i], i, BODY_SIZE);
		cr_assert_eq(put_message(sp, &m[i]).segment, 2);
	}
	cr_assert_eq(spool_current_segment(sp), 3);
	cr_assert(stat_seg(3, &st));
	cr_assert_eq(st.st_ino, *ino1, "segment 3 is segment 1's file");
	cr_assert_geq((uint64_t)st.st_size, SEG_MAX, "with its old length");
	cr_assert_eq(count_spare_files(), 0);
	cr_assert_eq(spool_spares(sp), 0);
	return sp;
}

/*
 * Run body(arg) in a child process that ends with body's exit status
 * without closing anything (a crash after its last durable batch), and
 * check that it exited 0.  The child dies by SIGALRM after 30 s, so a
 * failed assertion in it cannot hang the test.
 */
static void crash_after(int (*body)(void *), void *arg)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		alarm(30);
		_exit(body(arg));
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}

static void clear_all(struct pt_message *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		pt_message_clear(&m[i]);
}

/* A clean close cuts the reused file where its new records end; a restart
 * finds exactly the live messages, none of the old file's. */
Test(spool_recycle, spare_makes_the_next_segment_and_close_cuts_its_old_bytes)
{
	struct pt_message m[13];
	struct spool_loc l;
	struct spool_ids found = {.n = 0};
	struct stat st;
	ino_t ino1;
	struct spool *sp = make_recycled_third(m, &ino1);
	uint64_t bytes_before = spool_bytes(sp);

	make_message(&m[12], 12, 1000);
	l = put_message(sp, &m[12]);
	cr_assert_eq(l.segment, 3);
	cr_assert_eq(l.offset, 48, "right after the new header, over old records");
	cr_assert_eq(spool_bytes(sp), bytes_before + l.length);
	/* Read back through the running spool: the new segment's mask. */
	{
		char *rec = malloc(l.length);
		struct pt_message back;
		const char *why = NULL;
		int fd = spool_read_fd(sp, 3);

		cr_assert_eq(pread(fd, rec, l.length, (off_t)l.offset), (ssize_t)l.length);
		pt_message_init(&back);
		cr_assert_eq(spool_decode_record(rec, l.length, spool_segment_mask(sp, 3), m[12].id,
						 &back, &why),
			     PT_OK, "%s", why);
		pt_message_clear(&back);
		free(rec);
	}
	spool_close(sp);
	cr_assert(stat_seg(3, &st));
	cr_assert_eq((uint64_t)st.st_size, 48 + l.length, "old bytes cut at close");

	sp = open_at(spool_ids_collect, &found);
	cr_assert_eq(found.n, 7, "segment 2's six and the new one");
	for (size_t i = 0; i < 6; i++)
		cr_assert(!spool_ids_has(&found, m[i].id), "an old message came back");
	for (size_t i = 6; i < 13; i++)
		cr_assert(spool_ids_has(&found, m[i].id));
	{
		struct pt_message back;
		struct spool_entry e = {.segment = l.segment, .offset = l.offset, .length = l.length};

		memcpy(e.id, m[12].id, sizeof(e.id));
		pt_message_init(&back);
		cr_assert_eq(spool_read_message(tmpdir, 0, &e, &back), PT_OK);
		pt_message_clear(&back);
	}
	spool_close(sp);
	clear_all(m, 13);
}

/* A crash while a reused file is current: recovery truncates it after its
 * new records, as a torn tail, and brings back none of the old ones. */
static int two_new_records_in_the_reused_file(void *arg)
{
	struct pt_message *m = arg;
	struct spool_loc a, b;
	ino_t ino1;
	struct spool *sp = make_recycled_third(m, &ino1);

	make_message(&m[12], 12, 1000);
	make_message(&m[13], 13, 3000);
	a = put_message(sp, &m[12]);
	b = put_message(sp, &m[13]);
	/* No spool_close: every batch is durable, nothing more is written,
	 * the old bytes stay behind the new records. */
	return a.segment == 3 && b.segment == 3 && b.offset == a.offset + a.length ? 0 : 3;
}

Test(spool_recycle, crash_in_a_reused_segment_brings_back_only_its_new_records)
{
	struct pt_message m[14];
	struct spool_ids found = {.n = 0};
	struct stat st;
	size_t in_3 = 0;

	crash_after(two_new_records_in_the_reused_file, m);
	cr_assert(stat_seg(3, &st));
	cr_assert_geq((uint64_t)st.st_size, SEG_MAX, "the old bytes are still there");

	{
		struct spool *sp = open_at(spool_ids_collect, &found);

		cr_assert_eq(found.n, 8, "segment 2's six and the two new ones, got %zu", found.n);
		for (size_t i = 0; i < found.n; i++)
			in_3 += found.segment[i] == 3;
		cr_assert_eq(in_3, 2);
		cr_assert(stat_seg(3, &st));
		cr_assert_lt((uint64_t)st.st_size, 48 + 8192, "truncated after the new records");
		spool_close(sp);
	}
	/* And again: the repaired segment reads the same. */
	found.n = 0;
	{
		struct spool *sp = open_at(spool_ids_collect, &found);

		cr_assert_eq(found.n, 8);
		spool_close(sp);
	}
}

/* Spares outlive a restart (the newest SPOOL_SPARES_MAX), and a stray
 * spare beyond that is removed at open. */
Test(spool_recycle, spares_are_found_at_open_and_extra_ones_removed)
{
	char f[256];
	int fd;
	struct spool *sp;
	struct stat st;

	/* Three spare files as a previous run could leave them. */
	snprintf(f, sizeof(f), "%s/0", tmpdir);
	cr_assert_eq(mkdir(f, 0750), 0);
	for (int i = 1; i <= 3; i++) {
		char name[SPOOL_SPARE_NAME_LEN + 1];

		spool_spare_name((uint64_t)i, name);
		file_of(name, f, sizeof(f));
		fd = open(f, O_WRONLY | O_CREAT, 0640);
		cr_assert_geq(fd, 0);
		cr_assert_eq(ftruncate(fd, SEG_MAX), 0);
		close(fd);
	}
	sp = open_at(NULL, NULL);
	/* The newest two were kept, the oldest removed; the new segment 1 took
	 * one of them, so one is left. */
	file_of("0000000000000001.free", f, sizeof(f));
	cr_assert_neq(stat(f, &st), 0, "the oldest spare is removed");
	cr_assert_eq(spool_spares(sp), 1);
	cr_assert_eq(count_spare_files(), 1);
	cr_assert(stat_seg(1, &st));
	cr_assert_eq((uint64_t)st.st_size, SEG_MAX, "segment 1 is a spare's file");
	spool_close(sp);
	cr_assert(stat_seg(1, &st));
	cr_assert_eq((uint64_t)st.st_size, 48, "closed empty: cut to its header");
}

/*
 * Rewrite segment seq's file as format version 1 wrote it: version 1 in
 * the header (its CRC computed again) and every later record's CRC stored
 * unmasked.
 */
static void convert_to_v1(uint64_t seq)
{
	char f[256];
	struct stat st;
	uint8_t *p;
	uint64_t off = 0;
	int fd;

	seg_file(seq, f, sizeof(f));
	fd = open(f, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	p = malloc((size_t)st.st_size);
	cr_assert_eq(pread(fd, p, (size_t)st.st_size, 0), st.st_size);
	while (off + SPOOL_RECORD_HEADER_LEN <= (uint64_t)st.st_size) {
		uint8_t *h = p + off;
		uint32_t len = spool_get_le32(h + SPOOL_HDR_LENGTH);

		if (off == 0) {
			spool_put_le32(h + SPOOL_RECORD_HEADER_LEN, 1); /* version */
			spool_put_le32(h + SPOOL_HDR_CRC,
				       pt_crc32c(pt_crc32c(0, h, SPOOL_HDR_CRC),
						 h + SPOOL_RECORD_HEADER_LEN, len));
		} else {
			spool_put_le32(h + SPOOL_HDR_CRC,
				       spool_get_le32(h + SPOOL_HDR_CRC) ^ (uint32_t)seq);
		}
		off += SPOOL_RECORD_HEADER_LEN + len;
	}
	cr_assert_eq(off, (uint64_t)st.st_size);
	cr_assert_eq(pwrite(fd, p, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	free(p);
}

/* A spool written by format version 1 is read, its segments deleted when
 * dead, never kept as spares (their records carry no mask). */
Test(spool_recycle, version_1_segments_are_read_and_never_reused)
{
	struct pt_message m[7];
	struct spool_loc loc[7];
	struct spool_ids found = {.n = 0};
	struct stat st;
	struct spool *sp = open_at(NULL, NULL);

	for (size_t i = 0; i < 6; i++) {
		make_message(&m[i], i, BODY_SIZE);
		loc[i] = put_message(sp, &m[i]);
	}
	make_message(&m[6], 6, 1000);
	loc[6] = put_message(sp, &m[6]);
	cr_assert_eq(loc[6].segment, 2);
	spool_close(sp);
	convert_to_v1(1);

	sp = open_at(spool_ids_collect, &found);
	cr_assert_eq(found.n, 7, "version 1 records read");
	cr_assert_eq(spool_segment_mask(sp, 1), 0);
	{
		struct pt_message back;
		struct spool_entry e = {.segment = 1, .offset = loc[0].offset, .length = loc[0].length};

		memcpy(e.id, m[0].id, sizeof(e.id));
		pt_message_init(&back);
		cr_assert_eq(spool_read_message(tmpdir, 0, &e, &back), PT_OK);
		pt_message_clear(&back);
	}
	for (size_t i = 0; i < 6; i++)
		put_tombstone(sp, m[i].id, 1);
	cr_assert_eq(spool_collect(sp, 1ull << 40), 1);
	cr_assert(!stat_seg(1, &st));
	cr_assert_eq(count_spare_files(), 0, "a version 1 segment is deleted, not kept");
	cr_assert_eq(spool_spares(sp), 0);
	spool_close(sp);
	clear_all(m, 7);
}

/*
 * The case the mask is for: the reused file's new record has exactly the
 * length of the old segment's first, so the old second record starts right
 * where the new records end, whole, with a valid header -- only its CRC,
 * stored under segment 1's mask, tells it from a record of segment 3.
 * After a crash it must not come back.
 */
struct twin_arg {
	struct pt_message m[12], *twin;
};

static int the_twin_in_the_reused_file(void *arg)
{
	struct twin_arg *t = arg;
	ino_t ino1;
	struct spool *sp = make_recycled_third(t->m, &ino1);
	struct spool_loc a;

	if (spool_record_message_len(&t->m[0]) != spool_record_message_len(t->twin))
		return 4;
	a = put_message(sp, t->twin);
	return a.segment == 3 && a.offset == 48 ? 0 : 3;
}

Test(spool_recycle, old_record_at_a_record_boundary_fails_under_the_new_mask)
{
	struct twin_arg t;
	struct pt_message twin;
	struct spool_ids found = {.n = 0};
	struct stat st;
	uint64_t twin_len;

	/* The twin of m[0] (index 0 again: the same lengths, another id). */
	make_message(&twin, 0, BODY_SIZE);
	twin_len = spool_record_message_len(&twin);
	t.twin = &twin;
	crash_after(the_twin_in_the_reused_file, &t);

	{
		struct spool *sp = open_at(spool_ids_collect, &found);

		cr_assert_eq(found.n, 7, "segment 2's six and the twin, got %zu", found.n);
		cr_assert(spool_ids_has(&found, twin.id));
		cr_assert(stat_seg(3, &st));
		cr_assert_eq((uint64_t)st.st_size, 48 + twin_len,
			     "truncated where the old second record starts");
		spool_close(sp);
	}
	pt_message_clear(&twin);
}

/* The idle rotation of a dead current segment makes a new small file and
 * keeps the spare for a segment that will fill; the reused file it leaves
 * is cut and deleted. */
Test(spool_recycle, idle_rotation_keeps_the_spare)
{
	struct pt_message m[12];
	struct stat st;
	ino_t ino1;
	struct spool *sp = make_recycled_third(m, &ino1);
	char spare[256];

	for (size_t i = 6; i < 12; i++)
		put_tombstone(sp, m[i].id, 2);
	cr_assert_eq(spool_collect(sp, 1ull << 40), 1, "segment 2 leaves");
	cr_assert_eq(spool_spares(sp), 1, "segment 2 is a spare");
	file_of("0000000000000002.free", spare, sizeof(spare));
	cr_assert_eq(stat(spare, &st), 0);
	cr_assert_eq(spool_current_segment(sp), 3);
	cr_assert_eq(spool_collect(sp, 0), 1, "dead idle segment 3 rotates and goes");
	cr_assert_eq(spool_current_segment(sp), 4);
	cr_assert(!stat_seg(3, &st));
	cr_assert(stat_seg(4, &st));
	cr_assert_eq((uint64_t)st.st_size, 48, "a new file, not the spare");
	cr_assert_eq(stat(spare, &st), 0, "the spare is still there");
	cr_assert_eq(spool_spares(sp), 1);
	spool_close(sp);
	clear_all(m, 12);
}
