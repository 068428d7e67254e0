/* fuzz_cron.c - cron_parse on any expression and, when it parses, cron_next
 * from a few instants in UTC and in zones with DST and half-hour offsets.
 *
 * Checked beyond "no crash": a refusal is -EINVAL with a message naming a
 * field or the schedule; a fire is a whole second strictly after the instant
 * and within the horizon, its local time matches every field (cron_matches),
 * and searching again from just before it finds it again; otherwise the
 * answer is -ENOENT.
 *
 * Input: 1 byte choosing the zone, 8 bytes mixed into the instants, then the
 * expression (cut at its first NUL, as a C string is). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"
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

static const char *const zone_names[] = {"America/New_York", "Australia/Adelaide", "Asia/Kolkata", "Europe/Berlin"};
static const struct tz *zones[ELEMENTSOF(zone_names) + 1];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	zones[0] = tz_utc();
	for (size_t i = 0; i < ELEMENTSOF(zone_names); i++) {
		struct tz *z = NULL;
		/* Without the system's zoneinfo, UTC stands in. */
		zones[i + 1] = tz_load(zone_names[i], &z, NULL) == 0 ? z : tz_utc();
	}
	return 0;
}

static void check_next(const struct cron *c, const struct tz *z, int64_t after)
{
	int64_t t = INT64_MIN;
	int r = cron_next(c, z, after, &t);
	if (r == -ENOENT) {
		CHECK(t == INT64_MIN);
		return;
	}
	CHECK(r == 0);
	CHECK(t > after);
	CHECK(t % 1000 == 0);
	CHECK(t - after <= (int64_t)(CRON_HORIZON_DAYS + 2) * 86400 * 1000);
	struct tz_tm tm;
	tz_to_local(z, t / 1000, &tm);
	CHECK(cron_matches(c, &tm));
	int64_t again;
	CHECK(cron_next(c, z, t - 1, &again) == 0);
	CHECK(again == t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 9)
		return 0;
	const struct tz *z = zones[data[0] % ELEMENTSOF(zones)];
	uint64_t mix = 0;
	for (int i = 1; i < 9; i++)
		mix = mix << 8 | data[i];
	char *expr = strndup((const char *)data + 9, size - 9);
	if (!expr)
		return 0;

	struct cron c;
	struct zerr err = {0};
	int r = cron_parse(expr, &c, &err);
	if (r < 0) {
		CHECK(r == -EINVAL);
		CHECK(err.msg[0] != '\0');
	} else {
		CHECK(r == 0);
		CHECK(c.hour < 1u << 24 && (c.dom & 1) == 0 && (c.mon & 1) == 0 && c.mon < 1u << 13 &&
		      c.dow < 1u << 7 && c.sec < 1ull << 60 && c.min < 1ull << 60);
		/* 2027-03-14 06:00Z (the US spring gap), 2027-11-07 05:00Z
		 * (the repeated hour), and one instant anywhere in 1970-2100. */
		static const int64_t fixed[] = {1805004000000, 1825563600000, -1};
		for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
			check_next(&c, z, fixed[i]);
		check_next(&c, z, (int64_t)(mix % 4102444800000ull));
	}
	free(expr);
	return 0;
}
