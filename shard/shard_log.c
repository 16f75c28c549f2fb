/*
 * shard_log.c -- the shard's JSON log: one record per line, KumoMTA's record
 * shape (Reception, Delivery, TransientFailure, Bounce, Expiration), appended
 * to <log_dir>/<shard>/<YYYYMMDD-HHMMSS>.log.
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

static void shard_log_recipients(struct pt_json *j, const struct pt_message *m)
{
	/* KumoMTA writes a string for one recipient; a list when there are several. */
	if (m->n_rcpts == 1) {
		pt_json_key_str(j, "recipient", m->rcpts[0]);
		return;
	}
	pt_json_key(j, "recipient");
	pt_json_arr_begin(j);
	for (size_t i = 0; i < m->n_rcpts; i++)
		pt_json_str(j, m->rcpts[i]);
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

void shard_log_reception(struct shard *s, const struct pt_message *m, const struct shard_conn *c)
{
	struct pt_buf *queue = &s->log_scratch; /* reused: no allocation per message */
	struct pt_json j;
	char now[32], created[32];

	if (s->log_fd < 0)
		return;
	const char *at = m->n_rcpts ? strrchr(m->rcpts[0], '@') : NULL;

	queue->len = 0;
	shard_queue_name(m, at ? at + 1 : "", queue);
	pt_json_init(&j, &s->log_pending);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "type", "Reception");
	pt_json_key_str(&j, "id", m->id);
	pt_json_key_str(&j, "sender", m->sender);
	shard_log_recipients(&j, m);
	pt_json_key_str(&j, "queue", pt_buf_cstr(queue));
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
	pt_json_key_null(&j, "feedback_report");
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

/*
 * One Delivery, TransientFailure, Bounce or Expiration record for unit u.
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
	pt_json_key_null(&j, "egress_pool");
	pt_json_key_str(&j, "egress_source", "unspecified");
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
