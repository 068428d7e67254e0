/* jsontext.h - JSON text with numbers as exact as their values allow, one
 * definition for the API's answers (supervisor/http.c) and the client's
 * output (cli/). */
#pragma once

#include <jansson.h>
#include <stddef.h>

/* j dumped with flags (jansson's, without a precision), each real with 15
 * significant digits when they print it exactly (6.437, never
 * 6.4370000000000003, for what was measured in microseconds or stored in
 * decimal), else with the 17 a double may need (0.1 + 0.2 computed by a
 * function). jansson has one precision a document: the rare document that
 * holds both kinds is dumped at 15 from a copy whose long reals are strings
 * tagged with a random token, each then replaced by its 17 digits. A
 * malloc'd string, or NULL (out of memory, or what json_dumps refuses). */
char *json_dumps_exact(json_t *j, size_t flags);
