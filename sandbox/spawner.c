/* spawner.c - see spawner.h */
#define _GNU_SOURCE
#include "spawner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* ---- descriptors over the socket ----------------------------------------- */

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

/* Receive one message and up to max_fds descriptors (close-on-exec; more are
 * closed, and counted in *ret_nfds beyond max_fds). Returns the length, 0 at
 * EOF, -EMSGSIZE for a message or descriptors cut short. */
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
	size_t got = 0, seen = 0;
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int *in = (int *)CMSG_DATA(h);
		for (size_t i = 0; i < k; i++, seen++) {
			if (got < max_fds)
				fds[got++] = in[i];
			else
				close(in[i]);
		}
	}
	if (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (size_t i = 0; i < got; i++)
			close(fds[i]);
		return -EMSGSIZE;
	}
	*ret_nfds = seen;
	return n;
}

/* ---- the wire ------------------------------------------------------------ */

static bool valid_name(const char *s, size_t size)
{
	size_t n = strnlen(s, size);
	if (n == 0 || n == size)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

static const char *next_string(const char **cur, const char *end)
{
	const char *s = *cur;
	const char *nul = memchr(s, '\0', (size_t)(end - s));
	if (!nul)
		return NULL;
	*cur = nul + 1;
	return s;
}

int spawner_decode_request(const void *buf, size_t len, struct spawner_req *ret, struct zerr *err)
{
	struct spawner_wire_hdr h;
	if (len < sizeof(h))
		return zerr_set(err, -EBADMSG, "request of %zu bytes: shorter than a header", len);
	memcpy(&h, buf, sizeof(h));
	if (h.magic != SPAWNER_MAGIC || h.len != len || h.zero != 0)
		return zerr_set(err, -EBADMSG, "request header: bad magic or length");
	struct spawner_req r;
	memset(&r, 0, sizeof(r));
	switch (h.op) {
	case SPAWNER_ASSIGN:
	case SPAWNER_KILL:
	case SPAWNER_DESTROY: {
		struct spawner_wire_handle w;
		if (len != sizeof(w))
			return zerr_set(err, -EBADMSG, "request of %zu bytes for operation %u", len, h.op);
		memcpy(&w, buf, sizeof(w));
		bool limits = w.memory_bytes || w.pids || w.cpu_percent || w.fsize_bytes || w.cpu_seconds;
		if (w.zero != 0 || (h.op != SPAWNER_ASSIGN && limits) || (h.op != SPAWNER_KILL && w.sig != 0))
			return zerr_set(err, -EBADMSG, "request: a field its operation does not use is set");
		if (h.op == SPAWNER_KILL && w.sig != SIGKILL && w.sig != SIGTERM)
			return zerr_set(err, -EBADMSG, "kill: signal %d is not SIGKILL or SIGTERM", (int)w.sig);
		r.op = (enum spawner_op)h.op;
		r.slot = w.slot;
		r.gen = w.gen;
		r.sig = w.sig;
		r.limits.memory_bytes = w.memory_bytes;
		r.limits.pids = w.pids;
		r.limits.cpu_percent = w.cpu_percent;
		r.limits.fsize_bytes = w.fsize_bytes;
		r.limits.cpu_seconds = w.cpu_seconds;
		break;
	}
	case SPAWNER_SPAWN: {
		struct spawner_wire_spawn w;
		if (len < sizeof(w))
			return zerr_set(err, -EBADMSG, "spawn request of %zu bytes: shorter than its fields", len);
		if (len > SPAWNER_MSG_MAX)
			return zerr_set(err, -EBADMSG, "spawn request of %zu bytes: longer than any valid one", len);
		memcpy(&w, buf, sizeof(w));
		if (!valid_name(w.runtime, sizeof(w.runtime)))
			return zerr_set(err, -EBADMSG, "spawn: runtime name not [a-z0-9_-], or not terminated");
		/* The unused tail of the name too: nothing unchecked travels. */
		for (size_t i = strlen(w.runtime); i < sizeof(w.runtime); i++)
			if (w.runtime[i])
				return zerr_set(err, -EBADMSG, "spawn: bytes after the runtime's name");
		if (w.background > 1 || w.stdio > 7)
			return zerr_set(err, -EBADMSG, "spawn: bad background or stdio flags");
		if (w.egress_port > 65535 || (w.flags & ~SPAWNER_RESULT_FD) != 0)
			return zerr_set(err, -EBADMSG, "spawn: egress port %u out of range, or unknown flags",
			                w.egress_port);
		if (w.n_argv == 0 || w.n_argv > SBX_MAX_ARGS || w.n_env > SBX_MAX_ENV)
			return zerr_set(err, -EBADMSG, "spawn: %u arguments, %u environment entries", w.n_argv,
			                w.n_env);
		const char *cur = (const char *)buf + sizeof(w), *end = (const char *)buf + len;
		for (uint32_t i = 0; i < w.n_argv; i++)
			if (!(r.argv[i] = next_string(&cur, end)))
				return zerr_set(err, -EBADMSG, "spawn: argument %u not terminated", i);
		for (uint32_t i = 0; i < w.n_env; i++)
			if (!(r.env[i] = next_string(&cur, end)))
				return zerr_set(err, -EBADMSG, "spawn: environment entry %u not terminated", i);
		if (cur != end)
			return zerr_set(err, -EBADMSG, "spawn: %zu bytes after the strings", (size_t)(end - cur));
		if (!r.argv[0][0])
			return zerr_set(err, -EBADMSG, "spawn: empty program name");
		r.op = SPAWNER_SPAWN;
		memcpy(r.runtime, w.runtime, sizeof(r.runtime));
		r.limits = (struct sbx_maxima){.memory_bytes = w.memory_bytes,
		                               .pids = w.pids,
		                               .cpu_percent = w.cpu_percent,
		                               .tmpfs_bytes = w.tmpfs_bytes,
		                               .fsize_bytes = w.fsize_bytes,
		                               .nofile = w.nofile,
		                               .cpu_seconds = w.cpu_seconds};
		r.background = w.background;
		r.stdio = w.stdio;
		r.egress_port = (uint16_t)w.egress_port;
		r.result_fd = (w.flags & SPAWNER_RESULT_FD) != 0;
		r.n_fds = (unsigned)__builtin_popcount(w.stdio);
		break;
	}
	default:
		return zerr_set(err, -EBADMSG, "unknown operation %u", h.op);
	}
	*ret = r;
	return 0;
}

/* Within 1..max: every limit is set, none above what was configured. */
static int check_limit(const char *what, uint64_t v, uint64_t min, uint64_t max, struct zerr *err)
{
	if (v < min || v > max)
		return zerr_set(err, -EPERM, "%s %llu outside %llu..%llu, the configured bounds", what,
		                (unsigned long long)v, (unsigned long long)min, (unsigned long long)max);
	return 0;
}

int spawner_check_request(const struct sbx_spawner_config *cfg, const struct spawner_req *req, struct zerr *err)
{
	const struct sbx_maxima *m = &cfg->max, *l = &req->limits;
	int r = 0;
	switch (req->op) {
	case SPAWNER_SPAWN: {
		bool known = false;
		for (size_t i = 0; i < cfg->n_runtimes && !known; i++)
			known = strcmp(cfg->runtimes[i].name, req->runtime) == 0;
		if (!known)
			return zerr_set(err, -ENOENT, "no runtime \"%s\" configured", req->runtime);
		if ((r = check_limit("tmpfs bytes", l->tmpfs_bytes, 64 * 1024, m->tmpfs_bytes, err)) < 0 ||
		    (r = check_limit("fsize bytes", l->fsize_bytes, 1, m->fsize_bytes, err)) < 0 ||
		    (r = check_limit("nofile", l->nofile, 16, m->nofile, err)) < 0 ||
		    (r = check_limit("cpu seconds", l->cpu_seconds, 1, m->cpu_seconds, err)) < 0)
			return r;
		__attribute__((fallthrough)); /* the cgroup limits, as for ASSIGN */
	}
	case SPAWNER_ASSIGN:
		/* ASSIGN's rlimits: both, or neither (they stay as spawned). */
		if (req->op == SPAWNER_ASSIGN && (l->fsize_bytes || l->cpu_seconds) &&
		    ((r = check_limit("fsize bytes", l->fsize_bytes, 1, m->fsize_bytes, err)) < 0 ||
		     (r = check_limit("cpu seconds", l->cpu_seconds, 1, m->cpu_seconds, err)) < 0))
			return r;
		if ((r = check_limit("memory bytes", l->memory_bytes, 1, m->memory_bytes, err)) < 0 ||
		    (r = check_limit("pids", l->pids, 1, m->pids, err)) < 0 ||
		    (r = check_limit("cpu percent", l->cpu_percent, 1, m->cpu_percent, err)) < 0)
			return r;
		return 0;
	case SPAWNER_KILL:
	case SPAWNER_DESTROY:
		return 0;
	}
	return zerr_set(err, -EBADMSG, "unknown operation");
}

ssize_t spawner_encode_request(const struct spawner_req *req, void *buf, size_t size)
{
	if (req->op != SPAWNER_SPAWN) {
		struct spawner_wire_handle w;
		memset(&w, 0, sizeof(w));
		w.h = (struct spawner_wire_hdr){.magic = SPAWNER_MAGIC, .len = sizeof(w), .op = req->op};
		w.slot = req->slot;
		w.gen = req->gen;
		w.sig = req->sig;
		w.memory_bytes = req->limits.memory_bytes;
		w.pids = req->limits.pids;
		w.cpu_percent = req->limits.cpu_percent;
		w.fsize_bytes = req->limits.fsize_bytes;
		w.cpu_seconds = req->limits.cpu_seconds;
		if (size < sizeof(w))
			return -E2BIG;
		memcpy(buf, &w, sizeof(w));
		return (ssize_t)sizeof(w);
	}
	struct spawner_wire_spawn w;
	memset(&w, 0, sizeof(w));
	size_t len = sizeof(w);
	for (; req->argv[w.n_argv]; w.n_argv++)
		len += strlen(req->argv[w.n_argv]) + 1;
	for (; req->env[w.n_env]; w.n_env++)
		len += strlen(req->env[w.n_env]) + 1;
	if (len > size || len > SPAWNER_MSG_MAX || strlen(req->runtime) >= sizeof(w.runtime))
		return -E2BIG;
	w.h = (struct spawner_wire_hdr){.magic = SPAWNER_MAGIC, .len = (uint32_t)len, .op = SPAWNER_SPAWN};
	memcpy(w.runtime, req->runtime, strlen(req->runtime));
	w.memory_bytes = req->limits.memory_bytes;
	w.pids = req->limits.pids;
	w.cpu_percent = req->limits.cpu_percent;
	w.tmpfs_bytes = req->limits.tmpfs_bytes;
	w.fsize_bytes = req->limits.fsize_bytes;
	w.nofile = req->limits.nofile;
	w.cpu_seconds = req->limits.cpu_seconds;
	w.background = req->background;
	w.stdio = req->stdio;
	w.egress_port = req->egress_port;
	w.flags = req->result_fd ? SPAWNER_RESULT_FD : 0;
	memcpy(buf, &w, sizeof(w));
	char *cur = (char *)buf + sizeof(w);
	for (uint32_t i = 0; i < w.n_argv; i++)
		cur = stpcpy(cur, req->argv[i]) + 1;
	for (uint32_t i = 0; i < w.n_env; i++)
		cur = stpcpy(cur, req->env[i]) + 1;
	return (ssize_t)len;
}

/* ---- configuration ------------------------------------------------------- */

int sbx_runtime_add(struct sbx_spawner_config *cfg, const char *name, const char *policy_path, const char *cache_dir,
                    const struct sbx_bind *binds, size_t n_binds, struct zerr *err)
{
	if (cfg->n_runtimes >= SPAWNER_MAX_RUNTIMES)
		return zerr_set(err, -E2BIG, "more than %d runtimes", SPAWNER_MAX_RUNTIMES);
	if (strlen(name) >= SPAWNER_NAME_MAX || !valid_name(name, SPAWNER_NAME_MAX))
		return zerr_set(err, -EINVAL, "bad runtime name \"%s\"", name);
	if (n_binds > SPAWNER_MAX_BINDS)
		return zerr_set(err, -E2BIG, "runtime %s: more than %d binds", name, SPAWNER_MAX_BINDS);
	struct sbx_runtime *rt = &cfg->runtimes[cfg->n_runtimes];
	memset(rt, 0, sizeof(*rt));
	snprintf(rt->name, sizeof(rt->name), "%s", name);
	for (size_t i = 0; i < n_binds; i++) {
		if (snprintf(rt->bind_src[i], sizeof(rt->bind_src[i]), "%s", binds[i].src) >=
		        (int)sizeof(rt->bind_src[i]) ||
		    snprintf(rt->bind_dst[i], sizeof(rt->bind_dst[i]), "%s", binds[i].dst) >=
		        (int)sizeof(rt->bind_dst[i]))
			return zerr_set(err, -ENAMETOOLONG, "runtime %s: bind path too long", name);
		rt->binds[i] = (struct sbx_bind){.src = rt->bind_src[i], .dst = rt->bind_dst[i], .rw = binds[i].rw};
	}
	rt->n_binds = n_binds;
	/* The binds as sbx_spec_check sees them, with a placeholder program. */
	const char *argv[] = {"/bin/true", NULL};
	struct pol_program none = {0};
	struct sbx_spec probe = {.argv = argv,
	                         .policy = &none,
	                         .binds = rt->binds,
	                         .n_binds = n_binds,
	                         .tmpfs_bytes = 1 << 20,
	                         .nofile = 64};
	int r = sbx_spec_check(&probe, err);
	if (r < 0)
		return r;
	r = cache_dir ? pol_compile_cached(policy_path, cache_dir, &rt->policy, err)
	              : pol_compile(policy_path, &rt->policy, err);
	if (r < 0)
		return r;
	cfg->n_runtimes++;
	return 0;
}

void sbx_spawner_config_done(struct sbx_spawner_config *cfg)
{
	for (size_t i = 0; i < cfg->n_runtimes; i++)
		pol_program_free(&cfg->runtimes[i].policy);
	cfg->n_runtimes = 0;
}

/* ---- the spawner process -------------------------------------------------- */

/* A sandbox this spawner created and has not destroyed: the spawner's own
 * pidfd (to kill it), its cgroup (to narrow and remove it), its slot lock. */
struct owned {
	bool live;
	bool dying; /* destroyed, its cgroup not empty yet: no longer the daemon's */
	uint32_t gen;
	uint64_t dying_since_ns;
	struct sbx s;
};

struct spawner {
	struct sbx_ctx *ctx;
	const struct sbx_spawner_config *cfg;
	struct owned *table; /* by slot */
	uint32_t next_gen;
	uint32_t n_dying;
	/* The stock of net namespaces made ahead (close-on-exec), and the
	 * spawner's own, which it goes back to after making each. */
	int self_netns;
	int netns[SPAWNER_NETNS_MAX];
	size_t n_netns;
	size_t netns_target;
};

/* Idle work: fill the stock of net namespaces, one at a time, for as long
 * as no request waits (each takes about half a millisecond). One that
 * cannot be made ends the stocking: sandboxes make their own. */
static void netns_refill(struct spawner *sp, int sock)
{
	while (sp->n_netns < sp->netns_target) {
		struct pollfd p = {.fd = sock, .events = POLLIN};
		if (poll(&p, 1, 0) != 0)
			return;
		int fd = sbx_netns_make(sp->self_netns, NULL);
		if (fd < 0) {
			sp->netns_target = 0;
			return;
		}
		sp->netns[sp->n_netns++] = fd;
	}
}

/* A namespace from the stock, now no longer the stock's; -1 if empty. */
static int netns_take(struct spawner *sp)
{
	return sp->n_netns > 0 ? sp->netns[--sp->n_netns] : -1;
}

/* How often the spawner looks again at cgroups still emptying, and how long
 * it waits for one before it blocks on it (cg_destroy's own bound). */
#define DYING_POLL_MS 2
#define DYING_MAX_NS  (1000ull * 1000 * 1000)

/* A destroyed sandbox's cgroup: removed now if it is empty, else later,
 * between requests, so that the next request (an assignment, typically,
 * which a function waits for) is not held while a pid namespace's last
 * processes leave. The slot (its lock) is released only once it is gone. */
static void finish_destroy(struct spawner *sp, struct owned *o)
{
	if (cg_destroy_nowait(&o->s.cg) == -EBUSY) {
		if (!o->dying) {
			o->dying = true;
			o->dying_since_ns = util_now_ns();
			sp->n_dying++;
		}
		if (util_now_ns() - o->dying_since_ns < DYING_MAX_NS)
			return;
	}
	if (o->dying)
		sp->n_dying--;
	o->dying = false;
	sbx_destroy(&o->s); /* the rest of the cgroup (bounded wait), descriptors, then the slot */
}

static void sweep_dying(struct spawner *sp)
{
	for (uint32_t i = 0; i < sp->ctx->slots && sp->n_dying > 0; i++)
		if (sp->table[i].dying)
			finish_destroy(sp, &sp->table[i]);
}

static struct owned *find_owned(struct spawner *sp, const struct spawner_req *req, struct zerr *err)
{
	if (req->slot >= sp->ctx->slots || !sp->table[req->slot].live || sp->table[req->slot].gen != req->gen) {
		zerr_set(err, -ESRCH, "slot %u generation %u is not a sandbox of this spawner", req->slot, req->gen);
		return NULL;
	}
	return &sp->table[req->slot];
}

static int do_spawn(struct spawner *sp, const struct spawner_req *req, const int *fds, struct sbx *s, struct zerr *err)
{
	const struct sbx_runtime *rt = NULL;
	for (size_t i = 0; i < sp->cfg->n_runtimes; i++)
		if (strcmp(sp->cfg->runtimes[i].name, req->runtime) == 0)
			rt = &sp->cfg->runtimes[i];
	/* spawner_check_request made sure. */
	if (!rt)
		return zerr_set(err, -ENOENT, "no runtime \"%s\"", req->runtime);
	struct sbx_spec spec = {
	    .argv = req->argv,
	    .env = req->env,
	    .binds = rt->binds,
	    .n_binds = rt->n_binds,
	    .policy = &rt->policy,
	    .tmpfs_bytes = req->limits.tmpfs_bytes,
	    .fsize_bytes = req->limits.fsize_bytes,
	    .nofile = req->limits.nofile,
	    .cpu_seconds = req->limits.cpu_seconds,
	    .limits = {.memory_bytes = req->limits.memory_bytes,
	               .pids = req->limits.pids,
	               .cpu_percent = req->limits.cpu_percent,
	               .background = req->background},
	    .stdio = {-1, -1, -1},
	    .clone_parent = true,
	    .egress_port = req->egress_port,
	    .result_fd = req->result_fd,
	};
	size_t k = 0;
	for (int i = 0; i < 3; i++)
		if (req->stdio & (1u << i))
			spec.stdio[i] = fds[k++];
	/* Used once, whatever happens: the sandbox's init holds its own
	 * descriptor of it, if it got that far; ours goes. */
	int netns = netns_take(sp);
	spec.netns = netns >= 0;
	spec.netns_fd = netns;
	int r = sbx_spawn(sp->ctx, &spec, s, err);
	if (netns >= 0)
		close(netns);
	if (r < 0)
		return r;
	struct owned *o = &sp->table[s->slot];
	if (++sp->next_gen == 0)
		sp->next_gen = 1;
	o->live = true;
	o->gen = sp->next_gen;
	return 0;
}

/* Answer one request. Descriptors to send go to out (at most 6). */
static void serve(struct spawner *sp, const char *buf, ssize_t n, const int *in, size_t nin,
                  struct spawner_wire_rep *rep, int *out, size_t *nout)
{
	struct zerr err = {0};
	struct spawner_req *req = &(struct spawner_req){0};
	struct sbx s = {.pid = -1, .pidfd = -1, .info_fd = -1, .slot_fd = -1, .stdio = {-1, -1, -1}, .egress_fd = -1};
	s.cg.dirfd = -1;
	int r;
	*nout = 0;
	if (n < 0)
		r = zerr_set(&err, (int)n, "request too large or cut short");
	else if ((r = spawner_decode_request(buf, (size_t)n, req, &err)) < 0)
		;
	else if (nin != req->n_fds)
		r = zerr_set(&err, -EBADMSG, "request carries %zu descriptors, wants %u", nin, req->n_fds);
	else if ((r = spawner_check_request(sp->cfg, req, &err)) < 0)
		;
	else if (req->op == SPAWNER_SPAWN)
		r = do_spawn(sp, req, in, &s, &err);
	else {
		struct owned *o = find_owned(sp, req, &err);
		if (!o)
			r = err.code;
		else if (req->op == SPAWNER_ASSIGN) {
			struct cg_limits lim = {.memory_bytes = req->limits.memory_bytes,
			                        .pids = req->limits.pids,
			                        .cpu_percent = req->limits.cpu_percent};
			struct sbx_rlimits rl = {.cpu_seconds = req->limits.cpu_seconds,
			                         .fsize_bytes = req->limits.fsize_bytes};
			r = cg_set_limits(&o->s.cg, &lim, &err);
			if (r == 0 && rl.cpu_seconds)
				r = sbx_narrow_rlimits(o->s.pid, o->s.uid, &rl, lim.pids, &err);
			if (r == 0)
				cg_reset_peak(&o->s.cg);
		} else if (req->op == SPAWNER_KILL) {
			r = sbx_kill(&o->s, req->sig);
			if (r < 0 && r != -ESRCH)
				zerr_set(&err, r, "kill: %s", strerror(-r));
			r = r == -ESRCH ? 0 : r; /* already gone: what was asked */
		} else {
			/* Killed now; the zombie is the daemon's to reap. The
			 * cgroup is removed as soon as it is empty, the slot
			 * freed after it (finish_destroy). */
			sbx_kill(&o->s, SIGKILL);
			o->s.reaped = true;
			o->live = false;
			finish_destroy(sp, o);
			r = 0;
		}
	}
	rep->magic = SPAWNER_MAGIC;
	rep->op = n >= 0 ? req->op : 0;
	rep->err = r;
	if (s.pidfd >= 0) {
		rep->fds |= 1;
		rep->pid = s.pid;
		out[(*nout)++] = s.pidfd;
	}
	if (r == 0 && req->op == SPAWNER_SPAWN) {
		struct owned *o = &sp->table[s.slot];
		rep->fds |= 2;
		out[(*nout)++] = s.info_fd;
		for (int i = 0; i < 3; i++)
			if (s.stdio[i] >= 0) {
				rep->fds |= 4u << i;
				out[(*nout)++] = s.stdio[i];
			}
		if (s.egress_fd >= 0) {
			rep->fds |= 32;
			out[(*nout)++] = s.egress_fd;
		}
		rep->slot = (uint32_t)s.slot;
		rep->gen = o->gen;
		rep->uid = s.uid;
		rep->start_ns = s.start_ns;
		/* Kept: the pidfd (to kill), the cgroup, the slot lock. What
		 * goes to the daemon is closed here once sent. */
		o->s = s;
		o->s.info_fd = -1;
		for (int i = 0; i < 3; i++)
			o->s.stdio[i] = -1;
		o->s.egress_fd = -1;
	} else if (r < 0)
		snprintf(rep->msg, sizeof(rep->msg), "%s", err.msg);
}

static _Noreturn void spawner_main(struct sbx_ctx *ctx, const struct sbx_spawner_config *cfg, int sock,
                                   size_t netns_stock)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	prctl(PR_SET_NAME, "zmesh-spawner", 0, 0, 0);
	struct spawner sp = {.ctx = ctx, .cfg = cfg, .table = calloc(ctx->slots, sizeof(struct owned))};
	sp.self_netns = netns_stock ? open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC) : -1;
	sp.netns_target = sp.self_netns >= 0 ? netns_stock : 0;
	/* Room for the largest valid request and one byte more: a longer one
	 * is cut, and refused as such. */
	char *buf = malloc(SPAWNER_MSG_MAX + 1);
	if (!buf || !sp.table)
		_exit(1);
	for (;;) {
		/* Requests first; then, when none waits, net namespaces for
		 * the next sandboxes, and cgroups still emptying. */
		netns_refill(&sp, sock);
		while (sp.n_dying > 0) {
			struct pollfd p = {.fd = sock, .events = POLLIN};
			if (poll(&p, 1, DYING_POLL_MS) != 0)
				break;
			sweep_dying(&sp);
		}
		int in[4];
		size_t nin = 0;
		ssize_t n = recv_fds(sock, buf, SPAWNER_MSG_MAX + 1, in, ELEMENTSOF(in), &nin);
		if (n == 0)
			break;
		if (n < 0 && n != -EMSGSIZE)
			_exit(1);
		struct spawner_wire_rep rep;
		memset(&rep, 0, sizeof(rep));
		int out[6];
		size_t nout = 0;
		serve(&sp, buf, n, in, nin < ELEMENTSOF(in) ? nin : ELEMENTSOF(in), &rep, out, &nout);
		/* The sandbox holds its own copies of the caller's stdio now. */
		for (size_t i = 0; i < nin && i < ELEMENTSOF(in); i++)
			close(in[i]);
		if (send_fds(sock, &rep, sizeof(rep), out, nout) < 0)
			_exit(1);
		for (size_t i = 0; i < nout; i++)
			if (!(i == 0 && (rep.fds & 1) && rep.err == 0))
				close(out[i]);
	}
	/* The daemon closed the channel: its sandboxes end with it. */
	for (uint32_t i = 0; i < ctx->slots; i++)
		if (sp.table[i].dying)
			sbx_destroy(&sp.table[i].s);
		else if (sp.table[i].live) {
			sbx_kill(&sp.table[i].s, SIGKILL);
			sp.table[i].s.reaped = true;
			sbx_destroy(&sp.table[i].s);
		}
	while (sp.n_netns > 0)
		close(netns_take(&sp));
	if (sp.self_netns >= 0)
		close(sp.self_netns);
	_exit(0);
}

/* The stock's size a configuration asks for (sbx_spawner_config.netns_stock). */
static int netns_stock_size(const struct sbx_spawner_config *cfg, size_t *ret, struct zerr *err)
{
	if (cfg->netns_stock < 0) {
		*ret = 0;
		return 0;
	}
	if (cfg->netns_stock > 0) {
		*ret = (size_t)cfg->netns_stock > SPAWNER_NETNS_MAX ? SPAWNER_NETNS_MAX : (size_t)cfg->netns_stock;
		return 0;
	}
	const char *env = getenv("ZMESH_NETNS_STOCK");
	uint64_t v = SPAWNER_NETNS_DEFAULT;
	if (env && util_parse_u64(env, 0, SPAWNER_NETNS_MAX, &v) < 0)
		return zerr_set(err, -EINVAL,
		                "ZMESH_NETNS_STOCK=\"%.32s\": want a number of net namespaces within 0..%d", env,
		                SPAWNER_NETNS_MAX);
	*ret = (size_t)v;
	return 0;
}

int sbx_spawner_start(struct sbx_ctx *ctx, const struct sbx_spawner_config *cfg, struct sbx_spawner *ret,
                      struct zerr *err)
{
	size_t netns_stock = 0;
	int r = netns_stock_size(cfg, &netns_stock, err);
	if (r < 0)
		return r;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return zerr_set(err, -errno, "socketpair: %s", strerror(errno));
	/* A request carries argv and env: room for the largest. */
	int size = (int)(2 * SPAWNER_MSG_MAX);
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
		setsockopt(sv[i], SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	}
	pid_t pid = fork();
	if (pid < 0) {
		r = -errno;
		close(sv[0]);
		close(sv[1]);
		return zerr_set(err, r, "fork spawner: %s", strerror(-r));
	}
	if (pid == 0) {
		close(sv[0]);
		spawner_main(ctx, cfg, sv[1], netns_stock);
	}
	close(sv[1]);
	ret->pid = pid;
	ret->fd = sv[0];
	pthread_mutex_init(&ret->lock, NULL);
	return 0;
}

_Noreturn void sbx_spawner_serve(struct sbx_ctx *ctx, const struct sbx_spawner_config *cfg, int sock)
{
	size_t netns_stock = 0;
	struct zerr err = {0};
	if (netns_stock_size(cfg, &netns_stock, &err) < 0) {
		fprintf(stderr, "zmesh-spawner: %s\n", err.msg);
		_exit(1);
	}
	spawner_main(ctx, cfg, sock, netns_stock);
}

int sbx_spawner_exec(const char *path, char *const argv[], struct sbx_spawner *ret, struct zerr *err)
{
	/* What the spawner's environment holds: nothing of the daemon's but
	 * the one setting it reads, checked here so that a bad value fails the
	 * start with a clear error. */
	struct sbx_spawner_config probe = {0};
	size_t netns_stock = 0;
	int r = netns_stock_size(&probe, &netns_stock, err);
	if (r < 0)
		return r;
	char env_stock[48];
	snprintf(env_stock, sizeof(env_stock), "ZMESH_NETNS_STOCK=%zu", netns_stock);
	char *const envp[] = {env_stock, NULL};
	int sv[2], ep[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return zerr_set(err, -errno, "socketpair: %s", strerror(errno));
	if (pipe2(ep, O_CLOEXEC) < 0) {
		r = -errno;
		close(sv[0]);
		close(sv[1]);
		return zerr_set(err, r, "pipe: %s", strerror(-r));
	}
	int size = (int)(2 * SPAWNER_MSG_MAX);
	for (int i = 0; i < 2; i++) {
		setsockopt(sv[i], SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
		setsockopt(sv[i], SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		r = -errno;
		close(sv[0]);
		close(sv[1]);
		close(ep[0]);
		close(ep[1]);
		return zerr_set(err, r, "fork spawner: %s", strerror(-r));
	}
	if (pid == 0) {
		/* The socket becomes descriptor SBX_SPAWNER_FD; nothing else of
		 * the daemon's is kept but the report pipe, closed by the exec.
		 * Both are moved above the target numbers first, so that neither
		 * is in the other's way (dup2 onto itself would keep CLOEXEC). */
		int e = 0, s_hi = -1, e_hi = -1, out = ep[1];
		if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
			e = errno;
		else if (getppid() != parent)
			e = ESRCH;
		else if ((s_hi = fcntl(sv[1], F_DUPFD_CLOEXEC, SBX_SPAWNER_FD + 2)) < 0 ||
		         (e_hi = fcntl(ep[1], F_DUPFD_CLOEXEC, SBX_SPAWNER_FD + 2)) < 0 ||
		         (out = e_hi, dup3(e_hi, SBX_SPAWNER_FD + 1, O_CLOEXEC) < 0) ||
		         (out = SBX_SPAWNER_FD + 1, dup2(s_hi, SBX_SPAWNER_FD) < 0) ||
		         syscall(SYS_close_range, SBX_SPAWNER_FD + 2, ~0u, 0) < 0)
			e = errno;
		else
			execve(path, argv, envp);
		if (!e)
			e = errno;
		if (write(out, &e, sizeof(e)) < 0)
			_exit(127);
		_exit(127);
	}
	close(sv[1]);
	close(ep[1]);
	int e = 0;
	ssize_t n;
	while ((n = read(ep[0], &e, sizeof(e))) < 0 && errno == EINTR)
		;
	close(ep[0]);
	if (n != 0) {
		close(sv[0]);
		waitpid(pid, NULL, 0);
		return zerr_set(err, n == sizeof(e) ? -e : -EIO, "exec %s: %s", path,
		                n == sizeof(e) ? strerror(e) : "the child failed");
	}
	ret->pid = pid;
	ret->fd = sv[0];
	pthread_mutex_init(&ret->lock, NULL);
	return 0;
}

/* ---- the daemon's side ----------------------------------------------------- */

/* One request and its answer; descriptors that came are in in[] (*nin). */
static int call(struct sbx_spawner *sp, const void *msg, size_t len, const int *fds, size_t nfds,
                struct spawner_wire_rep *rep, int *in, size_t max_in, size_t *nin, struct zerr *err)
{
	pthread_mutex_lock(&sp->lock);
	int r = send_fds(sp->fd, msg, len, fds, nfds);
	ssize_t n = r < 0 ? r : recv_fds(sp->fd, rep, sizeof(*rep), in, max_in, nin);
	pthread_mutex_unlock(&sp->lock);
	if (r < 0)
		return zerr_set(err, r, "send to the spawner: %s", strerror(-r));
	if (n <= 0)
		return zerr_set(err, n < 0 ? (int)n : -EPIPE, "spawner: %s", n < 0 ? strerror((int)-n) : "gone");
	size_t want = (size_t)__builtin_popcount(rep->fds & 0x3f);
	if (n != sizeof(*rep) || rep->magic != SPAWNER_MAGIC || *nin != want || (rep->fds & ~0x3fu) || rep->err > 0) {
		for (size_t i = 0; i < *nin && i < max_in; i++)
			close(in[i]);
		*nin = 0;
		return zerr_set(err, -EBADMSG, "malformed answer from the spawner");
	}
	if (rep->err < 0) {
		rep->msg[sizeof(rep->msg) - 1] = '\0';
		zerr_set(err, rep->err, "%s", rep->msg);
	}
	return rep->err;
}

static int call_handle(struct sbx_spawner *sp, const struct sbx *s, enum spawner_op op, int sig,
                       const struct cg_limits *lim, const struct sbx_rlimits *rl, struct zerr *err)
{
	struct spawner_req req = {.op = op, .slot = (uint32_t)s->slot, .gen = s->gen, .sig = sig};
	if (lim)
		req.limits = (struct sbx_maxima){.memory_bytes = lim->memory_bytes,
		                                 .pids = lim->pids,
		                                 .cpu_percent = lim->cpu_percent,
		                                 .fsize_bytes = rl ? rl->fsize_bytes : 0,
		                                 .cpu_seconds = rl ? rl->cpu_seconds : 0};
	struct spawner_wire_handle msg;
	ssize_t len = spawner_encode_request(&req, &msg, sizeof(msg));
	if (len < 0)
		return zerr_set(err, (int)len, "encode request");
	struct spawner_wire_rep rep;
	int in[5];
	size_t nin = 0;
	int r = call(sp, &msg, (size_t)len, NULL, 0, &rep, in, ELEMENTSOF(in), &nin, err);
	for (size_t i = 0; i < nin; i++)
		close(in[i]);
	return r;
}

int sbx_spawner_assign(struct sbx_spawner *sp, const struct sbx *s, const struct cg_limits *lim,
                       const struct sbx_rlimits *rl, struct zerr *err)
{
	return call_handle(sp, s, SPAWNER_ASSIGN, 0, lim, rl, err);
}

int sbx_spawner_kill(struct sbx_spawner *sp, const struct sbx *s, int sig)
{
	return call_handle(sp, s, SPAWNER_KILL, sig, NULL, NULL, NULL);
}

int sbx_spawner_destroy(struct sbx_spawner *sp, const struct sbx *s, struct zerr *err)
{
	return call_handle(sp, s, SPAWNER_DESTROY, 0, NULL, NULL, err);
}

/* A sandbox killed by the spawner after a failed spawn: our child, reaped. */
static void reap_failed(int pidfd)
{
	siginfo_t si;
	while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | __WALL) < 0 && errno == EINTR)
		;
	close(pidfd);
}

int sbx_spawner_spawn(struct sbx_spawner *sp, const struct sbx_ctx *ctx, const struct sbx_spawn_req *req,
                      struct sbx *ret, struct zerr *err)
{
	ret->pid = -1;
	ret->pidfd = -1;
	static const char *const no_env[] = {NULL};
	struct spawner_req *w = calloc(1, sizeof(*w));
	if (!w)
		return zerr_set(err, -ENOMEM, "out of memory");
	w->op = SPAWNER_SPAWN;
	if (!req->runtime || strlen(req->runtime) >= sizeof(w->runtime)) {
		free(w);
		return zerr_set(err, -EINVAL, "bad runtime name");
	}
	snprintf(w->runtime, sizeof(w->runtime), "%s", req->runtime);
	size_t n = 0;
	for (; req->argv && req->argv[n] && n < SBX_MAX_ARGS; n++)
		w->argv[n] = req->argv[n];
	size_t e = 0;
	const char *const *env = req->env ? req->env : no_env;
	for (; env[e] && e < SBX_MAX_ENV; e++)
		w->env[e] = env[e];
	if (n == 0 || (req->argv[n] && n == SBX_MAX_ARGS) || (env[e] && e == SBX_MAX_ENV)) {
		free(w);
		return zerr_set(err, -E2BIG, "no program, or too many arguments or environment entries");
	}
	w->limits = (struct sbx_maxima){.memory_bytes = req->limits.memory_bytes,
	                                .pids = req->limits.pids,
	                                .cpu_percent = req->limits.cpu_percent,
	                                .tmpfs_bytes = req->tmpfs_bytes,
	                                .fsize_bytes = req->fsize_bytes,
	                                .nofile = req->nofile,
	                                .cpu_seconds = req->cpu_seconds};
	w->background = req->limits.background;
	w->egress_port = req->egress_port;
	w->result_fd = req->result_fd;
	int fds[3];
	size_t nfds = 0;
	for (int i = 0; i < 3; i++)
		if (req->stdio[i] >= 0) {
			w->stdio |= 1u << i;
			fds[nfds++] = req->stdio[i];
		}
	_cleanup_free_ char *msg = malloc(SPAWNER_MSG_MAX);
	ssize_t len = msg ? spawner_encode_request(w, msg, SPAWNER_MSG_MAX) : -ENOMEM;
	free(w);
	if (len < 0)
		return zerr_set(err, (int)len, "spawn request: %s", strerror((int)-len));

	struct spawner_wire_rep rep;
	int in[6];
	size_t nin = 0;
	int r = call(sp, msg, (size_t)len, fds, nfds, &rep, in, ELEMENTSOF(in), &nin, err);
	if (nin == 0)
		return r < 0 ? r : zerr_set(err, -EBADMSG, "malformed answer from the spawner");
	size_t k = 0;
	int pidfd = (rep.fds & 1) ? in[k++] : -1;
	if (r < 0 || !(rep.fds & 2) || pidfd < 0) {
		for (size_t i = k; i < nin; i++)
			close(in[i]);
		if (pidfd >= 0)
			reap_failed(pidfd);
		return r < 0 ? r : zerr_set(err, -EBADMSG, "malformed answer from the spawner");
	}
	struct sbx s = {.pid = rep.pid,
	                .pidfd = pidfd,
	                .slot = (int)rep.slot,
	                .gen = rep.gen,
	                .owner = sp,
	                .uid = rep.uid,
	                .start_ns = rep.start_ns,
	                .slot_fd = -1,
	                .stdio = {-1, -1, -1},
	                .egress_fd = -1};
	s.info_fd = in[k++];
	for (int i = 0; i < 3; i++)
		if (rep.fds & (4u << i))
			s.stdio[i] = in[k++];
	if (rep.fds & 32)
		s.egress_fd = in[k++];
	s.cg.dirfd = -1;
	r = sbx_adopt_cgroup(ctx, &s, err);
	if (r < 0) {
		sbx_destroy(&s);
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
