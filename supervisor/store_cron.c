/* store_cron.c - see store_cron.h */
#define _GNU_SOURCE
#include "store_cron.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "store_impl.h"

/* Epoch milliseconds of a timestamptz, rounded down (a tick strictly after
 * it is after the instant itself), and back. */
#define MS_OF(x) "floor(extract(epoch FROM " x ") * 1000)::bigint"
#define TS_OF(p) "('epoch'::timestamptz + " p "::bigint * interval '1 millisecond')"

int store_cron_load(PGconn *c, uint64_t max, json_t **ret, bool *ret_more, struct zerr *err)
{
	char limit[24];
	snprintf(limit, sizeof(limit), "%" PRIu64, max + 1);
	const char *prm[] = {limit};
	json_t *rows = NULL;
	int r = store_q_json(
	    c,
	    "SELECT coalesce(json_agg(json_build_object('id', t.id, 'function_id', t.function_id, "
	    "'config', t.config, 'conditions', t.conditions, 'updated_ms', " MS_OF(
	        "t.updated_at") ", 'last_ms', (SELECT " MS_OF("max(f.scheduled_time)") " FROM cron_fires f WHERE "
	                                                                               "f.trigger_id = t.id)) ORDER BY "
	                                                                               "t.id), '[]') "
	                                                                               "FROM (SELECT * FROM triggers "
	                                                                               "WHERE event_type = 'cron' AND "
	                                                                               "enabled ORDER BY id "
	                                                                               "LIMIT $1::bigint) t",
	    1, prm, &rows, err);
	if (r < 0)
		return r;
	if (!json_is_array(rows)) {
		json_decref(rows);
		return zerr_set(err, -EIO, "cron triggers: not an array");
	}
	*ret_more = json_array_size(rows) > max;
	if (*ret_more)
		json_array_remove(rows, json_array_size(rows) - 1);
	*ret = rows;
	return 0;
}

int store_cron_last_fire(PGconn *c, const char *trigger_id, int64_t *ret_ms, bool *ret_found, struct zerr *err)
{
	const char *prm[] = {trigger_id};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c, "SELECT " MS_OF("max(scheduled_time)") " FROM cron_fires WHERE trigger_id = $1::uuid",
	                       1, prm, &res, err);
	if (r < 0)
		return r;
	*ret_found = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
	if (*ret_found)
		*ret_ms = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	return 0;
}

int store_cron_listen(PGconn *c, struct zerr *err)
{
	return db_exec_params(c, "LISTEN " STORE_CRON_CHANNEL, 0, NULL, NULL, err);
}

static void rollback(PGconn *c)
{
	struct zerr ignored = {0};
	db_exec_params(c, "ROLLBACK", 0, NULL, NULL, &ignored);
}

int store_cron_fire(PGconn *c, const char *trigger_id, int64_t scheduled_ms, bool overlap_skip, bool matched,
                    const char *event_json, enum store_cron_outcome *ret, char ret_invocation_id[STORE_ID_LEN + 1],
                    struct zerr *err)
{
	char when[24];
	snprintf(when, sizeof(when), "%" PRId64, scheduled_ms);
	int r = db_exec_params(c, "BEGIN", 0, NULL, NULL, err);
	if (r < 0)
		return r;
	/* The claim. Whether a job of the trigger is still in the queue is
	 * read here, in the winner's transaction: a job queued by this tick
	 * does not exist yet. */
	const char *claim_prm[] = {trigger_id, when, overlap_skip ? "t" : "f", matched ? "t" : "f"};
	/* Both declared before the first goto: fail: is within their scope. */
	_cleanup_pgresult_ PGresult *claim = NULL, *enq = NULL;
	r = db_exec_prepared(
	    c,
	    "INSERT INTO cron_fires (trigger_id, scheduled_time, skipped) "
	    "SELECT t.id, " TS_OF("$2") ", CASE "
	                                "WHEN $3::boolean AND EXISTS (SELECT 1 FROM jobs j WHERE j.trigger_id = t.id) "
	                                "THEN 'overlap' WHEN NOT $4::boolean THEN 'filtered' END "
	                                "FROM triggers t WHERE t.id = $1::uuid AND t.enabled AND t.event_type = 'cron' "
	                                "ON CONFLICT DO NOTHING RETURNING skipped",
	    4, claim_prm, &claim, err);
	if (r < 0)
		goto fail;
	if (PQntuples(claim) == 0) {
		*ret = STORE_CRON_NOT_OURS;
		r = db_exec_params(c, "COMMIT", 0, NULL, NULL, err);
		if (r < 0)
			goto fail;
		return 0;
	}
	if (!PQgetisnull(claim, 0, 0)) {
		*ret = strcmp(PQgetvalue(claim, 0, 0), "overlap") == 0 ? STORE_CRON_OVERLAP : STORE_CRON_FILTERED;
		r = db_exec_params(c, "COMMIT", 0, NULL, NULL, err);
		if (r < 0)
			goto fail;
		return 0;
	}
	const char *enq_prm[] = {trigger_id, when, event_json};
	r = db_exec_prepared(c,
	                     "UPDATE cron_fires f SET invocation_id = zmesh_enqueue(t.function_id, NULL, $3::jsonb, "
	                     "'schedule', t.id) FROM triggers t WHERE t.id = $1::uuid AND f.trigger_id = t.id "
	                     "AND f.scheduled_time = " TS_OF("$2") " RETURNING f.invocation_id",
	                     3, enq_prm, &enq, err);
	if (r < 0)
		goto fail;
	if (PQntuples(enq) != 1 || PQgetisnull(enq, 0, 0)) {
		/* The function is gone (its trigger with it, by the cascade). */
		rollback(c);
		*ret = STORE_CRON_NOT_OURS;
		return 0;
	}
	snprintf(ret_invocation_id, STORE_ID_LEN + 1, "%s", PQgetvalue(enq, 0, 0));
	r = db_exec_params(c, "COMMIT", 0, NULL, NULL, err);
	if (r < 0)
		goto fail;
	*ret = STORE_CRON_FIRED;
	return 0;
fail:
	rollback(c);
	return r;
}

int store_cron_prune(PGconn *c, int keep_days, uint64_t batch, uint64_t *ret_deleted, struct zerr *err)
{
	char days[16], limit[24];
	snprintf(days, sizeof(days), "%d", keep_days);
	snprintf(limit, sizeof(limit), "%" PRIu64, batch);
	const char *prm[] = {days, limit};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c,
	                       "WITH old AS (SELECT o.trigger_id, o.scheduled_time FROM cron_fires o "
	                       "WHERE o.fired_at < now() - $1::int * interval '1 day' "
	                       "AND o.scheduled_time < (SELECT max(m.scheduled_time) FROM cron_fires m "
	                       "WHERE m.trigger_id = o.trigger_id) LIMIT $2::bigint) "
	                       "DELETE FROM cron_fires f USING old WHERE f.trigger_id = old.trigger_id "
	                       "AND f.scheduled_time = old.scheduled_time",
	                       2, prm, &res, err);
	if (r < 0)
		return r;
	*ret_deleted = strtoull(PQcmdTuples(res), NULL, 10);
	return 0;
}
