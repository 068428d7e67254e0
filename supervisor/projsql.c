/* projsql.c - see projsql.h */
#define _GNU_SOURCE
#include "projsql.h"

#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db.h"
#include "errors.h"
#include "utf8.h"
#include "util.h"

/* What a sandbox's DSN names implicitly (libpq's default): the node's
 * pgbouncer and the embedded cluster both listen there. */
#define PROJSQL_PORT "5432"
/* After a cancel, how long the server may take to say so. */
#define CANCEL_GRACE_MS 5000
#define COMMANDS_MAX    1024 /* bytes of command tags for the log line */

#define _cleanup_json_ _cleanup_(json_decrefp)

/* The SDKs' session settings (sdk-js/lib/db.js), and our own timeout. The
 * node's pgbouncer passes no startup options on: they are set here. */
#define STR_(x) #x
#define STR(x)  STR_(x)
static const char session_setup[] = "SET DateStyle = ISO; SET TimeZone = 'UTC'; SET IntervalStyle = iso_8601; "
                                    "SET bytea_output = hex; SET client_encoding = 'UTF8'; "
                                    "SET statement_timeout = " STR(PROJSQL_STATEMENT_TIMEOUT_MS);

/* The names of the types a result column can have that every database of
 * the cluster shares (built-in OIDs are fixed); others are asked for. */
static const struct {
	Oid oid;
	const char *name;
} builtin_types[] = {
    {16, "bool"},        {17, "bytea"},         {18, "char"},        {19, "name"},        {20, "int8"},
    {21, "int2"},        {23, "int4"},          {25, "text"},        {26, "oid"},         {114, "json"},
    {142, "xml"},        {650, "cidr"},         {700, "float4"},     {701, "float8"},     {705, "unknown"},
    {774, "macaddr8"},   {829, "macaddr"},      {869, "inet"},       {1000, "bool[]"},    {1005, "int2[]"},
    {1007, "int4[]"},    {1009, "text[]"},      {1015, "varchar[]"}, {1016, "int8[]"},    {1021, "float4[]"},
    {1022, "float8[]"},  {1042, "bpchar"},      {1043, "varchar"},   {1082, "date"},      {1083, "time"},
    {1114, "timestamp"}, {1184, "timestamptz"}, {1186, "interval"},  {1231, "numeric[]"}, {1266, "timetz"},
    {1700, "numeric"},   {2205, "regclass"},    {2249, "record"},    {2278, "void"},      {2950, "uuid"},
    {2951, "uuid[]"},    {3802, "jsonb"},       {3807, "jsonb[]"},
};

enum {
	OID_BOOL = 16,
	OID_INT8 = 20,
	OID_INT2 = 21,
	OID_INT4 = 23,
	OID_OID = 26,
	OID_JSON = 114,
	OID_FLOAT4 = 700,
	OID_FLOAT8 = 701,
	OID_NUMERIC = 1700,
	OID_JSONB = 3802,
};

static const char *builtin_type(Oid oid)
{
	for (size_t i = 0; i < ELEMENTSOF(builtin_types); i++)
		if (builtin_types[i].oid == oid)
			return builtin_types[i].name;
	return NULL;
}

static void pq_finishp(PGconn **c)
{
	if (*c)
		PQfinish(*c);
}

static void ignore_notice(void *arg, const char *message)
{
	/* libpq would print the project's notices on the daemon's stderr. */
	(void)arg;
	(void)message;
}

/* ---- one call's state ---------------------------------------------------- */

struct run {
	PGconn *conn;
	uint64_t deadline_ns;
	bool cancelled; /* the deadline passed and a cancel was sent */
	json_t *results;
	json_t *cur;      /* the statement whose rows are arriving, when listed */
	json_t *cur_rows; /* borrowed from cur */
	bool cur_open;    /* a statement's rows are arriving (listed or not) */
	bool cur_truncated;
	size_t cur_listed;
	size_t n_done; /* statements finished */
	size_t value_bytes;
	bool truncated;
	Oid *oids; /* distinct column types to name */
	size_t n_oids, cap_oids;
	char commands[COMMANDS_MAX];
	size_t commands_len;
	/* the first error */
	bool failed;
	int fail_code; /* a negative errno for a client-side failure, 0 for the server's */
	char sqlstate[6];
	char message[sizeof(((struct zerr *)0)->msg)];
	json_t *detail;
};

static int64_t left_ms(const struct run *run)
{
	uint64_t now = util_now_ns();
	return now >= run->deadline_ns ? 0 : (int64_t)((run->deadline_ns - now) / 1000000u);
}

/* Wait for input on the session until the deadline. */
static int wait_input(struct run *run)
{
	int64_t ms = left_ms(run);
	if (ms <= 0)
		return -ETIMEDOUT;
	struct pollfd p = {.fd = PQsocket(run->conn), .events = POLLIN};
	if (p.fd < 0)
		return -ECONNRESET;
	int n = poll(&p, 1, (int)(ms > 1000 ? 1000 : ms));
	if (n < 0 && errno != EINTR)
		return -errno;
	if (!PQconsumeInput(run->conn))
		return -ECONNRESET;
	return 0;
}

/* The deadline passed: ask the server to cancel, and give it a moment to
 * answer with the cancelled statement's error. */
static void cancel(struct run *run)
{
	if (run->cancelled)
		return;
	run->cancelled = true;
	PGcancel *cc = PQgetCancel(run->conn);
	char buf[256];
	if (cc) {
		PQcancel(cc, buf, sizeof(buf));
		PQfreeCancel(cc);
	}
	run->deadline_ns = util_now_ns() + (uint64_t)CANCEL_GRACE_MS * 1000000u;
}

/* Until a result is ready (PQgetResult will not block): 0, or -ETIMEDOUT
 * once the deadline and the cancel's grace have both passed. */
static int wait_result(struct run *run)
{
	for (;;) {
		if (!PQconsumeInput(run->conn))
			return -ECONNRESET;
		if (!PQisBusy(run->conn))
			return 0;
		int r = wait_input(run);
		if (r == -ETIMEDOUT) {
			if (run->cancelled)
				return r;
			cancel(run);
		} else if (r < 0)
			return r;
	}
}

static void fail_client(struct run *run, int code, const char *what)
{
	if (run->failed)
		return;
	run->failed = true;
	run->fail_code = code;
	snprintf(run->message, sizeof(run->message), "%s: %s", what, PQerrorMessage(run->conn));
}

static json_t *json_text(const char *s, size_t len)
{
	json_t *j = json_stringn(s, len);
	if (j)
		return j;
	/* Not UTF-8 (a database of another encoding): readable, never invalid
	 * JSON. */
	_cleanup_free_ char *clean = utf8_sanitize(s, len, false);
	return clean ? json_string(clean) : NULL;
}

static void fail_server(struct run *run, const PGresult *res)
{
	if (run->failed)
		return;
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (!state || strlen(state) != 5 || !msg) {
		/* No SQLSTATE: libpq's own failure, such as a lost connection. */
		run->failed = true;
		run->fail_code = PQstatus(run->conn) == CONNECTION_BAD ? -ECONNRESET : -EIO;
		snprintf(run->message, sizeof(run->message), "%s", PQresultErrorMessage(res));
		return;
	}
	run->failed = true;
	run->fail_code = 0;
	memcpy(run->sqlstate, state, 6);
	if (run->cancelled && strcmp(state, "57014") == 0)
		snprintf(run->message, sizeof(run->message),
		         "canceling statement: the request ran longer than %d s (statement_timeout is %d s)",
		         PROJSQL_DEADLINE_MS / 1000, PROJSQL_STATEMENT_TIMEOUT_MS / 1000);
	else {
		size_t n = utf8_cut_len(msg, strlen(msg), sizeof(run->message) - 1);
		memcpy(run->message, msg, n);
		run->message[n] = '\0';
	}
	run->detail = json_pack("{s:s, s:I}", "sqlstate", state, "statement", (json_int_t)run->n_done);
	const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
	uint64_t p;
	if (run->detail && pos && util_parse_u64(pos, 1, INT32_MAX, &p) == 0)
		json_object_set_new(run->detail, "position", json_integer((json_int_t)p));
	const char *extra[][2] = {{"detail", PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL)},
	                          {"hint", PQresultErrorField(res, PG_DIAG_MESSAGE_HINT)}};
	for (size_t i = 0; run->detail && i < ELEMENTSOF(extra); i++)
		if (extra[i][1]) {
			size_t n = utf8_cut_len(extra[i][1], strlen(extra[i][1]), 2000);
			json_object_set_new(run->detail, extra[i][0], json_text(extra[i][1], n));
		}
}

static int note_oid(struct run *run, Oid oid)
{
	if (builtin_type(oid))
		return 0;
	for (size_t i = 0; i < run->n_oids; i++)
		if (run->oids[i] == oid)
			return 0;
	if (run->n_oids == run->cap_oids) {
		size_t cap = run->cap_oids ? 2 * run->cap_oids : 16;
		Oid *p = reallocarray(run->oids, cap, sizeof(*p));
		if (!p)
			return -ENOMEM;
		run->oids = p;
		run->cap_oids = cap;
	}
	run->oids[run->n_oids++] = oid;
	return 0;
}

/* A statement's rows begin (or it finished without any): its entry, with
 * its columns, unless PROJSQL_MAX_RESULTS are listed already. */
static int open_statement(struct run *run, const PGresult *res)
{
	run->cur_open = true;
	run->cur_truncated = false;
	run->cur_listed = 0;
	run->cur = NULL;
	run->cur_rows = NULL;
	if (json_array_size(run->results) >= PROJSQL_MAX_RESULTS) {
		run->truncated = true;
		return 0;
	}
	json_t *cols = json_array(), *rows = json_array();
	json_t *o = json_object();
	if (!cols || !rows || !o) {
		json_decref(cols);
		json_decref(rows);
		json_decref(o);
		return -ENOMEM;
	}
	int n = PQnfields(res);
	for (int i = 0; i < n; i++) {
		const char *name = PQfname(res, i);
		Oid oid = PQftype(res, i);
		/* The type is its OID until the names are known (finish_types). */
		json_t *c = json_pack("{s:o, s:I}", "name", json_text(name, strlen(name)), "type", (json_int_t)oid);
		if (!c || json_array_append_new(cols, c) < 0 || note_oid(run, oid) < 0) {
			json_decref(cols);
			json_decref(rows);
			json_decref(o);
			return -ENOMEM;
		}
		run->value_bytes += strlen(name) + 32;
	}
	json_object_set_new(o, "columns", cols);
	json_object_set_new(o, "rows", rows);
	run->cur_rows = rows;
	run->cur = o;
	run->value_bytes += 128;
	return json_array_append_new(run->results, o) < 0 ? -ENOMEM : 0;
}

static bool whole_number(const char *s)
{
	const char *p = s + (*s == '-');
	return *p && strspn(p, "0123456789") == strlen(p) && strlen(p) <= 18;
}

/* One value as JSON: numbers for integers, floats and whole numerics (where
 * the JSON number is exact), booleans, json and jsonb parsed, text else. */
static json_t *value_json(const char *s, size_t len, Oid type)
{
	switch (type) {
	case OID_BOOL:
		return json_boolean(s[0] == 't');
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
	case OID_OID:
		return json_integer((json_int_t)strtoll(s, NULL, 10));
	case OID_FLOAT4:
	case OID_FLOAT8: {
		double d = strtod(s, NULL);
		/* NaN and the infinities have no JSON number. */
		return isfinite(d) ? json_real(d) : json_text(s, len);
	}
	case OID_NUMERIC:
		/* Up to 18 digits fit a 64-bit integer; a fraction or more digits
		 * would lose some in a double: text. */
		return whole_number(s) ? json_integer((json_int_t)strtoll(s, NULL, 10)) : json_text(s, len);
	case OID_JSON:
	case OID_JSONB: {
		json_t *j = json_loadb(s, len, JSON_DECODE_ANY, NULL);
		return j ? j : json_text(s, len);
	}
	default:
		return json_text(s, len);
	}
}

static int add_row(struct run *run, const PGresult *res)
{
	if (!run->cur || run->cur_listed >= PROJSQL_MAX_ROWS) {
		run->cur_truncated = true;
		return 0;
	}
	int n = PQnfields(res);
	size_t bytes = 2;
	for (int i = 0; i < n; i++)
		bytes += (size_t)PQgetlength(res, 0, i) + 8;
	if (run->value_bytes + bytes > PROJSQL_MAX_VALUE_BYTES) {
		run->cur_truncated = true;
		return 0;
	}
	json_t *row = json_array();
	if (!row)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		json_t *v = PQgetisnull(res, 0, i)
		                ? json_null()
		                : value_json(PQgetvalue(res, 0, i), (size_t)PQgetlength(res, 0, i), PQftype(res, i));
		if (!v || json_array_append_new(row, v) < 0) {
			json_decref(row);
			return -ENOMEM;
		}
	}
	run->value_bytes += bytes;
	run->cur_listed++;
	return json_array_append_new(run->cur_rows, row) < 0 ? -ENOMEM : 0;
}

/* "INSERT 0 5" -> "INSERT", "CREATE TABLE" as it is: the words before the
 * counts. */
static size_t command_len(const char *tag)
{
	size_t n = strlen(tag);
	for (;;) {
		size_t end = n;
		while (end > 0 && tag[end - 1] >= '0' && tag[end - 1] <= '9')
			end--;
		if (end == n || end == 0 || tag[end - 1] != ' ')
			return n;
		n = end - 1;
	}
}

static int close_statement(struct run *run, const PGresult *res)
{
	const char *tag = PQcmdStatus((PGresult *)res);
	size_t clen = command_len(tag);
	const char *count = PQcmdTuples((PGresult *)res);
	if (run->commands_len + clen + 2 < sizeof(run->commands)) {
		if (run->commands_len)
			run->commands[run->commands_len++] = ',';
		memcpy(run->commands + run->commands_len, tag, clen);
		run->commands_len += clen;
		run->commands[run->commands_len] = '\0';
	}
	if (run->cur) {
		uint64_t rc;
		json_object_set_new(run->cur, "command", json_text(tag, clen));
		json_object_set_new(run->cur, "row_count",
		                    util_parse_u64(count, 0, INT64_MAX, &rc) == 0 ? json_integer((json_int_t)rc)
		                                                                  : json_null());
		json_object_set_new(run->cur, "truncated", json_boolean(run->cur_truncated));
	}
	if (run->cur_truncated)
		run->truncated = true;
	run->cur_open = false;
	run->cur = NULL;
	run->cur_rows = NULL;
	run->n_done++;
	return 0;
}

/* COPY ... TO STDOUT: read and drop its data (it is not a result set). */
static int drain_copy(struct run *run)
{
	for (;;) {
		char *buf = NULL;
		int n = PQgetCopyData(run->conn, &buf, 1);
		if (buf)
			PQfreemem(buf);
		if (n > 0)
			continue;
		if (n == -1)
			return 0;
		if (n == -2)
			return -ECONNRESET;
		int r = wait_input(run);
		if (r == -ETIMEDOUT && !run->cancelled)
			cancel(run);
		else if (r < 0)
			return r;
	}
}

/* Read every result of what was sent. Returns a client-side failure; the
 * server's errors are kept in run. */
static int collect(struct run *run)
{
	for (;;) {
		int r = wait_result(run);
		if (r < 0)
			return r;
		_cleanup_pgresult_ PGresult *res = PQgetResult(run->conn);
		if (!res)
			return 0;
		switch (PQresultStatus(res)) {
		case PGRES_SINGLE_TUPLE:
			if (run->failed)
				break;
			if (!run->cur_open && (r = open_statement(run, res)) < 0)
				return r;
			if ((r = add_row(run, res)) < 0)
				return r;
			break;
		case PGRES_TUPLES_OK:
		case PGRES_COMMAND_OK:
			if (run->failed)
				break;
			if (!run->cur_open && (r = open_statement(run, res)) < 0)
				return r;
			close_statement(run, res);
			break;
		case PGRES_EMPTY_QUERY:
			break;
		case PGRES_COPY_IN:
			/* The server then fails the COPY with this message. */
			if (PQputCopyEnd(run->conn, "COPY FROM STDIN is not supported here: use INSERT") < 0)
				return -ECONNRESET;
			break;
		case PGRES_COPY_OUT:
			if ((r = drain_copy(run)) < 0)
				return r;
			break;
		case PGRES_FATAL_ERROR:
		case PGRES_NONFATAL_ERROR:
		case PGRES_BAD_RESPONSE:
			fail_server(run, res);
			break;
		default:
			/* COPY BOTH (replication) and anything unforeseen: this
			 * session cannot go on. */
			fail_client(run, -EIO, "unexpected result");
			return -EIO;
		}
	}
}

static int send_and_collect(struct run *run, const struct projsql_query *q)
{
	int ok = q->extended ? PQsendQueryParams(run->conn, q->sql, (int)q->n_params, NULL, q->params, NULL, NULL, 0)
	                     : PQsendQuery(run->conn, q->sql);
	if (!ok)
		return -ECONNRESET;
	PQsetSingleRowMode(run->conn);
	return collect(run);
}

/* Replace each column's type OID by its name: the built-in ones from the
 * table, the others (enums, domains, composite types of the project) from
 * the project's catalog, on the same session. A name that cannot be had
 * stays the OID in decimal. */
static void finish_types(struct run *run)
{
	json_t *names = json_object();
	if (!names)
		return;
	if (run->n_oids > 0 && left_ms(run) > 0) {
		char *list = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&list, &len);
		if (f) {
			fputc('{', f);
			for (size_t i = 0; i < run->n_oids; i++)
				fprintf(f, "%s%u", i ? "," : "", run->oids[i]);
			fputc('}', f);
		}
		if (f && fclose(f) == 0 && list) {
			const char *p[] = {list};
			static const char sql[] =
			    "SELECT t.oid::pg_catalog.text, CASE WHEN e.oid IS NOT NULL AND t.typlen = -1 "
			    "THEN e.typname OPERATOR(pg_catalog.||) '[]' ELSE t.typname END "
			    "FROM pg_catalog.pg_type t LEFT JOIN pg_catalog.pg_type e ON e.oid OPERATOR(pg_catalog.=) "
			    "t.typelem WHERE t.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])";
			if (PQsendQueryParams(run->conn, sql, 1, NULL, p, NULL, NULL, 0) && wait_result(run) == 0) {
				PGresult *res;
				while (wait_result(run) == 0 && (res = PQgetResult(run->conn))) {
					if (PQresultStatus(res) == PGRES_TUPLES_OK && PQnfields(res) == 2)
						for (int i = 0; i < PQntuples(res); i++)
							json_object_set_new(names, PQgetvalue(res, i, 0),
							                    json_text(PQgetvalue(res, i, 1),
							                              (size_t)PQgetlength(res, i, 1)));
					PQclear(res);
				}
			}
		}
		free(list);
	}
	size_t i, k;
	json_t *st, *col;
	json_array_foreach (run->results, i, st) {
		json_array_foreach (json_object_get(st, "columns"), k, col) {
			Oid oid = (Oid)json_integer_value(json_object_get(col, "type"));
			char key[16];
			snprintf(key, sizeof(key), "%u", oid);
			const char *b = builtin_type(oid);
			json_t *name = json_object_get(names, key);
			json_object_set_new(col, "type",
			                    b      ? json_string(b)
			                    : name ? json_incref(name)
			                           : json_string(key));
		}
	}
	json_decref(names);
}

static int open_session(const struct projsql_target *t, struct run *run, struct zerr *err)
{
	const char *keys[] = {"host",    "port",    "user", "password", "dbname", "connect_timeout", "application_name",
	                      "sslmode", "options", NULL};
	const char *vals[] = {t->socket_dir, PROJSQL_PORT, t->role, t->password, t->dbname, PROJSQL_CONNECT_TIMEOUT_S,
	                      "zmesh-sql",   "disable",    "",      NULL};
	/* expand_dbname 0: a value is only ever that value, never a
	 * connection string. */
	run->conn = PQconnectdbParams(keys, vals, 0);
	if (!run->conn)
		return zerr_set(err, -ENOMEM, "out of memory");
	if (PQstatus(run->conn) != CONNECTION_OK) {
		char msg[400];
		snprintf(msg, sizeof(msg), "%s", PQerrorMessage(run->conn));
		msg[strcspn(msg, "\n")] = '\0';
		return zerr_set(err, -ECONNREFUSED, "project database %s: %s", t->dbname, msg);
	}
	PQsetNoticeProcessor(run->conn, ignore_notice, NULL);
	return 0;
}

int projsql_run(const struct projsql_target *t, const struct projsql_query *q, json_t **ret_body, char **ret_commands,
                json_t **ret_detail, struct zerr *err)
{
	struct run run = {.deadline_ns = util_now_ns() + (uint64_t)PROJSQL_DEADLINE_MS * 1000000u};
	_cleanup_(pq_finishp) PGconn *conn_owner = NULL;
	_cleanup_json_ json_t *results = json_array();
	int r;
	if (!results)
		return zerr_set(err, -ENOMEM, "out of memory");
	run.results = results;
	r = open_session(t, &run, err);
	conn_owner = run.conn;
	if (r < 0)
		return r;

	/* The session's settings, under the same deadline: behind the node's
	 * pgbouncer, a project whose pool is in use waits here for a server
	 * connection. */
	struct projsql_query setup = {.sql = session_setup};
	struct run s = run;
	s.results = json_array();
	if (!s.results)
		return zerr_set(err, -ENOMEM, "out of memory");
	r = send_and_collect(&s, &setup);
	json_decref(s.results);
	free(s.oids);
	json_decref(s.detail);
	if (r < 0 || s.failed) {
		if (r == -ETIMEDOUT || (s.failed && strcmp(s.sqlstate, "57014") == 0))
			return zerr_set(err, -ECONNREFUSED,
			                "project database %s: no server connection within %d s (its pool is in use)",
			                t->dbname, PROJSQL_DEADLINE_MS / 1000);
		return zerr_set(err, -ECONNREFUSED, "project database %s: setting the session up failed: %s", t->dbname,
		                r < 0 ? PQerrorMessage(run.conn) : s.message);
	}
	run.deadline_ns = s.deadline_ns;

	r = send_and_collect(&run, q);
	if (r == -ETIMEDOUT) {
		/* Cancelled, and the server did not say so in time. */
		json_decref(run.detail);
		free(run.oids);
		*ret_detail = json_pack("{s:s, s:I}", "sqlstate", "57014", "statement", (json_int_t)run.n_done);
		return ze(err, ZE_SQL_ERROR, "canceling statement: the request ran longer than %d s",
		          PROJSQL_DEADLINE_MS / 1000);
	}
	if (r < 0 || (run.failed && run.fail_code < 0)) {
		int code = r < 0 ? r : run.fail_code;
		if (!run.failed)
			fail_client(&run, code, "query");
		json_decref(run.detail);
		free(run.oids);
		char msg[sizeof(run.message)];
		snprintf(msg, sizeof(msg), "%s", run.message);
		msg[strcspn(msg, "\n")] = '\0';
		return zerr_set(err, code == -ENOMEM ? -ENOMEM : -ECONNRESET, "project database %s: %s", t->dbname,
		                msg);
	}
	if (run.failed) {
		free(run.oids);
		*ret_detail = run.detail ? run.detail : json_object();
		return ze(err, ZE_SQL_ERROR, "%s", run.message);
	}
	finish_types(&run);
	free(run.oids);
	json_t *body = json_pack("{s:O, s:b}", "results", results, "truncated", run.truncated);
	char *commands = strdup(run.commands);
	if (!body || !commands) {
		json_decref(body);
		free(commands);
		return zerr_set(err, -ENOMEM, "out of memory");
	}
	*ret_body = body;
	*ret_commands = commands;
	return 0;
}
