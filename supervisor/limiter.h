/* limiter.h - how many invocations run at once: a global limit and one per
 * project. Past them an invocation waits, bounded, for a slot to free up;
 * then it is refused (the API answers 429 with Retry-After). */
#pragma once

#include <pthread.h>
#include <stdint.h>

struct limiter_entry {
	char project[40];
	uint64_t used;
};

struct limiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t max, used;
	uint64_t waiting;
	uint64_t rejected;
	struct limiter_entry *e; /* projects with at least one slot, max of them */
	uint64_t n_e;
};

int limiter_init(struct limiter *l, uint64_t max);
void limiter_done(struct limiter *l);
/* 0: a slot is held (give it back with limiter_release); -EAGAIN: none
 * within wait_ms. project_max 0 means no per-project limit. */
int limiter_acquire(struct limiter *l, const char *project, uint64_t project_max, uint64_t wait_ms);
void limiter_release(struct limiter *l, const char *project);
void limiter_stats(struct limiter *l, uint64_t *ret_used, uint64_t *ret_waiting, uint64_t *ret_rejected);
