/*
 * json.h -- a small JSON *writer* for log records and API replies.  Writing
 * JSON is a few dozen lines; reading it (the HTTP API, later) uses jansson.
 * Strings are escaped per RFC 8259; invalid UTF-8 bytes are written as
 * \u00XX so the output is always valid JSON.
 *
 * Usage: pt_json_obj_begin(b); pt_json_key_str(b, "type", "Reception"); ...
 * pt_json_obj_end(b).  Commas are inserted automatically: the writer tracks
 * nesting depth (max 16) and whether a separator is due.
 */
#ifndef PT_JSON_H
#define PT_JSON_H

#include "core/buf.h"

struct pt_json {
	struct pt_buf *out; /* not owned */
	uint32_t depth;
	uint32_t need_comma; /* bit per depth */
};

void pt_json_init(struct pt_json *j, struct pt_buf *out);
void pt_json_obj_begin(struct pt_json *j);
void pt_json_obj_end(struct pt_json *j);
void pt_json_arr_begin(struct pt_json *j);
void pt_json_arr_end(struct pt_json *j);
/* Keyed members (inside an object). */
void pt_json_key(struct pt_json *j, const char *key);
void pt_json_keyn(struct pt_json *j, const char *key, size_t n);
void pt_json_key_str(struct pt_json *j, const char *key, const char *val);	/* NULL -> null */
void pt_json_key_strn(struct pt_json *j, const char *key, const char *val, size_t n);
void pt_json_key_int(struct pt_json *j, const char *key, int64_t val);
void pt_json_key_bool(struct pt_json *j, const char *key, bool val);
void pt_json_key_null(struct pt_json *j, const char *key);
/* Raw JSON text, inserted as is (caller guarantees validity). */
void pt_json_key_raw(struct pt_json *j, const char *key, const char *json, size_t n);
/* Values (inside an array, or right after pt_json_key). */
void pt_json_str(struct pt_json *j, const char *val);
void pt_json_strn(struct pt_json *j, const char *val, size_t n);
void pt_json_int(struct pt_json *j, int64_t val);
void pt_json_raw(struct pt_json *j, const char *json, size_t n);
/* Append the escaped form of s (without quotes) to b. */
void pt_json_escape(struct pt_buf *b, const char *s, size_t n);

#endif
