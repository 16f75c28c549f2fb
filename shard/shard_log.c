/*
 * shard_log.c -- the shard's JSON log: one record per line, KumoMTA's record
 * shape (Reception, Delivery, TransientFailure, Bounce, Expiration, and OOB
 * and Feedback for reports sent to listener domains), appended to
 * <log_dir>/<shard>/<YYYYMMDD-HHMMSS>.log.
 *
 * Lines collect in log_pending and go out in one WRITE per loop iteration
 * (double buffered like connection output).  The log is not synced: it is a
 * record of what happened, not the source of truth (the spool is).
 *
 * A record is about the shard that writes it: Reception on the shard that
 * accepted the message, the delivery records on the shard that owns the
 * recipient's site when the attempt ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/dir.h"
#include "core/json.h"
#include "core/ptime.h"
#include "shard/shard_int.h"

int shard_log_open(struct shard *s)
{
	const struct policy_config *pc = policy_config(s->policy);
	char dir[4096], path[4200];
	time_t now = time(NULL);
	struct tm tm;
	int rc;

	s->log_fd = -1;
	if (!pc->log_dir)
		return PT_OK;
	snprintf(dir, sizeof(dir), "%s/%u", pc->log_dir, s->id);
	if ((rc = pt_mkdir_p(dir, 0750)) < 0) {
		pt_error("log directory %s: %s", dir, strerror(-rc));
		return PT_ERROR;
	}
	gmtime_r(&now, &tm);
	snprintf(path, sizeof(path), "%s/%04d%02d%02d-%02d%02d%02d.log", dir, tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	/* O_APPEND: a restart within the same second continues the same file. */
	s->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (s->log_fd < 0) {
		pt_error("log file %s: %m", path);
		return PT_ERROR;
	}
	return PT_OK;
}

static void shard_log_response(struct pt_json *j, const char *id)
{
	char content[64];

	snprintf(content, sizeof(content), "OK id=%s", id);
	pt_json_key(j, "response");
	pt_json_obj_begin(j);
	pt_json_key_int(j, "code", 250);
	pt_json_key(j, "enhanced_code");
	pt_json_obj_begin(j);
	pt_json_key_int(j, "class", 2);
	pt_json_key_int(j, "subject", 0);
	pt_json_key_int(j, "detail", 0);
	pt_json_obj_end(j);
	pt_json_key_str(j, "content", content);
	pt_json_key_str(j, "command", NULL);
	pt_json_obj_end(j);
}

static void shard_log_recipients(struct pt_json *j, char *const *rcpts, size_t n)
{
	/* KumoMTA writes a string for one recipient; a list when there are several. */
	if (n == 1) {
		pt_json_key_str(j, "recipient", rcpts[0]);
		return;
	}
	pt_json_key(j, "recipient");
	pt_json_arr_begin(j);
	for (size_t i = 0; i < n; i++)
		pt_json_str(j, rcpts[i]);
	pt_json_arr_end(j);
}

static void shard_log_meta(struct pt_json *j, const struct pt_message *m)
{
	pt_json_key(j, "meta");
	pt_json_obj_begin(j);
	for (size_t i = 0; i < m->n_meta; i++)
		pt_json_key_raw(j, m->meta[i].key, m->meta[i].json, strlen(m->meta[i].json));
	pt_json_obj_end(j);
}

/* The queue name of m for recipient rcpt (its domain; NULL: none) in s->log_scratch. */
static const char *shard_log_queue(struct shard *s, const struct pt_message *m, const char *rcpt)
{
	struct pt_buf *queue = &s->log_scratch; /* reused: no allocation per message */
	const char *at = rcpt ? strrchr(rcpt, '@') : NULL;

	queue->len = 0;
	shard_queue_name(m, at ? at + 1 : "", queue);
	return pt_buf_cstr(queue);
}

/*
 * A Reception record, or the Feedback record KumoMTA writes in its place
 * for a feedback report (arf set): the same fields, feedback_report
 * filled, and Petrel's original_id.  rcpts are the envelope recipients
 * as received.
 */
static void shard_log_received(struct shard *s, const struct pt_message *m,
			       const struct shard_conn *c, char *const *rcpts, size_t n_rcpts,
			       const struct pt_arf *arf)
{
	struct pt_json j;
	char now[32], created[32];

	pt_json_init(&j, &s->log_pending);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "type", arf ? "Feedback" : "Reception");
	pt_json_key_str(&j, "id", m->id);
	if (arf)
		pt_json_key_str(&j, "original_id", arf->original_id[0] ? arf->original_id : NULL);
	pt_json_key_str(&j, "sender", m->sender);
	shard_log_recipients(&j, rcpts, n_rcpts);
	pt_json_key_str(&j, "queue", shard_log_queue(s, m, n_rcpts ? rcpts[0] : NULL));
	pt_json_key_str(&j, "site", "");
	pt_json_key_int(&j, "size", (int64_t)pt_message_size(m));
	shard_log_response(&j, m->id);
	pt_json_key(&j, "peer_address");
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "name", m->ehlo ? m->ehlo : "");
	pt_json_key_str(&j, "addr", c->peer_ip);
	pt_json_obj_end(&j);
	pt_json_key_str(&j, "timestamp", pt_time_rfc3339(pt_wall_us(), now));
	pt_json_key_str(&j, "created", pt_time_rfc3339(m->created_us, created));
	pt_json_key_int(&j, "num_attempts", 0);
	pt_json_key_str(&j, "bounce_classification", "Uncategorized");
	pt_json_key_null(&j, "egress_pool");
	pt_json_key_null(&j, "egress_source");
	pt_json_key(&j, "feedback_report");
	if (arf)
		pt_arf_json(arf, &j);
	else
		pt_json_raw(&j, "null", 4);
	shard_log_meta(&j, m);
	pt_json_key(&j, "headers");
	pt_json_obj_begin(&j);
	pt_json_obj_end(&j);
	pt_json_key_null(&j, "delivery_protocol");
	pt_json_key_str(&j, "reception_protocol", m->reception_protocol);
	pt_json_key_str(&j, "nodeid", s->group->cfg.nodeid);
	pt_json_key_str(&j, "tls_cipher",
			c->tls_state == CONN_TLS_ON ? tls_conn_cipher(c->tls) : NULL);
	pt_json_key_str(&j, "tls_protocol_version",
			c->tls_state == CONN_TLS_ON ? tls_conn_version(c->tls) : NULL);
	pt_json_obj_end(&j);
	pt_buf_append(&s->log_pending, "\n", 1);
}

void shard_log_reception(struct shard *s, const struct pt_message *m, const struct shard_conn *c)
{
	if (s->log_fd >= 0)
		shard_log_received(s, m, c, m->rcpts, m->n_rcpts, NULL);
}

/*
 * KumoMTA's response of an OOB record: an "smtp" Diagnostic-Code split at
 * its first space into code and content when the first word is a number,
 * else 550 with the whole text (or "" without such a diagnostic); the
 * enhanced code is the Status field.
 */
static void shard_log_oob_response(struct pt_json *j, const struct pt_dsn_rcpt *r)
{
	const char *content = "";
	long code = 550;

	if (r->diagnostic != NULL && strcasecmp(r->diagnostic_type, "smtp") == 0) {
		const char *space = strchr(r->diagnostic, ' ');
		char *end;
		long n = strtol(r->diagnostic, &end, 10);

		content = r->diagnostic;
		if (space != NULL && end == space && n >= 0 && n <= 65535) {
			code = n;
			content = space + 1;
		}
	}
	pt_json_key(j, "response");
	pt_json_obj_begin(j);
	pt_json_key_int(j, "code", code);
	pt_json_key(j, "enhanced_code");
	pt_json_obj_begin(j);
	pt_json_key_int(j, "class", r->status_class);
	pt_json_key_int(j, "subject", r->status_subject);
	pt_json_key_int(j, "detail", r->status_detail);
	pt_json_obj_end(j);
	pt_json_key_str(j, "content", content);
	pt_json_key_null(j, "command");
	pt_json_obj_end(j);
}

/*
 * One OOB record for a failed recipient of a DSN, as KumoMTA writes it:
 * id is the DSN's own, sender the DSN's first envelope recipient (the
 * bounce address, the original message's envelope sender), recipient the
 * bounced one (Original-Recipient, else Final-Recipient), size 0, the
 * peer named by Reporting-MTA, timestamp the Last-Attempt-Date when
 * given.  original_id (Petrel's) is the id of the message that bounced,
 * when the returned headers carry it.
 */
static void shard_log_oob(struct shard *s, const struct pt_message *m, const struct shard_conn *c,
			  const struct shard_report *rep, const struct pt_dsn_rcpt *r)
{
	struct pt_json j;
	char when[32], created[32];
	uint64_t at = r->last_attempt_us >= 0 ? (uint64_t)r->last_attempt_us : pt_wall_us();

	pt_json_init(&j, &s->log_pending);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "type", "OOB");
	pt_json_key_str(&j, "id", m->id);
	pt_json_key_str(&j, "original_id", rep->dsn.original_id[0] ? rep->dsn.original_id : NULL);
	pt_json_key_str(&j, "sender", rep->n_rcpts ? rep->rcpts[0] : "");
	pt_json_key_str(&j, "recipient",
			r->original_recipient ? r->original_recipient : r->final_recipient);
	pt_json_key_str(&j, "queue", shard_log_queue(s, m, rep->n_rcpts ? rep->rcpts[0] : NULL));
	pt_json_key_str(&j, "site", "");
	pt_json_key_int(&j, "size", 0);
	shard_log_oob_response(&j, r);
	pt_json_key(&j, "peer_address");
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "name", rep->dsn.reporting_mta);
	pt_json_key_str(&j, "addr", c->peer_ip);
	pt_json_obj_end(&j);
	pt_json_key_str(&j, "timestamp", pt_time_rfc3339(at, when));
	pt_json_key_str(&j, "created", pt_time_rfc3339(m->created_us, created));
	pt_json_key_int(&j, "num_attempts", 0);
	pt_json_key_str(&j, "bounce_classification", "Uncategorized");
	pt_json_key_null(&j, "egress_pool");
	pt_json_key_null(&j, "egress_source");
	pt_json_key_null(&j, "feedback_report");
	shard_log_meta(&j, m);
	pt_json_key(&j, "headers");
	pt_json_obj_begin(&j);
	pt_json_obj_end(&j);
	pt_json_key_null(&j, "delivery_protocol");
	pt_json_key_str(&j, "reception_protocol", m->reception_protocol);
	pt_json_key_str(&j, "nodeid", s->group->cfg.nodeid);
	pt_json_key_null(&j, "tls_cipher");
	pt_json_key_null(&j, "tls_protocol_version");
	pt_json_obj_end(&j);
	pt_buf_append(&s->log_pending, "\n", 1);
}

void shard_log_report(struct shard *s, const struct pt_message *m, const struct shard_conn *c,
		      const struct shard_report *rep)
{
	if (s->log_fd < 0)
		return;
	if (rep->is_arf) {
		shard_log_received(s, m, c, rep->rcpts, rep->n_rcpts, &rep->arf);
		return;
	}
	/* KumoMTA logs failed recipients only; a delay or a delivery is no bounce. */
	for (size_t i = 0; i < rep->dsn.n_rcpts; i++)
		if (strcmp(rep->dsn.rcpts[i].action, "failed") == 0)
			shard_log_oob(s, m, c, rep, &rep->dsn.rcpts[i]);
}

static void shard_log_submit(struct shard *s)
{
	struct io_uring_sqe *sqe = shard_sqe(s);

	/* The file is O_APPEND: the offset is ignored and each write lands at the end. */
	io_uring_prep_write(sqe, s->log_fd, s->log_tx.data, (unsigned)s->log_tx.len, 0);
	shard_prep(sqe, &s->log_op);
	s->log_busy = true;
}

void shard_log_kick(struct shard *s)
{
	struct pt_buf t;

	if (s->log_busy || s->log_pending.len == 0 || s->log_fd < 0)
		return;
	t = s->log_tx;
	s->log_tx = s->log_pending;
	s->log_pending = t;
	s->log_pending.len = 0;
	shard_log_submit(s);
}

void shard_handle_log(struct shard *s, struct io_uring_cqe *cqe)
{
	s->log_busy = false;
	if (cqe->res > 0 && (size_t)cqe->res < s->log_tx.len) {
		/* Short write (a full disk, usually): the rest goes before newer lines. */
		pt_buf_consume(&s->log_tx, (size_t)cqe->res);
		shard_log_submit(s);
		return;
	}
	if (cqe->res < 0)
		pt_error("log write: %s (%zu bytes of records lost)", strerror(-cqe->res),
			 s->log_tx.len);
	s->log_tx.len = 0;
}

void shard_log_close(struct shard *s)
{
	/* Shutdown: the ring is idle; a plain write is fine here. */
	if (s->log_fd >= 0 && s->log_pending.len > 0 &&
	    write(s->log_fd, s->log_pending.data, s->log_pending.len) < 0)
		pt_error("log write at shutdown: %m");
	if (s->log_fd >= 0)
		close(s->log_fd);
	s->log_fd = -1;
	pt_buf_free(&s->log_pending);
	pt_buf_free(&s->log_tx);
	pt_buf_free(&s->log_scratch);
}

static void shard_log_reply(struct pt_json *j, const struct smtp_client_reply *r)
{
	pt_json_key(j, "response");
	pt_json_obj_begin(j);
	pt_json_key_int(j, "code", r->code);
	if (r->enh_class >= 0) {
		pt_json_key(j, "enhanced_code");
		pt_json_obj_begin(j);
		pt_json_key_int(j, "class", r->enh_class);
		pt_json_key_int(j, "subject", r->enh_subject);
		pt_json_key_int(j, "detail", r->enh_detail);
		pt_json_obj_end(j);
	} else {
		pt_json_key_null(j, "enhanced_code");
	}
	pt_json_key_str(j, "content", r->content);
	pt_json_key_str(j, "command", r->command);
	pt_json_obj_end(j);
}

/* KumoMTA's source_address: {address, protocol, server}; protocol and
 * server name a proxy, which Petrel does not use.  null without a
 * connection. */
static void shard_log_source_address(struct pt_json *j, const char *address)
{
	if (!address) {
		pt_json_key_null(j, "source_address");
		return;
	}
	pt_json_key(j, "source_address");
	pt_json_obj_begin(j);
	pt_json_key_str(j, "address", address);
	pt_json_key_null(j, "protocol");
	pt_json_key_null(j, "server");
	pt_json_obj_end(j);
}

/*
 * One Delivery, TransientFailure, Bounce or Expiration record for unit u:
 * egress_pool is the queue's pool (null when it has none), egress_source
 * the source chosen for this attempt ("unspecified" without a pool; null
 * when the pool could not give one), source_address our end of the
 * connection.
 * num_attempts counts the attempts made before this one (KumoMTA's
 * meaning): 0 on a first-try delivery.
 */
void shard_log_delivery(struct shard *s, const struct shard_unit *u,
			const struct shard_log_outcome *o)
{
	struct pt_json j;
	char now[32], created[32];

	if (s->log_fd < 0)
		return;
	pt_json_init(&j, &s->log_pending);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "type", o->type);
	pt_json_key_str(&j, "id", u->id);
	pt_json_key_str(&j, "sender", u->sender);
	pt_json_key_str(&j, "recipient", u->recipient);
	pt_json_key_str(&j, "queue", u->queue);
	pt_json_key_str(&j, "site", u->site ? u->site : u->domain);
	pt_json_key_int(&j, "size", (int64_t)u->size);
	shard_log_reply(&j, o->reply);
	if (o->peer_addr) {
		pt_json_key(&j, "peer_address");
		pt_json_obj_begin(&j);
		pt_json_key_str(&j, "name", o->peer_name ? o->peer_name : "");
		pt_json_key_str(&j, "addr", o->peer_addr);
		pt_json_obj_end(&j);
	} else {
		pt_json_key_null(&j, "peer_address");
	}
	pt_json_key_str(&j, "timestamp", pt_time_rfc3339(pt_wall_us(), now));
	pt_json_key_str(&j, "created", pt_time_rfc3339(u->created_us, created));
	pt_json_key_int(&j, "num_attempts", u->num_attempts);
	pt_json_key_str(&j, "bounce_classification", "Uncategorized");
	pt_json_key_str(&j, "egress_pool", u->pool);
	pt_json_key_str(&j, "egress_source",
			u->source ? u->source : u->pool ? NULL : POLICY_SOURCE_UNSPECIFIED);
	shard_log_source_address(&j, o->source_address);
	pt_json_key_null(&j, "feedback_report");
	pt_json_key(&j, "meta");
	pt_json_obj_begin(&j);
	pt_json_obj_end(&j);
	pt_json_key(&j, "headers");
	pt_json_obj_begin(&j);
	pt_json_obj_end(&j);
	pt_json_key_str(&j, "delivery_protocol", "ESMTP");
	pt_json_key_null(&j, "reception_protocol");
	pt_json_key_str(&j, "nodeid", s->group->cfg.nodeid);
	pt_json_key_str(&j, "tls_cipher", o->tls_cipher);
	pt_json_key_str(&j, "tls_protocol_version", o->tls_version);
	pt_json_obj_end(&j);
	pt_buf_append(&s->log_pending, "\n", 1);
}
