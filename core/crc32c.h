/*
 * crc32c.h -- CRC-32C (Castagnoli), the checksum of every spool record.
 * Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at
 * run time), else a slice-by-8 table.
 */
#ifndef PT_CRC32C_H
#define PT_CRC32C_H

#include "core/pt.h"

/* Continue a CRC: pass 0 to start.  pt_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t pt_crc32c(uint32_t crc, const void *data, size_t len);
/* The same CRC, always computed by the portable table code (for tests and
 * benchmarks that compare it with the hardware path). */
uint32_t pt_crc32c_sw(uint32_t crc, const void *data, size_t len);

#endif
