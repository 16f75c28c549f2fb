/*
 * pt.h -- the project-wide vocabulary: status codes, a few macros, and the
 * diagnostic logger.  Every module includes this and nothing else from core
 * unless it needs it.
 *
 * Status: system-call wrappers return 0 / -errno (as liburing does); above
 * them every function that can fail returns one of enum pt_status (negative
 * is failure), as nginx's NGX_* codes.
 */
#ifndef PT_H
#define PT_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

enum pt_status {
	PT_OK = 0,	 /* done */
	PT_AGAIN = -1,	 /* not now: would block, or needs more input */
	PT_ERROR = -2,	 /* failed; details were logged or put in an error buffer */
	PT_DECLINED = -3, /* refused by policy or limit; not an error of ours */
	PT_NOMEM = -4,	 /* allocation failed */
	PT_CORRUPT = -5, /* on-disk data failed a check (CRC, magic, length) */
};

#define PT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define pt_likely(x) __builtin_expect(!!(x), 1)
#define pt_unlikely(x) __builtin_expect(!!(x), 0)
#define pt_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* Diagnostic log (stderr): one line per call, with time, level and shard. */
enum pt_log_level { PT_LOG_DEBUG, PT_LOG_INFO, PT_LOG_WARN, PT_LOG_ERROR, PT_LOG_OFF };

/* Set the lowest level written (PT_LOG_OFF: nothing but panics).  Any
 * thread, any time: a relaxed atomic store, seen by every thread's next line. */
void pt_log_set_level(enum pt_log_level level);
enum pt_log_level pt_log_get_level(void);
/*
 * Parse a diagnostic log filter in env_logger's syntax as far as Petrel
 * maps it: comma-separated directives, each LEVEL or TARGET=LEVEL, with
 * LEVEL one of trace (= debug), debug, info, warn, error, off and TARGET
 * one of petreld, petrel, kumod (the one target: the whole daemon).  The
 * most verbose directive wins.  PT_OK with *out, or PT_ERROR with err
 * naming the directive that is wrong and why.
 */
int pt_log_filter_parse(const char *spec, enum pt_log_level *out, char *err, size_t err_len);
/* Name of the calling thread in log lines ("main", "shard 0", ...); thread-local, not copied. */
void pt_log_set_thread_name(const char *name);
void pt_log(enum pt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define pt_debug(...) pt_log(PT_LOG_DEBUG, __VA_ARGS__)
#define pt_info(...) pt_log(PT_LOG_INFO, __VA_ARGS__)
#define pt_warn(...) pt_log(PT_LOG_WARN, __VA_ARGS__)
#define pt_error(...) pt_log(PT_LOG_ERROR, __VA_ARGS__)

/* A broken invariant inside Petrel: log where, then abort. */
#define pt_panic(...) pt_panic_at(__FILE__, __LINE__, __VA_ARGS__)
void pt_panic_at(const char *file, int line, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 3, 4)));

#endif
