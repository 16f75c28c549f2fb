/*
 * amqp_client.c -- an AMQP 0-9-1 publisher with publisher confirms, as a
 * pure state machine: bytes in, frames and events out.  It never does I/O;
 * the shard glues it to a socket and a timer.  librabbitmq's own connection
 * reads and writes its socket itself (blocking, or polled), which a shard
 * cannot allow, so only its codec is used: amqp_encode_method /
 * amqp_decode_method for method arguments and amqp_encode_properties /
 * amqp_decode_properties for content headers.  The frame around them is
 * written and read here:
 *
 *   offset  size  field
 *   0       1     type: 1 method, 2 content header, 3 body, 8 heartbeat
 *   1       2     channel (big-endian; 0 for the connection, 1 for ours)
 *   3       4     payload size n
 *   7       n     payload (method: class, method ids then arguments;
 *                 header: class, weight 0, body size (8), flags, properties)
 *   7 + n   1     0xCE
 *
 * States.  One enum, changed only by amqp_client_enter_state(), which traces
 * "old -> new" at debug level.  Each waiting state names the method it
 * waits for, for timeouts and protocol errors:
 *
 *   START --Start/StartOk--> TUNE --Tune/TuneOk+Open--> OPEN --OpenOk/Channel.Open-->
 *   CHANNEL --OpenOk/Confirm.Select--> CONFIRM --SelectOk[/Queue.Declare]-->
 *   [DECLARE --DeclareOk-->] READY --close--> CLOSING --CloseOk--> CLOSED
 *   any state --Close from the broker, EOF, timeout, protocol error--> FAILED
 *
 * Login is PLAIN (the only mechanism RabbitMQ enables by default), with the
 * capability authentication_failure_close so that a refused login comes
 * back as Connection.Close with the broker's reason rather than a bare EOF.
 * Heartbeats are declined (TuneOk heartbeat 0): the shard would need a
 * timer per connection just to send them, and a dead broker is noticed by
 * the confirm timeout while anything is unconfirmed; an idle connection
 * found dead on the next publish only costs that publish's retry.
 *
 * Publishing.  Channel 1 is put in confirm mode, so the broker numbers
 * publishes 1, 2, ... and answers each with Basic.Ack (taken: persisted
 * first when the message is persistent and its queue durable) or
 * Basic.Nack, singly or for every tag up to one ("multiple").  Publishes
 * are pipelined up to cfg.window unconfirmed; each one's slot is
 * tags[(tag - 1) % window], and stays taken until its CONFIRMED event is
 * taken, so the event queue (window + 4 entries) can never overflow.  A
 * mandatory message that no queue takes comes back as Basic.Return (with
 * its content) before its ack; the return names no delivery tag, so a
 * mandatory publish carries its tag in the header "x-petrel-tag" and the
 * return is matched by it.  Its ack then confirms a failure.
 *
 * Failure.  Connection.Close or Channel.Close from the broker (answered
 * with their CloseOk), EOF, a timeout, a frame we cannot read or a method
 * the state does not expect fail the session: every unconfirmed publish
 * gets CONFIRMED (not ok) with the reason, then FAILED.  Nothing is read
 * after it.
 *
 * Memory: the client, its input and output buffers, the slot array and a
 * librabbitmq pool for decoded methods (recycled after every frame), all
 * freed in amqp_client_free().
 */
#include "net/amqp_client.h"

#include <amqp.h>
#include <amqp_framing.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AMQP_CLIENT_CHANNEL	  1
#define AMQP_CLIENT_FRAME_MAX	  131072
#define AMQP_CLIENT_WINDOW	  64
#define AMQP_CLIENT_TAG_HEADER	  "x-petrel-tag"
#define AMQP_CLIENT_CLOSE_TIMEOUT 5000
/* Method and header frames we write stay under the smallest frame_max a
 * broker may set (AMQP_FRAME_MIN_SIZE), frame header and end included. */
#define AMQP_CLIENT_SMALL_PAYLOAD (AMQP_FRAME_MIN_SIZE - 8)

enum amqp_client_state {
	AMQP_CLIENT_STATE_START,   /* protocol header sent: Connection.Start awaited */
	AMQP_CLIENT_STATE_TUNE,	   /* StartOk sent: Connection.Tune awaited */
	AMQP_CLIENT_STATE_OPEN,	   /* TuneOk and Open sent: Connection.OpenOk awaited */
	AMQP_CLIENT_STATE_CHANNEL, /* Channel.Open sent */
	AMQP_CLIENT_STATE_CONFIRM, /* Confirm.Select sent */
	AMQP_CLIENT_STATE_DECLARE, /* Queue.Declare sent */
	AMQP_CLIENT_STATE_READY,   /* publishing */
	AMQP_CLIENT_STATE_CLOSING, /* Connection.Close sent */
	AMQP_CLIENT_STATE_FAILED,  /* FAILED raised: input ignored for ever */
	AMQP_CLIENT_STATE_CLOSED,  /* CLOSED raised */
};

static const struct {
	const char *name;
	const char *awaited; /* "timed out waiting for <awaited>" */
} amqp_client_states[] = {
    [AMQP_CLIENT_STATE_START] = {"START", "connection.start"},
    [AMQP_CLIENT_STATE_TUNE] = {"TUNE", "connection.tune (login)"},
    [AMQP_CLIENT_STATE_OPEN] = {"OPEN", "connection.open-ok"},
    [AMQP_CLIENT_STATE_CHANNEL] = {"CHANNEL", "channel.open-ok"},
    [AMQP_CLIENT_STATE_CONFIRM] = {"CONFIRM", "confirm.select-ok"},
    [AMQP_CLIENT_STATE_DECLARE] = {"DECLARE", "queue.declare-ok"},
    [AMQP_CLIENT_STATE_READY] = {"READY", "publisher confirms"},
    [AMQP_CLIENT_STATE_CLOSING] = {"CLOSING", "connection.close-ok"},
    [AMQP_CLIENT_STATE_FAILED] = {"FAILED", "nothing"},
    [AMQP_CLIENT_STATE_CLOSED] = {"CLOSED", "nothing"},
};

enum {
	SLOT_FREE = 0,
	SLOT_PENDING,  /* published, no ack yet */
	SLOT_RETURNED, /* returned (reply set): its ack will confirm a failure */
	SLOT_DONE,     /* outcome known (ok, reply); its CONFIRMED is queued */
};

struct amqp_client_slot {
	uint8_t state;
	bool ok;
	void *cookie;
	struct amqp_client_reply reply;
};

struct amqp_client {
	enum amqp_client_state state;
	struct amqp_client_config cfg; /* strings below, defaults applied */
	char *user, *password, *vhost, *declare_queue;
	uint32_t frame_max; /* negotiated after Tune */
	struct pt_buf in, out;
	amqp_pool_t pool;
	/* Confirms: tags oldest .. next - 1 may be unconfirmed. */
	struct amqp_client_slot *slots; /* cfg.window */
	uint64_t next_tag, oldest_tag;
	unsigned n_unconfirmed;
	/* A Basic.Return's content being skipped. */
	bool returning;
	uint64_t return_left;
	struct amqp_client_reply return_reply;
	/* Events: types, and the tag of a CONFIRMED. */
	struct {
		enum amqp_client_event_type type;
		uint64_t tag;
	} * events;
	unsigned ev_head, ev_len, ev_cap;
	struct amqp_client_reply failure;
	bool nomem; /* failed for want of memory */
};

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v;
}

static void put32(unsigned char *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static amqp_bytes_t amqp_client_bytes(const char *s)
{
	return (amqp_bytes_t){strlen(s), (void *)s};
}

/* Copy an AMQP short string into text, after prefix. */
static void amqp_client_reply_set(struct amqp_client_reply *r, unsigned code, bool local,
				  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void amqp_client_reply_set(struct amqp_client_reply *r, unsigned code, bool local,
				  const char *fmt, ...)
{
	va_list ap;

	r->code = code;
	r->local = local;
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
}

/* --- URL --------------------------------------------------------------- */

int amqp_client_url_parse(const char *url, struct amqp_client_url *out, char *err, size_t err_len)
{
	struct amqp_connection_info info;
	char *copy = strdup(url);

	memset(out, 0, sizeof(*out));
	if (copy == NULL) {
		snprintf(err, err_len, "out of memory");
		return PT_ERROR;
	}
	amqp_default_connection_info(&info);
	if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK) {
		snprintf(
		    err, err_len,
		    "not an amqp:// or amqps:// URL (amqp://user:password@host:port/vhost): %s",
		    url);
		free(copy);
		return PT_ERROR;
	}
	/* RFC 3986 leaves "amqp://host/" an empty vhost; nobody means that. */
	out->user = strdup(info.user);
	out->password = strdup(info.password);
	out->host = strdup(info.host);
	out->vhost = strdup(info.vhost[0] != '\0' ? info.vhost : "/");
	out->port = info.port;
	out->tls = info.ssl != 0;
	free(copy);
	if (out->user == NULL || out->password == NULL || out->host == NULL || out->vhost == NULL) {
		amqp_client_url_free(out);
		snprintf(err, err_len, "out of memory");
		return PT_ERROR;
	}
	return PT_OK;
}

void amqp_client_url_free(struct amqp_client_url *u)
{
	free(u->user);
	free(u->password);
	free(u->host);
	free(u->vhost);
	memset(u, 0, sizeof(*u));
}

/* --- events and failure ------------------------------------------------ */

const char *amqp_client_strstate(const struct amqp_client *c)
{
	return amqp_client_states[c->state].name;
}

static void amqp_client_enter_state(struct amqp_client *c, enum amqp_client_state state)
{
	pt_debug("amqp client %p: %s -> %s", (void *)c, amqp_client_strstate(c),
		 amqp_client_states[state].name);
	c->state = state;
}

/* The queue has room by construction (see the top); overflowing it is a bug. */
static void amqp_client_push_event(struct amqp_client *c, enum amqp_client_event_type type,
				   uint64_t tag)
{
	unsigned i;

	if (c->ev_len == c->ev_cap)
		pt_panic("amqp client: event queue full (%u)", c->ev_cap);
	i = (c->ev_head + c->ev_len++) % c->ev_cap;
	c->events[i].type = type;
	c->events[i].tag = tag;
}

static struct amqp_client_slot *amqp_client_slot(struct amqp_client *c, uint64_t tag)
{
	return &c->slots[(tag - 1) % c->cfg.window];
}

/* The outcome of an unconfirmed publish is known: queue its CONFIRMED. */
static void amqp_client_settle(struct amqp_client *c, uint64_t tag, bool ok,
			       const struct amqp_client_reply *reply)
{
	struct amqp_client_slot *s = amqp_client_slot(c, tag);

	if (s->state == SLOT_RETURNED)
		ok = false; /* s->reply already says why */
	else if (!ok)
		s->reply = *reply;
	s->ok = ok;
	s->state = SLOT_DONE;
	c->n_unconfirmed--;
	amqp_client_push_event(c, AMQP_CLIENT_EV_CONFIRMED, tag);
}

static bool amqp_client_unconfirmed(struct amqp_client *c, uint64_t tag)
{
	uint8_t state = amqp_client_slot(c, tag)->state;

	return tag >= c->oldest_tag && tag < c->next_tag &&
	       (state == SLOT_PENDING || state == SLOT_RETURNED);
}

/* Move oldest_tag past every publish already settled. */
static void amqp_client_advance_oldest(struct amqp_client *c)
{
	while (c->oldest_tag < c->next_tag && !amqp_client_unconfirmed(c, c->oldest_tag))
		c->oldest_tag++;
}

/* Every unconfirmed publish fails with reply. */
static void amqp_client_settle_all(struct amqp_client *c, const struct amqp_client_reply *reply)
{
	for (uint64_t tag = c->oldest_tag; tag < c->next_tag; tag++)
		if (amqp_client_unconfirmed(c, tag))
			amqp_client_settle(c, tag, false, reply);
	c->oldest_tag = c->next_tag;
}

static void amqp_client_fail(struct amqp_client *c, unsigned code, bool local, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void amqp_client_fail(struct amqp_client *c, unsigned code, bool local, const char *fmt, ...)
{
	va_list ap;

	if (c->state == AMQP_CLIENT_STATE_FAILED || c->state == AMQP_CLIENT_STATE_CLOSED)
		return;
	c->failure.code = code;
	c->failure.local = local;
	va_start(ap, fmt);
	vsnprintf(c->failure.text, sizeof(c->failure.text), fmt, ap);
	va_end(ap);
	pt_debug("amqp client %p: failed in %s: %u %s", (void *)c, amqp_client_strstate(c), code,
		 c->failure.text);
	amqp_client_settle_all(c, &c->failure);
	amqp_client_push_event(c, AMQP_CLIENT_EV_FAILED, 0);
	amqp_client_enter_state(c, AMQP_CLIENT_STATE_FAILED);
}

static void amqp_client_nomem(struct amqp_client *c)
{
	c->nomem = true;
	amqp_client_fail(c, 0, true, "out of memory");
}

static void amqp_client_protocol_error(struct amqp_client *c, const char *what)
{
	amqp_client_fail(c, 0, true, "AMQP protocol error in %s: %s", amqp_client_strstate(c),
			 what);
}

/* --- writing frames ---------------------------------------------------- */

/* Open a frame of up to max payload bytes at the end of the output; the
 * payload goes at the returned pointer + 7.  NULL when out of memory. */
static unsigned char *amqp_client_frame_open(struct amqp_client *c, size_t max)
{
	if (pt_buf_reserve(&c->out, 8 + max) != PT_OK)
		return NULL;
	return (unsigned char *)c->out.data + c->out.len;
}

static void amqp_client_frame_close(struct amqp_client *c, unsigned char *f, int type,
				    uint16_t channel, size_t n)
{
	f[0] = type;
	put16(f + 1, channel);
	put32(f + 3, n);
	f[7 + n] = AMQP_FRAME_END;
	c->out.len += 8 + n;
}

/* Append a method frame.  PT_OK, or PT_NOMEM (the session failed). */
static int amqp_client_send_method(struct amqp_client *c, uint16_t channel, amqp_method_number_t id,
				   void *args)
{
	unsigned char *f = amqp_client_frame_open(c, AMQP_CLIENT_SMALL_PAYLOAD);
	amqp_bytes_t room;
	int n;

	if (f == NULL) {
		amqp_client_nomem(c);
		return PT_NOMEM;
	}
	put32(f + 7, id);
	room = (amqp_bytes_t){AMQP_CLIENT_SMALL_PAYLOAD - 4, f + 11};
	/* Every string we send was checked to fit a short string; a method
	 * that does not fit the smallest frame is a bug of ours. */
	n = amqp_encode_method(id, args, room);
	if (n < 0)
		pt_panic("amqp client: cannot encode %s: %s", amqp_method_name(id),
			 amqp_error_string2(n));
	amqp_client_frame_close(c, f, AMQP_FRAME_METHOD, channel, 4 + n);
	return PT_OK;
}

/* Connection.StartOk: PLAIN login, our name and capabilities. */
static int amqp_client_send_start_ok(struct amqp_client *c)
{
	amqp_table_entry_t caps[] = {
	    {amqp_cstring_bytes("authentication_failure_close"),
	     {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
	    {amqp_cstring_bytes("publisher_confirms"),
	     {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
	    {amqp_cstring_bytes("connection.blocked"),
	     {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
	};
	amqp_table_entry_t props[] = {
	    {amqp_cstring_bytes("product"),
	     {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("Petrel")}},
	    {amqp_cstring_bytes("capabilities"),
	     {.kind = AMQP_FIELD_KIND_TABLE, .value.table = {(int)PT_ARRAY_LEN(caps), caps}}},
	};
	char response[2 + 255 + 255 + 1]; /* \0user\0password, and snprintf's NUL */
	int n = snprintf(response, sizeof(response), "%c%s%c%s", 0, c->user, 0, c->password);
	amqp_connection_start_ok_t m = {
	    .client_properties = {(int)PT_ARRAY_LEN(props), props},
	    .mechanism = amqp_cstring_bytes("PLAIN"),
	    .response = {(size_t)n, response},
	    .locale = amqp_cstring_bytes("en_US"),
	};

	return amqp_client_send_method(c, 0, AMQP_CONNECTION_START_OK_METHOD, &m);
}

/* --- the handshake ----------------------------------------------------- */

static bool amqp_client_has_word(amqp_bytes_t list, const char *word)
{
	size_t len = strlen(word);
	const char *p = list.bytes, *end = p + list.len;

	while (p < end) {
		const char *sp = memchr(p, ' ', end - p);
		size_t n = (sp != NULL ? sp : end) - p;

		if (n == len && memcmp(p, word, len) == 0)
			return true;
		p += n + 1;
	}
	return false;
}

static void amqp_client_on_start(struct amqp_client *c, const amqp_connection_start_t *m)
{
	if (m->version_major != 0 || m->version_minor != 9) {
		amqp_client_fail(c, 0, true, "the broker speaks AMQP %u-%u, not 0-9-1",
				 m->version_major, m->version_minor);
		return;
	}
	if (!amqp_client_has_word(m->mechanisms, "PLAIN")) {
		amqp_client_fail(c, 0, true, "the broker offers no PLAIN login (mechanisms: %.*s)",
				 (int)PT_MIN(m->mechanisms.len, 200), (char *)m->mechanisms.bytes);
		return;
	}
	if (amqp_client_send_start_ok(c) == PT_OK)
		amqp_client_enter_state(c, AMQP_CLIENT_STATE_TUNE);
}

static void amqp_client_on_tune(struct amqp_client *c, const amqp_connection_tune_t *m)
{
	amqp_connection_tune_ok_t ok = {m->channel_max, c->cfg.frame_max, 0};
	amqp_connection_open_t open = {amqp_cstring_bytes(c->vhost), amqp_cstring_bytes(""), 0};

	if (m->frame_max != 0 && m->frame_max < ok.frame_max)
		ok.frame_max = m->frame_max;
	if (ok.frame_max < AMQP_FRAME_MIN_SIZE) {
		amqp_client_fail(c, 0, true, "the broker's frame_max %u is under AMQP's minimum %d",
				 m->frame_max, AMQP_FRAME_MIN_SIZE);
		return;
	}
	c->frame_max = ok.frame_max;
	/* TuneOk and Open go together (AMQP 0-9-1 allows Open right after). */
	if (amqp_client_send_method(c, 0, AMQP_CONNECTION_TUNE_OK_METHOD, &ok) != PT_OK ||
	    amqp_client_send_method(c, 0, AMQP_CONNECTION_OPEN_METHOD, &open) != PT_OK)
		return;
	amqp_client_enter_state(c, AMQP_CLIENT_STATE_OPEN);
}

static void amqp_client_ready(struct amqp_client *c)
{
	amqp_client_enter_state(c, AMQP_CLIENT_STATE_READY);
	amqp_client_push_event(c, AMQP_CLIENT_EV_READY, 0);
}

/* The reply the handshake state awaits has come: send the next step. */
static void amqp_client_handshake_step(struct amqp_client *c)
{
	amqp_channel_open_t channel = {amqp_cstring_bytes("")};
	amqp_confirm_select_t select = {0};
	amqp_queue_declare_t declare = {.queue = amqp_cstring_bytes(c->declare_queue ?: ""),
					.durable = 1};

	switch (c->state) {
	case AMQP_CLIENT_STATE_OPEN:
		if (amqp_client_send_method(c, AMQP_CLIENT_CHANNEL, AMQP_CHANNEL_OPEN_METHOD,
					    &channel) == PT_OK)
			amqp_client_enter_state(c, AMQP_CLIENT_STATE_CHANNEL);
		break;
	case AMQP_CLIENT_STATE_CHANNEL:
		if (amqp_client_send_method(c, AMQP_CLIENT_CHANNEL, AMQP_CONFIRM_SELECT_METHOD,
					    &select) == PT_OK)
			amqp_client_enter_state(c, AMQP_CLIENT_STATE_CONFIRM);
		break;
	case AMQP_CLIENT_STATE_CONFIRM:
		if (c->declare_queue == NULL)
			amqp_client_ready(c);
		else if (amqp_client_send_method(c, AMQP_CLIENT_CHANNEL, AMQP_QUEUE_DECLARE_METHOD,
						 &declare) == PT_OK)
			amqp_client_enter_state(c, AMQP_CLIENT_STATE_DECLARE);
		break;
	case AMQP_CLIENT_STATE_DECLARE:
		amqp_client_ready(c);
		break;
	default:
		pt_panic("amqp client: handshake step in %s", amqp_client_strstate(c));
	}
}

/* --- confirms and returns ---------------------------------------------- */

/* Basic.Ack / Basic.Nack: tag 0 with multiple means every publish so far. */
static void amqp_client_on_confirm(struct amqp_client *c, uint64_t tag, bool multiple, bool ok)
{
	struct amqp_client_reply nack;
	uint64_t first = multiple ? c->oldest_tag : tag;
	uint64_t last = multiple && tag == 0 ? c->next_tag - 1 : tag;
	char what[80];

	if (!multiple && !amqp_client_unconfirmed(c, tag)) {
		snprintf(what, sizeof(what),
			 "basic.%s for delivery tag %" PRIu64 " that is not awaited",
			 ok ? "ack" : "nack", tag);
		amqp_client_protocol_error(c, what);
		return;
	}
	if (last >= c->next_tag) {
		snprintf(what, sizeof(what),
			 "basic.%s up to delivery tag %" PRIu64 ", never published",
			 ok ? "ack" : "nack", tag);
		amqp_client_protocol_error(c, what);
		return;
	}
	amqp_client_reply_set(&nack, 0, false, "the broker refused the message (basic.nack)");
	for (uint64_t t = first; t <= last; t++)
		if (amqp_client_unconfirmed(c, t))
			amqp_client_settle(c, t, ok, &nack);
	amqp_client_advance_oldest(c);
}

static void amqp_client_on_return(struct amqp_client *c, const amqp_basic_return_t *m)
{
	amqp_client_reply_set(&c->return_reply, m->reply_code, false,
			      "the broker returned the message (exchange \"%.*s\", routing key "
			      "\"%.*s\"): %.*s",
			      (int)m->exchange.len, (char *)m->exchange.bytes,
			      (int)m->routing_key.len, (char *)m->routing_key.bytes,
			      (int)m->reply_text.len, (char *)m->reply_text.bytes);
	c->returning = true;
	c->return_left = UINT64_MAX; /* the content header is awaited */
}

/* The returned message's content header: find its tag, mark its slot. */
static void amqp_client_on_return_header(struct amqp_client *c, const unsigned char *p, size_t n)
{
	amqp_basic_properties_t *props;
	void *decoded;

	if (n < 12 || amqp_decode_properties(AMQP_BASIC_CLASS, &c->pool,
					     (amqp_bytes_t){n - 12, (void *)(p + 12)},
					     &decoded) != AMQP_STATUS_OK) {
		amqp_client_protocol_error(c, "unreadable content header of basic.return");
		return;
	}
	props = decoded;
	c->return_left = get64(p + 4);
	if (props->_flags & AMQP_BASIC_HEADERS_FLAG) {
		for (int i = 0; i < props->headers.num_entries; i++) {
			amqp_table_entry_t *e = &props->headers.entries[i];
			uint64_t tag;

			if (e->value.kind != AMQP_FIELD_KIND_I64 ||
			    e->key.len != strlen(AMQP_CLIENT_TAG_HEADER) ||
			    memcmp(e->key.bytes, AMQP_CLIENT_TAG_HEADER, e->key.len) != 0)
				continue;
			tag = (uint64_t)e->value.value.i64;
			if (amqp_client_slot(c, tag)->state != SLOT_PENDING ||
			    !amqp_client_unconfirmed(c, tag))
				break;
			amqp_client_slot(c, tag)->state = SLOT_RETURNED;
			amqp_client_slot(c, tag)->reply = c->return_reply;
			goto done;
		}
	}
	amqp_client_protocol_error(c, "basic.return of a message we did not publish");
	return;
done:
	if (c->return_left == 0)
		c->returning = false;
}

/* --- reading frames ---------------------------------------------------- */

/* Methods that may come in any state: closes, flow, blocked. */
static bool amqp_client_on_async(struct amqp_client *c, uint16_t channel, amqp_method_number_t id,
				 void *args)
{
	if (id == AMQP_CONNECTION_CLOSE_METHOD || id == AMQP_CHANNEL_CLOSE_METHOD) {
		const amqp_connection_close_t *m = args; /* the same fields as channel.close */
		amqp_connection_close_ok_t ok = {0};
		bool conn = id == AMQP_CONNECTION_CLOSE_METHOD;

		amqp_client_send_method(
		    c, channel,
		    conn ? AMQP_CONNECTION_CLOSE_OK_METHOD : AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
		amqp_client_fail(c, m->reply_code, false, "the broker closed the %s: %u %.*s",
				 conn ? "connection" : "channel", m->reply_code,
				 (int)m->reply_text.len, (char *)m->reply_text.bytes);
		return true;
	}
	if (id == AMQP_CHANNEL_FLOW_METHOD) {
		amqp_channel_flow_ok_t ok = {((amqp_channel_flow_t *)args)->active};

		amqp_client_send_method(c, channel, AMQP_CHANNEL_FLOW_OK_METHOD, &ok);
		return true;
	}
	if (id == AMQP_CONNECTION_BLOCKED_METHOD || id == AMQP_CONNECTION_UNBLOCKED_METHOD) {
		/* The broker stops reading us (a memory or disk alarm): publishes
		 * wait, and the confirm timeout bounds how long. */
		pt_info("amqp client %p: the broker %s publishing", (void *)c,
			id == AMQP_CONNECTION_BLOCKED_METHOD ? "blocked" : "unblocked");
		return true;
	}
	return false;
}

static void amqp_client_on_method(struct amqp_client *c, uint16_t channel, amqp_method_number_t id,
				  void *args)
{
	static const amqp_method_number_t awaited[] = {
	    [AMQP_CLIENT_STATE_START] = AMQP_CONNECTION_START_METHOD,
	    [AMQP_CLIENT_STATE_TUNE] = AMQP_CONNECTION_TUNE_METHOD,
	    [AMQP_CLIENT_STATE_OPEN] = AMQP_CONNECTION_OPEN_OK_METHOD,
	    [AMQP_CLIENT_STATE_CHANNEL] = AMQP_CHANNEL_OPEN_OK_METHOD,
	    [AMQP_CLIENT_STATE_CONFIRM] = AMQP_CONFIRM_SELECT_OK_METHOD,
	    [AMQP_CLIENT_STATE_DECLARE] = AMQP_QUEUE_DECLARE_OK_METHOD,
	};
	char what[120];

	if (amqp_client_on_async(c, channel, id, args))
		return;
	if (c->state < AMQP_CLIENT_STATE_READY && id == awaited[c->state]) {
		if (c->state == AMQP_CLIENT_STATE_START)
			amqp_client_on_start(c, args);
		else if (c->state == AMQP_CLIENT_STATE_TUNE)
			amqp_client_on_tune(c, args);
		else
			amqp_client_handshake_step(c);
		return;
	}
	if (c->state >= AMQP_CLIENT_STATE_READY && id == AMQP_BASIC_ACK_METHOD) {
		amqp_basic_ack_t *m = args;

		amqp_client_on_confirm(c, m->delivery_tag, m->multiple, true);
		return;
	}
	if (c->state >= AMQP_CLIENT_STATE_READY && id == AMQP_BASIC_NACK_METHOD) {
		amqp_basic_nack_t *m = args;

		amqp_client_on_confirm(c, m->delivery_tag, m->multiple, false);
		return;
	}
	if (c->state >= AMQP_CLIENT_STATE_READY && id == AMQP_BASIC_RETURN_METHOD) {
		amqp_client_on_return(c, args);
		return;
	}
	if (c->state == AMQP_CLIENT_STATE_CLOSING && id == AMQP_CONNECTION_CLOSE_OK_METHOD) {
		amqp_client_reply_set(&c->failure, 0, true, "connection closed before its confirm");
		amqp_client_settle_all(c, &c->failure);
		amqp_client_enter_state(c, AMQP_CLIENT_STATE_CLOSED);
		amqp_client_push_event(c, AMQP_CLIENT_EV_CLOSED, 0);
		return;
	}
	snprintf(what, sizeof(what), "unexpected %s on channel %u while waiting for %s",
		 amqp_method_name(id), channel, amqp_client_states[c->state].awaited);
	amqp_client_protocol_error(c, what);
}

/* The channel a frame must come on: 0 for heartbeats and the connection
 * class's methods, ours for everything else. */
static uint16_t amqp_client_frame_channel(int type, const unsigned char *p, size_t n)
{
	if (type == AMQP_FRAME_HEARTBEAT)
		return 0;
	if (type == AMQP_FRAME_METHOD && n >= 2 && (p[0] << 8 | p[1]) == AMQP_CONNECTION_CLASS)
		return 0;
	return AMQP_CLIENT_CHANNEL;
}

static void amqp_client_on_frame(struct amqp_client *c, int type, uint16_t channel,
				 const unsigned char *p, size_t n)
{
	char what[80];
	void *args;

	if (channel != amqp_client_frame_channel(type, p, n)) {
		snprintf(what, sizeof(what), "a frame of type %d on channel %u", type, channel);
		amqp_client_protocol_error(c, what);
		return;
	}
	if (type == AMQP_FRAME_HEARTBEAT)
		return;
	if (c->returning && type == AMQP_FRAME_HEADER && c->return_left == UINT64_MAX) {
		amqp_client_on_return_header(c, p, n);
		return;
	}
	if (c->returning && type == AMQP_FRAME_BODY && c->return_left != UINT64_MAX &&
	    n <= c->return_left) {
		c->return_left -= n;
		if (c->return_left == 0)
			c->returning = false;
		return;
	}
	if (type != AMQP_FRAME_METHOD || c->returning || n < 4) {
		amqp_client_protocol_error(c, c->returning ? "basic.return's content cut short"
							   : "unexpected frame type or size");
		return;
	}
	if (amqp_decode_method(get32(p), &c->pool, (amqp_bytes_t){n - 4, (void *)(p + 4)}, &args) !=
	    AMQP_STATUS_OK) {
		amqp_client_protocol_error(c, "undecodable method frame");
		return;
	}
	amqp_client_on_method(c, channel, get32(p), args);
}

/* Read every whole frame in c->in, then drop them. */
static void amqp_client_read_frames(struct amqp_client *c)
{
	const unsigned char *p = (const unsigned char *)c->in.data;
	size_t off = 0;
	char what[80];

	while (c->state != AMQP_CLIENT_STATE_FAILED && c->state != AMQP_CLIENT_STATE_CLOSED &&
	       c->in.len - off >= 7) {
		uint32_t n = get32(p + off + 3);

		if ((uint64_t)n + 8 > c->frame_max) {
			snprintf(what, sizeof(what),
				 "a frame of %" PRIu32 " bytes, over frame_max %" PRIu32, n,
				 c->frame_max);
			amqp_client_protocol_error(c, what);
			break;
		}
		if (c->in.len - off < (size_t)n + 8)
			break;
		if (p[off + 7 + n] != AMQP_FRAME_END) {
			amqp_client_protocol_error(c, "a frame does not end with 0xCE");
			break;
		}
		amqp_client_on_frame(c, p[off], (uint16_t)(p[off + 1] << 8 | p[off + 2]),
				     p + off + 7, n);
		recycle_amqp_pool(&c->pool);
		off += (size_t)n + 8;
	}
	if (c->state == AMQP_CLIENT_STATE_FAILED || c->state == AMQP_CLIENT_STATE_CLOSED)
		off = c->in.len;
	pt_buf_consume(&c->in, off);
}

/* --- the interface ----------------------------------------------------- */

static bool amqp_client_short_ok(const char *s)
{
	return s == NULL || strlen(s) <= 255;
}

struct amqp_client *amqp_client_new(const struct amqp_client_config *cfg)
{
	static const char header[8] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};
	struct amqp_client *c;

	if (!amqp_client_short_ok(cfg->user) || !amqp_client_short_ok(cfg->password) ||
	    !amqp_client_short_ok(cfg->vhost) || !amqp_client_short_ok(cfg->declare_queue))
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->cfg = *cfg;
	c->cfg.frame_max =
	    cfg->frame_max ? PT_MAX(cfg->frame_max, AMQP_FRAME_MIN_SIZE) : AMQP_CLIENT_FRAME_MAX;
	c->cfg.window = cfg->window ? cfg->window : AMQP_CLIENT_WINDOW;
	c->cfg.handshake_timeout_ms = cfg->handshake_timeout_ms ?: 10000;
	c->cfg.confirm_timeout_ms = cfg->confirm_timeout_ms ?: 60000;
	c->frame_max = c->cfg.frame_max;
	c->next_tag = c->oldest_tag = 1;
	c->ev_cap = c->cfg.window + 4;
	c->user = strdup(cfg->user ?: "guest");
	c->password = strdup(cfg->password ?: "guest");
	c->vhost = strdup(cfg->vhost ?: "/");
	c->declare_queue = cfg->declare_queue ? strdup(cfg->declare_queue) : NULL;
	c->slots = calloc(c->cfg.window, sizeof(*c->slots));
	c->events = calloc(c->ev_cap, sizeof(*c->events));
	init_amqp_pool(&c->pool, 4096);
	if (c->user == NULL || c->password == NULL || c->vhost == NULL || c->slots == NULL ||
	    c->events == NULL || (cfg->declare_queue && c->declare_queue == NULL) ||
	    pt_buf_append(&c->out, header, sizeof(header)) != PT_OK)
		goto fail;
	c->cfg.user = c->cfg.password = c->cfg.vhost = c->cfg.declare_queue = NULL;
	return c;
fail:
	amqp_client_free(c);
	return NULL;
}

void amqp_client_free(struct amqp_client *c)
{
	if (c == NULL)
		return;
	empty_amqp_pool(&c->pool);
	pt_buf_free(&c->in);
	pt_buf_free(&c->out);
	free(c->events);
	free(c->slots);
	free(c->declare_queue);
	free(c->vhost);
	free(c->password);
	free(c->user);
	free(c);
}

int amqp_client_feed(struct amqp_client *c, const void *data, size_t len)
{
	if (c->state == AMQP_CLIENT_STATE_FAILED || c->state == AMQP_CLIENT_STATE_CLOSED)
		return PT_OK;
	if (pt_buf_append(&c->in, data, len) != PT_OK) {
		amqp_client_nomem(c);
		return PT_NOMEM;
	}
	amqp_client_read_frames(c);
	return c->nomem ? PT_NOMEM : PT_OK;
}

void amqp_client_eof(struct amqp_client *c)
{
	if (c->state == AMQP_CLIENT_STATE_TUNE) {
		/* Without authentication_failure_close a refused login is just this. */
		amqp_client_fail(c, 0, true,
				 "the broker closed the connection during login "
				 "(wrong user or password?)");
		return;
	}
	amqp_client_fail(c, 0, true, "connection lost while waiting for %s",
			 amqp_client_states[c->state].awaited);
}

void amqp_client_timeout(struct amqp_client *c)
{
	amqp_client_fail(c, 0, true, "timed out waiting for %s",
			 amqp_client_states[c->state].awaited);
}

uint64_t amqp_client_timeout_ms(const struct amqp_client *c)
{
	if (c->state < AMQP_CLIENT_STATE_READY)
		return c->cfg.handshake_timeout_ms;
	if (c->state == AMQP_CLIENT_STATE_READY)
		return c->n_unconfirmed ? c->cfg.confirm_timeout_ms : 0;
	if (c->state == AMQP_CLIENT_STATE_CLOSING)
		return AMQP_CLIENT_CLOSE_TIMEOUT;
	return 0;
}

bool amqp_client_next_event(struct amqp_client *c, struct amqp_client_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	if (c->ev_len == 0)
		return false;
	ev->type = c->events[c->ev_head].type;
	ev->tag = c->events[c->ev_head].tag;
	c->ev_head = (c->ev_head + 1) % c->ev_cap;
	c->ev_len--;
	if (ev->type == AMQP_CLIENT_EV_CONFIRMED) {
		struct amqp_client_slot *s = amqp_client_slot(c, ev->tag);

		ev->cookie = s->cookie;
		ev->ok = s->ok;
		if (!s->ok)
			ev->reply = s->reply;
		s->state = SLOT_FREE;
	} else if (ev->type == AMQP_CLIENT_EV_FAILED) {
		ev->reply = c->failure;
	}
	return true;
}

struct pt_buf *amqp_client_output(struct amqp_client *c)
{
	return &c->out;
}

bool amqp_client_can_publish(const struct amqp_client *c)
{
	return c->state == AMQP_CLIENT_STATE_READY &&
	       c->slots[(c->next_tag - 1) % c->cfg.window].state == SLOT_FREE;
}

/* The content header frame: class, weight, body size, properties. */
static int amqp_client_send_header(struct amqp_client *c, const struct amqp_client_message *m,
				   uint64_t tag)
{
	amqp_table_entry_t tag_header = {amqp_cstring_bytes(AMQP_CLIENT_TAG_HEADER),
					 {.kind = AMQP_FIELD_KIND_I64, .value.i64 = (int64_t)tag}};
	amqp_basic_properties_t props = {._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
					 .delivery_mode = AMQP_DELIVERY_PERSISTENT};
	unsigned char *f = amqp_client_frame_open(c, AMQP_CLIENT_SMALL_PAYLOAD);
	int n;

	if (f == NULL)
		return PT_NOMEM;
	if (m->content_type != NULL) {
		props._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
		props.content_type = amqp_client_bytes(m->content_type);
	}
	if (m->mandatory) {
		props._flags |= AMQP_BASIC_HEADERS_FLAG;
		props.headers = (amqp_table_t){1, &tag_header};
	}
	put16(f + 7, AMQP_BASIC_CLASS);
	put16(f + 9, 0);
	put32(f + 11, (uint64_t)m->body_len >> 32);
	put32(f + 15, m->body_len);
	n = amqp_encode_properties(AMQP_BASIC_CLASS, &props,
				   (amqp_bytes_t){AMQP_CLIENT_SMALL_PAYLOAD - 12, f + 19});
	if (n < 0)
		pt_panic("amqp client: cannot encode properties: %s", amqp_error_string2(n));
	amqp_client_frame_close(c, f, AMQP_FRAME_HEADER, AMQP_CLIENT_CHANNEL, 12 + n);
	return PT_OK;
}

/* The body in frames of at most frame_max. */
static int amqp_client_send_body(struct amqp_client *c, const struct amqp_client_message *m)
{
	size_t chunk = c->frame_max - 8;

	for (size_t off = 0; off < m->body_len; off += chunk) {
		size_t n = PT_MIN(chunk, m->body_len - off);
		unsigned char *f = amqp_client_frame_open(c, n);

		if (f == NULL)
			return PT_NOMEM;
		memcpy(f + 7, (const char *)m->body + off, n);
		amqp_client_frame_close(c, f, AMQP_FRAME_BODY, AMQP_CLIENT_CHANNEL, n);
	}
	return PT_OK;
}

int amqp_client_publish(struct amqp_client *c, const struct amqp_client_message *m, uint64_t *tag)
{
	amqp_basic_publish_t publish = {.exchange = amqp_client_bytes(m->exchange ?: ""),
					.routing_key = amqp_client_bytes(m->routing_key ?: ""),
					.mandatory = m->mandatory};
	struct amqp_client_slot *s;

	if (!amqp_client_can_publish(c))
		return PT_AGAIN;
	if (!amqp_client_short_ok(m->exchange) || !amqp_client_short_ok(m->routing_key) ||
	    !amqp_client_short_ok(m->content_type))
		return PT_ERROR;
	if (amqp_client_send_method(c, AMQP_CLIENT_CHANNEL, AMQP_BASIC_PUBLISH_METHOD, &publish) !=
		PT_OK ||
	    amqp_client_send_header(c, m, c->next_tag) != PT_OK ||
	    amqp_client_send_body(c, m) != PT_OK) {
		amqp_client_nomem(c);
		return PT_NOMEM;
	}
	s = amqp_client_slot(c, c->next_tag);
	s->state = SLOT_PENDING;
	s->cookie = m->cookie;
	*tag = c->next_tag++;
	c->n_unconfirmed++;
	return PT_OK;
}

unsigned amqp_client_n_unconfirmed(const struct amqp_client *c)
{
	return c->n_unconfirmed;
}

void amqp_client_close(struct amqp_client *c)
{
	amqp_connection_close_t m = {AMQP_REPLY_SUCCESS, amqp_cstring_bytes("Petrel closing"), 0,
				     0};

	if (c->state != AMQP_CLIENT_STATE_READY)
		return;
	if (amqp_client_send_method(c, 0, AMQP_CONNECTION_CLOSE_METHOD, &m) == PT_OK)
		amqp_client_enter_state(c, AMQP_CLIENT_STATE_CLOSING);
}

uint32_t amqp_client_frame_max(const struct amqp_client *c)
{
	return c->frame_max;
}
