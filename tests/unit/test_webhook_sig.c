/* Unit tests: webhook signature verification (webhook_sig.c) against the
 * schemes' published examples and MACs computed here independently. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "webhook_sig.h"

/* A request's headers: name/value pairs, compared case-insensitively. */
struct hdrs {
	const char *kv[16];
};

static const char *hdr(void *ctx, const char *name)
{
	struct hdrs *h = ctx;
	for (size_t i = 0; i + 1 < 16 && h->kv[i]; i += 2)
		if (strcasecmp(h->kv[i], name) == 0)
			return h->kv[i + 1];
	return NULL;
}

static int verify(enum whsig_scheme s, const struct whsig_config *cfg, struct hdrs *h, const char *body, int64_t now,
                  struct zerr *err)
{
	struct whsig_request rq = {hdr, h, (const uint8_t *)body, strlen(body), now};
	memset(err, 0, sizeof(*err));
	return whsig_verify(s, cfg, &rq, err);
}

/* Standard Webhooks' published test vector. */
#define STD_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define STD_ID     "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define STD_TS     "1614265330"
#define STD_BODY   "{\"test\": 2432232314}"
#define STD_SIG    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static void test_standard_vector(void **state)
{
	(void)state;
	struct zerr err;
	struct whsig_config cfg = {.secrets = {STD_SECRET}};
	struct hdrs h = {{"webhook-id", STD_ID, "webhook-timestamp", STD_TS, "webhook-signature", STD_SIG}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &h, STD_BODY, 1614265330, &err), 0);
	/* Header names are the callee's to match: any case. */
	struct hdrs h2 = {{"Webhook-Id", STD_ID, "Webhook-Timestamp", STD_TS, "Webhook-Signature", STD_SIG}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &h2, STD_BODY, 1614265330, &err), 0);
	/* Several signatures, other versions ignored, ours among them. */
	struct hdrs h3 = {{"webhook-id", STD_ID, "webhook-timestamp", STD_TS, "webhook-signature",
	                   "v1a,abcd v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " STD_SIG " v2,xyz"}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &h3, STD_BODY, 1614265330, &err), 0);
	/* Unpadded base64 is the same MAC. */
	struct hdrs h4 = {{"webhook-id", STD_ID, "webhook-timestamp", STD_TS, "webhook-signature",
	                   "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE"}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &h4, STD_BODY, 1614265330, &err), 0);
	/* Within the tolerance both ways, not beyond. */
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &h, STD_BODY, 1614265330 + 300, &err), 0);
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &h, STD_BODY, 1614265330 - 300, &err), 0);
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &h, STD_BODY, 1614265330 + 301, &err), -ETIME);
	assert_non_null(strstr(err.msg, "timestamp"));
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &h, STD_BODY, 1614265330 - 301, &err), -ETIME);
	/* Tampered body, id or timestamp. */
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &h, "{\"test\": 2432232315}", 1614265330, &err), -EACCES);
	assert_null(strstr(err.msg, "MfKQ9r8"));
	struct hdrs t1 = {{"webhook-id", "msg_other", "webhook-timestamp", STD_TS, "webhook-signature", STD_SIG}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &t1, STD_BODY, 1614265330, &err), -EACCES);
	struct hdrs t2 = {{"webhook-id", STD_ID, "webhook-timestamp", "1614265331", "webhook-signature", STD_SIG}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &t2, STD_BODY, 1614265330, &err), -EACCES);
	/* Only v1 counts. */
	struct hdrs t3 = {{"webhook-id", STD_ID, "webhook-timestamp", STD_TS, "webhook-signature",
	                   "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &t3, STD_BODY, 1614265330, &err), -EACCES);
}

static void test_standard_secrets(void **state)
{
	(void)state;
	struct zerr err;
	struct hdrs h = {{"webhook-id", STD_ID, "webhook-timestamp", STD_TS, "webhook-signature", STD_SIG}};
	/* Wrong secret; the right one as the previous of a rotation. */
	struct whsig_config wrong = {.secrets = {"whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}};
	assert_int_equal(verify(WHSIG_STANDARD, &wrong, &h, STD_BODY, 1614265330, &err), -EACCES);
	assert_null(strstr(err.msg, "AAAAAAAA"));
	struct whsig_config rotated = {.secrets = {"whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", STD_SECRET}};
	assert_int_equal(verify(WHSIG_STANDARD, &rotated, &h, STD_BODY, 1614265330, &err), 0);
	struct whsig_config second_only = {.secrets = {NULL, STD_SECRET}};
	assert_int_equal(verify(WHSIG_STANDARD, &second_only, &h, STD_BODY, 1614265330, &err), 0);
	struct whsig_config none = {0};
	assert_int_equal(verify(WHSIG_STANDARD, &none, &h, STD_BODY, 1614265330, &err), -EINVAL);
	/* A malformed configured secret is reported without being echoed. */
	struct whsig_config bad = {.secrets = {"whsec_sh0rt"}};
	assert_int_equal(verify(WHSIG_STANDARD, &bad, &h, STD_BODY, 1614265330, &err), -EINVAL);
	assert_null(strstr(err.msg, "sh0rt"));

	assert_int_equal(whsig_secret_check(WHSIG_STANDARD, STD_SECRET, &err), 0);
	assert_int_equal(whsig_secret_check(WHSIG_STANDARD, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &err), -EINVAL);
	assert_int_equal(whsig_secret_check(WHSIG_STANDARD, "whsec_", &err), -EINVAL);
	assert_int_equal(whsig_secret_check(WHSIG_STANDARD, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La!aSw", &err), -EINVAL);
	/* 23 bytes are too few, 24 enough; 64 enough, 65 too many. */
	assert_int_equal(whsig_secret_check(WHSIG_STANDARD, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &err), -EINVAL);
	assert_int_equal(whsig_secret_check(WHSIG_STANDARD, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &err), 0);
	char big[200] = "whsec_";
	memset(big + 6, 'A', 86);
	big[6 + 86] = '\0';
	strcat(big, "==");
	assert_int_equal(whsig_secret_check(WHSIG_STANDARD, big, &err), 0);
	memset(big + 6, 'A', 88);
	strcpy(big + 6 + 88, "AA==");
	assert_int_equal(whsig_secret_check(WHSIG_STANDARD, big, &err), -EINVAL);
	assert_int_equal(whsig_secret_check(WHSIG_GITHUB, "0123456789abcdef", &err), 0);
	assert_int_equal(whsig_secret_check(WHSIG_GITHUB, "short", &err), -EINVAL);
	assert_int_equal(whsig_secret_check(WHSIG_GITHUB, NULL, &err), -EINVAL);
}

static void test_standard_malformed(void **state)
{
	(void)state;
	struct zerr err;
	struct whsig_config cfg = {.secrets = {STD_SECRET}};
	struct hdrs missing_sig = {{"webhook-id", STD_ID, "webhook-timestamp", STD_TS}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &missing_sig, STD_BODY, 1614265330, &err), -EACCES);
	struct hdrs missing_id = {{"webhook-timestamp", STD_TS, "webhook-signature", STD_SIG}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &missing_id, STD_BODY, 1614265330, &err), -EACCES);
	struct hdrs missing_ts = {{"webhook-id", STD_ID, "webhook-signature", STD_SIG}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &missing_ts, STD_BODY, 1614265330, &err), -EACCES);
	const char *bad_ts[] = {"", "-1614265330", "1614265330.0", " 1614265330", "0x10", "1234567890123456"};
	for (size_t i = 0; i < ELEMENTSOF(bad_ts); i++) {
		struct hdrs h = {{"webhook-id", STD_ID, "webhook-timestamp", bad_ts[i], "webhook-signature", STD_SIG}};
		assert_int_equal(verify(WHSIG_STANDARD, &cfg, &h, STD_BODY, 1614265330, &err), -EINVAL);
	}
	const char *bad_sig[] = {"v1", "v1,not*base64", "v1,AAAA", "garbage"};
	for (size_t i = 0; i < ELEMENTSOF(bad_sig); i++) {
		struct hdrs h = {{"webhook-id", STD_ID, "webhook-timestamp", STD_TS, "webhook-signature", bad_sig[i]}};
		assert_int_equal(verify(WHSIG_STANDARD, &cfg, &h, STD_BODY, 1614265330, &err), -EINVAL);
	}
	/* A malformed entry beside a good one does not spoil it. */
	struct hdrs mixed = {
	    {"webhook-id", STD_ID, "webhook-timestamp", STD_TS, "webhook-signature", "v1,@@ " STD_SIG}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &mixed, STD_BODY, 1614265330, &err), 0);
	/* Only the first 16 signatures are read. */
	char many[4096] = "";
	for (int i = 0; i < 16; i++)
		strcat(many, "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= ");
	strcat(many, STD_SIG);
	struct hdrs h17 = {{"webhook-id", STD_ID, "webhook-timestamp", STD_TS, "webhook-signature", many}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &h17, STD_BODY, 1614265330, &err), -EACCES);
	/* Overlong headers and ids. */
	static char huge[WHSIG_HEADER_MAX + 2];
	memset(huge, ' ', WHSIG_HEADER_MAX + 1);
	memcpy(huge, STD_SIG, strlen(STD_SIG));
	struct hdrs hl = {{"webhook-id", STD_ID, "webhook-timestamp", STD_TS, "webhook-signature", huge}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &hl, STD_BODY, 1614265330, &err), -EINVAL);
	static char longid[WHSIG_ID_MAX + 2];
	memset(longid, 'm', WHSIG_ID_MAX + 1);
	struct hdrs hi = {{"webhook-id", longid, "webhook-timestamp", STD_TS, "webhook-signature", STD_SIG}};
	assert_int_equal(verify(WHSIG_STANDARD, &cfg, &hi, STD_BODY, 1614265330, &err), -EINVAL);
}

/* Stripe: MAC of "t.body" in hex. The first case was computed once with
 * printf '%s' '1700000000.{"id":"evt_1","object":"event"}' |
 *   openssl dgst -sha256 -hmac 'sk_test_stripe_secret_0123'. */
#define STRIPE_SECRET "sk_test_stripe_secret_0123"
#define STRIPE_BODY   "{\"id\":\"evt_1\",\"object\":\"event\"}"
#define STRIPE_MAC    "998d5bd419f2b46b858aece5d2b9d08fda319cfc0fee5194bb6ee67cd7765152"

static void hex_hmac(const char *key, const char *msg, char out[65])
{
	unsigned char mac[32];
	unsigned len = 0;
	assert_non_null(HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, strlen(msg), mac, &len));
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static void test_stripe(void **state)
{
	(void)state;
	struct zerr err;
	struct whsig_config cfg = {.secrets = {STRIPE_SECRET}};
	struct hdrs h = {{"Stripe-Signature", "t=1700000000,v1=" STRIPE_MAC}};
	assert_int_equal(verify(WHSIG_STRIPE, &cfg, &h, STRIPE_BODY, 1700000000, &err), 0);
	/* Upper-case hex, several signatures, a v0 among them. */
	struct hdrs h2 = {{"stripe-signature",
	                   "t=1700000000,v1=00000000000000000000000000000000000000000000000000000000"
	                   "00000000,v0=abc,v1=998D5BD419F2B46B858AECE5D2B9D08FDA319CFC0FEE5194BB6EE67"
	                   "CD7765152"}};
	assert_int_equal(verify(WHSIG_STRIPE, &cfg, &h2, STRIPE_BODY, 1700000000, &err), 0);

	/* A second case computed here with OpenSSL's HMAC. */
	char mac[65], hv[128];
	hex_hmac(STRIPE_SECRET, "1700000123.payload with spaces", mac);
	snprintf(hv, sizeof(hv), "t=1700000123,v1=%s", mac);
	struct hdrs h3 = {{"Stripe-Signature", hv}};
	assert_int_equal(verify(WHSIG_STRIPE, &cfg, &h3, "payload with spaces", 1700000000, &err), 0);
	assert_int_equal(verify(WHSIG_STRIPE, &cfg, &h3, "payload with spaces!", 1700000000, &err), -EACCES);
	/* Stale and future. */
	assert_int_equal(verify(WHSIG_STRIPE, &cfg, &h, STRIPE_BODY, 1700000301, &err), -ETIME);
	assert_int_equal(verify(WHSIG_STRIPE, &cfg, &h, STRIPE_BODY, 1699999699, &err), -ETIME);
	/* Wrong secret, and the right one as the previous. */
	struct whsig_config wrong = {.secrets = {"sk_test_another_secret_99"}};
	assert_int_equal(verify(WHSIG_STRIPE, &wrong, &h, STRIPE_BODY, 1700000000, &err), -EACCES);
	struct whsig_config rotated = {.secrets = {"sk_test_another_secret_99", STRIPE_SECRET}};
	assert_int_equal(verify(WHSIG_STRIPE, &rotated, &h, STRIPE_BODY, 1700000000, &err), 0);
	/* The timestamp is signed: moving it breaks the MAC. */
	struct hdrs moved = {{"Stripe-Signature", "t=1700000001,v1=" STRIPE_MAC}};
	assert_int_equal(verify(WHSIG_STRIPE, &cfg, &moved, STRIPE_BODY, 1700000000, &err), -EACCES);

	struct hdrs none = {{"X-Other", "1"}};
	assert_int_equal(verify(WHSIG_STRIPE, &cfg, &none, STRIPE_BODY, 1700000000, &err), -EACCES);
	const char *bad[] = {
	    "t1700000000,v1=" STRIPE_MAC,               /* missing = */
	    "v1=" STRIPE_MAC,                           /* no timestamp */
	    "t=abc,v1=" STRIPE_MAC,                     /* timestamp not digits */
	    "t=1700000000,t=1700000000,v1=" STRIPE_MAC, /* two timestamps */
	    "t=1700000000,v1=zz8d5bd419f2b46b858aece5d2b9d08fda319cfc0fee5194bb6ee67cd7765152", /* non-hex */
	    "t=1700000000,v1=998d5bd4",                                                         /* short */
	    "t=1700000000,v1=" STRIPE_MAC "00",                                                 /* long */
	    "t=1700000000,v1",                                                                  /* missing = */
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct hdrs hb = {{"Stripe-Signature", bad[i]}};
		int r = verify(WHSIG_STRIPE, &cfg, &hb, STRIPE_BODY, 1700000000, &err);
		if (r != -EINVAL)
			fail_msg("%s: %d (%s)", bad[i], r, err.msg);
	}
	struct hdrs nosig = {{"Stripe-Signature", "t=1700000000,v0=abc"}};
	assert_int_equal(verify(WHSIG_STRIPE, &cfg, &nosig, STRIPE_BODY, 1700000000, &err), -EACCES);
}

/* GitHub's documented example. */
#define GH_SECRET "It's a Secret to Everybody"
#define GH_SIG    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

static void test_github(void **state)
{
	(void)state;
	struct zerr err;
	struct whsig_config cfg = {.secrets = {GH_SECRET}};
	struct hdrs h = {{"X-Hub-Signature-256", GH_SIG, "X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"}};
	/* No timestamp: any clock will do. */
	assert_int_equal(verify(WHSIG_GITHUB, &cfg, &h, "Hello, World!", 0, &err), 0);
	assert_int_equal(verify(WHSIG_GITHUB, &cfg, &h, "Hello, World!", 1800000000, &err), 0);
	assert_int_equal(verify(WHSIG_GITHUB, &cfg, &h, "Hello, World?", 0, &err), -EACCES);
	assert_int_equal(verify(WHSIG_GITHUB, &cfg, &h, "", 0, &err), -EACCES);
	struct whsig_config wrong = {.secrets = {"It's a Secret to Everybody!"}};
	assert_int_equal(verify(WHSIG_GITHUB, &wrong, &h, "Hello, World!", 0, &err), -EACCES);
	assert_null(strstr(err.msg, "Secret"));
	struct whsig_config rotated = {.secrets = {"It's a Secret to Everybody!", GH_SECRET}};
	assert_int_equal(verify(WHSIG_GITHUB, &rotated, &h, "Hello, World!", 0, &err), 0);

	struct hdrs sha1 = {{"X-Hub-Signature", "sha1=abc"}};
	assert_int_equal(verify(WHSIG_GITHUB, &cfg, &sha1, "Hello, World!", 0, &err), -EACCES);
	const char *bad[] = {
	    "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", /* no prefix */
	    "sha256757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
	    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1g",
	    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
	    "sha256=",
	    "sha256= 757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct hdrs hb = {{"X-Hub-Signature-256", bad[i]}};
		assert_int_equal(verify(WHSIG_GITHUB, &cfg, &hb, "Hello, World!", 0, &err), -EINVAL);
	}
	static char huge[WHSIG_HEADER_MAX + 100];
	snprintf(huge, sizeof(huge), "%s", GH_SIG);
	memset(huge + strlen(GH_SIG), '0', WHSIG_HEADER_MAX);
	struct hdrs hl = {{"X-Hub-Signature-256", huge}};
	assert_int_equal(verify(WHSIG_GITHUB, &cfg, &hl, "Hello, World!", 0, &err), -EINVAL);
}

static void test_hmac(void **state)
{
	(void)state;
	struct zerr err;
	struct whsig_config hex = {.secrets = {GH_SECRET}, .header = "X-Signature"};
	struct hdrs h = {{"x-signature", "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}};
	assert_int_equal(verify(WHSIG_HMAC, &hex, &h, "Hello, World!", 0, &err), 0);
	assert_int_equal(verify(WHSIG_HMAC, &hex, &h, "Hello, World", 0, &err), -EACCES);
	struct whsig_config pre = {.secrets = {GH_SECRET}, .header = "X-Signature", .prefix = "hmac-sha256="};
	struct hdrs hp = {
	    {"X-Signature", "hmac-sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}};
	assert_int_equal(verify(WHSIG_HMAC, &pre, &hp, "Hello, World!", 0, &err), 0);
	assert_int_equal(verify(WHSIG_HMAC, &pre, &h, "Hello, World!", 0, &err), -EINVAL);
	/* The same MAC in base64: dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc= */
	struct whsig_config b64 = {.secrets = {GH_SECRET}, .header = "X-Signature", .encoding = WHSIG_BASE64};
	struct hdrs hb = {{"X-Signature", "dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc="}};
	assert_int_equal(verify(WHSIG_HMAC, &b64, &hb, "Hello, World!", 0, &err), 0);
	struct hdrs hbu = {{"X-Signature", "dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc"}};
	assert_int_equal(verify(WHSIG_HMAC, &b64, &hbu, "Hello, World!", 0, &err), 0);
	struct hdrs hbad = {{"X-Signature", "dXEH6g6yUJ_CESIczphLijdXC211hsIsRvQ3nIsEPhc="}};
	assert_int_equal(verify(WHSIG_HMAC, &b64, &hbad, "Hello, World!", 0, &err), -EINVAL);
	assert_int_equal(verify(WHSIG_HMAC, &b64, &h, "Hello, World!", 0, &err), -EINVAL);
	struct whsig_config noheader = {.secrets = {GH_SECRET}};
	assert_int_equal(verify(WHSIG_HMAC, &noheader, &h, "Hello, World!", 0, &err), -EINVAL);
	struct hdrs other = {{"X-Other", "1"}};
	assert_int_equal(verify(WHSIG_HMAC, &hex, &other, "Hello, World!", 0, &err), -EACCES);
}

static void test_delivery_id(void **state)
{
	(void)state;
	struct hdrs h = {{"webhook-id", STD_ID, "X-GitHub-Delivery", "72d3162e", "X-Request-Id", "req-1"}};
	struct whsig_request rq = {hdr, &h, NULL, 0, 0};
	struct whsig_config cfg = {0}, idh = {.id_header = "x-request-id"};
	assert_string_equal(whsig_delivery_id(WHSIG_STANDARD, &cfg, &rq), STD_ID);
	assert_string_equal(whsig_delivery_id(WHSIG_GITHUB, &cfg, &rq), "72d3162e");
	assert_null(whsig_delivery_id(WHSIG_STRIPE, &cfg, &rq));
	assert_null(whsig_delivery_id(WHSIG_HMAC, &cfg, &rq));
	assert_string_equal(whsig_delivery_id(WHSIG_STRIPE, &idh, &rq), "req-1");
	assert_string_equal(whsig_delivery_id(WHSIG_HMAC, &idh, &rq), "req-1");
	struct hdrs e = {{"webhook-id", ""}};
	rq.ctx = &e;
	assert_null(whsig_delivery_id(WHSIG_STANDARD, &cfg, &rq));
}

static void test_secret_new_and_names(void **state)
{
	(void)state;
	struct zerr err;
	char *a = NULL, *b = NULL;
	assert_int_equal(whsig_secret_new(WHSIG_STANDARD, &a, &err), 0);
	assert_int_equal(strlen(a), 6 + 44);
	assert_int_equal(strncmp(a, "whsec_", 6), 0);
	assert_int_equal(whsig_secret_check(WHSIG_STANDARD, a, &err), 0);
	assert_int_equal(whsig_secret_new(WHSIG_STRIPE, &b, &err), 0);
	assert_int_equal(strlen(b), 64);
	assert_int_equal(strspn(b, "0123456789abcdef"), 64);
	assert_int_equal(whsig_secret_check(WHSIG_STRIPE, b, &err), 0);
	/* A secret made here signs and verifies. */
	char mac[65], hv[80];
	hex_hmac(b, "body", mac);
	snprintf(hv, sizeof(hv), "sha256=%s", mac);
	struct hdrs h = {{"X-Hub-Signature-256", hv}};
	struct whsig_config cfg = {.secrets = {b}};
	assert_int_equal(verify(WHSIG_GITHUB, &cfg, &h, "body", 0, &err), 0);
	free(a);
	free(b);

	enum whsig_scheme s;
	for (int i = 0; i < _WHSIG_SCHEME_MAX; i++) {
		assert_int_equal(whsig_scheme_parse(whsig_scheme_name((enum whsig_scheme)i), &s), 0);
		assert_int_equal(s, i);
	}
	assert_int_equal(whsig_scheme_parse("Stripe", &s), -EINVAL);
	assert_int_equal(whsig_scheme_parse(NULL, &s), -EINVAL);
	assert_null(whsig_scheme_name(_WHSIG_SCHEME_MAX));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_standard_vector),
	    cmocka_unit_test(test_standard_secrets),
	    cmocka_unit_test(test_standard_malformed),
	    cmocka_unit_test(test_stripe),
	    cmocka_unit_test(test_github),
	    cmocka_unit_test(test_hmac),
	    cmocka_unit_test(test_delivery_id),
	    cmocka_unit_test(test_secret_new_and_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
