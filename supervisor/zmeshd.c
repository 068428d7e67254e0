/* zmeshd - the zmesh functions daemon.
 *
 * Start-up order matters: the spawner (the one process that clones
 * sandboxes) is forked first, while this process has a single thread; then
 * the database (embedded cluster or DATABASE_URL), migrations, secrets, the
 * first admin; the HTTP threads last. SIGTERM or SIGINT: stop accepting, let
 * in-flight invocations finish within the grace period, stop the cluster. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "auth.h"
#include "log.h"
#include "pgembed.h"
#include "store.h"

static int fatal(const char *what, const struct zerr *err)
{
	zlog(ZLOG_ERROR, "startup_failed", "step", what, "error", err->msg, NULL);
	return 1;
}

/* JWT_SECRET_KEY, or a generated key kept (0600) in the state directory so
 * that tokens survive a restart. */
static int load_jwt_key(struct app *app, struct zerr *err)
{
	const char *k = app->cfg.jwt_secret;
	if (k[0]) {
		if (strlen(k) < 32)
			return zerr_set(err, -EINVAL, "JWT_SECRET_KEY must be at least 32 bytes");
		app->jwt_key_len = strlen(k) < sizeof(app->jwt_key) ? strlen(k) : sizeof(app->jwt_key);
		memcpy(app->jwt_key, k, app->jwt_key_len);
		return 0;
	}
	char path[600];
	snprintf(path, sizeof(path), "%s/jwt.key", app->cfg.state_dir);
	char buf[130];
	int n = util_read_file(path, buf, sizeof(buf));
	if (n == -ENOENT) {
		_cleanup_free_ char *hex = NULL;
		int r = auth_random_hex(32, &hex, err);
		if (r < 0)
			return r;
		/* Written aside and renamed: a crash never leaves a short key. */
		char tmp[620];
		snprintf(tmp, sizeof(tmp), "%s.tmp", path);
		unlink(tmp);
		_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0 || write(fd, hex, 64) != 64 || fsync(fd) < 0 || rename(tmp, path) < 0) {
			int e = errno ? errno : EIO;
			unlink(tmp);
			return zerr_set(err, -e, "write %s: %s", path, strerror(e));
		}
		memcpy(buf, hex, 64);
		n = 64;
	}
	if (n < 64)
		return zerr_set(err, n < 0 ? n : -EINVAL, "read %s: %s", path, n < 0 ? strerror(-n) : "too short");
	memcpy(app->jwt_key, buf, 64);
	app->jwt_key_len = 64;
	return 0;
}

static int bootstrap_admin(struct app *app, PGconn *c, struct zerr *err)
{
	uint64_t users = 0;
	int r = store_count_users(c, &users, err);
	if (r < 0 || users > 0)
		return r;
	_cleanup_free_ char *generated = NULL;
	const char *password = app->cfg.admin_password;
	if (!password[0]) {
		r = auth_random_hex(12, &generated, err);
		if (r < 0)
			return r;
		password = generated;
	}
	_cleanup_free_ char *hash = NULL;
	r = auth_password_hash(password, &hash, err);
	if (r < 0)
		return r;
	r = store_user_create(c, app->cfg.admin_email, hash, true, NULL, err);
	if (r < 0)
		return r;
	zlog(ZLOG_INFO, "admin_created", "email", app->cfg.admin_email, NULL);
	if (generated)
		/* Shown once, on the terminal of whoever started the first run. */
		fprintf(stdout, "zmeshd: created the first admin: %s with password %s (it is not shown again)\n",
		        app->cfg.admin_email, generated);
	fflush(stdout);
	return 0;
}

static void http_log(void *app, const char *line)
{
	(void)app;
	/* One write per line, newline included, so lines never interleave. */
	size_t n = strlen(line);
	char buf[8192];
	if (n + 1 < sizeof(buf)) {
		memcpy(buf, line, n);
		buf[n++] = '\n';
		ssize_t w = write(STDERR_FILENO, buf, n);
		(void)w;
	}
}

int main(int argc, char **argv)
{
	static struct app app;
	struct zerr err = {0};
	int r = zconfig_load(&app.cfg, argc, argv, &err);
	if (r == 1) {
		char help[8192];
		zconfig_usage(help, sizeof(help));
		fputs(help, stdout);
		return 0;
	}
	if (r < 0) {
		fprintf(stderr, "zmeshd: %s\n", err.msg);
		return 2;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "zmeshd: must run as root (it creates sandboxes)\n");
		return 2;
	}
	if (mkdir(app.cfg.state_dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "zmeshd: mkdir %s: %s\n", app.cfg.state_dir, strerror(errno));
		return 2;
	}
	char *abs = realpath(app.cfg.state_dir, NULL);
	if (abs) {
		snprintf(app.cfg.state_dir, sizeof(app.cfg.state_dir), "%s", abs);
		free(abs);
	}

	/* Every thread inherits this mask; main() alone takes the signals. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	static struct sbx_ctx sbx;
	static struct sbx_spawner spawner;
	if (sbx_ctx_init(&sbx, NULL, &err) < 0)
		return fatal("sandbox", &err);
	if (sbx_spawner_start(&sbx, &spawner, &err) < 0)
		return fatal("spawner", &err);

	/* The embedded cluster has 200 connections: the pool (concurrency + 8)
	 * and one per running function that uses its database must fit. */
	if (!app.cfg.database_url[0] && app.cfg.concurrency > 90) {
		fprintf(stderr, "zmeshd: with the embedded database, --concurrency is at most 90 (use DATABASE_URL)\n");
		return 2;
	}

	struct pge *pge = NULL;
	char conninfo[1200];
	if (app.cfg.database_url[0]) {
		snprintf(conninfo, sizeof(conninfo), "%s", app.cfg.database_url);
		snprintf(app.pg_socket_dir, sizeof(app.pg_socket_dir), "%s", app.cfg.pg_socket_dir);
	} else {
		if (pge_start(app.cfg.state_dir, &pge, &err) < 0)
			return fatal("embedded postgresql", &err);
		char admin[1200];
		pge_conninfo(pge, "postgres", admin, sizeof(admin));
		if (store_ensure_database(admin, "zmesh", &err) < 0)
			return fatal("control-plane database", &err);
		pge_conninfo(pge, "zmesh", conninfo, sizeof(conninfo));
		snprintf(app.pg_socket_dir, sizeof(app.pg_socket_dir), "%s", pge_socket_dir(pge));
		zlog(ZLOG_INFO, "embedded_postgresql", "socket_dir", app.pg_socket_dir, NULL);
	}

	PGconn *c = NULL;
	int applied = 0;
	if (db_connect(conninfo, &c, &err) < 0 || store_migrate(c, app.cfg.sql_dir, &applied, &err) < 0 ||
	    store_lock_down(c, &err) < 0 || load_jwt_key(&app, &err) < 0 || bootstrap_admin(&app, c, &err) < 0) {
		if (c)
			PQfinish(c);
		if (pge)
			pge_stop(pge);
		return fatal("control plane", &err);
	}
	PQfinish(c);
	char napplied[16];
	snprintf(napplied, sizeof(napplied), "%d", applied);
	zlog(ZLOG_INFO, "migrations", "applied", napplied, NULL);

	char tiers_path[600];
	snprintf(tiers_path, sizeof(tiers_path), "%s/tiers.json", app.cfg.policy_dir);
	if (tiers_load(tiers_path, &app.tiers, &err) < 0 ||
	    exec_ctx_init(&app.exec, &sbx, &spawner, app.cfg.policy_dir, app.cfg.sdk_dir, app.pg_socket_dir, &err) <
	        0 ||
	    db_pool_open(conninfo, (int)(app.cfg.concurrency + 8 < 200 ? app.cfg.concurrency + 8 : 200), &app.pool,
	                 &err) < 0) {
		if (pge)
			pge_stop(pge);
		return fatal("setup", &err);
	}
	app.exec.max_log_bytes = app.cfg.max_log_bytes;
	app.exec.max_result_bytes = app.cfg.max_result_bytes;
	/* Pooled sandboxes wait under the largest limits any tier allows; an
	 * invocation narrows them to its function's. */
	uint64_t pool_mem = 0, pool_timeout = 0;
	for (int i = 0; i < app.tiers.n; i++) {
		pool_mem = app.tiers.t[i].max_memory_mb > pool_mem ? app.tiers.t[i].max_memory_mb : pool_mem;
		pool_timeout =
		    app.tiers.t[i].max_timeout_ms > pool_timeout ? app.tiers.t[i].max_timeout_ms : pool_timeout;
	}
	if (exec_pool_start(&app.exec, (unsigned)app.cfg.pool_size, pool_mem, pool_timeout, &err) < 0) {
		if (pge)
			pge_stop(pge);
		return fatal("warm pool", &err);
	}
	if (records_start(app.pool, &app.records, &err) < 0) {
		if (pge)
			pge_stop(pge);
		return fatal("record writer", &err);
	}
	limiter_init(&app.limiter, app.cfg.concurrency);
	limiter_init(&app.login_limiter, 4);

	struct http_config hc = {
	    .listen = app.cfg.listen,
	    .max_connections = (unsigned)app.cfg.max_connections,
	    .max_per_ip = (unsigned)app.cfg.max_per_ip,
	    .max_body = app.cfg.max_body_bytes,
	    .grace_ms =
	        app.cfg.shutdown_grace_ms ? (unsigned)app.cfg.shutdown_grace_ms : 1, /* 0 means "default" there */
	    .log = http_log,
	};
	struct http_server *srv = NULL;
	if (http_server_start(&hc, app_routes, app_n_routes, &app, &srv, &err) < 0) {
		if (pge)
			pge_stop(pge);
		return fatal("http", &err);
	}
	char port[16];
	snprintf(port, sizeof(port), "%d", http_server_port(srv));
	zlog(ZLOG_INFO, "listening", "address", app.cfg.listen, "port", port, NULL);
	printf("zmeshd: listening on %s (port %s). Log in: curl -s -XPOST http://127.0.0.1:%s/auth/login "
	       "-d '{\"email\":\"%s\",\"password\":\"...\"}'\n",
	       app.cfg.listen, port, port, app.cfg.admin_email);
	fflush(stdout);

	/* Wait for a stop signal; meanwhile supervise the embedded cluster: a
	 * postmaster that died is started again (the pool reconnects). */
	int sig = 0;
	for (;;) {
		struct timespec tick = {1, 0};
		siginfo_t si;
		sig = sigtimedwait(&stop, &si, &tick);
		if (sig > 0)
			break;
		if (!pge || pge_check(pge, &err) != -ESRCH)
			continue;
		zlog(ZLOG_ERROR, "embedded_postgresql_died", "error", err.msg, NULL);
		pge_stop(pge);
		pge = NULL;
		if (pge_start(app.cfg.state_dir, &pge, &err) < 0) {
			zlog(ZLOG_ERROR, "embedded_postgresql_restart_failed", "error", err.msg, NULL);
			pge = NULL;
			sig = SIGTERM;
			break;
		}
		zlog(ZLOG_INFO, "embedded_postgresql_restarted", NULL);
	}
	zlog(ZLOG_INFO, "stopping", "signal", strsignal(sig), NULL);
	/* In-flight invocations finish within the grace period; those still
	 * running after it are ended. Then the record writer drains its
	 * queue: no record is lost. */
	exec_stop_at(&app.exec, util_now_ns() + app.cfg.shutdown_grace_ms * 1000000ull);
	http_server_stop(srv);
	exec_pool_stop(&app.exec);
	records_stop(app.records);
	db_pool_close(app.pool);
	exec_ctx_done(&app.exec);
	sbx_spawner_stop(&spawner);
	limiter_done(&app.limiter);
	limiter_done(&app.login_limiter);
	if (pge)
		pge_stop(pge);
	zlog(ZLOG_INFO, "stopped", NULL);
	return 0;
}
