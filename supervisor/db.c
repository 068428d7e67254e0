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

/* The advisory lock that serialises migration runners: "zmesh_mg" as a
 * bigint. It only has to differ from any other advisory lock taken in the
 * control-plane database. */
#define MIGRATION_LOCK_KEY "8821818791435398503"
#define MIGRATION_NAME_MAX 200
#define PG_MAX_PARAMS      65535 /* the protocol's limit: a 16-bit count */
#define CONNINFO_MAX       4096

struct db_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled when a connection becomes idle */
	int size;
	int n_idle;
	int timeout_ms;
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

int db_exec_params(PGconn *conn, const char *sql, int n, const char *const *params, PGresult **ret, struct zerr *err)
{
	if (!conn || !sql)
		return zerr_set(err, -EINVAL, "no connection or no statement");
	if (n < 0 || n > PG_MAX_PARAMS || (n > 0 && !params))
		return zerr_set(err, -EINVAL, "bad parameter count %d", n);
	_cleanup_pgresult_ PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
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
	if (!conninfo)
		return zerr_set(err, -EINVAL, "no conninfo");
	if (strnlen(conninfo, CONNINFO_MAX + 1) > CONNINFO_MAX)
		return zerr_set(err, -EINVAL, "conninfo longer than %d bytes", CONNINFO_MAX);
	/* Entries before an expanded dbname are defaults the conninfo
	 * overrides (libpq processes the arrays in order, the last value of a
	 * keyword wins). */
	const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
	const char *const values[] = {DB_CONNECT_TIMEOUT_S, "zmeshd", conninfo, NULL};
	_cleanup_pgconn_ PGconn *conn = PQconnectdbParams(keys, values, 1);
	if (!conn)
		return zerr_set(err, -ENOMEM, "out of memory opening a connection");
	if (PQstatus(conn) != CONNECTION_OK) {
		char msg[400];
		one_line(msg, sizeof(msg), PQerrorMessage(conn));
		return zerr_set(err, -ECONNREFUSED, "connect: %s", msg);
	}
	PQsetNoticeProcessor(conn, drop_notice, NULL);
	*ret = TAKE_PTR(conn);
	return 0;
}

/* ---- the pool ------------------------------------------------------------ */

int db_pool_open(const char *conninfo, int size, struct db_pool **ret, struct zerr *err)
{
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
	free(pool);
}

/* ---- migrations ---------------------------------------------------------- */

struct name_list {
	char **v;
	size_t n;
};

static void name_list_free(struct name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool migration_name_ok(const char *name)
{
	size_t len = strlen(name);
	if (len <= 4 || len > MIGRATION_NAME_MAX)
		return false;
	for (const char *s = name; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
		      *s == '-' || *s == '.'))
			return false;
	return true;
}

static bool ends_with_sql(const char *name)
{
	size_t len = strlen(name);
	return len > 4 && strcmp(name + len - 4, ".sql") == 0;
}

static int list_migrations(int dfd, const char *dir, struct name_list *ret, struct zerr *err)
{
	int dup = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
	if (dup < 0)
		return zerr_set(err, -errno, "dup: %s", strerror(errno));
	DIR *d = fdopendir(dup);
	if (!d) {
		int r = -errno;
		close(dup);
		return zerr_set(err, r, "read %s: %s", dir, strerror(-r));
	}
	struct name_list l = {0};
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *name = de->d_name;
		if (name[0] == '.' || !ends_with_sql(name))
			continue;
		if (!migration_name_ok(name)) {
			r = zerr_set(err, -EINVAL,
			             "migration file name \"%.64s\" in %s: only letters, digits, '_', '-', '.'", name,
			             dir);
			break;
		}
		struct stat st;
		if (fstatat(dfd, name, &st, 0) < 0) {
			r = zerr_set(err, -errno, "stat %s/%s: %s", dir, name, strerror(errno));
			break;
		}
		if (!S_ISREG(st.st_mode)) {
			r = zerr_set(err, -EINVAL, "%s/%s is not a regular file", dir, name);
			break;
		}
		if (l.n >= DB_MIGRATION_MAX_FILES) {
			r = zerr_set(err, -E2BIG, "more than %d migrations in %s", DB_MIGRATION_MAX_FILES, dir);
			break;
		}
		char **v = realloc(l.v, (l.n + 1) * sizeof(*v));
		char *copy = strdup(name);
		if (v)
			l.v = v;
		if (!v || !copy) {
			free(copy);
			r = zerr_set(err, -ENOMEM, "out of memory");
			break;
		}
		l.v[l.n++] = copy;
	}
	closedir(d);
	if (r < 0) {
		name_list_free(&l);
		return r;
	}
	if (l.n)
		qsort(l.v, l.n, sizeof(*l.v), cmp_names);
	*ret = l;
	return 0;
}

static int read_migration(int dfd, const char *name, char **ret, struct zerr *err)
{
	_cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return zerr_set(err, -errno, "open %s: %s", name, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0)
		return zerr_set(err, -errno, "stat %s: %s", name, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return zerr_set(err, -EINVAL, "%s is not a regular file", name);
	if (st.st_size > DB_MIGRATION_MAX_BYTES)
		return zerr_set(err, -EFBIG, "%s is larger than %d bytes", name, DB_MIGRATION_MAX_BYTES);
	_cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return zerr_set(err, -ENOMEM, "out of memory");
	size_t off = 0;
	/* Read what stat promised and no more: a file growing meanwhile must
	 * not overrun the bound. */
	while (off < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return zerr_set(err, -errno, "read %s: %s", name, strerror(errno));
		if (n == 0)
			break;
		off += (size_t)n;
	}
	buf[off] = '\0';
	/* libpq takes a C string: an embedded NUL would silently cut the
	 * migration short. */
	if (memchr(buf, '\0', off))
		return zerr_set(err, -EINVAL, "%s contains a NUL byte", name);
	*ret = TAKE_PTR(buf);
	return 0;
}

static int exec0(PGconn *conn, const char *sql, struct zerr *err)
{
	return db_exec_params(conn, sql, 0, NULL, NULL, err);
}

static void rollback_quietly(PGconn *conn)
{
	if (PQtransactionStatus(conn) == PQTRANS_IDLE)
		return;
	PQclear(PQexec(conn, "ROLLBACK"));
}

/* Apply one file unless recorded; *ret_applied tells which. */
static int apply_one(PGconn *conn, const char *version, const char *sql, bool *ret_applied, struct zerr *err)
{
	/* READ COMMITTED whatever the role's default: every statement after the
	 * lock must see what the previous holder committed. */
	int r = exec0(conn, "BEGIN ISOLATION LEVEL READ COMMITTED", err);
	if (r < 0)
		return r;
	r = exec0(conn, "SET LOCAL lock_timeout = '" DB_MIGRATION_LOCK_TIMEOUT "'", err);
	if (r < 0)
		goto fail;
	const char *key[] = {MIGRATION_LOCK_KEY};
	r = db_exec_params(conn, "SELECT pg_advisory_xact_lock($1::bigint)", 1, key, NULL, err);
	if (r < 0)
		goto fail;
	/* Created under the lock: concurrent CREATE TABLE IF NOT EXISTS can
	 * still collide on the catalog's unique indexes. */
	r = exec0(conn,
	          "CREATE TABLE IF NOT EXISTS schema_migrations ("
	          "version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
	          err);
	if (r < 0)
		goto fail;
	{
		_cleanup_pgresult_ PGresult *res = NULL;
		const char *v[] = {version};
		r = db_exec_params(conn, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, v, &res, err);
		if (r < 0)
			goto fail;
		if (PQntuples(res) > 0) {
			r = exec0(conn, "COMMIT", err);
			if (r < 0)
				goto fail;
			*ret_applied = false;
			return 0;
		}
	}
	{
		/* The one place text is executed as is: a trusted file of the
		 * installation, several statements, no values. */
		_cleanup_pgresult_ PGresult *res = PQexec(conn, sql);
		if (!res || !result_ok(res)) {
			r = result_error(err, conn, res, version);
			goto fail;
		}
	}
	if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
		r = zerr_set(err, -EINVAL,
		             "migration %s ends the transaction itself (no BEGIN/COMMIT/ROLLBACK allowed)", version);
		goto fail;
	}
	{
		const char *v[] = {version};
		r = db_exec_params(conn, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())", 1, v,
		                   NULL, err);
		if (r < 0)
			goto fail;
	}
	r = exec0(conn, "COMMIT", err);
	if (r < 0)
		goto fail;
	*ret_applied = true;
	return 0;
fail:
	rollback_quietly(conn);
	return r;
}

int db_migrate(PGconn *conn, const char *sql_dir, int *ret_applied, struct zerr *err)
{
	if (!conn || !sql_dir)
		return zerr_set(err, -EINVAL, "no connection or no directory");
	if (PQstatus(conn) != CONNECTION_OK)
		return zerr_set(err, -ECONNRESET, "connection is not open");
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		return zerr_set(err, -EBUSY, "connection is inside a transaction");
	_cleanup_close_ int dfd = open(sql_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return zerr_set(err, -errno, "open migrations directory %s: %s", sql_dir, strerror(errno));
	_cleanup_(name_list_free) struct name_list files = {0};
	int r = list_migrations(dfd, sql_dir, &files, err);
	if (r < 0)
		return r;
	int applied = 0;
	for (size_t i = 0; i < files.n; i++) {
		_cleanup_free_ char *sql = NULL;
		r = read_migration(dfd, files.v[i], &sql, err);
		if (r < 0)
			return r;
		char version[MIGRATION_NAME_MAX + 1];
		snprintf(version, sizeof(version), "%.*s", (int)(strlen(files.v[i]) - 4), files.v[i]);
		bool done = false;
		r = apply_one(conn, version, sql, &done, err);
		if (r < 0)
			return r;
		applied += done;
	}
	*ret_applied = applied;
	return 0;
}
