/*
 * http_server_fuzz.c -- libFuzzer entry point for the HTTP/1.1 server
 * session (net/http_server.c over libhttp-parser).
 *
 * Input layout: byte 0 chooses how the rest is fed and answered,
 *
 *   bits 0-4   piece size - 1: the client bytes are fed in pieces of 1..32
 *   bit 5      call http_session_timeout() after the first piece
 *   bit 6      call http_session_shutdown() after the first piece
 *   bit 7      answer with an error body instead of "ok"
 *
 * and the bytes after it are what the client sends.  After every piece a
 * pending request is answered; HTTP_EV_CLOSE ends the run.
 *
 * Besides the sanitizers, the run aborts when a promise of the session is
 * broken: a request handed over has a method, a path starting with '/',
 * a body of at most max_body octets, at most HTTP_HEADERS_MAX fields with
 * names and values; the output always starts with a status line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_server.h"

#define FUZZ_MAX_BODY 300

static void fuzz_fail(const char *what)
{
	fprintf(stderr, "http_server_fuzz: %s\n", what);
	abort();
}

static void fuzz_check_request(const struct http_request *r)
{
	if (r->method == NULL || r->path == NULL || r->path[0] != '/')
		fuzz_fail("request without a method or an origin-form path");
	if (r->body.len > FUZZ_MAX_BODY)
		fuzz_fail("body past max_body");
	if (r->n_headers > HTTP_HEADERS_MAX)
		fuzz_fail("too many header fields");
	for (size_t i = 0; i < r->n_headers; i++)
		if (r->headers[i].name == NULL || r->headers[i].value == NULL)
			fuzz_fail("header field without a name or value");
}

/* Every answer starts with "HTTP/1.1 "; an interim 100 Continue too. */
static void fuzz_check_output(struct http_session *s)
{
	struct pt_buf *o = http_session_output(s);

	if (o->len > 0 && (o->len < 9 || memcmp(o->data, "HTTP/1.1 ", 9) != 0))
		fuzz_fail("output is not a status line");
	o->len = 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct http_server_config cfg = {.max_body = FUZZ_MAX_BODY, .max_header_bytes = 2048};
	struct http_session *s;
	size_t piece, off = 1;
	unsigned mode;

	if (size < 1)
		return 0;
	mode = data[0];
	piece = (mode & 31) + 1;
	if ((s = http_session_new(&cfg, "192.0.2.1")) == NULL)
		return 0;
	while (off < size && http_session_event(s) != HTTP_EV_CLOSE) {
		size_t n = size - off < piece ? size - off : piece;

		http_session_feed(s, (const char *)data + off, n);
		off += n;
		if (off == 1 + n && (mode & 32))
			http_session_timeout(s);
		if (off == 1 + n && (mode & 64))
			http_session_shutdown(s);
		fuzz_check_output(s);
		while (http_session_event(s) == HTTP_EV_REQUEST) {
			fuzz_check_request(http_session_request(s));
			if (mode & 128)
				http_session_respond_error(s, 400, "bad %s", "input");
			else
				http_session_respond(s, 200, NULL, "text/plain", "ok", 2);
			fuzz_check_output(s);
		}
	}
	http_session_free(s, "fuzz run done");
	return 0;
}
