/* fuzz_sql_bodies.c - bodies of POST /projects/{pid}/sql as a client sends
 * them, through the parser the HTTP layer uses (any JSON value, duplicate
 * keys refused) and val_sql_body (validate_sql.c).
 *
 * Checked beyond "no crash":
 *  - a refusal is -ZE_BAD_REQUEST or -ZE_UNKNOWN_FIELD with a message, and
 *    the output is untouched;
 *  - an accepted body's sql is the body's own string, 1 to VS_SQL_MAX bytes
 *    without NUL; params were given exactly when has_params, at most
 *    VS_PARAMS_MAX of them, each NULL exactly for JSON null and a string
 *    parameter passed on byte for byte. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "errors.h"
#include "validate_sql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

#define INPUT_MAX 8192

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > INPUT_MAX)
		return 0;
	json_t *body = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
	if (!body)
		return 0;
	struct val_sql v = {.sql = (const char *)1};
	struct zerr err = {0};
	int r = val_sql_body(body, &v, &err);
	if (r < 0) {
		CHECK(r == -ZE_BAD_REQUEST || r == -ZE_UNKNOWN_FIELD || r == -ENOMEM);
		CHECK(memchr(err.msg, '\0', sizeof(err.msg)) != NULL && err.msg[0] != '\0');
		CHECK(v.sql == (const char *)1 && v.params == NULL);
		json_decref(body);
		return 0;
	}
	CHECK(r == 0);
	json_t *s = json_object_get(body, "sql");
	CHECK(v.sql == json_string_value(s));
	size_t n = strlen(v.sql);
	CHECK(n >= 1 && n <= VS_SQL_MAX && n == json_string_length(s));
	json_t *p = json_object_get(body, "params");
	CHECK(v.has_params == json_is_array(p));
	if (v.has_params) {
		CHECK(v.n_params == json_array_size(p) && v.n_params <= VS_PARAMS_MAX);
		for (size_t i = 0; i < v.n_params; i++) {
			json_t *e = json_array_get(p, i);
			CHECK((v.params[i] == NULL) == json_is_null(e));
			if (json_is_string(e))
				CHECK(strcmp(v.params[i], json_string_value(e)) == 0);
		}
	} else
		CHECK(v.n_params == 0 && v.params == NULL);
	val_sql_done(&v);
	json_decref(body);
	return 0;
}
