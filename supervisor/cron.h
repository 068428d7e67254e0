/* cron.h - cron schedules: parsing an expression and finding its next fire
 * time in a time zone. Pure: no clock, no I/O (the zone is loaded by tz.h).
 *
 * Expression: five fields "minute hour day-of-month month day-of-week", or
 * six with seconds first. Each field is a comma list of '*', 'n', 'a-b',
 * each optionally '/step' ('n/step' means n to the field's end); months take
 * JAN-DEC and days SUN-SAT (any case); Sunday is 0 or 7. Macros: @hourly,
 * @daily = @midnight, @weekly, @monthly, @yearly = @annually.
 *
 * As in Vixie cron, when day-of-month and day-of-week are both restricted
 * (neither field starts with '*') a day matches if either does; otherwise
 * both must. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "tz.h"

#define CRON_EXPR_MAX 256
/* The instants cron_next searches from (UTC epoch ms):
 * 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z. */
#define CRON_MS_MIN (-62135596800000LL)
#define CRON_MS_MAX (253402300799999LL)
/* How far cron_next looks before deciding a schedule never fires. */
#define CRON_HORIZON_DAYS (5 * 366)

struct cron {
	uint64_t sec, min; /* bit n set: second/minute n matches */
	uint32_t hour;     /* bits 0-23 */
	uint32_t dom;      /* bits 1-31 */
	uint16_t mon;      /* bits 1-12 */
	uint8_t dow;       /* bits 0-6, Sunday = 0 */
	bool dom_star, dow_star;
};

/* Parse expr into *ret. On failure returns -EINVAL with a message naming the
 * field and the token ("hour: 24 is out of range 0-23"); *ret is untouched. */
int cron_parse(const char *expr, struct cron *ret, struct zerr *err);

/* Whether local civil time tm matches c; tm must be a valid time with its
 * wday set (as tz_to_local fills it). */
bool cron_matches(const struct cron *c, const struct tz_tm *tm);

/* The first fire of c strictly after after_ms (UTC epoch milliseconds), in
 * zone z (NULL: UTC), into *ret_ms (a whole second). A local time skipped by
 * a DST change does not fire that day; a repeated one fires at its first
 * occurrence only. Returns -ENOENT when nothing fires within
 * CRON_HORIZON_DAYS, -ERANGE when after_ms is outside years 1-9999
 * (CRON_MS_MIN..CRON_MS_MAX). */
int cron_next(const struct cron *c, const struct tz *z, int64_t after_ms, int64_t *ret_ms);
