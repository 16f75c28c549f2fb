/*
 * shard_logseg_test.c -- log segments (shard_logseg.c): rotation by size
 * (the record that fills a segment ends it) and by age on a fake clock,
 * batches bounded, the stream decodable at every flush point, every byte
 * cut of an open segment repaired to a closed frame holding a prefix of
 * the records (at least every whole write before the cut), the start-up
 * repair of real files, the compression level reaching the frame, and the
 * segment names.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "shard/shard_logseg.h"
#include "tests/unit/test_util.h"

static char dir[64];

static void setup(void)
{
	test_tmpdir_make(dir, sizeof(dir), "petrel_logseg");
}

static void teardown(void)
{
	test_tmpdir_remove(dir);
}

TestSuite(shard_logseg, .init = setup, .fini = teardown);

/* A record of exactly len bytes, '\n' included, numbered i. */
static void record(struct pt_buf *b, int i, size_t len)
{
	size_t start = b->len;

	cr_assert_eq(pt_buf_printf(b, "{\"type\":\"Delivery\",\"n\":%d,\"pad\":\"", i), PT_OK);
	while (b->len - start < len - 3)
		pt_buf_append(b, "x", 1);
	pt_buf_append(b, "\"}\n", 3);
	cr_assert_eq(b->len - start, len);
}

/* Decode data[0..len) as far as it goes; *finished: the frame ended. */
static void decode(const void *data, size_t len, struct pt_buf *out, bool *finished)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	ZSTD_inBuffer in = {data, len, 0};
	size_t rc = 1;

	out->len = 0;
	do {
		ZSTD_outBuffer o;

		cr_assert_eq(pt_buf_reserve(out, 65536), PT_OK);
		o = (ZSTD_outBuffer){out->data + out->len, 65536, 0};
		rc = ZSTD_decompressStream(d, &o, &in);
		cr_assert(!ZSTD_isError(rc), "zstd: %s", ZSTD_getErrorName(rc));
		out->len += o.pos;
		if (o.pos == 0 && in.pos == in.size)
			break;
	} while (rc != 0);
	*finished = rc == 0;
	ZSTD_freeDCtx(d);
}

static struct shard_logseg *writer(uint64_t max_file_size, uint64_t max_duration_ms, int level)
{
	struct shard_logseg_config cfg = {max_file_size, max_duration_ms, level};
	struct shard_logseg *w = shard_logseg_new(&cfg);

	cr_assert_not_null(w);
	return w;
}

Test(shard_logseg, size_rotation_ends_a_segment_after_the_record_that_fills_it)
{
	struct shard_logseg *w = writer(1000, 0, 0);
	struct pt_buf recs = PT_BUF_INIT, seg = PT_BUF_INIT, text = PT_BUF_INIT;
	size_t off = 0;
	int n_segments = 0;
	bool fills_exact;

	for (int i = 0; i < 10; i++)
		record(&recs, i, 300);
	while (off < recs.len) {
		bool fills, finished;
		size_t n;

		cr_assert_eq(shard_logseg_begin(w, 0), PT_OK);
		n = shard_logseg_take(w, recs.data + off, recs.len - off, &fills);
		/* 4 records reach 1000 bytes (1200); the last 2 do not. */
		cr_assert_eq(n, PT_MIN(1200, recs.len - off));
		cr_assert_eq(fills, n == 1200);
		seg.len = 0;
		cr_assert_eq(shard_logseg_compress(w, recs.data + off, n, true, &seg), PT_OK);
		cr_assert_not(shard_logseg_is_open(w));
		cr_assert_eq(ZSTD_findFrameCompressedSize(seg.data, seg.len), seg.len);
		decode(seg.data, seg.len, &text, &finished);
		cr_assert(finished);
		cr_assert_eq(text.len, n);
		cr_assert_eq(memcmp(text.data, recs.data + off, n), 0);
		off += n;
		n_segments++;
	}
	cr_assert_eq(n_segments, 3);
	/* Exactly max_file_size fills the segment too. */
	recs.len = 0;
	for (int i = 0; i < 5; i++)
		record(&recs, i, 250);
	cr_assert_eq(shard_logseg_begin(w, 0), PT_OK);
	cr_assert_eq(shard_logseg_take(w, recs.data, recs.len, &fills_exact), 1000);
	cr_assert(fills_exact);
	pt_buf_free(&recs);
	pt_buf_free(&seg);
	pt_buf_free(&text);
	shard_logseg_free(w);
}

Test(shard_logseg, take_counts_what_the_segment_holds_already)
{
	struct shard_logseg *w = writer(1000, 0, 0);
	struct pt_buf recs = PT_BUF_INIT, out = PT_BUF_INIT;
	bool fills;

	for (int i = 0; i < 4; i++)
		record(&recs, i, 300);
	cr_assert_eq(shard_logseg_begin(w, 0), PT_OK);
	cr_assert_eq(shard_logseg_take(w, recs.data, 600, &fills), 600);
	cr_assert_not(fills);
	cr_assert_eq(shard_logseg_compress(w, recs.data, 600, false, &out), PT_OK);
	cr_assert_eq(shard_logseg_written(w), 600);
	/* 600 written: the second of the next records reaches 1000. */
	cr_assert_eq(shard_logseg_take(w, recs.data + 600, 600, &fills), 600);
	cr_assert(fills);
	/* A piece without a newline counts as a line. */
	cr_assert_eq(shard_logseg_take(w, "abc", 3, &fills), 3);
	cr_assert_eq(shard_logseg_take(w, "", 0, &fills), 0);
	pt_buf_free(&recs);
	pt_buf_free(&out);
	shard_logseg_free(w);
}

Test(shard_logseg, batches_are_bounded_and_a_long_record_goes_alone)
{
	struct shard_logseg *w = writer(0, 0, 0);
	struct pt_buf recs = PT_BUF_INIT;
	size_t n;
	bool fills;

	for (int i = 0; i < 100; i++)
		record(&recs, i, 10000);
	cr_assert_eq(shard_logseg_begin(w, 0), PT_OK);
	n = shard_logseg_take(w, recs.data, recs.len, &fills);
	cr_assert_eq(n, (SHARD_LOGSEG_BATCH_MAX / 10000) * 10000);
	cr_assert_not(fills);
	recs.len = 0;
	record(&recs, 0, SHARD_LOGSEG_BATCH_MAX + 5000);
	record(&recs, 1, 100);
	cr_assert_eq(shard_logseg_take(w, recs.data, recs.len, &fills),
		     SHARD_LOGSEG_BATCH_MAX + 5000);
	pt_buf_free(&recs);
	shard_logseg_free(w);
}

Test(shard_logseg, age_limit_on_a_fake_clock)
{
	struct shard_logseg *w = writer(0, 5000, 0), *forever = writer(0, 0, 0);
	struct pt_buf out = PT_BUF_INIT;

	cr_assert_not(shard_logseg_expired(w, 1000000)); /* nothing open */
	cr_assert_eq(shard_logseg_begin(w, 1000), PT_OK);
	cr_assert_eq(shard_logseg_deadline_ms(w), 6000);
	cr_assert_not(shard_logseg_expired(w, 1000));
	cr_assert_not(shard_logseg_expired(w, 5999));
	cr_assert(shard_logseg_expired(w, 6000));
	cr_assert_eq(shard_logseg_compress(w, NULL, 0, true, &out), PT_OK);
	cr_assert_not(shard_logseg_expired(w, 7000)); /* closed */
	cr_assert_eq(shard_logseg_deadline_ms(w), 0);
	/* The next segment counts from its own start. */
	cr_assert_eq(shard_logseg_begin(w, 7000), PT_OK);
	cr_assert_not(shard_logseg_expired(w, 11999));
	cr_assert(shard_logseg_expired(w, 12000));
	cr_assert_eq(shard_logseg_begin(forever, 0), PT_OK);
	cr_assert_eq(shard_logseg_deadline_ms(forever), 0);
	cr_assert_not(shard_logseg_expired(forever, UINT64_MAX));
	pt_buf_free(&out);
	shard_logseg_free(w);
	shard_logseg_free(forever);
}

/*
 * An open segment of n_writes flushed writes of varied sizes: the stream
 * and records in out/recs, and after write k the compressed and the
 * uncompressed length at cut[k] and plain[k].
 */
#define N_WRITES 40
static void open_segment(struct shard_logseg *w, struct pt_buf *out, struct pt_buf *recs,
			 size_t *cut, size_t *plain)
{
	int id = 0;

	cr_assert_eq(shard_logseg_begin(w, 0), PT_OK);
	for (int k = 0; k < N_WRITES; k++) {
		size_t start = recs->len;

		for (int r = 0; r <= k % 5; r++)
			record(recs, id++, 120 + (size_t)(k * 37 % 400));
		cr_assert_eq(
		    shard_logseg_compress(w, recs->data + start, recs->len - start, false, out),
		    PT_OK);
		cut[k] = out->len;
		plain[k] = recs->len;
	}
}

Test(shard_logseg, every_flush_point_decodes_to_the_records_so_far)
{
	struct shard_logseg *w = writer(0, 0, 0);
	struct pt_buf out = PT_BUF_INIT, recs = PT_BUF_INIT, text = PT_BUF_INIT;
	size_t cut[N_WRITES], plain[N_WRITES];
	bool finished;

	open_segment(w, &out, &recs, cut, plain);
	for (int k = 0; k < N_WRITES; k++) {
		decode(out.data, cut[k], &text, &finished);
		cr_assert_not(finished, "write %d", k);
		cr_assert_eq(text.len, plain[k], "write %d: %zu bytes decoded, %zu written", k,
			     text.len, plain[k]);
		cr_assert_eq(memcmp(text.data, recs.data, text.len), 0);
	}
	cr_assert_eq(shard_logseg_compress(w, NULL, 0, true, &out), PT_OK);
	decode(out.data, out.len, &text, &finished);
	cr_assert(finished);
	cr_assert_eq(text.len, recs.len);
	cr_assert_eq(memcmp(text.data, recs.data, recs.len), 0);
	/* Closing a flushed frame adds exactly the epilogue repair uses. */
	cr_assert_eq(out.len, cut[N_WRITES - 1] + sizeof(shard_logseg_epilogue));
	cr_assert_eq(memcmp(out.data + cut[N_WRITES - 1], shard_logseg_epilogue, 3), 0);
	pt_buf_free(&out);
	pt_buf_free(&recs);
	pt_buf_free(&text);
	shard_logseg_free(w);
}

Test(shard_logseg, a_cut_at_every_byte_repairs_to_a_prefix_of_the_records)
{
	struct shard_logseg *w = writer(0, 0, 0);
	struct pt_buf out = PT_BUF_INIT, recs = PT_BUF_INIT, text = PT_BUF_INIT,
		      fixed = PT_BUF_INIT;
	size_t cut[N_WRITES], plain[N_WRITES];

	open_segment(w, &out, &recs, cut, plain);
	for (size_t len = 0; len <= out.len; len++) {
		size_t good, whole = 0;
		bool complete, finished;

		cr_assert_eq(shard_logseg_scan((const uint8_t *)out.data, len, &good, &complete),
			     PT_OK, "cut %zu", len);
		cr_assert_not(complete);
		cr_assert_leq(good, len);
		for (int k = 0; k < N_WRITES && cut[k] <= len; k++)
			whole = plain[k];
		if (good == 0) {
			/* Nothing before the first block: no write was whole. */
			cr_assert_lt(len, cut[0], "cut %zu", len);
			continue;
		}
		fixed.len = 0;
		pt_buf_append(&fixed, out.data, good);
		pt_buf_append(&fixed, shard_logseg_epilogue, sizeof(shard_logseg_epilogue));
		decode(fixed.data, fixed.len, &text, &finished);
		cr_assert(finished, "cut %zu", len);
		cr_assert_eq(ZSTD_findFrameCompressedSize(fixed.data, fixed.len), fixed.len);
		/* A prefix of what was written, and every write whole before the cut. */
		cr_assert_geq(text.len, whole, "cut %zu: %zu decoded, %zu written whole", len,
			      text.len, whole);
		cr_assert_leq(text.len, recs.len);
		cr_assert_eq(memcmp(text.data, recs.data, text.len), 0, "cut %zu", len);
	}
	pt_buf_free(&out);
	pt_buf_free(&recs);
	pt_buf_free(&text);
	pt_buf_free(&fixed);
	shard_logseg_free(w);
}

Test(shard_logseg, the_scan_walks_every_block_type)
{
	struct shard_logseg *w = writer(0, 0, 0);
	struct pt_buf out = PT_BUF_INIT, run = PT_BUF_INIT, text = PT_BUF_INIT;
	size_t good;
	bool complete, finished;

	/* One byte repeated makes an RLE block (its content is one byte). */
	for (int i = 0; i < 5000; i++)
		pt_buf_append(&run, "x", 1);
	pt_buf_append(&run, "\n", 1);
	cr_assert_eq(shard_logseg_begin(w, 0), PT_OK);
	cr_assert_eq(shard_logseg_compress(w, "{}\n", 3, false, &out), PT_OK);
	cr_assert_eq(shard_logseg_compress(w, run.data, run.len - 1, false, &out), PT_OK);
	cr_assert_eq(shard_logseg_compress(w, "\n{\"a\":1}\n", 9, false, &out), PT_OK);
	cr_assert_eq(shard_logseg_scan((const uint8_t *)out.data, out.len, &good, &complete),
		     PT_OK);
	cr_assert_not(complete);
	cr_assert_eq(good, out.len);
	cr_assert_eq(shard_logseg_compress(w, NULL, 0, true, &out), PT_OK);
	cr_assert_eq(shard_logseg_scan((const uint8_t *)out.data, out.len, &good, &complete),
		     PT_OK);
	cr_assert(complete);
	cr_assert_eq(good, out.len);
	decode(out.data, out.len, &text, &finished);
	cr_assert_eq(text.len, 3 + 5000 + 9);
	pt_buf_free(&out);
	pt_buf_free(&run);
	pt_buf_free(&text);
	shard_logseg_free(w);
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);

	cr_assert_geq(fd, 0, "%s", path);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void read_file(const char *path, struct pt_buf *b)
{
	char chunk[4096];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	cr_assert_geq(fd, 0, "%s", path);
	b->len = 0;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		pt_buf_append(b, chunk, (size_t)n);
	close(fd);
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	cr_assert_eq(stat(path, &st), 0, "%s", path);
	return st.st_mode & 07777;
}

Test(shard_logseg, repair_closes_an_open_segment_file_and_marks_it_done)
{
	struct shard_logseg *w = writer(0, 0, 0);
	struct pt_buf out = PT_BUF_INIT, recs = PT_BUF_INIT, text = PT_BUF_INIT, file = PT_BUF_INIT;
	size_t cut[N_WRITES], plain[N_WRITES];
	enum shard_logseg_repair what;
	char path[128], err[256];
	bool finished;

	open_segment(w, &out, &recs, cut, plain);
	snprintf(path, sizeof(path), "%s/20260101-000000.000000001", dir);
	/* Killed in the middle of the 21st write. */
	write_file(path, out.data, cut[20] + 7);
	cr_assert_eq(shard_logseg_repair(path, &what, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(what, SHARD_LOGSEG_CLOSED);
	cr_assert_eq(mode_of(path), 0440);
	read_file(path, &file);
	decode(file.data, file.len, &text, &finished);
	cr_assert(finished);
	cr_assert_geq(text.len, plain[20]);
	cr_assert_eq(memcmp(text.data, recs.data, text.len), 0);
	cr_assert_eq(text.data[text.len - 1], '\n'); /* cut at a write: whole records */

	/* A second repair finds it closed. */
	chmod(path, 0640);
	cr_assert_eq(shard_logseg_repair(path, &what, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(what, SHARD_LOGSEG_WAS_CLOSED);
	cr_assert_eq(mode_of(path), 0440);
	pt_buf_free(&out);
	pt_buf_free(&recs);
	pt_buf_free(&text);
	pt_buf_free(&file);
	shard_logseg_free(w);
}

Test(shard_logseg, repair_removes_segments_without_a_block_and_leaves_foreign_files)
{
	struct shard_logseg *w = writer(0, 0, 0);
	struct pt_buf out = PT_BUF_INIT;
	enum shard_logseg_repair what;
	char path[128], err[256];

	cr_assert_eq(shard_logseg_begin(w, 0), PT_OK);
	cr_assert_eq(shard_logseg_compress(w, "{}\n", 3, false, &out), PT_OK);
	snprintf(path, sizeof(path), "%s/20260101-000000.000000002", dir);
	write_file(path, "", 0); /* created, then killed */
	cr_assert_eq(shard_logseg_repair(path, &what, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(what, SHARD_LOGSEG_REMOVED);
	cr_assert_neq(access(path, F_OK), 0);
	write_file(path, out.data, 6); /* the frame header alone */
	cr_assert_eq(shard_logseg_repair(path, &what, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(what, SHARD_LOGSEG_REMOVED);
	write_file(path, "{\"type\":\"Reception\"}\n", 21);
	cr_assert_eq(shard_logseg_repair(path, &what, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(what, SHARD_LOGSEG_FOREIGN);
	cr_assert_eq(mode_of(path), 0640);
	snprintf(path, sizeof(path), "%s/missing", dir);
	cr_assert_eq(shard_logseg_repair(path, &what, err, sizeof(err)), PT_ERROR);
	cr_assert(strstr(err, "No such file") != NULL, "%s", err);
	pt_buf_free(&out);
	shard_logseg_free(w);
}

/* The window a level chooses for a stream of unknown size shows in the
 * frame header (RFC 8878 3.1.1.1.2): proof that compression_level reaches
 * zstd. */
static unsigned long long window_of_level(int level)
{
	struct shard_logseg *w = writer(0, 0, level);
	struct pt_buf out = PT_BUF_INIT;
	unsigned char fhd, wd;
	unsigned long long base;

	cr_assert_eq(shard_logseg_begin(w, 0), PT_OK);
	cr_assert_eq(shard_logseg_compress(w, "{}\n", 3, false, &out), PT_OK);
	cr_assert_geq(out.len, 6);
	cr_assert_eq(memcmp(out.data, "\x28\xb5\x2f\xfd", 4), 0);
	fhd = (unsigned char)out.data[4];
	wd = (unsigned char)out.data[5];
	/* No content size, not a single segment, no checksum, no dictionary. */
	cr_assert_eq(fhd, 0, "frame header descriptor 0x%02x", fhd);
	base = 1ull << (10 + (wd >> 3));
	pt_buf_free(&out);
	shard_logseg_free(w);
	return base + base / 8 * (wd & 7);
}

Test(shard_logseg, compression_level_reaches_the_frame)
{
	cr_assert_eq(window_of_level(1), 1ull << 19);
	cr_assert_eq(window_of_level(0), 1ull << 21); /* zstd's default, level 3 */
	cr_assert_eq(window_of_level(19), 1ull << 23);
}

Test(shard_logseg, names_sort_by_start_time)
{
	char name[SHARD_LOGSEG_NAME_LEN + 1];

	/* 2024-02-29T23:59:59.000000001Z */
	shard_logseg_name(1709251199000000001ull, name);
	cr_assert_str_eq(name, "20240229-235959.000000001");
	shard_logseg_name(1709251199123456789ull, name);
	cr_assert_str_eq(name, "20240229-235959.123456789");
	cr_assert(shard_logseg_name_valid("20240229-235959.123456789"));
	cr_assert(shard_logseg_name_valid("20240229-235959")); /* KumoMTA's older names */
	cr_assert_not(shard_logseg_name_valid("20240229-235959.log"));
	cr_assert_not(shard_logseg_name_valid("20240229-235959."));
	cr_assert_not(shard_logseg_name_valid("20240229_235959"));
	cr_assert_not(shard_logseg_name_valid("2024022-235959"));
	cr_assert_not(shard_logseg_name_valid(".20240229-235959"));
}
