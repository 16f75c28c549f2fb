/*
 * ptime.c -- clocks and timestamp formatting.
 *
 * Monotonic time (CLOCK_MONOTONIC) drives timers and never steps; wall time
 * (CLOCK_REALTIME) only stamps records and headers.  Formatting uses
 * gmtime_r() and our own day and month names rather than strftime(), so the
 * output does not depend on the process locale (RFC 5322 3.3 requires the
 * English names).
 */
#include "core/ptime.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Milliseconds on the monotonic clock (arbitrary origin). */
uint64_t pt_monotonic_ms(void)
{
	return pt_monotonic_ns() / 1000000u;
}

/* Nanoseconds on the monotonic clock (arbitrary origin). */
uint64_t pt_monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Microseconds since the Unix epoch. */
uint64_t pt_wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Split wall_us into broken-down UTC time and the microsecond remainder. */
static unsigned ptime_split(uint64_t wall_us, struct tm *tm)
{
	time_t sec = (time_t)(wall_us / 1000000u);

	gmtime_r(&sec, tm);
	return (unsigned)(wall_us % 1000000u);
}

/* "2026-11-25T10:04:05.123456Z" (RFC 3339 5.6) into out[32]; returns out.
 * Log records stamp two times each, so the seconds part is formatted once
 * per second per thread and only the microseconds are written each call. */
char *pt_time_rfc3339(uint64_t wall_us, char out[32])
{
	static __thread uint64_t cached_sec = UINT64_MAX;
	static __thread char cached[20]; /* "2026-11-25T10:04:05" */
	uint64_t sec = wall_us / 1000000u;
	unsigned us = (unsigned)(wall_us % 1000000u);

	if (sec != cached_sec) {
		struct tm tm;
		char tmp[32];

		ptime_split(wall_us, &tm);
		/* The "% 100" and "% 10000" only tell the compiler the widths are
		 * fixed; gmtime_r() never yields fields out of these ranges before
		 * year 10000. */
		snprintf(tmp, sizeof(tmp), "%04u-%02u-%02uT%02u:%02u:%02u",
			 (unsigned)(tm.tm_year + 1900) % 10000, (unsigned)(tm.tm_mon + 1) % 100,
			 (unsigned)tm.tm_mday % 100, (unsigned)tm.tm_hour % 100,
			 (unsigned)tm.tm_min % 100, (unsigned)tm.tm_sec % 100);
		memcpy(cached, tmp, 19);
		cached_sec = sec;
	}
	memcpy(out, cached, 19);
	out[19] = '.';
	for (int i = 25; i >= 20; i--, us /= 10)
		out[i] = (char)('0' + us % 10);
	out[26] = 'Z';
	out[27] = '\0';
	return out;
}

/* "Wed, 25 Nov 2026 10:04:05 +0000" (RFC 5322 3.3) into out[40]; returns out. */
char *pt_time_rfc5322(uint64_t wall_us, char out[40])
{
	static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;

	ptime_split(wall_us, &tm);
	snprintf(out, 40, "%s, %02u %s %04u %02u:%02u:%02u +0000", days[tm.tm_wday % 7],
		 (unsigned)tm.tm_mday % 100, months[tm.tm_mon % 12],
		 (unsigned)(tm.tm_year + 1900) % 10000, (unsigned)tm.tm_hour % 100,
		 (unsigned)tm.tm_min % 100, (unsigned)tm.tm_sec % 100);
	return out;
}
