/* auth.c - see auth.h */
#define _GNU_SOURCE
#include "auth.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "codec.h"

#define SHA256_LEN 32

#define PW_SCHEME   "pbkdf2-sha256"
#define PW_SALT_LEN 16
#define PW_HASH_LEN 32
/* Salts we did not make ourselves (older hashes, known-answer vectors) may be
 * of another length; beyond this the encoding is refused. */
#define PW_SALT_MAX 64
/* Longest encoding worth parsing: the scheme, seven digits, a 64-byte salt and
 * the hash in base64url fit well below it. */
#define PW_ENCODED_MAX 256

#define APIKEY_TAG     "zmk_"
#define APIKEY_TAG_LEN 4
#define APIKEY_RAW_LEN 32

static const char b64url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64url length of n bytes; a constant expression for constants. */
#define B64URL_LEN(n) ((n) / 3 * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))

/* Encode into out, which holds B64URL_LEN(n) + 1 bytes. */
static void b64url_encode_into(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64url_alphabet[v >> 18 & 63];
		out[o++] = b64url_alphabet[v >> 12 & 63];
		out[o++] = b64url_alphabet[v >> 6 & 63];
		out[o++] = b64url_alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = b64url_alphabet[v >> 18 & 63];
		out[o++] = b64url_alphabet[v >> 12 & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64url_alphabet[v >> 18 & 63];
		out[o++] = b64url_alphabet[v >> 12 & 63];
		out[o++] = b64url_alphabet[v >> 6 & 63];
	}
	out[o] = '\0';
}

int auth_b64url_encode(const uint8_t *in, size_t len, char **ret, struct zerr *err)
{
	if (!ret || (!in && len > 0))
		return zerr_set(err, -EINVAL, "base64url encode: missing argument");
	if (len > AUTH_B64URL_MAX)
		return zerr_set(err, -EINVAL, "base64url encode: input of %zu bytes exceeds %u", len, AUTH_B64URL_MAX);
	char *out = malloc(B64URL_LEN(len) + 1);
	if (!out)
		return zerr_set(err, -ENOMEM, "base64url encode: out of memory");
	b64url_encode_into(in, len, out);
	*ret = out;
	return 0;
}

int auth_b64url_decode(const char *in, size_t len, uint8_t **ret, size_t *ret_len, struct zerr *err)
{
	if (!ret || !ret_len || (!in && len > 0))
		return zerr_set(err, -EINVAL, "base64url decode: missing argument");
	if (len > AUTH_B64URL_MAX)
		return zerr_set(err, -EINVAL, "base64url decode: input of %zu bytes exceeds %u", len, AUTH_B64URL_MAX);
	if (len % 4 == 1)
		return zerr_set(err, -EINVAL, "base64url decode: impossible length %zu", len);

	size_t n = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
	_cleanup_free_ uint8_t *out = malloc(n + 1);
	if (!out)
		return zerr_set(err, -ENOMEM, "base64url decode: out of memory");

	uint32_t leftover = 0;
	ssize_t o = codec_b64_decode(in, len, true, out, &leftover);
	if (o < 0)
		return zerr_set(err, -EINVAL, "base64url decode: invalid character");
	/* The bits left over pad the last character; an encoder sets them to
	 * zero. Refusing anything else keeps one encoding per value, so a
	 * signature cannot be altered without changing what it decodes to. */
	if (leftover != 0)
		return zerr_set(err, -EINVAL, "base64url decode: non-canonical final character");
	out[o] = 0;
	*ret = TAKE_PTR(out);
	*ret_len = (size_t)o;
	return 0;
}

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int auth_random_bytes(uint8_t *buf, size_t n, struct zerr *err)
{
	if (n > AUTH_RANDOM_MAX)
		return zerr_set(err, -EINVAL, "random: %zu bytes requested, at most %d", n, AUTH_RANDOM_MAX);
	if (n == 0)
		return 0;
	if (!buf)
		return zerr_set(err, -EINVAL, "random: no buffer");
	if (RAND_bytes(buf, (int)n) != 1)
		return zerr_set(err, -EIO, "random: the OpenSSL generator failed");
	return 0;
}

int auth_random_hex(size_t nbytes, char **ret, struct zerr *err)
{
	if (!ret)
		return zerr_set(err, -EINVAL, "random hex: missing argument");
	if (nbytes < 1 || nbytes > AUTH_RANDOM_MAX)
		return zerr_set(err, -EINVAL, "random hex: %zu bytes requested, need 1..%d", nbytes, AUTH_RANDOM_MAX);
	uint8_t raw[AUTH_RANDOM_MAX];
	int r = auth_random_bytes(raw, nbytes, err);
	if (r < 0)
		return r;
	char *out = malloc(2 * nbytes + 1);
	if (!out) {
		OPENSSL_cleanse(raw, nbytes);
		return zerr_set(err, -ENOMEM, "random hex: out of memory");
	}
	hex_encode(raw, nbytes, out);
	OPENSSL_cleanse(raw, nbytes);
	*ret = out;
	return 0;
}

/* ---- JWT ---- */

static int check_jwt_key(const uint8_t *key, size_t key_len, struct zerr *err)
{
	if (!key)
		return zerr_set(err, -EINVAL, "jwt: no key");
	if (key_len < AUTH_JWT_KEY_MIN || key_len > AUTH_JWT_KEY_MAX)
		return zerr_set(err, -EINVAL, "jwt: key of %zu bytes, need %d..%d", key_len, AUTH_JWT_KEY_MIN,
		                AUTH_JWT_KEY_MAX);
	return 0;
}

static int hmac_sha256(const uint8_t *key, size_t key_len, const char *data, size_t len, uint8_t out[SHA256_LEN],
                       struct zerr *err)
{
	unsigned int out_len = 0;
	/* key_len is bounded by AUTH_JWT_KEY_MAX, so the int conversion is exact. */
	if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, len, out, &out_len) ||
	    out_len != SHA256_LEN)
		return zerr_set(err, -EIO, "jwt: HMAC-SHA256 failed");
	return 0;
}

int auth_jwt_sign(const uint8_t *key, size_t key_len, const char *sub, int64_t iat, int64_t exp, char **ret_token,
                  struct zerr *err)
{
	int r = check_jwt_key(key, key_len, err);
	if (r < 0)
		return r;
	if (!ret_token || !sub)
		return zerr_set(err, -EINVAL, "jwt sign: missing argument");
	size_t sub_len = strnlen(sub, AUTH_JWT_SUB_MAX + 1);
	if (sub_len == 0 || sub_len > AUTH_JWT_SUB_MAX)
		return zerr_set(err, -EINVAL, "jwt sign: subject must be 1..%d bytes", AUTH_JWT_SUB_MAX);
	if (iat < 0 || exp <= iat)
		return zerr_set(err, -EINVAL, "jwt sign: need 0 <= iat < exp");

	/* json_string refuses invalid UTF-8. */
	json_t *sub_json = json_string(sub);
	if (!sub_json)
		return zerr_set(err, -EINVAL, "jwt sign: subject is not valid UTF-8");
	json_auto_t *claims = json_object();
	if (!claims) {
		json_decref(sub_json);
		return zerr_set(err, -ENOMEM, "jwt sign: out of memory");
	}
	/* json_object_set_new takes the value even when it fails. */
	if (json_object_set_new(claims, "sub", sub_json) < 0 ||
	    json_object_set_new(claims, "iat", json_integer(iat)) < 0 ||
	    json_object_set_new(claims, "exp", json_integer(exp)) < 0)
		return zerr_set(err, -ENOMEM, "jwt sign: out of memory");
	/* jansson keeps insertion order, so the claims read sub, iat, exp. */
	_cleanup_free_ char *claims_text = json_dumps(claims, JSON_COMPACT);
	if (!claims_text)
		return zerr_set(err, -ENOMEM, "jwt sign: out of memory");

	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	size_t hdr_len = B64URL_LEN(sizeof(header) - 1);
	size_t claims_len = strlen(claims_text);
	size_t pay_len = B64URL_LEN(claims_len);
	size_t sig_len = B64URL_LEN(SHA256_LEN);
	size_t total = hdr_len + 1 + pay_len + 1 + sig_len;
	_cleanup_free_ char *token = malloc(total + 1);
	if (!token)
		return zerr_set(err, -ENOMEM, "jwt sign: out of memory");

	b64url_encode_into((const uint8_t *)header, sizeof(header) - 1, token);
	token[hdr_len] = '.';
	b64url_encode_into((const uint8_t *)claims_text, claims_len, token + hdr_len + 1);
	token[hdr_len + 1 + pay_len] = '.';
	uint8_t mac[SHA256_LEN];
	r = hmac_sha256(key, key_len, token, hdr_len + 1 + pay_len, mac, err);
	if (r < 0)
		return r;
	b64url_encode_into(mac, SHA256_LEN, token + hdr_len + 1 + pay_len + 1);
	*ret_token = TAKE_PTR(token);
	return 0;
}

/* Decode one base64url segment holding a JSON object. */
static int decode_json_object(const char *seg, size_t len, const char *what, json_t **ret, struct zerr *err)
{
	_cleanup_free_ uint8_t *raw = NULL;
	size_t raw_len = 0;
	if (len == 0)
		return zerr_set(err, -EINVAL, "jwt: empty %s", what);
	int r = auth_b64url_decode(seg, len, &raw, &raw_len, NULL);
	if (r == -ENOMEM)
		return zerr_set(err, r, "jwt: out of memory");
	if (r < 0)
		return zerr_set(err, -EINVAL, "jwt: %s is not base64url", what);
	/* Duplicate names are refused: two readers must never see two
	 * different values for the same claim. The parser's own message is
	 * not passed on, since it quotes the input. */
	json_error_t jerr;
	json_t *j = json_loadb((const char *)raw, raw_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return zerr_set(err, -EINVAL, "jwt: %s is not valid JSON", what);
	if (!json_is_object(j)) {
		json_decref(j);
		return zerr_set(err, -EINVAL, "jwt: %s is not a JSON object", what);
	}
	*ret = j;
	return 0;
}

static int check_header(const json_t *hdr, struct zerr *err)
{
	const json_t *alg = json_object_get(hdr, "alg");
	if (!json_is_string(alg))
		return zerr_set(err, -EINVAL, "jwt: header has no algorithm");
	/* The algorithm is fixed by us, never chosen by the token: this is
	 * what stops "none" and the HS/RS key-confusion attacks. */
	if (strcmp(json_string_value(alg), "HS256") != 0 || json_string_length(alg) != 5)
		return zerr_set(err, -EINVAL, "jwt: algorithm is not HS256");
	const json_t *typ = json_object_get(hdr, "typ");
	if (typ && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0))
		return zerr_set(err, -EINVAL, "jwt: type is not JWT");
	/* RFC 7515 section 4.1.11: extensions listed in "crit" must be
	 * understood, and we understand none. */
	if (json_object_get(hdr, "crit"))
		return zerr_set(err, -EINVAL, "jwt: critical header extensions are not supported");
	return 0;
}

int auth_jwt_verify(const uint8_t *key, size_t key_len, const char *token, int64_t now, char **ret_sub,
                    int64_t *ret_iat, int64_t *ret_exp, struct zerr *err)
{
	int r = check_jwt_key(key, key_len, err);
	if (r < 0)
		return r;
	if (!token || !ret_sub)
		return zerr_set(err, -EINVAL, "jwt verify: missing argument");
	size_t len = strnlen(token, AUTH_JWT_MAX + 1);
	if (len > AUTH_JWT_MAX)
		return zerr_set(err, -EINVAL, "jwt: token longer than %d bytes", AUTH_JWT_MAX);

	const char *dot1 = memchr(token, '.', len);
	const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
		return zerr_set(err, -EINVAL, "jwt: token must have exactly three segments");
	size_t hdr_len = (size_t)(dot1 - token);
	size_t pay_len = (size_t)(dot2 - dot1 - 1);
	size_t sig_len = len - (size_t)(dot2 + 1 - token);

	json_auto_t *hdr = NULL;
	r = decode_json_object(token, hdr_len, "header", &hdr, err);
	if (r < 0)
		return r;
	r = check_header(hdr, err);
	if (r < 0)
		return r;

	_cleanup_free_ uint8_t *sig = NULL;
	size_t sig_raw_len = 0;
	r = auth_b64url_decode(dot2 + 1, sig_len, &sig, &sig_raw_len, NULL);
	if (r == -ENOMEM)
		return zerr_set(err, r, "jwt: out of memory");
	if (r < 0 || sig_raw_len != SHA256_LEN)
		return zerr_set(err, -EINVAL, "jwt: malformed signature");
	uint8_t mac[SHA256_LEN];
	r = hmac_sha256(key, key_len, token, (size_t)(dot2 - token), mac, err);
	if (r < 0)
		return r;
	if (CRYPTO_memcmp(mac, sig, SHA256_LEN) != 0)
		return zerr_set(err, -EINVAL, "jwt: bad signature");

	/* Only a payload we signed ourselves gets parsed. */
	json_auto_t *claims = NULL;
	r = decode_json_object(dot1 + 1, pay_len, "payload", &claims, err);
	if (r < 0)
		return r;
	const json_t *sub = json_object_get(claims, "sub");
	const json_t *iat = json_object_get(claims, "iat");
	const json_t *exp = json_object_get(claims, "exp");
	if (!json_is_string(sub) || json_string_length(sub) == 0 || json_string_length(sub) > AUTH_JWT_SUB_MAX)
		return zerr_set(err, -EINVAL, "jwt: claim \"sub\" missing or not a string of 1..%d bytes",
		                AUTH_JWT_SUB_MAX);
	if (!json_is_integer(iat))
		return zerr_set(err, -EINVAL, "jwt: claim \"iat\" missing or not an integer");
	if (!json_is_integer(exp))
		return zerr_set(err, -EINVAL, "jwt: claim \"exp\" missing or not an integer");
	int64_t exp_v = json_integer_value(exp);
	if (now >= exp_v)
		return zerr_set(err, -EKEYEXPIRED, "jwt: token expired");

	char *s = strndup(json_string_value(sub), json_string_length(sub));
	if (!s)
		return zerr_set(err, -ENOMEM, "jwt: out of memory");
	*ret_sub = s;
	if (ret_iat)
		*ret_iat = json_integer_value(iat);
	if (ret_exp)
		*ret_exp = exp_v;
	return 0;
}

/* ---- passwords ---- */

static int pbkdf2(const char *password, size_t pw_len, const uint8_t *salt, size_t salt_len, unsigned iterations,
                  uint8_t out[PW_HASH_LEN], struct zerr *err)
{
	/* Every length here is bounded far below INT_MAX by the callers. */
	if (PKCS5_PBKDF2_HMAC(password, (int)pw_len, salt, (int)salt_len, (int)iterations, EVP_sha256(), PW_HASH_LEN,
	                      out) != 1)
		return zerr_set(err, -EIO, "password: PBKDF2 failed");
	return 0;
}

int auth_password_hash(const char *password, char **ret_encoded, struct zerr *err)
{
	if (!password || !ret_encoded)
		return zerr_set(err, -EINVAL, "password hash: missing argument");
	size_t pw_len = strnlen(password, AUTH_PASSWORD_MAX + 1);
	if (pw_len < AUTH_PASSWORD_MIN || pw_len > AUTH_PASSWORD_MAX)
		return zerr_set(err, -EINVAL, "password must be %d..%d bytes", AUTH_PASSWORD_MIN, AUTH_PASSWORD_MAX);

	uint8_t salt[PW_SALT_LEN], hash[PW_HASH_LEN];
	int r = auth_random_bytes(salt, sizeof(salt), err);
	if (r < 0)
		return r;
	r = pbkdf2(password, pw_len, salt, sizeof(salt), AUTH_PBKDF2_ITERATIONS, hash, err);
	if (r < 0)
		return r;
	char salt_b64[B64URL_LEN(PW_SALT_LEN) + 1], hash_b64[B64URL_LEN(PW_HASH_LEN) + 1];
	b64url_encode_into(salt, sizeof(salt), salt_b64);
	b64url_encode_into(hash, sizeof(hash), hash_b64);
	OPENSSL_cleanse(hash, sizeof(hash));

	char *out = NULL;
	if (asprintf(&out, PW_SCHEME "$%d$%s$%s", AUTH_PBKDF2_ITERATIONS, salt_b64, hash_b64) < 0)
		return zerr_set(err, -ENOMEM, "password hash: out of memory");
	*ret_encoded = out;
	return 0;
}

/* Strict decimal in [1, AUTH_PBKDF2_ITERATIONS_MAX]: digits only, no sign, no
 * leading zero, so each count has one spelling. */
static int parse_iterations(const char *s, size_t len, unsigned *ret)
{
	if (len == 0 || len > 7 || s[0] == '0')
		return -EINVAL;
	unsigned v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > AUTH_PBKDF2_ITERATIONS_MAX)
		return -EINVAL;
	*ret = v;
	return 0;
}

int auth_password_verify(const char *password, const char *encoded, bool *ret_ok, struct zerr *err)
{
	if (!password || !ret_ok)
		return zerr_set(err, -EINVAL, "password verify: missing argument");
	size_t pw_len = strnlen(password, AUTH_PASSWORD_MAX + 1);
	uint8_t got[PW_HASH_LEN];
	int r;

	if (!encoded) {
		/* Spend what a real check costs; the salt does not matter. */
		static const uint8_t zero_salt[PW_SALT_LEN];
		r = pbkdf2(password, pw_len, zero_salt, sizeof(zero_salt), AUTH_PBKDF2_ITERATIONS, got, err);
		OPENSSL_cleanse(got, sizeof(got));
		if (r < 0)
			return r;
		*ret_ok = false;
		return 0;
	}

	size_t enc_len = strnlen(encoded, PW_ENCODED_MAX + 1);
	if (enc_len > PW_ENCODED_MAX)
		return zerr_set(err, -EINVAL, "password hash: encoding too long");
	/* scheme $ iterations $ salt $ hash: exactly four fields. */
	const char *f[4];
	size_t flen[4];
	const char *p = encoded, *end = encoded + enc_len;
	for (int i = 0; i < 4; i++) {
		const char *d = memchr(p, '$', (size_t)(end - p));
		if ((i < 3) != (d != NULL))
			return zerr_set(err, -EINVAL, "password hash: expected 4 fields separated by '$'");
		f[i] = p;
		flen[i] = d ? (size_t)(d - p) : (size_t)(end - p);
		p = d ? d + 1 : end;
	}
	if (flen[0] != strlen(PW_SCHEME) || memcmp(f[0], PW_SCHEME, flen[0]) != 0)
		return zerr_set(err, -EINVAL, "password hash: unknown scheme");
	unsigned iterations = 0;
	if (parse_iterations(f[1], flen[1], &iterations) < 0)
		return zerr_set(err, -EINVAL, "password hash: iteration count must be 1..%d",
		                AUTH_PBKDF2_ITERATIONS_MAX);
	_cleanup_free_ uint8_t *salt = NULL, *want = NULL;
	size_t salt_len = 0, want_len = 0;
	r = auth_b64url_decode(f[2], flen[2], &salt, &salt_len, NULL);
	if (r == -ENOMEM)
		return zerr_set(err, r, "password verify: out of memory");
	if (r < 0 || salt_len < 1 || salt_len > PW_SALT_MAX)
		return zerr_set(err, -EINVAL, "password hash: malformed salt");
	r = auth_b64url_decode(f[3], flen[3], &want, &want_len, NULL);
	if (r == -ENOMEM)
		return zerr_set(err, r, "password verify: out of memory");
	if (r < 0 || want_len != PW_HASH_LEN)
		return zerr_set(err, -EINVAL, "password hash: malformed hash");

	if (pw_len < AUTH_PASSWORD_MIN || pw_len > AUTH_PASSWORD_MAX) {
		*ret_ok = false;
		return 0;
	}
	r = pbkdf2(password, pw_len, salt, salt_len, iterations, got, err);
	if (r < 0)
		return r;
	bool ok = CRYPTO_memcmp(got, want, PW_HASH_LEN) == 0;
	OPENSSL_cleanse(got, sizeof(got));
	*ret_ok = ok;
	return 0;
}

/* ---- API keys ---- */

int auth_scram_verifier(const char *password, unsigned iterations, char ret[AUTH_SCRAM_VERIFIER_MAX], struct zerr *err)
{
	uint8_t salt[16], salted[SHA256_LEN], client_key[SHA256_LEN], stored_key[SHA256_LEN], server_key[SHA256_LEN];
	size_t len = strlen(password);
	if (iterations == 0 || iterations > INT_MAX || len > AUTH_PASSWORD_MAX)
		return zerr_set(err, -EINVAL, "scram: bad iterations or password");
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)password[i] < 0x21 || (unsigned char)password[i] > 0x7e)
			return zerr_set(err, -EINVAL, "scram: the password must be printable ASCII");
	int r = auth_random_bytes(salt, sizeof(salt), err);
	if (r < 0)
		return r;
	unsigned out_len = 0;
	if (PKCS5_PBKDF2_HMAC(password, (int)len, salt, sizeof(salt), (int)iterations, EVP_sha256(), SHA256_LEN,
	                      salted) != 1 ||
	    !HMAC(EVP_sha256(), salted, SHA256_LEN, (const unsigned char *)"Client Key", 10, client_key, &out_len) ||
	    !HMAC(EVP_sha256(), salted, SHA256_LEN, (const unsigned char *)"Server Key", 10, server_key, &out_len) ||
	    EVP_Digest(client_key, SHA256_LEN, stored_key, NULL, EVP_sha256(), NULL) != 1)
		return zerr_set(err, -EIO, "scram: OpenSSL failed");
	/* Standard base64: 16 bytes take 24 characters, 32 take 44. */
	char b_salt[25], b_stored[45], b_server[45];
	EVP_EncodeBlock((unsigned char *)b_salt, salt, sizeof(salt));
	EVP_EncodeBlock((unsigned char *)b_stored, stored_key, SHA256_LEN);
	EVP_EncodeBlock((unsigned char *)b_server, server_key, SHA256_LEN);
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	snprintf(ret, AUTH_SCRAM_VERIFIER_MAX, "SCRAM-SHA-256$%u:%s$%s:%s", iterations, b_salt, b_stored, b_server);
	return 0;
}

static int sha256_hex(const char *data, size_t len, char out[65], struct zerr *err)
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != SHA256_LEN)
		return zerr_set(err, -EIO, "api key: SHA-256 failed");
	hex_encode(md, SHA256_LEN, out);
	return 0;
}

int auth_apikey_new(char **ret_key, char ret_prefix[16], char ret_hash_hex[65], struct zerr *err)
{
	if (!ret_key || !ret_prefix || !ret_hash_hex)
		return zerr_set(err, -EINVAL, "api key: missing argument");
	uint8_t raw[APIKEY_RAW_LEN];
	int r = auth_random_bytes(raw, sizeof(raw), err);
	if (r < 0)
		return r;
	_cleanup_free_ char *key = malloc(AUTH_APIKEY_LEN + 1);
	if (!key) {
		OPENSSL_cleanse(raw, sizeof(raw));
		return zerr_set(err, -ENOMEM, "api key: out of memory");
	}
	memcpy(key, APIKEY_TAG, APIKEY_TAG_LEN);
	b64url_encode_into(raw, sizeof(raw), key + APIKEY_TAG_LEN);
	OPENSSL_cleanse(raw, sizeof(raw));

	char hash[65];
	r = sha256_hex(key, AUTH_APIKEY_LEN, hash, err);
	if (r < 0) {
		OPENSSL_cleanse(key, AUTH_APIKEY_LEN);
		return r;
	}
	memcpy(ret_prefix, key, AUTH_APIKEY_PREFIX_LEN);
	ret_prefix[AUTH_APIKEY_PREFIX_LEN] = '\0';
	memcpy(ret_hash_hex, hash, sizeof(hash));
	*ret_key = TAKE_PTR(key);
	return 0;
}

int auth_apikey_hash(const char *key, char ret_hash_hex[65], struct zerr *err)
{
	if (!key || !ret_hash_hex)
		return zerr_set(err, -EINVAL, "api key: missing argument");
	if (strnlen(key, AUTH_APIKEY_LEN + 1) != AUTH_APIKEY_LEN || strncmp(key, APIKEY_TAG, APIKEY_TAG_LEN) != 0)
		return zerr_set(err, -EINVAL, "api key: not a zmesh API key");
	/* The strict decoder checks the alphabet and that the tail is the
	 * canonical encoding of 32 bytes. */
	_cleanup_free_ uint8_t *raw = NULL;
	size_t raw_len = 0;
	int r = auth_b64url_decode(key + APIKEY_TAG_LEN, AUTH_APIKEY_LEN - APIKEY_TAG_LEN, &raw, &raw_len, NULL);
	if (r == -ENOMEM)
		return zerr_set(err, r, "api key: out of memory");
	if (r < 0 || raw_len != APIKEY_RAW_LEN)
		return zerr_set(err, -EINVAL, "api key: not a zmesh API key");
	OPENSSL_cleanse(raw, raw_len);
	return sha256_hex(key, AUTH_APIKEY_LEN, ret_hash_hex, err);
}
