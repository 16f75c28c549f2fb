/*
 * shard_out.c -- outbound connections on a shard's ring: the glue between a
 * ready queue, a delivery protocol (struct shard_out_proto: SMTP in
 * shard_out_smtp.c, HTTP in shard_out_http.c, AMQP in shard_out_amqp.c)
 * and io_uring.  This file runs the connection -- plan, connect, send,
 * receive, timer, batches, bodies, close -- and the protocol runs the
 * session on o->session.
 *
 * Life of a connection:
 *
 *   PLANNING    the hosts to try: the queue's fixed list (smart host) or
 *               the domain's MX hosts in preference order, each with its
 *               addresses (IPv4 first), from this shard's DNS cache;
 *   CONNECTING  one address at a time: the egress source's address bound
 *               (when it has one), then a CONNECT linked to a LINK_TIMEOUT
 *               (connect_timeout); on failure the next address;
 *   SESSION     the protocol's session (SMTP: banner, EHLO, STARTTLS, then
 *               transactions; HTTP: requests).  A failure before the
 *               session was READY also moves on to the next address, on a
 *               new socket (shard_out_retry_next); after READY it ends the
 *               connection.
 *   CLOSING     shut down; released when no operation in the ring points
 *               at it and no body request is out.
 *
 * A transaction: when the session is READY the connection takes a batch of
 * ready units (the protocol's same_batch: SMTP the recipients of one message,
 * HTTP up to batch_size units of one queue), one message-rate token, and
 * asks the home shards for the bodies (shard_home.c reads them back from
 * the spool), one after another: batch[0]'s only, or every unit's when
 * the protocol says body_per_unit.  With them the protocol starts the
 * transaction; at its end every unit gets its outcome (shard_route.c), the
 * bodies are freed, and the next batch follows, up to
 * max_deliveries_per_connection.  With nothing to send it waits
 * idle_timeout for new units, then ends the session (SMTP: QUIT).
 *
 * Timers: one per connection on the wheel, for whatever is awaited now:
 * the protocol's phase timeout (its timeout_ms), a message-rate
 * token, or the idle timeout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/ptime.h"
#include "shard/shard_int.h"

static void out_connect_next(struct shard_out *o);
static void out_maybe_release(struct shard_out *o);
static void out_timer_arm(struct shard_out *o);
static void out_plan_cb(void *arg, const struct dns_result *res);

static void out_set_fail(struct shard_out *o, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void out_set_fail(struct shard_out *o, int code, const char *fmt, ...)
{
	va_list ap;
	char text[sizeof(o->fail.content)];

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	smtp_client_local_reply(&o->fail, code, 4, 1, "connect", "%s", text);
	o->have_fail = true;
}

/* ---- Timer ---- */

static void out_timer_fn(struct pt_timer *t)
{
	struct shard_out *o = pt_container_of(t, struct shard_out, timer);

	if (o->closing)
		return;
	if (o->waiting_rate) {
		o->waiting_rate = false;
		shard_out_wake(o);
		return;
	}
	if (o->state == OUT_SESSION && o->ready) {
		pt_debug("%s [%s]: idle for %llu ms: QUIT", o->cur->name, o->cur->addr.text,
			 (unsigned long long)o->rq->cfg.idle_timeout_ms);
		shard_out_quit(o);
		return;
	}
	if (o->state == OUT_SESSION && o->session) {
		o->proto->timeout(o);
		o->proto->events(o);
	}
}

static void out_timer_arm(struct shard_out *o)
{
	struct shard *s = o->shard;
	uint64_t ms;

	if (o->closing || o->waiting_rate || o->state != OUT_SESSION)
		return;
	ms = o->session ? o->proto->timeout_ms(o) : 0;
	if (ms == 0 && o->ready)
		ms = o->rq->cfg.idle_timeout_ms;
	if (ms == 0) {
		pt_timer_del(&s->wheel, &o->timer);
		return;
	}
	pt_timer_add(&s->wheel, &o->timer, pt_monotonic_ms() + ms);
}

/* ---- Output ---- */

static void out_flush(struct shard_out *o)
{
	struct io_uring_sqe *sqe;
	struct pt_buf t;

	if (o->send_busy || o->closing || o->out.len == 0)
		return;
	t = o->tx;
	o->tx = o->out;
	o->out = t;
	o->out.len = 0;
	sqe = shard_sqe(o->shard);
	io_uring_prep_send(sqe, o->fd, o->tx.data, o->tx.len, MSG_NOSIGNAL);
	shard_prep(sqe, &o->send_op);
	o->send_busy = true;
	o->n_inflight++;
}

void shard_handle_out_send(struct shard_out *o, struct io_uring_cqe *cqe)
{
	struct io_uring_sqe *sqe;

	o->n_inflight--;
	o->send_busy = false;
	if (cqe->res < 0) {
		o->tx.len = 0;
		if (o->session) {
			o->proto->eof(o);
			o->proto->events(o);
		} else {
			shard_out_close(o, "send failed");
		}
	} else if ((size_t)cqe->res < o->tx.len && !o->closing) {
		pt_buf_consume(&o->tx, (size_t)cqe->res);
		sqe = shard_sqe(o->shard);
		io_uring_prep_send(sqe, o->fd, o->tx.data, o->tx.len, MSG_NOSIGNAL);
		shard_prep(sqe, &o->send_op);
		o->send_busy = true;
		o->n_inflight++;
	} else {
		o->tx.len = 0;
		out_flush(o);
	}
	out_maybe_release(o);
}

/* The session's output to the wire buffer, through TLS when it is on;
 * then the timer for whatever is awaited now. */
void shard_out_pump(struct shard_out *o)
{
	struct pt_buf *co;

	if (o->closing || o->state != OUT_SESSION)
		return;
	co = o->session ? o->proto->output(o) : NULL;

	if (co && co->len > 0) {
		if (o->tls_state == CONN_TLS_ON) {
			if (tls_conn_write(o->tls, co->data, co->len) != PT_OK) {
				co->len = 0;
				shard_out_close(o, "TLS write failed");
				return;
			}
		} else if (pt_buf_append(&o->out, co->data, co->len) != PT_OK) {
			pt_error("out of memory for %s output", o->proto->name);
		}
		co->len = 0;
	}
	if (o->tls) {
		struct pt_buf *to = tls_conn_output(o->tls);

		if (to->len > 0) {
			pt_buf_append(&o->out, to->data, to->len);
			to->len = 0;
		}
	}
	out_flush(o);
	out_timer_arm(o);
}

/* ---- TLS (client side, for the protocols) ---- */

int shard_out_tls_start(struct shard_out *o, bool verify, char *err, size_t err_len)
{
	struct shard *s = o->shard;
	struct tls_ctx **ctx = verify ? &s->tls_client_verify : &s->tls_client_insecure;

	if (!*ctx)
		*ctx = tls_ctx_new_client(verify, err, err_len);
	if (!*ctx)
		return PT_ERROR;
	o->tls = tls_conn_new_client(*ctx, o->cur->name);
	if (!o->tls) {
		snprintf(err, err_len, "out of memory for TLS");
		return PT_ERROR;
	}
	o->tls_state = CONN_TLS_HANDSHAKE;
	/* The ClientHello goes out with the next shard_out_pump. */
	if (tls_conn_handshake(o->tls) == PT_ERROR) {
		o->tls_state = CONN_TLS_NONE;
		snprintf(err, err_len, "%s", tls_conn_error(o->tls));
		return PT_ERROR;
	}
	return PT_OK;
}

int shard_out_tls_input(struct shard_out *o, const char *data, size_t len, bool *handshake_done,
			bool *eof)
{
	*handshake_done = *eof = false;
	if (tls_conn_feed(o->tls, data, len) != PT_OK) {
		shard_out_close(o, "out of memory");
		return PT_NOMEM;
	}
	if (o->tls_state == CONN_TLS_HANDSHAKE) {
		int rc = tls_conn_handshake(o->tls);

		if (rc == PT_AGAIN) {
			shard_out_pump(o);
			return PT_AGAIN;
		}
		if (rc != PT_OK) {
			o->tls_state = CONN_TLS_NONE;
			return PT_ERROR;
		}
		o->tls_state = CONN_TLS_ON;
		*handshake_done = true;
	}
	o->plain.len = 0;
	*eof = tls_conn_read(o->tls, &o->plain) != PT_OK;
	return PT_OK;
}

/* ---- Transactions ---- */

void shard_out_give_back(struct shard_out *o)
{
	/* Units not attempted go back to the front of the queue, in order. */
	for (size_t i = o->n_batch; i-- > 0;)
		shard_ready_requeue(o->shard, o->rq, o->batch[i]);
	o->n_batch = 0;
}

void shard_out_free_bodies(struct shard_out *o)
{
	for (size_t i = 0; i < o->n_bodies; i++) {
		pt_message_clear(o->bodies[i]);
		free(o->bodies[i]);
	}
	o->n_bodies = 0;
}

static bool out_reserve_batch(struct shard_out *o, size_t n)
{
	struct shard_unit **b;
	struct pt_message **m;
	const char **r;

	if (n <= o->cap_batch)
		return true;
	b = realloc(o->batch, n * sizeof(*b));
	if (b)
		o->batch = b;
	r = realloc(o->rcpts, n * sizeof(*r));
	if (r)
		o->rcpts = r;
	m = realloc(o->bodies, n * sizeof(*m));
	if (m)
		o->bodies = m;
	if (!b || !r || !m)
		return false;
	o->cap_batch = n;
	return true;
}

/* Ask for the next body: batch[n_bodies]'s message. */
static void out_request_body(struct shard_out *o)
{
	struct shard *s = o->shard;
	struct shard_unit *u = o->batch[o->n_bodies];
	struct shard_msg *msg;

	o->body_wait = true;
	if (u->home == s->id) {
		shard_home_body_request(s, s->id, u->slot, o);
		return;
	}
	msg = calloc(1, sizeof(*msg));
	if (!msg)
		pt_panic("out of memory requesting a body");
	msg->kind = SHARD_MSG_BODY_REQ;
	msg->from = s->id;
	msg->slot = u->slot;
	msg->token = o;
	shard_mailbox_post(s, u->home, msg);
}

/* The session is READY with no transaction: take the next batch, or idle. */
void shard_out_wake(struct shard_out *o)
{
	struct shard *s = o->shard;
	struct shard_ready *rq = o->rq;
	uint64_t wait_us;
	size_t max;

	if (o->closing || !o->ready || o->waiting_rate)
		return;
	if (s->state != SHARD_RUNNING ||
	    o->n_messages >= rq->cfg.max_deliveries_per_connection) {
		shard_out_quit(o);
		return;
	}
	if (rq->n_ready == 0 || shard_ready_suspended(s, rq, &wait_us)) {
		out_timer_arm(o); /* idle (or suspended: the queue's kick wakes us) */
		return;
	}
	if (!shard_rate_take(&rq->msg_rate, pt_wall_us(), &wait_us)) {
		o->waiting_rate = true;
		pt_timer_add(&s->wheel, &o->timer, pt_monotonic_ms() + (wait_us + 999) / 1000);
		return;
	}
	max = o->proto->batch_max(rq);
	if (!out_reserve_batch(o, max)) {
		pt_error("out of memory for a transaction");
		return;
	}
	o->n_batch = shard_ready_take(rq, o->batch, max);
	if (o->n_batch == 0)
		return;
	o->ready = false;
	o->n_messages++;
	pt_timer_del(&s->wheel, &o->timer);
	out_request_body(o);
}

struct shard_log_outcome shard_out_outcome(struct shard_out *o, const struct smtp_client_reply *r)
{
	struct shard_log_outcome lo = {.reply = r, .protocol = o->proto->name};

	shard_auto_observe(o->shard, o->rq, r);
	if (o->cur) {
		lo.peer_name = o->cur->name;
		lo.peer_addr = o->cur->addr.text;
	}
	if (o->local_addr[0])
		lo.source_address = o->local_addr;
	if (o->tls_state == CONN_TLS_ON) {
		lo.tls_version = tls_conn_version(o->tls);
		lo.tls_cipher = tls_conn_cipher(o->tls);
	}
	return lo;
}

/* Every unit of the batch fails with r (no transaction was made). */
static void out_fail_batch(struct shard_out *o, const struct smtp_client_reply *r)
{
	struct shard_log_outcome lo = shard_out_outcome(o, r);

	for (size_t i = 0; i < o->n_batch; i++)
		shard_unit_failed(o->shard, o->batch[i], &lo);
	o->n_batch = 0;
}

/* The batch fails before any byte of it was sent (451 4.3.0, made here);
 * the session takes the next one. */
void shard_out_fail_batch_local(struct shard_out *o, const char *why)
{
	struct smtp_client_reply r;

	smtp_client_local_reply(&r, 451, 3, 0, NULL, "%s", why);
	out_fail_batch(o, &r);
	o->ready = true;
	shard_out_wake(o);
}

/* A body arrived (NULL: it could not be read): keep it; with all of them
 * the protocol starts the transaction. */
void shard_out_body(struct shard_out *o, struct pt_message *body)
{
	size_t need = o->proto->body_per_unit ? o->n_batch : 1;

	o->body_wait = false;
	if (body)
		o->bodies[o->n_bodies++] = body;
	if (o->closing) {
		shard_out_free_bodies(o);
		shard_out_give_back(o);
		out_maybe_release(o);
		return;
	}
	if (!body) {
		shard_out_free_bodies(o);
		shard_out_fail_batch_local(o, "the message could not be read back from the spool");
		return;
	}
	if (o->n_bodies < need) {
		out_request_body(o);
		return;
	}
	o->proto->send(o);
}

/* ---- The session ---- */

/* Start over on the next address (a failure before the session was ready). */
void shard_out_retry_next(struct shard_out *o, const struct smtp_client_reply *f)
{
	o->fail = *f;
	o->have_fail = true;
	pt_info("%s [%s]: %d %s (%s); trying the next host", o->cur->name, o->cur->addr.text,
		f->code, f->content, f->command ? f->command : "");
	if (o->shard->n_trace_subs)
		shard_trace_out(o, SHARD_TRACE_CLOSE, f->content, strlen(f->content));
	o->state = OUT_CONNECTING; /* out_maybe_release connects again once idle */
	pt_timer_del(&o->shard->wheel, &o->timer);
	shutdown(o->fd, SHUT_RDWR);
	out_maybe_release(o);
}

void shard_out_became_ready(struct shard_out *o)
{
	if (o->connecting) {
		o->connecting = false;
		o->rq->n_connecting--;
	}
	o->ready = true;
	o->rq->n_consecutive_failures = 0;
	shard_out_wake(o);
}

static void out_recv_arm(struct shard_out *o)
{
	struct io_uring_sqe *sqe = shard_sqe(o->shard);

	io_uring_prep_recv_multishot(sqe, o->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	shard_prep(sqe, &o->recv_op);
	o->recv_armed = true;
	o->n_inflight++;
}

void shard_handle_out_recv(struct shard_out *o, struct io_uring_cqe *cqe)
{
	struct shard *s = o->shard;
	int res = cqe->res;
	bool live = o->state == OUT_SESSION && !o->closing && o->session;

	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		o->recv_armed = false;
		o->n_inflight--;
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		char *buf = s->buf_base + (size_t)bid * s->buf_size;

		if (res > 0 && live)
			o->proto->input(o, buf, (size_t)res);
		io_uring_buf_ring_add(s->buf_ring, buf, s->buf_size, (unsigned short)bid,
				      io_uring_buf_ring_mask(s->n_bufs), 0);
		io_uring_buf_ring_advance(s->buf_ring, 1);
	}
	live = o->state == OUT_SESSION && !o->closing && o->session;
	if (live && (res == 0 || (res < 0 && res != -ENOBUFS))) {
		o->proto->eof(o);
		o->proto->events(o);
	} else if (live && !o->recv_armed) {
		out_recv_arm(o);
	}
	out_maybe_release(o);
}

/* ---- Connecting ---- */

/* "ip:port" of our end of the connection, for the log's source_address
 * (getsockname never blocks). */
static void out_note_local(struct shard_out *o)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char ip[INET6_ADDRSTRLEN];

	o->local_addr[0] = '\0';
	if (getsockname(o->fd, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;

		if (inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip)))
			snprintf(o->local_addr, sizeof(o->local_addr), "%s:%u", ip,
				 ntohs(sin->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;

		if (inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip)))
			snprintf(o->local_addr, sizeof(o->local_addr), "[%s]:%u", ip,
				 ntohs(sin6->sin6_port));
	}
}

void shard_handle_out_connect(struct shard_out *o, struct io_uring_cqe *cqe)
{
	int one = 1;

	o->n_inflight--;
	if (o->closing) {
		out_maybe_release(o);
		return;
	}
	if (cqe->res < 0) {
		out_set_fail(o, 451, "connection to %s [%s]:%u failed: %s", o->cur->name,
			     o->cur->addr.text, o->cur->port,
			     cqe->res == -ECANCELED ? "timed out" : strerror(-cqe->res));
		pt_info("%s", o->fail.content);
		if (o->shard->n_trace_subs)
			shard_trace_out(o, SHARD_TRACE_CLOSE, o->fail.content,
					strlen(o->fail.content));
		close(o->fd);
		o->fd = -1;
		out_connect_next(o);
		return;
	}
	setsockopt(o->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	out_note_local(o);
	if (o->proto->open(o) != PT_OK) {
		shard_out_close(o, "out of memory for a session");
		return;
	}
	o->state = OUT_SESSION;
	out_recv_arm(o);
	o->proto->events(o); /* HTTP is READY at once; SMTP waits for the banner */
}

/*
 * Bind the egress source's address before the CONNECT (a plain bind on the
 * new socket: it never blocks, and io_uring has no bind to chain).  The
 * port is left to connect (IP_BIND_ADDRESS_NO_PORT), so a source address
 * is limited to one connection per local port and destination, not one per
 * local port over all destinations.  An address of the other family is
 * skipped (the next one may fit); a failed bind fails the whole connection
 * (every address would fail the same way) with 451 4.3.5, and the queue's
 * units wait for their retry (shard_ready.c): a source address that is not
 * on this host never spins.
 */
static int out_bind(struct shard_out *o)
{
	const struct shard_ready *rq = o->rq;
	int one = 1, err;

	if (rq->bind.sa.ss_family != o->cur->addr.sa.ss_family) {
		out_set_fail(o, 451,
			     "egress source '%s' (%s) cannot reach %s [%s]: another address family",
			     rq->source, rq->bind.text, o->cur->name, o->cur->addr.text);
		return PT_ERROR;
	}
	setsockopt(o->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(o->fd, (const struct sockaddr *)&rq->bind.sa, rq->bind.sa_len) == 0)
		return PT_OK;
	err = errno;
	smtp_client_local_reply(&o->fail, 451, 3, 5, "connect",
				"cannot bind source address %s of egress source '%s': %s%s",
				rq->bind.text, rq->source, strerror(err),
				err == EADDRNOTAVAIL ? " (the address is not on this host)" : "");
	o->have_fail = true;
	pt_error("%s", o->fail.content);
	o->next_addr = o->n_addrs;
	return PT_ERROR;
}

/* trace-smtp-client: an attempt (its queue's details come with it). */
static void out_trace_connect(struct shard_out *o)
{
	char text[sizeof(o->cur->name) + 64];
	int n = snprintf(text, sizeof(text), "connecting to %s [%s]:%u", o->cur->name,
			 o->cur->addr.text, o->cur->port);

	shard_trace_out(o, SHARD_TRACE_CONNECT, text, (size_t)PT_MIN(n, (int)sizeof(text) - 1));
}

static void out_connect(struct shard_out *o)
{
	struct shard *s = o->shard;
	static struct shard_op ignore = { SHARD_OP_IGNORE };
	struct sockaddr_storage ss = o->cur->addr.sa;
	struct io_uring_sqe *sqe;

	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons(o->cur->port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(o->cur->port);
	o->local_addr[0] = '\0';
	o->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (o->fd < 0) {
		out_set_fail(o, 451, "socket: %s", strerror(errno));
		out_connect_next(o);
		return;
	}
	if (o->rq->has_bind && out_bind(o) != PT_OK) {
		close(o->fd);
		o->fd = -1;
		out_connect_next(o);
		return;
	}
	o->addr_ss = ss;
	if (s->n_trace_subs)
		out_trace_connect(o);
	o->connect_ts.tv_sec = (long long)(o->rq->cfg.connect_timeout_ms / 1000);
	o->connect_ts.tv_nsec = (long long)(o->rq->cfg.connect_timeout_ms % 1000) * 1000000;
	sqe = shard_sqe(s);
	io_uring_prep_connect(sqe, o->fd, (struct sockaddr *)&o->addr_ss, o->cur->addr.sa_len);
	sqe->flags |= IOSQE_IO_LINK;
	shard_prep(sqe, &o->connect_op);
	o->n_inflight++;
	sqe = shard_sqe(s);
	io_uring_prep_link_timeout(sqe, &o->connect_ts, 0);
	shard_prep(sqe, &ignore);
}

/* Reset the per-session state for a fresh attempt. */
static void out_session_reset(struct shard_out *o)
{
	if (o->session)
		o->proto->free(o);
	o->session = NULL;
	tls_conn_free(o->tls);
	o->tls = NULL;
	o->tls_state = CONN_TLS_NONE;
	o->ready = false;
	o->out.len = o->tx.len = o->plain.len = 0;
}

static void out_connect_next(struct shard_out *o)
{
	if (o->next_addr >= o->n_addrs) {
		if (!o->have_fail)
			out_set_fail(o, 451, "no address to connect to for %s", o->rq->site);
		o->failed_before_ready = true;
		shard_out_close(o, "every host failed");
		return;
	}
	o->cur = &o->addrs[o->next_addr++];
	o->state = OUT_CONNECTING;
	out_connect(o);
}

/* ---- Planning: the hosts and addresses to try ---- */

static bool out_add_addr(struct shard_out *o, const char *name, const struct dns_addr *a,
			 uint16_t port)
{
	struct out_addr *n = realloc(o->addrs, (o->n_addrs + 1) * sizeof(*n));

	if (!n)
		return false;
	o->addrs = n;
	n = &o->addrs[o->n_addrs++];
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->addr = *a;
	n->port = port;
	return true;
}

static void out_plan_dns(struct shard_out *o, const struct dns_result *res, uint16_t port)
{
	for (size_t h = 0; h < res->n_hosts; h++)
		for (size_t i = 0; i < res->hosts[h].n_addrs; i++)
			out_add_addr(o, res->hosts[h].name, &res->hosts[h].addrs[i], port);
}

static void out_plan_step(struct shard_out *o);

static void out_plan_cb(void *arg, const struct dns_result *res)
{
	struct shard_out *o = arg;

	o->plan_wait = false;
	if (res->status == DNS_OK)
		out_plan_dns(o, res, o->plan_port);
	else if (!o->have_fail)
		out_set_fail(o, res->status == DNS_TEMPFAIL ? 451 : 550, "%s",
			     res->error ? res->error : "DNS lookup failed");
	o->plan_idx++;
	if (o->closing) {
		out_maybe_release(o);
		return;
	}
	out_plan_step(o);
}

/* The egress source's remote_port replaces the path's smtp_port (KumoMTA's
 * rule); a port written in an mx_list entry is kept. */
static uint16_t out_port(const struct shard_ready *rq)
{
	return rq->src.remote_port ? rq->src.remote_port : rq->cfg.smtp_port;
}

/* "host", "host:port", "ip", "[ip]", "[ip]:port" -> name and port. */
static void out_split_host(const char *entry, uint16_t dflt, char *name, size_t len,
			   uint16_t *port)
{
	const char *colon;

	*port = dflt;
	if (entry[0] == '[') {
		const char *close = strchr(entry, ']');
		size_t n = close ? (size_t)(close - entry + 1) : strlen(entry);

		snprintf(name, len, "%.*s", (int)n, entry);
		if (close && close[1] == ':')
			*port = (uint16_t)atoi(close + 2);
		return;
	}
	colon = strchr(entry, ':');
	if (colon && !strchr(colon + 1, ':')) {
		snprintf(name, len, "%.*s", (int)(colon - entry), entry);
		*port = (uint16_t)atoi(colon + 1);
		return;
	}
	snprintf(name, len, "%s", entry);
}

/* Resolve the smart host list one entry at a time (IP literals at once). */
static void out_plan_step(struct shard_out *o)
{
	struct shard *s = o->shard;
	const struct dns_result *res;
	struct dns_addr a;
	char name[300];
	uint16_t port;

	while (o->plan_idx < o->rq->n_mx_list) {
		out_split_host(o->rq->mx_list[o->plan_idx], out_port(o->rq), name, sizeof(name),
			       &port);
		if (dns_parse_ip(name, &a) == PT_OK) {
			out_add_addr(o, a.text, &a, port);
			o->plan_idx++;
			continue;
		}
		o->plan_port = port;
		res = NULL;
		switch (dns_lookup_host(s->dns, name, pt_monotonic_ms(), out_plan_cb, o, &res)) {
		case PT_OK:
			if (res->status == DNS_OK)
				out_plan_dns(o, res, port);
			o->plan_idx++;
			continue;
		case PT_AGAIN:
			o->plan_wait = true;
			return;
		default:
			o->plan_idx++;
			continue;
		}
	}
	out_connect_next(o);
}

static void out_plan(struct shard_out *o)
{
	struct shard *s = o->shard;
	const struct dns_result *res = NULL;

	o->state = OUT_PLANNING;
	if (o->rq->n_mx_list) {
		out_plan_step(o);
		return;
	}
	o->plan_port = out_port(o->rq);
	o->plan_idx = 0;
	switch (dns_lookup_mx(s->dns, o->rq->domain, pt_monotonic_ms(), out_plan_cb, o, &res)) {
	case PT_OK:
		if (res->status == DNS_OK)
			out_plan_dns(o, res, o->plan_port);
		else
			out_set_fail(o, res->status == DNS_TEMPFAIL ? 451 : 550, "%s",
				     res->error ? res->error : "DNS lookup failed");
		out_connect_next(o);
		return;
	case PT_AGAIN:
		o->plan_wait = true;
		o->plan_idx = o->rq->n_mx_list; /* the callback goes straight to connecting */
		return;
	default:
		out_set_fail(o, 451, "out of memory looking up %s", o->rq->domain);
		out_connect_next(o);
	}
}

struct shard_out *shard_out_open(struct shard *s, struct shard_ready *rq)
{
	struct shard_out *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->shard = s;
	o->rq = rq;
	o->proto = rq->proto;
	o->fd = -1;
	o->connect_op.kind = SHARD_OP_OUT_CONNECT;
	o->recv_op.kind = SHARD_OP_OUT_RECV;
	o->send_op.kind = SHARD_OP_OUT_SEND;
	pt_timer_init(&o->timer, out_timer_fn);
	o->next = rq->conns;
	if (rq->conns)
		rq->conns->prev = o;
	rq->conns = o;
	rq->n_conns++;
	rq->n_connecting++;
	o->connecting = true;
	s->n_out++;
	shard_count(s, SHARD_M_CONN_TOTAL_OUT);
	out_plan(o);
	return o;
}

/* ---- Closing ---- */

void shard_out_quit(struct shard_out *o)
{
	if (o->closing)
		return;
	if (o->state == OUT_SESSION && o->ready && o->session) {
		o->ready = false;
		o->proto->quit(o);
		return;
	}
	if (o->state != OUT_SESSION || !o->n_batch)
		shard_out_close(o, "shutting down");
}

void shard_out_abort(struct shard_out *o, const char *reason)
{
	shard_out_close(o, reason);
}

void shard_out_close(struct shard_out *o, const char *reason)
{
	if (o->closing)
		return;
	pt_debug("%s: closing: %s", o->cur ? o->cur->addr.text : o->rq->site, reason);
	if (o->shard->n_trace_subs && o->fd >= 0)
		shard_trace_out(o, SHARD_TRACE_CLOSE, reason, strlen(reason)); /* a socket ends */
	o->closing = true;
	o->state = OUT_CLOSING;
	pt_timer_del(&o->shard->wheel, &o->timer);
	if (o->plan_wait) {
		dns_cancel(o->shard->dns, out_plan_cb, o);
		o->plan_wait = false;
	}
	if (o->n_batch && !o->body_wait) {
		/* Cut mid-transaction (drain deadline): the units go back; they may
		 * have been delivered, so a restart may deliver them again. */
		shard_out_free_bodies(o);
		shard_out_give_back(o);
	}
	if (o->fd >= 0)
		shutdown(o->fd, SHUT_RDWR);
	out_maybe_release(o);
}

/* The socket, the session, the body and the buffers (not the struct). */
static void out_release_io(struct shard_out *o)
{
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	out_session_reset(o);
	shard_out_free_bodies(o);
	pt_buf_free(&o->out);
	pt_buf_free(&o->tx);
	pt_buf_free(&o->plain);
}

static void out_release(struct shard_out *o)
{
	struct shard *s = o->shard;
	struct shard_ready *rq = o->rq;
	bool failed = o->failed_before_ready;

	if (o->prev)
		o->prev->next = o->next;
	else
		rq->conns = o->next;
	if (o->next)
		o->next->prev = o->prev;
	rq->n_conns--;
	if (o->connecting)
		rq->n_connecting--;
	s->n_out--;
	out_release_io(o);
	o->released = true;
	/* Callers up the stack may still look at o: it is freed after the
	 * completion being handled (shard_outs_reap). */
	o->next = s->dead_outs;
	s->dead_outs = o;
	shard_ready_conn_gone(s, rq, o, failed);
}

void shard_outs_reap(struct shard *s)
{
	while (s->dead_outs) {
		struct shard_out *o = s->dead_outs;

		s->dead_outs = o->next;
		free(o->addrs);
		free(o->batch);
		free(o->rcpts);
		free(o->bodies);
		free(o);
	}
}

static void out_maybe_release(struct shard_out *o)
{
	if (o->n_inflight > 0 || o->body_wait || o->plan_wait || o->released)
		return;
	if (o->closing) {
		out_release(o);
		return;
	}
	if (o->state == OUT_CONNECTING && o->session) {
		/* A failure before READY: the old socket is quiet now; next address. */
		close(o->fd);
		o->fd = -1;
		out_session_reset(o);
		out_connect_next(o);
	}
}

/* Drain deadline: close every outbound connection now. */
void shard_outs_abort(struct shard *s)
{
	struct shard_ready *rq;
	size_t pos = 0;

	while ((rq = pt_strmap_next(&s->readies, &pos)))
		for (struct shard_out *o = rq->conns, *next; o; o = next) {
			next = o->next;
			shard_out_close(o, "drain deadline passed");
		}
}

/* Teardown (the ring is gone): free what is left without ceremony; units
 * still in a transaction are in the spool and come back after restart. */
void shard_outs_free(struct shard *s)
{
	struct shard_ready *rq;
	size_t pos = 0;

	shard_outs_reap(s);
	while ((rq = pt_strmap_next(&s->readies, &pos)))
		while (rq->conns) {
			struct shard_out *o = rq->conns;

			rq->conns = o->next;
			for (size_t i = 0; i < o->n_batch; i++)
				shard_unit_free(s, o->batch[i]);
			out_release_io(o);
			o->next = s->dead_outs;
			s->dead_outs = o;
			shard_outs_reap(s);
		}
}
