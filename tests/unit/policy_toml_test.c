/*
 * policy_toml_test.c -- TOML through toml++ (policy/toml.h): every TOML type
 * pushed as the Lua value toml.h promises, nested, array-of-tables and
 * inline tables, a KumoMTA-style shaping.toml, syntax errors with their
 * exact FILE:LINE:COLUMN, and the Lua API (kumo.toml_load / toml_parse /
 * toml_encode / toml_encode_pretty and their kumo.serde names) with errors
 * reported through the policy loader.
 *
 * Values are compared through a canonical dump (keys sorted, strings %q,
 * whole numbers as integers, arrays as [..]) made by a few lines of Lua, so
 * each test states the whole expected table in one string.
 */
#include "policy/policy.h"
#include "policy/toml.h"
#include "tests/unit/policy_test_util.h"

#include <criterion/criterion.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

TestSuite(policy_toml, .init = dir_setup, .fini = dir_teardown);

static const char DUMP_LUA[] =
    "local dump\n"
    "local function num(v)\n"
    "  if v ~= v then return 'nan' end\n"
    "  if v == math.huge then return 'inf' end\n"
    "  if v == -math.huge then return '-inf' end\n"
    "  if v == math.floor(v) and math.abs(v) < 2^63 then return string.format('%d', v) end\n"
    "  return string.format('%.17g', v)\n"
    "end\n"
    "dump = function(v)\n"
    "  local t = type(v)\n"
    "  if t == 'string' then return string.format('%q', v) end\n"
    "  if t == 'number' then return num(v) end\n"
    "  if t ~= 'table' then return tostring(v) end\n"
    "  local keys, n = {}, 0\n"
    "  for k in pairs(v) do n = n + 1; keys[n] = k end\n"
    "  if n > 0 and n == #v then\n"
    "    local out = {}\n"
    "    for i = 1, n do out[i] = dump(v[i]) end\n"
    "    return '[' .. table.concat(out, ',') .. ']'\n"
    "  end\n"
    "  table.sort(keys)\n"
    "  local out = {}\n"
    "  for i, k in ipairs(keys) do out[i] = k .. '=' .. dump(v[k]) end\n"
    "  return '{' .. table.concat(out, ',') .. '}'\n"
    "end\n"
    "return dump\n";

static lua_State *state_new(void)
{
	lua_State *L = luaL_newstate();

	cr_assert_not_null(L);
	luaL_openlibs(L);
	return L;
}

/* Dump the value at the top (popped) into out. */
static void dump_top(lua_State *L, char *out, size_t n)
{
	cr_assert_eq(luaL_loadstring(L, DUMP_LUA), 0);
	cr_assert_eq(lua_pcall(L, 0, 1, 0), 0);
	lua_insert(L, -2);
	cr_assert_eq(lua_pcall(L, 1, 1, 0), 0, "dump: %s", lua_tostring(L, -1));
	snprintf(out, n, "%s", lua_tostring(L, -1));
	lua_pop(L, 1);
}

/* text must parse; its dump must be exactly want. */
static void parses_to(const char *text, const char *want)
{
	lua_State *L = state_new();
	char err[512] = "", got[8192];
	int top = lua_gettop(L);

	cr_assert_eq(policy_toml_push(L, text, strlen(text), "t.toml", err, sizeof(err)), PT_OK,
		     "parse failed: %s", err);
	cr_assert_eq(lua_gettop(L), top + 1);
	cr_assert_eq(lua_type(L, -1), LUA_TTABLE);
	dump_top(L, got, sizeof(got));
	cr_assert_str_eq(got, want);
	lua_close(L);
}

/* text must fail with exactly want, pushing nothing. */
static void fails_with(const char *text, const char *want)
{
	lua_State *L = state_new();
	char err[512] = "";

	cr_assert_eq(policy_toml_push(L, text, strlen(text), "bad.toml", err, sizeof(err)),
		     PT_ERROR);
	cr_assert_eq(lua_gettop(L), 0);
	cr_assert_str_eq(err, want);
	lua_close(L);
}

Test(policy_toml, strings)
{
	parses_to("basic = \"tab\\there \\u00e9 \\\"q\\\"\"\n"
		  "literal = 'C:\\path\\no\\escape'\n"
		  "multi = \"\"\"\nline1\nline2\"\"\"\n"
		  "multi_lit = '''\nraw \\n'''\n"
		  "empty = \"\"\n",
		  "{basic=\"tab\\9here \xc3\xa9 \\\"q\\\"\",empty=\"\","
		  "literal=\"C:\\\\path\\\\no\\\\escape\",multi=\"line1\\\nline2\","
		  "multi_lit=\"raw \\\\n\"}");
}

Test(policy_toml, integers)
{
	parses_to("dec = 42\nneg = -17\nplus = +5\nzero = 0\nsep = 1_000_000\n"
		  "hex = 0xDEAD_beef\noct = 0o755\nbin = 0b1101\n"
		  "big = 9007199254740992\n",
		  "{big=9007199254740992,bin=13,dec=42,hex=3735928559,neg=-17,oct=493,"
		  "plus=5,sep=1000000,zero=0}");
}

/* Beyond 2^53 a LuaJIT number rounds (documented in toml.h): 2^53 + 1 reads
 * as 2^53, and the int64 extremes as +-2^63. */
Test(policy_toml, integers_beyond_2_pow_53_round_to_doubles)
{
	lua_State *L = state_new();
	const char *t = "a = 9007199254740993\nmax = 9223372036854775807\n"
			"min = -9223372036854775808\n";
	char err[256];

	cr_assert_eq(policy_toml_push(L, t, strlen(t), "t.toml", err, sizeof(err)), PT_OK, "%s",
		     err);
	lua_getfield(L, -1, "a");
	cr_assert_eq(lua_tonumber(L, -1), 9007199254740992.0);
	lua_getfield(L, -2, "max");
	cr_assert_eq(lua_tonumber(L, -1), 9223372036854775808.0);
	lua_getfield(L, -3, "min");
	cr_assert_eq(lua_tonumber(L, -1), -9223372036854775808.0);
	lua_close(L);
}

Test(policy_toml, floats_and_booleans)
{
	parses_to("pi = 3.25\nexp = 5e+22\nneg = -2E-2\nfrac = 6.626e-34\nsep = 224_617.445_991\n"
		  "pinf = inf\nninf = -inf\nnan = nan\nzero = -0.0\nyes = true\nno = false\n",
		  "{exp=4.9999999999999996e+22,frac=6.6259999999999998e-34,nan=nan,"
		  "neg=-0.02,ninf=-inf,no=false,pi=3.25,pinf=inf,sep=224617.44599099999,"
		  "yes=true,zero=0}");
}

/* RFC 3339 text: "Z" for a zero offset, the fraction without trailing zeros,
 * local forms without an offset; a space separator becomes "T". */
Test(policy_toml, dates_and_times_become_rfc3339_strings)
{
	parses_to("odt1 = 1979-05-27T07:32:00Z\n"
		  "odt2 = 1979-05-27T00:32:00-07:00\n"
		  "odt3 = 1979-05-27T00:32:00.999999+05:30\n"
		  "odt4 = 1979-05-27 07:32:00+00:00\n"
		  "ldt = 1979-05-27T07:32:00.5\n"
		  "ld = 1979-05-27\n"
		  "lt = 07:32:00\n"
		  "lt2 = 00:32:00.000001\n",
		  "{ld=\"1979-05-27\",ldt=\"1979-05-27T07:32:00.5\",lt=\"07:32:00\","
		  "lt2=\"00:32:00.000001\",odt1=\"1979-05-27T07:32:00Z\","
		  "odt2=\"1979-05-27T00:32:00-07:00\",odt3=\"1979-05-27T00:32:00.999999+05:30\","
		  "odt4=\"1979-05-27T07:32:00Z\"}");
}

Test(policy_toml, nested_tables_and_dotted_keys)
{
	parses_to("title = 'x'\n"
		  "[a]\nk = 1\n"
		  "[a.b.c]\nd = 2\n"
		  "[\"quoted.key\"]\nsite.name = 'mx'\n"
		  "[empty]\n",
		  "{a={b={c={d=2}},k=1},empty={},quoted.key={site={name=\"mx\"}},title=\"x\"}");
}

Test(policy_toml, arrays_and_arrays_of_tables)
{
	parses_to("ints = [1, 2, 3]\n"
		  "mixed = [1, 'two', 3.5, true, [4, [5]]]\n"
		  "empty = []\n"
		  "trailing = [\n  'a',\n  'b',\n]\n"
		  "[[pool]]\nname = 'p1'\n"
		  "[[pool.entries]]\nname = 'ip-1'\nweight = 3\n"
		  "[[pool.entries]]\nname = 'ip-2'\nweight = 1\n"
		  "[[pool]]\nname = 'p2'\n",
		  "{empty={},ints=[1,2,3],mixed=[1,\"two\",3.5,true,[4,[5]]],"
		  "pool=[{entries=[{name=\"ip-1\",weight=3},{name=\"ip-2\",weight=1}],"
		  "name=\"p1\"},{name=\"p2\"}],trailing=[\"a\",\"b\"]}");
}

Test(policy_toml, inline_tables)
{
	parses_to("point = { x = 1, y = 2 }\n"
		  "nested = { a = { b = 'c' }, list = [{ n = 1 }, { n = 2 }] }\n"
		  "empty = {}\n"
		  "dotted = { site.name = 'x' }\n",
		  "{dotted={site={name=\"x\"}},empty={},nested={a={b=\"c\"},list=[{n=1},{n=2}]},"
		  "point={x=1,y=2}}");
}

/* The shape of KumoMTA's policy-extras shaping.toml: quoted domain
 * sections, provider blocks with match arrays of inline tables, automation
 * arrays of tables with inline-table actions, per-source overrides. */
static const char SHAPING_TOML[] =
    "# traffic shaping\n"
    "[\"default\"]\n"
    "connection_limit = 10\n"
    "max_connection_rate = \"100/min\"\n"
    "max_deliveries_per_connection = 100\n"
    "max_message_rate = \"100/s\"\n"
    "idle_timeout = \"60s\"\n"
    "enable_tls = \"Opportunistic\"\n"
    "consecutive_connection_failures_before_delay = 100\n"
    "\n"
    "[provider.\"google\"]\n"
    "match = [\n"
    "  {MXSuffix = \".google.com\"},\n"
    "  {MXSuffix = \".googlemail.com\"},\n"
    "]\n"
    "enable_tls = 'Required'\n"
    "provider_connection_limit = 5\n"
    "\n"
    "[[\"gmail.com\".automation]]\n"
    "regex = \"This message does not have authentication information\"\n"
    "action = \"SuspendTenant\"\n"
    "duration = \"3 hours\"\n"
    "\n"
    "[\"example.com\"]\n"
    "mx_rollup = false\n"
    "connection_limit = 1\n"
    "\n"
    "[\"example.com\".sources.\"ip-1\"]\n"
    "max_message_rate = \"5/min\"\n"
    "\n"
    "[[\"example.com\".automation]]\n"
    "regex = \"451 .*rate limited\"\n"
    "action = [\n"
    "  {SetConfig = {name = \"connection_limit\", value = 1}},\n"
    "  \"Suspend\",\n"
    "]\n"
    "duration = \"90m\"\n";

Test(policy_toml, kumomta_shaping_sample)
{
	parses_to(SHAPING_TOML,
		  "{default={connection_limit=10,consecutive_connection_failures_before_delay=100,"
		  "enable_tls=\"Opportunistic\",idle_timeout=\"60s\","
		  "max_connection_rate=\"100/min\",max_deliveries_per_connection=100,"
		  "max_message_rate=\"100/s\"},"
		  "example.com={automation=[{action=[{SetConfig={name=\"connection_limit\","
		  "value=1}},\"Suspend\"],duration=\"90m\",regex=\"451 .*rate limited\"}],"
		  "connection_limit=1,mx_rollup=false,"
		  "sources={ip-1={max_message_rate=\"5/min\"}}},"
		  "gmail.com={automation=[{action=\"SuspendTenant\",duration=\"3 hours\","
		  "regex=\"This message does not have authentication information\"}]},"
		  "provider={google={enable_tls=\"Required\",match=[{MXSuffix=\".google.com\"},"
		  "{MXSuffix=\".googlemail.com\"}],provider_connection_limit=5}}}");
}

Test(policy_toml, empty_document_is_an_empty_table)
{
	parses_to("", "{}");
	parses_to("# only a comment\n\n", "{}");
}

Test(policy_toml, syntax_errors_give_file_line_column)
{
	fails_with("a = 1\nb = = 2\n",
		   "bad.toml:2:5: Error while parsing value: could not determine value type");
	fails_with("[x]\nk = 'v'\n[x]\n",
		   "bad.toml:3:1: Error while parsing table header: cannot redefine existing "
		   "table 'x'");
	fails_with("a = 1\na = 2\n",
		   "bad.toml:2:5: Error while parsing key-value pair: cannot redefine existing "
		   "integer 'a'");
	fails_with("s = \"unterminated\n",
		   "bad.toml:1:18: Error while parsing string: unescaped control characters other "
		   "than TAB (U+0009) are explicitly prohibited");
	fails_with("t = 1979-13-27\n",
		   "bad.toml:1:12: Error while parsing date: expected month between 1 and 12 "
		   "(inclusive), saw 13");
}

static void encode_is(const char *lua_expr, bool pretty, const char *want)
{
	lua_State *L = state_new();
	char err[512] = "", chunk[1024];

	snprintf(chunk, sizeof(chunk), "return %s", lua_expr);
	cr_assert_eq(luaL_dostring(L, chunk), 0);
	cr_assert_eq(policy_toml_encode(L, -1, pretty, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(lua_gettop(L), 2);
	cr_assert_str_eq(lua_tostring(L, -1), want);
	lua_close(L);
}

static void encode_fails(const char *lua_expr, const char *want)
{
	lua_State *L = state_new();
	char err[512] = "", chunk[1024];

	snprintf(chunk, sizeof(chunk), "return %s", lua_expr);
	cr_assert_eq(luaL_dostring(L, chunk), 0);
	cr_assert_eq(policy_toml_encode(L, 1, false, err, sizeof(err)), PT_ERROR);
	cr_assert_eq(lua_gettop(L), 1);
	cr_assert_str_eq(err, want);
	lua_close(L);
}

Test(policy_toml, encode)
{
	encode_is("{}", false, "");
	encode_is("{name = 'x', n = 3, r = 0.5, ok = true, list = {1, 'a'}, "
		  "sub = {k = 'v', deeper = {z = 1}}}",
		  false,
		  "list = [ 1, \"a\" ]\nn = 3\nname = \"x\"\nok = true\nr = 0.5\n\n"
		  "[sub]\nk = \"v\"\n\n[sub.deeper]\nz = 1\n");
	encode_is("{pool = {{name = 'a'}, {name = 'b'}}}", false,
		  "[[pool]]\nname = \"a\"\n\n[[pool]]\nname = \"b\"\n");
	encode_is("{sub = {k = 'v\\\\'}}", true, "[sub]\nk = 'v\\'\n");
}

Test(policy_toml, encode_errors)
{
	encode_fails(
	    "{1, 2}",
	    "a TOML document must be a table with string keys, got an array or mixed keys");
	encode_fails("'text'", "a TOML document must be a table with string keys, got string");
	encode_fails("{f = print}", "can't encode a function value at 'f'");
	encode_fails("{t = {1, x = 2}}",
		     "table at 't' mixes keys: want only 1..n (an array) or only strings (a "
		     "table)");
	encode_fails("{t = {[1] = 1, [3] = 3}}",
		     "table at 't' mixes keys: want only 1..n (an array) or only strings (a "
		     "table)");
	encode_fails("(function() local t = {}; t.self = t; return t end)()",
		     "nesting deeper than 64 (a cycle?) at 'self'");
}

/* --- the Lua API, through the policy loader ------------------------------- */

static char toml_path[600];

static const char *write_toml(const char *name, const char *text)
{
	return test_write_file(test_dir, name, text, toml_path, sizeof(toml_path));
}

Test(policy_toml, lua_toml_load_and_serde_names)
{
	char text[4096];
	struct policy *p;

	write_toml("shaping.toml", SHAPING_TOML);
	snprintf(
	    text, sizeof(text),
	    "local kumo = require 'kumo'\n"
	    "local t = kumo.toml_load('%s')\n"
	    "assert(t.default.connection_limit == 10, 'connection_limit')\n"
	    "assert(t['example.com'].sources['ip-1'].max_message_rate == '5/min', 'src')\n"
	    "assert(t['example.com'].automation[1].action[2] == 'Suspend', 'action')\n"
	    "assert(t['example.com'].mx_rollup == false, 'mx_rollup')\n"
	    "local s = kumo.serde.toml_load('%s')\n"
	    "assert(s.provider.google.match[2].MXSuffix == '.googlemail.com', 'serde')\n"
	    "assert(kumo.serde.toml_parse('a = 1').a == 1, 'serde parse')\n"
	    "assert(kumo.toml_parse('[x]\\ny = \"z\"').x.y == 'z', 'parse')\n"
	    "local enc = kumo.serde.toml_encode({b = {c = 2}, a = 'x'})\n"
	    "assert(enc == 'a = \"x\"\\n\\n[b]\\nc = 2\\n', enc)\n"
	    "assert(kumo.toml_encode_pretty(t) == kumo.serde.toml_encode_pretty(t), 'pretty')\n"
	    "local back = kumo.toml_parse(kumo.toml_encode(t))\n"
	    "assert(back['gmail.com'].automation[1].duration == '3 hours', 'round trip')\n"
	    "assert(back.default.max_message_rate == '100/s', 'round trip 2')\n",
	    toml_path, toml_path);
	p = load_ok(text);
	policy_free(p);
}

/* The TOML position is kept behind the policy line that loaded the file. */
Test(policy_toml, lua_bad_file_reports_policy_line_and_toml_position)
{
	char text[1024], msg[1024];

	write_toml("bad.toml", "[\"default\"]\nconnection_limit = 10\nenable_tls = Required\n");
	snprintf(text, sizeof(text),
		 "local kumo = require 'kumo'\n"
		 "kumo.on('init', function()\n"
		 "  local shaping = kumo.toml_load('%s')\n"
		 "end)\n",
		 toml_path);
	snprintf(msg, sizeof(msg),
		 "%s:3:14: Error while parsing value: could not determine value type", toml_path);
	load_fails_with(text, 3, msg);
}

Test(policy_toml, lua_missing_file_and_bad_arguments)
{
	load_fails_with("local kumo = require 'kumo'\n"
			"local t = kumo.toml_load('/nonexistent-petrel/shaping.toml')\n",
			2,
			"toml_load: /nonexistent-petrel/shaping.toml: No such file or directory");
	load_fails_with("local kumo = require 'kumo'\n"
			"kumo.toml_load(nil)\n",
			2, "toml_load: path must be a string, got nil");
	load_fails_with("local kumo = require 'kumo'\n"
			"kumo.serde.toml_parse('a = ')\n",
			2,
			"<string>:1:5: Error while parsing key-value pair: encountered "
			"end-of-file");
	load_fails_with("local kumo = require 'kumo'\n"
			"kumo.toml_encode({f = function() end})\n",
			2, "toml_encode: can't encode a function value at 'f'");
}

Test(policy_toml, lua_directory_is_an_error)
{
	char text[512], msg[600];

	snprintf(text, sizeof(text),
		 "local kumo = require 'kumo'\n"
		 "kumo.toml_load('%s')\n",
		 test_dir);
	snprintf(msg, sizeof(msg), "toml_load: %s: Is a directory", test_dir);
	load_fails_with(text, 2, msg);
}
