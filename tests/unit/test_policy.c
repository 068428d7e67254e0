/* Unit tests: policy parsing and compilation, and the compiled base policy
 * installed in a forked child. The child keeps its capabilities (the test runs
 * as root), so every refusal seen here is the filter's own, not a missing
 * privilege's. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "policy.h"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static char dir[256];

static void write_policy(const char *name, const char *json)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s.json", dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(json, f);
	fclose(f);
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/zmesh-poltest-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_resolve(void **state)
{
	char p[512];
	assert_int_equal(pol_resolve("node", "/etc/zmesh", p, sizeof(p), NULL), 0);
	assert_string_equal(p, "/etc/zmesh/node.json");
	assert_int_equal(pol_resolve("./mine.json", "/etc/zmesh", p, sizeof(p), NULL), 0);
	assert_string_equal(p, "./mine.json");
	assert_int_equal(pol_resolve("../x", "/d", p, sizeof(p), NULL), 0); /* a path, taken as given */
	assert_int_equal(pol_resolve("no de", "/d", p, sizeof(p), NULL), -EINVAL);
	assert_int_equal(pol_resolve("", "/d", p, sizeof(p), NULL), -EINVAL);
}

static void test_bad_policies_are_refused_with_a_reason(void **state)
{
	struct {
		const char *json;
		const char *why;
	} cases[] = {
	    {"{ not json", "policy"},
	    {"[]", "not a JSON object"},
	    {"{\"allow\": [\"no_such_syscall\"]}", "unknown syscall"},
	    {"{\"allow\": \"read\"}", "must be an array"},
	    {"{\"default_action\": \"errno:EWHAT\"}", "default_action"},
	    {"{\"rules\": [{\"syscalls\": [\"read\"], \"action\": \"maybe\"}]}", "action"},
	    {"{\"rules\": [{\"syscalls\": [\"read\"], \"action\": \"allow\", \"args\": [{\"index\": 9, \"op\": \"eq\", "
	     "\"value\": 0}]}]}",
	     "argument condition"},
	    {"{\"include\": [\"self\"]}", "cycle"},
	    {"{\"include\": [\"missing\"]}", "missing.json"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_policy("self", cases[i].json);
		char p[512];
		snprintf(p, sizeof(p), "%s/self.json", dir);
		struct pol_program prog = {0};
		struct zerr err = {0};
		int r = pol_compile(p, &prog, &err);
		if (cases[i].why[0] == '\0') {
			assert_int_equal(r, 0);
			pol_program_free(&prog);
			continue;
		}
		assert_true(r < 0);
		if (!strstr(err.msg, cases[i].why))
			fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err.msg, cases[i].why);
	}
}

static void test_compile_cache(void **state)
{
	write_policy("c", "{\"allow\": [\"read\", \"write\"]}");
	char p[512], cache[512], f[1024];
	snprintf(p, sizeof(p), "%s/c.json", dir);
	snprintf(cache, sizeof(cache), "%s/cache", dir);
	assert_int_equal(mkdir(cache, 0700), 0);
	struct pol_program a = {0}, b = {0}, c = {0}, d = {0};
	assert_int_equal(pol_compile(p, &a, NULL), 0);
	assert_int_equal(pol_compile_cached(p, cache, &b, NULL), 0); /* compiles, stores */
	assert_int_equal(pol_compile_cached(p, cache, &c, NULL), 0); /* loads */
	assert_int_equal(a.fprog.len, c.fprog.len);
	assert_memory_equal(a.fprog.filter, c.fprog.filter, a.fprog.len * sizeof(struct sock_filter));

	/* A cache file that is not exactly root's and private is not trusted:
	 * with its program corrupted and made group-writable, it is ignored. */
	DIR *dd = opendir(cache);
	struct dirent *de;
	while ((de = readdir(dd)))
		if (de->d_name[0] != '.')
			snprintf(f, sizeof(f), "%.500s/%.256s", cache, de->d_name);
	closedir(dd);
	int fd = open(f, O_WRONLY);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(pwrite(fd, "\xff\xff\xff\xff\xff\xff\xff\xff", 8, st.st_size - 8), 8);
	close(fd);
	assert_int_equal(chmod(f, 0620), 0);
	assert_int_equal(pol_compile_cached(p, cache, &d, NULL), 0);
	assert_memory_equal(a.fprog.filter, d.fprog.filter, a.fprog.len * sizeof(struct sock_filter));

	/* A changed policy is compiled again, not served from the cache. */
	struct pol_program e = {0};
	write_policy("c", "{\"allow\": [\"read\", \"write\", \"close\", \"getpid\"]}");
	assert_int_equal(pol_compile_cached(p, cache, &e, NULL), 0);
	assert_true(e.fprog.len != a.fprog.len ||
	            memcmp(e.fprog.filter, a.fprog.filter, a.fprog.len * sizeof(struct sock_filter)) != 0);
	pol_program_free(&a);
	pol_program_free(&b);
	pol_program_free(&c);
	pol_program_free(&d);
	pol_program_free(&e);
}

/* Run fn in a child under the base policy; return its exit status. */
static int run_confined(int (*fn)(void))
{
	char p[512];
	snprintf(p, sizeof(p), "%s/base.json", ZMESH_POLICY_DIR);
	struct pol_program prog = {0};
	struct zerr err = {0};
	if (pol_compile(p, &prog, &err) < 0)
		fail_msg("compile %s: %s", p, err.msg);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || pol_install(&prog) < 0)
			_exit(99);
		_exit(fn());
	}
	pol_program_free(&prog);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* Each check: 0 when the call is refused with the expected errno. */
#define REFUSED(call, want) ((call) == -1 && errno == (want) ? 0 : 1)

static int try_refused(void)
{
	int bad = 0, i = 0;
#define CHECK(call, want) bad |= REFUSED(call, want) << (i++ % 24)
	CHECK(mount("none", "/mnt", "tmpfs", 0, NULL), EPERM);
	CHECK(umount2("/proc", MNT_DETACH), EPERM);
	CHECK(syscall(SYS_pivot_root, "/", "/"), EPERM);
	CHECK(unshare(CLONE_NEWUSER), EPERM);
	CHECK(unshare(CLONE_NEWNET), EPERM);
	CHECK(setns(0, 0), EPERM);
	CHECK(syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | SIGCHLD), 0, 0, 0, 0), EPERM);
	CHECK(syscall(SYS_clone, (unsigned long)(CLONE_NEWPID | SIGCHLD), 0, 0, 0, 0), EPERM);
	CHECK(syscall(SYS_clone3, NULL, 0), ENOSYS);
	CHECK(ptrace(PTRACE_TRACEME, 0, NULL, NULL), EPERM);
	CHECK(syscall(SYS_process_vm_readv, getppid(), NULL, 0, NULL, 0, 0), EPERM);
	CHECK(syscall(SYS_keyctl, 0, 0, 0, 0, 0), EPERM);
	CHECK(syscall(SYS_add_key, "user", "x", "y", 1, 0), EPERM);
	CHECK(syscall(SYS_request_key, "user", "x", NULL, 0), EPERM);
	CHECK(syscall(SYS_bpf, 0, NULL, 0), EPERM);
	CHECK(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0), EPERM);
	CHECK(syscall(SYS_userfaultfd, 0), EPERM);
	CHECK(syscall(SYS_io_uring_setup, 1, NULL), ENOSYS);
	CHECK(syscall(SYS_kexec_load, 0, 0, NULL, 0), EPERM);
	CHECK(syscall(SYS_init_module, NULL, 0, ""), EPERM);
	CHECK(syscall(SYS_finit_module, -1, "", 0), EPERM);
	CHECK(syscall(SYS_delete_module, "x", 0), EPERM);
	CHECK(syscall(SYS_syslog, 10, NULL, 0), EPERM);
	CHECK(chroot("/"), EPERM);
	return bad;
}

static int try_refused_more(void)
{
	int bad = 0, i = 0;
	CHECK(syscall(SYS_open_by_handle_at, -1, NULL, 0), EPERM);
	CHECK(syscall(SYS_acct, NULL), EPERM);
	CHECK(syscall(SYS_swapon, "/x", 0), EPERM);
	CHECK(syscall(SYS_swapoff, "/x"), EPERM);
	CHECK(syscall(SYS_reboot, 0, 0, 0, NULL), EPERM);
	CHECK(syscall(SYS_clock_settime, 0, NULL), EPERM);
	CHECK(syscall(SYS_settimeofday, NULL, NULL), EPERM);
	CHECK(syscall(SYS_clock_adjtime, 0, NULL), EPERM);
	CHECK(socket(AF_VSOCK, SOCK_STREAM, 0), EPERM);
	CHECK(socket(AF_PACKET, SOCK_RAW, 0), EPERM);
	CHECK(syscall(SYS_kexec_file_load, -1, -1, 0, NULL, 0), EPERM);
	CHECK(syscall(SYS_pidfd_getfd, -1, 0, 0), EPERM);
	return bad;
#undef CHECK
}

static int try_allowed(void)
{
	/* What every program needs still works under the filter. */
	if (getpid() <= 0)
		return 1;
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0)
		return 2;
	close(s);
	s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0)
		return 3;
	close(s);
	pid_t pid = fork(); /* clone without namespace flags */
	if (pid < 0)
		return 4;
	if (pid == 0)
		_exit(0);
	if (waitpid(pid, NULL, 0) != pid)
		return 5;
	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0)
		return 6;
	close(fd);
	return 0;
}

static void test_base_refuses_each_family(void **state)
{
	assert_int_equal(run_confined(try_refused), 0);
	assert_int_equal(run_confined(try_refused_more), 0);
}

static void test_base_allows_ordinary_work(void **state)
{
	assert_int_equal(run_confined(try_allowed), 0);
}

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "test_policy needs root: the refusals are checked against a privileged child\n");
		return 1;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_resolve),
	    cmocka_unit_test_setup_teardown(test_bad_policies_are_refused_with_a_reason, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_compile_cache, setup, teardown),
	    cmocka_unit_test(test_base_refuses_each_family),
	    cmocka_unit_test(test_base_allows_ordinary_work),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
