/* Unit tests: cgroup layout probing on fake trees, the writes that set
 * limits for v1 and v2, and parsing of keyed files. No real cgroupfs. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cgroup.h"

static char root[256];

static void put(const char *rel, const char *content)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	/* mkdir -p of the parent */
	for (char *s = strchr(p + strlen(root) + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		mkdir(p, 0755);
		*s = '/';
	}
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static int setup(void **state)
{
	snprintf(root, sizeof(root), "/tmp/zmesh-cgtest-XXXXXX");
	assert_non_null(mkdtemp(root));
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_probe_pure_v2(void **state)
{
	put("cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
	struct cg_ctx ctx;
	assert_int_equal(cg_probe(&ctx, root, "zmesh", false, NULL), 0);
	assert_int_equal(ctx.mode, CG_V2);
	assert_true(ctx.has_cpu);
	char want[512];
	snprintf(want, sizeof(want), "%s/zmesh", root);
	assert_string_equal(ctx.base[0], want);
}

static void test_probe_hybrid_v2_without_memory_falls_back_to_v1(void **state)
{
	/* This machine's layout: cgroup2 at unified/ with no controllers. */
	put("unified/cgroup.controllers", "\n");
	put("memory/memory.limit_in_bytes", "9223372036854771712\n");
	put("memory/memory.memsw.limit_in_bytes", "9223372036854771712\n");
	put("pids/cgroup.procs", "");
	put("cpu/cpu.cfs_quota_us", "-1\n");
	struct cg_ctx ctx;
	assert_int_equal(cg_probe(&ctx, root, "zmesh", false, NULL), 0);
	assert_int_equal(ctx.mode, CG_V1);
	assert_true(ctx.has_cpu);
	assert_true(ctx.has_memsw);
	char want[512];
	snprintf(want, sizeof(want), "%s/pids/zmesh", root);
	assert_string_equal(ctx.base[CG_PIDS], want);
}

static void test_probe_hybrid_v2_with_memory_wins(void **state)
{
	put("unified/cgroup.controllers", "memory pids\n");
	put("memory/memory.limit_in_bytes", "1\n");
	put("pids/cgroup.procs", "");
	struct cg_ctx ctx;
	assert_int_equal(cg_probe(&ctx, root, "zmesh", false, NULL), 0);
	assert_int_equal(ctx.mode, CG_V2);
	assert_false(ctx.has_cpu);
	char want[512];
	snprintf(want, sizeof(want), "%s/unified/zmesh", root);
	assert_string_equal(ctx.base[0], want);
}

static void test_probe_nothing_usable(void **state)
{
	put("unified/cgroup.controllers", "cpu\n");
	put("pids/cgroup.procs", ""); /* no memory controller */
	struct cg_ctx ctx;
	struct zerr err = {0};
	assert_int_equal(cg_probe(&ctx, root, "zmesh", false, &err), -ENOTSUP);
	assert_non_null(strstr(err.msg, "no usable cgroup"));
}

static void test_probe_rejects_bad_prefix(void **state)
{
	struct cg_ctx ctx;
	assert_int_equal(cg_probe(&ctx, root, "../escape", false, NULL), -EINVAL);
	assert_int_equal(cg_probe(&ctx, root, "/abs", false, NULL), -EINVAL);
	assert_int_equal(cg_probe(&ctx, root, "", false, NULL), -EINVAL);
}

static void test_writes_v2(void **state)
{
	struct cg_ctx ctx = {.mode = CG_V2, .has_cpu = true, .has_memsw = true};
	struct cg_limits lim = {.memory_bytes = 128 << 20, .pids = 32, .cpu_percent = 50};
	struct cg_write w[CG_MAX_WRITES];
	int n = cg_limit_writes(&ctx, &lim, w);
	assert_int_equal(n, 5);
	assert_string_equal(w[0].file, "memory.max");
	assert_string_equal(w[0].value, "134217728");
	assert_string_equal(w[1].file, "memory.swap.max");
	assert_string_equal(w[1].value, "0");
	assert_string_equal(w[2].file, "pids.max");
	assert_string_equal(w[2].value, "32");
	assert_string_equal(w[3].file, "cpu.max");
	assert_string_equal(w[3].value, "50000 100000");
	assert_string_equal(w[4].file, "cpu.weight");
	assert_string_equal(w[4].value, "100");

	/* A pooled sandbox starting ahead of demand: lowest weight. */
	lim.background = true;
	n = cg_limit_writes(&ctx, &lim, w);
	assert_string_equal(w[n - 1].file, "cpu.weight");
	assert_string_equal(w[n - 1].value, "1");
	lim.background = false;

	lim.cpu_percent = 0;
	n = cg_limit_writes(&ctx, &lim, w);
	assert_string_equal(w[n - 2].value, "max 100000");

	/* Without swap accounting there is no memory.swap.max to write. */
	ctx.has_memsw = false;
	n = cg_limit_writes(&ctx, &lim, w);
	for (int i = 0; i < n; i++)
		assert_string_not_equal(w[i].file, "memory.swap.max");
	assert_string_equal(w[0].file, "memory.max");
}

static void test_writes_v1(void **state)
{
	struct cg_ctx ctx = {.mode = CG_V1, .has_cpu = true, .has_memsw = true};
	struct cg_limits lim = {.memory_bytes = 64 << 20, .pids = 16, .cpu_percent = 200};
	struct cg_write w[CG_MAX_WRITES];
	int n = cg_limit_writes(&ctx, &lim, w);
	assert_int_equal(n, 6);
	assert_int_equal(w[0].ctl, CG_MEM);
	assert_string_equal(w[0].file, "memory.limit_in_bytes");
	/* memsw follows memory with the same value: no swap at all */
	assert_string_equal(w[1].file, "memory.memsw.limit_in_bytes");
	assert_string_equal(w[1].value, w[0].value);
	assert_int_equal(w[2].ctl, CG_PIDS);
	assert_string_equal(w[2].value, "16");
	assert_string_equal(w[3].file, "cpu.cfs_period_us");
	assert_string_equal(w[4].file, "cpu.cfs_quota_us");
	assert_string_equal(w[4].value, "200000");
	assert_int_equal(w[5].ctl, CG_CPU);
	assert_string_equal(w[5].file, "cpu.shares");
	assert_string_equal(w[5].value, "1024");
	lim.background = true;
	n = cg_limit_writes(&ctx, &lim, w);
	assert_string_equal(w[5].file, "cpu.shares");
	assert_string_equal(w[5].value, "2");
	lim.background = false;

	/* Without swap accounting, swappiness 0 instead; without cpu, no cpu writes. */
	ctx.has_memsw = false;
	ctx.has_cpu = false;
	n = cg_limit_writes(&ctx, &lim, w);
	assert_int_equal(n, 3);
	assert_string_equal(w[1].file, "memory.swappiness");
	assert_string_equal(w[1].value, "0");
}

static void test_parse_keyed(void **state)
{
	uint64_t v = 99;
	const char *v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
	assert_int_equal(cg_parse_keyed(v1, "oom_kill", &v), 0);
	assert_int_equal(v, 3);
	const char *v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
	assert_int_equal(cg_parse_keyed(v2, "oom_kill", &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(cg_parse_keyed(v2, "missing", &v), -ENOENT);
	assert_int_equal(cg_parse_keyed("oom_kill x\n", "oom_kill", &v), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_probe_pure_v2, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_probe_hybrid_v2_without_memory_falls_back_to_v1, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_probe_hybrid_v2_with_memory_wins, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_probe_nothing_usable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_probe_rejects_bad_prefix, setup, teardown),
	    cmocka_unit_test(test_writes_v2),
	    cmocka_unit_test(test_writes_v1),
	    cmocka_unit_test(test_parse_keyed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
