/* api.h - what the HTTP API's handlers share (api_call.c): the HANDLER
 * shape, authentication and the lookup of {pid} and {fid} in one round
 * trip, the JSON body, and the success answers. Handlers live by subject in
 * api.c (projects, keys, functions, invocations, users), api_jobs.c (async
 * invocations and dead letters) and api_triggers.c (triggers and webhooks);
 * the one route table is api.c's. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "app.h"
#include "errors.h"
#include "store.h"

#define _cleanup_json_ _cleanup_(json_decrefp)

/* A handler: its body returns 0 once it has answered, or a failure (a
 * negative code, err filled) that errors_reply() answers. */
#define HANDLER(name)                                                                    \
	void name(struct http_request *req, void *app);                                  \
	static int name##_(struct http_request *req, struct app *app, struct zerr *err); \
	void name(struct http_request *req, void *app)                                   \
	{                                                                                \
		struct zerr err = {0};                                                   \
		int r = name##_(req, app, &err);                                         \
		if (r < 0)                                                               \
			errors_reply(req, r, &err);                                      \
	}                                                                                \
	static int name##_(struct http_request *req, struct app *app, struct zerr *err)

/* 200, 201 and 202 with body (stolen); each returns 0. */
int api_ok(struct http_request *req, json_t *body);
int api_created(struct http_request *req, json_t *body);
int api_accepted(struct http_request *req, json_t *body);

/* What a handler works with: a database connection, and as it asks, the
 * authenticated user, the project of {pid} and the function of {fid}. */
struct call {
	struct app *app;
	PGconn *c;
	struct user u;
	struct project p;
	struct function f;
	json_t *json; /* STORE_JSON */
};
void call_end(struct call *k);
#define _cleanup_call_ _cleanup_(call_end)
/* Give the connection back early (before waiting for a slot or running). */
void call_drop_conn(struct call *k);

/* A connection for k (ZE_UNAVAILABLE when none is free in time). */
int take_conn(struct call *k, struct zerr *err);
/* Authenticate the bearer token and gather what need asks (STORE_* of
 * store.h). A project of others answers 404 like one that does not exist. */
int api_begin(struct http_request *req, struct app *app, unsigned need, struct call *k, struct zerr *err);
/* Authenticate the x-api-key header: k->p is the key's project and, with
 * slug (a function's slug or id) non-NULL, k->f that function of it.
 * -ZE_UNAUTHORIZED without the header, -ZE_INVALID_API_KEY for a key that
 * is not one, -ZE_NOT_FOUND for no such function. k holds a connection. */
int api_begin_key(struct http_request *req, struct app *app, const char *slug, struct call *k, struct zerr *err);
/* api_begin, then the body as JSON (*ret_body, to be decref'd). */
int api_begin_body(struct http_request *req, struct app *app, unsigned need, struct call *k, json_t **ret_body,
                   struct zerr *err);
/* The body as JSON; NULL with ZE_BAD_REQUEST when it is not. */
json_t *body_json(struct http_request *req, struct zerr *err);
/* Changes to a project itself are its owner's; admins may act on any. */
int need_owner(const struct call *k, const char *what, struct zerr *err);

/* api_jobs.c: whether the request asks to be answered at once and run
 * later (Prefer: respond-async). */
bool api_prefers_async(struct http_request *req);
/* Queue payload for k's function (k holds a connection) and answer 202
 * {invocation_id, status: "queued"} with a Location; an Idempotency-Key
 * header makes a repeat within 24 h answer the same id. */
int api_enqueue(struct http_request *req, struct call *k, json_t *payload, const char *trigger, struct zerr *err);

/* ---- handlers of the route table ---- */
/* api_jobs.c */
void h_dead_letters_list(struct http_request *req, void *app);
void h_dead_letter_retry(struct http_request *req, void *app);
/* api_triggers.c */
void h_triggers_list(struct http_request *req, void *app);
void h_triggers_create(struct http_request *req, void *app);
void h_trigger_get(struct http_request *req, void *app);
void h_trigger_patch(struct http_request *req, void *app);
void h_trigger_delete(struct http_request *req, void *app);
void h_trigger_rotate_secret(struct http_request *req, void *app);
void h_webhook(struct http_request *req, void *app);
/* api_events.c */
void h_events_emit(struct http_request *req, void *app);
/* api_members.c */
void h_members_list(struct http_request *req, void *app);
void h_members_add(struct http_request *req, void *app);
void h_member_remove(struct http_request *req, void *app);
/* api_sql.c */
void h_project_sql(struct http_request *req, void *app);
