/*
 * spool_record_test.c -- the record format: a message written through the
 * spool and read back has the same envelope and meta, and its body bytes are
 * exactly what pt_message_iov() composes (prefix | headers | appended |
 * rest); the body is written from the message's own buffers; every single
 * bit flipped anywhere in a record is caught (by the CRC in memory, and as
 * PT_CORRUPT / a bad record on disk); ids are validated.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool/spool_int.h"
#include "tests/unit/test_util.h"

static char tmpdir[64];
static struct pt_idgen idgen;

static void setup(void)
{
	test_tmpdir_make(tmpdir, sizeof(tmpdir), "spool_record");
	pt_idgen_init(&idgen, 0);
}

static void teardown(void)
{
	test_tmpdir_remove(tmpdir);
}

TestSuite(spool_record, .init = setup, .fini = teardown);

/* A message with n_rcpts recipients, n_meta meta keys, and optional
 * prepended / appended header lines around data. */
static void make_message(struct pt_message *m, size_t n_rcpts, size_t n_meta, const char *data,
			 bool prefix, bool appended)
{
	char s[64];

	pt_message_init(m);
	pt_id_next(&idgen, m->id);
	m->created_us = 1764064245123456ull;
	cr_assert_eq(pt_message_set_sender(m, "bounce+x@sender.example", 23), PT_OK);
	for (size_t i = 0; i < n_rcpts; i++) {
		int n = snprintf(s, sizeof(s), "rcpt%03zu@example.org", i);
		cr_assert_eq(pt_message_add_rcpt(m, s, (size_t)n), PT_OK);
	}
	for (size_t i = 0; i < n_meta; i++) {
		char key[32];

		snprintf(key, sizeof(key), "key%zu", i);
		snprintf(s, sizeof(s), i % 2 ? "%zu" : "\"value \\\"%zu\\\"\"", i);
		cr_assert_eq(pt_message_set_meta(m, key, s), PT_OK);
	}
	cr_assert_eq(pt_buf_append_str(&m->data, data), PT_OK);
	pt_message_scan_headers(m);
	if (prefix) {
		cr_assert_eq(pt_message_prepend_header(m, "Received", "from a by b"), PT_OK);
		cr_assert_eq(pt_message_prepend_header(m, "Received", "from b by c"), PT_OK);
	}
	if (appended)
		cr_assert_eq(pt_message_append_header(m, "X-Appended", "policy"), PT_OK);
}

/* The stored form of m as pt_message_iov() composes it, in a new buffer. */
static void compose(const struct pt_message *m, struct pt_buf *out)
{
	struct iovec iov[4];
	int n = pt_message_iov(m, iov);

	for (int i = 0; i < n; i++)
		cr_assert_eq(pt_buf_append(out, iov[i].iov_base, iov[i].iov_len), PT_OK);
}

/* The record's size on disk, computed from the format table independently. */
static size_t expected_record_len(const struct pt_message *m)
{
	size_t n = 16 + 64 + strlen(m->sender);

	for (size_t i = 0; i < m->n_rcpts; i++)
		n += 4 + strlen(m->rcpts[i]);
	for (size_t i = 0; i < m->n_meta; i++)
		n += 8 + strlen(m->meta[i].key) + strlen(m->meta[i].json);
	return n + pt_message_size(m);
}

struct entries {
	struct spool_entry e[64];
	size_t n;
};

static void collect(void *arg, const struct spool_entry *e)
{
	struct entries *c = arg;

	cr_assert_lt(c->n, 64);
	c->e[c->n++] = *e;
}

static void count_ok(void *arg, void *token, int status, const struct spool_loc *loc)
{
	(void)loc;
	(void)token;
	cr_assert_eq(status, PT_OK);
	(*(int *)arg)++;
}

static struct spool *open_spool(struct entries *found)
{
	struct spool_config cfg = {.path = tmpdir, .shard = 0, .segment_max = 0};
	struct spool *sp = NULL;
	char err[256] = "";

	cr_assert_eq(spool_open(&sp, &cfg, collect, found, err, sizeof(err)), PT_OK, "%s", err);
	return sp;
}

/* Write msgs through a fresh spool and list them back with spool_scan. */
static void write_and_scan(struct pt_message *msgs, size_t n, struct entries *found)
{
	struct entries none = {.n = 0};
	struct spool *sp = open_spool(&none);
	uint64_t n_bad = 99;
	char err[256] = "";
	int n_ok = 0;

	cr_assert_eq(none.n, 0);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(spool_append_message(sp, &msgs[i], &msgs[i]), PT_OK);
	cr_assert_eq(spool_flush_sync(sp, count_ok, &n_ok), PT_OK);
	cr_assert_eq(n_ok, (int)n);
	spool_close(sp);
	found->n = 0;
	cr_assert_eq(spool_scan(tmpdir, 0, collect, found, &n_bad, err, sizeof(err)), PT_OK, "%s",
		     err);
	cr_assert_eq(n_bad, 0);
	cr_assert_eq(found->n, n);
}

/* Everything read back equals what was written; the body is the composition. */
static void expect_same(const struct pt_message *want, const struct spool_entry *e)
{
	struct pt_message got;
	struct pt_buf body = PT_BUF_INIT;
	struct pt_message scanned;

	pt_message_init(&got);
	cr_assert_eq(spool_read_message(tmpdir, 0, e, &got), PT_OK);
	cr_assert_str_eq(got.id, want->id);
	cr_assert_eq(got.created_us, want->created_us);
	cr_assert_str_eq(got.sender, want->sender);
	cr_assert_eq(got.n_rcpts, want->n_rcpts);
	for (size_t i = 0; i < want->n_rcpts; i++)
		cr_assert_str_eq(got.rcpts[i], want->rcpts[i]);
	cr_assert_eq(got.n_meta, want->n_meta);
	for (size_t i = 0; i < want->n_meta; i++) {
		cr_assert_str_eq(got.meta[i].key, want->meta[i].key);
		cr_assert_str_eq(got.meta[i].json, want->meta[i].json);
	}
	compose(want, &body);
	cr_assert_eq(got.data.len, body.len);
	cr_assert(body.len == 0 || memcmp(got.data.data, body.data, body.len) == 0);
	cr_assert_eq(got.prefix.len, 0);
	cr_assert_eq(got.appended.len, 0);
	/* header_end is what a scan of the stored bytes finds. */
	pt_message_init(&scanned);
	pt_buf_append(&scanned.data, body.data, body.len);
	pt_message_scan_headers(&scanned);
	cr_assert_eq(got.header_end, scanned.header_end);
	cr_assert_eq(e->size, body.len);
	cr_assert_eq(e->n_rcpts, want->n_rcpts);
	cr_assert_eq(e->created_us, want->created_us);
	cr_assert_eq(e->length, expected_record_len(want));
	cr_assert_str_eq(e->id, want->id);
	pt_message_clear(&scanned);
	pt_message_clear(&got);
	pt_buf_free(&body);
}

Test(spool_record, round_trip_many_rcpts_meta_prefix_appended)
{
	struct pt_message m;
	struct entries found;

	make_message(&m, 200, 7, "From: a@b\r\nSubject: hi\r\n\r\nline 1\r\nline 2\r\n", true,
		     true);
	cr_assert_eq(m.prefix.len, 2 * strlen("Received: from a by b\r\n"));
	cr_assert_gt(m.appended.len, 0);
	write_and_scan(&m, 1, &found);
	/* The first record follows the 48-byte segment header of segment 1. */
	cr_assert_eq(found.e[0].segment, 1);
	cr_assert_eq(found.e[0].offset, 48);
	expect_same(&m, &found.e[0]);
	pt_message_clear(&m);
}

Test(spool_record, round_trip_edge_shapes)
{
	struct pt_message msgs[6];
	struct entries found;
	uint64_t offset = 48;

	make_message(&msgs[0], 1, 0, "", false, false); /* empty body */
	make_message(&msgs[1], 0, 0, "no header end, no blank line", false, true);
	make_message(&msgs[2], 3, 1, "\r\nbody only after a blank line\r\n", true, true);
	make_message(&msgs[3], 1, 2, "A: 1\r\n\r\n", true, false);
	make_message(&msgs[4], 2, 0, "A: 1\r\n\r\n.\r\n", false, false);
	make_message(&msgs[5], 1, 1, "Subject: x\r\n\r\nbody", true, true);
	cr_assert_eq(pt_message_set_sender(&msgs[4], "", 0), PT_OK); /* the null sender */
	write_and_scan(msgs, 6, &found);
	for (size_t i = 0; i < 6; i++) {
		cr_assert_eq(found.e[i].offset, offset, "record %zu", i);
		expect_same(&msgs[i], &found.e[i]);
		offset += found.e[i].length;
		pt_message_clear(&msgs[i]);
	}
}

/* The body goes to pwritev straight from the message's buffers. */
Test(spool_record, body_written_from_message_buffers)
{
	struct entries none = {.n = 0};
	struct spool *sp = open_spool(&none);
	struct pt_message m;
	struct spool_io io;
	size_t env;

	make_message(&m, 2, 1, "A: 1\r\n\r\nbody\r\n", true, true);
	cr_assert_eq(spool_append_message(sp, &m, NULL), PT_OK);
	cr_assert_eq(spool_batch_start(sp, &io), PT_OK);
	cr_assert_eq(io.n_iov, 5);
	cr_assert_eq(io.offset, 48);
	cr_assert_eq(io.len, expected_record_len(&m));
	env = io.len - pt_message_size(&m);
	cr_assert_eq(io.iov[0].iov_len, env);
	cr_assert_eq(io.iov[1].iov_base, m.prefix.data);
	cr_assert_eq(io.iov[1].iov_len, m.prefix.len);
	cr_assert_eq(io.iov[2].iov_base, m.data.data);
	cr_assert_eq(io.iov[2].iov_len, m.header_end);
	cr_assert_eq(io.iov[3].iov_base, m.appended.data);
	cr_assert_eq(io.iov[4].iov_base, m.data.data + m.header_end);
	cr_assert_eq(io.iov[4].iov_len, m.data.len - m.header_end);
	spool_batch_done(sp, -5, 0, NULL, NULL);
	spool_close(sp);
	pt_message_clear(&m);
}

/* The in-memory CRC check fails for every single flipped bit of a record. */
Test(spool_record, crc_detects_every_single_bit_flip)
{
	struct pt_message m;
	struct pt_buf rec = PT_BUF_INIT, body = PT_BUF_INIT;
	struct iovec iov[4];
	size_t len;
	int n;

	make_message(&m, 5, 3, "Subject: crc\r\n\r\nbody\r\n", true, true);
	n = pt_message_iov(&m, iov);
	cr_assert_eq(spool_record_encode_message(&rec, &m, iov, n, &len), PT_OK);
	compose(&m, &body);
	pt_buf_append(&rec, body.data, body.len);
	cr_assert_eq(rec.len, len);
	cr_assert_eq(len, expected_record_len(&m));
	uint8_t *p = (uint8_t *)rec.data;
	cr_assert(spool_record_crc_ok(p, p + 16, (uint32_t)(len - 16), 0));
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			p[i] ^= (uint8_t)(1u << bit);
			cr_assert(!spool_record_crc_ok(p, p + 16, (uint32_t)(len - 16), 0),
				  "flip of byte %zu bit %d not detected", i, bit);
			p[i] ^= (uint8_t)(1u << bit);
		}
	}
	pt_buf_free(&rec);
	pt_buf_free(&body);
	pt_message_clear(&m);
}

static void flip_byte(const char *file, uint64_t off, uint8_t mask)
{
	FILE *f = fopen(file, "r+b");
	int c;

	cr_assert_not_null(f);
	cr_assert_eq(fseek(f, (long)off, SEEK_SET), 0);
	c = fgetc(f);
	cr_assert_neq(c, EOF);
	cr_assert_eq(fseek(f, (long)off, SEEK_SET), 0);
	fputc(c ^ mask, f);
	cr_assert_eq(fclose(f), 0);
}

/* Which region of a MESSAGE record offset i (from the record start) is in. */
static const char *region(size_t i, size_t env_len)
{
	if (i < 4)
		return "magic";
	if (i < 8)
		return "type/flags/reserved";
	if (i < 12)
		return "length";
	if (i < 16)
		return "crc";
	if (i < 16 + 64)
		return "fixed envelope";
	return i < 16 + env_len ? "sender/rcpts/meta" : "body";
}

/* On disk: a flip anywhere in the record makes spool_read_message say
 * PT_CORRUPT and spool_scan drop the record and count it bad. */
Test(spool_record, flipped_bit_on_disk_is_corrupt_in_every_region)
{
	struct pt_message m;
	struct entries found, after;
	char file[128], err[256];
	size_t env_len;
	int seen[7] = {0};

	make_message(&m, 3, 2, "Subject: flip\r\n\r\nbody\r\n", true, true);
	write_and_scan(&m, 1, &found);
	snprintf(file, sizeof(file), "%s/0/%016llx.seg", tmpdir, 1ull);
	env_len = found.e[0].length - 16 - pt_message_size(&m);
	for (size_t i = 0; i < found.e[0].length; i++) {
		struct pt_message got;
		uint64_t n_bad = 0;
		const char *r = region(i, env_len);
		uint8_t mask = (uint8_t)(1u << (i % 8));

		flip_byte(file, found.e[0].offset + i, mask);
		pt_message_init(&got);
		cr_assert_eq(spool_read_message(tmpdir, 0, &found.e[0], &got), PT_CORRUPT,
			     "byte %zu (%s)", i, r);
		cr_assert_eq(got.data.data, NULL, "m cleared on failure");
		after.n = 0;
		cr_assert_eq(spool_scan(tmpdir, 0, collect, &after, &n_bad, err, sizeof(err)),
			     PT_OK);
		cr_assert_eq(after.n, 0, "byte %zu (%s)", i, r);
		cr_assert_eq(n_bad, 1, "byte %zu (%s)", i, r);
		flip_byte(file, found.e[0].offset + i, mask);
		seen[strcmp(r, "magic") == 0		   ? 0
		     : strcmp(r, "length") == 0		   ? 1
		     : strcmp(r, "crc") == 0		   ? 2
		     : strcmp(r, "fixed envelope") == 0	   ? 3
		     : strcmp(r, "body") == 0		   ? 4
		     : strcmp(r, "sender/rcpts/meta") == 0 ? 5
							   : 6]++;
	}
	cr_assert_eq(seen[0], 4);
	cr_assert_eq(seen[1], 4);
	cr_assert_eq(seen[2], 4);
	cr_assert_eq(seen[3], 64);
	cr_assert_eq(seen[4], (int)pt_message_size(&m));
	cr_assert_eq(seen[5], (int)env_len - 64);
	cr_assert_eq(seen[6], 4);
	/* Restored: readable again. */
	expect_same(&m, &found.e[0]);
	pt_message_clear(&m);
}

/* A flip in the segment header makes the whole (newest) segment bad. */
Test(spool_record, flipped_bit_in_segment_header)
{
	struct pt_message m;
	struct entries found, after;
	char file[128], err[256];

	make_message(&m, 1, 0, "Subject: h\r\n\r\nb\r\n", false, false);
	write_and_scan(&m, 1, &found);
	snprintf(file, sizeof(file), "%s/0/%016llx.seg", tmpdir, 1ull);
	for (size_t i = 0; i < 48; i++) {
		uint64_t n_bad = 0;

		flip_byte(file, i, 0x10);
		after.n = 0;
		cr_assert_eq(spool_scan(tmpdir, 0, collect, &after, &n_bad, err, sizeof(err)),
			     PT_OK);
		cr_assert_eq(after.n, 0, "byte %zu", i);
		cr_assert_eq(n_bad, 1, "byte %zu", i);
		flip_byte(file, i, 0x10);
	}
	pt_message_clear(&m);
}

/* The wrong entry (offset or length) is PT_CORRUPT, a missing segment PT_ERROR. */
Test(spool_record, read_with_wrong_entry)
{
	struct pt_message m, got;
	struct entries found;
	struct spool_entry e;

	make_message(&m, 1, 0, "Subject: e\r\n\r\nb\r\n", false, false);
	write_and_scan(&m, 1, &found);
	pt_message_init(&got);
	e = found.e[0];
	e.offset += 1;
	cr_assert_eq(spool_read_message(tmpdir, 0, &e, &got), PT_CORRUPT);
	e = found.e[0];
	e.length -= 1;
	cr_assert_eq(spool_read_message(tmpdir, 0, &e, &got), PT_CORRUPT);
	e = found.e[0];
	e.length += 1; /* past the end of the file */
	cr_assert_eq(spool_read_message(tmpdir, 0, &e, &got), PT_CORRUPT);
	e = found.e[0];
	e.id[0] = e.id[0] == 'a' ? 'b' : 'a';
	cr_assert_eq(spool_read_message(tmpdir, 0, &e, &got), PT_CORRUPT);
	e = found.e[0];
	e.segment = 7;
	cr_assert_eq(spool_read_message(tmpdir, 0, &e, &got), PT_ERROR);
	cr_assert_eq(spool_read_message(tmpdir, 0, &found.e[0], &got), PT_OK);
	pt_message_clear(&got);
	pt_message_clear(&m);
}

Test(spool_record, invalid_ids_are_refused)
{
	struct entries none = {.n = 0};
	struct spool *sp = open_spool(&none);
	struct pt_message m;

	make_message(&m, 1, 0, "A: 1\r\n\r\nb", false, false);
	cr_assert_eq(spool_append_tombstone(sp, "0123", NULL), PT_ERROR);
	cr_assert_eq(spool_append_tombstone(sp, "0123456789ABCDEF0123456789abcdef", NULL),
		     PT_ERROR);
	cr_assert_eq(spool_append_tombstone(sp, "0123456789abcdef0123456789abcdef0", NULL),
		     PT_ERROR);
	strcpy(m.id, "not an id");
	cr_assert_eq(spool_append_message(sp, &m, NULL), PT_ERROR);
	cr_assert(!spool_batch_ready(sp), "nothing was queued");
	cr_assert_eq(spool_append_tombstone(sp, "0123456789abcdef0123456789abcdef", NULL), PT_OK);
	cr_assert(spool_batch_ready(sp));
	spool_close(sp);
	pt_message_clear(&m);
}

/* Tombstone records: 16 + 32 bytes, CRC'd, id checked on read. */
Test(spool_record, tombstone_encoding)
{
	struct pt_buf b = PT_BUF_INIT;
	struct spool_record_header h;
	const char *id = "00112233445566778899aabbccddeeff";
	uint8_t *p;

	cr_assert_eq(spool_record_encode_tombstone(&b, id), PT_OK);
	cr_assert_eq(b.len, 48);
	p = (uint8_t *)b.data;
	cr_assert_eq(memcmp(p, "PTSR", 4), 0);
	cr_assert_null(spool_record_check_header(p, &h));
	cr_assert_eq(h.type, SPOOL_RECORD_TOMBSTONE);
	cr_assert_eq(h.payload_len, 32);
	cr_assert(spool_record_crc_ok(p, p + 16, 32, 0));
	cr_assert_eq(memcmp(p + 16, id, 32), 0);
	cr_assert_null(spool_record_check_tombstone(p + 16, 32));
	p[16] = 'G';
	cr_assert_str_eq(spool_record_check_tombstone(p + 16, 32), "bad id in tombstone");
	pt_buf_free(&b);
}
