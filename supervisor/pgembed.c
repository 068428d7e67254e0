/* pgembed.c - see pgembed.h */
#define _GNU_SOURCE
#include "sysproc.h"
#include "pgembed.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <libpq-fe.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#define LOG_ROTATE_SIZE (16 << 20)
#define LOCK_FILE_MAX   4096
#define SOCKET_NAME     "/.s.PGSQL.5432"
#define PASSWORD_BYTES  32
#define SUN_PATH_SIZE   sizeof(((struct sockaddr_un *)NULL)->sun_path)
/* Function invocations connect directly (one connection each, at most the
 * global concurrency) besides zmeshd's own pool. */
#define MAX_CONNECTIONS "200"

struct pge {
	char *state_dir; /* absolute */
	char *pg_dir;
	char *data_dir;
	char *run_dir;
	char *log_path;
	pid_t pid;
	int lock_fd;
	bool created;
	struct sys_user user;
};

/* The environment of initdb and postgres: nothing of zmeshd's own (its
 * secrets, DATABASE_URL, PG* variables) reaches the cluster. */
static char *const child_env[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", NULL};

static void pge_free(struct pge *p)
{
	if (!p)
		return;
	if (p->lock_fd >= 0)
		close(p->lock_fd);
	free(p->state_dir);
	free(p->pg_dir);
	free(p->data_dir);
	free(p->run_dir);
	free(p->log_path);
	free(p);
}

/* ---- files and directories ----------------------------------------------- */

static int mkdir_p(const char *path, mode_t last_mode, struct zerr *err)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return zerr_set(err, -ENAMETOOLONG, "path too long: %.64s...", path);
	for (char *s = strchr(tmp + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
			return zerr_set(err, -errno, "mkdir %s: %s", tmp, strerror(errno));
		*s = '/';
	}
	if (mkdir(tmp, last_mode) < 0 && errno != EEXIST)
		return zerr_set(err, -errno, "mkdir %s: %s", tmp, strerror(errno));
	return 0;
}

/* Replace a file atomically (a crash leaves the old or the new one). */
static int write_file_atomic(const char *path, const char *content, mode_t mode, uid_t uid, gid_t gid, struct zerr *err)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return zerr_set(err, -ENAMETOOLONG, "path too long: %s", path);
	unlink(tmp);
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return zerr_set(err, -errno, "create %s: %s", tmp, strerror(errno));
	int r = 0;
	size_t len = strlen(content), off = 0;
	if (fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0)
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
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return zerr_set(err, r, "write %s: %s", path, strerror(-r));
	}
	return 0;
}

static int rm_rf_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

static int rm_rf(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	return nftw(path, rm_rf_cb, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 ? -errno : 0;
}

/* unix_socket_directories is a comma-separated list and the path ends up in
 * conninfo strings and pg_hba context: keep to characters that need no
 * quoting anywhere. */
static bool path_chars_ok(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= 0x20 || c == 0x7f || c == ',' || c == '\'' || c == '"' || c == '\\')
			return false;
	}
	return true;
}

/* ---- the postgres user and its processes --------------------------------- */

/* Gone, or a zombie nobody reaps (an orphan reparented to a subreaper):
 * either way no longer running. */
static bool pid_gone(pid_t pid)
{
	if (kill(pid, 0) < 0 && errno == ESRCH)
		return true;
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (util_read_file(path, buf, sizeof(buf)) < 0)
		return true;
	char *close_paren = strrchr(buf, ')');
	return close_paren && close_paren[1] == ' ' && (close_paren[2] == 'Z' || close_paren[2] == 'X');
}

/* The processes working in the data directory: every postgres process
 * chdirs there, backends included, whatever became of their postmaster. */
static int cluster_procs(const char *data_dir, pid_t *pids, int max)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < max) {
		char *end;
		long v = strtol(de->d_name, &end, 10);
		if (*end || v <= 0)
			continue;
		char link[64], target[PATH_MAX];
		snprintf(link, sizeof(link), "/proc/%ld/cwd", v);
		ssize_t len = readlink(link, target, sizeof(target) - 1);
		if (len < 0)
			continue;
		target[len] = '\0';
		if (strcmp(target, data_dir) == 0)
			pids[n++] = (pid_t)v;
	}
	closedir(d);
	return n;
}

static pid_t lock_file_pid(const char *path)
{
	char buf[LOCK_FILE_MAX];
	if (util_read_file(path, buf, sizeof(buf)) <= 0)
		return 0;
	char *end;
	long v = strtol(buf, &end, 10);
	if (end == buf || (*end != '\n' && *end != '\0') || v <= 0 || v > INT_MAX)
		return 0;
	return (pid_t)v;
}

static bool wait_gone(pid_t pid, long timeout_ms)
{
	uint64_t deadline = sys_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		/* Also reaps it should it be our child. */
		waitpid(pid, NULL, WNOHANG);
		if (pid_gone(pid))
			return true;
		if (sys_now_ms() >= deadline)
			return false;
		sys_sleep_ms(20);
	}
}

/* Stop a postmaster we did not start: one left by a crashed zmeshd. */
static int stop_orphan(pid_t pid, struct zerr *err)
{
	static const struct {
		int sig;
		long wait_ms;
	} steps[] = {{SIGINT, PGE_STOP_TIMEOUT_S * 1000L}, {SIGQUIT, 5000}, {SIGKILL, 5000}};
	for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
		if (kill(pid, steps[i].sig) < 0 && errno == ESRCH)
			return 0;
		if (wait_gone(pid, steps[i].wait_ms))
			return 0;
	}
	return zerr_set(err, -EBUSY, "a postmaster (pid %d) left in the data directory does not stop", (int)pid);
}

/* Make the data directory free for a new postmaster: the previous one and
 * its backends gone, and no lock file that names a live process that is
 * not a postmaster of this cluster (a pid reused after a crash), which
 * postgres would take for a running server. */
static int clear_leftovers(struct pge *p, struct zerr *err)
{
	char pidfile[PATH_MAX], socklock[PATH_MAX];
	snprintf(pidfile, sizeof(pidfile), "%s/postmaster.pid", p->data_dir);
	snprintf(socklock, sizeof(socklock), "%s%s.lock", p->run_dir, SOCKET_NAME);
	pid_t procs[256];
	pid_t pm = lock_file_pid(pidfile);
	int n = cluster_procs(p->data_dir, procs, (int)ELEMENTSOF(procs));
	for (int i = 0; i < n && pm > 0; i++) {
		if (procs[i] == pm) {
			int r = stop_orphan(pm, err);
			if (r < 0)
				return r;
			break;
		}
	}
	/* Backends notice their postmaster's death and exit on their own. */
	uint64_t deadline = sys_now_ms() + 10000;
	while ((n = cluster_procs(p->data_dir, procs, (int)ELEMENTSOF(procs))) > 0 && sys_now_ms() < deadline)
		sys_sleep_ms(50);
	n = cluster_procs(p->data_dir, procs, (int)ELEMENTSOF(procs));
	if (n > 0)
		return zerr_set(
		    err, -EBUSY,
		    "process %d (and %d more) still works in %s with no postmaster; stop it before starting "
		    "zmeshd",
		    (int)procs[0], n - 1, p->data_dir);
	const char *locks[] = {pidfile, socklock};
	for (size_t i = 0; i < ELEMENTSOF(locks); i++) {
		pid_t lp = lock_file_pid(locks[i]);
		if (lp > 0 && !pid_gone(lp) && unlink(locks[i]) < 0 && errno != ENOENT)
			return zerr_set(err, -errno, "remove stale %s: %s", locks[i], strerror(errno));
	}
	return 0;
}

/* ---- running programs as postgres ---------------------------------------- */

enum child_step { STEP_FDS = 1, STEP_CREDS, STEP_PDEATH, STEP_CHDIR, STEP_EXEC };

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

/* Put fd at target without close-on-exec (dup2 onto itself keeps the flag). */
static int move_fd(int fd, int target)
{
	if (fd == target)
		return fcntl(fd, F_SETFD, 0);
	return dup2(fd, target) < 0 ? -1 : 0;
}

/* Fork and exec argv as the postgres user in its own session, stdin from
 * /dev/null, stdout and stderr to out_fd, in workdir; fd3_data, if not NULL,
 * readable on fd 3 (a pipe the child fills after switching user, so that the
 * postgres user may open it as /dev/fd/3). The child allocates nothing
 * between fork and exec (the daemon may already run threads): the
 * credentials are resolved before, and a failure travels back as
 * {step, errno} over a close-on-exec pipe. */
static int spawn_as_postgres(const struct sys_user *u, char *const argv[], int out_fd, const char *fd3_data,
                             int pdeath_sig, const char *workdir, pid_t *ret_pid, struct zerr *err)
{
	_cleanup_close_ int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0)
		return zerr_set(err, -errno, "open /dev/null: %s", strerror(errno));
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return zerr_set(err, -errno, "pipe: %s", strerror(errno));
	_cleanup_close_ int rd = pfd[0];
	_cleanup_close_ int wr = pfd[1];
	pid_t parent = getpid();
	size_t fd3_len = fd3_data ? strlen(fd3_data) : 0;

	pid_t pid = fork();
	if (pid < 0)
		return zerr_set(err, -errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* Lift the descriptors to place above 0..3 first, so that no
		 * dup2 overwrites one still to be moved. */
		int rep = fcntl(wr, F_DUPFD_CLOEXEC, 10);
		int in = fcntl(devnull, F_DUPFD_CLOEXEC, 10);
		int out = fcntl(out_fd, F_DUPFD_CLOEXEC, 10);
		if (rep < 0)
			_exit(127);
		if (in < 0 || out < 0 || move_fd(in, 0) < 0 || move_fd(out, 1) < 0 || move_fd(out, 2) < 0)
			child_fail(rep, STEP_FDS);
		/* A session of its own: a Ctrl-C at zmeshd's terminal must not
		 * reach postgres, whose shutdown zmeshd orders after its own. */
		setsid();
		if (setgroups((size_t)u->n_groups, u->groups) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0)
			child_fail(rep, STEP_CREDS);
		if (getuid() != u->uid || geteuid() != u->uid || getegid() != u->gid) {
			errno = EPERM;
			child_fail(rep, STEP_CREDS);
		}
		if (fd3_data) {
			int dp[2];
			if (pipe2(dp, O_CLOEXEC) < 0)
				child_fail(rep, STEP_FDS);
			/* Far below a pipe's capacity: the write cannot block. */
			if (write(dp[1], fd3_data, fd3_len) != (ssize_t)fd3_len)
				child_fail(rep, STEP_FDS);
			close(dp[1]);
			if (move_fd(dp[0], 3) < 0)
				child_fail(rep, STEP_FDS);
		}
		/* Everything else closes at exec, whatever flag it was opened
		 * with; the report pipe stays usable until then. */
		close_range(fd3_data ? 4 : 3, ~0U, CLOSE_RANGE_CLOEXEC);
		/* Armed after setuid, which clears it. */
		if (prctl(PR_SET_PDEATHSIG, pdeath_sig) < 0)
			child_fail(rep, STEP_PDEATH);
		if (getppid() != parent) {
			errno = ESRCH;
			child_fail(rep, STEP_PDEATH);
		}
		if (chdir(workdir) < 0)
			child_fail(rep, STEP_CHDIR);
		execve(argv[0], argv, child_env);
		child_fail(rep, STEP_EXEC);
	}

	close(TAKE_FD(wr));
	struct child_report rep;
	ssize_t n;
	while ((n = read(rd, &rep, sizeof(rep))) < 0 && errno == EINTR)
		;
	if (n == 0) {
		*ret_pid = pid;
		return 0;
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(rep))
		return zerr_set(err, -EIO, "starting %s failed without a report", argv[0]);
	switch (rep.step) {
	case STEP_CHDIR:
		return zerr_set(err, -rep.err,
		                "the %s user cannot enter %s (%s): every directory above it must be searchable (o+x)",
		                PGE_SUPERUSER, workdir, strerror(rep.err));
	case STEP_CREDS:
		return zerr_set(err, -rep.err, "switch to the %s user: %s", PGE_SUPERUSER, strerror(rep.err));
	case STEP_EXEC:
		return zerr_set(err, -rep.err, "exec %s: %s", argv[0], strerror(rep.err));
	default:
		return zerr_set(err, -rep.err, "prepare %s (step %d): %s", argv[0], rep.step, strerror(rep.err));
	}
}

/* ---- first start --------------------------------------------------------- */

static int make_password(char ret[2 * PASSWORD_BYTES + 1], struct zerr *err)
{
	unsigned char raw[PASSWORD_BYTES];
	size_t got = 0;
	while (got < sizeof(raw)) {
		ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return zerr_set(err, -errno, "getrandom: %s", strerror(errno));
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(ret + 2 * i, 3, "%02x", raw[i]);
	explicit_bzero(raw, sizeof(raw));
	return 0;
}

/* Run initdb into scratch, handing it the superuser's password through a
 * pipe (--pwfile=/dev/fd/3): never on a command line, never in a file. */
static int initdb_with(struct pge *p, const char *scratch, const char *password, struct zerr *err)
{
	_cleanup_free_ char *initdb = NULL, *initlog = NULL;
	if (asprintf(&initdb, "%s/initdb", PGE_BINDIR) < 0 || asprintf(&initlog, "%s/initdb.log", p->pg_dir) < 0)
		return zerr_set(err, -ENOMEM, "out of memory");
	_cleanup_close_ int logfd = open(initlog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (logfd < 0)
		return zerr_set(err, -errno, "open %s: %s", initlog, strerror(errno));
	char line[2 * PASSWORD_BYTES + 2];
	snprintf(line, sizeof(line), "%s\n", password);
	char *const argv[] = {initdb,
	                      "-D",
	                      (char *)scratch,
	                      "-U",
	                      PGE_SUPERUSER,
	                      "--pwfile=/dev/fd/3",
	                      "--auth=scram-sha-256",
	                      "--encoding=UTF8",
	                      "--locale=C.UTF-8",
	                      "--no-instructions",
	                      NULL};
	pid_t pid;
	int r = spawn_as_postgres(&p->user, argv, logfd, line, SIGKILL, scratch, &pid, err);
	explicit_bzero(line, sizeof(line));
	if (r < 0)
		return r;
	int st = 0;
	r = sys_wait_child(pid, PGE_INITDB_TIMEOUT_S * 1000L, &st);
	if (r == -ETIMEDOUT) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return zerr_set(err, -ETIMEDOUT, "initdb did not finish within %d s", PGE_INITDB_TIMEOUT_S);
	}
	if (r < 0)
		return zerr_set(err, r, "wait for initdb: %s", strerror(-r));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char how[64], tail[320];
		sys_describe_status(st, how, sizeof(how));
		sys_log_tail(initlog, 0, tail, sizeof(tail));
		return zerr_set(err, -EIO, "initdb failed (%s): %s", how, tail);
	}
	return 0;
}

/* initdb into a scratch directory renamed into place once complete: a
 * "data" directory is always a whole cluster, and an interrupted first
 * start simply starts over. */
static int run_initdb(struct pge *p, struct zerr *err)
{
	_cleanup_free_ char *scratch = NULL, *pwpath = NULL;
	if (asprintf(&scratch, "%s/data.init", p->pg_dir) < 0 ||
	    asprintf(&pwpath, "%s/superuser.password", p->pg_dir) < 0)
		return zerr_set(err, -ENOMEM, "out of memory");
	int r = rm_rf(scratch);
	if (r < 0)
		return zerr_set(err, r, "remove the interrupted %s: %s", scratch, strerror(-r));
	r = sys_ensure_dir(scratch, 0700, p->user.uid, p->user.gid, err);
	if (r < 0)
		return r;
	char password[2 * PASSWORD_BYTES + 1];
	r = make_password(password, err);
	if (r < 0)
		return r;
	r = initdb_with(p, scratch, password, err);
	if (r == 0)
		r = write_file_atomic(pwpath, password, 0600, 0, 0, err);
	explicit_bzero(password, sizeof(password));
	if (r < 0)
		return r;
	if (rename(scratch, p->data_dir) < 0)
		return zerr_set(err, -errno, "rename %s to %s: %s", scratch, p->data_dir, strerror(errno));
	p->created = true;
	return 0;
}

/* Authentication is this module's, rewritten at every start so that it
 * always says what pgembed.h promises. */
static int write_auth_config(struct pge *p, struct zerr *err)
{
	static const char hba[] = "# Rewritten by zmeshd at every start.\n"
	                          "# The superuser: peer authentication only, for the OS users of pg_ident.conf.\n"
	                          "local all " PGE_SUPERUSER " peer map=zmesh\n"
	                          "# The daemon's API process, unprivileged: its own OS user, its own role.\n"
	                          "local all " PGE_API_ROLE " peer map=zmesh\n"
	                          "# Every other role (the projects' roles, used from sandboxes): its password.\n"
	                          "local all all scram-sha-256\n";
	static const char ident[] = "# Rewritten by zmeshd at every start.\n"
	                            "zmesh root " PGE_SUPERUSER "\n"
	                            "zmesh " PGE_SUPERUSER " " PGE_SUPERUSER "\n"
	                            "zmesh " PGE_API_ROLE " " PGE_API_ROLE "\n";
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/pg_hba.conf", p->data_dir);
	int r = write_file_atomic(path, hba, 0600, p->user.uid, p->user.gid, err);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/pg_ident.conf", p->data_dir);
	return write_file_atomic(path, ident, 0600, p->user.uid, p->user.gid, err);
}

/* ---- start and stop ------------------------------------------------------ */

static int take_lock(struct pge *p, struct zerr *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/owner.lock", p->pg_dir);
	_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0)
		return zerr_set(err, -errno, "open %s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK)
			return zerr_set(err, -errno, "lock %s: %s", path, strerror(errno));
		pid_t holder = lock_file_pid(path);
		return zerr_set(err, -EBUSY, "another zmeshd (pid %d) runs the cluster under %s", (int)holder,
		                p->pg_dir);
	}
	char line[32];
	int len = snprintf(line, sizeof(line), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, line, (size_t)len, 0) != len)
		return zerr_set(err, -errno, "write %s: %s", path, strerror(errno));
	p->lock_fd = TAKE_FD(fd);
	return 0;
}

static int open_server_log(struct pge *p, struct zerr *err)
{
	struct stat st;
	if (stat(p->log_path, &st) == 0 && st.st_size > LOG_ROTATE_SIZE) {
		char old[PATH_MAX];
		snprintf(old, sizeof(old), "%s.1", p->log_path);
		if (rename(p->log_path, old) < 0)
			return zerr_set(err, -errno, "rotate %s: %s", p->log_path, strerror(errno));
	}
	/* Opened by root and inherited: postgres writes it without being
	 * able to open (or read) it. */
	int fd = open(p->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0)
		return zerr_set(err, -errno, "open %s: %s", p->log_path, strerror(errno));
	return fd;
}

static void kill_now(struct pge *p)
{
	if (p->pid <= 0)
		return;
	kill(p->pid, SIGQUIT);
	int st;
	if (sys_wait_child(p->pid, 5000, &st) < 0) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
	}
	p->pid = 0;
}

static int start_postgres(struct pge *p, struct zerr *err)
{
	_cleanup_free_ char *postgres = NULL, *sockdirs = NULL;
	if (asprintf(&postgres, "%s/postgres", PGE_BINDIR) < 0 ||
	    asprintf(&sockdirs, "unix_socket_directories=%s", p->run_dir) < 0)
		return zerr_set(err, -ENOMEM, "out of memory");
	int r = open_server_log(p, err);
	if (r < 0)
		return r;
	_cleanup_close_ int logfd = r;
	/* Errors quote what this start wrote, not an earlier run's lines. */
	off_t log_from = lseek(logfd, 0, SEEK_END);
	if (log_from < 0)
		log_from = 0;
	char port[32];
	snprintf(port, sizeof(port), "port=%d", PGE_PORT);
	char *const argv[] = {postgres,
	                      "-D",
	                      p->data_dir,
	                      "-c",
	                      "listen_addresses=",
	                      "-c",
	                      sockdirs,
	                      "-c",
	                      "unix_socket_permissions=0777",
	                      "-c",
	                      port,
	                      "-c",
	                      "max_connections=" MAX_CONNECTIONS,
	                      "-c",
	                      "logging_collector=off",
	                      "-c",
	                      "cluster_name=zmesh",
	                      NULL};
	/* Settings on the command line win over postgresql.conf and ALTER
	 * SYSTEM: whatever is configured inside, no TCP listener. */
	pid_t pid;
	/* SIGINT on zmeshd's death: a fast shutdown, not an orphan. */
	r = spawn_as_postgres(&p->user, argv, logfd, NULL, SIGINT, p->data_dir, &pid, err);
	if (r < 0)
		return r;
	p->pid = pid;

	char conninfo[PATH_MAX + 128];
	snprintf(conninfo, sizeof(conninfo), "host=%s port=%d user=%s dbname=postgres connect_timeout=2", p->run_dir,
	         PGE_PORT, PGE_SUPERUSER);
	uint64_t deadline = sys_now_ms() + PGE_READY_TIMEOUT_S * 1000u;
	for (;;) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			p->pid = 0;
			char how[64], tail[320];
			sys_describe_status(st, how, sizeof(how));
			sys_log_tail(p->log_path, log_from, tail, sizeof(tail));
			return zerr_set(err, -EIO, "postgres exited during start (%s): %s", how, tail);
		}
		if (PQping(conninfo) == PQPING_OK)
			return 0;
		if (sys_now_ms() >= deadline)
			break;
		sys_sleep_ms(50);
	}
	kill_now(p);
	char tail[320];
	sys_log_tail(p->log_path, log_from, tail, sizeof(tail));
	return zerr_set(err, -ETIMEDOUT, "postgres not ready within %d s: %s", PGE_READY_TIMEOUT_S, tail);
}

static int set_paths(struct pge *p, const char *state_dir, struct zerr *err)
{
	char abs[PATH_MAX];
	if (!realpath(state_dir, abs))
		return zerr_set(err, -errno, "resolve %s: %s", state_dir, strerror(errno));
	if (!path_chars_ok(abs))
		return zerr_set(err, -EINVAL,
		                "state directory %s: whitespace, quotes, backslashes and commas are not supported",
		                abs);
	if (strlen(abs) + strlen("/pg/run" SOCKET_NAME) >= SUN_PATH_SIZE)
		return zerr_set(err, -ENAMETOOLONG, "state directory %s is too long for a unix socket path (%zu bytes)",
		                abs, SUN_PATH_SIZE - 1);
	if (!(p->state_dir = strdup(abs)) || asprintf(&p->pg_dir, "%s/pg", abs) < 0 ||
	    asprintf(&p->data_dir, "%s/pg/data", abs) < 0 || asprintf(&p->run_dir, "%s/pg/run", abs) < 0 ||
	    asprintf(&p->log_path, "%s/pg/server.log", abs) < 0)
		return zerr_set(err, -ENOMEM, "out of memory");
	return 0;
}

int pge_start(const char *state_dir, struct pge **ret, struct zerr *err)
{
	if (!state_dir || !state_dir[0])
		return zerr_set(err, -EINVAL, "no state directory");
	if (strnlen(state_dir, PATH_MAX) >= PATH_MAX)
		return zerr_set(err, -ENAMETOOLONG, "state directory path too long");
	if (geteuid() != 0)
		return zerr_set(err, -EPERM,
		                "the embedded PostgreSQL needs root (it runs as the %s user); "
		                "or set DATABASE_URL",
		                PGE_SUPERUSER);
	char bin[PATH_MAX];
	const char *progs[] = {"initdb", "postgres"};
	for (size_t i = 0; i < ELEMENTSOF(progs); i++) {
		snprintf(bin, sizeof(bin), "%s/%s", PGE_BINDIR, progs[i]);
		if (access(bin, X_OK) < 0)
			return zerr_set(err, -errno, "%s: %s (install PostgreSQL 15, or set DATABASE_URL)", bin,
			                strerror(errno));
	}

	struct pge *p = calloc(1, sizeof(*p));
	if (!p)
		return zerr_set(err, -ENOMEM, "out of memory");
	p->lock_fd = -1;
	int r = sys_user_lookup(PGE_SUPERUSER, "PostgreSQL",
	                        "install PostgreSQL " PGE_BINDIR ", or set DATABASE_URL to use another cluster",
	                        &p->user, err);
	if (r < 0)
		goto fail;
	/* Before anything is created, on the path as given; repeated on the
	 * resolved path. */
	if (!path_chars_ok(state_dir)) {
		r = zerr_set(err, -EINVAL,
		             "state directory %s: whitespace, quotes, backslashes and commas are not supported",
		             state_dir);
		goto fail;
	}
	if (state_dir[0] == '/' && strlen(state_dir) + strlen("/pg/run" SOCKET_NAME) >= SUN_PATH_SIZE) {
		r = zerr_set(err, -ENAMETOOLONG, "state directory %s is too long for a unix socket path", state_dir);
		goto fail;
	}
	r = mkdir_p(state_dir, 0711, err);
	if (r < 0)
		goto fail;
	r = set_paths(p, state_dir, err);
	if (r < 0)
		goto fail;

	/* The postgres user (and sandboxes, for the socket) must pass through
	 * the state directory; listing it is nobody's business. */
	struct stat st;
	if (stat(p->state_dir, &st) < 0) {
		r = zerr_set(err, -errno, "stat %s: %s", p->state_dir, strerror(errno));
		goto fail;
	}
	if ((st.st_mode & 0011) != 0011 && chmod(p->state_dir, (st.st_mode & 07777) | 0011) < 0) {
		r = zerr_set(err, -errno, "chmod %s: %s", p->state_dir, strerror(errno));
		goto fail;
	}
	r = sys_ensure_dir(p->pg_dir, 0755, 0, 0, err);
	if (r < 0)
		goto fail;
	r = take_lock(p, err);
	if (r < 0)
		goto fail;
	r = sys_ensure_dir(p->run_dir, 0755, p->user.uid, p->user.gid, err);
	if (r < 0)
		goto fail;

	char version[PATH_MAX];
	snprintf(version, sizeof(version), "%s/PG_VERSION", p->data_dir);
	struct stat dst;
	if (lstat(p->data_dir, &dst) < 0) {
		if (errno != ENOENT) {
			r = zerr_set(err, -errno, "stat %s: %s", p->data_dir, strerror(errno));
			goto fail;
		}
		r = run_initdb(p, err);
		if (r < 0)
			goto fail;
	} else if (!S_ISDIR(dst.st_mode) || access(version, F_OK) < 0) {
		r = zerr_set(err, -EINVAL, "%s exists but holds no PostgreSQL cluster; move it away to start afresh",
		             p->data_dir);
		goto fail;
	}
	r = clear_leftovers(p, err);
	if (r < 0)
		goto fail;
	r = write_auth_config(p, err);
	if (r < 0)
		goto fail;
	r = start_postgres(p, err);
	if (r < 0)
		goto fail;
	*ret = p;
	return 0;
fail:
	kill_now(p);
	pge_free(p);
	return r;
}

const char *pge_socket_dir(const struct pge *p)
{
	return p ? p->run_dir : NULL;
}

pid_t pge_pid(const struct pge *p)
{
	return p ? p->pid : 0;
}

bool pge_created(const struct pge *p)
{
	return p && p->created;
}

/* Append a conninfo value in single quotes, escaping ' and \. */
static bool put_quoted(char *buf, size_t n, size_t *off, const char *s)
{
	if (*off + 1 >= n)
		return false;
	buf[(*off)++] = '\'';
	for (; *s; s++) {
		if (*s == '\'' || *s == '\\') {
			if (*off + 1 >= n)
				return false;
			buf[(*off)++] = '\\';
		}
		if (*off + 1 >= n)
			return false;
		buf[(*off)++] = *s;
	}
	if (*off + 1 >= n)
		return false;
	buf[(*off)++] = '\'';
	buf[*off] = '\0';
	return true;
}

static bool put_str(char *buf, size_t n, size_t *off, const char *s)
{
	size_t len = strlen(s);
	if (*off + len >= n)
		return false;
	memcpy(buf + *off, s, len + 1);
	*off += len;
	return true;
}

int pge_conninfo(const struct pge *p, const char *dbname, char *buf, size_t n)
{
	return pge_conninfo_as(p, PGE_SUPERUSER, dbname, buf, n);
}

static int conninfo_in(const char *run_dir, const char *user, const char *dbname, char *buf, size_t n)
{
	if (!buf || n == 0)
		return -EINVAL;
	if (!dbname)
		dbname = "postgres";
	/* NAMEDATALEN - 1: the server would silently truncate a longer name
	 * and connect to another database. */
	if (!dbname[0] || strlen(dbname) > 63)
		return -EINVAL;
	char port[128];
	if (!user || !user[0] || strlen(user) > 63 ||
	    strspn(user, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(user))
		return -EINVAL;
	snprintf(port, sizeof(port), " port=%d user=%s dbname=", PGE_PORT, user);
	size_t off = 0;
	if (!put_str(buf, n, &off, "host=") || !put_quoted(buf, n, &off, run_dir) || !put_str(buf, n, &off, port) ||
	    !put_quoted(buf, n, &off, dbname)) {
		buf[0] = '\0';
		return -ENOSPC;
	}
	return 0;
}

int pge_conninfo_as(const struct pge *p, const char *user, const char *dbname, char *buf, size_t n)
{
	return p ? conninfo_in(p->run_dir, user, dbname, buf, n) : -EINVAL;
}

int pge_conninfo_running(const char *state_dir, const char *dbname, char *buf, size_t n)
{
	char abs[PATH_MAX], run_dir[PATH_MAX + 16], sock[PATH_MAX + 48];
	if (!state_dir || !realpath(state_dir, abs))
		return -ENOENT;
	snprintf(run_dir, sizeof(run_dir), "%s/pg/run", abs);
	snprintf(sock, sizeof(sock), "%s%s", run_dir, SOCKET_NAME);
	/* The postmaster removes its socket when it stops; a socket left by
	 * one that was killed is found out by the connection. */
	struct stat st;
	if (lstat(sock, &st) < 0 || !S_ISSOCK(st.st_mode))
		return -ENOENT;
	return conninfo_in(run_dir, PGE_SUPERUSER, dbname, buf, n);
}

void pge_forget(struct pge *p)
{
	pge_free(p);
}

int pge_check(struct pge *p, struct zerr *err)
{
	if (!p)
		return zerr_set(err, -EINVAL, "no cluster");
	return sys_check_child(&p->pid, "postgres", p->log_path, err);
}

int pge_stop(struct pge *p)
{
	if (!p)
		return 0;
	int r = 0;
	if (p->pid <= 0) {
		r = -ESRCH;
	} else {
		static const struct {
			int sig;
			long wait_ms;
		} steps[] = {{SIGINT, PGE_STOP_TIMEOUT_S * 1000L}, {SIGQUIT, 5000}, {SIGKILL, 60000}};
		int st = 0;
		r = -ETIMEDOUT;
		for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
			kill(p->pid, steps[i].sig);
			int w = sys_wait_child(p->pid, steps[i].wait_ms, &st);
			if (w == 0) {
				if (i > 0)
					r = -ETIMEDOUT;
				else
					r = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
				break;
			}
			if (w != -ETIMEDOUT) {
				r = -ESRCH; /* reaped by someone else */
				break;
			}
		}
		p->pid = 0;
	}
	pge_free(p);
	return r;
}
