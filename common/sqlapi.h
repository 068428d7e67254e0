/* sqlapi.h - limits of POST /projects/{pid}/sql that both zmeshd (which
 * enforces them) and the CLI (which sizes its requests and reads by them)
 * know: one definition. */
#pragma once

/* sql: at most this many bytes; params: at most this many values. */
#define ZSQL_MAX_BYTES  (1u << 20)
#define ZSQL_MAX_PARAMS 1000
/* Rows listed per statement, statements listed per answer, bytes of values
 * listed per answer; the rest is read, dropped and marked truncated. */
#define ZSQL_MAX_ROWS        1000
#define ZSQL_MAX_RESULTS     1000
#define ZSQL_MAX_VALUE_BYTES (4u << 20)
/* Each statement's statement_timeout, and the whole request's deadline. */
#define ZSQL_STATEMENT_TIMEOUT_MS 30000
#define ZSQL_DEADLINE_MS          60000
