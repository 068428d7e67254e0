/* The queue's backoff between attempts: about e^(n-1) s before attempt n,
 * +-20% jitter, capped at an hour. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "jobs.h"

static void backoff_grows_like_e_to_the_n(void **state)
{
	(void)state;
	/* r = 0.5 is the middle of the jitter: no change. */
	assert_int_equal(jobs_backoff_ms(2, 0.5), 2718);
	assert_int_equal(jobs_backoff_ms(3, 0.5), 7389);
	assert_int_equal(jobs_backoff_ms(4, 0.5), 20085);
	assert_int_equal(jobs_backoff_ms(5, 0.5), 54598);
	for (unsigned n = 2; n < 9; n++)
		assert_true(jobs_backoff_ms(n + 1, 0.5) > jobs_backoff_ms(n, 0.5));
}

static void backoff_jitter_is_within_20_percent(void **state)
{
	(void)state;
	for (unsigned n = 2; n <= 8; n++) {
		uint64_t mid = jobs_backoff_ms(n, 0.5);
		uint64_t lo = jobs_backoff_ms(n, 0.0), hi = jobs_backoff_ms(n, 0.999999);
		assert_true(lo >= mid * 8 / 10 - 1 && lo <= mid * 8 / 10 + 1);
		assert_true(hi <= mid * 12 / 10 + 1 && hi >= mid * 12 / 10 - 2);
		/* Out-of-range randomness is clamped, never outside the band. */
		assert_true(jobs_backoff_ms(n, -3.0) == lo);
		assert_true(jobs_backoff_ms(n, 7.0) <= hi);
	}
}

static void backoff_is_capped_at_an_hour(void **state)
{
	(void)state;
	for (unsigned n = 10; n < 40; n++) {
		assert_true(jobs_backoff_ms(n, 0.999999) <= JOBS_BACKOFF_CAP_S * 1000u);
		assert_true(jobs_backoff_ms(n, 0.0) >= JOBS_BACKOFF_CAP_S * 800u);
	}
	assert_int_equal(jobs_backoff_ms(1000000, 0.5), JOBS_BACKOFF_CAP_S * 1000u);
	/* Attempt 1 never waits less than attempt 2 would. */
	assert_int_equal(jobs_backoff_ms(0, 0.5), jobs_backoff_ms(2, 0.5));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(backoff_grows_like_e_to_the_n),
	    cmocka_unit_test(backoff_jitter_is_within_20_percent),
	    cmocka_unit_test(backoff_is_capped_at_an_hour),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
