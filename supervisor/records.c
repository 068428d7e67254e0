/* records.c - see records.h */
#define _GNU_SOURCE
#include "records.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "store.h"

#define RECORDS_QUEUE    4096
#define RECORDS_BATCH    256
#define RECORDS_FLUSH_MS 20

struct records {
	struct db_pool *pool;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool stop;
	json_t *q[RECORDS_QUEUE];
	size_t head, n;
	bool writing;   /* a batch is on its way to the database */
	unsigned flush; /* readers waiting for the queue to be written */
	pthread_cond_t idle;
	uint64_t written, failed;
};

static int write_batch(struct records *r, json_t *batch, struct zerr *err)
{
	_cleanup_free_ char *text = json_dumps(batch, JSON_COMPACT);
	if (!text)
		return zerr_set(err, -ENOMEM, "cannot encode records");
	PGconn *c = db_acquire(r->pool);
	if (!c)
		return zerr_set(err, -ETIMEDOUT, "no database connection");
	int rc = store_records_insert(c, text, err);
	db_release(r->pool, c);
	return rc;
}

/* A batch that fails (a function deleted meanwhile takes its records'
 * foreign key with it) is retried record by record, so one bad record
 * costs only itself. */
static bool transient(int rc)
{
	return rc == -ETIMEDOUT || rc == -ECONNRESET || rc == -EAGAIN;
}

static void write_all(struct records *r, json_t *batch)
{
	struct zerr err = {0};
	size_t n = json_array_size(batch);
	int rc = write_batch(r, batch, &err);
	/* The database away for a moment (a restart, a full pool): the same
	 * batch again, backing off, rather than record by record. */
	for (unsigned i = 0; rc < 0 && transient(rc) && i < 6; i++) {
		struct timespec ts = {0, (long)(100000000L << (i < 3 ? i : 3))};
		nanosleep(&ts, NULL);
		rc = write_batch(r, batch, &err);
	}
	if (rc == 0) {
		pthread_mutex_lock(&r->mu);
		r->written += n;
		pthread_mutex_unlock(&r->mu);
		return;
	}
	if (transient(rc)) {
		pthread_mutex_lock(&r->mu);
		r->failed += n;
		pthread_mutex_unlock(&r->mu);
		zlog(ZLOG_ERROR, "records_lost", "error", err.msg, NULL);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *one = json_pack("[O]", json_array_get(batch, i));
		struct zerr e1 = {0};
		int rc1 = one ? write_batch(r, one, &e1) : -ENOMEM;
		json_decref(one);
		pthread_mutex_lock(&r->mu);
		if (rc1 == 0)
			r->written++;
		else
			r->failed++;
		pthread_mutex_unlock(&r->mu);
		if (rc1 < 0)
			zlog(ZLOG_ERROR, "record_failed", "invocation_id",
			     json_string_value(json_object_get(json_array_get(batch, i), "id")), "error", e1.msg, NULL);
	}
}

static void *writer_main(void *arg)
{
	struct records *r = arg;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		if (r->n == 0) {
			if (r->stop)
				break;
			pthread_cond_wait(&r->cv, &r->mu);
			continue;
		}
		/* Let a few more arrive: one statement for many records
		 * (unless someone waits for them to be written). */
		if (r->n < RECORDS_BATCH && !r->stop && !r->flush) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += RECORDS_FLUSH_MS * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&r->cv, &r->mu, &ts);
		}
		json_t *batch = json_array();
		while (r->n > 0 && json_array_size(batch) < RECORDS_BATCH) {
			json_array_append_new(batch, r->q[r->head]);
			r->head = (r->head + 1) % RECORDS_QUEUE;
			r->n--;
		}
		r->writing = true;
		pthread_mutex_unlock(&r->mu);
		write_all(r, batch);
		json_decref(batch);
		pthread_mutex_lock(&r->mu);
		r->writing = false;
		if (r->n == 0)
			pthread_cond_broadcast(&r->idle);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

int records_start(struct db_pool *pool, struct records **ret, struct zerr *err)
{
	struct records *r = calloc(1, sizeof(*r));
	if (!r)
		return zerr_set(err, -ENOMEM, "out of memory");
	r->pool = pool;
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_cond_init(&r->idle, &ca);
	pthread_condattr_destroy(&ca);
	int rc = pthread_create(&r->thread, NULL, writer_main, r);
	if (rc != 0) {
		free(r);
		return zerr_set(err, -rc, "pthread_create: %s", strerror(rc));
	}
	*ret = r;
	return 0;
}

void records_push(struct records *r, json_t *rec)
{
	pthread_mutex_lock(&r->mu);
	if (r->n < RECORDS_QUEUE && !r->stop) {
		r->q[(r->head + r->n) % RECORDS_QUEUE] = rec;
		r->n++;
		pthread_cond_signal(&r->cv);
		pthread_mutex_unlock(&r->mu);
		return;
	}
	pthread_mutex_unlock(&r->mu);
	json_t *one = json_pack("[o]", rec);
	if (one)
		write_all(r, one);
	json_decref(one);
}

void records_stop(struct records *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->cv);
	pthread_cond_destroy(&r->idle);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

void records_flush(struct records *r, unsigned timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&r->mu);
	r->flush++;
	pthread_cond_signal(&r->cv);
	while ((r->n > 0 || r->writing) && pthread_cond_timedwait(&r->idle, &r->mu, &ts) == 0)
		;
	r->flush--;
	pthread_mutex_unlock(&r->mu);
}

void records_stats(struct records *r, uint64_t *ret_queued, uint64_t *ret_written, uint64_t *ret_failed)
{
	pthread_mutex_lock(&r->mu);
	*ret_queued = r->n;
	*ret_written = r->written;
	*ret_failed = r->failed;
	pthread_mutex_unlock(&r->mu);
}
