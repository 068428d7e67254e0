/* Unit tests: trigger conditions (conditions.c), their validation at create
 * time and their meaning at dispatch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "conditions.h"
#include "errors.h"

static json_t *js(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!j)
		fail_msg("%s: %s", text, e.text);
	return j;
}

/* cond_validate on text: the code, and the message in msg. */
static int validate(const char *text, char *msg, size_t size)
{
	json_t *c = js(text);
	struct zerr err = {0};
	int r = cond_validate(c, &err);
	snprintf(msg, size, "%s", err.msg);
	json_decref(c);
	return r;
}

#define assert_valid(text)                               \
	do {                                             \
		char m_[768];                            \
		int r_ = validate(text, m_, sizeof(m_)); \
		if (r_ != 0)                             \
			fail_msg("%s: %s", text, m_);    \
	} while (0)

#define assert_invalid(text, part)                                                 \
	do {                                                                       \
		char m_[768];                                                      \
		assert_int_equal(validate(text, m_, sizeof(m_)), -ZE_BAD_REQUEST); \
		if (!strstr(m_, part))                                             \
			fail_msg("%s: \"%s\" lacks \"%s\"", text, m_, part);       \
	} while (0)

/* One condition against an event. */
static bool match1(const char *field, const char *op, const char *value, const char *event)
{
	char buf[1024];
	snprintf(buf, sizeof(buf), "[{\"field\":\"%s\",\"op\":\"%s\",\"value\":%s}]", field, op, value);
	json_t *c = js(buf), *e = js(event);
	struct zerr err = {0};
	assert_int_equal(cond_validate(c, &err), 0);
	bool m = cond_match(c, e);
	json_decref(c);
	json_decref(e);
	return m;
}

static void test_validate_shape(void **state)
{
	(void)state;
	assert_valid("[]");
	assert_valid("[{\"field\":\"body.amount\",\"op\":\"gt\",\"value\":100}]");
	assert_valid(
	    "[{\"field\":\"a\",\"op\":\"eq\",\"value\":null},{\"field\":\"b\",\"op\":\"in\",\"value\":[1,\"x\"]},"
	    "{\"field\":\"c\",\"op\":\"contains\",\"value\":{\"k\":1}},{\"field\":\"d\",\"op\":\"lte\",\"value\":\"m\"}"
	    "]");
	assert_invalid("{}", "conditions: want an array");
	assert_invalid("null", "want an array");
	assert_invalid("[1]", "conditions[0]: want an object");
	assert_invalid("[{\"field\":\"a\",\"op\":\"eq\"}]", "conditions[0].value: missing");
	assert_invalid("[{\"op\":\"eq\",\"value\":1}]", "conditions[0].field: missing");
	assert_invalid("[{\"field\":\"a\",\"value\":1}]", "conditions[0].op: missing");
	assert_invalid("[{\"field\":\"a\",\"op\":\"eq\",\"value\":1,\"x\":2}]", "conditions[0]: unknown key \"x\"");
	assert_invalid("[{\"field\":1,\"op\":\"eq\",\"value\":1}]", "conditions[0].field: want a string");
	assert_invalid("[{\"field\":\"a\",\"op\":1,\"value\":1}]", "conditions[0].op: want a string");

	/* 20 conditions are fine, 21 are not. */
	char buf[4096];
	for (int n = 20; n <= 21; n++) {
		strcpy(buf, "[");
		for (int i = 0; i < n; i++)
			strcat(buf, i ? ",{\"field\":\"a\",\"op\":\"eq\",\"value\":1}"
			              : "{\"field\":\"a\",\"op\":\"eq\",\"value\":1}");
		strcat(buf, "]");
		if (n == 20)
			assert_valid(buf);
		else
			assert_invalid(buf, "21 conditions, at most 20");
	}
}

static void test_validate_op_and_value(void **state)
{
	(void)state;
	assert_invalid("[{\"field\":\"a\",\"op\":\"eq\",\"value\":1},{\"field\":\"a\",\"op\":\"eq\",\"value\":1},"
	               "{\"field\":\"a\",\"op\":\"like\",\"value\":1}]",
	               "conditions[2].op: \"like\" is not one of eq, neq, gt, gte, lt, lte, contains, in");
	assert_invalid("[{\"field\":\"a\",\"op\":\"EQ\",\"value\":1}]", "conditions[0].op: \"EQ\" is not one of");
	assert_invalid("[{\"field\":\"a\",\"op\":\"in\",\"value\":1}]", "conditions[0].value: op in wants an array");
	assert_invalid("[{\"field\":\"a\",\"op\":\"in\",\"value\":\"abc\"}]", "op in wants an array");
	const char *ord[] = {"gt", "gte", "lt", "lte"};
	for (size_t i = 0; i < 4; i++) {
		char b[256];
		snprintf(b, sizeof(b), "[{\"field\":\"a\",\"op\":\"%s\",\"value\":[1]}]", ord[i]);
		assert_invalid(b, "wants a number or a string");
		snprintf(b, sizeof(b), "[{\"field\":\"a\",\"op\":\"%s\",\"value\":null}]", ord[i]);
		assert_invalid(b, "wants a number or a string");
		snprintf(b, sizeof(b), "[{\"field\":\"a\",\"op\":\"%s\",\"value\":true}]", ord[i]);
		assert_invalid(b, "wants a number or a string");
		snprintf(b, sizeof(b), "[{\"field\":\"a\",\"op\":\"%s\",\"value\":1.5}]", ord[i]);
		assert_valid(b);
		snprintf(b, sizeof(b), "[{\"field\":\"a\",\"op\":\"%s\",\"value\":\"2026\"}]", ord[i]);
		assert_valid(b);
	}
}

static void test_validate_field(void **state)
{
	(void)state;
	assert_valid("[{\"field\":\"new.amount\",\"op\":\"eq\",\"value\":1}]");
	assert_valid("[{\"field\":\"items.0.id\",\"op\":\"eq\",\"value\":1}]");
	assert_valid("[{\"field\":\"A-z_9.b\",\"op\":\"eq\",\"value\":1}]");
	assert_valid("[{\"field\":\"a.b.c.d.e.f.g.h\",\"op\":\"eq\",\"value\":1}]");
	assert_invalid("[{\"field\":\"a.b.c.d.e.f.g.h.i\",\"op\":\"eq\",\"value\":1}]", "more than 8 segments");
	assert_invalid("[{\"field\":\"\",\"op\":\"eq\",\"value\":1}]",
	               "conditions[0].field: \"\" has an empty segment");
	assert_invalid("[{\"field\":\"a..b\",\"op\":\"eq\",\"value\":1}]", "an empty segment");
	assert_invalid("[{\"field\":\".a\",\"op\":\"eq\",\"value\":1}]", "an empty segment");
	assert_invalid("[{\"field\":\"a.\",\"op\":\"eq\",\"value\":1}]", "an empty segment");
	assert_invalid("[{\"field\":\"a b\",\"op\":\"eq\",\"value\":1}]", "a character outside");
	assert_invalid("[{\"field\":\"a[0]\",\"op\":\"eq\",\"value\":1}]", "a character outside");
	assert_invalid("[{\"field\":\"caf\\u00e9\",\"op\":\"eq\",\"value\":1}]", "a character outside");
	assert_invalid("[{\"field\":\"a\\u0000b\",\"op\":\"eq\",\"value\":1}]", "NUL");

	char seg[80], b[256];
	memset(seg, 'x', 64);
	seg[64] = '\0';
	snprintf(b, sizeof(b), "[{\"field\":\"a.%s\",\"op\":\"eq\",\"value\":1}]", seg);
	assert_valid(b);
	seg[64] = 'x';
	seg[65] = '\0';
	snprintf(b, sizeof(b), "[{\"field\":\"a.%s\",\"op\":\"eq\",\"value\":1}]", seg);
	assert_invalid(b, "longer than 64 bytes");
}

static const char *ev = "{\"body\":{\"amount\":150,\"price\":9.5,\"type\":\"charge\",\"currency\":\"EUR\","
                        "\"tags\":[\"vip\",\"eu\",3],\"items\":[{\"id\":7},{\"id\":\"b\"}],\"flag\":true,"
                        "\"none\":null,\"obj\":{\"x\":1,\"y\":[1,2]},\"0\":\"zero\"}}";

static void test_paths(void **state)
{
	(void)state;
	assert_true(match1("body.amount", "eq", "150", ev));
	assert_true(match1("body.items.0.id", "eq", "7", ev));
	assert_true(match1("body.items.1.id", "eq", "\"b\"", ev));
	assert_true(match1("body.tags.2", "eq", "3", ev));
	/* A numeric segment on an object is a key. */
	assert_true(match1("body.0", "eq", "\"zero\"", ev));
	/* Missing: no key, out of range, through a scalar, a non-numeric index. */
	assert_false(match1("body.nope", "eq", "1", ev));
	assert_false(match1("body.items.2.id", "eq", "7", ev));
	assert_false(match1("body.items.9999999999.id", "eq", "7", ev));
	assert_false(match1("body.amount.x", "eq", "1", ev));
	assert_false(match1("body.items.first.id", "eq", "7", ev));
	assert_false(match1("body.items.-1.id", "eq", "7", ev));
	/* A missing field never matches, not even neq or an empty in. */
	assert_false(match1("body.nope", "neq", "1", ev));
	assert_false(match1("body.nope", "neq", "null", ev));
	assert_false(match1("nope", "in", "[null]", ev));
	/* null is present, not missing. */
	assert_true(match1("body.none", "eq", "null", ev));
	assert_true(match1("body.none", "neq", "0", ev));
	/* The event itself need not be an object; paths then miss. */
	assert_false(match1("a", "eq", "1", "[1]"));
	assert_true(match1("0", "eq", "1", "[1]"));
	assert_false(match1("a", "eq", "1", "5"));
}

static void test_eq_neq(void **state)
{
	(void)state;
	assert_true(match1("body.amount", "eq", "150.0", ev));
	assert_true(match1("body.price", "eq", "9.5", ev));
	assert_false(match1("body.amount", "eq", "\"150\"", ev));
	assert_true(match1("body.amount", "neq", "\"150\"", ev));
	assert_false(match1("body.amount", "neq", "150.0", ev));
	assert_true(match1("body.type", "eq", "\"charge\"", ev));
	assert_false(match1("body.type", "eq", "\"Charge\"", ev));
	assert_true(match1("body.flag", "eq", "true", ev));
	assert_false(match1("body.flag", "eq", "1", ev));
	/* Deep equality, numbers numerically at any depth. */
	assert_true(match1("body.obj", "eq", "{\"y\":[1.0,2],\"x\":1}", ev));
	assert_false(match1("body.obj", "eq", "{\"y\":[1,2]}", ev));
	assert_false(match1("body.obj", "eq", "{\"y\":[1,2],\"x\":1,\"z\":0}", ev));
	assert_true(match1("body.obj.y", "eq", "[1,2.0]", ev));
	assert_false(match1("body.obj.y", "eq", "[2,1]", ev));
	assert_false(match1("body.obj.y", "eq", "[1,2,3]", ev));
	assert_true(match1("body.obj.y", "neq", "[1]", ev));
	/* Large integers compare exactly, not through a double. */
	assert_false(match1("n", "eq", "9007199254740993", "{\"n\":9007199254740992}"));
	assert_true(match1("n", "eq", "9007199254740993", "{\"n\":9007199254740993}"));
}

static void test_ordering(void **state)
{
	(void)state;
	assert_true(match1("body.amount", "gt", "100", ev));
	assert_false(match1("body.amount", "gt", "150", ev));
	assert_true(match1("body.amount", "gte", "150", ev));
	assert_true(match1("body.amount", "gte", "149.99", ev));
	assert_true(match1("body.amount", "lt", "150.5", ev));
	assert_false(match1("body.amount", "lt", "150", ev));
	assert_true(match1("body.amount", "lte", "150.0", ev));
	assert_true(match1("body.price", "gt", "9", ev));
	assert_true(match1("body.price", "lt", "10", ev));
	assert_true(match1("n", "lt", "-1", "{\"n\":-2}"));
	/* Type mismatches never match, either way round. */
	assert_false(match1("body.amount", "gt", "\"1\"", ev));
	assert_false(match1("body.amount", "lt", "\"1\"", ev));
	assert_false(match1("body.type", "gt", "1", ev));
	assert_false(match1("body.type", "lte", "1", ev));
	assert_false(match1("body.flag", "gte", "0", ev));
	assert_false(match1("body.none", "lte", "0", ev));
	assert_false(match1("body.tags", "gt", "0", ev));
	/* Strings by bytes: upper case before lower, a prefix first. */
	assert_true(match1("body.type", "gt", "\"cha\"", ev));
	assert_true(match1("body.type", "lt", "\"chargf\"", ev));
	assert_true(match1("body.type", "gte", "\"charge\"", ev));
	assert_true(match1("body.type", "lte", "\"charge\"", ev));
	assert_false(match1("body.type", "lt", "\"charge\"", ev));
	assert_true(match1("body.type", "gt", "\"Charge\"", ev));
	assert_true(match1("d", "gte", "\"2026-01-01\"", "{\"d\":\"2026-03-04T10:00:00Z\"}"));
	assert_false(match1("d", "lt", "\"2026-01-01\"", "{\"d\":\"2026-03-04T10:00:00Z\"}"));
	/* Bytes, not characters: é (c3 a9) sorts after z. */
	assert_true(match1("s", "gt", "\"z\"", "{\"s\":\"\\u00e9\"}"));
}

static void test_contains_in(void **state)
{
	(void)state;
	assert_true(match1("body.type", "contains", "\"har\"", ev));
	assert_true(match1("body.type", "contains", "\"\"", ev));
	assert_true(match1("body.type", "contains", "\"charge\"", ev));
	assert_false(match1("body.type", "contains", "\"charges\"", ev));
	assert_false(match1("body.type", "contains", "\"HAR\"", ev));
	assert_false(match1("body.type", "contains", "1", ev));
	assert_true(match1("body.tags", "contains", "\"vip\"", ev));
	assert_true(match1("body.tags", "contains", "3.0", ev));
	assert_false(match1("body.tags", "contains", "\"vi\"", ev));
	assert_false(match1("body.tags", "contains", "[\"vip\"]", ev));
	assert_true(match1("body.items", "contains", "{\"id\":7.0}", ev));
	/* Numbers, objects, booleans contain nothing. */
	assert_false(match1("body.amount", "contains", "1", ev));
	assert_false(match1("body.obj", "contains", "\"x\"", ev));
	assert_false(match1("body.flag", "contains", "true", ev));

	assert_true(match1("body.currency", "in", "[\"USD\",\"EUR\"]", ev));
	assert_false(match1("body.currency", "in", "[\"USD\",\"eur\"]", ev));
	assert_false(match1("body.currency", "in", "[]", ev));
	assert_true(match1("body.amount", "in", "[1,150.0]", ev));
	assert_false(match1("body.amount", "in", "[\"150\"]", ev));
	assert_true(match1("body.obj.y", "in", "[[1,2],[3]]", ev));
	assert_true(match1("body.none", "in", "[null]", ev));
}

static void test_and(void **state)
{
	(void)state;
	json_t *e = js(ev);
	json_t *c = js("[{\"field\":\"body.amount\",\"op\":\"gt\",\"value\":100},"
	               "{\"field\":\"body.currency\",\"op\":\"eq\",\"value\":\"EUR\"}]");
	assert_true(cond_match(c, e));
	json_t *d = js("[{\"field\":\"body.amount\",\"op\":\"gt\",\"value\":100},"
	               "{\"field\":\"body.currency\",\"op\":\"eq\",\"value\":\"USD\"}]");
	assert_false(cond_match(d, e));
	json_t *empty = js("[]");
	assert_true(cond_match(empty, e));
	/* Not validated: never a crash, never a match of the broken part. */
	json_t *bad = js("[{\"field\":\"body.amount\",\"op\":\"like\",\"value\":1}]");
	assert_false(cond_match(bad, e));
	json_t *bad2 = js("[5]");
	assert_false(cond_match(bad2, e));
	json_t *bad3 = js("[{\"field\":\"body.amount\",\"op\":\"in\",\"value\":150}]");
	assert_false(cond_match(bad3, e));
	assert_false(cond_match(NULL, e));
	assert_false(cond_match(c, NULL));
	json_decref(e);
	json_decref(c);
	json_decref(d);
	json_decref(empty);
	json_decref(bad);
	json_decref(bad2);
	json_decref(bad3);
}

/* A custom event: data is whatever was emitted, null or a scalar as well as
 * an object; a path into it then misses, and a miss is never an error. */
static void test_custom_event(void **state)
{
	(void)state;
	static const char *const base = "{\"trigger\":\"event\",\"type\":\"order.paid\",\"source\":\"api\",\"data\":";
	char e[512];
	snprintf(e, sizeof(e), "%snull}", base);
	assert_false(match1("data.amount", "gt", "1", e));
	assert_false(match1("data.amount", "neq", "1", e));
	assert_true(match1("data", "eq", "null", e));
	assert_true(match1("type", "eq", "\"order.paid\"", e));
	assert_true(match1("source", "in", "[\"api\",\"api_key\"]", e));
	snprintf(e, sizeof(e), "%s\"paid in full\"}", base);
	assert_true(match1("data", "contains", "\"in full\"", e));
	assert_false(match1("data.0", "eq", "\"p\"", e));
	assert_false(match1("data", "gt", "1", e));
	snprintf(e, sizeof(e), "%s{\"amount\":\"250\",\"tags\":[\"vip\"]}}", base);
	assert_false(match1("data.amount", "gte", "100", e));
	assert_false(match1("data.amount", "eq", "250", e));
	assert_true(match1("data.tags", "contains", "\"vip\"", e));
	assert_false(match1("data.tags", "in", "[\"vip\"]", e));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_validate_shape), cmocka_unit_test(test_validate_op_and_value),
	    cmocka_unit_test(test_validate_field), cmocka_unit_test(test_paths),
	    cmocka_unit_test(test_eq_neq),         cmocka_unit_test(test_ordering),
	    cmocka_unit_test(test_contains_in),    cmocka_unit_test(test_and),
	    cmocka_unit_test(test_custom_event),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
