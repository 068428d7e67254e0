"""Machinery of the end-to-end benchmark (e2e.py): a zmeshd started for the
run, a keep-alive HTTP client, sequential cases interleaved with the process
variants of harness.py, fixed-duration loads, the bare spawn rate, and the
per-process accounting (RSS, CPU) that says where time and memory go.

Standard library only, like harness.py. Everything that comes from outside
(the daemon's stdout, HTTP responses, /proc) is read with a bound.
"""

import collections
import gc
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time

import harness

PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"

# An invoke answer is a few hundred bytes; anything near this is a bug.
MAX_RESPONSE_BYTES = 1 << 20
MAX_METRICS_BYTES = 4 << 20
MAX_STDOUT_LINE = 4096
MAX_STDOUT_LINES = 1000
HTTP_TIMEOUT_S = 60.0
# The daemon's own grace for in-flight requests is 30 s.
STOP_TIMEOUT_S = 60.0
# Far above any start-up of a runtime: a spawn that takes this long hangs.
SPAWN_TIMEOUT_S = 30.0

LISTENING_RE = re.compile(r"listening on \S+ \(port (\d{1,5})\)")
METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class DaemonError(harness.BenchError):
    """zmeshd did not start, or an API call of the set-up failed."""


# ---------------------------------------------------------------- statistics

def latency_stats(samples_ns):
    """Median, p95, p99 (and p10/p90, mean, extremes) in milliseconds. The
    percentiles interpolate between order statistics ("inclusive"), so with
    fewer than 100 samples p99 is close to the maximum, as it should be."""
    if not samples_ns:
        return None
    ms = sorted(s / 1e6 for s in samples_ns)
    if len(ms) >= 2:
        q = statistics.quantiles(ms, n=100, method="inclusive")
        p10, p50, p90, p95, p99 = q[9], q[49], q[89], q[94], q[98]
    else:
        p10 = p50 = p90 = p95 = p99 = ms[0]
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p50_ms": p50,
        "p10_ms": p10,
        "p90_ms": p90,
        "p95_ms": p95,
        "p99_ms": p99,
        "mean_ms": statistics.fmean(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
    }


def median_or_none(values):
    return statistics.median(values) if values else None


# ---------------------------------------------------------------- parsing

def parse_listening_port(line):
    """The port of zmeshd's "listening on HOST:PORT (port N)" line, or None."""
    m = LISTENING_RE.search(line)
    if not m:
        return None
    port = int(m.group(1))
    return port if 0 < port < 65536 else None


def parse_metrics(text):
    """Prometheus text exposition -> {(name, ((label, value), ...)): float}.
    Lines that do not parse are skipped: the benchmark reads a few gauges,
    it is no validator of the format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_RE.match(line.strip())
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        labels = tuple(sorted(LABEL_RE.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = value
    return out


def metric_series(metrics, name):
    """{labels dict as a sorted tuple: value} of one metric name."""
    return {labels: v for (n, labels), v in metrics.items() if n == name}


# ---------------------------------------------------------------- /proc

def _proc_text(path):
    return harness._read_text(path, limit=1 << 16)


def vmrss_bytes(pid):
    """Resident set of one process (its own pages, not its children's), or
    None when it is gone."""
    text = _proc_text(f"/proc/{pid}/status")
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def ppid_of(pid):
    text = _proc_text(f"/proc/{pid}/status")
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("PPid:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
    return None


def children_of(pid):
    """Pids whose parent is pid (a scan of /proc: children may come and go
    while it runs, which only makes it approximate)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and ppid_of(int(entry)) == pid:
            found.append(int(entry))
    return found


def cpu_ticks(pid):
    """utime + stime of a process, all its threads, in clock ticks; None when
    it is gone."""
    text = _proc_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    # The command name is in parentheses and may hold spaces or parentheses.
    rest = text[text.rfind(")") + 2:].split()
    if len(rest) < 13:
        return None
    try:
        return int(rest[11]) + int(rest[12])
    except ValueError:
        return None


def machine_cpu_ticks():
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    text = _proc_text("/proc/stat") or ""
    for line in text.splitlines():
        if line.startswith("cpu "):
            fields = [int(x) for x in line.split()[1:] if x.isdigit()]
            if len(fields) < 5:
                break
            # guest time is already inside user time
            total = sum(fields[:8])
            idle = fields[3] + fields[4]
            return total - idle, total
    return None, None


def self_cpu_seconds():
    t = os.times()
    return t.user + t.system


SANDBOX_CGROUP_PREFIX = "zmesh"  # zmeshd's default


def sandboxes_cpu_ns(prefix=SANDBOX_CGROUP_PREFIX, root="/sys/fs/cgroup"):
    """CPU time of every sandbox zmeshd ever ran under its cgroup prefix, in
    ns: a parent group's counter includes the groups removed under it. v1
    cpuacct where it is mounted (zmeshd uses it there), else v2's cpu.stat.
    None where neither can be read."""
    text = _proc_text(os.path.join(root, "cpuacct", prefix, "cpuacct.usage"))
    if text is not None and text.strip().isdigit():
        return int(text.strip())
    for base in (root, os.path.join(root, "unified")):
        text = _proc_text(os.path.join(base, prefix, "cpu.stat"))
        for line in (text or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec" and value.strip().isdigit():
                return int(value.strip()) * 1000
    return None


class CpuProbe:
    """CPU used over a window by the machine, the sandboxes (their cgroups:
    runtime, wrapper and the sandbox's init, the warm pool's start-ups
    included), the daemon's spawner, the daemon process, its PostgreSQL
    cluster and this benchmark. Processes that start inside the window are
    counted from zero; those that end inside it are lost, so the PostgreSQL
    figure is a lower bound (its backends are pooled and live long). The
    sandboxes' figure counts every zmeshd on the machine with the default
    prefix: the other daemon of a run is idle during the loads."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.hz = os.sysconf("SC_CLK_TCK")

    def _spawner_ticks(self):
        total = {}
        for pid in self.daemon.spawner_pids():
            t = cpu_ticks(pid)
            if t is not None:
                total[pid] = t
        return total

    def _pg_ticks(self):
        total = {}
        post = self.daemon.postmaster_pid()
        if post is None:
            return total
        for pid in [post] + children_of(post):
            t = cpu_ticks(pid)
            if t is not None:
                total[pid] = t
        return total

    def start(self):
        self.t0 = time.monotonic()
        self.machine0, _ = machine_cpu_ticks()
        self.daemon0 = cpu_ticks(self.daemon.pid)
        self.pg0 = self._pg_ticks()
        self.spawner0 = self._spawner_ticks()
        self.sandboxes0 = sandboxes_cpu_ns()
        self.self0 = self_cpu_seconds()

    def stop(self):
        """CPU seconds of each part over the window."""
        machine1, _ = machine_cpu_ticks()
        daemon1 = cpu_ticks(self.daemon.pid)
        pg1 = self._pg_ticks()
        spawner1 = self._spawner_ticks()
        sandboxes1 = sandboxes_cpu_ns()
        hz = float(self.hz)
        pg = sum(t - self.pg0.get(pid, 0) for pid, t in pg1.items()) / hz
        return {
            "sandboxes_s": (sandboxes1 - self.sandboxes0) / 1e9 if None not in (sandboxes1, self.sandboxes0)
            else None,
            "spawner_s": sum(t - self.spawner0.get(pid, 0) for pid, t in spawner1.items()) / hz,
            "window_s": time.monotonic() - self.t0,
            "machine_s": (machine1 - self.machine0) / hz if None not in (machine1, self.machine0) else None,
            "zmeshd_s": (daemon1 - self.daemon0) / hz if None not in (daemon1, self.daemon0) else None,
            "postgres_s": pg,
            "bench_client_s": self_cpu_seconds() - self.self0,
        }


# ---------------------------------------------------------------- the daemon

class Daemon:
    """One zmeshd with its own temporary state directory and embedded
    PostgreSQL cluster, on a port the kernel picks."""

    def __init__(self, binary, label, pool_size, env_extra, admin_password):
        self.binary = binary
        self.label = label
        self.pool_size = pool_size
        self.admin_email = "bench@zmesh.local"
        self.admin_password = admin_password
        # A unix socket path holds at most 107 bytes and the cluster's is
        # under the state directory: stay in /tmp whatever $TMPDIR says.
        self.base = tempfile.mkdtemp(prefix=f"ze2e-{label}-", dir="/tmp")
        # The cluster runs as the postgres user, which must reach its data.
        os.chmod(self.base, 0o755)
        self.state_dir = os.path.join(self.base, "state")
        self.err_path = os.path.join(self.base, "zmeshd.err")
        self.env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": self.base,
            "ZMESH_ADMIN_EMAIL": self.admin_email,
            "ZMESH_ADMIN_PASSWORD": admin_password,
        }
        self.env.update(env_extra)
        self.argv = [binary, "--listen", "127.0.0.1:0", "--state-dir", self.state_dir,
                     "--pool-size", str(pool_size)]
        self.proc = None
        self.port = None
        self.pid = None
        self.stdout_lines = []
        self._cv = threading.Condition()
        self._reader = None
        self._stdout_done = False

    def start(self):
        """Starts the process; wait_ready() waits for it to listen. Two
        daemons can start side by side (each initialises a cluster)."""
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err, close_fds=True,
                                         start_new_session=True)
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read_stdout, name=f"zmeshd-{self.label}-stdout",
                                        daemon=True)
        self._reader.start()

    def _read_stdout(self):
        stream = self.proc.stdout
        while True:
            line = stream.readline(MAX_STDOUT_LINE)
            if not line:
                break
            with self._cv:
                if len(self.stdout_lines) < MAX_STDOUT_LINES:
                    self.stdout_lines.append(line.decode("utf-8", "replace").rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._stdout_done = True
            self._cv.notify_all()

    def wait_ready(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while True:
                for line in self.stdout_lines:
                    port = parse_listening_port(line)
                    if port is not None:
                        self.port = port
                        return port
                left = deadline - time.monotonic()
                if self._stdout_done or left <= 0:
                    break
                self._cv.wait(min(left, 0.5))
        rc = self.proc.poll()
        why = f"exited with status {rc}" if rc is not None else f"did not listen within {timeout_s:g} s"
        raise DaemonError(f"zmeshd ({self.label}) {why}; stderr ends with: {self.log_tail()}")

    def log_tail(self, limit=1500):
        try:
            with open(self.err_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - limit))
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return "(no log)"

    def postmaster_pid(self):
        text = _proc_text(os.path.join(self.state_dir, "pg", "data", "postmaster.pid"))
        if not text:
            return None
        first = text.split("\n", 1)[0].strip()
        return int(first) if first.isdigit() else None

    def spawner_pids(self):
        """The spawner zmeshd forks before its threads start: a child that
        runs zmeshd's own binary in zmeshd's pid namespace. The sandboxes'
        init processes are children too (the spawner clones them as its
        siblings) and run the same binary, but each in a pid namespace of
        its own."""
        me = os.path.realpath(self.binary)
        try:
            own_ns = os.readlink(f"/proc/{self.pid}/ns/pid")
        except OSError:
            return []
        found = []
        for pid in children_of(self.pid):
            try:
                if os.readlink(f"/proc/{pid}/exe") == me and os.readlink(f"/proc/{pid}/ns/pid") == own_ns:
                    found.append(pid)
            except OSError:
                continue
        return found

    def stop(self):
        """SIGTERM and wait; returns the exit status, or None if it had to
        be killed. Whatever happens, no cluster is left running."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                rc = None
            if self._reader is not None:
                self._reader.join(5)
            self.proc.stdout.close()
        data = os.path.join(self.state_dir, "pg", "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            # zmeshd died without stopping its cluster: stop it, or it
            # would outlive the benchmark.
            try:
                subprocess.run(["runuser", "-u", "postgres", "--", PG_CTL, "-D", data, "-m", "immediate",
                                "stop"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=60, check=False)
            except (OSError, subprocess.TimeoutExpired):
                pass
        return rc

    def cleanup(self):
        shutil.rmtree(self.base, ignore_errors=True)


# ---------------------------------------------------------------- HTTP

class HttpError(Exception):
    pass


class Client:
    """One keep-alive connection, reused for every request, so that TCP set-up
    is never inside a timing. A connection the server closed is reopened
    outside the timing and counted."""

    def __init__(self, port, timeout=HTTP_TIMEOUT_S):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.connects = 0
        self.retries = 0

    def close(self):
        self.conn.close()

    def _ensure_connected(self):
        if self.conn.sock is None:
            self.conn.connect()
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connects += 1
            return True
        return False

    def request(self, method, path, body=None, headers=None):
        """-> (status, data, elapsed_ns): elapsed from just before the request
        is written to just after the whole body is read."""
        headers = headers or {}
        for attempt in (0, 1):
            fresh = self._ensure_connected()
            try:
                t0 = time.perf_counter_ns()
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read(MAX_RESPONSE_BYTES + 1)
                t1 = time.perf_counter_ns()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                # The server may close an idle keep-alive connection just as
                # a request goes out; once on a reused connection, retry.
                if attempt == 0 and not fresh:
                    self.retries += 1
                    continue
                raise
            except (OSError, http.client.HTTPException):
                self.conn.close()
                raise
            if len(data) > MAX_RESPONSE_BYTES:
                self.conn.close()
                raise HttpError(f"{method} {path}: response over {MAX_RESPONSE_BYTES} bytes")
            if not resp.isclosed():
                resp.read()
            return resp.status, data, t1 - t0
        raise AssertionError("unreachable")


def body_json(data):
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def excerpt(data, limit=300):
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
    text = text.strip()
    return text[:limit] + "..." if len(text) > limit else text


def error_code(body):
    err = body.get("error") if isinstance(body, dict) else None
    return err.get("code") if isinstance(err, dict) else None


class Api:
    """The set-up calls of the benchmark: log in, create a project and its
    functions. Any unexpected answer stops the run with the answer in it."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.client = Client(daemon.port)
        self.token = None

    def close(self):
        self.client.close()

    def call(self, method, path, payload=None, expect=(200, 201)):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        body = json.dumps(payload).encode() if payload is not None else None
        try:
            status, data, _ = self.client.request(method, path, body, headers)
        except (OSError, http.client.HTTPException, HttpError) as e:
            raise DaemonError(f"zmeshd ({self.daemon.label}): {method} {path}: {e}")
        parsed = body_json(data)
        if status not in expect or not isinstance(parsed, dict):
            raise DaemonError(f"zmeshd ({self.daemon.label}): {method} {path} -> {status}: {excerpt(data)}")
        return parsed

    def login(self):
        out = self.call("POST", "/auth/login",
                        {"email": self.daemon.admin_email, "password": self.daemon.admin_password}, (200,))
        token = out.get("token")
        if not isinstance(token, str) or not token:
            raise DaemonError(f"zmeshd ({self.daemon.label}): login answered no token")
        self.token = token
        return token

    def create_project(self, name, tier):
        project = self.call("POST", "/projects", {"name": name}, (201,))
        pid = project.get("id")
        if not isinstance(pid, str):
            raise DaemonError(f"zmeshd ({self.daemon.label}): project without an id")
        patched = self.call("PATCH", f"/projects/{pid}", {"tier": tier}, (200,))
        if patched.get("tier") != tier:
            raise DaemonError(f"zmeshd ({self.daemon.label}): the project's tier is {patched.get('tier')!r}, "
                              f"not {tier!r}")
        return pid

    def deploy(self, pid, name, language, code):
        fn = self.call("POST", f"/projects/{pid}/functions", {"name": name, "language": language, "code": code},
                       (201,))
        fid = fn.get("id")
        if not isinstance(fid, str):
            raise DaemonError(f"zmeshd ({self.daemon.label}): function without an id")
        return fid

    def metrics(self):
        try:
            status, data, _ = self.client.request("GET", "/metrics")
        except (OSError, http.client.HTTPException, HttpError) as e:
            raise DaemonError(f"zmeshd ({self.daemon.label}): GET /metrics: {e}")
        if status != 200 or len(data) > MAX_METRICS_BYTES:
            raise DaemonError(f"zmeshd ({self.daemon.label}): GET /metrics -> {status}")
        return parse_metrics(data.decode("utf-8", "replace"))

    def wait_pool_full(self, timeout_s):
        """Waits until every runtime's warm pool holds what it aims at (its
        size follows recent demand, within pool_size), so that a phase starts
        from the state an idle daemon is in. Returns the seconds waited, or
        None if the pool did not fill in time."""
        if self.daemon.pool_size == 0:
            return 0.0
        t0 = time.monotonic()
        while True:
            m = self.metrics()
            ready = metric_series(m, "zmesh_pool_ready")
            target = metric_series(m, "zmesh_pool_target")
            # Both series are keyed by their labels (the runtime).
            if ready and target and all(ready.get(labels, 0) >= v for labels, v in target.items()):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout_s:
                return None
            time.sleep(0.05)


# ---------------------------------------------------------------- sequential cases

class Case:
    """One thing timed in the interleaved sequential phase: an HTTP invoke
    or a process run. samples_ns holds clean runs only; failures the others."""

    kind = None

    def __init__(self, workload, name, note=None):
        self.workload = workload
        self.name = name
        self.note = note
        self.samples_ns = []
        # For HTTP cases, the answer's "start" of each sample, in order.
        self.sample_starts = []
        self.failures = []
        self.broken = None

    @property
    def key(self):
        return f"{self.workload}/{self.name}"

    def run(self):
        """-> (elapsed_ns or None, error or None, details or None)."""
        raise NotImplementedError

    def record(self, details):
        pass


class HttpInvokeCase(Case):
    """POST /projects/{pid}/functions/{fid}/invoke over one keep-alive
    connection; the answer must be a success with the expected result."""

    kind = "http"

    def __init__(self, workload, name, daemon, token, pid, fid, expected, expect_start=None, note=None,
                 display_path=None):
        super().__init__(workload, name, note)
        self.daemon = daemon
        self.client = Client(daemon.port)
        self.path = f"/projects/{pid}/functions/{fid}/invoke"
        # Ids change with every run; the results name the function instead.
        self.display_path = display_path or self.path
        self.headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
        self.body = json.dumps({"payload": {"x": 1}}).encode()
        self.expected = expected
        self.expect_start = expect_start
        self.starts = collections.Counter()
        self.wall_ms = []
        self.outside_ms = []
        self.cpu_ms = []
        self.memory_bytes = []

    def command(self):
        return f"POST {self.display_path} {self.body.decode()} (zmeshd {self.daemon.label}, keep-alive)"

    def run(self):
        try:
            status, data, elapsed = self.client.request("POST", self.path, self.body, self.headers)
        except (OSError, http.client.HTTPException, HttpError) as e:
            return None, f"HTTP: {e}", None
        return (elapsed,) + check_invoke(status, data, self.expected, self.expect_start)

    def record(self, details):
        self.starts[details["start"]] += 1
        self.sample_starts.append(details["start"])
        wall = details.get("wall_ms")
        if wall is not None:
            self.wall_ms.append(wall)
            self.outside_ms.append(details["elapsed_ms"] - wall)
        if details.get("cpu_ms") is not None:
            self.cpu_ms.append(details["cpu_ms"])
        if details.get("memory_bytes") is not None:
            self.memory_bytes.append(details["memory_bytes"])


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def check_invoke(status, data, expected, expect_start=None):
    """-> (error or None, details or None) of one invoke answer."""
    body = body_json(data)
    if status != 200:
        return f"HTTP {status} {error_code(body) or ''}: {excerpt(data)}".replace("  ", " "), None
    if not isinstance(body, dict):
        return f"HTTP 200 with a body that is not a JSON object: {excerpt(data)}", None
    if body.get("status") != "success":
        return f"status {body.get('status')!r}: {excerpt(data)}", None
    if body.get("result") != expected:
        return f"result {excerpt(json.dumps(body.get('result')))}, expected {json.dumps(expected)}", None
    start = body.get("start")
    if start not in ("warm", "cold"):
        return f"start is {start!r}, not warm or cold", None
    if expect_start is not None and start != expect_start:
        return f"start is {start!r}, expected {expect_start!r}", None
    metrics = body.get("metrics") if isinstance(body.get("metrics"), dict) else {}
    return None, {"start": start, "wall_ms": _number(metrics.get("wall_ms")),
                  "cpu_ms": _number(metrics.get("cpu_ms")),
                  "memory_bytes": _number(metrics.get("memory_bytes"))}


class ProcessCase(Case):
    """A harness.Variant run by harness.Runner: the same spawn-to-reap
    timing as launch.py and wrapper.py."""

    kind = "process"

    def __init__(self, variant, runner):
        super().__init__(variant.workload, variant.name, variant.note)
        self.variant = variant
        self.runner = runner

    def command(self):
        cmd = self.variant.command_line()
        return cmd + (" < invocation on a pipe" if self.variant.make_stdin is not None else "")

    def run(self):
        # stderr goes to a memory file rather than /dev/null so that a failed
        # run says why; the programs write nothing there when they succeed,
        # so the timing is the same.
        elapsed, error = self.runner.run(self.variant, capture_stderr=True)
        return elapsed, error, None


def precheck_case(case):
    """One untimed run; sets case.broken when it does not run cleanly."""
    if case.kind == "process":
        error = harness.precheck(case.runner, case.variant)
    else:
        _, error, _ = case.run()
    if error is not None:
        case.broken = f"pre-check failed: {error}"
    return case.broken


def run_cases_interleaved(cases, rounds, warmup, rng, progress=None):
    """Round-robin over the cases, order shuffled per round, as
    harness.run_interleaved does for processes: a burst of load from
    elsewhere lands on every case alike. The first `warmup` rounds are not
    recorded."""
    live = [c for c in cases if c.broken is None]
    total = warmup + rounds
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(total):
            recorded = r >= warmup
            batch = list(live)
            rng.shuffle(batch)
            for c in batch:
                elapsed, error, details = c.run()
                if not recorded:
                    continue
                if error is None:
                    c.samples_ns.append(elapsed)
                    if details is not None:
                        details["elapsed_ms"] = elapsed / 1e6
                        c.record(details)
                else:
                    c.failures.append({"round": r - warmup, "error": error})
            if progress is not None:
                progress(r + 1, total)
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()


# ---------------------------------------------------------------- loads

def _join_all(threads, deadline):
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threads if t.is_alive()]


def run_http_load(daemon, path, token, expected, concurrency, duration_s, sample_interval_s=0.1):
    """`concurrency` clients, each on its own keep-alive connection, invoke
    back to back for duration_s; a request started before the end runs to
    completion. Meanwhile zmeshd's VmRSS is sampled. Returns counts, the
    latency of the 200s, the throughput of the 200s and the RSS samples."""
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
    body = json.dumps({"payload": {"x": 1}}).encode()
    clients = []
    try:
        for _ in range(concurrency):
            c = Client(daemon.port)
            c._ensure_connected()
            clients.append(c)
    except OSError as e:
        for c in clients:
            c.close()
        return {"concurrency": concurrency, "error": f"could not connect: {e}"}

    barrier = threading.Barrier(concurrency + 1)
    results = [[] for _ in range(concurrency)]
    finished = [None] * concurrency
    stop_at = [0.0]

    def worker(i):
        client = clients[i]
        out = results[i]
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        while time.monotonic() < stop_at[0]:
            try:
                status, data, elapsed = client.request("POST", path, body, headers)
            except (OSError, http.client.HTTPException, HttpError) as e:
                out.append(("transport", None, str(e)[:200], None))
                # Do not spin on a dead server.
                time.sleep(0.05)
                continue
            error, details = check_invoke(status, data, expected)
            if error is None:
                out.append(("ok", elapsed, None, details["start"]))
            else:
                out.append((status, elapsed, error_code(body_json(data)) or error[:200], None))
        finished[i] = time.monotonic()

    threads = [threading.Thread(target=worker, args=(i,), name=f"load-{i}", daemon=True)
               for i in range(concurrency)]
    for t in threads:
        t.start()
    probe = CpuProbe(daemon)
    rss = []
    load_start = harness.loadavg()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        probe.start()
        t0 = time.monotonic()
        stop_at[0] = t0 + duration_s
        barrier.wait()
        deadline = stop_at[0] + HTTP_TIMEOUT_S + 30
        while time.monotonic() < deadline:
            v = vmrss_bytes(daemon.pid)
            if v is not None:
                rss.append(v)
            alive = [t for t in threads if t.is_alive()]
            if not alive:
                break
            alive[0].join(sample_interval_s)
        cpu = probe.stop()
        # Throughput over the time the clients were busy, not over this
        # loop's sampling period.
        ends = [f for f in finished if f is not None]
        elapsed_s = (max(ends) if ends else time.monotonic()) - t0
        # The last sample is taken once every request of the load ended.
        v = vmrss_bytes(daemon.pid)
        if v is not None:
            rss.append(v)
        hung = _join_all(threads, time.monotonic())
    finally:
        if gc_was_enabled:
            gc.enable()
        for c in clients:
            c.close()

    ok_ns, other, transport, starts = [], collections.Counter(), collections.Counter(), collections.Counter()
    for out in results:
        for kind, elapsed, what, start in out:
            if kind == "ok":
                ok_ns.append(elapsed)
                starts[start] += 1
            elif kind == "transport":
                transport[what] += 1
            else:
                other[f"{kind} {what}"] += 1
    requests = sum(len(r) for r in results)
    return {
        "concurrency": concurrency,
        "duration_s": duration_s,
        "elapsed_s": elapsed_s,
        "requests": requests,
        "ok": len(ok_ns),
        "non_200": dict(other),
        "transport_errors": dict(transport),
        "hung_clients": len(hung),
        "ok_per_s": len(ok_ns) / elapsed_s if elapsed_s > 0 else None,
        "latency_ok": latency_stats(ok_ns),
        "latency_samples_ns": ok_ns,
        "starts": dict(starts),
        "zmeshd_rss_bytes": {"samples": len(rss), "peak": max(rss) if rss else None,
                             "end": rss[-1] if rss else None},
        "cpu_s": cpu,
        "loadavg_start": load_start,
        "loadavg_end": harness.loadavg(),
        "reconnects": sum(max(0, c.connects - 1) for c in clients),
        "retries": sum(c.retries for c in clients),
    }


def spawn_and_wait(argv, env, devnull, timeout_s=SPAWN_TIMEOUT_S):
    """One posix_spawn + wait, safe from any thread (the harness's Runner
    uses SIGALRM and is for the main thread only). -> (elapsed_ns, error)."""
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
               (os.POSIX_SPAWN_DUP2, devnull, 2)]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        pidfd = None
    if pidfd is not None:
        try:
            ready, _, _ = select.select([pidfd], [], [], timeout_s)
        finally:
            os.close(pidfd)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None, f"did not exit within {timeout_s:g} s"
    _, status = os.waitpid(pid, 0)
    t1 = time.perf_counter_ns()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        return t1 - t0, f"exit status {code}" if code > 0 else f"killed by signal {-code}"
    return t1 - t0, None


def run_spawn_rate(argv, env, concurrency, duration_s):
    """The machine's bare spawn rate: `concurrency` threads, each spawning
    and reaping argv back to back for duration_s."""
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    barrier = threading.Barrier(concurrency + 1)
    results = [[] for _ in range(concurrency)]
    stop_at = [0.0]

    def worker(i):
        out = results[i]
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        while time.monotonic() < stop_at[0]:
            try:
                out.append(spawn_and_wait(argv, env, devnull))
            except OSError as e:
                out.append((None, f"spawn failed: {e}"))
                time.sleep(0.05)

    threads = [threading.Thread(target=worker, args=(i,), name=f"spawn-{i}", daemon=True)
               for i in range(concurrency)]
    for t in threads:
        t.start()
    busy0, _ = machine_cpu_ticks()
    load_start = harness.loadavg()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.monotonic()
        stop_at[0] = t0 + duration_s
        barrier.wait()
        hung = _join_all(threads, stop_at[0] + SPAWN_TIMEOUT_S + 10)
        elapsed_s = time.monotonic() - t0
    finally:
        if gc_was_enabled:
            gc.enable()
        os.close(devnull)
    busy1, _ = machine_cpu_ticks()
    ok_ns = [e for out in results for e, err in out if err is None]
    errors = collections.Counter(err for out in results for _, err in out if err is not None)
    return {
        "concurrency": concurrency,
        "duration_s": duration_s,
        "elapsed_s": elapsed_s,
        "runs": sum(len(r) for r in results),
        "ok": len(ok_ns),
        "errors": dict(errors),
        "hung_threads": len(hung),
        "ok_per_s": len(ok_ns) / elapsed_s if elapsed_s > 0 else None,
        "latency_ok": latency_stats(ok_ns),
        "latency_samples_ns": ok_ns,
        "cpu_s": {"window_s": elapsed_s,
                  "machine_s": (busy1 - busy0) / os.sysconf("SC_CLK_TCK")
                  if None not in (busy0, busy1) else None},
        "loadavg_start": load_start,
        "loadavg_end": harness.loadavg(),
    }


def _sum_counts(dicts):
    total = collections.Counter()
    for d in dicts:
        total.update(d)
    return dict(total)


def _sum_or_none(values):
    return None if any(v is None for v in values) else sum(values)


def merge_slices(slices):
    """One load (or spawn rate) from the slices it was run in: counts and
    CPU add up, throughput is over the summed busy time, percentiles are of
    all the samples, RSS keeps the peak and the last slice's end. The
    per-slice throughput and load average stay in "slices" so that a slice
    run during a burst from elsewhere can be seen."""
    if len(slices) == 1:
        out = dict(slices[0])
    else:
        first, last = slices[0], slices[-1]
        errors = [s["error"] for s in slices if s.get("error")]
        good = [s for s in slices if not s.get("error")]
        if not good:
            return {"concurrency": first["concurrency"], "error": errors[0]}
        out = {k: v for k, v in last.items() if k not in ("error",)}
        elapsed = sum(s["elapsed_s"] for s in good)
        ok = sum(s["ok"] for s in good)
        samples = [x for s in good for x in s["latency_samples_ns"]]
        out.update({
            "duration_s": sum(s["duration_s"] for s in good),
            "elapsed_s": elapsed,
            "ok": ok,
            "ok_per_s": ok / elapsed if elapsed > 0 else None,
            "latency_ok": latency_stats(samples),
            "latency_samples_ns": samples,
            "loadavg_start": first.get("loadavg_start"),
            "loadavg_end": last.get("loadavg_end"),
        })
        for key in ("requests", "runs", "hung_clients", "hung_threads", "reconnects", "retries"):
            if key in last:
                out[key] = sum(s.get(key, 0) for s in good)
        for key in ("non_200", "transport_errors", "errors", "starts"):
            if key in last:
                out[key] = _sum_counts(s.get(key, {}) for s in good)
        cpu_keys = last.get("cpu_s", {}).keys()
        out["cpu_s"] = {k: _sum_or_none([s["cpu_s"].get(k) for s in good]) for k in cpu_keys}
        if "zmeshd_rss_bytes" in last:
            peaks = [s["zmeshd_rss_bytes"]["peak"] for s in good if s["zmeshd_rss_bytes"]["peak"] is not None]
            out["zmeshd_rss_bytes"] = {
                "samples": sum(s["zmeshd_rss_bytes"]["samples"] for s in good),
                "peak": max(peaks) if peaks else None,
                "end": good[-1]["zmeshd_rss_bytes"]["end"],
            }
        if errors:
            out["error"] = "; ".join(errors)
    out["slices"] = [{"elapsed_s": s.get("elapsed_s"), "ok": s.get("ok"), "ok_per_s": s.get("ok_per_s"),
                      "loadavg_start": s.get("loadavg_start"), "loadavg_end": s.get("loadavg_end"),
                      "error": s.get("error")} for s in slices]
    samples = out.pop("latency_samples_ns", None) or []
    out["latency_samples_ms"] = [round(x / 1e6, 3) for x in samples]
    return out


# ---------------------------------------------------------------- goals

def goal(name, value, limit, kind, unit, ci=None, ci_of=None, note=None):
    """A goal line: kind "at_most" (value <= limit) or "at_least" (value >=
    limit). A goal that could not be measured is never reported as met."""
    if value is None or limit is None:
        met = None
    elif kind == "at_least":
        met = value >= limit
    else:
        met = value <= limit
    return {"goal": name, "value": value, "limit": limit, "kind": kind, "unit": unit,
            "status": "not measured" if met is None else ("met" if met else "missed"),
            "ci95": ci, "ci95_of": ci_of, "note": note}


def fmt_value(value, unit):
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "x":
        return f"×{value:.3f}"
    if unit == "MB":
        return f"{value / 1e6:.1f} MB"
    return f"{value:g} {unit}"


def goals_markdown(goals):
    lines = []
    for g in goals:
        status = "**met**" if g["status"] == "met" else f"**{g['status'].upper()}**"
        op = "≥" if g["kind"] == "at_least" else "≤"
        ci = f"; 95% CI of {g['ci95_of']}: {harness.fmt_ci(g['ci95'])}" if g.get("ci95") else ""
        note = f" ({g['note']})" if g.get("note") else ""
        lines.append(f"- {g['goal']}: {fmt_value(g['value'], g['unit'])} "
                     f"(limit {op} {fmt_value(g['limit'], g['unit'])}{ci}) — {status}{note}")
    return "\n".join(lines)
