"""The shell examples of docs/EVENTS.md, run as written, in order and in
one shell, against a real daemon: the documentation stays copy-paste
runnable. Only the address is changed (the test's daemon listens on a free
port)."""

import os
import re
import subprocess

from conftest import start_daemon, stop_and_check

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs")


def test_events_examples_run():
    # The examples log in as the default first admin, on a daemon of their own.
    zd = start_daemon("docs", env={"ZMESH_ADMIN_EMAIL": "admin@zmesh.local"})
    try:
        run_events_examples(zd)
    except BaseException:
        zd.cleanup()
        raise
    stop_and_check(zd)


def run_events_examples(zd):
    with open(os.path.join(DOCS, "EVENTS.md")) as f:
        blocks = re.findall(r"```sh\n(.*?)```", f.read(), re.S)
    assert len(blocks) >= 6
    script = "set -eu\n" + "\n".join(blocks)
    assert "URL=http://127.0.0.1:8080\n" in script
    script = script.replace("URL=http://127.0.0.1:8080\n", "URL=http://127.0.0.1:%d\n" % zd.port)
    env = dict(os.environ, PASSWORD=zd.admin_password)
    r = subprocess.run(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                       timeout=300)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out[-4000:]
    # What the examples show happened: an async 202, a dead letter of two
    # attempts, a cron trigger, a webhook's secret and its accepted delivery.
    assert "HTTP/1.1 202 Accepted" in out and '"status":"queued"' in out
    assert '"attempts": 2' in out and '"FUNCTION_ERROR"' in out
    assert '"event_type": "cron"' in out and '"secret":' in out
    assert out.count("HTTP/1.1 202 Accepted") >= 2, out[-4000:]
    # A custom event that ran its trigger, and one whose conditions did not hold.
    assert '"event_type": "custom.order.paid"' in out and '"matched":1}' in out and '"matched":0}' in out, out[-4000:]
    # A database change that met its trigger's condition, and one that did not.
    assert '[{"order_id":1,"amount":250,"operation":"INSERT"}]' in out, out[-4000:]


def test_readme_cli_examples_run(tmp_path):
    """README's CLI section, as written, with the built client first on
    PATH; only the address and the interactive password prompt differ."""
    cli = os.environ.get("ZMESH_CLI")
    assert cli and os.access(cli, os.X_OK), "set ZMESH_CLI to the zmesh binary (ctest does)"
    with open(os.path.join(DOCS, "..", "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("## zmesh (CLI)"):readme.index("## zmesh-sandbox")]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) >= 2
    script = "set -eu\n" + "\n".join(blocks)
    login = "--email admin@zmesh.local      # asks for the password"
    assert login in script
    zd = start_daemon("readme", env={"ZMESH_ADMIN_EMAIL": "admin@zmesh.local"})
    try:
        script = script.replace(login, '--email admin@zmesh.local --password "$PASSWORD"')
        script = script.replace("http://127.0.0.1:8080", "http://127.0.0.1:%d" % zd.port)
        env = {"PATH": os.path.dirname(cli) + ":/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
               "ZMESH_CONFIG": str(tmp_path / "config.json"), "PASSWORD": zd.admin_password}
        r = subprocess.run(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                           cwd=str(tmp_path), timeout=300)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0, out[-4000:]
        assert '"hello": "world"' in out and "back to version 1: it is now version 3" in out, out[-4000:]
        assert "Created a webhook trigger" in out and "No dead letters" in out, out[-4000:]
        assert "Created a custom event trigger" in out and "matched 1 trigger." in out, out[-4000:]
        assert "Applied 001_notes.sql" in out and '"body": "first note"' in out and "(1 row)" in out, out[-4000:]
        assert "allowlist: api.stripe.com, *.example.com, 203.0.113.0/24" in out, out[-4000:]
        assert "Outbound network of this project: open" in out, out[-4000:]
    except BaseException:
        zd.cleanup()
        raise
    stop_and_check(zd)
