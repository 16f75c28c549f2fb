/*
 * message.h -- a message and its envelope, as the SMTP server builds it, the
 * policy edits it, and the spool stores it.
 *
 * Body layout.  The data as received (dot-unstuffed, CRLF line ends) sits in
 * `data`.  Header edits never move it: lines prepended (our Received:, Lua
 * prepend_header) go to `prefix`; lines appended to the header block (Lua
 * append_header) go to `appended`, which belongs at offset `header_end` of
 * `data` (the start of the blank line that ends the headers, or data.len
 * when there is none).  The message as stored and delivered is therefore
 *
 *     prefix | data[0, header_end) | appended | data[header_end, len)
 *
 * which pt_message_iov() returns as (up to) four iovecs, so the spool can
 * write it with one writev and no copy.
 *
 * Meta is a small list of key -> JSON text (the value already encoded, e.g.
 * "\"gold\"" or "3"), so it can be stored and logged without re-encoding.
 */
#ifndef PT_MESSAGE_H
#define PT_MESSAGE_H

#include "core/buf.h"
#include "core/id.h"
#include <sys/uio.h>

struct pt_json;

struct pt_meta {
	char *key;  /* owned */
	char *json; /* owned; valid JSON text */
};

struct pt_message {
	char id[PT_ID_LEN + 1];
	uint64_t created_us; /* wall clock at reception */
	char *sender;	     /* owned; reverse-path without <>, "" for the null sender */
	char **rcpts;	     /* owned; forward-paths without <> */
	size_t n_rcpts;
	size_t cap_rcpts;
	struct pt_meta *meta; /* owned */
	size_t n_meta;
	size_t cap_meta;
	struct pt_buf prefix;
	struct pt_buf data;
	size_t header_end;
	struct pt_buf appended;
	/* Reception facts for logs (owned strings, may be NULL). */
	char *peer_address; /* "127.0.0.1" */
	char *ehlo;
	char *reception_protocol; /* "ESMTP", "ESMTPS", ... */
};

/* Zero a message (no allocation). */
void pt_message_init(struct pt_message *m);
/* Free everything the message owns; the struct itself is the caller's. */
void pt_message_clear(struct pt_message *m);
int pt_message_set_sender(struct pt_message *m, const char *s, size_t n);
int pt_message_add_rcpt(struct pt_message *m, const char *s, size_t n);
/* Set (replace) a meta key.  json is copied and must be valid JSON text. */
int pt_message_set_meta(struct pt_message *m, const char *key, const char *json);
/* JSON text of a meta key, or NULL.  Not copied. */
const char *pt_message_get_meta(const struct pt_message *m, const char *key);
/* Find the header/body boundary in data and set header_end. */
void pt_message_scan_headers(struct pt_message *m);
/* Header lines: "Name: value\r\n" is added; value is used as given. */
int pt_message_prepend_header(struct pt_message *m, const char *name, const char *value);
int pt_message_append_header(struct pt_message *m, const char *name, const char *value);
/* Remove every field named `name` (case-insensitive, continuation lines
 * included) from the prefix, the data's header block and the appended part. */
void pt_message_remove_header(struct pt_message *m, const char *name);
/* First header named `name` (case-insensitive) over the whole header block
 * (prefix, data headers, appended), unfolded, without the trailing CRLF,
 * in a new malloc'd string the caller frees; NULL when absent. */
char *pt_message_header_value(const struct pt_message *m, const char *name);
/* Does header field name[0, name_len) match pattern (case-insensitive; a
 * final '*' matches any name with that prefix)? */
bool pt_header_name_match(const char *pattern, const char *name, size_t name_len);
/* The fields matching patterns as a JSON object value written to j: name
 * (first spelling) -> unfolded raw value, or an array for a repeated field.
 * PT_OK or PT_NOMEM. */
int pt_message_capture_headers(const struct pt_message *m, char *const *patterns, size_t n_patterns,
			       struct pt_json *j);
/* Total size of the message as stored. */
size_t pt_message_size(const struct pt_message *m);
/* Fill iov (4 entries) with the message as stored; returns the count used
 * (empty parts skipped).  The iovecs point into m: not copied. */
int pt_message_iov(const struct pt_message *m, struct iovec iov[4]);

#endif
