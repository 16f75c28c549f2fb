/*
 * mime.c -- the pieces of RFC 5322 and MIME that core/report.c reads
 * reports with (see mime.h for what each promises).
 *
 * Every function takes a pointer and a length and checks each index
 * against it before reading; none writes to its input.  Where the input
 * breaks the rules the choice is the one that lets a real report through
 * without reading past what was given: stray lines in a header block are
 * skipped, a missing close delimiter ends the last part at the end of the
 * body (flagged truncated), an unquoted parameter value may hold '='
 * (widespread in boundaries such as "----=_Part_1").
 */
#include "core/mime.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool mime_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* The end of the line starting at off (before its CRLF or LF); *next is
 * where the following line starts (len when there is none). */
static size_t mime_line_end(const char *p, size_t len, size_t off, size_t *next)
{
	const char *nl = off < len ? memchr(p + off, '\n', len - off) : NULL;
	size_t end;

	if (nl == NULL) {
		*next = len;
		return len;
	}
	end = (size_t)(nl - p);
	*next = end + 1;
	if (end > off && p[end - 1] == '\r')
		end--;
	return end;
}

/* A field name (RFC 5322 3.6.8: printable ASCII but ':'); blanks before
 * the colon are the obsolete syntax of 4.5 and are dropped. */
static bool mime_field_name(const char *p, size_t *n)
{
	while (*n > 0 && mime_blank(p[*n - 1]))
		(*n)--;
	if (*n == 0)
		return false;
	for (size_t i = 0; i < *n; i++)
		if ((unsigned char)p[i] < 33 || (unsigned char)p[i] > 126)
			return false;
	return true;
}

bool pt_mime_field_next(const char *p, size_t len, size_t *off, struct pt_mime_field *f)
{
	while (*off < len) {
		size_t start = *off, next, end = mime_line_end(p, len, start, &next);
		size_t name_len, vstart, vend, after;
		const char *colon;

		if (end == start) { /* the blank line: the body follows */
			*off = next;
			return false;
		}
		*off = next;
		if (mime_blank(p[start]))
			continue; /* a continuation of nothing (a skipped line) */
		colon = memchr(p + start, ':', end - start);
		if (colon == NULL)
			continue;
		name_len = (size_t)(colon - (p + start));
		if (!mime_field_name(p + start, &name_len))
			continue;
		vstart = (size_t)(colon - p) + 1;
		vend = end;
		after = next;
		while (after < len && mime_blank(p[after])) {
			vend = mime_line_end(p, len, after, &next);
			after = next;
		}
		while (vstart < vend &&
		       (mime_blank(p[vstart]) || p[vstart] == '\r' || p[vstart] == '\n'))
			vstart++;
		f->name = p + start;
		f->name_len = name_len;
		f->value = p + vstart;
		f->value_len = vend - vstart;
		*off = after;
		return true;
	}
	*off = len;
	return false;
}

size_t pt_mime_body_offset(const char *p, size_t len)
{
	struct pt_mime_field f;
	size_t off = 0;

	while (pt_mime_field_next(p, len, &off, &f))
		;
	return off;
}

bool pt_mime_find_field(const char *p, size_t len, const char *name, struct pt_mime_field *f)
{
	size_t off = 0, n = strlen(name);

	while (pt_mime_field_next(p, len, &off, f))
		if (f->name_len == n && strncasecmp(f->name, name, n) == 0)
			return true;
	return false;
}

size_t pt_mime_unfold(const char *v, size_t n, char *out, size_t out_len)
{
	size_t o = 0, i = 0;

	while (i < n && (mime_blank(v[i]) || v[i] == '\r' || v[i] == '\n'))
		i++;
	for (; i < n && o + 1 < out_len; i++)
		if (v[i] != '\r' && v[i] != '\n')
			out[o++] = v[i];
	while (o > 0 && mime_blank(out[o - 1]))
		o--;
	out[o] = '\0';
	return o;
}

char *pt_mime_unfold_dup(const char *v, size_t n, size_t max)
{
	size_t cap = PT_MIN(n, max) + 1;
	char *s = malloc(cap);

	if (s != NULL)
		pt_mime_unfold(v, n, s, cap);
	return s;
}

/* ---- Content-Type --------------------------------------------------------- */

struct mime_scan {
	const char *p;
	size_t n, i;
};

/* Blanks, line ends (folding) and comments, which may nest (RFC 5322 3.2.2). */
static void mime_skip_cfws(struct mime_scan *s)
{
	size_t depth = 0;

	while (s->i < s->n) {
		char c = s->p[s->i];

		if (depth > 0 && c == '\\') {
			s->i += 2;
			continue;
		}
		if (c == '(')
			depth++;
		else if (c == ')' && depth > 0)
			depth--;
		else if (depth == 0 && !mime_blank(c) && c != '\r' && c != '\n')
			return;
		s->i++;
	}
	if (s->i > s->n)
		s->i = s->n;
}

/* RFC 2045 5.1 tspecials, plus what can't be in a token anyway. */
static bool mime_token_char(char c)
{
	return (unsigned char)c > 32 && (unsigned char)c < 127 &&
	       strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static size_t mime_token(struct mime_scan *s)
{
	size_t start = s->i;

	while (s->i < s->n && mime_token_char(s->p[s->i]))
		s->i++;
	return s->i - start;
}

/* A parameter value into out (cut values make out ""): a quoted string
 * (with \-escapes) or, liberally, anything up to ';', a blank or a line end. */
static void mime_param_value(struct mime_scan *s, char *out, size_t out_len)
{
	size_t o = 0;
	bool fits = true;

	if (s->i < s->n && s->p[s->i] == '"') {
		for (s->i++; s->i < s->n && s->p[s->i] != '"'; s->i++) {
			char c = s->p[s->i];

			if (c == '\\' && s->i + 1 < s->n)
				c = s->p[++s->i];
			else if (c == '\r' || c == '\n')
				continue; /* folding inside the quotes */
			if (o + 1 < out_len)
				out[o++] = c;
			else
				fits = false;
		}
		if (s->i < s->n)
			s->i++; /* the closing quote */
	} else {
		for (; s->i < s->n; s->i++) {
			char c = s->p[s->i];

			if (c == ';' || mime_blank(c) || c == '\r' || c == '\n' || c == '(' ||
			    c == '"' || (unsigned char)c < 32)
				break;
			if (o + 1 < out_len)
				out[o++] = c;
			else
				fits = false;
		}
	}
	out[fits ? o : 0] = '\0';
}

static void mime_lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

bool pt_mime_content_type(const char *v, size_t n, struct pt_mime_ctype *ct)
{
	struct mime_scan s = {v, n, 0};
	size_t t0, tn, st0, stn;
	char attr[PT_MIME_TOKEN_MAX], value[PT_MIME_BOUNDARY_MAX + 1];

	memset(ct, 0, sizeof(*ct));
	mime_skip_cfws(&s);
	t0 = s.i;
	tn = mime_token(&s);
	mime_skip_cfws(&s);
	if (tn == 0 || s.i >= n || v[s.i] != '/')
		return false;
	s.i++;
	mime_skip_cfws(&s);
	st0 = s.i;
	stn = mime_token(&s);
	if (stn == 0 || tn + 1 + stn >= sizeof(ct->type))
		return false;
	memcpy(ct->type, v + t0, tn);
	ct->type[tn] = '/';
	memcpy(ct->type + tn + 1, v + st0, stn);
	ct->type[tn + 1 + stn] = '\0';
	mime_lower(ct->type);
	for (;;) {
		size_t a0, an;

		mime_skip_cfws(&s);
		if (s.i >= n || v[s.i] != ';')
			break;
		s.i++;
		mime_skip_cfws(&s);
		a0 = s.i;
		an = mime_token(&s);
		mime_skip_cfws(&s);
		if (an == 0 || s.i >= n || v[s.i] != '=')
			break;
		s.i++;
		mime_skip_cfws(&s);
		mime_param_value(&s, value, sizeof(value));
		if (an >= sizeof(attr))
			continue;
		memcpy(attr, v + a0, an);
		attr[an] = '\0';
		if (strcasecmp(attr, "boundary") == 0) {
			memcpy(ct->boundary, value, sizeof(ct->boundary));
		} else if (strcasecmp(attr, "report-type") == 0 &&
			   strlen(value) < sizeof(ct->report_type)) {
			memcpy(ct->report_type, value, strlen(value) + 1);
			mime_lower(ct->report_type);
		}
	}
	return true;
}

void pt_mime_entity_type(const char *p, size_t len, struct pt_mime_ctype *ct)
{
	struct pt_mime_field f;

	if (pt_mime_find_field(p, len, "Content-Type", &f) &&
	    pt_mime_content_type(f.value, f.value_len, ct))
		return;
	memset(ct, 0, sizeof(*ct));
	memcpy(ct->type, "text/plain", sizeof("text/plain"));
}

/* ---- multipart ------------------------------------------------------------ */

void pt_mime_multipart_init(struct pt_mime_multipart *mp, const char *body, size_t len,
			    const char *boundary)
{
	size_t bn = strlen(boundary);

	memset(mp, 0, sizeof(*mp));
	mp->body = body;
	mp->len = len;
	if (bn == 0 || bn > PT_MIME_BOUNDARY_MAX) {
		mp->done = true;
		return;
	}
	mp->delim[0] = mp->delim[1] = '-';
	memcpy(mp->delim + 2, boundary, bn);
	mp->delim_len = bn + 2;
}

/*
 * The next delimiter line at or after from: *start is where its "--" is,
 * *next where the line after it starts, *close whether it is the close
 * delimiter.  False when there is none.
 */
static bool mime_find_delim(const struct pt_mime_multipart *mp, size_t from, size_t *start,
			    size_t *next, bool *close)
{
	const char *b = mp->body;
	size_t len = mp->len, pos = from;

	while (pos < len && len - pos >= mp->delim_len) {
		const char *hit = memmem(b + pos, len - pos, mp->delim, mp->delim_len);
		size_t h, q;

		if (hit == NULL)
			return false;
		h = (size_t)(hit - b);
		pos = h + 1;
		if (h > 0 && b[h - 1] != '\n')
			continue; /* not at the start of a line */
		q = h + mp->delim_len;
		*close = len - q >= 2 && b[q] == '-' && b[q + 1] == '-';
		if (*close) {
			mime_line_end(b, len, q, next);
			*start = h;
			return true;
		}
		while (q < len && mime_blank(b[q]))
			q++; /* transport padding */
		if (q == len || b[q] == '\n' ||
		    (b[q] == '\r' && (q + 1 == len || b[q + 1] == '\n'))) {
			mime_line_end(b, len, q, next);
			*start = h;
			return true;
		}
	}
	return false;
}

bool pt_mime_multipart_next(struct pt_mime_multipart *mp, struct pt_mime_part *part)
{
	size_t start, next, end;
	bool close;

	if (mp->done)
		return false;
	if (!mp->started) {
		if (!mime_find_delim(mp, 0, &start, &next, &close) || close) {
			mp->done = true;
			return false;
		}
		mp->started = true;
		mp->off = next;
	}
	part->p = mp->body + mp->off;
	if (!mime_find_delim(mp, mp->off, &start, &next, &close)) {
		part->len = mp->len - mp->off;
		part->truncated = true;
		mp->done = true;
		return true;
	}
	/* RFC 2046 5.1.1: the line end before a delimiter is part of it. */
	end = start;
	if (end > mp->off && mp->body[end - 1] == '\n')
		end--;
	if (end > mp->off && mp->body[end - 1] == '\r')
		end--;
	part->len = end - mp->off;
	part->truncated = false;
	mp->off = next;
	mp->done = close;
	return true;
}

/* ---- transfer encodings --------------------------------------------------- */

static int mime_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int mime_base64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	return c == '/' ? 63 : -1;
}

static int mime_base64(const char *p, size_t n, struct pt_buf *out)
{
	char chunk[512];
	size_t o = 0;
	uint32_t acc = 0;
	unsigned bits = 0;

	for (size_t i = 0; i < n && p[i] != '='; i++) {
		int v = mime_base64_value(p[i]);

		if (v < 0)
			continue;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			chunk[o++] = (char)((acc >> bits) & 0xff);
		}
		if (o == sizeof(chunk)) {
			if (pt_buf_append(out, chunk, o) != PT_OK)
				return PT_NOMEM;
			o = 0;
		}
	}
	return pt_buf_append(out, chunk, o) == PT_OK ? PT_OK : PT_NOMEM;
}

static int mime_quoted_printable(const char *p, size_t n, struct pt_buf *out)
{
	size_t i = 0;

	while (i < n) {
		const char *eq = memchr(p + i, '=', n - i);
		size_t run = eq ? (size_t)(eq - (p + i)) : n - i, q;
		int hi, lo;

		if (pt_buf_append(out, p + i, run) != PT_OK)
			return PT_NOMEM;
		i += run;
		if (i >= n)
			break;
		i++; /* the '=' */
		hi = i + 1 < n ? mime_hex(p[i]) : -1;
		lo = i + 1 < n ? mime_hex(p[i + 1]) : -1;
		if (hi >= 0 && lo >= 0) {
			char c = (char)(hi << 4 | lo);

			if (pt_buf_append(out, &c, 1) != PT_OK)
				return PT_NOMEM;
			i += 2;
			continue;
		}
		for (q = i; q < n && mime_blank(p[q]); q++)
			;
		if (q < n && p[q] == '\r' && q + 1 < n && p[q + 1] == '\n') {
			i = q + 2; /* a soft line break */
			continue;
		}
		if (q < n && p[q] == '\n') {
			i = q + 1;
			continue;
		}
		if (pt_buf_append(out, "=", 1) != PT_OK)
			return PT_NOMEM;
	}
	return PT_OK;
}

int pt_mime_decode(const char *cte, const char *p, size_t n, struct pt_buf *out)
{
	if (cte == NULL || cte[0] == '\0' || strcasecmp(cte, "7bit") == 0 ||
	    strcasecmp(cte, "8bit") == 0 || strcasecmp(cte, "binary") == 0)
		return pt_buf_append(out, p, n) == PT_OK ? PT_OK : PT_NOMEM;
	if (strcasecmp(cte, "base64") == 0)
		return mime_base64(p, n, out);
	if (strcasecmp(cte, "quoted-printable") == 0)
		return mime_quoted_printable(p, n, out);
	return PT_ERROR;
}

/* ---- dates ---------------------------------------------------------------- */

#define MIME_DATE_MAX 256

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's
 * days_from_civil). */
static int64_t mime_days_from_civil(int64_t y, int m, int d)
{
	int64_t era;
	int64_t yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int mime_month_days(int64_t y, int m)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

struct mime_date_scan {
	const char *s;
	size_t n, i;
};

static void mime_date_ws(struct mime_date_scan *d)
{
	while (d->i < d->n && d->s[d->i] == ' ')
		d->i++;
}

/* 1 to max digits; -1 when there are none (or more). */
static int64_t mime_date_number(struct mime_date_scan *d, size_t max, size_t *digits)
{
	int64_t v = 0;
	size_t start = d->i;

	while (d->i < d->n && isdigit((unsigned char)d->s[d->i]) && d->i - start < max)
		v = v * 10 + (d->s[d->i++] - '0');
	*digits = d->i - start;
	if (*digits == 0 || (d->i < d->n && isdigit((unsigned char)d->s[d->i])))
		return -1;
	return v;
}

/* A word of letters, lower case, into w (at most 15); its length. */
static size_t mime_date_word(struct mime_date_scan *d, char w[16])
{
	size_t o = 0;

	while (d->i < d->n && isalpha((unsigned char)d->s[d->i])) {
		if (o < 15)
			w[o++] = (char)tolower((unsigned char)d->s[d->i]);
		d->i++;
	}
	w[o] = '\0';
	return o;
}

/* The zone as seconds east of UTC; false when it is not one. */
static bool mime_date_zone(struct mime_date_scan *d, int64_t *east_s)
{
	static const struct {
		const char *name;
		int hours;
	} zones[] = {
	    {"ut", 0},	 {"utc", 0},  {"gmt", 0},  {"z", 0},	{"est", -5}, {"edt", -4},
	    {"cst", -6}, {"cdt", -5}, {"mst", -7}, {"mdt", -6}, {"pst", -8}, {"pdt", -7},
	};
	char w[16];
	size_t len;

	if (d->i < d->n && (d->s[d->i] == '+' || d->s[d->i] == '-')) {
		int sign = d->s[d->i++] == '-' ? -1 : 1;
		size_t digits;
		int64_t hhmm = mime_date_number(d, 4, &digits);

		if (hhmm < 0 || digits != 4 || hhmm % 100 > 59)
			return false;
		*east_s = sign * ((hhmm / 100) * 3600 + (hhmm % 100) * 60);
		return true;
	}
	len = mime_date_word(d, w);
	for (size_t i = 0; i < PT_ARRAY_LEN(zones); i++)
		if (strcmp(w, zones[i].name) == 0) {
			*east_s = zones[i].hours * 3600;
			return true;
		}
	/* RFC 5322 4.3: military zones are unreliable; read as -0000. */
	*east_s = 0;
	return len == 1 && w[0] != 'j';
}

/* s without comments, CR/LF/TAB as spaces, into out (NUL-terminated). */
static bool mime_date_clean(const char *s, size_t n, char *out, size_t *out_n)
{
	size_t o = 0, depth = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '(')
			depth++;
		else if (c == ')' && depth > 0)
			depth--;
		else if (depth == 0) {
			if (o + 1 >= MIME_DATE_MAX)
				return false;
			out[o++] = (c == '\r' || c == '\n' || c == '\t') ? ' ' : c;
		}
	}
	out[o] = '\0';
	*out_n = o;
	return true;
}

int pt_mime_date(const char *s, size_t n, int64_t *out_us)
{
	static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
					     "jul", "aug", "sep", "oct", "nov", "dec"};
	static const char *const wdays[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
	char buf[MIME_DATE_MAX], w[16];
	struct mime_date_scan d = {buf, 0, 0};
	int64_t day, year, hour, min, sec = 0, east;
	size_t digits;
	int month = 0;

	if (!mime_date_clean(s, n, buf, &d.n))
		return PT_ERROR;
	mime_date_ws(&d);
	if (d.i < d.n && isalpha((unsigned char)buf[d.i])) {
		bool known = false;

		mime_date_word(&d, w);
		for (size_t i = 0; i < PT_ARRAY_LEN(wdays); i++)
			known |= strcmp(w, wdays[i]) == 0;
		mime_date_ws(&d);
		if (!known || d.i >= d.n || buf[d.i] != ',')
			return PT_ERROR;
		d.i++;
		mime_date_ws(&d);
	}
	day = mime_date_number(&d, 2, &digits);
	mime_date_ws(&d);
	mime_date_word(&d, w);
	for (int i = 0; i < 12; i++)
		if (strcmp(w, months[i]) == 0)
			month = i + 1;
	mime_date_ws(&d);
	year = mime_date_number(&d, 4, &digits);
	if (day < 1 || month == 0 || year < 0 || digits < 2)
		return PT_ERROR;
	if (digits == 2) /* RFC 5322 4.3 */
		year += year < 50 ? 2000 : 1900;
	else if (digits == 3)
		year += 1900;
	if (year < 1900 || day > mime_month_days(year, month))
		return PT_ERROR;
	mime_date_ws(&d);
	hour = mime_date_number(&d, 2, &digits);
	mime_date_ws(&d);
	if (hour < 0 || hour > 23 || d.i >= d.n || buf[d.i++] != ':')
		return PT_ERROR;
	mime_date_ws(&d);
	min = mime_date_number(&d, 2, &digits);
	mime_date_ws(&d);
	if (min < 0 || min > 59)
		return PT_ERROR;
	if (d.i < d.n && buf[d.i] == ':') {
		d.i++;
		mime_date_ws(&d);
		sec = mime_date_number(&d, 2, &digits);
		if (sec < 0 || sec > 60)
			return PT_ERROR;
		mime_date_ws(&d);
	}
	if (!mime_date_zone(&d, &east))
		return PT_ERROR;
	mime_date_ws(&d);
	if (d.i != d.n)
		return PT_ERROR;
	*out_us =
	    ((mime_days_from_civil(year, month, (int)day) * 86400 + hour * 3600 + min * 60 + sec) -
	     east) *
	    1000000;
	return PT_OK;
}
