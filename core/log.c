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
 * The level filter is one global set at start; the thread name is
 * thread-local so each shard labels its own lines without coordination.
 * The logger allocates only for lines longer than its stack buffer.
 */
#include "core/pt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static enum pt_log_level log_level = PT_LOG_INFO;
static __thread const char *log_thread_name;

static const char *const log_level_names[] = {
    [PT_LOG_DEBUG] = "DEBUG",
    [PT_LOG_INFO] = "INFO",
    [PT_LOG_WARN] = "WARN",
    [PT_LOG_ERROR] = "ERROR",
};

/* Set the lowest level that is written.  Call once at start. */
void pt_log_set_level(enum pt_log_level level)
{
	log_level = level;
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

	if (level < log_level)
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
