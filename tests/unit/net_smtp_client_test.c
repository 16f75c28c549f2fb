/*
 * net_smtp_client_test.c -- the SMTP client session, without sockets.
 *
 * Each dialogue below plays the server: it feeds scripted replies and
 * asserts the exact bytes the client wrote in between, the events it
 * raised, and the reply each recipient ended with (code, enhanced code,
 * text, command, local or not).
 *
 * Every dialogue runs three times (SCENARIO): with each srv() call fed as
 * one piece, one byte at a time, and cut at pseudo-random points.  The
 * reply parser is resumable, so where a read ends must never change what
 * the client writes or decides; events are collected after every piece,
 * as the shard does.
 *
 * The reply parser's limits and edge cases are tested directly at the end.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/smtp_client.h"
#include "net/smtp_client_parse.h"

#define EV_NONE	    SMTP_CLIENT_EV_NONE
#define EV_READY    SMTP_CLIENT_EV_READY
#define EV_STARTTLS SMTP_CLIENT_EV_START_TLS
#define EV_TX_DONE  SMTP_CLIENT_EV_TX_DONE
#define EV_FAILED   SMTP_CLIENT_EV_FAILED
#define EV_CLOSED   SMTP_CLIENT_EV_CLOSED

#define BANNER "220 mx.peer.test ESMTP ready\r\n"
/* A peer as Petrel's own server answers, with a small SIZE. */
#define EHLO_FULL                                                                                  \
	"250-mx.peer.test Hello client.test\r\n"                                                   \
	"250-PIPELINING\r\n"                                                                       \
	"250-SIZE 10000\r\n"                                                                       \
	"250-8BITMIME\r\n"                                                                         \
	"250-ENHANCEDSTATUSCODES\r\n"                                                              \
	"250-SMTPUTF8\r\n"                                                                         \
	"250 HELP\r\n"
/* A plain RFC 5321 peer: no extension at all. */
#define EHLO_BARE "250 mx.peer.test\r\n"
#define BODY	  "Subject: hi\r\n\r\nhello\r\n"

static const char *const event_names[] = {"NONE",    "READY",  "START_TLS",
					  "TX_DONE", "FAILED", "CLOSED"};
static const char *const mode_names[] = {"whole", "byte by byte", "random cuts"};

struct fx {
	int mode; /* 0 whole, 1 byte by byte, 2 random cuts */
	unsigned seed;
	struct smtp_client_config cfg;
	struct smtp_client *c;
	enum smtp_client_event events[32];
	size_t n_events;
	/* The transaction given to smtp_client_send. */
	struct smtp_client_tx tx;
	const char *rcpts[8];
	struct iovec iov[8];
};

static void fx_init(struct fx *f, int mode)
{
	memset(f, 0, sizeof(*f));
	f->mode = mode;
	f->seed = 12345;
	f->cfg.ehlo_domain = "client.test";
	f->cfg.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC;
	f->cfg.enable_pipelining = true;
}

static void fx_collect(struct fx *f)
{
	enum smtp_client_event ev;

	while ((ev = smtp_client_next_event(f->c)) != EV_NONE) {
		cr_assert_lt(f->n_events, PT_ARRAY_LEN(f->events));
		f->events[f->n_events++] = ev;
	}
}

static void fx_start(struct fx *f)
{
	f->c = smtp_client_new(&f->cfg);
	cr_assert_not_null(f->c);
	fx_collect(f);
}

static void fx_end(struct fx *f)
{
	smtp_client_free(f->c);
	f->c = NULL;
	f->n_events = 0;
}

/* Server bytes, cut as the mode says; events are collected after each piece. */
static void srv_n(struct fx *f, const char *s, size_t n)
{
	size_t off = 0;

	while (off < n) {
		size_t piece = n - off;

		if (f->mode == 1)
			piece = 1;
		else if (f->mode == 2) {
			f->seed = f->seed * 1103515245u + 12345u;
			piece = PT_MIN(piece, (size_t)(f->seed >> 16) % 7 + 1);
		}
		cr_assert_eq(smtp_client_feed(f->c, s + off, piece), PT_OK);
		off += piece;
		fx_collect(f);
	}
}

static void srv(struct fx *f, const char *s)
{
	srv_n(f, s, strlen(s));
}

/* The client's output since the last call is exactly want. */
static void expect_out(struct fx *f, const char *want)
{
	struct pt_buf *o = smtp_client_output(f->c);
	char *got = strndup(o->data ? o->data : "", o->len);

	cr_assert_str_eq(got, want, "[%s] client wrote:\n%s\nwanted:\n%s", mode_names[f->mode], got,
			 want);
	free(got);
	pt_buf_consume(o, o->len);
}

/* The events since the last call are exactly these (EV_NONE ends the list). */
static void expect_events_list(struct fx *f, const enum smtp_client_event *want)
{
	size_t n = 0;
	char got[256] = "", wanted[256] = "";

	while (want[n] != EV_NONE)
		n++;
	for (size_t i = 0; i < f->n_events; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), " %s",
			 event_names[f->events[i]]);
	for (size_t i = 0; i < n; i++)
		snprintf(wanted + strlen(wanted), sizeof(wanted) - strlen(wanted), " %s",
			 event_names[want[i]]);
	cr_assert_str_eq(got, wanted, "[%s] events:%s, wanted:%s", mode_names[f->mode], got,
			 wanted);
	f->n_events = 0;
}

#define expect_events(f, ...)                                                                      \
	expect_events_list(f, (const enum smtp_client_event[]){__VA_ARGS__, EV_NONE})

static void expect_reply(const struct smtp_client_reply *r, int code, const char *enh,
			 const char *content, const char *command, bool local)
{
	char got_enh[32] = "";

	cr_assert_not_null(r);
	if (r->enh_class >= 0)
		snprintf(got_enh, sizeof(got_enh), "%d.%d.%d", r->enh_class, r->enh_subject,
			 r->enh_detail);
	cr_assert_eq(r->code, code, "code %d, wanted %d (%s)", r->code, code, r->content);
	cr_assert_str_eq(got_enh, enh ? enh : "");
	cr_assert_str_eq(r->content, content);
	if (command)
		cr_assert_str_eq(r->command ? r->command : "(null)", command);
	else
		cr_assert_null(r->command, "command %s", r->command);
	cr_assert_eq(r->local, local, "local is %d", r->local);
}

static void expect_rcpt(struct fx *f, size_t i, int code, const char *enh, const char *content,
			const char *command, bool local)
{
	expect_reply(smtp_client_rcpt_reply(f->c, i), code, enh, content, command, local);
}

static void expect_failure(struct fx *f, int code, const char *enh, const char *content,
			   const char *command, bool local, bool before_ready)
{
	cr_assert_str_eq(smtp_client_strstate(f->c), "FAILED");
	expect_reply(smtp_client_failure(f->c), code, enh, content, command, local);
	cr_assert_eq(smtp_client_failed_before_ready(f->c), before_ready);
	cr_assert_eq(smtp_client_timeout_ms(f->c), 0);
}

/* A transaction: one body piece, recipients up to NULL. */
static void tx_make(struct fx *f, const char *sender, const char *body, ...)
{
	va_list ap;
	const char *r;

	memset(&f->tx, 0, sizeof(f->tx));
	f->tx.sender = sender;
	f->tx.n_rcpts = 0;
	va_start(ap, body);
	while ((r = va_arg(ap, const char *)) != NULL)
		f->rcpts[f->tx.n_rcpts++] = r;
	va_end(ap);
	f->tx.rcpts = f->rcpts;
	f->iov[0].iov_base = (void *)body;
	f->iov[0].iov_len = strlen(body);
	f->tx.body = f->iov;
	f->tx.n_body = 1;
	f->tx.body_len = strlen(body);
}

static void tx_send(struct fx *f)
{
	cr_assert_eq(smtp_client_send(f->c, &f->tx), PT_OK);
	fx_collect(f);
}

/* Banner and EHLO with this reply; the session is READY (no TLS offered). */
static void greet(struct fx *f, const char *ehlo_reply)
{
	fx_start(f);
	cr_assert_str_eq(smtp_client_strstate(f->c), "BANNER");
	expect_out(f, "");
	srv(f, BANNER);
	expect_out(f, "EHLO client.test\r\n");
	expect_events(f, EV_NONE);
	srv(f, ehlo_reply);
	expect_events(f, EV_READY);
	cr_assert_str_eq(smtp_client_strstate(f->c), "READY");
	cr_assert_eq(smtp_client_timeout_ms(f->c), 0);
}

typedef void (*scenario_fn)(struct fx *);

static void run_scenario(scenario_fn fn)
{
	for (int mode = 0; mode < 3; mode++) {
		struct fx f;

		fx_init(&f, mode);
		fn(&f);
		fx_end(&f);
	}
}

#define SCENARIO(name)                                                                             \
	static void scenario_##name(struct fx *f);                                                 \
	Test(smtp_client, name)                                                                    \
	{                                                                                          \
		run_scenario(scenario_##name);                                                     \
	}                                                                                          \
	static void scenario_##name(struct fx *f)

/* ---- sessions ---------------------------------------------------------- */

SCENARIO(plain_session_one_by_one)
{
	greet(f, EHLO_BARE);
	cr_assert_eq(smtp_client_extensions(f->c), 0);
	tx_make(f, "alice@client.test", BODY, "bob@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<alice@client.test>\r\n");
	cr_assert_str_eq(smtp_client_strstate(f->c), "MAIL");
	srv(f, "250 OK\r\n");
	expect_out(f, "RCPT TO:<bob@peer.test>\r\n");
	srv(f, "250 Accepted\r\n");
	expect_out(f, "DATA\r\n");
	srv(f, "354 Go ahead\r\n");
	expect_out(f, BODY ".\r\n");
	expect_events(f, EV_NONE);
	cr_assert_str_eq(smtp_client_strstate(f->c), "DOT");
	srv(f, "250 Queued as 42\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_out(f, "");
	expect_rcpt(f, 0, 250, NULL, "Queued as 42", "data dot", false);
	cr_assert_eq(smtp_client_n_transactions(f->c), 1);
	smtp_client_quit(f->c);
	expect_out(f, "QUIT\r\n");
	cr_assert_eq(smtp_client_timeout_ms(f->c), 5000);
	srv(f, "221 Bye\r\n");
	expect_events(f, EV_CLOSED);
	cr_assert_str_eq(smtp_client_strstate(f->c), "CLOSED");
	cr_assert_eq(smtp_client_timeout_ms(f->c), 0);
}

SCENARIO(pipelined_session_one_write)
{
	greet(f, EHLO_FULL);
	cr_assert_eq(smtp_client_extensions(f->c),
		     SMTP_CLIENT_EXT_PIPELINING | SMTP_CLIENT_EXT_SIZE | SMTP_CLIENT_EXT_8BITMIME |
			 SMTP_CLIENT_EXT_ENHANCEDSTATUSCODES | SMTP_CLIENT_EXT_SMTPUTF8);
	tx_make(f, "alice@client.test", BODY, "bob@peer.test", "carol@peer.test", NULL);
	tx_send(f);
	/* RFC 2920: the whole group in one write, DATA last; no body yet. */
	expect_out(f, "MAIL FROM:<alice@client.test> SIZE=22\r\n"
		      "RCPT TO:<bob@peer.test>\r\n"
		      "RCPT TO:<carol@peer.test>\r\n"
		      "DATA\r\n");
	srv(f, "250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n");
	expect_out(f, "");
	cr_assert_str_eq(smtp_client_strstate(f->c), "DATA");
	srv(f, "354 End data with <CR><LF>.<CR><LF>\r\n");
	expect_out(f, BODY ".\r\n");
	srv(f, "250 2.0.0 OK id=1\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 250, "2.0.0", "OK id=1", "data dot", false);
	expect_rcpt(f, 1, 250, "2.0.0", "OK id=1", "data dot", false);
	cr_assert_null(smtp_client_rcpt_reply(f->c, 2));
}

SCENARIO(pipelined_replies_in_one_read)
{
	greet(f, EHLO_FULL);
	tx_make(f, "", BODY, "bob@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<> SIZE=22\r\nRCPT TO:<bob@peer.test>\r\nDATA\r\n");
	srv(f, "250 2.1.0 OK\r\n250 2.1.5 OK\r\n354 go\r\n");
	expect_out(f, BODY ".\r\n");
	srv(f, "250 2.0.0 done\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 250, "2.0.0", "done", "data dot", false);
}

SCENARIO(pipelining_disabled_goes_one_by_one)
{
	f->cfg.enable_pipelining = false;
	greet(f, EHLO_FULL);
	tx_make(f, "alice@client.test", BODY, "bob@peer.test", "carol@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<alice@client.test> SIZE=22\r\n");
	srv(f, "250 2.1.0 OK\r\n");
	expect_out(f, "RCPT TO:<bob@peer.test>\r\n");
	cr_assert_str_eq(smtp_client_strstate(f->c), "RCPT");
	srv(f, "250 2.1.5 OK\r\n");
	expect_out(f, "RCPT TO:<carol@peer.test>\r\n");
	srv(f, "250 2.1.5 OK\r\n");
	expect_out(f, "DATA\r\n");
	srv(f, "354 go\r\n");
	expect_out(f, BODY ".\r\n");
	srv(f, "250 2.0.0 OK\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
}

SCENARIO(helo_fallback_after_5xx_to_ehlo)
{
	fx_start(f);
	srv(f, BANNER);
	expect_out(f, "EHLO client.test\r\n");
	srv(f, "502 5.5.1 EHLO not implemented\r\n");
	expect_out(f, "HELO client.test\r\n");
	cr_assert_str_eq(smtp_client_strstate(f->c), "HELO");
	expect_events(f, EV_NONE);
	srv(f, "250 mx.peer.test\r\n");
	expect_events(f, EV_READY);
	cr_assert_eq(smtp_client_extensions(f->c), 0);
	/* No extension: no SIZE, no BODY even for an 8-bit body. */
	tx_make(f, "a@client.test", "caf\xc3\xa9\r\n", "b@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test>\r\n");
}

SCENARIO(ehlo_4xx_fails_before_ready)
{
	fx_start(f);
	srv(f, BANNER);
	expect_out(f, "EHLO client.test\r\n");
	srv(f, "450 4.3.2 try later\r\n");
	expect_events(f, EV_FAILED);
	expect_failure(f, 450, "4.3.2", "try later", "EHLO", false, true);
	expect_out(f, "");
	/* Nothing more is read or written. */
	srv(f, "250 OK\r\n");
	expect_events(f, EV_NONE);
	expect_out(f, "");
}

SCENARIO(helo_refused_fails_before_ready)
{
	fx_start(f);
	srv(f, BANNER);
	srv(f, "500 what\r\n");
	expect_out(f, "EHLO client.test\r\nHELO client.test\r\n");
	srv(f, "554 5.7.1 go away\r\n");
	expect_events(f, EV_FAILED);
	expect_failure(f, 554, "5.7.1", "go away", "HELO", false, true);
}

SCENARIO(banner_refused_fails_before_ready)
{
	fx_start(f);
	srv(f, "554-5.7.1 no service\r\n554 5.7.1 for you\r\n");
	expect_events(f, EV_FAILED);
	expect_out(f, "");
	expect_failure(f, 554, "5.7.1", "no service\nfor you", "banner", false, true);
}

SCENARIO(multi_line_banner)
{
	fx_start(f);
	srv(f, "220-mx.peer.test ESMTP\r\n220-no UCE\r\n220 welcome\r\n");
	expect_out(f, "EHLO client.test\r\n");
}

SCENARIO(ehlo_domain_that_is_an_address_is_a_literal)
{
	f->cfg.ehlo_domain = "192.0.2.7";
	fx_start(f);
	srv(f, BANNER);
	expect_out(f, "EHLO [192.0.2.7]\r\n");
	srv(f, "501 no literals\r\n");
	expect_out(f, "HELO [192.0.2.7]\r\n");
	fx_end(f);
	f->cfg.ehlo_domain = "2001:db8::1";
	fx_start(f);
	srv(f, BANNER);
	expect_out(f, "EHLO [IPv6:2001:db8::1]\r\n");
}

/* ---- STARTTLS ------------------------------------------------------------ */

#define EHLO_TLS                                                                                   \
	"250-mx.peer.test\r\n"                                                                     \
	"250-SIZE 100\r\n"                                                                         \
	"250 STARTTLS\r\n"

/* Banner, EHLO offering STARTTLS, STARTTLS accepted: START_TLS is raised. */
static void reach_start_tls(struct fx *f)
{
	fx_start(f);
	srv(f, BANNER);
	srv(f, EHLO_TLS);
	expect_out(f, "EHLO client.test\r\nSTARTTLS\r\n");
	expect_events(f, EV_NONE);
	cr_assert_eq(smtp_client_timeout_ms(f->c), 5000);
	/* A reply pipelined behind the 220 must not count (RFC 3207 4.2). */
	srv(f, "220 2.0.0 Ready to start TLS\r\n250 2.1.0 injected\r\n");
	expect_events(f, EV_STARTTLS);
	expect_out(f, "");
	cr_assert_str_eq(smtp_client_strstate(f->c), "TLS");
	cr_assert_eq(smtp_client_timeout_ms(f->c), 5000, "the handshake has starttls_timeout");
	cr_assert_not(smtp_client_tls_active(f->c));
	/* Still before the handshake: discarded too. */
	srv(f, "421 4.7.0 injected\r\n");
	expect_events(f, EV_NONE);
}

/* The handshake succeeds: EHLO again, extensions learnt afresh. */
static void finish_tls(struct fx *f)
{
	smtp_client_tls_done(f->c, true, NULL);
	cr_assert(smtp_client_tls_active(f->c));
	expect_out(f, "EHLO client.test\r\n");
	cr_assert_eq(smtp_client_extensions(f->c), 0, "old extensions kept after STARTTLS");
	srv(f, "250-mx.peer.test\r\n250 PIPELINING\r\n");
	expect_events(f, EV_READY);
	cr_assert_eq(smtp_client_extensions(f->c), SMTP_CLIENT_EXT_PIPELINING);
	/* The pre-TLS SIZE 100 no longer applies: a 198-octet message goes. */
	tx_make(
	    f, "a@client.test",
	    "0123456789012345678901234567890123456789012345678901234567890123456789012345678\r\n"
	    "0123456789012345678901234567890123456789012345678901234567890123456789012345678\r\n"
	    "0123456789012345678901234567890123\r\n",
	    "b@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test>\r\nRCPT TO:<b@peer.test>\r\nDATA\r\n");
}

SCENARIO(starttls_opportunistic_verifies)
{
	f->cfg.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC;
	reach_start_tls(f);
	cr_assert(smtp_client_tls_verify(f->c));
	finish_tls(f);
}

SCENARIO(starttls_opportunistic_insecure_does_not_verify)
{
	f->cfg.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC_INSECURE;
	reach_start_tls(f);
	cr_assert_not(smtp_client_tls_verify(f->c));
	finish_tls(f);
}

SCENARIO(starttls_required_verifies)
{
	f->cfg.tls = SMTP_CLIENT_TLS_REQUIRED;
	reach_start_tls(f);
	cr_assert(smtp_client_tls_verify(f->c));
	finish_tls(f);
}

SCENARIO(starttls_required_insecure_does_not_verify)
{
	f->cfg.tls = SMTP_CLIENT_TLS_REQUIRED_INSECURE;
	reach_start_tls(f);
	cr_assert_not(smtp_client_tls_verify(f->c));
	finish_tls(f);
}

SCENARIO(starttls_disabled_never_used)
{
	f->cfg.tls = SMTP_CLIENT_TLS_DISABLED;
	greet(f, EHLO_TLS);
	cr_assert_not(smtp_client_tls_verify(f->c));
	cr_assert_not(smtp_client_tls_active(f->c));
	cr_assert_eq(smtp_client_extensions(f->c), SMTP_CLIENT_EXT_SIZE | SMTP_CLIENT_EXT_STARTTLS);
}

SCENARIO(starttls_handshake_failure_fails_before_ready)
{
	reach_start_tls(f);
	smtp_client_tls_done(f->c, false, "handshake: ASN self-signed certificate error (-275)");
	fx_collect(f);
	expect_events(f, EV_FAILED);
	expect_out(f, "");
	expect_failure(f, 451, "4.7.5",
		       "TLS handshake failed: handshake: ASN self-signed certificate error (-275)",
		       "STARTTLS", true, true);
	cr_assert_not(smtp_client_tls_active(f->c));
}

SCENARIO(starttls_required_but_not_offered_fails_before_ready)
{
	f->cfg.tls = SMTP_CLIENT_TLS_REQUIRED;
	fx_start(f);
	srv(f, BANNER);
	srv(f, EHLO_FULL);
	expect_out(f, "EHLO client.test\r\n");
	expect_events(f, EV_FAILED);
	expect_failure(f, 451, "4.7.4", "TLS is required, but the peer did not advertise STARTTLS",
		       "EHLO", true, true);
}

SCENARIO(starttls_required_insecure_after_helo_fails_before_ready)
{
	f->cfg.tls = SMTP_CLIENT_TLS_REQUIRED_INSECURE;
	fx_start(f);
	srv(f, BANNER);
	srv(f, "500 5.5.1 unknown command\r\n");
	srv(f, "250 mx.peer.test\r\n");
	expect_out(f, "EHLO client.test\r\nHELO client.test\r\n");
	expect_events(f, EV_FAILED);
	expect_failure(f, 451, "4.7.4", "TLS is required, but the peer did not advertise STARTTLS",
		       "HELO", true, true);
}

SCENARIO(starttls_opportunistic_not_offered_goes_plain)
{
	f->cfg.tls = SMTP_CLIENT_TLS_OPPORTUNISTIC_INSECURE;
	greet(f, EHLO_FULL);
	cr_assert_not(smtp_client_tls_active(f->c));
}

SCENARIO(starttls_refused_fails_before_ready)
{
	fx_start(f);
	srv(f, BANNER);
	srv(f, EHLO_TLS);
	expect_out(f, "EHLO client.test\r\nSTARTTLS\r\n");
	srv(f, "454 4.7.0 TLS not available\r\n");
	expect_events(f, EV_FAILED);
	expect_failure(f, 454, "4.7.0", "TLS not available", "STARTTLS", false, true);
}

SCENARIO(tls_done_outside_the_handshake_is_ignored)
{
	greet(f, EHLO_BARE);
	smtp_client_tls_done(f->c, true, NULL);
	smtp_client_tls_done(f->c, false, "x");
	fx_collect(f);
	expect_events(f, EV_NONE);
	expect_out(f, "");
	cr_assert_not(smtp_client_tls_active(f->c));
	cr_assert_str_eq(smtp_client_strstate(f->c), "READY");
}

/* ---- recipients and their replies --------------------------------------- */

SCENARIO(mixed_rcpt_results)
{
	greet(f, EHLO_FULL);
	tx_make(f, "a@client.test", BODY, "nobody@peer.test", "bob@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test> SIZE=22\r\nRCPT TO:<nobody@peer.test>\r\n"
		      "RCPT TO:<bob@peer.test>\r\nDATA\r\n");
	srv(f, "250 2.1.0 OK\r\n550 5.1.1 no such user\r\n250 2.1.5 OK\r\n354 go\r\n");
	expect_out(f, BODY ".\r\n");
	srv(f, "250 2.0.0 queued\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 550, "5.1.1", "no such user", "RCPT TO", false);
	expect_rcpt(f, 1, 250, "2.0.0", "queued", "data dot", false);
	/* It ended with its dot: the next transaction needs no RSET. */
	tx_make(f, "a@client.test", BODY, "bob@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test> SIZE=22\r\nRCPT TO:<bob@peer.test>\r\nDATA\r\n");
}

SCENARIO(mixed_rcpt_results_one_by_one)
{
	greet(f, EHLO_BARE);
	tx_make(f, "a@client.test", BODY, "b@peer.test", "nobody@peer.test", "c@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test>\r\n");
	srv(f, "250 OK\r\n");
	expect_out(f, "RCPT TO:<b@peer.test>\r\n");
	srv(f, "250 OK\r\n");
	expect_out(f, "RCPT TO:<nobody@peer.test>\r\n");
	srv(f, "450 4.2.1 mailbox busy\r\n");
	expect_out(f, "RCPT TO:<c@peer.test>\r\n");
	srv(f, "250 OK\r\n");
	expect_out(f, "DATA\r\n");
	srv(f, "354 go\r\n");
	expect_out(f, BODY ".\r\n");
	srv(f, "550 5.7.1 spam\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 550, "5.7.1", "spam", "data dot", false);
	expect_rcpt(f, 1, 450, "4.2.1", "mailbox busy", "RCPT TO", false);
	expect_rcpt(f, 2, 550, "5.7.1", "spam", "data dot", false);
}

SCENARIO(all_rcpts_refused_one_by_one_sends_no_data)
{
	greet(f, EHLO_BARE);
	tx_make(f, "a@client.test", BODY, "x@peer.test", "y@peer.test", NULL);
	tx_send(f);
	srv(f, "250 OK\r\n");
	srv(f, "550 5.1.1 unknown x\r\n");
	srv(f, "551 5.1.6 moved\r\n");
	expect_out(f, "MAIL FROM:<a@client.test>\r\nRCPT TO:<x@peer.test>\r\n"
		      "RCPT TO:<y@peer.test>\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 550, "5.1.1", "unknown x", "RCPT TO", false);
	expect_rcpt(f, 1, 551, "5.1.6", "moved", "RCPT TO", false);
	/* Ended before its dot: RSET first, then MAIL once RSET is answered. */
	tx_make(f, "a@client.test", BODY, "z@peer.test", NULL);
	tx_send(f);
	expect_out(f, "RSET\r\n");
	cr_assert_str_eq(smtp_client_strstate(f->c), "RSET");
	cr_assert_eq(smtp_client_timeout_ms(f->c), 5000);
	srv(f, "250 OK\r\n");
	expect_out(f, "MAIL FROM:<a@client.test>\r\n");
	srv(f, "250 OK\r\n");
	expect_out(f, "RCPT TO:<z@peer.test>\r\n");
}

SCENARIO(all_rcpts_refused_pipelined_data_refused)
{
	greet(f, EHLO_FULL);
	tx_make(f, "a@client.test", BODY, "x@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test> SIZE=22\r\nRCPT TO:<x@peer.test>\r\nDATA\r\n");
	srv(f, "250 2.1.0 OK\r\n550 5.1.1 unknown\r\n554 5.5.1 no valid recipients\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_out(f, "");
	expect_rcpt(f, 0, 550, "5.1.1", "unknown", "RCPT TO", false);
	tx_make(f, "a@client.test", BODY, "z@peer.test", NULL);
	tx_send(f);
	/* RSET goes in the same group as the next MAIL. */
	expect_out(f, "RSET\r\nMAIL FROM:<a@client.test> SIZE=22\r\nRCPT TO:<z@peer.test>\r\n"
		      "DATA\r\n");
	srv(f, "250 2.0.0 OK\r\n250 2.1.0 OK\r\n250 2.1.5 OK\r\n354 go\r\n");
	expect_out(f, BODY ".\r\n");
}

SCENARIO(all_rcpts_refused_pipelined_data_accepted_gets_a_lone_dot)
{
	greet(f, EHLO_FULL);
	tx_make(f, "a@client.test", BODY, "x@peer.test", "y@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test> SIZE=22\r\nRCPT TO:<x@peer.test>\r\n"
		      "RCPT TO:<y@peer.test>\r\nDATA\r\n");
	srv(f, "250 OK\r\n550 5.1.1 unknown x\r\n452 4.5.3 too many\r\n354 go\r\n");
	/* RFC 2920 3.1: DATA was accepted with nobody to send to: just end it. */
	expect_out(f, ".\r\n");
	expect_events(f, EV_NONE);
	cr_assert_str_eq(smtp_client_strstate(f->c), "DATA_ABORT");
	cr_assert_eq(smtp_client_timeout_ms(f->c), 300000);
	srv(f, "554 5.5.1 no valid recipients\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 550, "5.1.1", "unknown x", "RCPT TO", false);
	expect_rcpt(f, 1, 452, "4.5.3", "too many", "RCPT TO", false);
	tx_send(f);
	expect_out(f, "RSET\r\nMAIL FROM:<a@client.test> SIZE=22\r\nRCPT TO:<x@peer.test>\r\n"
		      "RCPT TO:<y@peer.test>\r\nDATA\r\n");
}

SCENARIO(mail_refused_one_by_one)
{
	greet(f, EHLO_BARE);
	tx_make(f, "a@client.test", BODY, "x@peer.test", "y@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test>\r\n");
	srv(f, "553 5.1.8 sender domain does not exist\r\n");
	expect_out(f, "");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 553, "5.1.8", "sender domain does not exist", "MAIL FROM", false);
	expect_rcpt(f, 1, 553, "5.1.8", "sender domain does not exist", "MAIL FROM", false);
	tx_send(f);
	expect_out(f, "RSET\r\n");
}

SCENARIO(mail_refused_pipelined_reads_every_reply)
{
	greet(f, EHLO_FULL);
	tx_make(f, "a@client.test", BODY, "x@peer.test", "y@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test> SIZE=22\r\nRCPT TO:<x@peer.test>\r\n"
		      "RCPT TO:<y@peer.test>\r\nDATA\r\n");
	srv(f, "451 4.3.0 try later\r\n503 5.5.1 need MAIL\r\n");
	expect_events(f, EV_NONE);
	srv(f, "503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_out(f, "");
	expect_rcpt(f, 0, 451, "4.3.0", "try later", "MAIL FROM", false);
	expect_rcpt(f, 1, 451, "4.3.0", "try later", "MAIL FROM", false);
}

SCENARIO(mail_refused_pipelined_then_354_gets_a_lone_dot)
{
	greet(f, EHLO_FULL);
	tx_make(f, "a@client.test", BODY, "x@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test> SIZE=22\r\nRCPT TO:<x@peer.test>\r\nDATA\r\n");
	srv(f, "550 5.7.1 sender refused\r\n250 OK\r\n354 go\r\n");
	expect_out(f, ".\r\n");
	srv(f, "250 OK\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 550, "5.7.1", "sender refused", "MAIL FROM", false);
}

SCENARIO(data_451_goes_to_accepted_rcpts)
{
	greet(f, EHLO_FULL);
	tx_make(f, "a@client.test", BODY, "x@peer.test", "y@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test> SIZE=22\r\nRCPT TO:<x@peer.test>\r\n"
		      "RCPT TO:<y@peer.test>\r\nDATA\r\n");
	srv(f, "250 OK\r\n250 OK\r\n550 5.1.1 unknown y\r\n451 4.3.0 local problem\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_out(f, "");
	expect_rcpt(f, 0, 451, "4.3.0", "local problem", "DATA", false);
	expect_rcpt(f, 1, 550, "5.1.1", "unknown y", "RCPT TO", false);
	tx_send(f);
	expect_out(f, "RSET\r\nMAIL FROM:<a@client.test> SIZE=22\r\nRCPT TO:<x@peer.test>\r\n"
		      "RCPT TO:<y@peer.test>\r\nDATA\r\n");
}

SCENARIO(dot_550_goes_to_accepted_rcpts)
{
	greet(f, EHLO_BARE);
	tx_make(f, "a@client.test", BODY, "x@peer.test", NULL);
	tx_send(f);
	srv(f, "250 OK\r\n");
	srv(f, "250 OK\r\n");
	srv(f, "354 go\r\n");
	srv(f, "550-5.7.1 message refused\r\n550 5.7.1 see https://peer.test/why\r\n");
	expect_out(f,
		   "MAIL FROM:<a@client.test>\r\nRCPT TO:<x@peer.test>\r\nDATA\r\n" BODY ".\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 550, "5.7.1", "message refused\nsee https://peer.test/why", "data dot",
		    false);
	/* A refused dot still ends the transaction: no RSET. */
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test>\r\n");
}

/* ---- 421, EOF, timeouts ---------------------------------------------------- */

SCENARIO(reply_421_mid_transaction_fails_the_session)
{
	greet(f, EHLO_FULL);
	tx_make(f, "a@client.test", BODY, "x@peer.test", "y@peer.test", "z@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test> SIZE=22\r\nRCPT TO:<x@peer.test>\r\n"
		      "RCPT TO:<y@peer.test>\r\nRCPT TO:<z@peer.test>\r\nDATA\r\n");
	srv(f, "250 OK\r\n250 OK\r\n550 5.1.1 unknown y\r\n421 4.3.2 shutting down\r\n");
	expect_events(f, EV_TX_DONE, EV_FAILED);
	expect_rcpt(f, 0, 421, "4.3.2", "shutting down", "RCPT TO", false);
	expect_rcpt(f, 1, 550, "5.1.1", "unknown y", "RCPT TO", false);
	expect_rcpt(f, 2, 421, "4.3.2", "shutting down", "RCPT TO", false);
	expect_failure(f, 421, "4.3.2", "shutting down", "RCPT TO", false, false);
	cr_assert_eq(smtp_client_n_transactions(f->c), 1);
	/* What follows the 421 is ignored; send and quit are refused. */
	srv(f, "250 OK\r\n");
	expect_events(f, EV_NONE);
	cr_assert_eq(smtp_client_send(f->c, &f->tx), PT_ERROR);
	smtp_client_quit(f->c);
	expect_out(f, "");
}

SCENARIO(reply_421_to_the_dot)
{
	greet(f, EHLO_FULL);
	tx_make(f, "a@client.test", BODY, "x@peer.test", NULL);
	tx_send(f);
	srv(f, "250 OK\r\n250 OK\r\n354 go\r\n");
	srv(f, "421 4.4.2 timeout\r\n");
	expect_events(f, EV_TX_DONE, EV_FAILED);
	expect_rcpt(f, 0, 421, "4.4.2", "timeout", "data dot", false);
}

SCENARIO(reply_421_while_idle_fails_the_session)
{
	greet(f, EHLO_FULL);
	srv(f, "421 4.4.2 mx.peer.test idle too long\r\n");
	expect_events(f, EV_FAILED);
	expect_failure(f, 421, "4.4.2", "mx.peer.test idle too long", NULL, false, false);
}

SCENARIO(ready_not_taken_is_dropped_when_the_session_fails)
{
	fx_start(f);
	/* READY and the failure arrive in one read; only FAILED is raised. */
	cr_assert_eq(smtp_client_feed(f->c, BANNER, strlen(BANNER)), PT_OK);
	cr_assert_eq(
	    smtp_client_feed(f->c, EHLO_BARE "421 bye\r\n", strlen(EHLO_BARE "421 bye\r\n")),
	    PT_OK);
	fx_collect(f);
	expect_events(f, EV_FAILED);
	expect_failure(f, 421, NULL, "bye", NULL, false, false);
}

SCENARIO(eof_mid_transaction)
{
	greet(f, EHLO_BARE);
	tx_make(f, "a@client.test", BODY, "x@peer.test", "y@peer.test", NULL);
	tx_send(f);
	srv(f, "250 OK\r\n");
	srv(f, "550 5.1.1 unknown x\r\n");
	expect_out(f, "MAIL FROM:<a@client.test>\r\nRCPT TO:<x@peer.test>\r\n"
		      "RCPT TO:<y@peer.test>\r\n");
	srv(f, "250 O"); /* half a reply, then the connection drops */
	smtp_client_eof(f->c);
	fx_collect(f);
	expect_events(f, EV_TX_DONE, EV_FAILED);
	expect_rcpt(f, 0, 550, "5.1.1", "unknown x", "RCPT TO", false);
	expect_rcpt(f, 1, 451, "4.4.2",
		    "connection closed by the peer while waiting for the reply to RCPT TO",
		    "RCPT TO", true);
	expect_failure(f, 451, "4.4.2",
		       "connection closed by the peer while waiting for the reply to RCPT TO",
		       "RCPT TO", true, false);
	smtp_client_eof(f->c);
	smtp_client_timeout(f->c);
	fx_collect(f);
	expect_events(f, EV_NONE);
}

SCENARIO(eof_before_ready_and_while_idle)
{
	fx_start(f);
	smtp_client_eof(f->c);
	fx_collect(f);
	expect_events(f, EV_FAILED);
	expect_failure(f, 451, "4.4.2",
		       "connection closed by the peer while waiting for the banner", "banner", true,
		       true);
	fx_end(f);
	greet(f, EHLO_BARE);
	smtp_client_eof(f->c);
	fx_collect(f);
	expect_events(f, EV_FAILED);
	expect_failure(f, 451, "4.4.2", "connection closed by the peer while idle", NULL, true,
		       false);
}

SCENARIO(quit_closes_on_221_eof_or_timeout)
{
	greet(f, EHLO_BARE);
	smtp_client_quit(f->c);
	expect_out(f, "QUIT\r\n");
	smtp_client_eof(f->c);
	fx_collect(f);
	expect_events(f, EV_CLOSED);
	fx_end(f);
	greet(f, EHLO_BARE);
	smtp_client_quit(f->c);
	smtp_client_quit(f->c); /* not READY any more: nothing */
	expect_out(f, "QUIT\r\n");
	smtp_client_timeout(f->c);
	fx_collect(f);
	expect_events(f, EV_CLOSED);
	cr_assert_str_eq(smtp_client_strstate(f->c), "CLOSED");
}

/* Each phase times out with its own timeout, named in the failure. */
struct phase_case {
	const char *state;
	uint64_t ms;
	const char *content;
	const char *command;
	bool before_ready;
};

static void configure_timeouts(struct fx *f)
{
	f->cfg.banner_timeout_ms = 1001;
	f->cfg.ehlo_timeout_ms = 1002;
	f->cfg.starttls_timeout_ms = 1003;
	f->cfg.mail_from_timeout_ms = 1004;
	f->cfg.rcpt_to_timeout_ms = 1005;
	f->cfg.data_timeout_ms = 1006;
	f->cfg.data_dot_timeout_ms = 1007;
	f->cfg.rset_timeout_ms = 2000;
	f->cfg.quit_timeout_ms = 3000;
}

/* Drive a fresh session to the named state. */
static void reach_state(struct fx *f, const char *state)
{
	fx_start(f);
	if (!strcmp(state, "BANNER"))
		return;
	srv(f, BANNER);
	if (!strcmp(state, "EHLO"))
		return;
	if (!strcmp(state, "HELO")) {
		srv(f, "502 no\r\n");
		return;
	}
	if (!strcmp(state, "STARTTLS") || !strcmp(state, "TLS")) {
		srv(f, EHLO_TLS);
		if (!strcmp(state, "TLS"))
			srv(f, "220 go\r\n");
		return;
	}
	srv(f, "250-mx\r\n250 SIZE 1000\r\n");
	tx_make(f, "a@client.test", BODY, "x@peer.test", NULL);
	if (!strcmp(state, "RSET")) {
		tx_send(f);
		srv(f, "550 no\r\n");
		tx_send(f);
		return;
	}
	tx_send(f);
	if (!strcmp(state, "MAIL"))
		return;
	srv(f, "250 OK\r\n");
	if (!strcmp(state, "RCPT"))
		return;
	srv(f, "250 OK\r\n");
	if (!strcmp(state, "DATA"))
		return;
	srv(f, "354 go\r\n");
}

SCENARIO(timeout_in_each_phase_names_the_phase)
{
	static const struct phase_case cases[] = {
	    {"BANNER", 1001, "timed out waiting 1001ms for the banner", "banner", true},
	    {"EHLO", 1002, "timed out waiting 1002ms for the reply to EHLO", "EHLO", true},
	    {"HELO", 1002, "timed out waiting 1002ms for the reply to HELO", "HELO", true},
	    {"STARTTLS", 1003, "timed out waiting 1003ms for the reply to STARTTLS", "STARTTLS",
	     true},
	    {"TLS", 1003, "timed out waiting 1003ms for the TLS handshake", "STARTTLS", true},
	    {"RSET", 2000, "timed out waiting 2s for the reply to RSET", "RSET", false},
	    {"MAIL", 1004, "timed out waiting 1004ms for the reply to MAIL FROM", "MAIL FROM",
	     false},
	    {"RCPT", 1005, "timed out waiting 1005ms for the reply to RCPT TO", "RCPT TO", false},
	    {"DATA", 1006, "timed out waiting 1006ms for the reply to DATA", "DATA", false},
	    {"DOT", 1007, "timed out waiting 1007ms for the reply to the final dot", "data dot",
	     false},
	};

	configure_timeouts(f);
	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		const struct phase_case *k = &cases[i];
		reach_state(f, k->state);
		cr_assert_str_eq(smtp_client_strstate(f->c), k->state);
		cr_assert_eq(smtp_client_timeout_ms(f->c), k->ms, "%s: %" PRIu64, k->state,
			     smtp_client_timeout_ms(f->c));
		f->n_events = 0;
		smtp_client_timeout(f->c);
		fx_collect(f);
		if (k->before_ready)
			expect_events(f, EV_FAILED);
		else
			expect_events(f, EV_TX_DONE, EV_FAILED);
		expect_failure(f, 451, "4.4.2", k->content, k->command, true, k->before_ready);
		if (!k->before_ready)
			expect_rcpt(f, 0, 451, "4.4.2", k->content, k->command, true);
		fx_end(f);
	}
}

SCENARIO(timeouts_default_to_kumomta_values)
{
	fx_start(f);
	cr_assert_eq(smtp_client_timeout_ms(f->c), 60000);
	srv(f, BANNER);
	cr_assert_eq(smtp_client_timeout_ms(f->c), 300000);
	srv(f, EHLO_TLS);
	cr_assert_eq(smtp_client_timeout_ms(f->c), 5000);
	smtp_client_timeout(f->c);
	fx_collect(f);
	expect_failure(f, 451, "4.4.2", "timed out waiting 5s for the reply to STARTTLS",
		       "STARTTLS", true, true);
	fx_end(f);
	greet(f, EHLO_BARE);
	tx_make(f, "a@client.test", BODY, "x@peer.test", NULL);
	tx_send(f);
	cr_assert_eq(smtp_client_timeout_ms(f->c), 300000);
	srv(f, "250 OK\r\n");
	cr_assert_eq(smtp_client_timeout_ms(f->c), 300000);
	srv(f, "250 OK\r\n");
	cr_assert_eq(smtp_client_timeout_ms(f->c), 300000);
	srv(f, "354 OK\r\n");
	cr_assert_eq(smtp_client_timeout_ms(f->c), 300000);
	srv(f, "250 OK\r\n");
	cr_assert_eq(smtp_client_timeout_ms(f->c), 0);
	/* Timing out while idle is the shard's idle_timeout, not ours. */
	smtp_client_timeout(f->c);
	fx_collect(f);
	expect_events(f, EV_TX_DONE, EV_READY);
	cr_assert_str_eq(smtp_client_strstate(f->c), "READY");
}

/* ---- the body ---------------------------------------------------------- */

static void send_body_iov(struct fx *f, const char *const *pieces, size_t n)
{
	size_t len = 0;

	tx_make(f, "a@client.test", "", "x@peer.test", NULL);
	for (size_t i = 0; i < n; i++) {
		f->iov[i].iov_base = (void *)pieces[i];
		f->iov[i].iov_len = strlen(pieces[i]);
		len += strlen(pieces[i]);
	}
	f->tx.n_body = (int)n;
	f->tx.body_len = len;
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test>\r\n");
	srv(f, "250 OK\r\n");
	expect_out(f, "RCPT TO:<x@peer.test>\r\n");
	srv(f, "250 OK\r\n");
	expect_out(f, "DATA\r\n");
	srv(f, "354 go\r\n");
}

static void finish_body(struct fx *f)
{
	srv(f, "250 OK\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
}

SCENARIO(body_is_dot_stuffed_across_pieces)
{
	static const char *const pieces[] = {
	    ".first line starts with a dot\r\n", /* at the very start */
	    "..two dots\r\n.",			 /* a dot that ends a piece */
	    "\r\nmiddle . dot\r\nx.y\r\n",	 /* and "." alone on a line */
	    ".",				 /* a piece of just a dot at the start of a line */
	    "\r\n",
	};

	greet(f, EHLO_BARE);
	send_body_iov(f, pieces, PT_ARRAY_LEN(pieces));
	expect_out(f, "..first line starts with a dot\r\n"
		      "...two dots\r\n"
		      "..\r\n"
		      "middle . dot\r\n"
		      "x.y\r\n"
		      "..\r\n"
		      ".\r\n");
	finish_body(f);
}

/* The shard traces commands and body apart: the body's place in the output,
 * once, without the final dot line; none in a commands-only output. */
SCENARIO(output_body_marks_the_body_once)
{
	static const char *const pieces[] = {".dot\r\n", "no final CRLF"};
	size_t off = 99, len = 99;
	struct pt_buf *o;

	greet(f, EHLO_BARE);
	cr_assert_not(smtp_client_output_body(f->c, &off, &len));
	cr_assert_eq(off + len, 0);
	send_body_iov(f, pieces, PT_ARRAY_LEN(pieces));
	o = smtp_client_output(f->c);
	cr_assert(smtp_client_output_body(f->c, &off, &len));
	cr_assert_eq(off, 0);
	cr_assert_eq(len, strlen("..dot\r\nno final CRLF\r\n"));
	cr_assert_eq(o->len, len + 3);
	cr_assert_not(smtp_client_output_body(f->c, &off, &len), "forgotten once asked");
	expect_out(f, "..dot\r\nno final CRLF\r\n.\r\n");
	finish_body(f);
}

SCENARIO(body_without_final_crlf_gets_one)
{
	static const char *const pieces[] = {"line one\r\n", ".last line"};

	greet(f, EHLO_BARE);
	send_body_iov(f, pieces, PT_ARRAY_LEN(pieces));
	expect_out(f, "line one\r\n..last line\r\n.\r\n");
	finish_body(f);
}

SCENARIO(body_ending_in_cr_split_from_lf_needs_nothing_added)
{
	static const char *const pieces[] = {"line one\r", "\n", ""};

	greet(f, EHLO_BARE);
	send_body_iov(f, pieces, PT_ARRAY_LEN(pieces));
	expect_out(f, "line one\r\n.\r\n");
	finish_body(f);
}

SCENARIO(empty_body_is_just_the_dot)
{
	static const char *const pieces[] = {""};

	greet(f, EHLO_BARE);
	send_body_iov(f, pieces, 1);
	expect_out(f, ".\r\n");
	finish_body(f);
}

/* ---- MAIL parameters, SIZE --------------------------------------------- */

SCENARIO(size_and_8bitmime_parameters)
{
	greet(f, EHLO_FULL);
	/* 8-bit body: BODY=8BITMIME; no final CRLF: SIZE counts the CRLF added. */
	tx_make(f, "a@client.test", "Subject: caf\xc3\xa9", "x@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test> SIZE=16 BODY=8BITMIME\r\n"
		      "RCPT TO:<x@peer.test>\r\nDATA\r\n");
	srv(f, "250 OK\r\n250 OK\r\n354 go\r\n");
	expect_out(f, "Subject: caf\xc3\xa9\r\n.\r\n");
	srv(f, "250 OK\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	/* An UTF-8 envelope: SMTPUTF8 (RFC 6531 3.4); a 7-bit body: no BODY. */
	tx_make(f, "j\xc3\xb6rg@client.test", BODY, "x@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<j\xc3\xb6rg@client.test> SIZE=22 SMTPUTF8\r\n"
		      "RCPT TO:<x@peer.test>\r\nDATA\r\n");
}

SCENARIO(no_8bitmime_no_body_parameter)
{
	greet(f, "250-mx\r\n250-PIPELINING\r\n250 SIZE\r\n");
	/* "SIZE" without a number: advertised, no limit (RFC 1870 4). */
	cr_assert_eq(smtp_client_extensions(f->c),
		     SMTP_CLIENT_EXT_PIPELINING | SMTP_CLIENT_EXT_SIZE);
	tx_make(f, "j\xc3\xb6rg@client.test", "caf\xc3\xa9\r\n", "x@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<j\xc3\xb6rg@client.test> SIZE=7\r\n"
		      "RCPT TO:<x@peer.test>\r\nDATA\r\n");
}

SCENARIO(message_over_the_peers_size_fails_locally)
{
	greet(f, "250-mx\r\n250-PIPELINING\r\n250 SIZE 21\r\n");
	tx_make(f, "a@client.test", BODY, "x@peer.test", "y@peer.test", NULL);
	tx_send(f);
	/* Nothing sent, decided at once, still READY. */
	expect_out(f, "");
	expect_events(f, EV_TX_DONE, EV_READY);
	cr_assert_str_eq(smtp_client_strstate(f->c), "READY");
	expect_rcpt(f, 0, 552, "5.3.4",
		    "message size 22 exceeds the peer's limit of 21 octets (SIZE)", "MAIL FROM",
		    true);
	expect_rcpt(f, 1, 552, "5.3.4",
		    "message size 22 exceeds the peer's limit of 21 octets (SIZE)", "MAIL FROM",
		    true);
	cr_assert_eq(smtp_client_n_transactions(f->c), 1);
	/* At the limit exactly it goes, with no RSET: nothing was started. */
	tx_make(f, "a@client.test", "Subject: hi\r\n\r\nhell\r\n", "x@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test> SIZE=21\r\nRCPT TO:<x@peer.test>\r\nDATA\r\n");
}

SCENARIO(paths_that_cannot_be_sent_are_refused_locally)
{
	greet(f, EHLO_FULL);
	tx_make(f, "a@client.test", BODY, "x@peer.test\r\nRSET", "y@peer.test", "z>@peer.test",
		NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test> SIZE=22\r\nRCPT TO:<y@peer.test>\r\nDATA\r\n");
	srv(f, "250 OK\r\n250 OK\r\n354 go\r\n");
	expect_out(f, BODY ".\r\n");
	srv(f, "250 2.0.0 OK\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 501, "5.1.3",
		    "recipient address cannot be sent: it contains CR, LF, < or >", "RCPT TO",
		    true);
	expect_rcpt(f, 1, 250, "2.0.0", "OK", "data dot", false);
	expect_rcpt(f, 2, 501, "5.1.3",
		    "recipient address cannot be sent: it contains CR, LF, < or >", "RCPT TO",
		    true);
	/* A sender that cannot be sent: nothing goes, every recipient gets 501. */
	tx_make(f, "a@client.test>", BODY, "y@peer.test", NULL);
	tx_send(f);
	expect_out(f, "");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 501, "5.1.7", "sender address cannot be sent: it contains CR, LF, < or >",
		    "MAIL FROM", true);
	/* Nobody left to send to: decided locally too. */
	tx_make(f, "a@client.test", BODY, "\r\n", NULL);
	tx_send(f);
	expect_out(f, "");
	expect_events(f, EV_TX_DONE, EV_READY);
}

/* ---- two transactions ---------------------------------------------------- */

SCENARIO(two_transactions_rset_only_after_a_failure)
{
	greet(f, EHLO_BARE);
	tx_make(f, "a@client.test", BODY, "x@peer.test", NULL);
	tx_send(f);
	srv(f, "250 OK\r\n");
	srv(f, "250 OK\r\n");
	srv(f, "354 go\r\n");
	srv(f, "250 first\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 250, NULL, "first", "data dot", false);
	pt_buf_consume(smtp_client_output(f->c), smtp_client_output(f->c)->len);
	/* Second, after a success: straight to MAIL. */
	tx_make(f, "b@client.test", BODY, "y@peer.test", NULL);
	tx_send(f);
	expect_out(f, "MAIL FROM:<b@client.test>\r\n");
	srv(f, "250 OK\r\n");
	expect_out(f, "RCPT TO:<y@peer.test>\r\n");
	srv(f, "550 no\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 550, NULL, "no", "RCPT TO", false);
	/* Third, after a failure: RSET, then MAIL. */
	tx_make(f, "c@client.test", BODY, "z@peer.test", NULL);
	tx_send(f);
	expect_out(f, "RSET\r\n");
	srv(f, "250 2.0.0 flushed\r\n");
	expect_out(f, "MAIL FROM:<c@client.test>\r\n");
	srv(f, "250 OK\r\n250 OK\r\n");
	expect_out(f, "RCPT TO:<z@peer.test>\r\nDATA\r\n");
	srv(f, "354 go\r\n");
	expect_out(f, BODY ".\r\n");
	srv(f, "250 third\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 250, NULL, "third", "data dot", false);
	cr_assert_eq(smtp_client_n_transactions(f->c), 3);
}

SCENARIO(rset_refused_fails_the_session_without_bouncing)
{
	greet(f, EHLO_BARE);
	tx_make(f, "a@client.test", BODY, "x@peer.test", NULL);
	tx_send(f);
	srv(f, "550 no\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	tx_send(f);
	expect_out(f, "MAIL FROM:<a@client.test>\r\nRSET\r\n");
	srv(f, "500 5.5.1 RSET? never heard of it\r\n");
	expect_events(f, EV_TX_DONE, EV_FAILED);
	/* A 5xx to RSET says nothing about the message: a local 451, not a bounce. */
	expect_rcpt(f, 0, 451, "4.5.0",
		    "protocol error: unexpected reply to RSET: 500 RSET? never heard of it", "RSET",
		    true);
}

SCENARIO(send_only_when_ready)
{
	fx_start(f);
	tx_make(f, "a@client.test", BODY, "x@peer.test", NULL);
	cr_assert_eq(smtp_client_send(f->c, &f->tx), PT_ERROR);
	smtp_client_quit(f->c);
	expect_out(f, "");
	srv(f, BANNER EHLO_BARE);
	expect_events(f, EV_READY);
	f->tx.n_rcpts = 0;
	cr_assert_eq(smtp_client_send(f->c, &f->tx), PT_ERROR);
	f->tx.n_rcpts = 1;
	expect_out(f, "EHLO client.test\r\n");
	tx_send(f);
	cr_assert_eq(smtp_client_send(f->c, &f->tx), PT_ERROR, "second send mid-transaction");
	expect_out(f, "MAIL FROM:<a@client.test>\r\n");
}

/* ---- replies ------------------------------------------------------------- */

SCENARIO(ehlo_keywords_from_every_line)
{
	f->cfg.tls = SMTP_CLIENT_TLS_DISABLED;
	greet(f, "250-mx.peer.test greets you\r\n"
		 "250-pipelining\r\n"
		 "250-SIZE 5000\r\n"
		 "250-AUTH PLAIN LOGIN\r\n"
		 "250-8BITMIMEX\r\n"
		 "250 STARTTLS\r\n");
	/* Keywords are case-insensitive, the last line counts, unknown ones and
	 * look-alikes are ignored. */
	cr_assert_eq(smtp_client_extensions(f->c),
		     SMTP_CLIENT_EXT_PIPELINING | SMTP_CLIENT_EXT_SIZE | SMTP_CLIENT_EXT_STARTTLS);
}

SCENARIO(multi_line_rcpt_reply_keeps_every_line)
{
	greet(f, EHLO_FULL);
	tx_make(f, "a@client.test", BODY, "x@peer.test", NULL);
	tx_send(f);
	srv(f, "250 OK\r\n"
	       "550-5.1.1 The email account that you tried to reach does not exist.\r\n"
	       "550-5.1.1 Please try double-checking the recipient's email\r\n"
	       "550 5.1.1 address for typos. https://support.peer.test/answer\r\n"
	       "554 5.5.1 no valid recipients\r\n");
	expect_events(f, EV_TX_DONE, EV_READY);
	expect_rcpt(f, 0, 550, "5.1.1",
		    "The email account that you tried to reach does not exist.\n"
		    "Please try double-checking the recipient's email\n"
		    "address for typos. https://support.peer.test/answer",
		    "RCPT TO", false);
}

SCENARIO(garbage_reply_is_a_protocol_error)
{
	fx_start(f);
	srv(f, "HTTP/1.1 400 Bad Request\r\n");
	expect_events(f, EV_FAILED);
	expect_failure(f, 451, "4.5.0",
		       "protocol error: malformed reply line: \"HTTP/1.1 400 Bad Request\"",
		       "banner", true, true);
}

SCENARIO(changed_code_in_a_multi_line_reply_is_a_protocol_error)
{
	greet(f, EHLO_BARE);
	tx_make(f, "a@client.test", BODY, "x@peer.test", NULL);
	tx_send(f);
	srv(f, "250-OK\r\n251 OK\r\n");
	expect_events(f, EV_TX_DONE, EV_FAILED);
	expect_rcpt(f, 0, 451, "4.5.0",
		    "protocol error: multi-line reply changes its code from 250 to 251",
		    "MAIL FROM", true);
}

SCENARIO(unexpected_reply_classes_are_protocol_errors)
{
	greet(f, EHLO_BARE);
	tx_make(f, "a@client.test", BODY, "x@peer.test", NULL);
	tx_send(f);
	srv(f, "354 what?\r\n");
	expect_events(f, EV_TX_DONE, EV_FAILED);
	expect_failure(f, 451, "4.5.0", "protocol error: unexpected reply to MAIL FROM: 354 what?",
		       "MAIL FROM", true, false);
	fx_end(f);
	/* A 250 to DATA would pass for a delivery: it must not. */
	greet(f, EHLO_BARE);
	tx_send(f);
	srv(f, "250 OK\r\n250 OK\r\n250 OK\r\n");
	expect_events(f, EV_TX_DONE, EV_FAILED);
	expect_rcpt(f, 0, 451, "4.5.0", "protocol error: unexpected reply to DATA: 250 OK", "DATA",
		    true);
	fx_end(f);
	/* Anything but 421 while idle. */
	greet(f, EHLO_BARE);
	srv(f, "250 surprise\r\n");
	expect_events(f, EV_FAILED);
	expect_failure(f, 451, "4.5.0", "protocol error: unexpected reply to nothing: 250 surprise",
		       NULL, true, false);
	fx_end(f);
	/* A banner that is not 220. */
	fx_start(f);
	srv(f, "250 hello\r\n");
	expect_failure(f, 451, "4.5.0", "protocol error: unexpected reply to banner: 250 hello",
		       "banner", true, true);
}

SCENARIO(overlong_line_is_a_protocol_error)
{
	char line[5000];

	fx_start(f);
	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	memcpy(line, "220 ", 4);
	srv(f, line);
	expect_events(f, EV_FAILED);
	cr_assert_eq(smtp_client_failure(f->c)->code, 451);
	cr_assert_not_null(
	    strstr(smtp_client_failure(f->c)->content,
		   "protocol error: reply line longer than 4096 octets: \"220 xxxxxxxxxx"),
	    "%s", smtp_client_failure(f->c)->content);
}

/* ---- the reply parser, directly ----------------------------------------- */

static enum smtp_client_parse_result parse_all(struct smtp_client_parse *p, const char *s,
					       size_t *n_lines)
{
	size_t len = strlen(s), used;
	enum smtp_client_parse_result r = SMTP_CLIENT_PARSE_AGAIN;

	*n_lines = 0;
	while (len > 0) {
		r = smtp_client_parse_reply(p, s, len, &used);
		cr_assert_leq(used, len);
		s += used;
		len -= used;
		if (r == SMTP_CLIENT_PARSE_LINE)
			(*n_lines)++;
		if (r == SMTP_CLIENT_PARSE_REPLY || r == SMTP_CLIENT_PARSE_ERROR)
			break;
	}
	return r;
}

Test(smtp_client_parse, enhanced_codes)
{
	static const struct {
		const char *line;
		const char *enh;
		const char *content;
	} cases[] = {
	    {"250 2.0.0 OK\r\n", "2.0.0", "OK"},
	    {"250 2.0.0\r\n", "2.0.0", ""},
	    {"550 5.123.456 x\r\n", "5.123.456", "x"},
	    {"250 OK\r\n", NULL, "OK"},
	    {"250\r\n", NULL, ""},
	    {"250\n", NULL, ""},
	    {"550 5.1.1bad\r\n", NULL, "5.1.1bad"},
	    {"550 3.1.1 x\r\n", NULL, "3.1.1 x"},
	    {"550 5.1234.1 x\r\n", NULL, "5.1234.1 x"},
	    {"550 5..1 x\r\n", NULL, "5..1 x"},
	    {"250 ctl\x01"
	     "char\ttab\r\n",
	     NULL, "ctl char\ttab"},
	};

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		struct smtp_client_parse p;
		size_t lines;
		char enh[32] = "";

		smtp_client_parse_init(&p);
		cr_assert_eq(parse_all(&p, cases[i].line, &lines), SMTP_CLIENT_PARSE_REPLY, "%s",
			     cases[i].line);
		if (p.reply.enh_class >= 0)
			snprintf(enh, sizeof(enh), "%d.%d.%d", p.reply.enh_class,
				 p.reply.enh_subject, p.reply.enh_detail);
		cr_assert_str_eq(enh, cases[i].enh ? cases[i].enh : "", "%s", cases[i].line);
		cr_assert_str_eq(p.reply.content, cases[i].content);
	}
}

Test(smtp_client_parse, repeated_enhanced_code_dropped_from_later_lines_only_when_equal)
{
	struct smtp_client_parse p;
	size_t lines;

	smtp_client_parse_init(&p);
	cr_assert_eq(parse_all(&p, "452-4.5.3 one\r\n452-4.5.3 two\r\n452 4.2.2 three\r\n", &lines),
		     SMTP_CLIENT_PARSE_REPLY);
	cr_assert_eq(lines, 2);
	cr_assert_eq(p.n_lines, 3);
	cr_assert_str_eq(p.reply.content, "one\ntwo\n4.2.2 three");
	/* The text of the last line stays readable (the EHLO keywords need it). */
	cr_assert_eq(p.text_len, strlen("4.2.2 three"));
	cr_assert_eq(memcmp(p.text, "4.2.2 three", p.text_len), 0);
}

Test(smtp_client_parse, content_is_cut_at_a_character_boundary)
{
	struct smtp_client_parse p;
	struct pt_buf in = PT_BUF_INIT;
	size_t lines, len;

	/* 1022 ASCII octets, then "é" (2 octets) that cannot fit whole in 1023. */
	pt_buf_append_str(&in, "250 ");
	for (int i = 0; i < 1022; i++)
		pt_buf_append_str(&in, "a");
	pt_buf_append_str(&in, "\xc3\xa9zz\r\n250 dropped\r\n");
	smtp_client_parse_init(&p);
	cr_assert_eq(parse_all(&p, pt_buf_cstr(&in), &lines), SMTP_CLIENT_PARSE_REPLY);
	len = strlen(p.reply.content);
	cr_assert_eq(len, 1022);
	pt_buf_free(&in);
	/* Once cut, later lines are left out rather than glued after a gap. */
	smtp_client_parse_init(&p);
	pt_buf_append_str(&in, "250-");
	for (int i = 0; i < 1100; i++)
		pt_buf_append_str(&in, "b");
	pt_buf_append_str(&in, "\r\n250 tail\r\n");
	cr_assert_eq(parse_all(&p, pt_buf_cstr(&in), &lines), SMTP_CLIENT_PARSE_REPLY);
	cr_assert_eq(strlen(p.reply.content), sizeof(p.reply.content) - 1);
	cr_assert_null(strstr(p.reply.content, "tail"));
	pt_buf_free(&in);
}

Test(smtp_client_parse, line_limit_exact)
{
	struct smtp_client_parse p;
	struct pt_buf in = PT_BUF_INIT;
	size_t lines;

	/* 4096 octets before CRLF: accepted, in one piece and split. */
	pt_buf_append_str(&in, "250 ");
	for (int i = 0; i < 4092; i++)
		pt_buf_append_str(&in, "c");
	pt_buf_append_str(&in, "\r\n");
	smtp_client_parse_init(&p);
	cr_assert_eq(parse_all(&p, pt_buf_cstr(&in), &lines), SMTP_CLIENT_PARSE_REPLY);
	for (size_t cut = 1; cut < in.len; cut += 1023) {
		size_t used;

		smtp_client_parse_init(&p);
		cr_assert_eq(smtp_client_parse_reply(&p, in.data, cut, &used),
			     SMTP_CLIENT_PARSE_AGAIN);
		cr_assert_eq(used, cut);
		cr_assert_eq(smtp_client_parse_reply(&p, in.data + cut, in.len - cut, &used),
			     SMTP_CLIENT_PARSE_REPLY, "cut at %zu", cut);
	}
	/* 4097: refused, whole or split (before its line end arrives). */
	pt_buf_consume(&in, 0);
	in.len -= 2;
	pt_buf_append_str(&in, "c\r\n");
	smtp_client_parse_init(&p);
	cr_assert_eq(parse_all(&p, pt_buf_cstr(&in), &lines), SMTP_CLIENT_PARSE_ERROR);
	smtp_client_parse_init(&p);
	{
		size_t used;

		cr_assert_eq(smtp_client_parse_reply(&p, in.data, 4097, &used),
			     SMTP_CLIENT_PARSE_AGAIN);
		cr_assert_eq(smtp_client_parse_reply(&p, "x", 1, &used), SMTP_CLIENT_PARSE_ERROR);
		/* Sticky. */
		cr_assert_eq(smtp_client_parse_reply(&p, "250 OK\r\n", 8, &used),
			     SMTP_CLIENT_PARSE_ERROR);
		cr_assert_eq(used, 8);
	}
	pt_buf_free(&in);
}

Test(smtp_client_parse, reply_limit)
{
	struct smtp_client_parse p;
	struct pt_buf in = PT_BUF_INIT;
	size_t lines;

	/* 655 lines of 100 octets: 65500 octets, accepted; one more line: refused. */
	for (int i = 0; i < 654; i++) {
		pt_buf_append_str(&in, "250-");
		for (int k = 0; k < 94; k++)
			pt_buf_append_str(&in, "d");
		pt_buf_append_str(&in, "\r\n");
	}
	pt_buf_append_str(&in, "250 ");
	for (int k = 0; k < 94; k++)
		pt_buf_append_str(&in, "e");
	pt_buf_append_str(&in, "\r\n");
	cr_assert_eq(in.len, 65500);
	smtp_client_parse_init(&p);
	cr_assert_eq(parse_all(&p, pt_buf_cstr(&in), &lines), SMTP_CLIENT_PARSE_REPLY);
	cr_assert_eq(lines, 654);
	/* The next reply starts counting afresh. */
	cr_assert_eq(parse_all(&p, "250 OK\r\n", &lines), SMTP_CLIENT_PARSE_REPLY);
	cr_assert_str_eq(p.reply.content, "OK");
	in.data[in.len - 100 + 3] = '-';
	pt_buf_append_str(&in, "250 the one too many, well past the limit\r\n");
	smtp_client_parse_init(&p);
	cr_assert_eq(parse_all(&p, pt_buf_cstr(&in), &lines), SMTP_CLIENT_PARSE_ERROR);
	cr_assert_str_eq(p.error, "reply longer than 65536 octets");
	pt_buf_free(&in);
}

Test(smtp_client_parse, malformed_lines)
{
	static const char *const bad[] = {
	    "25\r\n",	 "2500 x\r\n", "250x\r\n",   "150 x\r\n", "650 x\r\n",
	    "2a0 x\r\n", "\r\n",       " 250 x\r\n", "250_x\r\n",
	};

	for (size_t i = 0; i < PT_ARRAY_LEN(bad); i++) {
		struct smtp_client_parse p;
		size_t lines;

		smtp_client_parse_init(&p);
		cr_assert_eq(parse_all(&p, bad[i], &lines), SMTP_CLIENT_PARSE_ERROR, "%s", bad[i]);
		cr_assert_not_null(strstr(p.error, "malformed reply line: \""), "%s", p.error);
	}
}
