/*
 * gen_msg.c -- petrel-gen's messages: one template built at start, patched
 * with the message number as it is copied into a session's output.
 *
 * Every message starts with the two headers that make it unique,
 *
 *   Message-ID: <N.RUNID@petrel-gen>
 *   X-Petrel-Gen: N
 *
 * followed by the template's `rest`, already dot-stuffed (RFC 5321 4.5.2),
 * and the tail "\r\n.\r\n".
 *
 * Generated messages (--size): rest is a few fixed headers and filler lines
 * of at most 78 characters.  N has fewer digits for small numbers, so the
 * last filler line gets 2 * (D - digits(N)) more characters (D: digits of
 * the largest N): every message is exactly --size bytes as the receiver
 * stores it.  Line width is chosen so that even the padded last line stays
 * within 78 characters (RFC 5322 2.1.1).
 *
 * Sample messages (--eml): the file with its line ends made CRLF, any
 * Message-ID header of its own (with continuation lines) removed, and lines
 * starting with "." stuffed.  Its size is the file's (after that) plus our
 * two headers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench/bench_util.h"
#include "bench/gen.h"
#include "core/ptime.h"

#define MSG_MAX_EML (64u << 20) /* a sample larger than this is refused */
#define MSG_ID_HEAD "Message-ID: <"

static const char msg_filler[] = "The quick brown fox jumps over the lazy dog; pack my box with "
				 "five dozen liquor jugs. ";

size_t gen_u64_dec(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

static inline void msg_put(struct pt_buf *b, const void *p, size_t n)
{
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

size_t gen_msg_append(const struct gen_msg *m, struct pt_buf *b, uint64_t n)
{
	size_t start = b->len, digits, pad = 0, head;

	msg_put(b, MSG_ID_HEAD, sizeof(MSG_ID_HEAD) - 1);
	digits = gen_u64_dec(b->data + b->len, n);
	b->len += digits;
	msg_put(b, m->id_tail, m->id_tail_len);
	b->len += gen_u64_dec(b->data + b->len, n);
	msg_put(b, "\r\n", 2);
	head = b->len - start;
	msg_put(b, m->rest, m->rest_len);
	if (m->pad && digits < m->max_digits) {
		pad = 2 * (m->max_digits - digits);
		memset(b->data + b->len, 'x', pad);
		b->len += pad;
	}
	msg_put(b, "\r\n.\r\n", 5);
	return head + m->rest_bytes + pad;
}

void gen_msg_append_rcpt(const struct gen_config *cfg, struct pt_buf *b, uint64_t g)
{
	msg_put(b, "RCPT TO:<user", 13);
	b->len += gen_u64_dec(b->data + b->len, g);
	msg_put(b, "@d", 2);
	b->len += gen_u64_dec(b->data + b->len, g % cfg->n_domains);
	msg_put(b, ".", 1);
	msg_put(b, cfg->domain_suffix, strlen(cfg->domain_suffix));
	msg_put(b, ">\r\n", 3);
}

/* Filler lines for `body` bytes (final CRLF included, >= 2) of at most
 * `width` characters each; the last one has no CRLF (the tail adds it). */
static int msg_filler_lines(struct pt_buf *out, size_t body, size_t width)
{
	size_t k = (body + width + 1) / (width + 2), text = body - 2 * k, pos = 0;

	for (size_t i = 0; i < k; i++) {
		/* Longer lines first: the last one is the shortest. */
		size_t len = text / k + (i < text % k ? 1 : 0);

		for (size_t j = 0; j < len; j++) {
			if (pt_buf_append(out, &msg_filler[pos], 1) != PT_OK)
				return PT_NOMEM;
			pos = (pos + 1) % (sizeof(msg_filler) - 1);
		}
		if (i + 1 < k && pt_buf_append(out, "\r\n", 2) != PT_OK)
			return PT_NOMEM;
	}
	return PT_OK;
}

static int msg_generated(struct gen_msg *m, const struct gen_config *cfg, struct pt_buf *rest,
			 char *err, size_t err_len)
{
	char date[40];
	size_t head_max = sizeof(MSG_ID_HEAD) - 1 + 2 * m->max_digits + m->id_tail_len + 2;
	size_t pad_max = 2 * (m->max_digits - 1);

	if (pt_buf_printf(rest,
			  "From: <%s>\r\nTo: undisclosed-recipients:;\r\n"
			  "Subject: petrel-gen load message\r\nDate: %s\r\nMIME-Version: 1.0\r\n"
			  "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
			  cfg->from, pt_time_rfc5322(pt_wall_us(), date)) != PT_OK)
		return PT_NOMEM;
	if (cfg->size < head_max + rest->len + 2) {
		snprintf(err, err_len, "--size %zu is too small: these headers need %zu bytes",
			 cfg->size, head_max + rest->len + 2);
		return PT_ERROR;
	}
	m->pad = true;
	m->rest_bytes = cfg->size - head_max;
	return msg_filler_lines(rest, cfg->size - head_max - rest->len, 78 - pad_max);
}

/* Append one line of the sample (without its line end) to rest, stuffed;
 * *bytes counts it unstuffed with its CRLF. */
static int msg_eml_line(struct pt_buf *rest, const char *p, size_t n, bool first, size_t *bytes)
{
	if (!first && pt_buf_append(rest, "\r\n", 2) != PT_OK)
		return PT_NOMEM;
	if (n > 0 && p[0] == '.' && pt_buf_append(rest, ".", 1) != PT_OK)
		return PT_NOMEM;
	*bytes += n + 2;
	return pt_buf_append(rest, p, n);
}

static int msg_eml(struct gen_msg *m, const struct gen_config *cfg, struct pt_buf *rest, char *err,
		   size_t err_len)
{
	struct pt_buf file = PT_BUF_INIT;
	bool in_header = true, dropping = false, first = true;
	size_t pos = 0, bytes = 0;
	int rc;

	if ((rc = bench_read_file("--eml", cfg->eml_path, MSG_MAX_EML, &file, err, err_len)) !=
	    PT_OK)
		goto out;
	while (pos < file.len) {
		const char *p = file.data + pos, *nl = memchr(p, '\n', file.len - pos);
		size_t n = nl ? (size_t)(nl - p) : file.len - pos;

		pos += n + (nl ? 1 : 0);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (in_header && n == 0)
			in_header = false;
		if (in_header && dropping && (p[0] == ' ' || p[0] == '\t'))
			continue; /* a continuation of the dropped Message-ID */
		dropping = in_header && n >= 11 && strncasecmp(p, "Message-ID:", 11) == 0;
		if (dropping)
			continue;
		if ((rc = msg_eml_line(rest, p, n, first, &bytes)) != PT_OK)
			goto out;
		first = false;
	}
	/* An empty sample still ends our headers with a line end. */
	m->rest_bytes = bytes > 0 ? bytes : 2;
	rc = PT_OK;
out:
	pt_buf_free(&file);
	return rc;
}

int gen_msg_init(struct gen_msg *m, const struct gen_config *cfg, char *err, size_t err_len)
{
	struct pt_buf rest = PT_BUF_INIT;
	int rc;

	memset(m, 0, sizeof(*m));
	m->max_digits = (unsigned)gen_u64_dec((char[20]){0}, cfg->n_messages);
	m->mail_cmd_len =
	    (size_t)snprintf(m->mail_cmd, sizeof(m->mail_cmd), "MAIL FROM:<%s>\r\n", cfg->from);
	m->id_tail_len = (size_t)snprintf(m->id_tail, sizeof(m->id_tail),
					  ".%s@petrel-gen>\r\nX-Petrel-Gen: ", cfg->run_id);
	rc = cfg->eml_path ? msg_eml(m, cfg, &rest, err, err_len)
			   : msg_generated(m, cfg, &rest, err, err_len);
	if (rc != PT_OK) {
		if (rc == PT_NOMEM)
			snprintf(err, err_len, "out of memory building the message template");
		pt_buf_free(&rest);
		return PT_ERROR;
	}
	m->rest = rest.data ? rest.data : strdup("");
	m->rest_len = rest.len;
	m->max_wire =
	    sizeof(MSG_ID_HEAD) + 40 + m->id_tail_len + 2 + m->rest_len + 2 * m->max_digits + 5;
	return m->rest ? PT_OK : PT_ERROR;
}

void gen_msg_free(struct gen_msg *m)
{
	free(m->rest);
	m->rest = NULL;
}
