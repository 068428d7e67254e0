/* Unit tests: cron schedules (cron.c) and the time zones they fire in
 * (tz.c). Zones are read from the system's /usr/share/zoneinfo. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cron.h"
#include "tz.h"

/* "YYYY-MM-DD HH:MM:SS" in UTC to epoch ms. */
static int64_t ms(const char *s)
{
	int y, mo, d, h, mi, se;
	assert_int_equal(sscanf(s, "%d-%d-%d %d:%d:%d", &y, &mo, &d, &h, &mi, &se), 6);
	return (tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se) * 1000;
}

static const char *fmt(int64_t t_ms)
{
	static char buf[32];
	struct tz_tm tm;
	tz_to_local(NULL, t_ms / 1000, &tm);
	snprintf(buf, sizeof(buf), "%04lld-%02d-%02d %02d:%02d:%02d", (long long)tm.year, tm.mon, tm.mday, tm.hour,
	         tm.min, tm.sec);
	return buf;
}

static struct tz *zone(const char *name)
{
	struct tz *z = NULL;
	struct zerr err = {0};
	int r = tz_load(name, &z, &err);
	if (r < 0)
		fail_msg("%s: %s", name, err.msg);
	return z;
}

/* The next fire (UTC, formatted) of expr in z strictly after the UTC time
 * after. */
static const char *next(const char *expr, const struct tz *z, const char *after)
{
	struct cron c;
	struct zerr err = {0};
	int64_t t;
	if (cron_parse(expr, &c, &err) < 0)
		fail_msg("%s: %s", expr, err.msg);
	int r = cron_next(&c, z, ms(after), &t);
	if (r == -ENOENT)
		return "never";
	assert_int_equal(r, 0);
	assert_true(t > ms(after));
	return fmt(t);
}

static const char *parse_error(const char *expr)
{
	static struct zerr err;
	struct cron c;
	memset(&err, 0, sizeof(err));
	assert_int_equal(cron_parse(expr, &c, &err), -EINVAL);
	return err.msg;
}

/* Field by field: the padding of a struct copy is not part of its value. */
static bool same(const struct cron *a, const struct cron *b)
{
	return a->sec == b->sec && a->min == b->min && a->hour == b->hour && a->dom == b->dom && a->mon == b->mon &&
	       a->dow == b->dow && a->dom_star == b->dom_star && a->dow_star == b->dow_star;
}

static void test_field_forms(void **state)
{
	assert_string_equal(next("* * * * *", NULL, "2027-01-01 00:00:00"), "2027-01-01 00:01:00");
	/* Strictly after, even within the same second. */
	struct cron c;
	int64_t t;
	assert_int_equal(cron_parse("* * * * * *", &c, NULL), 0);
	assert_int_equal(cron_next(&c, NULL, ms("2027-01-01 00:00:00") + 999, &t), 0);
	assert_string_equal(fmt(t), "2027-01-01 00:00:01");
	assert_string_equal(next("*/15 * * * *", NULL, "2027-01-01 00:00:00"), "2027-01-01 00:15:00");
	assert_string_equal(next("*/15 * * * *", NULL, "2027-01-01 00:50:00"), "2027-01-01 01:00:00");
	assert_string_equal(next("10-50/5 * * * *", NULL, "2027-01-01 00:50:00"), "2027-01-01 01:10:00");
	assert_string_equal(next("10-50/5 * * * *", NULL, "2027-01-01 00:11:00"), "2027-01-01 00:15:00");
	assert_string_equal(next("1,2 * * * *", NULL, "2027-01-01 00:01:00"), "2027-01-01 00:02:00");
	assert_string_equal(next("1,2 * * * *", NULL, "2027-01-01 00:02:00"), "2027-01-01 01:01:00");
	assert_string_equal(next("0 9-17 * * *", NULL, "2027-01-01 17:00:00"), "2027-01-02 09:00:00");
	assert_string_equal(next("5/20 * * * *", NULL, "2027-01-01 00:26:00"), "2027-01-01 00:45:00");
	assert_string_equal(next("0 0 15 * *", NULL, "2027-01-15 00:00:00"), "2027-02-15 00:00:00");
	assert_string_equal(next("0 12 * 6 *", NULL, "2027-01-01 00:00:00"), "2027-06-01 12:00:00");
	assert_string_equal(next("0 0 1 1,7 *", NULL, "2027-01-01 00:00:00"), "2027-07-01 00:00:00");
	assert_string_equal(next("\t0  0 1 1 * ", NULL, "2027-01-01 00:00:00"), "2028-01-01 00:00:00");
}

static void test_names(void **state)
{
	struct cron a, b;
	assert_int_equal(cron_parse("0 0 * jan-Mar MON-fri", &a, NULL), 0);
	assert_int_equal(cron_parse("0 0 * 1-3 1-5", &b, NULL), 0);
	assert_true(same(&a, &b));
	assert_int_equal(cron_parse("0 0 * DEC sun,Sat", &a, NULL), 0);
	assert_int_equal(cron_parse("0 0 * 12 0,6", &b, NULL), 0);
	assert_true(same(&a, &b));
	/* 2027-01-01 is a Friday. */
	assert_string_equal(next("0 0 * * sat", NULL, "2027-01-01 00:00:00"), "2027-01-02 00:00:00");
	assert_string_equal(next("0 0 1 jun *", NULL, "2027-01-01 00:00:00"), "2027-06-01 00:00:00");
	assert_string_equal(parse_error("0 0 * * SUNDAY"), "day-of-week: \"SUNDAY\" is not a valid value");
	assert_string_equal(parse_error("0 0 MON * *"), "day-of-month: \"MON\" is not a valid value");
}

static void test_sunday_is_0_and_7(void **state)
{
	struct cron a, b;
	assert_int_equal(cron_parse("0 0 * * 0", &a, NULL), 0);
	assert_int_equal(cron_parse("0 0 * * 7", &b, NULL), 0);
	assert_true(same(&a, &b));
	assert_int_equal(a.dow, 1);
	assert_int_equal(cron_parse("0 0 * * 5-7", &a, NULL), 0);
	assert_int_equal(a.dow, 1 << 0 | 1 << 5 | 1 << 6);
	assert_int_equal(cron_parse("0 0 * * *", &a, NULL), 0);
	assert_int_equal(a.dow, 0x7f);
	assert_string_equal(next("0 0 * * 7", NULL, "2027-01-01 00:00:00"), "2027-01-03 00:00:00");
}

static void test_day_of_month_or_week(void **state)
{
	/* Both restricted: the 13th or any Friday. From Friday 2027-01-01:
	 * Friday the 8th comes before the 13th. */
	assert_string_equal(next("0 0 13 * 5", NULL, "2027-01-01 00:00:00"), "2027-01-08 00:00:00");
	assert_string_equal(next("0 0 13 * 5", NULL, "2027-01-08 00:00:00"), "2027-01-13 00:00:00");
	/* Only one restricted: both must match, '*' matching everything. */
	assert_string_equal(next("0 0 13 * *", NULL, "2027-01-01 00:00:00"), "2027-01-13 00:00:00");
	assert_string_equal(next("0 0 * * 5", NULL, "2027-01-01 00:00:00"), "2027-01-08 00:00:00");
	/* A field starting with '*' counts as unrestricted (Vixie), even
	 * with a step: the 13th and an even weekday must both hold. */
	assert_string_equal(next("0 0 13 * */2", NULL, "2027-01-01 00:00:00"), "2027-02-13 00:00:00");
}

static void test_seconds(void **state)
{
	assert_string_equal(next("*/10 * * * * *", NULL, "2027-01-01 00:00:00"), "2027-01-01 00:00:10");
	assert_string_equal(next("30 0 12 * * *", NULL, "2027-01-01 12:00:30"), "2027-01-02 12:00:30");
	assert_string_equal(next("59 59 23 31 12 *", NULL, "2027-01-01 00:00:00"), "2027-12-31 23:59:59");
	struct cron c;
	assert_int_equal(cron_parse("0 0 0 * * *", &c, NULL), 0);
	assert_int_equal(c.sec, 1);
	assert_int_equal(cron_parse("0 0 * * *", &c, NULL), 0);
	assert_int_equal(c.sec, 1);
}

static void test_macros(void **state)
{
	static const char *const pairs[][2] = {
	    {"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
	    {"@weekly", "0 0 * * 0"},   {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
	    {"@annually", "0 0 1 1 *"}, {"@DAILY", "0 0 * * *"},   {" @hourly ", "0 * * * *"},
	};
	for (size_t i = 0; i < ELEMENTSOF(pairs); i++) {
		struct cron a, b;
		assert_int_equal(cron_parse(pairs[i][0], &a, NULL), 0);
		assert_int_equal(cron_parse(pairs[i][1], &b, NULL), 0);
		assert_true(same(&a, &b));
	}
	assert_string_equal(parse_error("@reboot"), "schedule: unknown macro \"@reboot\"");
	assert_string_equal(parse_error("@daily 5"), "schedule: unknown macro \"@daily\"");
}

static void test_errors(void **state)
{
	struct cron c = {.min = 42};
	assert_string_equal(parse_error("0 24 * * *"), "hour: 24 is out of range 0-23");
	assert_string_equal(parse_error("60 * * * *"), "minute: 60 is out of range 0-59");
	assert_string_equal(parse_error("0 0 0 * *"), "day-of-month: 0 is out of range 1-31");
	assert_string_equal(parse_error("0 0 * 13 *"), "month: 13 is out of range 1-12");
	assert_string_equal(parse_error("0 0 * * 8"), "day-of-week: 8 is out of range 0-7");
	assert_string_equal(parse_error("60 0 0 * * *"), "second: 60 is out of range 0-59");
	assert_string_equal(parse_error("x * * * *"), "minute: \"x\" is not a valid value");
	assert_string_equal(parse_error("1x * * * *"), "minute: \"1x\" is not a valid value");
	assert_string_equal(parse_error("* * * *"), "schedule: expected 5 or 6 fields, got 4");
	assert_string_equal(parse_error("* * * * * * *"), "schedule: expected 5 or 6 fields, got more than 6");
	assert_string_equal(parse_error(""), "schedule: expected 5 or 6 fields, got 0");
	assert_string_equal(parse_error("*/0 * * * *"), "minute: step in */0 is out of range 1-59");
	assert_string_equal(parse_error("*/ * * * *"), "minute: \"*/\" has no step");
	assert_string_equal(parse_error("5-2 * * * *"), "minute: 5-2 is a reversed range");
	assert_string_equal(parse_error("0 0 * FRI-MON *"), "month: \"FRI-MON\" is not a valid value");
	assert_string_equal(parse_error("0 0 * * FRI-MON"), "day-of-week: FRI-MON is a reversed range");
	assert_string_equal(parse_error("1,,2 * * * *"), "minute: \"1,,2\" has an empty item");
	assert_string_equal(parse_error("1, * * * *"), "minute: \"1,\" has an empty item");
	assert_string_equal(parse_error("99999999999 * * * *"), "minute: 99999999999 is out of range 0-59");
	assert_string_equal(parse_error("1-2-3 * * * *"), "minute: \"1-2-3\" is not a valid value");
	char long_expr[CRON_EXPR_MAX + 8];
	memset(long_expr, ' ', sizeof(long_expr) - 1);
	long_expr[sizeof(long_expr) - 1] = '\0';
	assert_string_equal(parse_error(long_expr), "schedule: longer than 256 characters");
	assert_int_equal(cron_parse(NULL, &c, NULL), -EINVAL);
	/* Untouched on failure. */
	assert_int_equal(c.min, 42);
}

static void test_never_and_leap_day(void **state)
{
	assert_string_equal(next("0 0 29 2 *", NULL, "2027-01-01 00:00:00"), "2028-02-29 00:00:00");
	assert_string_equal(next("0 0 29 2 *", NULL, "2028-02-29 00:00:00"), "2032-02-29 00:00:00");
	/* 2100 is not a leap year: eight years to the next one, past the
	 * horizon. */
	assert_string_equal(next("0 0 29 2 *", NULL, "2096-03-01 00:00:00"), "never");
	assert_string_equal(next("0 0 30 2 *", NULL, "2027-01-01 00:00:00"), "never");
	assert_string_equal(next("0 0 31 4,6,9,11 *", NULL, "2027-01-01 00:00:00"), "never");
	/* With the day-of-week as well, either day rule works. */
	assert_string_equal(next("0 0 30 2 1", NULL, "2027-01-01 00:00:00"), "2027-02-01 00:00:00");
	struct cron c;
	int64_t t = 7;
	assert_int_equal(cron_parse("* * * * *", &c, NULL), 0);
	assert_int_equal(cron_next(&c, NULL, INT64_MAX, &t), -ERANGE);
	assert_int_equal(cron_next(&c, NULL, INT64_MIN, &t), -ERANGE);
	assert_int_equal(t, 7);
	assert_int_equal(cron_next(&c, NULL, -1, &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(cron_next(&c, NULL, -60001, &t), 0);
	assert_int_equal(t, -60000);
}

static void test_new_york_dst(void **state)
{
	struct tz *z = zone("America/New_York");
	/* 2027-03-14 02:30 EST does not exist (02:00 -> 03:00): that day has
	 * no fire, the next is 02:30 EDT on the 15th (06:30Z). */
	assert_string_equal(next("30 2 * * *", z, "2027-03-13 07:30:00"), "2027-03-15 06:30:00");
	/* Around it, ordinary days. */
	assert_string_equal(next("30 2 * * *", z, "2027-03-12 12:00:00"), "2027-03-13 07:30:00");
	assert_string_equal(next("30 3 * * *", z, "2027-03-13 12:00:00"), "2027-03-14 07:30:00");
	/* Every minute across the gap: 01:59 EST is followed by 03:00 EDT. */
	assert_string_equal(next("* * * * *", z, "2027-03-14 06:59:00"), "2027-03-14 07:00:00");
	assert_string_equal(next("0 * * * *", z, "2027-03-14 06:00:00"), "2027-03-14 07:00:00");
	/* Every second of a skipped hour: none that day; a year later the
	 * hour exists (DST began on the 12th). */
	assert_string_equal(next("* * 2 14 3 *", z, "2027-03-13 12:00:00"), "2028-03-14 06:00:00");
	assert_string_equal(next("* * * * * *", z, "2027-03-14 06:59:59"), "2027-03-14 07:00:00");
	/* 2027-11-07 01:30 happens at 05:30Z (EDT) and 06:30Z (EST): once. */
	assert_string_equal(next("30 1 * * *", z, "2027-11-06 12:00:00"), "2027-11-07 05:30:00");
	assert_string_equal(next("30 1 * * *", z, "2027-11-07 05:30:00"), "2027-11-08 06:30:00");
	/* Even from between the two occurrences. */
	assert_string_equal(next("30 1 * * *", z, "2027-11-07 06:00:00"), "2027-11-08 06:30:00");
	/* Hourly runs through the repeated hour once, then on. */
	assert_string_equal(next("0 * * * *", z, "2027-11-07 05:00:00"), "2027-11-07 07:00:00");
	assert_string_equal(next("0 2 * * *", z, "2027-11-07 05:00:00"), "2027-11-07 07:00:00");
	/* Far past the last transition in the file: the footer rule. */
	assert_string_equal(next("0 12 4 7 *", z, "2099-01-01 00:00:00"), "2099-07-04 16:00:00");
	assert_string_equal(next("30 2 * * *", z, "2099-03-07 07:30:00"), "2099-03-09 06:30:00");
	tz_free(z);
}

static void test_berlin_and_half_hours(void **state)
{
	struct tz *z = zone("Europe/Berlin");
	assert_string_equal(next("0 9 * * *", z, "2027-01-10 00:00:00"), "2027-01-10 08:00:00");
	assert_string_equal(next("0 9 * * *", z, "2027-07-10 00:00:00"), "2027-07-10 07:00:00");
	/* 2027-03-28 02:00 CET -> 03:00 CEST. */
	assert_string_equal(next("30 2 * * *", z, "2027-03-27 01:30:00"), "2027-03-29 00:30:00");
	/* 2027-10-31 03:00 CEST -> 02:00 CET: 02:30 once, at 00:30Z. */
	assert_string_equal(next("30 2 * * *", z, "2027-10-30 12:00:00"), "2027-10-31 00:30:00");
	assert_string_equal(next("30 2 * * *", z, "2027-10-31 00:30:00"), "2027-11-01 01:30:00");
	tz_free(z);

	z = zone("Asia/Kolkata");
	assert_string_equal(next("0 9 * * *", z, "2027-01-10 00:00:00"), "2027-01-10 03:30:00");
	assert_string_equal(next("0 0 * * *", z, "2027-01-10 00:00:00"), "2027-01-10 18:30:00");
	tz_free(z);

	z = zone("Australia/Adelaide");
	/* +10:30 in January, +09:30 in July. */
	assert_string_equal(next("0 9 * * *", z, "2027-01-10 00:00:00"), "2027-01-10 22:30:00");
	assert_string_equal(next("0 9 * * *", z, "2027-07-10 00:00:00"), "2027-07-10 23:30:00");
	/* 2027-04-04 03:00 ACDT -> 02:00 ACST: 02:30 once (16:00Z on the 3rd). */
	assert_string_equal(next("30 2 * * *", z, "2027-04-03 12:00:00"), "2027-04-03 16:00:00");
	assert_string_equal(next("30 2 * * *", z, "2027-04-03 16:00:00"), "2027-04-04 17:00:00");
	tz_free(z);
}

static void test_zones(void **state)
{
	struct tz *z = NULL;
	struct zerr err = {0};
	/* UTC: built in, or loaded; the same answers. */
	z = zone("UTC");
	assert_string_equal(next("0 9 * * *", z, "2027-01-10 00:00:00"), "2027-01-10 09:00:00");
	assert_string_equal(next("0 9 * * *", tz_utc(), "2027-01-10 00:00:00"), "2027-01-10 09:00:00");
	assert_string_equal(next("0 9 * * *", NULL, "2027-01-10 00:00:00"), "2027-01-10 09:00:00");
	assert_int_equal(tz_offset(z, 1805007600), 0);
	tz_free(z);
	z = NULL;

	assert_int_equal(tz_load("Mars/Olympus_Mons", &z, &err), -ENOENT);
	assert_string_equal(err.msg, "timezone: unknown zone Mars/Olympus_Mons");
	assert_null(z);
	/* A directory is not a zone. */
	assert_int_equal(tz_load("America", &z, &err), -ENOENT);
	static const char *const hostile[] = {
	    "../../etc/passwd",
	    "/etc/passwd",
	    "America/../../etc/passwd",
	    "America//New_York",
	    "America/",
	    "",
	    "a b",
	    "America/New_York\n",
	    ".",
	    "..",
	    "America/.",
	    "tz%s",
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	};
	for (size_t i = 0; i < ELEMENTSOF(hostile); i++) {
		assert_false(tz_name_valid(hostile[i]));
		assert_int_equal(tz_load(hostile[i], &z, &err), -EINVAL);
	}
	assert_int_equal(tz_load(NULL, &z, &err), -EINVAL);
	assert_true(tz_name_valid("America/Argentina/Buenos_Aires"));
	assert_true(tz_name_valid("Etc/GMT+5"));
	assert_true(tz_name_valid("EST5EDT"));
	tz_free(NULL);
}

/* Offsets at instants around transitions, as given by
 * `TZ=<zone> date -d @EPOCH +%z` (GNU coreutils with the system's tzdata,
 * run once while writing this test). */
static void test_tz_offsets(void **state)
{
	static const struct {
		const char *zone;
		int64_t t;
		int32_t off;
	} cases[] = {
	    {"America/New_York", 1803000000, -5 * 3600}, {"America/New_York", 1815000000, -4 * 3600},
	    {"America/New_York", 1805007599, -5 * 3600}, {"America/New_York", 1805007600, -4 * 3600},
	    {"America/New_York", 1825567199, -4 * 3600}, {"America/New_York", 1825567200, -5 * 3600},
	    {"America/New_York", 4076636399, -5 * 3600}, {"America/New_York", 4076636400, -4 * 3600},
	    {"America/New_York", 4102444800, -5 * 3600}, {"America/New_York", 4118000000, -4 * 3600},
	    {"Europe/Berlin", 1806195599, 3600},         {"Europe/Berlin", 1806195600, 7200},
	    {"Europe/Berlin", 1815000000, 7200},         {"Australia/Adelaide", 1803000000, 37800},
	    {"Australia/Adelaide", 1806769800, 34200},   {"Australia/Adelaide", 1806769799, 37800},
	    {"Australia/Adelaide", 4118000000, 34200},   {"Asia/Kolkata", 1806195600, 19800},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct tz *z = zone(cases[i].zone);
		if (tz_offset(z, cases[i].t) != cases[i].off)
			fail_msg("%s at %lld: %d, want %d", cases[i].zone, (long long)cases[i].t,
			         tz_offset(z, cases[i].t), cases[i].off);
		tz_free(z);
	}
}

static void test_tz_local_to_utc(void **state)
{
	struct tz *z = zone("America/New_York");
	int64_t t[2];
	struct tz_tm gap = {2027, 3, 14, 2, 30, 0, 0};
	struct tz_tm twice = {2027, 11, 7, 1, 30, 0, 0};
	struct tz_tm plain = {2027, 7, 1, 12, 0, 0, 0};
	assert_int_equal(tz_local_to_utc(z, &gap, t), 0);
	assert_int_equal(tz_local_to_utc(z, &twice, t), 2);
	assert_int_equal(t[0], ms("2027-11-07 05:30:00") / 1000);
	assert_int_equal(t[1], ms("2027-11-07 06:30:00") / 1000);
	assert_int_equal(tz_local_to_utc(z, &plain, t), 1);
	assert_int_equal(t[0], ms("2027-07-01 16:00:00") / 1000);
	struct tz_tm back;
	tz_to_local(z, t[0], &back);
	assert_int_equal(back.hour, 12);
	assert_int_equal(back.wday, 4); /* a Thursday */
	tz_free(z);
}

/* A TZif v2 file with no transitions and only a footer rule. */
static size_t tzif_with_rule(uint8_t *buf, const char *rule)
{
	size_t n = 0;
	for (int part = 0; part < 2; part++) {
		memcpy(buf + n, "TZif2", 5);
		memset(buf + n + 5, 0, 39);
		buf[n + 39] = 1; /* typecnt */
		buf[n + 43] = 4; /* charcnt */
		n += 44;
		memcpy(buf + n, "\0\0\0\0\0\0AAA", 10);
		n += 10;
	}
	n += (size_t)sprintf((char *)buf + n, "\n%s\n", rule);
	return n;
}

/* POSIX rules in their three day forms, checked against glibc's reading of
 * the same TZ strings (`TZ='<rule>' date -d @EPOCH +%z`, run once). */
static void test_tz_posix_rules(void **state)
{
	static const struct {
		const char *rule;
		int64_t t;
		int32_t off;
	} cases[] = {
	    {"AAA3BBB,J60/2,J300/2", 1803877199, -3 * 3600},
	    {"AAA3BBB,J60/2,J300/2", 1803877200, -2 * 3600},
	    {"AAA3BBB,J60/2,J300/2", 1835499599, -3 * 3600},
	    {"AAA3BBB,J60/2,J300/2", 1835499600, -2 * 3600},
	    {"AAA3BBB,J60/2,J300/2", 1827619200, -3 * 3600},
	    {"AAA3BBB,59/2,299/2", 1803877199, -3 * 3600},
	    {"AAA3BBB,59/2,299/2", 1803877200, -2 * 3600},
	    {"AAA3BBB,59/2,299/2", 1835499599, -2 * 3600},
	    {"AAA-10BBB,M10.1.0,M4.1.0/3", 1814400000, 10 * 3600},
	    {"AAA-10BBB,M10.1.0,M4.1.0/3", 1827619200, 11 * 3600},
	    {"<+03>-3", 1814400000, 3 * 3600},
	    {"AAA5BBB4,M3.5.0/-1,M10.5.6/26", 1837655999, -5 * 3600},
	    {"AAA5BBB4,M3.5.0/-1,M10.5.6/26", 1837656000, -4 * 3600},
	    {"AAA5BBB4,M3.5.0/-1,M10.5.6/26", 1827619200, -5 * 3600},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		uint8_t buf[256];
		struct tz *z = NULL;
		struct zerr err = {0};
		size_t n = tzif_with_rule(buf, cases[i].rule);
		if (tz_parse(buf, n, "test", &z, &err) < 0)
			fail_msg("%s: %s", cases[i].rule, err.msg);
		if (tz_offset(z, cases[i].t) != cases[i].off)
			fail_msg("%s at %lld: %d, want %d", cases[i].rule, (long long)cases[i].t,
			         tz_offset(z, cases[i].t), cases[i].off);
		tz_free(z);
	}
	static const char *const bad[] = {"A5",    "AAA",   "AAA5BBB,M13.1.0,M1.1.0", "AAA5BBB,J0,J1", "AAA5BBB,M3.2.0",
	                                  "AAA99", "<AAA5", "AAA5BBB,366,1",          "AAA5 "};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		uint8_t buf[256];
		struct tz *z = NULL;
		size_t n = tzif_with_rule(buf, bad[i]);
		if (tz_parse(buf, n, "test", &z, NULL) != -EINVAL)
			fail_msg("accepted %s", bad[i]);
	}
}

static void test_tz_parse_hostile(void **state)
{
	uint8_t buf[256];
	struct tz *z = NULL;
	size_t n = tzif_with_rule(buf, "UTC0");
	assert_int_equal(tz_parse(buf, n, NULL, &z, NULL), 0);
	tz_free(z);
	z = NULL;
	/* Every truncation is refused. */
	for (size_t k = 0; k < n; k++)
		assert_int_equal(tz_parse(buf, k, NULL, &z, NULL) < 0, 1);
	assert_null(z);
	/* Version 1. */
	buf[4] = 0;
	assert_int_equal(tz_parse(buf, n, NULL, &z, NULL), -ENOTSUP);
	buf[4] = '2';
	/* A huge transition count. */
	buf[44 + 10 + 32] = 0xff;
	assert_int_equal(tz_parse(buf, n, NULL, &z, NULL), -E2BIG);
	assert_null(z);
}

/* Whether UTC second s fires: its local time matches and first occurs
 * then. */
static bool fires_at(const struct cron *c, const struct tz *z, int64_t s)
{
	struct tz_tm tm;
	int64_t utc[2];
	tz_to_local(z, s, &tm);
	return cron_matches(c, &tm) && tz_local_to_utc(z, &tm, utc) > 0 && utc[0] == s;
}

/* Around a DST change back, and in the day before it, cron_next gives
 * what a second-by-second search gives (the repeated hour fires once). */
static void test_before_and_after_a_fall_back(void **state)
{
	static const char *const zones[] = {"America/New_York", "Australia/Lord_Howe", "Europe/Berlin"};
	/* Each zone's change back: 2027-11-07 06:00Z, 2027-04-03 15:00Z
	 * (02:00 +11 to 01:30 +10:30), 2027-10-31 01:00Z. */
	static const char *const changes[] = {"2027-11-07 06:00:00", "2027-04-03 15:00:00", "2027-10-31 01:00:00"};
	static const char *const exprs[] = {"* * * * * *", "*/7 * * * * *", "0,30 * * * * *", "15 * * * *"};
	enum { SPAN = 28 * 3600 };
	static bool fires[SPAN];
	for (size_t i = 0; i < 3; i++) {
		struct tz *z = zone(zones[i]);
		int64_t lo = ms(changes[i]) / 1000 - 25 * 3600;
		for (size_t e = 0; e < 4; e++) {
			struct cron c;
			assert_int_equal(cron_parse(exprs[e], &c, NULL), 0);
			for (int64_t k = 0; k < SPAN; k++)
				fires[k] = fires_at(&c, z, lo + k);
			/* From 25 h before the change to 2 h after, in steps
			 * of 7 minutes, then each second of the hour before
			 * it and of the two after. */
			for (int64_t k = 0; k < 27 * 3600; k += k >= 24 * 3600 ? 1 : 7 * 60 + 13) {
				int64_t want = k + 1, got;
				while (want < SPAN && !fires[want])
					want++;
				assert_true(want < SPAN);
				assert_int_equal(cron_next(&c, z, (lo + k) * 1000 + 999, &got), 0);
				if (got != (lo + want) * 1000)
					fail_msg("%s %s after %s: %s", zones[i], exprs[e], fmt((lo + k) * 1000),
					         fmt(got));
			}
		}
		tz_free(z);
	}
}

/* Every second of the day before a change back, one after another: as
 * fast as on any other day (each call converted an hour of local seconds
 * before, found by fuzz_sched_plan: minutes under ASan). */
static void test_seconds_before_a_fall_back_are_quick(void **state)
{
	struct tz *z = zone("America/New_York");
	struct cron c;
	assert_int_equal(cron_parse("* * * * * *", &c, NULL), 0);
	int64_t t = ms("2027-11-06 05:00:00"), next;
	clock_t start = clock();
	for (int i = 0; i < 7200; i++) {
		assert_int_equal(cron_next(&c, z, t, &next), 0);
		assert_int_equal(next, t + 1000);
		t = next;
	}
	double cpu = (double)(clock() - start) / CLOCKS_PER_SEC;
	if (cpu > 1.0)
		fail_msg("7200 ticks took %.2f s of CPU", cpu);
	tz_free(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_field_forms),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_sunday_is_0_and_7),
	    cmocka_unit_test(test_day_of_month_or_week),
	    cmocka_unit_test(test_seconds),
	    cmocka_unit_test(test_macros),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_never_and_leap_day),
	    cmocka_unit_test(test_new_york_dst),
	    cmocka_unit_test(test_berlin_and_half_hours),
	    cmocka_unit_test(test_zones),
	    cmocka_unit_test(test_tz_offsets),
	    cmocka_unit_test(test_tz_local_to_utc),
	    cmocka_unit_test(test_tz_posix_rules),
	    cmocka_unit_test(test_tz_parse_hostile),
	    cmocka_unit_test(test_before_and_after_a_fall_back),
	    cmocka_unit_test(test_seconds_before_a_fall_back_are_quick),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
