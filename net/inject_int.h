/*
 * inject_int.h -- private to net/inject*.c: the parsed injection request
 * and the builder's entry point.  Never included from another folder.
 */
#ifndef PT_INJECT_INT_H
#define PT_INJECT_INT_H

#include "net/inject.h"
#include "net/template.h"

struct inject_mailbox {
	char *email; /* NULL: not given */
	char *name;  /* NULL: no display name */
};

struct inject_header {
	char *name;
	struct template *value;
};

struct inject_attachment {
	struct pt_buf data; /* decoded */
	char *content_type;
	char *file_name;  /* NULL: none */
	char *content_id; /* NULL: a regular attachment; else inline (multipart/related) */
};

struct inject_rcpt {
	struct inject_recipient pub; /* points into the fields below */
	char *email, *name, *metadata_json, *error;
	json_t *substitutions; /* object or NULL */
};

struct inject_request {
	char *sender;
	json_t *substitutions; /* object or NULL */
	struct inject_rcpt *rcpts;
	size_t n_rcpts;
	bool builder;
	struct template *raw; /* content as a whole message */
	/* The builder (content as an object). */
	struct template *subject, *text_body, *html_body;
	struct inject_mailbox from, reply_to;
	struct inject_header *headers;
	size_t n_headers;
	struct inject_attachment *attachments;
	size_t n_attachments;
};

/*
 * The builder's message for one recipient into out: header fields, then
 * the MIME body (text, html, or multipart/alternative; inline attachments
 * in multipart/related; others in multipart/mixed).  vars are the
 * recipient's template variables.  PT_OK, PT_ERROR (err), PT_NOMEM.
 */
int inject_mime_build(const struct inject_request *r, const struct inject_rcpt *rc,
		      const json_t *vars, const struct inject_env *env, struct pt_buf *out,
		      char *err, size_t err_len);
/* Append p[0, n) with every line end made CRLF (a bare CR or LF too). */
int inject_crlf(const char *p, size_t n, struct pt_buf *out);

#endif
