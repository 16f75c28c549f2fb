/*
 * policy_automation.c -- make_egress_path's `automation` list: KumoMTA's
 * traffic-shaping automation rules, as its shaping.toml writes them.
 *
 *     automation = {
 *       { regex = '451 .*rate limited', action = 'Suspend', duration = '1h' },
 *       { regex = { 'too many', 'slow down' },
 *         action = { SetConfig = { name = 'connection_limit', value = 1 } },
 *         trigger = { Threshold = '3/min' }, duration = '30m' },
 *     }
 *
 * regex: a pattern or a list (PCRE2, which reads the Perl-style syntax of
 * KumoMTA's Rust regexes: \d, \s, (?i), non-greedy ...), matched anywhere
 * in the response line "451 4.7.1 text".  action: "Suspend" (the path
 * starts no connection or transaction until the duration is over) or
 * { SetConfig = { name, value } } (one make_egress_path option, checked as
 * make_egress_path checks it, in force for the duration), or a list of
 * them.  trigger: "Immediate" (the default) or { Threshold = "N/period" }
 * (N matches within the period).  duration: required.  match_internal:
 * whether Petrel's own responses (connection failures, timeouts) count.
 * KumoMTA's other actions (SuspendTenant, SuspendCampaign, SetDomainConfig,
 * Bounce, BounceTenant, BounceCampaign) are refused by name.
 *
 * The rules are compiled once here and shared, reference-counted, by every
 * copy of the path config on the shard (shard/shard_automation.c runs them).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "policy/policy_int.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTO_FN	       "make_egress_path: automation"
#define AUTO_MAX_RULES 64
#define AUTO_MAX_EACH  16 /* regexes or actions in one rule */

static const char *const rule_keys[] = {"regex",    "action",	      "trigger",
					"duration", "match_internal", NULL};
static const char *const no_keys[] = {NULL};
static const char *const kumo_actions[] = {"SuspendTenant",
					   "SuspendCampaign",
					   "SetDomainConfig",
					   "Bounce",
					   "BounceTenant",
					   "BounceCampaign",
					   NULL};

static void rule_free(struct policy_auto_rule *r)
{
	for (size_t i = 0; i < r->n_regex; i++)
		pcre2_code_free(r->regex[i]);
	free(r->regex);
	for (size_t i = 0; i < r->n_actions; i++) {
		free(r->actions[i].text);
		if (r->actions[i].value) {
			policy_egress_path_free(r->actions[i].value);
			free(r->actions[i].value);
		}
	}
	free(r->actions);
	free(r->text);
}

static void automation_free(struct policy_automation *a)
{
	for (size_t i = 0; i < a->n_rules; i++)
		rule_free(&a->rules[i]);
	free(a->rules);
	free(a);
}

struct policy_automation *policy_automation_ref(struct policy_automation *a)
{
	if (a)
		a->refs++;
	return a;
}

void policy_automation_unref(struct policy_automation *a)
{
	if (a && --a->refs == 0)
		automation_free(a);
}

/* The userdata that owns a half-built automation while a check may raise. */
static int holder_gc(lua_State *L)
{
	struct policy_automation **slot = lua_touserdata(L, 1);

	if (*slot)
		policy_automation_unref(*slot);
	*slot = NULL;
	return 0;
}

static void *checked_calloc(lua_State *L, size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (!p)
		policy_raise(L, "%s: out of memory", AUTO_FN);
	return p;
}

/* The strings of a string-or-list value at idx (one or more), counted. */
static size_t one_or_many(lua_State *L, int idx, size_t rule, const char *key)
{
	size_t n;

	if (lua_type(L, idx) == LUA_TSTRING)
		return 1;
	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L, "%s: rule %zu: '%s' must be a string or a list, got %s", AUTO_FN,
			     rule, key, luaL_typename(L, idx));
	n = lua_objlen(L, idx);
	if (n == 0 || n > AUTO_MAX_EACH)
		policy_raise(L, "%s: rule %zu: '%s' must have 1 to %d entries", AUTO_FN, rule, key,
			     AUTO_MAX_EACH);
	return n;
}

static void rule_regexes(lua_State *L, int idx, size_t rule, struct policy_auto_rule *r)
{
	size_t n = one_or_many(L, idx, rule, "regex");
	struct pt_buf text = PT_BUF_INIT;

	r->regex = checked_calloc(L, n, sizeof(*r->regex));
	for (size_t i = 0; i < n; i++) {
		const char *pat;
		size_t len;
		int code;
		PCRE2_SIZE off;

		if (lua_type(L, idx) == LUA_TTABLE)
			lua_rawgeti(L, idx, (int)i + 1);
		else
			lua_pushvalue(L, idx);
		if (lua_type(L, -1) != LUA_TSTRING)
			policy_raise(L, "%s: rule %zu: regex %zu must be a string, got %s", AUTO_FN,
				     rule, i + 1, luaL_typename(L, -1));
		pat = lua_tolstring(L, -1, &len);
		r->regex[i] = pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_UTF, &code, &off, NULL);
		if (!r->regex[i]) {
			PCRE2_UCHAR msg[256];

			pcre2_get_error_message(code, msg, sizeof(msg));
			pt_buf_free(&text);
			policy_raise(L, "%s: rule %zu: regex '%s': %s at offset %zu", AUTO_FN, rule,
				     pat, (const char *)msg, (size_t)off);
		}
		r->n_regex = i + 1;
		if ((text.len && pt_buf_append_str(&text, " | ") != PT_OK) ||
		    pt_buf_append(&text, pat, len) != PT_OK) {
			pt_buf_free(&text);
			policy_raise(L, "%s: out of memory", AUTO_FN);
		}
		lua_pop(L, 1);
	}
	r->text = strdup(pt_buf_cstr(&text) ? pt_buf_cstr(&text) : "");
	pt_buf_free(&text);
	if (!r->text)
		policy_raise(L, "%s: out of memory", AUTO_FN);
}

/* { SetConfig = { name = 'x', value = v } } at the top of the stack into a. */
static void action_set_config(lua_State *L, size_t rule, struct policy_auto_action *a)
{
	int t = lua_gettop(L), field;
	const char *name;
	char text[300];

	lua_getfield(L, t, "SetConfig");
	if (lua_type(L, -1) != LUA_TTABLE)
		policy_raise(L,
			     "%s: rule %zu: SetConfig must be a table { name = ..., value = ... }",
			     AUTO_FN, rule);
	lua_getfield(L, -1, "name");
	if (lua_type(L, -1) != LUA_TSTRING)
		policy_raise(L, "%s: rule %zu: SetConfig needs a 'name'", AUTO_FN, rule);
	name = lua_tostring(L, -1);
	field = policy_egress_field_index(name);
	if (field < 0)
		policy_raise(L,
			     "%s: rule %zu: SetConfig: '%s' is not a make_egress_path option "
			     "Petrel can set",
			     AUTO_FN, rule, name);
	lua_getfield(L, -2, "value");
	if (lua_isnil(L, -1))
		policy_raise(L, "%s: rule %zu: SetConfig needs a 'value'", AUTO_FN, rule);
	a->kind = POLICY_AUTO_SET_CONFIG;
	a->field = field;
	a->value = checked_calloc(L, 1, sizeof(*a->value));
	policy_egress_path_defaults(a->value);
	policy_egress_field_parse(L, lua_gettop(L), a->value, field);
	lua_pushvalue(L, -1);
	snprintf(text, sizeof(text), "SetConfig %s=%s", name,
		 lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
		     ? lua_tostring(L, -1)
		     : luaL_typename(L, -1));
	a->text = strdup(text);
	if (!a->text)
		policy_raise(L, "%s: out of memory", AUTO_FN);
	lua_settop(L, t);
}

static void rule_actions(lua_State *L, int idx, size_t rule, struct policy_auto_rule *r)
{
	/* A list of actions is a sequence; one action is a string or a
	 * { SetConfig = ... } table (no [1]). */
	bool list = lua_type(L, idx) == LUA_TTABLE && lua_objlen(L, idx) > 0;
	size_t n = list ? one_or_many(L, idx, rule, "action") : 1;

	if (!list && lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L,
			     "%s: rule %zu: 'action' must be \"Suspend\", { SetConfig = ... } "
			     "or a list of them, got %s",
			     AUTO_FN, rule, luaL_typename(L, idx));
	r->actions = checked_calloc(L, n, sizeof(*r->actions));
	for (size_t i = 0; i < n; i++) {
		struct policy_auto_action *a = &r->actions[i];

		if (list)
			lua_rawgeti(L, idx, (int)i + 1);
		else
			lua_pushvalue(L, idx);
		r->n_actions = i + 1;
		if (lua_type(L, -1) == LUA_TSTRING) {
			const char *v = lua_tostring(L, -1);

			if (policy_config_name_in(kumo_actions, v))
				policy_raise(L,
					     "%s: rule %zu: action '%s' is a KumoMTA action Petrel "
					     "does not support yet",
					     AUTO_FN, rule, v);
			if (strcmp(v, "Suspend") != 0)
				policy_raise(L, "%s: rule %zu: unknown action '%s'", AUTO_FN, rule,
					     v);
			a->kind = POLICY_AUTO_SUSPEND;
			if (!(a->text = strdup("Suspend")))
				policy_raise(L, "%s: out of memory", AUTO_FN);
		} else if (lua_type(L, -1) == LUA_TTABLE) {
			lua_getfield(L, -1, "SetConfig");
			if (lua_isnil(L, -1)) {
				lua_pop(L, 1);
				lua_pushnil(L);
				if (lua_next(L, -2) && lua_type(L, -2) == LUA_TSTRING &&
				    policy_config_name_in(kumo_actions, lua_tostring(L, -2)))
					policy_raise(L,
						     "%s: rule %zu: action '%s' is a KumoMTA "
						     "action Petrel does not support yet",
						     AUTO_FN, rule, lua_tostring(L, -2));
				policy_raise(L,
					     "%s: rule %zu: an action table must be "
					     "{ SetConfig = { name = ..., value = ... } }",
					     AUTO_FN, rule);
			}
			lua_pop(L, 1);
			action_set_config(L, rule, a);
		} else {
			policy_raise(L,
				     "%s: rule %zu: action %zu must be a string or a table, got %s",
				     AUTO_FN, rule, i + 1, luaL_typename(L, -1));
		}
		lua_pop(L, 1);
	}
}

static void rule_trigger(lua_State *L, int idx, size_t rule, struct policy_auto_rule *r)
{
	struct policy_rate rate;

	if (lua_type(L, idx) == LUA_TSTRING && strcmp(lua_tostring(L, idx), "Immediate") == 0)
		return;
	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L,
			     "%s: rule %zu: 'trigger' must be \"Immediate\" or "
			     "{ Threshold = \"N/period\" }",
			     AUTO_FN, rule);
	lua_getfield(L, idx, "Threshold");
	if (lua_isnil(L, -1))
		policy_raise(L,
			     "%s: rule %zu: 'trigger' must be \"Immediate\" or "
			     "{ Threshold = \"N/period\" }",
			     AUTO_FN, rule);
	policy_rate_check(L, lua_gettop(L), AUTO_FN, "Threshold", &rate);
	r->threshold_n = rate.n;
	r->threshold_period_ms = rate.period_ms;
	lua_pop(L, 1);
}

static void rule_parse(lua_State *L, int idx, size_t rule, struct policy_auto_rule *r)
{
	char fn[64];

	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L, "%s: rule %zu must be a table, got %s", AUTO_FN, rule,
			     luaL_typename(L, idx));
	snprintf(fn, sizeof(fn), "%s: rule %zu", AUTO_FN, rule);
	policy_config_check_keys(L, idx, fn, NULL, rule_keys, no_keys);
	lua_getfield(L, idx, "regex");
	if (lua_isnil(L, -1))
		policy_raise(L, "%s: rule %zu: 'regex' is required", AUTO_FN, rule);
	rule_regexes(L, lua_gettop(L), rule, r);
	lua_getfield(L, idx, "action");
	if (lua_isnil(L, -1))
		policy_raise(L, "%s: rule %zu: 'action' is required", AUTO_FN, rule);
	rule_actions(L, lua_gettop(L), rule, r);
	lua_getfield(L, idx, "trigger");
	if (!lua_isnil(L, -1))
		rule_trigger(L, lua_gettop(L), rule, r);
	lua_getfield(L, idx, "duration");
	if (lua_isnil(L, -1))
		policy_raise(L, "%s: rule %zu: 'duration' is required", AUTO_FN, rule);
	r->duration_ms = policy_config_check_timeout(L, lua_gettop(L), fn, "duration");
	lua_getfield(L, idx, "match_internal");
	r->match_internal =
	    !lua_isnil(L, -1) && policy_config_check_bool(L, lua_gettop(L), fn, "match_internal");
	lua_pop(L, 5);
}

struct policy_automation *policy_automation_parse(lua_State *L, int idx)
{
	struct policy_automation **slot, *a;
	size_t n;

	idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L, "%s: must be a list of rules, got %s", AUTO_FN,
			     luaL_typename(L, idx));
	n = lua_objlen(L, idx);
	if (n > AUTO_MAX_RULES)
		policy_raise(L, "%s: at most %d rules", AUTO_FN, AUTO_MAX_RULES);
	slot = lua_newuserdata(L, sizeof(*slot));
	*slot = NULL;
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, holder_gc);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	a = *slot = checked_calloc(L, 1, sizeof(*a));
	a->refs = 1;
	a->rules = checked_calloc(L, n, sizeof(*a->rules));
	for (size_t i = 0; i < n; i++) {
		lua_rawgeti(L, idx, (int)i + 1);
		a->n_rules = i + 1;
		rule_parse(L, lua_gettop(L), i + 1, &a->rules[i]);
		lua_pop(L, 1);
	}
	*slot = NULL; /* the caller owns it now */
	lua_pop(L, 1);
	return a;
}

bool policy_auto_rule_matches(const struct policy_auto_rule *r, const char *line, size_t n)
{
	for (size_t i = 0; i < r->n_regex; i++) {
		pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->regex[i], NULL);
		int rc;

		if (!md)
			return false;
		rc = pcre2_match(r->regex[i], (PCRE2_SPTR)line, n, 0, 0, md, NULL);
		pcre2_match_data_free(md);
		if (rc >= 0)
			return true;
	}
	return false;
}
