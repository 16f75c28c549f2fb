/*
 * http_client_fuzz.c -- libFuzzer entry point for the outbound HTTP/1.1
 * exchange (net/http_client.c): the input plays the server.
 *
 * Input layout: byte 0, bits 0-4: piece size - 1 (server bytes are fed in
 * pieces of 1..32); bit 5: end with EOF rather than a timeout.  The bytes
 * after it are what the server sends.  The session is driven as the shard
 * does: a request on every READY, up to three.
 *
 * Besides the sanitizers, the run aborts when a promise is broken: at DONE
 * the status is 0 (with a reason) or 100..999, the reason and the kept body
 * are NUL-terminated, body_len <= HTTP_CLIENT_BODY_KEEP; after CLOSED no
 * event follows; send() is refused unless READY was just raised; the
 * request written is the exact bytes http_client_send promises.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_client.h"

static void fuzz_fail(const char *what)
{
	fprintf(stderr, "http_client_fuzz: %s\n", what);
	abort();
}

struct fuzz {
	struct http_client *c;
	bool ready, closed;
	int n_sent;
};

static void fuzz_check_done(const struct http_client_response *r)
{
	if (r->status != 0 && (r->status < 200 || r->status > 599))
		fuzz_fail("status out of range");
	if (r->status == 0 && r->reason[0] == '\0')
		fuzz_fail("a failure without a reason");
	if (memchr(r->reason, '\0', sizeof(r->reason)) == NULL)
		fuzz_fail("reason not terminated");
	if (r->body_len > HTTP_CLIENT_BODY_KEEP || r->body[r->body_len] != '\0')
		fuzz_fail("kept body out of bounds");
}

static void fuzz_send(struct fuzz *f)
{
	static const char want[] = "POST /h HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx";
	struct iovec iov = {"x", 1};
	struct http_client_request r = {
	    .method = "POST", .host = "h", .path = "/h", .body = &iov, .n_body = 1};
	struct pt_buf *o;

	if (http_client_send(f->c, &r) != PT_OK)
		fuzz_fail("send refused after READY");
	o = http_client_output(f->c);
	if (o->len != sizeof(want) - 1 || memcmp(o->data, want, o->len) != 0)
		fuzz_fail("request bytes");
	o->len = 0;
	f->n_sent++;
}

static void fuzz_events(struct fuzz *f)
{
	enum http_client_event ev;

	while ((ev = http_client_next_event(f->c)) != HTTP_CLIENT_EV_NONE) {
		if (f->closed)
			fuzz_fail("an event after CLOSED");
		switch (ev) {
		case HTTP_CLIENT_EV_READY:
			if (f->n_sent < 3)
				fuzz_send(f);
			break;
		case HTTP_CLIENT_EV_DONE:
			fuzz_check_done(http_client_response(f->c));
			break;
		case HTTP_CLIENT_EV_CLOSED:
			f->closed = true;
			break;
		default:
			fuzz_fail("unknown event");
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_client_config cfg = {.timeout_ms = 1000};
	struct fuzz f = {0};
	size_t piece, pos = 1;

	if (size < 1)
		return 0;
	piece = (size_t)(data[0] & 0x1f) + 1;
	if ((f.c = http_client_new(&cfg)) == NULL)
		return 0;
	fuzz_events(&f);
	while (pos < size && !f.closed) {
		size_t n = size - pos < piece ? size - pos : piece;

		http_client_feed(f.c, data + pos, n);
		pos += n;
		fuzz_events(&f);
	}
	if (data[0] & 0x20)
		http_client_eof(f.c);
	else
		http_client_timeout(f.c);
	fuzz_events(&f);
	/* A request that is not allowed must be refused without output. */
	if (!f.closed) {
		struct http_client_request bad = {.method = "POST", .host = "h", .path = "/a b"};

		if (http_client_send(f.c, &bad) != PT_ERROR)
			fuzz_fail("a path with a space was accepted");
	}
	http_client_free(f.c);
	return 0;
}
