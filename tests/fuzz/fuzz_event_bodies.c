/* fuzz_event_bodies.c - custom event bodies as a client sends them (POST
 * /projects/{pid}/events) through the parser the HTTP layer uses (any JSON
 * value, duplicate keys refused) and val_event_body (validate_event.c).
 *
 * Checked beyond "no crash":
 *  - a refusal is -ZE_BAD_REQUEST for a body that is not an object,
 *    -ZE_UNKNOWN_FIELD naming a top-level key that is neither type nor data,
 *    or -ZE_INVALID_EVENT with a message that starts with "type: "; the
 *    message is NUL-terminated and the outputs are untouched;
 *  - an accepted event's type is the body's own string, 1 to VE_TYPE_MAX
 *    bytes of a-z 0-9 . _ -, not starting with "custom.", and
 *    "custom.<type>" is a trigger's event_type; data is the body's own (JSON
 *    null when absent). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "errors.h"
#include "validate_event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

#define INPUT_MAX 4096

static void check_refusal(int r, const struct zerr *err, json_t *body)
{
	CHECK(memchr(err->msg, '\0', sizeof(err->msg)) != NULL && err->msg[0] != '\0');
	if (r == -ZE_BAD_REQUEST) {
		CHECK(!json_is_object(body));
		return;
	}
	if (r == -ZE_UNKNOWN_FIELD) {
		const char *k;
		json_t *v;
		bool named = false;
		json_object_foreach (body, k, v) {
			char want[96];
			snprintf(want, sizeof(want), "unknown field \"%.64s\"", k);
			named =
			    named || (strcmp(err->msg, want) == 0 && strcmp(k, "type") != 0 && strcmp(k, "data") != 0);
		}
		CHECK(named);
		return;
	}
	CHECK(r == -ZE_INVALID_EVENT && strncmp(err->msg, "type: ", 6) == 0);
}

static void check_accepted(json_t *body, const char *type, json_t *data)
{
	json_t *t = json_object_get(body, "type");
	CHECK(type == json_string_value(t));
	size_t n = strlen(type);
	CHECK(n >= 1 && n <= VE_TYPE_MAX && n == json_string_length(t));
	CHECK(strspn(type, "abcdefghijklmnopqrstuvwxyz0123456789._-") == n);
	CHECK(strncmp(type, VE_CUSTOM_PREFIX, strlen(VE_CUSTOM_PREFIX)) != 0);
	CHECK(val_event_type(type, NULL));
	char trigger[sizeof(VE_CUSTOM_PREFIX) + VE_TYPE_MAX];
	snprintf(trigger, sizeof(trigger), VE_CUSTOM_PREFIX "%s", type);
	CHECK(val_event_trigger_type(trigger));
	json_t *d = json_object_get(body, "data");
	CHECK(d ? data == d : json_is_null(data));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > INPUT_MAX)
		return 0;
	json_t *body = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
	if (!body)
		return 0;
	const char *type = (const char *)1;
	json_t *d = (json_t *)1;
	struct zerr err = {0};
	int r = val_event_body(body, &type, &d, &err);
	if (r < 0) {
		CHECK(type == (const char *)1 && d == (json_t *)1);
		check_refusal(r, &err, body);
	} else {
		CHECK(r == 0);
		check_accepted(body, type, d);
	}
	json_decref(body);
	return 0;
}
