/*
 * shard_out_smtp.c -- the SMTP protocol of outbound connections: the SMTP
 * client state machine (net/smtp_client.c) and STARTTLS (net/tls.c) on a
 * connection that shard_out.c runs.
 *
 * The session: banner, EHLO, STARTTLS, then transactions.  A failure before
 * the session was READY (banner or EHLO refused, TLS failed or required but
 * not offered) moves on to the next address, on a new socket
 * (shard_out_retry_next); after READY it ends the connection.  A batch is
 * the recipients of one message (shard_ready_take), one body; at TX_DONE
 * every recipient gets its own reply's outcome.
 *
 * trace-smtp-client (shard_trace.c) sees the plaintext both ways, behind
 * one `if (n_trace_subs)` each: what the peer sent as reply lines (as
 * received: a line cut between two reads shows as two), what we send as
 * command lines except the body, counted as "data" (the client says where
 * it is in the output: smtp_client_output_body), and TLS's outcome.
 */
#include <stdlib.h>
#include <string.h>

#include "shard/shard_int.h"

static struct smtp_client *smtp_of(const struct shard_out *o)
{
	return o->session;
}

static struct smtp_client_config smtp_config(const struct shard_out *o)
{
	const struct policy_egress_path *e = &o->rq->cfg;
	/* KumoMTA's order: the path's ehlo_domain, the source's, the host name. */
	const char *ehlo = e->ehlo_domain ? e->ehlo_domain : o->rq->src.ehlo_domain;

	return (struct smtp_client_config){
	    .ehlo_domain = ehlo ? ehlo : o->shard->hostname,
	    .tls = (enum smtp_client_tls)e->enable_tls,
	    .enable_pipelining = e->enable_pipelining,
	    .banner_timeout_ms = e->banner_timeout_ms,
	    .ehlo_timeout_ms = e->ehlo_timeout_ms,
	    .starttls_timeout_ms = e->starttls_timeout_ms,
	    .mail_from_timeout_ms = e->mail_from_timeout_ms,
	    .rcpt_to_timeout_ms = e->rcpt_to_timeout_ms,
	    .data_timeout_ms = e->data_timeout_ms,
	    .data_dot_timeout_ms = e->data_dot_timeout_ms,
	    .rset_timeout_ms = e->rset_timeout_ms,
	};
}

static int smtp_open(struct shard_out *o)
{
	struct smtp_client_config cfg = smtp_config(o);

	o->session = smtp_client_new(&cfg);
	return o->session ? PT_OK : PT_NOMEM;
}

static void smtp_free(struct shard_out *o)
{
	smtp_client_free(smtp_of(o));
}

static void smtp_tx_done(struct shard_out *o)
{
	for (size_t i = 0; i < o->n_batch; i++) {
		const struct smtp_client_reply *r = smtp_client_rcpt_reply(smtp_of(o), i);
		struct shard_log_outcome lo = shard_out_outcome(o, r);

		if (r->code >= 200 && r->code < 300)
			shard_unit_delivered(o->shard, o->batch[i], &lo);
		else
			shard_unit_failed(o->shard, o->batch[i], &lo);
	}
	o->n_batch = 0;
	shard_out_free_bodies(o);
}

/* The ClientHello goes out with the pump after the event loop; the answer
 * comes through smtp_input. */
/* STARTTLS's outcome, to the client and the trace (reason NULL: done). */
static void smtp_tls_done(struct shard_out *o, bool ok, const char *reason)
{
	if (o->shard->n_trace_subs) {
		char text[300];
		int n = ok ? snprintf(text, sizeof(text), "%s %s", tls_conn_version(o->tls),
				      tls_conn_cipher(o->tls))
			   : snprintf(text, sizeof(text), "failed: %s", reason);

		shard_trace_out(o, SHARD_TRACE_TLS, text, (size_t)PT_MIN(n, (int)sizeof(text) - 1));
	}
	smtp_client_tls_done(smtp_of(o), ok, reason);
}

static void smtp_start_tls(struct shard_out *o)
{
	char err[256];

	if (shard_out_tls_start(o, smtp_client_tls_verify(smtp_of(o)), err, sizeof(err)) != PT_OK)
		smtp_tls_done(o, false, err);
}

static void smtp_events(struct shard_out *o)
{
	enum smtp_client_event ev;

	while (!o->closing && o->session && o->state == OUT_SESSION &&
	       (ev = smtp_client_next_event(smtp_of(o))) != SMTP_CLIENT_EV_NONE) {
		switch (ev) {
		case SMTP_CLIENT_EV_READY:
			shard_out_became_ready(o);
			break;
		case SMTP_CLIENT_EV_START_TLS:
			shard_out_pump(o); /* nothing plaintext may follow STARTTLS's reply */
			smtp_start_tls(o);
			break;
		case SMTP_CLIENT_EV_TX_DONE:
			smtp_tx_done(o);
			break;
		case SMTP_CLIENT_EV_FAILED:
			if (smtp_client_failed_before_ready(smtp_of(o))) {
				shard_out_retry_next(o, smtp_client_failure(smtp_of(o)));
				return;
			}
			shard_out_close(o, smtp_client_failure(smtp_of(o))->content);
			return;
		case SMTP_CLIENT_EV_CLOSED:
			shard_out_close(o, "QUIT");
			return;
		default:
			break;
		}
	}
	shard_out_pump(o);
}

static void smtp_tls_input(struct shard_out *o, const char *data, size_t len)
{
	struct smtp_client *c = smtp_of(o);
	bool done, eof;

	switch (shard_out_tls_input(o, data, len, &done, &eof)) {
	case PT_OK:
		break;
	case PT_ERROR:
		smtp_tls_done(o, false, tls_conn_error(o->tls));
		smtp_events(o);
		return;
	default:
		return;
	}
	if (done)
		smtp_tls_done(o, true, NULL);
	if (o->plain.len > 0 && o->shard->n_trace_subs)
		shard_trace_out(o, SHARD_TRACE_REPLY, o->plain.data, o->plain.len);
	if (o->plain.len > 0)
		smtp_client_feed(c, o->plain.data, o->plain.len);
	if (eof)
		smtp_client_eof(c);
	smtp_events(o);
}

static void smtp_input(struct shard_out *o, const char *data, size_t len)
{
	if (o->tls_state != CONN_TLS_NONE) {
		smtp_tls_input(o, data, len);
		return;
	}
	if (o->shard->n_trace_subs)
		shard_trace_out(o, SHARD_TRACE_REPLY, data, len);
	if (smtp_client_feed(smtp_of(o), data, len) != PT_OK) {
		shard_out_close(o, "out of memory");
		return;
	}
	smtp_events(o);
}

static void smtp_eof(struct shard_out *o)
{
	smtp_client_eof(smtp_of(o));
}

static void smtp_timeout(struct shard_out *o)
{
	smtp_client_timeout(smtp_of(o));
}

static uint64_t smtp_timeout_ms(const struct shard_out *o)
{
	return smtp_client_timeout_ms(smtp_of(o));
}

/* What goes out, for the trace: command lines, the body as its size. */
static void smtp_trace_output(struct shard_out *o, const struct pt_buf *b, size_t body_off,
			      size_t body_len)
{
	shard_trace_out(o, SHARD_TRACE_COMMAND, b->data, body_off);
	if (body_len == 0)
		return;
	shard_trace_out(o, SHARD_TRACE_DATA, NULL, body_len);
	shard_trace_out(o, SHARD_TRACE_COMMAND, b->data + body_off + body_len,
			b->len - body_off - body_len);
}

/* shard_out_pump sends all of it (the body's place is forgotten with it). */
static struct pt_buf *smtp_output(struct shard_out *o)
{
	struct pt_buf *b = smtp_client_output(smtp_of(o));
	size_t off, len;
	bool body = smtp_client_output_body(smtp_of(o), &off, &len);

	if (o->shard->n_trace_subs && b->len > 0)
		smtp_trace_output(o, b, body ? off : b->len, len);
	return b;
}

static size_t smtp_batch_max(const struct shard_ready *rq)
{
	return rq->cfg.max_recipients_per_batch;
}

static void smtp_send(struct shard_out *o)
{
	struct pt_message *body = o->bodies[0];
	int n_iov;

	for (size_t i = 0; i < o->n_batch; i++)
		o->rcpts[i] = o->batch[i]->recipient;
	n_iov = pt_message_iov(body, o->iov);
	o->txd.sender = body->sender;
	o->txd.rcpts = o->rcpts;
	o->txd.n_rcpts = o->n_batch;
	o->txd.body = o->iov;
	o->txd.n_body = n_iov;
	o->txd.body_len = pt_message_size(body);
	if (smtp_client_send(smtp_of(o), &o->txd) != PT_OK) {
		shard_out_free_bodies(o);
		shard_out_fail_batch_local(o, "out of memory starting the transaction");
		return;
	}
	smtp_events(o);
}

static void smtp_quit(struct shard_out *o)
{
	smtp_client_quit(smtp_of(o));
	smtp_events(o);
}

const struct shard_out_proto shard_out_smtp = {
    .name = "ESMTP",
    .body_per_unit = false,
    .open = smtp_open,
    .free = smtp_free,
    .input = smtp_input,
    .eof = smtp_eof,
    .timeout = smtp_timeout,
    .timeout_ms = smtp_timeout_ms,
    .output = smtp_output,
    .events = smtp_events,
    .batch_max = smtp_batch_max,
    .same_batch = shard_ready_same_message,
    .send = smtp_send,
    .quit = smtp_quit,
};
