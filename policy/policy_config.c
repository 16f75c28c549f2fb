/*
 * policy_config.c -- the init-only calls that build struct policy_config:
 *
 *     start_esmtp_listener{listen, hostname, relay_hosts, banner,
 *         max_message_size, max_recipients_per_message, max_connections,
 *         tls_certificate, tls_private_key, client_timeout, data_timeout}
 *     define_spool{name, path, kind, flush}
 *     configure_local_logs{log_dir, max_segment_duration, max_file_size,
 *         compression_level, per_record, meta, headers}
 *     configure_log_hook{name, per_record, meta, headers}
 *
 * Names and shapes are KumoMTA's (docs/reference/kumo/...), so an init
 * event ports.  Like KumoMTA, which deserialises these tables into strict
 * structs, an unknown key is an error naming the key: a misspelt
 * "relay_host" must not silently leave relaying at its default.  KumoMTA
 * options Petrel does not have yet get a message saying exactly that.
 * `data_timeout` (DATA inactivity) is Petrel's own: KumoMTA covers that
 * phase with client_timeout.
 *
 * Spools.  KumoMTA defines a `data` and a `meta` spool.  Petrel's segment
 * spool stores a message's meta and body in one record, so `data` gives the
 * spool directory and `meta` is accepted and ignored (its path is still
 * checked to be a string), as are `kind` and `flush`: Petrel always syncs
 * before replying 250 (DESIGN.md, message life).
 *
 * Records.  headers (configure_local_logs and configure_log_hook alike)
 * are kept per origin and their union, config.log_headers, is what every
 * record, local or a hook's, captures (docs/ARCHITECTURE.md, Logs).  per_record
 * and meta are checked for shape only and not implemented: records are one
 * shape for the local log and every hook, Reception carries all of the
 * message's meta, delivery records an empty meta, and no templates.
 *
 * Errors are raised as Lua errors; the message handler in policy.c adds the
 * policy's file:line.  A listener is built in p->scratch, not on the C
 * stack, so that whatever a failed call had allocated still has an owner.
 *
 * The key and value checks (policy_config_check_*) are shared with the
 * make_* constructors and kumo.dns.configure_resolver, so every table a
 * policy hands to Petrel is checked the same way.
 *
 * Defaults (KumoMTA's where it has one): hostname gethostname(), relay_hosts
 * {127.0.0.1}, max_message_size 20 MiB, max_recipients_per_message 100,
 * max_connections 32768, client_timeout 60 s, data_timeout 300 s; spool
 * "./var/spool"; no local logs; log segments of max_file_size 1,000,000,000
 * uncompressed bytes, no age limit, compression_level 0 (zstd's default).
 */
#include "policy/policy_int.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LISTENER_MAX_MESSAGE_SIZE  (20u * 1024 * 1024)
#define LISTENER_MAX_RECIPIENTS	   100
#define LISTENER_MAX_CONNECTIONS   32768
#define LISTENER_CLIENT_TIMEOUT_MS (60 * 1000)
#define LISTENER_DATA_TIMEOUT_MS   (300 * 1000)
#define CONFIG_SPOOL_PATH	   "./var/spool"
#define CONFIG_LOG_MAX_FILE_SIZE   1000000000u /* KumoMTA's default */
#define CONFIG_LOG_MAX_LEVEL	   21	       /* KumoMTA documents 1 to 21 */
#define CONFIG_LOG_HOOKS_MAX	   16
#define CONFIG_LOG_HOOK_NAME_MAX   64

enum field_kind { FIELD_STRING, FIELD_CIDRS, FIELD_SIZE, FIELD_UINT, FIELD_DURATION };

struct listener_field {
	const char *name;
	enum field_kind kind;
	size_t offset;
};

#define LF(name, kind)                                                                             \
	{                                                                                          \
#name, kind, offsetof(struct policy_listener, name)                                \
	}

/* In the order errors should be reported when several fields are wrong. */
static const struct listener_field listener_fields[] = {
    LF(listen, FIELD_STRING),
    LF(hostname, FIELD_STRING),
    LF(banner, FIELD_STRING),
    LF(relay_hosts, FIELD_CIDRS),
    LF(max_message_size, FIELD_SIZE),
    LF(max_recipients_per_message, FIELD_UINT),
    LF(max_connections, FIELD_UINT),
    LF(tls_certificate, FIELD_STRING),
    LF(tls_private_key, FIELD_STRING),
    {"client_timeout", FIELD_DURATION, offsetof(struct policy_listener, client_timeout_ms)},
    {"data_timeout", FIELD_DURATION, offsetof(struct policy_listener, data_timeout_ms)},
};

static const char *const listener_keys[] = {
    "listen",	       "hostname",	   "banner",
    "relay_hosts",     "max_message_size", "max_recipients_per_message",
    "max_connections", "tls_certificate",  "tls_private_key",
    "client_timeout",  "data_timeout",	   NULL,
};

/* KumoMTA listener options Petrel does not implement (yet). */
static const char *const listener_kumo_only[] = {
    "allow_xclient",
    "batch_handling",
    "data_buffer_size",
    "data_processing_timeout",
    "deferred_queue",
    "deferred_spool",
    "invalid_line_endings",
    "line_length_hard_limit",
    "max_messages_per_connection",
    "meta",
    "peer",
    "require_proxy_protocol",
    "tls_required_client_ca",
    "trace_headers",
    "via",
    NULL,
};

static const char *const spool_keys[] = {"name", "path", "kind", "flush", NULL};
static const char *const spool_kumo_only[] = {"rocks_params", NULL};

static const char *const logs_keys[] = {
    "log_dir", "max_segment_duration", "max_file_size", "compression_level",
    "per_record", "meta", "headers", NULL,
};
static const char *const logs_kumo_only[] = {
    "back_pressure", "filter_event", NULL,
};
static const char *const log_hook_keys[] = {
    "name", "per_record", "meta", "headers", NULL,
};
static const char *const log_hook_kumo_only[] = {
    "back_pressure", "deferred_spool", "filter_event", NULL,
};

bool policy_config_name_in(const char *const *list, const char *name)
{
	for (; *list != NULL; list++)
		if (strcmp(*list, name) == 0)
			return true;
	return false;
}

void policy_config_check_keys(lua_State *L, int idx, const char *fn, const char *what,
			      const char *const *known, const char *const *kumo_only)
{
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		const char *key;

		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			policy_raise(L, "%s: keys must be strings, got a %s key", fn,
				     luaL_typename(L, -1));
		key = lua_tostring(L, -1);
		if (policy_config_name_in(kumo_only, key))
			policy_raise(L, "%s: '%s' is a KumoMTA option Petrel does not support yet",
				     fn, key);
		if (policy_config_name_in(known, key))
			continue;
		if (what != NULL)
			policy_raise(L, "'%s' is not a %s option", key, what);
		policy_raise(L, "%s: unknown key '%s'", fn, key);
	}
}

/* Every key of the table at idx must be a string in `known`. */
static void config_check_keys(lua_State *L, const char *fn, int idx, const char *const *known,
			      const char *const *kumo_only)
{
	policy_config_check_keys(L, idx, fn, NULL, known, kumo_only);
}

char *policy_config_dup_string(lua_State *L, int idx, const char *fn, const char *key)
{
	size_t n;
	const char *s;
	char *copy;

	if (lua_type(L, idx) != LUA_TSTRING)
		policy_raise(L, "%s: '%s' must be a string, got %s", fn, key,
			     luaL_typename(L, idx));
	s = lua_tolstring(L, idx, &n);
	if (strlen(s) != n)
		policy_raise(L, "%s: '%s' contains a NUL byte", fn, key);
	if ((copy = strdup(s)) == NULL)
		policy_raise(L, "%s: out of memory", fn);
	return copy;
}

static void config_set_string(lua_State *L, int idx, const char *fn, const char *key, char **dst)
{
	char *copy = policy_config_dup_string(L, idx, fn, key);

	free(*dst);
	*dst = copy;
}

uint64_t policy_config_check_count(lua_State *L, int idx, const char *fn, const char *key,
				   uint64_t max)
{
	lua_Number v;

	if (lua_type(L, idx) != LUA_TNUMBER)
		policy_raise(L, "%s: '%s' must be a number, got %s", fn, key,
			     luaL_typename(L, idx));
	v = lua_tonumber(L, idx);
	if (v != floor(v) || v < 1 || v > (lua_Number)max)
		policy_raise(L, "%s: '%s' must be a whole number from 1 to %llu", fn, key,
			     (unsigned long long)max);
	return (uint64_t)v;
}

uint64_t policy_config_check_timeout(lua_State *L, int idx, const char *fn, const char *key)
{
	char what[96];
	uint64_t ms;

	snprintf(what, sizeof(what), "%s: '%s'", fn, key);
	ms = policy_check_duration(L, idx, what);
	if (ms == 0)
		policy_raise(L, "%s must be longer than zero", what);
	return ms;
}

bool policy_config_check_bool(lua_State *L, int idx, const char *fn, const char *key)
{
	if (lua_type(L, idx) != LUA_TBOOLEAN)
		policy_raise(L, "%s: '%s' must be a boolean, got %s", fn, key,
			     luaL_typename(L, idx));
	return lua_toboolean(L, idx);
}

/* Raises unless the value at idx is a list (keys 1..n) of strings. */
static void config_check_string_list(lua_State *L, int idx, const char *fn, const char *key)
{
	size_t n;

	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L, "%s: '%s' must be a list of strings, got %s", fn, key,
			     luaL_typename(L, idx));
	n = lua_objlen(L, idx);
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		bool in_seq = lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) >= 1 &&
			      lua_tonumber(L, -2) <= (lua_Number)n &&
			      lua_tonumber(L, -2) == floor(lua_tonumber(L, -2));

		if (!in_seq)
			policy_raise(L, "%s: '%s' must be a list (keys 1..n)", fn, key);
		if (lua_type(L, -1) != LUA_TSTRING)
			policy_raise(L, "%s: %s[%d] must be a string, got %s", fn, key,
				     (int)lua_tonumber(L, -2), luaL_typename(L, -1));
		lua_pop(L, 1);
	}
}

void policy_config_cidr_list(lua_State *L, int idx, const char *fn, const char *key,
			     struct pt_cidr_list *list)
{
	size_t n;

	config_check_string_list(L, idx, fn, key);
	pt_cidr_list_free(list);
	*list = (struct pt_cidr_list){0};
	n = lua_objlen(L, idx);
	for (size_t i = 1; i <= n; i++) {
		const char *s;
		int rc;

		lua_rawgeti(L, idx, (int)i);
		s = lua_tostring(L, -1);
		rc = pt_cidr_list_add(list, s);
		if (rc == PT_NOMEM)
			policy_raise(L, "%s: out of memory", fn);
		if (rc != PT_OK)
			policy_raise(L, "%s: %s[%zu]: '%s' is not an IP address or CIDR block", fn,
				     key, i, s);
		lua_pop(L, 1);
	}
}

static void listener_set_field(lua_State *L, int idx, struct policy_listener *l,
			       const struct listener_field *f)
{
	const char *fn = "start_esmtp_listener";
	char *base = (char *)l + f->offset;

	switch (f->kind) {
	case FIELD_STRING:
		config_set_string(L, idx, fn, f->name, (char **)base);
		break;
	case FIELD_CIDRS:
		policy_config_cidr_list(L, idx, fn, "relay_hosts", (struct pt_cidr_list *)base);
		break;
	case FIELD_SIZE:
		*(uint64_t *)base =
		    policy_config_check_count(L, idx, fn, f->name, (uint64_t)1 << 53);
		break;
	case FIELD_UINT:
		*(unsigned *)base =
		    (unsigned)policy_config_check_count(L, idx, fn, f->name, UINT_MAX);
		break;
	case FIELD_DURATION:
		*(uint64_t *)base = policy_config_check_timeout(L, idx, fn, f->name);
		break;
	}
}

/* "host:port", "[v6]:port" (KumoMTA also allows the short "0:25"). */
bool policy_config_listen_valid(const char *s)
{
	const char *colon, *p;
	unsigned long port = 0;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close == s + 1 || close[1] != ':')
			return false;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || colon == s || memchr(s, ':', (size_t)(colon - s)) != NULL)
			return false;
	}
	for (p = colon + 1; *p >= '0' && *p <= '9' && p - colon <= 5; p++)
		port = port * 10 + (unsigned long)(*p - '0');
	return *p == '\0' && p > colon + 1 && port >= 1 && port <= 65535;
}

static void listener_defaults(lua_State *L, struct policy_listener *l)
{
	char host[256];

	*l = (struct policy_listener){0};
	l->max_message_size = LISTENER_MAX_MESSAGE_SIZE;
	l->max_recipients_per_message = LISTENER_MAX_RECIPIENTS;
	l->max_connections = LISTENER_MAX_CONNECTIONS;
	l->client_timeout_ms = LISTENER_CLIENT_TIMEOUT_MS;
	l->data_timeout_ms = LISTENER_DATA_TIMEOUT_MS;
	/* POSIX leaves truncation unterminated; force the terminator. */
	if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	l->hostname = strdup(host);
	if (l->hostname == NULL || pt_cidr_list_add(&l->relay_hosts, "127.0.0.1") != PT_OK)
		policy_raise(L, "start_esmtp_listener: out of memory");
}

static int config_start_esmtp_listener(lua_State *L)
{
	struct policy *p = policy_from_upvalue(L);
	struct policy_config *c = &p->config;

	policy_check_init(L, p, "start_esmtp_listener");
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	config_check_keys(L, "start_esmtp_listener", 1, listener_keys, listener_kumo_only);
	if (c->n_listeners == p->cap_listeners) {
		size_t cap = p->cap_listeners ? p->cap_listeners * 2 : 4;
		struct policy_listener *grown = realloc(c->listeners, cap * sizeof(*grown));

		if (grown == NULL)
			return policy_raise(L, "start_esmtp_listener: out of memory");
		c->listeners = grown;
		p->cap_listeners = cap;
	}
	policy_listener_free(&p->scratch);
	listener_defaults(L, &p->scratch);
	for (size_t i = 0; i < PT_ARRAY_LEN(listener_fields); i++) {
		lua_getfield(L, 1, listener_fields[i].name);
		if (!lua_isnil(L, -1))
			listener_set_field(L, 2, &p->scratch, &listener_fields[i]);
		lua_settop(L, 1);
	}
	if (p->scratch.listen == NULL)
		return policy_raise(L, "start_esmtp_listener: 'listen' is required");
	if (!policy_config_listen_valid(p->scratch.listen))
		return policy_raise(L,
				    "start_esmtp_listener: 'listen' must be \"host:port\" or "
				    "\"[ipv6]:port\" with a port from 1 to 65535, got '%s'",
				    p->scratch.listen);
	if ((p->scratch.tls_certificate == NULL) != (p->scratch.tls_private_key == NULL))
		return policy_raise(L, "start_esmtp_listener: tls_certificate and "
				       "tls_private_key must be given together");
	c->listeners[c->n_listeners++] = p->scratch;
	p->scratch = (struct policy_listener){0};
	return 0;
}

static int config_define_spool(lua_State *L)
{
	struct policy *p = policy_from_upvalue(L);
	const char *name;
	char *path;

	policy_check_init(L, p, "define_spool");
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	config_check_keys(L, "define_spool", 1, spool_keys, spool_kumo_only);
	lua_getfield(L, 1, "kind");
	if (!lua_isnil(L, 2) &&
	    (lua_type(L, 2) != LUA_TSTRING || (strcmp(lua_tostring(L, 2), "LocalDisk") != 0 &&
					       strcmp(lua_tostring(L, 2), "RocksDB") != 0)))
		return policy_raise(L, "define_spool: 'kind' must be \"LocalDisk\" or \"RocksDB\"");
	lua_getfield(L, 1, "flush");
	if (!lua_isnil(L, 3) && lua_type(L, 3) != LUA_TBOOLEAN)
		return policy_raise(L, "define_spool: 'flush' must be a boolean, got %s",
				    luaL_typename(L, 3));
	lua_getfield(L, 1, "name");
	if (lua_isnil(L, 4))
		return policy_raise(L, "define_spool: 'name' is required");
	if (lua_type(L, 4) != LUA_TSTRING)
		return policy_raise(L, "define_spool: 'name' must be a string, got %s",
				    luaL_typename(L, 4));
	name = lua_tostring(L, 4);
	if (strcmp(name, "data") != 0 && strcmp(name, "meta") != 0)
		return policy_raise(L,
				    "define_spool: unknown spool name '%s' (Petrel has "
				    "'data'; 'meta' is accepted and shares it)",
				    name);
	lua_getfield(L, 1, "path");
	if (lua_isnil(L, 5))
		return policy_raise(L, "define_spool: 'path' is required");
	path = policy_config_dup_string(L, 5, "define_spool", "path");
	if (strcmp(name, "meta") == 0) {
		/* Meta lives in the data spool's records (see the file comment). */
		free(path);
		return 0;
	}
	free(p->config.spool_path);
	p->config.spool_path = path;
	return 0;
}

static void logs_check_per_record(lua_State *L, int idx, const char *fn)
{
	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L, "%s: 'per_record' must be a table, got %s", fn,
			     luaL_typename(L, idx));
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TTABLE)
			policy_raise(L,
				     "%s: 'per_record' maps record type "
				     "names to tables (e.g. Reception = { suffix = '_recv' })",
				     fn);
		lua_pop(L, 1);
	}
}

static void logs_free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* c->log_headers again: the local names, then the hooks', each once. */
static void logs_union_headers(lua_State *L, const char *fn, struct policy_config *c)
{
	size_t n_all = c->n_log_local_headers + c->n_log_hook_headers;
	char **all;

	/* Emptied first: a raise must not leave pointers to freed names. */
	free(c->log_headers);
	c->log_headers = NULL;
	c->n_log_headers = 0;
	if (n_all == 0)
		return;
	if ((all = calloc(n_all, sizeof(*all))) == NULL)
		policy_raise(L, "%s: out of memory", fn);
	c->log_headers = all;
	for (size_t i = 0; i < n_all; i++) {
		char *name = i < c->n_log_local_headers
				 ? c->log_local_headers[i]
				 : c->log_hook_headers[i - c->n_log_local_headers];
		bool have = false;

		for (size_t k = 0; k < c->n_log_headers && !have; k++)
			have = strcasecmp(all[k], name) == 0;
		if (!have)
			all[c->n_log_headers++] = name;
	}
}

/* headers = {...} at idx, checked whole, then appended to *names (owned
 * there even if we raise).  A '*' may only end a name ("X-*"). */
static void logs_add_headers(lua_State *L, int idx, const char *fn, char ***names, size_t *n_names)
{
	size_t n = lua_objlen(L, idx);
	char **grown;

	for (size_t i = 1; i <= n; i++) {
		const char *name, *star;

		lua_rawgeti(L, idx, (int)i);
		name = lua_tostring(L, -1);
		star = strchr(name, '*');
		if (name[0] == '\0' || (star && star[1] != '\0') || strpbrk(name, ": \t\r\n"))
			policy_raise(L,
				     "%s: headers[%zu] '%s' is not a header name (a '*' may only "
				     "end one, as in 'X-*')",
				     fn, i, name);
		lua_pop(L, 1);
	}
	if ((grown = realloc(*names, (*n_names + n + 1) * sizeof(*grown))) == NULL)
		policy_raise(L, "%s: out of memory", fn);
	*names = grown;
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, idx, (int)i);
		if ((grown[*n_names] = strdup(lua_tostring(L, -1))) == NULL)
			policy_raise(L, "%s: out of memory", fn);
		(*n_names)++;
		lua_pop(L, 1);
	}
}

/* The options a log set and a log hook share (KumoMTA's): per_record, meta
 * and headers of the table at 1, checked (see the file comment). */
static void logs_check_record_options(lua_State *L, const char *fn)
{
	static const char *const keys[] = {"per_record", "meta", "headers"};

	for (int i = 0; i < 3; i++) {
		lua_getfield(L, 1, keys[i]);
		if (i == 0 && !lua_isnil(L, -1))
			logs_check_per_record(L, lua_gettop(L), fn);
		else if (!lua_isnil(L, -1))
			config_check_string_list(L, lua_gettop(L), fn, keys[i]);
		lua_pop(L, 1);
	}
}

/* The call's headers (table at 1, shape checked) added to *names, the
 * names of the local log or of the hooks, and the union made again; last
 * in a call, so a call that fails adds none. */
static void logs_take_headers(lua_State *L, const char *fn, struct policy_config *c, char ***names,
			      size_t *n_names)
{
	lua_getfield(L, 1, "headers");
	if (!lua_isnil(L, -1))
		logs_add_headers(L, lua_gettop(L), fn, names, n_names);
	lua_pop(L, 1);
	logs_union_headers(L, fn, c);
}

/* compression_level: 0 (zstd's default, 3) or 1 to 21, as KumoMTA documents. */
static int logs_check_level(lua_State *L, int idx)
{
	lua_Number v;

	if (lua_type(L, idx) != LUA_TNUMBER)
		policy_raise(L,
			     "configure_local_logs: 'compression_level' must be a number, got %s",
			     luaL_typename(L, idx));
	v = lua_tonumber(L, idx);
	if (v != floor(v) || v < 0 || v > CONFIG_LOG_MAX_LEVEL)
		policy_raise(L,
			     "configure_local_logs: 'compression_level' must be a whole number "
			     "from 0 (zstd's default) to %d",
			     CONFIG_LOG_MAX_LEVEL);
	return (int)v;
}

static int config_configure_local_logs(lua_State *L)
{
	struct policy *p = policy_from_upvalue(L);
	const char *fn = "configure_local_logs";

	policy_check_init(L, p, fn);
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	config_check_keys(L, fn, 1, logs_keys, logs_kumo_only);
	/* A second call describes the whole log set again (Petrel keeps one). */
	p->config.log_max_file_size = CONFIG_LOG_MAX_FILE_SIZE;
	p->config.log_max_segment_duration_ms = 0;
	p->config.log_compression_level = 0;
	lua_getfield(L, 1, "max_segment_duration");
	if (!lua_isnil(L, 2))
		p->config.log_max_segment_duration_ms =
		    policy_config_check_timeout(L, 2, fn, "max_segment_duration");
	logs_check_record_options(L, fn);
	lua_getfield(L, 1, "log_dir");
	if (lua_isnil(L, 3))
		return policy_raise(L, "configure_local_logs: 'log_dir' is required");
	config_set_string(L, 3, fn, "log_dir", &p->config.log_dir);
	lua_getfield(L, 1, "max_file_size");
	if (!lua_isnil(L, 4))
		p->config.log_max_file_size =
		    policy_config_check_count(L, 4, fn, "max_file_size", (uint64_t)1 << 53);
	lua_getfield(L, 1, "compression_level");
	if (!lua_isnil(L, 5))
		p->config.log_compression_level = logs_check_level(L, 5);
	/* The second call's names replace the first's (hooks' stay). */
	logs_free_names(p->config.log_local_headers, p->config.n_log_local_headers);
	p->config.log_local_headers = NULL;
	p->config.n_log_local_headers = 0;
	logs_union_headers(L, fn, &p->config); /* no pointer to the freed names */
	logs_take_headers(L, fn, &p->config, &p->config.log_local_headers,
			  &p->config.n_log_local_headers);
	return 0;
}

/* A hook name: it becomes the domain NAME.log_hook, so letters, digits,
 * '-', '_' and inner dots, at most CONFIG_LOG_HOOK_NAME_MAX bytes. */
static bool log_hook_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > CONFIG_LOG_HOOK_NAME_MAX || name[0] == '.' || name[n - 1] == '.')
		return false;
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' ||
		      (*c == '.' && c[1] != '.')))
			return false;
	return true;
}

/*
 * configure_log_hook{name, headers, meta, per_record}: one more hook every
 * log record is offered to (shard/shard_loghook.c).  Several hooks, each
 * name once.
 */
static int config_configure_log_hook(lua_State *L)
{
	struct policy *p = policy_from_upvalue(L);
	struct policy_config *c = &p->config;
	const char *fn = "configure_log_hook";
	const char *name;
	char **hooks;

	policy_check_init(L, p, fn);
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	config_check_keys(L, fn, 1, log_hook_keys, log_hook_kumo_only);
	logs_check_record_options(L, fn);
	lua_getfield(L, 1, "name");
	if (lua_isnil(L, 2))
		return policy_raise(L, "configure_log_hook: 'name' is required");
	if (lua_type(L, 2) != LUA_TSTRING)
		return policy_raise(L, "configure_log_hook: 'name' must be a string, got %s",
				    luaL_typename(L, 2));
	name = lua_tostring(L, 2);
	if (!log_hook_name_valid(name))
		return policy_raise(L,
				    "configure_log_hook: 'name' must be 1 to %d letters, digits, "
				    "'-', '_' or inner dots (it names the queue NAME.log_hook), "
				    "got '%s'",
				    CONFIG_LOG_HOOK_NAME_MAX, name);
	for (size_t i = 0; i < c->n_log_hooks; i++)
		if (strcmp(c->log_hooks[i], name) == 0)
			return policy_raise(
			    L, "configure_log_hook: a hook named '%s' is already configured", name);
	if (c->n_log_hooks == CONFIG_LOG_HOOKS_MAX)
		return policy_raise(L, "configure_log_hook: at most %d hooks",
				    CONFIG_LOG_HOOKS_MAX);
	hooks = realloc(c->log_hooks, (c->n_log_hooks + 1) * sizeof(*hooks));
	if (hooks == NULL)
		return policy_raise(L, "configure_log_hook: out of memory");
	c->log_hooks = hooks;
	if ((hooks[c->n_log_hooks] = strdup(name)) == NULL)
		return policy_raise(L, "configure_log_hook: out of memory");
	c->n_log_hooks++;
	logs_take_headers(L, fn, c, &c->log_hook_headers, &c->n_log_hook_headers);
	return 0;
}

static const luaL_Reg config_functions[] = {
    {"start_esmtp_listener", config_start_esmtp_listener},
    {"define_spool", config_define_spool},
    {"configure_local_logs", config_configure_local_logs},
    {"configure_log_hook", config_configure_log_hook},
    {NULL, NULL},
};

void policy_config_register(lua_State *L, struct policy *p)
{
	lua_pushlightuserdata(L, p);
	luaL_setfuncs(L, config_functions, 1);
}

int policy_config_init(struct policy_config *c)
{
	*c = (struct policy_config){0};
	c->spool_path = strdup(CONFIG_SPOOL_PATH);
	c->log_max_file_size = CONFIG_LOG_MAX_FILE_SIZE;
	return c->spool_path != NULL ? PT_OK : PT_NOMEM;
}

void policy_listener_free(struct policy_listener *l)
{
	free(l->listen);
	free(l->hostname);
	free(l->banner);
	free(l->tls_certificate);
	free(l->tls_private_key);
	pt_cidr_list_free(&l->relay_hosts);
	*l = (struct policy_listener){0};
}

void policy_config_free(struct policy *p)
{
	struct policy_config *c = &p->config;

	for (size_t i = 0; i < c->n_listeners; i++)
		policy_listener_free(&c->listeners[i]);
	free(c->listeners);
	for (size_t i = 0; i < c->n_http_listeners; i++)
		policy_http_listener_free(&c->http_listeners[i]);
	free(c->http_listeners);
	free(c->spool_path);
	free(c->log_dir);
	for (size_t i = 0; i < c->n_dns_name_servers; i++)
		free(c->dns_name_servers[i]);
	free(c->dns_name_servers);
	for (size_t i = 0; i < c->n_log_hooks; i++)
		free(c->log_hooks[i]);
	free(c->log_hooks);
	logs_free_names(c->log_local_headers, c->n_log_local_headers);
	logs_free_names(c->log_hook_headers, c->n_log_hook_headers);
	free(c->log_headers);
	policy_listener_free(&p->scratch);
	policy_http_listener_free(&p->http_scratch);
	*c = (struct policy_config){0};
	p->cap_listeners = 0;
}
