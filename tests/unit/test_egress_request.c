/* Unit tests: the egress gateway's request heads (egress_request.c): what
 * is read, what is refused, and the head forwarded to an origin. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "egress_request.h"

static struct egress_request req;

static int parse(const char *s, struct zerr *err)
{
	return egress_parse_request(s, strlen(s), &req, err);
}

static void test_connect(void **state)
{
	struct zerr err = {0};
	const char *s = "CONNECT API.stripe.com:443 HTTP/1.1\r\nHost: api.stripe.com:443\r\n\r\n\x16\x03\x01";
	assert_int_equal(parse(s, &err), 0);
	assert_int_equal(req.kind, EGRESS_REQ_CONNECT);
	assert_string_equal(req.host, "API.stripe.com");
	assert_int_equal(req.port, 443);
	assert_int_equal(req.head_len, strlen(s) - 3);
	assert_int_equal(req.n_headers, 1);
	assert_int_equal(parse("CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n\r\n", &err), 0);
	assert_string_equal(req.host, "2001:db8::1");
	assert_int_equal(req.port, 8443);
}

static void test_absolute_form(void **state)
{
	struct zerr err = {0};
	assert_int_equal(parse("GET http://example.com HTTP/1.0\r\n\r\n", &err), 0);
	assert_int_equal(req.kind, EGRESS_REQ_HTTP);
	assert_int_equal(req.port, 80);
	assert_int_equal(req.minor, 0);
	assert_int_equal(req.path.len, 0);
	assert_int_equal(parse("POST HTTP://[::1]:8080/x/y?z#", &err), -EAGAIN);
	assert_int_equal(parse("POST HTTP://[::1]:8080/x/y?z HTTP/1.1\r\nContent-Length: 2\r\n\r\nab", &err), 0);
	assert_string_equal(req.host, "::1");
	assert_int_equal(req.port, 8080);
}

static void test_refused(void **state)
{
	struct {
		const char *s, *why;
	} bad[] = {
	    {"CONNECT a.com HTTP/1.1\r\n\r\n", "host:port"},
	    {"CONNECT a.com:0 HTTP/1.1\r\n\r\n", "1..65535"},
	    {"CONNECT a.com:65536 HTTP/1.1\r\n\r\n", "1..65535"},
	    {"CONNECT a.com:0443 HTTP/1.1\r\n\r\n", "1..65535"},
	    {"CONNECT ::1:443 HTTP/1.1\r\n\r\n", "brackets"},
	    {"CONNECT [a.com]:443 HTTP/1.1\r\n\r\n", "brackets"},
	    {"CONNECT a.com:443 HTTP/2.0\r\n\r\n", "HTTP/1.1"},
	    {"CONNECT a.com:443 HTTP/1.1\r\nContent-Length: 1\r\n\r\n", "no body"},
	    {"get http://a.com/ HTTP/1.1\r\n\r\n", "capital"},
	    {"GET /x HTTP/1.1\r\n\r\n", "absolute"},
	    {"GET https://a.com/ HTTP/1.1\r\n\r\n", "CONNECT"},
	    {"GET http://u:p@a.com/ HTTP/1.1\r\n\r\n", "user:password"},
	    {"GET http://a.com/#f HTTP/1.1\r\n\r\n", "fragment"},
	    {"GET http://a.com/ HTTP/1.1\r\nX: 1\r\n y\r\n\r\n", "folded"},
	    {"GET http://a.com/ HTTP/1.1\r\nX y: 1\r\n\r\n", "token"},
	    {"GET http://a.com/ HTTP/1.1\r\n: 1\r\n\r\n", "without a name"},
	    {"GET http://a.com/ HTTP/1.1\r\nX: a\x01\r\n\r\n", "control"},
	    {"GET http://a.com/ HTTP/1.1\nX: 1\n\n", "bare LF"},
	    {"GET http://a.com/ HTTP/1.1\r\nX: 1\rY\r\n\r\n", "bare"},
	    {"POST http://a.com/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "both"},
	    {"POST http://a.com/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting"},
	    {"POST http://a.com/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "malformed"},
	    {"POST http://a.com/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "chunked"},
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct zerr err = {0};
		if (parse(bad[i].s, &err) != -EINVAL || !strstr(err.msg, bad[i].why))
			fail_msg("%s: \"%s\"", bad[i].s, err.msg);
	}
	/* Incomplete, then too large. */
	assert_int_equal(parse("CONNECT a.com:443 HTTP/1.1\r\nHost: a", NULL), -EAGAIN);
	static char big[EGRESS_HEAD_MAX + 10];
	memset(big, 'a', sizeof(big) - 1);
	memcpy(big, "GET http://a.com/ HTTP/1.1\r\nX: ", 31);
	assert_int_equal(parse(big, NULL), -EMSGSIZE);
}

static void test_origin_head(void **state)
{
	const char *s = "GET http://a.example:8080?q=1 HTTP/1.1\r\nHost: other\r\nProxy-Authorization: x\r\n"
	                "Proxy-Connection: keep-alive\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
	                "Keep-Alive: 5\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nX-Keep: yes\r\n"
	                "Transfer-Encoding: chunked\r\n\r\n";
	assert_int_equal(parse(s, NULL), 0);
	char out[1024];
	size_t len;
	assert_int_equal(egress_request_origin_head(&req, s, out, sizeof(out), &len), 0);
	out[len] = '\0';
	assert_string_equal(out, "GET /?q=1 HTTP/1.1\r\nHost: a.example:8080\r\nX-Keep: yes\r\n"
	                         "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
	assert_int_equal(egress_request_origin_head(&req, s, out, 20, &len), -ENOSPC);
	s = "PUT http://[2001:db8::1]/p HTTP/1.0\r\n\r\n";
	assert_int_equal(parse(s, NULL), 0);
	assert_int_equal(egress_request_origin_head(&req, s, out, sizeof(out), &len), 0);
	out[len] = '\0';
	assert_string_equal(out, "PUT /p HTTP/1.0\r\nHost: [2001:db8::1]\r\nConnection: close\r\n\r\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_connect),
	    cmocka_unit_test(test_absolute_form),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_origin_head),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
