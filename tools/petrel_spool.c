/*
 * petrel_spool.c -- petrel-spool, the offline spool inspector.
 *
 *     petrel-spool [--spool DIR] ls
 *     petrel-spool [--spool DIR] verify
 *     petrel-spool [--spool DIR] cat [--envelope] ID
 *
 * DIR (default ./var/spool) holds one directory per shard, named by its
 * number; everything else in it is ignored.  The tool only reads: it uses
 * spool_scan/spool_verify/spool_read_message, which never truncate or
 * delete, so it is safe to run beside a live petreld.  A record being
 * written at that moment shows up as one bad record at the end of the
 * newest segment (ls warns about it, verify counts it); the daemon's own
 * recovery would truncate it after a crash.
 *
 * Output is for people and for scripts (tests/e2e/harness.py parses it):
 *
 *   ls       one line per live message on stdout,
 *            "<id> shard=<n> segment=<seq> offset=<off> size=<bytes> rcpts=<n>
 *            created=<rfc3339>", followed by " done=<d>/<n> attempts=<a>"
 *            when some recipient has a delivery state (d recipients done,
 *            a the most attempts any recipient had), in shard then spool
 *            order, and "<N> messages" on stderr.
 *   verify   "<path>: <records> records, <bad> bad" per segment on stdout
 *            (where and why on stderr); exit 1 when anything is bad.
 *   cat      the stored message bytes; with --envelope a JSON object
 *            {id, sender, recipients, created, meta, size} instead, plus
 *            "states": [{rcpt, done, attempts, due}] when some recipient
 *            has a delivery state.
 *
 * Exit status: 0 fine, 1 an error or (verify) a bad record, 2 bad usage.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/json.h"
#include "core/ptime.h"
#include "spool/spool.h"

#define TOOL	   "petrel-spool"
#define MAX_SHARDS 4096

static void usage(FILE *f)
{
	fprintf(f, "usage: " TOOL " [--spool DIR] ls\n"
		   "       " TOOL " [--spool DIR] verify\n"
		   "       " TOOL " [--spool DIR] cat [--envelope] ID\n"
		   "\n"
		   "Inspect a Petrel spool offline (read-only).  DIR defaults to ./var/spool\n"
		   "and holds one directory per shard (0, 1, ...).\n"
		   "\n"
		   "  ls       list live (not yet delivered) messages, one per line\n"
		   "  verify   check every record of every segment; exit 1 if any is bad\n"
		   "  cat ID   write message ID as stored; --envelope: its envelope as JSON\n");
}

static int cmp_unsigned(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

	return x < y ? -1 : x > y;
}

/* True when name is a shard number ("0", "17"; no sign, no leading zero). */
static bool shard_name(const char *name, unsigned *shard)
{
	unsigned long v = 0;

	if (name[0] < '0' || name[0] > '9' || (name[0] == '0' && name[1] != '\0'))
		return false;
	for (const char *p = name; *p; p++) {
		if (*p < '0' || *p > '9' || v > 65535)
			return false;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	*shard = (unsigned)v;
	return v <= 65535;
}

/* The shard directories of spool, sorted, into shards.  Count, or -1 (reported). */
static int list_shards(const char *spool, unsigned *shards)
{
	DIR *d = opendir(spool);
	struct dirent *de;
	int n = 0;

	if (d == NULL) {
		fprintf(stderr, TOOL ": %s: %s\n", spool, strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL && n < MAX_SHARDS) {
		char path[4200];
		struct stat st;
		unsigned shard;

		if (!shard_name(de->d_name, &shard))
			continue;
		snprintf(path, sizeof(path), "%s/%s", spool, de->d_name);
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			shards[n++] = shard;
	}
	closedir(d);
	qsort(shards, (size_t)n, sizeof(*shards), cmp_unsigned);
	return n;
}

/* Flush stdout and report a failed write (a full disk, a closed pipe). */
static int finish_stdout(int status)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, TOOL ": writing to stdout: %s\n", strerror(errno));
		return 1;
	}
	return status;
}

struct ls_ctx {
	unsigned shard;
	uint64_t n;
};

/* " done=<d>/<n> attempts=<a>" for a message with recipient states. */
static void ls_states(const struct spool_entry *e)
{
	uint32_t n_done = 0, attempts = 0;

	for (size_t i = 0; i < e->n_states; i++) {
		n_done += e->states[i].done ? 1 : 0;
		attempts = PT_MAX(attempts, e->states[i].num_attempts);
	}
	printf(" done=%u/%u attempts=%u", n_done, e->n_rcpts, attempts);
}

static void ls_entry(void *arg, const struct spool_entry *e)
{
	struct ls_ctx *c = arg;
	char created[32];

	printf("%s shard=%u segment=%llu offset=%llu size=%llu rcpts=%u created=%s", e->id,
	       c->shard, (unsigned long long)e->segment, (unsigned long long)e->offset,
	       (unsigned long long)e->size, e->n_rcpts, pt_time_rfc3339(e->created_us, created));
	if (e->n_states > 0)
		ls_states(e);
	putchar('\n');
	c->n++;
}

static int cmd_ls(const char *spool, const unsigned *shards, int n_shards)
{
	struct ls_ctx c = {0};
	uint64_t n_bad_total = 0;
	int status = 0;

	for (int i = 0; i < n_shards; i++) {
		char err[4400];
		uint64_t n_bad = 0;

		c.shard = shards[i];
		if (spool_scan(spool, shards[i], ls_entry, &c, &n_bad, err, sizeof(err)) != PT_OK) {
			fprintf(stderr, TOOL ": %s\n", err);
			status = 1;
		}
		n_bad_total += n_bad;
	}
	status = finish_stdout(status);
	if (n_bad_total > 0)
		fprintf(stderr,
			TOOL ": warning: %llu bad or incomplete records skipped "
			     "(see " TOOL " verify)\n",
			(unsigned long long)n_bad_total);
	fprintf(stderr, "%llu message%s\n", (unsigned long long)c.n, c.n == 1 ? "" : "s");
	return status;
}

struct verify_ctx {
	uint64_t n_segments, n_records, n_bad;
};

static void verify_segment(void *arg, const struct spool_segment_report *r)
{
	struct verify_ctx *c = arg;

	printf("%s: %llu records, %llu bad\n", r->path, (unsigned long long)r->n_records,
	       (unsigned long long)r->n_bad);
	if (r->n_bad > 0) {
		fflush(stdout);
		fprintf(stderr,
			TOOL ": %s: bad record at offset %llu: %s (%llu bytes from there "
			     "not checked)\n",
			r->path, (unsigned long long)r->bad_offset, r->reason,
			(unsigned long long)(r->size - r->bad_offset));
	}
	c->n_segments++;
	c->n_records += r->n_records;
	c->n_bad += r->n_bad;
}

static int cmd_verify(const char *spool, const unsigned *shards, int n_shards)
{
	struct verify_ctx c = {0};
	int status = 0;

	for (int i = 0; i < n_shards; i++) {
		char err[4400];

		if (spool_verify(spool, shards[i], verify_segment, &c, err, sizeof(err)) != PT_OK) {
			fprintf(stderr, TOOL ": %s\n", err);
			status = 1;
		}
	}
	status = finish_stdout(status);
	fprintf(stderr, "%llu segments, %llu records, %llu bad\n", (unsigned long long)c.n_segments,
		(unsigned long long)c.n_records, (unsigned long long)c.n_bad);
	return c.n_bad > 0 ? 1 : status;
}

struct find_ctx {
	const char *id;
	bool found;
	struct spool_entry e;		 /* e.states points into states */
	struct spool_rcpt_state *states; /* a copy (owned) */
	bool nomem;			 /* the copy could not be made */
};

static void find_entry(void *arg, const struct spool_entry *e)
{
	struct find_ctx *c = arg;

	if (c->found || strcmp(e->id, c->id) != 0)
		return;
	c->found = true;
	c->e = *e;
	c->e.states = NULL;
	c->e.n_states = 0;
	if (e->n_states == 0)
		return;
	c->states = calloc(e->n_states, sizeof(*c->states));
	if (c->states == NULL) {
		c->nomem = true;
		return;
	}
	memcpy(c->states, e->states, e->n_states * sizeof(*c->states));
	c->e.states = c->states;
	c->e.n_states = e->n_states;
}

/* Look id up in every shard: PT_OK with *shard and c->e, or 1 (reported). */
static int find_message(const char *spool, const unsigned *shards, int n_shards, struct find_ctx *c,
			unsigned *shard)
{
	for (int i = 0; i < n_shards && !c->found; i++) {
		char err[4400];

		if (spool_scan(spool, shards[i], find_entry, c, NULL, err, sizeof(err)) != PT_OK) {
			fprintf(stderr, TOOL ": %s\n", err);
			return 1;
		}
		*shard = shards[i];
	}
	if (!c->found) {
		fprintf(stderr, TOOL ": %s: no such message in %s\n", c->id, spool);
		return 1;
	}
	if (c->nomem) {
		fprintf(stderr, TOOL ": %s: out of memory\n", c->id);
		return 1;
	}
	return PT_OK;
}

/* "states": [{rcpt, done, attempts, due}] of a message that has some. */
static void print_states(struct pt_json *j, const struct spool_entry *e)
{
	char due[32];

	pt_json_key(j, "states");
	pt_json_arr_begin(j);
	for (size_t i = 0; i < e->n_states; i++) {
		const struct spool_rcpt_state *st = &e->states[i];

		pt_json_obj_begin(j);
		pt_json_key_int(j, "rcpt", st->rcpt);
		pt_json_key_bool(j, "done", st->done);
		pt_json_key_int(j, "attempts", st->num_attempts);
		/* 0 is "now": no time to show. */
		pt_json_key_str(j, "due", st->due_us ? pt_time_rfc3339(st->due_us, due) : NULL);
		pt_json_obj_end(j);
	}
	pt_json_arr_end(j);
}

static void print_envelope(const struct pt_message *m, const struct spool_entry *e)
{
	struct pt_buf out = PT_BUF_INIT;
	struct pt_json j;
	char created[32];

	pt_json_init(&j, &out);
	pt_json_obj_begin(&j);
	pt_json_key_str(&j, "id", m->id);
	pt_json_key_str(&j, "sender", m->sender);
	pt_json_key(&j, "recipients");
	pt_json_arr_begin(&j);
	for (size_t i = 0; i < m->n_rcpts; i++)
		pt_json_str(&j, m->rcpts[i]);
	pt_json_arr_end(&j);
	pt_json_key_str(&j, "created", pt_time_rfc3339(m->created_us, created));
	pt_json_key(&j, "meta");
	pt_json_obj_begin(&j);
	for (size_t i = 0; i < m->n_meta; i++)
		pt_json_key_raw(&j, m->meta[i].key, m->meta[i].json, strlen(m->meta[i].json));
	pt_json_obj_end(&j);
	pt_json_key_int(&j, "size", (int64_t)m->data.len);
	if (e->n_states > 0)
		print_states(&j, e);
	pt_json_obj_end(&j);
	pt_buf_append(&out, "\n", 1);
	fwrite(out.data, 1, out.len, stdout);
	pt_buf_free(&out);
}

static int cmd_cat(const char *spool, const unsigned *shards, int n_shards, const char *id,
		   bool envelope)
{
	struct find_ctx c = {.id = id};
	struct pt_message m;
	unsigned shard = 0;
	int rc;

	if (!pt_id_valid(id, strlen(id))) {
		fprintf(stderr, TOOL ": %s: not a message id (32 lowercase hex digits)\n", id);
		return 1;
	}
	if (find_message(spool, shards, n_shards, &c, &shard) != PT_OK) {
		free(c.states);
		return 1;
	}
	pt_message_init(&m);
	rc = spool_read_message(spool, shard, &c.e, &m);
	if (rc != PT_OK) {
		fprintf(
		    stderr, TOOL ": %s/%u/%016llx.seg: offset %llu: cannot read message %s: %s\n",
		    spool, shard, (unsigned long long)c.e.segment, (unsigned long long)c.e.offset,
		    id, rc == PT_CORRUPT ? "record is corrupt" : strerror(errno));
		free(c.states);
		return 1;
	}
	if (envelope)
		print_envelope(&m, &c.e);
	else if (m.data.len > 0)
		fwrite(m.data.data, 1, m.data.len, stdout);
	pt_message_clear(&m);
	free(c.states);
	return finish_stdout(0);
}

struct args {
	const char *spool;
	const char *cmd;
	const char *id;
	bool envelope;
};

/* Parse argv into a.  0, or the exit status to leave with (usage printed). */
static int parse_args(int argc, char **argv, struct args *a)
{
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];

		if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
			usage(stdout);
			return -1;
		} else if (strcmp(s, "--spool") == 0 && i + 1 < argc) {
			a->spool = argv[++i];
		} else if (strncmp(s, "--spool=", 8) == 0) {
			a->spool = s + 8;
		} else if (strcmp(s, "--envelope") == 0) {
			a->envelope = true;
		} else if (s[0] == '-' && s[1] != '\0') {
			fprintf(stderr, TOOL ": unknown option %s\n", s);
			return 2;
		} else if (a->cmd == NULL) {
			a->cmd = s;
		} else if (a->id == NULL && strcmp(a->cmd, "cat") == 0) {
			a->id = s;
		} else {
			fprintf(stderr, TOOL ": unexpected argument %s\n", s);
			return 2;
		}
	}
	if (a->cmd == NULL || (strcmp(a->cmd, "cat") == 0) != (a->id != NULL) ||
	    (a->envelope && strcmp(a->cmd, "cat") != 0)) {
		fprintf(stderr,
			a->cmd == NULL ? TOOL ": no command given\n"
				       : TOOL ": wrong arguments for %s\n",
			a->cmd);
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static unsigned shards[MAX_SHARDS];
	struct args a = {.spool = "./var/spool"};
	int n_shards, rc = parse_args(argc, argv, &a);

	if (rc != 0) {
		if (rc == 2)
			usage(stderr);
		return rc < 0 ? 0 : rc;
	}
	if (strcmp(a.cmd, "ls") != 0 && strcmp(a.cmd, "verify") != 0 && strcmp(a.cmd, "cat") != 0) {
		fprintf(stderr, TOOL ": unknown command %s\n", a.cmd);
		usage(stderr);
		return 2;
	}
	n_shards = list_shards(a.spool, shards);
	if (n_shards < 0)
		return 1;
	if (strcmp(a.cmd, "ls") == 0)
		return cmd_ls(a.spool, shards, n_shards);
	if (strcmp(a.cmd, "verify") == 0)
		return cmd_verify(a.spool, shards, n_shards);
	return cmd_cat(a.spool, shards, n_shards, a.id, a.envelope);
}
