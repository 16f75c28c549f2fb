/*
 * smtp_parse.h -- the byte-level parsers behind the SMTP server session
 * (net/smtp_server.c): command lines, DATA content, paths and ESMTP
 * parameters.  Private to net/; nothing outside net/ includes it.
 *
 * Both stream parsers are resumable at any byte, as nginx's
 * ngx_mail_smtp_parse_command(): a small state enum is saved between feeds,
 * so a command or a line of content may arrive split anywhere and the
 * result is the same as if it had come in one piece.
 */
#ifndef PT_SMTP_PARSE_H
#define PT_SMTP_PARSE_H

#include "core/buf.h"
#include "net/smtp_server.h"

/* ---- command lines ---------------------------------------------------- */

enum smtp_parse_state {
	SMTP_PARSE_START,	/* nothing of this line yet */
	SMTP_PARSE_VERB,	/* in the verb (letters only) */
	SMTP_PARSE_SPACES,	/* blanks between the verb and its argument */
	SMTP_PARSE_ARGUMENT,	/* in the argument */
	SMTP_PARSE_ALMOST_DONE, /* saw CR, want LF */
	SMTP_PARSE_SKIP,	/* line refused: drop bytes up to its LF */
};

enum smtp_parse_result {
	SMTP_PARSE_AGAIN,   /* every byte used, the line is not complete yet */
	SMTP_PARSE_LINE,    /* a complete line: verb and argument are set */
	SMTP_PARSE_INVALID, /* a complete line that cannot be a command (NUL, bare CR, junk verb) */
	SMTP_PARSE_TOO_LONG, /* a complete line over SMTP_CMD_LINE_MAX octets */
};

struct smtp_parse {
	enum smtp_parse_state state;
	enum smtp_parse_result skip_result; /* what SKIP reports at the LF */
	size_t n_octets;		    /* of this line so far, CR and LF included */
	size_t line_len;		    /* bytes kept in line[] (no CR, no LF) */
	size_t verb_len;
	size_t arg_off;
	/* After SMTP_PARSE_LINE, valid until the next call: */
	const char *verb; /* not NUL-terminated; verb_len bytes */
	const char *arg;  /* NUL-terminated, blanks trimmed; "" when none */
	size_t arg_len;
	/* 511 bytes of content at most (see smtp_parse_command) plus a NUL. */
	char line[SMTP_CMD_LINE_MAX];
};

/* Ready for the first line. */
void smtp_parse_init(struct smtp_parse *p);
/*
 * Scan data[0, len) for the end of the current command line.  *used is set
 * to the bytes taken: all of them with SMTP_PARSE_AGAIN, else up to and
 * including the LF that ended the line.  A line ends at LF, with or without
 * CR before it.
 */
enum smtp_parse_result smtp_parse_command(struct smtp_parse *p, const char *data, size_t len,
					  size_t *used);

/* ---- DATA content ----------------------------------------------------- */

enum smtp_data_state {
	SMTP_DATA_BOL,	  /* at the start of a line (after CRLF, or first line) */
	SMTP_DATA_DOT,	  /* "." at the start of a line */
	SMTP_DATA_DOT_CR, /* ".\r" at the start of a line */
	SMTP_DATA_TEXT,	  /* inside a line */
	SMTP_DATA_CR,	  /* CR inside a line, want LF */
};

/* Why a message is refused at its end (several may be set). */
#define SMTP_DATA_BARE_CRLF 0x01 /* a CR or LF not part of a CRLF (RFC 5321 2.3.8) */
#define SMTP_DATA_LONG_LINE 0x02 /* a line over SMTP_TEXT_LINE_MAX (RFC 5321 4.5.3.1.6) */
#define SMTP_DATA_TOO_BIG   0x04 /* more than max_size octets (RFC 1870) */
#define SMTP_DATA_NOMEM	    0x08 /* the body could not grow */

struct smtp_data {
	enum smtp_data_state state;
	unsigned flags;	   /* SMTP_DATA_*; once any is set nothing more is stored */
	size_t line_len;   /* octets of the current line as received */
	uint64_t size;	   /* unstuffed octets, stored or not */
	uint64_t max_size; /* octets the body may hold */
	struct pt_buf *body;
};

/* Start the content of one message, stored into body (not owned). */
void smtp_data_init(struct smtp_data *d, struct pt_buf *body, uint64_t max_size);
/*
 * Take DATA content from data[0, len): unstuff it into the body, check line
 * ends and lengths, count the size.  Returns the bytes used: len when the end
 * was not seen, else the count up to and including the LF of CRLF "." CRLF,
 * and *done is set.
 */
size_t smtp_data_feed(struct smtp_data *d, const char *data, size_t len, bool *done);

/* ---- arguments -------------------------------------------------------- */

/* A path, as the mailbox without <> and without a source route. */
struct smtp_path {
	const char *mailbox; /* points into the parsed text */
	size_t mailbox_len;  /* 0 for the null path "<>" */
};

/*
 * Parse a path (RFC 5321 4.1.2: "<" [A-d-l ":"] Mailbox ">", or "<>") at the
 * start of s.  Returns the octets taken, or 0 when s does not start with a
 * valid path.  The null path is returned as such; the caller decides
 * whether it is allowed.  A mailbox without a domain is accepted only when
 * local_only_ok (for <postmaster>).
 */
size_t smtp_parse_path(const char *s, size_t len, bool local_only_ok, struct smtp_path *out);

/* One ESMTP parameter (RFC 5321 4.1.2: esmtp-keyword ["=" esmtp-value]). */
struct smtp_param {
	const char *keyword; /* not NUL-terminated */
	size_t keyword_len;
	const char *value; /* NULL when there is no "=" */
	size_t value_len;
};

/*
 * Take the next blank-separated parameter from *s (advanced past it).
 * Returns 1 with *out set, 0 at the end of the text.  Keyword and value
 * are returned as they are; their syntax is the caller's to judge (with
 * smtp_param_keyword_ok / smtp_param_value_ok).
 */
int smtp_parse_param(const char **s, const char *end, struct smtp_param *out);
bool smtp_param_is(const struct smtp_param *p, const char *keyword);
/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
bool smtp_param_keyword_ok(const struct smtp_param *p);
/* esmtp-value = 1*(%d33-60 / %d62-126), or UTF-8 (RFC 6531 3.3) */
bool smtp_param_value_ok(const struct smtp_param *p);
/* The value as a decimal number; false unless all digits.  Saturates at UINT64_MAX. */
bool smtp_param_number(const struct smtp_param *p, uint64_t *out);

#endif
