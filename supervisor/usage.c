/* usage.c - see usage.h */
#define _GNU_SOURCE
#include "usage.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "fnv.h"
#include "log.h"
#include "mono.h"
#include "store.h"

#define PROBE   16    /* slots looked at for one project */
#define IDLE_MS 60000 /* an entry unused this long may be given to another project */
#define ID_LEN  36    /* a uuid's text */

struct entry {
	char id[ID_LEN + 1]; /* "": free */
	uint64_t known;      /* the month's count, as last read */
	int64_t known_ms;    /* when (0: never) */
	uint64_t pending;    /* admitted in memory, not written yet */
	uint64_t inflight;   /* being written */
	int64_t used_ms;
};

struct usage {
	struct db_pool *pool;
	unsigned flush_ms;
	pthread_mutex_t mu;
	pthread_cond_t wake; /* the writer: a flush asked for, or stop */
	pthread_cond_t done; /* a write ended (inflight went down) */
	pthread_t thread;
	bool stop;
	uint64_t asked, written_gen; /* flushes asked for, write cycles ended */
	struct usage_stats st;
	struct entry e[USAGE_PROJECTS];
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool reusable(const struct entry *e, int64_t now)
{
	return !e->id[0] || (!e->pending && !e->inflight && now - e->used_ms > IDLE_MS);
}

/* The project's entry, made if there is room within its probe window; NULL
 * otherwise (it is then counted in PostgreSQL every time). Under mu. */
static struct entry *find(struct usage *u, const char *id, int64_t now)
{
	if (strlen(id) != ID_LEN)
		return NULL;
	size_t h = fnv1a64(id) % USAGE_PROJECTS;
	struct entry *free_slot = NULL;
	for (size_t i = 0; i < PROBE; i++) {
		struct entry *e = &u->e[(h + i) % USAGE_PROJECTS];
		if (e->id[0] && strcmp(e->id, id) == 0) {
			e->used_ms = now;
			return e;
		}
		if (!free_slot && reusable(e, now))
			free_slot = e;
	}
	if (!free_slot)
		return NULL;
	memset(free_slot, 0, sizeof(*free_slot));
	memcpy(free_slot->id, id, ID_LEN + 1);
	free_slot->used_ms = now;
	return free_slot;
}

/* Write counts ([{project_id, n}, ...]); the new counts land in the
 * entries. Called without mu. */
static int write_counts(struct usage *u, json_t *counts, json_t **ret, struct zerr *err)
{
	_cleanup_free_ char *text = json_dumps(counts, JSON_COMPACT);
	if (!text)
		return zerr_set(err, -ENOMEM, "cannot encode the counts");
	PGconn *c = db_acquire(u->pool);
	if (!c)
		return zerr_set(err, -ETIMEDOUT, "no database connection to write the counts");
	int r = store_add_invocations(c, text, ret, err);
	db_release(u->pool, c);
	return r;
}

static uint64_t count_of(json_t *counts, const char *id, bool *found)
{
	size_t i;
	json_t *row;
	json_array_foreach (counts, i, row) {
		const char *rid = json_string_value(json_array_get(row, 0));
		if (rid && strcmp(rid, id) == 0) {
			*found = true;
			json_int_t v = json_integer_value(json_array_get(row, 1));
			return v > 0 ? (uint64_t)v : 0;
		}
	}
	*found = false;
	return 0;
}

/* After a write of n counts of e (under mu): the outcome lands in e. */
static void settle(struct usage *u, struct entry *e, uint64_t n, int r, json_t *counts, int64_t now)
{
	e->inflight -= n;
	if (r < 0) {
		/* The database away: counted again at the next write. */
		e->pending += n;
		return;
	}
	bool found;
	uint64_t v = count_of(counts, e->id, &found);
	if (found) {
		e->known = v;
		e->known_ms = now;
		u->st.written += n;
	} else {
		/* The project was deleted meanwhile. */
		u->st.lost += n;
	}
}

/* One write of everything pending. Under mu; releases it meanwhile. */
static void write_pending(struct usage *u)
{
	json_t *batch = json_array();
	size_t idx[USAGE_PROJECTS];
	uint64_t n[USAGE_PROJECTS];
	size_t k = 0;
	for (size_t i = 0; batch && i < USAGE_PROJECTS; i++) {
		struct entry *e = &u->e[i];
		if (!e->pending || e->inflight)
			continue;
		if (json_array_append_new(
		        batch, json_pack("{s:s, s:I}", "project_id", e->id, "n", (json_int_t)e->pending)) < 0)
			break;
		idx[k] = i;
		n[k++] = e->pending;
		e->inflight = e->pending;
		e->pending = 0;
	}
	if (k == 0) {
		json_decref(batch);
		return;
	}
	pthread_mutex_unlock(&u->mu);
	struct zerr err = {0};
	json_t *counts = NULL;
	int r = write_counts(u, batch, &counts, &err);
	json_decref(batch);
	if (r < 0)
		zlog(ZLOG_WARN, "usage_write_failed", "error", err.msg, NULL);
	pthread_mutex_lock(&u->mu);
	int64_t now = now_ms();
	for (size_t i = 0; i < k; i++)
		settle(u, &u->e[idx[i]], n[i], r, counts, now);
	json_decref(counts);
	pthread_cond_broadcast(&u->done);
}

static void *writer(void *arg)
{
	struct usage *u = arg;
	pthread_mutex_lock(&u->mu);
	while (!u->stop) {
		struct timespec until = mono_deadline_in(u->flush_ms);
		/* A flush asked for while the last write was under way is served
		 * at once. */
		while (!u->stop && u->written_gen >= u->asked && pthread_cond_timedwait(&u->wake, &u->mu, &until) == 0)
			;
		uint64_t asked = u->asked;
		write_pending(u);
		if (asked > u->written_gen)
			u->written_gen = asked;
		pthread_cond_broadcast(&u->done);
	}
	/* Stopping: what is left, once. */
	write_pending(u);
	pthread_mutex_unlock(&u->mu);
	return NULL;
}

int usage_start(struct db_pool *pool, unsigned flush_ms, struct usage **ret, struct zerr *err)
{
	struct usage *u = calloc(1, sizeof(*u));
	if (!u)
		return zerr_set(err, -ENOMEM, "out of memory");
	u->pool = pool;
	u->flush_ms = flush_ms ? flush_ms : USAGE_FLUSH_MS;
	pthread_mutex_init(&u->mu, NULL);
	/* Waits are by the monotonic clock: a step of the wall clock
	 * neither stalls the writer nor hurries it. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&u->wake, &ca);
	pthread_cond_init(&u->done, &ca);
	pthread_condattr_destroy(&ca);
	int r = pthread_create(&u->thread, NULL, writer, u);
	if (r != 0) {
		pthread_cond_destroy(&u->done);
		pthread_cond_destroy(&u->wake);
		pthread_mutex_destroy(&u->mu);
		free(u);
		return zerr_set(err, -r, "cannot start the usage writer");
	}
	*ret = u;
	return 0;
}

/* Counted in PostgreSQL: this node's unwritten count of the project first,
 * then the invocation, with the cap checked under the row's lock. */
static int take_in_database(struct usage *u, struct entry *e, const char *project_id, uint64_t cap, bool *ret_ok,
                            struct zerr *err)
{
	uint64_t pend = 0;
	if (e) {
		/* A write of this project's count still under way would be missed
		 * by the check. */
		while (e->inflight)
			pthread_cond_wait(&u->done, &u->mu);
		pend = e->pending;
		e->pending = 0;
		e->inflight = pend;
	}
	u->st.in_database++;
	pthread_mutex_unlock(&u->mu);

	int r = 0;
	json_t *counts = NULL;
	if (pend) {
		json_t *one = json_pack("[{s:s, s:I}]", "project_id", project_id, "n", (json_int_t)pend);
		r = one ? write_counts(u, one, &counts, err) : zerr_set(err, -ENOMEM, "out of memory");
		json_decref(one);
	}
	uint64_t count = 0;
	bool ok = false;
	if (r == 0) {
		PGconn *c = db_acquire(u->pool);
		if (c) {
			r = store_take_invocation(c, project_id, cap, &ok, &count, err);
			db_release(u->pool, c);
		} else {
			r = zerr_set(err, -ETIMEDOUT, "no database connection to count the invocation");
		}
	}

	pthread_mutex_lock(&u->mu);
	int64_t now = now_ms();
	if (e) {
		if (pend)
			settle(u, e, pend, r < 0 && !counts ? -1 : 0, counts, now);
		if (r == 0) {
			/* Refused: the count is at the cap at least. */
			e->known = ok ? count : cap;
			e->known_ms = now;
		}
		pthread_cond_broadcast(&u->done);
	}
	json_decref(counts);
	if (r == 0)
		*ret_ok = ok;
	return r;
}

int usage_take(struct usage *u, const char *project_id, uint64_t cap, bool *ret_ok, struct zerr *err)
{
	pthread_mutex_lock(&u->mu);
	int64_t now = now_ms();
	struct entry *e = find(u, project_id, now);
	if (e && e->known_ms && now - e->known_ms <= USAGE_FRESH_MS && e->known <= cap &&
	    cap - e->known > e->pending + e->inflight + USAGE_MARGIN) {
		e->pending++;
		u->st.in_memory++;
		pthread_mutex_unlock(&u->mu);
		*ret_ok = true;
		return 0;
	}
	int r = take_in_database(u, e, project_id, cap, ret_ok, err);
	pthread_mutex_unlock(&u->mu);
	return r;
}

void usage_flush(struct usage *u, unsigned timeout_ms)
{
	struct timespec until = mono_deadline_in(timeout_ms);
	pthread_mutex_lock(&u->mu);
	uint64_t mine = ++u->asked;
	pthread_cond_signal(&u->wake);
	while (u->written_gen < mine && !u->stop && pthread_cond_timedwait(&u->done, &u->mu, &until) == 0)
		;
	pthread_mutex_unlock(&u->mu);
}

void usage_stats(struct usage *u, struct usage_stats *ret)
{
	pthread_mutex_lock(&u->mu);
	*ret = u->st;
	pthread_mutex_unlock(&u->mu);
}

void usage_stop(struct usage *u)
{
	if (!u)
		return;
	pthread_mutex_lock(&u->mu);
	u->stop = true;
	pthread_cond_signal(&u->wake);
	pthread_mutex_unlock(&u->mu);
	pthread_join(u->thread, NULL);
	pthread_cond_destroy(&u->done);
	pthread_cond_destroy(&u->wake);
	pthread_mutex_destroy(&u->mu);
	free(u);
}
