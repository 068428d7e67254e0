/* pooler.h - the API process's side of the node's pgbouncer (pgbouncer.h):
 * it keeps every project role's pool bound to its tier's db_connections,
 * and reads the pools' statistics for /metrics.
 *
 * A thread writes PGB_LIMITS_FILE ("ROLE N" per project, every project
 * listed, so a lowered tier lowers its bound) at start, whenever
 * pooler_kick() is called (a project created, its tier changed) and every
 * POOLER_SYNC_MS (projects created or changed on other nodes). It writes
 * the file only when its content changes; the supervisor notices within its
 * tick, checks it and has pgbouncer reload. The statistics come from
 * pgbouncer's console as its stats user (SHOW only). */
#pragma once

#include "buf.h"
#include "util.h"

#define POOLER_SYNC_MS 5000

struct app;
struct pooler;

/* Start the thread; the first write happens before this returns, so the
 * API answers no request before every project has its bound. */
int pooler_start(struct app *app, const char *stats_password, struct pooler **ret, struct zerr *err);

/* Sync soon (a project's tier changed). NULL-safe. */
void pooler_kick(struct pooler *p);

/* Stop the thread and free p. NULL-safe. */
void pooler_stop(struct pooler *p);

/* The pools' Prometheus text, appended to out: per database (a project's),
 * client connections active and waiting, server connections active and
 * idle, the longest current wait and the total time clients waited; and
 * whether the console answered. NULL p appends nothing. */
int pooler_render(struct pooler *p, struct buf *out);
