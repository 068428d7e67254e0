/* api_jobs.c - asynchronous invocations (Prefer: respond-async, with an
 * optional Idempotency-Key) and dead letters. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "events.h"
#include "jobs.h"
#include "store_jobs.h"
#include "util.h"

#define IDEMPOTENCY_KEY_MAX ZEV_IDEMPOTENCY_KEY_MAX
#define DEAD_LETTERS_LIMIT  100

bool api_prefers_async(struct http_request *req)
{
	const char *h = http_header(req, "prefer");
	if (!h)
		return false;
	/* A list of preferences (RFC 7240): "respond-async, wait=10". */
	for (const char *p = h; *p;) {
		p += strspn(p, " \t,");
		size_t n = strcspn(p, ",;= \t");
		if (n == strlen("respond-async") && strncasecmp(p, "respond-async", n) == 0)
			return true;
		p += strcspn(p, ",");
	}
	return false;
}

static bool idempotency_key_ok(const char *k)
{
	size_t n = strlen(k);
	if (n < 1 || n > IDEMPOTENCY_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)k[i] < 0x20 || (unsigned char)k[i] > 0x7e)
			return false;
	return true;
}

int api_enqueue(struct http_request *req, struct call *k, json_t *payload, const char *trigger, struct zerr *err)
{
	if (!k->f.active)
		return ze(err, ZE_FUNCTION_DISABLED, "the function is disabled");
	const char *key = http_header(req, "idempotency-key");
	if (key && !idempotency_key_ok(key))
		return ze(err, ZE_INVALID_IDEMPOTENCY_KEY, "Idempotency-Key must be 1 to %d printable ASCII characters",
		          IDEMPOTENCY_KEY_MAX);
	struct job_event ev = {.function_id = k->f.id, .version = k->f.version, .event = payload, .trigger = trigger};
	char id[STORE_ID_LEN + 1];
	bool existing = false;
	int r =
	    key ? store_job_enqueue_once(k->c, &ev, key, id, &existing, err) : store_job_enqueue(k->c, &ev, id, err);
	if (r < 0)
		return r;
	if (!existing) {
		atomic_fetch_add(&k->app->metrics.events.enqueued, 1);
		jobs_wake(k->app->jobs);
	}
	char location[256];
	snprintf(location, sizeof(location), "/projects/%s/functions/%s/invocations/%s", k->p.id, k->f.id, id);
	http_add_header(req, "Location", location);
	http_log_field(req, "invocation_id", id);
	return api_accepted(req, json_pack("{s:s, s:s}", "invocation_id", id, "status", "queued"));
}

HANDLER(h_dead_letters_list)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_PROJECT, &k, err);
	if (r < 0)
		return r;
	const char *ls = NULL;
	uint64_t limit = DEAD_LETTERS_LIMIT;
	int q = http_query(req, "limit", &ls);
	if ((q != 0 && q != -ENOENT) || (q == 0 && ls && util_parse_u64(ls, 1, DEAD_LETTERS_LIMIT, &limit) < 0))
		return ze(err, ZE_BAD_REQUEST, "limit is 1..%d", DEAD_LETTERS_LIMIT);
	json_t *j = NULL;
	r = store_dead_letters_list(k.c, k.p.id, limit, &j, err);
	return r < 0 ? r : api_ok(req, json_pack("{s:o}", "dead_letters", j));
}

HANDLER(h_dead_letter_retry)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_PROJECT, &k, err);
	if (r < 0)
		return r;
	char id[STORE_ID_LEN + 1];
	r = store_dead_letter_retry(k.c, k.p.id, http_param(req, "id"), id, err);
	if (r < 0)
		return r;
	atomic_fetch_add(&app->metrics.events.enqueued, 1);
	jobs_wake(app->jobs);
	http_log_field(req, "invocation_id", id);
	return api_accepted(req, json_pack("{s:s, s:s}", "invocation_id", id, "status", "queued"));
}
