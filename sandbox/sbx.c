/* sbx.c - see sbx.h
 *
 * The parent prepares everything the child will need (a plan of mount steps,
 * argv, envp, candidate paths, the compiled seccomp program, an empty
 * capability set) before clone(). The child then only makes syscalls on that
 * prepared data: no allocation between clone and exec, so the same code is
 * safe in a process that has other threads' locks in an unknown state. */
#define _GNU_SOURCE
#include "sbx.h"
#include "spawner.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define SBX_PATH         512
#define SBX_SANDBOX_PATH "PATH=/usr/local/bin:/usr/bin:/bin"

/* Exit codes of init when it cannot report over its pipe. */
#define INIT_EXIT_SETUP 120

/* ---- messages from init to the parent ------------------------------------ */

enum msg_kind {
	MSG_SETUP_FAILED = 0x5a01,
	MSG_EXEC_FAILED,
	MSG_RUNNING,
	MSG_EXITED,
};

/* Fixed size and below PIPE_BUF, so every write is atomic and a read gets
 * whole messages. Still validated on receipt: the sandbox's side is hostile. */
struct sbx_msg {
	uint32_t kind;
	int32_t err;
	int32_t value; /* MSG_EXITED: wait status of the program */
	char text[244];
};
_Static_assert(sizeof(struct sbx_msg) == 256, "sbx_msg layout");

/* ---- the plan: steps that build the root, run by the child --------------- */

enum op_kind {
	OP_TMPFS,     /* mount a tmpfs on dst with data */
	OP_MKDIR,     /* mkdir dst */
	OP_SYMLINK,   /* symlink src at dst */
	OP_FILE,      /* create dst with the len bytes of src */
	OP_BIND,      /* bind src on dst (file or dir), then remount with flags */
	OP_PROC,      /* mount a new procfs on dst */
	OP_MASK_FILE, /* bind /dev/null over dst if it exists */
	OP_MASK_DIR,  /* mount an empty read-only tmpfs over dst if it exists */
	OP_RO_SELF,   /* make the existing dst read-only, if it exists */
	OP_REMOUNT_RO /* remount the tmpfs at dst read-only */
};

struct op {
	enum op_kind kind;
	bool is_file;
	unsigned long flags;
	size_t len;
	const char *src;
	const char *data;
	char dst[SBX_PATH];
	const char *inside; /* dst as seen from inside, for messages */
};

#define MAX_OPS 96

/* The descriptors the child keeps, at these numbers. */
#define CHILD_FDS      5 /* stdin, stdout, stderr, init's report pipe, go */
#define CHILD_NETNS_FD 5 /* then the net namespace to join, if any */
#define CHILD_FDS_MAX  6

struct plan {
	struct op ops[MAX_OPS];
	size_t n_ops;
	char root[SBX_PATH];
	char passwd[256];
	char group[128];
	char tmp_opts[128];
	char *argv[SBX_MAX_ARGS + 1];
	char *envp[SBX_MAX_ENV + 8];
	char *candidates[8];
	size_t n_candidates;
	char candidate_buf[8][SBX_PATH];
	struct rlimit rl[6];
	int rl_res[6];
	size_t n_rl;
	uid_t uid;
	gid_t gid;
	const char *hostname;
	const struct pol_program *policy;
	cap_t caps_empty;
	uintptr_t arg_start, arg_end; /* the argument area init inherits */
	/* stdin, stdout, stderr, info_w, go_r and, with netns, the net
	 * namespace made ahead, as the child gets them */
	int fds[CHILD_FDS_MAX];
	bool result_fd; /* sbx_spec.result_fd */
	bool netns;     /* sbx_spec.netns: join fds[CHILD_NETNS_FD] */
	uint16_t egress_port;
};

/* What /proc/1/cmdline shows inside: init's own name, nothing of its
 * parent's command line. */
static const char init_cmdline[] = "zmesh-init";

static const char hosts_file[] = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                                 "127.0.1.1\tzmesh\n";
static const char nsswitch_file[] = "passwd: files\ngroup: files\nshadow: files\nhosts: files\n"
                                    "networks: files\nprotocols: files\nservices: files\n";

static struct op *plan_add(struct plan *p, enum op_kind kind, const char *inside)
{
	if (p->n_ops >= MAX_OPS)
		return NULL;
	struct op *op = &p->ops[p->n_ops];
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	if (snprintf(op->dst, sizeof(op->dst), "%s%s", p->root, inside) >= (int)sizeof(op->dst))
		return NULL;
	op->inside = op->dst + strlen(p->root);
	p->n_ops++;
	return op;
}

#define PLAN_ADD(p, kind, inside)                                                               \
	({                                                                                      \
		struct op *_op = plan_add(p, kind, inside);                                     \
		if (!_op)                                                                       \
			return zerr_set(err, -E2BIG, "sandbox layout too large at %s", inside); \
		_op;                                                                            \
	})

static int plan_mkdirs(struct plan *p, const char *inside, struct zerr *err)
{
	/* Create every missing parent of inside (not inside itself). Parents
	 * already in the plan are skipped by EEXIST at run time. */
	char buf[SBX_PATH];
	snprintf(buf, sizeof(buf), "%s", inside);
	for (char *s = strchr(buf + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		PLAN_ADD(p, OP_MKDIR, buf);
		*s = '/';
	}
	return 0;
}

static int plan_build(struct sbx_ctx *ctx, const struct sbx_spec *spec, struct plan *p, struct zerr *err)
{
	struct op *op;

	/* The new root: a small tmpfs, read-only once built. */
	op = PLAN_ADD(p, OP_TMPFS, "");
	op->flags = MS_NOSUID | MS_NODEV;
	op->data = "mode=0755,size=1m,nr_inodes=4096";

	/* /usr, and the merged-/usr links of the host (/bin -> usr/bin ...). */
	op = PLAN_ADD(p, OP_MKDIR, "/usr");
	op = PLAN_ADD(p, OP_BIND, "/usr");
	op->src = "/usr";
	op->flags = MS_RDONLY | MS_NOSUID | MS_NODEV;
	for (int i = 0; i < ctx->n_usr_links; i++) {
		char inside[80];
		snprintf(inside, sizeof(inside), "/%s", ctx->usr_links[i][0]);
		op = PLAN_ADD(p, OP_SYMLINK, inside);
		op->src = ctx->usr_links[i][1];
	}

	/* A generated /etc: only what programs look up, nothing of the host's
	 * users, secrets or configuration. */
	PLAN_ADD(p, OP_MKDIR, "/etc");
	snprintf(p->passwd, sizeof(p->passwd),
	         "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
	         "sandbox:x:%u:%u:sandbox:/tmp:/usr/sbin/nologin\n",
	         (unsigned)p->uid, (unsigned)p->gid);
	snprintf(p->group, sizeof(p->group), "root:x:0:\nsandbox:x:%u:\n", (unsigned)p->gid);
	op = PLAN_ADD(p, OP_FILE, "/etc/passwd");
	op->src = p->passwd;
	op->len = strlen(p->passwd);
	op = PLAN_ADD(p, OP_FILE, "/etc/group");
	op->src = p->group;
	op->len = strlen(p->group);
	op = PLAN_ADD(p, OP_FILE, "/etc/hosts");
	op->src = hosts_file;
	op->len = sizeof(hosts_file) - 1;
	op = PLAN_ADD(p, OP_FILE, "/etc/nsswitch.conf");
	op->src = nsswitch_file;
	op->len = sizeof(nsswitch_file) - 1;
	op = PLAN_ADD(p, OP_SYMLINK, "/etc/localtime");
	op->src = ctx->localtime;
	if (access("/etc/ld.so.cache", R_OK) == 0) {
		/* The loader's cache: without it every library is searched for. */
		op = PLAN_ADD(p, OP_BIND, "/etc/ld.so.cache");
		op->src = "/etc/ld.so.cache";
		op->is_file = true;
		op->flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
	}
	if (access("/etc/alternatives", R_OK) == 0) {
		/* Debian's alternatives: /usr/bin/awk and others are links
		 * through here to the program chosen (mawk). Links only. */
		op = PLAN_ADD(p, OP_BIND, "/etc/alternatives");
		op->src = "/etc/alternatives";
		op->flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
	}
	if (access("/etc/ssl/certs", R_OK) == 0) {
		PLAN_ADD(p, OP_MKDIR, "/etc/ssl");
		op = PLAN_ADD(p, OP_BIND, "/etc/ssl/certs");
		op->src = "/etc/ssl/certs";
		op->flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
	}

	/* A minimal /dev: the harmless character devices, bound from the host. */
	PLAN_ADD(p, OP_MKDIR, "/dev");
	static const char *const devs[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"};
	for (size_t i = 0; i < ELEMENTSOF(devs); i++) {
		op = PLAN_ADD(p, OP_BIND, devs[i]);
		op->src = devs[i];
		op->is_file = true;
		op->flags = MS_NOSUID | MS_NOEXEC;
	}
	static const char *const dev_links[][2] = {
	    {"/dev/fd", "/proc/self/fd"},
	    {"/dev/stdin", "/proc/self/fd/0"},
	    {"/dev/stdout", "/proc/self/fd/1"},
	    {"/dev/stderr", "/proc/self/fd/2"},
	    {"/dev/shm", "/tmp"},
	};
	for (size_t i = 0; i < ELEMENTSOF(dev_links); i++) {
		op = PLAN_ADD(p, OP_SYMLINK, dev_links[i][0]);
		op->src = dev_links[i][1];
	}

	/* A fresh /proc of the new pid namespace, with the kernel's knobs and
	 * leaks out of reach. The program runs as a non-root uid, so most of
	 * these are refused anyway; masking them does not depend on that. A
	 * uid 0 inside that maps to host root could write core_pattern even
	 * with no capability: /proc/sys is read-only whatever the uid. */
	PLAN_ADD(p, OP_MKDIR, "/proc");
	op = PLAN_ADD(p, OP_PROC, "/proc");
	op->flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
	static const char *const masked_files[] = {"/proc/kcore",         "/proc/keys",        "/proc/key-users",
	                                           "/proc/timer_list",    "/proc/sched_debug", "/proc/sysrq-trigger",
	                                           "/proc/latency_stats", "/proc/kallsyms",    "/proc/kmsg"};
	for (size_t i = 0; i < ELEMENTSOF(masked_files); i++)
		PLAN_ADD(p, OP_MASK_FILE, masked_files[i]);
	static const char *const masked_dirs[] = {"/proc/acpi", "/proc/scsi", "/proc/asound", "/proc/driver"};
	for (size_t i = 0; i < ELEMENTSOF(masked_dirs); i++)
		PLAN_ADD(p, OP_MASK_DIR, masked_dirs[i]);
	static const char *const ro_dirs[] = {"/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs"};
	for (size_t i = 0; i < ELEMENTSOF(ro_dirs); i++)
		PLAN_ADD(p, OP_RO_SELF, ro_dirs[i]);

	/* The workspace: HOME and TMPDIR, bounded in bytes and inodes, and
	 * charged to the sandbox's memory cgroup as it fills. */
	PLAN_ADD(p, OP_MKDIR, "/tmp");
	op = PLAN_ADD(p, OP_TMPFS, "/tmp");
	op->flags = MS_NOSUID | MS_NODEV;
	snprintf(p->tmp_opts, sizeof(p->tmp_opts), "mode=0700,size=%llu,nr_inodes=16384,uid=%u,gid=%u",
	         (unsigned long long)spec->tmpfs_bytes, (unsigned)p->uid, (unsigned)p->gid);
	op->data = p->tmp_opts;

	for (size_t i = 0; i < spec->n_binds; i++) {
		const struct sbx_bind *b = &spec->binds[i];
		struct stat st;
		if (stat(b->src, &st) < 0)
			return zerr_set(err, -errno, "bind source %s: %s", b->src, strerror(errno));
		int r = plan_mkdirs(p, b->dst, err);
		if (r < 0)
			return r;
		op = PLAN_ADD(p, OP_BIND, b->dst);
		op->src = b->src;
		op->is_file = !S_ISDIR(st.st_mode);
		op->flags = MS_NOSUID | MS_NODEV | (b->rw ? 0 : MS_RDONLY);
	}

	op = PLAN_ADD(p, OP_REMOUNT_RO, "");
	op->flags = MS_NOSUID | MS_NODEV;
	return 0;
}

/* ---- the child: everything from here to exec is async-signal-safe -------- */

static size_t cat(char *buf, size_t off, size_t size, const char *s)
{
	while (s && *s && off + 1 < size)
		buf[off++] = *s++;
	buf[off] = '\0';
	return off;
}

static void send_msg(int fd, uint32_t kind, int err, int value, const char *a, const char *b)
{
	struct sbx_msg m;
	memset(&m, 0, sizeof(m));
	m.kind = kind;
	m.err = err;
	m.value = value;
	size_t off = cat(m.text, 0, sizeof(m.text), a);
	if (b) {
		off = cat(m.text, off, sizeof(m.text), " ");
		cat(m.text, off, sizeof(m.text), b);
	}
	while (write(fd, &m, sizeof(m)) < 0 && errno == EINTR)
		;
}

static _Noreturn void child_fail(const char *what, const char *arg)
{
	send_msg(3, MSG_SETUP_FAILED, errno, 0, what, arg);
	_exit(INIT_EXIT_SETUP);
}

static int run_op(const struct op *op)
{
	switch (op->kind) {
	case OP_TMPFS:
		return mount("tmpfs", op->dst, "tmpfs", op->flags, op->data);
	case OP_MKDIR:
		if (mkdir(op->dst, 0755) < 0 && errno != EEXIST)
			return -1;
		return 0;
	case OP_SYMLINK:
		return symlink(op->src, op->dst);
	case OP_FILE: {
		int fd = open(op->dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			return -1;
		ssize_t n = write(fd, op->src, op->len);
		close(fd);
		return n == (ssize_t)op->len ? 0 : -1;
	}
	case OP_BIND:
		if (op->is_file) {
			int fd = open(op->dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
			if (fd < 0)
				return -1;
			close(fd);
		} else if (mkdir(op->dst, 0755) < 0 && errno != EEXIST)
			return -1;
		if (mount(op->src, op->dst, NULL, MS_BIND, NULL) < 0)
			return -1;
		return mount(NULL, op->dst, NULL, MS_BIND | MS_REMOUNT | op->flags, NULL);
	case OP_PROC:
		return mount("proc", op->dst, "proc", op->flags, NULL);
	case OP_MASK_FILE:
		if (mount("/dev/null", op->dst, NULL, MS_BIND, NULL) < 0 && errno != ENOENT)
			return -1;
		return 0;
	case OP_MASK_DIR:
		if (mount("tmpfs", op->dst, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0") < 0 &&
		    errno != ENOENT)
			return -1;
		return 0;
	case OP_RO_SELF:
		if (mount(op->dst, op->dst, NULL, MS_BIND | MS_REC, NULL) < 0)
			return errno == ENOENT ? 0 : -1;
		return mount(NULL, op->dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
		             NULL);
	case OP_REMOUNT_RO:
		return mount(NULL, op->dst, NULL, MS_REMOUNT | MS_RDONLY | op->flags, NULL);
	}
	errno = EINVAL;
	return -1;
}

static const char *const op_names[] = {
    [OP_TMPFS] = "mount tmpfs on",   [OP_MKDIR] = "mkdir",
    [OP_SYMLINK] = "symlink",        [OP_FILE] = "create",
    [OP_BIND] = "bind mount on",     [OP_PROC] = "mount proc on",
    [OP_MASK_FILE] = "mask",         [OP_MASK_DIR] = "mask",
    [OP_RO_SELF] = "make read-only", [OP_REMOUNT_RO] = "make the root read-only",
};

/* Close every descriptor from first up: close_range, else one by one. */
static void close_from(unsigned first, unsigned flags)
{
	if (syscall(SYS_close_range, first, ~0U, flags) == 0)
		return;
	struct rlimit rl;
	unsigned max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < 1048576 ? (unsigned)rl.rlim_max : 1048576;
	for (unsigned fd = first; fd < max; fd++)
		if (flags & CLOSE_RANGE_CLOEXEC)
			fcntl((int)fd, F_SETFD, FD_CLOEXEC);
		else
			close((int)fd);
}

static void child_fds(const struct plan *p)
{
	/* Move the five (six with a net namespace) descriptors the child
	 * keeps out of the way, then to 0..4 (5); everything else inherited
	 * from the parent is closed: a spawner's stock of net namespaces
	 * among them. */
	int n = p->netns ? CHILD_FDS + 1 : CHILD_FDS;
	int tmp[CHILD_FDS_MAX];
	for (int i = 0; i < n; i++) {
		tmp[i] = fcntl(p->fds[i], F_DUPFD_CLOEXEC, 10);
		if (tmp[i] < 0)
			_exit(INIT_EXIT_SETUP);
	}
	for (int i = 0; i < n; i++)
		if (dup3(tmp[i], i, i >= 3 ? O_CLOEXEC : 0) < 0)
			_exit(INIT_EXIT_SETUP);
	close_from((unsigned)n, 0);
	/* Still privileged: the stdout pipe becomes the sandbox's so that the
	 * program may reopen it close-on-exec (sbx_spec.result_fd). */
	struct stat st;
	if (p->result_fd && fstat(1, &st) == 0 && S_ISFIFO(st.st_mode) && fchown(1, p->uid, (gid_t)-1) < 0)
		_exit(INIT_EXIT_SETUP);
}

static void lo_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, "lo", 3);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	close(s);
}

int sbx_netns_make(int self_fd, struct zerr *err)
{
	if (unshare(CLONE_NEWNET) < 0)
		return zerr_set(err, -errno, "unshare net namespace: %s", strerror(errno));
	int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int r = fd < 0 ? -errno : 0;
	if (fd >= 0)
		lo_up();
	/* Back to our own before anything else: every socket made from now
	 * on must be where it was before the call. */
	if (setns(self_fd, CLONE_NEWNET) < 0)
		abort();
	if (r < 0)
		return zerr_set(err, r, "open the new net namespace: %s", strerror(-r));
	return fd;
}

/* The egress listener: made here, in the new namespace, so that it
 * listens there; handed to the parent over the go socket (fd 4) and
 * closed, so nothing the program runs can accept from it. Called before
 * the root is built: the parent waits for it while it sets up cgroups. */
static void egress_listen_send(uint16_t port)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		child_fail("egress socket", NULL);
	struct sockaddr_in a = {
	    .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 128) < 0)
		child_fail("egress listen", NULL);
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	memset(&c, 0, sizeof(c));
	char byte = 'E';
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof(c.buf)};
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &s, sizeof(int));
	ssize_t n;
	while ((n = sendmsg(4, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	if (n != 1)
		child_fail("egress handover", NULL);
	close(s);
}

static void drop_privileges(const struct plan *p)
{
	/* Bounding set first: dropping it needs CAP_SETPCAP, which setresuid
	 * below takes away. Then ambient, then the ids (leaving uid 0 clears
	 * permitted and effective), then clear whatever remains, explicitly. */
	for (int c = 0; c <= CAP_LAST_CAP; c++)
		if (cap_drop_bound((cap_value_t)c) < 0 && errno != EINVAL)
			child_fail("drop bounding capability", NULL);
	if (cap_reset_ambient() < 0)
		child_fail("clear ambient capabilities", NULL);
	/* Raw syscalls, not glibc's wrappers: in a threaded parent, glibc
	 * broadcasts credential changes to every thread it knows of, and this
	 * child, cloned without glibc's knowledge, would wait forever for
	 * threads that exist only in the parent. */
	if (syscall(SYS_setgroups, 0, NULL) < 0)
		child_fail("setgroups", NULL);
	if (syscall(SYS_setresgid, p->gid, p->gid, p->gid) < 0)
		child_fail("setresgid", NULL);
	if (syscall(SYS_setresuid, p->uid, p->uid, p->uid) < 0)
		child_fail("setresuid", NULL);
	if (cap_set_proc(p->caps_empty) < 0)
		child_fail("clear capabilities", NULL);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_fail("set no_new_privs", NULL);
	/* Not dumpable: a program of the same uid cannot open /proc/1/mem or
	 * /proc/1/fd of init and so cannot reach the pipe to the parent. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		child_fail("clear dumpable", NULL);
}

/* Runs in a child that shares init's memory (CLONE_VM | CLONE_VFORK, on a
 * stack of its own) while init waits: it only makes syscalls on the plan,
 * writes nothing but its own stack (and errno, which init does not read
 * across the call), allocates nothing, and ends in execve or _exit. Not
 * instrumented by the sanitizers: their runtime would take the switch of
 * stacks for an error and say so on the program's stderr. */
__attribute__((no_sanitize("address", "undefined"))) static _Noreturn void exec_report(int exec_fd, int e)
{
	while (syscall(SYS_write, exec_fd, &e, sizeof(e)) < 0 && errno == EINTR)
		;
	syscall(SYS_exit_group, 127);
	__builtin_unreachable();
}

__attribute__((no_sanitize("address", "undefined"))) static _Noreturn void exec_program(const struct plan *p,
                                                                                        int exec_fd)
{
	/* Raw syscalls throughout: nothing of libc's but the syscall() stub,
	 * which a sanitizer does not intercept either. */
	uint64_t none = 0;
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(none));
	/* A session of its own: no controlling terminal, so no TIOCSTI into
	 * the caller's terminal even if the policy were to allow the ioctl. */
	syscall(SYS_setsid);
	int e = ENOENT;
	/* Descriptor 3 is init's report pipe, which the program never gets:
	 * it is replaced by the stdout pipe, or closed. */
	if (p->result_fd) {
		if (syscall(SYS_dup3, 1, SBX_RESULT_FD, 0) < 0 || syscall(SYS_dup3, 2, 1, 0) < 0)
			exec_report(exec_fd, errno);
	} else {
		syscall(SYS_close, 3);
	}
	if (syscall(SYS_close_range, 4, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		close_from(4, CLOSE_RANGE_CLOEXEC);
	for (size_t i = 0; i < p->n_candidates; i++) {
		syscall(SYS_execve, p->candidates[i], p->argv, p->envp);
		/* Keep looking past a directory that lacks it, like execvp(). */
		if (errno != ENOENT && errno != ENOTDIR)
			e = errno;
	}
	exec_report(exec_fd, e);
}

/* The kernel reads /proc/PID/cmdline from the argument area of the stack,
 * and init's is a copy of its parent's: the daemon's command line (its state
 * directory, its options) would be there for every program in the sandbox
 * to read. Overwrite it in place (PR_SET_MM_ARG_START would need
 * CAP_SYS_RESOURCE, which containers often withhold): the name, then NULs,
 * and a last byte that is not NUL, which makes the kernel read the area as
 * a title rewritten by its process (up to the first NUL) rather than as
 * argv (all of it, NULs included). */
static void init_rename(const struct plan *p)
{
	if (!p->arg_start || p->arg_end <= p->arg_start)
		return;
	char *a = (char *)p->arg_start;
	size_t len = p->arg_end - p->arg_start;
	memset(a, 0, len);
	memcpy(a, init_cmdline, len > sizeof(init_cmdline) ? sizeof(init_cmdline) - 1 : len - 1);
	if (len > sizeof(init_cmdline))
		a[len - 1] = ' ';
}

/* The stack of the program's process until its execve: exec_program's few
 * frames, with room to spare. */
#define EXEC_STACK_SIZE (16 * 1024)

struct exec_args {
	const struct plan *p;
	int exec_fd;
};

__attribute__((no_sanitize("address", "undefined"))) static int exec_trampoline(void *arg)
{
	const struct exec_args *a = arg;
	exec_program(a->p, a->exec_fd);
}

static _Noreturn void init_main(const struct plan *p)
{
	sigset_t all;
	sigfillset(&all);

	int ep[2];
	if (pipe2(ep, O_CLOEXEC) < 0)
		child_fail("pipe", NULL);
	/* The program's process shares init's memory until it execs, and
	 * init sleeps until then (CLONE_VM | CLONE_VFORK): no copy of an
	 * address space that is itself a copy of the spawner's, to be torn
	 * down again by the execve. It runs on a stack of its own, here on
	 * init's, below init's frames, which it never touches. Its write end
	 * of ep is its own descriptor (no CLONE_FILES): an exec closes it,
	 * a failure writes errno to it. */
	_Alignas(16) char stack[EXEC_STACK_SIZE];
	struct exec_args args = {.p = p, .exec_fd = ep[1]};
	/* Before the program runs, which could read /proc/1/cmdline at once:
	 * its argv and environment are never strings of that area (build_exec
	 * copied those). */
	init_rename(p);
	pid_t child = clone(exec_trampoline, stack + sizeof(stack), CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
	if (child < 0)
		child_fail("fork", NULL);
	close(ep[1]);

	int e = 0;
	ssize_t n;
	while ((n = read(ep[0], &e, sizeof(e))) < 0 && errno == EINTR)
		;
	close(ep[0]);
	if (n == sizeof(e))
		send_msg(3, MSG_EXEC_FAILED, e, 0, p->argv[0], NULL);
	else
		send_msg(3, MSG_RUNNING, 0, child, NULL, NULL);

	/* Init must not hold the program's stdio open: the parent reads them
	 * to EOF. */
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		close(null);
	}

	int main_status = 0;
	bool main_done = false;
	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&all, &si);
		if (sig < 0)
			continue;
		if (sig != SIGCHLD) {
			if (!main_done)
				kill(child, sig);
			continue;
		}
		int st;
		pid_t w;
		while ((w = wait4(-1, &st, WNOHANG | __WALL, NULL)) > 0)
			if (w == child) {
				main_status = st;
				main_done = true;
			}
		if (!main_done)
			continue;
		/* The program is gone: so is everything it left behind. */
		kill(-1, SIGKILL);
		while (wait4(-1, &st, __WALL, NULL) > 0 || errno == EINTR)
			;
		send_msg(3, MSG_EXITED, 0, main_status, NULL, NULL);
		_exit(0);
	}
}

static _Noreturn void child_main(const struct plan *p)
{
	sigset_t all;
	sigfillset(&all);
	/* Signals wait for init's loop, which forwards them; a signal from the
	 * parent's namespace would otherwise kill init with its default action. */
	sigprocmask(SIG_BLOCK, &all, NULL);
	child_fds(p);
	/* Init is a copy of its parent, environment included (a daemon's
	 * secrets, a caller's variables): wipe it, in place and without
	 * allocating, so that /proc/1/environ holds nothing even if it could
	 * be read. The program gets its own, built from the allowlist. */
	for (char **e = environ; e && *e; e++)
		memset(*e, 0, strlen(*e));
	/* What operators see in ps for every sandbox's pid 1. */
	prctl(PR_SET_NAME, "zmesh-init", 0, 0, 0);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		_exit(INIT_EXIT_SETUP);
	if (p->netns) {
		/* Made ahead (sbx_netns_make), lo up already; ours alone. */
		if (setns(CHILD_NETNS_FD, CLONE_NEWNET) < 0)
			child_fail("join the net namespace made ahead", NULL);
		close(CHILD_NETNS_FD);
	} else {
		if (unshare(CLONE_NEWNET) < 0)
			child_fail("unshare net namespace", NULL);
		lo_up();
	}
	if (p->egress_port)
		egress_listen_send(p->egress_port);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		child_fail("make / private", NULL);
	for (size_t i = 0; i < p->n_ops; i++)
		if (run_op(&p->ops[i]) < 0)
			child_fail(op_names[p->ops[i].kind], p->ops[i].inside[0] ? p->ops[i].inside : "/");
	/* pivot_root(".", ".") stacks the old root under the new one; the
	 * detach then drops it, with no directory left to name it. */
	if (chdir(p->root) < 0)
		child_fail("chdir to new root", NULL);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		child_fail("pivot_root", NULL);
	if (umount2(".", MNT_DETACH) < 0)
		child_fail("detach old root", NULL);
	if (chdir("/") < 0)
		child_fail("chdir /", NULL);
	/* The parent puts us in our cgroup (v1) while we built the root, then
	 * releases us. EOF means it died, maybe before PDEATHSIG was armed. */
	char go;
	ssize_t n;
	while ((n = read(4, &go, 1)) < 0 && errno == EINTR)
		;
	if (n != 1 || go != 'G')
		_exit(INIT_EXIT_SETUP);
	close(4);
	/* The cgroup namespace is rooted where we are now, in our own cgroup. */
	if (unshare(CLONE_NEWCGROUP) < 0)
		child_fail("unshare cgroup namespace", NULL);
	if (sethostname(p->hostname, strlen(p->hostname)) < 0)
		child_fail("sethostname", NULL);
	for (size_t i = 0; i < p->n_rl; i++)
		if (setrlimit(p->rl_res[i], &p->rl[i]) < 0)
			child_fail("setrlimit", NULL);
	if (chdir("/tmp") < 0)
		child_fail("chdir /tmp", NULL);
	drop_privileges(p);
	/* Changing credentials cleared the parent-death signal: arm it again,
	 * then check the parent did not die in between (the read end of our
	 * report pipe, which only the parent holds, would be closed). */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		_exit(INIT_EXIT_SETUP);
	struct pollfd pfd = {.fd = 3, .events = 0};
	if (poll(&pfd, 1, 0) != 0)
		_exit(INIT_EXIT_SETUP);
	/* The very last step: after it, only the policy's syscalls remain. */
	int r = pol_install(p->policy);
	if (r < 0) {
		errno = -r;
		child_fail("install seccomp filter", NULL);
	}
	init_main(p);
}

/* ---- the parent ---------------------------------------------------------- */

static bool valid_env_name(const char *s, size_t len)
{
	if (len == 0 || len > 256 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

static bool path_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static bool valid_dst(const char *d)
{
	if (d[0] != '/' || strlen(d) >= 256 || strcmp(d, "/") == 0)
		return false;
	/* Normalised: no empty, "." or ".." component, no trailing slash. */
	for (const char *c = d; *c; c++) {
		if (*c != '/')
			continue;
		if (c[1] == '/' || c[1] == '\0')
			return false;
		if (c[1] == '.' && (c[2] == '/' || c[2] == '\0'))
			return false;
		if (c[1] == '.' && c[2] == '.' && (c[3] == '/' || c[3] == '\0'))
			return false;
	}
	static const char *const reserved[] = {"/proc", "/dev", "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64"};
	for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
		if (path_under(d, reserved[i]))
			return false;
	return strcmp(d, "/tmp") != 0;
}

int sbx_spec_check(const struct sbx_spec *spec, struct zerr *err)
{
	if (!spec->argv || !spec->argv[0] || !spec->argv[0][0])
		return zerr_set(err, -EINVAL, "no program given");
	if (!spec->policy)
		return zerr_set(err, -EINVAL, "no seccomp policy given");
	size_t bytes = 0, n = 0;
	for (; spec->argv[n]; n++) {
		bytes += strlen(spec->argv[n]) + 1;
		if (n >= SBX_MAX_ARGS)
			return zerr_set(err, -E2BIG, "more than %d arguments", SBX_MAX_ARGS);
	}
	if (strlen(spec->argv[0]) >= SBX_PATH - 64)
		return zerr_set(err, -ENAMETOOLONG, "program name too long");
	for (n = 0; spec->env && spec->env[n]; n++) {
		const char *e = spec->env[n];
		const char *eq = strchr(e, '=');
		if (!eq || !valid_env_name(e, (size_t)(eq - e)))
			return zerr_set(err, -EINVAL,
			                "bad environment entry \"%.64s\": want NAME=VALUE, NAME of [A-Za-z0-9_]", e);
		bytes += strlen(e) + 1;
		if (n >= SBX_MAX_ENV)
			return zerr_set(err, -E2BIG, "more than %d environment entries", SBX_MAX_ENV);
	}
	if (bytes > SBX_MAX_STRINGS)
		return zerr_set(err, -E2BIG, "arguments and environment exceed %d bytes", SBX_MAX_STRINGS);
	if (spec->n_binds > SBX_MAX_BINDS)
		return zerr_set(err, -E2BIG, "more than %d binds", SBX_MAX_BINDS);
	for (size_t i = 0; i < spec->n_binds; i++) {
		const struct sbx_bind *b = &spec->binds[i];
		if (!b->src || b->src[0] != '/' || strlen(b->src) >= SBX_PATH)
			return zerr_set(err, -EINVAL, "bind source \"%s\" must be an absolute path",
			                b->src ? b->src : "");
		if (!b->dst || !valid_dst(b->dst))
			return zerr_set(err, -EINVAL,
			                "bind target \"%s\" must be a normalised absolute path outside /, /tmp, /proc, "
			                "/dev, /usr, /etc and the /usr links",
			                b->dst ? b->dst : "");
	}
	const char *h = spec->hostname ? spec->hostname : "zmesh";
	if (!h[0] || strlen(h) > 63)
		return zerr_set(err, -EINVAL, "bad hostname");
	for (const char *c = h; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
			return zerr_set(err, -EINVAL, "bad hostname");
	if (spec->tmpfs_bytes < 64 * 1024)
		return zerr_set(err, -EINVAL, "workspace below 64K");
	if (spec->nofile < 16 || spec->nofile > 1048576)
		return zerr_set(err, -EINVAL, "nofile must be within 16..1048576");
	if (spec->netns && spec->netns_fd < 0)
		return zerr_set(err, -EBADF, "no descriptor for the net namespace made ahead");
	return 0;
}

/* s as the program gets it: init renames itself (init_rename) before it
 * starts the program, so a string of the argument area it inherits (the
 * CLI's own argv) is read from *area, a copy of that area made once. */
static char *outside_arg_area(const struct plan *p, const char *s, char **area)
{
	uintptr_t a = (uintptr_t)s;
	if (!p->arg_start || a < p->arg_start || a >= p->arg_end)
		return (char *)s;
	if (!*area) {
		*area = malloc(p->arg_end - p->arg_start);
		if (!*area)
			return NULL;
		memcpy(*area, (const void *)p->arg_start, p->arg_end - p->arg_start);
	}
	return *area + (a - p->arg_start);
}

static int build_exec(const struct sbx_spec *spec, struct plan *p, char **area, struct zerr *err)
{
	size_t n = 0;
	for (; spec->argv[n]; n++)
		if (!(p->argv[n] = outside_arg_area(p, spec->argv[n], area)))
			return zerr_set(err, -ENOMEM, "out of memory");
	p->argv[n] = NULL;

	/* The sandbox's own defaults first, then the caller's entries, which
	 * replace a default of the same name. */
	static const char *const defaults[] = {SBX_SANDBOX_PATH, "HOME=/tmp", "TMPDIR=/tmp", "LANG=C.UTF-8"};
	size_t k = 0;
	for (size_t d = 0; d < ELEMENTSOF(defaults); d++) {
		size_t nl = (size_t)(strchr(defaults[d], '=') - defaults[d]) + 1;
		bool overridden = false;
		for (size_t i = 0; spec->env && spec->env[i]; i++)
			overridden |= strncmp(spec->env[i], defaults[d], nl) == 0;
		if (!overridden)
			p->envp[k++] = (char *)defaults[d];
	}
	for (size_t i = 0; spec->env && spec->env[i]; i++)
		if (!(p->envp[k++] = outside_arg_area(p, spec->env[i], area)))
			return zerr_set(err, -ENOMEM, "out of memory");
	p->envp[k] = NULL;

	const char *prog = spec->argv[0];
	if (strchr(prog, '/')) {
		snprintf(p->candidate_buf[0], SBX_PATH, "%s", prog);
		p->candidates[0] = p->candidate_buf[0];
		p->n_candidates = 1;
		return 0;
	}
	static const char *const dirs[] = {"/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin"};
	for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
		if (snprintf(p->candidate_buf[i], SBX_PATH, "%s/%s", dirs[i], prog) >= SBX_PATH)
			return zerr_set(err, -ENAMETOOLONG, "program name too long");
		p->candidates[i] = p->candidate_buf[i];
	}
	p->n_candidates = ELEMENTSOF(dirs);
	return 0;
}

/* The child's egress listener (egress_listen_send). Its setup up to there
 * is a few syscalls; a child that failed before sending closes the socket
 * (then *ret stays -1 and its report says why). */
static int recv_egress_fd(int sock, int *ret, struct zerr *err)
{
	struct pollfd pfd = {.fd = sock, .events = POLLIN};
	int k;
	while ((k = poll(&pfd, 1, 5000)) < 0 && errno == EINTR)
		;
	if (k == 0)
		return zerr_set(err, -ETIMEDOUT, "sandbox init did not hand over its egress listener in 5 s");
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	char byte;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof(c.buf)};
	ssize_t n;
	while ((n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT)) < 0 && errno == EINTR)
		;
	if (n <= 0)
		return 0; /* the child failed first */
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	if (n != 1 || byte != 'E' || (m.msg_flags & MSG_CTRUNC) || !h || h->cmsg_level != SOL_SOCKET ||
	    h->cmsg_type != SCM_RIGHTS || h->cmsg_len != CMSG_LEN(sizeof(int))) {
		/* Our own child's message: cannot happen short of a bug. */
		for (h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
			if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS)
				for (size_t i = 0; i < (h->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
					int fd;
					memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
					close(fd);
				}
		return zerr_set(err, -EPROTO, "sandbox init: bad egress handover");
	}
	memcpy(ret, CMSG_DATA(h), sizeof(int));
	return 0;
}

static void add_rlimit(struct plan *p, int res, uint64_t v)
{
	p->rl_res[p->n_rl] = res;
	p->rl[p->n_rl].rlim_cur = v;
	p->rl[p->n_rl].rlim_max = v;
	p->n_rl++;
}

static int slot_path(const struct sbx_ctx *ctx, int slot, char *buf, size_t size)
{
	return snprintf(buf, size, "%s/slots/%d", ctx->run_dir, slot) >= (int)size ? -ENAMETOOLONG : 0;
}

/* Lock slot: an open file description holding flock(LOCK_EX). Released by
 * closing it, by us or by the kernel when the holder dies. */
static int slot_lock(const struct sbx_ctx *ctx, int slot)
{
	char path[300];
	if (slot_path(ctx, slot, path, sizeof(path)) < 0)
		return -ENAMETOOLONG;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static int slot_acquire(struct sbx_ctx *ctx, int *ret_slot, struct zerr *err)
{
	for (uint32_t i = 0; i < ctx->slots; i++) {
		int slot = (int)((ctx->next_slot + i) % ctx->slots);
		int fd = slot_lock(ctx, slot);
		if (fd >= 0) {
			ctx->next_slot = (uint32_t)(slot + 1) % ctx->slots;
			*ret_slot = slot;
			return fd;
		}
		if (fd != -EWOULDBLOCK)
			return zerr_set(err, fd, "lock slot %d in %s: %s", slot, ctx->run_dir, strerror(-fd));
	}
	return zerr_set(err, -EBUSY, "all %u sandbox slots are in use", ctx->slots);
}

/* A leftover's slot lock is free: take it (the sweep holds it while it
 * removes the cgroup) and return it; -1 when someone alive holds it. */
static int slot_is_stale(const char *name, void *userdata)
{
	const struct sbx_ctx *ctx = userdata;
	uint64_t slot;
	if (util_parse_u64(name + 4, 0, ctx->slots - 1, &slot) < 0)
		return -1;
	int fd = slot_lock(ctx, (int)slot);
	return fd >= 0 ? fd : -1;
}

/* Where this process's argument area lies (fields 48 and 49 of
 * /proc/self/stat); both 0 when unknown. */
static void self_arg_area(uintptr_t *ret_start, uintptr_t *ret_end)
{
	char buf[2048];
	*ret_start = *ret_end = 0;
	if (util_read_file("/proc/self/stat", buf, sizeof(buf)) <= 0)
		return;
	char *s = strrchr(buf, ')');
	if (!s)
		return;
	/* The field after ")" is the third. */
	int field = 2;
	unsigned long long v[2] = {0, 0};
	for (char *tok = strtok(s + 1, " \n"); tok && field < 49; tok = strtok(NULL, " \n")) {
		field++;
		if (field >= 48)
			v[field - 48] = strtoull(tok, NULL, 10);
	}
	if (field == 49 && v[0] && v[1] > v[0]) {
		*ret_start = (uintptr_t)v[0];
		*ret_end = (uintptr_t)v[1];
	}
}

int sbx_ctx_init(struct sbx_ctx *ctx, const struct sbx_options *opt, struct zerr *err)
{
	memset(ctx, 0, sizeof(*ctx));
	struct sbx_options o = opt ? *opt : (struct sbx_options){0};
	if (!o.cgroup_root)
		o.cgroup_root = "/sys/fs/cgroup";
	if (!o.cgroup_prefix)
		o.cgroup_prefix = "zmesh";
	if (!o.run_dir)
		o.run_dir = "/run/zmesh-sandbox";
	ctx->uid_base = o.uid_base ? o.uid_base : 200000;
	ctx->slots = o.slots ? o.slots : 1024;
	if (ctx->uid_base < 1000 || (uint64_t)ctx->uid_base + ctx->slots > 0x7fffffff)
		return zerr_set(err, -EINVAL, "sandbox uid range %u+%u is not an unprivileged range", ctx->uid_base,
		                ctx->slots);
	if (snprintf(ctx->run_dir, sizeof(ctx->run_dir), "%s", o.run_dir) >= (int)sizeof(ctx->run_dir))
		return zerr_set(err, -ENAMETOOLONG, "run directory path too long");

	if (geteuid() != 0)
		return zerr_set(err, -EPERM, "the sandbox needs root (it creates namespaces and cgroups)");

	int r = cg_probe(&ctx->cg, o.cgroup_root, o.cgroup_prefix, true, err);
	if (r < 0)
		return r;

	char p[300];
	const char *sub[] = {"", "/slots", "/root", "/cache"};
	for (size_t i = 0; i < ELEMENTSOF(sub); i++) {
		snprintf(p, sizeof(p), "%s%s", ctx->run_dir, sub[i]);
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			return zerr_set(err, -errno, "mkdir %s: %s", p, strerror(errno));
	}

	/* Mirror the host's merged-/usr links; a host with a real /lib is not
	 * supported (every current distribution merges /usr). */
	static const char *const links[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};
	for (size_t i = 0; i < ELEMENTSOF(links); i++) {
		char path[16], target[64];
		snprintf(path, sizeof(path), "/%s", links[i]);
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strncmp(target, "usr/", 4) != 0 && strncmp(target, "/usr/", 5) != 0)
			continue;
		snprintf(ctx->usr_links[ctx->n_usr_links][0], 64, "%s", links[i]);
		snprintf(ctx->usr_links[ctx->n_usr_links][1], 64, "%s", target);
		ctx->n_usr_links++;
	}
	char tz[128];
	ssize_t n = readlink("/etc/localtime", tz, sizeof(tz) - 1);
	if (n > 0) {
		tz[n] = '\0';
		if (!strstr(tz, "/usr/share/zoneinfo/") || strstr(tz, ".."))
			n = 0;
	}
	snprintf(ctx->localtime, sizeof(ctx->localtime), "%s", n > 0 ? tz : "/usr/share/zoneinfo/Etc/UTC");

	self_arg_area(&ctx->arg_start, &ctx->arg_end);

	/* Cgroups of sandboxes whose owner died (a crash, a SIGKILL): the
	 * owner's slot lock is free, so nobody alive uses them. */
	cg_sweep(&ctx->cg, "sbx-", slot_is_stale, ctx);
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

int sbx_spawn(struct sbx_ctx *ctx, const struct sbx_spec *spec, struct sbx *ret, struct zerr *err)
{
	ret->pid = -1;
	ret->pidfd = -1;
	int r = sbx_spec_check(spec, err);
	if (r < 0)
		return r;

	struct sbx s = {.pid = -1, .pidfd = -1, .info_fd = -1, .slot_fd = -1, .stdio = {-1, -1, -1}, .egress_fd = -1};
	s.cg.dirfd = -1;
	_cleanup_free_ struct plan *p = calloc(1, sizeof(*p));
	_cleanup_free_ char *arg_area = NULL;
	int child_stdio[3] = {-1, -1, -1}, info[2] = {-1, -1}, go[2] = {-1, -1};
	if (!p) {
		r = zerr_set(err, -ENOMEM, "out of memory");
		goto fail;
	}

	s.slot_fd = slot_acquire(ctx, &s.slot, err);
	if (s.slot_fd < 0) {
		r = s.slot_fd;
		goto fail;
	}
	s.uid = ctx->uid_base + (uid_t)s.slot;
	p->uid = s.uid;
	p->gid = (gid_t)s.uid;
	p->hostname = spec->hostname ? spec->hostname : "zmesh";
	p->egress_port = spec->egress_port;
	p->result_fd = spec->result_fd;
	p->netns = spec->netns;
	p->fds[CHILD_NETNS_FD] = spec->netns ? spec->netns_fd : -1;
	p->policy = spec->policy;
	p->arg_start = ctx->arg_start;
	p->arg_end = ctx->arg_end;
	snprintf(p->root, sizeof(p->root), "%s/root", ctx->run_dir);

	r = plan_build(ctx, spec, p, err);
	if (r < 0)
		goto fail;
	r = build_exec(spec, p, &arg_area, err);
	if (r < 0)
		goto fail;
	if (spec->cpu_seconds)
		add_rlimit(p, RLIMIT_CPU, spec->cpu_seconds);
	add_rlimit(p, RLIMIT_FSIZE, spec->fsize_bytes ? spec->fsize_bytes : RLIM_INFINITY);
	add_rlimit(p, RLIMIT_NOFILE, spec->nofile);
	/* Counted per uid host-wide; every sandbox has a uid of its own. */
	add_rlimit(p, RLIMIT_NPROC, spec->limits.pids ? spec->limits.pids : 4096);
	add_rlimit(p, RLIMIT_CORE, 0);
	add_rlimit(p, RLIMIT_MEMLOCK, 64 * 1024);

	p->caps_empty = cap_init();
	if (!p->caps_empty) {
		r = zerr_set(err, -ENOMEM, "cap_init: out of memory");
		goto fail;
	}

	/* v2: the cgroup first, the child is cloned into it. v1: the child
	 * builds its root while we make its cgroups; it waits for us before it
	 * drops privileges. */
	char name[32];
	snprintf(name, sizeof(name), "sbx-%d", s.slot);
	bool cg_after = ctx->cg.mode == CG_V1;
	if (!cg_after) {
		r = cg_create(&ctx->cg, name, &s.cg, err);
		if (r == 0)
			r = cg_set_limits(&s.cg, &spec->limits, err);
		if (r < 0)
			goto fail;
	}

	for (int i = 0; i < 3; i++) {
		if (spec->stdio[i] >= 0) {
			p->fds[i] = spec->stdio[i];
			continue;
		}
		int pp[2];
		if (pipe2(pp, O_CLOEXEC) < 0) {
			r = zerr_set(err, -errno, "pipe: %s", strerror(errno));
			goto fail;
		}
		child_stdio[i] = i == 0 ? pp[0] : pp[1];
		s.stdio[i] = i == 0 ? pp[1] : pp[0];
		p->fds[i] = child_stdio[i];
	}
	/* go is a socket, not a pipe: sending to a child that died must give
	 * EPIPE, not SIGPIPE to a caller that never asked for it. */
	if (pipe2(info, O_CLOEXEC) < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, go) < 0) {
		r = zerr_set(err, -errno, "pipe: %s", strerror(errno));
		goto fail;
	}
	p->fds[3] = info[1];
	p->fds[4] = go[0];

	struct clone_args ca;
	memset(&ca, 0, sizeof(ca));
	/* The net namespace, the costliest to create (about half a
	 * millisecond), is made by the child itself, while we set up its
	 * cgroups; or made ahead and joined (spec->netns). */
	ca.flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_PIDFD;
	ca.pidfd = (uint64_t)(uintptr_t)&s.pidfd;
	ca.exit_signal = SIGCHLD;
	if (spec->clone_parent) {
		/* The child then signals our parent as we would: with our own
		 * exit signal, which clone3 wants left at 0. */
		ca.flags |= CLONE_PARENT;
		ca.exit_signal = 0;
	}
	if (s.cg.dirfd >= 0) {
		/* Born in its cgroup: never a moment outside its limits. */
		ca.flags |= CLONE_INTO_CGROUP;
		ca.cgroup = (uint64_t)s.cg.dirfd;
	}
	s.start_ns = util_now_ns();
	long pid = syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid == 0)
		child_main(p);
	if (pid < 0) {
		r = zerr_set(err, -errno, "clone3: %s", strerror(errno));
		goto fail;
	}
	s.pid = (pid_t)pid;

	for (int i = 0; i < 3; i++)
		close_fd(&child_stdio[i]);
	close_fd(&info[1]);
	close_fd(&go[0]);
	s.info_fd = TAKE_FD(info[0]);

	if (cg_after) {
		r = cg_create(&ctx->cg, name, &s.cg, err);
		if (r == 0)
			r = cg_set_limits(&s.cg, &spec->limits, err);
		if (r == 0)
			r = cg_attach(&s.cg, s.pid, err);
		if (r < 0) {
			/* A child that already failed its setup cannot be moved;
			 * its own report says why, sbx_reap() returns it. */
			struct pollfd pfd = {.fd = s.pidfd, .events = POLLIN};
			if (poll(&pfd, 1, 0) == 1)
				goto released;
			goto fail;
		}
	}
	if (spec->egress_port) {
		r = recv_egress_fd(go[1], &s.egress_fd, err);
		if (r < 0)
			goto fail;
	}
	if (send(go[1], "G", 1, MSG_NOSIGNAL) != 1 && errno != EPIPE && errno != ECONNRESET) {
		r = zerr_set(err, -errno, "release sandbox: %s", strerror(errno));
		goto fail;
	}
released:
	close_fd(&go[1]);
	cap_free(p->caps_empty);
	*ret = s;
	return 0;

fail:
	for (int i = 0; i < 3; i++)
		close_fd(&child_stdio[i]);
	close_fd(&info[0]);
	close_fd(&info[1]);
	close_fd(&go[0]);
	close_fd(&go[1]);
	if (p && p->caps_empty)
		cap_free(p->caps_empty);
	if (spec->clone_parent && s.pidfd >= 0) {
		/* Killed, but our parent's child: only it can reap it. */
		sbx_kill(&s, SIGKILL);
		s.reaped = true;
		ret->pid = s.pid;
		ret->pidfd = TAKE_FD(s.pidfd);
	}
	sbx_destroy(&s);
	return r;
}

int sbx_adopt_cgroup(const struct sbx_ctx *ctx, struct sbx *sbx, struct zerr *err)
{
	char name[32];
	snprintf(name, sizeof(name), "sbx-%d", sbx->slot);
	return cg_open(&ctx->cg, name, &sbx->cg, err);
}

int sbx_set_limits(struct sbx *sbx, const struct cg_limits *lim, struct zerr *err)
{
	/* The spawner's one way to change limits restarts the peak too. */
	if (sbx->owner)
		return sbx_spawner_assign(sbx->owner, sbx, lim, NULL, err);
	return cg_set_limits(&sbx->cg, lim, err);
}

/* CPU time (user + system) the process has used, in whole seconds rounded
 * up; -errno when it cannot be read. */
static int64_t proc_cpu_seconds(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	buf[n] = '\0';
	/* After the name, which may hold anything, up to its last ')':
	 * state is field 3, utime 14, stime 15. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	unsigned long long utime = 0, stime = 0;
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
		return -EIO;
	long hz = sysconf(_SC_CLK_TCK);
	if (hz <= 0)
		hz = 100;
	return (int64_t)((utime + stime + (unsigned long long)hz - 1) / (unsigned long long)hz);
}

/* One limit of one process, never above what it has. */
static int narrow_one(pid_t pid, int res, uint64_t v)
{
	struct rlimit old, nl;
	if (prlimit(pid, res, NULL, &old) < 0)
		return -errno;
	if (old.rlim_max != RLIM_INFINITY && v > old.rlim_max)
		v = old.rlim_max;
	nl.rlim_cur = nl.rlim_max = v;
	return prlimit(pid, res, &nl, NULL) < 0 ? -errno : 0;
}

#define NARROW_MAX_PROCS 64

/* The processes of the sandbox of init pid, breadth first from init, and
 * the RLIMIT_CPU each gets. */
static int narrow_plan(pid_t pid, uint64_t cpu_seconds, pid_t procs[NARROW_MAX_PROCS], uint64_t cpu[NARROW_MAX_PROCS],
                       size_t *ret, struct zerr *err)
{
	size_t n = 0, done = 0;
	procs[n++] = pid;
	while (done < n) {
		pid_t p = procs[done];
		/* RLIMIT_CPU counts CPU the process has already spent (a pooled
		 * runtime's start and warm-up): the work gets its own seconds on
		 * top of that, rounded up. */
		int64_t used = proc_cpu_seconds(p);
		if (used < 0)
			return zerr_set(err, (int)used, "read the CPU time of process %d: %s", (int)p,
			                strerror((int)-used));
		cpu[done++] = (uint64_t)used + cpu_seconds;
		char path[64], buf[4096];
		snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)p, (int)p);
		_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return zerr_set(err, -errno, "open %s: %m", path);
		ssize_t len = read(fd, buf, sizeof(buf) - 1);
		if (len < 0)
			return zerr_set(err, -errno, "read %s: %m", path);
		buf[len] = '\0';
		char *save = NULL;
		for (char *tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
			if (n >= NARROW_MAX_PROCS)
				return zerr_set(err, -E2BIG, "more than %d processes in the sandbox", NARROW_MAX_PROCS);
			procs[n++] = (pid_t)strtol(tok, NULL, 10);
		}
	}
	*ret = n;
	return 0;
}

int sbx_narrow_rlimits(pid_t pid, uid_t uid, const struct sbx_rlimits *rl, uint64_t nproc, struct zerr *err)
{
	pid_t procs[NARROW_MAX_PROCS];
	uint64_t cpu[NARROW_MAX_PROCS];
	size_t n = 0;
	int r = narrow_plan(pid, rl->cpu_seconds, procs, cpu, &n, err);
	if (r < 0)
		return r;
	/* prlimit(2) on a process of another uid needs CAP_SYS_RESOURCE,
	 * which containers often withhold; a caller whose real uid and gid are
	 * the target's may lower its limits. So this thread makes the
	 * sandbox's uid and gid its real ids for the time of the calls,
	 * keeping its effective and saved ids (and so its capabilities), and
	 * takes its own back. Raw syscalls: credentials are per thread, and
	 * only this one's change. Nothing of the sandbox can signal or trace
	 * it meanwhile: the spawner is outside the sandbox's PID namespace.
	 * (A forked child of the sandbox's uid did this before; measured, the
	 * copy and teardown of the spawner's address space made a warm
	 * invocation ~3 ms slower.) */
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0)
		return zerr_set(err, -errno, "getresuid: %m");
	if (syscall(SYS_setresgid, (gid_t)uid, (gid_t)-1, (gid_t)-1) < 0)
		return zerr_set(err, -errno, "take the real gid of sandbox %d: %m", (int)pid);
	if (syscall(SYS_setresuid, uid, (uid_t)-1, (uid_t)-1) < 0) {
		r = -errno;
		if (syscall(SYS_setresgid, rgid, (gid_t)-1, (gid_t)-1) < 0)
			abort(); /* never go on with another's credentials */
		return zerr_set(err, r, "take the real uid of sandbox %d: %s", (int)pid, strerror(-r));
	}
	r = 0;
	for (size_t i = 0; i < n && r == 0; i++)
		if ((r = narrow_one(procs[i], RLIMIT_CPU, cpu[i])) < 0 ||
		    (r = narrow_one(procs[i], RLIMIT_FSIZE, rl->fsize_bytes)) < 0 ||
		    (r = narrow_one(procs[i], RLIMIT_NPROC, nproc)) < 0)
			zerr_set(err, r, "narrow the rlimits of process %d of sandbox %d: %s", (int)procs[i], (int)pid,
			         strerror(-r));
	if (syscall(SYS_setresuid, ruid, (uid_t)-1, (uid_t)-1) < 0 ||
	    syscall(SYS_setresgid, rgid, (gid_t)-1, (gid_t)-1) < 0)
		abort(); /* never go on with another's credentials */
	return r;
}

int sbx_assign(struct sbx *sbx, const struct cg_limits *lim, const struct sbx_rlimits *rl, struct zerr *err)
{
	/* From here on the report speaks of the work, not of the wait: wall
	 * time restarts, the CPU the runtime spent starting is set aside, and
	 * the memory high-water mark restarts where it can (v1; the spawner
	 * does that with the limits for a sandbox of its own). */
	int r;
	if (sbx->owner)
		r = sbx_spawner_assign(sbx->owner, sbx, lim, rl && rl->cpu_seconds ? rl : NULL, err);
	else {
		r = cg_set_limits(&sbx->cg, lim, err);
		if (r == 0 && rl)
			r = sbx_narrow_rlimits(sbx->pid, sbx->uid, rl, lim->pids, err);
	}
	if (r < 0)
		return r;
	struct cg_stats st;
	cg_get_stats(&sbx->cg, &st);
	sbx->cpu_base_us = sbx->cg.ctx && sbx->cg.ctx->has_cpu_usage ? st.cpu_usec : 0;
	if (!sbx->owner)
		cg_reset_peak(&sbx->cg);
	sbx->start_ns = util_now_ns();
	return 0;
}

int sbx_kill(struct sbx *sbx, int sig)
{
	if (sbx->pidfd < 0 || sbx->reaped)
		return -ESRCH;
	/* A sandbox of another uid: only the spawner may signal it. */
	if (sbx->owner)
		return sbx_spawner_kill(sbx->owner, sbx, sig);
	if (syscall(SYS_pidfd_send_signal, sbx->pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}

int sbx_kill_timeout(struct sbx *sbx)
{
	sbx->killed_for_timeout = true;
	return sbx_kill(sbx, SIGKILL);
}

static int reap(struct sbx *sbx, siginfo_t *si, struct rusage *ru)
{
	memset(si, 0, sizeof(*si));
	memset(ru, 0, sizeof(*ru));
	for (;;) {
		if (syscall(SYS_waitid, P_PIDFD, sbx->pidfd, si, WEXITED | __WALL, ru) == 0)
			break;
		if (errno != EINTR)
			return -errno;
	}
	sbx->reaped = true;
	return 0;
}

int sbx_reap(struct sbx *sbx, struct sbx_report *ret)
{
	struct sbx_report rep;
	memset(&rep, 0, sizeof(rep));
	siginfo_t si;
	struct rusage ru;
	if (sbx->reaped)
		return -ECHILD;
	int r = reap(sbx, &si, &ru);
	if (r < 0)
		return r;
	rep.wall_us = (util_now_ns() - sbx->start_ns) / 1000;
	rep.cpu_us = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
	             (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;

	struct cg_stats st;
	cg_get_stats(&sbx->cg, &st);
	if (sbx->cg.ctx && sbx->cg.ctx->has_cpu_usage)
		rep.cpu_us = st.cpu_usec > sbx->cpu_base_us ? st.cpu_usec - sbx->cpu_base_us : 0;
	rep.memory_peak_bytes = st.memory_peak_bytes;
	rep.oom_killed = st.oom_kills > 0;
	rep.timed_out = sbx->killed_for_timeout;

	/* Init is gone, and with it every writer of the pipe: read to EOF. */
	bool have_exit = false, setup_failed = false, exec_failed = false;
	int exit_status = 0, e = 0;
	struct sbx_msg m;
	for (int i = 0; i < 8; i++) {
		ssize_t n = read(sbx->info_fd, &m, sizeof(m));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(m))
			break;
		m.text[sizeof(m.text) - 1] = '\0';
		switch (m.kind) {
		case MSG_SETUP_FAILED:
			setup_failed = true;
			e = m.err;
			snprintf(rep.error, sizeof(rep.error), "sandbox setup failed: %s: %s", m.text,
			         strerror(m.err > 0 && m.err < 4096 ? m.err : EIO));
			break;
		case MSG_EXEC_FAILED:
			exec_failed = true;
			e = m.err;
			snprintf(rep.error, sizeof(rep.error), "cannot execute %s: %s", m.text,
			         strerror(m.err > 0 && m.err < 4096 ? m.err : EIO));
			break;
		case MSG_EXITED:
			have_exit = true;
			exit_status = m.value;
			break;
		default:
			break;
		}
	}

	if (setup_failed) {
		rep.status = SBX_ERROR;
		rep.exit_code = 125;
	} else if (exec_failed) {
		rep.status = SBX_ERROR;
		rep.exit_code = e == ENOENT ? 127 : 126;
	} else if (rep.timed_out) {
		rep.status = SBX_TIMEOUT;
		rep.signal = SIGKILL;
	} else if (rep.oom_killed) {
		rep.status = SBX_OOM;
		rep.signal = SIGKILL;
		if (have_exit && WIFEXITED(exit_status)) {
			/* A child of the program was the victim; the program itself
			 * went on and exited. Still an out-of-memory run. */
			rep.signal = 0;
			rep.exit_code = WEXITSTATUS(exit_status);
		}
	} else if (have_exit && WIFEXITED(exit_status)) {
		rep.status = SBX_EXITED;
		rep.exit_code = WEXITSTATUS(exit_status);
	} else if (have_exit && WIFSIGNALED(exit_status)) {
		rep.status = SBX_SIGNALED;
		rep.signal = WTERMSIG(exit_status);
	} else if (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED) {
		/* Init itself was killed from outside before the program ended. */
		rep.status = SBX_SIGNALED;
		rep.signal = si.si_status;
	} else {
		rep.status = SBX_ERROR;
		rep.exit_code = 125;
		snprintf(rep.error, sizeof(rep.error), "sandbox init exited with status %d without a report",
		         si.si_status);
	}
	*ret = rep;
	return 0;
}

void sbx_report_now(struct sbx *sbx, struct sbx_report *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->status = SBX_EXITED;
	ret->wall_us = (util_now_ns() - sbx->start_ns) / 1000;
	struct cg_stats st;
	cg_get_stats(&sbx->cg, &st);
	if (sbx->cg.ctx && sbx->cg.ctx->has_cpu_usage)
		ret->cpu_us = st.cpu_usec > sbx->cpu_base_us ? st.cpu_usec - sbx->cpu_base_us : 0;
	ret->memory_peak_bytes = st.memory_peak_bytes;
}

int sbx_get_stats(const struct sbx *sbx, struct cg_stats *ret)
{
	if (!sbx->cg.ctx) {
		memset(ret, 0, sizeof(*ret));
		return -ENOENT;
	}
	return cg_get_stats(&sbx->cg, ret);
}

int sbx_wait(struct sbx *sbx, int64_t timeout_ms, struct sbx_report *ret)
{
	uint64_t deadline = timeout_ms >= 0 ? sbx->start_ns + (uint64_t)timeout_ms * 1000000ull : 0;
	for (;;) {
		int wait_ms = -1;
		if (deadline) {
			uint64_t now = util_now_ns();
			if (now >= deadline) {
				sbx_kill_timeout(sbx);
				break;
			}
			wait_ms = (int)((deadline - now + 999999) / 1000000);
		}
		struct pollfd pfd = {.fd = sbx->pidfd, .events = POLLIN};
		int n = poll(&pfd, 1, wait_ms);
		if (n > 0)
			break;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
	return sbx_reap(sbx, ret);
}

void sbx_destroy(struct sbx *sbx)
{
	if (!sbx)
		return;
	if (sbx->pidfd >= 0 && sbx->pid > 0 && !sbx->reaped) {
		siginfo_t si;
		struct rusage ru;
		sbx_kill(sbx, SIGKILL);
		reap(sbx, &si, &ru);
	}
	if (sbx->owner) {
		/* Reaped first: the slot (and its uid) is free only once
		 * nothing runs in it. */
		if (sbx->pid > 0)
			sbx_spawner_destroy(sbx->owner, sbx, NULL);
		sbx->owner = NULL;
	} else
		cg_destroy(&sbx->cg);
	close_fd(&sbx->pidfd);
	close_fd(&sbx->info_fd);
	for (int i = 0; i < 3; i++)
		close_fd(&sbx->stdio[i]);
	close_fd(&sbx->egress_fd);
	/* Last: the slot (and its uid) is free only once nothing runs in it. */
	close_fd(&sbx->slot_fd);
	sbx->pid = -1;
}

int sbx_report_exit_status(const struct sbx_report *r)
{
	switch (r->status) {
	case SBX_EXITED:
		return r->exit_code;
	case SBX_OOM:
		return r->signal ? 128 + r->signal : r->exit_code;
	case SBX_SIGNALED:
	case SBX_TIMEOUT:
		return 128 + r->signal;
	case SBX_ERROR:
	default:
		return r->exit_code ? r->exit_code : 125;
	}
}

const char *sbx_status_name(enum sbx_status s)
{
	switch (s) {
	case SBX_EXITED:
		return "exited";
	case SBX_SIGNALED:
		return "signaled";
	case SBX_TIMEOUT:
		return "timeout";
	case SBX_OOM:
		return "oom";
	case SBX_ERROR:
		return "error";
	}
	return "error";
}
