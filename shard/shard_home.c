/*
 * shard_home.c -- the home side of a message: the shard whose spool holds
 * it.  (The other side, shard_route.c and shard_out.c, is wherever its
 * recipients are delivered from.)
 *
 * When a message becomes durable (its batch's fdatasync returned), the home
 * shard gives it a slot in its table (struct home_msg: id, where the record
 * lies, how many recipients are left) and makes one delivery unit per
 * recipient, which routing sends to the shard that owns the recipient's
 * site.  The home shard then hears back about every recipient (an OUTCOME,
 * over the ring or by a direct call when it is its own owner):
 *
 *   deferred      -> RCPT_STATE record (attempts, next due time), so a
 *                    restart brings the unit back with its schedule;
 *   done          -> RCPT_STATE record marked done, or, for the last
 *                    recipient, a TOMBSTONE for the message;
 *   tombstone durable -> spool_unref() of the record's segment, slot freed.
 *
 * Bodies are not kept in memory: when a connection is ready to send a
 * unit, the home shard reads the record back from its segment with one
 * ring READ (the page cache usually has it), checks its CRC, decodes it and
 * hands the decoded message to the connection (over the ring when the
 * connection is on another shard; the receiver frees it).
 *
 * The records the home shard appends for outcomes ride the ordinary group
 * commit; nobody waits for them except the tombstone, whose durability
 * releases the segment.  If a tombstone's batch fails it is appended again.
 * A lost RCPT_STATE or tombstone (a crash before its batch synced) means a
 * recipient is tried again after restart: at-least-once, never lost.
 *
 * Tokens given to the spool for these records are tagged integers, not
 * pointers (shard_commit.c tells them apart by the low bit):
 *   (slot << 2) | 1   the tombstone of slot
 *   (slot << 2) | 3   the compaction copy of slot
 *   NULL              a RCPT_STATE (no callback needed)
 *
 * Compaction: once a second, when the oldest segment is not the current
 * one, is older than SHARD_COMPACT_AGE_MS and holds few live messages,
 * those messages are copied forward (the record bytes and then their
 * recipients' states), after which the old segment has nothing live and
 * spool_collect() deletes it: one long-deferred message never pins a
 * segment, and with it every younger one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ptime.h"
#include "shard/shard_int.h"

#define HOME_NONE UINT32_MAX
#define HOME_COMPACT UINT32_MAX /* body read requester: compaction, not a connection */
#define SHARD_COMPACT_AGE_MS 30000
#define SHARD_COLLECT_ROTATE_MIN (256u << 10)
#define SHARD_COMPACT_MAX_LIVE 64

static int home_grow(struct shard *s)
{
	uint32_t cap = s->cap_home ? s->cap_home * 2 : 1024;
	struct home_msg *h = realloc(s->home, (size_t)cap * sizeof(*h));

	if (!h)
		return PT_NOMEM;
	memset(h + s->cap_home, 0, (size_t)(cap - s->cap_home) * sizeof(*h));
	for (uint32_t i = cap; i-- > s->cap_home;) {
		h[i].next_free = s->home_free;
		s->home_free = i;
	}
	s->home = h;
	s->cap_home = cap;
	return PT_OK;
}

int shard_home_init(struct shard *s)
{
	s->home_free = HOME_NONE;
	return home_grow(s);
}

void shard_home_free(struct shard *s)
{
	for (uint32_t i = 0; i < s->cap_home; i++) {
		free(s->home[i].states);
		if (s->home[i].copy) {
			pt_message_clear(s->home[i].copy);
			free(s->home[i].copy);
		}
	}
	free(s->home);
	s->home = NULL;
	s->cap_home = 0;
}

static uint32_t home_alloc(struct shard *s)
{
	uint32_t slot;

	if (s->home_free == HOME_NONE && home_grow(s) != PT_OK)
		return HOME_NONE;
	slot = s->home_free;
	s->home_free = s->home[slot].next_free;
	memset(&s->home[slot], 0, sizeof(s->home[slot]));
	s->home[slot].in_use = true;
	s->n_home_live++;
	return slot;
}

static void home_release(struct shard *s, uint32_t slot)
{
	free(s->home[slot].states);
	s->home[slot].states = NULL;
	s->home[slot].in_use = false;
	s->home[slot].next_free = s->home_free;
	s->home_free = slot;
	s->n_home_live--;
}

/* A meta value as a plain string, or NULL (not set, or not a string). */
static char *home_meta_dup(const struct pt_message *m, const char *key)
{
	const char *json = pt_message_get_meta(m, key);
	char buf[1024];

	if (!json || policy_meta_string(json, buf, sizeof(buf)) != PT_OK || !buf[0])
		return NULL;
	return strdup(buf);
}

/* A unit for recipient rcpt of m (home: this shard, slot); it takes a
 * reference to headers (m's captured log headers, NULL: none). */
static struct shard_unit *home_unit_new(struct shard *s, const struct pt_message *m, uint32_t slot,
					uint32_t rcpt, struct shard_log_headers *headers)
{
	struct shard_unit *u = calloc(1, sizeof(*u));
	struct pt_buf q = PT_BUF_INIT;
	char *at;

	if (!u)
		return NULL;
	shard_unit_own(s, u);
	u->home = s->id;
	u->slot = slot;
	u->rcpt = rcpt;
	memcpy(u->id, m->id, sizeof(u->id));
	u->created_us = m->created_us;
	u->size = pt_message_size(m);
	u->sender = strdup(m->sender);
	u->recipient = strdup(m->rcpts[rcpt]);
	u->tenant = home_meta_dup(m, "tenant");
	u->campaign = home_meta_dup(m, "campaign");
	u->routing_domain = home_meta_dup(m, "routing_domain");
	u->log_record = shard_loghook_is_hook_message(m);
	u->log_headers = shard_log_headers_get(headers);
	if (!u->sender || !u->recipient)
		goto fail;
	/* Domains are case-insensitive: one spelling per queue, site and DNS name. */
	at = strrchr(u->recipient, '@');
	u->domain = at ? at + 1 : u->recipient + strlen(u->recipient);
	for (char *p = (char *)u->domain; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	shard_queue_name(m, u->domain, &q);
	u->queue = strdup(pt_buf_cstr(&q));
	pt_buf_free(&q);
	if (!u->queue)
		goto fail;
	return u;
fail:
	shard_unit_free(s, u);
	return NULL;
}

void shard_home_accepted(struct shard *s, const struct pt_message *m, const struct spool_loc *loc)
{
	uint32_t slot = home_alloc(s);
	struct shard_log_headers *headers;
	struct home_msg *h;

	if (slot == HOME_NONE) {
		pt_error("message %s: out of memory for its delivery state; it is delivered "
			 "after the next restart",
			 m->id);
		return;
	}
	h = &s->home[slot];
	memcpy(h->id, m->id, sizeof(h->id));
	h->loc = *loc;
	h->n_rcpts = (uint32_t)m->n_rcpts;
	h->n_left = (uint32_t)m->n_rcpts;
	headers = shard_log_capture(s, m);
	for (uint32_t i = 0; i < m->n_rcpts; i++) {
		struct shard_unit *u = home_unit_new(s, m, slot, i, headers);

		if (!u) {
			pt_error("message %s: out of memory for recipient %u; it is delivered "
				 "after the next restart",
				 m->id, i);
			continue;
		}
		u->due_us = pt_wall_us();
		shard_unit_route(s, u);
	}
	shard_log_headers_put(headers);
}

static void home_append_tombstone(struct shard *s, uint32_t slot)
{
	struct home_msg *h = &s->home[slot];

	h->tombstoned = true;
	if (spool_append_tombstone(s->spool, h->id, (void *)(((uintptr_t)slot << 2) | 1)) != PT_OK)
		pt_error("message %s: cannot queue its tombstone (out of memory); it may be "
			 "delivered again after a restart",
			 h->id);
}

void shard_home_outcome(struct shard *s, uint32_t slot, uint32_t rcpt, bool done,
			uint32_t num_attempts, uint64_t due_us)
{
	struct home_msg *h;
	struct spool_rcpt_state st = { rcpt, done, num_attempts, due_us };

	if (slot >= s->cap_home || !s->home[slot].in_use)
		pt_panic("outcome for free home slot %u", slot);
	h = &s->home[slot];
	if (done && --h->n_left == 0) {
		home_append_tombstone(s, slot);
		return;
	}
	if (!h->states && (h->states = calloc(h->n_rcpts, sizeof(*h->states))))
		for (uint32_t i = 0; i < h->n_rcpts; i++)
			h->states[i].rcpt = i;
	if (h->states && rcpt < h->n_rcpts)
		h->states[rcpt] = st;
	if (spool_append_rcpt_state(s->spool, h->id, &st, NULL) != PT_OK)
		pt_warn("message %s: cannot queue recipient %u's state (out of memory)", h->id,
			rcpt);
}

void shard_home_spool_done(struct shard *s, uintptr_t token, int status,
			   const struct spool_loc *loc)
{
	uint32_t slot = (uint32_t)(token >> 2);
	struct home_msg *h = &s->home[slot];

	if ((token & 3) == 1) {
		if (status != PT_OK) {
			home_append_tombstone(s, slot); /* the segment was sealed; try the next */
			return;
		}
		spool_unref(s->spool, h->loc.segment);
		home_release(s, slot);
		return;
	}
	/* A compaction copy. */
	h->moving = false;
	if (h->copy) {
		pt_message_clear(h->copy);
		free(h->copy);
		h->copy = NULL;
	}
	if (status != PT_OK || !loc)
		return;
	if (!h->in_use || h->tombstoned) {
		/* Done meanwhile: the copy is dead too. */
		spool_unref(s->spool, loc->segment);
		return;
	}
	spool_unref(s->spool, h->loc.segment);
	h->loc = *loc;
}

/* ---- Compaction ---- */

/* The record was read back: append it again, then its recipients' states. */
static void home_compact_copy(struct shard *s, uint32_t slot, struct pt_message *m)
{
	struct home_msg *h = &s->home[slot];

	if (!m || h->tombstoned) {
		h->moving = false;
		if (m) {
			pt_message_clear(m);
			free(m);
		}
		return;
	}
	h->copy = m;
	if (spool_append_message(s->spool, m, (void *)(((uintptr_t)slot << 2) | 3)) != PT_OK) {
		pt_message_clear(m);
		free(m);
		h->copy = NULL;
		h->moving = false;
		return;
	}
	for (uint32_t i = 0; h->states && i < h->n_rcpts; i++)
		if (h->states[i].done || h->states[i].num_attempts)
			spool_append_rcpt_state(s->spool, h->id, &h->states[i], NULL);
}

static void home_read(struct shard *s, unsigned requester, uint32_t slot, void *token);

/*
 * When the oldest segment has stayed the oldest for SHARD_COMPACT_AGE_MS,
 * is not the current one and holds only a few live messages, copy them
 * forward so spool_collect() can delete it.
 */
static void home_compact(struct shard *s)
{
	uint64_t n_live, oldest = spool_oldest_segment(s->spool, &n_live);
	uint64_t now = pt_monotonic_ms();

	if (oldest != s->compact_seq) {
		s->compact_seq = oldest;
		s->compact_since_ms = now;
		return;
	}
	if (oldest == spool_current_segment(s->spool) || n_live == 0 ||
	    n_live > SHARD_COMPACT_MAX_LIVE || now - s->compact_since_ms < SHARD_COMPACT_AGE_MS)
		return;
	for (uint32_t i = 0; i < s->cap_home; i++) {
		struct home_msg *h = &s->home[i];

		if (h->in_use && !h->moving && !h->tombstoned && h->loc.segment == oldest) {
			h->moving = true;
			home_read(s, HOME_COMPACT, i, NULL);
		}
	}
	s->compact_since_ms = now; /* not again before the copies had their chance */
}

/* ---- Bodies ---- */

static void home_body_reply(struct shard *s, unsigned requester, void *token,
			    struct pt_message *body)
{
	struct shard_msg *msg;

	if (requester == s->id) {
		shard_out_body(token, body);
		return;
	}
	msg = calloc(1, sizeof(*msg));
	if (!msg)
		pt_panic("out of memory replying with a body");
	msg->kind = SHARD_MSG_BODY;
	msg->from = s->id;
	msg->token = token;
	msg->body = body;
	shard_mailbox_post(s, requester, msg);
}

void shard_home_body_request(struct shard *s, unsigned requester, uint32_t slot, void *token)
{
	home_read(s, requester, slot, token);
}

uint32_t shard_home_find(const struct shard *s, const char *id)
{
	for (uint32_t i = 0; i < s->cap_home; i++)
		if (s->home[i].in_use && strcmp(s->home[i].id, id) == 0)
			return i;
	return UINT32_MAX;
}

/* Read slot's record back with one ring READ (shard_handle_body_read);
 * NULL when it cannot be (logged; the caller answers). */
static struct shard_body_read *home_read_start(struct shard *s, unsigned requester, uint32_t slot,
					       void *token)
{
	struct home_msg *h = &s->home[slot];
	struct shard_body_read *r;
	struct io_uring_sqe *sqe;
	int fd;

	if (slot >= s->cap_home || !h->in_use)
		pt_panic("body request for free home slot %u", slot);
	fd = spool_read_fd(s->spool, h->loc.segment);
	r = calloc(1, sizeof(*r));
	if (r)
		r->buf = malloc(h->loc.length);
	if (fd < 0 || !r || !r->buf) {
		pt_error("message %s: cannot read it back from segment %llu (%s)", h->id,
			 (unsigned long long)h->loc.segment, fd < 0 ? "no such segment" : "out of memory");
		if (r)
			free(r->buf);
		free(r);
		return NULL;
	}
	r->op.kind = SHARD_OP_BODY_READ;
	r->requester = requester;
	r->token = token;
	r->slot = slot;
	r->len = h->loc.length;
	r->mask = spool_segment_mask(s->spool, h->loc.segment);
	memcpy(r->id, h->id, sizeof(r->id));
	sqe = shard_sqe(s);
	io_uring_prep_read(sqe, fd, r->buf, (unsigned)r->len, h->loc.offset);
	shard_prep(sqe, &r->op);
	return r;
}

void shard_home_inspect_read(struct shard *s, unsigned requester, uint32_t slot, void *token,
			     bool want_body)
{
	struct shard_body_read *r = home_read_start(s, requester, slot, token);
	struct shard_body_read failed = {.requester = requester, .token = token, .slot = slot};

	if (!r) {
		shard_admin_inspect_read(s, &failed, NULL);
		return;
	}
	r->inspect = true;
	r->want_body = want_body;
}

static void home_read(struct shard *s, unsigned requester, uint32_t slot, void *token)
{
	struct home_msg *h = &s->home[slot];

	if (home_read_start(s, requester, slot, token))
		return;
	if (requester == HOME_COMPACT)
		h->moving = false;
	else
		home_body_reply(s, requester, token, NULL);
}

/* The record r read, decoded (caller frees), or NULL with *why. */
static struct pt_message *home_decode(const struct shard_body_read *r, int res, const char **why)
{
	struct pt_message *m;

	if (res != (int)r->len) {
		*why = res < 0 ? strerror(-res) : "short read";
		return NULL;
	}
	if (!(m = malloc(sizeof(*m)))) {
		*why = "out of memory";
		return NULL;
	}
	pt_message_init(m);
	if (spool_decode_record(r->buf, r->len, r->mask, r->id, m, why) != PT_OK) {
		pt_message_clear(m);
		free(m);
		return NULL;
	}
	return m;
}

void shard_handle_body_read(struct shard *s, struct shard_body_read *r, struct io_uring_cqe *cqe)
{
	struct home_msg *h = &s->home[r->slot];
	const char *why = NULL;
	struct pt_message *m = home_decode(r, cqe->res, &why);

	free(r->buf);
	if (r->inspect) {
		/* The slot may have been freed and reused meanwhile: r->id decided. */
		shard_admin_inspect_read(s, r, m);
		if (m) {
			pt_message_clear(m);
			free(m);
		}
		free(r);
		return;
	}
	if (!m)
		pt_error("message %s: reading it back from segment %llu offset %llu: %s", h->id,
			 (unsigned long long)h->loc.segment, (unsigned long long)h->loc.offset,
			 why ? why : "corrupt record");
	if (r->requester == HOME_COMPACT)
		home_compact_copy(s, r->slot, m);
	else
		home_body_reply(s, r->requester, r->token, m);
	free(r);
}

/* ---- Recovery ---- */

/* Units for one recovered message: recipients not done, with their schedule. */
static int home_recover_one(struct shard *s, const struct spool_entry *e, struct pt_message *m)
{
	uint32_t slot = home_alloc(s);
	struct shard_log_headers *headers;
	struct home_msg *h;
	size_t k = 0;
	int rc = PT_OK;

	if (slot == HOME_NONE)
		return PT_NOMEM;
	h = &s->home[slot];
	memcpy(h->id, e->id, sizeof(h->id));
	h->loc.segment = e->segment;
	h->loc.offset = e->offset;
	h->loc.length = e->length;
	h->n_rcpts = (uint32_t)m->n_rcpts;
	h->n_left = 0;
	if (e->n_states && (h->states = calloc(h->n_rcpts, sizeof(*h->states)))) {
		for (uint32_t i = 0; i < h->n_rcpts; i++)
			h->states[i].rcpt = i;
		for (size_t j = 0; j < e->n_states; j++)
			if (e->states[j].rcpt < h->n_rcpts)
				h->states[e->states[j].rcpt] = e->states[j];
	}
	headers = shard_log_capture(s, m);
	for (uint32_t i = 0; i < m->n_rcpts; i++) {
		const struct spool_rcpt_state *st = NULL;
		struct shard_unit *u;

		while (k < e->n_states && e->states[k].rcpt < i)
			k++;
		if (k < e->n_states && e->states[k].rcpt == i)
			st = &e->states[k];
		if (st && st->done)
			continue;
		h->n_left++;
		u = home_unit_new(s, m, slot, i, headers);
		if (!u) {
			rc = PT_NOMEM;
			break;
		}
		u->num_attempts = st ? st->num_attempts : 0;
		u->due_us = st ? st->due_us : 0;
		shard_unit_schedule(s, u);
	}
	shard_log_headers_put(headers);
	if (rc != PT_OK)
		return rc;
	if (h->n_left == 0)
		home_append_tombstone(s, slot); /* the crash came between the last state and it */
	return PT_OK;
}

int shard_home_recover(struct shard *s, const struct spool_entry *entries, size_t n)
{
	char *buf = NULL;
	size_t cap = 0;
	uint64_t n_units_before = s->n_units;

	for (size_t i = 0; i < n; i++) {
		const struct spool_entry *e = &entries[i];
		int fd = spool_read_fd(s->spool, e->segment);
		struct pt_message m;
		const char *why = "read failed";
		ssize_t got;

		if (e->length > cap) {
			char *nb = realloc(buf, e->length);

			if (!nb)
				goto nomem;
			buf = nb;
			cap = e->length;
		}
		/* Start-up: a blocking pread is fine here (DESIGN: setup may block). */
		got = fd < 0 ? -1 : pread(fd, buf, e->length, (off_t)e->offset);
		pt_message_init(&m);
		if (got != (ssize_t)e->length ||
		    spool_decode_record(buf, e->length, spool_segment_mask(s->spool, e->segment),
					e->id, &m, &why) != PT_OK) {
			pt_error("message %s (segment %llu offset %llu): cannot read it back: %s; "
				 "left in the spool",
				 e->id, (unsigned long long)e->segment,
				 (unsigned long long)e->offset, why);
			pt_message_clear(&m);
			continue;
		}
		if (home_recover_one(s, e, &m) != PT_OK) {
			pt_message_clear(&m);
			goto nomem;
		}
		pt_message_clear(&m);
	}
	free(buf);
	if (n > 0)
		pt_info("%zu messages with %llu recipients to deliver recovered", n,
			(unsigned long long)(s->n_units - n_units_before));
	return PT_OK;
nomem:
	free(buf);
	pt_error("out of memory recovering the spool");
	return PT_NOMEM;
}

/* ---- Housekeeping: deleting dead segments, compaction ---- */

/*
 * Dead segments are deleted through the ring: unlinking a 64 MiB segment
 * frees its blocks, and that, with the directory fsync, held a shard for
 * 40-80 ms when it was done inline (seen in bench/compare's p99).  One
 * round at a time: each segment is unlinked then its read fd closed (hard
 * links: a failure does not cancel the rest), then the directory is synced
 * once.  Spool order is kept: the segments left the spool's books in
 * prefix order and are unlinked in that order in one chain.
 */
#define SHARD_JANITOR_MAX 8

struct shard_janitor {
	struct spool_dead dead[SHARD_JANITOR_MAX];
	struct shard_op unlink_op[SHARD_JANITOR_MAX];
	bool renamed[SHARD_JANITOR_MAX]; /* a spare's rename succeeded */
	struct shard_op done_op, sync_op;
	bool synced; /* the directory fsync succeeded */
	unsigned n, pending;
};

bool shard_home_janitor_busy(const struct shard *s)
{
	return s->janitor && s->janitor->pending > 0;
}

static void home_janitor_start(struct shard *s)
{
	struct shard_janitor *j = s->janitor;
	struct io_uring_sqe *sqe;
	int dir_fd = spool_dir_fd(s->spool);

	if (!j && !(j = s->janitor = calloc(1, sizeof(*j)))) {
		spool_collect(s->spool, SHARD_COLLECT_ROTATE_MIN); /* inline, then */
		return;
	}
	if (j->pending > 0)
		return;
	j->n = spool_collect_detach(s->spool, SHARD_COLLECT_ROTATE_MIN, j->dead,
				    SHARD_JANITOR_MAX);
	if (j->n == 0)
		return;
	j->done_op.kind = SHARD_OP_SEG_DONE;
	for (unsigned i = 0; i < j->n; i++) {
		if (!j->dead[i].name[0])
			continue; /* a bad segment, renamed */
		j->unlink_op[i].kind = SHARD_OP_SEG_UNLINK;
		j->renamed[i] = false;
		sqe = shard_sqe(s);
		if (j->dead[i].spare[0])
			io_uring_prep_renameat(sqe, dir_fd, j->dead[i].name, dir_fd,
					       j->dead[i].spare, 0);
		else
			io_uring_prep_unlinkat(sqe, dir_fd, j->dead[i].name, 0);
		sqe->flags |= IOSQE_IO_HARDLINK;
		shard_prep(sqe, &j->unlink_op[i]);
		j->pending++;
		if (j->dead[i].read_fd >= 0) {
			sqe = shard_sqe(s);
			io_uring_prep_close(sqe, j->dead[i].read_fd);
			sqe->flags |= IOSQE_IO_HARDLINK;
			shard_prep(sqe, &j->done_op);
			j->pending++;
		}
	}
	j->sync_op.kind = SHARD_OP_SEG_DONE;
	j->synced = false;
	sqe = shard_sqe(s);
	io_uring_prep_fsync(sqe, dir_fd, 0);
	shard_prep(sqe, &j->sync_op);
	j->pending++;
	pt_debug("spool: deleting %u dead segment%s", j->n, j->n == 1 ? "" : "s");
}

void shard_handle_janitor(struct shard *s, struct shard_op *op, struct io_uring_cqe *cqe)
{
	struct shard_janitor *j = s->janitor;

	if (op->kind == SHARD_OP_SEG_UNLINK) {
		unsigned i = (unsigned)((struct shard_op *)op - j->unlink_op);

		j->renamed[i] = j->dead[i].spare[0] && cqe->res == 0;
		if (cqe->res < 0 && j->dead[i].spare[0])
			pt_error("spool %s/%s: cannot keep dead segment as a spare: %s",
				 spool_dir(s->spool), j->dead[i].name, strerror(-cqe->res));
		else if (cqe->res < 0 && cqe->res != -ENOENT)
			pt_error("spool %s/%s: cannot delete dead segment: %s",
				 spool_dir(s->spool), j->dead[i].name, strerror(-cqe->res));
	} else if (cqe->res < 0) {
		pt_warn("spool %s: closing a deleted segment or syncing the directory: %s",
			spool_dir(s->spool), strerror(-cqe->res));
	} else if (op == &j->sync_op) {
		j->synced = true;
	}
	if (--j->pending > 0)
		return;
	/* The chain is over: a spare is used only once its name is durable. */
	for (unsigned i = 0; i < j->n; i++)
		if (j->dead[i].spare[0])
			spool_spare_done(s->spool, &j->dead[i], j->renamed[i] && j->synced);
}

void shard_home_housekeeping(struct shard *s)
{
	home_janitor_start(s);
	home_compact(s);
}
