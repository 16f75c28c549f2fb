/*
 * shard_admin.c -- the admin API (KumoMTA's paths): suspensions and
 * bounces of scheduled queues, and the queue summary.
 *
 *   POST   /api/admin/suspend/v1  {domain, campaign?, tenant?, reason, duration?} -> {id}
 *   GET    /api/admin/suspend/v1  -> [{id, domain, campaign, tenant, reason, duration}]
 *   DELETE /api/admin/suspend/v1  {id}   (KumoMTA's resume)
 *   POST   /api/admin/bounce/v1   {domain?, campaign?, tenant?, reason, duration?} -> {id}
 *   GET    /api/admin/bounce/v1   -> the bounces still in force (duration > 0)
 *   GET    /api/admin/queue-summary/v1 -> {scheduled: [...], ready: [...]}
 *
 * All are trusted-hosts only (KumoMTA's TrustedIpRequired).
 *
 * An admin entry (struct shard_admin_entry) is a rule over units:
 * SUSPEND holds the units of matching scheduled queues, BOUNCE bounces
 * them.  It matches a unit when its domain (case-insensitive), campaign
 * and tenant equal those the entry names (an unnamed one matches all).
 * Every shard keeps its own copy of every entry: the request lands on one
 * shard, which applies it and posts a copy to each other shard over the
 * mailboxes (SHARD_MSG_ADMIN), then answers at once -- the other shards
 * apply it within their next loop iteration, so an answer can come a few
 * microseconds before every shard holds it.  No lock, no shared state.
 *
 * Where it acts: shard_unit_route() asks shard_admin_hold() each time a
 * unit becomes due, before it picks a source or asks DNS.  A suspended
 * unit is rescheduled SHARD_ADMIN_RECHECK_MS later (or at the end of the
 * suspension, if sooner): it stays in its scheduled queue and its spool
 * state is untouched.  Cost: a suspended unit wakes once per recheck
 * period; resuming needs no message to reach the units, they see the
 * entry gone at their next wake-up (within SHARD_ADMIN_RECHECK_MS).
 * A bounce also sweeps, at once, every unit the shard holds SCHEDULED
 * (waiting for its due time or its retry); with a duration it stays in
 * force and bounces matching units as they become due.  Units READY or
 * INFLIGHT are not touched (a transaction in progress finishes); those
 * that fail transiently come back SCHEDULED and meet the bounce while it
 * is in force.  A bounced unit gets an AdminBounce record and is done at
 * its home shard exactly like a Bounce (never retried).
 *
 * Entries are in memory only: a restart forgets them (as KumoMTA's).
 *
 * The queue summary reads the per-queue tables the shards publish once a
 * second for /metrics (shard_metrics.c): scheduled_count per scheduled
 * queue, ready_count and connection_count per ready queue, summed over
 * shards; like kcli queue-summary (which reads the same metrics).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "core/ptime.h"
#include "shard/shard_int.h"

#define SHARD_ADMIN_RECHECK_MS	  1000
#define SHARD_ADMIN_DEFAULT_MS	  (24ull * 3600 * 1000) /* KumoMTA's default duration */
#define SHARD_ADMIN_MAX_ENTRIES	  1024
#define SHARD_ADMIN_MAX_FIELD_LEN 255

/* ---- entries ------------------------------------------------------------------ */

static void entry_clear(struct shard_admin_entry *e)
{
	free(e->domain);
	free(e->campaign);
	free(e->tenant);
	free(e->reason);
	memset(e, 0, sizeof(*e));
}

static char *dup_or_null(const char *s)
{
	char *d;

	if (!s)
		return NULL;
	if (!(d = strdup(s)))
		pt_panic("out of memory copying an admin entry");
	return d;
}

static void entry_copy(struct shard_admin_entry *to, const struct shard_admin_entry *from)
{
	*to = *from;
	to->domain = dup_or_null(from->domain);
	to->campaign = dup_or_null(from->campaign);
	to->tenant = dup_or_null(from->tenant);
	to->reason = dup_or_null(from->reason);
}

void shard_admin_free(struct shard *s)
{
	for (size_t i = 0; i < s->n_admin; i++)
		entry_clear(&s->admin[i]);
	free(s->admin);
	s->admin = NULL;
	s->n_admin = 0;
}

/* Forget entries whose time is over. */
static void admin_expire(struct shard *s, uint64_t now_us)
{
	size_t w = 0;

	for (size_t i = 0; i < s->n_admin; i++) {
		if (now_us >= s->admin[i].until_us) {
			if (s->admin[i].kind == SHARD_ADMIN_SUSPEND && s->id == 0)
				pt_info("admin: suspension %s of %s is over", s->admin[i].id,
					s->admin[i].domain ? s->admin[i].domain : "*");
			entry_clear(&s->admin[i]);
			continue;
		}
		s->admin[w++] = s->admin[i];
	}
	s->n_admin = w;
}

static bool entry_matches(const struct shard_admin_entry *e, const struct shard_unit *u)
{
	if (e->domain && strcasecmp(e->domain, u->domain) != 0)
		return false;
	if (e->campaign && (!u->campaign || strcmp(e->campaign, u->campaign) != 0))
		return false;
	if (e->tenant && (!u->tenant || strcmp(e->tenant, u->tenant) != 0))
		return false;
	return true;
}

static void admin_bounce_sweep(struct shard *s, const struct shard_admin_entry *e)
{
	size_t n = 0;

	for (struct shard_unit *u = s->units, *next; u; u = next) {
		next = u->all_next;
		if (u->state != UNIT_SCHEDULED || !entry_matches(e, u))
			continue;
		shard_unit_admin_bounce(s, u, e->reason);
		n++;
	}
	if (n)
		pt_info("admin: bounce %s: %zu recipients bounced on shard %u", e->id, n, s->id);
}

/* Apply an entry on this shard: SUSPEND/BOUNCE add it (a BOUNCE sweeps
 * first), RESUME removes the entry with its id.  e's strings are copied. */
static void admin_apply(struct shard *s, const struct shard_admin_entry *e)
{
	struct shard_admin_entry *more;

	admin_expire(s, pt_wall_us());
	if (e->kind == SHARD_ADMIN_RESUME) {
		for (size_t i = 0; i < s->n_admin; i++) {
			if (strcmp(s->admin[i].id, e->id) != 0)
				continue;
			entry_clear(&s->admin[i]);
			s->admin[i] = s->admin[--s->n_admin];
			break;
		}
		return;
	}
	if (e->kind == SHARD_ADMIN_BOUNCE)
		admin_bounce_sweep(s, e);
	if (e->until_us <= pt_wall_us())
		return; /* a bounce without duration: the sweep was all */
	more = realloc(s->admin, (s->n_admin + 1) * sizeof(*more));
	if (!more)
		pt_panic("out of memory for an admin entry");
	s->admin = more;
	entry_copy(&s->admin[s->n_admin++], e);
}

void shard_admin_entry_free(struct shard_admin_entry *e)
{
	entry_clear(e);
	free(e);
}

void shard_admin_handle(struct shard *s, struct shard_admin_entry *e)
{
	admin_apply(s, e);
	shard_admin_entry_free(e);
}

/* Apply here, then post a copy to every other shard. */
static void admin_broadcast(struct shard *s, const struct shard_admin_entry *e)
{
	admin_apply(s, e);
	for (unsigned i = 0; i < s->group->n; i++) {
		struct shard_msg *m;
		struct shard_admin_entry *copy;

		if (i == s->id)
			continue;
		m = calloc(1, sizeof(*m));
		copy = calloc(1, sizeof(*copy));
		if (!m || !copy)
			pt_panic("out of memory sending an admin command");
		entry_copy(copy, e);
		m->kind = SHARD_MSG_ADMIN;
		m->from = s->id;
		m->admin = copy;
		shard_mailbox_post(s, i, m);
	}
}

bool shard_admin_hold(struct shard *s, struct shard_unit *u)
{
	uint64_t now_us;

	if (s->n_admin == 0)
		return false;
	now_us = pt_wall_us();
	admin_expire(s, now_us);
	for (size_t i = 0; i < s->n_admin; i++) {
		const struct shard_admin_entry *e = &s->admin[i];

		if (!entry_matches(e, u))
			continue;
		if (e->kind == SHARD_ADMIN_BOUNCE) {
			shard_unit_admin_bounce(s, u, e->reason);
			return true;
		}
		u->due_us = PT_MIN(e->until_us, now_us + SHARD_ADMIN_RECHECK_MS * 1000ull);
		shard_unit_schedule(s, u);
		return true;
	}
	return false;
}

/* ---- requests ------------------------------------------------------------------ */

/* The request body as a JSON object, or NULL (answered 400). */
static json_t *admin_body(struct shard_http_conn *c, const struct http_request *r)
{
	json_error_t err;
	json_t *root;

	if (r->body.len == 0) {
		shard_http_respond_error(c, 400, "expected a JSON object in the request body");
		return NULL;
	}
	root = json_loadb(r->body.data, r->body.len, 0, &err);
	if (!root) {
		shard_http_respond_error(c, 400, "invalid JSON at line %d column %d: %s", err.line,
					 err.column, err.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		shard_http_respond_error(c, 400, "expected a JSON object in the request body");
		return NULL;
	}
	return root;
}

/* Field key of o: absent or null -> *out NULL; a non-empty string -> it. */
static bool admin_field(struct shard_http_conn *c, json_t *o, const char *key, const char **out)
{
	json_t *v = json_object_get(o, key);
	const char *str;

	*out = NULL;
	if (!v || json_is_null(v))
		return true;
	if (!json_is_string(v) || !*(str = json_string_value(v)) ||
	    strlen(str) > SHARD_ADMIN_MAX_FIELD_LEN) {
		shard_http_respond_error(c, 400,
					 "\"%s\": expected a non-empty string of at most %d "
					 "bytes",
					 key, SHARD_ADMIN_MAX_FIELD_LEN);
		return false;
	}
	*out = str;
	return true;
}

/* "duration": a KumoMTA duration string ("10m", "1 hour") or seconds; absent -> def_ms. */
static bool admin_duration(struct shard_http_conn *c, json_t *o, uint64_t def_ms, uint64_t *out)
{
	json_t *v = json_object_get(o, "duration");
	const char *why = NULL;

	*out = def_ms;
	if (!v || json_is_null(v))
		return true;
	if (json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) < 1e10) {
		*out = (uint64_t)(json_number_value(v) * 1000);
		return true;
	}
	if (json_is_string(v) &&
	    policy_duration_parse(json_string_value(v), json_string_length(v), out, &why) == PT_OK)
		return true;
	shard_http_respond_error(c, 400, "\"duration\": %s",
				 why ? why : "expected a duration like \"10m\" or \"1h\"");
	return false;
}

/* The entry a POST describes; false when answered (400). */
static bool admin_parse_entry(struct shard_http_conn *c, json_t *o, enum shard_admin_kind kind,
			      struct shard_admin_entry *e)
{
	const char *domain, *campaign, *tenant, *reason;
	uint64_t dur_ms;

	if (!admin_field(c, o, "domain", &domain) || !admin_field(c, o, "campaign", &campaign) ||
	    !admin_field(c, o, "tenant", &tenant) || !admin_field(c, o, "reason", &reason) ||
	    !admin_duration(c, o, kind == SHARD_ADMIN_SUSPEND ? SHARD_ADMIN_DEFAULT_MS : 0,
			    &dur_ms))
		return false;
	if (!reason) {
		shard_http_respond_error(c, 400, "\"reason\" is required (it goes into the logs)");
		return false;
	}
	if (kind == SHARD_ADMIN_SUSPEND && !domain) {
		shard_http_respond_error(c, 400, "\"domain\" is required to suspend");
		return false;
	}
	if (!domain && !campaign && !tenant) {
		shard_http_respond_error(c, 400,
					 "name at least one of \"domain\", \"campaign\", "
					 "\"tenant\" (bouncing everything is not offered)");
		return false;
	}
	if (kind == SHARD_ADMIN_SUSPEND && dur_ms == 0) {
		shard_http_respond_error(c, 400, "\"duration\" must be longer than zero");
		return false;
	}
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	pt_id_next(&c->shard->idgen, e->id);
	e->domain = (char *)domain;
	e->campaign = (char *)campaign;
	e->tenant = (char *)tenant;
	e->reason = (char *)reason;
	e->created_us = pt_wall_us();
	e->until_us = dur_ms ? e->created_us + dur_ms * 1000 : 0;
	return true;
}

static void admin_respond_id(struct shard_http_conn *c, const char *id)
{
	struct pt_buf b = PT_BUF_INIT;
	struct pt_json j;

	pt_json_init(&j, &b);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "id", id);
	pt_json_obj_end(&j);
	shard_http_respond(c, 200, "application/json", b.data, b.len);
	pt_buf_free(&b);
}

static void admin_post(struct shard_http_conn *c, const struct http_request *r,
		       enum shard_admin_kind kind)
{
	struct shard_admin_entry e;
	json_t *o = admin_body(c, r);

	if (!o)
		return;
	admin_expire(c->shard, pt_wall_us());
	if (c->shard->n_admin >= SHARD_ADMIN_MAX_ENTRIES) {
		json_decref(o);
		shard_http_respond_error(c, 503, "too many suspensions and bounces in force (%d)",
					 SHARD_ADMIN_MAX_ENTRIES);
		return;
	}
	if (!admin_parse_entry(c, o, kind, &e)) {
		json_decref(o);
		return;
	}
	pt_warn("admin: %s %s of domain=%s campaign=%s tenant=%s for %llu s by %s: %s",
		kind == SHARD_ADMIN_SUSPEND ? "suspension" : "bounce", e.id,
		e.domain ? e.domain : "*", e.campaign ? e.campaign : "*", e.tenant ? e.tenant : "*",
		(unsigned long long)(e.until_us ? (e.until_us - e.created_us) / 1000000 : 0),
		c->auth, e.reason);
	admin_broadcast(c->shard, &e); /* copies e's strings, which o owns */
	json_decref(o);
	admin_respond_id(c, e.id);
}

static void admin_list(struct shard_http_conn *c, enum shard_admin_kind kind)
{
	struct shard *s = c->shard;
	struct pt_buf b = PT_BUF_INIT;
	struct pt_json j;
	uint64_t now_us = pt_wall_us();

	admin_expire(s, now_us);
	pt_json_init(&j, &b);
	pt_json_arr_begin(&j);
	for (size_t i = 0; i < s->n_admin; i++) {
		const struct shard_admin_entry *e = &s->admin[i];
		char created[32];

		if (e->kind != kind)
			continue;
		pt_json_obj_begin(&j);
		pt_json_key_str(&j, "id", e->id);
		pt_json_key_str(&j, "domain", e->domain);
		pt_json_key_str(&j, "campaign", e->campaign);
		pt_json_key_str(&j, "tenant", e->tenant);
		pt_json_key_str(&j, "reason", e->reason);
		pt_json_key_str(&j, "created", pt_time_rfc3339(e->created_us, created));
		/* KumoMTA lists the time left, in seconds. */
		pt_json_key_int(&j, "duration", (int64_t)((e->until_us - now_us) / 1000000));
		pt_json_obj_end(&j);
	}
	pt_json_arr_end(&j);
	shard_http_respond(c, 200, "application/json", b.data, b.len);
	pt_buf_free(&b);
}

static void admin_resume(struct shard_http_conn *c, const struct http_request *r)
{
	struct shard *s = c->shard;
	struct shard_admin_entry e = {.kind = SHARD_ADMIN_RESUME};
	json_t *o = admin_body(c, r);
	const char *id;
	size_t i;

	if (!o)
		return;
	if (!admin_field(c, o, "id", &id)) {
		json_decref(o);
		return;
	}
	if (!id) {
		json_decref(o);
		shard_http_respond_error(c, 400, "\"id\" is required (see GET %s)", r->path);
		return;
	}
	admin_expire(s, pt_wall_us());
	for (i = 0; i < s->n_admin; i++)
		if (s->admin[i].kind == SHARD_ADMIN_SUSPEND && strcmp(s->admin[i].id, id) == 0)
			break;
	if (i == s->n_admin) {
		shard_http_respond_error(c, 404, "no suspension with id %s in force", id);
		json_decref(o);
		return;
	}
	snprintf(e.id, sizeof(e.id), "%s", id);
	json_decref(o);
	pt_warn("admin: suspension %s resumed by %s", e.id, c->auth);
	admin_broadcast(s, &e);
	shard_http_respond(c, 200, "application/json", "{}", 2);
}

void shard_admin_suspend_v1(struct shard_http_conn *c, const struct http_request *r)
{
	if (strcmp(r->method, "POST") == 0)
		admin_post(c, r, SHARD_ADMIN_SUSPEND);
	else if (strcmp(r->method, "DELETE") == 0)
		admin_resume(c, r);
	else
		admin_list(c, SHARD_ADMIN_SUSPEND);
}

void shard_admin_bounce_v1(struct shard_http_conn *c, const struct http_request *r)
{
	if (strcmp(r->method, "POST") == 0)
		admin_post(c, r, SHARD_ADMIN_BOUNCE);
	else
		admin_list(c, SHARD_ADMIN_BOUNCE);
}

/* ---- queue summary -------------------------------------------------------------- */

/* One table as a JSON array of objects: label key, then the columns' keys. */
static int summary_table(struct shard_http_conn *c, struct pt_json *j, unsigned table,
			 const char *label_key, const char *const *cols, unsigned n_cols)
{
	size_t n;
	struct pt_metrics_trow *rows = pt_metrics_table_rows(c->shard->group->metrics, table, &n);

	if (!rows)
		return PT_NOMEM;
	pt_json_arr_begin(j);
	for (size_t i = 0; i < n; i++) {
		pt_json_obj_begin(j);
		pt_json_key_str(j, label_key, rows[i].label);
		for (unsigned k = 0; k < n_cols; k++)
			pt_json_key_int(j, cols[k], (int64_t)rows[i].v[k]);
		pt_json_obj_end(j);
	}
	pt_json_arr_end(j);
	free(rows);
	return PT_OK;
}

void shard_admin_queue_summary_v1(struct shard_http_conn *c, const struct http_request *r)
{
	static const char *const sched_cols[] = {"count"};
	static const char *const ready_cols[] = {"count", "connections"};
	struct pt_buf b = PT_BUF_INIT;
	struct pt_json j;
	int rc;

	(void)r;
	pt_json_init(&j, &b);
	pt_json_obj_begin(&j);
	pt_json_key(&j, "scheduled");
	rc = summary_table(c, &j, SHARD_T_SCHEDULED, "queue", sched_cols, 1);
	pt_json_key(&j, "ready");
	if (rc == PT_OK)
		rc = summary_table(c, &j, SHARD_T_READY, "path", ready_cols, 2);
	pt_json_obj_end(&j);
	if (rc != PT_OK)
		shard_http_respond_error(c, 500, "out of memory reading the queue tables");
	else
		shard_http_respond(c, 200, "application/json", b.data, b.len);
	pt_buf_free(&b);
}
