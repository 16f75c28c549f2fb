/*
 * smtp_client_parse.c -- SMTP replies as the client reads them (RFC 5321
 * 4.2, enhanced status codes RFC 3463 / RFC 2034).
 *
 *   Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 *                   Reply-code [ SP textstring ] CRLF
 *
 * Lines.  A line ends at LF (a CR before it is dropped: be liberal in what
 * you accept, RFC 1122 1.2.2).  When the whole line is inside the bytes
 * given, it is parsed where it lies; only a line split between two feeds
 * is copied, into the parser's bounded line buffer, until its LF arrives.
 * So nothing is copied twice and nothing grows: a line longer than
 * SMTP_CLIENT_LINE_MAX, or a reply longer than SMTP_CLIENT_REPLY_MAX, is
 * an error as soon as the limit is passed, without waiting for its end.
 *
 * A line is three digits (the first 2 to 5), then "-" (more lines follow),
 * " " or nothing (the last line).  Every line of a reply must repeat the
 * first line's code.  Anything else -- a letter, a short code, a changed
 * code -- is an ERROR: the stream is out of step and the session must end.
 *
 * Enhanced status code.  At the start of the first line's text, "c.s.d"
 * with c in {2, 4, 5} and 1 to 3 digits for s and d, followed by a blank
 * or the end of the line (KumoMTA's parse_enhanced_status_code, which also
 * parses it whether ENHANCEDSTATUSCODES was advertised or not).  The same
 * code repeated at the start of later lines is dropped from their text.
 *
 * Content.  The lines' texts joined with "\n", control characters turned
 * into blanks, cut to fit reply.content (never inside a UTF-8 sequence);
 * once a line had to be cut, the lines after it are left out.
 */
#include "net/smtp_client_parse.h"

#include <stdio.h>
#include <string.h>

void smtp_client_parse_init(struct smtp_client_parse *p)
{
	memset(&p->reply, 0, sizeof(p->reply));
	p->reply.enh_class = p->reply.enh_subject = p->reply.enh_detail = -1;
	p->content_len = 0;
	p->content_full = false;
	p->n_lines = 0;
	p->n_octets = 0;
	p->complete = false;
	p->failed = false;
	p->text = NULL;
	p->text_len = 0;
	p->error[0] = '\0';
	p->line_len = 0;
}

static bool parse_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A printable rendering of the start of a bad line, for the error text. */
static void parse_fail(struct smtp_client_parse *p, const char *why, const char *line, size_t n)
{
	char shown[48];
	size_t k = 0;

	for (size_t i = 0; i < n && k < sizeof(shown) - 1; i++)
		shown[k++] = (line[i] >= ' ' && line[i] < 0x7f && line[i] != '"') ? line[i] : '?';
	shown[k] = '\0';
	if (line)
		snprintf(p->error, sizeof(p->error), "%s: \"%s%s\"", why, shown,
			 n > k ? "..." : "");
	else
		snprintf(p->error, sizeof(p->error), "%s", why);
	p->failed = true;
}

/* Read 1..3 digits at *s (advanced); -1 when there are none or more than 3. */
static int parse_number(const char **s, const char *end)
{
	int v = 0, n = 0;

	while (*s < end && parse_is_digit(**s)) {
		if (++n > 3)
			return -1;
		v = v * 10 + (**s - '0');
		(*s)++;
	}
	return n == 0 ? -1 : v;
}

/* "c.s.d" then a blank or the end; returns the octets it takes (blank included), or 0. */
static size_t parse_enhanced(const char *s, size_t n, int *class, int *subject, int *detail)
{
	const char *p = s, *end = s + n;
	int c, sub, det;

	if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	c = s[0] - '0';
	p = s + 2;
	if ((sub = parse_number(&p, end)) < 0 || p == end || *p != '.')
		return 0;
	p++;
	if ((det = parse_number(&p, end)) < 0)
		return 0;
	if (p < end && *p != ' ' && *p != '\t')
		return 0;
	*class = c;
	*subject = sub;
	*detail = det;
	return (size_t)(p - s) + (p < end ? 1 : 0);
}

/* Append one line's text to the content: "\n" between lines, blanks for controls. */
static void parse_append(struct smtp_client_parse *p, const char *text, size_t n)
{
	char *dst = p->reply.content;
	size_t room, cut;

	if (p->content_full)
		return;
	room = sizeof(p->reply.content) - 1 - p->content_len;
	if (p->n_lines > 0) {
		if (room == 0) {
			p->content_full = true;
			return;
		}
		dst[p->content_len++] = '\n';
		room--;
	}
	cut = n;
	if (n > room) {
		/* Never end inside a UTF-8 sequence: back off to its lead byte. */
		cut = room;
		while (cut > 0 && ((unsigned char)text[cut] & 0xc0) == 0x80)
			cut--;
		p->content_full = true;
	}
	for (size_t i = 0; i < cut; i++) {
		unsigned char c = (unsigned char)text[i];

		dst[p->content_len++] = (c < ' ' && c != '\t') || c == 0x7f ? ' ' : (char)c;
	}
	dst[p->content_len] = '\0';
}

/* The first line: code, enhanced code, the start of the content. */
static void parse_first_line(struct smtp_client_parse *p, int code, const char *text, size_t n)
{
	struct smtp_client_reply *r = &p->reply;
	size_t skip;

	memset(r, 0, sizeof(*r));
	r->code = code;
	r->enh_class = r->enh_subject = r->enh_detail = -1;
	p->content_len = 0;
	p->content_full = false;
	skip = parse_enhanced(text, n, &r->enh_class, &r->enh_subject, &r->enh_detail);
	p->text = text + skip;
	p->text_len = n - skip;
	parse_append(p, p->text, p->text_len);
}

/* A continuation: same code; a repeated enhanced code is dropped (KumoMTA does too). */
static bool parse_next_line(struct smtp_client_parse *p, int code, const char *text, size_t n)
{
	const struct smtp_client_reply *r = &p->reply;
	int c, s, d;
	size_t skip;

	if (code != r->code) {
		snprintf(p->error, sizeof(p->error),
			 "multi-line reply changes its code from %d to %d", r->code, code);
		p->failed = true;
		return false;
	}
	skip = parse_enhanced(text, n, &c, &s, &d);
	if (skip == 0 || c != r->enh_class || s != r->enh_subject || d != r->enh_detail)
		skip = 0;
	p->text = text + skip;
	p->text_len = n - skip;
	parse_append(p, p->text, p->text_len);
	return true;
}

/* One complete line, its LF (and CR) removed. */
static enum smtp_client_parse_result parse_line(struct smtp_client_parse *p, const char *s,
						size_t n)
{
	bool last;
	int code;

	if (n < 3 || s[0] < '2' || s[0] > '5' || !parse_is_digit(s[1]) || !parse_is_digit(s[2]) ||
	    (n > 3 && s[3] != ' ' && s[3] != '-')) {
		parse_fail(p, "malformed reply line", s, n);
		return SMTP_CLIENT_PARSE_ERROR;
	}
	code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	last = n == 3 || s[3] == ' ';
	s += PT_MIN(n, (size_t)4);
	n -= PT_MIN(n, (size_t)4);
	if (p->n_lines == 0)
		parse_first_line(p, code, s, n);
	else if (!parse_next_line(p, code, s, n))
		return SMTP_CLIENT_PARSE_ERROR;
	p->n_lines++;
	if (!last)
		return SMTP_CLIENT_PARSE_LINE;
	p->complete = true;
	return SMTP_CLIENT_PARSE_REPLY;
}

/* Count octets of the reply; false (and failed) past the limit. */
static bool parse_count(struct smtp_client_parse *p, size_t n)
{
	p->n_octets += n;
	if (p->n_octets <= SMTP_CLIENT_REPLY_MAX)
		return true;
	parse_fail(p, "reply longer than 65536 octets", NULL, 0);
	return false;
}

/* Keep the start of a line split between feeds. */
static bool parse_keep(struct smtp_client_parse *p, const char *data, size_t n)
{
	if (n > sizeof(p->line) - p->line_len) {
		parse_fail(p, "reply line longer than 4096 octets", p->line_len ? p->line : data,
			   p->line_len ? p->line_len : n);
		return false;
	}
	memcpy(p->line + p->line_len, data, n);
	p->line_len += n;
	return true;
}

enum smtp_client_parse_result smtp_client_parse_reply(struct smtp_client_parse *p, const char *data,
						      size_t len, size_t *used)
{
	enum smtp_client_parse_result r;
	const char *lf, *line;
	size_t n;

	*used = len;
	if (p->failed)
		return SMTP_CLIENT_PARSE_ERROR;
	if (p->complete) {
		/* The last reply stays readable until now. */
		p->complete = false;
		p->n_lines = 0;
		p->n_octets = 0;
	}
	lf = memchr(data, '\n', len);
	n = lf ? (size_t)(lf - data) : len;
	if (!parse_count(p, lf ? n + 1 : n))
		return SMTP_CLIENT_PARSE_ERROR;
	if (lf == NULL)
		return parse_keep(p, data, n) ? SMTP_CLIENT_PARSE_AGAIN : SMTP_CLIENT_PARSE_ERROR;
	*used = n + 1;
	line = data;
	if (p->line_len > 0) {
		/* The end of a split line: complete the copy. */
		if (!parse_keep(p, data, n)) {
			*used = len;
			return SMTP_CLIENT_PARSE_ERROR;
		}
		line = p->line;
		n = p->line_len;
		p->line_len = 0;
	}
	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (n > SMTP_CLIENT_LINE_MAX) {
		parse_fail(p, "reply line longer than 4096 octets", line, n);
		*used = len;
		return SMTP_CLIENT_PARSE_ERROR;
	}
	r = parse_line(p, line, n);
	if (r == SMTP_CLIENT_PARSE_ERROR)
		*used = len; /* the stream is out of step: nothing after counts */
	return r;
}
