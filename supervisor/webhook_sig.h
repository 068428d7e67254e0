/* webhook_sig.h - verifying the signature an outside service puts on a
 * webhook it sends us, over the raw body bytes as received.
 *
 * Schemes:
 *  - WHSIG_STANDARD (Standard Webhooks): webhook-id, webhook-timestamp (unix
 *    seconds) and webhook-signature, space-separated "v1,<base64 of
 *    HMAC-SHA256(key, id.timestamp.body)>" entries; other versions (v1a) are
 *    ignored. The secret is "whsec_" + base64 of the key (24..64 bytes).
 *  - WHSIG_STRIPE: Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
 *    t.body)>[,v1=...]; other keys (v0) are ignored.
 *  - WHSIG_GITHUB: X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret,
 *    body)>; no timestamp.
 *  - WHSIG_HMAC: a configured header holding [prefix]<hex or base64 of
 *    HMAC-SHA256(secret, body)>; no timestamp.
 * Outside the standard scheme the secret's bytes are the key.
 *
 * Every MAC comparison is constant-time (CRYPTO_memcmp). Up to
 * WHSIG_SECRETS_MAX secrets are tried (the current one and the previous one
 * during a rotation), and up to WHSIG_SIGS_MAX signatures of one header.
 * Timestamps must be within WHSIG_TOLERANCE_S of the caller's clock. No
 * message ever contains a secret or a computed MAC.
 *
 * Pure apart from whsig_secret_new (randomness): no I/O, no clock, no
 * globals. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define WHSIG_SECRETS_MAX   2
#define WHSIG_SIGS_MAX      16   /* signatures parsed from one header */
#define WHSIG_HEADER_MAX    4096 /* bytes of any header read */
#define WHSIG_ID_MAX        256  /* bytes of a delivery or message id */
#define WHSIG_TOLERANCE_S   300
#define WHSIG_KEY_MIN       24 /* bytes of a standard scheme key */
#define WHSIG_KEY_MAX       64
#define WHSIG_SECRET_PREFIX "whsec_"

enum whsig_scheme { WHSIG_STANDARD, WHSIG_STRIPE, WHSIG_GITHUB, WHSIG_HMAC, _WHSIG_SCHEME_MAX };
enum whsig_encoding { WHSIG_HEX, WHSIG_BASE64 };

struct whsig_config {
	/* secrets[0] the current one; secrets[1] the previous one or NULL. */
	const char *secrets[WHSIG_SECRETS_MAX];
	/* WHSIG_HMAC only: the header, an optional prefix before the MAC
	 * ("sha256="), and how the MAC is written (hex in either case, base64
	 * standard alphabet with or without padding). */
	const char *header;
	const char *prefix;
	enum whsig_encoding encoding;
	/* WHSIG_STRIPE and WHSIG_HMAC: a header carrying a delivery id, or
	 * NULL. */
	const char *id_header;
};

struct whsig_request {
	/* The value of a header (name compared case-insensitively by the
	 * callee), or NULL when absent; valid until whsig_verify returns. */
	const char *(*header)(void *ctx, const char *name);
	void *ctx;
	const uint8_t *body; /* raw bytes as received */
	size_t body_len;
	int64_t now_s; /* the caller's clock, unix seconds */
};

/* "standard", "stripe", "github", "hmac" <-> the scheme; parse returns 0 or
 * -EINVAL. */
int whsig_scheme_parse(const char *s, enum whsig_scheme *ret);
const char *whsig_scheme_name(enum whsig_scheme s);

/* Check a configured secret's shape (standard: whsec_ + base64 of 24..64
 * bytes; others: 16..256 bytes). Returns 0 or -EINVAL. */
int whsig_secret_check(enum whsig_scheme s, const char *secret, struct zerr *err);

/* Verify rq against cfg. Returns 0 when a signature made with one of the
 * secrets matches; -EACCES when the signature header is missing or no
 * signature matches; -EINVAL when a header is malformed (overlong, missing
 * '=', not hex or base64, a bad timestamp) and nothing matched, or cfg is
 * unusable; -ETIME when the signature matches but the timestamp is more than
 * WHSIG_TOLERANCE_S away from rq->now_s; -EIO when the MAC cannot be
 * computed. */
int whsig_verify(enum whsig_scheme s, const struct whsig_config *cfg, const struct whsig_request *rq, struct zerr *err);

/* The sender's id of this delivery, for deduplication: webhook-id
 * (standard), X-GitHub-Delivery (github), cfg->id_header (stripe, hmac), or
 * NULL when there is none or it is empty or longer than WHSIG_ID_MAX. The
 * pointer is the header callback's. */
const char *whsig_delivery_id(enum whsig_scheme s, const struct whsig_config *cfg, const struct whsig_request *rq);

/* A new secret for scheme s in *ret (free() it): "whsec_" + base64 of 32
 * random bytes for standard, 64 hex characters (32 random bytes) for the
 * others. Returns 0, -EIO (no randomness) or -ENOMEM; *ret untouched on
 * failure. */
int whsig_secret_new(enum whsig_scheme s, char **ret, struct zerr *err);
