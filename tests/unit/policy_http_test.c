/*
 * policy_http_test.c -- kumo.start_http_listener (keys, defaults, every
 * refusal with its line), http_server_validate_auth_basic (true, false,
 * nil password, a wrong return type, an error) and http_message_generated
 * (edits, reject).
 */
#include "policy/policy.h"
#include "tests/unit/policy_test_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

TestSuite(policy_http, .init = dir_setup, .fini = dir_teardown);

/* A policy whose init calls start_http_listener{<fields>} on line 3. */
static const char *with_listener(const char *fields)
{
	static char text[2048];

	snprintf(text, sizeof(text),
		 "local kumo = require 'kumo'\n"
		 "kumo.on('init', function()\n"
		 "  kumo.start_http_listener{%s}\n"
		 "end)\n",
		 fields);
	return text;
}

static bool trusted(const struct policy_http_listener *l, const char *ip)
{
	struct sockaddr_storage ss = {0};

	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, ip, &s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		inet_pton(AF_INET, ip, &s4->sin_addr);
	}
	return pt_cidr_list_match(&l->trusted_hosts, (struct sockaddr *)&ss);
}

Test(policy_http, defaults_are_kumomtas)
{
	struct policy *p = load_ok(with_listener(""));
	const struct policy_config *c = policy_config(p);
	const struct policy_http_listener *l;

	cr_assert_eq(c->n_http_listeners, 1);
	l = &c->http_listeners[0];
	cr_assert_str_eq(l->listen, "127.0.0.1:8000");
	cr_assert_not_null(l->hostname);
	cr_assert(!l->use_tls);
	cr_assert_null(l->tls_certificate);
	cr_assert_eq(l->request_body_limit, 2 * 1024 * 1024);
	cr_assert(trusted(l, "127.0.0.1"));
	cr_assert(trusted(l, "::1"));
	cr_assert(!trusted(l, "127.0.0.2"));
	policy_free(p);
}

Test(policy_http, every_key)
{
	struct policy *p = load_ok(
	    with_listener("listen='[::1]:8443', hostname='api.example.com', use_tls=true, "
			  "tls_certificate='/c.pem', tls_private_key='/k.pem', "
			  "trusted_hosts={'10.0.0.0/8', '192.0.2.7'}, request_body_limit=1024"));
	const struct policy_http_listener *l = &policy_config(p)->http_listeners[0];

	cr_assert_str_eq(l->listen, "[::1]:8443");
	cr_assert_str_eq(l->hostname, "api.example.com");
	cr_assert(l->use_tls);
	cr_assert_str_eq(l->tls_certificate, "/c.pem");
	cr_assert_str_eq(l->tls_private_key, "/k.pem");
	cr_assert_eq(l->request_body_limit, 1024);
	cr_assert(trusted(l, "10.1.2.3"));
	cr_assert(trusted(l, "192.0.2.7"));
	cr_assert(!trusted(l, "127.0.0.1"));
	policy_free(p);
}

Test(policy_http, two_listeners)
{
	struct policy *p =
	    load_ok("local kumo = require 'kumo'\n"
		    "kumo.on('init', function()\n"
		    "  kumo.start_http_listener{listen='127.0.0.1:8000'}\n"
		    "  kumo.start_http_listener{listen='127.0.0.1:8001', use_tls=true}\n"
		    "end)\n");

	cr_assert_eq(policy_config(p)->n_http_listeners, 2);
	cr_assert(policy_config(p)->http_listeners[1].use_tls);
	policy_free(p);
}

Test(policy_http, bad_keys_are_refused_with_the_line)
{
	load_fails_with(with_listener("listen='127.0.0.1:8000', trusted_host={'1.2.3.4'}"), 3,
			"start_http_listener: unknown key 'trusted_host'");
	load_fails_with(with_listener("listen=8000"), 3,
			"start_http_listener: 'listen' must be a string, got number");
	load_fails_with(with_listener("listen='localhost'"), 3,
			"start_http_listener: 'listen' must be \"host:port\" or \"[ipv6]:port\" "
			"with a port from 1 to 65535, got 'localhost'");
	load_fails_with(with_listener("use_tls='yes'"), 3,
			"start_http_listener: 'use_tls' must be a boolean, got string");
	load_fails_with(with_listener("trusted_hosts={'10.0.0.0/33'}"), 3,
			"start_http_listener: trusted_hosts[1]: '10.0.0.0/33' is not an IP "
			"address or CIDR block");
	load_fails_with(with_listener("trusted_hosts='127.0.0.1'"), 3,
			"start_http_listener: 'trusted_hosts' must be a list of strings, got "
			"string");
	load_fails_with(with_listener("request_body_limit=0"), 3,
			"start_http_listener: 'request_body_limit' must be a whole number from 1 "
			"to 1099511627776");
	load_fails_with(with_listener("use_tls=true, tls_certificate='/c.pem'"), 3,
			"start_http_listener: tls_certificate and tls_private_key must be given "
			"together");
	load_fails_with(with_listener("tls_certificate='/c.pem', tls_private_key='/k.pem'"), 3,
			"start_http_listener: tls_certificate is given but use_tls is not true: "
			"the listener would serve plain HTTP");
	load_fails_with(with_listener("use_tls=true, tls_certificate={key_data='x'}, "
				      "tls_private_key='/k'"),
			3,
			"start_http_listener: 'tls_certificate' as a table (KumoMTA's key_data "
			"or Vault source) is not supported yet by Petrel: give a file path");
	load_fails_with("local kumo = require 'kumo'\n"
			"kumo.on('init', function()\n"
			"  kumo.start_http_listener{}\n"
			"  kumo.start_http_listener{}\n"
			"end)\n",
			4, "start_http_listener: '127.0.0.1:8000' is already an HTTP listener");
	load_fails_with("local kumo = require 'kumo'\n"
			"kumo.on('smtp_server_message_received', function()\n"
			"  kumo.start_http_listener{}\n"
			"end)\n"
			"kumo.start_http_listener{}\n",
			5, "start_http_listener may only be called from the init event");
}

/* ---- http_server_validate_auth_basic -------------------------------------------- */

static const char AUTH[] = "local kumo = require 'kumo'\n"
			   "kumo.on('http_server_validate_auth_basic', function(user, password)\n"
			   "  if user == 'daniel' then return password == 'tiger' end\n"
			   "  if user == 'nopass' then return password == nil end\n"
			   "  if user == 'number' then return 1 end\n"
			   "  if user == 'boom' then error('deliberate') end\n"
			   "  return false\n"
			   "end)\n";

Test(policy_http, auth_basic_event)
{
	struct policy *p = load_ok(AUTH);
	bool valid = true;

	cr_assert_eq(policy_http_validate_auth_basic(p, "daniel", "tiger", &valid), PT_OK);
	cr_assert(valid);
	cr_assert_eq(policy_http_validate_auth_basic(p, "daniel", "lion", &valid), PT_OK);
	cr_assert(!valid);
	cr_assert_eq(policy_http_validate_auth_basic(p, "nopass", NULL, &valid), PT_OK);
	cr_assert(valid);
	cr_assert_eq(policy_http_validate_auth_basic(p, "nopass", "", &valid), PT_OK);
	cr_assert(!valid);
	cr_assert_eq(policy_http_validate_auth_basic(p, "number", "x", &valid), PT_ERROR);
	cr_assert(!valid);
	cr_assert_eq(policy_http_validate_auth_basic(p, "boom", "x", &valid), PT_ERROR);
	cr_assert(!valid);
	/* The state still works after the errors. */
	cr_assert_eq(policy_http_validate_auth_basic(p, "daniel", "tiger", &valid), PT_OK);
	cr_assert(valid);
	policy_free(p);
}

Test(policy_http, auth_basic_without_a_handler_is_false)
{
	struct policy *p = load_ok("local kumo = require 'kumo'\n");
	bool valid = true;

	cr_assert_eq(policy_http_validate_auth_basic(p, "daniel", "tiger", &valid), PT_OK);
	cr_assert(!valid);
	policy_free(p);
}

/* ---- http_message_generated ------------------------------------------------------- */

static void message_make(struct pt_message *m, const char *subject)
{
	char data[256];

	pt_message_init(m);
	memcpy(m->id, "0123456789abcdef0123456789abcdef", 33);
	pt_message_set_sender(m, "a@example.com", 13);
	pt_message_add_rcpt(m, "b@example.com", 13);
	snprintf(data, sizeof(data), "Subject: %s\r\n\r\nbody\r\n", subject);
	pt_buf_append_str(&m->data, data);
	pt_message_scan_headers(m);
	pt_message_set_meta(m, "http_auth", "\"127.0.0.1\"");
}

Test(policy_http, message_generated_edits_and_rejects)
{
	struct policy *p = load_ok("local kumo = require 'kumo'\n"
				   "kumo.on('http_message_generated', function(msg)\n"
				   "  local s = msg:get_first_named_header_value('Subject')\n"
				   "  if s == 'no' then kumo.reject(550, 'not this one') end\n"
				   "  msg:set_meta('seen_auth', msg:get_meta('http_auth'))\n"
				   "  msg:prepend_header('X-Generated', 'yes')\n"
				   "end)\n"
				   "kumo.on('smtp_server_message_received', function(msg)\n"
				   "  msg:set_meta('wrong_event', true)\n"
				   "end)\n");
	struct pt_message m;
	struct policy_reply r = {0};

	message_make(&m, "yes");
	cr_assert_eq(policy_http_message_generated(p, &m, &r), PT_OK);
	cr_assert_str_eq(pt_message_get_meta(&m, "seen_auth"), "\"127.0.0.1\"");
	cr_assert_null(pt_message_get_meta(&m, "wrong_event"));
	cr_assert_str_eq(pt_buf_cstr(&m.prefix), "X-Generated: yes\r\n");
	pt_message_clear(&m);
	message_make(&m, "no");
	cr_assert_eq(policy_http_message_generated(p, &m, &r), PT_DECLINED);
	cr_assert_eq(r.code, 550);
	cr_assert_str_eq(r.text, "5.0.0 not this one");
	pt_message_clear(&m);
	policy_free(p);
}
