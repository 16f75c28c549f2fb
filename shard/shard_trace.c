/*
 * shard_trace.c -- GET /api/admin/trace-smtp-server/v1[?source=CIDR]: a
 * live trace of the SMTP server's sessions (KumoMTA's trace-smtp-server,
 * which is a websocket there; here a chunked HTTP response of JSON lines).
 *
 *   {"type":"subscribed","shard":0,"source":"127.0.0.0/8"}      first, once
 *   {"time":"...Z","shard":1,"session":"1-7","peer":"127.0.0.1",
 *    "type":"connect"|"command"|"data"|"reply"|"tls"|"close",
 *    "line":"EHLO client.test"}           (data: "bytes" instead of "line")
 *   {"type":"dropped","count":12}         events lost to a slow reader
 *
 * A subscriber (struct shard_trace_sub) is made on the shard whose HTTP
 * connection asked, and a copy is posted to every other shard over the
 * mailboxes (SHARD_MSG_TRACE_SUB), as admin entries are.  Each shard's SMTP
 * connections call shard_trace_smtp() behind `if (s->n_trace_subs)`: a
 * shard without subscribers pays that one branch.  With subscribers, the
 * event is formatted once and its line sent to each subscriber whose
 * filter matches the peer: written at once when the subscriber is on this
 * shard, else copied in a SHARD_MSG_TRACE_EVENT.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void shard_trace_v1(struct shard_http_conn *c, const struct http_request *r)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
				   "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n\r\n";
	struct shard *s = c->shard;
	struct shard_trace_sub sub = {.shard = s->id, .conn = c};
	struct pt_buf b = PT_BUF_INIT;
	struct pt_json j;
	char source[80] = "";

	if (shard_admin_query_param(r->query, "source", source, sizeof(source))) {
		trace_percent_decode(source);
		if (pt_cidr_parse(source, &sub.filter) != PT_OK) {
			shard_http_respond_error(c, 400,
						 "\"source\": expected an address or CIDR such as "
						 "127.0.0.0/8, not \"%s\"",
						 source);
			return;
		}
		sub.has_filter = true;
	}
	if (s->n_trace_subs >= SHARD_TRACE_MAX_SUBS) {
		shard_http_respond_error(c, 503, "too many traces running (%d)",
					 SHARD_TRACE_MAX_SUBS);
		return;
	}
	sub.id = ((uint64_t)s->id << 48) | ++s->trace_seq;
	c->trace_id = sub.id;
	c->trace_dropped = 0;
	trace_add(s, &sub);
	trace_broadcast(s, &sub, sub.id);
	pt_info("admin: SMTP trace started by %s (source %s)", c->auth, source[0] ? source : "any");
	/* The answer is ours from here on: never shard_http_respond (request_started
	 * stays set, so the session takes no other request and no idle timer runs). */
	pt_buf_append(&b, head, sizeof(head) - 1);
	shard_stream_write(&c->st, &b);
	pt_json_init(&j, &b);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "type", "subscribed");
	pt_json_key_int(&j, "shard", s->id);
	pt_json_key_str(&j, "source", source[0] ? source : NULL);
	pt_json_obj_end(&j);
	trace_write(c, b.data, b.len);
	pt_buf_free(&b);
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

static void trace_format(struct pt_buf *b, struct shard_conn *c, enum shard_trace_kind kind,
			 const char *text, size_t len)
{
	struct pt_json j;
	char when[32], session[48];

	snprintf(session, sizeof(session), "%u-%llu", c->shard->id,
		 (unsigned long long)c->trace_session);
	pt_json_init(&j, b);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "time", pt_time_rfc3339(pt_wall_us(), when));
	pt_json_key_int(&j, "shard", c->shard->id);
	pt_json_key_str(&j, "session", session);
	pt_json_key_str(&j, "peer", c->peer_ip);
	pt_json_key_str(&j, "type", trace_kind_names[kind]);
	if (kind == SHARD_TRACE_DATA)
		pt_json_key_int(&j, "bytes", (int64_t)len);
	else if (text)
		pt_json_key_strn(&j, "line", text, PT_MIN(len, SHARD_TRACE_LINE_MAX));
	pt_json_obj_end(&j);
}

static void trace_emit(struct shard_conn *c, enum shard_trace_kind kind, const char *text,
		       size_t len)
{
	struct shard *s = c->shard;
	struct pt_buf b = PT_BUF_INIT;

	for (size_t i = 0; i < s->n_trace_subs; i++) {
		struct shard_trace_sub *sub = &s->trace_subs[i];
		struct pt_cidr_list one = {.items = &sub->filter, .n = 1};
		struct shard_msg *m;

		if (sub->has_filter && !pt_cidr_list_match(&one, (struct sockaddr *)&c->peer_sa))
			continue;
		if (b.len == 0)
			trace_format(&b, c, kind, text, len);
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

void shard_trace_smtp(struct shard_conn *c, enum shard_trace_kind kind, const char *text,
		      size_t len)
{
	if (!c->trace_session)
		c->trace_session = ++c->shard->trace_seq;
	if (kind != SHARD_TRACE_COMMAND && kind != SHARD_TRACE_REPLY) {
		trace_emit(c, kind, text, len);
		return;
	}
	/* One event per line, without its CRLF. */
	while (len > 0) {
		const char *nl = memchr(text, '\n', len);
		size_t line = nl ? (size_t)(nl - text) + 1 : len, n = line;

		while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
			n--;
		trace_emit(c, kind, text, n);
		text += line;
		len -= line;
	}
}
