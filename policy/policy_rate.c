/*
 * policy_rate.c -- rates ("throttle specs") as KumoMTA's policies write them:
 * max_message_rate and max_connection_rate of make_egress_path and
 * make_queue_config.
 *
 *     rate   = ["local:"] count "/" [scale] unit
 *     count  = digits, with "_" or "," allowed anywhere as separators
 *              ("1,000/h", "1_000/h"), at least 1
 *     scale  = digits, at least 1 ("100/10s" is 100 per 10 seconds)
 *     unit   = s | sec | second | m | min | minute | h | hr | hour | d | day
 *
 * This is KumoMTA's grammar (crates/throttle, ThrottleSpec::try_from), units
 * case-sensitive as there.  Two differences, both lenient-only: Petrel
 * allows spaces and tabs around each part ("100 / s"), which KumoMTA
 * refuses; and "local:" is accepted and means nothing, because every Petrel
 * throttle is local (KumoMTA uses it to opt out of Redis-shared throttles).
 * KumoMTA's ",max_burst=N" suffix is refused: Petrel's throttles have no
 * burst allowance yet, and silently dropping it would change the shaping.
 *
 * The result is n events per period_ms, kept as given rather than reduced
 * to a per-second figure, so "10/h" stays exact.
 */
#include "policy/policy_int.h"

#include <string.h>

struct rate_unit {
	const char *name;
	uint64_t seconds;
};

static const struct rate_unit rate_units[] = {
    {"s", 1},	 {"sec", 1},   {"second", 1},  {"m", 60},    {"min", 60},    {"minute", 60},
    {"h", 3600}, {"hr", 3600}, {"hour", 3600}, {"d", 86400}, {"day", 86400},
};

static bool rate_space(char c)
{
	return c == ' ' || c == '\t';
}

static const char *rate_skip_space(const char *s)
{
	while (rate_space(*s))
		s++;
	return s;
}

static bool rate_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* The count before '/': digits and separators.  *s is left after it. */
static int rate_count(const char **s, uint64_t *out, const char **why)
{
	const char *p = *s;
	uint64_t n = 0;
	bool any = false;

	for (; rate_digit(*p) || *p == '_' || *p == ','; p++) {
		uint64_t d;

		if (!rate_digit(*p))
			continue;
		d = (uint64_t)(*p - '0');
		if (n > (UINT64_MAX - d) / 10) {
			*why = "count too large";
			return PT_ERROR;
		}
		n = n * 10 + d;
		any = true;
	}
	if (!any) {
		*why = "expected a count such as \"100/s\"";
		return PT_ERROR;
	}
	if (n == 0) {
		*why = "count must be greater than zero";
		return PT_ERROR;
	}
	*s = p;
	*out = n;
	return PT_OK;
}

/* Seconds per unit for the n-byte name, or 0 when unknown. */
static uint64_t rate_unit_seconds(const char *name, size_t n)
{
	for (size_t i = 0; i < PT_ARRAY_LEN(rate_units); i++)
		if (strlen(rate_units[i].name) == n && memcmp(rate_units[i].name, name, n) == 0)
			return rate_units[i].seconds;
	return 0;
}

/* "[scale] unit" after the slash, to the end of the string. */
static int rate_period(const char *p, uint64_t *period_ms, const char **why)
{
	uint64_t scale = 0, unit;
	const char *start;
	bool scaled = false;

	for (; rate_digit(*p); p++, scaled = true) {
		uint64_t d = (uint64_t)(*p - '0');

		if (scale > (UINT64_MAX - d) / 10) {
			*why = "period too long";
			return PT_ERROR;
		}
		scale = scale * 10 + d;
	}
	if (!scaled)
		scale = 1;
	p = rate_skip_space(p);
	for (start = p; (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'); p++)
		;
	if (p == start) {
		*why = "expected a period unit after '/' (s, m, h or d)";
		return PT_ERROR;
	}
	if ((unit = rate_unit_seconds(start, (size_t)(p - start))) == 0) {
		*why = "unknown period unit (use s, sec, second, m, min, minute, h, hr, hour, "
		       "d or day)";
		return PT_ERROR;
	}
	if (scale == 0) {
		*why = "period must be longer than zero";
		return PT_ERROR;
	}
	if (scale > UINT64_MAX / 1000 / unit) {
		*why = "period too long";
		return PT_ERROR;
	}
	p = rate_skip_space(p);
	if (strncmp(p, ",max_burst=", 11) == 0) {
		*why = "max_burst is a KumoMTA option Petrel does not support yet";
		return PT_ERROR;
	}
	if (*p != '\0') {
		*why = "unexpected text after the period unit";
		return PT_ERROR;
	}
	*period_ms = scale * unit * 1000;
	return PT_OK;
}

int policy_rate_parse(const char *s, struct policy_rate *out, const char **why)
{
	struct policy_rate r;
	const char *p = rate_skip_space(s);

	if (strncmp(p, "local:", 6) == 0)
		p = rate_skip_space(p + 6);
	if (rate_count(&p, &r.n, why) != PT_OK)
		return PT_ERROR;
	p = rate_skip_space(p);
	if (*p != '/') {
		*why = "expected \"<count>/<period>\" such as \"100/s\" or \"5000/h\"";
		return PT_ERROR;
	}
	if (rate_period(rate_skip_space(p + 1), &r.period_ms, why) != PT_OK)
		return PT_ERROR;
	*out = r;
	return PT_OK;
}

void policy_rate_check(lua_State *L, int idx, const char *fn, const char *key,
		       struct policy_rate *out)
{
	const char *s, *why;
	size_t n;

	if (lua_type(L, idx) != LUA_TSTRING)
		policy_raise(L, "%s: '%s' must be a rate string such as \"100/s\", got %s", fn, key,
			     luaL_typename(L, idx));
	s = lua_tolstring(L, idx, &n);
	if (strlen(s) != n)
		policy_raise(L, "%s: '%s' contains a NUL byte", fn, key);
	if (policy_rate_parse(s, out, &why) != PT_OK)
		policy_raise(L, "%s: '%s': invalid rate '%s': %s", fn, key, s, why);
}
