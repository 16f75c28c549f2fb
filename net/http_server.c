/*
 * http_server.c -- the HTTP/1.1 server session (RFC 9112) as a pure state
 * machine: bytes in, response bytes and one pending event out.  It never
 * does I/O; the shard (shard/shard_http.c) glues it to the ring and TLS.
 *
 * States, changed only by http_enter_state(), which traces "old -> new":
 *
 *   READ --whole request--> REQUEST --http_session_respond()--> READ
 *     |                        |            (keep-alive: held bytes parsed)
 *     +--- error, timeout -----+--- Connection: close, shutdown ----> CLOSED
 *
 * Parsing.  libhttp-parser does the framing: request line, header fields,
 * Content-Length or chunked bodies (decoded), and refuses what RFC 9112
 * 6.3 says must be refused (both Content-Length and chunked, a bad chunk
 * size, an unknown transfer coding).  Its callbacks collect the request
 * into struct http_request, pieces as they come (a field may arrive in
 * several calls when the input is split), and check the limits as bytes
 * arrive, so a client can never make the session hold more than
 * max_header_bytes + max_body.  A limit or a check that fails records an
 * error answer and stops the parser (a non-zero callback return).
 *
 * Pipelining.  on_message_complete pauses the parser, so the bytes after a
 * request stay unparsed: they are kept in `hold` (bounded by HTTP_HOLD_MAX;
 * past it they are dropped and the answer closes the connection) and fed
 * again once the request is answered, so answers go out in request order
 * (RFC 9112 9.3.2) and a request is never parsed before its predecessor's
 * answer exists.
 *
 * Expect: 100-continue (RFC 9110 10.1.1) is answered "100 Continue" once
 * the headers passed every check, so a client that waits for it (curl does
 * for large bodies) is not held up; a body too large is answered 413 before
 * it is sent.
 */
#include "net/http_server.h"

#include "core/json.h"

#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum http_state {
	HTTP_STATE_READ,    /* reading a request (or waiting for one) */
	HTTP_STATE_REQUEST, /* HTTP_EV_REQUEST: waiting for http_session_respond */
	HTTP_STATE_CLOSED,  /* HTTP_EV_CLOSE: input ignored for ever */
};

static const char *const http_state_names[] = {
    [HTTP_STATE_READ] = "READ",
    [HTTP_STATE_REQUEST] = "REQUEST",
    [HTTP_STATE_CLOSED] = "CLOSED",
};

struct http_session {
	const struct http_server_config *config; /* not owned */
	char *peer_ip;
	enum http_state state;
	http_parser parser;
	struct http_request req;
	bool in_request;     /* a byte of the current request has been parsed */
	bool last_was_value; /* header callbacks: a value came last (a new field starts) */
	bool hold_overflow;  /* held input dropped: close after the answer */
	bool shutdown;	     /* the daemon stops: close after the current answer */
	size_t cap_headers;
	size_t header_bytes; /* request line and fields so far */
	/* An error answer decided inside a callback, sent once the parser stops. */
	int error_status;
	char error_text[256];
	struct pt_buf out;
	struct pt_buf hold;
};

/* ---- states, answers ----------------------------------------------------- */

static void http_enter_state(struct http_session *s, enum http_state new_state)
{
	pt_debug("http %s: %s -> %s", s->peer_ip, http_state_names[s->state],
		 http_state_names[new_state]);
	s->state = new_state;
}

const char *http_status_text(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 415:
		return "Unsupported Media Type";
	case 417:
		return "Expectation Failed";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

/* IMF-fixdate (RFC 9110 5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT". */
static void http_date(char out[40])
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
		 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Status line and header fields of an answer, then the body. */
static void http_write(struct http_session *s, int status, bool close, const char *extra,
		       const char *content_type, const char *body, size_t len)
{
	char date[40];
	int rc;

	http_date(date);
	rc = pt_buf_printf(&s->out, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status,
			   http_status_text(status), date);
	if (rc == PT_OK && content_type != NULL)
		rc = pt_buf_printf(&s->out, "Content-Type: %s\r\n", content_type);
	if (rc == PT_OK)
		rc = pt_buf_printf(&s->out, "Content-Length: %zu\r\n%s%s\r\n", len,
				   close ? "Connection: close\r\n" : "", extra ? extra : "");
	if (rc == PT_OK && len > 0)
		rc = pt_buf_append(&s->out, body, len);
	if (rc != PT_OK) {
		/* Nothing whole can reach the peer any more; end it rather than send half. */
		pt_error("http %s: out of memory for an answer", s->peer_ip);
		s->out.len = 0;
		http_enter_state(s, HTTP_STATE_CLOSED);
	}
}

/* A JSON error body {"error": text} into b. */
static void http_error_body(struct pt_buf *b, const char *text)
{
	struct pt_json j;

	pt_json_init(&j, b);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "error", text);
	pt_json_obj_end(&j);
}

/* An error answer that ends the connection. */
static void http_fail(struct http_session *s, int status, const char *text)
{
	struct pt_buf body = PT_BUF_INIT;

	http_error_body(&body, text);
	http_write(s, status, true, NULL, "application/json", body.data, body.len);
	pt_buf_free(&body);
	pt_debug("http %s: %d %s", s->peer_ip, status, text);
	http_enter_state(s, HTTP_STATE_CLOSED);
}

/* Record an error answer from inside a parser callback; returns the
 * non-zero value that stops the parser. */
static int __attribute__((format(printf, 3, 4)))
http_cb_fail(struct http_session *s, int status, const char *fmt, ...)
{
	va_list ap;

	if (s->error_status == 0) {
		s->error_status = status;
		va_start(ap, fmt);
		vsnprintf(s->error_text, sizeof(s->error_text), fmt, ap);
		va_end(ap);
	}
	return 1;
}

/* ---- the request ---------------------------------------------------------- */

static void http_request_clear(struct http_request *r)
{
	for (size_t i = 0; i < r->n_headers; i++) {
		free(r->headers[i].name);
		free(r->headers[i].value);
	}
	r->n_headers = 0;
	free(r->target);
	free(r->path);
	free(r->query);
	r->target = r->path = r->query = NULL;
	r->body.len = 0;
	r->method = NULL;
	r->keep_alive = false;
}

/* Append n bytes to a malloc'd NUL-terminated string.  PT_OK or PT_NOMEM. */
static int http_str_append(char **str, const char *p, size_t n)
{
	size_t old = *str ? strlen(*str) : 0;
	char *grown = realloc(*str, old + n + 1);

	if (grown == NULL)
		return PT_NOMEM;
	memcpy(grown + old, p, n);
	grown[old + n] = '\0';
	*str = grown;
	return PT_OK;
}

/* Count header octets against the limit (431). */
static int http_count_header(struct http_session *s, size_t n)
{
	size_t max =
	    s->config->max_header_bytes ? s->config->max_header_bytes : HTTP_HEADER_BYTES_MAX;

	s->header_bytes += n;
	if (s->header_bytes > max)
		return http_cb_fail(s, 431, "request header fields exceed %zu octets", max);
	return 0;
}

static int http_on_message_begin(http_parser *p)
{
	struct http_session *s = p->data;

	http_request_clear(&s->req);
	s->in_request = true;
	s->last_was_value = false;
	s->header_bytes = 0;
	return 0;
}

static int http_on_url(http_parser *p, const char *at, size_t n)
{
	struct http_session *s = p->data;
	size_t have = s->req.target ? strlen(s->req.target) : 0;

	if (have + n > HTTP_URL_MAX)
		return http_cb_fail(s, 414, "request-target exceeds %d octets", HTTP_URL_MAX);
	if (http_count_header(s, n) != 0)
		return 1;
	if (http_str_append(&s->req.target, at, n) != PT_OK)
		return http_cb_fail(s, 500, "out of memory");
	return 0;
}

static int http_on_header_field(http_parser *p, const char *at, size_t n)
{
	struct http_session *s = p->data;
	struct http_request *r = &s->req;

	if (http_count_header(s, n) != 0)
		return 1;
	if (r->n_headers == 0 || s->last_was_value) {
		/* A new field begins. */
		if (r->n_headers == HTTP_HEADERS_MAX)
			return http_cb_fail(s, 431, "more than %d header fields", HTTP_HEADERS_MAX);
		if (r->n_headers == s->cap_headers) {
			size_t cap = s->cap_headers ? s->cap_headers * 2 : 16;
			struct http_header *h = realloc(r->headers, cap * sizeof(*h));

			if (h == NULL)
				return http_cb_fail(s, 500, "out of memory");
			r->headers = h;
			s->cap_headers = cap;
		}
		r->headers[r->n_headers++] = (struct http_header){NULL, NULL};
		s->last_was_value = false;
	}
	if (http_str_append(&r->headers[r->n_headers - 1].name, at, n) != PT_OK)
		return http_cb_fail(s, 500, "out of memory");
	return 0;
}

static int http_on_header_value(http_parser *p, const char *at, size_t n)
{
	struct http_session *s = p->data;
	struct http_header *h = &s->req.headers[s->req.n_headers - 1];

	if (http_count_header(s, n) != 0)
		return 1;
	s->last_was_value = true;
	if (http_str_append(&h->value, at, n) != PT_OK)
		return http_cb_fail(s, 500, "out of memory");
	return 0;
}

/* Values arrive without leading spaces; trailing ones are removed here
 * (RFC 9112 5: OWS around the value is not part of it).  A field whose
 * value was empty got no value callback. */
static int http_headers_finish(struct http_request *r)
{
	for (size_t i = 0; i < r->n_headers; i++) {
		struct http_header *h = &r->headers[i];
		size_t n;

		if (h->value == NULL && (h->value = strdup("")) == NULL)
			return PT_NOMEM;
		n = strlen(h->value);
		while (n > 0 && (h->value[n - 1] == ' ' || h->value[n - 1] == '\t'))
			h->value[--n] = '\0';
	}
	return PT_OK;
}

/* path and query from the target (origin-form; absolute-form keeps its path). */
static int http_split_target(struct http_request *r)
{
	struct http_parser_url u;
	const char *t = r->target ? r->target : "";
	size_t n = strlen(t);

	http_parser_url_init(&u);
	if (n == 0 || http_parser_parse_url(t, n, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH)) ||
	    t[u.field_data[UF_PATH].off] != '/')
		return PT_ERROR;
	r->path = strndup(t + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
	if (u.field_set & (1 << UF_QUERY))
		r->query = strndup(t + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
	if (r->path == NULL || ((u.field_set & (1 << UF_QUERY)) && r->query == NULL))
		return PT_NOMEM;
	return PT_OK;
}

static int http_on_headers_complete(http_parser *p)
{
	struct http_session *s = p->data;
	struct http_request *r = &s->req;
	const char *expect;
	int rc;

	if (http_headers_finish(r) != PT_OK)
		return http_cb_fail(s, 500, "out of memory");
	if (p->http_major != 1)
		return http_cb_fail(s, 505, "HTTP/%u.%u is not supported (HTTP/1.1 is)",
				    p->http_major, p->http_minor);
	r->method = http_method_str((enum http_method)p->method);
	r->version_minor = p->http_minor;
	rc = http_split_target(r);
	if (rc == PT_NOMEM)
		return http_cb_fail(s, 500, "out of memory");
	if (rc != PT_OK)
		return http_cb_fail(s, 400, "the request-target is not an origin-form path");
	/* RFC 9112 3.2: an HTTP/1.1 request without Host gets 400. */
	if (r->version_minor >= 1 && http_request_header(r, "Host") == NULL)
		return http_cb_fail(s, 400, "an HTTP/1.1 request needs a Host header field");
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > s->config->max_body)
		return http_cb_fail(s, 413, "request body of %llu octets exceeds the limit of %llu",
				    (unsigned long long)p->content_length,
				    (unsigned long long)s->config->max_body);
	expect = http_request_header(r, "Expect");
	if (expect != NULL) {
		if (strcasecmp(expect, "100-continue") != 0)
			return http_cb_fail(s, 417, "Expect: only 100-continue is supported");
		if (r->version_minor >= 1 &&
		    pt_buf_append_str(&s->out, "HTTP/1.1 100 Continue\r\n\r\n") != PT_OK)
			return http_cb_fail(s, 500, "out of memory");
	}
	return 0;
}

static int http_on_body(http_parser *p, const char *at, size_t n)
{
	struct http_session *s = p->data;
	struct pt_buf *b = &s->req.body;

	if (b->len + n > s->config->max_body)
		return http_cb_fail(s, 413, "request body exceeds the limit of %llu octets",
				    (unsigned long long)s->config->max_body);
	if (pt_buf_append(b, at, n) != PT_OK)
		return http_cb_fail(s, 500, "out of memory");
	return 0;
}

static int http_on_message_complete(http_parser *p)
{
	struct http_session *s = p->data;

	s->req.keep_alive = http_should_keep_alive(p) != 0;
	s->in_request = false;
	http_enter_state(s, HTTP_STATE_REQUEST);
	/* Stop here: the bytes after this request wait for its answer. */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings http_settings = {
    .on_message_begin = http_on_message_begin,
    .on_url = http_on_url,
    .on_header_field = http_on_header_field,
    .on_header_value = http_on_header_value,
    .on_headers_complete = http_on_headers_complete,
    .on_body = http_on_body,
    .on_message_complete = http_on_message_complete,
};

/* ---- input ------------------------------------------------------------------ */

static void http_hold(struct http_session *s, const char *data, size_t len)
{
	if (s->hold_overflow || len == 0)
		return;
	if (s->hold.len + len > HTTP_HOLD_MAX || pt_buf_append(&s->hold, data, len) != PT_OK) {
		pt_buf_free(&s->hold);
		s->hold_overflow = true;
	}
}

static void http_input(struct http_session *s, const char *data, size_t len)
{
	size_t done;
	enum http_errno err;

	if (s->state == HTTP_STATE_REQUEST) {
		http_hold(s, data, len);
		return;
	}
	if (s->state != HTTP_STATE_READ || len == 0)
		return;
	done = http_parser_execute(&s->parser, &http_settings, data, len);
	err = HTTP_PARSER_ERRNO(&s->parser);
	if (s->error_status != 0) {
		http_fail(s, s->error_status, s->error_text);
		return;
	}
	if (err == HPE_PAUSED) {
		/* A whole request; what follows it waits. */
		http_hold(s, data + done, len - done);
		return;
	}
	if (err != HPE_OK) {
		char text[160];

		snprintf(text, sizeof(text), "malformed request: %s", http_errno_description(err));
		http_fail(s, 400, text);
	}
}

/* ---- the public API ---------------------------------------------------------- */

struct http_session *http_session_new(const struct http_server_config *config, const char *peer_ip)
{
	struct http_session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->peer_ip = strdup(peer_ip ? peer_ip : "");
	if (s->peer_ip == NULL) {
		free(s);
		return NULL;
	}
	s->config = config;
	s->state = HTTP_STATE_READ;
	http_parser_init(&s->parser, HTTP_REQUEST);
	s->parser.data = s;
	return s;
}

void http_session_free(struct http_session *s, const char *reason)
{
	if (s == NULL)
		return;
	pt_debug("http %s: session ends in %s: %s", s->peer_ip, http_state_names[s->state],
		 reason ? reason : "(no reason)");
	http_request_clear(&s->req);
	free(s->req.headers);
	pt_buf_free(&s->req.body);
	pt_buf_free(&s->out);
	pt_buf_free(&s->hold);
	free(s->peer_ip);
	free(s);
}

void http_session_feed(struct http_session *s, const char *data, size_t len)
{
	http_input(s, data, len);
}

struct pt_buf *http_session_output(struct http_session *s)
{
	return &s->out;
}

enum http_event http_session_event(const struct http_session *s)
{
	switch (s->state) {
	case HTTP_STATE_REQUEST:
		return HTTP_EV_REQUEST;
	case HTTP_STATE_CLOSED:
		return HTTP_EV_CLOSE;
	default:
		return HTTP_EV_NONE;
	}
}

const struct http_request *http_session_request(const struct http_session *s)
{
	return s->state == HTTP_STATE_REQUEST ? &s->req : NULL;
}

const char *http_request_header(const struct http_request *r, const char *name)
{
	for (size_t i = 0; i < r->n_headers; i++)
		if (r->headers[i].name != NULL && strcasecmp(r->headers[i].name, name) == 0)
			return r->headers[i].value;
	return NULL;
}

void http_session_respond(struct http_session *s, int status, const char *extra,
			  const char *content_type, const char *body, size_t len)
{
	struct pt_buf held;
	bool close;

	if (s->state != HTTP_STATE_REQUEST) {
		pt_debug("http %s: respond in state %s ignored", s->peer_ip,
			 http_state_names[s->state]);
		return;
	}
	close = !s->req.keep_alive || s->hold_overflow || s->shutdown;
	http_write(s, status, close, extra, content_type, body, len);
	if (s->state == HTTP_STATE_CLOSED)
		return;
	http_request_clear(&s->req);
	if (close) {
		http_enter_state(s, HTTP_STATE_CLOSED);
		return;
	}
	http_enter_state(s, HTTP_STATE_READ);
	http_parser_pause(&s->parser, 0);
	/* Parse what was held; anything held anew goes to a fresh buffer. */
	held = s->hold;
	s->hold = (struct pt_buf)PT_BUF_INIT;
	http_input(s, held.data, held.len);
	pt_buf_free(&held);
}

void http_session_respond_error(struct http_session *s, int status, const char *fmt, ...)
{
	struct pt_buf body = PT_BUF_INIT;
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	http_error_body(&body, text);
	http_session_respond(s, status, NULL, "application/json", body.data, body.len);
	pt_buf_free(&body);
}

void http_session_timeout(struct http_session *s)
{
	if (s->state == HTTP_STATE_CLOSED)
		return;
	if (s->state == HTTP_STATE_READ && s->in_request) {
		http_fail(s, 408, "timed out waiting for the rest of the request");
		return;
	}
	/* Idle between requests (RFC 9112 9.5: a server may close an idle connection). */
	http_enter_state(s, HTTP_STATE_CLOSED);
}

void http_session_shutdown(struct http_session *s)
{
	if (s->state == HTTP_STATE_CLOSED)
		return;
	s->shutdown = true;
	if (s->state == HTTP_STATE_READ && !s->in_request)
		http_enter_state(s, HTTP_STATE_CLOSED);
}

bool http_session_idle(const struct http_session *s)
{
	return s->state == HTTP_STATE_READ && !s->in_request;
}
