/*
 * policy_dns_test.c -- kumo.dns.configure_resolver: name servers as strings
 * and {socket_addr} tables, options.timeout, a second call replacing the
 * first, the defaults without a call, and the errors with their exact text
 * and file:line (bad addresses, KumoMTA-only keys, calls outside init).
 */
#include "policy/policy.h"
#include "tests/unit/policy_test_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define HEAD "local kumo = require 'kumo'\nkumo.on('init', function()\n"
#define TAIL "end)\n"

TestSuite(policy_dns, .init = dir_setup, .fini = dir_teardown);

Test(policy_dns, without_a_call_the_system_resolver_is_used)
{
	struct policy *p = load_ok(HEAD TAIL);
	const struct policy_config *c = policy_config(p);

	cr_assert_null(c->dns_name_servers);
	cr_assert_eq(c->n_dns_name_servers, 0);
	cr_assert_eq(c->dns_timeout_ms, 0);
	policy_free(p);
}

Test(policy_dns, name_servers_and_timeout_are_stored)
{
	static const char *const want[] = {
	    "127.0.0.1:5353", "[::1]:53",  "10.0.0.1",	      "::1",
	    "[10.0.0.2]",     "[fe80::2]", "192.0.2.1:65535",
	};
	struct policy *p = load_ok(HEAD "  kumo.dns.configure_resolver {\n"
					"    name_servers = { '127.0.0.1:5353',\n"
					"      { socket_addr = '[::1]:53' }, '10.0.0.1', '::1',\n"
					"      '[10.0.0.2]', '[fe80::2]', '192.0.2.1:65535' },\n"
					"    options = { timeout = '2s' },\n"
					"  }\n" TAIL);
	const struct policy_config *c = policy_config(p);

	cr_assert_eq(c->n_dns_name_servers, PT_ARRAY_LEN(want));
	for (size_t i = 0; i < PT_ARRAY_LEN(want); i++)
		cr_assert_str_eq(c->dns_name_servers[i], want[i], "entry %zu", i);
	cr_assert_eq(c->dns_timeout_ms, 2000);
	policy_free(p);
}

Test(policy_dns, a_second_call_replaces_the_first)
{
	struct policy *p = load_ok(
	    HEAD "  kumo.dns.configure_resolver {\n"
		 "    name_servers = { '10.0.0.1:53', '10.0.0.2:53' },\n"
		 "    options = { timeout = 3 } }\n"
		 "  kumo.dns.configure_resolver { name_servers = { '127.0.0.1:5353' } }\n" TAIL);
	const struct policy_config *c = policy_config(p);

	cr_assert_eq(c->n_dns_name_servers, 1);
	cr_assert_str_eq(c->dns_name_servers[0], "127.0.0.1:5353");
	cr_assert_eq(c->dns_timeout_ms, 0);
	policy_free(p);
}

Test(policy_dns, a_failed_call_keeps_the_previous_list)
{
	struct policy *p =
	    load_ok(HEAD "  kumo.dns.configure_resolver { name_servers = { '10.0.0.1:53' } }\n"
			 "  local ok = pcall(kumo.dns.configure_resolver,\n"
			 "    { name_servers = { '10.0.0.2:53', 'bogus' } })\n"
			 "  assert(not ok)\n" TAIL);
	const struct policy_config *c = policy_config(p);

	cr_assert_eq(c->n_dns_name_servers, 1);
	cr_assert_str_eq(c->dns_name_servers[0], "10.0.0.1:53");
	policy_free(p);
}

Test(policy_dns, dns_is_a_table_on_the_module)
{
	struct policy *p = load_ok("local kumo = require 'kumo'\n"
				   "assert(type(kumo.dns) == 'table')\n"
				   "assert(type(kumo.dns.configure_resolver) == 'function')\n"
				   "assert(require('petrel').dns == kumo.dns)\n");

	policy_free(p);
}

Test(policy_dns, outside_init_is_an_error)
{
	load_fails_with("local kumo = require 'kumo'\n"
			"kumo.dns.configure_resolver { name_servers = { '127.0.0.1:53' } }\n",
			2, "dns.configure_resolver may only be called from the init event");
}

Test(policy_dns, errors_name_the_entry)
{
	static const struct {
		const char *args;
		const char *msg;
	} cases[] = {
	    {"{}", "dns.configure_resolver: 'name_servers' is required"},
	    {"'127.0.0.1'", "dns.configure_resolver: expected a table, got string"},
	    {"{ name_servers = {} }",
	     "dns.configure_resolver: 'name_servers' must list at least one server"},
	    {"{ name_servers = '127.0.0.1' }",
	     "dns.configure_resolver: 'name_servers' must be a list, got string"},
	    {"{ name_servers = { 'ns.example.com:53' } }",
	     "dns.configure_resolver: name_servers[1]: 'ns.example.com:53' is not \"ip\", "
	     "\"ip:port\" or \"[ipv6]:port\" (not an IP address)"},
	    {"{ name_servers = { '127.0.0.1:53', '127.0.0.1:0' } }",
	     "dns.configure_resolver: name_servers[2]: '127.0.0.1:0' is not \"ip\", \"ip:port\" "
	     "or \"[ipv6]:port\" (the port must be a number from 1 to 65535)"},
	    {"{ name_servers = { '127.0.0.1:53x' } }",
	     "dns.configure_resolver: name_servers[1]: '127.0.0.1:53x' is not \"ip\", \"ip:port\" "
	     "or \"[ipv6]:port\" (the port must be a number from 1 to 65535)"},
	    {"{ name_servers = { '256.0.0.1' } }",
	     "dns.configure_resolver: name_servers[1]: '256.0.0.1' is not \"ip\", \"ip:port\" or "
	     "\"[ipv6]:port\" (not an IP address)"},
	    {"{ name_servers = { '::1:53:zz' } }",
	     "dns.configure_resolver: name_servers[1]: '::1:53:zz' is not \"ip\", \"ip:port\" or "
	     "\"[ipv6]:port\" (not an IPv6 address (write \"[ip]:port\" to give a port))"},
	    {"{ name_servers = { '[::1]53' } }",
	     "dns.configure_resolver: name_servers[1]: '[::1]53' is not \"ip\", \"ip:port\" or "
	     "\"[ipv6]:port\" (expected ':' and a port from 1 to 65535 after ']')"},
	    {"{ name_servers = { '' } }",
	     "dns.configure_resolver: name_servers[1]: '' is not \"ip\", \"ip:port\" or "
	     "\"[ipv6]:port\" (not an IP address)"},
	    {"{ name_servers = { 53 } }",
	     "dns.configure_resolver: name_servers[1] must be a string \"ip:port\" or a table { "
	     "socket_addr = \"ip:port\" }, got number"},
	    {"{ name_servers = { {} } }",
	     "dns.configure_resolver: name_servers[1]: 'socket_addr' is required"},
	    {"{ name_servers = { { socket_addr = '127.0.0.1:53', protocol = 'tcp' } } }",
	     "dns.configure_resolver: 'protocol' is a KumoMTA option Petrel does not support yet"},
	    {"{ name_servers = { { socket_addr = '127.0.0.1:53', bind_addr = '127.0.0.1:0' } } }",
	     "dns.configure_resolver: 'bind_addr' is a KumoMTA option Petrel does not support yet"},
	    {"{ name_servers = { { addr = '127.0.0.1:53' } } }",
	     "'addr' is not a name server option"},
	    {"{ name_servers = { '127.0.0.1' }, options = { timeout = 0 } }",
	     "dns.configure_resolver: 'timeout' must be longer than zero"},
	    {"{ name_servers = { '127.0.0.1' }, options = { timeout = 'soon' } }",
	     "dns.configure_resolver: 'timeout': invalid duration 'soon': expected a number"},
	    {"{ name_servers = { '127.0.0.1' }, options = { attempts = 2 } }",
	     "dns.configure_resolver: 'attempts' is a KumoMTA option Petrel does not support yet"},
	    {"{ name_servers = { '127.0.0.1' }, options = { edns0 = true } }",
	     "dns.configure_resolver: 'edns0' is a KumoMTA option Petrel does not support yet"},
	    {"{ name_servers = { '127.0.0.1' }, options = { tmeout = 2 } }",
	     "'tmeout' is not a resolver option"},
	    {"{ name_servers = { '127.0.0.1' }, options = 5 }",
	     "dns.configure_resolver: 'options' must be a table, got number"},
	    {"{ name_servers = { '127.0.0.1' }, search = { 'example.com' } }",
	     "dns.configure_resolver: 'search' is a KumoMTA option Petrel does not support yet"},
	    {"{ Test = { zones = {} } }",
	     "dns.configure_resolver: 'Test' is a KumoMTA option Petrel does not support yet"},
	    {"{ nameservers = {} }", "'nameservers' is not a configure_resolver option"},
	};
	char text[512];

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		snprintf(text, sizeof(text), HEAD "  kumo.dns.configure_resolver(%s)\n" TAIL,
			 cases[i].args);
		load_fails_with(text, 3, cases[i].msg);
	}
}

Test(policy_dns, name_servers_are_bounded)
{
	load_fails_with(HEAD "  local l = {}\n"
			     "  for i = 1, 17 do l[i] = '127.0.0.' .. i end\n"
			     "  kumo.dns.configure_resolver { name_servers = l }\n" TAIL,
			5,
			"dns.configure_resolver: 'name_servers' lists 17 servers; at most 16 are "
			"allowed");
}
