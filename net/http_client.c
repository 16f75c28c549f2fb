/*
 * http_client.c -- the outbound HTTP/1.1 exchange (RFC 9112) as a pure
 * state machine (see http_client.h for the contract).
 *
 * States, changed only by http_client_enter_state(), which traces them:
 *
 *   IDLE --send--> WAIT --whole response, keep-alive--> IDLE
 *     |              |
 *     +--------------+-- Connection: close, EOF, timeout, bad bytes --> CLOSED
 *
 * Events wait in a small queue (at most DONE then READY or CLOSED, plus
 * the READY of new), so the shard sees them in order after each call.
 *
 * Parsing.  libhttp-parser does the framing.  Its callbacks copy the reason
 * phrase and the first HTTP_CLIENT_BODY_KEEP octets of the body; the rest
 * is counted and dropped, so a large answer costs no memory.  Header fields
 * are not kept: the parser itself knows Content-Length, chunked and
 * Connection (http_should_keep_alive).  on_message_complete pauses the
 * parser so a second response in the same bytes is seen as what it is, a
 * protocol error.
 */
#include "net/http_client.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_CLIENT_TIMEOUT_MS 60000
#define HTTP_CLIENT_EVENTS     4

enum http_client_state {
	HTTP_CLIENT_IDLE,
	HTTP_CLIENT_WAIT,
	HTTP_CLIENT_CLOSED,
};

static const char *const http_client_state_names[] = {
    [HTTP_CLIENT_IDLE] = "IDLE",
    [HTTP_CLIENT_WAIT] = "WAIT",
    [HTTP_CLIENT_CLOSED] = "CLOSED",
};

struct http_client {
	struct http_client_config cfg;
	uint64_t timeout_ms; /* the request in flight's */
	enum http_client_state state;
	http_parser parser;
	http_parser_settings settings;
	bool complete; /* on_message_complete of a final (non-1xx) response */
	bool answered; /* a byte came since the request was sent */
	size_t reason_len;
	struct http_client_response resp;
	enum http_client_event events[HTTP_CLIENT_EVENTS];
	size_t n_events;
	struct pt_buf out;
};

static void http_client_enter_state(struct http_client *c, enum http_client_state st)
{
	pt_debug("http client: %s -> %s", http_client_state_names[c->state],
		 http_client_state_names[st]);
	c->state = st;
}

static void http_client_push(struct http_client *c, enum http_client_event ev)
{
	if (c->n_events < HTTP_CLIENT_EVENTS)
		c->events[c->n_events++] = ev;
}

/* No whole response: DONE with status 0 and why, then CLOSED. */
static void http_client_fail(struct http_client *c, const char *why)
{
	if (c->state == HTTP_CLIENT_CLOSED)
		return;
	if (c->state == HTTP_CLIENT_WAIT) {
		c->resp.status = 0;
		snprintf(c->resp.reason, sizeof(c->resp.reason), "%s", why);
		c->resp.body_len = 0;
		c->resp.body[0] = '\0';
		c->resp.body_cut = false;
		http_client_push(c, HTTP_CLIENT_EV_DONE);
	} else {
		pt_debug("http client: %s", why);
	}
	http_client_enter_state(c, HTTP_CLIENT_CLOSED);
	http_client_push(c, HTTP_CLIENT_EV_CLOSED);
}

/* ---- parser callbacks ---- */

static int on_message_begin(http_parser *p)
{
	struct http_client *c = p->data;

	c->reason_len = 0;
	c->resp.reason[0] = '\0';
	c->resp.body_len = 0;
	c->resp.body[0] = '\0';
	c->resp.body_cut = false;
	return 0;
}

static int on_status(http_parser *p, const char *at, size_t len)
{
	struct http_client *c = p->data;
	size_t room = sizeof(c->resp.reason) - 1 - c->reason_len;

	if (len > room)
		len = room;
	memcpy(c->resp.reason + c->reason_len, at, len);
	c->reason_len += len;
	c->resp.reason[c->reason_len] = '\0';
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_client *c = p->data;
	size_t room = HTTP_CLIENT_BODY_KEEP - c->resp.body_len;

	if (len > room) {
		len = room;
		c->resp.body_cut = true;
	}
	memcpy(c->resp.body + c->resp.body_len, at, len);
	c->resp.body_len += len;
	c->resp.body[c->resp.body_len] = '\0';
	return 0;
}

/* RFC 9110 15: a status code is three digits, 100 to 599 (libhttp-parser
 * takes any number up to 999). */
static int on_headers_complete(http_parser *p)
{
	return p->status_code >= 100 && p->status_code <= 599 ? 0 : -1;
}

static int on_message_complete(http_parser *p)
{
	struct http_client *c = p->data;

	/* RFC 9110 15.2: interim responses come before the final one. */
	if (p->status_code >= 100 && p->status_code < 200)
		return 0;
	c->resp.status = p->status_code;
	c->complete = true;
	http_parser_pause(p, 1);
	return 0;
}

/* ---- the session ---- */

struct http_client *http_client_new(const struct http_client_config *cfg)
{
	struct http_client *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->cfg = *cfg;
	if (c->cfg.timeout_ms == 0)
		c->cfg.timeout_ms = HTTP_CLIENT_TIMEOUT_MS;
	http_parser_settings_init(&c->settings);
	c->settings.on_message_begin = on_message_begin;
	c->settings.on_status = on_status;
	c->settings.on_headers_complete = on_headers_complete;
	c->settings.on_body = on_body;
	c->settings.on_message_complete = on_message_complete;
	c->state = HTTP_CLIENT_IDLE;
	http_client_push(c, HTTP_CLIENT_EV_READY);
	return c;
}

void http_client_free(struct http_client *c)
{
	if (c == NULL)
		return;
	pt_buf_free(&c->out);
	free(c);
}

/* A token or path that can go on the request line: no CTL, no space. */
static bool http_client_word_ok(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

/* A field value: no CR, LF or NUL (RFC 9110 5.5). */
static bool http_client_value_ok(const char *s)
{
	return s != NULL && strpbrk(s, "\r\n") == NULL;
}

static bool http_client_request_ok(const struct http_client_request *r)
{
	if (!http_client_word_ok(r->method) || !http_client_word_ok(r->path) ||
	    !http_client_word_ok(r->host) ||
	    (r->content_type && !http_client_value_ok(r->content_type)))
		return false;
	for (size_t i = 0; i < r->n_headers; i++)
		if (!http_client_word_ok(r->headers[i].name) || strchr(r->headers[i].name, ':') ||
		    !http_client_value_ok(r->headers[i].value))
			return false;
	return true;
}

static int http_client_write(struct pt_buf *b, const struct http_client_request *r)
{
	size_t len = 0;
	int rc;

	for (int i = 0; i < r->n_body; i++)
		len += r->body[i].iov_len;
	rc = pt_buf_printf(b, "%s %s HTTP/1.1\r\nHost: %s\r\n", r->method, r->path, r->host);
	if (rc == PT_OK && r->content_type)
		rc = pt_buf_printf(b, "Content-Type: %s\r\n", r->content_type);
	if (rc == PT_OK)
		rc = pt_buf_printf(b, "Content-Length: %zu\r\n", len);
	for (size_t i = 0; rc == PT_OK && i < r->n_headers; i++)
		rc = pt_buf_printf(b, "%s: %s\r\n", r->headers[i].name, r->headers[i].value);
	if (rc == PT_OK)
		rc = pt_buf_append(b, "\r\n", 2);
	for (int i = 0; rc == PT_OK && i < r->n_body; i++)
		rc = pt_buf_append(b, r->body[i].iov_base, r->body[i].iov_len);
	return rc;
}

int http_client_send(struct http_client *c, const struct http_client_request *req)
{
	size_t mark = c->out.len;

	if (c->state != HTTP_CLIENT_IDLE || !http_client_request_ok(req))
		return PT_ERROR;
	if (http_client_write(&c->out, req) != PT_OK) {
		c->out.len = mark;
		return PT_NOMEM;
	}
	http_parser_init(&c->parser, HTTP_RESPONSE);
	c->parser.data = c;
	c->complete = false;
	c->answered = false;
	c->timeout_ms = req->timeout_ms ? req->timeout_ms : c->cfg.timeout_ms;
	memset(&c->resp, 0, sizeof(c->resp));
	http_client_enter_state(c, HTTP_CLIENT_WAIT);
	return PT_OK;
}

/* The response is whole: DONE, then READY or CLOSED. */
static void http_client_complete(struct http_client *c, size_t left)
{
	bool keep = http_should_keep_alive(&c->parser) && left == 0;

	http_client_push(c, HTTP_CLIENT_EV_DONE);
	if (left > 0)
		pt_debug("http client: %zu octets after the response: closing", left);
	if (keep) {
		http_client_enter_state(c, HTTP_CLIENT_IDLE);
		http_client_push(c, HTTP_CLIENT_EV_READY);
		return;
	}
	http_client_enter_state(c, HTTP_CLIENT_CLOSED);
	http_client_push(c, HTTP_CLIENT_EV_CLOSED);
}

int http_client_feed(struct http_client *c, const void *data, size_t len)
{
	char why[160];
	size_t n;

	if (c->state == HTTP_CLIENT_CLOSED || len == 0)
		return PT_OK;
	if (c->state == HTTP_CLIENT_IDLE) {
		http_client_fail(c, "the peer sent bytes while no request was out");
		return PT_OK;
	}
	c->answered = true;
	n = http_parser_execute(&c->parser, &c->settings, data, len);
	if (c->complete) {
		http_client_complete(c, len - n);
		return PT_OK;
	}
	if (HTTP_PARSER_ERRNO(&c->parser) == HPE_CB_headers_complete) {
		snprintf(why, sizeof(why), "malformed HTTP response: status %u is not 100 to 599",
			 c->parser.status_code);
		http_client_fail(c, why);
	} else if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
		snprintf(why, sizeof(why), "malformed HTTP response: %s",
			 http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
		http_client_fail(c, why);
	}
	return PT_OK;
}

void http_client_eof(struct http_client *c)
{
	if (c->state == HTTP_CLIENT_WAIT) {
		/* A body delimited by the close ends here (RFC 9112 6.3 item 8). */
		http_parser_execute(&c->parser, &c->settings, NULL, 0);
		if (c->complete) {
			http_client_complete(c, 0);
			return;
		}
		if (!c->answered) {
			http_client_fail(c, "the connection was closed before any response");
			c->resp.unanswered = true;
			return;
		}
		http_client_fail(c, "connection lost before the whole response");
		return;
	}
	http_client_fail(c, "the peer closed the connection");
}

void http_client_timeout(struct http_client *c)
{
	char why[96];

	snprintf(why, sizeof(why), "timed out after %llu ms waiting for the response",
		 (unsigned long long)c->timeout_ms);
	http_client_fail(c, why);
}

uint64_t http_client_timeout_ms(const struct http_client *c)
{
	return c->state == HTTP_CLIENT_WAIT ? c->timeout_ms : 0;
}

void http_client_quit(struct http_client *c)
{
	if (c->state == HTTP_CLIENT_WAIT) {
		http_client_fail(c, "the connection was closed before the response");
		return;
	}
	if (c->state == HTTP_CLIENT_CLOSED)
		return;
	http_client_enter_state(c, HTTP_CLIENT_CLOSED);
	http_client_push(c, HTTP_CLIENT_EV_CLOSED);
}

enum http_client_event http_client_next_event(struct http_client *c)
{
	enum http_client_event ev;

	if (c->n_events == 0)
		return HTTP_CLIENT_EV_NONE;
	ev = c->events[0];
	memmove(c->events, c->events + 1, (c->n_events - 1) * sizeof(ev));
	c->n_events--;
	return ev;
}

struct pt_buf *http_client_output(struct http_client *c)
{
	return &c->out;
}

const struct http_client_response *http_client_response(const struct http_client *c)
{
	return &c->resp;
}

const char *http_client_strstate(const struct http_client *c)
{
	return http_client_state_names[c->state];
}
