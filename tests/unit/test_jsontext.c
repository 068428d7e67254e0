/* Unit tests: common/jsontext.c - numbers as exact as their values allow,
 * in documents of one kind of real, of both, and with strings that look
 * like the tags it uses inside. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "jsontext.h"

static void expect(json_t *j, size_t flags, const char *want)
{
	char *s = json_dumps_exact(j, flags);
	assert_non_null(s);
	assert_string_equal(s, want);
	/* What it prints reads back to the same values. */
	json_t *back = json_loads(s, JSON_DECODE_ANY, NULL);
	assert_non_null(back);
	assert_true(json_equal(back, j));
	json_decref(back);
	free(s);
	json_decref(j);
}

static void test_short_reals_print_short(void **state)
{
	(void)state;
	expect(json_pack("{s:f, s:f, s:i}", "duration_ms", 6.437, "cpu_ms", 84.163, "n", 3), JSON_COMPACT,
	       "{\"duration_ms\":6.437,\"cpu_ms\":84.163,\"n\":3}");
	expect(json_real(0.5), JSON_ENCODE_ANY, "0.5");
}

static void test_long_reals_keep_every_digit(void **state)
{
	(void)state;
	double third = 0.1 + 0.2;
	expect(json_real(third), JSON_ENCODE_ANY, "0.30000000000000004");
	/* Both kinds in one document, nested. */
	expect(json_pack("{s:f, s:[f, {s:f}]}", "a", 6.437, "b", third, "c", third), JSON_COMPACT,
	       "{\"a\":6.437,\"b\":[0.30000000000000004,{\"c\":0.30000000000000004}]}");
}

static void test_strings_like_the_tags_stay_strings(void **state)
{
	(void)state;
	expect(json_pack("{s:s, s:f}", "s", "\001deadbeefdeadbeef:0\001", "x", 0.1 + 0.2), JSON_COMPACT,
	       "{\"s\":\"\\u0001deadbeefdeadbeef:0\\u0001\",\"x\":0.30000000000000004}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_short_reals_print_short),
	    cmocka_unit_test(test_long_reals_keep_every_digit),
	    cmocka_unit_test(test_strings_like_the_tags_stay_strings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
