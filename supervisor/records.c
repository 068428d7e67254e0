/* records.c - see records.h */
#define _GNU_SOURCE
#include "records.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "store.h"
#include "workq.h"

#define RECORDS_QUEUE    4096
#define RECORDS_BATCH    256
#define RECORDS_FLUSH_MS 20

struct records {
	struct db_pool *pool;
	struct workq *q;
	pthread_mutex_t mu; /* the counters */
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

/* The writer's handler: one statement for the whole batch. */
static void write_items(void *ctx, void **items, size_t n)
{
	struct records *r = ctx;
	json_t *batch = json_array();
	for (size_t i = 0; i < n; i++)
		if (!batch || json_array_append_new(batch, items[i]) < 0)
			json_decref(items[i]);
	if (batch)
		write_all(r, batch);
	else
		zlog(ZLOG_ERROR, "records_lost", "error", "out of memory", NULL);
	json_decref(batch);
}

int records_start(struct db_pool *pool, struct records **ret, struct zerr *err)
{
	struct records *r = calloc(1, sizeof(*r));
	if (!r)
		return zerr_set(err, -ENOMEM, "out of memory");
	r->pool = pool;
	pthread_mutex_init(&r->mu, NULL);
	const struct workq_options opt = {
	    .capacity = RECORDS_QUEUE, .batch = RECORDS_BATCH, .linger_ms = RECORDS_FLUSH_MS};
	int rc = workq_start(&opt, write_items, r, &r->q, err);
	if (rc < 0) {
		pthread_mutex_destroy(&r->mu);
		free(r);
		return rc;
	}
	*ret = r;
	return 0;
}

void records_push(struct records *r, json_t *rec)
{
	if (workq_push(r->q, rec))
		return;
	json_t *one = json_pack("[o]", rec);
	if (one)
		write_all(r, one);
	json_decref(one);
}

void records_stop(struct records *r)
{
	if (!r)
		return;
	workq_stop(r->q);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

void records_flush(struct records *r, unsigned timeout_ms)
{
	workq_flush(r->q, timeout_ms);
}

void records_stats(struct records *r, uint64_t *ret_queued, uint64_t *ret_written, uint64_t *ret_failed)
{
	*ret_queued = workq_queued(r->q);
	pthread_mutex_lock(&r->mu);
	*ret_written = r->written;
	*ret_failed = r->failed;
	pthread_mutex_unlock(&r->mu);
}
