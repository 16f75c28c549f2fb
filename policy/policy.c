/*
 * policy.c -- one LuaJIT state per shard running the user's policy.
 *
 * Loading (policy_load):
 *
 *   1. A new lua_State with the standard libraries, then the sandbox:
 *      os.execute, os.exit, io.popen, package.loadlib, the debug library,
 *      the FFI and the C module loaders are removed, so nothing a policy
 *      does (or anything that reaches it from the network) can start a
 *      process or load native code (DESIGN.md, security).  io.open and
 *      require stay: policies read helper files at init.
 *   2. require 'petrel' and require 'kumo' return the same table, so a
 *      KumoMTA policy ports with no rename: on, reject, the init-only
 *      calls of policy_config.c, kumo.dns (policy_dns.c), kumo.toml_* and
 *      kumo.serde.toml_* (toml_lua.c), kumo.dkim (dkim_lua.c), the
 *      make_queue_config / make_egress_path constructors, egress
 *      sources and pools (policy_source.c), and make_listener_domain
 *      (policy_listener.c).  package.path
 *      starts with the policy file's directory, then PETREL_POLICY_DIR
 *      (where the policy-extras modules ship: the Makefile passes this
 *      tree's policy/ as an absolute path), then $PETREL_POLICY_PATH when
 *      set.
 *   3. The file's top-level code runs (it registers handlers with on()),
 *      then the `init` handler with config calls allowed.
 *
 * Every lua_State is private to the shard that loaded it and nothing here
 * is global or static and mutable, so shards load and run policies in
 * parallel without locks.
 *
 * Errors.  Every protected call uses one message handler (policy_msgh).
 * Lua adds "file:line:" to errors raised by Lua code, but not to errors
 * raised by C API functions (a bad start_esmtp_listener key, a wrong
 * argument type); the handler adds the position of the innermost Lua frame
 * to those, so every message a user sees points at a line of their policy.
 * A handler that ends in a tail call (`return kumo.make_queue_config{...}`,
 * the usual form) has no frame left when the callee raises; such errors
 * point at the line where the handler was defined instead.  It leaves
 * reject values alone.
 *
 * Rejection.  reject(code, text) raises a table with the POLICY_MT_REJECT
 * metatable, the way KumoMTA's kumo.reject raises an error: the handler's
 * remaining code is skipped.  The event runner recognises the metatable and
 * turns it into PT_DECLINED and a reply; any other error is the policy's
 * bug, logged, and answered with 451 4.3.0 so the client retries later
 * rather than losing mail to our mistake.
 *
 * Configuration events.  get_queue_config and get_egress_path_config
 * (policy_queue.c, policy_egress.c) run through policy_config_event: the
 * handler gets string arguments (nil for NULL) and must return the userdata
 * its make_* function built, or nil for the defaults, as KumoMTA allows.
 * A wrong value is reported at the line where the handler was defined,
 * since no line of it is running any more.
 *
 * Memory errors.  The API calls made around a handler (pushing the message
 * object, finding the handler) run under lua_cpcall too, so even running out
 * of memory is an error return, never LuaJIT's panic and exit.
 */
#include "policy/policy_int.h"
#include "core/ptime.h"
#include "policy/dkim.h"
#include "policy/toml.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#ifndef PETREL_POLICY_DIR
#define PETREL_POLICY_DIR "policy"
#endif

#define POLICY_REG_MSGH		     "petrel.msgh"
#define EVENT_MESSAGE_RECEIVED	     "smtp_server_message_received"
#define EVENT_HTTP_MESSAGE_GENERATED "http_message_generated"
#define EVENT_SHOULD_ENQUEUE_LOG_RECORD "should_enqueue_log_record"

/* --- errors ------------------------------------------------------------ */

int policy_raise(lua_State *L, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	/* lua_pushvfstring knows only %s %d %f %p %c, hence vsnprintf. */
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	lua_pushstring(L, text);
	return lua_error(L);
}

void policy_check_init(lua_State *L, struct policy *p, const char *fn)
{
	if (!p->in_init)
		policy_raise(L, "%s may only be called from the init event", fn);
}

/*
 * "src:line:" of the innermost Lua function on the stack.  None is left
 * when the handler ended in a tail call (`return kumo.make_queue_config
 * {...}` replaces the handler's frame with the C function's): then the
 * line where the running handler was defined (p->fallback_where, set by
 * policy_pcall).  False if there is neither.
 */
static bool policy_where(lua_State *L, const struct policy *p, char *out, size_t n)
{
	lua_Debug ar;

	for (int level = 0; lua_getstack(L, level, &ar); level++) {
		lua_getinfo(L, "Sl", &ar);
		if (ar.currentline > 0) {
			snprintf(out, n, "%s:%d:", ar.short_src, ar.currentline);
			return true;
		}
	}
	snprintf(out, n, "%s", p->fallback_where);
	return out[0] != '\0';
}

/*
 * Does msg already start with "src:line:" for some Lua function on the
 * stack?  That is the exact form Lua's own positions take (luaL_where), so
 * unlike a pattern match it can't mistake "12:30:00" for a location.
 */
static bool policy_has_location(lua_State *L, const char *msg)
{
	lua_Debug ar;

	for (int level = 0; lua_getstack(L, level, &ar); level++) {
		size_t len;
		const char *d;

		lua_getinfo(L, "S", &ar);
		if (strcmp(ar.what, "C") == 0)
			continue;
		len = strlen(ar.short_src);
		if (strncmp(msg, ar.short_src, len) != 0 || msg[len] != ':')
			continue;
		for (d = msg + len + 1; isdigit((unsigned char)*d); d++)
			;
		if (d > msg + len + 1 && *d == ':')
			return true;
	}
	return false;
}

static bool policy_is_reject(lua_State *L, int idx)
{
	bool yes;

	if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
		return false;
	luaL_getmetatable(L, POLICY_MT_REJECT);
	yes = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return yes;
}

/* The message handler of every protected call (see the file comment). */
static int policy_msgh(lua_State *L)
{
	struct policy *p = policy_from_upvalue(L);
	char where[LUA_IDSIZE + 32];
	const char *msg;

	if (policy_is_reject(L, 1))
		return 1;
	if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER)
		msg = lua_tostring(L, 1);
	else
		msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	if (policy_has_location(L, msg) || !policy_where(L, p, where, sizeof(where)))
		lua_pushstring(L, msg);
	else
		lua_pushfstring(L, "%s %s", where, msg);
	return 1;
}

/* --- petrel.on, petrel.reject ----------------------------------------- */

/*
 * Events that take several handlers (KumoMTA's pre_init, get_queue_config
 * and should_enqueue_log_record), so helper modules such as
 * policy-extras.log_hooks compose with the policy's own handler.  Every
 * other event keeps one handler: a second kumo.on is a mistake worth an
 * error.
 */
static const char *const policy_multi_events[] = {
    "pre_init",
    "get_queue_config",
    "should_enqueue_log_record",
    NULL,
};

/*
 * The handler of a multi-handler event with more than one registration:
 * calls the handlers (upvalue 1, a list) in the order they were registered
 * with the event's arguments; the first that returns a value other than
 * nil decides (KumoMTA's rule), nil when none does.  Errors propagate to
 * the event's protected call; those of Lua code carry their file:line.
 */
static int policy_chain(lua_State *L)
{
	int n_args = lua_gettop(L);
	size_t n = lua_objlen(L, lua_upvalueindex(1));

	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, lua_upvalueindex(1), (int)i);
		for (int a = 1; a <= n_args; a++)
			lua_pushvalue(L, a);
		lua_call(L, n_args, 1);
		if (!lua_isnil(L, -1))
			return 1;
		lua_pop(L, 1);
	}
	lua_pushnil(L);
	return 1;
}

/* Add the function at fn to a multi-handler event (the handlers table at -1). */
static void policy_on_multi(lua_State *L, const char *event, int fn)
{
	lua_getfield(L, LUA_REGISTRYINDEX, POLICY_REG_CHAINS);
	lua_getfield(L, -1, event);
	if (lua_isnil(L, -1)) {
		/* Second handler: the list starts with the first one. */
		lua_pop(L, 1);
		lua_createtable(L, 2, 0);
		lua_getfield(L, -3, event);
		lua_rawseti(L, -2, 1);
		lua_pushvalue(L, -1);
		lua_setfield(L, -3, event);
		lua_pushvalue(L, -1);
		lua_pushcclosure(L, policy_chain, 1);
		lua_setfield(L, -4, event);
	}
	lua_pushvalue(L, fn);
	lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
	lua_pop(L, 2);
}

static int policy_on(lua_State *L)
{
	const char *event = luaL_checkstring(L, 1);

	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_getfield(L, LUA_REGISTRYINDEX, POLICY_REG_HANDLERS);
	lua_getfield(L, -1, event);
	if (!lua_isnil(L, -1)) {
		if (!policy_config_name_in(policy_multi_events, event))
			return policy_raise(L, "event '%s' already has a handler", event);
		lua_pop(L, 1);
		policy_on_multi(L, event, 2);
		return 0;
	}
	lua_pop(L, 1);
	lua_pushvalue(L, 2);
	lua_setfield(L, -2, event);
	/* Asked at every RCPT: a flag, not a registry lookup (policy_listener.c). */
	if (strcmp(event, "get_listener_domain") == 0)
		policy_from_upvalue(L)->has_listener_domain = true;
	return 0;
}

static int policy_reject(lua_State *L)
{
	struct policy *p = policy_from_upvalue(L);
	char where[LUA_IDSIZE + 32];
	lua_Number code;

	if (lua_type(L, 1) != LUA_TNUMBER)
		return policy_raise(L, "reject: code must be a number from 400 to 599, got %s",
				    luaL_typename(L, 1));
	code = lua_tonumber(L, 1);
	if (code != (int)code || code < 400 || code > 599)
		return policy_raise(L,
				    "reject: code must be a whole number from 400 to 599, "
				    "got %s",
				    lua_tostring(L, 1));
	if (lua_type(L, 2) != LUA_TSTRING)
		return policy_raise(L, "reject: text must be a string, got %s",
				    luaL_typename(L, 2));
	lua_createtable(L, 0, 3);
	lua_pushvalue(L, 1);
	lua_setfield(L, -2, "code");
	lua_pushvalue(L, 2);
	lua_setfield(L, -2, "text");
	/* Kept for the error that reject outside an SMTP event becomes. */
	policy_where(L, p, where, sizeof(where));
	lua_pushstring(L, where);
	lua_setfield(L, -2, "where");
	luaL_getmetatable(L, POLICY_MT_REJECT);
	lua_setmetatable(L, -2);
	return lua_error(L);
}

static int policy_reject_tostring(lua_State *L)
{
	lua_getfield(L, 1, "code");
	lua_getfield(L, 1, "text");
	lua_pushfstring(L, "reject %s %s", lua_tostring(L, -2), lua_tostring(L, -1));
	return 1;
}

/* RFC 3463 section 2: class "." subject "." detail, then a space or the end. */
static bool reply_has_enhanced_code(const char *t)
{
	size_t i = 0, n;

	if (!isdigit((unsigned char)t[i++]) || t[i++] != '.')
		return false;
	for (int part = 0; part < 2; part++) {
		for (n = 0; isdigit((unsigned char)t[i]); i++)
			n++;
		if (n < 1 || n > 3)
			return false;
		if (part == 0 && t[i++] != '.')
			return false;
	}
	return t[i] == ' ' || t[i] == '\0';
}

/*
 * The reply text always starts with an enhanced status code (RFC 2034):
 * "<class>.0.0", the undefined detail of the reply's class, when the policy
 * gave none.  CR and LF become spaces: a reply is one line here, and a
 * stray CRLF would let the text forge a second reply.
 */
static void reply_set(struct policy_reply *r, int code, const char *text)
{
	size_t at = 0, len;

	if (text[0] == '\0')
		text = "rejected by policy";
	r->code = code;
	/* CR/LF are blanked before the check so "5.7.1\r\n" still counts as coded. */
	len = strnlen(text, sizeof(r->text) - 1);
	memcpy(r->text, text, len);
	r->text[len] = '\0';
	for (char *c = r->text; *c != '\0'; c++)
		if (*c == '\r' || *c == '\n')
			*c = ' ';
	if (!reply_has_enhanced_code(r->text)) {
		/* code is 400-599 (checked by reject): the prefix is 6 bytes. */
		at = 6;
		len = PT_MIN(len, sizeof(r->text) - 1 - at);
		memmove(r->text + at, r->text, len);
		r->text[at + len] = '\0';
		memcpy(r->text, (char[]){(char)('0' + code / 100), '.', '0', '.', '0', ' '}, at);
	}
}

bool policy_reject_reply(lua_State *L, int idx, struct policy_reply *reply)
{
	if (!policy_is_reject(L, idx))
		return false;
	lua_getfield(L, idx, "code");
	lua_getfield(L, idx < 0 ? idx - 1 : idx, "text");
	reply_set(reply, (int)lua_tointeger(L, -2), lua_tostring(L, -1));
	lua_pop(L, 2);
	return true;
}

static void reply_internal_error(struct policy_reply *r)
{
	r->code = 451;
	snprintf(r->text, sizeof(r->text), "4.3.0 internal policy error");
}

/* --- state setup -------------------------------------------------------- */

struct policy_setup {
	struct policy *p;
	const char *path;
};

static void setup_nil_field(lua_State *L, const char *table, const char *field)
{
	lua_getglobal(L, table);
	if (lua_istable(L, -1)) {
		lua_pushnil(L);
		lua_setfield(L, -2, field);
	}
	lua_pop(L, 1);
}

static void setup_sandbox(lua_State *L)
{
	setup_nil_field(L, "os", "execute");
	setup_nil_field(L, "os", "exit");
	setup_nil_field(L, "io", "popen");
	setup_nil_field(L, "package", "loadlib");
	lua_pushnil(L);
	lua_setglobal(L, "debug");
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "loaded");
	lua_pushnil(L);
	lua_setfield(L, -2, "debug");
	lua_pushnil(L);
	lua_setfield(L, -2, "ffi");
	lua_pop(L, 1);
	lua_getfield(L, -1, "preload");
	lua_pushnil(L);
	lua_setfield(L, -2, "ffi");
	lua_pop(L, 1);
	/* Loaders 3 and 4 load C modules from cpath: native code, no sandbox. */
	lua_getfield(L, -1, "loaders");
	lua_pushnil(L);
	lua_rawseti(L, -2, 4);
	lua_pushnil(L);
	lua_rawseti(L, -2, 3);
	lua_pop(L, 1);
	lua_pushliteral(L, "");
	lua_setfield(L, -2, "cpath");
	lua_pop(L, 1);
}

static void setup_package_path(lua_State *L, const char *path)
{
	const char *slash = strrchr(path, '/');
	const char *env = getenv("PETREL_POLICY_PATH");
	luaL_Buffer b;

	luaL_buffinit(L, &b);
	if (slash == NULL) {
		luaL_addstring(&b, "./?.lua;");
	} else {
		for (int i = 0; i < 2; i++) {
			luaL_addlstring(&b, path, (size_t)(slash - path) + 1);
			luaL_addstring(&b, i == 0 ? "?.lua;" : "?/init.lua;");
		}
	}
	luaL_addstring(&b, PETREL_POLICY_DIR "/?.lua;");
	if (env != NULL && env[0] != '\0') {
		luaL_addstring(&b, env);
		luaL_addchar(&b, ';');
	}
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "path");
	lua_remove(L, -2);
	luaL_addvalue(&b);
	luaL_pushresult(&b);
	lua_getglobal(L, "package");
	lua_insert(L, -2);
	lua_setfield(L, -2, "path");
	lua_pop(L, 1);
}

static const luaL_Reg policy_functions[] = {
    {"on", policy_on},
    {"reject", policy_reject},
    {NULL, NULL},
};

static void setup_module(lua_State *L, struct policy *p)
{
	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, POLICY_REG_HANDLERS);
	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, POLICY_REG_CHAINS);
	lua_pushlightuserdata(L, p);
	lua_pushcclosure(L, policy_msgh, 1);
	lua_setfield(L, LUA_REGISTRYINDEX, POLICY_REG_MSGH);

	luaL_newmetatable(L, POLICY_MT_REJECT);
	lua_pushcfunction(L, policy_reject_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);
	policy_message_register(L);
	policy_buf_register(L);

	lua_newtable(L);
	lua_pushlightuserdata(L, p);
	luaL_setfuncs(L, policy_functions, 1);
	policy_config_register(L, p);
	policy_queue_register(L);
	policy_egress_register(L);
	policy_source_register(L, p);
	policy_listener_register(L);
	policy_http_register(L, p);
	policy_dns_register(L, p);
	policy_toml_register(L);
	policy_dkim_register(L);
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "loaded");
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "petrel");
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "kumo");
	lua_pop(L, 3);
}

/* Runs under lua_cpcall: an allocation failure here is an error return. */
static int policy_setup_state(lua_State *L)
{
	struct policy_setup *s = lua_touserdata(L, 1);

	luaL_openlibs(L);
	setup_sandbox(L);
	setup_package_path(L, s->path);
	setup_module(L, s->p);
	return 0;
}

static int policy_panic(lua_State *L)
{
	pt_panic("unprotected Lua error: %s", lua_tostring(L, -1));
}

/* --- running code --------------------------------------------------------- */

void policy_error_text(lua_State *L, char *out, size_t n)
{
	if (policy_is_reject(L, -1)) {
		lua_getfield(L, -1, "where");
		snprintf(out, n, "%s reject() may only be called from an SMTP event",
			 lua_tostring(L, -1));
		lua_pop(L, 1);
		return;
	}
	snprintf(out, n, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "unknown error");
}

/* "src:line:" where the function at the top of the stack was defined, or
 * "" for the main chunk and C functions (they have no definition line). */
void policy_where_defined(lua_State *L, char *out, size_t n)
{
	lua_Debug ar;

	lua_pushvalue(L, -1);
	lua_getinfo(L, ">S", &ar);
	if (ar.linedefined > 0)
		snprintf(out, n, "%s:%d:", ar.short_src, ar.linedefined);
	else
		out[0] = '\0';
}

int policy_pcall(struct policy *p, int nargs, int nresults)
{
	lua_State *L = p->L;
	char saved[sizeof(p->fallback_where)];
	int msgh = lua_gettop(L) - nargs;
	int rc;

	/* Nested calls (a handler calling into another) restore the outer one. */
	memcpy(saved, p->fallback_where, sizeof(saved));
	lua_pushvalue(L, msgh);
	policy_where_defined(L, p->fallback_where, sizeof(p->fallback_where));
	lua_pop(L, 1);
	if (p->fallback_where[0] == '\0')
		memcpy(p->fallback_where, saved, sizeof(saved));
	lua_getfield(L, LUA_REGISTRYINDEX, POLICY_REG_MSGH);
	lua_insert(L, msgh);
	rc = lua_pcall(L, nargs, nresults, msgh);
	lua_remove(L, msgh);
	memcpy(p->fallback_where, saved, sizeof(saved));
	return rc;
}

/* Two clock reads (vDSO, tens of ns) around a handler that costs
 * microseconds at least. */
int policy_event_pcall(struct policy *p, const char *event, int nargs, int nresults)
{
	uint64_t t0;
	int rc;

	if (!p->event_timing)
		return policy_pcall(p, nargs, nresults);
	t0 = pt_monotonic_ns();
	rc = policy_pcall(p, nargs, nresults);
	p->event_timing(p->event_timing_ctx, event, pt_monotonic_ns() - t0);
	return rc;
}

bool policy_push_handler(lua_State *L, const char *event)
{
	lua_getfield(L, LUA_REGISTRYINDEX, POLICY_REG_HANDLERS);
	lua_getfield(L, -1, event);
	lua_remove(L, -2);
	if (lua_isfunction(L, -1))
		return true;
	lua_pop(L, 1);
	return false;
}

static int policy_run_file(struct policy *p, const char *path, char *err, size_t err_len)
{
	lua_State *L = p->L;

	if (luaL_loadfile(L, path) != 0 || policy_pcall(p, 0, 0) != 0)
		goto fail;
	/* pre_init (KumoMTA's, for helper modules such as policy-extras.log_hooks),
	 * then init; both may make the init-only calls. */
	for (int i = 0; i < 2; i++) {
		int rc;

		if (!policy_push_handler(L, i == 0 ? "pre_init" : "init"))
			continue;
		p->in_init = true;
		rc = policy_pcall(p, 0, 0);
		p->in_init = false;
		if (rc != 0)
			goto fail;
	}
	return PT_OK;
fail:
	policy_error_text(L, err, err_len);
	lua_settop(L, 0);
	return PT_ERROR;
}

int policy_load(struct policy **out, const char *path, unsigned shard, char *err, size_t err_len)
{
	struct policy_setup setup;
	struct policy *p;
	char scratch[8];

	if (err == NULL || err_len == 0)
		err = scratch, err_len = sizeof(scratch);
	err[0] = '\0';
	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		goto nomem;
	p->shard = shard;
	if (policy_config_init(&p->config) != PT_OK || (p->L = luaL_newstate()) == NULL)
		goto nomem;
	lua_atpanic(p->L, policy_panic);
	setup = (struct policy_setup){.p = p, .path = path};
	if (lua_cpcall(p->L, policy_setup_state, &setup) != 0) {
		snprintf(err, err_len, "%s: setting up Lua: %s", path, lua_tostring(p->L, -1));
		goto fail;
	}
	if (policy_run_file(p, path, err, err_len) != PT_OK)
		goto fail;
	*out = p;
	return PT_OK;
nomem:
	snprintf(err, err_len, "%s: out of memory", path);
fail:
	policy_free(p);
	return PT_ERROR;
}

void policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	/* Close first: __gc metamethods may still run and must find the config. */
	if (p->L != NULL)
		lua_close(p->L);
	policy_config_free(p);
	free(p);
}

static bool str_same(const char *a, const char *b)
{
	return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

static bool listener_same(const struct policy_listener *a, const struct policy_listener *b)
{
	return str_same(a->listen, b->listen) && str_same(a->hostname, b->hostname) &&
	       str_same(a->banner, b->banner) && a->relay_hosts.n == b->relay_hosts.n &&
	       (a->relay_hosts.n == 0 ||
		memcmp(a->relay_hosts.items, b->relay_hosts.items,
		       a->relay_hosts.n * sizeof(*a->relay_hosts.items)) == 0) &&
	       a->max_message_size == b->max_message_size &&
	       a->max_recipients_per_message == b->max_recipients_per_message &&
	       a->max_connections == b->max_connections &&
	       str_same(a->tls_certificate, b->tls_certificate) &&
	       str_same(a->tls_private_key, b->tls_private_key) &&
	       a->client_timeout_ms == b->client_timeout_ms &&
	       a->data_timeout_ms == b->data_timeout_ms;
}

static bool names_same(char *const *a, size_t n_a, char *const *b, size_t n_b)
{
	if (n_a != n_b)
		return false;
	for (size_t i = 0; i < n_a; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

/* Append to note the init settings that differ between a and b. */
static void config_changes(const struct policy_config *a, const struct policy_config *b,
			   char *note, size_t note_len)
{
	bool listeners = a->n_listeners != b->n_listeners, dns;
	size_t used = 0;

	for (size_t i = 0; !listeners && i < a->n_listeners; i++)
		listeners = !listener_same(&a->listeners[i], &b->listeners[i]);
	dns = a->n_dns_name_servers != b->n_dns_name_servers ||
	      a->dns_timeout_ms != b->dns_timeout_ms;
	for (size_t i = 0; !dns && i < a->n_dns_name_servers; i++)
		dns = !str_same(a->dns_name_servers[i], b->dns_name_servers[i]);
	note[0] = '\0';
#define NOTE(cond, what)                                                                           \
	if ((cond) && used < note_len)                                                             \
		used += (size_t)snprintf(note + used, note_len - used, "%s%s", used ? ", " : "", what);
	NOTE(listeners, "start_esmtp_listener");
	NOTE(!policy_http_listeners_same(a, b), "start_http_listener");
	NOTE(!str_same(a->spool_path, b->spool_path), "define_spool");
	NOTE(!str_same(a->log_dir, b->log_dir) || a->log_max_file_size != b->log_max_file_size ||
		 a->log_max_segment_duration_ms != b->log_max_segment_duration_ms ||
		 a->log_compression_level != b->log_compression_level ||
		 !names_same(a->log_local_headers, a->n_log_local_headers, b->log_local_headers,
			     b->n_log_local_headers),
	     "configure_local_logs");
	NOTE(dns, "dns.configure_resolver");
	NOTE(!names_same(a->log_hooks, a->n_log_hooks, b->log_hooks, b->n_log_hooks) ||
		 !names_same(a->log_hook_headers, a->n_log_hook_headers, b->log_hook_headers,
			     b->n_log_hook_headers),
	     "configure_log_hook");
#undef NOTE
}

int policy_reload(struct policy **pp, const char *path, char *err, size_t err_len, char *note,
		  size_t note_len)
{
	struct policy *old = *pp, *fresh;
	struct policy_config c;
	size_t cap;

	if (policy_load(&fresh, path, old->shard, err, err_len) != PT_OK)
		return PT_ERROR;
	config_changes(&old->config, &fresh->config, note, note_len);
	/* The shard holds pointers into the running config (listeners):
	 * the new state takes the old config over, the old state goes with
	 * the config it just parsed. */
	c = old->config;
	old->config = fresh->config;
	fresh->config = c;
	cap = old->cap_listeners;
	old->cap_listeners = fresh->cap_listeners;
	fresh->cap_listeners = cap;
	fresh->mx_lookup = old->mx_lookup;
	fresh->mx_ctx = old->mx_ctx;
	fresh->event_timing = old->event_timing;
	fresh->event_timing_ctx = old->event_timing_ctx;
	policy_free(old);
	*pp = fresh;
	return PT_OK;
}

void policy_set_mx_lookup(struct policy *p, policy_mx_lookup_fn fn, void *ctx)
{
	p->mx_lookup = fn;
	p->mx_ctx = ctx;
}

void policy_set_event_timing(struct policy *p, policy_event_timing_fn fn, void *ctx)
{
	p->event_timing = fn;
	p->event_timing_ctx = ctx;
}

const struct policy_config *policy_config(const struct policy *p)
{
	return &p->config;
}

/* --- events ----------------------------------------------------------------- */

struct policy_event {
	struct policy *p;
	const char *event;
	struct pt_message *msg;
	struct policy_reply *reply;
	const char *hook; /* should_enqueue_log_record's hook_name */
	bool enqueue;	  /* ... and its answer */
	int rc;
	char error[1024];
};

/* Classify the pcall outcome at the top of the stack into ev->rc (a reject
 * is PT_DECLINED only for events that answer with a reply). */
static void policy_event_outcome(lua_State *L, struct policy_event *ev, int status)
{
	if (status == 0) {
		ev->rc = PT_OK;
		return;
	}
	if (ev->reply != NULL && policy_is_reject(L, -1)) {
		lua_getfield(L, -1, "code");
		lua_getfield(L, -2, "text");
		reply_set(ev->reply, (int)lua_tointeger(L, -2), lua_tostring(L, -1));
		lua_pop(L, 2);
		ev->rc = PT_DECLINED;
		return;
	}
	policy_error_text(L, ev->error, sizeof(ev->error));
	ev->rc = PT_ERROR;
}

/* should_enqueue_log_record's answer at the top of the stack into ev
 * (where: the handler's definition, for a wrong type). */
static void policy_event_enqueue_answer(lua_State *L, struct policy_event *ev, const char *where)
{
	if (lua_type(L, -1) == LUA_TBOOLEAN) {
		ev->enqueue = lua_toboolean(L, -1);
	} else if (!lua_isnil(L, -1)) {
		snprintf(ev->error, sizeof(ev->error),
			 "%s%sshould_enqueue_log_record must return a boolean or nil, got %s",
			 where, where[0] ? " " : "", luaL_typename(L, -1));
		ev->rc = PT_ERROR;
	}
}

/*
 * Runs under lua_cpcall: the handler of ev->event with the message (and,
 * for should_enqueue_log_record, the hook's name; its answer is read).
 * The message userdata stays on the stack below the call, so it is still
 * alive when its pointer is cleared afterwards (after which a policy that
 * kept it gets an error, not freed memory).
 */
static int policy_event_message(lua_State *L)
{
	struct policy_event *ev = lua_touserdata(L, 1);
	struct pt_message **slot;
	char where[LUA_IDSIZE + 32];
	int status;

	ev->rc = PT_OK;
	if (!policy_push_handler(L, ev->event))
		return 0;
	where[0] = '\0';
	if (ev->hook != NULL) /* only its answer is checked: no lookup per message */
		policy_where_defined(L, where, sizeof(where));
	slot = policy_message_push(L, ev->msg);
	lua_pushvalue(L, -2);
	lua_pushvalue(L, -2);
	if (ev->hook != NULL)
		lua_pushstring(L, ev->hook);
	status = policy_event_pcall(ev->p, ev->event, ev->hook ? 2 : 1, ev->hook ? 1 : 0);
	*slot = NULL;
	policy_event_outcome(L, ev, status);
	if (status == 0 && ev->hook != NULL)
		policy_event_enqueue_answer(L, ev, where);
	return 0;
}

/* Run a message event (ev filled) under lua_cpcall, so even running out of
 * memory is an error return; the stack is left as it was. */
static void policy_event_run(struct policy *p, struct policy_event *ev)
{
	int top = lua_gettop(p->L);

	if (lua_cpcall(p->L, policy_event_message, ev) != 0) {
		snprintf(ev->error, sizeof(ev->error), "%s", lua_tostring(p->L, -1));
		ev->rc = PT_ERROR;
	}
	lua_settop(p->L, top);
}

int policy_should_enqueue_log_record(struct policy *p, struct pt_message *msg, const char *hook,
				     bool *enqueue)
{
	struct policy_event ev = {
	    .p = p,
	    .event = EVENT_SHOULD_ENQUEUE_LOG_RECORD,
	    .msg = msg,
	    .hook = hook,
	};

	policy_event_run(p, &ev);
	*enqueue = ev.rc == PT_OK && ev.enqueue;
	if (ev.rc != PT_OK)
		pt_error("policy error in %s (hook %s): %s", ev.event, hook, ev.error);
	return ev.rc;
}

/* A message event (smtp_server_message_received, http_message_generated). */
static int policy_message_event(struct policy *p, const char *event, struct pt_message *msg,
				struct policy_reply *reply)
{
	struct policy_event ev = {
	    .p = p,
	    .event = event,
	    .msg = msg,
	    .reply = reply,
	};

	policy_event_run(p, &ev);
	if (ev.rc == PT_ERROR) {
		pt_error("policy error in %s: %s", ev.event, ev.error);
		reply_internal_error(reply);
	}
	return ev.rc;
}

int policy_smtp_server_message_received(struct policy *p, struct pt_message *msg,
					struct policy_reply *reply)
{
	return policy_message_event(p, EVENT_MESSAGE_RECEIVED, msg, reply);
}

int policy_http_message_generated(struct policy *p, struct pt_message *msg,
				  struct policy_reply *reply)
{
	return policy_message_event(p, EVENT_HTTP_MESSAGE_GENERATED, msg, reply);
}

/* --- configuration events ----------------------------------------------------- */

struct policy_config_call {
	struct policy *p;
	const struct policy_result_kind *kind;
	const char *const *args;
	int n_args;
	void *out;
	int rc;
	char error[1024];
};

/* Runs under lua_cpcall; the result stays on the stack while take copies it. */
static int policy_config_event_call(lua_State *L)
{
	struct policy_config_call *c = lua_touserdata(L, 1);
	const struct policy_result_kind *k = c->kind;
	char where[LUA_IDSIZE + 32];
	void *value;

	c->rc = PT_OK;
	if (!policy_push_handler(L, k->event))
		return 0;
	policy_where_defined(L, where, sizeof(where));
	for (int i = 0; i < c->n_args; i++) {
		if (c->args[i] != NULL)
			lua_pushstring(L, c->args[i]);
		else
			lua_pushnil(L);
	}
	if (policy_event_pcall(c->p, k->event, c->n_args, 1) != 0) {
		policy_error_text(L, c->error, sizeof(c->error));
		c->rc = PT_ERROR;
		return 0;
	}
	/* nil: KumoMTA falls back to the defaults (its or_default()). */
	if (lua_isnil(L, -1))
		return 0;
	if ((value = luaL_testudata(L, -1, k->mt)) == NULL) {
		snprintf(c->error, sizeof(c->error), "%s%s%s must return %s{...} or nil, got %s",
			 where, where[0] ? " " : "", k->event, k->maker, luaL_typename(L, -1));
		c->rc = PT_ERROR;
		return 0;
	}
	if (k->take(c->out, value) != PT_OK) {
		snprintf(c->error, sizeof(c->error), "%s%s%s: out of memory copying the result",
			 where, where[0] ? " " : "", k->event);
		c->rc = PT_ERROR;
	}
	return 0;
}

int policy_config_event(struct policy *p, const struct policy_result_kind *kind,
			const char *const *args, int n_args, void *out, char *err, size_t err_len)
{
	struct policy_config_call c = {
	    .p = p, .kind = kind, .args = args, .n_args = n_args, .out = out};
	int top = lua_gettop(p->L);

	if (err != NULL && err_len > 0)
		err[0] = '\0';
	if (lua_cpcall(p->L, policy_config_event_call, &c) != 0) {
		snprintf(c.error, sizeof(c.error), "%s: %s", kind->event, lua_tostring(p->L, -1));
		c.rc = PT_ERROR;
	}
	lua_settop(p->L, top);
	if (c.rc != PT_OK && err != NULL && err_len > 0)
		snprintf(err, err_len, "%s", c.error);
	return c.rc;
}
