/* pool.c - see pool.h
 *
 * Per runtime, sandboxes started ahead: namespaces, cgroup, workspace,
 * runtime and wrapper loaded, blocked on stdin. An invocation takes one,
 * narrows its limits (sbx_assign) and writes its message; the sandbox then
 * dies with that invocation like any other. Nothing is ever reused: the
 * pool only moves the start-up off the request's path. A background thread
 * refills it, replacing sandboxes that died or grew too old.
 *
 * Each runtime's pool has two kinds: plain, and with the database driver
 * already loaded (the wrapper's --with-db), which takes the driver's load
 * (tens of milliseconds) off the path of functions whose code uses zmesh.db.
 * The second kind is kept only while such functions are invoked. */
#define _GNU_SOURCE
#include "pool.h"

#include <ctype.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "reaper.h"
#include "run.h"

bool exec_code_wants_db(const char *code)
{
	for (const char *p = code; (p = strstr(p, "db")) != NULL; p += 2) {
		if (p > code && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '$'))
			continue;
		const char *q = p + 2;
		while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
			q++;
		if (*q == '.' || *q == '[' || (q[0] == '?' && q[1] == '.'))
			return true;
	}
	return false;
}

#define POOL_MAX       64
#define POOL_WINDOW_NS (10ull * 1000000000ull)
#define POOL_KINDS     4 /* (runtime, with the driver) */

static int pool_kind(enum exec_lang lang, bool db)
{
	return (lang == EXEC_PY) * 2 + db;
}
static enum exec_lang kind_lang(int kind)
{
	return kind >= 2 ? EXEC_PY : EXEC_JS;
}
static bool kind_db(int kind)
{
	return kind & 1;
}

struct exec_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool stop;
	unsigned max; /* per runtime: the configured size */
	/* Demand: invocations per kind in the current and the previous window,
	 * and of them those the pool was short for (no sandbox waiting); the
	 * pool aims at what the last windows asked for. */
	uint64_t window_start_ns;
	unsigned demand[POOL_KINDS], demand_prev[POOL_KINDS];
	unsigned short_[POOL_KINDS], short_prev[POOL_KINDS];
	uint64_t memory_mb; /* limit while waiting: the largest a function gets */
	uint64_t timeout_ms;
	uint64_t max_age_ns;
	/* Oldest first. A wrapper writes one newline on stdout once its
	 * runtime and SDK are loaded and it blocks reading the invocation. */
	struct pool_item {
		struct sbx s;
		bool ready;  /* that newline was read */
		bool broken; /* something else came first: never handed out */
	} items[POOL_KINDS][POOL_MAX];
	unsigned n[POOL_KINDS];
	struct exec_pool_stats stats;
};

static bool alive(const struct sbx *s)
{
	struct pollfd p = {.fd = s->pidfd, .events = POLLIN};
	return poll(&p, 1, 0) == 0;
}

/* Has the wrapper announced it is waiting? Consumes the announcement. A
 * sandbox that writes anything else first is broken: -1. */
static int check_ready(struct pool_item *it)
{
	if (it->ready || it->broken)
		return it->ready ? 1 : -1;
	struct pollfd p = {.fd = it->s.stdio[1], .events = POLLIN};
	if (poll(&p, 1, 0) <= 0)
		return 0;
	char c;
	if (read(it->s.stdio[1], &c, 1) != 1 || c != '\n') {
		it->broken = true;
		return -1;
	}
	it->ready = true;
	return 1;
}

static void pool_remove(struct exec_pool *pool, int kind, unsigned i)
{
	memmove(&pool->items[kind][i], &pool->items[kind][i + 1],
	        (pool->n[kind] - i - 1) * sizeof(pool->items[kind][0]));
	pool->n[kind]--;
}

/* Discard the pooled sandbox at i (dead, too old or broken), unlocked while
 * it is destroyed. */
static void pool_discard(struct exec_pool *pool, int kind, unsigned i)
{
	struct sbx dead = pool->items[kind][i].s;
	pool_remove(pool, kind, i);
	pool->stats.discarded++;
	pthread_mutex_unlock(&pool->mu);
	sbx_destroy(&dead);
	pthread_mutex_lock(&pool->mu);
}

/* Index of the oldest usable sandbox of kind whose wrapper waits
 * (*ret_ready), else of the oldest still starting; -1 if there is none.
 * Unusable ones go to the reaper. Never unlocks: an index stays valid until
 * the caller unlocks. */
static int pool_pick(struct exec_ctx *ctx, int kind, bool *ret_ready)
{
	struct exec_pool *pool = ctx->pool;
	int starting = -1;
	for (unsigned i = 0; i < pool->n[kind];) {
		struct pool_item *it = &pool->items[kind][i];
		int ready = check_ready(it);
		if (ready < 0 || !alive(&it->s) || util_now_ns() - it->s.start_ns >= pool->max_age_ns) {
			exec_dispose(ctx, &it->s);
			pool_remove(pool, kind, i);
			pool->stats.discarded++;
			continue;
		}
		if (ready) {
			*ret_ready = true;
			return (int)i;
		}
		if (starting < 0)
			starting = (int)i;
		i++;
	}
	*ret_ready = false;
	return starting;
}

/* Of lang's sandboxes, the oldest whose wrapper is waiting, of the kind
 * asked for if there is one (either kind serves any function); failing
 * that, the one of that kind that has been starting longest (its runtime is
 * part-way up: still less to wait for than a fresh spawn). *ret_ready tells
 * whether its wrapper has announced itself. */
bool pool_take(struct exec_ctx *ctx, enum exec_lang lang, bool db, struct sbx *ret, bool *ret_ready)
{
	struct exec_pool *pool = ctx->pool;
	if (!pool)
		return false;
	pthread_mutex_lock(&pool->mu);
	int want = pool_kind(lang, db), other = pool_kind(lang, !db);
	pool->demand[want]++;
	bool ready_want, ready_other;
	int i = pool_pick(ctx, want, &ready_want);
	int kind = want;
	if (i < 0 || !ready_want) {
		int j = pool_pick(ctx, other, &ready_other);
		if (j >= 0 && (ready_other || i < 0)) {
			i = j;
			kind = other;
		}
	}
	if (i >= 0) {
		*ret = pool->items[kind][i].s;
		*ret_ready = pool->items[kind][i].ready;
		pool_remove(pool, kind, (unsigned)i);
		pool->stats.warm++;
	} else
		pool->stats.cold++;
	if (i < 0 || !*ret_ready)
		pool->short_[want]++;
	/* A taken sandbox is replaced once it is assigned (pool_refill): the
	 * replacement's spawn would otherwise hold the one spawner while this
	 * invocation waits for it to narrow the sandbox's limits. */
	if (i < 0)
		pthread_cond_signal(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	return i >= 0;
}

void pool_refill(struct exec_ctx *ctx)
{
	struct exec_pool *pool = ctx->pool;
	if (!pool)
		return;
	pthread_mutex_lock(&pool->mu);
	pthread_cond_signal(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
}

/* How many to keep of kind: as many as were asked for in a recent window at
 * most, the two kinds of a runtime together never above the configured
 * size; of the plain kind one at least (the next invocation should be
 * warm), of the kind with the driver none while no function that uses the
 * database is invoked. Called with the lock held. */
static unsigned pool_want(struct exec_pool *pool, int kind)
{
	unsigned want = pool->demand[kind] > pool->demand_prev[kind] ? pool->demand[kind] : pool->demand_prev[kind];
	unsigned caught = pool->short_[kind] > pool->short_prev[kind] ? pool->short_[kind] : pool->short_prev[kind];
	/* Invocations of a window come spread over it; a sandbox serves one and
	 * takes a runtime's start-up to replace: a quarter is plenty ahead.
	 * Where they came in bursts, the pool was caught short: one more for
	 * each time it was. */
	unsigned ahead = want / 4 > caught ? want / 4 : caught;
	return ahead + (kind_db(kind) ? want > 0 : 1);
}

static unsigned pool_target(struct exec_pool *pool, int kind)
{
	uint64_t now = util_now_ns();
	if (now - pool->window_start_ns >= POOL_WINDOW_NS) {
		bool idle = now - pool->window_start_ns >= 2 * POOL_WINDOW_NS;
		for (int k = 0; k < POOL_KINDS; k++) {
			pool->demand_prev[k] = idle ? 0 : pool->demand[k];
			pool->short_prev[k] = idle ? 0 : pool->short_[k];
			pool->demand[k] = 0;
			pool->short_[k] = 0;
		}
		pool->window_start_ns = now;
	}
	/* Both kinds of a runtime share its size, in proportion to what they
	 * want; the kind with the driver gets one at least if it wants any and
	 * the size allows two. */
	enum exec_lang lang = kind_lang(kind);
	unsigned plain = pool_want(pool, pool_kind(lang, false)), db = pool_want(pool, pool_kind(lang, true));
	if (plain + db > pool->max) {
		unsigned share = (unsigned)((uint64_t)pool->max * db / (plain + db));
		if (share == 0 && db > 0 && pool->max > 1)
			share = 1;
		db = share;
		plain = pool->max - share;
	}
	return kind_db(kind) ? db : plain;
}

static void *pool_main(void *arg)
{
	struct exec_ctx *ctx = arg;
	struct exec_pool *pool = ctx->pool;
	pthread_mutex_lock(&pool->mu);
	while (!pool->stop) {
		bool filled = false;
		for (int kind = 0; kind < POOL_KINDS && !pool->stop; kind++) {
			/* Old or dead ones first: never handed out, replaced. */
			for (unsigned i = 0; i < pool->n[kind];) {
				struct pool_item *it = &pool->items[kind][i];
				if (check_ready(it) >= 0 && alive(&it->s) &&
				    util_now_ns() - it->s.start_ns < pool->max_age_ns) {
					i++;
					continue;
				}
				pool_discard(pool, kind, i);
			}
			unsigned target = pool_target(pool, kind);
			/* Demand fell: the oldest beyond the target go. */
			while (pool->n[kind] > target)
				pool_discard(pool, kind, 0);
			if (pool->n[kind] >= target)
				continue;
			pthread_mutex_unlock(&pool->mu);
			struct sbx s;
			struct zerr err = {0};
			int r = exec_spawn_runtime(ctx, kind_lang(kind), pool->memory_mb, pool->timeout_ms,
			                           ctx->cpu_percent, kind_db(kind) ? SPAWN_POOLED_DB : SPAWN_POOLED, &s,
			                           &err);
			pthread_mutex_lock(&pool->mu);
			if (r < 0) {
				pool->stats.spawn_failures++;
				continue;
			}
			if (pool->stop || pool->n[kind] >= POOL_MAX) {
				pthread_mutex_unlock(&pool->mu);
				sbx_destroy(&s);
				pthread_mutex_lock(&pool->mu);
				continue;
			}
			pool->items[kind][pool->n[kind]++] = (struct pool_item){.s = s};
			pool->stats.spawned++;
			filled = true;
		}
		if (!filled && !pool->stop) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&pool->cv, &pool->mu, &ts);
		}
	}
	pthread_mutex_unlock(&pool->mu);
	return NULL;
}

int exec_pool_start(struct exec_ctx *ctx, unsigned per_runtime, uint64_t memory_mb, uint64_t timeout_ms,
                    struct zerr *err)
{
	if (per_runtime == 0)
		return 0;
	if (!ctx->spawner)
		return zerr_set(err, -EINVAL, "the warm pool needs the spawner (it spawns from a thread)");
	if (per_runtime > POOL_MAX)
		return zerr_set(err, -EINVAL, "pool size above %d", POOL_MAX);
	struct exec_pool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		return zerr_set(err, -ENOMEM, "out of memory");
	pool->max = per_runtime;
	pool->window_start_ns = util_now_ns();
	pool->memory_mb = memory_mb;
	pool->timeout_ms = timeout_ms;
	pool->max_age_ns = 300ull * 1000000000ull;
	pthread_mutex_init(&pool->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->cv, &ca);
	pthread_condattr_destroy(&ca);
	ctx->pool = pool;
	int r = pthread_create(&pool->thread, NULL, pool_main, ctx);
	if (r != 0) {
		ctx->pool = NULL;
		free(pool);
		return zerr_set(err, -r, "pthread_create: %s", strerror(r));
	}
	return 0;
}

void exec_pool_set_max_age(struct exec_ctx *ctx, uint64_t ms)
{
	struct exec_pool *pool = ctx->pool;
	if (!pool)
		return;
	pthread_mutex_lock(&pool->mu);
	pool->max_age_ns = ms * 1000000ull;
	pthread_cond_signal(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
}

void exec_pool_stop(struct exec_ctx *ctx)
{
	struct exec_pool *pool = ctx->pool;
	if (!pool)
		return;
	pthread_mutex_lock(&pool->mu);
	pool->stop = true;
	pthread_cond_signal(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	pthread_join(pool->thread, NULL);
	ctx->pool = NULL;
	for (int kind = 0; kind < POOL_KINDS; kind++)
		for (unsigned i = 0; i < pool->n[kind]; i++)
			sbx_destroy(&pool->items[kind][i].s);
	pthread_cond_destroy(&pool->cv);
	pthread_mutex_destroy(&pool->mu);
	free(pool);
}

void exec_pool_get_stats(struct exec_ctx *ctx, struct exec_pool_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	struct exec_pool *pool = ctx->pool;
	if (!pool)
		return;
	pthread_mutex_lock(&pool->mu);
	*ret = pool->stats;
	for (int kind = 0; kind < POOL_KINDS; kind++) {
		bool js = kind_lang(kind) == EXEC_JS;
		*(js ? &ret->target_js : &ret->target_py) += pool_target(pool, kind);
		for (unsigned i = 0; i < pool->n[kind]; i++) {
			/* Ready: the wrapper said so (a broken one is counted as
			 * starting until the pool's thread discards it). */
			bool ready = check_ready(&pool->items[kind][i]) > 0;
			*(js ? (ready ? &ret->ready_js : &ret->starting_js)
			     : (ready ? &ret->ready_py : &ret->starting_py)) += 1;
			if (ready && kind_db(kind))
				*(js ? &ret->ready_db_js : &ret->ready_db_py) += 1;
			/* What the waiting runtimes hold now. */
			struct cg_stats cs;
			if (sbx_get_stats(&pool->items[kind][i].s, &cs) == 0)
				ret->memory_bytes += cs.memory_current_bytes;
		}
	}
	pthread_mutex_unlock(&pool->mu);
}
