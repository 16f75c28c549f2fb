/*
 * test_util.h -- small helpers shared by the unit suites (test code only):
 * a per-test temporary directory (made in a suite's .init, removed with
 * everything below it in its .fini) and writing a text file into it.
 * Failures end the test through cr_assert.
 */
#ifndef PT_TEST_UTIL_H
#define PT_TEST_UTIL_H

#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Make a fresh directory "/tmp/<prefix>_XXXXXX"; its path goes into buf. */
static inline void test_tmpdir_make(char *buf, size_t len, const char *prefix)
{
	int n = snprintf(buf, len, "/tmp/%s_XXXXXX", prefix);

	cr_assert(n > 0 && (size_t)n < len, "tmpdir name too long for %s", prefix);
	cr_assert_not_null(mkdtemp(buf), "mkdtemp %s", buf);
}

static inline int test_tmpdir_remove_one(const char *path, const struct stat *st, int flag,
					 struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Remove dir and everything below it. */
static inline void test_tmpdir_remove(const char *dir)
{
	nftw(dir, test_tmpdir_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Write text to <dir>/<name>; the path goes into path_out, which is returned. */
static inline const char *test_write_file(const char *dir, const char *name, const char *text,
					  char *path_out, size_t path_len)
{
	int n = snprintf(path_out, path_len, "%s/%s", dir, name);
	FILE *f;

	cr_assert(n > 0 && (size_t)n < path_len, "path too long: %s/%s", dir, name);
	f = fopen(path_out, "w");
	cr_assert_not_null(f, "fopen %s", path_out);
	cr_assert_geq(fputs(text, f), 0, "write %s", path_out);
	cr_assert_eq(fclose(f), 0, "close %s", path_out);
	return path_out;
}

#endif
