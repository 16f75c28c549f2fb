/*
 * template.c -- the Jinja subset of template.h: compiled once per request
 * into a list of nodes (text runs and expressions), rendered once per
 * recipient.
 *
 * Compiling.  One pass over the text finds the tags "{{", "{#" and "{%".
 * Text between them becomes a TEXT node (a run of the owned copy); "{{ ...
 * }}" is tokenised and parsed into an EXPR node: an operand (a name with a
 * path of attribute and index steps, or a literal) and up to
 * TEMPLATE_FILTERS_MAX filters.  Whitespace control ("{{-", "-}}") trims
 * the neighbouring TEXT runs at compile time.  "{%" is refused: statements
 * are outside the subset (template.h).
 *
 * Rendering.  Each EXPR resolves its operand against the variables (a
 * jansson object), runs its filters, and prints the value.  A value is a
 * borrowed json_t, or a string a filter made (owned), plus two flags:
 * undefined (a name or attribute that does not exist) and safe (not to be
 * escaped).  Nothing is kept between renders, so one compiled template
 * serves every recipient.
 */
#include "net/template.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEMPLATE_PATH_MAX    16 /* attribute/index steps after a name */
#define TEMPLATE_FILTERS_MAX 8	/* filters in one expression */
#define TEMPLATE_TOKEN_MAX   64 /* tokens in one expression */

enum filter_kind {
	FILTER_UPPER,
	FILTER_LOWER,
	FILTER_TITLE,
	FILTER_CAPITALIZE,
	FILTER_TRIM,
	FILTER_DEFAULT,
	FILTER_ESCAPE,
	FILTER_SAFE,
	FILTER_TOJSON,
};

static const struct {
	const char *name;
	enum filter_kind kind;
	int n_args; /* exactly this many */
} filters[] = {
    {"upper", FILTER_UPPER, 0}, {"lower", FILTER_LOWER, 0},
    {"title", FILTER_TITLE, 0}, {"capitalize", FILTER_CAPITALIZE, 0},
    {"trim", FILTER_TRIM, 0},	{"default", FILTER_DEFAULT, 1},
    {"d", FILTER_DEFAULT, 1},	{"escape", FILTER_ESCAPE, 0},
    {"e", FILTER_ESCAPE, 0},	{"safe", FILTER_SAFE, 0},
    {"tojson", FILTER_TOJSON, 0},
};

struct step {
	char *key;  /* attribute or string index; NULL for an integer index */
	long index; /* integer index (negative counts from the end) */
};

/* A name with its path, or a literal. */
struct operand {
	char *name; /* NULL: a literal */
	struct step *path;
	size_t n_path;
	json_t *literal; /* owned */
};

struct filter {
	enum filter_kind kind;
	struct operand arg; /* FILTER_DEFAULT */
};

enum node_kind { NODE_TEXT, NODE_EXPR };

struct node {
	enum node_kind kind;
	int line;
	size_t off, len; /* TEXT: the run in t->text */
	struct operand operand;
	struct filter filters[TEMPLATE_FILTERS_MAX];
	size_t n_filters;
};

struct template
{
	char *text;
	bool html;
	struct node *nodes;
	size_t n_nodes, cap_nodes;
};

/* ---- errors ------------------------------------------------------------- */

static void __attribute__((format(printf, 4, 5)))
tpl_err(char *err, size_t err_len, int line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (err == NULL || err_len == 0)
		return;
	n = snprintf(err, err_len, "line %d: ", line);
	if (n < 0 || (size_t)n >= err_len)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, err_len - (size_t)n, fmt, ap);
	va_end(ap);
}

/* ---- tokens --------------------------------------------------------------- */

enum tok_kind { TOK_NAME, TOK_STRING, TOK_NUMBER, TOK_PUNCT };

struct token {
	enum tok_kind kind;
	const char *p; /* in the expression text */
	size_t n;
	char *str; /* TOK_STRING: the unescaped value (owned) */
};

struct lexer {
	struct token toks[TEMPLATE_TOKEN_MAX];
	size_t n, pos;
	int line;
	char *err;
	size_t err_len;
};

static void lexer_free(struct lexer *lx)
{
	for (size_t i = 0; i < lx->n; i++)
		free(lx->toks[i].str);
}

/* A quoted literal starting at p (quote char *p); sets *end past it. */
static char *lex_string(const char *p, const char *end, const char **after)
{
	char q = *p++;
	char *out = malloc((size_t)(end - p) + 1), *o = out;

	if (out == NULL)
		return NULL;
	while (p < end && *p != q) {
		if (*p == '\\' && p + 1 < end) {
			p++;
			switch (*p) {
			case 'n':
				*o++ = '\n';
				break;
			case 't':
				*o++ = '\t';
				break;
			case 'r':
				*o++ = '\r';
				break;
			default:
				*o++ = *p;
				break;
			}
			p++;
			continue;
		}
		*o++ = *p++;
	}
	*o = '\0';
	if (p >= end) {
		free(out);
		*after = NULL;
		return NULL;
	}
	*after = p + 1;
	return out;
}

/* Tokenise expr[0, n).  PT_OK or PT_ERROR (err filled). */
static int lex(struct lexer *lx, const char *p, const char *end)
{
	while (p < end) {
		struct token *t;

		if (isspace((unsigned char)*p)) {
			p++;
			continue;
		}
		if (lx->n == TEMPLATE_TOKEN_MAX) {
			tpl_err(lx->err, lx->err_len, lx->line, "expression too long");
			return PT_ERROR;
		}
		t = &lx->toks[lx->n];
		*t = (struct token){.p = p};
		if (isalpha((unsigned char)*p) || *p == '_') {
			while (p < end && (isalnum((unsigned char)*p) || *p == '_'))
				p++;
			t->kind = TOK_NAME;
		} else if (isdigit((unsigned char)*p) ||
			   (*p == '-' && p + 1 < end && isdigit((unsigned char)p[1]))) {
			p++;
			while (p < end && (isdigit((unsigned char)*p) || *p == '.'))
				p++;
			t->kind = TOK_NUMBER;
		} else if (*p == '"' || *p == '\'') {
			const char *after;

			t->kind = TOK_STRING;
			t->str = lex_string(p, end, &after);
			if (t->str == NULL) {
				tpl_err(lx->err, lx->err_len, lx->line,
					after == NULL ? "string literal is not closed"
						      : "out of memory");
				return PT_ERROR;
			}
			p = after;
		} else if (*p != '\0' && strchr(".[]|(),", *p) != NULL) {
			t->kind = TOK_PUNCT;
			p++;
		} else {
			tpl_err(lx->err, lx->err_len, lx->line,
				"'%c' is not supported in an expression (Petrel's templates "
				"print variables, literals and filters)",
				*p);
			return PT_ERROR;
		}
		t->n = (size_t)(p - t->p);
		lx->n++;
	}
	return PT_OK;
}

static const struct token *lex_peek(const struct lexer *lx)
{
	return lx->pos < lx->n ? &lx->toks[lx->pos] : NULL;
}

static bool lex_punct(struct lexer *lx, char c)
{
	const struct token *t = lex_peek(lx);

	if (t == NULL || t->kind != TOK_PUNCT || t->p[0] != c)
		return false;
	lx->pos++;
	return true;
}

static bool tok_is(const struct token *t, const char *word)
{
	return t->kind == TOK_NAME && t->n == strlen(word) && memcmp(t->p, word, t->n) == 0;
}

/* ---- parsing ---------------------------------------------------------------- */

static void operand_free(struct operand *o)
{
	for (size_t i = 0; i < o->n_path; i++)
		free(o->path[i].key);
	free(o->path);
	free(o->name);
	json_decref(o->literal);
	*o = (struct operand){0};
}

static int parse_fail(struct lexer *lx, const char *what)
{
	const struct token *t = lex_peek(lx);

	if (t == NULL)
		tpl_err(lx->err, lx->err_len, lx->line, "%s at the end of the expression", what);
	else
		tpl_err(lx->err, lx->err_len, lx->line, "%s at '%.*s'", what, (int)t->n, t->p);
	return PT_ERROR;
}

static int parse_literal(struct lexer *lx, const struct token *t, struct operand *o)
{
	if (t->kind == TOK_STRING) {
		o->literal = json_string(t->str);
	} else if (t->kind == TOK_NUMBER) {
		char buf[64], *end;

		snprintf(buf, sizeof(buf), "%.*s", (int)t->n, t->p);
		errno = 0;
		if (memchr(t->p, '.', t->n) != NULL) {
			double d = strtod(buf, &end);

			if (*end != '\0' || errno != 0)
				return parse_fail(lx, "bad number");
			o->literal = json_real(d);
		} else {
			long long v = strtoll(buf, &end, 10);

			if (*end != '\0' || errno != 0)
				return parse_fail(lx, "bad number");
			o->literal = json_integer(v);
		}
	} else if (tok_is(t, "true") || tok_is(t, "false")) {
		o->literal = json_boolean(tok_is(t, "true"));
	} else {
		o->literal = json_null(); /* none */
	}
	if (o->literal == NULL) {
		tpl_err(lx->err, lx->err_len, lx->line, "out of memory");
		return PT_ERROR;
	}
	return PT_OK;
}

/* One step: "." name, or "[" (string | integer) "]".  PT_OK with *st
 * filled, PT_DECLINED when no step follows, PT_ERROR. */
static int parse_step(struct lexer *lx, struct step *st)
{
	const struct token *t;

	*st = (struct step){NULL, 0};
	if (lex_punct(lx, '.')) {
		t = lex_peek(lx);
		if (t == NULL || t->kind != TOK_NAME)
			return parse_fail(lx, "expected an attribute name after '.'");
		lx->pos++;
		if ((st->key = strndup(t->p, t->n)) == NULL)
			return parse_fail(lx, "out of memory");
		return PT_OK;
	}
	if (!lex_punct(lx, '['))
		return PT_DECLINED;
	t = lex_peek(lx);
	if (t != NULL && t->kind == TOK_STRING) {
		if ((st->key = strdup(t->str)) == NULL)
			return parse_fail(lx, "out of memory");
	} else if (t != NULL && t->kind == TOK_NUMBER && memchr(t->p, '.', t->n) == NULL) {
		st->index = strtol(t->p, NULL, 10);
	} else {
		return parse_fail(lx, "expected a string or an integer index");
	}
	lx->pos++;
	if (!lex_punct(lx, ']')) {
		free(st->key);
		st->key = NULL;
		return parse_fail(lx, "expected ']'");
	}
	return PT_OK;
}

/* name ("." name | "[" (string | integer) "]")* */
static int parse_path(struct lexer *lx, struct operand *o)
{
	for (;;) {
		struct step st;
		int rc = parse_step(lx, &st);

		if (rc == PT_DECLINED)
			return PT_OK;
		if (rc != PT_OK)
			return rc;
		if (o->n_path == TEMPLATE_PATH_MAX) {
			free(st.key);
			return parse_fail(lx, "path too long");
		}
		if (o->path == NULL &&
		    (o->path = calloc(TEMPLATE_PATH_MAX, sizeof(*o->path))) == NULL) {
			free(st.key);
			return parse_fail(lx, "out of memory");
		}
		o->path[o->n_path++] = st;
	}
}

static int parse_operand(struct lexer *lx, struct operand *o)
{
	const struct token *t = lex_peek(lx);

	if (t == NULL)
		return parse_fail(lx, "expected a name or a literal");
	if (t->kind == TOK_PUNCT)
		return parse_fail(lx, "expected a name or a literal");
	lx->pos++;
	if (t->kind != TOK_NAME || tok_is(t, "true") || tok_is(t, "false") || tok_is(t, "none"))
		return parse_literal(lx, t, o);
	if ((o->name = strndup(t->p, t->n)) == NULL)
		return parse_fail(lx, "out of memory");
	if (lex_punct(lx, '('))
		return parse_fail(lx, "function calls are not supported");
	return parse_path(lx, o);
}

static int parse_filter(struct lexer *lx, struct filter *f)
{
	const struct token *t = lex_peek(lx);
	size_t i;
	int n_args = 0;

	if (t == NULL || t->kind != TOK_NAME)
		return parse_fail(lx, "expected a filter name after '|'");
	for (i = 0; i < PT_ARRAY_LEN(filters); i++)
		if (tok_is(t, filters[i].name))
			break;
	if (i == PT_ARRAY_LEN(filters)) {
		tpl_err(lx->err, lx->err_len, lx->line,
			"unknown filter '%.*s' (Petrel has upper, lower, title, capitalize, trim, "
			"default, escape, safe, tojson)",
			(int)t->n, t->p);
		return PT_ERROR;
	}
	lx->pos++;
	f->kind = filters[i].kind;
	if (lex_punct(lx, '(')) {
		while (!lex_punct(lx, ')')) {
			if (n_args > 0 && !lex_punct(lx, ','))
				return parse_fail(lx, "expected ',' or ')'");
			if (n_args == filters[i].n_args)
				return parse_fail(lx, "too many filter arguments");
			if (parse_operand(lx, &f->arg) != PT_OK)
				return PT_ERROR;
			n_args++;
		}
	}
	if (n_args != filters[i].n_args) {
		tpl_err(lx->err, lx->err_len, lx->line, "filter '%s' takes %d argument%s",
			filters[i].name, filters[i].n_args, filters[i].n_args == 1 ? "" : "s");
		return PT_ERROR;
	}
	return PT_OK;
}

/* operand ("|" filter)* over the whole token list. */
static int parse_expr(struct lexer *lx, struct node *nd)
{
	if (parse_operand(lx, &nd->operand) != PT_OK)
		return PT_ERROR;
	while (lex_punct(lx, '|')) {
		if (nd->n_filters == TEMPLATE_FILTERS_MAX)
			return parse_fail(lx, "too many filters");
		if (parse_filter(lx, &nd->filters[nd->n_filters++]) != PT_OK)
			return PT_ERROR;
	}
	if (lex_peek(lx) != NULL)
		return parse_fail(lx, "unsupported expression (Petrel's templates print a "
				      "variable or a literal, with filters)");
	return PT_OK;
}

/* ---- compiling ------------------------------------------------------------------ */

static struct node *tpl_node(struct template *t)
{
	if (t->n_nodes == t->cap_nodes) {
		size_t cap = t->cap_nodes ? t->cap_nodes * 2 : 8;
		struct node *n = realloc(t->nodes, cap * sizeof(*n));

		if (n == NULL)
			return NULL;
		t->nodes = n;
		t->cap_nodes = cap;
	}
	memset(&t->nodes[t->n_nodes], 0, sizeof(t->nodes[0]));
	return &t->nodes[t->n_nodes++];
}

static int tpl_text(struct template *t, size_t off, size_t len, int line)
{
	struct node *nd;

	if (len == 0)
		return PT_OK;
	if ((nd = tpl_node(t)) == NULL)
		return PT_NOMEM;
	nd->kind = NODE_TEXT;
	nd->off = off;
	nd->len = len;
	nd->line = line;
	return PT_OK;
}

static int lines_between(const char *a, const char *b)
{
	int n = 0;

	for (; a < b; a++)
		n += *a == '\n';
	return n;
}

/* "{{-": trim the whitespace at the end of the previous text node. */
static void trim_previous(struct template *t)
{
	struct node *nd;

	if (t->n_nodes == 0 || (nd = &t->nodes[t->n_nodes - 1])->kind != NODE_TEXT)
		return;
	while (nd->len > 0 && isspace((unsigned char)t->text[nd->off + nd->len - 1]))
		nd->len--;
}

/* One "{{ ... }}" at text[open, close) (inside the braces).  PT_OK or PT_ERROR. */
static int tpl_expr(struct template *t, const char *p, const char *end, int line, char *err,
		    size_t err_len)
{
	struct lexer lx = {.line = line, .err = err, .err_len = err_len};
	struct node *nd;
	int rc;

	if (lex(&lx, p, end) != PT_OK) {
		lexer_free(&lx);
		return PT_ERROR;
	}
	if (lx.n == 0) {
		lexer_free(&lx);
		tpl_err(err, err_len, line, "empty expression");
		return PT_ERROR;
	}
	if ((nd = tpl_node(t)) == NULL) {
		lexer_free(&lx);
		tpl_err(err, err_len, line, "out of memory");
		return PT_ERROR;
	}
	nd->kind = NODE_EXPR;
	nd->line = line;
	rc = parse_expr(&lx, nd);
	lexer_free(&lx);
	return rc;
}

/* Parse every tag of t->text[0, len). */
static int tpl_parse(struct template *t, size_t len, char *err, size_t err_len)
{
	const char *text = t->text, *p = text, *end = text + len;
	int line = 1;
	bool trim_next = false;

	while (p < end) {
		const char *open = memchr(p, '{', (size_t)(end - p)), *close, *inner, *inner_end;
		char kind;

		/* The next tag: "{{", "{#" or "{%"; any other '{' is text. */
		while (open != NULL && open + 1 < end && open[1] != '{' && open[1] != '#' &&
		       open[1] != '%')
			open = memchr(open + 1, '{', (size_t)(end - open - 1));
		if (open == NULL || open + 1 >= end)
			open = end;
		if (trim_next)
			while (p < open && isspace((unsigned char)*p))
				line += *p++ == '\n';
		trim_next = false;
		if (tpl_text(t, (size_t)(p - text), (size_t)(open - p), line) != PT_OK)
			goto nomem;
		line += lines_between(p, open);
		if (open == end)
			break;
		kind = open[1];
		if (kind == '%') {
			tpl_err(err, err_len, line,
				"'{%%' statements (if, for, set, ...) are not supported: Petrel's "
				"templates have {{ variables }} with filters, and {# comments #}");
			return PT_ERROR;
		}
		close = memmem(open + 2, (size_t)(end - open - 2), kind == '{' ? "}}" : "#}", 2);
		if (close == NULL) {
			tpl_err(err, err_len, line, "'%.2s' is not closed", open);
			return PT_ERROR;
		}
		inner = open + 2;
		inner_end = close;
		if (inner < inner_end && *inner == '-') {
			trim_previous(t);
			inner++;
		}
		if (inner < inner_end && inner_end[-1] == '-') {
			trim_next = true;
			inner_end--;
		}
		if (kind == '{' && tpl_expr(t, inner, inner_end, line, err, err_len) != PT_OK)
			return PT_ERROR;
		line += lines_between(open, close);
		p = close + 2;
	}
	return PT_OK;
nomem:
	tpl_err(err, err_len, line, "out of memory");
	return PT_ERROR;
}

struct template *template_compile(const char *text, size_t len, bool html, char *err,
				  size_t err_len)
{
	struct template *t = calloc(1, sizeof(*t));

	if (t == NULL || (t->text = malloc(len + 1)) == NULL) {
		free(t);
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	memcpy(t->text, text, len);
	t->text[len] = '\0';
	t->html = html;
	/* Jinja drops one trailing newline of the template (keep_trailing_newline off). */
	if (len > 0 && t->text[len - 1] == '\n')
		len -= (len > 1 && t->text[len - 2] == '\r') ? 2 : 1;
	if (tpl_parse(t, len, err, err_len) != PT_OK) {
		template_free(t);
		return NULL;
	}
	return t;
}

struct template *template_static(const char *text, size_t len)
{
	struct template *t = calloc(1, sizeof(*t));

	if (t == NULL || (t->text = malloc(len + 1)) == NULL) {
		free(t);
		return NULL;
	}
	memcpy(t->text, text, len);
	t->text[len] = '\0';
	if (tpl_text(t, 0, len, 1) != PT_OK) {
		template_free(t);
		return NULL;
	}
	return t;
}

void template_free(struct template *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n_nodes; i++) {
		operand_free(&t->nodes[i].operand);
		for (size_t k = 0; k < t->nodes[i].n_filters; k++)
			operand_free(&t->nodes[i].filters[k].arg);
	}
	free(t->nodes);
	free(t->text);
	free(t);
}

bool template_is_static(const struct template *t)
{
	for (size_t i = 0; i < t->n_nodes; i++)
		if (t->nodes[i].kind == NODE_EXPR)
			return false;
	return true;
}

/* ---- values ---------------------------------------------------------------------- */

struct value {
	const json_t *j; /* NULL when undefined */
	json_t *owned;	 /* a filter's result, freed with the value */
	bool safe;
};

static void value_set_owned(struct value *v, json_t *j)
{
	json_decref(v->owned);
	v->owned = j;
	v->j = j;
}

/* The shortest text that reads back as d, with ".0" for whole numbers (Rust's Display). */
static void print_real(double d, char out[40])
{
	if (isnan(d)) {
		strcpy(out, "NaN");
		return;
	}
	if (isinf(d)) {
		strcpy(out, d < 0 ? "-inf" : "inf");
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, 40, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			break;
	}
	if (strpbrk(out, ".e") == NULL)
		strcat(out, ".0");
}

/* The printed form of a defined value.  PT_OK or PT_NOMEM. */
static int value_print(const json_t *j, struct pt_buf *out)
{
	char num[40];

	switch (json_typeof(j)) {
	case JSON_STRING:
		return pt_buf_append(out, json_string_value(j), json_string_length(j));
	case JSON_INTEGER:
		return pt_buf_printf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
	case JSON_REAL:
		print_real(json_real_value(j), num);
		return pt_buf_append_str(out, num);
	case JSON_TRUE:
		return pt_buf_append_str(out, "true");
	case JSON_FALSE:
		return pt_buf_append_str(out, "false");
	case JSON_NULL:
		return pt_buf_append_str(out, "none");
	default: {
		char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_SORT_KEYS);
		int rc;

		if (s == NULL)
			return PT_NOMEM;
		rc = pt_buf_append_str(out, s);
		free(s);
		return rc;
	}
	}
}

/* MiniJinja's HTML escaping. */
static int html_escape(const char *p, size_t n, struct pt_buf *out)
{
	int rc = PT_OK;

	for (size_t i = 0; i < n && rc == PT_OK; i++) {
		switch (p[i]) {
		case '&':
			rc = pt_buf_append_str(out, "&amp;");
			break;
		case '<':
			rc = pt_buf_append_str(out, "&lt;");
			break;
		case '>':
			rc = pt_buf_append_str(out, "&gt;");
			break;
		case '"':
			rc = pt_buf_append_str(out, "&quot;");
			break;
		case '\'':
			rc = pt_buf_append_str(out, "&#x27;");
			break;
		case '/':
			rc = pt_buf_append_str(out, "&#x2f;");
			break;
		default:
			rc = pt_buf_append(out, p + i, 1);
			break;
		}
	}
	return rc;
}

/* Resolve an operand.  PT_OK (v->j NULL when undefined) or PT_ERROR (err). */
static int resolve(const struct operand *o, const json_t *vars, struct value *v, int line,
		   char *err, size_t err_len)
{
	const json_t *j;

	*v = (struct value){0};
	if (o->name == NULL) {
		v->j = o->literal;
		return PT_OK;
	}
	j = vars != NULL && json_is_object(vars) ? json_object_get(vars, o->name) : NULL;
	for (size_t i = 0; i < o->n_path; i++) {
		const struct step *st = &o->path[i];

		if (j == NULL) {
			tpl_err(err, err_len, line, "'%s' is undefined, so it has no '%s'", o->name,
				st->key ? st->key : "[index]");
			return PT_ERROR;
		}
		if (st->key != NULL) {
			j = json_is_object(j) ? json_object_get(j, st->key) : NULL;
		} else if (json_is_array(j)) {
			long n = (long)json_array_size(j),
			     k = st->index < 0 ? n + st->index : st->index;

			j = k >= 0 && k < n ? json_array_get(j, (size_t)k) : NULL;
		} else {
			j = NULL;
		}
	}
	v->j = j;
	return PT_OK;
}

/* The value as a string (undefined: ""); a new reference, NULL on no memory. */
static json_t *value_string(const struct value *v)
{
	struct pt_buf b = PT_BUF_INIT;
	json_t *s;

	if (v->j == NULL)
		return json_string("");
	if (json_is_string(v->j))
		return json_incref((json_t *)v->j);
	if (value_print(v->j, &b) != PT_OK) {
		pt_buf_free(&b);
		return NULL;
	}
	s = json_stringn(b.data ? b.data : "", b.len);
	pt_buf_free(&b);
	return s;
}

/* Change case in place (ASCII letters only): upper, lower, title (first
 * letter of each word up, the rest down), capitalize (first letter up, the
 * rest down), as Jinja's filters. */
static void case_map(char *s, enum filter_kind k)
{
	bool start = true;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (k == FILTER_UPPER)
			*s = (char)toupper(c);
		else if (k == FILTER_LOWER)
			*s = (char)tolower(c);
		else
			*s = (char)(start ? toupper(c) : tolower(c));
		if (k == FILTER_TITLE)
			start = !isalnum(c) && c < 0x80;
		else
			start = false;
	}
}

/* Jinja's tojson: the value as compact JSON text (undefined: null), safe
 * (it is meant to go into JSON as it is). */
static int filter_tojson(struct value *v)
{
	char *text =
	    json_dumps(v->j ? v->j : json_null(), JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
	json_t *s;

	if (text == NULL)
		return PT_NOMEM;
	s = json_string(text);
	free(text);
	if (s == NULL)
		return PT_NOMEM;
	value_set_owned(v, s);
	v->safe = true;
	return PT_OK;
}

static int apply_filter(const struct filter *f, struct value *v, const json_t *vars, int line,
			char *err, size_t err_len)
{
	json_t *s;
	char *copy;

	switch (f->kind) {
	case FILTER_DEFAULT:
		if (v->j == NULL) {
			struct value d;

			if (resolve(&f->arg, vars, &d, line, err, err_len) != PT_OK)
				return PT_ERROR;
			v->j = d.j;
			v->safe = false;
		}
		return PT_OK;
	case FILTER_SAFE:
		v->safe = true;
		return PT_OK;
	case FILTER_TOJSON:
		return filter_tojson(v);
	case FILTER_ESCAPE: {
		struct pt_buf b = PT_BUF_INIT;
		int rc;

		if (v->safe)
			return PT_OK; /* escaping twice would show the entities */
		if ((s = value_string(v)) == NULL)
			return PT_NOMEM;
		rc = html_escape(json_string_value(s), json_string_length(s), &b);
		json_decref(s);
		if (rc != PT_OK || (s = json_stringn(b.data ? b.data : "", b.len)) == NULL) {
			pt_buf_free(&b);
			return PT_NOMEM;
		}
		pt_buf_free(&b);
		value_set_owned(v, s);
		v->safe = true;
		return PT_OK;
	}
	default:
		break;
	}
	if ((s = value_string(v)) == NULL || (copy = strdup(json_string_value(s))) == NULL) {
		json_decref(s);
		return PT_NOMEM;
	}
	json_decref(s);
	if (f->kind == FILTER_TRIM) {
		char *a = copy, *b = copy + strlen(copy);

		while (*a && isspace((unsigned char)*a))
			a++;
		while (b > a && isspace((unsigned char)b[-1]))
			b--;
		*b = '\0';
		memmove(copy, a, (size_t)(b - a) + 1);
	} else {
		case_map(copy, f->kind);
	}
	s = json_string(copy);
	free(copy);
	if (s == NULL)
		return PT_NOMEM;
	value_set_owned(v, s);
	return PT_OK;
}

static int render_expr(const struct template *t, const struct node *nd, const json_t *vars,
		       struct pt_buf *out, char *err, size_t err_len)
{
	struct value v;
	struct pt_buf text = PT_BUF_INIT;
	int rc;

	if (resolve(&nd->operand, vars, &v, nd->line, err, err_len) != PT_OK)
		return PT_ERROR;
	for (size_t i = 0; i < nd->n_filters; i++) {
		rc = apply_filter(&nd->filters[i], &v, vars, nd->line, err, err_len);
		if (rc != PT_OK) {
			json_decref(v.owned);
			if (rc == PT_NOMEM)
				tpl_err(err, err_len, nd->line, "out of memory");
			return rc;
		}
	}
	rc = v.j == NULL ? PT_OK : value_print(v.j, &text);
	if (rc == PT_OK && text.len > 0)
		rc = t->html && !v.safe ? html_escape(text.data, text.len, out)
					: pt_buf_append(out, text.data, text.len);
	pt_buf_free(&text);
	json_decref(v.owned);
	if (rc != PT_OK)
		tpl_err(err, err_len, nd->line, "out of memory");
	return rc;
}

int template_render(const struct template *t, const json_t *vars, size_t max_len,
		    struct pt_buf *out, char *err, size_t err_len)
{
	for (size_t i = 0; i < t->n_nodes; i++) {
		const struct node *nd = &t->nodes[i];
		int rc;

		if (nd->kind == NODE_TEXT)
			rc = pt_buf_append(out, t->text + nd->off, nd->len);
		else
			rc = render_expr(t, nd, vars, out, err, err_len);
		if (rc == PT_NOMEM && nd->kind == NODE_TEXT)
			tpl_err(err, err_len, nd->line, "out of memory");
		if (rc != PT_OK)
			return rc;
		/* Checked per node: one value is bounded by the request that carried it. */
		if (out->len > max_len) {
			tpl_err(err, err_len, nd->line, "the text would exceed %zu octets",
				max_len);
			return PT_ERROR;
		}
	}
	return PT_OK;
}
