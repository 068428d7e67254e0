/* zmesh-sandbox - run one command in a fresh, isolated, limited sandbox.
 *
 * Exit status: the program's, or 128+N when a signal N ended it (a timeout
 * or an out-of-memory kill is SIGKILL: 137). 125: bad usage or a sandbox
 * failure; 126: the program cannot be executed; 127: it was not found. */
#define _GNU_SOURCE
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>

#include "sbx.h"

#ifndef ZMESH_POLICY_DIR
#define ZMESH_POLICY_DIR "/usr/share/zmesh/policies"
#endif

#define EXIT_USAGE 125

static const char usage_text[] =
    "usage: zmesh-sandbox [--memory SIZE] [--pids N] [--timeout MS] [--cpu PERCENT] [--tmpfs SIZE]\n"
    "                     [--fsize SIZE] [--nofile N] [--policy NAME|PATH] [--bind SRC:DST]\n"
    "                     [--bind-rw SRC:DST] [--env KEY=VALUE]... [--report FILE] -- PROGRAM [ARGS...]\n"
    "SIZE takes K, M, G suffixes. Defaults: --memory 256M --pids 64 --timeout 10000 --cpu 100\n"
    "--tmpfs 64M --fsize 64M --nofile 256 --policy base.\n"
    "Exit status: the program's, 128+N if signal N ended it, 125 usage or sandbox failure,\n"
    "126 program not executable, 127 program not found.\n";

struct cli {
	struct sbx_spec spec;
	struct sbx_bind binds[SBX_MAX_BINDS];
	const char *env[SBX_MAX_ENV + 1];
	size_t n_env;
	const char *policy;
	const char *report;
	uint64_t timeout_ms;
};

static int fail(const struct cli *c, const char *fmt, ...) _printf_(2, 3);

static void write_report(const char *path, const struct sbx_report *r)
{
	if (!path)
		return;
	json_t *o = json_object();
	json_object_set_new(o, "status", json_string(sbx_status_name(r->status)));
	bool has_code = r->status == SBX_EXITED || (r->status == SBX_OOM && !r->signal);
	json_object_set_new(o, "exit_code", has_code ? json_integer(r->exit_code) : json_null());
	json_object_set_new(o, "signal", r->signal ? json_integer(r->signal) : json_null());
	json_object_set_new(o, "timed_out", json_boolean(r->timed_out));
	json_object_set_new(o, "oom_killed", json_boolean(r->oom_killed));
	json_object_set_new(o, "wall_ms", json_real((double)r->wall_us / 1000.0));
	json_object_set_new(o, "cpu_ms", json_real((double)r->cpu_us / 1000.0));
	json_object_set_new(o, "memory_peak_bytes", json_integer((json_int_t)r->memory_peak_bytes));
	if (r->status == SBX_ERROR)
		json_object_set_new(o, "error", json_string(r->error));
	if (json_dump_file(o, path, JSON_COMPACT) < 0)
		fprintf(stderr, "zmesh-sandbox: cannot write report %s\n", path);
	json_decref(o);
}

static int fail(const struct cli *c, const char *fmt, ...)
{
	struct sbx_report r = {.status = SBX_ERROR, .exit_code = EXIT_USAGE};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r.error, sizeof(r.error), fmt, ap);
	va_end(ap);
	fprintf(stderr, "zmesh-sandbox: %s\n", r.error);
	write_report(c->report, &r);
	return EXIT_USAGE;
}

/* Splits arg in place (argv is ours to write), so nothing is allocated. */
static int parse_bind(struct cli *c, char *arg, bool rw)
{
	if (c->spec.n_binds >= SBX_MAX_BINDS)
		return fail(c, "more than %d binds", SBX_MAX_BINDS);
	char *colon = strchr(arg, ':');
	if (!colon || colon == arg || !colon[1] || strchr(colon + 1, ':'))
		return fail(c, "--bind%s wants SRC:DST, got \"%s\"", rw ? "-rw" : "", arg);
	*colon = '\0';
	struct sbx_bind *b = &c->binds[c->spec.n_binds++];
	b->src = arg;
	b->dst = colon + 1;
	b->rw = rw;
	return 0;
}

static int parse_args(struct cli *c, int argc, char **argv)
{
	enum {
		O_MEMORY = 256,
		O_PIDS,
		O_TIMEOUT,
		O_CPU,
		O_TMPFS,
		O_FSIZE,
		O_NOFILE,
		O_POLICY,
		O_BIND,
		O_BIND_RW,
		O_ENV,
		O_REPORT,
		O_HELP
	};
	static const struct option opts[] = {
	    {"memory", required_argument, NULL, O_MEMORY},
	    {"pids", required_argument, NULL, O_PIDS},
	    {"timeout", required_argument, NULL, O_TIMEOUT},
	    {"cpu", required_argument, NULL, O_CPU},
	    {"tmpfs", required_argument, NULL, O_TMPFS},
	    {"fsize", required_argument, NULL, O_FSIZE},
	    {"nofile", required_argument, NULL, O_NOFILE},
	    {"policy", required_argument, NULL, O_POLICY},
	    {"bind", required_argument, NULL, O_BIND},
	    {"bind-rw", required_argument, NULL, O_BIND_RW},
	    {"env", required_argument, NULL, O_ENV},
	    {"report", required_argument, NULL, O_REPORT},
	    {"help", no_argument, NULL, O_HELP},
	    {0},
	};
	/* The report path first, so that a usage error can still be reported. */
	for (int i = 1; i + 1 < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--report") == 0)
			c->report = argv[i + 1];

	opterr = 0;
	int o;
	uint64_t v;
	while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		int r = 0;
		switch (o) {
		case O_MEMORY:
			if (util_parse_size(optarg, 1ull << 40, &v) < 0 || v < (1 << 20))
				return fail(c, "--memory: bad size \"%s\" (1M..1T, K/M/G suffixes)", optarg);
			c->spec.limits.memory_bytes = v;
			break;
		case O_PIDS:
			if (util_parse_u64(optarg, 1, 65536, &v) < 0)
				return fail(c, "--pids: want a number within 1..65536, got \"%s\"", optarg);
			c->spec.limits.pids = v;
			break;
		case O_TIMEOUT:
			if (util_parse_u64(optarg, 1, 86400000, &v) < 0)
				return fail(c, "--timeout: want milliseconds within 1..86400000, got \"%s\"", optarg);
			c->timeout_ms = v;
			break;
		case O_CPU:
			if (util_parse_u64(optarg, 1, 100000, &v) < 0)
				return fail(c, "--cpu: want a percentage of one core within 1..100000, got \"%s\"",
				            optarg);
			c->spec.limits.cpu_percent = v;
			break;
		case O_TMPFS:
			if (util_parse_size(optarg, 1ull << 36, &v) < 0 || v < 65536)
				return fail(c, "--tmpfs: bad size \"%s\" (64K..64G)", optarg);
			c->spec.tmpfs_bytes = v;
			break;
		case O_FSIZE:
			if (util_parse_size(optarg, 1ull << 40, &v) < 0 || v == 0)
				return fail(c, "--fsize: bad size \"%s\"", optarg);
			c->spec.fsize_bytes = v;
			break;
		case O_NOFILE:
			if (util_parse_u64(optarg, 16, 1048576, &v) < 0)
				return fail(c, "--nofile: want a number within 16..1048576, got \"%s\"", optarg);
			c->spec.nofile = v;
			break;
		case O_POLICY:
			c->policy = optarg;
			break;
		case O_BIND:
		case O_BIND_RW:
			r = parse_bind(c, optarg, o == O_BIND_RW);
			break;
		case O_ENV:
			if (c->n_env >= SBX_MAX_ENV)
				return fail(c, "more than %d --env", SBX_MAX_ENV);
			c->env[c->n_env++] = optarg;
			break;
		case O_REPORT:
			c->report = optarg;
			break;
		case O_HELP:
			fputs(usage_text, stdout);
			exit(0);
		case ':':
			return fail(c, "%s needs a value", argv[optind - 1]);
		default:
			return fail(c, "unknown option \"%s\" (see --help)", argv[optind - 1]);
		}
		if (r)
			return r;
	}
	if (optind >= argc)
		return fail(c, "no program given (usage: zmesh-sandbox [OPTIONS] -- PROGRAM [ARGS...])");
	c->spec.argv = (const char *const *)&argv[optind];
	c->env[c->n_env] = NULL;
	c->spec.env = c->env;
	c->spec.binds = c->binds;
	return 0;
}

int main(int argc, char **argv)
{
	struct cli c = {
	    .spec = {.tmpfs_bytes = 64 << 20,
	             .fsize_bytes = 64 << 20,
	             .nofile = 256,
	             .limits = {.memory_bytes = 256 << 20, .pids = 64, .cpu_percent = 100},
	             .stdio = {0, 1, 2}},
	    .policy = "base",
	    .timeout_ms = 10000,
	};
	int r = parse_args(&c, argc, argv);
	if (r)
		return r;
	c.spec.cpu_seconds = c.timeout_ms / 1000 + 2;

	struct zerr err = {0};
	struct sbx_ctx ctx;
	if (sbx_ctx_init(&ctx, NULL, &err) < 0)
		return fail(&c, "%s", err.msg);

	const char *dir = getenv("ZMESH_POLICY_DIR");
	char path[512], cache[300];
	struct pol_program prog = {0};
	snprintf(cache, sizeof(cache), "%s/cache", ctx.run_dir);
	if (pol_resolve(c.policy, dir && dir[0] ? dir : ZMESH_POLICY_DIR, path, sizeof(path), &err) < 0 ||
	    pol_compile_cached(path, cache, &prog, &err) < 0)
		return fail(&c, "%s", err.msg);
	c.spec.policy = &prog;
	if (sbx_spec_check(&c.spec, &err) < 0) {
		pol_program_free(&prog);
		return fail(&c, "%s", err.msg);
	}

	/* Signals meant for the program are forwarded to it (through init). */
	sigset_t fwd;
	sigemptyset(&fwd);
	int fwd_sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
	for (size_t i = 0; i < ELEMENTSOF(fwd_sigs); i++)
		sigaddset(&fwd, fwd_sigs[i]);
	sigprocmask(SIG_BLOCK, &fwd, NULL);
	int sfd = signalfd(-1, &fwd, SFD_CLOEXEC | SFD_NONBLOCK);

	struct sbx s;
	if (sbx_spawn(&ctx, &c.spec, &s, &err) < 0) {
		pol_program_free(&prog);
		return fail(&c, "%s", err.msg);
	}
	pol_program_free(&prog);

	uint64_t deadline = s.start_ns + c.timeout_ms * 1000000ull;
	for (;;) {
		uint64_t now = util_now_ns();
		if (now >= deadline) {
			sbx_kill_timeout(&s);
			break;
		}
		struct pollfd pfd[2] = {{.fd = s.pidfd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
		int n = poll(pfd, sfd >= 0 ? 2 : 1, (int)((deadline - now + 999999) / 1000000));
		if (n < 0 && errno != EINTR)
			break;
		if (n > 0 && pfd[0].revents)
			break;
		if (n > 0 && sfd >= 0 && pfd[1].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				sbx_kill(&s, (int)si.ssi_signo);
		}
	}

	struct sbx_report rep;
	r = sbx_reap(&s, &rep);
	sbx_destroy(&s);
	if (sfd >= 0)
		close(sfd);
	if (r < 0) {
		fprintf(stderr, "zmesh-sandbox: waiting for the sandbox: %s\n", strerror(-r));
		return EXIT_USAGE;
	}
	if (rep.status == SBX_ERROR)
		fprintf(stderr, "zmesh-sandbox: %s\n", rep.error);
	write_report(c.report, &rep);
	return sbx_report_exit_status(&rep);
}
