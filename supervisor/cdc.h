/* cdc.h - database changes as events: the capture zmeshd installs in a
 * project's database for its cdc triggers, and the dispatcher that moves
 * captured changes into the job queue.
 *
 * Capture. For a trigger "cdc.<OP>.<table>" zmeshd, as the cluster's
 * superuser, installs in the project's database (idempotently):
 *   - schema zmesh_cdc, owned by the NOLOGIN role zmesh_cdc; the project's
 *     role has no privilege on it: it can read nothing of it and change
 *     nothing in it;
 *   - zmesh_cdc.outbox: one row per changed row (schema, table, operation,
 *     old and new as jsonb, the primary key as the row's key, xid, time);
 *   - zmesh_cdc.capture() (a row) and zmesh_cdc.capture_rows() (a
 *     statement's transition table), SECURITY DEFINER as zmesh_cdc (never
 *     as a superuser: the row's conversion to JSON may run functions the
 *     project's role defined, so they run with nothing but the outbox),
 *     which write those rows and NOTIFY zmesh_cdc;
 *   - triggers on the table: zmesh_cdc_update AFTER UPDATE per row,
 *     zmesh_cdc_insert and zmesh_cdc_delete per statement (one call, one
 *     INSERT ... SELECT), whose arguments are the size above which old and
 *     new are cut to the primary key (truncated: true) and the primary
 *     key's columns.
 * The outbox row is written in the changing transaction: a rollback emits
 * nothing, a commit is durable. Removing the last cdc trigger of a table
 * drops its capture; the last of a project drops the schema.
 *
 * Delivery. Every node runs a dispatcher thread. For each project database
 * with cdc triggers it opens a connection and tries a session advisory lock:
 * the one node that holds it drains that database's outbox (the others try
 * again every CDC_RETRY_MS; a dead node's lock goes with its connection).
 * It LISTENs on zmesh_cdc and polls every CDC_POLL_MS anyway. Draining reads
 * the outbox in id order, builds each matching trigger's event, checks its
 * conditions, queues the jobs in order in one control-plane transaction
 * (zmesh_enqueue_batch; order key: trigger and row key), then deletes the
 * rows it read: at least once (a crash between the two delivers again), in
 * commit order per row (the changes of one row are ordered by its locks, and
 * the queue runs jobs of one key one at a time). Rows of tables no enabled
 * trigger matches are dropped. */
#pragma once

#include <libpq-fe.h>
#include <stdbool.h>

#include "util.h"

#define CDC_MAX_ROW_BYTES (256 * 1024) /* old or new larger than this: the primary key only */
#define CDC_MAX_DBS       32           /* project databases one node drains at once (a connection each) */
#define CDC_BATCH         64           /* outbox rows per drain step (each up to twice CDC_MAX_ROW_BYTES) */
#define CDC_POLL_MS       1000
#define CDC_RETRY_MS      2000
#define CDC_IDENT_MAX     63

enum cdc_op { CDC_INSERT = 1, CDC_UPDATE = 2, CDC_DELETE = 4, CDC_ANY = 7 };

struct cdc_name {
	unsigned ops; /* enum cdc_op bits */
	char schema[CDC_IDENT_MAX + 1];
	char table[CDC_IDENT_MAX + 1];
};

/* "cdc.<OP>.<table>" or "cdc.<OP>.<schema>.<table>", OP INSERT, UPDATE,
 * DELETE or *, names of [A-Za-z_][A-Za-z0-9_$]* up to 63 bytes, taken as
 * they are in the catalog (schema "public" when absent). 0, or -EINVAL with
 * why set. Pure. */
int cdc_parse_event_type(const char *s, struct cdc_name *ret, const char **why);

/* Whether a change (operation "INSERT", "UPDATE" or "DELETE") of
 * schema.table is one the trigger n wants. */
bool cdc_matches(const struct cdc_name *n, const char *op, const char *schema, const char *table);

/* In the project's database, as a superuser: check that the table exists
 * (-ENOENT naming it otherwise) and install or refresh its capture. */
int cdc_install(PGconn *db, const struct cdc_name *n, struct zerr *err);

/* Drop the table's capture; with last, the whole schema (no cdc trigger of
 * the project is left). */
int cdc_uninstall(PGconn *db, const char *schema, const char *table, bool last, struct zerr *err);

struct app;
struct cdc;

/* Start this node's dispatcher; conninfo is the control plane's (a
 * superuser's: the project databases are reached with it). */
int cdc_start(struct app *app, const char *conninfo, struct cdc **ret, struct zerr *err);

/* Wake the dispatcher now (a cdc trigger was created). NULL-safe. */
void cdc_wake(struct cdc *c);

/* Stop the thread, close its connections, free c. NULL-safe. */
void cdc_stop(struct cdc *c);
