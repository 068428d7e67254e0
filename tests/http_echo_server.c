/* http_echo_server.c - a tiny server on the HTTP layer alone, for
 * tests/integration/test_http_layer.py.
 *
 *   http_echo_server [--listen ADDR] [--max-body N] [--grace-ms N]
 *                    [--request-timeout-ms N] [--idle-timeout-s N]
 *                    [--max-connections N] [--max-header-bytes N]
 *                    [--max-per-ip N] [--header-timeout-ms N]
 *
 * Prints "PORT <n>" on stdout once listening, one log line per request on
 * stderr; SIGTERM or SIGINT stops it through http_server_stop, then it prints
 * "STOPPED" and exits 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"

static void log_line(void *app, const char *line)
{
	fprintf(stderr, "%s\n", line);
}

static void h_root(struct http_request *req, void *app)
{
	http_reply_json(req, 200, json_pack("{s:b}", "root", 1));
}

static void h_hello(struct http_request *req, void *app)
{
	http_reply_json(req, 200, json_pack("{s:s,s:s}", "hello", "world", "request_id", http_request_id(req)));
}

static void h_echo(struct http_request *req, void *app)
{
	struct zerr err = {0};
	json_t *body = http_json_body(req, &err);
	if (!body) {
		http_reply_error(req, 400, "BAD_REQUEST", "%s", err.msg);
		return;
	}
	/* a second call returns the same parsed value, with its own reference */
	json_t *again = http_json_body(req, &err);
	bool same = again == body;
	json_decref(again);
	if (!same) {
		json_decref(body);
		http_reply_error(req, 500, "INTERNAL", "body parsed twice");
		return;
	}
	http_reply_json(req, 200, json_pack("{s:o}", "echo", body));
}

static void h_raw(struct http_request *req, void *app)
{
	size_t len;
	const char *b = http_body(req, &len);
	http_reply_json(req, 200, json_pack("{s:I,s:b}", "bytes", (json_int_t)len, "terminated", b[len] == '\0'));
}

static void h_item(struct http_request *req, void *app)
{
	const char *sub = http_param(req, "sub");
	http_reply_json(req, 200,
	                json_pack("{s:s,s:s,s:s?,s:O}", "method", http_method(req), "id", http_param(req, "id"), "sub",
	                          sub, "missing", http_param(req, "nope") ? json_true() : json_null()));
}

static void h_slow(struct http_request *req, void *app)
{
	const char *v;
	long ms = 1000;
	if (http_query(req, "ms", &v) == 0)
		ms = strtol(v, NULL, 10);
	if (ms < 0 || ms > 20000) {
		http_reply_error(req, 400, "BAD_REQUEST", "ms must be within 0..20000");
		return;
	}
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	http_reply_json(req, 200, json_pack("{s:i,s:b}", "slept", (int)ms, "stopping", http_stopping(req)));
}

static json_t *maybe(const char *s)
{
	return s ? json_string(s) : json_null();
}

static void h_inspect(struct http_request *req, void *app)
{
	const char *q = NULL;
	int qrc = http_query(req, "q", &q);
	http_reply_json(req, 200,
	                json_pack("{s:o,s:o,s:s,s:o,s:i,s:s,s:s}", "authorization",
	                          maybe(http_header(req, "authorization")), "x_api_key",
	                          maybe(http_header(req, "x-api-key")), "client", http_client_addr(req), "q",
	                          maybe(qrc == 0 ? q : NULL), "q_rc", qrc, "request_id", http_request_id(req), "path",
	                          http_path(req)));
}

static int add_pair(void *ctx, const char *name, const char *value)
{
	return json_array_append_new(ctx, json_pack("[s,s]", name, value)) == 0 ? 0 : -ENOMEM;
}

/* Every header and every decoded query parameter, in order. */
static void h_each(struct http_request *req, void *app)
{
	json_t *hs = json_array(), *qs = json_array();
	int hrc = http_each_header(req, add_pair, hs), qrc = http_each_query(req, add_pair, qs);
	http_reply_json(req, 200,
	                json_pack("{s:o,s:i,s:o,s:i}", "headers", hs, "headers_rc", hrc, "query", qs, "query_rc", qrc));
}

static void h_metrics(struct http_request *req, void *app)
{
	static const char text[] = "# TYPE zmesh_test_total counter\nzmesh_test_total 1\n";
	http_reply_text(req, 200, NULL, text, sizeof(text) - 1);
}

static void h_retry(struct http_request *req, void *app)
{
	http_add_header(req, "Retry-After", "7");
	http_reply_error(req, 429, "RATE_LIMITED", "too many concurrent invocations");
}

static void h_noreply(struct http_request *req, void *app)
{
}

static void h_twice(struct http_request *req, void *app)
{
	http_reply_json(req, 201, json_pack("{s:i}", "first", 1));
	http_reply_error(req, 500, "INTERNAL", "second reply");
	http_reply_json(req, 202, json_pack("{s:i}", "third", 3));
}

static void h_badstatus(struct http_request *req, void *app)
{
	http_reply_json(req, 99, json_object());
}

static void h_header_rules(struct http_request *req, void *app)
{
	json_t *o = json_object();
	json_object_set_new(o, "ok", json_integer(http_add_header(req, "X-Extra", "yes")));
	json_object_set_new(o, "crlf", json_integer(http_add_header(req, "X-Evil", "a\r\nSet-Cookie: x=1")));
	json_object_set_new(o, "bad_name", json_integer(http_add_header(req, "X Bad", "v")));
	json_object_set_new(o, "empty_name", json_integer(http_add_header(req, "", "v")));
	json_object_set_new(o, "owned", json_integer(http_add_header(req, "content-type", "text/html")));
	json_object_set_new(o, "owned_id", json_integer(http_add_header(req, "X-Request-ID", "x")));
	char big[2000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	json_object_set_new(o, "big", json_integer(http_add_header(req, "X-Big", big)));
	int full = 0;
	for (int i = 0; i < HTTP_MAX_HEADERS + 2; i++) {
		char name[32];
		snprintf(name, sizeof(name), "X-N%d", i);
		int rc = http_add_header(req, name, "1");
		if (rc < 0) {
			full = rc;
			break;
		}
	}
	json_object_set_new(o, "full", json_integer(full));
	json_object_set_new(o, "log_ok", json_integer(http_log_field(req, "invocation_id", "inv-42")));
	json_object_set_new(o, "log_dup", json_integer(http_log_field(req, "invocation_id", "again")));
	json_object_set_new(o, "log_layer", json_integer(http_log_field(req, "status", "1")));
	json_object_set_new(o, "log_badkey", json_integer(http_log_field(req, "Bad-Key", "1")));
	json_object_set_new(o, "EINVAL", json_integer(-EINVAL));
	json_object_set_new(o, "EPERM", json_integer(-EPERM));
	json_object_set_new(o, "E2BIG", json_integer(-E2BIG));
	json_object_set_new(o, "EEXIST", json_integer(-EEXIST));
	http_reply_json(req, 200, o);
}

static void h_error_utf8(struct http_request *req, void *app)
{
	/* the message carries bytes that are not UTF-8, as echoed input may */
	http_reply_error(req, 422, "WEIRD", "bad \xff\xfe input \"quoted\" %s", "\xc3\xa9");
}

static void h_healthz(struct http_request *req, void *app)
{
	http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static const struct http_route routes[] = {
    {"GET", "/", h_root},
    {"GET", "/healthz", h_healthz},
    {"GET", "/hello", h_hello},
    {"POST", "/echo", h_echo},
    {"POST", "/raw", h_raw},
    {"GET", "/items/{id}", h_item},
    {"DELETE", "/items/{id}", h_item},
    {"PUT", "/items/{id}", h_item},
    {"GET", "/items/{id}/sub/{sub}", h_item},
    {"GET", "/slow", h_slow},
    {"GET", "/inspect", h_inspect},
    {"GET", "/each", h_each},
    {"GET", "/metrics", h_metrics},
    {"GET", "/retry", h_retry},
    {"GET", "/noreply", h_noreply},
    {"GET", "/twice", h_twice},
    {"GET", "/badstatus", h_badstatus},
    {"GET", "/header-rules", h_header_rules},
    {"GET", "/error-utf8", h_error_utf8},
};

static unsigned long arg_num(const char *name, const char *v)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (errno || *end || !*v) {
		fprintf(stderr, "bad %s: %s\n", name, v);
		exit(2);
	}
	return n;
}

int main(int argc, char **argv)
{
	struct http_config cfg = {.listen = "127.0.0.1:0", .log = log_line};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v) {
			fprintf(stderr, "%s needs a value\n", a);
			return 2;
		}
		i++;
		if (strcmp(a, "--listen") == 0)
			cfg.listen = v;
		else if (strcmp(a, "--max-body") == 0)
			cfg.max_body = arg_num(a, v);
		else if (strcmp(a, "--grace-ms") == 0)
			cfg.grace_ms = (unsigned)arg_num(a, v);
		else if (strcmp(a, "--request-timeout-ms") == 0)
			cfg.request_timeout_ms = (unsigned)arg_num(a, v);
		else if (strcmp(a, "--idle-timeout-s") == 0)
			cfg.idle_timeout_s = (unsigned)arg_num(a, v);
		else if (strcmp(a, "--max-connections") == 0)
			cfg.max_connections = (unsigned)arg_num(a, v);
		else if (strcmp(a, "--max-per-ip") == 0)
			cfg.max_per_ip = (unsigned)arg_num(a, v);
		else if (strcmp(a, "--header-timeout-ms") == 0)
			cfg.header_timeout_ms = (unsigned)arg_num(a, v);
		else if (strcmp(a, "--max-header-bytes") == 0)
			cfg.max_header_bytes = arg_num(a, v);
		else {
			fprintf(stderr, "unknown option %s\n", a);
			return 2;
		}
	}

	/* Block the stop signals before any thread exists, so that every
	 * server thread inherits the mask and sigwait() below gets them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	struct http_server *srv = NULL;
	struct zerr err = {0};
	if (http_server_start(&cfg, routes, sizeof(routes) / sizeof(routes[0]), NULL, &srv, &err) < 0) {
		fprintf(stderr, "start: %s\n", err.msg);
		return 1;
	}
	printf("PORT %d\n", http_server_port(srv));
	fflush(stdout);
	int sig;
	sigwait(&set, &sig);
	http_server_stop(srv);
	printf("STOPPED\n");
	fflush(stdout);
	return 0;
}
