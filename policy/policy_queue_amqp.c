/*
 * policy_queue_amqp.c -- make_queue_config's protocol.amqp: a queue whose
 * messages are published to an AMQP 0-9-1 broker (RabbitMQ), one message
 * per unit, its body the message as stored (a log hook's: the record's
 * JSON line).  Petrel's own shape: KumoMTA publishes to AMQP from a
 * custom_lua protocol (kumo.amqp.build_client in Lua), which Petrel can't
 * run.
 *
 *     protocol = { amqp = {
 *       url = 'amqp://user:pass@host:5672/vhost', -- required; amqp:// only
 *       exchange = '',                  -- default ''; '' is the default exchange
 *       routing_key = 'logs',           -- required (with exchange '': the queue)
 *       declare_queue = false,          -- declare routing_key as a durable queue
 *       mandatory = false,              -- unroutable: returned, retried
 *       content_type = 'application/json', -- the content header's; default none
 *       window = 64,                    -- unconfirmed publishes per connection
 *       timeout = '60s',                -- login, and each ack awaited
 *     } }
 *
 * Everything is checked here, so a mistake is a Lua error at the
 * make_queue_config line: the URL (librabbitmq's amqp_parse_url, as
 * net/amqp_client.c: percent-decoded parts, defaults guest, guest, port
 * 5672, vhost "/"), each AMQP short string at most 255 bytes,
 * declare_queue only with the default exchange (the queue it declares is
 * where that exchange routes), a routing_key on the default exchange.
 * amqps:// is refused: the shard's AMQP connections have no TLS yet.
 *
 * The site, "amqp://user@host:port/vhost" plus "?declare=queue" when
 * declare_queue, names the connections (shard_out_amqp.c): what the broker
 * sees at login, and the queue a connection declares, are the site's.
 */
#include "policy/policy_int.h"

#include <amqp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_FN		"make_queue_config"
#define AMQP_SHORT_MAX		255 /* an AMQP short string */
#define AMQP_MAX_WINDOW		4096
#define AMQP_DEFAULT_WINDOW	64
#define AMQP_DEFAULT_TIMEOUT_MS 60000

static const char *const amqp_keys[] = {
    "url",    "exchange", "routing_key", "declare_queue", "mandatory", "content_type",
    "window", "timeout",  NULL,
};
static const char *const amqp_kumo_only[] = {NULL};

void policy_queue_amqp_free(struct policy_queue_amqp *a)
{
	if (a == NULL)
		return;
	free(a->url);
	free(a->user);
	free(a->password);
	free(a->vhost);
	free(a->host);
	free(a->connect);
	free(a->site);
	free(a->exchange);
	free(a->routing_key);
	free(a->content_type);
	free(a);
}

int policy_queue_amqp_copy(struct policy_queue_amqp **out, const struct policy_queue_amqp *src)
{
	struct policy_queue_amqp *a;
	int rc = PT_OK;

	*out = NULL;
	if (src == NULL)
		return PT_OK;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return PT_NOMEM;
	*a = *src;
	rc |= policy_queue_dup(&a->url, src->url) | policy_queue_dup(&a->user, src->user);
	rc |=
	    policy_queue_dup(&a->password, src->password) | policy_queue_dup(&a->vhost, src->vhost);
	rc |= policy_queue_dup(&a->host, src->host) | policy_queue_dup(&a->connect, src->connect);
	rc |= policy_queue_dup(&a->site, src->site) | policy_queue_dup(&a->exchange, src->exchange);
	rc |= policy_queue_dup(&a->routing_key, src->routing_key) |
	      policy_queue_dup(&a->content_type, src->content_type);
	if (rc != PT_OK) {
		policy_queue_amqp_free(a);
		return PT_NOMEM;
	}
	*out = a;
	return PT_OK;
}

/* ---- checking ---- */

/* The string at idx, at most 255 bytes (an AMQP short string). */
static char *amqp_short(lua_State *L, int idx, const char *key)
{
	char *s = policy_config_dup_string(L, idx, QUEUE_FN, key);

	if (strlen(s) > AMQP_SHORT_MAX) {
		free(s);
		policy_raise(L, "%s: %s is longer than %d bytes (an AMQP short string)", QUEUE_FN,
			     key, AMQP_SHORT_MAX);
	}
	return s;
}

static void amqp_check_part(lua_State *L, const char *url, const char *what, const char *v)
{
	if (strlen(v) > AMQP_SHORT_MAX)
		policy_raise(L, "%s: protocol.amqp.url '%s': the %s is longer than %d bytes",
			     QUEUE_FN, url, what, AMQP_SHORT_MAX);
}

/* The URL's parts into a (user, password, vhost, host, port, connect). */
static void amqp_set_url(lua_State *L, int idx, struct policy_queue_amqp *a)
{
	struct amqp_connection_info info;
	const char *why;
	char *copy;

	a->url = policy_config_dup_string(L, idx, QUEUE_FN, "protocol.amqp.url");
	policy_queue_oom(L, copy = strdup(a->url));
	amqp_default_connection_info(&info);
	if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK) {
		free(copy);
		policy_raise(L,
			     "%s: protocol.amqp.url '%s' is not a URL like "
			     "amqp://user:password@host:port/vhost",
			     QUEUE_FN, a->url);
	}
	if (info.ssl) {
		free(copy);
		policy_raise(L, "%s: protocol.amqp.url '%s': amqps:// (TLS) is not supported yet",
			     QUEUE_FN, a->url);
	}
	/* RFC 3986 leaves "amqp://host/" an empty vhost; nobody means that. */
	a->user = strdup(info.user);
	a->password = strdup(info.password);
	a->vhost = strdup(info.vhost[0] != '\0' ? info.vhost : "/");
	a->host = strdup(info.host);
	a->port = (uint16_t)info.port;
	free(copy);
	policy_queue_oom(L, a->user && a->password && a->vhost && a->host ? a : NULL);
	amqp_check_part(L, a->url, "user", a->user);
	amqp_check_part(L, a->url, "password", a->password);
	amqp_check_part(L, a->url, "vhost", a->vhost);
	if (info.port <= 0 || info.port > 65535)
		policy_raise(L, "%s: protocol.amqp.url '%s': port %d", QUEUE_FN, a->url, info.port);
	if (policy_dns_check_host(a->host, true, &why) != PT_OK)
		policy_raise(L, "%s: protocol.amqp.url '%s': bad host '%s' (%s)", QUEUE_FN, a->url,
			     a->host, why);
	a->connect = policy_queue_host_port(L, "", a->host, a->port);
}

/* "amqp://user@host:port/vhost[?declare=queue]" (amqp_set_url ran). */
static void amqp_set_site(lua_State *L, struct policy_queue_amqp *a)
{
	char *hp = policy_queue_host_port(L, "", a->host, a->port);
	const char *vhost = strcmp(a->vhost, "/") == 0 ? "" : a->vhost;
	char *s = NULL;

	if (asprintf(&s, "amqp://%s@%s/%s%s%s", a->user, hp, vhost,
		     a->declare_queue ? "?declare=" : "",
		     a->declare_queue ? a->routing_key : "") < 0)
		s = NULL;
	free(hp);
	policy_queue_oom(L, s);
	a->site = s;
}

static void amqp_set_field(lua_State *L, int idx, const char *key, struct policy_queue_amqp *a)
{
	if (strcmp(key, "url") == 0) {
		amqp_set_url(L, idx, a);
	} else if (strcmp(key, "exchange") == 0) {
		free(a->exchange);
		a->exchange = amqp_short(L, idx, "protocol.amqp.exchange");
	} else if (strcmp(key, "routing_key") == 0) {
		a->routing_key = amqp_short(L, idx, "protocol.amqp.routing_key");
	} else if (strcmp(key, "declare_queue") == 0) {
		a->declare_queue =
		    policy_config_check_bool(L, idx, QUEUE_FN, "protocol.amqp.declare_queue");
	} else if (strcmp(key, "mandatory") == 0) {
		a->mandatory =
		    policy_config_check_bool(L, idx, QUEUE_FN, "protocol.amqp.mandatory");
	} else if (strcmp(key, "content_type") == 0) {
		a->content_type = amqp_short(L, idx, "protocol.amqp.content_type");
		if (a->content_type[0] == '\0')
			policy_raise(L,
				     "%s: protocol.amqp.content_type is empty (leave it out "
				     "for none)",
				     QUEUE_FN);
	} else if (strcmp(key, "window") == 0) {
		a->window = (uint32_t)policy_config_check_count(
		    L, idx, QUEUE_FN, "protocol.amqp.window", AMQP_MAX_WINDOW);
	} else {
		a->timeout_ms =
		    policy_config_check_timeout(L, idx, QUEUE_FN, "protocol.amqp.timeout");
	}
}

void policy_queue_amqp_parse(lua_State *L, int idx, struct policy_queue_config *q)
{
	struct policy_queue_amqp *a;

	if (lua_type(L, idx) != LUA_TTABLE)
		policy_raise(L, "%s: protocol.amqp must be a table, got %s", QUEUE_FN,
			     luaL_typename(L, idx));
	policy_config_check_keys(L, idx, QUEUE_FN, "make_queue_config protocol.amqp", amqp_keys,
				 amqp_kumo_only);
	/* q (a userdata with __gc) owns a at once: a later error leaks nothing. */
	policy_queue_oom(L, a = q->amqp = calloc(1, sizeof(*a)));
	a->window = AMQP_DEFAULT_WINDOW;
	a->timeout_ms = AMQP_DEFAULT_TIMEOUT_MS;
	for (size_t i = 0; amqp_keys[i] != NULL; i++) {
		int top = lua_gettop(L);

		lua_getfield(L, idx, amqp_keys[i]);
		if (!lua_isnil(L, -1))
			amqp_set_field(L, top + 1, amqp_keys[i], a);
		lua_settop(L, top);
	}
	if (a->url == NULL)
		policy_raise(L, "%s: protocol.amqp.url is required", QUEUE_FN);
	if (a->routing_key == NULL)
		policy_raise(L, "%s: protocol.amqp.routing_key is required", QUEUE_FN);
	if (a->exchange == NULL)
		policy_queue_oom(L, a->exchange = strdup(""));
	if (a->exchange[0] == '\0' && a->routing_key[0] == '\0')
		policy_raise(L,
			     "%s: protocol.amqp.routing_key is empty: on the default exchange it "
			     "names the queue",
			     QUEUE_FN);
	if (a->declare_queue && a->exchange[0] != '\0')
		policy_raise(L,
			     "%s: protocol.amqp.declare_queue needs exchange '' (it declares the "
			     "queue routing_key, where the default exchange routes)",
			     QUEUE_FN);
	amqp_set_site(L, a);
}
