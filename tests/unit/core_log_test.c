/*
 * core_log_test.c -- the diagnostic logger: the exact line format, the level
 * filter, thread names, long lines, whole lines from concurrent threads,
 * and pt_panic() aborting.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/pt.h"

static int saved_fd = -1;
static FILE *capture;

/* Send fd 2 to a temporary file until capture_end(). */
static void capture_begin(void)
{
	capture = tmpfile();
	cr_assert_not_null(capture);
	saved_fd = dup(STDERR_FILENO);
	cr_assert_geq(saved_fd, 0);
	cr_assert_geq(dup2(fileno(capture), STDERR_FILENO), 0);
}

/* Restore fd 2 and return what was written (caller frees). */
static char *capture_end(void)
{
	long n;
	char *s;

	dup2(saved_fd, STDERR_FILENO);
	close(saved_fd);
	fseek(capture, 0, SEEK_END);
	n = ftell(capture);
	rewind(capture);
	s = calloc(1, (size_t)n + 1);
	cr_assert_eq(fread(s, 1, (size_t)n, capture), (size_t)n);
	fclose(capture);
	return s;
}

static bool line_matches(const char *line, const char *pattern)
{
	regex_t re;
	bool ok;

	cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	ok = regexec(&re, line, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

#define STAMP "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "

Test(log, format_level_filter_and_thread_name)
{
	char *out, *line2, *line3;

	pt_log_set_level(PT_LOG_WARN);
	capture_begin();
	pt_info("not shown %d", 1);
	pt_debug("not shown either");
	pt_warn("disk %s at %d%%", "/var/spool", 91);
	pt_log_set_thread_name("shard 0");
	pt_error("fsync failed: %s", "EIO");
	pt_log_set_thread_name("shard 1");
	pt_warn("trailing newline is not doubled\n");
	out = capture_end();

	line2 = strchr(out, '\n');
	cr_assert_not_null(line2);
	*line2++ = '\0';
	line3 = strchr(line2, '\n');
	cr_assert_not_null(line3);
	*line3++ = '\0';
	cr_assert(line_matches(out, STAMP "petreld\\[main\\] WARN: disk /var/spool at 91%$"), "%s",
		  out);
	cr_assert(line_matches(line2, STAMP "petreld\\[shard 0\\] ERROR: fsync failed: EIO$"), "%s",
		  line2);
	cr_assert(line_matches(line3, STAMP "petreld\\[shard 1\\] WARN: trailing newline is not "
					    "doubled\n$"),
		  "%s", line3);
	cr_assert_eq(strchr(line3, '\n')[1], '\0', "exactly three lines");
	free(out);
}

Test(log, long_line_is_written_whole)
{
	char *big = malloc(10001), *out;

	memset(big, 'z', 10000);
	big[10000] = '\0';
	pt_log_set_level(PT_LOG_DEBUG);
	capture_begin();
	pt_debug("<%s>", big);
	out = capture_end();
	cr_assert(line_matches(out, STAMP "petreld\\[main\\] DEBUG: <z{10000}>\n$"));
	free(out);
	free(big);
}

struct writer {
	const char *name;
	int n;
};

static void *log_writer(void *arg)
{
	struct writer *w = arg;

	pt_log_set_thread_name(w->name);
	for (int i = 0; i < w->n; i++)
		pt_info("line %d from %s %s", i, w->name,
			"padding padding padding padding padding padding padding padding");
	return NULL;
}

Test(log, concurrent_threads_never_interleave_within_a_line)
{
	struct writer w[2] = {{"shard 0", 3000}, {"shard 1", 3000}};
	pthread_t t[2];
	int count[2] = {0, 0}, next[2] = {0, 0};
	char *out, *line, *save;

	pt_log_set_level(PT_LOG_INFO);
	capture_begin();
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, log_writer, &w[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	out = capture_end();
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int shard, n, shard2;
		const char *p = strstr(line, "petreld[shard ");
		cr_assert_not_null(p, "mangled: %s", line);
		cr_assert_eq(
		    sscanf(p, "petreld[shard %d] INFO: line %d from shard %d", &shard, &n, &shard2),
		    3, "mangled: %s", line);
		cr_assert_eq(shard, shard2);
		cr_assert(shard == 0 || shard == 1);
		cr_assert_eq(n, next[shard], "lines of one thread stay in order");
		next[shard]++;
		count[shard]++;
		cr_assert(line_matches(line, STAMP "petreld\\[shard [01]\\] INFO: line [0-9]+ from "
						   "shard [01] (padding ?){8}$"),
			  "%s", line);
	}
	cr_assert_eq(count[0], 3000);
	cr_assert_eq(count[1], 3000);
	free(out);
}

Test(log, panic_logs_location_and_aborts, .signal = SIGABRT)
{
	pt_panic("invariant %s broken", "x");
}

Test(log, filter_parse_maps_env_logger_syntax)
{
	enum pt_log_level l = PT_LOG_ERROR;
	char err[256];

	cr_assert_eq(pt_log_filter_parse("petreld=debug", &l, err, sizeof(err)), PT_OK);
	cr_assert_eq(l, PT_LOG_DEBUG);
	cr_assert_eq(pt_log_filter_parse("warn", &l, err, sizeof(err)), PT_OK);
	cr_assert_eq(l, PT_LOG_WARN);
	/* trace maps to debug; the most verbose directive wins */
	cr_assert_eq(pt_log_filter_parse("kumod=error, petrel=TRACE", &l, err, sizeof(err)), PT_OK);
	cr_assert_eq(l, PT_LOG_DEBUG);
	cr_assert_eq(pt_log_filter_parse("off", &l, err, sizeof(err)), PT_OK);
	cr_assert_eq(l, PT_LOG_OFF);

	cr_assert_eq(pt_log_filter_parse("petreld=loud", &l, err, sizeof(err)), PT_ERROR);
	cr_assert_str_eq(err, "\"petreld=loud\": unknown level \"loud\" (expected trace, debug, "
			      "info, warn, error or off)");
	cr_assert_eq(pt_log_filter_parse("info,hyper=debug", &l, err, sizeof(err)), PT_ERROR);
	cr_assert_str_eq(err, "\"hyper=debug\": unknown target \"hyper\" (Petrel's diagnostic log "
			      "has one target: petreld)");
	cr_assert_eq(pt_log_filter_parse("", &l, err, sizeof(err)), PT_ERROR);
	cr_assert(strstr(err, "no level") != NULL);
	cr_assert_eq(l, PT_LOG_OFF); /* untouched on error */
}

Test(log, level_changes_at_run_time)
{
	char *out;

	capture_begin();
	pt_log_set_level(PT_LOG_WARN);
	pt_info("hidden");
	pt_log_set_level(PT_LOG_DEBUG);
	cr_assert_eq(pt_log_get_level(), PT_LOG_DEBUG);
	pt_debug("shown");
	pt_log_set_level(PT_LOG_OFF);
	pt_error("hidden too");
	pt_log_set_level(PT_LOG_INFO);
	out = capture_end();
	cr_assert(strstr(out, "hidden") == NULL, "%s", out);
	cr_assert(strstr(out, "DEBUG: shown") != NULL, "%s", out);
	free(out);
}
