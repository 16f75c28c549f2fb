/*
 * shard_admin_ops.c -- the admin endpoints that are not rules over units
 * (those are shard_admin.c): inspecting a message, the diagnostic log
 * filter and the configuration reload.
 *
 *   GET  /api/admin/inspect-message/v1?id=ID&want_body=true
 *        -> {id, message: {sender, recipient, meta, data?, due?, num_attempts?,
 *            scheduling: null, recipients: [{recipient, state, num_attempts, due}]}}
 *   POST /api/admin/set_diagnostic_log_filter/v1 {filter} -> {}
 *   POST /api/admin/bump-config-epoch -> {reloaded: true} or 500 {error}
 *
 * Inspect asks the message's home shard, the one whose spool holds it:
 * the shard number is in the id (core/id.c, hex digits 16..19), so the
 * request goes there in a SHARD_MSG_INSPECT, never into another shard's
 * memory.  The home shard finds the message's slot (a linear scan of its
 * table: admin use, O(messages held), no index kept for it), reads the
 * record back from its segment with one ring READ as for a delivery,
 * writes the whole JSON answer and posts it back in a SHARD_MSG_ANSWER;
 * the HTTP connection stays alive meanwhile (c->awaiting).  Recipient
 * states are the home's view: "done" (delivered, bounced or expired) or
 * "queued" with the attempts made and the next due time; where a queued
 * recipient is right now (scheduled, ready, in a transaction) is known
 * only on the shard that owns its site and is not asked.
 *
 * The log filter is one process-wide level (core/log.c): KumoMTA's
 * env_logger syntax as far as it maps, see pt_log_filter_parse.
 *
 * bump-config-epoch reloads the policy as SIGHUP does (shard_reload_all):
 * the shard that took the request loads it first and answers with the
 * outcome; on success the other shards load it at their next iteration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/ptime.h"
#include "shard/shard_int.h"

/* ---- answers from another shard --------------------------------------------------- */

void shard_admin_answered(struct shard_http_conn *c, int status, char *body)
{
	c->awaiting = false;
	shard_http_respond(c, status, "application/json", body, strlen(body));
	free(body);
	shard_http_release_if_done(c);
}

void shard_admin_answer(struct shard *s, unsigned to, void *token, int status, char *body)
{
	struct shard_msg *m;

	if (to == s->id) {
		shard_admin_answered(token, status, body);
		return;
	}
	if (!(m = calloc(1, sizeof(*m))))
		pt_panic("out of memory answering an admin request");
	m->kind = SHARD_MSG_ANSWER;
	m->from = s->id;
	m->token = token;
	m->status = status;
	m->text = body;
	shard_mailbox_post(s, to, m);
}

/* b's text as a heap string; b is freed. */
static char *answer_take(struct pt_buf *b)
{
	char *text = strdup(pt_buf_cstr(b));

	if (!text)
		pt_panic("out of memory answering an admin request");
	pt_buf_free(b);
	return text;
}

/* {"error": text} as a heap string. */
static char *answer_error(const char *fmt, const char *id)
{
	struct pt_buf b = PT_BUF_INIT;
	struct pt_json j;
	char text[256];

	snprintf(text, sizeof(text), fmt, id);
	pt_json_init(&j, &b);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "error", text);
	pt_json_obj_end(&j);
	return answer_take(&b);
}

/* ---- inspect-message ---------------------------------------------------------------- */

bool shard_admin_query_param(const char *q, const char *name, char *out, size_t out_len)
{
	size_t n = strlen(name);

	while (q && *q) {
		size_t len = strcspn(q, "&");

		if (len > n && strncmp(q, name, n) == 0 && q[n] == '=') {
			snprintf(out, out_len, "%.*s", (int)(len - n - 1), q + n + 1);
			return true;
		}
		q += len + (q[len] == '&');
	}
	return false;
}

void shard_admin_inspect_v1(struct shard_http_conn *c, const struct http_request *r)
{
	struct shard *s = c->shard;
	char id[64] = "", want[16] = "", shard_hex[5];
	unsigned home;
	struct shard_msg *m;

	shard_admin_query_param(r->query, "id", id, sizeof(id));
	shard_admin_query_param(r->query, "want_body", want, sizeof(want));
	if (!pt_id_valid(id, strlen(id))) {
		shard_http_respond_error(c, 400,
					 "\"id\": expected a message id (32 lowercase hex "
					 "digits), e.g. ?id=<id>&want_body=true");
		return;
	}
	if (want[0] && strcmp(want, "true") != 0 && strcmp(want, "false") != 0) {
		shard_http_respond_error(c, 400, "\"want_body\": expected true or false");
		return;
	}
	/* The shard that spooled it: hex digits 16..19 of the id. */
	memcpy(shard_hex, id + 16, 4);
	shard_hex[4] = '\0';
	home = (unsigned)strtoul(shard_hex, NULL, 16);
	if (home >= s->group->n) {
		shard_http_respond_error(c, 404, "no message %s in the spool", id);
		return;
	}
	c->awaiting = true;
	if (home == s->id) {
		shard_admin_inspect_home(s, s->id, c, id, strcmp(want, "true") == 0);
		return;
	}
	if (!(m = calloc(1, sizeof(*m))) || !(m->text = strdup(id)))
		pt_panic("out of memory asking for a message");
	m->kind = SHARD_MSG_INSPECT;
	m->from = s->id;
	m->token = c;
	m->status = strcmp(want, "true") == 0;
	shard_mailbox_post(s, home, m);
}

void shard_admin_inspect_home(struct shard *s, unsigned requester, void *token, const char *id,
			      bool want_body)
{
	uint32_t slot = shard_home_find(s, id);

	if (slot == UINT32_MAX) {
		shard_admin_answer(s, requester, token, 404,
				   answer_error("no message %s in the spool (unknown, or every "
						"recipient is done)",
						id));
		return;
	}
	shard_home_inspect_read(s, requester, slot, token, want_body);
}

static void inspect_recipients(struct pt_json *j, const struct pt_message *m,
			       const struct home_msg *h)
{
	pt_json_key(j, "recipients");
	pt_json_arr_begin(j);
	for (size_t i = 0; i < m->n_rcpts; i++) {
		const struct spool_rcpt_state *st = h->states ? &h->states[i] : NULL;
		char due[32];

		pt_json_obj_begin(j);
		pt_json_key_str(j, "recipient", m->rcpts[i]);
		pt_json_key_str(j, "state", st && st->done ? "done" : "queued");
		pt_json_key_int(j, "num_attempts", st ? st->num_attempts : 0);
		if (st && !st->done && st->due_us)
			pt_json_key_str(j, "due", pt_time_rfc3339(st->due_us, due));
		else
			pt_json_key_null(j, "due");
		pt_json_obj_end(j);
	}
	pt_json_arr_end(j);
}

/* KumoMTA's MessageInformation, plus the per-recipient states. */
static void inspect_render(struct pt_buf *b, const struct pt_message *m, const struct home_msg *h,
			   bool want_body)
{
	struct pt_json j;
	struct iovec iov[4];
	int n_iov;

	pt_json_init(&j, b);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "id", h->id);
	pt_json_key(&j, "message");
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "sender", m->sender);
	/* One recipient as a string, several as an array (KumoMTA's OneOrMany). */
	if (m->n_rcpts == 1) {
		pt_json_key_str(&j, "recipient", m->rcpts[0]);
	} else {
		pt_json_key(&j, "recipient");
		pt_json_arr_begin(&j);
		for (size_t i = 0; i < m->n_rcpts; i++)
			pt_json_str(&j, m->rcpts[i]);
		pt_json_arr_end(&j);
	}
	pt_json_key(&j, "meta");
	pt_json_obj_begin(&j);
	for (size_t i = 0; i < m->n_meta; i++)
		pt_json_key_raw(&j, m->meta[i].key, m->meta[i].json, strlen(m->meta[i].json));
	pt_json_obj_end(&j);
	if (want_body) {
		struct pt_buf body = PT_BUF_INIT;

		n_iov = pt_message_iov(m, iov);
		for (int i = 0; i < n_iov; i++)
			pt_buf_append(&body, iov[i].iov_base, iov[i].iov_len);
		pt_json_key_strn(&j, "data", body.data ? body.data : "", body.len);
		pt_buf_free(&body);
	} else {
		pt_json_key_null(&j, "data");
	}
	pt_json_key_null(&j, "scheduling");
	inspect_recipients(&j, m, h);
	pt_json_obj_end(&j);
	pt_json_obj_end(&j);
}

void shard_admin_inspect_read(struct shard *s, const struct shard_body_read *r,
			      const struct pt_message *m)
{
	const struct home_msg *h = &s->home[r->slot];
	struct pt_buf b = PT_BUF_INIT;

	if (!m) {
		shard_admin_answer(s, r->requester, r->token, 500,
				   answer_error("message %s could not be read back from the spool "
						"(see petreld's log)",
						r->id));
		return;
	}
	if (!h->in_use || strcmp(h->id, r->id) != 0) {
		shard_admin_answer(s, r->requester, r->token, 404,
				   answer_error("message %s is done (its last recipient finished "
						"meanwhile)",
						r->id));
		return;
	}
	inspect_render(&b, m, h, r->want_body);
	shard_admin_answer(s, r->requester, r->token, 200, answer_take(&b));
}

/* ---- set_diagnostic_log_filter, bump-config-epoch -------------------------------------- */

void shard_admin_log_filter_v1(struct shard_http_conn *c, const struct http_request *r)
{
	json_t *o = shard_admin_body(c, r), *v;
	enum pt_log_level level;
	char err[256];

	if (!o)
		return;
	v = json_object_get(o, "filter");
	if (!json_is_string(v)) {
		json_decref(o);
		shard_http_respond_error(c, 400,
					 "\"filter\" is required: a string such as "
					 "\"petreld=debug\"");
		return;
	}
	if (pt_log_filter_parse(json_string_value(v), &level, err, sizeof(err)) != PT_OK) {
		json_decref(o);
		shard_http_respond_error(c, 400, "\"filter\": %s", err);
		return;
	}
	/* Said before the change, so the line shows even when the new level hides warnings. */
	pt_warn("admin: diagnostic log filter set to \"%s\" by %s", json_string_value(v), c->auth);
	pt_log_set_level(level);
	json_decref(o);
	shard_http_respond(c, 200, "application/json", "{}", 2);
}

void shard_admin_bump_config_v1(struct shard_http_conn *c, const struct http_request *r)
{
	char err[1024];

	(void)r;
	pt_warn("admin: configuration reload asked by %s", c->auth);
	if (shard_reload_all(c->shard, err, sizeof(err)) != PT_OK) {
		shard_http_respond_error(c, 500,
					 "reload failed, the running configuration stays: %s", err);
		return;
	}
	shard_http_respond(c, 200, "application/json", "{\"reloaded\":true}", 17);
}
