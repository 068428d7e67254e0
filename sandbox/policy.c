/* policy.c - see policy.h */
#define _GNU_SOURCE
#include "policy.h"

#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define POL_MAX_FILES      8
#define POL_MAX_RULES      1024
#define POL_MAX_FILE_BYTES (256 * 1024)

static void seccomp_releasep(scmp_filter_ctx *ctx)
{
	if (*ctx)
		seccomp_release(*ctx);
}

int pol_resolve(const char *name_or_path, const char *dir, char *ret, size_t size, struct zerr *err)
{
	size_t len = strlen(name_or_path);
	if (len == 0)
		return zerr_set(err, -EINVAL, "empty policy name");
	bool is_path = strchr(name_or_path, '/') || (len > 5 && strcmp(name_or_path + len - 5, ".json") == 0);
	int n;
	if (is_path)
		n = snprintf(ret, size, "%s", name_or_path);
	else {
		for (const char *c = name_or_path; *c; c++)
			if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
				return zerr_set(err, -EINVAL, "bad policy name \"%s\"", name_or_path);
		n = snprintf(ret, size, "%s/%s.json", dir, name_or_path);
	}
	if (n < 0 || (size_t)n >= size)
		return zerr_set(err, -ENAMETOOLONG, "policy path too long");
	return 0;
}

static const struct {
	const char *name;
	int value;
} errnos[] = {
    {"EPERM", EPERM}, {"ENOSYS", ENOSYS}, {"EACCES", EACCES}, {"EAFNOSUPPORT", EAFNOSUPPORT}, {"EINVAL", EINVAL},
};

static int parse_action(const char *s, uint32_t *ret)
{
	if (strcmp(s, "allow") == 0) {
		*ret = SCMP_ACT_ALLOW;
		return 0;
	}
	if (strcmp(s, "kill") == 0) {
		*ret = SCMP_ACT_KILL_PROCESS;
		return 0;
	}
	if (strncmp(s, "errno:", 6) == 0)
		for (size_t i = 0; i < ELEMENTSOF(errnos); i++)
			if (strcmp(s + 6, errnos[i].name) == 0) {
				*ret = SCMP_ACT_ERRNO(errnos[i].value);
				return 0;
			}
	return -EINVAL;
}

static int parse_u64(json_t *j, uint64_t *ret)
{
	if (json_is_integer(j) && json_integer_value(j) >= 0) {
		*ret = (uint64_t)json_integer_value(j);
		return 0;
	}
	if (json_is_string(j)) {
		const char *s = json_string_value(j);
		char *end;
		errno = 0;
		unsigned long long v = strtoull(s, &end, 0);
		if (!errno && end != s && *end == '\0') {
			*ret = v;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_op(const char *s, enum scmp_compare *ret)
{
	static const struct {
		const char *name;
		enum scmp_compare op;
	} ops[] = {
	    {"eq", SCMP_CMP_EQ},
	    {"ne", SCMP_CMP_NE},
	    {"lt", SCMP_CMP_LT},
	    {"le", SCMP_CMP_LE},
	    {"gt", SCMP_CMP_GT},
	    {"ge", SCMP_CMP_GE},
	    {"masked_eq", SCMP_CMP_MASKED_EQ},
	};
	for (size_t i = 0; i < ELEMENTSOF(ops); i++)
		if (strcmp(s, ops[i].name) == 0) {
			*ret = ops[i].op;
			return 0;
		}
	return -EINVAL;
}

static int syscall_nr(const char *name, const char *file, struct zerr *err)
{
	int nr = seccomp_syscall_resolve_name(name);
	if (nr == __NR_SCMP_ERROR)
		return zerr_set(err, -EINVAL, "%s: unknown syscall \"%s\"", file, name);
	return nr;
}

static int add_rule(scmp_filter_ctx ctx, const char *file, json_t *rule, struct zerr *err)
{
	if (!json_is_object(rule))
		return zerr_set(err, -EINVAL, "%s: a rule must be an object", file);
	const char *action_s = json_string_value(json_object_get(rule, "action"));
	uint32_t action;
	if (!action_s || parse_action(action_s, &action) < 0)
		return zerr_set(err, -EINVAL, "%s: bad or missing rule action", file);

	struct scmp_arg_cmp cmps[6];
	unsigned ncmp = 0;
	json_t *args = json_object_get(rule, "args");
	if (args && !json_is_array(args))
		return zerr_set(err, -EINVAL, "%s: rule args must be an array", file);
	size_t i;
	json_t *a;
	json_array_foreach (args, i, a) {
		if (ncmp >= ELEMENTSOF(cmps))
			return zerr_set(err, -E2BIG, "%s: too many argument conditions", file);
		json_t *idx = json_object_get(a, "index");
		const char *op_s = json_string_value(json_object_get(a, "op"));
		enum scmp_compare op;
		uint64_t value = 0, mask = 0;
		if (!json_is_integer(idx) || json_integer_value(idx) < 0 || json_integer_value(idx) > 5 || !op_s ||
		    parse_op(op_s, &op) < 0 || parse_u64(json_object_get(a, "value"), &value) < 0)
			return zerr_set(err, -EINVAL, "%s: bad argument condition", file);
		if (op == SCMP_CMP_MASKED_EQ) {
			if (parse_u64(json_object_get(a, "mask"), &mask) < 0)
				return zerr_set(err, -EINVAL, "%s: masked_eq needs a mask", file);
			cmps[ncmp++] = (struct scmp_arg_cmp){(unsigned)json_integer_value(idx), op, mask, value};
		} else
			cmps[ncmp++] = (struct scmp_arg_cmp){(unsigned)json_integer_value(idx), op, value, 0};
	}

	json_t *names = json_object_get(rule, "syscalls");
	if (!json_is_array(names) || json_array_size(names) == 0)
		return zerr_set(err, -EINVAL, "%s: a rule needs a non-empty \"syscalls\" array", file);
	json_t *n;
	json_array_foreach (names, i, n) {
		if (!json_is_string(n))
			return zerr_set(err, -EINVAL, "%s: syscall names must be strings", file);
		int nr = syscall_nr(json_string_value(n), file, err);
		if (nr == -EINVAL)
			return nr;
		int r = seccomp_rule_add_array(ctx, action, nr, ncmp, cmps);
		if (r < 0)
			return zerr_set(err, r, "%s: rule for %s: %s", file, json_string_value(n), strerror(-r));
	}
	return 0;
}

static int load_json(const char *path, json_t **ret, struct zerr *err)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return zerr_set(err, -errno, "policy %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode) || st.st_size > POL_MAX_FILE_BYTES)
		return zerr_set(err, -EINVAL, "policy %s: not a regular file under %d bytes", path, POL_MAX_FILE_BYTES);
	json_error_t jerr;
	json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return zerr_set(err, -EINVAL, "policy %s:%d: %s", path, jerr.line, jerr.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return zerr_set(err, -EINVAL, "policy %s: not a JSON object", path);
	}
	*ret = j;
	return 0;
}

/* Collect the file and its includes, includes first, each once. */
static int collect(const char *path, const char *dir, json_t **files, char (*paths)[512], int *n, int depth,
                   struct zerr *err)
{
	for (int i = 0; i < *n; i++)
		if (strcmp(paths[i], path) == 0)
			return 0;
	if (depth > 4 || *n >= POL_MAX_FILES)
		return zerr_set(err, -ELOOP, "policy %s: includes nest too deep or form a cycle", path);
	json_t *j = NULL;
	int r = load_json(path, &j, err);
	if (r < 0)
		return r;
	json_t *inc = json_object_get(j, "include");
	if (inc && !json_is_array(inc)) {
		json_decref(j);
		return zerr_set(err, -EINVAL, "policy %s: \"include\" must be an array", path);
	}
	size_t i;
	json_t *name;
	json_array_foreach (inc, i, name) {
		char p[512];
		if (!json_is_string(name) || (r = pol_resolve(json_string_value(name), dir, p, sizeof(p), err)) < 0 ||
		    (r = collect(p, dir, files, paths, n, depth + 1, err)) < 0) {
			json_decref(j);
			return r < 0 ? r : zerr_set(err, -EINVAL, "policy %s: bad include", path);
		}
	}
	if (*n >= POL_MAX_FILES) {
		json_decref(j);
		return zerr_set(err, -E2BIG, "policy %s: too many includes", path);
	}
	snprintf(paths[*n], 512, "%s", path);
	files[(*n)++] = j;
	return 0;
}

/* Compile path; paths[] receives every file read, *ret_nfiles their count. */
static int compile_files(const char *path, struct pol_program *ret, char (*paths)[512], int *ret_nfiles,
                         struct zerr *err)
{
	json_t *files[POL_MAX_FILES] = {0};
	int nfiles = 0;
	_cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
	_cleanup_close_ int fd = -1;

	char dir[512];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");

	int r = collect(path, dir, files, paths, &nfiles, 0, err);
	if (r < 0)
		goto out;

	/* The last file that names a default action wins: the top one. */
	uint32_t def = SCMP_ACT_ERRNO(EPERM);
	for (int i = 0; i < nfiles; i++) {
		json_t *d = json_object_get(files[i], "default_action");
		if (d && (!json_is_string(d) || parse_action(json_string_value(d), &def) < 0)) {
			r = zerr_set(err, -EINVAL, "policy %s: bad default_action", paths[i]);
			goto out;
		}
	}

	ctx = seccomp_init(def);
	if (!ctx) {
		r = zerr_set(err, -ENOMEM, "seccomp_init failed");
		goto out;
	}
	/* A binary tree of syscall numbers instead of a linear chain: every
	 * syscall the runtime makes pays for the filter. */
	seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	/* no_new_privs is set by the sandbox itself before installing. */
	seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);

	int nrules = 0;
	for (int f = 0; f < nfiles; f++) {
		json_t *allow = json_object_get(files[f], "allow");
		if (allow && !json_is_array(allow)) {
			r = zerr_set(err, -EINVAL, "policy %s: \"allow\" must be an array", paths[f]);
			goto out;
		}
		size_t i;
		json_t *n;
		json_array_foreach (allow, i, n) {
			if (!json_is_string(n) || ++nrules > POL_MAX_RULES) {
				r = zerr_set(err, -EINVAL, "policy %s: bad or too many allow entries", paths[f]);
				goto out;
			}
			int nr = syscall_nr(json_string_value(n), paths[f], err);
			if (nr == -EINVAL) {
				r = nr;
				goto out;
			}
			r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
			if (r < 0) {
				r = zerr_set(err, r, "policy %s: allow %s: %s", paths[f], json_string_value(n),
				             strerror(-r));
				goto out;
			}
		}
		json_t *rules = json_object_get(files[f], "rules");
		if (rules && !json_is_array(rules)) {
			r = zerr_set(err, -EINVAL, "policy %s: \"rules\" must be an array", paths[f]);
			goto out;
		}
		json_t *rule;
		json_array_foreach (rules, i, rule) {
			if (++nrules > POL_MAX_RULES) {
				r = zerr_set(err, -E2BIG, "policy %s: too many rules", paths[f]);
				goto out;
			}
			r = add_rule(ctx, paths[f], rule, err);
			if (r < 0)
				goto out;
		}
	}

	fd = memfd_create("zmesh-policy", MFD_CLOEXEC);
	if (fd < 0) {
		r = zerr_set(err, -errno, "memfd_create: %s", strerror(errno));
		goto out;
	}
	r = seccomp_export_bpf(ctx, fd);
	if (r < 0) {
		r = zerr_set(err, r, "policy %s: export: %s", path, strerror(-r));
		goto out;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0 ||
	    st.st_size / sizeof(struct sock_filter) > BPF_MAXINSNS) {
		r = zerr_set(err, -EINVAL, "policy %s: compiled program has a bad size", path);
		goto out;
	}
	struct sock_filter *insns = malloc((size_t)st.st_size);
	if (!insns) {
		r = zerr_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	if (pread(fd, insns, (size_t)st.st_size, 0) != st.st_size) {
		free(insns);
		r = zerr_set(err, -EIO, "policy %s: reading compiled program failed", path);
		goto out;
	}
	ret->fprog.len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
	ret->fprog.filter = insns;
	r = 0;
out:
	for (int i = 0; i < nfiles; i++)
		json_decref(files[i]);
	*ret_nfiles = nfiles;
	return r;
}

int pol_compile(const char *path, struct pol_program *ret, struct zerr *err)
{
	char paths[POL_MAX_FILES][512];
	int n;
	return compile_files(path, ret, paths, &n, err);
}

/* The compile cache: parsing JSON and compiling with libseccomp costs about a
 * millisecond, more than the rest of a sandbox's setup in user space. The
 * cache file names every source file with its identity and mtime; any change
 * to one of them, or another libseccomp, makes it stale. */
#define CACHE_MAGIC 0x7a6d6263u /* "zmbc" */

struct cache_file {
	char path[512];
	uint64_t dev, ino, size;
	int64_t mtime_sec, mtime_nsec;
};

struct cache_hdr {
	uint32_t magic;
	uint32_t seccomp_version;
	uint32_t n_files;
	uint32_t n_insns;
	struct cache_file files[POL_MAX_FILES];
};

static uint32_t seccomp_version_code(void)
{
	const struct scmp_version *v = seccomp_version();
	return v ? (v->major << 20) | (v->minor << 10) | v->micro : 0;
}

static bool same_file(const struct cache_file *f)
{
	struct stat st;
	return stat(f->path, &st) == 0 && (uint64_t)st.st_dev == f->dev && (uint64_t)st.st_ino == f->ino &&
	       (uint64_t)st.st_size == f->size && st.st_mtim.tv_sec == f->mtime_sec &&
	       st.st_mtim.tv_nsec == f->mtime_nsec;
}

static int cache_load(const char *cache, struct pol_program *ret)
{
	_cleanup_close_ int fd = open(cache, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	struct stat st;
	/* Only a file of ours: root's, writable by nobody else. */
	if (fstat(fd, &st) < 0 || st.st_uid != 0 || (st.st_mode & 022) || !S_ISREG(st.st_mode))
		return -EPERM;
	struct cache_hdr h;
	if (read(fd, &h, sizeof(h)) != sizeof(h) || h.magic != CACHE_MAGIC ||
	    h.seccomp_version != seccomp_version_code() || h.n_files == 0 || h.n_files > POL_MAX_FILES ||
	    h.n_insns == 0 || h.n_insns > BPF_MAXINSNS ||
	    (size_t)st.st_size != sizeof(h) + h.n_insns * sizeof(struct sock_filter))
		return -EINVAL;
	for (uint32_t i = 0; i < h.n_files; i++) {
		h.files[i].path[sizeof(h.files[i].path) - 1] = '\0';
		if (!same_file(&h.files[i]))
			return -ESTALE;
	}
	size_t bytes = h.n_insns * sizeof(struct sock_filter);
	struct sock_filter *insns = malloc(bytes);
	if (!insns)
		return -ENOMEM;
	if (read(fd, insns, bytes) != (ssize_t)bytes) {
		free(insns);
		return -EIO;
	}
	ret->fprog.len = (unsigned short)h.n_insns;
	ret->fprog.filter = insns;
	return 0;
}

static void cache_store(const char *cache, const struct pol_program *prog, char (*paths)[512], int n)
{
	struct cache_hdr h;
	memset(&h, 0, sizeof(h));
	h.magic = CACHE_MAGIC;
	h.seccomp_version = seccomp_version_code();
	h.n_files = (uint32_t)n;
	h.n_insns = prog->fprog.len;
	for (int i = 0; i < n; i++) {
		struct stat st;
		if (stat(paths[i], &st) < 0)
			return;
		memcpy(h.files[i].path, paths[i], sizeof(h.files[i].path));
		h.files[i].path[sizeof(h.files[i].path) - 1] = '\0';
		h.files[i].dev = st.st_dev;
		h.files[i].ino = st.st_ino;
		h.files[i].size = (uint64_t)st.st_size;
		h.files[i].mtime_sec = st.st_mtim.tv_sec;
		h.files[i].mtime_nsec = st.st_mtim.tv_nsec;
	}
	char tmp[340];
	snprintf(tmp, sizeof(tmp), "%.300s.%d", cache, (int)getpid());
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return;
	size_t bytes = prog->fprog.len * sizeof(struct sock_filter);
	if (write(fd, &h, sizeof(h)) != sizeof(h) || write(fd, prog->fprog.filter, bytes) != (ssize_t)bytes ||
	    rename(tmp, cache) < 0)
		unlink(tmp);
}

int pol_compile_cached(const char *path, const char *cache_dir, struct pol_program *ret, struct zerr *err)
{
	char abs[PATH_MAX];
	if (!cache_dir || strlen(cache_dir) > 256 || !realpath(path, abs) || strlen(abs) >= 512)
		return pol_compile(path, ret, err);
	/* FNV-1a of the policy's real path names its cache file. */
	uint64_t hash = 1469598103934665603ull;
	for (const char *c = abs; *c; c++)
		hash = (hash ^ (unsigned char)*c) * 1099511628211ull;
	char cache[300];
	snprintf(cache, sizeof(cache), "%.256s/policy-%016llx.bpf", cache_dir, (unsigned long long)hash);
	if (cache_load(cache, ret) == 0)
		return 0;
	char paths[POL_MAX_FILES][512];
	int n = 0;
	int r = compile_files(abs, ret, paths, &n, err);
	if (r == 0)
		cache_store(cache, ret, paths, n);
	return r;
}

int pol_install(const struct pol_program *prog)
{
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog->fprog) < 0)
		return -errno;
	return 0;
}

void pol_program_free(struct pol_program *prog)
{
	if (!prog)
		return;
	free(prog->fprog.filter);
	prog->fprog.filter = NULL;
	prog->fprog.len = 0;
}
