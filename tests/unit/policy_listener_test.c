/*
 * policy_listener_test.c -- kumo.make_listener_domain, the
 * get_listener_domain event and policy-extras.listener_domains: every key
 * and both forms of log_oob/log_arf, relay_from matched against the peer,
 * nil and no handler, kumo.reject, errors with their exact text and
 * file:line, what conn_meta reads (and that it refuses set_meta and use
 * after its event), and the helper's TOML: wildcards, "*", per-listener
 * blocks, merging files, names without case, and its errors.
 */
#include "policy/policy.h"
#include "tests/unit/policy_test_util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define HEAD "local kumo = require 'kumo'\n"

TestSuite(policy_listener, .init = dir_setup, .fini = dir_teardown);

static struct sockaddr_in peer_v4(const char *ip)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(40000)};

	cr_assert_eq(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
	return sa;
}

static struct sockaddr_in the_peer;

static const struct policy_conn_meta *meta_for(const char *peer_ip)
{
	static struct policy_conn_meta m;

	the_peer = peer_v4(peer_ip);
	m = (struct policy_conn_meta){
	    .received_from = "10.0.0.7:40000",
	    .received_via = "127.0.0.1:25",
	    .hostname = "mx.petrel.test",
	    .reception_protocol = "ESMTP",
	    .ehlo_domain = "client.example",
	    .peer = (const struct sockaddr *)&the_peer,
	};
	return &m;
}

static int lookup(struct policy *p, const char *domain, const char *listener,
		  struct policy_listener_domain *out, char *err)
{
	struct policy_reply reply;

	return policy_get_listener_domain(p, domain, listener, meta_for("10.0.0.7"), out, &reply,
					  err, 512);
}

Test(policy_listener, values_and_modes)
{
	struct policy *p = load_ok(
	    HEAD
	    "local d = {\n"
	    "  a = kumo.make_listener_domain { relay_to = true },\n"
	    "  b = kumo.make_listener_domain { log_oob = true, log_arf = false, ttl = '1 hour' },\n"
	    "  c = kumo.make_listener_domain { log_oob = 'LogThenDrop', log_arf = 'LogThenRelay' "
	    "},\n"
	    "  d = kumo.make_listener_domain { relay_from = { '10.0.0.0/24', '::1' } },\n"
	    "  e = kumo.make_listener_domain { relay_from = { '10.9.0.0/16' } },\n"
	    "  f = kumo.make_listener_domain { log_arf = 'Ignore' },\n"
	    "}\n"
	    "kumo.on('get_listener_domain', function(domain, listener, conn_meta)\n"
	    "  return d[domain]\n"
	    "end)\n");
	struct policy_listener_domain ld;
	char err[512];

	cr_assert(policy_has_listener_domain_handler(p));
	cr_assert_eq(lookup(p, "a", "l", &ld, err), PT_OK, "%s", err);
	cr_assert(ld.found && ld.relay_to && !ld.relay_from_peer);
	cr_assert_eq(ld.log_oob, POLICY_REPORT_IGNORE);
	cr_assert_eq(lookup(p, "b", "l", &ld, err), PT_OK);
	cr_assert(!ld.relay_to);
	cr_assert_eq(ld.log_oob, POLICY_REPORT_LOG_THEN_RELAY, "true is LogThenRelay (KumoMTA)");
	cr_assert_eq(ld.log_arf, POLICY_REPORT_IGNORE);
	cr_assert_eq(lookup(p, "c", "l", &ld, err), PT_OK);
	cr_assert_eq(ld.log_oob, POLICY_REPORT_LOG_THEN_DROP);
	cr_assert_eq(ld.log_arf, POLICY_REPORT_LOG_THEN_RELAY);
	cr_assert_eq(lookup(p, "d", "l", &ld, err), PT_OK);
	cr_assert(ld.found && ld.relay_from_peer, "10.0.0.7 is in 10.0.0.0/24");
	cr_assert_eq(lookup(p, "e", "l", &ld, err), PT_OK);
	cr_assert(ld.found && !ld.relay_from_peer);
	cr_assert_eq(lookup(p, "f", "l", &ld, err), PT_OK);
	cr_assert(ld.found && ld.log_arf == POLICY_REPORT_IGNORE);
	cr_assert_eq(lookup(p, "unknown", "l", &ld, err), PT_OK, "nil");
	cr_assert_not(ld.found);
	policy_free(p);

	p = load_ok(HEAD);
	cr_assert_not(policy_has_listener_domain_handler(p));
	cr_assert_eq(lookup(p, "a", "l", &ld, err), PT_OK);
	cr_assert_not(ld.found);
	policy_free(p);
}

Test(policy_listener, bad_values_point_at_the_line)
{
	load_fails_with(HEAD "\nkumo.make_listener_domain { relay = true }\n", 3,
			"'relay' is not a make_listener_domain option");
	load_fails_with(HEAD "kumo.make_listener_domain { relay_to = 'yes' }\n", 2,
			"make_listener_domain: 'relay_to' must be a boolean, got string");
	load_fails_with(HEAD "kumo.make_listener_domain { log_oob = 'LogAndDrop' }\n", 2,
			"make_listener_domain: 'log_oob' must be a boolean or one of 'Ignore', "
			"'LogThenDrop', 'LogThenRelay', got \"LogAndDrop\"");
	load_fails_with(HEAD "kumo.make_listener_domain { log_arf = 1 }\n", 2,
			"make_listener_domain: 'log_arf' must be a boolean or one of 'Ignore', "
			"'LogThenDrop', 'LogThenRelay', got number");
	load_fails_with(
	    HEAD "kumo.make_listener_domain { relay_from = { '10.0.0.0/33' } }\n", 2,
	    "make_listener_domain: relay_from[1]: '10.0.0.0/33' is not an IP address or "
	    "CIDR block");
	load_fails_with(
	    HEAD "kumo.make_listener_domain { relay_from = '10.0.0.1' }\n", 2,
	    "make_listener_domain: 'relay_from' must be a list of CIDR blocks, got string");
}

Test(policy_listener, handler_errors_and_reject)
{
	struct policy *p =
	    load_ok(HEAD "kumo.on('get_listener_domain', function(domain, listener, conn_meta)\n"
			 "  if domain == 'reject' then kumo.reject(550, 'no mail for you') end\n"
			 "  if domain == 'boom' then error('deliberate') end\n"
			 "  if domain == 'table' then return { relay_to = true } end\n"
			 "  return nil\n"
			 "end)\n");
	struct policy_listener_domain ld;
	struct policy_reply reply;
	char err[512], want[600];

	cr_assert_eq(policy_get_listener_domain(p, "reject", "l", meta_for("10.0.0.7"), &ld, &reply,
						err, sizeof(err)),
		     PT_DECLINED);
	cr_assert_eq(reply.code, 550);
	cr_assert_str_eq(reply.text, "5.0.0 no mail for you");
	cr_assert_eq(lookup(p, "boom", "l", &ld, err), PT_ERROR);
	snprintf(want, sizeof(want), "%s:4: deliberate", test_path);
	cr_assert_str_eq(err, want);
	cr_assert_eq(lookup(p, "table", "l", &ld, err), PT_ERROR);
	snprintf(want, sizeof(want),
		 "%s:2: get_listener_domain must return kumo.make_listener_domain{...} or nil, got "
		 "table",
		 test_path);
	cr_assert_str_eq(err, want);
	cr_assert_not(ld.found);
	policy_free(p);
}

Test(policy_listener, conn_meta_reads_predefined_keys)
{
	struct policy *p = load_ok(
	    HEAD "kept = nil\n"
		 "kumo.on('get_listener_domain', function(domain, listener, conn_meta)\n"
		 "  if domain == 'keep' then kept = conn_meta; return nil end\n"
		 "  if domain == 'late' then local v = kept:get_meta('hostname'); return v end\n"
		 "  if domain == 'set' then conn_meta:set_meta('x_a', 1) end\n"
		 "  local want = {\n"
		 "    listener = '127.0.0.9:2525', received_from = '10.0.0.7:40000',\n"
		 "    received_via = '127.0.0.1:25', hostname = 'mx.petrel.test',\n"
		 "    reception_protocol = 'ESMTP', ehlo_domain = 'client.example',\n"
		 "  }\n"
		 "  local got = { listener = listener }\n"
		 "  for k in pairs(want) do\n"
		 "    if k ~= 'listener' then got[k] = conn_meta:get_meta(k) end\n"
		 "  end\n"
		 "  for k, v in pairs(want) do\n"
		 "    if got[k] ~= v then error(k .. ' is ' .. tostring(got[k])) end\n"
		 "  end\n"
		 "  if conn_meta:get_meta('tls_cipher') ~= nil then error('tls_cipher') end\n"
		 "  return kumo.make_listener_domain { relay_to = true }\n"
		 "end)\n");
	struct policy_listener_domain ld;
	char err[512], want[600];

	cr_assert_eq(lookup(p, "example.com", "127.0.0.9:2525", &ld, err), PT_OK, "%s", err);
	cr_assert(ld.relay_to);
	cr_assert_eq(lookup(p, "set", "l", &ld, err), PT_ERROR);
	snprintf(want, sizeof(want),
		 "%s:6: conn_meta:set_meta is not supported by Petrel yet: connection metadata is "
		 "read-only",
		 test_path);
	cr_assert_str_eq(err, want);
	cr_assert_eq(lookup(p, "keep", "l", &ld, err), PT_OK);
	cr_assert_eq(lookup(p, "late", "l", &ld, err), PT_ERROR);
	snprintf(want, sizeof(want),
		 "%s:5: conn_meta may only be used during the event it was passed to", test_path);
	cr_assert_str_eq(err, want);
	policy_free(p);
}

/* ---- policy-extras.listener_domains ------------------------------------------ */

static char toml_a[512], toml_b[512];

static struct policy *helper(const char *a, const char *b)
{
	char text[2048];

	test_write_file(test_dir, "a.toml", a, toml_a, sizeof(toml_a));
	test_write_file(test_dir, "b.toml", b, toml_b, sizeof(toml_b));
	snprintf(text, sizeof(text),
		 HEAD "local listener_domains = require 'policy-extras.listener_domains'\n"
		      "kumo.on('get_listener_domain', listener_domains:setup { '%s', '%s' })\n",
		 toml_a, toml_b);
	return load_ok(text);
}

static struct policy_listener_domain expect_found(struct policy *p, const char *domain,
						  const char *listener)
{
	struct policy_listener_domain ld;
	char err[512];

	cr_assert_eq(lookup(p, domain, listener, &ld, err), PT_OK, "%s", err);
	cr_assert(ld.found, "%s on %s: nothing", domain, listener);
	return ld;
}

Test(policy_listener, helper_lookup_order)
{
	struct policy *p = helper("[\"Example.COM\"]\nrelay_to = true\n"
				  "[\"bounce.example.com\"]\nlog_oob = \"LogThenDrop\"\n"
				  "[\"*.example.com\"]\nlog_arf = true\n"
				  "[\"send.example.com\"]\nrelay_from = [\"10.0.0.0/24\"]\n"
				  "[listener.\"127.0.0.1:25\".\"*.example.com\"]\nlog_arf = false\n"
				  "[\"*\"]\nlog_oob = true\n",
				  /* the second file wins key by key */
				  "[\"bounce.example.com\"]\nlog_arf = \"LogThenRelay\"\n"
				  "[\"example.com\"]\nttl = \"5m\"\n");
	struct policy_listener_domain ld;

	ld = expect_found(p, "example.com", "10.1.1.1:25");
	cr_assert(ld.relay_to, "names match without case; merged keys stay");
	ld = expect_found(p, "bounce.example.com", "10.1.1.1:25");
	cr_assert_eq(ld.log_oob, POLICY_REPORT_LOG_THEN_DROP);
	cr_assert_eq(ld.log_arf, POLICY_REPORT_LOG_THEN_RELAY);
	ld = expect_found(p, "a.b.EXAMPLE.com", "10.1.1.1:25");
	cr_assert_eq(ld.log_arf, POLICY_REPORT_LOG_THEN_RELAY, "the wildcard");
	cr_assert_eq(ld.log_oob, POLICY_REPORT_IGNORE);
	ld = expect_found(p, "a.example.com", "127.0.0.1:25");
	cr_assert_eq(ld.log_arf, POLICY_REPORT_IGNORE, "the listener's own block first");
	ld = expect_found(p, "example.com", "127.0.0.1:25");
	cr_assert(ld.relay_to, "then the general blocks (\"*.example.com\" is not example.com)");
	ld = expect_found(p, "send.example.com", "10.1.1.1:25");
	cr_assert(ld.relay_from_peer);
	ld = expect_found(p, "other.test", "127.0.0.1:25");
	cr_assert_eq(ld.log_oob, POLICY_REPORT_LOG_THEN_RELAY, "then \"*\"");
	cr_assert_not(ld.relay_to);
	policy_free(p);

	p = helper("[\"example.com\"]\nrelay_to = true\n", "");
	cr_assert_eq(lookup(p, "other.test", "l", &ld, (char[512]){0}), PT_OK);
	cr_assert_not(ld.found, "no \"*\": nil");
	policy_free(p);
}

static void helper_fails(const char *a, const char *want_fmt)
{
	struct policy *p = (struct policy *)1;
	char text[2048], err[1024], want[1024];

	test_write_file(test_dir, "a.toml", a, toml_a, sizeof(toml_a));
	snprintf(text, sizeof(text),
		 HEAD "local listener_domains = require 'policy-extras.listener_domains'\n"
		      "kumo.on('get_listener_domain', listener_domains:setup { '%s' })\n",
		 toml_a);
	cr_assert_eq(policy_load(&p, write_policy(text), 0, err, sizeof(err)), PT_ERROR);
	snprintf(want, sizeof(want), want_fmt, toml_a);
	cr_assert(strstr(err, want) != NULL, "got: %s\nwant: %s", err, want);
}

Test(policy_listener, helper_errors_name_file_and_block)
{
	helper_fails("[\"a.test\"]\nrelay_to = 1\n",
		     "%s: [\"a.test\"]: make_listener_domain: 'relay_to' must be a boolean, got "
		     "number");
	helper_fails(
	    "[\"a.test\"]\nlog_oob = \"yes\"\n",
	    "%s: [\"a.test\"]: make_listener_domain: 'log_oob' must be a boolean or one of "
	    "'Ignore', 'LogThenDrop', 'LogThenRelay', got \"yes\"");
	helper_fails("[listener.\"127.0.0.1:25\".\"a.test\"]\nrelay_too = true\n",
		     "%s: [listener.\"127.0.0.1:25\".\"a.test\"]: 'relay_too' is not a "
		     "make_listener_domain option");
	helper_fails("[\"a.test\"]\nrelay_from_authz = [\"john\"]\n",
		     "%s: [\"a.test\"]: 'relay_from_authz' needs SMTP AUTH, which Petrel does not "
		     "support yet");
	helper_fails("\"a.test\" = 1\n", "%s: [\"a.test\"]: must be a table, got number");
	helper_fails("[\"a.test\"\nrelay_to = true\n", "%s:1:");
}
