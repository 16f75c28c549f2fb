/* core_strmap_test.c -- the string map against a brute-force model. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strmap.h"

#define N_KEYS 2000

Test(strmap, fnv1a_is_stable_across_runs)
{
	/* Owner shards depend on this value: it must never change. */
	cr_assert_eq(pt_hash_str(""), 0xcbf29ce484222325ull);
	cr_assert_eq(pt_hash_str("a"), 0xaf63dc4c8601ec8cull);
}

Test(strmap, random_puts_and_deletes_match_a_model)
{
	static char keys[N_KEYS][16];
	static bool present[N_KEYS];
	struct pt_strmap m = { 0 };
	size_t n = 0;

	srand(7);
	for (int i = 0; i < N_KEYS; i++)
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
	for (int step = 0; step < 200000; step++) {
		int k = rand() % N_KEYS;

		if (rand() % 3) {
			cr_assert_eq(pt_strmap_put(&m, keys[k], keys[k]), PT_OK);
			n += !present[k];
			present[k] = true;
		} else {
			void *v = pt_strmap_del(&m, keys[k]);

			cr_assert_eq(v, present[k] ? keys[k] : NULL, "step %d key %d", step, k);
			n -= present[k];
			present[k] = false;
		}
		if (step % 1000 == 0)
			for (int j = 0; j < N_KEYS; j++)
				cr_assert_eq(pt_strmap_get(&m, keys[j]), present[j] ? keys[j] : NULL);
	}
	cr_assert_eq(m.n, n);
	size_t pos = 0, seen = 0;

	while (pt_strmap_next(&m, &pos))
		seen++;
	cr_assert_eq(seen, n);
	pt_strmap_free(&m);
}
