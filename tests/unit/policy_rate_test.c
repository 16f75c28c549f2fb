/*
 * policy_rate_test.c -- policy_rate_parse, table-driven: every unit and its
 * long names, counted periods ("100/10s"), digit separators, the "local:"
 * prefix, spaces, and each error with its reason (and out left alone).
 */
#include "policy/policy.h"

#include <criterion/criterion.h>
#include <string.h>

Test(policy_rate, valid_rates)
{
	static const struct {
		const char *text;
		uint64_t n, period_ms;
	} cases[] = {
	    {"100/s", 100, 1000},
	    {"10/sec", 10, 1000},
	    {"10/second", 10, 1000},
	    {"50/m", 50, 60000},
	    {"500/min", 500, 60000},
	    {"50/minute", 50, 60000},
	    {"10000/h", 10000, 3600000},
	    {"1000/hr", 1000, 3600000},
	    {"20/hour", 20, 3600000},
	    {"5/d", 5, 86400000},
	    {"5/day", 5, 86400000},
	    {"100/10s", 100, 10000},
	    {"100/123m", 100, 123 * 60000},
	    {"1,000/hr", 1000, 3600000},
	    {"1_000/h", 1000, 3600000},
	    {"1_0,0/hour", 100, 3600000},
	    {"10_000/d", 10000, 86400000},
	    {"local:100/hr", 100, 3600000},
	    {" 100 / s ", 100, 1000},
	    {"\t20/ 10 s", 20, 10000},
	    {"1/1s", 1, 1000},
	    {"18446744073709551615/s", UINT64_MAX, 1000},
	    {"1/213503982334d", 1, 213503982334ull * 86400000},
	};

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		struct policy_rate r = {0, 0};
		const char *why = NULL;

		cr_assert_eq(policy_rate_parse(cases[i].text, &r, &why), PT_OK, "'%s': %s",
			     cases[i].text, why);
		cr_assert_eq(r.n, cases[i].n, "'%s'", cases[i].text);
		cr_assert_eq(r.period_ms, cases[i].period_ms, "'%s'", cases[i].text);
	}
}

Test(policy_rate, invalid_rates)
{
	static const struct {
		const char *text;
		const char *why;
	} cases[] = {
	    {"", "expected a count such as \"100/s\""},
	    {"/s", "expected a count such as \"100/s\""},
	    {"-5/s", "expected a count such as \"100/s\""},
	    {"three/hour", "expected a count such as \"100/s\""},
	    {"_,/s", "expected a count such as \"100/s\""},
	    {"0/s", "count must be greater than zero"},
	    {"0_0/s", "count must be greater than zero"},
	    {"18446744073709551616/s", "count too large"},
	    {"100", "expected \"<count>/<period>\" such as \"100/s\" or \"5000/h\""},
	    {"100 per s", "expected \"<count>/<period>\" such as \"100/s\" or \"5000/h\""},
	    {"1.5/s", "expected \"<count>/<period>\" such as \"100/s\" or \"5000/h\""},
	    {"100/", "expected a period unit after '/' (s, m, h or d)"},
	    {"100/10", "expected a period unit after '/' (s, m, h or d)"},
	    {"100/our", "unknown period unit (use s, sec, second, m, min, minute, h, hr, hour, d "
			"or day)"},
	    {"100/S", "unknown period unit (use s, sec, second, m, min, minute, h, hr, hour, d "
		      "or day)"},
	    {"100/hours", "unknown period unit (use s, sec, second, m, min, minute, h, hr, hour, "
			  "d or day)"},
	    {"100/ms", "unknown period unit (use s, sec, second, m, min, minute, h, hr, hour, d "
		       "or day)"},
	    {"100/0s", "period must be longer than zero"},
	    {"100/00h", "period must be longer than zero"},
	    {"100/213503982335d", "period too long"},
	    {"100/99999999999999999999s", "period too long"},
	    {"50/day,max_burst=1", "max_burst is a KumoMTA option Petrel does not support yet"},
	    {"100/s/s", "unexpected text after the period unit"},
	    {"100/s x", "unexpected text after the period unit"},
	    {"local:", "expected a count such as \"100/s\""},
	};

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		struct policy_rate r = {7, 9};
		const char *why = NULL;

		cr_assert_eq(policy_rate_parse(cases[i].text, &r, &why), PT_ERROR, "'%s'",
			     cases[i].text);
		cr_assert_str_eq(why, cases[i].why, "'%s'", cases[i].text);
		cr_assert_eq(r.n, 7, "'%s' changed out", cases[i].text);
		cr_assert_eq(r.period_ms, 9, "'%s' changed out", cases[i].text);
	}
}
