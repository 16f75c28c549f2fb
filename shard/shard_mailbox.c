/*
 * shard_mailbox.c -- messages between shards.
 *
 * Every ordered pair of shards (A, B) has its own SPSC ring, A -> B, so each
 * ring has one producer thread and one consumer thread and needs no lock.
 * A producer pushes entries during its loop iteration and remembers which
 * shards it wrote to; at the end of the iteration it sends ONE
 * IORING_OP_MSG_RING to each of them (not one per entry).  The MSG_RING
 * posts a completion on the target's ring, which wakes it if it sleeps in
 * io_uring_enter; the target drains all its inbound rings every iteration
 * anyway, so a wake-up is only a nudge and carries no data.
 *
 * Entries are heap objects: the producer allocates, the consumer frees
 * (mimalloc makes the cross-thread free cheap).
 *
 * A full ring never loses or blocks: shard_mailbox_post() keeps what does
 * not fit in a per-destination overflow list (in order, behind anything
 * already waiting there) and pushes it on later iterations.  A restart with
 * a million due recipients routes them in one burst; the ring's 64 Ki
 * entries bound what is in flight between two shards, the list the rest.
 */
#include <stdlib.h>

#include "core/ptime.h"
#include "shard/shard_int.h"

bool shard_mailbox_send(struct shard *s, unsigned to, struct shard_msg *m)
{
	struct shard_group *g = s->group;

	if (!pt_spsc_push(g->rings[s->id * g->n + to], m))
		return false;
	s->wake[to] = true;
	return true;
}

void shard_mailbox_post(struct shard *s, unsigned to, struct shard_msg *m)
{
	m->next = NULL;
	if (!s->overflow_head[to] && shard_mailbox_send(s, to, m))
		return;
	if (s->overflow_tail[to])
		s->overflow_tail[to]->next = m;
	else
		s->overflow_head[to] = m;
	s->overflow_tail[to] = m;
}

bool shard_mailbox_try(struct shard *s, unsigned to, struct shard_msg *m)
{
	m->next = NULL;
	return !s->overflow_head[to] && shard_mailbox_send(s, to, m);
}

static void shard_mailbox_flush(struct shard *s)
{
	for (unsigned to = 0; to < s->group->n; to++) {
		struct shard_msg *m;

		while ((m = s->overflow_head[to]) && shard_mailbox_send(s, to, m)) {
			s->overflow_head[to] = m->next;
			if (!m->next)
				s->overflow_tail[to] = NULL;
		}
	}
}

void shard_mailbox_wake(struct shard *s)
{
	struct shard_group *g = s->group;

	shard_mailbox_flush(s);

	for (unsigned to = 0; to < g->n; to++) {
		struct io_uring_sqe *sqe;

		if (!s->wake[to])
			continue;
		s->wake[to] = false;
		sqe = shard_sqe(s);
		/* The target's completion carries its own mailbox op as user_data. */
		io_uring_prep_msg_ring(sqe, g->shards[to].ring.ring_fd, 0,
				       (uint64_t)(uintptr_t)&g->shards[to].mailbox_op, 0);
		shard_prep(sqe, &s->msg_ring_op);
	}
}

void shard_begin_drain(struct shard *s)
{
	if (s->state != SHARD_RUNNING)
		return;
	s->state = SHARD_DRAINING;
	s->drain_deadline_ms = pt_monotonic_ms() + s->group->cfg.drain_ms;
	shard_conns_shutdown(s);
	shard_http_shutdown(s);
	shard_readies_shutdown(s);
}

static void shard_mailbox_handle(struct shard *s, struct shard_msg *m)
{
	switch (m->kind) {
	case SHARD_MSG_STOP:
		shard_begin_drain(s);
		break;
	case SHARD_MSG_UNIT:
		shard_unit_adopt(s, m->unit);
		break;
	case SHARD_MSG_OUTCOME:
		shard_home_outcome(s, m->slot, m->rcpt, m->done, m->num_attempts, m->due_us);
		break;
	case SHARD_MSG_BODY_REQ:
		shard_home_body_request(s, m->from, m->slot, m->token);
		break;
	case SHARD_MSG_BODY:
		shard_out_body(m->token, m->body);
		break;
	case SHARD_MSG_RELOAD:
		shard_reload(s);
		break;
	case SHARD_MSG_ADMIN:
		shard_admin_handle(s, m->admin);
		break;
	case SHARD_MSG_INSPECT:
		shard_admin_inspect_home(s, m->from, m->token, m->text, m->status != 0);
		free(m->text);
		break;
	case SHARD_MSG_ANSWER:
		shard_admin_answered(m->token, m->status, m->text);
		break;
	case SHARD_MSG_TRACE_SUB:
	case SHARD_MSG_TRACE_UNSUB:
	case SHARD_MSG_TRACE_EVENT:
		shard_trace_handle(s, m);
		break;
	default:
		pt_panic("unknown shard message %d from shard %u", m->kind, m->from);
	}
	free(m);
}

void shard_mailbox_drain(struct shard *s)
{
	struct shard_group *g = s->group;

	for (unsigned from = 0; from < g->n; from++) {
		struct shard_msg *m;

		if (from == s->id)
			continue;
		while ((m = pt_spsc_pop(g->rings[from * g->n + s->id])))
			shard_mailbox_handle(s, m);
	}
}
