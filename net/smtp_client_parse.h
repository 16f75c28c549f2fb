/*
 * smtp_client_parse.h -- the reply parser behind the SMTP client session
 * (net/smtp_client.c).  Private to net/; nothing outside net/ includes it
 * (tests and the fuzz target aside).
 *
 * Resumable at any byte, as the server's command parser (smtp_parse.h): a
 * reply may arrive split anywhere, one byte per feed included, and the
 * result is the same as if it had come in one piece.
 */
#ifndef PT_SMTP_CLIENT_PARSE_H
#define PT_SMTP_CLIENT_PARSE_H

#include "net/smtp_client.h"

/* One reply line, its line end not counted (KumoMTA's MAX_LINE_LEN). */
#define SMTP_CLIENT_LINE_MAX 4096
/* One reply, every line and line end counted. */
#define SMTP_CLIENT_REPLY_MAX 65536

enum smtp_client_parse_result {
	SMTP_CLIENT_PARSE_AGAIN, /* every byte used; the reply is not complete yet */
	SMTP_CLIENT_PARSE_LINE,	 /* a line of a multi-line reply, not its last */
	SMTP_CLIENT_PARSE_REPLY, /* the last line: reply is complete */
	SMTP_CLIENT_PARSE_ERROR, /* not an SMTP reply: error says why; sticky */
};

struct smtp_client_parse {
	/* Being built; complete after SMTP_CLIENT_PARSE_REPLY and valid until
	 * the first line of the next reply.  command and local are the
	 * caller's to set. */
	struct smtp_client_reply reply;
	size_t content_len;
	bool content_full; /* a line was cut: the lines after it are dropped */
	unsigned n_lines;  /* lines of the reply in progress (or just completed) */
	size_t n_octets;   /* octets of the reply in progress, line ends included */
	bool complete;	   /* reply is complete; the next byte starts another */
	bool failed;
	/* After LINE or REPLY, valid until the next call: the line's text
	 * after "ddd-" or "ddd " (and after the enhanced code), not
	 * NUL-terminated.  The EHLO keywords are read from it. */
	const char *text;
	size_t text_len;
	char error[160];
	size_t line_len;		     /* bytes of a split line kept in line[] */
	char line[SMTP_CLIENT_LINE_MAX + 1]; /* + 1: the CR of a CRLF split in two */
};

/* Ready for the first reply. */
void smtp_client_parse_init(struct smtp_client_parse *p);
/*
 * Scan data[0, len) for the next line of a reply.  *used is set to the
 * bytes taken: all of them with AGAIN (and ERROR), else up to and including
 * the LF that ended the line.  A line ends at LF, with or without CR before
 * it.  Once ERROR was returned, every later call returns it again.
 */
enum smtp_client_parse_result smtp_client_parse_reply(struct smtp_client_parse *p, const char *data,
						      size_t len, size_t *used);

#endif
