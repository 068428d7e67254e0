"""zmeshd's life: --help, the first admin's generated password, a SIGTERM
with an invocation in flight, a restart on the same state directory, and a
daemon on an existing cluster (DATABASE_URL) instead of the embedded one."""

import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import time

from conftest import (ADMIN_EMAIL, Daemon, assert_error, http_request, make_jwt, require_daemon_binary,
                      stop_and_check)
from test_api_invoke import CONNECT_PY, MULTI_JS, PEEK_JS, Background, check_no_secrets

ADMIN_LINE = re.compile(r"zmeshd: created the first admin: (\S+) with password (\S+) \(it is not shown again\)")


def test_help():
    r = subprocess.run([require_daemon_binary(), "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    assert r.returncode == 0, str(r)
    text = r.stdout.decode()
    for opt in ("--listen", "--state-dir", "--concurrency", "--queue-wait", "--max-body"):
        assert opt in text, text


def refuses_connections(port, within=1.5):
    """True once a new connection or request fails; False if the daemon kept
    answering for the whole window."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            r = http_request(port, "GET", "/healthz", timeout=0.5)
        except (OSError, socket.timeout, ConnectionError):
            return True
        if r.status != 200:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_lets_the_invocation_in_flight_finish():
    d = Daemon("life", admin_password=None)
    try:
        d.start()
        found = [m for m in map(ADMIN_LINE.search, d.stdout_lines) if m]
        assert len(found) == 1, d.stdout_lines
        assert found[0].group(1) == ADMIN_EMAIL
        d.admin_password = found[0].group(2)
        assert len(d.admin_password) >= 12
        c = d.admin()
        assert d.admin_password not in d.log_text(), "the generated password leaked into the log"
        key_path = os.path.join(d.state_dir, "jwt.key")
        assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
        assert len(d.jwt_key()) >= 32

        p = c.create_project()
        f = c.deploy(p["id"], MULTI_JS)
        bg = Background(lambda: c.invoke(p["id"], f["id"], {"mode": "sleep", "ms": 2500}, timeout=60))
        d.wait_metric("zmesh_active_sandboxes", lambda v: v == 1)
        d.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        refused = refuses_connections(d.port)
        r = bg.result()
        assert r.status == 200 and r.json["result"] == "slept 2500", str(r)
        assert refused, "zmeshd kept accepting requests after SIGTERM"
        iid = r.json["invocation_id"]
        rc = d.proc.wait(60)
        assert rc == 0, d.log_tail()
        assert time.monotonic() - t0 < 30
        assert not d.leftovers(), d.leftovers()

        # The same state directory again: no second admin, the same key, the record kept.
        d.start()
        assert not any(ADMIN_LINE.search(x) for x in d.stdout_lines), d.stdout_lines
        r = c.get("/projects/" + p["id"])
        assert r.status == 200, "a token from before the restart was refused: %r" % (r,)
        c2 = d.admin()
        r = c2.get("/projects/%s/functions/%s/invocations/%s" % (p["id"], f["id"], iid))
        assert r.status == 200, str(r)
        assert r.json["status"] == "success" and r.json["id"] == iid
        assert d.sql("SELECT count(*) FROM invocations WHERE function_id = '%s'" % f["id"]) == [["1"]]
        r = c2.invoke(p["id"], f["id"], {"after": "restart"})
        assert r.status == 200 and r.json["result"] == {"echo": {"after": "restart"}}, str(r)
    except BaseException:
        d.cleanup()
        raise
    stop_and_check(d)


def test_existing_cluster_by_database_url(pgtmp):
    sock = pgtmp
    r = subprocess.run(["/usr/bin/psql", "-X", "-q", "-h", sock, "-U", "postgres", "-d", "postgres", "-c",
                        "CREATE DATABASE zmeshcp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, r.stderr
    jwt_secret = secrets.token_hex(24)
    url = "postgresql:///zmeshcp?host=%s&user=postgres" % sock
    d = Daemon("dburl", env={"DATABASE_URL": url, "ZMESH_PG_SOCKET_DIR": sock, "JWT_SECRET_KEY": jwt_secret})
    d.pg_sock = sock
    try:
        d.start()
        assert not os.path.exists(os.path.join(d.state_dir, "pg", "data")), "an embedded cluster was made anyway"
        assert not os.path.exists(os.path.join(d.state_dir, "jwt.key")), "JWT_SECRET_KEY was given"
        c = d.admin()
        now = int(time.time())
        token = make_jwt(jwt_secret.encode(), {"sub": c.user_id, "iat": now, "exp": now + 300})
        assert c.request("GET", "/projects", headers={"Authorization": "Bearer " + token}).status == 200
        wrong = make_jwt(b"x" * 48, {"sub": c.user_id, "iat": now, "exp": now + 300})
        assert_error(c.request("GET", "/projects", headers={"Authorization": "Bearer " + wrong}), 401,
                     "INVALID_TOKEN")

        p = c.create_project()
        assert d.sql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % p["database"], db="postgres") == [["1"]]
        assert d.sql("SELECT count(*) FROM projects WHERE id = '%s'" % p["id"], db="zmeshcp") == [["1"]]

        f = c.deploy(p["id"], PEEK_JS)
        r = c.invoke(p["id"], f["id"], {"state": d.state_dir})
        assert r.status == 200, str(r)
        check_no_secrets(r.json["result"], d.state_dir, [jwt_secret, url, d.admin_password])

        role, pw = d.sql("SELECT db_role, db_password FROM projects WHERE id = '%s'" % p["id"], db="zmeshcp")[0]
        g = c.deploy(p["id"], CONNECT_PY, language="python")
        r = c.invoke(p["id"], g["id"], {"targets": {
            "own": {"user": role, "password": pw, "db": p["database"]},
            "control_plane": {"user": role, "password": pw, "db": "zmeshcp"},
            "superuser": {"user": "postgres", "db": "zmeshcp"}}})
        assert r.status == 200, str(r)
        out = r.json["result"]
        assert out["own"] == {"ok": p["database"]}, str(out)
        assert "error" in out["control_plane"] and "error" in out["superuser"], str(out)
    except BaseException:
        d.cleanup()
        raise
    stop_and_check(d)


def test_embedded_cluster_is_supervised():
    """A postmaster that dies is started again; the daemon keeps serving."""
    d = Daemon("superv")
    try:
        d.start()
        c = d.admin()
        p = c.create_project()
        with open(os.path.join(d.state_dir, "pg", "data", "postmaster.pid")) as f:
            postmaster = int(f.readline())
        os.kill(postmaster, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if http_request(d.port, "GET", "/healthz", timeout=2).status == 200 and \
                        "embedded_postgresql_restarted" in d.log_text():
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert "embedded_postgresql_died" in d.log_text(), d.log_tail()
        assert "embedded_postgresql_restarted" in d.log_text(), d.log_tail()
        # The data is there, and a new login and query work on the new postmaster.
        c = d.admin()
        assert [x["id"] for x in c.get("/projects").json["projects"]] == [p["id"]]
    finally:
        stop_and_check(d)


def test_sigterm_ends_what_outlives_the_grace_period():
    """A function still running when the grace period ends is ended: the
    daemon stops in bounded time, and the invocation still has its record."""
    d = Daemon("grace", env={"ZMESH_SHUTDOWN_GRACE_MS": "500"})
    try:
        d.start()
        c = d.admin()
        p = c.create_project()
        f = c.deploy(p["id"], MULTI_JS)
        bg = Background(lambda: c.invoke(p["id"], f["id"], {"mode": "sleep", "ms": 25000}, timeout=60))
        d.wait_metric("zmesh_active_sandboxes", lambda v: v == 1)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(60)
        stopped_in = time.monotonic() - t0
        assert rc == 0, d.log_tail()
        assert stopped_in < 10, "zmeshd took %.1f s to stop with a 0.5 s grace period" % stopped_in
        try:
            r = bg.result()
            assert r.status == 500 and r.json["error"]["code"] == "SANDBOX_ERROR", str(r)
        except (OSError, ConnectionError):
            pass  # the answer may be cut off with the connection: the record below still tells
        assert not d.leftovers(), d.leftovers()
        d.start()
        assert d.sql("SELECT status, error->>'code' FROM invocations WHERE function_id = '%s'" % f["id"]) == \
            [["error", "SANDBOX_ERROR"]]
    except BaseException:
        d.cleanup()
        raise
    stop_and_check(d)
