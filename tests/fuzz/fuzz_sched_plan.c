/* fuzz_sched_plan.c - sched_plan and sched_last_tick (scheduler.c): what
 * the scheduler fires of a cron trigger given its schedule, its zone, the
 * last tick dealt with (a row's max(scheduled_time) or updated_at, which
 * anyone with SQL access may set) and the clock, under each catch_up
 * policy; and the latest tick of a range.
 *
 * Input: 1 byte choosing the zone (one with DST, a 30-minute DST, a
 * half-hour offset, a skipped day, UTC, or NULL), 1 byte the policy, 1
 * byte how the times are drawn, 24 bytes (three big-endian 64-bit values)
 * mixed into them, then the expression (cut at its first NUL). Times are
 * drawn within years 1970-2100 with gaps from milliseconds to ten years, the
 * last tick ahead of the clock, near the ends of cron_next's range or of 64
 * bits, or any 64-bit values.
 *
 * Checked beyond "no crash":
 *  - sched_plan answers 0 or -ERANGE, and 0 whenever both times are well
 *    within cron_next's range (years 1-9999); what it fires is at most
 *    SCHED_PLAN_MAX ticks, ascending, each a whole second in (after, now]
 *    whose local time matches the schedule;
 *  - within range, the plan is the one header's contract gives, computed
 *    here from cron_next alone: every tick of (max(after, now - 10 s - 1
 *    ms), now] fires; of the missed ones within the window, "skip" fires
 *    none and counts them, "latest" fires the last (or, with none in the
 *    window, the latest before it, found by checking its neighbours), "all"
 *    fires the last SCHED_CATCH_UP_MAX and counts the rest (capped);
 *    missed_more says whether a tick comes before the window; missed_first
 *    and missed_last bound the counted ones (0 when none); next is the first
 *    tick after max(now, after), 0 when none;
 *  - sched_last_tick answers 0, -ENOENT or -ERANGE (only for a time out of
 *    range); a tick it finds is in (lo, hi] and the next one is past hi;
 *    -ENOENT only when cron_next finds nothing in (lo, hi]. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "scheduler.h"
#include "tz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

/* cron_next's range (cron.h: years 1-9999), as cron.c defines it. */
#define MS_MIN  (-62135596800000LL)
#define MS_MAX  (253402300799999LL)
#define DAY_MS  (86400 * 1000LL)
#define YEAR_MS (366 * DAY_MS)
/* Times this far within the range leave room for the window before now and
 * for cron's horizon after it: sched_plan must not fail. */
#define SAFE_MIN (MS_MIN + 2 * DAY_MS)
#define SAFE_MAX (MS_MAX - (CRON_HORIZON_DAYS + 2) * DAY_MS)
/* 1970 to 2100, where triggers live. */
#define REAL_SPAN 4102444800000LL

static const char *const zone_names[] = {"America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Europe/Berlin",
                                         "Pacific/Apia"};
/* One slot more for UTC and one for NULL (sched_plan's UTC). */
static const struct tz *zones[ELEMENTSOF(zone_names) + 2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	zones[0] = tz_utc();
	zones[1] = NULL;
	for (size_t i = 0; i < ELEMENTSOF(zone_names); i++) {
		struct tz *z = NULL;
		/* Without the system's zoneinfo, UTC stands in. */
		zones[i + 2] = tz_load(zone_names[i], &z, NULL) == 0 ? z : tz_utc();
	}
	return 0;
}

static bool safe(int64_t t)
{
	return t >= SAFE_MIN && t <= SAFE_MAX;
}

static bool in_range(int64_t t)
{
	return t >= MS_MIN && t <= MS_MAX;
}

/* t is a tick: a whole second the schedule matches, found again from just
 * before it. */
static void check_tick(const struct cron *c, const struct tz *z, int64_t t)
{
	CHECK(t % 1000 == 0);
	struct tz_tm tm;
	tz_to_local(z ? z : tz_utc(), t / 1000, &tm);
	CHECK(cron_matches(c, &tm));
	int64_t again;
	CHECK(cron_next(c, z, t - 1, &again) == 0 && again == t);
}

/* t is the latest tick of (lo, hi]. */
static void check_latest(const struct cron *c, const struct tz *z, int64_t lo, int64_t hi, int64_t t)
{
	CHECK(t > lo && t <= hi);
	check_tick(c, z, t);
	int64_t after;
	int r = cron_next(c, z, t, &after);
	CHECK(r == -ENOENT || (r == 0 && after > hi));
}

static void check_last_tick(const struct cron *c, const struct tz *z, int64_t lo, int64_t hi)
{
	int64_t t = INT64_MIN;
	int r = sched_last_tick(c, z, lo, hi, &t);
	if (r == -ERANGE) {
		CHECK(!in_range(lo) || !in_range(hi));
		return;
	}
	if (r == -ENOENT) {
		CHECK(t == INT64_MIN);
		if (hi > lo) {
			int64_t first;
			int r2 = cron_next(c, z, lo, &first);
			CHECK(r2 == -ENOENT || (r2 == 0 && first > hi));
		}
		return;
	}
	CHECK(r == 0);
	check_latest(c, z, lo, hi, t);
}

/* The ticks of (max(after, window - 1), missed_hi]: at most one a second. */
static int64_t ticks[SCHED_WINDOW_MS / 1000 + 2];

static void check_plan(const struct cron *c, const struct tz *z, int64_t after, int64_t now, enum sched_catch_up policy)
{
	static struct sched_plan p;
	int r = sched_plan(c, z, after, now, policy, &p);
	if (r < 0) {
		CHECK(r == -ERANGE);
		CHECK(!safe(after) || !safe(now));
		return;
	}
	CHECK(r == 0);
	CHECK(p.n_fire <= SCHED_PLAN_MAX);
	for (size_t i = 0; i < p.n_fire; i++) {
		CHECK(p.fire[i] > after && p.fire[i] <= now);
		CHECK(i == 0 || p.fire[i - 1] < p.fire[i]);
		check_tick(c, z, p.fire[i]);
	}
	CHECK(p.next == 0 || (p.next > now && p.next > after));
	if (!safe(after) || !safe(now))
		return;

	/* The plan, from cron_next alone. */
	int64_t missed_hi = now - SCHED_MISFIRE_MS - 1, window_lo = now - SCHED_WINDOW_MS;
	size_t n = 0, k = 0; /* ticks of the window; fires among them */
	bool more = false;
	int64_t t;
	if (after < missed_hi) {
		int64_t from = after < window_lo - 1 ? window_lo - 1 : after;
		while ((r = cron_next(c, z, from, &t)) == 0 && t <= missed_hi) {
			CHECK(n < ELEMENTSOF(ticks));
			ticks[n++] = t;
			from = t;
		}
		CHECK(r == 0 || r == -ENOENT);
		int64_t first;
		more = after < window_lo - 1 && cron_next(c, z, after, &first) == 0 && first < window_lo &&
		       first <= missed_hi;
		uint64_t missed = n;
		switch (policy) {
		case SCHED_CATCH_UP_SKIP:
			break;
		case SCHED_CATCH_UP_LATEST:
			if (n > 0) {
				k = 1;
				CHECK(p.n_fire >= 1 && p.fire[0] == ticks[n - 1]);
				missed = n - 1;
			} else if (more) {
				/* Nothing in the window: the latest tick before
				 * it fires, and more says whether one came
				 * earlier still. */
				k = 1;
				int64_t hi = window_lo - 1 < missed_hi ? window_lo - 1 : missed_hi;
				CHECK(p.n_fire >= 1);
				check_latest(c, z, after, hi, p.fire[0]);
				more = first < p.fire[0];
			}
			break;
		case SCHED_CATCH_UP_ALL:
			k = n < SCHED_CATCH_UP_MAX ? n : SCHED_CATCH_UP_MAX;
			CHECK(p.n_fire >= k);
			CHECK(k == 0 || memcmp(p.fire, ticks + (n - k), k * sizeof(ticks[0])) == 0);
			missed = n - k;
			CHECK(p.capped == (n > SCHED_CATCH_UP_MAX));
			break;
		}
		if (policy != SCHED_CATCH_UP_ALL)
			CHECK(!p.capped);
		CHECK(p.missed == missed);
		CHECK(p.missed_more == more);
		if (missed == 0) {
			CHECK(p.missed_first == 0 && p.missed_last == 0);
		} else {
			CHECK(p.missed_first == ticks[0] && p.missed_last == ticks[missed - 1]);
		}
	} else {
		CHECK(p.missed == 0 && !p.missed_more && !p.capped && p.missed_first == 0 && p.missed_last == 0);
	}
	/* On time: every tick of (max(after, missed_hi), now]. */
	int64_t from = after < missed_hi ? missed_hi : after;
	size_t i = k;
	while ((r = cron_next(c, z, from, &t)) == 0 && t <= now) {
		CHECK(i < p.n_fire && p.fire[i] == t);
		i++;
		from = t;
	}
	CHECK(r == 0 || r == -ENOENT);
	CHECK(i == p.n_fire);
	/* Next: the first tick after both. */
	r = cron_next(c, z, now > after ? now : after, &t);
	CHECK(r == 0 || r == -ENOENT);
	CHECK(p.next == (r == 0 ? t : 0));
}

/* A gap's bound, chosen by the value's low bits: 20 s (on time or just
 * late), 20 min (a few missed), 3 h (past SCHED_CATCH_UP_MAX for a
 * schedule in seconds) or 3 days (past the window). A window of a schedule
 * in seconds is 86,400 ticks: drawn a quarter of the time only. */
static uint64_t gap_scale(uint64_t v)
{
	static const uint64_t scales[] = {20 * 1000, 20 * 60 * 1000, 3 * 3600 * 1000, 3 * DAY_MS};
	return scales[v & 3];
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 27 || size > 27 + CRON_EXPR_MAX)
		return 0;
	const struct tz *z = zones[data[0] % ELEMENTSOF(zones)];
	enum sched_catch_up policy = (enum sched_catch_up)(data[1] % 3);
	uint8_t mode = data[2];
	uint64_t v0 = be64(data + 3), v1 = be64(data + 11), v2 = be64(data + 19);
	char *expr = strndup((const char *)data + 27, size - 27);
	if (!expr)
		return 0;
	struct cron c;
	if (cron_parse(expr, &c, NULL) < 0) {
		free(expr);
		return 0;
	}

	int64_t now = (int64_t)(v0 % REAL_SPAN), after, lo, hi;
	switch (mode % 6) {
	case 0: /* a gap of up to three days: on time, late, missed */
		after = now - (int64_t)(v1 % gap_scale(v1));
		break;
	case 1: /* up to ten years: before the window */
		after = now - (int64_t)(v1 % (10 * YEAR_MS));
		break;
	case 2: /* another node's clock ahead of this one's */
		after = now + (int64_t)(v1 % (2 * DAY_MS));
		break;
	case 3: /* about the ends of cron_next's range, or of 64 bits */
		if (v0 & 2) {
			/* after: anything, or between the end and now */
			int64_t in = (int64_t)(v1 % gap_scale(v1));
			now = v0 & 1 ? INT64_MAX - in : INT64_MIN + in;
			if (v2 & 1)
				after = (int64_t)v2;
			else
				after = v0 & 1 ? now + (int64_t)(v2 % (uint64_t)(in + 1))
				               : INT64_MIN + (int64_t)(v2 % (uint64_t)(in + 1));
		} else {
			now = (v0 & 1 ? MS_MAX : MS_MIN) + (int64_t)(v1 % (20 * DAY_MS)) - 10 * DAY_MS;
			after = now - (int64_t)(v2 % gap_scale(v2));
		}
		break;
	case 4: /* the same instant, or a few ms apart */
		after = now - (int64_t)(v1 % 2048) + 1024;
		break;
	default: /* anything */
		now = (int64_t)v0;
		after = (int64_t)v1;
		break;
	}
	/* Whole seconds, as fired ticks are (updated_at is not). */
	if (mode & 0x80) {
		now -= now % 1000;
		after -= after % 1000;
	}
	check_plan(&c, z, after, now, policy);

	if (mode % 6 == 5 || (mode % 6 == 3 && v0 & 2)) {
		lo = (int64_t)v1;
		hi = (int64_t)v2;
	} else {
		lo = after;
		hi = lo + (int64_t)(v2 % (mode & 0x40 ? 10 * YEAR_MS : 3 * DAY_MS)) - 1000;
	}
	check_last_tick(&c, z, lo, hi);
	free(expr);
	return 0;
}
