/*
 * net_http_server_test.c -- the HTTP/1.1 server session, without sockets.
 *
 * Requests are fed whole, one byte at a time and cut at every position:
 * the parser is resumable, so where a read ends must never change the
 * request or the answer.  Answers are compared byte for byte with their
 * Date field blanked out (the only part that depends on the clock).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http_server.h"

struct fixture {
	struct http_server_config config;
	struct http_session *s;
	struct pt_buf out; /* everything the session wrote, Date blanked */
};

static void fx_init(struct fixture *f, uint64_t max_body)
{
	memset(f, 0, sizeof(*f));
	f->config.max_body = max_body;
	f->s = http_session_new(&f->config, "192.0.2.1");
	cr_assert_not_null(f->s);
}

/* Move the session's output to f->out, with "Date: ...\r\n" made "Date: X\r\n". */
static void fx_drain(struct fixture *f)
{
	struct pt_buf *o = http_session_output(f->s);
	const char *p = o->data, *end = o->data + o->len;

	while (p < end) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		size_t n = eol ? (size_t)(eol - p) + 2 : (size_t)(end - p);

		if (n > 6 && memcmp(p, "Date: ", 6) == 0)
			pt_buf_append_str(&f->out, "Date: X\r\n");
		else
			pt_buf_append(&f->out, p, n);
		p += n;
	}
	o->len = 0;
}

static void fx_feed(struct fixture *f, const char *data)
{
	http_session_feed(f->s, data, strlen(data));
	fx_drain(f);
}

static void fx_free(struct fixture *f)
{
	http_session_free(f->s, "test done");
	pt_buf_free(&f->out);
}

static void fx_respond(struct fixture *f, int status, const char *body)
{
	http_session_respond(f->s, status, NULL, "text/plain", body, strlen(body));
	fx_drain(f);
}

static void assert_out(struct fixture *f, const char *want)
{
	cr_assert_eq(f->out.len, strlen(want), "output:\n%.*s\nwant:\n%s", (int)f->out.len,
		     f->out.data, want);
	cr_assert(memcmp(f->out.data, want, f->out.len) == 0, "output:\n%.*s\nwant:\n%s",
		  (int)f->out.len, f->out.data, want);
	f->out.len = 0;
}

#define OK_HELLO                                                                                   \
	"HTTP/1.1 200 OK\r\nDate: X\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"      \
	"hello"

static const char POST[] = "POST /api/inject/v1?x=1 HTTP/1.1\r\n"
			   "Host: petrel.test\r\n"
			   "Content-Type: application/json\r\n"
			   "X-Folded:  spaced value  \r\n"
			   "Content-Length: 11\r\n"
			   "\r\n"
			   "{\"a\": true}";

static void check_post(const struct http_request *r)
{
	cr_assert_not_null(r);
	cr_assert_str_eq(r->method, "POST");
	cr_assert_str_eq(r->target, "/api/inject/v1?x=1");
	cr_assert_str_eq(r->path, "/api/inject/v1");
	cr_assert_str_eq(r->query, "x=1");
	cr_assert_eq(r->n_headers, 4);
	cr_assert_str_eq(http_request_header(r, "content-type"), "application/json");
	cr_assert_str_eq(http_request_header(r, "X-FOLDED"), "spaced value");
	cr_assert_null(http_request_header(r, "Authorization"));
	cr_assert_eq(r->body.len, 11);
	cr_assert(memcmp(r->body.data, "{\"a\": true}", 11) == 0);
	cr_assert_eq(r->version_minor, 1);
	cr_assert(r->keep_alive);
}

Test(http_server, request_whole)
{
	struct fixture f;

	fx_init(&f, 1000);
	cr_assert(http_session_idle(f.s));
	fx_feed(&f, POST);
	cr_assert_eq(http_session_event(f.s), HTTP_EV_REQUEST);
	check_post(http_session_request(f.s));
	fx_respond(&f, 200, "hello");
	assert_out(&f, OK_HELLO);
	cr_assert_eq(http_session_event(f.s), HTTP_EV_NONE);
	cr_assert_null(http_session_request(f.s));
	fx_free(&f);
}

Test(http_server, request_split_at_every_byte)
{
	size_t n = strlen(POST);

	for (size_t cut = 1; cut < n; cut++) {
		struct fixture f;

		fx_init(&f, 1000);
		http_session_feed(f.s, POST, cut);
		cr_assert_eq(http_session_event(f.s), HTTP_EV_NONE, "cut at %zu", cut);
		cr_assert(!http_session_idle(f.s) || cut == 0, "cut at %zu", cut);
		http_session_feed(f.s, POST + cut, n - cut);
		cr_assert_eq(http_session_event(f.s), HTTP_EV_REQUEST, "cut at %zu", cut);
		check_post(http_session_request(f.s));
		fx_drain(&f);
		fx_respond(&f, 200, "hello");
		assert_out(&f, OK_HELLO);
		fx_free(&f);
	}
}

Test(http_server, request_one_byte_at_a_time)
{
	struct fixture f;

	fx_init(&f, 1000);
	for (size_t i = 0; POST[i] != '\0'; i++)
		http_session_feed(f.s, POST + i, 1);
	check_post(http_session_request(f.s));
	fx_free(&f);
}

Test(http_server, pipelined_requests_answered_in_order)
{
	static const char two[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
				  "GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
				  "GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
	struct fixture f;

	fx_init(&f, 1000);
	fx_feed(&f, two);
	cr_assert_str_eq(http_session_request(f.s)->path, "/a");
	/* Input arriving meanwhile waits too. */
	fx_feed(&f, "");
	fx_respond(&f, 200, "hello");
	assert_out(&f, OK_HELLO);
	cr_assert_str_eq(http_session_request(f.s)->path, "/b");
	fx_respond(&f, 200, "hello");
	assert_out(&f, OK_HELLO);
	cr_assert_str_eq(http_session_request(f.s)->path, "/c");
	cr_assert(!http_session_request(f.s)->keep_alive);
	fx_respond(&f, 404, "no");
	assert_out(&f, "HTTP/1.1 404 Not Found\r\nDate: X\r\nContent-Type: text/plain\r\n"
		       "Content-Length: 2\r\nConnection: close\r\n\r\nno");
	cr_assert_eq(http_session_event(f.s), HTTP_EV_CLOSE);
	/* Closed: nothing more is read. */
	fx_feed(&f, "GET /d HTTP/1.1\r\nHost: h\r\n\r\n");
	cr_assert_eq(f.out.len, 0);
	fx_free(&f);
}

Test(http_server, pipelined_split_everywhere)
{
	static const char two[] = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
				  "GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
	size_t n = strlen(two);

	for (size_t cut = 1; cut < n; cut++) {
		struct fixture f;

		fx_init(&f, 1000);
		http_session_feed(f.s, two, cut);
		http_session_feed(f.s, two + cut, n - cut);
		cr_assert_str_eq(http_session_request(f.s)->path, "/a", "cut %zu", cut);
		cr_assert_eq(http_session_request(f.s)->body.len, 3);
		fx_drain(&f);
		fx_respond(&f, 200, "hello");
		cr_assert_str_eq(http_session_request(f.s)->path, "/b", "cut %zu", cut);
		cr_assert_eq(http_session_request(f.s)->body.len, 0);
		fx_free(&f);
	}
}

Test(http_server, chunked_body_decoded)
{
	static const char req[] =
	    "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: t\r\n\r\n";
	size_t n = strlen(req);

	for (size_t cut = 1; cut < n; cut++) {
		struct fixture f;
		const struct http_request *r;

		fx_init(&f, 1000);
		http_session_feed(f.s, req, cut);
		http_session_feed(f.s, req + cut, n - cut);
		r = http_session_request(f.s);
		cr_assert_not_null(r, "cut %zu", cut);
		cr_assert_eq(r->body.len, 12, "cut %zu", cut);
		cr_assert(memcmp(r->body.data, "hello, world", 12) == 0);
		fx_free(&f);
	}
}

static void assert_error(struct fixture *f, int status, const char *reason, const char *json)
{
	char want[1024];

	snprintf(want, sizeof(want),
		 "HTTP/1.1 %d %s\r\nDate: X\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		 status, reason, strlen(json), json);
	assert_out(f, want);
	cr_assert_eq(http_session_event(f->s), HTTP_EV_CLOSE);
}

Test(http_server, body_over_limit_by_length_is_413_before_the_body)
{
	struct fixture f;

	fx_init(&f, 10);
	fx_feed(&f, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n");
	assert_error(&f, 413, "Content Too Large",
		     "{\"error\":\"request body of 11 octets exceeds the limit of 10\"}");
	fx_free(&f);
}

Test(http_server, body_at_limit_is_taken)
{
	struct fixture f;

	fx_init(&f, 10);
	fx_feed(&f, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789");
	cr_assert_eq(http_session_request(f.s)->body.len, 10);
	fx_free(&f);
}

Test(http_server, chunked_body_over_limit_is_413)
{
	struct fixture f;

	fx_init(&f, 10);
	fx_feed(&f, "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
		    "6\r\n012345\r\n");
	cr_assert_eq(http_session_event(f.s), HTTP_EV_NONE);
	fx_feed(&f, "5\r\n01234\r\n");
	assert_error(&f, 413, "Content Too Large",
		     "{\"error\":\"request body exceeds the limit of 10 octets\"}");
	fx_free(&f);
}

Test(http_server, header_block_over_limit_is_431)
{
	struct fixture f;
	char big[600];

	fx_init(&f, 10);
	f.config.max_header_bytes = 512;
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	fx_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
	fx_feed(&f, big);
	assert_error(&f, 431, "Request Header Fields Too Large",
		     "{\"error\":\"request header fields exceed 512 octets\"}");
	fx_free(&f);
}

Test(http_server, too_many_header_fields_is_431)
{
	struct fixture f;
	char line[64];

	fx_init(&f, 10);
	fx_feed(&f, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < HTTP_HEADERS_MAX; i++) {
		snprintf(line, sizeof(line), "X-%d: v\r\n", i);
		fx_feed(&f, line);
	}
	cr_assert_eq(f.out.len, 0);
	fx_feed(&f, "Host: h\r\n");
	assert_error(&f, 431, "Request Header Fields Too Large",
		     "{\"error\":\"more than 100 header fields\"}");
	fx_free(&f);
}

Test(http_server, long_target_is_414)
{
	struct fixture f;
	char *url = malloc(HTTP_URL_MAX + 2);

	memset(url, 'a', HTTP_URL_MAX + 1);
	url[0] = '/';
	url[HTTP_URL_MAX + 1] = '\0';
	fx_init(&f, 10);
	fx_feed(&f, "GET ");
	fx_feed(&f, url);
	assert_error(&f, 414, "URI Too Long", "{\"error\":\"request-target exceeds 8192 octets\"}");
	free(url);
	fx_free(&f);
}

Test(http_server, garbage_is_400)
{
	struct fixture f;

	fx_init(&f, 10);
	fx_feed(&f, "HELO there\r\n\r\n");
	assert_error(&f, 400, "Bad Request",
		     "{\"error\":\"malformed request: invalid HTTP method\"}");
	fx_free(&f);
}

Test(http_server, content_length_and_chunked_together_is_400)
{
	struct fixture f;

	fx_init(&f, 100);
	fx_feed(&f, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
		    "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
	cr_assert_eq(http_session_event(f.s), HTTP_EV_CLOSE);
	cr_assert(memmem(f.out.data, f.out.len, "HTTP/1.1 400 Bad Request\r\n", 26) == f.out.data);
	fx_free(&f);
}

Test(http_server, target_not_a_path_is_400)
{
	static const char *const targets[] = {"*", "***/x", "http:x", "x/y"};

	for (size_t i = 0; i < PT_ARRAY_LEN(targets); i++) {
		struct fixture f;
		char req[128];

		fx_init(&f, 100);
		snprintf(req, sizeof(req), "OPTIONS %s HTTP/1.1\r\nHost: h\r\n\r\n", targets[i]);
		fx_feed(&f, req);
		cr_assert_eq(http_session_event(f.s), HTTP_EV_CLOSE, "%s", targets[i]);
		cr_assert(memmem(f.out.data, f.out.len, "HTTP/1.1 400 Bad Request\r\n", 26) ==
			      f.out.data,
			  "%s", targets[i]);
		fx_free(&f);
	}
}

Test(http_server, absolute_form_target_keeps_its_path)
{
	struct fixture f;

	fx_init(&f, 100);
	fx_feed(&f, "GET http://petrel.test:8000/api/x?y=1 HTTP/1.1\r\nHost: h\r\n\r\n");
	cr_assert_str_eq(http_session_request(f.s)->path, "/api/x");
	cr_assert_str_eq(http_session_request(f.s)->query, "y=1");
	fx_free(&f);
}

Test(http_server, http11_without_host_is_400)
{
	struct fixture f;

	fx_init(&f, 100);
	fx_feed(&f, "GET / HTTP/1.1\r\n\r\n");
	assert_error(&f, 400, "Bad Request",
		     "{\"error\":\"an HTTP/1.1 request needs a Host header field\"}");
	fx_free(&f);
}

Test(http_server, http10_closes_after_the_answer)
{
	struct fixture f;

	fx_init(&f, 100);
	fx_feed(&f, "GET / HTTP/1.0\r\n\r\n");
	cr_assert_eq(http_session_request(f.s)->version_minor, 0);
	cr_assert(!http_session_request(f.s)->keep_alive);
	fx_respond(&f, 200, "hello");
	cr_assert_eq(http_session_event(f.s), HTTP_EV_CLOSE);
	cr_assert_not_null(memmem(f.out.data, f.out.len, "Connection: close\r\n", 19));
	fx_free(&f);
}

Test(http_server, http2_is_505)
{
	struct fixture f;

	fx_init(&f, 100);
	fx_feed(&f, "GET / HTTP/2.0\r\nHost: h\r\n\r\n");
	assert_error(&f, 505, "HTTP Version Not Supported",
		     "{\"error\":\"HTTP/2.0 is not supported (HTTP/1.1 is)\"}");
	fx_free(&f);
}

Test(http_server, expect_100_continue)
{
	struct fixture f;

	fx_init(&f, 100);
	fx_feed(&f,
		"POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
	assert_out(&f, "HTTP/1.1 100 Continue\r\n\r\n");
	fx_feed(&f, "abc");
	cr_assert_eq(http_session_request(f.s)->body.len, 3);
	fx_free(&f);
}

Test(http_server, expect_100_continue_too_large_is_413_without_continue)
{
	struct fixture f;

	fx_init(&f, 2);
	fx_feed(&f,
		"POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
	cr_assert_null(memmem(f.out.data, f.out.len, "100 Continue", 12));
	cr_assert_not_null(memmem(f.out.data, f.out.len, "413 Content Too Large", 21));
	fx_free(&f);
}

Test(http_server, other_expectation_is_417)
{
	struct fixture f;

	fx_init(&f, 100);
	fx_feed(&f,
		"POST /x HTTP/1.1\r\nHost: h\r\nExpect: something\r\nContent-Length: 3\r\n\r\n");
	assert_error(&f, 417, "Expectation Failed",
		     "{\"error\":\"Expect: only 100-continue is supported\"}");
	fx_free(&f);
}

Test(http_server, error_answer_escapes_json)
{
	struct fixture f;

	fx_init(&f, 100);
	fx_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
	http_session_respond_error(f.s, 400, "field \"%s\": bad\n", "x");
	fx_drain(&f);
	assert_out(&f, "HTTP/1.1 400 Bad Request\r\nDate: X\r\nContent-Type: application/json\r\n"
		       "Content-Length: 30\r\n\r\n{\"error\":\"field \\\"x\\\": bad\\n\"}");
	/* An error answer to a whole request keeps the connection. */
	cr_assert_eq(http_session_event(f.s), HTTP_EV_NONE);
	fx_free(&f);
}

Test(http_server, extra_headers_are_sent)
{
	struct fixture f;

	fx_init(&f, 100);
	fx_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
	http_session_respond(f.s, 401, "WWW-Authenticate: Basic realm=\"petrel\"\r\n", NULL, "", 0);
	fx_drain(&f);
	assert_out(&f, "HTTP/1.1 401 Unauthorized\r\nDate: X\r\nContent-Length: 0\r\n"
		       "WWW-Authenticate: Basic realm=\"petrel\"\r\n\r\n");
	fx_free(&f);
}

Test(http_server, timeout_idle_closes_silently)
{
	struct fixture f;

	fx_init(&f, 100);
	http_session_timeout(f.s);
	fx_drain(&f);
	cr_assert_eq(f.out.len, 0);
	cr_assert_eq(http_session_event(f.s), HTTP_EV_CLOSE);
	fx_free(&f);
}

Test(http_server, timeout_inside_a_request_is_408)
{
	struct fixture f;

	fx_init(&f, 100);
	fx_feed(&f, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\na");
	cr_assert(!http_session_idle(f.s));
	http_session_timeout(f.s);
	fx_drain(&f);
	assert_error(&f, 408, "Request Timeout",
		     "{\"error\":\"timed out waiting for the rest of the request\"}");
	fx_free(&f);
}

Test(http_server, shutdown_idle_closes_now)
{
	struct fixture f;

	fx_init(&f, 100);
	http_session_shutdown(f.s);
	cr_assert_eq(http_session_event(f.s), HTTP_EV_CLOSE);
	fx_free(&f);
}

Test(http_server, shutdown_during_a_request_closes_after_the_answer)
{
	struct fixture f;

	fx_init(&f, 100);
	fx_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n");
	http_session_shutdown(f.s);
	cr_assert_eq(http_session_event(f.s), HTTP_EV_REQUEST);
	fx_respond(&f, 200, "hello");
	cr_assert_not_null(memmem(f.out.data, f.out.len, "Connection: close\r\n", 19));
	cr_assert_eq(http_session_event(f.s), HTTP_EV_CLOSE);
	fx_free(&f);
}

Test(http_server, held_input_overflow_closes_after_the_answer)
{
	struct fixture f;
	char *junk = malloc(HTTP_HOLD_MAX + 2);

	memset(junk, 'x', HTTP_HOLD_MAX + 1);
	junk[HTTP_HOLD_MAX + 1] = '\0';
	fx_init(&f, 100);
	fx_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
	fx_feed(&f, junk);
	fx_respond(&f, 200, "hello");
	cr_assert_not_null(memmem(f.out.data, f.out.len, "Connection: close\r\n", 19));
	cr_assert_eq(http_session_event(f.s), HTTP_EV_CLOSE);
	free(junk);
	fx_free(&f);
}

Test(http_server, held_input_at_the_limit_is_parsed)
{
	struct fixture f;
	static const char next[] = "POST /n HTTP/1.1\r\nHost: h\r\nContent-Length: %zu\r\n\r\n";
	char head[128];
	size_t body, n;
	char *all;

	n = (size_t)snprintf(head, sizeof(head), next, (size_t)0);
	body = HTTP_HOLD_MAX - n;
	n = (size_t)snprintf(head, sizeof(head), next, body);
	body = HTTP_HOLD_MAX - n; /* the digits may have changed the length */
	n = (size_t)snprintf(head, sizeof(head), next, body);
	cr_assert_eq(n + body, HTTP_HOLD_MAX);
	all = malloc(HTTP_HOLD_MAX + 1);
	memcpy(all, head, n);
	memset(all + n, 'b', body);
	all[HTTP_HOLD_MAX] = '\0';
	fx_init(&f, HTTP_HOLD_MAX);
	fx_feed(&f, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
	fx_feed(&f, all);
	fx_respond(&f, 200, "hello");
	cr_assert_eq(http_session_event(f.s), HTTP_EV_REQUEST);
	cr_assert_eq(http_session_request(f.s)->body.len, body);
	free(all);
	fx_free(&f);
}
