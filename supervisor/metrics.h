/* metrics.h - the daemon's counters and their Prometheus text (/metrics).
 * Counting is lock-free (atomics) and safe from any thread. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "buf.h"
#include "executor.h"

#define METRICS_DURATION_BUCKETS 12
/* Projects whose egress totals are kept one by one; the rest are summed
 * under project="other" (a label set that cannot grow without bound). */
#define METRICS_EGRESS_PROJECTS 1024

struct metrics_egress {
	char project[40];
	uint64_t requests, bytes, refused;
};

struct app_metrics {
	atomic_uint_fast64_t by_outcome[8];  /* enum exec_outcome */
	atomic_uint_fast64_t rejected_rate;  /* 429 RATE_LIMITED */
	atomic_uint_fast64_t rejected_quota; /* 429 QUOTA_EXCEEDED */
	atomic_uint_fast64_t duration_bucket[METRICS_DURATION_BUCKETS + 1];
	atomic_uint_fast64_t duration_ms_sum;
	atomic_uint_fast64_t active;
	struct {
		atomic_uint_fast64_t enqueued; /* jobs this node queued */
		atomic_uint_fast64_t finished; /* attempts finished, any outcome */
		atomic_uint_fast64_t retried;  /* attempts that failed and were queued again */
		atomic_uint_fast64_t dead;     /* jobs that became dead letters */
		atomic_uint_fast64_t dropped;  /* jobs of a deleted function */
		atomic_uint_fast64_t requeued; /* put back for want of a slot (not an attempt) */
		atomic_uint_fast64_t lapsed;   /* claimed again after another node's lease lapsed */
		atomic_uint_fast64_t filtered; /* events whose trigger's conditions did not hold */
		atomic_uint_fast64_t cron_fired;
		atomic_uint_fast64_t cron_missed;      /* ticks dropped (catch_up skip, or past the window) */
		atomic_uint_fast64_t cron_overlap;     /* ticks skipped while the previous one ran */
		atomic_uint_fast64_t webhook_accepted; /* verified deliveries (replays included) */
		atomic_uint_fast64_t webhook_rejected; /* bad or missing signature, stale timestamp */
		atomic_uint_fast64_t webhook_replayed; /* a delivery id seen before */
		atomic_uint_fast64_t custom_received;  /* custom events accepted (POST .../events) */
		atomic_uint_fast64_t custom_enqueued;  /* jobs custom events queued (also in enqueued) */
		atomic_uint_fast64_t cdc_captured;     /* captured changes this node moved out of outboxes */
		atomic_uint_fast64_t cdc_enqueued;     /* jobs database changes queued (also in enqueued) */
	} events;
	/* Egress totals per project, of invocations that went out at all. */
	pthread_mutex_t egress_lock;
	struct metrics_egress *egress; /* METRICS_EGRESS_PROJECTS + 1 ("other" last), made on first use */
	size_t n_egress;
};

void metrics_count_invocation(struct app_metrics *m, enum exec_outcome o, double wall_ms);
/* A refusal before running: code is -ZE_RATE_LIMITED or -ZE_QUOTA_EXCEEDED. */
void metrics_count_rejection(struct app_metrics *m, int code);
/* What one invocation of project did through the egress gateway. */
void metrics_count_egress(struct app_metrics *m, const char *project, uint64_t requests, uint64_t bytes,
                          uint64_t refused);

struct app;
/* The Prometheus text of everything the daemon counts, appended to out.
 * Returns 0 or out's failure. */
int metrics_render(struct app *app, struct buf *out);
