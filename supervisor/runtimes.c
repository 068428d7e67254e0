/* runtimes.c - see runtimes.h */
#define _GNU_SOURCE
#include "runtimes.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "policy.h"
#include "tiers.h"

const char *exec_runtime_name(enum exec_lang lang)
{
	return lang == EXEC_JS ? "node" : "python";
}

size_t exec_runtime_binds(const char *sdk_js, const char *sdk_py, const char *pg_socket_dir, enum exec_lang lang,
                          struct sbx_bind ret[2])
{
	ret[0] = (struct sbx_bind){.src = lang == EXEC_JS ? sdk_js : sdk_py,
	                           .dst = lang == EXEC_JS ? EXEC_SDK_JS_MOUNT : EXEC_SDK_PY_MOUNT};
	ret[1] = (struct sbx_bind){.src = pg_socket_dir, .dst = EXEC_PG_MOUNT};
	return pg_socket_dir && pg_socket_dir[0] ? 2 : 1;
}

uint64_t exec_cpu_seconds(uint64_t timeout_ms)
{
	return (timeout_ms + 999) / 1000 + EXEC_CPU_SLACK_S;
}

int exec_spawner_config(const char *policy_dir, const char *sdk_dir, const char *pg_socket_dir, const char *cache_dir,
                        uint64_t max_memory_mb, uint64_t max_timeout_ms, struct sbx_spawner_config *ret,
                        struct zerr *err)
{
	memset(ret, 0, sizeof(*ret));
	char js[512], py[512];
	if (snprintf(js, sizeof(js), "%s/sdk-js", sdk_dir) >= (int)sizeof(js) ||
	    snprintf(py, sizeof(py), "%s/sdk-python", sdk_dir) >= (int)sizeof(py))
		return zerr_set(err, -ENAMETOOLONG, "SDK path too long");
	if (max_memory_mb < TIERS_MIN_MEMORY_MB || max_memory_mb > EXEC_MAX_MEMORY_MB || max_timeout_ms == 0 ||
	    max_timeout_ms > EXEC_MAX_TIMEOUT_MS)
		return zerr_set(err, -EINVAL, "largest memory or timeout out of range");
	for (enum exec_lang l = EXEC_JS; l <= EXEC_PY; l++) {
		char path[600];
		struct sbx_bind binds[2];
		size_t n = exec_runtime_binds(js, py, pg_socket_dir, l, binds);
		int r = pol_resolve(exec_runtime_name(l), policy_dir, path, sizeof(path), err);
		if (r == 0)
			r = sbx_runtime_add(ret, exec_runtime_name(l), path, cache_dir, binds, n, err);
		if (r < 0) {
			sbx_spawner_config_done(ret);
			return r;
		}
	}
	/* What exec_run and the pool may ask for, and no more. */
	long cores = sysconf(_SC_NPROCESSORS_CONF);
	ret->max = (struct sbx_maxima){.memory_bytes = max_memory_mb << 20,
	                               .pids = EXEC_PIDS,
	                               .cpu_percent = 100 * (uint64_t)(cores > 0 ? cores : 1),
	                               .tmpfs_bytes = EXEC_TMPFS_BYTES,
	                               .fsize_bytes = EXEC_FSIZE_BYTES,
	                               .nofile = EXEC_NOFILE,
	                               .cpu_seconds = exec_cpu_seconds(max_timeout_ms)};
	return 0;
}
