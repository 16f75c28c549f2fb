/*
 * amqp_publish.c -- publish messages to a real AMQP broker through
 * net/amqp_client.c, for the e2e suite (tests/e2e/test_amqp_client.py).
 * Not installed.  A test tool, so a plain blocking socket with timeouts
 * drives the state machine; a shard never does this.
 *
 *   amqp-publish [--declare] [--mandatory] [--exchange X] [--window N]
 *                [--frame-max N] [--print-acks] [--pause-ms N] URL ROUTING_KEY < bodies
 *
 * Every line of standard input (without its line feed; "\n" inside a line
 * written as the two characters backslash n is sent as a line feed) is one
 * persistent message, published with content type text/plain.  --declare
 * declares ROUTING_KEY as a durable queue first.  Prints one line per
 * message refused ("nack N: reason"), per message acked with --print-acks
 * ("ack N", line-buffered, N counting from 0), and the session's failure, then
 * "acked A of N"; exits 0 only when every message was acked and the
 * connection closed cleanly, 1 otherwise, 2 on bad usage.  --pause-ms
 * leaves the connection idle that long after login, before publishing
 * (no heartbeats are sent: the broker must not drop it).
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "net/amqp_client.h"

#define IO_TIMEOUT_S 10

struct bodies {
	char **lines;
	size_t n, cap;
};

static int read_bodies(struct bodies *b)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	while ((n = getline(&line, &cap, stdin)) >= 0) {
		char *s, *d;

		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		for (s = d = line; *s; s++, d++) {
			if (s[0] == '\\' && s[1] == 'n') {
				*d = '\n';
				s++;
			} else {
				*d = *s;
			}
		}
		*d = '\0';
		if (b->n == b->cap) {
			b->cap = b->cap ? 2 * b->cap : 64;
			b->lines = realloc(b->lines, b->cap * sizeof(*b->lines));
			if (b->lines == NULL)
				return -1;
		}
		if ((b->lines[b->n++] = strdup(line)) == NULL)
			return -1;
	}
	free(line);
	return 0;
}

static int dial(const struct amqp_client_url *u)
{
	struct timeval tv = {IO_TIMEOUT_S, 0};
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
	char port[16];
	int fd, rc;

	snprintf(port, sizeof(port), "%d", u->port);
	rc = getaddrinfo(u->host, port, &hints, &res);
	if (rc != 0) {
		fprintf(stderr, "amqp-publish: %s: %s\n", u->host, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		fprintf(stderr, "amqp-publish: connect %s:%d: %s\n", u->host, u->port,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static int flush_output(int fd, struct amqp_client *c)
{
	struct pt_buf *out = amqp_client_output(c);

	while (out->len > 0) {
		ssize_t n = send(fd, out->data, out->len, MSG_NOSIGNAL);

		if (n < 0) {
			fprintf(stderr, "amqp-publish: send: %s\n", strerror(errno));
			return -1;
		}
		pt_buf_consume(out, n);
	}
	return 0;
}

struct run {
	struct bodies bodies;
	const char *exchange, *routing_key;
	bool mandatory, print_acks;
	unsigned pause_ms;
	size_t next, acked, settled;
	bool ready, done, clean;
};

/* Take every event; false once the session is over. */
static void take_events(struct amqp_client *c, struct run *r)
{
	struct amqp_client_event ev;

	while (amqp_client_next_event(c, &ev)) {
		switch (ev.type) {
		case AMQP_CLIENT_EV_READY:
			r->ready = true;
			break;
		case AMQP_CLIENT_EV_CONFIRMED:
			r->settled++;
			if (ev.ok && r->print_acks)
				printf("ack %zu\n", (size_t)(uintptr_t)ev.cookie);
			if (ev.ok)
				r->acked++;
			else
				printf("nack %zu: %u %s\n", (size_t)(uintptr_t)ev.cookie,
				       ev.reply.code, ev.reply.text);
			break;
		case AMQP_CLIENT_EV_FAILED:
			printf("failed: %u %s\n", ev.reply.code, ev.reply.text);
			r->done = true;
			break;
		case AMQP_CLIENT_EV_CLOSED:
			r->done = r->clean = true;
			break;
		case AMQP_CLIENT_EV_NONE:
			break;
		}
	}
}

static void publish_more(struct amqp_client *c, struct run *r)
{
	if (r->ready && r->pause_ms > 0) {
		usleep(r->pause_ms * 1000u);
		r->pause_ms = 0;
	}
	while (r->ready && r->next < r->bodies.n && amqp_client_can_publish(c)) {
		const char *body = r->bodies.lines[r->next];
		struct amqp_client_message m = {
		    .exchange = r->exchange,
		    .routing_key = r->routing_key,
		    .content_type = "text/plain",
		    .mandatory = r->mandatory,
		    .body = body,
		    .body_len = strlen(body),
		    .cookie = (void *)(uintptr_t)r->next,
		};
		uint64_t tag;

		if (amqp_client_publish(c, &m, &tag) != PT_OK) {
			fprintf(stderr, "amqp-publish: cannot publish message %zu\n", r->next);
			exit(1);
		}
		r->next++;
	}
	if (r->ready && r->settled == r->bodies.n && r->next == r->bodies.n)
		amqp_client_close(c); /* only acts once, in READY */
}

static int drive(int fd, struct amqp_client *c, struct run *r)
{
	char buf[65536];

	while (!r->done) {
		ssize_t n;

		publish_more(c, r);
		if (flush_output(fd, c) < 0)
			return -1;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			amqp_client_timeout(c);
		else if (n <= 0)
			amqp_client_eof(c);
		else if (amqp_client_feed(c, buf, n) != PT_OK)
			return -1;
		take_events(c, r);
	}
	return flush_output(fd, c);
}

static void usage(void)
{
	fprintf(stderr, "usage: amqp-publish [--declare] [--mandatory] [--exchange X] [--window N] "
			"[--frame-max N] [--print-acks] [--pause-ms N] URL ROUTING_KEY < bodies\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"declare", no_argument, NULL, 'd'},	 {"mandatory", no_argument, NULL, 'm'},
	    {"exchange", required_argument, NULL, 'x'},	 {"window", required_argument, NULL, 'w'},
	    {"frame-max", required_argument, NULL, 'f'}, {"print-acks", no_argument, NULL, 'a'},
	    {"pause-ms", required_argument, NULL, 'p'},	 {NULL, 0, NULL, 0},
	};
	struct amqp_client_config cfg = {0};
	struct run r = {.exchange = ""};
	struct amqp_client_url u;
	bool declare = false;
	char err[256];
	int opt, fd, rc;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'd')
			declare = true;
		else if (opt == 'm')
			r.mandatory = true;
		else if (opt == 'x')
			r.exchange = optarg;
		else if (opt == 'w')
			cfg.window = atoi(optarg);
		else if (opt == 'f')
			cfg.frame_max = atoi(optarg);
		else if (opt == 'a')
			r.print_acks = true;
		else if (opt == 'p')
			r.pause_ms = atoi(optarg);
		else
			usage();
	}
	if (argc - optind != 2)
		usage();
	if (r.print_acks)
		setvbuf(stdout, NULL, _IOLBF, 0); /* the test reads acks as they come */
	if (amqp_client_url_parse(argv[optind], &u, err, sizeof(err)) != PT_OK) {
		fprintf(stderr, "amqp-publish: %s\n", err);
		return 2;
	}
	r.routing_key = argv[optind + 1];
	if (read_bodies(&r.bodies) < 0) {
		fprintf(stderr, "amqp-publish: out of memory\n");
		return 1;
	}
	cfg.user = u.user;
	cfg.password = u.password;
	cfg.vhost = u.vhost;
	cfg.declare_queue = declare ? r.routing_key : NULL;
	cfg.handshake_timeout_ms = cfg.confirm_timeout_ms = IO_TIMEOUT_S * 1000;
	fd = dial(&u);
	if (fd < 0)
		return 1;
	struct amqp_client *c = amqp_client_new(&cfg);
	if (c == NULL) {
		fprintf(stderr, "amqp-publish: bad configuration\n");
		return 2;
	}
	rc = drive(fd, c, &r);
	printf("acked %zu of %zu\n", r.acked, r.bodies.n);
	close(fd);
	amqp_client_free(c);
	amqp_client_url_free(&u);
	for (size_t i = 0; i < r.bodies.n; i++)
		free(r.bodies.lines[i]);
	free(r.bodies.lines);
	return rc == 0 && r.clean && r.acked == r.bodies.n ? 0 : 1;
}
