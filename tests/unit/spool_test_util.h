/*
 * spool_test_util.h -- what the spool suites share: a temp directory and an
 * id generator per test, and flipping one byte of a segment file to make a
 * record bad.  Test code only.
 */
#ifndef PT_SPOOL_TEST_UTIL_H
#define PT_SPOOL_TEST_UTIL_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <string.h>
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

/* The ids (and segments) a spool_open hands its entry callback. */
#define SPOOL_IDS_MAX 512
struct spool_ids {
	char id[SPOOL_IDS_MAX][PT_ID_LEN + 1];
	uint64_t segment[SPOOL_IDS_MAX];
	size_t n;
};

/* A spool_entry_fn: append e's id and segment to the struct spool_ids at arg. */
static inline void spool_ids_collect(void *arg, const struct spool_entry *e)
{
	struct spool_ids *c = arg;

	cr_assert_lt(c->n, SPOOL_IDS_MAX);
	c->segment[c->n] = e->segment;
	strcpy(c->id[c->n++], e->id);
}

/* True when id is among c's. */
static inline bool spool_ids_has(const struct spool_ids *c, const char *id)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->id[i], id) == 0)
			return true;
	return false;
}

#endif
