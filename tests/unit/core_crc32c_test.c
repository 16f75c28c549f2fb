/*
 * core_crc32c_test.c -- CRC-32C: published check values, continuation across
 * calls, and the hardware path agreeing with the slice-by-8 table code on
 * every length and alignment we can throw at it.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"

/* Both implementations must give `want` for buf[0, len). */
static void check_both(const void *buf, size_t len, uint32_t want)
{
	cr_assert_eq(pt_crc32c(0, buf, len), want, "hw/dispatch: got %08x want %08x",
		     pt_crc32c(0, buf, len), want);
	cr_assert_eq(pt_crc32c_sw(0, buf, len), want, "sw: got %08x want %08x",
		     pt_crc32c_sw(0, buf, len), want);
}

Test(crc32c, check_value_123456789)
{
	check_both("123456789", 9, 0xE3069283u);
}

/* RFC 3720 B.4 test vectors (iSCSI uses CRC-32C). */
Test(crc32c, rfc3720_vectors)
{
	unsigned char buf[32];

	memset(buf, 0, sizeof(buf));
	check_both(buf, 32, 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	check_both(buf, 32, 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)i;
	check_both(buf, 32, 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)(31 - i);
	check_both(buf, 32, 0x113FDB5Cu);
}

Test(crc32c, empty_and_single_byte)
{
	check_both("", 0, 0);
	check_both("a", 1, 0xC1D04330u);
	/* An empty continuation leaves the CRC unchanged. */
	cr_assert_eq(pt_crc32c(0xE3069283u, "", 0), 0xE3069283u);
}

Test(crc32c, continuation_equals_one_shot)
{
	const char *s = "The quick brown fox jumps over the lazy dog, again and again.";
	size_t n = strlen(s);
	uint32_t whole = pt_crc32c(0, s, n);

	for (size_t cut = 0; cut <= n; cut++) {
		uint32_t c = pt_crc32c(pt_crc32c(0, s, cut), s + cut, n - cut);
		uint32_t c_sw = pt_crc32c_sw(pt_crc32c_sw(0, s, cut), s + cut, n - cut);
		cr_assert_eq(c, whole, "cut at %zu", cut);
		cr_assert_eq(c_sw, whole, "sw cut at %zu", cut);
	}
}

/* A bit-at-a-time reference, independent of both implementations under test. */
static uint32_t crc_bitwise(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
	}
	return ~c;
}

Test(crc32c, hw_equals_sw_on_random_data_all_lengths_and_alignments)
{
	enum { MAX = 1100 };
	unsigned char *buf = malloc(MAX + 16);
	unsigned seed = 12345;

	cr_assert_not_null(buf);
	for (size_t i = 0; i < MAX + 16; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (unsigned char)(seed >> 16);
	}
	for (size_t align = 0; align < 16; align++) {
		for (size_t len = 0; len <= MAX; len += (len < 80 ? 1 : 37)) {
			const unsigned char *p = buf + align;
			uint32_t want = crc_bitwise(p, len);
			cr_assert_eq(pt_crc32c(0, p, len), want, "align %zu len %zu", align, len);
			cr_assert_eq(pt_crc32c_sw(0, p, len), want, "sw align %zu len %zu", align,
				     len);
		}
	}
	free(buf);
}

Test(crc32c, hw_equals_sw_on_large_buffer)
{
	size_t n = 1 << 20;
	unsigned char *buf = malloc(n);
	uint64_t x = 0x9E3779B97F4A7C15ull;

	cr_assert_not_null(buf);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (unsigned char)x;
	}
	cr_assert_eq(pt_crc32c(0, buf, n), pt_crc32c_sw(0, buf, n));
	cr_assert_eq(pt_crc32c(0, buf + 3, n - 7), crc_bitwise(buf + 3, n - 7));
	free(buf);
}
