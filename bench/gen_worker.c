/*
 * gen_worker.c -- one petrel-gen thread: its io_uring and its sessions.
 *
 * Every operation in the ring carries a pointer to a struct gen_op that the
 * session (or the worker) owns; one switch (worker_handle_cqe) dispatches
 * the completions.  Per session at most one of each is in flight:
 *
 *   connect (+ linked timeout)  -> greeting expected, a recv armed
 *   recv into rx (or cipher)    -> gen_session_input, then armed again
 *   send of tx                  -> `out` collects while tx is in flight
 *                                  (double buffering: a send's memory never
 *                                  moves); a short send sends the rest
 *   timeout (IORING_TIMEOUT_ABS) -> the --rate slot of the next message
 *
 * The worker also arms one absolute timeout at the run's deadline; when it
 * fires the worker stops where it is.
 *
 * Waits on the server are bounded (--reply-timeout): a session notes since
 * when it waits (wait_ns: connected, bytes received, rate slot over) and a
 * periodic tick (GEN_OP_TICK, a tenth of the bound, at most 50 ms) ends any
 * session that waited longer, as a connection error whose message is tried
 * again on a new connection.  The tick scans every session: O(sessions) a
 * tick, a few thousand compares at most, cheaper than one timeout per reply
 * to arm and cancel.  Without it a server that never speaks (see
 * GEN_MAX_OPENING in gen.h: a connection dropped under a SYN-cookie burst
 * looks established here and never gets its 220) stalls its session, and
 * the message it holds, until --timeout.
 *
 * Connects are held back while GEN_MAX_OPENING connections of the run wait
 * for their greeting; a held session stays IDLE with its message and is
 * started when a greeting frees a slot in this worker, or at the next tick
 * when another worker's did.
 *
 * Closing: gen_worker_close() shuts the socket down, which completes a
 * pending recv; the fd is closed and the session connects again (or is
 * done) only when nothing in the ring points at it (n_inflight == 0), so a
 * completion never meets a reused session.
 *
 * STARTTLS: after its 220, received bytes go to the cipher buffer, through
 * tls_conn_feed/handshake/read, and the plaintext lands in rx; what the
 * session writes is encrypted in gen_worker_flush().
 *
 * Cost per message, pipelined: two sends and usually two receives, all
 * submitted in one io_uring_submit_and_wait per loop turn.
 */
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/gen.h"
#include "net/ring.h"
#include "net/tls.h"

#define WORKER_RX_SIZE	       (16 * 1024) /* reply bytes per read */
#define WORKER_CONNECT_TIMEOUT 10	   /* seconds */
#define WORKER_DRAIN_MS	       2000	   /* bound on the wait for the ring at a stop */

static struct gen_op worker_ignore_op = {GEN_OP_IGNORE, NULL};

static struct io_uring_sqe *worker_sqe(struct gen_worker *w, struct gen_op *op)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(w->ring);

	if (!sqe) { /* the submission queue is full: hand it to the kernel */
		io_uring_submit(w->ring);
		sqe = io_uring_get_sqe(w->ring);
	}
	if (!sqe)
		pt_panic("io_uring submission queue full after a submit");
	io_uring_sqe_set_data(sqe, op);
	return sqe;
}

static bool worker_connected(const struct gen_session *s)
{
	return s->state != GEN_S_IDLE && s->state != GEN_S_CONNECT && s->state != GEN_S_CLOSING &&
	       s->state != GEN_S_DONE;
}

/* ---- Connecting and closing ---- */

static void worker_connect(struct gen_session *s)
{
	struct gen_worker *w = s->worker;
	const struct gen_config *cfg = w->run->cfg;
	static struct __kernel_timespec ts = {.tv_sec = WORKER_CONNECT_TIMEOUT};
	struct io_uring_sqe *sqe;

	if (w->stop || !gen_session_claim(s)) {
		s->state = GEN_S_DONE;
		w->n_live--;
		return;
	}
	if (__atomic_add_fetch(&w->run->n_opening, 1, __ATOMIC_RELAXED) > GEN_MAX_OPENING) {
		__atomic_sub_fetch(&w->run->n_opening, 1, __ATOMIC_RELAXED);
		s->state = GEN_S_IDLE;
		w->n_held++;
		return;
	}
	s->opening = true;
	s->fd = socket(cfg->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		/* Out of descriptors or memory: no retry will do better. */
		fprintf(stderr, "petrel-gen: socket: %s\n", strerror(errno));
		w->stop = w->failed = true;
		s->state = GEN_S_DONE;
		w->n_live--;
		return;
	}
	if (GEN_LOAD(w->stats.first_connect_ns) == 0)
		__atomic_store_n(&w->stats.first_connect_ns, gen_now_ns(), __ATOMIC_RELAXED);
	s->conn_gen++;
	s->state = GEN_S_CONNECT;
	sqe = worker_sqe(w, &s->connect_op);
	io_uring_prep_connect(sqe, s->fd, (const struct sockaddr *)&cfg->addr, cfg->addr_len);
	sqe->flags |= IOSQE_IO_LINK;
	s->n_inflight++;
	sqe = worker_sqe(w, &worker_ignore_op);
	io_uring_prep_link_timeout(sqe, &ts, 0);
}

/* Start held-back sessions while slots are free. */
static void worker_start_held(struct gen_worker *w)
{
	for (unsigned i = 0; i < w->n_sessions && w->n_held > 0 && !w->stop; i++) {
		struct gen_session *s = &w->sessions[i];

		if (s->state != GEN_S_IDLE)
			continue;
		w->n_held--;
		worker_connect(s);
		if (s->state == GEN_S_IDLE) /* held again: no slot left */
			break;
	}
}

void gen_worker_opened(struct gen_session *s)
{
	if (!s->opening)
		return;
	s->opening = false;
	__atomic_sub_fetch(&s->worker->run->n_opening, 1, __ATOMIC_RELAXED);
	worker_start_held(s->worker);
}

static void worker_maybe_release(struct gen_session *s)
{
	if (s->state != GEN_S_CLOSING || s->n_inflight > 0)
		return;
	s->wait_ns = 0;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	gen_worker_opened(s); /* closed before its greeting: free the slot */
	tls_conn_free(s->tls);
	s->tls = NULL;
	s->tls_on = false;
	s->out.len = s->tx.len = s->rx.len = 0;
	if (s->reconnect) {
		worker_connect(s);
	} else {
		s->state = GEN_S_DONE;
		s->worker->n_live--;
	}
}

void gen_worker_close(struct gen_session *s, bool reconnect)
{
	if (s->state == GEN_S_CLOSING || s->state == GEN_S_DONE)
		return;
	s->state = GEN_S_CLOSING;
	s->reconnect = reconnect;
	if (s->fd >= 0)
		shutdown(s->fd, SHUT_RDWR); /* ends a pending recv */
	worker_maybe_release(s);
}

/* ---- Sending ---- */

static void worker_send(struct gen_session *s)
{
	struct io_uring_sqe *sqe = worker_sqe(s->worker, &s->send_op);

	io_uring_prep_send(sqe, s->fd, s->tx.data, s->tx.len, MSG_NOSIGNAL);
	s->send_busy = true;
	s->n_inflight++;
}

/* Move the TLS engine's ciphertext into tx (which is idle). */
static int worker_take_cipher(struct gen_session *s)
{
	struct pt_buf *c = tls_conn_output(s->tls);
	int rc = PT_OK;

	if (c->len > 0) {
		rc = pt_buf_append(&s->tx, c->data, c->len);
		c->len = 0;
	}
	return rc;
}

void gen_worker_flush(struct gen_session *s)
{
	struct pt_buf t;

	if (s->send_busy || !worker_connected(s))
		return;
	if (s->tls) {
		if (s->tls_on && s->out.len > 0 &&
		    tls_conn_write(s->tls, s->out.data, s->out.len) != PT_OK) {
			gen_session_conn_error(s, "TLS write failed");
			return;
		}
		if (s->tls_on)
			s->out.len = 0;
		if (worker_take_cipher(s) != PT_OK)
			pt_panic("out of memory for TLS output");
	} else {
		t = s->tx;
		s->tx = s->out;
		s->out = t;
		s->out.len = 0;
	}
	if (s->tx.len > 0)
		worker_send(s);
}

static void worker_sent(struct gen_session *s, int res)
{
	s->send_busy = false;
	if (!worker_connected(s)) {
		s->tx.len = 0;
		return;
	}
	if (res < 0) {
		s->tx.len = 0;
		gen_session_conn_error(s, strerror(-res));
	} else if ((size_t)res < s->tx.len) {
		pt_buf_consume(&s->tx, (size_t)res); /* rare: send the rest */
		worker_send(s);
	} else {
		s->tx.len = 0;
		gen_worker_flush(s);
	}
}

/* ---- Receiving ---- */

static void worker_recv_arm(struct gen_session *s)
{
	struct io_uring_sqe *sqe;
	char *p;
	size_t room;

	if (s->tls) {
		p = s->cipher;
		room = WORKER_RX_SIZE;
	} else {
		/* The unparsed tail of a reply stays at the front of rx. */
		if (s->rx.cap - s->rx.len < 2) {
			gen_session_conn_error(s, "reply line too long");
			return;
		}
		p = s->rx.data + s->rx.len;
		room = s->rx.cap - s->rx.len - 1;
	}
	sqe = worker_sqe(s->worker, &s->recv_op);
	io_uring_prep_recv(sqe, s->fd, p, room, 0);
	s->recv_armed = true;
	s->n_inflight++;
}

/* Ciphertext arrived: advance the handshake, then decrypt into rx. */
static void worker_tls_input(struct gen_session *s, size_t n)
{
	int rc;

	if (tls_conn_feed(s->tls, s->cipher, n) != PT_OK) {
		gen_session_conn_error(s, "out of memory for TLS input");
		return;
	}
	if (!s->tls_on) {
		rc = tls_conn_handshake(s->tls);
		if (rc == PT_ERROR) {
			gen_session_conn_error(s, tls_conn_error(s->tls));
			return;
		}
		gen_worker_flush(s); /* handshake messages */
		if (rc == PT_AGAIN)
			return;
		s->tls_on = true;
		gen_session_tls_ready(s);
	}
	rc = tls_conn_read(s->tls, &s->rx);
	if (s->rx.len > 0)
		gen_session_input(s);
	if (rc != PT_OK && worker_connected(s))
		gen_session_conn_error(s, "TLS connection closed");
}

static void worker_received(struct gen_session *s, int res)
{
	unsigned conn = s->conn_gen;

	s->recv_armed = false;
	if (!worker_connected(s))
		return;
	if (res <= 0) {
		gen_session_conn_error(s, res == 0 ? "connection closed by the server"
						   : strerror(-res));
		return;
	}
	s->wait_ns = gen_now_ns(); /* progress: the wait starts again */
	if (s->tls) {
		worker_tls_input(s, (size_t)res);
	} else {
		s->rx.len += (size_t)res;
		gen_session_input(s);
	}
	if (s->conn_gen == conn && worker_connected(s) && !s->recv_armed)
		worker_recv_arm(s);
}

int gen_worker_start_tls(struct gen_session *s)
{
	struct gen_worker *w = s->worker;

	if (!w->tls_ctx || !s->cipher)
		return PT_ERROR;
	s->tls = tls_conn_new_client(w->tls_ctx, w->run->cfg->server_host);
	if (!s->tls)
		return PT_ERROR;
	s->state = GEN_S_HANDSHAKE;
	/* The ClientHello goes out now; the rest comes through recv. */
	if (tls_conn_handshake(s->tls) == PT_ERROR)
		return PT_ERROR;
	gen_worker_flush(s);
	return PT_OK;
}

void gen_worker_pace(struct gen_session *s, uint64_t at_ns)
{
	struct io_uring_sqe *sqe = worker_sqe(s->worker, &s->pace_op);

	s->pace_ts.tv_sec = (long long)(at_ns / 1000000000u);
	s->pace_ts.tv_nsec = (long long)(at_ns % 1000000000u);
	io_uring_prep_timeout(sqe, &s->pace_ts, 0, IORING_TIMEOUT_ABS);
	s->n_inflight++;
}

/* ---- Reply timeouts ---- */

/* What a session in state st waits for, for the error message. */
static const char *worker_awaited(enum gen_state st)
{
	switch (st) {
	case GEN_S_GREETING:
		return "the greeting";
	case GEN_S_EHLO:
	case GEN_S_EHLO_TLS:
		return "the EHLO reply";
	case GEN_S_STARTTLS:
		return "the STARTTLS reply";
	case GEN_S_HANDSHAKE:
		return "the TLS handshake";
	case GEN_S_ENVELOPE:
		return "an envelope reply";
	case GEN_S_BODY:
		return "the reply to the final dot";
	case GEN_S_ABORT_DOT:
	case GEN_S_RSET:
		return "the RSET reply";
	case GEN_S_QUIT:
		return "the QUIT reply";
	default:
		return "the server";
	}
}

static void worker_reply_timeout(struct gen_session *s)
{
	const struct gen_config *cfg = s->worker->run->cfg;
	char why[128];

	if (s->state != GEN_S_QUIT) /* a QUIT unanswered costs nothing */
		GEN_ADD(s->worker->stats.reply_timeouts, 1);
	snprintf(why, sizeof(why), "no reply within %g s (waiting for %s)", cfg->reply_timeout_s,
		 worker_awaited(s->state));
	gen_session_conn_error(s, why);
}

static void worker_tick_arm(struct gen_worker *w)
{
	uint64_t ns = (uint64_t)(w->run->cfg->reply_timeout_s * 1e8); /* a tenth */

	if (ns > 50 * 1000000ull)
		ns = 50 * 1000000ull;
	if (ns < 1000000ull)
		ns = 1000000ull;
	w->tick_ts.tv_sec = (long long)(ns / 1000000000u);
	w->tick_ts.tv_nsec = (long long)(ns % 1000000000u);
	io_uring_prep_timeout(worker_sqe(w, &w->tick_op), &w->tick_ts, 0, 0);
}

static void worker_tick(struct gen_worker *w)
{
	uint64_t now = gen_now_ns(), bound = (uint64_t)(w->run->cfg->reply_timeout_s * 1e9);

	for (unsigned i = 0; i < w->n_sessions && !w->stop; i++) {
		struct gen_session *s = &w->sessions[i];

		if (worker_connected(s) && s->state != GEN_S_PACE && s->wait_ns &&
		    now - s->wait_ns > bound) {
			worker_reply_timeout(s);
		}
	}
	worker_start_held(w); /* slots another worker freed */
	if (!w->stop)
		worker_tick_arm(w);
}

/* ---- The loop ---- */

static void worker_handle_cqe(struct gen_worker *w, struct io_uring_cqe *cqe)
{
	struct gen_op *op = io_uring_cqe_get_data(cqe);
	struct gen_session *s = op->session;
	int one = 1;

	switch (op->kind) {
	case GEN_OP_CONNECT:
		s->n_inflight--;
		if (s->state != GEN_S_CONNECT)
			break;
		if (cqe->res < 0) {
			s->state = GEN_S_GREETING; /* so that the error closes it */
			gen_session_conn_error(s, cqe->res == -ECANCELED ? "connect timed out"
									 : strerror(-cqe->res));
			break;
		}
		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		s->wait_ns = gen_now_ns();
		gen_session_connected(s);
		worker_recv_arm(s);
		break;
	case GEN_OP_SEND:
		s->n_inflight--;
		worker_sent(s, cqe->res);
		break;
	case GEN_OP_RECV:
		s->n_inflight--;
		worker_received(s, cqe->res);
		break;
	case GEN_OP_PACE:
		s->n_inflight--;
		if (s->state == GEN_S_PACE && !w->stop)
			gen_session_paced(s);
		break;
	case GEN_OP_DEADLINE:
		if (cqe->res == -ETIME)
			w->stop = true;
		return;
	case GEN_OP_TICK:
		if (!w->stop)
			worker_tick(w);
		return;
	case GEN_OP_IGNORE:
		return;
	}
	worker_maybe_release(s);
}

static void worker_loop(struct gen_worker *w)
{
	struct io_uring_cqe *cqe;
	unsigned head, n;

	while (w->n_live > 0 && !w->stop) {
		int rc = io_uring_submit_and_wait(w->ring, 1);

		if (rc < 0 && rc != -EINTR && rc != -EBUSY)
			pt_panic("io_uring_submit_and_wait: %s", strerror(-rc));
		n = 0;
		io_uring_for_each_cqe (w->ring, head, cqe) {
			worker_handle_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(w->ring, n);
	}
}

/* Stopped early (deadline): shut every socket down, cancel timers and
 * connects, and wait (bounded) until the ring lets go of every session. */
static void worker_drain(struct gen_worker *w)
{
	struct __kernel_timespec ts = {.tv_nsec = 50 * 1000000};
	uint64_t end = gen_now_ns() + WORKER_DRAIN_MS * 1000000ull;
	struct io_uring_cqe *cqe;
	unsigned busy;

	for (unsigned i = 0; i < w->n_sessions; i++) {
		struct gen_session *s = &w->sessions[i];

		if (s->state == GEN_S_DONE)
			continue;
		if (s->fd >= 0)
			shutdown(s->fd, SHUT_RDWR);
		if (s->n_inflight > 0) {
			io_uring_prep_cancel(worker_sqe(w, &worker_ignore_op), &s->connect_op, 0);
			io_uring_prep_cancel(worker_sqe(w, &worker_ignore_op), &s->pace_op, 0);
		}
		s->state = GEN_S_CLOSING;
		s->reconnect = false;
	}
	do {
		io_uring_submit(w->ring);
		if (io_uring_wait_cqe_timeout(w->ring, &cqe, &ts) == 0) {
			worker_handle_cqe(w, cqe);
			io_uring_cqe_seen(w->ring, cqe);
		}
		busy = 0;
		for (unsigned i = 0; i < w->n_sessions; i++)
			busy += w->sessions[i].n_inflight;
	} while (busy > 0 && gen_now_ns() < end);
}

static int worker_setup(struct gen_worker *w)
{
	const struct gen_config *cfg = w->run->cfg;
	size_t room = w->run->msg->max_wire + 4096 + (size_t)cfg->n_rcpts * 300;
	unsigned entries = 4 * w->n_sessions + 16;
	char err[256];
	int rc;

	/* One thread submits and reaps: let the kernel defer its work to our
	 * wait (core/ring.c falls back on kernels that lack the flags). */
	rc = net_ring_init(w->ring, entries, NULL);
	if (rc < 0) {
		fprintf(stderr, "petrel-gen: io_uring_queue_init: %s\n", strerror(-rc));
		return PT_ERROR;
	}
	if (cfg->starttls && !(w->tls_ctx = tls_ctx_new_client(false, err, sizeof(err)))) {
		fprintf(stderr, "petrel-gen: TLS: %s\n", err);
		return PT_ERROR;
	}
	/* Everything a session needs, allocated now: nothing per message. */
	for (unsigned i = 0; i < w->n_sessions; i++) {
		struct gen_session *s = &w->sessions[i];

		if (pt_buf_reserve(&s->out, room) != PT_OK ||
		    pt_buf_reserve(&s->tx, room) != PT_OK ||
		    pt_buf_reserve(&s->rx, WORKER_RX_SIZE) != PT_OK ||
		    (cfg->starttls && !(s->cipher = malloc(WORKER_RX_SIZE)))) {
			fprintf(stderr, "petrel-gen: out of memory for %u sessions\n",
				w->n_sessions);
			return PT_ERROR;
		}
	}
	return PT_OK;
}

static void worker_teardown(struct gen_worker *w)
{
	for (unsigned i = 0; i < w->n_sessions; i++) {
		struct gen_session *s = &w->sessions[i];

		if (s->fd >= 0)
			close(s->fd);
		tls_conn_free(s->tls);
		free(s->cipher);
		pt_buf_free(&s->out);
		pt_buf_free(&s->tx);
		pt_buf_free(&s->rx);
	}
	if (w->ring->ring_fd >= 0)
		io_uring_queue_exit(w->ring);
	tls_ctx_free(w->tls_ctx);
	if (w->run->cfg->starttls)
		tls_thread_cleanup();
}

void *gen_worker_main(void *arg)
{
	struct gen_worker *w = arg;
	struct io_uring ring = {.ring_fd = -1};
	char name[32];

	snprintf(name, sizeof(name), "gen %u", w->id);
	pt_log_set_thread_name(name);
	w->ring = &ring;
	w->n_live = w->n_sessions;
	if (worker_setup(w) != PT_OK) {
		w->failed = true;
		goto out;
	}
	w->deadline_op = (struct gen_op){GEN_OP_DEADLINE, NULL};
	w->deadline_ts.tv_sec = (long long)(w->run->deadline_ns / 1000000000u);
	w->deadline_ts.tv_nsec = (long long)(w->run->deadline_ns % 1000000000u);
	io_uring_prep_timeout(worker_sqe(w, &w->deadline_op), &w->deadline_ts, 0,
			      IORING_TIMEOUT_ABS);
	w->tick_op = (struct gen_op){GEN_OP_TICK, NULL};
	worker_tick_arm(w);
	for (unsigned i = 0; i < w->n_sessions; i++)
		worker_connect(&w->sessions[i]);
	worker_loop(w);
	if (w->stop)
		worker_drain(w);
out:
	worker_teardown(w);
	gen_run_worker_done(w->run);
	return NULL;
}
