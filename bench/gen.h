/*
 * gen.h -- petrel-gen, the SMTP load generator of the bench harness: the
 * pieces shared by its files.  Private to bench/gen*.c.
 *
 *   gen.c          options, threads, progress line, summary (human or JSON)
 *   gen_worker.c   one thread: its io_uring, connect/send/recv, pacing,
 *                  STARTTLS glue, the run's deadline
 *   gen_session.c  the SMTP client dialogue of one session (replies in,
 *                  commands out, per-message accounting)
 *   gen_msg.c      the message template, built once, patched per message
 *   gen_hist.c     the latency histogram
 *
 * Threads share only the read-only configuration and template, the message
 * counter (one atomic fetch-add per message) and the clock origin.  Each
 * thread owns its counters and histogram; it stores them with relaxed
 * atomic stores so that the main thread's progress line may read them while
 * the run goes on (on x86-64 that is a plain store: no cost on the hot path).
 */
#ifndef PT_BENCH_GEN_H
#define PT_BENCH_GEN_H

#include <linux/time_types.h>
#include <pthread.h>
#include <sys/socket.h>

#include "core/buf.h"

/* ---- Configuration (read-only once the threads start) ---- */

struct gen_config {
	struct sockaddr_storage addr; /* --server, resolved */
	socklen_t addr_len;
	char server_host[256]; /* host part of --server: SNI for STARTTLS */
	unsigned n_threads;
	unsigned n_sessions;
	uint64_t n_messages;
	size_t size; /* --size: bytes per message, headers included */
	const char *eml_path;
	unsigned n_rcpts;
	unsigned n_domains;
	const char *domain_suffix;
	const char *from;
	const char *helo;
	bool pipelining;
	bool starttls;
	double rate;		 /* messages/s over all sessions; 0 = unlimited */
	uint64_t per_connection; /* messages per connection; 0 = unlimited */
	double timeout_s;
	double reply_timeout_s; /* --reply-timeout: bound on each wait for the server */
	bool json;
	bool quiet;
	char run_id[64];
};

/* ---- Latency histogram (gen_hist.c) ----
 *
 * Log-linear buckets over nanoseconds: exact below 256 ns, then 128 linear
 * sub-buckets per power of two, up to 2^36 ns (68.7 s).  A bucket's width
 * is at most 1/128 of its lower bound, and a value is reported as its
 * bucket's midpoint, so the error is at most 0.4 % (HdrHistogram's idea with
 * two significant binary digits more than needed). */

#define GEN_HIST_SUB_BITS 7
#define GEN_HIST_SUB	  (1u << GEN_HIST_SUB_BITS) /* 128 sub-buckets */
#define GEN_HIST_TOP_BIT  36			    /* values >= 2^36 ns clamp */
#define GEN_HIST_BUCKETS                                                                           \
	(2 * GEN_HIST_SUB + (GEN_HIST_TOP_BIT - GEN_HIST_SUB_BITS - 1) * GEN_HIST_SUB)

struct gen_hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t max_ns;
	uint64_t bucket[GEN_HIST_BUCKETS];
};

/* Add one value (owner thread only; relaxed atomic stores). */
void gen_hist_record(struct gen_hist *h, uint64_t ns);
/* dst += src, reading src with relaxed atomic loads (src may be live). */
void gen_hist_merge(struct gen_hist *dst, const struct gen_hist *src);
/* The value at percentile p (0 < p <= 100) in ns: the midpoint of the bucket
 * holding the ceil(p% * count)-th smallest value, never above max_ns.
 * 0 when the histogram is empty. */
uint64_t gen_hist_percentile(const struct gen_hist *h, double p);

/* ---- Message template (gen_msg.c) ---- */

struct gen_msg {
	char *rest;	     /* dot-stuffed text after our two headers, owned */
	size_t rest_len;     /* ... without the final CRLF (the tail adds it) */
	size_t rest_bytes;   /* unstuffed bytes of rest + final CRLF */
	unsigned max_digits; /* digits of the largest message number */
	bool pad;	     /* generated: pad the last line to a constant size */
	char mail_cmd[600];  /* "MAIL FROM:<from>\r\n" */
	size_t mail_cmd_len;
	char id_tail[128]; /* ".RUNID@petrel-gen>\r\nX-Petrel-Gen: " */
	size_t id_tail_len;
	size_t max_wire; /* bound on the DATA bytes of one message */
};

/* Build the template for cfg (reads cfg->eml_path when set).  PT_OK, or
 * PT_ERROR with err filled (unreadable file, --size too small). */
int gen_msg_init(struct gen_msg *m, const struct gen_config *cfg, char *err, size_t err_len);
void gen_msg_free(struct gen_msg *m);
/* Append message n's DATA bytes (headers, stuffed text, "\r\n.\r\n") to b,
 * whose room the caller reserved (m->max_wire).  Returns the message's
 * size as the receiver stores it (unstuffed, without the final dot). */
size_t gen_msg_append(const struct gen_msg *m, struct pt_buf *b, uint64_t n);
/* Append "RCPT TO:<user<g>@d<g % n_domains>.<suffix>>\r\n" (room reserved). */
void gen_msg_append_rcpt(const struct gen_config *cfg, struct pt_buf *b, uint64_t g);
/* Decimal digits of v written at p (no NUL); returns their count (<= 20). */
size_t gen_u64_dec(char *p, uint64_t v);

/* ---- Counters (one set per thread) ---- */

struct gen_stats {
	uint64_t attempted;   /* messages whose MAIL FROM went out at least once */
	uint64_t accepted;    /* 2xx after the final dot */
	uint64_t tempfailed;  /* not accepted, a 4xx somewhere in the transaction */
	uint64_t permfailed;  /* not accepted, a 5xx and no 4xx */
	uint64_t conn_failed; /* given up after GEN_MAX_RETRIES connection errors */
	uint64_t rcpts_accepted;
	uint64_t rcpts_refused;
	uint64_t conn_errors;	   /* connections refused, reset or broken */
	uint64_t reply_timeouts;   /* ... of which: no reply within --reply-timeout */
	uint64_t bytes;		   /* message bytes of accepted messages */
	uint64_t first_connect_ns; /* 0 until the first connect */
	uint64_t last_reply_ns;
	struct gen_hist hist; /* accept latency: final dot written -> reply read */
};

/* One writer per counter: a relaxed store of the incremented value. */
#define GEN_ADD(field, v) __atomic_store_n(&(field), (field) + (v), __ATOMIC_RELAXED)
#define GEN_LOAD(field)	  __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* A message is tried on a new connection this many more times after a
 * connection error before it counts as failed. */
#define GEN_MAX_RETRIES 3

/* Connections of the whole run between connect and greeting, at most.  A
 * listener's SYN queue is as long as its listen() backlog (OpenSMTPD: 5,
 * SMTPD_BACKLOG); a burst of more SYNs than that makes Linux answer with
 * SYN cookies, and a cookie connection whose final ACK meets a full accept
 * queue is dropped by the server without a trace while the client sees it
 * established.  SMTP's server speaks first, so such a connection stays
 * silent: never start more than this many at once. */
#define GEN_MAX_OPENING 4

/* ---- Shared run state ---- */

struct gen_run {
	const struct gen_config *cfg;
	const struct gen_msg *msg;
	uint64_t next_msg; /* atomic: the next message number to hand out - 1 */
	uint64_t start_ns; /* CLOCK_MONOTONIC origin of the rate schedule */
	uint64_t deadline_ns;
	unsigned n_opening;   /* atomic: connections between connect and greeting */
	pthread_mutex_t lock; /* guards n_done; cond signals a worker's end */
	pthread_cond_t cond;
	unsigned n_done;
};

/* gen.c: claim the next message number (1-based); 0 when all are handed out. */
uint64_t gen_run_claim(struct gen_run *run);
/* gen.c: a worker has finished (its counters are final). */
void gen_run_worker_done(struct gen_run *run);
/* CLOCK_MONOTONIC in ns (the clock IORING_TIMEOUT_ABS uses). */
uint64_t gen_now_ns(void);

/* ---- Sessions and workers ---- */

enum gen_op_kind {
	GEN_OP_CONNECT,
	GEN_OP_SEND,
	GEN_OP_RECV,
	GEN_OP_PACE,
	GEN_OP_DEADLINE,
	GEN_OP_TICK,
	GEN_OP_IGNORE
};

/* A caller-owned operation: io_uring's user_data points at one of these. */
struct gen_op {
	enum gen_op_kind kind;
	struct gen_session *session; /* NULL for the worker's own operations */
};

enum gen_state {
	GEN_S_IDLE,	 /* not connected (or held back by GEN_MAX_OPENING) */
	GEN_S_CONNECT,	 /* connect in flight */
	GEN_S_GREETING,	 /* waiting for 220 */
	GEN_S_EHLO,	 /* waiting for the EHLO reply */
	GEN_S_STARTTLS,	 /* waiting for 220 to STARTTLS */
	GEN_S_HANDSHAKE, /* TLS handshake */
	GEN_S_EHLO_TLS,	 /* waiting for the EHLO reply inside TLS */
	GEN_S_PACE,	 /* waiting for the message's slot in the --rate schedule */
	GEN_S_ENVELOPE,	 /* waiting for MAIL / RCPT / DATA replies */
	GEN_S_BODY,	 /* final dot written, waiting for the reply */
	GEN_S_ABORT_DOT, /* 354 without a recipient: a lone dot written */
	GEN_S_RSET,	 /* waiting for the RSET reply */
	GEN_S_QUIT,	 /* waiting for 221 */
	GEN_S_CLOSING,	 /* socket shut down; waiting for the ring to let go */
	GEN_S_DONE,	 /* no more work */
};

struct gen_session {
	struct gen_worker *worker;
	unsigned id;
	enum gen_state state;
	int fd;
	unsigned conn_gen;   /* counts connections: tells a reply's one from the next */
	unsigned n_inflight; /* ring operations pointing at this session */
	bool send_busy;
	bool recv_armed;
	bool reconnect;	  /* after CLOSING: connect again (else DONE) */
	bool opening;	  /* holds one of run->n_opening (connect .. greeting) */
	uint64_t wait_ns; /* since when we wait for the server (0: we do not) */
	struct gen_op connect_op, send_op, recv_op, pace_op;
	struct __kernel_timespec pace_ts;

	/* Wire: `out` collects plaintext while `tx` is being sent. */
	struct pt_buf out, tx, rx;
	struct tls_conn *tls;
	bool tls_on;
	char *cipher; /* STARTTLS: ciphertext receive buffer */

	/* Server capabilities from the last EHLO. */
	bool ext_pipelining, ext_starttls;

	/* The message this session holds (0 = none) and its transaction. */
	uint64_t msg;
	unsigned msg_retries;
	bool msg_attempted;
	size_t msg_size;
	unsigned reply_idx; /* 0 MAIL, 1..K RCPT, K+1 DATA */
	unsigned rcpts_ok;
	bool mail_ok, any_4xx, any_5xx;
	uint64_t dot_ns;
	uint64_t n_on_conn; /* transactions finished on this connection */
};

struct gen_worker {
	struct gen_run *run;
	unsigned id;
	struct io_uring *ring;
	struct tls_ctx *tls_ctx;
	struct gen_session *sessions;
	unsigned n_sessions;
	unsigned n_live; /* sessions not DONE */
	bool stop;	 /* deadline reached, or an error that ends the worker */
	bool failed;	 /* could not start, or a socket could not be made */
	struct gen_op deadline_op;
	struct __kernel_timespec deadline_ts;
	struct gen_op tick_op; /* reply timeouts and held-back connects */
	struct __kernel_timespec tick_ts;
	unsigned n_held; /* sessions waiting for a GEN_MAX_OPENING slot */
	struct gen_stats stats;
	pthread_t thread;
};

/* gen_worker.c: run one worker to the end (thread entry; arg is the worker). */
void *gen_worker_main(void *arg);
/* Queue s->out (plaintext) for sending: through TLS when it is on. */
void gen_worker_flush(struct gen_session *s);
/* Shut the connection down; when the ring lets go, connect again if
 * reconnect, else the session is DONE. */
void gen_worker_close(struct gen_session *s, bool reconnect);
/* Start the TLS handshake after STARTTLS's 220.  PT_OK or PT_ERROR. */
int gen_worker_start_tls(struct gen_session *s);
/* Wait on the ring until the absolute monotonic time at_ns (GEN_OP_PACE). */
void gen_worker_pace(struct gen_session *s, uint64_t at_ns);
/* The greeting came (or the connection ended): free its GEN_MAX_OPENING
 * slot for a held-back connect. */
void gen_worker_opened(struct gen_session *s);

/* gen_session.c: the dialogue. */
/* The connection is up: wait for the greeting. */
void gen_session_connected(struct gen_session *s);
/* Parse the replies in s->rx and act on them; consumes what it parsed. */
void gen_session_input(struct gen_session *s);
/* The TLS handshake finished: EHLO again. */
void gen_session_tls_ready(struct gen_session *s);
/* The connection failed (refused, reset, EOF, TLS error, garbage). */
void gen_session_conn_error(struct gen_session *s, const char *why);
/* The rate slot came: start the transaction. */
void gen_session_paced(struct gen_session *s);
/* Claim a message for a new connection; false when there is none left. */
bool gen_session_claim(struct gen_session *s);

#endif
