/* fuzz_jwt.c - session tokens: auth_jwt_verify on what a client sends in
 * "Authorization: Bearer", and the strict base64url decoder under it.
 *
 * The first input byte picks a mode, the rest is its material:
 *   0  the rest is a token, verified as it is. Whatever is accepted (or
 *      reported expired) must carry an HMAC that a separate computation here
 *      agrees with: nothing unsigned gets past the signature check.
 *   1  the rest is a header and a payload (split at the second byte's
 *      proportion), encoded and correctly signed here, so the fuzzer reaches
 *      the header and claim checks behind the signature. The answer must
 *      match the contract in auth.h, checked by an independent reading.
 *   2  the rest seeds a token made by auth_jwt_sign (sub, iat, exp), which
 *      must verify to the same sub and exp and expire exactly at exp; then
 *      one byte of it is changed, and the result must be refused.
 *   3  the rest goes through auth_b64url_decode (accepted input re-encodes
 *      to itself) and auth_b64url_encode (decodes back to itself). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

/* The seeds in corpus/jwt/ are signed with this key. */
static const uint8_t KEY[] = "zmesh-fuzz-jwt-key-0123456789abcdef";
#define KEY_LEN (sizeof(KEY) - 1)
#define NOW     1700000000

static char *cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s) {
		memcpy(s, data, size);
		s[size] = '\0';
	}
	return s;
}

/* Does the token's third segment decode to the HMAC of the first two? */
static int signature_holds(const char *token)
{
	const char *dot2 = strrchr(token, '.');
	if (!dot2)
		return 0;
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned mac_len = 0;
	CHECK(HMAC(EVP_sha256(), KEY, (int)KEY_LEN, (const uint8_t *)token, (size_t)(dot2 - token), mac, &mac_len));
	uint8_t *sig = NULL;
	size_t sig_len = 0;
	if (auth_b64url_decode(dot2 + 1, strlen(dot2 + 1), &sig, &sig_len, NULL) < 0)
		return 0;
	int ok = sig_len == mac_len && memcmp(sig, mac, mac_len) == 0;
	free(sig);
	return ok;
}

static void fuzz_token(const uint8_t *data, size_t size)
{
	char *token = cstr(data, size);
	if (!token)
		return;
	char *sub = NULL;
	int64_t exp = 0;
	struct zerr err = {0};
	int r = auth_jwt_verify(KEY, KEY_LEN, token, NOW, &sub, NULL, &exp, &err);
	CHECK(r == 0 || r == -EINVAL || r == -EKEYEXPIRED);
	if (r == 0 || r == -EKEYEXPIRED)
		CHECK(signature_holds(token));
	if (r == 0) {
		CHECK(sub && strlen(sub) >= 1 && strlen(sub) <= AUTH_JWT_SUB_MAX);
		CHECK(exp > NOW);
	} else {
		CHECK(sub == NULL);
		CHECK(err.code == r && err.msg[0] != '\0');
	}
	free(sub);
	free(token);
}

/* The contract of auth_jwt_verify for a correctly signed token, read
 * independently: 0, -EINVAL or -EKEYEXPIRED, and the sub and exp. */
static int expected(const uint8_t *hdr, size_t hdr_len, const uint8_t *pay, size_t pay_len, const char **ret_sub,
                    int64_t *ret_exp, json_t **ret_claims)
{
	json_error_t jerr;
	json_t *h = json_loadb((const char *)hdr, hdr_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!h)
		return -EINVAL;
	json_t *alg = json_object_get(h, "alg"), *typ = json_object_get(h, "typ");
	int ok = json_is_object(h) && json_is_string(alg) && json_string_length(alg) == 5 &&
	         memcmp(json_string_value(alg), "HS256", 5) == 0 &&
	         (!typ || (json_is_string(typ) && strcasecmp(json_string_value(typ), "JWT") == 0)) &&
	         !json_object_get(h, "crit");
	json_decref(h);
	if (!ok)
		return -EINVAL;
	json_t *c = json_loadb((const char *)pay, pay_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!c)
		return -EINVAL;
	json_t *sub = json_object_get(c, "sub");
	if (!json_is_object(c) || !json_is_string(sub) || json_string_length(sub) < 1 ||
	    json_string_length(sub) > AUTH_JWT_SUB_MAX || !json_is_integer(json_object_get(c, "iat")) ||
	    !json_is_integer(json_object_get(c, "exp"))) {
		json_decref(c);
		return -EINVAL;
	}
	*ret_sub = json_string_value(sub);
	*ret_exp = json_integer_value(json_object_get(c, "exp"));
	*ret_claims = c;
	return NOW >= *ret_exp ? -EKEYEXPIRED : 0;
}

static void fuzz_signed(const uint8_t *data, size_t size)
{
	if (size < 1)
		return;
	size_t split = (size - 1) * data[0] / 255;
	const uint8_t *hdr = data + 1, *pay = data + 1 + split;
	size_t hdr_len = split, pay_len = size - 1 - split;

	char *h64 = NULL, *p64 = NULL;
	CHECK(auth_b64url_encode(hdr, hdr_len, &h64, NULL) == 0);
	CHECK(auth_b64url_encode(pay, pay_len, &p64, NULL) == 0);
	size_t signed_len = strlen(h64) + 1 + strlen(p64);
	char *token = malloc(signed_len + 1 + 64);
	CHECK(token);
	sprintf(token, "%s.%s", h64, p64);
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned mac_len = 0;
	CHECK(HMAC(EVP_sha256(), KEY, (int)KEY_LEN, (const uint8_t *)token, signed_len, mac, &mac_len));
	char *s64 = NULL;
	CHECK(auth_b64url_encode(mac, mac_len, &s64, NULL) == 0);
	sprintf(token + signed_len, ".%s", s64);

	char *sub = NULL;
	int64_t exp = 0;
	int r = auth_jwt_verify(KEY, KEY_LEN, token, NOW, &sub, NULL, &exp, NULL);
	if (strlen(token) > AUTH_JWT_MAX) {
		CHECK(r == -EINVAL);
	} else {
		const char *want_sub = NULL;
		int64_t want_exp = 0;
		json_t *claims = NULL;
		int want = expected(hdr, hdr_len, pay, pay_len, &want_sub, &want_exp, &claims);
		CHECK(r == want);
		if (r == 0) {
			CHECK(strcmp(sub, want_sub) == 0);
			CHECK(exp == want_exp);
		}
		json_decref(claims);
	}
	if (r != 0)
		CHECK(sub == NULL);
	free(sub);
	free(token);
	free(h64);
	free(p64);
	free(s64);
}

static void fuzz_round_trip(const uint8_t *data, size_t size)
{
	if (size < 18)
		return;
	int64_t iat, exp;
	memcpy(&iat, data, 8);
	memcpy(&exp, data + 8, 8);
	size_t pos = data[16];
	uint8_t val = data[17];
	char *sub_in = cstr(data + 18, size - 18);
	if (!sub_in)
		return;

	char *token = NULL;
	int r = auth_jwt_sign(KEY, KEY_LEN, sub_in, iat, exp, &token, NULL);
	if (r < 0) {
		CHECK(r == -EINVAL);
		CHECK(token == NULL);
		free(sub_in);
		return;
	}
	CHECK(strlen(token) <= AUTH_JWT_MAX);
	char *sub = NULL;
	int64_t got_iat = -1, got_exp = 0;
	CHECK(auth_jwt_verify(KEY, KEY_LEN, token, iat, &sub, &got_iat, &got_exp, NULL) == 0);
	CHECK(strcmp(sub, sub_in) == 0);
	CHECK(got_iat == iat && got_exp == exp);
	free(sub);
	sub = NULL;
	CHECK(auth_jwt_verify(KEY, KEY_LEN, token, exp - 1, &sub, NULL, NULL, NULL) == 0);
	free(sub);
	sub = NULL;
	CHECK(auth_jwt_verify(KEY, KEY_LEN, token, exp, &sub, NULL, NULL, NULL) == -EKEYEXPIRED);
	CHECK(sub == NULL);

	/* Any one byte changed (a NUL cuts the token short) is refused. */
	size_t len = strlen(token);
	pos %= len;
	if (token[pos] != (char)val) {
		token[pos] = (char)val;
		CHECK(auth_jwt_verify(KEY, KEY_LEN, token, iat, &sub, NULL, NULL, NULL) == -EINVAL);
		CHECK(sub == NULL);
	}
	free(token);
	free(sub_in);
}

static void fuzz_b64url(const uint8_t *data, size_t size)
{
	uint8_t *raw = NULL;
	size_t raw_len = 0;
	int r = auth_b64url_decode((const char *)data, size, &raw, &raw_len, NULL);
	if (r == 0) {
		CHECK(raw[raw_len] == 0);
		CHECK(raw_len == size * 3 / 4);
		char *again = NULL;
		CHECK(auth_b64url_encode(raw, raw_len, &again, NULL) == 0);
		CHECK(strlen(again) == size && memcmp(again, data, size) == 0);
		free(again);
		free(raw);
	} else {
		CHECK(r == -EINVAL);
		CHECK(raw == NULL);
	}

	char *enc = NULL;
	CHECK(auth_b64url_encode(data, size, &enc, NULL) == 0);
	CHECK(auth_b64url_decode(enc, strlen(enc), &raw, &raw_len, NULL) == 0);
	CHECK(raw_len == size && memcmp(raw, data, size) == 0);
	free(raw);
	free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] & 3) {
	case 0:
		fuzz_token(data + 1, size - 1);
		break;
	case 1:
		fuzz_signed(data + 1, size - 1);
		break;
	case 2:
		fuzz_round_trip(data + 1, size - 1);
		break;
	case 3:
		fuzz_b64url(data + 1, size - 1);
		break;
	}
	return 0;
}
