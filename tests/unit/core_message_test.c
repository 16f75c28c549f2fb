/*
 * core_message_test.c -- the message: envelope and meta ownership, the
 * header/body boundary, prepended and appended header lines, header lookup
 * with folding across the three header parts, and the stored bytes the
 * iovecs compose; header capture for log records (names, case, wildcard,
 * repeats).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/message.h"

static struct pt_message m;

static void setup(void)
{
	pt_message_init(&m);
}

static void teardown(void)
{
	pt_message_clear(&m);
}

TestSuite(message, .init = setup, .fini = teardown);

static void set_data(const char *s)
{
	pt_buf_reset(&m.data);
	cr_assert_eq(pt_buf_append_str(&m.data, s), PT_OK);
	pt_message_scan_headers(&m);
}

/* The message as stored, assembled from pt_message_iov(). */
static char *stored(int *n_iov)
{
	struct iovec iov[4];
	int n = pt_message_iov(&m, iov);
	size_t total = 0;
	char *s, *p;

	cr_assert(n >= 0 && n <= 4);
	for (int i = 0; i < n; i++) {
		cr_assert_gt(iov[i].iov_len, 0, "empty parts are skipped");
		total += iov[i].iov_len;
	}
	cr_assert_eq(total, pt_message_size(&m));
	s = p = malloc(total + 1);
	for (int i = 0; i < n; i++) {
		memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	*p = '\0';
	if (n_iov != NULL)
		*n_iov = n;
	return s;
}

static void expect_header(const char *name, const char *want)
{
	char *v = pt_message_header_value(&m, name);

	if (want == NULL) {
		cr_assert_null(v, "%s: got \"%s\"", name, v);
		return;
	}
	cr_assert_not_null(v, "%s missing", name);
	cr_assert_str_eq(v, want, "%s", name);
	free(v);
}

Test(message, envelope_and_meta)
{
	cr_assert_eq(pt_message_set_sender(&m, "alice@example.comXX", 17), PT_OK);
	cr_assert_str_eq(m.sender, "alice@example.com");
	cr_assert_eq(pt_message_set_sender(&m, "", 0), PT_OK);
	cr_assert_str_eq(m.sender, "");
	for (int i = 0; i < 10; i++) {
		char r[32];
		int n = snprintf(r, sizeof(r), "r%d@example.net", i);
		cr_assert_eq(pt_message_add_rcpt(&m, r, (size_t)n), PT_OK);
	}
	cr_assert_eq(m.n_rcpts, 10);
	cr_assert_str_eq(m.rcpts[0], "r0@example.net");
	cr_assert_str_eq(m.rcpts[9], "r9@example.net");

	cr_assert_null(pt_message_get_meta(&m, "tenant"));
	cr_assert_eq(pt_message_set_meta(&m, "tenant", "\"gold\""), PT_OK);
	cr_assert_eq(pt_message_set_meta(&m, "tries", "3"), PT_OK);
	cr_assert_eq(pt_message_set_meta(&m, "tenant", "\"silver\""), PT_OK);
	cr_assert_eq(m.n_meta, 2);
	cr_assert_str_eq(pt_message_get_meta(&m, "tenant"), "\"silver\"");
	cr_assert_str_eq(pt_message_get_meta(&m, "tries"), "3");
	for (int i = 0; i < 20; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		cr_assert_eq(pt_message_set_meta(&m, k, "null"), PT_OK);
	}
	cr_assert_eq(m.n_meta, 22);
	cr_assert_str_eq(pt_message_get_meta(&m, "k19"), "null");
}

Test(message, clear_leaves_a_reusable_empty_message)
{
	pt_message_set_sender(&m, "a@b", 3);
	pt_message_add_rcpt(&m, "c@d", 3);
	pt_message_set_meta(&m, "x", "1");
	pt_message_prepend_header(&m, "Received", "from x");
	pt_message_append_header(&m, "X-A", "1");
	set_data("Subject: s\r\n\r\nbody\r\n");
	m.peer_address = strdup("127.0.0.1");
	m.ehlo = strdup("client");
	m.reception_protocol = strdup("ESMTP");
	pt_message_clear(&m);
	cr_assert_null(m.sender);
	cr_assert_eq(m.n_rcpts, 0);
	cr_assert_eq(m.n_meta, 0);
	cr_assert_eq(pt_message_size(&m), 0);
	cr_assert_eq(m.header_end, 0);
	cr_assert_null(m.peer_address);
	struct iovec iov[4];
	cr_assert_eq(pt_message_iov(&m, iov), 0);
	cr_assert_eq(pt_message_add_rcpt(&m, "e@f", 3), PT_OK);
	cr_assert_eq(m.n_rcpts, 1);
}

Test(message, scan_headers_boundary)
{
	set_data("A: 1\r\nB: 2\r\n\r\nbody\r\n");
	cr_assert_eq(m.header_end, 12);
	set_data("\r\nbody only\r\n");
	cr_assert_eq(m.header_end, 0);
	set_data("A: 1\r\nB: 2\r\n");
	cr_assert_eq(m.header_end, m.data.len);
	set_data("");
	cr_assert_eq(m.header_end, 0);
	/* The first blank line wins; later ones are body. */
	set_data("A: 1\r\n\r\nx\r\n\r\ny");
	cr_assert_eq(m.header_end, 6);
	/* Bare LFs do not end the header block. */
	set_data("A: 1\n\nB: 2\r\n\r\n");
	cr_assert_eq(m.header_end, 12);
}

Test(message, iov_composition_exact_bytes)
{
	char *s;
	int n;

	set_data("From: a@b\r\nSubject: hi\r\n\r\nbody line\r\n");
	s = stored(&n);
	cr_assert_eq(n, 2, "data split at header_end even with nothing appended");
	cr_assert_str_eq(s, "From: a@b\r\nSubject: hi\r\n\r\nbody line\r\n");
	free(s);

	cr_assert_eq(pt_message_prepend_header(&m, "Received", "from a by b; date1"), PT_OK);
	cr_assert_eq(pt_message_prepend_header(&m, "Received", "from c by d; date2"), PT_OK);
	cr_assert_eq(pt_message_append_header(&m, "X-Campaign", "spring"), PT_OK);
	cr_assert_eq(pt_message_append_header(&m, "X-Tenant", "gold"), PT_OK);
	s = stored(&n);
	cr_assert_eq(n, 4);
	cr_assert_str_eq(s, "Received: from c by d; date2\r\n"
			    "Received: from a by b; date1\r\n"
			    "From: a@b\r\nSubject: hi\r\n"
			    "X-Campaign: spring\r\n"
			    "X-Tenant: gold\r\n"
			    "\r\nbody line\r\n");
	cr_assert_eq(pt_message_size(&m), strlen(s));
	free(s);
}

Test(message, iov_without_blank_line_appends_at_end)
{
	char *s;
	int n;

	set_data("Subject: only headers\r\n");
	pt_message_append_header(&m, "X-A", "1");
	s = stored(&n);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(s, "Subject: only headers\r\nX-A: 1\r\n");
	free(s);
}

Test(message, iov_headerless_message_puts_appended_first)
{
	char *s;
	int n;

	set_data("\r\njust a body\r\n");
	pt_message_append_header(&m, "X-A", "1");
	pt_message_prepend_header(&m, "Received", "r");
	s = stored(&n);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(s, "Received: r\r\nX-A: 1\r\n\r\njust a body\r\n");
	free(s);
}

Test(message, header_value_case_insensitive_first_match)
{
	set_data("From: a@b\r\nSubject:   Hello there\r\nsubject: second\r\n"
		 "X-Empty:\r\n\r\nNot-A-Header: body\r\n");
	expect_header("subject", "Hello there");
	expect_header("SUBJECT", "Hello there");
	expect_header("From", "a@b");
	expect_header("X-Empty", "");
	expect_header("Not-A-Header", NULL);
	expect_header("Subj", NULL);
	expect_header("Subjectx", NULL);
	expect_header("", NULL);
	expect_header("To", NULL);
}

Test(message, header_value_unfolds_continuations)
{
	set_data("Subject: part one\r\n  part two\r\n\tpart three\r\nTo: x@y\r\n"
		 "X-Last: a\r\n b\r\n\r\nbody\r\n folded-looking body line\r\n");
	expect_header("Subject", "part one  part two\tpart three");
	expect_header("to", "x@y");
	/* Folding stops at the header block: the body line is not joined. */
	expect_header("X-Last", "a b");
}

Test(message, header_value_searches_prefix_then_data_then_appended)
{
	set_data("Subject: from data\r\nX-Data: d\r\n\r\nbody\r\n");
	pt_message_append_header(&m, "X-Added", "appended value");
	pt_message_append_header(&m, "Subject", "from appended");
	expect_header("X-Added", "appended value");
	expect_header("X-Data", "d");
	expect_header("Subject", "from data");
	pt_message_prepend_header(&m, "Subject", "from prefix");
	expect_header("Subject", "from prefix");
	/* A folded value given by a policy is unfolded on the way out. */
	pt_message_append_header(&m, "X-Folded", "one\r\n two");
	expect_header("X-Folded", "one two");
}

Test(message, header_value_tolerates_space_before_colon_and_no_final_crlf)
{
	set_data("Subject : spaced\r\nX-Tail: no crlf");
	cr_assert_eq(m.header_end, m.data.len);
	expect_header("Subject", "spaced");
	expect_header("X-Tail", "no crlf");
}

Test(message, header_value_empty_message)
{
	expect_header("Subject", NULL);
	cr_assert_eq(pt_message_size(&m), 0);
}

/* Every field of the name goes, with its continuation lines, from all three
 * parts; other fields, the blank line and the body (even a body line that
 * looks like the field) stay. */
Test(message, remove_header_everywhere)
{
	char *got;

	set_data("X-Tenant: a\r\nSubject: s\r\nx-tenant : b\r\n  folded\r\nTo: t\r\n\r\n"
		 "X-Tenant: body line\r\n");
	cr_assert_eq(pt_message_prepend_header(&m, "Received", "r"), PT_OK);
	cr_assert_eq(pt_message_prepend_header(&m, "X-Tenant", "p"), PT_OK);
	cr_assert_eq(pt_message_append_header(&m, "X-Tenant", "q"), PT_OK);
	cr_assert_eq(pt_message_append_header(&m, "X-Other", "o"), PT_OK);
	pt_message_remove_header(&m, "X-TENANT");
	got = stored(NULL);
	cr_assert_str_eq(got, "Received: r\r\nSubject: s\r\nTo: t\r\nX-Other: o\r\n\r\n"
			      "X-Tenant: body line\r\n");
	free(got);
	cr_assert_null(pt_message_header_value(&m, "X-Tenant"));
	expect_header("To", "t");
	/* A message that is all header block. */
	pt_message_clear(&m);
	set_data("X-Tenant: a\r\nTo: t\r\n");
	pt_message_remove_header(&m, "x-tenant");
	got = stored(NULL);
	cr_assert_str_eq(got, "To: t\r\n");
	free(got);
}

Test(message, header_name_match_is_case_insensitive_with_prefix_wildcard)
{
	cr_assert(pt_header_name_match("Subject", "subject", 7));
	cr_assert(pt_header_name_match("SUBJECT", "Subject", 7));
	cr_assert_not(pt_header_name_match("Subject", "Subjects", 8));
	cr_assert_not(pt_header_name_match("Subject", "Subjec", 6));
	cr_assert(pt_header_name_match("X-Campaign-*", "x-campaign-id", 13));
	cr_assert(pt_header_name_match("X-Campaign-*", "X-Campaign-", 11));
	cr_assert_not(pt_header_name_match("X-Campaign-*", "X-Campaign", 10));
	cr_assert_not(pt_header_name_match("X-Campaign-*", "X-Other-Id", 10));
	cr_assert(pt_header_name_match("*", "Anything", 8));
	/* Only a final '*' is a wildcard; the length bounds the name. */
	cr_assert_not(pt_header_name_match("X-*-Id", "X-A-Id", 6));
	cr_assert(pt_header_name_match("To", "To: x", 2));
}

/* pt_message_capture_headers(patterns) as JSON text. */
static char *capture(char *const *patterns, size_t n)
{
	struct pt_buf out = PT_BUF_INIT;
	struct pt_json j;
	char *s;

	pt_json_init(&j, &out);
	cr_assert_eq(pt_message_capture_headers(&m, patterns, n, &j), PT_OK);
	s = strdup(pt_buf_cstr(&out));
	pt_buf_free(&out);
	return s;
}

Test(message, capture_headers_names_case_wildcard_repeats)
{
	char *patterns[] = {"subject", "X-Campaign-*", "x-campaign-id"};
	char *got;

	set_data("From: a@b\r\nSubject: Hello\r\n there\r\nx-campaign-ID: 42\r\n"
		 "X-Campaign-Name: spring\r\nX-Other: no\r\nX-Campaign-Id: 43\r\n"
		 "\r\nSubject: body, not a header\r\n");
	cr_assert_eq(pt_message_prepend_header(&m, "X-Campaign-Name", "first"), PT_OK);
	cr_assert_eq(pt_message_append_header(&m, "Subject", "again"), PT_OK);
	got = capture(patterns, 3);
	/* One key per name, spelt as first seen, in name order; a repeated
	 * field is an array in stored order (prefix, data, appended); a name
	 * matched by two patterns is captured once; the body is not looked at. */
	cr_assert_str_eq(got, "{\"Subject\":[\"Hello there\",\"again\"],"
			      "\"x-campaign-ID\":[\"42\",\"43\"],"
			      "\"X-Campaign-Name\":[\"first\",\"spring\"]}");
	free(got);
}

Test(message, capture_headers_none_match_or_no_patterns)
{
	char *patterns[] = {"X-Missing", "List-*"};
	char *got;

	set_data("Subject: s\r\n\r\nbody\r\n");
	got = capture(patterns, 2);
	cr_assert_str_eq(got, "{}");
	free(got);
	got = capture(patterns, 0);
	cr_assert_str_eq(got, "{}");
	free(got);
}

Test(message, capture_headers_escapes_values)
{
	char *patterns[] = {"Subject"};
	char *got;

	set_data("Subject: a \"quoted\" \\ \x01\r\n\r\n");
	got = capture(patterns, 1);
	cr_assert_str_eq(got, "{\"Subject\":\"a \\\"quoted\\\" \\\\ \\u0001\"}");
	free(got);
}
