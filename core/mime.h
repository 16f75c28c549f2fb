/*
 * mime.h -- just enough of RFC 5322 and MIME (RFC 2045, 2046) to read
 * delivery status notifications and feedback reports (core/report.c):
 * header fields, Content-Type and its parameters, the body parts of a
 * multipart, the two transfer encodings, and RFC 5322 dates.
 *
 * Everything reads from a caller's buffer and never writes to it; results
 * point into it (fields, parts) or are copied into fixed-size or caller
 * buffers.  Nothing recurses: a nested multipart is only ever one part of
 * its parent, opaque until a caller walks it with a walker of its own.
 * Every index is checked against the length given, so any byte string is
 * safe input (tests/fuzz/report_fuzz.c).
 *
 * Line ends may be CRLF or a bare LF (a report may have been handled by
 * software that rewrote them); a bare CR is an ordinary byte.
 */
#ifndef PT_MIME_H
#define PT_MIME_H

#include "core/buf.h"

#define PT_MIME_TOKEN_MAX    128 /* type/subtype and small parameter values, with NUL */
#define PT_MIME_BOUNDARY_MAX 200 /* RFC 2046 5.1.1 says 70; be liberal */

/* One header field; both parts point into the input. */
struct pt_mime_field {
	const char *name;
	size_t name_len;
	const char *value; /* after the colon and leading blanks, folding kept */
	size_t value_len;  /* without the line end of the field's last line */
};

/*
 * The next field of the header block p[0, len) from *off (start at 0).
 * Returns true with f filled and *off past the field; false at the end of
 * the block, with *off at the start of the body: past the blank line, or
 * len when there is none.  A line that is neither a field nor a
 * continuation (no colon, or an empty or blank-containing name) is
 * skipped: real reports carry such lines and the rest is still readable.
 */
bool pt_mime_field_next(const char *p, size_t len, size_t *off, struct pt_mime_field *f);

/* Where the body of the entity p[0, len) starts (see pt_mime_field_next). */
size_t pt_mime_body_offset(const char *p, size_t len);

/*
 * The first field named name (case-insensitive) in the header block of
 * p[0, len).  True with f filled, false when absent.
 */
bool pt_mime_find_field(const char *p, size_t len, const char *name, struct pt_mime_field *f);

/*
 * A field value unfolded (CR and LF dropped, RFC 5322 2.2.3) and trimmed
 * of blanks at both ends, into out (NUL-terminated; cut to out_len - 1
 * bytes).  Returns the length written.  out_len must be at least 1.
 */
size_t pt_mime_unfold(const char *v, size_t n, char *out, size_t out_len);

/* The same into a new malloc'd string of at most max bytes (caller frees);
 * NULL when out of memory. */
char *pt_mime_unfold_dup(const char *v, size_t n, size_t max);

/*
 * A Content-Type value (RFC 2045 5.1): type "/" subtype, then parameters.
 * Comments in parentheses are skipped; values may be tokens or quoted
 * strings.  type is lower case ("" when the value is not type/subtype);
 * boundary keeps its case; report_type is lower case.  Each is "" when
 * absent.  A value too long for its buffer makes it "" (an unusable
 * boundary is better refused than cut).  Returns true when type was read.
 */
struct pt_mime_ctype {
	char type[PT_MIME_TOKEN_MAX];
	char boundary[PT_MIME_BOUNDARY_MAX + 1];
	char report_type[PT_MIME_TOKEN_MAX];
};
bool pt_mime_content_type(const char *v, size_t n, struct pt_mime_ctype *ct);

/* The Content-Type of the entity p[0, len); "text/plain" when it has none
 * or it does not parse (RFC 2045 5.2). */
void pt_mime_entity_type(const char *p, size_t len, struct pt_mime_ctype *ct);

/*
 * Walk the body parts of a multipart body (RFC 2046 5.1.1).  The preamble
 * before the first delimiter and the epilogue after the close delimiter
 * are skipped.  A delimiter is "--" boundary at the start of a line,
 * followed by "--" (the close delimiter) or by blanks and the line end;
 * the line end before it belongs to it, not to the part.
 */
struct pt_mime_multipart {
	const char *body;
	size_t len;
	char delim[PT_MIME_BOUNDARY_MAX + 3]; /* "--" boundary */
	size_t delim_len;
	size_t off;   /* where the next part starts, once started */
	bool started; /* the first delimiter was found */
	bool done;
};

struct pt_mime_part {
	const char *p; /* the part: its header block and content */
	size_t len;
	bool truncated; /* no delimiter follows it: the body ended inside it */
};

/* boundary is copied (it must fit PT_MIME_BOUNDARY_MAX and not be empty;
 * else the walk yields nothing). */
void pt_mime_multipart_init(struct pt_mime_multipart *mp, const char *body, size_t len,
			    const char *boundary);
/* The next part: true with part filled, false when there is none left. */
bool pt_mime_multipart_next(struct pt_mime_multipart *mp, struct pt_mime_part *part);

/*
 * Decode content p[0, n) by its Content-Transfer-Encoding value (cte,
 * unfolded; NULL or "" for none) and append it to out: 7bit, 8bit and
 * binary as is, base64 (RFC 2045 6.8: characters outside the alphabet are
 * ignored, decoding stops at '='), quoted-printable (6.7: "=XX" and soft
 * line breaks; a stray '=' is kept).  PT_OK, PT_ERROR for another
 * encoding (cte names it; the part can't be read), or PT_NOMEM.
 */
int pt_mime_decode(const char *cte, const char *p, size_t n, struct pt_buf *out);

/*
 * An RFC 5322 date-time (3.3), with the obsolete forms of 4.3 (two- and
 * three-digit years, named zones; military zones count as -0000) and
 * comments: microseconds since the Unix epoch in *out_us.  PT_OK, or
 * PT_ERROR when s[0, n) is not such a date.
 */
int pt_mime_date(const char *s, size_t n, int64_t *out_us);

#endif
