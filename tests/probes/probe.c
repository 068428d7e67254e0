/*
 * zmesh-probe: a small hostile program for the sandbox's end-to-end tests.
 *
 * Every subcommand does one thing a function could try inside the sandbox and prints
 * one JSON object on stdout describing what the kernel let it do. The tests decide what
 * is acceptable; the probe only reports. Arguments are validated and every loop is
 * bounded, so that running the probe outside a sandbox (the tests' control case) cannot
 * take the host down.
 *
 *   status                 identity, privileges, namespaces as seen from inside
 *   syscalls               tries each syscall family the seccomp policy must refuse
 *   net HOST PORT          TCP connect with a 3 s bound
 *   write PATH BYTES       creates PATH and writes BYTES (K, M, G suffixes) into it
 *   read PATH MAX          reads up to MAX bytes of PATH
 *   memhog MB              allocates and touches MB MiB, one MiB at a time
 *   forkbomb [MAX]         forks sleeping children until fork fails (at most MAX)
 *   fds [MAX]              opens descriptors until open fails (at most MAX)
 *   spin                   burns CPU forever
 *   burn MS                burns CPU for MS ms of wall time, reports own CPU time
 *   daemonize MARKER       leaves a detached grandchild named MARKER behind
 *   killall                kill(-1, SIGKILL)
 *   sleep MS               sleeps
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/userfaultfd.h>
#include <linux/vm_sockets.h>
#include <netdb.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROBE_MAX_LIST           4096
#define PROBE_CONNECT_TIMEOUT_MS 3000
#define PROBE_DEFAULT_FORKS      4096
#define PROBE_DEFAULT_FDS        65536
#define PROBE_MAX_HOG_MB         (1024 * 1024)
#define PROBE_MAX_SLEEP_MS       (24 * 3600 * 1000LL)
#define PROBE_DAEMON_LIFETIME_S  600
#define PROBE_ABSENT_PATH        "/nonexistent-zmesh-probe"

static void usage(void)
{
	fputs("usage: zmesh-probe status|syscalls|net HOST PORT|write PATH BYTES|read PATH MAX|\n"
	      "       memhog MB|forkbomb [MAX]|fds [MAX]|spin|burn MS|daemonize MARKER|\n"
	      "       killall|sleep MS\n",
	      stderr);
	exit(2);
}

static const char *errno_name(int e)
{
	static char buf[32];
	const char *n = strerrorname_np(e);

	if (n)
		return n;
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

/*
 * Strings that reach the output come from the environment and the kernel, so they may hold
 * any byte. Bytes >= 0x80 are written as \u00XX: the result is always valid JSON (and valid
 * UTF-8) even when the input is not, at the price of reading non-ASCII text as Latin-1.
 */
static void json_str(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}

static void json_errno(int e)
{
	if (e)
		json_str(errno_name(e));
	else
		fputs("null", stdout);
}

/* Parses a non-negative decimal with an optional K, M or G suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t *ret)
{
	char *end = NULL;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -errno;
	if (*end == 'K')
		shift = 10;
	else if (*end == 'M')
		shift = 20;
	else if (*end == 'G')
		shift = 30;
	else if (*end)
		return -EINVAL;
	if (shift && end[1])
		return -EINVAL;
	if (v > (UINT64_MAX >> shift))
		return -ERANGE;
	*ret = (uint64_t)v << shift;
	return 0;
}

static uint64_t arg_size(const char *s, uint64_t max)
{
	uint64_t v = 0;

	if (parse_size(s, &v) < 0 || v > max) {
		fprintf(stderr, "zmesh-probe: bad number '%s' (max %" PRIu64 ")\n", s, max);
		exit(2);
	}
	return v;
}

static int64_t now_ms(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t self_cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

static int cmd_sleep_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return 0;
}

/* ---- status ------------------------------------------------------------------------ */

static void status_proc_fields(void)
{
	static const char *const wanted[] = {"Uid",    "Gid",    "Groups", "CapInh",     "CapPrm",
	                                     "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"};
	char line[1024];
	FILE *f = fopen("/proc/self/status", "re");

	fputs("\"proc_status\": {", stdout);
	if (!f) {
		fputs("}", stdout);
		return;
	}
	bool first = true;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		*colon = '\0';
		for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
			if (strcmp(line, wanted[i]) != 0)
				continue;
			char *v = colon + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			v[strcspn(v, "\n")] = '\0';
			/* Uid and Gid hold tab-separated real, effective, saved, fs ids. */
			for (char *t = v; *t; t++)
				if (*t == '\t')
					*t = ' ';
			printf("%s", first ? "" : ", ");
			json_str(line);
			fputs(": ", stdout);
			json_str(v);
			first = false;
		}
	}
	fclose(f);
	fputs("}", stdout);
}

static void status_environ(void)
{
	extern char **environ;
	bool first = true;

	fputs("\"environ\": {", stdout);
	for (char **e = environ; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		if (!eq)
			continue;
		char *key = strndup(*e, (size_t)(eq - *e));
		if (!key)
			continue;
		printf("%s", first ? "" : ", ");
		json_str(key);
		fputs(": ", stdout);
		json_str(eq + 1);
		free(key);
		first = false;
	}
	fputs("}", stdout);
}

static void status_pids(void)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int n = 0;

	fputs("\"pids\": [", stdout);
	while (d && (de = readdir(d)) && n < PROBE_MAX_LIST) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		printf("%s%ld", n ? ", " : "", pid);
		n++;
	}
	if (d)
		closedir(d);
	fputs("]", stdout);
}

/*
 * /proc/net is /proc/self/net, i.e. the interfaces of the reader's network namespace; no
 * socket is needed, so this works under any seccomp policy.
 */
static void status_interfaces(void)
{
	char line[512];
	FILE *f = fopen("/proc/net/dev", "re");
	int n = 0;

	fputs("\"interfaces\": [", stdout);
	while (f && fgets(line, sizeof(line), f) && n < PROBE_MAX_LIST) {
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		*colon = '\0';
		char *name = line + strspn(line, " ");
		printf("%s", n ? ", " : "");
		json_str(name);
		n++;
	}
	if (f)
		fclose(f);
	fputs("]", stdout);
}

static void status_proc1_environ(void)
{
	char buf[4096];
	ssize_t total = 0, r = 0;
	int err = 0;
	int fd = open("/proc/1/environ", O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		err = errno;
	} else {
		while ((r = read(fd, buf, sizeof(buf))) > 0 && total < (1 << 20))
			total += r;
		if (r < 0)
			err = errno;
		close(fd);
	}
	printf("\"proc1_environ\": {\"readable\": %s, \"bytes\": %zd, \"errno\": ",
	       (fd >= 0 && r >= 0) ? "true" : "false", total);
	json_errno(err);
	fputs("}", stdout);
}

static void status_dev(void)
{
	DIR *d = opendir("/dev");
	struct dirent *de;
	int n = 0;

	fputs("\"dev\": [", stdout);
	while (d && (de = readdir(d)) && n < PROBE_MAX_LIST) {
		struct stat st;
		const char *type = "other";

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISCHR(st.st_mode))
			type = "char";
		else if (S_ISBLK(st.st_mode))
			type = "block";
		else if (S_ISDIR(st.st_mode))
			type = "dir";
		else if (S_ISLNK(st.st_mode))
			type = "link";
		else if (S_ISREG(st.st_mode))
			type = "file";
		printf("%s{\"name\": ", n ? ", " : "");
		json_str(de->d_name);
		printf(", \"type\": \"%s\", \"major\": %u, \"minor\": %u}", type, major(st.st_rdev), minor(st.st_rdev));
		n++;
	}
	if (d)
		closedir(d);
	fputs("]", stdout);
}

static int cmd_status(void)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	gid_t groups[256];
	struct utsname un;
	int ngroups = getgroups(256, groups);

	getresuid(&ruid, &euid, &suid);
	getresgid(&rgid, &egid, &sgid);
	if (uname(&un) < 0)
		strcpy(un.nodename, "");

	printf("{\"uid\": [%u, %u, %u], \"gid\": [%u, %u, %u], \"groups\": [", ruid, euid, suid, rgid, egid, sgid);
	for (int i = 0; i < ngroups; i++)
		printf("%s%u", i ? ", " : "", groups[i]);
	printf("], \"pid\": %d, \"ppid\": %d, \"hostname\": ", getpid(), getppid());
	json_str(un.nodename);
	fputs(", ", stdout);
	status_proc_fields();
	fputs(", ", stdout);
	status_environ();
	fputs(", ", stdout);
	status_pids();
	fputs(", ", stdout);
	status_interfaces();
	fputs(", ", stdout);
	status_proc1_environ();
	fputs(", ", stdout);
	status_dev();
	fputs("}\n", stdout);
	return 0;
}

/* ---- syscalls ---------------------------------------------------------------------- */

/*
 * Each attempt uses arguments chosen so that, where the kernel allows it, the call fails
 * for a reason other than EPERM (a missing path, an invalid value) or succeeds harmlessly
 * even for host root. That way EPERM inside the sandbox points at the seccomp filter, and
 * the same attempts run outside as root show which results are the filter's doing.
 */

static bool first_result = true;

static void report(const char *name, long r, int err)
{
	printf("%s", first_result ? "" : ", ");
	json_str(name);
	fputs(": ", stdout);
	if (r < 0)
		json_str(errno_name(err));
	else
		json_str("ok");
	first_result = false;
}

#define TRY(name, expr)                    \
	do {                               \
		errno = 0;                 \
		long r_ = (long)(expr);    \
		report((name), r_, errno); \
	} while (0)

/* Calls that would change the probe itself (namespaces, tracer) run in a throwaway child. */
static long in_child(long (*fn)(void), int *ret_errno)
{
	int pfd[2];
	int err = 0;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0) {
		*ret_errno = errno;
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		*ret_errno = errno;
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		errno = 0;
		long r = fn();
		int e = r < 0 ? errno : 0;
		if (write(pfd[1], &e, sizeof(e)) != sizeof(e))
			_exit(1);
		_exit(0);
	}
	close(pfd[1]);
	if (read(pfd[0], &err, sizeof(err)) != sizeof(err))
		err = ECHILD;
	close(pfd[0]);
	while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
		;
	*ret_errno = err;
	return err ? -1 : 0;
}

#define TRY_CHILD(name, fn)                    \
	do {                                   \
		int e_ = 0;                    \
		long r_ = in_child((fn), &e_); \
		report((name), r_, e_);        \
	} while (0)

static long do_unshare_user(void)
{
	return unshare(CLONE_NEWUSER);
}
static long do_unshare_ns(void)
{
	return unshare(CLONE_NEWNS);
}
static long do_unshare_net(void)
{
	return unshare(CLONE_NEWNET);
}
static long do_unshare_pid(void)
{
	return unshare(CLONE_NEWPID);
}
static long do_traceme(void)
{
	return ptrace(PTRACE_TRACEME, 0, NULL, NULL);
}

/* A fork-like raw clone: the child shares nothing and leaves at once. */
static long clone_with(unsigned long flags, int *ret_errno)
{
	long pid = syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);

	if (pid == 0)
		_exit(0);
	if (pid < 0) {
		*ret_errno = errno;
		return -1;
	}
	while (waitpid((pid_t)pid, NULL, __WALL) < 0 && errno == EINTR)
		;
	return 0;
}

#define TRY_CLONE(name, flags)                      \
	do {                                        \
		int e_ = 0;                         \
		long r_ = clone_with((flags), &e_); \
		report((name), r_, e_);             \
	} while (0)

static long do_ptrace_attach(int *ret_errno)
{
	pid_t pid = fork();
	long r;

	if (pid < 0) {
		*ret_errno = errno;
		return -1;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	errno = 0;
	r = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
	*ret_errno = errno;
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
		;
	return r;
}

static long do_process_vm(bool write_it)
{
	char src[8] = "zmesh", dst[8] = {0};
	struct iovec local = {.iov_base = write_it ? src : dst, .iov_len = sizeof(src)};
	struct iovec remote = {.iov_base = write_it ? dst : src, .iov_len = sizeof(src)};

	if (write_it)
		return syscall(SYS_process_vm_writev, getpid(), &local, 1, &remote, 1, 0);
	return syscall(SYS_process_vm_readv, getpid(), &local, 1, &remote, 1, 0);
}

static long do_setns_self(void)
{
	int fd = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
	long r;
	int e;

	if (fd < 0)
		return -1;
	r = setns(fd, CLONE_NEWUTS);
	e = errno;
	close(fd);
	errno = e;
	return r;
}

static long close_if_fd(long r)
{
	int e = errno;

	if (r >= 0)
		close((int)r);
	errno = e;
	return r;
}

static long do_perf_event_open(void)
{
	struct perf_event_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_TASK_CLOCK;
	attr.disabled = 1;
	attr.exclude_kernel = 1;
	attr.exclude_hv = 1;
	return close_if_fd(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
}

static long do_io_uring_setup(void)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	return close_if_fd(syscall(SYS_io_uring_setup, 1, &p));
}

static long do_bpf(void)
{
	/* BPF_MAP_CREATE with an all-zero attribute block: map type 0 is invalid. */
	char attr[128] = {0};

	return close_if_fd(syscall(SYS_bpf, 0, attr, sizeof(attr)));
}

static long do_open_by_handle(void)
{
	struct {
		struct file_handle fh;
		unsigned char bytes[16];
	} h;

	memset(&h, 0, sizeof(h));
	h.fh.handle_bytes = 8;
	return close_if_fd(syscall(SYS_open_by_handle_at, AT_FDCWD, &h.fh, O_RDONLY));
}

static long do_clock_settime(void)
{
	/* An invalid time: the kernel rejects it before any privilege check. */
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 2000000000L};

	return syscall(SYS_clock_settime, CLOCK_REALTIME, &ts);
}

static long do_settimeofday(void)
{
	struct timeval tv = {.tv_sec = 0, .tv_usec = 2000000};

	return syscall(SYS_settimeofday, &tv, NULL);
}

static long do_clock_adjtime(void)
{
	/* modes 0 only reads the clock state, which anybody may do. */
	struct timex tx;

	memset(&tx, 0, sizeof(tx));
	return syscall(SYS_clock_adjtime, CLOCK_REALTIME, &tx);
}

static long do_clone3(void)
{
	/* size 0 is invalid: the kernel answers EINVAL unless a filter answers first. */
	uint64_t args[11] = {0};

	return syscall(SYS_clone3, args, (size_t)0);
}

static int cmd_syscalls(void)
{
	int e = 0;
	long r;

	fputs("{", stdout);

	TRY("mount", syscall(SYS_mount, "none", PROBE_ABSENT_PATH, "tmpfs", 0UL, NULL));
	TRY("umount2", syscall(SYS_umount2, PROBE_ABSENT_PATH, 0));
	TRY("pivot_root", syscall(SYS_pivot_root, PROBE_ABSENT_PATH "-a", PROBE_ABSENT_PATH "-b"));

	TRY("unshare_none", unshare(0));
	TRY_CHILD("unshare_newuser", do_unshare_user);
	TRY_CHILD("unshare_newns", do_unshare_ns);
	TRY_CHILD("unshare_newnet", do_unshare_net);
	TRY_CHILD("unshare_newpid", do_unshare_pid);
	TRY("setns_badfd", setns(-1, 0));
	TRY("setns_self_uts", do_setns_self());

	TRY_CLONE("clone_newuser", CLONE_NEWUSER);
	TRY_CLONE("clone_newns", CLONE_NEWNS);
	TRY_CLONE("clone_newpid", CLONE_NEWPID);
	TRY_CLONE("clone_newnet", CLONE_NEWNET);
	TRY_CLONE("clone_newuts", CLONE_NEWUTS);
	TRY_CLONE("clone_newipc", CLONE_NEWIPC);
	TRY_CLONE("clone_newcgroup", CLONE_NEWCGROUP);
	TRY("clone3", do_clone3());

	TRY_CHILD("ptrace_traceme", do_traceme);
	r = do_ptrace_attach(&e);
	report("ptrace_attach", r, e);
	TRY("process_vm_readv", do_process_vm(false));
	TRY("process_vm_writev", do_process_vm(true));

	TRY("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0));
	TRY("add_key", syscall(SYS_add_key, "user", "zmesh-probe", "x", (size_t)1, KEY_SPEC_PROCESS_KEYRING));
	TRY("request_key", syscall(SYS_request_key, "user", "zmesh-probe-absent", NULL, KEY_SPEC_PROCESS_KEYRING));

	TRY("bpf", do_bpf());
	TRY("perf_event_open", do_perf_event_open());
	TRY("userfaultfd", close_if_fd(syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY)));
	TRY("io_uring_setup", do_io_uring_setup());
	TRY("io_uring_enter", syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0));
	TRY("io_uring_register", syscall(SYS_io_uring_register, -1, 0, NULL, 0));

	/* Unknown flag bits and too many segments: never loads anything, even for root. */
	TRY("kexec_load", syscall(SYS_kexec_load, 0UL, 1000UL, NULL, 0x4000UL));
	TRY("kexec_file_load", syscall(SYS_kexec_file_load, -1, -1, 0UL, "", 0UL));
	TRY("init_module", syscall(SYS_init_module, NULL, 0UL, ""));
	TRY("finit_module", syscall(SYS_finit_module, -1, "", 0));
	TRY("delete_module", syscall(SYS_delete_module, "zmesh_probe_absent", O_NONBLOCK));

	TRY("syslog", syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0));
	TRY("chroot", chroot(PROBE_ABSENT_PATH));
	TRY("open_by_handle_at", do_open_by_handle());
	TRY("acct", acct(PROBE_ABSENT_PATH));
	TRY("swapon", syscall(SYS_swapon, PROBE_ABSENT_PATH, 0));
	TRY("swapoff", syscall(SYS_swapoff, PROBE_ABSENT_PATH));
	/* Wrong magic numbers: rejected by the kernel after its privilege check. */
	TRY("reboot", syscall(SYS_reboot, 0, 0, LINUX_REBOOT_CMD_CAD_OFF, NULL));
	TRY("clock_settime", do_clock_settime());
	TRY("settimeofday", do_settimeofday());
	TRY("clock_adjtime", do_clock_adjtime());
	TRY("socket_vsock", close_if_fd(socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0)));

	fputs("}\n", stdout);
	return 0;
}

/* ---- net --------------------------------------------------------------------------- */

static int cmd_net(const char *host, const char *port_s)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	uint64_t port = arg_size(port_s, 65535);
	int err = 0, fd;

	if (port == 0)
		usage();
	if (getaddrinfo(host, port_s, &hints, &ai) != 0 || !ai) {
		fprintf(stderr, "zmesh-probe: not a numeric address: %s\n", host);
		return 2;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = errno;
	} else if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		err = errno;
		if (err == EINPROGRESS) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};
			int n = poll(&pfd, 1, PROBE_CONNECT_TIMEOUT_MS);
			socklen_t len = sizeof(err);
			if (n == 0)
				err = ETIMEDOUT;
			else if (n < 0)
				err = errno;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
				err = errno;
		}
	}
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	fputs("{\"result\": ", stdout);
	json_str(err ? errno_name(err) : "ok");
	fputs("}\n", stdout);
	return 0;
}

/* ---- files ------------------------------------------------------------------------- */

static int cmd_write(const char *path, const char *bytes_s)
{
	static char chunk[64 * 1024];
	uint64_t want = arg_size(bytes_s, UINT64_C(1) << 40);
	uint64_t written = 0;
	int err = 0;
	const char *stage = "open";
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	memset(chunk, 'z', sizeof(chunk));
	if (fd < 0) {
		err = errno;
	} else {
		stage = "write";
		while (written < want) {
			size_t n = want - written < sizeof(chunk) ? (size_t)(want - written) : sizeof(chunk);
			ssize_t r = write(fd, chunk, n);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				err = errno;
				break;
			}
			written += (uint64_t)r;
		}
		/* Quota errors on some filesystems only surface when data is flushed. */
		if (!err) {
			stage = "fsync";
			if (fsync(fd) < 0)
				err = errno;
		}
		if (close(fd) < 0 && !err) {
			stage = "close";
			err = errno;
		}
	}
	fputs("{\"path\": ", stdout);
	json_str(path);
	printf(", \"written\": %" PRIu64 ", \"stage\": \"%s\", \"errno\": ", written, stage);
	json_errno(err);
	fputs("}\n", stdout);
	return 0;
}

static int cmd_read(const char *path, const char *max_s)
{
	char buf[64 * 1024];
	uint64_t max = arg_size(max_s, UINT64_C(1) << 30);
	uint64_t total = 0;
	int err = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		err = errno;
	} else {
		while (total < max) {
			size_t n = max - total < sizeof(buf) ? (size_t)(max - total) : sizeof(buf);
			ssize_t r = read(fd, buf, n);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				err = errno;
				break;
			}
			if (r == 0)
				break;
			total += (uint64_t)r;
		}
		close(fd);
	}
	fputs("{\"path\": ", stdout);
	json_str(path);
	printf(", \"opened\": %s, \"bytes\": %" PRIu64 ", \"errno\": ", fd >= 0 ? "true" : "false", total);
	json_errno(err);
	fputs("}\n", stdout);
	return 0;
}

static int cmd_fds(uint64_t max)
{
	uint64_t count = 0;
	int err = 0;

	while (count < max) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			err = errno;
			break;
		}
		count++;
	}
	printf("{\"count\": %" PRIu64 ", \"errno\": ", count);
	json_errno(err);
	fputs("}\n", stdout);
	return 0;
}

/* ---- resources --------------------------------------------------------------------- */

static int cmd_memhog(uint64_t mb)
{
	const size_t chunk = 1 << 20;
	uint64_t done = 0;
	int err = 0;

	/*
	 * Progress goes to stderr unbuffered so that a run killed half-way still shows how far
	 * it got; the final object on stdout only appears when every MiB was touched.
	 */
	setvbuf(stderr, NULL, _IONBF, 0);
	while (done < mb) {
		char *p = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			err = errno;
			break;
		}
		/* Non-zero bytes: pages must really be backed, not merged or left untouched. */
		for (size_t i = 0; i < chunk; i += 4096)
			p[i] = (char)(done + i / 4096 + 1);
		done++;
		if (done % 16 == 0)
			fprintf(stderr, "memhog: %" PRIu64 " MiB\n", done);
	}
	printf("{\"allocated_mb\": %" PRIu64 ", \"errno\": ", done);
	json_errno(err);
	fputs("}\n", stdout);
	return 0;
}

static int cmd_forkbomb(uint64_t max)
{
	pid_t *kids = calloc(max ? max : 1, sizeof(pid_t));
	uint64_t count = 0;
	int err = 0;

	if (!kids) {
		fprintf(stderr, "zmesh-probe: out of memory\n");
		return 1;
	}
	while (count < max) {
		pid_t pid = fork();
		if (pid < 0) {
			err = errno;
			break;
		}
		if (pid == 0) {
			/* Children must not outlive the probe if it is stopped early. */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (;;)
				pause();
		}
		kids[count++] = pid;
	}
	for (uint64_t i = 0; i < count; i++)
		kill(kids[i], SIGKILL);
	for (uint64_t i = 0; i < count; i++)
		while (waitpid(kids[i], NULL, 0) < 0 && errno == EINTR)
			;
	free(kids);
	printf("{\"count\": %" PRIu64 ", \"errno\": ", count);
	json_errno(err);
	fputs("}\n", stdout);
	return 0;
}

static int cmd_spin(void)
{
	volatile uint64_t x = 0;

	for (;;)
		x++;
	return 0;
}

static int cmd_burn(uint64_t ms)
{
	volatile uint64_t x = 0;
	int64_t start = now_ms(CLOCK_MONOTONIC);

	while (now_ms(CLOCK_MONOTONIC) - start < (int64_t)ms)
		for (int i = 0; i < 100000; i++)
			x++;
	printf("{\"wall_ms\": %" PRId64 ", \"cpu_ms\": %" PRId64 "}\n", now_ms(CLOCK_MONOTONIC) - start, self_cpu_ms());
	return 0;
}

/* ---- escape attempts --------------------------------------------------------------- */

static int cmd_daemonize(const char *marker)
{
	int pfd[2];
	char ok = 0;
	pid_t mid, daemon_pid = -1;

	if (strlen(marker) == 0 || strlen(marker) > 15) {
		fprintf(stderr, "zmesh-probe: marker must be 1..15 bytes (a process name)\n");
		return 2;
	}
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		perror("zmesh-probe: pipe");
		return 1;
	}
	mid = fork();
	if (mid < 0) {
		perror("zmesh-probe: fork");
		return 1;
	}
	if (mid == 0) {
		setsid();
		pid_t gc = fork();
		if (gc != 0) {
			if (write(pfd[1], &gc, sizeof(gc)) != sizeof(gc))
				_exit(1);
			_exit(gc < 0 ? 1 : 0);
		}
		/* The classic daemon: new session, no parent, no terminal, own name. */
		prctl(PR_SET_NAME, marker);
		int devnull = open("/dev/null", O_RDWR);
		if (devnull >= 0) {
			dup2(devnull, 0);
			dup2(devnull, 1);
			dup2(devnull, 2);
			if (devnull > 2)
				close(devnull);
		}
		char one = 1;
		if (write(pfd[1], &one, 1) != 1)
			_exit(1);
		close(pfd[1]);
		/* Bounded even if nothing kills it, so a broken sandbox cannot leak it forever. */
		sleep(PROBE_DAEMON_LIFETIME_S);
		_exit(0);
	}
	close(pfd[1]);
	if (read(pfd[0], &daemon_pid, sizeof(daemon_pid)) != sizeof(daemon_pid))
		daemon_pid = -1;
	struct pollfd p = {.fd = pfd[0], .events = POLLIN};
	if (daemon_pid > 0 && poll(&p, 1, 5000) == 1 && read(pfd[0], &ok, 1) != 1)
		ok = 0;
	close(pfd[0]);
	while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
		;
	printf("{\"daemon_pid\": %d, \"started\": %s}\n", daemon_pid, ok ? "true" : "false");
	return 0;
}

static int cmd_killall(void)
{
	/*
	 * kill(-1) as host root would take the whole machine down; inside a working sandbox the
	 * probe is never root, so refusing here only protects a control run.
	 */
	if (geteuid() == 0) {
		puts("{\"result\": \"refused-as-root\"}");
		return 2;
	}
	errno = 0;
	int r = kill(-1, SIGKILL);
	fputs("{\"result\": ", stdout);
	json_str(r < 0 ? errno_name(errno) : "ok");
	fputs("}\n", stdout);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";

	/* Output must reach the pipe even when the probe is killed right after printing. */
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (!strcmp(cmd, "status") && argc == 2)
		return cmd_status();
	if (!strcmp(cmd, "syscalls") && argc == 2)
		return cmd_syscalls();
	if (!strcmp(cmd, "net") && argc == 4)
		return cmd_net(argv[2], argv[3]);
	if (!strcmp(cmd, "write") && argc == 4)
		return cmd_write(argv[2], argv[3]);
	if (!strcmp(cmd, "read") && argc == 4)
		return cmd_read(argv[2], argv[3]);
	if (!strcmp(cmd, "memhog") && argc == 3)
		return cmd_memhog(arg_size(argv[2], PROBE_MAX_HOG_MB));
	if (!strcmp(cmd, "forkbomb") && (argc == 2 || argc == 3))
		return cmd_forkbomb(argc == 3 ? arg_size(argv[2], 1 << 20) : PROBE_DEFAULT_FORKS);
	if (!strcmp(cmd, "fds") && (argc == 2 || argc == 3))
		return cmd_fds(argc == 3 ? arg_size(argv[2], 1 << 24) : PROBE_DEFAULT_FDS);
	if (!strcmp(cmd, "spin") && argc == 2)
		return cmd_spin();
	if (!strcmp(cmd, "burn") && argc == 3)
		return cmd_burn(arg_size(argv[2], PROBE_MAX_SLEEP_MS));
	if (!strcmp(cmd, "daemonize") && argc == 3)
		return cmd_daemonize(argv[2]);
	if (!strcmp(cmd, "killall") && argc == 2)
		return cmd_killall();
	if (!strcmp(cmd, "sleep") && argc == 3)
		return cmd_sleep_ms((int64_t)arg_size(argv[2], PROBE_MAX_SLEEP_MS));
	usage();
	return 2;
}
