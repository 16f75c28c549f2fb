/*
 * smtp_server.h -- the SMTP server session as a pure state machine.
 *
 * It never touches a socket, the ring or the disk.  The shard feeds it the
 * bytes it received (plaintext: TLS is undone by the shard before), drains
 * the reply bytes it produced, and reacts to the one event it may raise:
 *
 *   SMTP_EV_MESSAGE   end of DATA reached with an acceptable message; the
 *                     shard runs the policy, spools it, then calls
 *                     smtp_session_message_done() with the final reply.
 *   SMTP_EV_STARTTLS  "220 2.0.0 Ready to start TLS" is in the output; the
 *                     shard sends it, runs the TLS handshake, then calls
 *                     smtp_session_tls_done().  Any bytes that followed the
 *                     STARTTLS line were discarded (RFC 3207 section 6).
 *   SMTP_EV_CLOSE     send what is in the output, then close (QUIT, 421,
 *                     too many errors).
 *
 * While an event is pending, the session reads no further commands: bytes
 * fed meanwhile are held (up to SMTP_HOLD_MAX, then 421 and close) and
 * processed when the event is answered.  That is how pipelined commands
 * after the end of DATA wait for the message's 250.
 *
 * Limits enforced here (RFC 5321 4.5.3.1): command line 512 octets with
 * CRLF, text line 1000 octets with CRLF, max recipients (452 4.5.3 past it),
 * SIZE (552 5.3.4, the excess is counted, never buffered).  Only CRLF.CRLF
 * ends DATA; a bare CR or bare LF inside DATA makes the message refused
 * with 550 5.6.0 when its real end arrives (never an early end).
 */
#ifndef PT_SMTP_SERVER_H
#define PT_SMTP_SERVER_H

#include "core/buf.h"
#include "core/message.h"

#define SMTP_CMD_LINE_MAX 512	 /* octets including CRLF, RFC 5321 4.5.3.1.4 */
#define SMTP_TEXT_LINE_MAX 1000	 /* octets including CRLF, RFC 5321 4.5.3.1.6 */
#define SMTP_HOLD_MAX 16384	 /* pipelined bytes held while an event is pending */
#define SMTP_MAX_ERRORS 20	 /* bad commands before 421 and close */

/* Per-listener settings, read-only, shared by every session of the listener. */
struct smtp_server_config {
	const char *hostname;	   /* our name in the banner, EHLO and Received: */
	const char *banner;	   /* text after "220 <hostname> "; NULL -> "ESMTP Petrel" */
	uint64_t max_message_size; /* octets; announced in SIZE */
	unsigned max_recipients;   /* per transaction */
	bool tls_available;	   /* offer STARTTLS */
	unsigned shard;		   /* for message ids */
	/* When set and true, the spool is under its free-space floor: MAIL gets
	 * "452 4.3.1 spool disk is full, try again later" (DESIGN.md, Faults).
	 * Owned by the shard, which updates it; NULL means never full. */
	const bool *spool_full;
};

enum smtp_event {
	SMTP_EV_NONE = 0,
	SMTP_EV_MESSAGE,
	SMTP_EV_STARTTLS,
	SMTP_EV_CLOSE,
};

struct smtp_session;

/*
 * A recipient decided outside the session (the shard: relay_hosts and the
 * policy's get_listener_domain).  With a hook set, every RCPT whose path
 * has a domain is put to it instead of the built-in rule ("550 5.7.1
 * relaying denied" unless relay_allowed); <postmaster> never is.
 */
struct smtp_rcpt_verdict {
	int code;      /* 0: accept; else a 4xx or 5xx reply code */
	unsigned tag;  /* accepted: kept with the recipient (smtp_session_rcpt_tag) */
	char text[512]; /* refused: the reply text, enhanced code first */
};
/* sender: the reverse-path ("" for <>); rcpt: the forward-path; both
 * NUL-terminated and valid during the call only.  out is zeroed. */
typedef void (*smtp_rcpt_hook_fn)(void *ctx, const char *sender, const char *rcpt,
				  bool relay_allowed, struct smtp_rcpt_verdict *out);

/*
 * A new session; the 220 greeting is already in the output.  config and
 * idgen are not copied and must outlive the session; peer_ip is copied.
 * relay_allowed: whether this peer may send to any recipient (relay_hosts).
 * NULL on allocation failure.
 */
struct smtp_session *smtp_session_new(const struct smtp_server_config *config,
				      struct pt_idgen *idgen, const char *peer_ip,
				      bool relay_allowed);
/* Put each RCPT with a domain to fn(ctx, ...) from now on (NULL: the
 * built-in rule).  ctx is not owned. */
void smtp_session_set_rcpt_hook(struct smtp_session *s, smtp_rcpt_hook_fn fn, void *ctx);
/* The tag the hook gave recipient i of the open transaction (0 without a
 * hook, or past the end). */
unsigned smtp_session_rcpt_tag(const struct smtp_session *s, size_t i);
/* The EHLO/HELO argument, or NULL before one. */
const char *smtp_session_ehlo(const struct smtp_session *s);
/* Free the session and everything it owns; logs reason at debug level. */
void smtp_session_free(struct smtp_session *s, const char *reason);

/* Process received bytes (copied or consumed as needed; data is not kept). */
void smtp_session_feed(struct smtp_session *s, const char *data, size_t len);
/* Reply bytes to send; the shard sends them and pt_buf_consume()s what went out. */
struct pt_buf *smtp_session_output(struct smtp_session *s);
/* The pending event (stays until answered; SMTP_EV_CLOSE stays forever). */
enum smtp_event smtp_session_event(const struct smtp_session *s);

/* With SMTP_EV_MESSAGE pending: the message (id, envelope, body, Received:
 * already prepended).  Owned by the session; the caller may edit it (policy)
 * and must not keep it past smtp_session_message_done(). */
struct pt_message *smtp_session_message(struct smtp_session *s);
/* Answer SMTP_EV_MESSAGE: code and text (text starts with the enhanced code,
 * e.g. "2.0.0 OK id=..."; may be several lines separated by \n).  Resets the
 * transaction and goes on with held input. */
void smtp_session_message_done(struct smtp_session *s, int code, const char *text);
/* Answer SMTP_EV_STARTTLS once the handshake succeeded: the session is back
 * at its initial state (no EHLO yet, no transaction) with TLS on. */
void smtp_session_tls_done(struct smtp_session *s, const char *tls_protocol, const char *tls_cipher);
/* The current inactivity deadline expired: 421 4.4.2 and SMTP_EV_CLOSE. */
void smtp_session_timeout(struct smtp_session *s);
/* Daemon is stopping: an idle session gets 421 4.3.2 and SMTP_EV_CLOSE now;
 * one inside a transaction is closed right after the transaction ends. */
void smtp_session_shutdown(struct smtp_session *s);
/* True while inside DATA content (the shard uses the data timeout then). */
bool smtp_session_in_data(const struct smtp_session *s);
/* True when no transaction is open (no MAIL yet, or after RSET/end). */
bool smtp_session_idle(const struct smtp_session *s);

/* Name of a state, for traces. */
const char *smtp_strstate(int state);

#endif
