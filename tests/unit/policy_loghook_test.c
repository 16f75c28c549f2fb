/*
 * policy_loghook_test.c -- log hooks on the policy side: configure_log_hook
 * (names kept in order, options checked, every error with file:line),
 * pre_init, several handlers for get_queue_config and
 * should_enqueue_log_record (first non-nil answer wins), the
 * should_enqueue_log_record event itself, and policy-extras.log_hooks.
 */
#include "policy/policy.h"
#include "tests/unit/policy_test_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define TEST_ID "0123456789abcdef0123456789abcdef"
#define RECORD	"{\"type\":\"Delivery\",\"id\":\"" TEST_ID "\",\"reception_protocol\":null}"
#define HOOK_RECORD                                                                                \
	"{\"type\":\"Delivery\",\"id\":\"" TEST_ID "\",\"reception_protocol\":\"LogRecord\"}"

TestSuite(policy_loghook, .init = dir_setup, .fini = dir_teardown);

/* A record's message as shard_loghook.c makes it. */
static void record_message(struct pt_message *m, const char *record)
{
	pt_message_init(m);
	memcpy(m->id, TEST_ID, sizeof(TEST_ID));
	cr_assert_eq(pt_message_set_sender(m, "alice@example.com", 17), PT_OK);
	cr_assert_eq(pt_message_add_rcpt(m, "log@webhook.log_hook", 20), PT_OK);
	cr_assert_eq(pt_buf_append(&m->data, record, strlen(record)), PT_OK);
	cr_assert_eq(pt_message_set_meta(m, "log_record", record), PT_OK);
	cr_assert_eq(pt_message_set_meta(m, "reception_protocol", "\"LogRecord\""), PT_OK);
}

/* should_enqueue_log_record for hook on a fresh record message; m is kept. */
static int offer(struct policy *p, struct pt_message *m, const char *record, const char *hook,
		 bool *enqueue)
{
	record_message(m, record);
	*enqueue = true; /* must be overwritten */
	return policy_should_enqueue_log_record(p, m, hook, enqueue);
}

/* offer() must give rc and the answer want; the message is freed. */
static void expect_offer(struct policy *p, const char *record, const char *hook, int rc, bool want)
{
	struct pt_message m;
	bool enqueue;

	cr_assert_eq(offer(p, &m, record, hook, &enqueue), rc, "hook %s", hook);
	cr_assert_eq(enqueue, want, "hook %s", hook);
	pt_message_clear(&m);
}

Test(policy_loghook, configure_log_hook_keeps_names_in_order)
{
	struct policy *p =
	    load_ok("local kumo = require 'kumo'\n"
		    "kumo.on('init', function()\n"
		    "  kumo.configure_log_hook { name = 'webhook', headers = { 'Subject' },\n"
		    "    meta = { 'tenant' }, per_record = { Reception = { suffix = '_r' } } }\n"
		    "  kumo.configure_log_hook { name = 'rabbit-1.eu' }\n"
		    "end)\n");
	const struct policy_config *c = policy_config(p);

	cr_assert_eq(c->n_log_hooks, 2);
	cr_assert_str_eq(c->log_hooks[0], "webhook");
	cr_assert_str_eq(c->log_hooks[1], "rabbit-1.eu");
	cr_assert_null(c->log_dir); /* hooks need no local logs */
	policy_free(p);
}

Test(policy_loghook, configure_log_hook_errors_name_the_line)
{
	const char *head = "local kumo = require 'kumo'\nkumo.on('init', function()\n  ";
	static const struct policy_fail_case cases[] = {
	    {"kumo.configure_log_hook { headers = { 'Subject' } }",
	     "configure_log_hook: 'name' is required"},
	    {"kumo.configure_log_hook { name = 3 }",
	     "configure_log_hook: 'name' must be a string, got number"},
	    {"kumo.configure_log_hook { name = 'a b' }",
	     "configure_log_hook: 'name' must be 1 to 64 letters, digits, '-', '_' or inner "
	     "dots (it names the queue NAME.log_hook), got 'a b'"},
	    {"kumo.configure_log_hook { name = 'a..b' }",
	     "configure_log_hook: 'name' must be 1 to 64 letters, digits, '-', '_' or inner "
	     "dots (it names the queue NAME.log_hook), got 'a..b'"},
	    {"kumo.configure_log_hook { name = '' }",
	     "configure_log_hook: 'name' must be 1 to 64 letters, digits, '-', '_' or inner "
	     "dots (it names the queue NAME.log_hook), got ''"},
	    {"kumo.configure_log_hook { name = 'w', url = 'http://x' }",
	     "configure_log_hook: unknown key 'url'"},
	    {"kumo.configure_log_hook { name = 'w', deferred_spool = true }",
	     "configure_log_hook: 'deferred_spool' is a KumoMTA option Petrel does not "
	     "support yet"},
	    {"kumo.configure_log_hook { name = 'w', headers = 'Subject' }",
	     "configure_log_hook: 'headers' must be a list of strings, got string"},
	    {"kumo.configure_log_hook { name = 'w', per_record = { Reception = 1 } }",
	     "configure_log_hook: 'per_record' maps record type names to tables (e.g. "
	     "Reception = { suffix = '_recv' })"},
	    {"kumo.configure_log_hook { name = 'w' } kumo.configure_log_hook { name = 'w' }",
	     "configure_log_hook: a hook named 'w' is already configured"},
	    {"kumo.configure_log_hook('w')",
	     "bad argument #1 to 'configure_log_hook' (table expected, got string)"},
	};

	load_fails_each(head, "\nend)\n", cases, PT_ARRAY_LEN(cases), 3);
	load_fails_with("local kumo = require 'kumo'\n"
			"kumo.configure_log_hook { name = 'w' }\n",
			2, "configure_log_hook may only be called from the init event");
}

Test(policy_loghook, pre_init_runs_before_init_and_may_configure)
{
	struct policy *p =
	    load_ok("local kumo = require 'kumo'\n"
		    "local order = {}\n"
		    "kumo.on('pre_init', function()\n"
		    "  order[#order + 1] = 'pre1'\n"
		    "  kumo.configure_log_hook { name = 'first' }\n"
		    "end)\n"
		    "kumo.on('init', function()\n"
		    "  order[#order + 1] = 'init'\n"
		    "  kumo.configure_log_hook { name = table.concat(order, '-') }\n"
		    "end)\n"
		    "kumo.on('pre_init', function() order[#order + 1] = 'pre2' end)\n");
	const struct policy_config *c = policy_config(p);

	cr_assert_eq(c->n_log_hooks, 2);
	cr_assert_str_eq(c->log_hooks[0], "first");
	cr_assert_str_eq(c->log_hooks[1], "pre1-pre2-init");
	policy_free(p);
}

Test(policy_loghook, only_multi_handler_events_take_a_second_handler)
{
	load_fails_with("local kumo = require 'kumo'\n"
			"kumo.on('init', function() end)\n"
			"kumo.on('init', function() end)\n",
			3, "event 'init' already has a handler");
}

Test(policy_loghook, get_queue_config_handlers_run_in_order_first_value_wins)
{
	struct policy *p = load_ok("local kumo = require 'kumo'\n"
				   "kumo.on('get_queue_config', function(domain)\n"
				   "  if domain == 'a.test' then\n"
				   "    return kumo.make_queue_config { retry_interval = '1m' }\n"
				   "  end\n"
				   "end)\n"
				   "kumo.on('get_queue_config', function(domain)\n"
				   "  if domain ~= 'c.test' then\n"
				   "    return kumo.make_queue_config { retry_interval = '2m' }\n"
				   "  end\n"
				   "end)\n"
				   "kumo.on('get_queue_config', function(domain)\n"
				   "  error('third handler reached for ' .. domain)\n"
				   "end)\n");
	struct policy_queue_config q;
	char err[512];

	cr_assert_eq(policy_get_queue_config(p, "a.test", NULL, NULL, NULL, &q, err, sizeof(err)),
		     PT_OK, "%s", err);
	cr_assert_eq(q.retry_interval_ms, 60000);
	policy_queue_config_free(&q);
	cr_assert_eq(policy_get_queue_config(p, "b.test", NULL, NULL, NULL, &q, err, sizeof(err)),
		     PT_OK, "%s", err);
	cr_assert_eq(q.retry_interval_ms, 120000);
	policy_queue_config_free(&q);
	/* Nobody before the third answers: its error is reported with its line. */
	cr_assert_eq(policy_get_queue_config(p, "c.test", NULL, NULL, NULL, &q, err, sizeof(err)),
		     PT_ERROR);
	cr_assert(strstr(err, "p.lua:13: third handler reached for c.test") != NULL, "%s", err);
	policy_queue_config_free(&q);
	policy_free(p);
}

Test(policy_loghook, should_enqueue_answers_and_sees_the_record)
{
	struct policy *p =
	    load_ok("local kumo = require 'kumo'\n"
		    "kumo.on('should_enqueue_log_record', function(msg, hook_name)\n"
		    "  local rec = msg:get_meta 'log_record'\n"
		    "  msg:set_meta('seen', hook_name .. ':' .. rec.type .. ':' .. rec.id)\n"
		    "  if hook_name == 'nil-hook' then return nil end\n"
		    "  if hook_name == 'bad' then return 'yes' end\n"
		    "  if hook_name == 'boom' then error('no such thing') end\n"
		    "  if hook_name == 'rej' then kumo.reject(550, 'no') end\n"
		    "  return hook_name == 'yes'\n"
		    "end)\n");
	struct pt_message m;
	bool enqueue;

	cr_assert_eq(offer(p, &m, RECORD, "yes", &enqueue), PT_OK);
	cr_assert(enqueue);
	cr_assert_str_eq(pt_message_get_meta(&m, "seen"), "\"yes:Delivery:" TEST_ID "\"");
	pt_message_clear(&m);
	expect_offer(p, RECORD, "no", PT_OK, false);
	expect_offer(p, RECORD, "nil-hook", PT_OK, false);
	expect_offer(p, RECORD, "bad", PT_ERROR, false);
	expect_offer(p, RECORD, "boom", PT_ERROR, false);
	/* No reply to give: a reject is the policy's mistake here. */
	expect_offer(p, RECORD, "rej", PT_ERROR, false);
	policy_free(p);
}

Test(policy_loghook, no_handler_enqueues_nothing)
{
	struct policy *p = load_ok("local kumo = require 'kumo'\n");

	expect_offer(p, RECORD, "webhook", PT_OK, false);
	policy_free(p);
}

/* A policy using policy-extras.log_hooks with its own get_queue_config after. */
#define LOG_HOOKS_POLICY                                                                           \
	"local kumo = require 'kumo'\n"                                                            \
	"local log_hooks = require 'policy-extras.log_hooks'\n"                                    \
	"log_hooks:new {\n"                                                                        \
	"  name = 'archive',\n"                                                                    \
	"  queue_config = { max_age = '2h',\n"                                                     \
	"    protocol = { smtp = { mx_list = { '127.0.0.41:2525' } } } },\n"                       \
	"  filter = function(msg, hook_name)\n"                                                    \
	"    return msg:get_meta('log_record').type == 'Reception'\n"                              \
	"  end,\n"                                                                                 \
	"}\n"                                                                                      \
	"kumo.on('get_queue_config', function(domain)\n"                                           \
	"  return kumo.make_queue_config { retry_interval = '5m' }\n"                              \
	"end)\n"

Test(policy_loghook, log_hooks_new_configures_filters_and_queues)
{
	struct policy *p = load_ok(LOG_HOOKS_POLICY);
	const struct policy_config *c = policy_config(p);
	struct policy_queue_config q;
	struct pt_message m;
	bool enqueue;
	char err[512];

	cr_assert_eq(c->n_log_hooks, 1);
	cr_assert_str_eq(c->log_hooks[0], "archive");
	/* Its records: taken and queued to archive.log_hook. */
	cr_assert_eq(offer(p, &m, RECORD, "archive", &enqueue), PT_OK);
	cr_assert(enqueue);
	cr_assert_str_eq(pt_message_get_meta(&m, "queue"), "\"archive.log_hook\"");
	pt_message_clear(&m);
	/* Another hook's: not its business (nil, so false without other handlers). */
	cr_assert_eq(offer(p, &m, RECORD, "other", &enqueue), PT_OK);
	cr_assert_not(enqueue);
	cr_assert_null(pt_message_get_meta(&m, "queue"));
	pt_message_clear(&m);
	/* About a hook's own message: never again. */
	expect_offer(p, HOOK_RECORD, "archive", PT_OK, false);
	/* Left out by the filter. */
	expect_offer(p, "{\"type\":\"Reception\",\"id\":\"" TEST_ID "\"}", "archive", PT_OK, false);
	/* The hook's queue: its defaults, queue_config, the protocol. */
	cr_assert_eq(
	    policy_get_queue_config(p, "archive.log_hook", NULL, NULL, NULL, &q, err, sizeof(err)),
	    PT_OK, "%s", err);
	cr_assert_eq(q.retry_interval_ms, 60000);
	cr_assert_eq(q.max_retry_interval_ms, 20 * 60000);
	cr_assert_eq(q.max_age_ms, 2 * 3600000);
	cr_assert_eq(q.n_mx_list, 1);
	cr_assert_str_eq(q.mx_list[0], "127.0.0.41:2525");
	policy_queue_config_free(&q);
	/* Any other domain: the policy's own handler. */
	cr_assert_eq(
	    policy_get_queue_config(p, "example.com", NULL, NULL, NULL, &q, err, sizeof(err)),
	    PT_OK, "%s", err);
	cr_assert_eq(q.retry_interval_ms, 5 * 60000);
	cr_assert_eq(q.n_mx_list, 0);
	policy_queue_config_free(&q);
	policy_free(p);
}

Test(policy_loghook, log_hooks_errors_point_at_the_calling_line)
{
	const char *head = "local kumo = require 'kumo'\n"
			   "local log_hooks = require 'policy-extras.log_hooks'\n";
	static const struct policy_fail_case cases[] = {
	    {"log_hooks:new { name = 'w', constructor = function() end }",
	     "log_hooks:new: 'constructor' is not supported: Petrel runs no Lua connection "
	     "objects; give the protocol in queue_config.protocol (e.g. { smtp = { mx_list = "
	     "{...} } }), or use log_hooks:new_json / log_hooks:new_amqp"},
	    {"log_hooks:new { name = 'w' }",
	     "log_hooks:new: 'queue_config.protocol' is required: a hook's queue is delivered "
	     "by its protocol (e.g. { smtp = { mx_list = {...} } }); new_json and new_amqp "
	     "build it"},
	    {"log_hooks:new { name = 'w', batch_size = 10 }",
	     "log_hooks:new: 'batch_size' belongs to the protocol: set it in "
	     "queue_config.protocol (new_json takes batch_size)"},
	    {"log_hooks:new { name = 'w', urll = 'x' }", "log_hooks:new: unknown key 'urll'"},
	    {"log_hooks:new_json { name = 'w' }", "log_hooks:new_json: 'url' is required"},
	    {"log_hooks:new_json { name = 'w', url = 'http://x/',\n"
	     "  queue_config = { protocol = { smtp = {} } } }",
	     "log_hooks:new_json: queue_config.protocol is set by log_hooks:new_json; leave it "
	     "out"},
	    {"log_hooks:new_amqp { name = 'w', url = 'amqp://x', exchange = 'e' }",
	     "log_hooks:new_amqp: 'routing_key' is required"},
	    {"log_hooks:new_amqp { name = 'w', url = 'amqp://x', exchange = '',\n"
	     "  routing_key = 'q', declare_queue = 'yes' }",
	     "log_hooks:new_amqp: 'declare_queue' must be a boolean, got \"yes\""},
	    {"log_hooks:new_amqp { name = 'w', url = 'amqp://x', exchange = 'e',\n"
	     "  routing_key = 'q', declare_queue = true }",
	     "log_hooks:new_amqp: queue_config: make_queue_config: protocol.amqp.declare_queue "
	     "needs exchange '' (it declares the queue routing_key, where the default exchange "
	     "routes)"},
	    {"log_hooks:new { name = 'w', queue_config = { retry_interval = 'soon',\n"
	     "  protocol = { smtp = { mx_list = { '10.0.0.1' } } } } }",
	     "log_hooks:new: queue_config: make_queue_config: 'retry_interval': invalid duration "
	     "'soon': expected a number"},
	};

	load_fails_each(head, "\n", cases, PT_ARRAY_LEN(cases), 3);
	load_fails_with("local kumo = require 'kumo'\n"
			"local log_hooks = require 'policy-extras.log_hooks'\n"
			"local q = { protocol = { smtp = { mx_list = { '10.0.0.1' } } } }\n"
			"log_hooks:new { name = 'w', queue_config = q }\n"
			"log_hooks:new { name = 'w', queue_config = q }\n",
			5, "log_hooks:new: log_hook with name 'w' has already been configured");
}

Test(policy_loghook, log_hooks_new_amqp_builds_the_protocol)
{
	static const char text[] = "local kumo = require 'kumo'\n"
				   "local log_hooks = require 'policy-extras.log_hooks'\n"
				   "log_hooks:new_amqp { name = 'rabbit',\n"
				   "  url = 'amqp://u:p@127.0.0.1:5673/v', exchange = '',\n"
				   "  routing_key = 'records', declare_queue = true,\n"
				   "  queue_config = { max_age = '1h' } }\n";
	struct policy *p = load_ok(text);
	struct policy_queue_config q;
	char err[512];

	cr_assert_eq(
	    policy_get_queue_config(p, "rabbit.log_hook", NULL, NULL, NULL, &q, err, sizeof(err)),
	    PT_OK, "%s", err);
	cr_assert_not_null(q.amqp);
	cr_assert_null(q.http);
	cr_assert_eq(q.max_age_ms, 3600000);
	cr_assert_eq(q.retry_interval_ms, 60000);
	cr_assert_str_eq(q.amqp->site, "amqp://u@127.0.0.1:5673/v?declare=records");
	cr_assert_str_eq(q.amqp->routing_key, "records");
	cr_assert_str_eq(q.amqp->exchange, "");
	cr_assert(q.amqp->declare_queue);
	cr_assert_str_eq(q.amqp->content_type, "application/json");
	policy_queue_config_free(&q);
	policy_free(p);
}
