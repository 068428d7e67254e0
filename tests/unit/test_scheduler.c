/* Unit tests: the cron scheduler's pure parts (scheduler.c): which ticks
 * fire after a gap under each catch_up policy, the latest tick before a
 * time, a trigger's config as stored, and the event of a tick. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.h"

/* "YYYY-MM-DD HH:MM:SS" in UTC to epoch ms. */
static int64_t ms(const char *s)
{
	int y, mo, d, h, mi, se;
	assert_int_equal(sscanf(s, "%d-%d-%d %d:%d:%d", &y, &mo, &d, &h, &mi, &se), 6);
	return (tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se) * 1000;
}

static const char *fmt(int64_t t_ms)
{
	static char buf[SCHED_TIME_LEN];
	sched_time_format(t_ms, buf);
	return buf;
}

static struct cron parse(const char *expr)
{
	struct cron c;
	struct zerr err = {0};
	if (cron_parse(expr, &c, &err) < 0)
		fail_msg("%s: %s", expr, err.msg);
	return c;
}

static struct sched_plan *plan(const char *expr, const struct tz *z, int64_t after, int64_t now,
                               enum sched_catch_up policy)
{
	static struct sched_plan p;
	struct cron c = parse(expr);
	assert_int_equal(sched_plan(&c, z, after, now, policy, &p), 0);
	for (size_t i = 1; i < p.n_fire; i++)
		assert_true(p.fire[i - 1] < p.fire[i]);
	for (size_t i = 0; i < p.n_fire; i++)
		assert_true(p.fire[i] > after && p.fire[i] <= now);
	return &p;
}

static void test_time_format(void **state)
{
	char buf[SCHED_TIME_LEN];
	sched_time_format(0, buf);
	assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
	sched_time_format(ms("2024-02-29 23:59:59") + 7, buf);
	assert_string_equal(buf, "2024-02-29T23:59:59.007Z");
	sched_time_format(-1, buf);
	assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
	sched_time_format(ms("9999-12-31 23:59:59") + 999, buf);
	assert_string_equal(buf, "9999-12-31T23:59:59.999Z");
}

static void test_event(void **state)
{
	json_t *payload = json_pack("{s:i}", "n", 1);
	json_t *ev = sched_event("0b9a4e38-1f7a-4c39-9d51-000000000001", "*/5 * * * *", ms("2027-01-01 00:05:00"),
	                         ms("2027-01-01 00:05:00") + 42, payload);
	assert_non_null(ev);
	assert_int_equal(json_object_size(ev), 6);
	assert_string_equal(json_string_value(json_object_get(ev, "trigger")), "schedule");
	assert_string_equal(json_string_value(json_object_get(ev, "trigger_id")),
	                    "0b9a4e38-1f7a-4c39-9d51-000000000001");
	assert_string_equal(json_string_value(json_object_get(ev, "cron")), "*/5 * * * *");
	assert_string_equal(json_string_value(json_object_get(ev, "scheduled_time")), "2027-01-01T00:05:00.000Z");
	assert_string_equal(json_string_value(json_object_get(ev, "actual_time")), "2027-01-01T00:05:00.042Z");
	assert_ptr_equal(json_object_get(ev, "payload"), payload); /* borrowed: one more reference */
	assert_int_equal(payload->refcount, 2);
	json_decref(ev);
	assert_int_equal(payload->refcount, 1);
	json_decref(payload);

	ev = sched_event("x", "@daily", 0, 0, NULL);
	assert_true(json_is_null(json_object_get(ev, "payload")));
	json_decref(ev);
}

static json_t *js(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
	if (!j)
		fail_msg("%s: %s", text, e.text);
	return j;
}

static const char *config_error(const char *text)
{
	static struct zerr err;
	memset(&err, 0, sizeof(err));
	json_t *j = js(text);
	struct sched_config c;
	assert_int_equal(sched_config_parse(j, &c, &err), -EINVAL);
	json_decref(j);
	return err.msg;
}

static void test_config(void **state)
{
	/* A row written by hand: defaults filled. */
	json_t *j = js("{\"schedule\": \"*/1 * * * * *\"}");
	struct sched_config c;
	assert_int_equal(sched_config_parse(j, &c, NULL), 0);
	assert_string_equal(c.schedule, "*/1 * * * * *");
	assert_string_equal(c.timezone, "UTC");
	assert_true(json_is_null(c.payload));
	assert_int_equal(c.catch_up, SCHED_CATCH_UP_SKIP);
	assert_int_equal(c.overlap, SCHED_OVERLAP_ALLOW);
	struct cron want = parse("*/1 * * * * *");
	assert_true(c.cron.sec == want.sec && c.cron.min == want.min && c.cron.hour == want.hour &&
	            c.cron.dom == want.dom && c.cron.mon == want.mon && c.cron.dow == want.dow);
	assert_int_equal(c.cron.sec, UINT64_MAX >> 4); /* seconds 0-59 */
	sched_config_done(&c);
	json_decref(j);

	/* As the API stores it, nulls as absent. */
	j = js("{\"schedule\": \"@hourly\", \"timezone\": \"Europe/Berlin\", \"payload\": {\"a\": [1]}, "
	       "\"catch_up\": \"all\", \"overlap\": \"skip\", \"extra\": 1}");
	assert_int_equal(sched_config_parse(j, &c, NULL), 0);
	assert_string_equal(c.timezone, "Europe/Berlin");
	assert_int_equal(c.catch_up, SCHED_CATCH_UP_ALL);
	assert_int_equal(c.overlap, SCHED_OVERLAP_SKIP);
	assert_ptr_equal(c.payload, json_object_get(j, "payload"));
	json_decref(j); /* the config keeps its own reference */
	assert_int_equal(json_integer_value(json_array_get(json_object_get(c.payload, "a"), 0)), 1);
	sched_config_done(&c);
	sched_config_done(&c); /* twice is harmless */

	j = js("{\"schedule\": \"0 0 * * *\", \"timezone\": null, \"catch_up\": \"latest\", \"overlap\": null}");
	assert_int_equal(sched_config_parse(j, &c, NULL), 0);
	assert_string_equal(c.timezone, "UTC");
	assert_int_equal(c.catch_up, SCHED_CATCH_UP_LATEST);
	sched_config_done(&c);
	json_decref(j);

	/* Malformed rows: named, never a crash. */
	assert_string_equal(config_error("[]"), "config: not an object");
	assert_string_equal(config_error("null"), "config: not an object");
	assert_string_equal(config_error("{}"), "config.schedule: missing or not a string");
	assert_string_equal(config_error("{\"schedule\": 5}"), "config.schedule: missing or not a string");
	assert_string_equal(config_error("{\"schedule\": \"0 24 * * *\"}"),
	                    "config.schedule: hour: 24 is out of range 0-23");
	assert_string_equal(config_error("{\"schedule\": \"@daily\", \"timezone\": \"../etc/passwd\"}"),
	                    "config.timezone: \"../etc/passwd\" is not a zone name");
	assert_string_equal(config_error("{\"schedule\": \"@daily\", \"timezone\": 1}"),
	                    "config.timezone: not a string");
	assert_string_equal(config_error("{\"schedule\": \"@daily\", \"catch_up\": \"some\"}"),
	                    "config.catch_up: \"some\" is not one of the choices");
	assert_string_equal(config_error("{\"schedule\": \"@daily\", \"overlap\": true}"),
	                    "config.overlap: not a string");
	char big[CRON_EXPR_MAX + 40];
	snprintf(big, sizeof(big), "{\"schedule\": \"%0*d\"}", CRON_EXPR_MAX + 1, 0);
	assert_string_equal(config_error(big), "config.schedule: longer than 256 bytes");
}

static void test_last_tick(void **state)
{
	struct cron c = parse("*/15 * * * *");
	int64_t t;
	assert_int_equal(sched_last_tick(&c, NULL, ms("2027-01-01 00:00:00"), ms("2027-01-01 01:07:00"), &t), 0);
	assert_string_equal(fmt(t), "2027-01-01T01:00:00.000Z");
	/* hi itself counts, lo does not. */
	assert_int_equal(sched_last_tick(&c, NULL, ms("2027-01-01 00:00:00"), ms("2027-01-01 00:15:00"), &t), 0);
	assert_string_equal(fmt(t), "2027-01-01T00:15:00.000Z");
	assert_int_equal(sched_last_tick(&c, NULL, ms("2027-01-01 00:15:00"), ms("2027-01-01 00:29:59"), &t), -ENOENT);
	assert_int_equal(sched_last_tick(&c, NULL, ms("2027-01-01 00:15:00"), ms("2027-01-01 00:15:00"), &t), -ENOENT);
	/* Sparse and far: the last 29th of February before 2035. */
	c = parse("0 12 29 2 *");
	assert_int_equal(sched_last_tick(&c, NULL, ms("2020-01-01 00:00:00"), ms("2035-01-01 00:00:00"), &t), 0);
	assert_string_equal(fmt(t), "2032-02-29T12:00:00.000Z");
	/* Every second: the second at or before hi. */
	c = parse("* * * * * *");
	assert_int_equal(sched_last_tick(&c, NULL, ms("2020-01-01 00:00:00"), ms("2027-06-01 10:00:00") + 999, &t), 0);
	assert_string_equal(fmt(t), "2027-06-01T10:00:00.000Z");
}

static void test_plan_on_time(void **state)
{
	/* Woken at the tick: that tick, nothing missed. */
	int64_t now = ms("2027-01-01 12:00:00") + 3;
	struct sched_plan *p = plan("* * * * *", NULL, ms("2027-01-01 11:59:00") + 1, now, SCHED_CATCH_UP_SKIP);
	assert_int_equal(p->n_fire, 1);
	assert_string_equal(fmt(p->fire[0]), "2027-01-01T12:00:00.000Z");
	assert_int_equal(p->missed, 0);
	assert_false(p->missed_more);
	assert_string_equal(fmt(p->next), "2027-01-01T12:01:00.000Z");

	/* Nothing due: nothing fires, next is known. */
	p = plan("* * * * *", NULL, now, now + 500, SCHED_CATCH_UP_ALL);
	assert_int_equal(p->n_fire, 0);
	assert_string_equal(fmt(p->next), "2027-01-01T12:01:00.000Z");
	/* Dealt with beyond now (another node's clock runs ahead). */
	p = plan("* * * * * *", NULL, now + 5000, now, SCHED_CATCH_UP_ALL);
	assert_int_equal(p->n_fire, 0);
	assert_string_equal(fmt(p->next), "2027-01-01T12:00:06.000Z");

	/* Late within the threshold: fires, whatever the policy. Exactly
	 * SCHED_MISFIRE_MS late is still on time; a millisecond more is
	 * missed. */
	int64_t tick = ms("2027-01-01 12:00:00");
	for (int pol = SCHED_CATCH_UP_SKIP; pol <= SCHED_CATCH_UP_ALL; pol++) {
		p = plan("* * * * *", NULL, tick - 60000, tick + SCHED_MISFIRE_MS, pol);
		assert_int_equal(p->n_fire, 1);
		assert_int_equal(p->fire[0], tick);
		assert_int_equal(p->missed, 0);
	}
	p = plan("* * * * *", NULL, tick - 60000, tick + SCHED_MISFIRE_MS + 1, SCHED_CATCH_UP_SKIP);
	assert_int_equal(p->n_fire, 0);
	assert_int_equal(p->missed, 1);
	assert_int_equal(p->missed_first, tick);
	assert_int_equal(p->missed_last, tick);

	/* Every second, a node stalled 3 s: the ticks since fire, late. */
	p = plan("*/1 * * * * *", NULL, tick - 3000, tick + 20, SCHED_CATCH_UP_SKIP);
	assert_int_equal(p->n_fire, 3);
	assert_int_equal(p->fire[0], tick - 2000);
	assert_int_equal(p->fire[2], tick);
	assert_int_equal(p->missed, 0);
}

/* A node back at 12:00:05 whose last fired tick of an every-minute
 * schedule was 11:00. */
static void test_plan_catch_up(void **state)
{
	int64_t after = ms("2027-01-01 11:00:00"), now = ms("2027-01-01 12:00:05");
	struct sched_plan *p = plan("* * * * *", NULL, after, now, SCHED_CATCH_UP_SKIP);
	assert_int_equal(p->n_fire, 1); /* 12:00, five seconds late */
	assert_string_equal(fmt(p->fire[0]), "2027-01-01T12:00:00.000Z");
	assert_int_equal(p->missed, 59);
	assert_false(p->missed_more);
	assert_string_equal(fmt(p->missed_first), "2027-01-01T11:01:00.000Z");
	assert_string_equal(fmt(p->missed_last), "2027-01-01T11:59:00.000Z");

	p = plan("* * * * *", NULL, after, now, SCHED_CATCH_UP_LATEST);
	assert_int_equal(p->n_fire, 2);
	assert_string_equal(fmt(p->fire[0]), "2027-01-01T11:59:00.000Z");
	assert_string_equal(fmt(p->fire[1]), "2027-01-01T12:00:00.000Z");
	assert_int_equal(p->missed, 58);
	assert_string_equal(fmt(p->missed_first), "2027-01-01T11:01:00.000Z");
	assert_string_equal(fmt(p->missed_last), "2027-01-01T11:58:00.000Z");

	p = plan("* * * * *", NULL, after, now, SCHED_CATCH_UP_ALL);
	assert_int_equal(p->n_fire, 60);
	assert_string_equal(fmt(p->fire[0]), "2027-01-01T11:01:00.000Z");
	assert_string_equal(fmt(p->fire[59]), "2027-01-01T12:00:00.000Z");
	assert_int_equal(p->missed, 0);
	assert_false(p->capped);

	/* Latest with one missed tick: it fires, nothing is dropped. */
	p = plan("0 * * * *", NULL, ms("2027-01-01 10:00:00"), ms("2027-01-01 11:30:00"), SCHED_CATCH_UP_LATEST);
	assert_int_equal(p->n_fire, 1);
	assert_string_equal(fmt(p->fire[0]), "2027-01-01T11:00:00.000Z");
	assert_int_equal(p->missed, 0);
	assert_int_equal(p->missed_first, 0);
}

static void test_plan_all_is_bounded(void **state)
{
	/* Every second for two hours: the most recent SCHED_CATCH_UP_MAX
	 * missed ones, then those on time; the older ones dropped. */
	int64_t now = ms("2027-01-01 12:00:00") + 500, after = ms("2027-01-01 10:00:00");
	struct sched_plan *p = plan("* * * * * *", NULL, after, now, SCHED_CATCH_UP_ALL);
	int64_t missed_hi = now - SCHED_MISFIRE_MS - 1; /* 11:59:50.499 */
	uint64_t n_missed = (uint64_t)((missed_hi - after) / 1000);
	size_t on_time = 10; /* 11:59:51 .. 12:00:00 */
	assert_true(p->capped);
	assert_int_equal(p->n_fire, SCHED_CATCH_UP_MAX + on_time);
	assert_int_equal(p->missed, n_missed - SCHED_CATCH_UP_MAX);
	for (size_t i = 1; i < p->n_fire; i++)
		assert_int_equal(p->fire[i] - p->fire[i - 1], 1000); /* contiguous: nothing lost in the ring */
	assert_string_equal(fmt(p->fire[p->n_fire - 1]), "2027-01-01T12:00:00.000Z");
	assert_string_equal(fmt(p->missed_first), "2027-01-01T10:00:01.000Z");
	assert_int_equal(p->missed_last, p->fire[0] - 1000);

	/* The window: three days down, hourly, "all" reaches back 24 h. */
	now = ms("2027-01-04 12:30:00");
	p = plan("0 * * * *", NULL, ms("2027-01-01 12:00:00"), now, SCHED_CATCH_UP_ALL);
	assert_int_equal(p->n_fire, 24);
	assert_string_equal(fmt(p->fire[0]), "2027-01-03T13:00:00.000Z");
	assert_string_equal(fmt(p->fire[23]), "2027-01-04T12:00:00.000Z");
	assert_true(p->missed_more);
	assert_false(p->capped);
	/* skip counts the window's only, and says there were more. */
	p = plan("0 * * * *", NULL, ms("2027-01-01 12:00:00"), now, SCHED_CATCH_UP_SKIP);
	assert_int_equal(p->n_fire, 0);
	assert_int_equal(p->missed, 24);
	assert_true(p->missed_more);
}

static void test_plan_latest_before_window(void **state)
{
	/* Weekly on Mondays; last fired Monday 2024-03-04; back on Thursday
	 * the 14th: the 11th is outside the 24 h window, latest still runs it. */
	int64_t after = ms("2024-03-04 00:00:00"), now = ms("2024-03-14 12:00:00");
	struct sched_plan *p = plan("0 0 * * 1", NULL, after, now, SCHED_CATCH_UP_LATEST);
	assert_int_equal(p->n_fire, 1);
	assert_string_equal(fmt(p->fire[0]), "2024-03-11T00:00:00.000Z");
	assert_int_equal(p->missed, 0);
	assert_false(p->missed_more);
	assert_string_equal(fmt(p->next), "2024-03-18T00:00:00.000Z");
	/* Two Mondays missed: the older is dropped. */
	p = plan("0 0 * * 1", NULL, ms("2024-02-26 00:00:00"), now, SCHED_CATCH_UP_LATEST);
	assert_int_equal(p->n_fire, 1);
	assert_string_equal(fmt(p->fire[0]), "2024-03-11T00:00:00.000Z");
	assert_true(p->missed_more);
	/* all and skip do not reach it. */
	p = plan("0 0 * * 1", NULL, after, now, SCHED_CATCH_UP_ALL);
	assert_int_equal(p->n_fire, 0);
	assert_true(p->missed_more);
	p = plan("0 0 * * 1", NULL, after, now, SCHED_CATCH_UP_SKIP);
	assert_int_equal(p->n_fire, 0);
	assert_true(p->missed_more);
	/* Nothing at all since: nothing fires, nothing is missed. */
	p = plan("0 0 * * 1", NULL, ms("2024-03-11 00:00:00"), now, SCHED_CATCH_UP_LATEST);
	assert_int_equal(p->n_fire, 0);
	assert_int_equal(p->missed, 0);
	assert_false(p->missed_more);
}

static void test_plan_in_a_zone(void **state)
{
	/* 02:30 New York daily: 2024-03-10 has no 02:30 (spring forward), so
	 * a node down from the 9th to the 11th missed only the 9th's. */
	struct tz *z = NULL;
	struct zerr err = {0};
	if (tz_load("America/New_York", &z, &err) < 0)
		fail_msg("%s", err.msg);
	struct sched_plan *p =
	    plan("30 2 * * *", z, ms("2024-03-09 00:00:00"), ms("2024-03-11 12:00:00"), SCHED_CATCH_UP_ALL);
	assert_int_equal(p->n_fire, 1);
	assert_string_equal(fmt(p->fire[0]), "2024-03-11T06:30:00.000Z"); /* 02:30 EDT */
	assert_true(p->missed_more);                                      /* the 9th's, 07:30 UTC: outside 24 h */
	p = plan("30 2 * * *", z, ms("2024-03-09 00:00:00"), ms("2024-03-11 12:00:00"), SCHED_CATCH_UP_LATEST);
	assert_int_equal(p->n_fire, 1);
	assert_string_equal(fmt(p->fire[0]), "2024-03-11T06:30:00.000Z");
	tz_free(z);
}

/* Times outside cron_next's range are -ERANGE, however far out: the
 * differences taken on the way must not overflow (found by
 * fuzz_sched_plan). */
static void test_times_out_of_range(void **state)
{
	struct cron c = parse("* * * * *");
	struct sched_plan *p = malloc(sizeof(*p));
	assert_non_null(p);
	/* now - SCHED_WINDOW_MS below INT64_MIN. */
	assert_int_equal(sched_plan(&c, NULL, INT64_MIN, INT64_MIN + 16896, SCHED_CATCH_UP_SKIP, p), -ERANGE);
	assert_int_equal(sched_plan(&c, NULL, INT64_MIN, INT64_MIN, SCHED_CATCH_UP_ALL, p), -ERANGE);
	/* A clock before year 1 with the last tick in range was a plan. */
	assert_int_equal(sched_plan(&c, NULL, CRON_MS_MIN + 1000, CRON_MS_MIN - 1, SCHED_CATCH_UP_LATEST, p), -ERANGE);
	assert_int_equal(sched_plan(&c, NULL, 0, CRON_MS_MAX + 1, SCHED_CATCH_UP_SKIP, p), -ERANGE);
	/* The edges themselves plan. */
	assert_int_equal(sched_plan(&c, NULL, CRON_MS_MAX - 120000, CRON_MS_MAX, SCHED_CATCH_UP_ALL, p), 0);
	assert_int_equal(p->n_fire, 2);
	free(p);

	/* hi - lo above INT64_MAX: the bisection answered the first tick
	 * after lo. */
	int64_t t = 0;
	assert_int_equal(sched_last_tick(&c, NULL, -1000, INT64_MAX, &t), -ERANGE);
	assert_int_equal(sched_last_tick(&c, NULL, ms("2027-01-01 00:00:00"), CRON_MS_MAX + 1, &t), -ERANGE);
	assert_int_equal(sched_last_tick(&c, NULL, INT64_MIN, INT64_MAX, &t), -ERANGE);
	assert_int_equal(t, 0);
	assert_int_equal(sched_last_tick(&c, NULL, CRON_MS_MAX - 120000, CRON_MS_MAX, &t), 0);
	assert_string_equal(fmt(t), "9999-12-31T23:59:00.000Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_time_format),
	    cmocka_unit_test(test_event),
	    cmocka_unit_test(test_config),
	    cmocka_unit_test(test_last_tick),
	    cmocka_unit_test(test_plan_on_time),
	    cmocka_unit_test(test_plan_catch_up),
	    cmocka_unit_test(test_plan_all_is_bounded),
	    cmocka_unit_test(test_plan_latest_before_window),
	    cmocka_unit_test(test_plan_in_a_zone),
	    cmocka_unit_test(test_times_out_of_range),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
