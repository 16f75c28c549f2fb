/*
 * policy_load_test.c -- loading a policy: errors carry the exact file:line
 * (syntax, top-level runtime, init runtime, errors raised by Petrel's own
 * functions), the module is reachable as both 'petrel' and 'kumo', handler
 * registration rules, the sandbox, package.path, and independent states
 * loaded by several threads at once.
 */
#include "policy/policy.h"
#include "tests/unit/policy_test_util.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(policy_load, .init = dir_setup, .fini = dir_teardown);

Test(policy_load, syntax_error_gives_exact_line)
{
	load_fails_with("local petrel = require 'petrel'\n"
			"local a = 1\n"
			"\n"
			"local b = = 2\n"
			"local c = 3\n",
			4, "unexpected symbol near '='");
}

/* The file ends after line 3's newline, so <eof> is on line 4. */
Test(policy_load, unfinished_block_reports_end_of_file_line)
{
	load_fails_with("local petrel = require 'petrel'\n"
			"petrel.on('init', function()\n"
			"  local x = 1\n",
			4, "'end' expected (to close 'function' at line 2) near '<eof>'");
}

Test(policy_load, runtime_error_in_top_level_code)
{
	load_fails_with("local petrel = require 'petrel'\n"
			"local t = nil\n"
			"local x = t.field\n",
			3, "attempt to index local 't' (a nil value)");
}

Test(policy_load, runtime_error_in_init)
{
	load_fails_with("local petrel = require 'petrel'\n"
			"petrel.on('init', function()\n"
			"  petrel.define_spool { name = 'data', path = '/x' }\n"
			"  local n = nil\n"
			"  local y = n + 1\n"
			"end)\n",
			5, "attempt to perform arithmetic on local 'n' (a nil value)");
	load_fails_with("local petrel = require 'petrel'\n"
			"petrel.on('init', function()\n"
			"  error('no config for this host')\n"
			"end)\n",
			3, "no config for this host");
}

Test(policy_load, error_from_a_function_called_by_init_points_at_that_line)
{
	load_fails_with("local petrel = require 'petrel'\n"
			"local function listen(addr)\n"
			"  petrel.start_esmtp_listener { listen = addr, bogus = 1 }\n"
			"end\n"
			"petrel.on('init', function()\n"
			"  listen('127.0.0.1:25')\n"
			"end)\n",
			3, "start_esmtp_listener: unknown key 'bogus'");
}

Test(policy_load, error_with_level_2_keeps_lua_location)
{
	load_fails_with("local petrel = require 'petrel'\n"
			"local function need(v) if not v then error('value needed', 2) end end\n"
			"petrel.on('init', function()\n"
			"  need(false)\n"
			"end)\n",
			4, "value needed");
}

Test(policy_load, non_string_error_value_is_described)
{
	load_fails_with("error({ code = 1 })\n", 1, "(error object is a table value)");
}

Test(policy_load, kumo_and_petrel_are_one_module)
{
	struct policy *p = load_ok("local kumo, petrel = require 'kumo', require 'petrel'\n"
				   "if kumo ~= petrel then error('two modules') end\n"
				   "kumo.on('init', function()\n"
				   "  petrel.start_esmtp_listener { listen = '127.0.0.1:2525' }\n"
				   "end)\n");

	cr_assert_eq(policy_config(p)->n_listeners, 1);
	policy_free(p);
}

Test(policy_load, second_handler_for_an_event_is_an_error)
{
	load_fails_with("local petrel = require 'petrel'\n"
			"petrel.on('init', function() end)\n"
			"petrel.on('init', function() end)\n",
			3, "event 'init' already has a handler");
	load_fails_with("local kumo = require 'kumo'\n"
			"kumo.on('smtp_server_message_received', function() end)\n"
			"kumo.on('get_queue_config', function() end)\n"
			"kumo.on('smtp_server_message_received', function() end)\n",
			4, "event 'smtp_server_message_received' already has a handler");
}

Test(policy_load, on_checks_its_arguments)
{
	load_fails_with("local petrel = require 'petrel'\n"
			"petrel.on('init', 'not a function')\n",
			2, "bad argument #2 to 'on' (function expected, got string)");
}

Test(policy_load, reject_outside_an_event_is_an_error)
{
	load_fails_with("local petrel = require 'petrel'\n"
			"petrel.on('init', function()\n"
			"  petrel.reject(550, 'no')\n"
			"end)\n",
			3, "reject() may only be called from an SMTP event");
}

Test(policy_load, sandbox_removes_process_and_native_code_access)
{
	struct policy *p = load_ok(
	    "local function gone(name, v) if v ~= nil then error(name .. ' present') end end\n"
	    "gone('os.execute', os.execute)\n"
	    "gone('os.exit', os.exit)\n"
	    "gone('io.popen', io.popen)\n"
	    "gone('package.loadlib', package.loadlib)\n"
	    "gone('debug', debug)\n"
	    "if pcall(require, 'ffi') then error('ffi loadable') end\n"
	    "if pcall(require, 'debug') then error('debug loadable') end\n"
	    "if package.cpath ~= '' then error('cpath ' .. package.cpath) end\n"
	    "if type(io.open) ~= 'function' then error('io.open missing') end\n"
	    "if type(os.time()) ~= 'number' then error('os.time missing') end\n"
	    "if type(require) ~= 'function' then error('require missing') end\n");

	policy_free(p);
}

Test(policy_load, require_finds_modules_beside_the_policy)
{
	char path[512];
	struct policy *p;

	test_write_file(test_dir, "helper.lua", "return { listen = '127.0.0.1:2600' }\n", path,
			sizeof(path));
	p = load_ok("local petrel = require 'petrel'\n"
		    "local helper = require 'helper'\n"
		    "petrel.on('init', function()\n"
		    "  petrel.start_esmtp_listener { listen = helper.listen }\n"
		    "end)\n");
	cr_assert_str_eq(policy_config(p)->listeners[0].listen, "127.0.0.1:2600");
	policy_free(p);
}

Test(policy_load, error_inside_a_required_module_names_the_module)
{
	char want[600], err[512], path[512];
	struct policy *p = NULL;
	const char *mod =
	    test_write_file(test_dir, "broken.lua", "local M = {}\nlocal x = nil + 1\nreturn M\n",
			    path, sizeof(path));

	snprintf(want, sizeof(want), "%s:2: attempt to perform arithmetic on a nil value", mod);
	cr_assert_eq(
	    policy_load(&p, write_policy("local b = require 'broken'\n"), 0, err, sizeof(err)),
	    PT_ERROR);
	cr_assert_str_eq(err, want);
}

Test(policy_load, missing_file_is_an_error)
{
	struct policy *p = (struct policy *)1;
	char err[512];

	cr_assert_eq(policy_load(&p, "/nonexistent/petrel/policy.lua", 0, err, sizeof(err)),
		     PT_ERROR);
	cr_assert_null(p);
	cr_assert_str_eq(err,
			 "cannot open /nonexistent/petrel/policy.lua: No such file or directory");
}

Test(policy_load, small_error_buffer_is_truncated_not_overrun)
{
	struct policy *p = NULL;
	char err[16];

	memset(err, 'x', sizeof(err));
	cr_assert_eq(
	    policy_load(&p, write_policy("error('a long message here')\n"), 0, err, sizeof(err)),
	    PT_ERROR);
	cr_assert_eq(strlen(err), sizeof(err) - 1);
	cr_assert_eq(strncmp(err, test_path, sizeof(err) - 1), 0);
}

struct load_job {
	const char *path;
	unsigned shard;
	int rc;
	size_t n_listeners;
	char tenant[64];
};

/* Load and run an event on its own thread, as a shard does. */
static void *load_thread(void *arg)
{
	struct load_job *job = arg;
	struct policy_reply reply;
	struct policy *p = NULL;
	struct pt_message m;
	char err[256];

	job->rc = policy_load(&p, job->path, job->shard, err, sizeof(err));
	if (job->rc != PT_OK)
		return NULL;
	job->n_listeners = policy_config(p)->n_listeners;
	pt_message_init(&m);
	for (int i = 0; i < 200; i++) {
		pt_message_clear(&m);
		job->rc = policy_smtp_server_message_received(p, &m, &reply);
		if (job->rc != PT_OK)
			break;
	}
	snprintf(job->tenant, sizeof(job->tenant), "%s", pt_message_get_meta(&m, "count"));
	pt_message_clear(&m);
	policy_free(p);
	return NULL;
}

Test(policy_load, shards_load_independent_states_in_parallel)
{
	struct load_job jobs[4];
	pthread_t threads[4];
	const char *path =
	    write_policy("local petrel = require 'petrel'\n"
			 "count = 0\n"
			 "petrel.on('init', function()\n"
			 "  petrel.start_esmtp_listener { listen = '127.0.0.1:2525' }\n"
			 "end)\n"
			 "petrel.on('smtp_server_message_received', function(msg)\n"
			 "  count = count + 1\n"
			 "  msg:set_meta('count', count)\n"
			 "end)\n");

	for (unsigned i = 0; i < 4; i++) {
		jobs[i] = (struct load_job){.path = path, .shard = i};
		cr_assert_eq(pthread_create(&threads[i], NULL, load_thread, &jobs[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(threads[i], NULL);
		cr_assert_eq(jobs[i].rc, PT_OK, "shard %u", i);
		cr_assert_eq(jobs[i].n_listeners, 1);
		/* Each state counted only its own 200 calls: globals are per shard. */
		cr_assert_str_eq(jobs[i].tenant, "200");
	}
}
