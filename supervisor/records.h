/* records.h - invocation records, written off the request's path: a
 * bounded queue drained by one thread in batches (one INSERT per batch).
 * Nothing queued is lost on shutdown: records_stop() writes what is left. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"

struct records;

/* One invocation's record, as JSON: the columns of table invocations
 * (id, function_id, project_id, version, trigger, start, status,
 * started_at_ms, duration_ms, cpu_ms, memory_bytes, result_excerpt, logs,
 * logs_truncated, error, payload: its compact JSON text when kept,
 * payload_truncated). */
int records_start(struct db_pool *pool, struct records **ret, struct zerr *err);
/* Queue rec (the reference is stolen). When the queue is full the caller
 * writes it itself: slower, never lost. */
void records_push(struct records *r, json_t *rec);
/* Wait, at most timeout_ms, until what is queued now is written: a reader of
 * this node then sees its own invocations. */
void records_flush(struct records *r, unsigned timeout_ms);
/* Write everything queued, stop the writer, free. */
void records_stop(struct records *r);
/* Records waiting now, and written so far (for /metrics). */
void records_stats(struct records *r, uint64_t *ret_queued, uint64_t *ret_written, uint64_t *ret_failed);
