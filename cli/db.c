/* db.c - zmesh db sql|migrate|status: the current project's own database,
 * through POST /projects/{pid}/sql (the project's role, its database only).
 *
 * Migrations are files NUMBER_NAME.sql of one directory, applied in the
 * order of their numbers, each once and each atomically: the file is sent
 * as one request "BEGIN; <file>; INSERT INTO zmesh_migrations ...; COMMIT;"
 * (the simple query protocol runs it as one string, and the first error
 * aborts the rest: nothing of the file, and no record of it, is left). So a
 * file must hold no transaction control of its own (its COMMIT would end
 * the transaction early), nor end inside a string or comment (the record
 * would be swallowed); both are refused before anything is sent
 * (common/sqlscan.h). The table zmesh_migrations of the project's database
 * records each applied file with the SHA-256 of its bytes: a file changed
 * after it was applied is an error naming it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>

#include "cli.h"
#include "sqlapi.h"
#include "sqlscan.h"
#include "table.h"
#include "utf8.h"

#define DB_SQL_MAX               ZSQL_MAX_BYTES
#define DB_TIMEOUT_MS            (ZSQL_DEADLINE_MS + 30000L) /* and time to connect and to cancel */
#define MIGRATION_MAX            (DB_SQL_MAX - 512)          /* room for the bookkeeping around a file */
#define MIGRATIONS_MAX           10000
#define MIGRATION_VERSION_DIGITS 18            /* a bigint */
#define APPLIED_PAGE             ZSQL_MAX_ROWS /* rows of one statement the server lists */

static const char db_usage[] =
    "zmesh db sql SQL | zmesh db migrate DIR | zmesh db status [DIR]\n"
    "\n"
    "  The current project's own PostgreSQL database, as the project's role (what its functions\n"
    "  reach with zmesh.db):\n"
    "  sql SQL       run SQL (several statements may be separated by ';'; - reads it from stdin)\n"
    "                and print each statement's rows as a table (--json: the server's answer)\n"
    "  migrate DIR   apply DIR's migrations NUMBER_NAME.sql (such as 001_init.sql) not applied\n"
    "                yet, in the order of their numbers, each in a transaction of its own\n"
    "  status [DIR]  the migrations applied, and with DIR those pending";
static const char sql_usage[] =
    "zmesh db sql SQL|- [--json]\n"
    "\n"
    "  Runs SQL in the current project's database as the project's role: each statement's rows as\n"
    "  a table (at most 1000 rows per statement are listed), or the server's JSON with --json.\n"
    "  Several statements run as one transaction unless the text has its own BEGIN/COMMIT.\n"
    "  Each statement may run 30 s, the whole text 60 s. - reads the SQL from stdin.";
static const char migrate_usage[] =
    "zmesh db migrate DIR [--json]\n"
    "\n"
    "  Applies DIR's migration files not applied yet, in the order of their numbers. A file is\n"
    "  NUMBER_NAME.sql (NUMBER digits, NAME of A-Z a-z 0-9 _ . -), such as 001_init.sql; other\n"
    "  .sql files and two files of one number are refused. Each file runs in a transaction of\n"
    "  its own, with its record in the table zmesh_migrations (created if missing): a file that\n"
    "  fails leaves nothing behind. Files must not hold BEGIN, COMMIT, ROLLBACK or the like, nor\n"
    "  statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY, VACUUM). A file\n"
    "  changed after it was applied is an error.";
static const char status_usage[] = "zmesh db status [DIR] [--json]\n"
                                   "\n"
                                   "  The migrations applied to the current project's database and, with DIR, "
                                   "the files\n"
                                   "  of DIR not applied yet (pending) or changed since they were applied.";

/* ---- the endpoint ---------------------------------------------------------- */

/* 1-based line and column (in characters) of the 1-based character pos of
 * text; false when pos is beyond it. */
static bool locate(const char *text, size_t len, long long pos, size_t *ret_line, size_t *ret_col)
{
	size_t line = 1, col = 1;
	long long ch = 1;
	for (size_t i = 0; i < len; ch++) {
		if (ch == pos) {
			*ret_line = line;
			*ret_col = col;
			return true;
		}
		size_t n = utf8_seq_len((const unsigned char *)text + i, len - i);
		if (text[i] == '\n') {
			line++;
			col = 1;
		} else
			col++;
		i += n ? n : 1;
	}
	return false;
}

/* Report the server's SQL_ERROR: where (label, and the line and column of
 * its position within text once skip characters of what was sent are
 * taken off, else the failing statement's number once skip_statements
 * are taken off), the message, the SQLSTATE, and the server's detail and
 * hint. */
static void print_sql_error(json_t *e, const char *label, const char *text, size_t len, long long skip,
                            long long skip_statements)
{
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *state = json_string_value(json_object_get(e, "sqlstate"));
	json_t *pos = json_object_get(e, "position");
	_cleanup_free_ char *m = cli_sanitize(msg ? msg : "the statement failed", 600, true);
	_cleanup_free_ char *s = cli_sanitize(state ? state : "?", 8, false);
	_cleanup_free_ char *l = label ? cli_sanitize(label, 200, false) : NULL;
	char where[64] = "";
	size_t line, col;
	json_t *st = json_object_get(e, "statement");
	if (json_is_integer(pos) && locate(text, len, json_integer_value(pos) - skip, &line, &col))
		snprintf(where, sizeof(where), "line %zu, column %zu: ", line, col);
	else if (json_is_integer(st) && json_integer_value(st) >= skip_statements)
		snprintf(where, sizeof(where),
		         "statement %lld: ", (long long)json_integer_value(st) - skip_statements + 1);
	fprintf(stderr, "zmesh: %s%s%s%s (SQLSTATE %s)\n", l ? l : "", l ? ": " : "", where, m ? m : "", s ? s : "");
	static const char *const extra[] = {"detail", "hint"};
	for (size_t i = 0; i < ELEMENTSOF(extra); i++) {
		const char *v = json_string_value(json_object_get(e, extra[i]));
		_cleanup_free_ char *sv = v ? cli_sanitize(v, 600, true) : NULL;
		if (sv)
			fprintf(stderr, "  %s: %s\n", extra[i], sv);
	}
}

enum { SQL_DONE = 0, SQL_REFUSED = 1 };

/* POST sql (with params when n_params >= 0) to the current project. Returns
 * SQL_DONE with *ret the answer, SQL_REFUSED with *ret_error the server's
 * error object (SQL_ERROR: owned by *ret), or a negative code with c->err
 * set for anything else. */
static int post_sql(struct cli *c, const char *sql, const char *const *params, int n_params, struct reply *ret,
                    json_t **ret_error)
{
	const char *project = cli_project(c);
	if (!project)
		return -ENOENT;
	_cleanup_free_ char *path = CLI_PATH("projects", project, "sql");
	_cleanup_json_ json_t *body = json_pack("{s:s}", "sql", sql);
	if (!path || !body)
		return zerr_set(&c->err, -ENOMEM, "out of memory");
	if (n_params >= 0) {
		json_t *p = json_array();
		for (int i = 0; p && i < n_params; i++)
			json_array_append_new(p, params[i] ? json_string(params[i]) : json_null());
		if (!p || json_object_set_new(body, "params", p) < 0)
			return zerr_set(&c->err, -ENOMEM, "out of memory");
	}
	struct reply rep = {0};
	int r = cli_call(c, "POST", path, body, DB_TIMEOUT_MS, true, &rep);
	if (r < 0)
		return r;
	if (rep.status == 200 && json_is_array(json_object_get(rep.json, "results"))) {
		*ret = rep;
		return SQL_DONE;
	}
	json_t *e = json_object_get(rep.json, "error");
	if (rep.status == 400 && json_is_object(e) &&
	    strcmp(json_string_value(json_object_get(e, "code")) ?: "", "SQL_ERROR") == 0) {
		*ret = rep;
		*ret_error = e;
		return SQL_REFUSED;
	}
	_cleanup_free_ char *line = reply_error_line(&rep);
	r = zerr_set(&c->err, -EPROTO, "%s%s", line ? line : "request failed",
	             rep.status == 401 ? " (run zmesh login)" : "");
	reply_done(&rep);
	return r;
}

/* A value as a table shows it. */
static char *cell_text(json_t *v)
{
	if (json_is_null(v))
		return strdup("NULL");
	if (json_is_string(v))
		return strdup(json_string_value(v));
	return json_dumps_exact(v, JSON_ENCODE_ANY | JSON_COMPACT);
}

static int print_result(json_t *res)
{
	const char *command = json_string_value(json_object_get(res, "command"));
	json_t *count = json_object_get(res, "row_count");
	json_t *cols = json_object_get(res, "columns"), *rows = json_object_get(res, "rows");
	size_t ncols = json_array_size(cols);
	_cleanup_free_ char *cmd = cli_sanitize(command ? command : "?", 64, false);
	if (ncols == 0) {
		if (json_is_integer(count))
			printf("%s %" JSON_INTEGER_FORMAT "\n", cmd ? cmd : "?", json_integer_value(count));
		else
			printf("%s\n", cmd ? cmd : "?");
		return 0;
	}
	_cleanup_free_ const char **header = calloc(ncols + 1, sizeof(*header));
	if (!header)
		return -ENOMEM;
	for (size_t i = 0; i < ncols; i++) {
		const char *n = json_string_value(json_object_get(json_array_get(cols, i), "name"));
		header[i] = n ? (*n ? n : "?column?") : "?";
	}
	_cleanup_(table_freep) struct table *t = table_new(header);
	if (!t)
		return -ENOMEM;
	size_t i;
	json_t *row;
	json_array_foreach (rows, i, row) {
		_cleanup_free_ char **cells = calloc(ncols, sizeof(*cells));
		if (!cells)
			return -ENOMEM;
		int r = 0;
		for (size_t k = 0; k < ncols && r == 0; k++)
			if (!(cells[k] = cell_text(json_array_get(row, k))))
				r = -ENOMEM;
		if (r == 0)
			r = table_add(t, (const char *const *)cells);
		for (size_t k = 0; k < ncols; k++)
			free(cells[k]);
		if (r < 0)
			return r;
	}
	table_print(t, stdout);
	size_t shown = json_array_size(rows);
	json_int_t total = json_is_integer(count) ? json_integer_value(count) : (json_int_t)shown;
	if (json_is_true(json_object_get(res, "truncated")))
		printf("(%" JSON_INTEGER_FORMAT " row%s, the first %zu shown)\n", total, total == 1 ? "" : "s", shown);
	else
		printf("(%" JSON_INTEGER_FORMAT " row%s)\n", total, total == 1 ? "" : "s");
	return 0;
}

static int db_sql(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, sql_usage, &rc) == OPT_EXIT)
		return rc;
	if (argc - optind != 1)
		return cli_usage_error(sql_usage, "sql takes one SQL text (quote it), or - to read it from stdin");
	_cleanup_free_ char *input = NULL;
	const char *text = argv[optind];
	if (strcmp(text, "-") == 0) {
		size_t n;
		int r = cli_read_fd(STDIN_FILENO, DB_SQL_MAX, &input, &n);
		if (r == -EFBIG)
			return cli_fail(c, "the SQL on stdin is larger than %u bytes", DB_SQL_MAX);
		if (r < 0)
			return cli_fail(c, "cannot read stdin: %s", strerror(-r));
		if (strlen(input) != n)
			return cli_fail(c, "the SQL on stdin holds a NUL byte");
		text = input;
	}
	if (!*text)
		return cli_usage_error(sql_usage, "the SQL is empty");
	if (strlen(text) > DB_SQL_MAX)
		return cli_fail(c, "the SQL is larger than %u bytes", DB_SQL_MAX);
	_cleanup_(reply_done) struct reply rep = {0};
	json_t *e = NULL;
	int r = post_sql(c, text, NULL, -1, &rep, &e);
	if (r < 0)
		return cli_fail(c, NULL);
	if (r == SQL_REFUSED) {
		print_sql_error(e, NULL, text, strlen(text), 0, 0);
		return CLI_EXIT_FAIL;
	}
	if (c->json) {
		cli_print_raw(&rep);
		return CLI_EXIT_OK;
	}
	size_t i;
	json_t *res;
	json_t *results = json_object_get(rep.json, "results");
	json_array_foreach (results, i, res) {
		if (i > 0)
			putchar('\n');
		if (print_result(res) < 0)
			return cli_fail(c, "out of memory");
	}
	return CLI_EXIT_OK;
}

/* ---- migrations ------------------------------------------------------------ */

struct migration {
	long long version;
	char *name; /* the file's name */
	char *path;
	char *text;
	size_t len;
	char checksum[65];
	/* from the database */
	bool applied;
	char *applied_checksum;
	char *applied_at;
};

struct migrations {
	struct migration *v;
	size_t n;
};

static void migrations_done(struct migrations *m)
{
	for (size_t i = 0; i < m->n; i++) {
		free(m->v[i].name);
		free(m->v[i].path);
		free(m->v[i].text);
		free(m->v[i].applied_checksum);
		free(m->v[i].applied_at);
	}
	free(m->v);
	m->v = NULL;
	m->n = 0;
}

/* NUMBER_NAME.sql: the number as *ret_version; false for any other name. */
static bool migration_name(const char *name, long long *ret_version)
{
	size_t digits = strspn(name, "0123456789");
	if (digits == 0 || digits > MIGRATION_VERSION_DIGITS || name[digits] != '_')
		return false;
	const char *rest = name + digits + 1;
	size_t n = strlen(rest);
	if (n <= 4 || strcmp(rest + n - 4, ".sql") != 0)
		return false;
	if (strspn(rest, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != n)
		return false;
	long long v = 0;
	for (size_t i = 0; i < digits; i++)
		v = v * 10 + (name[i] - '0');
	*ret_version = v;
	return true;
}

static int by_version(const void *a, const void *b)
{
	const struct migration *x = a, *y = b;
	return x->version < y->version ? -1 : x->version > y->version;
}

static int sha256_hex(const char *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) || n != 32)
		return -EIO;
	for (unsigned i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static int read_migration(struct cli *c, struct migration *m)
{
	_cleanup_close_ int fd = open(m->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return zerr_set(&c->err, -errno, "cannot open %s: %s", m->path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0)
		return zerr_set(&c->err, -errno, "cannot stat %s: %s", m->path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return zerr_set(&c->err, -EINVAL, "%s is not a regular file", m->path);
	int r = cli_read_fd(fd, MIGRATION_MAX, &m->text, &m->len);
	if (r == -EFBIG)
		return zerr_set(&c->err, r, "%s is larger than %u bytes", m->path, MIGRATION_MAX);
	if (r < 0)
		return zerr_set(&c->err, r, "cannot read %s: %s", m->path, strerror(-r));
	if (!utf8_valid(m->text, m->len))
		return zerr_set(&c->err, -EINVAL, "%s is not UTF-8 text", m->path);
	struct sqlscan_result scan;
	switch (sqlscan_check(m->text, m->len, &scan)) {
	case SQLSCAN_OK:
		break;
	case SQLSCAN_TX_CONTROL:
		return zerr_set(&c->err, -EINVAL,
		                "%s: line %zu: %s: a migration must not hold transaction control (each file "
		                "already runs in a transaction of its own)",
		                m->path, scan.line, scan.word);
	case SQLSCAN_UNTERMINATED:
		return zerr_set(&c->err, -EINVAL, "%s: line %zu: a string, quoted name or comment is never closed",
		                m->path, scan.line);
	case SQLSCAN_NUL:
		return zerr_set(&c->err, -EINVAL, "%s: line %zu: a NUL byte", m->path, scan.line);
	}
	return sha256_hex(m->text, m->len, m->checksum) < 0 ? zerr_set(&c->err, -EIO, "SHA-256 failed") : 0;
}

/* DIR's migrations, sorted by version, read and checked (read false: names
 * only). */
static int list_migrations(struct cli *c, const char *dir, bool read, struct migrations *ret)
{
	_cleanup_(migrations_done) struct migrations m = {0};
	DIR *d = opendir(dir);
	if (!d)
		return zerr_set(&c->err, -errno, "cannot open the directory %s: %s", dir, strerror(errno));
	size_t cap = 0;
	int r = 0;
	struct dirent *de;
	while (r == 0 && (de = readdir(d))) {
		const char *name = de->d_name;
		size_t n = strlen(name);
		if (name[0] == '.' || n < 4 || strcmp(name + n - 4, ".sql") != 0)
			continue;
		long long version;
		if (!migration_name(name, &version)) {
			_cleanup_free_ char *safe = cli_sanitize(name, 200, false);
			r = zerr_set(&c->err, -EINVAL,
			             "%s/%s: not a migration's name: want NUMBER_NAME.sql, NAME of A-Z a-z 0-9 _ . - "
			             "(such as 001_init.sql)",
			             dir, safe ? safe : "?");
			break;
		}
		if (m.n == MIGRATIONS_MAX) {
			r = zerr_set(&c->err, -E2BIG, "%s: more than %d migrations", dir, MIGRATIONS_MAX);
			break;
		}
		if (m.n == cap) {
			cap = cap ? 2 * cap : 32;
			struct migration *p = reallocarray(m.v, cap, sizeof(*p));
			if (!p) {
				r = -ENOMEM;
				break;
			}
			m.v = p;
		}
		struct migration *x = &m.v[m.n];
		*x = (struct migration){.version = version, .name = strdup(name)};
		if (!x->name || asprintf(&x->path, "%s/%s", dir, name) < 0) {
			free(x->name);
			r = -ENOMEM;
			break;
		}
		m.n++;
	}
	closedir(d);
	if (r == -ENOMEM)
		return zerr_set(&c->err, r, "out of memory");
	if (r < 0)
		return r;
	qsort(m.v, m.n, sizeof(*m.v), by_version);
	for (size_t i = 1; i < m.n; i++)
		if (m.v[i].version == m.v[i - 1].version)
			return zerr_set(&c->err, -EINVAL, "%s: %s and %s have the same number %lld", dir,
			                m.v[i - 1].name, m.v[i].name, m.v[i].version);
	for (size_t i = 0; read && i < m.n; i++)
		if ((r = read_migration(c, &m.v[i])) < 0)
			return r;
	*ret = m;
	m = (struct migrations){0};
	return 0;
}

/* The versions recorded in zmesh_migrations: applied (version, name,
 * checksum, applied_at) rows as a JSON array (new reference); an empty one
 * when the table does not exist yet. */
static int fetch_applied(struct cli *c, json_t **ret)
{
	_cleanup_json_ json_t *all = json_array();
	if (!all)
		return zerr_set(&c->err, -ENOMEM, "out of memory");
	char after[32] = "-1", page[16];
	snprintf(page, sizeof(page), "%d", APPLIED_PAGE);
	for (;;) {
		const char *params[] = {after, page};
		_cleanup_(reply_done) struct reply rep = {0};
		json_t *e = NULL;
		int r = post_sql(c,
		                 "SELECT version, name, checksum, to_char(applied_at AT TIME ZONE 'UTC', "
		                 "'YYYY-MM-DD HH24:MI:SS') FROM zmesh_migrations WHERE version > $1::bigint "
		                 "ORDER BY version LIMIT $2::int",
		                 params, 2, &rep, &e);
		if (r < 0)
			return r;
		if (r == SQL_REFUSED) {
			const char *state = json_string_value(json_object_get(e, "sqlstate"));
			if (state && strcmp(state, "42P01") == 0 && json_array_size(all) == 0)
				break; /* no table: nothing applied */
			print_sql_error(e, "zmesh_migrations", "", 0, 0, 0);
			return zerr_set(&c->err, -EPROTO, "cannot read the table zmesh_migrations");
		}
		json_t *rows = json_object_get(json_array_get(json_object_get(rep.json, "results"), 0), "rows");
		size_t i;
		json_t *row;
		json_array_foreach (rows, i, row) {
			if (!json_is_integer(json_array_get(row, 0)) || json_array_size(row) != 4)
				return zerr_set(&c->err, -EPROTO,
				                "zmesh_migrations holds a row of an unexpected shape");
			json_array_append(all, row);
		}
		if (json_array_size(rows) < APPLIED_PAGE)
			break;
		snprintf(after, sizeof(after), "%" JSON_INTEGER_FORMAT,
		         json_integer_value(json_array_get(json_array_get(rows, APPLIED_PAGE - 1), 0)));
	}
	*ret = TAKE_PTR(all);
	return 0;
}

/* Mark the migrations of m that applied (a JSON array of rows) records. */
static int match_applied(struct migrations *m, json_t *applied)
{
	size_t i;
	json_t *row;
	json_array_foreach (applied, i, row) {
		long long v = (long long)json_integer_value(json_array_get(row, 0));
		for (size_t k = 0; k < m->n; k++) {
			if (m->v[k].version != v)
				continue;
			const char *sum = json_string_value(json_array_get(row, 2));
			const char *at = json_string_value(json_array_get(row, 3));
			m->v[k].applied = true;
			m->v[k].applied_checksum = strdup(sum ? sum : "");
			m->v[k].applied_at = strdup(at ? at : "");
			if (!m->v[k].applied_checksum || !m->v[k].applied_at)
				return -ENOMEM;
		}
	}
	return 0;
}

static const char create_table[] = "CREATE TABLE IF NOT EXISTS zmesh_migrations (version bigint PRIMARY KEY, "
                                   "name text NOT NULL, checksum text NOT NULL, "
                                   "applied_at timestamptz NOT NULL DEFAULT now())";

/* The one request that applies m: its text between BEGIN and the record's
 * INSERT and COMMIT. The record's values are spliced in as text because
 * several statements take no parameters: the version is a number we parsed,
 * the name was checked to be of A-Z a-z 0-9 _ . - and the checksum is hex. */
static char *migration_request(const struct migration *m)
{
	char *out = NULL;
	if (asprintf(
	        &out,
	        "BEGIN;\n%s\n;\nINSERT INTO zmesh_migrations (version, name, checksum) VALUES (%lld, '%s', '%s');\n"
	        "COMMIT;",
	        m->text, m->version, m->name, m->checksum) < 0)
		return NULL;
	return out;
}

/* The answer to migration_request says the record was written and the
 * transaction committed (not rolled back). */
static bool migration_committed(json_t *answer)
{
	json_t *results = json_object_get(answer, "results");
	size_t n = json_array_size(results);
	if (n < 3)
		return false;
	json_t *ins = json_array_get(results, n - 2), *commit = json_array_get(results, n - 1);
	const char *ic = json_string_value(json_object_get(ins, "command"));
	const char *cc = json_string_value(json_object_get(commit, "command"));
	return ic && cc && strcmp(ic, "INSERT") == 0 && json_integer_value(json_object_get(ins, "row_count")) == 1 &&
	       strcmp(cc, "COMMIT") == 0;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int db_migrate(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, migrate_usage, &rc) == OPT_EXIT)
		return rc;
	if (argc - optind != 1)
		return cli_usage_error(migrate_usage, "migrate takes one DIR");
	const char *dir = argv[optind];
	if (!cli_project(c))
		return cli_fail(c, NULL);
	/* Every file is checked before anything is sent. */
	_cleanup_(migrations_done) struct migrations m = {0};
	if (list_migrations(c, dir, true, &m) < 0)
		return cli_fail(c, NULL);
	{
		_cleanup_(reply_done) struct reply rep = {0};
		json_t *e = NULL;
		int r = post_sql(c, create_table, NULL, -1, &rep, &e);
		if (r < 0)
			return cli_fail(c, NULL);
		if (r == SQL_REFUSED) {
			print_sql_error(e, "zmesh_migrations", create_table, strlen(create_table), 0, 0);
			return CLI_EXIT_FAIL;
		}
	}
	_cleanup_json_ json_t *applied = NULL;
	if (fetch_applied(c, &applied) < 0)
		return cli_fail(c, NULL);
	if (match_applied(&m, applied) < 0)
		return cli_fail(c, "out of memory");
	for (size_t i = 0; i < m.n; i++)
		if (m.v[i].applied && strcmp(m.v[i].applied_checksum, m.v[i].checksum) != 0)
			return cli_fail(c,
			                "%s was changed after it was applied (on %s): its SHA-256 is %.12s..., the "
			                "recorded one %.12s...; write a new migration instead",
			                m.v[i].path, m.v[i].applied_at, m.v[i].checksum, m.v[i].applied_checksum);
	_cleanup_json_ json_t *done = json_array();
	if (!done)
		return cli_fail(c, "out of memory");
	size_t already = 0;
	for (size_t i = 0; i < m.n; i++) {
		struct migration *x = &m.v[i];
		if (x->applied) {
			already++;
			continue;
		}
		_cleanup_free_ char *text = migration_request(x);
		if (!text)
			return cli_fail(c, "out of memory");
		double t0 = now_ms();
		_cleanup_(reply_done) struct reply rep = {0};
		json_t *e = NULL;
		int r = post_sql(c, text, NULL, -1, &rep, &e);
		if (r < 0)
			return cli_fail(c, NULL);
		if (r == SQL_REFUSED) {
			/* The position counts from the start of what was sent:
			 * "BEGIN;\n" comes first, one statement. */
			print_sql_error(e, x->path, x->text, x->len, 7, 1);
			fprintf(stderr, "zmesh: %s was not applied (nothing of it is left); %zu applied before it\n",
			        x->path, json_array_size(done));
			return CLI_EXIT_FAIL;
		}
		if (!migration_committed(rep.json))
			return cli_fail(
			    c, "%s: the server did not confirm the commit; zmesh db status shows what is applied",
			    x->path);
		json_array_append_new(done,
		                      json_pack("{s:I, s:s}", "version", (json_int_t)x->version, "name", x->name));
		if (!c->json) {
			_cleanup_free_ char *safe = cli_sanitize(x->name, 200, false);
			printf("Applied %s (%.0f ms).\n", safe ? safe : "?", now_ms() - t0);
		}
	}
	if (c->json) {
		_cleanup_json_ json_t *out =
		    json_pack("{s:O, s:I}", "applied", done, "already_applied", (json_int_t)already);
		cli_print_json(out);
	} else if (json_array_size(done) == 0)
		printf("Nothing to apply: %zu migration%s already applied.\n", already, already == 1 ? "" : "s");
	return CLI_EXIT_OK;
}

static int db_status(struct cli *c, int argc, char **argv)
{
	int rc;
	if (cli_plain_opts(c, argc, argv, status_usage, &rc) == OPT_EXIT)
		return rc;
	if (argc - optind > 1)
		return cli_usage_error(status_usage, "status takes at most one DIR");
	const char *dir = argc - optind == 1 ? argv[optind] : NULL;
	if (!cli_project(c))
		return cli_fail(c, NULL);
	_cleanup_(migrations_done) struct migrations m = {0};
	if (dir && list_migrations(c, dir, true, &m) < 0)
		return cli_fail(c, NULL);
	_cleanup_json_ json_t *applied = NULL;
	if (fetch_applied(c, &applied) < 0)
		return cli_fail(c, NULL);
	if (match_applied(&m, applied) < 0)
		return cli_fail(c, "out of memory");
	/* Every applied version (with its file's state when DIR has it), then
	 * DIR's pending files, by version. */
	_cleanup_json_ json_t *list = json_array();
	if (!list)
		return cli_fail(c, "out of memory");
	size_t i;
	json_t *row;
	size_t changed = 0, pending = 0;
	json_array_foreach (applied, i, row) {
		long long v = (long long)json_integer_value(json_array_get(row, 0));
		const char *state = dir ? "applied (no file)" : "applied";
		for (size_t k = 0; k < m.n; k++)
			if (m.v[k].version == v) {
				bool same = strcmp(m.v[k].checksum, m.v[k].applied_checksum) == 0;
				state = same ? "applied" : "changed";
				changed += !same;
			}
		json_array_append_new(list, json_pack("{s:I, s:O, s:s, s:O}", "version", (json_int_t)v, "name",
		                                      json_array_get(row, 1), "status", state, "applied_at",
		                                      json_array_get(row, 3)));
	}
	for (size_t k = 0; k < m.n; k++)
		if (!m.v[k].applied) {
			pending++;
			json_array_append_new(list,
			                      json_pack("{s:I, s:s, s:s, s:n}", "version", (json_int_t)m.v[k].version,
			                                "name", m.v[k].name, "status", "pending", "applied_at"));
		}
	if (c->json) {
		_cleanup_json_ json_t *out = json_pack("{s:O}", "migrations", list);
		cli_print_json(out);
	} else if (json_array_size(list) == 0) {
		printf("No migrations applied%s.\n",
		       dir ? " and none pending" : " (zmesh db migrate DIR applies them)");
	} else {
		static const char *const header[] = {"VERSION", "NAME", "STATUS", "APPLIED (UTC)", NULL};
		_cleanup_(table_freep) struct table *t = table_new(header);
		if (!t)
			return cli_fail(c, "out of memory");
		json_t *x;
		json_array_foreach (list, i, x) {
			char v[32], n[256], s[32], a[64];
			const char *cells[] = {cell_json(json_object_get(x, "version"), v, sizeof(v)),
			                       cell_json(json_object_get(x, "name"), n, sizeof(n)),
			                       cell_json(json_object_get(x, "status"), s, sizeof(s)),
			                       cell_json(json_object_get(x, "applied_at"), a, sizeof(a))};
			if (table_add(t, cells) < 0)
				return cli_fail(c, "out of memory");
		}
		table_print(t, stdout);
		if (dir)
			printf("%zu pending.\n", pending);
	}
	if (changed)
		fprintf(stderr, "zmesh: %zu applied migration%s changed since (zmesh db migrate refuses to run)\n",
		        changed, changed == 1 ? " was" : "s were");
	return CLI_EXIT_OK;
}

int cmd_db(struct cli *c, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error(db_usage, "which db command?");
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		printf("usage: %s\n", db_usage);
		return CLI_EXIT_OK;
	}
	optind = 0;
	if (strcmp(sub, "sql") == 0)
		return db_sql(c, argc - 1, argv + 1);
	if (strcmp(sub, "migrate") == 0)
		return db_migrate(c, argc - 1, argv + 1);
	if (strcmp(sub, "status") == 0)
		return db_status(c, argc - 1, argv + 1);
	return cli_usage_error(db_usage, "unknown db command '%s'", sub);
}
