/* cgroup.c - see cgroup.h */
#define _GNU_SOURCE
#include "cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *const v1_names[CG_NCTL] = {"memory", "pids", "cpu", "cpuacct"};

static bool file_exists(const char *dir, const char *file)
{
	char p[CG_PATH_MAX];
	if (snprintf(p, sizeof(p), "%s/%s", dir, file) >= (int)sizeof(p))
		return false;
	return access(p, F_OK) == 0;
}

/* A v2 hierarchy is usable when its root offers memory and pids. */
static bool v2_usable(const char *mount, bool *ret_cpu)
{
	char p[CG_PATH_MAX], buf[512];
	if (snprintf(p, sizeof(p), "%s/cgroup.controllers", mount) >= (int)sizeof(p))
		return false;
	if (util_read_file(p, buf, sizeof(buf)) < 0)
		return false;
	bool mem = false, pids = false, cpu = false;
	char *save = NULL;
	for (char *w = strtok_r(buf, " \n", &save); w; w = strtok_r(NULL, " \n", &save)) {
		mem |= strcmp(w, "memory") == 0;
		pids |= strcmp(w, "pids") == 0;
		cpu |= strcmp(w, "cpu") == 0;
	}
	*ret_cpu = cpu;
	return mem && pids;
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int cg_probe(struct cg_ctx *ctx, const char *root, const char *prefix, bool create, struct zerr *err)
{
	memset(ctx, 0, sizeof(*ctx));
	if (!prefix || !prefix[0] || strstr(prefix, "..") || prefix[0] == '/')
		return zerr_set(err, -EINVAL, "cgroup prefix \"%s\" must be a relative path", prefix ? prefix : "");

	char mount[CG_PATH_MAX];
	bool cpu = false;
	const char *v2_candidates[] = {"", "/unified"};
	for (size_t i = 0; i < ELEMENTSOF(v2_candidates); i++) {
		snprintf(mount, sizeof(mount), "%s%s", root, v2_candidates[i]);
		if (!v2_usable(mount, &cpu))
			continue;
		ctx->mode = CG_V2;
		ctx->has_cpu = cpu;
		ctx->has_cpu_usage = true; /* cpu.stat usage_usec is always there */
		if (snprintf(ctx->base[0], CG_PATH_MAX, "%s/%s", mount, prefix) >= CG_PATH_MAX)
			return zerr_set(err, -ENAMETOOLONG, "cgroup path too long");
		if (!create)
			return 0;
		/* Controllers must be enabled on every level above a leaf. The
		 * prefix directory holds no process itself ("no internal
		 * processes"), so enabling them there is always allowed. */
		const char *enable = cpu ? "+memory +pids +cpu" : "+memory +pids";
		char p[CG_PATH_MAX + 32];
		snprintf(p, sizeof(p), "%s/cgroup.subtree_control", mount);
		int r = util_write_file(p, enable);
		if (r < 0)
			return zerr_set(err, r, "enable controllers in %s: %s", mount, strerror(-r));
		r = make_dir(ctx->base[0]);
		if (r < 0)
			return zerr_set(err, r, "mkdir %s: %s", ctx->base[0], strerror(-r));
		snprintf(p, sizeof(p), "%s/cgroup.subtree_control", ctx->base[0]);
		r = util_write_file(p, enable);
		if (r < 0)
			return zerr_set(err, r, "enable controllers in %s: %s", ctx->base[0], strerror(-r));
		/* memory.swap.max exists only with swap accounting. */
		ctx->has_memsw = file_exists(ctx->base[0], "memory.swap.max");
		return 0;
	}

	char dir[CG_PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/memory", root);
	bool mem = file_exists(dir, "memory.limit_in_bytes");
	ctx->has_memsw = file_exists(dir, "memory.memsw.limit_in_bytes");
	snprintf(dir, sizeof(dir), "%s/pids", root);
	bool pids = file_exists(dir, "cgroup.procs");
	snprintf(dir, sizeof(dir), "%s/cpu", root);
	ctx->has_cpu = file_exists(dir, "cpu.cfs_quota_us");
	/* The CPU time of every process of a sandbox, also of those killed
	 * with it, which no wait status accounts for. */
	snprintf(dir, sizeof(dir), "%s/cpuacct", root);
	ctx->has_cpu_usage = file_exists(dir, "cpuacct.usage");
	if (!mem || !pids)
		return zerr_set(
		    err, -ENOTSUP,
		    "no usable cgroup hierarchy under %s (need v2 with memory and pids, or v1 memory and pids)", root);
	ctx->mode = CG_V1;
	for (int c = 0; c < CG_NCTL; c++) {
		if ((c == CG_CPU && !ctx->has_cpu) || (c == CG_CPUACCT && !ctx->has_cpu_usage))
			continue;
		if (snprintf(ctx->base[c], CG_PATH_MAX, "%s/%s/%s", root, v1_names[c], prefix) >= CG_PATH_MAX)
			return zerr_set(err, -ENAMETOOLONG, "cgroup path too long");
		if (!create)
			continue;
		int r = make_dir(ctx->base[c]);
		if (r < 0)
			return zerr_set(err, r, "mkdir %s: %s", ctx->base[c], strerror(-r));
	}
	return 0;
}

static void add_write(struct cg_write *w, int *n, int ctl, const char *file, uint64_t v, const char *suffix)
{
	w[*n].ctl = ctl;
	w[*n].file = file;
	snprintf(w[*n].value, sizeof(w[*n].value), "%" PRIu64 "%s", v, suffix);
	(*n)++;
}

static void add_write_str(struct cg_write *w, int *n, int ctl, const char *file, const char *v)
{
	w[*n].ctl = ctl;
	w[*n].file = file;
	snprintf(w[*n].value, sizeof(w[*n].value), "%s", v);
	(*n)++;
}

int cg_limit_writes(const struct cg_ctx *ctx, const struct cg_limits *lim, struct cg_write ret[CG_MAX_WRITES])
{
	int n = 0;
	if (ctx->mode == CG_V2) {
		if (lim->memory_bytes) {
			add_write(ret, &n, 0, "memory.max", lim->memory_bytes, "");
			/* No swap: an over-limit sandbox is killed, not slowed to a
			 * crawl. (No swap accounting: no swap file to write.) */
			if (ctx->has_memsw)
				add_write(ret, &n, 0, "memory.swap.max", 0, "");
		}
		if (lim->pids)
			add_write(ret, &n, 0, "pids.max", lim->pids, "");
		if (ctx->has_cpu) {
			if (lim->cpu_percent)
				add_write(ret, &n, 0, "cpu.max", lim->cpu_percent * 1000, " 100000");
			else
				add_write_str(ret, &n, 0, "cpu.max", "max 100000");
			add_write(ret, &n, 0, "cpu.weight", lim->background ? 1 : 100, "");
		}
		return n;
	}
	if (lim->memory_bytes) {
		add_write(ret, &n, CG_MEM, "memory.limit_in_bytes", lim->memory_bytes, "");
		if (ctx->has_memsw)
			add_write(ret, &n, CG_MEM, "memory.memsw.limit_in_bytes", lim->memory_bytes, "");
		else
			add_write(ret, &n, CG_MEM, "memory.swappiness", 0, "");
	}
	if (lim->pids)
		add_write(ret, &n, CG_PIDS, "pids.max", lim->pids, "");
	if (ctx->has_cpu) {
		add_write(ret, &n, CG_CPU, "cpu.cfs_period_us", 100000, "");
		if (lim->cpu_percent)
			add_write(ret, &n, CG_CPU, "cpu.cfs_quota_us", lim->cpu_percent * 1000, "");
		else
			add_write_str(ret, &n, CG_CPU, "cpu.cfs_quota_us", "-1");
		add_write(ret, &n, CG_CPU, "cpu.shares", lim->background ? 2 : 1024, "");
	}
	return n;
}

int cg_parse_keyed(const char *text, const char *key, uint64_t *ret)
{
	size_t klen = strlen(key);
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, key, klen) == 0 && l[klen] == ' ') {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(l + klen + 1, &end, 10);
			if (errno || (*end != '\n' && *end != '\0'))
				return -EINVAL;
			*ret = v;
			return 0;
		}
	}
	return -ENOENT;
}

static int cg_file(const struct cg *cg, int ctl, const char *file, char *buf, size_t size)
{
	const char *dir = cg->path[cg->ctx->mode == CG_V2 ? 0 : ctl];
	if (!dir[0])
		return -ENOENT;
	if (snprintf(buf, size, "%s/%s", dir, file) >= (int)size)
		return -ENAMETOOLONG;
	return 0;
}

/* Kill every process listed in cgroup.procs of dir until it is empty; bounded
 * so that a cgroup that cannot empty (a D-state task) does not hang us. */
static int kill_procs(const char *dir)
{
	char p[CG_PATH_MAX + 32], buf[4096];
	snprintf(p, sizeof(p), "%s/cgroup.kill", dir);
	bool have_kill = util_write_file(p, "1") == 0;
	snprintf(p, sizeof(p), "%s/cgroup.procs", dir);
	for (int round = 0; round < 200; round++) {
		int n = util_read_file(p, buf, sizeof(buf));
		if (n < 0)
			return n == -ENOENT ? 0 : n;
		if (n == 0)
			return 0;
		if (!have_kill) {
			/* A full buffer may end in half a pid: kill whole lines
			 * only, the rest comes in the next round. */
			if ((size_t)n >= sizeof(buf) - 1) {
				char *last = strrchr(buf, '\n');
				if (!last)
					return -EIO;
				last[1] = '\0';
			}
			char *save = NULL;
			for (char *w = strtok_r(buf, "\n", &save); w; w = strtok_r(NULL, "\n", &save)) {
				long pid = strtol(w, NULL, 10);
				if (pid > 1)
					kill((pid_t)pid, SIGKILL);
			}
		}
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return -EBUSY;
}

static int remove_dir(const char *dir)
{
	if (!dir[0])
		return 0;
	if (rmdir(dir) == 0 || errno == ENOENT)
		return 0;
	if (errno != EBUSY)
		return -errno;
	int r = kill_procs(dir);
	if (r < 0)
		return r;
	for (int i = 0; i < 100; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return -errno;
		struct timespec ts = {0, 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return -EBUSY;
}

int cg_destroy(struct cg *cg)
{
	if (!cg || !cg->ctx)
		return 0;
	int ret = 0;
	if (cg->dirfd >= 0) {
		close(cg->dirfd);
		cg->dirfd = -1;
	}
	for (int c = 0; c < CG_NCTL; c++) {
		int r = remove_dir(cg->path[c]);
		if (r < 0 && ret == 0)
			ret = r;
		cg->path[c][0] = '\0';
	}
	return ret;
}

int cg_destroy_nowait(struct cg *cg)
{
	if (!cg || !cg->ctx)
		return 0;
	if (cg->dirfd >= 0) {
		close(cg->dirfd);
		cg->dirfd = -1;
	}
	int ret = 0;
	for (int c = 0; c < CG_NCTL; c++) {
		if (!cg->path[c][0])
			continue;
		if (rmdir(cg->path[c]) == 0 || errno == ENOENT) {
			cg->path[c][0] = '\0';
		} else if (errno == EBUSY) {
			/* Processes still leaving (a pid namespace's teardown):
			 * make sure they are, and look again later. */
			kill_procs(cg->path[c]);
			if (ret == 0)
				ret = -EBUSY;
		} else {
			if (ret == 0 || ret == -EBUSY)
				ret = -errno;
			cg->path[c][0] = '\0';
		}
	}
	return ret;
}

int cg_create(const struct cg_ctx *ctx, const char *name, struct cg *ret, struct zerr *err)
{
	struct cg cg = {.ctx = ctx, .dirfd = -1};
	int n = ctx->mode == CG_V2 ? 1 : CG_NCTL;
	for (int c = 0; c < n; c++) {
		if (!ctx->base[c][0])
			continue;
		if (snprintf(cg.path[c], CG_PATH_MAX, "%s/%s", ctx->base[c], name) >= CG_PATH_MAX) {
			cg_destroy(&cg);
			return zerr_set(err, -ENAMETOOLONG, "cgroup path too long");
		}
		if (mkdir(cg.path[c], 0755) < 0) {
			int r = -errno;
			if (r == -EEXIST) {
				/* A leftover of an earlier crash holding this name: the
				 * caller owns the name now, so whatever is there is stale. */
				r = remove_dir(cg.path[c]);
				if (r == 0 && mkdir(cg.path[c], 0755) < 0)
					r = -errno;
			}
			if (r < 0) {
				int saved = r;
				char failed[CG_PATH_MAX];
				snprintf(failed, sizeof(failed), "%s", cg.path[c]);
				cg.path[c][0] = '\0';
				cg_destroy(&cg);
				return zerr_set(err, saved, "mkdir %s: %s", failed, strerror(-saved));
			}
		}
	}
	if (ctx->mode == CG_V2) {
		cg.dirfd = open(cg.path[0], O_DIRECTORY | O_RDONLY | O_CLOEXEC);
		if (cg.dirfd < 0) {
			int r = -errno;
			cg_destroy(&cg);
			return zerr_set(err, r, "open cgroup %s: %s", name, strerror(-r));
		}
	}
	*ret = cg;
	return 0;
}

int cg_open(const struct cg_ctx *ctx, const char *name, struct cg *ret, struct zerr *err)
{
	struct cg cg = {.ctx = ctx, .dirfd = -1};
	int n = ctx->mode == CG_V2 ? 1 : CG_NCTL;
	for (int c = 0; c < n; c++) {
		if (!ctx->base[c][0])
			continue;
		if (snprintf(cg.path[c], CG_PATH_MAX, "%s/%s", ctx->base[c], name) >= CG_PATH_MAX)
			return zerr_set(err, -ENAMETOOLONG, "cgroup path too long");
	}
	*ret = cg;
	return 0;
}

int cg_attach(const struct cg *cg, pid_t pid, struct zerr *err)
{
	char p[CG_PATH_MAX + 32], v[24];
	snprintf(v, sizeof(v), "%d", (int)pid);
	int n = cg->ctx->mode == CG_V2 ? 1 : CG_NCTL;
	for (int c = 0; c < n; c++) {
		if (!cg->path[c][0])
			continue;
		snprintf(p, sizeof(p), "%s/cgroup.procs", cg->path[c]);
		int r = util_write_file(p, v);
		if (r < 0)
			return zerr_set(err, r, "attach %d to %s: %s", (int)pid, cg->path[c], strerror(-r));
	}
	return 0;
}

int cg_set_limits(const struct cg *cg, const struct cg_limits *lim, struct zerr *err)
{
	struct cg_write w[CG_MAX_WRITES];
	int n = cg_limit_writes(cg->ctx, lim, w);
	char p[CG_PATH_MAX + 64];
	for (int i = 0; i < n; i++) {
		int r = cg_file(cg, w[i].ctl, w[i].file, p, sizeof(p));
		if (r == 0)
			r = util_write_file(p, w[i].value);
		/* v1 keeps memsw >= memory at every moment: raising the memory
		 * limit of a group whose memsw is lower needs memsw first. */
		if (r == -EINVAL && i + 1 < n && strcmp(w[i + 1].file, "memory.memsw.limit_in_bytes") == 0) {
			char q[CG_PATH_MAX + 64];
			if (cg_file(cg, w[i + 1].ctl, w[i + 1].file, q, sizeof(q)) == 0 &&
			    util_write_file(q, w[i + 1].value) == 0)
				r = util_write_file(p, w[i].value);
		}
		if (r < 0)
			return zerr_set(err, r, "set %s=%s: %s", p, w[i].value, strerror(-r));
	}
	return 0;
}

int cg_get_stats(const struct cg *cg, struct cg_stats *ret)
{
	char p[CG_PATH_MAX + 64], buf[2048];
	struct cg_stats st = {0};
	bool v2 = cg->ctx->mode == CG_V2;
	if (cg_file(cg, CG_MEM, v2 ? "memory.peak" : "memory.max_usage_in_bytes", p, sizeof(p)) == 0 &&
	    util_read_file(p, buf, sizeof(buf)) > 0)
		st.memory_peak_bytes = strtoull(buf, NULL, 10);
	if (cg_file(cg, CG_MEM, v2 ? "memory.current" : "memory.usage_in_bytes", p, sizeof(p)) == 0 &&
	    util_read_file(p, buf, sizeof(buf)) > 0)
		st.memory_current_bytes = strtoull(buf, NULL, 10);
	if (cg_file(cg, CG_MEM, v2 ? "memory.events" : "memory.oom_control", p, sizeof(p)) == 0 &&
	    util_read_file(p, buf, sizeof(buf)) > 0)
		cg_parse_keyed(buf, "oom_kill", &st.oom_kills);
	if (v2) {
		if (cg_file(cg, 0, "cpu.stat", p, sizeof(p)) == 0 && util_read_file(p, buf, sizeof(buf)) > 0)
			cg_parse_keyed(buf, "usage_usec", &st.cpu_usec);
	} else if (cg_file(cg, CG_CPUACCT, "cpuacct.usage", p, sizeof(p)) == 0 &&
	           util_read_file(p, buf, sizeof(buf)) > 0)
		st.cpu_usec = strtoull(buf, NULL, 10) / 1000;
	*ret = st;
	return 0;
}

int cg_reset_peak(const struct cg *cg)
{
	char p[CG_PATH_MAX + 64];
	bool v2 = cg->ctx->mode == CG_V2;
	int r = cg_file(cg, CG_MEM, v2 ? "memory.peak" : "memory.max_usage_in_bytes", p, sizeof(p));
	if (r == 0)
		r = util_write_file(p, v2 ? "reset" : "0");
	return r < 0 ? -EOPNOTSUPP : 0;
}

int cg_sweep(const struct cg_ctx *ctx, const char *name_prefix, int (*is_stale)(const char *name, void *userdata),
             void *userdata)
{
	int removed = 0;
	size_t plen = strlen(name_prefix);
	/* The memory (or v2) hierarchy lists every sandbox; the others mirror it. */
	for (int c = 0; c < CG_NCTL; c++) {
		if (!ctx->base[c][0])
			continue;
		DIR *d = opendir(ctx->base[c]);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_type != DT_DIR || strncmp(de->d_name, name_prefix, plen) != 0)
				continue;
			/* The claim (a lock) is held until the removal is done,
			 * so that nobody can take the name meanwhile. */
			int claim = is_stale(de->d_name, userdata);
			if (claim < 0)
				continue;
			char p[CG_PATH_MAX];
			if (snprintf(p, sizeof(p), "%s/%s", ctx->base[c], de->d_name) < (int)sizeof(p) &&
			    remove_dir(p) == 0)
				removed++;
			close(claim);
		}
		closedir(d);
	}
	return removed;
}
