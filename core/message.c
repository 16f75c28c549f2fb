/*
 * message.c -- a message and its envelope (layout in message.h).
 *
 * The received data is never moved or rewritten: header edits land in two
 * side buffers, and the stored form is the concatenation
 *
 *     prefix | data[0, header_end) | appended | data[header_end, len)
 *
 * header_end is the offset of the blank line that ends the header block
 * (RFC 5322 2.1): with data = "A: 1\r\nB: 2\r\n\r\nbody", header_end = 12 and
 * data[12..] = "\r\nbody", so appended lines go after "B: 2\r\n" and before
 * the blank line.  A message that starts with the blank line has
 * header_end = 0; one with no blank line at all is all header,
 * header_end = data.len.
 *
 * Header lookup walks the three header parts in stored order (prefix, data
 * headers, appended) and returns the first field with the name, unfolded
 * (RFC 5322 2.2.3: a CRLF followed by WSP is removed).  It is a linear scan;
 * headers are a few KiB and lookups are rare (policy hooks), so no index.
 *
 * Envelope strings and meta entries are individually malloc'd and owned by
 * the message; pt_message_clear() frees them all.
 */
#include "core/message.h"
#include "core/json.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Zero a message; no allocation. */
void pt_message_init(struct pt_message *m)
{
	memset(m, 0, sizeof(*m));
}

/* Free everything m owns and leave it as pt_message_init() does. */
void pt_message_clear(struct pt_message *m)
{
	for (size_t i = 0; i < m->n_rcpts; i++)
		free(m->rcpts[i]);
	free(m->rcpts);
	for (size_t i = 0; i < m->n_meta; i++) {
		free(m->meta[i].key);
		free(m->meta[i].json);
	}
	free(m->meta);
	free(m->sender);
	pt_buf_free(&m->prefix);
	pt_buf_free(&m->data);
	pt_buf_free(&m->appended);
	free(m->peer_address);
	free(m->ehlo);
	free(m->reception_protocol);
	pt_message_init(m);
}

/* A NUL-terminated malloc'd copy of s[0, n), or NULL. */
static char *message_strndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* Set the reverse-path (copied; "" for the null sender).  PT_OK or PT_NOMEM. */
int pt_message_set_sender(struct pt_message *m, const char *s, size_t n)
{
	char *p = message_strndup(s, n);

	if (p == NULL)
		return PT_NOMEM;
	free(m->sender);
	m->sender = p;
	return PT_OK;
}

/* Make room for one more element in an array of `size`-byte items. */
static int message_grow(void **items, size_t n, size_t *cap, size_t size)
{
	size_t new_cap;
	void *p;

	if (n < *cap)
		return PT_OK;
	new_cap = *cap ? *cap * 2 : 4;
	p = reallocarray(*items, new_cap, size);
	if (p == NULL)
		return PT_NOMEM;
	*items = p;
	*cap = new_cap;
	return PT_OK;
}

/* Append a forward-path (copied).  PT_OK or PT_NOMEM. */
int pt_message_add_rcpt(struct pt_message *m, const char *s, size_t n)
{
	char *p;

	if (message_grow((void **)&m->rcpts, m->n_rcpts, &m->cap_rcpts, sizeof(char *)) != PT_OK)
		return PT_NOMEM;
	p = message_strndup(s, n);
	if (p == NULL)
		return PT_NOMEM;
	m->rcpts[m->n_rcpts++] = p;
	return PT_OK;
}

/* Set or replace meta `key` to the JSON text json (both copied).  PT_OK or PT_NOMEM. */
int pt_message_set_meta(struct pt_message *m, const char *key, const char *json)
{
	char *k, *v = strdup(json);

	if (v == NULL)
		return PT_NOMEM;
	for (size_t i = 0; i < m->n_meta; i++) {
		if (strcmp(m->meta[i].key, key) == 0) {
			free(m->meta[i].json);
			m->meta[i].json = v;
			return PT_OK;
		}
	}
	k = strdup(key);
	if (k == NULL ||
	    message_grow((void **)&m->meta, m->n_meta, &m->cap_meta, sizeof(*m->meta)) != PT_OK) {
		free(k);
		free(v);
		return PT_NOMEM;
	}
	m->meta[m->n_meta].key = k;
	m->meta[m->n_meta].json = v;
	m->n_meta++;
	return PT_OK;
}

/* The JSON text of meta `key` (not copied), or NULL. */
const char *pt_message_get_meta(const struct pt_message *m, const char *key)
{
	for (size_t i = 0; i < m->n_meta; i++)
		if (strcmp(m->meta[i].key, key) == 0)
			return m->meta[i].json;
	return NULL;
}

/* Set header_end to the start of the blank line ending the headers (see top). */
void pt_message_scan_headers(struct pt_message *m)
{
	const char *d = m->data.data;
	size_t len = m->data.len;
	const char *p;

	if (len >= 2 && d[0] == '\r' && d[1] == '\n') {
		m->header_end = 0;
		return;
	}
	p = len >= 4 ? memmem(d, len, "\r\n\r\n", 4) : NULL;
	m->header_end = p ? (size_t)(p - d) + 2 : len;
}

/* Append "name: value\r\n" to b.  PT_OK or PT_NOMEM (b unchanged). */
static int message_format_header(struct pt_buf *b, const char *name, const char *value)
{
	size_t name_len = strlen(name), value_len = strlen(value);

	/* Reserve once so the appends below cannot fail halfway. */

	if (pt_buf_reserve(b, name_len + value_len + 4) != PT_OK)
		return PT_NOMEM;
	pt_buf_append(b, name, name_len);
	pt_buf_append(b, ": ", 2);
	pt_buf_append(b, value, value_len);
	pt_buf_append(b, "\r\n", 2);
	return PT_OK;
}

/*
 * Add "name: value\r\n" above every existing header, including lines
 * prepended before (so the newest Received: is on top, RFC 5321 4.4).
 * PT_OK or PT_NOMEM.
 */
int pt_message_prepend_header(struct pt_message *m, const char *name, const char *value)
{
	struct pt_buf line = PT_BUF_INIT;
	int rc = PT_NOMEM;

	if (message_format_header(&line, name, value) != PT_OK)
		goto out;
	if (pt_buf_reserve(&m->prefix, line.len) != PT_OK)
		goto out;
	/* The prefix holds a handful of lines; shifting them is cheaper than a list. */
	memmove(m->prefix.data + line.len, m->prefix.data, m->prefix.len);
	memcpy(m->prefix.data, line.data, line.len);
	m->prefix.len += line.len;
	rc = PT_OK;
out:
	pt_buf_free(&line);
	return rc;
}

/* Add "name: value\r\n" below every existing header.  PT_OK or PT_NOMEM. */
int pt_message_append_header(struct pt_message *m, const char *name, const char *value)
{
	return message_format_header(&m->appended, name, value);
}

/* Offset just past the line end (LF) of the line starting at `at`, or n. */
static size_t message_next_line(const char *s, size_t n, size_t at)
{
	const char *lf = memchr(s + at, '\n', n - at);

	return lf ? (size_t)(lf - s) + 1 : n;
}

/*
 * If the line at s[at] is field `name` (RFC 5322 3.6.8; WSP before the colon
 * is tolerated as in 4.5), return the offset just after the colon, else 0.
 */
static size_t message_match_name(const char *s, size_t n, size_t at, const char *name,
				 size_t name_len)
{
	size_t i;

	if (n - at <= name_len || strncasecmp(s + at, name, name_len) != 0)
		return 0;
	i = at + name_len;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return i < n && s[i] == ':' ? i + 1 : 0;
}

/*
 * Copy the field body starting at s[from] into a new string: continuation
 * lines are joined by dropping their CRLF (RFC 5322 2.2.3), leading
 * whitespace is skipped, the final line end is not included.
 */
static char *message_unfold(const char *s, size_t n, size_t from)
{
	struct pt_buf out = PT_BUF_INIT;
	size_t i = from;

	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	for (;;) {
		size_t next = message_next_line(s, n, i);
		size_t end = next;

		if (end > i && s[end - 1] == '\n')
			end--;
		if (end > i && s[end - 1] == '\r')
			end--;
		if (pt_buf_append(&out, s + i, end - i) != PT_OK) {
			pt_buf_free(&out);
			return NULL;
		}
		if (next >= n || (s[next] != ' ' && s[next] != '\t'))
			break;
		i = next;
	}
	if (out.data == NULL)
		return strdup("");
	pt_buf_cstr(&out);
	return out.data;
}

/* Search one header part s[0, n) for `name`; a new string or NULL. */
static char *message_find_in(const char *s, size_t n, const char *name, bool *found)
{
	size_t name_len = strlen(name);

	for (size_t at = 0; at < n; at = message_next_line(s, n, at)) {
		size_t colon;

		/* A line starting with WSP continues the previous field. */
		if (s[at] == ' ' || s[at] == '\t')
			continue;
		colon = message_match_name(s, n, at, name, name_len);
		if (colon != 0) {
			*found = true;
			return message_unfold(s, n, colon);
		}
	}
	return NULL;
}

/*
 * Remove every field named `name` (with its continuation lines) from the
 * header part s[0, n), moving the rest down.  Returns the bytes removed.
 */
static size_t message_remove_in(char *s, size_t n, const char *name)
{
	size_t name_len = strlen(name), at = 0, w = 0;

	while (at < n) {
		size_t end = message_next_line(s, n, at);
		bool drop = s[at] != ' ' && s[at] != '\t' &&
			    message_match_name(s, n, at, name, name_len) != 0;

		while (end < n && (s[end] == ' ' || s[end] == '\t'))
			end = message_next_line(s, n, end);
		if (!drop) {
			memmove(s + w, s + at, end - at);
			w += end - at;
		}
		at = end;
	}
	return n - w;
}

void pt_message_remove_header(struct pt_message *m, const char *name)
{
	size_t header_end = PT_MIN(m->header_end, m->data.len), gone;

	if (name[0] == '\0')
		return;
	m->prefix.len -= message_remove_in(m->prefix.data, m->prefix.len, name);
	m->appended.len -= message_remove_in(m->appended.data, m->appended.len, name);
	gone = message_remove_in(m->data.data, header_end, name);
	if (gone == 0)
		return;
	memmove(m->data.data + header_end - gone, m->data.data + header_end,
		m->data.len - header_end);
	m->data.len -= gone;
	m->header_end = header_end - gone;
}

/*
 * The first field named `name` (case-insensitive) in prefix, data headers,
 * then appended: its unfolded value without leading whitespace or the final
 * CRLF, malloc'd (caller frees).  NULL when absent or out of memory.
 */
char *pt_message_header_value(const struct pt_message *m, const char *name)
{
	size_t header_end = PT_MIN(m->header_end, m->data.len);
	bool found = false;
	char *v;

	if (name[0] == '\0')
		return NULL;
	v = message_find_in(m->prefix.data, m->prefix.len, name, &found);
	if (!found)
		v = message_find_in(m->data.data, header_end, name, &found);
	if (!found)
		v = message_find_in(m->appended.data, m->appended.len, name, &found);
	return v;
}

/* Bytes in the stored form: prefix + data + appended. */
size_t pt_message_size(const struct pt_message *m)
{
	return m->prefix.len + m->data.len + m->appended.len;
}

/* Add iov[n] = p[0, len) unless empty; returns the new count. */
static int message_iov_add(struct iovec *iov, int n, const char *p, size_t len)
{
	if (len == 0)
		return n;
	iov[n].iov_base = (void *)p;
	iov[n].iov_len = len;
	return n + 1;
}

/* The stored form as up to 4 iovecs pointing into m (see top); returns the count. */
int pt_message_iov(const struct pt_message *m, struct iovec iov[4])
{
	size_t header_end = PT_MIN(m->header_end, m->data.len);
	int n = 0;

	n = message_iov_add(iov, n, m->prefix.data, m->prefix.len);
	n = message_iov_add(iov, n, m->data.data, header_end);
	n = message_iov_add(iov, n, m->appended.data, m->appended.len);
	if (header_end < m->data.len)
		n = message_iov_add(iov, n, m->data.data + header_end, m->data.len - header_end);
	return n;
}

/*
 * Header capture for log records (configure_local_logs{headers}).  A
 * pattern names a field case-insensitively; a final '*' matches any name
 * with that prefix ("X-*"), as KumoMTA's logger does.
 */
bool pt_header_name_match(const char *pattern, const char *name, size_t name_len)
{
	size_t n = strlen(pattern);

	if (n > 0 && pattern[n - 1] == '*')
		return name_len >= n - 1 && strncasecmp(pattern, name, n - 1) == 0;
	return n == name_len && strncasecmp(pattern, name, n) == 0;
}

/* A field chosen for capture: its header part, name and value offsets. */
struct message_field {
	const char *s;
	size_t n;
	size_t name_len; /* the name is s[at, at + name_len) */
	size_t at;
	size_t value; /* just after the colon */
	size_t order; /* position in the stored header block */
};

/* If s[at] starts a field (RFC 5322 3.6.8 name, WSP tolerated before the
 * colon), set *name_len and return the offset after the colon, else 0. */
static size_t message_field_name(const char *s, size_t n, size_t at, size_t *name_len)
{
	size_t i = at;

	while (i < n && s[i] > ' ' && s[i] <= '~' && s[i] != ':')
		i++;
	*name_len = i - at;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	return *name_len > 0 && i < n && s[i] == ':' ? i + 1 : 0;
}

/* Fields of part s[0, n) matching a pattern, appended to *fields. */
static int message_collect(const char *s, size_t n, char *const *patterns, size_t n_patterns,
			   struct message_field **fields, size_t *n_fields, size_t *order)
{
	for (size_t at = 0; at < n; at = message_next_line(s, n, at)) {
		size_t name_len, value = message_field_name(s, n, at, &name_len);
		bool want = false;
		struct message_field *grown;

		(*order)++;
		for (size_t i = 0; value != 0 && i < n_patterns && !want; i++)
			want = pt_header_name_match(patterns[i], s + at, name_len);
		if (!want)
			continue;
		if ((grown = realloc(*fields, (*n_fields + 1) * sizeof(**fields))) == NULL)
			return PT_NOMEM;
		*fields = grown;
		grown[(*n_fields)++] = (struct message_field){s, n, name_len, at, value, *order};
	}
	return PT_OK;
}

static int message_field_name_cmp(const struct message_field *a, const struct message_field *b)
{
	int c = strncasecmp(a->s + a->at, b->s + b->at, PT_MIN(a->name_len, b->name_len));

	if (c != 0 || a->name_len == b->name_len)
		return c;
	return a->name_len < b->name_len ? -1 : 1;
}

/* By name (case-insensitive), then stored order. */
static int message_field_cmp(const void *pa, const void *pb)
{
	const struct message_field *a = pa, *b = pb;
	int c = message_field_name_cmp(a, b);

	return c != 0 ? c : a->order < b->order ? -1 : 1;
}

/* Write the value of fields f[0, k) (one name): a string, or an array of
 * them in stored order when the field occurs more than once. */
static int message_write_values(const struct message_field *f, size_t k, struct pt_json *j)
{
	int rc = PT_OK;

	pt_json_keyn(j, f[0].s + f[0].at, f[0].name_len);
	if (k > 1)
		pt_json_arr_begin(j);
	for (size_t i = 0; i < k; i++) {
		char *v = message_unfold(f[i].s, f[i].n, f[i].value);

		if (v == NULL)
			rc = PT_NOMEM;
		pt_json_str(j, v ? v : "");
		free(v);
	}
	if (k > 1)
		pt_json_arr_end(j);
	return rc;
}

/*
 * The fields of m's header block whose names match one of patterns, as a
 * JSON object written to j: each name once (spelt as in its first
 * occurrence), its value unfolded (RFC 5322 2.2.3) and otherwise raw, or
 * an array of values when the field occurs several times.  Sorting the
 * matches makes this O(k log k) in the k matching fields.  PT_OK or
 * PT_NOMEM (the object is then still closed, possibly short).
 */
int pt_message_capture_headers(const struct pt_message *m, char *const *patterns, size_t n_patterns,
			       struct pt_json *j)
{
	size_t header_end = PT_MIN(m->header_end, m->data.len), n = 0, order = 0;
	struct message_field *f = NULL;
	int rc;

	rc = message_collect(m->prefix.data, m->prefix.len, patterns, n_patterns, &f, &n, &order);
	if (rc == PT_OK)
		rc =
		    message_collect(m->data.data, header_end, patterns, n_patterns, &f, &n, &order);
	if (rc == PT_OK)
		rc = message_collect(m->appended.data, m->appended.len, patterns, n_patterns, &f,
				     &n, &order);
	if (n > 1)
		qsort(f, n, sizeof(*f), message_field_cmp);
	pt_json_obj_begin(j);
	for (size_t i = 0, k; i < n; i += k) {
		for (k = 1; i + k < n && message_field_name_cmp(&f[i], &f[i + k]) == 0; k++)
			;
		if (message_write_values(f + i, k, j) != PT_OK)
			rc = PT_NOMEM;
	}
	pt_json_obj_end(j);
	free(f);
	return rc;
}
