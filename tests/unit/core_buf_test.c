/*
 * core_buf_test.c -- the growable buffer: appends, printf past the current
 * capacity, consume, the spare byte behind pt_buf_cstr(), and reuse after
 * free.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/buf.h"

Test(buf, empty_buffer_cstr_is_empty_string)
{
	struct pt_buf b = PT_BUF_INIT;

	cr_assert_str_eq(pt_buf_cstr(&b), "");
	cr_assert_null(b.data, "cstr must not allocate");
	pt_buf_free(&b);
}

Test(buf, append_and_cstr)
{
	struct pt_buf b = PT_BUF_INIT;

	cr_assert_eq(pt_buf_append(&b, "abc", 3), PT_OK);
	cr_assert_eq(pt_buf_append_str(&b, "def"), PT_OK);
	cr_assert_eq(pt_buf_append(&b, NULL, 0), PT_OK);
	cr_assert_eq(b.len, 6);
	cr_assert_gt(b.cap, b.len, "one spare byte is always kept");
	cr_assert_str_eq(pt_buf_cstr(&b), "abcdef");
	cr_assert_eq(b.len, 6);
	pt_buf_free(&b);
	cr_assert_null(b.data);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.cap, 0);
	cr_assert_eq(pt_buf_append_str(&b, "again"), PT_OK);
	cr_assert_str_eq(pt_buf_cstr(&b), "again");
	pt_buf_free(&b);
}

Test(buf, grows_across_many_appends_and_keeps_bytes)
{
	struct pt_buf b = PT_BUF_INIT;

	for (int i = 0; i < 100000; i++) {
		char c = (char)('a' + i % 26);
		cr_assert_eq(pt_buf_append(&b, &c, 1), PT_OK);
		cr_assert_gt(b.cap, b.len);
	}
	cr_assert_eq(b.len, 100000);
	for (int i = 0; i < 100000; i++)
		cr_assert_eq(b.data[i], (char)('a' + i % 26), "byte %d", i);
	cr_assert_eq(strlen(pt_buf_cstr(&b)), 100000);
	pt_buf_free(&b);
}

Test(buf, exact_fill_keeps_room_for_terminator)
{
	struct pt_buf b = PT_BUF_INIT;
	char chunk[64];

	memset(chunk, 'x', sizeof(chunk));
	cr_assert_eq(pt_buf_append(&b, chunk, 63), PT_OK);
	cr_assert_eq(pt_buf_append(&b, chunk, 1), PT_OK); /* len == 64 */
	cr_assert_geq(b.cap, 65);
	cr_assert_eq(strlen(pt_buf_cstr(&b)), 64);
	pt_buf_free(&b);
}

Test(buf, printf_short_and_long)
{
	struct pt_buf b = PT_BUF_INIT;
	char big[5000];

	cr_assert_eq(pt_buf_printf(&b, "%d-%s", 42, "x"), PT_OK);
	cr_assert_str_eq(pt_buf_cstr(&b), "42-x");
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(pt_buf_printf(&b, "[%s]", big), PT_OK);
	cr_assert_eq(b.len, 4 + 2 + 4999);
	cr_assert_eq(b.data[4], '[');
	cr_assert_eq(b.data[b.len - 1], ']');
	cr_assert_eq(b.data[5 + 4998], 'y');
	cr_assert_eq(pt_buf_printf(&b, "%s", ""), PT_OK);
	cr_assert_eq(b.len, 5005);
	pt_buf_free(&b);
}

Test(buf, printf_exactly_fills_spare_room)
{
	struct pt_buf b = PT_BUF_INIT;

	cr_assert_eq(pt_buf_reserve(&b, 10), PT_OK);
	size_t room = b.cap - 1;
	/* A string of exactly `room` bytes needs the retry path for its NUL. */
	cr_assert_eq(pt_buf_printf(&b, "%0*d", (int)room, 7), PT_OK);
	cr_assert_eq(b.len, room);
	cr_assert_eq(b.data[room - 1], '7');
	cr_assert_eq(b.data[0], '0');
	cr_assert_eq(strlen(pt_buf_cstr(&b)), room);
	pt_buf_free(&b);
}

Test(buf, consume_and_reset)
{
	struct pt_buf b = PT_BUF_INIT;

	pt_buf_append_str(&b, "EHLO x\r\nMAIL FROM:<>\r\n");
	pt_buf_consume(&b, 8);
	cr_assert_str_eq(pt_buf_cstr(&b), "MAIL FROM:<>\r\n");
	pt_buf_consume(&b, 0);
	cr_assert_eq(b.len, 14);
	pt_buf_consume(&b, 1000);
	cr_assert_eq(b.len, 0);
	cr_assert_str_eq(pt_buf_cstr(&b), "");
	pt_buf_append_str(&b, "q");
	pt_buf_reset(&b);
	cr_assert_eq(b.len, 0);
	cr_assert_not_null(b.data, "reset keeps the storage");
	pt_buf_free(&b);
}

Test(buf, reserve_overflow_is_nomem)
{
	struct pt_buf b = PT_BUF_INIT;

	pt_buf_append_str(&b, "abc");
	cr_assert_eq(pt_buf_reserve(&b, SIZE_MAX - 2), PT_NOMEM);
	cr_assert_eq(pt_buf_reserve(&b, SIZE_MAX), PT_NOMEM);
	cr_assert_str_eq(pt_buf_cstr(&b), "abc", "buffer unchanged after a failed reserve");
	pt_buf_free(&b);
}

Test(buf, append_from_itself_survives_growth)
{
	struct pt_buf b = PT_BUF_INIT;

	pt_buf_append_str(&b, "ab");
	for (int i = 0; i < 12; i++)
		cr_assert_eq(pt_buf_append(&b, b.data, b.len), PT_OK); /* doubles each time */
	cr_assert_eq(b.len, 2u << 12);
	for (size_t i = 0; i < b.len; i++)
		cr_assert_eq(b.data[i], i % 2 ? 'b' : 'a', "byte %zu", i);
	pt_buf_free(&b);
}
