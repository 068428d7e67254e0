/* api_triggers.c - the triggers resource (JWT, any member of the project,
 * like functions) and the webhooks endpoint (no JWT: the sender proves
 * itself with the trigger's signature scheme).
 *
 * A webhook delivery: the trigger (enabled, a webhook, else 404), the
 * signature over the raw body with the current secret and, during a
 * rotation, the previous one (401), the event, the trigger's conditions
 * (no match: 202 filtered, no job), then either the queue (202 once the
 * job is committed; a delivery id seen within 24 h answers the first
 * delivery's invocation id and queues nothing) or, with respond "sync", the
 * invocation pipeline at once, whose result is the HTTP answer. Secrets are
 * never logged and never in a GET; they are shown on create, on a change
 * that sets one, and on rotate. */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "cdc.h"
#include "conditions.h"
#include "invoke.h"
#include "jobs.h"
#include "log.h"
#include "store_triggers.h"
#include "utf8.h"
#include "validate_trigger.h"
#include "webhook_sig.h"

#define CONTENT_TYPE_MAX 256

/* ---- the resource ---------------------------------------------------------- */

HANDLER(h_triggers_list)
{
	_cleanup_call_ struct call k;
	json_t *j = NULL;
	int r = api_begin(req, app, STORE_PROJECT, &k, err);
	if (r == 0)
		r = store_triggers_list(k.c, k.p.id, &j, err);
	return r < 0 ? r : api_ok(req, j);
}

/* The secret a signed webhook gets: the one given, or a new one. */
static int choose_secret(const struct val_trigger *in, char **ret, struct zerr *err)
{
	*ret = NULL;
	if (!in->signed_)
		return 0;
	if (in->secret) {
		*ret = strdup(in->secret);
		return *ret ? 0 : zerr_set(err, -ENOMEM, "out of memory");
	}
	return whsig_secret_new(in->scheme, ret, err);
}

/* A cdc trigger's table must exist in the project's database, whose
 * capture is installed (or refreshed) before the trigger is stored. */
static int cdc_prepare(struct app *app, const struct call *k, const char *event_type, struct cdc_name *n,
                       struct zerr *err)
{
	const char *why;
	if (cdc_parse_event_type(event_type, n, &why) < 0)
		return ze(err, ZE_INVALID_TRIGGER, "event_type: \"%.160s\" %s", event_type, why);
	PGconn *db = NULL;
	int r = db_pool_connect_db(app->pool, k->p.db_name, &db, err);
	if (r < 0)
		return ze(err, ZE_UNAVAILABLE, "the project's database cannot be reached");
	r = cdc_install(db, n, err);
	PQfinish(db);
	if (r == -ENOENT || r == -EINVAL) {
		char msg[sizeof(err->msg)];
		snprintf(msg, sizeof(msg), "%s", err->msg);
		return ze(err, ZE_INVALID_TRIGGER, "event_type: %s", msg);
	}
	return r;
}

/* After a cdc trigger of n went (deleted, or not stored): drop the capture
 * its table no longer needs, and the schema once no cdc trigger of the
 * project is left. A failure is logged: what is left only captures rows
 * the dispatcher drops. */
static void cdc_release(struct app *app, const struct call *k, const struct cdc_name *n)
{
	struct zerr err = {0};
	_cleanup_pgresult_ PGresult *res = NULL;
	const char *p[] = {k->p.id};
	if (db_exec_params(k->c, "SELECT event_type FROM triggers WHERE project_id = $1 AND event_type LIKE 'cdc.%'", 1,
	                   p, &res, &err) < 0) {
		zlog(ZLOG_WARN, "cdc_release_failed", "project", k->p.id, "error", err.msg, NULL);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		struct cdc_name o;
		const char *why;
		if (cdc_parse_event_type(PQgetvalue(res, i, 0), &o, &why) == 0 && strcmp(o.schema, n->schema) == 0 &&
		    strcmp(o.table, n->table) == 0)
			return;
	}
	PGconn *db = NULL;
	if (db_pool_connect_db(app->pool, k->p.db_name, &db, &err) == 0)
		cdc_uninstall(db, n->schema, n->table, PQntuples(res) == 0, &err);
	if (db)
		PQfinish(db);
	if (err.code)
		zlog(ZLOG_WARN, "cdc_release_failed", "project", k->p.id, "error", err.msg, NULL);
}

HANDLER(h_triggers_create)
{
	_cleanup_call_ struct call k;
	_cleanup_json_ json_t *body = NULL;
	int r = api_begin_body(req, app, STORE_PROJECT, &k, &body, err);
	if (r < 0)
		return r;
	_cleanup_val_trigger_ struct val_trigger in = {0};
	_cleanup_free_ char *secret = NULL;
	r = val_trigger_create(body, &in, err);
	if (r == 0 && in.type == VT_WEBHOOK)
		r = choose_secret(&in, &secret, err);
	if (r < 0)
		return r;
	struct store_trigger_in s = {.function_ref = in.function_ref,
	                             .event_type = in.event_type,
	                             .config = in.config,
	                             .conditions = in.conditions,
	                             .enabled = in.enabled,
	                             .secret = secret};
	struct cdc_name cdc;
	if (in.type == VT_CDC) {
		r = cdc_prepare(app, &k, in.event_type, &cdc, err);
		if (r < 0)
			return r;
	}
	json_t *j = NULL;
	r = store_trigger_create(k.c, k.p.id, &s, &j, err);
	if (r < 0 && in.type == VT_CDC)
		cdc_release(app, &k, &cdc);
	if (r < 0)
		return r;
	if (in.type == VT_CDC)
		cdc_wake(app->cdc);
	const char *id = json_string_value(json_object_get(j, "id"));
	zlog(ZLOG_INFO, "trigger_created", "request_id", http_request_id(req), "project", k.p.id, "trigger",
	     id ? id : "", "event_type", s.event_type, NULL);
	/* With the API key, the only times a secret is shown: here and on
	 * rotate. */
	if (secret)
		json_object_set_new(j, "secret", json_string(secret));
	return api_created(req, j);
}

HANDLER(h_trigger_get)
{
	_cleanup_call_ struct call k;
	json_t *j = NULL;
	int r = api_begin(req, app, STORE_PROJECT, &k, err);
	if (r == 0)
		r = store_trigger_get(k.c, k.p.id, http_param(req, "tid"), &j, err);
	return r < 0 ? r : api_ok(req, j);
}

/* A webhook's new config decides its secret: none for "none", the one
 * given, the stored one if it fits the (maybe new) scheme, else a new one.
 * *ret_shown: the secret to show, when it changed. */
static int patch_secret(const struct val_trigger *in, const struct store_trigger_state *st,
                        struct store_trigger_in *out, char **ret_shown, struct zerr *err)
{
	*ret_shown = NULL;
	if (!in->config || in->type != VT_WEBHOOK)
		return 0;
	out->set_secret = true;
	if (!in->signed_)
		return 0;
	if (!in->secret && st->secret && whsig_secret_check(in->scheme, st->secret, NULL) == 0) {
		out->set_secret = false;
		return 0;
	}
	int r = choose_secret(in, ret_shown, err);
	out->secret = *ret_shown;
	return r;
}

HANDLER(h_trigger_patch)
{
	_cleanup_call_ struct call k;
	_cleanup_json_ json_t *body = NULL;
	int r = api_begin_body(req, app, STORE_PROJECT, &k, &body, err);
	if (r < 0)
		return r;
	_cleanup_(store_trigger_state_done) struct store_trigger_state st = {0};
	_cleanup_val_trigger_ struct val_trigger in = {0};
	_cleanup_free_ char *shown = NULL;
	r = store_trigger_state(k.c, k.p.id, http_param(req, "tid"), &st, err);
	if (r == 0)
		r = val_trigger_patch(body, st.event_type, &in, err);
	struct store_trigger_in s = {
	    .function_ref = in.function_ref, .config = in.config, .conditions = in.conditions, .enabled = in.enabled};
	if (r == 0)
		r = patch_secret(&in, &st, &s, &shown, err);
	json_t *j = NULL;
	if (r == 0)
		r = store_trigger_update(k.c, k.p.id, st.id, &s, &j, err);
	if (r < 0)
		return r;
	if (shown)
		json_object_set_new(j, "secret", json_string(shown));
	return api_ok(req, j);
}

HANDLER(h_trigger_delete)
{
	_cleanup_call_ struct call k;
	_cleanup_(store_trigger_state_done) struct store_trigger_state st = {0};
	int r = api_begin(req, app, STORE_PROJECT, &k, err);
	if (r == 0)
		r = store_trigger_state(k.c, k.p.id, http_param(req, "tid"), &st, err);
	if (r == 0)
		r = store_trigger_delete(k.c, k.p.id, st.id, err);
	if (r < 0)
		return r;
	struct cdc_name cdc;
	const char *why;
	if (cdc_parse_event_type(st.event_type, &cdc, &why) == 0)
		cdc_release(app, &k, &cdc);
	return api_ok(req, json_pack("{s:b}", "deleted", 1));
}

HANDLER(h_trigger_rotate_secret)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_PROJECT, &k, err);
	if (r < 0)
		return r;
	_cleanup_(store_trigger_state_done) struct store_trigger_state st = {0};
	r = store_trigger_state(k.c, k.p.id, http_param(req, "tid"), &st, err);
	if (r < 0)
		return r;
	bool is_signed = false, sync = false;
	enum whsig_scheme scheme = WHSIG_STANDARD;
	struct whsig_config wc;
	if (strcmp(st.event_type, "webhook") != 0 ||
	    val_trigger_whsig(st.config, &is_signed, &scheme, &wc, &sync) < 0 || !is_signed || !st.secret)
		return ze(err, ZE_INVALID_TRIGGER, "config.verify: only a signed webhook has a secret to rotate");
	_cleanup_free_ char *secret = NULL;
	json_t *j = NULL;
	r = whsig_secret_new(scheme, &secret, err);
	if (r == 0)
		r = store_trigger_rotate_secret(k.c, k.p.id, st.id, secret, &j, err);
	if (r < 0)
		return r;
	zlog(ZLOG_INFO, "trigger_secret_rotated", "request_id", http_request_id(req), "project", k.p.id, "trigger",
	     st.id, NULL);
	return api_ok(req, j);
}

/* ---- webhooks: the signature ----------------------------------------------- */

static const char *request_header(void *ctx, const char *name)
{
	return http_header(ctx, name);
}

static int verify(struct http_request *req, struct app *app, const struct store_webhook *w, enum whsig_scheme scheme,
                  struct whsig_config *wc, struct zerr *err)
{
	size_t len = 0;
	const char *body = http_body(req, &len);
	wc->secrets[0] = w->secret;
	wc->secrets[1] = w->previous_secret;
	struct whsig_request rq = {.header = request_header,
	                           .ctx = req,
	                           .body = (const uint8_t *)body,
	                           .body_len = len,
	                           .now_s = (int64_t)time(NULL)};
	struct zerr e = {0};
	int r = w->secret ? whsig_verify(scheme, wc, &rq, &e) : -EACCES;
	if (r == 0)
		return 0;
	if (r == -EIO || r == -ENOMEM)
		return zerr_set(err, r, "webhook signature: %s", e.msg);
	atomic_fetch_add(&app->metrics.events.webhook_rejected, 1);
	if (r == -ETIME)
		return ze(err, ZE_STALE_TIMESTAMP, "the signature's timestamp is more than %d s away from now",
		          WHSIG_TOLERANCE_S);
	return ze(err, ZE_INVALID_SIGNATURE, "missing or wrong signature (%s scheme)", whsig_scheme_name(scheme));
}

/* ---- webhooks: the event --------------------------------------------------- */

/* Add name: value to object o, joining a repeated name's values with sep. */
static int add_joined(json_t *o, const char *name, const char *value, const char *sep)
{
	json_t *old = json_object_get(o, name);
	if (!old)
		return json_object_set_new(o, name, json_string(value)) == 0 ? 0 : -ENOMEM;
	_cleanup_free_ char *joined = NULL;
	if (asprintf(&joined, "%s%s%s", json_string_value(old), sep, value) < 0)
		return -ENOMEM;
	return json_object_set_new(o, name, json_string(joined)) == 0 ? 0 : -ENOMEM;
}

/* Header names lower-cased; bytes that are not UTF-8 (obs-text) become '?',
 * so that any header the HTTP layer let through fits in JSON. */
static int add_header(void *ctx, const char *name, const char *value)
{
	_cleanup_free_ char *n = utf8_sanitize(name, strlen(name), true);
	_cleanup_free_ char *v = utf8_sanitize(value, strlen(value), false);
	if (!n || !v)
		return -ENOMEM;
	for (char *c = n; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	return add_joined(ctx, n, v, ", ");
}

/* Values of a repeated parameter are joined with ",", as function URLs
 * elsewhere do. */
static int add_query(void *ctx, const char *name, const char *value)
{
	return add_joined(ctx, name, value, ",");
}

/* application/json and any +json type, whatever its parameters. */
static bool json_content_type(const char *ct)
{
	if (!ct)
		return false;
	size_t n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	return (n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
	       (n > 5 && memchr(ct, '/', n) && strncasecmp(ct + n - 5, "+json", 5) == 0);
}

static int event_body(struct http_request *req, json_t **ret, struct zerr *err)
{
	size_t len = 0;
	const char *b = http_body(req, &len);
	if (!utf8_valid(b, len))
		return ze(err, ZE_BAD_REQUEST, "body: not UTF-8 text");
	if (!json_content_type(http_header(req, "content-type")))
		*ret = json_stringn(b, len);
	else if (len == 0)
		*ret = json_null();
	else {
		struct zerr e = {0};
		*ret = http_json_body(req, &e);
		if (!*ret)
			return ze(err, ZE_BAD_REQUEST, "body: %s", e.msg);
	}
	return *ret ? 0 : zerr_set(err, -ENOMEM, "out of memory");
}

static int webhook_event(struct http_request *req, const char *trigger_id, json_t **ret, struct zerr *err)
{
	_cleanup_json_ json_t *headers = json_object(), *query = json_object(), *body = NULL;
	if (!headers || !query)
		return zerr_set(err, -ENOMEM, "out of memory");
	int r = http_each_header(req, add_header, headers);
	if (r < 0)
		return zerr_set(err, r, "cannot gather the headers");
	r = http_each_query(req, add_query, query);
	if (r == -EINVAL || r == -E2BIG)
		return ze(err, ZE_BAD_REQUEST, "query: a malformed or overlong parameter");
	if (r < 0)
		return zerr_set(err, r, "cannot gather the query");
	r = event_body(req, &body, err);
	if (r < 0)
		return r;
	char ts[INV_TIMESTAMP_LEN];
	inv_timestamp_now(ts);
	*ret = json_pack("{s:s, s:s, s:s, s:s, s:O, s:O, s:O, s:s}", "trigger", "webhook", "trigger_id", trigger_id,
	                 "method", http_method(req), "path", http_path(req), "query", query, "headers", headers, "body",
	                 body, "timestamp", ts);
	return *ret ? 0 : zerr_set(err, -ENOMEM, "out of memory");
}

/* ---- webhooks: sync answers ------------------------------------------------ */

/* Headers a function may not set: the connection's own (hop-by-hop) and
 * the framing, which the HTTP layer owns. */
static bool header_allowed(const char *name)
{
	static const char *const refused[] = {"connection",
	                                      "keep-alive",
	                                      "proxy-authenticate",
	                                      "proxy-authorization",
	                                      "proxy-connection",
	                                      "te",
	                                      "trailer",
	                                      "transfer-encoding",
	                                      "upgrade",
	                                      "content-length"};
	for (size_t i = 0; i < ELEMENTSOF(refused); i++)
		if (strcasecmp(name, refused[i]) == 0)
			return false;
	return true;
}

static bool content_type_ok(const char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] >= 0x7f)
			return false;
	return n > 0 && n <= CONTENT_TYPE_MAX;
}

/* {statusCode, headers?, body?}: headers the HTTP layer refuses (bad
 * names or values, past its count) are dropped rather than failing an
 * invocation that already ran. */
static void reply_shaped(struct http_request *req, json_t *result, unsigned status)
{
	const char *ctype = NULL, *k;
	json_t *v, *headers = json_object_get(result, "headers");
	json_object_foreach (json_is_object(headers) ? headers : NULL, k, v) {
		const char *s = json_string_value(v);
		if (!s || !header_allowed(k))
			continue;
		if (strcasecmp(k, "content-type") == 0)
			ctype = content_type_ok(s) ? s : NULL;
		else
			http_add_header(req, k, s);
	}
	json_t *body = json_object_get(result, "body");
	if (json_is_string(body)) {
		http_reply_text(req, status, ctype ? ctype : "text/plain; charset=utf-8", json_string_value(body),
		                json_string_length(body));
		return;
	}
	if (!body || json_is_null(body)) {
		http_reply_text(req, status, ctype ? ctype : "text/plain; charset=utf-8", "", 0);
		return;
	}
	_cleanup_free_ char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!text) {
		http_reply_error(req, 500, "INTERNAL", "the result could not be encoded");
		return;
	}
	http_reply_text(req, status, ctype ? ctype : "application/json", text, strlen(text));
}

static void reply_sync(struct http_request *req, const struct inv_result *res)
{
	if (res->outcome != EXEC_SUCCESS) {
		http_reply_json(req, errors_outcome_status(res->outcome), inv_response(res));
		return;
	}
	json_t *r = res->result, *sc = json_object_get(r, "statusCode");
	json_int_t status = json_is_integer(sc) ? json_integer_value(sc) : 0;
	if (json_is_object(r) && status >= 100 && status <= 599)
		reply_shaped(req, r, (unsigned)status);
	else
		http_reply_json(req, 200, json_incref(r ? r : json_null()));
}

/* ---- webhooks: the endpoint ------------------------------------------------ */

static int replayed(struct http_request *req, struct app *app, const char *id, const char *status)
{
	atomic_fetch_add(&app->metrics.events.webhook_replayed, 1);
	http_log_field(req, "replay", "true");
	return api_accepted(req, json_pack("{s:s?, s:s}", "invocation_id", id[0] ? id : NULL, "status", status));
}

static int run_async(struct http_request *req, struct app *app, struct call *k, const struct store_webhook *w,
                     const char *delivery_id, json_t *event, struct zerr *err)
{
	char id[STORE_ID_LEN + 1];
	bool replay = false;
	int r = store_webhook_enqueue(k->c, w->id, delivery_id, w->f.id, event, id, &replay, err);
	if (r < 0)
		return r;
	if (replay)
		return replayed(req, app, id, "queued");
	atomic_fetch_add(&app->metrics.events.enqueued, 1);
	jobs_wake(app->jobs);
	http_log_field(req, "invocation_id", id);
	return api_accepted(req, json_pack("{s:s, s:s}", "invocation_id", id, "status", "queued"));
}

/* The function runs now and its result is the answer. A delivery id is
 * claimed first with the id the invocation will have, so that a replay
 * runs nothing; an invocation refused before it ran gives the claim up. */
static int run_sync(struct http_request *req, struct app *app, struct call *k, const struct store_webhook *w,
                    const char *delivery_id, json_t *event, struct zerr *err)
{
	char id[STORE_ID_LEN + 1], first[STORE_ID_LEN + 1];
	inv_uuid(id);
	bool replay = false;
	int r = delivery_id ? store_webhook_claim(k->c, w->id, delivery_id, id, first, &replay, err) : 0;
	if (r < 0)
		return r;
	if (replay)
		return replayed(req, app, first, "duplicate");
	call_drop_conn(k);
	struct inv_call call = {.project = &w->p,
	                        .function = &w->f,
	                        .payload = event,
	                        .trigger = "webhook",
	                        .trigger_id = w->id,
	                        .request_id = http_request_id(req),
	                        .wait_ms = app->cfg.queue_wait_ms,
	                        .invocation_id = id};
	struct inv_result res;
	r = inv_run(app, &call, &res, err);
	if (r < 0) {
		struct zerr e2 = {0};
		if (delivery_id && take_conn(k, &e2) == 0)
			store_webhook_unclaim(k->c, w->id, delivery_id, &e2);
		return r;
	}
	http_log_field(req, "invocation_id", res.id);
	reply_sync(req, &res);
	inv_result_done(&res);
	return 0;
}

HANDLER(h_webhook)
{
	_cleanup_call_ struct call k = {.app = app};
	_cleanup_(store_webhook_done) struct store_webhook w = {0};
	const char *tid = http_param(req, "tid");
	int r = val_is_uuid(tid) ? take_conn(&k, err) : ze(err, ZE_NOT_FOUND, "no such trigger");
	if (r == 0)
		r = store_webhook_lookup(k.c, tid, &w, err);
	if (r < 0)
		return r;
	http_log_field(req, "project", w.p.id);
	http_log_field(req, "trigger", w.id);
	bool is_signed = false, sync = false;
	enum whsig_scheme scheme = WHSIG_STANDARD;
	struct whsig_config wc;
	if (val_trigger_whsig(w.config, &is_signed, &scheme, &wc, &sync) < 0)
		return zerr_set(err, -EINVAL, "trigger %s: a stored webhook config that does not validate", w.id);
	if (is_signed && (r = verify(req, app, &w, scheme, &wc, err)) < 0)
		return r;
	atomic_fetch_add(&app->metrics.events.webhook_accepted, 1);
	_cleanup_json_ json_t *event = NULL;
	r = webhook_event(req, w.id, &event, err);
	if (r < 0)
		return r;
	if (!cond_match(w.conditions, event)) {
		atomic_fetch_add(&app->metrics.events.filtered, 1);
		return api_accepted(req, json_pack("{s:s}", "status", "filtered"));
	}
	struct whsig_request rq = {.header = request_header, .ctx = req};
	const char *delivery_id = is_signed ? whsig_delivery_id(scheme, &wc, &rq) : NULL;
	return sync ? run_sync(req, app, &k, &w, delivery_id, event, err)
	            : run_async(req, app, &k, &w, delivery_id, event, err);
}
