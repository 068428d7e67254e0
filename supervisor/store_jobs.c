/* store_jobs.c - see store_jobs.h */
#define _GNU_SOURCE
#include "store_jobs.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
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
