/* validate_sql.c - see validate_sql.h */
#define _GNU_SOURCE
#include "validate_sql.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "validate.h"

void val_sql_done(struct val_sql *v)
{
	if (!v || !v->params)
		return;
	for (size_t i = 0; i < v->n_params; i++)
		free(v->params[i]);
	free(v->params);
	v->params = NULL;
	v->n_params = 0;
}

/* The text PostgreSQL receives for one JSON scalar; *ret NULL for null. */
static int param_text(json_t *v, size_t i, char **ret, struct zerr *err)
{
	char *s = NULL;
	switch (json_typeof(v)) {
	case JSON_NULL:
		*ret = NULL;
		return 0;
	case JSON_STRING:
		/* A NUL would end the text early: the server would see less than
		 * was sent. */
		if (strlen(json_string_value(v)) != json_string_length(v))
			return ze(err, ZE_BAD_REQUEST, "params[%zu]: contains a NUL byte", i);
		s = strdup(json_string_value(v));
		break;
	case JSON_INTEGER:
		if (asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0)
			s = NULL;
		break;
	case JSON_REAL:
		/* 17 significant digits give back the same double. */
		if (asprintf(&s, "%.17g", json_real_value(v)) < 0)
			s = NULL;
		break;
	case JSON_TRUE:
		s = strdup("true");
		break;
	case JSON_FALSE:
		s = strdup("false");
		break;
	default:
		return ze(err, ZE_BAD_REQUEST,
		          "params[%zu]: want a string, number, boolean or null (pass JSON as a string: $%zu::jsonb)", i,
		          i + 1);
	}
	if (!s)
		return zerr_set(err, -ENOMEM, "out of memory");
	*ret = s;
	return 0;
}

int val_sql_body(json_t *body, struct val_sql *ret, struct zerr *err)
{
	static const char *const known[] = {"sql", "params", NULL};
	int r = val_object(body, known, err);
	if (r < 0)
		return r;
	json_t *s = json_object_get(body, "sql");
	if (!s)
		return ze(err, ZE_BAD_REQUEST, "sql: required (the statements to run)");
	if (!json_is_string(s))
		return ze(err, ZE_BAD_REQUEST, "sql: want a string");
	size_t len = json_string_length(s);
	if (strlen(json_string_value(s)) != len)
		return ze(err, ZE_BAD_REQUEST, "sql: contains a NUL byte");
	if (len == 0)
		return ze(err, ZE_BAD_REQUEST, "sql: is empty");
	if (len > VS_SQL_MAX)
		return ze(err, ZE_BAD_REQUEST, "sql: %zu bytes, more than the %u allowed", len, VS_SQL_MAX);
	json_t *p = json_object_get(body, "params");
	struct val_sql out = {.sql = json_string_value(s)};
	if (p && !json_is_null(p)) {
		if (!json_is_array(p))
			return ze(err, ZE_BAD_REQUEST, "params: want an array of values for $1..$n");
		size_t n = json_array_size(p);
		if (n > VS_PARAMS_MAX)
			return ze(err, ZE_BAD_REQUEST, "params: %zu values, more than the %d allowed", n,
			          VS_PARAMS_MAX);
		out.has_params = true;
		out.params = calloc(n ? n : 1, sizeof(*out.params));
		if (!out.params)
			return zerr_set(err, -ENOMEM, "out of memory");
		for (size_t i = 0; i < n; i++) {
			r = param_text(json_array_get(p, i), i, &out.params[i], err);
			if (r < 0) {
				out.n_params = i;
				val_sql_done(&out);
				return r;
			}
		}
		out.n_params = n;
	}
	*ret = out;
	return 0;
}
