/*
 * net_tls_test.c -- TLS over the buffer API, both sides in one process:
 * a real wolfSSL client and server talk to each other in memory, each
 * one's ciphertext output fed to the other, with no socket.  The server
 * has a self-signed certificate from tls_self_signed_pem().
 *
 * Covered: a non-verifying client completes the handshake and data flows
 * both ways; a verifying client refuses the self-signed certificate with
 * a reason; once told to trust that certificate, it accepts it for the
 * right name and refuses it for another name or an address.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "net/tls.h"

#define HOST "mx.petrel.test"

struct pair {
	struct pt_buf cert, key;
	struct tls_ctx *server_ctx, *client_ctx;
	struct tls_conn *server, *client;
	int server_rc, client_rc;
};

static void pair_init(struct pair *p, bool verify)
{
	char err[256] = "";

	memset(p, 0, sizeof(*p));
	cr_assert_eq(tls_global_init(), PT_OK);
	cr_assert_eq(tls_self_signed_pem(HOST, &p->cert, &p->key, err, sizeof(err)), PT_OK, "%s",
		     err);
	p->server_ctx = tls_ctx_new_server(p->cert.data, p->cert.len, p->key.data, p->key.len, err,
					   sizeof(err));
	cr_assert_not_null(p->server_ctx, "%s", err);
	p->client_ctx = tls_ctx_new_client(verify, err, sizeof(err));
	cr_assert_not_null(p->client_ctx, "%s", err);
}

static void pair_connect(struct pair *p, const char *server_name)
{
	p->server = tls_conn_new(p->server_ctx);
	cr_assert_not_null(p->server);
	p->client = tls_conn_new_client(p->client_ctx, server_name);
	cr_assert_not_null(p->client);
}

static void pair_free(struct pair *p)
{
	tls_conn_free(p->client);
	tls_conn_free(p->server);
	tls_ctx_free(p->client_ctx);
	tls_ctx_free(p->server_ctx);
	pt_buf_free(&p->cert);
	pt_buf_free(&p->key);
	tls_global_cleanup();
}

/* Move what from wrote to to's input; returns the octets moved. */
static size_t pump(struct tls_conn *from, struct tls_conn *to)
{
	struct pt_buf *o = tls_conn_output(from);
	size_t n = o->len;

	cr_assert_eq(tls_conn_feed(to, o->data, o->len), PT_OK);
	pt_buf_consume(o, o->len);
	return n;
}

/*
 * Run both handshakes, bounded: the client speaks first.  Stops when both
 * are settled (done or failed: a failing side's alert still reaches the
 * other), or when a round moves nothing.
 */
static void pair_handshake(struct pair *p)
{
	p->client_rc = tls_conn_handshake(p->client);
	p->server_rc = PT_AGAIN;
	for (int round = 0; round < 20; round++) {
		size_t moved = pump(p->client, p->server);

		if (p->server_rc == PT_AGAIN)
			p->server_rc = tls_conn_handshake(p->server);
		moved += pump(p->server, p->client);
		if (p->client_rc == PT_AGAIN)
			p->client_rc = tls_conn_handshake(p->client);
		if ((p->client_rc != PT_AGAIN && p->server_rc != PT_AGAIN) || moved == 0)
			return;
	}
	cr_assert_fail("handshake did not settle in 20 rounds");
}

/* from encrypts text; to decrypts exactly that. */
static void send_plain(struct tls_conn *from, struct tls_conn *to, const char *text)
{
	struct pt_buf got = PT_BUF_INIT;

	cr_assert_eq(tls_conn_write(from, text, strlen(text)), PT_OK);
	cr_assert_gt(tls_conn_output(from)->len, strlen(text), "not encrypted with a record");
	cr_assert_null(
	    memmem(tls_conn_output(from)->data, tls_conn_output(from)->len, text, strlen(text)),
	    "plaintext visible on the wire");
	pump(from, to);
	cr_assert_eq(tls_conn_read(to, &got), PT_OK, "%s", tls_conn_error(to));
	cr_assert_eq(got.len, strlen(text));
	cr_assert_eq(memcmp(got.data, text, got.len), 0);
	pt_buf_free(&got);
}

Test(net_tls, insecure_client_handshakes_and_data_flows_both_ways)
{
	struct pair p;

	pair_init(&p, false);
	pair_connect(&p, HOST);
	pair_handshake(&p);
	cr_assert_eq(p.client_rc, PT_OK, "client: %s", tls_conn_error(p.client));
	cr_assert_eq(p.server_rc, PT_OK, "server: %s", tls_conn_error(p.server));
	cr_assert_str_eq(tls_conn_version(p.client), "TLSv1.3");
	cr_assert_str_eq(tls_conn_version(p.server), "TLSv1.3");
	cr_assert_str_eq(tls_conn_cipher(p.client), tls_conn_cipher(p.server));
	/* Once done, handshake says so again without doing anything. */
	cr_assert_eq(tls_conn_handshake(p.client), PT_OK);
	cr_assert_eq(tls_conn_output(p.client)->len, 0);
	send_plain(p.client, p.server, "EHLO client.petrel.test\r\n");
	send_plain(p.server, p.client, "250-mx.petrel.test\r\n250 PIPELINING\r\n");
	send_plain(p.client, p.server, "QUIT\r\n");
	pair_free(&p);
}

Test(net_tls, insecure_client_accepts_an_address_as_its_peer)
{
	struct pair p;

	pair_init(&p, false);
	pair_connect(&p, "[127.0.0.1]");
	pair_handshake(&p);
	cr_assert_eq(p.client_rc, PT_OK, "client: %s", tls_conn_error(p.client));
	cr_assert_eq(p.server_rc, PT_OK, "server: %s", tls_conn_error(p.server));
	pair_free(&p);
}

Test(net_tls, verifying_client_refuses_a_self_signed_certificate)
{
	struct pair p;

	pair_init(&p, true);
	pair_connect(&p, HOST);
	pair_handshake(&p);
	cr_assert_eq(p.client_rc, PT_ERROR);
	cr_assert_str_eq(tls_conn_error(p.client),
			 "handshake: ASN self-signed certificate error (-275)");
	/* The server hears the client's alert and fails too. */
	cr_assert_eq(p.server_rc, PT_ERROR);
	pair_free(&p);
}

Test(net_tls, verifying_client_accepts_a_trusted_certificate_for_its_name)
{
	struct pair p;
	char err[256] = "";

	pair_init(&p, true);
	cr_assert_eq(tls_ctx_trust_pem(p.client_ctx, p.cert.data, p.cert.len, err, sizeof(err)),
		     PT_OK, "%s", err);
	/* A trailing dot (an absolute DNS name) is not part of the name to match. */
	pair_connect(&p, HOST ".");
	pair_handshake(&p);
	cr_assert_eq(p.client_rc, PT_OK, "client: %s", tls_conn_error(p.client));
	cr_assert_eq(p.server_rc, PT_OK, "server: %s", tls_conn_error(p.server));
	send_plain(p.server, p.client, "220 ready\r\n");
	pair_free(&p);
}

Test(net_tls, verifying_client_refuses_a_trusted_certificate_for_another_name)
{
	struct pair p;
	char err[256] = "";

	pair_init(&p, true);
	cr_assert_eq(tls_ctx_trust_pem(p.client_ctx, p.cert.data, p.cert.len, err, sizeof(err)),
		     PT_OK, "%s", err);
	pair_connect(&p, "other.petrel.test");
	pair_handshake(&p);
	cr_assert_eq(p.client_rc, PT_ERROR);
	cr_assert_str_eq(tls_conn_error(p.client), "handshake: peer subject name mismatch (-322)");
	pair_free(&p);
}

Test(net_tls, verifying_client_refuses_a_certificate_without_the_address)
{
	struct pair p;
	char err[256] = "";

	pair_init(&p, true);
	cr_assert_eq(tls_ctx_trust_pem(p.client_ctx, p.cert.data, p.cert.len, err, sizeof(err)),
		     PT_OK, "%s", err);
	pair_connect(&p, "127.0.0.1");
	pair_handshake(&p);
	cr_assert_eq(p.client_rc, PT_ERROR, "a DNS-only certificate passed for an address");
	cr_assert_str_eq(tls_conn_error(p.client), "handshake: peer ip address mismatch (-325)");
	pair_free(&p);
}

Test(net_tls, verifying_client_needs_a_name)
{
	struct pair p;

	pair_init(&p, true);
	cr_assert_null(tls_conn_new_client(p.client_ctx, NULL));
	cr_assert_null(tls_conn_new_client(p.client_ctx, ""));
	cr_assert_null(tls_conn_new_client(p.client_ctx, "[]"));
	pair_free(&p);
}

Test(net_tls, trust_pem_refuses_garbage)
{
	struct pair p;
	char err[256] = "";

	pair_init(&p, true);
	cr_assert_eq(tls_ctx_trust_pem(p.client_ctx, "not a certificate", 17, err, sizeof(err)),
		     PT_ERROR);
	cr_assert_not_null(strstr(err, "tls: loading a trusted certificate: "), "%s", err);
	pair_free(&p);
}

/* The ClientHello is cleartext: SNI (RFC 6066 3) shows in it, for names only. */
static bool hello_mentions(struct pair *p, const char *server_name, const char *text)
{
	struct pt_buf *o;
	bool found;

	pair_connect(p, server_name);
	cr_assert_eq(tls_conn_handshake(p->client), PT_AGAIN);
	o = tls_conn_output(p->client);
	cr_assert_gt(o->len, 0, "no ClientHello written");
	found = memmem(o->data, o->len, text, strlen(text)) != NULL;
	tls_conn_free(p->client);
	tls_conn_free(p->server);
	p->client = p->server = NULL;
	return found;
}

Test(net_tls, client_sends_sni_for_a_host_name_not_for_an_address)
{
	struct pair p;

	pair_init(&p, false);
	cr_assert(hello_mentions(&p, HOST ".", HOST));
	cr_assert_not(hello_mentions(&p, HOST ".", HOST "."));
	cr_assert_not(hello_mentions(&p, "127.0.0.1", "127.0.0.1"));
	cr_assert_not(hello_mentions(&p, "[::1]", "::1"));
	pair_free(&p);
}
