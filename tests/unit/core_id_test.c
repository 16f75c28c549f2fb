/*
 * core_id_test.c -- message ids: 32 lowercase hex digits laid out as
 * time | shard | counter, increasing within a shard, distinct across shards,
 * and the validity check.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/id.h"
#include "core/ptime.h"

/* Parse hex digits s[0, n) into a number. */
static uint64_t hex_field(const char *s, size_t n)
{
	char tmp[17];

	memcpy(tmp, s, n);
	tmp[n] = '\0';
	return strtoull(tmp, NULL, 16);
}

Test(id, layout_time_shard_counter)
{
	struct pt_idgen g;
	char id[PT_ID_LEN + 1];
	uint64_t before, after, c0;

	pt_idgen_init(&g, 0x1a2b);
	cr_assert_eq(g.shard, 0x1a2b);
	cr_assert_lt(g.counter, UINT64_C(1) << 48);
	c0 = g.counter;
	before = pt_wall_us();
	pt_id_next(&g, id);
	after = pt_wall_us();
	cr_assert_eq(strlen(id), PT_ID_LEN);
	cr_assert(pt_id_valid(id, strlen(id)), "%s", id);
	cr_assert_geq(hex_field(id, 16), before);
	cr_assert_leq(hex_field(id, 16), after);
	cr_assert_eq(hex_field(id + 16, 4), 0x1a2b);
	cr_assert_eq(hex_field(id + 20, 12), c0);
	cr_assert_eq(g.counter, c0 + 1 == (UINT64_C(1) << 48) ? 0 : c0 + 1);
}

Test(id, counter_wraps_at_48_bits)
{
	struct pt_idgen g = {.shard = 3, .counter = (UINT64_C(1) << 48) - 1};
	char id[PT_ID_LEN + 1];

	pt_id_next(&g, id);
	cr_assert_str_eq(id + 16, "0003ffffffffffff");
	pt_id_next(&g, id);
	cr_assert_str_eq(id + 16, "0003000000000000");
}

Test(id, ids_increase_and_never_repeat)
{
	enum { N = 10000 };
	struct pt_idgen a, b;
	char prev[PT_ID_LEN + 1] = "", cur[PT_ID_LEN + 1], other[PT_ID_LEN + 1];

	pt_idgen_init(&a, 0);
	pt_idgen_init(&b, 1);
	a.counter = 0; /* no wrap inside the loop: strict order holds */
	for (int i = 0; i < N; i++) {
		pt_id_next(&a, cur);
		pt_id_next(&b, other);
		cr_assert_gt(strcmp(cur, prev), 0, "%s after %s", cur, prev);
		cr_assert_neq(strcmp(cur, other), 0);
		memcpy(prev, cur, sizeof(cur));
	}
}

Test(id, valid_rejects_everything_else)
{
	cr_assert(pt_id_valid("0123456789abcdef0123456789abcdef", 32));
	cr_assert_not(pt_id_valid("0123456789ABCDEF0123456789abcdef", 32));
	cr_assert_not(pt_id_valid("0123456789abcdef0123456789abcde", 31));
	cr_assert_not(pt_id_valid("0123456789abcdef0123456789abcdef0", 33));
	cr_assert_not(pt_id_valid("0123456789abcdef0123456789abcdeg", 32));
	cr_assert_not(pt_id_valid("0123456789abcdef/123456789abcdef", 32));
	cr_assert_not(pt_id_valid("", 0));
	cr_assert_not(pt_id_valid(NULL, 32));
	/* Only the first len bytes count. */
	cr_assert(pt_id_valid("0123456789abcdef0123456789abcdefXYZ", 32));
}
