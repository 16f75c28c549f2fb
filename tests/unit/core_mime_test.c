/*
 * core_mime_test.c -- the MIME reading core/report.c stands on: header
 * fields (folding, bare LF, stray lines), Content-Type parameters,
 * multipart walking (preamble, epilogue, the line end that belongs to a
 * delimiter, look-alike boundaries, a missing close delimiter, a nested
 * multipart kept whole), the two transfer encodings, and RFC 5322 dates.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/mime.h"

static const char *next_name(const char *p, size_t *off, struct pt_mime_field *f, char *name)
{
	if (!pt_mime_field_next(p, strlen(p), off, f))
		return NULL;
	memcpy(name, f->name, f->name_len);
	name[f->name_len] = '\0';
	return name;
}

Test(mime, fields_folding_and_body)
{
	const char *m = "Subject: one\r\n two\r\nX-Empty:\r\nTo :  a@b\r\n\r\nbody\r\n";
	struct pt_mime_field f;
	char name[64], v[64];
	size_t off = 0;

	cr_assert_str_eq(next_name(m, &off, &f, name), "Subject");
	cr_assert_eq(f.value_len, strlen("one\r\n two"));
	cr_assert_eq(pt_mime_unfold(f.value, f.value_len, v, sizeof(v)), 7);
	cr_assert_str_eq(v, "one two");
	cr_assert_str_eq(next_name(m, &off, &f, name), "X-Empty");
	cr_assert_eq(f.value_len, 0);
	cr_assert_str_eq(next_name(m, &off, &f, name), "To", "blanks before the colon are dropped");
	cr_assert_eq(strncmp(f.value, "a@b", f.value_len), 0);
	cr_assert_null(next_name(m, &off, &f, name));
	cr_assert_str_eq(m + off, "body\r\n");
	cr_assert_eq(pt_mime_body_offset(m, strlen(m)), off);
}

Test(mime, bare_lf_stray_lines_and_no_body)
{
	const char *m = "From mbox-line\n continued stray\nA: 1\nnot a field\nB:\n\t2\n";
	struct pt_mime_field f;
	char name[64], v[64];
	size_t off = 0;

	cr_assert_str_eq(next_name(m, &off, &f, name), "A");
	cr_assert_str_eq(next_name(m, &off, &f, name), "B");
	pt_mime_unfold(f.value, f.value_len, v, sizeof(v));
	cr_assert_str_eq(v, "2", "a value that starts on the next line");
	cr_assert_null(next_name(m, &off, &f, name));
	cr_assert_eq(off, strlen(m), "no blank line: the body is empty, at the end");
	cr_assert(pt_mime_find_field(m, strlen(m), "b", &f), "names match without case");
	cr_assert_not(pt_mime_find_field(m, strlen(m), "C", &f));
}

Test(mime, unfold_cuts_and_trims)
{
	char v[6];

	cr_assert_eq(pt_mime_unfold("  abc\r\n\tdefgh ", 14, v, sizeof(v)), 5);
	cr_assert_str_eq(v, "abc\td");
	cr_assert_eq(pt_mime_unfold(" \r\n ", 4, v, sizeof(v)), 0);
	cr_assert_str_eq(v, "");
}

Test(mime, content_type_parameters)
{
	struct pt_mime_ctype ct;
	const char *v =
	    "Multipart/Report (a (nested) comment); report-type=\"Delivery-Status\";\r\n"
	    "\tboundary=\"RAA14128.773615765/CS.UTK.EDU\"";

	cr_assert(pt_mime_content_type(v, strlen(v), &ct));
	cr_assert_str_eq(ct.type, "multipart/report");
	cr_assert_str_eq(ct.report_type, "delivery-status");
	cr_assert_str_eq(ct.boundary, "RAA14128.773615765/CS.UTK.EDU",
			 "the boundary keeps its case");

	v = "multipart/mixed;boundary=----=_Part_7_1.2;charset=x";
	cr_assert(pt_mime_content_type(v, strlen(v), &ct));
	cr_assert_str_eq(ct.boundary, "----=_Part_7_1.2", "an unquoted value may hold '='");

	v = "multipart/mixed; boundary=\"a\\\"b\"";
	cr_assert(pt_mime_content_type(v, strlen(v), &ct));
	cr_assert_str_eq(ct.boundary, "a\"b");

	cr_assert_not(pt_mime_content_type("text", 4, &ct));
	cr_assert_not(pt_mime_content_type("/plain", 6, &ct));
	cr_assert_not(pt_mime_content_type("", 0, &ct));

	char big[400];
	memset(big, 'x', sizeof(big));
	memcpy(big, "a/b; boundary=", 14);
	cr_assert(pt_mime_content_type(big, sizeof(big), &ct));
	cr_assert_str_eq(ct.boundary, "", "a boundary too long is refused, not cut");

	pt_mime_entity_type("Subject: x\r\n\r\n", 14, &ct);
	cr_assert_str_eq(ct.type, "text/plain", "RFC 2045 5.2 default");
}

struct parts {
	char text[8][128];
	bool truncated[8];
	int n;
};

static void walk(const char *body, const char *boundary, struct parts *out)
{
	struct pt_mime_multipart mp;
	struct pt_mime_part part;

	memset(out, 0, sizeof(*out));
	pt_mime_multipart_init(&mp, body, strlen(body), boundary);
	while (pt_mime_multipart_next(&mp, &part)) {
		cr_assert_lt(out->n, 8);
		cr_assert_lt(part.len, sizeof(out->text[0]));
		memcpy(out->text[out->n], part.p, part.len);
		out->truncated[out->n++] = part.truncated;
	}
}

Test(mime, multipart_parts_preamble_epilogue)
{
	struct parts w;

	walk("preamble --b not here\r\n--b\r\nA: 1\r\n\r\none\r\n--b  \r\n\r\ntwo\r\n\r\n--bX\r\n"
	     "still two\r\n--b--\r\nepilogue\r\n--b\r\nnot a part\r\n",
	     "b", &w);
	cr_assert_eq(w.n, 2);
	cr_assert_str_eq(w.text[0], "A: 1\r\n\r\none");
	cr_assert_str_eq(w.text[1], "\r\ntwo\r\n\r\n--bX\r\nstill two",
			 "a longer boundary is content; padding after a delimiter is allowed");
	cr_assert_not(w.truncated[0] || w.truncated[1]);
}

Test(mime, multipart_truncated_and_empty)
{
	struct parts w;

	walk("--b\r\n--b\r\nA: 1\r\n\r\ncut off here", "b", &w);
	cr_assert_eq(w.n, 2);
	cr_assert_str_eq(w.text[0], "", "an empty part");
	cr_assert_str_eq(w.text[1], "A: 1\r\n\r\ncut off here");
	cr_assert(w.truncated[1]);

	walk("no delimiter at all\r\n", "b", &w);
	cr_assert_eq(w.n, 0);
	walk("--b--\r\n--b\r\nx\r\n", "b", &w);
	cr_assert_eq(w.n, 0, "a close delimiter first: nothing");
	walk("--b\nbare lf\n--b--\n", "b", &w);
	cr_assert_eq(w.n, 1);
	cr_assert_str_eq(w.text[0], "bare lf");
	walk("--b\r\nx\r\n--b--", "", &w);
	cr_assert_eq(w.n, 0, "an empty boundary walks nothing");
}

Test(mime, multipart_nested_is_one_part)
{
	struct parts w, inner;

	walk("--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"
	     "--inner\r\n\r\nplain\r\n--inner\r\n\r\nhtml\r\n--inner--\r\n"
	     "--outer\r\n\r\nsecond\r\n--outer--\r\n",
	     "outer", &w);
	cr_assert_eq(w.n, 2);
	cr_assert_str_eq(w.text[1], "\r\nsecond");
	walk(w.text[0] + pt_mime_body_offset(w.text[0], strlen(w.text[0])), "inner", &inner);
	cr_assert_eq(inner.n, 2);
	cr_assert_str_eq(inner.text[0], "\r\nplain");
	cr_assert_str_eq(inner.text[1], "\r\nhtml");
}

static void decoded_is(const char *cte, const char *in, const char *want)
{
	struct pt_buf out = PT_BUF_INIT;

	cr_assert_eq(pt_mime_decode(cte, in, strlen(in), &out), PT_OK);
	cr_assert_eq(out.len, strlen(want), "%s: got %zu bytes", cte, out.len);
	cr_assert_eq(memcmp(out.data, want, out.len), 0);
	pt_buf_free(&out);
}

Test(mime, transfer_encodings)
{
	struct pt_buf out = PT_BUF_INIT;

	decoded_is(NULL, "as is=41", "as is=41");
	decoded_is("8BIT", "x", "x");
	decoded_is("base64", "UmVwb3J0aW5n\r\nLU1UQTogZG5z\r\n OyBhLmI=\r\n",
		   "Reporting-MTA: dns; a.b");
	decoded_is("Base64", "QQ==", "A");
	decoded_is("base64", "!!QU*JD\r\n", "ABC");
	decoded_is("quoted-printable", "a=3Db=\r\nc= \r\nd=\ne=ZZ=4", "a=bcde=ZZ=4");
	cr_assert_eq(pt_mime_decode("x-uuencode", "abc", 3, &out), PT_ERROR);
	pt_buf_free(&out);
}

static int64_t date(const char *s)
{
	int64_t us = 0;

	cr_assert_eq(pt_mime_date(s, strlen(s), &us), PT_OK, "%s", s);
	return us / 1000000;
}

static void bad_date(const char *s)
{
	int64_t us;

	cr_assert_eq(pt_mime_date(s, strlen(s), &us), PT_ERROR, "%s", s);
}

Test(mime, dates)
{
	cr_assert_eq(date("Thu, 7 Jul 1994 17:16:05 -0400"), 773615765);
	cr_assert_eq(date("7 Jul 1994 21:16:05 +0000"), 773615765);
	cr_assert_eq(date("Thu, 07 Jul 94 21:16:05 GMT"), 773615765, "two-digit year");
	cr_assert_eq(date("Thu, 8 Mar 2005 17:40:36 EDT"), 1110318036);
	cr_assert_eq(date("Thu (day),\r\n 8 Mar 2005 (x) 21:40 Z"), 1110318000,
		     "comments, no seconds");
	cr_assert_eq(date("Thu, 02 Jul 26 18:55:38 UTC"), 1783018538);
	cr_assert_eq(date("Sat, 29 Feb 2020 00:00:00 A"), 1582934400, "military zone as -0000");
	cr_assert_eq(date("1 Jan 1970 00:00:00 +0100"), -3600);
	bad_date("");
	bad_date("yesterday");
	bad_date("Thu 8 Mar 2005 17:40:36 EDT");
	bad_date("Xyz, 8 Mar 2005 17:40:36 EDT");
	bad_date("30 Feb 2020 00:00:00 +0000");
	bad_date("8 Mar 2005 24:00:00 +0000");
	bad_date("8 Mar 2005 17:40:36");
	bad_date("8 Mar 2005 17:40:36 +05");
	bad_date("8 Mar 2005 17:40:36 +0000 trailing");
	bad_date("8 Mar 20050 17:40:36 +0000");
}
