/*
 * policy_source_test.c -- kumo.make_egress_source, kumo.make_egress_pool,
 * the get_egress_source / get_egress_pool events and the init-time
 * define_egress_source / define_egress_pool: every key, the defaults, the
 * built-in "unspecified" source and pool, which of event and definition
 * wins, and every argument error with its exact text and file:line
 * (unknown and KumoMTA-only keys, bad values, names that do not match).
 */
#include "policy/policy.h"
#include "tests/unit/policy_test_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define HEAD "local kumo = require 'kumo'\n"

TestSuite(policy_source, .init = dir_setup, .fini = dir_teardown);

static void assert_empty_source(const struct policy_egress_source *s)
{
	cr_assert_null(s->name);
	cr_assert_null(s->source_address);
	cr_assert_null(s->ehlo_domain);
	cr_assert_eq(s->remote_port, 0);
}

/* Load text; get_egress_source(name) must fail with "<prefix><msg>", where
 * prefix is "<path>:<line>: " (line > 0) or nothing. */
static void source_fails_with(const char *text, const char *name, int line, const char *msg)
{
	struct policy *p = load_ok(text);
	struct policy_egress_source s;
	char err[512], want[700];

	cr_assert_eq(policy_get_egress_source(p, name, &s, err, sizeof(err)), PT_ERROR);
	if (line > 0)
		snprintf(want, sizeof(want), "%s:%d: %s", test_path, line, msg);
	else
		snprintf(want, sizeof(want), "%s", msg);
	cr_assert_str_eq(err, want);
	assert_empty_source(&s);
	policy_egress_source_free(&s);
	policy_free(p);
}

/* `make` (a constructor call written at line 3) must fail to load with msg. */
static void make_fails_with(const char *make, const char *msg)
{
	char text[1024];

	snprintf(text, sizeof(text), HEAD "local x = 1\n%s\n", make);
	load_fails_with(text, 3, msg);
}

Test(policy_source, unspecified_source_is_built_in)
{
	/* The handler would raise: it must never be asked for "unspecified". */
	struct policy *p = load_ok(HEAD "kumo.on('get_egress_source', function(name)\n"
					"  error('asked for ' .. name)\n"
					"end)\n");
	struct policy_egress_source s;
	char err[256] = "stale";

	cr_assert_eq(policy_get_egress_source(p, "unspecified", &s, err, sizeof(err)), PT_OK);
	cr_assert_str_eq(err, "");
	cr_assert_str_eq(s.name, "unspecified");
	cr_assert_null(s.source_address);
	cr_assert_null(s.ehlo_domain);
	cr_assert_eq(s.remote_port, 0);
	cr_assert_eq(s.ttl_ms, 60000);
	policy_egress_source_free(&s);
	policy_free(p);
}

Test(policy_source, every_source_key_is_stored)
{
	struct policy *p = load_ok(
	    HEAD
	    "kumo.on('get_egress_source', function(name)\n"
	    "  if name == 'v6' then\n"
	    "    return kumo.make_egress_source { name = name, source_address = '2001:db8::7' }\n"
	    "  end\n"
	    "  return kumo.make_egress_source {\n"
	    "    name = name, source_address = '10.0.0.1', ehlo_domain = 'mta1.example.com',\n"
	    "    remote_port = 2525, ttl = '5 mins',\n"
	    "  }\n"
	    "end)\n");
	struct policy_egress_source s, copy;
	char err[256];

	cr_assert_eq(policy_get_egress_source(p, "ip-1", &s, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_str_eq(s.name, "ip-1");
	cr_assert_str_eq(s.source_address, "10.0.0.1");
	cr_assert_str_eq(s.ehlo_domain, "mta1.example.com");
	cr_assert_eq(s.remote_port, 2525);
	cr_assert_eq(s.ttl_ms, 300000);
	cr_assert_eq(policy_egress_source_copy(&copy, &s), PT_OK);
	policy_egress_source_free(&s);
	cr_assert_str_eq(copy.ehlo_domain, "mta1.example.com");
	cr_assert_str_eq(copy.source_address, "10.0.0.1");
	policy_egress_source_free(&copy);
	assert_empty_source(&copy);

	cr_assert_eq(policy_get_egress_source(p, "v6", &s, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_str_eq(s.source_address, "2001:db8::7");
	cr_assert_null(s.ehlo_domain);
	cr_assert_eq(s.remote_port, 0);
	cr_assert_eq(s.ttl_ms, 60000);
	policy_egress_source_free(&s);
	policy_free(p);
}

Test(policy_source, every_pool_key_is_stored)
{
	struct policy *p =
	    load_ok(HEAD "kumo.on('get_egress_pool', function(name)\n"
			 "  return kumo.make_egress_pool {\n"
			 "    name = name, ttl = 30,\n"
			 "    entries = { { name = 'ip-1', weight = 3 }, { name = 'ip-2' },\n"
			 "                { name = 'ip-3', weight = 0 } },\n"
			 "  }\n"
			 "end)\n");
	struct policy_egress_pool pool;
	char err[256];

	cr_assert_eq(policy_get_egress_pool(p, "BestReputation", &pool, err, sizeof(err)), PT_OK,
		     "%s", err);
	cr_assert_str_eq(pool.name, "BestReputation");
	cr_assert_eq(pool.ttl_ms, 30000);
	cr_assert_eq(pool.n_entries, 3);
	cr_assert_str_eq(pool.entries[0].name, "ip-1");
	cr_assert_eq(pool.entries[0].weight, 3);
	cr_assert_str_eq(pool.entries[1].name, "ip-2");
	cr_assert_eq(pool.entries[1].weight, 1);
	cr_assert_str_eq(pool.entries[2].name, "ip-3");
	cr_assert_eq(pool.entries[2].weight, 0);
	policy_egress_pool_free(&pool);
	cr_assert_null(pool.entries);
	cr_assert_eq(pool.n_entries, 0);
	policy_free(p);
}

Test(policy_source, unspecified_pool_is_built_in)
{
	struct policy *p = load_ok(HEAD "kumo.on('get_egress_pool', function(name)\n"
					"  error('asked for ' .. tostring(name))\n"
					"end)\n");
	struct policy_egress_pool pool;
	char err[256];

	for (int i = 0; i < 2; i++) {
		cr_assert_eq(
		    policy_get_egress_pool(p, i ? "unspecified" : NULL, &pool, err, sizeof(err)),
		    PT_OK, "%s", err);
		cr_assert_str_eq(pool.name, "unspecified");
		cr_assert_eq(pool.n_entries, 1);
		cr_assert_str_eq(pool.entries[0].name, "unspecified");
		cr_assert_eq(pool.entries[0].weight, 1);
		policy_egress_pool_free(&pool);
	}
	policy_free(p);
}

Test(policy_source, empty_pool_is_accepted)
{
	struct policy *p = load_ok(HEAD "kumo.on('get_egress_pool', function(name)\n"
					"  return kumo.make_egress_pool { name = name }\n"
					"end)\n");
	struct policy_egress_pool pool;
	char err[256];

	cr_assert_eq(policy_get_egress_pool(p, "drained", &pool, err, sizeof(err)), PT_OK, "%s",
		     err);
	cr_assert_eq(pool.n_entries, 0);
	cr_assert_null(pool.entries);
	policy_egress_pool_free(&pool);
	policy_free(p);
}

Test(policy_source, defined_values_serve_when_there_is_no_handler)
{
	struct policy *p = load_ok(
	    HEAD "kumo.on('init', function()\n"
		 "  kumo.define_egress_source { name = 'ip-1', source_address = '127.0.0.2' }\n"
		 "  kumo.define_egress_pool { name = 'pool-1', entries = { { name = 'ip-1' } } }\n"
		 "end)\n");
	struct policy_egress_source s;
	struct policy_egress_pool pool;
	char err[256];

	cr_assert_eq(policy_get_egress_source(p, "ip-1", &s, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_str_eq(s.source_address, "127.0.0.2");
	policy_egress_source_free(&s);
	cr_assert_eq(policy_get_egress_pool(p, "pool-1", &pool, err, sizeof(err)), PT_OK, "%s",
		     err);
	cr_assert_eq(pool.n_entries, 1);
	cr_assert_str_eq(pool.entries[0].name, "ip-1");
	policy_egress_pool_free(&pool);
	policy_free(p);
}

Test(policy_source, event_wins_and_nil_falls_back_to_the_definition)
{
	struct policy *p = load_ok(
	    HEAD
	    "kumo.on('init', function()\n"
	    "  kumo.define_egress_source { name = 'ip-1', source_address = '127.0.0.2' }\n"
	    "  kumo.define_egress_source { name = 'ip-2', source_address = '127.0.0.3' }\n"
	    "end)\n"
	    "kumo.on('get_egress_source', function(name)\n"
	    "  if name == 'ip-1' then\n"
	    "    return kumo.make_egress_source { name = name, source_address = '127.0.0.9' }\n"
	    "  end\n"
	    "end)\n");
	struct policy_egress_source s;
	char err[256];

	cr_assert_eq(policy_get_egress_source(p, "ip-1", &s, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_str_eq(s.source_address, "127.0.0.9");
	policy_egress_source_free(&s);
	cr_assert_eq(policy_get_egress_source(p, "ip-2", &s, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_str_eq(s.source_address, "127.0.0.3");
	policy_egress_source_free(&s);
	policy_free(p);
}

Test(policy_source, undefined_names_are_errors)
{
	source_fails_with(HEAD, "ip-9", 0,
			  "egress source 'ip-9' is not defined: no get_egress_source handler and "
			  "no define_egress_source names it");
	source_fails_with(HEAD "kumo.on('get_egress_source', function(name)\n"
			       "  return nil\n"
			       "end)\n",
			  "ip-9", 2,
			  "get_egress_source('ip-9') returned nil and no define_egress_source "
			  "names it");
}

Test(policy_source, undefined_pool_is_an_error)
{
	struct policy *p = load_ok(HEAD);
	struct policy_egress_pool pool;
	char err[256];

	cr_assert_eq(policy_get_egress_pool(p, "pool-9", &pool, err, sizeof(err)), PT_ERROR);
	cr_assert_str_eq(err, "egress pool 'pool-9' is not defined: no get_egress_pool handler "
			      "and no define_egress_pool names it");
	cr_assert_null(pool.name);
	policy_free(p);
}

Test(policy_source, handler_errors_point_at_the_policy)
{
	source_fails_with(HEAD "kumo.on('get_egress_source', function(name)\n"
			       "  return kumo.make_egress_source { name = 'ip-2' }\n"
			       "end)\n",
			  "ip-1", 2,
			  "get_egress_source('ip-1') returned the egress source named 'ip-2'; the "
			  "names must match");
	source_fails_with(HEAD "kumo.on('get_egress_source', function(name)\n"
			       "  return { name = name }\n"
			       "end)\n",
			  "ip-1", 2,
			  "get_egress_source must return kumo.make_egress_source{...} or nil, got "
			  "table");
	source_fails_with(HEAD "kumo.on('get_egress_source', function(name)\n"
			       "  return kumo.make_egress_pool { name = name }\n"
			       "end)\n",
			  "ip-1", 2,
			  "get_egress_source must return kumo.make_egress_source{...} or nil, got "
			  "userdata");
	source_fails_with(
	    HEAD "kumo.on('get_egress_source', function(name)\n"
		 "  local s = kumo.make_egress_source { name = name, remote_port = 0 }\n"
		 "  return s\n"
		 "end)\n",
	    "ip-1", 3, "make_egress_source: 'remote_port' must be a whole number from 1 to 65535");
}

Test(policy_source, source_argument_errors)
{
	static const struct {
		const char *make;
		const char *msg;
	} cases[] = {
	    {"kumo.make_egress_source 'ip-1'", "make_egress_source: expected a table, got string"},
	    {"kumo.make_egress_source {}", "make_egress_source: 'name' is required"},
	    {"kumo.make_egress_source { name = '' }",
	     "make_egress_source: 'name' must be 1 to 255 characters without control characters"},
	    {"kumo.make_egress_source { name = 'a\\nb' }",
	     "make_egress_source: 'name' must be 1 to 255 characters without control characters"},
	    {"kumo.make_egress_source { name = 5 }",
	     "make_egress_source: 'name' must be a string, got number"},
	    {"kumo.make_egress_source { name = 'x', source_adress = '10.0.0.1' }",
	     "'source_adress' is not a make_egress_source option"},
	    {"kumo.make_egress_source { name = 'x', source_address = 'mta1.example.com' }",
	     "make_egress_source: 'source_address' must be an IPv4 or IPv6 address such as "
	     "'10.0.0.1' or '2001:db8::1', got 'mta1.example.com'"},
	    {"kumo.make_egress_source { name = 'x', source_address = '10.0.0.1:25' }",
	     "make_egress_source: 'source_address' must be an IPv4 or IPv6 address such as "
	     "'10.0.0.1' or '2001:db8::1', got '10.0.0.1:25'"},
	    {"kumo.make_egress_source { name = 'x', source_address = {} }",
	     "make_egress_source: 'source_address' must be a string, got table"},
	    {"kumo.make_egress_source { name = 'x', ehlo_domain = 'a b' }",
	     "make_egress_source: 'ehlo_domain' must be a domain or address literal of 1 to 255 "
	     "printable characters without spaces"},
	    {"kumo.make_egress_source { name = 'x', remote_port = 65536 }",
	     "make_egress_source: 'remote_port' must be a whole number from 1 to 65535"},
	    {"kumo.make_egress_source { name = 'x', remote_port = '25' }",
	     "make_egress_source: 'remote_port' must be a number, got string"},
	    {"kumo.make_egress_source { name = 'x', ttl = '0s' }",
	     "make_egress_source: 'ttl' must be longer than zero"},
	    {"kumo.make_egress_source { name = 'x', ttl = 'soon' }",
	     "make_egress_source: 'ttl': invalid duration 'soon': expected a number"},
	};

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++)
		make_fails_with(cases[i].make, cases[i].msg);
}

Test(policy_source, kumo_only_source_keys_are_refused_by_name)
{
	static const char *const keys[] = {
	    "ha_proxy_server",	      "ha_proxy_source_address",
	    "socks5_proxy_server",    "socks5_proxy_source_address",
	    "socks5_proxy_username",  "socks5_proxy_password",
	    "suspend_when_unplumbed", "suspend_when_proxy_unhealthy",
	};
	char make[256], msg[256];

	for (size_t i = 0; i < PT_ARRAY_LEN(keys); i++) {
		snprintf(make, sizeof(make), "kumo.make_egress_source { name = 'x', %s = 'y' }",
			 keys[i]);
		snprintf(msg, sizeof(msg),
			 "make_egress_source: '%s' is a KumoMTA option Petrel does not support yet",
			 keys[i]);
		make_fails_with(make, msg);
	}
}

Test(policy_source, pool_argument_errors)
{
	static const struct {
		const char *make;
		const char *msg;
	} cases[] = {
	    {"kumo.make_egress_pool(nil)", "make_egress_pool: expected a table, got nil"},
	    {"kumo.make_egress_pool { entries = {} }", "make_egress_pool: 'name' is required"},
	    {"kumo.make_egress_pool { name = 'p', entry = {} }",
	     "'entry' is not a make_egress_pool option"},
	    {"kumo.make_egress_pool { name = 'p', entries = 'ip-1' }",
	     "make_egress_pool: 'entries' must be a list of { name = ..., weight = ... }, got "
	     "string"},
	    {"kumo.make_egress_pool { name = 'p', entries = { a = { name = 'ip-1' } } }",
	     "make_egress_pool: 'entries' must be a list (keys 1..n)"},
	    {"kumo.make_egress_pool { name = 'p', entries = { 'ip-1' } }",
	     "make_egress_pool: entries[1] must be a table such as { name = 'ip-1', weight = 2 }, "
	     "got string"},
	    {"kumo.make_egress_pool { name = 'p', entries = { { weight = 2 } } }",
	     "make_egress_pool: entries[1].name is required"},
	    {"kumo.make_egress_pool { name = 'p', entries = { { name = 'a' }, { name = 7 } } }",
	     "make_egress_pool: 'entries[2].name' must be a string, got number"},
	    {"kumo.make_egress_pool { name = 'p', entries = { { name = 'a', wieght = 2 } } }",
	     "'wieght' is not a make_egress_pool entry option"},
	    {"kumo.make_egress_pool { name = 'p', entries = { { name = 'a', weight = -1 } } }",
	     "make_egress_pool: entries[1].weight must be a whole number from 0 to 4294967295, "
	     "got -1"},
	    {"kumo.make_egress_pool { name = 'p', entries = { { name = 'a', weight = 1.5 } } }",
	     "make_egress_pool: entries[1].weight must be a whole number from 0 to 4294967295, "
	     "got 1.5"},
	    {"kumo.make_egress_pool { name = 'p', entries = { { name = 'a', weight = '2' } } }",
	     "make_egress_pool: entries[1].weight must be a whole number from 0 to 4294967295, "
	     "got string"},
	    {"kumo.make_egress_pool { name = 'p', entries = { { name = 'a' }, { name = 'b' },\n"
	     "  { name = 'a', weight = 2 } } }",
	     "make_egress_pool: entries[3]: source 'a' is already in the pool (entries[1])"},
	    {"kumo.make_egress_pool { name = 'p', ttl = 0 }",
	     "make_egress_pool: 'ttl' must be longer than zero"},
	};

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++)
		make_fails_with(cases[i].make, cases[i].msg);
}

Test(policy_source, pool_size_is_bounded)
{
	char text[512];

	snprintf(text, sizeof(text),
		 HEAD "local e = {}\n"
		      "for i = 1, 1025 do e[i] = { name = 'ip-' .. i } end\n"
		      "kumo.make_egress_pool { name = 'big', entries = e }\n");
	load_fails_with(text, 4,
			"make_egress_pool: 'entries' has 1025 sources; at most 1024 are "
			"allowed");
}

Test(policy_source, define_is_init_only_and_once_per_name)
{
	load_fails_with(HEAD "\nkumo.define_egress_source { name = 'ip-1' }\n", 3,
			"define_egress_source may only be called from the init event");
	load_fails_with(HEAD "\nkumo.define_egress_pool { name = 'p' }\n", 3,
			"define_egress_pool may only be called from the init event");
	load_fails_with(HEAD "kumo.on('init', function()\n"
			     "  kumo.define_egress_source { name = 'ip-1' }\n"
			     "  kumo.define_egress_source { name = 'ip-1', ehlo_domain = 'x' }\n"
			     "end)\n",
			4, "define_egress_source: source 'ip-1' is already defined");
	load_fails_with(HEAD "kumo.on('init', function()\n"
			     "  kumo.define_egress_pool { name = 'p' }\n"
			     "  kumo.define_egress_pool { name = 'p' }\n"
			     "end)\n",
			4, "define_egress_pool: pool 'p' is already defined");
	load_fails_with(HEAD "kumo.on('init', function()\n"
			     "  kumo.define_egress_source { name = 'unspecified' }\n"
			     "end)\n",
			3,
			"define_egress_source: 'unspecified' is the built-in source (no bind, the "
			"host name); choose another name");
	load_fails_with(HEAD
			"kumo.on('init', function()\n"
			"  kumo.define_egress_source { name = 'x', socks5_proxy_server = 'y' }\n"
			"end)\n",
			3,
			"define_egress_source: 'socks5_proxy_server' is a KumoMTA option Petrel "
			"does not support yet");
	load_fails_with(HEAD "kumo.on('init', function()\n"
			     "  kumo.define_egress_pool { name = 'p', entries = { {} } }\n"
			     "end)\n",
			3, "define_egress_pool: entries[1].name is required");
}

Test(policy_source, values_have_names_and_hidden_metatables)
{
	struct policy *p = load_ok(HEAD "local s = kumo.make_egress_source { name = 'x' }\n"
					"local pool = kumo.make_egress_pool { name = 'p' }\n"
					"assert(tostring(s) == 'EgressSource', tostring(s))\n"
					"assert(tostring(pool) == 'EgressPool', tostring(pool))\n"
					"assert(getmetatable(s) == 'EgressSource')\n"
					"assert(getmetatable(pool) == 'EgressPool')\n"
					"assert(not pcall(setmetatable, s, {}))\n");

	policy_free(p);
}

/* ---- policy-extras.sources (sources.toml) ---- */

static char toml_a[300], toml_b[300];

/* A policy (line 3 calls setup) reading the files named. */
static const char *sources_policy(char *buf, size_t len, const char *files)
{
	snprintf(buf, len,
		 HEAD "local sources = require 'policy-extras.sources'\n"
		      "sources:setup { %s }\n",
		 files);
	return buf;
}

Test(policy_source, sources_toml_merges_files_into_sources_and_pools)
{
	char text[2048], files[700], err[512];
	struct policy_egress_source s;
	struct policy_egress_pool pool;
	struct policy *p;

	test_write_file(test_dir, "a.toml",
			"[source.\"ip-1\"]\n"
			"source_address = \"127.0.0.2\"\n"
			"ehlo_domain = \"one.example\"\n"
			"\n"
			"[source.\"ip-2\"]\n"
			"source_address = \"127.0.0.3\"\n"
			"remote_port = 2525\n"
			"\n"
			"[pool.\"mixed\"]\n"
			"[pool.\"mixed\".\"ip-2\"]\n"
			"weight = 1\n"
			"[pool.\"mixed\".\"ip-1\"]\n"
			"weight = 3\n"
			"\n"
			"[pool.\"solo\".\"ip-1\"]\n",
			toml_a, sizeof(toml_a));
	test_write_file(test_dir, "b.toml",
			"[source.\"ip-2\"]\n"
			"ehlo_domain = \"two.example\"\n"
			"[pool.\"mixed\".\"ip-2\"]\n"
			"weight = 2\n",
			toml_b, sizeof(toml_b));
	snprintf(files, sizeof(files), "'%s', '%s'", toml_a, toml_b);
	p = load_ok(sources_policy(text, sizeof(text), files));

	cr_assert_eq(policy_get_egress_source(p, "ip-2", &s, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_str_eq(s.name, "ip-2");
	cr_assert_str_eq(s.source_address, "127.0.0.3");
	cr_assert_str_eq(s.ehlo_domain, "two.example"); /* b.toml's key over a.toml's block */
	cr_assert_eq(s.remote_port, 2525);
	policy_egress_source_free(&s);
	cr_assert_eq(policy_get_egress_source(p, "ip-1", &s, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_str_eq(s.ehlo_domain, "one.example");
	policy_egress_source_free(&s);

	cr_assert_eq(policy_get_egress_pool(p, "mixed", &pool, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(pool.n_entries, 2);
	cr_assert_str_eq(pool.entries[0].name, "ip-1");
	cr_assert_eq(pool.entries[0].weight, 3);
	cr_assert_str_eq(pool.entries[1].name, "ip-2");
	cr_assert_eq(pool.entries[1].weight, 2);
	policy_egress_pool_free(&pool);
	cr_assert_eq(policy_get_egress_pool(p, "solo", &pool, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(pool.n_entries, 1);
	cr_assert_eq(pool.entries[0].weight, 1);
	policy_egress_pool_free(&pool);

	cr_assert_eq(policy_get_egress_source(p, "ip-9", &s, err, sizeof(err)), PT_ERROR);
	cr_assert(strstr(err, "get_egress_source('ip-9') returned nil and no "
			      "define_egress_source names it") != NULL,
		  "%s", err);
	policy_free(p);
}

Test(policy_source, sources_toml_inline_table_and_define_fallback)
{
	struct policy *p = load_ok(
	    HEAD "local sources = require 'policy-extras.sources'\n"
		 "sources:setup { { source = { ['ip-1'] = { source_address = '127.0.0.2' } },\n"
		 "                  pool = { p = { ['ip-1'] = { weight = 5 } } } } }\n"
		 "kumo.on('init', function()\n"
		 "  kumo.define_egress_source { name = 'ip-7', ehlo_domain = 'seven.example' }\n"
		 "end)\n");
	struct policy_egress_source s;
	struct policy_egress_pool pool;
	char err[512];

	cr_assert_eq(policy_get_egress_source(p, "ip-7", &s, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_str_eq(s.ehlo_domain, "seven.example");
	policy_egress_source_free(&s);
	cr_assert_eq(policy_get_egress_pool(p, "p", &pool, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(pool.entries[0].weight, 5);
	policy_egress_pool_free(&pool);
	policy_free(p);
}

Test(policy_source, sources_toml_errors_name_the_file_and_block)
{
	static const struct {
		const char *toml;
		const char *msg; /* after "sources: <file>: " */
	} cases[] = {
	    {"[source.\"x\"]\nsource_adress = \"10.0.0.1\"\n",
	     "[source.\"x\"]: 'source_adress' is not a make_egress_source option"},
	    {"[source.\"x\"]\nha_proxy_server = \"10.0.0.1:5000\"\n",
	     "[source.\"x\"]: make_egress_source: 'ha_proxy_server' is a KumoMTA option Petrel "
	     "does not support yet"},
	    {"[source.\"x\"]\nsource_address = \"mta.example\"\n",
	     "[source.\"x\"]: make_egress_source: 'source_address' must be an IPv4 or IPv6 "
	     "address such as '10.0.0.1' or '2001:db8::1', got 'mta.example'"},
	    {"[source.\"x\"]\nname = \"y\"\n",
	     "[source.\"x\"]: 'name' must be the block's name (\"x\") or absent"},
	    {"[source.\"x\"]\n[pool.\"p\".\"x\"]\n[pool.\"p\".\"ip-9\"]\nweight = 2\n",
	     "[pool.\"p\"]: source 'ip-9' is not defined by any [source.\"ip-9\"] block"},
	    {"[source.\"x\"]\n[pool.\"p\".\"x\"]\nweight = 1.5\n",
	     "[pool.\"p\".\"x\"]: 'weight' must be a whole number from 0 to 4294967295, got 1.5"},
	    {"[source.\"x\"]\n[pool.\"p\".\"x\"]\nweight = \"2\"\n",
	     "[pool.\"p\".\"x\"]: 'weight' must be a number, got \"2\""},
	    {"[source.\"x\"]\n[pool.\"p\".\"x\"]\nwieght = 2\n",
	     "[pool.\"p\".\"x\"]: unknown key 'wieght'"},
	    {"[sources.\"x\"]\n", "unknown key 'sources'"},
	};
	char text[2048], files[400], want[1200];

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		test_write_file(test_dir, "bad.toml", cases[i].toml, toml_a, sizeof(toml_a));
		snprintf(files, sizeof(files), "'%s'", toml_a);
		snprintf(want, sizeof(want), "sources: %s: %s", toml_a, cases[i].msg);
		load_fails_with(sources_policy(text, sizeof(text), files), 3, want);
	}
}

Test(policy_source, sources_toml_syntax_error_has_line_and_column)
{
	struct policy *p = (struct policy *)1;
	char text[2048], files[400], err[1024], want[1024];

	test_write_file(test_dir, "bad.toml", "[source.\"x\"]\nsource_address = 10.0.0.1\n", toml_a,
			sizeof(toml_a));
	snprintf(files, sizeof(files), "'%s'", toml_a);
	cr_assert_eq(policy_load(&p, write_policy(sources_policy(text, sizeof(text), files)), 0,
				 err, sizeof(err)),
		     PT_ERROR);
	snprintf(want, sizeof(want), "%s:3: sources: %s:2:", test_path, toml_a);
	cr_assert(strncmp(err, want, strlen(want)) == 0, "got %s, want it to start with %s", err,
		  want);
}

Test(policy_source, sources_setup_runs_once)
{
	load_fails_with(HEAD "local sources = require 'policy-extras.sources'\n"
			     "sources:setup {}\n"
			     "sources:setup {}\n",
			4, "sources:setup: the sources module has already been configured");
}
