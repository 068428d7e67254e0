/* Unit tests: the shapes the API accepts (validate.c) and the one mapping
 * from a failure to a status (errors.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "errors.h"
#include "validate.h"

static const struct tier free_tier = {.name = "free",
                                      .max_timeout_ms = 30000,
                                      .max_memory_mb = 512,
                                      .monthly_invocations = 100000,
                                      .concurrency = 4,
                                      .db_connections = 5,
                                      .egress_requests = 5,
                                      .egress_bytes = 10 << 20,
                                      .egress_connect_timeout_ms = 5000,
                                      .emits_per_invocation = 10};

static json_t *js(const char *text)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
	assert_non_null(j);
	return j;
}

/* The body of the last fn() call: what val_function returns borrows from
 * it. */
static json_t *held;

static int fn(const char *text, bool create, struct val_function *ret, struct zerr *err)
{
	json_decref(held);
	held = js(text);
	return val_function(held, &free_tier, 1000, create, ret, err);
}

static int release_held(void **state)
{
	json_decref(held);
	held = NULL;
	return 0;
}

static void test_uuid_and_slug(void **state)
{
	assert_true(val_is_uuid("0f0e0d0c-0b0a-4908-8706-050403020100"));
	assert_false(val_is_uuid("0f0e0d0c-0b0a-4908-8706-05040302010"));
	assert_false(val_is_uuid("0f0e0d0c+0b0a-4908-8706-050403020100"));
	assert_false(val_is_uuid(NULL));
	assert_true(val_slug("a"));
	assert_true(val_slug("my-fn-2"));
	assert_false(val_slug(""));
	assert_false(val_slug("-a"));
	assert_false(val_slug("a-"));
	assert_false(val_slug("A"));
	assert_false(val_slug("a_b"));
	assert_false(val_slug("0f0e0d0c-0b0a-4908-8706-050403020100")); /* shaped like an id */
	char big[80];
	memset(big, 'a', 64);
	big[64] = '\0';
	assert_false(val_slug(big));
	big[63] = '\0';
	assert_true(val_slug(big));
}

static void test_slugify(void **state)
{
	char out[64];
	val_slugify("My First Function!", out, sizeof(out));
	assert_string_equal(out, "my-first-function");
	val_slugify("  --  ", out, sizeof(out));
	assert_string_equal(out, "");
	val_slugify("Ünïcode name", out, sizeof(out));
	assert_string_equal(out, "n-code-name");
	char longname[200];
	memset(longname, 'x', 62);
	strcpy(longname + 62, " y z");
	val_slugify(longname, out, sizeof(out));
	assert_true(strlen(out) <= 63);
	assert_true(val_slug(out)); /* never ends in a dash when cut */
}

static void test_function_create_and_change(void **state)
{
	struct val_function in;
	struct zerr err = {0};
	assert_int_equal(fn("{\"name\":\"a\",\"language\":\"python\",\"code\":\"x\"}", true, &in, &err), 0);
	assert_string_equal(in.name, "a");
	assert_int_equal(in.timeout_ms, -1);
	assert_int_equal(in.memory_mb, -1);
	assert_null(in.env);
	assert_int_equal(fn("{\"name\":\"a\",\"code\":\"x\"}", true, &in, &err), -ZE_BAD_REQUEST);
	assert_int_equal(fn("{\"memory_mb\":128}", false, &in, &err), 0);
	assert_int_equal(in.memory_mb, 128);
	assert_int_equal(fn("{\"bogus\":1}", false, &in, &err), -ZE_UNKNOWN_FIELD);
	assert_non_null(strstr(err.msg, "bogus"));
	assert_int_equal(fn("[]", false, &in, &err), -ZE_BAD_REQUEST);
	assert_int_equal(fn("{\"name\":5}", false, &in, &err), -ZE_BAD_REQUEST);
	assert_int_equal(fn("{\"name\":\"\"}", false, &in, &err), -ZE_INVALID_NAME);
	assert_int_equal(fn("{\"slug\":\"Bad\"}", false, &in, &err), -ZE_INVALID_SLUG);
	assert_int_equal(fn("{\"language\":\"ruby\"}", false, &in, &err), -ZE_INVALID_LANGUAGE);
	assert_int_equal(fn("{\"entry_point\":\"1x\"}", false, &in, &err), -ZE_INVALID_ENTRY_POINT);
	assert_int_equal(fn("{\"entry_point\":\"a.b\"}", false, &in, &err), -ZE_INVALID_ENTRY_POINT);
	assert_int_equal(fn("{\"entry_point\":\"$main_1\"}", false, &in, &err), 0);
	assert_int_equal(fn("{\"code\":\"\"}", false, &in, &err), -ZE_INVALID_CODE);
	char big[1100] = "{\"code\":\"";
	memset(big + 9, 'x', 1001);
	strcpy(big + 1010, "\"}");
	assert_int_equal(fn(big, false, &in, &err), -ZE_INVALID_CODE); /* over max_code_bytes */
}

static void test_function_limits_follow_the_tier(void **state)
{
	struct val_function in;
	struct zerr err = {0};
	assert_int_equal(fn("{\"timeout_ms\":30000,\"memory_mb\":512}", false, &in, &err), 0);
	assert_int_equal(fn("{\"timeout_ms\":30001}", false, &in, &err), -ZE_INVALID_TIMEOUT);
	assert_non_null(strstr(err.msg, "free tier"));
	assert_int_equal(fn("{\"timeout_ms\":0}", false, &in, &err), -ZE_INVALID_TIMEOUT);
	assert_int_equal(fn("{\"timeout_ms\":1.5}", false, &in, &err), -ZE_INVALID_TIMEOUT);
	assert_int_equal(fn("{\"memory_mb\":513}", false, &in, &err), -ZE_INVALID_MEMORY);
	assert_int_equal(fn("{\"memory_mb\":63}", false, &in, &err), -ZE_INVALID_MEMORY);
	assert_int_equal(fn("{\"memory_mb\":-1}", false, &in, &err), -ZE_INVALID_MEMORY);
	assert_int_equal(fn("{\"memory_mb\":\"128\"}", false, &in, &err), -ZE_INVALID_MEMORY);
}

static int env(const char *text)
{
	json_t *j = js(text);
	struct zerr err = {0};
	int r = val_env(j, &err);
	json_decref(j);
	return r;
}

static void test_env(void **state)
{
	assert_int_equal(env("{}"), 0);
	assert_int_equal(env("{\"API_KEY\":\"x\",\"_a1\":\"\"}"), 0);
	assert_int_equal(env("[]"), -ZE_INVALID_ENV_VARS);
	assert_int_equal(env("{\"1A\":\"x\"}"), -ZE_INVALID_ENV_VARS);
	assert_int_equal(env("{\"A-B\":\"x\"}"), -ZE_INVALID_ENV_VARS);
	assert_int_equal(env("{\"A\":1}"), -ZE_INVALID_ENV_VARS);
	assert_int_equal(env("{\"NODE_OPTIONS\":\"x\"}"), -ZE_RESERVED_ENV_VAR);
	assert_int_equal(env("{\"ld_preload\":\"x\"}"), -ZE_RESERVED_ENV_VAR);
	assert_int_equal(env("{\"PythonPath\":\"x\"}"), -ZE_RESERVED_ENV_VAR);
	assert_int_equal(env("{\"JWT_SECRET_KEY\":\"x\"}"), -ZE_RESERVED_ENV_VAR);
	assert_int_equal(env("{\"PGPASSWORD\":\"x\"}"), -ZE_RESERVED_ENV_VAR);
	/* 65 names is one too many */
	char many[65 * 16 + 8] = "{";
	size_t n = 1;
	for (int i = 0; i < 65; i++)
		n += (size_t)snprintf(many + n, sizeof(many) - n, "%s\"V%d\":\"\"", i ? "," : "", i);
	strcpy(many + n, "}");
	assert_int_equal(env(many), -ZE_INVALID_ENV_VARS);
}

static void test_project_and_users(void **state)
{
	struct tiers tiers = {.n = 2};
	tiers.t[0] = free_tier;
	tiers.t[1] = (struct tier){.name = "pro",
	                           .max_timeout_ms = 300000,
	                           .max_memory_mb = 1024,
	                           .monthly_invocations = 1000000,
	                           .concurrency = 16,
	                           .db_connections = 20,
	                           .egress_requests = 25,
	                           .egress_bytes = 100 << 20,
	                           .egress_connect_timeout_ms = 10000,
	                           .emits_per_invocation = 100};
	struct val_project p;
	struct zerr err = {0};
	json_t *j = js("{\"name\":\"My App\"}");
	assert_int_equal(val_project(j, &tiers, true, &p, &err), 0);
	assert_string_equal(p.slug, "my-app");
	assert_null(p.tier);
	json_decref(j);
	j = js("{\"name\":\"x\",\"tier\":\"platinum\"}");
	assert_int_equal(val_project(j, &tiers, true, &p, &err), -ZE_INVALID_TIER);
	json_decref(j);
	j = js("{\"name\":\"x\",\"tier\":\"pro\"}");
	assert_int_equal(val_project(j, &tiers, false, &p, &err), 0);
	assert_string_equal(p.tier, "pro");
	json_decref(j);
	j = js("{\"slug\":\"x\"}");
	assert_int_equal(val_project(j, &tiers, false, &p, &err), -ZE_UNKNOWN_FIELD); /* slugs do not change */
	json_decref(j);
	j = js("{\"name\":\"!!!\"}");
	assert_int_equal(val_project(j, &tiers, true, &p, &err), -ZE_INVALID_SLUG);
	json_decref(j);

	const char *email, *password;
	bool admin;
	j = js("{\"email\":\"a@b\",\"password\":\"correct-horse\",\"is_admin\":true}");
	assert_int_equal(val_new_user(j, &email, &password, &admin, &err), 0);
	assert_true(admin);
	json_decref(j);
	j = js("{\"email\":\"a@b\",\"password\":\"123456789012\"}"); /* one kind */
	assert_int_equal(val_new_user(j, &email, &password, &admin, &err), -ZE_INVALID_PASSWORD);
	json_decref(j);
	j = js("{\"email\":\"@b\",\"password\":\"correct-horse\"}");
	assert_int_equal(val_new_user(j, &email, &password, &admin, &err), -ZE_INVALID_EMAIL);
	json_decref(j);
	j = js("{\"email\":\"a@b\",\"password\":\"correct-horse\",\"is_admin\":\"yes\"}");
	assert_int_equal(val_new_user(j, &email, &password, &admin, &err), -ZE_BAD_REQUEST);
	json_decref(j);
	j = js("{\"email\":\"a@b\",\"password\":\"\"}");
	assert_int_equal(val_login(j, &email, &password, &err), -ZE_BAD_REQUEST);
	json_decref(j);
}

static void test_password_rule(void **state)
{
	struct zerr err = {0};
	/* At least 12 characters (not bytes), two kinds, not the email. */
	assert_int_equal(val_password("correct-horse", "a@b.test", &err), 0);
	assert_int_equal(val_password("Abcdefghijkl", NULL, &err), 0);
	assert_int_equal(val_password("abcdefgh1234", NULL, &err), 0);
	assert_int_equal(val_password("short-7!", NULL, &err), -ZE_INVALID_PASSWORD);
	assert_string_equal(err.msg, VAL_PASSWORD_RULE);
	assert_int_equal(val_password("abcdefghijkl", NULL, &err), -ZE_INVALID_PASSWORD);
	assert_int_equal(val_password("123456789012", NULL, &err), -ZE_INVALID_PASSWORD);
	assert_int_equal(val_password("ABCDEFGHIJKLMN", NULL, &err), -ZE_INVALID_PASSWORD);
	/* eleven characters (21 bytes), then twelve */
	assert_int_equal(val_password("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	                              "1",
	                              NULL, &err),
	                 -ZE_INVALID_PASSWORD);
	assert_int_equal(
	    val_password("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	                 "1",
	                 NULL, &err),
	    0);
	assert_int_equal(val_password("Alice@Example.test", "alice@example.test", &err), -ZE_INVALID_PASSWORD);
	assert_int_equal(val_password("bad-utf8-\xff\xfe"
	                              "-xx",
	                              NULL, &err),
	                 -ZE_INVALID_PASSWORD);
	assert_int_equal(val_password(NULL, NULL, &err), -ZE_INVALID_PASSWORD);

	const char *cur, *nw;
	json_t *j = js("{\"current_password\":\"old\",\"new_password\":\"correct-horse\"}");
	assert_int_equal(val_password_change(j, &cur, &nw, &err), 0);
	assert_string_equal(cur, "old");
	assert_string_equal(nw, "correct-horse");
	json_decref(j);
	j = js("{\"current_password\":\"\",\"new_password\":\"correct-horse\"}");
	assert_int_equal(val_password_change(j, &cur, &nw, &err), -ZE_BAD_REQUEST);
	json_decref(j);
	j = js("{\"current_password\":\"old\"}");
	assert_int_equal(val_password_change(j, &cur, &nw, &err), -ZE_INVALID_PASSWORD);
	json_decref(j);
	j = js("{\"current_password\":\"old\",\"new_password\":\"x\",\"extra\":1}");
	assert_int_equal(val_password_change(j, &cur, &nw, &err), -ZE_UNKNOWN_FIELD);
	json_decref(j);
}

static void test_error_table(void **state)
{
	struct ze_reply rp;
	/* Every domain code has an entry with a status of its class. */
	for (int c = ZE_BASE; c < ZE_END; c++) {
		errors_lookup(-c, &rp);
		assert_non_null(rp.code);
		assert_true(rp.status >= 400 && rp.status < 600);
		assert_null(rp.message); /* the domain message is the client's */
	}
	errors_lookup(-ZE_NOT_FOUND, &rp);
	assert_int_equal(rp.status, 404);
	errors_lookup(-ZE_RATE_LIMITED, &rp);
	assert_int_equal(rp.status, 429);
	assert_string_equal(rp.retry_after, "1");
	errors_lookup(-ZE_QUOTA_EXCEEDED, &rp);
	assert_string_equal(rp.retry_after, "3600");
	/* Internal failures never carry their own message out. */
	errors_lookup(-EEXIST, &rp);
	assert_int_equal(rp.status, 409);
	assert_non_null(rp.message);
	errors_lookup(-EIO, &rp);
	assert_int_equal(rp.status, 500);
	assert_string_equal(rp.code, "INTERNAL");
	assert_non_null(rp.message);
	errors_lookup(-ENOMEM, &rp);
	assert_int_equal(rp.status, 500);
	errors_lookup(-ECONNRESET, &rp);
	assert_int_equal(rp.status, 503);
	errors_lookup(-ETIMEDOUT, &rp);
	assert_int_equal(rp.status, 503);
	assert_non_null(rp.retry_after);
	/* An out-of-range code is internal, not a crash. */
	errors_lookup(-(ZE_END + 5), &rp);
	assert_int_equal(rp.status, 500);
	errors_lookup(0, &rp);
	assert_int_equal(rp.status, 500);
	assert_int_equal(errors_outcome_status(EXEC_SUCCESS), 200);
	assert_int_equal(errors_outcome_status(EXEC_TIMEOUT), 504);
	assert_int_equal(errors_outcome_status(EXEC_OOM), 507);
	assert_int_equal(errors_outcome_status(EXEC_BAD_RESULT), 502);
	assert_int_equal(errors_outcome_status(EXEC_SANDBOX_ERROR), 500);
	assert_string_equal(errors_outcome_code(EXEC_FUNCTION_ERROR), "FUNCTION_ERROR");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_uuid_and_slug),
	    cmocka_unit_test(test_slugify),
	    cmocka_unit_test_teardown(test_function_create_and_change, release_held),
	    cmocka_unit_test_teardown(test_function_limits_follow_the_tier, release_held),
	    cmocka_unit_test(test_env),
	    cmocka_unit_test(test_project_and_users),
	    cmocka_unit_test(test_password_rule),
	    cmocka_unit_test(test_error_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
