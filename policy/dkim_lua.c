/*
 * dkim_lua.c -- KumoMTA's DKIM API for policies:
 *
 *     local signer = kumo.dkim.rsa_sha256_signer {    -- or ed25519_signer
 *       domain = 'example.com', selector = 's1',
 *       headers = { 'From', 'To', 'Subject' },         -- From is required
 *       key = '/path/key.pem',                         -- or { key_data = '...' }
 *       header_canonicalization = 'Relaxed',           -- default; or 'Simple'
 *       body_canonicalization = 'Relaxed',             -- default; or 'Simple'
 *       over_sign = false, expiration = nil (seconds), ttl = 300 (seconds),
 *     }
 *     msg:dkim_sign(signer)                            -- prepends DKIM-Signature
 *
 * Defaults are KumoMTA's (mod-dkim: Canon::Relaxed, over_sign false, ttl
 * 300).  KumoMTA's atps, atpsh, agent_user_identifier, body_length = true
 * and reporting = true are refused there for every key type and here too;
 * vault key sources are not supported.
 *
 * Key cache.  Each Lua state (one per shard) keeps a registry table from
 * "algorithm, file path" (or "algorithm, key data") to a loaded key, so a
 * policy that builds its signer in every smtp_server_message_received call,
 * as KumoMTA's examples do, reads and decodes the PEM once per shard and
 * then only every `ttl` seconds (a rotated key file is picked up within
 * ttl, as KumoMTA's signer cache expires).  A signer holds its key through
 * its environment table, so a reload never frees a key a live signer uses;
 * the old one goes when its last signer is collected.  No lock: a state
 * belongs to one shard thread.
 */
#include "policy/dkim.h"
#include "policy/policy_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DKIM_MT_SIGNER	 "petrel.DkimSigner"
#define DKIM_MT_KEY	 "petrel.DkimKey"
#define DKIM_REG_KEYS	 "petrel.dkim_keys"
#define DKIM_KEY_MAX	 (1u << 20) /* bytes in a key file */
#define DKIM_TTL_DEFAULT 300

struct dkim_lua_key {
	struct dkim_key *key;
	double loaded_at; /* CLOCK_MONOTONIC seconds */
};

struct dkim_lua_signer {
	struct dkim_signer_config cfg; /* points at the owned strings below */
	char *domain;
	char *selector;
	char **headers;
	size_t n_headers;
	struct dkim_key *key; /* owned by the key userdata in the environment */
};

static const char *const signer_keys[] = {
    "domain",
    "selector",
    "headers",
    "key",
    "header_canonicalization",
    "body_canonicalization",
    "over_sign",
    "expiration",
    "ttl",
    "body_length",
    "reporting",
    NULL,
};
static const char *const signer_kumo_only[] = {"atps", "atpsh", "agent_user_identifier", NULL};

static double dkim_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- parameters --------------------------------------------------------- */

/* d= and s= (RFC 6376 3.5): dot-separated labels of letters, digits, '-' and
 * '_' (selectors and DNS names as used in practice). */
static void check_dns_name(lua_State *L, const char *fn, const char *key, const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253 || s[0] == '.' || s[n - 1] == '.' || strstr(s, "..") != NULL)
		policy_raise(L, "%s: '%s' must be a domain name, got '%s'", fn, key, s);
	for (const char *p = s; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
			policy_raise(L, "%s: '%s' must be a domain name, got '%s'", fn, key, s);
}

static char *required_name(lua_State *L, const char *fn, const char *key)
{
	char *s;

	lua_getfield(L, 1, key);
	if (lua_isnil(L, -1))
		policy_raise(L, "%s: '%s' is required", fn, key);
	if (lua_type(L, -1) != LUA_TSTRING)
		policy_raise(L, "%s: '%s' must be a string, got %s", fn, key, luaL_typename(L, -1));
	check_dns_name(L, fn, key, lua_tostring(L, -1));
	s = policy_config_dup_string(L, -1, fn, key);
	lua_pop(L, 1);
	return s;
}

/* A field name (RFC 5322 3.6.8): printable ASCII but ':'. */
static void check_header_name(lua_State *L, const char *fn, const char *s)
{
	if (*s == '\0')
		policy_raise(L, "%s: 'headers' has an empty name", fn);
	for (const char *p = s; *p != '\0'; p++)
		if (*p < 33 || *p > 126 || *p == ':')
			policy_raise(L, "%s: 'headers': '%s' is not a header field name", fn, s);
}

/* headers = { 'From', ... }: copied into s (owned there even if we raise). */
static void parse_headers(lua_State *L, const char *fn, struct dkim_lua_signer *s)
{
	bool from = false;
	size_t n;

	lua_getfield(L, 1, "headers");
	if (lua_isnil(L, -1))
		policy_raise(L, "%s: 'headers' is required", fn);
	if (lua_type(L, -1) != LUA_TTABLE)
		policy_raise(L, "%s: 'headers' must be a list of header names, got %s", fn,
			     luaL_typename(L, -1));
	n = lua_objlen(L, -1);
	if (n == 0 || n > DKIM_MAX_HEADERS)
		policy_raise(L, "%s: 'headers' must list 1 to %d header names", fn,
			     DKIM_MAX_HEADERS);
	s->headers = calloc(n, sizeof(*s->headers));
	if (s->headers == NULL)
		policy_raise(L, "%s: out of memory", fn);
	for (size_t i = 0; i < n; i++) {
		lua_rawgeti(L, -1, (int)i + 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			policy_raise(L, "%s: 'headers' must be a list of strings, item %zu is %s",
				     fn, i + 1, luaL_typename(L, -1));
		s->headers[i] = policy_config_dup_string(L, -1, fn, "headers");
		s->n_headers = i + 1;
		check_header_name(L, fn, s->headers[i]);
		from = from || strcasecmp(s->headers[i], "From") == 0;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (!from)
		policy_raise(L, "%s: 'headers' must include From (RFC 6376 5.4)", fn);
}

static enum dkim_canon parse_canon(lua_State *L, const char *fn, const char *key)
{
	const char *v;

	lua_getfield(L, 1, key);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return DKIM_CANON_RELAXED;
	}
	v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
	lua_pop(L, 1);
	if (strcmp(v, "Relaxed") == 0 || strcmp(v, "relaxed") == 0)
		return DKIM_CANON_RELAXED;
	if (strcmp(v, "Simple") == 0 || strcmp(v, "simple") == 0)
		return DKIM_CANON_SIMPLE;
	return policy_raise(L, "%s: '%s' must be \"Relaxed\" or \"Simple\"", fn, key),
	       DKIM_CANON_RELAXED;
}

/* A boolean option that KumoMTA accepts only as false. */
static void check_false(lua_State *L, const char *fn, const char *key)
{
	lua_getfield(L, 1, key);
	if (!lua_isnil(L, -1) && policy_config_check_bool(L, -1, fn, key))
		policy_raise(L, "%s: '%s' is a KumoMTA option Petrel does not support yet", fn,
			     key);
	lua_pop(L, 1);
}

static uint64_t optional_count(lua_State *L, const char *fn, const char *key, uint64_t dflt)
{
	uint64_t v = dflt;

	lua_getfield(L, 1, key);
	if (!lua_isnil(L, -1))
		v = policy_config_check_count(L, -1, fn, key, UINT32_MAX);
	lua_pop(L, 1);
	return v;
}

/* --- the key cache -------------------------------------------------------- */

static int key_gc(lua_State *L)
{
	struct dkim_lua_key *k = luaL_checkudata(L, 1, DKIM_MT_KEY);

	dkim_key_free(k->key);
	k->key = NULL;
	return 0;
}

/* Read a whole key file (at most DKIM_KEY_MAX bytes) into a malloc'd buffer. */
static unsigned char *read_key_file(const char *path, size_t *len, char *err, size_t err_len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *data;

	if (f == NULL) {
		snprintf(err, err_len, "can't read '%s': %s", path, strerror(errno));
		return NULL;
	}
	data = malloc(DKIM_KEY_MAX);
	if (data == NULL) {
		snprintf(err, err_len, "out of memory reading '%s'", path);
		fclose(f);
		return NULL;
	}
	*len = fread(data, 1, DKIM_KEY_MAX, f);
	if (ferror(f) || *len == DKIM_KEY_MAX) {
		snprintf(err, err_len, "can't read '%s': %s", path,
			 ferror(f) ? strerror(errno) : "file too large for a key");
		free(data);
		data = NULL;
	}
	fclose(f);
	return data;
}

/*
 * Load the key named by the value at stack index vi (a path, or a table
 * with key_data) into the new key userdata k.  Raises with the path or
 * "key_data" in the message.
 */
static void key_load(lua_State *L, const char *fn, enum dkim_algorithm alg, int vi,
		     struct dkim_lua_key *k)
{
	char err[512];
	unsigned char *file = NULL;
	const unsigned char *data;
	const char *path = NULL;
	size_t len = 0;
	int rc;

	if (lua_type(L, vi) == LUA_TSTRING) {
		path = lua_tostring(L, vi);
		data = file = read_key_file(path, &len, err, sizeof(err));
		if (file == NULL)
			policy_raise(L, "%s: key: %s", fn, err);
	} else {
		lua_getfield(L, vi, "key_data");
		data = (const unsigned char *)lua_tolstring(L, -1, &len);
		lua_pop(L, 1); /* still referenced by the key table at vi */
	}
	rc = dkim_key_load(alg, data, len, &k->key, err, sizeof(err));
	if (file != NULL) {
		memset(file, 0, len);
		free(file);
	}
	if (rc != PT_OK)
		policy_raise(L, "%s: key %s%s%s: %s", fn, path ? "'" : "key_data", path ? path : "",
			     path ? "'" : "", err);
	k->loaded_at = dkim_now();
}

/* Check the `key` parameter and push the cache key string for it. */
static void key_cache_name(lua_State *L, const char *fn, enum dkim_algorithm alg, int vi)
{
	luaL_Buffer b;

	if (lua_type(L, vi) == LUA_TTABLE) {
		lua_pushnil(L);
		while (lua_next(L, vi) != 0) {
			lua_pop(L, 1);
			if (lua_type(L, -1) == LUA_TSTRING &&
			    strncmp(lua_tostring(L, -1), "vault_", 6) == 0)
				policy_raise(L, "%s: key: vault key sources are not supported", fn);
			if (lua_type(L, -1) != LUA_TSTRING ||
			    strcmp(lua_tostring(L, -1), "key_data") != 0)
				policy_raise(L, "%s: key: a key table takes only 'key_data'", fn);
		}
		lua_getfield(L, vi, "key_data");
		if (lua_type(L, -1) != LUA_TSTRING)
			policy_raise(L, "%s: key: 'key_data' must be a string", fn);
		lua_pop(L, 1);
	} else if (lua_type(L, vi) != LUA_TSTRING) {
		policy_raise(L, "%s: 'key' must be a file name or { key_data = ... }, got %s", fn,
			     luaL_typename(L, vi));
	}
	luaL_buffinit(L, &b);
	luaL_addstring(&b, alg == DKIM_RSA_SHA256 ? "rsa" : "ed25519");
	luaL_addstring(&b, lua_type(L, vi) == LUA_TSTRING ? "\nfile\n" : "\ndata\n");
	if (lua_type(L, vi) == LUA_TSTRING) {
		lua_pushvalue(L, vi);
	} else {
		lua_getfield(L, vi, "key_data");
	}
	luaL_addvalue(&b);
	luaL_pushresult(&b);
}

/* Push the key userdata for the `key` parameter, from the cache when it is
 * younger than ttl seconds. */
static struct dkim_lua_key *key_get(lua_State *L, const char *fn, enum dkim_algorithm alg,
				    uint64_t ttl)
{
	struct dkim_lua_key *k;
	int vi, name, cache;

	lua_getfield(L, 1, "key");
	vi = lua_gettop(L);
	if (lua_isnil(L, vi))
		policy_raise(L, "%s: 'key' is required", fn);
	key_cache_name(L, fn, alg, vi);
	name = lua_gettop(L);
	lua_getfield(L, LUA_REGISTRYINDEX, DKIM_REG_KEYS);
	cache = lua_gettop(L);
	lua_pushvalue(L, name);
	lua_rawget(L, cache);
	k = lua_touserdata(L, -1);
	if (k != NULL && k->key != NULL && dkim_now() - k->loaded_at < (double)ttl)
		return k;
	lua_pop(L, 1);
	k = lua_newuserdata(L, sizeof(*k));
	memset(k, 0, sizeof(*k));
	luaL_getmetatable(L, DKIM_MT_KEY);
	lua_setmetatable(L, -2);
	key_load(L, fn, alg, vi, k);
	lua_pushvalue(L, name);
	lua_pushvalue(L, -2);
	lua_rawset(L, cache);
	return k;
}

/* --- signers ------------------------------------------------------------ */

static int signer_gc(lua_State *L)
{
	struct dkim_lua_signer *s = luaL_checkudata(L, 1, DKIM_MT_SIGNER);

	free(s->domain);
	free(s->selector);
	for (size_t i = 0; i < s->n_headers; i++)
		free(s->headers[i]);
	free(s->headers);
	memset(s, 0, sizeof(*s));
	return 0;
}

static int signer_tostring(lua_State *L)
{
	struct dkim_lua_signer *s = luaL_checkudata(L, 1, DKIM_MT_SIGNER);

	lua_pushfstring(L, "DkimSigner %s %s._domainkey.%s",
			s->cfg.algorithm == DKIM_RSA_SHA256 ? "rsa-sha256" : "ed25519-sha256",
			s->selector ? s->selector : "?", s->domain ? s->domain : "?");
	return 1;
}

static int signer_new(lua_State *L, enum dkim_algorithm alg, const char *fn)
{
	struct dkim_lua_signer *s;
	struct dkim_lua_key *k;
	uint64_t ttl;

	if (lua_type(L, 1) != LUA_TTABLE)
		return policy_raise(L, "%s: expects a table of parameters, got %s", fn,
				    luaL_typename(L, 1));
	lua_settop(L, 1);
	policy_config_check_keys(L, 1, fn, NULL, signer_keys, signer_kumo_only);
	/* The userdata first, so whatever is copied below has an owner (its
	 * __gc) if a later check raises. */
	s = lua_newuserdata(L, sizeof(*s));
	memset(s, 0, sizeof(*s));
	luaL_getmetatable(L, DKIM_MT_SIGNER);
	lua_setmetatable(L, 2);
	s->domain = required_name(L, fn, "domain");
	s->selector = required_name(L, fn, "selector");
	parse_headers(L, fn, s);
	check_false(L, fn, "body_length");
	check_false(L, fn, "reporting");
	s->cfg.algorithm = alg;
	s->cfg.header_canon = parse_canon(L, fn, "header_canonicalization");
	s->cfg.body_canon = parse_canon(L, fn, "body_canonicalization");
	lua_getfield(L, 1, "over_sign");
	s->cfg.over_sign = !lua_isnil(L, -1) && policy_config_check_bool(L, -1, fn, "over_sign");
	lua_pop(L, 1);
	s->cfg.expiration_s = optional_count(L, fn, "expiration", 0);
	ttl = optional_count(L, fn, "ttl", DKIM_TTL_DEFAULT);
	k = key_get(L, fn, alg, ttl);
	s->key = k->key;
	/* The signer's environment holds the key: it outlives a cache reload. */
	lua_createtable(L, 1, 0);
	lua_insert(L, -2);
	lua_rawseti(L, -2, 1);
	lua_setfenv(L, 2);
	s->cfg.domain = s->domain;
	s->cfg.selector = s->selector;
	s->cfg.headers = (const char *const *)s->headers;
	s->cfg.n_headers = s->n_headers;
	lua_settop(L, 2);
	return 1;
}

static int dkim_rsa_sha256_signer(lua_State *L)
{
	return signer_new(L, DKIM_RSA_SHA256, "kumo.dkim.rsa_sha256_signer");
}

static int dkim_ed25519_signer(lua_State *L)
{
	return signer_new(L, DKIM_ED25519_SHA256, "kumo.dkim.ed25519_signer");
}

int policy_dkim_message_sign(lua_State *L, struct pt_message *m, int idx)
{
	struct dkim_lua_signer *s = luaL_checkudata(L, idx, DKIM_MT_SIGNER);
	char err[512];
	int rc;

	if (s->key == NULL)
		return policy_raise(L, "dkim_sign: the signer was not built");
	rc = dkim_sign_message(&s->cfg, s->key, m, (uint64_t)time(NULL), err, sizeof(err));
	if (rc != PT_OK)
		return policy_raise(L, "dkim_sign: %s", err);
	return 0;
}

static const luaL_Reg dkim_functions[] = {
    {"rsa_sha256_signer", dkim_rsa_sha256_signer},
    {"ed25519_signer", dkim_ed25519_signer},
    {NULL, NULL},
};

void policy_dkim_register(lua_State *L)
{
	luaL_newmetatable(L, DKIM_MT_SIGNER);
	lua_pushcfunction(L, signer_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, signer_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushliteral(L, "DkimSigner");
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
	luaL_newmetatable(L, DKIM_MT_KEY);
	lua_pushcfunction(L, key_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, DKIM_REG_KEYS);

	lua_newtable(L);
	luaL_setfuncs(L, dkim_functions, 0);
	lua_setfield(L, -2, "dkim");
}
