/*
 * smtp_server.c -- the SMTP server session (RFC 5321, with PIPELINING RFC
 * 2920, SIZE RFC 1870, 8BITMIME RFC 6152, ENHANCEDSTATUSCODES RFC 2034,
 * SMTPUTF8 RFC 6531 and STARTTLS RFC 3207) as a pure state machine: bytes
 * in, reply bytes and one pending event out.  It never does I/O; the shard
 * (shard/shard_conn.c) glues it to the ring and to TLS.
 *
 * States.  One enum, changed only by smtp_enter_state(), which traces
 * "old -> new" at debug level:
 *
 *   INIT --EHLO/HELO--> HELO --MAIL--> MAIL --RCPT 250--> RCPT --DATA--> DATA
 *                        ^  ^   (EHLO, HELO, RSET from MAIL/RCPT)         |
 *                        |  +------ refused at the end of data -----------+
 *                        +--- smtp_session_message_done() --- MESSAGE <---+
 *
 *   any command state --STARTTLS--> STARTTLS --smtp_session_tls_done()--> INIT
 *   any state --QUIT, 421 (errors, timeout, shutdown, held input)--> CLOSED
 *
 * The pending event is a function of the state alone (MESSAGE, STARTTLS,
 * CLOSED), so it cannot disagree with it.
 *
 * Input.  smtp_session_feed() routes bytes by state: command states go to
 * the command-line parser (net/smtp_parse.c), DATA to the content parser,
 * which unstuffs straight into the message body.  Several commands in one
 * feed are run in order and their replies appended in order (RFC 2920).  A
 * command flagged SMTP_CMD_LAST (STARTTLS, DATA, QUIT) must end a pipeline
 * group (RFC 2920 3.1): after it the bytes that follow are not read as
 * commands but routed anew by the state it left behind -- content after
 * DATA, nothing after STARTTLS (RFC 3207 6: bytes pipelined after it are
 * discarded, or a man in the middle could inject commands that would be run
 * as if they had come over TLS), nothing after QUIT.
 *
 * Held input.  While SMTP_EV_MESSAGE is pending the session reads no
 * commands: bytes are held (at most SMTP_HOLD_MAX) and run when
 * smtp_session_message_done() has written the message's reply, so the
 * replies to "MAIL ... QUIT" pipelined behind the final dot come after the
 * 250.  Past the limit the held bytes are dropped and, once the message's
 * reply is out, the session answers 421 and closes: the message itself is
 * still answered, because the shard may already have spooled it.
 *
 * Commands.  A static table {verb, check, proceed, flags}, as OpenSMTPD's
 * smtp_session.c: the flag SMTP_CMD_NEED_HELO is checked by the dispatcher;
 * check is a column of guard clauses, each replying and returning 0; only
 * then does proceed change the session.  Every 4xx/5xx reply to a command
 * counts as an error; at SMTP_MAX_ERRORS the session says 421 and closes.
 * The replies at the end of DATA and the policy's replies do not count:
 * they judge a message, not the client's commands; nor do the first
 * SMTP_RCPT_OVERSHOOT_MAX "452 too many recipients" (see there).
 *
 * Recipients.  Whether a recipient with a domain may be taken is the
 * shard's question (relay_hosts, and the policy's listener domains, which
 * net/ must not see): with a recipient hook set, smtp_check_relay() puts
 * it there and keeps the tag it gives with the recipient, for the end of
 * DATA; without one, relay_allowed decides.
 *
 * Memory.  One allocation for the session, its peer and EHLO strings, the
 * output, the held input and the message of the open transaction (body
 * bounded by max_message_size: past it the content is only counted).  All
 * of it is freed in smtp_session_free().
 */
#include "net/smtp_server.h"

#include "core/id.h"
#include "core/ptime.h"
#include "net/smtp_parse.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SMTP_REPLY_MAX 1024 /* one reply line; longer text is cut, never split */
/*
 * Recipients past max_recipients that a client may send before each further
 * 452 counts as an error: a client that pipelines more recipients than we
 * take is not misbehaving (RFC 5321 4.5.3.1.8 tells it to send the rest in
 * another transaction).  Postfix's smtpd_recipient_overshoot_limit.
 */
#define SMTP_RCPT_OVERSHOOT_MAX 1000

enum smtp_state {
	SMTP_STATE_INIT,     /* greeted; no EHLO/HELO yet (again, after STARTTLS) */
	SMTP_STATE_HELO,     /* EHLO/HELO done, no transaction */
	SMTP_STATE_MAIL,     /* MAIL accepted, no recipient accepted yet */
	SMTP_STATE_RCPT,     /* at least one recipient accepted */
	SMTP_STATE_DATA,     /* reading message content */
	SMTP_STATE_MESSAGE,  /* SMTP_EV_MESSAGE: waiting for message_done */
	SMTP_STATE_STARTTLS, /* SMTP_EV_STARTTLS: waiting for tls_done */
	SMTP_STATE_CLOSED,   /* SMTP_EV_CLOSE: input ignored for ever */
};

static const char *const smtp_state_names[] = {
    [SMTP_STATE_INIT] = "INIT",		[SMTP_STATE_HELO] = "HELO",
    [SMTP_STATE_MAIL] = "MAIL",		[SMTP_STATE_RCPT] = "RCPT",
    [SMTP_STATE_DATA] = "DATA",		[SMTP_STATE_MESSAGE] = "MESSAGE",
    [SMTP_STATE_STARTTLS] = "STARTTLS", [SMTP_STATE_CLOSED] = "CLOSED",
};

enum smtp_greeting {
	SMTP_GREETING_NONE,
	SMTP_GREETING_HELO,
	SMTP_GREETING_EHLO,
};

struct smtp_session {
	const struct smtp_server_config *config; /* not owned */
	struct pt_idgen *idgen;			 /* not owned */
	char *peer_ip;
	bool relay_allowed;
	bool tls;	    /* TLS is on */
	bool shutdown;	    /* the daemon stops: close once idle */
	bool hold_overflow; /* held input dropped: 421 after the message's reply */
	enum smtp_state state;
	enum smtp_greeting greeting;
	char *ehlo; /* the EHLO/HELO argument; NULL before */
	unsigned n_errors;
	unsigned n_rcpts_over; /* 452 "too many recipients" replies so far */
	struct pt_buf out;
	struct pt_buf hold;
	struct smtp_parse parse;
	struct smtp_data data;
	struct smtp_path path; /* of the MAIL or RCPT being run; points into parse.line */
	struct pt_message msg; /* the open transaction */
	smtp_rcpt_hook_fn rcpt_hook; /* NULL: relay_allowed decides */
	void *rcpt_ctx;
	unsigned *rcpt_tags; /* the hook's tag per recipient of msg */
	size_t cap_tags;
	unsigned pending_tag; /* from the RCPT check to its proceed */
};

/* Flags of a command. */
#define SMTP_CMD_NEED_HELO 0x01 /* not before EHLO/HELO */
#define SMTP_CMD_LAST	   0x02 /* must be last in a pipeline group (see top) */

struct smtp_command {
	const char *verb;
	int (*check)(struct smtp_session *, const char *); /* 1: go on; 0: replied */
	void (*proceed)(struct smtp_session *, const char *);
	unsigned flags;
};

static void smtp_input(struct smtp_session *, const char *, size_t);

/* ---- states, replies ---------------------------------------------------- */

const char *smtp_strstate(int state)
{
	if (state < 0 || (size_t)state >= PT_ARRAY_LEN(smtp_state_names))
		return "UNKNOWN";
	return smtp_state_names[state];
}

static void smtp_enter_state(struct smtp_session *s, enum smtp_state new_state)
{
	pt_debug("smtp %s: %s -> %s", s->peer_ip, smtp_strstate((int)s->state),
		 smtp_strstate((int)new_state));
	s->state = new_state;
}

static const char *smtp_hostname(const struct smtp_session *s)
{
	return s->config->hostname ? s->config->hostname : "localhost";
}

/* Append one line; control characters from the text become spaces. */
static void smtp_write_line(struct smtp_session *s, char *line, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)line[i] < ' ' || line[i] == 0x7f)
			line[i] = ' ';
	line[n++] = '\r';
	line[n++] = '\n';
	if (pt_buf_append(&s->out, line, n) != PT_OK) {
		/* Nothing can reach the peer any more; end it rather than go on mute. */
		pt_error("smtp %s: out of memory for replies", s->peer_ip);
		smtp_enter_state(s, SMTP_STATE_CLOSED);
	}
}

static void smtp_vreply(struct smtp_session *s, const char *fmt, va_list ap)
{
	char line[SMTP_REPLY_MAX];
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);

	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)(sizeof(line) - 3);
	smtp_write_line(s, line, (size_t)n);
}

/* A reply line, fmt starting with the code; CRLF is added. */
static void __attribute__((format(printf, 2, 3)))
smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtp_vreply(s, fmt, ap);
	va_end(ap);
}

/* A 4xx/5xx reply to a command: counts towards SMTP_MAX_ERRORS. */
static void __attribute__((format(printf, 2, 3)))
smtp_error(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtp_vreply(s, fmt, ap);
	va_end(ap);
	s->n_errors++;
}

/* A last reply, then SMTP_EV_CLOSE. */
static void __attribute__((format(printf, 2, 3)))
smtp_close(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtp_vreply(s, fmt, ap);
	va_end(ap);
	smtp_enter_state(s, SMTP_STATE_CLOSED);
}

static void smtp_reply_nomem(struct smtp_session *s)
{
	pt_warn("smtp %s: out of memory", s->peer_ip);
	smtp_reply(s, "451 4.3.0 out of memory, try again later");
}

/*
 * "<code> <text>", or "<code>-line" for every line but the last when text
 * holds several lines separated by "\n" (RFC 5321 4.2.1).
 */
static void smtp_reply_text(struct smtp_session *s, int code, const char *text)
{
	if (code < 200 || code > 599) {
		pt_warn("smtp %s: reply code %d is not an SMTP reply code; sending 451", s->peer_ip,
			code);
		code = 451;
		text = "4.3.0 internal error, try again later";
	}
	if (text == NULL)
		text = "";
	for (;;) {
		const char *nl = strchr(text, '\n');
		size_t n = nl ? (size_t)(nl - text) : strlen(text);
		bool last = nl == NULL || nl[1] == '\0';

		if (n > 0 && text[n - 1] == '\r')
			n--;
		smtp_reply(s, "%d%c%.*s", code, last ? ' ' : '-', (int)PT_MIN(n, SMTP_REPLY_MAX),
			   text);
		if (last)
			break;
		text = nl + 1;
	}
}

static bool smtp_in_transaction(const struct smtp_session *s)
{
	return s->state == SMTP_STATE_MAIL || s->state == SMTP_STATE_RCPT ||
	       s->state == SMTP_STATE_DATA || s->state == SMTP_STATE_MESSAGE;
}

/* A shutdown waits for the session to be idle: no transaction, no event, not in DATA. */
static void smtp_check_shutdown(struct smtp_session *s)
{
	if (!s->shutdown)
		return;
	if (s->state != SMTP_STATE_INIT && s->state != SMTP_STATE_HELO)
		return;
	smtp_close(s, "421 4.3.2 %s shutting down", smtp_hostname(s));
}

/* ---- the transaction ---------------------------------------------------- */

static void smtp_tx_reset(struct smtp_session *s)
{
	pt_message_clear(&s->msg);
}

/* The state after a transaction ends: back to HELO (INIT when there was none). */
static void smtp_tx_end(struct smtp_session *s)
{
	smtp_tx_reset(s);
	smtp_enter_state(s, s->greeting == SMTP_GREETING_NONE ? SMTP_STATE_INIT : SMTP_STATE_HELO);
}

static const char *smtp_protocol(const struct smtp_session *s)
{
	if (s->tls)
		return "ESMTPS"; /* RFC 3848 */
	return s->greeting == SMTP_GREETING_EHLO ? "ESMTP" : "SMTP";
}

/* Our Received: (RFC 5321 4.4), folded over three lines; "for" only with one recipient. */
static int smtp_tx_received(struct smtp_session *s)
{
	struct pt_message *m = &s->msg;
	struct pt_buf v = PT_BUF_INIT;
	char date[40];
	int rc;

	pt_time_rfc5322(m->created_us, date);
	rc = pt_buf_printf(&v, "from %s (%s)\r\n\tby %s (Petrel) with %s id %s", s->ehlo,
			   s->peer_ip, smtp_hostname(s), smtp_protocol(s), m->id);
	if (rc == PT_OK && m->n_rcpts == 1)
		rc = pt_buf_printf(&v, "\r\n\tfor %s", m->rcpts[0]);
	if (rc == PT_OK)
		rc = pt_buf_printf(&v, "; %s", date);
	if (rc == PT_OK)
		rc = pt_message_prepend_header(m, "Received", pt_buf_cstr(&v));
	pt_buf_free(&v);
	return rc;
}

/* Complete the message at the end of DATA: id, time, reception facts, Received:. */
static int smtp_tx_build(struct smtp_session *s)
{
	struct pt_message *m = &s->msg;

	pt_id_next(s->idgen, m->id);
	m->created_us = pt_wall_us();
	pt_message_scan_headers(m);
	m->peer_address = strdup(s->peer_ip);
	m->ehlo = strdup(s->ehlo);
	m->reception_protocol = strdup(smtp_protocol(s));
	if (!m->peer_address || !m->ehlo || !m->reception_protocol)
		return PT_NOMEM;
	return smtp_tx_received(s);
}

/*
 * CRLF.CRLF seen.  Refusals come first (RFC 5321 2.3.8 and 4.5.3.1.6 before
 * size, as a smuggling attempt is the more useful thing to tell the peer);
 * a refused transaction ends here and no event is raised.
 */
static void smtp_data_end(struct smtp_session *s)
{
	unsigned flags = s->data.flags;

	if (flags & SMTP_DATA_BARE_CRLF)
		smtp_reply(s, "550 5.6.0 message data contains a bare CR or LF (RFC 5321 2.3.8)");
	else if (flags & SMTP_DATA_LONG_LINE)
		smtp_reply(s,
			   "550 5.6.0 message data has a line longer than %d octets "
			   "(RFC 5321 4.5.3.1.6)",
			   SMTP_TEXT_LINE_MAX);
	else if (flags & SMTP_DATA_TOO_BIG)
		smtp_reply(s, "552 5.3.4 message size exceeds fixed maximum message size");
	else if ((flags & SMTP_DATA_NOMEM) || smtp_tx_build(s) != PT_OK)
		smtp_reply_nomem(s);
	else {
		pt_debug("smtp %s: message %s, %" PRIu64 " octets, %zu recipients", s->peer_ip,
			 s->msg.id, s->data.size, s->msg.n_rcpts);
		smtp_enter_state(s, SMTP_STATE_MESSAGE);
		return;
	}
	smtp_tx_end(s);
	smtp_check_shutdown(s);
}

/* ---- checks -------------------------------------------------------------- */

static bool smtp_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * "FROM:" or "TO:" (any case), blanks (be liberal: "MAIL FROM: <a@b>"),
 * then a path.  Returns where the parameters start, or NULL.
 */
static const char *smtp_check_path(struct smtp_session *s, const char *arg, const char *prefix,
				   bool postmaster_ok)
{
	size_t n = strlen(prefix), used;

	if (strncasecmp(arg, prefix, n) != 0)
		return NULL;
	arg += n;
	while (smtp_is_blank(*arg))
		arg++;
	used = smtp_parse_path(arg, strlen(arg), postmaster_ok, &s->path);
	if (used == 0)
		return NULL;
	arg += used;
	/* Parameters are separated from the path by a blank. */
	if (*arg != '\0' && !smtp_is_blank(*arg))
		return NULL;
	return arg;
}

static bool smtp_param_value_is(const struct smtp_param *p, const char *value)
{
	return p->value && strlen(value) == p->value_len &&
	       strncasecmp(p->value, value, p->value_len) == 0;
}

/* One MAIL parameter: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531). */
static int smtp_check_mail_param(struct smtp_session *s, const struct smtp_param *p)
{
	uint64_t size;

	if (smtp_param_is(p, "SIZE")) {
		if (!smtp_param_number(p, &size)) {
			smtp_error(s, "501 5.5.4 bad SIZE parameter value");
			return 0;
		}
		if (size > s->config->max_message_size) {
			smtp_error(s, "552 5.3.4 message size exceeds fixed maximum message size");
			return 0;
		}
		return 1;
	}
	if (smtp_param_is(p, "BODY")) {
		if (!smtp_param_value_is(p, "7BIT") && !smtp_param_value_is(p, "8BITMIME")) {
			smtp_error(s, "501 5.5.4 bad BODY parameter value");
			return 0;
		}
		return 1;
	}
	if (smtp_param_is(p, "SMTPUTF8")) {
		if (p->value != NULL) {
			smtp_error(s, "501 5.5.4 bad SMTPUTF8 parameter value");
			return 0;
		}
		return 1;
	}
	smtp_error(s, "555 5.5.4 unsupported MAIL parameter %.*s", (int)p->keyword_len, p->keyword);
	return 0;
}

static int smtp_check_helo(struct smtp_session *s, const char *arg)
{
	if (*arg == '\0') {
		smtp_error(s, "501 5.5.4 HELO requires a domain name");
		return 0;
	}
	return 1;
}

static int smtp_check_ehlo(struct smtp_session *s, const char *arg)
{
	if (*arg == '\0') {
		smtp_error(s, "501 5.5.4 EHLO requires a domain name");
		return 0;
	}
	return 1;
}

static int smtp_check_starttls(struct smtp_session *s, const char *arg)
{
	if (!s->config->tls_available) {
		smtp_error(s, "454 4.7.0 TLS not available");
		return 0;
	}
	if (s->tls) {
		smtp_error(s, "503 5.5.1 TLS already active");
		return 0;
	}
	if (*arg != '\0') {
		smtp_error(s, "501 5.5.4 STARTTLS takes no arguments");
		return 0;
	}
	return 1;
}

static int smtp_check_mail(struct smtp_session *s, const char *arg)
{
	const char *params, *end;
	struct smtp_param p;

	if (s->state != SMTP_STATE_HELO) {
		smtp_error(s, "503 5.5.1 sender already specified");
		return 0;
	}
	if (s->config->spool_full && *s->config->spool_full) {
		smtp_error(s, "452 4.3.1 spool disk is full, try again later");
		return 0;
	}
	if ((params = smtp_check_path(s, arg, "FROM:", false)) == NULL) {
		smtp_error(s, "501 5.1.7 bad sender address syntax");
		return 0;
	}
	end = params + strlen(params);
	while (smtp_parse_param(&params, end, &p))
		if (!smtp_check_mail_param(s, &p))
			return 0;
	return 1;
}

/* May this recipient (it has a domain) be taken?  The hook decides when set. */
static int smtp_check_relay(struct smtp_session *s)
{
	struct smtp_rcpt_verdict v;
	char rcpt[SMTP_CMD_LINE_MAX + 1];
	size_t n = PT_MIN(s->path.mailbox_len, sizeof(rcpt) - 1);

	s->pending_tag = 0;
	if (s->rcpt_hook == NULL) {
		if (s->relay_allowed)
			return 1;
		smtp_error(s, "550 5.7.1 relaying denied");
		return 0;
	}
	memcpy(rcpt, s->path.mailbox, n);
	rcpt[n] = '\0';
	memset(&v, 0, sizeof(v));
	s->rcpt_hook(s->rcpt_ctx, s->msg.sender ? s->msg.sender : "", rcpt, s->relay_allowed, &v);
	if (v.code == 0) {
		s->pending_tag = v.tag;
		return 1;
	}
	v.text[sizeof(v.text) - 1] = '\0';
	if (v.code < 400 || v.code > 599) {
		pt_warn("smtp %s: recipient hook gave reply code %d; sending 451", s->peer_ip,
			v.code);
		smtp_error(s, "451 4.3.0 internal error, try again later");
		return 0;
	}
	smtp_error(s, "%d %s", v.code, v.text);
	return 0;
}

static int smtp_check_rcpt(struct smtp_session *s, const char *arg)
{
	const char *params, *end;
	struct smtp_param p;

	if (s->state != SMTP_STATE_MAIL && s->state != SMTP_STATE_RCPT) {
		smtp_error(s, "503 5.5.1 need MAIL before RCPT");
		return 0;
	}
	params = smtp_check_path(s, arg, "TO:", true);
	if (params == NULL || s->path.mailbox_len == 0) {
		smtp_error(s, "501 5.1.3 bad recipient address syntax");
		return 0;
	}
	end = params + strlen(params);
	if (smtp_parse_param(&params, end, &p)) {
		smtp_error(s, "555 5.5.4 unsupported RCPT parameter %.*s", (int)p.keyword_len,
			   p.keyword);
		return 0;
	}
	if (s->msg.n_rcpts >= s->config->max_recipients) {
		/* RFC 5321 4.5.3.1.8: the transaction goes on with those accepted. */
		if (++s->n_rcpts_over > SMTP_RCPT_OVERSHOOT_MAX)
			s->n_errors++;
		smtp_reply(s, "452 4.5.3 too many recipients (%u max per message)",
			   s->config->max_recipients);
		return 0;
	}
	/* The parser lets a path without a domain through only for <postmaster>. */
	if (memchr(s->path.mailbox, '@', s->path.mailbox_len) == NULL)
		return 1;
	return smtp_check_relay(s);
}

static int smtp_check_data(struct smtp_session *s, const char *arg)
{
	if (s->state != SMTP_STATE_MAIL && s->state != SMTP_STATE_RCPT) {
		smtp_error(s, "503 5.5.1 need MAIL before DATA");
		return 0;
	}
	if (s->state == SMTP_STATE_MAIL) {
		smtp_error(s, "554 5.5.1 no valid recipients");
		return 0;
	}
	if (*arg != '\0') {
		smtp_error(s, "501 5.5.4 DATA takes no arguments");
		return 0;
	}
	return 1;
}

/* ---- proceeds ------------------------------------------------------------ */

/* EHLO/HELO: remember the name; any transaction is reset (RFC 5321 4.1.4). */
static int smtp_greet(struct smtp_session *s, const char *arg, enum smtp_greeting greeting)
{
	char *ehlo = strdup(arg);

	if (ehlo == NULL) {
		smtp_reply_nomem(s);
		return PT_NOMEM;
	}
	free(s->ehlo);
	s->ehlo = ehlo;
	s->greeting = greeting;
	smtp_tx_reset(s);
	smtp_enter_state(s, SMTP_STATE_HELO);
	return PT_OK;
}

static void smtp_proceed_helo(struct smtp_session *s, const char *arg)
{
	if (smtp_greet(s, arg, SMTP_GREETING_HELO) != PT_OK)
		return;
	smtp_reply(s, "250 %s Hello %s [%s]", smtp_hostname(s), arg, s->peer_ip);
}

static void smtp_proceed_ehlo(struct smtp_session *s, const char *arg)
{
	if (smtp_greet(s, arg, SMTP_GREETING_EHLO) != PT_OK)
		return;
	smtp_reply(s, "250-%s Hello %s [%s]", smtp_hostname(s), arg, s->peer_ip);
	smtp_reply(s, "250-PIPELINING");
	smtp_reply(s, "250-SIZE %" PRIu64, s->config->max_message_size);
	smtp_reply(s, "250-8BITMIME");
	smtp_reply(s, "250-ENHANCEDSTATUSCODES");
	smtp_reply(s, "250-SMTPUTF8");
	/* RFC 3207 4.2: not offered again once TLS is on. */
	if (s->config->tls_available && !s->tls)
		smtp_reply(s, "250-STARTTLS");
	smtp_reply(s, "250 HELP");
}

static void smtp_proceed_starttls(struct smtp_session *s, const char *arg)
{
	(void)arg;
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	smtp_enter_state(s, SMTP_STATE_STARTTLS);
}

static void smtp_proceed_mail(struct smtp_session *s, const char *arg)
{
	(void)arg;
	if (pt_message_set_sender(&s->msg, s->path.mailbox, s->path.mailbox_len) != PT_OK) {
		smtp_reply_nomem(s);
		return;
	}
	smtp_enter_state(s, SMTP_STATE_MAIL);
	smtp_reply(s, "250 2.1.0 OK");
}

/* Keep the hook's tag for the recipient about to be added. */
static int smtp_tag_rcpt(struct smtp_session *s)
{
	size_t i = s->msg.n_rcpts;

	if (i >= s->cap_tags) {
		size_t cap = s->cap_tags ? s->cap_tags * 2 : 8;
		unsigned *tags = realloc(s->rcpt_tags, cap * sizeof(*tags));

		if (tags == NULL)
			return PT_NOMEM;
		s->rcpt_tags = tags;
		s->cap_tags = cap;
	}
	s->rcpt_tags[i] = s->pending_tag;
	return PT_OK;
}

static void smtp_proceed_rcpt(struct smtp_session *s, const char *arg)
{
	(void)arg;
	if (smtp_tag_rcpt(s) != PT_OK ||
	    pt_message_add_rcpt(&s->msg, s->path.mailbox, s->path.mailbox_len) != PT_OK) {
		smtp_reply_nomem(s);
		return;
	}
	if (s->state != SMTP_STATE_RCPT)
		smtp_enter_state(s, SMTP_STATE_RCPT);
	smtp_reply(s, "250 2.1.5 OK");
}

static void smtp_proceed_data(struct smtp_session *s, const char *arg)
{
	(void)arg;
	smtp_data_init(&s->data, &s->msg.data, s->config->max_message_size);
	smtp_enter_state(s, SMTP_STATE_DATA);
	smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void smtp_proceed_rset(struct smtp_session *s, const char *arg)
{
	(void)arg;
	smtp_tx_end(s);
	smtp_reply(s, "250 2.0.0 OK");
}

static void smtp_proceed_noop(struct smtp_session *s, const char *arg)
{
	(void)arg;
	smtp_reply(s, "250 2.0.0 OK");
}

static void smtp_proceed_vrfy(struct smtp_session *s, const char *arg)
{
	(void)arg;
	/* RFC 5321 3.5.3: 252 when we cannot verify, but will try. */
	smtp_reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void smtp_proceed_expn(struct smtp_session *s, const char *arg)
{
	(void)arg;
	smtp_error(s, "502 5.5.1 EXPN not supported");
}

static void smtp_proceed_help(struct smtp_session *s, const char *arg)
{
	(void)arg;
	smtp_reply(s, "214 2.0.0 See https://www.rfc-editor.org/rfc/rfc5321");
}

static void smtp_proceed_quit(struct smtp_session *s, const char *arg)
{
	(void)arg;
	smtp_close(s, "221 2.0.0 %s closing connection", smtp_hostname(s));
}

static const struct smtp_command smtp_commands[] = {
    {"HELO", smtp_check_helo, smtp_proceed_helo, 0},
    {"EHLO", smtp_check_ehlo, smtp_proceed_ehlo, 0},
    {"STARTTLS", smtp_check_starttls, smtp_proceed_starttls, SMTP_CMD_LAST},
    {"MAIL", smtp_check_mail, smtp_proceed_mail, SMTP_CMD_NEED_HELO},
    {"RCPT", smtp_check_rcpt, smtp_proceed_rcpt, 0},
    {"DATA", smtp_check_data, smtp_proceed_data, SMTP_CMD_LAST},
    {"RSET", NULL, smtp_proceed_rset, 0},
    {"NOOP", NULL, smtp_proceed_noop, 0},
    {"VRFY", NULL, smtp_proceed_vrfy, 0},
    {"EXPN", NULL, smtp_proceed_expn, 0},
    {"HELP", NULL, smtp_proceed_help, 0},
    {"QUIT", NULL, smtp_proceed_quit, SMTP_CMD_LAST},
};

/* ---- dispatch ------------------------------------------------------------ */

static const struct smtp_command *smtp_find_command(const char *verb, size_t len)
{
	for (size_t i = 0; i < PT_ARRAY_LEN(smtp_commands); i++) {
		const struct smtp_command *c = &smtp_commands[i];

		if (strlen(c->verb) == len && strncasecmp(c->verb, verb, len) == 0)
			return c;
	}
	return NULL;
}

static void smtp_run(struct smtp_session *s, const struct smtp_command *cmd)
{
	const char *arg = s->parse.arg;

	if ((cmd->flags & SMTP_CMD_NEED_HELO) && s->greeting == SMTP_GREETING_NONE) {
		smtp_error(s, "503 5.5.1 send EHLO or HELO first");
		return;
	}
	if (cmd->check && !cmd->check(s, arg))
		return;
	cmd->proceed(s, arg);
}

/* After each command line: the error limit, then a waiting shutdown. */
static void smtp_command_done(struct smtp_session *s)
{
	if (s->state == SMTP_STATE_CLOSED)
		return;
	if (s->n_errors >= SMTP_MAX_ERRORS) {
		smtp_close(s, "421 4.7.0 too many errors, closing connection");
		return;
	}
	smtp_check_shutdown(s);
}

/* Run one complete line; returns the command run, or NULL. */
static const struct smtp_command *smtp_command(struct smtp_session *s, enum smtp_parse_result r)
{
	const struct smtp_command *cmd = NULL;

	switch (r) {
	case SMTP_PARSE_TOO_LONG:
		/* RFC 5321 4.5.3.1.4; no part of the line is run. */
		smtp_error(s, "500 5.5.0 line too long (%d octets max, RFC 5321 4.5.3.1.4)",
			   SMTP_CMD_LINE_MAX);
		break;
	case SMTP_PARSE_LINE:
		cmd = smtp_find_command(s->parse.verb, s->parse.verb_len);
		if (cmd != NULL) {
			smtp_run(s, cmd);
			break;
		}
		/* FALLTHROUGH */
	default:
		smtp_error(s, "500 5.5.1 command not recognized");
		break;
	}
	smtp_command_done(s);
	return cmd;
}

static bool smtp_reading_commands(const struct smtp_session *s)
{
	return s->state == SMTP_STATE_INIT || s->state == SMTP_STATE_HELO ||
	       s->state == SMTP_STATE_MAIL || s->state == SMTP_STATE_RCPT;
}

/* Run command lines from data; returns the bytes used. */
static size_t smtp_command_input(struct smtp_session *s, const char *data, size_t len)
{
	size_t off = 0, used;

	while (off < len) {
		enum smtp_parse_result r =
		    smtp_parse_command(&s->parse, data + off, len - off, &used);
		const struct smtp_command *cmd;

		off += used;
		if (r == SMTP_PARSE_AGAIN)
			break;
		cmd = smtp_command(s, r);
		/* What follows a group's last command is routed by the new state. */
		if ((cmd && (cmd->flags & SMTP_CMD_LAST)) || !smtp_reading_commands(s))
			break;
	}
	return off;
}

/* DATA content; returns the bytes used (up to the end of data at most). */
static size_t smtp_data_input(struct smtp_session *s, const char *data, size_t len)
{
	bool done;
	size_t used = smtp_data_feed(&s->data, data, len, &done);

	if (done)
		smtp_data_end(s);
	return used;
}

/* Keep input that arrived while SMTP_EV_MESSAGE is pending (see top). */
static void smtp_hold(struct smtp_session *s, const char *data, size_t len)
{
	if (s->hold_overflow)
		return;
	if (len > SMTP_HOLD_MAX - s->hold.len || pt_buf_append(&s->hold, data, len) != PT_OK) {
		pt_info("smtp %s: more than %d octets pipelined while a message is pending",
			s->peer_ip, SMTP_HOLD_MAX);
		s->hold_overflow = true;
		pt_buf_free(&s->hold);
	}
}

/* Route input by state until it is used up or the session stops reading. */
static void smtp_input(struct smtp_session *s, const char *data, size_t len)
{
	size_t used;

	while (len > 0) {
		switch (s->state) {
		case SMTP_STATE_DATA:
			used = smtp_data_input(s, data, len);
			break;
		case SMTP_STATE_MESSAGE:
			smtp_hold(s, data, len);
			return;
		case SMTP_STATE_STARTTLS:
			/* RFC 3207 6: never run what was pipelined after STARTTLS. */
			pt_debug("smtp %s: %zu octets after STARTTLS discarded", s->peer_ip, len);
			return;
		case SMTP_STATE_CLOSED:
			return;
		default:
			used = smtp_command_input(s, data, len);
			break;
		}
		data += used;
		len -= used;
	}
}

/* ---- the interface ------------------------------------------------------- */

struct smtp_session *smtp_session_new(const struct smtp_server_config *config,
				      struct pt_idgen *idgen, const char *peer_ip,
				      bool relay_allowed)
{
	struct smtp_session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->peer_ip = strdup(peer_ip ? peer_ip : "");
	if (s->peer_ip == NULL)
		goto fail;
	s->config = config;
	s->idgen = idgen;
	s->relay_allowed = relay_allowed;
	s->state = SMTP_STATE_INIT;
	smtp_parse_init(&s->parse);
	pt_message_init(&s->msg);
	smtp_reply(s, "220 %s %s", smtp_hostname(s),
		   config->banner ? config->banner : "ESMTP Petrel");
	if (s->state == SMTP_STATE_CLOSED)
		goto fail;
	return s;
fail:
	pt_buf_free(&s->out);
	free(s->peer_ip);
	free(s);
	return NULL;
}

void smtp_session_free(struct smtp_session *s, const char *reason)
{
	if (s == NULL)
		return;
	pt_debug("smtp %s: session ends in %s: %s", s->peer_ip, smtp_strstate((int)s->state),
		 reason ? reason : "(no reason)");
	pt_message_clear(&s->msg);
	pt_buf_free(&s->out);
	pt_buf_free(&s->hold);
	free(s->rcpt_tags);
	free(s->ehlo);
	free(s->peer_ip);
	free(s);
}

void smtp_session_set_rcpt_hook(struct smtp_session *s, smtp_rcpt_hook_fn fn, void *ctx)
{
	s->rcpt_hook = fn;
	s->rcpt_ctx = ctx;
}

unsigned smtp_session_rcpt_tag(const struct smtp_session *s, size_t i)
{
	return i < s->msg.n_rcpts && s->rcpt_tags != NULL ? s->rcpt_tags[i] : 0;
}

const char *smtp_session_ehlo(const struct smtp_session *s)
{
	return s->ehlo;
}

void smtp_session_feed(struct smtp_session *s, const char *data, size_t len)
{
	smtp_input(s, data, len);
}

struct pt_buf *smtp_session_output(struct smtp_session *s)
{
	return &s->out;
}

enum smtp_event smtp_session_event(const struct smtp_session *s)
{
	switch (s->state) {
	case SMTP_STATE_MESSAGE:
		return SMTP_EV_MESSAGE;
	case SMTP_STATE_STARTTLS:
		return SMTP_EV_STARTTLS;
	case SMTP_STATE_CLOSED:
		return SMTP_EV_CLOSE;
	default:
		return SMTP_EV_NONE;
	}
}

/*
 * The transaction's message.  Complete while SMTP_EV_MESSAGE is pending;
 * at other times it is the transaction so far (envelope, body as received
 * up to now), which tests use to watch the body stay bounded.  Never NULL.
 */
struct pt_message *smtp_session_message(struct smtp_session *s)
{
	return &s->msg;
}

void smtp_session_message_done(struct smtp_session *s, int code, const char *text)
{
	struct pt_buf held;

	if (s->state != SMTP_STATE_MESSAGE) {
		pt_debug("smtp %s: message_done in state %s ignored", s->peer_ip,
			 smtp_strstate((int)s->state));
		return;
	}
	smtp_reply_text(s, code, text);
	smtp_tx_end(s);
	if (s->hold_overflow) {
		smtp_close(s, "421 4.7.0 too much pipelined input");
		return;
	}
	smtp_check_shutdown(s);
	/* Run what was held; anything held anew goes to a fresh buffer. */
	held = s->hold;
	s->hold = (struct pt_buf)PT_BUF_INIT;
	smtp_input(s, held.data, held.len);
	pt_buf_free(&held);
}

void smtp_session_tls_done(struct smtp_session *s, const char *tls_protocol, const char *tls_cipher)
{
	if (s->state != SMTP_STATE_STARTTLS) {
		pt_debug("smtp %s: tls_done in state %s ignored", s->peer_ip,
			 smtp_strstate((int)s->state));
		return;
	}
	pt_debug("smtp %s: TLS on (%s, %s)", s->peer_ip, tls_protocol ? tls_protocol : "?",
		 tls_cipher ? tls_cipher : "?");
	/* RFC 3207 4.2: forget all we knew from the client, the EHLO name too. */
	s->tls = true;
	free(s->ehlo);
	s->ehlo = NULL;
	s->greeting = SMTP_GREETING_NONE;
	smtp_tx_reset(s);
	smtp_parse_init(&s->parse);
	smtp_enter_state(s, SMTP_STATE_INIT);
	smtp_check_shutdown(s);
}

void smtp_session_timeout(struct smtp_session *s)
{
	if (s->state == SMTP_STATE_CLOSED)
		return;
	smtp_close(s, "421 4.4.2 %s timeout, closing connection", smtp_hostname(s));
}

void smtp_session_shutdown(struct smtp_session *s)
{
	if (s->state == SMTP_STATE_CLOSED)
		return;
	s->shutdown = true;
	smtp_check_shutdown(s);
}

bool smtp_session_in_data(const struct smtp_session *s)
{
	return s->state == SMTP_STATE_DATA;
}

bool smtp_session_idle(const struct smtp_session *s)
{
	return !smtp_in_transaction(s);
}
