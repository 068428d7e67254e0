/* store_triggers.h - the statements of triggers and webhook deliveries
 * (sql/003_events.sql): the triggers resource, a webhook's lookup, and a
 * delivery made durable exactly once across nodes. Same contract as store.h:
 * a connection the caller holds, 0 or a negative code with err filled, JSON
 * built by PostgreSQL (*ret a new reference).
 *
 * The trigger JSON: {id, project_id, function_id, function (its slug),
 * event_type, config, conditions, enabled, created_at, updated_at} and, for
 * a webhook, url "/webhooks/<id>". Secrets are never part of it. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "store.h"

#define STORE_TRIGGERS_MAX 100 /* triggers of one project */

/* What create and update store. NULL (or enabled -1) leaves a column as it
 * is on update; on create every field but secret is set. function_ref is
 * an id or a slug of a function of the trigger's project. */
struct store_trigger_in {
	const char *function_ref;
	const char *event_type;
	json_t *config;
	json_t *conditions;
	int enabled;
	const char *secret; /* update: set only when set_secret */
	bool set_secret;    /* update: write secret (NULL clears it) */
};

/* -ZE_INVALID_TRIGGER "function_id: no such function in this project" when
 * function_ref names no function of project_id; -ZE_PROJECT_LIMIT when the
 * project has STORE_TRIGGERS_MAX triggers. */
int store_trigger_create(PGconn *c, const char *project_id, const struct store_trigger_in *in, json_t **ret,
                         struct zerr *err);
/* {triggers: [...]} newest first. */
int store_triggers_list(PGconn *c, const char *project_id, json_t **ret, struct zerr *err);
/* -ZE_NOT_FOUND "no such trigger" unless trigger_id is one of project_id's
 * (also for a trigger_id that is not an id). */
int store_trigger_get(PGconn *c, const char *project_id, const char *trigger_id, json_t **ret, struct zerr *err);

/* What a change needs to know of the stored trigger. */
struct store_trigger_state {
	char id[STORE_ID_LEN + 1];
	char event_type[160];
	json_t *config; /* owned */
	char *secret;   /* owned, NULL when none: never logged, never answered */
};
void store_trigger_state_done(struct store_trigger_state *s);
int store_trigger_state(PGconn *c, const char *project_id, const char *trigger_id, struct store_trigger_state *ret,
                        struct zerr *err);
/* Errors as create and get. */
int store_trigger_update(PGconn *c, const char *project_id, const char *trigger_id, const struct store_trigger_in *in,
                         json_t **ret, struct zerr *err);
int store_trigger_delete(PGconn *c, const char *project_id, const char *trigger_id, struct zerr *err);
/* Make secret the current one and keep the current one valid for 24 h.
 * *ret: {id, secret, previous_secret_expires_at}. -ZE_NOT_FOUND as get;
 * -ZE_INVALID_TRIGGER when the trigger has no secret. */
int store_trigger_rotate_secret(PGconn *c, const char *project_id, const char *trigger_id, const char *secret,
                                json_t **ret, struct zerr *err);

/* ---- webhooks ---- */

/* An enabled webhook trigger, its project and its function. */
struct store_webhook {
	char id[STORE_ID_LEN + 1];
	json_t *config;        /* owned */
	json_t *conditions;    /* owned */
	char *secret;          /* owned; NULL for verify none */
	char *previous_secret; /* owned; NULL unless still valid */
	struct project p;
	struct function f; /* owned parts: store_webhook_done */
};
void store_webhook_done(struct store_webhook *w);
/* -ZE_NOT_FOUND for an id that is not an enabled webhook trigger's. */
int store_webhook_lookup(PGconn *c, const char *trigger_id, struct store_webhook *ret, struct zerr *err);

/* Queue event for the webhook's function, as one delivery: with a
 * delivery_id (NULL: none) seen for this trigger within 24 h, nothing is
 * queued and *ret_replayed is true, *ret_id the first delivery's
 * invocation id ("" if it had none); otherwise the delivery row, the queued
 * record and the job commit together (a delivery row older than 24 h counts
 * as absent and is replaced). Atomic across nodes: concurrent deliveries of
 * one id wait on each other and one wins. */
int store_webhook_enqueue(PGconn *c, const char *trigger_id, const char *delivery_id, const char *function_id,
                          json_t *event, char ret_id[STORE_ID_LEN + 1], bool *ret_replayed, struct zerr *err);
/* For a webhook answered synchronously: claim delivery_id with the
 * invocation id about to run (invocation_id), or learn it is a replay
 * (*ret_replayed, *ret_id the first one's). */
int store_webhook_claim(PGconn *c, const char *trigger_id, const char *delivery_id, const char *invocation_id,
                        char ret_id[STORE_ID_LEN + 1], bool *ret_replayed, struct zerr *err);
/* Give a claimed delivery up (the invocation was refused before it ran), so
 * that the sender's retry runs. */
int store_webhook_unclaim(PGconn *c, const char *trigger_id, const char *delivery_id, struct zerr *err);

/* ---- custom events ---- */

/* The enabled triggers of project_id whose event_type is event_type
 * ("custom.<type>"), oldest first, at most STORE_TRIGGERS_MAX: *ret is
 * [{id, conditions}]. */
int store_event_triggers(PGconn *c, const char *project_id, const char *event_type, json_t **ret, struct zerr *err);
/* Queue event for each trigger of trigger_ids (a PostgreSQL array literal
 * of uuids) that is still an enabled event_type trigger of project_id, with
 * its trigger_id added to event, for its function's current version: the
 * queued records and the jobs in one statement, so all or none commit.
 * *ret_n: the jobs queued (a trigger deleted or disabled meanwhile, or whose
 * function is gone, queues none). The caller then wakes this node's workers
 * (jobs_wake). */
int store_event_enqueue(PGconn *c, const char *project_id, const char *event_type, const char *trigger_ids,
                        json_t *event, uint64_t *ret_n, struct zerr *err);
