/*
 * policy_egress_test.c -- kumo.make_egress_path and the
 * get_egress_path_config event: KumoMTA's defaults (no handler, nil, {}),
 * every key, every enable_tls value, connection_limit's string forms, the
 * handler's arguments, and the errors with their exact text and file:line
 * (KumoMTA-only keys refused by name, bad values, a wrong return type).
 */
#include "policy/policy.h"
#include "tests/unit/policy_test_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define HEAD "local kumo = require 'kumo'\n"

TestSuite(policy_egress, .init = dir_setup, .fini = dir_teardown);

static void assert_defaults(const struct policy_egress_path *e)
{
	cr_assert_eq(e->connection_limit, 32);
	cr_assert_eq(e->max_message_rate.n, 0);
	cr_assert_eq(e->max_connection_rate.n, 0);
	cr_assert_eq(e->max_deliveries_per_connection, 1024);
	cr_assert_eq(e->max_recipients_per_batch, 100);
	cr_assert_eq(e->enable_tls, POLICY_TLS_OPPORTUNISTIC);
	cr_assert_eq(e->enable_pipelining, true);
	cr_assert_eq(e->idle_timeout_ms, 60000);
	cr_assert_null(e->ehlo_domain);
	cr_assert_eq(e->smtp_port, 25);
	cr_assert_eq(e->connect_timeout_ms, 60000);
	cr_assert_eq(e->banner_timeout_ms, 60000);
	cr_assert_eq(e->ehlo_timeout_ms, 300000);
	cr_assert_eq(e->starttls_timeout_ms, 5000);
	cr_assert_eq(e->mail_from_timeout_ms, 300000);
	cr_assert_eq(e->rcpt_to_timeout_ms, 300000);
	cr_assert_eq(e->data_timeout_ms, 300000);
	cr_assert_eq(e->data_dot_timeout_ms, 300000);
	cr_assert_eq(e->rset_timeout_ms, 5000);
}


static void path_fails_with(const char *ret, int line, const char *msg)
{
	struct policy_egress_path e;
	char err[512], want[700];

	cr_assert_eq(path_for(ret, &e, err, sizeof(err)), PT_ERROR);
	snprintf(want, sizeof(want), "%s:%d: %s", test_path, line, msg);
	cr_assert_str_eq(err, want);
	assert_defaults(&e);
}

Test(policy_egress, no_handler_gives_kumomta_defaults)
{
	struct policy *p = load_ok(HEAD);
	struct policy_egress_path e;
	char err[256];

	cr_assert_eq(policy_get_egress_path_config(p, "example.com", "unspecified", "site", &e, err,
						   sizeof(err)),
		     PT_OK);
	assert_defaults(&e);
	policy_egress_path_free(&e);
	policy_free(p);
}

Test(policy_egress, nil_and_empty_give_defaults)
{
	struct policy_egress_path e;
	char err[256];

	cr_assert_eq(path_for("nil", &e, err, sizeof(err)), PT_OK);
	assert_defaults(&e);
	cr_assert_eq(path_for("kumo.make_egress_path {}", &e, err, sizeof(err)), PT_OK, "%s", err);
	assert_defaults(&e);
}

Test(policy_egress, every_key_is_stored)
{
	struct policy_egress_path e;
	char err[256];

	cr_assert_eq(
	    path_for("kumo.make_egress_path {\n"
		     "  connection_limit = 2, max_message_rate = '20/s',\n"
		     "  max_connection_rate = '1,000/hr', max_deliveries_per_connection = 7,\n"
		     "  max_recipients_per_batch = 3,\n"
		     "  enable_tls = 'RequiredInsecure', enable_pipelining = false,\n"
		     "  idle_timeout = '3s', ehlo_domain = 'out.example.net',\n"
		     "  smtp_port = 2525, connect_timeout = 1.5, banner_timeout = '2s',\n"
		     "  ehlo_timeout = '4s', starttls_timeout = '6s',\n"
		     "  mail_from_timeout = '7s', rcpt_to_timeout = '8s',\n"
		     "  data_timeout = '9s', data_dot_timeout = '10m',\n"
		     "  rset_timeout = '11s' }",
		     &e, err, sizeof(err)),
	    PT_OK, "%s", err);
	cr_assert_eq(e.connection_limit, 2);
	cr_assert_eq(e.max_message_rate.n, 20);
	cr_assert_eq(e.max_message_rate.period_ms, 1000);
	cr_assert_eq(e.max_connection_rate.n, 1000);
	cr_assert_eq(e.max_connection_rate.period_ms, 3600000);
	cr_assert_eq(e.max_deliveries_per_connection, 7);
	cr_assert_eq(e.max_recipients_per_batch, 3);
	cr_assert_eq(e.enable_tls, POLICY_TLS_REQUIRED_INSECURE);
	cr_assert_eq(e.enable_pipelining, false);
	cr_assert_eq(e.idle_timeout_ms, 3000);
	cr_assert_str_eq(e.ehlo_domain, "out.example.net");
	cr_assert_eq(e.smtp_port, 2525);
	cr_assert_eq(e.connect_timeout_ms, 1500);
	cr_assert_eq(e.banner_timeout_ms, 2000);
	cr_assert_eq(e.ehlo_timeout_ms, 4000);
	cr_assert_eq(e.starttls_timeout_ms, 6000);
	cr_assert_eq(e.mail_from_timeout_ms, 7000);
	cr_assert_eq(e.rcpt_to_timeout_ms, 8000);
	cr_assert_eq(e.data_timeout_ms, 9000);
	cr_assert_eq(e.data_dot_timeout_ms, 600000);
	cr_assert_eq(e.rset_timeout_ms, 11000);
	policy_egress_path_free(&e);
	assert_defaults(&e);
}

Test(policy_egress, enable_tls_values)
{
	static const struct {
		const char *name;
		enum policy_tls tls;
	} cases[] = {
	    {"Opportunistic", POLICY_TLS_OPPORTUNISTIC},
	    {"OpportunisticInsecure", POLICY_TLS_OPPORTUNISTIC_INSECURE},
	    {"Required", POLICY_TLS_REQUIRED},
	    {"RequiredInsecure", POLICY_TLS_REQUIRED_INSECURE},
	    {"Disabled", POLICY_TLS_DISABLED},
	};
	struct policy_egress_path e;
	char ret[128], err[256];

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		snprintf(ret, sizeof(ret), "kumo.make_egress_path { enable_tls = '%s' }",
			 cases[i].name);
		cr_assert_eq(path_for(ret, &e, err, sizeof(err)), PT_OK, "%s", err);
		cr_assert_eq(e.enable_tls, cases[i].tls, "%s", cases[i].name);
	}
}

Test(policy_egress, connection_limit_string_forms)
{
	static const struct {
		const char *value;
		unsigned limit;
	} cases[] = {
	    {"'1,000'", 1000}, {"'1_000'", 1000},	    {"'local:20'", 20},
	    {"'7'", 7},	       {"4294967295", 4294967295u}, {"'4,294,967,295'", 4294967295u},
	};
	struct policy_egress_path e;
	char ret[128], err[256];

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		snprintf(ret, sizeof(ret), "kumo.make_egress_path { connection_limit = %s }",
			 cases[i].value);
		cr_assert_eq(path_for(ret, &e, err, sizeof(err)), PT_OK, "%s", err);
		cr_assert_eq(e.connection_limit, cases[i].limit, "%s", cases[i].value);
	}
}

Test(policy_egress, handler_gets_its_arguments)
{
	struct policy *p =
	    load_ok(HEAD "kumo.on('get_egress_path_config', function(rd, source, site)\n"
			 "  return kumo.make_egress_path { ehlo_domain = rd .. '/' .. source ..\n"
			 "    '/' .. tostring(site) }\n"
			 "end)\n");
	struct policy_egress_path e;
	char err[256];

	cr_assert_eq(
	    policy_get_egress_path_config(p, "example.com", "ip-1", NULL, &e, err, sizeof(err)),
	    PT_OK, "%s", err);
	cr_assert_str_eq(e.ehlo_domain, "example.com/ip-1/nil");
	policy_egress_path_free(&e);
	policy_free(p);
}

Test(policy_egress, wrong_return_type_is_an_error_at_the_handler)
{
	path_fails_with("{ connection_limit = 2 }", 2,
			"get_egress_path_config must return kumo.make_egress_path{...} or nil, got "
			"table");
	path_fails_with("kumo.make_queue_config {}", 2,
			"get_egress_path_config must return kumo.make_egress_path{...} or nil, got "
			"userdata");
	path_fails_with("32", 2,
			"get_egress_path_config must return kumo.make_egress_path{...} or nil, got "
			"number");
}

Test(policy_egress, lua_error_in_handler_has_its_line)
{
	path_fails_with("source + 1", 3,
			"attempt to perform arithmetic on local 'source' (a string value)");
	path_fails_with("(kumo.make_egress_path { smtp_port = 0 })", 3,
			"make_egress_path: 'smtp_port' must be a whole number from 1 to 65535");
	path_fails_with("kumo.make_egress_path { smtp_port = 0 }", 2,
			"make_egress_path: 'smtp_port' must be a whole number from 1 to 65535");
}

Test(policy_egress, kumo_only_keys_are_refused_by_name)
{
	static const char *const keys[] = {
	    "additional_connection_limits",
	    "additional_message_rate_throttles",
	    "additional_source_selection_rates",
	    "allow_smtp_auth_plain_without_tls",
	    "consecutive_connection_failures_before_delay",
	    "enable_dane",
	    "enable_mta_sts",
	    "enable_rset",
	    "ip_lookup_strategy",
	    "opportunistic_tls_reconnect_on_failed_handshake",
	    "prohibited_hosts",
	    "reconnect_strategy",
	    "refresh_interval",
	    "remember_broken_tls",
	    "skip_hosts",
	    "smtp_auth_plain_username",
	    "source_selection_rate",
	    "suspended",
	    "system_shutdown_timeout",
	    "tls_certificate",
	    "tls_prefer_openssl",
	    "try_next_host_on_transport_error",
	    "use_lmtp",
	};
	char text[512], msg[256];

	for (size_t i = 0; i < PT_ARRAY_LEN(keys); i++) {
		snprintf(text, sizeof(text), HEAD "\nkumo.make_egress_path { %s = true }\n",
			 keys[i]);
		snprintf(msg, sizeof(msg),
			 "make_egress_path: '%s' is a KumoMTA option Petrel does not support yet",
			 keys[i]);
		load_fails_with(text, 3, msg);
	}
}

Test(policy_egress, bad_values_are_errors_with_line)
{
	static const struct {
		const char *args;
		const char *msg;
	} cases[] = {
	    {"{ conection_limit = 2 }", "'conection_limit' is not a make_egress_path option"},
	    {"{ enable_tls = 'Yes' }",
	     "make_egress_path: 'enable_tls' must be one of 'Opportunistic', "
	     "'OpportunisticInsecure', 'Required', 'RequiredInsecure', 'Disabled', got 'Yes'"},
	    {"{ enable_tls = 'required' }",
	     "make_egress_path: 'enable_tls' must be one of 'Opportunistic', "
	     "'OpportunisticInsecure', 'Required', 'RequiredInsecure', 'Disabled', got "
	     "'required'"},
	    {"{ enable_tls = true }",
	     "make_egress_path: 'enable_tls' must be one of 'Opportunistic', "
	     "'OpportunisticInsecure', 'Required', 'RequiredInsecure', 'Disabled', got boolean"},
	    {"{ connection_limit = 0 }", "make_egress_path: 'connection_limit' must be a whole "
					 "number from 1 to 4294967295"},
	    {"{ connection_limit = 2.5 }", "make_egress_path: 'connection_limit' must be a whole "
					   "number from 1 to 4294967295"},
	    {"{ connection_limit = 'lots' }",
	     "make_egress_path: 'connection_limit' must be a whole number from 1 to 4294967295, "
	     "or a string such as \"1,000\" or \"local:20\", got 'lots'"},
	    {"{ connection_limit = '0' }",
	     "make_egress_path: 'connection_limit' must be a whole number from 1 to 4294967295, "
	     "or a string such as \"1,000\" or \"local:20\", got '0'"},
	    {"{ connection_limit = '4294967296' }",
	     "make_egress_path: 'connection_limit' must be a whole number from 1 to 4294967295, "
	     "or a string such as \"1,000\" or \"local:20\", got '4294967296'"},
	    {"{ max_deliveries_per_connection = 0 }",
	     "make_egress_path: 'max_deliveries_per_connection' must be a whole number from 1 to "
	     "4294967295"},
	    {"{ max_recipients_per_batch = '5' }",
	     "make_egress_path: 'max_recipients_per_batch' must be a number, got string"},
	    {"{ max_ready = 50 }",
	     "make_egress_path: 'max_ready' is a KumoMTA option Petrel does not support yet"},
	    {"{ smtp_port = 65536 }",
	     "make_egress_path: 'smtp_port' must be a whole number from 1 to 65535"},
	    {"{ enable_pipelining = 'yes' }",
	     "make_egress_path: 'enable_pipelining' must be a boolean, got string"},
	    {"{ idle_timeout = 0 }", "make_egress_path: 'idle_timeout' must be longer than zero"},
	    {"{ rset_timeout = '5 parsecs' }",
	     "make_egress_path: 'rset_timeout': invalid duration '5 parsecs': unknown unit (use "
	     "ms, s, m, h, d or w, or their long names)"},
	    {"{ max_message_rate = '20' }",
	     "make_egress_path: 'max_message_rate': invalid rate '20': expected "
	     "\"<count>/<period>\" such as \"100/s\" or \"5000/h\""},
	    {"{ max_connection_rate = '0/s' }",
	     "make_egress_path: 'max_connection_rate': invalid rate '0/s': count must be greater "
	     "than zero"},
	    {"{ ehlo_domain = 'a b' }",
	     "make_egress_path: 'ehlo_domain' must be a domain or address literal of 1 to 255 "
	     "printable characters without spaces"},
	    {"{ ehlo_domain = 'x\\r\\nRSET' }",
	     "make_egress_path: 'ehlo_domain' must be a domain or address literal of 1 to 255 "
	     "printable characters without spaces"},
	    {"{ ehlo_domain = '' }",
	     "make_egress_path: 'ehlo_domain' must be a domain or address literal of 1 to 255 "
	     "printable characters without spaces"},
	    {"{ ehlo_domain = 5 }", "make_egress_path: 'ehlo_domain' must be a string, got number"},
	    {"nil", "make_egress_path: expected a table, got nil"},
	};
	char text[512];

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		snprintf(text, sizeof(text),
			 HEAD "kumo.on('init', function()\n"
			      "  kumo.make_egress_path(%s)\n"
			      "end)\n",
			 cases[i].args);
		load_fails_with(text, 3, cases[i].msg);
	}
}

Test(policy_egress, value_has_a_name_and_hidden_metatable)
{
	struct policy *p = load_ok(HEAD "local e = kumo.make_egress_path { connection_limit = 1 }\n"
					"assert(tostring(e) == 'EgressPathConfig', tostring(e))\n"
					"assert(getmetatable(e) == 'EgressPathConfig')\n");

	policy_free(p);
}
