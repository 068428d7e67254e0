/* emit.c - see emit.h */
#define _GNU_SOURCE
#include "emit.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "buf.h"
#include "conditions.h"
#include "invoke.h"
#include "jobs.h"
#include "store_triggers.h"
#include "validate_event.h"

/* "{id,id,...}" of STORE_TRIGGERS_MAX ids at most, and room to spare. */
#define TRIGGER_IDS_MAX ((STORE_TRIGGERS_MAX + 1) * (STORE_ID_LEN + 1) + 2)

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

int emit_event(struct app *app, PGconn *c, const char *project_id, const struct emit_event *e, uint64_t *ret_matched,
               struct zerr *err)
{
	char event_type[sizeof(VE_CUSTOM_PREFIX) + VE_TYPE_MAX], ts[INV_TIMESTAMP_LEN];
	snprintf(event_type, sizeof(event_type), VE_CUSTOM_PREFIX "%s", e->type);
	inv_timestamp_now(ts);
	_cleanup_(json_decrefp) json_t *event =
	    json_pack("{s:s, s:n, s:s, s:O, s:s, s:s, s:s, s:i}", "trigger", "event", "trigger_id", "type", e->type,
	              "data", e->data ? e->data : json_null(), "event_id", e->event_id, "timestamp", ts, "source",
	              e->source, "depth", e->depth);
	if (!event)
		return zerr_set(err, -ENOMEM, "out of memory building the event");
	_cleanup_(json_decrefp) json_t *candidates = NULL;
	_cleanup_buf_ struct buf ids = BUF_INIT(TRIGGER_IDS_MAX);
	uint64_t filtered = 0, n = 0;
	int r = store_event_triggers(c, project_id, event_type, &candidates, err);
	if (r == 0)
		r = match(candidates, event, &ids, &filtered, err);
	/* Outside the statement, event's trigger_id is null; the statement sets
	 * each job's own. */
	if (r == 0 && json_array_size(candidates) > filtered)
		r = store_event_enqueue(c, project_id, event_type, ids.data, event, &n, err);
	if (r < 0)
		return r;
	atomic_fetch_add(&app->metrics.events.custom_received, 1);
	atomic_fetch_add(&app->metrics.events.filtered, filtered);
	if (n > 0) {
		atomic_fetch_add(&app->metrics.events.custom_enqueued, n);
		atomic_fetch_add(&app->metrics.events.enqueued, n);
		jobs_wake(app->jobs);
	}
	*ret_matched = n;
	return 0;
}
