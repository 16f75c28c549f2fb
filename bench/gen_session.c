/*
 * gen_session.c -- the SMTP client dialogue of one petrel-gen session.
 *
 * The worker (gen_worker.c) owns the socket and the ring; this file sees
 * replies in s->rx and writes commands into s->out, then asks the worker to
 * flush.  Per connection:
 *
 *   GREETING -220-> EHLO -250-> [STARTTLS -220-> HANDSHAKE -> EHLO_TLS -250->]
 *   then per message:  [PACE ->] ENVELOPE -354-> BODY -250/4xx/5xx-> next
 *   and at the end:    QUIT -221-> close (connect again if work is left)
 *
 * ENVELOPE: with PIPELINING (RFC 2920) offered and --pipelining on, MAIL,
 * every RCPT and DATA go out in one write and the replies come back in
 * order; otherwise one command per round trip, stopping early when MAIL or
 * every RCPT is refused.  reply_idx says which command a reply answers:
 * 0 MAIL, 1..K RCPT, K+1 DATA.
 *
 * Accounting: every message ends exactly once, as accepted (2xx after the
 * dot), tempfailed (not accepted, a 4xx anywhere in its transaction),
 * permfailed (not accepted, 5xx only) or, after a connection error past
 * GEN_MAX_RETRIES retries, conn_failed.  A message whose recipients were all
 * refused gets no DATA (RSET) and counts as failed by its replies' classes.
 *
 * Replies are parsed in place: whole lines are found with memchr, the code
 * read from the first three bytes, nothing copied; a partial line stays in
 * rx for the next read.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bench/gen.h"

static void session_begin_txn(struct gen_session *s);

static const struct gen_config *session_cfg(struct gen_session *s)
{
	return s->worker->run->cfg;
}

static struct gen_stats *session_stats(struct gen_session *s)
{
	return &s->worker->stats;
}

static bool session_pipelined(struct gen_session *s)
{
	return session_cfg(s)->pipelining && s->ext_pipelining;
}

/* Append a command; `out` has room reserved for the envelope. */
static void session_put(struct gen_session *s, const char *p, size_t n)
{
	if (pt_buf_append(&s->out, p, n) != PT_OK)
		pt_panic("out of memory for %zu command bytes", n);
}

static void session_send_ehlo(struct gen_session *s, enum gen_state next)
{
	const char *helo = session_cfg(s)->helo;

	s->ext_pipelining = s->ext_starttls = false;
	session_put(s, "EHLO ", 5);
	session_put(s, helo, strlen(helo));
	session_put(s, "\r\n", 2);
	s->state = next;
	gen_worker_flush(s);
}

/* ---- Message outcomes ---- */

enum session_outcome { OUT_ACCEPTED, OUT_REFUSED, OUT_CONN_FAILED };

static void session_finish_msg(struct gen_session *s, enum session_outcome o)
{
	struct gen_stats *st = session_stats(s);

	if (o == OUT_ACCEPTED) {
		GEN_ADD(st->accepted, 1);
		GEN_ADD(st->bytes, s->msg_size);
	} else if (o == OUT_CONN_FAILED) {
		GEN_ADD(st->conn_failed, 1);
	} else if (s->any_4xx) {
		GEN_ADD(st->tempfailed, 1);
	} else {
		/* 5xx, or a reply of the wrong class (a 2xx to DATA): refused. */
		GEN_ADD(st->permfailed, 1);
	}
	__atomic_store_n(&st->last_reply_ns, gen_now_ns(), __ATOMIC_RELAXED);
	s->msg = 0;
}

/* After a transaction (and its RSET): the next one, or QUIT to reconnect. */
static void session_after_txn(struct gen_session *s)
{
	uint64_t per = session_cfg(s)->per_connection;

	s->n_on_conn++;
	if (per > 0 && s->n_on_conn >= per) {
		session_put(s, "QUIT\r\n", 6);
		s->state = GEN_S_QUIT;
		gen_worker_flush(s);
		return;
	}
	session_begin_txn(s);
}

/* The message failed by its replies; RSET when the server may hold a
 * transaction (RFC 5321 4.1.1.5). */
static void session_txn_failed(struct gen_session *s, bool rset)
{
	session_finish_msg(s, OUT_REFUSED);
	if (!rset) {
		session_after_txn(s);
		return;
	}
	session_put(s, "RSET\r\n", 6);
	s->state = GEN_S_RSET;
	gen_worker_flush(s);
}

/* ---- Transactions ---- */

bool gen_session_claim(struct gen_session *s)
{
	uint64_t n;

	if (s->msg)
		return true;
	n = gen_run_claim(s->worker->run);
	if (n == 0)
		return false;
	s->msg = n;
	s->msg_retries = 0;
	s->msg_attempted = false;
	return true;
}

static void session_put_rcpt(struct gen_session *s, unsigned j)
{
	const struct gen_config *cfg = session_cfg(s);

	gen_msg_append_rcpt(cfg, &s->out, (s->msg - 1) * cfg->n_rcpts + j);
}

static void session_send_envelope(struct gen_session *s)
{
	const struct gen_config *cfg = session_cfg(s);
	const struct gen_msg *m = s->worker->run->msg;

	s->reply_idx = 0;
	s->rcpts_ok = 0;
	s->mail_ok = s->any_4xx = s->any_5xx = false;
	if (!s->msg_attempted) {
		s->msg_attempted = true;
		GEN_ADD(session_stats(s)->attempted, 1);
	}
	/* Room for MAIL, K RCPTs (each under 64 + suffix bytes) and DATA. */
	if (pt_buf_reserve(&s->out, m->mail_cmd_len +
					(size_t)cfg->n_rcpts * (64 + strlen(cfg->domain_suffix)) +
					8) != PT_OK)
		pt_panic("out of memory for an envelope");
	session_put(s, m->mail_cmd, m->mail_cmd_len);
	if (session_pipelined(s)) {
		for (unsigned j = 0; j < cfg->n_rcpts; j++)
			session_put_rcpt(s, j);
		session_put(s, "DATA\r\n", 6);
	}
	s->state = GEN_S_ENVELOPE;
	gen_worker_flush(s);
}

static void session_begin_txn(struct gen_session *s)
{
	const struct gen_config *cfg = session_cfg(s);
	uint64_t slot;

	if (!gen_session_claim(s)) {
		session_put(s, "QUIT\r\n", 6);
		s->state = GEN_S_QUIT;
		gen_worker_flush(s);
		return;
	}
	if (cfg->rate > 0) {
		/* Message n's slot: n - 1 intervals after the start, over all
		 * sessions and threads, since numbers are handed out in order. */
		slot =
		    s->worker->run->start_ns + (uint64_t)((double)(s->msg - 1) * 1e9 / cfg->rate);
		if (gen_now_ns() < slot) {
			s->state = GEN_S_PACE;
			gen_worker_pace(s, slot);
			return;
		}
	}
	session_send_envelope(s);
}

void gen_session_paced(struct gen_session *s)
{
	s->wait_ns = gen_now_ns(); /* no reply was due while we paced */
	session_send_envelope(s);
}

static void session_send_body(struct gen_session *s)
{
	const struct gen_msg *m = s->worker->run->msg;

	if (pt_buf_reserve(&s->out, m->max_wire) != PT_OK)
		pt_panic("out of memory for a message");
	s->msg_size = gen_msg_append(m, &s->out, s->msg);
	s->dot_ns = gen_now_ns();
	s->state = GEN_S_BODY;
	gen_worker_flush(s);
}

/* A reply to MAIL (idx 0), RCPT (1..K) or DATA (K+1). */
static void session_envelope_reply(struct gen_session *s, int code)
{
	unsigned k = session_cfg(s)->n_rcpts, idx = s->reply_idx++;
	bool pipelined = session_pipelined(s), ok = code / 100 == 2;

	if (idx == 0) {
		s->mail_ok = ok;
		if (pipelined)
			return;
		if (!ok) {
			session_txn_failed(s, false);
			return;
		}
		session_put_rcpt(s, 0);
		gen_worker_flush(s);
	} else if (idx <= k) {
		s->rcpts_ok += ok;
		if (ok)
			GEN_ADD(session_stats(s)->rcpts_accepted, 1);
		else
			GEN_ADD(session_stats(s)->rcpts_refused, 1);
		if (pipelined)
			return;
		if (idx < k)
			session_put_rcpt(s, idx);
		else if (s->rcpts_ok > 0)
			session_put(s, "DATA\r\n", 6);
		else
			session_txn_failed(s, true);
		gen_worker_flush(s);
	} else if (code == 354 && s->mail_ok && s->rcpts_ok > 0) {
		session_send_body(s);
	} else if (code == 354) {
		/* A server that opened DATA with nothing to deliver to (RFC 2920
		 * says it must not): end the empty message, then RSET. */
		session_put(s, ".\r\n", 3);
		s->state = GEN_S_ABORT_DOT;
		gen_worker_flush(s);
	} else {
		session_txn_failed(s, true);
	}
}

static void session_body_reply(struct gen_session *s, int code)
{
	uint64_t now = gen_now_ns();

	gen_hist_record(&session_stats(s)->hist, now - s->dot_ns);
	session_finish_msg(s, code / 100 == 2 ? OUT_ACCEPTED : OUT_REFUSED);
	session_after_txn(s);
}

/* ---- Connection set-up ---- */

void gen_session_connected(struct gen_session *s)
{
	s->state = GEN_S_GREETING;
	s->n_on_conn = 0;
	s->rx.len = s->out.len = 0;
}

void gen_session_tls_ready(struct gen_session *s)
{
	session_send_ehlo(s, GEN_S_EHLO_TLS); /* RFC 3207 4.2: forget what was said */
}

/* One EHLO line after the code and separator: note the extensions we use. */
static void session_ehlo_line(struct gen_session *s, const char *p, size_t n)
{
	while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' '))
		n--;
	if (n >= 10 && strncasecmp(p, "PIPELINING", 10) == 0 && (n == 10 || p[10] == ' '))
		s->ext_pipelining = true;
	else if (n == 8 && strncasecmp(p, "STARTTLS", 8) == 0)
		s->ext_starttls = true;
}

static void session_ehlo_reply(struct gen_session *s, int code)
{
	if (code / 100 != 2) {
		gen_session_conn_error(s, "EHLO refused");
		return;
	}
	if (s->state == GEN_S_EHLO && session_cfg(s)->starttls) {
		if (!s->ext_starttls) {
			gen_session_conn_error(s, "server does not offer STARTTLS");
			return;
		}
		session_put(s, "STARTTLS\r\n", 10);
		s->state = GEN_S_STARTTLS;
		gen_worker_flush(s);
		return;
	}
	session_begin_txn(s);
}

/* ---- Errors ---- */

void gen_session_conn_error(struct gen_session *s, const char *why)
{
	struct gen_stats *st = session_stats(s);

	if (s->state == GEN_S_QUIT) { /* the server closed first: fine */
		gen_worker_close(s, true);
		return;
	}
	GEN_ADD(st->conn_errors, 1);
	if (st->conn_errors <= 3 && !session_cfg(s)->quiet)
		fprintf(stderr, "petrel-gen: session %u: %s\n", s->id, why);
	if (s->msg && ++s->msg_retries > GEN_MAX_RETRIES)
		session_finish_msg(s, OUT_CONN_FAILED);
	gen_worker_close(s, true);
}

/* ---- Replies ---- */

static void session_reply(struct gen_session *s, int code)
{
	bool in_txn = s->state >= GEN_S_ENVELOPE && s->state <= GEN_S_RSET;

	if (in_txn && code / 100 == 4)
		s->any_4xx = true;
	else if (in_txn && code / 100 == 5)
		s->any_5xx = true;
	if (code == 421 && in_txn) {
		/* RFC 5321 3.8: the server is closing; the message got its 4xx. */
		if (s->msg && s->state != GEN_S_RSET)
			session_finish_msg(s, OUT_REFUSED);
		gen_worker_close(s, true);
		return;
	}
	switch (s->state) {
	case GEN_S_GREETING:
		gen_worker_opened(s); /* the server took it: another may connect */
		if (code / 100 == 2)
			session_send_ehlo(s, GEN_S_EHLO);
		else
			gen_session_conn_error(s, "greeting refused");
		break;
	case GEN_S_EHLO:
	case GEN_S_EHLO_TLS:
		session_ehlo_reply(s, code);
		break;
	case GEN_S_STARTTLS:
		if (code != 220 || gen_worker_start_tls(s) != PT_OK)
			gen_session_conn_error(s, "STARTTLS failed");
		break;
	case GEN_S_ENVELOPE:
		session_envelope_reply(s, code);
		break;
	case GEN_S_BODY:
		session_body_reply(s, code);
		break;
	case GEN_S_ABORT_DOT:
		session_txn_failed(s, true);
		break;
	case GEN_S_RSET:
		session_after_txn(s);
		break;
	case GEN_S_QUIT:
		gen_worker_close(s, true);
		break;
	default:
		gen_session_conn_error(s, "unexpected reply");
		break;
	}
}

static bool session_live(struct gen_session *s)
{
	return s->state != GEN_S_CLOSING && s->state != GEN_S_DONE && s->state != GEN_S_IDLE;
}

void gen_session_input(struct gen_session *s)
{
	char *p = s->rx.data, *end = p + s->rx.len, *nl;
	unsigned conn = s->conn_gen;
	bool ehlo;
	int code;

	/* Stop at a close (the connection may even be a new one by now) and at
	 * STARTTLS: what follows its 220 is TLS. */
	while (s->conn_gen == conn && session_live(s) && s->state != GEN_S_HANDSHAKE &&
	       (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		/* RFC 5321 4.2: three digits, then '-' (more lines) or ' '/end. */
		if (nl - p < 3 || p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
		    p[2] < '0' || p[2] > '9') {
			gen_session_conn_error(s, "malformed reply");
			break;
		}
		code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
		ehlo = s->state == GEN_S_EHLO || s->state == GEN_S_EHLO_TLS;
		if (ehlo && nl - p > 4)
			session_ehlo_line(s, p + 4, (size_t)(nl - p - 4));
		if (nl - p > 3 && p[3] == '-') {
			p = nl + 1;
			continue;
		}
		p = nl + 1;
		session_reply(s, code);
	}
	if (s->conn_gen != conn || !session_live(s) || s->state == GEN_S_HANDSHAKE)
		s->rx.len = 0; /* nothing after a close or before TLS counts */
	else
		pt_buf_consume(&s->rx, (size_t)(p - s->rx.data));
}
