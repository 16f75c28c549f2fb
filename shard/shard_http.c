/*
 * shard_http.c -- HTTP listeners and connections on a shard's ring, the
 * router and the authorization check.
 *
 * Each HTTP listener (kumo.start_http_listener) is opened on every shard
 * with SO_REUSEPORT, like the SMTP listeners (shard_conn.c), and accepted
 * with a multishot accept; the kernel spreads connections.  A connection
 * is the HTTP session (net/http_server.c, a pure state machine) glued to
 * the ring exactly as an SMTP one, through the same stream plumbing
 * (shard_stream.c): multishot receive -> (TLS decrypt) ->
 * http_session_feed -> act on the session's event; one send at a time
 * with double buffering; closing is shutdown(2), and the connection is
 * released once no operation in the ring points at it and no handler's
 * work does (an injection whose messages the spool still holds).  With
 * use_tls the TLS handshake starts with the first byte (HTTPS), through
 * the same wolfSSL glue as STARTTLS.
 *
 * A request, once whole:
 *
 *   1. authorization, KumoMTA's rule: a peer in trusted_hosts passes; any
 *      other needs "Authorization: Basic" credentials that the policy's
 *      http_server_validate_auth_basic event accepts.  No credentials ->
 *      403; credentials refused -> 401 with WWW-Authenticate; a broken
 *      Authorization field -> 400; the event failing -> 500.
 *   2. routing: shard_http_routes[] below, method and exact path; an
 *      unknown path 404, a known path with another method 405 with Allow.
 *      A route flagged SHARD_HTTP_TRUSTED is for trusted hosts only (as
 *      KumoMTA's TrustedIpRequired: metrics, admin), 403 otherwise.
 *   3. the handler answers with shard_http_respond(), at once or later
 *      (the injection answers once its messages are durable).  Requests
 *      pipelined behind it wait in the session until then.
 *
 * Adding a route is one line in shard_http_routes[] and a handler
 * `void f(struct shard_http_conn *c, const struct http_request *r)` that
 * ends in shard_http_respond() (see shard_int.h).
 *
 * Deadlines: SHARD_HTTP_IDLE_MS between requests and while one is being
 * read (then 408); none while a handler works.  On drain, idle
 * connections close, busy ones close after their answer.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/cidr.h"
#include "core/json.h"
#include "core/ptime.h"
#include "net/addr.h"
#include "net/inject.h"
#include "shard/shard_int.h"
#include "shard/shard_metrics.h"

#define SHARD_HTTP_IDLE_MS   60000 /* between requests, and reading one */
#define SHARD_HTTP_MAX_CONNS 1024  /* per listener per shard; then 503 */

/* GET /metrics: every shard's metrics in Prometheus text format 0.0.4
 * (read with relaxed loads: the scrape never stops a shard). */
static void http_metrics(struct shard_http_conn *c, const struct http_request *r)
{
	struct pt_buf b = PT_BUF_INIT;

	(void)r;
	if (shard_metrics_render(c->shard->group, &b) != PT_OK) {
		pt_buf_free(&b);
		shard_http_respond_error(c, 500, "out of memory rendering the metrics");
		return;
	}
	shard_http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
	pt_buf_free(&b);
}

/* The routes: method, exact path, flags, handler.  One line per route. */
static const struct shard_http_route {
	const char *method;
	const char *path;
	unsigned flags;
	void (*handler)(struct shard_http_conn *c, const struct http_request *r);
} shard_http_routes[] = {
    {"POST", "/api/inject/v1", 0, shard_inject_v1},
    {"GET", "/metrics", SHARD_HTTP_TRUSTED, http_metrics},
    {"POST", "/api/admin/suspend/v1", SHARD_HTTP_TRUSTED, shard_admin_suspend_v1},
    {"GET", "/api/admin/suspend/v1", SHARD_HTTP_TRUSTED, shard_admin_suspend_v1},
    {"DELETE", "/api/admin/suspend/v1", SHARD_HTTP_TRUSTED, shard_admin_suspend_v1},
    {"POST", "/api/admin/bounce/v1", SHARD_HTTP_TRUSTED, shard_admin_bounce_v1},
    {"GET", "/api/admin/bounce/v1", SHARD_HTTP_TRUSTED, shard_admin_bounce_v1},
    {"GET", "/api/admin/queue-summary/v1", SHARD_HTTP_TRUSTED, shard_admin_queue_summary_v1},
    {"POST", "/api/admin/suspend-ready-q/v1", SHARD_HTTP_TRUSTED, shard_admin_suspend_ready_q_v1},
    {"GET", "/api/admin/suspend-ready-q/v1", SHARD_HTTP_TRUSTED, shard_admin_suspend_ready_q_v1},
    {"DELETE", "/api/admin/suspend-ready-q/v1", SHARD_HTTP_TRUSTED, shard_admin_suspend_ready_q_v1},
    {"POST", "/api/admin/rebind/v1", SHARD_HTTP_TRUSTED, shard_admin_rebind_v1},
    {"GET", "/api/admin/inspect-message/v1", SHARD_HTTP_TRUSTED, shard_admin_inspect_v1},
    {"POST", "/api/admin/set_diagnostic_log_filter/v1", SHARD_HTTP_TRUSTED,
     shard_admin_log_filter_v1},
    {"POST", "/api/admin/bump-config-epoch", SHARD_HTTP_TRUSTED, shard_admin_bump_config_v1},
    {"GET", "/api/admin/trace-smtp-server/v1", SHARD_HTTP_TRUSTED, shard_trace_v1},
    {"GET", "/api/admin/trace-smtp-client/v1", SHARD_HTTP_TRUSTED, shard_trace_client_v1},
};

static void http_after_session(struct shard_http_conn *c);
static void http_open(struct shard_acceptor *a, int fd);

/* ---- listeners ------------------------------------------------------------- */

static struct tls_ctx *http_listener_tls(struct shard *s, const struct policy_http_listener *pl)
{
	const struct shard_group_config *gc = &s->group->cfg;
	char err[256];
	struct tls_ctx *ctx = NULL;

	if (pl->tls_certificate)
		ctx = tls_ctx_new_server_files(pl->tls_certificate, pl->tls_private_key, err,
					       sizeof(err));
	else if (gc->tls_cert_pem)
		ctx = tls_ctx_new_server(gc->tls_cert_pem, gc->tls_cert_len, gc->tls_key_pem,
					 gc->tls_key_len, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "no certificate (petreld generates one at start)");
	if (!ctx)
		pt_error("HTTP listener %s: %s", pl->listen, err);
	return ctx;
}

int shard_http_open(struct shard *s)
{
	const struct policy_config *pc = policy_config(s->policy);
	char err[256];

	if (pc->n_http_listeners == 0)
		return PT_OK;
	s->http_listeners = calloc(pc->n_http_listeners, sizeof(*s->http_listeners));
	if (!s->http_listeners)
		return PT_NOMEM;
	for (size_t i = 0; i < pc->n_http_listeners; i++) {
		const struct policy_http_listener *pl = &pc->http_listeners[i];
		struct shard_http_listener *l = &s->http_listeners[i];
		struct sockaddr_storage ss;
		socklen_t len;

		l->acc.shard = s;
		l->acc.listen = pl->listen;
		l->acc.fd = -1;
		l->acc.accept_op.kind = SHARD_OP_HTTP_ACCEPT;
		l->acc.open = http_open;
		l->config = pl;
		l->http.max_body = pl->request_body_limit;
		s->n_http_listeners++;
		if (pl->use_tls && !(l->tls = http_listener_tls(s, pl)))
			return PT_ERROR;
		if (net_addr_parse(pl->listen, &ss, &len) != PT_OK) {
			pt_error("HTTP listener '%s': expected a numeric address and port, like "
				 "127.0.0.1:8000 or [::1]:8000",
				 pl->listen);
			return PT_ERROR;
		}
		/* SO_REUSEPORT: every shard binds the same address; the kernel spreads connections.
		 */
		l->acc.fd = net_addr_listen(&ss, len, SHARD_LISTEN_BACKLOG, err, sizeof(err));
		if (l->acc.fd < 0) {
			pt_error("HTTP listener %s: %s", pl->listen, err);
			return PT_ERROR;
		}
		shard_acceptor_arm(&l->acc);
		if (s->id == 0)
			pt_info("listening on %s (HTTP%s)", pl->listen, l->tls ? "S" : "");
	}
	return PT_OK;
}

/* ---- connections ------------------------------------------------------------- */

static void http_timer_fn(struct pt_timer *t)
{
	struct shard_http_conn *c = pt_container_of(t, struct shard_http_conn, timer);

	if (c->st.closing || c->request_started)
		return;
	pt_debug("http %s: timeout", c->peer_ip);
	http_session_timeout(c->session);
	http_after_session(c);
}

static void http_timer_arm(struct shard_http_conn *c)
{
	pt_timer_add(&c->shard->wheel, &c->timer, pt_monotonic_ms() + SHARD_HTTP_IDLE_MS);
}

static void http_close(struct shard_http_conn *c, const char *reason)
{
	shard_stream_close(&c->st, reason);
}

static const struct shard_stream_ops http_ops;

/* A connection object: a released one again (its buffers' memory kept), or a new one. */
static struct shard_http_conn *http_conn_alloc(struct shard *s)
{
	struct shard_http_conn *c = s->http_free;
	struct shard_stream old;

	if (c) {
		s->http_free = c->next;
	} else if (!(c = calloc(1, sizeof(*c)))) {
		return NULL;
	}
	old = c->st;
	memset(c, 0, sizeof(*c));
	shard_stream_init(&c->st, s, &http_ops, &old, c->peer_ip);
	c->shard = s;
	c->st.fd = -1;
	pt_timer_init(&c->timer, http_timer_fn);
	c->next = s->http_conns;
	if (s->http_conns)
		s->http_conns->prev = c;
	s->http_conns = c;
	s->n_http_conns++;
	return c;
}

static void http_conn_free(struct shard_http_conn *c)
{
	if (c->session)
		http_session_free(c->session, "connection closed");
	tls_conn_free(c->st.tls);
	shard_stream_free_bufs(&c->st);
	free(c);
}

/*
 * Off the open list onto the free list: the object itself stays valid, so
 * a caller further up the stack (a completion handler that closed it) can
 * still look at c->st.released.
 */
static void http_release(struct shard_http_conn *c)
{
	struct shard *s = c->shard;

	if (c->prev)
		c->prev->next = c->next;
	else
		s->http_conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_http_conns--;
	c->listener->n_conns--;
	close(c->st.fd);
	if (c->session)
		http_session_free(c->session, "connection closed");
	tls_conn_free(c->st.tls);
	c->session = NULL;
	c->st.tls = NULL;
	c->st.released = true;
	c->next = s->http_free;
	s->http_free = c;
}

static void http_maybe_release(struct shard_http_conn *c)
{
	if (c->st.closing && !c->st.released && c->st.n_inflight == 0 && c->inject == NULL &&
	    !c->awaiting)
		http_release(c);
}

void shard_http_release_if_done(struct shard_http_conn *c)
{
	http_maybe_release(c);
}

/* Move what the session wrote to the wire buffer, through TLS when it is on. */
static void http_pump_output(struct shard_http_conn *c)
{
	shard_stream_write(&c->st, http_session_output(c->session));
}

/* ---- answering ------------------------------------------------------------------ */

void shard_http_respond_extra(struct shard_http_conn *c, int status, const char *extra,
			      const char *content_type, const char *body, size_t len)
{
	if (!c->request_started) {
		pt_error("http %s: a second answer to one request (dropped)", c->peer_ip);
		return;
	}
	c->request_started = false;
	if (c->session == NULL || c->st.closing)
		return; /* the client is gone: nobody to answer */
	http_session_respond(c->session, status, extra, content_type, body, len);
	/* Answered later than the dispatch (an injection): go on with the session here. */
	if (!c->dispatching) {
		http_after_session(c);
		if (!c->st.closing)
			http_timer_arm(c);
	}
}

void shard_http_respond(struct shard_http_conn *c, int status, const char *content_type,
			const char *body, size_t len)
{
	shard_http_respond_extra(c, status, NULL, content_type, body, len);
}

static void http_error_extra(struct shard_http_conn *c, int status, const char *extra,
			     const char *text)
{
	struct pt_buf body = PT_BUF_INIT;
	struct pt_json j;

	pt_json_init(&j, &body);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "error", text);
	pt_json_obj_end(&j);
	shard_http_respond_extra(c, status, extra, "application/json", body.data, body.len);
	pt_buf_free(&body);
}

void shard_http_respond_error(struct shard_http_conn *c, int status, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	http_error_extra(c, status, NULL, text);
}

/* ---- authorization and routing ---------------------------------------------------- */

/*
 * KumoMTA's rule (auth.rs): a trusted peer passes as its address; else
 * Basic credentials the policy accepts pass as the user.  True when the
 * request may go on (c->auth set); false when it was answered.
 */
static bool http_authorize(struct shard_http_conn *c, const struct http_request *r)
{
	const struct policy_http_listener *pl = c->listener->config;
	const char *authz = http_request_header(r, "Authorization");
	struct pt_buf cred = PT_BUF_INIT;
	char challenge[320];
	const char *colon;
	bool valid = false;
	int rc;

	c->trusted = pt_cidr_list_match(&pl->trusted_hosts, (struct sockaddr *)&c->peer_sa);
	if (c->trusted) {
		snprintf(c->auth, sizeof(c->auth), "%s", c->peer_ip);
		return true;
	}
	if (authz == NULL) {
		shard_http_respond_error(
		    c, 403,
		    "%s is not in trusted_hosts: send HTTP Basic credentials "
		    "(the policy checks them with http_server_validate_auth_basic)",
		    c->peer_ip);
		return false;
	}
	snprintf(challenge, sizeof(challenge), "WWW-Authenticate: Basic realm=\"%s\"\r\n",
		 pl->hostname);
	if (strncasecmp(authz, "Basic ", 6) != 0) {
		http_error_extra(c, 401, challenge,
				 "only the Basic authorization scheme is supported");
		return false;
	}
	rc = inject_base64_decode(authz + 6, strlen(authz + 6), &cred);
	if (rc != PT_OK || memchr(cred.data ? cred.data : "", '\0', cred.len) != NULL) {
		pt_buf_free(&cred);
		shard_http_respond_error(c, 400, "malformed Authorization header field");
		return false;
	}
	pt_buf_cstr(&cred);
	/* "user:password"; without a colon there is no password (nil to the policy). */
	colon = strchr(cred.data, ':');
	if (colon)
		cred.data[colon - cred.data] = '\0';
	rc = policy_http_validate_auth_basic(c->shard->policy, cred.data, colon ? colon + 1 : NULL,
					     &valid);
	snprintf(c->auth, sizeof(c->auth), "%s", cred.data);
	pt_buf_free(&cred);
	if (rc != PT_OK) {
		shard_http_respond_error(c, 500,
					 "authorization could not be checked, try again "
					 "later");
		return false;
	}
	if (!valid) {
		http_error_extra(c, 401, challenge, "invalid credentials");
		return false;
	}
	return true;
}

static void http_route(struct shard_http_conn *c, const struct http_request *r)
{
	const struct shard_http_route *found = NULL;
	char allow[128] = "";

	for (size_t i = 0; i < PT_ARRAY_LEN(shard_http_routes); i++) {
		const struct shard_http_route *rt = &shard_http_routes[i];

		if (strcmp(rt->path, r->path) != 0)
			continue;
		if (strcmp(rt->method, r->method) == 0) {
			found = rt;
			break;
		}
		snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
			 allow[0] ? ", " : "", rt->method);
	}
	if (found == NULL && allow[0]) {
		char extra[160], text[200];

		snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
		snprintf(text, sizeof(text), "%s is not allowed on %s (use %s)", r->method, r->path,
			 allow);
		http_error_extra(c, 405, extra, text);
		return;
	}
	if (found == NULL) {
		shard_http_respond_error(c, 404, "no such endpoint: %s", r->path);
		return;
	}
	if ((found->flags & SHARD_HTTP_TRUSTED) && !c->trusted) {
		shard_http_respond_error(c, 403, "%s is for trusted hosts only", r->path);
		return;
	}
	found->handler(c, r);
}

static void http_request(struct shard_http_conn *c)
{
	const struct http_request *r = http_session_request(c->session);

	c->request_started = true;
	c->dispatching = true;
	pt_timer_del(&c->shard->wheel, &c->timer);
	if (c->shard->state != SHARD_RUNNING)
		shard_http_respond_error(c, 503, "shutting down, try again later");
	else if (http_authorize(c, r))
		http_route(c, r);
	c->dispatching = false;
}

/* Act on the session's event; loop while requests are answered at once. */
static void http_after_session(struct shard_http_conn *c)
{
	for (;;) {
		enum http_event ev;

		http_pump_output(c);
		if (c->st.closing)
			return;
		ev = http_session_event(c->session);
		if (ev == HTTP_EV_REQUEST && !c->request_started) {
			http_request(c);
			if (!c->request_started)
				continue;
		} else if (ev == HTTP_EV_CLOSE) {
			c->st.close_after_send = true;
		}
		break;
	}
	shard_stream_flush(&c->st);
}

/* ---- input ------------------------------------------------------------------------ */

/* Plaintext for the session (len 0: a TLS record that carried none). */
static void http_plain(struct shard_stream *st, const char *data, size_t len)
{
	struct shard_http_conn *c = pt_container_of(st, struct shard_http_conn, st);

	if (len > 0)
		http_session_feed(c->session, data, len);
	http_after_session(c);
}

static void http_input(struct shard_stream *st, const char *data, size_t len)
{
	struct shard_http_conn *c = pt_container_of(st, struct shard_http_conn, st);

	if (c->session == NULL)
		return; /* a refused connection: its 503 is on the way */
	if (st->tls_state != CONN_TLS_NONE)
		shard_stream_tls_input(st, data, len);
	else
		http_plain(st, data, len);
	if (!st->closing && !c->request_started)
		http_timer_arm(c);
}

static void http_closing(struct shard_stream *st)
{
	struct shard_http_conn *c = pt_container_of(st, struct shard_http_conn, st);

	pt_timer_del(&c->shard->wheel, &c->timer);
	/* The injection in progress finishes its batch in flight and starts no other. */
	if (c->inject)
		shard_inject_abort(c->inject);
	shard_trace_end(c); /* a trace stream: unsubscribe */
}

static void http_stream_maybe_release(struct shard_stream *st)
{
	http_maybe_release(pt_container_of(st, struct shard_http_conn, st));
}

static const struct shard_stream_ops http_ops = {
    .tag = "http ",
    .output_name = "an answer",
    .recv_kind = SHARD_OP_HTTP_RECV,
    .send_kind = SHARD_OP_HTTP_SEND,
    .alert_on_handshake_failure = true,
    .input = http_input,
    .plain = http_plain,
    .tls_done = NULL,
    .closing = http_closing,
    .maybe_release = http_stream_maybe_release,
};

static void http_open(struct shard_acceptor *a, int fd)
{
	struct shard_http_listener *l = pt_container_of(a, struct shard_http_listener, acc);
	struct shard *s = a->shard;
	struct shard_http_conn *c = http_conn_alloc(s);

	if (!c) {
		pt_error("out of memory for an HTTP connection");
		close(fd);
		return;
	}
	c->listener = l;
	l->n_conns++;
	shard_stream_accepted(&c->st, fd, &c->peer_sa, c->peer_ip);
	if (l->n_conns > SHARD_HTTP_MAX_CONNS && !l->tls) {
		static const char busy[] =
		    "HTTP/1.1 503 Service Unavailable\r\n"
		    "Content-Type: application/json\r\nContent-Length: 37\r\n"
		    "Connection: close\r\n\r\n"
		    "{\"error\":\"too many HTTP connections\"}";

		pt_buf_append(&c->st.out, busy, sizeof(busy) - 1);
		c->st.close_after_send = true;
		shard_stream_flush(&c->st);
		return;
	}
	if (l->n_conns > SHARD_HTTP_MAX_CONNS) {
		http_close(c, "too many HTTP connections");
		return;
	}
	c->session = http_session_new(&l->http, c->peer_ip);
	if (l->tls && c->session) {
		c->st.tls = tls_conn_new(l->tls);
		c->st.tls_state = CONN_TLS_HANDSHAKE;
	}
	if (!c->session || (l->tls && !c->st.tls)) {
		http_close(c, "out of memory for a session");
		return;
	}
	shard_stream_recv_arm(&c->st);
	http_timer_arm(c);
}

/* ---- drain and teardown ------------------------------------------------------------ */

void shard_http_shutdown(struct shard *s)
{
	for (size_t i = 0; i < s->n_http_listeners; i++)
		shard_acceptor_stop(&s->http_listeners[i].acc);
	for (struct shard_http_conn *c = s->http_conns, *next; c; c = next) {
		next = c->next;
		if (c->st.closing || !c->session)
			continue;
		http_session_shutdown(c->session);
		if (c->trace_id)
			shard_trace_end(c); /* the last chunk, then close */
		else if (!c->request_started)
			http_after_session(c);
	}
}

void shard_http_abort(struct shard *s)
{
	for (struct shard_http_conn *c = s->http_conns, *next; c; c = next) {
		next = c->next;
		http_close(c, "drain deadline passed");
	}
}

void shard_http_close(struct shard *s)
{
	/* What is left at teardown (the loop has ended): free it without the ring. */
	while (s->http_conns) {
		struct shard_http_conn *c = s->http_conns;

		s->http_conns = c->next;
		if (c->inject)
			shard_inject_free(c->inject);
		close(c->st.fd);
		http_conn_free(c);
	}
	s->n_http_conns = 0;
	while (s->http_free) {
		struct shard_http_conn *c = s->http_free;

		s->http_free = c->next;
		http_conn_free(c);
	}
	for (size_t i = 0; i < s->n_http_listeners; i++) {
		if (s->http_listeners[i].acc.fd >= 0)
			close(s->http_listeners[i].acc.fd);
		tls_ctx_free(s->http_listeners[i].tls);
	}
	free(s->http_listeners);
	s->http_listeners = NULL;
	s->n_http_listeners = 0;
}
