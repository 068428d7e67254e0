/* result.c - see result.h */
#define _GNU_SOURCE
#include "result.h"

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
		json_t *res = json_object_get(o, "result");
		res = res ? json_incref(res) : json_null();
		json_decref(o);
		if (!res)
			return -ENOMEM;
		ret->outcome = EXEC_SUCCESS;
		ret->result = res;
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
