/*
 * smtp_client_tx.c -- the SMTP client's transactions (see smtp_client.c
 * for the session, its states and how pipelining walks them).
 *
 *   READY --send--> [RSET] --> MAIL --> RCPT ... --> DATA --354--> DOT --> READY
 *                                                     +--354, no rcpt--> DATA_ABORT --> READY
 *
 * A transaction is MAIL FROM:<s> [SIZE=n] [BODY=8BITMIME] [SMTPUTF8], a
 * RCPT TO:<r> per recipient, DATA, and after the 354 the body, dot-stuffed
 * (RFC 5321 4.5.2), ending in CRLF "." CRLF.  Before anything is written,
 * what can be decided here is: a message over the peer's SIZE (552 5.3.4,
 * RFC 1870 6.1), a path that cannot go into a command line (501).
 *
 * Recipients.  Each has a slot saying what decided it: its own refused
 * RCPT reply (kept in an array that grows only with refusals, so a large
 * batch costs a word per recipient), or one reply shared by many:
 *
 *   MAIL refused     every recipient gets the MAIL reply
 *   RCPT refused     that recipient gets its RCPT reply
 *   DATA refused     every accepted recipient gets the DATA reply
 *   final dot        every accepted recipient gets its reply, whatever it is
 *   session failed   every recipient still waiting gets the failure (421,
 *                    timeout, lost connection, protocol error)
 *
 * A transaction ended before its final dot (MAIL, every RCPT or DATA
 * refused) leaves the peer's state uncertain: the next one starts with
 * RSET (in the same group when pipelining).  After a final dot's reply,
 * whatever it said, the transaction is over (RFC 5321 4.1.1.4) and none is
 * needed.  A 5xx to RSET says nothing about the message, so it is a
 * protocol error (a local 451), never a bounce.
 */
#include "net/smtp_client_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- ending -------------------------------------------------------------- */

/* Every recipient has its reply: TX_DONE. */
static void client_tx_done(struct smtp_client *c)
{
	c->tx = NULL;
	c->n_transactions++;
	smtp_client_push_event(c, SMTP_CLIENT_EV_TX_DONE);
}

/* The transaction ended on a reply (not a failure): TX_DONE, then READY. */
static void client_tx_end(struct smtp_client *c)
{
	client_tx_done(c);
	smtp_client_become_ready(c);
}

void smtp_client_tx_fail(struct smtp_client *c)
{
	for (size_t i = 0; i < c->n_rcpts; i++)
		if (c->slots[i] == SLOT_WAITING || c->slots[i] == SLOT_ACCEPTED)
			c->slots[i] = SLOT_FAILURE;
	client_tx_done(c);
}

/* A path may go into a command line: no CR, LF, "<" or ">". */
static bool client_path_ok(const char *s)
{
	return s[strcspn(s, "\r\n<>")] == '\0';
}

static bool client_is_8bit(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return true;
	return false;
}

static bool client_body_8bit(const struct smtp_client_tx *tx)
{
	for (int i = 0; i < tx->n_body; i++)
		if (client_is_8bit(tx->body[i].iov_base, tx->body[i].iov_len))
			return true;
	return false;
}

static bool client_envelope_8bit(const struct smtp_client_tx *tx)
{
	if (client_is_8bit(tx->sender, strlen(tx->sender)))
		return true;
	for (size_t i = 0; i < tx->n_rcpts; i++)
		if (client_is_8bit(tx->rcpts[i], strlen(tx->rcpts[i])))
			return true;
	return false;
}

/* Whether the body's last two octets are CRLF (an empty body needs no CRLF). */
static bool client_body_ends_crlf(const struct smtp_client_tx *tx)
{
	char tail[2] = {0, 0};
	size_t have = 0;

	for (int i = tx->n_body - 1; i >= 0 && have < 2; i--) {
		const char *p = tx->body[i].iov_base;

		for (size_t k = tx->body[i].iov_len; k > 0 && have < 2; k--)
			tail[1 - have++] = p[k - 1];
	}
	return have == 0 || (have == 2 && tail[0] == '\r' && tail[1] == '\n');
}

/* The next recipient from i on whose RCPT goes to the peer; n_rcpts when none. */
static size_t client_next_sent(const struct smtp_client *c, size_t i)
{
	while (i < c->n_rcpts && !client_path_ok(c->tx->rcpts[i]))
		i++;
	return i;
}

/* MAIL with its parameters (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8). */
static int client_write_mail(struct smtp_client *c)
{
	struct pt_buf *o = &c->out;
	int rc = pt_buf_printf(o, "MAIL FROM:<%s>", c->tx->sender);

	if (rc == PT_OK && c->mail_size > 0)
		rc = pt_buf_printf(o, " SIZE=%" PRIu64, c->mail_size);
	if (rc == PT_OK && c->mail_8bit)
		rc = pt_buf_append_str(o, " BODY=8BITMIME");
	if (rc == PT_OK && c->mail_utf8)
		rc = pt_buf_append_str(o, " SMTPUTF8");
	if (rc == PT_OK)
		rc = pt_buf_append(o, "\r\n", 2);
	return rc;
}

static int client_write_rcpt(struct smtp_client *c, size_t i)
{
	return pt_buf_printf(&c->out, "RCPT TO:<%s>\r\n", c->tx->rcpts[i]);
}

/* Keep a refused RCPT's reply for recipient i (the array grows only with refusals). */
static int client_refuse_rcpt(struct smtp_client *c, size_t i, const struct smtp_client_reply *r)
{
	if (c->n_refused == c->refused_cap) {
		size_t cap = c->refused_cap ? c->refused_cap * 2 : 4;
		struct smtp_client_reply *n = realloc(c->refused, cap * sizeof(*n));

		if (n == NULL)
			return PT_NOMEM;
		c->refused = n;
		c->refused_cap = cap;
	}
	c->refused[c->n_refused] = *r;
	c->slots[i] = SLOT_REFUSED + (uint32_t)c->n_refused++;
	return PT_OK;
}

/* Every recipient still waiting gets the shared reply in slot. */
static void client_decide_waiting(struct smtp_client *c, uint32_t from, uint32_t slot)
{
	for (size_t i = 0; i < c->n_rcpts; i++)
		if (c->slots[i] == from)
			c->slots[i] = slot;
}

/* The transaction ended before its final dot: RSET before the next MAIL. */
static void client_tx_abort(struct smtp_client *c)
{
	c->need_rset = true;
	client_tx_end(c);
}

static void client_reply_rset(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (r->code / 100 != 2) {
		/* A refused RSET is no judgement of the message: never a bounce. */
		if (r->code == 421)
			smtp_client_fail(c, r);
		else
			smtp_client_fail_unexpected(c, r);
		return;
	}
	c->need_rset = false;
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_MAIL);
	if (!c->pipelined && client_write_mail(c) != PT_OK)
		smtp_client_fail_nomem(c);
}

static void client_reply_mail(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (r->code == 421 || (r->code / 100 != 2 && r->code < 400)) {
		smtp_client_refused(c, r);
		return;
	}
	c->rcpt_next = client_next_sent(c, 0);
	if (r->code / 100 == 2) {
		c->mail_ok = true;
		smtp_client_enter_state(c, SMTP_CLIENT_STATE_RCPT);
		if (!c->pipelined && client_write_rcpt(c, c->rcpt_next) != PT_OK)
			smtp_client_fail_nomem(c);
		return;
	}
	c->mail_reply = *r;
	client_decide_waiting(c, SLOT_WAITING, SLOT_MAIL);
	if (!c->pipelined) {
		client_tx_abort(c);
		return;
	}
	/* The pipelined RCPTs and DATA still have their replies coming. */
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_RCPT);
}

/* After the last RCPT reply: DATA (its reply is awaited), or the end. */
static void client_rcpts_done(struct smtp_client *c)
{
	if (c->pipelined) {
		smtp_client_enter_state(c, SMTP_CLIENT_STATE_DATA);
		return;
	}
	if (c->n_accepted == 0) {
		client_tx_abort(c);
		return;
	}
	smtp_client_enter_state(c, SMTP_CLIENT_STATE_DATA);
	smtp_client_write(c, "DATA\r\n");
}

static void client_reply_rcpt(struct smtp_client *c, const struct smtp_client_reply *r)
{
	size_t i = c->rcpt_next;

	if (r->code == 421 || (r->code / 100 != 2 && r->code < 400)) {
		smtp_client_refused(c, r);
		return;
	}
	if (c->mail_ok && r->code / 100 == 2) {
		c->slots[i] = SLOT_ACCEPTED;
		c->n_accepted++;
	} else if (c->mail_ok && client_refuse_rcpt(c, i, r) != PT_OK) {
		smtp_client_fail_nomem(c);
		return;
	}
	c->rcpt_next = client_next_sent(c, i + 1);
	if (c->rcpt_next == c->n_rcpts) {
		client_rcpts_done(c);
		return;
	}
	if (!c->pipelined && client_write_rcpt(c, c->rcpt_next) != PT_OK)
		smtp_client_fail_nomem(c);
}

/* The body, dot-stuffed (RFC 5321 4.5.2), then CRLF "." CRLF. */
static int client_write_body(struct smtp_client *c)
{
	const struct smtp_client_tx *tx = c->tx;
	bool bol = true;
	int rc = PT_OK;
	size_t off = c->out.len;

	if (pt_buf_reserve(&c->out, tx->body_len + tx->body_len / 64 + 8) != PT_OK)
		rc = PT_NOMEM;
	for (int i = 0; i < tx->n_body && rc == PT_OK; i++) {
		const char *p = tx->body[i].iov_base, *end = p + tx->body[i].iov_len, *run = p;

		while (p < end && rc == PT_OK) {
			const char *lf;

			if (bol && *p == '.') {
				/* Double the dot: the run restarts at the original one. */
				rc = pt_buf_append(&c->out, run, (size_t)(p - run));
				if (rc == PT_OK)
					rc = pt_buf_append(&c->out, ".", 1);
				run = p;
			}
			lf = memchr(p, '\n', (size_t)(end - p));
			bol = lf != NULL;
			p = lf ? lf + 1 : end;
		}
		if (rc == PT_OK)
			rc = pt_buf_append(&c->out, run, (size_t)(end - run));
	}
	if (rc == PT_OK && !client_body_ends_crlf(tx))
		rc = pt_buf_append(&c->out, "\r\n", 2);
	c->body_off = off;
	c->body_len = rc == PT_OK ? c->out.len - off : 0;
	if (rc == PT_OK)
		rc = pt_buf_append(&c->out, ".\r\n", 3);
	if (rc != PT_OK)
		smtp_client_fail_nomem(c);
	return rc;
}

static void client_reply_data(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (r->code == 354) {
		if (c->mail_ok && c->n_accepted > 0) {
			smtp_client_enter_state(c, SMTP_CLIENT_STATE_DOT);
			client_write_body(c);
			return;
		}
		/* RFC 2920 3.1: DATA accepted with nobody to send to. */
		smtp_client_enter_state(c, SMTP_CLIENT_STATE_DATA_ABORT);
		smtp_client_write(c, ".\r\n");
		return;
	}
	if (r->code == 421 || r->code < 400) {
		smtp_client_refused(c, r);
		return;
	}
	c->data_reply = *r;
	client_decide_waiting(c, SLOT_ACCEPTED, SLOT_DATA);
	client_tx_abort(c);
}

static void client_reply_dot(struct smtp_client *c, const struct smtp_client_reply *r)
{
	if (r->code == 421 || (r->code / 100 != 2 && r->code < 400)) {
		smtp_client_refused(c, r);
		return;
	}
	c->dot_reply = *r;
	client_decide_waiting(c, SLOT_ACCEPTED, SLOT_DOT);
	client_tx_end(c);
}

static void client_reply_data_abort(struct smtp_client *c, const struct smtp_client_reply *r)
{
	/* Whatever it says, nobody was sent anything. */
	if (r->code == 421)
		smtp_client_fail(c, r);
	else
		client_tx_abort(c);
}

void smtp_client_tx_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
	switch (c->state) {
	case SMTP_CLIENT_STATE_RSET:
		client_reply_rset(c, r);
		break;
	case SMTP_CLIENT_STATE_MAIL:
		client_reply_mail(c, r);
		break;
	case SMTP_CLIENT_STATE_RCPT:
		client_reply_rcpt(c, r);
		break;
	case SMTP_CLIENT_STATE_DATA:
		client_reply_data(c, r);
		break;
	case SMTP_CLIENT_STATE_DOT:
		client_reply_dot(c, r);
		break;
	case SMTP_CLIENT_STATE_DATA_ABORT:
		client_reply_data_abort(c, r);
		break;
	default:
		pt_panic("smtp client: transaction reply in state %d", (int)c->state);
	}
}

/* ---- the interface ------------------------------------------------------- */

/* Slots for n recipients, all waiting.  PT_OK or PT_NOMEM. */
static int client_tx_slots(struct smtp_client *c, size_t n)
{
	if (n > c->slots_cap) {
		uint32_t *s = realloc(c->slots, n * sizeof(*s));

		if (s == NULL)
			return PT_NOMEM;
		c->slots = s;
		c->slots_cap = n;
	}
	memset(c->slots, 0, n * sizeof(*c->slots));
	c->n_refused = 0;
	return PT_OK;
}

/*
 * What can be decided without the peer: a path that cannot go into a
 * command line (refused with 501, the transaction or that recipient), a
 * message over the peer's SIZE (552 5.3.4, RFC 1870 6.1).  Returns false
 * when nobody is left to send to; PT_NOMEM in *rc when memory ran out.
 */
static bool client_tx_precheck(struct smtp_client *c, int *rc)
{
	const struct smtp_client_tx *tx = c->tx;
	struct smtp_client_reply r;

	if (!client_path_ok(tx->sender)) {
		smtp_client_local_reply(
		    &c->mail_reply, 501, 1, 7, "MAIL FROM",
		    "sender address cannot be sent: it contains CR, LF, < or >");
		client_decide_waiting(c, SLOT_WAITING, SLOT_MAIL);
		return false;
	}
	if (c->peer_max_size > 0 && c->mail_size > c->peer_max_size) {
		smtp_client_local_reply(&c->mail_reply, 552, 3, 4, "MAIL FROM",
					"message size %" PRIu64
					" exceeds the peer's limit of %" PRIu64 " octets (SIZE)",
					c->mail_size, c->peer_max_size);
		client_decide_waiting(c, SLOT_WAITING, SLOT_MAIL);
		return false;
	}
	for (size_t i = 0; i < c->n_rcpts; i++) {
		if (client_path_ok(tx->rcpts[i]))
			continue;
		smtp_client_local_reply(
		    &r, 501, 1, 3, "RCPT TO",
		    "recipient address cannot be sent: it contains CR, LF, < or >");
		if ((*rc = client_refuse_rcpt(c, i, &r)) != PT_OK)
			return false;
	}
	return client_next_sent(c, 0) < c->n_rcpts;
}

/* [RSET] MAIL [RCPT... DATA]: what goes out now (see the top). */
static int client_tx_write(struct smtp_client *c)
{
	int rc = PT_OK;

	if (c->need_rset)
		rc = pt_buf_append_str(&c->out, "RSET\r\n");
	if (rc == PT_OK && (c->pipelined || !c->need_rset))
		rc = client_write_mail(c);
	if (!c->pipelined)
		return rc;
	for (size_t i = client_next_sent(c, 0); i < c->n_rcpts && rc == PT_OK;
	     i = client_next_sent(c, i + 1))
		rc = client_write_rcpt(c, i);
	if (rc == PT_OK)
		rc = pt_buf_append_str(&c->out, "DATA\r\n");
	return rc;
}

int smtp_client_send(struct smtp_client *c, const struct smtp_client_tx *tx)
{
	size_t mark = c->out.len;
	int rc = PT_OK;

	if (c->state != SMTP_CLIENT_STATE_READY || tx->n_rcpts == 0)
		return PT_ERROR;
	if (client_tx_slots(c, tx->n_rcpts) != PT_OK)
		return PT_NOMEM;
	smtp_client_drop_ready(c);
	c->tx = tx;
	c->n_rcpts = tx->n_rcpts;
	c->mail_ok = false;
	c->n_accepted = 0;
	c->pipelined = (c->ext & SMTP_CLIENT_EXT_PIPELINING) && c->cfg.enable_pipelining;
	c->mail_size = 0;
	if (c->ext & SMTP_CLIENT_EXT_SIZE)
		c->mail_size = tx->body_len + (client_body_ends_crlf(tx) ? 0 : 2);
	c->mail_8bit = (c->ext & SMTP_CLIENT_EXT_8BITMIME) && client_body_8bit(tx);
	c->mail_utf8 = (c->ext & SMTP_CLIENT_EXT_SMTPUTF8) && client_envelope_8bit(tx);
	if (!client_tx_precheck(c, &rc)) {
		if (rc != PT_OK) {
			c->tx = NULL;
			return rc;
		}
		/* Decided here: nothing was sent, the session stays READY. */
		client_tx_done(c);
		smtp_client_push_event(c, SMTP_CLIENT_EV_READY);
		return PT_OK;
	}
	if (client_tx_write(c) != PT_OK) {
		c->out.len = mark;
		c->tx = NULL;
		return PT_NOMEM;
	}
	smtp_client_enter_state(c, c->need_rset ? SMTP_CLIENT_STATE_RSET : SMTP_CLIENT_STATE_MAIL);
	return PT_OK;
}

const struct smtp_client_reply *smtp_client_rcpt_reply(const struct smtp_client *c, size_t i)
{
	uint32_t slot;

	if (i >= c->n_rcpts)
		return NULL;
	slot = c->slots[i];
	switch (slot) {
	case SLOT_WAITING:
	case SLOT_ACCEPTED:
		return NULL; /* not decided yet: before TX_DONE */
	case SLOT_MAIL:
		return &c->mail_reply;
	case SLOT_DATA:
		return &c->data_reply;
	case SLOT_DOT:
		return &c->dot_reply;
	case SLOT_FAILURE:
		return &c->failure;
	default:
		return &c->refused[slot - SLOT_REFUSED];
	}
}
