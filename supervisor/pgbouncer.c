/* pgbouncer.c - see pgbouncer.h */
#define _GNU_SOURCE
#include "sysproc.h"
#include "pgbouncer.h"
#include "log.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#define RUN_USER        "postgres"
#define LOG_ROTATE_SIZE (16 << 20)
#define SOCKET_NAME     "/.s.PGSQL.5432"
#define SUN_PATH_SIZE   sizeof(((struct sockaddr_un *)NULL)->sun_path)
#define NAME_MAX_BYTES  63 /* NAMEDATALEN - 1 */
/* Descriptors pgbouncer needs beyond its clients: server connections (the
 * cluster's budget, under 200), its listener, its log. */
#define PGB_FD_MARGIN 256u

struct pgb {
	struct pgb_config cfg; /* its strings point into the strings below */
	char *state_dir;
	char *server_socket_dir;
	char *auth_user;
	char *auth_password;
	char *dir;     /* <state>/pgbouncer */
	char *run_dir; /* <state>/pgbouncer/run */
	char *ini_path;
	char *log_path;
	char *stats_password;
	char *limits_path;       /* <state>/PGB_LIMITS_FILE */
	struct stat limits_seen; /* the limits file as last applied or refused */
	pid_t pid;
	struct sys_user user;
};

/* Nothing of zmeshd's own environment (its secrets, DATABASE_URL, PG*
 * variables) reaches pgbouncer. */
static char *const child_env[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", NULL};

static void pgb_free(struct pgb *p)
{
	if (!p)
		return;
	if (p->auth_password)
		explicit_bzero(p->auth_password, strlen(p->auth_password));
	if (p->stats_password)
		explicit_bzero(p->stats_password, strlen(p->stats_password));
	free(p->stats_password);
	free(p->limits_path);
	free(p->state_dir);
	free(p->server_socket_dir);
	free(p->auth_user);
	free(p->auth_password);
	free(p->dir);
	free(p->run_dir);
	free(p->ini_path);
	free(p->log_path);
	free(p);
}

/* ---- files ----------------------------------------------------------------- */

/* Replace a file atomically, owned by the run user, 0600. */
static int write_file(struct pgb *p, const char *name, const char *content, struct zerr *err)
{
	_cleanup_free_ char *path = NULL, *tmp = NULL;
	if (asprintf(&path, "%s/%s", p->dir, name) < 0 || asprintf(&tmp, "%s/%s.tmp", p->dir, name) < 0)
		return zerr_set(err, -ENOMEM, "out of memory");
	unlink(tmp);
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return zerr_set(err, -errno, "create %s: %s", tmp, strerror(errno));
	int r = 0;
	size_t len = strlen(content), off = 0;
	if (fchown(fd, p->user.uid, p->user.gid) < 0 || fchmod(fd, 0600) < 0)
		r = -errno;
	while (r == 0 && off < len) {
		ssize_t n = write(fd, content + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			r = n < 0 ? -errno : -EIO;
		else
			off += (size_t)n;
	}
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return zerr_set(err, r, "write %s: %s", path, strerror(-r));
	}
	return 0;
}

/* Role names as pgbouncer's files and the cluster take them unquoted. */
static bool name_ok(const char *s)
{
	return s && s[0] && strlen(s) <= NAME_MAX_BYTES &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(s) && !(s[0] >= '0' && s[0] <= '9');
}

/* Paths end up in pgbouncer.ini and connection strings unquoted. */
static bool path_ok(const char *s)
{
	if (!s || s[0] != '/')
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= 0x20 || c == 0x7f || c == '\'' || c == '"' || c == '\\' || c == ';' || c == '#' || c == '=')
			return false;
	}
	return true;
}

/* The password a double-quoted users.txt field holds: '"' doubled. */
static char *quote_auth_field(const char *s)
{
	size_t n = 0;
	for (const char *c = s; *c; c++)
		n += *c == '"' ? 2 : 1;
	char *out = malloc(n + 3);
	if (!out)
		return NULL;
	size_t o = 0;
	out[o++] = '"';
	for (const char *c = s; *c; c++) {
		if (*c == '"')
			out[o++] = '"';
		out[o++] = *c;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

static int write_config(struct pgb *p, struct zerr *err)
{
	const struct pgb_config *c = &p->cfg;
	_cleanup_free_ char *ini = NULL, *hba = NULL;
	/* The row pgbouncer checks a client's SCRAM proof against, for login
	 * roles only: none for a superuser, a role that bypasses row security
	 * or replicates, or the auth user itself (whose session would read
	 * every verifier). An expired password is no password. */
	static const char auth_query[] =
	    "SELECT rolname, CASE WHEN rolvaliduntil IS NULL OR rolvaliduntil > now() THEN rolpassword END "
	    "FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin AND NOT rolsuper "
	    "AND NOT rolreplication AND NOT rolbypassrls AND rolname <> current_user";
	if (asprintf(&ini,
	             "; Rewritten by zmeshd at every start.\n"
	             "[databases]\n"
	             "* = host=%s port=%u\n"
	             "\n"
	             "[pgbouncer]\n"
	             "listen_addr =\n"
	             "listen_port = %d\n"
	             "unix_socket_dir = %s\n"
	             "unix_socket_mode = 0777\n"
	             "auth_type = hba\n"
	             "auth_hba_file = %s/hba.conf\n"
	             "auth_file = %s/users.txt\n"
	             "auth_user = %s\n"
	             "auth_query = %s\n"
	             "pool_mode = session\n"
	             "server_reset_query = DISCARD ALL\n"
	             "server_reset_query_always = 0\n"
	             "server_check_delay = 10\n"
	             "server_login_retry = 1\n"
	             "server_idle_timeout = %u\n"
	             "server_lifetime = 3600\n"
	             "default_pool_size = %u\n"
	             "min_pool_size = 0\n"
	             "reserve_pool_size = 0\n"
	             "max_db_connections = %u\n"
	             "max_user_connections = %u\n"
	             "max_client_conn = %u\n"
	             /* A client waits for a server connection as long as its
	              * sandbox lives: the SDKs give up just before the
	              * invocation's deadline with an error that says why. */
	             "query_wait_timeout = 0\n"
	             /* The SDKs set their session up with SET statements; a
	              * driver's startup options would otherwise be refused. */
	             "ignore_startup_parameters = extra_float_digits,options,statement_timeout\n"
	             "admin_users =\n"
	             "stats_users = " PGB_STATS_USER "\n"
	             "logfile =\n"
	             "pidfile =\n"
	             "syslog = 0\n"
	             "log_connections = 0\n"
	             "log_disconnections = 0\n"
	             "log_pooler_errors = 1\n"
	             "verbose = 0\n"
	             "\n"
	             "%%include %s/databases.ini\n",
	             p->server_socket_dir, c->server_port, PGB_PORT, p->run_dir, p->dir, p->dir, p->auth_user,
	             auth_query, c->idle_timeout_s, c->role_pool_size, c->role_pool_size + 1, c->pool_size,
	             c->max_clients, p->dir) < 0)
		return zerr_set(err, -ENOMEM, "out of memory");
	/* First match wins. A project's role reaches the database of its own
	 * name only; the admin console and the auth user not at all. */
	if (asprintf(&hba,
	             "# Rewritten by zmeshd at every start.\n"
	             "local pgbouncer " PGB_STATS_USER " scram-sha-256\n"
	             "local pgbouncer all reject\n"
	             "local all " PGB_STATS_USER " reject\n"
	             "local all %s reject\n"
	             "local sameuser all scram-sha-256\n"
	             "local all all reject\n",
	             p->auth_user) < 0)
		return zerr_set(err, -ENOMEM, "out of memory");
	/* The stats user's password is random hex (pgb_start checks it). */
	struct buf users = BUF_INIT(0);
	buf_printf(&users, "\"%s\" \"%s\"\n", PGB_STATS_USER, p->stats_password);
	if (p->auth_password[0]) {
		_cleanup_free_ char *q = quote_auth_field(p->auth_password);
		if (q) {
			buf_printf(&users, "\"%s\" %s\n", p->auth_user, q);
			explicit_bzero(q, strlen(q));
		} else {
			users.failed = -ENOMEM;
		}
	}
	int r = users.failed ? zerr_set(err, -ENOMEM, "out of memory") : 0;
	if (r == 0)
		r = write_file(p, "hba.conf", hba, err);
	if (r == 0)
		r = write_file(p, "users.txt", users.data, err);
	if (r == 0)
		r = write_file(p, "pgbouncer.ini", ini, err);
	if (users.data)
		explicit_bzero(users.data, users.len);
	buf_free(&users);
	return r;
}

/* ---- role limits ------------------------------------------------------------- */

int pgb_parse_limits(const char *text, size_t len, unsigned max, const char *server, unsigned port, struct buf *out,
                     struct zerr *err)
{
	buf_puts(out, "; Made by zmeshd from " PGB_LIMITS_FILE ".\n[databases]\n");
	size_t line = 0;
	for (size_t i = 0; i < len;) {
		line++;
		const char *nl = memchr(text + i, '\n', len - i);
		if (!nl)
			return zerr_set(err, -EINVAL, "line %zu: no line end", line);
		size_t n = (size_t)(nl - (text + i));
		const char *sp = memchr(text + i, ' ', n);
		char role[NAME_MAX_BYTES + 1];
		size_t rl = sp ? (size_t)(sp - (text + i)) : 0;
		size_t dl = sp ? n - rl - 1 : 0;
		if (!sp || rl == 0 || rl >= sizeof(role) || dl == 0 || dl > 9)
			return zerr_set(err, -EINVAL, "line %zu: want \"ROLE N\"", line);
		memcpy(role, text + i, rl);
		role[rl] = '\0';
		unsigned long v = 0;
		for (size_t k = 0; k < dl; k++) {
			char d = sp[1 + k];
			if (d < '0' || d > '9' || (k == 0 && d == '0'))
				return zerr_set(err, -EINVAL, "line %zu: want a number without leading zeros", line);
			v = v * 10 + (unsigned long)(d - '0');
		}
		if (!name_ok(role))
			return zerr_set(err, -EINVAL, "line %zu: not a plain role name", line);
		if (v > max)
			return zerr_set(err, -EINVAL, "line %zu: %lu connections is above %u", line, v, max);
		/* A project role reaches only its database of the same name
		 * (hba sameuser): the role's pool is the database's. One more
		 * server connection for the database in all: pgbouncer's
		 * auth_query for a login runs there, as the auth user, and
		 * would otherwise wait behind the role's full pool. */
		buf_printf(out, "%s = host=%s port=%u pool_size=%lu max_db_connections=%lu\n", role, server, port, v,
		           v + 1);
		i += n + 1;
	}
	return out->failed ? zerr_set(err, out->failed, "role limits: %s", strerror(-out->failed)) : 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Read limits/roles (not following links; at most PGB_LIMITS_MAX) and write
 * databases.ini from it. Returns 1 when databases.ini changed, 0 when the file did
 * not change since the last call. */
static int write_limits(struct pgb *p, bool always, struct zerr *err)
{
	_cleanup_close_ int fd = open(p->limits_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct stat st = {0};
	if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)))
		return zerr_set(err, -EINVAL, "%s is not a regular file", p->limits_path);
	if (fd < 0 && errno != ENOENT)
		return zerr_set(err, -errno, "open %s: %s", p->limits_path, strerror(errno));
	if (!always && same_file(&st, &p->limits_seen))
		return 0;
	p->limits_seen = st;
	if (st.st_size > PGB_LIMITS_MAX)
		return zerr_set(err, -E2BIG, "%s is above %u bytes", p->limits_path, PGB_LIMITS_MAX);
	_cleanup_buf_ struct buf in = BUF_INIT(PGB_LIMITS_MAX + 1);
	while (fd >= 0) {
		if (buf_reserve(&in, 65536) < 0)
			return zerr_set(err, -E2BIG, "%s is above %u bytes", p->limits_path, PGB_LIMITS_MAX);
		ssize_t n = read(fd, in.data + in.len, in.cap - in.len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return zerr_set(err, -errno, "read %s: %s", p->limits_path, strerror(errno));
		if (n == 0)
			break;
		in.len += (size_t)n;
	}
	_cleanup_buf_ struct buf ini = BUF_INIT(0);
	int r = pgb_parse_limits(in.data ? in.data : "", in.len, PGB_ROLE_POOL_MAX, p->server_socket_dir,
	                         p->cfg.server_port, &ini, err);
	if (r < 0) {
		char why[sizeof(err->msg)];
		snprintf(why, sizeof(why), "%s", err->msg);
		return zerr_set(err, r, "%s %s", p->limits_path, why);
	}
	r = write_file(p, "databases.ini", ini.data, err);
	return r < 0 ? r : 1;
}

int pgb_apply_limits(struct pgb *p, struct zerr *err)
{
	if (!p || p->pid <= 0)
		return 0;
	int r = write_limits(p, false, err);
	if (r <= 0)
		return r;
	if (kill(p->pid, SIGHUP) < 0)
		return zerr_set(err, -errno, "reload pgbouncer: %s", strerror(errno));
	return 1;
}

/* ---- the process ------------------------------------------------------------- */

static int open_log(struct pgb *p, struct zerr *err)
{
	struct stat st;
	if (stat(p->log_path, &st) == 0 && st.st_size > LOG_ROTATE_SIZE) {
		char old[PATH_MAX];
		snprintf(old, sizeof(old), "%s.1", p->log_path);
		if (rename(p->log_path, old) < 0)
			return zerr_set(err, -errno, "rotate %s: %s", p->log_path, strerror(errno));
	}
	int fd = open(p->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0)
		return zerr_set(err, -errno, "open %s: %s", p->log_path, strerror(errno));
	return fd;
}

enum child_step { STEP_FDS = 1, STEP_CREDS, STEP_PDEATH, STEP_EXEC };

struct child_report {
	int step;
	int err;
};

static void child_fail(int fd, int step)
{
	struct child_report rep = {.step = step, .err = errno};
	ssize_t n = write(fd, &rep, sizeof(rep));
	(void)n;
	_exit(127);
}

/* Fork and exec pgbouncer as the run user in a session of its own, stdin
 * from /dev/null, stdout and stderr to the log. The child allocates
 * nothing: a failure travels back as {step, errno} over a close-on-exec
 * pipe. */
static int spawn(struct pgb *p, int logfd, struct zerr *err)
{
	_cleanup_close_ int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0)
		return zerr_set(err, -errno, "open /dev/null: %s", strerror(errno));
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return zerr_set(err, -errno, "pipe: %s", strerror(errno));
	_cleanup_close_ int rd = pfd[0];
	_cleanup_close_ int wr = pfd[1];
	char *const argv[] = {(char *)PGB_BINARY, p->ini_path, NULL};
	const struct sys_user *u = &p->user;
	pid_t parent = getpid();
	sigset_t none;
	sigemptyset(&none);

	pid_t pid = fork();
	if (pid < 0)
		return zerr_set(err, -errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		int rep = fcntl(wr, F_DUPFD_CLOEXEC, 10);
		int in = fcntl(devnull, F_DUPFD_CLOEXEC, 10);
		int out = fcntl(logfd, F_DUPFD_CLOEXEC, 10);
		if (rep < 0)
			_exit(127);
		if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			child_fail(rep, STEP_FDS);
		/* zmeshd blocks the signals it waits for, and the mask survives
		 * exec: pgbouncer must get its SIGINT and SIGTERM. */
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		/* Not in zmeshd's session: a Ctrl-C at its terminal must not
		 * reach pgbouncer, whose stop zmeshd orders itself. */
		setsid();
		/* A descriptor per client and per server connection, within the
		 * hard limit (pgb_start fitted max_clients to it); kept after
		 * setuid. */
		struct rlimit nofile = {p->cfg.max_clients + PGB_FD_MARGIN, p->cfg.max_clients + PGB_FD_MARGIN};
		if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
			child_fail(rep, STEP_FDS);
		if (setgroups((size_t)u->n_groups, u->groups) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0)
			child_fail(rep, STEP_CREDS);
		if (getuid() != u->uid || geteuid() != u->uid || getegid() != u->gid) {
			errno = EPERM;
			child_fail(rep, STEP_CREDS);
		}
		close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
		/* Armed after setuid, which clears it: zmeshd's death is an
		 * immediate shutdown, not an orphan. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
			child_fail(rep, STEP_PDEATH);
		if (getppid() != parent) {
			errno = ESRCH;
			child_fail(rep, STEP_PDEATH);
		}
		if (chdir("/") < 0)
			child_fail(rep, STEP_EXEC);
		execve(argv[0], argv, child_env);
		child_fail(rep, STEP_EXEC);
	}

	close(TAKE_FD(wr));
	struct child_report rep;
	ssize_t n;
	while ((n = read(rd, &rep, sizeof(rep))) < 0 && errno == EINTR)
		;
	if (n == 0) {
		p->pid = pid;
		return 0;
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(rep))
		return zerr_set(err, -EIO, "starting %s failed without a report", PGB_BINARY);
	return zerr_set(err, -rep.err, "start %s (step %d): %s", PGB_BINARY, rep.step, strerror(rep.err));
}

static bool socket_accepts(const struct pgb *p)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s%s", p->run_dir, SOCKET_NAME);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	return fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
}

static void kill_now(struct pgb *p)
{
	if (p->pid <= 0)
		return;
	kill(p->pid, SIGKILL);
	while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
		;
	p->pid = 0;
}

static int run(struct pgb *p, struct zerr *err)
{
	int r = write_config(p, err);
	if (r < 0)
		return r;
	/* Limits the API process left are checked like any change; when they
	 * are refused pgbouncer starts with every role at the default. */
	struct zerr lerr = {0};
	if (write_limits(p, true, &lerr) < 0) {
		zlog(ZLOG_ERROR, "pgbouncer_limits_refused", "error", lerr.msg, NULL);
		r = write_file(p, "databases.ini", "[databases]\n", err);
		if (r < 0)
			return r;
	}
	r = open_log(p, err);
	if (r < 0)
		return r;
	_cleanup_close_ int logfd = r;
	off_t log_from = lseek(logfd, 0, SEEK_END);
	if (log_from < 0)
		log_from = 0;
	/* A socket left by a pgbouncer that was killed: nothing listens on
	 * it any more (zmeshd's lock on the state directory says no other
	 * daemon runs here), and pgbouncer refuses to bind over it. */
	char sock[PATH_MAX];
	snprintf(sock, sizeof(sock), "%s%s", p->run_dir, SOCKET_NAME);
	if (!socket_accepts(p))
		unlink(sock);
	r = spawn(p, logfd, err);
	if (r < 0)
		return r;
	uint64_t deadline = sys_now_ms() + PGB_READY_TIMEOUT_S * 1000u;
	for (;;) {
		int st;
		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			p->pid = 0;
			char how[64], tail[400];
			sys_describe_status(st, how, sizeof(how));
			sys_log_tail(p->log_path, log_from, tail, sizeof(tail));
			return zerr_set(err, -EIO, "pgbouncer exited during start (%s): %s", how, tail);
		}
		if (socket_accepts(p))
			return 0;
		if (sys_now_ms() >= deadline)
			break;
		sys_sleep_ms(10);
	}
	kill_now(p);
	char tail[400];
	sys_log_tail(p->log_path, log_from, tail, sizeof(tail));
	return zerr_set(err, -ETIMEDOUT, "pgbouncer not ready within %d s: %s", PGB_READY_TIMEOUT_S, tail);
}

int pgb_start(const struct pgb_config *cfg, struct pgb **ret, struct zerr *err)
{
	if (!cfg || !path_ok(cfg->state_dir) || !path_ok(cfg->server_socket_dir))
		return zerr_set(err, -EINVAL,
		                "pgbouncer: the state and socket directories must be absolute paths without "
		                "whitespace, quotes, backslashes, '#', ';' or '='");
	if (!name_ok(cfg->auth_user))
		return zerr_set(err, -EINVAL, "pgbouncer: the cluster's user \"%s\" is not a plain role name",
		                cfg->auth_user ? cfg->auth_user : "");
	if (cfg->auth_password && strpbrk(cfg->auth_password, "\n\r"))
		return zerr_set(err, -EINVAL, "pgbouncer: the cluster's password holds a line break");
	if (cfg->server_port == 0 || cfg->server_port > 65535 || cfg->pool_size == 0 || cfg->max_clients == 0 ||
	    cfg->role_pool_size == 0 || cfg->role_pool_size > PGB_ROLE_POOL_MAX || cfg->max_clients > PGB_MAX_CLIENTS)
		return zerr_set(err, -EINVAL, "pgbouncer: bad port or pool sizes");
	if (!cfg->stats_password || strlen(cfg->stats_password) < 32 ||
	    strspn(cfg->stats_password, "0123456789abcdef") != strlen(cfg->stats_password))
		return zerr_set(err, -EINVAL, "pgbouncer: the stats password must be random hex");
	if (geteuid() != 0)
		return zerr_set(err, -EPERM, "pgbouncer is started as root (it runs as the %s user)", RUN_USER);
	if (access(PGB_BINARY, X_OK) < 0)
		return zerr_set(err, -errno, "%s: %s (install pgbouncer, or run with --pgbouncer 0)", PGB_BINARY,
		                strerror(errno));

	struct pgb *p = calloc(1, sizeof(*p));
	if (!p)
		return zerr_set(err, -ENOMEM, "out of memory");
	p->cfg = *cfg;
	int r = sys_user_lookup(RUN_USER, "pgbouncer", "install pgbouncer, or --pgbouncer 0", &p->user, err);
	if (r < 0)
		goto fail;
	if (!(p->state_dir = strdup(cfg->state_dir)) || !(p->server_socket_dir = strdup(cfg->server_socket_dir)) ||
	    !(p->auth_user = strdup(cfg->auth_user)) ||
	    !(p->auth_password = strdup(cfg->auth_password ? cfg->auth_password : "")) ||
	    !(p->stats_password = strdup(cfg->stats_password)) ||
	    asprintf(&p->limits_path, "%s/" PGB_LIMITS_FILE, cfg->state_dir) < 0 ||
	    asprintf(&p->dir, "%s/pgbouncer", cfg->state_dir) < 0 ||
	    asprintf(&p->run_dir, "%s/pgbouncer/run", cfg->state_dir) < 0 ||
	    asprintf(&p->ini_path, "%s/pgbouncer/pgbouncer.ini", cfg->state_dir) < 0 ||
	    asprintf(&p->log_path, "%s/pgbouncer/pgbouncer.log", cfg->state_dir) < 0) {
		r = zerr_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	p->cfg.state_dir = p->state_dir;
	p->cfg.server_socket_dir = p->server_socket_dir;
	p->cfg.auth_user = p->auth_user;
	p->cfg.auth_password = p->auth_password;
	p->cfg.stats_password = p->stats_password;
	/* Raising the hard limit takes CAP_SYS_RESOURCE, which a container may
	 * not grant: fewer client slots then, and a line saying so. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
	    (rlim_t)p->cfg.max_clients + PGB_FD_MARGIN > rl.rlim_max) {
		unsigned fit =
		    rl.rlim_max > 2 * PGB_FD_MARGIN ? (unsigned)(rl.rlim_max - PGB_FD_MARGIN) : PGB_FD_MARGIN;
		char want[16], got[16], hard[24];
		snprintf(want, sizeof(want), "%u", p->cfg.max_clients);
		snprintf(got, sizeof(got), "%u", fit);
		snprintf(hard, sizeof(hard), "%llu", (unsigned long long)rl.rlim_max);
		zlog(ZLOG_WARN, "pgbouncer_clients_limited", "wanted", want, "admitted", got, "nofile_hard_limit", hard,
		     "why", "every sandbox's descriptors do not fit: raise zmeshd's hard RLIMIT_NOFILE", NULL);
		p->cfg.max_clients = fit;
	}
	if (strlen(p->run_dir) + strlen(SOCKET_NAME) >= SUN_PATH_SIZE) {
		r = zerr_set(err, -ENAMETOOLONG, "state directory %s is too long for pgbouncer's socket path",
		             p->state_dir);
		goto fail;
	}
	/* The postgres user and sandboxes pass through to the socket. */
	r = sys_ensure_dir(p->dir, 0711, 0, 0, err);
	if (r == 0)
		r = sys_ensure_dir(p->run_dir, 0755, p->user.uid, p->user.gid, err);
	if (r == 0) {
		_cleanup_free_ char *limits_dir = strdup(p->limits_path);
		char *slash = limits_dir ? strrchr(limits_dir, '/') : NULL;
		if (slash)
			*slash = '\0';
		r = slash ? sys_ensure_dir(limits_dir, 0700, cfg->limits_uid, cfg->limits_gid, err)
		          : zerr_set(err, -ENOMEM, "out of memory");
	}
	if (r == 0)
		r = run(p, err);
	if (r < 0)
		goto fail;
	*ret = p;
	return 0;
fail:
	kill_now(p);
	pgb_free(p);
	return r;
}

int pgb_restart(struct pgb *p, struct zerr *err)
{
	if (!p)
		return zerr_set(err, -EINVAL, "no pgbouncer");
	if (p->pid > 0)
		return zerr_set(err, -EBUSY, "pgbouncer (pid %d) still runs", (int)p->pid);
	return run(p, err);
}

const char *pgb_socket_dir(const struct pgb *p)
{
	return p ? p->run_dir : NULL;
}

pid_t pgb_pid(const struct pgb *p)
{
	return p ? p->pid : 0;
}

int pgb_check(struct pgb *p, struct zerr *err)
{
	if (!p)
		return zerr_set(err, -EINVAL, "no pgbouncer");
	return sys_check_child(&p->pid, "pgbouncer", p->log_path, err);
}

void pgb_forget(struct pgb *p)
{
	pgb_free(p);
}

int pgb_stop(struct pgb *p)
{
	if (!p)
		return 0;
	int r = -ESRCH;
	if (p->pid > 0) {
		static const struct {
			int sig;
			long wait_ms;
		} steps[] = {{SIGINT, PGB_STOP_TIMEOUT_S * 1000L}, {SIGTERM, 5000}, {SIGKILL, 60000}};
		int st = 0;
		r = -ETIMEDOUT;
		for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
			kill(p->pid, steps[i].sig);
			int w = sys_wait_child(p->pid, steps[i].wait_ms, &st);
			if (w == 0) {
				r = i == 0 ? 0 : -ETIMEDOUT;
				break;
			}
			if (w != -ETIMEDOUT) {
				r = -ESRCH;
				break;
			}
		}
		p->pid = 0;
	}
	pgb_free(p);
	return r;
}
