/* webhook_sig.c - see webhook_sig.h */
#define _GNU_SOURCE
#include "webhook_sig.h"

#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"

#define MAC_LEN       32
#define SECRET_MIN    16
#define SECRET_MAX    256
#define TIMESTAMP_MAX 15 /* digits: far beyond any clock, far from overflow */
#define B64_MAX       ((WHSIG_KEY_MAX + 2) / 3 * 4)

static const char *const scheme_names[] = {"standard", "stripe", "github", "hmac"};

int whsig_scheme_parse(const char *s, enum whsig_scheme *ret)
{
	for (size_t i = 0; s && i < ELEMENTSOF(scheme_names); i++)
		if (strcmp(s, scheme_names[i]) == 0) {
			*ret = (enum whsig_scheme)i;
			return 0;
		}
	return -EINVAL;
}

const char *whsig_scheme_name(enum whsig_scheme s)
{
	return (unsigned)s < ELEMENTSOF(scheme_names) ? scheme_names[s] : NULL;
}

/* Exactly MAC_LEN bytes written as 2 * MAC_LEN hex digits. */
static bool hex_mac(const char *s, size_t len, uint8_t out[MAC_LEN])
{
	if (len != 2 * MAC_LEN)
		return false;
	for (size_t i = 0; i < MAC_LEN; i++) {
		int hi = codec_hex_digit(s[2 * i]), lo = codec_hex_digit(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

/* Standard base64, padding optional, into at most cap bytes. Returns the
 * length, or -1 when s is not base64 or decodes to more than cap. Bits left
 * over in the last character are ignored, as most encoders' readers do. */
static ssize_t b64_decode(const char *s, size_t len, uint8_t *out, size_t cap)
{
	if (len % 4 == 0)
		for (int pad = 0; pad < 2 && len > 0 && s[len - 1] == '='; pad++)
			len--;
	if (len % 4 == 1)
		return -1;
	size_t n = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
	if (n > cap)
		return -1;
	return codec_b64_decode(s, len, false, out, NULL);
}

/* The key of a secret: the decoded part of whsec_... for standard, the bytes
 * otherwise. */
static int secret_key(enum whsig_scheme s, const char *secret, uint8_t *buf, size_t cap, const uint8_t **ret_key,
                      size_t *ret_len)
{
	size_t len = strlen(secret);
	if (s != WHSIG_STANDARD) {
		if (len < SECRET_MIN || len > SECRET_MAX)
			return -EINVAL;
		*ret_key = (const uint8_t *)secret;
		*ret_len = len;
		return 0;
	}
	size_t plen = strlen(WHSIG_SECRET_PREFIX);
	if (len <= plen || strncmp(secret, WHSIG_SECRET_PREFIX, plen) != 0 || len - plen > B64_MAX + 2)
		return -EINVAL;
	ssize_t n = b64_decode(secret + plen, len - plen, buf, cap);
	if (n < WHSIG_KEY_MIN || n > WHSIG_KEY_MAX)
		return -EINVAL;
	*ret_key = buf;
	*ret_len = (size_t)n;
	return 0;
}

int whsig_secret_check(enum whsig_scheme s, const char *secret, struct zerr *err)
{
	uint8_t buf[B64_MAX];
	const uint8_t *key;
	size_t key_len;
	if ((unsigned)s >= _WHSIG_SCHEME_MAX)
		return zerr_set(err, -EINVAL, "webhook secret: unknown scheme");
	if (!secret || secret_key(s, secret, buf, sizeof(buf), &key, &key_len) < 0)
		return zerr_set(err, -EINVAL,
		                s == WHSIG_STANDARD ? "webhook secret: want whsec_ and the base64 of 24 to 64 bytes"
		                                    : "webhook secret: want 16 to 256 bytes");
	OPENSSL_cleanse(buf, sizeof(buf));
	return 0;
}

/* HMAC-SHA256(key, parts[0] || parts[1] || ...), without copying the body. */
struct part {
	const void *p;
	size_t n;
};

static int hmac_parts(const uint8_t *key, size_t key_len, const struct part *parts, size_t nparts, uint8_t out[MAC_LEN])
{
	int r = -EIO;
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
	                       OSSL_PARAM_construct_end()};
	size_t out_len = 0;
	if (!ctx || EVP_MAC_init(ctx, key, key_len, params) != 1)
		goto out;
	for (size_t i = 0; i < nparts; i++)
		if (parts[i].n > 0 && EVP_MAC_update(ctx, parts[i].p, parts[i].n) != 1)
			goto out;
	if (EVP_MAC_final(ctx, out, &out_len, MAC_LEN) != 1 || out_len != MAC_LEN)
		goto out;
	r = 0;
out:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return r;
}

/* What one verification collects: the MACs of every secret over the signed
 * message, and whether any candidate signature matched one. */
struct check {
	uint8_t macs[WHSIG_SECRETS_MAX][MAC_LEN];
	size_t nmacs;
	bool matched, malformed;
	unsigned tried;
};

static void check_candidate(struct check *c, const uint8_t sig[MAC_LEN])
{
	/* Compare against every secret, without stopping early: the time taken
	 * says nothing about which one matched. */
	for (size_t i = 0; i < c->nmacs; i++)
		c->matched |= CRYPTO_memcmp(c->macs[i], sig, MAC_LEN) == 0;
}

/* One written MAC, hex or base64: checked, or counted as malformed. */
static void check_written(struct check *c, const char *s, size_t len, enum whsig_encoding enc)
{
	uint8_t sig[MAC_LEN + 3];
	bool ok = enc == WHSIG_HEX ? hex_mac(s, len, sig) : b64_decode(s, len, sig, sizeof(sig)) == MAC_LEN;
	c->tried++;
	if (ok)
		check_candidate(c, sig);
	else
		c->malformed = true;
}

static int compute_macs(enum whsig_scheme s, const struct whsig_config *cfg, const struct part *parts, size_t nparts,
                        struct check *c, struct zerr *err)
{
	for (size_t i = 0; i < WHSIG_SECRETS_MAX; i++) {
		if (!cfg->secrets[i])
			continue;
		uint8_t buf[B64_MAX];
		const uint8_t *key;
		size_t key_len;
		if (secret_key(s, cfg->secrets[i], buf, sizeof(buf), &key, &key_len) < 0)
			return zerr_set(err, -EINVAL, "webhook: configured secret %zu is malformed", i + 1);
		int r = hmac_parts(key, key_len, parts, nparts, c->macs[c->nmacs++]);
		OPENSSL_cleanse(buf, sizeof(buf));
		if (r < 0)
			return zerr_set(err, r, "webhook: HMAC-SHA256 failed");
	}
	if (c->nmacs == 0)
		return zerr_set(err, -EINVAL, "webhook: no secret configured");
	return 0;
}

/* A header, or NULL; -EINVAL when longer than WHSIG_HEADER_MAX. */
static int get_header(const struct whsig_request *rq, const char *name, const char **ret, struct zerr *err)
{
	const char *v = rq->header(rq->ctx, name);
	if (v && strnlen(v, WHSIG_HEADER_MAX + 1) > WHSIG_HEADER_MAX)
		return zerr_set(err, -EINVAL, "webhook: header %s longer than %d bytes", name, WHSIG_HEADER_MAX);
	*ret = v;
	return 0;
}

/* Unix seconds as sent: 1 to TIMESTAMP_MAX digits, nothing else. */
static int parse_timestamp(const char *s, size_t len, int64_t *ret)
{
	if (len == 0 || len > TIMESTAMP_MAX)
		return -EINVAL;
	int64_t t = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		t = t * 10 + (s[i] - '0');
	}
	*ret = t;
	return 0;
}

static bool timestamp_fresh(int64_t t, int64_t now)
{
	/* Both far from overflow: t has at most 15 digits, and now is a clock. */
	if (now < -(INT64_C(1) << 60) || now > (INT64_C(1) << 60))
		return false;
	int64_t d = t - now;
	return d >= -WHSIG_TOLERANCE_S && d <= WHSIG_TOLERANCE_S;
}

/* The outcome once every candidate has been looked at. */
static int conclude(const struct check *c, bool timed, int64_t t, int64_t now, const char *what, struct zerr *err)
{
	if (!c->matched) {
		if (c->malformed)
			return zerr_set(err, -EINVAL, "webhook: %s holds a malformed signature", what);
		if (c->tried == 0)
			return zerr_set(err, -EACCES, "webhook: %s holds no signature of a known version", what);
		return zerr_set(err, -EACCES, "webhook: signature does not match");
	}
	if (timed && !timestamp_fresh(t, now))
		return zerr_set(err, -ETIME, "webhook: timestamp %" PRId64 " is more than %d s from now (%" PRId64 ")",
		                t, WHSIG_TOLERANCE_S, now);
	return 0;
}

static int verify_standard(const struct whsig_config *cfg, const struct whsig_request *rq, struct check *c,
                           struct zerr *err)
{
	const char *id, *ts, *sig;
	int r;
	if ((r = get_header(rq, "webhook-id", &id, err)) < 0 ||
	    (r = get_header(rq, "webhook-timestamp", &ts, err)) < 0 ||
	    (r = get_header(rq, "webhook-signature", &sig, err)) < 0)
		return r;
	if (!sig || !id || !ts)
		return zerr_set(err, -EACCES, "webhook: missing webhook-%s header",
		                !sig  ? "signature"
		                : !id ? "id"
		                      : "timestamp");
	size_t id_len = strlen(id), ts_len = strlen(ts);
	if (id_len == 0 || id_len > WHSIG_ID_MAX)
		return zerr_set(err, -EINVAL, "webhook: webhook-id must be 1 to %d bytes", WHSIG_ID_MAX);
	int64_t t;
	if (parse_timestamp(ts, ts_len, &t) < 0)
		return zerr_set(err, -EINVAL, "webhook: webhook-timestamp is not unix seconds");
	struct part parts[] = {{id, id_len}, {".", 1}, {ts, ts_len}, {".", 1}, {rq->body, rq->body_len}};
	if ((r = compute_macs(WHSIG_STANDARD, cfg, parts, ELEMENTSOF(parts), c, err)) < 0)
		return r;
	/* "v1,<base64>" entries separated by spaces. */
	unsigned seen = 0;
	for (const char *p = sig; *p;) {
		size_t n = strcspn(p, " ");
		if (n > 0) {
			if (++seen > WHSIG_SIGS_MAX)
				break;
			const char *comma = memchr(p, ',', n);
			if (!comma)
				c->malformed = true;
			else if (comma - p == 2 && memcmp(p, "v1", 2) == 0)
				check_written(c, comma + 1, n - 3, WHSIG_BASE64);
		}
		p += n;
		while (*p == ' ')
			p++;
	}
	return conclude(c, true, t, rq->now_s, "webhook-signature", err);
}

static int verify_stripe(const struct whsig_config *cfg, const struct whsig_request *rq, struct check *c,
                         struct zerr *err)
{
	const char *h;
	int r;
	if ((r = get_header(rq, "Stripe-Signature", &h, err)) < 0)
		return r;
	if (!h)
		return zerr_set(err, -EACCES, "webhook: missing Stripe-Signature header");
	/* The timestamp first, as the MAC covers it; the v1 entries after. */
	const char *ts = NULL;
	size_t ts_len = 0;
	unsigned seen = 0;
	for (const char *p = h; *p && seen < WHSIG_SIGS_MAX + 1; seen++) {
		size_t n = strcspn(p, ",");
		const char *eq = memchr(p, '=', n);
		if (!eq)
			return zerr_set(err, -EINVAL, "webhook: Stripe-Signature entry without '='");
		if (eq - p == 1 && p[0] == 't') {
			if (ts)
				return zerr_set(err, -EINVAL, "webhook: Stripe-Signature has two timestamps");
			ts = eq + 1;
			ts_len = n - 2;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	int64_t t;
	if (!ts)
		return zerr_set(err, -EINVAL, "webhook: Stripe-Signature has no timestamp");
	if (parse_timestamp(ts, ts_len, &t) < 0)
		return zerr_set(err, -EINVAL, "webhook: Stripe-Signature timestamp is not unix seconds");
	struct part parts[] = {{ts, ts_len}, {".", 1}, {rq->body, rq->body_len}};
	if ((r = compute_macs(WHSIG_STRIPE, cfg, parts, ELEMENTSOF(parts), c, err)) < 0)
		return r;
	seen = 0;
	for (const char *p = h; *p && ++seen <= WHSIG_SIGS_MAX;) {
		size_t n = strcspn(p, ",");
		if (n > 3 && memcmp(p, "v1=", 3) == 0)
			check_written(c, p + 3, n - 3, WHSIG_HEX);
		p += n;
		if (*p == ',')
			p++;
	}
	return conclude(c, true, t, rq->now_s, "Stripe-Signature", err);
}

/* One header holding prefix + one MAC of the body (github, hmac). */
static int verify_single(enum whsig_scheme s, const struct whsig_config *cfg, const char *name, const char *prefix,
                         enum whsig_encoding enc, const struct whsig_request *rq, struct check *c, struct zerr *err)
{
	const char *h;
	int r;
	if (!name || !*name)
		return zerr_set(err, -EINVAL, "webhook: no signature header configured");
	if ((r = get_header(rq, name, &h, err)) < 0)
		return r;
	if (!h)
		return zerr_set(err, -EACCES, "webhook: missing %.64s header", name);
	size_t plen = prefix ? strlen(prefix) : 0;
	if (plen > 0 && strncmp(h, prefix, plen) != 0)
		return zerr_set(err, -EINVAL, "webhook: %.64s does not start with the expected prefix", name);
	struct part parts[] = {{rq->body, rq->body_len}};
	if ((r = compute_macs(s, cfg, parts, ELEMENTSOF(parts), c, err)) < 0)
		return r;
	check_written(c, h + plen, strlen(h + plen), enc);
	return conclude(c, false, 0, 0, name, err);
}

int whsig_verify(enum whsig_scheme s, const struct whsig_config *cfg, const struct whsig_request *rq, struct zerr *err)
{
	if (!cfg || !rq || !rq->header || (!rq->body && rq->body_len > 0))
		return zerr_set(err, -EINVAL, "webhook: missing argument");
	struct check c = {0};
	int r;
	switch (s) {
	case WHSIG_STANDARD:
		r = verify_standard(cfg, rq, &c, err);
		break;
	case WHSIG_STRIPE:
		r = verify_stripe(cfg, rq, &c, err);
		break;
	case WHSIG_GITHUB:
		r = verify_single(s, cfg, "X-Hub-Signature-256", "sha256=", WHSIG_HEX, rq, &c, err);
		break;
	case WHSIG_HMAC:
		r = verify_single(s, cfg, cfg->header, cfg->prefix, cfg->encoding, rq, &c, err);
		break;
	default:
		r = zerr_set(err, -EINVAL, "webhook: unknown scheme");
	}
	OPENSSL_cleanse(&c, sizeof(c));
	return r;
}

const char *whsig_delivery_id(enum whsig_scheme s, const struct whsig_config *cfg, const struct whsig_request *rq)
{
	const char *name = s == WHSIG_STANDARD ? "webhook-id"
	                   : s == WHSIG_GITHUB ? "X-GitHub-Delivery"
	                   : cfg               ? cfg->id_header
	                                       : NULL;
	if (!name || !rq || !rq->header)
		return NULL;
	const char *v = rq->header(rq->ctx, name);
	size_t n = v ? strnlen(v, WHSIG_ID_MAX + 1) : 0;
	return n == 0 || n > WHSIG_ID_MAX ? NULL : v;
}

int whsig_secret_new(enum whsig_scheme s, char **ret, struct zerr *err)
{
	uint8_t raw[32];
	if ((unsigned)s >= _WHSIG_SCHEME_MAX)
		return zerr_set(err, -EINVAL, "webhook secret: unknown scheme");
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return zerr_set(err, -EIO, "webhook secret: no randomness");
	/* whsec_ + 44 base64 characters, or 64 hex digits. */
	size_t plen = strlen(WHSIG_SECRET_PREFIX);
	char *out = malloc(plen + 2 * sizeof(raw) + 1);
	if (!out) {
		OPENSSL_cleanse(raw, sizeof(raw));
		return zerr_set(err, -ENOMEM, "webhook secret: out of memory");
	}
	if (s == WHSIG_STANDARD) {
		memcpy(out, WHSIG_SECRET_PREFIX, plen);
		EVP_EncodeBlock((unsigned char *)out + plen, raw, sizeof(raw));
	} else
		for (size_t i = 0; i < sizeof(raw); i++)
			snprintf(out + 2 * i, 3, "%02x", raw[i]);
	OPENSSL_cleanse(raw, sizeof(raw));
	*ret = out;
	return 0;
}
