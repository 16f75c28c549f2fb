/*
 * net_amqp_client_test.c -- the AMQP publisher, without sockets.
 *
 * A scripted broker: its frames are built with librabbitmq's encoder (a
 * codec nobody here wrote), fed to the client, and every frame the client
 * writes is decoded with librabbitmq's decoder and checked field by field.
 * The handshake and the confirms are also fed cut at every byte and one
 * byte at a time: where a read ends must never change what the client
 * writes or decides.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amqp.h>
#include <amqp_framing.h>

#include "net/amqp_client.h"

#define CH 1

/* --- the broker's side --------------------------------------------------- */

static void put_frame_header(struct pt_buf *b, int type, uint16_t channel, uint32_t n)
{
	unsigned char h[7] = {type, channel >> 8, channel, n >> 24, n >> 16, n >> 8, n};

	cr_assert_eq(pt_buf_append(b, h, 7), PT_OK);
}

static void broker_method(struct pt_buf *b, uint16_t channel, amqp_method_number_t id, void *args)
{
	unsigned char payload[8192];
	int n;

	payload[0] = id >> 24;
	payload[1] = id >> 16;
	payload[2] = id >> 8;
	payload[3] = id;
	n = amqp_encode_method(id, args, (amqp_bytes_t){sizeof(payload) - 4, payload + 4});
	cr_assert_geq(n, 0, "encode %s", amqp_method_name(id));
	put_frame_header(b, AMQP_FRAME_METHOD, channel, 4 + n);
	pt_buf_append(b, payload, 4 + n);
	pt_buf_append(b, "\xce", 1);
}

static void broker_start(struct pt_buf *b, const char *mechanisms)
{
	amqp_connection_start_t m = {
	    0, 9, {0, NULL}, amqp_cstring_bytes(mechanisms), amqp_cstring_bytes("en_US")};

	broker_method(b, 0, AMQP_CONNECTION_START_METHOD, &m);
}

static void broker_tune(struct pt_buf *b, uint32_t frame_max)
{
	amqp_connection_tune_t m = {2047, frame_max, 60};

	broker_method(b, 0, AMQP_CONNECTION_TUNE_METHOD, &m);
}

/* Open-ok, channel open-ok, select-ok, [declare-ok]. */
static void broker_open(struct pt_buf *b, bool declared)
{
	amqp_connection_open_ok_t open = {amqp_cstring_bytes("")};
	amqp_channel_open_ok_t channel = {amqp_cstring_bytes("")};
	amqp_confirm_select_ok_t select = {0};
	amqp_queue_declare_ok_t declare = {amqp_cstring_bytes("logs"), 0, 0};

	broker_method(b, 0, AMQP_CONNECTION_OPEN_OK_METHOD, &open);
	broker_method(b, CH, AMQP_CHANNEL_OPEN_OK_METHOD, &channel);
	broker_method(b, CH, AMQP_CONFIRM_SELECT_OK_METHOD, &select);
	if (declared)
		broker_method(b, CH, AMQP_QUEUE_DECLARE_OK_METHOD, &declare);
}

static void broker_handshake(struct pt_buf *b, uint32_t frame_max, bool declared)
{
	broker_start(b, "AMQPLAIN PLAIN");
	broker_tune(b, frame_max);
	broker_open(b, declared);
}

static void broker_ack(struct pt_buf *b, uint64_t tag, bool multiple, bool ok)
{
	amqp_basic_ack_t ack = {tag, multiple};
	amqp_basic_nack_t nack = {tag, multiple, 0};

	if (ok)
		broker_method(b, CH, AMQP_BASIC_ACK_METHOD, &ack);
	else
		broker_method(b, CH, AMQP_BASIC_NACK_METHOD, &nack);
}

static void broker_close(struct pt_buf *b, bool connection, uint16_t code, const char *text)
{
	amqp_connection_close_t m = {code, amqp_cstring_bytes(text), 60, 40};

	broker_method(b, connection ? 0 : CH,
		      connection ? AMQP_CONNECTION_CLOSE_METHOD : AMQP_CHANNEL_CLOSE_METHOD, &m);
}

/* Basic.Return of the message published with tag (x-petrel-tag), body n bytes. */
static void broker_return(struct pt_buf *b, uint64_t tag, size_t n)
{
	amqp_basic_return_t ret = {312, amqp_cstring_bytes("NO_ROUTE"), amqp_cstring_bytes(""),
				   amqp_cstring_bytes("nowhere")};
	amqp_table_entry_t e = {amqp_cstring_bytes("x-petrel-tag"),
				{.kind = AMQP_FIELD_KIND_I64, .value.i64 = (int64_t)tag}};
	amqp_basic_properties_t props = {._flags = AMQP_BASIC_HEADERS_FLAG |
						   AMQP_BASIC_DELIVERY_MODE_FLAG,
					 .headers = {1, &e},
					 .delivery_mode = 2};
	unsigned char payload[512] = {0, 60, 0, 0};
	int len;

	broker_method(b, CH, AMQP_BASIC_RETURN_METHOD, &ret);
	for (int i = 0; i < 8; i++)
		payload[4 + i] = (uint64_t)n >> (56 - 8 * i);
	len = amqp_encode_properties(AMQP_BASIC_CLASS, &props,
				     (amqp_bytes_t){sizeof(payload) - 12, payload + 12});
	cr_assert_geq(len, 0);
	put_frame_header(b, AMQP_FRAME_HEADER, CH, 12 + len);
	pt_buf_append(b, payload, 12 + len);
	pt_buf_append(b, "\xce", 1);
	if (n > 0) {
		put_frame_header(b, AMQP_FRAME_BODY, CH, n);
		for (size_t i = 0; i < n; i++)
			pt_buf_append(b, "r", 1);
		pt_buf_append(b, "\xce", 1);
	}
}

/* --- the client's side --------------------------------------------------- */

struct fx {
	struct amqp_client *c;
	struct amqp_client_event events[64];
	size_t n_events;
	amqp_pool_t pool;
	size_t out_off; /* frames of the output already checked */
};

static struct fx fx;

static void setup(void)
{
	memset(&fx, 0, sizeof(fx));
	init_amqp_pool(&fx.pool, 4096);
}

static void teardown(void)
{
	amqp_client_free(fx.c);
	empty_amqp_pool(&fx.pool);
}

static void take_events(void)
{
	struct amqp_client_event ev;

	while (amqp_client_next_event(fx.c, &ev)) {
		cr_assert_lt(fx.n_events, PT_ARRAY_LEN(fx.events));
		fx.events[fx.n_events++] = ev;
	}
}

/* Feed b: whole (step 0), or in pieces of step bytes; events after each. */
static void feed(struct pt_buf *b, size_t step)
{
	size_t n = step ? step : b->len;

	for (size_t off = 0; off < b->len; off += n) {
		cr_assert_eq(amqp_client_feed(fx.c, b->data + off, PT_MIN(n, b->len - off)), PT_OK);
		take_events();
	}
	pt_buf_free(b);
}

struct frame {
	int type;
	uint16_t channel;
	const unsigned char *payload;
	uint32_t len;
};

/* The next frame the client wrote. */
static struct frame next_frame(void)
{
	struct pt_buf *out = amqp_client_output(fx.c);
	const unsigned char *p = (const unsigned char *)out->data + fx.out_off;
	struct frame f;

	cr_assert_geq(out->len - fx.out_off, 8, "no frame left in the output");
	f.type = p[0];
	f.channel = p[1] << 8 | p[2];
	f.len = (uint32_t)p[3] << 24 | p[4] << 16 | p[5] << 8 | p[6];
	cr_assert_geq(out->len - fx.out_off, 8 + f.len);
	cr_assert_eq(p[7 + f.len], 0xce, "frame end");
	f.payload = p + 7;
	fx.out_off += 8 + f.len;
	return f;
}

static void *expect_method(uint16_t channel, amqp_method_number_t id)
{
	struct frame f = next_frame();
	amqp_method_number_t got;
	void *args;

	cr_assert_eq(f.type, AMQP_FRAME_METHOD);
	got = (amqp_method_number_t)f.payload[0] << 24 | f.payload[1] << 16 | f.payload[2] << 8 |
	      f.payload[3];
	cr_assert_eq(got, id, "want %s, got %s", amqp_method_name(id), amqp_method_name(got));
	cr_assert_eq(f.channel, channel);
	cr_assert_eq(amqp_decode_method(id, &fx.pool,
					(amqp_bytes_t){f.len - 4, (void *)(f.payload + 4)}, &args),
		     AMQP_STATUS_OK);
	return args;
}

static void expect_output_done(void)
{
	cr_assert_eq(amqp_client_output(fx.c)->len, fx.out_off, "%zu unexpected bytes",
		     amqp_client_output(fx.c)->len - fx.out_off);
}

static bool bytes_eq(amqp_bytes_t b, const char *s)
{
	return b.len == strlen(s) && memcmp(b.bytes, s, b.len) == 0;
}

static void new_client(const char *declare, unsigned window)
{
	struct amqp_client_config cfg = {.user = "petrel",
					 .password = "s3cret",
					 .vhost = "/logs",
					 .declare_queue = declare,
					 .window = window};

	fx.c = amqp_client_new(&cfg);
	cr_assert_not_null(fx.c);
}

/* A new client in place of the current one, for tests that loop. */
static void fresh_client(const char *declare, unsigned window)
{
	amqp_client_free(fx.c);
	fx.c = NULL;
	fx.n_events = 0;
	fx.out_off = 0;
	new_client(declare, window);
}

/* Feed b cut in two at cut, events after each part; b is freed.  Returns
 * the number of events the first part raised. */
static size_t feed_cut(struct pt_buf *b, size_t cut)
{
	size_t first;

	cr_assert_eq(amqp_client_feed(fx.c, b->data, cut), PT_OK);
	take_events();
	first = fx.n_events;
	cr_assert_eq(amqp_client_feed(fx.c, b->data + cut, b->len - cut), PT_OK);
	take_events();
	pt_buf_free(b);
	return first;
}

/* Run the handshake (fed in pieces of step) and check every frame. */
static void handshake(const char *declare, uint32_t broker_frame_max, size_t step)
{
	struct pt_buf b = PT_BUF_INIT;
	amqp_connection_start_ok_t *start_ok;
	amqp_connection_tune_ok_t *tune_ok;
	amqp_connection_open_t *open;
	amqp_queue_declare_t *qd;

	cr_assert_eq(amqp_client_output(fx.c)->len, 8);
	cr_assert_eq(memcmp(amqp_client_output(fx.c)->data, "AMQP\0\0\x09\x01", 8), 0);
	fx.out_off = 8;
	broker_handshake(&b, broker_frame_max, declare != NULL);
	feed(&b, step);
	start_ok = expect_method(0, AMQP_CONNECTION_START_OK_METHOD);
	cr_assert(bytes_eq(start_ok->mechanism, "PLAIN"));
	cr_assert_eq(start_ok->response.len, 14);
	cr_assert_eq(memcmp(start_ok->response.bytes, "\0petrel\0s3cret", 14), 0);
	tune_ok = expect_method(0, AMQP_CONNECTION_TUNE_OK_METHOD);
	cr_assert_eq(tune_ok->frame_max, PT_MIN(broker_frame_max, 131072u));
	cr_assert_eq(tune_ok->heartbeat, 0);
	cr_assert_eq(tune_ok->channel_max, 2047);
	open = expect_method(0, AMQP_CONNECTION_OPEN_METHOD);
	cr_assert(bytes_eq(open->virtual_host, "/logs"));
	expect_method(CH, AMQP_CHANNEL_OPEN_METHOD);
	cr_assert_eq(
	    ((amqp_confirm_select_t *)expect_method(CH, AMQP_CONFIRM_SELECT_METHOD))->nowait, 0);
	if (declare != NULL) {
		qd = expect_method(CH, AMQP_QUEUE_DECLARE_METHOD);
		cr_assert(bytes_eq(qd->queue, declare));
		cr_assert(qd->durable && !qd->passive && !qd->exclusive && !qd->auto_delete);
	}
	expect_output_done();
	cr_assert_eq(fx.n_events, 1);
	cr_assert_eq(fx.events[0].type, AMQP_CLIENT_EV_READY);
	cr_assert_eq(amqp_client_frame_max(fx.c), PT_MIN(broker_frame_max, 131072u));
	cr_assert_str_eq(amqp_client_strstate(fx.c), "READY");
	fx.n_events = 0;
}

static uint64_t publish(const char *body, bool mandatory, intptr_t cookie)
{
	struct amqp_client_message m = {.exchange = "",
					.routing_key = "logs",
					.content_type = "application/json",
					.mandatory = mandatory,
					.body = body,
					.body_len = strlen(body),
					.cookie = (void *)cookie};
	uint64_t tag = 0;

	cr_assert_eq(amqp_client_publish(fx.c, &m, &tag), PT_OK);
	return tag;
}

/* Check one published message's frames: publish, header, body frames. */
static void expect_publish(const char *body, bool mandatory, uint64_t tag, size_t frame_body_max)
{
	amqp_basic_publish_t *p = expect_method(CH, AMQP_BASIC_PUBLISH_METHOD);
	amqp_basic_properties_t *props;
	struct frame h = next_frame();
	size_t len = strlen(body), got = 0;
	uint64_t size = 0;
	void *decoded;

	cr_assert(bytes_eq(p->exchange, "") && bytes_eq(p->routing_key, "logs"));
	cr_assert_eq(p->mandatory, mandatory);
	cr_assert_eq(h.type, AMQP_FRAME_HEADER);
	cr_assert_eq(h.channel, CH);
	cr_assert_eq(h.payload[0] << 8 | h.payload[1], AMQP_BASIC_CLASS);
	for (int i = 0; i < 8; i++)
		size = size << 8 | h.payload[4 + i];
	cr_assert_eq(size, len);
	cr_assert_eq(amqp_decode_properties(AMQP_BASIC_CLASS, &fx.pool,
					    (amqp_bytes_t){h.len - 12, (void *)(h.payload + 12)},
					    &decoded),
		     AMQP_STATUS_OK);
	props = decoded;
	cr_assert(props->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG);
	cr_assert_eq(props->delivery_mode, 2);
	cr_assert(bytes_eq(props->content_type, "application/json"));
	cr_assert_eq(!!(props->_flags & AMQP_BASIC_HEADERS_FLAG), mandatory);
	if (mandatory) {
		cr_assert_eq(props->headers.num_entries, 1);
		cr_assert_eq(props->headers.entries[0].value.value.i64, (int64_t)tag);
	}
	while (got < len) {
		struct frame f = next_frame();

		cr_assert_eq(f.type, AMQP_FRAME_BODY);
		cr_assert_eq(f.len, PT_MIN(frame_body_max, len - got));
		cr_assert_eq(memcmp(f.payload, body + got, f.len), 0);
		got += f.len;
	}
}

static void expect_confirmed(size_t i, intptr_t cookie, bool ok, unsigned code, const char *text)
{
	cr_assert_lt(i, fx.n_events);
	cr_assert_eq(fx.events[i].type, AMQP_CLIENT_EV_CONFIRMED, "event %zu is %d", i,
		     fx.events[i].type);
	cr_assert_eq((intptr_t)fx.events[i].cookie, cookie, "event %zu", i);
	cr_assert_eq(fx.events[i].ok, ok, "event %zu", i);
	if (!ok) {
		cr_assert_eq(fx.events[i].reply.code, code, "event %zu: %u %s", i,
			     fx.events[i].reply.code, fx.events[i].reply.text);
		cr_assert_str_eq(fx.events[i].reply.text, text);
	}
}

static void expect_failed(size_t i, unsigned code, bool local, const char *text)
{
	cr_assert_lt(i, fx.n_events);
	cr_assert_eq(fx.events[i].type, AMQP_CLIENT_EV_FAILED);
	cr_assert_eq(fx.events[i].reply.code, code);
	cr_assert_eq(fx.events[i].reply.local, local);
	cr_assert_str_eq(fx.events[i].reply.text, text);
	cr_assert_str_eq(amqp_client_strstate(fx.c), "FAILED");
	cr_assert_eq(amqp_client_n_unconfirmed(fx.c), 0);
}

TestSuite(amqp_client, .init = setup, .fini = teardown);

Test(amqp_client, handshake_logs_in_opens_confirms_and_declares)
{
	new_client("logs", 0);
	handshake("logs", 131072, 0);
	cr_assert_eq(amqp_client_timeout_ms(fx.c), 0, "nothing awaited when idle");
}

Test(amqp_client, handshake_takes_the_smaller_frame_max_and_skips_declare)
{
	new_client(NULL, 0);
	handshake(NULL, 8192, 0);
}

Test(amqp_client, handshake_fed_one_byte_at_a_time)
{
	new_client("logs", 0);
	handshake("logs", 131072, 1);
}

Test(amqp_client, handshake_cut_at_every_byte)
{
	struct pt_buf whole = PT_BUF_INIT;
	size_t len;

	broker_handshake(&whole, 131072, true);
	len = whole.len;
	pt_buf_free(&whole);
	for (size_t cut = 0; cut <= len; cut++) {
		struct pt_buf b = PT_BUF_INIT;

		fresh_client("logs", 0);
		broker_handshake(&b, 131072, true);
		cr_assert_eq(feed_cut(&b, cut), cut == len, "READY before the last byte (cut %zu)",
			     cut);
		cr_assert_eq(fx.n_events, 1, "cut %zu", cut);
		cr_assert_eq(fx.events[0].type, AMQP_CLIENT_EV_READY);
		cr_assert_str_eq(amqp_client_strstate(fx.c), "READY");
	}
}

Test(amqp_client, publish_writes_persistent_message_in_frame_max_pieces)
{
	char big[10001];

	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	new_client(NULL, 0);
	handshake(NULL, 4096, 0);
	cr_assert_eq(publish("{\"type\":\"Delivery\"}", false, 1), 1);
	cr_assert_eq(publish(big, true, 2), 2);
	cr_assert_eq(publish("", false, 3), 3);
	expect_publish("{\"type\":\"Delivery\"}", false, 1, 4088);
	expect_publish(big, true, 2, 4088);
	expect_publish("", false, 3, 4088);
	expect_output_done();
	cr_assert_eq(amqp_client_n_unconfirmed(fx.c), 3);
	cr_assert_eq(amqp_client_timeout_ms(fx.c), 60000);
	cr_assert_eq(fx.n_events, 0, "no outcome before the broker's confirm");
}

Test(amqp_client, acks_single_multiple_and_out_of_order)
{
	struct pt_buf b = PT_BUF_INIT;

	new_client(NULL, 0);
	handshake(NULL, 131072, 0);
	for (int i = 1; i <= 5; i++)
		cr_assert_eq(publish("m", false, 100 + i), (uint64_t)i);
	broker_ack(&b, 3, false, true); /* out of order */
	broker_ack(&b, 2, true, true);	/* 1 and 2; 3 already done */
	broker_ack(&b, 5, false, true);
	broker_ack(&b, 4, false, true);
	feed(&b, 0);
	cr_assert_eq(fx.n_events, 5);
	expect_confirmed(0, 103, true, 0, NULL);
	expect_confirmed(1, 101, true, 0, NULL);
	expect_confirmed(2, 102, true, 0, NULL);
	expect_confirmed(3, 105, true, 0, NULL);
	expect_confirmed(4, 104, true, 0, NULL);
	cr_assert_eq(amqp_client_n_unconfirmed(fx.c), 0);
	cr_assert_eq(amqp_client_timeout_ms(fx.c), 0);
}

Test(amqp_client, nack_fails_only_the_messages_it_names)
{
	struct pt_buf b = PT_BUF_INIT;

	new_client(NULL, 0);
	handshake(NULL, 131072, 0);
	for (int i = 1; i <= 3; i++)
		publish("m", false, i);
	broker_ack(&b, 2, true, false);
	broker_ack(&b, 3, false, true);
	feed(&b, 0);
	cr_assert_eq(fx.n_events, 3);
	expect_confirmed(0, 1, false, 0, "the broker refused the message (basic.nack)");
	expect_confirmed(1, 2, false, 0, "the broker refused the message (basic.nack)");
	expect_confirmed(2, 3, true, 0, NULL);
	cr_assert_str_eq(amqp_client_strstate(fx.c), "READY");
}

Test(amqp_client, returned_mandatory_message_fails_at_its_ack)
{
	struct pt_buf b = PT_BUF_INIT;

	new_client(NULL, 0);
	handshake(NULL, 131072, 0);
	publish("routed", true, 1);
	publish("unroutable", true, 2);
	broker_return(&b, 2, 10);
	broker_ack(&b, 2, true, true);
	feed(&b, 1);
	cr_assert_eq(fx.n_events, 2);
	expect_confirmed(0, 1, true, 0, NULL);
	expect_confirmed(
	    1, 2, false, 312,
	    "the broker returned the message (exchange \"\", routing key \"nowhere\"): "
	    "NO_ROUTE");
}

Test(amqp_client, confirms_cut_at_every_byte)
{
	struct pt_buf whole = PT_BUF_INIT;
	size_t len;

	broker_return(&whole, 2, 3);
	broker_ack(&whole, 2, true, true);
	broker_ack(&whole, 3, false, false);
	len = whole.len;
	pt_buf_free(&whole);
	for (size_t cut = 0; cut <= len; cut++) {
		struct pt_buf b = PT_BUF_INIT;

		fresh_client(NULL, 0);
		handshake(NULL, 131072, 0);
		for (int i = 1; i <= 3; i++)
			publish("m", true, i);
		broker_return(&b, 2, 3);
		broker_ack(&b, 2, true, true);
		broker_ack(&b, 3, false, false);
		feed_cut(&b, cut);
		cr_assert_eq(fx.n_events, 3, "cut %zu", cut);
		expect_confirmed(0, 1, true, 0, NULL);
		cr_assert_eq(fx.events[1].ok, false, "cut %zu", cut);
		cr_assert_eq(fx.events[1].reply.code, 312);
		expect_confirmed(2, 3, false, 0, "the broker refused the message (basic.nack)");
		cr_assert_str_eq(amqp_client_strstate(fx.c), "READY");
	}
}

Test(amqp_client, channel_close_fails_every_unconfirmed_message_with_the_brokers_words)
{
	struct pt_buf b = PT_BUF_INIT;
	const char *why =
	    "the broker closed the channel: 404 NOT_FOUND - no exchange 'x' in vhost '/'";

	new_client(NULL, 0);
	handshake(NULL, 131072, 0);
	publish("a", false, 1);
	publish("b", false, 2);
	fx.out_off = amqp_client_output(fx.c)->len;
	broker_ack(&b, 1, false, true);
	broker_close(&b, false, 404, "NOT_FOUND - no exchange 'x' in vhost '/'");
	broker_ack(&b, 2, false, true); /* after the failure: ignored */
	feed(&b, 0);
	cr_assert_eq(fx.n_events, 3);
	expect_confirmed(0, 1, true, 0, NULL);
	expect_confirmed(1, 2, false, 404, why);
	expect_failed(2, 404, false, why);
	expect_method(CH, AMQP_CHANNEL_CLOSE_OK_METHOD);
	expect_output_done();
	cr_assert_not(amqp_client_can_publish(fx.c));
}

Test(amqp_client, refused_login_reports_the_brokers_reason)
{
	struct pt_buf b = PT_BUF_INIT;

	new_client(NULL, 0);
	broker_start(&b, "PLAIN AMQPLAIN");
	broker_close(&b, true, 403,
		     "ACCESS_REFUSED - Login was refused using authentication "
		     "mechanism PLAIN.");
	feed(&b, 0);
	cr_assert_eq(fx.n_events, 1);
	expect_failed(0, 403, false,
		      "the broker closed the connection: 403 ACCESS_REFUSED - Login was refused "
		      "using authentication mechanism PLAIN.");
	fx.out_off = 8;
	expect_method(0, AMQP_CONNECTION_START_OK_METHOD);
	expect_method(0, AMQP_CONNECTION_CLOSE_OK_METHOD);
	expect_output_done();
}

Test(amqp_client, eof_during_login_says_so)
{
	struct pt_buf b = PT_BUF_INIT;

	new_client(NULL, 0);
	broker_start(&b, "PLAIN");
	feed(&b, 0);
	amqp_client_eof(fx.c);
	take_events();
	expect_failed(0, 0, true,
		      "the broker closed the connection during login (wrong user or password?)");
}

Test(amqp_client, no_plain_mechanism_fails)
{
	struct pt_buf b = PT_BUF_INIT;

	new_client(NULL, 0);
	broker_start(&b, "EXTERNAL AMQPLAIN");
	feed(&b, 0);
	expect_failed(0, 0, true,
		      "the broker offers no PLAIN login (mechanisms: EXTERNAL AMQPLAIN)");
}

Test(amqp_client, timeout_and_eof_fail_unconfirmed_messages)
{
	new_client(NULL, 0);
	cr_assert_eq(amqp_client_timeout_ms(fx.c), 10000);
	handshake(NULL, 131072, 0);
	publish("a", false, 7);
	amqp_client_timeout(fx.c);
	take_events();
	cr_assert_eq(fx.n_events, 2);
	expect_confirmed(0, 7, false, 0, "timed out waiting for publisher confirms");
	expect_failed(1, 0, true, "timed out waiting for publisher confirms");
	amqp_client_eof(fx.c); /* nothing more after FAILED */
	take_events();
	cr_assert_eq(fx.n_events, 2);
}

Test(amqp_client, protocol_errors_fail_the_session)
{
	static const struct {
		const char *name;
		const char *text;
	} cases[] = {
	    {"bad frame end", "AMQP protocol error in READY: a frame does not end with 0xCE"},
	    {"ack never published",
	     "AMQP protocol error in READY: basic.ack for delivery tag 9 that is not awaited"},
	    {"multiple ack beyond", "AMQP protocol error in READY: basic.ack up to delivery tag "
				    "9, never published"},
	    {"huge frame",
	     "AMQP protocol error in READY: a frame of 200000 bytes, over frame_max 131072"},
	    {"unexpected method", "AMQP protocol error in READY: unexpected "
				  "AMQP_CONNECTION_TUNE_METHOD on channel 0 while waiting for "
				  "publisher confirms"},
	    {"unknown return", "AMQP protocol error in READY: basic.return of a message we did "
			       "not publish"},
	    {"wrong channel", "AMQP protocol error in READY: a frame of type 1 on channel 7"},
	};

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		struct pt_buf b = PT_BUF_INIT;

		fresh_client(NULL, 0);
		handshake(NULL, 131072, 0);
		publish("a", false, 1);
		if (i == 0) {
			broker_ack(&b, 1, false, true);
			b.data[b.len - 1] = 'x';
		} else if (i == 1) {
			broker_ack(&b, 9, false, true);
		} else if (i == 2) {
			broker_ack(&b, 9, true, true);
		} else if (i == 3) {
			put_frame_header(&b, AMQP_FRAME_BODY, CH, 200000);
		} else if (i == 4) {
			broker_tune(&b, 4096);
		} else if (i == 5) {
			broker_return(&b, 42, 0); /* a tag never published */
		} else {
			broker_close(&b, false, 406, "PRECONDITION_FAILED");
			b.data[2] = 7; /* channel 1 -> 7 */
		}
		feed(&b, 0);
		cr_assert_eq(fx.n_events, 2, "%s", cases[i].name);
		expect_confirmed(0, 1, false, 0, cases[i].text);
		expect_failed(1, 0, true, cases[i].text);
	}
}

Test(amqp_client, window_bounds_unconfirmed_publishes)
{
	struct pt_buf b = PT_BUF_INIT;
	struct amqp_client_message m = {.routing_key = "logs", .body = "x", .body_len = 1};
	uint64_t tag;

	new_client(NULL, 2);
	handshake(NULL, 131072, 0);
	publish("a", false, 1);
	publish("b", false, 2);
	cr_assert_not(amqp_client_can_publish(fx.c));
	cr_assert_eq(amqp_client_publish(fx.c, &m, &tag), PT_AGAIN);
	broker_ack(&b, 1, false, true);
	cr_assert_eq(amqp_client_feed(fx.c, b.data, b.len), PT_OK);
	pt_buf_free(&b);
	/* The slot is free only once its CONFIRMED was taken. */
	cr_assert_not(amqp_client_can_publish(fx.c));
	take_events();
	cr_assert(amqp_client_can_publish(fx.c));
	cr_assert_eq(publish("c", false, 3), 3);
	cr_assert_not(amqp_client_can_publish(fx.c));
}

Test(amqp_client, close_waits_for_close_ok)
{
	struct pt_buf b = PT_BUF_INIT;
	amqp_connection_close_ok_t ok = {0};
	amqp_connection_close_t *close;

	new_client(NULL, 0);
	handshake(NULL, 131072, 0);
	amqp_client_close(fx.c);
	close = expect_method(0, AMQP_CONNECTION_CLOSE_METHOD);
	cr_assert_eq(close->reply_code, 200);
	cr_assert_eq(amqp_client_timeout_ms(fx.c), 5000);
	broker_method(&b, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
	feed(&b, 0);
	cr_assert_eq(fx.n_events, 1);
	cr_assert_eq(fx.events[0].type, AMQP_CLIENT_EV_CLOSED);
	cr_assert_str_eq(amqp_client_strstate(fx.c), "CLOSED");
}

Test(amqp_client, long_strings_are_refused)
{
	char name[300];
	struct amqp_client_config cfg = {.declare_queue = name};
	struct amqp_client_message m = {.routing_key = name};
	uint64_t tag;

	memset(name, 'q', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	cr_assert_null(amqp_client_new(&cfg));
	new_client(NULL, 0);
	handshake(NULL, 131072, 0);
	cr_assert_eq(amqp_client_publish(fx.c, &m, &tag), PT_ERROR);
	expect_output_done();
	cr_assert(amqp_client_can_publish(fx.c));
}

Test(amqp_client, url_parse)
{
	struct amqp_client_url u;
	char err[256];

	cr_assert_eq(amqp_client_url_parse("amqp://h", &u, err, sizeof(err)), PT_OK);
	cr_assert_str_eq(u.user, "guest");
	cr_assert_str_eq(u.password, "guest");
	cr_assert_str_eq(u.host, "h");
	cr_assert_eq(u.port, 5672);
	cr_assert_str_eq(u.vhost, "/");
	cr_assert_not(u.tls);
	amqp_client_url_free(&u);
	cr_assert_eq(amqp_client_url_parse("amqp://u%40x:p%2f@[::1]:5673/", &u, err, sizeof(err)),
		     PT_OK);
	cr_assert_str_eq(u.user, "u@x");
	cr_assert_str_eq(u.password, "p/");
	cr_assert_str_eq(u.host, "::1");
	cr_assert_eq(u.port, 5673);
	cr_assert_str_eq(u.vhost, "/");
	amqp_client_url_free(&u);
	cr_assert_eq(amqp_client_url_parse("amqps://h/logs%2fprod", &u, err, sizeof(err)), PT_OK);
	cr_assert_eq(u.port, 5671);
	cr_assert(u.tls);
	cr_assert_str_eq(u.vhost, "logs/prod");
	amqp_client_url_free(&u);
	cr_assert_eq(amqp_client_url_parse("http://h", &u, err, sizeof(err)), PT_ERROR);
	cr_assert_str_eq(err, "not an amqp:// or amqps:// URL (amqp://user:password@host:port/"
			      "vhost): http://h");
	cr_assert_eq(amqp_client_url_parse("amqp://h:port", &u, err, sizeof(err)), PT_ERROR);
}

Test(amqp_client, longest_user_and_password_go_whole_into_plain)
{
	struct pt_buf b = PT_BUF_INIT;
	char user[256], password[256], want[512];
	struct amqp_client_config cfg = {.user = user, .password = password};
	amqp_connection_start_ok_t *ok;

	memset(user, 'u', 255);
	memset(password, 'p', 255);
	user[255] = password[255] = '\0';
	want[0] = '\0';
	memcpy(want + 1, user, 255);
	want[256] = '\0';
	memcpy(want + 257, password, 255);
	fx.c = amqp_client_new(&cfg);
	cr_assert_not_null(fx.c);
	fx.out_off = 8;
	broker_start(&b, "PLAIN");
	feed(&b, 0);
	ok = expect_method(0, AMQP_CONNECTION_START_OK_METHOD);
	cr_assert_eq(ok->response.len, 512);
	cr_assert_eq(memcmp(ok->response.bytes, want, 512), 0);
}
