/*
 * http_client.h -- the outbound HTTP/1.1 exchange (RFC 9112) as a pure
 * state machine, the HTTP sibling of smtp_client.h: bytes in, request bytes
 * and events out.  It never calls read, write, connect or the ring; the
 * shard (shard/shard_out_http.c) glues it to a socket.
 *
 * The shard drives one connection as:
 *
 *   connect (shard, with its own connect timeout)
 *   c = http_client_new(&cfg)                    READY at once (no banner)
 *   loop:
 *     http_client_send(c, &req)                  in READY only
 *     http_client_feed(c, bytes, n)              from the peer
 *     while ((ev = http_client_next_event(c)) != HTTP_CLIENT_EV_NONE) ...
 *     send http_client_output(c) (consume what was sent)
 *     arm a timer for http_client_timeout_ms(c) (0: none)
 *
 * Events:
 *   READY   a request may be sent (at once after new, and after a response
 *           that keeps the connection alive).
 *   DONE    the request sent has its outcome: http_client_response() holds
 *           the status (200-599; a status outside 100-599 is malformed),
 *           the reason and the first HTTP_CLIENT_BODY_KEEP octets of
 *           the body, or status 0 and a reason when no whole response came
 *           (timeout, connection lost, malformed response).
 *   CLOSED  the connection is done with: the peer said Connection: close
 *           (or HTTP/1.0 without keep-alive, or a body read to EOF), the
 *           peer closed or spoke while no request was out, a failure, or
 *           http_client_quit().  The shard closes the socket.
 *
 * Parsing is libhttp-parser's (HTTP_RESPONSE): status line, fields,
 * Content-Length, chunked (decoded) and close-delimited bodies, resumable
 * at any byte.  1xx interim responses are skipped.  Bytes after a response
 * are a protocol error (one request at a time, so the peer has nothing to
 * answer): the connection closes.
 */
#ifndef PT_HTTP_CLIENT_H
#define PT_HTTP_CLIENT_H

#include "core/buf.h"

#include <stdint.h>
#include <sys/uio.h>

#define HTTP_CLIENT_BODY_KEEP 512 /* octets of a response body kept for the log */

struct http_client;

struct http_client_config {
	uint64_t timeout_ms; /* a request, from send to its whole response; 0: 60 s */
};

struct http_client_header {
	const char *name, *value;
};

/* One request; everything is copied into the output by http_client_send. */
struct http_client_request {
	const char *method;			  /* "POST" */
	const char *host;			  /* the Host field: "host" or "host:port" */
	const char *path;			  /* origin form: "/hook?x=1" */
	const char *content_type;		  /* or NULL */
	const struct http_client_header *headers; /* sent in this order, after the others */
	size_t n_headers;
	const struct iovec *body;
	int n_body;
	uint64_t timeout_ms; /* this request's; 0: the config's */
};

struct http_client_response {
	int status;	  /* 200-599; 0: no whole response (reason says why) */
	char reason[256]; /* the status line's reason phrase, or the local failure */
	char body[HTTP_CLIENT_BODY_KEEP + 1]; /* first octets, NUL-terminated */
	size_t body_len;		      /* kept (<= HTTP_CLIENT_BODY_KEEP) */
	bool body_cut;			      /* the body was longer */
	/* status 0 because the peer closed before sending a byte: on a reused
	 * connection, the server most likely closed it as idle while the
	 * request was on its way, and a new connection may resend at once. */
	bool unanswered;
};

enum http_client_event {
	HTTP_CLIENT_EV_NONE = 0,
	HTTP_CLIENT_EV_READY,
	HTTP_CLIENT_EV_DONE,
	HTTP_CLIENT_EV_CLOSED,
};

/* A session READY to send; cfg is copied.  NULL on allocation failure. */
struct http_client *http_client_new(const struct http_client_config *cfg);
void http_client_free(struct http_client *c);

/*
 * Queue the request's bytes: the request line, Host, Content-Type (when
 * given), Content-Length, the headers, a blank line and the body.  PT_OK;
 * PT_ERROR when not READY or a method, path, name or value cannot go on
 * the wire (empty, CR, LF, NUL, or a space in the method/path/name);
 * PT_NOMEM (nothing queued, still READY).
 */
int http_client_send(struct http_client *c, const struct http_client_request *req);
/* Bytes from the peer.  PT_OK, or PT_NOMEM. */
int http_client_feed(struct http_client *c, const void *data, size_t len);
/* The peer closed the connection (EOF or reset). */
void http_client_eof(struct http_client *c);
/* The request's timer expired. */
void http_client_timeout(struct http_client *c);
/* Milliseconds the request in flight may still take; 0 when none is out. */
uint64_t http_client_timeout_ms(const struct http_client *c);
/* End the connection (CLOSED follows; nothing is sent: HTTP has no QUIT). */
void http_client_quit(struct http_client *c);

enum http_client_event http_client_next_event(struct http_client *c);
/* Bytes to send; the caller consumes what it sent. */
struct pt_buf *http_client_output(struct http_client *c);
/* After DONE, until the next send. */
const struct http_client_response *http_client_response(const struct http_client *c);
/* The state's name, for traces. */
const char *http_client_strstate(const struct http_client *c);

#endif
