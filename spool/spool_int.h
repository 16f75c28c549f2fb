/*
 * spool_int.h -- private to spool/ (and its unit tests): the record format
 * (see the table at the top of spool_segment.c), the record codec, the
 * segment reader and the recovery scan.  Never included from another folder.
 */
#ifndef PT_SPOOL_INT_H
#define PT_SPOOL_INT_H

#include "spool/spool.h"

#include "core/buf.h"

/* ---- Record format (little-endian; table in spool_segment.c) ---- */

#define SPOOL_MAGIC			 0x52535450u /* "PTSR" on disk */
#define SPOOL_FORMAT_VERSION		 2u /* written; 1 is still read */
#define SPOOL_RECORD_HEADER_LEN		 16u
#define SPOOL_SEGMENT_HEADER_PAYLOAD_LEN 32u
#define SPOOL_MESSAGE_FIXED_LEN		 64u
#define SPOOL_TOMBSTONE_PAYLOAD_LEN	 PT_ID_LEN
#define SPOOL_RCPT_STATE_PAYLOAD_LEN	 56u
#define SPOOL_RCPT_STATE_DONE		 1u /* RCPT_STATE flags bit 0 */
/* Largest payload accepted, written or read: bounds what a corrupt length
 * field can make a reader allocate, and keeps one record well under the
 * ~2 GiB the kernel moves in one write. */
#define SPOOL_PAYLOAD_MAX (1u << 30)
/* A batch stops growing at this many bytes (its first record always goes). */
#define SPOOL_BATCH_BYTES_MAX (256u << 20)
/* Segment file names: "%016llx.seg"; spare (recycled) files "%016llx.free". */
/* Dead segments kept as spares for reuse, per shard (each as large as a
 * segment: disk space held for the next segments). */
#define SPOOL_SPARES_MAX 2u
/* Only segments of a segment_max this large or larger are kept as spares. */
#define SPOOL_RECYCLE_MIN (1ull << 20)

/*
 * The stored CRC of every record after a version-2 segment's header is the
 * CRC XOR this mask: the low 32 bits of the segment's sequence (never 0 for
 * a sequence below 2^32; version 1 stored the CRC as it is, mask 0).  A
 * recycled file still holds the records of the segment it was, stored
 * under that segment's mask: they fail the check under the new one, so a
 * scan stops where the new segment's records end (spool_segment.c).
 */
static inline uint32_t spool_record_mask(uint64_t seq, uint32_t version)
{
	return version >= 2 ? (uint32_t)seq : 0;
}

enum spool_record_type {
	SPOOL_RECORD_SEGMENT_HEADER = 1,
	SPOOL_RECORD_MESSAGE = 2,
	SPOOL_RECORD_TOMBSTONE = 3,
	SPOOL_RECORD_RCPT_STATE = 4,
};

/* Byte offsets inside the record header. */
enum {
	SPOOL_HDR_MAGIC = 0,
	SPOOL_HDR_TYPE = 4,
	SPOOL_HDR_FLAGS = 5,
	SPOOL_HDR_RESERVED = 6,
	SPOOL_HDR_LENGTH = 8,
	SPOOL_HDR_CRC = 12,
};

/* Byte offsets inside a MESSAGE payload's fixed part. */
enum {
	SPOOL_MSG_ID = 0,
	SPOOL_MSG_CREATED = 32,
	SPOOL_MSG_BODY_LEN = 40,
	SPOOL_MSG_SENDER_LEN = 48,
	SPOOL_MSG_N_RCPTS = 52,
	SPOOL_MSG_N_META = 56,
	SPOOL_MSG_RESERVED = 60,
};

/* Byte offsets inside a RCPT_STATE payload. */
enum {
	SPOOL_STATE_ID = 0,
	SPOOL_STATE_RCPT = 32,
	SPOOL_STATE_FLAGS = 36,
	SPOOL_STATE_ATTEMPTS = 40,
	SPOOL_STATE_RESERVED = 44,
	SPOOL_STATE_DUE = 48,
};

/* A record header as read from disk. */
struct spool_record_header {
	uint8_t type;
	uint32_t payload_len;
	uint32_t crc;
};

/* A MESSAGE payload, checked and taken apart without copying. */
struct spool_message_view {
	const char *id; /* PT_ID_LEN chars, not NUL-terminated */
	uint64_t created_us;
	uint64_t body_len;
	const char *sender;
	uint32_t sender_len;
	uint32_t n_rcpts;
	uint32_t n_meta;
	const uint8_t *rcpts; /* n_rcpts x (u32 len, bytes) */
	const uint8_t *meta;  /* n_meta x (u32 key_len, u32 json_len, key, json) */
	const char *body;     /* body_len bytes */
};

/* What a segment scan reports for every good MESSAGE, TOMBSTONE or RCPT_STATE record. */
struct spool_record_info {
	uint8_t type;
	uint64_t offset;     /* of the record in the file */
	uint32_t length;     /* header + payload */
	const char *id;	     /* PT_ID_LEN chars, valid during the call */
	uint64_t created_us; /* messages only */
	uint32_t n_rcpts;
	uint64_t body_len;
	struct spool_rcpt_state state; /* RCPT_STATE only */
};

/* ---- spool_record.c: encoding and decoding ---- */

static inline void spool_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void spool_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t spool_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t spool_get_le64(const uint8_t *p)
{
	return (uint64_t)spool_get_le32(p) | (uint64_t)spool_get_le32(p + 4) << 32;
}

int spool_record_encode_segment_header(struct pt_buf *b, unsigned shard, uint64_t seq,
				       uint64_t created_us);
int spool_record_encode_message(struct pt_buf *b, const struct pt_message *m,
				const struct iovec *body, int n_body, size_t *record_len);
int spool_record_encode_tombstone(struct pt_buf *b, const char *id);
int spool_record_encode_rcpt_state(struct pt_buf *b, const char *id,
				   const struct spool_rcpt_state *st);
uint64_t spool_record_message_len(const struct pt_message *m);
const char *spool_record_check_header(const uint8_t *p, struct spool_record_header *h);
bool spool_record_crc_ok(const uint8_t *header, const uint8_t *payload, uint32_t payload_len,
			 uint32_t mask);
const char *spool_record_check_segment_header(const uint8_t *p, uint32_t len, unsigned shard,
					      uint64_t seq, uint32_t *version);
const char *spool_record_check_tombstone(const uint8_t *p, uint32_t len);
const char *spool_record_check_rcpt_state(const uint8_t *p, uint32_t len,
					  struct spool_rcpt_state *st);
const char *spool_record_check_message(const uint8_t *p, uint32_t len,
				       struct spool_message_view *v);
int spool_record_decode_message(const struct spool_message_view *v, struct pt_message *m);
const char *spool_record_type_name(uint8_t type);

/* ---- spool_segment.c: files ---- */

void spool_segment_name(uint64_t seq, char out[SPOOL_SEGMENT_NAME_LEN + 1]);
bool spool_segment_parse_name(const char *name, uint64_t *seq);
int spool_segment_list(int dir_fd, uint64_t **seqs, size_t *n);
int spool_segment_create(int dir_fd, unsigned shard, uint64_t seq, int *fd, uint64_t *size);
int spool_segment_recycle(int dir_fd, const char *spare, unsigned shard, uint64_t seq, int *fd,
			  uint64_t *size, uint64_t *file_size);
void spool_spare_name(uint64_t seq, char out[SPOOL_SPARE_NAME_LEN + 1]);
bool spool_spare_parse_name(const char *name);

struct spool_segment_scan {
	uint64_t size;	    /* file size when scanned */
	uint64_t end;	    /* offset just past the last good record */
	uint64_t n_records; /* good records, the segment header included */
	bool bad;	    /* a bad or incomplete record starts at `end` */
	bool foreign;	    /* the header is intact but names another shard,
			     * sequence or format version: not ours to repair */
	uint32_t version;   /* the segment header's format version (0: none read) */
	uint32_t mask;	    /* spool_record_mask of the segment */
	const char *reason; /* why, when bad */
};

typedef int (*spool_record_fn)(void *arg, const struct spool_record_info *ri);
int spool_segment_scan(int fd, unsigned shard, uint64_t seq, struct spool_segment_scan *out,
		       spool_record_fn fn, void *arg);

/* ---- spool_recover.c: the scan behind spool_open, spool_scan, spool_verify ---- */

/* A segment left on disk after recovery, as the running spool tracks it. */
struct spool_recovered_segment {
	uint64_t seq;
	uint64_t size;	 /* bytes */
	uint64_t n_live; /* live messages whose newest copy is here */
	bool bad;	 /* a bad record was found in it (never repaired) */
	uint32_t mask;	 /* spool_record_mask (0: format version 1) */
};

struct spool_recovery_result {
	uint64_t max_seq;    /* highest segment sequence seen (0: none) */
	uint64_t n_segments; /* segment files left on disk */
	uint64_t bytes;	     /* their total size */
	uint64_t n_bad;	     /* bad records (torn tails included) */
	/* The n_segments segments left on disk in sequence order (caller frees;
	 * NULL when there are none). */
	struct spool_recovered_segment *segs;
};

int spool_recover(int dir_fd, const char *dir, unsigned shard, bool repair, spool_entry_fn fn,
		  void *arg, spool_segment_fn seg_fn, void *seg_arg,
		  struct spool_recovery_result *res, char *err, size_t err_len);

/* ---- spool.c ---- */

int spool_mkdir_p(const char *path, char *err, size_t err_len);

#endif
