/*
 * policy_queue_http.c -- make_queue_config's protocol.http: a queue that
 * delivers by HTTP request (a webhook-style endpoint) instead of SMTP.
 *
 *     protocol = { http = {
 *       url = 'http://127.0.0.1:8080/hook',   -- required; http:// or https://
 *       method = 'POST',                      -- POST (default), PUT, PATCH
 *       headers = { ['X-Key'] = 'v' },        -- extra request headers
 *       content_type = 'application/json',    -- default 'message/rfc822'
 *       body_template = '{"id": {{ id | tojson }}}', -- default: the message
 *       batch_size = 10,                      -- messages per request, default 1
 *       timeout = '60s',                      -- the whole request, default 60 s
 *       accept_invalid_certs = false,         -- https: any certificate (KumoMTA's
 *     } }                                     -- kumo.http.build_client option)
 *
 * Everything is checked here, at the make_queue_config call, so a mistake
 * is a Lua error at that line: the URL (scheme, host, port, no user info
 * or fragment), header names (RFC 9110 tokens, and not one of the fields
 * Petrel writes itself: Host, Content-Length, Content-Type,
 * Transfer-Encoding, Connection), values without CR or LF.  A batch_size
 * above 1 needs content_type application/json: the request's body is then
 * a JSON array of each message's rendered body, and nothing else has a
 * standard way to hold several.  The body template's syntax is checked
 * through the checker petreld passes in (policy_set_template_check:
 * net/template.c is out of the policy's reach).
 *
 * https:// verifies the server's certificate against the system CA bundle
 * and the URL's host, unless accept_invalid_certs (only with https://).
 */
#include "policy/policy_int.h"

#include <ctype.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define QUEUE_FN		"make_queue_config"
#define HTTP_MAX_HEADERS	64
#define HTTP_MAX_BATCH		1000
#define HTTP_DEFAULT_TIMEOUT_MS 60000

/* Written once before any policy loads (petreld's main), read after. */
static policy_template_check_fn http_template_check;

void policy_set_template_check(policy_template_check_fn fn)
{
	http_template_check = fn;
}

static const char *const http_keys[] = {
    "url",
    "method",
    "headers",
    "content_type",
    "body_template",
    "batch_size",
    "timeout",
    "accept_invalid_certs",
    NULL,
};
static const char *const http_kumo_only[] = {NULL};
static const char *const http_reserved[] = {
    "host", "content-length", "content-type", "transfer-encoding", "connection", NULL,
};

void policy_queue_http_free(struct policy_queue_http *h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; i < h->n_headers; i++) {
		free(h->headers[i].name);
		free(h->headers[i].value);
	}
	free(h->headers);
	free(h->url);
	free(h->host);
	free(h->connect);
	free(h->site);
	free(h->host_field);
	free(h->path);
	free(h->method);
	free(h->content_type);
	free(h->body_template);
	free(h);
}

int policy_queue_http_copy(struct policy_queue_http **out, const struct policy_queue_http *src)
{
	struct policy_queue_http *h;
	int rc = PT_OK;

	*out = NULL;
	if (src == NULL)
		return PT_OK;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return PT_NOMEM;
	h->port = src->port;
	h->tls = src->tls;
	h->accept_invalid_certs = src->accept_invalid_certs;
	h->batch_size = src->batch_size;
	h->timeout_ms = src->timeout_ms;
	rc |= policy_queue_dup(&h->url, src->url) | policy_queue_dup(&h->host, src->host);
	rc |= policy_queue_dup(&h->connect, src->connect) | policy_queue_dup(&h->site, src->site);
	rc |= policy_queue_dup(&h->host_field, src->host_field) |
	      policy_queue_dup(&h->path, src->path);
	rc |= policy_queue_dup(&h->method, src->method) |
	      policy_queue_dup(&h->content_type, src->content_type);
	rc |= policy_queue_dup(&h->body_template, src->body_template);
	if (src->n_headers && (h->headers = calloc(src->n_headers, sizeof(*h->headers))) == NULL)
		rc = PT_NOMEM;
	for (size_t i = 0; rc == PT_OK && i < src->n_headers; i++, h->n_headers++)
		rc |= policy_queue_dup(&h->headers[i].name, src->headers[i].name) |
		      policy_queue_dup(&h->headers[i].value, src->headers[i].value);
	if (rc != PT_OK) {
		policy_queue_http_free(h);
		return PT_NOMEM;
	}
	*out = h;
	return PT_OK;
}

bool policy_queue_http_is_json(const struct policy_queue_http *h)
{
	const char *ct = h->content_type;

	return strncasecmp(ct, "application/json", 16) == 0 && (ct[16] == '\0' || ct[16] == ';');
}

/* ---- checking ---- */

/* RFC 9110 5.6.2 tchar. */
static bool http_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return false;
	return true;
}

static char *http_printf(lua_State *L, const char *fmt, const char *a, unsigned port)
{
	char *s = NULL;

	if (asprintf(&s, fmt, a, port) < 0)
		s = NULL;
	policy_queue_oom(L, s);
	return s;
}

static char *http_field(const char *url, const struct http_parser_url *u, int f)
{
	return strndup(url + u->field_data[f].off, u->field_data[f].len);
}

/* url at idx into h (host, port, connect, site, host_field, path). */
static void http_set_url(lua_State *L, int idx, struct policy_queue_http *h)
{
	struct http_parser_url u;
	const char *url, *why;
	bool v6;

	h->url = policy_config_dup_string(L, idx, QUEUE_FN, "protocol.http.url");
	url = h->url;
	http_parser_url_init(&u);
	if (http_parser_parse_url(url, strlen(url), 0, &u) != 0 || !(u.field_set & (1 << UF_HOST)))
		policy_raise(L,
			     "%s: protocol.http.url '%s' is not a URL like http://host[:port]/path",
			     QUEUE_FN, url);
	h->tls = u.field_data[UF_SCHEMA].len == 5 && strncasecmp(url, "https", 5) == 0;
	if (!h->tls && (u.field_data[UF_SCHEMA].len != 4 || strncasecmp(url, "http", 4) != 0))
		policy_raise(L, "%s: protocol.http.url '%s' must start with http:// or https://",
			     QUEUE_FN, url);
	if (u.field_set & ((1 << UF_USERINFO) | (1 << UF_FRAGMENT)))
		policy_raise(L,
			     "%s: protocol.http.url '%s': user info and fragments are not allowed "
			     "(use headers for credentials)",
			     QUEUE_FN, url);
	if ((u.field_set & (1 << UF_PORT)) && u.port == 0)
		policy_raise(L, "%s: protocol.http.url '%s': port 0", QUEUE_FN, url);
	policy_queue_oom(L, h->host = http_field(url, &u, UF_HOST));
	if (policy_dns_check_host(h->host, true, &why) != PT_OK)
		policy_raise(L, "%s: protocol.http.url '%s': bad host '%s' (%s)", QUEUE_FN, url,
			     h->host, why);
	h->port = (u.field_set & (1 << UF_PORT)) ? u.port : h->tls ? 443 : 80;
	v6 = strchr(h->host, ':') != NULL;
	h->connect = policy_queue_host_port(L, "", h->host, h->port);
	h->site = policy_queue_host_port(L, h->tls ? "https://" : "http://", h->host, h->port);
	if (h->port == (h->tls ? 443 : 80))
		h->host_field = http_printf(L, v6 ? "[%s]" : "%s", h->host, 0);
	else
		h->host_field = http_printf(L, v6 ? "[%s]:%u" : "%s:%u", h->host, h->port);
	if (!(u.field_set & (1 << UF_PATH)))
		policy_queue_oom(L, h->path = strdup("/"));
	else
		policy_queue_oom(L, h->path = strndup(url + u.field_data[UF_PATH].off,
						      (u.field_set & (1 << UF_QUERY))
							  ? (size_t)(u.field_data[UF_QUERY].off +
								     u.field_data[UF_QUERY].len -
								     u.field_data[UF_PATH].off)
							  : u.field_data[UF_PATH].len));
}

static void http_set_method(lua_State *L, int idx, struct policy_queue_http *h)
{
	char *m = policy_config_dup_string(L, idx, QUEUE_FN, "protocol.http.method");

	free(h->method);
	h->method = m;
	if (strcmp(m, "POST") && strcmp(m, "PUT") && strcmp(m, "PATCH"))
		policy_raise(L,
			     "%s: protocol.http.method must be 'POST', 'PUT' or 'PATCH', got '%s'",
			     QUEUE_FN, m);
}

/* A field value: printable, no CR/LF (RFC 9110 5.5). */
static bool http_value_ok(const char *v)
{
	for (; *v; v++)
		if ((unsigned char)*v < ' ' && *v != '\t')
			return false;
	return true;
}

static int http_header_cmp(const void *a, const void *b)
{
	return strcmp(((const struct policy_http_header *)a)->name,
		      ((const struct policy_http_header *)b)->name);
}

static void http_set_headers(lua_State *L, int idx, struct policy_queue_http *h)
{
	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L, "%s: protocol.http.headers must be a table of name = value, got %s",
			     QUEUE_FN, luaL_typename(L, idx));
	policy_queue_oom(L, h->headers = calloc(HTTP_MAX_HEADERS, sizeof(*h->headers)));
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		struct policy_http_header *e;
		const char *name;

		if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
			policy_raise(L, "%s: protocol.http.headers must map strings to strings",
				     QUEUE_FN);
		name = lua_tostring(L, -2);
		if (!http_token(name))
			policy_raise(L, "%s: protocol.http.headers: '%s' is not a header name",
				     QUEUE_FN, name);
		for (size_t i = 0; http_reserved[i]; i++)
			if (strcasecmp(name, http_reserved[i]) == 0)
				policy_raise(
				    L, "%s: protocol.http.headers: Petrel writes '%s' itself%s",
				    QUEUE_FN, name,
				    i == 2 ? " (use protocol.http.content_type)" : "");
		if (!http_value_ok(lua_tostring(L, -1)) ||
		    strlen(lua_tostring(L, -1)) != lua_objlen(L, -1))
			policy_raise(L, "%s: protocol.http.headers['%s'] has a control character",
				     QUEUE_FN, name);
		if (h->n_headers == HTTP_MAX_HEADERS)
			policy_raise(L, "%s: protocol.http.headers: at most %d", QUEUE_FN,
				     HTTP_MAX_HEADERS);
		e = &h->headers[h->n_headers++];
		policy_queue_oom(L, e->name = strdup(name));
		policy_queue_oom(L, e->value = strdup(lua_tostring(L, -1)));
		lua_pop(L, 1);
	}
	/* lua_next's order is the table's: sort so the request is the same every time. */
	qsort(h->headers, h->n_headers, sizeof(*h->headers), http_header_cmp);
}

static void http_set_field(lua_State *L, int idx, const char *key, struct policy_queue_http *h)
{
	if (strcmp(key, "url") == 0) {
		http_set_url(L, idx, h);
	} else if (strcmp(key, "method") == 0) {
		http_set_method(L, idx, h);
	} else if (strcmp(key, "headers") == 0) {
		http_set_headers(L, idx, h);
	} else if (strcmp(key, "content_type") == 0) {
		free(h->content_type);
		h->content_type =
		    policy_config_dup_string(L, idx, QUEUE_FN, "protocol.http.content_type");
		if (h->content_type[0] == '\0' || !http_value_ok(h->content_type))
			policy_raise(L, "%s: protocol.http.content_type '%s' is not a media type",
				     QUEUE_FN, h->content_type);
	} else if (strcmp(key, "body_template") == 0) {
		char err[256];

		h->body_template =
		    policy_config_dup_string(L, idx, QUEUE_FN, "protocol.http.body_template");
		if (http_template_check &&
		    http_template_check(h->body_template, strlen(h->body_template), err,
					sizeof(err)) != PT_OK)
			policy_raise(L, "%s: protocol.http.body_template: %s", QUEUE_FN, err);
	} else if (strcmp(key, "batch_size") == 0) {
		h->batch_size = (uint32_t)policy_config_check_count(
		    L, idx, QUEUE_FN, "protocol.http.batch_size", HTTP_MAX_BATCH);
	} else if (strcmp(key, "timeout") == 0) {
		h->timeout_ms =
		    policy_config_check_timeout(L, idx, QUEUE_FN, "protocol.http.timeout");
	} else {
		h->accept_invalid_certs = policy_config_check_bool(
		    L, idx, QUEUE_FN, "protocol.http.accept_invalid_certs");
		if (!h->tls)
			policy_raise(L,
				     "%s: protocol.http.accept_invalid_certs applies to https:// "
				     "URLs only",
				     QUEUE_FN);
		if (h->accept_invalid_certs) {
			/* Its own site: connections that verify and connections that
			 * don't must not be shared (shard_out_http.c reads the scheme). */
			char *site = http_printf(L, "https+insecure%s", h->site + 5, 0);

			free(h->site);
			h->site = site;
		}
	}
}

void policy_queue_http_parse(lua_State *L, int idx, struct policy_queue_config *q)
{
	struct policy_queue_http *h;

	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L, "%s: protocol.http must be a table, got %s", QUEUE_FN,
			     luaL_typename(L, idx));
	policy_config_check_keys(L, idx, QUEUE_FN, "make_queue_config protocol.http", http_keys,
				 http_kumo_only);
	/* q (a userdata with __gc) owns h at once: a later error leaks nothing. */
	policy_queue_oom(L, h = q->http = calloc(1, sizeof(*h)));
	h->batch_size = 1;
	h->timeout_ms = HTTP_DEFAULT_TIMEOUT_MS;
	for (size_t i = 0; http_keys[i] != NULL; i++) {
		int top = lua_gettop(L);

		lua_getfield(L, idx, http_keys[i]);
		if (!lua_isnil(L, -1))
			http_set_field(L, top + 1, http_keys[i], h);
		lua_settop(L, top);
	}
	if (h->url == NULL)
		policy_raise(L, "%s: protocol.http.url is required", QUEUE_FN);
	if (h->method == NULL)
		policy_queue_oom(L, h->method = strdup("POST"));
	if (h->content_type == NULL)
		policy_queue_oom(L, h->content_type = strdup("message/rfc822"));
	if (h->batch_size > 1 && !policy_queue_http_is_json(h))
		policy_raise(L,
			     "%s: protocol.http.batch_size %u needs content_type "
			     "'application/json' (a batch is a JSON array of the bodies)",
			     QUEUE_FN, h->batch_size);
}
