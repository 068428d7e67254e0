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
 * The event a function receives: {trigger: "event", trigger_id, type, data,
 * event_id, timestamp, source}; conditions are matched against it. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "buf.h"
#include "conditions.h"
#include "invoke.h"
#include "jobs.h"
#include "store_triggers.h"
#include "validate_event.h"

/* "{id,id,...}" of STORE_TRIGGERS_MAX ids at most, and room to spare. */
#define TRIGGER_IDS_MAX ((STORE_TRIGGERS_MAX + 1) * (STORE_ID_LEN + 1) + 2)

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

/* The triggers of candidates whose conditions hold for event, as an array
 * literal in ids; event's trigger_id is each one's in turn while it is
 * matched, and null after. *ret_filtered: those whose conditions did not. */
static int match(json_t *candidates, json_t *event, struct buf *ids, uint64_t *ret_filtered, struct zerr *err)
{
	size_t i;
	json_t *t;
	uint64_t filtered = 0;
	bool first = true;
	buf_puts(ids, "{");
	json_array_foreach (candidates, i, t) {
		json_t *id = json_object_get(t, "id");
		if (!json_is_string(id) || json_object_set(event, "trigger_id", id) < 0)
			return zerr_set(err, -EIO, "a custom event trigger without an id");
		if (!cond_match(json_object_get(t, "conditions"), event)) {
			filtered++;
			continue;
		}
		buf_printf(ids, "%s%s", first ? "" : ",", json_string_value(id));
		first = false;
	}
	json_object_set_new(event, "trigger_id", json_null());
	*ret_filtered = filtered;
	if (buf_puts(ids, "}") < 0)
		return zerr_set(err, -ENOMEM, "out of memory listing the triggers");
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

	char event_type[sizeof(VE_CUSTOM_PREFIX) + VE_TYPE_MAX], event_id[STORE_ID_LEN + 1], ts[INV_TIMESTAMP_LEN];
	snprintf(event_type, sizeof(event_type), VE_CUSTOM_PREFIX "%s", type);
	inv_uuid(event_id);
	inv_timestamp_now(ts);
	_cleanup_json_ json_t *event =
	    json_pack("{s:s, s:n, s:s, s:O, s:s, s:s, s:s}", "trigger", "event", "trigger_id", "type", type, "data",
	              data, "event_id", event_id, "timestamp", ts, "source", by_key ? "api_key" : "api");
	if (!event)
		return zerr_set(err, -ENOMEM, "out of memory building the event");
	http_log_field(req, "event_id", event_id);

	_cleanup_json_ json_t *candidates = NULL;
	_cleanup_buf_ struct buf ids = BUF_INIT(TRIGGER_IDS_MAX);
	uint64_t filtered = 0, n = 0;
	r = store_event_triggers(k.c, k.p.id, event_type, &candidates, err);
	if (r == 0)
		r = match(candidates, event, &ids, &filtered, err);
	/* Outside the statement, event's trigger_id is null; the statement sets
	 * each job's own. */
	if (r == 0 && json_array_size(candidates) > filtered)
		r = store_event_enqueue(k.c, k.p.id, event_type, ids.data, event, &n, err);
	if (r < 0)
		return r;
	atomic_fetch_add(&app->metrics.events.custom_received, 1);
	atomic_fetch_add(&app->metrics.events.filtered, filtered);
	if (n > 0) {
		atomic_fetch_add(&app->metrics.events.custom_enqueued, n);
		atomic_fetch_add(&app->metrics.events.enqueued, n);
		jobs_wake(app->jobs);
	}
	char matched[24];
	snprintf(matched, sizeof(matched), "%llu", (unsigned long long)n);
	http_log_field(req, "event_type", event_type);
	http_log_field(req, "matched", matched);
	return api_accepted(req, json_pack("{s:s, s:I}", "event_id", event_id, "matched", (json_int_t)n));
}
