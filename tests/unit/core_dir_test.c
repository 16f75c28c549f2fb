/*
 * core_dir_test.c -- pt_mkdir_p.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "core/dir.h"
#include "tests/unit/test_util.h"

static char tmpdir[64];

static void setup(void)
{
	test_tmpdir_make(tmpdir, sizeof(tmpdir), "core_dir");
}

static void teardown(void)
{
	test_tmpdir_remove(tmpdir);
}

TestSuite(dir, .init = setup, .fini = teardown);

Test(dir, creates_every_missing_parent_and_tolerates_existing)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/a/b/c", tmpdir);
	cr_assert_eq(pt_mkdir_p(path, 0750), 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0750);
	cr_assert_eq(pt_mkdir_p(path, 0750), 0, "an existing directory is not an error");
	snprintf(path, sizeof(path), "%s/a/b/c/", tmpdir);
	cr_assert_eq(pt_mkdir_p(path, 0750), 0, "a trailing slash is fine");
}

Test(dir, a_file_in_the_way_is_reported)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/file", tmpdir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fclose(f);
	snprintf(path, sizeof(path), "%s/file/sub", tmpdir);
	cr_assert_eq(pt_mkdir_p(path, 0750), -ENOTDIR);
	cr_assert_eq(pt_mkdir_p("", 0750), -ENAMETOOLONG);
}
