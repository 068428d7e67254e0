/* events.h - limits of the events API that both zmeshd (which enforces
 * them) and the CLI (which refuses bad arguments before sending) know: one
 * definition. */
#pragma once

/* A function's retries of a queued event, after the first attempt. */
#define ZEV_RETRIES_MAX 10
/* The oldest a queued event may be and still start, in seconds. */
#define ZEV_EVENT_AGE_MIN_S 60
#define ZEV_EVENT_AGE_MAX_S 21600
/* Idempotency-Key: 1 to this many printable ASCII characters. */
#define ZEV_IDEMPOTENCY_KEY_MAX 255
/* A custom event's type: 1 to this many bytes of ZEV_EVENT_TYPE_CHARS, not
 * starting with ZEV_CUSTOM_PREFIX; the trigger that listens to type T has
 * the event_type ZEV_CUSTOM_PREFIX T. */
#define ZEV_EVENT_TYPE_MAX   100
#define ZEV_EVENT_TYPE_CHARS "abcdefghijklmnopqrstuvwxyz0123456789._-"
#define ZEV_CUSTOM_PREFIX    "custom."
