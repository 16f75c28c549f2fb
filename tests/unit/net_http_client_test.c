/*
 * net_http_client_test.c -- the outbound HTTP/1.1 exchange, without sockets.
 *
 * The request's bytes are compared exactly; responses are fed whole and
 * cut at every byte (the parser is resumable, so where a read ends must
 * never change the outcome).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "net/http_client.h"

static struct http_client *fx_new(void)
{
	struct http_client_config cfg = {.timeout_ms = 5000};
	struct http_client *c = http_client_new(&cfg);

	cr_assert_not_null(c);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_READY);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_NONE);
	return c;
}

static void fx_send(struct http_client *c, const char *body)
{
	struct iovec iov = {(void *)body, strlen(body)};
	struct http_client_request r = {
	    .method = "POST", .host = "127.0.0.1:8080", .path = "/hook", .body = &iov, .n_body = 1};

	cr_assert_eq(http_client_send(c, &r), PT_OK);
	http_client_output(c)->len = 0;
}

Test(http_client, request_bytes_exact)
{
	struct http_client *c = fx_new();
	struct http_client_header h[] = {{"X-Key", "secret"}, {"X-Two", "a b"}};
	struct iovec iov[] = {{"hello ", 6}, {"world", 5}};
	struct http_client_request r = {.method = "POST",
					.host = "hooks.example:8080",
					.path = "/in?x=1",
					.content_type = "application/json",
					.headers = h,
					.n_headers = 2,
					.body = iov,
					.n_body = 2};
	struct pt_buf *o;

	cr_assert_eq(http_client_send(c, &r), PT_OK);
	o = http_client_output(c);
	cr_assert_str_eq(pt_buf_cstr(o), "POST /in?x=1 HTTP/1.1\r\n"
					 "Host: hooks.example:8080\r\n"
					 "Content-Type: application/json\r\n"
					 "Content-Length: 11\r\n"
					 "X-Key: secret\r\n"
					 "X-Two: a b\r\n"
					 "\r\n"
					 "hello world");
	cr_assert_eq(http_client_timeout_ms(c), 5000);
	http_client_free(c);
}

Test(http_client, refuses_what_cannot_go_on_the_wire)
{
	struct http_client *c = fx_new();
	struct http_client_header bad_value[] = {{"X-A", "v\r\nX-Injected: 1"}};
	struct http_client_header bad_name[] = {{"X A", "v"}};
	struct http_client_request r = {.method = "POST", .host = "h", .path = "/"};

	r.headers = bad_value;
	r.n_headers = 1;
	cr_assert_eq(http_client_send(c, &r), PT_ERROR);
	r.headers = bad_name;
	cr_assert_eq(http_client_send(c, &r), PT_ERROR);
	r.n_headers = 0;
	r.path = "/a b";
	cr_assert_eq(http_client_send(c, &r), PT_ERROR);
	cr_assert_eq(http_client_output(c)->len, 0);
	r.path = "/";
	cr_assert_eq(http_client_send(c, &r), PT_OK);
	/* Not READY any more: one request at a time. */
	cr_assert_eq(http_client_send(c, &r), PT_ERROR);
	http_client_free(c);
}

/* Feed resp cut at `cut` (0: whole); the events that follow. */
static void feed_split(struct http_client *c, const char *resp, size_t cut)
{
	size_t len = strlen(resp);

	if (cut == 0 || cut >= len) {
		http_client_feed(c, resp, len);
		return;
	}
	http_client_feed(c, resp, cut);
	http_client_feed(c, resp + cut, len - cut);
}

static void check_split_everywhere(const char *resp, int status, const char *reason,
				   const char *body, bool keep)
{
	for (size_t cut = 0; cut < strlen(resp); cut++) {
		struct http_client *c = fx_new();
		const struct http_client_response *r;

		fx_send(c, "x");
		feed_split(c, resp, cut);
		cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_DONE, "cut %zu", cut);
		r = http_client_response(c);
		cr_assert_eq(r->status, status, "cut %zu", cut);
		cr_assert_str_eq(r->reason, reason, "cut %zu", cut);
		cr_assert_str_eq(r->body, body, "cut %zu", cut);
		cr_assert_eq(http_client_next_event(c),
			     keep ? HTTP_CLIENT_EV_READY : HTTP_CLIENT_EV_CLOSED, "cut %zu", cut);
		cr_assert_eq(http_client_timeout_ms(c), 0);
		http_client_free(c);
	}
}

Test(http_client, content_length_split_at_every_byte)
{
	check_split_everywhere("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n"
			       "Retry-After: 1\r\n\r\nbusy",
			       503, "Service Unavailable", "busy", true);
}

Test(http_client, chunked_split_at_every_byte)
{
	check_split_everywhere("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			       "3\r\nabc\r\n5;ext=1\r\ndefgh\r\n0\r\nTrailer: x\r\n\r\n",
			       200, "OK", "abcdefgh", true);
}

Test(http_client, connection_close_ends_the_session)
{
	check_split_everywhere(
	    "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 200, "OK", "ok",
	    false);
	check_split_everywhere("HTTP/1.0 201 Created\r\nContent-Length: 0\r\n\r\n", 201, "Created",
			       "", false);
}

Test(http_client, interim_response_skipped)
{
	check_split_everywhere("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 204,
			       "No Content", "", true);
}

Test(http_client, body_to_eof)
{
	struct http_client *c = fx_new();
	const char *resp = "HTTP/1.1 200 OK\r\n\r\nall of it";

	fx_send(c, "x");
	http_client_feed(c, resp, strlen(resp));
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_NONE);
	http_client_eof(c);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_DONE);
	cr_assert_eq(http_client_response(c)->status, 200);
	cr_assert_str_eq(http_client_response(c)->body, "all of it");
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_CLOSED);
	http_client_free(c);
}

Test(http_client, long_body_kept_in_part)
{
	struct http_client *c = fx_new();
	char resp[2200];
	int n = snprintf(resp, sizeof(resp),
			 "HTTP/1.1 400 Bad Request\r\nContent-Length: 2000\r\n\r\n");

	memset(resp + n, 'b', 2000);
	fx_send(c, "x");
	http_client_feed(c, resp, (size_t)n + 2000);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_DONE);
	cr_assert_eq(http_client_response(c)->body_len, HTTP_CLIENT_BODY_KEEP);
	cr_assert(http_client_response(c)->body_cut);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_READY);
	http_client_free(c);
}

static void check_protocol_error(const char *resp)
{
	struct http_client *c = fx_new();
	const struct http_client_response *r;

	fx_send(c, "x");
	http_client_feed(c, resp, strlen(resp));
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_DONE, "%s", resp);
	r = http_client_response(c);
	cr_assert_eq(r->status, 0, "%s", resp);
	cr_assert(strstr(r->reason, "malformed HTTP response") != NULL, "%s", r->reason);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_CLOSED);
	http_client_free(c);
}

Test(http_client, bad_responses_are_protocol_errors)
{
	check_protocol_error("SMTP 220 hello\r\n\r\n");
	check_protocol_error("HTTP/1.1 2x0 OK\r\n\r\n");
	check_protocol_error("HTTP/1.0 2 OK\r\n\r\n"); /* found by tests/fuzz/http_client_fuzz */
	check_protocol_error("HTTP/1.1 600 Huh\r\nContent-Length: 0\r\n\r\n");
	check_protocol_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
	check_protocol_error("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
}

Test(http_client, bytes_after_the_response_close)
{
	struct http_client *c = fx_new();
	const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n";

	fx_send(c, "x");
	http_client_feed(c, resp, strlen(resp));
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_DONE);
	cr_assert_eq(http_client_response(c)->status, 200);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_CLOSED);
	http_client_free(c);
}

Test(http_client, eof_timeout_and_idle_bytes)
{
	struct http_client *c = fx_new();

	fx_send(c, "x");
	http_client_feed(c, "HTTP/1.1 200 OK\r\nContent-Le", 27);
	http_client_eof(c);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_DONE);
	cr_assert_eq(http_client_response(c)->status, 0);
	cr_assert_str_eq(http_client_response(c)->reason,
			 "connection lost before the whole response");
	cr_assert(!http_client_response(c)->unanswered);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_CLOSED);
	http_client_free(c);

	c = fx_new();
	fx_send(c, "x");
	http_client_eof(c);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_DONE);
	cr_assert_eq(http_client_response(c)->status, 0);
	cr_assert(http_client_response(c)->unanswered);
	cr_assert_str_eq(http_client_response(c)->reason,
			 "the connection was closed before any response");
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_CLOSED);
	http_client_free(c);

	c = fx_new();
	fx_send(c, "x");
	http_client_timeout(c);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_DONE);
	cr_assert_str_eq(http_client_response(c)->reason,
			 "timed out after 5000 ms waiting for the response");
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_CLOSED);
	http_client_free(c);

	c = fx_new();
	http_client_feed(c, "HTTP/1.1 200 OK\r\n", 17);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_CLOSED);
	http_client_free(c);

	c = fx_new();
	http_client_quit(c);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_CLOSED);
	cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_NONE);
	http_client_free(c);
}

Test(http_client, keep_alive_reuse)
{
	struct http_client *c = fx_new();
	const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";

	for (int i = 0; i < 3; i++) {
		fx_send(c, "x");
		http_client_feed(c, resp, strlen(resp));
		cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_DONE);
		cr_assert_eq(http_client_response(c)->status, 200);
		cr_assert_eq(http_client_next_event(c), HTTP_CLIENT_EV_READY);
	}
	http_client_free(c);
}
