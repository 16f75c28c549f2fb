/*
 * log.c -- the diagnostic logger behind pt_log() and pt_panic() (pt.h).
 *
 * Each call writes exactly one line to stderr (fd 2):
 *
 *     2026-11-25T10:04:05.123Z petreld[shard 0] WARN: text
 *
 * The line is formatted into memory first and handed to the kernel with a
 * single write(2).  Writes of one buffer to a pipe of up to PIPE_BUF bytes
 * are atomic, and to a file or terminal they are in practice not split by
 * other writers, so lines from different shards never interleave mid-line
 * -- which stdio's per-FILE lock would also give us, but only at the price
 * of a lock shared by all shards and buffering we would have to flush.
 *
 * The level filter is one global, a relaxed atomic: the admin API
 * (set_diagnostic_log_filter) changes it while shards run, and a line
 * written with the old level a moment after the change is harmless.  The
 * thread name is thread-local so each shard labels its own lines without
 * coordination.
 * The logger allocates only for lines longer than its stack buffer.
 */
#include "core/pt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static _Atomic int log_level = PT_LOG_INFO;
static __thread const char *log_thread_name;

static const char *const log_level_names[] = {
    [PT_LOG_DEBUG] = "DEBUG",
    [PT_LOG_INFO] = "INFO",
    [PT_LOG_WARN] = "WARN",
    [PT_LOG_ERROR] = "ERROR",
};

void pt_log_set_level(enum pt_log_level level)
{
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

enum pt_log_level pt_log_get_level(void)
{
	return (enum pt_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

/* One directive's level word; -1 when it is none. */
static int log_level_word(const char *w, size_t len)
{
	static const struct {
		const char *name;
		enum pt_log_level level;
	} words[] = {
	    {"trace", PT_LOG_DEBUG}, {"debug", PT_LOG_DEBUG}, {"info", PT_LOG_INFO},
	    {"warn", PT_LOG_WARN},   {"error", PT_LOG_ERROR}, {"off", PT_LOG_OFF},
	};

	for (size_t i = 0; i < PT_ARRAY_LEN(words); i++)
		if (strlen(words[i].name) == len && strncasecmp(w, words[i].name, len) == 0)
			return (int)words[i].level;
	return -1;
}

static bool log_target_word(const char *w, size_t len)
{
	static const char *const targets[] = {"petreld", "petrel", "kumod"};

	for (size_t i = 0; i < PT_ARRAY_LEN(targets); i++)
		if (strlen(targets[i]) == len && strncmp(w, targets[i], len) == 0)
			return true;
	return false;
}

int pt_log_filter_parse(const char *spec, enum pt_log_level *out, char *err, size_t err_len)
{
	int best = -1;
	const char *p = spec;

	while (*p) {
		size_t len, lw_len;
		const char *eq, *lw;
		int level;

		while (*p == ' ')
			p++;
		len = strcspn(p, ",");
		eq = memchr(p, '=', len);
		lw = eq ? eq + 1 : p;
		lw_len = (size_t)(p + len - lw);

		while (lw_len && lw[0] == ' ')
			lw++, lw_len--;
		while (lw_len && lw[lw_len - 1] == ' ')
			lw_len--;
		if (eq && !log_target_word(p, (size_t)(eq - p))) {
			snprintf(err, err_len,
				 "\"%.*s\": unknown target \"%.*s\" (Petrel's diagnostic log has "
				 "one target: petreld)",
				 (int)len, p, (int)(eq - p), p);
			return PT_ERROR;
		}
		level = log_level_word(lw, lw_len);
		if (level < 0 && lw_len) {
			snprintf(err, err_len,
				 "\"%.*s\": unknown level \"%.*s\" (expected trace, debug, info, "
				 "warn, error or off)",
				 (int)len, p, (int)lw_len, lw);
			return PT_ERROR;
		}
		if (level >= 0 && (best < 0 || level < best))
			best = level;
		p += len + (p[len] == ',');
	}
	if (best < 0) {
		snprintf(err, err_len, "no level in the filter (expected e.g. \"petreld=debug\")");
		return PT_ERROR;
	}
	*out = (enum pt_log_level)best;
	return PT_OK;
}

/* Label the calling thread's lines; name is not copied and must outlive the thread. */
void pt_log_set_thread_name(const char *name)
{
	log_thread_name = name;
}

/* Write all of p to stderr, retrying on EINTR and short writes. */
static void log_write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return; /* nowhere left to report it */
		}
		p += w;
		n -= (size_t)w;
	}
}

/* "2026-11-25T10:04:05.123Z petreld[main] WARN: " into out; returns its length. */
static int log_prefix(char *out, size_t size, const char *level)
{
	struct timespec ts;
	struct tm tm;
	const char *name = log_thread_name ? log_thread_name : "main";

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	return snprintf(out, size,
			"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ petreld[%s] %s: ", tm.tm_year + 1900,
			tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			ts.tv_nsec / 1000000, name, level);
}

/*
 * Format one line and write it.  A line longer than the stack buffer is
 * formatted again into a heap buffer; if that allocation fails the line is
 * written truncated rather than dropped.
 */
static void log_vline(const char *level, const char *fmt, va_list ap)
{
	char stack[LOG_LINE_MAX];
	char *line = stack;
	size_t size = sizeof(stack);
	int head, body;
	va_list ap2;

	head = log_prefix(stack, sizeof(stack), level);
	if (head < 0 || (size_t)head >= sizeof(stack) - 1)
		head = 0;
	va_copy(ap2, ap);
	body = vsnprintf(stack + head, size - (size_t)head, fmt, ap);
	if (body < 0)
		body = 0;
	if ((size_t)head + (size_t)body + 1 > size) {
		char *big = malloc((size_t)head + (size_t)body + 2);
		if (big != NULL) {
			memcpy(big, stack, (size_t)head);
			vsnprintf(big + head, (size_t)body + 1, fmt, ap2);
			line = big;
			size = (size_t)head + (size_t)body + 2;
		} else {
			body = (int)(size - (size_t)head - 2);
		}
	}
	va_end(ap2);
	/* Drop a trailing newline the caller put in, so each call is one line. */
	while (body > 0 && line[head + body - 1] == '\n')
		body--;
	line[head + body] = '\n';
	log_write_all(line, (size_t)head + (size_t)body + 1);
	if (line != stack)
		free(line);
}

/* Write one line at `level` to stderr if the level passes the filter. */
void pt_log(enum pt_log_level level, const char *fmt, ...)
{
	va_list ap;

	if ((int)level < atomic_load_explicit(&log_level, memory_order_relaxed))
		return;
	if ((unsigned)level >= PT_ARRAY_LEN(log_level_names))
		level = PT_LOG_ERROR;
	va_start(ap, fmt);
	log_vline(log_level_names[level], fmt, ap);
	va_end(ap);
}

/* log_vline() with variadic arguments, bypassing the level filter. */
static void log_line(const char *level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline(level, fmt, ap);
	va_end(ap);
}

/*
 * Report a broken invariant with its source location, then abort() so a
 * core dump keeps the evidence.  Ignores the level filter.
 */
void pt_panic_at(const char *file, int line, const char *fmt, ...)
{
	char msg[LOG_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_line("PANIC", "%s:%d: %s", file, line, msg);
	abort();
}
