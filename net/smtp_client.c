/*
 * smtp_client.c -- the outbound SMTP session (RFC 5321, with PIPELINING
 * RFC 2920, SIZE RFC 1870, 8BITMIME RFC 6152, SMTPUTF8 RFC 6531,
 * ENHANCEDSTATUSCODES RFC 2034 and STARTTLS RFC 3207) as a pure state
 * machine, shaped as OpenSMTPD's mta_session.c: bytes in, command bytes and
 * events out.  It never does I/O; the shard (shard/shard_out.c) glues it to
 * a socket, to TLS and to its timers.  This file runs the session and its
 * interface; smtp_client_tx.c runs transactions; smtp_client_parse.c reads
 * replies.
 *
 * States.  One enum, changed only by smtp_client_enter_state(), which traces
 * "old -> new" at debug level.  Each waiting state names the reply it waits
 * for, hence its timeout (smtp_client_timeout_ms, KumoMTA's per-phase
 * timeouts) and the command a reply or a failure is attributed to:
 *
 *   BANNER --220--> EHLO --2xx--> [STARTTLS --220--> TLS --tls_done--> EHLO] --> READY
 *                    |5xx                                                 ^
 *                    +--> HELO --2xx------------------------------------->+
 *
 *   READY --send--> [RSET] --> MAIL --> RCPT ... --> DATA --354--> DOT --> READY
 *                                                     +--354, no rcpt--> DATA_ABORT --> READY
 *   READY --quit--> QUIT --any reply, EOF, timeout--> CLOSED
 *   any waiting state, READY --421, timeout, EOF, protocol error--> FAILED
 *
 * Pipelining (RFC 2920).  With PIPELINING advertised and enabled, [RSET],
 * MAIL, every RCPT and DATA are written at once; the replies then arrive
 * in that order and walk the states above one by one, so the code reading
 * them is the same with and without pipelining: without it, each reply
 * also writes the next command.  Input is read reply by reply, and a reply
 * that changes what comes next (STARTTLS's 220, a 421) stops the reading of
 * the bytes after it.
 *
 * Events wait in a small queue until smtp_client_next_event() takes them,
 * in order.  A READY not taken yet is withdrawn when the session fails or
 * a transaction starts, so READY, when taken, is true.
 *
 * Failure.  A 421 at any time (RFC 5321 3.8), a timeout, the connection
 * lost, or a protocol error -- a line the parser refuses, or a reply of a
 * class its command never gets (a 354 to MAIL, a 250 to DATA, anything but
 * 421 while idle), which means the two sides are out of step -- FAILS the
 * session: the recipients still waiting get that reply (TX_DONE first),
 * and nothing more is read or written.  Local replies: 451 4.4.2 for a
 * timeout or a lost connection (naming what was awaited), 451 4.5.0 for a
 * protocol error, 451 4.7.4 when TLS is required but not offered, 451
 * 4.7.5 for a failed handshake, 451 4.3.0 when memory runs out.  A failure
 * before the first READY is flagged (smtp_client_failed_before_ready): the
 * shard then tries the next MX host.
 *
 * TLS.  STARTTLS per enable_tls (KumoMTA's values): Opportunistic* when
 * advertised; Required* fails before READY when not advertised; Disabled
 * never.  A refused STARTTLS fails the session whatever the mode, as in
 * KumoMTA (no fall-back to plaintext on that connection).  After the 220,
 * input is discarded until smtp_client_tls_done() (RFC 3207 4.2: nothing
 * received before the handshake can be trusted), then EHLO again, with
 * the extensions forgotten.
 *
 * Memory: the client, its output buffer, the slots and refused replies of
 * the current transaction, all freed in smtp_client_free().
 */
#include "net/smtp_client_int.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Per state: its name, the command its reply answers, and its timeout. */
struct smtp_client_phase {
	const char *name;
	const char *command; /* also smtp_client_reply.command */
	const char *awaited; /* for "timed out waiting ... for <awaited>" */
	size_t timeout_off;  /* offsetof a timeout in smtp_client_config; 0: none */
};

#define PHASE_TIMEOUT(field) offsetof(struct smtp_client_config, field)

static const struct smtp_client_phase smtp_client_phases[] = {
    [SMTP_CLIENT_STATE_BANNER] = {"BANNER", "banner", "the banner",
				  PHASE_TIMEOUT(banner_timeout_ms)},
    [SMTP_CLIENT_STATE_EHLO] = {"EHLO", "EHLO", "the reply to EHLO",
				PHASE_TIMEOUT(ehlo_timeout_ms)},
    [SMTP_CLIENT_STATE_HELO] = {"HELO", "HELO", "the reply to HELO",
				PHASE_TIMEOUT(ehlo_timeout_ms)},
    [SMTP_CLIENT_STATE_STARTTLS] = {"STARTTLS", "STARTTLS", "the reply to STARTTLS",
				    PHASE_TIMEOUT(starttls_timeout_ms)},
    [SMTP_CLIENT_STATE_TLS] = {"TLS", "STARTTLS", "the TLS handshake",
			       PHASE_TIMEOUT(starttls_timeout_ms)},
    [SMTP_CLIENT_STATE_READY] = {"READY", NULL, "nothing", 0},
    [SMTP_CLIENT_STATE_RSET] = {"RSET", "RSET", "the reply to RSET",
				PHASE_TIMEOUT(rset_timeout_ms)},
    [SMTP_CLIENT_STATE_MAIL] = {"MAIL", "MAIL FROM", "the reply to MAIL FROM",
				PHASE_TIMEOUT(mail_from_timeout_ms)},
    [SMTP_CLIENT_STATE_RCPT] = {"RCPT", "RCPT TO", "the reply to RCPT TO",
				PHASE_TIMEOUT(rcpt_to_timeout_ms)},
    [SMTP_CLIENT_STATE_DATA] = {"DATA", "DATA", "the reply to DATA",
				PHASE_TIMEOUT(data_timeout_ms)},
    [SMTP_CLIENT_STATE_DOT] = {"DOT", "data dot", "the reply to the final dot",
			       PHASE_TIMEOUT(data_dot_timeout_ms)},
    [SMTP_CLIENT_STATE_DATA_ABORT] = {"DATA_ABORT", "data dot", "the reply to the final dot",
				      PHASE_TIMEOUT(data_dot_timeout_ms)},
    [SMTP_CLIENT_STATE_QUIT] = {"QUIT", "QUIT", "the reply to QUIT",
				PHASE_TIMEOUT(quit_timeout_ms)},
    [SMTP_CLIENT_STATE_FAILED] = {"FAILED", NULL, "nothing", 0},
    [SMTP_CLIENT_STATE_CLOSED] = {"CLOSED", NULL, "nothing", 0},
};

/* ---- states, events ------------------------------------------------------ */

const char *smtp_client_strstate(const struct smtp_client *c)
{
	return smtp_client_phases[c->state].name;
}

void smtp_client_enter_state(struct smtp_client *c, enum smtp_client_state state)
{
	pt_debug("smtp client %p: %s -> %s", (void *)c, smtp_client_phases[c->state].name,
		 smtp_client_phases[state].name);
	c->state = state;
}

void smtp_client_push_event(struct smtp_client *c, enum smtp_client_event ev)
{
	if (c->n_events == SMTP_CLIENT_MAX_EVENTS)
		pt_panic("smtp client: event queue overflow (%u events)", c->n_events);
	c->events[(c->ev_head + c->n_events++) % SMTP_CLIENT_MAX_EVENTS] = ev;
}

/* A READY not taken yet is no longer true once the session failed or closed. */
void smtp_client_drop_ready(struct smtp_client *c)
{
	unsigned n = 0;

	for (unsigned i = 0; i < c->n_events; i++) {
		enum smtp_client_event ev = c->events[(c->ev_head + i) % SMTP_CLIENT_MAX_EVENTS];

		if (ev != SMTP_CLIENT_EV_READY)
			c->events[(c->ev_head + n++) % SMTP_CLIENT_MAX_EVENTS] = ev;
	}
	c->n_events = n;
}

static bool client_in_transaction(const struct smtp_client *c)
{
	return c->state >= SMTP_CLIENT_STATE_RSET && c->state <= SMTP_CLIENT_STATE_DATA_ABORT;
}

static const char *client_command(const struct smtp_client *c)
{
	return smtp_client_phases[c->state].command;
}

static uint64_t client_phase_timeout(const struct smtp_client *c, enum smtp_client_state state)
{
	size_t off = smtp_client_phases[state].timeout_off;

	if (off == 0)
		return 0;
	return *(const uint64_t *)((const char *)&c->cfg + off);
}

/* ---- replies made here --------------------------------------------------- */

void smtp_client_local_reply(struct smtp_client_reply *r, int code, int subject, int detail,
			     const char *command, const char *fmt, ...)
{
	va_list ap;

	memset(r, 0, sizeof(*r));
	r->code = code;
	r->enh_class = code / 100;
	r->enh_subject = subject;
	r->enh_detail = detail;
	r->command = command;
	r->local = true;
	va_start(ap, fmt);
	vsnprintf(r->content, sizeof(r->content), fmt, ap);
	va_end(ap);
}

/* "300s", or "1500ms" when not whole seconds. */
static void client_format_ms(char *buf, size_t len, uint64_t ms)
{
	if (ms % 1000 == 0)
		snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
	else
		snprintf(buf, len, "%" PRIu64 "ms", ms);
}

/* ---- ending: transactions, failure --------------------------------------- */

void smtp_client_become_ready(struct smtp_client *c)
{
	c->ever_ready = true;
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_READY);
	smtp_client_push_event(c, SMTP_CLIENT_EV_READY);
}

/*
 * The session is unusable: r (copied) is the reason, and the reply of every
 * recipient still waiting.  Nothing is read or written after this.
 */
void smtp_client_fail(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (c->state == SMTP_CLIENT_STATE_FAILED || c->state == SMTP_CLIENT_STATE_CLOSED)
		return;
	c->failure = *r;
	pt_debug("smtp client %p: failed in %s: %d %s", (void *)c, smtp_client_strstate(c), r->code,
		 r->content);
	if (client_in_transaction(c))
		smtp_client_tx_fail(c);
	c->failed_before_ready = !c->ever_ready;
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_FAILED);
	smtp_client_drop_ready(c);
	smtp_client_push_event(c, SMTP_CLIENT_EV_FAILED);
}

static void __attribute__((format(printf, 5, 6)))
client_fail_local(struct smtp_client *c, int code, int subject, int detail, const char *fmt, ...)
{
	struct smtp_client_reply r;
	va_list ap;

	smtp_client_local_reply(&r, code, subject, detail, client_command(c), "%s", "");
	va_start(ap, fmt);
	vsnprintf(r.content, sizeof(r.content), fmt, ap);
	va_end(ap);
	smtp_client_fail(c, &r);
}

void smtp_client_fail_nomem(struct smtp_client *c)
{
	c->nomem = true;
	client_fail_local(c, 451, 3, 0, "out of memory in the SMTP client");
}

/* A reply of a class its command never gets: out of step (see the top). */
void smtp_client_fail_unexpected(struct smtp_client *c, const struct smtp_client_reply *r)
{
	client_fail_local(c, 451, 5, 0, "protocol error: unexpected reply to %s: %d %s",
			  client_command(c) ? client_command(c) : "nothing", r->code, r->content);
}

/* ---- output -------------------------------------------------------------- */

/* Append a command line; a failed allocation fails the session. */
int smtp_client_write(struct smtp_client *c, const char *line)
{
	if (pt_buf_append_str(&c->out, line) == PT_OK)
		return PT_OK;
	smtp_client_fail_nomem(c);
	return PT_NOMEM;
}

static void client_send_ehlo(struct smtp_client *c)
{
	c->ext = 0;
	c->peer_max_size = 0;
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_EHLO);
	if (pt_buf_printf(&c->out, "EHLO %s\r\n", c->ehlo_arg) != PT_OK)
		smtp_client_fail_nomem(c);
}

/* ---- EHLO keywords ------------------------------------------------------- */

static bool client_keyword_is(const char *text, size_t n, const char *kw, const char **arg)
{
	size_t k = strlen(kw);

	if (n < k || strncasecmp(text, kw, k) != 0 || (n > k && text[k] != ' ' && text[k] != '='))
		return false;
	*arg = text + k + (n > k ? 1 : 0);
	return true;
}

/* SIZE's argument; 0 (no limit) when absent or not a number (RFC 1870 4). */
static uint64_t client_size_arg(const char *s, const char *end)
{
	uint64_t v = 0;

	while (s < end && *s == ' ')
		s++;
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - 9) / 10)
			return UINT64_MAX;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	return v;
}

/* One line of a 250 to EHLO after the first: an extension (RFC 5321 4.1.1.1). */
static void client_ehlo_line(struct smtp_client *c)
{
	static const struct {
		const char *keyword;
		unsigned bit;
	} known[] = {
	    {"PIPELINING", SMTP_CLIENT_EXT_PIPELINING},
	    {"SIZE", SMTP_CLIENT_EXT_SIZE},
	    {"8BITMIME", SMTP_CLIENT_EXT_8BITMIME},
	    {"STARTTLS", SMTP_CLIENT_EXT_STARTTLS},
	    {"SMTPUTF8", SMTP_CLIENT_EXT_SMTPUTF8},
	    {"ENHANCEDSTATUSCODES", SMTP_CLIENT_EXT_ENHANCEDSTATUSCODES},
	};
	const char *text = c->parse.text, *arg;
	size_t n = c->parse.text_len;

	if (c->parse.reply.code != 250 || c->parse.n_lines < 2)
		return;
	for (size_t i = 0; i < PT_ARRAY_LEN(known); i++) {
		if (!client_keyword_is(text, n, known[i].keyword, &arg))
			continue;
		c->ext |= known[i].bit;
		if (known[i].bit == SMTP_CLIENT_EXT_SIZE)
			c->peer_max_size = client_size_arg(arg, text + n);
		return;
	}
}

/* ---- the session before READY ------------------------------------------- */

/* EHLO or HELO done: STARTTLS as enable_tls says, else READY. */
static void client_greeted(struct smtp_client *c)
{
	bool required = c->cfg.tls == SMTP_CLIENT_TLS_REQUIRED ||
			c->cfg.tls == SMTP_CLIENT_TLS_REQUIRED_INSECURE;

	if (c->tls_on || c->cfg.tls == SMTP_CLIENT_TLS_DISABLED) {
		smtp_client_become_ready(c);
		return;
	}
	if (c->ext & SMTP_CLIENT_EXT_STARTTLS) {
		smtp_client_enter_state(c, SMTP_CLIENT_STATE_STARTTLS);
		smtp_client_write(c, "STARTTLS\r\n");
		return;
	}
	if (!required) {
		smtp_client_become_ready(c);
		return;
	}
	client_fail_local(c, 451, 7, 4, "TLS is required, but the peer did not advertise STARTTLS");
}

/* A 4xx/5xx fails the session with the peer's reply; any other unexpected class too. */
void smtp_client_refused(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (r->code >= 400)
		smtp_client_fail(c, r);
	else
		smtp_client_fail_unexpected(c, r);
}

static void client_reply_banner(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (r->code == 220)
		client_send_ehlo(c);
	else
		smtp_client_refused(c, r);
}

static void client_reply_ehlo(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (r->code / 100 == 2) {
		client_greeted(c);
		return;
	}
	if (r->code / 100 == 5) {
		/* RFC 5321 4.1.4: a server that does not know EHLO may know HELO. */
		c->ext = 0;
		c->peer_max_size = 0;
		smtp_client_enter_state(c, SMTP_CLIENT_STATE_HELO);
		if (pt_buf_printf(&c->out, "HELO %s\r\n", c->ehlo_arg) != PT_OK)
			smtp_client_fail_nomem(c);
		return;
	}
	smtp_client_refused(c, r);
}

static void client_reply_helo(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (r->code / 100 == 2)
		client_greeted(c);
	else
		smtp_client_refused(c, r);
}

static void client_reply_starttls(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (r->code != 220) {
		smtp_client_refused(c, r);
		return;
	}
	/* Input after the 220 is discarded by smtp_client_feed until tls_done. */
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_TLS);
	smtp_client_push_event(c, SMTP_CLIENT_EV_START_TLS);
}

/* ---- replies ------------------------------------------------------------- */

static void client_reply(struct smtp_client *c, struct smtp_client_reply *r)
{
	r->command = client_command(c);
	r->local = false;
	switch (c->state) {
	case SMTP_CLIENT_STATE_BANNER:
		client_reply_banner(c, r);
		break;
	case SMTP_CLIENT_STATE_EHLO:
		client_reply_ehlo(c, r);
		break;
	case SMTP_CLIENT_STATE_HELO:
		client_reply_helo(c, r);
		break;
	case SMTP_CLIENT_STATE_STARTTLS:
		client_reply_starttls(c, r);
		break;
	case SMTP_CLIENT_STATE_RSET:
	case SMTP_CLIENT_STATE_MAIL:
	case SMTP_CLIENT_STATE_RCPT:
	case SMTP_CLIENT_STATE_DATA:
	case SMTP_CLIENT_STATE_DOT:
	case SMTP_CLIENT_STATE_DATA_ABORT:
		smtp_client_tx_reply(c, r);
		break;
	case SMTP_CLIENT_STATE_QUIT:
		smtp_client_enter_state(c, SMTP_CLIENT_STATE_CLOSED);
		smtp_client_push_event(c, SMTP_CLIENT_EV_CLOSED);
		break;
	case SMTP_CLIENT_STATE_READY:
		/* Unasked: a 421 as the peer shuts down (RFC 5321 3.8), or garbage. */
		if (r->code == 421)
			smtp_client_fail(c, r);
		else
			smtp_client_fail_unexpected(c, r);
		break;
	default:
		pt_panic("smtp client: reply in state %s", smtp_client_strstate(c));
	}
}

/* Whether input is read now; in TLS it is discarded (RFC 3207 4.2). */
static bool client_reading(const struct smtp_client *c)
{
	return c->state != SMTP_CLIENT_STATE_TLS && c->state != SMTP_CLIENT_STATE_FAILED &&
	       c->state != SMTP_CLIENT_STATE_CLOSED;
}

/* ---- the interface ------------------------------------------------------- */

/* The EHLO argument: the domain, or an address literal for an IP (RFC 5321 4.1.3). */
static char *client_ehlo_arg(const char *domain)
{
	unsigned char addr[16];
	char *s = NULL;

	if (domain == NULL || *domain == '\0')
		domain = "localhost";
	if (inet_pton(AF_INET, domain, addr) == 1) {
		if (asprintf(&s, "[%s]", domain) < 0)
			return NULL;
		return s;
	}
	if (inet_pton(AF_INET6, domain, addr) == 1) {
		if (asprintf(&s, "[IPv6:%s]", domain) < 0)
			return NULL;
		return s;
	}
	return strdup(domain);
}

static void client_default(uint64_t *ms, uint64_t dflt)
{
	if (*ms == 0)
		*ms = dflt;
}

struct smtp_client *smtp_client_new(const struct smtp_client_config *cfg)
{
	struct smtp_client *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->cfg = *cfg;
	c->cfg.ehlo_domain = NULL;
	c->ehlo_arg = client_ehlo_arg(cfg->ehlo_domain);
	if (c->ehlo_arg == NULL || c->ehlo_arg[strcspn(c->ehlo_arg, "\r\n<>")] != '\0' ||
	    strchr(c->ehlo_arg, ' ')) {
		free(c->ehlo_arg);
		free(c);
		return NULL;
	}
	/* KumoMTA's defaults (SmtpClientTimeouts). */
	client_default(&c->cfg.banner_timeout_ms, 60000);
	client_default(&c->cfg.ehlo_timeout_ms, 300000);
	client_default(&c->cfg.starttls_timeout_ms, 5000);
	client_default(&c->cfg.mail_from_timeout_ms, 300000);
	client_default(&c->cfg.rcpt_to_timeout_ms, 300000);
	client_default(&c->cfg.data_timeout_ms, 300000);
	client_default(&c->cfg.data_dot_timeout_ms, 300000);
	client_default(&c->cfg.rset_timeout_ms, 5000);
	client_default(&c->cfg.quit_timeout_ms, 5000);
	smtp_client_parse_init(&c->parse);
	c->state = SMTP_CLIENT_STATE_BANNER;
	return c;
}

void smtp_client_free(struct smtp_client *c)
{
	if (c == NULL)
		return;
	pt_debug("smtp client %p: freed in %s", (void *)c, smtp_client_strstate(c));
	pt_buf_free(&c->out);
	free(c->slots);
	free(c->refused);
	free(c->ehlo_arg);
	free(c);
}

int smtp_client_feed(struct smtp_client *c, const void *data, size_t len)
{
	const char *p = data;
	size_t used;

	c->nomem = false;
	while (len > 0 && client_reading(c)) {
		enum smtp_client_parse_result r = smtp_client_parse_reply(&c->parse, p, len, &used);

		p += used;
		len -= used;
		switch (r) {
		case SMTP_CLIENT_PARSE_AGAIN:
			break;
		case SMTP_CLIENT_PARSE_LINE:
			if (c->state == SMTP_CLIENT_STATE_EHLO)
				client_ehlo_line(c);
			break;
		case SMTP_CLIENT_PARSE_REPLY:
			if (c->state == SMTP_CLIENT_STATE_EHLO)
				client_ehlo_line(c);
			client_reply(c, &c->parse.reply);
			break;
		case SMTP_CLIENT_PARSE_ERROR:
			client_fail_local(c, 451, 5, 0, "protocol error: %s", c->parse.error);
			break;
		}
	}
	if (len > 0 && c->state == SMTP_CLIENT_STATE_TLS)
		pt_debug("smtp client %p: %zu octets before the TLS handshake discarded", (void *)c,
			 len);
	return c->nomem ? PT_NOMEM : PT_OK;
}

void smtp_client_eof(struct smtp_client *c)
{
	switch (c->state) {
	case SMTP_CLIENT_STATE_QUIT:
		smtp_client_enter_state(c, SMTP_CLIENT_STATE_CLOSED);
		smtp_client_push_event(c, SMTP_CLIENT_EV_CLOSED);
		return;
	case SMTP_CLIENT_STATE_FAILED:
	case SMTP_CLIENT_STATE_CLOSED:
		return;
	case SMTP_CLIENT_STATE_READY:
		client_fail_local(c, 451, 4, 2, "connection closed by the peer while idle");
		return;
	default:
		client_fail_local(c, 451, 4, 2,
				  "connection closed by the peer while waiting for %s",
				  smtp_client_phases[c->state].awaited);
	}
}

void smtp_client_timeout(struct smtp_client *c)
{
	char took[32];

	switch (c->state) {
	case SMTP_CLIENT_STATE_QUIT:
		/* Nothing is lost: close anyway. */
		smtp_client_enter_state(c, SMTP_CLIENT_STATE_CLOSED);
		smtp_client_push_event(c, SMTP_CLIENT_EV_CLOSED);
		return;
	case SMTP_CLIENT_STATE_READY:
	case SMTP_CLIENT_STATE_FAILED:
	case SMTP_CLIENT_STATE_CLOSED:
		return;
	default:
		client_format_ms(took, sizeof(took), client_phase_timeout(c, c->state));
		client_fail_local(c, 451, 4, 2, "timed out waiting %s for %s", took,
				  smtp_client_phases[c->state].awaited);
	}
}

uint64_t smtp_client_timeout_ms(const struct smtp_client *c)
{
	return client_phase_timeout(c, c->state);
}

enum smtp_client_event smtp_client_next_event(struct smtp_client *c)
{
	enum smtp_client_event ev;

	if (c->n_events == 0)
		return SMTP_CLIENT_EV_NONE;
	ev = c->events[c->ev_head];
	c->ev_head = (c->ev_head + 1) % SMTP_CLIENT_MAX_EVENTS;
	c->n_events--;
	return ev;
}

struct pt_buf *smtp_client_output(struct smtp_client *c)
{
	return &c->out;
}

bool smtp_client_output_body(struct smtp_client *c, size_t *off, size_t *len)
{
	bool there = c->body_len > 0 && c->body_off + c->body_len <= c->out.len;

	*off = there ? c->body_off : 0;
	*len = there ? c->body_len : 0;
	c->body_len = 0;
	return there;
}

void smtp_client_tls_done(struct smtp_client *c, bool ok, const char *reason)
{
	if (c->state != SMTP_CLIENT_STATE_TLS) {
		pt_debug("smtp client %p: tls_done in state %s ignored", (void *)c,
			 smtp_client_strstate(c));
		return;
	}
	if (!ok) {
		client_fail_local(c, 451, 7, 5, "TLS handshake failed: %s",
				  reason ? reason : "(no reason given)");
		return;
	}
	/* RFC 3207 4.2: forget what the peer said before; ask again. */
	c->tls_on = true;
	smtp_client_parse_init(&c->parse);
	client_send_ehlo(c);
}

bool smtp_client_tls_active(const struct smtp_client *c)
{
	return c->tls_on;
}

bool smtp_client_tls_verify(const struct smtp_client *c)
{
	return c->cfg.tls == SMTP_CLIENT_TLS_OPPORTUNISTIC ||
	       c->cfg.tls == SMTP_CLIENT_TLS_REQUIRED;
}

void smtp_client_quit(struct smtp_client *c)
{
	if (c->state != SMTP_CLIENT_STATE_READY)
		return;
	smtp_client_drop_ready(c);
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_QUIT);
	smtp_client_write(c, "QUIT\r\n");
}

const struct smtp_client_reply *smtp_client_failure(const struct smtp_client *c)
{
	return &c->failure;
}

bool smtp_client_failed_before_ready(const struct smtp_client *c)
{
	return c->state == SMTP_CLIENT_STATE_FAILED && c->failed_before_ready;
}

unsigned smtp_client_extensions(const struct smtp_client *c)
{
	return c->ext;
}

unsigned smtp_client_n_transactions(const struct smtp_client *c)
{
	return c->n_transactions;
}
