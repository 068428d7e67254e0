/* api_events.c - custom events: POST /projects/{pid}/events {type, data}.
 *
 * The caller is a member of the project (a bearer token, source "api") or
 * holds an API key of it (x-api-key, source "api_key"; a key of another
 * project is 403); a request with both is judged by its key alone. Every
 * enabled trigger "custom.<type>" of the project whose conditions hold for
 * the event it would deliver gets one job; the jobs (and their queued
 * records) commit in one statement before the answer, 202 {event_id,
 * matched}, and matched may be 0. A project has at most STORE_TRIGGERS_MAX
 * triggers, so an event makes at most that many jobs (the oldest, should
 * concurrent creates have passed the bound).
 *
 * The fan-out itself is emit.c's, shared with a function's zmesh.emit; the
 * event's depth is 1. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "emit.h"
#include "invoke.h"
#include "store_triggers.h"
#include "validate_event.h"

/* The key's project must be {pid} (an id or a slug): a key of another
 * project is refused whether or not {pid} exists. */
static int key_for_project(struct http_request *req, struct app *app, struct call *k, struct zerr *err)
{
	int r = api_begin_key(req, app, NULL, k, err);
	if (r < 0)
		return r;
	const char *pid = http_param(req, "pid");
	if (!pid || (strcmp(pid, k->p.id) != 0 && strcmp(pid, k->p.slug) != 0))
		return ze(err, ZE_FORBIDDEN, "the API key belongs to another project");
	return 0;
}

HANDLER(h_events_emit)
{
	_cleanup_call_ struct call k;
	/* A key when one is given, else the bearer token. */
	bool by_key = http_header(req, "x-api-key") != NULL;
	int r = by_key ? key_for_project(req, app, &k, err) : api_begin(req, app, STORE_PROJECT, &k, err);
	if (r < 0)
		return r;
	_cleanup_json_ json_t *body = body_json(req, err);
	if (!body)
		return err->code;
	const char *type = NULL;
	json_t *data = NULL;
	r = val_event_body(body, &type, &data, err);
	if (r < 0)
		return r;
	char event_id[STORE_ID_LEN + 1];
	inv_uuid(event_id);
	http_log_field(req, "event_id", event_id);
	struct emit_event e = {
	    .type = type, .data = data, .event_id = event_id, .source = by_key ? "api_key" : "api", .depth = 1};
	uint64_t n = 0;
	r = emit_event(app, k.c, k.p.id, &e, &n, err);
	if (r < 0)
		return r;
	char matched[24];
	snprintf(matched, sizeof(matched), "%llu", (unsigned long long)n);
	http_log_field(req, "event_type", type);
	http_log_field(req, "matched", matched);
	return api_accepted(req, json_pack("{s:s, s:I}", "event_id", event_id, "matched", (json_int_t)n));
}
