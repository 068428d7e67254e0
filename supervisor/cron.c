/* cron.c - see cron.h */
#define _GNU_SOURCE
#include "cron.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

struct field {
	const char *name;
	int min, max;
	const char *const *names; /* names[i] stands for min + i */
};

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL",
                                          "AUG", "SEP", "OCT", "NOV", "DEC", NULL};
static const char *const day_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", NULL};

enum { F_SEC, F_MIN, F_HOUR, F_DOM, F_MON, F_DOW, F_COUNT };

static const struct field fields[F_COUNT] = {
    [F_SEC] = {"second", 0, 59, NULL},
    [F_MIN] = {"minute", 0, 59, NULL},
    [F_HOUR] = {"hour", 0, 23, NULL},
    [F_DOM] = {"day-of-month", 1, 31, NULL},
    [F_MON] = {"month", 1, 12, month_names},
    /* 7 is Sunday again; folded into bit 0 after parsing. */
    [F_DOW] = {"day-of-week", 0, 7, day_names},
};

static const struct {
	const char *name, *expr;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},  {"@midnight", "0 0 * * *"}, {"@hourly", "0 * * * *"},
};

/* One value (a number or, where the field has names, a name) at *p. */
static int parse_value(const struct field *f, const char *tok, const char **p, int *ret, struct zerr *err)
{
	const char *s = *p;
	if (*s >= '0' && *s <= '9') {
		int v = 0;
		while (*s >= '0' && *s <= '9') {
			if (v > 1000)
				return zerr_set(err, -EINVAL, "%s: %s is out of range %d-%d", f->name, tok, f->min,
				                f->max);
			v = v * 10 + (*s++ - '0');
		}
		if (v < f->min || v > f->max)
			return zerr_set(err, -EINVAL, "%s: %d is out of range %d-%d", f->name, v, f->min, f->max);
		*ret = v;
		*p = s;
		return 0;
	}
	for (int i = 0; f->names && f->names[i]; i++)
		if (strncasecmp(s, f->names[i], 3) == 0) {
			*ret = f->min + i;
			*p = s + 3;
			return 0;
		}
	return zerr_set(err, -EINVAL, "%s: \"%s\" is not a valid value", f->name, tok);
}

/* One comma-separated item: '*', 'n', 'a-b', each with an optional '/step'. */
static int parse_item(const struct field *f, const char *tok, uint64_t *bits, struct zerr *err)
{
	const char *p = tok;
	int lo, hi, step = 1, r;
	bool range = false;

	if (*p == '*') {
		lo = f->min;
		hi = f->max == 7 ? 6 : f->max; /* "*" of day-of-week: 0-6 */
		p++;
		range = true;
	} else {
		if ((r = parse_value(f, tok, &p, &lo, err)) < 0)
			return r;
		hi = lo;
		if (*p == '-') {
			p++;
			if ((r = parse_value(f, tok, &p, &hi, err)) < 0)
				return r;
			if (hi < lo)
				return zerr_set(err, -EINVAL, "%s: %s is a reversed range", f->name, tok);
			range = true;
		}
	}
	if (*p == '/') {
		p++;
		if (*p < '0' || *p > '9')
			return zerr_set(err, -EINVAL, "%s: \"%s\" has no step", f->name, tok);
		step = 0;
		while (*p >= '0' && *p <= '9' && step <= 1000)
			step = step * 10 + (*p++ - '0');
		if (step < 1 || step > f->max)
			return zerr_set(err, -EINVAL, "%s: step in %s is out of range 1-%d", f->name, tok, f->max);
		if (!range)
			hi = f->max; /* "n/step": from n to the end */
	}
	if (*p)
		return zerr_set(err, -EINVAL, "%s: \"%s\" is not a valid value", f->name, tok);
	for (int v = lo; v <= hi; v += step)
		*bits |= 1ULL << v;
	return 0;
}

static int parse_field(const struct field *f, char *tok, uint64_t *ret, struct zerr *err)
{
	uint64_t bits = 0;
	char *save = NULL;
	int r;
	/* An empty item ("1,,2", "1,") is an error, which strtok_r would hide. */
	size_t n = strlen(tok);
	if (n == 0 || tok[0] == ',' || tok[n - 1] == ',' || strstr(tok, ",,"))
		return zerr_set(err, -EINVAL, "%s: \"%s\" has an empty item", f->name, tok);
	for (char *item = strtok_r(tok, ",", &save); item; item = strtok_r(NULL, ",", &save))
		if ((r = parse_item(f, item, &bits, err)) < 0)
			return r;
	*ret = bits;
	return 0;
}

int cron_parse(const char *expr, struct cron *ret, struct zerr *err)
{
	char buf[CRON_EXPR_MAX + 1];
	char *tok[F_COUNT + 1];
	char *save = NULL;
	int n = 0, r;

	if (!expr || strlen(expr) > CRON_EXPR_MAX)
		return zerr_set(err, -EINVAL, "schedule: longer than %d characters", CRON_EXPR_MAX);
	while (*expr == ' ' || *expr == '\t')
		expr++;
	if (*expr == '@') {
		size_t len = strcspn(expr, " \t");
		const char *found = NULL;
		for (size_t i = 0; i < ELEMENTSOF(macros); i++)
			if (strlen(macros[i].name) == len && strncasecmp(expr, macros[i].name, len) == 0)
				found = macros[i].expr;
		if (!found || expr[len + strspn(expr + len, " \t")])
			return zerr_set(err, -EINVAL, "schedule: unknown macro \"%.*s\"", (int)len, expr);
		expr = found;
	}
	snprintf(buf, sizeof(buf), "%s", expr);
	for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
		if (n == F_COUNT + 1)
			break;
		tok[n++] = t;
	}
	if (n != 5 && n != 6)
		return zerr_set(err, -EINVAL, "schedule: expected 5 or 6 fields, got %s%d", n > 6 ? "more than " : "",
		                n > 6 ? 6 : n);

	struct cron c = {0};
	uint64_t bits[F_COUNT] = {[F_SEC] = 1}; /* five fields: second 0 */
	for (int i = 0; i < n; i++) {
		int fi = i + (n == 5);
		char *t = tok[i];
		bool star = t[0] == '*';
		if ((r = parse_field(&fields[fi], t, &bits[fi], err)) < 0)
			return r;
		if (fi == F_DOM)
			c.dom_star = star;
		if (fi == F_DOW)
			c.dow_star = star;
	}
	c.sec = bits[F_SEC];
	c.min = bits[F_MIN];
	c.hour = (uint32_t)bits[F_HOUR];
	c.dom = (uint32_t)bits[F_DOM];
	c.mon = (uint16_t)bits[F_MON];
	c.dow = (uint8_t)((bits[F_DOW] | bits[F_DOW] >> 7) & 0x7f);
	*ret = c;
	return 0;
}

static bool day_matches(const struct cron *c, int mday, int wday)
{
	bool dom = c->dom >> mday & 1, dow = c->dow >> wday & 1;
	if (!c->dom_star && !c->dow_star)
		return dom || dow;
	return dom && dow;
}

bool cron_matches(const struct cron *c, const struct tz_tm *tm)
{
	return (c->sec >> tm->sec & 1) && (c->min >> tm->min & 1) && (c->hour >> tm->hour & 1) &&
	       (c->mon >> tm->mon & 1) && day_matches(c, tm->mday, tm->wday);
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Whether the whole local minute of tm is skipped by a DST change. A gap is
 * one interval of local time and no zone changes offset twice within a
 * minute, so both ends in a gap mean every second is: a schedule firing
 * every second then costs two conversions per skipped minute, not sixty. */
static bool minute_in_gap(const struct tz *z, const struct tz_tm *tm)
{
	struct tz_tm start = *tm, end = *tm;
	int64_t utc[2];
	start.sec = 0;
	end.sec = 59;
	return tz_local_to_utc(z, &start, utc) == 0 && tz_local_to_utc(z, &end, utc) == 0;
}

/* Whether every second of the local minute of tm that occurs at all first
 * occurs before t0. The first occurrence grows with local time within a
 * minute (one offset change at most), so its last second tells: the scan
 * up from l0 less a fall (which a schedule in seconds takes second by
 * second through the day before a DST change back) costs two conversions
 * per minute, not sixty. */
static bool minute_before(const struct tz *z, const struct tz_tm *tm, int64_t t0)
{
	struct tz_tm end = *tm;
	int64_t utc[2];
	end.sec = 59;
	return tz_local_to_utc(z, &end, utc) > 0 && utc[0] < t0;
}

int cron_next(const struct cron *c, const struct tz *z, int64_t after_ms, int64_t *ret_ms)
{
	if (after_ms < CRON_MS_MIN || after_ms > CRON_MS_MAX)
		return -ERANGE;
	if (!z)
		z = tz_utc();
	int64_t t0 = floor_div(after_ms, 1000) + 1; /* the first whole second strictly after */
	int32_t off0 = tz_offset(z, t0);
	int64_t l0 = t0 + off0;
	/* A fire at or after t0 has a local time of at least l0 less the
	 * largest fall in the offset within the next day (after a day the
	 * elapsed time outweighs any fall): local times before that bound are
	 * skipped without conversion. */
	int32_t fall = 0;
	for (int h = 1; h <= 24; h++) {
		int32_t d = off0 - tz_offset(z, t0 + h * 3600);
		if (d > fall)
			fall = d;
	}
	int64_t lmin = l0 - fall;
	/* A local time of [lmin, l0) fires only if it first occurs at or
	 * after t0. If the offset was off0 through the last fall seconds
	 * (sampled as above), each of them occurred then, before t0: the
	 * scan starts at l0 (a schedule in seconds would otherwise convert
	 * fall seconds per call through the day before a DST change back). */
	bool steady = fall > 0;
	for (int64_t s = t0 - fall; steady && s < t0; s += 3600)
		steady = tz_offset(z, s) == off0;
	if (steady && tz_offset(z, t0 - 1) == off0)
		lmin = l0;
	int64_t day0 = floor_div(lmin, 86400);

	for (int64_t day = day0; day <= day0 + CRON_HORIZON_DAYS;) {
		struct tz_tm tm;
		tz_civil_from_days(day, &tm.year, &tm.mon, &tm.mday);
		if (!(c->mon >> tm.mon & 1)) {
			/* Skip to the first of the next month. */
			day = tm.mon == 12 ? tz_days_from_civil(tm.year + 1, 1, 1)
			                   : tz_days_from_civil(tm.year, tm.mon + 1, 1);
			continue;
		}
		tm.wday = (int)((day % 7 + 11) % 7);
		if (!day_matches(c, tm.mday, tm.wday)) {
			day++;
			continue;
		}
		int64_t base = day * 86400;
		for (tm.hour = 0; tm.hour < 24; tm.hour++) {
			if (!(c->hour >> tm.hour & 1) || base + tm.hour * 3600 + 3599 < lmin)
				continue;
			for (tm.min = 0; tm.min < 60; tm.min++) {
				int64_t lm = base + tm.hour * 3600 + tm.min * 60;
				if (!(c->min >> tm.min & 1) || lm + 59 < lmin)
					continue;
				for (tm.sec = 0; tm.sec < 60; tm.sec++) {
					int64_t utc[2];
					if (!(c->sec >> tm.sec & 1) || lm + tm.sec < lmin)
						continue;
					/* Gap: none; overlap: the first only. */
					int n = tz_local_to_utc(z, &tm, utc);
					if (n == 0 && minute_in_gap(z, &tm))
						break;
					if (n > 0 && utc[0] < t0 && minute_before(z, &tm, t0))
						break;
					if (n == 0 || utc[0] < t0)
						continue;
					*ret_ms = utc[0] * 1000;
					return 0;
				}
			}
		}
		day++;
	}
	return -ENOENT;
}
