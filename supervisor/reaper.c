/* reaper.c - see reaper.h */
#define _GNU_SOURCE
#include "reaper.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>

#define REAPER_QUEUE 256

struct exec_reaper {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool stop;
	struct sbx q[REAPER_QUEUE];
	size_t head, n;
};

static void *reaper_main(void *arg)
{
	struct exec_reaper *rp = arg;
	pthread_mutex_lock(&rp->mu);
	for (;;) {
		if (rp->n == 0) {
			if (rp->stop)
				break;
			pthread_cond_wait(&rp->cv, &rp->mu);
			continue;
		}
		struct sbx s = rp->q[rp->head];
		rp->head = (rp->head + 1) % REAPER_QUEUE;
		rp->n--;
		pthread_mutex_unlock(&rp->mu);
		sbx_destroy(&s);
		pthread_mutex_lock(&rp->mu);
	}
	pthread_mutex_unlock(&rp->mu);
	return NULL;
}

int reaper_start(struct exec_reaper **ret, struct zerr *err)
{
	struct exec_reaper *rp = calloc(1, sizeof(*rp));
	if (!rp)
		return zerr_set(err, -ENOMEM, "out of memory");
	pthread_mutex_init(&rp->mu, NULL);
	pthread_cond_init(&rp->cv, NULL);
	int rc = pthread_create(&rp->thread, NULL, reaper_main, rp);
	if (rc != 0) {
		pthread_cond_destroy(&rp->cv);
		pthread_mutex_destroy(&rp->mu);
		free(rp);
		return zerr_set(err, -rc, "pthread_create: %s", strerror(rc));
	}
	*ret = rp;
	return 0;
}

void exec_dispose(struct exec_ctx *ctx, struct sbx *s)
{
	sbx_kill(s, SIGKILL);
	struct exec_reaper *rp = ctx->reaper;
	if (rp) {
		pthread_mutex_lock(&rp->mu);
		if (rp->n < REAPER_QUEUE && !rp->stop) {
			rp->q[(rp->head + rp->n) % REAPER_QUEUE] = *s;
			rp->n++;
			pthread_cond_signal(&rp->cv);
			pthread_mutex_unlock(&rp->mu);
			return;
		}
		pthread_mutex_unlock(&rp->mu);
	}
	sbx_destroy(s); /* no reaper, or it is behind: do it here */
}

void reaper_stop(struct exec_reaper *rp)
{
	if (!rp)
		return;
	pthread_mutex_lock(&rp->mu);
	rp->stop = true;
	pthread_cond_signal(&rp->cv);
	pthread_mutex_unlock(&rp->mu);
	pthread_join(rp->thread, NULL);
	pthread_cond_destroy(&rp->cv);
	pthread_mutex_destroy(&rp->mu);
	free(rp);
}
