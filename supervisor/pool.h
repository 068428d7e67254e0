/* pool.h - the executor's warm pool: sandboxes started ahead, per runtime,
 * each serving one invocation (exec_pool_* in executor.h are its public
 * face; this is what the rest of the executor takes from it). */
#pragma once

#include "executor.h"

/* Take a waiting sandbox of lang for an invocation, of the kind with the
 * database driver loaded when db (either kind serves any function). Counts
 * the demand the pool follows. false: none, start one cold. *ret_ready:
 * its wrapper has announced itself (its newline is consumed). */
bool pool_take(struct exec_ctx *ctx, enum exec_lang lang, bool db, struct sbx *ret, bool *ret_ready);
/* Start replacing what pool_take took: call it once the taken sandbox's
 * limits are narrowed. The spawner is single-threaded and serves the
 * replacement's spawn and the assignment in order, so the invocation does
 * not wait behind a spawn. */
void pool_refill(struct exec_ctx *ctx);
