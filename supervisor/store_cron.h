/* store_cron.h - the scheduler's statements (sql/003_events.sql: triggers,
 * cron_fires, zmesh_enqueue): loading the cron triggers, firing a tick once
 * across nodes, listening for changes, pruning old fires. Same contract as
 * store.h. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "store.h"

/* The NOTIFY channel of any change to triggers (sql/003_events.sql). */
#define STORE_CRON_CHANNEL "zmesh_triggers"

/* The enabled cron triggers, at most max of them (ordered by id), as a JSON
 * array of {id, function_id, config, conditions, updated_ms, last_ms}:
 * updated_ms the trigger's updated_at (epoch ms, rounded down), last_ms the
 * latest scheduled_time any node fired (null when none). *ret_more: there
 * were more than max. */
int store_cron_load(PGconn *c, uint64_t max, json_t **ret, bool *ret_more, struct zerr *err);

/* The latest scheduled_time fired of a trigger (epoch ms); *ret_found false
 * when none. */
int store_cron_last_fire(PGconn *c, const char *trigger_id, int64_t *ret_ms, bool *ret_found, struct zerr *err);

/* LISTEN on STORE_CRON_CHANNEL: for a connection of its own. */
int store_cron_listen(PGconn *c, struct zerr *err);

enum store_cron_outcome {
	STORE_CRON_NOT_OURS, /* another node fired it, or the trigger is gone or disabled */
	STORE_CRON_FIRED,    /* a job is queued: ret_invocation_id */
	STORE_CRON_OVERLAP,  /* claimed, skipped: a job of the trigger is still queued or running */
	STORE_CRON_FILTERED, /* claimed, skipped: the conditions did not hold */
};

/* One tick of a trigger, claimed and handled in one transaction:
 * INSERT INTO cron_fires ON CONFLICT DO NOTHING decides which node goes on
 * (the trigger must still be enabled). The winner marks the fire skipped
 * ('overlap' when overlap_skip and a job of the trigger is in jobs,
 * 'filtered' when !matched), or queues event_json for the trigger's
 * function (current version, trigger "schedule") and keeps the invocation
 * id on the fire row. *ret_invocation_id is set for STORE_CRON_FIRED. On
 * failure nothing is claimed (rolled back). */
int store_cron_fire(PGconn *c, const char *trigger_id, int64_t scheduled_ms, bool overlap_skip, bool matched,
                    const char *event_json, enum store_cron_outcome *ret, char ret_invocation_id[STORE_ID_LEN + 1],
                    struct zerr *err);

/* Delete at most batch fires fired more than keep_days ago, except the latest
 * of each trigger (where counting ticks resumes). *ret_deleted: how many. */
int store_cron_prune(PGconn *c, int keep_days, uint64_t batch, uint64_t *ret_deleted, struct zerr *err);
