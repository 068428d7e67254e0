/* workq.h - one worker thread draining a bounded queue of pointers in
 * batches, off the callers' path: the shape of the invocation record writer
 * (batches of records, one statement each) and of the sandbox reaper
 * (teardown after the answer went out).
 *
 * Contract: workq_push never blocks; when the queue is full or stopping it
 * returns false and the caller does the work itself (slower, never lost).
 * The handler runs on the worker thread only, without the queue's lock,
 * and owns the items it is given. workq_stop hands the handler everything
 * still queued before it returns. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

struct workq;

/* Handle n (>= 1) items, oldest first. */
typedef void (*workq_fn)(void *ctx, void **items, size_t n);

struct workq_options {
	size_t capacity;    /* items queued at most */
	size_t batch;       /* items handed to the handler at most at once */
	unsigned linger_ms; /* with fewer than batch queued, wait this long for more (0: never) */
};

int workq_start(const struct workq_options *opt, workq_fn fn, void *ctx, struct workq **ret, struct zerr *err);
/* Queue item. False: full or stopping, nothing queued. */
bool workq_push(struct workq *q, void *item);
/* Wait at most timeout_ms until what is queued now has been handled. */
void workq_flush(struct workq *q, unsigned timeout_ms);
/* Items waiting now. */
size_t workq_queued(struct workq *q);
/* Hand everything queued to the handler, stop the thread, free. Accepts NULL. */
void workq_stop(struct workq *q);
