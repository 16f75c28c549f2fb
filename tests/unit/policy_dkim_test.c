/*
 * policy_dkim_test.c -- DKIM signing (policy/dkim*.c): the canonicalization
 * examples of RFC 6376 3.4.5, the body hashes of an empty body, the h= list
 * with repeated fields and over-signing, the DKIM-Signature field's shape
 * and folding, key loading, and the Lua API's argument errors.
 *
 * That a signature verifies is shown end to end by tests/e2e/test_dkim.py
 * with an independent verifier (dkimpy); here Ed25519's determinism shows
 * the signed input depends only on the message, the time and the signer.
 */
#include "policy/dkim.h"
#include "tests/unit/policy_test_util.h"

#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/sha256.h>

/* Keys made with openssl for these tests only. */
static const char ED25519_PEM[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIBc8Hv+54c5d4txGelluGb9K0Z9Ey3dh1rszEdoA0emu\n"
    "-----END PRIVATE KEY-----\n";
static const char RSA1024_PEM[] =
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIICXQIBAAKBgQDG5lDYAqg0qslRexr6D4m2NQWOhCQPms8843+FyoNddoF2fYLU\n"
    "ba+4DXlo9w12DM7SxlGvDIiIT8oxbPAsq6BKS9YRZ5LLYRD336NgJaXyWeaGuEhn\n"
    "blh5WPtdrjIsrp5FKFwcmMlGhSkyym/wIAMihkpWSO+HmnWN3vca6VNhMQIDAQAB\n"
    "AoGAM8m0Mwo+EbiGQpjzJTj2emLD15/AY+/DFe+GPKfGHIfGnbuAXR9SKXIYsqPg\n"
    "9WPQVkEc858nzZY45zWeM4NccIZb369niVUX4wNsNMoL0ruEz86inqr8Badx9/ja\n"
    "H5nlgipQkHFVnLfbhtFjM0B+HOpB0Dwp1+e4g9zqAefwTCECQQDi7K2cS21Xy4kE\n"
    "g6Oa5Wq7XPBcdNKcTzOFDbFHUaqWhWIAtZ2384S8GRPuYm62rKDr78gPaIA/o72m\n"
    "ERfG/mY7AkEA4GJl57wib/0uHb7/iecapvIS4u5izv7SUVqKCMA3YdUECuzJBXhK\n"
    "pQ29c126fCkO3AXnq0YoViHuoCWFFdEjgwJBAM/c/Sqt7Pr+9gOskbDRdXMrLwGC\n"
    "AWotIoQ+hqVNqXU3uQ3tTwuxhWTHk/pJMCElAEMe4aM7lj61PoNgJOejIQECQQCE\n"
    "MhSdsZ6MYhpQVh3RTkHKh6YO4ql+EG0ylufp/ezjC4/lK9nHCjbYBT9Pf7IFwl7J\n"
    "zATQSHYtQLKI0XIWB3AnAkB5W7jdGmssC4JokhgmB7EXyh/n5kxoFkqXdq6J+Xhn\n"
    "ssc2cX4a3dxgLCQnLKB8Q/kAnXW+Hi4KWXcI+lQH+ckZ\n"
    "-----END RSA PRIVATE KEY-----\n";
static const char RSA512_PEM[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEAzdt2Z6xRKTA3B2RZ\n"
    "8o3+Ap99UTfSL8Scn3EI2blmLhpuhgwJEKlaWSs/l5nygCO8okIM1a3ToxD7dfBr\n"
    "az4LiQIDAQABAkAsOF6A+rUcgezwO5BO2E2eRqBm1/Tgqf1zCpb6Hidi84ufvsEX\n"
    "Iuu0ZMTp05Lf7L9cN1Fk9fzwOYZxeAL7OMZhAiEA+VY8qOuYZUR/62OVeuoe9mVD\n"
    "9i9OG9MPkqE8j0thA6UCIQDTW8XnjD6MbH3Fey6ttj+PMdnx6Y7tMrO2raurL52T\n"
    "FQIhALJNex+JKvfwHlIkarb1SaMGE62vcnnvWwmOiBIo432JAiAZgbjHcchWn/0p\n"
    "qO0AL79J46U+qYYDIBxKDnlqJkvo5QIgTdO/qTa0YEYIKblpkzFf4FxmSbPJL2kj\n"
    "Dg0frHpMA7s=\n"
    "-----END PRIVATE KEY-----\n";

#define TEST_MSG                                                                                   \
	"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n"                               \
	"Subject:  hello\r\n   world\r\nReceived: a\r\nReceived: b\r\n\r\n"                        \
	"Hi  there \r\n\r\n\r\n"

TestSuite(policy_dkim, .init = dir_setup, .fini = dir_teardown);

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void buf_is(const struct pt_buf *b, const char *want)
{
	cr_assert_eq(b->len, strlen(want), "got %zu bytes '%.*s', want '%s'", b->len, (int)b->len,
		     b->data, want);
	cr_assert(memcmp(b->data, want, b->len) == 0, "got '%.*s', want '%s'", (int)b->len, b->data,
		  want);
}

/* RFC 6376 3.4.5, headers. */
Test(policy_dkim, header_canonicalization_rfc_example)
{
	struct pt_buf out = PT_BUF_INIT;
	const char *a = "A: X\r\n", *b = "B : Y\t\r\n\tZ  \r\n";

	cr_assert_eq(dkim_canon_header(DKIM_CANON_RELAXED, a, strlen(a), &out), PT_OK);
	cr_assert_eq(dkim_canon_header(DKIM_CANON_RELAXED, b, strlen(b), &out), PT_OK);
	buf_is(&out, "a:X\r\nb:Y Z\r\n");
	out.len = 0;
	cr_assert_eq(dkim_canon_header(DKIM_CANON_SIMPLE, b, strlen(b), &out), PT_OK);
	buf_is(&out, b);
	pt_buf_free(&out);
}

/* RFC 6376 3.4.5, bodies. */
Test(policy_dkim, body_canonicalization_rfc_example)
{
	struct pt_buf out = PT_BUF_INIT;
	const char *body = " C \r\nD \t E\r\n\r\n\r\n";

	cr_assert_eq(dkim_canon_body(DKIM_CANON_RELAXED, body, strlen(body), &out), PT_OK);
	buf_is(&out, " C\r\nD E\r\n");
	out.len = 0;
	cr_assert_eq(dkim_canon_body(DKIM_CANON_SIMPLE, body, strlen(body), &out), PT_OK);
	buf_is(&out, " C \r\nD \t E\r\n");
	pt_buf_free(&out);
}

Test(policy_dkim, body_canonicalization_edges)
{
	struct pt_buf out = PT_BUF_INIT;

	/* A last line without CRLF gets one; blank lines inside are kept. */
	cr_assert_eq(dkim_canon_body(DKIM_CANON_RELAXED, "a\r\n\r\n \t\r\nb", 10, &out), PT_OK);
	buf_is(&out, "a\r\n\r\n\r\nb\r\n");
	out.len = 0;
	cr_assert_eq(dkim_canon_body(DKIM_CANON_SIMPLE, "", 0, &out), PT_OK);
	buf_is(&out, "\r\n");
	out.len = 0;
	cr_assert_eq(dkim_canon_body(DKIM_CANON_RELAXED, "\r\n\r\n", 4, &out), PT_OK);
	buf_is(&out, "");
	pt_buf_free(&out);
}

static void hash_b64_is(enum dkim_canon canon, const char *body, const char *want)
{
	unsigned char h[DKIM_HASH_LEN];
	struct pt_buf b64 = PT_BUF_INIT;

	dkim_body_hash(canon, body, strlen(body), h);
	cr_assert_eq(dkim_base64_append(&b64, h, sizeof(h)), PT_OK);
	buf_is(&b64, want);
	pt_buf_free(&b64);
}

/* The well-known bh= of an empty body (RFC 6376 3.4.3, 3.4.4), and the
 * streamed hash equal to the hash of the canonical copy. */
Test(policy_dkim, body_hashes)
{
	unsigned char want[DKIM_HASH_LEN], got[DKIM_HASH_LEN];
	struct pt_buf canon = PT_BUF_INIT;
	const char *body = "Hi  there \r\n\tx\r\n\r\n";
	wc_Sha256 sha;

	hash_b64_is(DKIM_CANON_SIMPLE, "", "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
	hash_b64_is(DKIM_CANON_RELAXED, "", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
	cr_assert_eq(dkim_canon_body(DKIM_CANON_RELAXED, body, strlen(body), &canon), PT_OK);
	buf_is(&canon, "Hi there\r\n x\r\n");
	wc_InitSha256(&sha);
	wc_Sha256Update(&sha, (const byte *)canon.data, (word32)canon.len);
	wc_Sha256Final(&sha, want);
	dkim_body_hash(DKIM_CANON_RELAXED, body, strlen(body), got);
	cr_assert(memcmp(want, got, sizeof(want)) == 0);
	pt_buf_free(&canon);
}

Test(policy_dkim, base64)
{
	struct pt_buf b = PT_BUF_INIT;

	cr_assert_eq(dkim_base64_append(&b, (const unsigned char *)"f", 1), PT_OK);
	cr_assert_eq(dkim_base64_append(&b, (const unsigned char *)"fo", 2), PT_OK);
	cr_assert_eq(dkim_base64_append(&b, (const unsigned char *)"foobar", 6), PT_OK);
	buf_is(&b, "Zg==Zm8=Zm9vYmFy");
	pt_buf_free(&b);
}

static const char BLOCK[] = "From: a@example.com\r\nReceived: one\r\nTo: b@example.net\r\n"
			    "Received: two\r\n";

/* Each configured name once per field of that name, names as configured;
 * a repeated configured name counts once; absent names are left out. */
Test(policy_dkim, header_list)
{
	const char *names[] = {"From", "received", "Cc", "FROM"};
	struct dkim_signer_config cfg = {.headers = names, .n_headers = 4};
	struct pt_buf out = PT_BUF_INIT;

	cr_assert_eq(dkim_header_list(&cfg, BLOCK, strlen(BLOCK), &out), PT_OK);
	buf_is(&out, "From:received:received");
	out.len = 0;
	cfg.over_sign = true;
	cr_assert_eq(dkim_header_list(&cfg, BLOCK, strlen(BLOCK), &out), PT_OK);
	buf_is(&out, "From:From:received:received:received:Cc");
	pt_buf_free(&out);
}

static struct dkim_key *key_from(enum dkim_algorithm alg, const char *pem)
{
	struct dkim_key *k = NULL;
	char err[256];

	cr_assert_eq(
	    dkim_key_load(alg, (const unsigned char *)pem, strlen(pem), &k, err, sizeof(err)),
	    PT_OK, "%s", err);
	cr_assert_eq(dkim_key_algorithm(k), alg);
	return k;
}

Test(policy_dkim, keys_load_and_refuse)
{
	struct dkim_key *k = NULL;
	char err[256];

	dkim_key_free(key_from(DKIM_ED25519_SHA256, ED25519_PEM));
	dkim_key_free(key_from(DKIM_RSA_SHA256, RSA1024_PEM));
	cr_assert_eq(dkim_key_load(DKIM_RSA_SHA256, (const unsigned char *)RSA512_PEM,
				   strlen(RSA512_PEM), &k, err, sizeof(err)),
		     PT_ERROR);
	cr_assert_null(k);
	cr_assert(strstr(err, "1024") != NULL, "%s", err);
	/* An Ed25519 key is not an RSA key, and garbage is no key. */
	cr_assert_eq(dkim_key_load(DKIM_RSA_SHA256, (const unsigned char *)ED25519_PEM,
				   strlen(ED25519_PEM), &k, err, sizeof(err)),
		     PT_ERROR);
	cr_assert_eq(dkim_key_load(DKIM_ED25519_SHA256, (const unsigned char *)"junk", 4, &k, err,
				   sizeof(err)),
		     PT_ERROR);
}

static const char *HEADERS[] = {"From", "To", "Subject", "Date"};

static void sign_block(enum dkim_algorithm alg, const char *pem, bool over_sign,
		       uint64_t expiration, struct pt_buf *out)
{
	struct dkim_signer_config cfg = {
	    .algorithm = alg,
	    .domain = "example.com",
	    .selector = "sel-1",
	    .headers = HEADERS,
	    .n_headers = 4,
	    .header_canon = DKIM_CANON_RELAXED,
	    .body_canon = DKIM_CANON_SIMPLE,
	    .over_sign = over_sign,
	    .expiration_s = expiration,
	};
	struct dkim_key *k = key_from(alg, pem);
	char err[256];

	cr_assert_eq(dkim_sign(&cfg, k, BLOCK, strlen(BLOCK), "Hi\r\n", 4, 1700000000, out, err,
			       sizeof(err)),
		     PT_OK, "%s", err);
	dkim_key_free(k);
}

/* The value's tags, in order, folded at 78 columns counting the field name. */
Test(policy_dkim, field_shape_and_folding)
{
	struct pt_buf v = PT_BUF_INIT;
	const char *line, *end;
	size_t col = strlen("DKIM-Signature: ");

	sign_block(DKIM_RSA_SHA256, RSA1024_PEM, true, 3600, &v);
	cr_assert_eq(pt_buf_cstr(&v) != NULL, true);
	cr_assert(
	    starts_with(v.data, "v=1; a=rsa-sha256; c=relaxed/simple; d=example.com; s=sel-1;"),
	    "%s", v.data);
	cr_assert(strstr(v.data, "t=1700000000;") != NULL, "%s", v.data);
	cr_assert(strstr(v.data, "x=1700003600;") != NULL, "%s", v.data);
	cr_assert(strstr(v.data, "h=From:From:To:To:Subject:Date;") != NULL, "%s", v.data);
	cr_assert(strstr(v.data, "bh=") != NULL && strstr(v.data, "\r\n\tb=") != NULL, "%s",
		  v.data);
	for (line = v.data; line != NULL; line = end ? end + 2 : NULL) {
		end = strstr(line, "\r\n");
		cr_assert_leq(col + (size_t)(end ? end - line : (long)strlen(line)), 78,
			      "line too long: %s", line);
		cr_assert(end == NULL || end[2] == '\t', "a fold must start with WSP");
		col = 0;
	}
	pt_buf_free(&v);
}

/* Ed25519 is deterministic: the same block, body, time and signer give the
 * same field, and another time gives another b=. */
Test(policy_dkim, ed25519_is_deterministic)
{
	struct pt_buf a = PT_BUF_INIT, b = PT_BUF_INIT;

	sign_block(DKIM_ED25519_SHA256, ED25519_PEM, false, 0, &a);
	sign_block(DKIM_ED25519_SHA256, ED25519_PEM, false, 0, &b);
	pt_buf_cstr(&a); /* NUL-terminated for the strstr calls below */
	buf_is(&a, pt_buf_cstr(&b));
	cr_assert(strstr(a.data, "a=ed25519-sha256;") != NULL);
	cr_assert(strstr(a.data, "x=") == NULL);
	cr_assert(strstr(a.data, "h=From:To;") != NULL, "%s", a.data);
	pt_buf_free(&a);
	pt_buf_free(&b);
}

Test(policy_dkim, no_from_is_declined)
{
	const char *names[] = {"From"};
	struct dkim_signer_config cfg = {.algorithm = DKIM_ED25519_SHA256,
					 .domain = "example.com",
					 .selector = "s",
					 .headers = names,
					 .n_headers = 1};
	struct dkim_key *k = key_from(DKIM_ED25519_SHA256, ED25519_PEM);
	struct pt_buf out = PT_BUF_INIT;
	char err[256];

	cr_assert_eq(dkim_sign(&cfg, k, "To: x@y\r\n", 9, "", 0, 1, &out, err, sizeof(err)),
		     PT_DECLINED);
	cr_assert_eq(out.len, 0);
	cr_assert(strstr(err, "no From") != NULL, "%s", err);
	dkim_key_free(k);
}

/* --- the Lua API ---------------------------------------------------------- */

static const char *key_file(const char *name, const char *pem)
{
	static char path[4][600];
	static int next;
	char *p = path[next++ % 4];

	return test_write_file(test_dir, name, pem, p, sizeof(path[0]));
}

static int sign_with(const char *handler, struct pt_message *m, struct policy_reply *r)
{
	char text[8192];
	struct policy *p;
	int rc;

	snprintf(text, sizeof(text),
		 "local kumo = require 'kumo'\n"
		 "kumo.on('smtp_server_message_received', function(msg)\n%s\nend)\n",
		 handler);
	p = load_ok(text);
	pt_message_init(m);
	cr_assert_eq(pt_message_set_sender(m, "alice@example.com", 17), PT_OK);
	cr_assert_eq(pt_message_add_rcpt(m, "bob@example.net", 15), PT_OK);
	cr_assert_eq(pt_buf_append(&m->data, TEST_MSG, sizeof(TEST_MSG) - 1), PT_OK);
	pt_message_scan_headers(m);
	memset(r, 0, sizeof(*r));
	rc = policy_smtp_server_message_received(p, m, r);
	policy_free(p);
	return rc;
}

/* Two signers on one message: two fields, the later one on top; from_header
 * reads the From field's mailbox. */
Test(policy_dkim, lua_signers_prepend_fields)
{
	char handler[2048];
	struct pt_message m;
	struct policy_reply r;
	const char *rsa = key_file("rsa.pem", RSA1024_PEM);
	const char *second;

	snprintf(handler, sizeof(handler),
		 "local f = msg:from_header()\n"
		 "assert(f.domain == 'example.com' and f.user == 'alice' and f.name == 'Alice', "
		 "f.email)\n"
		 "msg:dkim_sign(kumo.dkim.rsa_sha256_signer{domain=f.domain, selector='r',\n"
		 "  headers={'From','To','Subject'}, key='%s'})\n"
		 "msg:dkim_sign(kumo.dkim.ed25519_signer{domain='esp.example', selector='e',\n"
		 "  headers={'From'}, key={key_data=[[%s]]}, over_sign=true,\n"
		 "  header_canonicalization='Simple', body_canonicalization='Simple'})\n",
		 rsa, ED25519_PEM);
	cr_assert_eq(sign_with(handler, &m, &r), PT_OK, "%s", r.text);
	pt_buf_cstr(&m.prefix);
	cr_assert(
	    starts_with(m.prefix.data,
			"DKIM-Signature: v=1; a=ed25519-sha256; c=simple/simple; d=esp.example; "
			"s=e;"),
	    "%s", m.prefix.data);
	second = strstr(m.prefix.data + 1, "\r\nDKIM-Signature: ");
	cr_assert_not_null(second, "%s", m.prefix.data);
	cr_assert(starts_with(second + 2, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;"),
		  "%s", second);
	cr_assert(strstr(m.prefix.data, "h=From:From;") != NULL, "%s", m.prefix.data);
	pt_message_clear(&m);
}

static void signer_fails(const char *args, int line, const char *msg)
{
	char text[4096];

	snprintf(text, sizeof(text),
		 "local kumo = require 'kumo'\n"
		 "local s = kumo.dkim.rsa_sha256_signer%s\n",
		 args);
	load_fails_with(text, line, msg);
}

Test(policy_dkim, lua_argument_errors)
{
	char args[1024];
	const char *weak = key_file("weak.pem", RSA512_PEM);

	signer_fails("{selector='s', headers={'From'}, key='k'}", 2,
		     "kumo.dkim.rsa_sha256_signer: 'domain' is required");
	signer_fails("{domain='a..b', selector='s', headers={'From'}, key='k'}", 2,
		     "kumo.dkim.rsa_sha256_signer: 'domain' must be a domain name, got 'a..b'");
	signer_fails("{domain='a.b', selector='s', headers={'To'}, key='k'}", 2,
		     "kumo.dkim.rsa_sha256_signer: 'headers' must include From (RFC 6376 5.4)");
	signer_fails("{domain='a.b', selector='s', headers={'From'}, key='k', "
		     "header_canonicalization='Loose'}",
		     2,
		     "kumo.dkim.rsa_sha256_signer: 'header_canonicalization' must be "
		     "\"Relaxed\" or \"Simple\"");
	signer_fails("{domain='a.b', selector='s', headers={'From'}, key='k', atps='x'}", 2,
		     "kumo.dkim.rsa_sha256_signer: 'atps' is a KumoMTA option Petrel does not "
		     "support yet");
	signer_fails("{domain='a.b', selector='s', headers={'From'}, key='/nonexistent/k.pem'}", 2,
		     "kumo.dkim.rsa_sha256_signer: key: can't read '/nonexistent/k.pem': No such "
		     "file or directory");
	snprintf(args, sizeof(args), "{domain='a.b', selector='s', headers={'From'}, key='%s'}",
		 weak);
	{
		char text[2048], err[1024];
		struct policy *p = NULL;

		snprintf(text, sizeof(text),
			 "local kumo = require 'kumo'\nlocal s = kumo.dkim.rsa_sha256_signer%s\n",
			 args);
		cr_assert_eq(policy_load(&p, write_policy(text), 0, err, sizeof(err)), PT_ERROR);
		cr_assert(strstr(err, weak) != NULL && strstr(err, "1024") != NULL, "%s", err);
	}
}

/* msg:from_header() on the shapes From takes (RFC 5322 3.4, 3.6.2). */
Test(policy_dkim, from_header_forms)
{
	static const struct {
		const char *from, *email, *name;
	} cases[] = {
	    {"From: Alice <alice@example.com>\r\n", "alice@example.com", "Alice"},
	    {"From: \"Doe, John\" <j@d.example>\r\n", "j@d.example", "Doe, John"},
	    {"From: <bare@x.example>\r\n", "bare@x.example", ""},
	    {"From: plain@y.example (a comment)\r\n", "plain@y.example", ""},
	    {"From: A <a@one.example>, B <b@two.example>\r\n", "a@one.example", "A"},
	    {"From: Folded\r\n <f@z.example>\r\n", "f@z.example", "Folded"},
	};
	char text[1024];

	for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
		struct policy *p;
		struct pt_message m;
		struct policy_reply r = {0};
		char data[256];

		snprintf(text, sizeof(text),
			 "local kumo = require 'kumo'\n"
			 "kumo.on('smtp_server_message_received', function(msg)\n"
			 "  local f = msg:from_header()\n"
			 "  if f.email ~= '%s' or f.name ~= '%s' then\n"
			 "    kumo.reject(550, 'got ' .. f.email .. ' / ' .. f.name)\n"
			 "  end\n"
			 "end)\n",
			 cases[i].email, cases[i].name);
		p = load_ok(text);
		pt_message_init(&m);
		snprintf(data, sizeof(data), "%sSubject: s\r\n\r\nbody\r\n", cases[i].from);
		cr_assert_eq(pt_buf_append_str(&m.data, data), PT_OK);
		pt_message_scan_headers(&m);
		cr_assert_eq(policy_smtp_server_message_received(p, &m, &r), PT_OK, "%s: %s",
			     cases[i].from, r.text);
		pt_message_clear(&m);
		policy_free(p);
	}
}

/* No From: nil; a From without an address: an error naming it. */
Test(policy_dkim, from_header_absent_or_empty)
{
	struct policy *p = load_ok("local kumo = require 'kumo'\n"
				   "kumo.on('smtp_server_message_received', function(msg)\n"
				   "  assert(msg:from_header() == nil)\n"
				   "end)\n");
	struct pt_message m;
	struct policy_reply r = {0};

	pt_message_init(&m);
	cr_assert_eq(pt_buf_append_str(&m.data, "Subject: s\r\n\r\nbody\r\n"), PT_OK);
	pt_message_scan_headers(&m);
	cr_assert_eq(policy_smtp_server_message_received(p, &m, &r), PT_OK, "%s", r.text);
	pt_message_clear(&m);
	policy_free(p);

	p = load_ok("local kumo = require 'kumo'\n"
		    "kumo.on('smtp_server_message_received', function(msg)\n"
		    "  msg:from_header()\n"
		    "end)\n");
	pt_message_init(&m);
	cr_assert_eq(pt_buf_append_str(&m.data, "From: undisclosed-recipients:;\r\n\r\nb\r\n"),
		     PT_OK);
	pt_message_scan_headers(&m);
	cr_assert_neq(policy_smtp_server_message_received(p, &m, &r), PT_OK);
	cr_assert_eq(r.code, 451, "a policy error defers: %d %s", r.code, r.text);
	pt_message_clear(&m);
	policy_free(p);
}
