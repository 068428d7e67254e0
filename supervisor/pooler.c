/* pooler.c - see pooler.h */
#define _GNU_SOURCE
#include "pooler.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "db.h"
#include "log.h"
#include "pgbouncer.h"

struct pooler {
	struct app *app;
	char path[600];
	char conninfo[900]; /* pgbouncer's console as the stats user */
	char *written;      /* the file's content as last written, or NULL */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool kicked, stopping;
	bool failing; /* the last sync failed: log only the first of a run */
};

/* Every project's role and its bound, in role order. */
static int limits_text(struct pooler *p, struct buf *out, struct zerr *err)
{
	PGconn *c = db_acquire(p->app->pool);
	if (!c)
		return zerr_set(err, -EAGAIN, "no control-plane connection");
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c, "SELECT db_role, tier FROM projects ORDER BY db_role", 0, NULL, &res, err);
	db_release(p->app->pool, c);
	if (r < 0)
		return r;
	for (int i = 0; i < PQntuples(res); i++) {
		const struct tier *t = tiers_for(&p->app->tiers, PQgetvalue(res, i, 1));
		buf_printf(out, "%s %" PRIu64 "\n", PQgetvalue(res, i, 0), t->db_connections);
	}
	return out->failed ? zerr_set(err, out->failed, "role limits: %s", strerror(-out->failed)) : 0;
}

/* Replace the file atomically (its directory is this process's). */
static int write_limits(struct pooler *p, const struct buf *text, struct zerr *err)
{
	char tmp[sizeof(p->path) + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", p->path);
	unlink(tmp);
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return zerr_set(err, -errno, "create %s: %s", tmp, strerror(errno));
	size_t off = 0;
	while (off < text->len) {
		ssize_t n = write(fd, text->data + off, text->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			unlink(tmp);
			return zerr_set(err, -e, "write %s: %s", tmp, strerror(e));
		}
		off += (size_t)n;
	}
	if (rename(tmp, p->path) < 0) {
		int e = errno;
		unlink(tmp);
		return zerr_set(err, -e, "rename %s: %s", tmp, strerror(e));
	}
	return 0;
}

static int sync_once(struct pooler *p, struct zerr *err)
{
	_cleanup_buf_ struct buf text = BUF_INIT(PGB_LIMITS_MAX);
	int r = limits_text(p, &text, err);
	if (r < 0)
		return r;
	const char *now = text.data ? text.data : "";
	if (p->written && strcmp(p->written, now) == 0)
		return 0;
	r = write_limits(p, &text, err);
	if (r < 0)
		return r;
	free(p->written);
	p->written = strdup(now);
	return 1;
}

static void *pooler_main(void *arg)
{
	struct pooler *p = arg;
	pthread_mutex_lock(&p->lock);
	while (!p->stopping) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += POOLER_SYNC_MS / 1000;
		while (!p->kicked && !p->stopping)
			if (pthread_cond_timedwait(&p->cond, &p->lock, &until) == ETIMEDOUT)
				break;
		if (p->stopping)
			break;
		p->kicked = false;
		pthread_mutex_unlock(&p->lock);
		struct zerr err = {0};
		int r = sync_once(p, &err);
		if (r < 0 && !p->failing)
			zlog(ZLOG_WARN, "pool_limits_failed", "error", err.msg, NULL);
		p->failing = r < 0;
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void pooler_free(struct pooler *p)
{
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p->written);
	free(p);
}

int pooler_start(struct app *app, const char *stats_password, struct pooler **ret, struct zerr *err)
{
	struct pooler *p = calloc(1, sizeof(*p));
	if (!p)
		return zerr_set(err, -ENOMEM, "out of memory");
	p->app = app;
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	snprintf(p->path, sizeof(p->path), "%s/%s", app->cfg.state_dir, PGB_LIMITS_FILE);
	/* The socket directory and the password are zmeshd's own: no quoting
	 * needed (pgbouncer.c checks the one, the other is hex). */
	snprintf(p->conninfo, sizeof(p->conninfo),
	         "host=%s port=%d dbname=pgbouncer user=%s password=%s connect_timeout=2 "
	         "application_name=zmeshd-metrics",
	         app->pg_socket_dir, PGB_PORT, PGB_STATS_USER, stats_password);
	int r = sync_once(p, err);
	if (r < 0) {
		pooler_free(p);
		return r;
	}
	r = pthread_create(&p->thread, NULL, pooler_main, p);
	if (r != 0) {
		pooler_free(p);
		return zerr_set(err, -r, "start the pool limits thread: %s", strerror(r));
	}
	*ret = p;
	return 0;
}

void pooler_kick(struct pooler *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->kicked = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

void pooler_stop(struct pooler *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	explicit_bzero(p->conninfo, sizeof(p->conninfo));
	pooler_free(p);
}

/* ---- statistics -------------------------------------------------------------- */

static int col(const PGresult *res, const char *name)
{
	return PQfnumber(res, name);
}

static uint64_t num(const PGresult *res, int row, int c)
{
	if (c < 0 || PQgetisnull(res, row, c))
		return 0;
	return strtoull(PQgetvalue(res, row, c), NULL, 10);
}

/* Database names are pgbouncer's, from the cluster: printed only when they
 * are plain (project databases are zp_<hex>), so a label never needs
 * escaping. */
static bool plain(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n <= 63 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

/* One database's pools summed: its role's, and the auth user's that
 * pgbouncer keeps there for its auth_query (a login waits in that one). */
struct dbpool {
	const char *name; /* into the result */
	uint64_t cl_active, cl_waiting, sv_active, sv_idle, maxwait_us;
};

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct dbpool *)a)->name, ((const struct dbpool *)b)->name);
}

static void render_pools(const PGresult *res, struct buf *out)
{
	int db = col(res, "database"), cla = col(res, "cl_active"), clw = col(res, "cl_waiting"),
	    sva = col(res, "sv_active"), svi = col(res, "sv_idle"), svu = col(res, "sv_used"),
	    svt = col(res, "sv_tested"), svl = col(res, "sv_login"), mw = col(res, "maxwait"),
	    mwu = col(res, "maxwait_us");
	int rows = PQntuples(res);
	if (db < 0 || rows <= 0)
		return;
	_cleanup_free_ struct dbpool *v = calloc((size_t)rows, sizeof(*v));
	if (!v) {
		out->failed = -ENOMEM;
		return;
	}
	size_t n = 0;
	for (int i = 0; i < rows; i++) {
		const char *d = PQgetvalue(res, i, db);
		if (!plain(d) || strcmp(d, "pgbouncer") == 0)
			continue;
		v[n++] = (struct dbpool){
		    .name = d,
		    .cl_active = num(res, i, cla),
		    .cl_waiting = num(res, i, clw),
		    .sv_active = num(res, i, sva),
		    .sv_idle = num(res, i, svi) + num(res, i, svu) + num(res, i, svt) + num(res, i, svl),
		    .maxwait_us = num(res, i, mw) * 1000000u + num(res, i, mwu) % 1000000u,
		};
	}
	qsort(v, n, sizeof(*v), by_name);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m > 0 && strcmp(v[m - 1].name, v[i].name) == 0) {
			struct dbpool *t = &v[m - 1];
			t->cl_active += v[i].cl_active;
			t->cl_waiting += v[i].cl_waiting;
			t->sv_active += v[i].sv_active;
			t->sv_idle += v[i].sv_idle;
			t->maxwait_us = v[i].maxwait_us > t->maxwait_us ? v[i].maxwait_us : t->maxwait_us;
		} else {
			v[m++] = v[i];
		}
	}
	buf_puts(out, "# HELP zmesh_db_pool_clients Sandbox connections to the node's pgbouncer, by database and "
	              "state (waiting: for a server connection).\n"
	              "# TYPE zmesh_db_pool_clients gauge\n");
	for (size_t i = 0; i < m; i++)
		buf_printf(out,
		           "zmesh_db_pool_clients{database=\"%s\",state=\"active\"} %" PRIu64 "\n"
		           "zmesh_db_pool_clients{database=\"%s\",state=\"waiting\"} %" PRIu64 "\n",
		           v[i].name, v[i].cl_active, v[i].name, v[i].cl_waiting);
	buf_puts(out, "# HELP zmesh_db_pool_server_connections Pooled connections to the cluster, by database and "
	              "state.\n"
	              "# TYPE zmesh_db_pool_server_connections gauge\n");
	for (size_t i = 0; i < m; i++)
		buf_printf(out,
		           "zmesh_db_pool_server_connections{database=\"%s\",state=\"active\"} %" PRIu64 "\n"
		           "zmesh_db_pool_server_connections{database=\"%s\",state=\"idle\"} %" PRIu64 "\n",
		           v[i].name, v[i].sv_active, v[i].name, v[i].sv_idle);
	buf_puts(out, "# HELP zmesh_db_pool_max_wait_seconds How long the oldest waiting client of a database has "
	              "waited.\n"
	              "# TYPE zmesh_db_pool_max_wait_seconds gauge\n");
	for (size_t i = 0; i < m; i++)
		buf_printf(out, "zmesh_db_pool_max_wait_seconds{database=\"%s\"} %" PRIu64 ".%06" PRIu64 "\n",
		           v[i].name, v[i].maxwait_us / 1000000u, v[i].maxwait_us % 1000000u);
}

static void render_stats(const PGresult *res, struct buf *out)
{
	int db = col(res, "database"), wt = col(res, "total_wait_time"), xc = col(res, "total_xact_count");
	if (db < 0)
		return;
	buf_puts(out, "# HELP zmesh_db_pool_wait_seconds_total Time clients of a database waited for a server "
	              "connection.\n"
	              "# TYPE zmesh_db_pool_wait_seconds_total counter\n");
	for (int i = 0; i < PQntuples(res); i++) {
		const char *d = PQgetvalue(res, i, db);
		if (!plain(d) || strcmp(d, "pgbouncer") == 0)
			continue;
		uint64_t us = num(res, i, wt);
		buf_printf(out, "zmesh_db_pool_wait_seconds_total{database=\"%s\"} %" PRIu64 ".%06" PRIu64 "\n", d,
		           us / 1000000u, us % 1000000u);
	}
	buf_puts(out, "# HELP zmesh_db_pool_transactions_total Transactions through the pool, by database.\n"
	              "# TYPE zmesh_db_pool_transactions_total counter\n");
	for (int i = 0; i < PQntuples(res); i++) {
		const char *d = PQgetvalue(res, i, db);
		if (!plain(d) || strcmp(d, "pgbouncer") == 0)
			continue;
		buf_printf(out, "zmesh_db_pool_transactions_total{database=\"%s\"} %" PRIu64 "\n", d, num(res, i, xc));
	}
}

int pooler_render(struct pooler *p, struct buf *out)
{
	if (!p)
		return 0;
	PGconn *c = PQconnectdb(p->conninfo);
	bool up = c && PQstatus(c) == CONNECTION_OK;
	if (up) {
		PGresult *pools = PQexec(c, "SHOW POOLS");
		PGresult *stats = PQexec(c, "SHOW STATS");
		up = PQresultStatus(pools) == PGRES_TUPLES_OK && PQresultStatus(stats) == PGRES_TUPLES_OK;
		if (up) {
			render_pools(pools, out);
			render_stats(stats, out);
		}
		PQclear(pools);
		PQclear(stats);
	}
	if (c)
		PQfinish(c);
	buf_printf(out,
	           "# HELP zmesh_db_pool_up Whether the node's pgbouncer answered its statistics.\n"
	           "# TYPE zmesh_db_pool_up gauge\n"
	           "zmesh_db_pool_up %d\n",
	           up ? 1 : 0);
	return out->failed;
}
