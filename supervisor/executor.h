/* executor.h - the executor's public face (run.c, pool.c, reaper.c,
 * result.c). One invocation, start to finish: start a sandbox with the
 * function's runtime and limits, write the invocation message to its stdin,
 * read the result from stdout and the logs from stderr under a deadline,
 * classify the outcome, destroy the sandbox.
 *
 * The protocol with the wrappers (sdk-js/bootstrap.js, sdk-python/bootstrap.py)
 * is docs/ARCHITECTURE.md (the wrapper protocol): one JSON object in, one JSON object out, logs on
 * stderr. Everything coming back from a sandbox is hostile: sizes are bounded
 * and shapes checked before anything is believed. */
#pragma once

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "egress.h"
#include "sbx.h"
#include "spawner.h"

enum exec_lang { EXEC_JS = 1, EXEC_PY };

/* Where the SDKs are mounted inside every sandbox, and the database socket. */
#define EXEC_SDK_JS_MOUNT "/opt/zmesh/sdk/js"
#define EXEC_SDK_PY_MOUNT "/opt/zmesh/sdk/python"
#define EXEC_PG_MOUNT     "/run/zmesh/pg"
/* Where a sandbox finds the egress gateway: a listener on its own loopback,
 * named by HTTP_PROXY and HTTPS_PROXY (and their lower-case forms). */
#define EXEC_EGRESS_PORT  3128
#define EXEC_EGRESS_PROXY "http://127.0.0.1:3128"
/* Descriptors a sandbox may hold (pgbouncer's client slots are sized by it). */
#define EXEC_NOFILE 256

struct exec_pool;
struct exec_reaper;

struct exec_pool_stats {
	uint64_t warm, cold; /* invocations served from the pool, or not */
	uint64_t spawned;    /* sandboxes started for the pool */
	uint64_t discarded;  /* died or too old while waiting: replaced */
	uint64_t spawn_failures;
	uint64_t ready_js, ready_py;       /* waiting, wrapper loaded */
	uint64_t starting_js, starting_py; /* in the pool, runtime still starting */
	uint64_t ready_db_js, ready_db_py; /* of the ready, those with the database driver loaded */
	uint64_t target_js, target_py;     /* what the pool aims at now, from recent demand */
	uint64_t memory_bytes;             /* held by the waiting sandboxes now */
};

struct exec_ctx {
	struct sbx_ctx *sbx;
	struct sbx_spawner *spawner;  /* NULL: spawn in this process (single-threaded callers) */
	struct pol_program policy[3]; /* by enum exec_lang */
	char sdk_js[512];             /* host directories of the SDKs */
	char sdk_py[512];
	char pg_socket_dir[512]; /* bound at EXEC_PG_MOUNT; empty: none */
	size_t max_result_bytes; /* stdout beyond this: BAD_RESULT */
	size_t max_log_bytes;    /* stderr kept; the rest is counted, dropped */
	uint64_t tmpfs_bytes;
	uint64_t pids;
	uint64_t cpu_percent;       /* quota when the request names none: 100 = one core */
	struct exec_pool *pool;     /* NULL: every invocation starts cold */
	struct exec_reaper *reaper; /* destroys sandboxes after their answer; NULL: inline */
	_Atomic uint64_t stop_ns;   /* monotonic time after which running invocations end; 0: none */
	/* The node's egress gateway; NULL: sandboxes get no listener and have
	 * no way out at all. Set before exec_pool_start. */
	struct egress_gw *egress;
};

enum exec_outcome {
	EXEC_SUCCESS = 1,    /* 200 */
	EXEC_FUNCTION_ERROR, /* 500: threw, raised, rejected */
	EXEC_TIMEOUT,        /* 504 */
	EXEC_OOM,            /* 507 */
	EXEC_BAD_RESULT,     /* 502: no result, not JSON, too large, wrong shape */
	EXEC_SANDBOX_ERROR,  /* 500: the platform failed, not the function */
};

struct exec_request {
	enum exec_lang lang;
	const char *invocation_id;
	const char *project_id;
	const char *function_name;
	int64_t version;
	const char *entry_point;
	const char *code;
	json_t *env;     /* object of strings (borrowed) */
	const char *dsn; /* may be NULL */
	json_t *payload; /* borrowed; NULL is JSON null */
	uint64_t timeout_ms;
	uint64_t memory_mb;
	uint64_t cpu_percent; /* 0: no quota */
	bool wants_db;        /* code uses zmesh.db: computed when the code is saved */
	/* The project's right to go out (its policy, its tier's limits);
	 * deadline and counters are the executor's. NULL: connections to the
	 * gateway are refused. */
	const struct egress_ctx *egress;
	/* Check mode (exec_check): the wrapper compiles the code and never
	 * runs it; never a pooled sandbox. */
	bool check;

	/* Live logs: called from the capture loop with each chunk of stderr
	 * as it is read (raw bytes, within max_log_bytes in all; the record's
	 * logs are unchanged). Must not block. NULL: none. */
	void (*on_logs)(void *arg, const char *data, size_t len);
	void *on_logs_arg;
};

struct exec_result {
	enum exec_outcome outcome;
	json_t *result; /* EXEC_SUCCESS: owned */
	json_t *emits;  /* EXEC_SUCCESS: the events it emitted, [{event_id, type, data}], owned; NULL for none */
	json_t *error;  /* {"name","message","stack"} for errors: owned */
	char *logs;     /* owned, NUL-terminated, at most max_log_bytes */
	size_t logs_len;
	bool logs_truncated;
	bool warm; /* served by a sandbox of the pool */
	/* Through the egress gateway: requests made (refused ones included),
	 * bytes relayed both ways, requests refused. */
	uint64_t egress_requests, egress_bytes, egress_refused;
	struct sbx_report report;
};

/* Compile the runtime policies from policy_dir (cached under the sandbox run
 * directory) and fill defaults. */
int exec_ctx_init(struct exec_ctx *ctx, struct sbx_ctx *sbx, struct sbx_spawner *spawner, const char *policy_dir,
                  const char *sdk_dir, const char *pg_socket_dir, struct zerr *err);
void exec_ctx_done(struct exec_ctx *ctx);

/* What the spawner must hold for exec_run and the pool: the runtimes "node"
 * and "python" (policies compiled from policy_dir, cached in cache_dir when
 * not NULL; the SDK of sdk_dir and the database socket directory bound), and
 * the largest limits they may ask for: memory and timeout as given (the
 * largest any tier allows), the rest the executor's own. Release with
 * sbx_spawner_config_done(). */
int exec_spawner_config(const char *policy_dir, const char *sdk_dir, const char *pg_socket_dir, const char *cache_dir,
                        uint64_t max_memory_mb, uint64_t max_timeout_ms, struct sbx_spawner_config *ret,
                        struct zerr *err);

/* Keep up to per_runtime sandboxes of each runtime started ahead (0: no
 * pool): at least one, more as recent demand asks, within that maximum;
 * waiting with memory_mb and timeout_ms as their limits until assigned.
 * Needs ctx->spawner: the pool spawns from its own thread. */
int exec_pool_start(struct exec_ctx *ctx, unsigned per_runtime, uint64_t memory_mb, uint64_t timeout_ms,
                    struct zerr *err);
void exec_pool_stop(struct exec_ctx *ctx);
/* Pooled sandboxes older than this are replaced, never handed out
 * (default 300 s). Thread-safe. */
void exec_pool_set_max_age(struct exec_ctx *ctx, uint64_t ms);
void exec_pool_get_stats(struct exec_ctx *ctx, struct exec_pool_stats *ret);

/* Shutting down: invocations still running at deadline_ns (monotonic) are
 * ended, reported as SANDBOX_ERROR. Thread-safe. */
void exec_stop_at(struct exec_ctx *ctx, uint64_t deadline_ns);

/* Run one invocation. Returns 0 with *ret filled whatever the function did;
 * a negative errno only when the request itself is unusable. */
int exec_run(struct exec_ctx *ctx, const struct exec_request *req, struct exec_result *ret, struct zerr *err);
void exec_result_done(struct exec_result *r);

/* Checking a function's code at deploy: in a sandbox of its own (the code
 * is hostile: never compiled in this process), with EXEC_CHECK_MEMORY_MB and
 * EXEC_CHECK_TIMEOUT_MS, the wrapper in check mode compiles it without
 * running it: JavaScript as CommonJS, else as an ES module (linked, not
 * evaluated, to know its exports), Python with compile() and its AST. */
#define EXEC_CHECK_TIMEOUT_MS 5000
#define EXEC_CHECK_MEMORY_MB  128
struct exec_check_result {
	bool valid;
	/* !valid: {"name": "SyntaxError"|"IndentationError"|"TabError"|
	 * "HandlerNotFound", "message", "file", "line", "column"} (line and
	 * column 1-based, null when unknown), owned. */
	json_t *error;
};
/* 0 with *ret filled; a negative errno when the check could not be made
 * (the sandbox failed or timed out, the answer is not one), err saying
 * why. Release with exec_check_result_done(). */
int exec_check(struct exec_ctx *ctx, enum exec_lang lang, const char *code, const char *entry_point,
               struct exec_check_result *ret, struct zerr *err);
void exec_check_result_done(struct exec_check_result *r);

/* Does the code use zmesh.db? The word db followed by a property access
 * ("zmesh.db.query", "const { db } = zmesh; db.insert", "z.db['select']").
 * Pure; computed when the code is saved (exec_request.wants_db), a hint for
 * the warm pool, which keeps sandboxes with the driver loaded for such
 * functions: a wrong guess costs time, never correctness. */
bool exec_code_wants_db(const char *code);

/* What an outcome means to a client (status, code) is errors.h's. */
