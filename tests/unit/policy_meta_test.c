/*
 * policy_meta_test.c -- policy_meta_string: JSON strings unescaped, numbers
 * and booleans as their JSON text, the refused kinds (null, objects,
 * arrays, bad text, \u0000), and truncation at a UTF-8 character boundary.
 */
#include "policy/policy.h"

#include <criterion/criterion.h>
#include <string.h>

Test(policy_meta, string_values)
{
	static const struct {
		const char *json;
		const char *want;
	} cases[] = {
	    {"\"acme\"", "acme"},
	    {"\"\"", ""},
	    {"  \"spaced\" \n", "spaced"},
	    {"\"a\\\"b\\\\c\\/d\"", "a\"b\\c/d"},
	    {"\"tab\\there\"", "tab\there"},
	    {"\"caf\\u00e9\"", "caf\xc3\xa9"},
	    {"\"caf\xc3\xa9\"", "caf\xc3\xa9"},
	    {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80"},
	    {"42", "42"},
	    {"-7", "-7"},
	    {"1.5", "1.5"},
	    {" 1e+300\t", "1e+300"},
	    {"0.1", "0.1"},
	    {"true", "true"},
	    {"false", "false"},
	};
	char out[64];

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		memset(out, 'x', sizeof(out));
		cr_assert_eq(policy_meta_string(cases[i].json, out, sizeof(out)), PT_OK, "%s",
			     cases[i].json);
		cr_assert_str_eq(out, cases[i].want, "%s", cases[i].json);
	}
}

Test(policy_meta, refused_values)
{
	static const char *const cases[] = {
	    "null", "{}",     "{\"a\":1}",     "[]",  "[\"a\"]", "",
	    "acme", "\"open", "\"a\\u0000b\"", "1 2", "tru",	 "\"bad \\x escape\"",
	};
	char out[16];

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		memset(out, 'x', sizeof(out));
		cr_assert_eq(policy_meta_string(cases[i], out, sizeof(out)), PT_ERROR, "%s",
			     cases[i]);
		cr_assert_str_eq(out, "", "%s", cases[i]);
	}
	cr_assert_eq(policy_meta_string(NULL, out, sizeof(out)), PT_ERROR);
	cr_assert_eq(policy_meta_string("\"a\"", out, 0), PT_ERROR);
}

Test(policy_meta, long_values_are_cut_at_a_character_boundary)
{
	char out[6];

	cr_assert_eq(policy_meta_string("\"abcdefgh\"", out, sizeof(out)), PT_OK);
	cr_assert_str_eq(out, "abcde");
	/* "abc" then é (2 bytes) fits exactly in 5 bytes. */
	cr_assert_eq(policy_meta_string("\"abc\\u00e9xyz\"", out, sizeof(out)), PT_OK);
	cr_assert_str_eq(out, "abc\xc3\xa9");
	/* "abcd" then é would need 6 bytes: é is dropped whole. */
	cr_assert_eq(policy_meta_string("\"abcd\\u00e9\"", out, sizeof(out)), PT_OK);
	cr_assert_str_eq(out, "abcd");
	/* A 4-byte character after 2 bytes: nothing of it is kept. */
	cr_assert_eq(policy_meta_string("\"ab\\ud83d\\ude00\"", out, sizeof(out)), PT_OK);
	cr_assert_str_eq(out, "ab");
	cr_assert_eq(policy_meta_string("123456789", out, sizeof(out)), PT_OK);
	cr_assert_str_eq(out, "12345");
	cr_assert_eq(policy_meta_string("\"x\"", out, 1), PT_OK);
	cr_assert_str_eq(out, "");
}
