/*
 * toml.h -- TOML (https://toml.io/en/v1.0.0) for the policy's Lua state.
 *
 * The parser is toml++ (Debian's libtomlplusplus-dev, used header-only and
 * built without exceptions), behind a C shim (toml_shim.cpp) that turns a
 * document straight into Lua values, so no C++ type crosses into C:
 *
 *     table -> table, array -> 1-based sequence, string -> string,
 *     integer -> number, float -> number (inf/nan too), boolean -> boolean,
 *     date / time / date-time -> RFC 3339 text ("1979-05-27",
 *     "07:32:00.5", "1979-05-27T07:32:00Z", "1979-05-27T00:32:00-07:00";
 *     a local date-time has no offset, as written in the file).
 *
 * LuaJIT numbers are doubles: an integer beyond +-2^53 comes back rounded to
 * the nearest double (TOML allows 64-bit integers; no shaping or DKIM value
 * comes near that).
 *
 * toml_lua.c exposes this to policies with KumoMTA's names: kumo.toml_load,
 * kumo.toml_parse, kumo.toml_encode, kumo.toml_encode_pretty and the same
 * four under kumo.serde.
 */
#ifndef PT_POLICY_TOML_H
#define PT_POLICY_TOML_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Parse len bytes of TOML text and push the document as one Lua table.
 * name labels error positions (a file path, or "<string>").  PT_OK with
 * the table pushed, or PT_ERROR with nothing pushed and err =
 * "NAME:LINE:COLUMN: description" (1-based, as toml++ counts: columns in
 * characters) or "NAME: reason" when there is no position (nesting too deep
 * for the Lua stack, out of memory while parsing).  Lua memory errors while
 * pushing are raised as usual (the caller runs under a protected call).
 */
int policy_toml_push(lua_State *L, const char *text, size_t len, const char *name, char *err,
		     size_t err_len);

/*
 * Encode the Lua table at idx as a TOML document and push it as a string.
 * Mapping: a table with keys exactly 1..n (n >= 1) is an array, any other
 * table must have only string keys (an empty table is a table); a whole
 * number within int64 is an integer, any other number a float; strings and
 * booleans as they are.  Keys are sorted.  pretty: toml++'s default layout
 * (indented sub-tables and arrays, literal strings where shorter);
 * otherwise plain basic strings and no indentation.  PT_OK with the string
 * pushed, or PT_ERROR with nothing pushed and err naming the problem (a
 * function or userdata value, mixed keys, nesting deeper than 64: cycles).
 */
int policy_toml_encode(lua_State *L, int idx, bool pretty, char *err, size_t err_len);

/* kumo.toml_* and kumo.serde.toml_* into the kumo table at the top of the
 * stack (kumo.serde is created when missing).  policy.c calls it. */
void policy_toml_register(lua_State *L);

#ifdef __cplusplus
}
#endif

#endif
