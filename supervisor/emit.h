/* emit.h - a custom event fanned out to its project's triggers: the one
 * path of POST /projects/{pid}/events and of a function's zmesh.emit.
 *
 * Every enabled trigger "custom.<type>" of the project whose conditions hold
 * for the event it would deliver gets one job; the jobs (and their queued
 * records) commit in one statement, all or none. The event a function
 * receives: {trigger: "event", trigger_id, type, data, event_id, timestamp,
 * source, depth}: source "api", "api_key", or the emitting invocation's id;
 * depth 1 for an event from outside, one more than the emitting
 * invocation's own for zmesh.emit, at most EMIT_MAX_DEPTH. */
#pragma once

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "util.h"

#define EMIT_MAX_DEPTH 8

struct app;

struct emit_event {
	const char *type;     /* checked: val_event_type */
	json_t *data;         /* any JSON; NULL is null */
	const char *event_id; /* a UUID */
	const char *source;
	int depth;
};

/* On c (a control-plane connection). *ret_matched: the jobs queued. Counts
 * in app's metrics and wakes this node's workers. */
int emit_event(struct app *app, PGconn *c, const char *project_id, const struct emit_event *e, uint64_t *ret_matched,
               struct zerr *err);
