/* invoke.h - the one invocation pipeline. Every way of running a function
 * (an API call, an API key, and later a queued job, a schedule, a webhook, a
 * database change, a custom event) goes through inv_run():
 *
 *   concurrency slot (global and per project, bounded wait)
 *   -> monthly cap (counted atomically in PostgreSQL)
 *   -> the project's DSN -> the executor (warm pool or a fresh sandbox)
 *   -> exactly one invocation record -> metrics.
 *
 * The caller has authenticated and found the project and the function; it
 * turns the result into its own answer (inv_response for the API). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "app.h"
#include "store.h"

struct inv_call {
	const struct project *project;
	const struct function *function;
	json_t *payload;        /* borrowed; NULL is JSON null */
	const char *trigger;    /* "api", "api_key", ... as recorded */
	const char *trigger_id; /* the trigger's id, or NULL */
	const char *request_id; /* for log lines; may be NULL */
	uint64_t wait_ms;       /* longest wait for a concurrency slot */
	/* A queued job's attempt: the id of its record (already "queued") and
	 * its number; NULL and 0 for a synchronous call, which gets a new id. */
	const char *invocation_id;
	unsigned attempt;
	/* A queued job: refused for want of a slot, it waits on the queue
	 * (no "rejected" record, not counted as a rejection). */
	bool queued;
	/* Non-NULL: the record is handed here (a new reference) instead of to
	 * the record writer, so that the caller writes it in its own
	 * transaction (a job's finish). Also set when the call is refused. */
	json_t **ret_record;
};

struct inv_result {
	char id[STORE_ID_LEN + 1];
	enum exec_outcome outcome;
	const char *status; /* "success", "error", "timeout" */
	bool warm;
	double wall_ms, cpu_ms;
	uint64_t memory_bytes;
	uint64_t egress_requests, egress_bytes, egress_refused; /* through the egress gateway */
	json_t *result;                                         /* success: owned */
	json_t *error;                                          /* otherwise: {code, name, message, stack}, owned */
};

/* Run one invocation. 0: it ran, whatever the function did (*ret filled,
 * release with inv_result_done). Refused before running: -ZE_FUNCTION_DISABLED,
 * -ZE_RATE_LIMITED, -ZE_QUOTA_EXCEEDED (each but the first recorded as
 * "rejected"), or an errno when the quota could not be counted. */
int inv_run(struct app *app, const struct inv_call *call, struct inv_result *ret, struct zerr *err);
void inv_result_done(struct inv_result *r);

/* The API's answer for a result: {status, result, error, invocation_id,
 * duration_ms, start, metrics: {wall_ms, cpu_ms, memory_bytes,
 * egress_requests, egress_bytes, egress_refused}}. */
json_t *inv_response(const struct inv_result *r);

/* A random (version 4) UUID. */
void inv_uuid(char out[STORE_ID_LEN + 1]);

/* Now as RFC 3339 UTC with milliseconds ("2026-01-31T09:05:00.123Z"): the
 * timestamp events carry. */
#define INV_TIMESTAMP_LEN 32
void inv_timestamp_now(char out[INV_TIMESTAMP_LEN]);
