"""Live logs: GET /projects/{pid}/functions/{fid}/logs/stream as Server-Sent
Events, against real daemons. A line arrives while its invocation still runs;
the end event carries status and duration; a reconnect with Last-Event-ID
resumes with exactly the missing events; a client behind the retention gets a
dropped event; the 64 KiB cap ends with a truncation marker; a row that
commits after a larger id was sent still arrives; another project's user gets
404; the query token works and never reaches the daemon's log; caps give their
errors; a deleted function ends its streams; a line written on one node
reaches a stream on another; SIGTERM is not delayed by an open stream; and
`zmesh logs NAME --follow` prints lines as they come."""

import http.client
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import Daemon, start_daemon, stop_and_check, unique

PSQL = "/usr/bin/psql"
RETENTION_ROWS = 40

# Lines with pauses between them: the stream must show the first long
# before the invocation ends.
SLOW_JS = r"""
exports.handler = async (p) => {
  for (let i = 1; i <= p.n; i++) {
    console.error('line ' + i);
    if (i < p.n) await new Promise((r) => setTimeout(r, p.ms));
  }
  return {done: p.n};
};
"""

# Many long lines at once: past the 64 KiB cap.
BIG_JS = r"""
exports.handler = async (p) => {
  for (let i = 0; i < p.n; i++) console.error(String(i).padStart(4, '0') + 'x'.repeat(p.len));
  return {};
};
"""


class Stream:
    """One SSE connection; events parsed on a thread of its own."""

    def __init__(self, port, path, headers=None, timeout=30):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", path, headers=headers or {})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.events = []
        self.comments = 0
        self.retry = None
        self.closed = False
        self.cv = threading.Condition()
        if self.status != 200:
            self.body = self.resp.read()
            self.conn.close()
            self.closed = True
            return
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def json(self):
        return json.loads(self.body)

    def _read(self):
        ev = {}
        try:
            while True:
                raw = self.resp.readline()
                if not raw:
                    break
                line = raw.decode().rstrip("\n")
                if line == "":
                    if "data" in ev:
                        ev["t"] = time.monotonic()
                        ev["json"] = json.loads(ev["data"])
                        with self.cv:
                            self.events.append(ev)
                            self.cv.notify_all()
                    ev = {}
                    continue
                if line.startswith(":"):
                    with self.cv:
                        self.comments += 1
                        self.cv.notify_all()
                    continue
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "retry":
                    self.retry = int(value)
                elif field in ("event", "id", "data"):
                    ev[field] = value
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def wait(self, pred, timeout=30, what="events"):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %s; got %r" % (what, self.events))
                self.cv.wait(min(left, 0.5))

    def of(self, name):
        with self.cv:
            return [e for e in self.events if e.get("event") == name]

    def lines(self):
        return [e["json"]["line"] for e in self.of("log")]

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        self.conn.close()


def stream_path(p, f, query=""):
    return "/projects/%s/functions/%s/logs/stream%s" % (p["id"], f["id"], query)


def open_stream(d, client, p, f, headers=None, query=""):
    h = {"Authorization": "Bearer " + client.token}
    h.update(headers or {})
    s = Stream(d.port, stream_path(p, f, query), h)
    assert s.status == 200, s.body
    s.wait(lambda s: s.comments >= 1, what="the stream's first comment")
    return s


def invoke_async(client, p, f, payload):
    """A synchronous invocation on a thread: (queue of (time, response))."""
    out = queue.Queue()

    def run():
        r = client.invoke(p["id"], f["id"], payload)
        out.put((time.monotonic(), r))

    threading.Thread(target=run, daemon=True).start()
    return out


@pytest.fixture(scope="module")
def ld():
    d = start_daemon("logs", env={"ZMESH_LOG_STREAMS_MAX": "4", "ZMESH_LOG_STREAMS_PER_PROJECT": "2",
                                  "ZMESH_LOG_RETENTION_ROWS": str(RETENTION_ROWS), "ZMESH_LOG_SWEEP_MS": "300"})
    yield d
    stop_and_check(d)


@pytest.fixture(scope="module")
def ladmin(ld):
    return ld.admin()


@pytest.fixture
def lp(ladmin):
    return ladmin.create_project()


def new_user(d, admin):
    email = "%s@example.test" % unique("user")
    password = "pw-" + secrets.token_hex(8)
    r = admin.post("/users", {"email": email, "password": password})
    assert r.status == 201, str(r)
    return d.login(email, password)


def test_lines_arrive_while_the_invocation_runs_then_its_end(ld, ladmin, lp):
    f = ladmin.deploy(lp["id"], SLOW_JS)
    s = open_stream(ld, ladmin, lp, f)
    try:
        assert s.headers["content-type"].startswith("text/event-stream")
        assert s.headers["cache-control"] == "no-cache"
        assert s.headers["x-accel-buffering"] == "no"
        assert s.retry and s.retry > 0
        done = invoke_async(ladmin, lp, f, {"n": 3, "ms": 1500})
        s.wait(lambda s: s.of("end"), timeout=60, what="the end event")
        t_done, r = done.get(timeout=60)
        assert r.status == 200, str(r)
        iid = r.json["invocation_id"]
        logs = s.of("log")
        assert [e["json"]["line"] for e in logs] == ["line 1", "line 2", "line 3"]
        assert all(e["json"]["invocation_id"] == iid and e["json"]["stream"] == "stderr" for e in logs)
        assert all(e["json"]["ts"].endswith("Z") for e in logs)
        # The first line came while the function still had 3 s to run.
        assert logs[0]["t"] < t_done - 1.5, (logs[0]["t"], t_done)
        end = s.of("end")
        assert len(end) == 1 and end[0]["json"]["invocation_id"] == iid
        assert end[0]["json"]["status"] == "success"
        assert end[0]["json"]["duration_ms"] >= 2900
        # Order: every line, then the end; ids never go back.
        assert s.events.index(end[0]) > s.events.index(logs[-1])
        ids = [int(e["id"]) for e in s.events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        # /metrics: this stream is open, and the rows it read were written.
        m = ld.metrics()
        assert m["zmesh_log_streams"] >= 1, m
        assert m["zmesh_log_lines_written_total"] >= 4, m
        assert "zmesh_log_lines_dropped_total" in m and "zmesh_log_lines_queued" in m, m
    finally:
        s.close()
    ld.wait_metric("zmesh_log_streams", lambda v: v == 0, timeout=20)


def test_reconnect_with_last_event_id_resumes_exactly(ld, ladmin, lp):
    f = ladmin.deploy(lp["id"], SLOW_JS)
    a = open_stream(ld, ladmin, lp, f)
    done = invoke_async(ladmin, lp, f, {"n": 6, "ms": 400})
    try:
        a.wait(lambda s: len(s.of("log")) >= 3, what="three lines")
    finally:
        a.close()
    got = a.of("log")[:3]
    last = got[-1]["id"]
    _, r = done.get(timeout=60)
    assert r.status == 200, str(r)
    seen_a = [e["json"]["line"] for e in a.events if e in a.of("log")]
    # The header and the query parameter resume the same way.
    for how in ({"headers": {"Last-Event-ID": last}}, {"query": "?last_event_id=" + last}):
        b = open_stream(ld, ladmin, lp, f, **how)
        try:
            b.wait(lambda s: s.of("end"), what="the end event")
            lines_b = b.lines()
        finally:
            b.close()
        assert seen_a[:3] == ["line 1", "line 2", "line 3"]
        assert lines_b == ["line %d" % i for i in range(4, 7)], lines_b
        assert b.of("end")[0]["json"]["invocation_id"] == r.json["invocation_id"]
    bad = Stream(ld.port, stream_path(lp, f), {"Authorization": "Bearer " + ladmin.token, "Last-Event-ID": "x1"})
    assert bad.status == 400 and bad.json()["error"]["code"] == "BAD_REQUEST"


def test_a_client_behind_the_retention_gets_a_dropped_event(ld, ladmin, lp):
    f = ladmin.deploy(lp["id"], SLOW_JS)
    r = ladmin.invoke(lp["id"], f["id"], {"n": 100, "ms": 0})
    assert r.status == 200, str(r)
    deadline = time.monotonic() + 30
    while not ld.sql("SELECT 1 FROM log_line_horizon WHERE function_id = '%s'" % f["id"]):
        assert time.monotonic() < deadline, "the sweep never ran"
        time.sleep(0.2)
    time.sleep(1.5)  # every row is in, and the sweeps after that have run
    s = open_stream(ld, ladmin, lp, f, headers={"Last-Event-ID": "0"})
    try:
        s.wait(lambda s: s.of("end"), what="the end event")
        first = s.events[0]
        assert first["event"] == "dropped" and first["json"]["reason"] == "retention", s.events[:2]
        assert first["json"]["after"] == 0 and first["json"]["through"] > 0
        lines = s.lines()
        assert 0 < len(lines) < RETENTION_ROWS
        assert lines == ["line %d" % i for i in range(101 - len(lines), 101)]
    finally:
        s.close()


def test_the_log_cap_ends_with_a_truncation_marker(ld, ladmin, lp):
    f = ladmin.deploy(lp["id"], BIG_JS)
    s = open_stream(ld, ladmin, lp, f)
    try:
        r = ladmin.invoke(lp["id"], f["id"], {"n": 12, "len": 9996})
        assert r.status == 200, str(r)
        s.wait(lambda s: s.of("end"), what="the end event")
        logs = s.of("log")
        marker = logs[-1]["json"]
        assert marker["stream"] == "system" and "truncated" in marker["line"]
        body = [e["json"]["line"] for e in logs[:-1]]
        assert sum(len(x) + 1 for x in body) <= 65536 + 1
        assert body[0] == "0000" + "x" * 9996 and len(body) == 7  # six whole lines and a cut seventh
        assert body[6].startswith("0006") and len(body[6]) < 10000
    finally:
        s.close()
    rec = ladmin.get("/projects/%s/functions/%s/invocations/%s" % (lp["id"], f["id"], r.json["invocation_id"]))
    assert rec.status == 200 and rec.json["logs_truncated"] is True


def test_a_row_committed_after_a_larger_id_still_arrives(ld, ladmin, lp):
    f = ladmin.deploy(lp["id"], SLOW_JS)
    s = open_stream(ld, ladmin, lp, f)
    held = None
    try:
        iid = "00000000-0000-4000-8000-%012d" % secrets.randbelow(10 ** 12)
        # A writer that took its id and commits 2 s later.
        held = subprocess.Popen(
            [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", ld.pg_sock, "-U", "postgres", "-d", "zmesh"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        held.stdin.write(("BEGIN;\nINSERT INTO log_lines (project_id, function_id, invocation_id, line) "
                          "VALUES ('%s', '%s', '%s', 'held');\n" % (lp["id"], f["id"], iid)).encode())
        held.stdin.flush()
        deadline = time.monotonic() + 20
        while not ld.sql("SELECT 1 FROM pg_stat_activity WHERE state = 'idle in transaction' "
                         "AND query LIKE '%%''%s''%%'" % iid):
            assert time.monotonic() < deadline and held.poll() is None, "the held insert did not happen"
            time.sleep(0.1)
        r = ladmin.invoke(lp["id"], f["id"], {"n": 1, "ms": 0})
        assert r.status == 200, str(r)
        s.wait(lambda s: s.of("end"), what="the end event")
        assert s.lines() == ["line 1"]
        time.sleep(1)
        held.stdin.write(b"COMMIT;\n")
        held.stdin.close()
        assert held.wait(timeout=30) == 0
        held_id = int(ld.sql("SELECT id FROM log_lines WHERE invocation_id = '%s'" % iid)[0][0])
        line_id = int(ld.sql("SELECT id FROM log_lines WHERE invocation_id = '%s' AND kind = 'log'"
                             % r.json["invocation_id"])[0][0])
        assert held_id < line_id, "the test did not make the hazard"
        s.wait(lambda s: "held" in s.lines(), timeout=10, what="the held row")
        assert s.lines() == ["line 1", "held"]
    finally:
        if held and held.poll() is None:
            held.kill()
            held.wait()
        s.close()


def test_only_the_projects_members_and_tokens(ld, ladmin, lp):
    f = ladmin.deploy(lp["id"], SLOW_JS)
    other = new_user(ld, ladmin)
    r = Stream(ld.port, stream_path(lp, f), {"Authorization": "Bearer " + other.token})
    assert r.status == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    # Their own project does not reach a function of another.
    theirs = other.create_project()
    r = Stream(ld.port, "/projects/%s/functions/%s/logs/stream" % (theirs["id"], f["id"]),
               {"Authorization": "Bearer " + other.token})
    assert r.status == 404
    r = Stream(ld.port, stream_path(lp, f))
    assert r.status == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
    r = Stream(ld.port, stream_path(lp, f, "?access_token=nope"))
    assert r.status == 401 and r.json()["error"]["code"] == "INVALID_TOKEN"


def test_the_query_token_works_and_is_never_logged(ld, ladmin, lp):
    f = ladmin.deploy(lp["id"], SLOW_JS)
    s = Stream(ld.port, stream_path(lp, f, "?access_token=" + ladmin.token))
    assert s.status == 200
    try:
        r = ladmin.invoke(lp["id"], f["id"], {"n": 1, "ms": 0})
        assert r.status == 200
        s.wait(lambda s: s.of("end"), what="the end event")
        assert s.lines() == ["line 1"]
    finally:
        s.close()
    deadline = time.monotonic() + 10
    while not any(e.get("event") == "http_request" and e.get("path", "").endswith("/logs/stream")
                  and e.get("status") == 200 for e in ld.log_events()):
        assert time.monotonic() < deadline, "the stream's request was never logged"
        time.sleep(0.2)
    secret = ladmin.token.split(".")[2]
    assert secret not in ld.log_text()
    assert "access_token" not in ld.log_text()


def test_stream_caps_per_project_and_per_node(ld, ladmin):
    p1, p2, p3 = (ladmin.create_project() for _ in range(3))
    fs = [ladmin.deploy(p["id"], SLOW_JS) for p in (p1, p2, p3)]
    opened = []
    # Streams of the tests before are released once their thread sees the
    # hang-up (within a poll).
    deadline = time.monotonic() + 10
    while True:
        first = Stream(ld.port, stream_path(p1, fs[0]), {"Authorization": "Bearer " + ladmin.token})
        if first.status == 200:
            break
        assert first.status == 503 and time.monotonic() < deadline, first.status
        time.sleep(0.3)
    try:
        opened.append(first)
        opened.append(open_stream(ld, ladmin, p1, fs[0]))
        r = Stream(ld.port, stream_path(p1, fs[0]), {"Authorization": "Bearer " + ladmin.token})
        assert r.status == 429 and r.json()["error"]["code"] == "RATE_LIMITED", r.body
        assert r.headers.get("retry-after")
        opened += [open_stream(ld, ladmin, p2, fs[1]) for _ in range(2)]
        r = Stream(ld.port, stream_path(p3, fs[2]), {"Authorization": "Bearer " + ladmin.token})
        assert r.status == 503 and r.json()["error"]["code"] == "UNAVAILABLE", r.body
    finally:
        for s in opened:
            s.close()
    # Slots come back once their clients are gone (the next heartbeat or
    # poll notices at the latest).
    deadline = time.monotonic() + 40
    while True:
        r = Stream(ld.port, stream_path(p3, fs[2]), {"Authorization": "Bearer " + ladmin.token})
        if r.status == 200:
            r.close()
            break
        assert r.status == 503 and time.monotonic() < deadline, r.status
        time.sleep(0.5)


def test_deleting_the_function_ends_its_stream(ld, ladmin, lp):
    f = ladmin.deploy(lp["id"], SLOW_JS)
    s = open_stream(ld, ladmin, lp, f)
    try:
        r = ladmin.delete("/projects/%s/functions/%s" % (lp["id"], f["id"]))
        assert r.status in (200, 204), str(r)
        s.wait(lambda s: s.closed, timeout=15, what="the stream's end")
        closed = s.of("closed")
        assert closed and closed[0]["json"]["reason"] == "function_deleted"
    finally:
        s.close()
    # So does deleting its project.
    q = ladmin.create_project()
    g = ladmin.deploy(q["id"], SLOW_JS)
    s = open_stream(ld, ladmin, q, g)
    try:
        r = ladmin.delete("/projects/%s" % q["id"])
        assert r.status in (200, 204), str(r)
        s.wait(lambda s: s.closed, timeout=30, what="the stream's end")
        assert s.of("closed"), s.events
    finally:
        s.close()


def test_sigterm_is_not_delayed_by_an_open_stream():
    d = start_daemon("logterm")
    try:
        a = d.admin()
        p = a.create_project()
        f = a.deploy(p["id"], SLOW_JS)
        s = open_stream(d, a, p, f)
        t0 = time.monotonic()
        rc = d.stop()
        took = time.monotonic() - t0
        assert rc == 0
        assert took < 10, "zmeshd took %.1f s to stop with a stream open" % took
        s.wait(lambda s: s.closed, timeout=5, what="the stream's end")
    finally:
        d.cleanup()


# ---- two nodes ---------------------------------------------------------------------


def psql(sock, db, query):
    r = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", sock, "-U", "postgres",
                        "-d", db, "-c", query], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, r.stderr


def test_a_line_written_on_one_node_reaches_a_stream_on_another(pgtmp):
    psql(pgtmp, "postgres", "CREATE DATABASE zmeshcp")
    url = "postgresql:///zmeshcp?host=%s&user=postgres" % pgtmp
    jwt, password = secrets.token_hex(24), "Adm1n-" + secrets.token_hex(8)
    nodes = []
    try:
        for i in range(2):
            d = Daemon("lognode%d" % i, admin_password=password,
                       env={"DATABASE_URL": url, "ZMESH_PG_SOCKET_DIR": pgtmp, "JWT_SECRET_KEY": jwt})
            d.pg_sock = pgtmp
            nodes.append(d)
            d.start()
        a, b = nodes[0].admin(), nodes[1].admin()
        p = a.create_project()
        f = a.deploy(p["id"], SLOW_JS)
        s = open_stream(nodes[1], b, p, f)
        try:
            done = invoke_async(a, p, f, {"n": 2, "ms": 2000})
            s.wait(lambda s: s.lines()[:1] == ["line 1"], timeout=30, what="the line from the other node")
            assert done.empty(), "the line came only after the invocation ended"
            s.wait(lambda s: s.of("end"), timeout=30, what="the end event")
            _, r = done.get(timeout=30)
            assert s.lines() == ["line 1", "line 2"]
            assert s.of("end")[0]["json"]["invocation_id"] == r.json["invocation_id"]
        finally:
            s.close()
    finally:
        for d in nodes:
            if d.proc and d.proc.poll() is None:
                stop_and_check(d)
            else:
                d.cleanup()


# ---- the client ----------------------------------------------------------------------


def test_cli_logs_follow_prints_lines_as_they_come(ld, ladmin, lp):
    cli = os.environ.get("ZMESH_CLI")
    assert cli, "set ZMESH_CLI to the zmesh binary (ctest does)"
    f = ladmin.deploy(lp["id"], SLOW_JS)
    home = tempfile.mkdtemp(prefix="zlogs-home-")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8"}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_", "LSAN_"))})
    proc = None
    try:
        r = subprocess.run([cli, "login", "--url", "http://127.0.0.1:%d" % ld.port, "--email", ld.admin_email,
                            "--password", ld.admin_password], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([cli, "use", lp["slug"]], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        proc = subprocess.Popen([cli, "logs", f["slug"], "--follow"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        out = queue.Queue()
        threading.Thread(target=lambda: [out.put((time.monotonic(), l.decode())) for l in proc.stdout],
                         daemon=True).start()
        time.sleep(1.5)  # the client connects
        done = invoke_async(ladmin, lp, f, {"n": 3, "ms": 1500})
        got = []
        deadline = time.monotonic() + 40
        while not any("success" in l for _, l in got):
            assert time.monotonic() < deadline, "no end line: %r" % got
            try:
                got.append(out.get(timeout=1))
            except queue.Empty:
                pass
        t_done, r = done.get(timeout=30)
        iid = r.json["invocation_id"]
        lines = [l for _, l in got]
        assert [l.split(" ", 2)[2].rstrip("\n") for l in lines[:3]] == ["line 1", "line 2", "line 3"], lines
        assert all(l.split(" ")[1] == iid[:8] for l in lines), lines
        assert got[0][0] < t_done - 1.5, "the first line came only at the end"
        assert "success" in lines[3] and iid[:8] in lines[3]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) in (0, 130), proc.stderr.read()
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(home, ignore_errors=True)
