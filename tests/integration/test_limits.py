"""The limits every function gets (README, "Limits"), the same in a cold
sandbox and in a warm (pooled) one, whose rlimits are narrowed when it is
assigned: one file at most 10 MB (RLIMIT_FSIZE), 50 processes (RLIMIT_NPROC
and the pids cgroup), CPU time = timeout + 2 s (RLIMIT_CPU; warm: on top of
the CPU the runtime used starting), memory 256 MB and timeout 10 s by
default. Over HTTP against real daemons (conftest.py).

$ZMESHD names the daemon; it needs root, as zmeshd does.
"""

import math
import re

import pytest

from conftest import start_daemon, stop_and_check

MB = 1 << 20

JS_LIMITS = r"""
const fs = require('fs');
exports.handler = async () => {
  const u = process.cpuUsage();
  return { limits: fs.readFileSync('/proc/self/limits', 'utf8'), used_us: u.user + u.system };
};
"""

PY_LIMITS = r"""
import resource
def handler(p, z):
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open('/proc/self/limits') as f:
        return {'limits': f.read(), 'used_us': int((ru.ru_utime + ru.ru_stime) * 1e6)}
"""

JS_FILES = r"""
const fs = require('fs');
exports.handler = async () => {
  const out = {};
  for (const mb of [9, 11]) {
    try {
      fs.writeFileSync('/tmp/f' + mb, Buffer.alloc(mb << 20, 120));
      out[mb] = fs.statSync('/tmp/f' + mb).size;
    } catch (e) {
      out[mb] = e.code;
    }
  }
  return out;
};
"""

PY_FILES = r"""
import errno, os
def handler(p, z):
    out = {}
    for mb in (9, 11):
        try:
            with open('/tmp/f%d' % mb, 'wb') as f:
                f.write(b'x' * (mb << 20))
            out[mb] = os.path.getsize('/tmp/f%d' % mb)
        except OSError as e:
            out[mb] = errno.errorcode[e.errno]
    return out
"""

JS_PROCS = r"""
const { spawn } = require('child_process');
exports.handler = async () => {
  const kids = [];
  let error = null;
  for (let i = 0; i < 80 && error === null; i++) {
    const kid = spawn('/bin/sleep', ['5'], { stdio: 'ignore' });
    const failed = await new Promise((resolve) => {
      kid.once('error', (e) => resolve(e.code || String(e)));
      kid.once('spawn', () => resolve(null));
    });
    if (failed) error = failed;
    else kids.push(kid);
  }
  for (const k of kids) k.kill('SIGKILL');
  return [kids.length, error];
};
"""

PY_PROCS = r"""
import subprocess
def handler(p, z):
    procs = []
    error = None
    try:
        for _ in range(80):
            procs.append(subprocess.Popen(['/bin/sleep', '5']))
    except OSError as e:
        error = e.__class__.__name__
    for x in procs:
        x.kill()
    return [len(procs), error]
"""


def limit(text, name):
    """(soft, hard) of one line of /proc/self/limits."""
    m = re.search(r"^%s\s+(\S+)\s+(\S+)" % re.escape(name), text, re.M)
    assert m, (name, text)
    return tuple(int(v) if v != "unlimited" else None for v in m.groups())


@pytest.fixture(scope="module")
def zpool():
    d = start_daemon("limits-pool", env={"ZMESH_POOL_SIZE": "1"})
    yield d
    stop_and_check(d)


def invoke(client, pid, fn, start, daemon=None, lang="javascript"):
    if daemon is not None:
        daemon.wait_metric('zmesh_pool_ready{runtime="%s"}' % lang, lambda v: v >= 1, timeout=60)
    r = client.invoke(pid, fn["id"], None)
    assert r.status == 200, str(r)
    assert r.json["start"] == start, str(r)
    return r.json["result"]


def check_limits(client, pid, lang, start, daemon=None):
    code = JS_LIMITS if lang == "javascript" else PY_LIMITS
    fn = client.deploy(pid, code, language=lang)
    assert fn["timeout_ms"] == 10000 and fn["memory_mb"] == 256, fn
    short = client.deploy(pid, code, language=lang, timeout_ms=2500)
    for f, seconds in ((fn, 10 + 2), (short, 3 + 2)):
        got = invoke(client, pid, f, start, daemon, lang)
        text = got["limits"]
        assert limit(text, "Max file size") == (10 * MB, 10 * MB), text
        assert limit(text, "Max processes") == (50, 50), text
        soft, hard = limit(text, "Max cpu time")
        assert soft == hard, text
        if start == "cold":
            assert soft == seconds, text
        else:
            # The CPU its runtime used before the assignment, rounded up,
            # stays counted: the function gets its seconds on top.
            used = math.ceil(got["used_us"] / 1e6)
            assert seconds <= soft <= seconds + used, (soft, seconds, used, text)


@pytest.mark.parametrize("lang", ["javascript", "python"])
def test_cold_sandboxes_get_the_limits(user, project, lang):
    check_limits(user, project["id"], lang, "cold")


@pytest.mark.parametrize("lang", ["javascript", "python"])
def test_warm_sandboxes_get_the_same_limits(zpool, lang):
    c = zpool.admin()
    check_limits(c, c.create_project()["id"], lang, "warm", zpool)


def check_files_and_processes(client, pid, lang, start, daemon=None):
    files = client.deploy(pid, JS_FILES if lang == "javascript" else PY_FILES, language=lang)
    assert invoke(client, pid, files, start, daemon, lang) == {"9": 9 * MB, "11": "EFBIG"}
    procs = client.deploy(pid, JS_PROCS if lang == "javascript" else PY_PROCS, language=lang)
    started, error = invoke(client, pid, procs, start, daemon, lang)
    # 50 tasks in all: the runtime's own threads and the sandbox's init
    # count too.
    assert error is not None and 20 <= started < 50, (started, error)


@pytest.mark.parametrize("lang", ["javascript", "python"])
def test_cold_file_size_and_process_limits(user, project, lang):
    check_files_and_processes(user, project["id"], lang, "cold")


@pytest.mark.parametrize("lang", ["javascript", "python"])
def test_warm_file_size_and_process_limits(zpool, lang):
    c = zpool.admin()
    check_files_and_processes(c, c.create_project()["id"], lang, "warm", zpool)
