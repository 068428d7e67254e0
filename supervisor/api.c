/* api.c - the HTTP API: its handlers and its route table, nothing else.
 *
 * A handler reads the request, authenticates (api_begin), validates the body
 * (validate.h), asks the store (store.h) or the invocation pipeline
 * (invoke.h), and answers. It answers success itself (api_ok, api_created);
 * every failure is returned as a negative code with the error object filled
 * and answered by errors_reply() (errors.h), the one mapping to a status.
 * Routes and their contract: docs/ARCHITECTURE.md. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <errno.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "api_ui.h"
#include "app.h"
#include "auth.h"
#include "codec.h"
#include "errors.h"
#include "invoke.h"
#include "log.h"
#include "metrics.h"
#include "pooler.h"
#include "store.h"
#include "validate.h"

#define METRICS_TEXT_MAX (1 << 20)

/* ---- projects ------------------------------------------------------------ */

HANDLER(h_projects_list)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_USER, &k, err);
	json_t *j = NULL;
	if (r == 0)
		r = store_projects_list(k.c, k.u.id, &j, err);
	return r < 0 ? r : api_ok(req, json_pack("{s:o}", "projects", j));
}

HANDLER(h_projects_create)
{
	_cleanup_call_ struct call k;
	_cleanup_json_ json_t *body = NULL;
	int r = api_begin_body(req, app, STORE_USER, &k, &body, err);
	if (r < 0)
		return r;
	struct val_project in;
	r = val_project(body, &app->tiers, true, &in, err);
	if (r < 0)
		return r;
	/* A tier is a plan the operator grants: a project starts on the
	 * default one unless an admin says otherwise. */
	if (in.tier && !k.u.admin && strcmp(in.tier, TIERS_DEFAULT) != 0)
		return ze(err, ZE_FORBIDDEN, "only an admin sets a project's tier");
	/* Every project is a database: a user who is not an admin owns a
	 * bounded number of them. */
	if (!k.u.admin) {
		uint64_t owned = 0;
		r = store_projects_owned(k.c, k.u.id, &owned, err);
		if (r < 0)
			return r;
		if (owned >= APP_MAX_PROJECTS_PER_USER)
			return ze(err, ZE_PROJECT_LIMIT, "a user owns at most %d projects", APP_MAX_PROJECTS_PER_USER);
	}
	_cleanup_free_ char *rnd = NULL, *password = NULL;
	r = auth_random_hex(8, &rnd, err);
	if (r == 0)
		r = auth_random_hex(24, &password, err);
	if (r < 0)
		return r;
	char dbname[64];
	snprintf(dbname, sizeof(dbname), "zp_%s", rnd);
	json_t *j = NULL;
	r = store_provision_database(k.c, dbname, password, err);
	if (r == 0)
		r = store_project_create(k.c, &in, in.tier ? in.tier : TIERS_DEFAULT, dbname, password, k.u.id, &j,
		                         err);
	if (r < 0) {
		store_drop_database(k.c, dbname);
		return r;
	}
	pooler_kick(app->pooler);
	zlog(ZLOG_INFO, "project_created", "request_id", http_request_id(req), "project", in.slug, "database", dbname,
	     NULL);
	return api_created(req, j);
}

HANDLER(h_project_get)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_PROJECT | STORE_JSON, &k, err);
	return r < 0 ? r : api_ok(req, json_incref(k.json));
}

HANDLER(h_project_patch)
{
	_cleanup_call_ struct call k;
	_cleanup_json_ json_t *body = NULL;
	int r = api_begin_body(req, app, STORE_PROJECT, &k, &body, err);
	if (r == 0)
		r = need_owner(&k, "change the project", err);
	if (r < 0)
		return r;
	struct val_project in;
	r = val_project(body, &app->tiers, false, &in, err);
	if (r < 0)
		return r;
	if (in.tier && !k.u.admin)
		return ze(err, ZE_FORBIDDEN, "only an admin changes a project's tier");
	json_t *j = NULL;
	r = store_project_update(k.c, k.p.id, in.name, in.tier, in.egress, &j, err);
	if (r < 0)
		return r;
	if (in.tier)
		pooler_kick(app->pooler);
	if (in.egress)
		zlog(ZLOG_INFO, "project_egress_changed", "request_id", http_request_id(req), "project", k.p.id, "mode",
		     json_string_value(json_object_get(in.egress, "mode")), "by", k.u.id, NULL);
	if (in.tier)
		zlog(ZLOG_INFO, "project_tier_changed", "request_id", http_request_id(req), "project", k.p.id, "tier",
		     in.tier, "by", k.u.id, NULL);
	return api_ok(req, j);
}

HANDLER(h_project_delete)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_PROJECT, &k, err);
	if (r == 0)
		r = need_owner(&k, "delete the project", err);
	if (r == 0)
		r = store_project_delete(k.c, k.p.id, err);
	if (r < 0)
		return r;
	store_drop_database(k.c, k.p.db_name);
	zlog(ZLOG_INFO, "project_deleted", "request_id", http_request_id(req), "project", k.p.id, NULL);
	return api_ok(req, json_pack("{s:b}", "deleted", 1));
}

/* ---- API keys ------------------------------------------------------------ */

HANDLER(h_keys_list)
{
	_cleanup_call_ struct call k;
	json_t *j = NULL;
	int r = api_begin(req, app, STORE_PROJECT, &k, err);
	if (r == 0)
		r = store_keys_list(k.c, k.p.id, &j, err);
	return r < 0 ? r : api_ok(req, json_pack("{s:o}", "api_keys", j));
}

HANDLER(h_keys_create)
{
	_cleanup_call_ struct call k;
	_cleanup_json_ json_t *body = NULL;
	int r = api_begin_body(req, app, STORE_PROJECT, &k, &body, err);
	if (r < 0)
		return r;
	const char *name = NULL;
	_cleanup_free_ char *key = NULL;
	char prefix[16], hash[65];
	json_t *j = NULL;
	r = val_name(body, &name, err);
	if (r == 0)
		r = auth_apikey_new(&key, prefix, hash, err);
	if (r == 0)
		r = store_key_create(k.c, k.p.id, name, prefix, hash, &j, err);
	if (r < 0)
		return r;
	/* The only time the key itself is shown. */
	json_object_set_new(j, "key", json_string(key));
	return api_created(req, j);
}

HANDLER(h_key_delete)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_PROJECT, &k, err);
	if (r == 0)
		r = store_key_delete(k.c, k.p.id, http_param(req, "kid"), err);
	return r < 0 ? r : api_ok(req, json_pack("{s:b}", "deleted", 1));
}

/* ---- functions ----------------------------------------------------------- */

HANDLER(h_functions_list)
{
	_cleanup_call_ struct call k;
	json_t *j = NULL;
	int r = api_begin(req, app, STORE_PROJECT, &k, err);
	if (r == 0)
		r = store_functions_list(k.c, k.p.id, &j, err);
	return r < 0 ? r : api_ok(req, json_pack("{s:o}", "functions", j));
}

/* on_failure names another function of the same project. */
static int check_on_failure(struct call *k, const struct val_function *in, const char *slug, struct zerr *err)
{
	if (!in->on_failure)
		return 0;
	if (strcmp(in->on_failure, slug) == 0)
		return ze(err, ZE_INVALID_EVENT_SETTINGS, "on_failure must name another function, not this one");
	bool found = false;
	int r = store_function_slug_exists(k->c, k->p.id, in->on_failure, &found, err);
	if (r == 0 && !found)
		return ze(err, ZE_INVALID_EVENT_SETTINGS, "on_failure: no function \"%s\" in this project",
		          in->on_failure);
	return r;
}

/* The code checked in a sandbox before it is saved (exec_check): a syntax
 * error, or an entry point the code surely does not define, is answered
 * here (400 SYNTAX_ERROR with file, line and column; 400 HANDLER_NOT_FOUND)
 * and 1 returned; 0: go on. A check that cannot be made (the sandbox
 * failed or timed out) does not block the deploy: it is logged, and what
 * is wrong with the code, if anything, shows at invoke as before. */
static int check_code(struct http_request *req, struct app *app, const char *language, const char *code,
                      const char *entry_point, const char *slug)
{
	struct exec_check_result res;
	struct zerr why = {0};
	enum exec_lang lang = strcmp(language, "python") == 0 ? EXEC_PY : EXEC_JS;
	if (exec_check(&app->exec, lang, code, entry_point, &res, &why) < 0) {
		zlog(ZLOG_WARN, "code_check_failed", "request_id", http_request_id(req), "function", slug, "error",
		     why.msg, NULL);
		return 0;
	}
	if (res.valid)
		return 0;
	const char *name = json_string_value(json_object_get(res.error, "name"));
	const char *message = json_string_value(json_object_get(res.error, "message"));
	const char *file = json_string_value(json_object_get(res.error, "file"));
	json_t *line = json_object_get(res.error, "line"), *column = json_object_get(res.error, "column");
	struct zerr e = {0};
	int zc = strcmp(name, "HandlerNotFound") == 0 ? ZE_HANDLER_NOT_FOUND : ZE_SYNTAX_ERROR;
	if (zc == ZE_SYNTAX_ERROR && json_is_integer(line) && json_is_integer(column))
		ze(&e, ZE_SYNTAX_ERROR, "%s:%" JSON_INTEGER_FORMAT ":%" JSON_INTEGER_FORMAT ": %s: %s", file,
		   json_integer_value(line), json_integer_value(column), name, message);
	else if (zc == ZE_SYNTAX_ERROR && json_is_integer(line))
		ze(&e, ZE_SYNTAX_ERROR, "%s:%" JSON_INTEGER_FORMAT ": %s: %s", file, json_integer_value(line), name,
		   message);
	else
		ze(&e, (enum ze_code)zc, "%s", message);
	json_t *detail = zc == ZE_SYNTAX_ERROR
	                     ? json_pack("{s:s, s:O, s:O}", "file", file, "line", line ? line : json_null(), "column",
	                                 column ? column : json_null())
	                     : json_pack("{s:s}", "file", file);
	errors_reply_detail(req, -zc, &e, detail);
	json_decref(detail);
	exec_check_result_done(&res);
	return 1;
}

HANDLER(h_functions_create)
{
	_cleanup_call_ struct call k;
	_cleanup_json_ json_t *body = NULL;
	int r = api_begin_body(req, app, STORE_PROJECT, &k, &body, err);
	if (r < 0)
		return r;
	const struct tier *tier = tiers_for(&app->tiers, k.p.tier);
	struct val_function in;
	r = val_function(body, tier, app->cfg.max_code_bytes, true, &in, err);
	if (r < 0)
		return r;
	char slug[VAL_SLUG_MAX + 1];
	if (in.slug)
		snprintf(slug, sizeof(slug), "%s", in.slug);
	else
		val_slugify(in.name, slug, sizeof(slug));
	if (!val_slug(slug))
		return ze(err, ZE_INVALID_SLUG, "cannot derive a slug from the name; give one");
	int64_t timeout = in.timeout_ms > 0 ? in.timeout_ms : 10000, memory = in.memory_mb > 0 ? in.memory_mb : 256;
	if ((uint64_t)timeout > tier->max_timeout_ms || (uint64_t)memory > tier->max_memory_mb)
		return ze(err, ZE_INVALID_LIMITS, "the defaults exceed the tier; give timeout_ms and memory_mb");
	if ((r = check_on_failure(&k, &in, slug, err)) < 0)
		return r;
	if (check_code(req, app, in.language, in.code, in.entry_point, slug))
		return 0;
	json_t *j = NULL;
	r = store_function_create(k.c, k.p.id, &in, slug, timeout, memory, exec_code_wants_db(in.code), &j, err);
	if (r < 0)
		return r;
	zlog(ZLOG_INFO, "function_created", "request_id", http_request_id(req), "project", k.p.id, "function", slug,
	     NULL);
	return api_created(req, j);
}

HANDLER(h_function_get)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_FUNCTION | STORE_JSON, &k, err);
	if (r < 0)
		return r;
	json_object_set_new(k.json, "code", json_string(k.f.code));
	return api_ok(req, json_incref(k.json));
}

/* "change_language": true, taken out of a PATCH body (it is not a field of
 * the function): without it a PATCH that names another language is refused,
 * so that a deploy of the wrong file does not silently replace a function. */
static int take_change_language(json_t *body, bool *ret, struct zerr *err)
{
	json_t *v = json_object_get(body, "change_language");
	*ret = false;
	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return ze(err, ZE_BAD_REQUEST, "change_language must be true or false");
	*ret = json_is_true(v);
	json_object_del(body, "change_language");
	return 0;
}

static int check_language_change(const struct function *f, const char *language, bool allowed, struct zerr *err)
{
	if (!language || strcmp(language, f->language) == 0 || allowed)
		return 0;
	return ze(err, ZE_LANGUAGE_CHANGE,
	          "function \"%s\" is %s (version %" PRId64 "); this would replace it with %s: send "
	          "\"change_language\": true to do so",
	          f->slug, f->language, f->version, language);
}

HANDLER(h_function_patch)
{
	_cleanup_call_ struct call k;
	_cleanup_json_ json_t *body = NULL;
	int r = api_begin_body(req, app, STORE_FUNCTION, &k, &body, err);
	if (r < 0)
		return r;
	struct val_function in;
	json_t *j = NULL;
	bool change_language = false;
	if (json_is_object(body))
		r = take_change_language(body, &change_language, err);
	if (r == 0)
		r = val_function(body, tiers_for(&app->tiers, k.p.tier), app->cfg.max_code_bytes, false, &in, err);
	if (r == 0)
		r = check_language_change(&k.f, in.language, change_language, err);
	if (r == 0)
		r = check_on_failure(&k, &in, in.slug ? in.slug : k.f.slug, err);
	if (r < 0)
		return r;
	/* Checked when what runs changes: the code, its entry point or its
	 * language. */
	const char *language = in.language ? in.language : k.f.language;
	const char *code = in.code ? in.code : k.f.code;
	const char *entry = in.entry_point ? in.entry_point : k.f.entry_point;
	if ((strcmp(language, k.f.language) != 0 || !k.f.code || strcmp(code, k.f.code) != 0 ||
	     strcmp(entry, k.f.entry_point) != 0) &&
	    check_code(req, app, language, code, entry, k.f.slug))
		return 0;
	if (r == 0)
		r = store_function_update(k.c, k.f.id, &in, in.code && exec_code_wants_db(in.code), &j, err);
	return r < 0 ? r : api_ok(req, j);
}

HANDLER(h_function_delete)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_FUNCTION, &k, err);
	if (r == 0)
		r = store_function_delete(k.c, k.f.id, err);
	return r < 0 ? r : api_ok(req, json_pack("{s:b}", "deleted", 1));
}

HANDLER(h_versions_list)
{
	_cleanup_call_ struct call k;
	json_t *j = NULL;
	int r = api_begin(req, app, STORE_FUNCTION, &k, err);
	if (r == 0)
		r = store_versions_list(k.c, k.f.id, &j, err);
	return r < 0 ? r : api_ok(req, j);
}

HANDLER(h_rollback)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_FUNCTION, &k, err);
	if (r < 0)
		return r;
	uint64_t v;
	if (util_parse_u64(http_param(req, "v"), 1, INT32_MAX, &v) < 0)
		return ze(err, ZE_NOT_FOUND, "no such version");
	if ((int64_t)v == k.f.version)
		return ze(err, ZE_ALREADY_CURRENT, "version %" PRIu64 " is the current one", v);
	json_t *j = NULL;
	r = store_function_rollback(k.c, k.f.id, (int64_t)v, &j, err);
	if (r < 0)
		return r;
	json_object_set_new(j, "rolled_back_to", json_integer((json_int_t)v));
	/* A version is the function's code and config, env vars included. */
	json_object_set_new(
	    j, "restored",
	    json_pack("[s,s,s,s,s,s]", "code", "language", "entry_point", "timeout_ms", "memory_mb", "env_vars"));
	return api_ok(req, j);
}

/* ---- invocations --------------------------------------------------------- */

/* Run and answer: the status follows the outcome (errors.h). */
static int invoke_and_reply(struct http_request *req, struct app *app, const struct project *p,
                            const struct function *f, json_t *payload, const char *trigger, struct zerr *err)
{
	struct inv_call call = {.project = p,
	                        .function = f,
	                        .payload = payload,
	                        .trigger = trigger,
	                        .request_id = http_request_id(req),
	                        .wait_ms = app->cfg.queue_wait_ms};
	struct inv_result res;
	int r = inv_run(app, &call, &res, err);
	if (r < 0)
		return r;
	http_log_field(req, "invocation_id", res.id);
	http_reply_json(req, errors_outcome_status(res.outcome), inv_response(&res));
	inv_result_done(&res);
	return 0;
}

HANDLER(h_invoke)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_FUNCTION, &k, err);
	if (r < 0)
		return r;
	size_t len = 0;
	http_body(req, &len);
	_cleanup_json_ json_t *body = len ? body_json(req, err) : json_object();
	if (!body)
		return err->code;
	if (!json_is_object(body))
		return ze(err, ZE_BAD_REQUEST, "want {\"payload\": ...}");
	if (api_prefers_async(req))
		return api_enqueue(req, &k, json_object_get(body, "payload"), "async", err);
	/* No connection is held while waiting for a slot or running. */
	call_drop_conn(&k);
	return invoke_and_reply(req, app, &k.p, &k.f, json_object_get(body, "payload"), "api", err);
}

/* One %-decoded part of a form body ('+' is a space) as a JSON string;
 * NULL with err filled when an escape is malformed, a NUL is decoded or the
 * text is not UTF-8. */
static json_t *form_string(const char *s, size_t n, const char *what, size_t field, struct zerr *err)
{
	_cleanup_free_ char *out = malloc(n + 1);
	if (!out) {
		zerr_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		int hi = 0, lo = 0;
		if (s[i] == '+') {
			out[k++] = ' ';
		} else if (s[i] != '%') {
			out[k++] = s[i];
		} else if (i + 2 < n && (hi = codec_hex_digit(s[i + 1])) >= 0 &&
		           (lo = codec_hex_digit(s[i + 2])) >= 0 && (hi | lo)) {
			out[k++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			ze(err, ZE_BAD_REQUEST, "form body: field %zu: the %s has a malformed %%-escape (or %%00)",
			   field, what);
			return NULL;
		}
	}
	json_t *j = json_stringn(out, k);
	if (!j)
		ze(err, ZE_BAD_REQUEST, "form body: field %zu: the %s is not UTF-8", field, what);
	return j;
}

/* An application/x-www-form-urlencoded body as a JSON object of strings. A
 * name given more than once is an array of its values in order; fields
 * without a name are refused; at most FORM_MAX_FIELDS. */
#define FORM_MAX_FIELDS 1000
static json_t *form_object(const char *body, size_t len, struct zerr *err)
{
	_cleanup_json_ json_t *obj = json_object();
	if (!obj) {
		zerr_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	size_t field = 0;
	for (size_t at = 0; at < len;) {
		const char *start = body + at, *amp = memchr(start, '&', len - at);
		size_t n = amp ? (size_t)(amp - start) : len - at;
		at += n + 1;
		if (n == 0)
			continue;
		if (++field > FORM_MAX_FIELDS) {
			ze(err, ZE_BAD_REQUEST, "form body: at most %d fields", FORM_MAX_FIELDS);
			return NULL;
		}
		const char *eq = memchr(start, '=', n);
		size_t nlen = eq ? (size_t)(eq - start) : n;
		if (nlen == 0) {
			ze(err, ZE_BAD_REQUEST, "form body: field %zu has no name", field);
			return NULL;
		}
		_cleanup_json_ json_t *name = form_string(start, nlen, "name", field, err);
		_cleanup_json_ json_t *value =
		    name ? form_string(eq ? eq + 1 : start + n, eq ? n - nlen - 1 : 0, "value", field, err) : NULL;
		if (!value)
			return NULL;
		const char *key = json_string_value(name);
		json_t *prev = json_object_get(obj, key);
		int r;
		if (!prev)
			r = json_object_set(obj, key, value);
		else if (json_is_array(prev))
			r = json_array_append(prev, value);
		else
			r = json_object_set_new(obj, key, json_pack("[O,O]", prev, value));
		if (r < 0) {
			zerr_set(err, -ENOMEM, "out of memory");
			return NULL;
		}
	}
	return TAKE_PTR(obj);
}

/* Whether the request's Content-Type is type (parameters ignored). */
static bool content_type_is(struct http_request *req, const char *type)
{
	const char *ct = http_header(req, "content-type");
	size_t n = strlen(type);
	if (!ct)
		return false;
	ct += strspn(ct, " \t");
	return strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t');
}

/* The payload of a public invocation: an empty body is null; a form body
 * (application/x-www-form-urlencoded) an object of its fields; anything
 * else JSON. */
static json_t *public_payload(struct http_request *req, struct zerr *err)
{
	size_t len = 0;
	const char *body = http_body(req, &len);
	if (len == 0)
		return json_null();
	if (content_type_is(req, "application/x-www-form-urlencoded"))
		return form_object(body, len, err);
	return body_json(req, err);
}

/* Public invocation by API key: the key names the project, and slugs are
 * unique within a project, so /api/functions/{slug} is never ambiguous. */
HANDLER(h_api_invoke)
{
	_cleanup_call_ struct call k;
	int r = api_begin_key(req, app, http_param(req, "slug"), &k, err);
	if (r < 0)
		return r;
	_cleanup_json_ json_t *payload = public_payload(req, err);
	if (!payload)
		return err->code;
	if (api_prefers_async(req))
		return api_enqueue(req, &k, payload, "async", err);
	call_drop_conn(&k);
	return invoke_and_reply(req, app, &k.p, &k.f, payload, "api_key", err);
}

HANDLER(h_invocations_list)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_FUNCTION, &k, err);
	if (r < 0)
		return r;
	const char *ls = NULL, *os = NULL;
	uint64_t limit = 20, offset = 0;
	int ql = http_query(req, "limit", &ls), qo = http_query(req, "offset", &os);
	if ((ql != 0 && ql != -ENOENT) || (qo != 0 && qo != -ENOENT) ||
	    (ql == 0 && ls && util_parse_u64(ls, 1, 100, &limit) < 0) ||
	    (qo == 0 && os && util_parse_u64(os, 0, 1000000, &offset) < 0))
		return ze(err, ZE_BAD_REQUEST, "limit is 1..100, offset 0..1000000");
	/* Records are written in batches: what this node ran is in. */
	records_flush(app->records, 2000);
	json_t *j = NULL;
	r = store_invocations_list(k.c, k.f.id, limit, offset, &j, err);
	if (r < 0)
		return r;
	json_t *body =
	    json_pack("{s:o, s:I, s:I}", "invocations", j, "limit", (json_int_t)limit, "offset", (json_int_t)offset);
	if (json_array_size(j) == limit)
		json_object_set_new(body, "next_offset", json_integer((json_int_t)(offset + limit)));
	return api_ok(req, body);
}

HANDLER(h_invocation_get)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_FUNCTION, &k, err);
	if (r < 0)
		return r;
	records_flush(app->records, 2000);
	json_t *j = NULL;
	r = store_invocation_get(k.c, k.f.id, http_param(req, "iid"), &j, err);
	return r < 0 ? r : api_ok(req, j);
}

/* ---- users and login ----------------------------------------------------- */

/* A session token for uid: {token, expires_at}. It is signed no earlier than
 * the user's tokens_not_before (store.h), so a login in the second of a
 * password change is not refused with the sessions it ended. */
static int sign_session(struct app *app, const char *uid, int64_t not_before, json_t **ret, struct zerr *err)
{
	int64_t now = (int64_t)time(NULL);
	int64_t iat = now > not_before ? now : not_before, exp = iat + (int64_t)app->cfg.token_ttl_s;
	_cleanup_free_ char *token = NULL;
	int r = auth_jwt_sign(app->jwt_key, app->jwt_key_len, uid, iat, exp, &token, err);
	if (r < 0)
		return r;
	char expires[40];
	time_t e = (time_t)exp;
	struct tm tm;
	gmtime_r(&e, &tm);
	strftime(expires, sizeof(expires), "%Y-%m-%dT%H:%M:%SZ", &tm);
	*ret = json_pack("{s:s, s:s}", "token", token, "expires_at", expires);
	return *ret ? 0 : zerr_set(err, -ENOMEM, "out of memory");
}

HANDLER(h_login)
{
	_cleanup_json_ json_t *body = body_json(req, err);
	if (!body)
		return err->code;
	const char *email, *password;
	/* Bounds checked before the user is looked up, so that the answer's
	 * timing says nothing of which emails exist. */
	int r = val_login(body, &email, &password, err);
	if (r < 0)
		return r;
	_cleanup_call_ struct call k = {.app = app};
	r = take_conn(&k, err);
	if (r < 0)
		return r;
	char uid[STORE_ID_LEN + 1] = "";
	_cleanup_free_ char *hash = NULL;
	_cleanup_json_ json_t *user = NULL;
	int64_t not_before = 0;
	r = store_user_for_login(k.c, email, uid, &hash, &not_before, &user, err);
	if (r < 0 && r != -ZE_NOT_FOUND)
		return r;
	bool found = r == 0, ok = false;
	call_end(&k);
	if (limiter_acquire(&app->login_limiter, "login", 0, 5000) < 0)
		return ze(err, ZE_LOGIN_BUSY, "too many logins at once; retry shortly");
	/* The same work whether the user exists or not. */
	r = auth_password_verify(password, found ? hash : NULL, &ok, NULL);
	limiter_release(&app->login_limiter, "login");
	if (r < 0 || !found || !ok) {
		zlog(ZLOG_INFO, "login_failed", "request_id", http_request_id(req), "client", http_client_addr(req),
		     NULL);
		return ze(err, ZE_INVALID_CREDENTIALS, "wrong email or password");
	}
	json_t *body_out = NULL;
	r = sign_session(app, uid, not_before, &body_out, err);
	if (r < 0)
		return r;
	json_object_set(body_out, "user", user);
	return api_ok(req, body_out);
}

/* POST /auth/password: the caller changes their own password. Every session
 * signed before the change ends; the answer carries a new one. */
HANDLER(h_password)
{
	_cleanup_call_ struct call k;
	_cleanup_json_ json_t *body = NULL;
	int r = api_begin_body(req, app, STORE_USER, &k, &body, err);
	if (r < 0)
		return r;
	const char *current, *new_pw;
	_cleanup_free_ char *email = NULL, *hash = NULL, *new_hash = NULL;
	r = val_password_change(body, &current, &new_pw, err);
	if (r == 0)
		r = store_user_password(k.c, k.u.id, &email, &hash, err);
	if (r == 0)
		r = val_password(new_pw, email, err);
	if (r < 0)
		return r;
	/* No connection is held while hashing, which the login limiter bounds. */
	call_drop_conn(&k);
	if (limiter_acquire(&app->login_limiter, "login", 0, 5000) < 0)
		return ze(err, ZE_LOGIN_BUSY, "too many logins at once; retry shortly");
	bool ok = false;
	r = auth_password_verify(current, hash, &ok, err);
	bool same = r == 0 && ok && strcmp(current, new_pw) == 0;
	if (r == 0 && ok && !same)
		r = auth_password_hash(new_pw, &new_hash, err);
	limiter_release(&app->login_limiter, "login");
	if (r < 0)
		return r;
	if (!ok) {
		zlog(ZLOG_INFO, "password_change_refused", "request_id", http_request_id(req), "user", k.u.id, NULL);
		return ze(err, ZE_WRONG_PASSWORD, "current_password is not the account's password");
	}
	if (same)
		return ze(err, ZE_INVALID_PASSWORD, "the new password is the current one");
	int64_t not_before = 0;
	json_t *out = NULL;
	r = take_conn(&k, err);
	if (r == 0)
		r = store_user_set_password(k.c, k.u.id, new_hash, &not_before, err);
	if (r == 0)
		r = sign_session(app, k.u.id, not_before, &out, err);
	if (r < 0)
		return r;
	zlog(ZLOG_INFO, "password_changed", "request_id", http_request_id(req), "user", k.u.id, NULL);
	return api_ok(req, out);
}

HANDLER(h_users_create)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_USER, &k, err);
	if (r < 0)
		return r;
	if (!k.u.admin)
		return ze(err, ZE_FORBIDDEN, "only an admin creates users");
	_cleanup_json_ json_t *body = body_json(req, err);
	if (!body)
		return err->code;
	const char *email, *password;
	bool admin;
	_cleanup_free_ char *hash = NULL;
	json_t *j = NULL;
	r = val_new_user(body, &email, &password, &admin, err);
	if (r == 0)
		r = auth_password_hash(password, &hash, err);
	if (r == 0)
		r = store_user_create(k.c, email, hash, admin, &j, err);
	return r < 0 ? r : api_created(req, j);
}

HANDLER(h_users_list)
{
	_cleanup_call_ struct call k;
	int r = api_begin(req, app, STORE_USER, &k, err);
	if (r < 0)
		return r;
	if (!k.u.admin)
		return ze(err, ZE_FORBIDDEN, "only an admin lists users");
	json_t *j = NULL;
	r = store_users_list(k.c, &j, err);
	return r < 0 ? r : api_ok(req, json_pack("{s:o}", "users", j));
}

/* ---- health and metrics -------------------------------------------------- */

HANDLER(h_healthz)
{
	_cleanup_call_ struct call k = {.app = app};
	int r = take_conn(&k, err);
	if (r < 0)
		return r;
	if (store_ping(k.c, err) < 0)
		return ze(err, ZE_UNAVAILABLE, "the database does not answer");
	return api_ok(req, json_pack("{s:s}", "status", "ok"));
}

HANDLER(h_metrics)
{
	_cleanup_buf_ struct buf out = BUF_INIT(METRICS_TEXT_MAX);
	int r = metrics_render(app, &out);
	if (r < 0)
		return zerr_set(err, r, "metrics text: %s", strerror(-r));
	http_reply_text(req, 200, "text/plain; version=0.0.4", out.data, out.len);
	return 0;
}

void h_logs_stream(struct http_request *req, void *app); /* api_logs.c */

const struct http_route app_routes[] = {
    {"GET", "/", h_ui_index},
    {"GET", "/ui/{file}", h_ui_asset},
    {"GET", "/healthz", h_healthz},
    {"GET", "/metrics", h_metrics},
    {"POST", "/auth/login", h_login},
    {"POST", "/auth/password", h_password},
    {"POST", "/users", h_users_create},
    {"GET", "/users", h_users_list},
    {"GET", "/projects", h_projects_list},
    {"POST", "/projects", h_projects_create},
    {"GET", "/projects/{pid}", h_project_get},
    {"PATCH", "/projects/{pid}", h_project_patch},
    {"DELETE", "/projects/{pid}", h_project_delete},
    {"GET", "/projects/{pid}/members", h_members_list},
    {"POST", "/projects/{pid}/members", h_members_add},
    {"DELETE", "/projects/{pid}/members/{uid}", h_member_remove},
    {"GET", "/projects/{pid}/api-keys", h_keys_list},
    {"POST", "/projects/{pid}/api-keys", h_keys_create},
    {"DELETE", "/projects/{pid}/api-keys/{kid}", h_key_delete},
    {"GET", "/projects/{pid}/functions", h_functions_list},
    {"POST", "/projects/{pid}/functions", h_functions_create},
    {"GET", "/projects/{pid}/functions/{fid}", h_function_get},
    {"PATCH", "/projects/{pid}/functions/{fid}", h_function_patch},
    {"DELETE", "/projects/{pid}/functions/{fid}", h_function_delete},
    {"POST", "/projects/{pid}/functions/{fid}/invoke", h_invoke},
    {"GET", "/projects/{pid}/functions/{fid}/invocations", h_invocations_list},
    {"GET", "/projects/{pid}/functions/{fid}/invocations/{iid}", h_invocation_get},
    {"GET", "/projects/{pid}/functions/{fid}/versions", h_versions_list},
    {"GET", "/projects/{pid}/functions/{fid}/logs/stream", h_logs_stream},
    {"POST", "/projects/{pid}/functions/{fid}/versions/{v}/rollback", h_rollback},
    {"POST", "/api/functions/{slug}", h_api_invoke},
    {"GET", "/projects/{pid}/dead-letters", h_dead_letters_list},
    {"POST", "/projects/{pid}/dead-letters/{id}/retry", h_dead_letter_retry},
    {"GET", "/projects/{pid}/triggers", h_triggers_list},
    {"POST", "/projects/{pid}/triggers", h_triggers_create},
    {"GET", "/projects/{pid}/triggers/{tid}", h_trigger_get},
    {"PATCH", "/projects/{pid}/triggers/{tid}", h_trigger_patch},
    {"DELETE", "/projects/{pid}/triggers/{tid}", h_trigger_delete},
    {"POST", "/projects/{pid}/triggers/{tid}/rotate-secret", h_trigger_rotate_secret},
    {"POST", "/webhooks/{tid}", h_webhook},
    {"POST", "/projects/{pid}/events", h_events_emit},
    {"POST", "/projects/{pid}/sql", h_project_sql},
};
const size_t app_n_routes = ELEMENTSOF(app_routes);
