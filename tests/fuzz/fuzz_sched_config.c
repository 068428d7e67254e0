/* fuzz_sched_config.c - sched_config_parse (scheduler.c) on a cron
 * trigger's config as the scheduler reads it back from its row: JSON as
 * store.c parses it (any value, duplicate keys kept), written by whoever
 * has SQL access to the triggers table, not only by the API.
 *
 * Checked beyond "no crash" (leaks are LeakSanitizer's: the payload's
 * reference): a refusal is -EINVAL with a NUL-terminated message that
 * starts with "config: " or "config.<key>: " for schedule, timezone,
 * catch_up or overlap, and *ret is left untouched; an accepted config holds
 * the schedule as given (at most CRON_EXPR_MAX bytes) parsed as cron_parse
 * parses it, the zone as given or "UTC" when absent or null (a valid zone
 * name), catch_up and overlap as given or their defaults, and the payload
 * object itself (or null) with one more reference; the tick's event
 * (sched_event) is built from it. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cron.h"
#include "scheduler.h"
#include "tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

static bool starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A string member, or dflt when absent or null; NULL when something else. */
static const char *member(json_t *config, const char *key, const char *dflt)
{
	json_t *v = json_object_get(config, key);
	return !v || json_is_null(v) ? dflt : json_string_value(v);
}

static int index_of(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; s && i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return (int)i;
	return -1;
}

static bool untouched(const struct sched_config *c)
{
	const unsigned char *p = (const unsigned char *)c;
	for (size_t i = 0; i < sizeof(*c); i++)
		if (p[i] != 0xa5)
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 128 * 1024)
		return 0;
	/* As store.c reads a query's JSON (store_q_json). */
	json_t *config = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	if (!config)
		return 0;
	static const char *const catch_ups[] = {"skip", "latest", "all"};
	static const char *const overlaps[] = {"allow", "skip"};
	json_t *payload = json_object_get(config, "payload");
	/* true, false and null are jansson's constants: never counted. */
	bool counted = payload && payload->refcount != (size_t)-1;
	size_t refs = counted ? payload->refcount : 0;

	struct sched_config c;
	memset(&c, 0xa5, sizeof(c));
	struct zerr err = {0};
	int r = sched_config_parse(config, &c, &err);
	if (r < 0) {
		CHECK(r == -EINVAL);
		CHECK(untouched(&c));
		CHECK(memchr(err.msg, '\0', sizeof(err.msg)) != NULL);
		bool path = starts(err.msg, "config: ") || starts(err.msg, "config.schedule: ") ||
		            starts(err.msg, "config.timezone: ") || starts(err.msg, "config.catch_up: ") ||
		            starts(err.msg, "config.overlap: ");
		if (!path)
			fprintf(stderr, "message without a key: %s\n", err.msg);
		CHECK(path);
		CHECK(!counted || payload->refcount == refs);
		json_decref(config);
		return 0;
	}
	CHECK(r == 0);
	CHECK(json_is_object(config));

	/* The schedule, as given, parsed as cron_parse parses it. */
	const char *sched = member(config, "schedule", NULL);
	CHECK(sched && json_string_length(json_object_get(config, "schedule")) <= CRON_EXPR_MAX);
	CHECK(strcmp(c.schedule, sched) == 0);
	struct cron want;
	CHECK(cron_parse(sched, &want, NULL) == 0);
	CHECK(c.cron.sec == want.sec && c.cron.min == want.min && c.cron.hour == want.hour && c.cron.dom == want.dom &&
	      c.cron.mon == want.mon && c.cron.dow == want.dow && c.cron.dom_star == want.dom_star &&
	      c.cron.dow_star == want.dow_star);

	/* The zone: named, valid, "UTC" by default. */
	const char *zone = member(config, "timezone", "UTC");
	CHECK(zone && strcmp(c.timezone, zone) == 0 && tz_name_valid(c.timezone));

	/* The choices. */
	int cu = index_of(member(config, "catch_up", "skip"), catch_ups, ELEMENTSOF(catch_ups));
	int ov = index_of(member(config, "overlap", "allow"), overlaps, ELEMENTSOF(overlaps));
	CHECK(cu >= 0 && (int)c.catch_up == cu);
	CHECK(ov >= 0 && (int)c.overlap == ov);

	/* The payload itself, one more reference; null when absent. */
	if (payload) {
		CHECK(c.payload == payload && (!counted || payload->refcount == refs + 1));
	} else {
		CHECK(json_is_null(c.payload));
	}

	/* A tick's event carries it. */
	json_t *ev =
	    sched_event("0b9a4e38-1f7a-4c39-9d51-000000000001", c.schedule, 1805004000000, 1805004000042, c.payload);
	CHECK(ev && json_object_get(ev, "payload") == c.payload);
	CHECK(strcmp(json_string_value(json_object_get(ev, "cron")), c.schedule) == 0);
	json_decref(ev);

	sched_config_done(&c);
	CHECK(c.payload == NULL);
	CHECK(!counted || payload->refcount == refs);
	json_decref(config);
	return 0;
}
