/*
 * tls.c -- wolfSSL glue (see tls.h for the model), both sides: the
 * listeners' server contexts and the delivery side's client contexts.
 *
 * Why custom I/O callbacks: the shard owns its sockets through io_uring, so
 * wolfSSL must not read or write file descriptors.  Its receive callback
 * takes bytes from t->in (filled by tls_conn_feed) and answers WANT_READ
 * when empty; its send callback appends to t->out, which the shard sends.
 * Nothing here blocks.
 *
 * One tls_ctx per shard: contexts are built from the same PEM text, so
 * shards never share wolfSSL state.
 *
 * Client side (STARTTLS when delivering).  A verifying context trusts the
 * system CA bundle (Debian's /etc/ssl/certs/ca-certificates.crt, else every
 * certificate in /etc/ssl/certs) and checks the peer's chain and name: the
 * name the connection was made for, against the certificate's DNS names
 * (wolfSSL_check_domain_name), or its IP addresses for an address literal.
 * A non-verifying context (KumoMTA's *Insecure modes) accepts any
 * certificate: the session is encrypted against a passive listener only.
 * SNI (RFC 6066 3) is sent for host names, never for addresses.
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include "net/tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where Debian (and most Linux distributions) keep the trusted roots. */
#define TLS_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
#define TLS_CA_DIR    "/etc/ssl/certs"

struct tls_ctx {
	WOLFSSL_CTX *ctx;
	bool client;
	bool verify; /* client: check the peer's certificate and name */
};

struct tls_conn {
	WOLFSSL *ssl;
	bool client;
	struct pt_buf in;  /* ciphertext received, not yet consumed by wolfSSL */
	size_t in_off;	   /* consumed prefix of in */
	struct pt_buf out; /* ciphertext to send */
	bool handshake_done;
	char error[128];
};

int tls_global_init(void)
{
	return wolfSSL_Init() == WOLFSSL_SUCCESS ? PT_OK : PT_ERROR;
}

void tls_thread_cleanup(void)
{
#ifdef FP_ECC
	wc_ecc_fp_free();
#endif
}

void tls_global_cleanup(void)
{
	wolfSSL_Cleanup();
}

static void tls_set_err(char *err, size_t err_len, const char *what, int code)
{
	char text[WOLFSSL_MAX_ERROR_SZ];

	wc_ErrorString(code, text);
	snprintf(err, err_len, "%s: %s (%d)", what, text, code);
}

/* Cert fields for a throw-away self-signed server certificate. */
static void tls_fill_cert_subject(Cert *cert, const char *hostname)
{
	snprintf(cert->subject.commonName, CTC_NAME_SIZE, "%s", hostname);
	snprintf(cert->subject.org, CTC_NAME_SIZE, "Petrel self-signed");
	cert->daysValid = 365;
	cert->isCA = 0;
	cert->sigType = CTC_SHA256wECDSA;
}

/*
 * subjectAltName = DNS:<hostname>, DER-encoded by hand: the extension value
 * is SEQUENCE { [2] IA5String hostname }.  Modern TLS clients ignore the CN.
 */
static int tls_set_alt_name(Cert *cert, const char *hostname)
{
	size_t n = strlen(hostname);
	byte der[CTC_MAX_ALT_SIZE];

	if (n + 4 > sizeof(der) || n > 120)
		return PT_ERROR;
	der[0] = 0x30; /* SEQUENCE */
	der[1] = (byte)(n + 2);
	der[2] = 0x82; /* [2] dNSName */
	der[3] = (byte)n;
	memcpy(der + 4, hostname, n);
	memcpy(cert->altNames, der, n + 4);
	cert->altNamesSz = (int)(n + 4);
	return PT_OK;
}

static int tls_der_to_pem(const byte *der, int der_len, int type, struct pt_buf *pem)
{
	int n;

	if (pt_buf_reserve(pem, (size_t)der_len * 2 + 128) != PT_OK)
		return PT_NOMEM;
	n = wc_DerToPem(der, (word32)der_len, (byte *)pem->data + pem->len,
			(word32)(pem->cap - pem->len), type);
	if (n <= 0)
		return PT_ERROR;
	pem->len += (size_t)n;
	return PT_OK;
}

int tls_self_signed_pem(const char *hostname, struct pt_buf *cert_pem, struct pt_buf *key_pem,
			char *err, size_t err_len)
{
	WC_RNG rng;
	ecc_key key;
	Cert cert;
	byte der[4096];
	int rc = PT_ERROR, n;

	if (wc_InitRng(&rng) != 0) {
		snprintf(err, err_len, "tls: cannot initialise the random generator");
		return PT_ERROR;
	}
	if (wc_ecc_init(&key) != 0)
		goto fail_rng;
	if ((n = wc_ecc_make_key(&rng, 32, &key)) != 0) {
		tls_set_err(err, err_len, "tls: ECC key generation", n);
		goto fail_key;
	}
	wc_InitCert(&cert);
	tls_fill_cert_subject(&cert, hostname);
	if (tls_set_alt_name(&cert, hostname) != PT_OK) {
		snprintf(err, err_len, "tls: hostname too long for a certificate: %s", hostname);
		goto fail_key;
	}
	if ((n = wc_MakeCert(&cert, der, sizeof(der), NULL, &key, &rng)) < 0 ||
	    (n = wc_SignCert(cert.bodySz, cert.sigType, der, sizeof(der), NULL, &key, &rng)) < 0) {
		tls_set_err(err, err_len, "tls: making the self-signed certificate", n);
		goto fail_key;
	}
	if (tls_der_to_pem(der, n, CERT_TYPE, cert_pem) != PT_OK) {
		snprintf(err, err_len, "tls: certificate PEM encoding failed");
		goto fail_key;
	}
	if ((n = wc_EccKeyToDer(&key, der, sizeof(der))) < 0 ||
	    tls_der_to_pem(der, n, ECC_PRIVATEKEY_TYPE, key_pem) != PT_OK) {
		snprintf(err, err_len, "tls: key PEM encoding failed");
		goto fail_key;
	}
	rc = PT_OK;
fail_key:
	wc_ecc_free(&key);
fail_rng:
	wc_FreeRng(&rng);
	return rc;
}

static int tls_io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct tls_conn *t = arg;
	size_t avail = t->in.len - t->in_off;
	size_t n;

	(void)ssl;
	if (avail == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	n = PT_MIN(avail, (size_t)sz);
	memcpy(buf, t->in.data + t->in_off, n);
	t->in_off += n;
	if (t->in_off == t->in.len) {
		t->in.len = 0;
		t->in_off = 0;
	}
	return (int)n;
}

static int tls_io_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct tls_conn *t = arg;

	(void)ssl;
	if (pt_buf_append(&t->out, buf, (size_t)sz) != PT_OK)
		return WOLFSSL_CBIO_ERR_GENERAL;
	return sz;
}

static struct tls_ctx *tls_ctx_setup(WOLFSSL_CTX *c)
{
	struct tls_ctx *ctx;

	wolfSSL_SetIORecv(c, tls_io_recv);
	wolfSSL_SetIOSend(c, tls_io_send);
	ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		wolfSSL_CTX_free(c);
		return NULL;
	}
	ctx->ctx = c;
	return ctx;
}

struct tls_ctx *tls_ctx_new_server(const char *cert_pem, size_t cert_len, const char *key_pem,
				   size_t key_len, char *err, size_t err_len)
{
	WOLFSSL_CTX *c = wolfSSL_CTX_new(wolfSSLv23_server_method());
	int n;

	if (!c) {
		snprintf(err, err_len, "tls: cannot create a context");
		return NULL;
	}
	/* TLS 1.2 and 1.3 only. */
	wolfSSL_CTX_SetMinVersion(c, WOLFSSL_TLSV1_2);
	n = wolfSSL_CTX_use_certificate_chain_buffer_format(c, (const unsigned char *)cert_pem,
							    (long)cert_len, WOLFSSL_FILETYPE_PEM);
	if (n != WOLFSSL_SUCCESS) {
		tls_set_err(err, err_len, "tls: loading the certificate", n);
		goto fail;
	}
	n = wolfSSL_CTX_use_PrivateKey_buffer(c, (const unsigned char *)key_pem, (long)key_len,
					      WOLFSSL_FILETYPE_PEM);
	if (n != WOLFSSL_SUCCESS) {
		tls_set_err(err, err_len, "tls: loading the private key", n);
		goto fail;
	}
	return tls_ctx_setup(c);
fail:
	wolfSSL_CTX_free(c);
	return NULL;
}

static int tls_read_file(const char *path, struct pt_buf *b, char *err, size_t err_len)
{
	FILE *f = fopen(path, "rb");
	char chunk[4096];
	size_t n;

	if (!f) {
		snprintf(err, err_len, "tls: cannot open %s: %m", path);
		return PT_ERROR;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (pt_buf_append(b, chunk, n) != PT_OK) {
			fclose(f);
			snprintf(err, err_len, "tls: out of memory reading %s", path);
			return PT_NOMEM;
		}
	}
	fclose(f);
	return PT_OK;
}

struct tls_ctx *tls_ctx_new_server_files(const char *cert_path, const char *key_path, char *err,
					 size_t err_len)
{
	struct pt_buf cert = PT_BUF_INIT, key = PT_BUF_INIT;
	struct tls_ctx *ctx = NULL;

	if (tls_read_file(cert_path, &cert, err, err_len) == PT_OK &&
	    tls_read_file(key_path, &key, err, err_len) == PT_OK)
		ctx = tls_ctx_new_server(cert.data, cert.len, key.data, key.len, err, err_len);
	pt_buf_free(&cert);
	pt_buf_free(&key);
	return ctx;
}

/* Trust the system's CA certificates: the bundle, else the directory. */
static int tls_load_system_cas(WOLFSSL_CTX *c, char *err, size_t err_len)
{
	int n = wolfSSL_CTX_load_verify_locations(c, TLS_CA_BUNDLE, NULL);

	if (n == WOLFSSL_SUCCESS)
		return PT_OK;
	n = wolfSSL_CTX_load_verify_locations_ex(c, NULL, TLS_CA_DIR, WOLFSSL_LOAD_FLAG_IGNORE_ERR);
	if (n == WOLFSSL_SUCCESS)
		return PT_OK;
	tls_set_err(err, err_len,
		    "tls: loading the CA certificates from " TLS_CA_BUNDLE " or " TLS_CA_DIR, n);
	return PT_ERROR;
}

struct tls_ctx *tls_ctx_new_client(bool verify, char *err, size_t err_len)
{
	WOLFSSL_CTX *c = wolfSSL_CTX_new(wolfSSLv23_client_method());
	struct tls_ctx *ctx;

	if (!c) {
		snprintf(err, err_len, "tls: cannot create a client context");
		return NULL;
	}
	wolfSSL_CTX_SetMinVersion(c, WOLFSSL_TLSV1_2);
	if (verify && tls_load_system_cas(c, err, err_len) != PT_OK) {
		wolfSSL_CTX_free(c);
		return NULL;
	}
	wolfSSL_CTX_set_verify(c, verify ? WOLFSSL_VERIFY_PEER : WOLFSSL_VERIFY_NONE, NULL);
	ctx = tls_ctx_setup(c);
	if (!ctx) {
		snprintf(err, err_len, "tls: out of memory");
		return NULL;
	}
	ctx->client = true;
	ctx->verify = verify;
	return ctx;
}

int tls_ctx_trust_pem(struct tls_ctx *ctx, const char *pem, size_t pem_len, char *err,
		      size_t err_len)
{
	int n = wolfSSL_CTX_load_verify_buffer(ctx->ctx, (const unsigned char *)pem, (long)pem_len,
					       WOLFSSL_FILETYPE_PEM);

	if (n == WOLFSSL_SUCCESS)
		return PT_OK;
	tls_set_err(err, err_len, "tls: loading a trusted certificate", n);
	return PT_ERROR;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
	if (!ctx)
		return;
	wolfSSL_CTX_free(ctx->ctx);
	free(ctx);
}

struct tls_conn *tls_conn_new(struct tls_ctx *ctx)
{
	struct tls_conn *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ssl = wolfSSL_new(ctx->ctx);
	if (!t->ssl) {
		free(t);
		return NULL;
	}
	wolfSSL_SetIOReadCtx(t->ssl, t);
	wolfSSL_SetIOWriteCtx(t->ssl, t);
	t->client = ctx->client;
	return t;
}

/* "[192.0.2.1]" -> "192.0.2.1", "mx.example." -> "mx.example"; false when too long. */
static bool tls_peer_name(const char *name, char *out, size_t len)
{
	size_t n = strlen(name);

	if (n >= 2 && name[0] == '[' && name[n - 1] == ']') {
		name++;
		n -= 2;
	}
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n >= len)
		return false;
	memcpy(out, name, n);
	out[n] = '\0';
	return true;
}

static bool tls_is_ip(const char *name)
{
	unsigned char addr[16];

	return inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
}

/* SNI for a host name; the name or address the certificate must match when verifying. */
static int tls_conn_set_peer(struct tls_conn *t, bool verify, const char *server_name)
{
	char name[256];
	bool ip;
	int n;

	if (!server_name || !tls_peer_name(server_name, name, sizeof(name)) || name[0] == '\0')
		return verify ? PT_ERROR : PT_OK;
	ip = tls_is_ip(name);
	if (!ip && wolfSSL_UseSNI(t->ssl, WOLFSSL_SNI_HOST_NAME, name, (word16)strlen(name)) !=
		       WOLFSSL_SUCCESS)
		return PT_ERROR;
	if (!verify)
		return PT_OK;
	if (ip)
		n = wolfSSL_X509_VERIFY_PARAM_set1_ip_asc(wolfSSL_get0_param(t->ssl), name);
	else
		n = wolfSSL_check_domain_name(t->ssl, name);
	return n == WOLFSSL_SUCCESS ? PT_OK : PT_ERROR;
}

struct tls_conn *tls_conn_new_client(struct tls_ctx *ctx, const char *server_name)
{
	struct tls_conn *t = tls_conn_new(ctx);

	if (!t)
		return NULL;
	if (tls_conn_set_peer(t, ctx->verify, server_name) != PT_OK) {
		tls_conn_free(t);
		return NULL;
	}
	return t;
}

void tls_conn_free(struct tls_conn *t)
{
	if (!t)
		return;
	wolfSSL_free(t->ssl);
	pt_buf_free(&t->in);
	pt_buf_free(&t->out);
	free(t);
}

int tls_conn_feed(struct tls_conn *t, const void *data, size_t len)
{
	return pt_buf_append(&t->in, data, len);
}

static int tls_conn_fail(struct tls_conn *t, const char *what, int rc)
{
	int e = wolfSSL_get_error(t->ssl, rc);
	char text[WOLFSSL_MAX_ERROR_SZ];

	wolfSSL_ERR_error_string_n((unsigned long)e, text, sizeof(text));
	snprintf(t->error, sizeof(t->error), "%s: %s (%d)", what, text, e);
	return PT_ERROR;
}

int tls_conn_handshake(struct tls_conn *t)
{
	int rc, e;

	if (t->handshake_done)
		return PT_OK;
	rc = t->client ? wolfSSL_connect(t->ssl) : wolfSSL_accept(t->ssl);
	if (rc == WOLFSSL_SUCCESS) {
		t->handshake_done = true;
		return PT_OK;
	}
	e = wolfSSL_get_error(t->ssl, rc);
	if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
		return PT_AGAIN;
	return tls_conn_fail(t, "handshake", rc);
}

int tls_conn_read(struct tls_conn *t, struct pt_buf *out)
{
	for (;;) {
		int rc, e;

		if (pt_buf_reserve(out, 16384) != PT_OK)
			return PT_NOMEM;
		rc = wolfSSL_read(t->ssl, out->data + out->len, 16384);
		if (rc > 0) {
			out->len += (size_t)rc;
			continue;
		}
		e = wolfSSL_get_error(t->ssl, rc);
		if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
			return PT_OK;
		if (e == WOLFSSL_ERROR_ZERO_RETURN) {
			snprintf(t->error, sizeof(t->error), "peer sent close_notify");
			return PT_ERROR;
		}
		return tls_conn_fail(t, "read", rc);
	}
}

int tls_conn_write(struct tls_conn *t, const void *data, size_t n)
{
	const char *p = data;

	while (n > 0) {
		int chunk = (int)PT_MIN(n, (size_t)16384);
		int rc = wolfSSL_write(t->ssl, p, chunk);

		/* The send callback never blocks, so a short or failed write is fatal. */
		if (rc <= 0)
			return tls_conn_fail(t, "write", rc);
		p += rc;
		n -= (size_t)rc;
	}
	return PT_OK;
}

struct pt_buf *tls_conn_output(struct tls_conn *t)
{
	return &t->out;
}

const char *tls_conn_version(struct tls_conn *t)
{
	return wolfSSL_get_version(t->ssl);
}

const char *tls_conn_cipher(struct tls_conn *t)
{
	return wolfSSL_get_cipher_name(t->ssl);
}

const char *tls_conn_error(struct tls_conn *t)
{
	return t->error;
}
