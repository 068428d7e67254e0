/* run.c - one invocation, start to finish (see executor.h); the warm pool
 * is pool.c, the reaper reaper.c, the meaning of a result result.c. */
#define _GNU_SOURCE
#include "run.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "buf.h"
#include "pool.h"
#include "protocol.h"
#include "reaper.h"
#include "result.h"
#include "runtimes.h"
#include "tiers.h"
#include "utf8.h"

/* What a sandbox wrote on one channel, kept up to limit; the rest is read
 * and dropped, and overflow says so. */
struct capture {
	struct buf b;
	size_t limit;
	bool overflow;
};

/* Read what fd has now. 1: nothing more for now (EAGAIN), 0: call again,
 * -EPIPE at EOF, else a read error. */
static int capture_read(struct capture *c, int fd)
{
	for (;;) {
		char tmp[16384];
		char *dst = tmp;
		size_t room = sizeof(tmp);
		if (!c->overflow && c->b.len < c->limit) {
			if (buf_reserve(&c->b, sizeof(tmp)) < 0)
				return -ENOMEM;
			dst = c->b.data + c->b.len;
			room = c->b.cap - c->b.len - 1;
		}
		ssize_t n = read(fd, dst, room);
		if (n < 0)
			return errno == EAGAIN ? 1 : errno == EINTR ? 0 : -errno;
		if (n == 0)
			return -EPIPE; /* EOF */
		if (dst != tmp) {
			c->b.len += (size_t)n;
			if (c->b.len > c->limit) {
				c->b.len = c->limit;
				c->overflow = true;
			}
			c->b.data[c->b.len] = '\0';
		} else
			c->overflow = true;
	}
}

/* Live logs: what the capture added since fed, to the request's sink. */
static size_t feed_logs(const struct exec_request *req, const struct capture *c, size_t fed)
{
	if (req->on_logs && c->b.len > fed)
		req->on_logs(req->on_logs_arg, c->b.data + fed, c->b.len - fed);
	return c->b.len;
}

/* Logs are the function's raw bytes: make them valid UTF-8 without NULs
 * (each bad byte becomes '?'), so they can be stored and shown as text, and
 * drop a character the log limit cut in half. Returns the new length. */
static size_t sanitize_text(char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		const unsigned char *p = (const unsigned char *)s + i;
		size_t n = p[0] ? utf8_seq_len(p, len - i) : 0;
		if (n) {
			i += n;
			continue;
		}
		size_t want = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 1;
		bool cut = want > len - i;
		for (size_t k = 1; cut && k < len - i; k++)
			cut = p[k] >= 0x80 && p[k] <= 0xbf;
		if (cut) {
			/* A character the limit cut in half: end before it. */
			len = i;
			break;
		}
		s[i++] = '?';
	}
	s[len] = '\0';
	return len;
}

static uint64_t epoch_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* An entry point the wrappers accept (protocol.h). */
static bool valid_identifier(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n > 0 && n <= ZPROTO_MAX_ENTRY_POINT_BYTES && strchr(ZPROTO_ENTRY_POINT_FIRST_CHARS, s[0]) &&
	       strspn(s, ZPROTO_ENTRY_POINT_CHARS) == n;
}

/* Whether stdout already holds the wrappers' one answer: compact JSON whose
 * only raw newline is its last byte. Each byte is looked at once, and the
 * output is parsed at its first newline only if that newline ends it: output
 * shaped to look almost complete cannot make the daemon parse it again and
 * again. What was parsed is kept (scan->parsed) and, when nothing came after
 * it, is the result at the end too: every output is parsed once. */
struct result_scan {
	size_t scanned;
	bool done; /* decided at the first newline */
	bool have; /* parsed holds the parse of the first parsed_len bytes */
	size_t parsed_len;
	struct exec_result parsed;
};

static bool result_complete(const struct capture *out, struct result_scan *sc)
{
	if (sc->done || out->overflow)
		return false;
	const char *nl =
	    out->b.len > sc->scanned ? memchr(out->b.data + sc->scanned, '\n', out->b.len - sc->scanned) : NULL;
	sc->scanned = out->b.len;
	if (!nl)
		return false;
	sc->done = true;
	if ((size_t)(nl - out->b.data) != out->b.len - 1 || out->b.data[0] != '{')
		return false;
	if (exec_parse_result(out->b.data, out->b.len, false, &sc->parsed) < 0)
		return false;
	sc->have = true;
	sc->parsed_len = out->b.len;
	return sc->parsed.outcome != EXEC_BAD_RESULT;
}

static void scan_done(struct result_scan *sc)
{
	json_decref(sc->parsed.result);
	json_decref(sc->parsed.error);
	json_decref(sc->parsed.emits);
	sc->parsed.result = sc->parsed.error = sc->parsed.emits = NULL;
}

/* The result of the whole output: the scan's parse when it covers it. */
static void classify_output(const struct capture *out, struct result_scan *sc, struct exec_result *r)
{
	if (sc->have && sc->parsed_len == out->b.len && !out->overflow) {
		r->outcome = sc->parsed.outcome;
		r->result = TAKE_PTR(sc->parsed.result);
		r->error = TAKE_PTR(sc->parsed.error);
		r->emits = TAKE_PTR(sc->parsed.emits);
		return;
	}
	if (exec_parse_result(out->b.data, out->b.len, out->overflow, r) < 0) {
		r->outcome = EXEC_SANDBOX_ERROR;
		r->error = exec_error_object("SandboxError", "out of memory", "");
	}
}

int exec_ctx_init(struct exec_ctx *ctx, struct sbx_ctx *sbx, struct sbx_spawner *spawner, const char *policy_dir,
                  const char *sdk_dir, const char *pg_socket_dir, struct zerr *err)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->sbx = sbx;
	ctx->spawner = spawner;
	ctx->max_result_bytes = 6u << 20;
	ctx->max_log_bytes = 64u << 10;
	ctx->tmpfs_bytes = EXEC_TMPFS_BYTES;
	ctx->pids = EXEC_PIDS;
	ctx->cpu_percent = 100;
	if (snprintf(ctx->sdk_js, sizeof(ctx->sdk_js), "%s/sdk-js", sdk_dir) >= (int)sizeof(ctx->sdk_js) ||
	    snprintf(ctx->sdk_py, sizeof(ctx->sdk_py), "%s/sdk-python", sdk_dir) >= (int)sizeof(ctx->sdk_py) ||
	    snprintf(ctx->pg_socket_dir, sizeof(ctx->pg_socket_dir), "%s", pg_socket_dir ? pg_socket_dir : "") >=
	        (int)sizeof(ctx->pg_socket_dir))
		return zerr_set(err, -ENAMETOOLONG, "SDK or socket path too long");
	struct stat st;
	const char *dirs[] = {ctx->sdk_js, ctx->sdk_py};
	for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
		if (stat(dirs[i], &st) < 0 || !S_ISDIR(st.st_mode))
			return zerr_set(err, -ENOENT, "SDK directory %s not found", dirs[i]);

	if (spawner) {
		/* Threads only beside a spawner: a process that clones sandboxes
		 * itself stays single-threaded. */
		int r = reaper_start(&ctx->reaper, err);
		if (r < 0)
			return r;
	}

	/* With a spawner the policies are its own (exec_spawner_config). */
	if (spawner)
		return 0;
	char cache[300];
	snprintf(cache, sizeof(cache), "%s/cache", sbx->run_dir);
	const char *names[] = {[EXEC_JS] = "node", [EXEC_PY] = "python"};
	for (int l = EXEC_JS; l <= EXEC_PY; l++) {
		char path[600];
		int r = pol_resolve(names[l], policy_dir, path, sizeof(path), err);
		if (r == 0)
			r = pol_compile_cached(path, cache, &ctx->policy[l], err);
		if (r < 0) {
			exec_ctx_done(ctx);
			return r;
		}
	}
	return 0;
}

void exec_stop_at(struct exec_ctx *ctx, uint64_t deadline_ns)
{
	atomic_store(&ctx->stop_ns, deadline_ns);
}

void exec_ctx_done(struct exec_ctx *ctx)
{
	exec_pool_stop(ctx);
	reaper_stop(ctx->reaper);
	ctx->reaper = NULL;
	for (size_t i = 0; i < ELEMENTSOF(ctx->policy); i++)
		pol_program_free(&ctx->policy[i]);
}

void exec_result_done(struct exec_result *r)
{
	if (!r)
		return;
	json_decref(r->result);
	json_decref(r->error);
	json_decref(r->emits);
	free(r->logs);
	r->result = r->error = r->emits = NULL;
	r->logs = NULL;
}

int exec_spawn_runtime(struct exec_ctx *ctx, enum exec_lang lang, uint64_t memory_mb, uint64_t timeout_ms,
                       uint64_t cpu_percent, enum spawn_mode mode, struct sbx *ret, struct zerr *err)
{
	bool pooled = mode != SPAWN_COLD && mode != SPAWN_CHECK;
	/* Started for one invocation, V8 gets a heap limit below the cgroup's,
	 * so that most overruns end as a clean heap-limit failure rather than
	 * a kill. A pooled runtime cannot know the function's memory (its
	 * cgroup is narrowed at assignment, V8's heap cannot be), and any heap
	 * flag costs Node some 4 ms of CPU at start (its built-in code cache is
	 * keyed by V8's flags and no longer matches): there the cgroup alone
	 * bounds memory. Pooled, the wrapper also first runs a message of its
	 * own through its path while nobody waits; started for an invocation,
	 * that would only delay it. */
	char heap[48];
	snprintf(heap, sizeof(heap), "--max-old-space-size=%llu",
	         (unsigned long long)(memory_mb * 3 / 4 > 16 ? memory_mb * 3 / 4 : 16));
	/* The result travels on descriptor SBX_RESULT_FD, the runtime's fd 1
	 * being its stderr (sbx_spec.result_fd); the wrappers are told so. */
	_Static_assert(SBX_RESULT_FD == 3, "the wrappers' --result-fd");
	const char *js_cold[] = {"/usr/bin/node", heap, EXEC_SDK_JS_MOUNT "/bootstrap.js", "--result-fd=3", NULL};
	const char *js_pooled[] = {"/usr/bin/node",
	                           EXEC_SDK_JS_MOUNT "/bootstrap.js",
	                           "--result-fd=3",
	                           "--warm-up",
	                           mode == SPAWN_POOLED_DB ? "--with-db" : NULL,
	                           NULL};
	/* A check (exec_check) links an ES module without running it, which
	 * takes vm.SourceTextModule: behind a flag in the Node of Debian 12. */
	const char *js_check[] = {"/usr/bin/node",
	                          "--experimental-vm-modules",
	                          "--no-warnings",
	                          heap,
	                          EXEC_SDK_JS_MOUNT "/bootstrap.js",
	                          "--result-fd=3",
	                          NULL};
	const char **js_argv = pooled ? js_pooled : mode == SPAWN_CHECK ? js_check : js_cold;
	/* -S: bootstrap.py does what a function needs of site's work. */
	const char *py_argv[] = {"/usr/bin/python3.11",
	                         "-S",
	                         EXEC_SDK_PY_MOUNT "/bootstrap.py",
	                         "--result-fd=3",
	                         mode == SPAWN_POOLED_DB ? "--with-db" : NULL,
	                         NULL};
	const char *const *argv = lang == EXEC_JS ? js_argv : py_argv;
	struct cg_limits limits = {
	    .memory_bytes = memory_mb << 20, .pids = ctx->pids, .cpu_percent = cpu_percent, .background = pooled};
	/* The same for every sandbox of the node, so pooled ones have it
	 * already: the gateway decides per invocation, not the environment.
	 * Python's wrapper sets these itself once started (bootstrap.py):
	 * measured, four more variables in its environment at exec made warm
	 * invocations of a trivial Python function 1.6 times slower
	 * (bench/results/ab-2026-12-05-python-proxy-env.md). */
	static const char *const proxy_env[] = {"HTTP_PROXY=" EXEC_EGRESS_PROXY, "HTTPS_PROXY=" EXEC_EGRESS_PROXY,
	                                        "http_proxy=" EXEC_EGRESS_PROXY, "https_proxy=" EXEC_EGRESS_PROXY,
	                                        NULL};
	const char *const *env = ctx->egress && lang == EXEC_JS ? proxy_env : NULL;
	uint16_t egress_port = ctx->egress ? EXEC_EGRESS_PORT : 0;
	uint64_t cpu_seconds = exec_cpu_seconds(timeout_ms);
	if (ctx->spawner) {
		/* The spawner holds the runtime's policy and binds. */
		struct sbx_spawn_req req = {
		    .runtime = exec_runtime_name(lang),
		    .argv = argv,
		    .env = env,
		    .egress_port = egress_port,
		    .tmpfs_bytes = ctx->tmpfs_bytes,
		    .fsize_bytes = EXEC_FSIZE_BYTES,
		    .nofile = EXEC_NOFILE,
		    .cpu_seconds = cpu_seconds,
		    .limits = limits,
		    .stdio = {-1, -1, -1},
		    .result_fd = true,
		};
		return sbx_spawner_spawn(ctx->spawner, ctx->sbx, &req, ret, err);
	}
	struct sbx_bind binds[2];
	size_t n_binds = exec_runtime_binds(ctx->sdk_js, ctx->sdk_py, ctx->pg_socket_dir, lang, binds);
	struct sbx_spec spec = {
	    .argv = argv,
	    .env = env,
	    .egress_port = egress_port,
	    .binds = binds,
	    .n_binds = n_binds,
	    .policy = &ctx->policy[lang],
	    .tmpfs_bytes = ctx->tmpfs_bytes,
	    .fsize_bytes = EXEC_FSIZE_BYTES,
	    .nofile = EXEC_NOFILE,
	    .cpu_seconds = cpu_seconds,
	    .limits = limits,
	    .stdio = {-1, -1, -1},
	    .result_fd = true,
	};
	int r = sbx_spawn(ctx->sbx, &spec, ret, err);
	return r;
}

/* A first connection waits on s's egress listener: give the listener to
 * the gateway under the project's session, or, with no right to go out,
 * close it (what waits is reset at once: nothing hangs). */
static void egress_start_session(struct exec_ctx *ctx, const struct exec_request *req, struct sbx *s,
                                 uint64_t deadline_ns, struct egress_counters *ec, struct egress_session **ret)
{
	if (!ctx->egress || !req->egress) {
		close(s->egress_fd);
		s->egress_fd = -1;
		return;
	}
	struct egress_ctx ectx = *req->egress;
	ectx.deadline_ns = deadline_ns;
	ectx.counters = ec;
	if (egress_session_open(ctx->egress, &ectx, ret) < 0) {
		close(s->egress_fd);
		s->egress_fd = -1;
		return;
	}
	egress_serve(*ret, s->egress_fd); /* taken, whatever happens */
	s->egress_fd = -1;
}

int exec_run(struct exec_ctx *ctx, const struct exec_request *req, struct exec_result *ret, struct zerr *err)
{
	memset(ret, 0, sizeof(*ret));
	const char *entry = req->entry_point && req->entry_point[0] ? req->entry_point : ZPROTO_DEFAULT_ENTRY_POINT;
	if (req->lang != EXEC_JS && req->lang != EXEC_PY)
		return zerr_set(err, -EINVAL, "unknown runtime");
	if (!req->code || !valid_identifier(entry))
		return zerr_set(err, -EINVAL, "missing code or bad entry point");
	if (req->timeout_ms == 0 || req->timeout_ms > EXEC_MAX_TIMEOUT_MS || req->memory_mb < TIERS_MIN_MEMORY_MB ||
	    req->memory_mb > EXEC_MAX_MEMORY_MB)
		return zerr_set(err, -EINVAL, "timeout or memory out of range");
	if (req->env && !json_is_object(req->env))
		return zerr_set(err, -EINVAL, "env must be an object");

	json_t *env = req->env ? json_incref(req->env) : json_object();
	json_t *payload = req->payload ? json_incref(req->payload) : json_null();
	json_t *msg = json_pack(
	    "{s:s, s:s, s:{s:s, s:I, s:s}, s:s, s:o, s:s, s:o, s:I, s:b}", "invocation_id",
	    req->invocation_id ? req->invocation_id : "", "project_id", req->project_id ? req->project_id : "",
	    "function", "name", req->function_name ? req->function_name : "", "version", (json_int_t)req->version,
	    "entry_point", entry, "code", req->code, "env", env, "dsn", req->dsn ? req->dsn : "", "payload", payload,
	    "deadline_ms", (json_int_t)(epoch_ms() + req->timeout_ms), "check", (int)req->check);
	if (msg && !req->check)
		json_object_del(msg, "check");
	_cleanup_free_ char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
	json_decref(msg);
	if (!text)
		return zerr_set(err, -EINVAL, "the invocation cannot be encoded (invalid UTF-8?)");
	size_t text_len = strlen(text);
	if (text_len > ZPROTO_MAX_MESSAGE_BYTES)
		return zerr_set(err, -E2BIG, "the invocation message exceeds %u bytes", ZPROTO_MAX_MESSAGE_BYTES);

	/* Every sandbox gets a CPU quota: the request's, else the default. */
	uint64_t cpu = req->cpu_percent ? req->cpu_percent : ctx->cpu_percent;
	struct sbx s;
	bool ready = false;
	/* A check never takes a pooled sandbox: it is no invocation. */
	bool warm = !req->check && pool_take(ctx, req->lang, req->wants_db, &s, &ready);
	int r = 0;
	if (warm) {
		struct cg_limits lim = {.memory_bytes = req->memory_mb << 20, .pids = ctx->pids, .cpu_percent = cpu};
		/* Spawned with the largest timeout's CPU time, for it could not
		 * know the function's: narrowed now to what a cold sandbox of
		 * this function gets, on top of the CPU its runtime has used
		 * starting (sbx_narrow_rlimits). */
		struct sbx_rlimits rl = {.cpu_seconds = exec_cpu_seconds(req->timeout_ms),
		                         .fsize_bytes = EXEC_FSIZE_BYTES};
		r = sbx_assign(&s, &lim, &rl, err);
		pool_refill(ctx);
		if (r < 0) {
			/* Its runtime may already hold more than this function
			 * may use: not this sandbox then, a fresh one. */
			exec_dispose(ctx, &s);
			warm = false;
		}
	}
	if (!warm) {
		ready = false;
		r = exec_spawn_runtime(ctx, req->lang, req->memory_mb, req->timeout_ms, cpu,
		                       req->check ? SPAWN_CHECK : SPAWN_COLD, &s, err);
	}
	ret->warm = warm;
	if (r < 0) {
		ret->outcome = EXEC_SANDBOX_ERROR;
		ret->error = exec_error_object("SandboxError", err->msg, "");
		ret->report.status = SBX_ERROR;
		return 0;
	}

	for (int i = 0; i < 3; i++)
		fcntl(s.stdio[i], F_SETFL, fcntl(s.stdio[i], F_GETFL) | O_NONBLOCK);
	struct capture out = {.limit = ctx->max_result_bytes}, logs = {.limit = ctx->max_log_bytes};
	size_t written = 0, logs_fed = 0;
	bool out_eof = false, err_eof = false, exited = false, early = false, stopped = false;
	struct result_scan scan = {0};
	uint64_t deadline = s.start_ns + req->timeout_ms * 1000000ull;
	int io_error = 0;
	/* The egress listener is watched here, and handed to the gateway with
	 * the project's session only when a first connection waits on it: a
	 * function that never goes out costs the gateway nothing. */
	struct egress_session *es = NULL;
	struct egress_counters ec = {0};

	while (!(exited && out_eof && err_eof)) {
		struct pollfd pfd[5];
		int n = 0, i_in = -1, i_out = -1, i_err = -1, i_eg = -1;
		pfd[n++] = (struct pollfd){.fd = s.pidfd, .events = POLLIN};
		if (s.egress_fd >= 0) {
			i_eg = n;
			pfd[n++] = (struct pollfd){.fd = s.egress_fd, .events = POLLIN};
		}
		if (s.stdio[0] >= 0) {
			i_in = n;
			pfd[n++] = (struct pollfd){.fd = s.stdio[0], .events = POLLOUT};
		}
		if (!out_eof) {
			i_out = n;
			pfd[n++] = (struct pollfd){.fd = s.stdio[1], .events = POLLIN};
		}
		if (!err_eof) {
			i_err = n;
			pfd[n++] = (struct pollfd){.fd = s.stdio[2], .events = POLLIN};
		}
		int wait_ms = -1;
		if (!s.killed_for_timeout && !stopped) {
			uint64_t now = util_now_ns();
			if (now >= deadline) {
				sbx_kill_timeout(&s);
				continue;
			}
			/* The platform stops: past its grace period, nothing waits
			 * for a function any more. */
			uint64_t stop = atomic_load(&ctx->stop_ns);
			if (stop && now >= stop) {
				stopped = true;
				sbx_kill(&s, SIGKILL);
				continue;
			}
			wait_ms = (int)((deadline - now + 999999) / 1000000);
			if (wait_ms > 250)
				wait_ms = 250; /* to notice a stop */
		}
		int k = poll(pfd, (nfds_t)n, wait_ms);
		if (k < 0 && errno != EINTR) {
			io_error = -errno;
			sbx_kill(&s, SIGKILL);
			break;
		}
		if (k <= 0)
			continue;
		if (pfd[0].revents)
			exited = true;
		if (i_eg >= 0 && pfd[i_eg].revents)
			egress_start_session(ctx, req, &s, deadline, &ec, &es);
		if (i_in >= 0 && pfd[i_in].revents) {
			ssize_t w = write(s.stdio[0], text + written, text_len - written);
			if (w > 0)
				written += (size_t)w;
			if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == text_len ||
			    (pfd[i_in].revents & (POLLERR | POLLHUP))) {
				close(s.stdio[0]);
				s.stdio[0] = -1;
			}
		}
		/* Logs first: what the function printed before its result is in
		 * the pipe by the time the result is (the wrappers write both
		 * synchronously, logs flushed first). */
		if (i_err >= 0 && pfd[i_err].revents) {
			int rr = capture_read(&logs, s.stdio[2]);
			if (rr == -EPIPE || rr < 0)
				err_eof = true;
			logs_fed = feed_logs(req, &logs, logs_fed);
		}
		if (i_out >= 0 && pfd[i_out].revents) {
			int rr = capture_read(&out, s.stdio[1]);
			/* The wrapper's announcement that it waits, unless the pool
			 * has read it already, is not part of the result. */
			if (!ready && out.b.len > 0) {
				ready = true;
				if (out.b.data[0] == '\n')
					memmove(out.b.data, out.b.data + 1, --out.b.len);
			}
			if (rr == -EPIPE)
				out_eof = true;
			else if (rr < 0 && rr != -EPIPE) {
				io_error = rr;
				out_eof = true;
			}
			if (out.overflow && !s.killed_for_timeout)
				sbx_kill(&s, SIGKILL); /* no reason to let it go on */
			else if (!out_eof && !s.killed_for_timeout && result_complete(&out, &scan)) {
				/* The answer is in: the runtime's exit and the
				 * sandbox's teardown happen off the request's path. */
				early = true;
				break;
			}
		}
	}

	/* The invocation is over: so are its connections, and the counters
	 * are final. */
	if (es) {
		egress_session_close(es);
		ret->egress_requests = atomic_load(&ec.requests);
		ret->egress_bytes = atomic_load(&ec.bytes);
		ret->egress_refused = atomic_load(&ec.refused);
	}
	if (early) {
		while (!err_eof && capture_read(&logs, s.stdio[2]) == 0)
			;
		logs_fed = feed_logs(req, &logs, logs_fed);
		sbx_report_now(&s, &ret->report);
		exec_dispose(ctx, &s);
		r = 0;
	} else {
		r = sbx_reap(&s, &ret->report);
		sbx_destroy(&s);
	}
	if (logs.b.data)
		logs.b.len = sanitize_text(logs.b.data, logs.b.len);
	ret->logs_len = logs.b.len;
	ret->logs = logs.b.data ? buf_steal(&logs.b) : strdup("");
	ret->logs_truncated = logs.overflow;

	if (r < 0 || io_error < 0) {
		buf_free(&out.b);
		scan_done(&scan);
		ret->outcome = EXEC_SANDBOX_ERROR;
		ret->error = exec_error_object("SandboxError", "lost track of the sandbox", "");
		return 0;
	}
	if (stopped && !early) {
		ret->outcome = EXEC_SANDBOX_ERROR;
		ret->error = exec_error_object("SandboxError", "the platform stopped before the function finished", "");
		buf_free(&out.b);
		scan_done(&scan);
		return 0;
	}
	switch (ret->report.status) {
	case SBX_TIMEOUT:
		ret->outcome = EXEC_TIMEOUT;
		ret->error = exec_error_object("Timeout", "the function exceeded its timeout", "");
		break;
	case SBX_OOM:
		ret->outcome = EXEC_OOM;
		ret->error = exec_error_object("OutOfMemory", "the function exceeded its memory limit", "");
		break;
	case SBX_ERROR:
		ret->outcome = EXEC_SANDBOX_ERROR;
		ret->error = exec_error_object("SandboxError", ret->report.error, "");
		break;
	default:
		if (ret->report.status == SBX_SIGNALED && req->lang == EXEC_JS &&
		    (ret->report.signal == SIGABRT || ret->report.signal == SIGTRAP) && ret->logs &&
		    strstr(ret->logs, "heap out of memory")) {
			/* V8 hit the heap limit it was given. */
			ret->outcome = EXEC_OOM;
			ret->error = exec_error_object("OutOfMemory", "the function exceeded its memory limit", "");
			break;
		}
		classify_output(&out, &scan, ret);
	}
	buf_free(&out.b);
	scan_done(&scan);
	return 0;
}

/* The check's error, as the wrapper wrote it, bounded and shaped: strings
 * where strings are due, positive integers or null for the place. */
static json_t *check_error(json_t *e)
{
	const char *name = json_string_value(json_object_get(e, "name"));
	const char *message = json_string_value(json_object_get(e, "message"));
	const char *file = json_string_value(json_object_get(e, "file"));
	if (!name || !message || !file)
		return NULL;
	json_t *out = json_pack("{s:s, s:s, s:s}", "name", name, "message", message, "file", file);
	for (const char *const *k = (const char *const[]){"line", "column", NULL}; out && *k; k++) {
		json_t *v = json_object_get(e, *k);
		bool ok = json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) <= INT32_MAX;
		json_object_set_new(out, *k, ok ? json_integer(json_integer_value(v)) : json_null());
	}
	return out;
}

int exec_check(struct exec_ctx *ctx, enum exec_lang lang, const char *code, const char *entry_point,
               struct exec_check_result *ret, struct zerr *err)
{
	memset(ret, 0, sizeof(*ret));
	struct exec_request req = {.lang = lang,
	                           .invocation_id = "deploy-check",
	                           .project_id = "deploy-check",
	                           .function_name = "deploy-check",
	                           .entry_point = entry_point,
	                           .code = code,
	                           .timeout_ms = EXEC_CHECK_TIMEOUT_MS,
	                           .memory_mb = EXEC_CHECK_MEMORY_MB,
	                           .check = true};
	struct exec_result res;
	int r = exec_run(ctx, &req, &res, err);
	if (r < 0)
		return r;
	json_t *valid = json_object_get(res.result, "valid");
	if (res.outcome != EXEC_SUCCESS || !json_is_boolean(valid)) {
		const char *why = res.outcome == EXEC_TIMEOUT ? "timed out"
		                  : res.outcome == EXEC_OOM   ? "ran out of memory"
		                  : res.error                 ? json_string_value(json_object_get(res.error, "message"))
		                                              : "answered no check";
		r = zerr_set(err, -EIO, "the code check %s", why ? why : "failed");
	} else if (json_is_true(valid)) {
		ret->valid = true;
	} else if (!(ret->error = check_error(json_object_get(res.result, "error")))) {
		r = zerr_set(err, -EIO, "the code check answered an error of no known shape");
	}
	exec_result_done(&res);
	return r;
}

void exec_check_result_done(struct exec_check_result *r)
{
	if (!r)
		return;
	json_decref(r->error);
	r->error = NULL;
}
