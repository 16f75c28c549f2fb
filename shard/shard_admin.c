/*
 * shard_admin.c -- the admin API (KumoMTA's paths): suspensions,
 * bounces and rebinds of scheduled queues, suspensions of ready queues,
 * and the queue summary.  (Inspect, log filter and reload are in
 * shard_admin_ops.c.)
 *
 *   POST   /api/admin/suspend/v1  {domain, campaign?, tenant?, reason, duration?} -> {id}
 *   GET    /api/admin/suspend/v1  -> [{id, domain, campaign, tenant, reason, duration}]
 *   DELETE /api/admin/suspend/v1  {id}   (KumoMTA's resume)
 *   POST   /api/admin/bounce/v1   {domain?, campaign?, tenant?, routing_domain?,
 *                                  queue_names?, reason, duration?} -> {id}
 *   GET    /api/admin/bounce/v1   -> the bounces still in force (duration > 0)
 *   POST   /api/admin/suspend-ready-q/v1 {name: "source->site", reason, duration?} -> {id}
 *   GET    /api/admin/suspend-ready-q/v1 -> [{id, name, reason, duration}]
 *   DELETE /api/admin/suspend-ready-q/v1 {id}
 *   POST   /api/admin/rebind/v1   {domain?, campaign?, tenant?, routing_domain?, reason,
 *                                  data: {queue|campaign|tenant|routing_domain: value},
 *                                  always_flush?, suppress_logging?} -> {}
 *   GET    /api/admin/queue-summary/v1 -> {scheduled: [...], ready: [...]}
 *
 * All are trusted-hosts only (KumoMTA's TrustedIpRequired).
 *
 * An admin entry (struct shard_admin_entry) is a rule over units:
 * SUSPEND holds the units of matching scheduled queues, BOUNCE bounces
 * them, REBIND moves them to another queue.  It matches a unit when its
 * domain (case-insensitive), campaign, tenant and routing_domain equal
 * those the entry names (an unnamed one matches all), or, for a bounce
 * with queue_names, when its queue is one of them.  SUSPEND_READY names a
 * ready queue instead: shard_ready_suspended() asks shard_admin_ready_held()
 * before a transaction starts on it (the queue's owner shard is the only
 * one that has it, but every shard keeps the entry: it is cheaper than
 * finding the owner, and a site can move to another owner meanwhile).
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
 * A rebind sweeps like a bounce and is not kept: each matching SCHEDULED
 * unit gets `data` applied to its routing meta, its queue named again,
 * and is rescheduled (due now when its queue changed or always_flush),
 * with an AdminRebind record when it moved.  The change lives in the unit
 * only: the spooled message keeps the meta it was received with, so after
 * a restart it routes as before the rebind (KumoMTA saves the meta).
 *
 * Entries are in memory only: a restart forgets them (as KumoMTA's).
 *
 * The queue summary reads the per-queue tables the shards publish once a
 * second for /metrics (shard_metrics.c): scheduled_count per scheduled
 * queue, ready_count and connection_count per ready queue, summed over
 * shards; like kcli queue-summary (which reads the same metrics).
 */
#include <jansson.h>
#include <stddef.h>
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
#define SHARD_ADMIN_MAX_QUEUES	  64 /* bounce queue_names */

static const char *admin_kind_name(enum shard_admin_kind kind);

/* ---- entries ------------------------------------------------------------------ */

/* Where an entry's strings are: entry_clear and entry_copy walk them all. */
static const size_t entry_string_offsets[] = {
    offsetof(struct shard_admin_entry, domain),
    offsetof(struct shard_admin_entry, campaign),
    offsetof(struct shard_admin_entry, tenant),
    offsetof(struct shard_admin_entry, routing_domain),
    offsetof(struct shard_admin_entry, name),
    offsetof(struct shard_admin_entry, reason),
    offsetof(struct shard_admin_entry, set_queue),
    offsetof(struct shard_admin_entry, set_campaign),
    offsetof(struct shard_admin_entry, set_tenant),
    offsetof(struct shard_admin_entry, set_routing_domain),
};

static char **entry_string(struct shard_admin_entry *e, size_t i)
{
	return (char **)((char *)e + entry_string_offsets[i]);
}

static void entry_clear(struct shard_admin_entry *e)
{
	for (size_t i = 0; i < PT_ARRAY_LEN(entry_string_offsets); i++)
		free(*entry_string(e, i));
	for (size_t i = 0; i < e->n_queues; i++)
		free(e->queues[i]);
	free(e->queues);
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
	for (size_t i = 0; i < PT_ARRAY_LEN(entry_string_offsets); i++)
		*entry_string(to, i) = dup_or_null(*entry_string(to, i));
	if (from->n_queues && !(to->queues = calloc(from->n_queues, sizeof(char *))))
		pt_panic("out of memory copying an admin entry");
	for (size_t i = 0; i < from->n_queues; i++)
		to->queues[i] = dup_or_null(from->queues[i]);
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
			if (s->admin[i].kind != SHARD_ADMIN_BOUNCE && s->id == 0)
				pt_info("admin: %s %s of %s is over",
					admin_kind_name(s->admin[i].kind), s->admin[i].id,
					s->admin[i].name     ? s->admin[i].name
					: s->admin[i].domain ? s->admin[i].domain
							     : "*");
			entry_clear(&s->admin[i]);
			continue;
		}
		s->admin[w++] = s->admin[i];
	}
	s->n_admin = w;
}

static bool field_matches(const char *want, const char *have)
{
	return !want || (have && strcmp(want, have) == 0);
}

/* Does e (SUSPEND, BOUNCE, REBIND) name u's scheduled queue?  Exact queue
 * names, when given, win over domain, campaign, tenant and routing_domain. */
static bool entry_matches(const struct shard_admin_entry *e, const struct shard_unit *u)
{
	if (e->n_queues) {
		for (size_t i = 0; i < e->n_queues; i++)
			if (strcmp(e->queues[i], u->queue) == 0)
				return true;
		return false;
	}
	if (e->domain && strcasecmp(e->domain, u->domain) != 0)
		return false;
	return field_matches(e->campaign, u->campaign) && field_matches(e->tenant, u->tenant) &&
	       field_matches(e->routing_domain, u->routing_domain);
}

/* A rebind's `data` value for a meta field: NULL leaves it, "" unsets it. */
static void rebind_set(char **field, const char *value)
{
	if (!value)
		return;
	free(*field);
	*field = value[0] ? dup_or_null(value) : NULL;
}

static char *dup_part(const char *p, size_t n)
{
	char *d;

	if (n == 0)
		return NULL;
	if (!(d = strndup(p, n)))
		pt_panic("out of memory rebinding a unit");
	return d;
}

/*
 * Meta `queue` names where u goes, as KumoMTA's QueueNameComponents read
 * it: "campaign:tenant@domain!routing_domain" (tenant@, campaign: and
 * !routing_domain optional).  u takes its campaign and tenant, and its
 * domain -- or routing_domain -- becomes the one whose MX is used (u's
 * recipient domain stays what it is).
 */
static void rebind_queue_parts(struct shard_unit *u, const char *queue)
{
	const char *at = strchr(queue, '@'), *dom = at ? at + 1 : queue;
	const char *colon = at ? memchr(queue, ':', (size_t)(at - queue)) : NULL;
	const char *bang = strchr(dom, '!');
	size_t dom_len = bang ? (size_t)(bang - dom) : strlen(dom);

	free(u->campaign);
	free(u->tenant);
	free(u->routing_domain);
	u->campaign = colon ? dup_part(queue, (size_t)(colon - queue)) : NULL;
	u->tenant = !at	    ? NULL
		    : colon ? dup_part(colon + 1, (size_t)(at - colon - 1))
			    : dup_part(queue, (size_t)(at - queue));
	if (bang)
		u->routing_domain = dup_part(bang + 1, strlen(bang + 1));
	else if (dom_len == strlen(u->domain) && strncasecmp(dom, u->domain, dom_len) == 0)
		u->routing_domain = NULL;
	else
		u->routing_domain = dup_part(dom, dom_len);
}

/*
 * Rebind u (SCHEDULED) as e says: apply e's meta to it, name its queue
 * again as KumoMTA does (meta `queue` if set, and then route by its
 * parts; else campaign:tenant@domain!routing_domain), requeue it (due
 * now when the queue changed or always_flush) and log AdminRebind when
 * it moved.
 */
static void admin_rebind_unit(struct shard *s, struct shard_unit *u,
			      const struct shard_admin_entry *e)
{
	struct pt_buf b = PT_BUF_INIT;
	struct smtp_client_reply r;
	struct shard_log_outcome o = {.type = "AdminRebind", .reply = &r};
	char *queue, *old;
	bool had_queue_meta, moved;

	/* u->queue differs from the composed name only when meta `queue` set it. */
	shard_unit_queue_name(u, &b);
	had_queue_meta = strcmp(pt_buf_cstr(&b), u->queue) != 0;
	rebind_set(&u->campaign, e->set_campaign);
	rebind_set(&u->tenant, e->set_tenant);
	rebind_set(&u->routing_domain, e->set_routing_domain);
	pt_buf_reset(&b);
	shard_unit_queue_name(u, &b);
	if (e->set_queue && e->set_queue[0]) {
		rebind_queue_parts(u, e->set_queue);
		queue = dup_or_null(e->set_queue);
	} else if (had_queue_meta && !e->set_queue)
		queue = dup_or_null(u->queue);
	else
		queue = dup_or_null(pt_buf_cstr(&b));
	pt_buf_free(&b);
	moved = strcmp(queue, u->queue) != 0;
	old = dup_or_null(u->queue);
	shard_unit_requeue(s, u, queue, moved || e->always_flush);
	if (moved && !e->suppress_logging) {
		/* KumoMTA's record: 250, no enhanced code, "Rebound from OLD to NEW: reason". */
		smtp_client_local_reply(&r, 250, 0, 0, NULL, "Rebound from %s to %s: %s", old,
					u->queue, e->reason);
		r.enh_class = -1;
		shard_log_delivery(s, u, &o);
	}
	free(old);
}

/* A BOUNCE or REBIND entry acts at once on every matching SCHEDULED unit here. */
static void admin_sweep(struct shard *s, const struct shard_admin_entry *e)
{
	size_t n = 0;

	for (struct shard_unit *u = s->units, *next; u; u = next) {
		next = u->all_next;
		if (u->state != UNIT_SCHEDULED || !entry_matches(e, u))
			continue;
		if (e->kind == SHARD_ADMIN_BOUNCE)
			shard_unit_admin_bounce(s, u, e->reason);
		else
			admin_rebind_unit(s, u, e);
		n++;
	}
	if (n)
		pt_info("admin: %s %s: %zu recipients on shard %u",
			e->kind == SHARD_ADMIN_BOUNCE ? "bounce" : "rebind", e->id, n, s->id);
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
	if (e->kind == SHARD_ADMIN_BOUNCE || e->kind == SHARD_ADMIN_REBIND)
		admin_sweep(s, e);
	if (e->kind == SHARD_ADMIN_REBIND || e->until_us <= pt_wall_us())
		return; /* a rebind, or a bounce without duration: the sweep was all */
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

/* Drop the entries whose time is over: false when none is left (*now_us set). */
static bool admin_in_force(struct shard *s, uint64_t *now_us)
{
	if (s->n_admin == 0)
		return false; /* the common case: one branch */
	*now_us = pt_wall_us();
	admin_expire(s, *now_us);
	return s->n_admin > 0;
}

bool shard_admin_hold(struct shard *s, struct shard_unit *u)
{
	uint64_t now_us;

	if (!admin_in_force(s, &now_us))
		return false;
	for (size_t i = 0; i < s->n_admin; i++) {
		const struct shard_admin_entry *e = &s->admin[i];

		if ((e->kind != SHARD_ADMIN_SUSPEND && e->kind != SHARD_ADMIN_BOUNCE) ||
		    !entry_matches(e, u))
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

bool shard_admin_ready_held(struct shard *s, const struct shard_ready *rq, uint64_t *until_ms)
{
	uint64_t now_us;

	if (!admin_in_force(s, &now_us))
		return false;
	for (size_t i = 0; i < s->n_admin; i++) {
		const struct shard_admin_entry *e = &s->admin[i];

		if (e->kind != SHARD_ADMIN_SUSPEND_READY || strcmp(e->name, rq->key) != 0)
			continue;
		/* Look again at the end, or within the recheck period (a resume). */
		*until_ms = pt_monotonic_ms() +
			    PT_MIN((e->until_us - now_us) / 1000 + 1, SHARD_ADMIN_RECHECK_MS);
		return true;
	}
	return false;
}

/* ---- requests ------------------------------------------------------------------ */

json_t *shard_admin_body(struct shard_http_conn *c, const struct http_request *r)
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

/* Boolean field key of o: absent or null -> false. */
static bool admin_bool(struct shard_http_conn *c, json_t *o, const char *key, bool *out)
{
	json_t *v = json_object_get(o, key);

	*out = false;
	if (!v || json_is_null(v))
		return true;
	if (!json_is_boolean(v)) {
		shard_http_respond_error(c, 400, "\"%s\": expected true or false", key);
		return false;
	}
	*out = json_is_true(v);
	return true;
}

/* "queue_names": exact scheduled queue names into queues[] (strings borrowed from o). */
static bool admin_queue_names(struct shard_http_conn *c, json_t *o, struct shard_admin_entry *e,
			      char **queues)
{
	json_t *v = json_object_get(o, "queue_names"), *q;
	size_t i;

	if (!v || json_is_null(v))
		return true;
	if (!json_is_array(v) || json_array_size(v) > SHARD_ADMIN_MAX_QUEUES) {
		shard_http_respond_error(c, 400,
					 "\"queue_names\": expected an array of at most %d "
					 "queue names",
					 SHARD_ADMIN_MAX_QUEUES);
		return false;
	}
	json_array_foreach(v, i, q)
	{
		if (!json_is_string(q) || !json_string_length(q) ||
		    json_string_length(q) > SHARD_ADMIN_MAX_FIELD_LEN) {
			shard_http_respond_error(c, 400,
						 "\"queue_names\"[%zu]: expected a non-empty "
						 "string of at most %d bytes",
						 i, SHARD_ADMIN_MAX_FIELD_LEN);
			return false;
		}
		queues[i] = (char *)json_string_value(q);
	}
	e->queues = queues;
	e->n_queues = json_array_size(v);
	return true;
}

/* A rebind's "data": string values for the meta Petrel routes by. */
static bool admin_rebind_data(struct shard_http_conn *c, json_t *o, struct shard_admin_entry *e)
{
	static const char *const keys[] = {"queue", "campaign", "tenant", "routing_domain"};
	char **fields[] = {&e->set_queue, &e->set_campaign, &e->set_tenant, &e->set_routing_domain};
	json_t *data = json_object_get(o, "data"), *v;
	const char *key;
	bool trigger;
	size_t i;

	if (!admin_bool(c, o, "trigger_rebind_event", &trigger))
		return false;
	if (trigger) {
		shard_http_respond_error(c, 400,
					 "\"trigger_rebind_event\": Petrel has no rebind "
					 "event; \"data\" is applied to the meta");
		return false;
	}
	if (!json_is_object(data)) {
		shard_http_respond_error(c, 400,
					 "\"data\" is required: an object of meta keys "
					 "and string values");
		return false;
	}
	json_object_foreach(data, key, v)
	{
		for (i = 0; i < PT_ARRAY_LEN(keys) && strcmp(key, keys[i]) != 0; i++)
			;
		if (i == PT_ARRAY_LEN(keys)) {
			shard_http_respond_error(c, 400,
						 "\"data\": key \"%s\" does not route; Petrel "
						 "rebinds by queue, campaign, tenant and "
						 "routing_domain",
						 key);
			return false;
		}
		if (!json_is_string(v) || json_string_length(v) > SHARD_ADMIN_MAX_FIELD_LEN) {
			shard_http_respond_error(c, 400,
						 "\"data\".\"%s\": expected a string of at "
						 "most %d bytes",
						 key, SHARD_ADMIN_MAX_FIELD_LEN);
			return false;
		}
		*fields[i] = (char *)json_string_value(v);
	}
	return admin_bool(c, o, "always_flush", &e->always_flush) &&
	       admin_bool(c, o, "suppress_logging", &e->suppress_logging);
}

/* What each kind requires beyond the common fields; false when answered. */
static bool admin_check_entry(struct shard_http_conn *c, const struct shard_admin_entry *e,
			      uint64_t dur_ms)
{
	const char *missing = NULL;

	if (!e->reason)
		missing = "\"reason\" is required (it goes into the logs)";
	else if (e->kind == SHARD_ADMIN_SUSPEND && !e->domain)
		missing = "\"domain\" is required to suspend";
	else if (e->kind == SHARD_ADMIN_SUSPEND_READY && !e->name)
		missing = "\"name\" is required: the ready queue, \"source->site\" (see "
			  "queue-summary)";
	else if (e->kind == SHARD_ADMIN_BOUNCE && !e->domain && !e->campaign && !e->tenant &&
		 !e->routing_domain && !e->n_queues)
		missing = "name at least one of \"domain\", \"campaign\", \"tenant\", "
			  "\"routing_domain\", \"queue_names\" (bouncing everything is not "
			  "offered)";
	else if ((e->kind == SHARD_ADMIN_SUSPEND || e->kind == SHARD_ADMIN_SUSPEND_READY) &&
		 dur_ms == 0)
		missing = "\"duration\" must be longer than zero";
	if (missing)
		shard_http_respond_error(c, 400, "%s", missing);
	return missing == NULL;
}

/* The entry a POST describes, its strings borrowed from o (and queues[]);
 * false when answered (400). */
static bool admin_parse_entry(struct shard_http_conn *c, json_t *o, enum shard_admin_kind kind,
			      struct shard_admin_entry *e, char **queues)
{
	static const char *const keys[] = {"domain",	     "campaign", "tenant",
					   "routing_domain", "name",	 "reason"};
	char **fields[] = {&e->domain,	       &e->campaign, &e->tenant,
			   &e->routing_domain, &e->name,     &e->reason};
	uint64_t dur_ms = 0;
	bool lasting = kind == SHARD_ADMIN_SUSPEND || kind == SHARD_ADMIN_SUSPEND_READY;

	memset(e, 0, sizeof(*e));
	e->kind = kind;
	for (size_t i = 0; i < PT_ARRAY_LEN(keys); i++)
		if (!admin_field(c, o, keys[i], (const char **)fields[i]))
			return false;
	if (kind != SHARD_ADMIN_REBIND &&
	    !admin_duration(c, o, lasting ? SHARD_ADMIN_DEFAULT_MS : 0, &dur_ms))
		return false;
	if (kind == SHARD_ADMIN_BOUNCE && !admin_queue_names(c, o, e, queues))
		return false;
	if (kind == SHARD_ADMIN_REBIND && !admin_rebind_data(c, o, e))
		return false;
	if (!admin_check_entry(c, e, dur_ms))
		return false;
	/* KumoMTA names a ready queue "source->site@smtp_client"; Petrel's has no suffix. */
	if (e->name && strlen(e->name) > 12 &&
	    strcmp(e->name + strlen(e->name) - 12, "@smtp_client") == 0)
		e->name[strlen(e->name) - 12] = '\0';
	pt_id_next(&c->shard->idgen, e->id);
	e->created_us = pt_wall_us();
	e->until_us = dur_ms ? e->created_us + dur_ms * 1000 : 0;
	return true;
}

/* KumoMTA's answers: {id}; a bounce's also has the (deprecated, never
 * filled in KumoMTA either) bounced and total_bounced kcli expects; a
 * rebind's is {}. */
static void admin_respond_id(struct shard_http_conn *c, enum shard_admin_kind kind, const char *id)
{
	struct pt_buf b = PT_BUF_INIT;
	struct pt_json j;

	pt_json_init(&j, &b);
	pt_json_obj_begin(&j);
	if (kind != SHARD_ADMIN_REBIND)
		pt_json_key_str(&j, "id", id);
	if (kind == SHARD_ADMIN_BOUNCE) {
		pt_json_key_raw(&j, "bounced", "{}", 2);
		pt_json_key_int(&j, "total_bounced", 0);
	}
	pt_json_obj_end(&j);
	shard_http_respond(c, 200, "application/json", b.data, b.len);
	pt_buf_free(&b);
}

static const char *admin_kind_name(enum shard_admin_kind kind)
{
	switch (kind) {
	case SHARD_ADMIN_SUSPEND:
		return "suspension";
	case SHARD_ADMIN_SUSPEND_READY:
		return "ready queue suspension";
	case SHARD_ADMIN_BOUNCE:
		return "bounce";
	case SHARD_ADMIN_REBIND:
		return "rebind";
	default:
		return "resume";
	}
}

static void admin_post(struct shard_http_conn *c, const struct http_request *r,
		       enum shard_admin_kind kind)
{
	struct shard_admin_entry e;
	char *queues[SHARD_ADMIN_MAX_QUEUES];
	json_t *o = shard_admin_body(c, r);

	if (!o)
		return;
	admin_expire(c->shard, pt_wall_us());
	if (c->shard->n_admin >= SHARD_ADMIN_MAX_ENTRIES) {
		json_decref(o);
		shard_http_respond_error(c, 503, "too many suspensions and bounces in force (%d)",
					 SHARD_ADMIN_MAX_ENTRIES);
		return;
	}
	if (!admin_parse_entry(c, o, kind, &e, queues)) {
		json_decref(o);
		return;
	}
	pt_warn("admin: %s %s of %s%s domain=%s campaign=%s tenant=%s routing_domain=%s "
		"for %llu s by %s: %s",
		admin_kind_name(kind), e.id, e.name ? e.name : "",
		e.n_queues ? " (queue_names)" : "", e.domain ? e.domain : "*",
		e.campaign ? e.campaign : "*", e.tenant ? e.tenant : "*",
		e.routing_domain ? e.routing_domain : "*",
		(unsigned long long)(e.until_us ? (e.until_us - e.created_us) / 1000000 : 0),
		c->auth, e.reason);
	admin_broadcast(c->shard, &e); /* copies e's strings, which o owns */
	json_decref(o);
	admin_respond_id(c, kind, e.id);
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
		char created[32], expires[32];

		if (e->kind != kind)
			continue;
		pt_json_obj_begin(&j);
		pt_json_key_str(&j, "id", e->id);
		if (kind == SHARD_ADMIN_SUSPEND_READY) {
			pt_json_key_str(&j, "name", e->name);
		} else {
			pt_json_key_str(&j, "domain", e->domain);
			pt_json_key_str(&j, "campaign", e->campaign);
			pt_json_key_str(&j, "tenant", e->tenant);
		}
		pt_json_key_str(&j, "reason", e->reason);
		pt_json_key_str(&j, "created", pt_time_rfc3339(e->created_us, created));
		pt_json_key_str(&j, "expires", pt_time_rfc3339(e->until_us, expires));
		/* KumoMTA lists the time left, in seconds. */
		pt_json_key_int(&j, "duration", (int64_t)((e->until_us - now_us) / 1000000));
		pt_json_obj_end(&j);
	}
	pt_json_arr_end(&j);
	shard_http_respond(c, 200, "application/json", b.data, b.len);
	pt_buf_free(&b);
}

/* DELETE {id}: end the suspension of `kind` with that id, on every shard. */
static void admin_resume(struct shard_http_conn *c, const struct http_request *r,
			 enum shard_admin_kind kind)
{
	struct shard *s = c->shard;
	struct shard_admin_entry e = {.kind = SHARD_ADMIN_RESUME};
	json_t *o = shard_admin_body(c, r);
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
		if (s->admin[i].kind == kind && strcmp(s->admin[i].id, id) == 0)
			break;
	if (i == s->n_admin) {
		shard_http_respond_error(c, 404, "no %s with id %s in force", admin_kind_name(kind),
					 id);
		json_decref(o);
		return;
	}
	snprintf(e.id, sizeof(e.id), "%s", id);
	json_decref(o);
	pt_warn("admin: %s %s resumed by %s", admin_kind_name(kind), e.id, c->auth);
	admin_broadcast(s, &e);
	shard_http_respond(c, 200, "application/json", "{}", 2);
}

/* POST adds an entry of kind, DELETE resumes one, GET lists them. */
static void admin_entries(struct shard_http_conn *c, const struct http_request *r,
			  enum shard_admin_kind kind)
{
	if (strcmp(r->method, "POST") == 0)
		admin_post(c, r, kind);
	else if (strcmp(r->method, "DELETE") == 0)
		admin_resume(c, r, kind);
	else
		admin_list(c, kind);
}

void shard_admin_suspend_v1(struct shard_http_conn *c, const struct http_request *r)
{
	admin_entries(c, r, SHARD_ADMIN_SUSPEND);
}

void shard_admin_suspend_ready_q_v1(struct shard_http_conn *c, const struct http_request *r)
{
	admin_entries(c, r, SHARD_ADMIN_SUSPEND_READY);
}

void shard_admin_rebind_v1(struct shard_http_conn *c, const struct http_request *r)
{
	admin_post(c, r, SHARD_ADMIN_REBIND);
}

void shard_admin_bounce_v1(struct shard_http_conn *c, const struct http_request *r)
{
	admin_entries(c, r, SHARD_ADMIN_BOUNCE); /* no DELETE route: the sweep is done */
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
