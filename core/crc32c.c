/*
 * crc32c.c -- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of every spool record (RFC 3720 B.4 gives the same polynomial and
 * the check value 0xE3069283 for "123456789").
 *
 * Two implementations with identical results:
 *
 *  - hardware: the SSE4.2 `crc32` instruction, 8 bytes per step.  The
 *    instruction computes exactly the reflected CRC-32C update with no pre-
 *    or post-inversion, so it drops into the same framing as the table code.
 *    One dependent chain runs at ~8 bytes per 3 cycles (several GB/s), far
 *    above what a disk segment write needs, so we do not interleave streams.
 *  - software: slice-by-8 over eight 256-entry tables (8 KiB), built once.
 *
 * The choice is made once, on first use, under pthread_once(): the CPU check
 * and the table build must not race between shards, and a constructor would
 * not help a caller that runs from another constructor.
 *
 * Framing: the public CRC is the inverted register (init ~0, final ~0), and
 * pt_crc32c(crc, ...) undoes the final inversion of `crc` first, so a CRC can
 * be continued across calls and pt_crc32c(0, ...) starts a new one.
 */
#include "core/crc32c.h"

#include <pthread.h>
#include <string.h>

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
static uint32_t (*crc32c_impl)(uint32_t reg, const unsigned char *p, size_t n);

/* Build the slice-by-8 tables: table[k][b] is b's CRC followed by k zero bytes. */
static void crc32c_build_tables(void)
{
	for (unsigned b = 0; b < 256; b++) {
		uint32_t c = b;
		for (int i = 0; i < 8; i++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
		crc32c_table[0][b] = c;
	}
	for (unsigned b = 0; b < 256; b++)
		for (int k = 1; k < 8; k++)
			crc32c_table[k][b] = (crc32c_table[k - 1][b] >> 8) ^
					     crc32c_table[0][crc32c_table[k - 1][b] & 0xff];
}

/* Software update of the raw register over n bytes (slice-by-8). */
static uint32_t crc32c_sw_update(uint32_t reg, const unsigned char *p, size_t n)
{
	while (n > 0 && ((uintptr_t)p & 7) != 0) {
		reg = (reg >> 8) ^ crc32c_table[0][(reg ^ *p++) & 0xff];
		n--;
	}
	while (n >= 8) {
		uint32_t lo, hi;
		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
		/* Little-endian load: byte 0 of the input is the low byte of lo. */
		lo ^= reg;
		reg = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^
		      crc32c_table[5][(lo >> 16) & 0xff] ^ crc32c_table[4][lo >> 24] ^
		      crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff] ^
		      crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n-- > 0)
		reg = (reg >> 8) ^ crc32c_table[0][(reg ^ *p++) & 0xff];
	return reg;
}

#if defined(__x86_64__)
/* Hardware update of the raw register over n bytes (SSE4.2 crc32). */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw_update(uint32_t reg,
								   const unsigned char *p, size_t n)
{
	uint64_t r = reg;

	/* Align so the 8-byte loads do not straddle cache lines. */
	while (n > 0 && ((uintptr_t)p & 7) != 0) {
		r = __builtin_ia32_crc32qi((uint32_t)r, *p++);
		n--;
	}
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		r = __builtin_ia32_crc32di(r, v);
		p += 8;
		n -= 8;
	}
	while (n-- > 0)
		r = __builtin_ia32_crc32qi((uint32_t)r, *p++);
	return (uint32_t)r;
}
#endif

/* Pick the implementation once; the tables are built either way for pt_crc32c_sw(). */
static void crc32c_init(void)
{
	crc32c_build_tables();
	crc32c_impl = crc32c_sw_update;
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("sse4.2"))
		crc32c_impl = crc32c_hw_update;
#endif
}

/* Continue a CRC-32C over data[0, len); pass crc = 0 to start one. */
uint32_t pt_crc32c(uint32_t crc, const void *data, size_t len)
{
	pthread_once(&crc32c_once, crc32c_init);
	return ~crc32c_impl(~crc, data, len);
}

/* As pt_crc32c(), always with the portable slice-by-8 code. */
uint32_t pt_crc32c_sw(uint32_t crc, const void *data, size_t len)
{
	pthread_once(&crc32c_once, crc32c_init);
	return ~crc32c_sw_update(~crc, data, len);
}
