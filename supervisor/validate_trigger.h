/* validate_trigger.h - the shape of a trigger as the API accepts it
 * (POST /projects/{pid}/triggers, PATCH .../triggers/{tid}), checked before
 * anything is stored. The one I/O is reading a time zone's file (tz_load):
 * a zone is valid when the scheduler can load it.
 *
 * Every failure is -ZE_INVALID_TRIGGER with a message that starts with the
 * field's path ("config.schedule: ...", "conditions[1].op: ..."), or
 * -ZE_UNKNOWN_FIELD for an unknown top-level field. Normalised configs have
 * every default filled, so what is stored is what runs:
 *   cron    {schedule, timezone "UTC", payload null, catch_up "skip",
 *            overlap "allow"}
 *   webhook {verify, respond "async"} + for hmac {header, encoding "hex",
 *            prefix?} + for stripe and hmac {id_header?}
 *   custom  {} (no settings yet; any key is unknown)
 *   cdc     {} (the same; event_type "cdc.<OP>.<table>", cdc.h)
 * A webhook's secret never stays in the config: it is returned apart
 * (secret) and kept in its own column. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "error.h"
#include "webhook_sig.h"

#define VT_CONFIG_MAX_BYTES     (64 * 1024) /* a config as compact JSON (a cron payload lives in it) */
#define VT_CONDITIONS_MAX_BYTES (16 * 1024) /* conditions as compact JSON */
#define VT_FUNCTION_REF_MAX     64          /* an id (36) or a slug (63) */
#define VT_HEADER_NAME_MAX      64          /* a header name in a webhook config */
#define VT_PREFIX_MAX           64          /* an hmac signature's prefix */

/* VT_CUSTOM: event_type "custom.<type>" (validate_event.h), which custom
 * events of that type run (POST /projects/{pid}/events). */
enum vt_type { VT_CRON, VT_WEBHOOK, VT_CUSTOM, VT_CDC };

struct val_trigger {
	bool has_type;
	enum vt_type type;
	const char *event_type;   /* as stored ("cron", "custom.order.paid"), borrowed; NULL when absent */
	const char *function_ref; /* id or slug, borrowed from the body; NULL when absent */
	json_t *config;           /* normalised, owned; NULL when absent (PATCH) */
	json_t *conditions;       /* owned; NULL when absent (PATCH) */
	int enabled;              /* -1 absent, else 0 or 1 */
	/* webhook: the scheme (verify), whether it signs (not "none"), and
	 * the secret given in config (borrowed), or NULL. */
	bool signed_;
	enum whsig_scheme scheme;
	const char *secret;
};
void val_trigger_done(struct val_trigger *t);
#define _cleanup_val_trigger_ _cleanup_(val_trigger_done)

/* The name of a type: "cron", "webhook", "custom" (a custom trigger's
 * event_type is "custom.<type>"). */
const char *val_trigger_type_name(enum vt_type t);
/* The type of a stored or given event_type: "cron", "webhook", or
 * "custom.<type>" with a valid type, or "cdc.<OP>.<table>" (cdc.h); -EINVAL
 * otherwise. */
int val_trigger_type_parse(const char *s, enum vt_type *ret);

/* A create body: {event_type, function_id, config?, conditions?, enabled?}
 * (config is required for a webhook, whose verify has no default). On
 * success *ret holds the normalised trigger (release with
 * val_trigger_done); conditions default to []. */
int val_trigger_create(json_t *body, struct val_trigger *ret, struct zerr *err);

/* A PATCH body of a trigger whose stored event_type is cur: {config?,
 * conditions?, enabled?, function_id?, event_type? (only cur itself)}.
 * Absent fields stay absent in *ret; ret->type and ret->event_type are
 * cur's. -ZE_INVALID_TRIGGER "event_type: ..." when cur is not a type this
 * module knows (a trigger that cannot be changed through the API yet). */
int val_trigger_patch(json_t *body, const char *cur, struct val_trigger *ret, struct zerr *err);

/* A webhook's stored config (normalised) as whsig settings: scheme (or
 * *ret_signed false for "none"), header, prefix, encoding and id_header
 * borrowed from config; secrets left to the caller. -EINVAL when config is
 * not a valid webhook config (never for what this module stored). */
int val_trigger_whsig(json_t *config, bool *ret_signed, enum whsig_scheme *ret_scheme, struct whsig_config *ret,
                      bool *ret_sync);
