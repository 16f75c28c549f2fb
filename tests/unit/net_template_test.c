/*
 * net_template_test.c -- the Jinja subset of the injection API: what each
 * construct prints, and that everything outside the subset is refused at
 * compile time with its line.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "net/template.h"

static const char VARS[] = "{\"name\": \"Ada Lovelace\", \"n\": 42, \"r\": 2.0, \"f\": 1.25,"
			   " \"yes\": true, \"no\": false, \"nil\": null,"
			   " \"user\": {\"first\": \"Ada\", \"tags\": [\"a\", \"b\"]},"
			   " \"html\": \"<b>Tom & 'Jerry'</b>\", \"pad\": \"  x y  \","
			   " \"list\": [1, 2], \"obj\": {\"b\": 1, \"a\": \"x\"}}";

/* Render text with VARS (html mode as given); returns a static buffer. */
static const char *render(const char *text, bool html)
{
	static char result[4096];
	char err[256] = "";
	json_error_t je;
	json_t *vars = json_loads(VARS, 0, &je);
	struct template *t;
	struct pt_buf out = PT_BUF_INIT;
	int rc;

	cr_assert_not_null(vars, "%s", je.text);
	t = template_compile(text, strlen(text), html, err, sizeof(err));
	cr_assert_not_null(t, "compile %s: %s", text, err);
	rc = template_render(t, vars, SIZE_MAX, &out, err, sizeof(err));
	cr_assert_eq(rc, PT_OK, "render %s: %s", text, err);
	snprintf(result, sizeof(result), "%.*s", (int)out.len, out.data ? out.data : "");
	pt_buf_free(&out);
	template_free(t);
	json_decref(vars);
	return result;
}

static void check(const char *text, const char *want)
{
	cr_assert_str_eq(render(text, false), want, "template %s", text);
}

/* Compile must fail with exactly this error. */
static void refused(const char *text, const char *want)
{
	char err[256] = "";
	struct template *t = template_compile(text, strlen(text), false, err, sizeof(err));

	cr_assert_null(t, "template %s compiled", text);
	cr_assert_str_eq(err, want, "template %s", text);
}

Test(template, variables)
{
	check("Hello {{ name }}!", "Hello Ada Lovelace!");
	check("{{name}}|{{  name  }}", "Ada Lovelace|Ada Lovelace");
	check("{{ user.first }} {{ user['first'] }} {{ user.tags[1] }} {{ user.tags[-1] }}",
	      "Ada Ada b b");
	check("no tags here { } }} {x", "no tags here { } }} {x");
	check("line\n", "line"); /* one trailing newline dropped, as Jinja */
	check("line\n\n", "line\n");
	check("crlf\r\n", "crlf");
}

Test(template, value_printing)
{
	check("{{ n }} {{ r }} {{ f }} {{ yes }} {{ no }} {{ nil }}",
	      "42 2.0 1.25 true false none");
	check("{{ list }} {{ obj }}", "[1, 2] {\"a\": \"x\", \"b\": 1}");
	check("{{ 'lit' }} {{ \"q\\\"d\" }} {{ 7 }} {{ -3 }} {{ 0.5 }} {{ true }} {{ none }}",
	      "lit q\"d 7 -3 0.5 true none");
}

Test(template, undefined_prints_nothing)
{
	check("[{{ missing }}][{{ user.missing }}][{{ user.tags[9] }}][{{ name.x }}]", "[][][][]");
}

Test(template, attribute_of_undefined_is_a_render_error)
{
	char err[256] = "";
	struct template *t = template_compile("a\n{{ missing.x }}", 17, false, err, sizeof(err));
	struct pt_buf out = PT_BUF_INIT;

	cr_assert_not_null(t, "%s", err);
	cr_assert_eq(template_render(t, NULL, SIZE_MAX, &out, err, sizeof(err)), PT_ERROR);
	cr_assert_str_eq(err, "line 2: 'missing' is undefined, so it has no 'x'");
	pt_buf_free(&out);
	template_free(t);
}

Test(template, filters)
{
	check("{{ name | upper }} {{ name|lower }}", "ADA LOVELACE ada lovelace");
	check("{{ 'hello wORLD-x' | title }} {{ 'hello wORLD' | capitalize }}",
	      "Hello World-X Hello world");
	check("[{{ pad | trim }}]", "[x y]");
	check("{{ missing | default('anon') }} {{ name | d('anon') }} {{ missing | d(n) }}",
	      "anon Ada Lovelace 42");
	check("{{ nil | default('x') }}", "none"); /* only undefined takes the default */
	check("{{ n | upper }}", "42");
	check("{{ missing | default(user.first) | upper }}", "ADA");
	check("{{ html | e }}", "&lt;b&gt;Tom &amp; &#x27;Jerry&#x27;&lt;&#x2f;b&gt;");
}

Test(template, tojson_filter)
{
	check("{{ name | tojson }} {{ n | tojson }} {{ f | tojson }} {{ yes | tojson }}",
	      "\"Ada Lovelace\" 42 1.25 true");
	check("{{ nil | tojson }} {{ missing | tojson }}", "null null");
	check("{{ obj | tojson }} {{ list | tojson }}", "{\"a\":\"x\",\"b\":1} [1,2]");
	check("{{ 'a\"b\\\\c' | tojson }}", "\"a\\\"b\\\\c\"");
	/* safe: not HTML-escaped in an HTML template either */
	cr_assert_str_eq(render("{{ html | tojson }}", true), "\"<b>Tom & 'Jerry'</b>\"");
}

Test(template, html_mode_escapes_values_not_text)
{
	cr_assert_str_eq(render("<p>{{ html }}</p>", true),
			 "<p>&lt;b&gt;Tom &amp; &#x27;Jerry&#x27;&lt;&#x2f;b&gt;</p>");
	cr_assert_str_eq(render("<p>{{ html | safe }}</p>", true), "<p><b>Tom & 'Jerry'</b></p>");
	/* escape then auto-escape must not escape twice */
	cr_assert_str_eq(render("{{ html | e }}", true),
			 "&lt;b&gt;Tom &amp; &#x27;Jerry&#x27;&lt;&#x2f;b&gt;");
	cr_assert_str_eq(render("{{ name }}", true), "Ada Lovelace");
}

Test(template, comments_and_whitespace_control)
{
	check("a{# a comment {{ name }} #}b", "ab");
	check("a  {{- name -}}  \n b", "aAda Lovelaceb");
	check("a \n{#- c -#}\n b", "ab");
	check("x {{ name }} y", "x Ada Lovelace y");
}

Test(template, output_is_bounded)
{
	char err[256] = "";
	const char *text = "{{ name }}{{ name }}{{ name }}";
	struct template *t = template_compile(text, strlen(text), false, err, sizeof(err));
	json_t *vars = json_pack("{s:s}", "name", "0123456789");
	struct pt_buf out = PT_BUF_INIT;

	cr_assert_eq(template_render(t, vars, 30, &out, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(out.len, 30);
	out.len = 0;
	cr_assert_eq(template_render(t, vars, 29, &out, err, sizeof(err)), PT_ERROR);
	cr_assert_str_eq(err, "line 1: the text would exceed 29 octets");
	pt_buf_free(&out);
	json_decref(vars);
	template_free(t);
}

Test(template, static_detection)
{
	char err[128];
	struct template *a = template_compile("plain {# c #} text", 18, false, err, sizeof(err));
	struct template *b = template_compile("{{ x }}", 7, false, err, sizeof(err));

	cr_assert(template_is_static(a));
	cr_assert(!template_is_static(b));
	template_free(a);
	template_free(b);
}

Test(template, unsupported_syntax_is_refused)
{
	refused("ok\n{% if name %}x{% endif %}",
		"line 2: '{%' statements (if, for, set, ...) are not supported: Petrel's templates "
		"have {{ variables }} with filters, and {# comments #}");
	refused("{{ a + b }}", "line 1: '+' is not supported in an expression (Petrel's templates "
			       "print variables, literals and filters)");
	refused("{{ a ~ b }}", "line 1: '~' is not supported in an expression (Petrel's templates "
			       "print variables, literals and filters)");
	refused("{{ a b }}", "line 1: unsupported expression (Petrel's templates print a variable "
			     "or a literal, with filters) at 'b'");
	refused("{{ range(3) }}", "line 1: function calls are not supported at '3'");
	refused("{{ a | wordcount }}",
		"line 1: unknown filter 'wordcount' (Petrel has upper, lower, "
		"title, capitalize, trim, default, escape, safe, tojson)");
	refused("{{ a | default }}", "line 1: filter 'default' takes 1 argument");
	refused("{{ a | upper(1) }}", "line 1: too many filter arguments at '1'");
	refused("a\n\n{{ name", "line 3: '{{' is not closed");
	refused("{# open", "line 1: '{#' is not closed");
	refused("{{ }}", "line 1: empty expression");
	refused("{{ 'open }}", "line 1: string literal is not closed");
	refused("{{ a. }}", "line 1: expected an attribute name after '.' at the end of the "
			    "expression");
	refused("{{ a[b] }}", "line 1: expected a string or an integer index at 'b'");
	refused("{{ a is defined }}", "line 1: unsupported expression (Petrel's templates print a "
				      "variable or a literal, with filters) at 'is'");
}
