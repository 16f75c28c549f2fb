/*
 * tls.h -- wolfSSL glue for server-side TLS over the shard's own buffers.
 *
 * TLS never does system calls: wolfSSL's I/O callbacks read ciphertext from
 * a buffer the shard fills from its multishot receives, and write ciphertext
 * into a buffer the shard sends with its ring.  The shard therefore drives a
 * connection as:
 *
 *   tls_conn_feed(t, bytes)            ciphertext received
 *   tls_conn_handshake(t)              until PT_OK (PT_AGAIN: need more input)
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
void tls_ctx_free(struct tls_ctx *ctx);

/* One connection's TLS state.  NULL on allocation failure. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx);
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
