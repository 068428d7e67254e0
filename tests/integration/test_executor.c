/* Tests of the executor: real invocations of both runtimes in real sandboxes,
 * one per outcome, and the bounds on what comes back. Needs root. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errors.h"
#include "executor.h"

static struct sbx_ctx sbx;
static struct exec_ctx ex;      /* cold only, spawns in this process */
static struct exec_ctx ex_pool; /* through the spawner, with a warm pool */
static struct sbx_spawner spawner;
static struct sbx_spawner_config spawner_cfg;

static int setup(void **state)
{
	struct zerr err = {0};
	/* The spawner is forked while this process has one thread. */
	if (sbx_ctx_init(&sbx, NULL, &err) < 0 ||
	    exec_spawner_config(ZMESH_POLICY_DIR, ZMESH_SOURCE_DIR, NULL, NULL, 1024, 60000, &spawner_cfg, &err) < 0 ||
	    sbx_spawner_start(&sbx, &spawner_cfg, &spawner, &err) < 0 ||
	    exec_ctx_init(&ex, &sbx, NULL, ZMESH_POLICY_DIR, ZMESH_SOURCE_DIR, NULL, &err) < 0 ||
	    exec_ctx_init(&ex_pool, &sbx, &spawner, ZMESH_POLICY_DIR, ZMESH_SOURCE_DIR, NULL, &err) < 0) {
		fprintf(stderr, "setup: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	exec_ctx_done(&ex);
	exec_ctx_done(&ex_pool);
	sbx_spawner_stop(&spawner);
	sbx_spawner_config_done(&spawner_cfg);
	return 0;
}

static void run_in(struct exec_ctx *ctx, enum exec_lang lang, const char *code, json_t *payload, uint64_t timeout_ms,
                   uint64_t memory_mb, struct exec_result *r)
{
	struct exec_request req = {.lang = lang,
	                           .invocation_id = "inv",
	                           .project_id = "proj",
	                           .function_name = "f",
	                           .version = 3,
	                           .code = code,
	                           .wants_db = exec_code_wants_db(code),
	                           .payload = payload,
	                           .timeout_ms = timeout_ms,
	                           .memory_mb = memory_mb};
	struct zerr err = {0};
	json_t *env = json_pack("{s:s}", "GREETING", "hello");
	req.env = env;
	assert_int_equal(exec_run(ctx, &req, r, &err), 0);
	json_decref(env);
	json_decref(payload);
}

static void run(enum exec_lang lang, const char *code, json_t *payload, uint64_t timeout_ms, uint64_t memory_mb,
                struct exec_result *r)
{
	run_in(&ex, lang, code, payload, timeout_ms, memory_mb, r);
}

/* Wait until the pool holds a sandbox of each runtime. */
static void pool_ready(void)
{
	for (int i = 0; i < 200; i++) {
		struct exec_pool_stats st;
		exec_pool_get_stats(&ex_pool, &st);
		if (st.ready_js >= 1 && st.ready_py >= 1)
			return;
		usleep(50 * 1000);
	}
	fail_msg("the pool did not fill within 10 s");
}

static void test_pool_serves_warm_and_each_sandbox_once(void **state)
{
	struct zerr err = {0};
	assert_int_equal(exec_pool_start(&ex_pool, 3, 512, 30000, &err), 0);
	pool_ready();
	struct exec_result r;
	/* The first invocation leaves a file and a process behind... */
	run_in(&ex_pool, EXEC_PY,
	       "import os, subprocess\ndef handler(p, z):\n    open('/tmp/left-behind', 'w').write('secret')\n"
	       "    subprocess.Popen(['/bin/sleep', '60'])\n    return os.getpid()\n",
	       NULL, 10000, 256, &r);
	assert_int_equal(r.outcome, EXEC_SUCCESS);
	assert_true(r.warm);
	exec_result_done(&r);
	pool_ready();
	/* ...which the next one, warm too, cannot see: a sandbox serves once. */
	run_in(&ex_pool, EXEC_PY,
	       "import os\ndef handler(p, z):\n    return {'file': os.path.exists('/tmp/left-behind'), "
	       "'pids': sorted(int(x) for x in os.listdir('/proc') if x.isdigit())}\n",
	       NULL, 10000, 256, &r);
	assert_int_equal(r.outcome, EXEC_SUCCESS);
	assert_true(r.warm);
	assert_false(json_is_true(json_object_get(r.result, "file")));
	assert_int_equal(json_array_size(json_object_get(r.result, "pids")), 2); /* init and the runtime */
	exec_result_done(&r);

	struct exec_pool_stats st;
	exec_pool_get_stats(&ex_pool, &st);
	assert_true(st.warm >= 2);
	assert_true(st.memory_bytes > 0);
	/* Two Python invocations in this window: the pool aims at one each. */
	assert_int_equal(st.target_py, 1);
	assert_int_equal(st.target_js, 1);
}

static void test_pool_grows_when_caught_short(void **state)
{
	/* Two invocations back to back: the second finds the refill of the
	 * first still starting. The pool keeps one more from then on. */
	pool_ready();
	struct exec_pool_stats st;
	exec_pool_get_stats(&ex_pool, &st);
	assert_int_equal(st.target_js, 1);
	struct exec_result r;
	for (int i = 0; i < 2; i++) {
		run_in(&ex_pool, EXEC_JS, "exports.handler = async () => 1;", NULL, 10000, 256, &r);
		assert_int_equal(r.outcome, EXEC_SUCCESS);
		exec_result_done(&r);
	}
	exec_pool_get_stats(&ex_pool, &st);
	assert_int_equal(st.target_js, 2);
}

static void test_pool_grows_with_demand_within_its_maximum(void **state)
{
	pool_ready();
	struct exec_result r;
	for (int i = 0; i < 12; i++) {
		run_in(&ex_pool, EXEC_JS, "exports.handler = async () => 1;", NULL, 10000, 256, &r);
		assert_int_equal(r.outcome, EXEC_SUCCESS);
		exec_result_done(&r);
	}
	struct exec_pool_stats st;
	exec_pool_get_stats(&ex_pool, &st);
	/* 12 asked for in this window: 12 / 4 + 1 = 4, capped at the size, 3. */
	assert_int_equal(st.target_js, 3);
	for (int i = 0; i < 200 && st.ready_js < 3; i++) {
		usleep(50 * 1000);
		exec_pool_get_stats(&ex_pool, &st);
	}
	assert_int_equal(st.ready_js, 3);
	/* Ready means the wrapper said it waits: none is still starting. */
	assert_int_equal(st.starting_js, 0);
	assert_int_equal(st.target_py, 1);
}

/* Until the pool holds a sandbox of lang with the database driver loaded. */
static void pool_ready_with_db(enum exec_lang lang)
{
	for (int i = 0; i < 200; i++) {
		struct exec_pool_stats st;
		exec_pool_get_stats(&ex_pool, &st);
		if ((lang == EXEC_JS ? st.ready_db_js : st.ready_db_py) >= 1)
			return;
		usleep(50 * 1000);
	}
	fail_msg("no sandbox with the driver loaded within 10 s");
}

static void test_pool_loads_the_driver_for_functions_that_use_the_database(void **state)
{
	/* The code uses zmesh.db (not called here: there is no database): once
	 * such a function is invoked, the pool keeps sandboxes with the driver
	 * loaded, and hands them to such functions. */
	const char *js = "exports.handler = async (p, zmesh) => { if (p) await zmesh.db.query('select 1'); "
	                 "return Object.keys(require.cache).some((k) => k.includes('/node_modules/pg/')); };";
	const char *py = "import sys\ndef handler(p, zmesh):\n    if p:\n        zmesh.db.query('select 1')\n"
	                 "    return 'psycopg2' in sys.modules\n";
	const char *plain_js = "exports.handler = async () => Object.keys(require.cache).length;";
	struct exec_result r;
	for (enum exec_lang lang = EXEC_JS; lang <= EXEC_PY; lang++) {
		pool_ready();
		run_in(&ex_pool, lang, lang == EXEC_JS ? js : py, NULL, 10000, 256, &r);
		assert_int_equal(r.outcome, EXEC_SUCCESS);
		assert_true(r.warm);
		assert_true(json_is_false(r.result)); /* none of that kind asked for yet */
		exec_result_done(&r);
		pool_ready_with_db(lang);
		run_in(&ex_pool, lang, lang == EXEC_JS ? js : py, NULL, 10000, 256, &r);
		assert_int_equal(r.outcome, EXEC_SUCCESS);
		assert_true(r.warm);
		assert_true(json_is_true(r.result));
		exec_result_done(&r);
	}
	/* A function that does not use the database gets a plain one. */
	pool_ready();
	pool_ready_with_db(EXEC_JS);
	run_in(&ex_pool, EXEC_JS, plain_js, NULL, 10000, 256, &r);
	assert_int_equal(r.outcome, EXEC_SUCCESS);
	assert_true(r.warm);
	assert_true(json_integer_value(r.result) < 5);
	exec_result_done(&r);
}

/* SIGKILL every process running as a sandbox uid: the pool's, as no
 * invocation runs now. Returns how many. */
static int kill_sandbox_processes(void)
{
	int n = 0;
	DIR *d = opendir("/proc");
	assert_non_null(d);
	for (struct dirent *e; (e = readdir(d));) {
		char path[300], line[256];
		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/status", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		unsigned uid = 0;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "Uid: %u", &uid) == 1)
				break;
		fclose(f);
		if (uid >= 200000 && uid < 200000 + 65536 && kill(atoi(e->d_name), SIGKILL) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static void test_pool_never_hands_out_a_dead_or_aged_sandbox(void **state)
{
	struct exec_result r;
	struct exec_pool_stats before, after;
	/* Dead: the pooled runtimes are killed behind the pool's back. */
	pool_ready();
	exec_pool_get_stats(&ex_pool, &before);
	assert_true(kill_sandbox_processes() >= 2);
	usleep(100 * 1000);
	run_in(&ex_pool, EXEC_PY, "def handler(p, z):\n    return 'alive'\n", NULL, 10000, 256, &r);
	assert_int_equal(r.outcome, EXEC_SUCCESS);
	assert_string_equal(json_string_value(r.result), "alive");
	exec_result_done(&r);
	exec_pool_get_stats(&ex_pool, &after);
	assert_true(after.discarded > before.discarded);

	/* Aged: with a maximum age of 10 ms the pool replaces its sandboxes over
	 * and over, and an invocation gets one younger than that or none. */
	exec_pool_set_max_age(&ex_pool, 10);
	exec_pool_get_stats(&ex_pool, &before);
	for (int i = 0; i < 3; i++) {
		usleep(200 * 1000);
		run_in(&ex_pool, EXEC_JS, "exports.handler = async () => 'fresh';", NULL, 10000, 256, &r);
		assert_int_equal(r.outcome, EXEC_SUCCESS);
		assert_string_equal(json_string_value(r.result), "fresh");
		exec_result_done(&r);
	}
	exec_pool_get_stats(&ex_pool, &after);
	assert_true(after.discarded >= before.discarded + 4);
	exec_pool_set_max_age(&ex_pool, 300000);
}

static void test_pool_limits_are_the_functions(void **state)
{
	pool_ready();
	struct exec_result r;
	/* Waiting with 512 MB, assigned 64 MB: the function's limit holds. */
	run_in(&ex_pool, EXEC_PY, "def handler(p, z):\n    b = bytearray(200 << 20)\n    return len(b)\n", NULL, 10000,
	       64, &r);
	assert_true(r.warm);
	assert_int_equal(r.outcome, EXEC_OOM);
	exec_result_done(&r);
	pool_ready();
	/* A pooled Node runtime has no heap limit of V8's: the cgroup's, the
	 * function's, ends an overrun all the same. */
	run_in(&ex_pool, EXEC_JS,
	       "exports.handler = async () => { const a = []; for (;;) a.push(new Array(1e6).fill(1)); };", NULL, 20000,
	       96, &r);
	assert_true(r.warm);
	assert_int_equal(r.outcome, EXEC_OOM);
	exec_result_done(&r);
	pool_ready();
	/* The timeout counts from the assignment, not from the spawn. */
	run_in(&ex_pool, EXEC_JS, "exports.handler = async () => { for (;;) {} };", NULL, 600, 256, &r);
	assert_true(r.warm);
	assert_int_equal(r.outcome, EXEC_TIMEOUT);
	assert_in_range(r.report.wall_us, 550000, 3000000);
	exec_result_done(&r);
	exec_pool_stop(&ex_pool);
}

static void test_js_success(void **state)
{
	struct exec_result r;
	run(EXEC_JS,
	    "exports.handler = async (p, zmesh) => { console.log('to the logs'); "
	    "return { sum: p.a + p.b, greeting: zmesh.env.GREETING, fn: zmesh.function }; };",
	    json_pack("{s:i, s:i}", "a", 2, "b", 3), 10000, 256, &r);
	assert_int_equal(r.outcome, EXEC_SUCCESS);
	assert_int_equal(json_integer_value(json_object_get(r.result, "sum")), 5);
	assert_string_equal(json_string_value(json_object_get(r.result, "greeting")), "hello");
	assert_non_null(strstr(r.logs, "to the logs"));
	assert_int_equal(r.report.status, SBX_EXITED);
	assert_true(r.report.wall_us > 0);
	exec_result_done(&r);
}

static void test_py_success(void **state)
{
	struct exec_result r;
	run(EXEC_PY,
	    "def handler(p, zmesh):\n    print('to the logs')\n    return {'n': p['n'] * 2, 'g': zmesh.env.GREETING}\n",
	    json_pack("{s:i}", "n", 21), 10000, 256, &r);
	assert_int_equal(r.outcome, EXEC_SUCCESS);
	assert_int_equal(json_integer_value(json_object_get(r.result, "n")), 42);
	assert_string_equal(json_string_value(json_object_get(r.result, "g")), "hello");
	assert_non_null(strstr(r.logs, "to the logs"));
	exec_result_done(&r);
}

static void test_function_error(void **state)
{
	struct exec_result r;
	run(EXEC_JS, "exports.handler = async () => { throw new TypeError('no such thing'); };", NULL, 10000, 256, &r);
	assert_int_equal(r.outcome, EXEC_FUNCTION_ERROR);
	assert_int_equal(errors_outcome_status(r.outcome), 500);
	assert_string_equal(json_string_value(json_object_get(r.error, "name")), "TypeError");
	assert_string_equal(json_string_value(json_object_get(r.error, "message")), "no such thing");
	exec_result_done(&r);
}

static void test_timeout(void **state)
{
	struct exec_result r;
	run(EXEC_PY, "def handler(p, z):\n    while True:\n        pass\n", NULL, 700, 256, &r);
	assert_int_equal(r.outcome, EXEC_TIMEOUT);
	assert_int_equal(errors_outcome_status(r.outcome), 504);
	assert_true(r.report.timed_out);
	assert_in_range(r.report.wall_us, 650000, 5000000);
	exec_result_done(&r);
}

static void test_oom_python(void **state)
{
	struct exec_result r;
	run(EXEC_PY, "def handler(p, z):\n    b = bytearray(400 << 20)\n    return len(b)\n", NULL, 10000, 64, &r);
	assert_int_equal(r.outcome, EXEC_OOM);
	assert_int_equal(errors_outcome_status(r.outcome), 507);
	exec_result_done(&r);
}

static void test_oom_js_heap(void **state)
{
	struct exec_result r;
	run(EXEC_JS, "exports.handler = async () => { const a = []; for (;;) a.push(new Array(1e6).fill(1)); };", NULL,
	    20000, 128, &r);
	assert_int_equal(r.outcome, EXEC_OOM);
	exec_result_done(&r);
}

static void test_no_result_is_bad_result(void **state)
{
	struct exec_result r;
	run(EXEC_PY, "import os\ndef handler(p, z):\n    os._exit(0)\n", NULL, 10000, 256, &r);
	assert_int_equal(r.outcome, EXEC_BAD_RESULT);
	assert_int_equal(errors_outcome_status(r.outcome), 502);
	exec_result_done(&r);
}

static void test_result_over_limit_is_bad_result(void **state)
{
	size_t saved = ex.max_result_bytes;
	ex.max_result_bytes = 1000;
	struct exec_result r;
	run(EXEC_JS, "exports.handler = async () => 'x'.repeat(100000);", NULL, 10000, 256, &r);
	ex.max_result_bytes = saved;
	assert_int_equal(r.outcome, EXEC_BAD_RESULT);
	assert_non_null(strstr(json_string_value(json_object_get(r.error, "message")), "larger"));
	exec_result_done(&r);
}

static void test_logs_are_bounded_and_marked(void **state)
{
	size_t saved = ex.max_log_bytes;
	ex.max_log_bytes = 100;
	struct exec_result r;
	run(EXEC_PY, "def handler(p, z):\n    print('y' * 100000)\n    return 1\n", NULL, 10000, 256, &r);
	ex.max_log_bytes = saved;
	assert_int_equal(r.outcome, EXEC_SUCCESS);
	assert_true(r.logs_truncated);
	assert_int_equal(r.logs_len, 100);
	assert_int_equal(strlen(r.logs), 100);
	exec_result_done(&r);
}

static void test_logs_are_made_valid_text(void **state)
{
	struct exec_result r;
	run(EXEC_PY,
	    "import sys\ndef handler(p, z):\n    sys.stderr.buffer.write(b'a\\xff\\x00b\\xc3')\n"
	    "    sys.stderr.flush()\n    return 1\n",
	    NULL, 10000, 256, &r);
	assert_int_equal(r.outcome, EXEC_SUCCESS);
	/* Invalid bytes and NULs become '?'; a character cut at the end goes. */
	assert_non_null(strstr(r.logs, "a??b"));
	assert_int_equal(strlen(r.logs), r.logs_len);
	json_t *j = json_string(r.logs);
	assert_non_null(j); /* valid UTF-8 */
	json_decref(j);
	exec_result_done(&r);
}

static void test_large_payload_round_trip(void **state)
{
	/* Larger than any pipe buffer both ways: stdin is written while stdout
	 * is read, or the two would wait for each other. */
	char *big = malloc(3 << 20);
	memset(big, 'z', (3 << 20) - 1);
	big[(3 << 20) - 1] = '\0';
	struct exec_result r;
	run(EXEC_JS, "exports.handler = async (p) => p.s.length;", json_pack("{s:s}", "s", big), 10000, 256, &r);
	free(big);
	assert_int_equal(r.outcome, EXEC_SUCCESS);
	assert_int_equal(json_integer_value(r.result), (3 << 20) - 1);
	exec_result_done(&r);
}

static void test_bad_requests_are_refused(void **state)
{
	struct exec_request req = {.lang = EXEC_JS, .code = "x", .timeout_ms = 1000, .memory_mb = 128};
	struct exec_result r;
	struct zerr err = {0};
	req.entry_point = "bad name";
	assert_int_equal(exec_run(&ex, &req, &r, &err), -EINVAL);
	req.entry_point = NULL;
	req.timeout_ms = 0;
	assert_int_equal(exec_run(&ex, &req, &r, &err), -EINVAL);
	req.timeout_ms = 1000;
	req.memory_mb = 1;
	assert_int_equal(exec_run(&ex, &req, &r, &err), -EINVAL);
	req.memory_mb = 128;
	req.lang = 9;
	assert_int_equal(exec_run(&ex, &req, &r, &err), -EINVAL);
}

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "test_executor needs root: it runs real sandboxes\n");
		return 1;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_js_success),
	    cmocka_unit_test(test_py_success),
	    cmocka_unit_test(test_function_error),
	    cmocka_unit_test(test_timeout),
	    cmocka_unit_test(test_oom_python),
	    cmocka_unit_test(test_oom_js_heap),
	    cmocka_unit_test(test_no_result_is_bad_result),
	    cmocka_unit_test(test_result_over_limit_is_bad_result),
	    cmocka_unit_test(test_logs_are_bounded_and_marked),
	    cmocka_unit_test(test_logs_are_made_valid_text),
	    cmocka_unit_test(test_large_payload_round_trip),
	    cmocka_unit_test(test_bad_requests_are_refused),
	    cmocka_unit_test(test_pool_serves_warm_and_each_sandbox_once),
	    cmocka_unit_test(test_pool_grows_when_caught_short),
	    cmocka_unit_test(test_pool_grows_with_demand_within_its_maximum),
	    cmocka_unit_test(test_pool_loads_the_driver_for_functions_that_use_the_database),
	    cmocka_unit_test(test_pool_never_hands_out_a_dead_or_aged_sandbox),
	    cmocka_unit_test(test_pool_limits_are_the_functions),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
