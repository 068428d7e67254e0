/* fuzz_trigger_bodies.c - trigger bodies as a client sends them (POST
 * /projects/{pid}/triggers, PATCH .../triggers/{tid}) through the parser the
 * HTTP layer uses (any JSON value, duplicate keys refused) and
 * val_trigger_create / val_trigger_patch (validate_trigger.c); and
 * val_trigger_whsig on any stored webhook config.
 *
 * Input: 1 byte choosing the check (create; patch of a cron trigger; patch
 * of a webhook; val_trigger_whsig on the JSON as a config), then the JSON.
 *
 * Checked beyond "no crash" (leaks are LeakSanitizer's):
 *  - a refusal is -ZE_INVALID_TRIGGER with a message that starts with a
 *    field path the body has ("config.timezone: ", "conditions[2].op: ",
 *    "config.<key>: unknown key" for a key the config holds), or
 *    -ZE_UNKNOWN_FIELD naming a top-level key that is not a field, or
 *    -ZE_BAD_REQUEST for a body that is not an object; the message is
 *    NUL-terminated and *ret is left untouched;
 *  - an accepted trigger is what the header promises: the type asked for
 *    (event_type the body's own string; a custom one "custom.<type>" with
 *    a valid type and config {}),
 *    a function reference that is an id or a slug, conditions the body's own
 *    (or [] on create), enabled as given; a cron config has exactly
 *    {schedule, timezone, payload, catch_up, overlap} with the values given
 *    or their defaults, and the scheduler's own reader (sched_config_parse)
 *    takes it with the same values; a webhook config has verify and
 *    respond, header and encoding exactly for "hmac", never the secret, and
 *    val_trigger_whsig reads back what was given; the secret returned is
 *    the body's and has the scheme's shape;
 *  - validating the normalised config again gives it back unchanged;
 *  - on PATCH, absent fields stay absent and the type stays the trigger's;
 *  - val_trigger_whsig answers 0 or -EINVAL, its strings are the config's
 *    own, and an hmac config it accepts has a header. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cdc.h"
#include "cron.h"
#include "errors.h"
#include "scheduler.h"
#include "tz.h"
#include "validate.h"
#include "validate_event.h"
#include "validate_trigger.h"
#include "webhook_sig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

/* Larger than a config may be (VT_CONFIG_MAX_BYTES), so that the limit is
 * crossed, and no larger. */
#define INPUT_MAX (VT_CONFIG_MAX_BYTES + 4096)

static const char *const fields[] = {"event_type", "function_id", "config", "conditions", "enabled"};
static const char *const cron_keys[] = {"schedule", "timezone", "payload", "catch_up", "overlap"};
static const char *const webhook_keys[] = {"verify", "secret", "header", "prefix", "encoding", "id_header", "respond"};

static bool one_of(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; s && i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static bool starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static const char *str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static bool str_is(json_t *o, const char *key, const char *want)
{
	const char *s = str(o, key);
	return s && strcmp(s, want) == 0;
}

/* "conditions[N]" followed by ": " or ".field: ", ".op: ", ".value: ". */
static bool condition_path(const char *p)
{
	if (starts(p, ": "))
		return true;
	if (*p++ != '[')
		return false;
	size_t digits = strspn(p, "0123456789");
	if (digits == 0 || p[digits] != ']')
		return false;
	p += digits + 1;
	return starts(p, ": ") || starts(p, ".field: ") || starts(p, ".op: ") || starts(p, ".value: ");
}

/* "config: ", "config.<key>: " for a key of the type, or "config.<key>:
 * unknown key" for a key of cfg that is not (cut to 64 bytes as printed). */
static bool config_path(const char *p, json_t *cfg, enum vt_type type)
{
	if (starts(p, ": "))
		return true;
	if (*p++ != '.')
		return false;
	/* A custom trigger has no config keys. */
	const char *const *keys = type == VT_CRON ? cron_keys : webhook_keys;
	size_t n = type == VT_CRON ? ELEMENTSOF(cron_keys) : type == VT_WEBHOOK ? ELEMENTSOF(webhook_keys) : 0;
	for (size_t i = 0; i < n; i++)
		if (starts(p, keys[i]) && starts(p + strlen(keys[i]), ": "))
			return true;
	const char *k;
	json_t *v;
	json_object_foreach (cfg, k, v) {
		char want[128];
		snprintf(want, sizeof(want), "%.64s: unknown key", k);
		if (strcmp(p, want) == 0 && !one_of(k, keys, n))
			return true;
	}
	return false;
}

static void check_refusal(int r, const struct zerr *err, json_t *body, enum vt_type type)
{
	CHECK(memchr(err->msg, '\0', sizeof(err->msg)) != NULL);
	CHECK(err->msg[0] != '\0');
	if (r == -ZE_BAD_REQUEST) {
		CHECK(!json_is_object(body));
		return;
	}
	if (r == -ZE_UNKNOWN_FIELD) {
		const char *k;
		json_t *v;
		bool named = false;
		json_object_foreach (body, k, v) {
			char want[96];
			snprintf(want, sizeof(want), "unknown field \"%.64s\"", k);
			named = named || (strcmp(err->msg, want) == 0 && !one_of(k, fields, ELEMENTSOF(fields)));
		}
		CHECK(named);
		return;
	}
	CHECK(r == -ZE_INVALID_TRIGGER);
	const char *m = err->msg;
	bool ok = false;
	if (starts(m, "event_type: ") || starts(m, "function_id: ") || starts(m, "enabled: "))
		ok = true;
	else if (starts(m, "conditions"))
		ok = condition_path(m + strlen("conditions"));
	else if (starts(m, "config"))
		ok = config_path(m + strlen("config"), json_object_get(body, "config"), type);
	if (!ok)
		fprintf(stderr, "message without a field path: %s\n", m);
	CHECK(ok);
	/* The message names a field the body has, or one it lacks and needs:
	 * either way one of the five. */
}

static bool untouched(const struct val_trigger *t)
{
	const unsigned char *p = (const unsigned char *)t;
	for (size_t i = 0; i < sizeof(*t); i++)
		if (p[i] != 0xa5)
			return false;
	return true;
}

static void check_cron_config(json_t *in, json_t *out)
{
	CHECK(json_object_size(out) == ELEMENTSOF(cron_keys));
	const char *sched = str(out, "schedule"), *zone = str(out, "timezone");
	CHECK(sched && zone && json_object_get(out, "payload"));
	CHECK(str_is(in, "schedule", sched));
	CHECK(json_object_get(in, "timezone") ? str_is(in, "timezone", zone) : strcmp(zone, "UTC") == 0);
	CHECK(tz_name_valid(zone));
	json_t *payload = json_object_get(in, "payload");
	CHECK(json_equal(json_object_get(out, "payload"), payload ? payload : json_null()));
	static const char *const catch_ups[] = {"skip", "latest", "all"};
	static const char *const overlaps[] = {"allow", "skip"};
	const char *cu = str(out, "catch_up"), *ov = str(out, "overlap");
	CHECK(one_of(cu, catch_ups, ELEMENTSOF(catch_ups)) && one_of(ov, overlaps, ELEMENTSOF(overlaps)));
	CHECK(json_object_get(in, "catch_up") ? str_is(in, "catch_up", cu) : strcmp(cu, "skip") == 0);
	CHECK(json_object_get(in, "overlap") ? str_is(in, "overlap", ov) : strcmp(ov, "allow") == 0);

	/* The schedule parses and fires. */
	struct cron c;
	CHECK(strlen(sched) <= CRON_EXPR_MAX && cron_parse(sched, &c, NULL) == 0);
	int64_t next;
	CHECK(cron_next(&c, NULL, 0, &next) == 0);

	/* What the API stores, the scheduler reads, to the same values. */
	struct sched_config sc;
	struct zerr e = {0};
	int r = sched_config_parse(out, &sc, &e);
	if (r < 0)
		fprintf(stderr, "the scheduler refuses a stored config: %s\n", e.msg);
	CHECK(r == 0);
	CHECK(strcmp(sc.schedule, sched) == 0 && strcmp(sc.timezone, zone) == 0);
	CHECK(sc.cron.sec == c.sec && sc.cron.min == c.min && sc.cron.hour == c.hour && sc.cron.dom == c.dom &&
	      sc.cron.mon == c.mon && sc.cron.dow == c.dow && sc.cron.dom_star == c.dom_star &&
	      sc.cron.dow_star == c.dow_star);
	CHECK(strcmp(catch_ups[sc.catch_up], cu) == 0 && strcmp(overlaps[sc.overlap], ov) == 0);
	CHECK(sc.payload == json_object_get(out, "payload"));
	sched_config_done(&sc);
}

static void check_webhook(json_t *in, const struct val_trigger *t)
{
	json_t *out = t->config;
	const char *verify = str(out, "verify"), *respond = str(out, "respond");
	static const char *const verifies[] = {"standard", "stripe", "github", "hmac", "none"};
	static const char *const responds[] = {"async", "sync"};
	CHECK(one_of(verify, verifies, ELEMENTSOF(verifies)) && one_of(respond, responds, ELEMENTSOF(responds)));
	CHECK(str_is(in, "verify", verify));
	CHECK(json_object_get(in, "respond") ? str_is(in, "respond", respond) : strcmp(respond, "async") == 0);
	bool hmac = strcmp(verify, "hmac") == 0, stripe = strcmp(verify, "stripe") == 0;
	const char *k;
	json_t *v;
	json_object_foreach (out, k, v) {
		CHECK(one_of(k, webhook_keys, ELEMENTSOF(webhook_keys)) && strcmp(k, "secret") != 0);
		CHECK(json_is_string(v));
		/* What the config keeps, the body gave (but the defaults). */
		CHECK(str_is(in, k, json_string_value(v)) || strcmp(k, "respond") == 0 || strcmp(k, "encoding") == 0);
	}
	CHECK(!!json_object_get(out, "header") == hmac && !!json_object_get(out, "encoding") == hmac);
	CHECK(!json_object_get(out, "prefix") || hmac);
	CHECK(!json_object_get(out, "id_header") || hmac || stripe);
	if (hmac)
		CHECK(json_object_get(in, "encoding") ? str_is(in, "encoding", str(out, "encoding"))
		                                      : str_is(out, "encoding", "hex"));

	/* The secret: the body's own, of the scheme's shape, kept apart. */
	CHECK(t->signed_ == (strcmp(verify, "none") != 0));
	if (t->signed_)
		CHECK(strcmp(whsig_scheme_name(t->scheme), verify) == 0);
	CHECK(t->secret == str(in, "secret"));
	if (t->secret)
		CHECK(t->signed_ && whsig_secret_check(t->scheme, t->secret, NULL) == 0);

	/* What the webhook endpoint reads back. */
	bool is_signed = false, sync = false;
	enum whsig_scheme scheme = _WHSIG_SCHEME_MAX;
	struct whsig_config wc;
	CHECK(val_trigger_whsig(out, &is_signed, &scheme, &wc, &sync) == 0);
	CHECK(is_signed == t->signed_ && (!is_signed || scheme == t->scheme));
	CHECK(sync == (strcmp(respond, "sync") == 0));
	CHECK(wc.header == str(out, "header") && wc.prefix == str(out, "prefix") &&
	      wc.id_header == str(out, "id_header"));
	CHECK(wc.encoding == (str_is(out, "encoding", "base64") ? WHSIG_BASE64 : WHSIG_HEX));
	CHECK(wc.secrets[0] == NULL && wc.secrets[1] == NULL);
}

/* The normalised config, given again in the same place, comes back the
 * same (for a webhook, with the secret it was given). */
static void check_again(json_t *body, const struct val_trigger *t, bool create, enum vt_type cur)
{
	json_t *cfg = json_deep_copy(t->config);
	json_t *b2 = json_deep_copy(body);
	CHECK(cfg && b2);
	if (t->secret)
		CHECK(json_object_set_new(cfg, "secret", json_string(t->secret)) == 0);
	CHECK(json_object_set_new(b2, "config", cfg) == 0);
	struct val_trigger again;
	struct zerr e = {0};
	int r =
	    create ? val_trigger_create(b2, &again, &e) : val_trigger_patch(b2, val_trigger_type_name(cur), &again, &e);
	if (r < 0)
		fprintf(stderr, "a normalised config is refused: %s\n", e.msg);
	CHECK(r == 0);
	CHECK(json_equal(again.config, t->config));
	val_trigger_done(&again);
	json_decref(b2);
}

static void check_accepted(json_t *body, const struct val_trigger *t, bool create, enum vt_type cur)
{
	json_t *v;
	/* The type. */
	if (create) {
		enum vt_type parsed = VT_CRON;
		CHECK(t->has_type && t->event_type && t->event_type == str(body, "event_type"));
		CHECK(val_trigger_type_parse(t->event_type, &parsed) == 0 && parsed == t->type);
		CHECK(t->type != VT_CUSTOM || val_event_trigger_type(t->event_type));
		struct cdc_name n;
		const char *why;
		CHECK((t->type == VT_CDC) == (cdc_parse_event_type(t->event_type, &n, &why) == 0));
	} else {
		CHECK(t->type == cur);
		v = json_object_get(body, "event_type");
		CHECK(!v || str_is(body, "event_type", val_trigger_type_name(cur)));
	}
	/* The function: an id or a slug, borrowed from the body. */
	v = json_object_get(body, "function_id");
	CHECK(t->function_ref == json_string_value(v));
	CHECK(create ? t->function_ref != NULL : (t->function_ref != NULL) == (v != NULL));
	if (t->function_ref)
		CHECK(strlen(t->function_ref) <= VT_FUNCTION_REF_MAX &&
		      (val_is_uuid(t->function_ref) || val_slug(t->function_ref)));
	/* enabled */
	v = json_object_get(body, "enabled");
	CHECK(v ? t->enabled == json_is_true(v) : t->enabled == -1);
	/* conditions: the body's own, or [] on create. */
	v = json_object_get(body, "conditions");
	if (v)
		CHECK(t->conditions == v);
	else if (create)
		CHECK(json_is_array(t->conditions) && json_array_size(t->conditions) == 0);
	else
		CHECK(t->conditions == NULL);
	/* config */
	json_t *in = json_object_get(body, "config");
	if (!create && !in) {
		CHECK(t->config == NULL && t->secret == NULL);
		return;
	}
	CHECK(json_is_object(t->config));
	json_t *empty = NULL;
	if (!in)
		in = empty = json_object();
	if (t->type == VT_CRON) {
		CHECK(t->secret == NULL);
		check_cron_config(in, t->config);
	} else if (t->type == VT_CUSTOM || t->type == VT_CDC) {
		CHECK(t->secret == NULL && json_object_size(t->config) == 0 && json_object_size(in) == 0);
	} else {
		check_webhook(in, t);
	}
	json_decref(empty);
	check_again(body, t, create, cur);
}

/* val_trigger_whsig on a config from the database, which anyone with SQL
 * access may have written. */
static void check_whsig(json_t *config)
{
	bool is_signed = false, sync = false;
	enum whsig_scheme scheme = _WHSIG_SCHEME_MAX;
	struct whsig_config wc;
	int r = val_trigger_whsig(config, &is_signed, &scheme, &wc, &sync);
	CHECK(r == 0 || r == -EINVAL);
	if (r < 0)
		return;
	const char *verify = str(config, "verify");
	CHECK(verify);
	CHECK(is_signed ? scheme < _WHSIG_SCHEME_MAX && strcmp(whsig_scheme_name(scheme), verify) == 0
	                : strcmp(verify, "none") == 0);
	CHECK(wc.header == str(config, "header") && wc.prefix == str(config, "prefix") &&
	      wc.id_header == str(config, "id_header"));
	CHECK(!is_signed || scheme != WHSIG_HMAC || wc.header);
	CHECK(wc.encoding == WHSIG_HEX || wc.encoding == WHSIG_BASE64);
	CHECK(sync == str_is(config, "respond", "sync"));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > INPUT_MAX)
		return 0;
	/* As the HTTP layer parses a body (http_json_body). */
	json_t *body = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
	if (!body)
		return 0;
	int mode = data[0] % 4;
	if (mode == 3) {
		check_whsig(body);
		json_decref(body);
		return 0;
	}
	bool create = mode == 0;
	enum vt_type cur = mode == 2 ? VT_WEBHOOK : VT_CRON;
	struct val_trigger t;
	memset(&t, 0xa5, sizeof(t));
	struct zerr err = {0};
	int r =
	    create ? val_trigger_create(body, &t, &err) : val_trigger_patch(body, val_trigger_type_name(cur), &t, &err);
	if (r < 0) {
		CHECK(untouched(&t));
		json_t *et = json_object_get(body, "event_type");
		enum vt_type type = cur;
		if (create && (!json_is_string(et) || val_trigger_type_parse(json_string_value(et), &type) < 0))
			/* Refused for its type: no config was read. */
			CHECK(!starts(err.msg, "config"));
		check_refusal(r, &err, body, type);
	} else {
		CHECK(r == 0);
		check_accepted(body, &t, create, cur);
		val_trigger_done(&t);
	}
	json_decref(body);
	return 0;
}
