/* zmeshd - the zmesh functions daemon: three processes, privilege only in
 * the two small single-threaded ones.
 *
 *   zmeshd (root, the supervisor): parses the configuration, prepares the
 *     state directory and the sandbox run directory, creates the system
 *     user PGE_API_ROLE if missing, starts the embedded PostgreSQL (and the
 *     control-plane database and the API's role in it) and the pgbouncer
 *     that sandboxes reach the data cluster through (pgbouncer.h), then
 *     forks the API process; afterwards it only supervises: restarts a
 *     postmaster or a pgbouncer that died, forwards SIGTERM/SIGINT/SIGHUP to
 *     the API process, and once that has exited stops pgbouncer, then the
 *     cluster.
 *   the API process (forked as root, then unprivileged): forks the spawner
 *     while it is still root and single-threaded, then drops to the system
 *     user for good (privsep_drop: no capabilities, no_new_privs, no
 *     namespaces) and only then runs migrations, the database pool, the warm
 *     pool, the record writer and the HTTP server.
 *   the spawner (root, single-threaded, spawner.h): every sandbox's clone,
 *     cgroup limits, signals and teardown, asked for over a narrow protocol
 *     and validated on its side. Sandboxes are the API process's children,
 *     which it waits for through their pidfds.
 * SIGTERM or SIGINT: stop accepting, let in-flight invocations finish within
 * the grace period, stop the cluster. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin.h"
#include "app.h"
#include "auth.h"
#include "cdc.h"
#include "egress.h"
#include "errors.h"
#include "http.h"
#include "jobs.h"
#include "log.h"
#include "logstream.h"
#include "pgbouncer.h"
#include "pooler.h"
#include "pgembed.h"
#include "privsep.h"
#include "scheduler.h"
#include "store.h"

static int fatal(const char *what, const struct zerr *err)
{
	zlog(ZLOG_ERROR, "startup_failed", "step", what, "error", err->msg, NULL);
	return 1;
}

/* JWT_SECRET_KEY, or a generated key kept (0600, owned by the API's user,
 * who signs with it) in the state directory so that tokens survive a
 * restart. */
static int load_jwt_key(struct app *app, uid_t uid, gid_t gid, struct zerr *err)
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
		if (fd < 0 || fchown(fd, uid, gid) < 0 || write(fd, hex, 64) != 64 || fsync(fd) < 0 ||
		    rename(tmp, path) < 0) {
			int e = errno ? errno : EIO;
			unlink(tmp);
			return zerr_set(err, -e, "write %s: %s", path, strerror(e));
		}
		memcpy(buf, hex, 64);
		n = 64;
	}
	if (n < 64)
		return zerr_set(err, n < 0 ? n : -EINVAL, "read %s: %s", path, n < 0 ? strerror(-n) : "too short");
	/* A key of an earlier version, root's: the API's user's now. */
	_cleanup_close_ int kfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (kfd < 0 || fchown(kfd, uid, gid) < 0 || fchmod(kfd, 0600) < 0)
		return zerr_set(err, -errno, "give %s to uid %u: %s", path, (unsigned)uid, strerror(errno));
	memcpy(app->jwt_key, buf, 64);
	app->jwt_key_len = 64;
	return 0;
}

/* ZMESH_ADMIN_PASSWORD on a later start: it made the first admin, and is
 * never applied again (a password changed since must not be reset by a
 * restart). Said once at start when it no longer matches. */
static void warn_admin_password_ignored(struct app *app, PGconn *c)
{
	struct zerr err = {0};
	char uid[STORE_ID_LEN + 1];
	_cleanup_free_ char *hash = NULL;
	json_auto_t *user = NULL;
	int64_t not_before;
	bool same = false;
	int r = store_user_for_login(c, app->cfg.admin_email, uid, &hash, &not_before, &user, &err);
	if (r == 0)
		r = auth_password_verify(app->cfg.admin_password, hash, &same, &err);
	if (r == 0 && same)
		return;
	char how[400];
	snprintf(how, sizeof(how), "zmeshd admin set-password %s (as root, zmeshd running)", app->cfg.admin_email);
	zlog(ZLOG_WARN, "admin_password_ignored", "reason",
	     r == -ZE_NOT_FOUND ? "ZMESH_ADMIN_PASSWORD is used only at the first start, and no user has "
	                          "ZMESH_ADMIN_EMAIL"
	                        : "ZMESH_ADMIN_PASSWORD is used only at the first start; the stored password differs "
	                          "and stays",
	     "email", app->cfg.admin_email, "reset_with", how, NULL);
}

static int bootstrap_admin(struct app *app, PGconn *c, struct zerr *err)
{
	uint64_t users = 0;
	int r = store_count_users(c, &users, err);
	if (r < 0)
		return r;
	if (users > 0) {
		if (app->cfg.admin_password[0])
			warn_admin_password_ignored(app, c);
		return 0;
	}
	_cleanup_free_ char *generated = NULL;
	const char *password = app->cfg.admin_password;
	/* The rule of every password a person chooses. */
	if (password[0] && val_password(password, app->cfg.admin_email, err) < 0)
		return zerr_set(err, -EINVAL, "ZMESH_ADMIN_PASSWORD: %s", VAL_PASSWORD_RULE);
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

/* What to do next, copy-paste ready for the address bound (the port the
 * kernel chose for port 0): the first line keeps the shape scripts and tests
 * read the port from. */
static void print_first_steps(const struct app *app, int port)
{
	char host[256], url[300];
	uint16_t ignored;
	if (http_split_listen(app->cfg.listen, host, sizeof(host), &ignored, NULL) < 0 || strcmp(host, "0.0.0.0") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	else if (strcmp(host, "::") == 0)
		snprintf(host, sizeof(host), "::1");
	snprintf(url, sizeof(url), strchr(host, ':') ? "http://[%s]:%d" : "http://%s:%d", host, port);
	const char *email = app->cfg.admin_email;
	printf("zmeshd: listening on %s (port %d). First steps, in another terminal:\n"
	       "  zmesh login --url %s --email %s    # asks for the password\n"
	       "  zmesh projects create demo         # the current project from now on\n"
	       "  printf 'exports.handler = async (p) => ({hello: p && p.name});\\n' > hello.js\n"
	       "  zmesh functions deploy hello.js\n"
	       "  zmesh invoke hello --data '{\"name\": \"world\"}'\n"
	       "zmeshd: over HTTP instead: curl -sS -XPOST %s/auth/login "
	       "-d '{\"email\":\"%s\",\"password\":\"...\"}' | jq -r '.token // error(.error.message)'\n",
	       app->cfg.listen, port, url, email, url, email);
	fflush(stdout);
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

/* What the supervisor prepared for the API process. */
struct api_start {
	struct sbx_ctx *sbx;
	struct pge *pge;  /* the supervisor's: only forgotten here */
	struct pgb *pgb;  /* the same */
	bool pgb_running; /* a pgbouncer serves this node's sandboxes */
	char conninfo[1200];
	uid_t uid;
	gid_t gid;
	pid_t supervisor;
};

static int stop_signals(sigset_t *ret)
{
	sigemptyset(ret);
	sigaddset(ret, SIGTERM);
	sigaddset(ret, SIGINT);
	sigaddset(ret, SIGHUP);
	return 0;
}

/* Each address of a libpq host (or hostaddr) list, with its port: the
 * port list's entry of the same rank, or its one entry for every host,
 * else 5432. A socket directory is no address. */
static int add_db_hosts(struct egress_rules *rules, const char *hosts, const char *ports, struct zerr *err)
{
	if (!hosts || !hosts[0])
		return 0;
	char hl[1024], pl[256];
	snprintf(hl, sizeof(hl), "%s", hosts);
	snprintf(pl, sizeof(pl), "%s", ports ? ports : "");
	bool one_port = !strchr(pl, ',');
	char *hsave = NULL, *psave = NULL;
	const char *port = strtok_r(pl, ",", &psave);
	for (char *h = strtok_r(hl, ",", &hsave); h; h = strtok_r(NULL, ",", &hsave)) {
		if (h[0] != '/') {
			int r = egress_rules_add_listen(rules, h, (uint16_t)atoi(port && port[0] ? port : "5432"), err);
			if (r < 0)
				return r;
		}
		if (!one_port)
			port = strtok_r(NULL, ",", &psave);
	}
	return 0;
}

/* The egress gateway: the operator's rules, and the node's own addresses
 * (its API's listen address, an external database's hosts and ports), which
 * no function may reach whatever the rules say. */
static int start_egress(struct app *app, const char *conninfo, struct egress_gw **ret, struct zerr *err)
{
	_cleanup_free_ struct egress_rules *rules = malloc(sizeof(*rules));
	if (!rules)
		return zerr_set(err, -ENOMEM, "out of memory");
	int r = zconfig_egress_rules(&app->cfg, rules, err);
	if (r < 0)
		return r;
	char host[256];
	uint16_t port = 0;
	r = http_split_listen(app->cfg.listen, host, sizeof(host), &port, err);
	if (r == 0)
		r = egress_rules_add_listen(rules, host, port, err);
	if (r < 0)
		return r;
	char *msg = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);
	PQfreemem(msg);
	const char *hosts = NULL, *addrs = NULL, *ports = NULL;
	for (PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (strcmp(o->keyword, "host") == 0)
			hosts = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			addrs = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			ports = o->val;
	}
	r = add_db_hosts(rules, hosts, ports, err);
	if (r == 0)
		r = add_db_hosts(rules, addrs, ports, err);
	PQconninfoFree(opts);
	if (r < 0)
		return r;
	struct egress_cfg ec = {.rules = rules};
	return egress_start(&ec, ret, err);
}

/* The API process: returns its exit status. */
static int api_main(struct app *app, struct api_start *st)
{
	struct zerr err = {0};
	/* The supervisor's death stops us as its SIGTERM would. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) < 0 || getppid() != st->supervisor)
		return 1;
	pge_forget(st->pge);
	st->pge = NULL;
	pgb_forget(st->pgb);
	st->pgb = NULL;

	/* Pooled sandboxes wait under the largest limits any tier allows; an
	 * invocation narrows them to its function's. The same bound what the
	 * spawner grants at all. */
	uint64_t max_mem = 0, max_timeout = 0;
	for (int i = 0; i < app->tiers.n; i++) {
		max_mem = app->tiers.t[i].max_memory_mb > max_mem ? app->tiers.t[i].max_memory_mb : max_mem;
		max_timeout =
		    app->tiers.t[i].max_timeout_ms > max_timeout ? app->tiers.t[i].max_timeout_ms : max_timeout;
	}

	/* The spawner: started while this process is root and has one
	 * thread; it keeps the runtimes' policies and binds, and the maxima.
	 * A program of its own (zmesh-spawner), so that every sandbox's init,
	 * a copy of it, is small; its configuration is checked here first. */
	static struct sbx_spawner spawner;
	static struct sbx_spawner_config scfg;
	char cache[300];
	snprintf(cache, sizeof(cache), "%s/cache", st->sbx->run_dir);
	if (exec_spawner_config(app->cfg.policy_dir, app->cfg.sdk_dir, app->pg_socket_dir, cache, max_mem, max_timeout,
	                        &scfg, &err) < 0)
		return fatal("sandbox runtimes", &err);
	char mem_s[24], timeout_s[24];
	snprintf(mem_s, sizeof(mem_s), "%" PRIu64, max_mem);
	snprintf(timeout_s, sizeof(timeout_s), "%" PRIu64, max_timeout);
	char *const spawner_argv[] = {
	    "zmesh-spawner", app->cfg.policy_dir, app->cfg.sdk_dir, app->pg_socket_dir, cache, mem_s, timeout_s, NULL};
	int r = sbx_spawner_exec(app->cfg.spawner_path, spawner_argv, &spawner, &err);
	sbx_spawner_config_done(&scfg);
	if (r < 0)
		return fatal("spawner", &err);

	/* For good: from here on nothing of this process is privileged. */
	if (privsep_drop(st->uid, st->gid, SIGTERM, st->supervisor, &err) < 0) {
		sbx_spawner_stop(&spawner);
		return fatal("drop privileges", &err);
	}
	char user[32];
	snprintf(user, sizeof(user), "%u", (unsigned)st->uid);
	zlog(ZLOG_INFO, "privileges_dropped", "uid", user, NULL);

	int rc = 1;
	PGconn *c = NULL;
	int applied = 0;
	if (db_connect(st->conninfo, &c, &err) < 0 || store_migrate(c, app->cfg.sql_dir, &applied, &err) < 0 ||
	    store_lock_down(c, &err) < 0 || bootstrap_admin(app, c, &err) < 0) {
		if (c)
			PQfinish(c);
		fatal("control plane", &err);
		goto out_spawner;
	}
	PQfinish(c);
	char napplied[16];
	snprintf(napplied, sizeof(napplied), "%d", applied);
	zlog(ZLOG_INFO, "migrations", "applied", napplied, NULL);

	pthread_mutex_init(&app->metrics.egress_lock, NULL);
	if (exec_ctx_init(&app->exec, st->sbx, &spawner, app->cfg.policy_dir, app->cfg.sdk_dir, app->pg_socket_dir,
	                  &err) < 0) {
		fatal("setup", &err);
		goto out_spawner;
	}
	if (db_pool_open(st->conninfo, (int)(app->cfg.concurrency + 8 < 200 ? app->cfg.concurrency + 8 : 200),
	                 &app->pool, &err) < 0) {
		fatal("setup", &err);
		goto out_exec;
	}
	app->exec.max_log_bytes = app->cfg.max_log_bytes;
	app->exec.max_result_bytes = app->cfg.max_result_bytes;
	if (start_egress(app, st->conninfo, &app->exec.egress, &err) < 0) {
		fatal("egress gateway", &err);
		goto out_db;
	}
	if (exec_pool_start(&app->exec, (unsigned)app->cfg.pool_size, max_mem, max_timeout, &err) < 0) {
		fatal("warm pool", &err);
		goto out_db;
	}
	if (st->pgb_running && pooler_start(app, app->pool_stats_password, &app->pooler, &err) < 0) {
		fatal("pool limits", &err);
		goto out_db;
	}
	explicit_bzero(app->pool_stats_password, sizeof(app->pool_stats_password));
	if (records_start(app->pool, &app->records, &err) < 0) {
		fatal("record writer", &err);
		goto out_db;
	}
	if (usage_start(app->pool, 0, &app->usage, &err) < 0) {
		fatal("usage counter", &err);
		goto out_records;
	}
	struct logstream_config lc;
	logstream_config_from_env(&lc);
	if (logstream_start(app->pool, &lc, &err) < 0) {
		fatal("live logs", &err);
		goto out_records;
	}
	limiter_init(&app->limiter, app->cfg.concurrency);
	limiter_init(&app->login_limiter, 4);

	struct http_config hc = {
	    .listen = app->cfg.listen,
	    .max_connections = (unsigned)app->cfg.max_connections,
	    .max_per_ip = (unsigned)app->cfg.max_per_ip,
	    .max_body = app->cfg.max_body_bytes,
	    .grace_ms =
	        app->cfg.shutdown_grace_ms ? (unsigned)app->cfg.shutdown_grace_ms : 1, /* 0 means "default" there */
	    .log = http_log,
	};
	struct jobs_config jc = {.workers = (unsigned)app->cfg.job_workers,
	                         .lease_ms = app->cfg.job_lease_ms,
	                         .noop = app->cfg.jobs_noop != 0};
	if (jobs_start(app, st->conninfo, &jc, &app->jobs, &err) < 0) {
		fatal("job workers", &err);
		goto out_records;
	}
	if (cdc_start(app, st->conninfo, &app->cdc, &err) < 0) {
		fatal("cdc dispatcher", &err);
		goto out_jobs;
	}
	struct http_server *srv = NULL;
	if (http_server_start(&hc, app_routes, app_n_routes, app, &srv, &err) < 0) {
		fatal("http", &err);
		goto out_jobs;
	}
	/* Cron triggers: every node runs the scheduler; the database decides
	 * which node fires a tick. */
	if (sched_start(app, &err) < 0) {
		fatal("cron scheduler", &err);
		http_server_stop(srv);
		goto out_jobs;
	}
	char port[16];
	snprintf(port, sizeof(port), "%d", http_server_port(srv));
	zlog(ZLOG_INFO, "listening", "address", app->cfg.listen, "port", port, NULL);
	print_first_steps(app, http_server_port(srv));

	sigset_t stop;
	stop_signals(&stop);
	int sig;
	while ((sig = sigwaitinfo(&stop, NULL)) < 0)
		;
	zlog(ZLOG_INFO, "stopping", "signal", strsignal(sig), NULL);
	/* No tick fires once stopping: another node, or the next start, has
	 * them. */
	sched_stop(app->sched);
	/* What is still in an outbox stays there for the next drain. */
	cdc_stop(app->cdc);
	app->cdc = NULL;
	/* In-flight invocations finish within the grace period; those still
	 * running after it are ended. Then the record writer drains its
	 * queue: no record is lost. */
	jobs_stop_claiming(app->jobs);
	exec_stop_at(&app->exec, util_now_ns() + app->cfg.shutdown_grace_ms * 1000000ull);
	logstream_quiesce(); /* open log streams end now, not after the grace period */
	http_server_stop(srv);
	rc = 0;
out_jobs:
	cdc_stop(app->cdc);
	app->cdc = NULL;
	/* Jobs ended by the stop go back on the queue; then the records. */
	jobs_stop(app->jobs);
	app->jobs = NULL;
	exec_pool_stop(&app->exec);
out_records:
	logstream_stop();
	records_stop(app->records);
	/* No invocation runs now: the counts are complete. */
	usage_stop(app->usage);
	app->usage = NULL;
out_db:
	pooler_stop(app->pooler);
	app->pooler = NULL;
	db_pool_close(app->pool);
out_exec:
	exec_ctx_done(&app->exec);
	/* Last: no invocation runs, the pool's listeners are closed. */
	egress_stop(app->exec.egress);
	app->exec.egress = NULL;
	free(app->metrics.egress);
	app->metrics.egress = NULL;
	limiter_done(&app->limiter);
	limiter_done(&app->login_limiter);
out_spawner:
	sbx_spawner_stop(&spawner);
	return rc;
}

/* pgbouncer restarts: at once after a long run, then after a delay that
 * doubles up to a bound while it keeps dying. */
#define PGB_RESTART_MAX_DELAY_MS 30000u
#define PGB_STABLE_MS            60000u

struct pgb_watch {
	struct pgb *pgb;     /* NULL: none runs on this node */
	uint64_t restart_at; /* ms, util_now_ns based; 0: running */
	uint64_t started_at; /* ms */
	uint32_t delay_ms;   /* the next delay after a quick death */
};

/* Supervise pgbouncer: reap it when it dies and start it again when its
 * delay has passed. Sandboxes' connections fail in between; the socket
 * directory they see stays the same. */
static void watch_pgbouncer(struct pgb_watch *w, bool stopping)
{
	struct zerr err = {0};
	uint64_t now = util_now_ns() / 1000000u;
	if (!w->pgb)
		return;
	if (w->restart_at == 0) {
		if (pgb_check(w->pgb, &err) != -ESRCH)
			return;
		zlog(ZLOG_ERROR, "pgbouncer_died", "error", err.msg, NULL);
		if (now - w->started_at >= PGB_STABLE_MS)
			w->delay_ms = 0;
		w->restart_at = now + w->delay_ms;
		w->delay_ms = w->delay_ms ? w->delay_ms * 2 : 500;
		if (w->delay_ms > PGB_RESTART_MAX_DELAY_MS)
			w->delay_ms = PGB_RESTART_MAX_DELAY_MS;
	}
	if (stopping || now < w->restart_at)
		return;
	w->started_at = now;
	if (pgb_restart(w->pgb, &err) < 0) {
		zlog(ZLOG_ERROR, "pgbouncer_restart_failed", "error", err.msg, NULL);
		w->restart_at = now + w->delay_ms;
		w->delay_ms = w->delay_ms * 2 > PGB_RESTART_MAX_DELAY_MS ? PGB_RESTART_MAX_DELAY_MS : w->delay_ms * 2;
		return;
	}
	w->restart_at = 0;
	zlog(ZLOG_INFO, "pgbouncer_restarted", NULL);
}

/* The supervisor's loop: the cluster, pgbouncer and the API process, until
 * the API process has exited. Returns zmeshd's exit status. */
static int supervise(struct app *app, struct pge **pge, struct pgb_watch *pgbw, pid_t api)
{
	struct zerr err = {0};
	sigset_t wait_for;
	stop_signals(&wait_for);
	sigaddset(&wait_for, SIGCHLD);
	bool stopping = false;
	uint64_t kill_at = 0;
	for (;;) {
		int st;
		pid_t w = waitpid(api, &st, WNOHANG);
		if (w == api) {
			if (!stopping || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
				char how[32];
				snprintf(how, sizeof(how), "%d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
				zlog(stopping ? ZLOG_WARN : ZLOG_ERROR, "api_process_exited", "status", how, NULL);
			}
			return stopping && WIFEXITED(st) ? WEXITSTATUS(st) : 1;
		}
		/* A pgbouncer waiting for its restart is checked sooner. */
		struct timespec tick = {1, 0};
		if (pgbw->restart_at)
			tick = (struct timespec){0, 100 * 1000000L};
		siginfo_t si;
		int sig = sigtimedwait(&wait_for, &si, &tick);
		if (sig > 0 && sig != SIGCHLD) {
			/* Forwarded: the API process stops accepting and lets
			 * in-flight invocations finish. */
			kill(api, SIGTERM);
			if (!stopping)
				kill_at = util_now_ns() + (app->cfg.shutdown_grace_ms + 30000) * 1000000ull;
			stopping = true;
		}
		if (stopping && util_now_ns() >= kill_at) {
			zlog(ZLOG_ERROR, "api_process_killed", "reason", "did not stop in time", NULL);
			kill(api, SIGKILL);
			kill_at = UINT64_MAX;
		}
		watch_pgbouncer(pgbw, stopping);
		if (pgbw->pgb && pgb_apply_limits(pgbw->pgb, &err) < 0)
			zlog(ZLOG_ERROR, "pgbouncer_limits_refused", "error", err.msg, NULL);
		if (!*pge || pge_check(*pge, &err) != -ESRCH)
			continue;
		zlog(ZLOG_ERROR, "embedded_postgresql_died", "error", err.msg, NULL);
		pge_stop(*pge);
		*pge = NULL;
		if (stopping)
			continue;
		if (pge_start(app->cfg.state_dir, pge, &err) < 0) {
			zlog(ZLOG_ERROR, "embedded_postgresql_restart_failed", "error", err.msg, NULL);
			*pge = NULL;
			kill(api, SIGTERM);
			kill_at = util_now_ns() + (app->cfg.shutdown_grace_ms + 30000) * 1000000ull;
			stopping = true;
			continue;
		}
		zlog(ZLOG_INFO, "embedded_postgresql_restarted", NULL);
	}
}

/* The cluster's connections sandboxes may hold through pgbouncer: what is
 * left of max_connections (the embedded cluster's; an external one is
 * assumed to have as many) after the control plane's pool, the job workers,
 * the cdc dispatcher's and a margin for administrators. */
#define CLUSTER_CONNECTIONS 200u
#define PGB_POOL_SIZE_MAX   20u
#define PGB_IDLE_TIMEOUT_S  30u

static int start_pgbouncer(struct app *app, uid_t uid, gid_t gid, struct pgb **ret, struct zerr *err)
{
	uint64_t used =
	    (app->cfg.concurrency + 8 < 200 ? app->cfg.concurrency + 8 : 200) + app->cfg.job_workers + CDC_MAX_DBS + 10;
	unsigned budget = used + 8 < CLUSTER_CONNECTIONS ? (unsigned)(CLUSTER_CONNECTIONS - used) : 8;
	/* A database's pool holds what its role may (its tier's
	 * db_connections), within the budget. */
	uint64_t role_max = 1;
	for (int i = 0; i < app->tiers.n; i++)
		role_max = app->tiers.t[i].db_connections > role_max ? app->tiers.t[i].db_connections : role_max;
	_cleanup_free_ char *stats_password = NULL;
	int r = auth_random_hex(32, &stats_password, err);
	if (r < 0)
		return r;
	snprintf(app->pool_stats_password, sizeof(app->pool_stats_password), "%s", stats_password);
	explicit_bzero(stats_password, strlen(stats_password));
	struct pgb_config pc = {
	    .state_dir = app->cfg.state_dir,
	    .server_socket_dir = app->pg_socket_dir,
	    .server_port = PGE_PORT,
	    .auth_user = PGE_SUPERUSER,
	    .pool_size = role_max < budget ? (unsigned)role_max : budget,
	    .role_pool_size = (unsigned)tiers_for(&app->tiers, TIERS_DEFAULT)->db_connections,
	    /* Every sandbox of the node may open as many connections as it
	     * has descriptors: all of them fit, so no tenant takes another's
	     * place (they wait for a server connection, not for a slot). */
	    .max_clients = (unsigned)app->cfg.concurrency * EXEC_NOFILE + 64,
	    .idle_timeout_s = PGB_IDLE_TIMEOUT_S,
	    .stats_password = app->pool_stats_password,
	    .limits_uid = uid,
	    .limits_gid = gid,
	};
	if (!app->cfg.database_url[0])
		return pgb_start(&pc, ret, err);
	/* An external cluster: pgbouncer logs in as DATABASE_URL's user
	 * (its password, if any, in pgbouncer's own 0600 file), on the port
	 * the URL names, through ZMESH_PG_SOCKET_DIR. */
	char *msg = NULL;
	PQconninfoOption *opts = PQconninfoParse(app->cfg.database_url, &msg);
	if (!opts) {
		r = zerr_set(err, -EINVAL, "DATABASE_URL: %s", msg ? msg : "out of memory");
		PQfreemem(msg);
		return r;
	}
	const char *user = NULL, *password = NULL, *port = NULL;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val || !o->val[0])
			continue;
		if (strcmp(o->keyword, "user") == 0)
			user = o->val;
		else if (strcmp(o->keyword, "password") == 0)
			password = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
	}
	if (port) {
		char *end;
		unsigned long v = strtoul(port, &end, 10);
		if (*end || v == 0 || v > 65535)
			r = zerr_set(err, -EINVAL, "DATABASE_URL: one port is needed for pgbouncer, not \"%s\"", port);
		pc.server_port = (unsigned)v;
	}
	/* libpq's default user is the OS user's name: the API process's. */
	pc.auth_user = user ? user : PGE_API_ROLE;
	pc.auth_password = password;
	if (r == 0)
		r = pgb_start(&pc, ret, err);
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (o->val)
			explicit_bzero(o->val, strlen(o->val));
	PQconninfoFree(opts);
	return r;
}

int main(int argc, char **argv)
{
	/* The operator's commands: a process of their own, no daemon. */
	if (argc > 1 && strcmp(argv[1], "admin") == 0)
		return admin_main(argc, argv);
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
		fprintf(stderr,
		        "zmeshd: must run as root (it creates sandboxes; its API process then drops to the "
		        "%s user)\n",
		        PGE_API_ROLE);
		return 2;
	}
	/* root's, not the API user's: nothing of the privileged side is
	 * writable by the API process. */
	if (mkdir(app.cfg.state_dir, 0711) < 0 && errno != EEXIST) {
		fprintf(stderr, "zmeshd: mkdir %s: %s\n", app.cfg.state_dir, strerror(errno));
		return 2;
	}
	char *abs = realpath(app.cfg.state_dir, NULL);
	if (abs) {
		snprintf(app.cfg.state_dir, sizeof(app.cfg.state_dir), "%s", abs);
		free(abs);
	}

	/* Every process and thread inherits this mask; the main threads take
	 * the signals with sigwait. */
	sigset_t stop;
	stop_signals(&stop);
	sigaddset(&stop, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	static struct api_start st;
	if (privsep_user_ensure(PGE_API_ROLE, &st.uid, &st.gid, &err) < 0)
		return fatal("system user", &err);
	char tiers_path[600];
	snprintf(tiers_path, sizeof(tiers_path), "%s/tiers.json", app.cfg.policy_dir);
	if (tiers_load(tiers_path, &app.tiers, &err) < 0)
		return fatal("tiers", &err);
	static struct sbx_ctx sbx;
	if (sbx_ctx_init(&sbx, NULL, &err) < 0)
		return fatal("sandbox", &err);
	st.sbx = &sbx;

	/* The embedded cluster has 200 connections: the pool (concurrency + 8),
	 * one per running function that uses its database, one per job worker
	 * and the listeners must fit. */
	if (!app.cfg.database_url[0] &&
	    (app.cfg.concurrency > 90 || 2 * app.cfg.concurrency + app.cfg.job_workers > 188)) {
		fprintf(stderr, "zmeshd: with the embedded database, --concurrency is at most 90 and twice it plus "
		                "--job-workers at most 188 (use DATABASE_URL)\n");
		return 2;
	}

	struct pge *pge = NULL;
	struct pgb_watch pgbw = {0};
	if (app.cfg.database_url[0]) {
		/* Its credentials are the URL's: nothing to prepare. */
		snprintf(st.conninfo, sizeof(st.conninfo), "%s", app.cfg.database_url);
		snprintf(app.pg_socket_dir, sizeof(app.pg_socket_dir), "%s", app.cfg.pg_socket_dir);
	} else {
		if (pge_start(app.cfg.state_dir, &pge, &err) < 0)
			return fatal("embedded postgresql", &err);
		char admin[1200];
		pge_conninfo(pge, "postgres", admin, sizeof(admin));
		if (store_ensure_database(admin, "zmesh", &err) < 0 ||
		    store_ensure_superuser(admin, PGE_API_ROLE, &err) < 0) {
			pge_stop(pge);
			return fatal("control-plane database", &err);
		}
		pge_conninfo_as(pge, PGE_API_ROLE, "zmesh", st.conninfo, sizeof(st.conninfo));
		snprintf(app.pg_socket_dir, sizeof(app.pg_socket_dir), "%s", pge_socket_dir(pge));
		zlog(ZLOG_INFO, "embedded_postgresql", "socket_dir", app.pg_socket_dir, NULL);
	}
	if (app.cfg.pgbouncer && app.pg_socket_dir[0]) {
		if (start_pgbouncer(&app, st.uid, st.gid, &pgbw.pgb, &err) < 0) {
			pge_stop(pge);
			return fatal("pgbouncer", &err);
		}
		pgbw.started_at = util_now_ns() / 1000000u;
		snprintf(app.pg_socket_dir, sizeof(app.pg_socket_dir), "%s", pgb_socket_dir(pgbw.pgb));
		zlog(ZLOG_INFO, "pgbouncer", "socket_dir", app.pg_socket_dir, NULL);
	}
	if (load_jwt_key(&app, st.uid, st.gid, &err) < 0) {
		pgb_stop(pgbw.pgb);
		pge_stop(pge);
		return fatal("jwt key", &err);
	}

	fflush(stdout);
	st.supervisor = getpid();
	st.pge = pge;
	st.pgb = pgbw.pgb;
	st.pgb_running = pgbw.pgb != NULL;
	pid_t api = fork();
	if (api < 0) {
		err.code = -errno;
		snprintf(err.msg, sizeof(err.msg), "fork: %s", strerror(errno));
		pgb_stop(pgbw.pgb);
		pge_stop(pge);
		return fatal("api process", &err);
	}
	if (api == 0) {
		prctl(PR_SET_NAME, "zmeshd-api", 0, 0, 0);
		exit(api_main(&app, &st));
	}
	/* The key lives on in the API process only. */
	explicit_bzero(app.jwt_key, sizeof(app.jwt_key));
	int rc = supervise(&app, &pge, &pgbw, api);
	/* Its clients, the sandboxes, are gone with the API process. */
	pgb_stop(pgbw.pgb);
	if (pge)
		pge_stop(pge);
	zlog(ZLOG_INFO, "stopped", NULL);
	return rc;
}
