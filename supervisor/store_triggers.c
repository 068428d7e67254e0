/* store_triggers.c - see store_triggers.h */
#define _GNU_SOURCE
#include "store_triggers.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "store_impl.h"
#include "store_jobs.h"

#define NO_TRIGGER  "no such trigger"
#define NO_FUNCTION "function_id: no such function in this project"

/* The API's JSON of trigger t with its function f (alias names). jsonb, so
 * that a webhook's url can be added without a null url on the others. */
static const char trigger_json[] =
    "(jsonb_build_object('id', t.id, 'project_id', t.project_id, 'function_id', t.function_id, 'function', "
    "f.slug, 'event_type', t.event_type, 'config', t.config, 'conditions', t.conditions, 'enabled', t.enabled, "
    "'created_at', t.created_at, 'updated_at', t.updated_at) || CASE WHEN t.event_type = 'webhook' THEN "
    "jsonb_build_object('url', '/webhooks/' || t.id) ELSE '{}'::jsonb END)";

static int exec(PGconn *c, const char *sql, int n, const char *const *p, struct zerr *err)
{
	return db_exec_params(c, sql, n, p, NULL, err);
}

static char *dump(json_t *j)
{
	return j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

/* The config and conditions of in as JSON text (NULL where absent). */
static int dump_in(const struct store_trigger_in *in, char **ret_config, char **ret_conds, struct zerr *err)
{
	*ret_config = dump(in->config);
	*ret_conds = dump(in->conditions);
	if ((in->config && !*ret_config) || (in->conditions && !*ret_conds)) {
		free(*ret_config);
		free(*ret_conds);
		*ret_config = *ret_conds = NULL;
		return zerr_set(err, -ENOMEM, "out of memory");
	}
	return 0;
}

static const char *enabled_param(int enabled)
{
	return enabled < 0 ? NULL : enabled ? "t" : "f";
}

int store_triggers_list(PGconn *c, const char *project_id, json_t **ret, struct zerr *err)
{
	char sql[1536];
	snprintf(sql, sizeof(sql),
	         "SELECT jsonb_build_object('triggers', coalesce(jsonb_agg(%s ORDER BY t.created_at DESC, t.id DESC), "
	         "'[]')) FROM triggers t JOIN functions f ON f.id = t.function_id WHERE t.project_id = $1",
	         trigger_json);
	const char *prm[] = {project_id};
	return store_q_json_one(c, sql, 1, prm, ret, NO_TRIGGER, err);
}

int store_trigger_get(PGconn *c, const char *project_id, const char *trigger_id, json_t **ret, struct zerr *err)
{
	if (!val_is_uuid(trigger_id))
		return ze(err, ZE_NOT_FOUND, NO_TRIGGER);
	char sql[1536];
	snprintf(sql, sizeof(sql),
	         "SELECT %s FROM triggers t JOIN functions f ON f.id = t.function_id "
	         "WHERE t.project_id = $1 AND t.id = $2::uuid",
	         trigger_json);
	const char *prm[] = {project_id, trigger_id};
	return store_q_json_one(c, sql, 2, prm, ret, NO_TRIGGER, err);
}

void store_trigger_state_done(struct store_trigger_state *s)
{
	json_decref(s->config);
	free(s->secret);
	s->config = NULL;
	s->secret = NULL;
}

int store_trigger_state(PGconn *c, const char *project_id, const char *trigger_id, struct store_trigger_state *ret,
                        struct zerr *err)
{
	if (!val_is_uuid(trigger_id))
		return ze(err, ZE_NOT_FOUND, NO_TRIGGER);
	const char *prm[] = {project_id, trigger_id};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c,
	                       "SELECT id, event_type, config, secret FROM triggers "
	                       "WHERE project_id = $1 AND id = $2::uuid",
	                       2, prm, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return ze(err, ZE_NOT_FOUND, NO_TRIGGER);
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->id, sizeof(ret->id), "%s", PQgetvalue(res, 0, 0));
	snprintf(ret->event_type, sizeof(ret->event_type), "%s", PQgetvalue(res, 0, 1));
	ret->config = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
	ret->secret = PQgetisnull(res, 0, 3) ? NULL : strdup(PQgetvalue(res, 0, 3));
	if (!ret->config || (!PQgetisnull(res, 0, 3) && !ret->secret)) {
		store_trigger_state_done(ret);
		return zerr_set(err, -ENOMEM, "out of memory reading a trigger");
	}
	return 0;
}

/* The id of function ref (id or slug) of project_id. */
static int resolve_function(PGconn *c, const char *project_id, const char *ref, char ret_id[STORE_ID_LEN + 1],
                            struct zerr *err)
{
	const char *prm[] = {project_id, ref};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c,
	                       val_is_uuid(ref) ? "SELECT id FROM functions WHERE project_id = $1 AND id = $2::uuid"
	                                        : "SELECT id FROM functions WHERE project_id = $1 AND slug = $2",
	                       2, prm, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return ze(err, ZE_INVALID_TRIGGER, NO_FUNCTION);
	snprintf(ret_id, STORE_ID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
	return 0;
}

/* Why create inserted nothing: no such function, or the project is full. */
static int create_refused(PGconn *c, const char *project_id, const char *ref, struct zerr *err)
{
	char fid[STORE_ID_LEN + 1];
	int r = resolve_function(c, project_id, ref, fid, err);
	if (r < 0)
		return r;
	return ze(err, ZE_PROJECT_LIMIT, "a project has at most %d triggers", STORE_TRIGGERS_MAX);
}

int store_trigger_create(PGconn *c, const char *project_id, const struct store_trigger_in *in, json_t **ret,
                         struct zerr *err)
{
	_cleanup_free_ char *config = NULL, *conds = NULL;
	int r = dump_in(in, &config, &conds, err);
	if (r < 0)
		return r;
	char sql[2048], max[16];
	snprintf(max, sizeof(max), "%d", STORE_TRIGGERS_MAX);
	/* The count and the insert are one statement: concurrent creates may
	 * pass the bound by a few, never by many. */
	snprintf(sql, sizeof(sql),
	         "WITH f AS (SELECT id, slug FROM functions WHERE project_id = $1 AND %s), "
	         "t AS (INSERT INTO triggers (project_id, function_id, event_type, config, conditions, enabled, "
	         "secret) SELECT $1, f.id, $3, $4::jsonb, coalesce($5::jsonb, '[]'), coalesce($6::boolean, true), $7 "
	         "FROM f WHERE (SELECT count(*) FROM triggers WHERE project_id = $1) < $8::int RETURNING *) "
	         "SELECT %s FROM t JOIN f ON f.id = t.function_id",
	         val_is_uuid(in->function_ref) ? "id = $2::uuid" : "slug = $2", trigger_json);
	const char *prm[] = {project_id, in->function_ref,           in->event_type, config,
	                     conds,      enabled_param(in->enabled), in->secret,     max};
	r = store_q_json(c, sql, 8, prm, ret, err);
	if (r == -ENOENT) /* the function went away meanwhile */
		return ze(err, ZE_INVALID_TRIGGER, NO_FUNCTION);
	if (r == 0 && !*ret)
		return create_refused(c, project_id, in->function_ref, err);
	return r;
}

int store_trigger_update(PGconn *c, const char *project_id, const char *trigger_id, const struct store_trigger_in *in,
                         json_t **ret, struct zerr *err)
{
	if (!val_is_uuid(trigger_id))
		return ze(err, ZE_NOT_FOUND, NO_TRIGGER);
	char fid[STORE_ID_LEN + 1] = "";
	int r = in->function_ref ? resolve_function(c, project_id, in->function_ref, fid, err) : 0;
	if (r < 0)
		return r;
	_cleanup_free_ char *config = NULL, *conds = NULL;
	r = dump_in(in, &config, &conds, err);
	if (r < 0)
		return r;
	/* A secret set by hand ends any rotation: the old one stops at once. */
	char sql[2048];
	snprintf(sql, sizeof(sql),
	         "WITH t AS (UPDATE triggers SET function_id = coalesce($3::uuid, function_id), "
	         "config = coalesce($4::jsonb, config), conditions = coalesce($5::jsonb, conditions), "
	         "enabled = coalesce($6::boolean, enabled), "
	         "secret = CASE WHEN $7::boolean THEN $8 ELSE secret END, "
	         "previous_secret = CASE WHEN $7::boolean THEN NULL ELSE previous_secret END, "
	         "previous_secret_until = CASE WHEN $7::boolean THEN NULL ELSE previous_secret_until END "
	         "WHERE project_id = $1 AND id = $2::uuid RETURNING *) "
	         "SELECT %s FROM t JOIN functions f ON f.id = t.function_id",
	         trigger_json);
	const char *prm[] = {project_id,
	                     trigger_id,
	                     fid[0] ? fid : NULL,
	                     config,
	                     conds,
	                     enabled_param(in->enabled),
	                     in->set_secret ? "t" : "f",
	                     in->secret};
	r = store_q_json_one(c, sql, 8, prm, ret, NO_TRIGGER, err);
	return r == -ENOENT ? ze(err, ZE_INVALID_TRIGGER, NO_FUNCTION) : r;
}

int store_trigger_delete(PGconn *c, const char *project_id, const char *trigger_id, struct zerr *err)
{
	if (!val_is_uuid(trigger_id))
		return ze(err, ZE_NOT_FOUND, NO_TRIGGER);
	const char *prm[] = {project_id, trigger_id};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c, "DELETE FROM triggers WHERE project_id = $1 AND id = $2::uuid RETURNING id", 2, prm,
	                       &res, err);
	if (r == 0 && PQntuples(res) != 1)
		return ze(err, ZE_NOT_FOUND, NO_TRIGGER);
	return r;
}

int store_trigger_rotate_secret(PGconn *c, const char *project_id, const char *trigger_id, const char *secret,
                                json_t **ret, struct zerr *err)
{
	if (!val_is_uuid(trigger_id))
		return ze(err, ZE_NOT_FOUND, NO_TRIGGER);
	const char *prm[] = {project_id, trigger_id, secret};
	int r = store_q_json(c,
	                     "UPDATE triggers SET previous_secret = secret, previous_secret_until = now() + interval "
	                     "'24 hours', secret = $3 WHERE project_id = $1 AND id = $2::uuid AND secret IS NOT NULL "
	                     "RETURNING json_build_object('id', id, 'secret', secret, 'previous_secret_expires_at', "
	                     "previous_secret_until)",
	                     3, prm, ret, err);
	if (r == 0 && !*ret)
		return ze(err, ZE_INVALID_TRIGGER, "config.verify: this trigger has no secret to rotate");
	return r;
}

/* ---- webhooks ------------------------------------------------------------------ */

void store_webhook_done(struct store_webhook *w)
{
	json_decref(w->config);
	json_decref(w->conditions);
	free(w->secret);
	free(w->previous_secret);
	store_function_done(&w->f);
	w->config = w->conditions = NULL;
	w->secret = w->previous_secret = NULL;
}

static int opt_strdup(PGresult *res, int col, char **ret)
{
	*ret = NULL;
	if (PQgetisnull(res, 0, col))
		return 0;
	*ret = strdup(PQgetvalue(res, 0, col));
	return *ret ? 0 : -ENOMEM;
}

int store_webhook_lookup(PGconn *c, const char *trigger_id, struct store_webhook *ret, struct zerr *err)
{
	if (!val_is_uuid(trigger_id))
		return ze(err, ZE_NOT_FOUND, NO_TRIGGER);
	char sql[1536];
	snprintf(sql, sizeof(sql),
	         "SELECT t.id, t.config, t.conditions, t.secret, "
	         "CASE WHEN t.previous_secret_until > now() THEN t.previous_secret END, %s, %s "
	         "FROM triggers t JOIN projects p ON p.id = t.project_id JOIN functions f ON f.id = t.function_id "
	         "WHERE t.id = $1::uuid AND t.enabled AND t.event_type = 'webhook'",
	         store_project_cols, store_function_cols);
	const char *prm[] = {trigger_id};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_prepared(c, sql, 1, prm, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return ze(err, ZE_NOT_FOUND, NO_TRIGGER);
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->id, sizeof(ret->id), "%s", PQgetvalue(res, 0, 0));
	ret->config = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
	ret->conditions = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
	store_project_from_row(res, 0, 5, &ret->p);
	r = store_function_from_row(res, 0, 5 + STORE_PROJECT_NCOLS, &ret->f, err);
	if (r == 0 && (!ret->config || !ret->conditions || opt_strdup(res, 3, &ret->secret) < 0 ||
	               opt_strdup(res, 4, &ret->previous_secret) < 0))
		r = zerr_set(err, -ENOMEM, "out of memory reading a webhook");
	if (r < 0)
		store_webhook_done(ret);
	return r;
}

/* Insert the delivery (or replace one older than 24 h) with invocation_id
 * (NULL: set later in the transaction). *ret_claimed false: a delivery of
 * this id is recorded and fresh; *ret_id is then its invocation id. */
static int claim(PGconn *c, const char *trigger_id, const char *delivery_id, const char *invocation_id,
                 bool *ret_claimed, char ret_id[STORE_ID_LEN + 1], struct zerr *err)
{
	const char *prm[] = {trigger_id, delivery_id, invocation_id};
	_cleanup_pgresult_ PGresult *res = NULL;
	/* A concurrent insert of the same id makes this statement wait for
	 * that transaction's end, then see its row: one of them wins. */
	int r = db_exec_prepared(c,
	                         "INSERT INTO webhook_deliveries (trigger_id, delivery_id, invocation_id) "
	                         "VALUES ($1::uuid, $2, $3::uuid) ON CONFLICT (trigger_id, delivery_id) DO UPDATE "
	                         "SET invocation_id = EXCLUDED.invocation_id, created_at = now() "
	                         "WHERE webhook_deliveries.created_at < now() - interval '24 hours' RETURNING true",
	                         3, prm, &res, err);
	if (r < 0)
		return r;
	*ret_claimed = PQntuples(res) == 1;
	ret_id[0] = '\0';
	if (*ret_claimed)
		return 0;
	PQclear(TAKE_PTR(res));
	r = db_exec_prepared(c,
	                     "SELECT invocation_id FROM webhook_deliveries WHERE trigger_id = $1::uuid AND "
	                     "delivery_id = $2",
	                     2, prm, &res, err);
	if (r == 0 && PQntuples(res) == 1)
		snprintf(ret_id, STORE_ID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
	return r;
}

static void rollback(PGconn *c)
{
	struct zerr e = {0};
	exec(c, "ROLLBACK", 0, NULL, &e);
}

/* In the open transaction: queue the event, and note its invocation on the
 * delivery claimed. */
static int enqueue_claimed(PGconn *c, const char *trigger_id, const char *delivery_id, const char *function_id,
                           json_t *event, char ret_id[STORE_ID_LEN + 1], struct zerr *err)
{
	struct job_event e = {
	    .function_id = function_id, .event = event, .trigger = "webhook", .trigger_id = trigger_id};
	int r = store_job_enqueue(c, &e, ret_id, err);
	if (r < 0 || !delivery_id)
		return r;
	const char *prm[] = {trigger_id, delivery_id, ret_id};
	return db_exec_prepared(c,
	                        "UPDATE webhook_deliveries SET invocation_id = $3::uuid WHERE trigger_id = $1::uuid "
	                        "AND delivery_id = $2",
	                        3, prm, NULL, err);
}

int store_webhook_enqueue(PGconn *c, const char *trigger_id, const char *delivery_id, const char *function_id,
                          json_t *event, char ret_id[STORE_ID_LEN + 1], bool *ret_replayed, struct zerr *err)
{
	*ret_replayed = false;
	if (!delivery_id) {
		struct job_event e = {
		    .function_id = function_id, .event = event, .trigger = "webhook", .trigger_id = trigger_id};
		return store_job_enqueue(c, &e, ret_id, err);
	}
	bool claimed = false;
	int r = exec(c, "BEGIN", 0, NULL, err);
	if (r == 0)
		r = claim(c, trigger_id, delivery_id, NULL, &claimed, ret_id, err);
	if (r == 0 && claimed)
		r = enqueue_claimed(c, trigger_id, delivery_id, function_id, event, ret_id, err);
	if (r == 0)
		r = exec(c, "COMMIT", 0, NULL, err);
	if (r < 0) {
		rollback(c);
		return r;
	}
	*ret_replayed = !claimed;
	return 0;
}

int store_webhook_claim(PGconn *c, const char *trigger_id, const char *delivery_id, const char *invocation_id,
                        char ret_id[STORE_ID_LEN + 1], bool *ret_replayed, struct zerr *err)
{
	bool claimed = false;
	int r = claim(c, trigger_id, delivery_id, invocation_id, &claimed, ret_id, err);
	if (r < 0)
		return r;
	*ret_replayed = !claimed;
	if (claimed)
		snprintf(ret_id, STORE_ID_LEN + 1, "%s", invocation_id);
	return 0;
}

int store_webhook_unclaim(PGconn *c, const char *trigger_id, const char *delivery_id, struct zerr *err)
{
	const char *prm[] = {trigger_id, delivery_id};
	return exec(c, "DELETE FROM webhook_deliveries WHERE trigger_id = $1::uuid AND delivery_id = $2", 2, prm, err);
}

/* ---- custom events ------------------------------------------------------------ */

int store_event_triggers(PGconn *c, const char *project_id, const char *event_type, json_t **ret, struct zerr *err)
{
	char max[16];
	snprintf(max, sizeof(max), "%d", STORE_TRIGGERS_MAX);
	const char *prm[] = {project_id, event_type, max};
	int r = store_q_json_prepared(c,
	                              "SELECT coalesce(json_agg(json_build_object('id', t.id, 'conditions', "
	                              "t.conditions) ORDER BY t.created_at, t.id), '[]') FROM (SELECT id, "
	                              "conditions, created_at FROM triggers WHERE project_id = $1 AND event_type = "
	                              "$2 AND enabled ORDER BY created_at, id LIMIT $3::int) t",
	                              3, prm, ret, err);
	if (r == 0 && !*ret)
		return zerr_set(err, -EIO, "no row from the custom event triggers' query");
	return r;
}

int store_event_enqueue(PGconn *c, const char *project_id, const char *event_type, const char *trigger_ids,
                        json_t *event, uint64_t *ret_n, struct zerr *err)
{
	_cleanup_free_ char *ev = dump(event);
	if (!ev)
		return zerr_set(err, -ENOMEM, "cannot encode the event");
	const char *prm[] = {project_id, event_type, ev, trigger_ids};
	_cleanup_pgresult_ PGresult *res = NULL;
	/* A CTE that calls a volatile function is run in full, once. */
	int r = db_exec_prepared(c,
	                         "WITH q AS (SELECT zmesh_enqueue(t.function_id, NULL, $3::jsonb || "
	                         "jsonb_build_object('trigger_id', t.id), 'event', t.id) AS inv FROM triggers t "
	                         "WHERE t.project_id = $1 AND t.event_type = $2 AND t.enabled AND "
	                         "t.id = ANY($4::uuid[])) SELECT count(inv) FROM q",
	                         4, prm, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1 || sscanf(PQgetvalue(res, 0, 0), "%" SCNu64, ret_n) != 1)
		return zerr_set(err, -EIO, "no count from the custom event's enqueue");
	return 0;
}
