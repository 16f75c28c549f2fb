/*
 * policy_int.h -- private to policy/: the state behind struct policy and the
 * helpers the policy_*.c files share.  Never include this from another folder.
 */
#ifndef PT_POLICY_INT_H
#define PT_POLICY_INT_H

#include "policy/policy.h"

#include <lauxlib.h>
#include <lua.h>

/* Metatable names (luaL_newmetatable keys in the registry). */
#define POLICY_MT_MESSAGE	"petrel.Message"
#define POLICY_MT_ADDRESS	"petrel.EnvelopeAddress"
#define POLICY_MT_REJECT	"petrel.Reject"
#define POLICY_MT_BUF		"petrel.Buf"
#define POLICY_MT_QUEUE_CONFIG	"petrel.QueueConfig"
#define POLICY_MT_EGRESS_PATH	"petrel.EgressPathConfig"
#define POLICY_MT_EGRESS_SOURCE "petrel.EgressSource"
#define POLICY_MT_EGRESS_POOL	"petrel.EgressPool"

/* Registry field holding the table event name -> handler function. */
#define POLICY_REG_HANDLERS "petrel.handlers"
/* Registry field: event name -> list of its handlers, for the events that
 * take several (policy.c, policy_on). */
#define POLICY_REG_CHAINS "petrel.chains"

struct policy {
	lua_State *L;
	unsigned shard;
	bool in_init; /* the init event is running: config calls are allowed */
	struct policy_config config;
	size_t cap_listeners;
	/*
	 * The listener start_esmtp_listener is filling.  It lives here, not on
	 * the C stack, because a Lua error (bad field) longjmps out of the
	 * parser: whatever was already allocated must have an owner that frees
	 * it (the next call, or policy_free).
	 */
	struct policy_listener scratch;
	struct policy_http_listener http_scratch; /* the same for start_http_listener */
	/* "file:line:" of the handler being run, for errors that have no Lua
	 * frame left to point at (policy.c, policy_where). */
	char fallback_where[LUA_IDSIZE + 32];
	policy_mx_lookup_fn mx_lookup; /* kumo.dns.lookup_mx; NULL while loading */
	void *mx_ctx;
	policy_event_timing_fn event_timing; /* NULL: events are not timed */
	void *event_timing_ctx;
	bool has_listener_domain; /* a get_listener_domain handler is registered */
};

/* policy_pcall for an event's handler, timed for p->event_timing. */
int policy_event_pcall(struct policy *p, const char *event, int nargs, int nresults);

/* The policy a Lua C function belongs to (upvalue 1 of every API function). */
static inline struct policy *policy_from_upvalue(lua_State *L)
{
	return lua_touserdata(L, lua_upvalueindex(1));
}

/* policy_config.c */
/* Register start_esmtp_listener, define_spool, configure_local_logs into the
 * table at the top of the stack (p as upvalue). */
void policy_config_register(lua_State *L, struct policy *p);
/* Set the documented defaults.  PT_OK or PT_NOMEM. */
int policy_config_init(struct policy_config *c);
void policy_config_free(struct policy *p);
void policy_listener_free(struct policy_listener *l);
/*
 * Raise unless every key of the table at idx is a string in `known`.  A key
 * in `kumo_only` raises "<fn>: '<key>' is a KumoMTA option Petrel does not
 * support yet"; any other key "<fn>: unknown key '<key>'", or, when `what`
 * is given, "'<key>' is not a <what> option".
 */
void policy_config_check_keys(lua_State *L, int idx, const char *fn, const char *what,
			      const char *const *known, const char *const *kumo_only);
bool policy_config_name_in(const char *const *list, const char *name);
/* The list of IP addresses and CIDR blocks at idx into list (replaced);
 * raises "<fn>: <key>[i]: 'x' is not an IP address or CIDR block". */
void policy_config_cidr_list(lua_State *L, int idx, const char *fn, const char *key,
			     struct pt_cidr_list *list);
/* "host:port" or "[v6]:port" with a port from 1 to 65535. */
bool policy_config_listen_valid(const char *s);
/* A malloc'd copy of the string at idx (caller frees); raises unless it is a
 * string without NUL bytes. */
char *policy_config_dup_string(lua_State *L, int idx, const char *fn, const char *key);
/* A whole number in [1, max]; raises "<fn>: '<key>' must be ..." otherwise. */
uint64_t policy_config_check_count(lua_State *L, int idx, const char *fn, const char *key,
				   uint64_t max);
/* A duration (policy_check_duration) longer than zero, in milliseconds. */
uint64_t policy_config_check_timeout(lua_State *L, int idx, const char *fn, const char *key);
/* A boolean; raises "<fn>: '<key>' must be a boolean, got <type>". */
bool policy_config_check_bool(lua_State *L, int idx, const char *fn, const char *key);

/* policy_queue_http.c: protocol.http at idx into q->http (raises on any error). */
void policy_queue_http_parse(lua_State *L, int idx, struct policy_queue_config *q);
/* policy_queue_amqp.c: protocol.amqp at idx into q->amqp (raises on any error). */
void policy_queue_amqp_parse(lua_State *L, int idx, struct policy_queue_config *q);

/* policy_queue.c: helpers of the protocol parsers.  policy_queue_dup: *out
 * a copy of s (NULL s: NULL), PT_OK or PT_NOMEM.  policy_queue_oom raises
 * make_queue_config's out-of-memory error when p is NULL.
 * policy_queue_host_port: "<prefix>host:port" ("[host]" for IPv6), malloc'd
 * (raises when out of memory). */
int policy_queue_dup(char **out, const char *s);
void policy_queue_oom(lua_State *L, const void *p);
char *policy_queue_host_port(lua_State *L, const char *prefix, const char *host, unsigned port);

/* policy_egress.c: one make_egress_path field by index (automation's SetConfig). */
int policy_egress_field_index(const char *name);
void policy_egress_field_parse(lua_State *L, int idx, struct policy_egress_path *e, int field);
/* policy_automation.c: the `automation` list at idx, checked and compiled
 * (raises with the rule's number on anything wrong).  Owned by the caller. */
struct policy_automation *policy_automation_parse(lua_State *L, int idx);

/* policy_rate.c */
/* The rate string at idx (policy_rate_parse); raises "<fn>: '<key>': ..." on
 * anything else. */
void policy_rate_check(lua_State *L, int idx, const char *fn, const char *key,
		       struct policy_rate *out);

/* policy_queue.c: kumo.make_queue_config into the table at the top. */
void policy_queue_register(lua_State *L);

/* policy_egress.c: kumo.make_egress_path into the table at the top. */
void policy_egress_register(lua_State *L);
/* A malloc'd EHLO name from the string at idx (1-255 printable characters,
 * no space); raises "<fn>: 'ehlo_domain' must be ..." otherwise. */
char *policy_check_ehlo(lua_State *L, int idx, const char *fn);

/* policy_source.c: make_egress_source, make_egress_pool and the init-only
 * define_egress_source / define_egress_pool into the table at the top. */
void policy_source_register(lua_State *L, struct policy *p);

/* policy_listener.c: kumo.make_listener_domain into the table at the top,
 * and the metatables of its value and of conn_meta. */
void policy_listener_register(lua_State *L);

/* policy_http.c: start_http_listener into the table at the top (p as upvalue). */
void policy_http_register(lua_State *L, struct policy *p);
void policy_http_listener_free(struct policy_http_listener *l);
/* Same HTTP listeners in a and b (for the reload note)? */
bool policy_http_listeners_same(const struct policy_config *a, const struct policy_config *b);

/* policy_dns.c */
/* kumo.dns = { configure_resolver = ... } into the table at the top. */
void policy_dns_register(lua_State *L, struct policy *p);
/*
 * Check the syntax of a host with an optional port: "a.b.c.d", "a.b.c.d:port",
 * "[ip]", "[ip]:port", a bare IPv6 address (no port), and with names_ok also
 * "host" and "host:port" (RFC 1123 labels; a last label of only digits is
 * taken as a mistyped IPv4 address).  Ports 1 to 65535.  PT_OK, or PT_ERROR
 * with a static reason in *why.  Nothing is resolved.
 */
int policy_dns_check_host(const char *s, bool names_ok, const char **why);

/* policy_duration.c */
/*
 * Parse a KumoMTA-style duration ("60s", "5m", "1 hour", "2 days", "500ms",
 * "1h 30m") of n bytes into milliseconds.  PT_OK, or PT_ERROR with a reason
 * (a static string) in *why.
 */
int policy_duration_parse(const char *s, size_t n, uint64_t *out_ms, const char **why);
/*
 * The duration at idx: a number of seconds (fractions allowed, >= 0) or a
 * string for policy_duration_parse.  Raises a Lua error "<what>: ..." on a
 * bad value; never returns on error.
 */
uint64_t policy_check_duration(lua_State *L, int idx, const char *what);

/* policy_json.c */
/*
 * Encode the Lua value at idx as compact JSON (object keys sorted, so the
 * text is deterministic) and push it as a string.  Raises a Lua error
 * naming `what` when the value can't be represented.
 */
void policy_json_push_encoded(lua_State *L, int idx, const char *what);
/* Decode JSON text and push the Lua value (null -> nil).  Raises on bad text. */
void policy_json_push_decoded(lua_State *L, const char *json, size_t n, const char *what);
/* A struct pt_buf inside a GC-collected userdata (pushed), so a Lua error
 * between allocation and use can't leak it. */
struct pt_buf *policy_buf_push(lua_State *L);
void policy_buf_register(lua_State *L);

/* policy_message.c */
void policy_message_register(lua_State *L);
/* Push a Message userdata wrapping msg; returns the slot to detach later. */
struct pt_message **policy_message_push(lua_State *L, struct pt_message *msg);

/* policy.c */
/*
 * Raise a Lua error whose message is formatted like printf.  The location
 * is added later by the message handler (the first Lua frame), so C API
 * functions point at the policy line that called them.
 */
int policy_raise(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Raise "<fn> may only be called from the init event" unless init runs. */
void policy_check_init(lua_State *L, struct policy *p, const char *fn);
/* The error at the top of the stack as text (a stray reject explains itself). */
void policy_error_text(lua_State *L, char *out, size_t n);
/*
 * Call the function below nargs arguments at the top of p->L's stack, under
 * the message handler (errors get the policy's file:line; the function's
 * own definition line when no Lua frame is left, as after a tail call),
 * keeping nresults results.  Leaves the error value on failure.  Returns
 * the lua_pcall status.
 */
int policy_pcall(struct policy *p, int nargs, int nresults);
/* Push the handler registered for event (true), or nothing (false). */
bool policy_push_handler(lua_State *L, const char *event);
/* "src:line:" where the function at the top of the stack was defined, or
 * "" for the main chunk and C functions. */
void policy_where_defined(lua_State *L, char *out, size_t n);
/* When the value at idx is a kumo.reject() value: fill reply (enhanced
 * code added when missing, CR/LF blanked) and return true. */
bool policy_reject_reply(lua_State *L, int idx, struct policy_reply *reply);

/* What a configuration event must return: a userdata made by `maker`. */
struct policy_result_kind {
	const char *event; /* "get_queue_config" */
	const char *mt;	   /* POLICY_MT_QUEUE_CONFIG */
	const char *maker; /* "kumo.make_queue_config", for messages */
	/* Deep-copy the userdata's C value into out: PT_OK or PT_NOMEM. */
	int (*take)(void *out, const void *value);
};
/*
 * Run kind->event's handler with n_args string arguments (NULL -> nil).
 * No handler, or a nil result (KumoMTA then uses the defaults): out is left
 * alone, PT_OK.  A kind->mt userdata: kind->take copies it into out, PT_OK.
 * PT_ERROR with err = "file:line: message" for a raised error (where it was
 * raised), any other result (where the handler was defined), or a failed
 * copy.  Runs under lua_cpcall: out of memory is an error, not a panic.
 */
int policy_config_event(struct policy *p, const struct policy_result_kind *kind,
			const char *const *args, int n_args, void *out, char *err, size_t err_len);

#endif
