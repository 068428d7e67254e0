/* http_parse.h - the HTTP layer's pure parsing of client input, apart from
 * sockets and libmicrohttpd so that it can be unit-tested and fuzzed: escape
 * decoding of path segments and query values, and the bounds on a request
 * target. Internal to the layer (http.c); not part of http.h's contract. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "http.h" /* HTTP_TARGET_MAX, HTTP_QUERY_ARGS_MAX */

/* Decode the %XX escapes of in[0..n) into out (out_size bytes, always
 * NUL-terminated on success), *ret_len the decoded length. -EINVAL for a
 * malformed escape, -E2BIG when the result does not fit. '+' is left alone. */
int http_pct_decode(const char *in, size_t n, char *out, size_t out_size, size_t *ret_len);
/* Valid UTF-8 without control characters (NUL included): what a decoded
 * path segment or query value may hold. */
bool http_text_clean(const char *s, size_t n);
/* Decode one raw query value (after libmicrohttpd turned '+' into ' ') into
 * out, as http_query() promises: -EINVAL for a bad escape, NUL, control
 * character or invalid UTF-8, -E2BIG when it does not fit out_size - 1. */
int http_query_decode(const char *raw, size_t n, char *out, size_t out_size, size_t *ret_len);

enum http_target_verdict {
	HTTP_TARGET_OK = 0,
	HTTP_TARGET_TOO_LONG,      /* over HTTP_TARGET_MAX */
	HTTP_TARGET_TOO_MANY_ARGS, /* over HTTP_QUERY_ARGS_MAX parameters */
	HTTP_TARGET_BAD_CHARACTER, /* NUL, space, another control character or DEL; bytes over 0x7f pass (the router
	                              checks UTF-8) */
};
/* Check a raw request target of len bytes (it may hold NULs, which are bad
 * characters). Parameters are counted as libmicrohttpd splits them: one per
 * '&'-separated piece, empty pieces included. */
enum http_target_verdict http_target_check(const char *target, size_t len);
