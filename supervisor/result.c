/* result.c - see result.h */
#define _GNU_SOURCE
#include "result.h"
#include "validate.h"
#include "validate_event.h"

#include "utf8.h"

#include <stdio.h>
#include <string.h>

json_t *exec_error_object(const char *name, const char *message, const char *stack)
{
	return json_pack("{s:s, s:s, s:s}", "name", name, "message", message, "stack", stack ? stack : "");
}

/* A string from the sandbox, at most max bytes, cut on a character boundary
 * and marked with "..." within them (as the wrappers cut); jansson has
 * checked it is valid UTF-8. */
static const char *bounded(json_t *s, size_t max, char *buf, size_t size)
{
	const char *v = json_string_value(s);
	if (!v)
		return "";
	size_t n = strlen(v);
	if (n <= max)
		return v;
	snprintf(buf, size, "%.*s...", (int)utf8_cut_len(v, n, max - 3), v);
	return buf;
}

static int bad_result(struct exec_result *ret, const char *why)
{
	json_t *e = exec_error_object("BadResult", why, "");
	if (!e)
		return -ENOMEM;
	ret->outcome = EXEC_BAD_RESULT;
	ret->error = e;
	return 0;
}

/* A successful result's "emits": [{event_id, type, data}], at most
 * ZPROTO_MAX_EMITS, each id a UUID, each type a custom event's. NULL with
 * why set when it is not that. */
static json_t *parse_emits(json_t *v, char *why, size_t size)
{
	if (!json_is_array(v) || json_array_size(v) > ZPROTO_MAX_EMITS) {
		snprintf(why, size, "emits: want an array of at most %d events", ZPROTO_MAX_EMITS);
		return NULL;
	}
	size_t i;
	json_t *e;
	json_array_foreach (v, i, e) {
		const char *id = json_string_value(json_object_get(e, "event_id"));
		const char *type = json_string_value(json_object_get(e, "type"));
		const char *bad = NULL;
		if (!json_is_object(e) || json_object_size(e) != 2u + (json_object_get(e, "data") != NULL))
			bad = "want {event_id, type, data}";
		else if (!id || !val_is_uuid(id))
			bad = "event_id: want a UUID";
		else if (!type || strlen(type) != json_string_length(json_object_get(e, "type")) ||
		         !val_event_type(type, NULL))
			bad = "type: want 1 to 100 of a-z 0-9 . _ -";
		if (bad) {
			snprintf(why, size, "emits[%zu]: %s", i, bad);
			return NULL;
		}
	}
	return json_incref(v);
}

int exec_parse_result(const char *buf, size_t len, bool truncated, struct exec_result *ret)
{
	if (truncated)
		return bad_result(ret, "the result is larger than the platform accepts");
	if (len == 0)
		return bad_result(ret, "the function ended without a result");
	/* Duplicate keys refused: {"ok":true,"ok":false} has no one meaning. */
	json_t *o = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	json_t *ok = json_object_get(o, "ok");
	if (!json_is_object(o) || !json_is_boolean(ok)) {
		json_decref(o);
		return bad_result(ret, "the function's output is not a result object");
	}
	if (json_is_true(ok)) {
		json_t *ev = json_object_get(o, "emits"), *emits = NULL;
		char why[96];
		if (ev && !(emits = parse_emits(ev, why, sizeof(why)))) {
			json_decref(o);
			return bad_result(ret, why);
		}
		json_t *res = json_object_get(o, "result");
		res = res ? json_incref(res) : json_null();
		json_decref(o);
		if (!res) {
			json_decref(emits);
			return -ENOMEM;
		}
		ret->outcome = EXEC_SUCCESS;
		ret->result = res;
		ret->emits = emits;
		return 0;
	}
	json_t *e = json_object_get(o, "error");
	bool is_obj = json_is_object(e);
	char b1[EXEC_ERROR_NAME_MAX + 8], b2[EXEC_ERROR_MESSAGE_MAX + 8], b3[EXEC_ERROR_STACK_MAX + 8];
	json_t *err = exec_error_object(
	    is_obj ? bounded(json_object_get(e, "name"), EXEC_ERROR_NAME_MAX, b1, sizeof(b1)) : "Error",
	    is_obj ? bounded(json_object_get(e, "message"), EXEC_ERROR_MESSAGE_MAX, b2, sizeof(b2)) : "",
	    is_obj ? bounded(json_object_get(e, "stack"), EXEC_ERROR_STACK_MAX, b3, sizeof(b3)) : "");
	json_decref(o);
	if (!err)
		return -ENOMEM;
	ret->outcome = EXEC_FUNCTION_ERROR;
	ret->error = err;
	return 0;
}
