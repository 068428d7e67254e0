/* run.h - starting a runtime in a fresh sandbox, for one invocation now or
 * for the warm pool (what pool.c takes from run.c). */
#pragma once

#include "executor.h"

enum spawn_mode { SPAWN_COLD, SPAWN_POOLED, SPAWN_POOLED_DB, SPAWN_CHECK /* cold, for exec_check */ };

/* Start the runtime of lang: for one invocation now (SPAWN_COLD), or for the
 * pool, with the largest limits a function may get until sbx_assign()
 * narrows them (with the database driver loaded: SPAWN_POOLED_DB). Through
 * ctx->spawner when there is one. On failure nothing is left. */
int exec_spawn_runtime(struct exec_ctx *ctx, enum exec_lang lang, uint64_t memory_mb, uint64_t timeout_ms,
                       uint64_t cpu_percent, enum spawn_mode mode, struct sbx *ret, struct zerr *err);
