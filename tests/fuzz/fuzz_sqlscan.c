/* fuzz_sqlscan.c - migration files as zmesh db migrate reads them, through
 * sqlscan_check (common/sqlscan.c).
 *
 * Checked beyond "no crash":
 *  - a refusal points inside the script (offset < size) at a line that
 *    exists there, and a transaction-control word is one of the known ones;
 *  - what zmesh db migrate relies on: a script the scan accepts stays
 *    accepted with the migration's bookkeeping appended, and that text
 *    ends exactly one statement later (nothing of it is swallowed by a
 *    string, comment or function body of the script), and is never taken
 *    for transaction control. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                  \
	do {                                                                                         \
		if (!(cond)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                     \
		}                                                                                    \
	} while (0)

#define INPUT_MAX 8192
static const char tail[] = "\n;\nINSERT INTO zmesh_migrations VALUES (1, 'a.sql', 'ff');\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > INPUT_MAX)
		return 0;
	const char *s = (const char *)data;
	struct sqlscan_result r;
	enum sqlscan_status st = sqlscan_check(s, size, &r);
	CHECK(st == r.status);
	if (st != SQLSCAN_OK) {
		CHECK(r.offset < size);
		size_t lines = 1;
		for (size_t i = 0; i < r.offset; i++)
			lines += s[i] == '\n';
		CHECK(r.line == lines);
		CHECK(memchr(r.word, '\0', sizeof(r.word)) != NULL);
		if (st == SQLSCAN_TX_CONTROL) {
			static const char *const words[] = {
			    "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "PREPARE TRANSACTION"};
			int known = 0;
			for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
				known |= strcmp(r.word, words[i]) == 0;
			CHECK(known);
		}
		return 0;
	}
	CHECK(r.statements <= size);
	char *buf = malloc(size + sizeof(tail));
	CHECK(buf);
	memcpy(buf, s, size);
	memcpy(buf + size, tail, sizeof(tail) - 1);
	struct sqlscan_result r2;
	CHECK(sqlscan_check(buf, size + sizeof(tail) - 1, &r2) == SQLSCAN_OK);
	CHECK(r2.statements == r.statements + 1);
	free(buf);
	return 0;
}
