/* spawner.h - the small, single-threaded, privileged process that creates,
 * narrows, kills and destroys sandboxes for a daemon that holds no privilege.
 *
 * sbx_spawner_start() forks it before the daemon starts any thread and
 * before the daemon drops its privileges. Whatever the daemon may ask for is
 * fixed then, in a struct sbx_spawner_config the spawner keeps: the runtimes
 * it may start (each with its compiled seccomp program and its bind mounts)
 * and the largest limits it grants. A daemon taken over by an attacker can
 * therefore not hand in a filter of its own, bind a host path, raise a
 * sandbox above the maxima, or touch anything that is not one of the
 * sandboxes this spawner created for it.
 *
 * The protocol, one request and one answer at a time over a SOCK_SEQPACKET
 * socketpair, each request one message:
 *   SPAWN    a runtime by name, argv and env for it, its limits, and up to
 *            three stdio descriptors (SCM_RIGHTS); flag SPAWNER_RESULT_FD:
 *            the program gets its stdout pipe as descriptor SBX_RESULT_FD
 *            and fd 1 = its stderr (sbx_spec.result_fd). Answer: the sandbox's
 *            handle (slot and generation), pid, uid, start time, and its
 *            pidfd, init's report pipe and the stdio pipes asked for.
 *   ASSIGN   handle + limits: narrow a sandbox's cgroup limits for the work
 *            it is given, restarting its memory high-water mark, and the
 *            rlimits of its processes (sbx_narrow_rlimits: CPU seconds on
 *            top of what each has used, file size, and RLIMIT_NPROC = the
 *            pids limit); each within the configured maxima.
 *   KILL     handle + SIGKILL or SIGTERM.
 *   DESTROY  handle: kill, remove the cgroup, release the slot; the handle
 *            is invalid afterwards.
 * A handle is the slot and the generation the spawner issued, never a pid:
 * one the spawner did not issue, or has destroyed, is refused (-ESRCH). Every
 * message is length-checked and decoded field by field by a pure function
 * (spawner_decode_request, fuzzed), then checked against the configuration
 * (spawner_check_request); a request that fails either gets an error answer.
 *
 * The sandbox is created with CLONE_PARENT: it is the daemon's child, which
 * the daemon waits for through its pidfd (waiting for one's child needs no
 * privilege; signalling a process of another uid does, hence KILL). Its
 * cgroup files are readable by anyone: the daemon reads the accounting
 * itself. The spawner must be started from the daemon's main thread (the
 * sandboxes' parent-death signal follows the thread that forked it). */
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include "sbx.h"

#define SPAWNER_MAX_RUNTIMES 4
#define SPAWNER_NAME_MAX     32 /* a runtime's name, NUL included */
#define SPAWNER_MAX_BINDS    4  /* of one runtime */

/* A runtime the daemon may start: its seccomp program and its binds. */
struct sbx_runtime {
	char name[SPAWNER_NAME_MAX];
	struct pol_program policy; /* owned */
	struct sbx_bind binds[SPAWNER_MAX_BINDS];
	char bind_src[SPAWNER_MAX_BINDS][512];
	char bind_dst[SPAWNER_MAX_BINDS][128];
	size_t n_binds;
};

/* Limits of one sandbox: what a request asks for, or the most it may. */
struct sbx_maxima {
	uint64_t memory_bytes;
	uint64_t pids;
	uint64_t cpu_percent;
	uint64_t tmpfs_bytes;
	uint64_t fsize_bytes;
	uint64_t nofile;
	uint64_t cpu_seconds;
};

/* Net namespaces the spawner keeps ready (sbx_netns_make): a sandbox joins
 * one instead of making its own on its way to running its program. Made
 * when the spawner is idle (after an answer, while no request waits), each
 * given to one sandbox only, and closed with the spawner. With none in
 * stock, a sandbox makes its own, as the one-shot CLI's always does. */
#define SPAWNER_NETNS_DEFAULT 3
#define SPAWNER_NETNS_MAX     8

struct sbx_spawner_config {
	struct sbx_runtime runtimes[SPAWNER_MAX_RUNTIMES];
	size_t n_runtimes;
	struct sbx_maxima max;
	/* How many net namespaces to keep ready: 0, the default,
	 * $ZMESH_NETNS_STOCK if set (0..SPAWNER_NETNS_MAX; 0 keeps none),
	 * else SPAWNER_NETNS_DEFAULT; < 0 none; else at most
	 * SPAWNER_NETNS_MAX. */
	int netns_stock;
};

/* Add a runtime: name ([a-z0-9_-], at most SPAWNER_NAME_MAX - 1), the path
 * of its policy (compiled here, through cache_dir when not NULL), its binds
 * (copied; validated as sbx_spec_check does). */
int sbx_runtime_add(struct sbx_spawner_config *cfg, const char *name, const char *policy_path, const char *cache_dir,
                    const struct sbx_bind *binds, size_t n_binds, struct zerr *err);
void sbx_spawner_config_done(struct sbx_spawner_config *cfg);

struct sbx_spawner {
	pid_t pid;
	int fd;
	pthread_mutex_t lock; /* one request and its answer at a time */
};

/* Fork the spawner. ctx must have been initialised (sbx_ctx_init) in this
 * process; the spawner keeps copies of ctx and cfg (cfg may be released
 * afterwards). -EINVAL for a $ZMESH_NETNS_STOCK that is not a number
 * within 0..SPAWNER_NETNS_MAX. */
int sbx_spawner_start(struct sbx_ctx *ctx, const struct sbx_spawner_config *cfg, struct sbx_spawner *ret,
                      struct zerr *err);

/* The spawner as a program of its own (zmesh-spawner): a sandbox's init is
 * a copy of the spawner, so a small process makes every launch cheaper than
 * a copy of the daemon would (bench/results/clonecost-*.md).
 *
 * sbx_spawner_exec forks and executes path with argv, the socket as
 * descriptor SBX_SPAWNER_FD and no other descriptor, an environment holding
 * only ZMESH_NETNS_STOCK (checked here, as sbx_spawner_start does); the
 * parent-death signal is SIGKILL from the fork on. It fails if the exec
 * fails. The program builds its ctx and cfg itself, then calls
 * sbx_spawner_serve, which never returns. */
#define SBX_SPAWNER_FD 3
int sbx_spawner_exec(const char *path, char *const argv[], struct sbx_spawner *ret, struct zerr *err);
_Noreturn void sbx_spawner_serve(struct sbx_ctx *ctx, const struct sbx_spawner_config *cfg, int sock);

/* What the daemon asks a sandbox of. */
struct sbx_spawn_req {
	const char *runtime;
	const char *const *argv; /* argv[0]: absolute path, or a name looked up in PATH inside */
	const char *const *env;  /* KEY=VALUE, NULL-terminated, may be NULL */
	uint64_t tmpfs_bytes;
	uint64_t fsize_bytes;
	uint64_t nofile;
	uint64_t cpu_seconds;
	struct cg_limits limits;
	int stdio[3];         /* -1: a pipe, its other end returned in sbx.stdio */
	uint16_t egress_port; /* sbx_spec.egress_port; the listener comes back in sbx.egress_fd */
	bool result_fd;       /* sbx_spec.result_fd */
};

/* Spawn through the spawner. On success *ret is a sandbox of this process
 * (poll ret->pidfd, sbx_reap, sbx_assign, sbx_kill and sbx_destroy work as
 * usual, the last three through the spawner). On failure nothing is left.
 * Thread-safe. */
int sbx_spawner_spawn(struct sbx_spawner *sp, const struct sbx_ctx *ctx, const struct sbx_spawn_req *req,
                      struct sbx *ret, struct zerr *err);

/* The other requests, on a sandbox sbx_spawner_spawn() returned (what
 * sbx_assign, sbx_kill and sbx_destroy call). Thread-safe. */
int sbx_spawner_assign(struct sbx_spawner *sp, const struct sbx *s, const struct cg_limits *lim,
                       const struct sbx_rlimits *rl, struct zerr *err);
int sbx_spawner_kill(struct sbx_spawner *sp, const struct sbx *s, int sig);
int sbx_spawner_destroy(struct sbx_spawner *sp, const struct sbx *s, struct zerr *err);

/* Close the channel and wait for the spawner to exit. */
void sbx_spawner_stop(struct sbx_spawner *sp);

/* ---- the wire: public for the tests and the fuzzer ----------------------- */

#define SPAWNER_MAGIC   0x7a6d7370u /* "zmsp" */
#define SPAWNER_MSG_MAX (sizeof(struct spawner_wire_spawn) + SBX_MAX_STRINGS)

enum spawner_op { SPAWNER_SPAWN = 1, SPAWNER_ASSIGN, SPAWNER_KILL, SPAWNER_DESTROY };

struct spawner_wire_hdr {
	uint32_t magic;
	uint32_t len; /* of the whole message */
	uint32_t op;
	uint32_t zero;
};

/* SPAWN: then n_argv and n_env NUL-terminated strings, up to len exactly. */
struct spawner_wire_spawn {
	struct spawner_wire_hdr h;
	char runtime[SPAWNER_NAME_MAX];
	uint64_t memory_bytes, pids, cpu_percent, tmpfs_bytes, fsize_bytes, nofile, cpu_seconds;
	uint32_t background; /* 0 or 1 */
	uint32_t stdio;      /* bit i: stdio[i] travels as a descriptor */
	uint32_t n_argv, n_env;
	uint32_t egress_port; /* 0..65535 */
	uint32_t flags;       /* SPAWNER_RESULT_FD, nothing else */
};

#define SPAWNER_RESULT_FD 1u /* spawn flag: sbx_spec.result_fd */

/* ASSIGN (limits), KILL (sig), DESTROY; fields an operation does not use
 * are zero. */
struct spawner_wire_handle {
	struct spawner_wire_hdr h;
	uint32_t slot, gen;
	int32_t sig;
	uint32_t zero;
	uint64_t memory_bytes, pids, cpu_percent;
	uint64_t fsize_bytes, cpu_seconds; /* ASSIGN: the rlimits (sbx_rlimits) */
};

struct spawner_wire_rep {
	uint32_t magic;
	uint32_t op;
	int32_t err; /* 0 or a negative errno, msg saying why */
	int32_t pid;
	uint32_t slot, gen, uid;
	uint32_t fds; /* bit 0: pidfd; bit 1: init's report pipe; bits 2-4: stdio[0..2]; bit 5: egress listener */
	uint64_t start_ns;
	char msg[sizeof(((struct zerr *)0)->msg)];
};

/* A request as decoded; strings point into the message. */
struct spawner_req {
	enum spawner_op op;
	uint32_t slot, gen; /* ASSIGN, KILL, DESTROY */
	int sig;            /* KILL */
	char runtime[SPAWNER_NAME_MAX];
	struct sbx_maxima limits; /* SPAWN: all; ASSIGN: memory, pids, cpu percent, fsize, cpu seconds */
	bool background;
	unsigned stdio;       /* SPAWN: bit i, stdio[i] is one of the descriptors */
	unsigned n_fds;       /* descriptors the message must carry */
	uint16_t egress_port; /* SPAWN */
	bool result_fd;       /* SPAWN: flag SPAWNER_RESULT_FD */
	const char *argv[SBX_MAX_ARGS + 1];
	const char *env[SBX_MAX_ENV + 1];
};

/* Decode the len bytes at buf into *ret: structure, lengths, terminations,
 * counts and the values each field may take. Pure. 0, or -EBADMSG with err
 * saying what is wrong. */
int spawner_decode_request(const void *buf, size_t len, struct spawner_req *ret, struct zerr *err);

/* Check a decoded request against what the spawner was configured with: a
 * known runtime, every limit set and within the maxima. Pure; -ENOENT
 * (unknown runtime) or -EPERM (a limit) with err saying which. */
int spawner_check_request(const struct sbx_spawner_config *cfg, const struct spawner_req *req, struct zerr *err);

/* Encode req into buf (of size bytes); the length, or -E2BIG. The inverse
 * of spawner_decode_request. */
ssize_t spawner_encode_request(const struct spawner_req *req, void *buf, size_t size);
