/* projsql.h - SQL a project's member sends (POST /projects/{pid}/sql), run
 * in that project's database as that project's role, and its results as
 * JSON. Never prints, never logs; the handler (api_sql.c) reports.
 *
 * Each call opens a fresh libpq session as the project's role (its password,
 * its database; host = the socket directory the sandboxes reach: the node's
 * pgbouncer, or the cluster's socket): exactly what a function of the
 * project gets, never the superuser, the control plane or the API's pool.
 * The session is set up like the SDKs' (DateStyle ISO, TimeZone UTC,
 * IntervalStyle iso_8601, bytea_output hex, client_encoding UTF8) with
 * statement_timeout PROJSQL_STATEMENT_TIMEOUT_MS, and closed after the call:
 * a transaction left open is rolled back.
 *
 * Limits: each statement at most PROJSQL_STATEMENT_TIMEOUT_MS (the server's
 * statement_timeout), the whole call at most PROJSQL_DEADLINE_MS (enforced
 * here: a statement that lowered or lifted its own timeout is cancelled at
 * the deadline). Rows are read one at a time (libpq's single-row mode), so
 * a large result never sits in memory whole: at most PROJSQL_MAX_ROWS rows
 * of a statement are kept, within PROJSQL_MAX_VALUE_BYTES of values over
 * the whole answer, and at most PROJSQL_MAX_RESULTS statements are listed;
 * what is left out is read and dropped, and marked "truncated". */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "sqlapi.h"

#define PROJSQL_STATEMENT_TIMEOUT_MS ZSQL_STATEMENT_TIMEOUT_MS
#define PROJSQL_DEADLINE_MS          ZSQL_DEADLINE_MS
#define PROJSQL_CONNECT_TIMEOUT_S    "10"
#define PROJSQL_MAX_ROWS             ZSQL_MAX_ROWS
#define PROJSQL_MAX_RESULTS          ZSQL_MAX_RESULTS
#define PROJSQL_MAX_VALUE_BYTES      ZSQL_MAX_VALUE_BYTES

struct projsql_target {
	const char *socket_dir; /* libpq host: a directory */
	const char *role;       /* also the database's name's owner */
	const char *dbname;
	const char *password;
};

struct projsql_query {
	const char *sql;
	bool extended;             /* one statement with $1..$n (PQexecParams); else the simple protocol */
	size_t n_params;           /* extended only */
	const char *const *params; /* text values; NULL entries are SQL NULL */
};

/* Run q on t. On success *ret_body is {results: [{command, row_count,
 * columns: [{name, type}], rows: [[...]], truncated}], truncated} and
 * *ret_commands the statements' command tags joined by "," (for the log;
 * free()). Failures:
 *  - -ZE_SQL_ERROR: the server refused a statement; err->msg is its
 *    message (for the client) and *ret_detail {sqlstate, position?,
 *    statement} (position: 1-based characters into sql; statement: 0-based
 *    index of the failing statement). A call past PROJSQL_DEADLINE_MS is
 *    cancelled and answered so too (sqlstate 57014).
 *  - -ECONNREFUSED: no session could be opened (err->msg: libpq's
 *    reason, for the operator's log);
 *  - -ECONNRESET: the session was lost mid-way; -ENOMEM.
 * Outputs are untouched on failure but *ret_detail, set for
 * -ZE_SQL_ERROR only (json_decref it). */
int projsql_run(const struct projsql_target *t, const struct projsql_query *q, json_t **ret_body, char **ret_commands,
                json_t **ret_detail, struct zerr *err);
