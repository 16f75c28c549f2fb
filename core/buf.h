/*
 * buf.h -- a growable byte buffer.  Used for SMTP output, message bodies,
 * record encoding and JSON log lines.  Always keeps one spare byte so that
 * data[len] can be set to '\0' by pt_buf_cstr().
 */
#ifndef PT_BUF_H
#define PT_BUF_H

#include "core/pt.h"

struct pt_buf {
	char *data;
	size_t len;
	size_t cap;
};

#define PT_BUF_INIT { NULL, 0, 0 }

/* Make room for n more bytes.  PT_OK or PT_NOMEM. */
int pt_buf_reserve(struct pt_buf *b, size_t n);
/* Append bytes (copied). PT_OK or PT_NOMEM. */
int pt_buf_append(struct pt_buf *b, const void *p, size_t n);
int pt_buf_append_str(struct pt_buf *b, const char *s);
int pt_buf_printf(struct pt_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes (memmove). */
void pt_buf_consume(struct pt_buf *b, size_t n);
/* NUL-terminate (does not change len) and return data; never NULL. */
const char *pt_buf_cstr(struct pt_buf *b);
static inline void pt_buf_reset(struct pt_buf *b) { b->len = 0; }
/* Free the storage; the buffer is empty and reusable afterwards. */
void pt_buf_free(struct pt_buf *b);

#endif
