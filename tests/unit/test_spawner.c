/* Tests of the spawner: a threaded process spawns sandboxes through the
 * single-threaded spawner it forked first, receives their descriptors, reads
 * their output and reaps them itself. Needs root (real sandboxes). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spawner.h"

static struct sbx_ctx ctx;
static struct sbx_spawner sp;
static struct pol_program prog;

static int setup(void **state)
{
	struct zerr err = {0};
	char p[512];
	snprintf(p, sizeof(p), "%s/base.json", ZMESH_POLICY_DIR);
	if (pol_compile(p, &prog, &err) < 0 || sbx_ctx_init(&ctx, NULL, &err) < 0 ||
	    sbx_spawner_start(&ctx, &sp, &err) < 0) {
		fprintf(stderr, "setup: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	sbx_spawner_stop(&sp);
	pol_program_free(&prog);
	return 0;
}

static pid_t ppid_of(pid_t pid)
{
	char p[64], buf[512];
	snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(p, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *close_paren = strrchr(buf, ')');
	int ppid = -1;
	if (close_paren)
		sscanf(close_paren + 2, "%*c %d", &ppid);
	return ppid;
}

/* Spawn `echo word` with a stdout pipe, return what it printed. */
static void *echo_once(void *arg)
{
	const char *word = arg;
	const char *argv[] = {"/bin/echo", word, NULL};
	struct sbx_spec spec = {.argv = argv,
	                        .policy = &prog,
	                        .tmpfs_bytes = 1 << 20,
	                        .nofile = 64,
	                        .limits = {.memory_bytes = 64 << 20, .pids = 16},
	                        .stdio = {-1, -1, 2}};
	struct sbx s;
	struct zerr err = {0};
	if (sbx_spawner_spawn(&sp, &ctx, &spec, &s, &err) < 0) {
		fprintf(stderr, "spawn: %s\n", err.msg);
		return NULL;
	}
	/* The sandbox is our child, not the spawner's. */
	pid_t parent = ppid_of(s.pid);
	close(s.stdio[0]);
	s.stdio[0] = -1;
	char *out = calloc(1, 256);
	size_t off = 0;
	ssize_t n;
	while (off < 255 && (n = read(s.stdio[1], out + off, 255 - off)) > 0)
		off += (size_t)n;
	struct sbx_report rep;
	int r = sbx_wait(&s, 5000, &rep);
	sbx_destroy(&s);
	if (r < 0 || rep.status != SBX_EXITED || rep.exit_code != 0 || (parent != getpid() && parent != -1)) {
		fprintf(stderr, "r=%d status=%d code=%d parent=%d\n", r, rep.status, rep.exit_code, (int)parent);
		free(out);
		return NULL;
	}
	return out;
}

static void test_spawn_from_threads(void **state)
{
	enum { N = 4 };
	pthread_t t[N];
	char words[N][16];
	for (int i = 0; i < N; i++) {
		snprintf(words[i], sizeof(words[i]), "sandbox-%d", i);
		assert_int_equal(pthread_create(&t[i], NULL, echo_once, words[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		char *out = NULL;
		assert_int_equal(pthread_join(t[i], (void **)&out), 0);
		assert_non_null(out);
		char want[80];
		snprintf(want, sizeof(want), "%s\n", words[i]);
		assert_string_equal(out, want);
		free(out);
	}
}

static void test_spawn_failure_is_reported(void **state)
{
	const char *argv[] = {"/bin/true", NULL};
	struct sbx_bind b = {.src = "/nonexistent/zmesh", .dst = "/opt/x"};
	struct sbx_spec spec = {.argv = argv,
	                        .policy = &prog,
	                        .tmpfs_bytes = 1 << 20,
	                        .nofile = 64,
	                        .binds = &b,
	                        .n_binds = 1,
	                        .stdio = {-1, -1, -1}};
	struct sbx s;
	struct zerr err = {0};
	assert_int_equal(sbx_spawner_spawn(&sp, &ctx, &spec, &s, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/zmesh"));
	assert_int_equal(s.pidfd, -1);
}

static void test_program_not_found_is_a_sandbox_error(void **state)
{
	const char *argv[] = {"no-such-program-zmesh", NULL};
	struct sbx_spec spec = {
	    .argv = argv, .policy = &prog, .tmpfs_bytes = 1 << 20, .nofile = 64, .stdio = {-1, -1, -1}};
	struct sbx s;
	struct zerr err = {0};
	assert_int_equal(sbx_spawner_spawn(&sp, &ctx, &spec, &s, &err), 0);
	struct sbx_report rep;
	assert_int_equal(sbx_wait(&s, 5000, &rep), 0);
	sbx_destroy(&s);
	assert_int_equal(rep.status, SBX_ERROR);
	assert_int_equal(rep.exit_code, 127);
	assert_non_null(strstr(rep.error, "no-such-program-zmesh"));
}

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "test_spawner needs root: it starts real sandboxes\n");
		return 1;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_spawn_from_threads),
	    cmocka_unit_test(test_spawn_failure_is_reported),
	    cmocka_unit_test(test_program_not_found_is_a_sandbox_error),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
