/* tz.c - see tz.h */
#define _GNU_SOURCE
#include "tz.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* RFC 8536 bounds a UT offset to -25:59:59 .. +25:59:59 (in practice; the
 * format allows more, but no real zone needs it and it keeps our arithmetic
 * far from overflow). */
#define TZ_OFF_LIMIT 93599
#define TZ_LEAP_MAX  0 /* leap-second ("right/") zones are refused */
#define TZ_CHARS_MAX 1024

static const struct tz utc_zone = {.name = "UTC", .n_types = 1};

const struct tz *tz_utc(void)
{
	return &utc_zone;
}

void tz_free(struct tz *z)
{
	free(z);
}

bool tz_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > TZ_NAME_MAX || name[0] == '/' || name[n - 1] == '/')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (c == '/') {
			if (name[i + 1] == '/')
				return false;
			continue;
		}
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '+' || c == '-'))
			return false;
	}
	return true;
}

int64_t tz_days_from_civil(int64_t y, int m, int d)
{
	/* Howard Hinnant's days_from_civil: eras of 400 years. */
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

void tz_civil_from_days(int64_t days, int64_t *ret_y, int *ret_m, int *ret_d)
{
	days += 719468;
	int64_t era = (days >= 0 ? days : days - 146096) / 146097;
	int64_t doe = days - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int d = (int)(doy - (153 * mp + 2) / 5 + 1);
	int m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*ret_y = yoe + era * 400 + (m <= 2);
	*ret_m = m;
	*ret_d = d;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* --- POSIX TZ rule ------------------------------------------------------ */

static const char *rule_name(const char *p)
{
	/* Either <...> (may hold digits and signs) or at least three letters. */
	if (*p == '<') {
		const char *q = p + 1;
		while (*q && *q != '>' &&
		       ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '+' ||
		        *q == '-'))
			q++;
		return *q == '>' && q - p >= 4 ? q + 1 : NULL;
	}
	const char *q = p;
	while ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z'))
		q++;
	return q - p >= 3 ? q : NULL;
}

static const char *rule_num(const char *p, int min, int max, int *ret)
{
	int v = 0, n = 0;
	while (*p >= '0' && *p <= '9' && n < 4) {
		v = v * 10 + (*p++ - '0');
		n++;
	}
	if (n == 0 || v < min || v > max)
		return NULL;
	*ret = v;
	return p;
}

/* [+-]hh[:mm[:ss]], hours up to max_h (24 for offsets, 167 for the RFC 8536
 * extended transition times). */
static const char *rule_time(const char *p, int max_h, int32_t *ret)
{
	int sign = 1, h, m = 0, s = 0;
	if (*p == '+' || *p == '-')
		sign = *p++ == '-' ? -1 : 1;
	if (!(p = rule_num(p, 0, max_h, &h)))
		return NULL;
	if (*p == ':' && !(p = rule_num(p + 1, 0, 59, &m)))
		return NULL;
	if (*p == ':' && !(p = rule_num(p + 1, 0, 59, &s)))
		return NULL;
	*ret = sign * (h * 3600 + m * 60 + s);
	return p;
}

static const char *rule_date(const char *p, struct tz_date *ret)
{
	*ret = (struct tz_date){.time = 7200};
	if (*p == 'M') {
		ret->kind = 'M';
		if (!(p = rule_num(p + 1, 1, 12, &ret->m)) || *p != '.' || !(p = rule_num(p + 1, 1, 5, &ret->w)) ||
		    *p != '.' || !(p = rule_num(p + 1, 0, 6, &ret->d)))
			return NULL;
	} else if (*p == 'J') {
		ret->kind = 'J';
		if (!(p = rule_num(p + 1, 1, 365, &ret->n)))
			return NULL;
	} else {
		ret->kind = 'n';
		if (!(p = rule_num(p, 0, 365, &ret->n)))
			return NULL;
	}
	if (*p == '/' && !(p = rule_time(p + 1, 167, &ret->time)))
		return NULL;
	return p;
}

static int rule_parse(const char *s, struct tz_rule *ret)
{
	struct tz_rule r = {0};
	int32_t off;
	const char *p = rule_name(s);
	if (!p || !(p = rule_time(p, 24, &off)))
		return -EINVAL;
	r.std_off = -off; /* POSIX counts west of UTC */
	r.dst_off = r.std_off;
	if (*p) {
		if (!(p = rule_name(p)))
			return -EINVAL;
		r.has_dst = true;
		r.dst_off = r.std_off + 3600;
		if (*p && *p != ',') {
			if (!(p = rule_time(p, 24, &off)))
				return -EINVAL;
			r.dst_off = -off;
		}
		if (*p == ',') {
			if (!(p = rule_date(p + 1, &r.start)) || *p != ',' || !(p = rule_date(p + 1, &r.end)))
				return -EINVAL;
		} else {
			/* POSIX leaves the default to the implementation; the US
			 * rules are what glibc and tzcode assume. */
			r.start = (struct tz_date){.kind = 'M', .m = 3, .w = 2, .d = 0, .time = 7200};
			r.end = (struct tz_date){.kind = 'M', .m = 11, .w = 1, .d = 0, .time = 7200};
		}
	}
	if (*p)
		return -EINVAL;
	*ret = r;
	return 0;
}

/* Local seconds since the epoch, at the start of the day date names in y. */
static int64_t rule_day(int64_t y, const struct tz_date *dt)
{
	int64_t jan1 = tz_days_from_civil(y, 1, 1);
	switch (dt->kind) {
	case 'J': /* 1-365, February 29 is never counted */
		return jan1 + dt->n - 1 + (is_leap(y) && dt->n >= 60);
	case 'n':
		return jan1 + (dt->n > 365 - !is_leap(y) ? 365 - !is_leap(y) : dt->n);
	default: {
		int64_t first = tz_days_from_civil(y, dt->m, 1);
		int wd1 = (int)((first % 7 + 11) % 7); /* 1970-01-01 was a Thursday */
		int64_t day = first + (dt->d - wd1 + 7) % 7 + 7 * (dt->w - 1);
		while (day >= first + month_days(y, dt->m))
			day -= 7;
		return day;
	}
	}
}

static int32_t rule_offset(const struct tz_rule *r, int64_t t)
{
	if (!r->has_dst)
		return r->std_off;
	int64_t y;
	int m, d;
	tz_civil_from_days(floor_div(t + r->std_off, 86400), &y, &m, &d);
	/* The start is given in standard time, the end in daylight time. */
	int64_t start = rule_day(y, &r->start) * 86400 + r->start.time - r->std_off;
	int64_t end = rule_day(y, &r->end) * 86400 + r->end.time - r->dst_off;
	bool dst = start <= end ? (t >= start && t < end) : !(t >= end && t < start);
	return dst ? r->dst_off : r->std_off;
}

/* --- TZif --------------------------------------------------------------- */

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct tzif_counts {
	uint32_t isut, isstd, leap, time, type, chars;
};

static int tzif_header(const uint8_t *p, size_t len, struct tzif_counts *c, struct zerr *err)
{
	if (len < 44 || memcmp(p, "TZif", 4) != 0)
		return zerr_set(err, -EINVAL, "time zone: not a TZif file");
	*c = (struct tzif_counts){be32(p + 20), be32(p + 24), be32(p + 28), be32(p + 32), be32(p + 36), be32(p + 40)};
	if (c->type == 0 || c->type > TZ_TYPES_MAX || c->time > TZ_TRANS_MAX || c->chars > TZ_CHARS_MAX ||
	    c->leap > 1000 || (c->isstd != 0 && c->isstd != c->type) || (c->isut != 0 && c->isut != c->type))
		return zerr_set(err, -E2BIG, "time zone: header counts out of bounds");
	return 0;
}

int tz_parse(const uint8_t *buf, size_t len, const char *name, struct tz **ret, struct zerr *err)
{
	struct tzif_counts c;
	int r;

	if (len > TZ_FILE_MAX)
		return zerr_set(err, -EFBIG, "time zone: file over %d bytes", TZ_FILE_MAX);
	if ((r = tzif_header(buf, len, &c, err)) < 0)
		return r;
	if (buf[4] < '2')
		return zerr_set(err, -ENOTSUP, "time zone: TZif version 1 is not supported");
	/* Skip the 32-bit block: every count is bounded, so no overflow. */
	size_t v1 = 44 + (size_t)c.time * 5 + (size_t)c.type * 6 + c.chars + (size_t)c.leap * 8 + c.isstd + c.isut;
	if (v1 > len)
		return zerr_set(err, -EINVAL, "time zone: truncated");
	const uint8_t *p = buf + v1;
	size_t left = len - v1;
	if ((r = tzif_header(p, left, &c, err)) < 0)
		return r;
	if (c.leap > TZ_LEAP_MAX)
		return zerr_set(err, -ENOTSUP, "time zone: leap seconds are not supported");
	size_t v2 = 44 + (size_t)c.time * 9 + (size_t)c.type * 6 + c.chars + (size_t)c.leap * 12 + c.isstd + c.isut;
	if (v2 > left)
		return zerr_set(err, -EINVAL, "time zone: truncated");

	_cleanup_free_ struct tz *z = calloc(1, sizeof(*z));
	if (!z)
		return zerr_set(err, -ENOMEM, "time zone: out of memory");
	if (name)
		snprintf(z->name, sizeof(z->name), "%s", name);
	z->n_trans = c.time;
	z->n_types = c.type;
	const uint8_t *q = p + 44;
	for (uint32_t i = 0; i < c.time; i++) {
		z->trans[i] = be64(q + 8 * (size_t)i);
		if (i > 0 && z->trans[i] <= z->trans[i - 1])
			return zerr_set(err, -EINVAL, "time zone: transitions out of order");
	}
	q += 8 * (size_t)c.time;
	for (uint32_t i = 0; i < c.time; i++) {
		if (q[i] >= c.type)
			return zerr_set(err, -EINVAL, "time zone: transition to an unknown type");
		z->trans_type[i] = q[i];
	}
	q += c.time;
	for (uint32_t i = 0; i < c.type; i++, q += 6) {
		int32_t off = (int32_t)be32(q);
		if (off < -TZ_OFF_LIMIT || off > TZ_OFF_LIMIT || q[4] > 1)
			return zerr_set(err, -EINVAL, "time zone: offset %d out of range", off);
		z->type_off[i] = off;
	}

	/* Footer: "\n" rule "\n", the rule may be empty. */
	const uint8_t *f = p + v2;
	size_t flen = left - v2;
	if (flen < 2 || f[0] != '\n')
		return zerr_set(err, -EINVAL, "time zone: no footer");
	const uint8_t *nl = memchr(f + 1, '\n', flen - 1);
	if (!nl || (size_t)(nl - f - 1) > TZ_RULE_MAX)
		return zerr_set(err, -EINVAL, "time zone: bad footer");
	size_t rlen = (size_t)(nl - f - 1);
	if (rlen > 0) {
		char rule[TZ_RULE_MAX + 1];
		memcpy(rule, f + 1, rlen);
		rule[rlen] = '\0';
		if (memchr(rule, '\0', rlen) || rule_parse(rule, &z->rule) < 0)
			return zerr_set(err, -EINVAL, "time zone: bad rule \"%.*s\"", (int)rlen, rule);
		z->has_rule = true;
	}
	*ret = TAKE_PTR(z);
	return 0;
}

int tz_load(const char *name, struct tz **ret, struct zerr *err)
{
	char path[sizeof(TZ_DIR) + TZ_NAME_MAX + 1];
	struct stat st;

	if (!tz_name_valid(name))
		return zerr_set(err, -EINVAL, "timezone: not a valid zone name");
	snprintf(path, sizeof(path), "%s/%s", TZ_DIR, name);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR
		           ? zerr_set(err, -ENOENT, "timezone: unknown zone %s", name)
		           : zerr_set(err, -errno, "timezone: cannot open %s: %m", name);
	if (fstat(fd, &st) < 0)
		return zerr_set(err, -errno, "timezone: cannot stat %s: %m", name);
	if (!S_ISREG(st.st_mode))
		return zerr_set(err, -ENOENT, "timezone: unknown zone %s", name);
	if (st.st_size > TZ_FILE_MAX)
		return zerr_set(err, -EFBIG, "timezone: %s is over %d bytes", name, TZ_FILE_MAX);
	_cleanup_free_ uint8_t *buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return zerr_set(err, -ENOMEM, "timezone: out of memory");
	/* Read to the bound, not to st_size: the file may change under us. */
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return zerr_set(err, -errno, "timezone: cannot read %s: %m", name);
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > (size_t)st.st_size)
			return zerr_set(err, -EIO, "timezone: %s changed while read", name);
	}
	return tz_parse(buf, len, name, ret, err);
}

/* --- conversions -------------------------------------------------------- */

int32_t tz_offset(const struct tz *z, int64_t t)
{
	if (!z)
		return 0;
	if (z->n_trans == 0 || t < z->trans[0])
		return z->n_trans == 0 && z->has_rule ? rule_offset(&z->rule, t) : z->type_off[0];
	if (t >= z->trans[z->n_trans - 1] && z->has_rule)
		return rule_offset(&z->rule, t);
	/* The last transition at or before t. */
	uint32_t lo = 0, hi = z->n_trans;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (z->trans[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return z->type_off[z->trans_type[lo]];
}

void tz_to_local(const struct tz *z, int64_t t, struct tz_tm *ret)
{
	int64_t l = t + tz_offset(z, t);
	int64_t days = floor_div(l, 86400);
	int64_t secs = l - days * 86400;
	tz_civil_from_days(days, &ret->year, &ret->mon, &ret->mday);
	ret->hour = (int)(secs / 3600);
	ret->min = (int)(secs / 60 % 60);
	ret->sec = (int)(secs % 60);
	ret->wday = (int)((days % 7 + 11) % 7);
}

int tz_local_to_utc(const struct tz *z, const struct tz_tm *local, int64_t ret[2])
{
	int64_t l = tz_days_from_civil(local->year, local->mon, local->mday) * 86400 + local->hour * 3600 +
	            local->min * 60 + local->sec;
	/* Every instant l can denote is l - o for an offset o in effect near
	 * it; no zone changes offset twice within a day of itself, so the
	 * offsets a day either side and at l cover every candidate. */
	int32_t offs[3] = {tz_offset(z, l - 86400), tz_offset(z, l), tz_offset(z, l + 86400)};
	int n = 0;
	for (int i = 0; i < 3; i++) {
		int64_t t = l - offs[i];
		if (tz_offset(z, t) != offs[i])
			continue;
		bool seen = false;
		for (int k = 0; k < n; k++)
			seen |= ret[k] == t;
		if (seen)
			continue;
		if (n == 2) {
			/* Three distinct: keep the two earliest (cannot happen in
			 * a real zone). */
			if (t < ret[1])
				ret[1] = t;
		} else
			ret[n++] = t;
		if (n == 2 && ret[1] < ret[0]) {
			int64_t s = ret[0];
			ret[0] = ret[1];
			ret[1] = s;
		}
	}
	return n;
}
