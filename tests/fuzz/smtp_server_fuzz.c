/*
 * smtp_server_fuzz.c -- libFuzzer entry point for the SMTP server session
 * (net/smtp_server.c with its parsers, net/smtp_parse.c).
 *
 * Input layout: byte 0 chooses how the rest is fed and answered,
 *
 *   bits 0-4   piece size - 1: the client bytes are fed in pieces of 1..32
 *   bit 5      the peer may not relay (550 5.7.1 but for <postmaster>)
 *   bit 6      call smtp_session_shutdown() after the first piece
 *   bit 7      answer messages with a two-line 550 instead of 250
 *
 * and the bytes after it are what the client sends.  After every piece the
 * pending event is answered as the shard does: SMTP_EV_MESSAGE with
 * smtp_session_message_done(), SMTP_EV_STARTTLS with smtp_session_tls_done(),
 * SMTP_EV_CLOSE ends the run.
 *
 * Besides the sanitizers, the run aborts when a promise of the session is
 * broken:
 *   - the output is whole reply lines "ddd text\r\n" / "ddd-text\r\n" with a
 *     code 2xx..5xx and no CR or LF inside a line;
 *   - a message handed over has a sender, 1..max_recipients recipients, a
 *     body of at most max_message_size octets whose every line ends in CRLF
 *     and has at most 1000 octets, and a Received: header in front.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/id.h"
#include "net/smtp_server.h"

#define FUZZ_MAX_SIZE  2000
#define FUZZ_MAX_RCPTS 5

static void fuzz_fail(const char *what, const char *p, size_t n)
{
	fprintf(stderr, "smtp_server_fuzz: %s: %.*s\n", what, (int)(n > 200 ? 200 : n), p);
	abort();
}

/* Every reply line: 3-digit code 2xx-5xx, ' ' or '-', text, CRLF; nothing else. */
static void fuzz_check_output(struct smtp_session *s)
{
	struct pt_buf *o = smtp_session_output(s);
	const char *p = o->data, *end = o->data + o->len;

	while (p < end) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		size_t n;

		if (lf == NULL)
			fuzz_fail("reply without line end", p, (size_t)(end - p));
		n = (size_t)(lf - p) + 1;
		if (n < 6 || p[n - 2] != '\r' || p[0] < '2' || p[0] > '5' || p[1] < '0' ||
		    p[1] > '9' || p[2] < '0' || p[2] > '9' || (p[3] != ' ' && p[3] != '-'))
			fuzz_fail("malformed reply line", p, n);
		if (memchr(p, '\r', n - 2) != NULL)
			fuzz_fail("CR inside a reply line", p, n);
		p += n;
	}
	pt_buf_consume(o, o->len);
}

static void fuzz_check_message(const struct pt_message *m)
{
	const char *d = m->data.data;
	size_t len = m->data.len, line = 0;

	if (m->sender == NULL || m->n_rcpts == 0 || m->n_rcpts > FUZZ_MAX_RCPTS)
		fuzz_fail("bad envelope", m->sender ? m->sender : "(null)", 6);
	if (len > FUZZ_MAX_SIZE)
		fuzz_fail("body over max_message_size", d, len);
	if (m->prefix.len < 10 || memcmp(m->prefix.data, "Received: ", 10) != 0)
		fuzz_fail("no Received: header", m->prefix.data ? m->prefix.data : "",
			  m->prefix.len);
	if (len > 0 && (len < 2 || d[len - 2] != '\r' || d[len - 1] != '\n'))
		fuzz_fail("body does not end in CRLF", d, len);
	for (size_t i = 0; i < len; i++) {
		line++;
		if (d[i] == '\r' && (i + 1 == len || d[i + 1] != '\n'))
			fuzz_fail("bare CR in an accepted body", d + i, len - i);
		if (d[i] == '\n' && (i == 0 || d[i - 1] != '\r'))
			fuzz_fail("bare LF in an accepted body", d + i, len - i);
		if (line > 1000)
			fuzz_fail("line over 1000 octets in an accepted body", d + i, len - i);
		if (d[i] == '\n')
			line = 0;
	}
}

/* Answer events as the shard would; false once the session is closed. */
static bool fuzz_answer(struct smtp_session *s, bool reject)
{
	for (;;) {
		fuzz_check_output(s);
		switch (smtp_session_event(s)) {
		case SMTP_EV_MESSAGE:
			fuzz_check_message(smtp_session_message(s));
			if (reject)
				smtp_session_message_done(s, 550, "5.7.1 no\n5.7.1 really not");
			else
				smtp_session_message_done(s, 250, "2.0.0 OK");
			break;
		case SMTP_EV_STARTTLS:
			smtp_session_tls_done(s, "TLSv1.3", "TLS_AES_128_GCM_SHA256");
			break;
		case SMTP_EV_CLOSE:
			return false;
		case SMTP_EV_NONE:
			return true;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct smtp_server_config config = {
	    .hostname = "fuzz.test",
	    .banner = NULL,
	    .max_message_size = FUZZ_MAX_SIZE,
	    .max_recipients = FUZZ_MAX_RCPTS,
	    .tls_available = true,
	    .shard = 0,
	};
	static struct pt_idgen idgen;
	struct smtp_session *s;
	size_t piece, off = 1;

	if (size == 0)
		return 0;
	if (idgen.counter == 0)
		pt_idgen_init(&idgen, 0);
	piece = (size_t)(data[0] & 0x1f) + 1;
	s = smtp_session_new(&config, &idgen, "192.0.2.1", (data[0] & 0x20) == 0);
	if (s == NULL)
		return 0;
	while (off < size) {
		size_t n = size - off < piece ? size - off : piece;

		smtp_session_feed(s, (const char *)data + off, n);
		off += n;
		if (off == 1 + n && (data[0] & 0x40))
			smtp_session_shutdown(s);
		if (!fuzz_answer(s, (data[0] & 0x80) != 0))
			break;
	}
	fuzz_answer(s, false);
	smtp_session_timeout(s);
	fuzz_check_output(s);
	smtp_session_free(s, "fuzz input done");
	return 0;
}
