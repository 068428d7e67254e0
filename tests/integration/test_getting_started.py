"""What a newcomer goes through, against real daemons: the first steps
zmeshd prints (for the port it really bound, runnable as printed, failing
readably), scripts/run installing the CLI, the CLI choosing a project for
them, and passwords: the rule, POST /auth/password (which ends older
sessions), `zmesh passwd`, `zmeshd admin set-password` run beside a running
daemon, and the warning for a ZMESH_ADMIN_PASSWORD that a later start
ignores.

$ZMESHD names the daemon; $ZMESH_CLI the client (else the build tree's
cli/zmesh next to the daemon's supervisor/). Needs root, as zmeshd does.
"""

import fcntl
import json
import os
import pty
import re
import secrets
import select
import shutil
import socket
import subprocess
import tempfile
import termios
import time

import pytest

from conftest import (Daemon, assert_error, http_request, require_daemon_binary, short_tempdir, start_daemon,
                      stop_and_check, unique)

TOP = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
RULE = "at least 12 characters"


def cli_binary():
    cli = os.environ.get("ZMESH_CLI")
    if not cli:
        zmeshd = require_daemon_binary()
        cli = os.path.join(os.path.dirname(os.path.dirname(zmeshd)), "cli", "zmesh")
    if not os.access(cli, os.X_OK):
        pytest.fail("set ZMESH_CLI to the zmesh binary (ctest does)", pytrace=False)
    return cli


def sanitizer_env():
    return {k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_", "LSAN_"))}


def shell(script, path_dir, home, stdin=b"", timeout=300):
    """bash -c script with path_dir first on PATH and a home of its own."""
    env = {"PATH": path_dir + ":/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8",
           "ZMESH_CONFIG": os.path.join(home, "config.json")}
    env.update(sanitizer_env())
    r = subprocess.run(["bash", "-c", script], input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, cwd=home, timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace")


class Cli:
    """The client with a config of its own."""

    def __init__(self, root):
        self.home = tempfile.mkdtemp(prefix="home-", dir=root)
        self.config = os.path.join(self.home, "config.json")

    def run(self, *args, stdin=b""):
        env = {"PATH": "/usr/bin:/bin", "HOME": self.home, "LANG": "C.UTF-8", "ZMESH_CONFIG": self.config}
        env.update(sanitizer_env())
        p = subprocess.run([cli_binary(), *args], input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, cwd=self.home, timeout=120)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def ok(self, *args, **kw):
        rc, out, err = self.run(*args, **kw)
        assert rc == 0, (args, out, err)
        return out

    def saved(self):
        with open(self.config) as f:
            return json.load(f)


@pytest.fixture(scope="module")
def zd():
    d = start_daemon("start")
    yield d
    stop_and_check(d)


@pytest.fixture
def homes():
    root = tempfile.mkdtemp(prefix="zgs-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def login(zd, email, password):
    return http_request(zd.port, "POST", "/auth/login", json.dumps({"email": email, "password": password}).encode(),
                        {"Content-Type": "application/json"})


def new_user(zd, admin_token):
    email = "%s@example.test" % unique("user")
    password = "pw-" + secrets.token_hex(8)
    r = http_request(zd.port, "POST", "/users", json.dumps({"email": email, "password": password}).encode(),
                     {"Authorization": "Bearer " + admin_token})
    assert r.status == 201, str(r)
    return email, password


def change_password(zd, token, body):
    return http_request(zd.port, "POST", "/auth/password", json.dumps(body).encode(),
                        {"Authorization": "Bearer " + token} if token else {})


def get_projects(zd, token):
    return http_request(zd.port, "GET", "/projects", None, {"Authorization": "Bearer " + token})


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- the printed first steps ---------------------------------------------------------


def steps_of(zd):
    """The listening line and the step lines zmeshd printed after it."""
    lines = zd.stdout_lines
    i = [n for n, line in enumerate(lines) if "listening on" in line][0]
    steps = []
    for line in lines[i + 1:]:
        if not line.startswith("  "):
            break
        steps.append(re.sub(r"\s+# .*$", "", line.strip()))
    over_http = [line for line in lines[i + 1:] if line.startswith("zmeshd: over HTTP instead: ")]
    return lines[i], steps, over_http[0][len("zmeshd: over HTTP instead: "):]


def test_printed_steps_name_the_bound_port_and_run_as_printed(zd, homes):
    head, steps, curl = steps_of(zd)
    url = "http://127.0.0.1:%d" % zd.port
    assert "listening on 127.0.0.1:0 (port %d)" % zd.port in head, head
    text = "\n".join(steps + [curl])
    assert url in text and ":8080" not in text and "127.0.0.1:0" not in text, text
    assert steps[0] == "zmesh login --url %s --email %s" % (url, zd.admin_email), steps
    assert any(s.startswith("zmesh invoke hello") for s in steps), steps

    # As printed, in one shell, with the CLI on PATH: the password is the
    # one line login reads from stdin when it is not a terminal.
    rc, out = shell("set -eu\n" + "\n".join(steps), os.path.dirname(cli_binary()), homes,
                    stdin=(zd.admin_password + "\n").encode())
    assert rc == 0, out
    assert '"hello": "world"' in out, out

    # The HTTP variant: a token, or a readable error, never a traceback.
    run = lambda c: shell(c, "/nonexistent", homes)  # noqa: E731
    rc, out = run(curl.replace('"password":"..."', '"password":"%s"' % zd.admin_password))
    assert rc == 0 and re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+\n", out), out
    rc, out = run(curl.replace('"password":"..."', '"password":"not-it"'))
    assert rc != 0 and "wrong email or password" in out and "Traceback" not in out, out
    rc, out = run(curl.replace('"password":"..."', '"password":"x"').replace(str(zd.port), str(free_port())))
    # curl says why; jq has nothing to parse (jq 1.6 then exits 0 even with -e).
    assert "curl: (7)" in out and "Failed to connect" in out and "Traceback" not in out, out


def test_steps_follow_the_listen_address(homes):
    """A fixed port and a host other than 127.0.0.1 are printed as bound."""
    d = Daemon("listen")
    port = free_port()
    try:
        start_with(d, ["--listen", "127.0.0.2:%d" % port])
        head, steps, curl = steps_of(d)
        assert "listening on 127.0.0.2:%d (port %d)" % (port, port) in head, head
        assert "--url http://127.0.0.2:%d " % port in steps[0] + " ", steps
        assert curl.startswith("curl -sS -XPOST http://127.0.0.2:%d/auth/login" % port), curl
    except BaseException:
        d.cleanup()
        raise
    stop_and_check(d)


def start_with(d, args):
    """Daemon.start with the listen address of args (it passes --listen
    127.0.0.1:0 first; a later flag wins)."""
    d.start(*args)
    assert d.port == int(args[1].rsplit(":", 1)[1])


def test_run_script_installs_the_cli_and_starts_zmeshd(homes):
    """scripts/run as README says: the CLI lands in PREFIX/bin, zmeshd starts
    and prints its steps for the port it bound."""
    prefix = os.path.join(homes, "prefix")
    d = Daemon("run", env={"ZMESH_PREFIX": prefix})
    d.binary = os.path.join(TOP, "scripts", "run")
    try:
        d.start()
        cli = os.path.join(prefix, "bin", "zmesh")
        assert os.access(cli, os.X_OK), os.listdir(homes)
        rc, out = shell("zmesh --version", os.path.dirname(cli), homes)
        assert rc == 0 and out.startswith("zmesh "), out
        head, steps, _ = steps_of(d)
        assert steps[0].startswith("zmesh login --url http://127.0.0.1:%d " % d.port), steps
        rc, out = shell(steps[0], os.path.dirname(cli), homes, stdin=(d.admin_password + "\n").encode())
        assert rc == 0 and "Logged in" in out, out
    except BaseException:
        d.cleanup()
        raise
    stop_and_check(d)


# ---- the CLI chooses for a newcomer --------------------------------------------------


def test_project_that_exists_is_offered_and_login_picks_the_only_project(zd, homes):
    admin = login(zd, zd.admin_email, zd.admin_password).json["token"]
    email, password = new_user(zd, admin)
    url = "http://127.0.0.1:%d" % zd.port

    a = Cli(homes)
    out = a.ok("login", "--url", url, "--email", email, "--password", password)
    assert "No project yet: zmesh projects create NAME" in out, out
    slug = unique("demo")
    a.ok("projects", "create", slug)
    rc, _, err = a.run("projects", "create", slug)
    assert rc == 1 and "exists already, and it is the current one" in err, err

    # A second machine: the user's only project is chosen at login.
    b = Cli(homes)
    out = b.ok("login", "--url", url, "--email", email, "--password", password)
    assert "Using project %s, your only one." % slug in out, out
    assert b.saved()["project_slug"] == slug
    b.ok("functions", "list")  # no "no project chosen"
    out = json.loads(Cli(homes).ok("--json", "login", "--url", url, "--email", email, "--password", password))
    assert out["project"] == slug and "token" not in out, out

    # With two projects nothing is chosen; creating one that exists says
    # how to choose it.
    other = unique("other")
    a.ok("projects", "create", other)
    c = Cli(homes)
    out = c.ok("login", "--url", url, "--email", email, "--password", password)
    assert "Choose a project: zmesh use PROJECT" in out, out
    assert "project" not in c.saved()
    rc, _, err = c.run("projects", "create", slug)
    assert rc == 1 and "CONFLICT: project %s exists already: choose it with zmesh use %s" % (slug, slug) in err, err
    c.ok("use", slug)
    assert c.saved()["project_slug"] == slug

    # A slug another user holds cannot be chosen.
    email2, password2 = new_user(zd, admin)
    d = Cli(homes)
    d.ok("login", "--url", url, "--email", email2, "--password", password2)
    rc, _, err = d.run("projects", "create", slug)
    assert rc == 1 and "taken by a project of another user" in err, err


# ---- passwords ------------------------------------------------------------------------


def test_users_get_the_password_rule(zd):
    admin = login(zd, zd.admin_email, zd.admin_password).json["token"]
    email = "%s@example.test" % unique("rule")
    for weak in ["short-7!", "abcdefghijklmnop", "1234567890123", email, email.upper()]:
        r = http_request(zd.port, "POST", "/users", json.dumps({"email": email, "password": weak}).encode(),
                         {"Authorization": "Bearer " + admin})
        assert_error(r, 400, "INVALID_PASSWORD")
        assert RULE in r.json["error"]["message"], str(r)


def test_change_own_password_ends_older_sessions(zd):
    admin = login(zd, zd.admin_email, zd.admin_password).json["token"]
    email, password = new_user(zd, admin)
    old = login(zd, email, password).json["token"]
    other_session = login(zd, email, password).json["token"]

    assert_error(change_password(zd, None, {"current_password": password, "new_password": "x"}), 401,
                 "UNAUTHORIZED")
    r = change_password(zd, old, {"current_password": "not-" + password, "new_password": "Another-pass-1"})
    assert_error(r, 403, "WRONG_PASSWORD")
    r = change_password(zd, old, {"current_password": password, "new_password": "weak"})
    assert_error(r, 400, "INVALID_PASSWORD")
    assert RULE in r.json["error"]["message"]
    assert_error(change_password(zd, old, {"current_password": password, "new_password": email}), 400,
                 "INVALID_PASSWORD")
    assert_error(change_password(zd, old, {"current_password": password, "new_password": password}), 400,
                 "INVALID_PASSWORD")
    assert_error(change_password(zd, old, {"current_password": password}), 400, "INVALID_PASSWORD")
    assert_error(change_password(zd, old, {"new_password": "Another-pass-1"}), 400, "BAD_REQUEST")
    assert_error(change_password(zd, old, {"current_password": password, "new_password": "Another-pass-1",
                                           "x": 1}), 400, "UNKNOWN_FIELD")
    # Nothing above changed anything.
    assert get_projects(zd, old).status == 200

    new_password = "New-" + secrets.token_hex(6)
    r = change_password(zd, old, {"current_password": password, "new_password": new_password})
    assert r.status == 200, str(r)
    fresh = r.json["token"]
    assert r.json["expires_at"] and fresh != old
    # The sessions signed before the change are over, at once.
    for t in (old, other_session):
        assert_error(get_projects(zd, t), 401, "INVALID_TOKEN")
        assert "password changed" in get_projects(zd, t).json["error"]["message"]
    assert get_projects(zd, fresh).status == 200
    assert_error(login(zd, email, password), 401, "INVALID_CREDENTIALS")
    # A login in the same second as the change is a valid session.
    assert get_projects(zd, login(zd, email, new_password).json["token"]).status == 200


def test_zmesh_passwd(zd, homes):
    admin = login(zd, zd.admin_email, zd.admin_password).json["token"]
    email, password = new_user(zd, admin)
    c = Cli(homes)
    c.ok("login", "--url", "http://127.0.0.1:%d" % zd.port, "--email", email, "--password", password)
    before = c.saved()["token"]
    rc, out, err = c.run("passwd", stdin=("wrong-one\nNew-password-42\n").encode())
    assert rc == 1 and "WRONG_PASSWORD" in err and "not changed" in err, err
    rc, out, err = c.run("passwd", stdin=(password + "\nweak\n").encode())
    assert rc == 1 and "INVALID_PASSWORD" in err and RULE in err, err
    rc, out, err = c.run("passwd", stdin=(password + "\n").encode())
    assert rc == 1 and "two lines" in err, err
    new_password = "New-" + secrets.token_hex(6)
    out = c.ok("passwd", stdin=(password + "\n" + new_password + "\n").encode())
    assert "Password changed" in out, out
    # The client goes on with its new session; the old token is over.
    assert c.saved()["token"] != before
    c.ok("projects", "list")
    assert_error(get_projects(zd, before), 401, "INVALID_TOKEN")
    assert login(zd, email, new_password).status == 200


def on_terminal(argv, env, answers, cwd="/"):
    """Run argv with a pseudo-terminal as stdin, stdout and stderr and its
    controlling terminal; answers: (prompt, text) pairs, each typed once its
    prompt shows. Returns (exit status, everything shown, whether the
    terminal echoes again afterwards)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                            start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    shown, seen, todo = b"", 0, list(answers)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    shown += os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    ready = []
            at = shown.find(todo[0][0].encode(), seen) if todo else -1
            if at >= 0:
                seen = at + len(todo[0][0])
                time.sleep(0.2)  # let it switch echo off before we type
                os.write(master, todo.pop(0)[1].encode())
            if proc.poll() is not None and not ready:
                break
        else:
            proc.kill()
        rc = proc.wait(10)
        echo = bool(termios.tcgetattr(slave)[3] & termios.ECHO)
    finally:
        os.close(master)
        os.close(slave)
    return rc, shown.decode(errors="replace"), echo


def test_passwords_are_asked_without_echo_on_a_terminal(zd, homes):
    admin = login(zd, zd.admin_email, zd.admin_password).json["token"]
    email, password = new_user(zd, admin)
    c = Cli(homes)
    c.ok("login", "--url", "http://127.0.0.1:%d" % zd.port, "--email", email, "--password", password)
    env = {"PATH": "/usr/bin:/bin", "HOME": c.home, "LANG": "C.UTF-8", "ZMESH_CONFIG": c.config}
    env.update(sanitizer_env())

    # zmesh passwd: the two new ones must agree.
    second = "Second-" + secrets.token_hex(6)
    rc, shown, echo = on_terminal([cli_binary(), "passwd"], env, [
        ("Current password: ", password + "\n"), ("New password: ", second + "\n"),
        ("New password again: ", second + "x\n")])
    assert rc == 1 and "differ" in shown and echo, shown
    rc, shown, echo = on_terminal([cli_binary(), "passwd"], env, [
        ("Current password: ", password + "\n"), ("New password: ", second + "\n"),
        ("New password again: ", second + "\n")])
    assert rc == 0 and "Password changed" in shown, shown
    assert password not in shown and second not in shown, "a password was echoed"
    assert echo, "the terminal must echo again after the prompts"
    assert login(zd, email, second).status == 200

    # zmeshd admin set-password: asks twice as well.
    third = "Third-" + secrets.token_hex(6)
    argv = [require_daemon_binary(), "admin", "set-password", email, "--state-dir", zd.state_dir]
    rc, shown, echo = on_terminal(argv, env, [("New password for %s: " % email, third + "\n"),
                                              ("Again: ", third + "\n")])
    assert rc == 0 and "set the password of" in shown and third not in shown and echo, shown
    assert login(zd, email, third).status == 200


def admin_cmd(state_dir, *args, stdin=b"", env=None):
    e = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    e.update(sanitizer_env())
    e.update(env or {})
    p = subprocess.run([require_daemon_binary(), "admin", *args, "--state-dir", state_dir], input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, timeout=120)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def test_admin_set_password_beside_the_running_daemon(zd):
    admin = login(zd, zd.admin_email, zd.admin_password).json["token"]
    email, password = new_user(zd, admin)
    token = login(zd, email, password).json["token"]

    rc, out, err = admin_cmd(zd.state_dir, "set-password", "nobody@example.test", stdin=b"Whatever-pass-1\n")
    assert rc == 1 and "no user nobody@example.test" in err, err
    rc, out, err = admin_cmd(zd.state_dir, "set-password", email, stdin=b"weak\n")
    assert rc == 1 and RULE in err, err
    rc, out, err = admin_cmd(zd.state_dir, "set-password", email, stdin=b"")
    assert rc == 1 and "no password given" in err, err
    assert login(zd, email, password).status == 200, "a refused reset changed nothing"

    new_password = "Reset-" + secrets.token_hex(6)
    rc, out, err = admin_cmd(zd.state_dir, "set-password", email.upper(), stdin=(new_password + "\n").encode())
    assert rc == 0 and "set the password of" in out, (out, err)
    assert new_password not in out + err
    assert_error(login(zd, email, password), 401, "INVALID_CREDENTIALS")
    assert login(zd, email, new_password).status == 200
    assert_error(get_projects(zd, token), 401, "INVALID_TOKEN")

    # Usage errors.
    rc, out, err = admin_cmd(zd.state_dir, "set-password")
    assert rc == 2 and "needs an EMAIL" in err, err
    rc, out, err = admin_cmd(zd.state_dir, "frobnicate", email)
    assert rc == 2 and "unknown command" in err, err
    rc, out, err = admin_cmd(zd.state_dir, "--help")
    assert rc == 0 and "set-password EMAIL" in out, out


def test_admin_set_password_never_starts_a_cluster():
    base = short_tempdir("nopg")
    try:
        state = os.path.join(base, "state")
        os.mkdir(state)
        rc, out, err = admin_cmd(state, "set-password", "admin@zmesh.test", stdin=b"Whatever-pass-1\n")
        assert rc == 1 and "does not start it" in err and state in err, err
        assert not os.path.exists(os.path.join(state, "pg")), os.listdir(state)
        # A state directory that is not there at all.
        rc, out, err = admin_cmd(os.path.join(base, "missing"), "set-password", "a@b.c", stdin=b"x\n")
        assert rc == 1 and "does not start it" in err, err
        # The socket a killed postmaster left behind: nobody answers on it.
        os.makedirs(os.path.join(state, "pg", "run"))
        left = socket.socket(socket.AF_UNIX)
        left.bind(os.path.join(state, "pg", "run", ".s.PGSQL.5432"))
        left.close()
        rc, out, err = admin_cmd(state, "set-password", "admin@zmesh.test", stdin=b"Whatever-pass-1\n")
        assert rc == 1 and "cannot reach the control plane (is zmeshd running?)" in err, err
        assert os.listdir(os.path.join(state, "pg")) == ["run"], "nothing else may appear"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_later_admin_password_is_ignored_with_a_warning():
    d = start_daemon("adminpw")
    try:
        first = d.admin_password
        assert not [e for e in d.log_events() if e.get("event") == "admin_password_ignored"]
        assert d.stop() == 0
        # The same password again: nothing to say.
        d.start()
        assert not [e for e in d.log_events() if e.get("event") == "admin_password_ignored"]
        assert d.stop() == 0
        d.admin_password = "Other-" + secrets.token_hex(6)
        d.start()
        warned = [e for e in d.log_events() if e.get("event") == "admin_password_ignored"]
        assert len(warned) == 1 and warned[0]["level"] == "warn", warned
        assert "zmeshd admin set-password %s" % d.admin_email in warned[0]["reset_with"], warned
        assert d.admin_password not in d.log_text() and first not in d.log_text()
        assert_error(login(d, d.admin_email, d.admin_password), 401, "INVALID_CREDENTIALS")
        assert login(d, d.admin_email, first).status == 200
    except BaseException:
        d.cleanup()
        raise
    stop_and_check(d)


def test_weak_first_admin_password_is_refused():
    d = Daemon("weakpw", admin_password="password")
    try:
        env = d.environ()
        p = subprocess.run([d.binary, "--listen", "127.0.0.1:0", "--state-dir", d.state_dir], env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180)
        assert p.returncode != 0
        err = p.stderr.decode(errors="replace")
        assert "ZMESH_ADMIN_PASSWORD" in err and RULE in err, err[-3000:]
        assert "listening on" not in p.stdout.decode(errors="replace")
        assert not d.leftovers(), "zmeshd left processes behind"
    finally:
        d.cleanup()
