/*
 * bench_util.h -- small helpers that both bench programs need and that
 * belong to no lower module: linked into petrel-sink and petrel-gen alike
 * (the Makefile adds bench/bench_*.c to both).
 */
#ifndef PT_BENCH_UTIL_H
#define PT_BENCH_UTIL_H

#include <stddef.h>

#include "core/buf.h"

/*
 * Append the whole file `path` to b.  PT_OK; or PT_ERROR with err filled:
 * "[OPT ]PATH: <reason>" when it cannot be opened or read, "[OPT ]PATH:
 * larger than MAX bytes" when the file passes max_len bytes (or memory runs
 * out first).  `opt` names the option that gave the path, for the message
 * ("--eml"), or is NULL.  b may hold part of the file after a failure:
 * the caller frees it either way.
 */
int bench_read_file(const char *opt, const char *path, size_t max_len, struct pt_buf *b, char *err,
		    size_t err_len);

#endif
