/* fuzz_tz.c - tz_parse on arbitrary bytes: a TZif file is outside input.
 *
 * Checked beyond "no crash": a refusal is one of the documented codes with a
 * message; an accepted zone gives offsets within RFC 8536's bounds at every
 * instant tried, and every UTC instant tz_local_to_utc returns for a local
 * time maps back to that local time (at most two, ascending).
 *
 * Input: the file's bytes. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tz.h"

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
	struct tz *z = NULL;
	struct zerr err = {0};
	int r = tz_parse(data, size, "fuzz", &z, &err);
	if (r < 0) {
		CHECK(r == -EINVAL || r == -E2BIG || r == -ENOTSUP || r == -EFBIG || r == -ENOMEM);
		CHECK(err.msg[0] != '\0');
		CHECK(z == NULL);
		return 0;
	}
	CHECK(z != NULL);
	/* 1900, 1970, 2027 around the US changes, 2100, 9999. */
	static const int64_t instants[] = {-2208988800, 0, 1805007600, 1825567200, 4102444800, 253402300799};
	for (size_t i = 0; i < ELEMENTSOF(instants); i++) {
		for (int64_t d = -2 * 86400; d <= 2 * 86400; d += 1800) {
			int64_t t = instants[i] + d;
			int32_t off = tz_offset(z, t);
			CHECK(off >= -93599 && off <= 93599);
			struct tz_tm tm;
			tz_to_local(z, t, &tm);
			int64_t back[2];
			int n = tz_local_to_utc(z, &tm, back);
			CHECK(n >= 0 && n <= 2);
			for (int k = 0; k < n; k++) {
				struct tz_tm again;
				tz_to_local(z, back[k], &again);
				CHECK(again.year == tm.year && again.mon == tm.mon && again.mday == tm.mday &&
				      again.hour == tm.hour && again.min == tm.min && again.sec == tm.sec);
			}
			if (n == 2)
				CHECK(back[0] < back[1]);
		}
	}
	tz_free(z);
	return 0;
}
