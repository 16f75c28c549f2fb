/*
 * policy_http.c -- the HTTP listener's side of the policy:
 *
 *     kumo.start_http_listener{listen, hostname, use_tls, tls_certificate,
 *         tls_private_key, trusted_hosts, request_body_limit}   (init only)
 *     http_server_validate_auth_basic(user, password) -> boolean
 *
 * (http_message_generated runs like smtp_server_message_received, in
 * policy.c.)
 *
 * Keys and defaults are KumoMTA's HttpListenerParams: listen
 * "127.0.0.1:8000", hostname the host name, use_tls false, trusted_hosts
 * {"127.0.0.1", "::1"}, request_body_limit 2 MiB.  As KumoMTA (serde's
 * deny_unknown_fields), an unknown key is an error naming it.  KumoMTA's
 * certificate and key may also come from HashiCorp Vault or inline data
 * (a KeySource table); Petrel takes a file path only and says so.
 *
 * The listener is built in p->http_scratch, not on the C stack, so that a
 * Lua error half way leaves what was allocated with an owner.
 */
#include "policy/policy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HTTP_FN		    "start_http_listener"
#define HTTP_LISTEN_DEFAULT "127.0.0.1:8000"
#define HTTP_BODY_LIMIT	    (2u * 1024 * 1024)
#define EVENT_AUTH_BASIC    "http_server_validate_auth_basic"

static const char *const http_keys[] = {
    "listen",	     "hostname",	   "use_tls", "tls_certificate", "tls_private_key",
    "trusted_hosts", "request_body_limit", NULL,
};
/* KumoMTA's HttpListenerParams has no key Petrel lacks (tls_* tables aside). */
static const char *const http_kumo_only[] = {NULL};

void policy_http_listener_free(struct policy_http_listener *l)
{
	free(l->listen);
	free(l->hostname);
	free(l->tls_certificate);
	free(l->tls_private_key);
	pt_cidr_list_free(&l->trusted_hosts);
	*l = (struct policy_http_listener){0};
}

static void http_defaults(lua_State *L, struct policy_http_listener *l)
{
	char host[256];

	*l = (struct policy_http_listener){0};
	l->request_body_limit = HTTP_BODY_LIMIT;
	if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	l->hostname = strdup(host);
	l->listen = strdup(HTTP_LISTEN_DEFAULT);
	if (l->hostname == NULL || l->listen == NULL ||
	    pt_cidr_list_add(&l->trusted_hosts, "127.0.0.1") != PT_OK ||
	    pt_cidr_list_add(&l->trusted_hosts, "::1") != PT_OK)
		policy_raise(L, HTTP_FN ": out of memory");
}

/* A string field at idx into *dst (replacing it). */
static void http_string(lua_State *L, int idx, const char *key, char **dst)
{
	char *copy;

	if (lua_type(L, idx) == LUA_TTABLE &&
	    (strcmp(key, "tls_certificate") == 0 || strcmp(key, "tls_private_key") == 0))
		policy_raise(L,
			     HTTP_FN ": '%s' as a table (KumoMTA's key_data or Vault source) is "
				     "not supported yet by Petrel: give a file path",
			     key);
	copy = policy_config_dup_string(L, idx, HTTP_FN, key);
	free(*dst);
	*dst = copy;
}

static void http_field(lua_State *L, int idx, const char *key, struct policy_http_listener *l)
{
	if (strcmp(key, "listen") == 0)
		http_string(L, idx, key, &l->listen);
	else if (strcmp(key, "hostname") == 0)
		http_string(L, idx, key, &l->hostname);
	else if (strcmp(key, "tls_certificate") == 0)
		http_string(L, idx, key, &l->tls_certificate);
	else if (strcmp(key, "tls_private_key") == 0)
		http_string(L, idx, key, &l->tls_private_key);
	else if (strcmp(key, "use_tls") == 0)
		l->use_tls = policy_config_check_bool(L, idx, HTTP_FN, key);
	else if (strcmp(key, "trusted_hosts") == 0)
		policy_config_cidr_list(L, idx, HTTP_FN, key, &l->trusted_hosts);
	else if (strcmp(key, "request_body_limit") == 0)
		l->request_body_limit =
		    policy_config_check_count(L, idx, HTTP_FN, key, (uint64_t)1 << 40);
}

static int http_start_listener(lua_State *L)
{
	struct policy *p = policy_from_upvalue(L);
	struct policy_config *c = &p->config;
	struct policy_http_listener *grown;

	policy_check_init(L, p, HTTP_FN);
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	policy_config_check_keys(L, 1, HTTP_FN, NULL, http_keys, http_kumo_only);
	policy_http_listener_free(&p->http_scratch);
	http_defaults(L, &p->http_scratch);
	for (size_t i = 0; http_keys[i] != NULL; i++) {
		lua_getfield(L, 1, http_keys[i]);
		if (!lua_isnil(L, 2))
			http_field(L, 2, http_keys[i], &p->http_scratch);
		lua_settop(L, 1);
	}
	if (!policy_config_listen_valid(p->http_scratch.listen))
		return policy_raise(L,
				    HTTP_FN ": 'listen' must be \"host:port\" or \"[ipv6]:port\" "
					    "with a port from 1 to 65535, got '%s'",
				    p->http_scratch.listen);
	if ((p->http_scratch.tls_certificate == NULL) != (p->http_scratch.tls_private_key == NULL))
		return policy_raise(L, HTTP_FN ": tls_certificate and tls_private_key must be "
					       "given together");
	if (p->http_scratch.tls_certificate != NULL && !p->http_scratch.use_tls)
		return policy_raise(L, HTTP_FN ": tls_certificate is given but use_tls is not "
					       "true: the listener would serve plain HTTP");
	for (size_t i = 0; i < c->n_http_listeners; i++)
		if (strcmp(c->http_listeners[i].listen, p->http_scratch.listen) == 0)
			return policy_raise(L, HTTP_FN ": '%s' is already an HTTP listener",
					    p->http_scratch.listen);
	grown = realloc(c->http_listeners, (c->n_http_listeners + 1) * sizeof(*grown));
	if (grown == NULL)
		return policy_raise(L, HTTP_FN ": out of memory");
	c->http_listeners = grown;
	c->http_listeners[c->n_http_listeners++] = p->http_scratch;
	p->http_scratch = (struct policy_http_listener){0};
	return 0;
}

void policy_http_register(lua_State *L, struct policy *p)
{
	lua_pushlightuserdata(L, p);
	lua_pushcclosure(L, http_start_listener, 1);
	lua_setfield(L, -2, HTTP_FN);
}

static bool str_eq(const char *a, const char *b)
{
	return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

bool policy_http_listeners_same(const struct policy_config *a, const struct policy_config *b)
{
	if (a->n_http_listeners != b->n_http_listeners)
		return false;
	for (size_t i = 0; i < a->n_http_listeners; i++) {
		const struct policy_http_listener *x = &a->http_listeners[i],
						  *y = &b->http_listeners[i];

		if (!str_eq(x->listen, y->listen) || !str_eq(x->hostname, y->hostname) ||
		    x->use_tls != y->use_tls || !str_eq(x->tls_certificate, y->tls_certificate) ||
		    !str_eq(x->tls_private_key, y->tls_private_key) ||
		    x->request_body_limit != y->request_body_limit ||
		    x->trusted_hosts.n != y->trusted_hosts.n ||
		    (x->trusted_hosts.n > 0 &&
		     memcmp(x->trusted_hosts.items, y->trusted_hosts.items,
			    x->trusted_hosts.n * sizeof(*x->trusted_hosts.items)) != 0))
			return false;
	}
	return true;
}

/* --- http_server_validate_auth_basic ------------------------------------------ */

struct auth_call {
	struct policy *p;
	const char *user, *password;
	bool valid;
	int rc;
	char error[1024];
};

/* Runs under lua_cpcall. */
static int auth_call(lua_State *L)
{
	struct auth_call *a = lua_touserdata(L, 1);
	char where[LUA_IDSIZE + 32];

	a->rc = PT_OK;
	a->valid = false;
	if (!policy_push_handler(L, EVENT_AUTH_BASIC))
		return 0;
	policy_where_defined(L, where, sizeof(where));
	lua_pushstring(L, a->user);
	if (a->password != NULL)
		lua_pushstring(L, a->password);
	else
		lua_pushnil(L);
	if (policy_event_pcall(a->p, EVENT_AUTH_BASIC, 2, 1) != 0) {
		policy_error_text(L, a->error, sizeof(a->error));
		a->rc = PT_ERROR;
		return 0;
	}
	if (!lua_isboolean(L, -1)) {
		snprintf(a->error, sizeof(a->error),
			 "%s%s" EVENT_AUTH_BASIC " must return a "
			 "boolean, got %s",
			 where, where[0] ? " " : "", luaL_typename(L, -1));
		a->rc = PT_ERROR;
		return 0;
	}
	a->valid = lua_toboolean(L, -1);
	return 0;
}

int policy_http_validate_auth_basic(struct policy *p, const char *user, const char *password,
				    bool *valid)
{
	struct auth_call a = {.p = p, .user = user, .password = password};
	int top = lua_gettop(p->L);

	if (lua_cpcall(p->L, auth_call, &a) != 0) {
		snprintf(a.error, sizeof(a.error), "%s", lua_tostring(p->L, -1));
		a.rc = PT_ERROR;
	}
	lua_settop(p->L, top);
	*valid = a.rc == PT_OK && a.valid;
	if (a.rc != PT_OK)
		pt_error("policy error in " EVENT_AUTH_BASIC ": %s", a.error);
	return a.rc;
}
