/*
 * inject_mime.c -- the injection API's message builder: header fields
 * (RFC 5322, RFC 2047 for text that is not ASCII) and the MIME body
 * (RFC 2045-2049) of a builder-form request.
 *
 * Shape of the body, from the parts given:
 *
 *   text or html only        one text/plain or text/html entity
 *   text and html            multipart/alternative (text first: RFC 2046
 *                            5.1.4, the preferred form last)
 *   + inline attachments     multipart/related around that, the inline
 *     (with content_id)      parts after it (RFC 2387)
 *   + other attachments      multipart/mixed around all of it
 *
 * Encodings.  A text part goes out 7bit when it is ASCII with lines of at
 * most 998 octets, else quoted-printable (readable, and safe through any
 * relay: no 8BITMIME needed); attachments always as base64 in 76-column
 * lines.  Header text that is not ASCII becomes UTF-8 "B" encoded-words
 * of at most 75 characters, cut at character boundaries and folded onto
 * their own lines; display names are quoted strings when ASCII.
 *
 * Boundaries are "=_petrel_<message id>_<n>": the id is random, and "=_"
 * can occur in neither quoted-printable nor base64 text, so no part can
 * contain its enclosing boundary.
 */
#include "net/inject_int.h"

#include "core/ptime.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MIME_LINE_MAX 998 /* octets per line without CRLF (RFC 5322 2.1.1) */
#define MIME_FOLD_AT  78  /* where header lines are folded (RFC 5322 2.1.1) */
#define MIME_EW_BYTES 39  /* UTF-8 octets per encoded-word: 52 base64 chars */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ---- base64 ----------------------------------------------------------------- */

/* Base64 of p[0, n) with no line breaks. */
static int base64_raw(const unsigned char *p, size_t n, struct pt_buf *out)
{
	char quad[4];

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		quad[0] = b64_alphabet[(v >> 18) & 63];
		quad[1] = b64_alphabet[(v >> 12) & 63];
		quad[2] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
		quad[3] = i + 2 < n ? b64_alphabet[v & 63] : '=';
		if (pt_buf_append(out, quad, 4) != PT_OK)
			return PT_NOMEM;
	}
	return PT_OK;
}

int inject_base64_encode(const void *p, size_t n, struct pt_buf *out)
{
	const unsigned char *b = p;

	/* 57 octets make one 76-character line (RFC 2045 6.8). */
	for (size_t i = 0; i < n; i += 57)
		if (base64_raw(b + i, PT_MIN(57, n - i), out) != PT_OK ||
		    pt_buf_append(out, "\r\n", 2) != PT_OK)
			return PT_NOMEM;
	return PT_OK;
}

static int b64_value(char c)
{
	const char *at = c != '\0' ? strchr(b64_alphabet, c) : NULL;

	return at ? (int)(at - b64_alphabet) : -1;
}

int inject_base64_decode(const char *p, size_t n, struct pt_buf *out)
{
	uint32_t acc = 0;
	int bits = 0, pad = 0;
	size_t n_chars = 0;

	for (size_t i = 0; i < n; i++) {
		int v;

		if (isspace((unsigned char)p[i]))
			continue;
		if (p[i] == '=') {
			pad++;
			n_chars++;
			continue;
		}
		if (pad > 0 || (v = b64_value(p[i])) < 0)
			return PT_ERROR; /* data after padding, or outside the alphabet */
		n_chars++;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			char c = (char)((acc >> (bits - 8)) & 0xff);

			bits -= 8;
			if (pt_buf_append(out, &c, 1) != PT_OK)
				return PT_NOMEM;
		}
	}
	/* Whole quads; the padding, if any, completes the last one. */
	if (n_chars % 4 != 0 || pad > 2 || (pad > 0 && (acc & ((1u << bits) - 1)) != 0))
		return PT_ERROR;
	return PT_OK;
}

/* ---- quoted-printable --------------------------------------------------------- */

int inject_qp_encode(const char *p, size_t n, struct pt_buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t col = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		bool eol_next = i + 1 >= n || (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n');
		char enc[3];
		size_t len = 1;

		if (c == '\r' && i + 1 < n && p[i + 1] == '\n') {
			if (pt_buf_append(out, "\r\n", 2) != PT_OK)
				return PT_NOMEM;
			i++;
			col = 0;
			continue;
		}
		/* Literal: printable ASCII but '='; space and tab unless they end a line. */
		if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !eol_next)) {
			enc[0] = (char)c;
		} else {
			enc[0] = '=';
			enc[1] = hex[c >> 4];
			enc[2] = hex[c & 15];
			len = 3;
		}
		/* A soft line break keeps lines at 76 characters, the '=' included. */
		if (col + len > 75 && !(eol_next && col + len <= 76)) {
			if (pt_buf_append(out, "=\r\n", 3) != PT_OK)
				return PT_NOMEM;
			col = 0;
		}
		if (pt_buf_append(out, enc, len) != PT_OK)
			return PT_NOMEM;
		col += len;
	}
	return PT_OK;
}

int inject_crlf(const char *p, size_t n, struct pt_buf *out)
{
	size_t start = 0;

	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\r' && p[i] != '\n')
			continue;
		if (pt_buf_append(out, p + start, i - start) != PT_OK ||
		    pt_buf_append(out, "\r\n", 2) != PT_OK)
			return PT_NOMEM;
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
			i++;
		start = i + 1;
	}
	return pt_buf_append(out, p + start, n - start);
}

/* ---- header fields ---------------------------------------------------------- */

static bool is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* Length of the UTF-8 sequence starting with byte c (1 for a stray byte). */
static size_t utf8_len(unsigned char c)
{
	return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

/*
 * s as UTF-8 "B" encoded-words, each on its own line after the first
 * (joined by CRLF SP, which a reader removes with the folding: RFC 2047
 * 6.2 ignores white space between adjacent encoded-words).
 */
static int encoded_words(struct pt_buf *out, const char *s)
{
	size_t n = strlen(s);

	for (size_t i = 0; i < n;) {
		size_t take = 0;

		while (i + take < n) {
			size_t c = utf8_len((unsigned char)s[i + take]);

			if (take > 0 && take + c > MIME_EW_BYTES)
				break;
			take += PT_MIN(c, n - i - take);
		}
		if ((i > 0 && pt_buf_append(out, "\r\n ", 3) != PT_OK) ||
		    pt_buf_append_str(out, "=?UTF-8?B?") != PT_OK ||
		    base64_raw((const unsigned char *)s + i, take, out) != PT_OK ||
		    pt_buf_append(out, "?=", 2) != PT_OK)
			return PT_NOMEM;
		i += take;
	}
	return PT_OK;
}

/* ASCII text folded at spaces so lines stay near MIME_FOLD_AT columns. */
static int folded_ascii(struct pt_buf *out, const char *s, size_t col)
{
	while (*s) {
		size_t word = strcspn(s + 1, " \t") + 1; /* the leading blank belongs to it */

		if (col > 1 && col + word > MIME_FOLD_AT && (*s == ' ' || *s == '\t')) {
			if (pt_buf_append(out, "\r\n", 2) != PT_OK)
				return PT_NOMEM;
			col = 0;
		}
		if (pt_buf_append(out, s, word) != PT_OK)
			return PT_NOMEM;
		col += word;
		s += word;
	}
	return PT_OK;
}

int inject_header_unstructured(struct pt_buf *out, const char *name, const char *value)
{
	if (pt_buf_printf(out, "%s: ", name) != PT_OK)
		return PT_NOMEM;
	if (is_ascii(value)) {
		if (folded_ascii(out, value, strlen(name) + 2) != PT_OK)
			return PT_NOMEM;
	} else if (encoded_words(out, value) != PT_OK) {
		return PT_NOMEM;
	}
	return pt_buf_append(out, "\r\n", 2);
}

/* A display name: a quoted string when ASCII and short, else encoded-words. */
static int display_name(struct pt_buf *out, const char *name)
{
	if (!is_ascii(name) || strlen(name) > 200)
		return encoded_words(out, name);
	if (pt_buf_append(out, "\"", 1) != PT_OK)
		return PT_NOMEM;
	for (const char *p = name; *p; p++)
		if ((*p == '"' || *p == '\\') ? pt_buf_printf(out, "\\%c", *p) != PT_OK
					      : pt_buf_append(out, p, 1) != PT_OK)
			return PT_NOMEM;
	return pt_buf_append(out, "\"", 1);
}

int inject_header_mailbox(struct pt_buf *out, const char *name, const char *display,
			  const char *email)
{
	if (pt_buf_printf(out, "%s: ", name) != PT_OK)
		return PT_NOMEM;
	if (display == NULL || display[0] == '\0')
		return pt_buf_printf(out, "%s\r\n", email);
	if (display_name(out, display) != PT_OK)
		return PT_NOMEM;
	return pt_buf_printf(out, " <%s>\r\n", email);
}

/* ---- the body ----------------------------------------------------------------- */

struct mime_build {
	const struct inject_request *r;
	const struct inject_env *env;
	struct pt_buf *out;
	struct pt_buf text, html; /* rendered bodies, CRLF */
	bool has_text, has_html;
	size_t n_inline, n_regular;
	unsigned n_boundaries;
};

/* 7bit when ASCII without NUL and no line is longer than 998 octets. */
static bool body_is_7bit(const struct pt_buf *b)
{
	size_t line = 0;

	for (size_t i = 0; i < b->len; i++) {
		unsigned char c = (unsigned char)b->data[i];

		if (c >= 0x80 || c == 0)
			return false;
		line = c == '\n' ? 0 : line + 1;
		if (line > MIME_LINE_MAX + 1) /* the CR before LF counted */
			return false;
	}
	return true;
}

static int mime_text(struct mime_build *mb, const char *subtype, const struct pt_buf *body)
{
	bool plain = body_is_7bit(body);

	if (pt_buf_printf(mb->out,
			  "Content-Type: text/%s; charset=\"utf-8\"\r\n"
			  "Content-Transfer-Encoding: %s\r\n\r\n",
			  subtype, plain ? "7bit" : "quoted-printable") != PT_OK)
		return PT_NOMEM;
	if (plain)
		return pt_buf_append(mb->out, body->data ? body->data : "", body->len);
	return inject_qp_encode(body->data ? body->data : "", body->len, mb->out);
}

/* A MIME parameter: name="value" when ASCII, name*=UTF-8''pct-encoded (RFC 2231) otherwise. */
static int mime_param(struct pt_buf *out, const char *name, const char *value)
{
	if (is_ascii(value)) {
		if (pt_buf_printf(out, "; %s=\"", name) != PT_OK)
			return PT_NOMEM;
		for (const char *p = value; *p; p++)
			if ((*p == '"' || *p == '\\') ? pt_buf_printf(out, "\\%c", *p) != PT_OK
						      : pt_buf_append(out, p, 1) != PT_OK)
				return PT_NOMEM;
		return pt_buf_append(out, "\"", 1);
	}
	if (pt_buf_printf(out, ";\r\n %s*=UTF-8''", name) != PT_OK)
		return PT_NOMEM;
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		int rc = isalnum(*p) || strchr("!#$&+-.^_`|~", *p) != NULL
			     ? pt_buf_append(out, p, 1)
			     : pt_buf_printf(out, "%%%02X", *p);

		if (rc != PT_OK)
			return PT_NOMEM;
	}
	return PT_OK;
}

static int mime_attachment(struct mime_build *mb, const struct inject_attachment *a)
{
	struct pt_buf *o = mb->out;

	if (pt_buf_printf(o, "Content-Type: %s", a->content_type) != PT_OK ||
	    (a->file_name && mime_param(o, "name", a->file_name) != PT_OK) ||
	    pt_buf_printf(o, "\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: %s",
			  a->content_id ? "inline" : "attachment") != PT_OK ||
	    (a->file_name && mime_param(o, "filename", a->file_name) != PT_OK) ||
	    pt_buf_append(o, "\r\n", 2) != PT_OK ||
	    (a->content_id && pt_buf_printf(o, "Content-ID: <%s>\r\n", a->content_id) != PT_OK) ||
	    pt_buf_append(o, "\r\n", 2) != PT_OK)
		return PT_NOMEM;
	return inject_base64_encode(a->data.data, a->data.len, o);
}

/* "Content-Type: multipart/<sub>; boundary=..." and the blank line; the
 * boundary goes into b. */
static int mime_multipart_open(struct mime_build *mb, const char *sub, const char *extra,
			       char b[96])
{
	snprintf(b, 96, "=_petrel_%s_%u", mb->env->id, ++mb->n_boundaries);
	return pt_buf_printf(mb->out, "Content-Type: multipart/%s;%s\r\n boundary=\"%s\"\r\n\r\n",
			     sub, extra, b);
}

/* Before each part (RFC 2046 5.1.1: the CRLF before "--" is the delimiter's). */
static int mime_delimiter(struct mime_build *mb, const char *b, bool first)
{
	return pt_buf_printf(mb->out, "%s--%s\r\n", first ? "" : "\r\n", b);
}

static int mime_close(struct mime_build *mb, const char *b)
{
	return pt_buf_printf(mb->out, "\r\n--%s--\r\n", b);
}

/* text, html, or multipart/alternative of both. */
static int mime_alternative(struct mime_build *mb)
{
	char b[96];

	if (!mb->has_html)
		return mime_text(mb, "plain", &mb->text);
	if (!mb->has_text)
		return mime_text(mb, "html", &mb->html);
	if (mime_multipart_open(mb, "alternative", "", b) != PT_OK ||
	    mime_delimiter(mb, b, true) != PT_OK || mime_text(mb, "plain", &mb->text) != PT_OK ||
	    mime_delimiter(mb, b, false) != PT_OK || mime_text(mb, "html", &mb->html) != PT_OK)
		return PT_NOMEM;
	return mime_close(mb, b);
}

/* The alternative part, with the inline attachments in multipart/related. */
static int mime_related(struct mime_build *mb)
{
	char b[96];
	const char *type = mb->has_text && mb->has_html ? " type=\"multipart/alternative\";"
			   : mb->has_html		? " type=\"text/html\";"
							: " type=\"text/plain\";";

	if (mb->n_inline == 0)
		return mime_alternative(mb);
	if (mime_multipart_open(mb, "related", type, b) != PT_OK ||
	    mime_delimiter(mb, b, true) != PT_OK || mime_alternative(mb) != PT_OK)
		return PT_NOMEM;
	for (size_t i = 0; i < mb->r->n_attachments; i++) {
		const struct inject_attachment *a = &mb->r->attachments[i];

		if (a->content_id != NULL &&
		    (mime_delimiter(mb, b, false) != PT_OK || mime_attachment(mb, a) != PT_OK))
			return PT_NOMEM;
	}
	return mime_close(mb, b);
}

/* The whole body: multipart/mixed when there are regular attachments. */
static int mime_mixed(struct mime_build *mb)
{
	char b[96];

	if (mb->n_regular == 0)
		return mime_related(mb);
	if (mime_multipart_open(mb, "mixed", "", b) != PT_OK ||
	    mime_delimiter(mb, b, true) != PT_OK || mime_related(mb) != PT_OK)
		return PT_NOMEM;
	for (size_t i = 0; i < mb->r->n_attachments; i++) {
		const struct inject_attachment *a = &mb->r->attachments[i];

		if (a->content_id == NULL &&
		    (mime_delimiter(mb, b, false) != PT_OK || mime_attachment(mb, a) != PT_OK))
			return PT_NOMEM;
	}
	return mime_close(mb, b);
}

/* ---- the header block ------------------------------------------------------------ */

/* Render a header template into a string; a line break in it is an error. */
static int render_field(const char *what, const struct template *t, const json_t *vars,
			struct pt_buf *b, char *err, size_t err_len)
{
	char terr[512];
	int rc;

	b->len = 0;
	rc = template_render(t, vars, INJECT_MESSAGE_MAX, b, terr, sizeof(terr));
	if (rc == PT_NOMEM)
		return PT_NOMEM;
	if (rc != PT_OK) {
		snprintf(err, err_len, "%s: %s", what, terr);
		return PT_ERROR;
	}
	/* Folding is ours to do: a CR or LF from a value could start a new field. */
	if (strcspn(pt_buf_cstr(b), "\r\n") != b->len) {
		snprintf(err, err_len, "%s: the value has a line break", what);
		return PT_ERROR;
	}
	return PT_OK;
}

/* Is there a custom header of this name (they replace the builder's own)? */
static bool custom_header(const struct inject_request *r, const char *name)
{
	for (size_t i = 0; i < r->n_headers; i++)
		if (strcasecmp(r->headers[i].name, name) == 0)
			return true;
	return false;
}

static int mime_headers(struct mime_build *mb, const struct inject_rcpt *rc, const json_t *vars,
			char *err, size_t err_len)
{
	const struct inject_request *r = mb->r;
	struct pt_buf *o = mb->out, v = PT_BUF_INIT;
	char date[40], what[300];
	int rcode = PT_OK;

	if (r->from.email && inject_header_mailbox(o, "From", r->from.name, r->from.email) != PT_OK)
		goto nomem;
	if (r->reply_to.email &&
	    inject_header_mailbox(o, "Reply-To", r->reply_to.name, r->reply_to.email) != PT_OK)
		goto nomem;
	if (!custom_header(r, "To") && inject_header_mailbox(o, "To", rc->name, rc->email) != PT_OK)
		goto nomem;
	if (r->subject) {
		if ((rcode = render_field("content.subject", r->subject, vars, &v, err, err_len)) !=
		    PT_OK)
			goto out;
		if (inject_header_unstructured(o, "Subject", pt_buf_cstr(&v)) != PT_OK)
			goto nomem;
	}
	if (!custom_header(r, "Date") &&
	    pt_buf_printf(o, "Date: %s\r\n", pt_time_rfc5322(mb->env->date_us, date)) != PT_OK)
		goto nomem;
	if (!custom_header(r, "Message-ID") &&
	    pt_buf_printf(o, "Message-ID: <%s@%s>\r\n", mb->env->id, mb->env->hostname) != PT_OK)
		goto nomem;
	for (size_t i = 0; i < r->n_headers; i++) {
		snprintf(what, sizeof(what), "content.headers.%s", r->headers[i].name);
		if ((rcode = render_field(what, r->headers[i].value, vars, &v, err, err_len)) !=
		    PT_OK)
			goto out;
		if (inject_header_unstructured(o, r->headers[i].name, pt_buf_cstr(&v)) != PT_OK)
			goto nomem;
	}
	if (pt_buf_append_str(o, "MIME-Version: 1.0\r\n") != PT_OK)
		goto nomem;
	goto out;
nomem:
	rcode = PT_NOMEM;
out:
	pt_buf_free(&v);
	return rcode;
}

/* Render a body template and make its line ends CRLF. */
static int render_body(const char *what, const struct template *t, const json_t *vars,
		       struct pt_buf *out, char *err, size_t err_len)
{
	struct pt_buf raw = PT_BUF_INIT;
	char terr[512];
	int rc = template_render(t, vars, INJECT_MESSAGE_MAX, &raw, terr, sizeof(terr));

	if (rc == PT_ERROR)
		snprintf(err, err_len, "%s: %s", what, terr);
	if (rc == PT_OK)
		rc = inject_crlf(raw.data ? raw.data : "", raw.len, out);
	pt_buf_free(&raw);
	return rc;
}

int inject_mime_build(const struct inject_request *r, const struct inject_rcpt *rc,
		      const json_t *vars, const struct inject_env *env, struct pt_buf *out,
		      char *err, size_t err_len)
{
	struct mime_build mb = {.r = r, .env = env, .out = out};
	int rcode;

	mb.has_text = r->text_body != NULL;
	mb.has_html = r->html_body != NULL;
	for (size_t i = 0; i < r->n_attachments; i++)
		r->attachments[i].content_id ? mb.n_inline++ : mb.n_regular++;
	rcode = mime_headers(&mb, rc, vars, err, err_len);
	if (rcode == PT_OK && mb.has_text)
		rcode =
		    render_body("content.text_body", r->text_body, vars, &mb.text, err, err_len);
	if (rcode == PT_OK && mb.has_html)
		rcode =
		    render_body("content.html_body", r->html_body, vars, &mb.html, err, err_len);
	if (rcode == PT_OK)
		rcode = mime_mixed(&mb);
	if (rcode == PT_OK && out->len > INJECT_MESSAGE_MAX) {
		snprintf(err, err_len, "the generated message exceeds %u octets",
			 INJECT_MESSAGE_MAX);
		rcode = PT_ERROR;
	}
	if (rcode == PT_NOMEM)
		snprintf(err, err_len, "out of memory");
	pt_buf_free(&mb.text);
	pt_buf_free(&mb.html);
	return rcode;
}
