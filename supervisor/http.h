/* http.h - the HTTP layer of zmeshd: libmicrohttpd underneath, a route table
 * on top, JSON in and out.
 *
 * Threading: one thread per connection (MHD_USE_THREAD_PER_CONNECTION with an
 * internal polling thread that only accepts). Handlers block for as long as an
 * invocation runs (up to minutes); in a thread pool each thread serves many
 * connections, so one blocking handler would stall every connection sharing
 * its thread. With a thread per connection, handlers never wait on each other,
 * and the connection limits below bound the number of threads.
 *
 * Protection against slow clients: an idle timeout (no byte for
 * idle_timeout_s); a header deadline, header_timeout_ms (10 s), for the
 * request line and headers; and a deadline for the whole request (headers and
 * body) of request_timeout_ms (30 s), which is the body's deadline. Both count
 * from the connection's start or the end of the previous response on a
 * kept-alive connection, so an idle kept-alive connection lives at most
 * header_timeout_ms. A client trickling a byte every few seconds is cut off.
 * The time a handler runs and the time a response takes to send do not count.
 *
 * Admission (a flood of connections must not starve health checks, operators
 * and well-behaved clients, and must be told so rather than reset):
 * - max_connections connections are admitted for ordinary requests, at most
 *   max_per_ip of them from one address.
 * - When a new connection finds its address at its share, or every admitted
 *   slot taken, the admitted connection (of that address first) that has
 *   waited longest, and at least 1 s, for a request line and headers is shed
 *   (closed): idle kept-alive connections and slow senders go first. A
 *   connection whose request is in (body arriving, handler running, response
 *   going out) is never shed.
 * - Otherwise the connection is over capacity: it gets 2 s to send its
 *   headers. Then a slot freed meanwhile admits it; else a request for
 *   HTTP_HEALTH_PATH or bearing an Authorization or x-api-key header (not
 *   checked here: the handler does that) takes a reserve slot, max_connections
 *   / 8 of them (at least 4), a quarter of those (at least 2) per address;
 *   else it is answered 503 OVER_CAPACITY with Retry-After: 2 and
 *   Connection: close.
 * - libmicrohttpd's own limits, past which it closes new connections without
 *   a word, sit above all that: max_connections + the reserve + a quarter more
 *   (at least 16) to answer 503 to; per address max_per_ip + its reserve + a
 *   quarter more (at least 4). Only a flood past those sees resets.
 *
 * Paths (the router):
 * - A pattern is "/" or "/seg/seg/...", each segment either a literal of
 *   URL-unreserved characters or a parameter "{name}" ([a-z_][a-z0-9_]*).
 * - A request path matches a pattern with the same number of segments whose
 *   literals equal the decoded segments. The first route in table order whose
 *   path and method both match wins: list literal routes before parameter
 *   routes that overlap them.
 * - One trailing slash after a segment is ignored: "/projects/" is
 *   "/projects". An empty segment ("/a//b", "/a//", "//") matches nothing: 404.
 * - Each segment is percent-decoded on its own, so "%2F" never splits a
 *   segment. A malformed escape, or a decoded segment longer than
 *   HTTP_PARAM_MAX bytes, or containing "/", NUL, another control character or
 *   invalid UTF-8, answers 400 BAD_REQUEST whatever the route.
 * - The path matches but not the method: 405 METHOD_NOT_ALLOWED with an Allow
 *   header listing the methods of the matching routes. No match: 404.
 *   Methods match exactly (no implicit HEAD or OPTIONS).
 *
 * Request targets (path and query as sent), checked before anything else:
 * - A NUL, space or other control character anywhere in the target: 400
 *   BAD_REQUEST (a raw NUL would otherwise end the path early: "/a\0/b" is
 *   not "/a").
 * - Longer than HTTP_TARGET_MAX (8 KiB), or a query of more than
 *   HTTP_QUERY_ARGS_MAX (64) '&'-separated parameters: 414 URI_TOO_LONG; the
 *   query is then not parsed at all (libmicrohttpd would spend the
 *   connection's memory on it and close without an answer).
 *
 * Errors produced by the layer itself are JSON {"error":{"code","message"}}:
 * 400 BAD_REQUEST, 404 NOT_FOUND, 405 METHOD_NOT_ALLOWED, 413 PAYLOAD_TOO_LARGE, 414 URI_TOO_LONG,
 * 503 OVER_CAPACITY (see Admission)
 * (declared or actual body over max_body; the handler is not called),
 * 400 also for ambiguous framing (two Content-Length or Transfer-Encoding
 * headers, or both: a request-smuggling vector behind a proxy), 500 INTERNAL
 * (a handler returned without replying), 503 SHUTTING_DOWN (a new request on a
 * kept-alive connection once the server stops). Requests that libmicrohttpd
 * itself refuses before the layer sees them (a malformed request line, headers
 * over max_header_bytes: 431, an HTTP/1.1 request without Host, an unparsable
 * Content-Length) get its own short HTML answers and an "http_error" log line.
 *
 * Every response carries an x-request-id header: 16 random hex characters,
 * also given to the handler and logged; and X-Content-Type-Options: nosniff
 * (no browser guesses another type than Content-Type's). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define HTTP_PARAM_MAX      128 /* bytes of one decoded path segment */
#define HTTP_MAX_SEGMENTS   16  /* segments of a pattern */
#define HTTP_MAX_PARAMS     8   /* parameters of a pattern */
#define HTTP_PATH_MAX       4096
#define HTTP_QUERY_MAX      1024 /* bytes of one decoded query value */
#define HTTP_TARGET_MAX     8192 /* bytes of the request target: path, "?", query */
#define HTTP_QUERY_ARGS_MAX 64   /* parameters of the query string */
#define HTTP_ALLOW_MAX      128
#define HTTP_REQUEST_ID_LEN 16
#define HTTP_MAX_HEADERS    16         /* extra response headers per request */
#define HTTP_HEALTH_PATH    "/healthz" /* admitted within the reserve (see above) */

struct http_server;
struct http_request;
struct http_router;

/* A handler answers with exactly one http_reply_*() call before returning
 * (later calls are ignored; no call at all answers 500 INTERNAL). It runs on
 * the connection's own thread and may block. The request is valid until the
 * handler returns. */
typedef void (*http_handler_fn)(struct http_request *req, void *app);

/* Receives one structured line (a compact JSON object, no newline, at most
 * 6 KiB) per request, per connection cut off by the request deadline, and per
 * libmicrohttpd error. Called from many threads at once.
 *   {"event":"http_request","request_id","method","path","status",
 *    "duration_ms","client","body_bytes","outcome", ...http_log_field()}
 * status is 0 when no response went out; outcome is "ok", "request_timeout" (a
 * deadline passed, or the connection was shed),
 * "shutdown", "idle_timeout", "client_abort", "read_error" or "error". */
typedef void (*http_log_fn)(void *app, const char *line);

struct http_route {
	const char *method;  /* "GET", "POST", ...: upper case */
	const char *pattern; /* "/projects/{pid}/functions/{fid}/invoke" */
	http_handler_fn handler;
};

/* Zero selects the default given after each field. */
struct http_config {
	const char *listen;          /* "HOST:PORT", "[V6ADDR]:PORT"; port 0 picks a free one. "127.0.0.1:8080" */
	unsigned max_connections;    /* connections admitted for ordinary requests (see Admission). 256 (max 8192) */
	unsigned max_per_ip;         /* of those, from one address. 0: no limit */
	unsigned idle_timeout_s;     /* close after this long without a byte. 15 (max 3600) */
	unsigned request_timeout_ms; /* deadline to receive a whole request. 30000 (max 3600000) */
	unsigned header_timeout_ms;  /* deadline for the request line and headers. 10000 (at most request_timeout_ms) */
	size_t max_header_bytes;     /* per-connection memory for request line and headers. 32 KiB (8 KiB..1 MiB) */
	size_t max_body;             /* request body limit. 1 MiB (max 1 GiB) */
	unsigned grace_ms;           /* how long http_server_stop waits for in-flight requests. 30000 */
	http_log_fn log;             /* NULL: no logging */
};

/* Start serving routes (copied: the table and its strings need not outlive the
 * call) on cfg->listen. app is passed to every handler and to cfg->log. Fails
 * with -EINVAL on a bad config or route table, -EEXIST for a route given
 * twice, -EADDRNOTAVAIL for a host that does not resolve, or the errno of
 * bind/listen (-EADDRINUSE, -EACCES). */
int http_server_start(const struct http_config *cfg, const struct http_route *routes, size_t n_routes, void *app,
                      struct http_server **ret, struct zerr *err);
/* Split a listen address "HOST:PORT" or "[V6ADDR]:PORT" (port 0..65535)
 * into host (host_size bytes) and port. -EINVAL with err saying why. */
int http_split_listen(const char *addr, char *host, size_t host_size, uint16_t *ret_port, struct zerr *err);

/* The bound TCP port (useful after listening on port 0). */
int http_server_port(const struct http_server *s);
/* Stop accepting: new connections are refused, new requests on kept-alive
 * connections get 503 SHUTTING_DOWN, responses still in flight close their
 * connection. Idempotent; http_server_stop calls it. */
void http_server_quiesce(struct http_server *s);
/* Quiesce, wait up to grace_ms for in-flight requests (received, handled,
 * response sent), then close every connection and free everything. A handler
 * still running past the grace period is waited for: its thread cannot be
 * abandoned, so handlers must bound their own work. Accepts NULL. */
void http_server_stop(struct http_server *s);

/* The request, for handlers. The request and its strings are valid until the
 * handler returns. */
const char *http_method(const struct http_request *req);
/* The raw (not decoded) path, without the query string. */
const char *http_path(const struct http_request *req);
/* A path parameter by its name in the pattern, decoded; NULL if the pattern
 * has no such parameter. */
const char *http_param(const struct http_request *req, const char *name);
/* A query parameter, decoded ('+' and %XX); "" for "?name" without a value.
 * Returns 0, -ENOENT when absent, -EINVAL when malformed (bad escape, NUL,
 * control character, invalid UTF-8), -E2BIG over HTTP_QUERY_MAX bytes. */
int http_query(struct http_request *req, const char *name, const char **ret_value);
/* A request header, name case-insensitive; NULL when absent. */
const char *http_header(const struct http_request *req, const char *name);
/* Call fn for every request header in the order received (a header sent
 * twice is seen twice), name as sent. Stops at fn's first non-zero return
 * and returns it; 0 when every header was seen. */
int http_each_header(const struct http_request *req, int (*fn)(void *ctx, const char *name, const char *value),
                     void *ctx);
/* Call fn for every query parameter in order, name and value decoded as
 * http_query() decodes a value ("" for "?name"). -EINVAL or -E2BIG (as
 * http_query) for the first malformed name or value, else as
 * http_each_header. */
int http_each_query(struct http_request *req, int (*fn)(void *ctx, const char *name, const char *value), void *ctx);
/* The whole body (at most max_body bytes), NUL-terminated for convenience
 * though it may itself hold NULs. Never NULL; *ret_len may be 0. */
const char *http_body(const struct http_request *req, size_t *ret_len);
/* The body parsed as JSON (any JSON value; duplicate keys refused), parsed
 * once however often this is called. Returns a new reference: json_decref it.
 * NULL with err filled on an empty body (-ENODATA) or malformed JSON
 * (-EINVAL): the caller answers 400. */
json_t *http_json_body(struct http_request *req, struct zerr *err);
/* The peer's address, e.g. "127.0.0.1" or "::1". */
const char *http_client_addr(const struct http_request *req);
/* 16 lower-case hex characters, also in the x-request-id response header. */
const char *http_request_id(const struct http_request *req);
/* True once the server is stopping: long handlers may cut their work short. */
bool http_stopping(const struct http_request *req);

/* Responses. The first reply wins; later ones are freed and ignored. A status
 * outside 200..599 becomes 500. */
/* Answer body (compact JSON, application/json); steals the reference. */
void http_reply_json(struct http_request *req, unsigned status, json_t *body);
/* Answer exactly {"error":{"code":code,"message":...}}. Invalid UTF-8 in the
 * message (e.g. echoed input) is replaced by '?'; the message is cut at 1 KiB. */
void http_reply_error(struct http_request *req, unsigned status, const char *code, const char *fmt, ...) _printf_(4, 5);
/* Answer a copy of text; content_type NULL means Prometheus' text format
 * "text/plain; version=0.0.4; charset=utf-8". */
void http_reply_text(struct http_request *req, unsigned status, const char *content_type, const char *text, size_t len);
/* A streamed answer (Server-Sent Events): status 200, content_type, no
 * length (chunked), Cache-Control: no-cache and X-Accel-Buffering: no. After
 * the handler returns, fn is called on the connection's thread for the next
 * bytes: it may block (bounded: it must check http_stream_stopping() at
 * least every second or so) and returns how many bytes of buf (max bytes) it
 * filled, at least 1, or -1 to end the answer. done(ctx) is called once the
 * connection is over (the client went away, the answer ended, the server
 * stopped), also when the reply is not used. The connection's idle timeout
 * becomes HTTP_STREAM_IDLE_S: fn must send something (a comment) more often. */
#define HTTP_STREAM_IDLE_S 60
struct http_stream;
typedef long (*http_stream_fn)(void *ctx, const struct http_stream *st, char *buf, size_t max);
void http_reply_stream(struct http_request *req, const char *content_type, http_stream_fn fn, void (*done)(void *ctx),
                       void *ctx);
/* True once the server stops or the client hung up: the stream should end
 * at once. Only from fn (the connection's thread). */
bool http_stream_stopping(const struct http_stream *st);
/* Add a response header (Retry-After, Allow, WWW-Authenticate, ...), before or
 * after the reply. -EINVAL for a name that is not a token or a value with
 * control characters, -EPERM for headers the layer owns (Content-Type,
 * Content-Length, Transfer-Encoding, Connection, x-request-id, Date), -E2BIG
 * past HTTP_MAX_HEADERS headers, 64-byte names or 1 KiB values. */
int http_add_header(struct http_request *req, const char *name, const char *value);
/* Add a field to the request's log line (e.g. "invocation_id"). key is
 * [a-z0-9_]{1,32} and must not repeat a field the layer writes; the value is
 * cut at 256 bytes. -EINVAL, -EEXIST, or -E2BIG past 8 fields. */
int http_log_field(struct http_request *req, const char *key, const char *value);

/* The router on its own (the server uses it; public for tests and tools). */
struct http_match {
	unsigned status;                /* 0: matched; else 400, 404 or 405, to be answered */
	const struct http_route *route; /* when matched: the router's copy */
	size_t n_params;
	const char *names[HTTP_MAX_PARAMS];
	char values[HTTP_MAX_PARAMS][HTTP_PARAM_MAX + 1];
	char allow[HTTP_ALLOW_MAX]; /* 405: "GET, POST" */
	char message[192];          /* 400/404/405: why, for the error body */
};

/* Compile and check a route table: -EINVAL for a bad method or pattern
 * (message names the route), -EEXIST for a method+pattern given twice. */
int http_router_new(const struct http_route *routes, size_t n_routes, struct http_router **ret, struct zerr *err);
void http_router_free(struct http_router *r);
/* Route method + raw_path (undecoded, no query string) per the rules above.
 * Always fills *ret. */
void http_router_match(const struct http_router *r, const char *method, const char *raw_path, struct http_match *ret);
