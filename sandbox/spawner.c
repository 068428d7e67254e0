/* spawner.c - see spawner.h */
#define _GNU_SOURCE
#include "spawner.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define WIRE_MAGIC 0x7a6d7370u /* "zmsp" */
#define WIRE_MAX   (SBX_MAX_STRINGS + SBX_MAX_BINDS * 1024 + BPF_MAXINSNS * 8 + 4096)
#define WIRE_BUF   (2 * WIRE_MAX)

struct wire_req {
	uint32_t magic;
	uint32_t len; /* of the whole message */
	uint64_t tmpfs_bytes, fsize_bytes, nofile, cpu_seconds;
	uint64_t memory_bytes, pids, cpu_percent;
	uint32_t n_argv, n_env, n_binds, policy_insns;
	uint32_t stdio_passed; /* bit i: stdio[i] travels as a descriptor */
	uint32_t bind_rw;      /* bit i: bind i is writable */
	uint32_t background;   /* limits.background */
	uint32_t pad;
	char hostname[64];
	/* then: argv strings, env strings, bind src/dst strings, padding to 8,
	 * the policy's instructions */
};

struct wire_rep {
	uint32_t magic;
	int32_t err;
	int32_t pid;
	int32_t slot;
	uint32_t uid;
	uint32_t fds; /* bit 0: pidfd; bit 1: info+slot; bits 2-4: stdio[0..2] */
	uint64_t start_ns;
	char msg[sizeof(((struct zerr *)0)->msg)];
};

static int send_fds(int sock, const void *buf, size_t len, const int *fds, size_t nfds)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 8)];
	} c;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds) {
		memset(&c, 0, sizeof(c));
		m.msg_control = c.buf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *h = CMSG_FIRSTHDR(&m);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(h), fds, sizeof(int) * nfds);
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &m, MSG_NOSIGNAL);
		if (n == (ssize_t)len)
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 ? -errno : -EIO;
	}
}

/* Receive one message and up to max_fds descriptors (close-on-exec). Returns
 * the length, 0 at EOF; *ret_nfds tells how many descriptors came. */
static ssize_t recv_fds(int sock, void *buf, size_t size, int *fds, size_t max_fds, size_t *ret_nfds)
{
	struct iovec iov = {.iov_base = buf, .iov_len = size};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 8)];
	} c;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof(c.buf)};
	ssize_t n;
	while ((n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	*ret_nfds = 0;
	if (n < 0)
		return -errno;
	size_t got = 0;
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int *in = (int *)CMSG_DATA(h);
		for (size_t i = 0; i < k; i++) {
			if (got < max_fds)
				fds[got++] = in[i];
			else
				close(in[i]);
		}
	}
	*ret_nfds = got;
	if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (size_t i = 0; i < got; i++)
			close(fds[i]);
		*ret_nfds = 0;
		return -EMSGSIZE;
	}
	return n;
}

/* ---- the spawner process -------------------------------------------------- */

static const char *next_string(const char **cur, const char *end)
{
	const char *s = *cur;
	const char *nul = memchr(s, '\0', (size_t)(end - s));
	if (!nul)
		return NULL;
	*cur = nul + 1;
	return s;
}

static int parse_request(const char *buf, size_t len, const int *fds, size_t nfds, struct sbx_spec *spec,
                         const char **argv, const char **env, struct sbx_bind *binds, struct pol_program *prog,
                         struct zerr *err)
{
	struct wire_req h;
	if (len < sizeof(h))
		return zerr_set(err, -EBADMSG, "spawn request too short");
	memcpy(&h, buf, sizeof(h));
	if (h.magic != WIRE_MAGIC || h.len != len || h.n_argv == 0 || h.n_argv > SBX_MAX_ARGS ||
	    h.n_env > SBX_MAX_ENV || h.n_binds > SBX_MAX_BINDS || h.policy_insns == 0 ||
	    h.policy_insns > BPF_MAXINSNS || memchr(h.hostname, '\0', sizeof(h.hostname)) == NULL)
		return zerr_set(err, -EBADMSG, "malformed spawn request");
	const char *cur = buf + sizeof(h), *end = buf + len;
	for (uint32_t i = 0; i < h.n_argv; i++)
		if (!(argv[i] = next_string(&cur, end)))
			return zerr_set(err, -EBADMSG, "malformed spawn request (argv)");
	argv[h.n_argv] = NULL;
	for (uint32_t i = 0; i < h.n_env; i++)
		if (!(env[i] = next_string(&cur, end)))
			return zerr_set(err, -EBADMSG, "malformed spawn request (env)");
	env[h.n_env] = NULL;
	for (uint32_t i = 0; i < h.n_binds; i++) {
		binds[i].src = next_string(&cur, end);
		binds[i].dst = binds[i].src ? next_string(&cur, end) : NULL;
		if (!binds[i].dst)
			return zerr_set(err, -EBADMSG, "malformed spawn request (binds)");
		binds[i].rw = (h.bind_rw >> i) & 1;
	}
	size_t off = (size_t)(cur - buf);
	off = (off + 7) & ~(size_t)7;
	if (off + (size_t)h.policy_insns * sizeof(struct sock_filter) != len)
		return zerr_set(err, -EBADMSG, "malformed spawn request (policy)");
	prog->fprog.len = (unsigned short)h.policy_insns;
	prog->fprog.filter = (struct sock_filter *)(void *)(buf + off);

	size_t k = 0;
	for (int i = 0; i < 3; i++) {
		spec->stdio[i] = -1;
		if ((h.stdio_passed >> i) & 1) {
			if (k >= nfds)
				return zerr_set(err, -EBADMSG, "spawn request lacks a stdio descriptor");
			spec->stdio[i] = fds[k++];
		}
	}
	spec->argv = argv;
	spec->env = env;
	spec->binds = binds;
	spec->n_binds = h.n_binds;
	spec->policy = prog;
	spec->hostname = h.hostname[0] ? h.hostname : NULL;
	spec->tmpfs_bytes = h.tmpfs_bytes;
	spec->fsize_bytes = h.fsize_bytes;
	spec->nofile = h.nofile;
	spec->cpu_seconds = h.cpu_seconds;
	spec->limits.memory_bytes = h.memory_bytes;
	spec->limits.pids = h.pids;
	spec->limits.cpu_percent = h.cpu_percent;
	spec->limits.background = h.background != 0;
	spec->clone_parent = true;
	return 0;
}

static _Noreturn void spawner_main(struct sbx_ctx *ctx, int sock)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	prctl(PR_SET_NAME, "zmesh-spawner", 0, 0, 0);
	char *buf = malloc(WIRE_BUF);
	if (!buf)
		_exit(1);
	/* Aligned storage for the policy instructions inside the request. */
	static const char *argv[SBX_MAX_ARGS + 1], *env[SBX_MAX_ENV + 1];
	static struct sbx_bind binds[SBX_MAX_BINDS];
	for (;;) {
		int in[3];
		size_t nin = 0;
		ssize_t n = recv_fds(sock, buf, WIRE_BUF, in, 3, &nin);
		if (n == 0)
			_exit(0);
		struct wire_rep rep = {.magic = WIRE_MAGIC};
		struct zerr err = {0};
		struct sbx s = {.pid = -1, .pidfd = -1, .info_fd = -1, .slot_fd = -1, .stdio = {-1, -1, -1}};
		struct sbx_spec spec = {0};
		struct pol_program prog = {0};
		int r;
		if (n < 0)
			r = n == -EMSGSIZE ? zerr_set(&err, -EMSGSIZE, "spawn request too large") : (_exit(1), 0);
		else {
			r = parse_request(buf, (size_t)n, in, nin, &spec, argv, env, binds, &prog, &err);
			if (r == 0)
				r = sbx_spawn(ctx, &spec, &s, &err);
		}
		/* The sandbox holds its own copies of the caller's stdio now. */
		for (size_t i = 0; i < nin; i++)
			close(in[i]);

		int out[6];
		size_t nout = 0;
		rep.err = r;
		if (s.pidfd >= 0) {
			rep.fds |= 1;
			rep.pid = s.pid;
			out[nout++] = s.pidfd;
		}
		if (r == 0) {
			rep.fds |= 2;
			out[nout++] = s.info_fd;
			out[nout++] = s.slot_fd;
			for (int i = 0; i < 3; i++)
				if (s.stdio[i] >= 0) {
					rep.fds |= 4u << i;
					out[nout++] = s.stdio[i];
				}
			rep.slot = s.slot;
			rep.uid = s.uid;
			rep.start_ns = s.start_ns;
		} else
			snprintf(rep.msg, sizeof(rep.msg), "%s", err.msg);
		if (send_fds(sock, &rep, sizeof(rep), out, nout) < 0)
			_exit(1);
		/* Everything went to the daemon; the cgroup and slot are its now. */
		for (size_t i = 0; i < nout; i++)
			close(out[i]);
		if (s.cg.dirfd >= 0)
			close(s.cg.dirfd);
	}
}

int sbx_spawner_start(struct sbx_ctx *ctx, struct sbx_spawner *ret, struct zerr *err)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return zerr_set(err, -errno, "socketpair: %s", strerror(errno));
	/* A request carries argv, env and the policy: room for the largest. */
	int size = WIRE_BUF;
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
		setsockopt(sv[i], SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	}
	pid_t pid = fork();
	if (pid < 0) {
		int r = -errno;
		close(sv[0]);
		close(sv[1]);
		return zerr_set(err, r, "fork spawner: %s", strerror(-r));
	}
	if (pid == 0) {
		close(sv[0]);
		spawner_main(ctx, sv[1]);
	}
	close(sv[1]);
	ret->pid = pid;
	ret->fd = sv[0];
	pthread_mutex_init(&ret->lock, NULL);
	return 0;
}

static int serialize(const struct sbx_spec *spec, char **ret_buf, size_t *ret_len, int *fds, size_t *nfds,
                     struct zerr *err)
{
	struct wire_req h = {.magic = WIRE_MAGIC};
	size_t strings = 0;
	for (; spec->argv[h.n_argv]; h.n_argv++)
		strings += strlen(spec->argv[h.n_argv]) + 1;
	for (; spec->env && spec->env[h.n_env]; h.n_env++)
		strings += strlen(spec->env[h.n_env]) + 1;
	h.n_binds = (uint32_t)spec->n_binds;
	for (size_t i = 0; i < spec->n_binds; i++) {
		strings += strlen(spec->binds[i].src) + strlen(spec->binds[i].dst) + 2;
		if (spec->binds[i].rw)
			h.bind_rw |= 1u << i;
	}
	h.policy_insns = spec->policy->fprog.len;
	size_t off = (sizeof(h) + strings + 7) & ~(size_t)7;
	size_t len = off + (size_t)h.policy_insns * sizeof(struct sock_filter);
	if (len > WIRE_MAX)
		return zerr_set(err, -E2BIG, "spawn request too large");
	h.len = (uint32_t)len;
	h.tmpfs_bytes = spec->tmpfs_bytes;
	h.fsize_bytes = spec->fsize_bytes;
	h.nofile = spec->nofile;
	h.cpu_seconds = spec->cpu_seconds;
	h.memory_bytes = spec->limits.memory_bytes;
	h.pids = spec->limits.pids;
	h.cpu_percent = spec->limits.cpu_percent;
	h.background = spec->limits.background;
	if (spec->hostname)
		snprintf(h.hostname, sizeof(h.hostname), "%s", spec->hostname);
	*nfds = 0;
	for (int i = 0; i < 3; i++)
		if (spec->stdio[i] >= 0) {
			h.stdio_passed |= 1u << i;
			fds[(*nfds)++] = spec->stdio[i];
		}

	char *buf = calloc(1, len);
	if (!buf)
		return zerr_set(err, -ENOMEM, "out of memory");
	memcpy(buf, &h, sizeof(h));
	char *cur = buf + sizeof(h);
#define PUT(s) (cur = stpcpy(cur, (s)) + 1)
	for (uint32_t i = 0; i < h.n_argv; i++)
		PUT(spec->argv[i]);
	for (uint32_t i = 0; i < h.n_env; i++)
		PUT(spec->env[i]);
	for (size_t i = 0; i < spec->n_binds; i++) {
		PUT(spec->binds[i].src);
		PUT(spec->binds[i].dst);
	}
#undef PUT
	memcpy(buf + off, spec->policy->fprog.filter, (size_t)h.policy_insns * sizeof(struct sock_filter));
	*ret_buf = buf;
	*ret_len = len;
	return 0;
}

int sbx_spawner_spawn(struct sbx_spawner *sp, const struct sbx_ctx *ctx, const struct sbx_spec *spec, struct sbx *ret,
                      struct zerr *err)
{
	ret->pid = -1;
	ret->pidfd = -1;
	int r = sbx_spec_check(spec, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, nfds = 0;
	int fds[3];
	r = serialize(spec, &buf, &len, fds, &nfds, err);
	if (r < 0)
		return r;

	struct wire_rep rep;
	int in[6];
	size_t nin = 0;
	pthread_mutex_lock(&sp->lock);
	r = send_fds(sp->fd, buf, len, fds, nfds);
	ssize_t n = r < 0 ? r : recv_fds(sp->fd, &rep, sizeof(rep), in, 6, &nin);
	pthread_mutex_unlock(&sp->lock);
	if (r < 0)
		return zerr_set(err, r, "send to spawner: %s", strerror(-r));
	if (n <= 0)
		return zerr_set(err, n < 0 ? (int)n : -EPIPE, "spawner: %s", n < 0 ? strerror((int)-n) : "gone");

	size_t want = (size_t)__builtin_popcount(rep.fds & 1) + ((rep.fds & 2) ? 2 : 0) +
	              (size_t)__builtin_popcount((rep.fds >> 2) & 7);
	if (n != sizeof(rep) || rep.magic != WIRE_MAGIC || nin != want || rep.err > 0 ||
	    (rep.err == 0 && !(rep.fds & 3))) {
		for (size_t i = 0; i < nin; i++)
			close(in[i]);
		/* A sandbox may exist all the same, and it is our child: end it
		 * and reap it, or it would linger as a zombie. */
		if (n == sizeof(rep) && rep.magic == WIRE_MAGIC && rep.pid > 0) {
			int pfd = (int)syscall(SYS_pidfd_open, rep.pid, 0);
			if (pfd >= 0) {
				siginfo_t si;
				syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
				waitid(P_PIDFD, (id_t)pfd, &si, WEXITED | __WALL);
				close(pfd);
			}
		}
		return zerr_set(err, -EBADMSG, "malformed answer from the spawner");
	}
	size_t k = 0;
	if (rep.fds & 1) {
		ret->pid = rep.pid;
		ret->pidfd = in[k++];
	}
	if (rep.err < 0) {
		rep.msg[sizeof(rep.msg) - 1] = '\0';
		return zerr_set(err, rep.err, "%s", rep.msg);
	}
	struct sbx s = {.pid = rep.pid,
	                .pidfd = ret->pidfd,
	                .slot = rep.slot,
	                .uid = rep.uid,
	                .start_ns = rep.start_ns,
	                .stdio = {-1, -1, -1}};
	s.info_fd = in[k++];
	s.slot_fd = in[k++];
	for (int i = 0; i < 3; i++)
		if (rep.fds & (4u << i))
			s.stdio[i] = in[k++];
	s.cg.dirfd = -1;
	r = sbx_adopt_cgroup(ctx, &s, err);
	if (r < 0) {
		sbx_destroy(&s);
		ret->pid = -1;
		ret->pidfd = -1;
		return r;
	}
	*ret = s;
	return 0;
}

void sbx_spawner_stop(struct sbx_spawner *sp)
{
	if (sp->fd >= 0) {
		close(sp->fd);
		sp->fd = -1;
	}
	if (sp->pid > 0) {
		while (waitpid(sp->pid, NULL, 0) < 0 && errno == EINTR)
			;
		sp->pid = -1;
	}
	pthread_mutex_destroy(&sp->lock);
}
