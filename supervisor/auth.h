/* auth.h - the supervisor's credentials: JWT HS256 session tokens, PBKDF2
 * password hashes, API keys, and the random secrets behind them.
 *
 * Everything here is stateless and thread-safe (OpenSSL 3 and jansson keep no
 * shared mutable state for these calls). Every function returns 0 or a
 * negative errno and fills *err; output parameters are untouched on failure.
 * Invalid input of any kind is -EINVAL; -EKEYEXPIRED is kept for a token that
 * is well formed and correctly signed but past its expiry, so the API can tell
 * the client to log in again rather than that it sent garbage. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* RFC 7518 section 3.2: an HS256 key must be at least as long as the hash. */
#define AUTH_JWT_KEY_MIN 32
#define AUTH_JWT_KEY_MAX 4096
/* Longest token accepted, in bytes: far above what auth_jwt_sign makes, low
 * enough that a hostile header costs nothing to refuse. */
#define AUTH_JWT_MAX 4096
/* Longest "sub" claim (a user id) signed or accepted. */
#define AUTH_JWT_SUB_MAX 256

/* PBKDF2-HMAC-SHA256 work factor for new hashes (OWASP's 2023 figure). One
 * hash or verification keeps one core busy for about 40 ms on a current x86
 * server, so the login route must bound how many run at once. The count is
 * stored in each hash, so raising it later keeps old hashes valid. */
#define AUTH_PBKDF2_ITERATIONS 210000
/* Stored hashes with more iterations than this are refused as malformed, so a
 * tampered row cannot pin a core for minutes. */
#define AUTH_PBKDF2_ITERATIONS_MAX 5000000
#define AUTH_PASSWORD_MIN          1
#define AUTH_PASSWORD_MAX          1024

/* "zmk_" + base64url of 32 random bytes (43 characters). */
#define AUTH_APIKEY_LEN        47
#define AUTH_APIKEY_PREFIX_LEN 12

/* Largest input of the base64url helpers, either direction. */
#define AUTH_B64URL_MAX (1u << 20)
/* Largest request to auth_random_bytes / auth_random_hex. */
#define AUTH_RANDOM_MAX 4096

/* Base64url (RFC 4648 section 5) without padding. The encoded string is
 * NUL-terminated and belongs to the caller. */
int auth_b64url_encode(const uint8_t *in, size_t len, char **ret, struct zerr *err);
/* Strict inverse of auth_b64url_encode: refuses padding, whitespace, any byte
 * outside the alphabet, an impossible length (len % 4 == 1) and non-zero
 * unused bits in the last character, so every byte string has exactly one
 * accepted encoding. *ret holds *ret_len bytes plus a NUL terminator (not
 * counted) so text can be parsed in place; the caller frees it. */
int auth_b64url_decode(const char *in, size_t len, uint8_t **ret, size_t *ret_len, struct zerr *err);

/* Sign a token with header {"alg":"HS256","typ":"JWT"} and claims
 * {"sub":sub,"iat":iat,"exp":exp} (compact JSON, that order). key_len must be
 * in [AUTH_JWT_KEY_MIN, AUTH_JWT_KEY_MAX]; sub is non-empty UTF-8 of at most
 * AUTH_JWT_SUB_MAX bytes; 0 <= iat < exp. The caller frees *ret_token. */
int auth_jwt_sign(const uint8_t *key, size_t key_len, const char *sub, int64_t iat, int64_t exp, char **ret_token,
                  struct zerr *err);
/* Verify a token made by auth_jwt_sign with the same key, at time now (seconds
 * since the epoch). Accepts exactly three base64url segments, a JSON object
 * header whose "alg" is "HS256" (any other, "none" included, is refused), no
 * "crit" header, an HMAC-SHA256 signature compared in constant time, and a
 * JSON object payload with a string "sub" and integer "iat" and "exp".
 * Returns -EKEYEXPIRED when now >= exp (only once everything else checked
 * out), -EINVAL for anything else wrong. On success *ret_sub is the caller's
 * to free, *ret_iat the time it was signed and *ret_exp the expiry (ret_iat
 * and ret_exp may be NULL). */
int auth_jwt_verify(const uint8_t *key, size_t key_len, const char *token, int64_t now, char **ret_sub,
                    int64_t *ret_iat, int64_t *ret_exp, struct zerr *err);

/* Hash a password of AUTH_PASSWORD_MIN..AUTH_PASSWORD_MAX bytes into
 * "pbkdf2-sha256$<iterations>$<salt>$<hash>", salt (16 random bytes) and hash
 * (32 bytes) in unpadded base64url. The caller frees *ret_encoded. */
int auth_password_hash(const char *password, char **ret_encoded, struct zerr *err);
/* Check a password against an encoding made by auth_password_hash; the final
 * comparison is constant-time. A malformed encoding is -EINVAL. A password
 * outside the length bounds cannot have been hashed, so it simply does not
 * match. encoded may be NULL (no such user): the same work is done and
 * *ret_ok is false, so response time does not tell which accounts exist. */
int auth_password_verify(const char *password, const char *encoded, bool *ret_ok, struct zerr *err);

/* The SCRAM-SHA-256 verifier PostgreSQL stores for a role's password,
 * "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" (RFC 5802,
 * standard base64, a random 16-byte salt), for CREATE ROLE ... PASSWORD.
 * password is ASCII (SASLprep leaves it as it is); ret holds
 * AUTH_SCRAM_VERIFIER_MAX bytes. */
#define AUTH_SCRAM_VERIFIER_MAX 160
int auth_scram_verifier(const char *password, unsigned iterations, char ret[AUTH_SCRAM_VERIFIER_MAX], struct zerr *err);

/* Make an API key. *ret_key (the caller frees it) is shown to the user once;
 * ret_prefix gets its first AUTH_APIKEY_PREFIX_LEN characters, NUL-terminated,
 * to recognise it in listings; ret_hash_hex the lowercase hex SHA-256 of the
 * whole key, the only part worth storing. */
int auth_apikey_new(char **ret_key, char ret_prefix[16], char ret_hash_hex[65], struct zerr *err);
/* The stored form of a key presented by a client, to look it up. Refuses
 * anything that auth_apikey_new could not have made (prefix, length,
 * alphabet), so junk never reaches the database. */
int auth_apikey_hash(const char *key, char ret_hash_hex[65], struct zerr *err);

/* n bytes from the OpenSSL CSPRNG, n <= AUTH_RANDOM_MAX. */
int auth_random_bytes(uint8_t *buf, size_t n, struct zerr *err);
/* nbytes (1..AUTH_RANDOM_MAX) random bytes as 2*nbytes lowercase hex
 * characters, NUL-terminated; for generated passwords and signing keys. */
int auth_random_hex(size_t nbytes, char **ret, struct zerr *err);
