/*
 * spool_segment.c -- segment files: the on-disk format, creating a segment,
 * and scanning one record by record.  This comment is the spool's design
 * document; spool.c (group commit), spool_record.c (the codec),
 * spool_recover.c (recovery) and spool_read.c refer to it.
 *
 * LAYOUT
 *
 *     <path>/<shard>/0000000000000001.seg
 *     <path>/<shard>/0000000000000002.seg    one file per segment, named by
 *     ...                                    its sequence number in hex
 *                                            ("%016llx.seg"), so the names
 *                                            sort in spool order
 *
 * A shard owns its directory and appends to one segment at a time, the
 * current one, which always has the highest sequence.  spool_open() starts a
 * new segment (max + 1) instead of appending to the last one it recovered, so
 * a file that recovery had to repair is never written again.  Older segments
 * are never written, except that a failed batch's bytes are cut off again.
 *
 * RECORD FORMAT
 *
 * A segment is records back to back, no padding: records are read through a
 * buffer, never mapped as structs, so alignment would buy nothing and cost an
 * iovec per record.  All integers are little-endian.
 *
 *     offset  size  field
 *     0       4     magic 0x52535450 ("PTSR" on disk)
 *     4       1     type: 1 SEGMENT_HEADER, 2 MESSAGE, 3 TOMBSTONE, 4 RCPT_STATE
 *     5       1     flags, 0
 *     6       2     reserved, 0
 *     8       4     payload length P, at most 1 GiB (SPOOL_PAYLOAD_MAX)
 *     12      4     CRC-32C (core/crc32c.h) of bytes 0..11, then the payload,
 *                   XOR the segment's mask (below)
 *     16      P     payload
 *
 * The CRC covers the header fields, not only the payload: a flipped type or
 * length must fail the check too, or a length that happens to stay inside the
 * file would frame a record of the wrong span that looks valid.
 *
 * The mask (spool_record_mask) is 0 for the SEGMENT_HEADER record and, in
 * format version 2, the low 32 bits of the segment's sequence for every
 * record after it (version 1, still read, stored every CRC unmasked).  It
 * ties each record to the segment it was written for: a recycled file's
 * old records (RECYCLING) fail the check in the segment it became.
 *
 * SEGMENT_HEADER payload, 32 bytes, always the first record and only there:
 *
 *     0   4   format version (2 written; 1 and 2 read)
 *     4   4   shard
 *     8   8   sequence (must match the file name)
 *     16  8   created, microseconds since the epoch
 *     24  8   reserved, 0
 *
 * MESSAGE payload (one record per transaction, the body stored once however
 * many recipients it has):
 *
 *     0      32  id, 32 lowercase hex digits (core/id.h)
 *     32     8   created_us
 *     40     8   B, body length
 *     48     4   S, sender length
 *     52     4   R, number of recipients
 *     56     4   M, number of meta entries
 *     60     4   reserved, 0
 *     64     S   sender (reverse-path without <>; empty for the null sender)
 *     ...        R x { 4: length L, L bytes }             forward-paths
 *     ...        M x { 4: key length K, 4: JSON length J, K bytes, J bytes }
 *     P - B  B   the message as stored (core/message.h):
 *                prefix | data[0, header_end) | appended | data[header_end, len)
 *
 * The envelope must end exactly where the body starts; strings hold no NUL.
 *
 * TOMBSTONE payload, 32 bytes: the id of a message that is done.  It may sit
 * in a later segment than its message.
 *
 * RCPT_STATE payload, 56 bytes: where one recipient of a message stands, so
 * a restart brings its delivery unit back with its schedule:
 *
 *     0   32  id of the message
 *     32  4   recipient index (into the MESSAGE record's forward-paths)
 *     36  4   flags: bit 0 done (delivered, bounced or expired); others 0
 *     40  4   num_attempts, attempts made so far
 *     44  4   reserved, 0
 *     48  8   due_us, next attempt, wall clock microseconds (0: now)
 *
 * A recipient's state is the newest RCPT_STATE for it that lies after the
 * message's newest MESSAGE copy: a newer copy (compaction moving the message
 * forward) resets every recipient to pending, and compaction writes the
 * states again after the copy.  A recipient without one is pending with no
 * attempts.  States of a tombstoned or unknown id, or with a recipient index
 * past the message's count, are ignored (the last with a warning).
 *
 * WRITE AND SYNC ORDER
 *
 *  1. Creating a segment (spool_segment_create): open O_CREAT|O_EXCL,
 *     pwrite the SEGMENT_HEADER, fdatasync the file, fsync the directory.
 *     Only then is it current, so a segment that will hold acknowledged
 *     records can always be found by name after a crash.
 *  2. A batch (spool.c): one pwritev of whole records at the current end of
 *     the segment, then fdatasync (linked on the ring).  No record of the
 *     batch is acknowledged before the fdatasync has succeeded.  fdatasync
 *     also makes the new file size durable: the size is metadata needed to
 *     read the data back.
 *  3. Rotation (a new segment, step 1) happens only after a batch completed,
 *     so only the newest segment can ever have a write in flight.
 *  4. A failed write or sync is final for the segment (PostgreSQL's
 *     "fsyncgate": a retried fsync can succeed over pages the kernel already
 *     dropped).  The segment is cut back to the batch's start with ftruncate
 *     (best effort, never followed by another fsync of that file), sealed,
 *     and the next batch goes to a new segment (step 1).
 *  5. A tombstone or a RCPT_STATE is appended only after its message was
 *     acknowledged (for a compaction copy: after the copy was appended), so
 *     it is in the same segment as the message's newest copy or a later one.
 *  6. Dead segments are deleted (spool.c, spool_collect) oldest first, and
 *     the directory fsync'd after.
 *
 * WHY A CRASH AT ANY POINT IS SAFE
 *
 *  - During step 1: the newest segment is empty or has a torn header.  No
 *    record was ever in it; recovery removes it.
 *  - During step 2: the newest segment ends with some part of the batch,
 *    possibly with holes (pages reach the disk in any order).  Recovery reads
 *    from the start and stops at the first record that is incomplete or fails
 *    its magic, length, structure or CRC check, and truncates the file there
 *    (then fdatasyncs it, so the garbage cannot come back behind records
 *    written later).  Every acknowledged record lies before that point: it
 *    was made durable by an earlier fdatasync that returned.  Whole records
 *    of the torn batch before that point are kept: their senders got no
 *    250 and will retry, so at worst a message is delivered twice, never lost.
 *  - After step 4: if the ftruncate did not reach the disk, the failed
 *    batch's bytes may come back in the sealed segment.  Whole records come
 *    back as live messages (their senders were told 451: a duplicate again);
 *    a torn one is reported as a bad record in an older segment and the rest
 *    of that segment skipped -- only bytes of the failed batch lie there.
 *  - A bad record in an older segment otherwise means the media lied: it is
 *    reported with the path and offset, and the rest of that segment is
 *    skipped but kept on disk for inspection.
 *  - A lost tombstone brings its message back: delivered twice
 *    (at-least-once), never lost.
 *  - A lost RCPT_STATE (a crash before its batch synced, or cut off with a
 *    torn tail) leaves the recipient at its previous state: it is retried
 *    earlier than planned, or delivered again if the lost state said done.
 *    At-least-once again, never lost: losing a state can only make a
 *    recipient be tried again, never dropped.
 *
 * DELETING DEAD SEGMENTS
 *
 * A segment is dead when no message's newest copy lies in it.  Deleting a
 * segment also deletes its tombstones and states, so it must never bring a
 * message back or hand a live recipient an older state.  Two rules, both
 * deleting oldest first and fsyncing the directory after:
 *
 *  - At run time (spool_collect) only a prefix goes: the oldest segment, while
 *    it is dead and not the current one.  Every older segment is already gone,
 *    and a tombstone follows its message's copies (step 5), so each tombstone
 *    in it names a message whose copies are all in it or in those deleted
 *    segments: none can come back.  A live message's states follow its newest
 *    copy, which is in a live segment; the prefix stops at the oldest live
 *    segment, so the states after it are kept, and those before it are older
 *    than the copy and reset by it anyway.
 *  - At open (spool_recover.c) a dead segment may go from the middle, when
 *    the index shows that no message its tombstones name keeps a copy in a
 *    segment that stays, and that it holds no live recipient's current state.
 *
 * A crash in between leaves at worst tombstones whose messages are already
 * gone, or (if the directory reorders the unlinks) a message whose tombstone
 * is gone: a duplicate.  A segment in which recovery found a bad record is
 * renamed to "<name>.bad" instead of deleted when its turn comes: out of the
 * spool (the same as deleting it for the argument above) but kept for the
 * operator, since the unreadable rest may hold what a person can salvage.
 *
 * RECYCLING
 *
 * On ext4 (and other file systems) an fdatasync that extends a file also
 * writes its size and new block map: a second write before the flush, or a
 * journal commit.  Into blocks the file already has, it writes the data
 * and flushes, nothing else.  So a dead segment that reached segment_max
 * (of at least SPOOL_RECYCLE_MIN, 1 MiB) is not deleted but renamed
 * "<seq>.free", a spare (at most SPOOL_SPARES_MAX per shard; any other is
 * deleted as before), and the next segment is made from it
 * (spool_segment_recycle):
 *
 *  1. the new SEGMENT_HEADER is written over the old one and fdatasync'd
 *     while the file still has its spare name;
 *  2. renamed to the new segment's name (RENAME_NOREPLACE), directory fsync.
 *
 * Its old records stay in place after the header until overwritten: they
 * carry the old segment's mask, so a scan stops at the first of them as at
 * a torn tail -- for the newest segment after a crash, recovery truncates
 * them there, as it does a torn batch.  A recycled segment is filled to
 * its old length before it rotates, so a sealed one has no old bytes left;
 * when it stops being current earlier (spool_close, a rotation of an idle
 * segment, a failed batch) the old bytes are cut off and the cut synced
 * first, so an older segment never ends in them.  The rotation of a dead,
 * idle current segment (spool_collect) makes a new file, keeping the
 * spares for segments that will fill.  A spare joins the list
 * only once the directory fsync after its rename returned: step 1 never
 * writes a new header into a file that a crash could bring back under its
 * old segment name (which recovery would refuse as foreign).  Spares left
 * by a previous run are found at open, the newest SPOOL_SPARES_MAX kept.
 * Format version 1 segments are never kept as spares (their CRCs are not
 * masked, so their records would read as the new segment's).
 *
 * WHY A RECYCLED FILE IS SAFE
 *
 *  - Renaming a dead segment away is deleting it, for the argument under
 *    DELETING DEAD SEGMENTS; if the rename does not reach the disk the dead
 *    segment comes back, as an unlink that did not.
 *  - A crash during step 1 leaves a spare with a new header: still a spare.
 *    During step 2: either the spare, or a newest segment with its header
 *    and old records, which recovery truncates after the header.
 *  - An old record can never pass as a new one: its stored CRC is masked
 *    with another sequence (two sequences below 2^32 apart never share a
 *    mask), and it sits where the new segment's records have not reached.
 *
 * COST
 *
 * One pwritev and one fdatasync per batch, not per message.  Creating a
 * segment costs an open and two syncs, once per segment_max bytes (64 MiB by
 * default) and once per start; recycling a spare the same, and its blocks
 * stay allocated (up to SPOOL_SPARES_MAX spare files of a segment's size per
 * shard count against the disk's free space).  Scanning reads each segment once, sequentially,
 * through a 1 MiB buffer.
 */
#include "spool/spool_int.h"

#include "core/ptime.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read-ahead of the scan: one pread per MiB instead of two per record. */
#define SEGMENT_READ_CHUNK (1u << 20)

/* The file name of segment seq: "%016llx.seg". */
void spool_segment_name(uint64_t seq, char out[SPOOL_SEGMENT_NAME_LEN + 1])
{
	snprintf(out, SPOOL_SEGMENT_NAME_LEN + 1, "%016llx.seg", (unsigned long long)seq);
}

/* True when name is a segment file name (16 lowercase hex digits + ".seg"); sets *seq. */
bool spool_segment_parse_name(const char *name, uint64_t *seq)
{
	uint64_t v = 0;

	if (strlen(name) != SPOOL_SEGMENT_NAME_LEN || strcmp(name + 16, ".seg") != 0)
		return false;
	for (int i = 0; i < 16; i++) {
		char c = name[i];

		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t)(c - 'a' + 10);
		else
			return false;
	}
	*seq = v;
	return true;
}

/* The spare file name a dead segment seq is renamed to: "%016llx.free". */
void spool_spare_name(uint64_t seq, char out[SPOOL_SPARE_NAME_LEN + 1])
{
	snprintf(out, SPOOL_SPARE_NAME_LEN + 1, "%016llx.free", (unsigned long long)seq);
}

/* True when name is a spare file name (16 lowercase hex digits + ".free"). */
bool spool_spare_parse_name(const char *name)
{
	char seg[SPOOL_SEGMENT_NAME_LEN + 1];
	uint64_t seq;

	if (strlen(name) != SPOOL_SPARE_NAME_LEN || strcmp(name + 16, ".free") != 0)
		return false;
	snprintf(seg, sizeof(seg), "%.16s.seg", name);
	return spool_segment_parse_name(seg, &seq);
}

static int segment_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The sequence numbers of the segment files in the directory dir_fd (not
 * consumed), sorted ascending, in a new array *seqs (caller frees; NULL when
 * *n == 0).  Other files are ignored.  0 or -errno.
 */
int spool_segment_list(int dir_fd, uint64_t **seqs, size_t *n)
{
	size_t cap = 0;
	struct dirent *de;
	uint64_t seq, *v = NULL, *nv;
	DIR *d;
	int fd = dup(dir_fd);

	*seqs = NULL;
	*n = 0;
	if (fd < 0 || (d = fdopendir(fd)) == NULL) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		return -e;
	}
	rewinddir(d); /* the dup shares its position with dir_fd */
	while ((de = readdir(d)) != NULL) {
		if (!spool_segment_parse_name(de->d_name, &seq))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			nv = reallocarray(v, cap, sizeof(*v));
			if (nv == NULL) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[(*n)++] = seq;
	}
	closedir(d);
	if (*n > 1)
		qsort(v, *n, sizeof(*v), segment_cmp);
	*seqs = v;
	return 0;
}

/* pwrite all of p[0, n) at off, retrying short writes.  0 or -errno. */
static int segment_pwrite_all(int fd, const char *p, size_t n, uint64_t off)
{
	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/*
 * Create segment seq in dir_fd and make it durable before anything is
 * appended (design steps above: header, fdatasync, directory fsync).  *fd
 * gets the open file (O_RDWR, the caller closes it), *size the header's
 * length.  0 or -errno (-EEXIST when the name is taken); on failure nothing
 * is left behind.  Blocking: called at start-up and once per segment_max.
 */
int spool_segment_create(int dir_fd, unsigned shard, uint64_t seq, int *fd, uint64_t *size)
{
	char name[SPOOL_SEGMENT_NAME_LEN + 1];
	struct pt_buf b = PT_BUF_INIT;
	int f, rc;

	spool_segment_name(seq, name);
	f = openat(dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (f < 0)
		return -errno;
	rc =
	    spool_record_encode_segment_header(&b, shard, seq, pt_wall_us()) == PT_OK ? 0 : -ENOMEM;
	if (rc == 0)
		rc = segment_pwrite_all(f, b.data, b.len, 0);
	if (rc == 0 && fdatasync(f) != 0)
		rc = -errno;
	if (rc == 0 && fsync(dir_fd) != 0)
		rc = -errno;
	if (rc != 0) {
		close(f);
		unlinkat(dir_fd, name, 0);
		pt_buf_free(&b);
		return rc;
	}
	*fd = f;
	*size = b.len;
	pt_buf_free(&b);
	return 0;
}

/*
 * Make the spare file `spare` (a dead segment's blocks, RECYCLING above)
 * segment seq: write its SEGMENT_HEADER over the old one and fdatasync
 * while it still has its spare name, then rename it (never over an
 * existing name) and fsync the directory.  *fd gets the open file, *size
 * the header's length, *file_size the file's length (the old segment's
 * bytes after the header stay, unreadable under the new mask).  0 or
 * -errno; on failure before the rename the spare is left as it was, after
 * it the file is cut to its header (an empty segment).  Blocking, like
 * spool_segment_create.
 */
int spool_segment_recycle(int dir_fd, const char *spare, unsigned shard, uint64_t seq, int *fd,
			  uint64_t *size, uint64_t *file_size)
{
	char name[SPOOL_SEGMENT_NAME_LEN + 1];
	struct pt_buf b = PT_BUF_INIT;
	struct stat st;
	int f, rc = 0;

	spool_segment_name(seq, name);
	f = openat(dir_fd, spare, O_RDWR | O_CLOEXEC);
	if (f < 0)
		return -errno;
	if (fstat(f, &st) != 0)
		rc = -errno;
	if (rc == 0 && spool_record_encode_segment_header(&b, shard, seq, pt_wall_us()) != PT_OK)
		rc = -ENOMEM;
	if (rc == 0 && (uint64_t)st.st_size < b.len)
		rc = -EINVAL; /* not a segment's file */
	if (rc == 0)
		rc = segment_pwrite_all(f, b.data, b.len, 0);
	if (rc == 0 && fdatasync(f) != 0)
		rc = -errno;
	if (rc != 0) {
		close(f);
		pt_buf_free(&b);
		return rc;
	}
	if (renameat2(dir_fd, spare, dir_fd, name, RENAME_NOREPLACE) != 0) {
		rc = -errno;
		close(f);
		pt_buf_free(&b);
		return rc;
	}
	if (fsync(dir_fd) != 0) {
		rc = -errno;
		/* Best effort: the old bytes are unreadable under the new mask
		 * anyway; cut, the file is an empty segment. */
		if (ftruncate(f, (off_t)b.len) == 0)
			fdatasync(f);
		close(f);
		pt_buf_free(&b);
		return rc;
	}
	*fd = f;
	*size = b.len;
	*file_size = (uint64_t)st.st_size;
	pt_buf_free(&b);
	return 0;
}

/* A sequential reader over the first `size` bytes of a file. */
struct segment_reader {
	int fd;
	uint64_t size;
	uint8_t *buf;
	size_t cap;
	uint64_t base; /* file offset of buf[0] */
	size_t len;    /* valid bytes in buf */
};

/* Grow r's buffer to hold n bytes.  PT_OK or PT_NOMEM. */
static int reader_reserve(struct segment_reader *r, size_t n)
{
	uint8_t *p;

	if (n <= r->cap)
		return PT_OK;
	p = realloc(r->buf, n);
	if (p == NULL)
		return PT_NOMEM;
	r->buf = p;
	r->cap = n;
	return PT_OK;
}

/*
 * Point *p at file bytes [off, off + n), reading ahead a chunk when they are
 * not buffered.  The pointer is valid until the next call.  PT_OK; PT_AGAIN
 * when the file ends first (an incomplete record); PT_ERROR (errno set) or
 * PT_NOMEM.
 */
static int reader_get(struct segment_reader *r, uint64_t off, size_t n, const uint8_t **p)
{
	size_t want, got = 0;

	if (off > r->size || n > r->size - off)
		return PT_AGAIN;
	if (off >= r->base && off + n <= r->base + r->len) {
		*p = r->buf + (off - r->base);
		return PT_OK;
	}
	want = (size_t)PT_MIN((uint64_t)PT_MAX(n, SEGMENT_READ_CHUNK), r->size - off);
	if (reader_reserve(r, want) != PT_OK)
		return PT_NOMEM;
	while (got < want) {
		ssize_t k = pread(r->fd, r->buf + got, want - got, (off_t)(off + got));

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return PT_ERROR;
		if (k == 0)
			break; /* the file shrank since fstat */
		got += (size_t)k;
	}
	r->base = off;
	r->len = got;
	if (got < n)
		return PT_AGAIN;
	*p = r->buf;
	return PT_OK;
}

/* Check a record's payload by type; fill ri for messages, tombstones and
 * recipient states.  NULL or the reason. */
static const char *segment_check_payload(const struct spool_record_header *h, const uint8_t *p,
					 uint64_t off, unsigned shard, uint64_t seq,
					 struct spool_record_info *ri, uint32_t *version)
{
	struct spool_message_view v;
	const char *why;

	if ((off == 0) != (h->type == SPOOL_RECORD_SEGMENT_HEADER))
		return off == 0 ? "segment does not start with a segment header"
				: "segment header in the middle of a segment";
	ri->type = h->type;
	ri->offset = off;
	ri->length = SPOOL_RECORD_HEADER_LEN + h->payload_len;
	switch (h->type) {
	case SPOOL_RECORD_SEGMENT_HEADER:
		return spool_record_check_segment_header(p, h->payload_len, shard, seq, version);
	case SPOOL_RECORD_TOMBSTONE:
		ri->id = (const char *)p;
		return spool_record_check_tombstone(p, h->payload_len);
	case SPOOL_RECORD_RCPT_STATE:
		ri->id = (const char *)p;
		return spool_record_check_rcpt_state(p, h->payload_len, &ri->state);
	default:
		why = spool_record_check_message(p, h->payload_len, &v);
		if (why != NULL)
			return why;
		ri->id = v.id;
		ri->created_us = v.created_us;
		ri->n_rcpts = v.n_rcpts;
		ri->body_len = v.body_len;
		return NULL;
	}
}

/*
 * Check the record at out->end.  A good one is counted (and passed to fn
 * unless it is the segment header) and out->end moves past it; a bad one
 * sets out->bad and out->reason.  PT_OK, or fn's failure, PT_ERROR, PT_NOMEM.
 */
static int segment_scan_one(struct segment_reader *r, unsigned shard, uint64_t seq,
			    struct spool_segment_scan *out, spool_record_fn fn, void *arg)
{
	uint8_t header[SPOOL_RECORD_HEADER_LEN];
	struct spool_record_header h;
	struct spool_record_info ri = {0};
	const uint8_t *p;
	const char *why = NULL;
	int rc;

	rc = reader_get(r, out->end, SPOOL_RECORD_HEADER_LEN, &p);
	if (rc == PT_AGAIN)
		why = "incomplete record header";
	if (rc != PT_OK)
		goto stop;
	/* Copied: the payload read below may refill the buffer p points into. */
	memcpy(header, p, sizeof(header));
	why = spool_record_check_header(header, &h);
	if (why != NULL)
		goto bad;
	rc = reader_get(r, out->end + SPOOL_RECORD_HEADER_LEN, h.payload_len, &p);
	if (rc == PT_AGAIN)
		why = "record extends past the end of the file";
	if (rc != PT_OK)
		goto stop;
	/* The header record is stored unmasked; the rest under the segment's mask. */
	if (!spool_record_crc_ok(header, p, h.payload_len, out->end == 0 ? 0 : out->mask)) {
		why = "CRC mismatch";
		goto bad;
	}
	why = segment_check_payload(&h, p, out->end, shard, seq, &ri, &out->version);
	if (out->end == 0)
		out->mask = spool_record_mask(seq, out->version);
	if (why != NULL) {
		/* An intact first record (its CRC held) that is not this
		 * segment's header: not a torn write but someone else's file. */
		out->foreign = out->end == 0;
		goto bad;
	}
	if (h.type != SPOOL_RECORD_SEGMENT_HEADER && (rc = fn(arg, &ri)) != PT_OK)
		return rc;
	out->n_records++;
	out->end += SPOOL_RECORD_HEADER_LEN + h.payload_len;
	return PT_OK;
stop:
	if (rc != PT_AGAIN)
		return rc;
bad:
	out->bad = true;
	out->reason = why;
	return PT_OK;
}

/*
 * Scan the segment file fd (sequence seq of shard `shard`) from the start,
 * checking every record (magic, lengths, CRC, structure; the first record
 * must be this segment's header).  fn is called for each good MESSAGE,
 * TOMBSTONE and RCPT_STATE record in file order.  The scan stops at the first bad or
 * incomplete record: out->bad, out->end and out->reason say where and why.
 * An empty file is bad at offset 0.  Returns PT_OK (whether or not a bad
 * record was found), PT_ERROR with errno set on an I/O error, PT_NOMEM, or
 * the first failure fn returned.
 */
int spool_segment_scan(int fd, unsigned shard, uint64_t seq, struct spool_segment_scan *out,
		       spool_record_fn fn, void *arg)
{
	struct segment_reader r = {.fd = fd};
	struct stat st;
	int rc = PT_OK;

	memset(out, 0, sizeof(*out));
	if (fstat(fd, &st) != 0)
		return PT_ERROR;
	r.size = out->size = (uint64_t)st.st_size;
	if (r.size == 0) {
		out->bad = true;
		out->reason = "empty file (no segment header)";
		return PT_OK;
	}
	while (rc == PT_OK && !out->bad && out->end < r.size)
		rc = segment_scan_one(&r, shard, seq, out, fn, arg);
	free(r.buf);
	return rc;
}
