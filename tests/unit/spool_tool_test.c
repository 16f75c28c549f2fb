/*
 * spool_tool_test.c -- petrel-spool against a spool built here: the exact
 * ls lines and count, verify's per-segment lines and exit status (0 clean,
 * 1 after a flipped byte), cat's bytes and --envelope JSON, and the errors
 * (unknown id, missing directory, bad usage).  The binary is the one built
 * beside this test (<build>/petrel-spool); the tests are skipped when it has
 * not been built.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <libgen.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/ptime.h"
#include "spool/spool.h"
#include "tests/unit/test_util.h"

extern char **environ;

static char tmpdir[64];
static char tool[4096];
static struct pt_idgen idgen;

/* <dir of this test>/../../petrel-spool, i.e. build/petrel-spool or build/asan/petrel-spool. */
static void find_tool(void)
{
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	cr_assert_gt(n, 0);
	exe[n] = '\0';
	snprintf(tool, sizeof(tool), "%s/../../petrel-spool", dirname(exe));
}

static void setup(void)
{
	test_tmpdir_make(tmpdir, sizeof(tmpdir), "spool_tool");
	pt_idgen_init(&idgen, 0);
	find_tool();
}

static void teardown(void)
{
	test_tmpdir_remove(tmpdir);
}

TestSuite(spool_tool, .init = setup, .fini = teardown, .timeout = 60);

struct run {
	int status;
	char *out;
	size_t out_len;
	char *err;
};

static char *slurp(const char *file, size_t *len)
{
	FILE *f = fopen(file, "rb");
	char *p = malloc(1 << 20);
	size_t n;

	cr_assert_not_null(f);
	n = fread(p, 1, (1 << 20) - 1, f);
	fclose(f);
	p[n] = '\0';
	if (len != NULL)
		*len = n;
	return p;
}

/* Run the tool with args (NULL-terminated), capturing stdout and stderr. */
static struct run run_tool(const char *const *args)
{
	char out[128], err[128];
	char *argv[16];
	posix_spawn_file_actions_t fa;
	struct run r;
	pid_t pid;
	int st, n = 0;

	if (access(tool, X_OK) != 0)
		cr_skip_test("%s not built", tool);
	snprintf(out, sizeof(out), "%s/stdout", tmpdir);
	snprintf(err, sizeof(err), "%s/stderr", tmpdir);
	argv[n++] = tool;
	while (*args != NULL)
		argv[n++] = (char *)*args++;
	argv[n] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_eq(posix_spawn(&pid, tool, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "the tool crashed");
	r.status = WEXITSTATUS(st);
	r.out = slurp(out, &r.out_len);
	r.err = slurp(err, NULL);
	return r;
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

static void make_message(struct pt_message *m, size_t i, size_t n_rcpts)
{
	char s[96];
	int n;

	pt_message_init(m);
	pt_id_next(&idgen, m->id);
	m->created_us = 1764064245123456ull + i * 1000000ull;
	pt_message_set_sender(m, "bounce@sender.example", 21);
	for (size_t k = 0; k < n_rcpts; k++) {
		n = snprintf(s, sizeof(s), "rcpt%zu@example.org", k);
		pt_message_add_rcpt(m, s, (size_t)n);
	}
	pt_message_set_meta(m, "tenant", "\"gold\"");
	pt_message_set_meta(m, "n", "3");
	n = snprintf(s, sizeof(s), "Subject: tool %zu\r\n\r\nbody \"%zu\"\r\n", i, i);
	pt_buf_append(&m->data, s, (size_t)n);
	pt_message_scan_headers(m);
	pt_message_prepend_header(m, "Received", "from tool test");
	pt_message_append_header(m, "X-Appended", "yes");
}

static char spool_path_[128];
static struct pt_message msgs[4];

/* Shard 0: messages 0, 1, 2 with 1 tombstoned; shard 3: message 3 with 2 rcpts. */
static void build_spool(void)
{
	struct spool_config cfg = {.path = spool_path_};
	struct spool *sp = NULL;
	char err[256];

	snprintf(spool_path_, sizeof(spool_path_), "%s/spool", tmpdir);
	for (size_t i = 0; i < 4; i++)
		make_message(&msgs[i], i, i == 3 ? 2 : 1);
	cfg.shard = 0;
	cr_assert_eq(spool_open(&sp, &cfg, NULL, NULL, err, sizeof(err)), PT_OK, "%s", err);
	for (size_t i = 0; i < 3; i++)
		cr_assert_eq(spool_append_message(sp, &msgs[i], NULL), PT_OK);
	cr_assert_eq(spool_append_tombstone(sp, msgs[1].id, NULL), PT_OK);
	cr_assert_eq(spool_flush_sync(sp, NULL, NULL), PT_OK);
	spool_close(sp);
	cfg.shard = 3;
	cr_assert_eq(spool_open(&sp, &cfg, NULL, NULL, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(spool_append_message(sp, &msgs[3], NULL), PT_OK);
	cr_assert_eq(spool_flush_sync(sp, NULL, NULL), PT_OK);
	spool_close(sp);
	/* Not shards: ignored. */
	snprintf(err, sizeof(err), "%s/nodeid", spool_path_);
	close(open(err, O_WRONLY | O_CREAT, 0600));
	snprintf(err, sizeof(err), "%s/tmp", spool_path_);
	mkdir(err, 0700);
}

static void free_spool(void)
{
	for (size_t i = 0; i < 4; i++)
		pt_message_clear(&msgs[i]);
}

/* The ls line the tool must print for msgs[i] at (shard, offset). */
static void ls_line(struct pt_buf *b, size_t i, unsigned shard, uint64_t offset)
{
	char created[32];

	pt_buf_printf(b, "%s shard=%u segment=1 offset=%llu size=%zu rcpts=%zu created=%s\n",
		      msgs[i].id, shard, (unsigned long long)offset, pt_message_size(&msgs[i]),
		      msgs[i].n_rcpts, pt_time_rfc3339(msgs[i].created_us, created));
}

/* Offset of the record of msgs[i] in shard 0's segment 1 (records 0, 1, 2 in order). */
static uint64_t offset_in_shard0(size_t i)
{
	uint64_t off = 48;

	for (size_t k = 0; k < i; k++) {
		off += 16 + 64 + strlen(msgs[k].sender) + 4 + strlen(msgs[k].rcpts[0]) + 8 +
		       strlen("tenant") + strlen("\"gold\"") + 8 + 1 + 1 +
		       pt_message_size(&msgs[k]);
	}
	return off;
}

Test(spool_tool, ls_lists_live_messages)
{
	const char *args[] = {"--spool", spool_path_, "ls", NULL};
	struct pt_buf want = PT_BUF_INIT;
	struct run r;

	build_spool();
	r = run_tool(args);
	ls_line(&want, 0, 0, offset_in_shard0(0));
	ls_line(&want, 2, 0, offset_in_shard0(2));
	ls_line(&want, 3, 3, 48);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, pt_buf_cstr(&want));
	cr_assert_str_eq(r.err, "3 messages\n");
	run_free(&r);
	pt_buf_free(&want);
	free_spool();
}

Test(spool_tool, verify_clean_then_corrupt)
{
	const char *args[] = {"verify", "--spool", spool_path_, NULL};
	char want[1024], seg[256];
	struct run r;
	int fd;
	uint8_t b;

	build_spool();
	r = run_tool(args);
	snprintf(want, sizeof(want),
		 "%s/0/0000000000000001.seg: 5 records, 0 bad\n"
		 "%s/3/0000000000000001.seg: 2 records, 0 bad\n",
		 spool_path_, spool_path_);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert_str_eq(r.out, want);
	cr_assert_str_eq(r.err, "2 segments, 7 records, 0 bad\n");
	run_free(&r);

	/* Flip a byte inside shard 0's second message record. */
	snprintf(seg, sizeof(seg), "%s/0/0000000000000001.seg", spool_path_);
	fd = open(seg, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &b, 1, (off_t)offset_in_shard0(1) + 100), 1);
	b ^= 1;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)offset_in_shard0(1) + 100), 1);
	close(fd);
	r = run_tool(args);
	snprintf(want, sizeof(want),
		 "%s/0/0000000000000001.seg: 2 records, 1 bad\n"
		 "%s/3/0000000000000001.seg: 2 records, 0 bad\n",
		 spool_path_, spool_path_);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.out, want);
	snprintf(want, sizeof(want), "petrel-spool: %s: bad record at offset %llu: CRC mismatch",
		 seg, (unsigned long long)offset_in_shard0(1));
	cr_assert_not_null(strstr(r.err, want), "%s", r.err);
	run_free(&r);
	free_spool();
}

Test(spool_tool, cat_bytes_and_envelope)
{
	const char *args[] = {"--spool", spool_path_, "cat", NULL, NULL};
	const char *env_args[] = {"--spool", spool_path_, "cat", "--envelope", NULL, NULL};
	struct pt_buf want = PT_BUF_INIT;
	struct iovec iov[4];
	char created[32];
	struct run r;
	int n;

	build_spool();
	args[3] = msgs[3].id;
	r = run_tool(args);
	cr_assert_eq(r.status, 0, "%s", r.err);
	n = pt_message_iov(&msgs[3], iov);
	for (int i = 0; i < n; i++)
		pt_buf_append(&want, iov[i].iov_base, iov[i].iov_len);
	cr_assert_eq(r.out_len, want.len);
	cr_assert_eq(memcmp(r.out, want.data, want.len), 0);
	cr_assert_str_eq(r.err, "");
	run_free(&r);

	env_args[4] = msgs[3].id;
	r = run_tool(env_args);
	cr_assert_eq(r.status, 0, "%s", r.err);
	pt_buf_reset(&want);
	pt_buf_printf(&want,
		      "{\"id\":\"%s\",\"sender\":\"bounce@sender.example\","
		      "\"recipients\":[\"rcpt0@example.org\",\"rcpt1@example.org\"],"
		      "\"created\":\"%s\",\"meta\":{\"tenant\":\"gold\",\"n\":3},\"size\":%zu}\n",
		      msgs[3].id, pt_time_rfc3339(msgs[3].created_us, created),
		      pt_message_size(&msgs[3]));
	cr_assert_str_eq(r.out, pt_buf_cstr(&want));
	run_free(&r);
	pt_buf_free(&want);
	free_spool();
}

/* Recipient states show in ls (done and the most attempts) and in
 * cat --envelope; a message without states prints as before. */
Test(spool_tool, ls_and_envelope_show_states)
{
	const char *ls_args[] = {"--spool", spool_path_, "ls", NULL};
	const char *env_args[] = {"--spool", spool_path_, "cat", "--envelope", NULL, NULL};
	struct spool_config cfg = {.path = spool_path_, .shard = 3};
	struct spool_rcpt_state st0 = {.rcpt = 0, .done = true, .num_attempts = 2, .due_us = 0};
	struct spool_rcpt_state st1 = {.rcpt = 1, .num_attempts = 5, .due_us = 1764064245000000ull};
	struct pt_buf want = PT_BUF_INIT;
	struct spool *sp = NULL;
	char err[256], created[32];
	struct run r;

	build_spool();
	cr_assert_eq(spool_open(&sp, &cfg, NULL, NULL, err, sizeof(err)), PT_OK, "%s", err);
	cr_assert_eq(spool_append_rcpt_state(sp, msgs[3].id, &st1, NULL), PT_OK);
	cr_assert_eq(spool_append_rcpt_state(sp, msgs[3].id, &st0, NULL), PT_OK);
	cr_assert_eq(spool_flush_sync(sp, NULL, NULL), PT_OK);
	spool_close(sp);

	r = run_tool(ls_args);
	cr_assert_eq(r.status, 0, "%s", r.err);
	ls_line(&want, 0, 0, offset_in_shard0(0));
	ls_line(&want, 2, 0, offset_in_shard0(2));
	ls_line(&want, 3, 3, 48);
	want.len--; /* the states go at the end of the line */
	pt_buf_append_str(&want, " done=1/2 attempts=5\n");
	cr_assert_str_eq(r.out, pt_buf_cstr(&want));
	cr_assert_str_eq(r.err, "3 messages\n");
	run_free(&r);

	env_args[4] = msgs[3].id;
	r = run_tool(env_args);
	cr_assert_eq(r.status, 0, "%s", r.err);
	pt_buf_reset(&want);
	pt_buf_printf(&want,
		      "{\"id\":\"%s\",\"sender\":\"bounce@sender.example\","
		      "\"recipients\":[\"rcpt0@example.org\",\"rcpt1@example.org\"],"
		      "\"created\":\"%s\",\"meta\":{\"tenant\":\"gold\",\"n\":3},\"size\":%zu,"
		      "\"states\":[{\"rcpt\":0,\"done\":true,\"attempts\":2,\"due\":null},"
		      "{\"rcpt\":1,\"done\":false,\"attempts\":5,\"due\":\"%s\"}]}\n",
		      msgs[3].id, pt_time_rfc3339(msgs[3].created_us, created),
		      pt_message_size(&msgs[3]), "2025-11-25T09:50:45.000000Z");
	cr_assert_str_eq(r.out, pt_buf_cstr(&want));
	run_free(&r);

	/* verify knows the record type: header + 2 states in shard 3's segment 2. */
	r = run_tool((const char *[]){"--spool", spool_path_, "verify", NULL});
	cr_assert_eq(r.status, 0, "%s", r.err);
	pt_buf_reset(&want);
	pt_buf_printf(&want,
		      "%s/0/0000000000000001.seg: 5 records, 0 bad\n"
		      "%s/3/0000000000000001.seg: 2 records, 0 bad\n"
		      "%s/3/0000000000000002.seg: 3 records, 0 bad\n",
		      spool_path_, spool_path_, spool_path_);
	cr_assert_str_eq(r.out, pt_buf_cstr(&want));
	cr_assert_str_eq(r.err, "3 segments, 10 records, 0 bad\n");
	run_free(&r);
	pt_buf_free(&want);
	free_spool();
}

Test(spool_tool, cat_errors)
{
	const char *tombstoned[] = {"--spool", spool_path_, "cat", NULL, NULL};
	const char *bad_id[] = {"--spool", spool_path_, "cat", "xyz", NULL};
	struct run r;

	build_spool();
	tombstoned[3] = msgs[1].id;
	r = run_tool(tombstoned);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.out, "");
	cr_assert_not_null(strstr(r.err, "no such message"), "%s", r.err);
	run_free(&r);
	r = run_tool(bad_id);
	cr_assert_eq(r.status, 1);
	cr_assert_not_null(strstr(r.err, "not a message id"), "%s", r.err);
	run_free(&r);
	free_spool();
}

Test(spool_tool, usage_and_missing_directory)
{
	const char *help[] = {"--help", NULL};
	const char *none[] = {NULL};
	const char *unknown[] = {"frobnicate", NULL};
	const char *missing[] = {"--spool", "/nonexistent/petrel/spool", "ls", NULL};
	struct run r;

	r = run_tool(help);
	cr_assert_eq(r.status, 0);
	cr_assert_eq(strncmp(r.out, "usage: petrel-spool", 19), 0, "%s", r.out);
	run_free(&r);
	r = run_tool(none);
	cr_assert_eq(r.status, 2);
	cr_assert_not_null(strstr(r.err, "usage:"));
	run_free(&r);
	r = run_tool(unknown);
	cr_assert_eq(r.status, 2);
	cr_assert_not_null(strstr(r.err, "unknown command frobnicate"), "%s", r.err);
	run_free(&r);
	r = run_tool(missing);
	cr_assert_eq(r.status, 1);
	cr_assert_str_eq(r.err,
			 "petrel-spool: /nonexistent/petrel/spool: No such file or directory\n");
	run_free(&r);
}
