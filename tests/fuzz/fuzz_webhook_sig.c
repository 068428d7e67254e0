/* fuzz_webhook_sig.c - whsig_verify on the headers and body an outside
 * sender controls, for every scheme, against fixed secrets.
 *
 * Input: byte 0 picks the scheme (low two bits), whether the harness appends
 * a correct signature of its own (bit 2, so the fuzzer gets past the MAC to
 * the timestamp checks) and, for the hmac scheme, base64 rather than hex
 * (bit 3). The rest is split at '\n' into three header values and the body:
 *   standard  webhook-id, webhook-timestamp, webhook-signature
 *   stripe    Stripe-Signature (the other two unused)
 *   github    X-Hub-Signature-256
 *   hmac      X-Sig with prefix "sig="
 * Invariant: whenever a request is accepted (0) or found authentic but stale
 * (-ETIME), a signature in the header decodes (its base64's left-over bits
 * aside) to the MAC computed here with
 * OpenSSL's HMAC over the scheme's signed message. Every answer is one of
 * the documented codes. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "webhook_sig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

/* The Standard Webhooks test vector's secret; the others' secret. */
#define STD_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SECRET     "zmesh-fuzz-webhook-secret-0123"
#define NOW        1614265330

struct hdrs {
	const char *name[3], *value[3];
};

static const char *hdr(void *ctx, const char *name)
{
	struct hdrs *h = ctx;
	for (int i = 0; i < 3; i++)
		if (h->name[i] && strcasecmp(h->name[i], name) == 0)
			return h->value[i];
	return NULL;
}

static void mac_of(const uint8_t *key, size_t key_len, const char *a, const char *b, const uint8_t *body,
                   size_t body_len, uint8_t out[32])
{
	/* a.b.body, a.body or body, as the scheme signs. */
	size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0;
	uint8_t *msg = malloc(la + lb + body_len + 3);
	CHECK(msg);
	size_t n = 0;
	if (a) {
		memcpy(msg, a, la);
		n = la;
		msg[n++] = '.';
	}
	if (b) {
		memcpy(msg + n, b, lb);
		n += lb;
		msg[n++] = '.';
	}
	if (body_len)
		memcpy(msg + n, body, body_len);
	n += body_len;
	unsigned len = 0;
	CHECK(HMAC(EVP_sha256(), key, (int)key_len, msg, n, out, &len) && len == 32);
	free(msg);
}

static size_t std_key(uint8_t key[64])
{
	const char *b64 = &STD_SECRET[6];
	uint8_t tmp[64];
	int n = EVP_DecodeBlock(tmp, (const uint8_t *)b64, (int)strlen(b64));
	CHECK(n == 24); /* 32 characters, no padding */
	memcpy(key, tmp, (size_t)n);
	return (size_t)n;
}

static void hex(const uint8_t mac[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

/* Does the text hold hex (either case) or base64 of mac anywhere? An
 * independent and deliberately loose reading: a match here is necessary for
 * acceptance. */
static bool holds(const char *text, const uint8_t mac[32])
{
	char h[65], b[45];
	hex(mac, h);
	EVP_EncodeBlock((uint8_t *)b, mac, 32);
	if (strcasestr(text, h))
		return true;
	/* Base64, padded or not: the first 42 characters carry 252 bits of the
	 * MAC, the 43rd its last 4 in its high bits; its 2 low bits are left
	 * over, and ignored by the reader (webhook_sig.c), as by most. */
	static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(text);
	for (const char *at = text; (at = memmem(at, n - (size_t)(at - text), b, 42)) != NULL; at++) {
		const char *d = at[42] ? strchr(digits, at[42]) : NULL;
		if (d && (d - digits) >> 2 == (strchr(digits, b[42]) - digits) >> 2)
			return true;
	}
	return false;
}

static char *field(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
	const uint8_t *stop = nl ? nl : end;
	char *s = strndup((const char *)*p, (size_t)(stop - *p));
	CHECK(s);
	*p = nl ? nl + 1 : end;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	enum whsig_scheme s = (enum whsig_scheme)(data[0] & 3);
	bool sign = data[0] & 4, b64 = data[0] & 8;
	const uint8_t *p = data + 1, *end = data + size;
	char *v[3];
	for (int i = 0; i < 3; i++)
		v[i] = field(&p, end);
	const uint8_t *body = p;
	size_t body_len = (size_t)(end - p);

	uint8_t key[64], mac[32];
	size_t key_len;
	const char *sig = NULL;
	struct hdrs h = {.name = {NULL}};
	struct whsig_config cfg = {.header = NULL};
	cfg.secrets[1] = s == WHSIG_STANDARD ? STD_SECRET : SECRET;
	cfg.secrets[0] = s == WHSIG_STANDARD ? "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" : "another-secret-of-fuzzing";
	if (s == WHSIG_STANDARD) {
		key_len = std_key(key);
		mac_of(key, key_len, v[0], v[1], body, body_len, mac);
		h = (struct hdrs){{"webhook-id", "webhook-timestamp", "webhook-signature"}, {v[0], v[1], v[2]}};
	} else {
		key_len = strlen(SECRET);
		memcpy(key, SECRET, key_len);
		if (s == WHSIG_STRIPE) {
			/* The signed timestamp is whatever t= says: found below. */
			h = (struct hdrs){{"Stripe-Signature"}, {v[0]}};
		} else if (s == WHSIG_GITHUB) {
			mac_of(key, key_len, NULL, NULL, body, body_len, mac);
			h = (struct hdrs){{"X-Hub-Signature-256"}, {v[0]}};
		} else {
			mac_of(key, key_len, NULL, NULL, body, body_len, mac);
			cfg.header = "X-Sig";
			cfg.prefix = "sig=";
			cfg.encoding = b64 ? WHSIG_BASE64 : WHSIG_HEX;
			h = (struct hdrs){{"X-Sig"}, {v[0]}};
		}
	}

	/* Stripe signs t.body with the first t= of the header. */
	char ts[32] = "";
	if (s == WHSIG_STRIPE) {
		const char *t = strncmp(v[0], "t=", 2) == 0 ? v[0] + 2 : strstr(v[0], ",t=");
		if (t && t != v[0] + 2)
			t += 3;
		if (t) {
			size_t n = strcspn(t, ",");
			if (n < sizeof(ts))
				memcpy(ts, t, n);
		}
		mac_of(key, key_len, ts, NULL, body, body_len, mac);
	}

	/* Optionally make the header carry a correct signature. */
	char *signed_hdr = NULL;
	if (sign) {
		char hx[65], bb[45];
		hex(mac, hx);
		EVP_EncodeBlock((uint8_t *)bb, mac, 32);
		int r = s == WHSIG_STANDARD ? asprintf(&signed_hdr, "%s v1,%s", v[2], bb)
		        : s == WHSIG_STRIPE ? asprintf(&signed_hdr, "%s,v1=%s", v[0], hx)
		        : s == WHSIG_GITHUB ? asprintf(&signed_hdr, "sha256=%s", hx)
		                            : asprintf(&signed_hdr, "sig=%s", b64 ? bb : hx);
		CHECK(r > 0);
		h.value[s == WHSIG_STANDARD ? 2 : 0] = signed_hdr;
	}
	sig = h.value[s == WHSIG_STANDARD ? 2 : 0];

	struct whsig_request rq = {hdr, &h, body, body_len, NOW};
	struct zerr err = {0};
	int r = whsig_verify(s, &cfg, &rq, &err);
	CHECK(r == 0 || r == -EACCES || r == -EINVAL || r == -ETIME);
	if (r == 0 || r == -ETIME)
		CHECK(holds(sig, mac));
	if (r < 0)
		CHECK(err.msg[0] != '\0' && !strstr(err.msg, SECRET) && !strstr(err.msg, "MfKQ9r8"));
	/* A lone correct GitHub signature is always accepted. */
	if (sign && s == WHSIG_GITHUB)
		CHECK(r == 0);
	(void)whsig_delivery_id(s, &cfg, &rq);

	free(signed_hdr);
	for (int i = 0; i < 3; i++)
		free(v[i]);
	return 0;
}
