/* limiter.c - see limiter.h */
#define _GNU_SOURCE
#include "limiter.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int limiter_init(struct limiter *l, uint64_t max)
{
	memset(l, 0, sizeof(*l));
	l->max = max;
	l->e = calloc(max, sizeof(*l->e));
	if (!l->e)
		return -ENOMEM;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&l->mu, NULL);
	return 0;
}

void limiter_done(struct limiter *l)
{
	free(l->e);
	l->e = NULL;
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
}

static struct limiter_entry *find(struct limiter *l, const char *project)
{
	for (uint64_t i = 0; i < l->n_e; i++)
		if (strcmp(l->e[i].project, project) == 0)
			return &l->e[i];
	return NULL;
}

int limiter_acquire(struct limiter *l, const char *project, uint64_t project_max, uint64_t wait_ms)
{
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += (time_t)(wait_ms / 1000);
	deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&l->mu);
	l->waiting++;
	for (;;) {
		struct limiter_entry *e = find(l, project);
		if (l->used < l->max && (!project_max || !e || e->used < project_max)) {
			if (!e) {
				e = &l->e[l->n_e++];
				snprintf(e->project, sizeof(e->project), "%s", project);
				e->used = 0;
			}
			e->used++;
			l->used++;
			l->waiting--;
			pthread_mutex_unlock(&l->mu);
			return 0;
		}
		if (pthread_cond_timedwait(&l->cv, &l->mu, &deadline) == ETIMEDOUT) {
			l->waiting--;
			l->rejected++;
			pthread_mutex_unlock(&l->mu);
			return -EAGAIN;
		}
	}
}

void limiter_release(struct limiter *l, const char *project)
{
	pthread_mutex_lock(&l->mu);
	struct limiter_entry *e = find(l, project);
	if (e) {
		l->used--;
		if (--e->used == 0)
			*e = l->e[--l->n_e];
	}
	/* Waiters may wait on different projects: wake them all to recheck. */
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

void limiter_stats(struct limiter *l, uint64_t *ret_used, uint64_t *ret_waiting, uint64_t *ret_rejected)
{
	pthread_mutex_lock(&l->mu);
	*ret_used = l->used;
	*ret_waiting = l->waiting;
	*ret_rejected = l->rejected;
	pthread_mutex_unlock(&l->mu);
}
