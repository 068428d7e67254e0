/* Unit tests: the role limits the API process hands the supervisor
 * (pgb_parse_limits) and the tiers' db_connections they come from. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgbouncer.h"
#include "tiers.h"

static char out_text[4096];
static char err_text[sizeof(((struct zerr *)0)->msg)];

static int parse(const char *text)
{
	struct buf out = BUF_INIT(0);
	struct zerr err = {0};
	int r = pgb_parse_limits(text, strlen(text), 50, "/run/pg", 5433, &out, &err);
	snprintf(out_text, sizeof(out_text), "%s", out.data ? out.data : "");
	snprintf(err_text, sizeof(err_text), "%s", err.msg);
	buf_free(&out);
	return r;
}

static void accepted_lines_become_database_entries(void **state)
{
	(void)state;
	assert_int_equal(parse(""), 0);
	assert_string_equal(out_text, "; Made by zmeshd from " PGB_LIMITS_FILE ".\n[databases]\n");
	assert_int_equal(parse("zp_ab12 5\nzp_cd 50\n"), 0);
	assert_non_null(strstr(out_text, "[databases]\n"
	                                 "zp_ab12 = host=/run/pg port=5433 pool_size=5 max_db_connections=6\n"
	                                 "zp_cd = host=/run/pg port=5433 pool_size=50 max_db_connections=51\n"));
}

static void anything_else_is_refused_naming_the_line(void **state)
{
	(void)state;
	static const struct {
		const char *text, *msg;
	} bad[] = {
	    {"zp 5", "line 1: no line end"},
	    {"zp 5\nzp 51\n", "line 2: 51 connections is above 50"},
	    {"zp 0\n", "line 1: want a number without leading zeros"},
	    {"zp 05\n", "line 1: want a number without leading zeros"},
	    {"zp -5\n", "line 1: want a number without leading zeros"},
	    {"zp 5 \n", "line 1: want a number without leading zeros"},
	    {"zp  5\n", "line 1: want a number without leading zeros"},
	    {"zp\n", "line 1: want \"ROLE N\""},
	    {"\n", "line 1: want \"ROLE N\""},
	    {" 5\n", "line 1: want \"ROLE N\""},
	    {"zp 1234567890\n", "line 1: want \"ROLE N\""},
	    {"Zp 5\n", "line 1: not a plain role name"},
	    {"9zp 5\n", "line 1: not a plain role name"},
	    {"zp=x 5\n", "line 1: not a plain role name"},
	    {"%include 5\n", "line 1: not a plain role name"},
	    {"[pgbouncer] 5\n", "line 1: not a plain role name"},
	    {"a234567890123456789012345678901234567890123456789012345678901234 5\n", "line 1: want \"ROLE N\""},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse(bad[i].text);
		if (r != -EINVAL || strcmp(err_text, bad[i].msg) != 0)
			fail_msg("%zu %s: %d %s", i, bad[i].text, r, err_text);
	}
	/* 63 characters is the longest role name. */
	assert_int_equal(parse("a23456789012345678901234567890123456789012345678901234567890123 5\n"), 0);
}

static int load(const char *json, struct tiers *t, struct zerr *err)
{
	char path[] = "/tmp/zmesh-tiers-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
	close(fd);
	int r = tiers_load(path, t, err);
	unlink(path);
	return r;
}

static void tiers_say_how_many_connections(void **state)
{
	(void)state;
	struct tiers t;
	struct zerr err = {0};
	assert_int_equal(load("{\"tiers\": {\"free\": {\"max_timeout_ms\": 1000, \"max_memory_mb\": 128, "
	                      "\"monthly_invocations\": 10, \"concurrency\": 2}, \"big\": {\"max_timeout_ms\": 1000, "
	                      "\"max_memory_mb\": 128, \"monthly_invocations\": 10, \"concurrency\": 2, "
	                      "\"db_connections\": 40}}}",
	                      &t, &err),
	                 0);
	assert_int_equal(tiers_find(&t, "free")->db_connections, TIERS_DEFAULT_DB_CONNECTIONS);
	assert_int_equal(tiers_find(&t, "big")->db_connections, 40);
	assert_int_equal(load("{\"tiers\": {\"free\": {\"max_timeout_ms\": 1000, \"max_memory_mb\": 128, "
	                      "\"monthly_invocations\": 10, \"concurrency\": 2, \"db_connections\": 0}}}",
	                      &t, &err),
	                 -EINVAL);
	assert_non_null(strstr(err.msg, "db_connections must be within 1..1000"));
	assert_int_equal(load("{\"tiers\": {\"free\": {\"max_timeout_ms\": 1000, \"max_memory_mb\": 128, "
	                      "\"monthly_invocations\": 10, \"concurrency\": 2, \"db_connections\": \"5\"}}}",
	                      &t, &err),
	                 -EINVAL);
	/* The shipped tiers all say. */
	assert_int_equal(tiers_load(ZMESH_POLICY_DIR "/tiers.json", &t, &err), 0);
	assert_int_equal(tiers_find(&t, "free")->db_connections, 5);
	assert_int_equal(tiers_find(&t, "pro")->db_connections, 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(accepted_lines_become_database_entries),
	    cmocka_unit_test(anything_else_is_refused_naming_the_line),
	    cmocka_unit_test(tiers_say_how_many_connections),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
