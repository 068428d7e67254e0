/* jobs.h - this node's share of the job queue (sql/003_events.sql): the
 * workers that claim jobs, run them through the invocation pipeline, and
 * finish them.
 *
 * Every non-synchronous way of running a function (an async invocation, a
 * schedule, a webhook, later a database change or a custom event) puts a job
 * on the queue with store_job_enqueue (store_jobs.h), in the transaction that
 * makes the event durable; this module runs it, once:
 *
 *   claim   one job whose run_after has passed, FOR UPDATE SKIP LOCKED; its
 *           run_after and lease_until move a lease ahead, its record becomes
 *           "running". A job whose node died is claimable again when its
 *           lease lapses: no sweeper, no leader.
 *   run     inv_run() with the function as it was at the job's version; the
 *           lease is renewed every third of it while the sandbox runs.
 *   finish  in one transaction with the attempt's record: the job is deleted
 *           (success, or dropped), queued again with backoff (attempt n
 *           waits about e^n s, +-20%, capped at an hour and at the
 *           function's max_event_age_s), or turned into a dead letter (and
 *           the on_failure function, if named, gets the event).
 *
 * A job that finds no concurrency slot goes back on the queue for a moment
 * without using an attempt. Idle workers sleep until a NOTIFY on zmesh_jobs
 * (any node's commit), jobs_wake() (this node's), or the poll interval. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#define JOBS_LEASE_MS_DEFAULT 30000
#define JOBS_POLL_MS_DEFAULT  1000
#define JOBS_BACKOFF_CAP_S    3600
#define JOBS_MAX_LAPSES       5 /* leases lost (node deaths) before a job is given up */
#define JOBS_NODE_ID_MAX      64

struct app;
struct jobs;

struct jobs_config {
	unsigned workers;  /* threads claiming jobs (each runs one at a time) */
	uint64_t lease_ms; /* JOBS_LEASE_MS_DEFAULT */
	uint64_t poll_ms;  /* JOBS_POLL_MS_DEFAULT */
	/* Benchmarks only: finish every job as a success without running it,
	 * to measure the queue's own ceiling. */
	bool noop;
};

/* Start the workers (and the connection, of conninfo, listening for
 * NOTIFY). The node id written as lease owner is new at every start. */
int jobs_start(struct app *app, const char *conninfo, const struct jobs_config *cfg, struct jobs **ret,
               struct zerr *err);
/* This node committed a job: wake an idle worker without waiting for the
 * notification. Safe from any thread; NULL is ignored. */
void jobs_wake(struct jobs *j);
/* Shutting down: claim nothing more (running jobs go on). NULL ignored. */
void jobs_stop_claiming(struct jobs *j);
/* Wait for the running jobs (the executor's stop deadline bounds them),
 * stop and free. A job ended by the shutdown goes back on the queue without
 * using an attempt; one whose end cannot be written keeps its lease until it
 * lapses, and runs again. NULL ignored. */
void jobs_stop(struct jobs *j);
/* The node's id (lease owner). */
const char *jobs_node_id(const struct jobs *j);

/* The wait before attempt (2, 3, ...): about e^(attempt-1) s, jittered by
 * +-20% with the random value r in [0, 1), capped at JOBS_BACKOFF_CAP_S. In
 * milliseconds. Pure. */
uint64_t jobs_backoff_ms(unsigned attempt, double r);
