/*
 * shard_trace.c -- GET /api/admin/trace-smtp-server/v1[?source=CIDR] and
 * GET /api/admin/trace-smtp-client/v1[?filters]: live traces of the SMTP
 * server's sessions and of outbound SMTP sessions (KumoMTA's
 * trace-smtp-server and trace-smtp-client, which are websockets there;
 * here a chunked HTTP response of JSON lines).
 *
 *   {"type":"subscribed","shard":0,"source":"127.0.0.0/8"}      first, once
 *   {"time":"...Z","shard":1,"session":"1-7","peer":"127.0.0.1",
 *    "type":"connect"|"command"|"data"|"reply"|"tls"|"close",
 *    "line":"EHLO client.test"}           (data: "bytes" instead of "line")
 *   {"type":"dropped","count":12}         events lost to a slow reader
 *
 * Both sides share the names: "command" is a line the SMTP client sent
 * (the peer's inbound, ours outbound), "reply" a line the SMTP server sent.
 * Outbound, "peer" is the MX address; "connect" is each attempt and also
 * carries ready_queue, egress_source, source_address, domain,
 * routing_domain, mx_host and port; "close" ends a socket with its reason
 * (a refused connection, a failure before the session was ready that moves
 * on to the next address, or the session's end).  The client filters
 * (KumoMTA's names, each one that is given must match; case-insensitive):
 * mx_addr (CIDR of the peer), domain, routing_domain and ready_queue
 * ("source->site") of the connection's ready queue, egress_source, and
 * mx_host; unknown ones are refused (400).  All of them are known when the
 * connection starts, unlike KumoMTA's per-message ones (not offered).
 *
 * A subscriber (struct shard_trace_sub) is made on the shard whose HTTP
 * connection asked, and a copy is posted to every other shard over the
 * mailboxes (SHARD_MSG_TRACE_SUB), as admin entries are.  One list holds
 * both kinds (sub->client tells them apart).  Each shard's SMTP
 * connections call shard_trace_smtp(), its outbound SMTP connections
 * shard_trace_out(), behind `if (s->n_trace_subs)`: a shard without
 * subscribers pays that one branch.  With subscribers, the event is
 * formatted once (one encoder, trace_format) and its line sent to each
 * subscriber whose kind and filters match: written at once when the
 * subscriber is on this shard, else copied in a SHARD_MSG_TRACE_EVENT.
 *
 * Bounded, never stalling a shard: a producer sends an event only when
 * the ring to the subscriber's shard has room and nothing waits in its
 * overflow list (shard_mailbox_try), else drops it and counts it in its
 * copy of the subscriber; the count rides on the next event that goes
 * through.  On the subscriber's shard an event is dropped (counted) when
 * more than SHARD_TRACE_MAX_BUFFERED bytes already wait for the socket.
 * Before the next line that is written, {"type":"dropped","count":N} says
 * how many were lost.
 *
 * The stream ends when the client goes (its connection closing removes
 * the subscriber everywhere, SHARD_MSG_TRACE_UNSUB) or when petreld
 * drains (the last chunk is sent, then the connection closes).  Events in
 * flight for a subscriber that is gone find no subscriber with that id and
 * are dropped: ids, not connection pointers, name subscribers across
 * shards, so a reused connection object never receives another's events.
 *
 * A subscription reaches the other shards at their next loop iteration:
 * a session that starts in the microseconds before may be traced from its
 * second event on.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "core/ptime.h"
#include "shard/shard_int.h"

#define SHARD_TRACE_MAX_SUBS	 32
#define SHARD_TRACE_MAX_BUFFERED (256u << 10) /* bytes waiting for a subscriber's socket */
#define SHARD_TRACE_LINE_MAX	 1000	      /* bytes of one command or reply line kept */

static const char *const trace_kind_names[] = {
    [SHARD_TRACE_CONNECT] = "connect", [SHARD_TRACE_COMMAND] = "command",
    [SHARD_TRACE_DATA] = "data",       [SHARD_TRACE_REPLY] = "reply",
    [SHARD_TRACE_TLS] = "tls",	       [SHARD_TRACE_CLOSE] = "close",
};

/* trace-smtp-client's string filters (KumoMTA's names), in struct shard_trace_sub. */
static const struct {
	const char *name;
	size_t off, len;
} trace_client_filters[] = {
#define TRACE_SUB_SIZE(f) sizeof(((struct shard_trace_sub *)0)->f)
#define TRACE_FILTER(f)	  {#f, offsetof(struct shard_trace_sub, f), TRACE_SUB_SIZE(f)}
    TRACE_FILTER(domain),	 TRACE_FILTER(routing_domain), TRACE_FILTER(ready_queue),
    TRACE_FILTER(egress_source), TRACE_FILTER(mx_host),
#undef TRACE_FILTER
#undef TRACE_SUB_SIZE
};

/* ---- subscribers ----------------------------------------------------------------- */

static struct shard_trace_sub *trace_find(struct shard *s, uint64_t id)
{
	for (size_t i = 0; i < s->n_trace_subs; i++)
		if (s->trace_subs[i].id == id)
			return &s->trace_subs[i];
	return NULL;
}

static void trace_add(struct shard *s, const struct shard_trace_sub *sub)
{
	struct shard_trace_sub *more;

	more = realloc(s->trace_subs, (s->n_trace_subs + 1) * sizeof(*more));
	if (!more)
		pt_panic("out of memory for a trace subscriber");
	s->trace_subs = more;
	s->trace_subs[s->n_trace_subs++] = *sub;
}

static void trace_remove(struct shard *s, uint64_t id)
{
	struct shard_trace_sub *sub = trace_find(s, id);

	if (sub)
		*sub = s->trace_subs[--s->n_trace_subs];
}

/* Post a TRACE_SUB (sub) or TRACE_UNSUB (sub NULL, id) to every other shard. */
static void trace_broadcast(struct shard *s, const struct shard_trace_sub *sub, uint64_t id)
{
	for (unsigned i = 0; i < s->group->n; i++) {
		struct shard_msg *m;

		if (i == s->id)
			continue;
		if (!(m = calloc(1, sizeof(*m))) || (sub && !(m->trace = malloc(sizeof(*sub)))))
			pt_panic("out of memory sending a trace subscription");
		m->kind = sub ? SHARD_MSG_TRACE_SUB : SHARD_MSG_TRACE_UNSUB;
		m->from = s->id;
		m->trace_id = id;
		if (sub)
			*m->trace = *sub;
		shard_mailbox_post(s, i, m);
	}
}

void shard_trace_free(struct shard *s)
{
	free(s->trace_subs);
	s->trace_subs = NULL;
	s->n_trace_subs = 0;
}

/* ---- the stream, on the subscriber's shard ---------------------------------------- */

/* One chunk of the chunked response: the line and a newline. */
static void trace_write(struct shard_http_conn *c, const char *line, size_t len)
{
	struct pt_buf b = PT_BUF_INIT;

	pt_buf_printf(&b, "%zx\r\n", len + 1);
	pt_buf_append(&b, line, len);
	pt_buf_append(&b, "\n\r\n", 3);
	shard_stream_write(&c->st, &b);
	pt_buf_free(&b);
	shard_stream_flush(&c->st);
}

static void trace_deliver(struct shard *s, uint64_t id, const char *line, uint64_t n_dropped)
{
	struct shard_trace_sub *sub = trace_find(s, id);
	struct shard_http_conn *c;
	char note[64];
	int n;

	if (!sub || sub->shard != s->id || sub->conn->st.closing)
		return;
	c = sub->conn;
	c->trace_dropped += n_dropped;
	if (c->st.out.len + c->st.tx.len > SHARD_TRACE_MAX_BUFFERED) {
		c->trace_dropped++; /* a slow reader: never buffer without bound */
		return;
	}
	if (c->trace_dropped) {
		n = snprintf(note, sizeof(note), "{\"type\":\"dropped\",\"count\":%llu}",
			     (unsigned long long)c->trace_dropped);
		trace_write(c, note, (size_t)n);
		c->trace_dropped = 0;
	}
	trace_write(c, line, strlen(line));
}

/* %XX decoding in place (a CIDR's "/" may come as %2F). */
static void trace_percent_decode(char *p)
{
	char *w = p;

	for (; *p; p++) {
		unsigned v;

		if (p[0] == '%' && p[1] && p[2] && sscanf(p + 1, "%2x", &v) == 1) {
			*w++ = (char)v;
			p += 2;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
}

/* The stream starts: the subscriber everywhere, the chunked head and the
 * "subscribed" line with the filters (cidr: the CIDR's text, or ""). */
static void trace_start(struct shard_http_conn *c, struct shard_trace_sub *sub, const char *cidr)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
				   "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n";
	struct shard *s = c->shard;
	struct pt_buf b = PT_BUF_INIT;
	struct pt_json j;

	if (s->n_trace_subs >= SHARD_TRACE_MAX_SUBS) {
		shard_http_respond_error(c, 503, "too many traces running (%d)",
					 SHARD_TRACE_MAX_SUBS);
		return;
	}
	sub->shard = s->id;
	sub->conn = c;
	sub->id = ((uint64_t)s->id << 48) | ++s->trace_seq;
	c->trace_id = sub->id;
	c->trace_dropped = 0;
	trace_add(s, sub);
	trace_broadcast(s, sub, sub->id);
	pt_info("admin: SMTP %s trace started by %s (%s %s)", sub->client ? "client" : "server",
		c->auth, sub->client ? "mx_addr" : "source", cidr[0] ? cidr : "any");
	/* The answer is ours from here on: never shard_http_respond (request_started
	 * stays set, so the session takes no other request and no idle timer runs). */
	pt_buf_append(&b, head, sizeof(head) - 1);
	shard_stream_write(&c->st, &b);
	pt_json_init(&j, &b);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "type", "subscribed");
	pt_json_key_int(&j, "shard", s->id);
	pt_json_key_str(&j, sub->client ? "mx_addr" : "source", cidr[0] ? cidr : NULL);
	for (size_t i = 0; sub->client && i < PT_ARRAY_LEN(trace_client_filters); i++) {
		const char *v = (const char *)sub + trace_client_filters[i].off;

		pt_json_key_str(&j, trace_client_filters[i].name, v[0] ? v : NULL);
	}
	pt_json_obj_end(&j);
	trace_write(c, b.data, b.len);
	pt_buf_free(&b);
}

/* ?name=CIDR into sub's filter: false after answering 400. */
static bool trace_cidr_param(struct shard_http_conn *c, const struct http_request *r,
			     const char *name, struct shard_trace_sub *sub, char *text, size_t len)
{
	if (!shard_admin_query_param(r->query, name, text, len))
		return true;
	trace_percent_decode(text);
	if (pt_cidr_parse(text, &sub->filter) != PT_OK) {
		shard_http_respond_error(c, 400,
					 "\"%s\": expected an address or CIDR such as "
					 "127.0.0.0/8, not \"%s\"",
					 name, text);
		return false;
	}
	sub->has_filter = true;
	return true;
}

void shard_trace_v1(struct shard_http_conn *c, const struct http_request *r)
{
	struct shard_trace_sub sub = {0};
	char source[80] = "";

	if (trace_cidr_param(c, r, "source", &sub, source, sizeof(source)))
		trace_start(c, &sub, source);
}

/* Every query parameter is a filter this trace knows: false after 400. */
static bool trace_client_known(struct shard_http_conn *c, const char *q)
{
	while (q && *q) {
		size_t len = strcspn(q, "&"), key = strcspn(q, "=&");
		bool known = key == strlen("mx_addr") && strncmp(q, "mx_addr", key) == 0;

		for (size_t i = 0; !known && i < PT_ARRAY_LEN(trace_client_filters); i++)
			known = strlen(trace_client_filters[i].name) == key &&
				strncmp(q, trace_client_filters[i].name, key) == 0;
		if (!known && key > 0) {
			shard_http_respond_error(
			    c, 400,
			    "unknown filter \"%.*s\": known are mx_addr, domain, "
			    "routing_domain, ready_queue, egress_source, mx_host",
			    (int)PT_MIN(key, 64), q);
			return false;
		}
		q += len + (q[len] == '&');
	}
	return true;
}

void shard_trace_client_v1(struct shard_http_conn *c, const struct http_request *r)
{
	struct shard_trace_sub sub = {.client = true};
	char mx_addr[80] = "", value[1024];

	if (!trace_client_known(c, r->query) ||
	    !trace_cidr_param(c, r, "mx_addr", &sub, mx_addr, sizeof(mx_addr)))
		return;
	for (size_t i = 0; i < PT_ARRAY_LEN(trace_client_filters); i++) {
		const char *name = trace_client_filters[i].name;

		if (!shard_admin_query_param(r->query, name, value, sizeof(value)))
			continue;
		trace_percent_decode(value);
		if (!value[0] || strlen(value) >= trace_client_filters[i].len) {
			shard_http_respond_error(c, 400, "\"%s\": expected 1 to %zu characters",
						 name, trace_client_filters[i].len - 1);
			return;
		}
		memcpy((char *)&sub + trace_client_filters[i].off, value, strlen(value) + 1);
	}
	trace_start(c, &sub, mx_addr);
}

void shard_trace_end(struct shard_http_conn *c)
{
	struct shard *s = c->shard;

	if (!c->trace_id)
		return;
	trace_remove(s, c->trace_id);
	trace_broadcast(s, NULL, c->trace_id);
	c->trace_id = 0;
	if (c->st.closing)
		return;
	/* petreld drains: the last chunk, then close. */
	pt_buf_append(&c->st.out, "0\r\n\r\n", 5);
	c->st.close_after_send = true;
	shard_stream_flush(&c->st);
}

void shard_trace_handle(struct shard *s, struct shard_msg *m)
{
	switch (m->kind) {
	case SHARD_MSG_TRACE_SUB:
		trace_add(s, m->trace);
		free(m->trace);
		break;
	case SHARD_MSG_TRACE_UNSUB:
		trace_remove(s, m->trace_id);
		break;
	default:
		trace_deliver(s, m->trace_id, m->text, m->n_dropped);
		free(m->text);
		break;
	}
}

/* ---- events, on the SMTP connection's shard ------------------------------------------ */

/* One event of an inbound (out NULL) or outbound session. */
struct trace_event {
	enum shard_trace_kind kind;
	uint64_t session;
	const char *peer; /* the other side's address */
	const struct sockaddr *peer_sa;
	const struct shard_out *out; /* outbound: the connection */
	const char *text;
	size_t len;
};

static bool trace_str_match(const char *want, const char *have)
{
	return !want[0] || (have && strcasecmp(want, have) == 0);
}

/* Whether sub wants ev.  A client filter on a property the session does not
 * have (no routing_domain) excludes it: a filter given is always applied. */
static bool trace_match(struct shard_trace_sub *sub, const struct trace_event *ev)
{
	struct pt_cidr_list one = {.items = &sub->filter, .n = 1};
	const struct shard_ready *rq;

	if (sub->client != (ev->out != NULL))
		return false;
	if (sub->has_filter && !pt_cidr_list_match(&one, ev->peer_sa))
		return false;
	if (!sub->client)
		return true;
	rq = ev->out->rq;
	return trace_str_match(sub->domain, rq->domain) &&
	       trace_str_match(sub->routing_domain, rq->routing_domain) &&
	       trace_str_match(sub->ready_queue, rq->key) &&
	       trace_str_match(sub->egress_source, rq->source) &&
	       trace_str_match(sub->mx_host, ev->out->cur->name);
}

/* An outbound connection's first event says what it is. */
static void trace_format_queue(struct pt_json *j, const struct shard_out *o)
{
	const struct shard_ready *rq = o->rq;

	pt_json_key_str(j, "ready_queue", rq->key);
	pt_json_key_str(j, "egress_source", rq->source);
	pt_json_key_str(j, "source_address", rq->has_bind ? rq->bind.text : NULL);
	pt_json_key_str(j, "domain", rq->domain);
	pt_json_key_str(j, "routing_domain", rq->routing_domain);
	pt_json_key_str(j, "mx_host", o->cur->name);
	pt_json_key_int(j, "port", o->cur->port);
}

static void trace_format(struct pt_buf *b, struct shard *s, const struct trace_event *ev)
{
	struct pt_json j;
	char when[32], session[48];

	snprintf(session, sizeof(session), "%u-%llu", s->id, (unsigned long long)ev->session);
	pt_json_init(&j, b);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "time", pt_time_rfc3339(pt_wall_us(), when));
	pt_json_key_int(&j, "shard", s->id);
	pt_json_key_str(&j, "session", session);
	pt_json_key_str(&j, "peer", ev->peer);
	pt_json_key_str(&j, "type", trace_kind_names[ev->kind]);
	if (ev->out && ev->kind == SHARD_TRACE_CONNECT)
		trace_format_queue(&j, ev->out);
	if (ev->kind == SHARD_TRACE_DATA)
		pt_json_key_int(&j, "bytes", (int64_t)ev->len);
	else if (ev->text)
		pt_json_key_strn(&j, "line", ev->text, PT_MIN(ev->len, SHARD_TRACE_LINE_MAX));
	pt_json_obj_end(&j);
}

static void trace_emit(struct shard *s, const struct trace_event *ev)
{
	struct pt_buf b = PT_BUF_INIT;

	for (size_t i = 0; i < s->n_trace_subs; i++) {
		struct shard_trace_sub *sub = &s->trace_subs[i];
		struct shard_msg *m;

		if (!trace_match(sub, ev))
			continue;
		if (b.len == 0)
			trace_format(&b, s, ev);
		if (sub->shard == s->id) {
			trace_deliver(s, sub->id, pt_buf_cstr(&b), sub->n_dropped);
			sub->n_dropped = 0;
			continue;
		}
		if (!(m = calloc(1, sizeof(*m))) || !(m->text = strdup(pt_buf_cstr(&b))))
			pt_panic("out of memory sending a trace event");
		m->kind = SHARD_MSG_TRACE_EVENT;
		m->from = s->id;
		m->trace_id = sub->id;
		m->n_dropped = sub->n_dropped;
		if (shard_mailbox_try(s, sub->shard, m)) {
			sub->n_dropped = 0;
		} else {
			free(m->text);
			free(m);
			sub->n_dropped++;
		}
	}
	pt_buf_free(&b);
}

/* Commands and replies: one event per line, without its CRLF. */
static void trace_lines(struct shard *s, struct trace_event *ev)
{
	const char *text = ev->text;
	size_t len = ev->len;

	if (ev->kind != SHARD_TRACE_COMMAND && ev->kind != SHARD_TRACE_REPLY) {
		trace_emit(s, ev);
		return;
	}
	while (len > 0) {
		const char *nl = memchr(text, '\n', len);
		size_t line = nl ? (size_t)(nl - text) + 1 : len, n = line;

		while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
			n--;
		ev->text = text;
		ev->len = n;
		trace_emit(s, ev);
		text += line;
		len -= line;
	}
}

void shard_trace_smtp(struct shard_conn *c, enum shard_trace_kind kind, const char *text,
		      size_t len)
{
	struct trace_event ev = {.kind = kind,
				 .peer = c->peer_ip,
				 .peer_sa = (const struct sockaddr *)&c->peer_sa,
				 .text = text,
				 .len = len};

	if (!c->trace_session)
		c->trace_session = ++c->shard->trace_seq;
	ev.session = c->trace_session;
	trace_lines(c->shard, &ev);
}

void shard_trace_out(struct shard_out *o, enum shard_trace_kind kind, const char *text, size_t len)
{
	struct trace_event ev = {.kind = kind, .out = o, .text = text, .len = len};

	if (o->proto != &shard_out_smtp || !o->cur)
		return;
	if (!o->trace_session)
		o->trace_session = ++o->shard->trace_seq;
	ev.session = o->trace_session;
	ev.peer = o->cur->addr.text;
	ev.peer_sa = (const struct sockaddr *)&o->cur->addr.sa;
	trace_lines(o->shard, &ev);
}
