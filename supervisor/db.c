/* db.c - see db.h */
#define _GNU_SOURCE
#include "db.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <libpq-events.h>

#include "fnv.h"

#define PG_MAX_PARAMS 65535 /* the protocol's limit: a 16-bit count */
#define CONNINFO_MAX  4096

struct db_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled when a connection becomes idle */
	int size;
	int n_idle;
	int timeout_ms;
	char *conninfo; /* for db_pool_connect */
	PGconn *conns[DB_POOL_MAX];
	bool out[DB_POOL_MAX]; /* conns[i] is held by a caller */
	int idle[DB_POOL_MAX]; /* indexes into conns, a stack: the most recently used goes out first */
};

/* Copy a libpq message into one line: the error object holds one line, and
 * libpq's messages end with (and sometimes contain) newlines. */
static void one_line(char *dst, size_t size, const char *src)
{
	size_t o = 0;
	bool space = false;
	for (const char *s = src ? src : ""; *s && o + 1 < size; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f) {
			space = o > 0;
			continue;
		}
		if (space && o + 2 < size)
			dst[o++] = ' ';
		space = false;
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
}

static int errno_from_sqlstate(const char *s)
{
	static const struct {
		const char *state;
		int code;
	} exact[] = {
	    {"23505", -EEXIST},    /* unique_violation */
	    {"42P04", -EEXIST},    /* duplicate_database */
	    {"42710", -EEXIST},    /* duplicate_object (a role) */
	    {"42P07", -EEXIST},    /* duplicate_table */
	    {"23503", -ENOENT},    /* foreign_key_violation */
	    {"3D000", -ENOENT},    /* invalid_catalog_name: no such database */
	    {"42P01", -ENOENT},    /* undefined_table */
	    {"42704", -ENOENT},    /* undefined_object */
	    {"42501", -EACCES},    /* insufficient_privilege */
	    {"40001", -EAGAIN},    /* serialization_failure */
	    {"40P01", -EAGAIN},    /* deadlock_detected */
	    {"55P03", -EAGAIN},    /* lock_not_available, also lock_timeout */
	    {"57014", -ETIMEDOUT}, /* query_canceled, also statement_timeout */
	};
	for (size_t i = 0; i < ELEMENTSOF(exact); i++)
		if (strcmp(s, exact[i].state) == 0)
			return exact[i].code;
	/* By class: integrity and data errors are the caller's input; 08 and
	 * 57P are the connection going away. */
	if (strncmp(s, "22", 2) == 0 || strncmp(s, "23", 2) == 0 || strncmp(s, "42", 2) == 0)
		return -EINVAL;
	if (strncmp(s, "28", 2) == 0)
		return -EACCES;
	if (strncmp(s, "08", 2) == 0 || strncmp(s, "57P", 3) == 0)
		return -ECONNRESET;
	return -EIO;
}

static bool sqlstate_shaped(const char *s)
{
	if (!s || strlen(s) != 5)
		return false;
	for (int i = 0; i < 5; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z')))
			return false;
	return true;
}

/* Fill err from a failed result (or a NULL one: out of memory, or no
 * connection), with context appended when given. */
static int result_error(struct zerr *err, PGconn *conn, const PGresult *res, const char *context)
{
	char msg[400];
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *ctx_sep = context ? " (" : "";
	const char *ctx_end = context ? ")" : "";
	if (!context)
		context = "";
	if (sqlstate_shaped(state) && primary) {
		one_line(msg, sizeof(msg), primary);
		return zerr_set(err, errno_from_sqlstate(state), "%s: %s%s%s%s", state, msg, ctx_sep, context, ctx_end);
	}
	/* A client-side failure: libpq gives no SQLSTATE for a lost connection. */
	one_line(msg, sizeof(msg), res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	int code = PQstatus(conn) == CONNECTION_BAD ? -ECONNRESET : (res ? -EIO : -ENOMEM);
	return zerr_set(err, code, "query failed: %s%s%s%s", msg[0] ? msg : "no message", ctx_sep, context, ctx_end);
}

static bool result_ok(const PGresult *res)
{
	switch (PQresultStatus(res)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_EMPTY_QUERY:
		return true;
	default:
		return false;
	}
}

/* ---- prepared statements --------------------------------------------------
 * A connection remembers which statements it has prepared (by a hash of
 * their text) in libpq's instance data; a reset of the connection (a new
 * server session, which knows none) forgets them through the event. */

#define PREPARED_MAX 128

struct prepared {
	uint64_t hash[PREPARED_MAX];
	unsigned n;
};

static int prepared_event(PGEventId id, void *info, void *pass)
{
	(void)pass;
	if (id == PGEVT_REGISTER) {
		struct prepared *p = calloc(1, sizeof(*p));
		return p && PQsetInstanceData(((PGEventRegister *)info)->conn, prepared_event, p);
	}
	if (id == PGEVT_CONNRESET) {
		struct prepared *p = PQinstanceData(((PGEventConnReset *)info)->conn, prepared_event);
		if (p)
			p->n = 0;
	} else if (id == PGEVT_CONNDESTROY)
		free(PQinstanceData(((PGEventConnDestroy *)info)->conn, prepared_event));
	return 1;
}

static bool prepared_has(const struct prepared *p, uint64_t h)
{
	for (unsigned i = 0; i < p->n; i++)
		if (p->hash[i] == h)
			return true;
	return false;
}

static int check_result(PGconn *conn, PGresult **res_, PGresult **ret, struct zerr *err);

int db_exec_prepared(PGconn *conn, const char *sql, int n, const char *const *params, PGresult **ret, struct zerr *err)
{
	struct prepared *p = conn ? PQinstanceData(conn, prepared_event) : NULL;
	if (!p || !sql)
		return db_exec_params(conn, sql, n, params, ret, err);
	if (n < 0 || n > PG_MAX_PARAMS || (n > 0 && !params))
		return zerr_set(err, -EINVAL, "bad parameter count %d", n);
	uint64_t h = fnv1a64(sql);
	char name[24];
	snprintf(name, sizeof(name), "z%016llx", (unsigned long long)h);
	if (!prepared_has(p, h)) {
		if (p->n == PREPARED_MAX)
			return db_exec_params(conn, sql, n, params, ret, err);
		PGresult *pr = PQprepare(conn, name, sql, n, NULL);
		int r = check_result(conn, &pr, NULL, err);
		if (r < 0)
			return r;
		p->hash[p->n++] = h;
	}
	PGresult *res = PQexecPrepared(conn, name, n, params, NULL, NULL, 0);
	return check_result(conn, &res, ret, err);
}

int db_exec_params(PGconn *conn, const char *sql, int n, const char *const *params, PGresult **ret, struct zerr *err)
{
	if (!conn || !sql)
		return zerr_set(err, -EINVAL, "no connection or no statement");
	if (n < 0 || n > PG_MAX_PARAMS || (n > 0 && !params))
		return zerr_set(err, -EINVAL, "bad parameter count %d", n);
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	return check_result(conn, &res, ret, err);
}

/* Classify a result (taking it): 0 and *ret (or cleared), or the failure. */
static int check_result(PGconn *conn, PGresult **res_, PGresult **ret, struct zerr *err)
{
	_cleanup_pgresult_ PGresult *res = TAKE_PTR(*res_);
	if (!res || PQresultStatus(res) == PGRES_FATAL_ERROR || PQresultStatus(res) == PGRES_BAD_RESPONSE ||
	    PQresultStatus(res) == PGRES_NONFATAL_ERROR)
		return result_error(err, conn, res, NULL);
	if (!result_ok(res))
		/* COPY and friends: the connection now waits for a protocol
		 * exchange nobody will do; db_release() re-opens it. */
		return zerr_set(err, -ENOTSUP, "unsupported result %s", PQresStatus(PQresultStatus(res)));
	if (ret)
		*ret = TAKE_PTR(res);
	return 0;
}

bool db_err_is(const struct zerr *err, const char *sqlstate)
{
	if (!err || !sqlstate_shaped(sqlstate))
		return false;
	return strncmp(err->msg, sqlstate, 5) == 0 && err->msg[5] == ':' && err->msg[6] == ' ';
}

/* libpq prints notices (e.g. "relation already exists, skipping") on
 * stderr by default; the daemon's stderr carries structured logs only. */
static void drop_notice(void *arg, const char *message)
{
}

int db_connect(const char *conninfo, PGconn **ret, struct zerr *err)
{
	return db_connect_db(conninfo, NULL, ret, err);
}

int db_connect_db(const char *conninfo, const char *dbname, PGconn **ret, struct zerr *err)
{
	if (!conninfo)
		return zerr_set(err, -EINVAL, "no conninfo");
	if (strnlen(conninfo, CONNINFO_MAX + 1) > CONNINFO_MAX)
		return zerr_set(err, -EINVAL, "conninfo longer than %d bytes", CONNINFO_MAX);
	/* Entries before an expanded dbname are defaults the conninfo
	 * overrides (libpq processes the arrays in order, the last value of a
	 * keyword wins); a second dbname is a plain name, not expanded. */
	const char *const keys[] = {"connect_timeout", "application_name", "dbname", dbname ? "dbname" : NULL, NULL};
	const char *const values[] = {DB_CONNECT_TIMEOUT_S, "zmeshd", conninfo, dbname, NULL};
	_cleanup_pgconn_ PGconn *conn = PQconnectdbParams(keys, values, 1);
	if (!conn)
		return zerr_set(err, -ENOMEM, "out of memory opening a connection");
	if (PQstatus(conn) != CONNECTION_OK) {
		char msg[400];
		one_line(msg, sizeof(msg), PQerrorMessage(conn));
		return zerr_set(err, -ECONNREFUSED, "connect: %s", msg);
	}
	PQsetNoticeProcessor(conn, drop_notice, NULL);
	/* Without it statements simply run unprepared. */
	PQregisterEventProc(conn, prepared_event, "zmesh-prepared", NULL);
	*ret = TAKE_PTR(conn);
	return 0;
}

/* ---- the pool ------------------------------------------------------------ */

int db_pool_open(const char *conninfo, int size, struct db_pool **ret, struct zerr *err)
{
	if (!conninfo)
		return zerr_set(err, -EINVAL, "no conninfo");
	if (size < 1 || size > DB_POOL_MAX)
		return zerr_set(err, -EINVAL, "pool size %d outside 1..%d", size, DB_POOL_MAX);
	if (!PQisthreadsafe())
		return zerr_set(err, -ENOTSUP, "libpq was built without thread safety");
	struct db_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return zerr_set(err, -ENOMEM, "out of memory");
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	/* Deadlines on the monotonic clock: a wall-clock step must not make
	 * db_acquire() wait for hours or not at all. */
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&p->lock, NULL);
	p->timeout_ms = DB_ACQUIRE_TIMEOUT_MS;
	if (!(p->conninfo = strdup(conninfo))) {
		db_pool_close(p);
		return zerr_set(err, -ENOMEM, "out of memory");
	}
	for (int i = 0; i < size; i++) {
		struct zerr e = {0};
		int r = db_connect(conninfo, &p->conns[i], &e);
		if (r < 0) {
			db_pool_close(p);
			return zerr_set(err, r, "pool connection %d of %d: %s", i + 1, size, e.msg);
		}
		p->size++;
		p->idle[p->n_idle++] = i;
	}
	*ret = p;
	return 0;
}

int db_pool_connect(struct db_pool *pool, PGconn **ret, struct zerr *err)
{
	if (!pool)
		return zerr_set(err, -EINVAL, "no pool");
	return db_connect(pool->conninfo, ret, err);
}

int db_pool_connect_db(struct db_pool *pool, const char *dbname, PGconn **ret, struct zerr *err)
{
	if (!pool)
		return zerr_set(err, -EINVAL, "no pool");
	return db_connect_db(pool->conninfo, dbname, ret, err);
}

void db_pool_set_timeout(struct db_pool *pool, int timeout_ms)
{
	if (!pool)
		return;
	if (timeout_ms < 0)
		timeout_ms = 0;
	if (timeout_ms > 600000)
		timeout_ms = 600000;
	pool->timeout_ms = timeout_ms;
}

/* Whether an idle connection still looks alive. The server never speaks to
 * an idle connection except to announce trouble (a FATAL before it closes
 * the connection: administrator command, shutdown, idle timeout), and pool
 * connections do not LISTEN; so any unsolicited input, or a hang-up, means
 * the connection is to be re-opened, before the caller's query fails on it. */
static bool conn_usable(PGconn *conn)
{
	if (PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE ||
	    PQpipelineStatus(conn) != PQ_PIPELINE_OFF)
		return false;
	struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
	if (pfd.fd < 0)
		return false;
	int r;
	while ((r = poll(&pfd, 1, 0)) < 0 && errno == EINTR)
		;
	return r == 0;
}

static void push_idle(struct db_pool *pool, int i)
{
	pthread_mutex_lock(&pool->lock);
	pool->out[i] = false;
	pool->idle[pool->n_idle++] = i;
	pthread_cond_signal(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
}

PGconn *db_acquire(struct db_pool *pool)
{
	if (!pool)
		return NULL;
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += pool->timeout_ms / 1000;
	deadline.tv_nsec += (long)(pool->timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}

	pthread_mutex_lock(&pool->lock);
	while (pool->n_idle == 0) {
		int r = pthread_cond_timedwait(&pool->cond, &pool->lock, &deadline);
		if (r == ETIMEDOUT && pool->n_idle == 0) {
			pthread_mutex_unlock(&pool->lock);
			return NULL;
		}
	}
	int i = pool->idle[--pool->n_idle];
	pool->out[i] = true;
	pthread_mutex_unlock(&pool->lock);

	/* Re-opening happens outside the lock: it may take up to the connect
	 * timeout and must not stall the other threads. */
	PGconn *conn = pool->conns[i];
	if (!conn_usable(conn)) {
		PQreset(conn);
		if (PQstatus(conn) != CONNECTION_OK) {
			push_idle(pool, i);
			return NULL;
		}
	}
	return conn;
}

/* Bring a returned connection back to an idle, transaction-free state. */
static void conn_clean(PGconn *conn)
{
	if (PQstatus(conn) != CONNECTION_OK || PQpipelineStatus(conn) != PQ_PIPELINE_OFF) {
		PQreset(conn);
		return;
	}
	switch (PQtransactionStatus(conn)) {
	case PQTRANS_IDLE:
		return;
	case PQTRANS_INTRANS:
	case PQTRANS_INERROR: {
		_cleanup_pgresult_ PGresult *res = PQexec(conn, "ROLLBACK");
		if (!res || PQresultStatus(res) != PGRES_COMMAND_OK || PQtransactionStatus(conn) != PQTRANS_IDLE)
			PQreset(conn);
		return;
	}
	default:
		/* A query still in flight (results not read, COPY) or a lost
		 * state: only a new connection is certainly clean. */
		PQreset(conn);
		return;
	}
}

void db_release(struct db_pool *pool, PGconn *conn)
{
	if (!pool || !conn)
		return;
	int i = -1;
	pthread_mutex_lock(&pool->lock);
	for (int k = 0; k < pool->size; k++)
		if (pool->conns[k] == conn) {
			i = k;
			break;
		}
	bool held = i >= 0 && pool->out[i];
	pthread_mutex_unlock(&pool->lock);
	if (!held)
		return;
	conn_clean(conn);
	push_idle(pool, i);
}

void db_pool_close(struct db_pool *pool)
{
	if (!pool)
		return;
	for (int i = 0; i < DB_POOL_MAX; i++)
		if (pool->conns[i])
			PQfinish(pool->conns[i]);
	pthread_cond_destroy(&pool->cond);
	pthread_mutex_destroy(&pool->lock);
	free(pool->conninfo);
	free(pool);
}

int db_exec_script(PGconn *conn, const char *sql, const char *context, struct zerr *err)
{
	_cleanup_pgresult_ PGresult *res = PQexec(conn, sql);
	if (!res || !result_ok(res))
		return result_error(err, conn, res, context);
	return 0;
}
