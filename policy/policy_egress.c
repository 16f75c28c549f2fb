/*
 * policy_egress.c -- kumo.make_egress_path{...} and the
 * get_egress_path_config event: how the path from an egress source to a
 * site (the MX rollup) is shaped and spoken to.
 *
 *     kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
 *       return kumo.make_egress_path {
 *         connection_limit = 10, max_message_rate = '100/s',
 *         enable_tls = 'Required', smtp_port = 2525,
 *       }
 *     end)
 *
 * The value is built and checked the way policy_queue.c builds a queue
 * config (see there): a userdata holding struct policy_egress_path, its
 * metatable hidden, copied out by the event runner.
 *
 * Keys and defaults are KumoMTA's (docs/reference/kumo/make_egress_path and
 * crates/kumo-api-types/src/egress_path.rs): connection_limit 32,
 * max_deliveries_per_connection 1024, max_recipients_per_batch 100,
 * enable_tls "Opportunistic", enable_pipelining true,
 * smtp_port 25, no rate limits, no ehlo_domain (the host name), and the
 * client timeouts connect 60 s, banner 60 s, ehlo 300 s, starttls 5 s,
 * mail_from 300 s, rcpt_to 300 s, data 300 s, data_dot 300 s, rset 5 s,
 * idle 60 s.  The idle default follows KumoMTA's documentation; its source
 * (crates/rfc5321/src/client_types.rs) says 5 s.
 *
 * connection_limit takes a number, or KumoMTA's string form ("1,000",
 * "1_000", "local:20"; "local:" means nothing here, every Petrel limit is
 * local to the machine).  Every other KumoMTA key (DANE, MTA-STS, SMTP AUTH,
 * additional_* throttles, prohibited_hosts, ...) is refused by name, never
 * silently ignored: a policy relying on one must not believe it is in
 * force.  Durations must be longer than zero.  ehlo_domain goes onto the
 * wire, so it may hold no space or control character.
 */
#include "policy/policy_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define EGRESS_FN "make_egress_path"

enum egress_kind {
	EGRESS_LIMIT,	/* unsigned: a number or a KumoMTA limit string */
	EGRESS_COUNT,	/* unsigned, 1..UINT_MAX */
	EGRESS_RATE,	/* struct policy_rate */
	EGRESS_TLS,	/* enum policy_tls */
	EGRESS_BOOL,	/* bool */
	EGRESS_TIMEOUT, /* uint64_t milliseconds */
	EGRESS_EHLO,	/* char * */
	EGRESS_PORT,	/* uint16_t */
};

struct egress_field {
	const char *name;
	enum egress_kind kind;
	size_t offset;
};

#define EF(name, kind)                                                                             \
	{                                                                                          \
#name, kind, offsetof(struct policy_egress_path, name)                             \
	}
#define EF_MS(name, kind)                                                                          \
	{                                                                                          \
#name, kind, offsetof(struct policy_egress_path, name##_ms)                        \
	}

/* In the order of struct policy_egress_path (and of error reports). */
static const struct egress_field egress_fields[] = {
    EF(connection_limit, EGRESS_LIMIT),
    EF(max_message_rate, EGRESS_RATE),
    EF(max_connection_rate, EGRESS_RATE),
    EF(max_deliveries_per_connection, EGRESS_COUNT),
    EF(max_recipients_per_batch, EGRESS_COUNT),
    EF(enable_tls, EGRESS_TLS),
    EF(enable_pipelining, EGRESS_BOOL),
    EF_MS(idle_timeout, EGRESS_TIMEOUT),
    EF(ehlo_domain, EGRESS_EHLO),
    EF(smtp_port, EGRESS_PORT),
    EF_MS(connect_timeout, EGRESS_TIMEOUT),
    EF_MS(banner_timeout, EGRESS_TIMEOUT),
    EF_MS(ehlo_timeout, EGRESS_TIMEOUT),
    EF_MS(starttls_timeout, EGRESS_TIMEOUT),
    EF_MS(mail_from_timeout, EGRESS_TIMEOUT),
    EF_MS(rcpt_to_timeout, EGRESS_TIMEOUT),
    EF_MS(data_timeout, EGRESS_TIMEOUT),
    EF_MS(data_dot_timeout, EGRESS_TIMEOUT),
    EF_MS(rset_timeout, EGRESS_TIMEOUT),
};

static const char *const egress_keys[] = {
    "connection_limit",
    "max_message_rate",
    "max_connection_rate",
    "max_deliveries_per_connection",
    "max_recipients_per_batch",
    "enable_tls",
    "enable_pipelining",
    "idle_timeout",
    "ehlo_domain",
    "smtp_port",
    "connect_timeout",
    "banner_timeout",
    "ehlo_timeout",
    "starttls_timeout",
    "mail_from_timeout",
    "rcpt_to_timeout",
    "data_timeout",
    "data_dot_timeout",
    "rset_timeout",
    NULL,
};
/* Keys with a parser of their own (not a field of egress_fields). */
static const char *const egress_extra_keys[] = {"automation", NULL};
/* One key per field: a key without a field would be accepted and ignored. */
_Static_assert(PT_ARRAY_LEN(egress_keys) == PT_ARRAY_LEN(egress_fields) + 1,
	       "egress_keys and egress_fields differ");

/* KumoMTA's other EgressPathConfig keys (documented ones and struct fields). */
static const char *const egress_kumo_only[] = {
    "max_ready", /* the ready queue holds units, not bodies; a bound comes with issue 5 */
    "additional_connection_limits",
    "additional_message_rate_throttles",
    "additional_source_selection_rates",
    "aggressive_connection_opening",
    "allow_smtp_auth_plain_without_tls",
    "allow_smtp_auth_plain_without_valid_certificate",
    "auth_timeout",
    "consecutive_connection_failures_before_delay",
    "dispatcher_progress_watchdog_timeout",
    "dispatcher_wakeup_strategy",
    "enable_dane",
    "enable_mta_sts",
    "enable_rset",
    "ignore_8bit_checks",
    "ip_lookup_strategy",
    "low_memory_reduction_policy",
    "maintainer_wakeup_strategy",
    "no_memory_reduction_policy",
    "openssl_cipher_list",
    "openssl_cipher_suites",
    "openssl_options",
    "opportunistic_tls_reconnect_on_failed_handshake",
    "prohibited_hosts",
    "provider_name",
    "readyq_pool_name",
    "reconnect_strategy",
    "refresh_interval",
    "refresh_strategy",
    "remember_broken_tls",
    "rustls_cipher_suites",
    "skip_hosts",
    "smtp_auth_plain_password",
    "smtp_auth_plain_username",
    "source_selection_rate",
    "suspended",
    "system_shutdown_timeout",
    "tls_certificate",
    "tls_prefer_openssl",
    "tls_private_key",
    "try_next_host_on_transport_error",
    "use_lmtp",
    NULL,
};

/* Indexed by enum policy_tls. */
static const char *const egress_tls_names[] = {
    "Opportunistic", "OpportunisticInsecure", "Required", "RequiredInsecure", "Disabled",
};

void policy_egress_path_defaults(struct policy_egress_path *out)
{
	*out = (struct policy_egress_path){
	    .connection_limit = 32,
	    .max_deliveries_per_connection = 1024,
	    .max_recipients_per_batch = 100,
	    .enable_tls = POLICY_TLS_OPPORTUNISTIC,
	    .enable_pipelining = true,
	    .idle_timeout_ms = 60 * 1000,
	    .smtp_port = 25,
	    .connect_timeout_ms = 60 * 1000,
	    .banner_timeout_ms = 60 * 1000,
	    .ehlo_timeout_ms = 300 * 1000,
	    .starttls_timeout_ms = 5 * 1000,
	    .mail_from_timeout_ms = 300 * 1000,
	    .rcpt_to_timeout_ms = 300 * 1000,
	    .data_timeout_ms = 300 * 1000,
	    .data_dot_timeout_ms = 300 * 1000,
	    .rset_timeout_ms = 5 * 1000,
	};
}

void policy_egress_path_free(struct policy_egress_path *e)
{
	free(e->ehlo_domain);
	policy_automation_unref(e->automation);
	policy_egress_path_defaults(e);
}

int policy_egress_field_index(const char *name)
{
	for (size_t i = 0; i < PT_ARRAY_LEN(egress_fields); i++)
		if (strcmp(egress_fields[i].name, name) == 0)
			return (int)i;
	return -1;
}

static size_t egress_field_size(enum egress_kind kind)
{
	switch (kind) {
	case EGRESS_LIMIT:
	case EGRESS_COUNT:
		return sizeof(unsigned);
	case EGRESS_RATE:
		return sizeof(struct policy_rate);
	case EGRESS_TLS:
		return sizeof(enum policy_tls);
	case EGRESS_BOOL:
		return sizeof(bool);
	case EGRESS_TIMEOUT:
		return sizeof(uint64_t);
	case EGRESS_PORT:
		return sizeof(uint16_t);
	case EGRESS_EHLO:
		break;
	}
	return 0;
}

void policy_egress_field_copy(struct policy_egress_path *dst, const struct policy_egress_path *src,
			      int field)
{
	const struct egress_field *f = &egress_fields[field];

	if (f->kind == EGRESS_EHLO) {
		char *copy = src->ehlo_domain ? strdup(src->ehlo_domain) : NULL;

		if (src->ehlo_domain && !copy)
			return; /* out of memory: the override is not applied */
		free(dst->ehlo_domain);
		dst->ehlo_domain = copy;
		return;
	}
	memcpy((char *)dst + f->offset, (const char *)src + f->offset, egress_field_size(f->kind));
}

/* --- make_egress_path -------------------------------------------------------- */

/* KumoMTA's LimitSpec string: ["local:"] digits with '_' or ',' separators. */
static bool egress_limit_string(const char *s, uint64_t *out)
{
	uint64_t n = 0;
	bool any = false;

	if (strncmp(s, "local:", 6) == 0)
		s += 6;
	for (; *s != '\0'; s++) {
		if (*s == '_' || *s == ',')
			continue;
		if (*s < '0' || *s > '9')
			return false;
		n = n * 10 + (uint64_t)(*s - '0');
		if (n > UINT_MAX)
			return false;
		any = true;
	}
	*out = n;
	return any && n >= 1;
}

static unsigned egress_check_limit(lua_State *L, int idx, const char *key)
{
	uint64_t n = 0;

	if (lua_type(L, idx) == LUA_TSTRING) {
		if (!egress_limit_string(lua_tostring(L, idx), &n))
			policy_raise(L,
				     "%s: '%s' must be a whole number from 1 to %u, or a string "
				     "such as \"1,000\" or \"local:20\", got '%s'",
				     EGRESS_FN, key, UINT_MAX, lua_tostring(L, idx));
		return (unsigned)n;
	}
	return (unsigned)policy_config_check_count(L, idx, EGRESS_FN, key, UINT_MAX);
}

static enum policy_tls egress_check_tls(lua_State *L, int idx)
{
	const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;

	for (size_t i = 0; s != NULL && i < PT_ARRAY_LEN(egress_tls_names); i++)
		if (strcmp(s, egress_tls_names[i]) == 0)
			return (enum policy_tls)i;
	policy_raise(L,
		     "%s: 'enable_tls' must be one of 'Opportunistic', 'OpportunisticInsecure', "
		     "'Required', 'RequiredInsecure', 'Disabled', got %s%s%s",
		     EGRESS_FN, s ? "'" : "", s ? s : luaL_typename(L, idx), s ? "'" : "");
	return POLICY_TLS_OPPORTUNISTIC;
}

/* A domain or address literal for EHLO (RFC 5321 4.1.1.1): no space or
 * control character, so it can't split the command line. */
char *policy_check_ehlo(lua_State *L, int idx, const char *fn)
{
	char *copy = policy_config_dup_string(L, idx, fn, "ehlo_domain");
	size_t n = strlen(copy);
	bool ok = n > 0 && n <= 255;

	for (size_t i = 0; ok && i < n; i++)
		ok = copy[i] > ' ' && copy[i] < 0x7f;
	if (!ok) {
		free(copy);
		policy_raise(L,
			     "%s: 'ehlo_domain' must be a domain or address literal of 1 to 255 "
			     "printable characters without spaces",
			     fn);
	}
	return copy;
}

static void egress_set_field(lua_State *L, int idx, struct policy_egress_path *e,
			     const struct egress_field *f)
{
	char *base = (char *)e + f->offset;

	switch (f->kind) {
	case EGRESS_LIMIT:
		*(unsigned *)base = egress_check_limit(L, idx, f->name);
		break;
	case EGRESS_COUNT:
		*(unsigned *)base =
		    (unsigned)policy_config_check_count(L, idx, EGRESS_FN, f->name, UINT_MAX);
		break;
	case EGRESS_RATE:
		policy_rate_check(L, idx, EGRESS_FN, f->name, (struct policy_rate *)base);
		break;
	case EGRESS_TLS:
		*(enum policy_tls *)base = egress_check_tls(L, idx);
		break;
	case EGRESS_BOOL:
		*(bool *)base = policy_config_check_bool(L, idx, EGRESS_FN, f->name);
		break;
	case EGRESS_TIMEOUT:
		*(uint64_t *)base = policy_config_check_timeout(L, idx, EGRESS_FN, f->name);
		break;
	case EGRESS_EHLO: {
		char *copy = policy_check_ehlo(L, idx, EGRESS_FN);

		free(*(char **)base);
		*(char **)base = copy;
		break;
	}
	case EGRESS_PORT:
		*(uint16_t *)base =
		    (uint16_t)policy_config_check_count(L, idx, EGRESS_FN, f->name, 65535);
		break;
	}
}

void policy_egress_field_parse(lua_State *L, int idx, struct policy_egress_path *e, int field)
{
	egress_set_field(L, idx, e, &egress_fields[field]);
}

/* Every key must be a field's or an extra key. */
static void egress_check_keys(lua_State *L)
{
	lua_pushnil(L);
	while (lua_next(L, 1) != 0) {
		lua_pop(L, 1);
		if (lua_type(L, -1) == LUA_TSTRING &&
		    policy_config_name_in(egress_extra_keys, lua_tostring(L, -1)))
			continue;
		lua_createtable(L, 0, 1); /* a one-key table for the usual check */
		lua_pushvalue(L, -2);
		lua_pushboolean(L, 1);
		lua_rawset(L, -3);
		policy_config_check_keys(L, lua_gettop(L), EGRESS_FN, "make_egress_path",
					 egress_keys, egress_kumo_only);
		lua_pop(L, 1);
	}
}

static int egress_make(lua_State *L)
{
	struct policy_egress_path *e;

	if (lua_type(L, 1) != LUA_TTABLE)
		return policy_raise(L, "%s: expected a table, got %s", EGRESS_FN,
				    luaL_typename(L, 1));
	lua_settop(L, 1);
	egress_check_keys(L);
	e = lua_newuserdata(L, sizeof(*e));
	policy_egress_path_defaults(e);
	luaL_setmetatable(L, POLICY_MT_EGRESS_PATH);
	for (size_t i = 0; i < PT_ARRAY_LEN(egress_fields); i++) {
		lua_getfield(L, 1, egress_fields[i].name);
		if (!lua_isnil(L, 3))
			egress_set_field(L, 3, e, &egress_fields[i]);
		lua_settop(L, 2);
	}
	lua_getfield(L, 1, "automation");
	if (!lua_isnil(L, 3))
		e->automation = policy_automation_parse(L, 3);
	lua_settop(L, 2);
	return 1;
}

static int egress_gc(lua_State *L)
{
	struct policy_egress_path *e = lua_touserdata(L, 1);

	if (e != NULL)
		policy_egress_path_free(e);
	return 0;
}

static int egress_tostring(lua_State *L)
{
	lua_pushliteral(L, "EgressPathConfig");
	return 1;
}

/* --- get_egress_path_config ----------------------------------------------------- */

static int egress_take(void *out, const void *value)
{
	const struct policy_egress_path *src = value;
	struct policy_egress_path c = *src;

	c.ehlo_domain = NULL;
	if (src->ehlo_domain != NULL && (c.ehlo_domain = strdup(src->ehlo_domain)) == NULL)
		return PT_NOMEM;
	c.automation = policy_automation_ref(src->automation);
	*(struct policy_egress_path *)out = c;
	return PT_OK;
}

static const struct policy_result_kind egress_result = {
    .event = "get_egress_path_config",
    .mt = POLICY_MT_EGRESS_PATH,
    .maker = "kumo.make_egress_path",
    .take = egress_take,
};

int policy_get_egress_path_config(struct policy *p, const char *routing_domain,
				  const char *egress_source, const char *site_name,
				  struct policy_egress_path *out, char *err, size_t err_len)
{
	const char *args[] = {routing_domain, egress_source, site_name};

	policy_egress_path_defaults(out);
	return policy_config_event(p, &egress_result, args, (int)PT_ARRAY_LEN(args), out, err,
				   err_len);
}

void policy_egress_register(lua_State *L)
{
	luaL_newmetatable(L, POLICY_MT_EGRESS_PATH);
	lua_pushcfunction(L, egress_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, egress_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushliteral(L, "EgressPathConfig");
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
	lua_pushcfunction(L, egress_make);
	lua_setfield(L, -2, "make_egress_path");
}
