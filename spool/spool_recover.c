/*
 * spool_recover.c -- the scan behind spool_open (repairing), spool_scan and
 * spool_verify (read-only).  Format and crash argument: spool_segment.c.
 *
 * One pass over the segments in sequence order checks every record and
 * builds a small index; nothing of a body is kept.  A message is live when
 * no TOMBSTONE with its id exists anywhere -- the tombstone may be in a later
 * segment than the message, so liveness is only known once every segment has
 * been read, and entries are collected first and reported after the pass.
 *
 * The index, per record kind:
 *
 *   ids       one per distinct id: its 128 bits, the newest MESSAGE entry
 *             with that id, whether a tombstone names it (20 bytes + slack)
 *   table     open addressing, id -> index into ids (4 bytes x 2..4 per id)
 *   entries   one per MESSAGE record: where it is and what `ls` shows, plus
 *             a link to an older copy with the same id (48 bytes)
 *   tombs     one per TOMBSTONE record: its id's index (4 bytes)
 *   states    one per RCPT_STATE record that may still count: the entry
 *             (message copy) it follows, recipient, state, file order
 *             (32 bytes)
 *
 * so a spool of a million live messages costs about 100 MB during open and
 * nothing after it.  An id stored twice (compaction copying a message
 * forward) is reported once, at its newest copy, and a tombstone kills
 * every copy.
 *
 * Recipient states.  A RCPT_STATE applies to the copy of its message that
 * was the newest when it was read (states follow their copy: the format
 * comment in spool_segment.c); one read before any copy, or after the
 * tombstone, or naming a recipient the message does not have, is dropped
 * on the spot.  When the states array fills up it is squeezed before it
 * grows: sorted by (entry, recipient, file order), and everything dropped
 * that can no longer count -- states of a copy that is no longer the newest
 * or of a message tombstoned since, and every state but the newest of a
 * recipient.  It grows (doubles) only when more than half survive, so it
 * never holds more than four times the recipients that have a state, however
 * many times they were retried, and each squeeze (O(n log n)) is paid for
 * by at least n/2 appends since the last one.  A final squeeze leaves the reported states sorted by entry and
 * recipient, which is the order they are handed out in.
 *
 * Repair (spool_open only):
 *
 *  - The newest segment's first bad record starts a torn tail: the file is
 *    truncated there and fdatasync'd (logged with path and offset); a newest
 *    segment without a valid header is removed.
 *  - A bad record in an older segment is logged; the rest of that segment is
 *    skipped and the file kept.
 *  - A segment whose header is intact (CRC good) but names another shard,
 *    sequence or format version is not a torn write: someone moved files.
 *    spool_open refuses to start rather than repair (delete) it.
 *  - Dead segments are deleted, oldest first.  Segment T may go when it is
 *    fully readable, holds no live message, holds no recipient state that
 *    counts (the newest state of a live message's recipient), and every
 *    message its tombstones name has all its copies in segments that are
 *    going too (in T itself or an older one already deleted): deleting T
 *    must never bring a message back or a recipient's older state.  Since a
 *    tombstone follows its message, one pass in sequence order decides each
 *    segment from the ones before it.  (States that do not count pin
 *    nothing: removing them changes no outcome.)
 */
#include "spool/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RECOVER_NONE UINT32_MAX

struct recover_id {
	uint8_t key[16];
	uint32_t latest; /* newest MESSAGE entry with this id, or RECOVER_NONE */
	bool tombstoned;
};

struct recover_entry {
	uint32_t id;   /* index into ids */
	uint32_t seg;  /* index into segs */
	uint32_t prev; /* older entry with the same id, or RECOVER_NONE */
	uint32_t length;
	uint32_t n_rcpts;
	uint64_t offset;
	uint64_t created_us;
	uint64_t size;
};

/* A RCPT_STATE that may still count. */
struct recover_state {
	uint32_t entry; /* the MESSAGE entry (copy) it follows */
	uint32_t seg;	/* index into segs */
	uint32_t rcpt;
	uint32_t num_attempts;
	uint64_t due_us;
	uint64_t order; /* file order << 1 | done */
};

struct recover_segment {
	uint64_t seq;
	struct spool_segment_scan scan;
	uint64_t n_live;
	uint64_t n_states; /* states in it that count: they pin it at open */
	size_t first_tomb; /* its tombstones: tombs[first_tomb, first_tomb + n_tombs) */
	size_t n_tombs;
	bool removed;
};

struct recovery {
	int dir_fd;
	const char *dir;
	unsigned shard;
	bool repair;
	struct recover_segment *segs;
	size_t n_segs;
	size_t cur; /* the segment being scanned */
	struct recover_id *ids;
	size_t n_ids, cap_ids;
	uint32_t *table; /* id index + 1; 0 is empty */
	size_t table_cap;
	struct recover_entry *entries;
	size_t n_entries, cap_entries;
	uint32_t *tombs;
	size_t n_tombs, cap_tombs;
	struct recover_state *states;
	size_t n_states, cap_states;
	uint64_t n_state_records; /* every RCPT_STATE read: the file order */
	char *err;
	size_t err_len;
};

/* printf into the caller's error buffer; returns PT_ERROR. */
static int recover_fail(struct recovery *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int recover_fail(struct recovery *r, const char *fmt, ...)
{
	va_list ap;

	if (r->err != NULL && r->err_len > 0) {
		va_start(ap, fmt);
		vsnprintf(r->err, r->err_len, fmt, ap);
		va_end(ap);
	}
	return PT_ERROR;
}

/* Make room for one more item in a growable array.  PT_OK or PT_NOMEM. */
static int recover_grow(void **items, size_t n, size_t *cap, size_t size)
{
	size_t new_cap;
	void *p;

	if (n < *cap)
		return PT_OK;
	new_cap = *cap ? *cap * 2 : 64;
	p = reallocarray(*items, new_cap, size);
	if (p == NULL)
		return PT_NOMEM;
	*items = p;
	*cap = new_cap;
	return PT_OK;
}

static int hex_value(char c)
{
	return c <= '9' ? c - '0' : c - 'a' + 10;
}

/* 32 lowercase hex digits (checked by the record checks) to 16 bytes, and back. */
static void recover_id_key(const char *id, uint8_t key[16])
{
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)(hex_value(id[2 * i]) << 4 | hex_value(id[2 * i + 1]));
}

static void recover_id_text(const uint8_t key[16], char out[PT_ID_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < 16; i++) {
		out[2 * i] = digits[key[i] >> 4];
		out[2 * i + 1] = digits[key[i] & 15];
	}
	out[PT_ID_LEN] = '\0';
}

/* Ids are time | shard | counter: mix both halves so neither alone decides the slot. */
static size_t recover_hash(const uint8_t key[16], size_t cap)
{
	uint64_t a, b, h;

	memcpy(&a, key, 8);
	memcpy(&b, key + 8, 8);
	h = a * 0x9e3779b97f4a7c15ull ^ b * 0xc2b2ae3d27d4eb4full;
	h ^= h >> 29;
	return (size_t)h & (cap - 1);
}

/* Double the table and re-insert every id.  PT_OK or PT_NOMEM. */
static int recover_table_grow(struct recovery *r)
{
	size_t cap = r->table_cap ? r->table_cap * 2 : 1024;
	uint32_t *t = calloc(cap, sizeof(*t));

	if (t == NULL)
		return PT_NOMEM;
	for (size_t i = 0; i < r->n_ids; i++) {
		size_t h = recover_hash(r->ids[i].key, cap);

		while (t[h] != 0)
			h = (h + 1) & (cap - 1);
		t[h] = (uint32_t)i + 1;
	}
	free(r->table);
	r->table = t;
	r->table_cap = cap;
	return PT_OK;
}

/* The table slot of key: where it is, or the empty slot where it would go. */
static size_t recover_probe(const struct recovery *r, const uint8_t key[16])
{
	size_t h;

	for (h = recover_hash(key, r->table_cap); r->table[h] != 0;
	     h = (h + 1) & (r->table_cap - 1))
		if (memcmp(r->ids[r->table[h] - 1].key, key, 16) == 0)
			break;
	return h;
}

/* The index of id in r->ids, if it is there. */
static bool recover_id_find(const struct recovery *r, const char *id, uint32_t *out)
{
	uint8_t key[16];
	size_t h;

	if (r->table_cap == 0)
		return false;
	recover_id_key(id, key);
	h = recover_probe(r, key);
	if (r->table[h] == 0)
		return false;
	*out = r->table[h] - 1;
	return true;
}

/* The index of id in r->ids, added if new.  PT_OK or PT_NOMEM. */
static int recover_id_get(struct recovery *r, const char *id, uint32_t *out)
{
	uint8_t key[16];
	size_t h;

	/* Load factor at most 1/2: probes stay short. */
	if ((r->n_ids + 1) * 2 > r->table_cap && recover_table_grow(r) != PT_OK)
		return PT_NOMEM;
	recover_id_key(id, key);
	h = recover_probe(r, key);
	if (r->table[h] != 0) {
		*out = r->table[h] - 1;
		return PT_OK;
	}
	if (r->n_ids >= RECOVER_NONE - 1 ||
	    recover_grow((void **)&r->ids, r->n_ids, &r->cap_ids, sizeof(*r->ids)) != PT_OK)
		return PT_NOMEM;
	memcpy(r->ids[r->n_ids].key, key, 16);
	r->ids[r->n_ids].latest = RECOVER_NONE;
	r->ids[r->n_ids].tombstoned = false;
	r->table[h] = (uint32_t)r->n_ids + 1;
	*out = (uint32_t)r->n_ids++;
	return PT_OK;
}

/* True when entry i is the newest copy of a message without a tombstone (so far). */
static bool recover_live(const struct recovery *r, size_t i)
{
	const struct recover_id *id = &r->ids[r->entries[i].id];

	return !id->tombstoned && id->latest == i;
}

static int recover_state_cmp(const void *a, const void *b)
{
	const struct recover_state *x = a, *y = b;

	if (x->entry != y->entry)
		return x->entry < y->entry ? -1 : 1;
	if (x->rcpt != y->rcpt)
		return x->rcpt < y->rcpt ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* Squeeze r->states (see top): sorted by (entry, rcpt, order), only the
 * newest state of each recipient of each live copy kept. */
static void recover_states_squeeze(struct recovery *r)
{
	size_t n = 0;

	if (r->n_states > 1)
		qsort(r->states, r->n_states, sizeof(*r->states), recover_state_cmp);
	for (size_t i = 0; i < r->n_states; i++) {
		const struct recover_state *st = &r->states[i], *next = st + 1;

		if (!recover_live(r, st->entry))
			continue;
		if (i + 1 < r->n_states && next->entry == st->entry && next->rcpt == st->rcpt)
			continue; /* a newer state of the same recipient follows */
		r->states[n++] = *st;
	}
	r->n_states = n;
}

/* Room for one more state: squeeze first, grow when that freed less than half. */
static int recover_state_room(struct recovery *r)
{
	if (r->n_states < r->cap_states)
		return PT_OK;
	recover_states_squeeze(r);
	if (r->n_states * 2 <= r->cap_states && r->n_states < r->cap_states)
		return PT_OK;
	return recover_grow((void **)&r->states, r->n_states, &r->cap_states, sizeof(*r->states));
}

/* Index one good RCPT_STATE record (or drop it: see top). */
static int recover_rcpt_state(struct recovery *r, const struct spool_record_info *ri)
{
	char name[SPOOL_SEGMENT_NAME_LEN + 1], path[4096];
	struct recover_state *st;
	uint32_t id, latest;

	r->n_state_records++;
	if (!recover_id_find(r, ri->id, &id) || (latest = r->ids[id].latest) == RECOVER_NONE ||
	    r->ids[id].tombstoned)
		return PT_OK;
	if (ri->state.rcpt >= r->entries[latest].n_rcpts) {
		spool_segment_name(r->segs[r->cur].seq, name);
		snprintf(path, sizeof(path), "%s/%s", r->dir, name);
		if (r->repair)
			pt_warn("spool %s: offset %llu: state of recipient %u of message %.*s, "
				"which has %u: ignored",
				path, (unsigned long long)ri->offset, ri->state.rcpt, PT_ID_LEN,
				ri->id, r->entries[latest].n_rcpts);
		return PT_OK;
	}
	if (recover_state_room(r) != PT_OK)
		return PT_NOMEM;
	st = &r->states[r->n_states++];
	st->entry = latest;
	st->seg = (uint32_t)r->cur;
	st->rcpt = ri->state.rcpt;
	st->num_attempts = ri->state.num_attempts;
	st->due_us = ri->state.due_us;
	st->order = r->n_state_records << 1 | (ri->state.done ? 1 : 0);
	return PT_OK;
}

/* Segment scan callback: index one good MESSAGE, TOMBSTONE or RCPT_STATE record. */
static int recover_record(void *arg, const struct spool_record_info *ri)
{
	struct recovery *r = arg;
	struct recover_entry *e;
	uint32_t id;

	if (ri->type == SPOOL_RECORD_RCPT_STATE)
		return recover_rcpt_state(r, ri);
	if (recover_id_get(r, ri->id, &id) != PT_OK)
		return PT_NOMEM;
	if (ri->type == SPOOL_RECORD_TOMBSTONE) {
		if (recover_grow((void **)&r->tombs, r->n_tombs, &r->cap_tombs, sizeof(*r->tombs)))
			return PT_NOMEM;
		r->tombs[r->n_tombs++] = id;
		r->segs[r->cur].n_tombs++;
		r->ids[id].tombstoned = true;
		return PT_OK;
	}
	if (r->n_entries >= RECOVER_NONE - 1 ||
	    recover_grow((void **)&r->entries, r->n_entries, &r->cap_entries, sizeof(*e)) != PT_OK)
		return PT_NOMEM;
	e = &r->entries[r->n_entries];
	e->id = id;
	e->seg = (uint32_t)r->cur;
	e->prev = r->ids[id].latest;
	e->length = ri->length;
	e->n_rcpts = ri->n_rcpts;
	e->offset = ri->offset;
	e->created_us = ri->created_us;
	e->size = ri->body_len;
	r->ids[id].latest = (uint32_t)r->n_entries++;
	return PT_OK;
}

/* Cut the newest segment's torn tail (or remove a segment with no valid header). */
static int recover_repair_tail(struct recovery *r, struct recover_segment *s, int fd,
			       const char *name, const char *path)
{
	struct spool_segment_scan *sc = &s->scan;

	if (sc->end == 0) {
		pt_warn("spool %s: no valid segment header (%s): removing the file", path,
			sc->reason);
		if (unlinkat(r->dir_fd, name, 0) != 0)
			return recover_fail(r, "%s: cannot remove: %s", path, strerror(errno));
		s->removed = true;
		return PT_OK;
	}
	pt_warn("spool %s: torn tail at offset %llu (%s): truncating %llu bytes", path,
		(unsigned long long)sc->end, sc->reason, (unsigned long long)(sc->size - sc->end));
	/* Synced now, before a new segment gets records: the garbage must not
	 * reappear after a later crash behind records that were acknowledged. */
	if (ftruncate(fd, (off_t)sc->end) != 0 || fdatasync(fd) != 0)
		return recover_fail(r, "%s: cannot truncate torn tail at offset %llu: %s", path,
				    (unsigned long long)sc->end, strerror(errno));
	/* Repaired: from here on the segment is whole (and may be dead). */
	s->scan.bad = false;
	s->scan.size = s->scan.end;
	return PT_OK;
}

/* Scan segment r->cur; repair or report a bad record.  PT_OK, PT_ERROR, PT_NOMEM. */
static int recover_segment(struct recovery *r, const char *name, const char *path)
{
	struct recover_segment *s = &r->segs[r->cur];
	bool newest = r->cur + 1 == r->n_segs;
	int fd, rc;

	fd = openat(r->dir_fd, name, (r->repair && newest ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		s->removed = true; /* deleted since the listing (another process's open) */
		return PT_OK;
	}
	if (fd < 0)
		return recover_fail(r, "%s: %s", path, strerror(errno));
	s->first_tomb = r->n_tombs;
	rc = spool_segment_scan(fd, r->shard, s->seq, &s->scan, recover_record, r);
	if (rc == PT_ERROR)
		recover_fail(r, "%s: read error: %s", path, strerror(errno));
	else if (rc == PT_NOMEM)
		recover_fail(r, "%s: out of memory indexing the spool", path);
	else if (s->scan.foreign && r->repair)
		/* Never truncate or delete what may be another spool's data. */
		rc = recover_fail(r, "%s: %s: refusing to open the spool (move the file away)",
				  path, s->scan.reason);
	else if (s->scan.bad && r->repair && newest)
		rc = recover_repair_tail(r, s, fd, name, path);
	else if (s->scan.bad && r->repair)
		pt_error("spool %s: bad record at offset %llu (%s): skipping the rest of the "
			 "segment (%llu bytes)",
			 path, (unsigned long long)s->scan.end, s->scan.reason,
			 (unsigned long long)(s->scan.size - s->scan.end));
	close(fd);
	return rc;
}

/* The file name of segment seq into name, and "<dir>/<name>" into path. */
static void recover_path(const struct recovery *r, uint64_t seq,
			 char name[SPOOL_SEGMENT_NAME_LEN + 1], char *path, size_t len)
{
	spool_segment_name(seq, name);
	snprintf(path, len, "%s/%s", r->dir, name);
}

/* True when no copy of any message named by segment t's tombstones outlives t. */
static bool recover_tombstones_settled(const struct recovery *r, size_t t)
{
	const struct recover_segment *s = &r->segs[t];

	for (size_t k = s->first_tomb; k < s->first_tomb + s->n_tombs; k++) {
		for (uint32_t e = r->ids[r->tombs[k]].latest; e != RECOVER_NONE;
		     e = r->entries[e].prev) {
			uint32_t seg = r->entries[e].seg;

			if (seg > t || (seg < t && !r->segs[seg].removed))
				return false;
		}
	}
	return true;
}

/* Delete dead segments oldest first (rule at the top), then sync the directory. */
static void recover_delete_dead(struct recovery *r)
{
	char name[SPOOL_SEGMENT_NAME_LEN + 1], path[4096];
	bool any = false;

	for (size_t t = 0; t < r->n_segs; t++) {
		struct recover_segment *s = &r->segs[t];

		if (s->removed || s->scan.bad || s->n_live > 0 || s->n_states > 0 ||
		    !recover_tombstones_settled(r, t))
			continue;
		recover_path(r, s->seq, name, path, sizeof(path));
		if (unlinkat(r->dir_fd, name, 0) != 0) {
			pt_warn("spool %s: cannot delete dead segment: %s", path, strerror(errno));
			continue;
		}
		pt_info("spool %s: deleted (no live messages)", path);
		s->removed = true;
		any = true;
	}
	if (any && fsync(r->dir_fd) != 0)
		pt_warn("spool %s: fsync after deleting segments: %s", r->dir, strerror(errno));
}

/* The squeezed states as the public struct, in the same order, in a new
 * array (caller frees; NULL when there are none).  PT_OK or PT_NOMEM. */
static int recover_states_export(const struct recovery *r, struct spool_rcpt_state **out)
{
	struct spool_rcpt_state *v = NULL;

	if (r->n_states > 0 && (v = calloc(r->n_states, sizeof(*v))) == NULL)
		return PT_NOMEM;
	for (size_t i = 0; i < r->n_states; i++) {
		v[i].rcpt = r->states[i].rcpt;
		v[i].done = (r->states[i].order & 1) != 0;
		v[i].num_attempts = r->states[i].num_attempts;
		v[i].due_us = r->states[i].due_us;
	}
	*out = v;
	return PT_OK;
}

/* Call fn for each live message in spool order, with its recipients' states
 * (r->states is squeezed: sorted by entry, live entries only).  PT_OK or
 * PT_NOMEM (err filled). */
static int recover_emit(struct recovery *r, spool_entry_fn fn, void *arg)
{
	struct spool_rcpt_state *states;
	struct spool_entry se;
	size_t k = 0;

	if (recover_states_export(r, &states) != PT_OK)
		return recover_fail(r, "%s: out of memory reporting recipient states", r->dir);
	for (size_t i = 0; i < r->n_entries; i++) {
		const struct recover_entry *e = &r->entries[i];

		if (!recover_live(r, i))
			continue;
		recover_id_text(r->ids[e->id].key, se.id);
		se.segment = r->segs[e->seg].seq;
		se.offset = e->offset;
		se.length = e->length;
		se.created_us = e->created_us;
		se.n_rcpts = e->n_rcpts;
		se.size = e->size;
		se.states = states != NULL ? states + k : NULL;
		se.n_states = 0;
		while (k < r->n_states && r->states[k].entry == i) {
			se.n_states++;
			k++;
		}
		if (se.n_states == 0)
			se.states = NULL;
		fn(arg, &se);
	}
	free(states);
	return PT_OK;
}

/* Report one segment to spool_verify's callback. */
static void recover_report(const struct recovery *r, const struct recover_segment *s,
			   spool_segment_fn fn, void *arg)
{
	struct spool_segment_report rep;
	char name[SPOOL_SEGMENT_NAME_LEN + 1], path[4096];

	recover_path(r, s->seq, name, path, sizeof(path));
	rep.path = path;
	rep.segment = s->seq;
	rep.size = s->scan.size;
	rep.n_records = s->scan.n_records;
	rep.n_bad = s->scan.bad ? 1 : 0;
	rep.bad_offset = s->scan.bad ? s->scan.end : 0;
	rep.reason = s->scan.bad ? s->scan.reason : NULL;
	fn(arg, &rep);
}

/* Scan every listed segment in order.  PT_OK, PT_ERROR, PT_NOMEM (err filled). */
static int recover_scan_all(struct recovery *r)
{
	char name[SPOOL_SEGMENT_NAME_LEN + 1], path[4096];
	int rc;

	for (r->cur = 0; r->cur < r->n_segs; r->cur++) {
		recover_path(r, r->segs[r->cur].seq, name, path, sizeof(path));
		rc = recover_segment(r, name, path);
		if (rc != PT_OK)
			return rc;
	}
	for (size_t i = 0; i < r->n_entries; i++)
		if (recover_live(r, i))
			r->segs[r->entries[i].seg].n_live++;
	recover_states_squeeze(r);
	for (size_t k = 0; k < r->n_states; k++)
		r->segs[r->states[k].seg].n_states++;
	return PT_OK;
}

/* List the segments into r->segs.  PT_OK or PT_ERROR (err filled). */
static int recover_list(struct recovery *r)
{
	uint64_t *seqs;
	size_t n;
	int rc = spool_segment_list(r->dir_fd, &seqs, &n);

	if (rc < 0)
		return recover_fail(r, "%s: cannot list: %s", r->dir, strerror(-rc));
	r->segs = n ? calloc(n, sizeof(*r->segs)) : NULL;
	if (n && r->segs == NULL) {
		free(seqs);
		return recover_fail(r, "%s: out of memory", r->dir);
	}
	for (size_t i = 0; i < n; i++)
		r->segs[i].seq = seqs[i];
	r->n_segs = n;
	free(seqs);
	return PT_OK;
}

/* Totals over the segments left on disk, and the list of them.  PT_OK or
 * PT_NOMEM (err filled). */
static int recover_totals(struct recovery *r, struct spool_recovery_result *res)
{
	for (size_t t = 0; t < r->n_segs; t++) {
		const struct recover_segment *s = &r->segs[t];

		res->max_seq = PT_MAX(res->max_seq, s->seq);
		if (s->scan.bad && !s->removed)
			res->n_bad++;
		if (s->removed)
			continue;
		res->n_segments++;
		res->bytes += s->scan.size;
	}
	if (res->n_segments == 0)
		return PT_OK;
	res->segs = calloc(res->n_segments, sizeof(*res->segs));
	if (res->segs == NULL)
		return recover_fail(r, "%s: out of memory", r->dir);
	for (size_t t = 0, k = 0; t < r->n_segs; t++) {
		const struct recover_segment *s = &r->segs[t];

		if (s->removed)
			continue;
		res->segs[k].seq = s->seq;
		res->segs[k].size = s->scan.size;
		res->segs[k].n_live = s->n_live;
		res->segs[k].bad = s->scan.bad;
		res->segs[k].mask = s->scan.mask;
		k++;
	}
	return PT_OK;
}

/*
 * Scan the segments of directory dir (open as dir_fd; dir is used in paths
 * and messages) of shard `shard`.  With repair, fix the newest segment's torn
 * tail and delete dead segments (see top).  Then call fn (if not NULL) for
 * every live message in spool order and seg_fn (if not NULL) for every
 * segment, and fill res (res->segs is the caller's to free, on failure
 * too).  PT_OK, or PT_ERROR/PT_NOMEM with err filled.
 */
int spool_recover(int dir_fd, const char *dir, unsigned shard, bool repair, spool_entry_fn fn,
		  void *arg, spool_segment_fn seg_fn, void *seg_arg,
		  struct spool_recovery_result *res, char *err, size_t err_len)
{
	struct recovery r = {
	    .dir_fd = dir_fd,
	    .dir = dir,
	    .shard = shard,
	    .repair = repair,
	    .err = err,
	    .err_len = err_len,
	};
	int rc;

	memset(res, 0, sizeof(*res));
	rc = recover_list(&r);
	if (rc == PT_OK)
		rc = recover_scan_all(&r);
	if (rc == PT_OK) {
		if (repair)
			recover_delete_dead(&r);
		rc = recover_totals(&r, res);
	}
	if (rc == PT_OK && fn != NULL)
		rc = recover_emit(&r, fn, arg);
	for (size_t t = 0; rc == PT_OK && seg_fn != NULL && t < r.n_segs; t++)
		if (!r.segs[t].removed)
			recover_report(&r, &r.segs[t], seg_fn, seg_arg);
	free(r.segs);
	free(r.ids);
	free(r.table);
	free(r.entries);
	free(r.tombs);
	free(r.states);
	return rc;
}

/* Open <path>/<shard> read-only into *dir_fd and its name into dir.  PT_OK or PT_ERROR. */
static int recover_open_dir(const char *path, unsigned shard, char *dir, size_t dir_len,
			    int *dir_fd, char *err, size_t err_len)
{
	snprintf(dir, dir_len, "%s/%u", path, shard);
	*dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*dir_fd < 0) {
		if (err != NULL && err_len > 0)
			snprintf(err, err_len, "%s: %s", dir, strerror(errno));
		return PT_ERROR;
	}
	return PT_OK;
}

/*
 * Read-only scan of <path>/<shard> (spool.h): fn for every live message in
 * spool order; *n_bad (if not NULL) gets the number of bad records, a torn
 * tail included.  Nothing is changed on disk.  PT_OK or PT_ERROR (err filled).
 */
int spool_scan(const char *path, unsigned shard, spool_entry_fn fn, void *arg, uint64_t *n_bad,
	       char *err, size_t err_len)
{
	struct spool_recovery_result res;
	char dir[4096];
	int dir_fd, rc;

	if (recover_open_dir(path, shard, dir, sizeof(dir), &dir_fd, err, err_len) != PT_OK)
		return PT_ERROR;
	rc = spool_recover(dir_fd, dir, shard, false, fn, arg, NULL, NULL, &res, err, err_len);
	close(dir_fd);
	free(res.segs);
	if (rc != PT_OK)
		return PT_ERROR;
	if (n_bad != NULL)
		*n_bad = res.n_bad;
	return PT_OK;
}

/*
 * Read-only check of <path>/<shard> (spool.h): fn once per segment file in
 * sequence order with its record and bad counts.  PT_OK or PT_ERROR (err filled).
 */
int spool_verify(const char *path, unsigned shard, spool_segment_fn fn, void *arg, char *err,
		 size_t err_len)
{
	struct spool_recovery_result res;
	char dir[4096];
	int dir_fd, rc;

	if (recover_open_dir(path, shard, dir, sizeof(dir), &dir_fd, err, err_len) != PT_OK)
		return PT_ERROR;
	rc = spool_recover(dir_fd, dir, shard, false, NULL, NULL, fn, arg, &res, err, err_len);
	close(dir_fd);
	free(res.segs);
	return rc == PT_OK ? PT_OK : PT_ERROR;
}
