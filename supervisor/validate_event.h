/* validate_event.h - custom events as the API accepts them: the name of an
 * event type, shared by triggers (event_type "custom.<type>") and by
 * POST /projects/{pid}/events {type, data}; pure, no I/O.
 *
 * A type is 1..VE_TYPE_MAX bytes of a-z 0-9 . _ - (such as "order.paid").
 * It never starts with "custom.": the trigger of type "order.paid" is
 * "custom.order.paid", and a type that looked like a trigger's event_type
 * would name another one ("custom.custom.order.paid"). */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "error.h"
#include "events.h"

#define VE_TYPE_MAX      ZEV_EVENT_TYPE_MAX
#define VE_CUSTOM_PREFIX ZEV_CUSTOM_PREFIX

/* Whether s is a custom event type; on false, *why (may be NULL) says what
 * is wrong, a phrase for a message ("is empty", ...). */
bool val_event_type(const char *s, const char **why);

/* Whether s is "custom.<type>" with a valid type. */
bool val_event_trigger_type(const char *s);

/* A POST /projects/{pid}/events body: {type, data?}. On success *ret_type
 * and *ret_data borrow from body (data JSON null when absent).
 * -ZE_BAD_REQUEST for a body that is not an object, -ZE_UNKNOWN_FIELD
 * naming a field that is not one, -ZE_INVALID_EVENT with a message that
 * starts with "type: ". The size of data is the body's limit (max-body),
 * checked by the HTTP layer, as for an asynchronous invocation's payload. */
int val_event_body(json_t *body, const char **ret_type, json_t **ret_data, struct zerr *err);
