/* fuzz_pool_limits.c - pgb_parse_limits on any text: the role limits the API
 * process writes for the supervisor, which turns them into pgbouncer's
 * configuration as root.
 *
 * Checked beyond "no crash": a refusal is -EINVAL naming a line; what is
 * accepted became exactly one "[databases]" entry per input line, each a
 * plain role name and the fixed keys, so nothing of the input can add a
 * setting, a section or an include to pgbouncer's configuration. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgbouncer.h"

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
	struct buf out = BUF_INIT(0);
	struct zerr err = {0};
	int r = pgb_parse_limits((const char *)data, size, PGB_ROLE_POOL_MAX, "/s", 5432, &out, &err);
	if (r < 0) {
		CHECK(r == -EINVAL);
		CHECK(strncmp(err.msg, "line ", 5) == 0);
		buf_free(&out);
		return 0;
	}
	size_t lines = 0;
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	CHECK(out.data != NULL);
	/* The header, then one entry per line. */
	const char *p = strstr(out.data, "[databases]\n");
	CHECK(p != NULL);
	p += strlen("[databases]\n");
	size_t entries = 0;
	while (*p) {
		const char *nl = strchr(p, '\n');
		CHECK(nl != NULL);
		size_t name = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
		CHECK(name > 0 && name <= 63);
		CHECK(strncmp(p + name, " = host=/s port=5432 pool_size=", 31) == 0);
		const char *v = p + name + 31;
		char *end;
		unsigned long n = strtoul(v, &end, 10);
		CHECK(n >= 1 && n <= PGB_ROLE_POOL_MAX);
		CHECK(strncmp(end, " max_db_connections=", 20) == 0);
		CHECK(strtoul(end + 20, &end, 10) == n + 1 && end == nl);
		entries++;
		p = nl + 1;
	}
	CHECK(entries == lines);
	/* Nothing but the header line starts with a bracket, a percent or a
	 * semicolon. */
	CHECK(strstr(out.data, "%include") == NULL);
	buf_free(&out);
	return 0;
}
