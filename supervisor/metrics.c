/* metrics.c - see metrics.h */
#include "metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "errors.h"
#include "logstream.h"
#include "pooler.h"

static const uint64_t duration_bounds_ms[METRICS_DURATION_BUCKETS] = {5,   10,   25,   50,    100,   250,
                                                                      500, 1000, 2500, 10000, 30000, 120000};

void metrics_count_invocation(struct app_metrics *m, enum exec_outcome o, double wall_ms)
{
	if ((size_t)o < ELEMENTSOF(m->by_outcome))
		atomic_fetch_add(&m->by_outcome[o], 1);
	size_t b = 0;
	while (b < METRICS_DURATION_BUCKETS && wall_ms > (double)duration_bounds_ms[b])
		b++;
	atomic_fetch_add(&m->duration_bucket[b], 1);
	atomic_fetch_add(&m->duration_ms_sum, (uint64_t)wall_ms);
}

void metrics_count_rejection(struct app_metrics *m, int code)
{
	if (code == -ZE_RATE_LIMITED)
		atomic_fetch_add(&m->rejected_rate, 1);
	else if (code == -ZE_QUOTA_EXCEEDED)
		atomic_fetch_add(&m->rejected_quota, 1);
}

void metrics_count_egress(struct app_metrics *m, const char *project, uint64_t requests, uint64_t bytes,
                          uint64_t refused)
{
	if (!requests && !bytes && !refused)
		return;
	pthread_mutex_lock(&m->egress_lock);
	if (!m->egress)
		m->egress = calloc(METRICS_EGRESS_PROJECTS + 1, sizeof(*m->egress));
	struct metrics_egress *e = NULL;
	for (size_t i = 0; m->egress && i < m->n_egress && !e; i++)
		if (strcmp(m->egress[i].project, project) == 0)
			e = &m->egress[i];
	if (m->egress && !e) {
		e = &m->egress[m->n_egress < METRICS_EGRESS_PROJECTS ? m->n_egress++ : METRICS_EGRESS_PROJECTS];
		snprintf(e->project, sizeof(e->project), "%s",
		         e == &m->egress[METRICS_EGRESS_PROJECTS] ? "other" : project);
	}
	if (e) {
		e->requests += requests;
		e->bytes += bytes;
		e->refused += refused;
	}
	pthread_mutex_unlock(&m->egress_lock);
}

/* The gateway's node totals, and each project's. */
static void render_egress(struct app *app, struct buf *out)
{
	struct egress_totals t = {0};
	if (app->exec.egress)
		egress_totals(app->exec.egress, &t);
	buf_printf(out,
	           "# HELP zmesh_egress_connections_total Connections sandboxes opened to the egress gateway.\n"
	           "# TYPE zmesh_egress_connections_total counter\nzmesh_egress_connections_total %" PRIu64 "\n",
	           t.connections);
	static const char *const names[][2] = {
	    {"zmesh_egress_requests_total", "Outbound requests through the egress gateway, refused ones included."},
	    {"zmesh_egress_bytes_total", "Bytes relayed by the egress gateway, both ways."},
	    {"zmesh_egress_refused_total", "Outbound requests the egress gateway refused (policy, limits, bounds)."}};
	struct app_metrics *m = &app->metrics;
	pthread_mutex_lock(&m->egress_lock);
	size_t n = m->n_egress + (m->egress && m->egress[METRICS_EGRESS_PROJECTS].project[0] ? 1 : 0);
	for (size_t k = 0; k < ELEMENTSOF(names); k++) {
		buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", names[k][0], names[k][1], names[k][0]);
		for (size_t i = 0; i < n; i++) {
			const struct metrics_egress *e = &m->egress[i < m->n_egress ? i : METRICS_EGRESS_PROJECTS];
			uint64_t v = k == 0 ? e->requests : k == 1 ? e->bytes : e->refused;
			buf_printf(out, "%s{project=\"%s\"} %" PRIu64 "\n", names[k][0], e->project, v);
		}
	}
	pthread_mutex_unlock(&m->egress_lock);
}

int metrics_render(struct app *app, struct buf *out)
{
	struct app_metrics *m = &app->metrics;
	buf_puts(out, "# HELP zmesh_invocations_total Invocations that ran, by outcome.\n"
	              "# TYPE zmesh_invocations_total counter\n");
	for (int o = EXEC_SUCCESS; o <= EXEC_SANDBOX_ERROR; o++)
		buf_printf(out, "zmesh_invocations_total{outcome=\"%s\"} %" PRIuFAST64 "\n",
		           errors_outcome_code((enum exec_outcome)o), atomic_load(&m->by_outcome[o]));
	buf_printf(out,
	           "# HELP zmesh_rejections_total Invocations refused before running.\n"
	           "# TYPE zmesh_rejections_total counter\n"
	           "zmesh_rejections_total{reason=\"rate_limited\"} %" PRIuFAST64 "\n"
	           "zmesh_rejections_total{reason=\"quota_exceeded\"} %" PRIuFAST64 "\n",
	           atomic_load(&m->rejected_rate), atomic_load(&m->rejected_quota));
	buf_puts(out, "# HELP zmesh_invocation_duration_ms Wall time of invocations.\n"
	              "# TYPE zmesh_invocation_duration_ms histogram\n");
	uint64_t cum = 0;
	for (int b = 0; b < METRICS_DURATION_BUCKETS; b++) {
		cum += atomic_load(&m->duration_bucket[b]);
		buf_printf(out, "zmesh_invocation_duration_ms_bucket{le=\"%" PRIu64 "\"} %" PRIu64 "\n",
		           duration_bounds_ms[b], cum);
	}
	cum += atomic_load(&m->duration_bucket[METRICS_DURATION_BUCKETS]);
	buf_printf(out,
	           "zmesh_invocation_duration_ms_bucket{le=\"+Inf\"} %" PRIu64 "\n"
	           "zmesh_invocation_duration_ms_sum %" PRIuFAST64 "\nzmesh_invocation_duration_ms_count %" PRIu64 "\n",
	           cum, atomic_load(&m->duration_ms_sum), cum);
	uint64_t used, waiting, rejected;
	limiter_stats(&app->limiter, &used, &waiting, &rejected);
	buf_printf(out,
	           "# HELP zmesh_active_sandboxes Sandboxes running an invocation now.\n"
	           "# TYPE zmesh_active_sandboxes gauge\nzmesh_active_sandboxes %" PRIuFAST64 "\n"
	           "# HELP zmesh_queue_waiting Invocations waiting for a free slot.\n"
	           "# TYPE zmesh_queue_waiting gauge\nzmesh_queue_waiting %" PRIu64 "\n",
	           atomic_load(&m->active), waiting);
	struct exec_pool_stats ps;
	exec_pool_get_stats(&app->exec, &ps);
	buf_printf(out,
	           "# HELP zmesh_starts_total Invocations by start: from the warm pool or a fresh spawn.\n"
	           "# TYPE zmesh_starts_total counter\nzmesh_starts_total{start=\"warm\"} %" PRIu64 "\n"
	           "zmesh_starts_total{start=\"cold\"} %" PRIu64 "\n",
	           ps.warm, ps.cold);
	static const struct {
		const char *name, *help, *type;
	} gauges[] = {
	    {"zmesh_pool_ready", "Sandboxes in the warm pool whose wrapper is loaded and waiting.", "gauge"},
	    {"zmesh_pool_ready_with_db",
	     "Of the ready, those with the database driver loaded (kept while functions that use zmesh.db are "
	     "invoked).",
	     "gauge"},
	    {"zmesh_pool_starting", "Sandboxes in the warm pool whose runtime is still starting.", "gauge"},
	    {"zmesh_pool_target", "Sandboxes the pool aims at, from recent demand within --pool-size.", "gauge"},
	};
	const uint64_t per_runtime[][2] = {{ps.ready_js, ps.ready_py},
	                                   {ps.ready_db_js, ps.ready_db_py},
	                                   {ps.starting_js, ps.starting_py},
	                                   {ps.target_js, ps.target_py}};
	for (size_t i = 0; i < ELEMENTSOF(gauges); i++)
		buf_printf(out,
		           "# HELP %s %s\n# TYPE %s %s\n%s{runtime=\"javascript\"} %" PRIu64
		           "\n%s{runtime=\"python\"} %" PRIu64 "\n",
		           gauges[i].name, gauges[i].help, gauges[i].name, gauges[i].type, gauges[i].name,
		           per_runtime[i][0], gauges[i].name, per_runtime[i][1]);
	buf_printf(out,
	           "# HELP zmesh_pool_memory_bytes Memory held by the sandboxes waiting in the pool.\n"
	           "# TYPE zmesh_pool_memory_bytes gauge\nzmesh_pool_memory_bytes %" PRIu64 "\n"
	           "# HELP zmesh_pool_discarded_total Pooled sandboxes that died or aged out before use.\n"
	           "# TYPE zmesh_pool_discarded_total counter\nzmesh_pool_discarded_total %" PRIu64 "\n",
	           ps.memory_bytes, ps.discarded);
	uint64_t queued, written, failed;
	records_stats(app->records, &queued, &written, &failed);
	const struct {
		const char *name, *help;
		atomic_uint_fast64_t *v;
	} ev[] = {
	    {"zmesh_jobs_enqueued_total", "Jobs this node put on the queue.", &app->metrics.events.enqueued},
	    {"zmesh_jobs_finished_total", "Job attempts this node finished, whatever the outcome.",
	     &app->metrics.events.finished},
	    {"zmesh_jobs_retried_total", "Job attempts that failed and were queued again.",
	     &app->metrics.events.retried},
	    {"zmesh_jobs_dead_total", "Jobs that failed every attempt and became dead letters.",
	     &app->metrics.events.dead},
	    {"zmesh_jobs_dropped_total", "Jobs dropped because their function was deleted.",
	     &app->metrics.events.dropped},
	    {"zmesh_jobs_requeued_total", "Jobs put back to wait for a concurrency slot (no attempt used).",
	     &app->metrics.events.requeued},
	    {"zmesh_jobs_lease_lapsed_total", "Jobs claimed again after their node's lease lapsed.",
	     &app->metrics.events.lapsed},
	    {"zmesh_events_filtered_total", "Events that made no job because a trigger's conditions did not hold.",
	     &app->metrics.events.filtered},
	    {"zmesh_cron_fired_total", "Schedule ticks this node fired.", &app->metrics.events.cron_fired},
	    {"zmesh_cron_missed_total", "Schedule ticks dropped because no node ran at the time (catch_up).",
	     &app->metrics.events.cron_missed},
	    {"zmesh_cron_overlap_skipped_total", "Schedule ticks skipped while the previous one was still running.",
	     &app->metrics.events.cron_overlap},
	    {"zmesh_webhooks_accepted_total", "Webhook deliveries whose signature held.",
	     &app->metrics.events.webhook_accepted},
	    {"zmesh_webhooks_rejected_total", "Webhook deliveries refused: signature missing or wrong, or stale.",
	     &app->metrics.events.webhook_rejected},
	    {"zmesh_webhooks_replayed_total", "Webhook deliveries whose id was seen before (nothing ran).",
	     &app->metrics.events.webhook_replayed},
	    {"zmesh_custom_events_total", "Custom events accepted (POST /projects/{pid}/events).",
	     &app->metrics.events.custom_received},
	    {"zmesh_custom_event_jobs_total", "Jobs queued for custom events (one per matching trigger).",
	     &app->metrics.events.custom_enqueued},
	    {"zmesh_cdc_changes_total", "Captured database changes this node moved out of project outboxes.",
	     &app->metrics.events.cdc_captured},
	    {"zmesh_cdc_jobs_total", "Jobs queued for database changes (one per matching trigger).",
	     &app->metrics.events.cdc_enqueued},
	};
	for (size_t i = 0; i < ELEMENTSOF(ev); i++)
		buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIuFAST64 "\n", ev[i].name, ev[i].help,
		           ev[i].name, ev[i].name, atomic_load(ev[i].v));
	render_egress(app, out);
	uint64_t lq, lw, ld, ls;
	logstream_stats(&lq, &lw, &ld, &ls);
	buf_printf(out,
	           "# HELP zmesh_log_lines_queued Live log lines waiting to be written.\n"
	           "# TYPE zmesh_log_lines_queued gauge\nzmesh_log_lines_queued %" PRIu64 "\n"
	           "# HELP zmesh_log_lines_written_total Live log rows written (lines, markers and end events).\n"
	           "# TYPE zmesh_log_lines_written_total counter\nzmesh_log_lines_written_total %" PRIu64 "\n"
	           "# HELP zmesh_log_lines_dropped_total Live log lines dropped because the queue was full.\n"
	           "# TYPE zmesh_log_lines_dropped_total counter\nzmesh_log_lines_dropped_total %" PRIu64 "\n"
	           "# HELP zmesh_log_streams Live log streams open on this node.\n"
	           "# TYPE zmesh_log_streams gauge\nzmesh_log_streams %" PRIu64 "\n",
	           lq, lw, ld, ls);
	if (app->usage) {
		struct usage_stats us;
		usage_stats(app->usage, &us);
		buf_printf(
		    out,
		    "# HELP zmesh_usage_counted_total Invocations counted against monthly caps, by where: in this "
		    "node's memory (written in batches) or by a statement of their own (near a cap).\n"
		    "# TYPE zmesh_usage_counted_total counter\n"
		    "zmesh_usage_counted_total{where=\"memory\"} %" PRIu64 "\n"
		    "zmesh_usage_counted_total{where=\"database\"} %" PRIu64 "\n"
		    "# HELP zmesh_usage_lost_total Counts in memory not written: their project was deleted.\n"
		    "# TYPE zmesh_usage_lost_total counter\nzmesh_usage_lost_total %" PRIu64 "\n",
		    us.in_memory, us.in_database, us.lost);
	}
	return buf_printf(out,
	                  "# HELP zmesh_records_queued Invocation records waiting to be written.\n"
	                  "# TYPE zmesh_records_queued gauge\nzmesh_records_queued %" PRIu64 "\n"
	                  "# HELP zmesh_records_written_total Invocation records written.\n"
	                  "# TYPE zmesh_records_written_total counter\nzmesh_records_written_total %" PRIu64 "\n"
	                  "# HELP zmesh_records_failed_total Invocation records the database refused.\n"
	                  "# TYPE zmesh_records_failed_total counter\nzmesh_records_failed_total %" PRIu64 "\n",
	                  queued, written, failed) < 0
	           ? out->failed
	           : pooler_render(app->pooler, out);
}
