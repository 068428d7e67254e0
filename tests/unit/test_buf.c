/* Unit tests: the growable buffer (common/buf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "buf.h"

static void test_grows_and_terminates(void **state)
{
	_cleanup_buf_ struct buf b = BUF_INIT(0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(buf_printf(&b, "line %d\n", i), 0);
	assert_int_equal(b.failed, 0);
	assert_int_equal(strlen(b.data), b.len);
	assert_non_null(strstr(b.data, "line 999\n"));
	assert_int_equal(strncmp(b.data, "line 0\nline 1\n", 14), 0);
	/* A formatted piece longer than the small scratch space. */
	char big[1000];
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	size_t before = b.len;
	assert_int_equal(buf_printf(&b, "[%s]", big), 0);
	assert_int_equal(b.len, before + 1001);
	assert_int_equal(b.data[b.len - 1], ']');
}

static void test_limit_fails_and_sticks(void **state)
{
	_cleanup_buf_ struct buf b = BUF_INIT(16);
	assert_int_equal(buf_puts(&b, "0123456789"), 0);
	assert_int_equal(buf_puts(&b, "abcdef"), -E2BIG); /* 16 + NUL > 16 */
	assert_int_equal(b.failed, -E2BIG);
	assert_int_equal(buf_puts(&b, "x"), -E2BIG); /* sticks */
	assert_string_equal(b.data, "0123456789");   /* nothing half-written */
	char *s = buf_steal(&b);
	assert_string_equal(s, "0123456789");
	free(s);
	assert_null(b.data);
	assert_int_equal(b.failed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_grows_and_terminates),
	    cmocka_unit_test(test_limit_fails_and_sticks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
