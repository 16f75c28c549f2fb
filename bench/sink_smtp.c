/*
 * sink_smtp.c -- petrel-sink's SMTP session: a pure state machine that
 * accepts and discards.
 *
 * States (enum sink_smtp_state), changed only through smtp_enter_state():
 *
 *   COMMAND --DATA 354--> DATA --CRLF.CRLF--> COMMAND
 *                                 \--(--latency)--> DELAY --resume--> COMMAND
 *   COMMAND --STARTTLS 220--> TLS --tls_done--> COMMAND (fresh session)
 *   COMMAND --QUIT 221--> CLOSED
 *
 * Cost per message is what matters (this is the benchmark's "limit"):
 *
 *   - command lines are parsed where they lie in the receive buffer; only a
 *     line split across two reads is copied (into s->line);
 *   - message content is never copied: the end-of-data scanner jumps from
 *     CR to CR with memchr() and keeps 0..4 bytes of state across reads, so
 *     CRLF "." CRLF is found wherever the reads split it, including right
 *     after the 354 (an empty message: the scanner starts "at the start of
 *     a line");
 *   - replies are constant strings appended to the caller's buffer, so a
 *     pipelined batch becomes one write;
 *   - the header block is looked at only when the accounting log is on
 *     (--log), to find the Message-ID.
 *
 * Sizes: a message's size is what the client meant to send: the bytes
 * after the 354 up to and including the CRLF before the final ".", less one
 * byte per transparency dot (RFC 5321 4.5.2).  An empty message is 0.
 *
 * Scripted outcomes (sink.c parses them):
 *
 *   --at rcpt   every RCPT takes one draw from the worker's PRNG, whether a
 *               pattern decides it or not, so the n-th recipient of a
 *               thread always gets the same draw for a given seed;
 *               --permfail-match wins over --tempfail-match, which wins
 *               over the draw: [0, permfail) 550 5.1.1, [permfail,
 *               permfail + tempfail) 451 4.3.0, else 250.
 *   --at data   RCPTs are all accepted (a pattern match is remembered), and
 *               each end of data takes one draw: 550 5.7.1, 451 4.3.0 or
 *               250, in the same order of precedence.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bench/sink_smtp.h"

#define REPLY_OK	  "250 2.0.0 OK\r\n"
#define REPLY_MAIL_OK	  "250 2.1.0 OK\r\n"
#define REPLY_RCPT_OK	  "250 2.1.5 OK\r\n"
#define REPLY_DATA_GO	  "354 End data with <CR><LF>.<CR><LF>\r\n"
#define REPLY_QUEUED	  "250 2.0.0 OK discarded\r\n"
#define REPLY_QUIT	  "221 2.0.0 Bye\r\n"
#define REPLY_STARTTLS	  "220 2.0.0 Ready to start TLS\r\n"
#define REPLY_RCPT_TEMP	  "451 4.3.0 scripted temporary failure, try again later\r\n"
#define REPLY_RCPT_PERM	  "550 5.1.1 scripted permanent failure: no such user\r\n"
#define REPLY_DATA_TEMP	  "451 4.3.0 scripted temporary failure, try again later\r\n"
#define REPLY_DATA_PERM	  "550 5.7.1 scripted permanent failure: message refused\r\n"
#define REPLY_SIZE	  "552 5.3.4 message size exceeds fixed maximum message size\r\n"
#define REPLY_NO_RCPTS	  "554 5.5.1 no valid recipients\r\n"
#define REPLY_UNKNOWN	  "500 5.5.2 command not recognized\r\n"
#define REPLY_TOO_LONG	  "500 5.5.2 line too long\r\n"
#define REPLY_SYNTAX	  "501 5.5.4 syntax error in parameters or arguments\r\n"
#define REPLY_BAD_PATH	  "501 5.1.3 bad address syntax\r\n"
#define REPLY_NEED_HELO	  "503 5.5.1 say EHLO or HELO first\r\n"
#define REPLY_NESTED_MAIL "503 5.5.1 nested MAIL command\r\n"
#define REPLY_NEED_MAIL	  "503 5.5.1 need MAIL before RCPT or DATA\r\n"
#define REPLY_NO_TLS	  "502 5.5.1 STARTTLS not available\r\n"
#define REPLY_TLS_ON	  "503 5.5.1 TLS already active\r\n"

/* RFC 5321 4.5.3.1.3: a path is at most 256 octets, the angle brackets included. */
#define SMTP_PATH_LIMIT 256

/* What an end-of-data reply counts as (s->held_kind). */
enum smtp_eod_kind { EOD_ACCEPT, EOD_TEMP, EOD_PERM, EOD_SIZE };

enum smtp_outcome { OUTCOME_OK, OUTCOME_TEMP, OUTCOME_PERM };

static void smtp_reply(struct pt_buf *out, const char *text, size_t len)
{
	pt_buf_append(out, text, len); /* PT_NOMEM: dropped, see the contract in sink_smtp.h */
}

#define SMTP_REPLY(out, lit) smtp_reply((out), (lit), sizeof(lit) - 1)

/* ---------------------------------------------------------------- outcomes */

static uint64_t smtp_splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void sink_smtp_worker_seed(struct sink_smtp_worker *w, uint64_t seed, unsigned index)
{
	uint64_t mix = seed + index;

	/* Scramble seed + index once so that neighbouring seeds give unrelated streams. */
	w->rng = smtp_splitmix64(&mix);
}

/* One draw: uniform in [0, 100) with 53 bits, compared with the shares. */
static enum smtp_outcome smtp_draw(struct sink_smtp_worker *w)
{
	const struct sink_smtp_config *cfg = w->cfg;
	double r = (double)(smtp_splitmix64(&w->rng) >> 11) * 0x1.0p-53 * 100.0;

	if (r < cfg->permfail_pct)
		return OUTCOME_PERM;
	if (r < cfg->permfail_pct + cfg->tempfail_pct)
		return OUTCOME_TEMP;
	return OUTCOME_OK;
}

/* True when addr (NUL-terminated) matches one of the globs, ignoring case. */
static bool smtp_match(const char *const *globs, unsigned n, const char *addr)
{
	for (unsigned i = 0; i < n; i++)
		if (fnmatch(globs[i], addr, FNM_CASEFOLD) == 0)
			return true;
	return false;
}

/* ------------------------------------------------------------------ states */

static const char *const smtp_state_names[] = {
    [SINK_SMTP_COMMAND] = "COMMAND", [SINK_SMTP_DATA] = "DATA",	    [SINK_SMTP_DELAY] = "DELAY",
    [SINK_SMTP_TLS] = "TLS",	     [SINK_SMTP_CLOSED] = "CLOSED",
};

const char *sink_smtp_strstate(enum sink_smtp_state state)
{
	if ((unsigned)state >= PT_ARRAY_LEN(smtp_state_names))
		return "?";
	return smtp_state_names[state];
}

static void smtp_enter_state(struct sink_smtp *s, enum sink_smtp_state state)
{
#ifdef SINK_SMTP_TRACE
	fprintf(stderr, "smtp %p: %s -> %s\n", (void *)s, sink_smtp_strstate(s->state),
		sink_smtp_strstate(state));
#endif
	s->state = state;
}

static void smtp_tx_reset(struct sink_smtp *s)
{
	s->mail = false;
	s->n_rcpts = 0;
	s->match_temp = false;
	s->match_perm = false;
	s->mail_from_len = 0;
}

void sink_smtp_init(struct sink_smtp *s, struct sink_smtp_worker *worker)
{
	/* Only the scalars: the arrays are filled before they are read. */
	s->worker = worker;
	s->state = SINK_SMTP_COMMAND;
	s->helo = false;
	s->in_tls = false;
	s->line_overflow = false;
	s->line_len = 0;
	s->held = NULL;
	smtp_tx_reset(s);
}

void sink_smtp_greet(struct sink_smtp *s, struct pt_buf *out)
{
	pt_buf_printf(out, "220 %s ESMTP petrel-sink\r\n", s->worker->cfg->hostname);
}

void sink_smtp_tls_done(struct sink_smtp *s)
{
	struct sink_smtp_worker *w = s->worker;

	sink_smtp_init(s, w);
	s->in_tls = true;
}

/* ------------------------------------------------------------ header scan */

static bool smtp_is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* Append a Message-ID piece, trimmed; pieces of a folded value are joined by a space. */
static void smtp_msgid_add(struct sink_smtp *s, const char *p, size_t n)
{
	while (n > 0 && smtp_is_wsp(*p))
		p++, n--;
	while (n > 0 && smtp_is_wsp(p[n - 1]))
		n--;
	if (n == 0)
		return;
	if (s->msgid_len > 0 && s->msgid_len < sizeof(s->msgid))
		s->msgid[s->msgid_len++] = ' ';
	n = PT_MIN(n, sizeof(s->msgid) - s->msgid_len);
	memcpy(s->msgid + s->msgid_len, p, n);
	s->msgid_len += n;
}

/* One complete header line (CR stripped) of the header block. */
static void smtp_header_line(struct sink_smtp *s, const char *p, size_t n)
{
	static const char name[] = "message-id:";
	const size_t name_len = sizeof(name) - 1;

	if (n == 0) {
		s->in_headers = false; /* RFC 5322 2.1: the empty line ends the header block */
		return;
	}
	if (smtp_is_wsp(p[0])) {
		if (s->msgid_open) /* RFC 5322 2.2.3: a folded Message-ID */
			smtp_msgid_add(s, p, n);
		return;
	}
	s->msgid_open = false;
	if (s->msgid_len == 0 && n >= name_len && strncasecmp(p, name, name_len) == 0) {
		smtp_msgid_add(s, p + name_len, n - name_len);
		s->msgid_open = true;
	}
}

/* Feed message bytes [p, end) to the header scan while the header block lasts. */
static void smtp_header_scan(struct sink_smtp *s, const char *p, const char *end)
{
	while (p < end && s->in_headers) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);
		size_t room = sizeof(s->header) - s->header_len;

		/* A line longer than the buffer is cut: a Message-ID that long is not kept whole.
		 */
		memcpy(s->header + s->header_len, p, PT_MIN(n, room));
		s->header_len += PT_MIN(n, room);
		if (!nl)
			return;
		n = s->header_len;
		if (n > 0 && s->header[n - 1] == '\r')
			n--;
		smtp_header_line(s, s->header, n);
		s->header_len = 0;
		p = nl + 1;
	}
}

/* ---------------------------------------------------------- end of data */

/*
 * Find CRLF "." CRLF in in[0..n).  Returns how many bytes belong to the
 * message (the terminator included when *done).  The state s->eod is how
 * much of the terminator ended the previous read, so any split works; it
 * also counts transparency dots: a "." at the start of a line followed by
 * anything but CRLF is one (RFC 5321 4.5.2).
 */
static size_t smtp_data_scan(struct sink_smtp *s, const char *in, size_t n, bool *done)
{
	const char *p = in, *end = in + n;
	unsigned st = s->eod;

	*done = false;
	while (p < end) {
		if (st == 0) {
			/* Nothing pending: jump to the next CR, the only way a terminator starts.
			 */
			const char *cr = memchr(p, '\r', (size_t)(end - p));

			if (!cr) {
				p = end;
				break;
			}
			p = cr + 1;
			st = 1;
			continue;
		}
		char c = *p++;

		switch (st) {
		case 1: /* CR */
			st = c == '\n' ? 2 : c == '\r' ? 1 : 0;
			break;
		case 2: /* CR LF: the start of a line */
			st = c == '.' ? 3 : c == '\r' ? 1 : 0;
			break;
		case 3: /* CR LF "." */
			if (c == '\r') {
				st = 4;
			} else {
				s->data_dots++;
				st = 0;
			}
			break;
		default: /* CR LF "." CR */
			if (c == '\n') {
				s->eod = 2;
				*done = true;
				return (size_t)(p - in);
			}
			s->data_dots++;
			st = c == '\r' ? 1 : 0;
			break;
		}
	}
	s->eod = st;
	return (size_t)(p - in);
}

/* Append one accounting line: "<mail from> <rcpts> <bytes> <Message-ID or ->". */
static void smtp_log_message(struct sink_smtp *s)
{
	struct pt_buf *log = s->worker->log;

	if (s->mail_from_len)
		pt_buf_append(log, s->mail_from, s->mail_from_len);
	else
		pt_buf_append(log, "<>", 2); /* the null reverse-path */
	pt_buf_printf(log, " %u %llu ", s->n_rcpts, (unsigned long long)s->msg_bytes);
	if (s->msgid_len)
		pt_buf_append(log, s->msgid, s->msgid_len);
	else
		pt_buf_append(log, "-", 1);
	pt_buf_append(log, "\n", 1);
}

/* Give the decided end-of-data reply, count it, close the transaction. */
static void smtp_eod_reply(struct sink_smtp *s, struct pt_buf *out)
{
	struct sink_counters *c = s->worker->counters;

	smtp_reply(out, s->held, strlen(s->held));
	switch (s->held_kind) {
	case EOD_ACCEPT:
		sink_count(&c->messages, 1);
		sink_count(&c->bytes, s->msg_bytes);
		if (s->worker->cfg->log)
			smtp_log_message(s);
		break;
	case EOD_TEMP:
		sink_count(&c->tempfail, 1);
		sink_count(&c->rejected_at_data, 1);
		break;
	case EOD_PERM:
		sink_count(&c->permfail, 1);
		sink_count(&c->rejected_at_data, 1);
		break;
	default:
		sink_count(&c->oversize, 1);
		break;
	}
	s->held = NULL;
	smtp_tx_reset(s);
	smtp_enter_state(s, SINK_SMTP_COMMAND);
}

/* The terminator was seen: decide the reply, give it now or after the latency. */
static enum sink_event smtp_data_end(struct sink_smtp *s, struct pt_buf *out)
{
	const struct sink_smtp_config *cfg = s->worker->cfg;
	enum smtp_outcome outcome = OUTCOME_OK;

	s->msg_bytes = s->data_raw - 3 - s->data_dots; /* less "." CRLF and the stuffing */
	if (cfg->at == SINK_AT_DATA) {
		outcome = smtp_draw(s->worker); /* always drawn: one draw per transaction */
		if (s->match_perm)
			outcome = OUTCOME_PERM;
		else if (s->match_temp)
			outcome = OUTCOME_TEMP;
	}
	if (cfg->max_size && s->msg_bytes > cfg->max_size) {
		s->held = REPLY_SIZE;
		s->held_kind = EOD_SIZE;
	} else if (outcome == OUTCOME_PERM) {
		s->held = REPLY_DATA_PERM;
		s->held_kind = EOD_PERM;
	} else if (outcome == OUTCOME_TEMP) {
		s->held = REPLY_DATA_TEMP;
		s->held_kind = EOD_TEMP;
	} else {
		s->held = REPLY_QUEUED;
		s->held_kind = EOD_ACCEPT;
	}
	if (cfg->latency_ns) {
		smtp_enter_state(s, SINK_SMTP_DELAY);
		return SINK_EV_DELAY;
	}
	smtp_eod_reply(s, out);
	return SINK_EV_NONE;
}

void sink_smtp_resume(struct sink_smtp *s, struct pt_buf *out)
{
	if (s->state == SINK_SMTP_DELAY)
		smtp_eod_reply(s, out);
}

/* DATA state: consume message bytes; returns how many. */
static size_t smtp_data(struct sink_smtp *s, const char *in, size_t n, struct pt_buf *out,
			enum sink_event *ev)
{
	bool done;
	size_t k = smtp_data_scan(s, in, n, &done);

	s->data_raw += k;
	if (s->in_headers)
		smtp_header_scan(s, in, in + k);
	if (done)
		*ev = smtp_data_end(s, out);
	return k;
}

/* ---------------------------------------------------------------- commands */

/*
 * The path of "FROM:<a@b> params" / "TO:<a@b> params" after the keyword:
 * the text inside the angle brackets (or, leniently, a bare word).
 * Returns false on a syntax error; *rest points after the path.
 */
static bool smtp_path(const char *p, const char *end, const char *keyword, const char **addr,
		      size_t *addr_len, const char **rest)
{
	size_t klen = strlen(keyword);
	const char *a;

	if ((size_t)(end - p) < klen || strncasecmp(p, keyword, klen) != 0)
		return false;
	p += klen;
	while (p < end && *p == ' ')
		p++; /* RFC 5321 says no space here; many clients send one */
	if (p < end && *p == '<') {
		const char *close = memchr(p, '>', (size_t)(end - p));

		if (!close)
			return false;
		a = p + 1;
		*addr_len = (size_t)(close - a);
		p = close + 1;
	} else {
		a = p;
		while (p < end && *p != ' ')
			p++;
		*addr_len = (size_t)(p - a);
	}
	if (p < end && *p != ' ')
		return false;
	*addr = a;
	*rest = p;
	return true;
}

/* The SIZE= parameter of MAIL (RFC 1870 6), or 0 when absent. */
static uint64_t smtp_size_param(const char *p, const char *end)
{
	while (p < end) {
		while (p < end && *p == ' ')
			p++;
		if (end - p > 5 && strncasecmp(p, "SIZE=", 5) == 0) {
			uint64_t v = 0;

			for (p += 5; p < end && *p >= '0' && *p <= '9'; p++)
				v = v > UINT64_MAX / 10 - 10 ? UINT64_MAX
							     : v * 10 + (uint64_t)(*p - '0');
			return v;
		}
		while (p < end && *p != ' ')
			p++;
	}
	return 0;
}

static enum sink_event smtp_ehlo(struct sink_smtp *s, const char *args, size_t n,
				 struct pt_buf *out)
{
	const struct sink_smtp_config *cfg = s->worker->cfg;

	(void)args; /* the client's name is not checked */
	if (n == 0) {
		SMTP_REPLY(out, REPLY_SYNTAX);
		return SINK_EV_NONE;
	}
	s->helo = true;
	smtp_tx_reset(s); /* RFC 5321 4.1.4: EHLO resets the transaction */
	pt_buf_printf(out,
		      "250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE %llu\r\n%s"
		      "250 ENHANCEDSTATUSCODES\r\n",
		      cfg->hostname, (unsigned long long)cfg->max_size,
		      cfg->tls && !s->in_tls ? "250-STARTTLS\r\n" : "");
	return SINK_EV_NONE;
}

static enum sink_event smtp_helo(struct sink_smtp *s, const char *args, size_t n,
				 struct pt_buf *out)
{
	(void)args;
	if (n == 0) {
		SMTP_REPLY(out, REPLY_SYNTAX);
		return SINK_EV_NONE;
	}
	s->helo = true;
	smtp_tx_reset(s);
	pt_buf_printf(out, "250 %s\r\n", s->worker->cfg->hostname);
	return SINK_EV_NONE;
}

static enum sink_event smtp_mail(struct sink_smtp *s, const char *args, size_t n,
				 struct pt_buf *out)
{
	const struct sink_smtp_config *cfg = s->worker->cfg;
	const char *addr, *rest, *end = args + n;
	size_t len;

	if (!s->helo) {
		SMTP_REPLY(out, REPLY_NEED_HELO);
		return SINK_EV_NONE;
	}
	if (s->mail) {
		SMTP_REPLY(out, REPLY_NESTED_MAIL);
		return SINK_EV_NONE;
	}
	if (!smtp_path(args, end, "FROM:", &addr, &len, &rest)) {
		SMTP_REPLY(out, REPLY_SYNTAX);
		return SINK_EV_NONE;
	}
	if (len > SMTP_PATH_LIMIT - 2) {
		SMTP_REPLY(out, REPLY_BAD_PATH);
		return SINK_EV_NONE;
	}
	if (cfg->max_size && smtp_size_param(rest, end) > cfg->max_size) {
		SMTP_REPLY(out, REPLY_SIZE); /* RFC 1870 6.1 */
		return SINK_EV_NONE;
	}
	memcpy(s->mail_from, addr, len);
	s->mail_from_len = len;
	s->mail = true;
	SMTP_REPLY(out, REPLY_MAIL_OK);
	return SINK_EV_NONE;
}

static enum sink_event smtp_rcpt(struct sink_smtp *s, const char *args, size_t n,
				 struct pt_buf *out)
{
	const struct sink_smtp_config *cfg = s->worker->cfg;
	struct sink_counters *c = s->worker->counters;
	const char *addr, *rest;
	char buf[SMTP_PATH_LIMIT];
	enum smtp_outcome outcome;
	bool perm = false, temp = false;
	size_t len;

	if (!s->mail) {
		SMTP_REPLY(out, REPLY_NEED_MAIL);
		return SINK_EV_NONE;
	}
	if (!smtp_path(args, args + n, "TO:", &addr, &len, &rest)) {
		SMTP_REPLY(out, REPLY_SYNTAX);
		return SINK_EV_NONE;
	}
	if (len == 0 || len > SMTP_PATH_LIMIT - 2) {
		SMTP_REPLY(out, REPLY_BAD_PATH);
		return SINK_EV_NONE;
	}
	outcome = cfg->at == SINK_AT_RCPT ? smtp_draw(s->worker) : OUTCOME_OK;
	if (cfg->n_permfail_match || cfg->n_tempfail_match) {
		memcpy(buf, addr, len); /* fnmatch wants a C string */
		buf[len] = '\0';
		perm = smtp_match(cfg->permfail_match, cfg->n_permfail_match, buf);
		temp = !perm && smtp_match(cfg->tempfail_match, cfg->n_tempfail_match, buf);
	}
	if (cfg->at == SINK_AT_DATA) {
		s->match_perm |= perm;
		s->match_temp |= temp;
	} else if (perm) {
		outcome = OUTCOME_PERM;
	} else if (temp) {
		outcome = OUTCOME_TEMP;
	}
	if (outcome == OUTCOME_PERM) {
		sink_count(&c->permfail, 1);
		SMTP_REPLY(out, REPLY_RCPT_PERM);
	} else if (outcome == OUTCOME_TEMP) {
		sink_count(&c->tempfail, 1);
		SMTP_REPLY(out, REPLY_RCPT_TEMP);
	} else {
		s->n_rcpts++;
		sink_count(&c->recipients, 1);
		SMTP_REPLY(out, REPLY_RCPT_OK);
	}
	return SINK_EV_NONE;
}

static enum sink_event smtp_data_cmd(struct sink_smtp *s, const char *args, size_t n,
				     struct pt_buf *out)
{
	(void)args;
	if (!s->mail) {
		SMTP_REPLY(out, REPLY_NEED_MAIL);
		return SINK_EV_NONE;
	}
	if (s->n_rcpts == 0) {
		SMTP_REPLY(out, REPLY_NO_RCPTS); /* RFC 2920 3.1: DATA after refused RCPTs */
		return SINK_EV_NONE;
	}
	if (n != 0) {
		SMTP_REPLY(out, REPLY_SYNTAX);
		return SINK_EV_NONE;
	}
	s->eod = 2; /* right after the 354 is the start of a line: "." CRLF is an empty message */
	s->data_raw = 0;
	s->data_dots = 0;
	s->in_headers = s->worker->cfg->log;
	s->header_len = 0;
	s->msgid_len = 0;
	s->msgid_open = false;
	SMTP_REPLY(out, REPLY_DATA_GO);
	smtp_enter_state(s, SINK_SMTP_DATA);
	return SINK_EV_NONE;
}

static enum sink_event smtp_rset(struct sink_smtp *s, const char *args, size_t n,
				 struct pt_buf *out)
{
	(void)args;
	if (n != 0) {
		SMTP_REPLY(out, REPLY_SYNTAX);
		return SINK_EV_NONE;
	}
	smtp_tx_reset(s);
	SMTP_REPLY(out, REPLY_OK);
	return SINK_EV_NONE;
}

static enum sink_event smtp_noop(struct sink_smtp *s, const char *args, size_t n,
				 struct pt_buf *out)
{
	(void)s, (void)args, (void)n; /* RFC 5321 4.1.1.9: a parameter is allowed and ignored */
	SMTP_REPLY(out, REPLY_OK);
	return SINK_EV_NONE;
}

static enum sink_event smtp_quit(struct sink_smtp *s, const char *args, size_t n,
				 struct pt_buf *out)
{
	(void)args, (void)n;
	SMTP_REPLY(out, REPLY_QUIT);
	smtp_enter_state(s, SINK_SMTP_CLOSED);
	return SINK_EV_CLOSE;
}

static enum sink_event smtp_starttls(struct sink_smtp *s, const char *args, size_t n,
				     struct pt_buf *out)
{
	(void)args;
	if (!s->worker->cfg->tls) {
		SMTP_REPLY(out, REPLY_NO_TLS);
		return SINK_EV_NONE;
	}
	if (s->in_tls) {
		SMTP_REPLY(out, REPLY_TLS_ON);
		return SINK_EV_NONE;
	}
	if (n != 0) {
		SMTP_REPLY(out, REPLY_SYNTAX); /* RFC 3207 4 */
		return SINK_EV_NONE;
	}
	SMTP_REPLY(out, REPLY_STARTTLS);
	smtp_enter_state(s, SINK_SMTP_TLS);
	return SINK_EV_STARTTLS;
}

struct smtp_command {
	const char *verb;
	size_t len;
	enum sink_event (*proceed)(struct sink_smtp *s, const char *args, size_t n,
				   struct pt_buf *out);
};

#define SMTP_COMMAND(verb, fn)                                                                     \
	{                                                                                          \
		verb, sizeof(verb) - 1, fn                                                         \
	}

/* Most frequent first: a benchmark sends MAIL, RCPT and DATA per message. */
static const struct smtp_command smtp_commands_table[] = {
    SMTP_COMMAND("RCPT", smtp_rcpt),	     SMTP_COMMAND("MAIL", smtp_mail),
    SMTP_COMMAND("DATA", smtp_data_cmd),     SMTP_COMMAND("RSET", smtp_rset),
    SMTP_COMMAND("EHLO", smtp_ehlo),	     SMTP_COMMAND("HELO", smtp_helo),
    SMTP_COMMAND("NOOP", smtp_noop),	     SMTP_COMMAND("QUIT", smtp_quit),
    SMTP_COMMAND("STARTTLS", smtp_starttls),
};

/* One command line, LF excluded. */
static enum sink_event smtp_command(struct sink_smtp *s, const char *line, size_t n,
				    struct pt_buf *out)
{
	size_t verb_len = 0;

	if (n > 0 && line[n - 1] == '\r')
		n--;
	while (verb_len < n && line[verb_len] != ' ')
		verb_len++;
	for (size_t i = 0; i < PT_ARRAY_LEN(smtp_commands_table); i++) {
		const struct smtp_command *cmd = &smtp_commands_table[i];
		size_t a = verb_len;

		if (cmd->len != verb_len || strncasecmp(cmd->verb, line, verb_len) != 0)
			continue;
		while (a < n && line[a] == ' ')
			a++;
		return cmd->proceed(s, line + a, n - a, out);
	}
	SMTP_REPLY(out, REPLY_UNKNOWN);
	return SINK_EV_NONE;
}

/* Keep part of a command line split across reads. */
static void smtp_line_keep(struct sink_smtp *s, const char *p, size_t n)
{
	if (s->line_overflow || s->line_len + n > sizeof(s->line)) {
		s->line_overflow = true;
		return;
	}
	memcpy(s->line + s->line_len, p, n);
	s->line_len += n;
}

/* COMMAND state: answer every complete line; returns the bytes consumed. */
static size_t smtp_commands(struct sink_smtp *s, const char *in, size_t n, struct pt_buf *out,
			    enum sink_event *ev)
{
	const char *p = in, *end = in + n;

	while (p < end && s->state == SINK_SMTP_COMMAND && *ev == SINK_EV_NONE) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (!nl) {
			smtp_line_keep(s, p, (size_t)(end - p));
			return n;
		}
		if (s->line_len || s->line_overflow) {
			smtp_line_keep(s, p, (size_t)(nl - p));
			if (s->line_overflow)
				SMTP_REPLY(out, REPLY_TOO_LONG);
			else
				*ev = smtp_command(s, s->line, s->line_len, out);
			s->line_len = 0;
			s->line_overflow = false;
		} else if ((size_t)(nl - p) >= SINK_LINE_MAX) {
			SMTP_REPLY(out, REPLY_TOO_LONG);
		} else {
			*ev = smtp_command(s, p, (size_t)(nl - p), out);
		}
		p = nl + 1;
	}
	return (size_t)(p - in);
}

enum sink_event sink_smtp_feed(struct sink_smtp *s, const char *in, size_t n, struct pt_buf *out,
			       size_t *used)
{
	enum sink_event ev = SINK_EV_NONE;
	size_t off = 0;

	while (off < n && ev == SINK_EV_NONE) {
		switch (s->state) {
		case SINK_SMTP_COMMAND:
			off += smtp_commands(s, in + off, n - off, out, &ev);
			break;
		case SINK_SMTP_DATA:
			off += smtp_data(s, in + off, n - off, out, &ev);
			break;
		case SINK_SMTP_DELAY:
			ev = SINK_EV_DELAY; /* still waiting: the caller keeps the input */
			break;
		default:
			off = n; /* TLS pending or closed: pipelined input is discarded (RFC
				    3207 4.2) */
			break;
		}
	}
	if (ev == SINK_EV_STARTTLS || ev == SINK_EV_CLOSE)
		off = n;
	*used = off;
	return ev;
}
