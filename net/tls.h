/*
 * tls.h -- wolfSSL glue for TLS over the shard's own buffers: the server
 * side (listeners, STARTTLS received) and the client side (STARTTLS when
 * delivering).
 *
 * TLS never does system calls: wolfSSL's I/O callbacks read ciphertext from
 * a buffer the shard fills from its multishot receives, and write ciphertext
 * into a buffer the shard sends with its ring.  The shard therefore drives a
 * connection as:
 *
 *   tls_conn_feed(t, bytes)            ciphertext received
 *   tls_conn_handshake(t)              until PT_OK (PT_AGAIN: need more input;
 *                                      a client's first call writes its hello)
 *   tls_conn_read(t, plaintext_out)    after the handshake
 *   tls_conn_write(t, plain, n)        encrypts into the cipher output
 *   tls_conn_output(t)                 ciphertext to send (shard consumes)
 */
#ifndef PT_TLS_H
#define PT_TLS_H

#include "core/buf.h"

struct tls_ctx;
struct tls_conn;

/* Process-wide setup; call once from main before any shard starts. */
int tls_global_init(void);
void tls_global_cleanup(void);
/* Free the calling thread's wolfSSL caches (the ECC fixed-point table is
 * per thread); call when a thread that used TLS ends. */
void tls_thread_cleanup(void);

/*
 * A self-signed certificate and key (ECDSA P-256, SHA-256, valid one year,
 * subject CN and subjectAltName = hostname) as PEM text, for listeners that
 * name no certificate (KumoMTA does the same).  Caller frees both buffers.
 * PT_OK or PT_ERROR (err filled).
 */
int tls_self_signed_pem(const char *hostname, struct pt_buf *cert_pem, struct pt_buf *key_pem,
			char *err, size_t err_len);

/* A server context from PEM text (copied).  NULL with err filled. */
struct tls_ctx *tls_ctx_new_server(const char *cert_pem, size_t cert_len, const char *key_pem,
				   size_t key_len, char *err, size_t err_len);
/* A server context from PEM files (read now: call before dropping privileges). */
struct tls_ctx *tls_ctx_new_server_files(const char *cert_path, const char *key_path, char *err,
					 size_t err_len);
/*
 * A client context (TLS 1.2 and 1.3).  verify: trust the system CA bundle
 * (/etc/ssl/certs/ca-certificates.crt, else the certificates in
 * /etc/ssl/certs) and refuse a peer whose chain or name does not check out;
 * !verify: accept any certificate (KumoMTA's *Insecure).  NULL with err
 * filled (no CA certificates found, out of memory).
 */
struct tls_ctx *tls_ctx_new_client(bool verify, char *err, size_t err_len);
/* Also trust the certificates in this PEM text (copied): a private CA, or a
 * test's self-signed certificate.  PT_OK or PT_ERROR (err filled). */
int tls_ctx_trust_pem(struct tls_ctx *ctx, const char *pem, size_t pem_len, char *err,
		      size_t err_len);
void tls_ctx_free(struct tls_ctx *ctx);

/* One server connection's TLS state.  NULL on allocation failure. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx);
/*
 * One client connection to server_name (a host name, or an IP address,
 * bracketed or not; copied): SNI for a host name, and with a verifying
 * context the certificate must match it.  NULL on allocation failure, or
 * when a verifying context is given no usable name.
 */
struct tls_conn *tls_conn_new_client(struct tls_ctx *ctx, const char *server_name);
void tls_conn_free(struct tls_conn *t);
/* Append received ciphertext (copied). PT_OK or PT_NOMEM. */
int tls_conn_feed(struct tls_conn *t, const void *data, size_t len);
/* Advance the handshake: PT_OK done, PT_AGAIN needs more input, PT_ERROR failed
 * (reason in tls_conn_error()). */
int tls_conn_handshake(struct tls_conn *t);
/* Decrypt what can be decrypted into out (appended).  PT_OK (maybe nothing
 * appended), or PT_ERROR (fatal alert or peer closed: close the connection). */
int tls_conn_read(struct tls_conn *t, struct pt_buf *out);
/* Encrypt n bytes into the cipher output.  PT_OK or PT_ERROR. */
int tls_conn_write(struct tls_conn *t, const void *data, size_t n);
/* Ciphertext waiting to be sent; the caller consumes what it sent. */
struct pt_buf *tls_conn_output(struct tls_conn *t);
/* "TLSv1.3" and the cipher suite name, after the handshake. */
const char *tls_conn_version(struct tls_conn *t);
const char *tls_conn_cipher(struct tls_conn *t);
/* Last error as text. */
const char *tls_conn_error(struct tls_conn *t);

#endif
