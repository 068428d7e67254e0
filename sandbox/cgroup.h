/* cgroup.h - per-sandbox cgroups: v2 (production) or the v1 memory, pids and
 * cpu hierarchies (fallback), chosen by probing at start-up.
 *
 * Every sandbox gets one cgroup named by the caller (e.g. "sbx-7") under a
 * prefix directory (default "zmesh") of each hierarchy. Nothing outside the
 * prefix is ever created, written or removed. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

enum cg_mode { CG_V1 = 1, CG_V2 = 2 };

/* v1 controllers, in the order of struct cg.path */
enum { CG_MEM, CG_PIDS, CG_CPU, CG_CPUACCT, CG_NCTL };

#define CG_PATH_MAX 512

struct cg_ctx {
	enum cg_mode mode;
	bool has_cpu;       /* cpu quota can be enforced */
	bool has_memsw;     /* v1: memory.memsw.* present (swap accounting) */
	bool has_cpu_usage; /* CPU time of the whole group can be read */
	/* v2: base[0] is <mount>/<prefix>; v1: one base per controller,
	 * base[CG_CPU] is empty without a cpu hierarchy. */
	char base[CG_NCTL][CG_PATH_MAX];
};

struct cg_limits {
	uint64_t memory_bytes; /* 0: no limit */
	uint64_t pids;         /* 0: no limit */
	uint64_t cpu_percent;  /* of one core; 0: no limit */
	/* Lowest CPU weight among its siblings (a pooled sandbox starting
	 * ahead of demand yields to the sandboxes serving invocations);
	 * false: the default weight. */
	bool background;
};

struct cg_stats {
	uint64_t memory_peak_bytes;
	uint64_t memory_current_bytes;
	uint64_t oom_kills;
	uint64_t cpu_usec; /* valid when ctx->has_cpu_usage */
};

struct cg {
	const struct cg_ctx *ctx;
	char path[CG_NCTL][CG_PATH_MAX]; /* v2 uses path[0] only */
	int dirfd;                       /* v2: for CLONE_INTO_CGROUP, else -1 */
};

/* One file write that applying limits takes: file relative to the cgroup. */
struct cg_write {
	int ctl; /* CG_MEM, CG_PIDS, CG_CPU (v2: always 0) */
	const char *file;
	char value[32];
};
#define CG_MAX_WRITES 8

/* Detect the cgroup layout under root (normally "/sys/fs/cgroup") and make the
 * prefix directories (v2: enabling the memory, pids and cpu controllers for
 * them). Fails with -ENOTSUP where neither a usable v2 nor v1 memory+pids
 * exists. When create is false, nothing is written (for tests on fake trees). */
int cg_probe(struct cg_ctx *ctx, const char *root, const char *prefix, bool create, struct zerr *err);

/* The writes that set limits, in the order they must be made. Pure logic;
 * returns the number of entries filled in ret (at most CG_MAX_WRITES). */
int cg_limit_writes(const struct cg_ctx *ctx, const struct cg_limits *lim, struct cg_write ret[CG_MAX_WRITES]);

/* Parse "key value" lines (memory.events, memory.oom_control) for key. */
int cg_parse_keyed(const char *text, const char *key, uint64_t *ret);

/* Create the cgroup name under every hierarchy. A leftover of the same name
 * (from a crash) is killed and removed first. On failure nothing is left. */
int cg_create(const struct cg_ctx *ctx, const char *name, struct cg *ret, struct zerr *err);
/* Name an existing cgroup (created by another process) without touching it. */
int cg_open(const struct cg_ctx *ctx, const char *name, struct cg *ret, struct zerr *err);
/* v1: move pid into the cgroup of every hierarchy. v2: nothing to do when the
 * child was cloned into it; otherwise writes cgroup.procs. */
int cg_attach(const struct cg *cg, pid_t pid, struct zerr *err);
int cg_set_limits(const struct cg *cg, const struct cg_limits *lim, struct zerr *err);
int cg_get_stats(const struct cg *cg, struct cg_stats *ret);
/* Restart the memory high-water mark (v1 memory.max_usage_in_bytes, v2
 * memory.peak where the kernel takes a reset); -EOPNOTSUPP otherwise. */
int cg_reset_peak(const struct cg *cg);
/* Kill every process in the cgroup, wait until it is empty (bounded), remove
 * it. Safe on a cgroup that was never created (all paths empty). */
int cg_destroy(struct cg *cg);
/* cg_destroy without waiting: removes what is empty now, kills what still
 * runs in the rest, and keeps those paths. 0 when all is gone, -EBUSY when
 * some remain (call again later), else the first other failure (those
 * paths are given up). */
int cg_destroy_nowait(struct cg *cg);

/* Remove leftovers under the prefix: for each entry whose name starts with
 * name_prefix, is_stale(name) claims it when it belongs to nobody alive,
 * returning a descriptor (the claim, closed after the removal) or -1. */
int cg_sweep(const struct cg_ctx *ctx, const char *name_prefix, int (*is_stale)(const char *name, void *userdata),
             void *userdata);
