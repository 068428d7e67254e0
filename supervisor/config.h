/* config.h - zmeshd's settings as one declarative table: name, environment
 * variable, command-line flag, type, default and bounds, validated at start.
 * Precedence: flag, then environment, then default. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct zconfig {
	char listen[128];        /* HOST:PORT */
	char state_dir[512];     /* embedded cluster, JWT key, sandbox run dir */
	char database_url[1024]; /* empty: the embedded cluster */
	char jwt_secret[256];    /* empty: generated and kept in the state dir */
	char admin_email[256];
	char admin_password[256]; /* empty: generated and printed once */
	char pg_socket_dir[512];  /* with DATABASE_URL: the data cluster's socket directory */
	char sql_dir[512];
	char policy_dir[512];
	char sdk_dir[512];
	char spawner_path[512]; /* zmesh-spawner, started as root */
	uint64_t max_body_bytes;
	uint64_t max_code_bytes;
	uint64_t max_log_bytes;
	uint64_t max_result_bytes;
	uint64_t concurrency;     /* invocations at once, all projects */
	uint64_t queue_wait_ms;   /* how long an invocation waits for a slot */
	uint64_t max_connections; /* open HTTP connections, a thread each */
	uint64_t max_per_ip;      /* of them from one client address */
	uint64_t token_ttl_s;
	uint64_t shutdown_grace_ms;
	uint64_t pool_size;    /* warm sandboxes per runtime (0: off) */
	uint64_t job_workers;  /* queued jobs this node runs at once */
	uint64_t job_lease_ms; /* a claimed job's lease, renewed every third */
	uint64_t jobs_noop;    /* benchmarks: finish jobs without running them */
	uint64_t pgbouncer;    /* 1: sandboxes reach the data cluster through a pgbouncer */
	/* Egress (egress_policy.h): comma-separated lists, each flag
	 * repeatable; checked at load. */
	char egress_allow[2048];      /* CIDRs lifted from the built-in denied ranges */
	char egress_deny[2048];       /* CIDRs denied on top of them */
	char egress_allow_ports[128]; /* of the mail ports denied by default */
};

/* Fill cfg from defaults, environment and argv. On a bad value or flag,
 * returns -EINVAL with the reason; --help returns 1 (see zconfig_usage). */
int zconfig_load(struct zconfig *cfg, int argc, char **argv, struct zerr *err);

/* The operator's egress rules from the egress settings (without the
 * platform's own addresses, which the caller adds). ret may be NULL (only
 * check). -EINVAL names the setting and the bad item. */
struct egress_rules;
int zconfig_egress_rules(const struct zconfig *cfg, struct egress_rules *ret, struct zerr *err);

/* The table of settings as help text: flag, variable, meaning, default. */
int zconfig_usage(char *buf, size_t size);
