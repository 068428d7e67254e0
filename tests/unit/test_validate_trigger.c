/* Unit tests: the shapes of trigger bodies (validate_trigger.c) and of
 * custom events (validate_event.c). Every
 * failure is INVALID_TRIGGER (or UNKNOWN_FIELD) with a message that starts
 * with the field's path; what passes comes back normalised. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "errors.h"
#include "validate_event.h"
#include "cdc.h"
#include "validate_trigger.h"

static json_t *js(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (!j)
		fail_msg("bad test JSON %s: %s", text, je.text);
	return j;
}

/* The body of the last call: what the validator returns borrows from it. */
static json_t *held;
static struct val_trigger got;

static int create(const char *text, struct zerr *err)
{
	val_trigger_done(&got);
	json_decref(held);
	held = js(text);
	memset(&got, 0, sizeof(got));
	memset(err, 0, sizeof(*err));
	return val_trigger_create(held, &got, err);
}

static int patch(const char *text, const char *cur, struct zerr *err)
{
	val_trigger_done(&got);
	json_decref(held);
	held = js(text);
	memset(&got, 0, sizeof(got));
	memset(err, 0, sizeof(*err));
	return val_trigger_patch(held, cur, &got, err);
}

static int teardown(void **state)
{
	val_trigger_done(&got);
	json_decref(held);
	held = NULL;
	return 0;
}

/* text fails with INVALID_TRIGGER and a message starting with prefix. */
static struct zerr last; /* of refused() */

static void refused(const char *text, const char *prefix)
{
	struct zerr err;
	int r = create(text, &err);
	last = err;
	if (r != -ZE_INVALID_TRIGGER || strncmp(err.msg, prefix, strlen(prefix)) != 0)
		fail_msg("%s: got %d \"%s\", want INVALID_TRIGGER \"%s...\"", text, r, err.msg, prefix);
}

static void accepted(const char *text)
{
	struct zerr err;
	if (create(text, &err) != 0)
		fail_msg("%s: refused: %s", text, err.msg);
}

static void assert_config(const char *want)
{
	json_t *w = js(want);
	if (!json_equal(w, got.config)) {
		char *s = json_dumps(got.config, JSON_COMPACT | JSON_SORT_KEYS);
		fail_msg("config %s, want %s", s, want);
	}
	json_decref(w);
}

#define CRON(cfg)       "{\"event_type\":\"cron\",\"function_id\":\"fn\",\"config\":" cfg "}"
#define WEBHOOK(cfg)    "{\"event_type\":\"webhook\",\"function_id\":\"fn\",\"config\":" cfg "}"
#define A_UUID          "0f0e0d0c-0b0a-4908-8706-050403020100"
#define HMAC_CFG(extra) WEBHOOK("{\"verify\":\"hmac\",\"header\":\"X-Sig\"" extra "}")

static void test_cron_defaults(void **state)
{
	accepted(CRON("{\"schedule\":\"*/5 * * * *\"}"));
	assert_int_equal(got.type, VT_CRON);
	assert_string_equal(got.function_ref, "fn");
	assert_int_equal(got.enabled, -1);
	assert_true(json_is_array(got.conditions) && json_array_size(got.conditions) == 0);
	assert_config("{\"schedule\":\"*/5 * * * *\",\"timezone\":\"UTC\",\"payload\":null,\"catch_up\":\"skip\","
	              "\"overlap\":\"allow\"}");

	accepted("{\"event_type\":\"cron\",\"function_id\":\"" A_UUID "\",\"enabled\":false,"
	         "\"conditions\":[{\"field\":\"payload.n\",\"op\":\"gt\",\"value\":1}],"
	         "\"config\":{\"schedule\":\"@daily\",\"timezone\":\"Europe/Paris\",\"payload\":{\"n\":2},"
	         "\"catch_up\":\"all\",\"overlap\":\"skip\"}}");
	assert_int_equal(got.enabled, 0);
	assert_string_equal(got.function_ref, A_UUID);
	assert_int_equal(json_array_size(got.conditions), 1);
	assert_config("{\"schedule\":\"@daily\",\"timezone\":\"Europe/Paris\",\"payload\":{\"n\":2},"
	              "\"catch_up\":\"all\",\"overlap\":\"skip\"}");
}

static void test_cron_refusals(void **state)
{
	refused(CRON("{}"), "config.schedule: required");
	refused("{\"event_type\":\"cron\",\"function_id\":\"fn\"}", "config.schedule: required");
	refused(CRON("{\"schedule\":5}"), "config.schedule: want a string");
	refused(CRON("{\"schedule\":\"61 * * * *\"}"), "config.schedule: minute");
	refused(CRON("{\"schedule\":\"* * *\"}"), "config.schedule: ");
	refused(CRON("{\"schedule\":\"@fortnightly\"}"), "config.schedule: ");
	refused(CRON("{\"schedule\":\"0 0 30 2 *\"}"), "config.schedule: never fires");
	refused(CRON("{\"schedule\":\"* * * * *\",\"timezone\":\"Mars/Olympus\"}"),
	        "config.timezone: no such time zone \"Mars/Olympus\"");
	refused(CRON("{\"schedule\":\"* * * * *\",\"timezone\":\"../etc/passwd\"}"), "config.timezone: ");
	refused(CRON("{\"schedule\":\"* * * * *\",\"timezone\":7}"), "config.timezone: want a string");
	refused(CRON("{\"schedule\":\"* * * * *\",\"catch_up\":\"some\"}"), "config.catch_up: \"some\" is not one of");
	refused(CRON("{\"schedule\":\"* * * * *\",\"overlap\":true}"), "config.overlap: want a string");
	refused(CRON("{\"schedule\":\"* * * * *\",\"every\":1}"), "config.every: unknown key");
	refused(CRON("{\"schedule\":\"* * * * *\",\"verify\":\"none\"}"), "config.verify: unknown key");
	refused(CRON("[]"), "config: want an object");
	char big[VT_CONFIG_MAX_BYTES + 200];
	int n = snprintf(big, sizeof(big), "%s",
	                 "{\"event_type\":\"cron\",\"function_id\":\"fn\",\"config\":"
	                 "{\"schedule\":\"* * * * *\",\"payload\":\"");
	memset(big + n, 'x', VT_CONFIG_MAX_BYTES);
	snprintf(big + n + VT_CONFIG_MAX_BYTES, sizeof(big) - (size_t)n - VT_CONFIG_MAX_BYTES, "\"}}");
	refused(big, "config: larger than");
}

static void test_top_level_fields(void **state)
{
	struct zerr err;
	assert_int_equal(create("{\"event_type\":\"cron\",\"function_id\":\"fn\",\"nope\":1}", &err),
	                 -ZE_UNKNOWN_FIELD);
	assert_non_null(strstr(err.msg, "nope"));
	assert_int_equal(create("[]", &err), -ZE_BAD_REQUEST);
	refused("{\"function_id\":\"fn\"}", "event_type: required");
	refused("{\"event_type\":1,\"function_id\":\"fn\"}", "event_type: want a string");
	refused("{\"event_type\":\"queue\",\"function_id\":\"fn\"}", "event_type: \"queue\" is not one of");
	refused("{\"event_type\":\"cdc.TRUNCATE.orders\",\"function_id\":\"fn\"}", "event_type: ");
	assert_non_null(strstr(last.msg, "names no operation"));
	refused("{\"event_type\":\"cron\",\"config\":{\"schedule\":\"@daily\"}}", "function_id: required");
	refused("{\"event_type\":\"cron\",\"function_id\":3,\"config\":{\"schedule\":\"@daily\"}}",
	        "function_id: want a string");
	refused("{\"event_type\":\"cron\",\"function_id\":\"Not A Slug\",\"config\":{\"schedule\":\"@daily\"}}",
	        "function_id: no such function in this project");
	refused("{\"event_type\":\"cron\",\"function_id\":\"fn\",\"enabled\":\"yes\",\"config\":{\"schedule\":"
	        "\"@daily\"}}",
	        "enabled: want true or false");
}

static void test_conditions(void **state)
{
	refused("{\"event_type\":\"cron\",\"function_id\":\"fn\",\"config\":{\"schedule\":\"@daily\"},"
	        "\"conditions\":{}}",
	        "conditions: want an array");
	refused("{\"event_type\":\"cron\",\"function_id\":\"fn\",\"config\":{\"schedule\":\"@daily\"},"
	        "\"conditions\":[{\"field\":\"a\",\"op\":\"eq\",\"value\":1},{\"field\":\"b\",\"op\":\"like\","
	        "\"value\":1}]}",
	        "conditions[1].op: ");
	refused("{\"event_type\":\"cron\",\"function_id\":\"fn\",\"config\":{\"schedule\":\"@daily\"},"
	        "\"conditions\":[{\"field\":\"a..b\",\"op\":\"eq\",\"value\":1}]}",
	        "conditions[0].field: ");
	/* Big values are bounded as a whole, before the per-condition rules. */
	static char big[VT_CONDITIONS_MAX_BYTES + 200];
	int n = snprintf(big, sizeof(big), "%s",
	                 "{\"event_type\":\"cron\",\"function_id\":\"fn\",\"config\":{\"schedule\":\"@daily\"},"
	                 "\"conditions\":[{\"field\":\"a\",\"op\":\"eq\",\"value\":\"");
	memset(big + n, 'v', VT_CONDITIONS_MAX_BYTES);
	snprintf(big + n + VT_CONDITIONS_MAX_BYTES, sizeof(big) - (size_t)n - VT_CONDITIONS_MAX_BYTES, "\"}]}");
	refused(big, "conditions: larger than");
}

static void test_webhook_presets(void **state)
{
	accepted(WEBHOOK("{\"verify\":\"standard\"}"));
	assert_int_equal(got.type, VT_WEBHOOK);
	assert_true(got.signed_);
	assert_int_equal(got.scheme, WHSIG_STANDARD);
	assert_null(got.secret);
	assert_config("{\"verify\":\"standard\",\"respond\":\"async\"}");

	accepted(WEBHOOK("{\"verify\":\"stripe\",\"secret\":\"0123456789abcdef\",\"id_header\":\"Idempotency-Key\","
	                 "\"respond\":\"sync\"}"));
	assert_int_equal(got.scheme, WHSIG_STRIPE);
	assert_string_equal(got.secret, "0123456789abcdef");
	/* The secret is kept apart, never in the stored config. */
	assert_config("{\"verify\":\"stripe\",\"respond\":\"sync\",\"id_header\":\"Idempotency-Key\"}");

	accepted(WEBHOOK("{\"verify\":\"github\"}"));
	assert_int_equal(got.scheme, WHSIG_GITHUB);

	accepted(HMAC_CFG());
	assert_config("{\"verify\":\"hmac\",\"respond\":\"async\",\"header\":\"X-Sig\",\"encoding\":\"hex\"}");
	accepted(HMAC_CFG(",\"prefix\":\"sha256=\",\"encoding\":\"base64\",\"id_header\":\"X-Id\""));
	assert_config("{\"verify\":\"hmac\",\"respond\":\"async\",\"header\":\"X-Sig\",\"prefix\":\"sha256=\","
	              "\"encoding\":\"base64\",\"id_header\":\"X-Id\"}");

	accepted(WEBHOOK("{\"verify\":\"none\"}"));
	assert_false(got.signed_);
	assert_config("{\"verify\":\"none\",\"respond\":\"async\"}");

	accepted(WEBHOOK("{\"verify\":\"standard\",\"secret\":\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"}"));
	assert_string_equal(got.secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
}

static void test_webhook_refusals(void **state)
{
	refused("{\"event_type\":\"webhook\",\"function_id\":\"fn\"}", "config: required");
	refused(WEBHOOK("{}"), "config.verify: required");
	refused(WEBHOOK("{\"verify\":\"md5\"}"), "config.verify: \"md5\" is not one of");
	refused(WEBHOOK("{\"verify\":\"standard\",\"secret\":\"too-short\"}"), "config.secret: want whsec_");
	refused(WEBHOOK("{\"verify\":\"stripe\",\"secret\":\"short\"}"), "config.secret: want 16 to 256 bytes");
	refused(WEBHOOK("{\"verify\":\"github\",\"secret\":42}"), "config.secret: want a string");
	refused(WEBHOOK("{\"verify\":\"none\",\"secret\":\"0123456789abcdef\"}"), "config.secret: ");
	refused(WEBHOOK("{\"verify\":\"hmac\"}"), "config.header: required");
	refused(HMAC_CFG(",\"encoding\":\"base32\""), "config.encoding: \"base32\" is not one of");
	refused(WEBHOOK("{\"verify\":\"hmac\",\"header\":\"X Sig\"}"), "config.header: want a header name");
	refused(WEBHOOK("{\"verify\":\"hmac\",\"header\":\"X-Sig\\r\\nEvil: 1\"}"), "config.header: ");
	refused(HMAC_CFG(",\"prefix\":\"a\\u0001\""), "config.prefix: ");
	refused(HMAC_CFG(",\"prefix\":\"" /* 65 bytes */
	                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""),
	        "config.prefix: ");
	refused(HMAC_CFG(",\"id_header\":\"\""), "config.id_header: ");
	refused(WEBHOOK("{\"verify\":\"github\",\"header\":\"X-Sig\"}"), "config.header: only with verify \"hmac\"");
	refused(WEBHOOK("{\"verify\":\"standard\",\"prefix\":\"v1,\"}"), "config.prefix: only with verify");
	refused(WEBHOOK("{\"verify\":\"standard\",\"encoding\":\"hex\"}"), "config.encoding: only with verify");
	refused(WEBHOOK("{\"verify\":\"github\",\"id_header\":\"X-Id\"}"), "config.id_header: only with");
	refused(WEBHOOK("{\"verify\":\"standard\",\"respond\":\"later\"}"), "config.respond: \"later\" is not one of");
	refused(WEBHOOK("{\"verify\":\"standard\",\"schedule\":\"@daily\"}"), "config.schedule: unknown key");
}

static void test_patch(void **state)
{
	struct zerr err;
	assert_int_equal(patch("{\"enabled\":false}", "cron", &err), 0);
	assert_int_equal(got.enabled, 0);
	assert_null(got.config);
	assert_null(got.conditions);
	assert_null(got.function_ref);

	assert_int_equal(
	    patch("{\"config\":{\"schedule\":\"0 9 * * MON-FRI\"},\"function_id\":\"other\"}", "cron", &err), 0);
	assert_string_equal(got.function_ref, "other");
	assert_config("{\"schedule\":\"0 9 * * MON-FRI\",\"timezone\":\"UTC\",\"payload\":null,\"catch_up\":\"skip\","
	              "\"overlap\":\"allow\"}");

	/* Its own type may be repeated; another is a change. */
	assert_int_equal(patch("{\"event_type\":\"cron\"}", "cron", &err), 0);
	assert_int_equal(patch("{\"event_type\":\"webhook\"}", "cron", &err), -ZE_INVALID_TRIGGER);
	assert_true(strncmp(err.msg, "event_type: cannot change", 25) == 0);

	/* A config is validated against the stored type. */
	assert_int_equal(patch("{\"config\":{\"verify\":\"github\"}}", "cron", &err), -ZE_INVALID_TRIGGER);
	assert_true(strncmp(err.msg, "config.verify: unknown key", 26) == 0);
	assert_int_equal(patch("{\"config\":{\"verify\":\"github\"}}", "webhook", &err), 0);
	assert_true(got.signed_);
	assert_int_equal(patch("{\"conditions\":[{\"field\":\"x\",\"op\":\"in\",\"value\":3}]}", "webhook", &err),
	                 -ZE_INVALID_TRIGGER);
	assert_true(strncmp(err.msg, "conditions[0].value: ", 21) == 0);
	assert_int_equal(patch("{\"secret\":\"x\"}", "webhook", &err), -ZE_UNKNOWN_FIELD);
}

#define CUSTOM(type, rest) "{\"event_type\":\"" type "\",\"function_id\":\"fn\"" rest "}"

static void test_custom(void **state)
{
	accepted(CUSTOM("custom.order.paid", ""));
	assert_int_equal(got.type, VT_CUSTOM);
	assert_string_equal(got.event_type, "custom.order.paid");
	assert_string_equal(val_trigger_type_name(got.type), "custom");
	assert_config("{}");
	assert_true(json_is_array(got.conditions) && json_array_size(got.conditions) == 0);

	accepted(CUSTOM("custom.a", ",\"config\":{},\"enabled\":false,\"conditions\":[{\"field\":\"data.amount\","
	                            "\"op\":\"gte\",\"value\":100}]"));
	assert_int_equal(got.enabled, 0);
	assert_int_equal(json_array_size(got.conditions), 1);
	/* Every character a type may have, and its longest. */
	accepted(CUSTOM("custom.a-z_0.9", ""));
	char longest[300];
	snprintf(longest, sizeof(longest), CUSTOM("custom.%0100d", ""), 0);
	accepted(longest);
	assert_int_equal(strlen(got.event_type), strlen("custom.") + VE_TYPE_MAX);

	snprintf(longest, sizeof(longest), CUSTOM("custom.%0101d", ""), 0);
	refused(longest, "event_type: ");
	refused(CUSTOM("custom.", ""), "event_type: ");
	refused(CUSTOM("custom.Order", ""), "event_type: ");
	refused(CUSTOM("custom.order paid", ""), "event_type: ");
	refused(CUSTOM("custom.order/paid", ""), "event_type: ");
	refused(CUSTOM("custom.custom.order", ""), "event_type: ");
	refused(CUSTOM("custom.\\u00e9t\\u00e9", ""), "event_type: ");
	refused(CUSTOM("custom.a\\u0000b", ""), "event_type: ");
	refused(CUSTOM("Custom.order", ""), "event_type: ");

	/* No settings yet: any key is unknown. */
	refused(CUSTOM("custom.order.paid", ",\"config\":{\"schedule\":\"@daily\"}"), "config.schedule: unknown key");
	refused(CUSTOM("custom.order.paid", ",\"config\":[]"), "config: want an object");
	refused(CUSTOM("custom.order.paid", ",\"conditions\":[{\"field\":\"data\",\"op\":\"in\",\"value\":1}]"),
	        "conditions[0].value: ");

	/* PATCH keeps the type; the stored name is the only one it takes. */
	struct zerr err;
	assert_int_equal(patch("{\"event_type\":\"custom.order.paid\",\"config\":{}}", "custom.order.paid", &err), 0);
	assert_int_equal(got.type, VT_CUSTOM);
	assert_string_equal(got.event_type, "custom.order.paid");
	assert_config("{}");
	assert_int_equal(patch("{\"event_type\":\"custom.order.shipped\"}", "custom.order.paid", &err),
	                 -ZE_INVALID_TRIGGER);
	assert_true(strncmp(err.msg, "event_type: cannot change", 25) == 0);
	assert_int_equal(patch("{\"config\":{\"x\":1}}", "custom.order.paid", &err), -ZE_INVALID_TRIGGER);
	assert_true(strncmp(err.msg, "config.x: unknown key", 21) == 0);
	assert_int_equal(patch("{\"enabled\":true}", "cdc.TRUNCATE.orders", &err), -ZE_INVALID_TRIGGER);
	assert_true(strncmp(err.msg, "event_type: ", 12) == 0);
}

/* Database changes: cdc.<OP>.<table> or cdc.<OP>.<schema>.<table>. */
static void test_cdc(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		unsigned ops;
		const char *schema, *table;
	} ok[] = {
	    {"cdc.INSERT.orders", CDC_INSERT, "public", "orders"},
	    {"cdc.UPDATE.sales.Orders", CDC_UPDATE, "sales", "Orders"},
	    {"cdc.DELETE._t$1", CDC_DELETE, "public", "_t$1"},
	    {"cdc.*.orders", CDC_ANY, "public", "orders"},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct cdc_name n;
		const char *why = NULL;
		assert_int_equal(cdc_parse_event_type(ok[i].in, &n, &why), 0);
		assert_int_equal(n.ops, ok[i].ops);
		assert_string_equal(n.schema, ok[i].schema);
		assert_string_equal(n.table, ok[i].table);
	}
	static const char *const bad[] = {"cdc.",
	                                  "cdc.INSERT",
	                                  "cdc.INSERT.",
	                                  "cdc.insert.orders",
	                                  "cdc.TRUNCATE.orders",
	                                  "cdc.INSERT.a.b.c",
	                                  "cdc.INSERT..orders",
	                                  "cdc.INSERT.s.",
	                                  "cdc.INSERT.1orders",
	                                  "cdc.INSERT.or-ders",
	                                  "cdc.INSERT.or ders",
	                                  "cdc.INSERT.zmesh_cdc.outbox",
	                                  "cdc.INSERT.pg_catalog.pg_class",
	                                  "cdc.INSERT.information_schema.tables",
	                                  "cdc.INSERT.pg_toast.t",
	                                  "cdc.INSERT.a234567890123456789012345678901234567890123456789012345678901234",
	                                  "CDC.INSERT.orders",
	                                  "cdc.*orders",
	                                  "cdc.INSERT.\"orders\""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cdc_name n;
		const char *why = NULL;
		if (cdc_parse_event_type(bad[i], &n, &why) != -EINVAL || !why)
			fail_msg("%s was accepted", bad[i]);
	}
	struct cdc_name n;
	const char *why;
	assert_int_equal(cdc_parse_event_type("cdc.*.orders", &n, &why), 0);
	assert_true(cdc_matches(&n, "INSERT", "public", "orders") && cdc_matches(&n, "DELETE", "public", "orders"));
	assert_false(cdc_matches(&n, "INSERT", "sales", "orders") || cdc_matches(&n, "INSERT", "public", "order"));
	assert_false(cdc_matches(&n, "TRUNCATE", "public", "orders"));
	assert_int_equal(cdc_parse_event_type("cdc.UPDATE.orders", &n, &why), 0);
	assert_false(cdc_matches(&n, "INSERT", "public", "orders"));

	/* Through the body: no settings, conditions as for any kind; the
	 * type is kept as given. */
	refused(CUSTOM("cdc.INSERT.orders", ",\"config\":{\"x\":1}"), "config.x: unknown key");
	struct zerr err;
	assert_int_equal(create(CUSTOM("cdc.UPDATE.sales.orders",
	                               ",\"conditions\":[{\"field\":\"new.amount\",\"op\":\"gt\",\"value\":100}]"),
	                        &err),
	                 0);
	assert_int_equal(got.type, VT_CDC);
	assert_string_equal(got.event_type, "cdc.UPDATE.sales.orders");
	assert_config("{}");
	refused(CUSTOM("cdc.INSERT.orders.x.y", ""), "event_type: \"cdc.INSERT.orders.x.y\" has more than");
}

static void test_event_bodies(void **state)
{
	struct zerr err = {0};
	const char *type = NULL;
	json_t *data = NULL;
	json_t *b = js("{\"type\":\"order.paid\",\"data\":{\"amount\":5}}");
	assert_int_equal(val_event_body(b, &type, &data, &err), 0);
	assert_string_equal(type, "order.paid");
	assert_int_equal(json_integer_value(json_object_get(data, "amount")), 5);
	json_decref(b);
	b = js("{\"type\":\"a\"}");
	assert_int_equal(val_event_body(b, &type, &data, &err), 0);
	assert_true(json_is_null(data));
	json_decref(b);

	static const char *const invalid[] = {"{}",
	                                      "{\"type\":1}",
	                                      "{\"type\":\"\"}",
	                                      "{\"type\":\"Order\"}",
	                                      "{\"type\":\"custom.order\"}",
	                                      "{\"type\":\"a b\"}",
	                                      "{\"type\":\"a\\u0000b\"}",
	                                      "{\"type\":null,\"data\":1}"};
	for (size_t i = 0; i < sizeof(invalid) / sizeof(*invalid); i++) {
		b = js(invalid[i]);
		memset(&err, 0, sizeof(err));
		if (val_event_body(b, &type, &data, &err) != -ZE_INVALID_EVENT || strncmp(err.msg, "type: ", 6) != 0)
			fail_msg("%s: got \"%s\", want INVALID_EVENT \"type: ...\"", invalid[i], err.msg);
		json_decref(b);
	}
	b = js("{\"type\":\"a\",\"payload\":1}");
	assert_int_equal(val_event_body(b, &type, &data, &err), -ZE_UNKNOWN_FIELD);
	assert_non_null(strstr(err.msg, "payload"));
	json_decref(b);
	b = js("[]");
	assert_int_equal(val_event_body(b, &type, &data, &err), -ZE_BAD_REQUEST);
	json_decref(b);

	const char *why = NULL;
	char longest[VE_TYPE_MAX + 2];
	memset(longest, 'a', VE_TYPE_MAX);
	longest[VE_TYPE_MAX] = '\0';
	assert_true(val_event_type(longest, &why));
	assert_null(why);
	longest[VE_TYPE_MAX] = 'a';
	longest[VE_TYPE_MAX + 1] = '\0';
	assert_false(val_event_type(longest, &why));
	assert_non_null(why);
	assert_true(val_event_trigger_type("custom.order.paid"));
	assert_false(val_event_trigger_type("order.paid"));
	assert_false(val_event_trigger_type("custom."));
}

static void test_whsig_of_stored_config(void **state)
{
	bool is_signed, sync;
	enum whsig_scheme s;
	struct whsig_config wc;
	accepted(HMAC_CFG(",\"prefix\":\"sha256=\",\"encoding\":\"base64\",\"id_header\":\"X-Id\",\"respond\":"
	                  "\"sync\""));
	assert_int_equal(val_trigger_whsig(got.config, &is_signed, &s, &wc, &sync), 0);
	assert_true(is_signed && sync);
	assert_int_equal(s, WHSIG_HMAC);
	assert_string_equal(wc.header, "X-Sig");
	assert_string_equal(wc.prefix, "sha256=");
	assert_int_equal(wc.encoding, WHSIG_BASE64);
	assert_string_equal(wc.id_header, "X-Id");
	assert_null(wc.secrets[0]);

	accepted(WEBHOOK("{\"verify\":\"none\"}"));
	assert_int_equal(val_trigger_whsig(got.config, &is_signed, &s, &wc, &sync), 0);
	assert_false(is_signed || sync);

	json_t *bad = js("{\"verify\":\"md5\"}");
	assert_int_equal(val_trigger_whsig(bad, &is_signed, &s, &wc, &sync), -EINVAL);
	json_decref(bad);
	bad = js("{\"verify\":\"hmac\"}");
	assert_int_equal(val_trigger_whsig(bad, &is_signed, &s, &wc, &sync), -EINVAL);
	json_decref(bad);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_cron_defaults, teardown),
	    cmocka_unit_test_teardown(test_cron_refusals, teardown),
	    cmocka_unit_test_teardown(test_top_level_fields, teardown),
	    cmocka_unit_test_teardown(test_conditions, teardown),
	    cmocka_unit_test_teardown(test_webhook_presets, teardown),
	    cmocka_unit_test_teardown(test_webhook_refusals, teardown),
	    cmocka_unit_test_teardown(test_patch, teardown),
	    cmocka_unit_test_teardown(test_custom, teardown),
	    cmocka_unit_test_teardown(test_cdc, teardown),
	    cmocka_unit_test_teardown(test_event_bodies, teardown),
	    cmocka_unit_test_teardown(test_whsig_of_stored_config, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
