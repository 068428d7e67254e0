/* Tests of the spawner: a threaded process spawns sandboxes through the
 * single-threaded spawner it forked first, receives their descriptors, reads
 * their output and reaps them itself; and the spawner refuses, on its real
 * socket, whatever is outside its protocol. Needs root (real sandboxes). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spawner.h"

static struct sbx_ctx ctx;
static struct sbx_spawner sp;
static struct sbx_spawner_config cfg;

static int setup(void **state)
{
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
	    sbx_runtime_add(&cfg, "broken", p, NULL, &missing, 1, &err) < 0 || sbx_ctx_init(&ctx, NULL, &err) < 0 ||
	    sbx_spawner_start(&ctx, &cfg, &sp, &err) < 0) {
		fprintf(stderr, "setup: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	sbx_spawner_stop(&sp);
	sbx_spawner_config_done(&cfg);
	return 0;
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
	struct sbx_spawn_req req = request("base", argv);
	req.stdio[2] = 2;
	struct sbx s;
	struct zerr err = {0};
	if (sbx_spawner_spawn(&sp, &ctx, &req, &s, &err) < 0) {
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
	struct sbx_spawn_req req = request("broken", argv);
	struct sbx s;
	struct zerr err = {0};
	assert_int_equal(sbx_spawner_spawn(&sp, &ctx, &req, &s, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/zmesh"));
	assert_int_equal(s.pidfd, -1);
}

static void test_program_not_found_is_a_sandbox_error(void **state)
{
	const char *argv[] = {"no-such-program-zmesh", NULL};
	struct sbx_spawn_req req = request("base", argv);
	struct sbx s;
	struct zerr err = {0};
	assert_int_equal(sbx_spawner_spawn(&sp, &ctx, &req, &s, &err), 0);
	struct sbx_report rep;
	assert_int_equal(sbx_wait(&s, 5000, &rep), 0);
	sbx_destroy(&s);
	assert_int_equal(rep.status, SBX_ERROR);
	assert_int_equal(rep.exit_code, 127);
	assert_non_null(strstr(rep.error, "no-such-program-zmesh"));
}

/* Send raw bytes (and descriptors) on the spawner's socket, as a daemon
 * taken over could; return the answer's error. */
static int raw_request(const void *msg, size_t len, int fd)
{
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} c;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&c, 0, sizeof(c));
		m.msg_control = c.buf;
		m.msg_controllen = sizeof(c.buf);
		struct cmsghdr *h = CMSG_FIRSTHDR(&m);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(h), &fd, sizeof(int));
	}
	pthread_mutex_lock(&sp.lock);
	assert_int_equal(sendmsg(sp.fd, &m, 0), (ssize_t)len);
	struct spawner_wire_rep rep;
	ssize_t n = recv(sp.fd, &rep, sizeof(rep), 0);
	pthread_mutex_unlock(&sp.lock);
	assert_int_equal(n, sizeof(rep));
	assert_int_equal(rep.magic, SPAWNER_MAGIC);
	assert_int_equal(rep.fds, 0);
	return rep.err;
}

/* One line of /proc/PID/limits (prlimit(2) would need CAP_SYS_RESOURCE to
 * read another uid's). */
static void proc_limit(pid_t pid, const char *name, unsigned long long *cur, unsigned long long *max)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		if (strncmp(line, name, strlen(name)) == 0)
			found = sscanf(line + strlen(name), "%llu %llu", cur, max) == 2;
	fclose(f);
	assert_true(found);
}

static int raw_handle(enum spawner_op op, uint32_t slot, uint32_t gen, int sig, uint64_t memory)
{
	struct spawner_req req = {.op = op, .slot = slot, .gen = gen, .sig = sig};
	req.limits.memory_bytes = memory;
	req.limits.pids = memory ? 8 : 0;
	req.limits.cpu_percent = memory ? 100 : 0;
	struct spawner_wire_handle msg;
	ssize_t len = spawner_encode_request(&req, &msg, sizeof(msg));
	assert_true(len > 0);
	return raw_request(&msg, (size_t)len, -1);
}

/* The egress listener: made inside the sandbox's network namespace (its
 * program reaches it on its own loopback), listening, and held by the
 * caller only. */
static void test_egress_listener_is_the_sandboxs_loopback(void **state)
{
	(void)state;
	const char *argv[] = {"/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/3128 && echo out-of-the-box >&3", NULL};
	struct sbx_spawn_req req = request("base", argv);
	req.egress_port = 3128;
	struct sbx s;
	struct zerr err = {0};
	assert_int_equal(sbx_spawner_spawn(&sp, &ctx, &req, &s, &err), 0);
	assert_true(s.egress_fd >= 0);
	int on = 0;
	socklen_t len = sizeof(on);
	assert_int_equal(getsockopt(s.egress_fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len), 0);
	assert_int_equal(on, 1);
	struct sockaddr_in a;
	len = sizeof(a);
	assert_int_equal(getsockname(s.egress_fd, (struct sockaddr *)&a, &len), 0);
	assert_int_equal(ntohs(a.sin_port), 3128);
	assert_int_equal(ntohl(a.sin_addr.s_addr), INADDR_LOOPBACK);
	struct pollfd pfd = {.fd = s.egress_fd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 10000), 1);
	int c = accept4(s.egress_fd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(c >= 0);
	char buf[64] = {0};
	size_t got = 0;
	ssize_t n;
	while (got < sizeof(buf) - 1 && (n = read(c, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	assert_string_equal(buf, "out-of-the-box\n");
	close(c);
	struct sbx_report rep;
	assert_int_equal(sbx_reap(&s, &rep), 0);
	assert_int_equal(rep.status, SBX_EXITED);
	assert_int_equal(rep.exit_code, 0);
	sbx_destroy(&s);
	assert_int_equal(s.egress_fd, -1);

	/* Without a port, none; and a port out of range is refused. */
	req = request("base", (const char *[]){"/bin/true", NULL});
	assert_int_equal(sbx_spawner_spawn(&sp, &ctx, &req, &s, &err), 0);
	assert_int_equal(s.egress_fd, -1);
	sbx_destroy(&s);
	struct spawner_req w = {.op = SPAWNER_SPAWN, .argv = {"/bin/true", NULL}, .env = {NULL}};
	snprintf(w.runtime, sizeof(w.runtime), "base");
	char msg[512];
	ssize_t mlen = spawner_encode_request(&w, msg, sizeof(msg));
	assert_true(mlen > 0);
	struct spawner_req d;
	assert_int_equal(spawner_decode_request(msg, (size_t)mlen, &d, &err), 0);
	struct spawner_wire_spawn *ws = (struct spawner_wire_spawn *)msg;
	ws->egress_port = 65536;
	assert_int_equal(spawner_decode_request(msg, (size_t)mlen, &d, &err), -EBADMSG);
	ws->egress_port = 3128;
	ws->flags = 2;
	assert_int_equal(spawner_decode_request(msg, (size_t)mlen, &d, &err), -EBADMSG);
	ws->flags = 0;
	assert_int_equal(spawner_decode_request(msg, (size_t)mlen, &d, &err), 0);
	assert_int_equal(d.egress_port, 3128);
	assert_false(d.result_fd);
	ws->flags = SPAWNER_RESULT_FD;
	assert_int_equal(spawner_decode_request(msg, (size_t)mlen, &d, &err), 0);
	assert_true(d.result_fd);
	w.result_fd = true;
	mlen = spawner_encode_request(&w, msg, sizeof(msg));
	assert_int_equal(spawner_decode_request(msg, (size_t)mlen, &d, &err), 0);
	assert_true(d.result_fd);
	/* ASSIGN's rlimits travel, and only with ASSIGN. */
	struct spawner_req asg = {.op = SPAWNER_ASSIGN, .slot = 1, .gen = 2};
	asg.limits = (struct sbx_maxima){
	    .memory_bytes = 1 << 20, .pids = 8, .cpu_percent = 50, .fsize_bytes = 4096, .cpu_seconds = 7};
	struct spawner_wire_handle wh;
	assert_int_equal(spawner_encode_request(&asg, &wh, sizeof(wh)), (ssize_t)sizeof(wh));
	assert_int_equal(spawner_decode_request(&wh, sizeof(wh), &d, &err), 0);
	assert_int_equal(d.limits.fsize_bytes, 4096);
	assert_int_equal(d.limits.cpu_seconds, 7);
	wh.h.op = SPAWNER_DESTROY;
	wh.memory_bytes = wh.pids = wh.cpu_percent = 0;
	assert_int_equal(spawner_decode_request(&wh, sizeof(wh), &d, &err), -EBADMSG);
}

static void test_refuses_what_is_outside_the_protocol(void **state)
{
	const char *argv[] = {"/bin/sleep", "30", NULL};
	struct sbx_spawn_req req = request("base", argv);
	struct sbx s;
	struct zerr err = {0};

	/* Limits above the configured maxima, an unknown runtime. */
	req.limits.memory_bytes = 256 << 20;
	assert_int_equal(sbx_spawner_spawn(&sp, &ctx, &req, &s, &err), -EPERM);
	assert_non_null(strstr(err.msg, "memory"));
	req = request("base", argv);
	req.tmpfs_bytes = 64 << 20;
	assert_int_equal(sbx_spawner_spawn(&sp, &ctx, &req, &s, &err), -EPERM);
	req = request("base", argv);
	req.limits.pids = 0; /* "no limit" is not within the maxima either */
	assert_int_equal(sbx_spawner_spawn(&sp, &ctx, &req, &s, &err), -EPERM);
	req = request("own-policy", argv);
	assert_int_equal(sbx_spawner_spawn(&sp, &ctx, &req, &s, &err), -ENOENT);

	/* Garbage, a cut header, a descriptor nobody asked for. */
	assert_int_equal(raw_request("garbage", 7, -1), -EBADMSG);
	struct spawner_wire_handle h = {.h = {.magic = SPAWNER_MAGIC, .len = 99, .op = SPAWNER_KILL}};
	assert_int_equal(raw_request(&h, sizeof(h), -1), -EBADMSG);
	struct spawner_req k = {.op = SPAWNER_KILL, .sig = SIGKILL};
	assert_true(spawner_encode_request(&k, &h, sizeof(h)) > 0);
	assert_int_equal(raw_request(&h, sizeof(h), 2), -EBADMSG);

	/* A sandbox of its own: narrowed within the maxima, not above. */
	req = request("base", argv);
	assert_int_equal(sbx_spawner_spawn(&sp, &ctx, &req, &s, &err), 0);
	struct cg_limits lim = {.memory_bytes = 32 << 20, .pids = 8, .cpu_percent = 50};
	assert_int_equal(sbx_assign(&s, &lim, NULL, &err), 0);
	/* The rlimits of its processes, init and the program: the CPU they
	 * used (none to speak of) plus the seconds asked for. */
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)s.pid, (int)s.pid);
	int program = 0;
	for (int i = 0; i < 200 && program <= 0; i++) {
		FILE *f = fopen(path, "r");
		assert_non_null(f);
		if (fscanf(f, "%d", &program) != 1)
			usleep(10000);
		fclose(f);
	}
	assert_true(program > 0);
	struct sbx_rlimits rl = {.cpu_seconds = 3, .fsize_bytes = 1 << 20};
	assert_int_equal(sbx_assign(&s, &lim, &rl, &err), 0);
	pid_t procs[] = {s.pid, program};
	for (size_t i = 0; i < 2; i++) {
		unsigned long long cur = 0, max = 0;
		proc_limit(procs[i], "Max cpu time", &cur, &max);
		assert_true(cur >= 3 && cur <= 4 && max == cur);
		proc_limit(procs[i], "Max file size", &cur, &max);
		assert_true(cur == 1 << 20 && max == cur);
		proc_limit(procs[i], "Max processes", &cur, &max);
		assert_true(cur == 8 && max == cur);
	}
	/* Within the maxima, as the cgroup limits, and both or neither. */
	rl.cpu_seconds = 1u << 30;
	assert_int_equal(sbx_assign(&s, &lim, &rl, &err), -EPERM);
	rl = (struct sbx_rlimits){.cpu_seconds = 3, .fsize_bytes = 1ull << 50};
	assert_int_equal(sbx_assign(&s, &lim, &rl, &err), -EPERM);
	rl = (struct sbx_rlimits){.cpu_seconds = 0, .fsize_bytes = 1 << 20};
	assert_int_equal(sbx_spawner_assign(&sp, &s, &lim, &rl, &err), -EPERM);
	lim.memory_bytes = 1ull << 40;
	assert_int_equal(sbx_assign(&s, &lim, NULL, &err), -EPERM);
	/* Handles it did not issue: another generation, another slot. */
	assert_int_equal(raw_handle(SPAWNER_KILL, (uint32_t)s.slot, s.gen + 1, SIGKILL, 0), -ESRCH);
	assert_int_equal(raw_handle(SPAWNER_KILL, ((uint32_t)s.slot + 1) % ctx.slots, s.gen, SIGKILL, 0), -ESRCH);
	assert_int_equal(raw_handle(SPAWNER_DESTROY, ctx.slots + 5, 1, 0, 0), -ESRCH);
	assert_int_equal(raw_handle(SPAWNER_ASSIGN, (uint32_t)s.slot, 0, 0, 16 << 20), -ESRCH);
	/* Signals beyond SIGKILL and SIGTERM are not its business. */
	assert_int_equal(raw_handle(SPAWNER_KILL, (uint32_t)s.slot, s.gen, SIGSTOP, 0), -EBADMSG);

	/* Its own: killed through the spawner, reaped here. */
	struct sbx_report rep;
	assert_int_equal(sbx_kill(&s, SIGKILL), 0);
	assert_int_equal(sbx_wait(&s, 5000, &rep), 0);
	assert_int_equal(rep.status, SBX_SIGNALED);
	uint32_t slot = (uint32_t)s.slot, gen = s.gen;
	sbx_destroy(&s);
	/* Destroyed: no longer its own. */
	assert_int_equal(raw_handle(SPAWNER_DESTROY, slot, gen, 0, 0), -ESRCH);

	/* And it still serves. */
	const char *ok[] = {"/bin/true", NULL};
	req = request("base", ok);
	assert_int_equal(sbx_spawner_spawn(&sp, &ctx, &req, &s, &err), 0);
	assert_int_equal(sbx_wait(&s, 5000, &rep), 0);
	assert_int_equal(rep.status, SBX_EXITED);
	sbx_destroy(&s);
}

/* The spawner as a program (sbx_spawner_exec): it gets the socket as
 * descriptor 3 and nothing else of its caller's but stdio, and an
 * environment of ZMESH_NETNS_STOCK alone; an exec that fails fails the
 * start, with the reason. A shell stands in for zmesh-spawner and reports
 * what it got on the socket. */
static void test_spawner_program_gets_the_socket_and_nothing_else(void **state)
{
	(void)state;
	int stray = open("/dev/null", O_RDONLY); /* not close-on-exec: must not reach it */
	assert_true(stray >= 0);
	char *const argv[] = {"sh", "-c",
	                      "cd /; l=; for i in $(seq 0 64); do [ -e /proc/$$/fd/$i ] && l=\"$l $i\"; done; "
	                      "echo \"$l|$(env | grep -v '^OLDPWD=\\|^PWD=' | sort | tr '\\n' ' ')\" >&3",
	                      NULL};
	struct sbx_spawner prog;
	struct zerr err = {0};
	setenv("ZMESH_NETNS_STOCK", "2", 1);
	int r = sbx_spawner_exec("/bin/sh", argv, &prog, &err);
	unsetenv("ZMESH_NETNS_STOCK");
	assert_int_equal(r, 0);
	char buf[512] = {0};
	struct pollfd p = {.fd = prog.fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 10000), 1);
	assert_true(read(prog.fd, buf, sizeof(buf) - 1) > 0);
	char *env = strchr(buf, '|');
	assert_non_null(env);
	*env++ = '\0';
	assert_string_equal(buf, " 0 1 2 3");
	/* Less what the shell itself adds (PWD, OLDPWD): what it was given. */
	assert_string_equal(env, "ZMESH_NETNS_STOCK=2 \n");
	sbx_spawner_stop(&prog);
	close(stray);

	char *const none[] = {"zmesh-spawner", NULL};
	assert_true(sbx_spawner_exec("/nonexistent/zmesh-spawner", none, &prog, &err) < 0);
	assert_non_null(strstr(err.msg, "No such file"));
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
	    cmocka_unit_test(test_refuses_what_is_outside_the_protocol),
	    cmocka_unit_test(test_egress_listener_is_the_sandboxs_loopback),
	    cmocka_unit_test(test_spawner_program_gets_the_socket_and_nothing_else),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
