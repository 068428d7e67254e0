/* store_jobs.c - see store_jobs.h */
#define _GNU_SOURCE
#include "store_jobs.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "invoke.h"
#include "store_impl.h"

int store_job_enqueue(PGconn *c, const struct job_event *e, char ret_id[STORE_ID_LEN + 1], struct zerr *err)
{
	_cleanup_free_ char *event = json_dumps(e->event ? e->event : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
	if (!event)
		return zerr_set(err, -ENOMEM, "cannot encode the event");
	char version[24], delay[24];
	snprintf(version, sizeof(version), "%" PRId64, e->version);
	snprintf(delay, sizeof(delay), "%" PRId64, e->delay_ms > 0 ? e->delay_ms : 0);
	const char *prm[] = {e->function_id, e->version > 0 ? version : NULL, event, e->trigger, e->trigger_id, delay};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_prepared(c,
	                         "SELECT zmesh_enqueue($1::uuid, $2::int, $3::jsonb, $4, $5::uuid, "
	                         "now() + $6::bigint * interval '1 millisecond')",
	                         6, prm, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		return ze(err, ZE_NOT_FOUND, "no such function");
	snprintf(ret_id, STORE_ID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
	return 0;
}

int store_job_enqueue_once(PGconn *c, const struct job_event *e, const char *key, char ret_id[STORE_ID_LEN + 1],
                           bool *ret_existing, struct zerr *err)
{
	_cleanup_free_ char *event = json_dumps(e->event ? e->event : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
	if (!event)
		return zerr_set(err, -ENOMEM, "cannot encode the event");
	char version[24], fresh[STORE_ID_LEN + 1];
	snprintf(version, sizeof(version), "%" PRId64, e->version);
	inv_uuid(fresh);
	/* The key's row is taken (or found fresh) by the insert; only the
	 * statement that took it queues the job. A key older than a day is
	 * taken over. */
	const char *prm[] = {e->function_id, key, event, e->version > 0 ? version : NULL, fresh, e->trigger};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_prepared(
	    c,
	    "WITH k AS (INSERT INTO idempotency_keys AS k (function_id, key, payload_sha256, invocation_id) "
	    "VALUES ($1::uuid, $2, encode(sha256(convert_to($3::jsonb::text, 'UTF8')), 'hex'), $5::uuid) "
	    "ON CONFLICT (function_id, key) DO UPDATE SET payload_sha256 = EXCLUDED.payload_sha256, "
	    "invocation_id = EXCLUDED.invocation_id, created_at = now() "
	    "WHERE k.created_at < now() - interval '24 hours' RETURNING invocation_id) "
	    "SELECT zmesh_enqueue($1::uuid, $4::int, $3::jsonb, $6, NULL, now(), k.invocation_id) FROM k",
	    6, prm, &res, err);
	if (r < 0)
		return r == -ENOENT ? ze(err, ZE_NOT_FOUND, "no such function") : r;
	if (PQntuples(res) == 1) {
		if (PQgetisnull(res, 0, 0))
			return ze(err, ZE_NOT_FOUND, "no such function");
		snprintf(ret_id, STORE_ID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
		*ret_existing = false;
		return 0;
	}
	/* Seen within the day: the first one's answer, if the payload is the
	 * same. A statement of its own, so that it sees a concurrent first
	 * request's commit. */
	PQclear(res);
	res = NULL;
	const char *prm2[] = {e->function_id, key, event};
	r = db_exec_prepared(c,
	                     "SELECT invocation_id, payload_sha256 = encode(sha256(convert_to($3::jsonb::text, "
	                     "'UTF8')), 'hex') FROM idempotency_keys WHERE function_id = $1::uuid AND key = $2",
	                     3, prm2, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1)
		return zerr_set(err, -EAGAIN, "idempotency key %s vanished; retry", key);
	if (strcmp(PQgetvalue(res, 0, 1), "t") != 0)
		return ze(err, ZE_IDEMPOTENCY_KEY_REUSED,
		          "this Idempotency-Key was used within 24 h with another payload");
	snprintf(ret_id, STORE_ID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
	*ret_existing = true;
	return 0;
}

/* ---- workers ---- */

void store_job_done(struct job *j)
{
	json_decref(j->event);
	j->event = NULL;
	store_function_done(&j->f);
}

/* The columns store_job_claim reads after the project's. */
enum {
	JC_ID,
	JC_INVOCATION,
	JC_FIRST,
	JC_TRIGGER,
	JC_TRIGGER_ID,
	JC_ATTEMPT,
	JC_LAPSES,
	JC_TOOK_OVER,
	JC_AGE,
	JC_EVENT,
	JC_RETRIES,
	JC_MAX_AGE,
	JC_PROJECT,
	JC_FUNCTION = JC_PROJECT + STORE_PROJECT_NCOLS,
};

int store_job_claim(PGconn *c, const char *node, uint64_t lease_ms, struct job *ret, bool *ret_found, struct zerr *err)
{
	char lease[24];
	snprintf(lease, sizeof(lease), "%" PRIu64, lease_ms);
	char sql[4096];
	/* run_after moves with the lease: a held job is not due, a job whose
	 * lease lapsed is, and one index serves both. A job with an order key
	 * waits while an earlier one of its key is queued or running. The function is read
	 * as it was at the job's version (function_versions keeps earlier
	 * states; the current one is in functions). */
	snprintf(sql, sizeof(sql),
	         "WITH j AS (SELECT id, lease_owner, run_after FROM jobs WHERE run_after <= now() "
	         "AND (order_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs o WHERE o.order_key = jobs.order_key "
	         "AND o.seq < jobs.seq)) ORDER BY run_after LIMIT 1 FOR UPDATE SKIP LOCKED), "
	         "u AS (UPDATE jobs SET lease_owner = $1, lease_until = now() + $2::bigint * interval '1 ms', "
	         "run_after = now() + $2::bigint * interval '1 ms', "
	         "lapses = jobs.lapses + (j.lease_owner IS NOT NULL)::int "
	         "FROM j WHERE jobs.id = j.id RETURNING jobs.*, j.lease_owner IS NOT NULL AS took_over, j.run_after AS "
	         "due), "
	         "r AS (UPDATE invocations i SET status = 'running', started_at = now(), "
	         "queue_ms = greatest(extract(epoch FROM clock_timestamp() - u.due) * 1000, 0) FROM u "
	         "WHERE i.id = u.invocation_id) "
	         "SELECT u.id, u.invocation_id, u.first_invocation_id, u.trigger, coalesce(u.trigger_id::text, ''), "
	         "u.attempt, u.lapses, u.took_over, extract(epoch FROM now() - u.created_at), u.event, "
	         "coalesce(f.retries, 0), coalesce(f.max_event_age_s, 60), %s, "
	         "f.id, f.name, f.slug, coalesce(v.language, f.language), coalesce(v.entry_point, f.entry_point), "
	         "coalesce(v.timeout_ms, f.timeout_ms), coalesce(v.memory_mb, f.memory_mb), u.version, "
	         "f.status = 'active', coalesce(v.uses_db, f.uses_db), coalesce(v.code, f.code), "
	         "coalesce(v.env, f.env) "
	         "FROM u JOIN projects p ON p.id = u.project_id LEFT JOIN functions f ON f.id = u.function_id "
	         "LEFT JOIN function_versions v ON v.function_id = u.function_id AND v.version = u.version "
	         "AND u.version <> f.version",
	         store_project_cols);
	const char *prm[] = {node, lease};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_prepared(c, sql, 2, prm, &res, err);
	if (r < 0)
		return r;
	*ret_found = PQntuples(res) == 1;
	if (!*ret_found)
		return 0;
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->id, sizeof(ret->id), "%s", PQgetvalue(res, 0, JC_ID));
	snprintf(ret->invocation_id, sizeof(ret->invocation_id), "%s", PQgetvalue(res, 0, JC_INVOCATION));
	snprintf(ret->first_invocation_id, sizeof(ret->first_invocation_id), "%s", PQgetvalue(res, 0, JC_FIRST));
	snprintf(ret->trigger, sizeof(ret->trigger), "%s", PQgetvalue(res, 0, JC_TRIGGER));
	snprintf(ret->trigger_id, sizeof(ret->trigger_id), "%s", PQgetvalue(res, 0, JC_TRIGGER_ID));
	ret->attempt = (unsigned)strtoul(PQgetvalue(res, 0, JC_ATTEMPT), NULL, 10);
	ret->lapses = (unsigned)strtoul(PQgetvalue(res, 0, JC_LAPSES), NULL, 10);
	ret->took_over = strcmp(PQgetvalue(res, 0, JC_TOOK_OVER), "t") == 0;
	ret->age_s = strtod(PQgetvalue(res, 0, JC_AGE), NULL);
	ret->retries = strtoll(PQgetvalue(res, 0, JC_RETRIES), NULL, 10);
	ret->max_event_age_s = strtoll(PQgetvalue(res, 0, JC_MAX_AGE), NULL, 10);
	store_project_from_row(res, 0, JC_PROJECT, &ret->p);
	ret->event = json_loads(PQgetvalue(res, 0, JC_EVENT), JSON_DECODE_ANY, NULL);
	if (!ret->event)
		return zerr_set(err, -EIO, "job %s: bad event JSON from the database", ret->id);
	ret->function_gone = PQgetisnull(res, 0, JC_FUNCTION);
	if (ret->function_gone)
		return 0;
	r = store_function_from_row(res, 0, JC_FUNCTION, &ret->f, err);
	if (r < 0)
		store_job_done(ret);
	return r;
}

int store_jobs_renew(PGconn *c, const char *node, const char *ids, uint64_t lease_ms, struct zerr *err)
{
	char lease[24];
	snprintf(lease, sizeof(lease), "%" PRIu64, lease_ms);
	const char *prm[] = {node, ids, lease};
	return db_exec_prepared(c,
	                        "UPDATE jobs SET lease_until = now() + $3::bigint * interval '1 ms', "
	                        "run_after = now() + $3::bigint * interval '1 ms' "
	                        "WHERE id = ANY($2::uuid[]) AND lease_owner = $1",
	                        3, prm, NULL, err);
}

/* The job, while node holds it, and the attempt's record written from
 * $3 (the statements below share these two). */
#define JOB_HELD "j AS (SELECT * FROM jobs WHERE id = $1::uuid AND lease_owner = $2 FOR UPDATE)"
#define RECORD_SET(status)                                                                                             \
	"rec AS (UPDATE invocations i SET start = x.start, status = " status ", "                                      \
	"started_at = to_timestamp(x.started_at_ms / 1000.0), duration_ms = x.duration_ms, cpu_ms = x.cpu_ms, "        \
	"memory_bytes = x.memory_bytes, result_excerpt = x.result_excerpt, logs = x.logs, "                            \
	"logs_truncated = coalesce(x.logs_truncated, false), error = x.error, "                                        \
	"egress_requests = coalesce(x.egress_requests, 0), egress_bytes = coalesce(x.egress_bytes, 0), "               \
	"egress_refused = coalesce(x.egress_refused, 0) "                                                              \
	"FROM json_to_record($3::json) AS x(id uuid, start text, status text, started_at_ms double precision, "        \
	"duration_ms double precision, cpu_ms double precision, memory_bytes bigint, result_excerpt text, logs text, " \
	"logs_truncated boolean, error jsonb, egress_requests int, egress_bytes bigint, egress_refused int), j "       \
	"WHERE i.id = x.id AND i.id = j.invocation_id)"

static int owned_count(PGresult *res, bool *ret_owned)
{
	*ret_owned = PQntuples(res) >= 1 && strcmp(PQgetvalue(res, 0, 0), "0") != 0;
	return 0;
}

int store_job_finish(PGconn *c, const char *node, const struct job *j, const char *record, bool *ret_owned,
                     struct zerr *err)
{
	const char *prm[] = {j->id, node, record};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_prepared(c,
	                         "WITH " JOB_HELD ", " RECORD_SET(
	                             "x.status") ", "
	                                         "d AS (DELETE FROM jobs USING j WHERE jobs.id = j.id RETURNING 1) "
	                                         "SELECT count(*) FROM d",
	                         3, prm, &res, err);
	return r < 0 ? r : owned_count(res, ret_owned);
}

int store_job_retry(PGconn *c, const char *node, const struct job *j, const char *record, const char *next_id,
                    uint64_t delay_ms, const char *error, bool *ret_owned, struct zerr *err)
{
	char delay[24];
	snprintf(delay, sizeof(delay), "%" PRIu64, delay_ms);
	const char *prm[] = {j->id, node, record, next_id, delay, error};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_prepared(
	    c,
	    "WITH " JOB_HELD ", " RECORD_SET(
	        "x.status") ", "
	                    "n AS (INSERT INTO invocations (id, function_id, project_id, version, trigger, trigger_id, "
	                    "attempt, "
	                    "status, started_at) SELECT $4::uuid, j.function_id, j.project_id, j.version, j.trigger, "
	                    "j.trigger_id, "
	                    "j.attempt + 1, 'queued', now() FROM j JOIN functions f ON f.id = j.function_id), "
	                    "u AS (UPDATE jobs SET attempt = j.attempt + 1, invocation_id = $4::uuid, lease_owner = "
	                    "NULL, "
	                    "lease_until = NULL, run_after = now() + $5::bigint * interval '1 ms', last_error = "
	                    "$6::jsonb "
	                    "FROM j WHERE jobs.id = j.id RETURNING 1) "
	                    "SELECT count(*) FROM u",
	    6, prm, &res, err);
	return r < 0 ? r : owned_count(res, ret_owned);
}

int store_job_dead(PGconn *c, const char *node, const struct job *j, const char *record, const char *error,
                   bool *ret_owned, char ret_on_failure[STORE_ID_LEN + 1], struct zerr *err)
{
	const char *prm[] = {j->id, node, record, error};
	_cleanup_pgresult_ PGresult *res = NULL;
	/* The current attempt's record takes its outcome, or "dead" when it
	 * is also the first attempt's (one row is updated once). */
	int r = db_exec_prepared(c,
	                         "WITH " JOB_HELD
	                         ", " RECORD_SET("CASE WHEN i.id = j.first_invocation_id THEN 'dead' ELSE x.status "
	                                         "END") ", "
	                                                "first AS (UPDATE invocations i SET status = 'dead' FROM j "
	                                                "WHERE i.id = j.first_invocation_id "
	                                                "AND j.first_invocation_id <> j.invocation_id), "
	                                                "dl AS (INSERT INTO dead_letters (project_id, function_id, "
	                                                "first_invocation_id, event, trigger, "
	                                                "trigger_id, attempts, last_error, enqueued_at) SELECT "
	                                                "j.project_id, j.function_id, "
	                                                "j.first_invocation_id, j.event, j.trigger, j.trigger_id, "
	                                                "j.attempt, $4::jsonb, j.created_at "
	                                                "FROM j JOIN functions f ON f.id = j.function_id), "
	                                                "d AS (DELETE FROM jobs USING j WHERE jobs.id = j.id "
	                                                "RETURNING 1), "
	                                                "o AS (SELECT zmesh_enqueue(t.id, NULL, "
	                                                "jsonb_build_object('trigger', 'dead_letter', "
	                                                "'original_event', "
	                                                "j.event, 'error', $4::jsonb, 'attempts', j.attempt, "
	                                                "'function', f.slug, 'invocation_id', "
	                                                "j.first_invocation_id), 'dead_letter', NULL) AS inv FROM "
	                                                "j JOIN functions f ON f.id = j.function_id "
	                                                "JOIN functions t ON t.project_id = j.project_id AND "
	                                                "t.slug = f.on_failure AND t.id <> f.id "
	                                                "WHERE j.trigger <> 'dead_letter') "
	                                                "SELECT (SELECT count(*) FROM d), (SELECT inv FROM o LIMIT "
	                                                "1)",
	                         4, prm, &res, err);
	if (r < 0)
		return r;
	owned_count(res, ret_owned);
	snprintf(ret_on_failure, STORE_ID_LEN + 1, "%s",
	         PQntuples(res) == 1 && !PQgetisnull(res, 0, 1) ? PQgetvalue(res, 0, 1) : "");
	return 0;
}

int store_job_requeue(PGconn *c, const char *node, const struct job *j, uint64_t delay_ms, struct zerr *err)
{
	char delay[24];
	snprintf(delay, sizeof(delay), "%" PRIu64, delay_ms);
	const char *prm[] = {j->id, node, delay};
	return db_exec_prepared(c,
	                        "WITH " JOB_HELD ", "
	                        "u AS (UPDATE jobs SET lease_owner = NULL, lease_until = NULL, "
	                        "run_after = now() + $3::bigint * interval '1 ms' FROM j WHERE jobs.id = j.id) "
	                        "UPDATE invocations i SET status = 'queued' FROM j WHERE i.id = j.invocation_id",
	                        3, prm, NULL, err);
}

int store_job_drop(PGconn *c, const char *node, const struct job *j, struct zerr *err)
{
	const char *prm[] = {j->id, node};
	return db_exec_prepared(c, "DELETE FROM jobs WHERE id = $1::uuid AND lease_owner = $2", 2, prm, NULL, err);
}

int store_events_prune(PGconn *c, struct zerr *err)
{
	return db_exec_params(
	    c,
	    "WITH a AS (DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(SELECT ctid FROM idempotency_keys "
	    "WHERE created_at < now() - interval '24 hours' LIMIT 5000))) "
	    "DELETE FROM webhook_deliveries WHERE ctid = ANY(ARRAY(SELECT ctid FROM webhook_deliveries "
	    "WHERE created_at < now() - interval '24 hours' LIMIT 5000))",
	    0, NULL, NULL, err);
}

/* ---- dead letters ---- */

int store_dead_letters_list(PGconn *c, const char *project_id, uint64_t limit, json_t **ret, struct zerr *err)
{
	char l[24];
	snprintf(l, sizeof(l), "%" PRIu64, limit);
	const char *prm[] = {project_id, l};
	return store_q_json(
	    c,
	    "SELECT coalesce(json_agg(x), '[]') FROM (SELECT json_build_object('id', d.id, 'invocation_id', "
	    "d.first_invocation_id, 'function_id', d.function_id, 'function', f.slug, 'event', d.event, 'trigger', "
	    "d.trigger, 'trigger_id', d.trigger_id, 'attempts', d.attempts, 'last_error', d.last_error, "
	    "'enqueued_at', d.enqueued_at, 'failed_at', d.failed_at, 'retried_at', d.retried_at, "
	    "'retry_invocation_id', d.retry_invocation_id) x FROM dead_letters d JOIN functions f "
	    "ON f.id = d.function_id WHERE d.project_id = $1::uuid ORDER BY d.failed_at DESC, d.id LIMIT $2::int) s",
	    2, prm, ret, err);
}

int store_dead_letter_retry(PGconn *c, const char *project_id, const char *id, char ret_id[STORE_ID_LEN + 1],
                            struct zerr *err)
{
	if (!val_is_uuid(id))
		return ze(err, ZE_NOT_FOUND, "no such dead letter");
	const char *prm[] = {project_id, id};
	_cleanup_pgresult_ PGresult *res = NULL;
	/* Row-locked, so that two retries at once queue it twice only if
	 * asked twice. */
	int r = db_exec_params(c,
	                       "WITH d AS (SELECT * FROM dead_letters WHERE id = $2::uuid AND project_id = $1::uuid "
	                       "FOR UPDATE), q AS (SELECT d.id, zmesh_enqueue(d.function_id, NULL, d.event, d.trigger, "
	                       "d.trigger_id) AS inv FROM d), "
	                       "u AS (UPDATE dead_letters SET retried_at = now(), retry_invocation_id = q.inv FROM q "
	                       "WHERE dead_letters.id = q.id) SELECT inv FROM q",
	                       2, prm, &res, err);
	if (r < 0)
		return r;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		return ze(err, ZE_NOT_FOUND, "no such dead letter");
	snprintf(ret_id, STORE_ID_LEN + 1, "%s", PQgetvalue(res, 0, 0));
	return 0;
}
