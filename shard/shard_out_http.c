/*
 * shard_out_http.c -- the HTTP protocol of outbound connections: a queue
 * whose config has protocol.http (policy_queue_http.c) delivers each batch
 * as one HTTP request through the HTTP client state machine
 * (net/http_client.c) on a connection that shard_out.c runs.
 *
 * The ready queue is "source->http://host:port" (shard_ready.c), its one
 * host the URL's, so connection_limit, the rates, idle_timeout and
 * max_deliveries_per_connection (requests) of the egress path apply as for
 * SMTP, and retries follow the queue's schedule.  The session is READY as
 * soon as the connection is up; a response that keeps the connection alive
 * makes it READY again, Connection: close ends it (the next batch opens a
 * new one).
 *
 * A batch is up to the queue's batch_size ready units of one scheduled
 * queue (shard_ready_same_queue: one config for the whole request), one
 * body per unit.  Each unit's part is the message as stored, or
 * body_template rendered (net/template.c) with:
 *
 *   data       the message (headers and body, CRLF line ends), a string
 *   id, sender, recipient, queue
 *   meta       the message's meta values, an object
 *
 * With batch_size 1 the request's body is that part; above 1 (content_type
 * application/json, enforced by make_queue_config) it is a JSON array of
 * the parts, each of which must be JSON (else that unit bounces, 554
 * 5.6.0, and the others go on).  A body_template that does not compile or
 * render fails its units with 451 4.3.0 (a policy mistake: a reload fixes
 * it and the retry delivers).  Messages that are not UTF-8 reach `data`
 * with their non-ASCII bytes as '?': a JSON string can't hold them.
 *
 * https:// (the site's scheme): the TLS handshake (shard_out_tls_start)
 * starts when the client is first READY, and READY reaches shard_out.c
 * only once it is done; a failed or timed-out handshake is a failure
 * before READY (shard_out_retry_next), as SMTP's.
 *
 * A request on a reused connection that the peer closes before sending a
 * byte goes back to the ready queue for a new connection, not to the
 * retry schedule (the usual idle-close race); at-least-once either way.
 *
 * Outcomes (the whole batch shares one response):
 *   2xx                               Delivery, 250 2.0.0
 *   5xx, 408, 429, no whole response  TransientFailure, 451 4.0.0 (4.4.2
 *                                     when there was no response)
 *   other (3xx, 4xx)                  Bounce, 550 5.0.0
 * with the content "HTTP <status> <reason>: <first 512 octets of the
 * body>" (KumoMTA's webhook example logs "%d %s: %s" the same way) and
 * delivery_protocol "HTTP".
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/template.h"
#include "shard/shard_int.h"

#define HTTP_MAX_HEADERS  64
#define HTTP_RENDER_SLACK (16u << 20) /* a template's text beyond the message's size */

struct out_http {
	struct http_client *client;
	struct pt_buf body;   /* the request's body */
	struct pt_buf part;   /* one unit's part */
	struct template *tpl; /* body_template compiled, for tpl_text */
	char *tpl_text;
	bool ready_pending; /* https: READY waits for the handshake */
};

static struct out_http *http_of(const struct shard_out *o)
{
	return o->session;
}

static int http_open(struct shard_out *o)
{
	struct http_client_config cfg = {0};
	struct out_http *h = calloc(1, sizeof(*h));

	if (!h)
		return PT_NOMEM;
	if (!(h->client = http_client_new(&cfg))) {
		free(h);
		return PT_NOMEM;
	}
	o->session = h;
	return PT_OK;
}

static void http_free(struct shard_out *o)
{
	struct out_http *h = http_of(o);

	http_client_free(h->client);
	pt_buf_free(&h->body);
	pt_buf_free(&h->part);
	template_free(h->tpl);
	free(h->tpl_text);
	free(h);
}

/* ---- outcomes ---- */

static bool http_transient(int status)
{
	return status >= 500 || status == 408 || status == 429;
}

/* The response as the reply every unit of the batch is logged with. */
static void http_reply(const struct http_client_response *resp, struct smtp_client_reply *r)
{
	int code;

	if (resp->status == 0) {
		smtp_client_local_reply(r, 451, 4, 2, NULL, "HTTP request failed: %s",
					resp->reason);
		return;
	}
	if (resp->status >= 200 && resp->status < 300)
		code = 250;
	else if (http_transient(resp->status))
		code = 451;
	else
		code = 550;
	smtp_client_local_reply(r, code, 0, 0, NULL, "HTTP %d %s%s%s%s", resp->status, resp->reason,
				resp->body_len ? ": " : "", resp->body,
				resp->body_cut ? "..." : "");
	r->local = false;
}

static void http_done(struct shard_out *o)
{
	const struct http_client_response *resp = http_client_response(http_of(o)->client);
	struct smtp_client_reply r;
	struct shard_log_outcome lo;

	if (resp->unanswered && o->n_messages > 1) {
		/* A reused connection closed under the request (an idle close
		 * crossing it): the units go back and a new connection takes
		 * them now.  Never on a connection's first request, so a server
		 * that never answers still meets the retry schedule. */
		pt_debug("%s: reused connection closed before any response; requeued", o->rq->site);
		shard_out_give_back(o);
		return;
	}
	http_reply(resp, &r);
	lo = shard_out_outcome(o, &r);
	for (size_t i = 0; i < o->n_batch; i++) {
		if (r.code >= 200 && r.code < 300)
			shard_unit_delivered(o->shard, o->batch[i], &lo);
		else
			shard_unit_failed(o->shard, o->batch[i], &lo);
	}
	o->n_batch = 0;
}

/* The ready queue's site says whether its connections use TLS (a URL's
 * scheme, and accept_invalid_certs, are part of the site: policy_queue_http.c). */
static bool http_tls(const struct shard_out *o)
{
	return strncmp(o->rq->site, "https", 5) == 0;
}

static bool http_tls_verify(const struct shard_out *o)
{
	return strncmp(o->rq->site, "https+insecure://", 17) != 0;
}

/* TLS failed before the session was READY: the next address, as SMTP does. */
static void http_tls_failed(struct shard_out *o, const char *why)
{
	struct smtp_client_reply r;

	smtp_client_local_reply(&r, 451, 7, 5, "TLS", "TLS handshake with %s failed: %s",
				o->cur->name, why);
	shard_out_retry_next(o, &r);
}

/* The client is READY: at once in plain HTTP; with https after the
 * handshake, which the first READY starts. */
static bool http_ready(struct shard_out *o)
{
	struct out_http *h = http_of(o);
	char err[256];

	if (!http_tls(o) || o->tls_state == CONN_TLS_ON) {
		shard_out_became_ready(o);
		return true;
	}
	h->ready_pending = true;
	if (o->tls_state == CONN_TLS_NONE &&
	    shard_out_tls_start(o, http_tls_verify(o), err, sizeof(err)) != PT_OK) {
		http_tls_failed(o, err);
		return false;
	}
	return true;
}

static void http_events(struct shard_out *o)
{
	enum http_client_event ev;

	while (!o->closing && o->session && o->state == OUT_SESSION &&
	       (ev = http_client_next_event(http_of(o)->client)) != HTTP_CLIENT_EV_NONE) {
		switch (ev) {
		case HTTP_CLIENT_EV_READY:
			if (!http_ready(o))
				return;
			break;
		case HTTP_CLIENT_EV_DONE:
			http_done(o);
			break;
		case HTTP_CLIENT_EV_CLOSED:
			shard_out_close(o, "HTTP connection ended");
			return;
		default:
			break;
		}
	}
	shard_out_pump(o);
}

/* ---- the request ---- */

/* The message as a JSON string; bytes JSON can't hold (not UTF-8) as '?'. */
static json_t *http_message_string(const struct pt_buf *text)
{
	json_t *j = json_stringn(text->data ? text->data : "", text->len);
	char *copy;

	if (j || text->len == 0)
		return j;
	if (!(copy = malloc(text->len)))
		return NULL;
	for (size_t i = 0; i < text->len; i++)
		copy[i] =
		    (unsigned char)text->data[i] < 0x80 && text->data[i] ? text->data[i] : '?';
	j = json_stringn(copy, text->len);
	free(copy);
	return j;
}

static json_t *http_vars(const struct shard_unit *u, const struct pt_message *m,
			 const struct pt_buf *text)
{
	json_t *v = json_object(), *meta = json_object();

	if (!v || !meta) {
		json_decref(v);
		json_decref(meta);
		return NULL;
	}
	json_object_set_new(v, "data", http_message_string(text));
	json_object_set_new(v, "id", json_string(m->id));
	json_object_set_new(v, "sender", json_string(m->sender ? m->sender : ""));
	json_object_set_new(v, "recipient", json_string(u->recipient));
	json_object_set_new(v, "queue", json_string(u->queue));
	for (size_t i = 0; i < m->n_meta; i++)
		json_object_set_new(meta, m->meta[i].key,
				    json_loads(m->meta[i].json, JSON_DECODE_ANY, NULL));
	json_object_set_new(v, "meta", meta);
	return v;
}

/* Unit u's part (its message m, through the template when there is one)
 * into h->part.  PT_OK, or PT_ERROR with err. */
static int http_render(struct out_http *h, const struct shard_unit *u, const struct pt_message *m,
		       char *err, size_t err_len)
{
	struct iovec iov[4];
	int n = pt_message_iov(m, iov), rc = PT_OK;
	struct pt_buf text = PT_BUF_INIT;
	json_t *vars;

	h->part.len = 0;
	for (int i = 0; i < n && rc == PT_OK; i++)
		rc = pt_buf_append(h->tpl ? &text : &h->part, iov[i].iov_base, iov[i].iov_len);
	if (rc == PT_OK && h->tpl) {
		if ((vars = http_vars(u, m, &text)) == NULL) {
			rc = PT_NOMEM;
		} else {
			rc = template_render(h->tpl, vars, text.len + HTTP_RENDER_SLACK, &h->part,
					     err, err_len);
			json_decref(vars);
		}
	}
	pt_buf_free(&text);
	if (rc == PT_NOMEM)
		snprintf(err, err_len, "out of memory");
	return rc == PT_OK ? PT_OK : PT_ERROR;
}

/* h->tpl for the queue's body_template (kept while it is the same text). */
static int http_template(struct out_http *h, const struct policy_queue_http *cfg, char *err,
			 size_t err_len)
{
	const char *text = cfg->body_template;

	if (h->tpl_text && text && strcmp(h->tpl_text, text) == 0)
		return PT_OK;
	template_free(h->tpl);
	free(h->tpl_text);
	h->tpl = NULL;
	h->tpl_text = NULL;
	if (!text)
		return PT_OK;
	if (!(h->tpl = template_compile(text, strlen(text), false, err, err_len)))
		return PT_ERROR;
	if (!(h->tpl_text = strdup(text))) {
		template_free(h->tpl);
		h->tpl = NULL;
		snprintf(err, err_len, "out of memory");
		return PT_ERROR;
	}
	return PT_OK;
}

static bool http_is_json(const struct pt_buf *b)
{
	json_t *j = json_loadb(b->data ? b->data : "", b->len, JSON_DECODE_ANY, NULL);

	json_decref(j);
	return j != NULL;
}

int shard_out_http_template_check(const char *text, size_t len, char *err, size_t err_len)
{
	struct template *t = template_compile(text, len, false, err, err_len);

	template_free(t);
	return t ? PT_OK : PT_ERROR;
}

/* Unit i of the batch fails on its own, before the request (it is dropped
 * from the batch by the caller). */
static void http_fail_unit(struct shard_out *o, size_t i, int code, int subject, const char *fmt,
			   const char *why)
{
	struct smtp_client_reply r;
	struct shard_log_outcome lo;

	smtp_client_local_reply(&r, code, subject, 0, NULL, fmt, why);
	lo = shard_out_outcome(o, &r);
	shard_unit_failed(o->shard, o->batch[i], &lo);
}

/* Every unit's part into h->body (a JSON array when batched); the units
 * that could not be rendered fail and leave the batch. */
static void http_build_body(struct shard_out *o, const struct policy_queue_http *cfg)
{
	struct out_http *h = http_of(o);
	bool array = cfg->batch_size > 1;
	size_t kept = 0;
	char err[256];

	h->body.len = 0;
	if (array)
		pt_buf_append(&h->body, "[", 1);
	for (size_t i = 0; i < o->n_batch; i++) {
		if (http_render(h, o->batch[i], o->bodies[i], err, sizeof(err)) != PT_OK) {
			http_fail_unit(o, i, 451, 3, "body_template: %s", err);
			continue;
		}
		if (array && !http_is_json(&h->part)) {
			http_fail_unit(
			    o, i, 554, 6, "%s: a batched application/json body must be JSON",
			    cfg->body_template ? "the rendered body_template" : "the message");
			continue;
		}
		if (array && kept > 0)
			pt_buf_append(&h->body, ",", 1);
		pt_buf_append(&h->body, h->part.data, h->part.len);
		o->batch[kept++] = o->batch[i];
	}
	if (array)
		pt_buf_append(&h->body, "]", 1);
	o->n_batch = kept;
}

static void http_send(struct shard_out *o)
{
	struct out_http *h = http_of(o);
	const struct shard_sched *sq = o->batch[0]->sched;
	const struct policy_queue_http *cfg = sq ? sq->cfg.http : NULL;
	struct http_client_header headers[HTTP_MAX_HEADERS];
	struct http_client_request req;
	struct iovec iov;
	char err[256];

	if (!cfg || http_template(h, cfg, err, sizeof(err)) != PT_OK) {
		shard_out_free_bodies(o);
		if (!cfg)
			shard_out_fail_batch_local(o, "the queue no longer delivers by HTTP");
		else
			shard_out_fail_batch_local(o, err);
		return;
	}
	http_build_body(o, cfg);
	shard_out_free_bodies(o);
	if (o->n_batch == 0) {
		o->ready = true;
		shard_out_wake(o);
		return;
	}
	for (size_t i = 0; i < cfg->n_headers && i < HTTP_MAX_HEADERS; i++)
		headers[i] =
		    (struct http_client_header){cfg->headers[i].name, cfg->headers[i].value};
	iov = (struct iovec){h->body.data, h->body.len};
	req = (struct http_client_request){
	    .method = cfg->method,
	    .host = cfg->host_field,
	    .path = cfg->path,
	    .content_type = cfg->content_type,
	    .headers = headers,
	    .n_headers = cfg->n_headers < HTTP_MAX_HEADERS ? cfg->n_headers : HTTP_MAX_HEADERS,
	    .body = &iov,
	    .n_body = 1,
	    .timeout_ms = cfg->timeout_ms,
	};
	if (http_client_send(h->client, &req) != PT_OK) {
		shard_out_fail_batch_local(o, "the HTTP request could not be made");
		return;
	}
	http_events(o);
}

/* ---- the table ---- */

static void http_tls_input(struct shard_out *o, const char *data, size_t len)
{
	struct out_http *h = http_of(o);
	bool done, eof;

	switch (shard_out_tls_input(o, data, len, &done, &eof)) {
	case PT_OK:
		break;
	case PT_ERROR:
		http_tls_failed(o, tls_conn_error(o->tls));
		return;
	default:
		return;
	}
	if (done && h->ready_pending) {
		h->ready_pending = false;
		shard_out_became_ready(o);
	}
	if (o->closing || o->state != OUT_SESSION)
		return;
	if (o->plain.len > 0 && http_client_feed(h->client, o->plain.data, o->plain.len) != PT_OK) {
		shard_out_close(o, "out of memory");
		return;
	}
	if (eof)
		http_client_eof(h->client);
	http_events(o);
}

static void http_input(struct shard_out *o, const char *data, size_t len)
{
	if (o->tls_state != CONN_TLS_NONE) {
		http_tls_input(o, data, len);
		return;
	}
	if (http_client_feed(http_of(o)->client, data, len) != PT_OK) {
		shard_out_close(o, "out of memory");
		return;
	}
	http_events(o);
}

static void http_eof(struct shard_out *o)
{
	http_client_eof(http_of(o)->client);
}

static void http_timeout(struct shard_out *o)
{
	if (o->tls_state == CONN_TLS_HANDSHAKE) {
		o->tls_state = CONN_TLS_NONE;
		http_tls_failed(o, "timed out");
		return;
	}
	http_client_timeout(http_of(o)->client);
}

/* The request's, or the egress path's starttls_timeout for the handshake. */
static uint64_t http_timeout_ms(const struct shard_out *o)
{
	if (o->tls_state == CONN_TLS_HANDSHAKE)
		return o->rq->cfg.starttls_timeout_ms ? o->rq->cfg.starttls_timeout_ms : 5000;
	return http_client_timeout_ms(http_of(o)->client);
}

static struct pt_buf *http_output(struct shard_out *o)
{
	return http_client_output(http_of(o)->client);
}

/* The head unit's queue's batch_size (1 when it no longer has protocol.http). */
static size_t http_batch_max(const struct shard_ready *rq)
{
	const struct shard_sched *sq = rq->head ? rq->head->sched : NULL;

	return sq && sq->cfg.http ? sq->cfg.http->batch_size : 1;
}

static void http_quit(struct shard_out *o)
{
	http_client_quit(http_of(o)->client);
	http_events(o);
}

const struct shard_out_proto shard_out_http = {
    .name = "HTTP",
    .body_per_unit = true,
    .open = http_open,
    .free = http_free,
    .input = http_input,
    .eof = http_eof,
    .timeout = http_timeout,
    .timeout_ms = http_timeout_ms,
    .output = http_output,
    .events = http_events,
    .batch_max = http_batch_max,
    .same_batch = shard_ready_same_queue,
    .send = http_send,
    .quit = http_quit,
};
