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

/* Rows of projects (alias p) and functions (alias f) as the store's structs:
 * select STORE_PROJECT_COLS (STORE_PROJECT_NCOLS columns) or
 * STORE_FUNCTION_COLS at column col, then read them back. *ret_f is
 * released with store_function_done. */
extern const char store_project_cols[];
extern const char store_function_cols[];
#define STORE_PROJECT_NCOLS  9
#define STORE_FUNCTION_NCOLS 12
void store_project_from_row(PGresult *res, int row, int col, struct project *ret_p);
int store_function_from_row(PGresult *res, int row, int col, struct function *ret_f, struct zerr *err);
