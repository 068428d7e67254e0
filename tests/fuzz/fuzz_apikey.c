/* fuzz_apikey.c - the x-api-key header of /api/functions/{slug}: the only
 * thing done with it before the database lookup is auth_apikey_hash, which
 * checks its shape and hashes it; the hash is the lookup key.
 *
 * Checked against an independent reading of the shape ("zmk_" and 43
 * base64url characters encoding 32 bytes canonically, so the last one
 * carries 2 zero bits): everything of that shape is accepted and hashed to
 * the SHA-256 of its text, nothing else is accepted, and a refused key
 * leaves the output untouched. The header reaches us as a C string
 * (libmicrohttpd), so the input is cut at its first NUL.
 *
 * The first byte chooses: odd, the rest is the header as it is; even, the
 * rest is random bytes made into a key the way auth_apikey_new does (tag,
 * base64url, listing prefix), which must be accepted and hash alike. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

#define TAG "zmk_"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int well_formed(const char *key)
{
	if (strlen(key) != AUTH_APIKEY_LEN || strncmp(key, TAG, 4) != 0)
		return 0;
	for (size_t i = 4; i < AUTH_APIKEY_LEN; i++)
		if (!memchr(alphabet, key[i], 64))
			return 0;
	/* 43 characters hold 258 bits; the last 2 are padding and zero. */
	size_t last = (size_t)((const char *)memchr(alphabet, key[AUTH_APIKEY_LEN - 1], 64) - alphabet);
	return last % 4 == 0;
}

static void sha256_hex(const char *s, char out[65])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned md_len = 0;
	CHECK(EVP_Digest(s, strlen(s), md, &md_len, EVP_sha256(), NULL) == 1 && md_len == 32);
	for (unsigned i = 0; i < md_len; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

static void check_header(const char *key)
{
	char hash[65], want[65];
	memset(hash, 'X', sizeof(hash));
	struct zerr err = {0};
	int r = auth_apikey_hash(key, hash, &err);
	if (!well_formed(key)) {
		CHECK(r == -EINVAL);
		CHECK(err.code == -EINVAL && err.msg[0] != '\0');
		for (size_t i = 0; i < sizeof(hash); i++)
			CHECK(hash[i] == 'X');
		return;
	}
	CHECK(r == 0);
	sha256_hex(key, want);
	CHECK(memcmp(hash, want, sizeof(want)) == 0);
}

static void check_made(const uint8_t *raw, size_t len)
{
	uint8_t buf[32] = {0};
	memcpy(buf, raw, len < sizeof(buf) ? len : sizeof(buf));
	char *tail = NULL;
	CHECK(auth_b64url_encode(buf, sizeof(buf), &tail, NULL) == 0);
	char key[AUTH_APIKEY_LEN + 1], prefix[16];
	CHECK(snprintf(key, sizeof(key), TAG "%s", tail) == AUTH_APIKEY_LEN);
	free(tail);
	/* The listing prefix: what the key list shows, never secret enough to
	 * find the key by. */
	memcpy(prefix, key, AUTH_APIKEY_PREFIX_LEN);
	prefix[AUTH_APIKEY_PREFIX_LEN] = '\0';
	CHECK(strncmp(prefix, TAG, 4) == 0 && strlen(prefix) == AUTH_APIKEY_PREFIX_LEN);
	CHECK(well_formed(key));
	check_header(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1) {
		char *key = malloc(size);
		if (!key)
			return 0;
		memcpy(key, data + 1, size - 1);
		key[size - 1] = '\0';
		check_header(key);
		free(key);
	} else {
		check_made(data + 1, size - 1);
	}
	return 0;
}
