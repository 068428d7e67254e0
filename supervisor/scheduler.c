/* scheduler.c - see scheduler.h */
#define _GNU_SOURCE
#include "scheduler.h"

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>

#include "app.h"
#include "conditions.h"
#include "jobs.h"
#include "log.h"
#include "store_cron.h"

#define LISTEN_BACKOFF_MIN_MS 500
#define LISTEN_BACKOFF_MAX_MS 30000
#define RETRY_MS              1000  /* after a failed fire or load */
#define NOTIFY_DEBOUNCE_MS    100   /* reloads at most this often on notifications */
#define ZONES_MAX             1024  /* distinct zones loaded (the zoneinfo has about 600) */
#define PRUNE_FIRST_MS        5000  /* after start */
#define PRUNE_AGAIN_MS        60000 /* after a full batch */

/* ---- pure parts ------------------------------------------------------------ */

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

void sched_time_format(int64_t ms, char buf[SCHED_TIME_LEN])
{
	int64_t days = floor_div(ms, 86400000);
	int64_t in_day = ms - days * 86400000;
	int64_t y;
	int m, d;
	tz_civil_from_days(days, &y, &m, &d);
	snprintf(buf, SCHED_TIME_LEN, "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d.%03dZ", y, m, d, (int)(in_day / 3600000),
	         (int)(in_day / 60000 % 60), (int)(in_day / 1000 % 60), (int)(in_day % 1000));
}

json_t *sched_event(const char *trigger_id, const char *schedule, int64_t scheduled_ms, int64_t actual_ms,
                    json_t *payload)
{
	char scheduled[SCHED_TIME_LEN], actual[SCHED_TIME_LEN];
	sched_time_format(scheduled_ms, scheduled);
	sched_time_format(actual_ms, actual);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:O}", "trigger", "schedule", "trigger_id", trigger_id, "cron",
	                 schedule, "scheduled_time", scheduled, "actual_time", actual, "payload",
	                 payload ? payload : json_null());
}

/* A string member of config, or dflt when absent or null; -EINVAL when
 * it is something else. */
static int config_string(json_t *config, const char *key, const char *dflt, const char **ret, struct zerr *err)
{
	json_t *v = json_object_get(config, key);
	if (!v || json_is_null(v)) {
		*ret = dflt;
		return 0;
	}
	if (!json_is_string(v))
		return zerr_set(err, -EINVAL, "config.%s: not a string", key);
	*ret = json_string_value(v);
	return 0;
}

static int config_choice(json_t *config, const char *key, const char *const *choices, size_t n, int *ret,
                         struct zerr *err)
{
	const char *s = NULL;
	int r = config_string(config, key, choices[0], &s, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, choices[i]) == 0) {
			*ret = (int)i;
			return 0;
		}
	return zerr_set(err, -EINVAL, "config.%s: \"%.64s\" is not one of the choices", key, s);
}

int sched_config_parse(json_t *config, struct sched_config *ret, struct zerr *err)
{
	static const char *const catch_ups[] = {"skip", "latest", "all"};
	static const char *const overlaps[] = {"allow", "skip"};
	if (!json_is_object(config))
		return zerr_set(err, -EINVAL, "config: not an object");
	struct sched_config c = {0};
	json_t *schedule = json_object_get(config, "schedule");
	if (!json_is_string(schedule))
		return zerr_set(err, -EINVAL, "config.schedule: missing or not a string");
	if (json_string_length(schedule) > CRON_EXPR_MAX)
		return zerr_set(err, -EINVAL, "config.schedule: longer than %d bytes", CRON_EXPR_MAX);
	snprintf(c.schedule, sizeof(c.schedule), "%s", json_string_value(schedule));
	struct zerr e = {0};
	if (cron_parse(c.schedule, &c.cron, &e) < 0)
		return zerr_set(err, -EINVAL, "config.schedule: %s", e.msg);
	const char *zone = NULL;
	int r = config_string(config, "timezone", "UTC", &zone, err);
	if (r < 0)
		return r;
	if (!tz_name_valid(zone))
		return zerr_set(err, -EINVAL, "config.timezone: \"%.64s\" is not a zone name", zone);
	snprintf(c.timezone, sizeof(c.timezone), "%s", zone);
	int choice;
	r = config_choice(config, "catch_up", catch_ups, ELEMENTSOF(catch_ups), &choice, err);
	if (r < 0)
		return r;
	c.catch_up = (enum sched_catch_up)choice;
	r = config_choice(config, "overlap", overlaps, ELEMENTSOF(overlaps), &choice, err);
	if (r < 0)
		return r;
	c.overlap = (enum sched_overlap)choice;
	json_t *payload = json_object_get(config, "payload");
	c.payload = json_incref(payload ? payload : json_null());
	*ret = c;
	return 0;
}

void sched_config_done(struct sched_config *c)
{
	if (!c)
		return;
	json_decref(c->payload);
	c->payload = NULL;
}

int sched_last_tick(const struct cron *c, const struct tz *z, int64_t lo_ms, int64_t hi_ms, int64_t *ret_ms)
{
	if (hi_ms <= lo_ms)
		return -ENOENT;
	/* Past it, hi - lo may not fit in 64 bits. */
	if (hi_ms > CRON_MS_MAX)
		return -ERANGE;
	int64_t t;
	int r = cron_next(c, z, lo_ms, &t);
	if (r < 0)
		return r;
	if (t > hi_ms)
		return -ENOENT;
	/* cron_next(s) <= hi holds for s below the last tick L <= hi and
	 * fails from L on: bisect for L - 1. Each step halves the range. */
	int64_t yes = lo_ms, no = hi_ms;
	while (no - yes > 1) {
		int64_t mid = yes + (no - yes) / 2;
		r = cron_next(c, z, mid, &t);
		if (r < 0 && r != -ENOENT)
			return r;
		if (r == 0 && t <= hi_ms)
			yes = mid;
		else
			no = mid;
	}
	r = cron_next(c, z, yes, &t);
	if (r < 0)
		return r;
	*ret_ms = t;
	return 0;
}

static void reverse(int64_t *a, size_t n)
{
	for (size_t i = 0; i < n / 2; i++) {
		int64_t x = a[i];
		a[i] = a[n - 1 - i];
		a[n - 1 - i] = x;
	}
}

int sched_plan(const struct cron *c, const struct tz *z, int64_t after_ms, int64_t now_ms, enum sched_catch_up policy,
               struct sched_plan *ret)
{
	memset(ret, 0, sizeof(*ret));
	/* Outside it, now - SCHED_WINDOW_MS may not fit in 64 bits. */
	if (now_ms < CRON_MS_MIN || now_ms > CRON_MS_MAX)
		return -ERANGE;
	int64_t t;
	int r;
	/* Ticks in (after, missed_hi] are missed; those in (missed_hi, now]
	 * are on time (late by SCHED_MISFIRE_MS at most). */
	int64_t missed_hi = now_ms - SCHED_MISFIRE_MS - 1;
	if (after_ms < missed_hi) {
		int64_t window_lo = now_ms - SCHED_WINDOW_MS; /* the first instant of the window */
		int64_t from = after_ms;
		if (from < window_lo - 1) {
			r = cron_next(c, z, from, &t);
			if (r < 0 && r != -ENOENT)
				return r;
			ret->missed_more = r == 0 && t < window_lo && t <= missed_hi;
			from = window_lo - 1;
		}
		/* Within the window: at most one tick a second. Under "all"
		 * fire[] is a ring keeping the most recent SCHED_CATCH_UP_MAX. */
		uint64_t n = 0;
		int64_t last = 0;
		for (;;) {
			r = cron_next(c, z, from, &t);
			if (r == -ENOENT || (r == 0 && t > missed_hi))
				break;
			if (r < 0)
				return r;
			if (n == 0)
				ret->missed_first = t;
			last = t;
			if (policy == SCHED_CATCH_UP_ALL)
				ret->fire[n % SCHED_CATCH_UP_MAX] = t;
			n++;
			from = t;
		}
		ret->missed_last = last;
		switch (policy) {
		case SCHED_CATCH_UP_SKIP:
			ret->missed = n;
			break;
		case SCHED_CATCH_UP_LATEST:
			if (n > 0) {
				ret->fire[ret->n_fire++] = last;
				ret->missed = n - 1;
			} else if (ret->missed_more) {
				/* Nothing in the window: the latest tick before it. */
				int64_t hi = window_lo - 1 < missed_hi ? window_lo - 1 : missed_hi;
				r = sched_last_tick(c, z, after_ms, hi, &t);
				if (r < 0 && r != -ENOENT)
					return r;
				if (r == 0) {
					ret->fire[ret->n_fire++] = t;
					int64_t first;
					ret->missed_more = cron_next(c, z, after_ms, &first) == 0 && first < t;
				}
			}
			break;
		case SCHED_CATCH_UP_ALL:
			if (n > SCHED_CATCH_UP_MAX) {
				/* Rotate the ring into ascending order. */
				size_t k = (size_t)(n % SCHED_CATCH_UP_MAX);
				reverse(ret->fire, k);
				reverse(ret->fire + k, SCHED_CATCH_UP_MAX - k);
				reverse(ret->fire, SCHED_CATCH_UP_MAX);
				ret->n_fire = SCHED_CATCH_UP_MAX;
				ret->missed = n - SCHED_CATCH_UP_MAX;
				ret->capped = true;
			} else {
				ret->n_fire = (size_t)n;
			}
			break;
		}
		if (ret->missed == 0)
			ret->missed_first = ret->missed_last = 0;
		else if (ret->n_fire > 0) {
			/* The counted ones end before the first that fires. */
			r = sched_last_tick(c, z, ret->missed_first - 1, ret->fire[0] - 1, &t);
			if (r < 0)
				return r;
			ret->missed_last = t;
		}
		after_ms = missed_hi;
	}
	/* On time: at most SCHED_ONTIME_MAX whole seconds. */
	int64_t from = after_ms;
	while (ret->n_fire < SCHED_PLAN_MAX) {
		r = cron_next(c, z, from, &t);
		if (r == -ENOENT || (r == 0 && t > now_ms))
			break;
		if (r < 0)
			return r;
		ret->fire[ret->n_fire++] = t;
		from = t;
	}
	r = cron_next(c, z, now_ms > from ? now_ms : from, &t);
	if (r < 0 && r != -ENOENT)
		return r;
	ret->next = r == 0 ? t : 0;
	return 0;
}

/* ---- the scheduler ----------------------------------------------------------- */

struct strig {
	char id[STORE_ID_LEN + 1];
	char function_id[STORE_ID_LEN + 1];
	int64_t updated_ms;
	bool bad; /* malformed: logged once, ignored until the row changes */
	struct sched_config cfg;
	const struct tz *zone; /* the scheduler's (zones cache) */
	json_t *conditions;
	int64_t done_ms;  /* every tick up to here is dealt with */
	int64_t next_ms;  /* the next tick; 0: to compute; INT64_MAX: none */
	int64_t retry_ms; /* after a failure: not before */
};

struct zone_entry {
	char name[TZ_NAME_MAX + 1];
	struct tz *tz;
};

struct sched {
	struct app *app;
	pthread_t thread;
	int stop_fd; /* eventfd: written once by sched_stop */
	atomic_bool stopping;

	PGconn *listen; /* NULL while disconnected */
	int64_t listen_retry_ms;
	unsigned listen_backoff_ms;

	struct strig *t; /* sorted by id */
	size_t n;
	struct zone_entry *zones;
	size_t n_zones;

	bool reload_now;
	int64_t reload_ms, last_reload_ms, prune_ms;
	bool load_failing; /* log a failing load once, and its recovery */
	bool capped_logged;
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void strig_done(struct strig *t)
{
	sched_config_done(&t->cfg);
	json_decref(t->conditions);
	t->conditions = NULL;
}

static int zone_get(struct sched *s, const char *name, const struct tz **ret, struct zerr *err)
{
	if (strcmp(name, "UTC") == 0) {
		*ret = tz_utc();
		return 0;
	}
	for (size_t i = 0; i < s->n_zones; i++)
		if (strcmp(s->zones[i].name, name) == 0) {
			*ret = s->zones[i].tz;
			return 0;
		}
	if (s->n_zones == ZONES_MAX)
		return zerr_set(err, -E2BIG, "more than %d time zones in use", ZONES_MAX);
	struct tz *z = NULL;
	int r = tz_load(name, &z, err);
	if (r < 0)
		return r;
	if (!s->zones && !(s->zones = calloc(ZONES_MAX, sizeof(*s->zones)))) {
		tz_free(z);
		return zerr_set(err, -ENOMEM, "out of memory");
	}
	snprintf(s->zones[s->n_zones].name, sizeof(s->zones[s->n_zones].name), "%s", name);
	s->zones[s->n_zones++].tz = z;
	*ret = z;
	return 0;
}

static bool uuid_shaped(const char *s)
{
	return s && strlen(s) == STORE_ID_LEN && strspn(s, "0123456789abcdef-") == STORE_ID_LEN;
}

/* A trigger from its row; t->bad when it cannot be scheduled (logged). */
static void strig_from_row(struct sched *s, json_t *row, struct strig *t)
{
	const char *id = json_string_value(json_object_get(row, "id"));
	const char *fid = json_string_value(json_object_get(row, "function_id"));
	snprintf(t->id, sizeof(t->id), "%s", uuid_shaped(id) ? id : "?");
	snprintf(t->function_id, sizeof(t->function_id), "%s", uuid_shaped(fid) ? fid : "?");
	t->updated_ms = json_integer_value(json_object_get(row, "updated_ms"));
	json_t *last = json_object_get(row, "last_ms");
	t->done_ms = json_is_integer(last) && json_integer_value(last) > t->updated_ms ? json_integer_value(last)
	                                                                               : t->updated_ms;
	struct zerr err = {0};
	int r = 0;
	json_t *conds = json_object_get(row, "conditions");
	if (!uuid_shaped(id) || !uuid_shaped(fid))
		r = zerr_set(&err, -EINVAL, "id: not a uuid");
	if (r == 0)
		r = sched_config_parse(json_object_get(row, "config"), &t->cfg, &err);
	if (r == 0 && (r = zone_get(s, t->cfg.timezone, &t->zone, &err)) < 0)
		sched_config_done(&t->cfg);
	if (r == 0) {
		struct zerr e = {0};
		if (cond_validate(conds, &e) < 0) {
			sched_config_done(&t->cfg);
			r = zerr_set(&err, -EINVAL, "%s", e.msg);
		}
	}
	if (r < 0) {
		t->bad = true;
		zlog(ZLOG_WARN, "cron_trigger_ignored", "trigger_id", t->id, "error", err.msg, NULL);
		return;
	}
	t->conditions = json_incref(conds);
}

/* Read the triggers again; entries whose row did not change keep what this
 * node knows of them (parsed config, ticks dealt with). */
static void reload(struct sched *s, int64_t now)
{
	s->reload_now = false;
	s->last_reload_ms = now;
	s->reload_ms = now + SCHED_RELOAD_MS;
	struct zerr err = {0};
	json_t *rows = NULL;
	bool more = false;
	PGconn *c = db_acquire(s->app->pool);
	int r = c ? store_cron_load(c, SCHED_TRIGGERS_MAX, &rows, &more, &err)
	          : zerr_set(&err, -ETIMEDOUT, "no database connection");
	db_release(s->app->pool, c);
	if (r < 0) {
		if (!s->load_failing)
			zlog(ZLOG_ERROR, "cron_load_failed", "error", err.msg, NULL);
		s->load_failing = true;
		s->reload_ms = now + RETRY_MS;
		return;
	}
	if (s->load_failing)
		zlog(ZLOG_INFO, "cron_load_recovered", NULL);
	s->load_failing = false;
	if (more && !s->capped_logged) {
		char max[24];
		snprintf(max, sizeof(max), "%d", SCHED_TRIGGERS_MAX);
		zlog(ZLOG_ERROR, "cron_triggers_capped", "scheduled", max, NULL);
	}
	s->capped_logged = more;

	size_t n = json_array_size(rows);
	struct strig *nt = n ? calloc(n, sizeof(*nt)) : NULL;
	if (n && !nt) {
		json_decref(rows);
		zlog(ZLOG_ERROR, "cron_load_failed", "error", "out of memory", NULL);
		s->reload_ms = now + RETRY_MS;
		return;
	}
	/* Both lists are in id order (uuid order is the order of their text):
	 * one merge walk. */
	size_t o = 0, k = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *row = json_array_get(rows, i);
		const char *id = json_string_value(json_object_get(row, "id"));
		while (id && o < s->n && strcmp(s->t[o].id, id) < 0)
			o++;
		struct strig *t = &nt[k];
		json_t *last = json_object_get(row, "last_ms");
		int64_t updated = json_integer_value(json_object_get(row, "updated_ms"));
		if (id && o < s->n && strcmp(s->t[o].id, id) == 0 && s->t[o].updated_ms == updated) {
			*t = s->t[o];
			memset(&s->t[o], 0, sizeof(s->t[o])); /* moved: nothing left to free */
			o++;
			if (json_is_integer(last) && json_integer_value(last) > t->done_ms) {
				/* Another node fired further. */
				t->done_ms = json_integer_value(last);
				t->next_ms = 0;
			}
		} else {
			strig_from_row(s, row, t);
		}
		k++;
	}
	json_decref(rows);
	for (size_t i = 0; i < s->n; i++)
		strig_done(&s->t[i]);
	free(s->t);
	s->t = nt;
	s->n = k;
}

static void count(atomic_uint_fast64_t *counter, uint64_t n)
{
	atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

/* Fire one tick. Returns 0 when it is dealt with (fired, skipped, or
 * another node's), negative when it should be tried again. */
static int fire_one(struct sched *s, PGconn *c, struct strig *t, int64_t tick)
{
	struct app_metrics *m = &s->app->metrics;
	struct zerr err = {0};
	json_t *ev = sched_event(t->id, t->cfg.schedule, tick, wall_ms(), t->cfg.payload);
	_cleanup_free_ char *text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
	bool matched = ev && cond_match(t->conditions, ev);
	json_decref(ev);
	if (!text) {
		zlog(ZLOG_ERROR, "cron_fire_failed", "trigger_id", t->id, "error", "out of memory", NULL);
		return -ENOMEM;
	}
	enum store_cron_outcome out;
	char inv[STORE_ID_LEN + 1] = "";
	int r = store_cron_fire(c, t->id, tick, t->cfg.overlap == SCHED_OVERLAP_SKIP, matched, text, &out, inv, &err);
	char when[SCHED_TIME_LEN];
	sched_time_format(tick, when);
	if (r < 0) {
		zlog(ZLOG_ERROR, "cron_fire_failed", "trigger_id", t->id, "scheduled_time", when, "error", err.msg,
		     NULL);
		return r;
	}
	switch (out) {
	case STORE_CRON_FIRED:
		count(&m->events.cron_fired, 1);
		count(&m->events.enqueued, 1);
		jobs_wake(s->app->jobs);
		zlog(ZLOG_DEBUG, "cron_fired", "trigger_id", t->id, "scheduled_time", when, "invocation_id", inv, NULL);
		break;
	case STORE_CRON_OVERLAP:
		count(&m->events.cron_overlap, 1);
		zlog(ZLOG_INFO, "cron_overlap", "trigger_id", t->id, "scheduled_time", when, NULL);
		break;
	case STORE_CRON_FILTERED:
		count(&m->events.filtered, 1);
		break;
	case STORE_CRON_NOT_OURS:
		break;
	}
	return 0;
}

static void log_missed(const struct strig *t, const struct sched_plan *p)
{
	char n[24], first[SCHED_TIME_LEN], last[SCHED_TIME_LEN];
	snprintf(n, sizeof(n), "%" PRIu64 "%s", p->missed, p->missed_more ? "+" : "");
	sched_time_format(p->missed_first, first);
	sched_time_format(p->missed_last, last);
	static const char *const policies[] = {"skip", "latest", "all"};
	zlog(ZLOG_WARN, "cron_missed", "trigger_id", t->id, "catch_up", policies[t->cfg.catch_up], "missed", n, "first",
	     p->missed ? first : NULL, "last", p->missed ? last : NULL, NULL);
}

/* Plan and fire what is due of t. *c is acquired on first need. */
static void run_trigger(struct sched *s, PGconn **c, struct strig *t, int64_t now)
{
	struct zerr err = {0};
	struct sched_plan *p = malloc(sizeof(*p));
	if (!p) {
		t->retry_ms = now + RETRY_MS;
		return;
	}
	int r = sched_plan(&t->cfg.cron, t->zone, t->done_ms, now, t->cfg.catch_up, p);
	if (r < 0)
		goto bad;
	bool late = p->missed > 0 || p->missed_more || (p->n_fire > 0 && p->fire[0] < now - SCHED_MISFIRE_MS);
	if (!*c && p->n_fire + late > 0 && !(*c = db_acquire(s->app->pool))) {
		t->retry_ms = now + RETRY_MS;
		goto out;
	}
	if (late) {
		/* What looks missed from here may have been fired by another
		 * node meanwhile: ask before counting or catching up. */
		int64_t last;
		bool found;
		r = store_cron_last_fire(*c, t->id, &last, &found, &err);
		if (r < 0) {
			zlog(ZLOG_ERROR, "cron_fire_failed", "trigger_id", t->id, "error", err.msg, NULL);
			t->retry_ms = now + RETRY_MS;
			goto out;
		}
		if (found && last > t->done_ms) {
			t->done_ms = last;
			r = sched_plan(&t->cfg.cron, t->zone, t->done_ms, now, t->cfg.catch_up, p);
			if (r < 0)
				goto bad;
		}
	}
	if (p->missed > 0 || p->missed_more) {
		count(&s->app->metrics.events.cron_missed, p->missed);
		log_missed(t, p);
	}
	if (p->capped) {
		char max[24];
		snprintf(max, sizeof(max), "%d", SCHED_CATCH_UP_MAX);
		zlog(ZLOG_WARN, "cron_catch_up_capped", "trigger_id", t->id, "fired", max, NULL);
	}
	for (size_t i = 0; i < p->n_fire; i++) {
		if (atomic_load(&s->stopping))
			goto out; /* the rest: the next start, or another node */
		if (fire_one(s, *c, t, p->fire[i]) < 0) {
			/* Everything before this tick is dealt with; it is tried
			 * again (and, once late, is a missed tick). */
			t->done_ms = p->fire[i] - 1;
			t->next_ms = 0;
			t->retry_ms = now + RETRY_MS;
			if (PQstatus(*c) != CONNECTION_OK) {
				db_release(s->app->pool, *c);
				*c = NULL;
			}
			goto out;
		}
		t->done_ms = p->fire[i];
	}
	t->done_ms = now;
	t->next_ms = p->next ? p->next : INT64_MAX;
	goto out;
bad:
	t->bad = true;
	zlog(ZLOG_ERROR, "cron_trigger_ignored", "trigger_id", t->id, "error", "times out of range", NULL);
out:
	free(p);
}

static void fire_due(struct sched *s, int64_t now)
{
	PGconn *c = NULL;
	for (size_t i = 0; i < s->n && !atomic_load(&s->stopping); i++) {
		struct strig *t = &s->t[i];
		if (t->bad || t->retry_ms > now)
			continue;
		if (t->next_ms == 0) {
			int64_t next;
			int r = cron_next(&t->cfg.cron, t->zone, t->done_ms, &next);
			t->next_ms = r == 0 ? next : INT64_MAX;
		}
		if (t->next_ms <= now)
			run_trigger(s, &c, t, now);
	}
	if (c)
		db_release(s->app->pool, c);
}

static void prune(struct sched *s, int64_t now)
{
	s->prune_ms = now + SCHED_PRUNE_MS;
	PGconn *c = db_acquire(s->app->pool);
	if (!c)
		return;
	struct zerr err = {0};
	uint64_t deleted = 0;
	int r = store_cron_prune(c, SCHED_KEEP_DAYS, SCHED_PRUNE_BATCH, &deleted, &err);
	db_release(s->app->pool, c);
	if (r < 0) {
		zlog(ZLOG_WARN, "cron_prune_failed", "error", err.msg, NULL);
		return;
	}
	if (deleted == SCHED_PRUNE_BATCH)
		s->prune_ms = now + PRUNE_AGAIN_MS; /* more to go: soon, a batch at a time */
}

static void listen_drop(struct sched *s, int64_t now, const char *why)
{
	zlog(ZLOG_WARN, "cron_listen_lost", "error", why, NULL);
	PQfinish(s->listen);
	s->listen = NULL;
	s->listen_retry_ms = now + s->listen_backoff_ms;
}

static void listen_open(struct sched *s, int64_t now)
{
	struct zerr err = {0};
	PGconn *c = NULL;
	int r = db_pool_connect(s->app->pool, &c, &err);
	if (r == 0 && (r = store_cron_listen(c, &err)) == 0 && PQsetnonblocking(c, 1) != 0)
		r = zerr_set(&err, -EIO, "cannot make the connection non-blocking");
	if (r < 0) {
		if (c)
			PQfinish(c);
		/* Logged once per outage: the first failure and the recovery. */
		if (s->listen_backoff_ms == LISTEN_BACKOFF_MIN_MS)
			zlog(ZLOG_WARN, "cron_listen_failed", "error", err.msg, NULL);
		s->listen_retry_ms = now + s->listen_backoff_ms;
		s->listen_backoff_ms =
		    s->listen_backoff_ms * 2 > LISTEN_BACKOFF_MAX_MS ? LISTEN_BACKOFF_MAX_MS : s->listen_backoff_ms * 2;
		return;
	}
	if (s->listen_backoff_ms > LISTEN_BACKOFF_MIN_MS)
		zlog(ZLOG_INFO, "cron_listen_recovered", NULL);
	s->listen = c;
	s->listen_backoff_ms = LISTEN_BACKOFF_MIN_MS;
	/* Changes made while nobody listened: read everything again. */
	s->reload_now = true;
}

static void listen_read(struct sched *s, int64_t now)
{
	if (!PQconsumeInput(s->listen)) {
		listen_drop(s, now, PQerrorMessage(s->listen));
		return;
	}
	PGnotify *n;
	while ((n = PQnotifies(s->listen))) {
		PQfreemem(n);
		s->reload_now = true;
	}
	if (PQstatus(s->listen) != CONNECTION_OK)
		listen_drop(s, now, "connection closed");
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* Sleep until wake (wall ms), a notification or stop. */
static void sleep_until(struct sched *s, int64_t wake)
{
	int64_t now = wall_ms();
	/* The wall clock may be stepped: never trust a long sleep. */
	int64_t ms = min64(wake - now, SCHED_RELOAD_MS);
	if (ms <= 0)
		return;
	struct pollfd fds[2] = {{.fd = s->stop_fd, .events = POLLIN}, {.fd = -1}};
	if (s->listen) {
		fds[1].fd = PQsocket(s->listen);
		fds[1].events = POLLIN;
	}
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	int r = ppoll(fds, 2, &ts, NULL);
	if (r > 0 && s->listen && fds[1].revents)
		listen_read(s, wall_ms());
}

static void *sched_main(void *arg)
{
	struct sched *s = arg;
	zlog(ZLOG_INFO, "cron_scheduler_started", NULL);
	while (!atomic_load(&s->stopping)) {
		int64_t now = wall_ms();
		if (!s->listen && now >= s->listen_retry_ms)
			listen_open(s, now);
		if (s->reload_now && now < s->last_reload_ms + NOTIFY_DEBOUNCE_MS) {
			s->reload_ms = min64(s->reload_ms, s->last_reload_ms + NOTIFY_DEBOUNCE_MS);
			s->reload_now = false;
		}
		if (s->reload_now || now >= s->reload_ms)
			reload(s, now);
		fire_due(s, wall_ms());
		now = wall_ms();
		if (now >= s->prune_ms)
			prune(s, now);

		int64_t wake = s->reload_ms;
		if (!s->listen)
			wake = min64(wake, s->listen_retry_ms);
		wake = min64(wake, s->prune_ms);
		for (size_t i = 0; i < s->n; i++) {
			const struct strig *t = &s->t[i];
			if (t->bad)
				continue;
			wake = min64(wake, t->retry_ms > t->next_ms ? t->retry_ms : t->next_ms);
		}
		if (!s->reload_now)
			sleep_until(s, wake);
	}
	zlog(ZLOG_INFO, "cron_scheduler_stopped", NULL);
	return NULL;
}

static void sched_free(struct sched *s)
{
	if (s->listen)
		PQfinish(s->listen);
	for (size_t i = 0; i < s->n; i++)
		strig_done(&s->t[i]);
	free(s->t);
	for (size_t i = 0; i < s->n_zones; i++)
		tz_free(s->zones[i].tz);
	free(s->zones);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	free(s);
}

int sched_start(struct app *app, struct zerr *err)
{
	if (!app || !app->pool)
		return zerr_set(err, -EINVAL, "the scheduler needs the database pool");
	struct sched *s = calloc(1, sizeof(*s));
	if (!s)
		return zerr_set(err, -ENOMEM, "out of memory");
	s->app = app;
	s->listen_backoff_ms = LISTEN_BACKOFF_MIN_MS;
	s->reload_now = true;
	s->prune_ms = wall_ms() + PRUNE_FIRST_MS;
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0) {
		int e = errno;
		sched_free(s);
		return zerr_set(err, -e, "eventfd: %s", strerror(e));
	}
	int r = pthread_create(&s->thread, NULL, sched_main, s);
	if (r != 0) {
		sched_free(s);
		return zerr_set(err, -r, "start the scheduler thread: %s", strerror(r));
	}
	app->sched = s;
	return 0;
}

void sched_stop(struct sched *s)
{
	if (!s)
		return;
	atomic_store(&s->stopping, true);
	uint64_t one = 1;
	ssize_t w = write(s->stop_fd, &one, sizeof(one));
	(void)w;
	pthread_join(s->thread, NULL);
	if (s->app->sched == s)
		s->app->sched = NULL;
	sched_free(s);
}
