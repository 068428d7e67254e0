/* Unit tests: common/utf8.c - which sequences are valid, where a string may
 * be cut, and what sanitizing leaves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "utf8.h"

static size_t seq(const char *s)
{
	return utf8_seq_len((const unsigned char *)s, strlen(s));
}

static void test_seq_len(void **state)
{
	assert_int_equal(seq("a"), 1);
	assert_int_equal(seq("\xc3\xa9"), 2);         /* é */
	assert_int_equal(seq("\xe2\x82\xac"), 3);     /* € */
	assert_int_equal(seq("\xf0\x9f\x98\x80"), 4); /* U+1F600 */
	assert_int_equal(seq("\xf4\x8f\xbf\xbf"), 4); /* U+10FFFF */
	assert_int_equal(seq("\x80"), 0);             /* lone continuation */
	assert_int_equal(seq("\xc0\xaf"), 0);         /* overlong '/' */
	assert_int_equal(seq("\xc1\xbf"), 0);
	assert_int_equal(seq("\xe0\x80\xaf"), 0);     /* overlong */
	assert_int_equal(seq("\xed\xa0\x80"), 0);     /* surrogate D800 */
	assert_int_equal(seq("\xf0\x80\x80\xaf"), 0); /* overlong */
	assert_int_equal(seq("\xf4\x90\x80\x80"), 0); /* above U+10FFFF */
	assert_int_equal(seq("\xf5\x80\x80\x80"), 0);
	assert_int_equal(seq("\xff"), 0);
	assert_int_equal(seq("\xc3"), 0); /* cut short */
	assert_int_equal(seq("\xe2\x82"), 0);
	assert_int_equal(seq("\xe2\x28\xa1"), 0); /* bad continuation */
	/* n bounds the read even when more bytes follow */
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xe2\x82\xac", 2), 0);
	assert_int_equal(utf8_seq_len((const unsigned char *)"x", 0), 0);
}

static void test_valid(void **state)
{
	assert_true(utf8_valid("", 0));
	assert_true(utf8_valid("plain", 5));
	assert_true(utf8_valid("caf\xc3\xa9 \xe2\x82\xac", 9));
	assert_true(utf8_valid("a\0b", 3));
	assert_false(utf8_valid("caf\xc3", 4));
	assert_false(utf8_valid("\xff\xfe", 2));
}

static void test_cut_len(void **state)
{
	const char *s = "ab\xe2\x82\xac"
	                "cd"; /* a b € c d: 7 bytes */
	assert_int_equal(utf8_cut_len(s, 7, 100), 7);
	assert_int_equal(utf8_cut_len(s, 7, 7), 7);
	assert_int_equal(utf8_cut_len(s, 7, 6), 6);
	assert_int_equal(utf8_cut_len(s, 7, 5), 5); /* after the € */
	assert_int_equal(utf8_cut_len(s, 7, 4), 2); /* inside it: before */
	assert_int_equal(utf8_cut_len(s, 7, 3), 2);
	assert_int_equal(utf8_cut_len(s, 7, 2), 2);
	assert_int_equal(utf8_cut_len(s, 7, 0), 0);
	const char *four = "\xf0\x9f\x98\x80z";
	assert_int_equal(utf8_cut_len(four, 5, 3), 0);
	assert_int_equal(utf8_cut_len(four, 5, 4), 4);
	/* continuation bytes without a start: never more than 3 back */
	const char *junk = "\x80\x80\x80\x80\x80\x80";
	assert_int_equal(utf8_cut_len(junk, 6, 5), 2);
}

static void expect_sanitized(const char *in, size_t max, bool no_ctl, const char *want)
{
	char *out = utf8_sanitize(in, max, no_ctl);
	assert_non_null(out);
	assert_string_equal(out, want);
	free(out);
}

static void test_sanitize(void **state)
{
	expect_sanitized("plain", 100, true, "plain");
	expect_sanitized("caf\xc3\xa9", 100, true, "caf\xc3\xa9");
	expect_sanitized("bad \xff\xfe.", 100, false, "bad ??.");
	expect_sanitized("tab\there\x7f", 100, true, "tab?here?");
	expect_sanitized("tab\there", 100, false, "tab\there");
	expect_sanitized("abcdef", 3, true, "abc");
	expect_sanitized("ab\xe2\x82\xac", 4, true, "ab??"); /* a cut sequence is not kept half */
	expect_sanitized("\xed\xa0\x80", 10, true, "???");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_seq_len),
	    cmocka_unit_test(test_valid),
	    cmocka_unit_test(test_cut_len),
	    cmocka_unit_test(test_sanitize),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
