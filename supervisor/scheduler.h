/* scheduler.h - this node's scheduler of cron triggers (triggers with
 * event_type "cron"): exactly once across nodes, without a leader.
 *
 * Every node runs one scheduler thread with the same loop:
 *
 *   load    the enabled cron triggers, with the last tick any node fired of
 *           each (max(scheduled_time) in cron_fires), at start, when a
 *           NOTIFY on zmesh_triggers arrives (a connection of its own,
 *           reconnected with backoff when lost), and every
 *           SCHED_RELOAD_MS anyway: nothing depends on a notification.
 *   sleep   until the earliest next tick of any trigger (cron_next in the
 *           trigger's zone), a notification, or stop.
 *   fire    each due tick in one transaction: INSERT INTO cron_fires
 *           (trigger_id, scheduled_time) ON CONFLICT DO NOTHING. The primary
 *           key lets exactly one node win; only the winner goes on: with
 *           overlap "skip" and a job of the trigger still queued or running
 *           the fire row says skipped = 'overlap'; when the trigger's
 *           conditions do not hold for the event, skipped = 'filtered';
 *           otherwise the event is queued (zmesh_enqueue, the function's
 *           current version, trigger "schedule") and the fire row keeps its
 *           invocation id. After the commit the node's workers are woken.
 *
 * Missed ticks. A tick is late when it is due but was not fired at its
 * time, and missed when it is late by more than SCHED_MISFIRE_MS (every node
 * was down, or the database was). A late tick within the threshold fires as
 * usual. Missed ones follow the trigger's catch_up: "skip" drops them (and
 * counts them), "latest" fires the most recent one once, "all" fires every
 * one within the last SCHED_WINDOW_MS, at most SCHED_CATCH_UP_MAX (the most
 * recent) per trigger and pass. Ticks are counted from the last one any
 * node fired, but never from before the trigger's updated_at: a trigger
 * created, changed or enabled again does not back-fill what came before. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cron.h"
#include "error.h"
#include "tz.h"

/* Late by more than this, a tick counts as missed (catch_up decides). Long
 * enough that a node or database pausing for a few seconds drops nothing;
 * short enough that a tick rarely runs long after its time. */
#define SCHED_MISFIRE_MS 10000
/* catch_up "all" reaches this far back. */
#define SCHED_WINDOW_MS (24 * 3600 * 1000LL)
/* Missed ticks fired per trigger and pass under catch_up "all". */
#define SCHED_CATCH_UP_MAX 1000
/* On-time ticks fired per trigger and pass (at most one a second within the
 * misfire threshold). */
#define SCHED_ONTIME_MAX (SCHED_MISFIRE_MS / 1000 + 1)
#define SCHED_PLAN_MAX   (SCHED_CATCH_UP_MAX + SCHED_ONTIME_MAX)
/* The triggers are read again this often even without a notification. */
#define SCHED_RELOAD_MS 5000
/* Cron triggers one node schedules; more are logged and left out. */
#define SCHED_TRIGGERS_MAX 20000
/* cron_fires rows older than this are deleted (the last of each trigger
 * stays: it is where counting resumes), SCHED_PRUNE_BATCH at a time. */
#define SCHED_KEEP_DAYS   7
#define SCHED_PRUNE_MS    (10 * 60 * 1000)
#define SCHED_PRUNE_BATCH 10000

struct app;
struct sched;

enum sched_catch_up { SCHED_CATCH_UP_SKIP, SCHED_CATCH_UP_LATEST, SCHED_CATCH_UP_ALL };
enum sched_overlap { SCHED_OVERLAP_ALLOW, SCHED_OVERLAP_SKIP };

/* Start the scheduler thread and set app->sched. Needs app->pool open.
 * The database being away is not a failure here: the thread retries. */
int sched_start(struct app *app, struct zerr *err);
/* Stop at once (a fire in flight completes; nothing waits for the next
 * tick), join and free. Accepts NULL. */
void sched_stop(struct sched *s);

/* ---- pure parts (unit-tested) ---- */

/* A cron trigger's config, as the API stores it:
 * {schedule, timezone?, payload?, catch_up?, overlap?}. A row written by
 * other hands may lack defaults (timezone "UTC", payload null, catch_up
 * "skip", overlap "allow"); anything else malformed (not an object, no
 * schedule, a schedule that does not parse, a value of the wrong type or not
 * in its list, an invalid zone name) is -EINVAL with a message naming the
 * key. The zone is named, not loaded (tz_load is I/O). */
struct sched_config {
	char schedule[CRON_EXPR_MAX + 1];
	struct cron cron;
	char timezone[TZ_NAME_MAX + 1];
	json_t *payload; /* a new reference: sched_config_done */
	enum sched_catch_up catch_up;
	enum sched_overlap overlap;
};
int sched_config_parse(json_t *config, struct sched_config *ret, struct zerr *err);
void sched_config_done(struct sched_config *c);

/* What to fire of a trigger at now_ms whose ticks up to after_ms are dealt
 * with (the last fired one, or the trigger's updated_at): the ticks t with
 * after_ms < t <= now_ms, those late by more than SCHED_MISFIRE_MS handled
 * by policy. Missed ticks are enumerated within SCHED_WINDOW_MS only (at
 * most 86,400 cron_next calls: ticks are whole seconds); older ones are
 * dropped whatever the policy, but for "latest" when the window holds none. */
struct sched_plan {
	int64_t fire[SCHED_PLAN_MAX]; /* UTC epoch ms, ascending */
	size_t n_fire;
	uint64_t missed;                   /* ticks dropped */
	bool missed_more;                  /* and more before the window, not counted one by one */
	int64_t missed_first, missed_last; /* the range of the counted dropped ticks (when missed > 0) */
	bool capped;                       /* catch_up "all" left out ticks past SCHED_CATCH_UP_MAX */
	int64_t next;                      /* the first tick after now_ms (0: none within cron's horizon) */
};
/* Fills *ret. Returns 0, or -ERANGE when a time is outside cron_next's
 * range (now_ms always, after_ms when it is read). z NULL is UTC. */
int sched_plan(const struct cron *c, const struct tz *z, int64_t after_ms, int64_t now_ms, enum sched_catch_up policy,
               struct sched_plan *ret);

/* The most recent tick of c in (lo_ms, hi_ms], found by bisection on
 * cron_next (about 2 log2((hi - lo) / 1 s) calls). -ENOENT when there is
 * none, -ERANGE when lo_ms or hi_ms (of a non-empty range) is outside
 * cron_next's range. */
int sched_last_tick(const struct cron *c, const struct tz *z, int64_t lo_ms, int64_t hi_ms, int64_t *ret_ms);

/* UTC epoch ms as RFC 3339 with milliseconds, "2024-03-10T07:00:00.000Z". */
#define SCHED_TIME_LEN 32
void sched_time_format(int64_t ms, char buf[SCHED_TIME_LEN]);

/* The event of a tick: {trigger: "schedule", trigger_id, cron, scheduled_time,
 * actual_time, payload} (payload borrowed; NULL is JSON null). NULL when out
 * of memory. */
json_t *sched_event(const char *trigger_id, const char *schedule, int64_t scheduled_ms, int64_t actual_ms,
                    json_t *payload);
