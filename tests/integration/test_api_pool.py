"""The warm pool over HTTP: a daemon with --pool-size serves invocations from
sandboxes started ahead, each sandbox serves exactly one invocation, and a
function's limits and privacy hold as they do without the pool."""

import pytest

from conftest import start_daemon, stop_and_check, unique

POOL_SIZE = 2


@pytest.fixture(scope="module")
def zp():
    d = start_daemon("pool", env={"ZMESH_POOL_SIZE": str(POOL_SIZE)})
    yield d
    stop_and_check(d)


@pytest.fixture(scope="module")
def pool_project(zp):
    c = zp.admin()
    return c, c.create_project()


def wait_ready(d, runtime):
    """Until a sandbox of runtime has loaded its wrapper and waits."""
    d.wait_metric('zmesh_pool_ready{runtime="%s"}' % runtime, lambda v: v >= 1, timeout=60)


def invoke_warm(d, c, pid, fid, runtime, payload=None, status=200):
    wait_ready(d, runtime)
    r = c.invoke(pid, fid, payload)
    assert r.status == status, str(r)
    assert r.json["start"] == "warm", str(r)
    return r.json


def test_invocations_are_served_warm_and_recorded_so(zp, pool_project):
    c, p = pool_project
    js = c.deploy(p["id"], "exports.handler = async (p) => ({echo: p});")
    py = c.deploy(p["id"], "def handler(p, z):\n    return {'echo': p}\n", language="python")
    before = zp.metrics()
    assert invoke_warm(zp, c, p["id"], js["id"], "javascript", [1, "a"])["result"] == {"echo": [1, "a"]}
    assert invoke_warm(zp, c, p["id"], py["id"], "python", {"b": 2})["result"] == {"echo": {"b": 2}}
    after = zp.metrics()
    key = 'zmesh_starts_total{start="warm"}'
    assert after[key] - before.get(key, 0) >= 2
    assert after["zmesh_pool_memory_bytes"] > 0
    for runtime in ("javascript", "python"):
        assert 1 <= after['zmesh_pool_target{runtime="%s"}' % runtime] <= POOL_SIZE
    records = c.get("/projects/%s/functions/%s/invocations" % (p["id"], py["id"])).json["invocations"]
    assert [x["start"] for x in records] == ["warm"], records


def test_nothing_of_one_invocation_reaches_the_next(zp, pool_project):
    c, p = pool_project
    # The first leaves a file, a variable, a process and a global behind...
    leave = c.deploy(p["id"], """
import os, subprocess
def handler(p, z):
    open('/tmp/left-behind', 'w').write('secret')
    open(os.path.join(os.environ['HOME'], 'home-file'), 'w').write('secret')
    os.environ['LEFT_BEHIND'] = 'secret'
    subprocess.Popen(['/bin/sleep', '60'])
    return z.env['OWN_SECRET']
""", language="python", env_vars={"OWN_SECRET": "only-mine"})
    look = c.deploy(p["id"], """
import os
def handler(p, z):
    return {
        'files': sorted(os.listdir('/tmp')) + sorted(os.listdir(os.environ['HOME'])),
        'env': sorted(k for k in os.environ if 'LEFT' in k or 'SECRET' in k),
        'zmesh_env': sorted(z.env),
        'pids': sorted(int(x) for x in os.listdir('/proc') if x.isdigit()),
    }
""", language="python")
    for _ in range(POOL_SIZE + 1):
        assert invoke_warm(zp, c, p["id"], leave["id"], "python")["result"] == "only-mine"
        # ...which the next, warm too, cannot see: every sandbox serves once.
        seen = invoke_warm(zp, c, p["id"], look["id"], "python")["result"]
        assert seen["files"] == [] and seen["env"] == [] and seen["zmesh_env"] == [], seen
        assert len(seen["pids"]) == 2, seen  # the sandbox's init and this runtime

    js_leave = c.deploy(p["id"], "globalThis.leftBehind = 'secret'; process.env.LEFT_BEHIND = 'x';\n"
                                 "exports.handler = async () => require('fs').writeFileSync('/tmp/left', 'x');")
    js_look = c.deploy(p["id"], "exports.handler = async () => [typeof globalThis.leftBehind, "
                                "process.env.LEFT_BEHIND || null, require('fs').readdirSync('/tmp').length];")
    invoke_warm(zp, c, p["id"], js_leave["id"], "javascript")
    assert invoke_warm(zp, c, p["id"], js_look["id"], "javascript")["result"] == ["undefined", None, 0]


def test_function_limits_hold_in_pooled_sandboxes(zp, pool_project):
    c, p = pool_project
    # The pool's sandboxes wait with the largest limits; each invocation gets
    # its function's.
    mem = c.deploy(p["id"], "def handler(p, z):\n    b = bytearray(200 << 20)\n    return len(b)\n",
                   language="python", memory_mb=64)
    body = invoke_warm(zp, c, p["id"], mem["id"], "python", status=507)
    assert body["error"]["code"] == "FUNCTION_OOM", body

    slow = c.deploy(p["id"], "exports.handler = async () => { for (;;) {} };", timeout_ms=500)
    body = invoke_warm(zp, c, p["id"], slow["id"], "javascript", status=504)
    assert body["error"]["code"] == "FUNCTION_TIMEOUT", body
    assert 450 <= body["duration_ms"] < 3000, body  # counted from the assignment, not the spawn

    forks = c.deploy(p["id"], """
import subprocess
def handler(p, z):
    procs = []
    try:
        for _ in range(200):
            procs.append(subprocess.Popen(['/bin/sleep', '5']))
    except OSError as e:
        return [len(procs), e.__class__.__name__]
    return [len(procs), None]
""", language="python")
    started, error = invoke_warm(zp, c, p["id"], forks["id"], "python")["result"]
    assert error is not None and started < 64, (started, error)

    disk = c.deploy(p["id"], """
def handler(p, z):
    chunk = b'x' * (1 << 20)
    written = 0
    try:
        with open('/tmp/big', 'wb') as f:
            for _ in range(200):
                f.write(chunk)
                f.flush()
                written += 1
    except OSError as e:
        return [written, e.errno]
    return [written, None]
""", language="python")
    written, errno = invoke_warm(zp, c, p["id"], disk["id"], "python")["result"]
    assert errno is not None and written <= 64, (written, errno)

    # One core at most: two processes spinning for a second use no more
    # than about a second of CPU, where two cores would give two.
    spin = c.deploy(p["id"], """
import multiprocessing, time
def spin(until):
    while time.monotonic() < until:
        pass
def handler(p, z):
    until = time.monotonic() + 1.0
    ps = [multiprocessing.Process(target=spin, args=(until,)) for _ in range(2)]
    for x in ps:
        x.start()
    for x in ps:
        x.join()
    return 'spun'
""", language="python", name=unique("spin"))
    body = invoke_warm(zp, c, p["id"], spin["id"], "python")
    assert body["result"] == "spun", body
    assert body["metrics"]["cpu_ms"] <= 1.3 * body["metrics"]["wall_ms"], body["metrics"]


def test_functions_that_use_the_database_get_the_driver_loaded(zp, pool_project):
    c, p = pool_project
    js = c.deploy(p["id"], "exports.handler = async (p, zmesh) => {\n"
                           "  const loaded = Object.keys(require.cache).some((k) => k.includes('/node_modules/pg/'));\n"
                           "  const row = await zmesh.db.queryOne('select $1::int + 1 as n', [p]);\n"
                           "  return [loaded, row.n];\n};")
    py = c.deploy(p["id"], "import sys\n"
                           "def handler(p, zmesh):\n"
                           "    loaded = 'psycopg2' in sys.modules\n"
                           "    return [loaded, zmesh.db.query_one('select %s::int + 1 as n', [p])['n']]\n",
                  language="python")
    for runtime, f in (("javascript", js), ("python", py)):
        loaded, n = invoke_warm(zp, c, p["id"], f["id"], runtime, 1)["result"]
        assert n == 2
        # Now that such a function is invoked, the pool keeps some sandboxes
        # of the runtime with the driver loaded, and hands them to it.
        zp.wait_metric('zmesh_pool_ready_with_db{runtime="%s"}' % runtime, lambda v: v >= 1, timeout=60)
        assert invoke_warm(zp, c, p["id"], f["id"], runtime, 41)["result"] == [True, 42]
