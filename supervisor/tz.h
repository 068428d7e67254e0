/* tz.h - time zones read from TZif files (RFC 8536), without localtime() or
 * setenv("TZ"): zmeshd is threaded and the C library's zone is one global.
 * Loading is the only I/O; every conversion is a pure function of the loaded
 * struct. Times are UTC epoch seconds; offsets are seconds east of UTC. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define TZ_DIR       "/usr/share/zoneinfo"
#define TZ_NAME_MAX  64
#define TZ_FILE_MAX  (256 * 1024)
#define TZ_TRANS_MAX 2048
#define TZ_TYPES_MAX 256
#define TZ_RULE_MAX  128

/* A day of the year in a POSIX TZ rule: 'M' (month m, week w 1-5 where 5 is
 * the last, weekday d 0-6), 'J' (n 1-365, February 29 never counted) or 'n'
 * (n 0-365, counting February 29); time is seconds after local midnight and
 * may be negative or past 24 h. */
struct tz_date {
	char kind;
	int m, w, d, n;
	int32_t time;
};

/* The footer rule "STDoffset[DST[offset][,start[/time],end[/time]]]", which
 * governs every time after the last transition. */
struct tz_rule {
	int32_t std_off, dst_off;
	bool has_dst;
	struct tz_date start, end;
};

struct tz {
	char name[TZ_NAME_MAX + 1];
	uint32_t n_trans, n_types;
	int64_t trans[TZ_TRANS_MAX];
	uint8_t trans_type[TZ_TRANS_MAX];
	int32_t type_off[TZ_TYPES_MAX];
	bool has_rule;
	struct tz_rule rule;
};

/* A local civil time: mon 1-12, mday 1-31. */
struct tz_tm {
	int64_t year;
	int mon, mday, hour, min, sec;
	int wday; /* 0 = Sunday; filled by tz_to_local, ignored by tz_local_to_utc */
};

/* A zone name is 1 to TZ_NAME_MAX characters of [A-Za-z0-9_+-] segments
 * separated by single '/', none empty, none leading: so it cannot leave
 * TZ_DIR. */
bool tz_name_valid(const char *name);

/* Parse TZif bytes (version 2 or later; the 64-bit section is used). buf is
 * outside input: every count is bounded and checked against len. On success
 * *ret is a new zone named name (may be NULL) for tz_free(). Fails with
 * -EINVAL (malformed), -E2BIG (a count over our bounds), -ENOTSUP (version 1
 * only, or leap seconds), -ENOMEM. */
int tz_parse(const uint8_t *buf, size_t len, const char *name, struct tz **ret, struct zerr *err);

/* Load TZ_DIR/name. -EINVAL for an invalid name, -ENOENT for an unknown
 * zone, -EFBIG over TZ_FILE_MAX, else as tz_parse. */
int tz_load(const char *name, struct tz **ret, struct zerr *err);

/* Destructor, accepts NULL. */
void tz_free(struct tz *z);
static inline void tz_freep(struct tz **z)
{
	tz_free(*z);
}
#define _cleanup_tz_ _cleanup_(tz_freep)

/* The built-in UTC zone, needing no file: the zone of a schedule that names
 * none. */
const struct tz *tz_utc(void);

/* The offset in effect at UTC instant t (z NULL means UTC). */
int32_t tz_offset(const struct tz *z, int64_t t);

/* UTC instant t as local civil time. */
void tz_to_local(const struct tz *z, int64_t t, struct tz_tm *ret);

/* The UTC instants local denotes, ascending, into ret: returns 0 when local
 * falls in a gap (clocks skipped it), 1 normally, 2 when it is repeated. */
int tz_local_to_utc(const struct tz *z, const struct tz_tm *local, int64_t ret[2]);

/* Proleptic Gregorian calendar: days since 1970-01-01 and back. */
int64_t tz_days_from_civil(int64_t y, int m, int d);
void tz_civil_from_days(int64_t days, int64_t *ret_y, int *ret_m, int *ret_d);
