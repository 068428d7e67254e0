/* db.h - the control plane's access to PostgreSQL: a small connection pool
 * for a threaded daemon and checked query helpers. It holds no SQL of its
 * own: the statements are the store's (store.h).
 *
 * Queries take values only as $n parameters (PQexecParams): SQL text is never
 * built from values. Errors carry the server's SQLSTATE so that callers can
 * tell a unique violation from a lost connection. */
#pragma once

#include <stdbool.h>
#include <libpq-fe.h>

#include "util.h"

#define DB_POOL_MAX           256
#define DB_ACQUIRE_TIMEOUT_MS 5000
/* Applied when the conninfo does not say otherwise, so that no connection
 * attempt (opening, or re-opening a broken one) blocks without bound. */
#define DB_CONNECT_TIMEOUT_S   "10"
#define DB_MIGRATION_MAX_BYTES (4 << 20)
#define DB_MIGRATION_MAX_FILES 1000
/* How long a starting node waits for another one's migration. */
#define DB_MIGRATION_LOCK_TIMEOUT "120s"

static inline void db_clearp(PGresult **r)
{
	if (*r)
		PQclear(*r);
}
static inline void db_finishp(PGconn **c)
{
	if (*c)
		PQfinish(*c);
}
#define _cleanup_pgresult_ _cleanup_(db_clearp)
#define _cleanup_pgconn_   _cleanup_(db_finishp)

struct db_pool;

/* Open one connection with the pool's defaults (connect_timeout,
 * application_name "zmeshd"; the conninfo, a "key=value" string or a
 * postgresql:// URI, overrides them). Server notices are discarded rather
 * than printed. For one-off work: migrations, CREATE DATABASE. */
int db_connect(const char *conninfo, PGconn **ret, struct zerr *err);
/* The same, to another database of the cluster (dbname NULL: conninfo's). */
int db_connect_db(const char *conninfo, const char *dbname, PGconn **ret, struct zerr *err);

/* Open a pool of size (1..DB_POOL_MAX) connections, all at once, so that a
 * wrong conninfo fails here rather than on the first request. Thread-safe
 * from then on. */
int db_pool_open(const char *conninfo, int size, struct db_pool **ret, struct zerr *err);

/* Open one connection outside the pool, as the pool's own are opened (same
 * conninfo, db_connect): for a session of its own that no pooled
 * connection may keep, such as LISTEN. The caller owns it (PQfinish).
 * Thread-safe. */
int db_pool_connect(struct db_pool *pool, PGconn **ret, struct zerr *err);
/* The same, to another database of the cluster (a project's). */
int db_pool_connect_db(struct db_pool *pool, const char *dbname, PGconn **ret, struct zerr *err);

/* How long db_acquire() waits for a free connection (default
 * DB_ACQUIRE_TIMEOUT_MS); call before the pool is shared. */
void db_pool_set_timeout(struct db_pool *pool, int timeout_ms);

/* Take a connection for the calling thread. Waits at most the pool's timeout
 * for one to be free, and returns NULL when none is, or when the one it got
 * is broken and cannot be re-opened (the server is down): callers answer
 * "unavailable". A connection the server closed while it sat idle is noticed
 * and re-opened here. The caller owns it until db_release(). */
PGconn *db_acquire(struct db_pool *pool);

/* Give a connection back. A connection left inside a transaction is rolled
 * back; one found broken, or with a query still in flight, is re-opened.
 * Session state (SET without LOCAL, LISTEN, prepared statements, temporary
 * tables) is NOT reset: callers must not leave any. NULL, a connection of
 * another pool and a second release (while the connection is still idle)
 * are ignored. After the call the caller must not use conn. */
void db_release(struct db_pool *pool, PGconn *conn);

/* Close every connection and free the pool. Every connection must have been
 * released and no thread may be waiting in db_acquire(). Accepts NULL. */
void db_pool_close(struct db_pool *pool);

/* Run a trusted script of several statements (a migration file) as is:
 * the one way text runs without parameters. */
int db_exec_script(PGconn *conn, const char *sql, const char *context, struct zerr *err);

/* Run one statement with n text parameters ($1..$n; NULL entries are SQL
 * NULL) and text results. Succeeds for a command or a query, and then
 * *ret (if ret is not NULL) is the result, which the caller clears
 * (_cleanup_pgresult_). On failure nothing is returned, and err says
 * "SQLSTATE: message" for a server error (see db_err_is) or what broke on
 * the client side. Error codes: -EEXIST unique violation or duplicate
 * object, -ENOENT foreign key violation or missing object, -EINVAL check,
 * not-null, syntax or data errors, -EACCES privilege, -EAGAIN serialization
 * failure, deadlock, lock not available (also lock_timeout), -ETIMEDOUT
 * statement_timeout or cancel, -ECONNRESET connection lost, -EIO anything
 * else. */
int db_exec_params(PGconn *conn, const char *sql, int n, const char *const *params, PGresult **ret, struct zerr *err);

/* db_exec_params for a statement run often (the invocation path): prepared
 * on its first use on a connection and executed by name after that, which
 * saves the server parsing and planning it each time. Same contract. Only
 * for text the program holds (a fixed set of statements): the connection
 * keeps each one for its life. */
int db_exec_prepared(PGconn *conn, const char *sql, int n, const char *const *params, PGresult **ret, struct zerr *err);

/* Whether err was filled by this module for a server error with this
 * SQLSTATE (five characters, e.g. "23505" for a unique violation). */
bool db_err_is(const struct zerr *err, const char *sqlstate);
