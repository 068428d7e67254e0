/* config.c - see config.h */
#define _GNU_SOURCE
#include "config.h"
#include "egress_policy.h"
#include "http.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef ZMESH_POLICY_DIR
#define ZMESH_POLICY_DIR "/usr/share/zmesh/policies"
#endif
#ifndef ZMESH_SQL_DIR
#define ZMESH_SQL_DIR "/usr/share/zmesh/sql"
#endif
#ifndef ZMESH_SDK_DIR
#define ZMESH_SDK_DIR "/usr/share/zmesh"
#endif

/* K_LIST: a comma-separated string; a repeated flag appends to it (the
 * first one replaces what the environment said). */
enum kind { K_STR, K_SIZE, K_UINT, K_LIST };

struct setting {
	const char *name; /* --name */
	const char *env;
	enum kind kind;
	size_t offset;
	size_t size; /* K_STR: buffer size */
	const char *def;
	uint64_t min, max;
	const char *help;
};

#define STR(f, name, env, def, help)                                                                             \
	{                                                                                                        \
		name, env, K_STR, offsetof(struct zconfig, f), sizeof(((struct zconfig *)0)->f), def, 0, 0, help \
	}
#define LIST(f, name, env, help)                                                                                 \
	{                                                                                                        \
		name, env, K_LIST, offsetof(struct zconfig, f), sizeof(((struct zconfig *)0)->f), "", 0, 0, help \
	}
#define NUM(f, name, env, kind, def, min, max, help)                                 \
	{                                                                            \
		name, env, kind, offsetof(struct zconfig, f), 0, def, min, max, help \
	}

static const struct setting settings[] = {
    STR(listen, "listen", "ZMESH_LISTEN", "127.0.0.1:8080", "address and port of the HTTP API"),
    STR(state_dir, "state-dir", "ZMESH_STATE_DIR", "./var", "embedded database, keys, sandbox state"),
    STR(database_url, NULL, "DATABASE_URL", "", "an existing PostgreSQL cluster (default: embedded)"),
    STR(jwt_secret, NULL, "JWT_SECRET_KEY", "", "token signing key (default: generated, kept in the state dir)"),
    STR(admin_email, NULL, "ZMESH_ADMIN_EMAIL", "admin@zmesh.local", "the first admin's email"),
    STR(admin_password, NULL, "ZMESH_ADMIN_PASSWORD", "",
        "the first admin's password, first start only (default: generated)"),
    STR(pg_socket_dir, NULL, "ZMESH_PG_SOCKET_DIR", "",
        "with DATABASE_URL: the socket directory sandboxes reach the projects' databases by"),
    STR(sql_dir, "sql-dir", "ZMESH_SQL_DIR", ZMESH_SQL_DIR, "control-plane migrations"),
    STR(policy_dir, "policy-dir", "ZMESH_POLICY_DIR", ZMESH_POLICY_DIR, "seccomp policies and tiers"),
    STR(sdk_dir, "sdk-dir", "ZMESH_SDK_DIR", ZMESH_SDK_DIR, "directory holding sdk-js/ and sdk-python/"),
    STR(spawner_path, "spawner", "ZMESH_SPAWNER", ZMESH_SPAWNER_PATH, "the sandbox spawner program (zmesh-spawner)"),
    NUM(max_body_bytes, "max-body", "ZMESH_MAX_BODY", K_SIZE, "6M", 1024, 64ull << 20, "largest request body"),
    NUM(max_code_bytes, "max-code", "ZMESH_MAX_CODE", K_SIZE, "1M", 1024, 16ull << 20, "largest function code"),
    NUM(max_log_bytes, "max-logs", "ZMESH_MAX_LOGS", K_SIZE, "64K", 1024, 16ull << 20, "logs kept per invocation"),
    NUM(max_result_bytes, "max-result", "ZMESH_MAX_RESULT", K_SIZE, "6M", 1024, 64ull << 20, "largest result"),
    NUM(concurrency, "concurrency", "ZMESH_CONCURRENCY", K_UINT, "16", 1, 4096, "invocations at once, all projects"),
    NUM(queue_wait_ms, "queue-wait", "ZMESH_QUEUE_WAIT_MS", K_UINT, "2000", 0, 60000,
        "wait for a free slot before 429"),
    NUM(max_connections, "max-connections", "ZMESH_MAX_CONNECTIONS", K_UINT, "512", 8, 8192,
        "open HTTP connections (a thread each)"),
    NUM(max_per_ip, "max-per-ip", "ZMESH_MAX_PER_IP", K_UINT, "64", 1, 8192, "open HTTP connections from one address"),
    NUM(token_ttl_s, "token-ttl", "ZMESH_TOKEN_TTL", K_UINT, "86400", 60, 31536000, "login token lifetime, seconds"),
    NUM(shutdown_grace_ms, "shutdown-grace", "ZMESH_SHUTDOWN_GRACE_MS", K_UINT, "30000", 0, 600000,
        "wait for in-flight invocations on SIGTERM"),
    NUM(pool_size, "pool-size", "ZMESH_POOL_SIZE", K_UINT, "4", 0, 256,
        "warm sandboxes per runtime at most; the pool follows demand (0: off)"),
    NUM(job_workers, "job-workers", "ZMESH_JOB_WORKERS", K_UINT, "4", 1, 256,
        "queued jobs (async, schedules, webhooks) this node runs at once"),
    NUM(job_lease_ms, "job-lease", "ZMESH_JOB_LEASE_MS", K_UINT, "30000", 3000, 600000,
        "a running job's lease: another node runs it again if this one stops renewing"),
    NUM(jobs_noop, "jobs-noop", "ZMESH_JOBS_NOOP", K_UINT, "0", 0, 1,
        "benchmarks only: 1 finishes every job as a success without running it"),
    NUM(pgbouncer, "pgbouncer", "ZMESH_PGBOUNCER", K_UINT, "1", 0, 1,
        "1: sandboxes reach the database through a pgbouncer this node runs; 0: directly"),
    LIST(egress_allow, "egress-allow", "ZMESH_EGRESS_ALLOW",
         "CIDRs functions may reach although denied by default (repeatable; the platform's own addresses stay "
         "denied)"),
    LIST(egress_deny, "egress-deny", "ZMESH_EGRESS_DENY", "CIDRs functions may not reach, on top of the defaults"),
    LIST(egress_allow_ports, "egress-allow-port", "ZMESH_EGRESS_ALLOW_PORTS",
         "mail ports (25, 465, 587) functions may reach (repeatable)"),
};

static int set_value(struct zconfig *cfg, const struct setting *s, const char *v, const char *from, bool append,
                     struct zerr *err)
{
	char *field = (char *)cfg + s->offset;
	if (s->kind == K_LIST && append && field[0]) {
		size_t have = strlen(field);
		if (have + 1 + strlen(v) >= s->size)
			return zerr_set(err, -EINVAL, "%s: %s is too long (at most %zu bytes in all)", from, s->name,
			                s->size - 1);
		field[have] = ',';
		memcpy(field + have + 1, v, strlen(v) + 1);
		return 0;
	}
	if (s->kind == K_STR || s->kind == K_LIST) {
		if (strlen(v) >= s->size)
			return zerr_set(err, -EINVAL, "%s: %s is too long (at most %zu bytes)", from,
			                s->name ? s->name : s->env, s->size - 1);
		memcpy(field, v, strlen(v) + 1);
		return 0;
	}
	uint64_t x;
	int r = s->kind == K_SIZE ? util_parse_size(v, s->max, &x) : util_parse_u64(v, s->min, s->max, &x);
	if (r < 0 || x < s->min || x > s->max)
		return zerr_set(err, -EINVAL, "%s: bad value \"%s\" for %s (%llu..%llu%s)", from, v,
		                s->name ? s->name : s->env, (unsigned long long)s->min, (unsigned long long)s->max,
		                s->kind == K_SIZE ? " bytes, K/M/G" : "");
	memcpy(field, &x, sizeof(x));
	return 0;
}

int zconfig_usage(char *buf, size_t size)
{
	size_t off = 0;
#define OUT(...)                                                                        \
	do {                                                                            \
		int _n = snprintf(buf + off, off < size ? size - off : 0, __VA_ARGS__); \
		off += _n > 0 ? (size_t)_n : 0;                                         \
	} while (0)
	OUT("usage: zmeshd [OPTION VALUE]...\n\nEvery setting: --flag VALUE (or --flag=VALUE), else its environment "
	    "variable, else the default.\n\n");
	for (size_t i = 0; i < ELEMENTSOF(settings); i++) {
		const struct setting *t = &settings[i];
		char flag[48];
		snprintf(flag, sizeof(flag), "%s%s", t->name ? "--" : "", t->name ? t->name : "");
		OUT("  %-18s %-24s %s", flag, t->env, t->help);
		if (t->def[0])
			OUT(" [%s]", t->def);
		OUT("\n");
	}
#undef OUT
	return off < size ? 0 : -ENOSPC;
}

int zconfig_egress_rules(const struct zconfig *cfg, struct egress_rules *ret, struct zerr *err)
{
	_cleanup_free_ struct egress_rules *r = malloc(sizeof(*r));
	struct zerr why = {0};
	if (!r)
		return zerr_set(err, -ENOMEM, "out of memory");
	egress_rules_init(r);
	if (egress_rules_add_list(r, false, cfg->egress_allow, &why) < 0)
		return zerr_set(err, -EINVAL, "egress-allow: %s", why.msg);
	if (egress_rules_add_list(r, true, cfg->egress_deny, &why) < 0)
		return zerr_set(err, -EINVAL, "egress-deny: %s", why.msg);
	if (egress_rules_add_ports(r, cfg->egress_allow_ports, &why) < 0)
		return zerr_set(err, -EINVAL, "egress-allow-port: %s", why.msg);
	if (ret)
		*ret = *r;
	return 0;
}

int zconfig_load(struct zconfig *cfg, int argc, char **argv, struct zerr *err)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < ELEMENTSOF(settings); i++) {
		int r = set_value(cfg, &settings[i], settings[i].def, "default", false, err);
		if (r < 0)
			return r;
		const char *e = settings[i].env ? getenv(settings[i].env) : NULL;
		if (e && e[0] && (r = set_value(cfg, &settings[i], e, settings[i].env, false, err)) < 0)
			return r;
	}
	bool given[ELEMENTSOF(settings)] = {false};
	for (int a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0)
			return 1;
		if (strncmp(argv[a], "--", 2) != 0)
			return zerr_set(err, -EINVAL, "unexpected argument \"%s\"", argv[a]);
		const char *name = argv[a] + 2, *value = strchr(name, '=');
		size_t nlen = value ? (size_t)(value - name) : strlen(name);
		const struct setting *s = NULL;
		for (size_t i = 0; i < ELEMENTSOF(settings); i++)
			if (settings[i].name && strlen(settings[i].name) == nlen &&
			    strncmp(settings[i].name, name, nlen) == 0)
				s = &settings[i];
		bool append = s && given[s - settings];
		if (s)
			given[s - settings] = true;
		if (!s)
			return zerr_set(err, -EINVAL, "unknown option \"%s\" (see --help)", argv[a]);
		if (value)
			value++;
		else if (a + 1 < argc)
			value = argv[++a];
		else
			return zerr_set(err, -EINVAL, "--%s needs a value", s->name);
		int r = set_value(cfg, s, value, "command line", append, err);
		if (r < 0)
			return r;
	}
	char host[256];
	uint16_t port;
	int r = http_split_listen(cfg->listen, host, sizeof(host), &port, err);
	if (r < 0)
		return r;
	return zconfig_egress_rules(cfg, NULL, err);
}
