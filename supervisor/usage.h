/* usage.h - the monthly invocation count against each project's cap.
 *
 * Counting every invocation with its own statement costs a round trip to
 * PostgreSQL and a row lock on the request's path. A node therefore counts
 * in memory while a project is far from its cap, and writes what it counted
 * in one statement for every project, every USAGE_FLUSH_MS. Near the cap,
 * or when its view of the count is stale, it counts in PostgreSQL, one
 * atomic statement per invocation as before, so the cap holds exactly:
 *
 * - memory: last count read (at most USAGE_FRESH_MS old) + what this node
 *   admitted since, more than USAGE_MARGIN below the cap;
 * - otherwise: this node's unwritten count is written first, then the
 *   invocation is taken with the cap checked under the row's lock.
 *
 * So several nodes never pass the cap unless the others run more than
 * USAGE_MARGIN invocations of one project within one USAGE_FRESH_MS. A
 * crash forgets at most the last USAGE_FLUSH_MS of counting, in the users'
 * favour; a stop writes everything. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "error.h"

#define USAGE_FLUSH_MS 100
#define USAGE_FRESH_MS 1000
#define USAGE_MARGIN   1000
#define USAGE_PROJECTS 1024 /* remembered at once; beyond, counted in PostgreSQL */

struct usage;

struct usage_stats {
	uint64_t in_memory;   /* invocations counted in memory */
	uint64_t in_database; /* ... counted by their own statement */
	uint64_t written;     /* memory counts written */
	uint64_t lost;        /* ... that could not be written (a deleted project, the database gone) */
};

/* flush_ms: how often the counts in memory are written (0: USAGE_FLUSH_MS). */
int usage_start(struct db_pool *pool, unsigned flush_ms, struct usage **ret, struct zerr *err);
/* Count one invocation of project_id (a uuid) against cap. *ret_ok: false
 * when the cap is reached (nothing counted). */
int usage_take(struct usage *u, const char *project_id, uint64_t cap, bool *ret_ok, struct zerr *err);
/* Write what is counted in memory now, waiting at most timeout_ms. */
void usage_flush(struct usage *u, unsigned timeout_ms);
void usage_stats(struct usage *u, struct usage_stats *ret);
/* Write everything, stop the writer, free. Accepts NULL. */
void usage_stop(struct usage *u);
