/* reaper.h - the executor's reaper: kills and destroys sandboxes whose
 * answer is already in, off the request's path (a runtime's own exit and the
 * kernel's namespace teardown take milliseconds nobody needs to wait for). */
#pragma once

#include "executor.h"

/* Start the reaper's thread. */
int reaper_start(struct exec_reaper **ret, struct zerr *err);

/* Destroy what is queued, stop the thread, free rp (NULL accepted). After
 * the call rp is no longer valid. */
void reaper_stop(struct exec_reaper *rp);

/* Kill and destroy s on the reaper's thread (here when there is no reaper
 * or its queue is full). After the call s is no longer ours. */
void exec_dispose(struct exec_ctx *ctx, struct sbx *s);
