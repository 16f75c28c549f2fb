/*
 * shard_logseg.h -- one log segment as a zstd stream, and the start-up
 * repair of segments a stopped daemon left open (shard_logseg.c).
 *
 * Shard-internal, like shard_int.h: shard_log.c glues it to the ring.  The
 * writer half does no I/O and reads no clock (times are arguments), so the
 * unit suite drives rotation with a fake clock.
 */
#ifndef PT_SHARD_LOGSEG_H
#define PT_SHARD_LOGSEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define SHARD_LOGSEG_MAX_FILE_SIZE 1000000000u /* KumoMTA's default, uncompressed */
/* Records handed to one write, at most (one longer record goes alone): it
 * bounds the compression work of one loop iteration (about 1 ms at the
 * default level). */
#define SHARD_LOGSEG_BATCH_MAX (256u * 1024)
/* "YYYYMMDD-HHMMSS.nnnnnnnnn": UTC start time to the nanosecond. */
#define SHARD_LOGSEG_NAME_LEN 25

struct shard_logseg_config {
	uint64_t max_file_size;	  /* uncompressed bytes per segment; 0: the default */
	uint64_t max_duration_ms; /* age limit; 0: none */
	int compression_level;	  /* 0: zstd's default (3) */
};

struct shard_logseg;

/* A writer with no segment open; NULL when out of memory.  cfg is copied. */
struct shard_logseg *shard_logseg_new(const struct shard_logseg_config *cfg);
void shard_logseg_free(struct shard_logseg *w);

/* Start a segment (a new zstd frame) at now_ms, monotonic.  PT_OK or PT_ERROR. */
int shard_logseg_begin(struct shard_logseg *w, uint64_t now_ms);
bool shard_logseg_is_open(const struct shard_logseg *w);
/* Uncompressed bytes in the open segment so far. */
uint64_t shard_logseg_written(const struct shard_logseg *w);
/* When the open segment reaches its age limit (monotonic ms); 0: never. */
uint64_t shard_logseg_deadline_ms(const struct shard_logseg *w);
bool shard_logseg_expired(const struct shard_logseg *w, uint64_t now_ms);

/*
 * How many bytes of records (len bytes of whole '\n'-ended lines) go into
 * the next write: up to and including the line that makes the segment
 * reach max_file_size (KumoMTA's rule: a segment ends after the record that
 * fills it; *fills is then set), and no more than SHARD_LOGSEG_BATCH_MAX
 * unless the first line alone is longer.  A trailing piece without '\n'
 * counts as a line.  0 only when len is 0.
 */
size_t shard_logseg_take(const struct shard_logseg *w, const char *records, size_t len,
			 bool *fills);

/*
 * Compress records into out (appended).  end false: flush (ZSTD_e_flush),
 * so the segment written so far ends on a block boundary and a reader
 * decodes every record in it; end true: close the frame, after which no
 * segment is open.  PT_OK, PT_NOMEM, or PT_ERROR (zstd failed; the segment
 * is unusable and should be closed with shard_logseg_epilogue).
 */
int shard_logseg_compress(struct shard_logseg *w, const char *records, size_t len, bool end,
			  struct pt_buf *out);
/* Forget the open segment without closing its frame (after a failed write). */
void shard_logseg_abandon(struct shard_logseg *w);

/*
 * The three bytes that close a frame cut at a block boundary: an empty raw
 * block marked last.  Exactly what zstd writes to end a flushed frame when
 * no content checksum is asked for (Petrel asks for none).
 */
extern const uint8_t shard_logseg_epilogue[3];

/* The name of a segment started at wall_ns (UTC); out holds
 * SHARD_LOGSEG_NAME_LEN + 1 bytes. */
void shard_logseg_name(uint64_t wall_ns, char *out);
/* True for "YYYYMMDD-HHMMSS" followed by nothing or by '.' and digits
 * (Petrel's names and KumoMTA's). */
bool shard_logseg_name_valid(const char *name);

/*
 * How far the zstd frame in data[0..len) is good: *good_len is the length
 * of the longest prefix ending on a block boundary (after the frame header),
 * *complete whether its last block was found (the frame is closed).
 * PT_OK, or PT_ERROR when data does not start a zstd frame Petrel can
 * repair (bad magic, a content checksum, a reserved block type at the
 * start).  For a header cut short, *good_len is 0.  Pure; the unit suite
 * cuts streams at every byte with it, tests/fuzz/logseg_fuzz.c feeds it
 * anything.
 */
int shard_logseg_scan(const uint8_t *data, size_t len, size_t *good_len, bool *complete);

enum shard_logseg_repair {
	SHARD_LOGSEG_WAS_CLOSED, /* a finished segment: only marked done */
	SHARD_LOGSEG_CLOSED,	 /* cut to its last whole block and closed */
	SHARD_LOGSEG_REMOVED,	 /* no block at all: deleted */
	SHARD_LOGSEG_FOREIGN,	 /* not a frame Petrel can close: left as it is */
};

/*
 * Start-up: make the segment at path a finished one.  An open segment (a
 * daemon killed, or a failed write) is cut back to its last whole block and
 * its frame closed with shard_logseg_epilogue; then the file is marked done
 * (its write bits removed, KumoMTA's marker for a tailer).  Blocking I/O.
 * PT_OK with *what, or PT_ERROR with a reason in err.
 */
int shard_logseg_repair(const char *path, enum shard_logseg_repair *what, char *err,
			size_t err_len);
/* Mark a finished segment done: clear the write bits.  0 or -errno. */
int shard_logseg_mark_done_fd(int fd);

#endif
