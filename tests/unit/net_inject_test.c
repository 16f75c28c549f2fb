/*
 * net_inject_test.c -- the injection request: every check names its field,
 * and the messages rendered per recipient are exactly what KumoMTA's
 * documentation describes (substitution order, the builder's header fields
 * and MIME structure, encodings).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/inject.h"

static const struct inject_env ENV = {
    .id = "0123456789abcdef0123456789abcdef",
    .hostname = "petrel.test",
    .date_us = 1700000000000000ull, /* Tue, 14 Nov 2023 22:13:20 +0000 */
};

static struct inject_request *parse_ok(const char *json)
{
	struct inject_request *r = NULL;
	char err[512] = "";

	cr_assert_eq(inject_request_parse(json, strlen(json), &r, err, sizeof(err)), PT_OK,
		     "%s: %s", json, err);
	return r;
}

static void parse_fails(const char *json, const char *want)
{
	struct inject_request *r = NULL;
	char err[512] = "";

	cr_assert_eq(inject_request_parse(json, strlen(json), &r, err, sizeof(err)), PT_ERROR,
		     "%s parsed", json);
	cr_assert_null(r);
	cr_assert_str_eq(err, want, "%s", json);
}

/* Render recipient i into a static string (asserting success). */
static const char *render_ok(const struct inject_request *r, size_t i)
{
	static char text[65536];
	struct pt_buf out = PT_BUF_INIT;
	char err[512] = "";

	cr_assert_eq(inject_render(r, i, &ENV, &out, err, sizeof(err)), PT_OK, "%s", err);
	snprintf(text, sizeof(text), "%.*s", (int)out.len, out.data);
	pt_buf_free(&out);
	return text;
}

static void render_fails(const struct inject_request *r, size_t i, const char *want)
{
	struct pt_buf out = PT_BUF_INIT;
	char err[512] = "";

	cr_assert_eq(inject_render(r, i, &ENV, &out, err, sizeof(err)), PT_ERROR);
	cr_assert_str_eq(err, want);
	pt_buf_free(&out);
}

#define RCPT   "\"recipients\": [{\"email\": \"a@example.com\"}]"
#define SENDER "\"envelope_sender\": \"noreply@example.com\""

/* ---- checks ---------------------------------------------------------------- */

Test(inject, malformed_requests_name_the_field)
{
	parse_fails("{", "the request body is not valid JSON: string or '}' expected near end of "
			 "file (line 1, column 1)");
	parse_fails("[]", "the request must be a JSON object, got a list");
	parse_fails("{" RCPT ", \"content\": \"S: x\\n\\nx\"}", "envelope_sender is required");
	parse_fails("{\"envelope_sender\": 5, " RCPT ", \"content\": \"x\"}",
		    "envelope_sender must be a string, got an integer");
	parse_fails("{\"envelope_sender\": \"nobody\", " RCPT ", \"content\": \"x\"}",
		    "envelope_sender: 'nobody' is not an address of the form user@domain");
	parse_fails("{" SENDER ", \"content\": \"x\"}", "recipients is required");
	parse_fails("{" SENDER ", \"recipients\": {}, \"content\": \"x\"}",
		    "recipients must be a list, got an object");
	parse_fails("{" SENDER ", \"recipients\": [], \"content\": \"x\"}",
		    "recipients must hold at least one recipient");
	parse_fails("{" SENDER ", \"recipients\": [{\"email\": \"a@b.c\"}, {\"name\": \"x\"}], "
		    "\"content\": \"x\"}",
		    "recipients[1].email is required");
	parse_fails("{" SENDER ", \"recipients\": [{\"email\": \"a@b.c\", \"subs\": {}}], "
		    "\"content\": \"x\"}",
		    "recipients[0]: unknown field 'subs'");
	parse_fails("{" SENDER ", \"recipients\": [{\"email\": \"a@b.c\", \"substitutions\": 3}], "
		    "\"content\": \"x\"}",
		    "recipients[0].substitutions must be an object, got an integer");
	parse_fails("{" SENDER ", \"recipients\": [{\"email\": \"a@b.c\", \"name\": \"x\\r\\nBcc: "
		    "v@example.com\"}], \"content\": \"x\"}",
		    "recipients[0].name has a line break or another control character");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"from\": "
		    "{\"email\": \"a@b.c\", \"name\": \"a\\u0001\"}}}",
		    "content.from.name has a line break or another control character");
	parse_fails("{" SENDER ", " RCPT "}", "content is required");
	parse_fails("{" SENDER ", " RCPT ", \"content\": 7}",
		    "content must be a string (a whole message) or an object (a builder), got an "
		    "integer");
	parse_fails("{" SENDER ", " RCPT ", \"content\": \"x\", \"extra\": 1}",
		    "unknown field 'extra'");
	parse_fails("{" SENDER ", " RCPT ", \"content\": \"x\", \"envelope_sender\": \"b@c.d\"}",
		    "the request body is not valid JSON: duplicate object key near "
		    "'\"envelope_sender\"' (line 1, column 120)");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"subject\": \"x\"}}",
		    "content: at least one of text_body and html_body must be given");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"body\": 1}}",
		    "content: unknown field 'body'");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": [\"x\"]}}",
		    "content.text_body must be a string, got a list");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"from\": "
		    "{\"email\": \"bad\"}}}",
		    "content.from.email: 'bad' is not an address of the form user@domain");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"from\": "
		    "{\"name\": \"N\"}}}",
		    "content.from.email is required");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"headers\": "
		    "{\"X-A\": 1}}}",
		    "content.headers.X-A must be a string, got an integer");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"headers\": "
		    "{\"Bad Name\": \"v\"}}}",
		    "content.headers: 'Bad Name' is not a header field name");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"headers\": "
		    "{\"content-type\": \"text/plain\"}}}",
		    "content.headers.content-type: the builder writes this field itself");
	parse_fails(
	    "{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"subject\": \"s\", "
	    "\"headers\": {\"Subject\": \"t\"}}}",
	    "content.headers.Subject: give the subject in content.subject or here, not both");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"attachments\": "
		    "[{\"data\": \"!!!\", \"base64\": true, \"content_type\": \"image/gif\"}]}}",
		    "content.attachments[0].data is not valid base64");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"attachments\": "
		    "[{\"data\": \"x\"}]}}",
		    "content.attachments[0].content_type is required");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"attachments\": "
		    "[{\"data\": \"x\", \"content_type\": \"gif\"}]}}",
		    "content.attachments[0].content_type: 'gif' is not a MIME type like image/png");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"attachments\": "
		    "[{\"data\": \"x\", \"content_type\": \"a/b\", \"base64\": \"yes\"}]}}",
		    "content.attachments[0].base64 must be a boolean, got a string");
}

Test(inject, template_errors_name_the_field)
{
	parse_fails("{" SENDER ", " RCPT ", \"content\": \"Subject: {% if x %}\"}",
		    "content: line 1: '{%' statements (if, for, set, ...) are not supported: "
		    "Petrel's templates have {{ variables }} with filters, and {# comments #}");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"a\\n{{ x | nope }}\"}}",
		    "content.text_body: line 2: unknown filter 'nope' (Petrel has upper, lower, "
		    "title, capitalize, trim, default, escape, safe, tojson)");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"headers\": "
		    "{\"X-A\": \"{{ a + 1 }}\"}}}",
		    "content.headers.X-A: line 1: '+' is not supported in an expression (Petrel's "
		    "templates print variables, literals and filters)");
}

Test(inject, kumomta_fields_petrel_lacks_are_refused_by_name)
{
	parse_fails("{" SENDER ", " RCPT ", \"content\": \"x\", \"trace_headers\": {}}",
		    "'trace_headers' is a KumoMTA field Petrel does not support yet");
	parse_fails("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"amp_html_body\": "
		    "\"y\"}}",
		    "content: 'amp_html_body' is a KumoMTA field Petrel does not support yet");
	parse_fails(
	    "{" SENDER ", " RCPT ", \"content\": \"x\", \"template_dialect\": "
	    "\"Handlebars\"}",
	    "template_dialect: 'Handlebars' is a KumoMTA dialect Petrel does not support yet "
	    "(Jinja and Static are)");
	parse_fails("{" SENDER ", " RCPT
		    ", \"content\": \"x\", \"template_dialect\": \"Mustache\"}",
		    "template_dialect must be \"Jinja\" or \"Static\", got 'Mustache'");
	parse_fails("{" SENDER ", " RCPT ", \"content\": \"x\", \"deferred_spool\": true}",
		    "deferred_spool: true is not supported: Petrel spools every generated message "
		    "before it answers");
	parse_fails("{" SENDER ", " RCPT ", \"content\": \"x\", \"deferred_generation\": true}",
		    "deferred_generation: true is not supported: Petrel spools every generated "
		    "message before it answers");
	parse_fails("{" SENDER ", " RCPT ", \"content\": \"x\", \"deferred_spool\": 1}",
		    "deferred_spool must be a boolean, got an integer");
	inject_request_free(parse_ok("{" SENDER ", " RCPT ", \"content\": \"S: x\", "
				     "\"deferred_spool\": false, \"deferred_generation\": false, "
				     "\"template_dialect\": \"Jinja\"}"));
}

/* ---- whole messages -------------------------------------------------------------- */

Test(inject, whole_message_substitutions_in_kumomta_order)
{
	struct inject_request *r = parse_ok(
	    "{" SENDER ", \"substitutions\": {\"campaign\": \"Summer\", \"greeting\": \"Hi\"},"
	    " \"recipients\": ["
	    "  {\"email\": \"john@example.com\", \"name\": \"John Smith\"},"
	    "  {\"email\": \"ann@example.com\", \"substitutions\": {\"greeting\": \"Hello\","
	    "   \"name\": \"Ann (own)\", \"n\": 3}, \"metadata\": {\"b\": 2, \"a\": \"x\"}},"
	    "  {\"email\": \"not-an-address\"}],"
	    " \"content\": \"To: {{ to_header }}\\nSubject: {{ campaign }}\\n\\n"
	    "{{ greeting }} {{ name }} <{{ email }}> {{ n }}!\\n\"}");

	cr_assert_eq(inject_request_count(r), 3);
	cr_assert_str_eq(inject_request_sender(r), "noreply@example.com");
	cr_assert_str_eq(render_ok(r, 0),
			 "To: \"John Smith\" <john@example.com>\r\n"
			 "Subject: Summer\r\n\r\nHi John Smith <john@example.com> !");
	cr_assert_str_eq(render_ok(r, 1), "To: ann@example.com\r\nSubject: Summer\r\n\r\n"
					  "Hello Ann (own) <ann@example.com> 3!");
	cr_assert_null(inject_request_recipient(r, 0)->metadata_json);
	cr_assert_str_eq(inject_request_recipient(r, 1)->metadata_json, "{\"a\":\"x\",\"b\":2}");
	cr_assert_null(inject_request_recipient(r, 1)->error);
	cr_assert_str_eq(inject_request_recipient(r, 2)->error,
			 "recipients[2].email: 'not-an-address' is not an address of the form "
			 "user@domain");
	render_fails(r, 2,
		     "recipients[2].email: 'not-an-address' is not an address of the form "
		     "user@domain");
	inject_request_free(r);
}

Test(inject, whole_message_line_ends_become_crlf)
{
	struct inject_request *r = parse_ok("{" SENDER ", " RCPT ", \"content\": "
					    "\"A: 1\\r\\nB: 2\\rC: 3\\n\\nbody\\nline\\r\\n\\n\"}");

	/* One trailing newline is the template's (Jinja drops it). */
	cr_assert_str_eq(render_ok(r, 0), "A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody\r\nline\r\n");
	inject_request_free(r);
}

Test(inject, static_dialect_expands_nothing)
{
	struct inject_request *r =
	    parse_ok("{" SENDER ", " RCPT ", \"template_dialect\": "
		     "\"Static\", \"content\": \"S: {{ x }}\\n\\n{% raw %}\\n\"}");

	cr_assert_str_eq(render_ok(r, 0), "S: {{ x }}\r\n\r\n{% raw %}\r\n");
	inject_request_free(r);
}

Test(inject, whole_message_must_start_with_a_field)
{
	struct inject_request *r =
	    parse_ok("{" SENDER ", " RCPT ", \"content\": \"{{ x }}hello\"}");

	render_fails(r, 0, "content: the message does not start with a header field");
	inject_request_free(r);
	r = parse_ok("{" SENDER ", " RCPT ", \"content\": \"\\n\"}");
	render_fails(r, 0, "content: the message does not start with a header field");
	inject_request_free(r);
}

Test(inject, render_error_fails_the_recipient)
{
	struct inject_request *r = parse_ok(
	    "{" SENDER ", \"recipients\": [{\"email\": \"a@b.c\", \"substitutions\": {\"u\": "
	    "{\"x\": \"ok\"}}}, {\"email\": \"d@e.f\"}], \"content\": \"S: {{ u.x }}\"}");

	cr_assert_str_eq(render_ok(r, 0), "S: ok");
	render_fails(r, 1, "content: line 1: 'u' is undefined, so it has no 'x'");
	inject_request_free(r);
}

/* ---- the builder ---------------------------------------------------------------------- */

Test(inject, builder_text_only_exact)
{
	struct inject_request *r = parse_ok(
	    "{" SENDER ", \"recipients\": [{\"email\": \"john@example.com\", \"name\": \"John\","
	    " \"substitutions\": {\"order\": 42}}],"
	    " \"content\": {\"subject\": \"Order {{ order }}\", \"text_body\": \"Dear {{ name }},"
	    "\\nyour order {{ order }} shipped.\\n\", \"from\": {\"email\": \"shop@example.com\","
	    " \"name\": \"The \\\"Shop\\\"\"}, \"reply_to\": {\"email\": \"help@example.com\"},"
	    " \"headers\": {\"X-Campaign\": \"c-{{ order }}\", \"List-Unsubscribe\": "
	    "\"<mailto:u@example.com>\"}}}");

	cr_assert_str_eq(render_ok(r, 0),
			 "From: \"The \\\"Shop\\\"\" <shop@example.com>\r\n"
			 "Reply-To: help@example.com\r\n"
			 "To: \"John\" <john@example.com>\r\n"
			 "Subject: Order 42\r\n"
			 "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
			 "Message-ID: <0123456789abcdef0123456789abcdef@petrel.test>\r\n"
			 "X-Campaign: c-42\r\n"
			 "List-Unsubscribe: <mailto:u@example.com>\r\n"
			 "MIME-Version: 1.0\r\n"
			 "Content-Type: text/plain; charset=\"utf-8\"\r\n"
			 "Content-Transfer-Encoding: 7bit\r\n"
			 "\r\n"
			 "Dear John,\r\nyour order 42 shipped.");
	inject_request_free(r);
}

Test(inject, builder_custom_headers_replace_the_builders)
{
	struct inject_request *r =
	    parse_ok("{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"headers\": {"
		     "\"To\": \"Undisclosed recipients:;\", \"Message-ID\": \"<mine@x>\", "
		     "\"Date\": \"Mon, 1 Jan 2024 00:00:00 +0000\"}}}");
	const char *m = render_ok(r, 0);

	cr_assert_str_eq(m, "To: Undisclosed recipients:;\r\n"
			    "Message-ID: <mine@x>\r\n"
			    "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
			    "MIME-Version: 1.0\r\n"
			    "Content-Type: text/plain; charset=\"utf-8\"\r\n"
			    "Content-Transfer-Encoding: 7bit\r\n\r\nx");
	inject_request_free(r);
}

Test(inject, builder_header_value_with_a_line_break_fails_the_recipient)
{
	struct inject_request *r = parse_ok(
	    "{" SENDER ", \"recipients\": [{\"email\": \"a@b.c\", \"substitutions\": {\"s\": "
	    "\"x\\r\\nBcc: victim@example.com\"}}], \"content\": {\"text_body\": \"x\", "
	    "\"subject\": \"{{ s }}\"}}");

	render_fails(r, 0, "content.subject: the value has a line break");
	inject_request_free(r);
}

Test(inject, builder_non_ascii_is_encoded)
{
	struct inject_request *r = parse_ok(
	    "{" SENDER ", \"recipients\": [{\"email\": \"a@b.c\", \"name\": \"Zoë Ångström\"}],"
	    " \"content\": {\"subject\": \"Grüße {{ name }}\", \"text_body\": \"Grüße, {{ name }}"
	    " = ok\\n\", \"from\": {\"email\": \"s@b.c\", \"name\": \"Bäckerei\"}}}");
	const char *m = render_ok(r, 0);
	struct pt_buf dec = PT_BUF_INIT;
	const char *ew = strstr(m, "Subject: =?UTF-8?B?");
	const char *end;

	cr_assert_not_null(strstr(m, "From: =?UTF-8?B?QsOkY2tlcmVp?= <s@b.c>\r\n"), "%s", m);
	cr_assert_not_null(strstr(m, "To: =?UTF-8?B?Wm/DqyDDhW5nc3Ryw7Zt?= <a@b.c>\r\n"), "%s", m);
	cr_assert_not_null(ew, "%s", m);
	ew += strlen("Subject: =?UTF-8?B?");
	end = strstr(ew, "?=");
	cr_assert_eq(inject_base64_decode(ew, (size_t)(end - ew), &dec), PT_OK);
	cr_assert_eq(dec.len, strlen("Grüße Zoë Ångström"));
	cr_assert(memcmp(dec.data, "Grüße Zoë Ångström", dec.len) == 0);
	cr_assert_not_null(strstr(m, "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
				     "Gr=C3=BC=C3=9Fe, Zo=C3=AB =C3=85ngstr=C3=B6m =3D ok"),
			   "%s", m);
	pt_buf_free(&dec);
	inject_request_free(r);
}

Test(inject, builder_long_non_ascii_subject_folds_into_words)
{
	char json[2048];
	struct inject_request *r;
	const char *m, *p;
	int n_words = 0;

	snprintf(json, sizeof(json),
		 "{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"x\", \"subject\": \"%s\"}}",
		 "ééééééééééééééééééééééééééééééééééééééééééééééééééé€€€€€€€€€€€€€€€€€€€€");
	r = parse_ok(json);
	m = render_ok(r, 0);
	/* Every line of the field is at most 78 columns; each word holds whole characters. */
	for (p = strstr(m, "Subject: "); *p != '\r' || p[2] == ' '; p = strstr(p, "\r\n") + 2) {
		const char *eol = strstr(p, "\r\n");

		cr_assert_leq(eol - p, 78, "%s", m);
		cr_assert_not_null(strstr(p, "=?UTF-8?B?"));
		n_words++;
		if (eol[2] != ' ')
			break;
	}
	cr_assert_geq(n_words, 4, "%s", m);
	inject_request_free(r);
}

Test(inject, builder_html_values_are_escaped)
{
	struct inject_request *r = parse_ok(
	    "{" SENDER ", \"recipients\": [{\"email\": \"a@b.c\", \"substitutions\": {\"v\": "
	    "\"<script>&\"}}], \"content\": {\"html_body\": \"<p>{{ v }}</p>\", \"text_body\": "
	    "\"{{ v }}\"}}");
	const char *m = render_ok(r, 0);

	cr_assert_not_null(strstr(m, "<p>&lt;script&gt;&amp;</p>"), "%s", m);
	cr_assert_not_null(strstr(m, "7bit\r\n\r\n<script>&\r\n"), "%s", m);
	inject_request_free(r);
}

Test(inject, builder_multipart_structure)
{
	struct inject_request *r = parse_ok(
	    "{" SENDER ", " RCPT ", \"content\": {\"text_body\": \"T\", \"html_body\": "
	    "\"<img src=cid:px>\", \"attachments\": ["
	    "{\"data\": \"R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7\", \"base64\": "
	    "true, \"content_type\": \"image/gif\", \"content_id\": \"<px>\", \"file_name\": "
	    "\"pixel.gif\"},"
	    "{\"data\": \"a,b\\n1,2\\n\", \"content_type\": \"text/csv\", \"file_name\": "
	    "\"données.csv\"}]}}");
	const char *m = render_ok(r, 0);
	const char *want[] = {
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed;\r\n "
	    "boundary=\"=_petrel_0123456789abcdef0123456789abcdef_1\"\r\n\r\n"
	    "--=_petrel_0123456789abcdef0123456789abcdef_1\r\n"
	    "Content-Type: multipart/related; type=\"multipart/alternative\";\r\n"
	    " boundary=\"=_petrel_0123456789abcdef0123456789abcdef_2\"\r\n\r\n"
	    "--=_petrel_0123456789abcdef0123456789abcdef_2\r\n"
	    "Content-Type: multipart/alternative;\r\n"
	    " boundary=\"=_petrel_0123456789abcdef0123456789abcdef_3\"\r\n\r\n"
	    "--=_petrel_0123456789abcdef0123456789abcdef_3\r\n"
	    "Content-Type: text/plain; charset=\"utf-8\"\r\n"
	    "Content-Transfer-Encoding: 7bit\r\n\r\nT\r\n"
	    "--=_petrel_0123456789abcdef0123456789abcdef_3\r\n"
	    "Content-Type: text/html; charset=\"utf-8\"\r\n"
	    "Content-Transfer-Encoding: 7bit\r\n\r\n<img src=cid:px>\r\n"
	    "--=_petrel_0123456789abcdef0123456789abcdef_3--\r\n\r\n"
	    "--=_petrel_0123456789abcdef0123456789abcdef_2\r\n"
	    "Content-Type: image/gif; name=\"pixel.gif\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: inline; filename=\"pixel.gif\"\r\n"
	    "Content-ID: <px>\r\n\r\n"
	    "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7\r\n\r\n"
	    "--=_petrel_0123456789abcdef0123456789abcdef_2--\r\n\r\n"
	    "--=_petrel_0123456789abcdef0123456789abcdef_1\r\n"
	    "Content-Type: text/csv;\r\n name*=UTF-8''donn%C3%A9es.csv\r\n"
	    "Content-Transfer-Encoding: base64\r\n"
	    "Content-Disposition: attachment;\r\n filename*=UTF-8''donn%C3%A9es.csv\r\n\r\n"
	    "YSxiCjEsMgo=\r\n\r\n"
	    "--=_petrel_0123456789abcdef0123456789abcdef_1--\r\n",
	};

	cr_assert_not_null(strstr(m, want[0]), "%s", m);
	cr_assert_eq(strlen(strstr(m, want[0])), strlen(want[0]), "%s", m);
	inject_request_free(r);
}

/* ---- encoders ------------------------------------------------------------------------ */

static void b64_round(const char *in, const char *want)
{
	struct pt_buf enc = PT_BUF_INIT, dec = PT_BUF_INIT;

	cr_assert_eq(inject_base64_encode(in, strlen(in), &enc), PT_OK);
	cr_assert_eq(enc.len, strlen(want));
	cr_assert(memcmp(enc.data ? enc.data : "", want, enc.len) == 0, "%s", in);
	cr_assert_eq(inject_base64_decode(enc.data, enc.len, &dec), PT_OK);
	cr_assert_eq(dec.len, strlen(in));
	cr_assert(dec.len == 0 || memcmp(dec.data, in, dec.len) == 0);
	pt_buf_free(&enc);
	pt_buf_free(&dec);
}

Test(inject, base64)
{
	struct pt_buf out = PT_BUF_INIT;
	char long_in[100];

	b64_round("", "");
	b64_round("f", "Zg==\r\n");
	b64_round("fo", "Zm8=\r\n");
	b64_round("foo", "Zm9v\r\n");
	b64_round("foobar", "Zm9vYmFy\r\n");
	memset(long_in, 'a', 99);
	long_in[99] = '\0';
	cr_assert_eq(inject_base64_encode(long_in, 99, &out), PT_OK);
	cr_assert_eq(strstr(out.data, "\r\n") - out.data, 76);
	out.len = 0;
	cr_assert_eq(inject_base64_decode("Zm9v\r\n YmFy", 11, &out), PT_OK);
	cr_assert_eq(out.len, 6);
	cr_assert_eq(inject_base64_decode("Zm9", 3, &out), PT_ERROR);	/* not whole quads */
	cr_assert_eq(inject_base64_decode("Zm=v", 4, &out), PT_ERROR);	/* data after padding */
	cr_assert_eq(inject_base64_decode("Zm9v!", 5, &out), PT_ERROR); /* outside the alphabet */
	cr_assert_eq(inject_base64_decode("Zh==", 4, &out), PT_ERROR);	/* stray bits */
	cr_assert_eq(inject_base64_decode("Z===", 4, &out), PT_ERROR);	/* too much padding */
	pt_buf_free(&out);
}

static void qp(const char *in, const char *want)
{
	struct pt_buf out = PT_BUF_INIT;

	cr_assert_eq(inject_qp_encode(in, strlen(in), &out), PT_OK);
	cr_assert_eq(out.len, strlen(want), "%s -> %.*s", in, (int)out.len, out.data);
	cr_assert(out.len == 0 || memcmp(out.data, want, out.len) == 0, "%s -> %.*s", in,
		  (int)out.len, out.data);
	pt_buf_free(&out);
}

Test(inject, quoted_printable)
{
	char in[200], want[256];

	qp("plain text", "plain text");
	qp("a=b", "a=3Db");
	qp("trailing \r\nspace\t", "trailing=20\r\nspace=09");
	qp("caf\xc3\xa9", "caf=C3=A9");
	/* 80 'x': 75 and a soft break, then 5 */
	memset(in, 'x', 80);
	in[80] = '\0';
	snprintf(want, sizeof(want), "%.75s=\r\n%.5s", in, in);
	qp(in, want);
	/* exactly 76 fit on a line that ends there */
	in[76] = '\0';
	qp(in, in);
	/* an encoded octet is never split by a soft break */
	memset(in, 'x', 74);
	strcpy(in + 74, "\xc3\xa9z");
	snprintf(want, sizeof(want), "%.74s=\r\n=C3=A9z", in);
	qp(in, want);
}

Test(inject, header_helpers)
{
	struct pt_buf out = PT_BUF_INIT;
	char words[400];

	cr_assert_eq(inject_header_mailbox(&out, "From", NULL, "a@b.c"), PT_OK);
	cr_assert_eq(inject_header_mailbox(&out, "From", "", "a@b.c"), PT_OK);
	cr_assert_eq(inject_header_mailbox(&out, "From", "A \\ \"B\"", "a@b.c"), PT_OK);
	cr_assert_eq(inject_header_unstructured(&out, "Subject", "short"), PT_OK);
	cr_assert_str_eq(pt_buf_cstr(&out), "From: a@b.c\r\nFrom: a@b.c\r\n"
					    "From: \"A \\\\ \\\"B\\\"\" <a@b.c>\r\n"
					    "Subject: short\r\n");
	out.len = 0;
	memset(words, 0, sizeof(words));
	for (int i = 0; i < 20; i++)
		strcat(words, "word12345 ");
	cr_assert_eq(inject_header_unstructured(&out, "Subject", words), PT_OK);
	pt_buf_cstr(&out);
	for (char *p = out.data, *eol; (eol = strstr(p, "\r\n")) != NULL; p = eol + 2)
		cr_assert_leq(eol - p, 78, "%s", pt_buf_cstr(&out));
	cr_assert_not_null(strstr(pt_buf_cstr(&out), "\r\n word12345"));
	pt_buf_free(&out);
}
