/*
 * policy_event_test.c -- smtp_server_message_received: reject with and
 * without an enhanced code, bad reject codes, Lua errors (451 4.3.0, logged
 * with file:line, and the state still works afterwards), and every Message
 * method: envelope addresses, meta round trips with the exact JSON text
 * stored, header edits as seen by get_data and by pt_message_iov, header
 * lookup, and the message refusing use after its event.
 *
 * A handler reports back through the message itself (set_meta), so each
 * assertion is on the exact JSON text the spool would store.
 */
#include "policy/policy.h"
#include "tests/unit/policy_test_util.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_ID "0123456789abcdef0123456789abcdef"
#define TEST_DATA                                                                                  \
	"Subject: hello\r\nFrom: Alice <alice@example.com>\r\n"                                    \
	"X-Folded: one\r\n two\r\n\r\nbody line\r\n"

/* A handler-only policy: `body` is the handler's code (starts on line 3). */
static struct policy *load_handler(const char *body)
{
	char text[8192];

	snprintf(text, sizeof(text),
		 "local petrel = require 'petrel'\n"
		 "petrel.on('smtp_server_message_received', function(msg)\n%s\nend)\n",
		 body);
	return load_ok(text);
}

static void message_make(struct pt_message *m)
{
	pt_message_init(m);
	memcpy(m->id, TEST_ID, sizeof(TEST_ID));
	cr_assert_eq(pt_message_set_sender(m, "alice@example.com", 17), PT_OK);
	cr_assert_eq(pt_message_add_rcpt(m, "bob@example.net", 15), PT_OK);
	cr_assert_eq(pt_message_add_rcpt(m, "carol@example.org", 17), PT_OK);
	cr_assert_eq(pt_buf_append(&m->data, TEST_DATA, sizeof(TEST_DATA) - 1), PT_OK);
	pt_message_scan_headers(m);
}

/* Run the event on a fresh test message; the message is returned for checks. */
static int run(struct policy *p, struct pt_message *m, struct policy_reply *reply)
{
	message_make(m);
	memset(reply, 0, sizeof(*reply));
	return policy_smtp_server_message_received(p, m, reply);
}

static void assert_meta(const struct pt_message *m, const char *key, const char *json)
{
	const char *got = pt_message_get_meta(m, key);

	cr_assert_not_null(got, "meta '%s' missing", key);
	cr_assert_str_eq(got, json, "meta '%s'", key);
}

/* Run with stderr captured into out (the diagnostic log line). */
static int run_capturing_log(struct policy *p, struct pt_message *m, struct policy_reply *r,
			     char *out, size_t n)
{
	char path[600];
	int fd, saved, rc;
	ssize_t got;

	snprintf(path, sizeof(path), "%s/stderr", test_dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	rc = run(p, m, r);
	dup2(saved, STDERR_FILENO);
	close(saved);
	got = pread(fd, out, n - 1, 0);
	out[got > 0 ? got : 0] = '\0';
	close(fd);
	return rc;
}

TestSuite(policy_event, .init = dir_setup, .fini = dir_teardown);

Test(policy_event, no_handler_accepts)
{
	struct policy *p = load_ok("local petrel = require 'petrel'\n");
	struct policy_reply r;
	struct pt_message m;

	cr_assert_eq(run(p, &m, &r), PT_OK);
	cr_assert_eq(r.code, 0);
	cr_assert_eq(m.n_meta, 0);
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, reject_without_enhanced_code_gets_one)
{
	struct policy *p = load_handler("  petrel.reject(550, 'go away')\n"
					"  msg:set_meta('reached', true)");
	struct policy_reply r;
	struct pt_message m;

	cr_assert_eq(run(p, &m, &r), PT_DECLINED);
	cr_assert_eq(r.code, 550);
	cr_assert_str_eq(r.text, "5.0.0 go away");
	cr_assert_null(pt_message_get_meta(&m, "reached"), "reject must stop the handler");
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, reject_with_enhanced_code_is_kept)
{
	struct policy *p = load_handler("  local kumo = require 'kumo'\n"
					"  kumo.reject(421, '4.7.28 slow down, please')");
	struct policy_reply r;
	struct pt_message m;

	cr_assert_eq(run(p, &m, &r), PT_DECLINED);
	cr_assert_eq(r.code, 421);
	cr_assert_str_eq(r.text, "4.7.28 slow down, please");
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, reject_text_edge_cases)
{
	struct policy *p = load_handler("  local t = msg:get_first_named_header_value('Subject')\n"
					"  if t == 'hello' then petrel.reject(451, '') end");
	struct policy *q = load_handler("  petrel.reject(554, '5.7.1\\r\\n250 forged')");
	struct policy *s = load_handler("  petrel.reject(550, '5.7 not enhanced')");
	struct policy *t = load_handler("  petrel.reject(550, string.rep('a', 600))");
	struct policy_reply r;
	struct pt_message m;

	cr_assert_eq(run(p, &m, &r), PT_DECLINED);
	cr_assert_eq(r.code, 451);
	cr_assert_str_eq(r.text, "4.0.0 rejected by policy");
	pt_message_clear(&m);
	cr_assert_eq(run(q, &m, &r), PT_DECLINED);
	cr_assert_str_eq(r.text, "5.7.1  250 forged", "CR and LF must not reach the reply");
	pt_message_clear(&m);
	cr_assert_eq(run(s, &m, &r), PT_DECLINED);
	cr_assert_str_eq(r.text, "5.0.0 5.7 not enhanced");
	pt_message_clear(&m);
	cr_assert_eq(run(t, &m, &r), PT_DECLINED);
	cr_assert_eq(strlen(r.text), sizeof(r.text) - 1, "long text is cut to the buffer");
	cr_assert_eq(strncmp(r.text, "5.0.0 aaaa", 10), 0);
	cr_assert_eq(strspn(r.text + 6, "a"), sizeof(r.text) - 7);
	pt_message_clear(&m);
	policy_free(t);
	policy_free(p);
	policy_free(q);
	policy_free(s);
}

Test(policy_event, reject_caught_and_rethrown_still_rejects)
{
	struct policy *p = load_handler("  local ok, e = pcall(petrel.reject, 550, 'no')\n"
					"  msg:set_meta('caught', tostring(e))\n"
					"  error(e)");
	struct policy_reply r;
	struct pt_message m;

	cr_assert_eq(run(p, &m, &r), PT_DECLINED);
	cr_assert_eq(r.code, 550);
	cr_assert_str_eq(r.text, "5.0.0 no");
	assert_meta(&m, "caught", "\"reject 550 no\"");
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, reject_with_bad_code_is_a_policy_error)
{
	static const char *const calls[] = {
	    "  petrel.reject(250, 'ok?')", "  petrel.reject(600, 'x')",
	    "  petrel.reject(550.5, 'x')", "  petrel.reject('550', 'x')",
	    "  petrel.reject(550)",
	};
	static const char *const logged[] = {
	    "reject: code must be a whole number from 400 to 599, got 250",
	    "reject: code must be a whole number from 400 to 599, got 600",
	    "reject: code must be a whole number from 400 to 599, got 550.5",
	    "reject: code must be a number from 400 to 599, got string",
	    "reject: text must be a string, got no value",
	};

	for (size_t i = 0; i < PT_ARRAY_LEN(calls); i++) {
		struct policy *p = load_handler(calls[i]);
		struct policy_reply r;
		struct pt_message m;
		char log[2048], want[1024];

		cr_assert_eq(run_capturing_log(p, &m, &r, log, sizeof(log)), PT_ERROR, "%s",
			     calls[i]);
		cr_assert_eq(r.code, 451);
		cr_assert_str_eq(r.text, "4.3.0 internal policy error");
		snprintf(want, sizeof(want),
			 "policy error in smtp_server_message_received: %s:3: %s\n", test_path,
			 logged[i]);
		cr_assert_not_null(strstr(log, want), "log: %s\nwant: %s", log, want);
		pt_message_clear(&m);
		policy_free(p);
	}
}

Test(policy_event, lua_error_gives_451_and_the_state_keeps_working)
{
	struct policy *p = load_handler("  calls = (calls or 0) + 1\n"
					"  if calls == 1 then\n"
					"    local t = nil\n"
					"    t.x = 1\n"
					"  end\n"
					"  msg:set_meta('calls', calls)");
	struct policy_reply r;
	struct pt_message m;
	char log[2048], want[1024];

	cr_assert_eq(run_capturing_log(p, &m, &r, log, sizeof(log)), PT_ERROR);
	cr_assert_eq(r.code, 451);
	cr_assert_str_eq(r.text, "4.3.0 internal policy error");
	snprintf(want, sizeof(want),
		 "ERROR: policy error in smtp_server_message_received: %s:6: attempt to index "
		 "local 't' (a nil value)\n",
		 test_path);
	cr_assert_not_null(strstr(log, want), "log: %s\nwant: %s", log, want);
	pt_message_clear(&m);

	cr_assert_eq(run(p, &m, &r), PT_OK);
	assert_meta(&m, "calls", "2");
	pt_message_clear(&m);
	cr_assert_eq(run(p, &m, &r), PT_OK);
	assert_meta(&m, "calls", "3");
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, wrong_argument_types_are_clear_errors)
{
	struct policy *p =
	    load_handler("  local function err(f, ...) local ok, e = pcall(f, ...) return e end\n"
			 "  msg:set_meta('out', {\n"
			 "    err(msg.get_meta, msg),\n"
			 "    err(msg.sender, 'not a message'),\n"
			 "    err(msg.set_meta, msg, 'k'),\n"
			 "    err(msg.append_header, msg, 'X-A'),\n"
			 "  })");
	struct policy_reply r;
	struct pt_message m;

	cr_assert_eq(run(p, &m, &r), PT_OK);
	assert_meta(&m, "out",
		    "[\"bad argument #2 to '?' (string expected, got no value)\","
		    "\"bad argument #1 to '?' (petrel.Message expected, got string)\","
		    "\"bad argument #3 to '?' (value expected)\","
		    "\"bad argument #3 to '?' (string expected, got no value)\"]");
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, envelope_addresses)
{
	struct policy *p = load_handler(
	    "  local s, r = msg:sender(), msg:recipient_list()\n"
	    "  msg:set_meta('out', { msg:id(), s.user, s.domain, s.email, tostring(s),\n"
	    "    #r, r[1].user, r[1].domain, tostring(r[2]), tostring(msg:recipient()),\n"
	    "    msg:recipient() == r[1], msg:recipient() == r[2] })\n"
	    "  msg:set_meta('addr', s)");
	struct policy_reply r;
	struct pt_message m;

	cr_assert_eq(run(p, &m, &r), PT_OK);
	assert_meta(&m, "out",
		    "[\"" TEST_ID "\",\"alice\",\"example.com\",\"alice@example.com\","
		    "\"alice@example.com\",2,\"bob\",\"example.net\",\"carol@example.org\","
		    "\"bob@example.net\",true,false]");
	assert_meta(&m, "addr", "\"alice@example.com\"");
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, null_sender_and_odd_addresses)
{
	struct policy *p =
	    load_handler("  local s = msg:sender()\n"
			 "  local r = msg:recipient_list()\n"
			 "  msg:set_meta('out', { s.user, s.domain, s.email, tostring(s),\n"
			 "    r[1].user, r[1].domain, r[2].user, r[2].domain })");
	struct policy_reply r;
	struct pt_message m;

	pt_message_init(&m);
	cr_assert_eq(pt_message_set_sender(&m, "", 0), PT_OK);
	cr_assert_eq(pt_message_add_rcpt(&m, "postmaster", 10), PT_OK);
	cr_assert_eq(pt_message_add_rcpt(&m, "\"a@b\"@example.com", 18), PT_OK);
	cr_assert_eq(policy_smtp_server_message_received(p, &m, &r), PT_OK);
	assert_meta(&m, "out",
		    "[\"\",\"\",\"\",\"\",\"postmaster\",\"\",\"\\\"a@b\\\"\",\"example.com\"]");
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, recipient_is_nil_without_recipients)
{
	struct policy *p = load_handler("  msg:set_meta('r', msg:recipient())\n"
					"  msg:set_meta('n', #msg:recipient_list())");
	struct policy_reply r;
	struct pt_message m;

	pt_message_init(&m);
	cr_assert_eq(policy_smtp_server_message_received(p, &m, &r), PT_OK);
	assert_meta(&m, "r", "null");
	assert_meta(&m, "n", "0");
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, set_meta_stores_exact_json)
{
	struct policy *p =
	    load_handler("  msg:set_meta('s', 'gold')\n"
			 "  msg:set_meta('n', 3)\n"
			 "  msg:set_meta('neg', -7)\n"
			 "  msg:set_meta('f', 2.5)\n"
			 "  msg:set_meta('tenth', 0.1)\n"
			 "  msg:set_meta('big', 1e20)\n"
			 "  msg:set_meta('b', true)\n"
			 "  msg:set_meta('no', false)\n"
			 "  msg:set_meta('null', nil)\n"
			 "  msg:set_meta('empty', {})\n"
			 "  msg:set_meta('t', { zeta = 1, alpha = { 1, 'two', false, { 3 } },\n"
			 "    nested = { x = { y = 'z' } } })\n"
			 "  msg:set_meta('esc', 'q\" b\\\\ n\\n t\\t c\\1 \\127 é')\n"
			 "  msg:set_meta('s', 'silver')");
	struct policy_reply r;
	struct pt_message m;

	cr_assert_eq(run(p, &m, &r), PT_OK);
	assert_meta(&m, "s", "\"silver\"");
	assert_meta(&m, "n", "3");
	assert_meta(&m, "neg", "-7");
	assert_meta(&m, "f", "2.5");
	assert_meta(&m, "tenth", "0.1");
	assert_meta(&m, "big", "1e+20");
	assert_meta(&m, "b", "true");
	assert_meta(&m, "no", "false");
	assert_meta(&m, "null", "null");
	assert_meta(&m, "empty", "{}");
	assert_meta(
	    &m, "t",
	    "{\"alpha\":[1,\"two\",false,[3]],\"nested\":{\"x\":{\"y\":\"z\"}},\"zeta\":1}");
	assert_meta(&m, "esc", "\"q\\\" b\\\\ n\\n t\\t c\\u0001 \x7f \xc3\xa9\"");
	cr_assert_eq(m.n_meta, 12, "replacing a key must not add one");
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, get_meta_round_trips_values)
{
	struct policy *p = load_handler(
	    "  msg:set_meta('s', 'gold')\n"
	    "  msg:set_meta('n', 42)\n"
	    "  msg:set_meta('f', -0.125)\n"
	    "  msg:set_meta('b', false)\n"
	    "  msg:set_meta('t', { list = { 1, 'two', true }, obj = { k = 'v' } })\n"
	    "  local s, n, f, b, t = msg:get_meta('s'), msg:get_meta('n'), msg:get_meta('f'),\n"
	    "    msg:get_meta('b'), msg:get_meta('t')\n"
	    "  local pre = msg:get_meta('preset')\n"
	    "  msg:set_meta('out', { type(s), s, type(n), n, f, type(b), b,\n"
	    "    t.list[2], t.list[3], #t.list, t.obj.k, msg:get_meta('absent') == nil,\n"
	    "    pre.k[3].z == nil, pre.k[2], pre.s, type(pre.k[1]) })\n"
	    "  msg:set_meta('again', t)");
	struct policy_reply r;
	struct pt_message m;

	message_make(&m);
	cr_assert_eq(pt_message_set_meta(&m, "preset", "{\"k\":[1,2.5,{\"z\":null}],\"s\":\"v\"}"),
		     PT_OK);
	cr_assert_eq(policy_smtp_server_message_received(p, &m, &r), PT_OK);
	assert_meta(&m, "out",
		    "[\"string\",\"gold\",\"number\",42,-0.125,\"boolean\",false,\"two\",true,3,"
		    "\"v\",true,true,2.5,\"v\",\"number\"]");
	assert_meta(&m, "again", "{\"list\":[1,\"two\",true],\"obj\":{\"k\":\"v\"}}");
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, set_meta_refuses_what_json_cannot_hold)
{
	struct policy *p = load_handler(
	    "  local function err(v) local ok, e = pcall(msg.set_meta, msg, 'x', v) return e end\n"
	    "  local cycle = {} cycle.self = cycle\n"
	    "  msg:set_meta('out', {\n"
	    "    err(print), err(0/0), err(1/0), err('\\255'), err({ [1] = 'a', [3] = 'c' }),\n"
	    "    err({ 1, k = 2 }), err(cycle), err(coroutine.create(print)),\n"
	    "  })");
	struct policy_reply r;
	struct pt_message m;

	cr_assert_eq(run(p, &m, &r), PT_OK);
	assert_meta(&m, "out",
		    "[\"set_meta: a function value can't be stored as JSON\","
		    "\"set_meta: NaN can't be stored as JSON\","
		    "\"set_meta: infinity can't be stored as JSON\","
		    "\"set_meta: string is not valid UTF-8 (byte 0)\","
		    "\"set_meta: a table with number keys must be a sequence 1..n (objects need "
		    "string keys)\","
		    "\"set_meta: a table with number keys must be a sequence 1..n (objects need "
		    "string keys)\","
		    "\"set_meta: tables nested more than 64 deep (a cycle?)\","
		    "\"set_meta: a thread value can't be stored as JSON\"]");
	cr_assert_null(pt_message_get_meta(&m, "x"), "a failed set_meta must store nothing");
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, headers_edit_data_and_iov)
{
	static const char want[] = "X-First: 1\r\nX-Zeroth: 0\r\n"
				   "Subject: hello\r\nFrom: Alice <alice@example.com>\r\n"
				   "X-Folded: one\r\n two\r\n"
				   "X-Last: z\r\nX-Folded-Too: a\r\n\tb\r\n"
				   "\r\nbody line\r\n";
	struct policy *p =
	    load_handler("  msg:append_header('X-Last', 'z')\n"
			 "  msg:prepend_header('X-Zeroth', '0')\n"
			 "  msg:prepend_header('X-First', '1')\n"
			 "  msg:append_header('X-Folded-Too', 'a\\r\\n\\tb')\n"
			 "  msg:set_meta('data', msg:get_data())\n"
			 "  msg:set_meta('h', { msg:get_first_named_header_value('subject'),\n"
			 "    msg:get_first_named_header_value('X-FIRST'),\n"
			 "    msg:get_first_named_header_value('x-last'),\n"
			 "    msg:get_first_named_header_value('X-Folded'),\n"
			 "    msg:get_first_named_header_value('X-None') or 'absent' })");
	struct policy_reply r;
	struct pt_message m;
	struct iovec iov[4];
	char joined[512];
	size_t len = 0;
	int n;

	cr_assert_eq(run(p, &m, &r), PT_OK);
	n = pt_message_iov(&m, iov);
	for (int i = 0; i < n; i++) {
		cr_assert_leq(len + iov[i].iov_len, sizeof(joined));
		memcpy(joined + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	cr_assert_eq(len, sizeof(want) - 1);
	cr_assert_eq(memcmp(joined, want, len), 0, "stored: %.*s", (int)len, joined);
	assert_meta(&m, "data",
		    "\"X-First: 1\\r\\nX-Zeroth: 0\\r\\nSubject: hello\\r\\nFrom: Alice "
		    "<alice@example.com>\\r\\nX-Folded: one\\r\\n two\\r\\nX-Last: z\\r\\n"
		    "X-Folded-Too: a\\r\\n\\tb\\r\\n\\r\\nbody line\\r\\n\"");
	assert_meta(&m, "h", "[\"hello\",\"1\",\"z\",\"one two\",\"absent\"]");
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, header_injection_is_refused)
{
	struct policy *p =
	    load_handler("  local function err(...) local ok, e = pcall(...) return e end\n"
			 "  msg:set_meta('out', {\n"
			 "    err(msg.append_header, msg, 'X-A', 'v\\r\\nBcc: evil@example.com'),\n"
			 "    err(msg.append_header, msg, 'X-A', 'v\\nw'),\n"
			 "    err(msg.prepend_header, msg, 'X-A', 'v\\r'),\n"
			 "    err(msg.prepend_header, msg, 'Bad:Name', 'v'),\n"
			 "    err(msg.prepend_header, msg, 'Bad Name', 'v'),\n"
			 "    err(msg.append_header, msg, '', 'v'),\n"
			 "  })");
	struct policy_reply r;
	struct pt_message m;

	cr_assert_eq(run(p, &m, &r), PT_OK);
	assert_meta(&m, "out",
		    "[\"append_header: header value may contain CRLF only when folding (CRLF "
		    "followed by a space or tab)\","
		    "\"append_header: header value may contain CRLF only when folding (CRLF "
		    "followed by a space or tab)\","
		    "\"prepend_header: header value may contain CRLF only when folding (CRLF "
		    "followed by a space or tab)\","
		    "\"prepend_header: header name 'Bad:Name' has a character not allowed in a "
		    "field name (RFC 5322 3.6.8)\","
		    "\"prepend_header: header name 'Bad Name' has a character not allowed in a "
		    "field name (RFC 5322 3.6.8)\","
		    "\"append_header: header name is empty\"]");
	cr_assert_eq(m.prefix.len, 0);
	cr_assert_eq(m.appended.len, 0);
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, message_used_after_its_event_raises)
{
	struct policy *p = load_handler("  if saved then\n"
					"    local ok, e = pcall(saved.id, saved)\n"
					"    msg:set_meta('late', e)\n"
					"    msg:set_meta('str', tostring(saved))\n"
					"  end\n"
					"  saved = msg");
	struct policy_reply r;
	struct pt_message m;

	cr_assert_eq(run(p, &m, &r), PT_OK);
	cr_assert_eq(m.n_meta, 0);
	pt_message_clear(&m);
	cr_assert_eq(run(p, &m, &r), PT_OK);
	assert_meta(&m, "late", "\"message used outside its event\"");
	assert_meta(&m, "str", "\"Message (expired)\"");
	pt_message_clear(&m);
	policy_free(p);
}

Test(policy_event, other_events_are_stored_not_run)
{
	struct policy *p =
	    load_ok("local kumo = require 'kumo'\n"
		    "kumo.on('get_queue_config', function() error('not now') end)\n"
		    "kumo.on('smtp_server_ehlo', function() error('not now') end)\n");
	struct policy_reply r;
	struct pt_message m;

	cr_assert_eq(run(p, &m, &r), PT_OK);
	pt_message_clear(&m);
	policy_free(p);
}
