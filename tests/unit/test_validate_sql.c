/* Unit tests: supervisor/validate_sql.c - the body of POST
 * /projects/{pid}/sql: its fields, its bounds, and the text each parameter
 * becomes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "validate_sql.h"

static int check(const char *text, struct val_sql *out, struct zerr *err)
{
	json_error_t jerr;
	json_t *body = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	assert_non_null(body);
	memset(err, 0, sizeof(*err));
	int r = val_sql_body(body, out, err);
	if (r == 0) {
		/* sql borrows from the body: keep a copy for the test */
		out->sql = strdup(out->sql);
	}
	json_decref(body);
	return r;
}

static void test_accepts(void **state)
{
	(void)state;
	struct val_sql v = {0};
	struct zerr err;
	assert_int_equal(check("{\"sql\": \"SELECT 1; SELECT 2\"}", &v, &err), 0);
	assert_string_equal(v.sql, "SELECT 1; SELECT 2");
	assert_false(v.has_params);
	assert_int_equal(v.n_params, 0);
	free((char *)v.sql);
	val_sql_done(&v);

	assert_int_equal(check("{\"sql\": \"SELECT 1\", \"params\": null}", &v, &err), 0);
	assert_false(v.has_params);
	free((char *)v.sql);
	val_sql_done(&v);

	assert_int_equal(check("{\"sql\": \"SELECT $1\", \"params\": []}", &v, &err), 0);
	assert_true(v.has_params);
	assert_int_equal(v.n_params, 0);
	free((char *)v.sql);
	val_sql_done(&v);

	assert_int_equal(
	    check("{\"sql\": \"x\", \"params\": [\"a'b\", 42, -7, 0.5, true, false, null, 1e300]}", &v, &err), 0);
	assert_int_equal(v.n_params, 8);
	assert_string_equal(v.params[0], "a'b");
	assert_string_equal(v.params[1], "42");
	assert_string_equal(v.params[2], "-7");
	assert_string_equal(v.params[3], "0.5");
	assert_string_equal(v.params[4], "true");
	assert_string_equal(v.params[5], "false");
	assert_null(v.params[6]);
	assert_float_equal(strtod(v.params[7], NULL), 1e300, 0);
	free((char *)v.sql);
	val_sql_done(&v);
	val_sql_done(&v); /* twice is harmless */
}

static void test_refuses(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		int code;
		const char *msg;
	} cases[] = {
	    {"[]", -ZE_BAD_REQUEST, "want a JSON object"},
	    {"{\"sql\": \"x\", \"query\": 1}", -ZE_UNKNOWN_FIELD, "unknown field \"query\""},
	    {"{}", -ZE_BAD_REQUEST, "sql: required"},
	    {"{\"sql\": 5}", -ZE_BAD_REQUEST, "sql: want a string"},
	    {"{\"sql\": \"\"}", -ZE_BAD_REQUEST, "sql: is empty"},
	    {"{\"sql\": \"a\\u0000b\"}", -ZE_BAD_REQUEST, "sql: contains a NUL byte"},
	    {"{\"sql\": \"x\", \"params\": {}}", -ZE_BAD_REQUEST, "params: want an array"},
	    {"{\"sql\": \"x\", \"params\": [[1]]}", -ZE_BAD_REQUEST, "params[0]: want a string"},
	    {"{\"sql\": \"x\", \"params\": [1, {\"a\": 1}]}", -ZE_BAD_REQUEST, "params[1]: want a string"},
	    {"{\"sql\": \"x\", \"params\": [\"a\\u0000\"]}", -ZE_BAD_REQUEST, "params[0]: contains a NUL byte"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct val_sql v = {.sql = (const char *)1};
		struct zerr err;
		assert_int_equal(check(cases[i].body, &v, &err), cases[i].code);
		assert_non_null(strstr(err.msg, cases[i].msg));
		assert_ptr_equal(v.sql, (const char *)1); /* untouched */
	}
}

static void test_bounds(void **state)
{
	(void)state;
	struct val_sql v = {0};
	struct zerr err;
	json_t *body = json_object();
	char *big = malloc(VS_SQL_MAX + 2);
	assert_non_null(big);
	memset(big, 'x', VS_SQL_MAX + 1);
	big[VS_SQL_MAX + 1] = '\0';
	json_object_set_new(body, "sql", json_string(big));
	assert_int_equal(val_sql_body(body, &v, &err), -ZE_BAD_REQUEST);
	big[VS_SQL_MAX] = '\0';
	json_object_set_new(body, "sql", json_string(big));
	assert_int_equal(val_sql_body(body, &v, &err), 0);
	val_sql_done(&v);
	free(big);
	json_t *params = json_array();
	for (int i = 0; i < VS_PARAMS_MAX; i++)
		json_array_append_new(params, json_integer(i));
	json_object_set_new(body, "sql", json_string("SELECT 1"));
	json_object_set(body, "params", params);
	assert_int_equal(val_sql_body(body, &v, &err), 0);
	assert_int_equal(v.n_params, VS_PARAMS_MAX);
	val_sql_done(&v);
	json_array_append_new(params, json_null());
	assert_int_equal(val_sql_body(body, &v, &err), -ZE_BAD_REQUEST);
	json_decref(params);
	json_decref(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accepts),
	    cmocka_unit_test(test_refuses),
	    cmocka_unit_test(test_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
