/*
 * policy_dns.c -- the kumo.dns table, and the host syntax checks shared with
 * make_queue_config's mx_list.
 *
 *     kumo.dns.configure_resolver {
 *       name_servers = { '127.0.0.1:5353', { socket_addr = '[::1]:53' } },
 *       options = { timeout = '2s' },
 *     }
 *
 * Init only, as in KumoMTA.  It fills policy_config's dns fields; the shard
 * hands them to the c-ares resolver (net/dns.h), which is why an entry must
 * be an IP address: "a.b.c.d", "a.b.c.d:port", "[ip]", "[ip]:port" or a bare
 * IPv6 address (port 53 when none is given).  Each entry is checked here so
 * a typo is reported with the policy's file:line at load, not as a resolver
 * failure at start.  A second call replaces the first.
 *
 * KumoMTA's other resolver settings are refused by name ("... Petrel does
 * not support yet"): domain and search (Petrel never searches: MX names are
 * absolute), the structured Hickory/Unbound/Test/Aggregate forms, the
 * per-server protocol/bind_addr/trust_negative_responses, and every option
 * except timeout (per query, as KumoMTA's options.timeout).  name_servers is
 * required, as in KumoMTA; leaving out the call keeps /etc/resolv.conf.
 *
 * kumo.dns.lookup_mx asks the shard (policy_set_mx_lookup), which has the
 * resolver: policy/ has none of its own.
 */
#include "policy/policy_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#define DNS_FN		     "dns.configure_resolver"
#define DNS_MAX_NAME_SERVERS 16

static const char *const resolver_keys[] = {"name_servers", "options", NULL};
static const char *const resolver_kumo_only[] = {
    "domain", "search", "Hickory", "HickorySystemConfig", "Unbound", "Test", "Aggregate", NULL,
};
static const char *const options_keys[] = {"timeout", NULL};
/* KumoMTA's resolver options (docs/reference/kumo.dns/resolver_options). */
static const char *const options_kumo_only[] = {
    "attempts",
    "cache_size",
    "case_randomization",
    "edns0",
    "ip_strategy",
    "ndots",
    "negative_max_ttl",
    "negative_min_ttl",
    "num_concurrent_reqs",
    "positive_max_ttl",
    "positive_min_ttl",
    "preserve_intermediates",
    "recursion_desired",
    "server_ordering_strategy",
    "trust_anchor_file",
    "try_tcp_on_error",
    "use_hosts_file",
    "validate",
    NULL,
};
static const char *const server_keys[] = {"socket_addr", NULL};
static const char *const server_kumo_only[] = {
    "protocol",
    "trust_negative_responses",
    "bind_addr",
    NULL,
};

/* --- host syntax ------------------------------------------------------------ */

static bool host_is_ip(const char *s, size_t n)
{
	char buf[INET6_ADDRSTRLEN + 1];
	unsigned char addr[sizeof(struct in6_addr)];

	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

/* RFC 1123 2.1 labels (letters, digits, '-', and '_' as in SRV-style names),
 * an optional trailing dot, at most 253 bytes; the last label not all digits
 * (RFC 3696 2), so "10.0.0.256" is not taken for a name. */
static bool host_is_name(const char *s, size_t n)
{
	size_t label = 0;
	bool all_digits = true;

	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i <= n; i++) {
		char c = i < n ? s[i] : '.';

		if (c == '.') {
			if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-')
				return false;
			if (i == n && all_digits)
				return false;
			label = 0;
			all_digits = true;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
		if (c < '0' || c > '9')
			all_digits = false;
		label++;
	}
	return true;
}

static bool host_port_ok(const char *p)
{
	unsigned long port = 0;
	const char *start = p;

	for (; *p >= '0' && *p <= '9' && p - start < 5; p++)
		port = port * 10 + (unsigned long)(*p - '0');
	return *p == '\0' && p > start && port >= 1 && port <= 65535;
}

int policy_dns_check_host(const char *s, bool names_ok, const char **why)
{
	const char *colon = strchr(s, ':'), *close;
	size_t n;

	if (s[0] == '[') {
		if ((close = strchr(s, ']')) == NULL) {
			*why = "'[' without ']'";
			return PT_ERROR;
		}
		if (!host_is_ip(s + 1, (size_t)(close - s - 1))) {
			*why = "'[...]' must hold an IP address";
			return PT_ERROR;
		}
		if (close[1] != '\0' && (close[1] != ':' || !host_port_ok(close + 2))) {
			*why = "expected ':' and a port from 1 to 65535 after ']'";
			return PT_ERROR;
		}
		return PT_OK;
	}
	if (colon != NULL && strchr(colon + 1, ':') != NULL) {
		/* Two colons or more: a bare IPv6 address, which can't carry a port. */
		if (host_is_ip(s, strlen(s)))
			return PT_OK;
		*why = "not an IPv6 address (write \"[ip]:port\" to give a port)";
		return PT_ERROR;
	}
	n = colon != NULL ? (size_t)(colon - s) : strlen(s);
	if (colon != NULL && !host_port_ok(colon + 1)) {
		*why = "the port must be a number from 1 to 65535";
		return PT_ERROR;
	}
	if (host_is_ip(s, n) || (names_ok && host_is_name(s, n)))
		return PT_OK;
	*why = names_ok ? "not a host name or IP address" : "not an IP address";
	return PT_ERROR;
}

/* --- configure_resolver ----------------------------------------------------- */

/* The address string of name_servers[i] (the value at idx): left on the stack. */
static const char *resolver_server_addr(lua_State *L, int idx, size_t i)
{
	const char *s, *why;
	size_t n;

	if (lua_type(L, idx) == LUA_TTABLE) {
		policy_config_check_keys(L, idx, DNS_FN, "name server", server_keys,
					 server_kumo_only);
		lua_getfield(L, idx, "socket_addr");
		if (lua_isnil(L, -1))
			policy_raise(L, "%s: name_servers[%zu]: 'socket_addr' is required", DNS_FN,
				     i);
		idx = lua_gettop(L);
	}
	if (lua_type(L, idx) != LUA_TSTRING)
		policy_raise(L,
			     "%s: name_servers[%zu] must be a string \"ip:port\" or a table "
			     "{ socket_addr = \"ip:port\" }, got %s",
			     DNS_FN, i, luaL_typename(L, idx));
	s = lua_tolstring(L, idx, &n);
	if (strlen(s) != n || policy_dns_check_host(s, false, &why) != PT_OK)
		policy_raise(L,
			     "%s: name_servers[%zu]: '%s' is not \"ip\", \"ip:port\" or "
			     "\"[ipv6]:port\" (%s)",
			     DNS_FN, i, s, strlen(s) != n ? "contains a NUL byte" : why);
	return s;
}

/*
 * Check every entry first, then copy them all: the copies are made with no
 * Lua call in between, so a raised error never leaves half a list behind.
 */
static void resolver_set_servers(lua_State *L, int idx, struct policy_config *c)
{
	const char *addrs[DNS_MAX_NAME_SERVERS];
	char **list;
	size_t n;
	int top = lua_gettop(L);

	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L, "%s: 'name_servers' must be a list, got %s", DNS_FN,
			     luaL_typename(L, idx));
	n = lua_objlen(L, idx);
	if (n == 0)
		policy_raise(L, "%s: 'name_servers' must list at least one server", DNS_FN);
	if (n > DNS_MAX_NAME_SERVERS)
		policy_raise(L, "%s: 'name_servers' lists %zu servers; at most %d are allowed",
			     DNS_FN, n, DNS_MAX_NAME_SERVERS);
	/* Each checked string stays on the stack until it is copied. */
	luaL_checkstack(L, 2 * DNS_MAX_NAME_SERVERS + 8, DNS_FN);
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, idx, (int)i);
		addrs[i - 1] = resolver_server_addr(L, lua_gettop(L), i);
	}
	if ((list = calloc(n, sizeof(*list))) == NULL)
		goto nomem;
	for (size_t i = 0; i < n; i++)
		if ((list[i] = strdup(addrs[i])) == NULL) {
			while (i-- > 0)
				free(list[i]);
			free(list);
			goto nomem;
		}
	lua_settop(L, top);
	for (size_t i = 0; i < c->n_dns_name_servers; i++)
		free(c->dns_name_servers[i]);
	free(c->dns_name_servers);
	c->dns_name_servers = list;
	c->n_dns_name_servers = n;
	return;
nomem:
	policy_raise(L, "%s: out of memory", DNS_FN);
}

static uint64_t resolver_timeout(lua_State *L, int idx)
{
	uint64_t ms = 0;

	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L, "%s: 'options' must be a table, got %s", DNS_FN,
			     luaL_typename(L, idx));
	policy_config_check_keys(L, idx, DNS_FN, "resolver", options_keys, options_kumo_only);
	lua_getfield(L, idx, "timeout");
	if (!lua_isnil(L, -1))
		ms = policy_config_check_timeout(L, lua_gettop(L), DNS_FN, "timeout");
	lua_pop(L, 1);
	return ms;
}

static int dns_configure_resolver(lua_State *L)
{
	struct policy *p = policy_from_upvalue(L);
	uint64_t timeout_ms = 0;

	policy_check_init(L, p, DNS_FN);
	if (lua_type(L, 1) != LUA_TTABLE)
		return policy_raise(L, "%s: expected a table, got %s", DNS_FN, luaL_typename(L, 1));
	lua_settop(L, 1);
	policy_config_check_keys(L, 1, DNS_FN, "configure_resolver", resolver_keys,
				 resolver_kumo_only);
	lua_getfield(L, 1, "options");
	if (!lua_isnil(L, 2))
		timeout_ms = resolver_timeout(L, 2);
	lua_getfield(L, 1, "name_servers");
	if (lua_isnil(L, 3))
		return policy_raise(L, "%s: 'name_servers' is required", DNS_FN);
	resolver_set_servers(L, 3, &p->config);
	p->config.dns_timeout_ms = timeout_ms;
	return 0;
}

/* Push KumoMTA's MailExchanger fields for one answer, or, when raise is
 * false, { error = ... } for a failure. */
static void mx_push(lua_State *L, const char *domain, const struct policy_mx_answer *a,
		    bool raise)
{
	if (a->status == POLICY_MX_FAIL) {
		if (raise)
			policy_raise(L, "kumo.dns.lookup_mx: %s: %s", domain,
				     a->error ? a->error : "lookup failed");
		lua_createtable(L, 0, 1);
		lua_pushstring(L, a->error ? a->error : "lookup failed");
		lua_setfield(L, -2, "error");
		return;
	}
	lua_createtable(L, 0, 3);
	lua_pushstring(L, a->status == POLICY_MX_NULL ? "" : a->site);
	lua_setfield(L, -2, "site_name");
	lua_pushstring(L, domain);
	lua_setfield(L, -2, "domain_name");
	lua_pushboolean(L, a->status == POLICY_MX_OK && !a->implicit_mx);
	lua_setfield(L, -2, "is_mx");
}

/*
 * kumo.dns.lookup_mx(domain) -> { site_name, domain_name, is_mx }, as
 * KumoMTA's; a null MX has site_name "", a failed lookup raises.  Petrel
 * also takes a list of domains, resolved in parallel, and returns a table
 * keyed by domain whose failed entries are { error = ... }.  The answers
 * come from the shard (policy_set_mx_lookup), which blocks while it waits:
 * meant for a helper's one-time set-up, not for every message.
 */
static int dns_lookup_mx(lua_State *L)
{
	struct policy *p = policy_from_upvalue(L);
	const char **domains;
	struct policy_mx_answer *answers;
	bool list = lua_type(L, 1) == LUA_TTABLE;
	size_t n;

	if (!list && lua_type(L, 1) != LUA_TSTRING)
		return policy_raise(L, "kumo.dns.lookup_mx: expected a domain name or a list of "
				       "them, got %s",
				    luaL_typename(L, 1));
	if (p->mx_lookup == NULL)
		return policy_raise(L, "kumo.dns.lookup_mx: no resolver while the policy loads; "
				       "call it from an event handler");
	n = list ? lua_objlen(L, 1) : 1;
	domains = lua_newuserdata(L, (n ? n : 1) * sizeof(*domains));
	answers = lua_newuserdata(L, (n ? n : 1) * sizeof(*answers));
	memset(answers, 0, (n ? n : 1) * sizeof(*answers));
	for (size_t i = 0; i < n; i++) {
		if (list) {
			lua_rawgeti(L, 1, (int)i + 1);
			if (lua_type(L, -1) != LUA_TSTRING)
				return policy_raise(L, "kumo.dns.lookup_mx: item %zu must be a "
						       "string, got %s",
						    i + 1, luaL_typename(L, -1));
			domains[i] = lua_tostring(L, -1); /* kept alive by the list */
			lua_pop(L, 1);
		} else {
			domains[i] = lua_tostring(L, 1);
		}
	}
	p->mx_lookup(p->mx_ctx, domains, n, answers);
	/* Copy into Lua first, then free: a raise must not leak the answers. */
	lua_createtable(L, 0, (int)n);
	for (size_t i = 0; i < n; i++) {
		lua_pushstring(L, domains[i]);
		mx_push(L, domains[i], &answers[i], false);
		lua_rawset(L, -3);
	}
	for (size_t i = 0; i < n; i++) {
		free(answers[i].site);
		free(answers[i].error);
	}
	if (list)
		return 1;
	lua_pushstring(L, domains[0]);
	lua_rawget(L, -2);
	lua_getfield(L, -1, "error");
	if (!lua_isnil(L, -1))
		return policy_raise(L, "kumo.dns.lookup_mx: %s: %s", domains[0],
				    lua_tostring(L, -1));
	lua_pop(L, 1);
	return 1;
}

static const luaL_Reg dns_functions[] = {
    {"configure_resolver", dns_configure_resolver},
    {"lookup_mx", dns_lookup_mx},
    {NULL, NULL},
};

void policy_dns_register(lua_State *L, struct policy *p)
{
	lua_newtable(L);
	lua_pushlightuserdata(L, p);
	luaL_setfuncs(L, dns_functions, 1);
	lua_setfield(L, -2, "dns");
}
