/*
 * shard_inject.c -- POST /api/inject/v1, KumoMTA's injection API: one
 * message per recipient, each through the policy and into the spool the
 * way an SMTP message goes, answered once every message is durable.
 *
 *   1. The body is read and checked (net/inject.c); a malformed request is
 *      answered 400 {"error": "..."} naming the field, and nothing is made.
 *   2. Messages are generated in batches of at most INJECT_BATCH messages
 *      (and INJECT_BATCH_BYTES), so a request with 100,000 recipients never
 *      holds more than one batch in memory.  For each recipient: a new id,
 *      the message rendered (net/inject.c), our Received: field, meta
 *      http_auth (KumoMTA's: the trusted peer's address or the Basic user)
 *      and rcpt_meta (the recipient's metadata), then the
 *      http_message_generated event (which may reject it, set meta, sign),
 *      then spool_append_message through shard_commit_message: the same
 *      group commit as SMTP.
 *   3. As the batch's fdatasync completes, each message that is durable is
 *      logged (Reception, reception_protocol "HTTP") and handed to
 *      delivery with shard_home_accepted -- the same path an SMTP message
 *      takes after its 250 -- and counted; one the spool failed is a failed
 *      recipient.  Then the next batch, or the answer:
 *      {"success_count", "fail_count", "failed_recipients", "errors"}
 *      (KumoMTA's shape; HTTP 200 even when some recipients failed, as in
 *      KumoMTA, whose callers read the counts).
 *
 * A recipient that fails (a bad address, a template error, the policy's
 * reject or error, no memory, a spool failure) is listed with its reason
 * and the others go on.  When the connection goes away or the shard's
 * drain deadline passes, the batch in flight still completes (its
 * messages may already be durable: they are delivered) but no new one
 * starts; the client gets no answer and may retry, a possible duplicate,
 * never a loss.
 *
 * Spool tokens: a message's token is its struct inject_msg pointer with
 * bit 1 set (shard_commit.c tells it from a connection and a home record).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "core/ptime.h"
#include "net/inject.h"
#include "shard/shard_int.h"

#define INJECT_BATCH	   64	       /* messages generated before waiting for the spool */
#define INJECT_BATCH_BYTES (16u << 20) /* ... or this many octets */
#define INJECT_ERR_MAX	   640

struct inject_msg {
	struct shard_inject *job;
	struct pt_message m;
	size_t rcpt; /* index in the request */
};

struct shard_inject {
	struct shard_http_conn *conn; /* waits for us (it is not released before) */
	struct inject_request *req;
	size_t next;	   /* next recipient to generate */
	size_t n_inflight; /* messages in the spool's hands */
	struct inject_msg batch[INJECT_BATCH];
	size_t n_success, n_fail;
	json_t *failed_recipients, *errors;
	bool aborted; /* no new batch: the client is gone, or the shard stops */
};

static void inject_next(struct shard_inject *j);

void shard_inject_free(struct shard_inject *j)
{
	if (j == NULL)
		return;
	for (size_t i = 0; i < INJECT_BATCH; i++)
		pt_message_clear(&j->batch[i].m);
	inject_request_free(j->req);
	json_decref(j->failed_recipients);
	json_decref(j->errors);
	free(j);
}

void shard_inject_abort(struct shard_inject *j)
{
	j->aborted = true;
}

/* Recipient i failed: why (a sentence). */
static void inject_fail(struct shard_inject *j, size_t i, const char *why)
{
	const char *email = inject_request_recipient(j->req, i)->email;
	char line[INJECT_ERR_MAX + 300];

	j->n_fail++;
	snprintf(line, sizeof(line), "%s: %s", email, why);
	json_array_append_new(j->failed_recipients, json_string(email));
	json_array_append_new(j->errors, json_string(line));
}

/* Our Received: field (RFC 5321 4.4), as the SMTP server writes it, "with HTTP". */
static int inject_received(struct shard_http_conn *c, struct pt_message *m)
{
	struct pt_buf v = PT_BUF_INIT;
	char date[40];
	bool v6 = strchr(c->peer_ip, ':') != NULL;
	int rc;

	pt_time_rfc5322(m->created_us, date);
	rc = pt_buf_printf(&v,
			   "from [%s%s] (%s)\r\n\tby %s (Petrel) with HTTP id %s\r\n\tfor %s; %s",
			   v6 ? "IPv6:" : "", c->peer_ip, c->peer_ip, c->listener->config->hostname,
			   m->id, m->rcpts[0], date);
	if (rc == PT_OK)
		rc = pt_message_prepend_header(m, "Received", pt_buf_cstr(&v));
	pt_buf_free(&v);
	return rc;
}

/* The meta KumoMTA sets on an injected message, and the recipient's metadata. */
static int inject_meta(struct shard_http_conn *c, struct pt_message *m,
		       const struct inject_recipient *rc)
{
	struct pt_buf json = PT_BUF_INIT;
	struct pt_json w;
	int ret;

	pt_json_init(&w, &json);
	pt_json_str(&w, c->auth);
	ret = pt_message_set_meta(m, "http_auth", pt_buf_cstr(&json));
	if (ret == PT_OK && rc->metadata_json != NULL)
		ret = pt_message_set_meta(m, "rcpt_meta", rc->metadata_json);
	pt_buf_free(&json);
	return ret;
}

/*
 * Make recipient i's message in slot (rendered, Received:, meta) and run
 * the policy.  PT_OK: ready for the spool; else why is filled.
 */
static int inject_make(struct shard_inject *j, size_t i, struct inject_msg *slot, char *why,
		       size_t why_len)
{
	struct shard_http_conn *c = j->conn;
	struct shard *s = c->shard;
	const struct inject_recipient *rc = inject_request_recipient(j->req, i);
	const char *sender = inject_request_sender(j->req);
	struct pt_message *m = &slot->m;
	struct policy_reply reply;
	struct inject_env env;
	int ret;

	pt_message_init(m);
	slot->job = j;
	slot->rcpt = i;
	pt_id_next(&s->idgen, m->id);
	m->created_us = pt_wall_us();
	env = (struct inject_env){m->id, c->listener->config->hostname, m->created_us};
	ret = inject_render(j->req, i, &env, &m->data, why, why_len);
	if (ret != PT_OK)
		return ret;
	pt_message_scan_headers(m);
	if (pt_message_set_sender(m, sender, strlen(sender)) != PT_OK ||
	    pt_message_add_rcpt(m, rc->email, strlen(rc->email)) != PT_OK ||
	    (m->peer_address = strdup(c->peer_ip)) == NULL ||
	    (m->reception_protocol = strdup("HTTP")) == NULL || inject_received(c, m) != PT_OK ||
	    inject_meta(c, m, rc) != PT_OK) {
		snprintf(why, why_len, "out of memory");
		return PT_NOMEM;
	}
	ret = policy_http_message_generated(s->policy, m, &reply);
	if (ret != PT_OK) {
		snprintf(why, why_len, "%d %s", reply.code, reply.text);
		return PT_DECLINED;
	}
	return PT_OK;
}

/* Answer {"success_count", "fail_count", "failed_recipients", "errors"}, free j. */
static void inject_finish(struct shard_inject *j)
{
	struct shard_http_conn *c = j->conn;
	json_t *body;
	char *text = NULL;

	body = json_pack("{s:I, s:I, s:O, s:O}", "success_count", (json_int_t)j->n_success,
			 "fail_count", (json_int_t)j->n_fail, "failed_recipients",
			 j->failed_recipients, "errors", j->errors);
	if (body != NULL)
		text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	pt_info("http %s: injected %zu message%s, %zu failed", c->peer_ip, j->n_success,
		j->n_success == 1 ? "" : "s", j->n_fail);
	c->inject = NULL;
	shard_inject_free(j);
	if (c->st.closing)
		shard_http_release_if_done(c); /* nobody to answer */
	else if (text != NULL)
		shard_http_respond(c, 200, "application/json", text, strlen(text));
	else
		shard_http_respond_error(c, 500, "out of memory writing the answer");
	free(text);
}

/* Generate and spool the next batch; answer when there is none left. */
static void inject_next(struct shard_inject *j)
{
	struct shard *s = j->conn->shard;
	size_t n = inject_request_count(j->req);
	char why[INJECT_ERR_MAX];

	while (j->n_inflight == 0) {
		size_t slots = 0, bytes = 0;

		while (!j->aborted && j->next < n && slots < INJECT_BATCH &&
		       bytes < INJECT_BATCH_BYTES) {
			struct inject_msg *slot = &j->batch[slots];
			size_t i = j->next++;

			pt_message_clear(&slot->m);
			if (inject_make(j, i, slot, why, sizeof(why)) != PT_OK) {
				inject_fail(j, i, why);
				continue;
			}
			/* Bit 1 tells the spool's callback this is ours (shard_commit.c). */
			if (shard_commit_message(s, (void *)((uintptr_t)slot | 2), &slot->m) !=
			    PT_OK) {
				inject_fail(j, i, "out of memory queueing the spool write");
				continue;
			}
			bytes += pt_message_size(&slot->m);
			slots++;
			j->n_inflight++;
		}
		if (j->n_inflight > 0)
			return; /* shard_inject_committed goes on */
		if (j->aborted || j->next >= n)
			break;
	}
	if (j->aborted) {
		/* Nobody to answer; the rest are not generated. */
		struct shard_http_conn *c = j->conn;

		c->inject = NULL;
		shard_inject_free(j);
		shard_http_release_if_done(c);
		return;
	}
	inject_finish(j);
}

void shard_inject_committed(void *token, int status, const struct spool_loc *loc)
{
	struct inject_msg *slot = (struct inject_msg *)((uintptr_t)token & ~(uintptr_t)3);
	struct shard_inject *j = slot->job;
	struct shard *s = j->conn->shard;

	if (status == PT_OK) {
		j->n_success++;
		shard_count(s, SHARD_M_RECEIVED_HTTP);
		shard_log_reception_from(s, &slot->m, j->conn->peer_ip,
					 j->conn->st.tls_state == CONN_TLS_ON ? j->conn->st.tls : NULL);
		/* Durable: hand the recipient to delivery, as an SMTP message after its 250. */
		shard_home_accepted(s, &slot->m, loc);
	} else {
		inject_fail(j, slot->rcpt, "spool write failed, try again later");
	}
	pt_message_clear(&slot->m);
	if (--j->n_inflight == 0)
		inject_next(j);
}

/* Content-Type: application/json (parameters allowed), or none (KumoMTA
 * requires it; curl -d without -H sends a form type, which must not be
 * read as JSON by accident). */
static bool inject_content_type_ok(const struct http_request *r)
{
	const char *ct = http_request_header(r, "Content-Type");
	size_t n = strlen("application/json");

	return ct == NULL || (strncasecmp(ct, "application/json", n) == 0 &&
			      (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' '));
}

void shard_inject_v1(struct shard_http_conn *c, const struct http_request *r)
{
	struct shard_inject *j;
	char err[INJECT_ERR_MAX];
	int rc;

	if (!inject_content_type_ok(r)) {
		shard_http_respond_error(c, 415, "Content-Type must be application/json, got '%s'",
					 http_request_header(r, "Content-Type"));
		return;
	}
	if ((j = calloc(1, sizeof(*j))) == NULL) {
		shard_http_respond_error(c, 503, "out of memory, try again later");
		return;
	}
	rc = inject_request_parse(r->body.data ? r->body.data : "", r->body.len, &j->req, err,
				  sizeof(err));
	j->failed_recipients = json_array();
	j->errors = json_array();
	if (rc != PT_OK || j->failed_recipients == NULL || j->errors == NULL) {
		shard_inject_free(j);
		if (rc == PT_ERROR)
			shard_http_respond_error(c, 400, "%s", err);
		else
			shard_http_respond_error(c, 503, "out of memory, try again later");
		return;
	}
	j->conn = c;
	c->inject = j;
	inject_next(j);
}
