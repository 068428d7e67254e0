/* app.h - the daemon's state, shared by every request handler. Nothing
 * here changes after start-up except through its own lock (limiter,
 * metrics). */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "executor.h"
#include "http.h"
#include "limiter.h"
#include "metrics.h"
#include "records.h"
#include "tiers.h"
#include "usage.h"

#define APP_MAX_PROJECTS_PER_USER 20 /* each is a database; admins are not bound */

struct jobs;   /* jobs.h: this node's queue workers */
struct sched;  /* scheduler.h: this node's scheduler of cron triggers */
struct pooler; /* pooler.h: this node's pgbouncer, as the API process sees it */
struct cdc;    /* cdc.h: this node's dispatcher of database changes */

struct app {
	struct zconfig cfg;
	struct db_pool *pool;
	struct records *records;
	struct usage *usage; /* the monthly counts */
	struct tiers tiers;
	struct limiter limiter;
	struct exec_ctx exec;
	uint8_t jwt_key[128];
	size_t jwt_key_len;
	char pg_socket_dir[512]; /* as the sandboxes reach it: bound at /run/zmesh/pg */
	struct app_metrics metrics;
	/* Password hashing costs tens of milliseconds of a core: at most a few
	 * logins at once, so a login flood cannot starve invocations. */
	struct limiter login_limiter;
	struct jobs *jobs;            /* NULL until started */
	struct sched *sched;          /* NULL until started */
	struct pooler *pooler;        /* NULL: no pgbouncer on this node */
	struct cdc *cdc;              /* NULL until started */
	char pool_stats_password[65]; /* pgbouncer's stats user's, made at start */
};

/* The route table of the HTTP API (api.c; docs/ARCHITECTURE.md). */
extern const struct http_route app_routes[];
extern const size_t app_n_routes;
