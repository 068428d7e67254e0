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

/* An async invocation with an Idempotency-Key: queued once per (function,
 * key) within 24 h. *ret_existing true: the key was seen and *ret_id is the
 * first invocation's; -ZE_IDEMPOTENCY_KEY_REUSED when it came with another
 * payload (compared as JSON, key order aside). */
int store_job_enqueue_once(PGconn *c, const struct job_event *e, const char *key, char ret_id[STORE_ID_LEN + 1],
                           bool *ret_existing, struct zerr *err);

/* ---- workers ---- */

/* A claimed job, with its project and its function as it was at the job's
 * version. */
struct job {
	char id[STORE_ID_LEN + 1];
	char invocation_id[STORE_ID_LEN + 1];       /* the current attempt's record */
	char first_invocation_id[STORE_ID_LEN + 1]; /* the first attempt's */
	char trigger[33];
	char trigger_id[STORE_ID_LEN + 1]; /* "" when none */
	unsigned attempt;
	unsigned lapses; /* leases lost before this claim (node deaths) */
	bool took_over;  /* this claim took a lapsed lease over */
	bool function_gone;
	double age_s; /* since the event was queued */
	json_t *event;
	struct project p;
	struct function f;
	int64_t retries, max_event_age_s;
};
void store_job_done(struct job *j);

/* Claim the job that is due first (FOR UPDATE SKIP LOCKED), leasing it to
 * node for lease_ms, and mark its record running. *ret_found false: no job
 * is due. On success with a job, release it with store_job_done. */
int store_job_claim(PGconn *c, const char *node, uint64_t lease_ms, struct job *ret, bool *ret_found, struct zerr *err);
/* Push the leases of ids (a PostgreSQL array literal of uuids) held by node
 * lease_ms ahead. */
int store_jobs_renew(PGconn *c, const char *node, const char *ids, uint64_t lease_ms, struct zerr *err);

/* The end of an attempt, each in one statement, each only while node still
 * holds the job's lease (*ret_owned false otherwise: another node took the
 * job over, and nothing was written). record is the attempt's record as
 * invoke.c builds it (JSON text). */
/* Success, or a job with nothing more to do: the record, and the job
 * deleted. */
int store_job_finish(PGconn *c, const char *node, const struct job *j, const char *record, bool *ret_owned,
                     struct zerr *err);
/* A failed attempt to be tried again after delay_ms: the record, and the
 * job queued again as attempt + 1 with a new queued record next_id. */
int store_job_retry(PGconn *c, const char *node, const struct job *j, const char *record, const char *next_id,
                    uint64_t delay_ms, const char *error, bool *ret_owned, struct zerr *err);
/* A job that failed for good: the record, a dead letter, the first
 * attempt's record marked dead, the job deleted, and the event queued for
 * the function's on_failure function if it names one (not for an event
 * that is itself a dead letter). *ret_on_failure: that job's invocation id,
 * or "". */
int store_job_dead(PGconn *c, const char *node, const struct job *j, const char *record, const char *error,
                   bool *ret_owned, char ret_on_failure[STORE_ID_LEN + 1], struct zerr *err);
/* Back on the queue after delay_ms without using an attempt (no slot free). */
int store_job_requeue(PGconn *c, const char *node, const struct job *j, uint64_t delay_ms, struct zerr *err);
/* The function is gone: the job is deleted (its records went with it). */
int store_job_drop(PGconn *c, const char *node, const struct job *j, struct zerr *err);

/* Forget idempotency keys and webhook deliveries past their day (bounded
 * batches; the scheduler prunes its own fires). */
int store_events_prune(PGconn *c, struct zerr *err);

/* ---- dead letters ---- */

int store_dead_letters_list(PGconn *c, const char *project_id, uint64_t limit, json_t **ret, struct zerr *err);
/* Queue a dead letter's event again for its function (attempt 1, trigger
 * as it was). -ZE_NOT_FOUND for no such dead letter in the project. */
int store_dead_letter_retry(PGconn *c, const char *project_id, const char *id, char ret_id[STORE_ID_LEN + 1],
                            struct zerr *err);
