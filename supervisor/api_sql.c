/* api_sql.c - POST /projects/{pid}/sql {sql, params?}: a member runs SQL in
 * the project's own database, as the project's role (projsql.h), to create
 * the tables its functions use and to look at their rows.
 *
 * Any member of the project may (like the functions routes): members
 * already run arbitrary SQL as that role through their functions. The
 * control-plane connection is given back before the project's session is
 * opened; nothing of the control plane is reachable from that session. The
 * log line names the request, the project, the command tags and the
 * duration, never the SQL or its parameters: they may hold data. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "projsql.h"
#include "util.h"
#include "validate_sql.h"

static void val_sql_donep(struct val_sql *v)
{
	val_sql_done(v);
}

static int run_sql(struct http_request *req, struct app *app, json_t **ret_detail, struct zerr *err)
{
	_cleanup_call_ struct call k;
	_cleanup_json_ json_t *body = NULL;
	int r = api_begin_body(req, app, STORE_PROJECT, &k, &body, err);
	if (r < 0)
		return r;
	_cleanup_(val_sql_donep) struct val_sql in = {0};
	r = val_sql_body(body, &in, err);
	if (r < 0)
		return r;
	if (!app->pg_socket_dir[0])
		return ze(err, ZE_UNAVAILABLE, "this node reaches no project database (no socket directory is set)");
	/* The project as looked up; the control plane is not needed again. */
	struct project p = k.p;
	call_drop_conn(&k);

	struct projsql_target t = {
	    .socket_dir = app->pg_socket_dir, .role = p.db_role, .dbname = p.db_name, .password = p.db_password};
	struct projsql_query q = {.sql = in.sql,
	                          .extended = in.has_params,
	                          .n_params = in.n_params,
	                          .params = (const char *const *)in.params};
	uint64_t t0 = util_now_ns();
	_cleanup_json_ json_t *out = NULL;
	_cleanup_free_ char *commands = NULL;
	r = projsql_run(&t, &q, &out, &commands, ret_detail, err);
	explicit_bzero(p.db_password, sizeof(p.db_password));
	char ms[32];
	snprintf(ms, sizeof(ms), "%.1f", (double)(util_now_ns() - t0) / 1e6);
	if (r == -ECONNREFUSED) {
		/* libpq's reason names paths of the host: the operator's. */
		zlog(ZLOG_WARN, "project_sql_unavailable", "request_id", http_request_id(req), "project", p.id, "error",
		     err->msg, NULL);
		return ze(err, ZE_UNAVAILABLE, "cannot open a session on the project's database; retry shortly");
	}
	zlog(ZLOG_INFO, "project_sql", "request_id", http_request_id(req), "project", p.id, "commands",
	     r == 0 ? commands : NULL, "outcome",
	     r == 0               ? "ok"
	     : r == -ZE_SQL_ERROR ? "sql_error"
	                          : "failed",
	     "duration_ms", ms, NULL);
	if (r < 0)
		return r;
	return api_ok(req, TAKE_PTR(out));
}

void h_project_sql(struct http_request *req, void *app)
{
	struct zerr err = {0};
	json_t *detail = NULL;
	int r = run_sql(req, app, &detail, &err);
	if (r < 0)
		errors_reply_detail(req, r, &err, detail);
	json_decref(detail);
}
