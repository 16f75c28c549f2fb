/*
 * policy_message.c -- the Message object a policy sees in
 * smtp_server_message_received, with KumoMTA's method names:
 *
 *     msg:id()                          the spool id (32 hex digits)
 *     msg:sender()                      EnvelopeAddress (null sender: all "")
 *     msg:recipient()                   the first recipient, or nil
 *     msg:recipient_list()              { EnvelopeAddress, ... }
 *     msg:get_meta(key)                 Lua value decoded from JSON, nil if absent
 *     msg:set_meta(key, value)          value encoded to JSON (policy_json.c)
 *     msg:get_data()                    the message as stored, one string
 *     msg:append_header(name, value)    after the last received header
 *     msg:prepend_header(name, value)   before the first header
 *     msg:get_first_named_header_value(name)   string or nil
 *     msg:remove_all_named_headers(name)   every field of that name
 *     msg:from_header()                 { email, user, domain, name } or nil
 *     msg:dkim_sign(signer)             prepend a DKIM-Signature (dkim_lua.c)
 *
 * Lifetime.  The userdata holds only a pointer to the caller's struct
 * pt_message.  The event runner clears it when the handler returns, because
 * the shard frees or hands the message on right after; a policy that kept
 * the object (in a global, a closure) then gets the error "message used
 * outside its event" instead of touching freed memory.
 *
 * An EnvelopeAddress is a plain table {user, domain, email} with a
 * metatable for tostring() ("user@domain") and ==.  It is a copy, so unlike
 * the message it stays valid after the event.  The domain is what follows
 * the last '@' (a quoted local part may itself contain '@', RFC 5321
 * 4.1.2); an address without '@' (postmaster) has domain "".
 */
#include "policy/dkim.h"
#include "policy/policy_int.h"

#include <stdlib.h>
#include <string.h>

static struct pt_message *message_check(lua_State *L)
{
	struct pt_message **slot = luaL_checkudata(L, 1, POLICY_MT_MESSAGE);

	if (*slot == NULL)
		policy_raise(L, "message used outside its event");
	return *slot;
}

static void address_push(lua_State *L, const char *email)
{
	const char *at = strrchr(email, '@');

	lua_createtable(L, 0, 3);
	if (at != NULL) {
		lua_pushlstring(L, email, (size_t)(at - email));
		lua_setfield(L, -2, "user");
		lua_pushstring(L, at + 1);
	} else {
		lua_pushstring(L, email);
		lua_setfield(L, -2, "user");
		lua_pushliteral(L, "");
	}
	lua_setfield(L, -2, "domain");
	lua_pushstring(L, email);
	lua_setfield(L, -2, "email");
	luaL_getmetatable(L, POLICY_MT_ADDRESS);
	lua_setmetatable(L, -2);
}

static int address_tostring(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "email");
	return 1;
}

static int address_eq(lua_State *L)
{
	lua_getfield(L, 1, "email");
	lua_getfield(L, 2, "email");
	lua_pushboolean(L, lua_rawequal(L, -1, -2));
	return 1;
}

static int message_id(lua_State *L)
{
	lua_pushstring(L, message_check(L)->id);
	return 1;
}

static int message_sender(lua_State *L)
{
	struct pt_message *m = message_check(L);

	address_push(L, m->sender != NULL ? m->sender : "");
	return 1;
}

static int message_recipient(lua_State *L)
{
	struct pt_message *m = message_check(L);

	if (m->n_rcpts == 0)
		lua_pushnil(L);
	else
		address_push(L, m->rcpts[0]);
	return 1;
}

static int message_recipient_list(lua_State *L)
{
	struct pt_message *m = message_check(L);

	lua_createtable(L, (int)m->n_rcpts, 0);
	for (size_t i = 0; i < m->n_rcpts; i++) {
		address_push(L, m->rcpts[i]);
		lua_rawseti(L, -2, (int)i + 1);
	}
	return 1;
}

static int message_get_meta(lua_State *L)
{
	struct pt_message *m = message_check(L);
	const char *key = luaL_checkstring(L, 2);
	const char *json = pt_message_get_meta(m, key);

	if (json == NULL) {
		lua_pushnil(L);
		return 1;
	}
	policy_json_push_decoded(L, json, strlen(json), "get_meta");
	return 1;
}

static int message_set_meta(lua_State *L)
{
	struct pt_message *m = message_check(L);
	const char *key = luaL_checkstring(L, 2);

	luaL_checkany(L, 3);
	policy_json_push_encoded(L, 3, "set_meta");
	if (pt_message_set_meta(m, key, lua_tostring(L, -1)) != PT_OK)
		policy_raise(L, "set_meta: out of memory");
	return 0;
}

static int message_get_data(lua_State *L)
{
	struct pt_message *m = message_check(L);
	struct iovec iov[4];
	luaL_Buffer b;
	int n = pt_message_iov(m, iov);

	luaL_buffinit(L, &b);
	for (int i = 0; i < n; i++)
		luaL_addlstring(&b, iov[i].iov_base, iov[i].iov_len);
	luaL_pushresult(&b);
	return 1;
}

/* RFC 5322 3.6.8: a field name is one or more printable ASCII but ':'. */
static void header_check_name(lua_State *L, const char *fn, const char *name, size_t n)
{
	const unsigned char *p = (const unsigned char *)name;

	if (strlen(name) != n)
		policy_raise(L, "%s: header name contains a NUL byte", fn);
	if (*p == '\0')
		policy_raise(L, "%s: header name is empty", fn);
	for (; *p != '\0'; p++)
		if (*p < 33 || *p > 126 || *p == ':')
			policy_raise(L,
				     "%s: header name '%s' has a character not allowed "
				     "in a field name (RFC 5322 3.6.8)",
				     fn, name);
}

/*
 * A value may contain CRLF only as folding (followed by a space or tab,
 * RFC 5322 2.2.3): a bare CR or LF, or CRLF starting a new line, would
 * inject header lines or break the CRLF-only framing the spool and the
 * SMTP client rely on.
 */
static void header_check_value(lua_State *L, const char *fn, const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '\0')
			policy_raise(L, "%s: header value contains a NUL byte", fn);
		if (v[i] == '\n' || (v[i] == '\r' && (i + 2 >= n || v[i + 1] != '\n' ||
						      (v[i + 2] != ' ' && v[i + 2] != '\t'))))
			policy_raise(L,
				     "%s: header value may contain CRLF only when folding "
				     "(CRLF followed by a space or tab)",
				     fn);
		if (v[i] == '\r')
			i++; /* skip the LF of a valid fold */
	}
}

static int message_add_header(lua_State *L, bool append)
{
	const char *fn = append ? "append_header" : "prepend_header";
	struct pt_message *m = message_check(L);
	size_t name_len, n;
	const char *name = luaL_checklstring(L, 2, &name_len);
	const char *value = luaL_checklstring(L, 3, &n);
	int rc;

	header_check_name(L, fn, name, name_len);
	header_check_value(L, fn, value, n);
	if (append)
		rc = pt_message_append_header(m, name, value);
	else
		rc = pt_message_prepend_header(m, name, value);
	if (rc != PT_OK)
		policy_raise(L, "%s: out of memory", fn);
	return 0;
}

static int message_append_header(lua_State *L)
{
	return message_add_header(L, true);
}

static int message_prepend_header(lua_State *L)
{
	return message_add_header(L, false);
}

static int message_remove_all_named_headers(lua_State *L)
{
	struct pt_message *m = message_check(L);
	size_t n;
	const char *name = luaL_checklstring(L, 2, &n);

	header_check_name(L, "remove_all_named_headers", name, n);
	pt_message_remove_header(m, name);
	return 0;
}

static int message_get_first_named_header_value(lua_State *L)
{
	struct pt_message *m = message_check(L);
	const char *name = luaL_checkstring(L, 2);
	char *value = pt_message_header_value(m, name);

	if (value == NULL) {
		lua_pushnil(L);
		return 1;
	}
	/* If this push fails for memory, the longjmp leaks value: an accepted
	 * cost, since the state is then unusable anyway. */
	lua_pushstring(L, value);
	free(value);
	return 1;
}

/*
 * The first mailbox of an address-list value (RFC 5322 3.4): the addr-spec
 * between '<' and '>' when there is one, with the display name before it
 * (quotes removed, trimmed); else the text up to the first ',' with
 * comments and whitespace removed.  Comments are skipped and quoted text
 * kept whole.  Fills email and name (cap bytes each); false when no
 * addr-spec with an '@' is found or it does not fit.
 */
static bool mailbox_parse(const char *v, char *email, char *name, size_t cap)
{
	size_t e = 0, nl = 0, depth = 0;
	bool quoted = false, angle = false, done = false;

	name[0] = '\0';
	for (const char *p = v; *p != '\0' && !done; p++) {
		char c = *p;
		bool keep = true;

		if (quoted) {
			if (c == '\\' && p[1] != '\0')
				c = *++p;
			else if (c == '"')
				quoted = false;
		} else if (depth > 0 || c == '(') {
			depth += c == '(' ? 1 : 0;
			depth -= c == ')' ? 1 : 0;
			keep = false;
		} else if (c == '"') {
			quoted = true;
		} else if (c == '<' && !angle) {
			/* What came before is the display name. */
			email[e] = '\0';
			while (e > 0 && (email[e - 1] == ' ' || email[e - 1] == '\t'))
				email[--e] = '\0';
			for (size_t i = 0; i < e; i++)
				if (email[i] != '"')
					name[nl++] = email[i];
			name[nl] = '\0';
			e = 0;
			angle = true;
			keep = false;
		} else if ((c == '>' && angle) || (c == ',' && !angle)) {
			done = true;
			keep = false;
		} else if ((c == ' ' || c == '\t') && (angle || e == 0)) {
			keep = false;
		}
		if (keep) {
			if (e + 1 >= cap)
				return false;
			email[e++] = c;
		}
	}
	email[e] = '\0';
	if (!angle) {
		/* No angle brackets: whatever whitespace was kept between words goes. */
		size_t w = 0;

		for (size_t i = 0; i < e; i++)
			if (email[i] != ' ' && email[i] != '\t')
				email[w++] = email[i];
		email[w] = '\0';
	}
	return strchr(email, '@') != NULL && email[0] != '@';
}

/* msg:from_header(): { email, user, domain, name } of the From field's
 * first mailbox, or nil without a From field; an error when it holds no
 * address. */
static int message_from_header(lua_State *L)
{
	struct pt_message *m = message_check(L);
	char *value = pt_message_header_value(m, "From");
	size_t cap;
	char *email, *name;
	bool ok;

	if (value == NULL) {
		lua_pushnil(L);
		return 1;
	}
	cap = strlen(value) + 1;
	email = lua_newuserdata(L, 2 * cap); /* collected with the state: no leak on raise */
	name = email + cap;
	ok = mailbox_parse(value, email, name, cap);
	if (!ok) {
		lua_pushstring(L, value);
		free(value);
		return policy_raise(L, "from_header: no address in From: %s", lua_tostring(L, -1));
	}
	free(value);
	address_push(L, email);
	lua_pushstring(L, name);
	lua_setfield(L, -2, "name");
	return 1;
}

static int message_dkim_sign(lua_State *L)
{
	return policy_dkim_message_sign(L, message_check(L), 2);
}

static int message_tostring(lua_State *L)
{
	struct pt_message **slot = luaL_checkudata(L, 1, POLICY_MT_MESSAGE);

	if (*slot == NULL)
		lua_pushliteral(L, "Message (expired)");
	else
		lua_pushfstring(L, "Message %s", (*slot)->id);
	return 1;
}

static const luaL_Reg message_methods[] = {
    {"id", message_id},
    {"sender", message_sender},
    {"recipient", message_recipient},
    {"recipient_list", message_recipient_list},
    {"get_meta", message_get_meta},
    {"set_meta", message_set_meta},
    {"get_data", message_get_data},
    {"append_header", message_append_header},
    {"prepend_header", message_prepend_header},
    {"get_first_named_header_value", message_get_first_named_header_value},
    {"remove_all_named_headers", message_remove_all_named_headers},
    {"from_header", message_from_header},
    {"dkim_sign", message_dkim_sign},
    {NULL, NULL},
};

void policy_message_register(lua_State *L)
{
	luaL_newmetatable(L, POLICY_MT_MESSAGE);
	lua_newtable(L);
	luaL_setfuncs(L, message_methods, 0);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, message_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushliteral(L, "Message");
	lua_setfield(L, -2, "__metatable"); /* getmetatable() can't reach the methods */
	lua_pop(L, 1);

	luaL_newmetatable(L, POLICY_MT_ADDRESS);
	lua_pushcfunction(L, address_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushcfunction(L, address_eq);
	lua_setfield(L, -2, "__eq");
	lua_pop(L, 1);
}

struct pt_message **policy_message_push(lua_State *L, struct pt_message *msg)
{
	struct pt_message **slot = lua_newuserdata(L, sizeof(*slot));

	*slot = msg;
	luaL_getmetatable(L, POLICY_MT_MESSAGE);
	lua_setmetatable(L, -2);
	return slot;
}
