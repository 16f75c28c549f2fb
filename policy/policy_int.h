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
#define POLICY_MT_MESSAGE "petrel.Message"
#define POLICY_MT_ADDRESS "petrel.EnvelopeAddress"
#define POLICY_MT_REJECT  "petrel.Reject"
#define POLICY_MT_BUF	  "petrel.Buf"

/* Registry field holding the table event name -> handler function. */
#define POLICY_REG_HANDLERS "petrel.handlers"

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
};

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

#endif
