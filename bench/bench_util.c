/*
 * bench_util.c -- helpers shared by petrel-sink and petrel-gen.
 *
 * Reading a file: start-up only (a certificate, a key, an --eml sample),
 * so plain stdio in 64 KiB chunks; the bound is checked before each append
 * so that no more than max_len bytes are ever held.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench/bench_util.h"

int bench_read_file(const char *opt, const char *path, size_t max_len, struct pt_buf *b, char *err,
		    size_t err_len)
{
	const char *sep = opt ? " " : "";
	FILE *f;
	char chunk[65536];
	size_t n;

	opt = opt ? opt : "";
	if (!(f = fopen(path, "rb"))) {
		snprintf(err, err_len, "%s%s%s: %s", opt, sep, path, strerror(errno));
		return PT_ERROR;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (b->len + n > max_len || pt_buf_append(b, chunk, n) != PT_OK) {
			snprintf(err, err_len, "%s%s%s: larger than %zu bytes", opt, sep, path,
				 max_len);
			fclose(f);
			return PT_ERROR;
		}
	}
	if (ferror(f)) {
		snprintf(err, err_len, "%s%s%s: %s", opt, sep, path, strerror(errno));
		fclose(f);
		return PT_ERROR;
	}
	fclose(f);
	return PT_OK;
}
