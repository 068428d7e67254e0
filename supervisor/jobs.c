/* jobs.c - see jobs.h */
#define _GNU_SOURCE
#include "jobs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "auth.h"
#include "errors.h"
#include "invoke.h"
#include "log.h"
#include "store_jobs.h"

#define REQUEUE_MS         200    /* a job that found no slot waits this long (+ jitter) */
#define FINISH_TRIES       6      /* writing an attempt's end, with backoff, before leaving it to the lease */
#define PRUNE_EVERY_MS     600000 /* old idempotency keys, deliveries and fires */
#define LISTEN_RETRY_MS    1000
#define MAX_WORKERS        256
#define RENEW_IDS_MAX_TEXT (MAX_WORKERS * (STORE_ID_LEN + 1) + 3)

struct worker {
	struct jobs *jobs;
	pthread_t thread;
	bool started;
	PGconn *c;                  /* its own connection (see worker_conn) */
	char job[STORE_ID_LEN + 1]; /* the job it runs, "" when none; under jobs->mu */
};

struct jobs {
	struct app *app;
	struct jobs_config cfg;
	char node[JOBS_NODE_ID_MAX];
	char *conninfo;

	pthread_mutex_t mu;
	pthread_cond_t wake;  /* idle workers */
	pthread_cond_t timer; /* the lease keeper */
	uint64_t gen;         /* bumped by every wake-up */
	bool draining;        /* claim nothing more (the node is stopping) */
	bool stopping;        /* the workers are done: the keeper and listener go too */

	struct worker *workers;
	unsigned n_workers;
	pthread_t keeper, listener;
	bool keeper_started, listener_started;
	int stop_pipe[2]; /* wakes the listener's poll */
};

/* ---- pure -------------------------------------------------------------- */

uint64_t jobs_backoff_ms(unsigned attempt, double r)
{
	if (attempt < 2)
		attempt = 2;
	double s = exp((double)(attempt - 1));
	if (s > JOBS_BACKOFF_CAP_S)
		s = JOBS_BACKOFF_CAP_S;
	s *= 0.8 + 0.4 * (r < 0 ? 0 : r >= 1 ? 0.999999 : r);
	if (s > JOBS_BACKOFF_CAP_S)
		s = JOBS_BACKOFF_CAP_S;
	return (uint64_t)(s * 1000.0);
}

static double random_unit(void)
{
	uint32_t v = 0;
	if (auth_random_bytes((uint8_t *)&v, sizeof(v), NULL) < 0)
		return 0.5;
	return (double)v / 4294967296.0;
}

static void deadline_after(struct timespec *ts, uint64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static double now_epoch_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

void jobs_wake(struct jobs *j)
{
	if (!j)
		return;
	pthread_mutex_lock(&j->mu);
	j->gen++;
	pthread_cond_signal(&j->wake);
	pthread_mutex_unlock(&j->mu);
}

static void wake_all(struct jobs *j)
{
	pthread_mutex_lock(&j->mu);
	j->gen++;
	pthread_cond_broadcast(&j->wake);
	pthread_mutex_unlock(&j->mu);
}

const char *jobs_node_id(const struct jobs *j)
{
	return j->node;
}

/* A worker's own connection, opened on first use and again after it broke.
 * Its commits are asynchronous: claiming and finishing a job need not wait
 * for the WAL to reach the disk, because losing one in a crash of the
 * database only runs the job again (at least once, as a lapsed lease does).
 * What must be durable before anyone is told (a job queued, a webhook
 * accepted) is committed on the pool's connections, synchronously. */
static PGconn *worker_conn(struct worker *w, struct zerr *err)
{
	if (w->c && PQstatus(w->c) != CONNECTION_OK) {
		PQfinish(w->c);
		w->c = NULL;
	}
	if (w->c)
		return w->c;
	PGconn *c = NULL;
	if (db_connect(w->jobs->conninfo, &c, err) < 0)
		return NULL;
	if (db_exec_params(c, "SET synchronous_commit = off", 0, NULL, NULL, err) < 0) {
		PQfinish(c);
		return NULL;
	}
	w->c = c;
	return c;
}

/* After a failed statement: a connection that broke is dropped (the next
 * use opens another). */
static void worker_conn_check(struct worker *w, int r)
{
	if (r == -ECONNRESET && w->c) {
		PQfinish(w->c);
		w->c = NULL;
	}
}

/* ---- one attempt ----------------------------------------------------------- */

/* A record for an attempt that did not run (too old, lease lost, function
 * disabled, no quota): status error with error. */
static json_t *record_not_run(const struct job *jb, json_t *error)
{
	return json_pack("{s:s, s:s, s:f, s:f, s:f, s:I, s:s, s:b, s:O}", "id", jb->invocation_id, "status", "error",
	                 "started_at_ms", now_epoch_ms(), "duration_ms", 0.0, "cpu_ms", 0.0, "memory_bytes",
	                 (json_int_t)0, "logs", "", "logs_truncated", 0, "error", error);
}

/* Write the attempt's end, retrying a database that is away for a moment.
 * If it cannot be written the job keeps its lease until it lapses, and runs
 * again: at least once. */
enum finish_kind { FINISH_DONE, FINISH_RETRY, FINISH_DEAD };

static void finish(struct worker *w, const struct job *jb, enum finish_kind kind, json_t *record, json_t *error,
                   uint64_t delay_ms)
{
	struct jobs *js = w->jobs;
	struct app *app = js->app;
	_cleanup_free_ char *rec = json_dumps(record, JSON_COMPACT);
	_cleanup_free_ char *errs = error ? json_dumps(error, JSON_COMPACT) : NULL;
	char next[STORE_ID_LEN + 1], on_failure[STORE_ID_LEN + 1] = "";
	inv_uuid(next);
	struct zerr err = {0};
	int r = -ENOMEM;
	bool owned = false;
	for (unsigned i = 0; rec && i < FINISH_TRIES; i++) {
		PGconn *c = worker_conn(w, &err);
		if (!c) {
			r = -ECONNRESET;
		} else {
			if (kind == FINISH_DONE)
				r = store_job_finish(c, js->node, jb, rec, &owned, &err);
			else if (kind == FINISH_RETRY)
				r = store_job_retry(c, js->node, jb, rec, next, delay_ms, errs ? errs : "null", &owned,
				                    &err);
			else
				r = store_job_dead(c, js->node, jb, rec, errs ? errs : "null", &owned, on_failure,
				                   &err);
			worker_conn_check(w, r);
		}
		if (r == 0 || !(r == -ETIMEDOUT || r == -ECONNRESET || r == -EAGAIN))
			break;
		struct timespec ts = {0, (long)(100000000L << (i < 3 ? i : 3))};
		nanosleep(&ts, NULL);
	}
	if (r < 0) {
		zlog(ZLOG_ERROR, "job_finish_failed", "job", jb->id, "invocation_id", jb->invocation_id, "error",
		     rec ? err.msg : "cannot encode the record", NULL);
		return;
	}
	if (!owned) {
		/* Our lease lapsed and another node took the job: its run
		 * writes the outcome. */
		zlog(ZLOG_WARN, "job_lease_lost", "job", jb->id, "invocation_id", jb->invocation_id, NULL);
		return;
	}
	atomic_fetch_add(&app->metrics.events.finished, 1);
	if (kind == FINISH_RETRY) {
		atomic_fetch_add(&app->metrics.events.retried, 1);
		char d[24];
		snprintf(d, sizeof(d), "%" PRIu64, delay_ms);
		zlog(ZLOG_INFO, "job_retry", "job", jb->id, "function", jb->f.id, "next_invocation_id", next,
		     "delay_ms", d, NULL);
	} else if (kind == FINISH_DEAD) {
		atomic_fetch_add(&app->metrics.events.dead, 1);
		zlog(ZLOG_WARN, "job_dead", "job", jb->id, "function", jb->f.id, "invocation_id",
		     jb->first_invocation_id, "on_failure_invocation_id", on_failure, NULL);
		if (on_failure[0])
			jobs_wake(js);
	}
}

/* An attempt failed with error: again after the backoff, unless the
 * retries are used up or the event would be older than its function
 * allows by then. */
static void failed(struct worker *w, const struct job *jb, json_t *record, json_t *error)
{
	uint64_t delay = jobs_backoff_ms(jb->attempt + 1, random_unit());
	bool again =
	    (int64_t)jb->attempt <= jb->retries && jb->age_s + (double)delay / 1000.0 < (double)jb->max_event_age_s;
	finish(w, jb, again ? FINISH_RETRY : FINISH_DEAD, record, error, delay);
}

static void requeue(struct worker *w, const struct job *jb, uint64_t delay_ms)
{
	struct jobs *js = w->jobs;
	struct zerr err = {0};
	PGconn *c = worker_conn(w, &err);
	int r = c ? store_job_requeue(c, js->node, jb, delay_ms, &err) : -ECONNRESET;
	worker_conn_check(w, r);
	if (r < 0)
		zlog(ZLOG_WARN, "job_requeue_failed", "job", jb->id, "error", err.msg, NULL);
	else
		atomic_fetch_add(&js->app->metrics.events.requeued, 1);
}

static bool is_draining(struct jobs *js)
{
	pthread_mutex_lock(&js->mu);
	bool s = js->draining || js->stopping;
	pthread_mutex_unlock(&js->mu);
	return s;
}

/* Not run at all, for good: a dead letter with a record saying why. */
static void give_up(struct worker *w, const struct job *jb, const char *code, const char *message)
{
	json_t *error = json_pack("{s:s, s:s}", "code", code, "message", message);
	json_t *rec = record_not_run(jb, error);
	if (rec)
		finish(w, jb, FINISH_DEAD, rec, error, 0);
	json_decref(rec);
	json_decref(error);
}

static void run_job(struct worker *w, struct job *jb)
{
	struct jobs *js = w->jobs;
	struct app *app = js->app;
	if (jb->took_over)
		atomic_fetch_add(&app->metrics.events.lapsed, 1);
	if (jb->function_gone) {
		struct zerr err = {0};
		PGconn *c = worker_conn(w, &err);
		int r = c ? store_job_drop(c, js->node, jb, &err) : -ECONNRESET;
		worker_conn_check(w, r);
		if (r == 0)
			atomic_fetch_add(&app->metrics.events.dropped, 1);
		zlog(ZLOG_INFO, "job_dropped", "job", jb->id, "invocation_id", jb->first_invocation_id, "reason",
		     "the function was deleted", NULL);
		return;
	}
	if (jb->lapses > JOBS_MAX_LAPSES) {
		give_up(w, jb, "LEASE_LOST", "the job's node stopped while running it too many times");
		return;
	}
	if (jb->age_s > (double)jb->max_event_age_s) {
		give_up(w, jb, "EVENT_TOO_OLD", "the event is older than the function's max_event_age_s");
		return;
	}
	if (js->cfg.noop) {
		json_t *rec =
		    json_pack("{s:s, s:s, s:s, s:f, s:f, s:f, s:I, s:s, s:b, s:n}", "id", jb->invocation_id, "start",
		              "warm", "status", "success", "started_at_ms", now_epoch_ms(), "duration_ms", 0.0,
		              "cpu_ms", 0.0, "memory_bytes", (json_int_t)0, "logs", "", "logs_truncated", 0, "error");
		if (rec)
			finish(w, jb, FINISH_DONE, rec, NULL, 0);
		json_decref(rec);
		return;
	}

	json_t *rec = NULL;
	struct inv_call call = {.project = &jb->p,
	                        .function = &jb->f,
	                        .payload = jb->event,
	                        .trigger = jb->trigger,
	                        .trigger_id = jb->trigger_id[0] ? jb->trigger_id : NULL,
	                        .request_id = jb->id,
	                        .wait_ms = 50,
	                        .invocation_id = jb->invocation_id,
	                        .attempt = jb->attempt,
	                        .queued = true,
	                        .ret_record = &rec};
	struct inv_result res;
	struct zerr err = {0};
	int r = inv_run(app, &call, &res, &err);
	if (r == -ZE_RATE_LIMITED) {
		/* Waits its turn: not an attempt. */
		json_decref(rec);
		requeue(w, jb, REQUEUE_MS + (uint64_t)(random_unit() * REQUEUE_MS));
		return;
	}
	if (r < 0) {
		/* Refused before running (disabled, over quota) or the platform
		 * failed: a failed attempt. */
		struct ze_reply rp;
		errors_lookup(r, &rp);
		json_t *error = json_pack("{s:s, s:s}", "code", rp.code, "message", rp.message ? rp.message : err.msg);
		if (!rec)
			rec = record_not_run(jb, error);
		if (rec)
			failed(w, jb, rec, error);
		json_decref(rec);
		json_decref(error);
		return;
	}
	if (res.outcome == EXEC_SANDBOX_ERROR && is_draining(js)) {
		/* Ended by this node's shutdown: not the function's failure. */
		json_decref(rec);
		inv_result_done(&res);
		requeue(w, jb, 0);
		return;
	}
	if (rec) {
		if (res.outcome == EXEC_SUCCESS)
			finish(w, jb, FINISH_DONE, rec, NULL, 0);
		else
			failed(w, jb, rec, res.error);
	}
	json_decref(rec);
	inv_result_done(&res);
}

/* ---- threads --------------------------------------------------------------- */

static void set_running(struct worker *w, const char *id)
{
	pthread_mutex_lock(&w->jobs->mu);
	snprintf(w->job, sizeof(w->job), "%s", id);
	pthread_mutex_unlock(&w->jobs->mu);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct jobs *js = w->jobs;
	for (;;) {
		pthread_mutex_lock(&js->mu);
		bool stop = js->draining || js->stopping;
		uint64_t seen = js->gen;
		pthread_mutex_unlock(&js->mu);
		if (stop)
			break;

		struct job jb;
		bool found = false;
		struct zerr err = {0};
		PGconn *c = worker_conn(w, &err);
		int r = c ? store_job_claim(c, js->node, js->cfg.lease_ms, &jb, &found, &err) : -ECONNRESET;
		worker_conn_check(w, r);
		if (r < 0) {
			zlog(ZLOG_WARN, "job_claim_failed", "error", err.msg, NULL);
			found = false;
		}
		if (found) {
			/* There may be more: let another idle worker look. */
			jobs_wake(js);
			set_running(w, jb.id);
			run_job(w, &jb);
			set_running(w, "");
			store_job_done(&jb);
			continue;
		}
		struct timespec until;
		deadline_after(&until, r < 0 ? LISTEN_RETRY_MS : js->cfg.poll_ms);
		pthread_mutex_lock(&js->mu);
		while (!js->draining && !js->stopping && js->gen == seen)
			if (pthread_cond_timedwait(&js->wake, &js->mu, &until) == ETIMEDOUT)
				break;
		pthread_mutex_unlock(&js->mu);
	}
	if (w->c)
		PQfinish(w->c);
	w->c = NULL;
	return NULL;
}

/* Renew the leases of the jobs this node runs, every third of a lease; and
 * now and then forget what is past its time. */
static void *keeper_main(void *arg)
{
	struct jobs *js = arg;
	struct app *app = js->app;
	uint64_t period = js->cfg.lease_ms / 3 ? js->cfg.lease_ms / 3 : 1;
	uint64_t since_prune = PRUNE_EVERY_MS; /* once at start */
	char ids[RENEW_IDS_MAX_TEXT];
	for (;;) {
		size_t n = 0, count = 0;
		ids[n++] = '{';
		pthread_mutex_lock(&js->mu);
		for (unsigned i = 0; i < js->n_workers; i++)
			if (js->workers[i].job[0]) {
				n += (size_t)snprintf(ids + n, sizeof(ids) - n, "%s%s", count ? "," : "",
				                      js->workers[i].job);
				count++;
			}
		pthread_mutex_unlock(&js->mu);
		snprintf(ids + n, sizeof(ids) - n, "}");
		struct zerr err = {0};
		if (count) {
			PGconn *c = db_acquire(app->pool);
			if (!c || store_jobs_renew(c, js->node, ids, js->cfg.lease_ms, &err) < 0)
				zlog(ZLOG_WARN, "job_lease_renew_failed", "error",
				     c ? err.msg : "no database connection", NULL);
			db_release(app->pool, c);
		}
		if (since_prune >= PRUNE_EVERY_MS) {
			since_prune = 0;
			PGconn *c = db_acquire(app->pool);
			if (!c || store_events_prune(c, &err) < 0)
				zlog(ZLOG_WARN, "events_prune_failed", "error", c ? err.msg : "no database connection",
				     NULL);
			db_release(app->pool, c);
		}
		struct timespec until;
		deadline_after(&until, period);
		pthread_mutex_lock(&js->mu);
		bool stop = js->stopping;
		while (!stop && pthread_cond_timedwait(&js->timer, &js->mu, &until) != ETIMEDOUT)
			stop = js->stopping;
		stop = js->stopping;
		pthread_mutex_unlock(&js->mu);
		since_prune += period;
		if (stop)
			break;
	}
	return NULL;
}

/* LISTEN zmesh_jobs on a connection of its own; every notification wakes
 * the idle workers. Only a hint: the workers poll anyway. */
static void *listener_main(void *arg)
{
	struct jobs *js = arg;
	PGconn *c = NULL;
	for (;;) {
		pthread_mutex_lock(&js->mu);
		bool stop = js->stopping;
		pthread_mutex_unlock(&js->mu);
		if (stop)
			break;
		struct zerr err = {0};
		if (!c) {
			if (db_connect(js->conninfo, &c, &err) < 0 ||
			    db_exec_params(c, "LISTEN zmesh_jobs", 0, NULL, NULL, &err) < 0) {
				zlog(ZLOG_WARN, "jobs_listen_failed", "error", err.msg, NULL);
				if (c)
					PQfinish(c);
				c = NULL;
			} else {
				/* Jobs may have come while nobody listened. */
				wake_all(js);
			}
		}
		struct pollfd fds[2] = {{.fd = js->stop_pipe[0], .events = POLLIN},
		                        {.fd = c ? PQsocket(c) : -1, .events = POLLIN}};
		int n = poll(fds, c ? 2 : 1, c ? 5000 : LISTEN_RETRY_MS);
		if (n < 0 && errno != EINTR)
			break;
		if (fds[0].revents)
			break;
		if (!c || !(fds[1].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		if (!PQconsumeInput(c)) {
			zlog(ZLOG_WARN, "jobs_listen_lost", "error", PQerrorMessage(c), NULL);
			PQfinish(c);
			c = NULL;
			continue;
		}
		bool any = false;
		PGnotify *nt;
		while ((nt = PQnotifies(c))) {
			any = true;
			PQfreemem(nt);
		}
		if (any)
			wake_all(js);
	}
	if (c)
		PQfinish(c);
	return NULL;
}

/* ---- life ------------------------------------------------------------------ */

static void jobs_free(struct jobs *js)
{
	if (!js)
		return;
	for (int i = 0; i < 2; i++)
		if (js->stop_pipe[i] >= 0)
			close(js->stop_pipe[i]);
	pthread_cond_destroy(&js->wake);
	pthread_cond_destroy(&js->timer);
	pthread_mutex_destroy(&js->mu);
	free(js->workers);
	free(js->conninfo);
	free(js);
}

/* The workers first, while the keeper still renews the leases of the jobs
 * they finish (so no other node takes one over meanwhile); then the rest. */
static void join_all(struct jobs *js)
{
	pthread_mutex_lock(&js->mu);
	js->draining = true;
	pthread_cond_broadcast(&js->wake);
	pthread_mutex_unlock(&js->mu);
	for (unsigned i = 0; i < js->n_workers; i++)
		if (js->workers[i].started)
			pthread_join(js->workers[i].thread, NULL);
	pthread_mutex_lock(&js->mu);
	js->stopping = true;
	pthread_cond_broadcast(&js->timer);
	pthread_mutex_unlock(&js->mu);
	if (js->stop_pipe[1] >= 0 && write(js->stop_pipe[1], "x", 1) < 0) {
		/* The listener also sees stopping within its poll timeout. */
	}
	if (js->keeper_started)
		pthread_join(js->keeper, NULL);
	if (js->listener_started)
		pthread_join(js->listener, NULL);
}

int jobs_start(struct app *app, const char *conninfo, const struct jobs_config *cfg, struct jobs **ret,
               struct zerr *err)
{
	if (cfg->workers < 1 || cfg->workers > MAX_WORKERS)
		return zerr_set(err, -EINVAL, "job workers must be 1..%d", MAX_WORKERS);
	struct jobs *js = calloc(1, sizeof(*js));
	if (!js)
		return zerr_set(err, -ENOMEM, "out of memory");
	js->stop_pipe[0] = js->stop_pipe[1] = -1;
	pthread_mutex_init(&js->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&js->wake, &ca);
	pthread_cond_init(&js->timer, &ca);
	pthread_condattr_destroy(&ca);
	js->app = app;
	js->cfg = *cfg;
	if (!js->cfg.lease_ms)
		js->cfg.lease_ms = JOBS_LEASE_MS_DEFAULT;
	if (!js->cfg.poll_ms)
		js->cfg.poll_ms = JOBS_POLL_MS_DEFAULT;
	char rnd[STORE_ID_LEN + 1];
	inv_uuid(rnd);
	char host[32] = "";
	gethostname(host, sizeof(host) - 1);
	snprintf(js->node, sizeof(js->node), "%.24s/%d/%.8s", host, (int)getpid(), rnd);
	js->conninfo = strdup(conninfo);
	js->workers = calloc(cfg->workers, sizeof(*js->workers));
	if (!js->conninfo || !js->workers || pipe2(js->stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		jobs_free(js);
		return zerr_set(err, -ENOMEM, "cannot set up the job workers");
	}
	js->n_workers = cfg->workers;
	int r = 0;
	for (unsigned i = 0; i < js->n_workers && r == 0; i++) {
		js->workers[i].jobs = js;
		r = -pthread_create(&js->workers[i].thread, NULL, worker_main, &js->workers[i]);
		js->workers[i].started = r == 0;
	}
	if (r == 0) {
		r = -pthread_create(&js->keeper, NULL, keeper_main, js);
		js->keeper_started = r == 0;
	}
	if (r == 0) {
		r = -pthread_create(&js->listener, NULL, listener_main, js);
		js->listener_started = r == 0;
	}
	if (r < 0) {
		join_all(js);
		jobs_free(js);
		return zerr_set(err, r, "cannot start the job workers: %s", strerror(-r));
	}
	char n[16];
	snprintf(n, sizeof(n), "%u", js->n_workers);
	zlog(ZLOG_INFO, "jobs_started", "node", js->node, "workers", n, "noop", cfg->noop ? "true" : "false", NULL);
	*ret = js;
	return 0;
}

void jobs_stop_claiming(struct jobs *j)
{
	if (!j)
		return;
	pthread_mutex_lock(&j->mu);
	j->draining = true;
	pthread_cond_broadcast(&j->wake);
	pthread_mutex_unlock(&j->mu);
}

void jobs_stop(struct jobs *j)
{
	if (!j)
		return;
	join_all(j);
	jobs_free(j);
}
