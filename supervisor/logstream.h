/* logstream.h - live logs: a function's lines reach PostgreSQL while it
 * runs, and streams (GET /projects/{pid}/functions/{fid}/logs/stream,
 * api_logs.c) read them from there as Server-Sent Events, on any node.
 *
 * Writing: the executor's capture loop hands each chunk of stderr to the
 * invocation's sink (logsink_feed), which cuts complete lines and queues
 * them (a bounded queue, common/workq.h) for one writer thread that inserts
 * them in batches (at most every 50 ms or 256 lines) on a connection of its
 * own. Nothing waits for the database: a line that finds the queue full is
 * counted, and a "dropped" row says how many when the queue takes lines
 * again (or at the end). The invocation's log cap (exec_ctx.max_log_bytes)
 * bounds what is fed; when it cut the logs, a last "system" line says so.
 * logsink_close queues the final partial line, the markers and the "end"
 * row (status, duration), in that order, after the invocation's lines.
 *
 * Reading: each stream polls its function's rows every 250 ms (and at once
 * when this node's writer committed a batch); see docs/ARCHITECTURE.md
 * (Live logs) for why a poll and not LISTEN, and for the ordering hazard of
 * bigserial ids and how it is handled (a settle window of ids already sent).
 *
 * A single instance per process: logstream_start() before the HTTP server,
 * logstream_stop() after it. Without it, sinks are NULL and streams refused. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "db.h"
#include "error.h"

struct logstream_config {
	unsigned max_streams;             /* open streams per node: 64 (ZMESH_LOG_STREAMS_MAX) */
	unsigned max_streams_per_project; /* of those, per project: 8 (ZMESH_LOG_STREAMS_PER_PROJECT) */
	unsigned retention_s;             /* rows older are swept: 3600 (ZMESH_LOG_RETENTION_S) */
	unsigned retention_rows;          /* rows kept per function: 10000 (ZMESH_LOG_RETENTION_ROWS) */
	unsigned sweep_ms;                /* sweep period: 60000 (ZMESH_LOG_SWEEP_MS) */
	unsigned queue;                   /* rows queued at most: 8192 (ZMESH_LOG_QUEUE) */
};

/* Defaults, then the environment variables named above (bad values ignored). */
void logstream_config_from_env(struct logstream_config *cfg);
int logstream_start(struct db_pool *pool, const struct logstream_config *cfg, struct zerr *err);
/* Streams end at their next turn (the daemon stops). */
void logstream_quiesce(void);
/* Write what is queued, stop the writer and the sweeper. */
void logstream_stop(void);
/* Rows queued now, rows written, lines dropped, streams open (for tests and /metrics). */
void logstream_stats(uint64_t *ret_queued, uint64_t *ret_written, uint64_t *ret_dropped, uint64_t *ret_streams);

/* ---- an invocation's sink ---- */
struct logsink;
/* NULL when live logs are not running (or out of memory): feed nothing. */
struct logsink *logsink_open(const char *project_id, const char *function_id, const char *invocation_id);
/* The executor's callback (exec_request.on_logs): raw stderr bytes as they
 * come. Never blocks. */
void logsink_feed(void *sink, const char *data, size_t len);
/* The invocation is over: its last partial line, the truncation marker
 * (when truncated), a dropped marker, and the end event. Frees. NULL is
 * accepted. */
void logsink_close(struct logsink *s, bool truncated, const char *status, double duration_ms);

/* ---- streams ---- */
struct logstream_reader;
/* Take a stream slot for project_id and start reading function_id's rows
 * after last_id (-1: from now on). -ZE_RATE_LIMITED past the project's
 * share, -ZE_UNAVAILABLE past the node's (err says which). */
int logstream_open(const char *project_id, const char *function_id, int64_t last_id, struct logstream_reader **ret,
                   struct zerr *err);
/* The next bytes of the stream into buf (at most max): blocks until there
 * is an event or a heartbeat is due; checks stopping() (with arg) between
 * waits of at most 250 ms. Returns > 0, or -1 when the stream is over. */
long logstream_read(struct logstream_reader *r, char *buf, size_t max, bool (*stopping)(const void *arg),
                    const void *arg);
void logstream_close(void *reader);

/* ---- Server-Sent Events, pure (fuzzed: tests/fuzz/fuzz_sse.c) ---- */
#define SSE_RETRY_MS 2000
/* A Last-Event-ID value: 1..19 decimal digits, at most INT64_MAX (spaces
 * around it are allowed, nothing else). 0 or -EINVAL. */
int sse_parse_event_id(const char *s, int64_t *ret);
/* Append "event: NAME\nid: ID\ndata: DATA\n\n" (id omitted when < 0). NAME
 * is [a-z]{1,16}; data must hold no CR or LF (compact JSON never does).
 * -EINVAL otherwise, or buf's error. */
int sse_append_event(struct buf *b, const char *name, int64_t id, const char *data, size_t len);
