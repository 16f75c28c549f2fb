/*
 * test_util.h -- helpers shared by the unit suites (test code only).
 */
#ifndef PT_TEST_UTIL_H
#define PT_TEST_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static int test_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Remove dir and everything below it (a test's mkdtemp directory). */
static inline void test_rm_tree(const char *dir)
{
	nftw(dir, test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
