/* fuzz_conditions.c - trigger conditions: cond_validate on what a client
 * sends when creating a trigger, cond_match on what an event carries.
 *
 * The input is split in half: the first half is the conditions JSON, the
 * second the event JSON. Validation and matching must never crash, on
 * validated and unvalidated conditions alike; a validated set must give the
 * same answer twice and on a deep copy of itself and of the event (the
 * answer depends on values only, not on the objects' identity or order of
 * insertion). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "conditions.h"
#include "errors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t half = size / 2;
	json_t *conds = json_loadb((const char *)data, half, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	json_t *event = json_loadb((const char *)data + half, size - half, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (!conds) {
		json_decref(event);
		return 0;
	}
	struct zerr err = {0};
	int r = cond_validate(conds, &err);
	CHECK(r == 0 || r == -ZE_BAD_REQUEST);
	if (r < 0)
		CHECK(err.msg[0] != '\0');
	bool m = cond_match(conds, event);
	if (r == 0) {
		CHECK(cond_match(conds, event) == m);
		json_t *c2 = json_deep_copy(conds), *e2 = event ? json_deep_copy(event) : NULL;
		if (c2 && (e2 || !event))
			CHECK(cond_match(c2, e2) == m);
		json_decref(c2);
		json_decref(e2);
		/* An empty set holds for every event. */
		if (json_array_size(conds) == 0)
			CHECK(m);
	}
	json_decref(conds);
	json_decref(event);
	return 0;
}
