/*
 * core_ptime_test.c -- clocks move forward and agree in units; timestamps
 * format exactly for known instants.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ptime.h"

Test(ptime, rfc3339_known_instant)
{
	char out[32];

	/* 2026-11-25T10:04:05Z is 1795601045 s after the epoch. */
	cr_assert_str_eq(pt_time_rfc3339(1795601045ull * 1000000 + 123456, out),
			 "2026-11-25T10:04:05.123456Z");
	cr_assert_str_eq(pt_time_rfc3339(0, out), "1970-01-01T00:00:00.000000Z");
	cr_assert_str_eq(pt_time_rfc3339(951868799ull * 1000000 + 999999, out),
			 "2000-02-29T23:59:59.999999Z");
	cr_assert_eq(pt_time_rfc3339(5, out), out);
}

/* The seconds are cached per thread: the same second with other
 * microseconds, then an earlier and a later second, each exact. */
Test(ptime, rfc3339_cached_second)
{
	char out[32];
	uint64_t t = 1795601045ull * 1000000;

	cr_assert_str_eq(pt_time_rfc3339(t + 1, out), "2026-11-25T10:04:05.000001Z");
	cr_assert_str_eq(pt_time_rfc3339(t + 900000, out), "2026-11-25T10:04:05.900000Z");
	cr_assert_str_eq(pt_time_rfc3339(t - 1, out), "2026-11-25T10:04:04.999999Z");
	cr_assert_str_eq(pt_time_rfc3339(t + 1000000, out), "2026-11-25T10:04:06.000000Z");
	cr_assert_str_eq(pt_time_rfc3339(t + 7, out), "2026-11-25T10:04:05.000007Z");
}

Test(ptime, rfc5322_known_instant)
{
	char out[40];

	cr_assert_str_eq(pt_time_rfc5322(1795601045ull * 1000000 + 999999, out),
			 "Wed, 25 Nov 2026 10:04:05 +0000");
	cr_assert_str_eq(pt_time_rfc5322(951868799ull * 1000000, out),
			 "Tue, 29 Feb 2000 23:59:59 +0000");
	cr_assert_str_eq(pt_time_rfc5322(0, out), "Thu, 01 Jan 1970 00:00:00 +0000");
}

Test(ptime, clocks_are_consistent)
{
	uint64_t ns0 = pt_monotonic_ns(), ms0 = pt_monotonic_ms();
	uint64_t wall = pt_wall_us();
	struct timespec d = {0, 20 * 1000 * 1000};

	nanosleep(&d, NULL);
	uint64_t ns1 = pt_monotonic_ns(), ms1 = pt_monotonic_ms();
	cr_assert_geq(ns1 - ns0, 20000000ull);
	cr_assert_geq(ms1 - ms0, 19);
	cr_assert_lt(ms1 - ms0, 10000);
	/* ms and ns read the same clock. */
	cr_assert_lt(ms0 - ns0 / 1000000, 2);
	/* Wall time is after 2024-01-01 and within a second of time(). */
	cr_assert_gt(wall, 1704067200ull * 1000000);
	cr_assert_lt((uint64_t)llabs((long long)(wall / 1000000) - (long long)time(NULL)), 2);
}
