/* cdc.c - see cdc.h */
#define _GNU_SOURCE
#include "cdc.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "buf.h"
#include "conditions.h"
#include "db.h"
#include "jobs.h"
#include "log.h"

/* The session advisory lock whose holder drains a project database, and
 * the transaction lock that serializes installs in one. */
#define CDC_LOCK_KEY    "2053923684" /* "zmcd" */
#define CDC_INSTALL_KEY "2053923689"
/* Outbox rows of one drain before the other databases get a turn. */
#define CDC_DRAIN_ROUNDS 16

/* ---- names ------------------------------------------------------------------- */

static bool ident_ok(const char *s, size_t n)
{
	if (n == 0 || n > CDC_IDENT_MAX)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '$'))
			return false;
	}
	return true;
}

int cdc_parse_event_type(const char *s, struct cdc_name *ret, const char **why)
{
	static const struct {
		const char *name;
		unsigned ops;
	} ops[] = {{"INSERT.", CDC_INSERT}, {"UPDATE.", CDC_UPDATE}, {"DELETE.", CDC_DELETE}, {"*.", CDC_ANY}};
	struct cdc_name n = {0};
	const char *w = NULL;
	if (!s || strncmp(s, "cdc.", 4) != 0) {
		*why = "does not start with \"cdc.\"";
		return -EINVAL;
	}
	s += 4;
	for (size_t i = 0; i < ELEMENTSOF(ops) && !n.ops; i++)
		if (strncmp(s, ops[i].name, strlen(ops[i].name)) == 0) {
			n.ops = ops[i].ops;
			s += strlen(ops[i].name);
		}
	if (!n.ops)
		w = "names no operation (INSERT, UPDATE, DELETE or *)";
	const char *dot = w ? NULL : strchr(s, '.');
	const char *schema = "public", *table = s;
	size_t sl = strlen(schema), tl = w ? 0 : strlen(s);
	if (dot) {
		schema = s;
		sl = (size_t)(dot - s);
		table = dot + 1;
		tl = strlen(table);
		if (strchr(table, '.'))
			w = "has more than a schema and a table";
	}
	if (!w && (!ident_ok(schema, sl) || !ident_ok(table, tl)))
		w = "names a table that is not [A-Za-z_][A-Za-z0-9_$]* of at most 63 bytes (optionally schema.table)";
	if (!w && sl == 9 && strncmp(schema, "zmesh_cdc", 9) == 0)
		w = "names the capture's own schema";
	if (!w &&
	    ((sl == 10 && strncmp(schema, "pg_catalog", 10) == 0) ||
	     (sl == 18 && strncmp(schema, "information_schema", 18) == 0) || (sl >= 3 && !strncmp(schema, "pg_", 3))))
		w = "names a system schema";
	if (w) {
		*why = w;
		return -EINVAL;
	}
	memcpy(n.schema, schema, sl);
	memcpy(n.table, table, tl);
	*ret = n;
	return 0;
}

bool cdc_matches(const struct cdc_name *n, const char *op, const char *schema, const char *table)
{
	unsigned bit = strcmp(op, "INSERT") == 0   ? CDC_INSERT
	               : strcmp(op, "UPDATE") == 0 ? CDC_UPDATE
	               : strcmp(op, "DELETE") == 0 ? CDC_DELETE
	                                           : 0;
	return (n->ops & bit) && strcmp(n->schema, schema) == 0 && strcmp(n->table, table) == 0;
}

/* ---- capture ----------------------------------------------------------------- */

/* Run a script of trusted text (no values in it but quoted identifiers and
 * literals made with libpq's escaping). */
static int script(PGconn *db, const char *sql, struct zerr *err)
{
	return db_exec_script(db, sql, "cdc", err);
}

static const char capture_setup[] =
    "DO $$ BEGIN CREATE ROLE zmesh_cdc NOLOGIN NOINHERIT; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n"
    "CREATE SCHEMA IF NOT EXISTS zmesh_cdc AUTHORIZATION zmesh_cdc;\n"
    "REVOKE ALL ON SCHEMA zmesh_cdc FROM PUBLIC;\n"
    "CREATE TABLE IF NOT EXISTS zmesh_cdc.outbox (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  tbl_schema text NOT NULL,\n"
    "  tbl text NOT NULL,\n"
    "  op text NOT NULL,\n"
    "  old jsonb,\n"
    "  new jsonb,\n"
    "  truncated boolean NOT NULL DEFAULT false,\n"
    "  rowkey text,\n"
    "  xid bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint,\n"
    "  at timestamptz NOT NULL DEFAULT now());\n"
    "ALTER TABLE zmesh_cdc.outbox OWNER TO zmesh_cdc;\n"
    "ALTER SEQUENCE zmesh_cdc.outbox_id_seq OWNER TO zmesh_cdc;\n"
    "REVOKE ALL ON zmesh_cdc.outbox FROM PUBLIC;\n"
    /* Both run as zmesh_cdc, which owns the outbox and nothing else: what
     * a row's conversion to JSON may call runs without a superuser's
     * rights. Their arguments: the size bound, then the primary key's
     * columns. pg_column_size of the jsonb is the size checked (no text
     * made of it). */
    "CREATE OR REPLACE FUNCTION zmesh_cdc.capture() RETURNS trigger\n"
    "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$\n"
    "DECLARE\n"
    "  o jsonb; n jsonb; ko jsonb := '{}'; kn jsonb := '{}'; rk text; trunc boolean := false;\n"
    "  lim bigint := TG_ARGV[0]::bigint;\n"
    "BEGIN\n"
    "  IF TG_OP <> 'INSERT' THEN o := to_jsonb(OLD); END IF;\n"
    "  IF TG_OP <> 'DELETE' THEN n := to_jsonb(NEW); END IF;\n"
    "  FOR i IN 1 .. TG_NARGS - 1 LOOP\n"
    "    IF o IS NOT NULL THEN ko := ko || jsonb_build_object(TG_ARGV[i], o -> TG_ARGV[i]); END IF;\n"
    "    IF n IS NOT NULL THEN kn := kn || jsonb_build_object(TG_ARGV[i], n -> TG_ARGV[i]); END IF;\n"
    "  END LOOP;\n"
    "  IF TG_NARGS > 1 THEN rk := (CASE WHEN TG_OP = 'INSERT' THEN kn ELSE ko END)::text; END IF;\n"
    "  IF coalesce(pg_column_size(o), 0) > lim OR coalesce(pg_column_size(n), 0) > lim THEN\n"
    "    trunc := true;\n"
    "    o := CASE WHEN o IS NULL THEN NULL ELSE ko END;\n"
    "    n := CASE WHEN n IS NULL THEN NULL ELSE kn END;\n"
    "  END IF;\n"
    "  INSERT INTO zmesh_cdc.outbox (tbl_schema, tbl, op, old, new, truncated, rowkey)\n"
    "  VALUES (TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, o, n, trunc, rk);\n"
    "  PERFORM pg_notify('zmesh_cdc', '');\n"
    "  RETURN NULL;\n"
    "END\n"
    "$f$;\n"
    /* A statement's inserted or deleted rows at once, from its transition
     * table: one call and one INSERT ... SELECT per statement. */
    "CREATE OR REPLACE FUNCTION zmesh_cdc.capture_rows() RETURNS trigger\n"
    "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$\n"
    "DECLARE\n"
    "  lim bigint := TG_ARGV[0]::bigint;\n"
    "  cols text[] := TG_ARGV[1:TG_NARGS - 1];\n"
    "BEGIN\n"
    "  IF TG_OP = 'INSERT' THEN\n"
    "    INSERT INTO zmesh_cdc.outbox (tbl_schema, tbl, op, old, new, truncated, rowkey)\n"
    "    SELECT TG_TABLE_SCHEMA, TG_TABLE_NAME, 'INSERT', NULL, CASE WHEN big THEN k ELSE j END, big,\n"
    "           CASE WHEN TG_NARGS > 1 THEN k::text END\n"
    "    FROM (SELECT j, pg_column_size(j) > lim AS big,\n"
    "                 (SELECT coalesce(jsonb_object_agg(c, j -> c), '{}') FROM unnest(cols) c) AS k\n"
    "          FROM (SELECT to_jsonb(r) AS j FROM zmesh_new r) x) y;\n"
    "  ELSE\n"
    "    INSERT INTO zmesh_cdc.outbox (tbl_schema, tbl, op, old, new, truncated, rowkey)\n"
    "    SELECT TG_TABLE_SCHEMA, TG_TABLE_NAME, 'DELETE', CASE WHEN big THEN k ELSE j END, NULL, big,\n"
    "           CASE WHEN TG_NARGS > 1 THEN k::text END\n"
    "    FROM (SELECT j, pg_column_size(j) > lim AS big,\n"
    "                 (SELECT coalesce(jsonb_object_agg(c, j -> c), '{}') FROM unnest(cols) c) AS k\n"
    "          FROM (SELECT to_jsonb(r) AS j FROM zmesh_old r) x) y;\n"
    "  END IF;\n"
    "  IF FOUND THEN\n"
    "    PERFORM pg_notify('zmesh_cdc', '');\n"
    "  END IF;\n"
    "  RETURN NULL;\n"
    "END\n"
    "$f$;\n"
    "ALTER FUNCTION zmesh_cdc.capture() OWNER TO zmesh_cdc;\n"
    "ALTER FUNCTION zmesh_cdc.capture_rows() OWNER TO zmesh_cdc;\n"
    "REVOKE ALL ON FUNCTION zmesh_cdc.capture() FROM PUBLIC;\n"
    "REVOKE ALL ON FUNCTION zmesh_cdc.capture_rows() FROM PUBLIC;\n";

int cdc_install(PGconn *db, const struct cdc_name *n, struct zerr *err)
{
	const char *p[] = {n->schema, n->table};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(db,
	                       "SELECT c.relkind, coalesce((SELECT array_agg(a.attname ORDER BY k.i)::text[] "
	                       "FROM pg_index x CROSS JOIN unnest(x.indkey) WITH ORDINALITY AS k(att, i) "
	                       "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.att "
	                       "WHERE x.indrelid = c.oid AND x.indisprimary), '{}') "
	                       "FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace "
	                       "WHERE s.nspname = $1 AND c.relname = $2",
	                       2, p, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return zerr_set(err, -ENOENT, "no table %s.%s in the project's database", n->schema, n->table);
	const char *kind = PQgetvalue(res, 0, 0);
	if (strcmp(kind, "r") != 0 && strcmp(kind, "p") != 0)
		return zerr_set(err, -EINVAL, "%s.%s is not a table", n->schema, n->table);

	/* The trigger's arguments: the size bound, then the primary key's
	 * columns (a text[] literal from the server, parsed by it again). */
	const char *kp[] = {PQgetvalue(res, 0, 1)};
	_cleanup_pgresult_ PGresult *cols = NULL;
	r = db_exec_params(db, "SELECT quote_literal(x) FROM unnest($1::text[]) AS x", 1, kp, &cols, err);
	if (r < 0)
		return r;
	_cleanup_buf_ struct buf sql = BUF_INIT(0);
	char *qs = PQescapeIdentifier(db, n->schema, strlen(n->schema));
	char *qt = PQescapeIdentifier(db, n->table, strlen(n->table));
	_cleanup_buf_ struct buf args = BUF_INIT(0);
	buf_printf(&args, "'%d'", CDC_MAX_ROW_BYTES);
	for (int i = 0; i < PQntuples(cols); i++)
		buf_printf(&args, ", %s", PQgetvalue(cols, i, 0));
	const char *a = args.data ? args.data : "";
	const char *t1 = qs ? qs : "\"\"", *t2 = qt ? qt : "\"\"";
	/* Updates row by row (old and new paired); inserts and deletes by
	 * statement. An older capture of one trigger for all three goes. */
	buf_printf(
	    &sql,
	    "BEGIN;\nSELECT pg_advisory_xact_lock(" CDC_INSTALL_KEY ");\n%s"
	    "DROP TRIGGER IF EXISTS zmesh_cdc_capture ON %s.%s;\n"
	    "CREATE OR REPLACE TRIGGER zmesh_cdc_update AFTER UPDATE ON %s.%s "
	    "FOR EACH ROW EXECUTE FUNCTION zmesh_cdc.capture(%s);\n"
	    "CREATE OR REPLACE TRIGGER zmesh_cdc_insert AFTER INSERT ON %s.%s REFERENCING NEW TABLE AS zmesh_new "
	    "FOR EACH STATEMENT EXECUTE FUNCTION zmesh_cdc.capture_rows(%s);\n"
	    "CREATE OR REPLACE TRIGGER zmesh_cdc_delete AFTER DELETE ON %s.%s REFERENCING OLD TABLE AS zmesh_old "
	    "FOR EACH STATEMENT EXECUTE FUNCTION zmesh_cdc.capture_rows(%s);\n"
	    "COMMIT;\n",
	    capture_setup, t1, t2, t1, t2, a, t1, t2, a, t1, t2, a);
	PQfreemem(qs);
	PQfreemem(qt);
	if (!qs || !qt || sql.failed || args.failed)
		return zerr_set(err, -ENOMEM, "out of memory");
	r = script(db, sql.data, err);
	if (r < 0)
		PQclear(PQexec(db, "ROLLBACK"));
	return r;
}

int cdc_uninstall(PGconn *db, const char *schema, const char *table, bool last, struct zerr *err)
{
	if (last)
		return script(db, "DROP SCHEMA IF EXISTS zmesh_cdc CASCADE", err);
	char *qs = PQescapeIdentifier(db, schema, strlen(schema));
	char *qt = PQescapeIdentifier(db, table, strlen(table));
	char sql[1200];
	int r = qs && qt ? 0 : zerr_set(err, -ENOMEM, "out of memory");
	if (r == 0) {
		snprintf(sql, sizeof(sql),
		         "DROP TRIGGER IF EXISTS zmesh_cdc_update ON %s.%s; DROP TRIGGER IF EXISTS zmesh_cdc_insert ON "
		         "%s.%s; "
		         "DROP TRIGGER IF EXISTS zmesh_cdc_delete ON %s.%s",
		         qs, qt, qs, qt, qs, qt);
		r = script(db, sql, err);
		/* The table itself may be gone: nothing is left to drop. */
		if (r < 0 && db_err_is(err, "42P01"))
			r = 0;
	}
	PQfreemem(qs);
	PQfreemem(qt);
	return r;
}

/* ---- the dispatcher ---------------------------------------------------------- */

struct cdc_db {
	char project_id[40];
	char name[64];
	PGconn *c;         /* held while this node drains it (holds the lock) */
	uint64_t retry_at; /* ms: when to try for the lock again */
	bool dirty;
	bool listed;
	bool warned; /* a failure to connect was logged */
};

struct cdc {
	struct app *app;
	char *conninfo;
	struct cdc_db dbs[CDC_MAX_DBS];
	int n;
	int wake_fd;
	atomic_bool stopping;
	pthread_t thread;
	uint64_t refresh_at;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void drop_lead(struct cdc_db *d, uint64_t retry_at)
{
	if (d->c)
		PQfinish(d->c);
	d->c = NULL;
	d->retry_at = retry_at;
}

/* The project databases with cdc triggers, from the control plane. */
static void refresh(struct cdc *c)
{
	PGconn *cp = db_acquire(c->app->pool);
	if (!cp)
		return;
	struct zerr err = {0};
	_cleanup_pgresult_ PGresult *res = NULL;
	char limit[16];
	snprintf(limit, sizeof(limit), "%d", CDC_MAX_DBS);
	const char *p[] = {limit};
	int r = db_exec_params(cp,
	                       "SELECT DISTINCT p.id, p.db_name FROM triggers t JOIN projects p ON p.id = t.project_id "
	                       "WHERE t.event_type LIKE 'cdc.%' ORDER BY 1 LIMIT $1::int",
	                       1, p, &res, &err);
	db_release(c->app->pool, cp);
	if (r < 0) {
		zlog(ZLOG_WARN, "cdc_refresh_failed", "error", err.msg, NULL);
		return;
	}
	for (int i = 0; i < c->n; i++)
		c->dbs[i].listed = false;
	for (int row = 0; row < PQntuples(res); row++) {
		const char *id = PQgetvalue(res, row, 0), *name = PQgetvalue(res, row, 1);
		int i = 0;
		while (i < c->n && strcmp(c->dbs[i].project_id, id) != 0)
			i++;
		if (i == c->n) {
			if (c->n == CDC_MAX_DBS)
				continue;
			c->dbs[c->n++] = (struct cdc_db){0};
			snprintf(c->dbs[i].project_id, sizeof(c->dbs[i].project_id), "%s", id);
			snprintf(c->dbs[i].name, sizeof(c->dbs[i].name), "%s", name);
		}
		c->dbs[i].listed = true;
	}
	/* Databases no cdc trigger needs any more: their lock goes with the
	 * connection. */
	for (int i = 0; i < c->n;) {
		if (c->dbs[i].listed) {
			i++;
			continue;
		}
		drop_lead(&c->dbs[i], 0);
		c->dbs[i] = c->dbs[--c->n];
	}
}

static void try_lead(struct cdc *c, struct cdc_db *d, uint64_t now)
{
	struct zerr err = {0};
	PGconn *db = NULL;
	d->retry_at = now + CDC_RETRY_MS;
	if (db_connect_db(c->conninfo, d->name, &db, &err) < 0) {
		if (!d->warned)
			zlog(ZLOG_WARN, "cdc_connect_failed", "database", d->name, "error", err.msg, NULL);
		d->warned = true;
		return;
	}
	d->warned = false;
	_cleanup_pgresult_ PGresult *res = NULL;
	if (db_exec_params(db, "SELECT pg_try_advisory_lock(" CDC_LOCK_KEY ")", 0, NULL, &res, &err) < 0 ||
	    strcmp(PQgetvalue(res, 0, 0), "t") != 0 || db_exec_script(db, "LISTEN zmesh_cdc", "cdc", &err) < 0) {
		PQfinish(db);
		return;
	}
	d->c = db;
	d->dirty = true;
	zlog(ZLOG_INFO, "cdc_draining", "database", d->name, NULL);
}

/* The enabled cdc triggers of a project: [{id, function_id, name, conditions}]. */
struct trig {
	const char *id, *function_id;
	struct cdc_name name;
	json_t *conditions;
};

static int load_triggers(struct cdc *c, const char *project_id, PGresult **ret, struct trig **ret_t, int *ret_n,
                         struct zerr *err)
{
	PGconn *cp = db_acquire(c->app->pool);
	if (!cp)
		return zerr_set(err, -EAGAIN, "no control-plane connection");
	const char *p[] = {project_id};
	int r = db_exec_params(cp,
	                       "SELECT id, function_id, event_type, conditions FROM triggers "
	                       "WHERE project_id = $1 AND enabled AND event_type LIKE 'cdc.%'",
	                       1, p, ret, err);
	db_release(c->app->pool, cp);
	if (r < 0)
		return r;
	int n = PQntuples(*ret);
	struct trig *t = calloc((size_t)(n ? n : 1), sizeof(*t));
	if (!t)
		return zerr_set(err, -ENOMEM, "out of memory");
	int k = 0;
	for (int i = 0; i < n; i++) {
		const char *why;
		if (cdc_parse_event_type(PQgetvalue(*ret, i, 2), &t[k].name, &why) < 0)
			continue;
		t[k].id = PQgetvalue(*ret, i, 0);
		t[k].function_id = PQgetvalue(*ret, i, 1);
		t[k].conditions = json_loads(PQgetvalue(*ret, i, 3), 0, NULL);
		k++;
	}
	*ret_t = t;
	*ret_n = k;
	return 0;
}

static void free_triggers(struct trig *t, int n)
{
	for (int i = 0; t && i < n; i++)
		json_decref(t[i].conditions);
	free(t);
}

static json_t *jsonb_value(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return json_null();
	json_t *v = json_loads(PQgetvalue(res, row, col), JSON_DECODE_ANY, NULL);
	return v ? v : json_null();
}

enum { O_ID, O_SCHEMA, O_TABLE, O_OP, O_OLD, O_NEW, O_TRUNC, O_ROWKEY, O_XID, O_AT };

/* One step: up to CDC_BATCH rows moved. 1 when rows were read, 0 when the
 * outbox is empty, <0 on failure. */
static int drain_step(struct cdc *c, struct cdc_db *d, struct zerr *err)
{
	_cleanup_pgresult_ PGresult *rows = NULL;
	char batch[16];
	snprintf(batch, sizeof(batch), "%d", CDC_BATCH);
	const char *bp[] = {batch};
	int r = db_exec_params(d->c,
	                       "SELECT id, tbl_schema, tbl, op, old, new, truncated, rowkey, xid, "
	                       "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
	                       "FROM zmesh_cdc.outbox ORDER BY id LIMIT $1::int",
	                       1, bp, &rows, err);
	if (r < 0)
		return db_err_is(err, "42P01") || db_err_is(err, "3F000") ? 0 : r;
	int n = PQntuples(rows);
	if (n == 0)
		return 0;

	_cleanup_pgresult_ PGresult *tres = NULL;
	struct trig *t = NULL;
	int nt = 0;
	r = load_triggers(c, d->project_id, &tres, &t, &nt, err);
	if (r < 0)
		return r;
	_cleanup_(json_decrefp) json_t *items = json_array();
	_cleanup_buf_ struct buf ids = BUF_INIT(0);
	uint64_t filtered = 0;
	buf_puts(&ids, "{");
	for (int i = 0; i < n && items; i++) {
		const char *schema = PQgetvalue(rows, i, O_SCHEMA), *table = PQgetvalue(rows, i, O_TABLE),
		           *op = PQgetvalue(rows, i, O_OP);
		buf_printf(&ids, "%s%s", i ? "," : "", PQgetvalue(rows, i, O_ID));
		for (int k = 0; k < nt; k++) {
			if (!cdc_matches(&t[k].name, op, schema, table))
				continue;
			json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:I}", "trigger", "database",
			                       "trigger_id", t[k].id, "schema", schema, "table", table, "operation", op,
			                       "old", jsonb_value(rows, i, O_OLD), "new", jsonb_value(rows, i, O_NEW),
			                       "timestamp", PQgetvalue(rows, i, O_AT), "xid",
			                       (json_int_t)strtoll(PQgetvalue(rows, i, O_XID), NULL, 10));
			if (!ev) {
				r = zerr_set(err, -ENOMEM, "out of memory");
				break;
			}
			if (strcmp(PQgetvalue(rows, i, O_TRUNC), "t") == 0)
				json_object_set_new(ev, "truncated", json_true());
			if (t[k].conditions && !cond_match(t[k].conditions, ev)) {
				filtered++;
				json_decref(ev);
				continue;
			}
			/* One row's changes for one trigger run in order; a table
			 * without a primary key is ordered as a whole. (The queue
			 * keeps a digest of the key: a primary key may be long.) */
			char *key = NULL;
			if (asprintf(&key, "%s:%s.%s:%s", t[k].id, schema, table,
			             PQgetisnull(rows, i, O_ROWKEY) ? "" : PQgetvalue(rows, i, O_ROWKEY)) < 0)
				key = NULL;
			json_t *item =
			    key ? json_pack("{s:s, s:s, s:s, s:o, s:s}", "function_id", t[k].function_id, "trigger",
			                    "database", "trigger_id", t[k].id, "event", ev, "order_key", key)
			        : NULL;
			if (!key)
				json_decref(ev);
			free(key);
			if (!item || json_array_append_new(items, item) < 0) {
				r = zerr_set(err, -ENOMEM, "out of memory");
				break;
			}
		}
		if (r < 0)
			break;
	}
	free_triggers(t, nt);
	buf_puts(&ids, "}");
	if (r == 0 && (!items || ids.failed))
		r = zerr_set(err, -ENOMEM, "out of memory");
	if (r < 0)
		return r;

	uint64_t queued = 0;
	if (json_array_size(items) > 0) {
		_cleanup_free_ char *text = json_dumps(items, JSON_COMPACT);
		if (!text)
			return zerr_set(err, -ENOMEM, "out of memory");
		PGconn *cp = db_acquire(c->app->pool);
		if (!cp)
			return zerr_set(err, -EAGAIN, "no control-plane connection");
		const char *qp[] = {text};
		_cleanup_pgresult_ PGresult *q = NULL;
		r = db_exec_params(cp, "SELECT zmesh_enqueue_batch($1::jsonb)", 1, qp, &q, err);
		db_release(c->app->pool, cp);
		if (r < 0)
			return r;
		queued = strtoull(PQgetvalue(q, 0, 0), NULL, 10);
	}
	/* Queued (committed) first, then gone from the outbox: a failure in
	 * between delivers these rows again. */
	const char *dp[] = {ids.data};
	r = db_exec_params(d->c, "DELETE FROM zmesh_cdc.outbox WHERE id = ANY($1::bigint[])", 1, dp, NULL, err);
	atomic_fetch_add(&c->app->metrics.events.cdc_captured, (uint64_t)n);
	atomic_fetch_add(&c->app->metrics.events.filtered, filtered);
	if (queued) {
		atomic_fetch_add(&c->app->metrics.events.cdc_enqueued, queued);
		atomic_fetch_add(&c->app->metrics.events.enqueued, queued);
		jobs_wake(c->app->jobs);
	}
	return r < 0 ? r : 1;
}

static void drain(struct cdc *c, struct cdc_db *d)
{
	d->dirty = false;
	for (int round = 0; round < CDC_DRAIN_ROUNDS; round++) {
		struct zerr err = {0};
		int r = drain_step(c, d, &err);
		if (r == 0)
			return;
		if (r < 0) {
			zlog(ZLOG_WARN, "cdc_drain_failed", "database", d->name, "error", err.msg, NULL);
			/* A broken connection loses the lead; anything else is
			 * tried again at the next poll. */
			if (PQstatus(d->c) != CONNECTION_OK)
				drop_lead(d, now_ms() + CDC_RETRY_MS);
			return;
		}
	}
	d->dirty = true; /* more than a turn's worth: the others first */
}

static void *cdc_main(void *arg)
{
	struct cdc *c = arg;
	uint64_t poll_at = now_ms() + CDC_POLL_MS;
	while (!atomic_load(&c->stopping)) {
		uint64_t now = now_ms();
		if (now >= c->refresh_at) {
			refresh(c);
			c->refresh_at = now + CDC_RETRY_MS;
		}
		for (int i = 0; i < c->n; i++)
			if (!c->dbs[i].c && now >= c->dbs[i].retry_at)
				try_lead(c, &c->dbs[i], now);

		struct pollfd pfd[CDC_MAX_DBS + 1];
		int map[CDC_MAX_DBS + 1];
		int np = 0;
		pfd[np] = (struct pollfd){.fd = c->wake_fd, .events = POLLIN};
		map[np++] = -1;
		bool busy = false;
		for (int i = 0; i < c->n; i++) {
			if (!c->dbs[i].c)
				continue;
			busy |= c->dbs[i].dirty;
			pfd[np] = (struct pollfd){.fd = PQsocket(c->dbs[i].c), .events = POLLIN};
			map[np++] = i;
		}
		uint64_t until = poll_at < c->refresh_at ? poll_at : c->refresh_at;
		int timeout = busy ? 0 : until > now ? (int)(until - now) : 0;
		int k = poll(pfd, (nfds_t)np, timeout);
		if (k < 0 && errno != EINTR)
			break;
		if (k > 0 && (pfd[0].revents & POLLIN)) {
			uint64_t v;
			ssize_t rd = read(c->wake_fd, &v, sizeof(v));
			(void)rd;
			c->refresh_at = 0;
		}
		for (int j = 1; k > 0 && j < np; j++) {
			struct cdc_db *d = &c->dbs[map[j]];
			if (!pfd[j].revents)
				continue;
			if (!PQconsumeInput(d->c)) {
				zlog(ZLOG_WARN, "cdc_connection_lost", "database", d->name, NULL);
				drop_lead(d, now_ms() + CDC_RETRY_MS);
				continue;
			}
			PGnotify *nt;
			while ((nt = PQnotifies(d->c)) != NULL) {
				d->dirty = true;
				PQfreemem(nt);
			}
		}
		now = now_ms();
		if (now >= poll_at) {
			for (int i = 0; i < c->n; i++)
				c->dbs[i].dirty |= c->dbs[i].c != NULL;
			poll_at = now + CDC_POLL_MS;
		}
		for (int i = 0; i < c->n && !atomic_load(&c->stopping); i++)
			if (c->dbs[i].c && c->dbs[i].dirty)
				drain(c, &c->dbs[i]);
	}
	return NULL;
}

int cdc_start(struct app *app, const char *conninfo, struct cdc **ret, struct zerr *err)
{
	struct cdc *c = calloc(1, sizeof(*c));
	if (!c)
		return zerr_set(err, -ENOMEM, "out of memory");
	c->app = app;
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wake_fd < 0 || !(c->conninfo = strdup(conninfo))) {
		int e = c->wake_fd < 0 ? errno : ENOMEM;
		if (c->wake_fd >= 0)
			close(c->wake_fd);
		free(c);
		return zerr_set(err, -e, "cdc: %s", strerror(e));
	}
	int r = pthread_create(&c->thread, NULL, cdc_main, c);
	if (r != 0) {
		close(c->wake_fd);
		free(c->conninfo);
		free(c);
		return zerr_set(err, -r, "start the cdc dispatcher: %s", strerror(r));
	}
	*ret = c;
	return 0;
}

void cdc_wake(struct cdc *c)
{
	if (!c)
		return;
	uint64_t one = 1;
	ssize_t w = write(c->wake_fd, &one, sizeof(one));
	(void)w;
}

void cdc_stop(struct cdc *c)
{
	if (!c)
		return;
	atomic_store(&c->stopping, true);
	cdc_wake(c);
	pthread_join(c->thread, NULL);
	for (int i = 0; i < c->n; i++)
		drop_lead(&c->dbs[i], 0);
	close(c->wake_fd);
	explicit_bzero(c->conninfo, strlen(c->conninfo));
	free(c->conninfo);
	free(c);
}
