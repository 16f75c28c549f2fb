/*
 * shard_loghook.c -- log hooks (KumoMTA's configure_log_hook): every log
 * record a shard writes is offered to every configured hook, and a record
 * the policy wants becomes a MESSAGE in this shard's spool, queued and
 * delivered like any other message.  The spool is the hook's durable
 * queue; retries, shaping and max_age are its queue's (get_queue_config
 * for NAME.log_hook, usually from policy-extras.log_hooks).  So an
 * endpoint that is down loses no record and never stalls other delivery,
 * and no thread is added: everything happens on the shard that wrote the
 * record.
 *
 *   1. shard_log_end (shard_log.c) hands each finished record to
 *      shard_loghook_offer, which copies it into `records`.  Records are
 *      written deep inside delivery code and Lua hooks, where running Lua
 *      again is not safe, so nothing else happens there.
 *   2. Once per loop iteration, before the spool batch is kicked,
 *      shard_loghook_kick takes every kept record and, for each hook in
 *      configuration order, makes a message:
 *        id        a new one; created now;
 *        data      the record's JSON text (no header block);
 *        sender    the record's sender ("" for the null sender);
 *        recipient log@NAME.log_hook (not the record's recipient, as
 *                  KumoMTA: a handler that says yes without setting a
 *                  queue must not mail the record to the original
 *                  recipient; this one routes to NAME.log_hook);
 *        meta      log_record = the record (a table in Lua),
 *                  reception_protocol = "LogRecord" (KumoMTA's);
 *      and runs should_enqueue_log_record(msg, NAME).  true: the message
 *      goes into the spool's pending batch (meta queue as the handler left
 *      it; KumoMTA's helper sets NAME.log_hook).  false, nil, or an error
 *      (logged with file:line): it is dropped.
 *   3. Hook messages wait for no fsync of their own: like tombstones they
 *      do not mark the batch urgent (shard_commit.c), so they ride with the
 *      next batch of received messages or go after the lazy delay.  When
 *      the batch is durable, shard_loghook_committed hands the message to
 *      delivery (shard_home_accepted), as an SMTP message after its 250.
 *      No Reception record is written for it; its Delivery,
 *      TransientFailure, Bounce and Expiration records are logged locally
 *      with reception_protocol "LogRecord" and never offered to a hook
 *      again (shard_log_end), so a hook cannot feed on its own records.
 *
 * Failures never touch reception or delivery: a record the spool cannot
 * take (under the free-space floor, out of memory, a failed batch) is
 * dropped, counted in log_hook_dropped and logged at most once a second
 * with the count.  A crash between the offer and the durable batch loses
 * those records' hook messages (as it loses the log records not yet
 * written); a crash after delivery and before the tombstone delivers a
 * hook message again (at-least-once, like every message).
 *
 * Tokens given to the spool: the struct pt_message pointer with bit 2 set
 * (bits 0 and 1 are the home shard's and the injection's, shard_commit.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ptime.h"
#include "shard/shard_int.h"

#define LOGHOOK_TOKEN_BIT  4
#define LOGHOOK_REPORT_MS  1000 /* at most one drop report per second */
#define LOGHOOK_META_PROTO "\"" SHARD_LOGHOOK_PROTOCOL "\""

struct shard_loghook {
	char *const *hooks; /* the policy config's names (kept across reloads) */
	size_t n_hooks;
	struct pt_buf records; /* per record: sender NUL json NUL */
	struct pt_buf rcpt;    /* scratch: log@NAME.log_hook */
	uint64_t n_dropped;    /* since the last report */
	uint64_t reported_ms;  /* when the last report was logged */
	const char *drop_why;  /* the first reason since then */
};

int shard_loghook_open(struct shard *s)
{
	const struct policy_config *pc = policy_config(s->policy);
	struct shard_loghook *h;

	s->loghook = NULL;
	if (pc->n_log_hooks == 0)
		return PT_OK;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return PT_NOMEM;
	/* The config is the running one for the shard's life: a reload keeps
	 * the init settings (policy_reload), so the names stay valid. */
	h->hooks = pc->log_hooks;
	h->n_hooks = pc->n_log_hooks;
	s->loghook = h;
	return PT_OK;
}

void shard_loghook_close(struct shard *s)
{
	struct shard_loghook *h = s->loghook;

	if (h == NULL)
		return;
	if (h->records.len > 0)
		pt_warn("log hooks: records logged while stopping were not offered to the hooks");
	pt_buf_free(&h->records);
	pt_buf_free(&h->rcpt);
	free(h);
	s->loghook = NULL;
}

bool shard_loghook_idle(const struct shard *s)
{
	return s->loghook == NULL || s->loghook->records.len == 0;
}

/* A record (or a hook message) is lost: count it; report once a second. */
static void loghook_drop(struct shard *s, const char *why)
{
	struct shard_loghook *h = s->loghook;
	uint64_t now = pt_monotonic_ms();

	shard_count(s, SHARD_M_LOG_HOOK_DROPPED);
	if (h->n_dropped++ == 0)
		h->drop_why = why;
	if (now - h->reported_ms < LOGHOOK_REPORT_MS)
		return;
	pt_error("log hooks: %llu record%s dropped (%s)", (unsigned long long)h->n_dropped,
		 h->n_dropped == 1 ? "" : "s", h->drop_why);
	h->n_dropped = 0;
	h->reported_ms = now;
}

void shard_loghook_offer(struct shard *s, const char *sender, const char *json, size_t len)
{
	struct shard_loghook *h = s->loghook;
	size_t was;

	if (h == NULL)
		return;
	was = h->records.len;
	if (!sender)
		sender = "";
	if (pt_buf_append(&h->records, sender, strlen(sender) + 1) != PT_OK ||
	    pt_buf_append(&h->records, json, len) != PT_OK ||
	    pt_buf_append(&h->records, "", 1) != PT_OK) {
		h->records.len = was;
		loghook_drop(s, "out of memory keeping a record");
	}
}

bool shard_loghook_is_hook_message(const struct pt_message *m)
{
	const char *proto = pt_message_get_meta(m, "reception_protocol");

	return proto != NULL && strcmp(proto, LOGHOOK_META_PROTO) == 0;
}

/* The message of one record for hook `hook` (see the file comment), or NULL
 * when memory ran out. */
static struct pt_message *loghook_message(struct shard *s, const char *hook, const char *sender,
					  const char *json, size_t len)
{
	struct shard_loghook *h = s->loghook;
	struct pt_message *m = malloc(sizeof(*m));

	if (m == NULL)
		return NULL;
	pt_message_init(m);
	pt_id_next(&s->idgen, m->id);
	m->created_us = pt_wall_us();
	h->rcpt.len = 0;
	if (pt_buf_printf(&h->rcpt, "log@%s.log_hook", hook) != PT_OK ||
	    pt_buf_append(&m->data, json, len) != PT_OK ||
	    pt_message_set_sender(m, sender, strlen(sender)) != PT_OK ||
	    pt_message_add_rcpt(m, h->rcpt.data, h->rcpt.len) != PT_OK ||
	    pt_message_set_meta(m, "log_record", json) != PT_OK ||
	    pt_message_set_meta(m, "reception_protocol", LOGHOOK_META_PROTO) != PT_OK ||
	    (m->reception_protocol = strdup(SHARD_LOGHOOK_PROTOCOL)) == NULL) {
		pt_message_clear(m);
		free(m);
		return NULL;
	}
	pt_message_scan_headers(m);
	return m;
}

/* Offer one record to hook `hook`; spool its message when the policy says so. */
static void loghook_one(struct shard *s, const char *hook, const char *sender, const char *json,
			size_t len)
{
	struct pt_message *m = loghook_message(s, hook, sender, json, len);
	bool enqueue;

	if (m == NULL) {
		loghook_drop(s, "out of memory making a hook message");
		return;
	}
	if (policy_should_enqueue_log_record(s->policy, m, hook, &enqueue) != PT_OK || !enqueue) {
		pt_message_clear(m);
		free(m);
		return;
	}
	if (s->spool_full) {
		loghook_drop(s, "the spool is under its free-space floor");
	} else if (spool_append_message(s->spool, m, (void *)((uintptr_t)m | LOGHOOK_TOKEN_BIT)) !=
		   PT_OK) {
		loghook_drop(s, "the spool could not take a hook message");
	} else {
		return; /* shard_loghook_committed frees it */
	}
	pt_message_clear(m);
	free(m);
}

void shard_loghook_kick(struct shard *s)
{
	struct shard_loghook *h = s->loghook;
	struct pt_buf records;

	if (h == NULL || h->records.len == 0)
		return;
	/* Take the list: records logged while the handlers run (a handler's
	 * own errors are not records, but be safe) wait for the next kick. */
	records = h->records;
	h->records = (struct pt_buf){0};
	for (size_t off = 0; off < records.len;) {
		const char *sender = records.data + off;
		const char *json = sender + strlen(sender) + 1;
		size_t len = strlen(json);

		for (size_t i = 0; i < h->n_hooks; i++)
			loghook_one(s, h->hooks[i], sender, json, len);
		off = (size_t)(json + len + 1 - records.data);
	}
	if (h->records.len == 0) {
		records.len = 0;
		pt_buf_free(&h->records);
		h->records = records; /* keep the memory */
	} else {
		pt_buf_free(&records);
	}
}

void shard_loghook_committed(struct shard *s, void *token, int status, const struct spool_loc *loc)
{
	struct pt_message *m =
	    (struct pt_message *)((uintptr_t)token & ~(uintptr_t)LOGHOOK_TOKEN_BIT);

	if (status == PT_OK)
		shard_home_accepted(s, m, loc);
	else if (s->loghook != NULL)
		loghook_drop(s, "its spool batch failed");
	pt_message_clear(m);
	free(m);
}
