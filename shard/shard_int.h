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

#include <jansson.h>
#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>

#include "core/buf.h"
#include "core/cidr.h"
#include "core/id.h"
#include "core/report.h"
#include "core/spsc.h"
#include "core/strmap.h"
#include "core/timer.h"
#include "net/dns.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "net/smtp_client.h"
#include "net/smtp_server.h"
#include "net/tls.h"
#include "policy/policy.h"
#include "shard/shard.h"
#include "shard/shard_metrics.h"
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
	SHARD_OP_DNS_POLL,
	SHARD_OP_OUT_CONNECT,
	SHARD_OP_OUT_RECV,
	SHARD_OP_OUT_SEND,
	SHARD_OP_BODY_READ,
	SHARD_OP_SEG_UNLINK, /* deleting a dead spool segment (shard_home.c) */
	SHARD_OP_SEG_DONE,   /* closing it, syncing the directory */
	SHARD_OP_HTTP_ACCEPT, /* shard_http.c */
	SHARD_OP_HTTP_RECV,
	SHARD_OP_HTTP_SEND,
};

struct shard_op {
	uint8_t kind;
};

struct shard;

/* ---- streams: listener and connection plumbing shared by SMTP and HTTP (shard_stream.c) ---- */

struct shard_acceptor {
	struct shard *shard;
	const char *listen; /* the address, for log lines */
	int fd;
	bool accepting; /* multishot accept armed */
	struct shard_op accept_op;
	void (*open)(struct shard_acceptor *a, int fd); /* a connection accepted */
};

enum conn_tls_state { CONN_TLS_NONE, CONN_TLS_HANDSHAKE, CONN_TLS_ON };

struct shard_stream;

/* The protocol's glue (one static table per protocol). */
struct shard_stream_ops {
	const char *tag;	 /* log line prefix: "" or "http " */
	const char *output_name; /* "out of memory for <output_name>" */
	uint8_t recv_kind, send_kind;
	bool alert_on_handshake_failure; /* send the TLS alert, else close at once */
	void (*input)(struct shard_stream *st, const char *data, size_t len); /* received */
	void (*plain)(struct shard_stream *st, const char *data, size_t len); /* decrypted */
	void (*tls_done)(struct shard_stream *st);			      /* or NULL */
	void (*closing)(struct shard_stream *st); /* closing began: stop timers, work */
	void (*maybe_release)(struct shard_stream *st);
};

struct shard_stream {
	struct shard *shard;
	const struct shard_stream_ops *ops;
	const char *peer_ip; /* the connection's, for log lines */
	int fd;
	unsigned n_inflight; /* ops in the ring that point at us */
	bool recv_armed;
	bool send_busy;
	bool closing;	       /* no more input processing; close when drained */
	bool released;	       /* back on the free list */
	bool close_after_send; /* close once output is flushed */
	enum conn_tls_state tls_state;
	struct tls_conn *tls;
	struct pt_buf out;   /* bytes for the wire, not yet handed to a send */
	struct pt_buf tx;    /* bytes of the send in flight */
	struct pt_buf plain; /* scratch: decrypted input */
	struct shard_op recv_op, send_op;
};

/* Arm the multishot accept on a->fd (set up shard, listen, fd, accept_op, open first). */
void shard_acceptor_arm(struct shard_acceptor *a);
/* Cancel the accept; its last completion closes a->fd.  No-op when not armed. */
void shard_acceptor_stop(struct shard_acceptor *a);
/* An accept completion: a->open(fd) while the shard runs, re-arm or close the socket. */
void shard_acceptor_handle(struct shard_acceptor *a, struct io_uring_cqe *cqe);
/* Set up st after the connection object was zeroed; `old` is its previous
 * content, whose buffers' memory is kept.  peer_ip (not copied) is for logs. */
void shard_stream_init(struct shard_stream *st, struct shard *s, const struct shard_stream_ops *ops,
		       const struct shard_stream *old, const char *peer_ip);
/* A connection just accepted on fd: TCP_NODELAY, the peer's address into
 * peer_sa (left as is when unknown) and peer_ip ("unknown"). */
void shard_stream_accepted(struct shard_stream *st, int fd, struct sockaddr_storage *peer_sa,
			   char peer_ip[64]);
/* Free the buffers (teardown of a released or never-used object). */
void shard_stream_free_bufs(struct shard_stream *st);
/* Arm the multishot receive on st->fd (buffer group 0). */
void shard_stream_recv_arm(struct shard_stream *st);
/* Begin closing (once; the reason is logged at debug): ops->closing, shutdown(2), maybe release. */
void shard_stream_close(struct shard_stream *st, const char *reason);
/* Send st->out if no send is in flight; with nothing left and close_after_send, close. */
void shard_stream_flush(struct shard_stream *st);
/* Move the session's output `so` (emptied) to st->out, through TLS when it is on,
 * and any TLS bytes pending.  A TLS write failure closes the stream. */
void shard_stream_write(struct shard_stream *st, struct pt_buf *so);
/* Received ciphertext: handshake, then decrypted bytes to ops->plain (called
 * with len 0 too); close_notify or an alert closes after what is queued. */
void shard_stream_tls_input(struct shard_stream *st, const char *data, size_t len);
/* Completions of st->recv_op and st->send_op (from shard_handle_cqe). */
void shard_stream_handle_recv(struct shard_stream *st, struct io_uring_cqe *cqe);
void shard_stream_handle_send(struct shard_stream *st, struct io_uring_cqe *cqe);

struct shard_listener {
	struct shard_acceptor acc;
	const struct policy_listener *config; /* in the shard's policy config */
	struct smtp_server_config smtp;
	struct tls_ctx *tls;
	unsigned n_conns;
	unsigned max_conns; /* this shard's share of max_connections */
};

/* A report sent to a listener domain (shard_relay.c), kept from the end
 * of DATA until its records are logged. */
struct shard_report {
	bool is_arf; /* else a DSN */
	struct pt_dsn dsn;
	struct pt_arf arf;
	char **rcpts; /* the envelope recipients as received (before any were dropped) */
	size_t n_rcpts;
};

struct shard_conn {
	struct shard *shard;
	struct shard_listener *listener;
	struct shard_conn *prev, *next; /* the shard's list of open connections */
	struct shard_stream st;		/* socket, send/receive, TLS */
	bool commit_pending;	/* a message is in the spool's hands */
	bool message_started;	/* SMTP_EV_MESSAGE already acted on */
	struct smtp_session *session;
	char peer_ip[64];
	struct sockaddr_storage peer_sa;
	char local_addr[72];	/* "ip:port" we were reached at, "" until asked for */
	struct shard_report *report; /* logged when the message is durable */
	struct pt_timer timer;
	uint64_t trace_session; /* per-shard number, for trace-smtp-server */
};

/* ---- HTTP (shard_http.c, shard_inject.c) ---- */

struct shard_http_listener {
	struct shard_acceptor acc;
	const struct policy_http_listener *config; /* in the shard's policy config */
	struct http_server_config http;
	struct tls_ctx *tls; /* use_tls: TLS from the first byte */
	unsigned n_conns;
};

struct shard_inject;

struct shard_http_conn {
	struct shard *shard;
	struct shard_http_listener *listener;
	struct shard_http_conn *prev, *next; /* the shard's list of HTTP connections */
	struct shard_stream st;		     /* socket, send/receive, TLS */
	bool request_started; /* the pending request went to a handler, not answered yet */
	bool dispatching;     /* inside the handler call (answers go on from there) */
	bool trusted;	      /* the peer is in trusted_hosts */
	struct http_session *session;
	char peer_ip[64];
	struct sockaddr_storage peer_sa;
	char auth[256]; /* KumoMTA's http_auth: the trusted peer's address, or the user */
	struct shard_inject *inject; /* an injection in progress (keeps us alive) */
	bool awaiting;		     /* another shard owes the answer (keeps us alive) */
	uint64_t trace_id;	     /* a trace-smtp-server stream (shard_trace.c), or 0 */
	uint64_t trace_dropped;	     /* events dropped since the last one written */
	struct pt_timer timer;
};

/* Route flag: trusted hosts only, Basic credentials are not enough
 * (KumoMTA's TrustedIpRequired: metrics, admin). */
#define SHARD_HTTP_TRUSTED 0x01

/* ---- Delivery (shard_home.c, shard_route.c, shard_ready.c, shard_out.c) ---- */

/* A message this shard spooled that still has recipients to deliver (the
 * home side of a message; units refer to it by slot). */
struct home_msg {
	char id[PT_ID_LEN + 1];
	struct spool_loc loc;
	uint32_t n_rcpts;
	uint32_t n_left; /* recipients not done */
	uint32_t next_free;
	bool in_use;
	bool tombstoned; /* tombstone appended, not yet durable */
	bool moving;	 /* compaction copy read or appended, not yet durable */
	/* Per-recipient state, made on the first outcome (compaction copies it
	 * forward with the message); NULL while every recipient is untouched. */
	struct spool_rcpt_state *states;
	struct pt_message *copy; /* the compaction copy being appended */
};

enum unit_state {
	UNIT_SCHEDULED = 1, /* waiting for its due time (timer armed) */
	UNIT_ROUTING,	    /* waiting for DNS */
	UNIT_READY,	    /* in a ready queue */
	UNIT_INFLIGHT,	    /* in a connection's transaction */
};

/*
 * A delivery unit: one recipient of one message.  Units are heap objects
 * owned by exactly one shard at a time; routing moves the pointer itself
 * over the SPSC ring to the owner of its site (ownership moves with it).
 */
struct shard_unit {
	struct shard_unit *prev, *next; /* ready queue list */
	struct shard_unit *all_prev, *all_next; /* every unit the shard owns */
	struct pt_timer timer;		/* due timer (SCHEDULED) */
	enum unit_state state;
	struct shard *at;  /* the shard that owns it now */
	unsigned home;	   /* shard whose spool holds the message */
	uint32_t slot;	   /* home_msg slot on that shard */
	uint32_t rcpt;	   /* recipient index */
	uint32_t num_attempts;
	char id[PT_ID_LEN + 1];
	uint64_t created_us;
	uint64_t due_us;
	uint64_t size;
	char *sender;
	char *recipient;
	const char *domain; /* inside recipient */
	char *queue;	    /* "campaign:tenant@domain" */
	char *tenant, *campaign, *routing_domain; /* NULL when unset */
	char *site;	    /* set by routing */
	char *source;	    /* egress source, chosen by routing (shard_source.c) */
	char *pool;	    /* its egress pool; NULL: none configured */
	bool log_record;    /* a log hook's message (shard_loghook.c) */
	struct shard_log_headers *log_headers; /* shard_log_capture, shared; NULL: {} */
	struct shard_sched *sched; /* this shard's scheduled queue for `queue` */
	struct shard_ready *ready; /* READY / INFLIGHT */
};

/* GCRA spacing: one event per interval_us, no burst. */
struct shard_rate {
	uint64_t interval_us; /* 0: unlimited */
	uint64_t tat_us;      /* theoretical arrival time of the next event */
};

/* A scheduled queue on this shard: its config from get_queue_config. */
struct shard_sched {
	char *name;
	struct policy_queue_config cfg;
	char *mx_site; /* site name of cfg.mx_list (smart host), or NULL */
	struct shard_rate rate; /* cfg.max_message_rate: units released to ready queues */
	uint64_t cfg_expires_ms;
	uint64_t idle_since_ms;
	size_t n_units;
	size_t n_active; /* of them, READY or INFLIGHT (shard_unit_set_state) */
	/* Source choice (shard_source.c): smooth weighted round robin scores,
	 * one per entry of the pool of generation wrr_generation; the last
	 * message's pick, reused for its other recipients. */
	int64_t *wrr;
	size_t n_wrr;
	uint64_t wrr_generation;
	bool have_last;
	char last_id[PT_ID_LEN + 1];
	size_t last_pick;
};

/* Set u's state, keeping u->sched->n_active (units READY or INFLIGHT) in
 * step: scheduled_count is a queue's units less its active ones.  Every
 * change of a unit's state goes through here. */
static inline void shard_unit_set_state(struct shard_unit *u, enum unit_state st)
{
	bool was = u->state == UNIT_READY || u->state == UNIT_INFLIGHT;
	bool now = st == UNIT_READY || st == UNIT_INFLIGHT;

	if (u->sched && was != now) {
		if (now)
			u->sched->n_active++;
		else
			u->sched->n_active--;
	}
	u->state = st;
}

/* A ready queue: per (egress source, site), with the site's shaping. */
struct shard_ready {
	struct shard *shard;
	char *key;	  /* "source->site" */
	char *site;
	char *source;	  /* the egress source's name */
	struct policy_egress_source src; /* its config (refreshed with cfg) */
	struct dns_addr bind;		 /* src.source_address, parsed */
	bool has_bind;
	char *src_error; /* the source could not be resolved: why (units fail) */
	char *domain;	  /* a domain routed here: its MX (or mx_list) gives the hosts */
	char *routing_domain;
	char **mx_list;	  /* smart host list copied from the queue config, or NULL */
	size_t n_mx_list;
	struct policy_egress_path cfg;
	uint64_t cfg_expires_ms;
	struct shard_unit *head, *tail; /* READY units, oldest first */
	size_t n_ready;
	const struct shard_out_proto *proto; /* how its connections deliver: SMTP, HTTP, AMQP */
	struct policy_queue_amqp *amqp; /* AMQP: its connections' login (the first unit's queue) */
	struct shard_out *conns; /* open connections */
	unsigned n_conns;
	unsigned n_connecting; /* not READY yet */
	struct shard_rate msg_rate, conn_rate;
	struct pt_timer kick_timer; /* a rate said "later" */
	uint64_t idle_since_ms;
	unsigned n_consecutive_failures;
	struct shard_auto *autom; /* shaping automation state (shard_automation.c), or NULL */
};

struct out_addr {
	char name[256];
	struct dns_addr addr;
	uint16_t port;
};

enum out_state { OUT_PLANNING = 1, OUT_CONNECTING, OUT_SESSION, OUT_CLOSING };

struct shard_out;

/*
 * A delivery protocol of outbound connections (one static table each:
 * shard_out_smtp, shard_out_http, shard_out_amqp).  shard_out.c runs the connection (plan,
 * connect, bind, send, receive, timer, batch, bodies, close); the protocol
 * runs the session on o->session and reports back through the
 * shard_out_* helpers below.  See "Delivery protocols" in
 * docs/ARCHITECTURE.md.
 */
struct shard_out_proto {
	const char *name;   /* the log's delivery_protocol: "ESMTP", "HTTP", "AMQP" */
	bool body_per_unit; /* a body for every unit of a batch (else batch[0]'s) */
	/* Connected: make o->session.  PT_OK or PT_NOMEM. */
	int (*open)(struct shard_out *o);
	void (*free)(struct shard_out *o); /* o->session, when it is not NULL */
	/* Bytes from the peer (ciphertext when o->tls_state is not NONE). */
	void (*input)(struct shard_out *o, const char *data, size_t len);
	void (*eof)(struct shard_out *o);
	void (*timeout)(struct shard_out *o);
	uint64_t (*timeout_ms)(const struct shard_out *o); /* 0: nothing awaited */
	struct pt_buf *(*output)(struct shard_out *o);	   /* plaintext to send */
	/* Act on the session's events, then shard_out_pump. */
	void (*events)(struct shard_out *o);
	/* A batch: at most batch_max units that go with its first one
	 * (same_batch: shard_ready_same_message, shard_ready_same_queue). */
	size_t (*batch_max)(const struct shard_ready *rq);
	bool (*same_batch)(const struct shard_unit *first, const struct shard_unit *u);
	/* o->batch has its bodies (o->bodies): start the transaction. */
	void (*send)(struct shard_out *o);
	void (*quit)(struct shard_out *o); /* READY and idle: end the session */
};

/* An outbound connection of a ready queue (SMTP or HTTP: o->proto). */
struct shard_out {
	struct shard *shard;
	struct shard_ready *rq;
	const struct shard_out_proto *proto;
	struct shard_out *prev, *next; /* rq->conns */
	enum out_state state;
	int fd;
	unsigned n_inflight;
	bool recv_armed, send_busy, closing, released;
	bool connecting;      /* counted in rq->n_connecting (not READY yet) */
	bool failed_before_ready; /* every address failed: the queue's units wait */
	bool plan_wait;	      /* a DNS lookup for the plan is out */
	uint16_t plan_port;
	bool ready;	      /* the session is READY and has no transaction */
	bool body_wait;	      /* a body request is out */
	bool waiting_rate;    /* waiting for a message token */
	enum conn_tls_state tls_state;
	struct tls_conn *tls;
	void *session; /* the protocol's: struct smtp_client, out_http, out_amqp */
	struct pt_buf out, tx, plain;
	struct out_addr *addrs;
	size_t n_addrs, next_addr, plan_idx;
	struct out_addr *cur;
	struct shard_unit **batch;
	size_t n_batch, cap_batch;
	const char **rcpts;
	struct pt_message **bodies; /* cap_batch of them; n_bodies fetched */
	size_t n_bodies;
	struct iovec iov[4];
	struct smtp_client_tx txd;
	unsigned n_messages; /* transactions started on this connection */
	struct smtp_client_reply fail; /* why the last address failed */
	bool have_fail;
	struct pt_timer timer;
	struct __kernel_timespec connect_ts;
	struct sockaddr_storage addr_ss; /* the CONNECT's address (kept until it completes) */
	char local_addr[INET6_ADDRSTRLEN + 8]; /* "ip:port" of our end, once connected */
	struct shard_op connect_op, recv_op, send_op;
	uint64_t trace_session; /* per-shard number, for trace-smtp-client */
};

/* A body read in flight on the home shard. */
struct shard_body_read {
	struct shard_op op;
	unsigned requester;
	void *token;	/* the requester's struct shard_out (or HTTP connection, inspect) */
	bool inspect;	/* for inspect-message: describe the message to token */
	bool want_body; /* inspect: with the body */
	char id[PT_ID_LEN + 1];
	uint32_t slot;
	uint32_t mask; /* the segment's CRC mask (spool_segment_mask) */
	char *buf;
	size_t len;
};

struct shard_dns_watch {
	struct shard_op op;
	struct shard_dns_watch *next;
	int fd;
	bool want_read, want_write;
	bool armed;  /* a poll is in the ring */
	bool in_poll; /* its completion is being processed */
	unsigned armed_mask;
	bool dead;   /* c-ares dropped the fd: free once the poll is gone */
};

/* Messages between shards, over the SPSC rings (producer allocates,
 * consumer frees). */
enum shard_msg_kind {
	SHARD_MSG_STOP = 1,    /* drain and exit */
	SHARD_MSG_UNIT,	       /* take ownership of a routed unit */
	SHARD_MSG_OUTCOME,     /* home: a recipient is done or deferred */
	SHARD_MSG_BODY_REQ,    /* home: read a message body for a connection */
	SHARD_MSG_BODY,	       /* the body (or NULL after a failed read) */
	SHARD_MSG_RELOAD,      /* reload the policy (shard 0 has loaded it already) */
	SHARD_MSG_ADMIN,       /* apply an admin entry (shard_admin.c) */
	SHARD_MSG_INSPECT,     /* home: describe message `text` (an id) to connection token */
	SHARD_MSG_ANSWER,      /* the answer to an HTTP request on the receiver (status, text) */
	SHARD_MSG_TRACE_SUB,   /* add trace subscriber `trace` (shard_trace.c) */
	SHARD_MSG_TRACE_UNSUB, /* remove subscriber trace_id */
	SHARD_MSG_TRACE_EVENT, /* event line `text` for subscriber trace_id (+ n_dropped) */
};

/* A trace-smtp-server or trace-smtp-client subscriber; every shard has a
 * copy (a plain value: the filters are arrays, nothing is shared). */
struct shard_trace_sub {
	uint64_t id;		      /* unique in the process: shard << 48 | sequence */
	unsigned shard;		      /* where its HTTP connection is */
	struct shard_http_conn *conn; /* valid on that shard only */
	bool client;		      /* trace-smtp-client: outbound sessions */
	bool has_filter;
	struct pt_cidr filter; /* server: ?source=CIDR; client: ?mx_addr=CIDR */
	/* trace-smtp-client's other filters ("": any). */
	char domain[256], routing_domain[256], ready_queue[512], egress_source[128],
	    mx_host[256];
	uint64_t n_dropped; /* here: events not sent to it (its ring was full) */
};

/* An admin API rule over units or ready queues (shard_admin.c); every
 * shard has a copy.  RESUME removes the entry with its id; REBIND is a
 * sweep only, never kept. */
enum shard_admin_kind {
	SHARD_ADMIN_SUSPEND = 1, /* scheduled queues: units wait */
	SHARD_ADMIN_BOUNCE,
	SHARD_ADMIN_RESUME,
	SHARD_ADMIN_SUSPEND_READY, /* one ready queue ("source->site"): no new transaction */
	SHARD_ADMIN_REBIND,
};
struct shard_admin_entry {
	enum shard_admin_kind kind;
	char id[PT_ID_LEN + 1];
	char *domain, *campaign, *tenant, *routing_domain; /* NULL: any */
	char **queues; /* BOUNCE: exact scheduled queue names (queue_names); wins over the above */
	size_t n_queues;
	char *name; /* SUSPEND_READY: the ready queue's name */
	char *reason;
	/* REBIND: the meta `data` sets (NULL: unchanged, "": unset), always_flush. */
	char *set_queue, *set_campaign, *set_tenant, *set_routing_domain;
	bool always_flush, suppress_logging;
	uint64_t created_us, until_us; /* wall clock; until 0: a bounce's sweep only */
};

struct shard_msg {
	enum shard_msg_kind kind;
	unsigned from;
	struct shard_msg *next;	  /* the sender's overflow list */
	struct shard_unit *unit;  /* UNIT */
	uint32_t slot, rcpt;	  /* OUTCOME, BODY_REQ */
	bool done;		  /* OUTCOME: never again (else deferred) */
	uint32_t num_attempts;	  /* OUTCOME */
	uint64_t due_us;	  /* OUTCOME */
	void *token;		  /* BODY_REQ, BODY: the requesting connection */
	struct pt_message *body;  /* BODY: owned by the receiver */
	struct shard_admin_entry *admin; /* ADMIN: owned by the receiver */
	char *text; /* INSPECT: the id; ANSWER: the JSON body (owned by the receiver) */
	int status; /* ANSWER: HTTP status; INSPECT: want_body */
	struct shard_trace_sub *trace; /* TRACE_SUB: owned by the receiver */
	uint64_t trace_id, n_dropped;  /* TRACE_UNSUB, TRACE_EVENT */
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
	struct shard_http_listener *http_listeners;
	size_t n_http_listeners;
	struct shard_http_conn *http_conns;
	struct shard_http_conn *http_free; /* released, reused (linked by next) */
	unsigned n_http_conns;

	/* Spool group commit in flight. */
	struct shard_op spool_write_op, spool_sync_op;
	int spool_write_res, spool_sync_res;
	unsigned spool_ops_pending;
	unsigned n_commit_urgent;     /* appends a client waits for, since the last batch */
	bool commit_lazy_due;	      /* the lazy records have waited long enough */
	struct pt_timer commit_lazy_timer;

	/* The JSON log (shard_log.c); NULL: neither local logs nor log hooks. */
	struct shard_log *log;
	/* Log hooks (shard_loghook.c); NULL: none configured. */
	struct shard_loghook *loghook;
	struct shard_op log_op;

	/* Mailboxes: in[i] carries i -> us, out[i] us -> i (in the group). */
	struct shard_op mailbox_op;	 /* MSG_RING wake-ups land here */
	struct shard_op msg_ring_op;	 /* our MSG_RING sends complete here */
	bool *wake;			 /* wake[i]: we pushed to i this iteration */
	struct shard_msg **overflow_head, **overflow_tail; /* per destination */
	uint64_t drain_deadline_ms;

	/* Shard 0 only: signals. */
	int signal_fd;
	struct shard_op signal_op;
	_Alignas(8) uint8_t signal_buf[128];

	/* Free-space floor of the spool (shard_commit.c), checked every second. */
	bool spool_full;
	uint64_t spool_floor_bytes;
	struct pt_timer disk_timer;

	/* Metrics (shard_metrics.c): this shard's block, the rows of its queue
	 * tables (scratch, kept between ticks), the spool batch's start. */
	struct pt_metrics_shard *metrics;
	struct pt_metrics_row *metric_rows;
	size_t metric_rows_cap;
	uint64_t spool_batch_start_ns;

	/* Delivery. */
	uint64_t compact_seq, compact_since_ms; /* oldest segment and since when */
	struct home_msg *home;	/* slots; grown by doubling */
	uint32_t n_home, cap_home, home_free; /* home_free: UINT32_MAX when none */
	uint32_t n_home_live;
	struct dns_resolver *dns;
	struct shard_dns_watch *dns_watches;
	struct pt_timer dns_timer;
	struct pt_strmap scheds;  /* queue name -> struct shard_sched */
	struct pt_strmap readies; /* key -> struct shard_ready */
	struct pt_strmap sources; /* name -> struct shard_source (shard_source.c) */
	struct pt_strmap pools;	  /* name -> struct shard_pool */
	uint64_t pool_generation; /* last generation given to a pool's entries */
	unsigned n_out;		  /* outbound connections */
	struct shard_out *dead_outs; /* released, freed after the current completion */
	uint64_t n_units;	  /* units owned by this shard */
	struct shard_unit *units; /* all of them (all_next), for teardown */
	struct tls_ctx *tls_client_verify, *tls_client_insecure;
	struct pt_timer housekeeping_timer; /* once a second: spool collect, idle queues */
	struct shard_janitor *janitor;	    /* dead segments being deleted, or NULL */
	struct shard_admin_entry *admin;    /* suspensions and bounces in force */
	size_t n_admin;
	struct shard_trace_sub *trace_subs; /* trace-smtp-server subscribers (shard_trace.c) */
	size_t n_trace_subs;
	uint64_t trace_seq; /* subscriber and SMTP session numbers given here */
	char hostname[256];
};

struct shard_group {
	struct shard_group_config cfg;
	unsigned n;
	struct shard *shards;
	struct pt_spsc **rings; /* rings[from * n + to] */
	struct pt_metrics *metrics; /* every shard's block (shard_metrics.c) */
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
void shard_conns_shutdown(struct shard *s);
void shard_conns_abort(struct shard *s);
void shard_conn_commit_done(struct shard_conn *c, int status, const struct spool_loc *loc);

/* shard_relay.c: listener domains (get_listener_domain) and reports. */
/* The RCPT hook of every session (net/smtp_server.h); ctx is the connection. */
void shard_relay_rcpt(void *ctx, const char *sender, const char *rcpt, bool relay_allowed,
		      struct smtp_rcpt_verdict *out);
/*
 * At the end of DATA, after the policy: what each recipient's listener
 * domain says about m (a report is parsed, logged, relayed or dropped).
 * PT_OK: spool m (recipients that are not to be relayed were removed;
 * c->report may hold a report to log once m is durable).  PT_DECLINED:
 * answered in reply, nothing to spool (a dropped report, already logged,
 * or a refusal).
 */
int shard_relay_message(struct shard_conn *c, struct pt_message *m, struct policy_reply *reply);
/* m is durable (ok) or not: log c->report's records when it is, then free it. */
void shard_relay_committed(struct shard_conn *c, const struct pt_message *m, bool ok);
void shard_report_free(struct shard_report *r);

/* shard_http.c: HTTP listeners, connections, authorization, routes. */
int shard_http_open(struct shard *s);
void shard_http_close(struct shard *s); /* teardown */
void shard_http_shutdown(struct shard *s); /* drain: stop accepting, close when idle */
void shard_http_abort(struct shard *s);	   /* drain deadline: close them all */
/*
 * Answer the request a handler was given (exactly once, now or later): the
 * status, a Content-Type (or NULL), the body (not kept).  After a late
 * answer the connection goes on with any pipelined request.  A client
 * that went away meanwhile is not answered.
 */
void shard_http_respond(struct shard_http_conn *c, int status, const char *content_type,
			const char *body, size_t len);
/* The same with extra header lines (each ending in CRLF), e.g. Allow. */
void shard_http_respond_extra(struct shard_http_conn *c, int status, const char *extra,
			      const char *content_type, const char *body, size_t len);
/* An answer with the JSON body {"error": "<text>"}. */
void shard_http_respond_error(struct shard_http_conn *c, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A handler's work that kept c alive ended: release c if it is closing. */
void shard_http_release_if_done(struct shard_http_conn *c);

/* shard_admin.c: the admin API (suspend, bounce, queue summary). */
void shard_admin_suspend_v1(struct shard_http_conn *c, const struct http_request *r);
void shard_admin_bounce_v1(struct shard_http_conn *c, const struct http_request *r);
void shard_admin_queue_summary_v1(struct shard_http_conn *c, const struct http_request *r);
/* SHARD_MSG_ADMIN arrived: apply e, free it. */
void shard_admin_handle(struct shard *s, struct shard_admin_entry *e);
/* u is due: true when an entry took it (rescheduled while suspended, or
 * bounced and freed); false: route it. */
bool shard_admin_hold(struct shard *s, struct shard_unit *u);
void shard_admin_free(struct shard *s); /* teardown */
void shard_admin_entry_free(struct shard_admin_entry *e); /* one left in a ring at exit */
void shard_admin_suspend_ready_q_v1(struct shard_http_conn *c, const struct http_request *r);
void shard_admin_rebind_v1(struct shard_http_conn *c, const struct http_request *r);
/* rq may start transactions: false, or true with *until_ms (monotonic) to look again. */
bool shard_admin_ready_held(struct shard *s, const struct shard_ready *rq, uint64_t *until_ms);

/* shard_admin_ops.c: inspect-message, set_diagnostic_log_filter, bump-config-epoch. */
void shard_admin_inspect_v1(struct shard_http_conn *c, const struct http_request *r);
void shard_admin_log_filter_v1(struct shard_http_conn *c, const struct http_request *r);
void shard_admin_bump_config_v1(struct shard_http_conn *c, const struct http_request *r);
/* SHARD_MSG_INSPECT on the home shard: find the message, read it, answer. */
void shard_admin_inspect_home(struct shard *s, unsigned requester, void *token, const char *id,
			      bool want_body);
/* The home read for inspect completed (m NULL: it failed); m is the caller's. */
void shard_admin_inspect_read(struct shard *s, const struct shard_body_read *r,
			      const struct pt_message *m);
/* Answer HTTP connection token on shard `to` (from shard s): status, JSON body (taken). */
void shard_admin_answer(struct shard *s, unsigned to, void *token, int status, char *body);
/* SHARD_MSG_ANSWER arrived (or a local answer): respond on c, free body. */
void shard_admin_answered(struct shard_http_conn *c, int status, char *body);
/* The body of a JSON admin request: an object, or NULL (answered 400). */
json_t *shard_admin_body(struct shard_http_conn *c, const struct http_request *r);

/* shard_trace.c: GET /api/admin/trace-smtp-server/v1 and
 * /api/admin/trace-smtp-client/v1, live streams of SMTP events. */
void shard_trace_v1(struct shard_http_conn *c, const struct http_request *r);
void shard_trace_client_v1(struct shard_http_conn *c, const struct http_request *r);
enum shard_trace_kind {
	SHARD_TRACE_CONNECT,
	SHARD_TRACE_COMMAND, /* a line from the SMTP client (ours, outbound) */
	SHARD_TRACE_DATA,    /* message bytes (counted, not copied) */
	SHARD_TRACE_REPLY,   /* a line from the SMTP server (ours, inbound) */
	SHARD_TRACE_TLS,
	SHARD_TRACE_CLOSE,
};
/* An SMTP event of c: text (len bytes, not kept) split into lines for
 * COMMAND and REPLY.  Callers test s->n_trace_subs first (one branch). */
void shard_trace_smtp(struct shard_conn *c, enum shard_trace_kind kind, const char *text,
		      size_t len);
/* The same for an outbound connection (nothing unless o speaks SMTP). */
void shard_trace_out(struct shard_out *o, enum shard_trace_kind kind, const char *text,
		     size_t len);
void shard_trace_handle(struct shard *s, struct shard_msg *m); /* TRACE_* messages */
/* The stream's connection is closing, or the shard drains: end it. */
void shard_trace_end(struct shard_http_conn *c);
void shard_trace_free(struct shard *s); /* teardown */
/* Query parameter name of q into out (not percent-decoded); false when absent. */
bool shard_admin_query_param(const char *q, const char *name, char *out, size_t out_len);

/* shard_inject.c: POST /api/inject/v1. */
void shard_inject_v1(struct shard_http_conn *c, const struct http_request *r);
/* The spool's answer for one generated message (token: see shard_inject.c). */
void shard_inject_committed(void *token, int status, const struct spool_loc *loc);
/* No further batch: the connection closes or the shard stops. */
void shard_inject_abort(struct shard_inject *j);
void shard_inject_free(struct shard_inject *j);

/* shard_commit.c: spool group commit and the reception log.  token is
 * what the spool hands back: a struct shard_conn, or a tagged value (see
 * shard_commit_done_one). */
int shard_commit_message(struct shard *s, void *token, struct pt_message *m);
void shard_commit_kick(struct shard *s);
void shard_handle_spool(struct shard *s, struct shard_op *op, struct io_uring_cqe *cqe);
int shard_log_open(struct shard *s);
/* A message's captured log headers (config.log_headers) as JSON object
 * text, made once and shared by its units, which may sit on different
 * shards: immutable, the count atomic. */
struct shard_log_headers {
	atomic_uint refs;
	size_t len;
	char json[];
};
/* The headers of m for its units' delivery records, one reference the
 * caller puts; NULL when none are configured, or out of memory (logged).
 * Usable before shard_log_open (spool recovery). */
struct shard_log_headers *shard_log_capture(struct shard *s, const struct pt_message *m);
/* One more reference to h (NULL: none); returns h. */
struct shard_log_headers *shard_log_headers_get(struct shard_log_headers *h);
/* Drop a reference; the last frees h.  NULL is ignored. */
void shard_log_headers_put(struct shard_log_headers *h);
void shard_log_reception(struct shard *s, const struct pt_message *m, const struct shard_conn *c);
/* The same for a message that came another way (HTTP): the peer's address
 * and its TLS connection (NULL: plain). */
void shard_log_reception_from(struct shard *s, const struct pt_message *m, const char *peer_ip,
			      struct tls_conn *tls);
/* OOB records (one per failed recipient) or a Feedback record for a report. */
void shard_log_report(struct shard *s, const struct pt_message *m, const struct shard_conn *c,
		      const struct shard_report *rep);
void shard_log_kick(struct shard *s);
void shard_handle_log(struct shard *s, struct io_uring_cqe *cqe);
/* Busy: a log write is in the ring.  Idle: not busy, and no record waits
 * (or those waiting are held back after a failed write). */
bool shard_log_busy(const struct shard *s);
bool shard_log_idle(const struct shard *s);
/* Write what waits, close the open segment's frame, free the log. */
void shard_log_close(struct shard *s);
void shard_disk_watch_start(struct shard *s);

/*
 * shard_loghook.c: log records offered to the log hooks (configure_log_hook)
 * become messages in this shard's spool, queued to their hook's queue.
 */
#define SHARD_LOGHOOK_PROTOCOL "LogRecord" /* reception_protocol of a hook's message */
int shard_loghook_open(struct shard *s);  /* PT_OK (also with no hooks) or PT_NOMEM */
void shard_loghook_close(struct shard *s);
/* A record was logged: keep it (copied) for the next shard_loghook_kick.
 * sender is the record's (NULL: the null sender); json is len bytes, one line. */
void shard_loghook_offer(struct shard *s, const char *sender, const char *json, size_t len);
/* The loop's safe point: offer every kept record to every hook
 * (should_enqueue_log_record) and spool those the policy wants. */
void shard_loghook_kick(struct shard *s);
/* No record waits for shard_loghook_kick. */
bool shard_loghook_idle(const struct shard *s);
/* The spool's answer for a hook's message (token: see shard_loghook.c). */
void shard_loghook_committed(struct shard *s, void *token, int status,
			     const struct spool_loc *loc);
/* Is m a log hook's message (meta reception_protocol "LogRecord")? */
bool shard_loghook_is_hook_message(const struct pt_message *m);

/* shard_log.c: JSON log records (Reception in shard_commit.c). */
struct shard_log_outcome {
	const char *type; /* "Delivery", "TransientFailure", "Bounce", "Expiration" */
	const char *protocol; /* delivery_protocol; NULL: "ESMTP" */
	const struct smtp_client_reply *reply;
	const char *peer_name, *peer_addr; /* NULL: no connection */
	const char *source_address;	   /* "ip:port" we connected from, or NULL */
	const char *tls_version, *tls_cipher;
};
void shard_log_delivery(struct shard *s, const struct shard_unit *u,
			const struct shard_log_outcome *o);

/* shard_home.c: the home side of messages (spool state, bodies). */
/* The in-use slot holding message id, or UINT32_MAX (a linear scan). */
uint32_t shard_home_find(const struct shard *s, const char *id);
/* Read slot's record back for inspect-message (shard_admin_inspect_read answers). */
void shard_home_inspect_read(struct shard *s, unsigned requester, uint32_t slot, void *token,
			     bool want_body);
int shard_home_init(struct shard *s);
void shard_home_free(struct shard *s);
void shard_home_accepted(struct shard *s, const struct pt_message *m, const struct spool_loc *loc);
void shard_home_outcome(struct shard *s, uint32_t slot, uint32_t rcpt, bool done,
			uint32_t num_attempts, uint64_t due_us);
void shard_home_body_request(struct shard *s, unsigned requester, uint32_t slot, void *token);
void shard_handle_body_read(struct shard *s, struct shard_body_read *r, struct io_uring_cqe *cqe);
void shard_home_spool_done(struct shard *s, uintptr_t token, int status,
			   const struct spool_loc *loc);
int shard_home_recover(struct shard *s, const struct spool_entry *entries, size_t n);
void shard_home_housekeeping(struct shard *s);
/* Completions of the segment deletions shard_home_housekeeping started. */
void shard_handle_janitor(struct shard *s, struct shard_op *op, struct io_uring_cqe *cqe);
/* True while segment deletions are in flight (the spool must stay open). */
bool shard_home_janitor_busy(const struct shard *s);

/* shard_route.c: scheduled queues and routing. */
/* "campaign:tenant@domain!routing_domain" (parts optional) from m's meta
 * (or meta `queue` as is) into b. */
void shard_queue_name(const struct pt_message *m, const char *domain, struct pt_buf *b);
/* The same from u's campaign, tenant, domain and routing_domain (not meta `queue`). */
void shard_unit_queue_name(const struct shard_unit *u, struct pt_buf *b);
void shard_route_init(struct shard *s);
void shard_route_free(struct shard *s);
void shard_unit_schedule(struct shard *s, struct shard_unit *u); /* at u->due_us */
void shard_unit_route(struct shard *s, struct shard_unit *u);	 /* due now */
void shard_unit_adopt(struct shard *s, struct shard_unit *u);	 /* arrived from another shard */
void shard_unit_free(struct shard *s, struct shard_unit *u);
/* Take u as this shard's (counted and listed). */
void shard_unit_own(struct shard *s, struct shard_unit *u);
/* Teardown: free every unit still owned (they are in the spool). */
void shard_units_free(struct shard *s);
/* Free a unit's memory only (one that no shard owns: in a ring at exit). */
void shard_unit_destroy(struct shard_unit *u);
/* The outcome of an attempt: logs, tells home, frees or reschedules u. */
void shard_unit_delivered(struct shard *s, struct shard_unit *u, const struct shard_log_outcome *o);
void shard_unit_failed(struct shard *s, struct shard_unit *u, const struct shard_log_outcome *o);
/* Bounce u by an admin request: an AdminBounce record, done at home, freed. */
void shard_unit_admin_bounce(struct shard *s, struct shard_unit *u, const char *reason);
/* Move SCHEDULED u to queue (taken), due now when flush; else at its time. */
void shard_unit_requeue(struct shard *s, struct shard_unit *u, char *queue, bool flush);
void shard_routes_housekeeping(struct shard *s);
struct shard_sched *shard_sched_get(struct shard *s, struct shard_unit *u);

/* shard_source.c: egress sources and pools. */
struct shard_source {
	char *name;
	struct policy_egress_source cfg;
	struct dns_addr bind; /* cfg.source_address parsed, when has_bind */
	bool has_bind;
	char *error; /* NULL when usable, else why not (a sentence) */
	uint64_t expires_ms;
};
/* This shard's cached source (loaded or refreshed from the policy when
 * missing or expired); never NULL. */
struct shard_source *shard_source_get(struct shard *s, const char *name);
/* Choose u's egress source from its scheduled queue's pool: sets u->source
 * and u->pool.  PT_OK, or PT_ERROR with r filled (451 4.3.5 and why). */
int shard_source_pick(struct shard *s, struct shard_sched *sq, struct shard_unit *u,
		      struct smtp_client_reply *r);
/* Smooth weighted round robin: add each entry's weight to its score in
 * current[], pick the highest score, take the total weight off it.  The
 * index picked, or SIZE_MAX when no entry has a weight above 0. */
size_t shard_wrr_pick(int64_t *current, const struct policy_egress_pool_entry *entries, size_t n);
/* Reload: every cached source and pool is asked for again at next use. */
void shard_sources_expire(struct shard *s);
void shard_sources_free(struct shard *s);

/* shard_ready.c: ready queues and shaping. */
void shard_ready_add(struct shard *s, struct shard_unit *u);
void shard_ready_kick(struct shard *s, struct shard_ready *rq);
/* No transaction may start on rq (shaping automation or suspend-ready-q):
 * true with *until_ms (monotonic) when to look again. */
bool shard_ready_suspended(struct shard *s, struct shard_ready *rq, uint64_t *until_ms);
/* A connection gave back units it did not attempt (they go back to the front). */
void shard_ready_requeue(struct shard *s, struct shard_ready *rq, struct shard_unit *u);
/* Take the next batch for a connection: up to max units that go with the
 * head unit (rq->proto->same_batch), unlinked and INFLIGHT. */
size_t shard_ready_take(struct shard_ready *rq, struct shard_unit **out, size_t max);
/* Batch rules: recipients of one message (SMTP), units of one scheduled
 * queue, any message (HTTP: one URL, header set and template per request). */
bool shard_ready_same_message(const struct shard_unit *first, const struct shard_unit *u);
bool shard_ready_same_queue(const struct shard_unit *first, const struct shard_unit *u);
bool shard_rate_take(struct shard_rate *r, uint64_t now_us, uint64_t *wait_us);
void shard_rate_set(struct shard_rate *r, const struct policy_rate *rate);
void shard_ready_conn_gone(struct shard *s, struct shard_ready *rq, struct shard_out *o,
			   bool failed_before_ready);
void shard_readies_housekeeping(struct shard *s);
void shard_readies_shutdown(struct shard *s);
void shard_readies_free(struct shard *s);

/* shard_out.c: outbound connections (the protocols: shard_out_smtp.c, shard_out_http.c). */
extern const struct shard_out_proto shard_out_smtp, shard_out_http, shard_out_amqp;
struct shard_out *shard_out_open(struct shard *s, struct shard_ready *rq);
void shard_out_wake(struct shard_out *o); /* units are ready: an idle connection takes them */
void shard_out_quit(struct shard_out *o);
void shard_out_abort(struct shard_out *o, const char *reason);
void shard_out_body(struct shard_out *o, struct pt_message *body);
void shard_handle_out_connect(struct shard_out *o, struct io_uring_cqe *cqe);
void shard_handle_out_recv(struct shard_out *o, struct io_uring_cqe *cqe);
void shard_handle_out_send(struct shard_out *o, struct io_uring_cqe *cqe);
void shard_outs_abort(struct shard *s);
void shard_outs_free(struct shard *s);
void shard_outs_reap(struct shard *s);
/* For the protocols: the session's output to the wire, and the timer
 * (nothing once the connection is closing or out of its session). */
void shard_out_pump(struct shard_out *o);
/* The session can take a batch (again). */
void shard_out_became_ready(struct shard_out *o);
/* The session failed before it was READY (f: why): the next address. */
void shard_out_retry_next(struct shard_out *o, const struct smtp_client_reply *f);
void shard_out_close(struct shard_out *o, const char *reason);
/* The log outcome of reply r on o (peer, source, TLS, protocol). */
struct shard_log_outcome shard_out_outcome(struct shard_out *o, const struct smtp_client_reply *r);
/* Every unit of the batch fails with a local 451 4.3.0 why; the session
 * takes the next batch. */
void shard_out_fail_batch_local(struct shard_out *o, const char *why);
void shard_out_free_bodies(struct shard_out *o);
/* Start a client TLS handshake on o to o->cur->name (verify: the system CA
 * bundle and the name).  PT_OK, or PT_ERROR with err (tls_state NONE). */
int shard_out_tls_start(struct shard_out *o, bool verify, char *err, size_t err_len);
/* Ciphertext received while TLS is on or shaking hands: PT_AGAIN (the
 * handshake wants more; its output is pumped), PT_ERROR (the handshake
 * failed: tls_conn_error(o->tls), tls_state NONE), PT_NOMEM (closed), or
 * PT_OK with the plaintext in o->plain (maybe none), *handshake_done when
 * it just finished and *eof when the peer closed or sent an alert. */
int shard_out_tls_input(struct shard_out *o, const char *data, size_t len, bool *handshake_done,
			bool *eof);
/* The batch's units go back to the front of the ready queue, unattempted. */
void shard_out_give_back(struct shard_out *o);

/* shard_dns.c: c-ares on the ring. */
int shard_dns_init(struct shard *s);
void shard_dns_free(struct shard *s);
void shard_handle_dns_poll(struct shard *s, struct shard_dns_watch *w, struct io_uring_cqe *cqe);
void shard_dns_kick(struct shard *s);

/* shard_mailbox.c */
bool shard_mailbox_send(struct shard *s, unsigned to, struct shard_msg *m);
/* Send, or keep it in order for a later iteration when the ring is full. */
void shard_mailbox_post(struct shard *s, unsigned to, struct shard_msg *m);
/* Send only when it goes at once (room in the ring, nothing waiting before
 * it); false: the caller still owns m.  For what may be dropped (traces). */
bool shard_mailbox_try(struct shard *s, unsigned to, struct shard_msg *m);
void shard_mailbox_drain(struct shard *s);
void shard_mailbox_wake(struct shard *s);
void shard_begin_drain(struct shard *s);

/* shard_automation.c: shaping automation rules of a ready queue's path. */
void shard_auto_observe(struct shard *s, struct shard_ready *rq, const struct smtp_client_reply *r);
bool shard_auto_suspended(struct shard_ready *rq, uint64_t now_ms, uint64_t *until_ms);
void shard_auto_apply_overrides(struct shard_ready *rq);
uint64_t shard_auto_next_expiry(const struct shard_ready *rq); /* 0: none */
void shard_auto_free(struct shard_ready *rq);
/* shard_ready.c: rq->cfg's rates changed (automation's SetConfig). */
void shard_ready_limits_changed(struct shard_ready *rq);
/* Reload this shard's policy at a safe point (between events): PT_OK, or
 * PT_ERROR with the old policy kept; both logged (shard.c). */
int shard_reload(struct shard *s);
/* Reload here, then (on success only) on every other shard, as SIGHUP
 * does: PT_OK, or PT_ERROR with err (file:line: why); the old policy
 * stays everywhere on failure. */
int shard_reload_all(struct shard *s, char *err, size_t err_len);

#endif
