/* reaper.c - see reaper.h */
#define _GNU_SOURCE
#include "reaper.h"

#include <stdlib.h>
#include <signal.h>
#include <string.h>

#include "workq.h"

#define REAPER_QUEUE 256

/* A work queue of sandboxes, each a copy of its struct sbx owned by the
 * queue until destroyed. */
struct exec_reaper {
	struct workq *q;
};

static void destroy_items(void *ctx, void **items, size_t n)
{
	(void)ctx;
	for (size_t i = 0; i < n; i++) {
		sbx_destroy(items[i]);
		free(items[i]);
	}
}

int reaper_start(struct exec_reaper **ret, struct zerr *err)
{
	const struct workq_options opt = {.capacity = REAPER_QUEUE, .batch = 16, .linger_ms = 0};
	struct exec_reaper *rp = calloc(1, sizeof(*rp));
	if (!rp)
		return zerr_set(err, -ENOMEM, "out of memory");
	int r = workq_start(&opt, destroy_items, NULL, &rp->q, err);
	if (r < 0) {
		free(rp);
		return r;
	}
	*ret = rp;
	return 0;
}

void exec_dispose(struct exec_ctx *ctx, struct sbx *s)
{
	/* The kill too is the reaper's (sbx_destroy kills first): with the
	 * spawner doing it, it is a request that may wait behind a spawn, and
	 * the answer must not. */
	struct sbx *copy = ctx->reaper ? malloc(sizeof(*copy)) : NULL;
	if (copy) {
		*copy = *s;
		if (workq_push(ctx->reaper->q, copy))
			return;
		free(copy);
	}
	sbx_destroy(s); /* no reaper, or it is behind: do it here */
}

void reaper_stop(struct exec_reaper *rp)
{
	if (!rp)
		return;
	workq_stop(rp->q);
	free(rp);
}
