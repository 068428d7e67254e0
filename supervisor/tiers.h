/* tiers.h - limits per plan, read from policies/tiers.json at start. */
#pragma once

#include <stdint.h>

#include "util.h"

#define TIERS_MAX     16
#define TIERS_DEFAULT "free" /* every project starts on it; tiers.json must have it */
/* The least memory a function gets: below it neither runtime starts
 * reliably. The API, the tiers file and the executor all hold to it. */
#define TIERS_MIN_MEMORY_MB 64
/* db_connections when the tiers file does not say. */
#define TIERS_DEFAULT_DB_CONNECTIONS 10
#define TIERS_MAX_DB_CONNECTIONS     1000 /* PGB_ROLE_POOL_MAX */
/* The egress fields when the tiers file does not say (the free tier's). */
#define TIERS_DEFAULT_EGRESS_REQUESTS           5
#define TIERS_DEFAULT_EGRESS_BYTES              (10ull << 20)
#define TIERS_DEFAULT_EGRESS_CONNECT_TIMEOUT_MS 5000
/* emits_per_invocation when the tiers file does not say; at most
 * ZPROTO_MAX_EMITS. */
#define TIERS_DEFAULT_EMITS 10

struct tier {
	char name[32];
	uint64_t max_timeout_ms;
	uint64_t max_memory_mb;
	uint64_t monthly_invocations;
	uint64_t concurrency;
	uint64_t db_connections;            /* server connections a project's role holds through a node's pgbouncer */
	uint64_t egress_requests;           /* outbound requests of one invocation (0: none) */
	uint64_t egress_bytes;              /* bytes both ways of one invocation's outbound requests */
	uint64_t egress_connect_timeout_ms; /* to connect to an outbound request's address */
	uint64_t emits_per_invocation;      /* custom events one invocation may emit (zmesh.emit) */
};

struct tiers {
	struct tier t[TIERS_MAX];
	int n;
};

int tiers_load(const char *path, struct tiers *ret, struct zerr *err);
const struct tier *tiers_find(const struct tiers *t, const char *name);
/* The tier of that name, or the default one for a name the file no longer
 * has (a project keeps running when the operator drops its tier). */
const struct tier *tiers_for(const struct tiers *t, const char *name);
