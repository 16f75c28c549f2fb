/*
 * policy_meta.c -- a message's meta value as a C string, for the code that
 * names queues from meta ("queue", "tenant", "campaign", "routing_domain")
 * without a Lua state.
 *
 * Meta values are stored as JSON text (set_meta, policy_json.c).  A JSON
 * string is decoded by jansson (escapes resolved; "\u0000" is refused, as a
 * C string could not hold it); a number or boolean is its JSON text as
 * stored, trimmed of JSON whitespace, so 3 stays "3" and 1.5 stays "1.5"
 * (jansson would print reals with 17 digits).  null, objects and arrays
 * have no string form: KumoMTA's queue helper, too, names queues only from
 * string meta.
 *
 * A string longer than out can hold is cut at the last whole UTF-8
 * character that fits, so a cut never leaves half a character for the
 * queue name or a log line.
 */
#include "policy/policy.h"

#include <jansson.h>
#include <string.h>

static bool meta_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Copy n bytes of s into out, cut at a UTF-8 character boundary to fit. */
static void meta_copy(char *out, size_t out_len, const char *s, size_t n)
{
	if (n > out_len - 1) {
		n = out_len - 1;
		/* Back over continuation bytes (10xxxxxx) to a lead byte. */
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(out, s, n);
	out[n] = '\0';
}

int policy_meta_string(const char *json, char *out, size_t out_len)
{
	json_error_t error;
	json_t *v;
	size_t start = 0, end;
	int rc = PT_OK;

	if (json == NULL || out == NULL || out_len == 0)
		return PT_ERROR;
	out[0] = '\0';
	if ((v = json_loads(json, JSON_DECODE_ANY, &error)) == NULL)
		return PT_ERROR;
	switch (json_typeof(v)) {
	case JSON_STRING:
		meta_copy(out, out_len, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
	case JSON_REAL:
	case JSON_TRUE:
	case JSON_FALSE:
		end = strlen(json);
		while (meta_space(json[start]))
			start++;
		while (end > start && meta_space(json[end - 1]))
			end--;
		meta_copy(out, out_len, json + start, end - start);
		break;
	default:
		rc = PT_ERROR;
		break;
	}
	json_decref(v);
	return rc;
}
