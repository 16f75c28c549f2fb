/*
 * template.h -- the subset of Jinja (KumoMTA's injection API uses
 * MiniJinja) that Petrel's HTTP injection renders:
 *
 *   {{ name }}, {{ user.first }}, {{ items[0] }}, {{ map["key"] }}
 *   filters   {{ name | upper }}: upper, lower, title, capitalize, trim,
 *             default(x) (alias d), escape (alias e), safe, tojson (the
 *             value as compact JSON, sorted keys, undefined as null; safe)
 *   literals  "text", 'text', 42, 1.5, true, false, none (filter arguments,
 *             or printed on their own)
 *   {# comments #}, and "-" whitespace control on either side of a tag
 *
 * Anything else -- {% if %}, {% for %}, operators, function calls, tests --
 * is refused when the template is compiled, with the line, rather than
 * printed as text: a template a sender wrote for KumoMTA never goes out
 * half-expanded.
 *
 * Values are JSON (jansson).  Printed as MiniJinja prints them: strings as
 * they are, integers in decimal, reals in their shortest form ("2.0"),
 * true/false, null as "none", lists and objects as JSON.  An undefined
 * name prints as nothing (MiniJinja's lenient default); reading an
 * attribute of an undefined name is an error.  As in Jinja, one trailing
 * newline of the template is dropped.  With html set (an HTML body),
 * every printed value is HTML-escaped unless it went through `safe`
 * (MiniJinja's auto-escaping of .html templates).
 */
#ifndef PT_TEMPLATE_H
#define PT_TEMPLATE_H

#include <jansson.h>

#include "core/buf.h"

struct template;

/*
 * Compile text[0, len) (copied).  NULL with err = "line N: what is wrong"
 * for a syntax error or a construct outside the subset above, or "out of
 * memory".
 */
struct template *template_compile(const char *text, size_t len, bool html, char *err,
				  size_t err_len);
/* A template that is text only: rendering copies text[0, len) as it is
 * (KumoMTA's "Static" dialect; no trailing newline is dropped).  NULL on
 * allocation failure. */
struct template *template_static(const char *text, size_t len);
/*
 * Append the template rendered with vars (a JSON object, or NULL for none;
 * not changed) to out.  PT_OK, PT_ERROR with err = "line N: ..." (an
 * attribute of an undefined name, or out->len would pass max_len: a small
 * template can repeat a large value), or PT_NOMEM.  On failure out may
 * hold part of the text.
 */
int template_render(const struct template *t, const json_t *vars, size_t max_len,
		    struct pt_buf *out, char *err, size_t err_len);
/* True when the template prints no value (plain text and comments only). */
bool template_is_static(const struct template *t);
void template_free(struct template *t);

#endif
