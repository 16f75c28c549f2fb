/*
 * shard_conn.c -- listeners and SMTP connections on a shard's ring.
 *
 * The SMTP session (net/smtp_server.c) is a pure state machine; this file
 * is the glue between it and io_uring:
 *
 *   multishot accept  -> conn_open: session created, greeting queued
 *   multishot recv    -> conn_input: (TLS decrypt) -> smtp_session_feed
 *                        -> conn_after_session: act on the session's event
 *   one send at a time: `out` collects wire bytes while `tx` is in flight
 *                        (double buffering, so a send's memory never moves)
 *
 * Closing: conn_close() shuts the socket down, which ends the multishot
 * receive with EOF; the connection is released only when no operation that
 * points at it is left in the ring (n_inflight == 0) and the spool is done
 * with its message (commit_pending), so a completion never finds freed
 * memory.
 *
 * STARTTLS: when the session raises SMTP_EV_STARTTLS its plaintext 220 is
 * moved to the wire first; from then on every received byte is TLS
 * ciphertext.  Plaintext that was pipelined after STARTTLS was discarded
 * by the session (RFC 3207 section 6).
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/cidr.h"
#include "core/ptime.h"
#include "net/ring.h"
#include "net/addr.h"
#include "shard/shard_int.h"


static void conn_after_session(struct shard_conn *c);
static void conn_close(struct shard_conn *c, const char *reason);

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

		l->shard = s;
		l->config = pl;
		l->fd = -1;
		l->accept_op.kind = SHARD_OP_ACCEPT;
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
		l->fd = shard_listen_socket(pl->listen);
		if (l->fd < 0)
			return PT_ERROR;
		shard_accept_arm(s, l);
		if (s->id == 0)
			pt_info("listening on %s (SMTP%s)", pl->listen, l->tls ? ", STARTTLS" : "");
	}
	return PT_OK;
}

void shard_listeners_close(struct shard *s)
{
	for (size_t i = 0; i < s->n_listeners; i++) {
		if (s->listeners[i].fd >= 0)
			close(s->listeners[i].fd);
		tls_ctx_free(s->listeners[i].tls);
	}
	free(s->listeners);
	s->listeners = NULL;
	s->n_listeners = 0;
	while (s->free_conns) {
		struct shard_conn *c = s->free_conns;

		s->free_conns = c->next;
		pt_buf_free(&c->out);
		pt_buf_free(&c->tx);
		pt_buf_free(&c->plain);
		free(c);
	}
}

void shard_accept_arm(struct shard *s, struct shard_listener *l)
{
	struct io_uring_sqe *sqe = shard_sqe(s);

	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	shard_prep(sqe, &l->accept_op);
	l->accepting = true;
}

/* Stop accepting: cancel the multishot accept; its last completion closes the socket. */
static void shard_listener_stop(struct shard *s, struct shard_listener *l)
{
	struct io_uring_sqe *sqe;
	static struct shard_op ignore = { SHARD_OP_IGNORE };

	if (!l->accepting)
		return;
	sqe = shard_sqe(s);
	io_uring_prep_cancel(sqe, &l->accept_op, 0);
	shard_prep(sqe, &ignore);
}

static void conn_timer_fn(struct pt_timer *t)
{
	struct shard_conn *c = pt_container_of(t, struct shard_conn, timer);

	if (c->closing || c->commit_pending)
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

static void conn_recv_arm(struct shard_conn *c)
{
	struct io_uring_sqe *sqe = shard_sqe(c->shard);

	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	shard_prep(sqe, &c->recv_op);
	c->recv_armed = true;
	c->n_inflight++;
}

static struct shard_conn *conn_alloc(struct shard *s)
{
	struct shard_conn *c = s->free_conns;

	if (c) {
		s->free_conns = c->next;
	} else {
		c = calloc(1, sizeof(*c));
		if (!c)
			return NULL;
	}
	/* Keep the buffers' memory across reuse; reset everything else. */
	struct pt_buf out = c->out, tx = c->tx, plain = c->plain;

	memset(c, 0, sizeof(*c));
	c->out = out;
	c->tx = tx;
	c->plain = plain;
	c->out.len = c->tx.len = c->plain.len = 0;
	c->shard = s;
	c->recv_op.kind = SHARD_OP_RECV;
	c->send_op.kind = SHARD_OP_SEND;
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
	close(c->fd);
	shard_report_free(c->report);
	c->report = NULL;
	if (c->session)
		smtp_session_free(c->session, "connection closed");
	tls_conn_free(c->tls);
	c->released = true;
	c->session = NULL;
	c->tls = NULL;
	c->next = s->free_conns;
	s->free_conns = c;
}

static void conn_maybe_release(struct shard_conn *c)
{
	if (c->closing && !c->released && c->n_inflight == 0 && !c->commit_pending)
		conn_release(c);
}

static void conn_flush(struct shard_conn *c)
{
	struct io_uring_sqe *sqe;
	struct pt_buf t;

	if (c->send_busy || c->closing)
		return;
	if (c->out.len == 0) {
		if (c->close_after_send)
			conn_close(c, "closed by the session");
		return;
	}
	t = c->tx; /* empty: swap so the send's bytes never move */
	c->tx = c->out;
	c->out = t;
	c->out.len = 0;
	sqe = shard_sqe(c->shard);
	io_uring_prep_send(sqe, c->fd, c->tx.data, c->tx.len, MSG_NOSIGNAL);
	shard_prep(sqe, &c->send_op);
	c->send_busy = true;
	c->n_inflight++;
}

void shard_handle_send(struct shard_conn *c, struct io_uring_cqe *cqe)
{
	struct io_uring_sqe *sqe;

	c->n_inflight--;
	c->send_busy = false;
	if (cqe->res < 0) {
		c->tx.len = 0;
		conn_close(c, "send failed");
	} else if ((size_t)cqe->res < c->tx.len && !c->closing) {
		/* Short send: the rest goes first, before anything queued since. */
		pt_buf_consume(&c->tx, (size_t)cqe->res);
		sqe = shard_sqe(c->shard);
		io_uring_prep_send(sqe, c->fd, c->tx.data, c->tx.len, MSG_NOSIGNAL);
		shard_prep(sqe, &c->send_op);
		c->send_busy = true;
		c->n_inflight++;
	} else {
		c->tx.len = 0;
		conn_flush(c);
	}
	conn_maybe_release(c);
}

/* Move what the session wrote to the wire buffer, through TLS when it is on. */
static void conn_pump_output(struct shard_conn *c)
{
	struct pt_buf *so = smtp_session_output(c->session);
	struct pt_buf *co;

	if (so->len > 0) {
		if (c->tls_state == CONN_TLS_ON) {
			if (tls_conn_write(c->tls, so->data, so->len) != PT_OK) {
				pt_warn("%s: TLS write: %s", c->peer_ip, tls_conn_error(c->tls));
				so->len = 0;
				conn_close(c, "TLS write failed");
				return;
			}
		} else if (pt_buf_append(&c->out, so->data, so->len) != PT_OK) {
			pt_error("%s: out of memory for replies", c->peer_ip);
		}
		so->len = 0;
	}
	if (c->tls) {
		co = tls_conn_output(c->tls);
		if (co->len > 0) {
			pt_buf_append(&c->out, co->data, co->len);
			co->len = 0;
		}
	}
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
	if (c->closing) {
		conn_maybe_release(c);
		return;
	}
	conn_timer_arm(c);
	conn_after_session(c);
}

static void conn_start_tls(struct shard_conn *c)
{
	c->tls = tls_conn_new(c->listener->tls);
	if (!c->tls) {
		conn_close(c, "out of memory for TLS");
		return;
	}
	c->tls_state = CONN_TLS_HANDSHAKE;
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
		} else if (ev == SMTP_EV_STARTTLS && c->tls_state == CONN_TLS_NONE) {
			conn_start_tls(c);
		} else if (ev == SMTP_EV_CLOSE) {
			c->close_after_send = true;
		}
		break;
	}
	conn_flush(c);
}

static void conn_tls_input(struct shard_conn *c, const char *data, size_t len)
{
	int rc;

	if (tls_conn_feed(c->tls, data, len) != PT_OK) {
		conn_close(c, "out of memory");
		return;
	}
	if (c->tls_state == CONN_TLS_HANDSHAKE) {
		rc = tls_conn_handshake(c->tls);
		if (rc == PT_AGAIN) {
			conn_pump_output(c);
			conn_flush(c);
			return;
		}
		if (rc != PT_OK) {
			pt_info("%s: TLS handshake failed: %s", c->peer_ip, tls_conn_error(c->tls));
			conn_close(c, "TLS handshake failed");
			return;
		}
		c->tls_state = CONN_TLS_ON;
		smtp_session_tls_done(c->session, tls_conn_version(c->tls),
				      tls_conn_cipher(c->tls));
	}
	c->plain.len = 0;
	rc = tls_conn_read(c->tls, &c->plain);
	if (c->plain.len > 0)
		smtp_session_feed(c->session, c->plain.data, c->plain.len);
	conn_after_session(c);
	if (rc != PT_OK) {
		/* close_notify or a fatal alert: send what is queued, then close. */
		c->close_after_send = true;
		conn_flush(c);
	}
}

static void conn_input(struct shard_conn *c, const char *data, size_t len)
{
	if (!c->session)
		return; /* a refused connection: its 421 is on the way */
	if (c->tls_state != CONN_TLS_NONE) {
		conn_tls_input(c, data, len);
	} else {
		smtp_session_feed(c->session, data, len);
		conn_after_session(c);
	}
	if (!c->closing && !c->commit_pending)
		conn_timer_arm(c);
}

void shard_handle_recv(struct shard_conn *c, struct io_uring_cqe *cqe)
{
	struct shard *s = c->shard;
	int res = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		c->recv_armed = false;
		c->n_inflight--;
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		char *buf = net_ring_bufs_get(s->buf_base, s->buf_size, bid);

		if (res > 0 && !c->closing)
			conn_input(c, buf, (size_t)res);
		/* The session copied what it needs: give the buffer straight back. */
		net_ring_bufs_put(s->buf_ring, s->n_bufs, buf, s->buf_size, bid);
	}
	if (res == 0)
		conn_close(c, "peer closed the connection");
	else if (res < 0 && res != -ENOBUFS)
		conn_close(c, strerror(-res));
	else if (!c->recv_armed && !c->closing)
		conn_recv_arm(c);
	conn_maybe_release(c);
}

static void conn_close(struct shard_conn *c, const char *reason)
{
	if (c->closing)
		return;
	pt_debug("%s: closing: %s", c->peer_ip, reason);
	c->closing = true;
	pt_timer_del(&c->shard->wheel, &c->timer);
	/* Ends the multishot receive (EOF) and any send; the last completion releases us. */
	shutdown(c->fd, SHUT_RDWR);
	conn_maybe_release(c);
}

static void conn_open(struct shard_listener *l, int fd)
{
	struct shard *s = l->shard;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct shard_conn *c;
	int one = 1;

	c = conn_alloc(s);
	if (!c) {
		pt_error("out of memory for a connection");
		close(fd);
		return;
	}
	c->fd = fd;
	c->listener = l;
	l->n_conns++;
	shard_count(s, SHARD_M_CONN_TOTAL_IN);
	/* Replies are written whole; Nagle would only delay pipelined answers. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
		pt_sockaddr_ip((struct sockaddr *)&ss, c->peer_ip);
		c->peer_sa = ss;
	} else
		snprintf(c->peer_ip, sizeof(c->peer_ip), "unknown");
	if (l->n_conns > l->max_conns || s->state != SHARD_RUNNING) {
		shard_count(s, SHARD_M_CONN_DENIED);
		pt_buf_printf(&c->out, "421 4.7.0 %s too many connections, try again later\r\n",
			      l->smtp.hostname);
		c->close_after_send = true;
		conn_flush(c);
		return;
	}
	c->session = smtp_session_new(&l->smtp, &s->idgen, c->peer_ip,
				      pt_cidr_list_match(&l->config->relay_hosts,
							 (struct sockaddr *)&ss));
	if (!c->session) {
		conn_close(c, "out of memory for a session");
		return;
	}
	/* Who may send to whom: relay_hosts and the policy's listener domains. */
	smtp_session_set_rcpt_hook(c->session, shard_relay_rcpt, c);
	conn_recv_arm(c);
	conn_timer_arm(c);
	conn_after_session(c);
}

void shard_handle_accept(struct shard_listener *l, struct io_uring_cqe *cqe)
{
	struct shard *s = l->shard;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		l->accepting = false;
	if (cqe->res >= 0) {
		if (s->state == SHARD_RUNNING)
			conn_open(l, cqe->res);
		else
			close(cqe->res);
	} else if (cqe->res != -ECANCELED) {
		pt_warn("accept on %s: %s", l->config->listen, strerror(-cqe->res));
	}
	if (!l->accepting) {
		if (s->state == SHARD_RUNNING)
			shard_accept_arm(s, l);
		else if (l->fd >= 0) {
			close(l->fd);
			l->fd = -1;
		}
	}
}

void shard_conns_shutdown(struct shard *s)
{
	for (size_t i = 0; i < s->n_listeners; i++)
		shard_listener_stop(s, &s->listeners[i]);
	for (struct shard_conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		if (c->closing || !c->session)
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
