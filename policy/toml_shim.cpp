/*
 * toml_shim.cpp -- the only C++ in Petrel: toml++ behind the C API of
 * policy/toml.h.
 *
 * toml++ is used header-only (TOML_HEADER_ONLY=1: Debian also ships it as a
 * shared library, but that one is built with exceptions) and with
 * TOML_EXCEPTIONS=0, so a syntax error is a parse_result holding a
 * parse_error, not a throw.  The one exception left is std::bad_alloc from
 * the standard containers; every piece of C++ work that allocates runs in a
 * try block that turns it into an error return, so no C++ exception ever
 * reaches C.
 *
 * Lua errors the other way.  The Lua calls made here are pushes, which can
 * raise only on out-of-memory, and reads of existing values, which can't
 * raise.  They are kept out of the try blocks: LuaJIT on x86-64 unwinds with
 * the system unwinder, so a Lua error passing through these frames runs the
 * destructors of the toml++ objects on its way out (no leak), and no
 * catch (...) here could swallow it.
 *
 * Parsing builds the whole document first (toml++ has no streaming API),
 * then walks it onto the Lua stack: each nesting level holds one table on
 * the stack, checked with lua_checkstack.
 */
#define TOML_HEADER_ONLY	   1
#define TOML_EXCEPTIONS		   0
#define TOML_ENABLE_WINDOWS_COMPAT 0
#include <toml++/toml.h>

/* lua.hpp: the Lua headers with C linkage; toml.h's own include is then a no-op. */
#include <lua.hpp>

#include "policy/toml.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <new>
#include <optional>
#include <sstream>
#include <string>

/* core/pt.h's values (that header is C only). */
enum { TOML_PT_OK = 0, TOML_PT_ERROR = -2 };

#define TOML_ENCODE_MAX_DEPTH 64

namespace
{

void set_err(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void set_err(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (err == nullptr || err_len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

/* --- TOML -> Lua --------------------------------------------------------- */

/* "YYYY-MM-DD" */
int fmt_date(char *out, size_t n, const toml::date &d)
{
	return snprintf(out, n, "%04u-%02u-%02u", (unsigned)d.year, (unsigned)d.month,
			(unsigned)d.day);
}

/* "HH:MM:SS" and the fraction without trailing zeros (RFC 3339 time-secfrac). */
int fmt_time(char *out, size_t n, const toml::time &t)
{
	int len = snprintf(out, n, "%02u:%02u:%02u", (unsigned)t.hour, (unsigned)t.minute,
			   (unsigned)t.second);
	uint32_t ns = t.nanosecond;
	int digits = 9;

	if (ns == 0 || len < 0 || (size_t)len >= n)
		return len;
	while (ns % 10 == 0) {
		ns /= 10;
		digits--;
	}
	return len + snprintf(out + len, n - (size_t)len, ".%0*u", digits, (unsigned)ns);
}

/* RFC 3339 section 5.6 time-offset: "Z" for +00:00, else "+HH:MM"/"-HH:MM". */
int fmt_offset(char *out, size_t n, const toml::time_offset &o)
{
	int m = o.minutes < 0 ? -o.minutes : o.minutes;

	if (o.minutes == 0)
		return snprintf(out, n, "Z");
	return snprintf(out, n, "%c%02d:%02d", o.minutes < 0 ? '-' : '+', m / 60, m % 60);
}

void push_date_time(lua_State *L, const toml::date_time &dt)
{
	char buf[64];
	int len = fmt_date(buf, sizeof(buf), dt.date);

	buf[len++] = 'T';
	len += fmt_time(buf + len, sizeof(buf) - (size_t)len, dt.time);
	if (dt.offset)
		fmt_offset(buf + len, sizeof(buf) - (size_t)len, *dt.offset);
	lua_pushstring(L, buf);
}

bool push_node(lua_State *L, const toml::node &node);

bool push_table(lua_State *L, const toml::table &t)
{
	if (!lua_checkstack(L, 3))
		return false;
	lua_createtable(L, 0, (int)t.size());
	for (auto &&[key, value] : t) {
		lua_pushlstring(L, key.str().data(), key.str().size());
		if (!push_node(L, value))
			return false;
		lua_rawset(L, -3);
	}
	return true;
}

bool push_array(lua_State *L, const toml::array &a)
{
	int i = 1;

	if (!lua_checkstack(L, 3))
		return false;
	lua_createtable(L, (int)a.size(), 0);
	for (const toml::node &value : a) {
		if (!push_node(L, value))
			return false;
		lua_rawseti(L, -2, i++);
	}
	return true;
}

/* Push node's value; false when the Lua stack can't grow (too deep). */
bool push_node(lua_State *L, const toml::node &node)
{
	char buf[48];

	switch (node.type()) {
	case toml::node_type::table:
		return push_table(L, *node.as_table());
	case toml::node_type::array:
		return push_array(L, *node.as_array());
	case toml::node_type::string: {
		const std::string &s = node.as_string()->get();

		lua_pushlstring(L, s.data(), s.size());
		return true;
	}
	case toml::node_type::integer:
		/* Doubles: exact up to 2^53 (see toml.h). */
		lua_pushnumber(L, (lua_Number)node.as_integer()->get());
		return true;
	case toml::node_type::floating_point:
		lua_pushnumber(L, node.as_floating_point()->get());
		return true;
	case toml::node_type::boolean:
		lua_pushboolean(L, node.as_boolean()->get());
		return true;
	case toml::node_type::date:
		fmt_date(buf, sizeof(buf), node.as_date()->get());
		lua_pushstring(L, buf);
		return true;
	case toml::node_type::time:
		fmt_time(buf, sizeof(buf), node.as_time()->get());
		lua_pushstring(L, buf);
		return true;
	case toml::node_type::date_time:
		push_date_time(L, node.as_date_time()->get());
		return true;
	case toml::node_type::none:
		break;
	}
	lua_pushnil(L);
	return true;
}

/* --- Lua -> TOML --------------------------------------------------------- */

struct encoder {
	lua_State *L;
	char *err;
	size_t err_len;
};

bool to_node(encoder &e, int idx, int depth, const char *where, toml::table *tparent,
	     const std::string &key, toml::array *aparent);

/* Keys exactly 1..n, n >= 1: an array.  -1: mixed or sparse keys. */
int table_shape(lua_State *L, int idx, size_t *n_out)
{
	size_t n = 0;
	bool strings = false, numbers = false;

	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		if (lua_type(L, -1) == LUA_TSTRING) {
			strings = true;
		} else if (lua_type(L, -1) == LUA_TNUMBER) {
			numbers = true;
			n++;
		} else {
			lua_pop(L, 1);
			return -1;
		}
	}
	*n_out = n;
	if (strings && numbers)
		return -1;
	if (!numbers)
		return 0;
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, idx, (int)i);
		bool present = !lua_isnil(L, -1);
		lua_pop(L, 1);
		if (!present)
			return -1;
	}
	return 1;
}

template <typename T>
void place(toml::table *tparent, const std::string &key, toml::array *aparent, T &&value)
{
	if (tparent != nullptr)
		tparent->insert_or_assign(key, std::forward<T>(value));
	else
		aparent->push_back(std::forward<T>(value));
}

bool table_to_node(encoder &e, int idx, int depth, toml::table &out)
{
	lua_State *L = e.L;

	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		size_t klen;
		const char *k = lua_tolstring(L, -2, &klen); /* a string: checked */
		std::string key(k, klen);

		if (!to_node(e, lua_gettop(L), depth + 1, k, &out, key, nullptr)) {
			lua_pop(L, 2);
			return false;
		}
		lua_pop(L, 1);
	}
	return true;
}

bool array_to_node(encoder &e, int idx, int depth, const char *where, size_t n, toml::array &out)
{
	static const std::string none;

	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(e.L, idx, (int)i);
		bool ok = to_node(e, lua_gettop(e.L), depth + 1, where, nullptr, none, &out);
		lua_pop(e.L, 1);
		if (!ok)
			return false;
	}
	return true;
}

/* Convert the value at idx and place it in tparent[key] or aparent. */
bool to_node(encoder &e, int idx, int depth, const char *where, toml::table *tparent,
	     const std::string &key, toml::array *aparent)
{
	lua_State *L = e.L;
	size_t n;

	if (depth > TOML_ENCODE_MAX_DEPTH || !lua_checkstack(L, 4)) {
		set_err(e.err, e.err_len, "nesting deeper than %d (a cycle?) at '%s'",
			TOML_ENCODE_MAX_DEPTH, where);
		return false;
	}
	switch (lua_type(L, idx)) {
	case LUA_TBOOLEAN:
		place(tparent, key, aparent, lua_toboolean(L, idx) != 0);
		return true;
	case LUA_TNUMBER: {
		double d = lua_tonumber(L, idx);

		/* 2^63 is exact as a double; [-2^63, 2^63) fits an int64. */
		if (std::floor(d) == d && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
			place(tparent, key, aparent, (int64_t)d);
		else
			place(tparent, key, aparent, d);
		return true;
	}
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);

		place(tparent, key, aparent, std::string(s, len));
		return true;
	}
	case LUA_TTABLE:
		switch (table_shape(L, idx, &n)) {
		case 1: {
			toml::array a;

			if (!array_to_node(e, idx, depth, where, n, a))
				return false;
			place(tparent, key, aparent, std::move(a));
			return true;
		}
		case 0: {
			toml::table t;

			if (!table_to_node(e, idx, depth, t))
				return false;
			place(tparent, key, aparent, std::move(t));
			return true;
		}
		default:
			set_err(e.err, e.err_len,
				"table at '%s' mixes keys: want only 1..n (an array) or only "
				"strings (a table)",
				where);
			return false;
		}
	default:
		set_err(e.err, e.err_len, "can't encode a %s value at '%s'",
			lua_typename(L, lua_type(L, idx)), where);
		return false;
	}
}

} // namespace

extern "C" int policy_toml_push(lua_State *L, const char *text, size_t len, const char *name,
				char *err, size_t err_len)
{
	int top = lua_gettop(L);
	std::optional<toml::parse_result> res;

	try {
		res.emplace(toml::parse(std::string_view(text, len), std::string_view(name)));
	} catch (...) {
		/* Only std::bad_alloc can get here: no Lua call runs in this block. */
		set_err(err, err_len, "%s: out of memory parsing TOML", name);
		return TOML_PT_ERROR;
	}
	if (!*res) {
		const toml::parse_error &pe = res->error();
		std::string_view d = pe.description();

		set_err(err, err_len, "%s:%u:%u: %.*s", name, (unsigned)pe.source().begin.line,
			(unsigned)pe.source().begin.column, (int)d.size(), d.data());
		return TOML_PT_ERROR;
	}
	if (!push_table(L, res->table())) {
		lua_settop(L, top);
		set_err(err, err_len, "%s: TOML nested too deeply for the Lua stack", name);
		return TOML_PT_ERROR;
	}
	return TOML_PT_OK;
}

extern "C" int policy_toml_encode(lua_State *L, int idx, bool pretty, char *err, size_t err_len)
{
	int top = lua_gettop(L);
	encoder e{L, err, err_len};
	std::string text;
	size_t n;

	if (idx < 0 && idx > LUA_REGISTRYINDEX)
		idx = top + idx + 1;
	if (lua_type(L, idx) != LUA_TTABLE || table_shape(L, idx, &n) != 0) {
		set_err(err, err_len, "a TOML document must be a table with string keys, got %s",
			lua_type(L, idx) == LUA_TTABLE ? "an array or mixed keys"
						       : lua_typename(L, lua_type(L, idx)));
		return TOML_PT_ERROR;
	}
	try {
		toml::table doc;
		std::ostringstream os;
		toml::format_flags flags = pretty ? toml::toml_formatter::default_flags
						  : toml::format_flags::allow_unicode_strings;

		if (!table_to_node(e, idx, 0, doc)) {
			lua_settop(L, top);
			return TOML_PT_ERROR;
		}
		os << toml::toml_formatter(doc, flags);
		text = os.str();
	} catch (...) {
		/* std::bad_alloc, or LuaJIT's out-of-memory error from growing the
		 * stack (LuaJIT allows catching its errors with catch (...)). */
		lua_settop(L, top);
		set_err(err, err_len, "out of memory encoding TOML");
		return TOML_PT_ERROR;
	}
	if (!text.empty() && text.back() != '\n')
		text.push_back('\n');
	lua_pushlstring(L, text.data(), text.size());
	return TOML_PT_OK;
}
