/*
 * shard_int.h -- private to shard/: the shard, its connections and the
 * operations that travel through the ring.  Never included outside shard/.
 *
 * Completions: every SQE's user_data is a pointer to a struct shard_op
 * embedded in the object that owns the operation (a listener, a
 * connection, the spool committer, the log writer, the mailbox), so one
 * switch in shard_handle_cqe() dispatches on op->kind and recovers the owner
 * with pt_container_of.  An object with operations in flight is never freed:
 * connections count them in n_inflight and are released when it drops to 0.
 */
#ifndef PT_SHARD_INT_H
#define PT_SHARD_INT_H

#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>

#include "core/buf.h"
#include "core/id.h"
#include "core/spsc.h"
#include "core/timer.h"
#include "net/smtp_server.h"
#include "net/tls.h"
#include "policy/policy.h"
#include "shard/shard.h"
#include "spool/spool.h"

enum shard_op_kind {
	SHARD_OP_ACCEPT = 1,
	SHARD_OP_RECV,
	SHARD_OP_SEND,
	SHARD_OP_SPOOL_WRITE,
	SHARD_OP_SPOOL_SYNC,
	SHARD_OP_LOG_WRITE,
	SHARD_OP_MAILBOX,
	SHARD_OP_MSG_RING,
	SHARD_OP_SIGNAL,
	SHARD_OP_IGNORE, /* completions nobody waits for */
};

struct shard_op {
	uint8_t kind;
};

struct shard;

struct shard_listener {
	struct shard *shard;
	const struct policy_listener *config; /* in the shard's policy config */
	struct smtp_server_config smtp;
	struct tls_ctx *tls;
	int fd;
	bool accepting; /* multishot accept armed */
	unsigned n_conns;
	unsigned max_conns; /* this shard's share of max_connections */
	struct shard_op accept_op;
};

enum conn_tls_state { CONN_TLS_NONE, CONN_TLS_HANDSHAKE, CONN_TLS_ON };

struct shard_conn {
	struct shard *shard;
	struct shard_listener *listener;
	struct shard_conn *prev, *next; /* the shard's list of open connections */
	int fd;
	unsigned n_inflight;	/* ops in the ring that point at us */
	bool recv_armed;
	bool send_busy;
	bool closing;		/* no more input processing; close when drained */
	bool released;		/* back on the free list */
	bool close_after_send;	/* close once output is flushed */
	bool commit_pending;	/* a message is in the spool's hands */
	bool message_started;	/* SMTP_EV_MESSAGE already acted on */
	enum conn_tls_state tls_state;
	struct tls_conn *tls;
	struct smtp_session *session;
	struct pt_buf out;	/* bytes for the wire, not yet handed to a send */
	struct pt_buf tx;	/* bytes of the send in flight */
	struct pt_buf plain;	/* scratch: decrypted input */
	char peer_ip[64];
	struct pt_timer timer;
	struct shard_op recv_op, send_op;
};

/* Messages between shards, over the SPSC rings (producer allocates,
 * consumer frees). */
enum shard_msg_kind {
	SHARD_MSG_STOP = 1, /* drain and exit */
};

struct shard_msg {
	enum shard_msg_kind kind;
	unsigned from;
};

enum shard_state { SHARD_STARTING, SHARD_RUNNING, SHARD_DRAINING, SHARD_DONE };

struct shard {
	struct shard_group *group;
	unsigned id;
	pthread_t thread;
	enum shard_state state;
	int exit_status; /* 0, or 1 after a start-up or fatal error */
	struct io_uring ring;
	unsigned ring_flags;

	/* Receive buffers: one registered buffer ring per shard. */
	struct io_uring_buf_ring *buf_ring;
	char *buf_base;
	unsigned n_bufs, buf_size;

	struct pt_wheel wheel;
	struct pt_idgen idgen;
	struct policy *policy;
	struct spool *spool;
	char spool_err[256];

	struct shard_listener *listeners;
	size_t n_listeners;
	struct shard_conn *conns;	 /* open connections */
	struct shard_conn *free_conns; /* released ones, reused (linked by next) */
	unsigned n_conns;

	/* Spool group commit in flight. */
	struct shard_op spool_write_op, spool_sync_op;
	int spool_write_res, spool_sync_res;
	unsigned spool_ops_pending;

	/* Reception log. */
	int log_fd;
	struct pt_buf log_pending, log_tx;
	struct pt_buf log_scratch; /* one record's queue name */
	bool log_busy;
	struct shard_op log_op;

	/* Mailboxes: in[i] carries i -> us, out[i] us -> i (in the group). */
	struct shard_op mailbox_op;	 /* MSG_RING wake-ups land here */
	struct shard_op msg_ring_op;	 /* our MSG_RING sends complete here */
	bool *wake;			 /* wake[i]: we pushed to i this iteration */
	uint64_t drain_deadline_ms;

	/* Shard 0 only: signals. */
	int signal_fd;
	struct shard_op signal_op;
	uint8_t signal_buf[128];

	/* Free-space floor of the spool (shard_commit.c), checked every second. */
	bool spool_full;
	uint64_t spool_floor_bytes;
	struct pt_timer disk_timer;

	/* Counters (relaxed atomics later, for /metrics). */
	uint64_t n_accepted_msgs, n_rejected_msgs, n_connections;
};

struct shard_group {
	struct shard_group_config cfg;
	unsigned n;
	struct shard *shards;
	struct pt_spsc **rings; /* rings[from * n + to] */
	pthread_mutex_t start_lock; /* start-up only, never on the hot path */
	pthread_cond_t start_cond;
	unsigned n_started, n_failed, n_launched, n_joinable;
	bool launch_done;
};

/* shard.c */
struct io_uring_sqe *shard_sqe(struct shard *s);
void shard_prep(struct io_uring_sqe *sqe, struct shard_op *op);

/* shard_conn.c */
int shard_listeners_open(struct shard *s);
void shard_listeners_close(struct shard *s);
void shard_accept_arm(struct shard *s, struct shard_listener *l);
void shard_handle_accept(struct shard_listener *l, struct io_uring_cqe *cqe);
void shard_handle_recv(struct shard_conn *c, struct io_uring_cqe *cqe);
void shard_handle_send(struct shard_conn *c, struct io_uring_cqe *cqe);
void shard_conns_shutdown(struct shard *s);
void shard_conns_abort(struct shard *s);
void shard_conn_commit_done(struct shard_conn *c, int status);

/* shard_commit.c: spool group commit and the reception log. */
int shard_commit_message(struct shard *s, struct shard_conn *c, struct pt_message *m);
void shard_commit_kick(struct shard *s);
void shard_handle_spool(struct shard *s, struct shard_op *op, struct io_uring_cqe *cqe);
int shard_log_open(struct shard *s);
void shard_log_reception(struct shard *s, const struct pt_message *m, const struct shard_conn *c);
void shard_log_kick(struct shard *s);
void shard_handle_log(struct shard *s, struct io_uring_cqe *cqe);
void shard_log_close(struct shard *s);
void shard_disk_watch_start(struct shard *s);

/* shard_mailbox.c */
bool shard_mailbox_send(struct shard *s, unsigned to, struct shard_msg *m);
void shard_mailbox_drain(struct shard *s);
void shard_mailbox_wake(struct shard *s);
void shard_begin_drain(struct shard *s);

#endif
