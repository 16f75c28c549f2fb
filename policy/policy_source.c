/*
 * policy_source.c -- egress sources and pools: kumo.make_egress_source,
 * kumo.make_egress_pool, the get_egress_source and get_egress_pool events,
 * and the init-time kumo.define_egress_source / kumo.define_egress_pool.
 *
 *     kumo.on('get_egress_source', function(name)
 *       return kumo.make_egress_source {
 *         name = name, source_address = '10.0.0.1', ehlo_domain = 'mta1.example.com',
 *       }
 *     end)
 *     kumo.on('get_egress_pool', function(name)
 *       return kumo.make_egress_pool {
 *         name = name, entries = { { name = 'ip-1', weight = 3 }, { name = 'ip-2' } },
 *       }
 *     end)
 *
 * A source is where outbound connections come from (the address the client
 * binds, its EHLO name); a pool is a weighted set of sources, which a queue
 * names in make_queue_config{egress_pool = ...}.  The shard picks a source
 * of the pool per message by weighted round robin (shard/shard_source.c).
 *
 * Values are built the way policy_queue.c builds a queue config: a userdata
 * with a hidden metatable holding the parsed C struct, every key checked at
 * once.  Unknown keys are errors naming the key; KumoMTA's proxy options
 * (ha_proxy_*, socks5_*) and the suspend_when_* health rules are refused by
 * name, never ignored: a policy relying on a proxy must not send from the
 * wrong address believing it is in force.
 *
 * make_egress_source: name (required), source_address (an IPv4 or IPv6
 * literal, bound before connect; without it the kernel chooses),
 * ehlo_domain (the path's ehlo_domain wins over it, KumoMTA's order),
 * remote_port (replaces the path's smtp_port), ttl (60 s, KumoMTA's
 * default: how long a shard may cache the value).
 *
 * make_egress_pool: name (required), entries (a list of { name = source,
 * weight = n }; weight a whole number from 0 to 2^32 - 1, default 1, and 0
 * keeps a source in the pool without ever choosing it), ttl (60 s).  A
 * source may appear once in a pool (KumoMTA would take a duplicate as a
 * second entry; here it is refused as the mistake it almost always is), at
 * most POOL_MAX_ENTRIES entries.  An empty pool is accepted, as KumoMTA
 * does; delivery through it fails (TransientFailure) saying so.
 *
 * Names are 1 to 255 bytes without control characters: they go into log
 * records and ready queue names.  "unspecified" is the built-in source (no
 * bind, the host name) and the built-in pool holding only it; the events
 * are never asked for them (KumoMTA's rule), and define_* refuses the name.
 *
 * define_egress_source{...} and define_egress_pool{...} take the same
 * tables during init and register the value by name in the registry table
 * POLICY_REG_DEFINED ({sources = {name = value}, pools = {...}}); defining
 * a name twice is an error.  The events win: the defined value is used when
 * there is no handler or the handler returns nil.  A handler that returns a
 * value of another name (asked for 'ip-1', returned 'ip-2') is an error at
 * the handler's definition line, since the name is what logs report.
 */
#include "policy/policy_int.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SOURCE_FN	   "make_egress_source"
#define POOL_FN		   "make_egress_pool"
#define POLICY_REG_DEFINED "petrel.egress_defined"
#define SOURCE_TTL_MS	   (60 * 1000)
#define POOL_MAX_ENTRIES   1024
#define NAME_MAX_LEN	   255

static const char *const source_keys[] = {
    "name", "source_address", "ehlo_domain", "remote_port", "ttl", NULL,
};
/* KumoMTA's other EgressSource fields (crates/kumod/src/egress_source.rs). */
static const char *const source_kumo_only[] = {
    "ha_proxy_server",
    "ha_proxy_source_address",
    "socks5_proxy_server",
    "socks5_proxy_source_address",
    "socks5_proxy_username",
    "socks5_proxy_password",
    "suspend_when_unplumbed",
    "suspend_when_proxy_unhealthy",
    NULL,
};
static const char *const pool_keys[] = {"name", "entries", "ttl", NULL};
static const char *const entry_keys[] = {"name", "weight", NULL};
static const char *const no_keys[] = {NULL};

/* --- values -------------------------------------------------------------------- */

void policy_egress_source_free(struct policy_egress_source *s)
{
	free(s->name);
	free(s->source_address);
	free(s->ehlo_domain);
	*s = (struct policy_egress_source){0};
}

int policy_egress_source_copy(struct policy_egress_source *dst,
			      const struct policy_egress_source *src)
{
	*dst = *src;
	dst->name = dst->source_address = dst->ehlo_domain = NULL;
	if ((src->name && !(dst->name = strdup(src->name))) ||
	    (src->source_address && !(dst->source_address = strdup(src->source_address))) ||
	    (src->ehlo_domain && !(dst->ehlo_domain = strdup(src->ehlo_domain)))) {
		policy_egress_source_free(dst);
		return PT_NOMEM;
	}
	return PT_OK;
}

void policy_egress_pool_free(struct policy_egress_pool *pool)
{
	for (size_t i = 0; i < pool->n_entries; i++)
		free(pool->entries[i].name);
	free(pool->entries);
	free(pool->name);
	*pool = (struct policy_egress_pool){0};
}

static int pool_copy(struct policy_egress_pool *dst, const struct policy_egress_pool *src)
{
	*dst = (struct policy_egress_pool){.ttl_ms = src->ttl_ms};
	if (!(dst->name = strdup(src->name)))
		goto fail;
	if (src->n_entries && !(dst->entries = calloc(src->n_entries, sizeof(*dst->entries))))
		goto fail;
	for (; dst->n_entries < src->n_entries; dst->n_entries++) {
		struct policy_egress_pool_entry *e = &dst->entries[dst->n_entries];

		e->weight = src->entries[dst->n_entries].weight;
		if (!(e->name = strdup(src->entries[dst->n_entries].name)))
			goto fail;
	}
	return PT_OK;
fail:
	policy_egress_pool_free(dst);
	return PT_NOMEM;
}

/* --- make_egress_source ------------------------------------------------------------- */

/* A malloc'd source or pool name from the string at idx. */
static char *check_name(lua_State *L, int idx, const char *fn, const char *what)
{
	char *copy = policy_config_dup_string(L, idx, fn, what);
	size_t n = strlen(copy);
	bool ok = n > 0 && n <= NAME_MAX_LEN;

	for (size_t i = 0; ok && i < n; i++)
		ok = (unsigned char)copy[i] >= ' ' && copy[i] != 0x7f;
	if (!ok) {
		free(copy);
		policy_raise(L, "%s: '%s' must be 1 to %d characters without control characters",
			     fn, what, NAME_MAX_LEN);
	}
	return copy;
}

/* An IP address literal, as KumoMTA's IpAddr: "10.0.0.1" or "2001:db8::1". */
static char *check_address(lua_State *L, int idx, const char *fn)
{
	unsigned char bin[sizeof(struct in6_addr)];
	const char *s;

	if (lua_type(L, idx) != LUA_TSTRING)
		policy_raise(L, "%s: 'source_address' must be a string, got %s", fn,
			     luaL_typename(L, idx));
	s = lua_tostring(L, idx);
	if (inet_pton(AF_INET, s, bin) != 1 && inet_pton(AF_INET6, s, bin) != 1)
		policy_raise(L,
			     "%s: 'source_address' must be an IPv4 or IPv6 address such as "
			     "'10.0.0.1' or '2001:db8::1', got '%s'",
			     fn, s);
	return policy_config_dup_string(L, idx, fn, "source_address");
}

/* Build a source from the table at index 1 and push it. */
static void source_build(lua_State *L, const char *fn)
{
	struct policy_egress_source *src;

	if (lua_type(L, 1) != LUA_TTABLE)
		policy_raise(L, "%s: expected a table, got %s", fn, luaL_typename(L, 1));
	lua_settop(L, 1);
	policy_config_check_keys(L, 1, fn, fn, source_keys, source_kumo_only);
	src = lua_newuserdata(L, sizeof(*src));
	*src = (struct policy_egress_source){.ttl_ms = SOURCE_TTL_MS};
	luaL_setmetatable(L, POLICY_MT_EGRESS_SOURCE);
	/* Each value is stored as soon as it is made: the userdata's __gc owns
	 * it if a later key raises. */
	lua_getfield(L, 1, "name");
	if (lua_isnil(L, 3))
		policy_raise(L, "%s: 'name' is required", fn);
	src->name = check_name(L, 3, fn, "name");
	lua_settop(L, 2);
	lua_getfield(L, 1, "source_address");
	if (!lua_isnil(L, 3))
		src->source_address = check_address(L, 3, fn);
	lua_settop(L, 2);
	lua_getfield(L, 1, "ehlo_domain");
	if (!lua_isnil(L, 3))
		src->ehlo_domain = policy_check_ehlo(L, 3, fn);
	lua_settop(L, 2);
	lua_getfield(L, 1, "remote_port");
	if (!lua_isnil(L, 3))
		src->remote_port =
		    (uint16_t)policy_config_check_count(L, 3, fn, "remote_port", 65535);
	lua_settop(L, 2);
	lua_getfield(L, 1, "ttl");
	if (!lua_isnil(L, 3))
		src->ttl_ms = policy_config_check_timeout(L, 3, fn, "ttl");
	lua_settop(L, 2);
}

static int source_make(lua_State *L)
{
	source_build(L, SOURCE_FN);
	return 1;
}

/* --- make_egress_pool ------------------------------------------------------------------ */

static uint32_t check_weight(lua_State *L, int idx, const char *fn, size_t i)
{
	lua_Number v = lua_tonumber(L, idx);

	if (lua_type(L, idx) != LUA_TNUMBER || v != floor(v) || v < 0 || v > (lua_Number)UINT32_MAX)
		policy_raise(
		    L, "%s: entries[%zu].weight must be a whole number from 0 to %u, got %s", fn, i,
		    UINT32_MAX,
		    lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx) : luaL_typename(L, idx));
	return (uint32_t)v;
}

/* entries[i] (the table at idx) into pool->entries[i - 1]. */
static void pool_set_entry(lua_State *L, int idx, const char *fn, size_t i,
			   struct policy_egress_pool *pool)
{
	struct policy_egress_pool_entry *e = &pool->entries[i - 1];
	char what[48];

	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(
		    L,
		    "%s: entries[%zu] must be a table such as { name = 'ip-1', weight = 2 }, "
		    "got %s",
		    fn, i, luaL_typename(L, idx));
	policy_config_check_keys(L, idx, fn, "make_egress_pool entry", entry_keys, no_keys);
	lua_getfield(L, idx, "name");
	if (lua_isnil(L, -1))
		policy_raise(L, "%s: entries[%zu].name is required", fn, i);
	snprintf(what, sizeof(what), "entries[%zu].name", i);
	e->name = check_name(L, lua_gettop(L), fn, what);
	e->weight = 1;
	pool->n_entries = i;
	for (size_t j = 0; j + 1 < i; j++)
		if (strcmp(pool->entries[j].name, e->name) == 0)
			policy_raise(L,
				     "%s: entries[%zu]: source '%s' is already in the pool "
				     "(entries[%zu])",
				     fn, i, e->name, j + 1);
	lua_getfield(L, idx, "weight");
	if (!lua_isnil(L, -1))
		e->weight = check_weight(L, lua_gettop(L), fn, i);
}

static void pool_set_entries(lua_State *L, int idx, const char *fn, struct policy_egress_pool *pool)
{
	size_t n;

	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L,
			     "%s: 'entries' must be a list of { name = ..., weight = ... }, got %s",
			     fn, luaL_typename(L, idx));
	n = lua_objlen(L, idx);
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_Number k = lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : 0;

		if (k < 1 || k > (lua_Number)n || k != floor(k))
			policy_raise(L, "%s: 'entries' must be a list (keys 1..n)", fn);
		lua_pop(L, 1);
	}
	if (n > POOL_MAX_ENTRIES)
		policy_raise(L, "%s: 'entries' has %zu sources; at most %d are allowed", fn, n,
			     POOL_MAX_ENTRIES);
	if (n == 0)
		return;
	if (!(pool->entries = calloc(n, sizeof(*pool->entries))))
		policy_raise(L, "%s: out of memory", fn);
	for (size_t i = 1; i <= n; i++) {
		int top = lua_gettop(L);

		lua_rawgeti(L, idx, (int)i);
		pool_set_entry(L, top + 1, fn, i, pool);
		lua_settop(L, top);
	}
}

static void pool_build(lua_State *L, const char *fn)
{
	struct policy_egress_pool *pool;

	if (lua_type(L, 1) != LUA_TTABLE)
		policy_raise(L, "%s: expected a table, got %s", fn, luaL_typename(L, 1));
	lua_settop(L, 1);
	policy_config_check_keys(L, 1, fn, fn, pool_keys, no_keys);
	pool = lua_newuserdata(L, sizeof(*pool));
	*pool = (struct policy_egress_pool){.ttl_ms = SOURCE_TTL_MS};
	luaL_setmetatable(L, POLICY_MT_EGRESS_POOL);
	lua_getfield(L, 1, "name");
	if (lua_isnil(L, 3))
		policy_raise(L, "%s: 'name' is required", fn);
	pool->name = check_name(L, 3, fn, "name");
	lua_settop(L, 2);
	lua_getfield(L, 1, "entries");
	if (!lua_isnil(L, 3))
		pool_set_entries(L, 3, fn, pool);
	lua_settop(L, 2);
	lua_getfield(L, 1, "ttl");
	if (!lua_isnil(L, 3))
		pool->ttl_ms = policy_config_check_timeout(L, 3, fn, "ttl");
	lua_settop(L, 2);
}

static int pool_make(lua_State *L)
{
	pool_build(L, POOL_FN);
	return 1;
}

/* --- define_egress_source, define_egress_pool --------------------------------------- */

/* Register the value at the top under its name in defined[table]. */
static void define_value(lua_State *L, const char *fn, const char *table, const char *what,
			 const char *name)
{
	if (strcmp(name, POLICY_SOURCE_UNSPECIFIED) == 0)
		policy_raise(L,
			     "%s: '%s' is the built-in %s (no bind, the host name); choose "
			     "another name",
			     fn, name, what);
	lua_getfield(L, LUA_REGISTRYINDEX, POLICY_REG_DEFINED);
	lua_getfield(L, -1, table);
	lua_getfield(L, -1, name);
	if (!lua_isnil(L, -1))
		policy_raise(L, "%s: %s '%s' is already defined", fn, what, name);
	lua_pop(L, 1);
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, name);
	lua_pop(L, 2);
}

static int source_define(lua_State *L)
{
	const char *fn = "define_egress_source";
	struct policy_egress_source *src;

	policy_check_init(L, policy_from_upvalue(L), fn);
	source_build(L, fn);
	src = lua_touserdata(L, -1);
	define_value(L, fn, "sources", "source", src->name);
	return 0;
}

static int pool_define(lua_State *L)
{
	const char *fn = "define_egress_pool";
	struct policy_egress_pool *pool;

	policy_check_init(L, policy_from_upvalue(L), fn);
	pool_build(L, fn);
	pool = lua_touserdata(L, -1);
	define_value(L, fn, "pools", "pool", pool->name);
	return 0;
}

/* --- the events ------------------------------------------------------------------------ */

/* How one kind (source or pool) is asked for, copied and named. */
struct egress_kind {
	struct policy_result_kind result;
	const char *what;    /* "egress source" */
	const char *table;   /* in POLICY_REG_DEFINED */
	const char *definer; /* "define_egress_source" */
	int (*copy)(void *out, const void *value);
	const char *(*name_of)(const void *value);
	void (*release)(void *value);
};

/* What the event runner's take fills: the caller's struct, and whether it did. */
struct egress_found {
	const struct egress_kind *kind;
	void *out;
	bool found;
};

static int egress_take(void *out, const void *value)
{
	struct egress_found *f = out;
	int rc = f->kind->copy(f->out, value);

	f->found = rc == PT_OK;
	return rc;
}

static int source_copy_any(void *out, const void *value)
{
	return policy_egress_source_copy(out, value);
}

static const char *source_name_of(const void *value)
{
	return ((const struct policy_egress_source *)value)->name;
}

static void source_release(void *value)
{
	policy_egress_source_free(value);
}

static int pool_copy_any(void *out, const void *value)
{
	return pool_copy(out, value);
}

static const char *pool_name_of(const void *value)
{
	return ((const struct policy_egress_pool *)value)->name;
}

static void pool_release(void *value)
{
	policy_egress_pool_free(value);
}

static const struct egress_kind source_kind = {
    .result = {.event = "get_egress_source",
	       .mt = POLICY_MT_EGRESS_SOURCE,
	       .maker = "kumo.make_egress_source",
	       .take = egress_take},
    .what = "egress source",
    .table = "sources",
    .definer = "define_egress_source",
    .copy = source_copy_any,
    .name_of = source_name_of,
    .release = source_release,
};

static const struct egress_kind pool_kind = {
    .result = {.event = "get_egress_pool",
	       .mt = POLICY_MT_EGRESS_POOL,
	       .maker = "kumo.make_egress_pool",
	       .take = egress_take},
    .what = "egress pool",
    .table = "pools",
    .definer = "define_egress_pool",
    .copy = pool_copy_any,
    .name_of = pool_name_of,
    .release = pool_release,
};

/* The defined value of a name, and where the event's handler was defined. */
struct egress_defined {
	struct egress_found *f;
	const char *name;
	bool has_handler;
	char where[LUA_IDSIZE + 32]; /* "file:line:" of the handler, or "" */
	int rc;
};

/* Runs under lua_cpcall. */
static int egress_defined_lookup(lua_State *L)
{
	struct egress_defined *d = lua_touserdata(L, 1);
	const struct egress_kind *k = d->f->kind;
	void *value;

	d->rc = PT_OK;
	d->where[0] = '\0';
	if ((d->has_handler = policy_push_handler(L, k->result.event))) {
		lua_Debug ar;

		lua_getinfo(L, ">S", &ar);
		if (ar.linedefined > 0)
			snprintf(d->where, sizeof(d->where), "%s:%d: ", ar.short_src,
				 ar.linedefined);
	}
	if (d->f->found)
		return 0;
	lua_getfield(L, LUA_REGISTRYINDEX, POLICY_REG_DEFINED);
	lua_getfield(L, -1, k->table);
	lua_getfield(L, -1, d->name);
	if ((value = luaL_testudata(L, -1, k->result.mt)) != NULL) {
		d->rc = k->copy(d->f->out, value);
		d->f->found = d->rc == PT_OK;
	}
	return 0;
}

static int egress_get(struct policy *p, const struct egress_kind *k, const char *name, void *out,
		      char *err, size_t err_len)
{
	struct egress_found f = {.kind = k, .out = out};
	struct egress_defined d = {.f = &f, .name = name};
	const char *args[] = {name};
	int top = lua_gettop(p->L), rc;

	rc = policy_config_event(p, &k->result, args, 1, &f, err, err_len);
	if (rc != PT_OK)
		return rc;
	if (f.found && strcmp(k->name_of(out), name) == 0)
		return PT_OK;
	if (lua_cpcall(p->L, egress_defined_lookup, &d) != 0) {
		snprintf(err, err_len, "%s '%s': %s", k->what, name, lua_tostring(p->L, -1));
		lua_settop(p->L, top);
		k->release(out);
		return PT_ERROR;
	}
	lua_settop(p->L, top);
	if (d.rc != PT_OK) {
		snprintf(err, err_len, "%s '%s': out of memory copying it", k->what, name);
		return PT_ERROR;
	}
	if (f.found && strcmp(k->name_of(out), name) == 0)
		return PT_OK;
	if (f.found) {
		snprintf(err, err_len,
			 "%s%s('%s') returned the %s named '%s'; the names must match", d.where,
			 k->result.event, name, k->what, k->name_of(out));
		k->release(out);
	} else if (d.has_handler) {
		snprintf(err, err_len, "%s%s('%s') returned nil and no %s names it", d.where,
			 k->result.event, name, k->definer);
	} else {
		snprintf(err, err_len, "%s '%s' is not defined: no %s handler and no %s names it",
			 k->what, name, k->result.event, k->definer);
	}
	return PT_ERROR;
}

int policy_get_egress_source(struct policy *p, const char *name, struct policy_egress_source *out,
			     char *err, size_t err_len)
{
	*out = (struct policy_egress_source){0};
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	if (strcmp(name, POLICY_SOURCE_UNSPECIFIED) == 0) {
		out->ttl_ms = SOURCE_TTL_MS;
		if (!(out->name = strdup(name))) {
			snprintf(err, err_len, "egress source '%s': out of memory", name);
			return PT_ERROR;
		}
		return PT_OK;
	}
	return egress_get(p, &source_kind, name, out, err, err_len);
}

int policy_get_egress_pool(struct policy *p, const char *name, struct policy_egress_pool *out,
			   char *err, size_t err_len)
{
	*out = (struct policy_egress_pool){0};
	if (err != NULL && err_len > 0)
		err[0] = '\0';
	if (name == NULL || strcmp(name, POLICY_SOURCE_UNSPECIFIED) == 0) {
		out->ttl_ms = SOURCE_TTL_MS;
		out->name = strdup(POLICY_SOURCE_UNSPECIFIED);
		out->entries = calloc(1, sizeof(*out->entries));
		if (out->entries && (out->entries[0].name = strdup(POLICY_SOURCE_UNSPECIFIED))) {
			out->entries[0].weight = 1;
			out->n_entries = 1;
		}
		if (!out->name || out->n_entries != 1) {
			policy_egress_pool_free(out);
			snprintf(err, err_len, "egress pool 'unspecified': out of memory");
			return PT_ERROR;
		}
		return PT_OK;
	}
	return egress_get(p, &pool_kind, name, out, err, err_len);
}

/* --- registration ------------------------------------------------------------------------ */

static int source_gc(lua_State *L)
{
	struct policy_egress_source *s = lua_touserdata(L, 1);

	if (s != NULL)
		policy_egress_source_free(s);
	return 0;
}

static int pool_gc(lua_State *L)
{
	struct policy_egress_pool *pool = lua_touserdata(L, 1);

	if (pool != NULL)
		policy_egress_pool_free(pool);
	return 0;
}

static int source_tostring(lua_State *L)
{
	lua_pushliteral(L, "EgressSource");
	return 1;
}

static int pool_tostring(lua_State *L)
{
	lua_pushliteral(L, "EgressPool");
	return 1;
}

static void register_metatable(lua_State *L, const char *mt, lua_CFunction gc,
			       lua_CFunction tostring, const char *shown)
{
	luaL_newmetatable(L, mt);
	lua_pushcfunction(L, gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushstring(L, shown);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
}

void policy_source_register(lua_State *L, struct policy *p)
{
	register_metatable(L, POLICY_MT_EGRESS_SOURCE, source_gc, source_tostring, "EgressSource");
	register_metatable(L, POLICY_MT_EGRESS_POOL, pool_gc, pool_tostring, "EgressPool");
	lua_createtable(L, 0, 2);
	lua_newtable(L);
	lua_setfield(L, -2, "sources");
	lua_newtable(L);
	lua_setfield(L, -2, "pools");
	lua_setfield(L, LUA_REGISTRYINDEX, POLICY_REG_DEFINED);

	lua_pushcfunction(L, source_make);
	lua_setfield(L, -2, "make_egress_source");
	lua_pushcfunction(L, pool_make);
	lua_setfield(L, -2, "make_egress_pool");
	lua_pushlightuserdata(L, p);
	lua_pushcclosure(L, source_define, 1);
	lua_setfield(L, -2, "define_egress_source");
	lua_pushlightuserdata(L, p);
	lua_pushcclosure(L, pool_define, 1);
	lua_setfield(L, -2, "define_egress_pool");
}
