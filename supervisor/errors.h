/* errors.h - one mapping from a failure to what a client is told.
 *
 * Every fallible function of zmeshd returns 0 or a negative code and fills a
 * struct zerr (common/error.h). Two kinds of code exist:
 *  - a negative errno: something failed inside (the database, memory,
 *    randomness, the sandbox). err->msg is for the operator: it is logged
 *    with the request id and never sent; the client gets the table's
 *    public message for that errno.
 *  - a domain code, -ZE_*: the request cannot be served as asked (a field
 *    is invalid, a project does not exist, a quota is reached). err->msg is
 *    written for the client (it describes their input, never the host) and
 *    is sent as the error's message.
 * errors_reply() is the only place that turns either into an HTTP status and
 * an {"error":{"code","message"}} body; no handler writes an error status.
 * The executor's outcomes (a function that threw, timed out, ran out of
 * memory) map to statuses here too. */
#pragma once

#include <stdbool.h>

#include "error.h"
#include "executor.h"
#include "http.h"

/* Far above any errno, so the two ranges never meet. */
#define ZE_BASE 100000

enum ze_code {
	ZE_BAD_REQUEST = ZE_BASE, /* 400: malformed body or parameter */
	ZE_UNKNOWN_FIELD,
	ZE_INVALID_NAME,
	ZE_INVALID_SLUG,
	ZE_INVALID_TIER,
	ZE_INVALID_LANGUAGE,
	ZE_INVALID_ENTRY_POINT,
	ZE_INVALID_CODE,
	ZE_INVALID_TIMEOUT,
	ZE_INVALID_MEMORY,
	ZE_INVALID_LIMITS,
	ZE_INVALID_ENV_VARS,
	ZE_RESERVED_ENV_VAR,
	ZE_INVALID_EMAIL,
	ZE_INVALID_PASSWORD,
	ZE_UNAUTHORIZED, /* 401 */
	ZE_INVALID_TOKEN,
	ZE_TOKEN_EXPIRED,
	ZE_INVALID_API_KEY,
	ZE_INVALID_CREDENTIALS,
	ZE_FORBIDDEN, /* 403 */
	ZE_PROJECT_LIMIT,
	ZE_NOT_FOUND, /* 404 */
	ZE_CONFLICT,  /* 409 */
	ZE_ALREADY_CURRENT,
	ZE_FUNCTION_DISABLED,
	ZE_RATE_LIMITED, /* 429 */
	ZE_QUOTA_EXCEEDED,
	ZE_LOGIN_BUSY,
	ZE_UNAVAILABLE, /* 503 */
	/* events */
	ZE_INVALID_TRIGGER,        /* 400: the message names the field */
	ZE_INVALID_EVENT_SETTINGS, /* 400: retries, max_event_age_s, on_failure */
	ZE_INVALID_IDEMPOTENCY_KEY,
	ZE_IDEMPOTENCY_KEY_REUSED, /* 422: the same key with another payload */
	ZE_INVALID_SIGNATURE,      /* 401: a webhook's signature missing or wrong */
	ZE_STALE_TIMESTAMP,        /* 401: a webhook signed too long ago (or ahead) */
	ZE_INVALID_EVENT,          /* 400: a custom event's body; the message names the field */
	ZE_INVALID_EGRESS,         /* 400: a project's egress policy; the message names the field */
	/* project SQL */
	ZE_SQL_ERROR,      /* 400: the project's database refused a statement (errors_reply_detail) */
	ZE_WRONG_PASSWORD, /* 403: POST /auth/password with a current password that is not */
	/* deploys */
	ZE_LANGUAGE_CHANGE,   /* 409: a PATCH that would change the language without change_language */
	ZE_SYNTAX_ERROR,      /* 400: the code does not compile (errors_reply_detail: file, line, column) */
	ZE_HANDLER_NOT_FOUND, /* 400: the code surely defines no entry point (errors_reply_detail: file) */
	ZE_END
};

/* Fill err with a domain code and a message for the client; returns
 * -code. */
int ze(struct zerr *err, enum ze_code code, const char *fmt, ...) _printf_(3, 4);

/* What the client is told for a failure code (a negative errno or -ZE_*). */
struct ze_reply {
	unsigned status;
	const char *code;        /* "NOT_FOUND" */
	const char *message;     /* NULL: err->msg is public (domain codes) */
	const char *retry_after; /* Retry-After header, or NULL */
};
void errors_lookup(int code, struct ze_reply *ret);

/* Answer req for a failure: status, code and message from the table. An
 * internal failure (an errno) is logged with err->msg and the request id,
 * and the client is told only the table's message and that id. */
void errors_reply(struct http_request *req, int code, const struct zerr *err);
/* errors_reply, and for a domain code the members of detail (an object,
 * borrowed; may be NULL) added to the error object beside code and message:
 * {"error": {"code", "message", "sqlstate", ...}}. */
void errors_reply_detail(struct http_request *req, int code, const struct zerr *err, json_t *detail);

/* The status and code of an invocation's outcome (200 for success). */
unsigned errors_outcome_status(enum exec_outcome o);
const char *errors_outcome_code(enum exec_outcome o);
