/*
 * sink_smtp.h -- the SMTP server side of petrel-sink as a pure state
 * machine: bytes in, reply bytes out, no system calls, no allocation.
 *
 * A connection drives one struct sink_smtp:
 *
 *   sink_smtp_init(s, worker)          once per connection
 *   sink_smtp_greet(s, out)            the 220 greeting
 *   sink_smtp_feed(s, in, n, out, &used)
 *                                      every received (plaintext) batch; the
 *                                      replies of the whole batch are appended
 *                                      to out, in order, so the caller sends
 *                                      them with one write
 *   sink_smtp_resume(s, out)           after SINK_EV_DELAY, when the latency
 *                                      has passed: the end-of-data reply
 *   sink_smtp_tls_done(s)              after the STARTTLS handshake
 *
 * Everything the sessions of one thread share -- the configuration (read
 * only, shared by every thread), the outcome PRNG, the counters, the
 * accounting log buffer -- lives in struct sink_smtp_worker.
 */
#ifndef PT_SINK_SMTP_H
#define PT_SINK_SMTP_H

#include "core/buf.h"

#define SINK_MATCH_MAX	16   /* --tempfail-match / --permfail-match, each */
#define SINK_LINE_MAX	1024 /* a command line, CRLF included (RFC 5321 says 512; we are lenient) */
#define SINK_PATH_MAX	320  /* a reverse- or forward-path kept for the log and for fnmatch */
#define SINK_MSGID_MAX	256  /* a Message-ID value kept for the log */
#define SINK_HEADER_MAX 512  /* a header line looked at for Message-ID; longer is cut */

/* Where scripted outcomes are given (--at). */
enum sink_at { SINK_AT_RCPT, SINK_AT_DATA };

/* The run's configuration, read only once the threads run. */
struct sink_smtp_config {
	const char *hostname;
	uint64_t max_size;   /* bytes; 0 = no limit (advertised as SIZE 0, RFC 1870) */
	uint64_t latency_ns; /* delay of every end-of-data reply; 0 = none */
	double tempfail_pct; /* share of random 451s, 0..100 */
	double permfail_pct; /* share of random 550s, 0..100 */
	enum sink_at at;
	const char *tempfail_match[SINK_MATCH_MAX];
	const char *permfail_match[SINK_MATCH_MAX];
	unsigned n_tempfail_match, n_permfail_match;
	bool tls; /* STARTTLS offered */
	bool log; /* fill the worker's log buffer (and scan headers for Message-ID) */
};

/*
 * Counters of one thread.  Each field has exactly one writer (its thread),
 * which stores with relaxed atomics so that the main thread may sum them at
 * any time without tearing; no read-modify-write is ever shared.
 */
struct sink_counters {
	uint64_t connections;	   /* accepted, total */
	uint64_t connections_open; /* open now */
	uint64_t messages;	   /* transactions answered 250 after DATA */
	uint64_t recipients;	   /* RCPTs answered 250 */
	uint64_t bytes;		   /* message bytes of those messages (after dot-unstuffing) */
	uint64_t tempfail;	   /* scripted 451 replies (RCPT or end of data) */
	uint64_t permfail;	   /* scripted 550 replies (RCPT or end of data) */
	uint64_t rejected_at_data; /* transactions refused at the end of data (--at data) */
	uint64_t oversize;	   /* transactions refused at the end of data for --max-size */
	/* CLOCK_MONOTONIC (ns) when the newest of `messages` was acknowledged:
	 * a harness measures end-to-end time to the message, not to the next
	 * status write.  Set by the ring thread (sink_io.c), the max over threads. */
	uint64_t last_message_ns;
};

static inline void sink_count(uint64_t *counter, uint64_t n)
{
	__atomic_store_n(counter, *counter + n, __ATOMIC_RELAXED);
}

static inline uint64_t sink_counter_read(const uint64_t *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* What one thread's sessions share.  Not thread-safe: one per thread. */
struct sink_smtp_worker {
	const struct sink_smtp_config *cfg; /* not owned */
	struct sink_counters *counters;	    /* not owned */
	struct pt_buf *log;		    /* not owned; lines appended when cfg->log */
	uint64_t rng;			    /* splitmix64 state */
};

/*
 * Seed a worker's outcome stream: thread `index` of a run seeded with
 * `seed`.  The same (seed, index) always gives the same sequence of draws,
 * one draw per RCPT (--at rcpt) or per end of data (--at data).
 */
void sink_smtp_worker_seed(struct sink_smtp_worker *w, uint64_t seed, unsigned index);

/* What the caller must do after a feed. */
enum sink_event {
	SINK_EV_NONE,	  /* all input consumed; go on reading */
	SINK_EV_DELAY,	  /* input left unconsumed: wait cfg->latency_ns, then
			   * sink_smtp_resume() and feed the rest */
	SINK_EV_STARTTLS, /* the 220 is in out; the rest of the input was discarded
			   * (RFC 3207 4.2): start the TLS handshake */
	SINK_EV_CLOSE,	  /* send what is in out, then close (QUIT, or an error) */
};

enum sink_smtp_state {
	SINK_SMTP_COMMAND, /* reading command lines */
	SINK_SMTP_DATA,	   /* reading message content up to CRLF.CRLF */
	SINK_SMTP_DELAY,   /* end of data seen, its reply held back (--latency) */
	SINK_SMTP_TLS,	   /* STARTTLS accepted, waiting for the handshake */
	SINK_SMTP_CLOSED,  /* QUIT answered */
};

/* One session.  Fixed size: nothing in it is allocated. */
struct sink_smtp {
	struct sink_smtp_worker *worker; /* not owned */
	enum sink_smtp_state state;
	bool helo;	    /* HELO or EHLO seen (since the last STARTTLS) */
	bool in_tls;	    /* the session runs over TLS */
	bool mail;	    /* a transaction is open */
	bool line_overflow; /* the current command line passed SINK_LINE_MAX */
	bool match_temp;    /* --at data: an accepted RCPT matched --tempfail-match */
	bool match_perm;    /* --at data: an accepted RCPT matched --permfail-match */
	unsigned n_rcpts;   /* accepted RCPTs of the open transaction */
	/* End-of-data scanner: how much of CRLF "." CRLF was just seen (0..4);
	 * 2 means "at the start of a line". */
	unsigned eod;
	uint64_t data_raw;  /* bytes after the 354, the final "." CRLF included */
	uint64_t data_dots; /* transparency dots seen (RFC 5321 4.5.2) */
	uint64_t msg_bytes; /* the message's size, once its end is seen */
	const char *held;   /* SINK_SMTP_DELAY: the end-of-data reply to give */
	int held_kind;	    /* and what it counts as (sink_smtp.c) */
	/* Header scan, only with cfg->log: the Message-ID value, kept from the
	 * header block only (RFC 5322 2.1: it ends at the first empty line). */
	bool in_headers;
	bool header_cut; /* the current header line passed SINK_HEADER_MAX */
	bool msgid_open; /* the last header was Message-ID: continuation lines are its */
	size_t header_len;
	size_t msgid_len;
	size_t mail_from_len;
	size_t line_len; /* bytes of a partial command line in line[] */
	char header[SINK_HEADER_MAX];
	char msgid[SINK_MSGID_MAX];
	char mail_from[SINK_PATH_MAX];
	char line[SINK_LINE_MAX];
};

/* Start a session (the struct may be reused memory). */
void sink_smtp_init(struct sink_smtp *s, struct sink_smtp_worker *worker);
/* Append the 220 greeting to out. */
void sink_smtp_greet(struct sink_smtp *s, struct pt_buf *out);
/*
 * Consume received bytes (not kept: a partial command line is copied into
 * the session), appending every reply to out (PT_NOMEM of out is ignored:
 * a reply that cannot be queued is dropped, and the client times out).
 * *used is how many bytes were consumed: all of them, except after
 * SINK_EV_DELAY, where the caller keeps the rest and feeds it after
 * sink_smtp_resume().
 */
enum sink_event sink_smtp_feed(struct sink_smtp *s, const char *in, size_t n, struct pt_buf *out,
			       size_t *used);
/* After SINK_EV_DELAY: append the held end-of-data reply to out and count it. */
void sink_smtp_resume(struct sink_smtp *s, struct pt_buf *out);
/* After the STARTTLS handshake: a fresh session over TLS (RFC 3207 4.2:
 * the client must say EHLO again). */
void sink_smtp_tls_done(struct sink_smtp *s);
/* Name of a state, for traces. */
const char *sink_smtp_strstate(enum sink_smtp_state state);

#endif
