/* Unit tests: the live logs' Server-Sent Events pieces (logstream.c): the
 * Last-Event-ID parser and the event encoder; and the client's stream parser
 * (cli/sse_client.c) on what the encoder writes, with CR, LF and CRLF line
 * ends, comments, multi-line data and a stream cut anywhere. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "logstream.h"
#include "sse_client.h"

static void test_event_ids(void **state)
{
	(void)state;
	int64_t v = -1;
	assert_int_equal(sse_parse_event_id("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(sse_parse_event_id(" 42\t", &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(sse_parse_event_id("9223372036854775807", &v), 0);
	assert_true(v == INT64_MAX);
	v = 7;
	assert_int_equal(sse_parse_event_id("9223372036854775808", &v), -EINVAL);
	assert_int_equal(sse_parse_event_id("", &v), -EINVAL);
	assert_int_equal(sse_parse_event_id(" ", &v), -EINVAL);
	assert_int_equal(sse_parse_event_id("-1", &v), -EINVAL);
	assert_int_equal(sse_parse_event_id("1 2", &v), -EINVAL);
	assert_int_equal(sse_parse_event_id("12a", &v), -EINVAL);
	assert_int_equal(sse_parse_event_id("00000000000000000001", &v), -EINVAL); /* 20 digits */
	assert_int_equal(sse_parse_event_id(NULL, &v), -EINVAL);
	assert_int_equal(v, 7);
}

static void test_event_encoding(void **state)
{
	(void)state;
	struct buf b = BUF_INIT(4096);
	assert_int_equal(sse_append_event(&b, "log", 12, "{\"a\":1}", 7), 0);
	assert_int_equal(sse_append_event(&b, "end", -1, "{}", 2), 0);
	assert_string_equal(b.data, "event: log\nid: 12\ndata: {\"a\":1}\n\nevent: end\ndata: {}\n\n");
	size_t len = b.len;
	assert_int_equal(sse_append_event(&b, "log", 1, "a\nb", 3), -EINVAL);
	assert_int_equal(sse_append_event(&b, "log", 1, "a\rb", 3), -EINVAL);
	assert_int_equal(sse_append_event(&b, "Log", 1, "x", 1), -EINVAL);
	assert_int_equal(sse_append_event(&b, "", 1, "x", 1), -EINVAL);
	assert_int_equal(sse_append_event(&b, "abcdefghijklmnopq", 1, "x", 1), -EINVAL);
	assert_int_equal(b.len, len);
	buf_free(&b);
}

struct got {
	char text[1024];
	int n;
};

static void on_event(void *ctx, const char *event, const char *id, const char *data, size_t len)
{
	struct got *g = ctx;
	size_t used = strlen(g->text);
	snprintf(g->text + used, sizeof(g->text) - used, "[%s|%s|%.*s]", event, id, (int)len, data);
	g->n++;
}

static void test_client_parser(void **state)
{
	(void)state;
	static const char stream[] = "retry: 2000\r\n: live logs\r\n\r\n"
	                             "event: log\nid: 5\ndata: {\"line\":\"a\"}\n\n"
	                             "data: one\rdata:two\r\r"
	                             ": heartbeat\n\n"
	                             "event: end\r\nid: 9\r\ndata\r\n\r\n"
	                             "event: lost\nid: 10\n";
	const char *want = "[log|5|{\"line\":\"a\"}][message|5|one\ntwo][end|9|]";
	for (size_t step = 1; step <= sizeof(stream); step++) {
		struct sse_client p;
		assert_int_equal(sse_client_init(&p), 0);
		struct got g = {{0}, 0};
		for (size_t i = 0; i < sizeof(stream) - 1; i += step)
			sse_client_feed(&p, stream + i, sizeof(stream) - 1 - i < step ? sizeof(stream) - 1 - i : step,
			                on_event, &g);
		assert_string_equal(g.text, want);
		assert_int_equal(g.n, 3);
		assert_int_equal(p.retry_ms, 2000);
		assert_string_equal(p.id, "10"); /* the id of an event not yet complete counts */
		sse_client_done(&p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_event_ids),
	    cmocka_unit_test(test_event_encoding),
	    cmocka_unit_test(test_client_parser),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
