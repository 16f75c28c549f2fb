/*
 * policy_automation_test.c -- make_egress_path's `automation` rules
 * (policy_automation.c): their parsed form (regexes compiled, actions,
 * triggers, durations), matching response lines, the copy a path config
 * hands the shard sharing the rules, and the errors, with file:line.
 */
#include "policy/policy.h"
#include "tests/unit/policy_test_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define HEAD "local kumo = require 'kumo'\n"

TestSuite(policy_automation, .init = dir_setup, .fini = dir_teardown);


static bool matches(const struct policy_auto_rule *r, const char *line)
{
	return policy_auto_rule_matches(r, line, strlen(line));
}

Test(policy_automation, rules_are_parsed_and_outlive_the_state)
{
	struct policy_egress_path e;
	char err[512];
	const struct policy_auto_rule *r;

	cr_assert_eq(
	    path_for("kumo.make_egress_path { connection_limit = 5, automation = {\n"
		     "  { regex = '451 .*rate limited', action = 'Suspend', duration = '90m' },\n"
		     "  { regex = { '(?i)too many', '^421 ' }, match_internal = true,\n"
		     "    action = { 'Suspend', { SetConfig = { name = 'connection_limit', value = "
		     "1 } } },\n"
		     "    trigger = { Threshold = '3/min' }, duration = 600 },\n"
		     "} }",
		     &e, err, sizeof(err)),
	    PT_OK, "%s", err);
	cr_assert_eq(e.connection_limit, 5);
	cr_assert_not_null(e.automation);
	cr_assert_eq(e.automation->n_rules, 2);
	r = &e.automation->rules[0];
	cr_assert_str_eq(r->text, "451 .*rate limited");
	cr_assert_eq(r->n_actions, 1);
	cr_assert_eq(r->actions[0].kind, POLICY_AUTO_SUSPEND);
	cr_assert_eq(r->threshold_n, 0);
	cr_assert_eq(r->duration_ms, 90ull * 60 * 1000);
	cr_assert_not(r->match_internal);
	cr_assert(matches(r, "451 4.7.1 you are rate limited, slow down"));
	cr_assert_not(matches(r, "452 4.7.1 rate limited"));
	r = &e.automation->rules[1];
	cr_assert_str_eq(r->text, "(?i)too many | ^421 ");
	cr_assert(matches(r, "450 4.2.1 TOO MANY connections"));
	cr_assert(matches(r, "421 4.3.2 closing"));
	cr_assert_not(matches(r, "550 5.1.1 421 unknown"));
	cr_assert_eq(r->n_actions, 2);
	cr_assert_eq(r->actions[1].kind, POLICY_AUTO_SET_CONFIG);
	cr_assert_str_eq(r->actions[1].text, "SetConfig connection_limit=1");
	cr_assert_eq(r->actions[1].value->connection_limit, 1);
	cr_assert_eq(r->threshold_n, 3);
	cr_assert_eq(r->threshold_period_ms, 60000);
	cr_assert_eq(r->duration_ms, 600000);
	cr_assert(r->match_internal);
	/* SetConfig's value goes onto another path config by field. */
	{
		struct policy_egress_path other;

		policy_egress_path_defaults(&other);
		policy_egress_field_copy(&other, r->actions[1].value, r->actions[1].field);
		cr_assert_eq(other.connection_limit, 1);
		cr_assert_eq(other.max_deliveries_per_connection, 1024);
	}
	policy_egress_path_free(&e);
	cr_assert_null(e.automation);
}

Test(policy_automation, set_config_rate)
{
	struct policy_egress_path e;
	char err[512];
	const struct policy_auto_action *a;

	cr_assert_eq(path_for("kumo.make_egress_path { automation = { { regex = 'x', duration = "
			      "'1h', action = { SetConfig = { name = 'max_message_rate', value = "
			      "'5/min' } } } } }",
			      &e, err, sizeof(err)),
		     PT_OK, "%s", err);
	a = &e.automation->rules[0].actions[0];
	cr_assert_eq(a->value->max_message_rate.n, 5);
	cr_assert_eq(a->value->max_message_rate.period_ms, 60000);
	policy_egress_path_free(&e);
}

static void make_fails(const char *automation, const char *msg)
{
	char text[2048];

	snprintf(text, sizeof(text), HEAD "local p = kumo.make_egress_path { automation = %s }\n",
		 automation);
	load_fails_with(text, 2, msg);
}

Test(policy_automation, errors_name_the_rule)
{
	make_fails("'x'", "make_egress_path: automation: must be a list of rules, got string");
	make_fails("{ { action = 'Suspend', duration = '1h' } }",
		   "make_egress_path: automation: rule 1: 'regex' is required");
	make_fails("{ { regex = 'a', duration = '1h' } }",
		   "make_egress_path: automation: rule 1: 'action' is required");
	make_fails("{ { regex = 'a', action = 'Suspend' } }",
		   "make_egress_path: automation: rule 1: 'duration' is required");
	make_fails("{ { regex = 'a', action = 'Suspend', duration = '1h' }, { regex = '(', "
		   "action = 'Suspend', duration = '1h' } }",
		   "make_egress_path: automation: rule 2: regex '(': missing closing parenthesis "
		   "at offset 1");
	make_fails("{ { regex = 'a', action = 'Bounce', duration = '1h' } }",
		   "make_egress_path: automation: rule 1: action 'Bounce' is a KumoMTA action "
		   "Petrel does not support yet");
	make_fails("{ { regex = 'a', action = 'Pause', duration = '1h' } }",
		   "make_egress_path: automation: rule 1: unknown action 'Pause'");
	make_fails("{ { regex = 'a', duration = '1h', action = { SetConfig = { name = "
		   "'connection_limt', value = 1 } } } }",
		   "make_egress_path: automation: rule 1: SetConfig: 'connection_limt' is not a "
		   "make_egress_path option Petrel can set");
	make_fails("{ { regex = 'a', duration = '1h', action = { SetConfig = { name = "
		   "'connection_limit', value = 'lots' } } } }",
		   "make_egress_path: 'connection_limit' must be a whole number from 1 to "
		   "4294967295, or a string such as \"1,000\" or \"local:20\", got 'lots'");
	make_fails("{ { regex = 'a', action = 'Suspend', duration = '1h', trigger = 'Later' } }",
		   "make_egress_path: automation: rule 1: 'trigger' must be \"Immediate\" or { "
		   "Threshold = \"N/period\" }");
	make_fails("{ { regex = 'a', action = 'Suspend', duration = '1h', colour = 'red' } }",
		   "make_egress_path: automation: rule 1: unknown key 'colour'");
}
