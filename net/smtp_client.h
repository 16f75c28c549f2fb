/*
 * smtp_client.h -- the outbound SMTP session as a pure state machine (the
 * mirror of smtp_server.h): bytes in, bytes and events out.  It never calls
 * read, write, connect or the ring; the shard glues it to a socket.
 *
 * The shard drives one connection as:
 *
 *   connect (shard, with its own connect timeout)
 *   c = smtp_client_new(&cfg)                     waits for the banner
 *   loop:
 *     smtp_client_feed(c, bytes, n)               plaintext from the peer
 *     while ((ev = smtp_client_next_event(c)) != SMTP_CLIENT_EV_NONE) ...
 *     send smtp_client_output(c) (consume what was sent)
 *     arm a timer for smtp_client_timeout_ms(c) (0: none)
 *
 * Events:
 *   READY      the session is established (banner, EHLO or HELO, STARTTLS and
 *              the EHLO after it when used): smtp_client_send() may be called.
 *              Raised again after every transaction when the session can
 *              take another one.  A READY not taken yet is withdrawn when
 *              the session fails first, so a READY taken is true.
 *   START_TLS  the peer answered 220 to STARTTLS: the shard sends what is
 *              in the output (nothing follows STARTTLS), starts a TLS client
 *              handshake on the socket, and reports the outcome with
 *              smtp_client_tls_done().  Bytes fed before it, from those after
 *              the 220 on, are discarded (RFC 3207 4.2: nothing pipelined
 *              before the handshake counts).
 *   TX_DONE    the transaction given to smtp_client_send() is finished: every
 *              recipient has its reply (smtp_client_rcpt_reply()).
 *   FAILED     the session is unusable (smtp_client_failure() says why: the
 *              peer's reply, or a locally made one for a timeout, lost
 *              connection, TLS failure or protocol error).  When a
 *              transaction was in progress, TX_DONE came first with the
 *              failure as the reply of every recipient still waiting.
 *              smtp_client_failed_before_ready() tells a connection-phase
 *              failure (the shard tries the next MX host) from a later one.
 *   CLOSED     QUIT was answered (or the peer closed, or QUIT's timeout
 *              expired): close the socket.
 *
 * Replies pipelined: with PIPELINING advertised (and enabled), MAIL, every
 * RCPT and DATA go in one write (RFC 2920); the body is sent only after the
 * 354.  Without it, one command per round trip.  The body is dot-stuffed
 * (RFC 5321 4.5.2) into the output buffer and ends with CRLF.CRLF.
 * MAIL carries SIZE=<n> when the peer advertises SIZE (and a message larger
 * than the peer's SIZE limit fails with a local 552 5.3.4 without being
 * sent), and BODY=8BITMIME when the body has 8-bit bytes and the peer
 * advertises 8BITMIME (and SMTPUTF8 when the envelope is not ASCII and the
 * peer advertises SMTPUTF8).  A 5xx to EHLO falls back to HELO.  A
 * transaction that ended before its final dot (MAIL, every RCPT or DATA
 * refused) is followed by RSET before the next MAIL.
 *
 * STARTTLS per enable_tls: Opportunistic* when advertised; Required* fail
 * before READY when it is not (451 4.7.4); a refused STARTTLS fails the
 * session in every mode (as KumoMTA: no plaintext fall-back on that
 * connection).
 *
 * Replies made by Petrel (local = true): 451 4.4.2 timeout or connection
 * lost (the text names what was awaited), 451 4.5.0 protocol error (a
 * malformed reply, a line over 4096 octets, a reply over 64 KiB, a reply of
 * a class its command never gets), 451 4.7.4 TLS required but not offered,
 * 451 4.7.5 TLS handshake failed, 451 4.3.0 out of memory, 552 5.3.4 over
 * the peer's SIZE, 501 for a path that cannot go into a command line.
 */
#ifndef PT_SMTP_CLIENT_H
#define PT_SMTP_CLIENT_H

#include "core/buf.h"

#include <sys/uio.h>

struct smtp_client;

/* KumoMTA's enable_tls values. */
enum smtp_client_tls {
	SMTP_CLIENT_TLS_OPPORTUNISTIC = 0,	/* STARTTLS if offered; certificate verified */
	SMTP_CLIENT_TLS_OPPORTUNISTIC_INSECURE, /* STARTTLS if offered; not verified */
	SMTP_CLIENT_TLS_REQUIRED,		/* STARTTLS must be offered; verified */
	SMTP_CLIENT_TLS_REQUIRED_INSECURE,	/* must be offered; not verified */
	SMTP_CLIENT_TLS_DISABLED,
};

struct smtp_client_config {
	const char *ehlo_domain; /* copied */
	enum smtp_client_tls tls;
	bool enable_pipelining; /* use PIPELINING when advertised (KumoMTA's default: true) */
	/* Per-phase timeouts (KumoMTA's names); 0 -> KumoMTA's default. */
	uint64_t banner_timeout_ms;    /* 60 s */
	uint64_t ehlo_timeout_ms;      /* 300 s */
	uint64_t starttls_timeout_ms;  /* 5 s, the handshake included */
	uint64_t mail_from_timeout_ms; /* 300 s */
	uint64_t rcpt_to_timeout_ms;   /* 300 s */
	uint64_t data_timeout_ms;      /* 300 s: the 354 */
	uint64_t data_dot_timeout_ms;  /* 300 s: the reply to the final dot */
	uint64_t rset_timeout_ms;      /* 5 s */
	uint64_t quit_timeout_ms;      /* 5 s (not a KumoMTA option) */
};

/* One SMTP reply, parsed.  Multi-line replies keep every line's text,
 * joined with "\n", truncated to fit. */
struct smtp_client_reply {
	int code;				/* 250, 451, ...; locally made ones too */
	int enh_class, enh_subject, enh_detail; /* -1 when the reply had no enhanced code */
	char content[1024];			/* the text after the code and enhanced code */
	const char *command;			/* "MAIL FROM", "RCPT TO", "DATA", "data dot",
						 * "EHLO", "STARTTLS", "banner", ... (static) */
	bool local;				/* made by Petrel, not received */
};

enum smtp_client_event {
	SMTP_CLIENT_EV_NONE = 0,
	SMTP_CLIENT_EV_READY,
	SMTP_CLIENT_EV_START_TLS,
	SMTP_CLIENT_EV_TX_DONE,
	SMTP_CLIENT_EV_FAILED,
	SMTP_CLIENT_EV_CLOSED,
};

/* Extensions the peer advertised (after the last EHLO). */
enum {
	SMTP_CLIENT_EXT_PIPELINING = 1u << 0,
	SMTP_CLIENT_EXT_SIZE = 1u << 1,
	SMTP_CLIENT_EXT_8BITMIME = 1u << 2,
	SMTP_CLIENT_EXT_STARTTLS = 1u << 3,
	SMTP_CLIENT_EXT_SMTPUTF8 = 1u << 4,
	SMTP_CLIENT_EXT_ENHANCEDSTATUSCODES = 1u << 5,
};

/* A transaction: one message to one or more recipients of the same site. */
struct smtp_client_tx {
	const char *sender;	  /* reverse-path without <>; "" for <> */
	const char *const *rcpts; /* forward-paths without <> */
	size_t n_rcpts;
	const struct iovec *body; /* the message (CRLF line ends, not dot-stuffed) */
	int n_body;
	size_t body_len;
};

/* Fill r with a reply made by Petrel, not received (r->local): enhanced
 * class = code / 100; command static or NULL; the text printf-formatted.
 * The shard uses it for outcomes decided without a peer (DNS, expiry). */
void smtp_client_local_reply(struct smtp_client_reply *r, int code, int subject, int detail,
			     const char *command, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* Waiting for the banner.  cfg is copied (ehlo_domain too; an IP address
 * becomes an address literal).  NULL on allocation failure, or when
 * ehlo_domain cannot go into a command line. */
struct smtp_client *smtp_client_new(const struct smtp_client_config *cfg);
void smtp_client_free(struct smtp_client *c);

/* Plaintext received from the peer (after TLS decryption when TLS is on).
 * PT_OK, or PT_NOMEM. */
int smtp_client_feed(struct smtp_client *c, const void *data, size_t len);
/* The peer closed the connection (EOF or reset). */
void smtp_client_eof(struct smtp_client *c);
/* The phase's timer expired: fails the session ("timed out waiting for ..."). */
void smtp_client_timeout(struct smtp_client *c);
/* Milliseconds the current phase may wait for the peer; 0 when nothing is
 * awaited (READY and idle: the shard applies idle_timeout itself). */
uint64_t smtp_client_timeout_ms(const struct smtp_client *c);

/* Next event, or SMTP_CLIENT_EV_NONE when there is none. */
enum smtp_client_event smtp_client_next_event(struct smtp_client *c);
/* Bytes to send (plaintext; the shard encrypts when TLS is on); the caller
 * consumes what it sent. */
struct pt_buf *smtp_client_output(struct smtp_client *c);
/* Where the message body is in that output (dot-stuffed, its final CRLF
 * but not the "." line): true with off and len, false when none of it is
 * there.  Forgets it: call it once per smtp_client_output() whose bytes
 * are all consumed (the shard traces commands and body apart with it). */
bool smtp_client_output_body(struct smtp_client *c, size_t *off, size_t *len);

/* After START_TLS: ok = handshake done (the client sends EHLO again), or
 * failed (reason for the FAILED reply; copied). */
void smtp_client_tls_done(struct smtp_client *c, bool ok, const char *reason);
/* True when TLS is on (after a successful smtp_client_tls_done). */
bool smtp_client_tls_active(const struct smtp_client *c);
/* Whether the TLS handshake must verify the peer's certificate. */
bool smtp_client_tls_verify(const struct smtp_client *c);

/*
 * Start a transaction.  Only in READY; tx and everything it points to must
 * stay valid and unchanged until TX_DONE.  PT_OK; PT_ERROR (not READY, or
 * no recipient); PT_NOMEM (nothing was sent, the session is still READY).
 * When it can be decided without the peer (over SIZE, bad paths), TX_DONE
 * and READY are raised at once and nothing is sent.
 */
int smtp_client_send(struct smtp_client *c, const struct smtp_client_tx *tx);
/* After TX_DONE: the reply that decided recipient i (its RCPT reply when
 * refused, else the MAIL, DATA or final-dot reply, or the failure).  Valid
 * until the next smtp_client_send() or smtp_client_free().  NULL when i is
 * out of range or not decided yet. */
const struct smtp_client_reply *smtp_client_rcpt_reply(const struct smtp_client *c, size_t i);
/* Send QUIT (READY only, else nothing; the shard then just closes). */
void smtp_client_quit(struct smtp_client *c);

/* After FAILED. */
const struct smtp_client_reply *smtp_client_failure(const struct smtp_client *c);
bool smtp_client_failed_before_ready(const struct smtp_client *c);

unsigned smtp_client_extensions(const struct smtp_client *c);
/* Number of transactions completed (TX_DONE) on this session. */
unsigned smtp_client_n_transactions(const struct smtp_client *c);
/* The state's name, for traces and logs. */
const char *smtp_client_strstate(const struct smtp_client *c);

#endif
