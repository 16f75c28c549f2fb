/*
 * shard_out_amqp.c -- the AMQP protocol of outbound connections: a queue
 * whose config has protocol.amqp (policy_queue_amqp.c) publishes each unit's
 * message to a broker through the AMQP 0-9-1 publisher state machine
 * (net/amqp_client.c) on a connection that shard_out.c runs.
 *
 * The ready queue is "source->amqp://user@host:port/vhost" (plus
 * "?declare=queue"), its one host the broker, so connection_limit, the
 * rates, idle_timeout and max_deliveries_per_connection (batches) of the
 * egress path apply as for SMTP, and retries follow the queue's schedule.
 * The connection logs in with the ready queue's copy of the first unit's
 * queue config (rq->amqp: password, declare_queue, window, timeout); queues
 * that share a site share its connections.
 *
 * A batch is up to `window` ready units of one scheduled queue
 * (shard_ready_same_queue: one exchange and routing key), one body per unit
 * fetched from its home shard as for HTTP.  Once all are here they are
 * published back to back (the client pipelines them, cookie = the unit), and
 * each unit gets its outcome when its confirm arrives, in any order:
 *
 *   Basic.Ack                          Delivery, 250 2.0.0 "AMQP broker <host> acked"
 *   Basic.Nack, a mandatory Return,    TransientFailure, 451 4.0.0 "AMQP <code>:
 *   the broker's Close                 <the client's text>" (no code for a nack)
 *   EOF, timeout, protocol error       TransientFailure, 451 4.4.2 "AMQP publish
 *                                      failed: <why>"
 *
 * delivery_protocol "AMQP".  When the batch's last confirm is in, the
 * session takes the next batch.  A session that fails before READY
 * (login refused, the broker closed during the handshake) moves on to the
 * next address and then defers every ready unit (shard_out_retry_next), so
 * a dead broker costs its own queue a retry interval and nobody else
 * anything.  Idle: Connection.Close, then the socket is closed when
 * CloseOk arrives.
 *
 * A unit published just before the broker died may be in the broker's
 * queue and still be retried (no ack came): at-least-once, as SMTP.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/amqp_client.h"
#include "shard/shard_int.h"

struct out_amqp {
	struct amqp_client *client;
	struct pt_buf body; /* one unit's message, contiguous */
	bool was_ready;	    /* READY seen: a failure ends the connection */
	bool in_tx;	    /* a batch is published and awaits its confirms */
};

static struct out_amqp *amqp_of(const struct shard_out *o)
{
	return o->session;
}

static int amqp_open(struct shard_out *o)
{
	const struct policy_queue_amqp *cfg = o->rq->amqp;
	struct amqp_client_config cc = {0};
	struct out_amqp *a;

	if (!cfg)
		return PT_NOMEM; /* a ready queue of AMQP always has it (shard_ready.c) */
	if (!(a = calloc(1, sizeof(*a))))
		return PT_NOMEM;
	cc.user = cfg->user;
	cc.password = cfg->password;
	cc.vhost = cfg->vhost;
	cc.declare_queue = cfg->declare_queue ? cfg->routing_key : NULL;
	cc.window = cfg->window;
	cc.handshake_timeout_ms = cfg->timeout_ms;
	cc.confirm_timeout_ms = cfg->timeout_ms;
	if (!(a->client = amqp_client_new(&cc))) {
		free(a);
		return PT_NOMEM;
	}
	o->session = a;
	return PT_OK;
}

static void amqp_free(struct shard_out *o)
{
	struct out_amqp *a = amqp_of(o);

	amqp_client_free(a->client);
	pt_buf_free(&a->body);
	free(a);
}

/* ---- outcomes ---- */

/* The reply a unit is logged with: its confirm (ok), or why not. */
static void amqp_reply(const struct shard_out *o, const struct amqp_client_event *ev,
		       struct smtp_client_reply *r)
{
	if (ev->ok) {
		smtp_client_local_reply(r, 250, 0, 0, NULL, "AMQP broker %s acked",
					o->cur ? o->cur->name : o->rq->site);
		r->local = false;
	} else if (ev->reply.local) {
		smtp_client_local_reply(r, 451, 4, 2, NULL, "AMQP publish failed: %s",
					ev->reply.text);
	} else {
		/* "AMQP 312: the broker returned the message (...): NO_ROUTE";
		 * a nack has no code. */
		if (ev->reply.code)
			smtp_client_local_reply(r, 451, 0, 0, NULL, "AMQP %u: %s", ev->reply.code,
						ev->reply.text);
		else
			smtp_client_local_reply(r, 451, 0, 0, NULL, "AMQP: %s", ev->reply.text);
		r->local = false;
	}
}

/* Unit u's confirm: its outcome, and it leaves the batch. */
static void amqp_confirmed(struct shard_out *o, const struct amqp_client_event *ev)
{
	struct shard_unit *u = ev->cookie;
	struct smtp_client_reply r;
	struct shard_log_outcome lo;
	size_t i;

	for (i = 0; i < o->n_batch && o->batch[i] != u; i++)
		;
	if (i == o->n_batch)
		pt_panic("AMQP confirm for a unit not in the batch");
	/* Out of the batch first: a close while its outcome is logged must not
	 * give it back a second time. */
	o->batch[i] = o->batch[--o->n_batch];
	amqp_reply(o, ev, &r);
	lo = shard_out_outcome(o, &r);
	if (ev->ok)
		shard_unit_delivered(o->shard, u, &lo);
	else
		shard_unit_failed(o->shard, u, &lo);
}

/* The session failed (the broker's Close, EOF, timeout): before READY the
 * next address, as SMTP; after it the connection ends (every unconfirmed
 * unit already has its TransientFailure). */
static void amqp_failed(struct shard_out *o, const struct amqp_client_event *ev)
{
	struct out_amqp *a = amqp_of(o);
	struct smtp_client_reply r;

	if (a->was_ready) {
		pt_info("%s [%s]: AMQP session failed: %s", o->cur->name, o->cur->addr.text,
			ev->reply.text);
		shard_out_close(o, "AMQP session failed");
		return;
	}
	if (ev->reply.local)
		smtp_client_local_reply(&r, 451, 4, 2, "AMQP", "AMQP login to %s failed: %s",
					o->cur->name, ev->reply.text);
	else
		smtp_client_local_reply(&r, 451, 4, 0, "AMQP", "AMQP login to %s refused: %s",
					o->cur->name, ev->reply.text);
	shard_out_retry_next(o, &r);
}

static void amqp_events(struct shard_out *o)
{
	struct amqp_client_event ev;

	while (!o->closing && o->session && o->state == OUT_SESSION &&
	       amqp_client_next_event(amqp_of(o)->client, &ev)) {
		switch (ev.type) {
		case AMQP_CLIENT_EV_READY:
			amqp_of(o)->was_ready = true;
			shard_out_became_ready(o);
			break;
		case AMQP_CLIENT_EV_CONFIRMED:
			amqp_confirmed(o, &ev);
			break;
		case AMQP_CLIENT_EV_FAILED:
			amqp_failed(o, &ev);
			return;
		case AMQP_CLIENT_EV_CLOSED:
			shard_out_close(o, "AMQP connection closed");
			return;
		default:
			break;
		}
	}
	if (o->closing || !o->session || o->state != OUT_SESSION)
		return;
	/* Every confirm of the batch is in (and the session lives: a FAILED
	 * follows its CONFIRMEDs in the same feed): the next batch. */
	if (amqp_of(o)->in_tx && o->n_batch == 0) {
		amqp_of(o)->in_tx = false;
		o->ready = true;
		shard_out_wake(o);
	}
	shard_out_pump(o);
}

/* ---- publishing ---- */

static const struct amqp_client_message *amqp_message(struct out_amqp *a,
						      const struct policy_queue_amqp *cfg,
						      const struct pt_message *m,
						      struct amqp_client_message *out)
{
	struct iovec iov[4];
	int n = pt_message_iov(m, iov);

	a->body.len = 0;
	for (int i = 0; i < n; i++)
		if (pt_buf_append(&a->body, iov[i].iov_base, iov[i].iov_len) != PT_OK)
			return NULL;
	*out = (struct amqp_client_message){
	    .exchange = cfg->exchange,
	    .routing_key = cfg->routing_key,
	    .content_type = cfg->content_type,
	    .mandatory = cfg->mandatory,
	    .body = a->body.data ? a->body.data : "",
	    .body_len = a->body.len,
	};
	return out;
}

/* Publish every unit of the batch.  The published ones are a prefix of it
 * (a refused publish refuses the rest too); the others go back to the front
 * of the ready queue in order: units the window has no room for (a queue
 * whose window grew since this connection logged in), or all of them after
 * a failed publish (the published ones then get their confirms). */
static void amqp_send(struct shard_out *o)
{
	struct out_amqp *a = amqp_of(o);
	const struct shard_sched *sq = o->batch[0]->sched;
	const struct policy_queue_amqp *cfg = sq ? sq->cfg.amqp : NULL;
	struct amqp_client_message msg;
	size_t kept = 0;
	uint64_t tag;
	int rc = PT_OK;

	if (!cfg) {
		shard_out_free_bodies(o);
		shard_out_fail_batch_local(o, "the queue no longer delivers by AMQP");
		return;
	}
	for (; kept < o->n_batch && rc == PT_OK; kept++) {
		if (!amqp_message(a, cfg, o->bodies[kept], &msg)) {
			rc = PT_NOMEM;
			break;
		}
		msg.cookie = o->batch[kept];
		if ((rc = amqp_client_publish(a->client, &msg, &tag)) != PT_OK)
			break;
	}
	shard_out_free_bodies(o);
	for (size_t i = o->n_batch; i-- > kept;)
		shard_ready_requeue(o->shard, o->rq, o->batch[i]);
	o->n_batch = kept;
	if (rc != PT_OK)
		pt_error("%s: publish refused (%s) after %zu of the batch; the rest waits",
			 o->rq->site, rc == PT_NOMEM ? "out of memory" : "session not ready", kept);
	if (kept == 0) {
		/* Nothing went out: taking the same units again would loop. */
		shard_out_close(o, "AMQP session cannot publish");
		return;
	}
	a->in_tx = true;
	amqp_events(o);
}

/* ---- the table ---- */

static void amqp_input(struct shard_out *o, const char *data, size_t len)
{
	/* PT_NOMEM fails the session: its events say so. */
	amqp_client_feed(amqp_of(o)->client, data, len);
	amqp_events(o);
}

static void amqp_eof(struct shard_out *o)
{
	amqp_client_eof(amqp_of(o)->client);
}

static void amqp_timeout(struct shard_out *o)
{
	amqp_client_timeout(amqp_of(o)->client);
}

static uint64_t amqp_timeout_ms(const struct shard_out *o)
{
	return amqp_client_timeout_ms(amqp_of(o)->client);
}

static struct pt_buf *amqp_output(struct shard_out *o)
{
	return amqp_client_output(amqp_of(o)->client);
}

/* The head unit's queue's window (1 when it no longer has protocol.amqp). */
static size_t amqp_batch_max(const struct shard_ready *rq)
{
	const struct shard_sched *sq = rq->head ? rq->head->sched : NULL;

	return sq && sq->cfg.amqp ? sq->cfg.amqp->window : 1;
}

/* READY and idle: Connection.Close; CLOSED (or its timeout) ends it.  A
 * client that is not READY any more sends nothing and awaits nothing. */
static void amqp_quit(struct shard_out *o)
{
	struct amqp_client *c = amqp_of(o)->client;

	amqp_client_close(c);
	if (amqp_client_timeout_ms(c) == 0) {
		shard_out_close(o, "AMQP session not ready");
		return;
	}
	amqp_events(o);
}

const struct shard_out_proto shard_out_amqp = {
    .name = "AMQP",
    .body_per_unit = true,
    .open = amqp_open,
    .free = amqp_free,
    .input = amqp_input,
    .eof = amqp_eof,
    .timeout = amqp_timeout,
    .timeout_ms = amqp_timeout_ms,
    .output = amqp_output,
    .events = amqp_events,
    .batch_max = amqp_batch_max,
    .same_batch = shard_ready_same_queue,
    .send = amqp_send,
    .quit = amqp_quit,
};
