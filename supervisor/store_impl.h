/* store_impl.h - what the store's files (store*.c) share; not for callers
 * outside the store. */
#pragma once

#include "store.h"

/* One row, one column of JSON built by the query (db_exec_params). *ret is
 * NULL without a row. */
int store_q_json(PGconn *c, const char *sql, int n, const char *const *p, json_t **ret, struct zerr *err);
/* store_q_json that wants a row: -ZE_NOT_FOUND with what for a message. */
int store_q_json_one(PGconn *c, const char *sql, int n, const char *const *p, json_t **ret, const char *what,
                     struct zerr *err);
/* The same with a prepared statement (db_exec_prepared): for statements of
 * the invocation path. */
int store_q_json_prepared(PGconn *c, const char *sql, int n, const char *const *p, json_t **ret, struct zerr *err);

/* A project's columns, as "p.<col>, ..." (STORE_PROJECT_NCOLS of them), and
 * the struct from them at column col of row. */
#define STORE_PROJECT_NCOLS 8
extern const char store_project_cols[];
void store_project_from_row(PGresult *res, int row, int col, struct project *p);
/* A function's columns at col: id, name, slug, language, entry_point,
 * timeout_ms, memory_mb, version, active (bool), uses_db (bool), code, env
 * (12 columns). */
#define STORE_FUNCTION_NCOLS 12
int store_function_from_row(PGresult *res, int row, int col, struct function *ret, struct zerr *err);
