/*
 * toml_lua.c -- KumoMTA's TOML functions for policies, over toml_shim.cpp.
 *
 *     kumo.toml_load(path)            the file parsed into a table
 *     kumo.toml_parse(text)           the text parsed into a table
 *     kumo.toml_encode(table)         TOML text
 *     kumo.toml_encode_pretty(table)  TOML text, indented
 *
 * and the same four as kumo.serde.toml_* (KumoMTA moved them there in
 * 2024.09.02 and keeps the old names as deprecated aliases; both work here).
 *
 * A syntax error raises "FILE:LINE:COLUMN: description"; the policy's
 * message handler puts the calling line in front ("init.lua:12:
 * shaping.toml:4:7: ..."), so `petreld --validate` names both places and
 * refuses the policy.  toml_parse names its text "<string>".
 *
 * toml_load reads the whole file with ordinary blocking I/O, like io.open:
 * it is meant for the init event and top-level code, as in KumoMTA
 * (handlers that need a file's data should load it once and keep it).
 */
#include "policy/policy_int.h"
#include "policy/toml.h"

#include "core/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOML_MAX_FILE ((size_t)64 << 20) /* far beyond any config file */

/*
 * Read path into a GC-owned buffer (pushed): nothing that can raise runs
 * while the file is open, so an error can't leak it.  Raises "toml_load:
 * PATH: reason" on failure.
 */
static struct pt_buf *toml_read_file(lua_State *L, const char *path)
{
	struct pt_buf *b = policy_buf_push(L);
	char chunk[8192];
	const char *why = NULL;
	size_t n;
	FILE *f;

	if ((f = fopen(path, "rb")) == NULL)
		policy_raise(L, "toml_load: %s: %s", path, strerror(errno));
	while (why == NULL && (n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (b->len + n > TOML_MAX_FILE)
			why = "larger than 64 MiB";
		else if (pt_buf_append(b, chunk, n) != PT_OK)
			why = "out of memory";
	}
	if (why == NULL && ferror(f))
		why = strerror(errno);
	fclose(f);
	if (why != NULL)
		policy_raise(L, "toml_load: %s: %s", path, why);
	return b;
}

static const char *toml_check_string(lua_State *L, const char *fn, const char *what, size_t *len)
{
	if (lua_type(L, 1) != LUA_TSTRING)
		policy_raise(L, "%s: %s must be a string, got %s", fn, what, luaL_typename(L, 1));
	return lua_tolstring(L, 1, len);
}

static void toml_push_or_raise(lua_State *L, const char *text, size_t len, const char *name)
{
	char err[1024];

	if (policy_toml_push(L, text, len, name, err, sizeof(err)) != PT_OK)
		policy_raise(L, "%s", err);
}

static int toml_load(lua_State *L)
{
	const char *path = toml_check_string(L, "toml_load", "path", NULL);
	struct pt_buf *b = toml_read_file(L, path);

	toml_push_or_raise(L, b->data != NULL ? b->data : "", b->len, path);
	return 1;
}

static int toml_parse(lua_State *L)
{
	size_t len;
	const char *text = toml_check_string(L, "toml_parse", "text", &len);

	toml_push_or_raise(L, text, len, "<string>");
	return 1;
}

static int toml_encode_common(lua_State *L, const char *fn, bool pretty)
{
	char err[512];

	if (policy_toml_encode(L, 1, pretty, err, sizeof(err)) != PT_OK)
		return policy_raise(L, "%s: %s", fn, err);
	return 1;
}

static int toml_encode(lua_State *L)
{
	return toml_encode_common(L, "toml_encode", false);
}

static int toml_encode_pretty(lua_State *L)
{
	return toml_encode_common(L, "toml_encode_pretty", true);
}

static const luaL_Reg toml_functions[] = {
    {"toml_load", toml_load},
    {"toml_parse", toml_parse},
    {"toml_encode", toml_encode},
    {"toml_encode_pretty", toml_encode_pretty},
    {NULL, NULL},
};

void policy_toml_register(lua_State *L)
{
	luaL_setfuncs(L, toml_functions, 0);
	lua_getfield(L, -1, "serde");
	if (!lua_istable(L, -1)) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_setfield(L, -3, "serde");
	}
	luaL_setfuncs(L, toml_functions, 0);
	lua_pop(L, 1);
}
