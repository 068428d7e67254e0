/* store_migrate.c - the store's migration runner (store.h: store_migrate).
 * sql/ holds the control plane's schema as numbered files; nodes starting
 * together apply each once. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "store.h"

/* The advisory lock that serialises migration runners: "zmesh_mg" as a
 * bigint. It only has to differ from any other advisory lock taken in the
 * control-plane database. */
#define MIGRATION_LOCK_KEY "8821818791435398503"
#define MIGRATION_NAME_MAX 200

/* ---- migrations ---------------------------------------------------------- */

struct name_list {
	char **v;
	size_t n;
};

static void name_list_free(struct name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool migration_name_ok(const char *name)
{
	size_t len = strlen(name);
	if (len <= 4 || len > MIGRATION_NAME_MAX)
		return false;
	for (const char *s = name; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
		      *s == '-' || *s == '.'))
			return false;
	return true;
}

static bool ends_with_sql(const char *name)
{
	size_t len = strlen(name);
	return len > 4 && strcmp(name + len - 4, ".sql") == 0;
}

static int list_migrations(int dfd, const char *dir, struct name_list *ret, struct zerr *err)
{
	int dup = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
	if (dup < 0)
		return zerr_set(err, -errno, "dup: %s", strerror(errno));
	DIR *d = fdopendir(dup);
	if (!d) {
		int r = -errno;
		close(dup);
		return zerr_set(err, r, "read %s: %s", dir, strerror(-r));
	}
	struct name_list l = {0};
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *name = de->d_name;
		if (name[0] == '.' || !ends_with_sql(name))
			continue;
		if (!migration_name_ok(name)) {
			r = zerr_set(err, -EINVAL,
			             "migration file name \"%.64s\" in %s: only letters, digits, '_', '-', '.'", name,
			             dir);
			break;
		}
		struct stat st;
		if (fstatat(dfd, name, &st, 0) < 0) {
			r = zerr_set(err, -errno, "stat %s/%s: %s", dir, name, strerror(errno));
			break;
		}
		if (!S_ISREG(st.st_mode)) {
			r = zerr_set(err, -EINVAL, "%s/%s is not a regular file", dir, name);
			break;
		}
		if (l.n >= DB_MIGRATION_MAX_FILES) {
			r = zerr_set(err, -E2BIG, "more than %d migrations in %s", DB_MIGRATION_MAX_FILES, dir);
			break;
		}
		char **v = realloc(l.v, (l.n + 1) * sizeof(*v));
		char *copy = strdup(name);
		if (v)
			l.v = v;
		if (!v || !copy) {
			free(copy);
			r = zerr_set(err, -ENOMEM, "out of memory");
			break;
		}
		l.v[l.n++] = copy;
	}
	closedir(d);
	if (r < 0) {
		name_list_free(&l);
		return r;
	}
	if (l.n)
		qsort(l.v, l.n, sizeof(*l.v), cmp_names);
	*ret = l;
	return 0;
}

static int read_migration(int dfd, const char *name, char **ret, struct zerr *err)
{
	_cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return zerr_set(err, -errno, "open %s: %s", name, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0)
		return zerr_set(err, -errno, "stat %s: %s", name, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return zerr_set(err, -EINVAL, "%s is not a regular file", name);
	if (st.st_size > DB_MIGRATION_MAX_BYTES)
		return zerr_set(err, -EFBIG, "%s is larger than %d bytes", name, DB_MIGRATION_MAX_BYTES);
	_cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return zerr_set(err, -ENOMEM, "out of memory");
	size_t off = 0;
	/* Read what stat promised and no more: a file growing meanwhile must
	 * not overrun the bound. */
	while (off < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return zerr_set(err, -errno, "read %s: %s", name, strerror(errno));
		if (n == 0)
			break;
		off += (size_t)n;
	}
	buf[off] = '\0';
	/* libpq takes a C string: an embedded NUL would silently cut the
	 * migration short. */
	if (memchr(buf, '\0', off))
		return zerr_set(err, -EINVAL, "%s contains a NUL byte", name);
	*ret = TAKE_PTR(buf);
	return 0;
}

static int exec0(PGconn *conn, const char *sql, struct zerr *err)
{
	return db_exec_params(conn, sql, 0, NULL, NULL, err);
}

static void rollback_quietly(PGconn *conn)
{
	if (PQtransactionStatus(conn) == PQTRANS_IDLE)
		return;
	PQclear(PQexec(conn, "ROLLBACK"));
}

/* Apply one file unless recorded; *ret_applied tells which. */
static int apply_one(PGconn *conn, const char *version, const char *sql, bool *ret_applied, struct zerr *err)
{
	/* READ COMMITTED whatever the role's default: every statement after the
	 * lock must see what the previous holder committed. */
	int r = exec0(conn, "BEGIN ISOLATION LEVEL READ COMMITTED", err);
	if (r < 0)
		return r;
	r = exec0(conn, "SET LOCAL lock_timeout = '" DB_MIGRATION_LOCK_TIMEOUT "'", err);
	if (r < 0)
		goto fail;
	const char *key[] = {MIGRATION_LOCK_KEY};
	r = db_exec_params(conn, "SELECT pg_advisory_xact_lock($1::bigint)", 1, key, NULL, err);
	if (r < 0)
		goto fail;
	/* Created under the lock: concurrent CREATE TABLE IF NOT EXISTS can
	 * still collide on the catalog's unique indexes. */
	r = exec0(conn,
	          "CREATE TABLE IF NOT EXISTS schema_migrations ("
	          "version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
	          err);
	if (r < 0)
		goto fail;
	{
		_cleanup_pgresult_ PGresult *res = NULL;
		const char *v[] = {version};
		r = db_exec_params(conn, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, v, &res, err);
		if (r < 0)
			goto fail;
		if (PQntuples(res) > 0) {
			r = exec0(conn, "COMMIT", err);
			if (r < 0)
				goto fail;
			*ret_applied = false;
			return 0;
		}
	}
	{
		/* The one place text is executed as is: a trusted file of the
		 * installation, several statements, no values. */
		r = db_exec_script(conn, sql, version, err);
		if (r < 0)
			goto fail;
	}
	if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
		r = zerr_set(err, -EINVAL,
		             "migration %s ends the transaction itself (no BEGIN/COMMIT/ROLLBACK allowed)", version);
		goto fail;
	}
	{
		const char *v[] = {version};
		r = db_exec_params(conn, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())", 1, v,
		                   NULL, err);
		if (r < 0)
			goto fail;
	}
	r = exec0(conn, "COMMIT", err);
	if (r < 0)
		goto fail;
	*ret_applied = true;
	return 0;
fail:
	rollback_quietly(conn);
	return r;
}

int store_migrate(PGconn *conn, const char *sql_dir, int *ret_applied, struct zerr *err)
{
	if (!conn || !sql_dir)
		return zerr_set(err, -EINVAL, "no connection or no directory");
	if (PQstatus(conn) != CONNECTION_OK)
		return zerr_set(err, -ECONNRESET, "connection is not open");
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		return zerr_set(err, -EBUSY, "connection is inside a transaction");
	_cleanup_close_ int dfd = open(sql_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return zerr_set(err, -errno, "open migrations directory %s: %s", sql_dir, strerror(errno));
	_cleanup_(name_list_free) struct name_list files = {0};
	int r = list_migrations(dfd, sql_dir, &files, err);
	if (r < 0)
		return r;
	int applied = 0;
	for (size_t i = 0; i < files.n; i++) {
		_cleanup_free_ char *sql = NULL;
		r = read_migration(dfd, files.v[i], &sql, err);
		if (r < 0)
			return r;
		char version[MIGRATION_NAME_MAX + 1];
		snprintf(version, sizeof(version), "%.*s", (int)(strlen(files.v[i]) - 4), files.v[i]);
		bool done = false;
		r = apply_one(conn, version, sql, &done, err);
		if (r < 0)
			return r;
		applied += done;
	}
	*ret_applied = applied;
	return 0;
}
