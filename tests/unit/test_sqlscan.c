/* Unit tests: common/sqlscan.c - statements counted, transaction control
 * found where it begins a statement and nowhere else, and scripts that end
 * inside a string, quoted name or comment refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sqlscan.h"

static enum sqlscan_status scan(const char *s, struct sqlscan_result *r)
{
	return sqlscan_check(s, strlen(s), r);
}

static void test_statements(void **state)
{
	(void)state;
	struct sqlscan_result r;
	assert_int_equal(scan("", &r), SQLSCAN_OK);
	assert_int_equal(r.statements, 0);
	assert_int_equal(scan(" ;; -- only a comment\n/* and /* nested */ one */", &r), SQLSCAN_OK);
	assert_int_equal(r.statements, 0);
	assert_int_equal(scan("SELECT 1; SELECT 'a;b'; SELECT \"x;\" FROM t; SELECT $$;$$", &r), SQLSCAN_OK);
	assert_int_equal(r.statements, 4);
	assert_int_equal(scan("SELECT $1; SELECT a$b FROM t", &r), SQLSCAN_OK);
	assert_int_equal(r.statements, 2);
	/* a SQL-standard function body is one statement, CASE ... END inside it too */
	assert_int_equal(scan("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true "
	                      "THEN 1 END; SELECT 2; END; SELECT 3",
	                      &r),
	                 SQLSCAN_OK);
	assert_int_equal(r.statements, 2);
	/* E'' strings take backslash escapes; standard strings do not */
	assert_int_equal(scan("SELECT E'it\\'s;'; SELECT 'a\\'; SELECT 2", &r), SQLSCAN_OK);
	assert_int_equal(r.statements, 3);
	/* the last statement needs no ';' */
	assert_int_equal(scan("SELECT 1", &r), SQLSCAN_OK);
	assert_int_equal(r.statements, 1);
}

static void test_transaction_control(void **state)
{
	(void)state;
	struct sqlscan_result r;
	static const struct {
		const char *sql, *word;
		size_t line;
	} found[] = {
	    {"BEGIN;", "BEGIN", 1},
	    {"select 1;\n\ncommit", "COMMIT", 3},
	    {"CREATE TABLE t (n int);\n  /* why */ Rollback;", "ROLLBACK", 2},
	    {"START TRANSACTION ISOLATION LEVEL SERIALIZABLE;", "START", 1},
	    {"SELECT 1; END;", "END", 1},
	    {"ABORT", "ABORT", 1},
	    {"SELECT 1;\nPREPARE TRANSACTION 'x';", "PREPARE TRANSACTION", 2},
	    {"COMMIT PREPARED 'x'", "COMMIT", 1},
	};
	for (size_t i = 0; i < sizeof(found) / sizeof(found[0]); i++) {
		assert_int_equal(scan(found[i].sql, &r), SQLSCAN_TX_CONTROL);
		assert_string_equal(r.word, found[i].word);
		assert_int_equal(r.line, found[i].line);
	}
	static const char *const fine[] = {
	    "SELECT 'BEGIN; COMMIT;'",
	    "-- COMMIT;\nSELECT 1",
	    "DO $x$ BEGIN PERFORM 1; END $x$;",
	    "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ROLLBACK; END $$;",
	    "SELECT \"commit\" FROM t",
	    "PREPARE q AS SELECT 1; SAVEPOINT s; RELEASE s",
	    "CREATE TABLE begin_log (ended bool)",
	};
	for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++)
		assert_int_equal(scan(fine[i], &r), SQLSCAN_OK);
}

static void test_unterminated(void **state)
{
	(void)state;
	struct sqlscan_result r;
	static const char *const open[] = {
	    "SELECT 'a", "SELECT \"a", "SELECT 1; /* a /* b */", "SELECT $t$ x $t", "SELECT E'a\\'",
	};
	for (size_t i = 0; i < sizeof(open) / sizeof(open[0]); i++)
		assert_int_equal(scan(open[i], &r), SQLSCAN_UNTERMINATED);
	assert_int_equal(scan("SELECT 1;\n\nSELECT 'x", &r), SQLSCAN_UNTERMINATED);
	assert_int_equal(r.line, 3);
	assert_int_equal(r.offset, 18);
	/* a line comment at the very end is closed by what follows it */
	assert_int_equal(scan("SELECT 1 -- end", &r), SQLSCAN_OK);
	assert_int_equal(sqlscan_check("SELECT 1\0;", 10, &r), SQLSCAN_NUL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_statements),
	    cmocka_unit_test(test_transaction_control),
	    cmocka_unit_test(test_unterminated),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
