/*
 * dkim_key.c -- DKIM private keys and the signing primitive, with wolfSSL.
 *
 * Formats.  PEM is turned into DER by wc_KeyPemToDer, which knows "RSA
 * PRIVATE KEY" (PKCS#1) and "PRIVATE KEY" (PKCS#8); anything not starting
 * with "-----BEGIN" is taken as DER already, as KumoMTA accepts for
 * Ed25519.  A PKCS#8 wrapper is removed with wc_GetPkcs8TraditionalOffset
 * before wc_RsaPrivateKeyDecode; wc_Ed25519PrivateKeyDecode reads PKCS#8
 * (RFC 8410) itself.  An Ed25519 key without its public half (the usual
 * OpenSSL "V1" form) gets it computed, since signing needs both.
 *
 * Each key owns a WC_RNG: RSA signing uses it for blinding
 * (WC_RSA_BLINDING in Debian's build).  Keys live in one shard's Lua state
 * (dkim_lua.c) and are never shared between threads, so neither the key
 * nor its RNG needs a lock.
 */
#include "policy/dkim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/signature.h>

struct dkim_key {
	enum dkim_algorithm algorithm;
	bool rng_ready;
	WC_RNG rng;
	union {
		RsaKey rsa;
		ed25519_key ed25519;
	} u;
};

static void key_err(char *err, size_t err_len, const char *what, int wc)
{
	if (wc != 0)
		snprintf(err, err_len, "%s (%s)", what, wc_GetErrorString(wc));
	else
		snprintf(err, err_len, "%s", what);
}

/* DER bytes of the key: converted from PEM into *der (caller frees), or
 * the input itself.  Returns the DER length, or -1. */
static long key_der(const unsigned char *data, size_t len, unsigned char **der, char *err,
		    size_t err_len)
{
	int n;

	*der = NULL;
	if (len < 10 || memcmp(data, "-----BEGIN", 10) != 0)
		return (long)len;
	*der = malloc(len);
	if (*der == NULL) {
		key_err(err, err_len, "out of memory", 0);
		return -1;
	}
	n = wc_KeyPemToDer(data, (int)len, *der, (int)len, NULL);
	if (n <= 0) {
		key_err(err, err_len, "not a PEM private key", n);
		return -1;
	}
	return n;
}

static int key_load_rsa(struct dkim_key *k, unsigned char *der, word32 len, char *err,
			size_t err_len)
{
	word32 idx = 0;
	int rc, bits;

	if (wc_InitRsaKey(&k->u.rsa, NULL) != 0) {
		key_err(err, err_len, "can't initialise an RSA key", 0);
		return PT_ERROR;
	}
	/* A PKCS#8 wrapper: skip to the PKCS#1 key inside (fails harmlessly
	 * on a bare PKCS#1 key, leaving idx at 0). */
	if (wc_GetPkcs8TraditionalOffset(der, &idx, len) < 0)
		idx = 0;
	rc = wc_RsaPrivateKeyDecode(der, &idx, &k->u.rsa, len);
	if (rc != 0) {
		key_err(err, err_len, "not an RSA private key (PKCS#1 or PKCS#8)", rc);
		return PT_ERROR;
	}
	bits = wc_RsaEncryptSize(&k->u.rsa) * 8;
	if (bits < DKIM_RSA_MIN_BITS) {
		snprintf(err, err_len,
			 "RSA key of %d bits is too short (RFC 8301 3.2: at least %d)", bits,
			 DKIM_RSA_MIN_BITS);
		return PT_ERROR;
	}
	return PT_OK;
}

static int key_load_ed25519(struct dkim_key *k, const unsigned char *der, word32 len, char *err,
			    size_t err_len)
{
	unsigned char pub[ED25519_PUB_KEY_SIZE], priv[ED25519_KEY_SIZE];
	word32 idx = 0;
	int rc;

	if (wc_ed25519_init(&k->u.ed25519) != 0) {
		key_err(err, err_len, "can't initialise an Ed25519 key", 0);
		return PT_ERROR;
	}
	rc = wc_Ed25519PrivateKeyDecode(der, &idx, &k->u.ed25519, len);
	if (rc != 0) {
		key_err(err, err_len, "not an Ed25519 private key (PKCS#8)", rc);
		return PT_ERROR;
	}
	if (k->u.ed25519.pubKeySet)
		return PT_OK;
	memcpy(priv, k->u.ed25519.k, sizeof(priv));
	rc = wc_ed25519_make_public(&k->u.ed25519, pub, sizeof(pub));
	if (rc == 0)
		rc = wc_ed25519_import_private_key(priv, sizeof(priv), pub, sizeof(pub),
						   &k->u.ed25519);
	memset(priv, 0, sizeof(priv));
	if (rc != 0) {
		key_err(err, err_len, "can't derive the Ed25519 public key", rc);
		return PT_ERROR;
	}
	return PT_OK;
}

int dkim_key_load(enum dkim_algorithm algorithm, const unsigned char *data, size_t len,
		  struct dkim_key **out, char *err, size_t err_len)
{
	struct dkim_key *k = calloc(1, sizeof(*k));
	unsigned char *der = NULL;
	long der_len;
	int rc = PT_ERROR;

	*out = NULL;
	if (k == NULL) {
		key_err(err, err_len, "out of memory", 0);
		return PT_NOMEM;
	}
	k->algorithm = algorithm;
	der_len = key_der(data, len, &der, err, err_len);
	if (der_len < 0)
		goto fail;
	if (algorithm == DKIM_RSA_SHA256)
		rc = key_load_rsa(k, der ? der : (unsigned char *)data, (word32)der_len, err,
				  err_len);
	else
		rc = key_load_ed25519(k, der ? der : data, (word32)der_len, err, err_len);
	if (rc != PT_OK)
		goto fail;
	if (wc_InitRng(&k->rng) != 0) {
		key_err(err, err_len, "can't initialise the random number generator", 0);
		rc = PT_ERROR;
		goto fail;
	}
	k->rng_ready = true;
	if (der != NULL)
		memset(der, 0, (size_t)der_len);
	free(der);
	*out = k;
	return PT_OK;
fail:
	if (der != NULL)
		memset(der, 0, (size_t)der_len > 0 ? (size_t)der_len : 0);
	free(der);
	dkim_key_free(k);
	return rc;
}

void dkim_key_free(struct dkim_key *k)
{
	if (k == NULL)
		return;
	if (k->algorithm == DKIM_RSA_SHA256)
		wc_FreeRsaKey(&k->u.rsa);
	else
		wc_ed25519_free(&k->u.ed25519);
	if (k->rng_ready)
		wc_FreeRng(&k->rng);
	memset(k, 0, sizeof(*k));
	free(k);
}

enum dkim_algorithm dkim_key_algorithm(const struct dkim_key *k)
{
	return k->algorithm;
}

static int key_sign_rsa(struct dkim_key *k, const unsigned char *data, size_t len,
			unsigned char *sig, size_t cap, size_t *sig_len, char *err, size_t err_len)
{
	word32 n = (word32)cap;
	int rc;

	/* Hash, DigestInfo (RFC 8017 9.2), PKCS#1 v1.5 padding, private op. */
	rc = wc_SignatureGenerate(WC_HASH_TYPE_SHA256, WC_SIGNATURE_TYPE_RSA_W_ENC, data,
				  (word32)len, sig, &n, &k->u.rsa, sizeof(k->u.rsa), &k->rng);
	if (rc != 0) {
		key_err(err, err_len, "RSA signing failed", rc);
		return PT_ERROR;
	}
	*sig_len = n;
	return PT_OK;
}

/* RFC 8463 3: the Ed25519 (PureEdDSA) signature of SHA-256(data). */
static int key_sign_ed25519(struct dkim_key *k, const unsigned char *data, size_t len,
			    unsigned char *sig, size_t cap, size_t *sig_len, char *err,
			    size_t err_len)
{
	unsigned char hash[WC_SHA256_DIGEST_SIZE];
	word32 n = (word32)cap;
	int rc = wc_Sha256Hash(data, (word32)len, hash);

	if (rc == 0)
		rc = wc_ed25519_sign_msg(hash, sizeof(hash), sig, &n, &k->u.ed25519);
	if (rc != 0) {
		key_err(err, err_len, "Ed25519 signing failed", rc);
		return PT_ERROR;
	}
	*sig_len = n;
	return PT_OK;
}

int dkim_key_sign(struct dkim_key *k, const unsigned char *data, size_t len, unsigned char *sig,
		  size_t cap, size_t *sig_len, char *err, size_t err_len)
{
	if (k->algorithm == DKIM_RSA_SHA256)
		return key_sign_rsa(k, data, len, sig, cap, sig_len, err, err_len);
	return key_sign_ed25519(k, data, len, sig, cap, sig_len, err, err_len);
}

int dkim_base64_append(struct pt_buf *out, const unsigned char *p, size_t n)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	if (pt_buf_reserve(out, (n + 2) / 3 * 4) != PT_OK)
		return PT_NOMEM;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		char *o = out->data + out->len;

		if (i + 1 < n)
			v |= (unsigned)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		o[0] = alphabet[(v >> 18) & 63];
		o[1] = alphabet[(v >> 12) & 63];
		o[2] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
		o[3] = i + 2 < n ? alphabet[v & 63] : '=';
		out->len += 4;
	}
	return PT_OK;
}
