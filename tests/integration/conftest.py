"""Fixtures of the zmeshd API tests (test_api*.py): real daemons, each with
its own temporary state directory and embedded PostgreSQL cluster, on a free
port, driven over HTTP like a user would.

The binary is named by $ZMESHD. The daemon creates sandboxes and runs its
cluster as the postgres system user, so the tests need root; without it, or
without $ZMESHD, every test that needs a daemon fails with a message saying
so (the other test files of this directory do not depend on these fixtures).
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

PSQL = "/usr/bin/psql"
PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"
PGTMP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pg", "pgtmp")
ADMIN_EMAIL = "admin@zmesh.test"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
START_TIMEOUT = 120  # a first start initialises a cluster: seconds, not minutes
STOP_TIMEOUT = 60    # the daemon's own grace is 30 s


def require_daemon_binary():
    if os.geteuid() != 0:
        pytest.fail("the zmeshd API tests need root: zmeshd creates sandboxes and runs PostgreSQL "
                    "as the postgres user", pytrace=False)
    path = os.environ.get("ZMESHD")
    if not path:
        pytest.fail("set ZMESHD to the zmeshd binary (ctest does)", pytrace=False)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("ZMESHD=%s is not an executable file" % path, pytrace=False)
    return os.path.abspath(path)


def short_tempdir(tag):
    # The cluster's socket lives under the state directory and a unix socket
    # path has at most 107 bytes: stay in /tmp whatever $TMPDIR says. 0755 so
    # that the postgres user can reach its directories below.
    d = tempfile.mkdtemp(prefix="zapi-%s-" % tag, dir="/tmp")
    os.chmod(d, 0o755)
    return d


def unique(prefix):
    return "%s-%s" % (prefix, secrets.token_hex(4))


# ---- HTTP -------------------------------------------------------------------


class Resp:
    def __init__(self, method, path, status, headers, data):
        self.method, self.path, self.status, self.headers, self.data = method, path, status, headers, data

    @property
    def json(self):
        try:
            return json.loads(self.data)
        except ValueError:
            raise AssertionError("not JSON: %r" % (self,))

    @property
    def code(self):
        """The error code of an error body (None without one)."""
        try:
            body = json.loads(self.data)
        except ValueError:
            return None
        err = body.get("error") if isinstance(body, dict) else None
        return err.get("code") if isinstance(err, dict) else None

    def __repr__(self):
        text = self.data[:3000].decode(errors="replace")
        return "<%s %s -> %d %s>" % (self.method, self.path, self.status, text)


def http_request(port, method, path, body=None, headers=None, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return Resp(method, path, r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        c.close()


def post_large(port, path, body, headers=None, timeout=30):
    """POST a body the server may refuse before reading it: the headers go
    first, and the body only if no answer came in the meantime. A server may
    answer 413 on the declared length and close, so that writing the body
    would fail with a broken pipe and lose the answer."""
    head = ["POST %s HTTP/1.1" % path, "Host: 127.0.0.1", "Content-Length: %d" % len(body), "Connection: close"]
    head += ["%s: %s" % kv for kv in (headers or {}).items()]
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        ready, _, _ = select.select([s], [], [], 1.0)
        if not ready:
            try:
                s.sendall(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    head_bytes, _, data = out.partition(b"\r\n\r\n")
    lines = head_bytes.decode(errors="replace").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0]) if lines else None
    assert m, "no HTTP answer to POST %s: %r" % (path, out[:200])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        data = dechunk(data)
    return Resp("POST", path, int(m.group(1)), hdrs, data)


def dechunk(data):
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        n = int(size_line.split(b";")[0], 16)
        if n == 0:
            break
        out += rest[:n]
        data = rest[n + 2:]
    return out


def assert_error(resp, status, code):
    """An error answer: the status, and a body {"error": {"code", "message"}}."""
    assert resp.status == status, str(resp)
    body = resp.json
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), str(resp)
    assert body["error"].get("code") == code, str(resp)
    msg = body["error"].get("message")
    assert isinstance(msg, str) and msg.strip(), str(resp)


class Client:
    """One caller of a daemon: a JWT user, an API key, or nobody."""

    def __init__(self, daemon, token=None, email=None, user_id=None, password=None):
        self.daemon, self.token, self.email, self.user_id, self.password = daemon, token, email, user_id, password

    def request(self, method, path, body=None, raw=None, headers=None, timeout=60):
        h = dict(headers or {})
        if self.token:
            h.setdefault("Authorization", "Bearer " + self.token)
        data = raw
        if raw is None and body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        return http_request(self.daemon.port, method, path, data, h, timeout)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # -- shortcuts that must succeed -------------------------------------------

    def create_project(self, name=None, **fields):
        body = {"name": name or unique("proj")}
        body.update(fields)
        r = self.post("/projects", body)
        assert r.status == 201, str(r)
        return r.json

    def deploy(self, pid, code, language="javascript", name=None, **fields):
        body = {"name": name or unique("fn"), "language": language, "code": code}
        body.update(fields)
        r = self.post("/projects/%s/functions" % pid, body)
        assert r.status == 201, str(r)
        return r.json

    def invoke(self, pid, fid, payload=None, timeout=60):
        return self.post("/projects/%s/functions/%s/invoke" % (pid, fid), {"payload": payload}, timeout=timeout)

    def create_key(self, pid, name="key"):
        r = self.post("/projects/%s/api-keys" % pid, {"name": name})
        assert r.status == 201, str(r)
        return r.json


def invoke_by_key(daemon, key, slug, raw=b"", timeout=60):
    headers = {"x-api-key": key} if key is not None else {}
    if raw:
        headers["Content-Type"] = "application/json"
    return http_request(daemon.port, "POST", "/api/functions/" + slug, raw, headers, timeout)


# ---- JWT (the daemon's tokens are HS256) -------------------------------------


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(key, claims, header=None):
    head = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing = ("%s.%s" % (head, body)).encode()
    sig = b64url(hmac.new(key, signing, hashlib.sha256).digest())
    return "%s.%s.%s" % (head, body, sig)


# ---- the daemon ---------------------------------------------------------------


def processes_under(path):
    """Pids of processes whose command line names path or whose working
    directory is below it (PostgreSQL's children run in its data directory)."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink("/proc/%s/cwd" % entry)
        except OSError:
            continue
        if path in cmd or cwd == path or cwd.startswith(path + "/"):
            found.append((int(entry), cmd.strip()))
    return found


class Daemon:
    """One zmeshd with its own state directory. With admin_password=None
    the daemon generates the first admin's password and prints it once."""

    def __init__(self, tag, env=None, admin_password="", base=None):
        self.binary = require_daemon_binary()
        self.base = base or short_tempdir(tag)
        self.state_dir = os.path.join(self.base, "state")
        self.err_path = os.path.join(self.base, "zmeshd.err")
        self.admin_email = ADMIN_EMAIL
        self.admin_password = ("Adm1n-" + secrets.token_hex(8)) if admin_password == "" else admin_password
        self.extra_env = dict(env or {})
        self.pg_sock = os.path.join(self.state_dir, "pg", "run")
        self.proc = None
        self.port = None
        self.stdout_lines = []
        self._cv = threading.Condition()
        self._reader = None

    # -- life -------------------------------------------------------------------

    def environ(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ZMESH_") and not k.startswith("PG")
               and k not in ("DATABASE_URL", "JWT_SECRET_KEY")}
        env["ZMESH_ADMIN_EMAIL"] = self.admin_email
        # Cold starts unless a test asks for the pool (test_api_pool.py):
        # what a test counts and times does not depend on refills.
        env["ZMESH_POOL_SIZE"] = "0"
        if self.admin_password is not None:
            env["ZMESH_ADMIN_PASSWORD"] = self.admin_password
        env.update(self.extra_env)
        return env

    def _read_stdout(self, stream):
        for raw in stream:
            with self._cv:
                self.stdout_lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def start(self, *args):
        assert self.proc is None or self.proc.poll() is not None
        with self._cv:
            self.stdout_lines = []
        errf = open(self.err_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [self.binary, "--listen", "127.0.0.1:0", "--state-dir", self.state_dir, *args],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf, env=self.environ())
        finally:
            errf.close()
        self._reader = threading.Thread(target=self._read_stdout, args=(self.proc.stdout,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        with self._cv:
            while True:
                for line in self.stdout_lines:
                    if "listening on" in line:
                        self.port = self._parse_port(line)
                        return self
                if self.proc.poll() is not None:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(min(left, 0.5))
        self._abort()
        pytest.fail("zmeshd did not start (exit %r)\nstdout: %s\nstderr: %s"
                    % (self.proc.returncode, "\n".join(self.stdout_lines), self.log_tail()), pytrace=False)

    @staticmethod
    def _parse_port(line):
        m = re.search(r"\(port (\d+)\)", line) or re.search(r"listening on \S*:(\d+)", line)
        assert m and int(m.group(1)) > 0, "no port in %r" % line
        return int(m.group(1))

    def stop(self):
        """SIGTERM; returns the exit status (the daemon is killed, and the
        test fails, if it does not exit in time)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._abort()
            pytest.fail("zmeshd did not exit within %d s of SIGTERM\n%s" % (STOP_TIMEOUT, self.log_tail()))
        self._reader.join(5)
        return rc

    def leftovers(self, wait=10):
        """Processes still running under the state directory, after giving
        them up to wait seconds to go."""
        deadline = time.monotonic() + wait
        while True:
            left = processes_under(self.state_dir)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def _abort(self):
        """Last resort, so that a failed test leaves nothing running."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        data = os.path.join(self.state_dir, "pg", "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run(["runuser", "-u", "postgres", "--", PG_CTL, "-D", data, "-m", "immediate", "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def cleanup(self):
        self._abort()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- looking inside -----------------------------------------------------------

    def log_text(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def log_events(self):
        out = []
        for line in self.log_text().splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                out.append(ev)
        return out

    def sql(self, query, db="zmesh"):
        """Run SQL as the cluster's superuser; rows as lists of strings."""
        r = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                            "-h", self.pg_sock, "-U", "postgres", "-d", db, "-c", query],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        assert r.returncode == 0, "psql %r: %s" % (query, r.stderr.decode(errors="replace"))
        return [line.split("\t") for line in r.stdout.decode().splitlines() if line]

    def jwt_key(self):
        with open(os.path.join(self.state_dir, "jwt.key"), "rb") as f:
            return f.read().strip()

    def metrics(self):
        r = http_request(self.port, "GET", "/metrics")
        assert r.status == 200, str(r)
        return parse_metrics(r.data.decode())

    def wait_metric(self, name, pred, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            value = self.metrics().get(name, None)
            if value is not None and pred(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError("metric %s never satisfied the condition (last %r)" % (name, value))
            time.sleep(0.05)

    # -- callers ------------------------------------------------------------------

    def anonymous(self):
        return Client(self)

    def login(self, email, password):
        r = http_request(self.port, "POST", "/auth/login", json.dumps({"email": email, "password": password}).encode(),
                         {"Content-Type": "application/json"})
        assert r.status == 200, str(r)
        body = r.json
        return Client(self, body["token"], body["user"]["email"], body["user"]["id"], password)

    def admin(self):
        return self.login(self.admin_email, self.admin_password)


def parse_metrics(text):
    """Prometheus text: {'name{labels}': value} plus, for each name with
    labels, nothing else; comments are skipped."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key.strip()] = float(value)
    return out


def start_daemon(tag, env=None, admin_password=""):
    d = Daemon(tag, env=env, admin_password=admin_password)
    try:
        d.start()
    except BaseException:
        d.cleanup()
        raise
    return d


def stop_and_check(d):
    """The clean stop every daemon of these tests must make."""
    try:
        rc = d.stop()
        left = d.leftovers()
        assert rc == 0, "zmeshd exited %r on SIGTERM\n%s" % (rc, d.log_tail())
        assert not left, "still running after zmeshd stopped: %r" % (left,)
    finally:
        d.cleanup()


# ---- fixtures ---------------------------------------------------------------------

# Values that exist only in the main daemon's environment: a function must
# never see them.
CANARY_NAME = "APP_CANARY_SECRET"
CANARY_VALUE = "canary-" + secrets.token_hex(12)
ZMESH_CANARY_NAME = "ZMESH_CANARY_TOKEN"
ZMESH_CANARY_VALUE = "zcanary-" + secrets.token_hex(12)


@pytest.fixture(scope="session")
def zd():
    """The main daemon: defaults (64K logs, 6M body, 1M code, 16 at once,
    2 s queue wait), an embedded cluster, stopped with SIGTERM at the end."""
    d = start_daemon("main", env={CANARY_NAME: CANARY_VALUE, ZMESH_CANARY_NAME: ZMESH_CANARY_VALUE})
    yield d
    stop_and_check(d)


@pytest.fixture(scope="session")
def zd_tight():
    """A daemon with one invocation at a time, no queue, small bodies."""
    d = start_daemon("tight", env={"ZMESH_CONCURRENCY": "1", "ZMESH_QUEUE_WAIT_MS": "0", "ZMESH_MAX_BODY": "64K"})
    yield d
    stop_and_check(d)


@pytest.fixture(scope="session")
def admin(zd):
    return zd.admin()


@pytest.fixture
def new_user(zd, admin):
    """Factory: a fresh non-admin user of the main daemon, logged in."""

    def make(is_admin=False):
        email = "%s@example.test" % unique("user")
        password = "pw-" + secrets.token_hex(8)
        r = admin.post("/users", {"email": email, "password": password, "is_admin": is_admin})
        assert r.status == 201, str(r)
        return zd.login(email, password)

    return make


@pytest.fixture
def user(new_user):
    return new_user()


@pytest.fixture
def grant_tier(admin):
    """A tier is a plan the operator grants: only an admin sets it."""

    def grant(project, tier):
        r = admin.patch("/projects/" + project["id"], {"tier": tier})
        assert r.status == 200 and r.json["tier"] == tier, str(r)
        return r.json

    return grant


@pytest.fixture
def project(user):
    return user.create_project()


@pytest.fixture
def pgtmp():
    """A throwaway cluster (tests/pg/pgtmp): yields its socket directory."""
    base = short_tempdir("pg")
    r = subprocess.run([PGTMP, "start", base], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if r.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail("pgtmp start: %s" % r.stderr.decode(errors="replace"), pytrace=False)
    try:
        yield r.stdout.decode().strip()
    finally:
        subprocess.run([PGTMP, "stop", base], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def new_uuid():
    return str(uuid.uuid4())
