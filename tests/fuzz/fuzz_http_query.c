/* fuzz_http_query.c - libFuzzer harness for the layer's own parsing of raw
 * request input (supervisor/http_parse.c): the request-target check and the
 * decoding of query values. Input: a request target as sent. Checks that the
 * verdict agrees with a plain recount, and that every '&'-separated value
 * either decodes to clean, bounded text or is refused with -EINVAL/-E2BIG. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "http_parse.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *t = (const char *)data;
	enum http_target_verdict v = http_target_check(t, size);

	bool bad = false;
	for (size_t i = 0; i < size; i++)
		if (data[i] <= 0x20 || data[i] == 0x7f)
			bad = true;
	const char *q = memchr(t, '?', size);
	size_t args = 0;
	if (q) {
		args = 1;
		for (const char *p = q + 1; p < t + size; p++)
			args += *p == '&';
	}
	enum http_target_verdict want = size > HTTP_TARGET_MAX       ? HTTP_TARGET_TOO_LONG
	                                : bad                        ? HTTP_TARGET_BAD_CHARACTER
	                                : args > HTTP_QUERY_ARGS_MAX ? HTTP_TARGET_TOO_MANY_ARGS
	                                                             : HTTP_TARGET_OK;
	if (v != want)
		abort();
	if (v != HTTP_TARGET_OK || !q)
		return 0;

	/* each value as http_query would decode it */
	char out[HTTP_QUERY_MAX + 1];
	const char *p = q + 1, *end = t + size;
	while (p <= end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *e = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(e - p));
		const char *val = eq ? eq + 1 : e;
		size_t n = (size_t)(e - val), dl = 0;
		int r = http_query_decode(val, n, out, sizeof(out), &dl);
		if (r == 0) {
			if (dl > HTTP_QUERY_MAX || out[dl] != '\0' || !utf8_valid(out, dl) ||
			    !http_text_clean(out, dl) || memchr(out, '\0', dl))
				abort();
		} else if (r != -EINVAL && r != -E2BIG) {
			abort();
		}
		if (!amp)
			break;
		p = amp + 1;
	}
	return 0;
}
