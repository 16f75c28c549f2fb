/*
 * amqp_client_fuzz.c -- libFuzzer entry point for the AMQP publisher
 * (net/amqp_client.c): the input plays the broker.
 *
 * Input layout: two bytes choose how the rest is fed,
 *
 *   byte 0  bits 0-4   piece size - 1: broker bytes are fed in pieces of 1..32
 *           bits 5-6   window - 1 (1..4)
 *   byte 1  bit 0      declare a queue
 *           bit 1      publishes are mandatory
 *           bit 2      end with EOF rather than a timeout
 *           bit 3      close (Connection.Close) once every publish is settled
 *
 * and the bytes after them are what the broker sends.  The session is
 * driven as the shard does: after every piece, events are taken and, once
 * READY, messages (one of them over frame_max) are published while the
 * window has room, up to eight.
 *
 * Besides the sanitizers, the run aborts when a promise is broken:
 *   - every frame the client writes is whole: a known type, channel 0 or
 *     1, a payload within frame_max - 8, and the 0xCE end;
 *   - READY comes at most once and before any CONFIRMED; every tag
 *     publish() returned gets exactly one CONFIRMED, with its cookie; a
 *     refused one has a reply text; after the final EOF or timeout no
 *     publish is left unconfirmed;
 *   - nothing follows FAILED or CLOSED; a FAILED has a reply text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/amqp_client.h"

#define MAX_PUBLISH 8

struct run {
	struct amqp_client *c;
	bool ready, over, close_when_done;
	unsigned n_published, n_confirmed;
	bool confirmed[MAX_PUBLISH + 1];
	bool header_seen;
};

static void fuzz_fail(const char *what)
{
	fprintf(stderr, "amqp_client_fuzz: %s\n", what);
	abort();
}

/* Every whole frame the client wrote since the last check is well formed. */
static void check_output(struct run *r)
{
	struct pt_buf *out = amqp_client_output(r->c);
	const unsigned char *p = (const unsigned char *)out->data;
	size_t off = 0;

	if (!r->header_seen) {
		if (out->len < 8 || memcmp(p, "AMQP\0\0\x09\x01", 8) != 0)
			fuzz_fail("no protocol header");
		off = 8;
		r->header_seen = true;
	}
	while (off < out->len) {
		uint32_t n;

		if (out->len - off < 8)
			fuzz_fail("a frame cut short");
		n = (uint32_t)p[off + 3] << 24 | p[off + 4] << 16 | p[off + 5] << 8 | p[off + 6];
		if (p[off] < 1 || p[off] > 3 || (p[off + 1] != 0 || p[off + 2] > 1))
			fuzz_fail("bad frame type or channel");
		if (n + 8 > amqp_client_frame_max(r->c) || out->len - off < (size_t)n + 8)
			fuzz_fail("frame over frame_max or cut short");
		if (p[off + 7 + n] != 0xce)
			fuzz_fail("frame end is not 0xCE");
		off += (size_t)n + 8;
	}
	/* The shard sends and consumes; so do we. */
	pt_buf_consume(out, out->len);
}

static void take_events(struct run *r)
{
	struct amqp_client_event ev;

	while (amqp_client_next_event(r->c, &ev)) {
		if (r->over)
			fuzz_fail("an event after FAILED or CLOSED");
		switch (ev.type) {
		case AMQP_CLIENT_EV_READY:
			if (r->ready || r->n_confirmed > 0)
				fuzz_fail("READY twice or late");
			r->ready = true;
			break;
		case AMQP_CLIENT_EV_CONFIRMED:
			if (ev.tag < 1 || ev.tag > r->n_published || r->confirmed[ev.tag])
				fuzz_fail("CONFIRMED for a tag not awaited");
			if ((uintptr_t)ev.cookie != ev.tag)
				fuzz_fail("CONFIRMED with the wrong cookie");
			if (!ev.ok && ev.reply.text[0] == '\0')
				fuzz_fail("a refusal without a reason");
			r->confirmed[ev.tag] = true;
			r->n_confirmed++;
			break;
		case AMQP_CLIENT_EV_FAILED:
			if (ev.reply.text[0] == '\0')
				fuzz_fail("FAILED without a reason");
			r->over = true;
			break;
		case AMQP_CLIENT_EV_CLOSED:
			r->over = true;
			break;
		default:
			fuzz_fail("unknown event");
		}
	}
}

static void publish_more(struct run *r, bool mandatory)
{
	static char big[5000];
	uint64_t tag;

	memset(big, 'b', sizeof(big));
	while (r->ready && !r->over && r->n_published < MAX_PUBLISH &&
	       amqp_client_can_publish(r->c)) {
		struct amqp_client_message m = {
		    .routing_key = "logs",
		    .content_type = "application/json",
		    .mandatory = mandatory,
		    .body = big,
		    .body_len = r->n_published % 3 == 1 ? sizeof(big) : r->n_published,
		    .cookie = (void *)(uintptr_t)(r->n_published + 1),
		};

		if (amqp_client_publish(r->c, &m, &tag) != PT_OK)
			fuzz_fail("publish refused while can_publish");
		if (tag != ++r->n_published)
			fuzz_fail("delivery tags not 1, 2, ...");
	}
	if (r->close_when_done && r->n_published == MAX_PUBLISH && r->n_confirmed == r->n_published)
		amqp_client_close(r->c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct amqp_client_config cfg = {.user = "u", .password = "p", .frame_max = 4096};
	struct run r = {0};
	size_t piece;
	bool mandatory;

	if (size < 2)
		return 0;
	piece = (data[0] & 31) + 1;
	cfg.window = ((data[0] >> 5) & 3) + 1;
	cfg.declare_queue = data[1] & 1 ? "logs" : NULL;
	mandatory = data[1] & 2;
	r.close_when_done = data[1] & 8;
	r.c = amqp_client_new(&cfg);
	if (r.c == NULL)
		return 0;
	check_output(&r);
	for (size_t off = 2; off < size; off += piece) {
		size_t n = size - off < piece ? size - off : piece;

		if (amqp_client_feed(r.c, data + off, n) != PT_OK)
			fuzz_fail("feed failed (out of memory?)");
		take_events(&r);
		publish_more(&r, mandatory);
		check_output(&r);
	}
	if (data[1] & 4)
		amqp_client_eof(r.c);
	else
		amqp_client_timeout(r.c);
	take_events(&r);
	if (r.n_confirmed != r.n_published)
		fuzz_fail("a publish left without its outcome");
	amqp_client_free(r.c);
	return 0;
}
