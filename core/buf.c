/*
 * buf.c -- a growable byte buffer.
 *
 * Storage grows geometrically (doubling, 64 bytes at least) so that a run of
 * small appends costs amortised O(1).  The buffer always keeps one byte
 * beyond `len` in reserve, so pt_buf_cstr() can NUL-terminate without ever
 * allocating: callers may use it on a hot path and it cannot fail.
 *
 * An empty buffer owns no memory (data == NULL); pt_buf_cstr() then returns
 * a static empty string rather than NULL.
 */
#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Make room for n more bytes plus the spare terminator byte.
 * Returns PT_OK, or PT_NOMEM when the size overflows or realloc fails (the
 * buffer is then unchanged).
 */
int pt_buf_reserve(struct pt_buf *b, size_t n)
{
	size_t need, cap;
	char *p;

	if (n > SIZE_MAX - b->len - 1)
		return PT_NOMEM;
	need = b->len + n + 1;
	if (need <= b->cap)
		return PT_OK;
	cap = b->cap ? b->cap : 64;
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			cap = need;
			break;
		}
		cap *= 2;
	}
	p = realloc(b->data, cap);
	if (p == NULL)
		return PT_NOMEM;
	b->data = p;
	b->cap = cap;
	return PT_OK;
}

/*
 * Append n bytes from p (copied).  PT_OK or PT_NOMEM.  p may point into b
 * itself (e.g. to repeat a line): its offset is kept across the realloc.
 */
int pt_buf_append(struct pt_buf *b, const void *p, size_t n)
{
	const char *src = p;
	bool inside;
	size_t off = 0;

	if (n == 0)
		return PT_OK;
	inside = b->data != NULL && src >= b->data && src < b->data + b->len;
	if (inside)
		off = (size_t)(src - b->data);
	if (pt_buf_reserve(b, n) != PT_OK)
		return PT_NOMEM;
	if (inside)
		src = b->data + off;
	memmove(b->data + b->len, src, n);
	b->len += n;
	return PT_OK;
}

/* Append a NUL-terminated string (without its NUL).  PT_OK or PT_NOMEM. */
int pt_buf_append_str(struct pt_buf *b, const char *s)
{
	return pt_buf_append(b, s, strlen(s));
}

/*
 * Append printf-formatted text.  PT_OK, PT_NOMEM, or PT_ERROR when the format
 * itself fails (vsnprintf < 0).  Tries in the existing spare room first, so
 * short formats usually take one vsnprintf call.
 */
int pt_buf_printf(struct pt_buf *b, const char *fmt, ...)
{
	va_list ap;
	size_t room;
	int n;

	room = b->cap > b->len ? b->cap - b->len : 0;
	va_start(ap, fmt);
	n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
	va_end(ap);
	if (n < 0)
		return PT_ERROR;
	if ((size_t)n < room) {
		b->len += (size_t)n;
		return PT_OK;
	}
	if (pt_buf_reserve(b, (size_t)n) != PT_OK)
		return PT_NOMEM;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return PT_OK;
}

/* Drop the first n bytes (all of them when n >= len). */
void pt_buf_consume(struct pt_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

/* NUL-terminate without changing len; never NULL, never allocates. */
const char *pt_buf_cstr(struct pt_buf *b)
{
	if (b->data == NULL)
		return "";
	/* Every path that sets len leaves cap >= len + 1 (see pt_buf_reserve). */
	b->data[b->len] = '\0';
	return b->data;
}

/* Free the storage; the buffer is empty and reusable. */
void pt_buf_free(struct pt_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}
