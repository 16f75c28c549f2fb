/*
 * policy_duration.c -- durations as KumoMTA's policies write them.
 *
 * KumoMTA parses duration strings with Rust's humantime: one or more
 * "<integer><unit>" terms, optionally separated by spaces, with a space
 * allowed between number and unit ("60s", "5m", "1 hour", "2 days",
 * "1h 30m", "500ms").  Lua numbers are seconds.  Petrel keeps
 * milliseconds, so units below a millisecond (us, ns) are refused rather
 * than silently rounded to zero, and months/years (humantime's 30.44 and
 * 365.25 days) are refused as too vague for a timeout.
 *
 * Units are case-sensitive, as in humantime ("M" would be months there).
 */
#include "policy/policy_int.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

struct duration_unit {
	const char *name;
	uint64_t ms;
};

static const struct duration_unit duration_units[] = {
    {"ms", 1},		{"msec", 1},	     {"msecs", 1},	   {"millis", 1},
    {"millisecond", 1}, {"milliseconds", 1}, {"s", 1000},	   {"sec", 1000},
    {"secs", 1000},	{"second", 1000},    {"seconds", 1000},	   {"m", 60000},
    {"min", 60000},	{"mins", 60000},     {"minute", 60000},	   {"minutes", 60000},
    {"h", 3600000},	{"hr", 3600000},     {"hrs", 3600000},	   {"hour", 3600000},
    {"hours", 3600000}, {"d", 86400000},     {"day", 86400000},	   {"days", 86400000},
    {"w", 604800000},	{"week", 604800000}, {"weeks", 604800000},
};

/* Milliseconds per unit for the n-byte name, or 0 when unknown. */
static uint64_t duration_unit_ms(const char *name, size_t n)
{
	for (size_t i = 0; i < PT_ARRAY_LEN(duration_units); i++) {
		const char *u = duration_units[i].name;
		if (strlen(u) == n && memcmp(u, name, n) == 0)
			return duration_units[i].ms;
	}
	return 0;
}

int policy_duration_parse(const char *s, size_t n, uint64_t *out_ms, const char **why)
{
	size_t i = 0, terms = 0;
	uint64_t total = 0;

	for (;;) {
		uint64_t value = 0, unit;
		size_t start;

		while (i < n && isspace((unsigned char)s[i]))
			i++;
		if (i == n)
			break;
		if (!isdigit((unsigned char)s[i])) {
			*why = "expected a number";
			return PT_ERROR;
		}
		for (; i < n && isdigit((unsigned char)s[i]); i++) {
			if (value > (UINT64_MAX - 9) / 10) {
				*why = "too large";
				return PT_ERROR;
			}
			value = value * 10 + (uint64_t)(s[i] - '0');
		}
		while (i < n && s[i] == ' ')
			i++;
		start = i;
		while (i < n && isalpha((unsigned char)s[i]))
			i++;
		if (i == start) {
			*why = "missing unit (e.g. \"60s\", \"5m\", \"1 hour\")";
			return PT_ERROR;
		}
		unit = duration_unit_ms(s + start, i - start);
		if (unit == 0) {
			*why = "unknown unit (use ms, s, m, h, d or w, or their long names)";
			return PT_ERROR;
		}
		if (value > (UINT64_MAX - total) / unit) {
			*why = "too large";
			return PT_ERROR;
		}
		total += value * unit;
		terms++;
	}
	if (terms == 0) {
		*why = "empty duration";
		return PT_ERROR;
	}
	*out_ms = total;
	return PT_OK;
}

uint64_t policy_check_duration(lua_State *L, int idx, const char *what)
{
	const char *why;
	uint64_t ms;

	if (lua_type(L, idx) == LUA_TNUMBER) {
		lua_Number secs = lua_tonumber(L, idx);

		/* 2^53 ms is ~285,000 years: any finite value past it is a typo. */
		if (!isfinite(secs) || secs < 0 || secs * 1000 > 9007199254740992.0)
			policy_raise(L, "%s: duration must be a non-negative number of seconds",
				     what);
		return (uint64_t)llround(secs * 1000);
	}
	if (lua_type(L, idx) == LUA_TSTRING) {
		size_t n;
		const char *s = lua_tolstring(L, idx, &n);

		if (policy_duration_parse(s, n, &ms, &why) != PT_OK)
			policy_raise(L, "%s: invalid duration '%s': %s", what, s, why);
		return ms;
	}
	policy_raise(L, "%s: duration must be a number of seconds or a string like \"60s\", got %s",
		     what, luaL_typename(L, idx));
	return 0;
}
