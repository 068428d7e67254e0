/* sqlscan.h - a lexical look at a SQL script, enough to find its statements
 * and what each begins with, without parsing SQL. Pure, no allocation.
 *
 * It knows PostgreSQL's tokens that may hide a ';': comments (-- to the end
 * of the line, nested block comments), string constants ('...' with ''
 * doubled; E'...' with backslash escapes too), quoted identifiers ("..."
 * with "" doubled) and dollar-quoted strings ($tag$...$tag$). A ';' inside
 * BEGIN ATOMIC ... END (a SQL-standard function body) ends no statement;
 * CASE ... END inside one is counted so that its END does not close it.
 * Used by `zmesh db migrate` to refuse files that hold their own
 * transaction control, and files that end inside a string or comment (what
 * follows them, the migration's own bookkeeping, would be swallowed). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

enum sqlscan_status {
	SQLSCAN_OK = 0,
	SQLSCAN_TX_CONTROL,   /* a statement is transaction control (BEGIN, COMMIT, ...) */
	SQLSCAN_UNTERMINATED, /* the script ends inside a string, identifier, comment or BEGIN ATOMIC body */
	SQLSCAN_NUL,          /* a NUL byte */
};

struct sqlscan_result {
	enum sqlscan_status status;
	size_t statements; /* statements seen (non-empty ones) */
	size_t offset;     /* TX_CONTROL: byte offset of the statement's first word; UNTERMINATED: of the construct */
	size_t line;       /* 1-based line of offset */
	char word[24];     /* TX_CONTROL: the first word as written, upper-cased (cut) */
};

/* Scan s[0..len) and fill *ret. Transaction control is a statement whose
 * first word is BEGIN, START, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT,
 * RELEASE or PREPARE (PREPARE TRANSACTION; a PREPARE of a statement is
 * reported too: migrations have no use for one). Always returns
 * ret->status. */
enum sqlscan_status sqlscan_check(const char *s, size_t len, struct sqlscan_result *ret);
