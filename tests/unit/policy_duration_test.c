/*
 * policy_duration_test.c -- the duration parser behind every timeout a
 * policy sets: KumoMTA's forms ("60s", "5m", "1 hour", "2 days", "500ms",
 * "1h 30m") in exact milliseconds, and the malformed ones refused with the
 * reason.
 */
#include "policy/policy_int.h"

#include <criterion/criterion.h>
#include <string.h>

static uint64_t parse_ok(const char *s)
{
	const char *why = NULL;
	uint64_t ms = 0xdeadbeef;

	cr_assert_eq(policy_duration_parse(s, strlen(s), &ms, &why), PT_OK, "'%s': %s", s,
		     why ? why : "");
	return ms;
}

static void parse_fails(const char *s, const char *why_expected)
{
	const char *why = NULL;
	uint64_t ms = 12345;

	cr_assert_eq(policy_duration_parse(s, strlen(s), &ms, &why), PT_ERROR, "'%s' parsed", s);
	cr_assert_str_eq(why, why_expected, "'%s'", s);
	cr_assert_eq(ms, 12345, "output must be untouched on error");
}

Test(policy_duration, kumomta_forms)
{
	cr_assert_eq(parse_ok("60s"), 60000);
	cr_assert_eq(parse_ok("5m"), 300000);
	cr_assert_eq(parse_ok("1 hour"), 3600000);
	cr_assert_eq(parse_ok("2 days"), 172800000);
	cr_assert_eq(parse_ok("500ms"), 500);
	cr_assert_eq(parse_ok("7 days"), 604800000);
	cr_assert_eq(parse_ok("20m"), 1200000);
	cr_assert_eq(parse_ok("1w"), 604800000);
	cr_assert_eq(parse_ok("3 weeks"), 3ull * 604800000);
}

Test(policy_duration, long_and_short_unit_names)
{
	cr_assert_eq(parse_ok("1sec"), 1000);
	cr_assert_eq(parse_ok("2 seconds"), 2000);
	cr_assert_eq(parse_ok("1 second"), 1000);
	cr_assert_eq(parse_ok("3min"), 180000);
	cr_assert_eq(parse_ok("3 minutes"), 180000);
	cr_assert_eq(parse_ok("2hr"), 7200000);
	cr_assert_eq(parse_ok("2hrs"), 7200000);
	cr_assert_eq(parse_ok("4h"), 14400000);
	cr_assert_eq(parse_ok("1d"), 86400000);
	cr_assert_eq(parse_ok("1 day"), 86400000);
	cr_assert_eq(parse_ok("250msec"), 250);
	cr_assert_eq(parse_ok("250 milliseconds"), 250);
}

Test(policy_duration, compound_terms_add_up)
{
	cr_assert_eq(parse_ok("1h 30m"), 5400000);
	cr_assert_eq(parse_ok("1h30m"), 5400000);
	cr_assert_eq(parse_ok("1 day 2 hours 3 minutes 4 seconds 5ms"),
		     86400000ull + 7200000 + 180000 + 4000 + 5);
	cr_assert_eq(parse_ok("  10 s  "), 10000);
	cr_assert_eq(parse_ok("0s"), 0);
}

Test(policy_duration, malformed_is_refused_with_reason)
{
	parse_fails("", "empty duration");
	parse_fails("   ", "empty duration");
	parse_fails("30", "missing unit (e.g. \"60s\", \"5m\", \"1 hour\")");
	parse_fails("1.5h", "missing unit (e.g. \"60s\", \"5m\", \"1 hour\")");
	parse_fails("5 parsecs", "unknown unit (use ms, s, m, h, d or w, or their long names)");
	parse_fails("5M", "unknown unit (use ms, s, m, h, d or w, or their long names)");
	parse_fails("10us", "unknown unit (use ms, s, m, h, d or w, or their long names)");
	parse_fails("m", "expected a number");
	parse_fails("-5s", "expected a number");
	parse_fails("5s,", "expected a number");
	parse_fails("99999999999999999999s", "too large");
	parse_fails("18446744073709551w", "too large");
}

Test(policy_duration, length_is_respected_not_nul)
{
	const char *why = NULL;
	uint64_t ms = 0;

	/* Only the first 3 bytes count: "60s" of "60sXYZ". */
	cr_assert_eq(policy_duration_parse("60sXYZ", 3, &ms, &why), PT_OK);
	cr_assert_eq(ms, 60000);
}
