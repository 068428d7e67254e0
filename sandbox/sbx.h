/* sbx.h - libzsandbox: run one program as a fresh, isolated, limited process.
 *
 * A sandbox is a new pid, mount, net, ipc, uts and cgroup namespace whose
 * pid 1 is the sandbox's own init (code of this library, not a separate
 * binary): it builds the root (read-only tmpfs, read-only /usr, generated
 * /etc, minimal /dev, fresh /proc, a bounded tmpfs at /tmp), drops every
 * privilege, installs the seccomp program, then forks and execs the program,
 * reaps orphans, forwards signals and, when the program ends, kills whatever
 * is left and reports the program's status to the parent over a pipe.
 *
 * Lifecycle: sbx_ctx_init() once per process; then per sandbox sbx_spawn(),
 * optionally sbx_set_limits() (spawn and assign are separate so a pool can
 * start sandboxes ahead of time), poll sbx->pidfd, sbx_reap() (or
 * sbx_wait()), sbx_destroy(). The library never prints and never exits. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cgroup.h"
#include "policy.h"
#include "util.h"

#define SBX_MAX_BINDS   32
#define SBX_MAX_ENV     256
#define SBX_MAX_ARGS    256
#define SBX_MAX_STRINGS (256 * 1024) /* argv + env, bytes */
/* With sbx_spec.result_fd: the descriptor number the program finds its
 * stdout pipe (stdio[1]) at. */
#define SBX_RESULT_FD 3

struct sbx_options {
	const char *cgroup_root;   /* default "/sys/fs/cgroup" */
	const char *cgroup_prefix; /* default "zmesh" */
	const char *run_dir;       /* default "/run/zmesh-sandbox" */
	uint32_t uid_base;         /* default 200000; sandbox uid = base + slot */
	uint32_t slots;            /* default 1024 */
};

struct sbx_ctx {
	struct cg_ctx cg;
	char run_dir[256];
	uint32_t uid_base;
	uint32_t slots;
	uint32_t next_slot; /* where the next slot search starts */
	/* Host top-level links into /usr (merged-/usr): "bin" -> "usr/bin"... */
	char usr_links[8][2][64];
	int n_usr_links;
	char localtime[128]; /* target of /etc/localtime inside */
	/* This process's argument area, which every sandbox's init inherits
	 * and overwrites with its own name. */
	uintptr_t arg_start, arg_end;
};

struct sbx_bind {
	const char *src;
	const char *dst;
	bool rw;
};

struct sbx_spec {
	const char *const *argv; /* argv[0]: absolute path, or a name looked up in PATH inside */
	const char *const *env;  /* KEY=VALUE, NULL-terminated, may be NULL */
	const struct sbx_bind *binds;
	size_t n_binds;
	const struct pol_program *policy; /* required */
	const char *hostname;             /* default "zmesh" */
	uint64_t tmpfs_bytes;             /* /tmp size */
	uint64_t fsize_bytes;             /* RLIMIT_FSIZE */
	uint64_t nofile;                  /* RLIMIT_NOFILE */
	uint64_t cpu_seconds;             /* RLIMIT_CPU, 0: none */
	struct cg_limits limits;          /* cgroup limits applied before the program runs */
	/* Descriptors for the program's stdin, stdout, stderr; -1 asks for a
	 * pipe whose other end is returned in sbx.stdio. */
	int stdio[3];
	/* The program gets stdio[1] as descriptor SBX_RESULT_FD, and its fd 1
	 * is a copy of its stderr: whatever it or its children print lands
	 * with its logs, and only what it writes to SBX_RESULT_FD on purpose
	 * reaches the stdout pipe. A pipe there is handed to the sandbox's uid
	 * (fchown), so that the program can reopen it through
	 * /proc/self/fd/SBX_RESULT_FD as a descriptor of its own that is
	 * close-on-exec and close the inherited one: its children then never
	 * hold it (a runtime that cannot set FD_CLOEXEC, Node, needs this). */
	bool result_fd;
	/* Make the sandbox a child of the caller's parent (CLONE_PARENT): how
	 * the spawner hands sandboxes to the daemon that forked it. */
	bool clone_parent;
	/* Non-zero: a TCP socket listening on 127.0.0.1:egress_port inside the
	 * sandbox's own network namespace, made by its init before anything
	 * else runs there and returned in sbx.egress_fd (the sandbox keeps no
	 * copy). Whoever holds it serves the sandbox's outbound connections;
	 * the namespace has no other way out. */
	uint16_t egress_port;
	/* With netns: the sandbox joins the net namespace netns_fd refers to
	 * (setns, in its init, still privileged) instead of making one of its
	 * own (unshare and bringing lo up, about half a millisecond). It must
	 * be fresh, from sbx_netns_make, and never given to another sandbox:
	 * the caller closes its copy once sbx_spawn returns. The sandbox
	 * keeps none: init closes it once it has joined. */
	bool netns;
	int netns_fd;
};

enum sbx_status {
	SBX_EXITED = 1,
	SBX_SIGNALED,
	SBX_TIMEOUT,
	SBX_OOM,
	SBX_ERROR, /* setup failed, or the program could not be executed */
};

struct sbx_report {
	enum sbx_status status;
	int exit_code; /* SBX_EXITED; also 125/126/127 for SBX_ERROR */
	int signal;    /* SBX_SIGNALED, SBX_TIMEOUT, SBX_OOM when killed */
	bool timed_out;
	bool oom_killed;
	uint64_t wall_us;
	uint64_t cpu_us; /* user + sys of every process of the sandbox */
	uint64_t memory_peak_bytes;
	char error[384]; /* SBX_ERROR: what failed */
};

struct sbx_spawner;

struct sbx {
	pid_t pid; /* host pid of the sandbox's init */
	int pidfd;
	int info_fd; /* init -> parent messages */
	int slot;
	int slot_fd; /* flock on the slot file: held while the sandbox exists */
	uid_t uid;
	struct cg cg;
	int stdio[3];         /* parent ends of the pipes asked for, else -1 */
	int egress_fd;        /* the listener of spec.egress_port, else -1 */
	uint64_t start_ns;    /* spawned, or assigned work (sbx_assign) */
	uint64_t cpu_base_us; /* CPU spent before sbx_assign, left out of reports */
	bool reaped;
	bool killed_for_timeout;
	/* Spawned through a spawner (spawner.h): its cgroup, its signals and
	 * its teardown are the spawner's, asked for by handle (slot, gen).
	 * NULL: this process's own sandbox. */
	struct sbx_spawner *owner;
	uint32_t gen;
};

/* Probe cgroups, prepare the run directory, remove leftovers of crashed
 * sandboxes. opt may be NULL for the defaults. */
int sbx_ctx_init(struct sbx_ctx *ctx, const struct sbx_options *opt, struct zerr *err);

/* Make a fresh net namespace, bring its loopback up, and return a
 * descriptor of it (close-on-exec) for sbx_spec.netns_fd: the costliest
 * part of a sandbox's start, done ahead of time. The calling thread enters
 * the namespace for the time of the call and goes back to the one self_fd
 * refers to (its own, opened before); it aborts rather than go on in the
 * wrong one. Needs CAP_SYS_ADMIN. The namespace lives as long as a
 * descriptor of it, or a process in it, does. */
int sbx_netns_make(int self_fd, struct zerr *err);

/* Validate spec (sizes, names, paths) without side effects. */
int sbx_spec_check(const struct sbx_spec *spec, struct zerr *err);

/* Start a sandbox. On success *ret owns a slot, a cgroup, a pidfd and pipes,
 * released by sbx_destroy(). On failure nothing is left. A failure inside the
 * sandbox after the clone (a bind that cannot be made, the program not
 * found) is not an error here: sbx_reap() reports it as SBX_ERROR.
 * With spec->clone_parent, a failure after the clone leaves ret->pid and
 * ret->pidfd set (else -1): the child is killed, and only the caller's parent
 * can reap it. */
int sbx_spawn(struct sbx_ctx *ctx, const struct sbx_spec *spec, struct sbx *ret, struct zerr *err);

/* Change the cgroup limits of a running sandbox (assign time). These, and
 * sbx_assign, sbx_kill, sbx_kill_timeout and sbx_destroy, go through the
 * spawner for a sandbox it spawned (sbx->owner). */
int sbx_set_limits(struct sbx *sbx, const struct cg_limits *lim, struct zerr *err);

/* The resource limits a sandbox started ahead of time gets with its work. */
struct sbx_rlimits {
	uint64_t cpu_seconds; /* RLIMIT_CPU: on top of what each process has used already */
	uint64_t fsize_bytes; /* RLIMIT_FSIZE */
};

/* Give a sandbox started ahead of time its work: set the limits of the
 * function it will run and restart its accounting (wall time, CPU, memory
 * peak where the cgroup allows) from now, so the report covers the work
 * only. With rl, also narrow the rlimits of every process of the sandbox
 * (sbx_narrow_rlimits; RLIMIT_NPROC = lim->pids). The runtime is already
 * waiting on stdin. */
int sbx_assign(struct sbx *sbx, const struct cg_limits *lim, const struct sbx_rlimits *rl, struct zerr *err);

/* Narrow the rlimits of a running sandbox's processes, its init (pid) and
 * its descendants as /proc/PID/task/PID/children lists them, with
 * prlimit(2), the calling thread taking the sandbox's uid and gid as its
 * real ids for the calls (privileged: needs setresuid and setresgid, and
 * reads their /proc; aborts rather than go on with the sandbox's ids if
 * its own cannot be taken back): RLIMIT_CPU to the CPU
 * time each has used, rounded up to seconds, plus rl->cpu_seconds;
 * RLIMIT_FSIZE to rl->fsize_bytes; RLIMIT_NPROC to nproc. Never above a
 * limit a process has already (only ever narrows). Meant for a sandbox
 * whose program waits (a pooled runtime): a process started meanwhile may
 * be missed, and it inherits the old limits. */
int sbx_narrow_rlimits(pid_t pid, uid_t uid, const struct sbx_rlimits *rl, uint64_t nproc, struct zerr *err);

/* Send a signal to the sandbox's init. SIGKILL ends the whole sandbox; other
 * signals are forwarded by init to the program. */
int sbx_kill(struct sbx *sbx, int sig);

/* Mark the sandbox as killed for its timeout and kill it. */
int sbx_kill_timeout(struct sbx *sbx);

/* Collect the outcome once init has exited (sbx->pidfd readable). Blocks
 * until it has if it has not yet. */
int sbx_reap(struct sbx *sbx, struct sbx_report *ret);

/* Report on a sandbox still running whose work is done (its answer came
 * back): wall time until now, CPU and memory from its cgroup, status exited
 * with code 0. The caller then kills and destroys it, not waiting for the
 * runtime's own exit. */
void sbx_report_now(struct sbx *sbx, struct sbx_report *ret);

/* The cgroup's accounting of a sandbox now (readable without privilege). */
int sbx_get_stats(const struct sbx *sbx, struct cg_stats *ret);

/* Wait for the end with a wall-clock limit (timeout_ms < 0: none): kills the
 * sandbox at the deadline. Convenience over pidfd + sbx_reap. */
int sbx_wait(struct sbx *sbx, int64_t timeout_ms, struct sbx_report *ret);

/* Kill (if still running), reap, remove the cgroup, release the slot, close
 * every descriptor. Accepts a zeroed or already destroyed sbx. */
void sbx_destroy(struct sbx *sbx);

/* Open the cgroup of a sandbox spawned elsewhere (by the spawner) so that its
 * limits, statistics and removal work from this process. */
int sbx_adopt_cgroup(const struct sbx_ctx *ctx, struct sbx *sbx, struct zerr *err);

/* Exit status a command-line tool should return for a report. */
int sbx_report_exit_status(const struct sbx_report *r);
const char *sbx_status_name(enum sbx_status s);
