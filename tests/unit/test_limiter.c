/* Unit tests: global and per-project concurrency limits, bounded waits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "limiter.h"

static void test_global_limit(void **state)
{
	struct limiter l;
	assert_int_equal(limiter_init(&l, 2), 0);
	assert_int_equal(limiter_acquire(&l, "a", 0, 0), 0);
	assert_int_equal(limiter_acquire(&l, "b", 0, 0), 0);
	assert_int_equal(limiter_acquire(&l, "c", 0, 50), -EAGAIN);
	limiter_release(&l, "a");
	assert_int_equal(limiter_acquire(&l, "c", 0, 0), 0);
	uint64_t used, waiting, rejected;
	limiter_stats(&l, &used, &waiting, &rejected);
	assert_int_equal(used, 2);
	assert_int_equal(waiting, 0);
	assert_int_equal(rejected, 1);
	limiter_release(&l, "b");
	limiter_release(&l, "c");
	limiter_done(&l);
}

static void test_project_limit_leaves_room_for_others(void **state)
{
	struct limiter l;
	assert_int_equal(limiter_init(&l, 8), 0);
	assert_int_equal(limiter_acquire(&l, "p", 2, 0), 0);
	assert_int_equal(limiter_acquire(&l, "p", 2, 0), 0);
	assert_int_equal(limiter_acquire(&l, "p", 2, 20), -EAGAIN);
	assert_int_equal(limiter_acquire(&l, "q", 2, 0), 0);
	limiter_release(&l, "p");
	assert_int_equal(limiter_acquire(&l, "p", 2, 0), 0);
	limiter_release(&l, "p");
	limiter_release(&l, "p");
	limiter_release(&l, "q");
	uint64_t used, waiting, rejected;
	limiter_stats(&l, &used, &waiting, &rejected);
	assert_int_equal(used, 0);
	limiter_done(&l);
}

static struct limiter shared;

static void *release_later(void *arg)
{
	usleep(100 * 1000);
	limiter_release(&shared, "p");
	return NULL;
}

static void test_waiter_gets_the_freed_slot(void **state)
{
	assert_int_equal(limiter_init(&shared, 1), 0);
	assert_int_equal(limiter_acquire(&shared, "p", 0, 0), 0);
	pthread_t t;
	pthread_create(&t, NULL, release_later, NULL);
	assert_int_equal(limiter_acquire(&shared, "p", 0, 5000), 0);
	pthread_join(t, NULL);
	limiter_release(&shared, "p");
	limiter_done(&shared);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_global_limit),
	    cmocka_unit_test(test_project_limit_leaves_room_for_others),
	    cmocka_unit_test(test_waiter_gets_the_freed_slot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
