/*
 * policy_queue_test.c -- kumo.make_queue_config and the get_queue_config
 * event: the defaults with no handler and with a nil result, every key,
 * every mx_list form, the arguments the handler gets (nil for NULL), a
 * value reused across calls, and the errors with their exact text and
 * file:line (unknown and KumoMTA-only keys, bad values, a wrong return
 * type, a Lua error in the handler).
 */
#include "policy/policy.h"
#include "tests/unit/policy_test_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define HEAD "local kumo = require 'kumo'\n"

TestSuite(policy_queue, .init = dir_setup, .fini = dir_teardown);

static void assert_defaults(const struct policy_queue_config *q)
{
	cr_assert_eq(q->retry_interval_ms, 20 * 60 * 1000);
	cr_assert_eq(q->max_retry_interval_ms, 0);
	cr_assert_eq(q->max_age_ms, 7ull * 24 * 3600 * 1000);
	cr_assert_eq(q->max_message_rate.n, 0);
	cr_assert_eq(q->max_message_rate.period_ms, 0);
	cr_assert_null(q->egress_pool);
	cr_assert_null(q->mx_list);
	cr_assert_eq(q->n_mx_list, 0);
}

/* Run get_queue_config on a policy whose handler returns `ret` (line 3). */
static int queue_for(const char *ret, struct policy_queue_config *q, char *err, size_t err_len)
{
	char text[4096];
	struct policy *p;
	int rc;

	snprintf(text, sizeof(text),
		 HEAD "kumo.on('get_queue_config', function(domain, tenant, campaign, rd)\n"
		      "  return %s\n"
		      "end)\n",
		 ret);
	p = load_ok(text);
	rc = policy_get_queue_config(p, "example.com", "t", "c", NULL, q, err, err_len);
	policy_free(p);
	return rc;
}

/* The handler's result must be refused with "<path>:<line>: <msg>". */
static void queue_fails_with(const char *ret, int line, const char *msg)
{
	struct policy_queue_config q;
	char err[512], want[700];

	cr_assert_eq(queue_for(ret, &q, err, sizeof(err)), PT_ERROR);
	snprintf(want, sizeof(want), "%s:%d: %s", test_path, line, msg);
	cr_assert_str_eq(err, want);
	assert_defaults(&q);
	policy_queue_config_free(&q);
}

/* make_queue_config with args, at line 3 of a policy, fails with msg. */
struct queue_case {
	const char *args;
	const char *msg;
};

static void make_fails_with(const struct queue_case *cases, size_t n)
{
	char text[512];

	for (size_t i = 0; i < n; i++) {
		snprintf(text, sizeof(text), HEAD "local x = 1\nkumo.make_queue_config %s\n",
			 cases[i].args);
		load_fails_with(text, 3, cases[i].msg);
	}
}

Test(policy_queue, no_handler_gives_defaults)
{
	struct policy *p = load_ok(HEAD);
	struct policy_queue_config q;
	char err[256] = "stale";

	cr_assert_eq(
	    policy_get_queue_config(p, "example.com", NULL, NULL, NULL, &q, err, sizeof(err)),
	    PT_OK);
	cr_assert_str_eq(err, "");
	assert_defaults(&q);
	policy_queue_config_free(&q);
	policy_free(p);
}

Test(policy_queue, defaults_function_matches_kumomta)
{
	struct policy_queue_config q;

	memset(&q, 0xa5, sizeof(q));
	policy_queue_config_defaults(&q);
	assert_defaults(&q);
}

Test(policy_queue, nil_result_gives_defaults)
{
	struct policy_queue_config q;
	char err[256];

	cr_assert_eq(queue_for("nil", &q, err, sizeof(err)), PT_OK);
	assert_defaults(&q);
}

Test(policy_queue, empty_table_gives_defaults)
{
	struct policy_queue_config q;
	char err[256];

	cr_assert_eq(queue_for("kumo.make_queue_config {}", &q, err, sizeof(err)), PT_OK);
	assert_defaults(&q);
}

Test(policy_queue, every_key_is_stored)
{
	struct policy_queue_config q;
	char err[256];

	cr_assert_eq(queue_for("kumo.make_queue_config {\n"
			       "    retry_interval = '5m', max_retry_interval = 7200,\n"
			       "    max_age = '2 days', egress_pool = 'pool-1', max_message_rate = '10/s',\n"
			       "    protocol = { smtp = { mx_list = { 'relay.example.com' } } } }",
			       &q, err, sizeof(err)),
		     PT_OK, "%s", err);
	cr_assert_str_eq(q.egress_pool, "pool-1");
	cr_assert_eq(q.retry_interval_ms, 300000);
	cr_assert_eq(q.max_retry_interval_ms, 7200000);
	cr_assert_eq(q.max_age_ms, 2ull * 86400 * 1000);
	cr_assert_eq(q.max_message_rate.n, 10);
	cr_assert_eq(q.max_message_rate.period_ms, 1000);
	cr_assert_eq(q.n_mx_list, 1);
	cr_assert_str_eq(q.mx_list[0], "relay.example.com");
	policy_queue_config_free(&q);
	assert_defaults(&q);
	policy_queue_config_free(&q); /* freeing twice is harmless */
}

Test(policy_queue, mx_list_forms_are_kept_in_order)
{
	static const char *const want[] = {
	    "mx.example.com", "10.0.0.1",     "[10.0.0.1]:2525", "mx.example.com:2525",
	    "[::1]",	      "::1",	      "[::1]:25",	 "10.0.0.2:2025",
	    "10.0.0.3",	      "[fe80::1]:26", "relay.",		 "a_b.example",
	};
	struct policy_queue_config q;
	char err[256];

	cr_assert_eq(queue_for("kumo.make_queue_config { protocol = { smtp = { mx_list = {\n"
			       "  'mx.example.com', '10.0.0.1', '[10.0.0.1]:2525',\n"
			       "  'mx.example.com:2525', '[::1]', '::1', '[::1]:25',\n"
			       "  { name = 'mx.example.com', addr = '10.0.0.2:2025' },\n"
			       "  { addr = '10.0.0.3' }, { name = 'v6', addr = '[fe80::1]:26' },\n"
			       "  'relay.', 'a_b.example',\n"
			       "} } } }",
			       &q, err, sizeof(err)),
		     PT_OK, "%s", err);
	cr_assert_eq(q.n_mx_list, PT_ARRAY_LEN(want));
	for (size_t i = 0; i < PT_ARRAY_LEN(want); i++)
		cr_assert_str_eq(q.mx_list[i], want[i], "entry %zu", i);
	policy_queue_config_free(&q);
}

Test(policy_queue, empty_mx_list_means_by_mx)
{
	struct policy_queue_config q;
	char err[256];

	cr_assert_eq(queue_for("kumo.make_queue_config { protocol = { smtp = { mx_list = {} } } }",
			       &q, err, sizeof(err)),
		     PT_OK, "%s", err);
	cr_assert_null(q.mx_list);
	cr_assert_eq(q.n_mx_list, 0);
}

Test(policy_queue, handler_gets_its_arguments_and_nil_for_null)
{
	struct policy *p = load_ok(
	    HEAD "kumo.on('get_queue_config', function(domain, tenant, campaign, rd)\n"
		 "  return kumo.make_queue_config { protocol = { smtp = { mx_list = {\n"
		 "    string.format('%s.%s.%s.%s', tostring(domain), tostring(tenant),\n"
		 "                  tostring(campaign), tostring(rd)) } } } }\n"
		 "end)\n");
	struct policy_queue_config q;
	char err[256];

	cr_assert_eq(
	    policy_get_queue_config(p, "example.com", NULL, "spring", NULL, &q, err, sizeof(err)),
	    PT_OK, "%s", err);
	cr_assert_str_eq(q.mx_list[0], "example.com.nil.spring.nil");
	policy_queue_config_free(&q);
	cr_assert_eq(policy_get_queue_config(p, "a.example", "acme", NULL, "b.example", &q, err,
					     sizeof(err)),
		     PT_OK, "%s", err);
	cr_assert_str_eq(q.mx_list[0], "a.example.acme.nil.b.example");
	policy_queue_config_free(&q);
	policy_free(p);
}

/* A value made once and returned from every call is copied, not moved. */
Test(policy_queue, one_value_can_be_returned_many_times)
{
	struct policy *p =
	    load_ok(HEAD "local cfg = kumo.make_queue_config { retry_interval = '1m',\n"
			 "  protocol = { smtp = { mx_list = { 'a.example', 'b.example:26' } } } }\n"
			 "kumo.on('get_queue_config', function() return cfg end)\n");
	struct policy_queue_config q[3];
	char err[256];

	for (int i = 0; i < 3; i++) {
		cr_assert_eq(policy_get_queue_config(p, "x.example", NULL, NULL, NULL, &q[i], err,
						     sizeof(err)),
			     PT_OK, "%s", err);
		cr_assert_eq(q[i].retry_interval_ms, 60000);
		cr_assert_eq(q[i].n_mx_list, 2);
		cr_assert_str_eq(q[i].mx_list[1], "b.example:26");
	}
	cr_assert_neq(q[0].mx_list, q[1].mx_list);
	for (int i = 0; i < 3; i++)
		policy_queue_config_free(&q[i]);
	policy_free(p);
}

Test(policy_queue, value_has_a_name_and_hidden_metatable)
{
	struct policy *p = load_ok(HEAD "local cfg = kumo.make_queue_config {}\n"
					"assert(tostring(cfg) == 'QueueConfig', tostring(cfg))\n"
					"assert(getmetatable(cfg) == 'QueueConfig')\n"
					"assert(type(cfg) == 'userdata')\n");

	policy_free(p);
}

Test(policy_queue, wrong_return_type_is_an_error_at_the_handler)
{
	queue_fails_with(
	    "{ retry_interval = '5m' }", 2,
	    "get_queue_config must return kumo.make_queue_config{...} or nil, got table");
	queue_fails_with("'smtp'", 2,
			 "get_queue_config must return kumo.make_queue_config{...} or nil, got "
			 "string");
	queue_fails_with("kumo.make_egress_path {}", 2,
			 "get_queue_config must return kumo.make_queue_config{...} or nil, got "
			 "userdata");
}

Test(policy_queue, lua_error_in_handler_has_its_line)
{
	queue_fails_with("nil + 1", 3, "attempt to perform arithmetic on a nil value");
	queue_fails_with("(error('no queue for ' .. domain))", 3, "no queue for example.com");
}

/* `return f(...)` is a tail call: the handler's frame is gone when f raises,
 * so the error points at the line where the handler was defined. */
Test(policy_queue, error_in_a_tail_call_points_at_the_handler)
{
	queue_fails_with("error('no queue for ' .. domain)", 2, "no queue for example.com");
	queue_fails_with("kumo.make_queue_config { retry_interval = 'soon' }", 2,
			 "make_queue_config: 'retry_interval': invalid duration 'soon': expected a "
			 "number");
}

Test(policy_queue, bad_value_at_event_time_points_at_the_make_call)
{
	queue_fails_with("(kumo.make_queue_config { retry_interval = 'soon' })", 3,
			 "make_queue_config: 'retry_interval': invalid duration 'soon': expected a "
			 "number");
}

Test(policy_queue, reject_in_handler_is_an_error)
{
	struct policy_queue_config q;
	char err[512], want[600];

	cr_assert_eq(queue_for("(kumo.reject(550, 'no'))", &q, err, sizeof(err)), PT_ERROR);
	snprintf(want, sizeof(want), "%s:3: reject() may only be called from an SMTP event",
		 test_path);
	cr_assert_str_eq(err, want);
}

Test(policy_queue, unknown_and_kumo_only_keys_are_named)
{
	static const struct queue_case cases[] = {
	    {"{ retry_intervl = '5m' }", "'retry_intervl' is not a make_queue_config option"},
	    {"{ reap_interval = '10m' }",
	     "make_queue_config: 'reap_interval' is a KumoMTA option Petrel does not support yet"},
	    {"{ refresh_strategy = 'Epoch' }", "make_queue_config: 'refresh_strategy' is a "
					       "KumoMTA option Petrel does not support yet"},
	    {"{ timerwheel_tick_interval = '1m' }",
	     "make_queue_config: 'timerwheel_tick_interval' is a KumoMTA option Petrel does not "
	     "support yet"},
	    {"{ strategy = 'TimerWheel' }",
	     "make_queue_config: 'strategy' is a KumoMTA option Petrel does not support yet"},
	    {"{ provider_name = 'x' }",
	     "make_queue_config: 'provider_name' is a KumoMTA option Petrel does not support yet"},
	    {"{ shrink_policy = {} }",
	     "make_queue_config: 'shrink_policy' is a KumoMTA option Petrel does not support yet"},
	    {"{ refresh_interval = '1m' }", "make_queue_config: 'refresh_interval' is a KumoMTA "
					    "option Petrel does not support yet"},
	    {"{ [1] = 'x' }", "make_queue_config: keys must be strings, got a number key"},
	    {"{ protocol = { maildir_path = '/tmp/m' } }",
	     "make_queue_config: 'maildir_path' is a KumoMTA option Petrel does not support yet"},
	    {"{ protocol = { custom_lua = { constructor = 'x' } } }",
	     "make_queue_config: protocol 'custom_lua' is a KumoMTA option Petrel does not "
	     "support; for delivery to an HTTP endpoint use protocol.http"},
	    {"{ protocol = { maildir = {} } }",
	     "make_queue_config: protocol 'maildir' is a KumoMTA option Petrel does not "
	     "support; for delivery to an HTTP endpoint use protocol.http"},
	    {"{ protocol = { xfer = {} } }",
	     "make_queue_config: 'xfer' is a KumoMTA option Petrel does not support yet"},
	    {"{ protocol = { http = { url = 'http://h/', uri = 'x' } } }",
	     "'uri' is not a make_queue_config protocol.http option"},
	    {"{ protocol = { smtp = { mx_list = {}, treat_mx_list_as_secure = true } } }",
	     "make_queue_config: 'treat_mx_list_as_secure' is a KumoMTA option Petrel does not "
	     "support yet"},
	    {"{ protocol = { smtp = { mxlist = {} } } }",
	     "'mxlist' is not a make_queue_config protocol.smtp option"},
	    {"{ protocol = { smtp = { mx_list = { { host = 'a' } } } } }",
	     "'host' is not a make_queue_config mx_list entry option"},
	};

	make_fails_with(cases, PT_ARRAY_LEN(cases));
}

Test(policy_queue, bad_values_are_errors_with_line)
{
	static const struct {
		const char *args;
		const char *msg;
	} cases[] = {
	    {"{ retry_interval = 0 }",
	     "make_queue_config: 'retry_interval' must be longer than zero"},
	    {"{ max_age = '0s' }", "make_queue_config: 'max_age' must be longer than zero"},
	    {"{ max_retry_interval = -1 }",
	     "make_queue_config: 'max_retry_interval': duration must be a non-negative number of "
	     "seconds"},
	    {"{ max_age = true }", "make_queue_config: 'max_age': duration must be a number of "
				   "seconds or a string like \"60s\", got boolean"},
	    {"{ max_message_rate = 'fast' }",
	     "make_queue_config: 'max_message_rate': invalid rate 'fast': expected a count such "
	     "as \"100/s\""},
	    {"{ egress_pool = 7 }",
	     "make_queue_config: 'egress_pool' must be a string, got number"},
	    {"{ egress_pool = '' }",
	     "make_queue_config: 'egress_pool' must name a pool, got an empty string"},
	    {"{ protocol = 'smtp' }",
	     "make_queue_config: 'protocol' must be a table such as { smtp "
	     "= { mx_list = {...} } }, got string"},
	    {"{ protocol = {} }",
	     "make_queue_config: 'protocol' must have an 'smtp', 'http' or 'amqp' table"},
	    {"{ protocol = { smtp = true } }",
	     "make_queue_config: protocol.smtp must be a table, got boolean"},
	    {"{ protocol = { smtp = { mx_list = 'mx.example.com' } } }",
	     "make_queue_config: 'mx_list' must be a list, got string"},
	    {"{ protocol = { smtp = { mx_list = { 'ok.example', 5 } } } }",
	     "make_queue_config: mx_list[2] must be a string, got number"},
	    {"{ protocol = { smtp = { mx_list = { 'mx.example.com:0' } } } }",
	     "make_queue_config: mx_list[1]: 'mx.example.com:0' is not \"host\", \"host:port\", "
	     "\"[ip]\" or \"[ip]:port\" (the port must be a number from 1 to 65535)"},
	    {"{ protocol = { smtp = { mx_list = { 'mx.example.com:65536' } } } }",
	     "make_queue_config: mx_list[1]: 'mx.example.com:65536' is not \"host\", "
	     "\"host:port\", \"[ip]\" or \"[ip]:port\" (the port must be a number from 1 to "
	     "65535)"},
	    {"{ protocol = { smtp = { mx_list = { '10.0.0.256' } } } }",
	     "make_queue_config: mx_list[1]: '10.0.0.256' is not \"host\", \"host:port\", "
	     "\"[ip]\" or \"[ip]:port\" (not a host name or IP address)"},
	    {"{ protocol = { smtp = { mx_list = { 'mx example.com' } } } }",
	     "make_queue_config: mx_list[1]: 'mx example.com' is not \"host\", \"host:port\", "
	     "\"[ip]\" or \"[ip]:port\" (not a host name or IP address)"},
	    {"{ protocol = { smtp = { mx_list = { '' } } } }",
	     "make_queue_config: mx_list[1]: '' is not \"host\", \"host:port\", \"[ip]\" or "
	     "\"[ip]:port\" (not a host name or IP address)"},
	    {"{ protocol = { smtp = { mx_list = { '[mx.example.com]:25' } } } }",
	     "make_queue_config: mx_list[1]: '[mx.example.com]:25' is not \"host\", "
	     "\"host:port\", \"[ip]\" or \"[ip]:port\" ('[...]' must hold an IP address)"},
	    {"{ protocol = { smtp = { mx_list = { '[10.0.0.1' } } } }",
	     "make_queue_config: mx_list[1]: '[10.0.0.1' is not \"host\", \"host:port\", \"[ip]\" "
	     "or \"[ip]:port\" ('[' without ']')"},
	    {"{ protocol = { smtp = { mx_list = { '[10.0.0.1]25' } } } }",
	     "make_queue_config: mx_list[1]: '[10.0.0.1]25' is not \"host\", \"host:port\", "
	     "\"[ip]\" or \"[ip]:port\" (expected ':' and a port from 1 to 65535 after ']')"},
	    {"{ protocol = { smtp = { mx_list = { '::1:25:x' } } } }",
	     "make_queue_config: mx_list[1]: '::1:25:x' is not \"host\", \"host:port\", \"[ip]\" "
	     "or \"[ip]:port\" (not an IPv6 address (write \"[ip]:port\" to give a port))"},
	    {"{ protocol = { smtp = { mx_list = { '-mx.example.com' } } } }",
	     "make_queue_config: mx_list[1]: '-mx.example.com' is not \"host\", \"host:port\", "
	     "\"[ip]\" or \"[ip]:port\" (not a host name or IP address)"},
	    {"{ protocol = { smtp = { mx_list = { { name = 'mx' } } } } }",
	     "make_queue_config: mx_list[1].addr is required"},
	    {"{ protocol = { smtp = { mx_list = { { name = 1, addr = '10.0.0.1' } } } } }",
	     "make_queue_config: mx_list[1].name must be a string, got number"},
	    {"{ protocol = { smtp = { mx_list = { { addr = 10 } } } } }",
	     "make_queue_config: mx_list[1].addr must be a string, got number"},
	    {"{ protocol = { smtp = { mx_list = { { name = 'a', addr = 'mx.example.com' } } } } }",
	     "make_queue_config: mx_list[1].addr: 'mx.example.com' is not \"ip\", \"ip:port\" or "
	     "\"[ip]:port\" (not an IP address)"},
	    {"'x'", "make_queue_config: expected a table, got string"},
	};
	char text[512];

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		snprintf(text, sizeof(text),
			 HEAD "kumo.on('init', function()\n"
			      "  kumo.make_queue_config %s\n"
			      "end)\n",
			 cases[i].args);
		load_fails_with(text, 3, cases[i].msg);
	}
}

Test(policy_queue, mx_list_is_bounded)
{
	load_fails_with(HEAD "local l = {}\n"
			     "for i = 1, 65 do l[i] = 'mx' .. i .. '.example.com' end\n"
			     "kumo.make_queue_config { protocol = { smtp = { mx_list = l } } }\n",
			4, "make_queue_config: 'mx_list' has 65 entries; at most 64 are allowed");
}

Test(policy_queue, http_protocol_is_parsed)
{
	struct policy_queue_config q;
	const struct policy_queue_http *h;
	char err[512];

	cr_assert_eq(queue_for("kumo.make_queue_config { protocol = { http = {\n"
			       "  url = 'http://hooks.example:8080/in?k=1', method = 'PUT',\n"
			       "  headers = { ['X-Key'] = 'v', Authorization = 'Bearer t' },\n"
			       "  content_type = 'application/json', body_template = '{{ id }}',\n"
			       "  batch_size = 5, timeout = '10s' } } }",
			       &q, err, sizeof(err)),
		     PT_OK, "%s", err);
	h = q.http;
	cr_assert_not_null(h);
	cr_assert_str_eq(h->url, "http://hooks.example:8080/in?k=1");
	cr_assert_str_eq(h->host, "hooks.example");
	cr_assert_eq(h->port, 8080);
	cr_assert_str_eq(h->connect, "hooks.example:8080");
	cr_assert_str_eq(h->site, "http://hooks.example:8080");
	cr_assert_str_eq(h->host_field, "hooks.example:8080");
	cr_assert_str_eq(h->path, "/in?k=1");
	cr_assert_str_eq(h->method, "PUT");
	cr_assert_str_eq(h->content_type, "application/json");
	cr_assert(policy_queue_http_is_json(h));
	cr_assert_eq(h->n_headers, 2);
	cr_assert_str_eq(h->headers[0].name, "Authorization");
	cr_assert_str_eq(h->headers[1].name, "X-Key");
	cr_assert_str_eq(h->headers[1].value, "v");
	cr_assert_str_eq(h->body_template, "{{ id }}");
	cr_assert_eq(h->batch_size, 5);
	cr_assert_eq(h->timeout_ms, 10000);
	cr_assert_null(q.mx_list);
	policy_queue_config_free(&q);

	cr_assert_eq(queue_for("kumo.make_queue_config { protocol = { http = {\n"
			       "  url = 'http://[::1]' } } }",
			       &q, err, sizeof(err)),
		     PT_OK, "%s", err);
	h = q.http;
	cr_assert_str_eq(h->connect, "[::1]:80");
	cr_assert_str_eq(h->site, "http://[::1]:80");
	cr_assert_str_eq(h->host_field, "[::1]");
	cr_assert_str_eq(h->path, "/");
	cr_assert_str_eq(h->method, "POST");
	cr_assert_str_eq(h->content_type, "message/rfc822");
	cr_assert_eq(h->batch_size, 1);
	cr_assert_eq(h->timeout_ms, 60000);
	cr_assert_null(h->body_template);
	cr_assert(!h->tls);
	policy_queue_config_free(&q);

	cr_assert_eq(queue_for("kumo.make_queue_config { protocol = { http = {\n"
			       "  url = 'https://hooks.example/x', accept_invalid_certs = true } } }",
			       &q, err, sizeof(err)),
		     PT_OK, "%s", err);
	h = q.http;
	cr_assert(h->tls);
	cr_assert(h->accept_invalid_certs);
	cr_assert_eq(h->port, 443);
	cr_assert_str_eq(h->site, "https+insecure://hooks.example:443");
	cr_assert_str_eq(h->host_field, "hooks.example");
	policy_queue_config_free(&q);
}

Test(policy_queue, http_protocol_errors_have_the_line)
{
	static const struct queue_case cases[] = {
	    {"{ protocol = { http = {} } }", "make_queue_config: protocol.http.url is required"},
	    {"{ protocol = { http = { url = 'ftp://h/' } } }",
	     "make_queue_config: protocol.http.url 'ftp://h/' must start with http:// or https://"},
	    {"{ protocol = { http = { url = 'http://h/', accept_invalid_certs = true } } }",
	     "make_queue_config: protocol.http.accept_invalid_certs applies to https:// URLs only"},
	    {"{ protocol = { http = { url = 'not a url' } } }",
	     "make_queue_config: protocol.http.url 'not a url' is not a URL like "
	     "http://host[:port]/path"},
	    {"{ protocol = { http = { url = 'http://u:p@h/' } } }",
	     "make_queue_config: protocol.http.url 'http://u:p@h/': user info and fragments are "
	     "not allowed (use headers for credentials)"},
	    {"{ protocol = { http = { url = 'http://h/', method = 'GET' } } }",
	     "make_queue_config: protocol.http.method must be 'POST', 'PUT' or 'PATCH', got 'GET'"},
	    {"{ protocol = { http = { url = 'http://h/', headers = { ['Content-Length'] = '1' } } "
	     "} }",
	     "make_queue_config: protocol.http.headers: Petrel writes 'Content-Length' itself"},
	    {"{ protocol = { http = { url = 'http://h/', headers = { ['X A'] = '1' } } } }",
	     "make_queue_config: protocol.http.headers: 'X A' is not a header name"},
	    {"{ protocol = { http = { url = 'http://h/', headers = { X = 'a\\r\\nB: c' } } } }",
	     "make_queue_config: protocol.http.headers['X'] has a control character"},
	    {"{ protocol = { http = { url = 'http://h/', batch_size = 2 } } }",
	     "make_queue_config: protocol.http.batch_size 2 needs content_type 'application/json' "
	     "(a batch is a JSON array of the bodies)"},
	    {"{ protocol = { http = { url = 'http://h/', timeout = 0 } } }",
	     "make_queue_config: 'protocol.http.timeout' must be longer than zero"},
	    {"{ protocol = { smtp = {}, http = { url = 'http://h/' } } }",
	     "make_queue_config: 'protocol' must have only one of 'smtp', 'http' or 'amqp' "
	     "table"},
	};

	make_fails_with(cases, PT_ARRAY_LEN(cases));
}

Test(policy_queue, amqp_protocol_is_parsed)
{
	struct policy_queue_config q, copy;
	const struct policy_queue_amqp *a;
	char err[512];

	cr_assert_eq(queue_for("kumo.make_queue_config { protocol = { amqp = {\n"
			       "  url = 'amqp://hook%40x:p%3Aw@mq.example:5673/logs%2Fv',\n"
			       "  exchange = '', routing_key = 'petrel', declare_queue = true,\n"
			       "  mandatory = true, content_type = 'application/json',\n"
			       "  window = 8, timeout = '5s' } } }",
			       &q, err, sizeof(err)),
		     PT_OK, "%s", err);
	a = q.amqp;
	cr_assert_not_null(a);
	cr_assert_null(q.http);
	cr_assert_str_eq(a->user, "hook@x");
	cr_assert_str_eq(a->password, "p:w");
	cr_assert_str_eq(a->vhost, "logs/v");
	cr_assert_str_eq(a->host, "mq.example");
	cr_assert_eq(a->port, 5673);
	cr_assert_str_eq(a->connect, "mq.example:5673");
	cr_assert_str_eq(a->site, "amqp://hook@x@mq.example:5673/logs/v?declare=petrel");
	cr_assert_str_eq(a->exchange, "");
	cr_assert_str_eq(a->routing_key, "petrel");
	cr_assert(a->declare_queue);
	cr_assert(a->mandatory);
	cr_assert_str_eq(a->content_type, "application/json");
	cr_assert_eq(a->window, 8);
	cr_assert_eq(a->timeout_ms, 5000);
	policy_queue_config_free(&q);

	/* Defaults: guest, guest, port 5672, vhost "/", window 64, 60 s, the
	 * default exchange unless named; the copy made for a shard is deep. */
	cr_assert_eq(queue_for("kumo.make_queue_config { protocol = { amqp = {\n"
			       "  url = 'amqp://[::1]', exchange = 'logs', routing_key = '' } } }",
			       &q, err, sizeof(err)),
		     PT_OK, "%s", err);
	cr_assert_eq(policy_queue_amqp_copy(&copy.amqp, q.amqp), PT_OK);
	policy_queue_config_free(&q);
	a = copy.amqp;
	cr_assert_str_eq(a->user, "guest");
	cr_assert_str_eq(a->password, "guest");
	cr_assert_str_eq(a->vhost, "/");
	cr_assert_str_eq(a->connect, "[::1]:5672");
	cr_assert_str_eq(a->site, "amqp://guest@[::1]:5672/");
	cr_assert_str_eq(a->exchange, "logs");
	cr_assert_null(a->content_type);
	cr_assert(!a->declare_queue && !a->mandatory);
	cr_assert_eq(a->window, 64);
	cr_assert_eq(a->timeout_ms, 60000);
	policy_queue_amqp_free(copy.amqp);
}

Test(policy_queue, amqp_protocol_errors_have_the_line)
{
	static const struct queue_case cases[] = {
	    {"{ protocol = { amqp = {} } }", "make_queue_config: protocol.amqp.url is required"},
	    {"{ protocol = { amqp = { url = 'amqp://h' } } }",
	     "make_queue_config: protocol.amqp.routing_key is required"},
	    {"{ protocol = { amqp = 'amqp://h' } }",
	     "make_queue_config: protocol.amqp must be a table, got string"},
	    {"{ protocol = { amqp = { url = 'http://h/', routing_key = 'q' } } }",
	     "make_queue_config: protocol.amqp.url 'http://h/' is not a URL like "
	     "amqp://user:password@host:port/vhost"},
	    {"{ protocol = { amqp = { url = 'amqps://h', routing_key = 'q' } } }",
	     "make_queue_config: protocol.amqp.url 'amqps://h': amqps:// (TLS) is not supported "
	     "yet"},
	    {"{ protocol = { amqp = { url = 'amqp://h:0', routing_key = 'q' } } }",
	     "make_queue_config: protocol.amqp.url 'amqp://h:0': port 0"},
	    {"{ protocol = { amqp = { url = 'amqp://a_b!/', routing_key = 'q' } } }",
	     "make_queue_config: protocol.amqp.url 'amqp://a_b!/': bad host 'a_b!' (not a host "
	     "name or IP address)"},
	    {"{ protocol = { amqp = { url = 'amqp://h', routing_key = '' } } }",
	     "make_queue_config: protocol.amqp.routing_key is empty: on the default exchange it "
	     "names the queue"},
	    {"{ protocol = { amqp = { url = 'amqp://h', exchange = 'x', routing_key = 'q', "
	     "declare_queue = true } } }",
	     "make_queue_config: protocol.amqp.declare_queue needs exchange '' (it declares the "
	     "queue routing_key, where the default exchange routes)"},
	    {"{ protocol = { amqp = { url = 'amqp://h', routing_key = string.rep('k', 256) } } }",
	     "make_queue_config: protocol.amqp.routing_key is longer than 255 bytes (an AMQP "
	     "short string)"},
	    {"{ protocol = { amqp = { url = 'amqp://h', routing_key = 'q', window = 0 } } }",
	     "make_queue_config: 'protocol.amqp.window' must be a whole number from 1 to 4096"},
	    {"{ protocol = { amqp = { url = 'amqp://h', routing_key = 'q', timeout = 0 } } }",
	     "make_queue_config: 'protocol.amqp.timeout' must be longer than zero"},
	    {"{ protocol = { amqp = { url = 'amqp://h', routing_key = 'q', mandatory = 1 } } }",
	     "make_queue_config: 'protocol.amqp.mandatory' must be a boolean, got number"},
	    {"{ protocol = { amqp = { url = 'amqp://h', routing_key = 'q', content_type = '' } } }",
	     "make_queue_config: protocol.amqp.content_type is empty (leave it out for none)"},
	    {"{ protocol = { amqp = { url = 'amqp://h', routing_key = 'q', queue = 'q' } } }",
	     "'queue' is not a make_queue_config protocol.amqp option"},
	    {"{ protocol = { http = { url = 'http://h/' }, amqp = { url = 'amqp://h' } } }",
	     "make_queue_config: 'protocol' must have only one of 'smtp', 'http' or 'amqp' "
	     "table"},
	};

	make_fails_with(cases, PT_ARRAY_LEN(cases));
}
