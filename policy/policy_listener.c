/*
 * policy_listener.c -- kumo.make_listener_domain{...} and the
 * get_listener_domain event (KumoMTA's names), which say what the SMTP
 * server accepts for a domain from a client that is not a relay host:
 *
 *     kumo.on('get_listener_domain', function(domain, listener, conn_meta)
 *       if domain == 'bounce.example.com' then
 *         return kumo.make_listener_domain { log_oob = 'LogThenDrop' }
 *       end
 *     end)
 *
 * The value.  relay_to (boolean): accept mail to the domain from anyone
 * and relay it.  log_oob, log_arf: what to do with a delivery status
 * notification (RFC 3464) or a feedback report (RFC 5965) sent to the
 * domain: "Ignore", "LogThenDrop" or "LogThenRelay", or a boolean as in
 * KumoMTA before 2025.05 (false is Ignore, true is LogThenRelay).
 * relay_from (a list of CIDR blocks): when the domain is the *sender's*,
 * a client in the list may relay to anywhere.  ttl is accepted and
 * ignored, as in KumoMTA, where it is deprecated and unused.  Every key
 * is checked when the value is made, so a mistake points at that line;
 * the value is a userdata (metatable hidden) the runner copies, so one
 * value may be returned from every call.
 *
 * The event.  domain is the recipient's (or, for relay_from, the
 * sender's) domain; listener is the "ip:port" the client connected to;
 * conn_meta is a connection-metadata object whose get_meta() reads what
 * KumoMTA predefines (received_from, received_via, hostname,
 * reception_protocol, ehlo_domain, tls_cipher, tls_protocol_version).
 * Petrel keeps no connection metadata between events yet, so set_meta()
 * raises an error saying so rather than storing into nothing.  The
 * object is only valid during the call: kept and used later, it raises.
 *
 * kumo.reject() in the handler refuses the recipient with that reply, as
 * in the SMTP events; any other error is the policy's bug: logged, and
 * the recipient gets 451 4.3.0 so the client retries later.
 */
#include "policy/policy_int.h"

#include <stdlib.h>
#include <string.h>

#define LD_FN	     "make_listener_domain"
#define LD_EVENT     "get_listener_domain"
#define MT_LD	     "petrel.ListenerDomain"
#define MT_CONN_META "petrel.ConnectionMeta"

static const char *const ld_keys[] = {"relay_to", "log_oob", "log_arf", "relay_from", "ttl", NULL};
static const char *const ld_kumo_only[] = {NULL};

/* The userdata make_listener_domain returns. */
struct ld_value {
	bool relay_to;
	enum policy_report_mode log_oob, log_arf;
	struct pt_cidr_list relay_from;
};

static int ld_gc(lua_State *L)
{
	struct ld_value *v = luaL_checkudata(L, 1, MT_LD);

	pt_cidr_list_free(&v->relay_from);
	return 0;
}

static enum policy_report_mode ld_check_mode(lua_State *L, int idx, const char *key)
{
	static const char *const names[] = {"Ignore", "LogThenDrop", "LogThenRelay"};
	const char *s;

	if (lua_type(L, idx) == LUA_TBOOLEAN)
		return lua_toboolean(L, idx) ? POLICY_REPORT_LOG_THEN_RELAY : POLICY_REPORT_IGNORE;
	if (lua_type(L, idx) == LUA_TSTRING) {
		s = lua_tostring(L, idx);
		for (size_t i = 0; i < PT_ARRAY_LEN(names); i++)
			if (strcmp(s, names[i]) == 0)
				return (enum policy_report_mode)i;
		policy_raise(L,
			     "%s: '%s' must be a boolean or one of 'Ignore', 'LogThenDrop', "
			     "'LogThenRelay', got \"%s\"",
			     LD_FN, key, s);
	}
	return policy_raise(L,
			    "%s: '%s' must be a boolean or one of 'Ignore', 'LogThenDrop', "
			    "'LogThenRelay', got %s",
			    LD_FN, key, luaL_typename(L, idx));
}

static void ld_check_relay_from(lua_State *L, int idx, struct pt_cidr_list *list)
{
	size_t n;

	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L, "%s: 'relay_from' must be a list of CIDR blocks, got %s", LD_FN,
			     luaL_typename(L, idx));
	n = lua_objlen(L, idx);
	for (size_t i = 1; i <= n; i++) {
		const char *s;
		int rc;

		lua_rawgeti(L, idx, (int)i);
		if (lua_type(L, -1) != LUA_TSTRING)
			policy_raise(L, "%s: relay_from[%zu] must be a string, got %s", LD_FN, i,
				     luaL_typename(L, -1));
		s = lua_tostring(L, -1);
		rc = pt_cidr_list_add(list, s);
		if (rc == PT_NOMEM)
			policy_raise(L, "%s: out of memory", LD_FN);
		if (rc != PT_OK)
			policy_raise(L,
				     "%s: relay_from[%zu]: '%s' is not an IP address or CIDR block",
				     LD_FN, i, s);
		lua_pop(L, 1);
	}
}

/* kumo.make_listener_domain{...}: the userdata is made first (with its
 * __gc), so a bad key raised half way never leaks the relay_from list. */
static int ld_make(lua_State *L)
{
	struct ld_value *v;

	luaL_checktype(L, 1, LUA_TTABLE);
	policy_config_check_keys(L, 1, LD_FN, LD_FN, ld_keys, ld_kumo_only);
	v = lua_newuserdata(L, sizeof(*v));
	memset(v, 0, sizeof(*v));
	luaL_getmetatable(L, MT_LD);
	lua_setmetatable(L, -2);
	lua_getfield(L, 1, "relay_to");
	if (!lua_isnil(L, -1))
		v->relay_to = policy_config_check_bool(L, -1, LD_FN, "relay_to");
	lua_pop(L, 1);
	lua_getfield(L, 1, "log_oob");
	if (!lua_isnil(L, -1))
		v->log_oob = ld_check_mode(L, -1, "log_oob");
	lua_pop(L, 1);
	lua_getfield(L, 1, "log_arf");
	if (!lua_isnil(L, -1))
		v->log_arf = ld_check_mode(L, -1, "log_arf");
	lua_pop(L, 1);
	lua_getfield(L, 1, "relay_from");
	if (!lua_isnil(L, -1))
		ld_check_relay_from(L, lua_gettop(L), &v->relay_from);
	lua_pop(L, 1);
	lua_getfield(L, 1, "ttl");
	if (!lua_isnil(L, -1))
		policy_check_duration(L, -1, LD_FN ": 'ttl'");
	lua_pop(L, 1);
	return 1;
}

/* ---- conn_meta -------------------------------------------------------------- */

static const struct policy_conn_meta *conn_meta_check(lua_State *L)
{
	const struct policy_conn_meta **slot = luaL_checkudata(L, 1, MT_CONN_META);

	if (*slot == NULL)
		policy_raise(L, "conn_meta may only be used during the event it was passed to");
	return *slot;
}

static int conn_meta_get(lua_State *L)
{
	const struct policy_conn_meta *m = conn_meta_check(L);
	const char *key = luaL_checkstring(L, 2);
	const struct {
		const char *name, *value;
	} keys[] = {
	    {"received_from", m->received_from},
	    {"received_via", m->received_via},
	    {"hostname", m->hostname},
	    {"reception_protocol", m->reception_protocol},
	    {"ehlo_domain", m->ehlo_domain},
	    {"tls_cipher", m->tls_cipher},
	    {"tls_protocol_version", m->tls_protocol_version},
	};

	for (size_t i = 0; i < PT_ARRAY_LEN(keys); i++)
		if (strcmp(key, keys[i].name) == 0 && keys[i].value != NULL) {
			lua_pushstring(L, keys[i].value);
			return 1;
		}
	lua_pushnil(L);
	return 1;
}

static int conn_meta_set(lua_State *L)
{
	conn_meta_check(L);
	return policy_raise(L, "conn_meta:set_meta is not supported by Petrel yet: connection "
			       "metadata is read-only");
}

static int conn_meta_tostring(lua_State *L)
{
	lua_pushliteral(L, "ConnectionMeta");
	return 1;
}

static const struct policy_conn_meta **conn_meta_push(lua_State *L,
						      const struct policy_conn_meta *m)
{
	const struct policy_conn_meta **slot = lua_newuserdata(L, sizeof(*slot));

	*slot = m;
	luaL_getmetatable(L, MT_CONN_META);
	lua_setmetatable(L, -2);
	return slot;
}

/* ---- the event ------------------------------------------------------------------ */

struct ld_call {
	struct policy *p;
	const char *domain, *listener;
	const struct policy_conn_meta *meta;
	struct policy_listener_domain *out;
	struct policy_reply *reply;
	int rc;
	char error[1024];
};

static void ld_take(const struct ld_value *v, const struct policy_conn_meta *meta,
		    struct policy_listener_domain *out)
{
	out->found = true;
	out->relay_to = v->relay_to;
	out->log_oob = v->log_oob;
	out->log_arf = v->log_arf;
	out->relay_from_peer = meta->peer != NULL && v->relay_from.n > 0 &&
			       pt_cidr_list_match(&v->relay_from, meta->peer);
}

/* Runs under lua_cpcall; conn_meta stays on the stack below the call, so
 * it is alive when its pointer is cleared afterwards. */
static int ld_event_call(lua_State *L)
{
	struct ld_call *c = lua_touserdata(L, 1);
	const struct policy_conn_meta **slot;
	char where[LUA_IDSIZE + 32];
	struct ld_value *v;
	int status;

	c->rc = PT_OK;
	if (!policy_push_handler(L, LD_EVENT))
		return 0;
	policy_where_defined(L, where, sizeof(where));
	slot = conn_meta_push(L, c->meta);
	lua_pushvalue(L, -2);
	lua_pushstring(L, c->domain);
	lua_pushstring(L, c->listener ? c->listener : "");
	lua_pushvalue(L, -4);
	status = policy_event_pcall(c->p, LD_EVENT, 3, 1);
	*slot = NULL;
	if (status != 0) {
		if (policy_reject_reply(L, -1, c->reply)) {
			c->rc = PT_DECLINED;
			return 0;
		}
		policy_error_text(L, c->error, sizeof(c->error));
		c->rc = PT_ERROR;
		return 0;
	}
	if (lua_isnil(L, -1))
		return 0;
	if ((v = luaL_testudata(L, -1, MT_LD)) == NULL) {
		snprintf(c->error, sizeof(c->error),
			 "%s%s" LD_EVENT " must return kumo." LD_FN "{...} or nil, got %s", where,
			 where[0] ? " " : "", luaL_typename(L, -1));
		c->rc = PT_ERROR;
		return 0;
	}
	ld_take(v, c->meta, c->out);
	return 0;
}

int policy_get_listener_domain(struct policy *p, const char *domain, const char *listener,
			       const struct policy_conn_meta *meta,
			       struct policy_listener_domain *out, struct policy_reply *reply,
			       char *err, size_t err_len)
{
	struct ld_call c = {.p = p,
			    .domain = domain,
			    .listener = listener,
			    .meta = meta,
			    .out = out,
			    .reply = reply};
	int top = lua_gettop(p->L);

	memset(out, 0, sizeof(*out));
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	if (lua_cpcall(p->L, ld_event_call, &c) != 0) {
		snprintf(c.error, sizeof(c.error), LD_EVENT ": %s", lua_tostring(p->L, -1));
		c.rc = PT_ERROR;
	}
	lua_settop(p->L, top);
	if (c.rc == PT_ERROR) {
		memset(out, 0, sizeof(*out));
		if (err != NULL && err_len > 0)
			snprintf(err, err_len, "%s", c.error);
	}
	return c.rc;
}

bool policy_has_listener_domain_handler(struct policy *p)
{
	/* Set by kumo.on (policy.c); handlers are never removed. */
	return p->has_listener_domain;
}

void policy_listener_register(lua_State *L)
{
	static const luaL_Reg conn_meta_methods[] = {
	    {"get_meta", conn_meta_get},
	    {"set_meta", conn_meta_set},
	    {NULL, NULL},
	};

	luaL_newmetatable(L, MT_LD);
	lua_pushcfunction(L, ld_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushliteral(L, "ListenerDomain");
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
	luaL_newmetatable(L, MT_CONN_META);
	lua_newtable(L);
	luaL_setfuncs(L, conn_meta_methods, 0);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, conn_meta_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushliteral(L, "ConnectionMeta");
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
	lua_pushcfunction(L, ld_make);
	lua_setfield(L, -2, LD_FN);
}
