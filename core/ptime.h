/*
 * ptime.h -- clocks.  Monotonic time drives timers; wall time stamps records.
 */
#ifndef PT_PTIME_H
#define PT_PTIME_H

#include "core/pt.h"

uint64_t pt_monotonic_ms(void);
uint64_t pt_monotonic_ns(void);
/* Microseconds since the Unix epoch. */
uint64_t pt_wall_us(void);
/* RFC 3339 UTC with microseconds, "2026-11-25T10:04:05.123456Z"; out must
 * hold 32 bytes.  Returns out. */
char *pt_time_rfc3339(uint64_t wall_us, char out[32]);
/* RFC 5322 date for Received headers, "Wed, 25 Nov 2026 10:04:05 +0000";
 * out must hold 40 bytes.  Returns out. */
char *pt_time_rfc5322(uint64_t wall_us, char out[40]);

#endif
