/*
 * policy_queue.c -- kumo.make_queue_config{...} and the get_queue_config
 * event, which say how a scheduled queue (campaign:tenant@domain) retries,
 * expires and where it delivers:
 *
 *     kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
 *       return kumo.make_queue_config {
 *         retry_interval = '5m', max_retry_interval = '1h', max_age = '2 days',
 *         protocol = { smtp = { mx_list = { 'relay.example.com:2525', '[10.0.0.1]' } } },
 *       }
 *     end)
 *
 * The value.  make_queue_config checks every key at once, as KumoMTA does
 * (it deserialises into a strict struct): a misspelt key or a bad duration
 * is reported at the line that made the value, not later in the shard.  It
 * returns a full userdata holding the parsed struct policy_queue_config
 * (its strings malloc'd, released by __gc), so the event runner only copies
 * C fields and can tell a make_queue_config result from any other value by
 * its metatable.  The metatable is hidden behind __metatable, so Lua code
 * can't forge one onto another object.  A policy may build the value once
 * and return it from every call: the runner copies, never moves.
 *
 * Keys: retry_interval (default 20 minutes; doubled per attempt by the
 * scheduler), max_retry_interval (no cap by default), max_age (7 days),
 * egress_pool (the pool whose sources send the queue's mail, made by
 * get_egress_pool or define_egress_pool; none: KumoMTA's "unspecified"
 * pool, one source with no bind), max_message_rate (how fast units move
 * from the scheduled queue into ready queues: shard_route.c), and
 * protocol: { smtp = { mx_list = {...} } }, { http = {...} } (delivery
 * by HTTP request: policy_queue_http.c) or { amqp = {...} } (publishing to
 * an AMQP broker: policy_queue_amqp.c).  KumoMTA's other keys and
 * protocols (maildir, custom_lua, xfer) are refused by name; maildir and
 * custom_lua with a pointer to protocol.http.  Durations must
 * be longer than zero: a zero retry_interval would retry in a tight loop.
 *
 * mx_list entries are "host", "host:port", "ip", "ip:port", "[ip]",
 * "[ip]:port" or a bare IPv6 address (policy_dns_check_host), kept as
 * written, or KumoMTA's pre-resolved { name = 'mx.example.com', addr =
 * '10.0.0.1:2525' }, kept as its addr (an IP address with an optional
 * port; the name only labels it in KumoMTA).  An empty list means "by MX",
 * as in KumoMTA.
 *
 * Without a handler, or when it returns nil, the queue gets the defaults
 * (KumoMTA's or_default()).
 */
#include "policy/policy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_FN		"make_queue_config"
#define QUEUE_RETRY_INTERVAL_MS (20 * 60 * 1000)
#define QUEUE_MAX_AGE_MS	((uint64_t)7 * 24 * 3600 * 1000)
#define QUEUE_MAX_MX_LIST	64

static const char *const queue_keys[] = {
    "retry_interval", "max_retry_interval", "max_age", "protocol", "egress_pool",
    "max_message_rate", NULL,
};
/* KumoMTA's QueueConfig fields Petrel does not have (crates/kumod/src/queue/config.rs). */
static const char *const queue_kumo_only[] = {
    "reap_interval", "refresh_interval", "refresh_strategy",
    "timerwheel_tick_interval", "strategy", "provider_name", "shrink_policy", NULL,
};
static const char *const protocol_keys[] = {"smtp", "http", "amqp", NULL};
/* KumoMTA's other DeliveryProto forms. */
static const char *const protocol_kumo_only[] = {
    "maildir_path", "dir_mode", "file_mode", "xfer", NULL,
};
/* Refused with a pointer to protocol.http, which covers their usual use. */
static const char *const protocol_use_http[] = {"custom_lua", "maildir", NULL};
static const char *const smtp_keys[] = {"mx_list", NULL};
static const char *const smtp_kumo_only[] = {"treat_mx_list_as_secure", NULL};
static const char *const mx_keys[] = {"name", "addr", NULL};
static const char *const mx_kumo_only[] = {"is_secure", NULL};

void policy_queue_config_defaults(struct policy_queue_config *out)
{
	*out = (struct policy_queue_config){
	    .retry_interval_ms = QUEUE_RETRY_INTERVAL_MS,
	    .max_age_ms = QUEUE_MAX_AGE_MS,
	};
}

void policy_queue_config_free(struct policy_queue_config *q)
{
	for (size_t i = 0; i < q->n_mx_list; i++)
		free(q->mx_list[i]);
	free(q->mx_list);
	free(q->egress_pool);
	policy_queue_http_free(q->http);
	policy_queue_amqp_free(q->amqp);
	policy_queue_config_defaults(q);
}

/* --- helpers of the protocol parsers (policy_queue_http.c, _amqp.c) ---------- */

int policy_queue_dup(char **out, const char *s)
{
	*out = NULL;
	if (s == NULL)
		return PT_OK;
	return (*out = strdup(s)) ? PT_OK : PT_NOMEM;
}

void policy_queue_oom(lua_State *L, const void *p)
{
	if (p == NULL)
		policy_raise(L, "%s: out of memory", QUEUE_FN);
}

char *policy_queue_host_port(lua_State *L, const char *prefix, const char *host, unsigned port)
{
	char *s = NULL;

	if (asprintf(&s, strchr(host, ':') ? "%s[%s]:%u" : "%s%s:%u", prefix, host, port) < 0)
		s = NULL;
	policy_queue_oom(L, s);
	return s;
}

/* --- make_queue_config ------------------------------------------------------ */

/* mx_list[i] (the value at idx) as the string to keep; it stays on the stack. */
static const char *queue_mx_entry(lua_State *L, int idx, size_t i)
{
	bool table = lua_type(L, idx) == LUA_TTABLE;
	const char *s, *why;
	size_t n;

	if (table) {
		policy_config_check_keys(L, idx, QUEUE_FN, "make_queue_config mx_list entry",
					 mx_keys, mx_kumo_only);
		lua_getfield(L, idx, "name");
		if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
			policy_raise(L, "%s: mx_list[%zu].name must be a string, got %s", QUEUE_FN,
				     i, luaL_typename(L, -1));
		lua_pop(L, 1);
		lua_getfield(L, idx, "addr");
		if (lua_isnil(L, -1))
			policy_raise(L, "%s: mx_list[%zu].addr is required", QUEUE_FN, i);
		idx = lua_gettop(L);
	}
	if (lua_type(L, idx) != LUA_TSTRING)
		policy_raise(L, "%s: mx_list[%zu]%s must be a string, got %s", QUEUE_FN, i,
			     table ? ".addr" : "", luaL_typename(L, idx));
	s = lua_tolstring(L, idx, &n);
	if (strlen(s) != n)
		policy_raise(L, "%s: mx_list[%zu] contains a NUL byte", QUEUE_FN, i);
	if (table && policy_dns_check_host(s, false, &why) != PT_OK)
		policy_raise(L,
			     "%s: mx_list[%zu].addr: '%s' is not \"ip\", \"ip:port\" or "
			     "\"[ip]:port\" (%s)",
			     QUEUE_FN, i, s, why);
	if (!table && policy_dns_check_host(s, true, &why) != PT_OK)
		policy_raise(L,
			     "%s: mx_list[%zu]: '%s' is not \"host\", \"host:port\", \"[ip]\" or "
			     "\"[ip]:port\" (%s)",
			     QUEUE_FN, i, s, why);
	return s;
}

/* Entries are copied into q one by one: q (a userdata with __gc) owns each
 * copy as soon as it is made, so a later error leaks nothing. */
static void queue_set_mx_list(lua_State *L, int idx, struct policy_queue_config *q)
{
	size_t n;

	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L, "%s: 'mx_list' must be a list, got %s", QUEUE_FN,
			     luaL_typename(L, idx));
	n = lua_objlen(L, idx);
	if (n > QUEUE_MAX_MX_LIST)
		policy_raise(L, "%s: 'mx_list' has %zu entries; at most %d are allowed", QUEUE_FN,
			     n, QUEUE_MAX_MX_LIST);
	if (n == 0)
		return;
	if ((q->mx_list = calloc(n, sizeof(*q->mx_list))) == NULL)
		policy_raise(L, "%s: out of memory", QUEUE_FN);
	for (size_t i = 1; i <= n; i++) {
		int top = lua_gettop(L);
		const char *s;

		lua_rawgeti(L, idx, (int)i);
		s = queue_mx_entry(L, top + 1, i);
		if ((q->mx_list[i - 1] = strdup(s)) == NULL)
			policy_raise(L, "%s: out of memory", QUEUE_FN);
		q->n_mx_list = i;
		lua_settop(L, top);
	}
}

static void queue_set_protocol(lua_State *L, int idx, struct policy_queue_config *q)
{
	bool smtp, http, amqp;

	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L,
			     "%s: 'protocol' must be a table such as { smtp = { mx_list = {...} } "
			     "}, got %s",
			     QUEUE_FN, luaL_typename(L, idx));
	for (size_t i = 0; protocol_use_http[i]; i++) {
		lua_getfield(L, idx, protocol_use_http[i]);
		if (!lua_isnil(L, -1))
			policy_raise(L,
				     "%s: protocol '%s' is a KumoMTA option Petrel does not "
				     "support; for delivery to an HTTP endpoint use protocol.http",
				     QUEUE_FN, protocol_use_http[i]);
		lua_pop(L, 1);
	}
	policy_config_check_keys(L, idx, QUEUE_FN, "make_queue_config protocol", protocol_keys,
				 protocol_kumo_only);
	lua_getfield(L, idx, "amqp");
	lua_getfield(L, idx, "http");
	lua_getfield(L, idx, "smtp");
	smtp = !lua_isnil(L, -1);
	http = !lua_isnil(L, -2);
	amqp = !lua_isnil(L, -3);
	if (smtp + http + amqp != 1)
		policy_raise(L, "%s: 'protocol' must have %s 'smtp', 'http' or 'amqp' table",
			     QUEUE_FN, smtp + http + amqp ? "only one of" : "an");
	if (http || amqp) {
		if (http)
			policy_queue_http_parse(L, lua_gettop(L) - 1, q);
		else
			policy_queue_amqp_parse(L, lua_gettop(L) - 2, q);
		lua_settop(L, idx);
		return;
	}
	if (lua_type(L, -1) != LUA_TTABLE)
		policy_raise(L, "%s: protocol.smtp must be a table, got %s", QUEUE_FN,
			     luaL_typename(L, -1));
	idx = lua_gettop(L);
	policy_config_check_keys(L, idx, QUEUE_FN, "make_queue_config protocol.smtp", smtp_keys,
				 smtp_kumo_only);
	lua_getfield(L, idx, "mx_list");
	if (!lua_isnil(L, -1))
		queue_set_mx_list(L, lua_gettop(L), q);
	lua_settop(L, idx - 1);
}

/* The pool's name (policy_source.c resolves it when a message is routed). */
static void queue_set_pool(lua_State *L, int idx, struct policy_queue_config *q)
{
	char *copy = policy_config_dup_string(L, idx, QUEUE_FN, "egress_pool");

	if (copy[0] == '\0') {
		free(copy);
		policy_raise(L, "%s: 'egress_pool' must name a pool, got an empty string",
			     QUEUE_FN);
	}
	free(q->egress_pool);
	q->egress_pool = copy;
}

/* Field at idx (never nil) into q; fields in queue_keys order. */
static void queue_set_field(lua_State *L, int idx, const char *key, struct policy_queue_config *q)
{
	if (strcmp(key, "retry_interval") == 0)
		q->retry_interval_ms = policy_config_check_timeout(L, idx, QUEUE_FN, key);
	else if (strcmp(key, "max_retry_interval") == 0)
		q->max_retry_interval_ms = policy_config_check_timeout(L, idx, QUEUE_FN, key);
	else if (strcmp(key, "max_age") == 0)
		q->max_age_ms = policy_config_check_timeout(L, idx, QUEUE_FN, key);
	else if (strcmp(key, "egress_pool") == 0)
		queue_set_pool(L, idx, q);
	else if (strcmp(key, "max_message_rate") == 0)
		policy_rate_check(L, idx, QUEUE_FN, key, &q->max_message_rate);
	else
		queue_set_protocol(L, idx, q);
}

static int queue_make(lua_State *L)
{
	struct policy_queue_config *q;

	if (lua_type(L, 1) != LUA_TTABLE)
		return policy_raise(L, "%s: expected a table, got %s", QUEUE_FN,
				    luaL_typename(L, 1));
	lua_settop(L, 1);
	policy_config_check_keys(L, 1, QUEUE_FN, "make_queue_config", queue_keys, queue_kumo_only);
	q = lua_newuserdata(L, sizeof(*q));
	policy_queue_config_defaults(q);
	luaL_setmetatable(L, POLICY_MT_QUEUE_CONFIG);
	for (size_t i = 0; queue_keys[i] != NULL; i++) {
		lua_getfield(L, 1, queue_keys[i]);
		if (!lua_isnil(L, 3))
			queue_set_field(L, 3, queue_keys[i], q);
		lua_settop(L, 2);
	}
	return 1;
}

static int queue_gc(lua_State *L)
{
	struct policy_queue_config *q = lua_touserdata(L, 1);

	if (q != NULL)
		policy_queue_config_free(q);
	return 0;
}

static int queue_tostring(lua_State *L)
{
	lua_pushliteral(L, "QueueConfig");
	return 1;
}

/* --- get_queue_config ---------------------------------------------------------- */

static int queue_take(void *out, const void *value)
{
	const struct policy_queue_config *src = value;
	struct policy_queue_config c = *src;

	c.egress_pool = NULL;
	c.amqp = NULL; /* policy_queue_http_copy sets c.http */
	c.mx_list = NULL;
	c.n_mx_list = 0;
	if (policy_queue_http_copy(&c.http, src->http) != PT_OK ||
	    policy_queue_amqp_copy(&c.amqp, src->amqp) != PT_OK)
		goto fail;
	if (src->egress_pool != NULL && (c.egress_pool = strdup(src->egress_pool)) == NULL)
		goto fail;
	if (src->n_mx_list > 0) {
		if ((c.mx_list = calloc(src->n_mx_list, sizeof(*c.mx_list))) == NULL)
			goto fail;
		for (; c.n_mx_list < src->n_mx_list; c.n_mx_list++)
			if ((c.mx_list[c.n_mx_list] = strdup(src->mx_list[c.n_mx_list])) == NULL)
				goto fail;
	}
	*(struct policy_queue_config *)out = c;
	return PT_OK;
fail:
	policy_queue_config_free(&c);
	return PT_NOMEM;
}

static const struct policy_result_kind queue_result = {
    .event = "get_queue_config",
    .mt = POLICY_MT_QUEUE_CONFIG,
    .maker = "kumo.make_queue_config",
    .take = queue_take,
};

int policy_get_queue_config(struct policy *p, const char *domain, const char *tenant,
			    const char *campaign, const char *routing_domain,
			    struct policy_queue_config *out, char *err, size_t err_len)
{
	const char *args[] = {domain, tenant, campaign, routing_domain};

	policy_queue_config_defaults(out);
	return policy_config_event(p, &queue_result, args, (int)PT_ARRAY_LEN(args), out, err,
				   err_len);
}

void policy_queue_register(lua_State *L)
{
	luaL_newmetatable(L, POLICY_MT_QUEUE_CONFIG);
	lua_pushcfunction(L, queue_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, queue_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushliteral(L, "QueueConfig");
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
	lua_pushcfunction(L, queue_make);
	lua_setfield(L, -2, "make_queue_config");
}
