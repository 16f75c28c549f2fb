/*
 * core_json_test.c -- the JSON writer: exact output for nesting and commas,
 * every escape RFC 8259 requires, and invalid UTF-8 turned into \u00XX.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>

#include "core/json.h"

static struct pt_buf out;
static struct pt_json j;

static void setup(void)
{
	out = (struct pt_buf)PT_BUF_INIT;
	pt_json_init(&j, &out);
}

static void teardown(void)
{
	pt_buf_free(&out);
}

TestSuite(json, .init = setup, .fini = teardown);

#define expect(s) cr_assert_str_eq(pt_buf_cstr(&out), (s))

Test(json, empty_object_and_array)
{
	pt_json_obj_begin(&j);
	pt_json_obj_end(&j);
	expect("{}");
	pt_buf_reset(&out);
	pt_json_init(&j, &out);
	pt_json_arr_begin(&j);
	pt_json_arr_end(&j);
	expect("[]");
}

Test(json, flat_record_with_every_member_kind)
{
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "type", "Reception");
	pt_json_key_int(&j, "size", 1234);
	pt_json_key_int(&j, "neg", INT64_MIN);
	pt_json_key_bool(&j, "tls", true);
	pt_json_key_bool(&j, "dsn", false);
	pt_json_key_null(&j, "nothing");
	pt_json_key_str(&j, "absent", NULL);
	pt_json_key_strn(&j, "cut", "abcdef", 3);
	pt_json_key_raw(&j, "meta", "{\"a\":1}", 7);
	pt_json_obj_end(&j);
	expect("{\"type\":\"Reception\",\"size\":1234,\"neg\":-9223372036854775808,"
	       "\"tls\":true,\"dsn\":false,\"nothing\":null,\"absent\":null,\"cut\":\"abc\","
	       "\"meta\":{\"a\":1}}");
}

Test(json, nesting_puts_commas_only_between_siblings)
{
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "a", "x");
	pt_json_key(&j, "rcpts");
	pt_json_arr_begin(&j);
	pt_json_str(&j, "b@example.com");
	pt_json_str(&j, "c@example.com");
	pt_json_obj_begin(&j);
	pt_json_obj_end(&j);
	pt_json_arr_begin(&j);
	pt_json_int(&j, 1);
	pt_json_arr_begin(&j);
	pt_json_arr_end(&j);
	pt_json_int(&j, 2);
	pt_json_arr_end(&j);
	pt_json_arr_end(&j);
	pt_json_key(&j, "obj");
	pt_json_obj_begin(&j);
	pt_json_key_int(&j, "x", 1);
	pt_json_key(&j, "y");
	pt_json_obj_begin(&j);
	pt_json_key_int(&j, "z", 0);
	pt_json_obj_end(&j);
	pt_json_key_int(&j, "w", -5);
	pt_json_obj_end(&j);
	pt_json_key_int(&j, "after", 7);
	pt_json_obj_end(&j);
	expect("{\"a\":\"x\",\"rcpts\":[\"b@example.com\",\"c@example.com\",{},[1,[],2]],"
	       "\"obj\":{\"x\":1,\"y\":{\"z\":0},\"w\":-5},\"after\":7}");
	cr_assert_eq(j.depth, 0);
}

Test(json, top_level_values_and_raw_in_array)
{
	pt_json_arr_begin(&j);
	pt_json_raw(&j, "true", 4);
	pt_json_str(&j, NULL);
	pt_json_strn(&j, "q\"", 2);
	pt_json_arr_end(&j);
	expect("[true,null,\"q\\\"\"]");
}

Test(json, sixteen_levels_deep)
{
	for (int i = 0; i < 16; i++)
		pt_json_arr_begin(&j);
	for (int i = 0; i < 16; i++)
		pt_json_arr_end(&j);
	expect("[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]");
}

Test(json, escapes_quotes_backslash_and_controls)
{
	const char in[] = "a\"b\\c/\b\f\n\r\t\x01\x1f\x7f end";

	pt_json_escape(&out, in, sizeof(in) - 1);
	expect("a\\\"b\\\\c/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f end");
}

Test(json, nul_byte_inside_strn_is_escaped)
{
	pt_json_strn(&j, "a\0b", 3);
	expect("\"a\\u0000b\"");
}

Test(json, keys_are_escaped_too)
{
	pt_json_obj_begin(&j);
	pt_json_key_int(&j, "we\"ird\n", 1);
	pt_json_obj_end(&j);
	expect("{\"we\\\"ird\\n\":1}");
}

Test(json, valid_utf8_passes_through)
{
	/* 2-, 3- and 4-byte sequences, including the edges U+0080, U+FFFF, U+10FFFF. */
	const char in[] =
	    "\xc2\x80 \xc3\xa9 \xe2\x82\xac \xef\xbf\xbf \xf0\x9f\x93\xa7 \xf4\x8f\xbf\xbf";

	pt_json_escape(&out, in, sizeof(in) - 1);
	expect(in);
}

Test(json, invalid_utf8_bytes_become_u00XX)
{
	struct {
		const char *in;
		const char *want;
	} cases[] = {
	    {"\xff", "\\u00ff"},
	    {"a\x80z", "a\\u0080z"},				  /* lone continuation */
	    {"\xc0\xaf", "\\u00c0\\u00af"},			  /* overlong '/' */
	    {"\xc3", "\\u00c3"},				  /* truncated at end */
	    {"\xc3(", "\\u00c3("},				  /* bad continuation */
	    {"\xe0\x80\x80", "\\u00e0\\u0080\\u0080"},		  /* overlong 3-byte */
	    {"\xed\xa0\x80", "\\u00ed\\u00a0\\u0080"},		  /* UTF-16 surrogate */
	    {"\xf4\x90\x80\x80", "\\u00f4\\u0090\\u0080\\u0080"}, /* > U+10FFFF */
	    {"\xf5\x80\x80\x80", "\\u00f5\\u0080\\u0080\\u0080"},
	    {"\xe2\x82", "\\u00e2\\u0082"}, /* truncated 3-byte */
	    {"ok\xe2\x82\xac\xfe", "ok\xe2\x82\xac\\u00fe"},
	};

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		pt_buf_reset(&out);
		pt_json_escape(&out, cases[i].in, strlen(cases[i].in));
		cr_assert_str_eq(pt_buf_cstr(&out), cases[i].want, "case %zu", i);
	}
}

Test(json, appends_to_existing_buffer)
{
	pt_buf_append_str(&out, "prefix ");
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "k", "v");
	pt_json_obj_end(&j);
	pt_buf_append_str(&out, "\n");
	expect("prefix {\"k\":\"v\"}\n");
}

/* Nesting deeper than the writer tracks is a bug of the caller: panic, not garbage. */
Test(json, nesting_past_16_panics, .signal = SIGABRT)
{
	for (int i = 0; i < 17; i++)
		pt_json_arr_begin(&j);
}

Test(json, closing_more_than_opened_panics, .signal = SIGABRT)
{
	pt_json_obj_begin(&j);
	pt_json_obj_end(&j);
	pt_json_obj_end(&j);
}
