/* Unit tests: the router (patterns, decoding, 404/405/400, bounds), the
 * server's configuration checks, and one live exchange on port 0. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "http.h"
#include "http_parse.h"

static void h_a(struct http_request *req, void *app)
{
	http_reply_json(req, 200, json_pack("{s:s}", "h", "a"));
}
static void h_b(struct http_request *req, void *app)
{
	http_reply_json(req, 200, json_pack("{s:s}", "h", "b"));
}

static const struct http_route table[] = {
    {"GET", "/", h_a},
    {"GET", "/projects", h_a},
    {"POST", "/projects", h_b},
    {"GET", "/projects/{pid}", h_a},
    {"PATCH", "/projects/{pid}", h_b},
    {"POST", "/projects/{pid}/functions/{fid}/invoke", h_b},
    {"GET", "/lit/fixed", h_a},
    {"GET", "/lit/{any}", h_b},
    {"PUT", "/lit/{any}", h_b},
};

static struct http_router *router(void)
{
	struct http_router *r = NULL;
	struct zerr err = {0};
	assert_int_equal(http_router_new(table, ELEMENTSOF(table), &r, &err), 0);
	assert_non_null(r);
	return r;
}

static void expect_status(const struct http_router *r, const char *method, const char *path, unsigned status)
{
	struct http_match m;
	http_router_match(r, method, path, &m);
	if (m.status != status)
		fail_msg("%s %s: status %u, expected %u (%s)", method, path, m.status, status, m.message);
	if (status)
		assert_null(m.route);
}

static const char *param(const struct http_match *m, const char *name)
{
	for (size_t i = 0; i < m->n_params; i++)
		if (strcmp(m->names[i], name) == 0)
			return m->values[i];
	return NULL;
}

static void test_params_and_table_order(void **state)
{
	struct http_router *r = router();
	struct http_match m;

	http_router_match(r, "POST", "/projects/p-1/functions/my%20fn/invoke", &m);
	assert_int_equal(m.status, 0);
	assert_ptr_equal(m.route->handler, h_b);
	assert_string_equal(m.route->pattern, "/projects/{pid}/functions/{fid}/invoke");
	assert_int_equal(m.n_params, 2);
	assert_string_equal(param(&m, "pid"), "p-1");
	assert_string_equal(param(&m, "fid"), "my fn");

	http_router_match(r, "GET", "/", &m);
	assert_int_equal(m.status, 0);
	assert_int_equal(m.n_params, 0);
	assert_string_equal(m.route->pattern, "/");

	/* the literal route comes first in the table and wins */
	http_router_match(r, "GET", "/lit/fixed", &m);
	assert_int_equal(m.status, 0);
	assert_ptr_equal(m.route->handler, h_a);
	http_router_match(r, "GET", "/lit/other", &m);
	assert_int_equal(m.status, 0);
	assert_ptr_equal(m.route->handler, h_b);
	assert_string_equal(param(&m, "any"), "other");

	/* literals compare with the decoded segment */
	http_router_match(r, "GET", "/pro%6Aects", &m);
	assert_int_equal(m.status, 0);
	assert_string_equal(m.route->pattern, "/projects");
	http_router_free(r);
}

static void test_decoding(void **state)
{
	struct http_router *r = router();
	struct http_match m;

	http_router_match(r, "GET", "/projects/%E2%82%ACuro", &m);
	assert_int_equal(m.status, 0);
	assert_string_equal(param(&m, "pid"), "\xe2\x82\xac"
	                                      "uro");
	http_router_match(r, "GET", "/projects/a+b%2b", &m); /* '+' is literal in a path */
	assert_int_equal(m.status, 0);
	assert_string_equal(param(&m, "pid"), "a+b+");

	const char *bad[] = {
	    "/projects/a%2Fb", "/projects/a%2fb", /* decoded '/' */
	    "/projects/a%00b",                    /* NUL */
	    "/projects/%zz",   "/projects/%4",     "/projects/%",         "/projects/%%41",
	    "/projects/%0A",   "/projects/%7F",                                               /* control characters */
	    "/projects/%FF",   "/projects/%C0%AF", "/projects/%ED%A0%80", "/projects/%E2%82", /* bad UTF-8 */
	    "/nowhere/%zz/x",                                                                 /* 400 beats 404 */
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		expect_status(r, "GET", bad[i], 400);
	http_router_free(r);
}

static void test_bounds(void **state)
{
	struct http_router *r = router();
	struct http_match m;
	char path[HTTP_PATH_MAX + 64];

	/* 128 bytes decoded is the limit, however long the encoding */
	strcpy(path, "/projects/");
	memset(path + strlen(path), 'x', HTTP_PARAM_MAX);
	path[strlen("/projects/") + HTTP_PARAM_MAX] = '\0';
	http_router_match(r, "GET", path, &m);
	assert_int_equal(m.status, 0);
	assert_int_equal(strlen(param(&m, "pid")), HTTP_PARAM_MAX);
	strcat(path, "x");
	expect_status(r, "GET", path, 400);

	strcpy(path, "/projects/");
	for (int i = 0; i < HTTP_PARAM_MAX; i++)
		strcat(path, "%41");
	http_router_match(r, "GET", path, &m);
	assert_int_equal(m.status, 0);
	assert_int_equal(strlen(param(&m, "pid")), HTTP_PARAM_MAX);
	strcat(path, "%41");
	expect_status(r, "GET", path, 400);

	/* more segments than any pattern may have: 404, but still validated */
	path[0] = '\0';
	for (int i = 0; i < HTTP_MAX_SEGMENTS + 1; i++)
		strcat(path, "/s");
	expect_status(r, "GET", path, 404);
	strcat(path, "/%zz");
	expect_status(r, "GET", path, 400);

	/* over HTTP_PATH_MAX */
	path[0] = '/';
	memset(path + 1, 'a', HTTP_PATH_MAX);
	path[HTTP_PATH_MAX + 1] = '\0';
	expect_status(r, "GET", path, 400);
	http_router_free(r);
}

static void test_not_found_vs_method(void **state)
{
	struct http_router *r = router();
	struct http_match m;

	http_router_match(r, "DELETE", "/projects", &m);
	assert_int_equal(m.status, 405);
	assert_string_equal(m.allow, "GET, POST");
	assert_non_null(strstr(m.message, "GET, POST"));

	http_router_match(r, "DELETE", "/projects/p1", &m);
	assert_int_equal(m.status, 405);
	assert_string_equal(m.allow, "GET, PATCH");

	/* two GET routes match /lit/fixed: GET is listed once */
	http_router_match(r, "POST", "/lit/fixed", &m);
	assert_int_equal(m.status, 405);
	assert_string_equal(m.allow, "GET, PUT");

	/* methods are case-sensitive */
	http_router_match(r, "get", "/projects", &m);
	assert_int_equal(m.status, 405);

	expect_status(r, "GET", "/nothing", 404);
	expect_status(r, "GET", "/projects/p1/functions", 404); /* segment count differs */
	expect_status(r, "GET", "/projects/p1/functions/f1/invoke/more", 404);
	expect_status(r, "POST", "/projects/p1/functions/f1/invok", 404);
	http_router_free(r);
}

static void test_trailing_slash_and_empty_segments(void **state)
{
	struct http_router *r = router();
	struct http_match m;

	http_router_match(r, "GET", "/projects/", &m);
	assert_int_equal(m.status, 0);
	assert_string_equal(m.route->pattern, "/projects");
	http_router_match(r, "GET", "/projects/p9/", &m);
	assert_int_equal(m.status, 0);
	assert_string_equal(param(&m, "pid"), "p9");

	expect_status(r, "GET", "/projects//", 404);
	expect_status(r, "GET", "//", 404);
	expect_status(r, "GET", "//projects", 404);
	expect_status(r, "GET", "/projects//p1", 404);
	expect_status(r, "GET", "", 400);
	expect_status(r, "GET", "projects", 400);
	expect_status(r, "GET", "*", 400);
	http_router_free(r);
}

static void expect_bad_table(const struct http_route *routes, size_t n, int code)
{
	struct http_router *r = (struct http_router *)0x1;
	struct zerr err = {0};
	int rc = http_router_new(routes, n, &r, &err);
	if (rc != code)
		fail_msg("%s %s: got %d, expected %d", routes[n - 1].method ? routes[n - 1].method : "(null)",
		         routes[n - 1].pattern ? routes[n - 1].pattern : "(null)", rc, code);
	assert_true(err.msg[0] != '\0');
	assert_ptr_equal(r, (struct http_router *)0x1); /* untouched on failure */
}

static void test_bad_tables(void **state)
{
	const struct http_route bad[] = {
	    {"get", "/a", h_a},
	    {"", "/a", h_a},
	    {"GET1", "/a", h_a},
	    {NULL, "/a", h_a},
	    {"GET", NULL, h_a},
	    {"GET", "/a", NULL},
	    {"GET", "a", h_a},
	    {"GET", "", h_a},
	    {"GET", "/a/", h_a},
	    {"GET", "/a//b", h_a},
	    {"GET", "/a/{}", h_a},
	    {"GET", "/a/{Pid}", h_a},
	    {"GET", "/a/{1a}", h_a},
	    {"GET", "/a/{pid", h_a},
	    {"GET", "/a/x{pid}", h_a},
	    {"GET", "/a/{p}/{p}", h_a},
	    {"GET", "/a b", h_a},
	    {"GET", "/%41", h_a},
	    {"GET", "/a?b", h_a},
	    {"GET", "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17", h_a},
	    {"GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", h_a},
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		expect_bad_table(&bad[i], 1, -EINVAL);

	/* the same method and shape twice could never reach the second */
	const struct http_route dup[] = {{"GET", "/a/{x}", h_a}, {"GET", "/a/{y}", h_b}};
	expect_bad_table(dup, 2, -EEXIST);

	const struct http_route fine[] = {
	    {"GET", "/a/{x}", h_a},
	    {"POST", "/a/{x}", h_a},
	    {"GET", "/a/b", h_a},
	    {"GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}", h_a},
	    {"GET", "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16", h_a},
	};
	struct http_router *r = NULL;
	struct zerr err = {0};
	assert_int_equal(http_router_new(fine, ELEMENTSOF(fine), &r, &err), 0);
	http_router_free(r);
	assert_int_equal(http_router_new(NULL, 0, &r, &err), 0);
	expect_status(r, "GET", "/", 404);
	http_router_free(r);
	http_router_free(NULL);
}

static void expect_bad_config(const struct http_config *cfg, int code)
{
	struct http_server *s = (struct http_server *)0x1;
	struct zerr err = {0};
	int rc = http_server_start(cfg, table, ELEMENTSOF(table), NULL, &s, &err);
	if (rc != code)
		fail_msg("listen '%s': got %d (%s), expected %d", cfg->listen ? cfg->listen : "(null)", rc, err.msg,
		         code);
	assert_ptr_equal(s, (struct http_server *)0x1);
}

static void test_bad_configs(void **state)
{
	const char *listens[] = {"",           "nohostport",   "1.2.3.4",      "127.0.0.1:99999",
	                         "127.0.0.1:", "127.0.0.1:-1", "127.0.0.1:8x", "[::1]8080",
	                         "[::1",       ":8080",        "::1:8080",     "[]:80"};
	for (size_t i = 0; i < ELEMENTSOF(listens); i++) {
		struct http_config cfg = {.listen = listens[i]};
		expect_bad_config(&cfg, -EINVAL);
	}
	struct http_config cfg = {.listen = "127.0.0.1:0", .max_header_bytes = 100};
	expect_bad_config(&cfg, -EINVAL);
	cfg = (struct http_config){.listen = "127.0.0.1:0", .max_connections = 100000};
	expect_bad_config(&cfg, -EINVAL);
	cfg = (struct http_config){.listen = "127.0.0.1:0", .max_body = (size_t)4 << 30};
	expect_bad_config(&cfg, -EINVAL);
	cfg = (struct http_config){.listen = "127.0.0.1:0", .max_connections = 4, .max_per_ip = 5};
	expect_bad_config(&cfg, -EINVAL);
	cfg = (struct http_config){.listen = "127.0.0.1:0", .request_timeout_ms = 4000000};
	expect_bad_config(&cfg, -EINVAL);

	struct http_server *s = NULL;
	struct zerr err = {0};
	const struct http_route bad_route = {"GET", "/x/", h_a};
	cfg = (struct http_config){.listen = "127.0.0.1:0"};
	assert_int_equal(http_server_start(&cfg, &bad_route, 1, NULL, &s, &err), -EINVAL);
	assert_null(s);
	assert_non_null(strstr(err.msg, "route 0"));
	http_server_stop(NULL);
}

static void test_target_check(void **state)
{
	assert_int_equal(http_target_check("/projects", 9), HTTP_TARGET_OK);
	assert_int_equal(http_target_check("/p?a=1&b=2", 10), HTTP_TARGET_OK);
	/* a raw NUL, control characters and spaces are refused wherever they are */
	assert_int_equal(http_target_check("/projects/\0", 11), HTTP_TARGET_BAD_CHARACTER);
	assert_int_equal(http_target_check("/p?q=\x01", 6), HTTP_TARGET_BAD_CHARACTER);
	assert_int_equal(http_target_check("/a b", 4), HTTP_TARGET_BAD_CHARACTER);
	assert_int_equal(http_target_check("/a\x7f", 3), HTTP_TARGET_BAD_CHARACTER);
	/* bytes over 0x7f pass here: the router checks their UTF-8 per segment */
	assert_int_equal(http_target_check("/caf\xc3\xa9", 6), HTTP_TARGET_OK);

	char buf[HTTP_TARGET_MAX + 2];
	memset(buf, 'a', sizeof(buf));
	buf[0] = '/';
	assert_int_equal(http_target_check(buf, HTTP_TARGET_MAX), HTTP_TARGET_OK);
	assert_int_equal(http_target_check(buf, HTTP_TARGET_MAX + 1), HTTP_TARGET_TOO_LONG);

	/* HTTP_QUERY_ARGS_MAX parameters pass, one more does not; empty ones count */
	size_t n = 0;
	buf[n++] = '/';
	buf[n++] = '?';
	for (int i = 0; i < HTTP_QUERY_ARGS_MAX - 1; i++)
		buf[n++] = '&';
	assert_int_equal(http_target_check(buf, n), HTTP_TARGET_OK);
	buf[n++] = '&';
	assert_int_equal(http_target_check(buf, n), HTTP_TARGET_TOO_MANY_ARGS);
	/* '&' in the path is not a parameter separator */
	memset(buf, '&', 200);
	buf[0] = '/';
	assert_int_equal(http_target_check(buf, 200), HTTP_TARGET_OK);
}

static void test_query_decode(void **state)
{
	char out[8];
	size_t n;
	assert_int_equal(http_query_decode("a%20b", 5, out, sizeof(out), &n), 0);
	assert_string_equal(out, "a b");
	assert_int_equal(n, 3);
	assert_int_equal(http_query_decode("%e2%82%ac", 9, out, sizeof(out), &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(http_query_decode("", 0, out, sizeof(out), &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(http_query_decode("%00", 3, out, sizeof(out), &n), -EINVAL);
	assert_int_equal(http_query_decode("%0a", 3, out, sizeof(out), &n), -EINVAL);
	assert_int_equal(http_query_decode("%ff", 3, out, sizeof(out), &n), -EINVAL);
	assert_int_equal(http_query_decode("%e2%82", 6, out, sizeof(out), &n), -EINVAL);
	assert_int_equal(http_query_decode("%zz", 3, out, sizeof(out), &n), -EINVAL);
	assert_int_equal(http_query_decode("%4", 2, out, sizeof(out), &n), -EINVAL);
	assert_int_equal(http_query_decode("1234567", 7, out, sizeof(out), &n), 0);
	assert_int_equal(http_query_decode("12345678", 8, out, sizeof(out), &n), -E2BIG);
	assert_int_equal(http_query_decode("x", 1, out, 0, &n), -E2BIG);
}

/* One request over a raw socket with "Connection: close"; the whole answer. */
static void exchange(int family, int port, const char *request, char *out, size_t size)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (family == AF_INET) {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	} else {
		struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
		a.sin6_addr = in6addr_loopback;
		assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	}
	assert_int_equal(send(fd, request, strlen(request), MSG_NOSIGNAL), (ssize_t)strlen(request));
	size_t got = 0;
	ssize_t n;
	while (got + 1 < size && (n = recv(fd, out + got, size - 1 - got, 0)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(fd);
}

static void test_live_exchange(void **state)
{
	const struct {
		int family;
		const char *listen;
	} cases[] = {{AF_INET, "127.0.0.1:0"}, {AF_INET6, "[::1]:0"}};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct http_config cfg = {.listen = cases[i].listen};
		struct http_server *s = NULL;
		struct zerr err = {0};
		assert_int_equal(http_server_start(&cfg, table, ELEMENTSOF(table), NULL, &s, &err), 0);
		int port = http_server_port(s);
		assert_true(port > 0 && port < 65536);

		/* the port is taken while the server runs */
		char taken[64];
		snprintf(taken, sizeof(taken), cases[i].family == AF_INET ? "127.0.0.1:%d" : "[::1]:%d", port);
		struct http_config again = {.listen = taken};
		struct http_server *s2 = NULL;
		assert_int_equal(http_server_start(&again, table, ELEMENTSOF(table), NULL, &s2, &err), -EADDRINUSE);

		char buf[4096];
		exchange(cases[i].family, port, "GET /lit/zz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", buf,
		         sizeof(buf));
		assert_true(strncmp(buf, "HTTP/1.1 200", 12) == 0);
		assert_non_null(strstr(buf, "{\"h\":\"b\"}"));
		const char *id = strcasestr(buf, "\r\nx-request-id: ");
		assert_non_null(id);
		id += strlen("\r\nx-request-id: ");
		assert_int_equal(strspn(id, "0123456789abcdef"), HTTP_REQUEST_ID_LEN);

		exchange(cases[i].family, port, "DELETE /projects HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
		         buf, sizeof(buf));
		assert_true(strncmp(buf, "HTTP/1.1 405", 12) == 0);
		assert_non_null(strcasestr(buf, "\r\nAllow: GET, POST\r\n"));
		assert_non_null(strstr(buf, "{\"error\":{\"code\":\"METHOD_NOT_ALLOWED\",\"message\":"));
		http_server_stop(s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_params_and_table_order),
	    cmocka_unit_test(test_decoding),
	    cmocka_unit_test(test_bounds),
	    cmocka_unit_test(test_not_found_vs_method),
	    cmocka_unit_test(test_trailing_slash_and_empty_segments),
	    cmocka_unit_test(test_bad_tables),
	    cmocka_unit_test(test_bad_configs),
	    cmocka_unit_test(test_target_check),
	    cmocka_unit_test(test_query_decode),
	    cmocka_unit_test(test_live_exchange),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
