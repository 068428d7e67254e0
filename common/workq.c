/* workq.c - see workq.h */
#define _GNU_SOURCE
#include "workq.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mono.h"

struct workq {
	struct workq_options opt;
	workq_fn fn;
	void *ctx;
	pthread_mutex_t mu;
	pthread_cond_t cv;   /* something queued, or a stop or a flush asked */
	pthread_cond_t idle; /* the queue is empty and nothing is being handled */
	pthread_t thread;
	bool stop;
	bool busy;      /* the handler has a batch */
	unsigned flush; /* callers waiting in workq_flush */
	size_t head, n;
	void **batch;
	void *q[]; /* opt.capacity */
};

static void *worker(void *arg)
{
	struct workq *q = arg;
	pthread_mutex_lock(&q->mu);
	for (;;) {
		if (q->n == 0) {
			if (q->stop)
				break;
			pthread_cond_wait(&q->cv, &q->mu);
			continue;
		}
		/* Let a few more arrive, so that one handling serves many
		 * (unless someone waits for them). */
		if (q->n < q->opt.batch && q->opt.linger_ms && !q->stop && !q->flush) {
			struct timespec ts = mono_deadline_in(q->opt.linger_ms);
			pthread_cond_timedwait(&q->cv, &q->mu, &ts);
		}
		size_t k = 0;
		while (q->n > 0 && k < q->opt.batch) {
			q->batch[k++] = q->q[q->head];
			q->head = (q->head + 1) % q->opt.capacity;
			q->n--;
		}
		q->busy = true;
		pthread_mutex_unlock(&q->mu);
		q->fn(q->ctx, q->batch, k);
		pthread_mutex_lock(&q->mu);
		q->busy = false;
		if (q->n == 0)
			pthread_cond_broadcast(&q->idle);
	}
	pthread_cond_broadcast(&q->idle);
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

int workq_start(const struct workq_options *opt, workq_fn fn, void *ctx, struct workq **ret, struct zerr *err)
{
	if (!opt->capacity || !opt->batch || opt->capacity > (1u << 20))
		return zerr_set(err, -EINVAL, "work queue: capacity 1..%u and a batch of at least 1", 1u << 20);
	struct workq *q = calloc(1, sizeof(*q) + opt->capacity * sizeof(void *));
	void **batch = calloc(opt->batch, sizeof(void *));
	if (!q || !batch) {
		free(q);
		free(batch);
		return zerr_set(err, -ENOMEM, "out of memory");
	}
	q->opt = *opt;
	q->fn = fn;
	q->ctx = ctx;
	q->batch = batch;
	pthread_mutex_init(&q->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cv, &ca);
	pthread_cond_init(&q->idle, &ca);
	pthread_condattr_destroy(&ca);
	int rc = pthread_create(&q->thread, NULL, worker, q);
	if (rc != 0) {
		pthread_cond_destroy(&q->cv);
		pthread_cond_destroy(&q->idle);
		pthread_mutex_destroy(&q->mu);
		free(q->batch);
		free(q);
		return zerr_set(err, -rc, "pthread_create: %s", strerror(rc));
	}
	*ret = q;
	return 0;
}

bool workq_push(struct workq *q, void *item)
{
	pthread_mutex_lock(&q->mu);
	bool ok = q->n < q->opt.capacity && !q->stop;
	if (ok) {
		q->q[(q->head + q->n) % q->opt.capacity] = item;
		q->n++;
		pthread_cond_signal(&q->cv);
	}
	pthread_mutex_unlock(&q->mu);
	return ok;
}

void workq_flush(struct workq *q, unsigned timeout_ms)
{
	struct timespec ts = mono_deadline_in(timeout_ms);
	pthread_mutex_lock(&q->mu);
	q->flush++;
	pthread_cond_signal(&q->cv);
	while ((q->n > 0 || q->busy) && pthread_cond_timedwait(&q->idle, &q->mu, &ts) == 0)
		;
	q->flush--;
	pthread_mutex_unlock(&q->mu);
}

size_t workq_queued(struct workq *q)
{
	pthread_mutex_lock(&q->mu);
	size_t n = q->n;
	pthread_mutex_unlock(&q->mu);
	return n;
}

void workq_stop(struct workq *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	q->stop = true;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
	pthread_join(q->thread, NULL);
	pthread_cond_destroy(&q->cv);
	pthread_cond_destroy(&q->idle);
	pthread_mutex_destroy(&q->mu);
	free(q->batch);
	free(q);
}
