/*
 * spool_read.c -- reading one message back: by its entry from a closed spool
 * (spool_read_message: petrel-spool cat, tests), or from the bytes of a
 * record the caller read itself (spool_decode_record: the shard reads a body
 * back through its ring when a unit becomes ready, and for compaction).
 * Format: spool_segment.c.
 *
 * Both check a record exactly as recovery does (header, CRC, structure) plus
 * the id the caller expects -- a location that now holds other bytes must
 * not deliver another message's body -- and copy the envelope out.  The body
 * comes back as the stored composition (prefix, headers, appended, rest) in
 * `data` alone, with header_end scanned again.  spool_read_message reads the
 * record into the message's own data buffer and moves the body to its front
 * (one read, one memmove, no second buffer); spool_decode_record copies the
 * body out of the caller's buffer, which stays the caller's.
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* pread exactly n bytes at off into p.  PT_OK, PT_CORRUPT (the file ends first), PT_ERROR. */
static int read_exact(int fd, char *p, size_t n, uint64_t off)
{
	while (n > 0) {
		ssize_t k = pread(fd, p, n, (off_t)off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return PT_ERROR;
		if (k == 0)
			return PT_CORRUPT;
		p += k;
		n -= (size_t)k;
		off += (uint64_t)k;
	}
	return PT_OK;
}

/*
 * Check the whole record rec[0, len) -- a MESSAGE of exactly len bytes whose
 * CRC and structure hold and, when expect_id is not NULL, whose id it is --
 * and take it apart into v (pointers into rec).  NULL or the reason.
 */
static const char *read_check(const uint8_t *rec, size_t len, uint32_t mask,
			      const char *expect_id, struct spool_message_view *v)
{
	struct spool_record_header h;
	const char *why;

	if (len < SPOOL_RECORD_HEADER_LEN + SPOOL_MESSAGE_FIXED_LEN)
		return "record too short for a message";
	why = spool_record_check_header(rec, &h);
	if (why != NULL)
		return why;
	if (h.type != SPOOL_RECORD_MESSAGE)
		return "not a message record";
	if (h.payload_len != len - SPOOL_RECORD_HEADER_LEN)
		return "record length does not match its location";
	if (!spool_record_crc_ok(rec, rec + SPOOL_RECORD_HEADER_LEN, h.payload_len, mask))
		return "CRC mismatch";
	why = spool_record_check_message(rec + SPOOL_RECORD_HEADER_LEN, h.payload_len, v);
	if (why != NULL)
		return why;
	if (expect_id != NULL && memcmp(v->id, expect_id, PT_ID_LEN) != 0)
		return "another message's record";
	return NULL;
}

/*
 * Check one whole MESSAGE record as read from disk and decode it into m
 * (spool.h): envelope, meta, and the body copied into m->data with
 * header_end set.  m is initialised by the caller and should be empty; on
 * failure it may hold part of the envelope (pt_message_clear frees it).
 * PT_OK, PT_CORRUPT with the reason in *why (a static string), or PT_NOMEM.
 */
int spool_decode_record(const void *rec, size_t len, uint32_t mask, const char *expect_id,
			struct pt_message *m, const char **why)
{
	struct spool_message_view v;
	const char *reason = read_check(rec, len, mask, expect_id, &v);

	if (reason != NULL) {
		if (why != NULL)
			*why = reason;
		return PT_CORRUPT;
	}
	if (spool_record_decode_message(&v, m) != PT_OK ||
	    pt_buf_append(&m->data, v.body, (size_t)v.body_len) != PT_OK) {
		if (why != NULL)
			*why = "out of memory";
		return PT_NOMEM;
	}
	pt_message_scan_headers(m);
	return PT_OK;
}

/* Check the record in m->data against e and decode its envelope into m; the
 * body stays where it is.  PT_OK, PT_CORRUPT, PT_NOMEM. */
static int read_decode_in_place(const struct spool_entry *e, uint32_t mask, struct pt_message *m,
				size_t *body_off, uint64_t *body_len)
{
	const uint8_t *rec = (const uint8_t *)m->data.data;
	struct spool_message_view v;

	if (read_check(rec, e->length, mask, e->id, &v) != NULL)
		return PT_CORRUPT;
	if (spool_record_decode_message(&v, m) != PT_OK)
		return PT_NOMEM;
	*body_off = (size_t)((const uint8_t *)v.body - rec);
	*body_len = v.body_len;
	return PT_OK;
}

/*
 * The CRC mask of the segment open as fd (sequence seq of shard `shard`),
 * from its SEGMENT_HEADER record.  PT_OK, PT_CORRUPT (no valid header),
 * PT_ERROR.
 */
static int read_mask(int fd, unsigned shard, uint64_t seq, uint32_t *mask)
{
	uint8_t h[SPOOL_RECORD_HEADER_LEN + SPOOL_SEGMENT_HEADER_PAYLOAD_LEN];
	struct spool_record_header rh;
	uint32_t version;
	int rc = read_exact(fd, (char *)h, sizeof(h), 0);

	if (rc != PT_OK)
		return rc;
	if (spool_record_check_header(h, &rh) != NULL || rh.type != SPOOL_RECORD_SEGMENT_HEADER ||
	    !spool_record_crc_ok(h, h + SPOOL_RECORD_HEADER_LEN, rh.payload_len, 0) ||
	    spool_record_check_segment_header(h + SPOOL_RECORD_HEADER_LEN, rh.payload_len, shard,
					      seq, &version) != NULL)
		return PT_CORRUPT;
	*mask = spool_record_mask(seq, version);
	return PT_OK;
}

/*
 * Read the MESSAGE record e points at (spool.h) into m, which must be empty
 * (pt_message_init).  On success m holds id, created_us, sender, rcpts,
 * meta, and the stored body in m->data with header_end set.  PT_OK;
 * PT_CORRUPT when the record fails a check or is not where e says;
 * PT_ERROR when the file cannot be opened or read, or memory runs out
 * (errno tells which).  On failure m is cleared.
 */
int spool_read_message(const char *path, unsigned shard, const struct spool_entry *e,
		       struct pt_message *m)
{
	char name[SPOOL_SEGMENT_NAME_LEN + 1], file[4200];
	size_t body_off = 0;
	uint64_t body_len = 0;
	uint32_t mask = 0;
	int fd, rc;

	if (e->length < SPOOL_RECORD_HEADER_LEN + SPOOL_MESSAGE_FIXED_LEN ||
	    e->length - SPOOL_RECORD_HEADER_LEN > SPOOL_PAYLOAD_MAX)
		return PT_CORRUPT;
	spool_segment_name(e->segment, name);
	snprintf(file, sizeof(file), "%s/%u/%s", path, shard, name);
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return PT_ERROR;
	rc = read_mask(fd, shard, e->segment, &mask);
	if (rc == PT_OK)
		rc = pt_buf_reserve(&m->data, e->length) == PT_OK ? PT_OK : PT_NOMEM;
	if (rc == PT_OK)
		rc = read_exact(fd, m->data.data, e->length, e->offset);
	close(fd);
	if (rc == PT_OK) {
		m->data.len = e->length;
		rc = read_decode_in_place(e, mask, m, &body_off, &body_len);
	}
	if (rc != PT_OK) {
		pt_message_clear(m);
		if (rc == PT_NOMEM)
			errno = ENOMEM;
		return rc == PT_NOMEM ? PT_ERROR : rc;
	}
	pt_buf_consume(&m->data, body_off);
	m->data.len = (size_t)body_len;
	pt_message_scan_headers(m);
	return PT_OK;
}
