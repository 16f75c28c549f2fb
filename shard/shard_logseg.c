/*
 * shard_logseg.c -- log segments: zstd streams written a batch at a time,
 * rotated by size and age, closed (or repaired at start) so that every
 * finished segment is one complete zstd frame.
 *
 * On disk (KumoMTA's local log layout, one directory per shard):
 *
 *     <log_dir>/<shard>/<YYYYMMDD-HHMMSS.nnnnnnnnn>
 *
 * named by the UTC time the segment was started (KumoMTA's
 * "%Y%m%d-%H%M%S%.f", fixed at nine digits so names sort by time), each
 * file one zstd frame of JSON lines.  No content checksum (as KumoMTA's
 * encoder), no content size (unknown when the frame starts).
 *
 * The frame, as RFC 8878 lays it out and as this file relies on:
 *
 *     offset  bytes  field
 *     0       4      magic 28 b5 2f fd
 *     4       1      frame header descriptor: bits 7-6 content size flag,
 *                    5 single segment, 3 reserved (0), 2 checksum,
 *                    1-0 dictionary id flag
 *     5       0-1    window descriptor (absent for a single segment)
 *             0-4    dictionary id
 *             0-8    content size
 *     then blocks, each a 3-byte little-endian header (bit 0 last block,
 *     bits 1-2 type: raw, RLE, compressed; bits 3-23 size) and its content
 *     (size bytes; one byte for RLE).
 *
 * Writing.  Records are compressed as they are written, never in a pass
 * over a finished file: each write of the shard's log carries the records
 * of one batch compressed with ZSTD_e_flush, so the file always ends on a
 * block boundary and a reader (petrel-logs tail, zstd -dc) decodes every
 * record written so far from the open segment.  The segment's last write
 * ends the frame (ZSTD_e_end).  A flush costs a block header and the
 * matches a longer block would have found across the cut; the window is
 * kept across blocks, so the ratio on JSON records stays close to an
 * unflushed stream when batches are large (busy shards) and only idle
 * shards write small blocks.
 *
 * Rotation.  A segment ends after the record that brings its uncompressed
 * size to max_file_size (KumoMTA), or when max_segment_duration has passed
 * since it was started (the shard's timer closes it even when no record
 * comes).  The next record starts a new segment.
 *
 * Repair.  A segment whose daemon stopped without closing it (kill -9, a
 * crash, a failed write) still holds a frame cut at a block boundary,
 * unless the last write was itself cut short.  At start the shard walks
 * the block headers of each segment still marked open (the write bits
 * set), cuts the file after the last whole block and appends the epilogue
 * zstd itself writes to end a flushed frame (an empty raw block marked
 * last), so the segment decodes cleanly everywhere.  Then it clears the
 * write bits: KumoMTA's "done" marker, which its tailer waits for.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "shard/shard_logseg.h"

#define LOGSEG_MAGIC	   0xFD2FB528u
#define LOGSEG_SCAN_WINDOW (1u << 20) /* bytes read at once while repairing */

const uint8_t shard_logseg_epilogue[3] = {0x01, 0x00, 0x00};

struct shard_logseg {
	struct shard_logseg_config cfg;
	ZSTD_CCtx *cctx;
	bool open;
	uint64_t written;     /* uncompressed bytes in the open segment */
	uint64_t deadline_ms; /* 0: no age limit */
};

struct shard_logseg *shard_logseg_new(const struct shard_logseg_config *cfg)
{
	struct shard_logseg *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->cfg = *cfg;
	if (w->cfg.max_file_size == 0)
		w->cfg.max_file_size = SHARD_LOGSEG_MAX_FILE_SIZE;
	w->cctx = ZSTD_createCCtx();
	if (w->cctx == NULL ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel,
						w->cfg.compression_level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 0))) {
		shard_logseg_free(w);
		return NULL;
	}
	return w;
}

void shard_logseg_free(struct shard_logseg *w)
{
	if (w == NULL)
		return;
	ZSTD_freeCCtx(w->cctx);
	free(w);
}

int shard_logseg_begin(struct shard_logseg *w, uint64_t now_ms)
{
	/* A new frame; the parameters (level, no checksum) stay. */
	if (ZSTD_isError(ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_only)))
		return PT_ERROR;
	w->open = true;
	w->written = 0;
	w->deadline_ms = w->cfg.max_duration_ms ? now_ms + w->cfg.max_duration_ms : 0;
	return PT_OK;
}

bool shard_logseg_is_open(const struct shard_logseg *w)
{
	return w->open;
}

uint64_t shard_logseg_written(const struct shard_logseg *w)
{
	return w->written;
}

uint64_t shard_logseg_deadline_ms(const struct shard_logseg *w)
{
	return w->open ? w->deadline_ms : 0;
}

bool shard_logseg_expired(const struct shard_logseg *w, uint64_t now_ms)
{
	return w->open && w->deadline_ms != 0 && now_ms >= w->deadline_ms;
}

size_t shard_logseg_take(const struct shard_logseg *w, const char *records, size_t len, bool *fills)
{
	uint64_t room = w->cfg.max_file_size - PT_MIN(w->written, w->cfg.max_file_size);
	size_t n = 0;

	*fills = false;
	/* The common case: everything fits, no line to look for. */
	if (len < room && len <= SHARD_LOGSEG_BATCH_MAX)
		return len;
	while (n < len) {
		const char *nl = memchr(records + n, '\n', len - n);
		size_t end = nl ? (size_t)(nl - records) + 1 : len;

		if (n > 0 && end > SHARD_LOGSEG_BATCH_MAX)
			break; /* the batch is full; this line starts the next one */
		n = end;
		if (n >= room) {
			*fills = true;
			break;
		}
	}
	return n;
}

int shard_logseg_compress(struct shard_logseg *w, const char *records, size_t len, bool end,
			  struct pt_buf *out)
{
	ZSTD_inBuffer in = {records, len, 0};
	ZSTD_EndDirective mode = end ? ZSTD_e_end : ZSTD_e_flush;
	size_t left;

	do {
		/* Room for everything at once in the usual case; more if asked. */
		size_t want = ZSTD_compressBound(len - in.pos) + ZSTD_CStreamOutSize();
		ZSTD_outBuffer o;

		if (pt_buf_reserve(out, want) != PT_OK)
			return PT_NOMEM;
		o = (ZSTD_outBuffer){out->data + out->len, out->cap - out->len - 1, 0};
		left = ZSTD_compressStream2(w->cctx, &o, &in, mode);
		if (ZSTD_isError(left))
			return PT_ERROR;
		out->len += o.pos;
	} while (left != 0 || in.pos < in.size);
	w->written += len;
	if (end)
		w->open = false;
	return PT_OK;
}

void shard_logseg_abandon(struct shard_logseg *w)
{
	w->open = false;
}

void shard_logseg_name(uint64_t wall_ns, char *out)
{
	time_t sec = (time_t)(wall_ns / 1000000000u);
	struct tm tm;

	gmtime_r(&sec, &tm);
	snprintf(out, SHARD_LOGSEG_NAME_LEN + 1, "%04u%02u%02u-%02u%02u%02u.%09u",
		 (unsigned)(tm.tm_year + 1900) % 10000, (unsigned)(tm.tm_mon + 1) % 100,
		 (unsigned)tm.tm_mday % 100, (unsigned)tm.tm_hour % 100, (unsigned)tm.tm_min % 100,
		 (unsigned)tm.tm_sec % 100, (unsigned)(wall_ns % 1000000000u));
}

bool shard_logseg_name_valid(const char *name)
{
	for (int i = 0; i < 15; i++) {
		bool digit = name[i] >= '0' && name[i] <= '9';

		if (i == 8 ? name[i] != '-' : !digit)
			return false;
	}
	if (name[15] == '\0')
		return true;
	if (name[15] != '.' || name[16] == '\0')
		return false;
	for (const char *p = name + 16; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

/*
 * The scan reads through a callback so that memory (the unit suite) and a
 * file (start-up) share one walk.  read returns the bytes it could give at
 * off (fewer at the end of the data), or -1.
 */
struct logseg_src {
	ssize_t (*read)(struct logseg_src *src, uint64_t off, uint8_t *buf, size_t n);
	uint64_t len;
};

/* The frame header's length from its first 5 bytes; 0: not one we repair. */
static size_t logseg_header_len(const uint8_t *h)
{
	static const uint8_t did_len[4] = {0, 1, 2, 4};
	uint8_t fhd = h[4];
	unsigned fcs_flag = fhd >> 6, dict_flag = fhd & 3;
	bool single = (fhd >> 5) & 1;
	size_t fcs_len = fcs_flag == 0 ? (single ? 1 : 0) : (size_t)1 << fcs_flag;

	if ((uint32_t)(h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24) != LOGSEG_MAGIC)
		return 0;
	/* A reserved bit, or a checksum we could not write without the content. */
	if (fhd & 0x08 || fhd & 0x04)
		return 0;
	return 5 + (single ? 0 : 1) + did_len[dict_flag] + fcs_len;
}

static int logseg_scan_src(struct logseg_src *src, size_t *good_len, bool *complete)
{
	uint8_t h[18];
	ssize_t got = src->read(src, 0, h, 5);
	uint64_t pos;
	size_t hlen;

	*good_len = 0;
	*complete = false;
	if (got < 0)
		return PT_ERROR;
	if (got < 5)
		return got == 0 || memcmp(h, "\x28\xb5\x2f\xfd", PT_MIN((size_t)got, 4)) == 0
			   ? PT_OK
			   : PT_ERROR;
	if ((hlen = logseg_header_len(h)) == 0)
		return PT_ERROR;
	if (src->len < hlen)
		return PT_OK;
	for (pos = hlen;;) {
		uint32_t b, type, size;
		uint64_t next;

		if (src->read(src, pos, h, 3) != 3)
			break;
		b = h[0] | h[1] << 8 | (uint32_t)h[2] << 16;
		type = (b >> 1) & 3;
		size = b >> 3;
		if (type == 3) /* reserved: not a block we wrote */
			break;
		next = pos + 3 + (type == 1 ? 1 : size);
		if (next > src->len)
			break;
		pos = next;
		if (b & 1) {
			*complete = true;
			break;
		}
	}
	/* A frame with no block at all has nothing to keep. */
	*good_len = pos == hlen && !*complete ? 0 : (size_t)pos;
	return PT_OK;
}

struct logseg_mem {
	struct logseg_src src;
	const uint8_t *data;
};

static ssize_t logseg_mem_read(struct logseg_src *src, uint64_t off, uint8_t *buf, size_t n)
{
	struct logseg_mem *m = pt_container_of(src, struct logseg_mem, src);

	if (off >= src->len)
		return 0;
	n = (size_t)PT_MIN((uint64_t)n, src->len - off);
	memcpy(buf, m->data + off, n);
	return (ssize_t)n;
}

int shard_logseg_scan(const uint8_t *data, size_t len, size_t *good_len, bool *complete)
{
	struct logseg_mem m = {{logseg_mem_read, len}, data};

	return logseg_scan_src(&m.src, good_len, complete);
}

/* A file read through a window of LOGSEG_SCAN_WINDOW bytes: block headers
 * are mostly close together, so most need no system call. */
struct logseg_file {
	struct logseg_src src;
	int fd;
	uint8_t *win;
	uint64_t win_off;
	size_t win_len;
};

static ssize_t logseg_file_read(struct logseg_src *src, uint64_t off, uint8_t *buf, size_t n)
{
	struct logseg_file *f = pt_container_of(src, struct logseg_file, src);

	if (off < f->win_off || off + n > f->win_off + f->win_len) {
		ssize_t r;

		do
			r = pread(f->fd, f->win, LOGSEG_SCAN_WINDOW, (off_t)off);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return -1;
		f->win_off = off;
		f->win_len = (size_t)r;
	}
	if (off >= f->win_off + f->win_len)
		return 0;
	n = (size_t)PT_MIN((uint64_t)n, f->win_off + f->win_len - off);
	memcpy(buf, f->win + (off - f->win_off), n);
	return (ssize_t)n;
}

int shard_logseg_mark_done_fd(int fd)
{
	struct stat st;

	if (fstat(fd, &st) != 0 || fchmod(fd, st.st_mode & 07555) != 0)
		return -errno;
	return 0;
}

/* Cut the file after its last whole block and close the frame. */
static int logseg_close_frame(int fd, size_t good_len)
{
	ssize_t n;

	if (ftruncate(fd, (off_t)good_len) != 0)
		return -errno;
	n = pwrite(fd, shard_logseg_epilogue, sizeof(shard_logseg_epilogue), (off_t)good_len);
	if (n < 0)
		return -errno;
	return n == (ssize_t)sizeof(shard_logseg_epilogue) ? 0 : -EIO;
}

int shard_logseg_repair(const char *path, enum shard_logseg_repair *what, char *err, size_t err_len)
{
	struct logseg_file f = {.fd = -1};
	struct stat st;
	size_t good;
	bool complete;
	int rc = PT_ERROR, e = 0;

	if ((f.fd = open(path, O_RDWR | O_CLOEXEC)) < 0 || fstat(f.fd, &st) != 0) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		goto out;
	}
	f.src = (struct logseg_src){logseg_file_read, (uint64_t)st.st_size};
	if ((f.win = malloc(LOGSEG_SCAN_WINDOW)) == NULL) {
		snprintf(err, err_len, "%s: out of memory", path);
		goto out;
	}
	if (logseg_scan_src(&f.src, &good, &complete) != PT_OK) {
		*what = SHARD_LOGSEG_FOREIGN;
		rc = PT_OK;
		goto out;
	}
	if (good == 0) {
		/* Nothing decodable in it (created, then stopped): no record lost. */
		*what = SHARD_LOGSEG_REMOVED;
		e = unlink(path) == 0 ? 0 : -errno;
	} else if (complete) {
		*what = SHARD_LOGSEG_WAS_CLOSED;
		e = shard_logseg_mark_done_fd(f.fd);
	} else {
		*what = SHARD_LOGSEG_CLOSED;
		if ((e = logseg_close_frame(f.fd, good)) == 0)
			e = shard_logseg_mark_done_fd(f.fd);
	}
	if (e != 0) {
		snprintf(err, err_len, "%s: %s", path, strerror(-e));
		goto out;
	}
	rc = PT_OK;
out:
	free(f.win);
	if (f.fd >= 0)
		close(f.fd);
	return rc;
}
