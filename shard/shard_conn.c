/*
 * shard_conn.c -- listeners and SMTP connections on a shard's ring.
 *
 * The SMTP session (net/smtp_server.c) is a pure state machine; this file
 * is the glue between it and io_uring, through the stream plumbing it
 * shares with HTTP (shard_stream.c):
 *
 *   multishot accept  -> conn_open: session created, greeting queued
 *   multishot recv    -> conn_input: (TLS decrypt) -> smtp_session_feed
 *                        -> conn_after_session: act on the session's event
 *   one send at a time: `out` collects wire bytes while `tx` is in flight
 *                        (double buffering, so a send's memory never moves)
 *
 * Closing: conn_close() shuts the socket down, which ends the multishot
 * receive with EOF; the connection is released only when no operation that
 * points at it is left in the ring (st.n_inflight == 0) and the spool is
 * done with its message (commit_pending), so a completion never finds
 * freed memory.
 *
 * STARTTLS: when the session raises SMTP_EV_STARTTLS its plaintext 220 is
 * moved to the wire first; from then on every received byte is TLS
 * ciphertext.  Plaintext that was pipelined after STARTTLS was discarded
 * by the session (RFC 3207 section 6).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/cidr.h"
#include "core/ptime.h"
#include "net/addr.h"
#include "shard/shard_int.h"


static void conn_after_session(struct shard_conn *c);
static void conn_open(struct shard_acceptor *a, int fd);

static int shard_listen_socket(const char *addr)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256];
	int fd;

	if (net_addr_parse(addr, &ss, &len) != PT_OK) {
		pt_error("listener '%s': expected a numeric address and port, like "
			 "127.0.0.1:2525 or [::1]:2525",
			 addr);
		return -1;
	}
	/* SO_REUSEPORT: every shard binds the same address; the kernel spreads connections. */
	fd = net_addr_listen(&ss, len, SHARD_LISTEN_BACKLOG, err, sizeof(err));
	if (fd < 0)
		pt_error("listener %s: %s", addr, err);
	return fd;
}

static struct tls_ctx *shard_listener_tls(struct shard *s, const struct policy_listener *pl)
{
	const struct shard_group_config *gc = &s->group->cfg;
	char err[256];
	struct tls_ctx *ctx;

	if (pl->tls_certificate && pl->tls_private_key)
		ctx = tls_ctx_new_server_files(pl->tls_certificate, pl->tls_private_key, err,
					       sizeof(err));
	else if (gc->tls_cert_pem)
		ctx = tls_ctx_new_server(gc->tls_cert_pem, gc->tls_cert_len, gc->tls_key_pem,
					 gc->tls_key_len, err, sizeof(err));
	else
		return NULL;
	if (!ctx)
		pt_error("listener %s: %s", pl->listen, err);
	return ctx;
}

int shard_listeners_open(struct shard *s)
{
	const struct policy_config *pc = policy_config(s->policy);
	unsigned n = s->group->n;

	if (pc->n_listeners == 0)
		pt_warn("the policy starts no listener: nothing will be received");
	s->listeners = calloc(pc->n_listeners ? pc->n_listeners : 1, sizeof(*s->listeners));
	if (!s->listeners)
		return PT_NOMEM;
	for (size_t i = 0; i < pc->n_listeners; i++) {
		const struct policy_listener *pl = &pc->listeners[i];
		struct shard_listener *l = &s->listeners[i];

		l->acc.shard = s;
		l->acc.listen = pl->listen;
		l->acc.fd = -1;
		l->acc.accept_op.kind = SHARD_OP_ACCEPT;
		l->acc.open = conn_open;
		l->config = pl;
		s->n_listeners++;
		l->tls = shard_listener_tls(s, pl);
		if ((pl->tls_certificate || s->group->cfg.tls_cert_pem) && !l->tls)
			return PT_ERROR;
		l->smtp.hostname = pl->hostname;
		l->smtp.banner = pl->banner;
		l->smtp.max_message_size = pl->max_message_size;
		l->smtp.max_recipients = pl->max_recipients_per_message;
		l->smtp.tls_available = l->tls != NULL;
		l->smtp.shard = s->id;
		l->smtp.spool_full = &s->spool_full;
		s->spool_floor_bytes = PT_MAX(s->spool_floor_bytes, pl->max_message_size);
		/* Each shard takes its share of the listener's connection limit. */
		l->max_conns = (pl->max_connections + n - 1) / n;
		l->acc.fd = shard_listen_socket(pl->listen);
		if (l->acc.fd < 0)
			return PT_ERROR;
		shard_acceptor_arm(&l->acc);
		if (s->id == 0)
			pt_info("listening on %s (SMTP%s)", pl->listen, l->tls ? ", STARTTLS" : "");
	}
	return PT_OK;
}

void shard_listeners_close(struct shard *s)
{
	for (size_t i = 0; i < s->n_listeners; i++) {
		if (s->listeners[i].acc.fd >= 0)
			close(s->listeners[i].acc.fd);
		tls_ctx_free(s->listeners[i].tls);
	}
	free(s->listeners);
	s->listeners = NULL;
	s->n_listeners = 0;
	while (s->free_conns) {
		struct shard_conn *c = s->free_conns;

		s->free_conns = c->next;
		shard_stream_free_bufs(&c->st);
		free(c);
	}
}

static void conn_timer_fn(struct pt_timer *t)
{
	struct shard_conn *c = pt_container_of(t, struct shard_conn, timer);

	if (c->st.closing || c->commit_pending)
		return;
	pt_info("%s: timeout", c->peer_ip);
	smtp_session_timeout(c->session);
	conn_after_session(c);
}

static void conn_timer_arm(struct shard_conn *c)
{
	const struct policy_listener *pl = c->listener->config;
	uint64_t ms = smtp_session_in_data(c->session) ? pl->data_timeout_ms : pl->client_timeout_ms;

	pt_timer_add(&c->shard->wheel, &c->timer, pt_monotonic_ms() + ms);
}

static void conn_close(struct shard_conn *c, const char *reason)
{
	shard_stream_close(&c->st, reason);
}

static const struct shard_stream_ops conn_ops;

static struct shard_conn *conn_alloc(struct shard *s)
{
	struct shard_conn *c = s->free_conns;
	struct shard_stream old;

	if (c) {
		s->free_conns = c->next;
	} else {
		c = calloc(1, sizeof(*c));
		if (!c)
			return NULL;
	}
	/* Keep the buffers' memory across reuse; reset everything else. */
	old = c->st;
	memset(c, 0, sizeof(*c));
	shard_stream_init(&c->st, s, &conn_ops, &old, c->peer_ip);
	c->shard = s;
	pt_timer_init(&c->timer, conn_timer_fn);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	return c;
}

static void conn_release(struct shard_conn *c)
{
	struct shard *s = c->shard;

	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	c->listener->n_conns--;
	close(c->st.fd);
	shard_report_free(c->report);
	c->report = NULL;
	if (c->session)
		smtp_session_free(c->session, "connection closed");
	tls_conn_free(c->st.tls);
	c->st.released = true;
	c->session = NULL;
	c->st.tls = NULL;
	c->next = s->free_conns;
	s->free_conns = c;
}

static void conn_maybe_release(struct shard_conn *c)
{
	if (c->st.closing && !c->st.released && c->st.n_inflight == 0 && !c->commit_pending)
		conn_release(c);
}

/* Move what the session wrote to the wire buffer, through TLS when it is on. */
static void conn_pump_output(struct shard_conn *c)
{
	struct pt_buf *out = smtp_session_output(c->session);

	if (c->shard->n_trace_subs && out->len)
		shard_trace_smtp(c, SHARD_TRACE_REPLY, out->data, out->len);
	shard_stream_write(&c->st, out);
}

static void conn_message_reply(struct shard_conn *c, int code, const char *text)
{
	c->message_started = false;
	smtp_session_message_done(c->session, code, text);
}

/* SMTP_EV_MESSAGE: policy, then the spool.  True when answered right away. */
static bool conn_message(struct shard_conn *c)
{
	struct shard *s = c->shard;
	struct pt_message *m = smtp_session_message(c->session);
	struct policy_reply reply;
	int rc;

	rc = policy_smtp_server_message_received(s->policy, m, &reply);
	if (rc != PT_OK) {
		shard_count(s, SHARD_M_REJECTED);
		conn_message_reply(c, reply.code, reply.text);
		return true;
	}
	/* Listener domains: reports logged, recipients not to relay removed. */
	if (shard_relay_message(c, m, &reply) != PT_OK) {
		if (reply.code >= 400)
			shard_count(s, SHARD_M_REJECTED);
		conn_message_reply(c, reply.code, reply.text);
		return true;
	}
	if (shard_commit_message(s, c, m) != PT_OK) {
		shard_count(s, SHARD_M_REJECTED);
		shard_relay_committed(c, m, false);
		conn_message_reply(c, 451, "4.3.0 out of memory, try again later");
		return true;
	}
	c->commit_pending = true;
	pt_timer_del(&s->wheel, &c->timer);
	return false;
}

void shard_conn_commit_done(struct shard_conn *c, int status, const struct spool_loc *loc)
{
	char text[80];
	struct pt_message *m = smtp_session_message(c->session);

	c->commit_pending = false;
	if (status == PT_OK) {
		shard_count(c->shard, SHARD_M_RECEIVED);
		shard_log_reception(c->shard, m, c);
		shard_relay_committed(c, m, true);
		/* Durable: hand the recipients to delivery (the session reuses m after the reply). */
		shard_home_accepted(c->shard, m, loc);
		snprintf(text, sizeof(text), "2.0.0 OK id=%s", m->id);
		conn_message_reply(c, 250, text);
	} else {
		shard_count(c->shard, SHARD_M_REJECTED);
		shard_relay_committed(c, m, false);
		conn_message_reply(c, 451, "4.3.0 spool write failed, try again later");
	}
	if (c->st.closing) {
		conn_maybe_release(c);
		return;
	}
	conn_timer_arm(c);
	conn_after_session(c);
}

static void conn_start_tls(struct shard_conn *c)
{
	c->st.tls = tls_conn_new(c->listener->tls);
	if (!c->st.tls) {
		conn_close(c, "out of memory for TLS");
		return;
	}
	c->st.tls_state = CONN_TLS_HANDSHAKE;
}

/* Act on the session's pending event; loop while answers come synchronously. */
static void conn_after_session(struct shard_conn *c)
{
	for (;;) {
		enum smtp_event ev;

		conn_pump_output(c);
		ev = smtp_session_event(c->session);
		if (ev == SMTP_EV_MESSAGE && !c->message_started) {
			c->message_started = true;
			if (conn_message(c))
				continue;
		} else if (ev == SMTP_EV_STARTTLS && c->st.tls_state == CONN_TLS_NONE) {
			conn_start_tls(c);
		} else if (ev == SMTP_EV_CLOSE) {
			c->st.close_after_send = true;
		}
		break;
	}
	shard_stream_flush(&c->st);
}

/* Plaintext for the session (len 0: a TLS record that carried none). */
static void conn_plain(struct shard_stream *st, const char *data, size_t len)
{
	struct shard_conn *c = pt_container_of(st, struct shard_conn, st);

	if (len > 0 && c->shard->n_trace_subs)
		shard_trace_smtp(
		    c, smtp_session_in_data(c->session) ? SHARD_TRACE_DATA : SHARD_TRACE_COMMAND,
		    data, len);
	if (len > 0)
		smtp_session_feed(c->session, data, len);
	conn_after_session(c);
}

static void conn_input(struct shard_stream *st, const char *data, size_t len)
{
	struct shard_conn *c = pt_container_of(st, struct shard_conn, st);

	if (!c->session)
		return; /* a refused connection: its 421 is on the way */
	if (st->tls_state != CONN_TLS_NONE)
		shard_stream_tls_input(st, data, len);
	else
		conn_plain(st, data, len);
	if (!st->closing && !c->commit_pending)
		conn_timer_arm(c);
}

static void conn_tls_done(struct shard_stream *st)
{
	struct shard_conn *c = pt_container_of(st, struct shard_conn, st);

	smtp_session_tls_done(c->session, tls_conn_version(st->tls), tls_conn_cipher(st->tls));
	if (c->shard->n_trace_subs) {
		char text[160];
		int n = snprintf(text, sizeof(text), "%s %s", tls_conn_version(st->tls),
				 tls_conn_cipher(st->tls));

		shard_trace_smtp(c, SHARD_TRACE_TLS, text,
				 (size_t)PT_MIN(n, (int)sizeof(text) - 1));
	}
}

static void conn_closing(struct shard_stream *st)
{
	struct shard_conn *c = pt_container_of(st, struct shard_conn, st);

	pt_timer_del(&c->shard->wheel, &c->timer);
	if (c->shard->n_trace_subs && c->session)
		shard_trace_smtp(c, SHARD_TRACE_CLOSE, NULL, 0);
}

static void conn_stream_maybe_release(struct shard_stream *st)
{
	conn_maybe_release(pt_container_of(st, struct shard_conn, st));
}

static const struct shard_stream_ops conn_ops = {
    .tag = "",
    .output_name = "replies",
    .recv_kind = SHARD_OP_RECV,
    .send_kind = SHARD_OP_SEND,
    .alert_on_handshake_failure = false,
    .input = conn_input,
    .plain = conn_plain,
    .tls_done = conn_tls_done,
    .closing = conn_closing,
    .maybe_release = conn_stream_maybe_release,
};

static void conn_open(struct shard_acceptor *a, int fd)
{
	struct shard_listener *l = pt_container_of(a, struct shard_listener, acc);
	struct shard *s = a->shard;
	struct shard_conn *c;

	c = conn_alloc(s);
	if (!c) {
		pt_error("out of memory for a connection");
		close(fd);
		return;
	}
	c->listener = l;
	l->n_conns++;
	shard_count(s, SHARD_M_CONN_TOTAL_IN);
	shard_stream_accepted(&c->st, fd, &c->peer_sa, c->peer_ip);
	if (l->n_conns > l->max_conns || s->state != SHARD_RUNNING) {
		shard_count(s, SHARD_M_CONN_DENIED);
		pt_buf_printf(&c->st.out, "421 4.7.0 %s too many connections, try again later\r\n",
			      l->smtp.hostname);
		c->st.close_after_send = true;
		shard_stream_flush(&c->st);
		return;
	}
	c->session = smtp_session_new(&l->smtp, &s->idgen, c->peer_ip,
				      pt_cidr_list_match(&l->config->relay_hosts,
							 (struct sockaddr *)&c->peer_sa));
	if (!c->session) {
		conn_close(c, "out of memory for a session");
		return;
	}
	/* Who may send to whom: relay_hosts and the policy's listener domains. */
	smtp_session_set_rcpt_hook(c->session, shard_relay_rcpt, c);
	c->trace_session = 0;
	if (s->n_trace_subs)
		shard_trace_smtp(c, SHARD_TRACE_CONNECT, l->acc.listen, strlen(l->acc.listen));
	shard_stream_recv_arm(&c->st);
	conn_timer_arm(c);
	conn_after_session(c);
}

void shard_conns_shutdown(struct shard *s)
{
	for (size_t i = 0; i < s->n_listeners; i++)
		shard_acceptor_stop(&s->listeners[i].acc);
	for (struct shard_conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		if (c->st.closing || !c->session)
			continue;
		smtp_session_shutdown(c->session);
		conn_after_session(c);
	}
}

void shard_conns_abort(struct shard *s)
{
	for (struct shard_conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		conn_close(c, "drain deadline passed");
	}
}
