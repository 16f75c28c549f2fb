/*
 * inject.h -- KumoMTA's HTTP injection request (POST /api/inject/v1):
 * the JSON body read and checked, its templates compiled once, and one
 * RFC 5322 message rendered per recipient.  Pure: no I/O, no policy, no
 * spool (the shard's shard_inject.c does those).
 *
 * The request, in KumoMTA's names:
 *
 *   envelope_sender   "user@domain"
 *   recipients        [{email, name?, substitutions?, metadata?}], at least one
 *   substitutions     {name: any JSON value}, for every recipient
 *   content           a whole message (a template), or a builder:
 *                     {subject, from {email, name}, reply_to {email, name},
 *                      text_body, html_body, headers {name: value},
 *                      attachments [{data, base64, content_type, file_name,
 *                      content_id}]}
 *   template_dialect  "Jinja" (the default) or "Static" (no expansion)
 *   deferred_spool, deferred_generation   false only
 *
 * Templates (net/template.h) are the whole message, or in a builder the
 * subject, text_body, html_body (HTML-escaped values) and header values.
 * A recipient's variables are the global substitutions, then email, name
 * and to_header, then its own substitutions (KumoMTA's order: the later
 * wins).
 */
#ifndef PT_INJECT_H
#define PT_INJECT_H

#include <jansson.h>

#include "core/buf.h"

#define INJECT_MESSAGE_MAX (64u << 20) /* octets of one generated message */

struct inject_request;

struct inject_recipient {
	const char *email;
	const char *name; /* NULL when not given */
	/* The metadata object as compact JSON text (for the message's
	 * rcpt_meta), or NULL when absent or empty. */
	const char *metadata_json;
	/* Why this recipient can't be sent to (a bad address), or NULL. */
	const char *error;
};

/*
 * Read and check a request body.  PT_OK with *out (free with
 * inject_request_free), PT_ERROR with err naming the field and what is
 * wrong ("recipients[2].email must be a string"), PT_NOMEM.  A recipient
 * whose address is malformed does not fail the request: it carries an
 * error (KumoMTA reports it as a failed recipient).
 */
int inject_request_parse(const char *body, size_t len, struct inject_request **out, char *err,
			 size_t err_len);
void inject_request_free(struct inject_request *r);

const char *inject_request_sender(const struct inject_request *r);
size_t inject_request_count(const struct inject_request *r);
/* Recipient i (< count), owned by r. */
const struct inject_recipient *inject_request_recipient(const struct inject_request *r, size_t i);

/* What a generated message needs besides the request. */
struct inject_env {
	const char *id;	      /* the message id (Message-ID, MIME boundaries) */
	const char *hostname; /* Message-ID's right-hand side */
	uint64_t date_us;     /* Date: */
};

/*
 * Append recipient i's message (CRLF line ends) to out.  PT_OK, PT_ERROR
 * with err (a template error, a header value with a line break, a message
 * past INJECT_MESSAGE_MAX: the recipient fails, the request goes on), or
 * PT_NOMEM.
 */
int inject_render(const struct inject_request *r, size_t i, const struct inject_env *env,
		  struct pt_buf *out, char *err, size_t err_len);

/* ---- MIME helpers (inject_mime.c), exported for the unit tests ---------------- */

/* Base64 (RFC 4648) of p[0, n), lines of 76 characters ending in CRLF. */
int inject_base64_encode(const void *p, size_t n, struct pt_buf *out);
/* Strict base64: the alphabet, '=' padding only at the end, whitespace
 * ignored.  PT_OK, PT_ERROR (not base64) or PT_NOMEM. */
int inject_base64_decode(const char *p, size_t n, struct pt_buf *out);
/* Quoted-printable (RFC 2045 6.7) of CRLF text, lines at most 76 characters. */
int inject_qp_encode(const char *p, size_t n, struct pt_buf *out);
/* "Name: value" CRLF, value as an RFC 2047 encoded-word sequence when it
 * is not ASCII, folded at 78 columns.  PT_OK or PT_NOMEM. */
int inject_header_unstructured(struct pt_buf *out, const char *name, const char *value);
/* "Name: mailbox" CRLF: "email", or a display name (quoted, or RFC 2047
 * when not ASCII) and <email>.  PT_OK or PT_NOMEM. */
int inject_header_mailbox(struct pt_buf *out, const char *name, const char *display,
			  const char *email);

#endif
