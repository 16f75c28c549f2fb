/*
 * http_server.h -- the HTTP/1.1 server session (RFC 9112) as a pure state
 * machine, like net/smtp_server.h: the shard feeds it the bytes it received
 * (plaintext: TLS is undone by the shard before), drains the bytes it
 * produced, and reacts to the one event it may raise:
 *
 *   HTTP_EV_REQUEST   a whole request (headers and body) has been read; the
 *                     shard routes it and answers, now or later, with
 *                     http_session_respond().  Bytes fed meanwhile (a
 *                     pipelined next request) are held, up to
 *                     HTTP_HOLD_MAX, and parsed after the answer.
 *   HTTP_EV_CLOSE     send what is in the output, then close (the client
 *                     asked for it, an error answer, a timeout, shutdown).
 *
 * Parsing is Debian's libhttp-parser (nodejs http-parser 2.9): resumable at
 * any byte, chunked bodies decoded, Content-Length and Transfer-Encoding
 * smuggling refused.  Limits are checked here, per request: the request
 * line and header block together (431), the URL (414), the number of
 * header fields (431), the body (413, checked against Content-Length
 * before any body byte arrives and again while a chunked body streams).
 * A request the parser refuses gets 400.  Every error answer has a JSON
 * body {"error": "..."} and closes the connection, since the rest of the
 * stream can no longer be trusted to start at a request.
 */
#ifndef PT_HTTP_SERVER_H
#define PT_HTTP_SERVER_H

#include "core/buf.h"

#define HTTP_HEADER_BYTES_MAX 32768 /* request line + header fields, default */
#define HTTP_URL_MAX	      8192  /* octets of the request-target */
#define HTTP_HEADERS_MAX      100   /* header fields per request */
#define HTTP_HOLD_MAX	      65536 /* pipelined bytes held while a request is answered */

/* Per-listener settings, read-only, shared by every session of the listener. */
struct http_server_config {
	uint64_t max_body;	 /* octets of a decoded body; 413 past it */
	size_t max_header_bytes; /* 0: HTTP_HEADER_BYTES_MAX */
};

enum http_event {
	HTTP_EV_NONE = 0,
	HTTP_EV_REQUEST,
	HTTP_EV_CLOSE,
};

struct http_header {
	char *name;  /* as sent (compare without case) */
	char *value; /* leading and trailing spaces removed */
};

/* A request, complete while HTTP_EV_REQUEST is pending.  Owned by the session. */
struct http_request {
	const char *method; /* "GET", "POST", ... */
	char *target;	    /* the request-target as sent */
	char *path;	    /* target up to '?' (not percent-decoded) */
	char *query;	    /* after '?', or NULL */
	struct http_header *headers;
	size_t n_headers;
	struct pt_buf body;	/* decoded (chunked framing removed) */
	unsigned version_minor; /* HTTP/1.<minor> */
	bool keep_alive;	/* the connection may carry another request */
};

struct http_session;

/* A new session.  config is not copied and must outlive it; peer_ip is
 * copied (for diagnostics).  NULL on allocation failure. */
struct http_session *http_session_new(const struct http_server_config *config, const char *peer_ip);
/* Free the session and everything it owns; logs reason at debug level. */
void http_session_free(struct http_session *s, const char *reason);

/* Process received bytes (copied as needed; data is not kept). */
void http_session_feed(struct http_session *s, const char *data, size_t len);
/* Bytes to send; the shard sends them and pt_buf_consume()s what went out. */
struct pt_buf *http_session_output(struct http_session *s);
/* The pending event (REQUEST stays until answered; CLOSE stays forever). */
enum http_event http_session_event(const struct http_session *s);
/* The request while HTTP_EV_REQUEST is pending, else NULL. */
const struct http_request *http_session_request(const struct http_session *s);
/* The first header field named name (without case), or NULL. */
const char *http_request_header(const struct http_request *r, const char *name);

/*
 * Answer the pending request: status line, Date, Content-Type (when
 * content_type is not NULL), Content-Length, Connection: close when the
 * session closes after it, extra (NULL, or header lines each ending in
 * CRLF, copied as given), then the body (not copied past the call).  Then
 * the next pipelined request is parsed, or HTTP_EV_CLOSE follows.
 */
void http_session_respond(struct http_session *s, int status, const char *extra,
			  const char *content_type, const char *body, size_t len);
/* http_session_respond with a JSON body {"error": "<text>"} (text escaped). */
void http_session_respond_error(struct http_session *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The inactivity deadline expired: between requests the session closes
 * silently; inside one it answers 408 and closes. */
void http_session_timeout(struct http_session *s);
/* Daemon is stopping: an idle session closes now; one whose request is
 * being read or answered closes after its answer. */
void http_session_shutdown(struct http_session *s);
/* True between requests (no byte of a next request read yet). */
bool http_session_idle(const struct http_session *s);

/* "OK", "Not Found", ... for a status code ("Unknown" for others). */
const char *http_status_text(int status);

#endif
