/*
 * inject.c -- reading an injection request (KumoMTA's InjectV1Request)
 * and rendering its messages.
 *
 * Checking.  The body is parsed with jansson (duplicate keys refused) and
 * every field is checked before anything is generated: a wrong type, a
 * missing field, an unknown field, a template that does not compile or an
 * attachment that is not base64 fails the whole request with one error
 * naming the field ("content.attachments[1].data is not valid base64"),
 * which the HTTP layer answers 400.  KumoMTA's own fields Petrel lacks
 * (trace_headers, amp_html_body, the Handlebars dialect, deferred
 * generation or spooling) are refused by name rather than ignored: a
 * sender relying on one must know it has no effect.  As in KumoMTA, a
 * recipient address that does not parse fails only that recipient.
 *
 * Rendering.  One call per recipient: the variables (global
 * substitutions, email, name, to_header, the recipient's own
 * substitutions, later ones winning) are put in a fresh JSON object and
 * the whole-message template, or the builder (inject_mime.c), renders
 * with it.  A whole message gets its line ends made CRLF, as KumoMTA
 * does, and must start with a header field.
 */
#include "net/inject_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define INJECT_ERR_MAX 512

/* What a check failure carries up. */
struct parse_ctx {
	char *err;
	size_t err_len;
	bool nomem;
};

static int __attribute__((format(printf, 2, 3))) fail(struct parse_ctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, c->err_len, fmt, ap);
	va_end(ap);
	return PT_ERROR;
}

static int nomem(struct parse_ctx *c)
{
	c->nomem = true;
	return fail(c, "out of memory");
}

static const char *type_name(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "a list";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	default:
		return "null";
	}
}

static bool name_in(const char *const *list, const char *name)
{
	for (; *list; list++)
		if (strcmp(*list, name) == 0)
			return true;
	return false;
}

/* Every key of obj must be in known; KumoMTA's keys in kumo_only are named as such. */
static int check_keys(struct parse_ctx *c, const json_t *obj, const char *where,
		      const char *const *known, const char *const *kumo_only)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v)
	{
		(void)v;
		if (name_in(known, key))
			continue;
		if (kumo_only && name_in(kumo_only, key))
			return fail(c, "%s%s'%s' is a KumoMTA field Petrel does not support yet",
				    where, where[0] ? ": " : "", key);
		return fail(c, "%s%sunknown field '%s'", where, where[0] ? ": " : "", key);
	}
	return PT_OK;
}

/* A string field (NULL when absent and optional; JSON null counts as absent). */
static int get_string(struct parse_ctx *c, const json_t *obj, const char *key, const char *where,
		      bool required, char **out)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (required)
			return fail(c, "%s%s is required", where, key);
		return PT_OK;
	}
	if (!json_is_string(v))
		return fail(c, "%s%s must be a string, got %s", where, key, type_name(v));
	if ((*out = strndup(json_string_value(v), json_string_length(v))) == NULL)
		return nomem(c);
	if (strlen(*out) != json_string_length(v)) {
		free(*out);
		*out = NULL;
		return fail(c, "%s%s contains a NUL character", where, key);
	}
	return PT_OK;
}

static int get_object(struct parse_ctx *c, const json_t *obj, const char *key, const char *where,
		      json_t **out)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return PT_OK;
	if (!json_is_object(v))
		return fail(c, "%s%s must be an object, got %s", where, key, type_name(v));
	*out = v;
	return PT_OK;
}

/*
 * An envelope address "local@domain" (no angle brackets, no spaces or
 * control characters; the domain a name of letters, digits, '-' and '.',
 * UTF-8, or an address literal in brackets).
 */
static bool address_ok(const char *a)
{
	const char *at = strrchr(a, '@'), *d;

	if (at == NULL || at == a || at[1] == '\0' || at - a > 64 || strlen(at + 1) > 255)
		return false;
	for (const char *p = a; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || strchr("<>,;()\\", *p) != NULL)
			return false;
	d = at + 1;
	if (d[0] == '[')
		return d[strlen(d) - 1] == ']';
	for (; *d; d++)
		if (!isalnum((unsigned char)*d) && *d != '-' && *d != '.' &&
		    (unsigned char)*d < 0x80)
			return false;
	return at[1] != '.' && at[strlen(at) - 1] != '.';
}

/* A display name goes into a header field: no control characters but tab. */
static bool display_name_ok(const char *n)
{
	for (; *n; n++)
		if (((unsigned char)*n < ' ' && *n != '\t') || *n == 0x7f)
			return false;
	return true;
}

/* ---- the request --------------------------------------------------------------- */

static const char *const request_keys[] = {
    "envelope_sender", "recipients",	      "content", "substitutions", "template_dialect",
    "deferred_spool",  "deferred_generation", NULL,
};
static const char *const request_kumo_only[] = {"trace_headers", NULL};
static const char *const recipient_keys[] = {"email", "name", "substitutions", "metadata", NULL};
static const char *const content_keys[] = {
    "subject", "from", "reply_to", "text_body", "html_body", "headers", "attachments", NULL,
};
static const char *const content_kumo_only[] = {"amp_html_body", NULL};
static const char *const mailbox_keys[] = {"email", "name", NULL};
static const char *const attachment_keys[] = {
    "data", "base64", "content_type", "file_name", "content_id", NULL,
};

/* The header fields whose values the builder must write itself. */
static const char *const reserved_headers[] = {
    "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", NULL,
};

struct compile_ctx {
	struct parse_ctx *c;
	bool is_static;
};

static int compile(struct compile_ctx *cc, const char *what, const char *text, size_t len,
		   bool html, struct template **out)
{
	char terr[INJECT_ERR_MAX];

	if (cc->is_static) {
		*out = template_static(text, len);
		return *out ? PT_OK : nomem(cc->c);
	}
	*out = template_compile(text, len, html, terr, sizeof(terr));
	if (*out == NULL)
		return strcmp(terr, "out of memory") == 0 ? nomem(cc->c)
							  : fail(cc->c, "%s: %s", what, terr);
	return PT_OK;
}

static int parse_recipient(struct parse_ctx *c, const json_t *j, size_t i, struct inject_rcpt *r)
{
	char where[48];
	json_t *meta, *subst;

	snprintf(where, sizeof(where), "recipients[%zu]", i);
	if (!json_is_object(j))
		return fail(c, "%s must be an object, got %s", where, type_name(j));
	if (check_keys(c, j, where, recipient_keys, NULL) != PT_OK)
		return PT_ERROR;
	strcat(where, ".");
	if (get_string(c, j, "email", where, true, &r->email) != PT_OK ||
	    get_string(c, j, "name", where, false, &r->name) != PT_OK ||
	    get_object(c, j, "substitutions", where, &subst) != PT_OK ||
	    get_object(c, j, "metadata", where, &meta) != PT_OK)
		return PT_ERROR;
	r->substitutions = json_incref(subst);
	if (r->name != NULL && !display_name_ok(r->name))
		return fail(c, "%sname has a line break or another control character", where);
	if (meta != NULL && json_object_size(meta) > 0 &&
	    (r->metadata_json = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
		return nomem(c);
	if (!address_ok(r->email) &&
	    asprintf(&r->error,
		     "recipients[%zu].email: '%s' is not an address of the form "
		     "user@domain",
		     i, r->email) < 0)
		return nomem(c);
	r->pub = (struct inject_recipient){r->email, r->name, r->metadata_json, r->error};
	return PT_OK;
}

static int parse_recipients(struct parse_ctx *c, const json_t *root, struct inject_request *r)
{
	json_t *list = json_object_get(root, "recipients");

	if (list == NULL || json_is_null(list))
		return fail(c, "recipients is required");
	if (!json_is_array(list))
		return fail(c, "recipients must be a list, got %s", type_name(list));
	if (json_array_size(list) == 0)
		return fail(c, "recipients must hold at least one recipient");
	r->rcpts = calloc(json_array_size(list), sizeof(*r->rcpts));
	if (r->rcpts == NULL)
		return nomem(c);
	for (size_t i = 0; i < json_array_size(list); i++) {
		r->n_rcpts++;
		if (parse_recipient(c, json_array_get(list, i), i, &r->rcpts[i]) != PT_OK)
			return PT_ERROR;
	}
	return PT_OK;
}

static int parse_mailbox(struct parse_ctx *c, const json_t *content, const char *key,
			 struct inject_mailbox *mb)
{
	json_t *j = json_object_get(content, key);
	char where[48];

	if (j == NULL || json_is_null(j))
		return PT_OK;
	snprintf(where, sizeof(where), "content.%s", key);
	if (!json_is_object(j))
		return fail(c, "%s must be an object {email, name}, got %s", where, type_name(j));
	if (check_keys(c, j, where, mailbox_keys, NULL) != PT_OK)
		return PT_ERROR;
	strcat(where, ".");
	if (get_string(c, j, "email", where, true, &mb->email) != PT_OK ||
	    get_string(c, j, "name", where, false, &mb->name) != PT_OK)
		return PT_ERROR;
	if (!address_ok(mb->email))
		return fail(c, "%semail: '%s' is not an address of the form user@domain", where,
			    mb->email);
	if (mb->name && !display_name_ok(mb->name))
		return fail(c, "%sname has a line break or another control character", where);
	return PT_OK;
}

/* RFC 5322 3.6.8: printable ASCII but ':'. */
static bool field_name_ok(const char *n)
{
	if (*n == '\0')
		return false;
	for (; *n; n++)
		if ((unsigned char)*n < 33 || (unsigned char)*n > 126 || *n == ':')
			return false;
	return true;
}

static int parse_headers(struct parse_ctx *c, struct compile_ctx *cc, const json_t *content,
			 struct inject_request *r)
{
	json_t *h, *v;
	const char *name;
	char what[300];

	if (get_object(c, content, "headers", "content.", &h) != PT_OK)
		return PT_ERROR;
	if (h == NULL)
		return PT_OK;
	if ((r->headers = calloc(json_object_size(h) + 1, sizeof(*r->headers))) == NULL)
		return nomem(c);
	json_object_foreach(h, name, v)
	{
		struct inject_header *ih;

		snprintf(what, sizeof(what), "content.headers.%s", name);
		if (!field_name_ok(name) || strlen(name) > 200)
			return fail(c, "content.headers: '%s' is not a header field name", name);
		for (const char *const *res = reserved_headers; *res; res++)
			if (strcasecmp(name, *res) == 0)
				return fail(c, "%s: the builder writes this field itself", what);
		if (strcasecmp(name, "Subject") == 0 && r->subject != NULL)
			return fail(c, "%s: give the subject in content.subject or here, not both",
				    what);
		if ((strcasecmp(name, "From") == 0 && r->from.email) ||
		    (strcasecmp(name, "Reply-To") == 0 && r->reply_to.email))
			return fail(c, "%s: given in content.%s too", what,
				    strcasecmp(name, "From") == 0 ? "from" : "reply_to");
		if (!json_is_string(v))
			return fail(c, "%s must be a string, got %s", what, type_name(v));
		ih = &r->headers[r->n_headers++];
		if ((ih->name = strdup(name)) == NULL)
			return nomem(c);
		if (compile(cc, what, json_string_value(v), json_string_length(v), false,
			    &ih->value) != PT_OK)
			return PT_ERROR;
	}
	return PT_OK;
}

/* A MIME type "type/subtype" with optional parameters, no line breaks. */
static bool content_type_ok(const char *t)
{
	const char *slash = strchr(t, '/');

	if (slash == NULL || slash == t || !isalnum((unsigned char)slash[1]))
		return false;
	for (; *t; t++)
		if ((unsigned char)*t < ' ' || (unsigned char)*t >= 0x7f)
			return false;
	return true;
}

static int parse_attachment(struct parse_ctx *c, const json_t *j, size_t i,
			    struct inject_attachment *a)
{
	char where[64];
	char *data = NULL;
	json_t *b64;
	int rc;

	snprintf(where, sizeof(where), "content.attachments[%zu]", i);
	if (!json_is_object(j))
		return fail(c, "%s must be an object, got %s", where, type_name(j));
	if (check_keys(c, j, where, attachment_keys, NULL) != PT_OK)
		return PT_ERROR;
	strcat(where, ".");
	b64 = json_object_get(j, "base64");
	if (b64 != NULL && !json_is_null(b64) && !json_is_boolean(b64))
		return fail(c, "%sbase64 must be a boolean, got %s", where, type_name(b64));
	if (get_string(c, j, "content_type", where, true, &a->content_type) != PT_OK ||
	    get_string(c, j, "file_name", where, false, &a->file_name) != PT_OK ||
	    get_string(c, j, "content_id", where, false, &a->content_id) != PT_OK)
		return PT_ERROR;
	if (!content_type_ok(a->content_type))
		return fail(c, "%scontent_type: '%s' is not a MIME type like image/png", where,
			    a->content_type);
	if (a->file_name && strpbrk(a->file_name, "\r\n") != NULL)
		return fail(c, "%sfile_name has a line break", where);
	if (a->content_id) {
		size_t n = strlen(a->content_id);

		/* "<id>" is taken as "id". */
		if (n >= 2 && a->content_id[0] == '<' && a->content_id[n - 1] == '>') {
			memmove(a->content_id, a->content_id + 1, n - 2);
			a->content_id[n - 2] = '\0';
		}
		for (const char *p = a->content_id; *p; p++)
			if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || *p == '<' ||
			    *p == '>')
				return fail(c, "%scontent_id: '%s' is not a Content-ID", where,
					    a->content_id);
		if (a->content_id[0] == '\0')
			return fail(c, "%scontent_id is empty", where);
	}
	if (get_string(c, j, "data", where, true, &data) != PT_OK)
		return PT_ERROR;
	if (json_is_true(b64))
		rc = inject_base64_decode(data, strlen(data), &a->data);
	else
		rc = pt_buf_append(&a->data, data, strlen(data));
	free(data);
	if (rc == PT_NOMEM)
		return nomem(c);
	if (rc != PT_OK)
		return fail(c, "%sdata is not valid base64", where);
	return PT_OK;
}

static int parse_attachments(struct parse_ctx *c, const json_t *content, struct inject_request *r)
{
	json_t *list = json_object_get(content, "attachments");

	if (list == NULL || json_is_null(list))
		return PT_OK;
	if (!json_is_array(list))
		return fail(c, "content.attachments must be a list, got %s", type_name(list));
	r->attachments = calloc(json_array_size(list) + 1, sizeof(*r->attachments));
	if (r->attachments == NULL)
		return nomem(c);
	for (size_t i = 0; i < json_array_size(list); i++) {
		r->n_attachments++;
		if (parse_attachment(c, json_array_get(list, i), i, &r->attachments[i]) != PT_OK)
			return PT_ERROR;
	}
	return PT_OK;
}

/* A body or subject template field of the builder (absent: *out stays NULL). */
static int builder_text(struct compile_ctx *cc, const json_t *content, const char *key, bool html,
			struct template **out)
{
	json_t *v = json_object_get(content, key);
	char what[48];

	if (v == NULL || json_is_null(v))
		return PT_OK;
	snprintf(what, sizeof(what), "content.%s", key);
	if (!json_is_string(v))
		return fail(cc->c, "%s must be a string, got %s", what, type_name(v));
	return compile(cc, what, json_string_value(v), json_string_length(v), html, out);
}

static int parse_builder(struct parse_ctx *c, struct compile_ctx *cc, const json_t *content,
			 struct inject_request *r)
{
	r->builder = true;
	if (check_keys(c, content, "content", content_keys, content_kumo_only) != PT_OK ||
	    builder_text(cc, content, "subject", false, &r->subject) != PT_OK ||
	    builder_text(cc, content, "text_body", false, &r->text_body) != PT_OK ||
	    builder_text(cc, content, "html_body", true, &r->html_body) != PT_OK)
		return PT_ERROR;
	if (r->text_body == NULL && r->html_body == NULL)
		return fail(c, "content: at least one of text_body and html_body must be given");
	if (parse_mailbox(c, content, "from", &r->from) != PT_OK ||
	    parse_mailbox(c, content, "reply_to", &r->reply_to) != PT_OK ||
	    parse_headers(c, cc, content, r) != PT_OK || parse_attachments(c, content, r) != PT_OK)
		return PT_ERROR;
	return PT_OK;
}

static int parse_content(struct parse_ctx *c, struct compile_ctx *cc, const json_t *root,
			 struct inject_request *r)
{
	json_t *content = json_object_get(root, "content");

	if (content == NULL || json_is_null(content))
		return fail(c, "content is required");
	if (json_is_string(content))
		return compile(cc, "content", json_string_value(content),
			       json_string_length(content), false, &r->raw);
	if (json_is_object(content))
		return parse_builder(c, cc, content, r);
	return fail(c,
		    "content must be a string (a whole message) or an object (a builder), "
		    "got %s",
		    type_name(content));
}

/* template_dialect, deferred_spool, deferred_generation. */
static int parse_options(struct parse_ctx *c, const json_t *root, bool *is_static)
{
	json_t *v;
	char *dialect = NULL;

	if (get_string(c, root, "template_dialect", "", false, &dialect) != PT_OK)
		return PT_ERROR;
	*is_static = dialect != NULL && strcmp(dialect, "Static") == 0;
	if (dialect != NULL && strcmp(dialect, "Jinja") != 0 && !*is_static) {
		int rc = strcmp(dialect, "Handlebars") == 0
			     ? fail(c, "template_dialect: 'Handlebars' is a KumoMTA dialect Petrel "
				       "does not support yet (Jinja and Static are)")
			     : fail(c, "template_dialect must be \"Jinja\" or \"Static\", got '%s'",
				    dialect);

		free(dialect);
		return rc;
	}
	free(dialect);
	for (int i = 0; i < 2; i++) {
		const char *key = i == 0 ? "deferred_spool" : "deferred_generation";

		v = json_object_get(root, key);
		if (v == NULL || json_is_null(v) || json_is_false(v))
			continue;
		if (!json_is_boolean(v))
			return fail(c, "%s must be a boolean, got %s", key, type_name(v));
		return fail(c,
			    "%s: true is not supported: Petrel spools every generated message "
			    "before it answers",
			    key);
	}
	return PT_OK;
}

static int parse_root(struct parse_ctx *c, const json_t *root, struct inject_request *r)
{
	struct compile_ctx cc = {.c = c};
	json_t *subst;

	if (!json_is_object(root))
		return fail(c, "the request must be a JSON object, got %s", type_name(root));
	if (check_keys(c, root, "", request_keys, request_kumo_only) != PT_OK ||
	    parse_options(c, root, &cc.is_static) != PT_OK ||
	    get_string(c, root, "envelope_sender", "", true, &r->sender) != PT_OK)
		return PT_ERROR;
	if (!address_ok(r->sender))
		return fail(c, "envelope_sender: '%s' is not an address of the form user@domain",
			    r->sender);
	if (get_object(c, root, "substitutions", "", &subst) != PT_OK)
		return PT_ERROR;
	r->substitutions = json_incref(subst);
	if (parse_recipients(c, root, r) != PT_OK)
		return PT_ERROR;
	return parse_content(c, &cc, root, r);
}

int inject_request_parse(const char *body, size_t len, struct inject_request **out, char *err,
			 size_t err_len)
{
	struct parse_ctx c = {.err = err, .err_len = err_len};
	struct inject_request *r;
	json_error_t je;
	json_t *root;
	int rc;

	*out = NULL;
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL) {
		snprintf(err, err_len,
			 "the request body is not valid JSON: %s (line %d, column %d)", je.text,
			 je.line, je.column);
		return PT_ERROR;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		json_decref(root);
		snprintf(err, err_len, "out of memory");
		return PT_NOMEM;
	}
	rc = parse_root(&c, root, r);
	json_decref(root);
	if (rc != PT_OK) {
		inject_request_free(r);
		return c.nomem ? PT_NOMEM : PT_ERROR;
	}
	*out = r;
	return PT_OK;
}

void inject_request_free(struct inject_request *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n_rcpts; i++) {
		struct inject_rcpt *rc = &r->rcpts[i];

		free(rc->email);
		free(rc->name);
		free(rc->metadata_json);
		free(rc->error);
		json_decref(rc->substitutions);
	}
	free(r->rcpts);
	for (size_t i = 0; i < r->n_headers; i++) {
		free(r->headers[i].name);
		template_free(r->headers[i].value);
	}
	free(r->headers);
	for (size_t i = 0; i < r->n_attachments; i++) {
		struct inject_attachment *a = &r->attachments[i];

		pt_buf_free(&a->data);
		free(a->content_type);
		free(a->file_name);
		free(a->content_id);
	}
	free(r->attachments);
	free(r->from.email);
	free(r->from.name);
	free(r->reply_to.email);
	free(r->reply_to.name);
	template_free(r->raw);
	template_free(r->subject);
	template_free(r->text_body);
	template_free(r->html_body);
	json_decref(r->substitutions);
	free(r->sender);
	free(r);
}

const char *inject_request_sender(const struct inject_request *r)
{
	return r->sender;
}

size_t inject_request_count(const struct inject_request *r)
{
	return r->n_rcpts;
}

const struct inject_recipient *inject_request_recipient(const struct inject_request *r, size_t i)
{
	return &r->rcpts[i].pub;
}

/* ---- rendering ------------------------------------------------------------------ */

/* The recipient's template variables (a new object), NULL on no memory. */
static json_t *recipient_vars(const struct inject_request *r, const struct inject_rcpt *rc)
{
	json_t *vars = json_object();
	struct pt_buf to = PT_BUF_INIT;
	bool ok;

	if (vars == NULL)
		return NULL;
	ok = r->substitutions == NULL || json_object_update(vars, r->substitutions) == 0;
	ok = ok && json_object_set_new(vars, "email", json_string(rc->email)) == 0;
	/* Without a name, `name` stays undefined (prints nothing), as in KumoMTA. */
	ok = ok &&
	     (rc->name == NULL || json_object_set_new(vars, "name", json_string(rc->name)) == 0);
	/* to_header: the To field's value (KumoMTA's pre-defined variable). */
	ok = ok && inject_header_mailbox(&to, "T", rc->name, rc->email) == PT_OK;
	ok = ok &&
	     json_object_set_new(vars, "to_header", json_stringn(to.data + 3, to.len - 5)) == 0;
	ok = ok && (rc->substitutions == NULL || json_object_update(vars, rc->substitutions) == 0);
	pt_buf_free(&to);
	if (!ok) {
		json_decref(vars);
		return NULL;
	}
	return vars;
}

/* A whole message must start with a header field ("Name:"). */
static bool starts_with_field(const struct pt_buf *b)
{
	size_t i = 0;

	while (i < b->len && (unsigned char)b->data[i] >= 33 && (unsigned char)b->data[i] <= 126 &&
	       b->data[i] != ':')
		i++;
	return i > 0 && i < b->len && b->data[i] == ':';
}

static int render_raw(const struct inject_request *r, const json_t *vars, struct pt_buf *out,
		      char *err, size_t err_len)
{
	struct pt_buf raw = PT_BUF_INIT;
	char terr[INJECT_ERR_MAX];
	size_t start = out->len;
	int rc = template_render(r->raw, vars, INJECT_MESSAGE_MAX, &raw, terr, sizeof(terr));

	if (rc == PT_ERROR)
		snprintf(err, err_len, "content: %s", terr);
	if (rc == PT_OK)
		rc = inject_crlf(raw.data ? raw.data : "", raw.len, out);
	pt_buf_free(&raw);
	if (rc == PT_OK) {
		struct pt_buf view = {out->len > start ? out->data + start : NULL, out->len - start,
				      0};

		if (!starts_with_field(&view)) {
			snprintf(err, err_len,
				 "content: the message does not start with a header "
				 "field");
			rc = PT_ERROR;
		}
	}
	return rc;
}

int inject_render(const struct inject_request *r, size_t i, const struct inject_env *env,
		  struct pt_buf *out, char *err, size_t err_len)
{
	const struct inject_rcpt *rc = &r->rcpts[i];
	json_t *vars;
	int rcode;

	if (rc->error != NULL) {
		snprintf(err, err_len, "%s", rc->error);
		return PT_ERROR;
	}
	if ((vars = recipient_vars(r, rc)) == NULL) {
		snprintf(err, err_len, "out of memory");
		return PT_NOMEM;
	}
	if (r->builder)
		rcode = inject_mime_build(r, rc, vars, env, out, err, err_len);
	else
		rcode = render_raw(r, vars, out, err, err_len);
	json_decref(vars);
	if (rcode == PT_NOMEM)
		snprintf(err, err_len, "out of memory");
	return rcode;
}
