/*
 * policy_config_test.c -- what the init event's calls put into struct
 * policy_config: every start_esmtp_listener field, the defaults, durations,
 * define_spool and configure_local_logs, and the errors (unknown keys, bad
 * values, calls outside init) with the policy's file:line.  Also loads the
 * shipped policy/default.lua (tests run from the repository root).
 */
#include "policy/policy.h"
#include "tests/unit/policy_test_util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool relays(const struct policy_listener *l, const char *ip)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
	struct sockaddr_in sin = {.sin_family = AF_INET};

	if (inet_pton(AF_INET, ip, &sin.sin_addr) == 1)
		return pt_cidr_list_match(&l->relay_hosts, (struct sockaddr *)&sin);
	cr_assert_eq(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
	return pt_cidr_list_match(&l->relay_hosts, (struct sockaddr *)&sin6);
}

TestSuite(policy_config, .init = dir_setup, .fini = dir_teardown);

Test(policy_config, every_listener_field_is_stored)
{
	struct policy *p = load_ok("local kumo = require 'kumo'\n"
				   "kumo.on('init', function()\n"
				   "  kumo.start_esmtp_listener {\n"
				   "    listen = '0.0.0.0:25',\n"
				   "    hostname = 'mx.example.com',\n"
				   "    relay_hosts = { '10.0.0.0/8', '::1' },\n"
				   "    banner = 'Welcome to the test',\n"
				   "    max_message_size = 1048576,\n"
				   "    max_recipients_per_message = 5,\n"
				   "    max_connections = 7,\n"
				   "    tls_certificate = '/etc/c.pem',\n"
				   "    tls_private_key = '/etc/k.pem',\n"
				   "    client_timeout = '5m',\n"
				   "    data_timeout = '1 hour',\n"
				   "  }\n"
				   "end)\n");
	const struct policy_config *c = policy_config(p);
	const struct policy_listener *l = &c->listeners[0];

	cr_assert_eq(c->n_listeners, 1);
	cr_assert_str_eq(l->listen, "0.0.0.0:25");
	cr_assert_str_eq(l->hostname, "mx.example.com");
	cr_assert_str_eq(l->banner, "Welcome to the test");
	cr_assert_eq(l->relay_hosts.n, 2);
	cr_assert(relays(l, "10.200.3.4"));
	cr_assert(relays(l, "::1"));
	cr_assert_not(relays(l, "127.0.0.1"), "the default must be replaced, not extended");
	cr_assert_not(relays(l, "11.0.0.1"));
	cr_assert_eq(l->max_message_size, 1048576);
	cr_assert_eq(l->max_recipients_per_message, 5);
	cr_assert_eq(l->max_connections, 7);
	cr_assert_str_eq(l->tls_certificate, "/etc/c.pem");
	cr_assert_str_eq(l->tls_private_key, "/etc/k.pem");
	cr_assert_eq(l->client_timeout_ms, 300000);
	cr_assert_eq(l->data_timeout_ms, 3600000);
	policy_free(p);
}

Test(policy_config, listener_defaults)
{
	struct policy *p = load_ok("local petrel = require 'petrel'\n"
				   "petrel.on('init', function()\n"
				   "  petrel.start_esmtp_listener { listen = '[::1]:2526' }\n"
				   "end)\n");
	const struct policy_config *c = policy_config(p);
	const struct policy_listener *l = &c->listeners[0];
	char host[256] = "";

	gethostname(host, sizeof(host) - 1);
	cr_assert_eq(c->n_listeners, 1);
	cr_assert_str_eq(l->listen, "[::1]:2526");
	cr_assert_str_eq(l->hostname, host);
	cr_assert_null(l->banner);
	cr_assert_eq(l->relay_hosts.n, 1);
	cr_assert(relays(l, "127.0.0.1"));
	cr_assert(relays(l, "::ffff:127.0.0.1"));
	cr_assert_not(relays(l, "127.0.0.2"));
	cr_assert_eq(l->max_message_size, 20971520);
	cr_assert_eq(l->max_recipients_per_message, 100);
	cr_assert_eq(l->max_connections, 32768);
	cr_assert_null(l->tls_certificate);
	cr_assert_null(l->tls_private_key);
	cr_assert_eq(l->client_timeout_ms, 60000);
	cr_assert_eq(l->data_timeout_ms, 300000);
	cr_assert_str_eq(c->spool_path, "./var/spool");
	cr_assert_null(c->log_dir);
	policy_free(p);
}

Test(policy_config, no_init_gives_empty_defaults)
{
	struct policy *p = load_ok("local petrel = require 'petrel'\n");
	const struct policy_config *c = policy_config(p);

	cr_assert_eq(c->n_listeners, 0);
	cr_assert_str_eq(c->spool_path, "./var/spool");
	cr_assert_null(c->log_dir);
	policy_free(p);
}

Test(policy_config, durations_and_several_listeners)
{
	struct policy *p = load_ok(
	    "local petrel = require 'petrel'\n"
	    "petrel.on('init', function()\n"
	    "  petrel.start_esmtp_listener { listen = '127.0.0.1:1', client_timeout = '60s',"
	    "    data_timeout = '500ms' }\n"
	    "  petrel.start_esmtp_listener { listen = '127.0.0.1:2', client_timeout = 30,"
	    "    data_timeout = 0.25 }\n"
	    "  petrel.start_esmtp_listener { listen = '127.0.0.1:3', client_timeout = '2 days',"
	    "    data_timeout = '1h 30m' }\n"
	    "  for port = 4, 9 do\n"
	    "    petrel.start_esmtp_listener { listen = '127.0.0.1:' .. port }\n"
	    "  end\n"
	    "end)\n");
	const struct policy_config *c = policy_config(p);

	cr_assert_eq(c->n_listeners, 9);
	cr_assert_eq(c->listeners[0].client_timeout_ms, 60000);
	cr_assert_eq(c->listeners[0].data_timeout_ms, 500);
	cr_assert_eq(c->listeners[1].client_timeout_ms, 30000);
	cr_assert_eq(c->listeners[1].data_timeout_ms, 250);
	cr_assert_eq(c->listeners[2].client_timeout_ms, 2ull * 86400000);
	cr_assert_eq(c->listeners[2].data_timeout_ms, 5400000);
	cr_assert_str_eq(c->listeners[8].listen, "127.0.0.1:9");
	cr_assert_eq(c->listeners[8].client_timeout_ms, 60000);
	policy_free(p);
}

Test(policy_config, spool_and_logs)
{
	struct policy *p =
	    load_ok("local kumo = require 'kumo'\n"
		    "kumo.on('init', function()\n"
		    "  kumo.define_spool { name = 'data', path = '/var/spool/petrel/data',"
		    "    kind = 'RocksDB', flush = true }\n"
		    "  kumo.define_spool { name = 'meta', path = '/var/spool/petrel/meta' }\n"
		    "  kumo.configure_local_logs { log_dir = '/var/log/petrel',"
		    "    max_segment_duration = '1 hour', headers = { 'Subject', 'X-*' },"
		    "    meta = { 'tenant' }, per_record = { Reception = { suffix = '_r' } } }\n"
		    "end)\n");
	const struct policy_config *c = policy_config(p);

	cr_assert_str_eq(c->spool_path, "/var/spool/petrel/data");
	cr_assert_str_eq(c->log_dir, "/var/log/petrel");
	cr_assert_eq(c->log_max_segment_duration_ms, 3600 * 1000);
	cr_assert_eq(c->log_max_file_size, 1000000000); /* KumoMTA's defaults */
	cr_assert_eq(c->log_compression_level, 0);
	cr_assert_eq(c->n_listeners, 0);
	cr_assert_eq(c->n_log_headers, 2);
	cr_assert_str_eq(c->log_headers[0], "Subject");
	cr_assert_str_eq(c->log_headers[1], "X-*");
	policy_free(p);
}

Test(policy_config, log_headers_are_one_list_for_logs_and_hooks)
{
	struct policy *p =
	    load_ok("local kumo = require 'kumo'\n"
		    "kumo.on('init', function()\n"
		    "  kumo.configure_local_logs { log_dir = '/l', headers = { 'Subject' } }\n"
		    "  kumo.configure_log_hook { name = 'h', headers = { 'subject', 'X-Id' } }\n"
		    "  kumo.configure_log_hook { name = 'g' }\n"
		    "  kumo.configure_local_logs { log_dir = '/l', headers = { 'To', 'x-id' } }\n"
		    "end)\n");
	const struct policy_config *c = policy_config(p);

	/* The second configure_local_logs replaced 'Subject'; the hook's stay. */
	cr_assert_eq(c->n_log_headers, 3);
	cr_assert_str_eq(c->log_headers[0], "To");
	cr_assert_str_eq(c->log_headers[1], "x-id");
	cr_assert_str_eq(c->log_headers[2], "subject");
	policy_free(p);
}

Test(policy_config, failed_log_calls_leave_a_usable_header_list)
{
	struct policy *p = load_ok(
	    "local kumo = require 'kumo'\n"
	    "kumo.on('init', function()\n"
	    "  kumo.configure_local_logs { log_dir = '/l', headers = { 'Subject' } }\n"
	    "  assert(not pcall(kumo.configure_local_logs,\n"
	    "    { log_dir = '/l', headers = { 'To', 'X-*-Id' } }))\n"
	    "  assert(not pcall(kumo.configure_log_hook, { name = '.bad', headers = { 'Cc' } }))\n"
	    "  kumo.configure_log_hook { name = 'h', headers = { 'X-Id' } }\n"
	    "end)\n");
	const struct policy_config *c = policy_config(p);

	/* The failed local call replaced Subject (its other options are reset
	 * too) and added nothing; the failed hook added nothing. */
	cr_assert_eq(c->n_log_headers, 1);
	cr_assert_str_eq(c->log_headers[0], "X-Id");
	policy_free(p);
}

/* A reload keeps the running config: changed log headers wait for a start. */
Test(policy_config, reload_names_changed_log_headers)
{
	static const char *const texts[] = {
	    "  kumo.configure_local_logs { log_dir = '/l', headers = { 'Subject' } }\n"
	    "  kumo.configure_log_hook { name = 'h', headers = { 'X-Id' } }\n",
	    "  kumo.configure_local_logs { log_dir = '/l', headers = { 'To' } }\n"
	    "  kumo.configure_log_hook { name = 'h', headers = { 'X-Id' } }\n",
	    "  kumo.configure_local_logs { log_dir = '/l', headers = { 'To' } }\n"
	    "  kumo.configure_log_hook { name = 'h' }\n",
	};
	/* Each reload is compared with the running (first) config. */
	static const char *const notes[] = {"configure_local_logs",
					    "configure_local_logs, configure_log_hook"};
	char text[1024], err[512], note[256];
	struct policy *p;

	snprintf(text, sizeof(text),
		 "local kumo = require 'kumo'\nkumo.on('init', function()\n%s"
		 "end)\n",
		 texts[0]);
	p = load_ok(text);
	for (int i = 1; i < 3; i++) {
		snprintf(text, sizeof(text),
			 "local kumo = require 'kumo'\nkumo.on('init', function()\n%send)\n",
			 texts[i]);
		write_policy(text);
		cr_assert_eq(policy_reload(&p, test_path, err, sizeof(err), note, sizeof(note)),
			     PT_OK, "%s", err);
		cr_assert_str_eq(note, notes[i - 1]);
	}
	/* The running config is the first one's. */
	cr_assert_str_eq(policy_config(p)->log_headers[0], "Subject");
	policy_free(p);
}

Test(policy_config, log_rotation_and_compression)
{
	struct policy *p =
	    load_ok("local kumo = require 'kumo'\n"
		    "kumo.on('init', function()\n"
		    "  kumo.configure_local_logs { log_dir = '/a', max_file_size = 4096,"
		    "    compression_level = 19, max_segment_duration = '10 seconds' }\n"
		    "  kumo.configure_local_logs { log_dir = '/b', compression_level = 1 }\n"
		    "end)\n");
	const struct policy_config *c = policy_config(p);

	/* The second call describes the log set whole: what it omits is default. */
	cr_assert_str_eq(c->log_dir, "/b");
	cr_assert_eq(c->log_max_file_size, 1000000000);
	cr_assert_eq(c->log_max_segment_duration_ms, 0);
	cr_assert_eq(c->log_compression_level, 1);
	policy_free(p);
	p = load_ok("local kumo = require 'kumo'\n"
		    "kumo.on('init', function()\n"
		    "  kumo.configure_local_logs { log_dir = '/a', max_file_size = 4096,"
		    "    compression_level = 19, max_segment_duration = '10 seconds' }\n"
		    "end)\n");
	c = policy_config(p);
	cr_assert_eq(c->log_max_file_size, 4096);
	cr_assert_eq(c->log_compression_level, 19);
	cr_assert_eq(c->log_max_segment_duration_ms, 10000);
	policy_free(p);
}

Test(policy_config, unknown_key_names_key_and_line)
{
	load_fails_with("local petrel = require 'petrel'\n"
			"petrel.on('init', function()\n"
			"  petrel.start_esmtp_listener {\n"
			"    listen = '127.0.0.1:25', relay_host = { '10.0.0.0/8' } }\n"
			"end)\n",
			3, "start_esmtp_listener: unknown key 'relay_host'");
}

Test(policy_config, kumo_option_not_supported_is_named)
{
	load_fails_with("local petrel = require 'petrel'\n"
			"petrel.on('init', function()\n"
			"  petrel.start_esmtp_listener { listen = '127.0.0.1:25',\n"
			"    max_messages_per_connection = 10 }\n"
			"end)\n",
			3,
			"start_esmtp_listener: 'max_messages_per_connection' is a KumoMTA option "
			"Petrel does not support yet");
}

Test(policy_config, bad_values_are_errors_with_line)
{
	const char *head = "local petrel = require 'petrel'\npetrel.on('init', function()\n  ";
	static const struct policy_fail_case cases[] = {
	    {"petrel.start_esmtp_listener { hostname = 'x' }",
	     "start_esmtp_listener: 'listen' is required"},
	    {"petrel.start_esmtp_listener { listen = '127.0.0.1' }",
	     "start_esmtp_listener: 'listen' must be \"host:port\" or \"[ipv6]:port\" with a "
	     "port from 1 to 65535, got '127.0.0.1'"},
	    {"petrel.start_esmtp_listener { listen = '127.0.0.1:70000' }",
	     "start_esmtp_listener: 'listen' must be \"host:port\" or \"[ipv6]:port\" with a "
	     "port from 1 to 65535, got '127.0.0.1:70000'"},
	    {"petrel.start_esmtp_listener { listen = ':1' }",
	     "start_esmtp_listener: 'listen' must be \"host:port\" or \"[ipv6]:port\" with a "
	     "port from 1 to 65535, got ':1'"},
	    {"petrel.start_esmtp_listener { listen = '0:1', relay_hosts = { '10.0.0.300' } }",
	     "start_esmtp_listener: relay_hosts[1]: '10.0.0.300' is not an IP address or "
	     "CIDR block"},
	    {"petrel.start_esmtp_listener { listen = '0:1', relay_hosts = '10.0.0.1' }",
	     "start_esmtp_listener: 'relay_hosts' must be a list of strings, got string"},
	    {"petrel.start_esmtp_listener { listen = '0:1', max_connections = '10' }",
	     "start_esmtp_listener: 'max_connections' must be a number, got string"},
	    {"petrel.start_esmtp_listener { listen = '0:1', max_message_size = 1.5 }",
	     "start_esmtp_listener: 'max_message_size' must be a whole number from 1 to "
	     "9007199254740992"},
	    {"petrel.start_esmtp_listener { listen = '0:1', client_timeout = '5 parsecs' }",
	     "start_esmtp_listener: 'client_timeout': invalid duration '5 parsecs': unknown "
	     "unit (use ms, s, m, h, d or w, or their long names)"},
	    {"petrel.start_esmtp_listener { listen = '0:1', data_timeout = '30' }",
	     "start_esmtp_listener: 'data_timeout': invalid duration '30': missing unit "
	     "(e.g. \"60s\", \"5m\", \"1 hour\")"},
	    {"petrel.start_esmtp_listener { listen = '0:1', data_timeout = -1 }",
	     "start_esmtp_listener: 'data_timeout': duration must be a non-negative number "
	     "of seconds"},
	    {"petrel.start_esmtp_listener { listen = '0:1', client_timeout = '0s' }",
	     "start_esmtp_listener: 'client_timeout' must be longer than zero"},
	    {"petrel.start_esmtp_listener { listen = '0:1', tls_certificate = '/c.pem' }",
	     "start_esmtp_listener: tls_certificate and tls_private_key must be given "
	     "together"},
	    {"petrel.start_esmtp_listener { [1] = 'x' }",
	     "start_esmtp_listener: keys must be strings, got a number key"},
	    {"petrel.define_spool { name = 'other', path = '/x' }",
	     "define_spool: unknown spool name 'other' (Petrel has 'data'; 'meta' is "
	     "accepted and shares it)"},
	    {"petrel.define_spool { name = 'data' }", "define_spool: 'path' is required"},
	    {"petrel.define_spool { name = 'data', path = '/x', kind = 'Tape' }",
	     "define_spool: 'kind' must be \"LocalDisk\" or \"RocksDB\""},
	    {"petrel.define_spool { name = 'data', path = '/x', flush = 'yes' }",
	     "define_spool: 'flush' must be a boolean, got string"},
	    {"petrel.configure_local_logs { max_segment_duration = '1h' }",
	     "configure_local_logs: 'log_dir' is required"},
	    {"petrel.configure_local_logs { log_dir = '/l', headers = 'Subject' }",
	     "configure_local_logs: 'headers' must be a list of strings, got string"},
	    {"petrel.configure_local_logs { log_dir = '/l', headers = { 'Subject', 'X-*-Id' } }",
	     "configure_local_logs: headers[2] 'X-*-Id' is not a header name (a '*' may only "
	     "end one, as in 'X-*')"},
	    {"petrel.configure_local_logs { log_dir = '/l', headers = { '' } }",
	     "configure_local_logs: headers[1] '' is not a header name (a '*' may only end "
	     "one, as in 'X-*')"},
	    {"petrel.configure_local_logs { log_dir = '/l', meta = { 'a', 3 } }",
	     "configure_local_logs: meta[2] must be a string, got number"},
	    {"petrel.configure_local_logs { log_dir = '/l', per_record = 5 }",
	     "configure_local_logs: 'per_record' must be a table, got number"},
	    {"petrel.configure_local_logs { log_dir = '/l', max_segment_duration = true }",
	     "configure_local_logs: 'max_segment_duration': duration must be a number of "
	     "seconds or a string like \"60s\", got boolean"},
	    {"petrel.configure_local_logs { log_dir = 7 }",
	     "configure_local_logs: 'log_dir' must be a string, got number"},
	    {"petrel.configure_local_logs { log_dir = '/l', max_file_size = 0 }",
	     "configure_local_logs: 'max_file_size' must be a whole number from 1 to "
	     "9007199254740992"},
	    {"petrel.configure_local_logs { log_dir = '/l', max_file_size = '1GB' }",
	     "configure_local_logs: 'max_file_size' must be a number, got string"},
	    {"petrel.configure_local_logs { log_dir = '/l', compression_level = 22 }",
	     "configure_local_logs: 'compression_level' must be a whole number from 0 "
	     "(zstd's default) to 21"},
	    {"petrel.configure_local_logs { log_dir = '/l', compression_level = 2.5 }",
	     "configure_local_logs: 'compression_level' must be a whole number from 0 "
	     "(zstd's default) to 21"},
	    {"petrel.configure_local_logs { log_dir = '/l', compression_level = 'max' }",
	     "configure_local_logs: 'compression_level' must be a number, got string"},
	    {"petrel.configure_local_logs { log_dir = '/l', max_segment_duration = 0 }",
	     "configure_local_logs: 'max_segment_duration' must be longer than zero"},
	    {"petrel.configure_local_logs { log_dir = '/l', back_pressure = 10 }",
	     "configure_local_logs: 'back_pressure' is a KumoMTA option Petrel does not "
	     "support yet"},
	    {"petrel.start_esmtp_listener('0:1')",
	     "bad argument #1 to 'start_esmtp_listener' (table expected, got string)"},
	};

	load_fails_each(head, "\nend)\n", cases, PT_ARRAY_LEN(cases), 3);
}

Test(policy_config, config_calls_only_in_init)
{
	load_fails_with("local petrel = require 'petrel'\n"
			"petrel.start_esmtp_listener { listen = '127.0.0.1:25' }\n",
			2, "start_esmtp_listener may only be called from the init event");
	load_fails_with("local petrel = require 'petrel'\n\n"
			"petrel.define_spool { name = 'data', path = '/x' }\n",
			3, "define_spool may only be called from the init event");
	load_fails_with("local petrel = require 'petrel'\n"
			"petrel.configure_local_logs { log_dir = '/x' }\n",
			2, "configure_local_logs may only be called from the init event");
}

Test(policy_config, config_call_in_message_event_is_an_error)
{
	struct policy *p =
	    load_ok("local petrel = require 'petrel'\n"
		    "petrel.on('smtp_server_message_received', function(msg)\n"
		    "  local ok, err = pcall(petrel.start_esmtp_listener, { listen = '0:25' })\n"
		    "  msg:set_meta('err', err)\n"
		    "end)\n");
	struct policy_reply reply = {0};
	struct pt_message m;

	pt_message_init(&m);
	cr_assert_eq(policy_smtp_server_message_received(p, &m, &reply), PT_OK);
	cr_assert_str_eq(pt_message_get_meta(&m, "err"),
			 "\"start_esmtp_listener may only be called from the init event\"");
	cr_assert_eq(policy_config(p)->n_listeners, 0);
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_config, failed_call_caught_by_pcall_adds_no_listener)
{
	struct policy *p =
	    load_ok("local petrel = require 'petrel'\n"
		    "petrel.on('init', function()\n"
		    "  assert(not pcall(petrel.start_esmtp_listener,\n"
		    "    { listen = '0:1', hostname = 'h', relay_hosts = { '1.2.3.4', 'bad' } }))\n"
		    "  petrel.start_esmtp_listener { listen = '0:2' }\n"
		    "  petrel.define_spool { name = 'data', path = '/first' }\n"
		    "  petrel.define_spool { name = 'data', path = '/second' }\n"
		    "end)\n");
	const struct policy_config *c = policy_config(p);

	cr_assert_eq(c->n_listeners, 1);
	cr_assert_str_eq(c->listeners[0].listen, "0:2");
	cr_assert_eq(c->listeners[0].relay_hosts.n, 1);
	cr_assert_str_eq(c->spool_path, "/second");
	policy_free(p);
}

Test(policy_config, default_lua_yields_documented_config)
{
	struct policy *p = NULL;
	char err[512];
	const struct policy_config *c;
	const struct policy_listener *l;
	char host[256] = "";

	cr_assert_eq(policy_load(&p, "policy/default.lua", 0, err, sizeof(err)), PT_OK,
		     "policy/default.lua: %s (run from the repository root)", err);
	c = policy_config(p);
	l = &c->listeners[0];
	gethostname(host, sizeof(host) - 1);
	cr_assert_eq(c->n_listeners, 1);
	cr_assert_str_eq(c->spool_path, "./var/spool");
	cr_assert_str_eq(c->log_dir, "./var/log");
	cr_assert_str_eq(l->listen, "127.0.0.1:2525");
	cr_assert_str_eq(l->hostname, host);
	cr_assert_eq(l->relay_hosts.n, 1);
	cr_assert(relays(l, "127.0.0.1"));
	cr_assert_not(relays(l, "192.0.2.1"));
	cr_assert_eq(l->max_message_size, 20971520);
	cr_assert_eq(l->max_recipients_per_message, 100);
	cr_assert_eq(l->max_connections, 32768);
	cr_assert_eq(l->client_timeout_ms, 60000);
	cr_assert_eq(l->data_timeout_ms, 300000);
	policy_free(p);
}

Test(policy_config, default_lua_message_handler_sets_tenant)
{
	static const char with[] = "X-Tenant: acme\r\nSubject: s\r\n\r\nbody\r\n";
	static const char without[] = "Subject: s\r\n\r\nbody\r\n";
	struct policy_reply reply = {0};
	struct policy *p = NULL;
	struct pt_message m;
	char err[512];

	cr_assert_eq(policy_load(&p, "policy/default.lua", 1, err, sizeof(err)), PT_OK, "%s", err);
	pt_message_init(&m);
	pt_buf_append(&m.data, with, sizeof(with) - 1);
	pt_message_scan_headers(&m);
	cr_assert_eq(policy_smtp_server_message_received(p, &m, &reply), PT_OK);
	cr_assert_str_eq(pt_message_get_meta(&m, "tenant"), "\"acme\"");
	pt_message_clear(&m);

	pt_buf_append(&m.data, without, sizeof(without) - 1);
	pt_message_scan_headers(&m);
	cr_assert_eq(policy_smtp_server_message_received(p, &m, &reply), PT_OK);
	cr_assert_null(pt_message_get_meta(&m, "tenant"));
	cr_assert_eq(m.n_meta, 0);
	pt_message_clear(&m);
	policy_free(p);
}
