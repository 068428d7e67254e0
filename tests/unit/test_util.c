/* Unit tests: size and number parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util.h"

static void test_parse_size_suffixes(void **state)
{
	uint64_t v;
	assert_int_equal(util_parse_size("512", UINT64_MAX, &v), 0);
	assert_int_equal(v, 512);
	assert_int_equal(util_parse_size("64K", UINT64_MAX, &v), 0);
	assert_int_equal(v, 64 * 1024);
	assert_int_equal(util_parse_size("256M", UINT64_MAX, &v), 0);
	assert_int_equal(v, 256ull << 20);
	assert_int_equal(util_parse_size("2g", UINT64_MAX, &v), 0);
	assert_int_equal(v, 2ull << 30);
}

static void test_parse_size_rejects(void **state)
{
	uint64_t v = 7;
	const char *bad[] = {"", "M", "-1", "12X", "1MB", " 1", "1 ", "0x10", "+5"};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		assert_int_equal(util_parse_size(bad[i], UINT64_MAX, &v), -EINVAL);
	assert_int_equal(util_parse_size("99999999999999999999", UINT64_MAX, &v), -ERANGE);
	assert_int_equal(util_parse_size("17179869184G", UINT64_MAX, &v), -ERANGE); /* 2^64 bytes */
	assert_int_equal(util_parse_size("2G", 1ull << 30, &v), -ERANGE);
	assert_int_equal(v, 7); /* untouched on failure */
}

static void test_parse_u64_bounds(void **state)
{
	uint64_t v = 0;
	assert_int_equal(util_parse_u64("64", 1, 100, &v), 0);
	assert_int_equal(v, 64);
	assert_int_equal(util_parse_u64("0", 1, 100, &v), -ERANGE);
	assert_int_equal(util_parse_u64("101", 1, 100, &v), -ERANGE);
	assert_int_equal(util_parse_u64("5k", 1, 100, &v), -EINVAL);
	assert_int_equal(util_parse_u64("-3", 0, 100, &v), -EINVAL);
	assert_int_equal(util_parse_u64(NULL, 0, 100, &v), -EINVAL);
}

/* Found by fuzzing (tests/fuzz/corpus/size/regress-overflow-garbage): digits
 * too many for 64 bits followed by garbage were -ERANGE, as if they were a
 * number; text that is not a number is -EINVAL whatever its digits. */
static void test_parse_too_many_digits_then_garbage_is_einval(void **state)
{
	uint64_t v = 7;
	assert_int_equal(util_parse_u64("99999999999999999999x", 0, UINT64_MAX, &v), -EINVAL);
	assert_int_equal(util_parse_u64("18446744073709551616\x02[]:80", 0, UINT64_MAX, &v), -EINVAL);
	assert_int_equal(util_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), -ERANGE);
	assert_int_equal(util_parse_size("99999999999999999999X", UINT64_MAX, &v), -EINVAL);
	assert_int_equal(util_parse_size("99999999999999999999MB", UINT64_MAX, &v), -EINVAL);
	assert_int_equal(util_parse_size("99999999999999999999M", UINT64_MAX, &v), -ERANGE);
	assert_int_equal(v, 7);
}

static void test_error_object(void **state)
{
	struct zerr e = {0};
	assert_int_equal(zerr_set(&e, -ENOENT, "bind source %s: missing", "/x"), -ENOENT);
	assert_int_equal(e.code, -ENOENT);
	assert_string_equal(e.msg, "bind source /x: missing");
	assert_int_equal(zerr_set(NULL, -EIO, "ignored"), -EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_size_suffixes),
	    cmocka_unit_test(test_parse_size_rejects),
	    cmocka_unit_test(test_parse_u64_bounds),
	    cmocka_unit_test(test_parse_too_many_digits_then_garbage_is_einval),
	    cmocka_unit_test(test_error_object),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
