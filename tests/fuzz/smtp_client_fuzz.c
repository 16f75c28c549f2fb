/*
 * smtp_client_fuzz.c -- libFuzzer entry point for the SMTP client's reply
 * parser (net/smtp_client_parse.c) and the session it drives
 * (net/smtp_client.c): the input plays the server.
 *
 * Input layout: two bytes choose how the rest is fed and answered,
 *
 *   byte 0  bits 0-4   piece size - 1: server bytes are fed in pieces of 1..32
 *           bits 5-7   enable_tls (modulo 5)
 *   byte 1  bit 0      enable_pipelining
 *           bit 1      the TLS handshake fails (smtp_client_tls_done(false))
 *           bit 2      QUIT after the first transaction
 *           bit 3      end with EOF rather than a timeout
 *
 * and the bytes after them are what the server sends.  The same bytes also
 * go, in the same pieces, through a parser of their own, on which the
 * parser's promises are checked.  The session is driven as the shard does:
 * a transaction (three recipients, a body that needs dot-stuffing) on every
 * READY, up to three, tls_done on START_TLS.
 *
 * Besides the sanitizers, the run aborts when a promise is broken:
 *   - parser: used is 1..len (len for AGAIN and ERROR); a reply's code is
 *     200..599, its content NUL-terminated inside the buffer, its enhanced
 *     code all -1 or a class of 2, 4 or 5; the octet count stays within
 *     SMTP_CLIENT_REPLY_MAX; ERROR is sticky;
 *   - session: the client writes whole CRLF lines, and a lone "." line only
 *     as the last one of a write (the body is dot-stuffed); at TX_DONE every
 *     recipient has a reply with a code 200..599; a failure has a code
 *     400..599; after FAILED or CLOSED no event follows; send() is refused
 *     unless READY was just raised.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/smtp_client.h"
#include "net/smtp_client_parse.h"

static void fuzz_fail(const char *what, const char *p, size_t n)
{
	fprintf(stderr, "smtp_client_fuzz: %s: %.*s\n", what, (int)(n > 200 ? 200 : n), p ? p : "");
	abort();
}

static void fuzz_check_reply(const struct smtp_client_reply *r, int lo, int hi)
{
	if (r == NULL)
		fuzz_fail("missing reply", NULL, 0);
	if (r->code < lo || r->code > hi)
		fuzz_fail("reply code out of range", r->content, strlen(r->content));
	if (memchr(r->content, '\0', sizeof(r->content)) == NULL)
		fuzz_fail("reply content not terminated", r->content, sizeof(r->content));
	if (r->enh_class == -1 ? (r->enh_subject != -1 || r->enh_detail != -1)
			       : (r->enh_class != 2 && r->enh_class != 4 && r->enh_class != 5))
		fuzz_fail("bad enhanced code", r->content, strlen(r->content));
}

/* ---- the parser on its own ---------------------------------------------- */

static void fuzz_parser_piece(struct smtp_client_parse *p, const char *data, size_t len,
			      bool *failed)
{
	while (len > 0) {
		size_t used = 0;
		enum smtp_client_parse_result r = smtp_client_parse_reply(p, data, len, &used);

		if (*failed && r != SMTP_CLIENT_PARSE_ERROR)
			fuzz_fail("parser error not sticky", data, len);
		if (used == 0 || used > len)
			fuzz_fail("parser used a bad count", data, len);
		if ((r == SMTP_CLIENT_PARSE_AGAIN || r == SMTP_CLIENT_PARSE_ERROR) && used != len)
			fuzz_fail("AGAIN/ERROR left bytes unused", data, len);
		if (p->n_octets > SMTP_CLIENT_REPLY_MAX || p->line_len > sizeof(p->line))
			fuzz_fail("parser went past its limits", data, len);
		if (r == SMTP_CLIENT_PARSE_REPLY)
			fuzz_check_reply(&p->reply, 200, 599);
		if (r == SMTP_CLIENT_PARSE_ERROR)
			*failed = true;
		data += used;
		len -= used;
	}
}

/* ---- the session ---------------------------------------------------------- */

struct fuzz {
	struct smtp_client *c;
	bool tls_fails, quit_after_one, over;
	unsigned n_sent;
	struct smtp_client_tx tx;
};

static const char *const fuzz_rcpts[] = {"a@peer.test", "b@peer.test", "c\xc3\xa9@peer.test"};
static const char fuzz_body[] = "Subject: fuzz\r\n\r\n.\r\n..x\r\nbody \xc3\xa9\r\n.";
static const struct iovec fuzz_iov[] = {
    {(void *)fuzz_body, 20},
    {(void *)(fuzz_body + 20), sizeof(fuzz_body) - 1 - 20},
};

/* Whole CRLF lines; a lone "." only as the last line. */
static void fuzz_check_output(struct smtp_client *c)
{
	struct pt_buf *o = smtp_client_output(c);
	const char *p = o->data, *end;

	if (o->len == 0)
		return;
	end = o->data + o->len;
	while (p < end) {
		const char *lf = memchr(p, '\n', (size_t)(end - p));
		size_t n;

		if (lf == NULL || lf == p || lf[-1] != '\r')
			fuzz_fail("output is not whole CRLF lines", p, (size_t)(end - p));
		n = (size_t)(lf - p) + 1;
		if (n == 3 && p[0] == '.' && lf + 1 != end)
			fuzz_fail("a lone dot inside the output", o->data, o->len);
		p += n;
	}
	pt_buf_consume(o, o->len);
}

static void fuzz_tx_done(struct fuzz *f)
{
	for (size_t i = 0; i < f->tx.n_rcpts; i++)
		fuzz_check_reply(smtp_client_rcpt_reply(f->c, i), 200, 599);
	if (smtp_client_rcpt_reply(f->c, f->tx.n_rcpts) != NULL)
		fuzz_fail("a reply past the last recipient", NULL, 0);
}

static void fuzz_ready(struct fuzz *f)
{
	if (f->n_sent >= 3 || (f->quit_after_one && f->n_sent >= 1)) {
		smtp_client_quit(f->c);
		return;
	}
	f->n_sent++;
	if (smtp_client_send(f->c, &f->tx) == PT_ERROR)
		fuzz_fail("send refused right after READY", NULL, 0);
}

/* Answer events as the shard would. */
static void fuzz_answer(struct fuzz *f)
{
	enum smtp_client_event ev;

	while ((ev = smtp_client_next_event(f->c)) != SMTP_CLIENT_EV_NONE) {
		/* What was written before this event is one write of its own. */
		fuzz_check_output(f->c);
		if (f->over)
			fuzz_fail("an event after FAILED or CLOSED", NULL, 0);
		switch (ev) {
		case SMTP_CLIENT_EV_READY:
			fuzz_ready(f);
			break;
		case SMTP_CLIENT_EV_START_TLS:
			smtp_client_tls_done(f->c, !f->tls_fails, "fuzz says no");
			break;
		case SMTP_CLIENT_EV_TX_DONE:
			fuzz_tx_done(f);
			break;
		case SMTP_CLIENT_EV_FAILED:
			fuzz_check_reply(smtp_client_failure(f->c), 400, 599);
			f->over = true;
			break;
		case SMTP_CLIENT_EV_CLOSED:
			f->over = true;
			break;
		default:
			fuzz_fail("unknown event", NULL, 0);
		}
	}
	fuzz_check_output(f->c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_client_config cfg = {.ehlo_domain = "client.fuzz"};
	struct smtp_client_parse *parser;
	struct fuzz f = {0};
	bool parser_failed = false;
	size_t piece, off = 2;

	if (size < 2)
		return 0;
	piece = (size_t)(data[0] & 0x1f) + 1;
	cfg.tls = (enum smtp_client_tls)((data[0] >> 5) % 5);
	cfg.enable_pipelining = data[1] & 1;
	f.tls_fails = data[1] & 2;
	f.quit_after_one = data[1] & 4;
	f.tx = (struct smtp_client_tx){
	    .sender = "sender@client.fuzz",
	    .rcpts = fuzz_rcpts,
	    .n_rcpts = 3,
	    .body = fuzz_iov,
	    .n_body = 2,
	    .body_len = sizeof(fuzz_body) - 1,
	};
	parser = malloc(sizeof(*parser));
	f.c = smtp_client_new(&cfg);
	if (parser == NULL || f.c == NULL)
		goto done;
	smtp_client_parse_init(parser);
	while (off < size) {
		size_t n = size - off < piece ? size - off : piece;

		fuzz_parser_piece(parser, (const char *)data + off, n, &parser_failed);
		if (smtp_client_feed(f.c, data + off, n) != PT_OK)
			fuzz_fail("feed failed", NULL, 0);
		off += n;
		fuzz_answer(&f);
	}
	if (data[1] & 8)
		smtp_client_eof(f.c);
	else
		smtp_client_timeout(f.c);
	fuzz_answer(&f);
done:
	smtp_client_free(f.c);
	free(parser);
	return 0;
}
