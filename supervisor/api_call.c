/* api_call.c - see api.h */
#define _GNU_SOURCE
#include "api.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"

int api_ok(struct http_request *req, json_t *body)
{
	http_reply_json(req, 200, body);
	return 0;
}

int api_created(struct http_request *req, json_t *body)
{
	http_reply_json(req, 201, body);
	return 0;
}

int api_accepted(struct http_request *req, json_t *body)
{
	http_reply_json(req, 202, body);
	return 0;
}

void call_end(struct call *k)
{
	store_function_done(&k->f);
	json_decref(k->json);
	if (k->c)
		db_release(k->app->pool, k->c);
	k->c = NULL;
}

void call_drop_conn(struct call *k)
{
	if (k->c)
		db_release(k->app->pool, k->c);
	k->c = NULL;
}

int take_conn(struct call *k, struct zerr *err)
{
	k->c = db_acquire(k->app->pool);
	return k->c ? 0 : ze(err, ZE_UNAVAILABLE, "no database connection available");
}

/* The bearer token's signature and expiry; whether its user still exists,
 * and whether it was signed after the user's password last changed, are the
 * store's lookup. */
static int verify_token(struct app *app, struct http_request *req, char ret_id[STORE_ID_LEN + 1], int64_t *ret_iat,
                        struct zerr *err)
{
	const char *h = http_header(req, "authorization");
	if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !h[7]) {
		http_add_header(req, "WWW-Authenticate", "Bearer");
		return ze(err, ZE_UNAUTHORIZED, "missing bearer token (POST /auth/login gives one)");
	}
	_cleanup_free_ char *sub = NULL;
	int r = auth_jwt_verify(app->jwt_key, app->jwt_key_len, h + 7, (int64_t)time(NULL), &sub, ret_iat, NULL, NULL);
	if (r < 0 || !val_is_uuid(sub)) {
		http_add_header(req, "WWW-Authenticate", "Bearer");
		return r == -EKEYEXPIRED ? ze(err, ZE_TOKEN_EXPIRED, "the token has expired; log in again")
		                         : ze(err, ZE_INVALID_TOKEN, "the token is not valid");
	}
	snprintf(ret_id, STORE_ID_LEN + 1, "%s", sub);
	return 0;
}

/* Authenticate and gather what need asks (STORE_* of store.h). A project of
 * others answers 404 like one that does not exist. */
int api_begin(struct http_request *req, struct app *app, unsigned need, struct call *k, struct zerr *err)
{
	memset(k, 0, sizeof(*k));
	k->app = app;
	char uid[STORE_ID_LEN + 1];
	int64_t iat = 0;
	int r = verify_token(app, req, uid, &iat, err);
	if (r == 0)
		r = take_conn(k, err);
	if (r == 0)
		r = store_lookup(k->c, need, uid, http_param(req, "pid"), http_param(req, "fid"), &k->u, &k->p, &k->f,
		                 &k->json, err);
	/* Checked even when the project was not found: a revoked token learns
	 * nothing. k->u is zero when the user was not found. */
	if ((r == 0 || r == -ZE_NOT_FOUND) && iat < k->u.tokens_not_before) {
		http_add_header(req, "WWW-Authenticate", "Bearer");
		r = ze(err, ZE_INVALID_TOKEN, "the token was issued before the password changed; log in again");
	}
	if (r < 0)
		return r;
	http_log_field(req, "user", k->u.id);
	if (need & (STORE_PROJECT & ~STORE_USER))
		http_log_field(req, "project", k->p.id);
	if (need & (STORE_FUNCTION & ~STORE_PROJECT))
		http_log_field(req, "function", k->f.id);
	return 0;
}

int api_begin_key(struct http_request *req, struct app *app, const char *slug, struct call *k, struct zerr *err)
{
	memset(k, 0, sizeof(*k));
	k->app = app;
	const char *key = http_header(req, "x-api-key");
	char hash[65];
	/* Where a function is named (/api/functions/{slug}), the key may also
	 * come as "Authorization: Bearer KEY", as webhook senders send it. */
	const char *auth = slug && !key ? http_header(req, "authorization") : NULL;
	if (auth && strncasecmp(auth, "Bearer ", 7) == 0 && auth[7])
		key = auth + 7;
	if (!key)
		return ze(err, ZE_UNAUTHORIZED,
		          slug ? "missing API key (an x-api-key header, or Authorization: Bearer KEY)"
		               : "missing x-api-key header");
	if (auth_apikey_hash(key, hash, NULL) < 0)
		return ze(err, ZE_INVALID_API_KEY, "the API key is not valid");
	int r = take_conn(k, err);
	if (r == 0)
		r = store_lookup_key(k->c, hash, slug, &k->p, slug ? &k->f : NULL, err);
	if (r < 0)
		return r;
	http_log_field(req, "project", k->p.id);
	if (slug)
		http_log_field(req, "function", k->f.id);
	return 0;
}

/* Changes to a project itself are its owner's; admins may act on any. */
int need_owner(const struct call *k, const char *what, struct zerr *err)
{
	if (k->p.owner || k->u.admin)
		return 0;
	return ze(err, ZE_FORBIDDEN, "only the project's owner may %s", what);
}

json_t *body_json(struct http_request *req, struct zerr *err)
{
	struct zerr e = {0};
	json_t *j = http_json_body(req, &e);
	if (!j)
		ze(err, ZE_BAD_REQUEST, "%s", e.msg);
	return j;
}

/* api_begin, then the body as JSON (*ret_body, to be decref'd). */
int api_begin_body(struct http_request *req, struct app *app, unsigned need, struct call *k, json_t **ret_body,
                   struct zerr *err)
{
	int r = api_begin(req, app, need, k, err);
	if (r < 0)
		return r;
	*ret_body = body_json(req, err);
	return *ret_body ? 0 : err->code;
}
