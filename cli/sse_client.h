/* sse_client.h - an incremental parser of Server-Sent Events (the WHATWG
 * "event stream" format), for `zmesh logs --follow`. The stream is outside
 * input: lines and events are bounded, malformed parts are skipped, nothing
 * makes it fail but memory. Pure (fuzzed: tests/fuzz/fuzz_sse_client.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define SSE_CLIENT_LINE_MAX  (1024 * 1024) /* one line; longer ones are dropped whole */
#define SSE_CLIENT_DATA_MAX  (1024 * 1024) /* one event's data; a longer event is dropped */
#define SSE_CLIENT_FIELD_MAX 64            /* event and id values kept; longer ones are dropped */

/* One event: its type ("message" when the stream named none), the stream's
 * last event id ("" when none) and its data (NUL-terminated, len bytes,
 * lines joined by '\n'). */
typedef void (*sse_client_fn)(void *ctx, const char *event, const char *id, const char *data, size_t len);

struct sse_client {
	char *line; /* SSE_CLIENT_LINE_MAX + 1 */
	size_t line_len;
	bool line_over; /* the current line is too long: dropped */
	bool after_cr;  /* the last byte was a CR: a LF right after it is the same line end */
	char *data;     /* SSE_CLIENT_DATA_MAX + 1 */
	size_t data_len;
	bool data_over;
	bool has_data;
	char event[SSE_CLIENT_FIELD_MAX + 1];
	char id[SSE_CLIENT_FIELD_MAX + 1];
	long retry_ms; /* the last valid retry: field, -1: none */
};

/* 0, or -1 when out of memory. */
int sse_client_init(struct sse_client *p);
void sse_client_done(struct sse_client *p);
/* Feed bytes as they come; fn is called for each complete event. */
void sse_client_feed(struct sse_client *p, const char *buf, size_t len, sse_client_fn fn, void *ctx);
