/* invoke.c - see invoke.h */
#define _GNU_SOURCE
#include "invoke.h"

#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "buf.h"
#include "db.h"
#include "egress_policy.h"
#include "emit.h"
#include "errors.h"
#include "log.h"
#include "logstream.h"
#include "metrics.h"
#include "result.h"
#include "utf8.h"

#define RESULT_EXCERPT_BYTES 1024
/* A payload's compact JSON text is kept with its record up to this many
 * bytes; a longer one is not kept (payload_truncated). */
#define RECORD_PAYLOAD_BYTES 65536

void inv_uuid(char out[STORE_ID_LEN + 1])
{
	uint8_t b[16];
	if (auth_random_bytes(b, sizeof(b), NULL) < 0)
		memset(b, 0, sizeof(b));
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, STORE_ID_LEN + 1, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
	         b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

void inv_timestamp_now(char out[INV_TIMESTAMP_LEN])
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, INV_TIMESTAMP_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, INV_TIMESTAMP_LEN - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

static double now_epoch_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Cut s to at most max bytes on a character boundary, marking the cut. */
static void cut_excerpt(char *s, size_t max)
{
	size_t n = strlen(s);
	if (n <= max)
		return;
	memcpy(s + utf8_cut_len(s, n, max - 3), "...", 4);
}

static int payload_append(const char *s, size_t n, void *data)
{
	return buf_append(data, s, n) < 0 ? -1 : 0;
}

/* The payload's compact JSON text when it is at most RECORD_PAYLOAD_BYTES
 * (the buffer grows with the text and the dump stops at the bound: a small
 * payload costs a small buffer, a large one no copy); NULL otherwise, or
 * out of memory. */
static char *payload_text(const json_t *payload)
{
	struct buf b = BUF_INIT(RECORD_PAYLOAD_BYTES + 1);
	if (json_dump_callback(payload ? payload : json_null(), payload_append, &b, JSON_COMPACT | JSON_ENCODE_ANY) <
	        0 ||
	    b.failed || !b.data) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

struct record {
	const char *id, *start, *status;
	double started_ms, duration_ms, cpu_ms;
	uint64_t memory_bytes;
	uint64_t egress_requests, egress_bytes, egress_refused;
	json_t *result; /* borrowed */
	json_t *error;  /* borrowed */
	const char *logs;
	bool logs_truncated;
};

/* Exactly one record per invocation, whatever became of it; written by the
 * record writer, off the caller's path. */
static void record(struct app *app, const struct inv_call *call, const struct record *rec)
{
	_cleanup_free_ char *result = rec->result ? json_dumps(rec->result, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	if (result)
		cut_excerpt(result, RESULT_EXCERPT_BYTES);
	json_t *o =
	    json_pack("{s:s, s:s, s:s, s:I, s:s, s:s?, s:I, s:s?, s:s, s:f, s:f, s:f, s:I, s:s?, s:s?, s:b, s:O?}",
	              "id", rec->id, "function_id", call->function->id, "project_id", call->project->id, "version",
	              (json_int_t)call->function->version, "trigger", call->trigger, "trigger_id", call->trigger_id,
	              "attempt", (json_int_t)(call->attempt ? call->attempt : 1), "start", rec->start, "status",
	              rec->status, "started_at_ms", rec->started_ms, "duration_ms", rec->duration_ms, "cpu_ms",
	              rec->cpu_ms, "memory_bytes", (json_int_t)rec->memory_bytes, "result_excerpt", result, "logs",
	              rec->logs ? rec->logs : "", "logs_truncated", rec->logs_truncated, "error", rec->error);
	if (o && (rec->egress_requests || rec->egress_bytes || rec->egress_refused) &&
	    (json_object_set_new(o, "egress_requests", json_integer((json_int_t)rec->egress_requests)) < 0 ||
	     json_object_set_new(o, "egress_bytes", json_integer((json_int_t)rec->egress_bytes)) < 0 ||
	     json_object_set_new(o, "egress_refused", json_integer((json_int_t)rec->egress_refused)) < 0)) {
		json_decref(o);
		o = NULL;
	}
	_cleanup_free_ char *payload = payload_text(call->payload);
	bool cut = !payload;
	if (o && (json_object_set_new(o, "payload_truncated", json_boolean(cut)) < 0 ||
	          (!cut && json_object_set_new(o, "payload", json_string(payload)) < 0))) {
		json_decref(o);
		o = NULL;
	}
	if (!o) {
		zlog(ZLOG_ERROR, "record_lost", "invocation_id", rec->id, "error", "cannot encode the record", NULL);
		return;
	}
	if (call->ret_record) {
		*call->ret_record = o;
		return;
	}
	records_push(app->records, o);
}

/* A refusal before anything ran: one record, and the code to answer. */
static int rejected(struct app *app, const struct inv_call *call, int code, struct zerr *err)
{
	/* A queued job that finds no slot waits its turn on the queue: it is
	 * not refused, and its record stays the queued one. */
	if (call->queued && code == -ZE_RATE_LIMITED)
		return code;
	char id[STORE_ID_LEN + 1];
	if (call->invocation_id)
		snprintf(id, sizeof(id), "%s", call->invocation_id);
	else
		inv_uuid(id);
	struct ze_reply rp;
	errors_lookup(code, &rp);
	json_t *error = json_pack("{s:s, s:s}", "code", rp.code, "message", err->msg);
	struct record rec = {.id = id, .status = "rejected", .started_ms = now_epoch_ms(), .error = error};
	record(app, call, &rec);
	json_decref(error);
	metrics_count_rejection(&app->metrics, code);
	return code;
}

/* Count the invocation against the monthly cap (usage.h: in memory while
 * the project is far from it). */
static int take_quota(struct app *app, const struct inv_call *call, const struct tier *tier, struct zerr *err)
{
	const struct project *p = call->project;
	uint64_t cap = p->monthly_cap >= 0 ? (uint64_t)p->monthly_cap : tier->monthly_invocations;
	bool ok = false;
	int r = usage_take(app->usage, p->id, cap, &ok, err);
	if (r == 0 && !ok)
		return ze(err, ZE_QUOTA_EXCEEDED, "the project's monthly invocation cap is reached");
	return r;
}

/* The events a successful run emitted (zmesh.emit), fanned out to the
 * project's triggers once it has returned: each its own statement, so an
 * event is queued or not, whatever the others do. Refused all together
 * beyond the tier's emits_per_invocation, and past EMIT_MAX_DEPTH: an
 * invocation run by an event of depth d emits events of depth d + 1. */
static int run_emits(struct app *app, const struct inv_call *call, const struct tier *tier, const char *invocation_id,
                     json_t *emits, struct zerr *err)
{
	size_t n = json_array_size(emits);
	if (n == 0)
		return 0;
	if (n > tier->emits_per_invocation)
		return zerr_set(err, -E2BIG, "emitted %zu events; the %s tier allows %" PRIu64 " per invocation", n,
		                tier->name, tier->emits_per_invocation);
	json_int_t depth = 0;
	if (call->trigger && strcmp(call->trigger, "event") == 0) {
		depth = json_integer_value(json_object_get(call->payload, "depth"));
		depth = depth < 1 ? 1 : depth;
	}
	if (depth + 1 > EMIT_MAX_DEPTH)
		return zerr_set(
		    err, -ELOOP,
		    "an event chain stops at depth %d: this invocation ran for an event of depth %lld, so the "
		    "%zu event(s) it emitted were not queued",
		    EMIT_MAX_DEPTH, (long long)depth, n);
	PGconn *c = db_acquire(app->pool);
	if (!c)
		return zerr_set(err, -EAGAIN, "no database connection to queue the emitted events");
	int r = 0;
	size_t i, queued = 0;
	json_t *e;
	json_array_foreach (emits, i, e) {
		struct emit_event ev = {.type = json_string_value(json_object_get(e, "type")),
		                        .data = json_object_get(e, "data"),
		                        .event_id = json_string_value(json_object_get(e, "event_id")),
		                        .source = invocation_id,
		                        .depth = (int)depth + 1};
		uint64_t matched = 0;
		r = emit_event(app, c, call->project->id, &ev, &matched, err);
		if (r < 0)
			break;
		queued++;
	}
	db_release(app->pool, c);
	if (r < 0) {
		char why[sizeof(err->msg)];
		snprintf(why, sizeof(why), "%s", err->msg);
		return zerr_set(err, r, "%zu of %zu emitted events queued, then: %s", queued, n, why);
	}
	return 0;
}

/* The project's right to go out: its policy and its tier's limits. Open
 * and none need nothing more than the mode every lookup reads; an
 * allowlist is read when an invocation starts (a change applies to the
 * next one, on every node). On failure the invocation goes out nowhere. */
static struct egress_policy *egress_for(struct app *app, const struct project *p, const struct tier *t,
                                        struct egress_ctx *ret)
{
	struct egress_policy *pol = malloc(sizeof(*pol));
	if (!pol)
		return NULL;
	egress_policy_default(pol);
	if (strcmp(p->egress_mode, "none") == 0)
		pol->mode = EGRESS_NONE;
	else if (strcmp(p->egress_mode, "open") != 0) {
		struct zerr err = {0};
		json_t *j = NULL;
		PGconn *c = db_acquire(app->pool);
		int r = c ? store_project_egress(c, p->id, &j, &err) : zerr_set(&err, -EAGAIN, "no connection");
		if (c)
			db_release(app->pool, c);
		if (r == 0)
			r = egress_policy_from_json(j, pol, &err);
		json_decref(j);
		if (r < 0) {
			zlog(ZLOG_WARN, "egress_policy_unavailable", "project", p->id, "error", err.msg, NULL);
			egress_policy_default(pol);
			pol->mode = EGRESS_NONE;
		}
	}
	*ret = (struct egress_ctx){.policy = pol,
	                           .max_requests = t->egress_requests,
	                           .max_bytes = t->egress_bytes,
	                           .connect_timeout_ms = t->egress_connect_timeout_ms};
	snprintf(ret->project_id, sizeof(ret->project_id), "%s", p->id);
	return pol;
}

int inv_run(struct app *app, const struct inv_call *call, struct inv_result *ret, struct zerr *err)
{
	const struct project *p = call->project;
	const struct function *f = call->function;
	if (!f->active)
		return ze(err, ZE_FUNCTION_DISABLED, "the function is disabled");
	const struct tier *tier = tiers_for(&app->tiers, p->tier);

	/* A slot first, then the monthly cap: an invocation refused for
	 * concurrency must not use up quota. */
	uint64_t conc = p->concurrency > 0 ? (uint64_t)p->concurrency : tier->concurrency;
	if (limiter_acquire(&app->limiter, p->id, conc, call->wait_ms) < 0)
		return rejected(app, call, ze(err, ZE_RATE_LIMITED, "too many invocations at once; retry shortly"),
		                err);
	int r = take_quota(app, call, tier, err);
	if (r < 0) {
		limiter_release(&app->limiter, p->id);
		return r == -ZE_QUOTA_EXCEEDED ? rejected(app, call, r, err) : r;
	}

	memset(ret, 0, sizeof(*ret));
	if (call->invocation_id)
		snprintf(ret->id, sizeof(ret->id), "%s", call->invocation_id);
	else
		inv_uuid(ret->id);
	/* Role, password and database are generated hex: nothing to encode.
	 * Their sizes are bounded (store.h), so the DSN always fits. */
	char dsn[ZPROTO_MAX_DSN_BYTES];
	_Static_assert(sizeof(p->db_role) + sizeof(p->db_password) + sizeof(p->db_name) + 64 < ZPROTO_MAX_DSN_BYTES,
	               "a project's DSN may not fit the protocol");
	snprintf(dsn, sizeof(dsn), "postgresql://%s:%s@/%s?host=" EXEC_PG_MOUNT, p->db_role, p->db_password,
	         p->db_name);
	struct exec_request er = {
	    .lang = strcmp(f->language, "python") == 0 ? EXEC_PY : EXEC_JS,
	    .invocation_id = ret->id,
	    .project_id = p->id,
	    .function_name = f->name,
	    .version = f->version,
	    .entry_point = f->entry_point,
	    .code = f->code,
	    .env = f->env,
	    .dsn = app->pg_socket_dir[0] ? dsn : NULL,
	    .payload = call->payload,
	    .timeout_ms = (uint64_t)f->timeout_ms,
	    .memory_mb = (uint64_t)f->memory_mb,
	    .wants_db = f->uses_db,
	};
	struct egress_ctx ectx;
	_cleanup_free_ struct egress_policy *epol = app->exec.egress ? egress_for(app, p, tier, &ectx) : NULL;
	er.egress = epol ? &ectx : NULL;
	/* Live logs: lines reach PostgreSQL as they come (logstream.h). */
	struct logsink *sink = logsink_open(p->id, f->id, ret->id);
	if (sink) {
		er.on_logs = logsink_feed;
		er.on_logs_arg = sink;
	}
	double started = now_epoch_ms();
	struct exec_result ex = {0};
	struct zerr xerr = {0};
	atomic_fetch_add(&app->metrics.active, 1);
	r = exec_run(&app->exec, &er, &ex, &xerr);
	atomic_fetch_sub(&app->metrics.active, 1);
	limiter_release(&app->limiter, p->id);
	if (r < 0) {
		/* Refused by the executor before any sandbox ran: the platform
		 * failed, the same outcome as a sandbox that could not start. */
		ex.outcome = EXEC_SANDBOX_ERROR;
		ex.error = json_pack("{s:s, s:s}", "name", "SandboxError", "message", xerr.msg);
	}
	if (ex.outcome == EXEC_SANDBOX_ERROR) {
		/* The details (host paths, slots, cgroups) are for the
		 * operator's log only. */
		zlog(ZLOG_ERROR, "sandbox_error", "request_id", call->request_id ? call->request_id : "",
		     "invocation_id", ret->id, "error", json_string_value(json_object_get(ex.error, "message")), NULL);
		json_object_set_new(ex.error, "message",
		                    json_string("the platform could not run the function; try again"));
		json_object_del(ex.error, "stack");
	}
	if (r == 0 && ex.outcome == EXEC_SUCCESS && ex.emits) {
		struct zerr eerr = {0};
		if (run_emits(app, call, tier, ret->id, ex.emits, &eerr) < 0) {
			zlog(ZLOG_WARN, "emits_refused", "invocation_id", ret->id, "error", eerr.msg, NULL);
			json_t *e = exec_error_object("EmitError", eerr.msg, "");
			if (e) {
				json_decref(ex.result);
				ex.result = NULL;
				ex.error = e;
				ex.outcome = EXEC_FUNCTION_ERROR;
			}
		}
	}
	enum exec_outcome o = ex.outcome;
	ret->outcome = o;
	ret->status = o == EXEC_SUCCESS ? "success" : o == EXEC_TIMEOUT ? "timeout" : "error";
	ret->warm = ex.warm;
	ret->wall_ms = (double)ex.report.wall_us / 1000.0;
	ret->cpu_ms = (double)ex.report.cpu_us / 1000.0;
	ret->memory_bytes = ex.report.memory_peak_bytes;
	ret->egress_requests = ex.egress_requests;
	ret->egress_bytes = ex.egress_bytes;
	ret->egress_refused = ex.egress_refused;
	metrics_count_egress(&app->metrics, p->id, ret->egress_requests, ret->egress_bytes, ret->egress_refused);
	if (o == EXEC_SUCCESS)
		ret->result = json_incref(ex.result);
	else
		ret->error =
		    json_pack("{s:s, s:O?, s:O?, s:O?}", "code", errors_outcome_code(o), "name",
		              json_object_get(ex.error, "name"), "message", json_object_get(ex.error, "message"),
		              "stack", json_object_get(ex.error, "stack"));
	struct record rec = {.id = ret->id,
	                     .start = ret->warm ? "warm" : "cold",
	                     .status = ret->status,
	                     .started_ms = started,
	                     .duration_ms = ret->wall_ms,
	                     .cpu_ms = ret->cpu_ms,
	                     .memory_bytes = ret->memory_bytes,
	                     .egress_requests = ret->egress_requests,
	                     .egress_bytes = ret->egress_bytes,
	                     .egress_refused = ret->egress_refused,
	                     .result = ex.result,
	                     .error = ret->error,
	                     .logs = ex.logs,
	                     .logs_truncated = ex.logs_truncated};
	record(app, call, &rec);
	logsink_close(sink, ex.logs_truncated, ret->status, ret->wall_ms);
	metrics_count_invocation(&app->metrics, o, ret->wall_ms);
	zlog(ZLOG_INFO, "invoke", "request_id", call->request_id ? call->request_id : "", "invocation_id", ret->id,
	     "function", f->id, "trigger", call->trigger, "outcome", errors_outcome_code(o), NULL);
	if (r < 0)
		json_decref(ex.error);
	else
		exec_result_done(&ex);
	return 0;
}

void inv_result_done(struct inv_result *r)
{
	json_decref(r->result);
	json_decref(r->error);
	r->result = r->error = NULL;
}

json_t *inv_response(const struct inv_result *r)
{
	return json_pack("{s:s, s:O, s:O, s:s, s:f, s:s, s:{s:f, s:f, s:I, s:I, s:I, s:I}}", "status", r->status,
	                 "result", r->result ? r->result : json_null(), "error", r->error ? r->error : json_null(),
	                 "invocation_id", r->id, "duration_ms", r->wall_ms, "start", r->warm ? "warm" : "cold",
	                 "metrics", "wall_ms", r->wall_ms, "cpu_ms", r->cpu_ms, "memory_bytes",
	                 (json_int_t)r->memory_bytes, "egress_requests", (json_int_t)r->egress_requests, "egress_bytes",
	                 (json_int_t)r->egress_bytes, "egress_refused", (json_int_t)r->egress_refused);
}
