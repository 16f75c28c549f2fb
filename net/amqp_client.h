/*
 * amqp_client.h -- an AMQP 0-9-1 publisher (RabbitMQ) as a pure state
 * machine: bytes in, bytes and events out.  It never calls read, write,
 * connect or the ring; the shard glues it to a socket.  Frames are coded
 * with librabbitmq's method and property codec (no librabbitmq socket).
 *
 * The shard drives one connection as:
 *
 *   connect (shard, with its own connect timeout)
 *   c = amqp_client_new(&cfg)                  the protocol header is in the output
 *   loop:
 *     amqp_client_feed(c, bytes, n)
 *     while (amqp_client_next_event(c, &ev)) ...
 *     while there is work and amqp_client_can_publish(c): amqp_client_publish(c, &m, &tag)
 *     send amqp_client_output(c) (consume what was sent)
 *     arm a timer for amqp_client_timeout_ms(c) (0: none), again after every feed
 *
 * Events:
 *   READY      login, channel, confirm mode (and the queue declared when
 *              asked) are done: amqp_client_publish() may be called.  Raised
 *              once.
 *   CONFIRMED  one published message has its outcome: ev.ok when the broker
 *              acked it (it is the broker's now: persisted when it went to a
 *              durable queue), else ev.reply says why (a nack, a return of a
 *              mandatory message, or the session's failure).  Every message
 *              published gets exactly one CONFIRMED, in no particular order.
 *   FAILED     the session is unusable (ev.reply: the broker's Close reply
 *              code and text, or a local reason).  Every message still
 *              unconfirmed got its CONFIRMED (not ok) just before.  Send
 *              what is left in the output, then close the socket.
 *   CLOSED     amqp_client_close() was answered: close the socket.
 */
#ifndef PT_AMQP_CLIENT_H
#define PT_AMQP_CLIENT_H

#include "core/buf.h"

struct amqp_client;

/* A parsed amqp://user:password@host:port/vhost URL (librabbitmq's parser:
 * every part percent-decoded; defaults guest, guest, port 5672 (5671 for
 * amqps), vhost "/"; an empty path is "/" too).  Strings owned by the
 * struct; amqp_client_url_free() releases them. */
struct amqp_client_url {
	char *user, *password, *host, *vhost;
	int port;
	bool tls; /* amqps:// */
};

/* PT_OK, or PT_ERROR with a reason in err ("not an amqp:// or amqps:// URL: ..."). */
int amqp_client_url_parse(const char *url, struct amqp_client_url *out, char *err, size_t err_len);
void amqp_client_url_free(struct amqp_client_url *u);

struct amqp_client_config {
	const char *user, *password, *vhost; /* copied; NULL: guest, guest, "/" */
	const char *declare_queue;	     /* copied; declared durable when not NULL */
	uint32_t frame_max;		     /* 0: 131072; the broker's is used when lower */
	unsigned window;		     /* unconfirmed publishes at most; 0: 64 */
	uint64_t handshake_timeout_ms;	     /* 0: 10 s, from connect to READY */
	uint64_t confirm_timeout_ms;	     /* 0: 60 s without an ack while one is awaited */
};

/* A broker's reply (code and text of a Close, a Return) or a local one. */
struct amqp_client_reply {
	unsigned code; /* AMQP reply code (320, 403, 404, 406, 312...); 0 when local */
	bool local;    /* made by Petrel, not received */
	char text[512];
};

enum amqp_client_event_type {
	AMQP_CLIENT_EV_NONE = 0,
	AMQP_CLIENT_EV_READY,
	AMQP_CLIENT_EV_CONFIRMED,
	AMQP_CLIENT_EV_FAILED,
	AMQP_CLIENT_EV_CLOSED,
};

struct amqp_client_event {
	enum amqp_client_event_type type;
	/* CONFIRMED: */
	uint64_t tag; /* what amqp_client_publish() returned */
	void *cookie; /* amqp_client_message.cookie */
	bool ok;
	/* CONFIRMED when !ok, FAILED: */
	struct amqp_client_reply reply;
};

struct amqp_client_message {
	const char *exchange;	  /* "" for the default exchange */
	const char *routing_key;  /* the queue's name on the default exchange */
	const char *content_type; /* NULL: none */
	bool mandatory;		  /* unroutable -> returned -> CONFIRMED not ok */
	const void *body;	  /* copied into the output at once */
	size_t body_len;
	void *cookie; /* handed back with CONFIRMED */
};

/* cfg is copied.  The protocol header is already in the output.  NULL on
 * allocation failure or a string too long for AMQP (over 255 bytes). */
struct amqp_client *amqp_client_new(const struct amqp_client_config *cfg);
void amqp_client_free(struct amqp_client *c);

/* Bytes received from the broker.  PT_OK, or PT_NOMEM (the session failed). */
int amqp_client_feed(struct amqp_client *c, const void *data, size_t len);
/* The broker closed the connection (EOF or reset). */
void amqp_client_eof(struct amqp_client *c);
/* The timer for amqp_client_timeout_ms() expired: fails the session. */
void amqp_client_timeout(struct amqp_client *c);
/* Milliseconds the session may wait for the broker now; 0 when nothing is
 * awaited (READY with every publish confirmed). */
uint64_t amqp_client_timeout_ms(const struct amqp_client *c);

/* Next event into ev: true, or false when there is none. */
bool amqp_client_next_event(struct amqp_client *c, struct amqp_client_event *ev);
/* Bytes to send; the caller consumes what it sent. */
struct pt_buf *amqp_client_output(struct amqp_client *c);

/* True when READY and the window has room for one more publish. */
bool amqp_client_can_publish(const struct amqp_client *c);
/*
 * Publish m (Basic.Publish, a content header with delivery_mode 2
 * (persistent) and m->content_type, and the body in frames of frame_max).
 * *tag gets its delivery tag.  PT_OK; PT_AGAIN when !amqp_client_can_publish
 * (nothing written); PT_ERROR when exchange or routing_key is over 255 bytes
 * (nothing written, the session unchanged); PT_NOMEM (the session failed).
 */
int amqp_client_publish(struct amqp_client *c, const struct amqp_client_message *m, uint64_t *tag);
/* Publishes not yet confirmed. */
unsigned amqp_client_n_unconfirmed(const struct amqp_client *c);
/* Connection.Close: CLOSED when answered (or FAILED on timeout).  Only in
 * READY; otherwise nothing (the shard just closes). */
void amqp_client_close(struct amqp_client *c);

/* The negotiated frame_max (after Tune; the configured one before). */
uint32_t amqp_client_frame_max(const struct amqp_client *c);
/* The state's name, for traces and logs. */
const char *amqp_client_strstate(const struct amqp_client *c);

#endif
