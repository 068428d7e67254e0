/* api_logs.c - GET /projects/{pid}/functions/{fid}/logs/stream: a function's
 * logs live, as Server-Sent Events (logstream.h; docs/ARCHITECTURE.md, Live
 * logs). A project's members only, like the invocation history; another
 * project's function is 404.
 *
 * The token comes as "Authorization: Bearer" or, for EventSource (which
 * cannot set headers), as ?access_token=: the HTTP layer logs the path
 * without the query, so it never reaches a log line. Resuming: the
 * Last-Event-ID header, or ?last_event_id= (the header wins). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "auth.h"
#include "logstream.h"

void h_logs_stream(struct http_request *req, void *app);

static int stream_token(struct http_request *req, const char **ret, struct zerr *err)
{
	const char *h = http_header(req, "authorization");
	if (h) {
		if (strncasecmp(h, "Bearer ", 7) != 0 || !h[7])
			return ze(err, ZE_UNAUTHORIZED, "the Authorization header must be \"Bearer TOKEN\"");
		*ret = h + 7;
		return 0;
	}
	const char *q = NULL;
	int r = http_query(req, "access_token", &q);
	if (r == 0 && q && q[0]) {
		*ret = q;
		return 0;
	}
	if (r != 0 && r != -ENOENT)
		return ze(err, ZE_BAD_REQUEST, "access_token is malformed");
	http_add_header(req, "WWW-Authenticate", "Bearer");
	return ze(err, ZE_UNAUTHORIZED, "missing bearer token (an Authorization header, or ?access_token=)");
}

/* As api_begin, with the token from stream_token. */
static int stream_begin(struct http_request *req, struct app *app, struct call *k, struct zerr *err)
{
	memset(k, 0, sizeof(*k));
	k->app = app;
	const char *token = NULL;
	int r = stream_token(req, &token, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *sub = NULL;
	int64_t iat = 0;
	r = auth_jwt_verify(app->jwt_key, app->jwt_key_len, token, (int64_t)time(NULL), &sub, &iat, NULL, NULL);
	if (r < 0 || !val_is_uuid(sub)) {
		http_add_header(req, "WWW-Authenticate", "Bearer");
		return r == -EKEYEXPIRED ? ze(err, ZE_TOKEN_EXPIRED, "the token has expired; log in again")
		                         : ze(err, ZE_INVALID_TOKEN, "the token is not valid");
	}
	r = take_conn(k, err);
	if (r == 0)
		r = store_lookup(k->c, STORE_FUNCTION, sub, http_param(req, "pid"), http_param(req, "fid"), &k->u,
		                 &k->p, &k->f, NULL, err);
	if ((r == 0 || r == -ZE_NOT_FOUND) && iat < k->u.tokens_not_before) {
		http_add_header(req, "WWW-Authenticate", "Bearer");
		r = ze(err, ZE_INVALID_TOKEN, "the token was issued before the password changed; log in again");
	}
	if (r < 0)
		return r;
	http_log_field(req, "user", k->u.id);
	http_log_field(req, "project", k->p.id);
	http_log_field(req, "function", k->f.id);
	return 0;
}

static int last_event_id(struct http_request *req, int64_t *ret, struct zerr *err)
{
	*ret = -1;
	const char *v = http_header(req, "last-event-id");
	if (!v) {
		int r = http_query(req, "last_event_id", &v);
		if (r == -ENOENT)
			return 0;
		if (r < 0)
			return ze(err, ZE_BAD_REQUEST, "last_event_id is malformed");
	}
	if (sse_parse_event_id(v, ret) < 0)
		return ze(err, ZE_BAD_REQUEST, "Last-Event-ID must be an event id this stream sent (digits)");
	return 0;
}

static bool stream_stopping(const void *arg)
{
	return http_stream_stopping(arg);
}

static long stream_read(void *ctx, const struct http_stream *st, char *buf, size_t max)
{
	return logstream_read(ctx, buf, max, stream_stopping, st);
}

HANDLER(h_logs_stream)
{
	_cleanup_call_ struct call k;
	int r = stream_begin(req, app, &k, err);
	if (r < 0)
		return r;
	int64_t last = -1;
	r = last_event_id(req, &last, err);
	if (r < 0)
		return r;
	/* The stream takes a connection only for each read. */
	call_drop_conn(&k);
	struct logstream_reader *reader = NULL;
	r = logstream_open(k.p.id, k.f.id, last, &reader, err);
	if (r == -ZE_RATE_LIMITED || r == -ZE_UNAVAILABLE)
		http_add_header(req, "Retry-After", "5");
	if (r < 0)
		return r;
	http_log_field(req, "stream", "logs");
	http_reply_stream(req, "text/event-stream; charset=utf-8", stream_read, logstream_close, reader);
	return 0;
}
