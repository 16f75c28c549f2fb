/*
 * policy_json.c -- Lua values <-> JSON text, for message meta.
 *
 * Meta is stored as JSON text (core/message.h) so the spool and the logs use
 * it without re-encoding.  set_meta therefore encodes here and get_meta
 * decodes.
 *
 * Encoding is hand-written rather than done by jansson for two reasons:
 * jansson prints reals with 17 significant digits (0.1 becomes
 * 0.10000000000000001), and Lua tables have no key order, so the text
 * would change from run to run.  Here numbers use the shortest form that
 * reads back to the same double, and object keys are sorted bytewise, so
 * one Lua value always gives one text.  The mapping:
 *
 *     nil -> null, boolean -> true/false, integral number -> 123,
 *     other number -> shortest round-trip %g, string -> "..." (must be
 *     UTF-8; RFC 8259 section 7 escapes), EnvelopeAddress -> "user@domain",
 *     table with keys exactly 1..n (n >= 1) -> array, table with string
 *     keys (or empty) -> object.  Anything else (functions, mixed or sparse
 *     keys, NaN, cycles) is an error naming the problem.
 *
 * Decoding uses jansson (JSON_DECODE_ANY, so scalars decode too): null ->
 * nil, integer and real -> number, arrays -> 1-based sequences.
 *
 * The output buffer lives in a userdata with a __gc (policy_buf_push) so a
 * Lua error raised mid-encode cannot leak it.
 */
#include "policy/policy_int.h"

#include "core/buf.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH	    64 /* deeper than any sane meta; stops cycles */
#define POLICY_MT_JSON_TREE "petrel.JsonTree"

struct json_enc {
	lua_State *L;
	struct pt_buf *out;
	const char *what;
};

struct json_key {
	const char *s;
	size_t n;
	int ref; /* absolute stack index of the key string */
};

static int buf_gc(lua_State *L)
{
	pt_buf_free(luaL_checkudata(L, 1, POLICY_MT_BUF));
	return 0;
}

static int json_tree_gc(lua_State *L);

void policy_buf_register(lua_State *L)
{
	luaL_newmetatable(L, POLICY_MT_BUF);
	lua_pushcfunction(L, buf_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	luaL_newmetatable(L, POLICY_MT_JSON_TREE);
	lua_pushcfunction(L, json_tree_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
}

struct pt_buf *policy_buf_push(lua_State *L)
{
	struct pt_buf *b = lua_newuserdata(L, sizeof(*b));

	*b = (struct pt_buf)PT_BUF_INIT;
	luaL_getmetatable(L, POLICY_MT_BUF);
	lua_setmetatable(L, -2);
	return b;
}

static void enc_put(struct json_enc *e, const void *p, size_t n)
{
	if (pt_buf_append(e->out, p, n) != PT_OK)
		policy_raise(e->L, "%s: out of memory", e->what);
}

static void enc_puts(struct json_enc *e, const char *s)
{
	enc_put(e, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (RFC 3629), or 0 when invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF are invalid. */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* A JSON string literal (RFC 8259 section 7): quote, backslash and C0 escaped. */
static void enc_string(struct json_enc *e, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0;
	char esc[8];

	enc_put(e, "\"", 1);
	while (i < n) {
		size_t len = utf8_seq_len(u + i, n - i);

		if (len == 0)
			policy_raise(e->L, "%s: string is not valid UTF-8 (byte %zu)", e->what, i);
		if (len > 1 || (u[i] >= 0x20 && u[i] != '"' && u[i] != '\\')) {
			i += len;
			run += len;
			continue;
		}
		enc_put(e, s + i - run, run);
		run = 0;
		switch (u[i]) {
		case '"':
			enc_puts(e, "\\\"");
			break;
		case '\\':
			enc_puts(e, "\\\\");
			break;
		case '\n':
			enc_puts(e, "\\n");
			break;
		case '\r':
			enc_puts(e, "\\r");
			break;
		case '\t':
			enc_puts(e, "\\t");
			break;
		case '\b':
			enc_puts(e, "\\b");
			break;
		case '\f':
			enc_puts(e, "\\f");
			break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", u[i]);
			enc_puts(e, esc);
		}
		i++;
	}
	enc_put(e, s + n - run, run);
	enc_put(e, "\"", 1);
}

/* Integers print exactly; others with the fewest digits that read back equal. */
static void enc_number(struct json_enc *e, lua_Number v)
{
	char text[40];

	if (!isfinite(v))
		policy_raise(e->L, "%s: %s can't be stored as JSON", e->what,
			     isnan(v) ? "NaN" : "infinity");
	if (v == floor(v) && fabs(v) < 9007199254740992.0) {
		snprintf(text, sizeof(text), "%lld", (long long)v);
	} else {
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(text, sizeof(text), "%.*g", prec, v);
			if (strtod(text, NULL) == v)
				break;
		}
	}
	enc_puts(e, text);
}

static void enc_value(struct json_enc *e, int idx, int depth);

/* Keys exactly 1..n with n >= 1: a JSON array.  Returns n or 0. */
static size_t table_sequence_len(lua_State *L, int idx)
{
	size_t count = 0, max = 0;

	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_Number k;

		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TNUMBER) {
			lua_pop(L, 1);
			return 0;
		}
		k = lua_tonumber(L, -1);
		if (k < 1 || k != floor(k) || k > (lua_Number)SIZE_MAX / 2) {
			lua_pop(L, 1);
			return 0;
		}
		count++;
		if ((size_t)k > max)
			max = (size_t)k;
	}
	return count == max ? count : 0;
}

static void enc_array(struct json_enc *e, int idx, size_t n, int depth)
{
	enc_put(e, "[", 1);
	for (size_t i = 1; i <= n; i++) {
		if (i > 1)
			enc_put(e, ",", 1);
		lua_rawgeti(e->L, idx, (int)i);
		enc_value(e, lua_gettop(e->L), depth + 1);
		lua_pop(e->L, 1);
	}
	enc_put(e, "]", 1);
}

static int json_key_cmp(const void *a, const void *b)
{
	const struct json_key *x = a, *y = b;
	int c = memcmp(x->s, y->s, PT_MIN(x->n, y->n));

	if (c != 0)
		return c;
	return x->n < y->n ? -1 : x->n > y->n;
}

/*
 * A table with string keys.  The keys are gathered into a userdata array
 * (collected by the GC if an error escapes) and sorted; the key strings stay
 * on the stack meanwhile so their pointers remain valid.
 */
static void enc_object(struct json_enc *e, int idx, int depth)
{
	lua_State *L = e->L;
	size_t n = 0, cap = 0, i;
	struct json_key *keys = NULL;
	int base = lua_gettop(L);

	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			policy_raise(L,
				     "%s: a table with %s keys must be a sequence 1..n "
				     "(objects need string keys)",
				     e->what, luaL_typename(L, -1));
		n++;
	}
	if (!lua_checkstack(L, (int)PT_MIN(n, (size_t)INT32_MAX / 2) + 8))
		policy_raise(L, "%s: table too large", e->what);
	cap = n;
	keys = lua_newuserdata(L, (cap ? cap : 1) * sizeof(*keys));
	n = 0;
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		lua_pushvalue(L, -1); /* one copy stays as the anchor, one feeds next */
		keys[n].ref = lua_gettop(L) - 1;
		keys[n].s = lua_tolstring(L, keys[n].ref, &keys[n].n);
		n++;
	}
	qsort(keys, n, sizeof(*keys), json_key_cmp);
	enc_put(e, "{", 1);
	for (i = 0; i < n; i++) {
		if (i > 0)
			enc_put(e, ",", 1);
		enc_string(e, keys[i].s, keys[i].n);
		enc_put(e, ":", 1);
		lua_pushvalue(L, keys[i].ref);
		lua_rawget(L, idx);
		enc_value(e, lua_gettop(L), depth + 1);
		lua_pop(L, 1);
	}
	enc_put(e, "}", 1);
	lua_settop(L, base);
}

static void enc_table(struct json_enc *e, int idx, int depth)
{
	lua_State *L = e->L;
	size_t n;

	if (depth >= JSON_MAX_DEPTH)
		policy_raise(L, "%s: tables nested more than %d deep (a cycle?)", e->what,
			     JSON_MAX_DEPTH);
	if (!lua_checkstack(L, 8))
		policy_raise(L, "%s: Lua stack exhausted", e->what);
	/* An EnvelopeAddress is stored as its address text. */
	if (lua_getmetatable(L, idx)) {
		luaL_getmetatable(L, POLICY_MT_ADDRESS);
		bool is_address = lua_rawequal(L, -1, -2);
		lua_pop(L, 2);
		if (is_address) {
			size_t len;
			const char *s;

			lua_getfield(L, idx, "email");
			s = lua_tolstring(L, -1, &len);
			enc_string(e, s ? s : "", s ? len : 0);
			lua_pop(L, 1);
			return;
		}
	}
	n = table_sequence_len(L, idx);
	if (n > 0)
		enc_array(e, idx, n, depth);
	else
		enc_object(e, idx, depth);
}

static void enc_value(struct json_enc *e, int idx, int depth)
{
	lua_State *L = e->L;
	size_t n;
	const char *s;

	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		enc_puts(e, "null");
		break;
	case LUA_TBOOLEAN:
		enc_puts(e, lua_toboolean(L, idx) ? "true" : "false");
		break;
	case LUA_TNUMBER:
		enc_number(e, lua_tonumber(L, idx));
		break;
	case LUA_TSTRING:
		s = lua_tolstring(L, idx, &n);
		enc_string(e, s, n);
		break;
	case LUA_TTABLE:
		enc_table(e, idx, depth);
		break;
	default:
		policy_raise(L, "%s: a %s value can't be stored as JSON", e->what,
			     luaL_typename(L, idx));
	}
}

void policy_json_push_encoded(lua_State *L, int idx, const char *what)
{
	struct json_enc e = {.L = L, .what = what};
	int top;

	idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
	e.out = policy_buf_push(L);
	top = lua_gettop(L);
	enc_value(&e, idx, 0);
	lua_pushlstring(L, e.out->data ? e.out->data : "", e.out->len);
	lua_replace(L, top); /* the buffer userdata goes to the GC */
}

static void push_json(lua_State *L, json_t *v);

static void push_json_container(lua_State *L, json_t *v)
{
	size_t i;

	if (!lua_checkstack(L, 4))
		policy_raise(L, "get_meta: JSON nested too deeply");
	if (json_is_array(v)) {
		lua_createtable(L, (int)json_array_size(v), 0);
		for (i = 0; i < json_array_size(v); i++) {
			push_json(L, json_array_get(v, i));
			lua_rawseti(L, -2, (int)i + 1);
		}
		return;
	}
	lua_createtable(L, 0, (int)json_object_size(v));
	for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
		lua_pushstring(L, json_object_iter_key(it));
		push_json(L, json_object_iter_value(it));
		lua_rawset(L, -3);
	}
}

static void push_json(lua_State *L, json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_NULL:
		lua_pushnil(L);
		break;
	case JSON_TRUE:
		lua_pushboolean(L, 1);
		break;
	case JSON_FALSE:
		lua_pushboolean(L, 0);
		break;
	case JSON_INTEGER:
		lua_pushnumber(L, (lua_Number)json_integer_value(v));
		break;
	case JSON_REAL:
		lua_pushnumber(L, json_real_value(v));
		break;
	case JSON_STRING:
		lua_pushlstring(L, json_string_value(v), json_string_length(v));
		break;
	case JSON_ARRAY:
	case JSON_OBJECT:
		push_json_container(L, v);
		break;
	}
}

/*
 * The jansson tree is held by a userdata whose __gc calls json_decref, for
 * the same reason as the encode buffer: pushing can raise (memory).
 */
static int json_tree_gc(lua_State *L)
{
	json_t **tree = lua_touserdata(L, 1);

	if (*tree != NULL)
		json_decref(*tree);
	*tree = NULL;
	return 0;
}

void policy_json_push_decoded(lua_State *L, const char *json, size_t n, const char *what)
{
	json_error_t err;
	json_t **tree;
	int slot;

	tree = lua_newuserdata(L, sizeof(*tree));
	*tree = NULL;
	luaL_getmetatable(L, POLICY_MT_JSON_TREE);
	lua_setmetatable(L, -2);
	slot = lua_gettop(L);
	*tree = json_loadb(json, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (*tree == NULL)
		policy_raise(L, "%s: stored JSON is invalid: %s", what, err.text);
	push_json(L, *tree);
	json_decref(*tree);
	*tree = NULL;
	lua_replace(L, slot);
}
