"""The zmesh command-line client end to end: a real zmeshd (embedded
PostgreSQL cluster, temporary state directory, port 0) driven through the
`zmesh` binary like a person or a script would, each client with its own
HOME (or ZMESH_CONFIG) in a temporary directory. What the client reports is
checked against what the server says over plain HTTP.

$ZMESH_CLI names the client, $ZMESHD the daemon (ctest sets both). zmeshd
needs root (sandboxes; its cluster runs as the postgres user).
"""

import fcntl
import json
import os
import pty
import re
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import termios
import time
import urllib.error
import urllib.request

import pytest

CLI = os.environ.get("ZMESH_CLI")
ZMESHD = os.environ.get("ZMESHD")
PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"
ADMIN_EMAIL = "admin@cli.test"
START_TIMEOUT = 120  # a first start initialises a cluster
STOP_TIMEOUT = 60    # the daemon's own grace is 30 s
CLI_TIMEOUT = 120


def require_binaries():
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.fail("set ZMESH_CLI to the zmesh binary (ctest does)", pytrace=False)
    if not ZMESHD or not os.access(ZMESHD, os.X_OK):
        pytest.fail("set ZMESHD to the zmeshd binary (ctest does)", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("zmeshd needs root: it creates sandboxes and runs PostgreSQL as the postgres user",
                    pytrace=False)


# Plain HTTP to check the client against the server, never through a proxy
# a test environment may have configured.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(url, method="GET", body=None, headers=None, raw=None):
    """(status, parsed JSON body) of one request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with _opener.open(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Daemon:
    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="zcli-", dir="/tmp")  # short: the cluster's socket lives below
        os.chmod(self.base, 0o755)  # the postgres user walks down to its data directory
        self.state = os.path.join(self.base, "state")
        self.password = "Adm1n-" + secrets.token_hex(8)
        self.out_path = os.path.join(self.base, "zmeshd.out")
        self.err_path = os.path.join(self.base, "zmeshd.err")
        self.proc = None
        self.port = None

    def start(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ZMESH_", "PG")) and k not in ("DATABASE_URL", "JWT_SECRET_KEY")}
        env.update(ZMESH_ADMIN_EMAIL=ADMIN_EMAIL, ZMESH_ADMIN_PASSWORD=self.password, ZMESH_POOL_SIZE="0")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([ZMESHD, "--listen", "127.0.0.1:0", "--state-dir", self.state],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            with open(self.out_path, errors="replace") as f:
                m = re.search(r"listening on .*\(port (\d+)\)", f.read())
            if m:
                self.port = int(m.group(1))
                assert self.port > 0
                return
            time.sleep(0.1)
        self.abort()
        pytest.fail("zmeshd did not start (exit %r):\n%s" % (self.proc.returncode, self.log_tail()), pytrace=False)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def log_tail(self, n=30):
        try:
            with open(self.err_path, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.abort()
            pytest.fail("zmeshd did not exit within %d s of SIGTERM\n%s" % (STOP_TIMEOUT, self.log_tail()))

    def abort(self):
        """Last resort after a failure: nothing may be left running."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        data = os.path.join(self.state, "pg", "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run(["runuser", "-u", "postgres", "--", PG_CTL, "-D", data, "-m", "immediate", "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def api(self, token, method, path, body=None):
        return http(self.url + path, method, body, {"Authorization": "Bearer " + token})


class Result:
    def __init__(self, args, proc):
        self.args, self.rc = args, proc.returncode
        self.out = proc.stdout.decode("utf-8", errors="replace")
        self.err = proc.stderr.decode("utf-8", errors="replace")

    def __repr__(self):
        return "<zmesh %s -> %d\nstdout: %s\nstderr: %s>" % (" ".join(self.args), self.rc, self.out[:2000],
                                                            self.err[:2000])


class Cli:
    """One user of the client: a home directory of its own."""

    def __init__(self, daemon, root, config=None):
        self.daemon = daemon
        self.home = tempfile.mkdtemp(prefix="home-", dir=root)
        self.config = config
        self.src = os.path.join(self.home, "src")
        os.mkdir(self.src)

    @property
    def config_path(self):
        return self.config or os.path.join(self.home, ".config", "zmesh", "config.json")

    def run(self, *args, stdin=b""):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.home, "LANG": "C.UTF-8"}
        # A sanitizer build reports through these; nothing else of ours leaks in.
        env.update({k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_", "LSAN_"))})
        if self.config:
            env["ZMESH_CONFIG"] = self.config
        args = [str(a) for a in args]
        proc = subprocess.run([CLI, *args], input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, cwd=self.src, timeout=CLI_TIMEOUT)
        return Result(args, proc)

    def ok(self, *args, **kw):
        r = self.run(*args, **kw)
        assert r.rc == 0, r
        return r

    def json(self, *args):
        r = self.ok("--json", *args)
        try:
            return json.loads(r.out)
        except ValueError:
            raise AssertionError("--json output is not JSON: %r" % r)

    def login(self):
        return self.ok("login", "--url", self.daemon.url, "--email", ADMIN_EMAIL, "--password", self.daemon.password)

    def saved(self):
        with open(self.config_path) as f:
            return json.load(f)

    def token(self):
        return self.saved()["token"]

    def write(self, name, text):
        path = os.path.join(self.src, name)
        with open(path, "w") as f:
            f.write(text)
        return path


def unique(prefix):
    return "%s-%s" % (prefix, secrets.token_hex(3))


@pytest.fixture(scope="module")
def daemon():
    require_binaries()
    d = Daemon()
    try:
        d.start()
        yield d
        rc = d.stop()
        assert rc == 0, "zmeshd exited %r on SIGTERM\n%s" % (rc, d.log_tail())
    finally:
        d.abort()
        shutil.rmtree(d.base, ignore_errors=True)


@pytest.fixture(scope="module")
def homes(daemon):
    root = tempfile.mkdtemp(prefix="zcli-homes-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh(daemon, homes):
    """A client that has never logged in."""
    return Cli(daemon, homes)


@pytest.fixture(scope="module")
def me(daemon, homes):
    """A logged-in client with a project of its own, chosen with `use`."""
    c = Cli(daemon, homes)
    c.login()
    project = c.json("projects", "create", unique("CLI Project"))
    c.ok("use", project["slug"])
    c.project = project
    return c


def fn_url(c, slug, tail=""):
    return "/projects/%s/functions/%s%s" % (c.project["id"], slug, tail)


# ---- login and the config file ---------------------------------------------------


def test_wrong_password_exits_1_with_the_servers_message(daemon, fresh):
    status, body = http(daemon.url + "/auth/login", "POST", {"email": ADMIN_EMAIL, "password": "not-it"})
    assert status == 401
    r = fresh.run("login", "--url", daemon.url, "--email", ADMIN_EMAIL, "--password", "not-it")
    assert r.rc == 1, r
    assert body["error"]["message"] in r.err and body["error"]["code"] in r.err, r
    assert len(r.err.strip().splitlines()) == 1, r
    assert not os.path.exists(fresh.config_path), "a failed login must not write a config"


def test_login_keeps_the_token_private(daemon, fresh):
    # No --password and stdin not a terminal: one line is read from stdin.
    r = fresh.run("login", "--url", daemon.url + "/", "--email", ADMIN_EMAIL, stdin=(daemon.password + "\n").encode())
    assert r.rc == 0, r
    path = fresh.config_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    saved = fresh.saved()
    assert saved["url"] == daemon.url  # the trailing slash is gone
    assert saved["email"] == ADMIN_EMAIL
    token = saved["token"]
    assert token not in r.out and token not in r.err
    assert daemon.password not in r.out and daemon.password not in r.err
    # The saved token is a working session.
    status, body = daemon.api(token, "GET", "/projects")
    assert status == 200 and "projects" in body

    # A config left readable by others is reported, then rewritten 0600.
    os.chmod(path, 0o644)
    r = fresh.run("login", "--password", daemon.password)  # URL and email are remembered
    assert r.rc == 0, r
    assert "readable by others" in r.err
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert fresh.saved()["token"] != ""

    # --json for scripts never prints the token either.
    out = fresh.json("login", "--password", daemon.password)
    assert out["user"]["email"] == ADMIN_EMAIL and out["url"] == daemon.url
    assert "token" not in out


def run_on_terminal(c, args, answer):
    """Run the client with a pseudo-terminal as stdin, stdout and stderr;
    once it prompts, type answer. Returns (exit status, everything it
    showed, whether the terminal echoes again afterwards)."""
    master, slave = pty.openpty()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": c.home, "LANG": "C.UTF-8"}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_", "LSAN_"))})
    # A session of its own with the terminal as its controlling one, so that
    # Ctrl-C typed there becomes SIGINT for the client, as in a shell.
    proc = subprocess.Popen([CLI, *args], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=c.src,
                            start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    shown, typed = b"", False
    deadline = time.monotonic() + CLI_TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                shown += chunk
            if not typed and b"Password: " in shown:
                time.sleep(0.2)  # let it switch echo off before we type
                os.write(master, answer)
                typed = True
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


def test_password_is_prompted_without_echo_on_a_terminal(daemon, fresh):
    rc, shown, echo = run_on_terminal(fresh, ["login", "--url", daemon.url, "--email", ADMIN_EMAIL],
                                      (daemon.password + "\n").encode())
    assert rc == 0, shown
    assert "Password: " in shown and "Logged in" in shown
    assert daemon.password not in shown, "the password was echoed"
    assert echo, "the terminal must echo again after the prompt"
    assert fresh.saved()["email"] == ADMIN_EMAIL

    # Ctrl-C at the prompt: nothing saved anew, the terminal echoes again.
    before = fresh.saved()
    rc, shown, echo = run_on_terminal(fresh, ["login"], b"\x03")
    assert rc == 1 and "interrupted" in shown, shown
    assert echo, "the terminal must echo again after an interrupted prompt"
    assert fresh.saved() == before


def test_zmesh_config_points_elsewhere(daemon, homes):
    where = os.path.join(tempfile.mkdtemp(dir=homes), "deep", "er", "zmesh.json")
    c = Cli(daemon, homes, config=where)
    c.login()
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o600
    assert c.saved()["url"] == daemon.url
    assert not os.path.exists(os.path.join(c.home, ".config")), "ZMESH_CONFIG must replace the default"
    c.ok("projects", "list")


def test_commands_need_a_login(fresh):
    for args in (["functions", "list"], ["projects", "list"], ["invoke", "f"], ["keys", "list"]):
        r = fresh.run(*args)
        assert r.rc == 1, r
        assert "not logged in" in r.err and "zmesh login" in r.err, r


def test_password_from_empty_stdin_is_refused(daemon, fresh):
    r = fresh.run("login", "--url", daemon.url, "--email", ADMIN_EMAIL, stdin=b"")
    assert r.rc == 1 and "no password" in r.err, r
    assert not os.path.exists(fresh.config_path)


def test_unreachable_server_is_a_clear_failure(fresh):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more
    r = fresh.run("login", "--url", "http://127.0.0.1:%d" % port, "--email", "a@b.c", "--password", "x")
    assert r.rc == 1, r
    assert "cannot reach http://127.0.0.1:%d" % port in r.err, r


def test_a_bad_token_is_refused_without_echoing_it(daemon, fresh):
    fresh.login()
    saved = fresh.saved()
    forged = saved["token"][:-6] + "AAAAAA"
    saved["token"] = forged
    with open(fresh.config_path, "w") as f:
        json.dump(saved, f)
    status, body = daemon.api(forged, "GET", "/projects")
    assert status == 401
    r = fresh.run("projects", "list")
    assert r.rc == 1, r
    assert body["error"]["code"] in r.err and "zmesh login" in r.err, r
    assert forged not in r.err and forged not in r.out

    # A token that would add headers never leaves the client.
    saved["token"] = "abc\r\nX-Injected: 1"
    with open(fresh.config_path, "w") as f:
        json.dump(saved, f)
    r = fresh.run("projects", "list")
    assert r.rc == 1 and "malformed" in r.err, r


def test_a_broken_config_is_reported(fresh):
    os.makedirs(os.path.dirname(fresh.config_path))
    with open(fresh.config_path, "w") as f:
        f.write("{not json")
    r = fresh.run("projects", "list")
    assert r.rc == 1 and fresh.config_path in r.err, r
    os.remove(fresh.config_path)
    os.mkdir(fresh.config_path)
    r = fresh.run("projects", "list")
    assert r.rc == 1 and "not a regular file" in r.err, r


# ---- projects ----------------------------------------------------------------------


def test_projects_create_list_use(daemon, fresh):
    fresh.login()
    name = unique("Demo Project")
    first = fresh.json("projects", "create", name)
    assert first["name"] == name and first["slug"] == name.lower().replace(" ", "-")
    # The first project is the current one at once.
    assert fresh.saved()["project"] == first["id"]

    slug2 = unique("second")
    r = fresh.ok("projects", "create", "Second", "--slug", slug2)
    assert slug2 in r.out
    assert fresh.saved()["project"] == first["id"], "only a first project becomes current by itself"

    r = fresh.ok("projects", "list")
    rows = {}
    for line in r.out.splitlines()[1:]:
        parts = line.split()
        rows[parts[1] if parts[0] == "*" else parts[0]] = line
    assert rows[first["slug"]].startswith("*") and not rows[slug2].startswith("*"), r

    listed = fresh.json("projects", "list")
    status, server = daemon.api(fresh.token(), "GET", "/projects")
    assert status == 200 and listed == server  # --json is the server's JSON as is
    assert {first["id"]} <= {p["id"] for p in listed["projects"]}

    r = fresh.ok("use", slug2)
    second = [p for p in listed["projects"] if p["slug"] == slug2][0]
    assert fresh.saved()["project"] == second["id"] and fresh.saved()["project_slug"] == slug2
    assert second["id"] in r.out
    r = fresh.ok("projects", "list")
    assert [line for line in r.out.splitlines() if line.startswith("*")][0].split()[1] == slug2, r

    # use checks the project against the server; the choice stays as it was.
    r = fresh.run("use", "no-such-project")
    assert r.rc == 1 and "NOT_FOUND" in r.err, r
    assert fresh.saved()["project"] == second["id"]

    r = fresh.run("projects", "create", "Again", "--slug", slug2)
    assert r.rc == 1 and "CONFLICT" in r.err, r


# ---- functions -----------------------------------------------------------------------

ADD_JS = """
exports.handler = async (payload, zmesh) => {
  console.log("adding", payload.a, payload.b);
  return { sum: payload.a + payload.b, greeting: zmesh.env.GREETING, lang: "js" };
};
"""

MUL_PY = """
def handler(payload, zmesh):
    print("multiplying", payload["a"], payload["b"])
    return {"product": payload["a"] * payload["b"], "greeting": zmesh.env.GREETING, "lang": "py"}
"""


def test_deploy_and_invoke_javascript_and_python(daemon, me):
    greeting = "hello-" + secrets.token_hex(4)
    js = me.write("add.js", ADD_JS)
    r = me.ok("functions", "deploy", js, "--env", "GREETING=" + greeting)
    assert "Created function add" in r.out and "version 1" in r.out, r
    py = me.write("mul.py", MUL_PY)
    me.ok("functions", "deploy", py, "--env", "GREETING=" + greeting)

    a, b = secrets.randbelow(1000), secrets.randbelow(1000)
    r = me.ok("invoke", "add", "--data", json.dumps({"a": a, "b": b}))
    assert json.loads(r.out) == {"sum": a + b, "greeting": greeting, "lang": "js"}, r
    r = me.ok("invoke", "mul", "--data", json.dumps({"a": a, "b": b}))
    assert json.loads(r.out) == {"product": a * b, "greeting": greeting, "lang": "py"}, r

    # The server got what the client derived: language, slug, env names.
    for slug, language in (("add", "javascript"), ("mul", "python")):
        status, fn = daemon.api(me.token(), "GET", fn_url(me, slug))
        assert status == 200, fn
        assert fn["language"] == language and fn["name"] == slug and fn["env_vars"] == ["GREETING"]
        assert greeting not in json.dumps(fn)

    r = me.ok("functions", "list")
    header = r.out.splitlines()[0].split()
    assert header[:3] == ["SLUG", "NAME", "LANGUAGE"]
    table = {line.split()[0]: line.split() for line in r.out.splitlines()[1:]}
    assert table["add"][2] == "javascript" and table["mul"][2] == "python", r


def test_deploy_names_slugs_and_extensions(daemon, me):
    path = me.write("whatever.cjs", "module.exports = async (p) => ({ fancy: p });\n")
    r = me.ok("functions", "deploy", path, "--name", "My Fancy Function")
    assert "my-fancy-function" in r.out, r
    status, fn = daemon.api(me.token(), "GET", fn_url(me, "my-fancy-function"))
    assert status == 200 and fn["name"] == "My Fancy Function" and fn["language"] == "javascript"
    # A person can name it the way they named it.
    r = me.ok("invoke", "My Fancy Function", "--data", "[1, 2]")
    assert json.loads(r.out) == {"fancy": [1, 2]}

    path = me.write("esm_handler.mjs", "export default async function (input) { return input; }\n")
    created = me.json("functions", "deploy", path, "--entry", "main")
    assert created["slug"] == "esm-handler" and created["language"] == "javascript"
    assert created["entry_point"] == "main"

    path = me.write("notes.txt", "hello")
    r = me.run("functions", "deploy", path)
    assert r.rc == 2 and "language" in r.err, r
    r = me.ok("functions", "deploy", me.write("plain.txt", "def handler(p, z):\n    return 7\n"), "--language", "python")
    r = me.ok("invoke", "plain")
    assert json.loads(r.out) == 7


def test_a_throwing_function_exits_1_and_shows_the_error(daemon, me):
    marker = "bad thing " + secrets.token_hex(4)
    me.ok("functions", "deploy", me.write("boom.js", """
exports.handler = async () => { throw new TypeError(%s); };
""" % json.dumps(marker)))
    r = me.run("invoke", "boom", "--data", "{}")
    assert r.rc == 1, r
    assert r.out == "", "a failed invocation prints no result"
    assert "TypeError" in r.err and marker in r.err and "FUNCTION_ERROR" in r.err, r

    r = me.run("--json", "invoke", "boom")
    assert r.rc == 1, r
    env = json.loads(r.out)
    assert env["status"] == "error" and env["error"]["code"] == "FUNCTION_ERROR" and env["error"]["name"] == "TypeError"

    me.ok("functions", "deploy", me.write("pyboom.py", "def handler(p, z):\n    raise ValueError(%r)\n" % marker))
    r = me.run("invoke", "pyboom")
    assert r.rc == 1 and "ValueError" in r.err and marker in r.err, r


def test_logs_list_recent_invocations_and_the_newest_logs(daemon, me):
    me.ok("functions", "deploy", me.write("logger.py", """
def handler(payload, zmesh):
    print("marker", payload["m"])
    return payload["m"]
"""))
    m1, m2 = "first-" + secrets.token_hex(4), "second-" + secrets.token_hex(4)
    id1 = me.json("invoke", "logger", "--data", json.dumps({"m": m1}))["invocation_id"]
    id2 = me.json("invoke", "logger", "--data", json.dumps({"m": m2}))["invocation_id"]

    # Records are written in batches: wait until both are there.
    deadline = time.monotonic() + 20
    while True:
        out = me.json("logs", "logger")
        ids = [i["id"] for i in out["invocations"]]
        if {id1, id2} <= set(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ids[:2] == [id2, id1], out  # newest first
    assert out["latest"]["id"] == id2 and "marker " + m2 in out["latest"]["logs"]

    r = me.ok("logs", "logger")
    assert id1 in r.out and id2 in r.out, r
    assert "marker " + m2 in r.out, r
    assert "marker " + m1 not in r.out, "only the newest invocation's logs are shown"
    r = me.ok("logs", "logger", "--limit", "1")
    assert id2 in r.out and id1 not in r.out, r


def test_function_output_cannot_drive_the_terminal(daemon, me):
    me.ok("functions", "deploy", me.write("ansi.js", r"""
exports.handler = async () => {
  console.log("\x1b]0;owned\x07\x1b[31mred\x1b[0m \u009b2J plain");
  return "\x1b[2J \u009b2J shown";
};
"""))
    r = me.ok("invoke", "ansi")
    assert "shown" in r.out and "\x1b" not in r.out and "\u009b" not in r.out, r
    deadline = time.monotonic() + 20
    while not me.json("logs", "ansi")["invocations"] and time.monotonic() < deadline:
        time.sleep(0.2)
    r = me.ok("logs", "ansi")
    assert "plain" in r.out and "red" in r.out, r
    for bad in ("\x1b", "\x07", "\u009b"):
        assert bad not in r.out, r


def test_redeploy_versions_and_rollback(daemon, me):
    code = "exports.handler = async (payload, zmesh) => ({ v: %s, env: zmesh.env.MODE });\n"
    path = me.write("ver.js", code % '"one"')
    v1 = me.json("functions", "deploy", path, "--env", "MODE=blue")
    assert v1["version"] == 1

    me.write("ver.js", code % '"two"')
    r = me.ok("functions", "deploy", path)
    assert "Updated function ver" in r.out and "version 2" in r.out, r
    assert json.loads(me.ok("invoke", "ver").out) == {"v": "two", "env": "blue"}, \
        "a deploy without --env keeps the variables"

    versions = me.json("versions", "ver")
    assert versions["current"] == 2 and [v["version"] for v in versions["versions"]] == [1]
    assert '"one"' in versions["versions"][0]["code"]
    r = me.ok("versions", "ver")
    assert "version 2" in r.out and any(line.split()[0] == "1" for line in r.out.splitlines()[2:]), r

    r = me.ok("rollback", "ver", "1")
    assert "version 3" in r.out, r
    assert json.loads(me.ok("invoke", "ver").out)["v"] == "one"
    versions = me.json("versions", "ver")
    assert versions["current"] == 3 and [v["version"] for v in versions["versions"]] == [2, 1]

    # Rolling the rollback back: version 2 is what was replaced by it.
    back = me.json("rollback", "ver", "2")
    assert back["version"] == 4 and back["rolled_back_to"] == 2
    assert json.loads(me.ok("invoke", "ver").out)["v"] == "two"

    r = me.run("rollback", "ver", "99")
    assert r.rc == 1 and "NOT_FOUND" in r.err, r

    # Options reach the server; the tier's limits are the server's to check.
    me.ok("functions", "deploy", path, "--timeout", "5000", "--memory", "128", "--env", "MODE=green")
    status, fn = daemon.api(me.token(), "GET", fn_url(me, "ver"))
    assert status == 200 and fn["timeout_ms"] == 5000 and fn["memory_mb"] == 128 and fn["version"] == 5
    assert json.loads(me.ok("invoke", "ver").out)["env"] == "green"
    r = me.run("functions", "deploy", path, "--timeout", "1000000")
    assert r.rc == 1 and "INVALID_TIMEOUT" in r.err, r
    r = me.run("functions", "deploy", path, "--env", "NODE_OPTIONS=--inspect")
    assert r.rc == 1 and "RESERVED_ENV_VAR" in r.err, r
    assert me.json("versions", "ver")["current"] == 5, "refused deploys make no version"


def test_delete(daemon, me):
    me.ok("functions", "deploy", me.write("gone.py", "def handler(p, z):\n    return 1\n"))
    r = me.ok("delete", "gone", "--yes")
    assert "gone" in r.out
    assert "gone" not in [f["slug"] for f in me.json("functions", "list")["functions"]]
    status, _ = daemon.api(me.token(), "GET", fn_url(me, "gone"))
    assert status == 404
    r = me.run("invoke", "gone")
    assert r.rc == 1 and "NOT_FOUND" in r.err, r
    r = me.run("delete", "gone", "--yes")
    assert r.rc == 1 and "NOT_FOUND" in r.err, r


def test_functions_subcommand_forms(me):
    me.ok("functions", "deploy", me.write("twice.js", "exports.handler = async (p) => p * 2;\n"))
    assert json.loads(me.ok("functions", "invoke", "twice", "--data", "21").out) == 42
    assert me.json("functions", "versions", "twice")["current"] == 1


# ---- API keys -----------------------------------------------------------------------


def test_keys_create_list_and_use(daemon, me):
    me.ok("functions", "deploy", me.write("echo.js", "exports.handler = async (p) => ({ echo: p });\n"))
    name = unique("ci-key")
    r = me.ok("keys", "create", name)
    key = r.out.strip()
    assert len(r.out.splitlines()) == 1 and key.startswith("zmk_"), r
    assert "shown once" in r.err

    # The key works without the client: POST /api/functions/{slug}.
    status, body = http(daemon.url + "/api/functions/echo", "POST", raw=b'{"x": [1, "two"]}',
                        headers={"x-api-key": key})
    assert status == 200 and body["status"] == "success" and body["result"] == {"echo": {"x": [1, "two"]}}, body

    r = me.ok("keys", "list")
    row = [line for line in r.out.splitlines() if name in line]
    assert len(row) == 1, r
    prefix = row[0].split()[2]
    assert key.startswith(prefix) and len(prefix) < len(key)
    assert key not in r.out
    listed = me.json("keys", "list")
    assert key not in json.dumps(listed)
    kid = [k["id"] for k in listed["api_keys"] if k["name"] == name][0]

    me.ok("keys", "delete", kid, "--yes")
    status, body = http(daemon.url + "/api/functions/echo", "POST", raw=b"{}", headers={"x-api-key": key})
    assert status == 401, body


# ---- output for scripts ----------------------------------------------------------------


def test_json_output_is_the_servers_json(daemon, me):
    me.ok("functions", "deploy", me.write("jsonish.py", "def handler(p, z):\n    return {'got': p}\n"))
    token = me.token()
    pid = me.project["id"]
    for args, path in ((["functions", "list"], "/projects/%s/functions" % pid),
                       (["versions", "jsonish"], "/projects/%s/functions/jsonish/versions" % pid),
                       (["keys", "list"], "/projects/%s/api-keys" % pid),
                       (["use", pid], "/projects/%s" % pid)):
        status, server = daemon.api(token, "GET", path)
        assert status == 200
        assert me.json(*args) == server, args
    env = me.json("invoke", "jsonish", "--data", '{"k": null}')
    assert env["status"] == "success" and env["result"] == {"got": {"k": None}}
    assert set(env["metrics"]) >= {"wall_ms", "cpu_ms", "memory_bytes"}
    # --json may come before or after the command.
    assert me.json("functions", "list") == json.loads(me.ok("functions", "list", "--json").out)


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["invoke"],
    ["invoke", "a", "b"],
    ["invoke", "x", "--data", "{not json"],
    ["invoke", "x", "--data"],
    ["invoke", "x", "--nope"],
    ["invoke", "../.."],
    ["rollback", "x", "one"],
    ["rollback", "x"],
    ["logs", "x", "--limit", "0"],
    ["projects"],
    ["projects", "remove"],
    ["keys", "frob"],
    ["functions", "deploy"],
    ["functions", "deploy", "notes.txt"],
    ["functions", "deploy", "f.js", "--timeout", "soon"],
    ["functions", "deploy", "f.js", "--env", "NOEQUALS"],
    ["login", "--url", "ftp://127.0.0.1", "--email", "a@b.c", "--password", "x"],
    ["login", "--url", "http://user:pw@127.0.0.1", "--email", "a@b.c", "--password", "x"],
    ["--bogus", "projects", "list"],
])
def test_bad_usage_exits_2(me, args):
    r = me.run(*args)
    assert r.rc == 2, r
    assert "usage:" in r.err, r
    assert r.out == "", r


def test_help_exits_0(fresh):
    r = fresh.ok("--help")
    assert "usage: zmesh" in r.out and "functions deploy" in r.out
    for args in (["invoke", "--help"], ["functions", "deploy", "--help"], ["keys", "--help"], ["help"]):
        r = fresh.ok(*args)
        assert "usage:" in r.out, r
