/* executor.c - see executor.h */
#define _GNU_SOURCE
#include "executor.h"

#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define EXEC_MAX_MESSAGE    (48u << 20)
#define EXEC_MAX_TIMEOUT_MS (15u * 60 * 1000)
#define EXEC_MAX_MEMORY_MB  (16u * 1024)

struct buf {
	char *data;
	size_t len, cap, limit;
	bool overflow;
};

static int buf_read(struct buf *b, int fd)
{
	for (;;) {
		char tmp[16384];
		char *dst = tmp;
		size_t room = sizeof(tmp);
		if (!b->overflow && b->len < b->limit) {
			if (b->cap - b->len < 16384) {
				size_t cap = b->cap ? b->cap * 2 : 65536;
				while (cap - b->len < 16384)
					cap *= 2;
				if (cap > b->limit + 16384)
					cap = b->limit + 16384;
				char *d = realloc(b->data, cap + 1);
				if (!d)
					return -ENOMEM;
				b->data = d;
				b->cap = cap;
			}
			dst = b->data + b->len;
			room = b->cap - b->len;
		}
		ssize_t n = read(fd, dst, room);
		if (n < 0)
			return errno == EAGAIN ? 1 : errno == EINTR ? 0 : -errno;
		if (n == 0)
			return -EPIPE; /* EOF */
		if (dst != tmp) {
			b->len += (size_t)n;
			if (b->len > b->limit) {
				b->len = b->limit;
				b->overflow = true;
			}
		} else
			b->overflow = true;
	}
}

/* Logs are the function's raw bytes: make them valid UTF-8 without NULs
 * (each bad byte becomes '?'), so they can be stored and shown as text, and
 * drop a character the log limit cut in half. Returns the new length. */
static size_t sanitize_text(char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
		bool ok = n > 0 && (c != 0) && i + n <= len;
		for (size_t k = 1; ok && k < n; k++)
			ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
		if (ok && n == 2)
			ok = c >= 0xc2; /* overlong */
		if (ok && n == 3) {
			unsigned char c1 = (unsigned char)s[i + 1];
			ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0); /* overlong, surrogates */
		}
		if (ok && n == 4) {
			unsigned char c1 = (unsigned char)s[i + 1];
			ok = c <= 0xf4 && !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
		}
		if (!ok && i + n > len && n > 1) {
			/* A character cut by the limit: end before it. */
			len = i;
			break;
		}
		if (!ok) {
			s[i++] = '?';
			continue;
		}
		i += n;
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

static bool valid_identifier(const char *s)
{
	if (!s || !s[0] || strlen(s) > 128 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' ||
		      *c == '$'))
			return false;
	return true;
}

/* Whether stdout already holds the wrappers' one answer: compact JSON whose
 * only raw newline is its last byte. Each byte is looked at once and the
 * buffer parsed at most once, at the first newline: output shaped to look
 * almost complete cannot make the daemon parse it again and again. Anything
 * else waits for EOF. */
struct result_scan {
	size_t scanned;
	bool done; /* decided: no early answer */
};

static bool result_complete(const struct buf *out, struct result_scan *sc)
{
	if (sc->done || out->overflow)
		return false;
	const char *nl = out->len > sc->scanned ? memchr(out->data + sc->scanned, '\n', out->len - sc->scanned) : NULL;
	sc->scanned = out->len;
	if (!nl)
		return false;
	sc->done = true;
	if ((size_t)(nl - out->data) != out->len - 1 || out->data[0] != '{')
		return false;
	json_t *o = json_loadb(out->data, out->len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
	bool ok = json_is_object(o) && json_is_boolean(json_object_get(o, "ok"));
	json_decref(o);
	return ok;
}

/* ---- the reaper -----------------------------------------------------------
 * Kills and destroys sandboxes whose answer is already in, off the request's
 * path: a runtime's own exit and the kernel's namespace teardown take
 * milliseconds nobody needs to wait for. */

#define REAPER_QUEUE 256

struct exec_reaper {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool stop;
	struct sbx q[REAPER_QUEUE];
	size_t head, n;
};

static void *reaper_main(void *arg)
{
	struct exec_reaper *rp = arg;
	pthread_mutex_lock(&rp->mu);
	for (;;) {
		if (rp->n == 0) {
			if (rp->stop)
				break;
			pthread_cond_wait(&rp->cv, &rp->mu);
			continue;
		}
		struct sbx s = rp->q[rp->head];
		rp->head = (rp->head + 1) % REAPER_QUEUE;
		rp->n--;
		pthread_mutex_unlock(&rp->mu);
		sbx_destroy(&s);
		pthread_mutex_lock(&rp->mu);
	}
	pthread_mutex_unlock(&rp->mu);
	return NULL;
}

static void exec_dispose(struct exec_ctx *ctx, struct sbx *s)
{
	sbx_kill(s, SIGKILL);
	struct exec_reaper *rp = ctx->reaper;
	if (rp) {
		pthread_mutex_lock(&rp->mu);
		if (rp->n < REAPER_QUEUE && !rp->stop) {
			rp->q[(rp->head + rp->n) % REAPER_QUEUE] = *s;
			rp->n++;
			pthread_cond_signal(&rp->cv);
			pthread_mutex_unlock(&rp->mu);
			return;
		}
		pthread_mutex_unlock(&rp->mu);
	}
	sbx_destroy(s); /* no reaper, or it is behind: do it here */
}

static void reaper_stop(struct exec_ctx *ctx)
{
	struct exec_reaper *rp = ctx->reaper;
	if (!rp)
		return;
	pthread_mutex_lock(&rp->mu);
	rp->stop = true;
	pthread_cond_signal(&rp->cv);
	pthread_mutex_unlock(&rp->mu);
	pthread_join(rp->thread, NULL);
	pthread_cond_destroy(&rp->cv);
	pthread_mutex_destroy(&rp->mu);
	free(rp);
	ctx->reaper = NULL;
}

int exec_ctx_init(struct exec_ctx *ctx, struct sbx_ctx *sbx, struct sbx_spawner *spawner, const char *policy_dir,
                  const char *sdk_dir, const char *pg_socket_dir, struct zerr *err)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->sbx = sbx;
	ctx->spawner = spawner;
	ctx->max_result_bytes = 6u << 20;
	ctx->max_log_bytes = 64u << 10;
	ctx->tmpfs_bytes = 64u << 20;
	ctx->pids = 64;
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
		struct exec_reaper *rp = calloc(1, sizeof(*rp));
		if (!rp)
			return zerr_set(err, -ENOMEM, "out of memory");
		pthread_mutex_init(&rp->mu, NULL);
		pthread_cond_init(&rp->cv, NULL);
		int rc = pthread_create(&rp->thread, NULL, reaper_main, rp);
		if (rc != 0) {
			free(rp);
			return zerr_set(err, -rc, "pthread_create: %s", strerror(rc));
		}
		ctx->reaper = rp;
	}

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
	reaper_stop(ctx);
	for (size_t i = 0; i < ELEMENTSOF(ctx->policy); i++)
		pol_program_free(&ctx->policy[i]);
}

void exec_result_done(struct exec_result *r)
{
	if (!r)
		return;
	json_decref(r->result);
	json_decref(r->error);
	free(r->logs);
	r->result = r->error = NULL;
	r->logs = NULL;
}

static json_t *error_object(const char *name, const char *message, const char *stack)
{
	return json_pack("{s:s, s:s, s:s}", "name", name, "message", message, "stack", stack ? stack : "");
}

/* A string from the sandbox, bounded and valid UTF-8 (jansson checks). */
static const char *bounded(json_t *s, size_t max, char *buf, size_t size)
{
	const char *v = json_string_value(s);
	if (!v)
		return "";
	size_t n = strlen(v);
	if (n <= max)
		return v;
	/* Cut on a character boundary. */
	while (n > max || (n > 0 && ((unsigned char)v[n] & 0xc0) == 0x80))
		n--;
	snprintf(buf, size, "%.*s...", (int)n, v);
	return buf;
}

static void classify_output(const struct buf *out, struct exec_result *r)
{
	if (out->overflow) {
		r->outcome = EXEC_BAD_RESULT;
		r->error = error_object("BadResult", "the result is larger than the platform accepts", "");
		return;
	}
	if (out->len == 0) {
		r->outcome = EXEC_BAD_RESULT;
		r->error = error_object("BadResult", "the function ended without a result", "");
		return;
	}
	json_error_t jerr;
	json_t *o = json_loadb(out->data, out->len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	json_t *ok = json_object_get(o, "ok");
	if (!json_is_object(o) || !json_is_boolean(ok)) {
		json_decref(o);
		r->outcome = EXEC_BAD_RESULT;
		r->error = error_object("BadResult", "the function's output is not a result object", "");
		return;
	}
	if (json_is_true(ok)) {
		json_t *res = json_object_get(o, "result");
		r->outcome = EXEC_SUCCESS;
		r->result = res ? json_incref(res) : json_null();
		json_decref(o);
		return;
	}
	json_t *e = json_object_get(o, "error");
	char b1[160], b2[8300], b3[16500];
	r->outcome = EXEC_FUNCTION_ERROR;
	r->error = error_object(json_is_object(e) ? bounded(json_object_get(e, "name"), 128, b1, sizeof(b1)) : "Error",
	                        json_is_object(e) ? bounded(json_object_get(e, "message"), 8192, b2, sizeof(b2)) : "",
	                        json_is_object(e) ? bounded(json_object_get(e, "stack"), 16384, b3, sizeof(b3)) : "");
	json_decref(o);
}

/* Start the runtime of lang in a fresh sandbox: for one invocation now
 * (cold), or for the pool, with the largest limits a function may get until
 * sbx_assign() narrows them. */
enum spawn_mode { SPAWN_COLD, SPAWN_POOLED, SPAWN_POOLED_DB };

static int spawn_runtime(struct exec_ctx *ctx, enum exec_lang lang, uint64_t memory_mb, uint64_t timeout_ms,
                         uint64_t cpu_percent, enum spawn_mode mode, struct sbx *ret, struct zerr *err)
{
	bool pooled = mode != SPAWN_COLD;
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
	const char *js_cold[] = {"/usr/bin/node", heap, EXEC_SDK_JS_MOUNT "/bootstrap.js", NULL};
	const char *js_pooled[] = {"/usr/bin/node", EXEC_SDK_JS_MOUNT "/bootstrap.js", "--warm-up",
	                           mode == SPAWN_POOLED_DB ? "--with-db" : NULL, NULL};
	const char **js_argv = pooled ? js_pooled : js_cold;
	/* -S: bootstrap.py does what a function needs of site's work. */
	const char *py_argv[] = {"/usr/bin/python3.11", "-S", EXEC_SDK_PY_MOUNT "/bootstrap.py",
	                         mode == SPAWN_POOLED_DB ? "--with-db" : NULL, NULL};
	struct sbx_bind binds[2] = {
	    {.src = lang == EXEC_JS ? ctx->sdk_js : ctx->sdk_py,
	     .dst = lang == EXEC_JS ? EXEC_SDK_JS_MOUNT : EXEC_SDK_PY_MOUNT},
	    {.src = ctx->pg_socket_dir, .dst = EXEC_PG_MOUNT},
	};
	struct sbx_spec spec = {
	    .argv = lang == EXEC_JS ? js_argv : py_argv,
	    .binds = binds,
	    .n_binds = ctx->pg_socket_dir[0] ? 2 : 1,
	    .policy = &ctx->policy[lang],
	    .tmpfs_bytes = ctx->tmpfs_bytes,
	    .fsize_bytes = ctx->tmpfs_bytes,
	    .nofile = 256,
	    .cpu_seconds = timeout_ms / 1000 + 2,
	    .limits = {.memory_bytes = memory_mb << 20,
	               .pids = ctx->pids,
	               .cpu_percent = cpu_percent,
	               .background = pooled},
	    .stdio = {-1, -1, -1},
	};
	int r = ctx->spawner ? sbx_spawner_spawn(ctx->spawner, ctx->sbx, &spec, ret, err)
	                     : sbx_spawn(ctx->sbx, &spec, ret, err);
	if (r < 0 && ret->pidfd >= 0) {
		/* Killed by the spawner after a failure: ours to reap. */
		struct sbx dead = {
		    .pid = ret->pid, .pidfd = ret->pidfd, .info_fd = -1, .slot_fd = -1, .stdio = {-1, -1, -1}};
		dead.cg.dirfd = -1;
		sbx_destroy(&dead);
	}
	return r;
}

/* Does the code use zmesh.db? A hint for the warm pool, which keeps
 * sandboxes with the driver loaded for such functions: the word db followed
 * by a property access ("zmesh.db.query", "const { db } = zmesh; db.insert",
 * "z.db['select']"). A wrong guess costs time, never correctness. */
bool exec_code_wants_db(const char *code)
{
	for (const char *p = code; (p = strstr(p, "db")) != NULL; p += 2) {
		if (p > code && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '$'))
			continue;
		const char *q = p + 2;
		while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
			q++;
		if (*q == '.' || *q == '[' || (q[0] == '?' && q[1] == '.'))
			return true;
	}
	return false;
}

/* ---- the warm pool --------------------------------------------------------
 * Per runtime, sandboxes started ahead: namespaces, cgroup, workspace,
 * runtime and wrapper loaded, blocked on stdin. An invocation takes one,
 * narrows its limits (sbx_assign) and writes its message; the sandbox then
 * dies with that invocation like any other. Nothing is ever reused: the
 * pool only moves the start-up off the request's path. A background thread
 * refills it, replacing sandboxes that died or grew too old.
 *
 * Each runtime's pool has two kinds: plain, and with the database driver
 * already loaded (the wrapper's --with-db), which takes the driver's load
 * (tens of milliseconds) off the path of functions whose code uses zmesh.db.
 * The second kind is kept only while such functions are invoked. */

#define POOL_MAX       64
#define POOL_WINDOW_NS (10ull * 1000000000ull)
#define POOL_KINDS     4 /* (runtime, with the driver) */

static int pool_kind(enum exec_lang lang, bool db)
{
	return (lang == EXEC_PY) * 2 + db;
}
static enum exec_lang kind_lang(int kind)
{
	return kind >= 2 ? EXEC_PY : EXEC_JS;
}
static bool kind_db(int kind)
{
	return kind & 1;
}

struct exec_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t thread;
	bool stop;
	unsigned max; /* per runtime: the configured size */
	/* Demand: invocations per kind in the current and the previous window,
	 * and of them those the pool was short for (no sandbox waiting); the
	 * pool aims at what the last windows asked for. */
	uint64_t window_start_ns;
	unsigned demand[POOL_KINDS], demand_prev[POOL_KINDS];
	unsigned short_[POOL_KINDS], short_prev[POOL_KINDS];
	uint64_t memory_mb; /* limit while waiting: the largest a function gets */
	uint64_t timeout_ms;
	uint64_t max_age_ns;
	/* Oldest first. A wrapper writes one newline on stdout once its
	 * runtime and SDK are loaded and it blocks reading the invocation. */
	struct pool_item {
		struct sbx s;
		bool ready;  /* that newline was read */
		bool broken; /* something else came first: never handed out */
	} items[POOL_KINDS][POOL_MAX];
	unsigned n[POOL_KINDS];
	struct exec_pool_stats stats;
};

static bool alive(const struct sbx *s)
{
	struct pollfd p = {.fd = s->pidfd, .events = POLLIN};
	return poll(&p, 1, 0) == 0;
}

/* Has the wrapper announced it is waiting? Consumes the announcement. A
 * sandbox that writes anything else first is broken: -1. */
static int check_ready(struct pool_item *it)
{
	if (it->ready || it->broken)
		return it->ready ? 1 : -1;
	struct pollfd p = {.fd = it->s.stdio[1], .events = POLLIN};
	if (poll(&p, 1, 0) <= 0)
		return 0;
	char c;
	if (read(it->s.stdio[1], &c, 1) != 1 || c != '\n') {
		it->broken = true;
		return -1;
	}
	it->ready = true;
	return 1;
}

static void pool_remove(struct exec_pool *pool, int kind, unsigned i)
{
	memmove(&pool->items[kind][i], &pool->items[kind][i + 1],
	        (pool->n[kind] - i - 1) * sizeof(pool->items[kind][0]));
	pool->n[kind]--;
}

/* Discard the pooled sandbox at i (dead, too old or broken), unlocked while
 * it is destroyed. */
static void pool_discard(struct exec_pool *pool, int kind, unsigned i)
{
	struct sbx dead = pool->items[kind][i].s;
	pool_remove(pool, kind, i);
	pool->stats.discarded++;
	pthread_mutex_unlock(&pool->mu);
	sbx_destroy(&dead);
	pthread_mutex_lock(&pool->mu);
}

/* Index of the oldest usable sandbox of kind whose wrapper waits
 * (*ret_ready), else of the oldest still starting; -1 if there is none.
 * Unusable ones go to the reaper. Never unlocks: an index stays valid until
 * the caller unlocks. */
static int pool_pick(struct exec_ctx *ctx, int kind, bool *ret_ready)
{
	struct exec_pool *pool = ctx->pool;
	int starting = -1;
	for (unsigned i = 0; i < pool->n[kind];) {
		struct pool_item *it = &pool->items[kind][i];
		int ready = check_ready(it);
		if (ready < 0 || !alive(&it->s) || util_now_ns() - it->s.start_ns >= pool->max_age_ns) {
			exec_dispose(ctx, &it->s);
			pool_remove(pool, kind, i);
			pool->stats.discarded++;
			continue;
		}
		if (ready) {
			*ret_ready = true;
			return (int)i;
		}
		if (starting < 0)
			starting = (int)i;
		i++;
	}
	*ret_ready = false;
	return starting;
}

/* Of lang's sandboxes, the oldest whose wrapper is waiting, of the kind
 * asked for if there is one (either kind serves any function); failing
 * that, the one of that kind that has been starting longest (its runtime is
 * part-way up: still less to wait for than a fresh spawn). *ret_ready tells
 * whether its wrapper has announced itself. */
static bool take_warm(struct exec_ctx *ctx, enum exec_lang lang, bool db, struct sbx *ret, bool *ret_ready)
{
	struct exec_pool *pool = ctx->pool;
	if (!pool)
		return false;
	pthread_mutex_lock(&pool->mu);
	int want = pool_kind(lang, db), other = pool_kind(lang, !db);
	pool->demand[want]++;
	bool ready_want, ready_other;
	int i = pool_pick(ctx, want, &ready_want);
	int kind = want;
	if (i < 0 || !ready_want) {
		int j = pool_pick(ctx, other, &ready_other);
		if (j >= 0 && (ready_other || i < 0)) {
			i = j;
			kind = other;
		}
	}
	if (i >= 0) {
		*ret = pool->items[kind][i].s;
		*ret_ready = pool->items[kind][i].ready;
		pool_remove(pool, kind, (unsigned)i);
		pool->stats.warm++;
	} else
		pool->stats.cold++;
	if (i < 0 || !*ret_ready)
		pool->short_[want]++;
	pthread_cond_signal(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	return i >= 0;
}

/* How many to keep of kind: as many as were asked for in a recent window at
 * most, the two kinds of a runtime together never above the configured
 * size; of the plain kind one at least (the next invocation should be
 * warm), of the kind with the driver none while no function that uses the
 * database is invoked. Called with the lock held. */
static unsigned pool_want(struct exec_pool *pool, int kind)
{
	unsigned want = pool->demand[kind] > pool->demand_prev[kind] ? pool->demand[kind] : pool->demand_prev[kind];
	unsigned caught = pool->short_[kind] > pool->short_prev[kind] ? pool->short_[kind] : pool->short_prev[kind];
	/* Invocations of a window come spread over it; a sandbox serves one and
	 * takes a runtime's start-up to replace: a quarter is plenty ahead.
	 * Where they came in bursts, the pool was caught short: one more for
	 * each time it was. */
	unsigned ahead = want / 4 > caught ? want / 4 : caught;
	return ahead + (kind_db(kind) ? want > 0 : 1);
}

static unsigned pool_target(struct exec_pool *pool, int kind)
{
	uint64_t now = util_now_ns();
	if (now - pool->window_start_ns >= POOL_WINDOW_NS) {
		bool idle = now - pool->window_start_ns >= 2 * POOL_WINDOW_NS;
		for (int k = 0; k < POOL_KINDS; k++) {
			pool->demand_prev[k] = idle ? 0 : pool->demand[k];
			pool->short_prev[k] = idle ? 0 : pool->short_[k];
			pool->demand[k] = 0;
			pool->short_[k] = 0;
		}
		pool->window_start_ns = now;
	}
	/* Both kinds of a runtime share its size, in proportion to what they
	 * want; the kind with the driver gets one at least if it wants any and
	 * the size allows two. */
	enum exec_lang lang = kind_lang(kind);
	unsigned plain = pool_want(pool, pool_kind(lang, false)), db = pool_want(pool, pool_kind(lang, true));
	if (plain + db > pool->max) {
		unsigned share = (unsigned)((uint64_t)pool->max * db / (plain + db));
		if (share == 0 && db > 0 && pool->max > 1)
			share = 1;
		db = share;
		plain = pool->max - share;
	}
	return kind_db(kind) ? db : plain;
}

static void *pool_main(void *arg)
{
	struct exec_ctx *ctx = arg;
	struct exec_pool *pool = ctx->pool;
	pthread_mutex_lock(&pool->mu);
	while (!pool->stop) {
		bool filled = false;
		for (int kind = 0; kind < POOL_KINDS && !pool->stop; kind++) {
			/* Old or dead ones first: never handed out, replaced. */
			for (unsigned i = 0; i < pool->n[kind];) {
				struct pool_item *it = &pool->items[kind][i];
				if (check_ready(it) >= 0 && alive(&it->s) &&
				    util_now_ns() - it->s.start_ns < pool->max_age_ns) {
					i++;
					continue;
				}
				pool_discard(pool, kind, i);
			}
			unsigned target = pool_target(pool, kind);
			/* Demand fell: the oldest beyond the target go. */
			while (pool->n[kind] > target)
				pool_discard(pool, kind, 0);
			if (pool->n[kind] >= target)
				continue;
			pthread_mutex_unlock(&pool->mu);
			struct sbx s;
			struct zerr err = {0};
			int r = spawn_runtime(ctx, kind_lang(kind), pool->memory_mb, pool->timeout_ms, ctx->cpu_percent,
			                      kind_db(kind) ? SPAWN_POOLED_DB : SPAWN_POOLED, &s, &err);
			pthread_mutex_lock(&pool->mu);
			if (r < 0) {
				pool->stats.spawn_failures++;
				continue;
			}
			if (pool->stop || pool->n[kind] >= POOL_MAX) {
				pthread_mutex_unlock(&pool->mu);
				sbx_destroy(&s);
				pthread_mutex_lock(&pool->mu);
				continue;
			}
			pool->items[kind][pool->n[kind]++] = (struct pool_item){.s = s};
			pool->stats.spawned++;
			filled = true;
		}
		if (!filled && !pool->stop) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&pool->cv, &pool->mu, &ts);
		}
	}
	pthread_mutex_unlock(&pool->mu);
	return NULL;
}

int exec_pool_start(struct exec_ctx *ctx, unsigned per_runtime, uint64_t memory_mb, uint64_t timeout_ms,
                    struct zerr *err)
{
	if (per_runtime == 0)
		return 0;
	if (!ctx->spawner)
		return zerr_set(err, -EINVAL, "the warm pool needs the spawner (it spawns from a thread)");
	if (per_runtime > POOL_MAX)
		return zerr_set(err, -EINVAL, "pool size above %d", POOL_MAX);
	struct exec_pool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		return zerr_set(err, -ENOMEM, "out of memory");
	pool->max = per_runtime;
	pool->window_start_ns = util_now_ns();
	pool->memory_mb = memory_mb;
	pool->timeout_ms = timeout_ms;
	pool->max_age_ns = 300ull * 1000000000ull;
	pthread_mutex_init(&pool->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->cv, &ca);
	pthread_condattr_destroy(&ca);
	ctx->pool = pool;
	int r = pthread_create(&pool->thread, NULL, pool_main, ctx);
	if (r != 0) {
		ctx->pool = NULL;
		free(pool);
		return zerr_set(err, -r, "pthread_create: %s", strerror(r));
	}
	return 0;
}

void exec_pool_set_max_age(struct exec_ctx *ctx, uint64_t ms)
{
	struct exec_pool *pool = ctx->pool;
	if (!pool)
		return;
	pthread_mutex_lock(&pool->mu);
	pool->max_age_ns = ms * 1000000ull;
	pthread_cond_signal(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
}

void exec_pool_stop(struct exec_ctx *ctx)
{
	struct exec_pool *pool = ctx->pool;
	if (!pool)
		return;
	pthread_mutex_lock(&pool->mu);
	pool->stop = true;
	pthread_cond_signal(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	pthread_join(pool->thread, NULL);
	ctx->pool = NULL;
	for (int kind = 0; kind < POOL_KINDS; kind++)
		for (unsigned i = 0; i < pool->n[kind]; i++)
			sbx_destroy(&pool->items[kind][i].s);
	pthread_cond_destroy(&pool->cv);
	pthread_mutex_destroy(&pool->mu);
	free(pool);
}

void exec_pool_get_stats(struct exec_ctx *ctx, struct exec_pool_stats *ret)
{
	memset(ret, 0, sizeof(*ret));
	struct exec_pool *pool = ctx->pool;
	if (!pool)
		return;
	pthread_mutex_lock(&pool->mu);
	*ret = pool->stats;
	for (int kind = 0; kind < POOL_KINDS; kind++) {
		bool js = kind_lang(kind) == EXEC_JS;
		*(js ? &ret->target_js : &ret->target_py) += pool_target(pool, kind);
		for (unsigned i = 0; i < pool->n[kind]; i++) {
			/* Ready: the wrapper said so (a broken one is counted as
			 * starting until the pool's thread discards it). */
			bool ready = check_ready(&pool->items[kind][i]) > 0;
			*(js ? (ready ? &ret->ready_js : &ret->starting_js)
			     : (ready ? &ret->ready_py : &ret->starting_py)) += 1;
			if (ready && kind_db(kind))
				*(js ? &ret->ready_db_js : &ret->ready_db_py) += 1;
			char p[CG_PATH_MAX + 32], buf[64];
			const struct cg *cg = &pool->items[kind][i].s.cg;
			/* What the waiting runtimes hold now. */
			snprintf(p, sizeof(p), "%s/%s", cg->path[0],
			         cg->ctx->mode == CG_V2 ? "memory.current" : "memory.usage_in_bytes");
			if (util_read_file(p, buf, sizeof(buf)) > 0)
				ret->memory_bytes += strtoull(buf, NULL, 10);
		}
	}
	pthread_mutex_unlock(&pool->mu);
}

int exec_run(struct exec_ctx *ctx, const struct exec_request *req, struct exec_result *ret, struct zerr *err)
{
	memset(ret, 0, sizeof(*ret));
	const char *entry = req->entry_point && req->entry_point[0] ? req->entry_point : "handler";
	if (req->lang != EXEC_JS && req->lang != EXEC_PY)
		return zerr_set(err, -EINVAL, "unknown runtime");
	if (!req->code || !valid_identifier(entry))
		return zerr_set(err, -EINVAL, "missing code or bad entry point");
	if (req->timeout_ms == 0 || req->timeout_ms > EXEC_MAX_TIMEOUT_MS || req->memory_mb < 16 ||
	    req->memory_mb > EXEC_MAX_MEMORY_MB)
		return zerr_set(err, -EINVAL, "timeout or memory out of range");
	if (req->env && !json_is_object(req->env))
		return zerr_set(err, -EINVAL, "env must be an object");

	json_t *env = req->env ? json_incref(req->env) : json_object();
	json_t *payload = req->payload ? json_incref(req->payload) : json_null();
	json_t *msg = json_pack("{s:s, s:s, s:{s:s, s:I, s:s}, s:s, s:o, s:s, s:o, s:I}", "invocation_id",
	                        req->invocation_id ? req->invocation_id : "", "project_id",
	                        req->project_id ? req->project_id : "", "function", "name",
	                        req->function_name ? req->function_name : "", "version", (json_int_t)req->version,
	                        "entry_point", entry, "code", req->code, "env", env, "dsn", req->dsn ? req->dsn : "",
	                        "payload", payload, "deadline_ms", (json_int_t)(epoch_ms() + req->timeout_ms));
	_cleanup_free_ char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
	json_decref(msg);
	if (!text)
		return zerr_set(err, -EINVAL, "the invocation cannot be encoded (invalid UTF-8?)");
	size_t text_len = strlen(text);
	if (text_len > EXEC_MAX_MESSAGE)
		return zerr_set(err, -E2BIG, "the invocation message exceeds %u bytes", EXEC_MAX_MESSAGE);

	/* Every sandbox gets a CPU quota: the request's, else the default. */
	uint64_t cpu = req->cpu_percent ? req->cpu_percent : ctx->cpu_percent;
	struct sbx s;
	bool ready = false;
	bool warm = take_warm(ctx, req->lang, exec_code_wants_db(req->code), &s, &ready);
	int r = 0;
	if (warm) {
		struct cg_limits lim = {.memory_bytes = req->memory_mb << 20, .pids = ctx->pids, .cpu_percent = cpu};
		r = sbx_assign(&s, &lim, err);
		if (r < 0) {
			/* Its runtime may already hold more than this function
			 * may use: not this sandbox then, a fresh one. */
			exec_dispose(ctx, &s);
			warm = false;
		}
	}
	if (!warm) {
		ready = false;
		r = spawn_runtime(ctx, req->lang, req->memory_mb, req->timeout_ms, cpu, SPAWN_COLD, &s, err);
	}
	ret->warm = warm;
	if (r < 0) {
		ret->outcome = EXEC_SANDBOX_ERROR;
		ret->error = error_object("SandboxError", err->msg, "");
		ret->report.status = SBX_ERROR;
		return 0;
	}

	for (int i = 0; i < 3; i++)
		fcntl(s.stdio[i], F_SETFL, fcntl(s.stdio[i], F_GETFL) | O_NONBLOCK);
	struct buf out = {.limit = ctx->max_result_bytes}, logs = {.limit = ctx->max_log_bytes};
	size_t written = 0;
	bool out_eof = false, err_eof = false, exited = false, early = false, stopped = false;
	struct result_scan scan = {0};
	uint64_t deadline = s.start_ns + req->timeout_ms * 1000000ull;
	int io_error = 0;

	while (!(exited && out_eof && err_eof)) {
		struct pollfd pfd[4];
		int n = 0, i_in = -1, i_out = -1, i_err = -1;
		pfd[n++] = (struct pollfd){.fd = s.pidfd, .events = POLLIN};
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
			int rr = buf_read(&logs, s.stdio[2]);
			if (rr == -EPIPE || rr < 0)
				err_eof = true;
		}
		if (i_out >= 0 && pfd[i_out].revents) {
			int rr = buf_read(&out, s.stdio[1]);
			/* The wrapper's announcement that it waits, unless the pool
			 * has read it already, is not part of the result. */
			if (!ready && out.len > 0) {
				ready = true;
				if (out.data[0] == '\n')
					memmove(out.data, out.data + 1, --out.len);
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

	if (early) {
		while (!err_eof && buf_read(&logs, s.stdio[2]) == 0)
			;
		sbx_report_now(&s, &ret->report);
		exec_dispose(ctx, &s);
		r = 0;
	} else {
		r = sbx_reap(&s, &ret->report);
		sbx_destroy(&s);
	}
	if (logs.data) {
		logs.data[logs.len] = '\0';
		logs.len = sanitize_text(logs.data, logs.len);
	}
	ret->logs = logs.data ? logs.data : strdup("");
	ret->logs_len = logs.len;
	ret->logs_truncated = logs.overflow;

	if (r < 0 || io_error < 0) {
		free(out.data);
		ret->outcome = EXEC_SANDBOX_ERROR;
		ret->error = error_object("SandboxError", "lost track of the sandbox", "");
		return 0;
	}
	if (stopped && !early) {
		ret->outcome = EXEC_SANDBOX_ERROR;
		ret->error = error_object("SandboxError", "the platform stopped before the function finished", "");
		free(out.data);
		return 0;
	}
	switch (ret->report.status) {
	case SBX_TIMEOUT:
		ret->outcome = EXEC_TIMEOUT;
		ret->error = error_object("Timeout", "the function exceeded its timeout", "");
		break;
	case SBX_OOM:
		ret->outcome = EXEC_OOM;
		ret->error = error_object("OutOfMemory", "the function exceeded its memory limit", "");
		break;
	case SBX_ERROR:
		ret->outcome = EXEC_SANDBOX_ERROR;
		ret->error = error_object("SandboxError", ret->report.error, "");
		break;
	default:
		if (ret->report.status == SBX_SIGNALED && req->lang == EXEC_JS &&
		    (ret->report.signal == SIGABRT || ret->report.signal == SIGTRAP) && ret->logs &&
		    strstr(ret->logs, "heap out of memory")) {
			/* V8 hit the heap limit it was given. */
			ret->outcome = EXEC_OOM;
			ret->error = error_object("OutOfMemory", "the function exceeded its memory limit", "");
			break;
		}
		classify_output(&out, ret);
	}
	free(out.data);
	return 0;
}

const char *exec_outcome_code(enum exec_outcome o)
{
	switch (o) {
	case EXEC_SUCCESS:
		return "OK";
	case EXEC_FUNCTION_ERROR:
		return "FUNCTION_ERROR";
	case EXEC_TIMEOUT:
		return "FUNCTION_TIMEOUT";
	case EXEC_OOM:
		return "FUNCTION_OOM";
	case EXEC_BAD_RESULT:
		return "BAD_RESULT";
	case EXEC_SANDBOX_ERROR:
		return "SANDBOX_ERROR";
	}
	return "SANDBOX_ERROR";
}

unsigned exec_outcome_http_status(enum exec_outcome o)
{
	switch (o) {
	case EXEC_SUCCESS:
		return 200;
	case EXEC_FUNCTION_ERROR:
		return 500;
	case EXEC_TIMEOUT:
		return 504;
	case EXEC_OOM:
		return 507;
	case EXEC_BAD_RESULT:
		return 502;
	case EXEC_SANDBOX_ERROR:
		return 500;
	}
	return 500;
}
