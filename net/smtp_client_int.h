/*
 * smtp_client_int.h -- what the SMTP client's two files share: the state,
 * the session structure, and the functions one calls in the other.
 * net/smtp_client.c runs the session (banner, EHLO, STARTTLS, replies,
 * failure, the interface); net/smtp_client_tx.c runs transactions (MAIL,
 * RCPT, DATA, the body, each recipient's reply).  Private to them.
 */
#ifndef PT_SMTP_CLIENT_INT_H
#define PT_SMTP_CLIENT_INT_H

#include "net/smtp_client.h"
#include "net/smtp_client_parse.h"

enum smtp_client_state {
	SMTP_CLIENT_STATE_BANNER,     /* connected, the 220 awaited */
	SMTP_CLIENT_STATE_EHLO,	      /* EHLO sent */
	SMTP_CLIENT_STATE_HELO,	      /* HELO sent after a 5xx to EHLO */
	SMTP_CLIENT_STATE_STARTTLS,   /* STARTTLS sent */
	SMTP_CLIENT_STATE_TLS,	      /* START_TLS raised: the handshake is the shard's */
	SMTP_CLIENT_STATE_READY,      /* idle: a transaction or QUIT may start */
	SMTP_CLIENT_STATE_RSET,	      /* RSET's reply awaited (first of a transaction) */
	SMTP_CLIENT_STATE_MAIL,	      /* MAIL's reply awaited */
	SMTP_CLIENT_STATE_RCPT,	      /* a RCPT's reply awaited (c->rcpt_next) */
	SMTP_CLIENT_STATE_DATA,	      /* DATA's reply awaited */
	SMTP_CLIENT_STATE_DOT,	      /* body sent: the final dot's reply awaited */
	SMTP_CLIENT_STATE_DATA_ABORT, /* lone "." sent after an unwanted 354 */
	SMTP_CLIENT_STATE_QUIT,	      /* QUIT sent */
	SMTP_CLIENT_STATE_FAILED,     /* FAILED raised: input ignored for ever */
	SMTP_CLIENT_STATE_CLOSED,     /* CLOSED raised */
};

/* A recipient's slot: what decided it (see the top). */
enum {
	SLOT_WAITING = 0, /* its RCPT reply is not in yet */
	SLOT_ACCEPTED,	  /* RCPT accepted: the final dot decides */
	SLOT_MAIL,	  /* MAIL refused */
	SLOT_DATA,	  /* DATA refused */
	SLOT_DOT,	  /* the final dot's reply */
	SLOT_FAILURE,	  /* the session failed */
	SLOT_REFUSED,	  /* + k: the k-th refused RCPT reply */
};

#define SMTP_CLIENT_MAX_EVENTS 8 /* three at most are ever queued: TX_DONE, READY, FAILED */

struct smtp_client {
	enum smtp_client_state state;
	struct smtp_client_config cfg; /* timeouts defaulted; ehlo_domain not kept */
	char *ehlo_arg;		       /* the EHLO/HELO argument (a literal for an IP) */
	unsigned ext;		       /* SMTP_CLIENT_EXT_* of the last EHLO */
	uint64_t peer_max_size;	       /* SIZE's argument; 0: none announced */
	bool tls_on;
	bool ever_ready;
	bool failed_before_ready;
	bool need_rset;	    /* the last transaction ended before its dot */
	bool nomem;	    /* an allocation failed in this feed */
	bool pipelined;	    /* the current transaction was written at once */
	bool mail_ok;	    /* its MAIL was accepted */
	bool mail_8bit;	    /* its MAIL says BODY=8BITMIME */
	bool mail_utf8;	    /* its MAIL says SMTPUTF8 */
	uint64_t mail_size; /* its MAIL says SIZE=; 0: not said */
	size_t n_accepted;  /* its recipients accepted by RCPT */
	unsigned n_transactions;
	struct pt_buf out;
	size_t body_off, body_len; /* the body's bytes in out (len 0: none there) */
	struct smtp_client_parse parse;
	enum smtp_client_event events[SMTP_CLIENT_MAX_EVENTS];
	unsigned ev_head, n_events;
	struct smtp_client_reply failure;
	/* The transaction; tx is not used after TX_DONE. */
	const struct smtp_client_tx *tx;
	size_t n_rcpts;
	size_t rcpt_next; /* the recipient whose RCPT reply is awaited */
	uint32_t *slots;
	size_t slots_cap;
	struct smtp_client_reply *refused;
	size_t n_refused, refused_cap;
	struct smtp_client_reply mail_reply, data_reply, dot_reply;
};

/* ---- smtp_client.c ---- */

void smtp_client_enter_state(struct smtp_client *c, enum smtp_client_state state);
void smtp_client_push_event(struct smtp_client *c, enum smtp_client_event ev);
/* Take back a READY not yet taken: it is no longer true. */
void smtp_client_drop_ready(struct smtp_client *c);
/* READY, and the event saying so. */
void smtp_client_become_ready(struct smtp_client *c);
/* The session is unusable: r (copied) is why, and the reply of every
 * recipient still waiting (TX_DONE first when a transaction was on). */
void smtp_client_fail(struct smtp_client *c, const struct smtp_client_reply *r);
/* Fail with a local 451 4.3.0. */
void smtp_client_fail_nomem(struct smtp_client *c);
/* Fail with the peer's 4xx/5xx r; another class is a protocol error. */
void smtp_client_refused(struct smtp_client *c, const struct smtp_client_reply *r);
/* A reply of a class its command never gets: a protocol error. */
void smtp_client_fail_unexpected(struct smtp_client *c, const struct smtp_client_reply *r);
/* Append a command line; an allocation failure fails the session. */
int smtp_client_write(struct smtp_client *c, const char *line);

/* ---- smtp_client_tx.c ---- */

/* A reply in a transaction state (RSET to DATA_ABORT). */
void smtp_client_tx_reply(struct smtp_client *c, const struct smtp_client_reply *r);
/* The session fails mid-transaction: recipients still waiting get the
 * failure; TX_DONE. */
void smtp_client_tx_fail(struct smtp_client *c);

#endif
