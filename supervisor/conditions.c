/* conditions.c - see conditions.h */
#define _GNU_SOURCE
#include "conditions.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

enum cond_op { OP_EQ, OP_NEQ, OP_GT, OP_GTE, OP_LT, OP_LTE, OP_CONTAINS, OP_IN, OP_INVALID };

static const char *const op_names[] = {"eq", "neq", "gt", "gte", "lt", "lte", "contains", "in"};
#define OP_LIST "eq, neq, gt, gte, lt, lte, contains, in"

static enum cond_op op_parse(const char *s)
{
	for (size_t i = 0; i < ELEMENTSOF(op_names); i++)
		if (strcmp(s, op_names[i]) == 0)
			return (enum cond_op)i;
	return OP_INVALID;
}

static bool seg_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Whether path is a valid field; on false, *why says what is wrong. */
static bool path_valid(const char *path, const char **why)
{
	size_t segs = 0, len = 0;
	for (const char *c = path;; c++) {
		if (*c == '.' || *c == '\0') {
			if (len == 0) {
				*why = "an empty segment";
				return false;
			}
			if (++segs > COND_SEGMENTS_MAX) {
				*why = "more than 8 segments";
				return false;
			}
			len = 0;
			if (*c == '\0')
				return true;
		} else if (!seg_char(*c)) {
			*why = "a character outside A-Z a-z 0-9 _ -";
			return false;
		} else if (++len > COND_SEGMENT_MAX) {
			*why = "a segment longer than 64 bytes";
			return false;
		}
	}
}

int cond_validate(json_t *conds, struct zerr *err)
{
	if (!json_is_array(conds))
		return ze(err, ZE_BAD_REQUEST, "conditions: want an array");
	if (json_array_size(conds) > COND_MAX)
		return ze(err, ZE_BAD_REQUEST, "conditions: %zu conditions, at most %d", json_array_size(conds),
		          COND_MAX);
	size_t i;
	json_t *c;
	json_array_foreach (conds, i, c) {
		if (!json_is_object(c))
			return ze(err, ZE_BAD_REQUEST, "conditions[%zu]: want an object {field, op, value}", i);
		const char *k;
		json_t *v;
		json_object_foreach (c, k, v)
			if (strcmp(k, "field") != 0 && strcmp(k, "op") != 0 && strcmp(k, "value") != 0)
				return ze(err, ZE_BAD_REQUEST, "conditions[%zu]: unknown key \"%.64s\"", i, k);
		json_t *field = json_object_get(c, "field"), *op = json_object_get(c, "op"),
		       *value = json_object_get(c, "value");
		if (!field)
			return ze(err, ZE_BAD_REQUEST, "conditions[%zu].field: missing", i);
		if (!op)
			return ze(err, ZE_BAD_REQUEST, "conditions[%zu].op: missing", i);
		if (!value)
			return ze(err, ZE_BAD_REQUEST, "conditions[%zu].value: missing", i);
		if (!json_is_string(field))
			return ze(err, ZE_BAD_REQUEST, "conditions[%zu].field: want a string", i);
		const char *why = NULL;
		/* A NUL inside the string would hide the rest from the check. */
		if (strlen(json_string_value(field)) != json_string_length(field))
			return ze(err, ZE_BAD_REQUEST, "conditions[%zu].field: contains a NUL byte", i);
		if (!path_valid(json_string_value(field), &why))
			return ze(err, ZE_BAD_REQUEST,
			          "conditions[%zu].field: \"%.80s\" has %s (want dotted segments of 1 to 64 of "
			          "A-Z a-z 0-9 _ -, at most 8)",
			          i, json_string_value(field), why);
		if (!json_is_string(op))
			return ze(err, ZE_BAD_REQUEST, "conditions[%zu].op: want a string, one of " OP_LIST, i);
		enum cond_op o = op_parse(json_string_value(op));
		if (o == OP_INVALID)
			return ze(err, ZE_BAD_REQUEST, "conditions[%zu].op: \"%.32s\" is not one of " OP_LIST, i,
			          json_string_value(op));
		if (o == OP_IN && !json_is_array(value))
			return ze(err, ZE_BAD_REQUEST, "conditions[%zu].value: op in wants an array", i);
		if (o >= OP_GT && o <= OP_LTE && !json_is_number(value) && !json_is_string(value))
			return ze(err, ZE_BAD_REQUEST, "conditions[%zu].value: op %s wants a number or a string", i,
			          op_names[o]);
	}
	return 0;
}

/* The value at path inside event, or NULL when missing. */
static json_t *path_get(json_t *event, const char *path)
{
	json_t *cur = event;
	const char *p = path;
	char seg[COND_SEGMENT_MAX + 1];
	while (cur) {
		size_t n = strcspn(p, ".");
		/* Paths are checked at create time; a longer one never matches. */
		if (n == 0 || n > COND_SEGMENT_MAX)
			return NULL;
		memcpy(seg, p, n);
		seg[n] = '\0';
		if (json_is_object(cur))
			cur = json_object_get(cur, seg);
		else if (json_is_array(cur)) {
			if (strspn(seg, "0123456789") != n)
				return NULL;
			/* Longer than any array can be: missing, and no overflow. */
			if (n > 9)
				return NULL;
			cur = json_array_get(cur, strtoul(seg, NULL, 10));
		} else
			return NULL;
		if (p[n] == '\0')
			return cur;
		p += n + 1;
	}
	return NULL;
}

/* Three-way numeric comparison. Two integers compare exactly; otherwise as
 * doubles (jansson has no NaN or infinity). */
static int num_cmp(json_t *a, json_t *b)
{
	if (json_is_integer(a) && json_is_integer(b)) {
		json_int_t x = json_integer_value(a), y = json_integer_value(b);
		return (x > y) - (x < y);
	}
	double x = json_number_value(a), y = json_number_value(b);
	return (x > y) - (x < y);
}

/* json_equal, except that numbers are equal when numerically equal. */
static bool value_eq(json_t *a, json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
		return num_cmp(a, b) == 0;
	if (json_is_array(a) && json_is_array(b)) {
		if (json_array_size(a) != json_array_size(b))
			return false;
		for (size_t i = 0; i < json_array_size(a); i++)
			if (!value_eq(json_array_get(a, i), json_array_get(b, i)))
				return false;
		return true;
	}
	if (json_is_object(a) && json_is_object(b)) {
		if (json_object_size(a) != json_object_size(b))
			return false;
		const char *k;
		json_t *v;
		json_object_foreach (a, k, v) {
			json_t *w = json_object_get(b, k);
			if (!w || !value_eq(v, w))
				return false;
		}
		return true;
	}
	return json_equal(a, b);
}

static int str_cmp(json_t *a, json_t *b)
{
	size_t la = json_string_length(a), lb = json_string_length(b);
	int r = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
	if (r == 0)
		return (la > lb) - (la < lb);
	return r;
}

static bool member(json_t *array, json_t *v)
{
	size_t i;
	json_t *e;
	json_array_foreach (array, i, e)
		if (value_eq(e, v))
			return true;
	return false;
}

static bool one_match(enum cond_op o, json_t *got, json_t *want)
{
	int c;
	switch (o) {
	case OP_EQ:
		return value_eq(got, want);
	case OP_NEQ:
		return !value_eq(got, want);
	case OP_CONTAINS:
		if (json_is_string(got) && json_is_string(want))
			return memmem(json_string_value(got), json_string_length(got), json_string_value(want),
			              json_string_length(want)) != NULL;
		if (json_is_array(got))
			return member(got, want);
		return false;
	case OP_IN:
		return json_is_array(want) && member(want, got);
	case OP_GT:
	case OP_GTE:
	case OP_LT:
	case OP_LTE:
		if (json_is_number(got) && json_is_number(want))
			c = num_cmp(got, want);
		else if (json_is_string(got) && json_is_string(want))
			c = str_cmp(got, want);
		else
			return false;
		return o == OP_GT ? c > 0 : o == OP_GTE ? c >= 0 : o == OP_LT ? c < 0 : c <= 0;
	case OP_INVALID:
		break;
	}
	return false;
}

bool cond_match(json_t *conds, json_t *event)
{
	if (!json_is_array(conds))
		return false;
	size_t i;
	json_t *c;
	json_array_foreach (conds, i, c) {
		json_t *field = json_object_get(c, "field"), *op = json_object_get(c, "op"),
		       *value = json_object_get(c, "value");
		if (!json_is_string(field) || !json_is_string(op) || !value)
			return false;
		enum cond_op o = op_parse(json_string_value(op));
		json_t *got = path_get(event, json_string_value(field));
		if (o == OP_INVALID || !got || !one_match(o, got, value))
			return false;
	}
	return true;
}
