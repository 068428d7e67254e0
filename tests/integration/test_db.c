/* Tests of the control-plane database layer against real PostgreSQL: the
 * embedded cluster (pgembed) in a temporary state directory, then the
 * pool, the query helper and the migration runner (db) on that cluster.
 * Needs root and the postgres system user (it runs initdb and postgres);
 * exits 77, reported as skipped, without them. The tests run in order and
 * share the cluster. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "store.h"
#include "usage.h"
#include "pgembed.h"

static struct {
	char top[64];    /* mkdtemp: everything lives below */
	char state[128]; /* the state directory handed to pge_start */
	char data[192];  /* <state>/pg/data */
	struct pge *pge;
	char migrations[192]; /* scratch migration directories go here */
} fx;

/* ---- helpers ------------------------------------------------------------- */

static uint64_t ms_now(void)
{
	return util_now_ns() / 1000000u;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void conninfo(const char *db, char *buf, size_t n)
{
	assert_int_equal(pge_conninfo(fx.pge, db, buf, n), 0);
}

static PGconn *su_connect(const char *db)
{
	char ci[512];
	conninfo(db, ci, sizeof(ci));
	struct zerr err = {0};
	PGconn *c = NULL;
	int r = db_connect(ci, &c, &err);
	if (r < 0)
		fail_msg("connect to %s: %s", db ? db : "(maintenance database)", err.msg);
	return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
	struct zerr err = {0};
	int r = db_exec_params(c, sql, 0, NULL, NULL, &err);
	if (r < 0)
		fail_msg("%s: %s", sql, err.msg);
}

/* One text value of a one-row query, copied into buf. */
static void query_value(PGconn *c, const char *sql, int n, const char *const *params, char *buf, size_t size)
{
	struct zerr err = {0};
	_cleanup_pgresult_ PGresult *res = NULL;
	int r = db_exec_params(c, sql, n, params, &res, &err);
	if (r < 0)
		fail_msg("%s: %s", sql, err.msg);
	assert_int_equal(PQntuples(res), 1);
	snprintf(buf, size, "%s", PQgetisnull(res, 0, 0) ? "<null>" : PQgetvalue(res, 0, 0));
}

static long query_long(PGconn *c, const char *sql)
{
	char v[64];
	query_value(c, sql, 0, NULL, v, sizeof(v));
	return strtol(v, NULL, 10);
}

/* A fresh database on the embedded cluster. Names are test constants. */
static void fresh_db(const char *name)
{
	PGconn *c = su_connect(NULL);
	char sql[256];
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", name);
	exec_ok(c, sql);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	exec_ok(c, sql);
	PQfinish(c);
}

static void put_file(const char *dir, const char *name, const char *content)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	assert_int_equal(fclose(f), 0);
}

static void make_dir(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", fx.migrations, name);
	assert_int_equal(mkdir(buf, 0755), 0);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* Processes whose working directory is the data directory: every process of
 * the cluster, backends included. */
static int procs_in_data_dir(void)
{
	DIR *d = opendir("/proc");
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char link[300], target[512];
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(link, sizeof(link), "/proc/%s/cwd", de->d_name);
		ssize_t len = readlink(link, target, sizeof(target) - 1);
		if (len < 0)
			continue;
		target[len] = '\0';
		n += strcmp(target, fx.data) == 0;
	}
	closedir(d);
	return n;
}

static bool alive(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (util_read_file(path, buf, sizeof(buf)) < 0)
		return false;
	char *p = strrchr(buf, ')');
	return p && p[2] != 'Z' && p[2] != 'X';
}

static mode_t mode_of(const char *path, uid_t *ret_uid)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	if (ret_uid)
		*ret_uid = st.st_uid;
	return st.st_mode & 07777;
}

static uid_t postgres_uid(void)
{
	struct passwd *pw = getpwnam("postgres");
	assert_non_null(pw);
	return pw->pw_uid;
}

/* ---- fixture ------------------------------------------------------------- */

static int group_setup(void **state)
{
	snprintf(fx.top, sizeof(fx.top), "/tmp/zmesh-dbtest-XXXXXX");
	if (!mkdtemp(fx.top) || chmod(fx.top, 0711) < 0)
		return -1;
	/* A private state directory, as an operator may create it: pge_start
	 * must open the way (search only) for postgres. */
	snprintf(fx.state, sizeof(fx.state), "%s/state", fx.top);
	if (mkdir(fx.state, 0700) < 0)
		return -1;
	snprintf(fx.data, sizeof(fx.data), "%s/pg/data", fx.state);
	snprintf(fx.migrations, sizeof(fx.migrations), "%s/migrations", fx.top);
	return mkdir(fx.migrations, 0755);
}

static int group_teardown(void **state)
{
	int r = 0;
	if (fx.pge && pge_stop(fx.pge) != 0)
		r = -1;
	fx.pge = NULL;
	/* Nothing of the cluster may outlive the test. */
	for (int i = 0; i < 100 && procs_in_data_dir() > 0; i++)
		sleep_ms(50);
	if (procs_in_data_dir() > 0) {
		fprintf(stderr, "postgres processes left in %s\n", fx.data);
		r = -1;
	}
	if (fx.top[0] && nftw(fx.top, rm_cb, 16, FTW_DEPTH | FTW_PHYS) < 0)
		r = -1;
	return r;
}

/* ---- pgembed ------------------------------------------------------------- */

static void test_pge_rejects_bad_state_dirs(void **state)
{
	struct zerr err = {0};
	struct pge *p = NULL;
	assert_int_equal(pge_start(NULL, &p, &err), -EINVAL);
	assert_int_equal(pge_start("", &p, &err), -EINVAL);

	/* Too long for a unix socket path: refused before anything exists. */
	char longdir[256];
	snprintf(longdir, sizeof(longdir), "%s/%0120d", fx.top, 0);
	assert_int_equal(pge_start(longdir, &p, &err), -ENAMETOOLONG);
	assert_non_null(strstr(err.msg, "unix socket"));
	assert_int_equal(access(longdir, F_OK), -1);

	char spaced[256];
	snprintf(spaced, sizeof(spaced), "%s/with space", fx.top);
	assert_int_equal(pge_start(spaced, &p, &err), -EINVAL);
	assert_null(p);
	assert_int_equal(access(spaced, F_OK), -1);

	/* A parent the postgres user cannot pass: a clear error, not a
	 * half-started cluster. */
	char locked[256], inside[300];
	snprintf(locked, sizeof(locked), "%s/locked", fx.top);
	assert_int_equal(mkdir(locked, 0700), 0);
	snprintf(inside, sizeof(inside), "%s/state", locked);
	assert_int_equal(pge_start(inside, &p, &err), -EACCES);
	assert_null(p);
	assert_non_null(strstr(err.msg, "searchable"));
}

static void test_pge_first_start_initialises(void **state)
{
	struct zerr err = {0};
	int r = pge_start(fx.state, &fx.pge, &err);
	if (r < 0)
		fail_msg("pge_start: %s", err.msg);
	assert_true(pge_created(fx.pge));
	assert_true(pge_pid(fx.pge) > 0);
	assert_int_equal(pge_check(fx.pge, &err), 0);

	uid_t owner, pg = postgres_uid();
	char p[256];
	assert_int_equal(mode_of(fx.state, NULL) & 0011, 0011);
	snprintf(p, sizeof(p), "%s/pg/run", fx.state);
	assert_string_equal(pge_socket_dir(fx.pge), p);
	assert_int_equal(mode_of(p, &owner), 0755);
	assert_int_equal(owner, pg);
	assert_int_equal(mode_of(fx.data, &owner), 0700);
	assert_int_equal(owner, pg);
	snprintf(p, sizeof(p), "%s/pg/superuser.password", fx.state);
	assert_int_equal(mode_of(p, &owner), 0600);
	assert_int_equal(owner, 0);
	char pw[128];
	assert_int_equal(util_read_file(p, pw, sizeof(pw)), 64);
	assert_int_equal(strspn(pw, "0123456789abcdef"), 64);

	PGconn *c = su_connect(NULL);
	char v[128];
	query_value(c, "SELECT current_user", 0, NULL, v, sizeof(v));
	assert_string_equal(v, "postgres");
	query_value(c, "SHOW listen_addresses", 0, NULL, v, sizeof(v));
	assert_string_equal(v, "");
	/* The superuser has a password (not only peer): it is the generated one. */
	query_value(c, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'postgres'", 0, NULL,
	            v, sizeof(v));
	assert_string_equal(v, "t");
	exec_ok(c, "CREATE ROLE tenant LOGIN PASSWORD 'tenant-secret-123'");
	PQfinish(c);
}

/* From an unprivileged uid, as a sandbox connects: the superuser is out of
 * reach (peer maps only root and postgres), a role with its password is in. */
static void test_pge_auth_from_an_unprivileged_uid(void **state)
{
	char su[512], tenant[600], wrong[600];
	conninfo(NULL, su, sizeof(su));
	snprintf(tenant, sizeof(tenant), "host=%s port=5432 dbname=postgres user=tenant password=tenant-secret-123",
	         pge_socket_dir(fx.pge));
	snprintf(wrong, sizeof(wrong), "host=%s port=5432 dbname=postgres user=tenant password=nope",
	         pge_socket_dir(fx.pge));
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(10);
		PGconn *c = PQconnectdb(su);
		int su_ok = PQstatus(c) == CONNECTION_OK;
		PQfinish(c);
		c = PQconnectdb(tenant);
		int tenant_ok = PQstatus(c) == CONNECTION_OK;
		PQfinish(c);
		c = PQconnectdb(wrong);
		int wrong_ok = PQstatus(c) == CONNECTION_OK;
		PQfinish(c);
		_exit(su_ok ? 11 : !tenant_ok ? 12 : wrong_ok ? 13 : 0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_pge_refuses_a_second_owner(void **state)
{
	struct zerr err = {0};
	struct pge *p = NULL;
	assert_int_equal(pge_start(fx.state, &p, &err), -EBUSY);
	assert_null(p);
	assert_non_null(strstr(err.msg, "another zmeshd"));
	/* The running cluster is untouched. */
	assert_int_equal(pge_check(fx.pge, &err), 0);
	PGconn *c = su_connect(NULL);
	PQfinish(c);
}

static void test_pge_conninfo_quotes_and_bounds(void **state)
{
	char buf[512];
	assert_int_equal(pge_conninfo(fx.pge, "we'ird\\db", buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "dbname='we\\'ird\\\\db'"));
	assert_non_null(strstr(buf, "user=postgres"));
	char small[20];
	assert_int_equal(pge_conninfo(fx.pge, "postgres", small, sizeof(small)), -ENOSPC);
	assert_string_equal(small, "");
	char name64[65];
	memset(name64, 'a', 64);
	name64[64] = '\0';
	assert_int_equal(pge_conninfo(fx.pge, name64, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(pge_conninfo(fx.pge, "", buf, sizeof(buf)), -EINVAL);
	/* The quoted form is what libpq parses back. */
	assert_int_equal(pge_conninfo(fx.pge, "we'ird\\db", buf, sizeof(buf)), 0);
	PQconninfoOption *opts = PQconninfoParse(buf, NULL);
	assert_non_null(opts);
	bool seen = false;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (strcmp(o->keyword, "dbname") == 0) {
			assert_string_equal(o->val, "we'ird\\db");
			seen = true;
		}
	PQconninfoFree(opts);
	assert_true(seen);
}

static void test_pge_stop_leaves_nothing_and_restart_reuses(void **state)
{
	PGconn *c = su_connect(NULL);
	exec_ok(c, "CREATE TABLE survives (v text)");
	exec_ok(c, "INSERT INTO survives VALUES ('kept')");
	PQfinish(c);

	pid_t pid = pge_pid(fx.pge);
	assert_int_equal(pge_stop(fx.pge), 0);
	fx.pge = NULL;
	assert_false(alive(pid));
	assert_int_equal(procs_in_data_dir(), 0);
	char sock[256];
	snprintf(sock, sizeof(sock), "%s/pg/run/.s.PGSQL.5432", fx.state);
	assert_int_equal(access(sock, F_OK), -1);

	struct zerr err = {0};
	int r = pge_start(fx.state, &fx.pge, &err);
	if (r < 0)
		fail_msg("restart: %s", err.msg);
	assert_false(pge_created(fx.pge));
	c = su_connect(NULL);
	char v[64];
	query_value(c, "SELECT v FROM survives", 0, NULL, v, sizeof(v));
	assert_string_equal(v, "kept");
	PQfinish(c);
}

/* A postmaster nobody supervises (as a crashed zmeshd leaves it) is stopped
 * and replaced by a supervised one. */
static void test_pge_takes_over_an_orphaned_cluster(void **state)
{
	assert_int_equal(pge_stop(fx.pge), 0);
	fx.pge = NULL;

	char opts[300], logf[300];
	snprintf(opts, sizeof(opts), "-c listen_addresses='' -c unix_socket_directories='%s/pg/run'", fx.state);
	snprintf(logf, sizeof(logf), "%s/pg/run/orphan.log", fx.state);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		struct passwd *pw = getpwnam("postgres");
		if (!pw || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
			_exit(10);
		/* pg_ctl detaches the server: its parent is gone once started. */
		execl(PGE_BINDIR "/pg_ctl", "pg_ctl", "-D", fx.data, "-l", logf, "-w", "-t", "30", "-o", opts, "start",
		      (char *)NULL);
		_exit(11);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	char pidfile[256], buf[256];
	snprintf(pidfile, sizeof(pidfile), "%s/postmaster.pid", fx.data);
	assert_true(util_read_file(pidfile, buf, sizeof(buf)) > 0);
	pid_t orphan = (pid_t)atoi(buf);
	assert_true(orphan > 0);
	assert_true(alive(orphan));

	struct zerr err = {0};
	int r = pge_start(fx.state, &fx.pge, &err);
	if (r < 0)
		fail_msg("start over an orphan: %s", err.msg);
	assert_false(alive(orphan));
	assert_true(pge_pid(fx.pge) != orphan);
	assert_int_equal(pge_check(fx.pge, &err), 0);
	PGconn *c = su_connect(NULL);
	char v[64];
	query_value(c, "SELECT v FROM survives", 0, NULL, v, sizeof(v));
	assert_string_equal(v, "kept");
	PQfinish(c);
}

/* A crashed postmaster is reported by pge_check, and the next start copes
 * with what it left (a stale postmaster.pid, exiting children). */
static void test_pge_reports_a_crash_and_recovers(void **state)
{
	pid_t pid = pge_pid(fx.pge);
	assert_true(pid > 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	struct zerr err = {0};
	int r = 0;
	uint64_t deadline = ms_now() + 10000;
	while ((r = pge_check(fx.pge, &err)) == 0 && ms_now() < deadline)
		sleep_ms(20);
	assert_int_equal(r, -ESRCH);
	assert_non_null(strstr(err.msg, "signal 9"));
	assert_int_equal(pge_pid(fx.pge), 0);
	assert_int_equal(pge_stop(fx.pge), -ESRCH);
	fx.pge = NULL;

	r = pge_start(fx.state, &fx.pge, &err);
	if (r < 0)
		fail_msg("start after a crash: %s", err.msg);
	assert_false(pge_created(fx.pge));
	PGconn *c = su_connect(NULL);
	char v[64];
	query_value(c, "SELECT v FROM survives", 0, NULL, v, sizeof(v));
	assert_string_equal(v, "kept");
	PQfinish(c);
}

/* A cluster that will not start: the error says why (the log's tail), and
 * nothing is left behind to stop the next attempt. */
static void test_pge_failed_start_reports_the_log(void **state)
{
	assert_int_equal(pge_stop(fx.pge), 0);
	fx.pge = NULL;
	char conf[256], saved[8192];
	snprintf(conf, sizeof(conf), "%s/postgresql.auto.conf", fx.data);
	int n = util_read_file(conf, saved, sizeof(saved));
	assert_true(n >= 0);
	FILE *f = fopen(conf, "a");
	assert_non_null(f);
	fputs("shared_buffers = 'plenty'\n", f);
	fclose(f);

	struct zerr err = {0};
	struct pge *p = NULL;
	assert_int_equal(pge_start(fx.state, &p, &err), -EIO);
	assert_null(p);
	assert_non_null(strstr(err.msg, "shared_buffers"));
	assert_int_equal(procs_in_data_dir(), 0);

	f = fopen(conf, "w");
	assert_non_null(f);
	fwrite(saved, 1, (size_t)n, f);
	fclose(f);
	int r = pge_start(fx.state, &fx.pge, &err);
	if (r < 0)
		fail_msg("start after repair: %s", err.msg);
}

/* ---- db_exec_params ------------------------------------------------------ */

static void test_exec_params_reports_sqlstate(void **state)
{
	fresh_db("zt_exec");
	PGconn *c = su_connect("zt_exec");
	exec_ok(c, "CREATE TABLE t (k text CONSTRAINT t_k_key UNIQUE, n int CHECK (n > 0))");

	struct zerr err = {0};
	const char *row[] = {"a", "1"};
	assert_int_equal(db_exec_params(c, "INSERT INTO t VALUES ($1, $2::int)", 2, row, NULL, &err), 0);

	PGresult *sentinel = (PGresult *)&err; /* must stay untouched on failure */
	PGresult *res = sentinel;
	assert_int_equal(db_exec_params(c, "INSERT INTO t VALUES ($1, $2::int)", 2, row, &res, &err), -EEXIST);
	assert_ptr_equal(res, sentinel);
	assert_true(db_err_is(&err, "23505"));
	assert_false(db_err_is(&err, "23503"));
	assert_non_null(strstr(err.msg, "t_k_key"));
	assert_null(strchr(err.msg, '\n'));

	const char *bad[] = {"b", "0"};
	assert_int_equal(db_exec_params(c, "INSERT INTO t VALUES ($1, $2::int)", 2, bad, NULL, &err), -EINVAL);
	assert_true(db_err_is(&err, "23514"));
	assert_int_equal(db_exec_params(c, "SELEKT 1", 0, NULL, NULL, &err), -EINVAL);
	assert_true(db_err_is(&err, "42601"));
	const char *nan[] = {"x", "not a number"};
	assert_int_equal(db_exec_params(c, "INSERT INTO t VALUES ($1, $2::int)", 2, nan, NULL, &err), -EINVAL);
	assert_true(db_err_is(&err, "22P02"));

	/* Values are bound, never spliced: a hostile one is stored as is. */
	const char *evil[] = {"x'); DROP TABLE t; --", "5"};
	assert_int_equal(db_exec_params(c, "INSERT INTO t VALUES ($1, $2::int)", 2, evil, NULL, &err), 0);
	char v[128];
	query_value(c, "SELECT k FROM t WHERE n = 5", 0, NULL, v, sizeof(v));
	assert_string_equal(v, evil[0]);
	const char *null_k[] = {NULL};
	query_value(c, "SELECT $1::text IS NULL", 1, null_k, v, sizeof(v));
	assert_string_equal(v, "t");

	/* Several statements are refused by the extended protocol. */
	assert_true(db_exec_params(c, "SELECT 1; SELECT 2", 0, NULL, NULL, &err) < 0);
	assert_int_equal(db_exec_params(c, "SELECT 1", -1, NULL, NULL, &err), -EINVAL);
	assert_int_equal(db_exec_params(c, "SELECT $1", 1, NULL, NULL, &err), -EINVAL);
	assert_int_equal(db_exec_params(NULL, "SELECT 1", 0, NULL, NULL, &err), -EINVAL);
	assert_false(db_err_is(&err, "23505"));
	PQfinish(c);
}

static void test_connect_failure_is_clear(void **state)
{
	struct zerr err = {0};
	PGconn *c = NULL;
	char ci[512];
	conninfo("no_such_database", ci, sizeof(ci));
	assert_int_equal(db_connect(ci, &c, &err), -ECONNREFUSED);
	assert_null(c);
	assert_non_null(strstr(err.msg, "no_such_database"));
	assert_int_equal(db_connect(NULL, &c, &err), -EINVAL);
}

/* ---- migrations ---------------------------------------------------------- */

static int migrate(const char *db, const char *dir, int *applied, struct zerr *err)
{
	PGconn *c = su_connect(db);
	int r = store_migrate(c, dir, applied, err);
	/* The runner leaves the connection idle, whatever happened. */
	assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
	PQfinish(c);
	return r;
}

static void test_migrations_apply_once_in_order(void **state)
{
	char dir[256];
	make_dir(dir, sizeof(dir), "once");
	/* Not idempotent on purpose: a second application would fail or
	 * duplicate rows. */
	put_file(dir, "010_c.sql", "INSERT INTO steps VALUES (3, 'c');");
	put_file(dir, "001_a.sql", "CREATE TABLE steps (n int, name text);\nINSERT INTO steps VALUES (1, 'a');");
	put_file(dir, "002_b.sql", "INSERT INTO steps VALUES (2, 'b');");
	put_file(dir, "README", "not a migration");
	put_file(dir, ".001_editor_swap.sql", "garbage");
	fresh_db("zt_mig_once");

	struct zerr err = {0};
	int applied = -1;
	assert_int_equal(migrate("zt_mig_once", dir, &applied, &err), 0);
	assert_int_equal(applied, 3);
	applied = -1;
	assert_int_equal(migrate("zt_mig_once", dir, &applied, &err), 0);
	assert_int_equal(applied, 0);

	PGconn *c = su_connect("zt_mig_once");
	char v[128];
	/* Applied in name order: each row's position is its number. */
	query_value(c, "SELECT string_agg(name, '' ORDER BY ctid) FROM steps", 0, NULL, v, sizeof(v));
	assert_string_equal(v, "abc");
	query_value(c, "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations", 0, NULL, v,
	            sizeof(v));
	assert_string_equal(v, "001_a,002_b,010_c");
	assert_int_equal(query_long(c, "SELECT count(*) FROM schema_migrations WHERE applied_at <= now()"), 3);

	/* A new file later: only it runs. */
	put_file(dir, "011_d.sql", "INSERT INTO steps VALUES (4, 'd');");
	PQfinish(c);
	applied = -1;
	assert_int_equal(migrate("zt_mig_once", dir, &applied, &err), 0);
	assert_int_equal(applied, 1);
	c = su_connect("zt_mig_once");
	assert_int_equal(query_long(c, "SELECT count(*) FROM steps"), 4);
	PQfinish(c);
}

struct runner {
	const char *dir;
	int rc;
	int applied;
	struct zerr err;
	PGconn *conn;
	atomic_int *go;
};

static void *run_migrations(void *arg)
{
	struct runner *r = arg;
	while (!atomic_load(r->go))
		;
	r->rc = store_migrate(r->conn, r->dir, &r->applied, &r->err);
	return NULL;
}

static void test_concurrent_runners_apply_each_file_once(void **state)
{
	char dir[256];
	make_dir(dir, sizeof(dir), "concurrent");
	put_file(dir, "001_a.sql", "CREATE TABLE hits (file text); INSERT INTO hits VALUES ('001');");
	/* A slow one: the others must wait on the lock, then skip it. */
	put_file(dir, "002_b.sql", "INSERT INTO hits VALUES ('002'); SELECT pg_sleep(0.3);");
	put_file(dir, "003_c.sql", "CREATE TABLE only_once (x int); INSERT INTO hits VALUES ('003');");
	fresh_db("zt_mig_conc");

	enum { N = 4 };
	struct runner rs[N];
	pthread_t th[N];
	atomic_int go = 0;
	for (int i = 0; i < N; i++) {
		rs[i] = (struct runner){.dir = dir, .rc = 1, .applied = -1, .go = &go};
		rs[i].conn = su_connect("zt_mig_conc");
		assert_int_equal(pthread_create(&th[i], NULL, run_migrations, &rs[i]), 0);
	}
	atomic_store(&go, 1);
	int total = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		PQfinish(rs[i].conn);
		if (rs[i].rc != 0)
			fail_msg("runner %d: %s", i, rs[i].err.msg);
		total += rs[i].applied;
	}
	assert_int_equal(total, 3);
	PGconn *c = su_connect("zt_mig_conc");
	char v[128];
	query_value(c, "SELECT string_agg(file, ',' ORDER BY file) FROM hits", 0, NULL, v, sizeof(v));
	assert_string_equal(v, "001,002,003");
	assert_int_equal(query_long(c, "SELECT count(*) FROM schema_migrations"), 3);
	PQfinish(c);
}

static void test_failed_migration_rolls_back_and_stops(void **state)
{
	char dir[256];
	make_dir(dir, sizeof(dir), "failing");
	put_file(dir, "001_ok.sql", "CREATE TABLE first (x int);");
	put_file(dir, "002_bad.sql", "CREATE TABLE half (x int);\nSELEC broken;");
	put_file(dir, "003_after.sql", "CREATE TABLE after (x int);");
	fresh_db("zt_mig_fail");

	struct zerr err = {0};
	int applied = 77;
	assert_int_equal(migrate("zt_mig_fail", dir, &applied, &err), -EINVAL);
	assert_int_equal(applied, 77);
	assert_true(db_err_is(&err, "42601"));
	assert_non_null(strstr(err.msg, "002_bad"));

	PGconn *c = su_connect("zt_mig_fail");
	char v[64];
	query_value(c, "SELECT string_agg(version, ',') FROM schema_migrations", 0, NULL, v, sizeof(v));
	assert_string_equal(v, "001_ok");
	query_value(c, "SELECT to_regclass('half') IS NULL AND to_regclass('after') IS NULL", 0, NULL, v, sizeof(v));
	assert_string_equal(v, "t");
	PQfinish(c);

	put_file(dir, "002_bad.sql", "CREATE TABLE half (x int);");
	assert_int_equal(migrate("zt_mig_fail", dir, &applied, &err), 0);
	assert_int_equal(applied, 2);
}

static void test_migration_may_not_end_the_transaction(void **state)
{
	char dir[256];
	make_dir(dir, sizeof(dir), "txctl");
	put_file(dir, "001_commits.sql", "CREATE TABLE early (x int); COMMIT; CREATE TABLE late (x int);");
	fresh_db("zt_mig_tx");
	struct zerr err = {0};
	int applied = 0;
	assert_int_equal(migrate("zt_mig_tx", dir, &applied, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "001_commits"));
	PGconn *c = su_connect("zt_mig_tx");
	assert_int_equal(query_long(c, "SELECT count(*) FROM schema_migrations"), 0);
	PQfinish(c);
}

static void test_migration_inputs_are_bounded(void **state)
{
	struct zerr err = {0};
	int applied = 0;
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/does-not-exist", fx.migrations);
	assert_int_equal(migrate("zt_mig_tx", dir, &applied, &err), -ENOENT);

	make_dir(dir, sizeof(dir), "nul");
	char p[512];
	snprintf(p, sizeof(p), "%s/001_nul.sql", dir);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fwrite("SELECT 1;\0DROP TABLE x;", 1, 23, f);
	fclose(f);
	assert_int_equal(migrate("zt_mig_tx", dir, &applied, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "NUL"));

	make_dir(dir, sizeof(dir), "huge");
	snprintf(p, sizeof(p), "%s/001_huge.sql", dir);
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, DB_MIGRATION_MAX_BYTES + 1), 0);
	close(fd);
	assert_int_equal(migrate("zt_mig_tx", dir, &applied, &err), -EFBIG);

	make_dir(dir, sizeof(dir), "badname");
	put_file(dir, "001 spaced.sql", "SELECT 1;");
	assert_int_equal(migrate("zt_mig_tx", dir, &applied, &err), -EINVAL);

	PGconn *c = su_connect("zt_mig_tx");
	exec_ok(c, "BEGIN");
	snprintf(dir, sizeof(dir), "%s/once", fx.migrations);
	assert_int_equal(store_migrate(c, dir, &applied, &err), -EBUSY);
	PQfinish(c);
}

/* ---- the control-plane schema -------------------------------------------- */

static int count_sql_files(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		n += de->d_name[0] != '.' && len > 4 && strcmp(de->d_name + len - 4, ".sql") == 0;
	}
	closedir(d);
	return n;
}

static void expect_fail(PGconn *c, const char *sql, int n, const char *const *params, const char *sqlstate)
{
	struct zerr err = {0};
	int r = db_exec_params(c, sql, n, params, NULL, &err);
	if (r >= 0)
		fail_msg("expected %s, succeeded: %s", sqlstate, sql);
	if (!db_err_is(&err, sqlstate))
		fail_msg("expected %s, got %s: %s", sqlstate, err.msg, sql);
}

static void insert_id(PGconn *c, const char *sql, int n, const char *const *params, char id[64])
{
	query_value(c, sql, n, params, id, 64);
}

static void test_control_plane_schema(void **state)
{
	fresh_db("zt_cp");
	struct zerr err = {0};
	int applied = -1;
	int r = migrate("zt_cp", ZMESH_SQL_DIR, &applied, &err);
	if (r < 0)
		fail_msg("migrate sql/: %s", err.msg);
	assert_true(applied >= 1);
	assert_int_equal(applied, count_sql_files(ZMESH_SQL_DIR));
	assert_int_equal(migrate("zt_cp", ZMESH_SQL_DIR, &applied, &err), 0);
	assert_int_equal(applied, 0);

	PGconn *c = su_connect("zt_cp");
	/* The files also re-run cleanly by hand. */
	{
		char path[512];
		snprintf(path, sizeof(path), "%s/001_control_plane.sql", ZMESH_SQL_DIR);
		char *sql = malloc(1 << 20);
		assert_non_null(sql);
		int n = util_read_file(path, sql, 1 << 20);
		assert_true(n > 0);
		PGresult *res = PQexec(c, sql);
		free(sql);
		assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
		PQclear(res);
	}

	/* Users: lower-case emails, unique. */
	char uid[64], uid2[64], pid[64], pid2[64], fid[64];
	const char *u1[] = {"ada@example.com"};
	insert_id(c, "INSERT INTO users (email, password_hash) VALUES ($1, 'h') RETURNING id", 1, u1, uid);
	expect_fail(c, "INSERT INTO users (email, password_hash) VALUES ($1, 'h')", 1, u1, "23505");
	const char *upper[] = {"Ada@Example.com"};
	expect_fail(c, "INSERT INTO users (email, password_hash) VALUES ($1, 'h')", 1, upper, "23514");
	const char *noat[] = {"nobody"};
	expect_fail(c, "INSERT INTO users (email, password_hash) VALUES ($1, 'h')", 1, noat, "23514");
	const char *u2[] = {"bob@example.com"};
	insert_id(c, "INSERT INTO users (email, password_hash) VALUES ($1, 'h') RETURNING id", 1, u2, uid2);

	/* Projects: identifiers that end up in CREATE DATABASE are plain. */
	const char *p1[] = {"p-one", "zp_one", "zr_one"};
	const char *ins_project = "INSERT INTO projects (name, slug, db_name, db_role, db_password) "
	                          "VALUES ('P', $1, $2, $3, 'a-password-of-24-chars!') RETURNING id";
	insert_id(c, ins_project, 3, p1, pid);
	char v[128];
	query_value(c, "SELECT tier || ':' || coalesce(monthly_cap::text, 'tier') FROM projects", 0, NULL, v,
	            sizeof(v));
	assert_string_equal(v, "free:tier");
	const char *p_evil[] = {"p-evil", "x; DROP DATABASE zt_cp", "zr_evil"};
	expect_fail(c, ins_project, 3, p_evil, "23514");
	const char *p_pgrole[] = {"p-role", "zp_role", "pg_monitor"};
	expect_fail(c, ins_project, 3, p_pgrole, "23514");
	const char *p_superuser[] = {"p-su", "zp_su", "postgres"};
	expect_fail(c, ins_project, 3, p_superuser, "23514");
	const char *p_dupdb[] = {"p-two", "zp_one", "zr_two"};
	expect_fail(c, ins_project, 3, p_dupdb, "23505");
	const char *p2[] = {"p-two", "zp_two", "zr_two"};
	insert_id(c, ins_project, 3, p2, pid2);

	const char *mem[] = {pid, uid, "owner"};
	assert_int_equal(db_exec_params(c, "INSERT INTO project_members VALUES ($1, $2, $3)", 3, mem, NULL, &err), 0);
	const char *mem_bad[] = {pid, uid2, "admin"};
	expect_fail(c, "INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, $3)", 3, mem_bad,
	            "23514");

	/* API keys: only a SHA-256 hex digest is stored. */
	const char *key_ok[] = {pid, "zmk_abcdefgh",
	                        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"};
	const char *ins_key = "INSERT INTO api_keys (project_id, name, prefix, key_hash) VALUES ($1, 'ci', $2, $3)";
	assert_int_equal(db_exec_params(c, ins_key, 3, key_ok, NULL, &err), 0);
	expect_fail(c, ins_key, 3, key_ok, "23505");
	const char *key_plain[] = {pid, "zmk_abcdefgh", "zmk_the_key_itself"};
	expect_fail(c, ins_key, 3, key_plain, "23514");

	/* Functions: slugs unique per project, never uuid-shaped; env is an
	 * object of strings. */
	const char *ins_fn = "INSERT INTO functions (project_id, name, slug, language, code, env) "
	                     "VALUES ($1, 'f', $2, $3, 'code', $4::jsonb) RETURNING id";
	const char *f1[] = {pid, "hello", "javascript", "{\"A\": \"1\"}"};
	insert_id(c, ins_fn, 4, f1, fid);
	query_value(c, "SELECT version || ':' || timeout_ms || ':' || memory_mb || ':' || status FROM functions", 0,
	            NULL, v, sizeof(v));
	assert_string_equal(v, "1:10000:256:active");
	const char *f_dup[] = {pid, "hello", "python", "{}"};
	expect_fail(c, ins_fn, 4, f_dup, "23505");
	const char *f_other[] = {pid2, "hello", "python", "{}"};
	char fid2[64];
	insert_id(c, ins_fn, 4, f_other, fid2);
	const char *f_uuid[] = {pid, "0b6f3f3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "python", "{}"};
	expect_fail(c, ins_fn, 4, f_uuid, "23514");
	const char *f_slug[] = {pid, "Hello World", "python", "{}"};
	expect_fail(c, ins_fn, 4, f_slug, "23514");
	const char *f_lang[] = {pid, "ruby-fn", "ruby", "{}"};
	expect_fail(c, ins_fn, 4, f_lang, "23514");
	const char *f_env_num[] = {pid, "env-num", "python", "{\"A\": 1}"};
	expect_fail(c, ins_fn, 4, f_env_num, "23514");
	const char *f_env_arr[] = {pid, "env-arr", "python", "[\"A\"]"};
	expect_fail(c, ins_fn, 4, f_env_arr, "23514");

	/* updated_at follows changes without the writer's help. */
	const char *touch[] = {fid};
	query_value(c,
	            "WITH old AS (UPDATE functions SET updated_at = now() - interval '1 day' WHERE id = $1 "
	            "RETURNING updated_at) SELECT updated_at > now() - interval '1 minute' FROM old",
	            1, touch, v, sizeof(v));
	assert_string_equal(v, "t");

	/* Versions and invocations hang off the function. */
	const char *ver[] = {fid};
	assert_int_equal(db_exec_params(c,
	                                "INSERT INTO function_versions (function_id, version, code, entry_point, env, "
	                                "timeout_ms, memory_mb, language) SELECT id, 1, code, entry_point, env, "
	                                "timeout_ms, memory_mb, language FROM functions WHERE id = $1",
	                                1, ver, NULL, &err),
	                 0);
	const char *ins_inv =
	    "INSERT INTO invocations (function_id, project_id, version, trigger, start, status, error) "
	    "VALUES ($1, $2, 1, 'http', $3, $4, $5::jsonb)";
	const char *inv_ok[] = {fid, pid, "cold", "success", NULL};
	assert_int_equal(db_exec_params(c, ins_inv, 5, inv_ok, NULL, &err), 0);
	const char *inv_rej[] = {fid, pid, NULL, "rejected", "{\"code\": \"RATE_LIMITED\"}"};
	assert_int_equal(db_exec_params(c, ins_inv, 5, inv_rej, NULL, &err), 0);
	const char *inv_bad[] = {fid, pid, "cold", "exploded", NULL};
	expect_fail(c, ins_inv, 5, inv_bad, "23514");
	const char *inv_fk[] = {"00000000-0000-0000-0000-000000000000", pid, "warm", "success", NULL};
	expect_fail(c, ins_inv, 5, inv_fk, "23503");

	/* Deleting a project takes everything of it, and only of it. */
	const char *del[] = {pid};
	assert_int_equal(db_exec_params(c, "DELETE FROM projects WHERE id = $1", 1, del, NULL, &err), 0);
	query_value(c,
	            "SELECT concat((SELECT count(*) FROM functions), (SELECT count(*) FROM function_versions), "
	            "(SELECT count(*) FROM invocations), (SELECT count(*) FROM api_keys), "
	            "(SELECT count(*) FROM project_members), (SELECT count(*) FROM users))",
	            0, NULL, v, sizeof(v));
	assert_string_equal(v, "100002");
	PQfinish(c);
}

struct taker {
	const char *project;
	int calls;
	int granted;
	int failures;
};

static void *take_invocations(void *arg)
{
	struct taker *t = arg;
	char ci[512];
	if (pge_conninfo(fx.pge, "zt_cp", ci, sizeof(ci)) < 0)
		return NULL;
	PGconn *c = NULL;
	if (db_connect(ci, &c, NULL) < 0) {
		t->failures = t->calls;
		return NULL;
	}
	const char *params[] = {t->project, "25"};
	for (int i = 0; i < t->calls; i++) {
		PGresult *res = NULL;
		if (db_exec_params(c, "SELECT zmesh_take_invocation($1::uuid, $2::bigint)", 2, params, &res, NULL) <
		    0) {
			t->failures++;
			continue;
		}
		t->granted += !PQgetisnull(res, 0, 0);
		PQclear(res);
	}
	PQfinish(c);
	return NULL;
}

/* The monthly cap holds under concurrent callers (as from several nodes). */
static void test_monthly_cap_is_atomic(void **state)
{
	PGconn *c = su_connect("zt_cp");
	char pid[64];
	const char *p[] = {"p-cap", "zp_cap", "zr_cap"};
	insert_id(c,
	          "INSERT INTO projects (name, slug, db_name, db_role, db_password) "
	          "VALUES ('cap', $1, $2, $3, 'a-password-of-24-chars!') RETURNING id",
	          3, p, pid);
	enum { N = 4 };
	struct taker ts[N];
	pthread_t th[N];
	for (int i = 0; i < N; i++) {
		ts[i] = (struct taker){.project = pid, .calls = 15};
		assert_int_equal(pthread_create(&th[i], NULL, take_invocations, &ts[i]), 0);
	}
	int granted = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(ts[i].failures, 0);
		granted += ts[i].granted;
	}
	assert_int_equal(granted, 25);
	const char *q[] = {pid};
	char v[64];
	query_value(c, "SELECT invocations FROM usage_counters WHERE project_id = $1", 1, q, v, sizeof(v));
	assert_string_equal(v, "25");
	query_value(c, "SELECT extract(day FROM month) FROM usage_counters WHERE project_id = $1", 1, q, v, sizeof(v));
	assert_string_equal(v, "1");
	/* A cap of zero grants nothing, and counts nothing. */
	const char *zero[] = {pid};
	query_value(c, "SELECT zmesh_take_invocation($1::uuid, 0) IS NULL", 1, zero, v, sizeof(v));
	assert_string_equal(v, "t");
	query_value(c, "SELECT invocations FROM usage_counters WHERE project_id = $1", 1, q, v, sizeof(v));
	assert_string_equal(v, "25");
	/* No cap: counted, never refused. */
	query_value(c, "SELECT zmesh_take_invocation($1::uuid, NULL)", 1, zero, v, sizeof(v));
	assert_string_equal(v, "26");
	PQfinish(c);
}

/* ---- the monthly counts in memory (usage.h) ------------------------------ */

static struct db_pool *open_pool(const char *db, int size)
{
	char ci[512];
	conninfo(db, ci, sizeof(ci));
	struct zerr err = {0};
	struct db_pool *pool = NULL;
	int r = db_pool_open(ci, size, &pool, &err);
	if (r < 0)
		fail_msg("pool: %s", err.msg);
	return pool;
}

static void usage_project(PGconn *c, const char *slug, char pid[64])
{
	char db[64], role[64];
	snprintf(db, sizeof(db), "zp_%s", slug);
	snprintf(role, sizeof(role), "zr_%s", slug);
	const char *p[] = {slug, db, role};
	insert_id(c,
	          "INSERT INTO projects (name, slug, db_name, db_role, db_password) "
	          "VALUES ($1, replace($1, '_', '-'), $2, $3, 'a-password-of-24-chars!') RETURNING id",
	          3, p, pid);
}

static long long usage_count(PGconn *c, const char *pid)
{
	const char *q[] = {pid};
	char v[64];
	query_value(c, "SELECT coalesce(sum(invocations), 0) FROM usage_counters WHERE project_id = $1", 1, q, v,
	            sizeof(v));
	return atoll(v);
}

/* Written only when flushed or stopped, unless flush_ms is given. */
static struct usage *usage_open(struct db_pool *pool, unsigned flush_ms)
{
	struct usage *u = NULL;
	struct zerr err = {0};
	if (usage_start(pool, flush_ms ? flush_ms : 600000, &u, &err) < 0)
		fail_msg("usage: %s", err.msg);
	return u;
}

/* Far from the cap, invocations are counted in memory and every one of them
 * is written: by the periodic write, and by the stop. */
static void test_usage_counts_in_memory_and_writes_all(void **state)
{
	(void)state;
	PGconn *c = su_connect("zt_cp");
	char pid[64];
	usage_project(c, "usage_mem", pid);
	struct db_pool *pool = open_pool("zt_cp", 2);
	struct usage *u = usage_open(pool, 0);
	struct zerr err = {0};
	for (int i = 0; i < 300; i++) {
		bool ok = false;
		assert_int_equal(usage_take(u, pid, 1000000, &ok, &err), 0);
		assert_true(ok);
	}
	struct usage_stats st;
	usage_stats(u, &st);
	/* The first one reads the count; the rest need no statement of their
	 * own (a slow machine may see the count go stale once or twice). */
	assert_true(st.in_database >= 1 && st.in_database <= 5);
	assert_int_equal(st.in_memory + st.in_database, 300);
	usage_flush(u, 5000);
	assert_int_equal(usage_count(c, pid), 300);
	for (int i = 0; i < 50; i++) {
		bool ok = false;
		assert_int_equal(usage_take(u, pid, 1000000, &ok, &err), 0);
	}
	usage_stop(u);
	assert_int_equal(usage_count(c, pid), 350);
	db_pool_close(pool);
	PQfinish(c);
}

struct usage_taker {
	struct usage *u;
	const char *pid;
	int calls, granted, failures;
};

static void *usage_taker(void *arg)
{
	struct usage_taker *t = arg;
	for (int i = 0; i < t->calls; i++) {
		bool ok = false;
		struct zerr err = {0};
		if (usage_take(t->u, t->pid, 1012, &ok, &err) < 0)
			t->failures++;
		else
			t->granted += ok;
	}
	return NULL;
}

/* Two nodes, each with two threads, and more invocations than the cap: the
 * cap holds exactly, though both counted in memory while they could. */
static void test_usage_cap_is_exact_across_nodes(void **state)
{
	(void)state;
	PGconn *c = su_connect("zt_cp");
	char pid[64];
	usage_project(c, "usage_cap", pid);
	struct db_pool *pool_a = open_pool("zt_cp", 2), *pool_b = open_pool("zt_cp", 2);
	struct usage *node[2] = {usage_open(pool_a, 100), usage_open(pool_b, 100)};
	enum { T = 4 };
	struct usage_taker ts[T];
	pthread_t th[T];
	for (int i = 0; i < T; i++) {
		ts[i] = (struct usage_taker){.u = node[i % 2], .pid = pid, .calls = 400};
		assert_int_equal(pthread_create(&th[i], NULL, usage_taker, &ts[i]), 0);
	}
	int granted = 0;
	for (int i = 0; i < T; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(ts[i].failures, 0);
		granted += ts[i].granted;
	}
	assert_int_equal(granted, 1012);
	uint64_t in_memory = 0;
	for (int i = 0; i < 2; i++) {
		struct usage_stats st;
		usage_stats(node[i], &st);
		in_memory += st.in_memory;
		usage_stop(node[i]);
	}
	/* Some were counted in memory (a cap 1012 away leaves 11 below the
	 * margin) ... */
	assert_true(in_memory >= 1);
	/* ... and the count is the cap, exactly. */
	assert_int_equal(usage_count(c, pid), 1012);
	db_pool_close(pool_a);
	db_pool_close(pool_b);
	PQfinish(c);
}

/* A count in memory whose project is deleted before it is written is
 * dropped, and said so; the other projects' counts are written. */
static void test_usage_deleted_project_is_dropped(void **state)
{
	(void)state;
	PGconn *c = su_connect("zt_cp");
	char gone[64], kept[64];
	usage_project(c, "usage_gone", gone);
	usage_project(c, "usage_kept", kept);
	struct db_pool *pool = open_pool("zt_cp", 2);
	struct usage *u = usage_open(pool, 0);
	struct zerr err = {0};
	for (int i = 0; i < 10; i++) {
		bool ok = false;
		assert_int_equal(usage_take(u, gone, 1000000, &ok, &err), 0);
		assert_int_equal(usage_take(u, kept, 1000000, &ok, &err), 0);
	}
	const char *p[] = {gone};
	PGresult *res = NULL;
	assert_int_equal(db_exec_params(c, "DELETE FROM projects WHERE id = $1", 1, p, &res, NULL), 0);
	PQclear(res);
	usage_flush(u, 5000);
	struct usage_stats st;
	usage_stats(u, &st);
	/* The first was counted by its own statement, the other nine in memory. */
	assert_int_equal(st.lost, 9);
	usage_stop(u);
	assert_int_equal(usage_count(c, kept), 10);
	assert_int_equal(usage_count(c, gone), 0);
	db_pool_close(pool);
	PQfinish(c);
}

/* ---- the pool ------------------------------------------------------------ */

enum { POOL_SIZE = 3, WORKERS = 6, ROUNDS = 40 };

struct worker {
	struct db_pool *pool;
	pthread_mutex_t *lock;
	PGconn **in_use; /* POOL_SIZE slots, under lock */
	atomic_int *holders;
	atomic_int *max_holders;
	int ok;
	int shared; /* a connection handed to two threads at once */
	int timeouts;
};

static void *pool_worker(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < ROUNDS; i++) {
		PGconn *c = db_acquire(w->pool);
		if (!c) {
			w->timeouts++;
			continue;
		}
		int h = atomic_fetch_add(w->holders, 1) + 1;
		int m = atomic_load(w->max_holders);
		while (h > m && !atomic_compare_exchange_weak(w->max_holders, &m, h))
			;
		pthread_mutex_lock(w->lock);
		int slot = -1;
		for (int k = 0; k < POOL_SIZE; k++) {
			if (w->in_use[k] == c)
				w->shared++;
			if (!w->in_use[k] && slot < 0)
				slot = k;
		}
		if (slot >= 0)
			w->in_use[slot] = c;
		pthread_mutex_unlock(w->lock);

		char n[16];
		snprintf(n, sizeof(n), "%d", i);
		const char *p[] = {n};
		PGresult *res = NULL;
		if (db_exec_params(c, "SELECT $1::int + 1, pg_sleep(0.001)", 1, p, &res, NULL) == 0) {
			w->ok += atoi(PQgetvalue(res, 0, 0)) == i + 1;
			PQclear(res);
		}
		pthread_mutex_lock(w->lock);
		if (slot >= 0)
			w->in_use[slot] = NULL;
		pthread_mutex_unlock(w->lock);
		atomic_fetch_sub(w->holders, 1);
		db_release(w->pool, c);
	}
	return NULL;
}

static void test_pool_serves_many_threads(void **state)
{
	fresh_db("zt_pool");
	struct db_pool *pool = open_pool("zt_pool", POOL_SIZE);
	db_pool_set_timeout(pool, 30000);
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	PGconn *in_use[POOL_SIZE] = {0};
	atomic_int holders = 0, max_holders = 0;
	struct worker ws[WORKERS];
	pthread_t th[WORKERS];
	for (int i = 0; i < WORKERS; i++) {
		ws[i] = (struct worker){
		    .pool = pool, .lock = &lock, .in_use = in_use, .holders = &holders, .max_holders = &max_holders};
		assert_int_equal(pthread_create(&th[i], NULL, pool_worker, &ws[i]), 0);
	}
	for (int i = 0; i < WORKERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(ws[i].timeouts, 0);
		assert_int_equal(ws[i].shared, 0);
		assert_int_equal(ws[i].ok, ROUNDS);
	}
	assert_true(atomic_load(&max_holders) <= POOL_SIZE);
	assert_true(atomic_load(&max_holders) >= 2);
	db_pool_close(pool);
}

static void test_pool_acquire_is_bounded(void **state)
{
	struct db_pool *pool = open_pool("zt_pool", 1);
	db_pool_set_timeout(pool, 200);
	PGconn *c = db_acquire(pool);
	assert_non_null(c);
	uint64_t t0 = ms_now();
	assert_null(db_acquire(pool));
	uint64_t waited = ms_now() - t0;
	assert_true(waited >= 190);
	assert_true(waited < 3000);
	db_release(pool, c);
	db_release(pool, c); /* a second release is ignored */
	PGconn *again = db_acquire(pool);
	assert_ptr_equal(again, c);
	assert_null(db_acquire(pool)); /* still only one connection */
	db_release(pool, again);
	db_release(pool, NULL);
	db_pool_close(pool);
	db_pool_close(NULL);

	struct zerr err = {0};
	struct db_pool *p = NULL;
	assert_int_equal(db_pool_open("dbname=zt_pool", 0, &p, &err), -EINVAL);
	assert_int_equal(db_pool_open("dbname=zt_pool", DB_POOL_MAX + 1, &p, &err), -EINVAL);
	char ci[512];
	conninfo("no_such_database", ci, sizeof(ci));
	assert_int_equal(db_pool_open(ci, 2, &p, &err), -ECONNREFUSED);
	assert_null(p);
}

static void test_pool_rolls_back_abandoned_transactions(void **state)
{
	PGconn *su = su_connect("zt_pool");
	exec_ok(su, "CREATE TABLE pool_t (x int)");
	PQfinish(su);
	struct db_pool *pool = open_pool("zt_pool", 1);
	PGconn *c = db_acquire(pool);
	exec_ok(c, "BEGIN");
	exec_ok(c, "INSERT INTO pool_t VALUES (1)");
	db_release(pool, c);
	c = db_acquire(pool);
	assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
	assert_int_equal(query_long(c, "SELECT count(*) FROM pool_t"), 0);

	/* A failed transaction too. */
	exec_ok(c, "BEGIN");
	struct zerr err = {0};
	assert_true(db_exec_params(c, "SELECT 1/0", 0, NULL, NULL, &err) < 0);
	assert_int_equal(PQtransactionStatus(c), PQTRANS_INERROR);
	db_release(pool, c);
	c = db_acquire(pool);
	assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
	assert_int_equal(query_long(c, "SELECT 41 + 1"), 42);

	/* A query left in flight (results never read). */
	assert_int_equal(PQsendQuery(c, "SELECT pg_sleep(0.05)"), 1);
	db_release(pool, c);
	c = db_acquire(pool);
	assert_non_null(c);
	assert_int_equal(query_long(c, "SELECT 7"), 7);
	db_release(pool, c);
	db_pool_close(pool);
}

static void terminate(int pid)
{
	PGconn *su = su_connect("zt_pool");
	char n[16];
	snprintf(n, sizeof(n), "%d", pid);
	const char *p[] = {n};
	char v[16];
	query_value(su, "SELECT pg_terminate_backend($1::int)", 1, p, v, sizeof(v));
	assert_string_equal(v, "t");
	/* Until the backend is really gone. */
	for (int i = 0; i < 200; i++) {
		query_value(su, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int", 1, p, v, sizeof(v));
		if (strcmp(v, "0") == 0)
			break;
		sleep_ms(10);
	}
	assert_string_equal(v, "0");
	PQfinish(su);
}

static void test_pool_recovers_broken_connections(void **state)
{
	struct db_pool *pool = open_pool("zt_pool", 1);

	/* Killed while idle in the pool: noticed at acquire, re-opened. */
	PGconn *c = db_acquire(pool);
	int pid1 = PQbackendPID(c);
	db_release(pool, c);
	terminate(pid1);
	c = db_acquire(pool);
	assert_non_null(c);
	assert_int_equal(query_long(c, "SELECT 1"), 1);
	int pid2 = PQbackendPID(c);
	assert_true(pid2 != pid1);

	/* Killed while held: the caller's query fails, release re-opens. */
	terminate(pid2);
	struct zerr err = {0};
	assert_int_equal(db_exec_params(c, "SELECT 1", 0, NULL, NULL, &err), -ECONNRESET);
	assert_int_equal(PQstatus(c), CONNECTION_BAD);
	db_release(pool, c);
	c = db_acquire(pool);
	assert_non_null(c);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	assert_int_equal(query_long(c, "SELECT 2"), 2);
	assert_true(PQbackendPID(c) != pid2);
	db_release(pool, c);
	db_pool_close(pool);
}

int main(void)
{
	if (geteuid() != 0 || !getpwnam("postgres") || access(PGE_BINDIR "/postgres", X_OK) < 0) {
		fprintf(stderr, "test_db SKIPPED: needs root, the postgres user and %s (it starts PostgreSQL)\n",
		        PGE_BINDIR);
		return 77;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pge_rejects_bad_state_dirs),
	    cmocka_unit_test(test_pge_first_start_initialises),
	    cmocka_unit_test(test_pge_auth_from_an_unprivileged_uid),
	    cmocka_unit_test(test_pge_refuses_a_second_owner),
	    cmocka_unit_test(test_pge_conninfo_quotes_and_bounds),
	    cmocka_unit_test(test_pge_stop_leaves_nothing_and_restart_reuses),
	    cmocka_unit_test(test_pge_takes_over_an_orphaned_cluster),
	    cmocka_unit_test(test_pge_reports_a_crash_and_recovers),
	    cmocka_unit_test(test_pge_failed_start_reports_the_log),
	    cmocka_unit_test(test_exec_params_reports_sqlstate),
	    cmocka_unit_test(test_connect_failure_is_clear),
	    cmocka_unit_test(test_migrations_apply_once_in_order),
	    cmocka_unit_test(test_concurrent_runners_apply_each_file_once),
	    cmocka_unit_test(test_failed_migration_rolls_back_and_stops),
	    cmocka_unit_test(test_migration_may_not_end_the_transaction),
	    cmocka_unit_test(test_migration_inputs_are_bounded),
	    cmocka_unit_test(test_control_plane_schema),
	    cmocka_unit_test(test_monthly_cap_is_atomic),
	    cmocka_unit_test(test_usage_counts_in_memory_and_writes_all),
	    cmocka_unit_test(test_usage_cap_is_exact_across_nodes),
	    cmocka_unit_test(test_usage_deleted_project_is_dropped),
	    cmocka_unit_test(test_pool_serves_many_threads),
	    cmocka_unit_test(test_pool_acquire_is_bounded),
	    cmocka_unit_test(test_pool_rolls_back_abandoned_transactions),
	    cmocka_unit_test(test_pool_recovers_broken_connections),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
