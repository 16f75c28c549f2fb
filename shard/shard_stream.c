/*
 * shard_stream.c -- the ring plumbing that SMTP (shard_conn.c) and HTTP
 * (shard_http.c) connections share.
 *
 * A shard_stream is embedded in each connection object.  It owns the
 * socket, the multishot receive, one send at a time with double buffering
 * (`out` collects wire bytes while `tx` is in flight, so a send's memory
 * never moves) and the server side of TLS.  The protocol glue plugs in
 * through struct shard_stream_ops: what to do with received bytes, with
 * decrypted ones, how to close and when the object may be released.  One
 * indirect call per completion; nothing per byte.
 *
 * A shard_acceptor is embedded in each listener: the multishot accept,
 * re-armed while the shard runs; on drain it is cancelled and its last
 * completion closes the socket.
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/ring.h"
#include "shard/shard_int.h"

/* ---- listeners ---------------------------------------------------------------- */

void shard_acceptor_arm(struct shard_acceptor *a)
{
	struct io_uring_sqe *sqe = shard_sqe(a->shard);

	io_uring_prep_multishot_accept(sqe, a->fd, NULL, NULL, SOCK_CLOEXEC);
	shard_prep(sqe, &a->accept_op);
	a->accepting = true;
}

/* Stop accepting: cancel the multishot accept; its last completion closes the socket. */
void shard_acceptor_stop(struct shard_acceptor *a)
{
	static struct shard_op ignore = {SHARD_OP_IGNORE};
	struct io_uring_sqe *sqe;

	if (!a->accepting)
		return;
	sqe = shard_sqe(a->shard);
	io_uring_prep_cancel(sqe, &a->accept_op, 0);
	shard_prep(sqe, &ignore);
}

void shard_acceptor_handle(struct shard_acceptor *a, struct io_uring_cqe *cqe)
{
	struct shard *s = a->shard;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		a->accepting = false;
	if (cqe->res >= 0) {
		if (s->state == SHARD_RUNNING)
			a->open(a, cqe->res);
		else
			close(cqe->res);
	} else if (cqe->res != -ECANCELED) {
		pt_warn("accept on %s: %s", a->listen, strerror(-cqe->res));
	}
	if (!a->accepting) {
		if (s->state == SHARD_RUNNING)
			shard_acceptor_arm(a);
		else if (a->fd >= 0) {
			close(a->fd);
			a->fd = -1;
		}
	}
}

/* ---- connections ------------------------------------------------------------- */

void shard_stream_init(struct shard_stream *st, struct shard *s, const struct shard_stream_ops *ops,
		       const struct shard_stream *old, const char *peer_ip)
{
	/* Keep the buffers' memory across reuse; everything else starts at zero. */
	st->out = old->out;
	st->tx = old->tx;
	st->plain = old->plain;
	st->out.len = st->tx.len = st->plain.len = 0;
	st->shard = s;
	st->ops = ops;
	st->peer_ip = peer_ip;
	st->recv_op.kind = ops->recv_kind;
	st->send_op.kind = ops->send_kind;
}

void shard_stream_accepted(struct shard_stream *st, int fd, struct sockaddr_storage *peer_sa,
			   char peer_ip[64])
{
	socklen_t len = sizeof(*peer_sa);
	int one = 1;

	st->fd = fd;
	/* Replies are written whole; Nagle would only delay pipelined answers. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (getpeername(fd, (struct sockaddr *)peer_sa, &len) == 0)
		pt_sockaddr_ip((struct sockaddr *)peer_sa, peer_ip);
	else
		snprintf(peer_ip, 64, "unknown");
}

void shard_stream_free_bufs(struct shard_stream *st)
{
	pt_buf_free(&st->out);
	pt_buf_free(&st->tx);
	pt_buf_free(&st->plain);
}

void shard_stream_recv_arm(struct shard_stream *st)
{
	struct io_uring_sqe *sqe = shard_sqe(st->shard);

	io_uring_prep_recv_multishot(sqe, st->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 0;
	shard_prep(sqe, &st->recv_op);
	st->recv_armed = true;
	st->n_inflight++;
}

void shard_stream_close(struct shard_stream *st, const char *reason)
{
	if (st->closing)
		return;
	pt_debug("%s%s: closing: %s", st->ops->tag, st->peer_ip, reason);
	st->closing = true;
	st->ops->closing(st);
	/* Ends the multishot receive (EOF) and any send; the last completion releases us. */
	shutdown(st->fd, SHUT_RDWR);
	st->ops->maybe_release(st);
}

static void stream_send(struct shard_stream *st)
{
	struct io_uring_sqe *sqe = shard_sqe(st->shard);

	io_uring_prep_send(sqe, st->fd, st->tx.data, st->tx.len, MSG_NOSIGNAL);
	shard_prep(sqe, &st->send_op);
	st->send_busy = true;
	st->n_inflight++;
}

void shard_stream_flush(struct shard_stream *st)
{
	struct pt_buf t;

	if (st->send_busy || st->closing)
		return;
	if (st->out.len == 0) {
		if (st->close_after_send)
			shard_stream_close(st, "closed by the session");
		return;
	}
	t = st->tx; /* empty: swap so the send's bytes never move */
	st->tx = st->out;
	st->out = t;
	st->out.len = 0;
	stream_send(st);
}

void shard_stream_handle_send(struct shard_stream *st, struct io_uring_cqe *cqe)
{
	st->n_inflight--;
	st->send_busy = false;
	if (cqe->res < 0) {
		st->tx.len = 0;
		shard_stream_close(st, "send failed");
	} else if ((size_t)cqe->res < st->tx.len && !st->closing) {
		/* Short send: the rest goes first, before anything queued since. */
		pt_buf_consume(&st->tx, (size_t)cqe->res);
		stream_send(st);
	} else {
		st->tx.len = 0;
		shard_stream_flush(st);
	}
	st->ops->maybe_release(st);
}

void shard_stream_handle_recv(struct shard_stream *st, struct io_uring_cqe *cqe)
{
	struct shard *s = st->shard;
	int res = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		st->recv_armed = false;
		st->n_inflight--;
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		char *buf = net_ring_bufs_get(s->buf_base, s->buf_size, bid);

		if (res > 0 && !st->closing)
			st->ops->input(st, buf, (size_t)res);
		/* The session copied what it needs: give the buffer straight back. */
		net_ring_bufs_put(s->buf_ring, s->n_bufs, buf, s->buf_size, bid);
	}
	if (res == 0)
		shard_stream_close(st, "peer closed the connection");
	else if (res < 0 && res != -ENOBUFS)
		shard_stream_close(st, strerror(-res));
	else if (!st->recv_armed && !st->closing)
		shard_stream_recv_arm(st);
	st->ops->maybe_release(st);
}

/* What the session wrote, to the wire buffer: through TLS when it is on. */
void shard_stream_write(struct shard_stream *st, struct pt_buf *so)
{
	struct pt_buf *co;

	if (so->len > 0) {
		if (st->tls_state == CONN_TLS_ON) {
			if (tls_conn_write(st->tls, so->data, so->len) != PT_OK) {
				pt_warn("%s%s: TLS write: %s", st->ops->tag, st->peer_ip,
					tls_conn_error(st->tls));
				so->len = 0;
				shard_stream_close(st, "TLS write failed");
				return;
			}
		} else if (pt_buf_append(&st->out, so->data, so->len) != PT_OK) {
			pt_error("%s%s: out of memory for %s", st->ops->tag, st->peer_ip,
				 st->ops->output_name);
		}
		so->len = 0;
	}
	if (st->tls) {
		co = tls_conn_output(st->tls);
		if (co->len > 0) {
			pt_buf_append(&st->out, co->data, co->len);
			co->len = 0;
		}
	}
}

/* Received ciphertext: the handshake, then the plaintext to ops->plain. */
void shard_stream_tls_input(struct shard_stream *st, const char *data, size_t len)
{
	const struct shard_stream_ops *ops = st->ops;
	struct pt_buf none = PT_BUF_INIT;
	int rc;

	if (tls_conn_feed(st->tls, data, len) != PT_OK) {
		shard_stream_close(st, "out of memory");
		return;
	}
	if (st->tls_state == CONN_TLS_HANDSHAKE) {
		rc = tls_conn_handshake(st->tls);
		if (rc == PT_AGAIN) {
			/* The session writes nothing while the handshake runs. */
			shard_stream_write(st, &none);
			shard_stream_flush(st);
			return;
		}
		if (rc != PT_OK) {
			pt_info("%s%s: TLS handshake failed: %s", ops->tag, st->peer_ip,
				tls_conn_error(st->tls));
			if (!ops->alert_on_handshake_failure) {
				shard_stream_close(st, "TLS handshake failed");
				return;
			}
			shard_stream_write(st, &none); /* the alert, if any */
			st->close_after_send = true;
			shard_stream_flush(st);
			return;
		}
		st->tls_state = CONN_TLS_ON;
		if (ops->tls_done)
			ops->tls_done(st);
	}
	st->plain.len = 0;
	rc = tls_conn_read(st->tls, &st->plain);
	ops->plain(st, st->plain.data, st->plain.len);
	if (rc != PT_OK && !st->closing) {
		/* close_notify or a fatal alert: send what is queued, then close. */
		st->close_after_send = true;
		shard_stream_flush(st);
	}
}
