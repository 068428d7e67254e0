/* store.h - the control plane's data access: every SQL statement zmeshd
 * issues lives behind this header (bootstrap, provisioning of project
 * databases, users, projects, keys, functions and versions, invocations).
 * Handlers and the invocation pipeline speak in the structs below; none of
 * them holds SQL text.
 *
 * Contract: functions take a connection the caller acquired (db_acquire)
 * and release; they return 0 or a negative errno from db_exec_params (see
 * db.h: -EEXIST unique violation, -ENOENT missing, -ECONNRESET connection
 * lost, ...), with err filled. A lookup that finds nothing is -ENOENT.
 * Values are always $n parameters; identifiers that cannot be parameters
 * (database and role names in DDL) are quoted by the server (quote_ident)
 * and are of our own making. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "db.h"

/* Bootstrap (start-up, single-threaded). */

/* Create database name (a constant of ours) unless it exists, connected to
 * the cluster's maintenance database with conninfo_admin. */
int store_ensure_database(const char *conninfo_admin, const char *name, struct zerr *err);

/* Functions' roles must reach their own database only: no CONNECT or
 * TEMPORARY for PUBLIC on the control plane and the maintenance databases. */
int store_lock_down(PGconn *c, struct zerr *err);

/* Number of users (0 on a fresh control plane). */
int store_count_users(PGconn *c, uint64_t *ret, struct zerr *err);

/* Create a user (email is stored lower-case). -EEXIST when the email is
 * taken. */
int store_user_create(PGconn *c, const char *email, const char *password_hash, bool is_admin, struct zerr *err);
