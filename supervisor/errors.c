/* errors.c - see errors.h */
#include "errors.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "utf8.h"

static const struct {
	unsigned status;
	const char *code;
	const char *retry_after;
} domain[ZE_END - ZE_BASE] = {
    [ZE_BAD_REQUEST - ZE_BASE] = {400, "BAD_REQUEST", NULL},
    [ZE_UNKNOWN_FIELD - ZE_BASE] = {400, "UNKNOWN_FIELD", NULL},
    [ZE_INVALID_NAME - ZE_BASE] = {400, "INVALID_NAME", NULL},
    [ZE_INVALID_SLUG - ZE_BASE] = {400, "INVALID_SLUG", NULL},
    [ZE_INVALID_TIER - ZE_BASE] = {400, "INVALID_TIER", NULL},
    [ZE_INVALID_LANGUAGE - ZE_BASE] = {400, "INVALID_LANGUAGE", NULL},
    [ZE_INVALID_ENTRY_POINT - ZE_BASE] = {400, "INVALID_ENTRY_POINT", NULL},
    [ZE_INVALID_CODE - ZE_BASE] = {400, "INVALID_CODE", NULL},
    [ZE_INVALID_TIMEOUT - ZE_BASE] = {400, "INVALID_TIMEOUT", NULL},
    [ZE_INVALID_MEMORY - ZE_BASE] = {400, "INVALID_MEMORY", NULL},
    [ZE_INVALID_LIMITS - ZE_BASE] = {400, "INVALID_LIMITS", NULL},
    [ZE_INVALID_ENV_VARS - ZE_BASE] = {400, "INVALID_ENV_VARS", NULL},
    [ZE_RESERVED_ENV_VAR - ZE_BASE] = {400, "RESERVED_ENV_VAR", NULL},
    [ZE_INVALID_EMAIL - ZE_BASE] = {400, "INVALID_EMAIL", NULL},
    [ZE_INVALID_PASSWORD - ZE_BASE] = {400, "INVALID_PASSWORD", NULL},
    [ZE_UNAUTHORIZED - ZE_BASE] = {401, "UNAUTHORIZED", NULL},
    [ZE_INVALID_TOKEN - ZE_BASE] = {401, "INVALID_TOKEN", NULL},
    [ZE_TOKEN_EXPIRED - ZE_BASE] = {401, "TOKEN_EXPIRED", NULL},
    [ZE_INVALID_API_KEY - ZE_BASE] = {401, "INVALID_API_KEY", NULL},
    [ZE_INVALID_CREDENTIALS - ZE_BASE] = {401, "INVALID_CREDENTIALS", NULL},
    [ZE_FORBIDDEN - ZE_BASE] = {403, "FORBIDDEN", NULL},
    [ZE_PROJECT_LIMIT - ZE_BASE] = {403, "PROJECT_LIMIT", NULL},
    [ZE_NOT_FOUND - ZE_BASE] = {404, "NOT_FOUND", NULL},
    [ZE_CONFLICT - ZE_BASE] = {409, "CONFLICT", NULL},
    [ZE_ALREADY_CURRENT - ZE_BASE] = {409, "ALREADY_CURRENT", NULL},
    [ZE_FUNCTION_DISABLED - ZE_BASE] = {409, "FUNCTION_DISABLED", NULL},
    [ZE_RATE_LIMITED - ZE_BASE] = {429, "RATE_LIMITED", "1"},
    [ZE_QUOTA_EXCEEDED - ZE_BASE] = {429, "QUOTA_EXCEEDED", "3600"},
    [ZE_LOGIN_BUSY - ZE_BASE] = {429, "RATE_LIMITED", "1"},
    [ZE_UNAVAILABLE - ZE_BASE] = {503, "UNAVAILABLE", "1"},
    [ZE_INVALID_TRIGGER - ZE_BASE] = {400, "INVALID_TRIGGER", NULL},
    [ZE_INVALID_EVENT_SETTINGS - ZE_BASE] = {400, "INVALID_EVENT_SETTINGS", NULL},
    [ZE_INVALID_IDEMPOTENCY_KEY - ZE_BASE] = {400, "INVALID_IDEMPOTENCY_KEY", NULL},
    [ZE_IDEMPOTENCY_KEY_REUSED - ZE_BASE] = {422, "IDEMPOTENCY_KEY_REUSED", NULL},
    [ZE_INVALID_SIGNATURE - ZE_BASE] = {401, "INVALID_SIGNATURE", NULL},
    [ZE_STALE_TIMESTAMP - ZE_BASE] = {401, "STALE_TIMESTAMP", NULL},
    [ZE_INVALID_EVENT - ZE_BASE] = {400, "INVALID_EVENT", NULL},
    [ZE_INVALID_EGRESS - ZE_BASE] = {400, "INVALID_EGRESS", NULL},
    [ZE_SQL_ERROR - ZE_BASE] = {400, "SQL_ERROR", NULL},
    [ZE_WRONG_PASSWORD - ZE_BASE] = {403, "WRONG_PASSWORD", NULL},
    [ZE_LANGUAGE_CHANGE - ZE_BASE] = {409, "LANGUAGE_CHANGE", NULL},
    [ZE_SYNTAX_ERROR - ZE_BASE] = {400, "SYNTAX_ERROR", NULL},
    [ZE_HANDLER_NOT_FOUND - ZE_BASE] = {400, "HANDLER_NOT_FOUND", NULL},
};

int ze(struct zerr *err, enum ze_code code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		err->code = -(int)code;
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return -(int)code;
}

void errors_lookup(int code, struct ze_reply *ret)
{
	int c = -code;
	if (c >= ZE_BASE && c < ZE_END && domain[c - ZE_BASE].code) {
		*ret = (struct ze_reply){domain[c - ZE_BASE].status, domain[c - ZE_BASE].code, NULL,
		                         domain[c - ZE_BASE].retry_after};
		return;
	}
	switch (c) {
	case EEXIST:
		/* A unique constraint: the only one a client can run into is a
		 * name or slug taken. */
		*ret = (struct ze_reply){409, "CONFLICT", "that name or slug is already taken", NULL};
		return;
	case ETIMEDOUT:
	case ECONNRESET:
	case ECONNREFUSED:
	case EAGAIN:
	case EBUSY:
		*ret = (struct ze_reply){503, "UNAVAILABLE", "the service is busy or restarting; retry shortly", "1"};
		return;
	default:
		*ret = (struct ze_reply){500, "INTERNAL", "an internal error occurred", NULL};
	}
}

void errors_reply(struct http_request *req, int code, const struct zerr *err)
{
	struct ze_reply rp;
	errors_lookup(code, &rp);
	if (rp.retry_after)
		http_add_header(req, "Retry-After", rp.retry_after);
	if (!rp.message) {
		http_reply_error(req, rp.status, rp.code, "%s", err && err->msg[0] ? err->msg : rp.code);
		return;
	}
	zlog(ZLOG_ERROR, "request_failed", "request_id", http_request_id(req), "error", err ? err->msg : "", NULL);
	http_reply_error(req, rp.status, rp.code, "%s; see the server log (request %s)", rp.message,
	                 http_request_id(req));
}

void errors_reply_detail(struct http_request *req, int code, const struct zerr *err, json_t *detail)
{
	struct ze_reply rp;
	errors_lookup(code, &rp);
	if (rp.message || !json_is_object(detail) || !err) {
		errors_reply(req, code, err);
		return;
	}
	/* The message is the client's (a domain code): cut at a character,
	 * never invalid UTF-8 in the body. */
	_cleanup_free_ char *msg = utf8_sanitize(err->msg, sizeof(err->msg), false);
	json_t *e = json_pack("{s:s, s:s}", "code", rp.code, "message", msg ? msg : rp.code);
	if (!e) {
		errors_reply(req, code, err);
		return;
	}
	const char *k;
	json_t *v;
	json_object_foreach (detail, k, v)
		if (strcmp(k, "code") != 0 && strcmp(k, "message") != 0)
			json_object_set(e, k, v);
	if (rp.retry_after)
		http_add_header(req, "Retry-After", rp.retry_after);
	http_reply_json(req, rp.status, json_pack("{s:o}", "error", e));
}

unsigned errors_outcome_status(enum exec_outcome o)
{
	switch (o) {
	case EXEC_SUCCESS:
		return 200;
	case EXEC_FUNCTION_ERROR:
		return 500;
	case EXEC_TIMEOUT:
		return 504;
	case EXEC_OOM:
		return 507;
	case EXEC_BAD_RESULT:
		return 502;
	case EXEC_SANDBOX_ERROR:
		break;
	}
	return 500;
}

const char *errors_outcome_code(enum exec_outcome o)
{
	switch (o) {
	case EXEC_SUCCESS:
		return "OK";
	case EXEC_FUNCTION_ERROR:
		return "FUNCTION_ERROR";
	case EXEC_TIMEOUT:
		return "FUNCTION_TIMEOUT";
	case EXEC_OOM:
		return "FUNCTION_OOM";
	case EXEC_BAD_RESULT:
		return "BAD_RESULT";
	case EXEC_SANDBOX_ERROR:
		break;
	}
	return "SANDBOX_ERROR";
}
