/* Unit tests: the work queue (common/workq.c): batches, flush, a full queue,
 * and a stop that hands over everything still queued. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "workq.h"

struct sink {
	atomic_size_t handled;
	atomic_size_t calls;
	atomic_size_t largest;
	atomic_int order_broken;
	atomic_size_t last;
	pthread_mutex_t gate; /* held by a test to keep the handler busy */
};

static void handle(void *ctx, void **items, size_t n)
{
	struct sink *s = ctx;
	pthread_mutex_lock(&s->gate);
	pthread_mutex_unlock(&s->gate);
	for (size_t i = 0; i < n; i++) {
		size_t v = (size_t)(uintptr_t)items[i];
		if (v != atomic_load(&s->last) + 1)
			atomic_store(&s->order_broken, 1);
		atomic_store(&s->last, v);
	}
	atomic_fetch_add(&s->handled, n);
	atomic_fetch_add(&s->calls, 1);
	if (n > atomic_load(&s->largest))
		atomic_store(&s->largest, n);
}

static void test_batches_in_order_and_flush(void **state)
{
	struct sink s = {.gate = PTHREAD_MUTEX_INITIALIZER};
	struct workq *q = NULL;
	struct workq_options opt = {.capacity = 1000, .batch = 64, .linger_ms = 20};
	assert_int_equal(workq_start(&opt, handle, &s, &q, NULL), 0);
	for (uintptr_t i = 1; i <= 500; i++)
		assert_true(workq_push(q, (void *)i));
	workq_flush(q, 5000);
	assert_int_equal(atomic_load(&s.handled), 500);
	assert_int_equal(workq_queued(q), 0);
	assert_false(atomic_load(&s.order_broken));
	assert_true(atomic_load(&s.largest) <= 64);
	assert_true(atomic_load(&s.calls) < 500); /* lingering made batches */
	workq_stop(q);
}

static void test_full_queue_refuses_and_stop_drains(void **state)
{
	struct sink s = {.gate = PTHREAD_MUTEX_INITIALIZER};
	struct workq *q = NULL;
	struct workq_options opt = {.capacity = 4, .batch = 1, .linger_ms = 0};
	assert_int_equal(workq_start(&opt, handle, &s, &q, NULL), 0);
	pthread_mutex_lock(&s.gate); /* the handler blocks on its first item */
	uintptr_t next = 1;
	assert_true(workq_push(q, (void *)next++));
	/* Wait until the worker holds that item, then fill the queue. */
	for (int i = 0; i < 1000 && workq_queued(q) != 0; i++) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < 4; i++)
		assert_true(workq_push(q, (void *)next++));
	assert_false(workq_push(q, (void *)next)); /* full: the caller does it */
	assert_int_equal(workq_queued(q), 4);
	pthread_mutex_unlock(&s.gate);
	workq_stop(q); /* hands over all that was queued */
	assert_int_equal(atomic_load(&s.handled), 5);
	assert_false(atomic_load(&s.order_broken));
}

static void test_bad_options(void **state)
{
	struct workq *q = NULL;
	struct zerr err = {0};
	struct workq_options opt = {.capacity = 0, .batch = 1};
	assert_int_equal(workq_start(&opt, handle, NULL, &q, &err), -EINVAL);
	opt = (struct workq_options){.capacity = 1, .batch = 0};
	assert_int_equal(workq_start(&opt, handle, NULL, &q, &err), -EINVAL);
	workq_stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_batches_in_order_and_flush),
	    cmocka_unit_test(test_full_queue_refuses_and_stop_drains),
	    cmocka_unit_test(test_bad_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
