/* The spawner's stock of net namespaces made ahead (spawner.h): a sandbox
 * joins one from the stock, never one another sandbox has, never the
 * host's; a listener of one sandbox is out of another's reach; the stock's
 * descriptors are close-on-exec, never reach a sandbox, and do not pile up
 * across spawns; with no stock (configured, or $ZMESH_NETNS_STOCK=0) a
 * sandbox makes its own, as before. Needs root (real sandboxes). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spawner.h"

#define STOCK       3
#define EGRESS      3128
#define MAX_LINKS   64
#define LINK_SIZE   64
#define WAIT_MS     5000
#define LEAK_ROUNDS 40

static struct sbx_ctx ctx;
static struct sbx_spawner_config cfg;
static char host_netns[LINK_SIZE];

static int setup(void **state)
{
	(void)state;
	struct zerr err = {0};
	char p[512];
	snprintf(p, sizeof(p), "%s/base.json", ZMESH_POLICY_DIR);
	struct sbx_bind missing = {.src = "/nonexistent/zmesh", .dst = "/opt/x"};
	cfg.max = (struct sbx_maxima){.memory_bytes = 128 << 20,
	                              .pids = 32,
	                              .cpu_percent = 200,
	                              .tmpfs_bytes = 4 << 20,
	                              .fsize_bytes = 4 << 20,
	                              .nofile = 128,
	                              .cpu_seconds = 10};
	if (sbx_runtime_add(&cfg, "base", p, NULL, NULL, 0, &err) < 0 ||
	    sbx_runtime_add(&cfg, "broken", p, NULL, &missing, 1, &err) < 0 || sbx_ctx_init(&ctx, NULL, &err) < 0) {
		fprintf(stderr, "setup: %s\n", err.msg);
		return -1;
	}
	ssize_t n = readlink("/proc/self/ns/net", host_netns, sizeof(host_netns) - 1);
	if (n <= 0)
		return -1;
	host_netns[n] = '\0';
	unsetenv("ZMESH_NETNS_STOCK");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sbx_spawner_config_done(&cfg);
	return 0;
}

static void start(struct sbx_spawner *sp, int stock)
{
	struct zerr err = {0};
	cfg.netns_stock = stock;
	int r = sbx_spawner_start(&ctx, &cfg, sp, &err);
	if (r < 0)
		fprintf(stderr, "start: %s\n", err.msg);
	assert_int_equal(r, 0);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct fds {
	size_t n;     /* descriptors of the process */
	size_t n_net; /* of them, net namespaces other than the host's */
	char net[MAX_LINKS][LINK_SIZE];
	bool all_cloexec; /* every one of those is close-on-exec */
};

/* The descriptors of pid, and the net namespaces among them (the host's,
 * which the spawner keeps to go back to, left out). */
static void fds_of(pid_t pid, struct fds *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->all_cloexec = true;
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		ret->n++;
		char path[320], link[LINK_SIZE];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		ssize_t n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strncmp(link, "net:[", 5) != 0 || strcmp(link, host_netns) == 0)
			continue;
		assert_true(ret->n_net < MAX_LINKS);
		snprintf(ret->net[ret->n_net++], LINK_SIZE, "%s", link);
		/* flags: in octal, O_CLOEXEC among them. */
		char info[320], buf[512];
		snprintf(info, sizeof(info), "/proc/%d/fdinfo/%s", (int)pid, e->d_name);
		FILE *f = fopen(info, "r");
		assert_non_null(f);
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		char *flags = strstr(buf, "flags:");
		assert_non_null(flags);
		if (!(strtoul(flags + 6, NULL, 8) & O_CLOEXEC))
			ret->all_cloexec = false;
	}
	closedir(d);
}

static bool has_link(const struct fds *f, const char *link)
{
	for (size_t i = 0; i < f->n_net; i++)
		if (strcmp(f->net[i], link) == 0)
			return true;
	return false;
}

/* Wait (bounded) for the spawner's stock to hold want namespaces. */
static void wait_stock(pid_t pid, size_t want, struct fds *ret)
{
	uint64_t deadline = now_ms() + WAIT_MS;
	for (;;) {
		fds_of(pid, ret);
		if (ret->n_net == want || now_ms() > deadline)
			break;
		usleep(2000);
	}
	assert_int_equal(ret->n_net, want);
}

static struct sbx_spawn_req request(const char *runtime, const char *const *argv)
{
	return (struct sbx_spawn_req){.runtime = runtime,
	                              .argv = argv,
	                              .tmpfs_bytes = 1 << 20,
	                              .fsize_bytes = 1 << 20,
	                              .nofile = 64,
	                              .cpu_seconds = 5,
	                              .limits = {.memory_bytes = 64 << 20, .pids = 16, .cpu_percent = 100},
	                              .stdio = {-1, -1, -1}};
}

/* What a sandbox says of itself: its net namespace, whether any of its
 * descriptors is one, and whether it reached a listener on its own
 * loopback at EGRESS; then it waits for its stdin to close. */
static const char *const inspect_argv[] = {
    "/bin/bash", "-c",
    "readlink /proc/self/ns/net; "
    "n=0; for f in /proc/self/fd/*; do case $(readlink $f) in net:*) n=$((n+1));; esac; done; echo fds=$n; "
    "if exec 3<>/dev/tcp/127.0.0.1/3128; then echo reached; exec 3>&-; else echo refused; fi; "
    "echo end; read x; exit 0",
    NULL};

struct seen {
	char netns[LINK_SIZE];
	int netns_fds;
	bool reached;
};

/* Spawn the inspecting sandbox (with the egress listener if egress), read
 * what it says up to "end". The sandbox keeps running until sbx_finish. */
static void inspect(struct sbx_spawner *sp, bool egress, struct sbx *s, struct seen *ret)
{
	struct sbx_spawn_req req = request("base", inspect_argv);
	req.stdio[2] = 2;
	req.egress_port = egress ? EGRESS : 0;
	struct zerr err = {0};
	int r = sbx_spawner_spawn(sp, &ctx, &req, s, &err);
	if (r < 0)
		fprintf(stderr, "spawn: %s\n", err.msg);
	assert_int_equal(r, 0);
	assert_int_equal(s->egress_fd >= 0, egress);
	char out[512] = {0};
	size_t off = 0;
	uint64_t deadline = now_ms() + WAIT_MS;
	while (!strstr(out, "end\n") && off < sizeof(out) - 1 && now_ms() < deadline) {
		ssize_t n = read(s->stdio[1], out + off, sizeof(out) - 1 - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	assert_non_null(strstr(out, "end\n"));
	memset(ret, 0, sizeof(*ret));
	char *nl = strchr(out, '\n');
	assert_non_null(nl);
	assert_true((size_t)(nl - out) < sizeof(ret->netns));
	memcpy(ret->netns, out, (size_t)(nl - out));
	assert_int_equal(strncmp(ret->netns, "net:[", 5), 0);
	char *fds = strstr(out, "fds=");
	assert_non_null(fds);
	ret->netns_fds = atoi(fds + 4);
	ret->reached = strstr(out, "reached\n") != NULL;
	assert_true(ret->reached || strstr(out, "refused\n"));
}

static void finish(struct sbx *s)
{
	close(s->stdio[0]);
	s->stdio[0] = -1;
	struct sbx_report rep;
	assert_int_equal(sbx_wait(s, WAIT_MS, &rep), 0);
	assert_int_equal(rep.status, SBX_EXITED);
	assert_int_equal(rep.exit_code, 0);
	sbx_destroy(s);
}

/* Two sandboxes alive at once: each in a namespace of the stock, its own,
 * fresh, taken out of the stock when given; neither holds a descriptor of
 * one; the listener of one is out of the other's reach. */
static void test_each_sandbox_gets_a_namespace_of_its_own_from_the_stock(void **state)
{
	(void)state;
	struct sbx_spawner sp;
	start(&sp, STOCK);
	struct fds before, after;
	wait_stock(sp.pid, STOCK, &before);
	assert_true(before.all_cloexec);

	struct sbx a, b;
	struct seen sa, sb;
	inspect(&sp, true, &a, &sa);
	assert_true(has_link(&before, sa.netns));
	assert_string_not_equal(sa.netns, host_netns);
	assert_int_equal(sa.netns_fds, 0);
	/* Its loopback is up and its listener is its own. */
	assert_true(sa.reached);

	/* Given away: no longer the stock's, which is refilled. */
	wait_stock(sp.pid, STOCK, &after);
	assert_false(has_link(&after, sa.netns));

	/* A's listener stays open (the test holds it); B, in another
	 * namespace, cannot reach it. */
	inspect(&sp, false, &b, &sb);
	assert_true(has_link(&after, sb.netns));
	assert_string_not_equal(sb.netns, sa.netns);
	assert_string_not_equal(sb.netns, host_netns);
	assert_int_equal(sb.netns_fds, 0);
	assert_false(sb.reached);
	finish(&b);
	finish(&a);
	sbx_spawner_stop(&sp);
}

/* Spawn after spawn (successes, failures, with and without an egress
 * listener), the spawner holds no more descriptors than before: each
 * namespace of the stock is closed once given, the stock refilled to its
 * size and no more. */
static void test_no_descriptor_leak_across_spawns(void **state)
{
	(void)state;
	struct sbx_spawner sp;
	start(&sp, STOCK);
	struct fds before, after;
	wait_stock(sp.pid, STOCK, &before);
	const char *true_argv[] = {"/bin/true", NULL};
	for (int i = 0; i < LEAK_ROUNDS; i++) {
		struct sbx_spawn_req req = request(i % 10 == 9 ? "broken" : "base", true_argv);
		req.egress_port = i % 2 ? EGRESS : 0;
		struct sbx s;
		struct zerr err = {0};
		int r = sbx_spawner_spawn(&sp, &ctx, &req, &s, &err);
		if (i % 10 == 9) {
			assert_int_equal(r, -ENOENT);
			continue;
		}
		assert_int_equal(r, 0);
		struct sbx_report rep;
		assert_int_equal(sbx_wait(&s, WAIT_MS, &rep), 0);
		assert_int_equal(rep.status, SBX_EXITED);
		sbx_destroy(&s);
	}
	/* Destroyed sandboxes' cgroups are removed, and their slots let go,
	 * between requests: wait (bounded) for the count to settle. */
	uint64_t deadline = now_ms() + WAIT_MS;
	do {
		usleep(5000);
		fds_of(sp.pid, &after);
	} while ((after.n != before.n || after.n_net != STOCK) && now_ms() < deadline);
	assert_int_equal(after.n_net, STOCK);
	assert_int_equal(after.n, before.n);
	assert_true(after.all_cloexec);
	sbx_spawner_stop(&sp);
}

/* No stock: configured so, or by $ZMESH_NETNS_STOCK=0. The sandbox makes
 * its own namespace (lo up, listener working), still not the host's. */
static void test_without_a_stock_the_sandbox_makes_its_own(void **state)
{
	(void)state;
	for (int k = 0; k < 2; k++) {
		struct sbx_spawner sp;
		if (k == 0)
			start(&sp, -1);
		else {
			setenv("ZMESH_NETNS_STOCK", "0", 1);
			start(&sp, 0);
			unsetenv("ZMESH_NETNS_STOCK");
		}
		struct sbx a, b;
		struct seen sa, sb;
		inspect(&sp, true, &a, &sa);
		inspect(&sp, false, &b, &sb);
		assert_string_not_equal(sa.netns, host_netns);
		assert_string_not_equal(sb.netns, sa.netns);
		assert_true(sa.reached);
		assert_false(sb.reached);
		finish(&b);
		finish(&a);
		/* Idle, and still nothing stocked. */
		usleep(50000);
		struct fds f;
		fds_of(sp.pid, &f);
		assert_int_equal(f.n_net, 0);
		sbx_spawner_stop(&sp);
	}
}

/* $ZMESH_NETNS_STOCK sets the size when the configuration leaves it; a
 * value that is not a count within 0..SPAWNER_NETNS_MAX is refused. */
static void test_stock_size_from_the_environment(void **state)
{
	(void)state;
	struct sbx_spawner sp;
	setenv("ZMESH_NETNS_STOCK", "2", 1);
	start(&sp, 0);
	struct fds f;
	wait_stock(sp.pid, 2, &f);
	sbx_spawner_stop(&sp);

	/* The configuration's own size wins over the environment's. */
	start(&sp, 1);
	wait_stock(sp.pid, 1, &f);
	sbx_spawner_stop(&sp);

	static const char *const bad[] = {"9", "-1", "two", "", "3x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct zerr err = {0};
		setenv("ZMESH_NETNS_STOCK", bad[i], 1);
		cfg.netns_stock = 0;
		assert_int_equal(sbx_spawner_start(&ctx, &cfg, &sp, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "ZMESH_NETNS_STOCK"));
	}
	unsetenv("ZMESH_NETNS_STOCK");
}

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "test_netns_stock needs root: it starts real sandboxes\n");
		return 1;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_each_sandbox_gets_a_namespace_of_its_own_from_the_stock),
	    cmocka_unit_test(test_no_descriptor_leak_across_spawns),
	    cmocka_unit_test(test_without_a_stock_the_sandbox_makes_its_own),
	    cmocka_unit_test(test_stock_size_from_the_environment),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
