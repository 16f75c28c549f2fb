/*
 * spool_test_util.h -- what the spool suites share: a temp directory and an
 * id generator per test, and flipping one byte of a segment file to make a
 * record bad.  Test code only.
 */
#ifndef PT_SPOOL_TEST_UTIL_H
#define PT_SPOOL_TEST_UTIL_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <unistd.h>

#include "core/id.h"
#include "tests/unit/test_util.h"

static char tmpdir[64];
static struct pt_idgen idgen;

/* The suite `name`, each test in a fresh temp dir, ids from shard `shard`. */
#define SPOOL_TEST_SUITE(name, shard, seconds)                                                   \
	static void setup(void)                                                                  \
	{                                                                                        \
		test_tmpdir_make(tmpdir, sizeof(tmpdir), #name);                                 \
		pt_idgen_init(&idgen, shard);                                                    \
	}                                                                                        \
	static void teardown(void)                                                               \
	{                                                                                        \
		test_tmpdir_remove(tmpdir);                                                      \
	}                                                                                        \
	TestSuite(name, .init = setup, .fini = teardown, .timeout = seconds)

/* Invert one bit of the byte at off in file. */
static inline void flip_byte(const char *file, uint64_t off)
{
	int fd = open(file, O_RDWR);
	uint8_t b;

	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x40;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

#endif
