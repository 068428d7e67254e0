/* Tests of exec_parse_result: what a sandbox's result channel means, and
 * exec_code_wants_db, the warm pool's hint. Pure logic. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "result.h"

static struct exec_result parse(const char *s, size_t len, bool truncated)
{
	struct exec_result r = {0};
	assert_int_equal(exec_parse_result(s, len, truncated, &r), 0);
	return r;
}

static const char *error_field(const struct exec_result *r, const char *k)
{
	return json_string_value(json_object_get(r->error, k));
}

static void test_success(void **state)
{
	const char *s = "{\"ok\":true,\"result\":{\"a\":[1,2]}}\n";
	struct exec_result r = parse(s, strlen(s), false);
	assert_int_equal(r.outcome, EXEC_SUCCESS);
	assert_int_equal(json_integer_value(json_array_get(json_object_get(r.result, "a"), 1)), 2);
	assert_null(r.error);
	exec_result_done(&r);
	/* No "result": the function returned nothing, JSON null. */
	r = parse("{\"ok\":true}", 11, false);
	assert_int_equal(r.outcome, EXEC_SUCCESS);
	assert_true(json_is_null(r.result));
	exec_result_done(&r);
}

static void test_function_error_is_bounded(void **state)
{
	size_t n = EXEC_ERROR_NAME_MAX * 3;
	char *name = malloc(n + 1);
	memset(name, 'N', n);
	name[n] = '\0';
	json_t *o =
	    json_pack("{s:b, s:{s:s, s:s, s:i}}", "ok", 0, "error", "name", name, "message", "boom", "stack", 7);
	char *text = json_dumps(o, JSON_COMPACT);
	struct exec_result r = parse(text, strlen(text), false);
	assert_int_equal(r.outcome, EXEC_FUNCTION_ERROR);
	assert_true(strlen(error_field(&r, "name")) <= EXEC_ERROR_NAME_MAX + 3);
	assert_string_equal(error_field(&r, "message"), "boom");
	assert_string_equal(error_field(&r, "stack"), ""); /* not a string: dropped */
	exec_result_done(&r);
	free(text);
	free(name);
	json_decref(o);
	/* "error" not an object: a generic error. */
	r = parse("{\"ok\":false,\"error\":3}", 22, false);
	assert_int_equal(r.outcome, EXEC_FUNCTION_ERROR);
	assert_string_equal(error_field(&r, "name"), "Error");
	exec_result_done(&r);
}

static void test_bad_results(void **state)
{
	static const char *const bad[] = {
	    "",
	    "null",
	    "[1]",
	    "{\"ok\":1}",
	    "{\"result\":1}",
	    "{\"ok\":true,\"ok\":false}", /* duplicate keys: no one meaning */
	    "{\"ok\":true} trailing",
	    "{\"ok\":true",
	    "\xff\xfe",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct exec_result r = parse(bad[i], strlen(bad[i]), false);
		assert_int_equal(r.outcome, EXEC_BAD_RESULT);
		assert_string_equal(error_field(&r, "name"), "BadResult");
		assert_null(r.result);
		exec_result_done(&r);
	}
	/* A NUL inside, or a result cut by the limit. */
	struct exec_result r = parse("{\"ok\":true}\0x", 13, false);
	assert_int_equal(r.outcome, EXEC_BAD_RESULT);
	exec_result_done(&r);
	r = parse("{\"ok\":true}", 11, true);
	assert_int_equal(r.outcome, EXEC_BAD_RESULT);
	exec_result_done(&r);
}

static void test_code_wants_db(void **state)
{
	assert_true(exec_code_wants_db("await zmesh.db.query('select 1')"));
	assert_true(exec_code_wants_db("const { db } = zmesh; db.insert('t', {})"));
	assert_true(exec_code_wants_db("z.db['select']"));
	assert_true(exec_code_wants_db("zmesh.db\n  .query_one('x')"));
	assert_false(exec_code_wants_db("exports.handler = async () => 1"));
	assert_false(exec_code_wants_db("const mydb = 1; mydb.x"));
	assert_false(exec_code_wants_db("return 'db'"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_success),
	    cmocka_unit_test(test_function_error_is_bounded),
	    cmocka_unit_test(test_bad_results),
	    cmocka_unit_test(test_code_wants_db),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
