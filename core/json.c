/*
 * json.c -- a small JSON writer (RFC 8259) for log records and API replies.
 *
 * Separators.  j->depth counts open containers; bit d of j->need_comma says
 * "a value has already been written at depth d", so the next member or
 * element needs a ',' first.  A key writes its comma and then clears the
 * bit, so the value that follows it does not write another; every value
 * sets the bit of the depth it is written at.  Opening a container is a
 * value at the outer depth and starts the inner depth with the bit clear.
 *
 * Strings.  RFC 8259 7 requires '"', '\\' and U+0000..U+001F to be escaped;
 * we use the two-character forms where they exist and \u00XX otherwise.
 * Bytes that are not part of a well-formed UTF-8 sequence (RFC 3629 4:
 * no overlong forms, no surrogates, nothing above U+10FFFF) are written as
 * \u00XX, so whatever a peer sends us, the log line stays valid JSON.
 *
 * Allocation failures in the output buffer are not reported (the API is
 * void so call sites stay flat); the record is then truncated, which a log
 * reader sees as a parse error rather than as a wrong value.
 */
#include "core/json.h"

#include <inttypes.h>
#include <string.h>

#define JSON_MAX_DEPTH 16

/* Write the separator due before a value at the current depth and mark one due after. */
static void json_before_value(struct pt_json *j)
{
	uint32_t bit = UINT32_C(1) << j->depth;

	if (j->need_comma & bit)
		pt_buf_append(j->out, ",", 1);
	j->need_comma |= bit;
}

/* Bind j to out; the buffer is appended to, not reset. */
void pt_json_init(struct pt_json *j, struct pt_buf *out)
{
	j->out = out;
	j->depth = 0;
	j->need_comma = 0;
}

/* Open a container; nesting deeper than JSON_MAX_DEPTH is a bug of the caller. */
static void json_open(struct pt_json *j, char c)
{
	if (j->depth >= JSON_MAX_DEPTH)
		pt_panic("json: nesting deeper than %d", JSON_MAX_DEPTH);
	json_before_value(j);
	pt_buf_append(j->out, &c, 1);
	j->depth++;
	j->need_comma &= ~(UINT32_C(1) << j->depth);
}

/* Close a container; closing more than was opened is a bug of the caller. */
static void json_close(struct pt_json *j, char c)
{
	if (j->depth == 0)
		pt_panic("json: '%c' without an open container", c);
	j->need_comma &= ~(UINT32_C(1) << j->depth);
	j->depth--;
	pt_buf_append(j->out, &c, 1);
}

/* Open an object (a value: after a key, in an array, or at top level). */
void pt_json_obj_begin(struct pt_json *j)
{
	json_open(j, '{');
}

/* Close the innermost object. */
void pt_json_obj_end(struct pt_json *j)
{
	json_close(j, '}');
}

/* Open an array (a value, as pt_json_obj_begin()). */
void pt_json_arr_begin(struct pt_json *j)
{
	json_open(j, '[');
}

/* Close the innermost array. */
void pt_json_arr_end(struct pt_json *j)
{
	json_close(j, ']');
}

/* Write `"key":`; the next call must write the value. */
void pt_json_key(struct pt_json *j, const char *key)
{
	pt_json_keyn(j, key, strlen(key));
}

/* Write `"key[0, n)":` (key need not be NUL-terminated). */
void pt_json_keyn(struct pt_json *j, const char *key, size_t n)
{
	json_before_value(j);
	j->need_comma &= ~(UINT32_C(1) << j->depth);
	pt_buf_append(j->out, "\"", 1);
	pt_json_escape(j->out, key, n);
	pt_buf_append(j->out, "\":", 2);
}

/* `"key":"val"`, or `"key":null` when val is NULL. */
void pt_json_key_str(struct pt_json *j, const char *key, const char *val)
{
	pt_json_key(j, key);
	pt_json_str(j, val);
}

/* `"key":"val[0, n)"` (val need not be NUL-terminated). */
void pt_json_key_strn(struct pt_json *j, const char *key, const char *val, size_t n)
{
	pt_json_key(j, key);
	pt_json_strn(j, val, n);
}

/* `"key":val` as a decimal integer. */
void pt_json_key_int(struct pt_json *j, const char *key, int64_t val)
{
	pt_json_key(j, key);
	pt_json_int(j, val);
}

/* `"key":true` or `"key":false`. */
void pt_json_key_bool(struct pt_json *j, const char *key, bool val)
{
	pt_json_key(j, key);
	pt_json_raw(j, val ? "true" : "false", val ? 4 : 5);
}

/* `"key":null`. */
void pt_json_key_null(struct pt_json *j, const char *key)
{
	pt_json_key(j, key);
	pt_json_raw(j, "null", 4);
}

/* `"key":` followed by json[0, n) as is; the caller vouches for its validity. */
void pt_json_key_raw(struct pt_json *j, const char *key, const char *json, size_t n)
{
	pt_json_key(j, key);
	pt_json_raw(j, json, n);
}

/* A string value; NULL writes null. */
void pt_json_str(struct pt_json *j, const char *val)
{
	if (val == NULL) {
		pt_json_raw(j, "null", 4);
		return;
	}
	pt_json_strn(j, val, strlen(val));
}

/* A string value from val[0, n). */
void pt_json_strn(struct pt_json *j, const char *val, size_t n)
{
	json_before_value(j);
	pt_buf_append(j->out, "\"", 1);
	pt_json_escape(j->out, val, n);
	pt_buf_append(j->out, "\"", 1);
}

/* An integer value in decimal. */
void pt_json_int(struct pt_json *j, int64_t val)
{
	char digits[24], *p = digits + sizeof(digits);
	/* Unsigned, so that INT64_MIN negates without overflow.  Hand-written:
	 * every log record has several integers, and printf was on the profile. */
	uint64_t u = val < 0 ? 0 - (uint64_t)val : (uint64_t)val;

	json_before_value(j);
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (val < 0)
		*--p = '-';
	pt_buf_append(j->out, p, (size_t)(digits + sizeof(digits) - p));
}

/* json[0, n) inserted as one value. */
void pt_json_raw(struct pt_json *j, const char *json, size_t n)
{
	json_before_value(j);
	pt_buf_append(j->out, json, n);
}

/*
 * Length of the well-formed UTF-8 sequence starting at s[0] (lead byte
 * >= 0x80), or 0 when it is not one (RFC 3629 4, table of well-formed
 * byte sequences).
 */
static size_t json_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0; /* continuation byte, overlong lead C0/C1, or F5..FF */
	if (n < len)
		return 0;
	/* The second byte's range excludes overlongs, surrogates and > U+10FFFF. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/* Append "\u00XX" for byte c. */
static void json_escape_byte(struct pt_buf *b, unsigned char c)
{
	static const char hex[] = "0123456789abcdef";
	char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};

	pt_buf_append(b, e, sizeof(e));
}

/* Append the escaped form of s[0, n) to b, without quotes. */
void pt_json_escape(struct pt_buf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run = 0;

	while (i < n) {
		unsigned char c = p[i];
		size_t len = 1;
		const char *short_form = NULL;

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0x80 && (len = json_utf8_len(p + i, n - i)) != 0) {
			i += len;
			continue;
		}
		/* Flush the clean run [run, i) before the byte that needs escaping. */
		pt_buf_append(b, p + run, i - run);
		switch (c) {
		case '"':
			short_form = "\\\"";
			break;
		case '\\':
			short_form = "\\\\";
			break;
		case '\b':
			short_form = "\\b";
			break;
		case '\f':
			short_form = "\\f";
			break;
		case '\n':
			short_form = "\\n";
			break;
		case '\r':
			short_form = "\\r";
			break;
		case '\t':
			short_form = "\\t";
			break;
		}
		if (short_form != NULL)
			pt_buf_append(b, short_form, 2);
		else
			json_escape_byte(b, c);
		i++;
		run = i;
	}
	pt_buf_append(b, p + run, n - run);
}
