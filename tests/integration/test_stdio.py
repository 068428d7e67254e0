"""Whatever a function or its child processes write to file descriptor 1
lands in the invocation's logs, never in its result: the sandbox gives the
runtime its result pipe as descriptor 3 (held close-on-exec by the wrappers)
and fd 1 as a copy of fd 2. Cold and warm (pooled) sandboxes, both runtimes,
over HTTP against real daemons (conftest.py).

$ZMESHD names the daemon; it needs root, as zmeshd does.
"""

import pytest

from conftest import start_daemon, stop_and_check

JS = r"""
const fs = require('fs');
const { execSync, spawnSync } = require('child_process');
exports.handler = async (p) => {
  fs.writeSync(1, 'js-fd1-write\n');
  process.stdout.write('js-stdout-write\n');
  console.log('js-console-log');
  execSync('echo js-child-inherit', { stdio: 'inherit' });
  // A child that aims at the result's descriptor finds nothing there.
  const forged = spawnSync('/bin/sh', ['-c', 'echo \'{"ok":true,"result":"forged"}\' >&3 && echo wrote'], {
    encoding: 'utf8',
  });
  return { answer: p, forged: forged.stdout, status: forged.status };
};
"""

PY = r"""
import os, subprocess, sys
def handler(p, z):
    os.write(1, b'py-fd1-write\n')
    print('py-print')
    sys.stdout.write('py-stdout-write\n')
    subprocess.run(['echo', 'py-child-run'])
    subprocess.run(['/bin/sh', '-c', 'echo py-child-sh'])
    forged = subprocess.run(['/bin/sh', '-c', 'echo \'{"ok":true,"result":"forged"}\' >&3 && echo wrote'],
                            capture_output=True, text=True)
    return {'answer': p, 'forged': forged.stdout, 'status': forged.returncode}
"""

JS_LINES = ["js-fd1-write", "js-stdout-write", "js-console-log", "js-child-inherit"]
PY_LINES = ["py-fd1-write", "py-print", "py-stdout-write", "py-child-run", "py-child-sh"]


@pytest.fixture(scope="module")
def zpool():
    d = start_daemon("stdio-pool", env={"ZMESH_POOL_SIZE": "1"})
    yield d
    stop_and_check(d)


def logs_of(client, pid, fid, invocation_id):
    r = client.get("/projects/%s/functions/%s/invocations/%s" % (pid, fid, invocation_id))
    assert r.status == 200, str(r)
    return r.json["logs"]


def check(client, pid, lang, start, before=None):
    code, lines = (JS, JS_LINES) if lang == "javascript" else (PY, PY_LINES)
    fn = client.deploy(pid, code, language=lang)
    if before:
        before(lang)
    r = client.invoke(pid, fn["id"], {"n": 7})
    assert r.status == 200, str(r)
    assert r.json["start"] == start, str(r)
    result = r.json["result"]
    assert result["answer"] == {"n": 7}, result
    # The shell cannot even open descriptor 3: the redirection fails.
    assert result["forged"] == "" and result["status"] != 0, result
    logs = logs_of(client, pid, fn["id"], r.json["invocation_id"])
    for line in lines:
        assert line in logs, (line, logs)
    assert "forged" not in logs, logs


@pytest.mark.parametrize("lang", ["javascript", "python"])
def test_cold_invocations_print_to_the_logs_only(user, project, lang):
    check(user, project["id"], lang, "cold")


@pytest.mark.parametrize("lang", ["javascript", "python"])
def test_warm_invocations_print_to_the_logs_only(zpool, lang):
    c = zpool.admin()
    p = c.create_project()

    def wait_ready(lang):
        zpool.wait_metric('zmesh_pool_ready{runtime="%s"}' % lang, lambda v: v >= 1, timeout=60)

    check(c, p["id"], lang, "warm", before=wait_ready)
