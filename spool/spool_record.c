/*
 * spool_record.c -- encoding and checking spool records (the format is the
 * table at the top of spool_segment.c).
 *
 * Encoding writes the record header and, for a message, the envelope into a
 * caller's buffer; the body is not copied: the CRC is run over the body's
 * iovecs here, once, and the same iovecs are handed to pwritev later.  So
 * the CRC stored on disk is the CRC of exactly the bytes the message held at
 * append time, and the spool.h contract (the message stays unchanged until
 * its callback) is what makes the written bytes match it.
 *
 * Checking never trusts a length before bounding it: every count and length
 * read from disk is compared with the bytes that remain before it is used,
 * so a record that passes its CRC by accident (1 in 2^32) still cannot send
 * a reader out of bounds.  The check functions return NULL for a good record
 * or a short reason ("CRC mismatch") that the scan reports with the path and
 * offset.
 */
#include "spool/spool_int.h"

#include "core/crc32c.h"

#include <stdlib.h>
#include <string.h>

/* Fill a record header; the CRC field is set by the caller once known. */
static void record_put_header(uint8_t *h, uint8_t type, uint32_t payload_len)
{
	spool_put_le32(h + SPOOL_HDR_MAGIC, SPOOL_MAGIC);
	h[SPOOL_HDR_TYPE] = type;
	h[SPOOL_HDR_FLAGS] = 0;
	h[SPOOL_HDR_RESERVED] = 0;
	h[SPOOL_HDR_RESERVED + 1] = 0;
	spool_put_le32(h + SPOOL_HDR_LENGTH, payload_len);
	spool_put_le32(h + SPOOL_HDR_CRC, 0);
}

/* CRC of header bytes [0, 12) and a contiguous payload. */
static uint32_t record_crc(const uint8_t *h, const void *payload, size_t len)
{
	return pt_crc32c(pt_crc32c(0, h, SPOOL_HDR_CRC), payload, len);
}

/*
 * Append a record whose payload is the `len` bytes at p (a segment header
 * or a tombstone): header, payload, CRC.  PT_OK or PT_NOMEM.
 */
static int record_encode_small(struct pt_buf *b, uint8_t type, const uint8_t *p, uint32_t len)
{
	uint8_t *h;

	if (pt_buf_reserve(b, SPOOL_RECORD_HEADER_LEN + len) != PT_OK)
		return PT_NOMEM;
	h = (uint8_t *)b->data + b->len;
	record_put_header(h, type, len);
	memcpy(h + SPOOL_RECORD_HEADER_LEN, p, len);
	spool_put_le32(h + SPOOL_HDR_CRC, record_crc(h, p, len));
	b->len += SPOOL_RECORD_HEADER_LEN + len;
	return PT_OK;
}

/* Append the SEGMENT_HEADER record that starts every segment.  PT_OK or PT_NOMEM. */
int spool_record_encode_segment_header(struct pt_buf *b, unsigned shard, uint64_t seq,
				       uint64_t created_us)
{
	uint8_t p[SPOOL_SEGMENT_HEADER_PAYLOAD_LEN];

	spool_put_le32(p + 0, SPOOL_FORMAT_VERSION);
	spool_put_le32(p + 4, shard);
	spool_put_le64(p + 8, seq);
	spool_put_le64(p + 16, created_us);
	spool_put_le64(p + 24, 0);
	return record_encode_small(b, SPOOL_RECORD_SEGMENT_HEADER, p, sizeof(p));
}

/* Append a TOMBSTONE record for id.  PT_OK, PT_NOMEM, PT_ERROR (id not valid). */
int spool_record_encode_tombstone(struct pt_buf *b, const char *id)
{
	if (!pt_id_valid(id, strnlen(id, PT_ID_LEN + 1)))
		return PT_ERROR;
	return record_encode_small(b, SPOOL_RECORD_TOMBSTONE, (const uint8_t *)id, PT_ID_LEN);
}

/* Append a RCPT_STATE record: recipient st->rcpt of message id.  PT_OK, PT_NOMEM,
 * PT_ERROR (id not valid). */
int spool_record_encode_rcpt_state(struct pt_buf *b, const char *id,
				   const struct spool_rcpt_state *st)
{
	uint8_t p[SPOOL_RCPT_STATE_PAYLOAD_LEN];

	if (!pt_id_valid(id, strnlen(id, PT_ID_LEN + 1)))
		return PT_ERROR;
	memcpy(p + SPOOL_STATE_ID, id, PT_ID_LEN);
	spool_put_le32(p + SPOOL_STATE_RCPT, st->rcpt);
	spool_put_le32(p + SPOOL_STATE_FLAGS, st->done ? SPOOL_RCPT_STATE_DONE : 0);
	spool_put_le32(p + SPOOL_STATE_ATTEMPTS, st->num_attempts);
	spool_put_le32(p + SPOOL_STATE_RESERVED, 0);
	spool_put_le64(p + SPOOL_STATE_DUE, st->due_us);
	return record_encode_small(b, SPOOL_RECORD_RCPT_STATE, p, sizeof(p));
}

/* Bytes of a MESSAGE payload before the body (fixed part, sender, rcpts, meta). */
static uint64_t record_envelope_len(const struct pt_message *m)
{
	uint64_t n = SPOOL_MESSAGE_FIXED_LEN + (m->sender ? strlen(m->sender) : 0);

	for (size_t i = 0; i < m->n_rcpts; i++)
		n += 4 + strlen(m->rcpts[i]);
	for (size_t i = 0; i < m->n_meta; i++)
		n += 8 + strlen(m->meta[i].key) + strlen(m->meta[i].json);
	return n;
}

/* Bytes of m's MESSAGE record on disk: header, envelope, body. */
uint64_t spool_record_message_len(const struct pt_message *m)
{
	return SPOOL_RECORD_HEADER_LEN + record_envelope_len(m) + pt_message_size(m);
}

/* Write u32 length + bytes at p; returns the position after them. */
static uint8_t *record_put_str(uint8_t *p, const char *s, size_t n)
{
	spool_put_le32(p, (uint32_t)n);
	memcpy(p + 4, s, n);
	return p + 4 + n;
}

/* Write the envelope (fixed part, sender, rcpts, meta) of m at p. */
static void record_put_envelope(uint8_t *p, const struct pt_message *m, uint64_t body_len)
{
	const char *sender = m->sender ? m->sender : "";
	size_t sender_len = strlen(sender);

	memcpy(p + SPOOL_MSG_ID, m->id, PT_ID_LEN);
	spool_put_le64(p + SPOOL_MSG_CREATED, m->created_us);
	spool_put_le64(p + SPOOL_MSG_BODY_LEN, body_len);
	spool_put_le32(p + SPOOL_MSG_SENDER_LEN, (uint32_t)sender_len);
	spool_put_le32(p + SPOOL_MSG_N_RCPTS, (uint32_t)m->n_rcpts);
	spool_put_le32(p + SPOOL_MSG_N_META, (uint32_t)m->n_meta);
	spool_put_le32(p + SPOOL_MSG_RESERVED, 0);
	p += SPOOL_MESSAGE_FIXED_LEN;
	memcpy(p, sender, sender_len);
	p += sender_len;
	for (size_t i = 0; i < m->n_rcpts; i++)
		p = record_put_str(p, m->rcpts[i], strlen(m->rcpts[i]));
	for (size_t i = 0; i < m->n_meta; i++) {
		size_t key_len = strlen(m->meta[i].key), json_len = strlen(m->meta[i].json);

		spool_put_le32(p, (uint32_t)key_len);
		spool_put_le32(p + 4, (uint32_t)json_len);
		memcpy(p + 8, m->meta[i].key, key_len);
		memcpy(p + 8 + key_len, m->meta[i].json, json_len);
		p += 8 + key_len + json_len;
	}
}

/*
 * Append the header and envelope of m's MESSAGE record to b; the body is the
 * n_body iovecs (not copied: the caller writes them right after the
 * envelope).  The CRC covers the envelope and the body as they are now.
 * *record_len gets the record's size on disk.  PT_OK, PT_NOMEM, or PT_ERROR
 * when the id is not valid or the payload would pass SPOOL_PAYLOAD_MAX.
 */
int spool_record_encode_message(struct pt_buf *b, const struct pt_message *m,
				const struct iovec *body, int n_body, size_t *record_len)
{
	uint64_t env_len, body_len = 0;
	uint32_t crc;
	uint8_t *h;

	if (!pt_id_valid(m->id, strnlen(m->id, PT_ID_LEN + 1)))
		return PT_ERROR;
	for (int i = 0; i < n_body; i++)
		body_len += body[i].iov_len;
	env_len = record_envelope_len(m);
	if (env_len + body_len > SPOOL_PAYLOAD_MAX)
		return PT_ERROR;
	if (pt_buf_reserve(b, SPOOL_RECORD_HEADER_LEN + env_len) != PT_OK)
		return PT_NOMEM;
	h = (uint8_t *)b->data + b->len;
	record_put_header(h, SPOOL_RECORD_MESSAGE, (uint32_t)(env_len + body_len));
	record_put_envelope(h + SPOOL_RECORD_HEADER_LEN, m, body_len);
	crc = record_crc(h, h + SPOOL_RECORD_HEADER_LEN, env_len);
	for (int i = 0; i < n_body; i++)
		crc = pt_crc32c(crc, body[i].iov_base, body[i].iov_len);
	spool_put_le32(h + SPOOL_HDR_CRC, crc);
	b->len += SPOOL_RECORD_HEADER_LEN + env_len;
	*record_len = SPOOL_RECORD_HEADER_LEN + env_len + body_len;
	return PT_OK;
}

/*
 * Check the 16 header bytes at p and fill h.  NULL when they are well formed
 * (magic, known type, zero flags, a payload length plausible for the type);
 * otherwise the reason.  The CRC is checked separately, once the payload is
 * at hand.
 */
const char *spool_record_check_header(const uint8_t *p, struct spool_record_header *h)
{
	if (spool_get_le32(p + SPOOL_HDR_MAGIC) != SPOOL_MAGIC)
		return "bad magic";
	if (p[SPOOL_HDR_FLAGS] != 0 || p[SPOOL_HDR_RESERVED] != 0 || p[SPOOL_HDR_RESERVED + 1] != 0)
		return "nonzero reserved header bits";
	h->type = p[SPOOL_HDR_TYPE];
	h->payload_len = spool_get_le32(p + SPOOL_HDR_LENGTH);
	h->crc = spool_get_le32(p + SPOOL_HDR_CRC);
	if (h->payload_len > SPOOL_PAYLOAD_MAX)
		return "payload length out of bounds";
	switch (h->type) {
	case SPOOL_RECORD_SEGMENT_HEADER:
		return h->payload_len == SPOOL_SEGMENT_HEADER_PAYLOAD_LEN
			   ? NULL
			   : "bad segment header length";
	case SPOOL_RECORD_MESSAGE:
		return h->payload_len >= SPOOL_MESSAGE_FIXED_LEN ? NULL
								 : "message record too short";
	case SPOOL_RECORD_TOMBSTONE:
		return h->payload_len == SPOOL_TOMBSTONE_PAYLOAD_LEN ? NULL
								     : "bad tombstone length";
	case SPOOL_RECORD_RCPT_STATE:
		return h->payload_len == SPOOL_RCPT_STATE_PAYLOAD_LEN ? NULL
								      : "bad rcpt_state length";
	default:
		return "unknown record type";
	}
}

/* True when the CRC in header, unmasked with mask (spool_record_mask), matches
 * header bytes [0, 12) and the payload. */
bool spool_record_crc_ok(const uint8_t *header, const uint8_t *payload, uint32_t payload_len,
			 uint32_t mask)
{
	return (record_crc(header, payload, payload_len) ^ mask) ==
	       spool_get_le32(header + SPOOL_HDR_CRC);
}

/* Check a SEGMENT_HEADER payload against the file it was found in.  NULL or the reason. */
const char *spool_record_check_segment_header(const uint8_t *p, uint32_t len, unsigned shard,
					      uint64_t seq, uint32_t *version)
{
	if (len != SPOOL_SEGMENT_HEADER_PAYLOAD_LEN)
		return "bad segment header length";
	*version = spool_get_le32(p);
	if (*version < 1 || *version > SPOOL_FORMAT_VERSION)
		return "unknown format version";
	if (spool_get_le32(p + 4) != shard)
		return "segment belongs to another shard";
	if (spool_get_le64(p + 8) != seq)
		return "segment sequence does not match its file name";
	if (spool_get_le64(p + 24) != 0)
		return "nonzero reserved segment header bits";
	return NULL;
}

/* Check a TOMBSTONE payload.  NULL or the reason. */
const char *spool_record_check_tombstone(const uint8_t *p, uint32_t len)
{
	if (len != SPOOL_TOMBSTONE_PAYLOAD_LEN)
		return "bad tombstone length";
	return pt_id_valid((const char *)p, PT_ID_LEN) ? NULL : "bad id in tombstone";
}

/* Check a RCPT_STATE payload and decode it into st (the id stays at p).  NULL or
 * the reason.  Unknown flag bits are refused like every reserved field: a
 * reader that ignored them could misread a newer format. */
const char *spool_record_check_rcpt_state(const uint8_t *p, uint32_t len,
					  struct spool_rcpt_state *st)
{
	uint32_t flags;

	if (len != SPOOL_RCPT_STATE_PAYLOAD_LEN)
		return "bad rcpt_state length";
	if (!pt_id_valid((const char *)p + SPOOL_STATE_ID, PT_ID_LEN))
		return "bad id in rcpt_state";
	flags = spool_get_le32(p + SPOOL_STATE_FLAGS);
	if ((flags & ~SPOOL_RCPT_STATE_DONE) != 0 || spool_get_le32(p + SPOOL_STATE_RESERVED) != 0)
		return "nonzero reserved rcpt_state bits";
	st->rcpt = spool_get_le32(p + SPOOL_STATE_RCPT);
	st->done = (flags & SPOOL_RCPT_STATE_DONE) != 0;
	st->num_attempts = spool_get_le32(p + SPOOL_STATE_ATTEMPTS);
	st->due_us = spool_get_le64(p + SPOOL_STATE_DUE);
	return NULL;
}

/* Take one u32-length-prefixed string at *pos, bounded by end.  False if it does not fit. */
static bool record_take_str(const uint8_t *p, uint64_t *pos, uint64_t end, uint32_t *len)
{
	if (end - *pos < 4)
		return false;
	*len = spool_get_le32(p + *pos);
	if (end - *pos - 4 < *len || memchr(p + *pos + 4, '\0', *len) != NULL)
		return false;
	*pos += 4 + (uint64_t)*len;
	return true;
}

/* Walk the rcpt and meta lists from *pos to end, setting v->meta.  NULL or the reason. */
static const char *record_check_lists(const uint8_t *p, uint64_t *pos, uint64_t end,
				      struct spool_message_view *v)
{
	uint32_t len, json_len;

	for (uint32_t i = 0; i < v->n_rcpts; i++)
		if (!record_take_str(p, pos, end, &len))
			return "recipient out of bounds";
	v->meta = p + *pos;
	for (uint32_t i = 0; i < v->n_meta; i++) {
		if (end - *pos < 8)
			return "meta entry out of bounds";
		len = spool_get_le32(p + *pos);
		json_len = spool_get_le32(p + *pos + 4);
		if (end - *pos - 8 < (uint64_t)len + json_len ||
		    memchr(p + *pos + 8, '\0', (size_t)len + json_len) != NULL)
			return "meta entry out of bounds";
		*pos += 8 + (uint64_t)len + json_len;
	}
	return NULL;
}

/*
 * Check a MESSAGE payload p[0, len) and take it apart into v (pointers into
 * p, not copied).  NULL or the reason.
 */
const char *spool_record_check_message(const uint8_t *p, uint32_t len, struct spool_message_view *v)
{
	uint64_t pos = SPOOL_MESSAGE_FIXED_LEN, env_end;
	const char *why;

	if (len < SPOOL_MESSAGE_FIXED_LEN)
		return "message record too short";
	if (!pt_id_valid((const char *)p + SPOOL_MSG_ID, PT_ID_LEN))
		return "bad id in message";
	v->id = (const char *)p + SPOOL_MSG_ID;
	v->created_us = spool_get_le64(p + SPOOL_MSG_CREATED);
	v->body_len = spool_get_le64(p + SPOOL_MSG_BODY_LEN);
	v->sender_len = spool_get_le32(p + SPOOL_MSG_SENDER_LEN);
	v->n_rcpts = spool_get_le32(p + SPOOL_MSG_N_RCPTS);
	v->n_meta = spool_get_le32(p + SPOOL_MSG_N_META);
	if (spool_get_le32(p + SPOOL_MSG_RESERVED) != 0)
		return "nonzero reserved message bits";
	if (v->body_len > len - SPOOL_MESSAGE_FIXED_LEN)
		return "body length out of bounds";
	env_end = len - v->body_len;
	if (env_end - pos < v->sender_len || memchr(p + pos, '\0', v->sender_len) != NULL)
		return "sender out of bounds";
	v->sender = (const char *)p + pos;
	pos += v->sender_len;
	v->rcpts = p + pos;
	why = record_check_lists(p, &pos, env_end, v);
	if (why != NULL)
		return why;
	if (pos != env_end)
		return "envelope length does not match";
	v->body = (const char *)p + env_end;
	return NULL;
}

/* A NUL-terminated copy of s[0, n) in a new allocation, or NULL. */
static char *record_strndup(const uint8_t *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p != NULL) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* Copy the meta list at *pp into m.  PT_OK or PT_NOMEM. */
static int record_decode_meta(const uint8_t **pp, uint32_t n_meta, struct pt_message *m)
{
	const uint8_t *p = *pp;

	for (uint32_t i = 0; i < n_meta; i++) {
		uint32_t key_len = spool_get_le32(p), json_len = spool_get_le32(p + 4);
		char *key = record_strndup(p + 8, key_len);
		char *json = record_strndup(p + 8 + key_len, json_len);
		int rc = key && json ? pt_message_set_meta(m, key, json) : PT_NOMEM;

		free(key);
		free(json);
		if (rc != PT_OK)
			return rc;
		p += 8 + key_len + json_len;
	}
	*pp = p;
	return PT_OK;
}

/*
 * Fill m's id, created_us, sender, rcpts and meta from a checked view (the
 * body is the caller's business).  m must be empty.  PT_OK or PT_NOMEM (m
 * then holds part of the envelope; the caller clears it).
 */
int spool_record_decode_message(const struct spool_message_view *v, struct pt_message *m)
{
	const uint8_t *p = v->rcpts;
	const uint8_t *meta = v->meta;

	memcpy(m->id, v->id, PT_ID_LEN);
	m->id[PT_ID_LEN] = '\0';
	m->created_us = v->created_us;
	if (pt_message_set_sender(m, v->sender, v->sender_len) != PT_OK)
		return PT_NOMEM;
	for (uint32_t i = 0; i < v->n_rcpts; i++) {
		uint32_t len = spool_get_le32(p);

		if (pt_message_add_rcpt(m, (const char *)p + 4, len) != PT_OK)
			return PT_NOMEM;
		p += 4 + len;
	}
	return record_decode_meta(&meta, v->n_meta, m);
}

/* "message", "tombstone", "rcpt_state", ... for reports. */
const char *spool_record_type_name(uint8_t type)
{
	switch (type) {
	case SPOOL_RECORD_SEGMENT_HEADER:
		return "segment_header";
	case SPOOL_RECORD_MESSAGE:
		return "message";
	case SPOOL_RECORD_TOMBSTONE:
		return "tombstone";
	case SPOOL_RECORD_RCPT_STATE:
		return "rcpt_state";
	default:
		return "unknown";
	}
}
