/*
 * sink_io.c -- petrel-sink's ring threads: io_uring glue between sockets
 * and the SMTP state machine (sink_smtp.c).
 *
 * One thread, one ring, one SO_REUSEPORT listening socket.  Operations:
 *
 *   accept    multishot (one SQE accepts forever); when the kernel refuses
 *             it (-EINVAL) we fall back to one accept SQE per connection
 *   recv      multishot into a ring of provided buffers (SINK_BUF_COUNT x
 *             64 KiB): the session consumes the bytes in place and the
 *             buffer goes straight back to the ring, so a buffer is held
 *             only for the time of one completion
 *   send      one at a time per connection: `out` collects the replies of
 *             a whole read batch while `tx` is in flight (double buffering:
 *             the bytes of a send never move), so pipelined commands cost
 *             one write per read
 *   timeout   --latency: the end-of-data reply waits on an io_uring
 *             timeout; input that arrives meanwhile waits in `pending`
 *   read      an eventfd: main writes it to stop the thread
 *
 * user_data is a pointer to a struct sink_op embedded in its owner; one
 * switch (io_handle_cqe) dispatches.  A connection is released only when
 * it is closing and no operation of it is left in the ring (n_inflight), so
 * a completion never finds freed memory.  Closing shuts the socket down,
 * which ends the multishot receive with EOF.
 *
 * Nothing is allocated per message: connections (and their buffers, which
 * keep their capacity) are recycled through a free list.
 *
 * The accounting log (--log) is written with one write(2) per loop
 * iteration, before the replies of that iteration are submitted, so a
 * message is in the log before its 250 leaves.
 */
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench/sink.h"
#include "net/ring.h"
#include "net/addr.h"
#include "net/tls.h"

#define SINK_RING_ENTRIES 4096
#define SINK_BUF_COUNT	  256 /* power of two */
#define SINK_BUF_SIZE	  65536
#define SINK_BUF_GROUP	  0
#define SINK_PENDING_MAX  (32u << 20) /* input held back during --latency, per connection */

enum sink_op_kind { OP_ACCEPT, OP_RECV, OP_SEND, OP_DELAY, OP_WAKE, OP_IGNORE };

struct sink_op {
	enum sink_op_kind kind;
};

enum conn_tls { CONN_TLS_NONE, CONN_TLS_HANDSHAKE, CONN_TLS_ON };

struct sink_conn {
	struct sink_op recv_op, send_op, delay_op;
	struct sink_worker *w;
	struct sink_conn *next, *prev; /* open list, or free list (next only) */
	int fd;
	unsigned n_inflight; /* operations in the ring that point at us */
	bool recv_armed, send_busy, delaying, closing, close_after_send;
	bool released; /* on the free list: later calls of conn_maybe_release are no-ops */
	enum conn_tls tls_state;
	struct tls_conn *tls;
	struct pt_buf out;     /* wire bytes waiting for the send in flight */
	struct pt_buf tx;      /* wire bytes of the send in flight */
	struct pt_buf pending; /* plaintext held back while the session waits (--latency) */
	struct pt_buf plain;   /* plaintext decrypted from one TLS read */
	struct pt_buf reply;   /* replies before encryption, over TLS */
	struct __kernel_timespec delay_ts;
	struct sink_smtp smtp;
};

struct sink_worker {
	struct sink_thread *t;
	const struct sink_config *cfg;
	struct io_uring ring;
	bool ring_ok;
	struct io_uring_buf_ring *buf_ring;
	char *buf_base;
	struct sink_op accept_op, wake_op, ignore_op;
	bool multishot_accept, accepting, stopping;
	uint64_t wake_value;
	struct tls_ctx *tls;
	struct sink_smtp_worker smtp;
	struct pt_buf log;
	struct sink_conn *conns, *free_conns;
};

static void conn_close(struct sink_conn *c, const char *reason);
static void conn_flush(struct sink_conn *c);

/* -------------------------------------------------------------- listening */

int sink_listen_open(const char *addr, unsigned *port, char *err, size_t err_len)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char why[256];
	int fd;

	if (net_addr_parse(addr, &ss, &len) != PT_OK) {
		snprintf(err, err_len,
			 "--listen '%s': expected a numeric address and port, like "
			 "127.0.0.1:2526 or [::1]:2526",
			 addr);
		return -1;
	}
	if (*port)
		net_addr_set_port(&ss, *port);
	/* SO_REUSEPORT: every thread binds the same address; the kernel spreads connections. */
	fd = net_addr_listen(&ss, len, SINK_LISTEN_BACKLOG, why, sizeof(why));
	if (fd < 0) {
		snprintf(err, err_len, "%s: %s", addr, why);
		return -1;
	}
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		*port = net_addr_port(&ss);
	return fd;
}

/* ------------------------------------------------------------------- ring */

static struct io_uring_sqe *io_sqe(struct sink_worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (pt_unlikely(!sqe)) {
		/* The SQ is full: hand what we have to the kernel and retry. */
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
		if (!sqe)
			pt_panic("sink thread %u: no SQE after submit", w->t->index);
	}
	return sqe;
}

static int io_ring_init(struct sink_worker *w)
{
	int rc = net_ring_init(&w->ring, SINK_RING_ENTRIES, NULL);

	if (rc != 0) {
		pt_error("io_uring_queue_init: %s", strerror(-rc));
		return PT_ERROR;
	}
	w->ring_ok = true;
	return PT_OK;
}

static int io_buffers_init(struct sink_worker *w)
{
	return net_ring_bufs_init(&w->ring, SINK_BUF_COUNT, SINK_BUF_SIZE, SINK_BUF_GROUP,
				 &w->buf_ring, &w->buf_base);
}

static void io_accept_arm(struct sink_worker *w)
{
	struct io_uring_sqe *sqe = io_sqe(w);

	if (w->multishot_accept)
		io_uring_prep_multishot_accept(sqe, w->t->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	else
		io_uring_prep_accept(sqe, w->t->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, &w->accept_op);
	w->accepting = true;
}

static void io_wake_arm(struct sink_worker *w)
{
	struct io_uring_sqe *sqe = io_sqe(w);

	io_uring_prep_read(sqe, w->t->wake_fd, &w->wake_value, sizeof(w->wake_value), 0);
	io_uring_sqe_set_data(sqe, &w->wake_op);
}

/* ----------------------------------------------------------- connections */

static void conn_recv_arm(struct sink_conn *c)
{
	struct io_uring_sqe *sqe = io_sqe(c->w);

	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = SINK_BUF_GROUP;
	io_uring_sqe_set_data(sqe, &c->recv_op);
	c->recv_armed = true;
	c->n_inflight++;
}

static struct sink_conn *conn_alloc(struct sink_worker *w)
{
	struct sink_conn *c = w->free_conns;
	struct pt_buf out, tx, pending, plain, reply;

	if (c) {
		w->free_conns = c->next;
	} else {
		c = calloc(1, sizeof(*c));
		if (!c)
			return NULL;
	}
	/* Keep the buffers' memory across reuse; reset everything else. */
	out = c->out, tx = c->tx, pending = c->pending, plain = c->plain, reply = c->reply;
	memset(c, 0, offsetof(struct sink_conn, smtp));
	c->out = out, c->tx = tx, c->pending = pending, c->plain = plain, c->reply = reply;
	c->out.len = c->tx.len = c->pending.len = c->plain.len = c->reply.len = 0;
	c->w = w;
	c->recv_op.kind = OP_RECV;
	c->send_op.kind = OP_SEND;
	c->delay_op.kind = OP_DELAY;
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	return c;
}

static void conn_buffers_free(struct sink_conn *c)
{
	pt_buf_free(&c->out);
	pt_buf_free(&c->tx);
	pt_buf_free(&c->pending);
	pt_buf_free(&c->plain);
	pt_buf_free(&c->reply);
}

static void conn_unlink(struct sink_conn *c)
{
	struct sink_worker *w = c->w;

	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
}

static void conn_release(struct sink_conn *c)
{
	struct sink_worker *w = c->w;

	conn_unlink(c);
	close(c->fd);
	tls_conn_free(c->tls);
	c->tls = NULL;
	sink_count(&w->t->counters.connections_open, (uint64_t)-1);
	c->released = true;
	c->prev = NULL;
	c->next = w->free_conns;
	w->free_conns = c;
}

static void conn_maybe_release(struct sink_conn *c)
{
	if (c->closing && !c->released && c->n_inflight == 0)
		conn_release(c);
}

static void conn_close(struct sink_conn *c, const char *reason)
{
	struct io_uring_sqe *sqe;

	if (c->closing)
		return;
	pt_debug("connection %d: closing: %s", c->fd, reason);
	c->closing = true;
	if (c->delaying) {
		/* The held reply will never be sent: take the timeout out of the ring. */
		sqe = io_sqe(c->w);
		io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)&c->delay_op, 0);
		io_uring_sqe_set_data(sqe, &c->w->ignore_op);
	}
	/* Ends the multishot receive (EOF) and any send; the last completion releases us. */
	shutdown(c->fd, SHUT_RDWR);
	conn_maybe_release(c);
}

/* Start sending `out`, unless a send is in flight (its completion comes back here). */
static void conn_flush(struct sink_conn *c)
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
	t = c->tx; /* empty: swap, so the bytes of a send never move */
	c->tx = c->out;
	c->out = t;
	c->out.len = 0;
	sqe = io_sqe(c->w);
	io_uring_prep_send(sqe, c->fd, c->tx.data, c->tx.len, MSG_NOSIGNAL);
	io_uring_sqe_set_data(sqe, &c->send_op);
	c->send_busy = true;
	c->n_inflight++;
}

static void io_handle_send(struct sink_conn *c, struct io_uring_cqe *cqe)
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
		sqe = io_sqe(c->w);
		io_uring_prep_send(sqe, c->fd, c->tx.data, c->tx.len, MSG_NOSIGNAL);
		io_uring_sqe_set_data(sqe, &c->send_op);
		c->send_busy = true;
		c->n_inflight++;
	} else {
		c->tx.len = 0;
		conn_flush(c);
	}
	conn_maybe_release(c);
}

/* Where the session writes replies: straight to the wire, or to be encrypted. */
static struct pt_buf *conn_reply_buf(struct sink_conn *c)
{
	return c->tls_state == CONN_TLS_ON ? &c->reply : &c->out;
}

/* Over TLS: encrypt the session's replies and move the ciphertext to `out`. */
static void conn_pump_tls(struct sink_conn *c)
{
	struct pt_buf *co;

	if (!c->tls)
		return;
	if (c->tls_state == CONN_TLS_ON && c->reply.len > 0) {
		if (tls_conn_write(c->tls, c->reply.data, c->reply.len) != PT_OK) {
			pt_warn("TLS write: %s", tls_conn_error(c->tls));
			c->reply.len = 0;
			conn_close(c, "TLS write failed");
			return;
		}
		c->reply.len = 0;
	}
	co = tls_conn_output(c->tls);
	if (co->len > 0) {
		pt_buf_append(&c->out, co->data, co->len);
		co->len = 0;
	}
}

static void conn_delay_arm(struct sink_conn *c)
{
	uint64_t ns = c->w->cfg->smtp.latency_ns;
	struct io_uring_sqe *sqe = io_sqe(c->w);

	c->delay_ts.tv_sec = (long long)(ns / 1000000000u);
	c->delay_ts.tv_nsec = (long long)(ns % 1000000000u);
	io_uring_prep_timeout(sqe, &c->delay_ts, 0, 0);
	io_uring_sqe_set_data(sqe, &c->delay_op);
	c->delaying = true;
	c->n_inflight++;
}

static void conn_start_tls(struct sink_conn *c)
{
	c->tls = tls_conn_new(c->w->tls);
	if (!c->tls) {
		conn_close(c, "out of memory for TLS");
		return;
	}
	c->tls_state = CONN_TLS_HANDSHAKE;
}

/* If the session acknowledged messages since `before`, stamp the time. */
static void conn_stamp(struct sink_conn *c, uint64_t before)
{
	struct sink_counters *k = &c->w->t->counters;
	struct timespec ts;

	if (sink_counter_read(&k->messages) == before)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	__atomic_store_n(&k->last_message_ns,
			 (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec, __ATOMIC_RELAXED);
}

/* Feed plaintext to the session and act on its event; returns the bytes consumed. */
static size_t conn_session(struct sink_conn *c, const char *data, size_t n)
{
	uint64_t before = sink_counter_read(&c->w->t->counters.messages);
	size_t used;

	switch (sink_smtp_feed(&c->smtp, data, n, conn_reply_buf(c), &used)) {
	case SINK_EV_DELAY:
		conn_delay_arm(c);
		break;
	case SINK_EV_STARTTLS:
		/* The 220 went to `out` in clear (the state was not TLS yet). */
		conn_start_tls(c);
		break;
	case SINK_EV_CLOSE:
		c->close_after_send = true;
		break;
	default:
		break;
	}
	conn_stamp(c, before);
	conn_pump_tls(c);
	return used;
}

/* Plaintext from the client: to the session, or behind what already waits. */
static void conn_plain_input(struct sink_conn *c, const char *data, size_t n)
{
	if (c->pending.len == 0 && !c->delaying) {
		size_t used = conn_session(c, data, n);

		data += used;
		n -= used;
		if (n == 0 || c->closing)
			return;
	}
	/* The session waits (--latency): keep the rest, in order, bounded. */
	if (c->pending.len + n > SINK_PENDING_MAX || pt_buf_append(&c->pending, data, n) != PT_OK)
		conn_close(c, "too much input pipelined behind a delayed reply");
}

/* After the delay: the held reply, then what arrived meanwhile. */
static void conn_pending_drain(struct sink_conn *c)
{
	while (c->pending.len > 0 && !c->delaying && !c->closing) {
		size_t used = conn_session(c, c->pending.data, c->pending.len);

		pt_buf_consume(&c->pending, used);
	}
}

static void io_handle_delay(struct sink_conn *c, struct io_uring_cqe *cqe)
{
	(void)cqe; /* -ETIME when it fired, -ECANCELED when conn_close removed it */
	c->n_inflight--;
	c->delaying = false;
	if (!c->closing) {
		uint64_t before = sink_counter_read(&c->w->t->counters.messages);

		sink_smtp_resume(&c->smtp, conn_reply_buf(c));
		conn_stamp(c, before);
		conn_pump_tls(c);
		conn_pending_drain(c);
		conn_flush(c);
	}
	conn_maybe_release(c);
}

static void conn_tls_input(struct sink_conn *c, const char *data, size_t len)
{
	int rc;

	if (tls_conn_feed(c->tls, data, len) != PT_OK) {
		conn_close(c, "out of memory for TLS input");
		return;
	}
	if (c->tls_state == CONN_TLS_HANDSHAKE) {
		rc = tls_conn_handshake(c->tls);
		if (rc == PT_AGAIN) {
			conn_pump_tls(c);
			return;
		}
		if (rc != PT_OK) {
			pt_info("TLS handshake failed: %s", tls_conn_error(c->tls));
			conn_close(c, "TLS handshake failed");
			return;
		}
		c->tls_state = CONN_TLS_ON;
		sink_smtp_tls_done(&c->smtp);
		conn_pump_tls(c);
	}
	c->plain.len = 0;
	rc = tls_conn_read(c->tls, &c->plain);
	if (c->plain.len > 0)
		conn_plain_input(c, c->plain.data, c->plain.len);
	if (rc != PT_OK)
		c->close_after_send = true; /* close_notify or a fatal alert */
}

static void conn_input(struct sink_conn *c, const char *data, size_t len)
{
	if (c->tls_state != CONN_TLS_NONE)
		conn_tls_input(c, data, len);
	else
		conn_plain_input(c, data, len);
	conn_flush(c);
}

static void io_handle_recv(struct sink_conn *c, struct io_uring_cqe *cqe)
{
	struct sink_worker *w = c->w;
	int res = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		c->recv_armed = false;
		c->n_inflight--;
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		char *buf = net_ring_bufs_get(w->buf_base, SINK_BUF_SIZE, bid);

		if (res > 0 && !c->closing)
			conn_input(c, buf, (size_t)res);
		/* Consumed or copied: give the buffer straight back. */
		net_ring_bufs_put(w->buf_ring, SINK_BUF_COUNT, buf, SINK_BUF_SIZE, bid);
	}
	if (res == 0)
		conn_close(c, "peer closed the connection");
	else if (res < 0 && res != -ENOBUFS)
		conn_close(c, strerror(-res));
	else if (!c->recv_armed && !c->closing)
		conn_recv_arm(c); /* multishot ended (out of buffers): again */
	conn_maybe_release(c);
}

static void conn_open(struct sink_worker *w, int fd)
{
	struct sink_conn *c = conn_alloc(w);
	int one = 1;

	if (!c) {
		pt_error("out of memory for a connection");
		close(fd);
		return;
	}
	c->fd = fd;
	sink_count(&w->t->counters.connections, 1);
	sink_count(&w->t->counters.connections_open, 1);
	/* Replies are written whole; Nagle would only delay pipelined answers. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sink_smtp_init(&c->smtp, &w->smtp);
	sink_smtp_greet(&c->smtp, &c->out);
	conn_recv_arm(c);
	conn_flush(c);
}

static void io_handle_accept(struct sink_worker *w, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		w->accepting = false;
	if (cqe->res >= 0) {
		conn_open(w, cqe->res);
	} else if (cqe->res == -EINVAL && w->multishot_accept) {
		pt_info("multishot accept not available: one accept per connection");
		w->multishot_accept = false;
	} else if (cqe->res != -ECANCELED) {
		pt_warn("accept: %s", strerror(-cqe->res));
	}
	if (!w->accepting && !w->stopping)
		io_accept_arm(w);
}

static void io_handle_cqe(struct sink_worker *w, struct io_uring_cqe *cqe)
{
	struct sink_op *op = io_uring_cqe_get_data(cqe);

	if (!op)
		return;
	switch (op->kind) {
	case OP_ACCEPT:
		io_handle_accept(w, cqe);
		break;
	case OP_RECV:
		io_handle_recv(pt_container_of(op, struct sink_conn, recv_op), cqe);
		break;
	case OP_SEND:
		io_handle_send(pt_container_of(op, struct sink_conn, send_op), cqe);
		break;
	case OP_DELAY:
		io_handle_delay(pt_container_of(op, struct sink_conn, delay_op), cqe);
		break;
	case OP_WAKE:
		w->stopping = true;
		break;
	case OP_IGNORE:
		break;
	default:
		pt_panic("unknown op kind %u", op->kind);
	}
}

/* ------------------------------------------------------------------ thread */

/* The accounting lines of this iteration, in one write (O_APPEND: lines never interleave). */
static void io_log_flush(struct sink_worker *w)
{
	size_t off = 0;

	while (off < w->log.len) {
		ssize_t n = write(w->cfg->log_fd, w->log.data + off, w->log.len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			pt_error("--log %s: %s", w->cfg->log_path, strerror(errno));
			break;
		}
		off += (size_t)n;
	}
	w->log.len = 0;
}

static void io_loop(struct sink_worker *w)
{
	struct io_uring_cqe *cqe;
	unsigned head, n;
	int rc;

	while (!w->stopping) {
		rc = io_uring_submit_and_wait(&w->ring, 1);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME)
			pt_panic("io_uring wait: %s", strerror(-rc));
		n = 0;
		io_uring_for_each_cqe (&w->ring, head, cqe) {
			io_handle_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
		if (w->log.len)
			io_log_flush(w);
	}
}

static void io_pin(struct sink_worker *w)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	int rc;

	if (!w->cfg->pin || ncpu <= 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(w->t->index % (unsigned)ncpu, &set);
	rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (rc)
		pt_warn("cannot pin to CPU %ld: %s", w->t->index % ncpu, strerror(rc));
}

static int io_setup(struct sink_worker *w)
{
	const struct sink_config *cfg = w->cfg;
	char err[256];

	w->accept_op.kind = OP_ACCEPT;
	w->wake_op.kind = OP_WAKE;
	w->ignore_op.kind = OP_IGNORE;
	w->multishot_accept = true;
	w->smtp.cfg = &cfg->smtp;
	w->smtp.counters = &w->t->counters;
	w->smtp.log = &w->log;
	sink_smtp_worker_seed(&w->smtp, cfg->seed, w->t->index);
	io_pin(w);
	if (cfg->smtp.tls) {
		/* A context per thread: nothing of wolfSSL is shared between rings. */
		w->tls = tls_ctx_new_server(cfg->cert_pem.data, cfg->cert_pem.len,
					    cfg->key_pem.data, cfg->key_pem.len, err, sizeof(err));
		if (!w->tls) {
			pt_error("TLS: %s", err);
			return PT_ERROR;
		}
	}
	if (io_ring_init(w) != PT_OK || io_buffers_init(w) != PT_OK)
		return PT_ERROR;
	io_accept_arm(w);
	io_wake_arm(w);
	return PT_OK;
}

static void io_teardown(struct sink_worker *w)
{
	/* Exiting the ring cancels every operation; then the sockets can go. */
	if (w->ring_ok)
		io_uring_queue_exit(&w->ring);
	while (w->conns) {
		struct sink_conn *c = w->conns;

		conn_unlink(c);
		close(c->fd);
		tls_conn_free(c->tls);
		conn_buffers_free(c);
		free(c);
	}
	while (w->free_conns) {
		struct sink_conn *c = w->free_conns;

		w->free_conns = c->next;
		conn_buffers_free(c);
		free(c);
	}
	net_ring_bufs_free(w->buf_ring, w->buf_base, SINK_BUF_COUNT);
	if (w->log.len)
		io_log_flush(w);
	pt_buf_free(&w->log);
	tls_ctx_free(w->tls);
	if (w->cfg->smtp.tls)
		tls_thread_cleanup();
	close(w->t->listen_fd);
	w->t->listen_fd = -1;
}

void *sink_io_thread(void *arg)
{
	struct sink_thread *t = arg;
	struct sink_worker *w = calloc(1, sizeof(*w));
	char name[32];

	snprintf(name, sizeof(name), "sink %u", t->index);
	pt_log_set_thread_name(name);
	if (w) {
		w->t = t;
		w->cfg = t->cfg;
	}
	t->setup_status = w && io_setup(w) == PT_OK ? PT_OK : PT_ERROR;
	pthread_barrier_wait(t->started);
	/* Main wakes every thread when any failed: then we only tear down. */
	if (w && t->setup_status == PT_OK)
		io_loop(w);
	if (w)
		io_teardown(w);
	free(w);
	return NULL;
}
