/* validate_sql.h - the body of POST /projects/{pid}/sql as the API accepts
 * it, {sql, params?}; pure, no I/O.
 *
 * sql is 1..VS_SQL_MAX bytes of text (no NUL). Without params it may hold
 * several statements (the simple query protocol); with params, a JSON array
 * of at most VS_PARAMS_MAX scalars, it is one statement whose $1..$n take
 * them as text: a string as it is, a number as its JSON text, a boolean as
 * "true" or "false", null as SQL NULL. Arrays and objects are refused (pass
 * JSON as a string and cast it: $1::jsonb). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "sqlapi.h"

#define VS_SQL_MAX    ZSQL_MAX_BYTES
#define VS_PARAMS_MAX ZSQL_MAX_PARAMS

struct val_sql {
	const char *sql; /* borrowed from the body */
	bool has_params; /* params was given (even empty): one statement, extended protocol */
	size_t n_params;
	char **params; /* n_params texts, NULL for SQL NULL; owned (val_sql_done) */
};

/* Check body and fill *ret (untouched on failure). -ZE_BAD_REQUEST for a
 * body that is not an object or a field that is wrong (the message starts
 * with "sql: " or "params"), -ZE_UNKNOWN_FIELD naming a field that is not
 * one, -ENOMEM. On success ret->sql borrows from body: keep body alive. */
int val_sql_body(json_t *body, struct val_sql *ret, struct zerr *err);

/* Free what val_sql_body allocated; accepts a zeroed struct. */
void val_sql_done(struct val_sql *v);
