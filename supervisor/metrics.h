/* metrics.h - the daemon's counters and their Prometheus text (/metrics).
 * Counting is lock-free (atomics) and safe from any thread. */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#include "buf.h"
#include "executor.h"

#define METRICS_DURATION_BUCKETS 12

struct app_metrics {
	atomic_uint_fast64_t by_outcome[8];  /* enum exec_outcome */
	atomic_uint_fast64_t rejected_rate;  /* 429 RATE_LIMITED */
	atomic_uint_fast64_t rejected_quota; /* 429 QUOTA_EXCEEDED */
	atomic_uint_fast64_t duration_bucket[METRICS_DURATION_BUCKETS + 1];
	atomic_uint_fast64_t duration_ms_sum;
	atomic_uint_fast64_t active;
};

void metrics_count_invocation(struct app_metrics *m, enum exec_outcome o, double wall_ms);
/* A refusal before running: code is -ZE_RATE_LIMITED or -ZE_QUOTA_EXCEEDED. */
void metrics_count_rejection(struct app_metrics *m, int code);

struct app;
/* The Prometheus text of everything the daemon counts, appended to out.
 * Returns 0 or out's failure. */
int metrics_render(struct app *app, struct buf *out);
