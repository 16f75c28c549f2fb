/*
 * smtp_parse.c -- byte-level parsers for the SMTP server session.
 *
 * Command lines.  smtp_parse_command() walks the received bytes once with a
 * small state machine (nginx's ngx_mail_smtp_parse_command):
 *
 *     START --letter--> VERB --SP/HT--> SPACES --other--> ARGUMENT
 *       |                 |                |                 |
 *       +------CR---------+-------CR-------+-------CR--------+--> ALMOST_DONE
 *
 * and LF, in any state, ends the line (so a bare LF ends a command too: be
 * liberal in what you accept, RFC 1122 1.2.2).  Anything that cannot be a
 * command -- a NUL, a CR not followed by LF, a verb with a non-letter --
 * sends the parser to SKIP, which drops bytes up to the LF and then reports
 * the line as INVALID, never as a partial command.  The octet count covers
 * the CR and LF; at SMTP_CMD_LINE_MAX (RFC 5321 4.5.3.1.4) the parser also
 * goes to SKIP and reports TOO_LONG, so no part of an overlong line is ever
 * executed.  Bytes of an acceptable line are kept in the session's bounded
 * line buffer (the received buffer is the shard's and is not kept); 511
 * octets of content plus a NUL fit in SMTP_CMD_LINE_MAX bytes.
 *
 * DATA content.  smtp_data_feed() is the same idea over message content:
 *
 *     BOL --"."--> DOT --CR--> DOT_CR --LF--> end of data
 *      |            |            |
 *      +-- other ---+-- other ---+--> TEXT --CR--> CR --LF--> BOL
 *
 * Only CRLF "." CRLF ends DATA, where the start of the content counts as
 * following a CRLF (RFC 5321 4.1.1.4).  A LF not preceded by CR, or a CR
 * not followed by LF, is a bare line end (RFC 5321 2.3.8): it marks the
 * message as refused but never ends it, so "\n.\r\n", "\r\n.\n" and "\r.\r"
 * are all content (the SMTP smuggling attacks of 2023 rely on a server that
 * ends DATA at one of them).  A leading dot is removed (RFC 5321 4.5.2):
 * ".." stores ".", and ".x" stores "x".  Content is appended to the body in
 * runs between the bytes that are dropped, not byte by byte; inside a line
 * a tight loop skips to the next CR or LF.
 *
 * Once a message is known to be refused (bare line end, long line, too big,
 * out of memory) nothing more is stored: the bytes are only counted, so a
 * peer cannot make the body grow past max_size.
 */
#include "net/smtp_parse.h"

#include <string.h>
#include <strings.h>

/* ---- command lines ---------------------------------------------------- */

static bool parse_is_letter(unsigned char c)
{
	return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

static bool parse_is_blank(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Forget the line in progress; results of the previous line stay. */
static void parse_begin_line(struct smtp_parse *p)
{
	p->state = SMTP_PARSE_START;
	p->skip_result = SMTP_PARSE_INVALID;
	p->n_octets = 0;
	p->line_len = 0;
	p->verb_len = 0;
	p->arg_off = 0;
}

void smtp_parse_init(struct smtp_parse *p)
{
	parse_begin_line(p);
	p->line[0] = '\0';
	p->verb = p->line;
	p->arg = p->line;
	p->arg_len = 0;
}

static void parse_skip(struct smtp_parse *p, enum smtp_parse_result why)
{
	p->state = SMTP_PARSE_SKIP;
	p->skip_result = why;
}

/* The LF arrived: publish verb and argument (trailing blanks cut), or the error. */
static enum smtp_parse_result parse_finish(struct smtp_parse *p)
{
	enum smtp_parse_result r = SMTP_PARSE_LINE;
	size_t end = p->line_len;

	if (p->state == SMTP_PARSE_SKIP)
		r = p->skip_result;
	if (p->arg_off == 0)
		p->arg_off = p->line_len;
	while (end > p->arg_off && parse_is_blank((unsigned char)p->line[end - 1]))
		end--;
	p->line[end] = '\0';
	p->verb = p->line;
	p->arg = p->line + p->arg_off;
	p->arg_len = end - p->arg_off;
	/* Keep the verb length before the reset below clears it. */
	end = p->verb_len;
	parse_begin_line(p);
	p->verb_len = end;
	return r;
}

/* One byte of a command line other than LF. */
static void parse_byte(struct smtp_parse *p, unsigned char c)
{
	switch (p->state) {
	case SMTP_PARSE_START:
	case SMTP_PARSE_VERB:
		if (parse_is_letter(c)) {
			p->state = SMTP_PARSE_VERB;
			p->line[p->line_len++] = (char)c;
			p->verb_len = p->line_len;
		} else if (c == '\r') {
			p->state = SMTP_PARSE_ALMOST_DONE;
		} else if (parse_is_blank(c) && p->state == SMTP_PARSE_VERB) {
			p->state = SMTP_PARSE_SPACES;
			p->line[p->line_len++] = (char)c;
		} else {
			parse_skip(p, SMTP_PARSE_INVALID);
		}
		break;
	case SMTP_PARSE_SPACES:
	case SMTP_PARSE_ARGUMENT:
		if (c == '\r') {
			p->state = SMTP_PARSE_ALMOST_DONE;
		} else if (c == '\0') {
			parse_skip(p, SMTP_PARSE_INVALID);
		} else {
			if (p->state == SMTP_PARSE_SPACES && !parse_is_blank(c)) {
				p->state = SMTP_PARSE_ARGUMENT;
				p->arg_off = p->line_len;
			}
			p->line[p->line_len++] = (char)c;
		}
		break;
	case SMTP_PARSE_ALMOST_DONE:
		/* A CR that is not part of CRLF: not a command line. */
		parse_skip(p, SMTP_PARSE_INVALID);
		break;
	case SMTP_PARSE_SKIP:
		break;
	}
}

enum smtp_parse_result smtp_parse_command(struct smtp_parse *p, const char *data, size_t len,
					  size_t *used)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)data[i];

		if (p->n_octets < SIZE_MAX)
			p->n_octets++;
		if (c == '\n') {
			*used = i + 1;
			return parse_finish(p);
		}
		/*
		 * This byte is not the LF, so the line will be at least one
		 * octet longer: at the limit it is already too long.  Checked
		 * before the byte is stored, which bounds line_len at 511.
		 */
		if (p->n_octets >= SMTP_CMD_LINE_MAX) {
			if (p->skip_result != SMTP_PARSE_TOO_LONG || p->state != SMTP_PARSE_SKIP)
				parse_skip(p, SMTP_PARSE_TOO_LONG);
			continue;
		}
		parse_byte(p, c);
	}
	*used = len;
	return SMTP_PARSE_AGAIN;
}

/* ---- DATA content ----------------------------------------------------- */

void smtp_data_init(struct smtp_data *d, struct pt_buf *body, uint64_t max_size)
{
	d->state = SMTP_DATA_BOL;
	d->flags = 0;
	d->line_len = 0;
	d->size = 0;
	d->max_size = max_size;
	d->body = body;
}

/* Store a run of content; once the message is refused, only count it. */
static void data_store(struct smtp_data *d, const char *p, size_t n)
{
	if (n == 0)
		return;
	d->size += n;
	if (d->size > d->max_size)
		d->flags |= SMTP_DATA_TOO_BIG;
	if (d->flags)
		return;
	if (pt_buf_append(d->body, p, n) != PT_OK)
		d->flags |= SMTP_DATA_NOMEM;
}

static void data_count(struct smtp_data *d, size_t n)
{
	d->line_len += n;
	if (d->line_len > SMTP_TEXT_LINE_MAX)
		d->flags |= SMTP_DATA_LONG_LINE; /* RFC 5321 4.5.3.1.6 */
}

/* A byte inside a line: CR may start a CRLF, a LF here is bare.  Kept. */
static bool data_text(struct smtp_data *d, unsigned char c)
{
	d->state = SMTP_DATA_TEXT;
	if (c == '\r')
		d->state = SMTP_DATA_CR;
	else if (c == '\n')
		d->flags |= SMTP_DATA_BARE_CRLF;
	return true;
}

/*
 * One byte of content through the state machine.  Returns whether the byte
 * is part of the stored content (the leading dot and the final ".\r\n" are
 * not); sets *end at the LF of CRLF "." CRLF.  A withheld byte that turns
 * out to be content (the CR of ".\r" then something else) only happens in
 * a message already refused for its bare CR, so it need not be stored.
 */
static bool data_byte(struct smtp_data *d, unsigned char c, bool *end)
{
	data_count(d, 1);
	switch (d->state) {
	case SMTP_DATA_BOL:
		if (c == '.') {
			d->state = SMTP_DATA_DOT;
			return false;
		}
		return data_text(d, c);
	case SMTP_DATA_DOT:
		if (c == '\r') {
			d->state = SMTP_DATA_DOT_CR;
			return false;
		}
		return data_text(d, c); /* ".." keeps one dot, ".x" keeps "x" */
	case SMTP_DATA_DOT_CR:
		if (c == '\n') {
			*end = true;
			return false;
		}
		d->flags |= SMTP_DATA_BARE_CRLF;
		return data_text(d, c);
	case SMTP_DATA_CR:
		if (c == '\n') {
			d->state = SMTP_DATA_BOL;
			d->line_len = 0;
			return true;
		}
		d->flags |= SMTP_DATA_BARE_CRLF;
		return data_text(d, c);
	case SMTP_DATA_TEXT:
		return data_text(d, c);
	}
	return true;
}

size_t smtp_data_feed(struct smtp_data *d, const char *data, size_t len, bool *done)
{
	const char *p = data, *end = data + len, *run = data;
	bool fin = false;

	while (p < end && !fin) {
		if (d->state == SMTP_DATA_TEXT) {
			/* Inside a line nothing matters but CR and LF. */
			const char *q = p;

			while (q < end && *q != '\r' && *q != '\n')
				q++;
			data_count(d, (size_t)(q - p));
			p = q;
			if (p == end)
				break;
		}
		if (!data_byte(d, (unsigned char)*p, &fin)) {
			data_store(d, run, (size_t)(p - run));
			run = p + 1;
		}
		p++;
	}
	data_store(d, run, (size_t)(p - run));
	*done = fin;
	return (size_t)(p - data);
}

/* ---- paths ------------------------------------------------------------ */

static bool path_is_atext(unsigned char c)
{
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
		return true;
	if (c >= '0' && c <= '9')
		return true;
	if (c >= 0x80)
		return true; /* UTF-8, RFC 6531 3.3 */
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool path_is_label(unsigned char c)
{
	return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '_' || c >= 0x80;
}

/*
 * Domain (RFC 5321 4.1.2): sub-domains separated by single dots, or an
 * address literal "[...]".  Returns the offset after it, or 0.  Labels
 * accept "_" and UTF-8 (RFC 6531): we judge syntax, not DNS.
 */
static size_t path_domain(const char *s, size_t len, size_t i)
{
	size_t label = 0;

	if (i < len && s[i] == '[') {
		size_t start = ++i;

		while (i < len && s[i] != ']' && s[i] != '[' && s[i] != '\\' &&
		       (unsigned char)s[i] > ' ' && (unsigned char)s[i] < 0x7f)
			i++;
		return i < len && s[i] == ']' && i > start ? i + 1 : 0;
	}
	for (; i < len; i++) {
		if (path_is_label((unsigned char)s[i])) {
			label++;
		} else if (s[i] == '.' && label > 0) {
			label = 0;
		} else {
			break;
		}
	}
	return label > 0 ? i : 0;
}

/* Local-part: a dot-string (dots anywhere: be liberal) or a quoted string. */
static size_t path_local_part(const char *s, size_t len, size_t i)
{
	size_t start = i;

	if (i < len && s[i] == '"') {
		for (i++; i < len && s[i] != '"'; i++) {
			unsigned char c = (unsigned char)s[i];

			if (c == '\\' && i + 1 < len && (unsigned char)s[i + 1] >= ' ')
				i++;
			else if (c < ' ' || c == 0x7f || c == '\\')
				return 0;
		}
		return i < len ? i + 1 : 0;
	}
	while (i < len && (path_is_atext((unsigned char)s[i]) || s[i] == '.'))
		i++;
	return i > start ? i : 0;
}

/* A-d-l (RFC 5321 4.1.2): "@" domain *("," "@" domain) ":", which 4.1.1.3 says to ignore. */
static size_t path_source_route(const char *s, size_t len, size_t i)
{
	for (;;) {
		if (i >= len || s[i] != '@')
			return 0;
		i = path_domain(s, len, i + 1);
		if (i == 0 || i >= len)
			return 0;
		if (s[i] == ':')
			return i + 1;
		if (s[i] != ',')
			return 0;
		i++;
	}
}

size_t smtp_parse_path(const char *s, size_t len, bool postmaster_ok, struct smtp_path *out)
{
	size_t i = 1, start, at;

	if (len < 2 || s[0] != '<')
		return 0;
	if (s[1] == '>') {
		out->mailbox = s + 1;
		out->mailbox_len = 0;
		return 2;
	}
	if (s[1] == '@' && (i = path_source_route(s, len, 1)) == 0)
		return 0;
	start = i;
	if ((at = path_local_part(s, len, i)) == 0)
		return 0;
	if (at < len && s[at] == '@') {
		if ((i = path_domain(s, len, at + 1)) == 0)
			return 0;
	} else {
		/* RFC 5321 4.1.1.3: "<Postmaster>" without a domain must be accepted. */
		if (!postmaster_ok || at - start != 10 || strncasecmp(s + start, "postmaster", 10))
			return 0;
		i = at;
	}
	if (i >= len || s[i] != '>')
		return 0;
	out->mailbox = s + start;
	out->mailbox_len = i - start;
	return i + 1;
}

/* ---- ESMTP parameters ------------------------------------------------- */

int smtp_parse_param(const char **sp, const char *end, struct smtp_param *out)
{
	const char *s = *sp;

	while (s < end && parse_is_blank((unsigned char)*s))
		s++;
	if (s == end) {
		*sp = s;
		return 0;
	}
	out->keyword = s;
	while (s < end && *s != '=' && !parse_is_blank((unsigned char)*s))
		s++;
	out->keyword_len = (size_t)(s - out->keyword);
	out->value = NULL;
	out->value_len = 0;
	if (s < end && *s == '=') {
		out->value = ++s;
		while (s < end && !parse_is_blank((unsigned char)*s))
			s++;
		out->value_len = (size_t)(s - out->value);
	}
	*sp = s;
	return 1;
}

bool smtp_param_is(const struct smtp_param *p, const char *keyword)
{
	return strlen(keyword) == p->keyword_len &&
	       strncasecmp(p->keyword, keyword, p->keyword_len) == 0;
}

bool smtp_param_keyword_ok(const struct smtp_param *p)
{
	if (p->keyword_len == 0)
		return false;
	for (size_t i = 0; i < p->keyword_len; i++) {
		unsigned char c = (unsigned char)p->keyword[i];
		bool alnum = ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || c != '-'))
			return false;
	}
	return true;
}

bool smtp_param_value_ok(const struct smtp_param *p)
{
	if (p->value == NULL || p->value_len == 0)
		return false;
	for (size_t i = 0; i < p->value_len; i++) {
		unsigned char c = (unsigned char)p->value[i];

		if (c < 33 || c == '=' || c == 0x7f)
			return false;
	}
	return true;
}

bool smtp_param_number(const struct smtp_param *p, uint64_t *out)
{
	uint64_t n = 0;

	if (p->value == NULL || p->value_len == 0)
		return false;
	for (size_t i = 0; i < p->value_len; i++) {
		unsigned d = (unsigned char)p->value[i] - '0';

		if (d > 9)
			return false;
		n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
	}
	*out = n;
	return true;
}
