/*
 * spool_read.c -- reading one message back by its entry (petrel-spool cat,
 * tests; later the delivery path's body read-back).  Format: spool_segment.c.
 *
 * The record is read whole with one pread into the message's data buffer,
 * checked exactly as recovery checks it (header, CRC, structure) plus the id
 * the entry promised, the envelope copied out, and then the body moved to
 * the front of the buffer: one read and one memmove, no second buffer.  The
 * body comes back as the stored composition (prefix, headers, appended,
 * rest) in `data` alone, with header_end scanned again.
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

/* Check the record in m->data against e and decode its envelope into m.  PT_OK, PT_CORRUPT,
 * PT_NOMEM. */
static int read_check(const struct spool_entry *e, struct pt_message *m, size_t *body_off,
		      uint64_t *body_len)
{
	const uint8_t *rec = (const uint8_t *)m->data.data;
	struct spool_record_header h;
	struct spool_message_view v;

	if (spool_record_check_header(rec, &h) != NULL || h.type != SPOOL_RECORD_MESSAGE ||
	    h.payload_len != e->length - SPOOL_RECORD_HEADER_LEN)
		return PT_CORRUPT;
	if (!spool_record_crc_ok(rec, rec + SPOOL_RECORD_HEADER_LEN, h.payload_len))
		return PT_CORRUPT;
	if (spool_record_check_message(rec + SPOOL_RECORD_HEADER_LEN, h.payload_len, &v) != NULL ||
	    memcmp(v.id, e->id, PT_ID_LEN) != 0)
		return PT_CORRUPT;
	if (spool_record_decode_message(&v, m) != PT_OK)
		return PT_NOMEM;
	*body_off = (size_t)((const uint8_t *)v.body - rec);
	*body_len = v.body_len;
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
	int fd, rc;

	if (e->length < SPOOL_RECORD_HEADER_LEN + SPOOL_MESSAGE_FIXED_LEN ||
	    e->length - SPOOL_RECORD_HEADER_LEN > SPOOL_PAYLOAD_MAX)
		return PT_CORRUPT;
	spool_segment_name(e->segment, name);
	snprintf(file, sizeof(file), "%s/%u/%s", path, shard, name);
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return PT_ERROR;
	rc = pt_buf_reserve(&m->data, e->length) == PT_OK ? PT_OK : PT_NOMEM;
	if (rc == PT_OK)
		rc = read_exact(fd, m->data.data, e->length, e->offset);
	close(fd);
	if (rc == PT_OK) {
		m->data.len = e->length;
		rc = read_check(e, m, &body_off, &body_len);
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
