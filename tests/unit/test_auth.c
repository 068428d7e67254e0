/* Unit tests: JWT, password hashes, API keys, base64url, random secrets. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"

static const uint8_t KEY[] = "zmesh-unit-test-key-0123456789ab";
#define KEY_LEN (sizeof(KEY) - 1)
static const uint8_t OTHER_KEY[] = "another-key-that-is-32-bytes-lon";

/* Computed at test-writing time with Python's hmac, hashlib and base64
 * modules, independently of this code. */
static const char JWT_KAT_42[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                                 "eyJzdWIiOiI0MiIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAzNjAwfQ."
                                 "q4qOhBRW5InoNzq8xWzwjjPAwpEGam7ugVimgocfIzM";
static const char JWT_KAT_UUID[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIwYjZmN2MxZS0yYTQ3LTRmMGUtOWQwYy01ZjFmM2MyYTllMTEiLCJpYXQiOjAsImV4cCI6MX0."
    "3u3hMVjahe4OWVLymTGsFS4UlEq68trTV3qxQLf63_M";

/* A token with arbitrary header and payload text, signed with HS256 under
 * key (or with the given raw signature segment when sig is not NULL). */
static char *forge(const char *header, const char *payload, const uint8_t *key, const char *sig)
{
	char *h = NULL, *p = NULL, *s = NULL, *input = NULL, *out = NULL;
	assert_int_equal(auth_b64url_encode((const uint8_t *)header, strlen(header), &h, NULL), 0);
	assert_int_equal(auth_b64url_encode((const uint8_t *)payload, strlen(payload), &p, NULL), 0);
	assert_true(asprintf(&input, "%s.%s", h, p) > 0);
	if (sig) {
		s = strdup(sig);
	} else {
		uint8_t mac[32];
		unsigned int mac_len = 0;
		assert_non_null(
		    HMAC(EVP_sha256(), key, (int)KEY_LEN, (const uint8_t *)input, strlen(input), mac, &mac_len));
		assert_int_equal(mac_len, 32);
		assert_int_equal(auth_b64url_encode(mac, mac_len, &s, NULL), 0);
	}
	assert_true(asprintf(&out, "%s.%s", input, s) > 0);
	free(h);
	free(p);
	free(s);
	free(input);
	return out;
}

static int verify(const char *token, int64_t now)
{
	char *sub = (char *)"untouched";
	int64_t exp = -7;
	struct zerr e = {0};
	int r = auth_jwt_verify(KEY, KEY_LEN, token, now, &sub, NULL, &exp, &e);
	if (r == 0) {
		free(sub);
	} else {
		assert_int_equal(e.code, r);
		assert_true(e.msg[0] != '\0');
		assert_string_equal(sub, "untouched");
		assert_int_equal(exp, -7);
	}
	return r;
}

static const char GOOD_HDR[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
static const char GOOD_PAY[] = "{\"sub\":\"7\",\"iat\":100,\"exp\":200}";

/* ---- base64url ---- */

static void test_b64url_rfc4648(void **state)
{
	/* RFC 4648 section 10, without padding, plus bytes that use '-' and '_'. */
	static const struct {
		const char *raw, *enc;
	} v[] = {
	    {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
	    {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"},
	};
	for (size_t i = 0; i < ELEMENTSOF(v); i++) {
		char *enc = NULL;
		assert_int_equal(auth_b64url_encode((const uint8_t *)v[i].raw, strlen(v[i].raw), &enc, NULL), 0);
		assert_string_equal(enc, v[i].enc);
		free(enc);
		uint8_t *raw = NULL;
		size_t n = 99;
		assert_int_equal(auth_b64url_decode(v[i].enc, strlen(v[i].enc), &raw, &n, NULL), 0);
		assert_int_equal(n, strlen(v[i].raw));
		assert_memory_equal(raw, v[i].raw, n);
		assert_int_equal(raw[n], 0); /* NUL-terminated for text parsers */
		free(raw);
	}
}

static void test_b64url_round_trip_all_bytes(void **state)
{
	uint8_t in[256];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(255 - i);
	for (size_t n = 0; n <= sizeof(in); n += 1) {
		char *enc = NULL;
		uint8_t *out = NULL;
		size_t out_len = 0;
		assert_int_equal(auth_b64url_encode(in, n, &enc, NULL), 0);
		assert_null(strpbrk(enc, "+/="));
		assert_int_equal(auth_b64url_decode(enc, strlen(enc), &out, &out_len, NULL), 0);
		assert_int_equal(out_len, n);
		assert_memory_equal(out, in, n);
		free(enc);
		free(out);
	}
}

static void test_b64url_rejects(void **state)
{
	/* Padding, standard-alphabet characters, whitespace, impossible
	 * lengths, and non-zero unused bits: "Zh" and "Zm9" would decode to
	 * "f" and "fo", whose only encodings are "Zg" and "Zm8". */
	const char *bad[] = {"Zg==", "Zm8=", "a+bc", "a/bc", "Zm 9v", "Zm9v\n", "A", "Zm9vY", "Zh", "Zm9", "Z\x80"};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		uint8_t *out = (uint8_t *)"untouched";
		size_t n = 5;
		struct zerr e = {0};
		int r = auth_b64url_decode(bad[i], strlen(bad[i]), &out, &n, &e);
		assert_int_equal(r, -EINVAL);
		assert_int_equal(e.code, -EINVAL);
		assert_string_equal((char *)out, "untouched");
		assert_int_equal(n, 5);
	}
	/* An embedded NUL counts as a bad character, not as the end. */
	uint8_t *out = NULL;
	size_t n = 0;
	assert_int_equal(auth_b64url_decode("Zm\0v", 4, &out, &n, NULL), -EINVAL);
}

static void test_b64url_bounds(void **state)
{
	size_t big = (size_t)AUTH_B64URL_MAX + 1;
	uint8_t *in = calloc(1, big);
	assert_non_null(in);
	char *enc = NULL;
	assert_int_equal(auth_b64url_encode(in, big, &enc, NULL), -EINVAL);
	assert_null(enc);
	memset(in, 'A', big);
	uint8_t *out = NULL;
	size_t n = 0;
	assert_int_equal(auth_b64url_decode((const char *)in, big, &out, &n, NULL), -EINVAL);
	assert_null(out);
	free(in);
	assert_int_equal(auth_b64url_encode(NULL, 3, &enc, NULL), -EINVAL);
	assert_int_equal(auth_b64url_decode(NULL, 3, &out, &n, NULL), -EINVAL);
}

/* ---- JWT ---- */

static void test_jwt_known_answer(void **state)
{
	char *tok = NULL;
	assert_int_equal(auth_jwt_sign(KEY, KEY_LEN, "42", 1700000000, 1700003600, &tok, NULL), 0);
	assert_string_equal(tok, JWT_KAT_42);
	free(tok);
	assert_int_equal(auth_jwt_sign(KEY, KEY_LEN, "0b6f7c1e-2a47-4f0e-9d0c-5f1f3c2a9e11", 0, 1, &tok, NULL), 0);
	assert_string_equal(tok, JWT_KAT_UUID);
	free(tok);

	/* ... and the independently made tokens verify. */
	char *sub = NULL;
	int64_t iat = 0, exp = 0;
	assert_int_equal(auth_jwt_verify(KEY, KEY_LEN, JWT_KAT_42, 1700000000, &sub, &iat, &exp, NULL), 0);
	assert_string_equal(sub, "42");
	assert_int_equal(iat, 1700000000);
	assert_int_equal(exp, 1700003600);
	free(sub);
	assert_int_equal(auth_jwt_verify(KEY, KEY_LEN, JWT_KAT_UUID, 0, &sub, NULL, NULL, NULL), 0);
	assert_string_equal(sub, "0b6f7c1e-2a47-4f0e-9d0c-5f1f3c2a9e11");
	free(sub);
}

static void test_jwt_round_trip_and_expiry(void **state)
{
	char *tok = NULL;
	assert_int_equal(auth_jwt_sign(KEY, KEY_LEN, "user-\xc3\xa9", 1000, 4600, &tok, NULL), 0);
	assert_int_equal(verify(tok, 1000), 0);
	assert_int_equal(verify(tok, 4599), 0);
	/* Expired exactly at exp, and ever after. */
	assert_int_equal(verify(tok, 4600), -EKEYEXPIRED);
	assert_int_equal(verify(tok, INT64_MAX), -EKEYEXPIRED);
	/* Expired but forged stays invalid: expiry is only reported for
	 * tokens we signed. */
	char *other = NULL;
	assert_int_equal(auth_jwt_sign(OTHER_KEY, KEY_LEN, "user", 1000, 4600, &other, NULL), 0);
	assert_int_equal(verify(other, 5000), -EINVAL);
	free(other);
	free(tok);
}

static void test_jwt_sign_rejects(void **state)
{
	char *tok = NULL;
	struct zerr e = {0};
	char long_sub[AUTH_JWT_SUB_MAX + 2];
	memset(long_sub, 'u', sizeof(long_sub) - 1);
	long_sub[sizeof(long_sub) - 1] = '\0';
	assert_int_equal(auth_jwt_sign(KEY, KEY_LEN, long_sub, 1, 2, &tok, &e), -EINVAL);
	long_sub[AUTH_JWT_SUB_MAX] = '\0';
	assert_int_equal(auth_jwt_sign(KEY, KEY_LEN, long_sub, 1, 2, &tok, &e), 0);
	free(tok);
	tok = NULL;
	assert_int_equal(auth_jwt_sign(KEY, KEY_LEN, "", 1, 2, &tok, &e), -EINVAL);
	assert_int_equal(auth_jwt_sign(KEY, KEY_LEN, NULL, 1, 2, &tok, &e), -EINVAL);
	assert_int_equal(auth_jwt_sign(KEY, KEY_LEN, "\xff\xfe", 1, 2, &tok, &e), -EINVAL); /* not UTF-8 */
	assert_int_equal(auth_jwt_sign(KEY, KEY_LEN, "u", 5, 5, &tok, &e), -EINVAL);
	assert_int_equal(auth_jwt_sign(KEY, KEY_LEN, "u", -1, 5, &tok, &e), -EINVAL);
	/* RFC 7518 section 3.2: no HS256 key shorter than 256 bits. */
	assert_int_equal(auth_jwt_sign(KEY, AUTH_JWT_KEY_MIN - 1, "u", 1, 2, &tok, &e), -EINVAL);
	assert_int_equal(auth_jwt_sign(NULL, KEY_LEN, "u", 1, 2, &tok, &e), -EINVAL);
	assert_null(tok);
	char *sub = NULL;
	assert_int_equal(auth_jwt_verify(KEY, 16, JWT_KAT_42, 0, &sub, NULL, NULL, &e), -EINVAL);
	assert_null(sub);
}

static void test_jwt_tampered(void **state)
{
	char *tok = strdup(JWT_KAT_42);
	assert_non_null(tok);
	assert_int_equal(verify(tok, 1700000000), 0);

	/* One character of the payload changed: sub "42" becomes "46", still
	 * valid base64url and JSON, so only the signature can catch it. */
	char *dot = strchr(tok, '.');
	char *p = strstr(dot + 1, "I0Mi");
	assert_non_null(p);
	p[2] = 'N';
	assert_int_equal(verify(tok, 1700000000), -EINVAL);
	p[2] = 'M';
	assert_int_equal(verify(tok, 1700000000), 0);

	/* Every single-character change of the signature is refused. */
	char *sig = strrchr(tok, '.') + 1;
	for (char *c = sig; *c; c++) {
		char saved = *c;
		*c = saved == 'A' ? 'B' : 'A';
		assert_int_equal(verify(tok, 1700000000), -EINVAL);
		*c = saved;
	}
	/* Truncated or extended signature. */
	size_t l = strlen(tok);
	tok[l - 1] = '\0';
	assert_int_equal(verify(tok, 1700000000), -EINVAL);
	free(tok);
	/* Extra characters: "AA" makes an impossible length, "AAAA" a valid
	 * encoding whose first 32 bytes are still the right MAC. */
	const char *suffixes[] = {"AA", "AAAA"};
	for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
		char *longer = NULL;
		assert_true(asprintf(&longer, "%s%s", JWT_KAT_42, suffixes[i]) > 0);
		assert_int_equal(verify(longer, 1700000000), -EINVAL);
		free(longer);
	}

	/* The right token checked with another key. */
	char *sub = NULL;
	assert_int_equal(auth_jwt_verify(OTHER_KEY, KEY_LEN, JWT_KAT_42, 1700000000, &sub, NULL, NULL, NULL), -EINVAL);
	assert_null(sub);
}

static void test_jwt_algorithms(void **state)
{
	/* alg none, with an empty signature or with a valid HS256 one. */
	char *t = forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", GOOD_PAY, KEY, "");
	assert_int_equal(verify(t, 150), -EINVAL);
	free(t);
	t = forge("{\"alg\":\"none\"}", GOOD_PAY, KEY, NULL);
	assert_int_equal(verify(t, 150), -EINVAL);
	free(t);
	/* Other algorithms are refused even when the HS256 MAC is right. */
	const char *algs[] = {"{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
	                      "{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
	                      "{\"alg\":\"hs256\",\"typ\":\"JWT\"}",
	                      "{\"alg\":\"HS256 \",\"typ\":\"JWT\"}",
	                      "{\"alg\":\"\",\"typ\":\"JWT\"}",
	                      "{\"typ\":\"JWT\"}",
	                      "{\"alg\":null}",
	                      "{\"alg\":[\"HS256\"]}",
	                      "{\"alg\":\"HS256\",\"typ\":\"JOSE+JSON\"}",
	                      "{\"alg\":\"HS256\",\"typ\":1}",
	                      "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
	                      "{\"alg\":\"HS256\",\"alg\":\"HS256\"}"};
	for (size_t i = 0; i < ELEMENTSOF(algs); i++) {
		t = forge(algs[i], GOOD_PAY, KEY, NULL);
		assert_int_equal(verify(t, 150), -EINVAL);
		free(t);
	}
	/* The control: the same construction with a proper header passes, and
	 * "typ" is optional and case-insensitive. */
	const char *ok[] = {GOOD_HDR, "{\"alg\":\"HS256\"}", "{\"typ\":\"jwt\",\"alg\":\"HS256\",\"kid\":\"k1\"}"};
	for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
		t = forge(ok[i], GOOD_PAY, KEY, NULL);
		assert_int_equal(verify(t, 150), 0);
		free(t);
	}
}

static void test_jwt_claims(void **state)
{
	const char *bad[] = {
	    "{\"iat\":100,\"exp\":200}",                   /* no sub */
	    "{\"sub\":7,\"iat\":100,\"exp\":200}",         /* sub not a string */
	    "{\"sub\":\"\",\"iat\":100,\"exp\":200}",      /* empty sub */
	    "{\"sub\":\"7\",\"exp\":200}",                 /* no iat */
	    "{\"sub\":\"7\",\"iat\":\"100\",\"exp\":200}", /* iat a string */
	    "{\"sub\":\"7\",\"iat\":100}",                 /* no exp */
	    "{\"sub\":\"7\",\"iat\":100,\"exp\":200.5}",   /* exp a real */
	    "{\"sub\":\"7\",\"iat\":100,\"exp\":\"200\"}", /* exp a string */
	    "{\"sub\":\"7\",\"iat\":100,\"exp\":null}",    /* exp null */
	    "{\"sub\":\"7\",\"iat\":100,\"exp\":1e30}",    /* exp out of range */
	    "{\"sub\":\"7\",\"iat\":100,\"exp\":99999999999999999999}",
	    "{\"sub\":\"7\",\"sub\":\"8\",\"iat\":100,\"exp\":200}", /* duplicate claim */
	    "{\"sub\":\"a\\u0000b\",\"iat\":100,\"exp\":200}",       /* NUL inside sub */
	    "[\"sub\",\"7\"]",                                       /* not an object */
	    "\"7\"",
	    "{\"sub\":\"7\",\"iat\":100,\"exp\":200", /* truncated JSON */
	    "not json",
	    "",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		char *t = forge(GOOD_HDR, bad[i], KEY, NULL);
		assert_int_equal(verify(t, 150), -EINVAL);
		free(t);
	}
	/* A header that is not JSON, or not an object. */
	const char *bad_hdr[] = {"[]", "\"HS256\"", "{alg:HS256}", ""};
	for (size_t i = 0; i < ELEMENTSOF(bad_hdr); i++) {
		char *t = forge(bad_hdr[i], GOOD_PAY, KEY, NULL);
		assert_int_equal(verify(t, 150), -EINVAL);
		free(t);
	}
	/* Over-long sub: rejected even though signed. */
	char pay[AUTH_JWT_SUB_MAX + 64];
	snprintf(pay, sizeof(pay), "{\"sub\":\"%0*d\",\"iat\":100,\"exp\":200}", AUTH_JWT_SUB_MAX + 1, 0);
	char *t = forge(GOOD_HDR, pay, KEY, NULL);
	assert_int_equal(verify(t, 150), -EINVAL);
	free(t);
	/* Extra claims are fine; the control for the cases above. */
	t = forge(GOOD_HDR, "{\"sub\":\"7\",\"iat\":100,\"exp\":200,\"role\":\"x\"}", KEY, NULL);
	assert_int_equal(verify(t, 150), 0);
	assert_int_equal(verify(t, 200), -EKEYEXPIRED);
	free(t);
}

static void test_jwt_structure(void **state)
{
	const char *bad[] = {
	    "",
	    ".",
	    "..",
	    "...",
	    "abc",
	    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiJ9", /* 2 segments */
	    "eyJhbGciOiJIUzI1NiJ9.e30.e30.e30",                      /* 4 segments */
	    "eyJhbGciOiJIUzI1NiJ9..q4qOhBRW5InoNzq8xWzwjjPAwpEGam7ugVimgocfIzM",
	    "garbage.garbage.garbage",
	    "e y J.a.b",
	    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9=.e30.AAAA",
	    "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.AAAA",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		assert_int_equal(verify(bad[i], 0), -EINVAL);

	/* Four segments built from the valid token: both positions. */
	char *t = NULL;
	assert_true(asprintf(&t, "%s.", JWT_KAT_42) > 0);
	assert_int_equal(verify(t, 1700000000), -EINVAL);
	free(t);
	assert_true(asprintf(&t, "e30.%s", JWT_KAT_42) > 0);
	assert_int_equal(verify(t, 1700000000), -EINVAL);
	free(t);

	/* Over-long: a validly signed token with a huge extra claim is still
	 * refused by size alone. */
	char pay[AUTH_JWT_MAX];
	int n = snprintf(pay, sizeof(pay), "{\"sub\":\"7\",\"iat\":100,\"exp\":200,\"pad\":\"");
	memset(pay + n, 'x', 3200);
	strcpy(pay + n + 3200, "\"}");
	t = forge(GOOD_HDR, pay, KEY, NULL);
	assert_true(strlen(t) > AUTH_JWT_MAX);
	assert_int_equal(verify(t, 150), -EINVAL);
	free(t);
	/* Not NUL-terminated within any sane bound: strnlen stops the read. */
	char *huge = malloc(1 << 20);
	assert_non_null(huge);
	memset(huge, 'a', (1 << 20) - 1);
	huge[(1 << 20) - 1] = '\0';
	assert_int_equal(verify(huge, 0), -EINVAL);
	free(huge);
	char *sub = NULL;
	assert_int_equal(auth_jwt_verify(KEY, KEY_LEN, NULL, 0, &sub, NULL, NULL, NULL), -EINVAL);
	assert_int_equal(auth_jwt_verify(KEY, KEY_LEN, JWT_KAT_42, 0, NULL, NULL, NULL, NULL), -EINVAL);
}

/* ---- passwords ---- */

/* RFC 7914 section 11, PBKDF2-HMAC-SHA256 (dkLen 64); PBKDF2's first 32
 * bytes do not depend on dkLen, and our hashes are 32 bytes. */
static const uint8_t RFC7914_PASSWD_SALT_1[32] = {0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f, 0xec, 0x16, 0x91,
                                                  0xc2, 0x25, 0x44, 0xb6, 0x05, 0xf9, 0x41, 0x85, 0x21, 0x6d, 0xde,
                                                  0x04, 0x65, 0xe6, 0x8b, 0x9d, 0x57, 0xc2, 0x0d, 0xac, 0xbc};
static const uint8_t RFC7914_PASSWORD_NACL_80000[32] = {
    0x4d, 0xdc, 0xd8, 0xf6, 0x0b, 0x98, 0xbe, 0x21, 0x83, 0x0c, 0xee, 0x5e, 0xf2, 0x27, 0x01, 0xf9,
    0x64, 0x1a, 0x44, 0x18, 0xd0, 0x4c, 0x04, 0x14, 0xae, 0xff, 0x08, 0x87, 0x6b, 0x34, 0xab, 0x56};

static char *encoding(const char *iterations, const char *salt, const uint8_t hash[32])
{
	char *s = NULL, *h = NULL, *out = NULL;
	assert_int_equal(auth_b64url_encode((const uint8_t *)salt, strlen(salt), &s, NULL), 0);
	assert_int_equal(auth_b64url_encode(hash, 32, &h, NULL), 0);
	assert_true(asprintf(&out, "pbkdf2-sha256$%s$%s$%s", iterations, s, h) > 0);
	free(s);
	free(h);
	return out;
}

static bool check(const char *password, const char *encoded)
{
	bool ok = true;
	struct zerr e = {0};
	assert_int_equal(auth_password_verify(password, encoded, &ok, &e), 0);
	return ok;
}

static void test_password_rfc7914(void **state)
{
	char *enc = encoding("1", "salt", RFC7914_PASSWD_SALT_1);
	assert_true(check("passwd", enc));
	assert_false(check("passwe", enc));
	assert_false(check("passw", enc));
	free(enc);

	enc = encoding("80000", "NaCl", RFC7914_PASSWORD_NACL_80000);
	assert_true(check("Password", enc));
	assert_false(check("password", enc));
	free(enc);
	/* Same hash, another count or salt: no longer matches. */
	enc = encoding("79999", "NaCl", RFC7914_PASSWORD_NACL_80000);
	assert_false(check("Password", enc));
	free(enc);
	enc = encoding("80000", "NaCL", RFC7914_PASSWORD_NACL_80000);
	assert_false(check("Password", enc));
	free(enc);
	/* A stored hash wrong in its last byte only: the whole hash counts. */
	uint8_t last_off[32];
	memcpy(last_off, RFC7914_PASSWD_SALT_1, sizeof(last_off));
	last_off[31] ^= 1;
	enc = encoding("1", "salt", last_off);
	assert_false(check("passwd", enc));
	free(enc);
}

static void test_password_round_trip(void **state)
{
	char *a = NULL, *b = NULL;
	assert_int_equal(auth_password_hash("correct horse battery staple", &a, NULL), 0);
	assert_int_equal(auth_password_hash("correct horse battery staple", &b, NULL), 0);
	/* Fresh salt every time. */
	assert_string_not_equal(a, b);

	/* Format: scheme, the configured count, 16-byte salt, 32-byte hash. */
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "pbkdf2-sha256$%d$", AUTH_PBKDF2_ITERATIONS);
	assert_int_equal(strncmp(a, prefix, strlen(prefix)), 0);
	const char *salt = a + strlen(prefix);
	const char *dollar = strchr(salt, '$');
	assert_non_null(dollar);
	assert_int_equal(dollar - salt, 22);
	assert_int_equal(strlen(dollar + 1), 43);

	assert_true(check("correct horse battery staple", a));
	assert_true(check("correct horse battery staple", b));
	assert_false(check("correct horse battery stapl", a));
	assert_false(check("Correct horse battery staple", a));
	assert_false(check("correct horse battery staple ", a));
	free(a);
	free(b);

	/* Bounds: 1 and 1024 bytes hash; 0 and 1025 do not. */
	char pw[AUTH_PASSWORD_MAX + 2];
	memset(pw, 'p', sizeof(pw) - 1);
	pw[AUTH_PASSWORD_MAX] = '\0';
	assert_int_equal(auth_password_hash(pw, &a, NULL), 0);
	assert_true(check(pw, a));
	/* One byte more cannot have been set: no match, no error. */
	pw[AUTH_PASSWORD_MAX] = 'p';
	pw[AUTH_PASSWORD_MAX + 1] = '\0';
	assert_false(check(pw, a));
	free(a);
	a = NULL;
	struct zerr e = {0};
	assert_int_equal(auth_password_hash(pw, &a, &e), -EINVAL);
	assert_int_equal(auth_password_hash("", &a, &e), -EINVAL);
	assert_int_equal(auth_password_hash(NULL, &a, &e), -EINVAL);
	assert_null(a);
	assert_int_equal(auth_password_hash("x", &a, NULL), 0);
	assert_true(check("x", a));
	assert_false(check("", a));
	free(a);
}

static void test_password_unknown_user(void **state)
{
	bool ok = true;
	assert_int_equal(auth_password_verify("anything", NULL, &ok, NULL), 0);
	assert_false(ok);
}

static void test_password_malformed(void **state)
{
	char *good = encoding("1", "salt", RFC7914_PASSWD_SALT_1);
	assert_true(check("passwd", good));
	char *long_enc = malloc(400);
	assert_non_null(long_enc);
	snprintf(long_enc, 400, "pbkdf2-sha256$1$%0300d$VawEblbjCJ_sFpHCJUS2BflBhSFt3gRl5oudV8INrLw", 0);
	const char *h = "VawEblbjCJ_sFpHCJUS2BflBhSFt3gRl5oudV8INrLw"; /* the RFC hash above */
	char buf[32][160];
	const char *fmt[] = {
	    "",
	    "pbkdf2-sha256",
	    "pbkdf2-sha256$1$c2FsdA",
	    "pbkdf2-sha256$1$c2FsdA$%s$",
	    "pbkdf2-sha256$1$c2FsdA$%s$extra",
	    "pbkdf2-sha512$1$c2FsdA$%s",
	    "PBKDF2-SHA256$1$c2FsdA$%s",
	    "$pbkdf2-sha256$1$c2FsdA$%s",
	    "pbkdf2-sha256$0$c2FsdA$%s",
	    "pbkdf2-sha256$01$c2FsdA$%s",
	    "pbkdf2-sha256$-1$c2FsdA$%s",
	    "pbkdf2-sha256$+1$c2FsdA$%s",
	    "pbkdf2-sha256$ 1$c2FsdA$%s",
	    "pbkdf2-sha256$1x$c2FsdA$%s",
	    "pbkdf2-sha256$$c2FsdA$%s",
	    "pbkdf2-sha256$5000001$c2FsdA$%s",
	    "pbkdf2-sha256$99999999999999999999$c2FsdA$%s",
	    "pbkdf2-sha256$1$$%s",
	    "pbkdf2-sha256$1$c2FsdA==$%s",
	    "pbkdf2-sha256$1$c2F*dA$%s",
	    "pbkdf2-sha256$1$c2FsdA$",
	    "pbkdf2-sha256$1$c2FsdA$%s=",
	    "pbkdf2-sha256$1$c2FsdA$%.42s",   /* hash one character short */
	    "pbkdf2-sha256$1$c2FsdA$%sAA",    /* hash too long */
	    "pbkdf2-sha256$1$c2FsdA$%.40sAA", /* 31 bytes */
	};
	assert_true(ELEMENTSOF(fmt) <= ELEMENTSOF(buf));
	for (size_t i = 0; i < ELEMENTSOF(fmt); i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		snprintf(buf[i], sizeof(buf[i]), fmt[i], h);
#pragma GCC diagnostic pop
		bool ok = true;
		struct zerr e = {0};
		assert_int_equal(auth_password_verify("passwd", buf[i], &ok, &e), -EINVAL);
		assert_int_equal(e.code, -EINVAL);
		assert_true(ok); /* untouched */
	}
	bool ok = true;
	assert_int_equal(auth_password_verify("passwd", long_enc, &ok, NULL), -EINVAL);
	assert_int_equal(auth_password_verify(NULL, good, &ok, NULL), -EINVAL);
	assert_int_equal(auth_password_verify("passwd", good, NULL, NULL), -EINVAL);
	/* A malformed encoding is an error whatever the password's length. */
	assert_int_equal(auth_password_verify("", "pbkdf2-sha256$1$$", &ok, NULL), -EINVAL);
	assert_true(ok);
	free(long_enc);
	free(good);
}

/* ---- API keys ---- */

static void test_apikey_new(void **state)
{
	char *key = NULL, prefix[16], hash[65], again[65];
	memset(prefix, 'X', sizeof(prefix));
	assert_int_equal(auth_apikey_new(&key, prefix, hash, NULL), 0);
	assert_int_equal(strlen(key), AUTH_APIKEY_LEN);
	assert_int_equal(strncmp(key, "zmk_", 4), 0);
	assert_int_equal(strspn(key + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
	assert_int_equal(strlen(prefix), AUTH_APIKEY_PREFIX_LEN);
	assert_int_equal(strncmp(prefix, key, AUTH_APIKEY_PREFIX_LEN), 0);
	assert_int_equal(strlen(hash), 64);
	assert_int_equal(strspn(hash, "0123456789abcdef"), 64);
	/* The lookup hash of the key is the stored one. */
	assert_int_equal(auth_apikey_hash(key, again, NULL), 0);
	assert_string_equal(hash, again);

	char *key2 = NULL, prefix2[16], hash2[65];
	assert_int_equal(auth_apikey_new(&key2, prefix2, hash2, NULL), 0);
	assert_string_not_equal(key, key2);
	assert_string_not_equal(hash, hash2);
	free(key);
	free(key2);
}

static void test_apikey_hash_known_answer(void **state)
{
	/* SHA-256 of the key text, computed independently with Python's hashlib. */
	char hash[65];
	assert_int_equal(auth_apikey_hash("zmk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", hash, NULL), 0);
	assert_string_equal(hash, "224d2a4aaaeaf5fc314617dcf43c6791191d4ebf02b7498d70563778c0669a97");
	assert_int_equal(auth_apikey_hash("zmk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", hash, NULL), 0);
	assert_string_equal(hash, "ca6f496c0894320b18fe65f6cb908031964a6378e905995ded476d89a2df7874");
}

static void test_apikey_hash_rejects(void **state)
{
	const char *bad[] = {
	    "",
	    "zmk_",
	    "zmk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh",   /* one short */
	    "zmk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8A", /* one long */
	    "zmx_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
	    "ZMK_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
	    "zmk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh=",
	    "zmk_AAECAwQFBgcICQoLDA0ODx+REhMUFRYXGBkaGxwdHh8",
	    "zmk_AAECAwQFBgcICQoLDA0ODx/REhMUFRYXGBkaGxwdHh8",
	    "zmk_AAECAwQFBgcICQoLDA0ODx REhMUFRYXGBkaGxwdHh8",
	    "zmk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9", /* non-zero unused bits */
	    "zmk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",
	    " zmk_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		char hash[65] = "untouched";
		struct zerr e = {0};
		assert_int_equal(auth_apikey_hash(bad[i], hash, &e), -EINVAL);
		assert_int_equal(e.code, -EINVAL);
		assert_string_equal(hash, "untouched");
	}
	char hash[65];
	assert_int_equal(auth_apikey_hash(NULL, hash, NULL), -EINVAL);
	/* A key far longer than any valid one is refused without reading it all. */
	char *huge = malloc(1 << 16);
	assert_non_null(huge);
	memcpy(huge, "zmk_", 4);
	memset(huge + 4, 'A', (1 << 16) - 5);
	huge[(1 << 16) - 1] = '\0';
	assert_int_equal(auth_apikey_hash(huge, hash, NULL), -EINVAL);
	free(huge);
}

/* ---- random ---- */

static void test_random(void **state)
{
	char *a = NULL, *b = NULL;
	assert_int_equal(auth_random_hex(32, &a, NULL), 0);
	assert_int_equal(auth_random_hex(32, &b, NULL), 0);
	assert_int_equal(strlen(a), 64);
	assert_int_equal(strspn(a, "0123456789abcdef"), 64);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
	a = NULL;
	assert_int_equal(auth_random_hex(0, &a, NULL), -EINVAL);
	assert_int_equal(auth_random_hex(AUTH_RANDOM_MAX + 1, &a, NULL), -EINVAL);
	assert_null(a);
	assert_int_equal(auth_random_hex(AUTH_RANDOM_MAX, &a, NULL), 0);
	assert_int_equal(strlen(a), 2 * AUTH_RANDOM_MAX);
	free(a);

	uint8_t buf[64] = {0}, zero[64] = {0};
	assert_int_equal(auth_random_bytes(buf, sizeof(buf), NULL), 0);
	assert_memory_not_equal(buf, zero, sizeof(buf)); /* 2^-512 to fail by chance */
	assert_int_equal(auth_random_bytes(buf, 0, NULL), 0);
	assert_int_equal(auth_random_bytes(NULL, 8, NULL), -EINVAL);
	assert_int_equal(auth_random_bytes(buf, (size_t)AUTH_RANDOM_MAX + 1, NULL), -EINVAL);
}

/* ---- threads ---- */

struct worker {
	int id;
	int failures;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 300; i++) {
		char sub[32], *tok = NULL, *got = NULL;
		snprintf(sub, sizeof(sub), "w%d-%d", w->id, i);
		if (auth_jwt_sign(KEY, KEY_LEN, sub, 10, 20, &tok, NULL) < 0 ||
		    auth_jwt_verify(KEY, KEY_LEN, tok, 15, &got, NULL, NULL, NULL) < 0 || strcmp(sub, got) != 0)
			w->failures++;
		free(tok);
		free(got);
		char *key = NULL, prefix[16], hash[65], again[65];
		if (auth_apikey_new(&key, prefix, hash, NULL) < 0 || auth_apikey_hash(key, again, NULL) < 0 ||
		    strcmp(hash, again) != 0)
			w->failures++;
		free(key);
	}
	return NULL;
}

static void test_threads(void **state)
{
	pthread_t th[4];
	struct worker w[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){.id = i};
		assert_int_equal(pthread_create(&th[i], NULL, worker_run, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
}

/* The verifier PostgreSQL stores: recomputed here from its own salt, as a
 * server checks a client's proof against it. (That PostgreSQL accepts it is
 * shown by every database test of the API suite.) */
static void test_scram_verifier(void **state)
{
	(void)state;
	char v[AUTH_SCRAM_VERIFIER_MAX], w[AUTH_SCRAM_VERIFIER_MAX];
	struct zerr err = {0};
	assert_int_equal(auth_scram_verifier("0123abcdef", 1, v, &err), 0);
	assert_int_equal(auth_scram_verifier("0123abcdef", 1, w, &err), 0);
	assert_string_not_equal(v, w); /* a fresh salt each time */
	char salt_b64[25], stored_b64[45], server_b64[45];
	unsigned iterations = 0;
	assert_int_equal(sscanf(v, "SCRAM-SHA-256$%u:%24[A-Za-z0-9+/=]$%44[A-Za-z0-9+/=]:%44[A-Za-z0-9+/=]",
	                        &iterations, salt_b64, stored_b64, server_b64),
	                 4);
	assert_int_equal(iterations, 1);
	assert_int_equal(strlen(v), strlen("SCRAM-SHA-256$1:") + 24 + 1 + 44 + 1 + 44);
	unsigned char salt[18];
	assert_int_equal(EVP_DecodeBlock(salt, (const unsigned char *)salt_b64, 24), 18); /* 16 and padding */
	unsigned char salted[32], ck[32], sk[32], stored[32], b[45];
	unsigned len;
	assert_int_equal(PKCS5_PBKDF2_HMAC("0123abcdef", 10, salt, 16, 1, EVP_sha256(), 32, salted), 1);
	assert_non_null(HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10, ck, &len));
	assert_non_null(HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Server Key", 10, sk, &len));
	assert_int_equal(EVP_Digest(ck, 32, stored, NULL, EVP_sha256(), NULL), 1);
	EVP_EncodeBlock(b, stored, 32);
	assert_string_equal((char *)b, stored_b64);
	EVP_EncodeBlock(b, sk, 32);
	assert_string_equal((char *)b, server_b64);

	assert_int_equal(auth_scram_verifier("pw", 0, v, &err), -EINVAL);
	assert_int_equal(auth_scram_verifier("p\xc3\xa4ssword", 1, v, &err), -EINVAL); /* SASLprep would change it */
	assert_int_equal(auth_scram_verifier("has space", 1, v, &err), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_b64url_rfc4648),
	    cmocka_unit_test(test_b64url_round_trip_all_bytes),
	    cmocka_unit_test(test_b64url_rejects),
	    cmocka_unit_test(test_b64url_bounds),
	    cmocka_unit_test(test_jwt_known_answer),
	    cmocka_unit_test(test_jwt_round_trip_and_expiry),
	    cmocka_unit_test(test_jwt_sign_rejects),
	    cmocka_unit_test(test_jwt_tampered),
	    cmocka_unit_test(test_jwt_algorithms),
	    cmocka_unit_test(test_jwt_claims),
	    cmocka_unit_test(test_jwt_structure),
	    cmocka_unit_test(test_password_rfc7914),
	    cmocka_unit_test(test_password_round_trip),
	    cmocka_unit_test(test_password_unknown_user),
	    cmocka_unit_test(test_password_malformed),
	    cmocka_unit_test(test_scram_verifier),
	    cmocka_unit_test(test_apikey_new),
	    cmocka_unit_test(test_apikey_hash_known_answer),
	    cmocka_unit_test(test_apikey_hash_rejects),
	    cmocka_unit_test(test_random),
	    cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
