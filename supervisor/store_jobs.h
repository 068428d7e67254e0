/* store_jobs.h - the queue's statements (sql/003_events.sql): enqueueing,
 * claiming, renewing, finishing, idempotency keys and dead letters. Same
 * contract as store.h. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "store.h"

/* One event for a function, to be queued. */
struct job_event {
	const char *function_id;
	int64_t version;        /* 0: the function's current version */
	json_t *event;          /* borrowed; NULL is JSON null */
	const char *trigger;    /* as recorded: "async", "schedule", "webhook", "dead_letter", ... */
	const char *trigger_id; /* a trigger's id, or NULL */
	int64_t delay_ms;       /* run no earlier than this from now (0: at once) */
};

/* Queue e: its record ("queued") and its job, in one statement (so within
 * the caller's transaction if one is open). *ret_id: the invocation id of
 * the first attempt. -ZE_NOT_FOUND when the function no longer exists.
 * The caller then wakes this node's workers (jobs_wake). */
int store_job_enqueue(PGconn *c, const struct job_event *e, char ret_id[STORE_ID_LEN + 1], struct zerr *err);
