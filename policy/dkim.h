/*
 * dkim.h -- DKIM signing (RFC 6376) with RSA-SHA256 (RFC 8301) and
 * Ed25519-SHA256 (RFC 8463), through wolfSSL.
 *
 * Two layers:
 *
 *   dkim.c, dkim_key.c   pure C: canonicalization, body hash, header
 *                        selection, the DKIM-Signature field, keys.  No Lua.
 *   dkim_lua.c           KumoMTA's Lua API: kumo.dkim.rsa_sha256_signer{},
 *                        kumo.dkim.ed25519_signer{} and msg:dkim_sign(signer),
 *                        with the per-state (per-shard) key cache.
 *
 * The message is signed as stored (core/message.h): the header block is
 * prefix | data headers | appended, the body is what follows the blank
 * line.  The new field is prepended above every other header.
 */
#ifndef PT_POLICY_DKIM_H
#define PT_POLICY_DKIM_H

#include "core/buf.h"
#include "core/message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#define DKIM_HASH_LEN	  32   /* SHA-256 */
#define DKIM_MAX_HEADERS  64   /* names in a signer's header list */
#define DKIM_RSA_MIN_BITS 1024 /* RFC 8301 3.2 */

enum dkim_canon { DKIM_CANON_SIMPLE, DKIM_CANON_RELAXED };
enum dkim_algorithm { DKIM_RSA_SHA256, DKIM_ED25519_SHA256 };

struct dkim_key;

/* What one signature is made of.  Strings are borrowed for the call. */
struct dkim_signer_config {
	enum dkim_algorithm algorithm;
	const char *domain;	    /* d= */
	const char *selector;	    /* s= */
	const char *const *headers; /* names to sign, as configured; From required */
	size_t n_headers;
	enum dkim_canon header_canon;
	enum dkim_canon body_canon;
	bool over_sign;	       /* one more h= entry per name than the message has */
	uint64_t expiration_s; /* x= = t= + this; 0: no x= */
};

/*
 * Decode a private key of the given algorithm from PEM ("RSA PRIVATE KEY"
 * PKCS#1, or "PRIVATE KEY" PKCS#8) or DER bytes.  RSA keys shorter than
 * DKIM_RSA_MIN_BITS are refused.  PT_OK with *out (caller frees with
 * dkim_key_free), or PT_ERROR / PT_NOMEM with a reason in err.
 */
int dkim_key_load(enum dkim_algorithm algorithm, const unsigned char *data, size_t len,
		  struct dkim_key **out, char *err, size_t err_len);
void dkim_key_free(struct dkim_key *key);
enum dkim_algorithm dkim_key_algorithm(const struct dkim_key *key);

/*
 * Sign len bytes with the key (SHA-256 inside: RSASSA-PKCS1-v1_5 with the
 * DigestInfo for RSA; PureEdDSA over SHA-256(data) for Ed25519, RFC 8463
 * 3).  The signature goes to sig (cap bytes; 512 is enough for RSA-4096),
 * its length to *sig_len.  PT_OK or PT_ERROR with err.
 */
int dkim_key_sign(struct dkim_key *key, const unsigned char *data, size_t len, unsigned char *sig,
		  size_t cap, size_t *sig_len, char *err, size_t err_len);

/* Base64 (RFC 4648 4, with padding, no line breaks) of n bytes appended to
 * out.  PT_OK or PT_NOMEM. */
int dkim_base64_append(struct pt_buf *out, const unsigned char *p, size_t n);

/*
 * Canonicalize one header field (name, colon, value, folded lines and the
 * final CRLF, n bytes) per RFC 6376 3.4.1 / 3.4.2 and append it to out,
 * ending in CRLF.  PT_OK or PT_NOMEM.
 */
int dkim_canon_header(enum dkim_canon canon, const char *field, size_t n, struct pt_buf *out);

/* Canonicalize a body (the bytes after the blank line) per RFC 6376 3.4.3 /
 * 3.4.4 and append the result to out.  PT_OK or PT_NOMEM. */
int dkim_canon_body(enum dkim_canon canon, const char *body, size_t n, struct pt_buf *out);

/* SHA-256 of the canonicalized body (bh=, RFC 6376 3.7), without copying it. */
void dkim_body_hash(enum dkim_canon canon, const char *body, size_t n,
		    unsigned char out[DKIM_HASH_LEN]);

/*
 * The h= value for a header block (fields up to, not including, the blank
 * line): each configured name (duplicates ignored, case-insensitive) once
 * per field of that name in the block, plus once more with over_sign;
 * names absent from the block are left out unless over-signed.  Names are
 * written as configured, separated by ':'.  PT_OK or PT_NOMEM.
 */
int dkim_header_list(const struct dkim_signer_config *cfg, const char *block, size_t n,
		     struct pt_buf *out);

/*
 * The value of a DKIM-Signature field (what follows "DKIM-Signature: ",
 * folded at 78 columns, without the final CRLF) for the header block and
 * body given, signed at time `now` (t=).  PT_OK with the value appended to
 * out; PT_DECLINED when the block has no From field (RFC 6376 5.4);
 * PT_ERROR or PT_NOMEM; err says why.
 */
int dkim_sign(const struct dkim_signer_config *cfg, struct dkim_key *key, const char *block,
	      size_t block_len, const char *body, size_t body_len, uint64_t now, struct pt_buf *out,
	      char *err, size_t err_len);

/*
 * Sign the message as stored and prepend the DKIM-Signature field.  Codes
 * as dkim_sign; the message is unchanged unless PT_OK.
 */
int dkim_sign_message(const struct dkim_signer_config *cfg, struct dkim_key *key,
		      struct pt_message *m, uint64_t now, char *err, size_t err_len);

/* kumo.dkim = { rsa_sha256_signer, ed25519_signer } into the kumo table at
 * the top of the stack.  policy.c calls it. */
void policy_dkim_register(lua_State *L);

/* msg:dkim_sign(signer): the signer userdata at stack index idx signs m.
 * Raises a Lua error on a wrong argument or a failed signature. */
int policy_dkim_message_sign(lua_State *L, struct pt_message *m, int idx);

#endif
