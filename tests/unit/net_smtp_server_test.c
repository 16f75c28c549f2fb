/*
 * net_smtp_server_test.c -- the SMTP server session, without sockets.
 *
 * Golden dialogues (Postfix's smtpd_check.in/.ref): every file pair
 * tests/unit/golden/smtp/<name>.in / <name>.ref is one Test below.  The
 * session's whole output must equal the .ref byte for byte, and it must be
 * the same whether the client bytes are fed in the groups the .in file
 * makes, one byte at a time, or cut at pseudo-random points: the parsers
 * are resumable, so where a read ends must never change what is replied.
 *
 * The .in format:
 *
 *   # comment                       ignored
 *   MAIL FROM:<a@b>                 client bytes: the line, then CRLF
 *   hello\nworld\                   escapes: \r CR, \n LF, \0 NUL, \t TAB,
 *                                   \\ backslash, \xHH any byte; a lone "\"
 *                                   at the end means: no CRLF after the line
 *   (an empty line)                 a bare CRLF
 *   @repeat N text                  N lines of text; "{i}" becomes 0..N-1
 *   @pad N text                     text padded with 'x' to N octets, CRLF included
 *
 * Client bytes accumulate and are fed as one write at the next directive
 * (or at the end of the file), so consecutive lines are one pipelined group.
 *
 *   @config key=value ...           before any bytes: hostname, banner,
 *                                   max_size, max_rcpts, tls (0/1), relay
 *                                   (0/1), peer, spool_full (0/1)
 *   @send                           only ends a group (a write boundary)
 *   @event none|message|starttls|close   the pending event must be this
 *   @sender addr                    the pending message's sender ("<>": null)
 *   @rcpts a b ...                  its recipients, in order
 *   @data escaped-bytes             its body, exactly (escapes as above, no CRLF added)
 *   @message CODE TEXT              answer SMTP_EV_MESSAGE (must be pending):
 *                                   smtp_session_message_done(CODE, TEXT), TEXT escaped
 *   @tls                            answer SMTP_EV_STARTTLS: smtp_session_tls_done()
 *   @timeout / @shutdown            smtp_session_timeout() / smtp_session_shutdown()
 *
 * The .ref holds the expected output, one reply line per line; each LF in
 * it stands for the CRLF on the wire.
 *
 * Other tests check what a golden file cannot see: the message handed over
 * with SMTP_EV_MESSAGE (envelope, bytes, Received: with its id and date),
 * the body staying bounded past max_message_size, the held-input limit at
 * its exact boundary, and the accessors.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/id.h"
#include "core/ptime.h"
#include "net/smtp_server.h"

#define GOLDEN_DIR "tests/unit/golden/smtp"

/* ---- helpers ------------------------------------------------------------- */

struct fixture {
	struct smtp_server_config config;
	struct pt_idgen idgen;
	char peer[64];
	bool relay;
	bool spool_full;
	struct smtp_session *s;
	struct pt_buf out; /* everything the session wrote, drained after each call */
};

static void fixture_defaults(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->config.hostname = "mx.petrel.test";
	f->config.banner = NULL;
	f->config.max_message_size = 1000000;
	f->config.max_recipients = 100;
	f->config.tls_available = false;
	f->config.shard = 0;
	pt_idgen_init(&f->idgen, 0);
	snprintf(f->peer, sizeof(f->peer), "127.0.0.1");
	f->relay = true;
}

static void fixture_drain(struct fixture *f)
{
	struct pt_buf *o = smtp_session_output(f->s);

	cr_assert_eq(pt_buf_append(&f->out, o->data, o->len), PT_OK);
	pt_buf_consume(o, o->len);
}

static void fixture_start(struct fixture *f)
{
	f->s = smtp_session_new(&f->config, &f->idgen, f->peer, f->relay);
	cr_assert_not_null(f->s);
	fixture_drain(f);
}

static void fixture_end(struct fixture *f)
{
	if (f->s)
		smtp_session_free(f->s, "test over");
	f->s = NULL;
	pt_buf_free(&f->out);
}

static void feed(struct fixture *f, const char *p, size_t n)
{
	smtp_session_feed(f->s, p, n);
	fixture_drain(f);
}

static void feeds(struct fixture *f, const char *str)
{
	feed(f, str, strlen(str));
}

/* The output since the last call, as a C string (caller frees). */
static char *take_output(struct fixture *f)
{
	char *r;

	fixture_drain(f);
	r = strndup(f->out.data ? f->out.data : "", f->out.len);

	pt_buf_reset(&f->out);
	return r;
}

static void expect_output(struct fixture *f, const char *want)
{
	char *got = take_output(f);

	cr_assert_str_eq(got, want, "output:\n%.2000s\nwanted:\n%.2000s", got, want);
	free(got);
}

/* Readable form of bytes for failure messages: CRLF as "\r\n" plus a line break. */
static void escape_bytes(struct pt_buf *b, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\r')
			pt_buf_append_str(b, "\\r");
		else if (c == '\n')
			pt_buf_append_str(b, "\\n\n    ");
		else if (c == '\\')
			pt_buf_append_str(b, "\\\\");
		else if (c < ' ' || c >= 0x7f)
			pt_buf_printf(b, "\\x%02x", c);
		else
			pt_buf_append(b, &p[i], 1);
	}
}

/* ---- golden files -------------------------------------------------------- */

enum feed_mode { FEED_GROUPS, FEED_BYTEWISE, FEED_RANDOM };
static const char *const feed_mode_names[] = {"in groups", "byte by byte", "in random pieces"};

struct golden {
	const char *name;
	enum feed_mode mode;
	struct fixture f;
	struct pt_buf pending; /* client bytes not fed yet */
	uint32_t rng;
	int line_no;
};

static char *read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	struct pt_buf b = PT_BUF_INIT;
	char chunk[4096];
	size_t n;

	cr_assert_not_null(fp, "cannot open %s (run from the repository root)", path);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		cr_assert_eq(pt_buf_append(&b, chunk, n), PT_OK);
	fclose(fp);
	*len = b.len;
	pt_buf_cstr(&b);
	if (b.data == NULL)
		return strdup("");
	return b.data;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
		return (c | 0x20) - 'a' + 10;
	return -1;
}

/* Decode the escapes of s[0, n) into out; true when a lone "\" ended it. */
static bool unescape(const char *s, size_t n, struct pt_buf *out)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c != '\\') {
			pt_buf_append(out, &c, 1);
			continue;
		}
		if (++i == n)
			return true;
		switch (s[i]) {
		case 'r':
			c = '\r';
			break;
		case 'n':
			c = '\n';
			break;
		case 't':
			c = '\t';
			break;
		case '0':
			c = '\0';
			break;
		case '\\':
			c = '\\';
			break;
		case 'x':
			cr_assert(i + 2 < n && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0,
				  "bad \\x escape in %.*s", (int)n, s);
			c = (char)(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
			i += 2;
			break;
		default:
			cr_assert_fail("unknown escape \\%c in %.*s", s[i], (int)n, s);
		}
		pt_buf_append(out, &c, 1);
	}
	return false;
}

static uint32_t golden_random(struct golden *g)
{
	g->rng = g->rng * 1103515245u + 12345u;
	return g->rng >> 16;
}

/* Feed what has accumulated, in the golden's feed mode. */
static void golden_flush(struct golden *g)
{
	size_t off = 0, n;

	if (g->f.s == NULL)
		fixture_start(&g->f);
	while (off < g->pending.len) {
		size_t piece = 1 + golden_random(g) % 23;

		n = g->pending.len - off;
		if (g->mode == FEED_BYTEWISE)
			n = 1;
		else if (g->mode == FEED_RANDOM)
			n = PT_MIN(n, piece);
		feed(&g->f, g->pending.data + off, n);
		off += n;
	}
	pt_buf_reset(&g->pending);
}

static void golden_config(struct golden *g, char *args)
{
	char *save = NULL;

	cr_assert_null(g->f.s, "%s:%d: @config after the session started", g->name, g->line_no);
	/* The banner may hold blanks: it takes the rest of the line. */
	if (strncmp(args, "banner=", 7) == 0) {
		g->f.config.banner = args + 7;
		return;
	}
	for (char *kv = strtok_r(args, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
		char *v = strchr(kv, '=');

		cr_assert_not_null(v, "%s:%d: @config wants key=value", g->name, g->line_no);
		*v++ = '\0';
		if (strcmp(kv, "hostname") == 0)
			g->f.config.hostname = v;
		else if (strcmp(kv, "max_size") == 0)
			g->f.config.max_message_size = strtoull(v, NULL, 10);
		else if (strcmp(kv, "max_rcpts") == 0)
			g->f.config.max_recipients = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(kv, "tls") == 0)
			g->f.config.tls_available = atoi(v) != 0;
		else if (strcmp(kv, "relay") == 0)
			g->f.relay = atoi(v) != 0;
		else if (strcmp(kv, "spool_full") == 0) {
			g->f.spool_full = atoi(v) != 0;
			g->f.config.spool_full = &g->f.spool_full;
		} else if (strcmp(kv, "peer") == 0)
			snprintf(g->f.peer, sizeof(g->f.peer), "%s", v);
		else
			cr_assert_fail("%s:%d: unknown @config key %s", g->name, g->line_no, kv);
	}
}

static enum smtp_event golden_event_named(struct golden *g, const char *name)
{
	if (strcmp(name, "none") == 0)
		return SMTP_EV_NONE;
	if (strcmp(name, "message") == 0)
		return SMTP_EV_MESSAGE;
	if (strcmp(name, "starttls") == 0)
		return SMTP_EV_STARTTLS;
	if (strcmp(name, "close") == 0)
		return SMTP_EV_CLOSE;
	cr_assert_fail("%s:%d: unknown event %s", g->name, g->line_no, name);
	return SMTP_EV_NONE;
}

static void golden_expect_event(struct golden *g, enum smtp_event want)
{
	enum smtp_event got = smtp_session_event(g->f.s);

	cr_assert_eq(got, want, "%s:%d (%s): pending event is %d, wanted %d", g->name, g->line_no,
		     feed_mode_names[g->mode], got, want);
}

static void golden_rcpts(struct golden *g, char *args)
{
	struct pt_message *m = smtp_session_message(g->f.s);
	char *save = NULL;
	size_t i = 0;

	golden_expect_event(g, SMTP_EV_MESSAGE);
	for (char *r = strtok_r(args, " ", &save); r; r = strtok_r(NULL, " ", &save), i++) {
		cr_assert_lt(i, m->n_rcpts, "%s:%d: only %zu recipients", g->name, g->line_no,
			     m->n_rcpts);
		cr_assert_str_eq(m->rcpts[i], r, "%s:%d: recipient %zu", g->name, g->line_no, i);
	}
	cr_assert_eq(i, m->n_rcpts, "%s:%d: %zu recipients, wanted %zu", g->name, g->line_no,
		     m->n_rcpts, i);
}

static void golden_data(struct golden *g, const char *args, size_t n)
{
	struct pt_message *m = smtp_session_message(g->f.s);
	struct pt_buf want = PT_BUF_INIT, show = PT_BUF_INIT;

	golden_expect_event(g, SMTP_EV_MESSAGE);
	unescape(args, n, &want);
	if (want.len != m->data.len || (want.len && memcmp(want.data, m->data.data, want.len))) {
		pt_buf_append_str(&show, "wanted:\n    ");
		escape_bytes(&show, want.data, want.len);
		pt_buf_append_str(&show, "\ngot:\n    ");
		escape_bytes(&show, m->data.data, m->data.len);
		cr_assert_fail("%s:%d (%s): message data differs\n%s", g->name, g->line_no,
			       feed_mode_names[g->mode], pt_buf_cstr(&show));
	}
	pt_buf_free(&want);
}

static void golden_message(struct golden *g, const char *args, size_t n)
{
	struct pt_buf text = PT_BUF_INIT;
	char *end;
	long code = strtol(args, &end, 10);

	golden_expect_event(g, SMTP_EV_MESSAGE);
	while (*end == ' ')
		end++;
	unescape(end, n - (size_t)(end - args), &text);
	smtp_session_message_done(g->f.s, (int)code, pt_buf_cstr(&text));
	fixture_drain(&g->f);
	pt_buf_free(&text);
}

/* One "@..." line: a directive ends the pending group first. */
static void golden_directive(struct golden *g, char *line, size_t n)
{
	char *args = strchr(line, ' ');
	size_t args_len = 0;

	if (args) {
		*args++ = '\0';
		args_len = n - (size_t)(args - line);
	} else {
		args = line + n;
	}
	if (strcmp(line, "@config") == 0) {
		golden_config(g, args);
		return;
	}
	golden_flush(g);
	if (strcmp(line, "@send") == 0) {
	} else if (strcmp(line, "@event") == 0) {
		golden_expect_event(g, golden_event_named(g, args));
	} else if (strcmp(line, "@sender") == 0) {
		golden_expect_event(g, SMTP_EV_MESSAGE);
		cr_assert_str_eq(smtp_session_message(g->f.s)->sender,
				 strcmp(args, "<>") == 0 ? "" : args, "%s:%d: sender", g->name,
				 g->line_no);
	} else if (strcmp(line, "@rcpts") == 0) {
		golden_rcpts(g, args);
	} else if (strcmp(line, "@data") == 0) {
		golden_data(g, args, args_len);
	} else if (strcmp(line, "@message") == 0) {
		golden_message(g, args, args_len);
	} else if (strcmp(line, "@tls") == 0) {
		golden_expect_event(g, SMTP_EV_STARTTLS);
		smtp_session_tls_done(g->f.s, "TLSv1.3", "TLS_AES_128_GCM_SHA256");
		fixture_drain(&g->f);
	} else if (strcmp(line, "@timeout") == 0) {
		smtp_session_timeout(g->f.s);
		fixture_drain(&g->f);
	} else if (strcmp(line, "@shutdown") == 0) {
		smtp_session_shutdown(g->f.s);
		fixture_drain(&g->f);
	} else {
		cr_assert_fail("%s:%d: unknown directive %s", g->name, g->line_no, line);
	}
}

/* Directives that produce client bytes. */
static bool golden_bytes_directive(struct golden *g, char *line)
{
	char *end;
	long count;

	if (strncmp(line, "@repeat ", 8) == 0) {
		count = strtol(line + 8, &end, 10);
		end++;
		for (long i = 0; i < count; i++) {
			char *mark = strstr(end, "{i}");

			if (mark)
				pt_buf_printf(&g->pending, "%.*s%ld%s\r\n", (int)(mark - end), end,
					      i, mark + 3);
			else
				pt_buf_printf(&g->pending, "%s\r\n", end);
		}
		return true;
	}
	if (strncmp(line, "@pad ", 5) == 0) {
		count = strtol(line + 5, &end, 10);
		end++;
		cr_assert_geq((size_t)count, strlen(end) + 2, "%s:%d: @pad too short", g->name,
			      g->line_no);
		pt_buf_append_str(&g->pending, end);
		for (size_t i = strlen(end) + 2; i < (size_t)count; i++)
			pt_buf_append(&g->pending, "x", 1);
		pt_buf_append(&g->pending, "\r\n", 2);
		return true;
	}
	return false;
}

static void golden_line(struct golden *g, char *line, size_t n)
{
	if (n > 0 && line[0] == '#')
		return;
	if (n > 0 && line[0] == '@') {
		if (!golden_bytes_directive(g, line))
			golden_directive(g, line, n);
		return;
	}
	if (!unescape(line, n, &g->pending))
		pt_buf_append(&g->pending, "\r\n", 2);
}

/* The first differing line of two outputs, for the failure message. */
static void golden_diff(struct pt_buf *msg, const char *want, size_t want_len, const char *got,
			size_t got_len)
{
	size_t i = 0, line = 1, start = 0;

	while (i < want_len && i < got_len && want[i] == got[i]) {
		if (want[i] == '\n') {
			line++;
			start = i + 1;
		}
		i++;
	}
	pt_buf_printf(msg, "first difference in reply line %zu:\n  wanted: ", line);
	escape_bytes(msg, want + start, PT_MIN(want_len - start, 120));
	pt_buf_append_str(msg, "\n  got:    ");
	escape_bytes(msg, got + start, PT_MIN(got_len - start, 120));
	pt_buf_append_str(msg, "\n--- wanted (.ref)\n    ");
	escape_bytes(msg, want, want_len);
	pt_buf_append_str(msg, "\n+++ got\n    ");
	escape_bytes(msg, got, got_len);
}

static void golden_run_mode(const char *name, enum feed_mode mode)
{
	char path[512];
	size_t in_len, ref_len;
	char *in, *ref, *line;
	struct pt_buf want = PT_BUF_INIT, msg = PT_BUF_INIT;
	struct golden g = {.name = name, .mode = mode};

	fixture_defaults(&g.f);
	for (const char *p = name; *p; p++)
		g.rng = g.rng * 31 + (unsigned char)*p;
	snprintf(path, sizeof(path), "%s/%s.in", GOLDEN_DIR, name);
	in = read_file(path, &in_len);
	snprintf(path, sizeof(path), "%s/%s.ref", GOLDEN_DIR, name);
	ref = read_file(path, &ref_len);
	for (size_t i = 0; i < ref_len; i++) {
		if (ref[i] == '\n')
			pt_buf_append(&want, "\r", 1);
		pt_buf_append(&want, &ref[i], 1);
	}
	line = in;
	while (line < in + in_len) {
		char *nl = memchr(line, '\n', (size_t)(in + in_len - line));
		size_t n = nl ? (size_t)(nl - line) : (size_t)(in + in_len - line);

		g.line_no++;
		line[n] = '\0';
		golden_line(&g, line, n);
		line += n + 1;
	}
	golden_flush(&g);
	if (want.len != g.f.out.len || (want.len && memcmp(want.data, g.f.out.data, want.len))) {
		golden_diff(&msg, want.data ? want.data : "", want.len,
			    g.f.out.data ? g.f.out.data : "", g.f.out.len);
		cr_assert_fail("golden %s, fed %s: output differs from %s.ref\n%s", name,
			       feed_mode_names[mode], name, pt_buf_cstr(&msg));
	}
	fixture_end(&g.f);
	pt_buf_free(&g.pending);
	pt_buf_free(&want);
	free(in);
	free(ref);
}

static void golden_run(const char *name)
{
	golden_run_mode(name, FEED_GROUPS);
	golden_run_mode(name, FEED_BYTEWISE);
	golden_run_mode(name, FEED_RANDOM);
}

/* Every golden file has a Test here; golden_all_listed fails when one is added without. */
#define GOLDEN_FILES(X)                                                                            \
	X(greeting_ehlo_quit)                                                                      \
	X(ehlo_tls_available)                                                                      \
	X(banner_and_helo)                                                                         \
	X(pipelined_transaction)                                                                   \
	X(mail_errors)                                                                             \
	X(mail_params)                                                                             \
	X(rcpt_errors)                                                                             \
	X(data_errors)                                                                             \
	X(too_many_rcpts)                                                                          \
	X(rcpt_overshoot_not_an_error)                                                             \
	X(relay_denied)                                                                            \
	X(size_param_over_max)                                                                     \
	X(size_exceeded_in_data)                                                                   \
	X(command_line_512)                                                                        \
	X(command_line_513)                                                                        \
	X(bare_lf_in_data)                                                                         \
	X(bare_cr_in_data)                                                                         \
	X(smuggling_lf_dot_crlf)                                                                   \
	X(smuggling_crlf_dot_lf)                                                                   \
	X(smuggling_cr_dot_cr)                                                                     \
	X(smuggling_lf_dot_lf)                                                                     \
	X(dot_unstuffing)                                                                          \
	X(empty_message)                                                                           \
	X(long_data_line)                                                                          \
	X(starttls_discards_pipelined)                                                             \
	X(starttls_errors)                                                                         \
	X(starttls_unavailable)                                                                    \
	X(starttls_held_after_message)                                                             \
	X(misc_commands)                                                                           \
	X(bad_command_lines)                                                                       \
	X(too_many_errors)                                                                         \
	X(shutdown_idle)                                                                           \
	X(shutdown_in_transaction)                                                                 \
	X(shutdown_after_rset)                                                                     \
	X(shutdown_in_data)                                                                        \
	X(timeout)                                                                                 \
	X(multiline_message_reply)                                                                 \
	X(two_messages_one_write)                                                                  \
	X(hold_overflow)                                                                           \
	X(ehlo_resets_transaction)                                                                 \
	X(input_after_close_ignored)                                                               \
	X(spool_full_mail_452)

#define GOLDEN_TEST(name)                                                                          \
	Test(golden, name)                                                                         \
	{                                                                                          \
		golden_run(#name);                                                                 \
	}
GOLDEN_FILES(GOLDEN_TEST)

#define GOLDEN_NAME(name) #name,
static const char *const golden_names[] = {GOLDEN_FILES(GOLDEN_NAME)};

Test(golden, all_listed)
{
	DIR *d = opendir(GOLDEN_DIR);
	struct dirent *e;
	int n_in = 0;

	cr_assert_not_null(d, "cannot open %s (run from the repository root)", GOLDEN_DIR);
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		bool found = false;
		char ref[300];

		if (n < 4 || (strcmp(e->d_name + n - 3, ".in") != 0 &&
			      strcmp(e->d_name + n - 4, ".ref") != 0))
			continue;
		for (size_t i = 0; i < PT_ARRAY_LEN(golden_names) && !found; i++) {
			size_t k = strlen(golden_names[i]);

			found = strncmp(e->d_name, golden_names[i], k) == 0 &&
				(strcmp(e->d_name + k, ".in") == 0 ||
				 strcmp(e->d_name + k, ".ref") == 0);
		}
		cr_expect(found, "%s/%s has no Test in GOLDEN_FILES", GOLDEN_DIR, e->d_name);
		if (strcmp(e->d_name + n - 3, ".in") == 0) {
			n_in++;
			snprintf(ref, sizeof(ref), "%s/%.*s.ref", GOLDEN_DIR, (int)(n - 3),
				 e->d_name);
			cr_expect_eq(access(ref, R_OK), 0, "%s has no .ref", e->d_name);
		}
	}
	closedir(d);
	cr_assert_eq(n_in, (int)PT_ARRAY_LEN(golden_names));
}

/* ---- the message handed over ------------------------------------------- */

/* EHLO, MAIL, RCPTs and DATA with the given content; the event must be MESSAGE. */
static struct pt_message *transaction(struct fixture *f, const char *greet, const char *rcpts[],
				      size_t n, const char *content)
{
	feeds(f, greet);
	feeds(f, "MAIL FROM:<sender@client.test>\r\n");
	for (size_t i = 0; i < n; i++) {
		char line[300];

		snprintf(line, sizeof(line), "RCPT TO:<%s>\r\n", rcpts[i]);
		feeds(f, line);
	}
	feeds(f, "DATA\r\n");
	feeds(f, content);
	cr_assert_eq(smtp_session_event(f->s), SMTP_EV_MESSAGE);
	return smtp_session_message(f->s);
}

Test(message, envelope_and_bytes_exact)
{
	struct fixture f;
	const char *rcpts[] = {"a@example.com", "b@example.org"};
	const char *body = "From: <sender@client.test>\r\nSubject: t\r\n\r\n.leading\r\n"
			   "...three\r\nlast line\r\n";
	struct pt_message *m;

	fixture_defaults(&f);
	fixture_start(&f);
	m = transaction(&f, "EHLO client.test\r\n", rcpts, 2,
			"From: <sender@client.test>\r\nSubject: t\r\n\r\n..leading\r\n"
			"....three\r\nlast line\r\n.\r\n");
	cr_assert_str_eq(m->sender, "sender@client.test");
	cr_assert_eq(m->n_rcpts, 2);
	cr_assert_str_eq(m->rcpts[0], "a@example.com");
	cr_assert_str_eq(m->rcpts[1], "b@example.org");
	cr_assert_eq(m->data.len, strlen(body));
	cr_assert_eq(memcmp(m->data.data, body, m->data.len), 0);
	cr_assert_eq(m->header_end, 40, "header_end %zu", m->header_end);
	cr_assert_str_eq(m->peer_address, "127.0.0.1");
	cr_assert_str_eq(m->ehlo, "client.test");
	cr_assert_str_eq(m->reception_protocol, "ESMTP");
	cr_assert(pt_id_valid(m->id, strlen(m->id)), "id %s", m->id);
	cr_assert_gt(m->created_us, 1600000000ull * 1000000);
	fixture_end(&f);
}

static void expect_received(struct pt_message *m, const char *ehlo, const char *proto,
			    const char *for_rcpt)
{
	char date[40], want[1024];

	pt_time_rfc5322(m->created_us, date);
	if (for_rcpt)
		snprintf(want, sizeof(want),
			 "Received: from %s (127.0.0.1)\r\n\tby mx.petrel.test (Petrel) with %s id "
			 "%s\r\n\tfor %s; %s\r\n",
			 ehlo, proto, m->id, for_rcpt, date);
	else
		snprintf(want, sizeof(want),
			 "Received: from %s (127.0.0.1)\r\n\tby mx.petrel.test (Petrel) with %s id "
			 "%s; %s\r\n",
			 ehlo, proto, m->id, date);
	cr_assert_eq(m->prefix.len, strlen(want), "prefix:\n%s\nwanted:\n%s",
		     pt_buf_cstr(&m->prefix), want);
	cr_assert_eq(memcmp(m->prefix.data, want, m->prefix.len), 0, "prefix:\n%s\nwanted:\n%s",
		     pt_buf_cstr(&m->prefix), want);
}

Test(message, received_header_one_recipient)
{
	struct fixture f;
	const char *rcpts[] = {"rcpt@example.com"};
	struct pt_message *m;
	char *v;

	fixture_defaults(&f);
	fixture_start(&f);
	m = transaction(&f, "EHLO client.test\r\n", rcpts, 1, "Subject: x\r\n\r\nbody\r\n.\r\n");
	expect_received(m, "client.test", "ESMTP", "rcpt@example.com");
	/* The folded header reads back unfolded through the message API. */
	v = pt_message_header_value(m, "Received");
	cr_assert_not_null(v);
	cr_assert(strstr(v, "by mx.petrel.test (Petrel) with ESMTP id ") != NULL, "%s", v);
	free(v);
	fixture_end(&f);
}

Test(message, received_header_several_recipients_has_no_for)
{
	struct fixture f;
	const char *rcpts[] = {"a@example.com", "b@example.com"};
	struct pt_message *m;

	fixture_defaults(&f);
	fixture_start(&f);
	m = transaction(&f, "EHLO client.test\r\n", rcpts, 2, "Subject: x\r\n\r\nbody\r\n.\r\n");
	expect_received(m, "client.test", "ESMTP", NULL);
	fixture_end(&f);
}

Test(message, protocol_smtp_after_helo)
{
	struct fixture f;
	const char *rcpts[] = {"a@example.com"};
	struct pt_message *m;

	fixture_defaults(&f);
	fixture_start(&f);
	m = transaction(&f, "HELO old.client\r\n", rcpts, 1, "x\r\n.\r\n");
	cr_assert_str_eq(m->reception_protocol, "SMTP");
	expect_received(m, "old.client", "SMTP", "a@example.com");
	fixture_end(&f);
}

Test(message, protocol_esmtps_after_tls)
{
	struct fixture f;
	const char *rcpts[] = {"a@example.com"};
	struct pt_message *m;

	fixture_defaults(&f);
	f.config.tls_available = true;
	fixture_start(&f);
	feeds(&f, "EHLO before.tls\r\nSTARTTLS\r\n");
	cr_assert_eq(smtp_session_event(f.s), SMTP_EV_STARTTLS);
	smtp_session_tls_done(f.s, "TLSv1.3", "TLS_AES_256_GCM_SHA384");
	m = transaction(&f, "EHLO after.tls\r\n", rcpts, 1, "x\r\n.\r\n");
	cr_assert_str_eq(m->reception_protocol, "ESMTPS");
	cr_assert_str_eq(m->ehlo, "after.tls");
	expect_received(m, "after.tls", "ESMTPS", "a@example.com");
	fixture_end(&f);
}

Test(message, ids_differ_and_transaction_resets)
{
	struct fixture f;
	const char *rcpts[] = {"a@example.com"};
	char first[PT_ID_LEN + 1];
	struct pt_message *m;

	fixture_defaults(&f);
	fixture_start(&f);
	m = transaction(&f, "EHLO c\r\n", rcpts, 1, "one\r\n.\r\n");
	memcpy(first, m->id, sizeof(first));
	smtp_session_message_done(f.s, 250, "2.0.0 OK");
	cr_assert_eq(smtp_session_event(f.s), SMTP_EV_NONE);
	cr_assert(smtp_session_idle(f.s));
	m = smtp_session_message(f.s);
	cr_assert_eq(m->n_rcpts, 0, "recipients survive the transaction");
	cr_assert_null(m->sender);
	cr_assert_eq(m->data.len, 0);
	m = transaction(&f, "", rcpts, 1, "two\r\n.\r\n");
	cr_assert_str_neq(m->id, first);
	cr_assert_eq(m->data.len, 5);
	cr_assert_eq(memcmp(m->data.data, "two\r\n", 5), 0);
	fixture_end(&f);
}

/* ---- limits -------------------------------------------------------------- */

Test(limits, body_never_grows_past_max_size)
{
	struct fixture f;
	char chunk[1000];
	struct pt_message *m;

	fixture_defaults(&f);
	f.config.max_message_size = 10000;
	fixture_start(&f);
	feeds(&f, "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n");
	expect_output(&f, "220 mx.petrel.test ESMTP Petrel\r\n250-mx.petrel.test Hello c "
			  "[127.0.0.1]\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
			  "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 HELP\r\n250 2.1.0 OK\r\n"
			  "250 2.1.5 OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	/* Lines of 100 octets: 98 letters and CRLF. */
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = i % 100 == 98 ? '\r' : i % 100 == 99 ? '\n' : 'a';
	m = smtp_session_message(f.s);
	for (int i = 0; i < 1000; i++) {
		feed(&f, chunk, sizeof(chunk));
		cr_assert_leq(m->data.len, 10000 + sizeof(chunk), "body %zu octets after %d chunks",
			      m->data.len, i + 1);
		cr_assert_leq(m->data.cap, 2 * (10000 + sizeof(chunk)), "body capacity %zu",
			      m->data.cap);
	}
	cr_assert(smtp_session_in_data(f.s));
	expect_output(&f, "");
	feeds(&f, ".\r\n");
	expect_output(&f, "552 5.3.4 message size exceeds fixed maximum message size\r\n");
	cr_assert_eq(smtp_session_event(f.s), SMTP_EV_NONE);
	cr_assert(smtp_session_idle(f.s));
	fixture_end(&f);
}

Test(limits, size_exactly_max_is_accepted)
{
	struct fixture f;
	const char *rcpts[] = {"a@example.com"};
	struct pt_message *m;

	fixture_defaults(&f);
	f.config.max_message_size = 12; /* "0123456789\r\n" */
	fixture_start(&f);
	m = transaction(&f, "EHLO c\r\n", rcpts, 1, "0123456789\r\n.\r\n");
	cr_assert_eq(m->data.len, 12);
	smtp_session_message_done(f.s, 250, "2.0.0 OK");
	feeds(&f, "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n0123456789X\r\n.\r\n");
	cr_assert_eq(smtp_session_event(f.s), SMTP_EV_NONE);
	{
		char *out = take_output(&f);
		const char *tail = "552 5.3.4 message size exceeds fixed maximum message size\r\n";

		cr_assert(strlen(out) >= strlen(tail) &&
			      strcmp(out + strlen(out) - strlen(tail), tail) == 0,
			  "%s", out);
		free(out);
	}
	fixture_end(&f);
}

/*
 * Bytes held while a message is pending: exactly SMTP_HOLD_MAX octets are
 * kept and run after the message's reply; one octet more and they are
 * dropped, the message is still answered, then 421 and close.
 */
Test(limits, hold_max_octets_are_kept)
{
	struct fixture f;
	const char *rcpts[] = {"a@example.com"};
	size_t n = SMTP_HOLD_MAX, n_noops = n / 6;
	char *noops = malloc(n);
	struct pt_buf want = PT_BUF_INIT;

	fixture_defaults(&f);
	fixture_start(&f);
	transaction(&f, "EHLO c\r\n", rcpts, 1, "x\r\n.\r\n");
	free(take_output(&f));
	/* 2730 "NOOP\r\n" and the first 4 octets of one more. */
	for (size_t i = 0; i < n; i++)
		noops[i] = "NOOP\r\n"[i % 6];
	feed(&f, noops, n / 2);
	feed(&f, noops + n / 2, n - n / 2);
	expect_output(&f, "");
	cr_assert_eq(smtp_session_event(f.s), SMTP_EV_MESSAGE);
	smtp_session_message_done(f.s, 250, "2.0.0 OK id=1");
	pt_buf_append_str(&want, "250 2.0.0 OK id=1\r\n");
	for (size_t i = 0; i < n_noops; i++)
		pt_buf_append_str(&want, "250 2.0.0 OK\r\n");
	expect_output(&f, pt_buf_cstr(&want));
	/* The unfinished line was kept too: its end completes it. */
	feeds(&f, "\r\n");
	expect_output(&f, "250 2.0.0 OK\r\n");
	cr_assert_eq(smtp_session_event(f.s), SMTP_EV_NONE);
	pt_buf_free(&want);
	free(noops);
	fixture_end(&f);
}

Test(limits, hold_past_max_closes_after_the_reply)
{
	struct fixture f;
	const char *rcpts[] = {"a@example.com"};
	char big[SMTP_HOLD_MAX + 1];

	fixture_defaults(&f);
	fixture_start(&f);
	transaction(&f, "EHLO c\r\n", rcpts, 1, "x\r\n.\r\n");
	free(take_output(&f));
	memset(big, 'N', sizeof(big));
	feed(&f, big, SMTP_HOLD_MAX);
	cr_assert_eq(smtp_session_event(f.s), SMTP_EV_MESSAGE);
	feed(&f, big, 1);
	cr_assert_eq(smtp_session_event(f.s), SMTP_EV_MESSAGE, "the message is still answered");
	smtp_session_message_done(f.s, 250, "2.0.0 OK");
	expect_output(&f, "250 2.0.0 OK\r\n421 4.7.0 too much pipelined input\r\n");
	cr_assert_eq(smtp_session_event(f.s), SMTP_EV_CLOSE);
	fixture_end(&f);
}

/* ---- accessors and events ----------------------------------------------- */

Test(session, idle_and_in_data_follow_the_transaction)
{
	struct fixture f;

	fixture_defaults(&f);
	fixture_start(&f);
	cr_assert(smtp_session_idle(f.s));
	feeds(&f, "EHLO c\r\n");
	cr_assert(smtp_session_idle(f.s));
	feeds(&f, "MAIL FROM:<>\r\n");
	cr_assert_not(smtp_session_idle(f.s));
	cr_assert_not(smtp_session_in_data(f.s));
	feeds(&f, "RCPT TO:<a@b.c>\r\nDATA\r\n");
	cr_assert(smtp_session_in_data(f.s));
	feeds(&f, "x\r\n.\r\n");
	cr_assert_not(smtp_session_in_data(f.s));
	cr_assert_not(smtp_session_idle(f.s), "a pending message is still a transaction");
	cr_assert_str_eq(smtp_session_message(f.s)->sender, "");
	smtp_session_message_done(f.s, 250, "2.0.0 OK");
	cr_assert(smtp_session_idle(f.s));
	fixture_end(&f);
}

Test(session, close_is_final)
{
	struct fixture f;

	fixture_defaults(&f);
	fixture_start(&f);
	feeds(&f, "QUIT\r\nNOOP\r\n");
	expect_output(&f, "220 mx.petrel.test ESMTP Petrel\r\n"
			  "221 2.0.0 mx.petrel.test closing connection\r\n");
	cr_assert_eq(smtp_session_event(f.s), SMTP_EV_CLOSE);
	feeds(&f, "NOOP\r\n");
	smtp_session_timeout(f.s);
	smtp_session_shutdown(f.s);
	smtp_session_message_done(f.s, 250, "2.0.0 OK");
	smtp_session_tls_done(f.s, "TLSv1.3", "x");
	fixture_drain(&f);
	expect_output(&f, "");
	cr_assert_eq(smtp_session_event(f.s), SMTP_EV_CLOSE);
	fixture_end(&f);
}

Test(session, strstate_names)
{
	cr_assert_str_eq(smtp_strstate(0), "INIT");
	cr_assert_str_eq(smtp_strstate(4), "DATA");
	cr_assert_str_eq(smtp_strstate(7), "CLOSED");
	cr_assert_str_eq(smtp_strstate(8), "UNKNOWN");
	cr_assert_str_eq(smtp_strstate(-1), "UNKNOWN");
}

Test(session, policy_reply_code_out_of_range_becomes_451)
{
	struct fixture f;
	const char *rcpts[] = {"a@example.com"};

	fixture_defaults(&f);
	fixture_start(&f);
	transaction(&f, "EHLO c\r\n", rcpts, 1, "x\r\n.\r\n");
	free(take_output(&f));
	smtp_session_message_done(f.s, 99, "2.0.0 OK");
	expect_output(&f, "451 4.3.0 internal error, try again later\r\n");
	fixture_end(&f);
}

/* ---- the recipient hook -------------------------------------------------- */

struct hook_log {
	char calls[8][160]; /* "sender|rcpt|relay" per call */
	int n;
};

/* Refuses "no@...", gives "bad@..." a reply code out of range, tags the rest
 * with their position in the transaction plus 10. */
static void test_rcpt_hook(void *ctx, const char *sender, const char *rcpt, bool relay_allowed,
			   struct smtp_rcpt_verdict *out)
{
	struct hook_log *log = ctx;

	cr_assert_eq(out->code, 0, "out is zeroed");
	cr_assert_lt(log->n, 8);
	snprintf(log->calls[log->n++], sizeof(log->calls[0]), "%s|%s|%d", sender, rcpt,
		 relay_allowed);
	if (strncmp(rcpt, "no@", 3) == 0) {
		out->code = 550;
		snprintf(out->text, sizeof(out->text), "5.7.1 relaying denied\r\nforged: line");
	} else if (strncmp(rcpt, "bad@", 4) == 0) {
		out->code = 250;
	} else {
		out->tag = 10 + (unsigned)log->n;
	}
}

Test(session, rcpt_hook_decides_and_tags)
{
	struct fixture f;
	struct hook_log log = {0};

	fixture_defaults(&f);
	f.relay = false;
	fixture_start(&f);
	smtp_session_set_rcpt_hook(f.s, test_rcpt_hook, &log);
	feeds(&f, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<no@x.test>\r\n"
		  "RCPT TO:<postmaster>\r\nRCPT TO:<bad@x.test>\r\nRCPT TO:<b@y.test>\r\n");
	free(take_output(&f));
	feeds(&f, "NOOP\r\n");
	cr_assert_eq(log.n, 4, "postmaster without a domain is never put to the hook");
	cr_assert_str_eq(log.calls[0], "|a@x.test|0");
	cr_assert_str_eq(log.calls[3], "|b@y.test|0");
	cr_assert_eq(smtp_session_message(f.s)->n_rcpts, 3);
	cr_assert_eq(smtp_session_rcpt_tag(f.s, 0), 11);
	cr_assert_eq(smtp_session_rcpt_tag(f.s, 1), 0, "postmaster: no tag");
	cr_assert_eq(smtp_session_rcpt_tag(f.s, 2), 14);
	cr_assert_eq(smtp_session_rcpt_tag(f.s, 3), 0, "past the end");
	cr_assert_str_eq(smtp_session_ehlo(f.s), "c");
	fixture_end(&f);
}

Test(session, rcpt_hook_replies)
{
	struct fixture f;
	struct hook_log log = {0};

	fixture_defaults(&f);
	fixture_start(&f);
	smtp_session_set_rcpt_hook(f.s, test_rcpt_hook, &log);
	feeds(&f, "EHLO c\r\n");
	free(take_output(&f));
	feeds(&f, "MAIL FROM:<s@c.test>\r\nRCPT TO:<no@x.test>\r\nRCPT TO:<bad@x.test>\r\n"
		  "RCPT TO:<ok@x.test>\r\n");
	expect_output(&f, "250 2.1.0 OK\r\n"
			  "550 5.7.1 relaying denied  forged: line\r\n"
			  "451 4.3.0 internal error, try again later\r\n"
			  "250 2.1.5 OK\r\n");
	cr_assert_str_eq(log.calls[0], "s@c.test|no@x.test|1");
	smtp_session_set_rcpt_hook(f.s, NULL, NULL);
	feeds(&f, "RCPT TO:<no@x.test>\r\n");
	expect_output(&f, "250 2.1.5 OK\r\n");
	fixture_end(&f);
}
