"""End-to-end tests of zmesh-sandbox: real programs run in a real sandbox.

Every test starts the CLI as a subprocess and judges what happened from the outside (exit
status, the --report file, the host's processes, cgroups and mounts) and from the inside,
through the probe binary (tests/probes/probe.c), which prints what the kernel let it do.

Environment:
  ZMESH_SANDBOX  path of zmesh-sandbox (default: build/sandbox/zmesh-sandbox)
  ZMESH_PROBE    path of the probe (default: build/tests/zmesh-probe)

The sandbox needs root (namespaces, cgroups, mounts, setting the uid), so the tests do too:
run as anyone else they fail with a message saying so.
"""

import glob
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SANDBOX = os.environ.get("ZMESH_SANDBOX") or str(REPO / "build/sandbox/zmesh-sandbox")
PROBE = os.environ.get("ZMESH_PROBE") or str(REPO / "build/tests/zmesh-probe")
PROBE_DIR_INSIDE = "/opt/probe"
PROBE_INSIDE = f"{PROBE_DIR_INSIDE}/{os.path.basename(PROBE)}"

UID_BASE = 200000
UID_SLOTS = 1024
CONTROLLERS = ("memory", "cpu", "pids")
MiB = 1024 * 1024

# Upper bound for any single CLI run; the sandbox's own default timeout is 10 s.
HOST_TIMEOUT_S = 60

REPORT_KEYS = {
    "status",
    "exit_code",
    "signal",
    "timed_out",
    "oom_killed",
    "wall_ms",
    "cpu_ms",
    "memory_peak_bytes",
}


# ---- running the sandbox ------------------------------------------------------------------


class Run:
    def __init__(self, argv, proc, report, host_wall_s):
        self.argv = argv
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.report = report
        self.host_wall_s = host_wall_s

    def json(self):
        """The probe's answer: the last non-empty line of stdout, as JSON."""
        text = self.stdout.decode("utf-8", "replace")
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines, f"no output from {self.argv}: rc={self.rc} stderr={self.stderr[-2000:]!r}"
        return json.loads(lines[-1])

    def __repr__(self):
        return (
            f"Run(rc={self.rc}, report={self.report}, stdout={self.stdout[-500:]!r}, "
            f"stderr={self.stderr[-1000:]!r}, argv={self.argv})"
        )


def run_sandbox(program, opts=(), *, stdin=b"", env=None, report=True, bind_probe=False):
    """Runs PROGRAM (a list) in the sandbox and returns a Run; the report is None if absent."""
    with tempfile.TemporaryDirectory(prefix="zmesh-sbxtest-") as tmp:
        report_path = os.path.join(tmp, "report.json")
        argv = [SANDBOX, *opts]
        if bind_probe:
            argv += ["--bind", f"{os.path.dirname(PROBE)}:{PROBE_DIR_INSIDE}"]
        if report:
            argv += ["--report", report_path]
        argv += ["--", *program]
        start = time.monotonic()
        proc = subprocess.run(
            argv,
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=os.environ.copy() if env is None else env,
            timeout=HOST_TIMEOUT_S,
        )
        wall = time.monotonic() - start
        rep = None
        if report and os.path.exists(report_path):
            with open(report_path, "rb") as f:
                raw = f.read()
            assert raw, f"empty report from {argv}"
            rep = json.loads(raw)
    return Run(argv, proc, rep, wall)


def run_probe(*args, opts=(), **kw):
    return run_sandbox([PROBE_INSIDE, *[str(a) for a in args]], opts, bind_probe=True, **kw)


def popen_probe(*args, opts=()):
    """Starts the CLI with the probe and returns the Popen (no report, output discarded)."""
    argv = [
        SANDBOX,
        *opts,
        "--bind",
        f"{os.path.dirname(PROBE)}:{PROBE_DIR_INSIDE}",
        "--",
        PROBE_INSIDE,
        *[str(a) for a in args],
    ]
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def probe_outside(*args):
    proc = subprocess.run(
        [PROBE, *[str(a) for a in args]], stdout=subprocess.PIPE, timeout=HOST_TIMEOUT_S
    )
    assert proc.returncode == 0, proc
    return json.loads(proc.stdout)


def assert_usage_error(run):
    assert run.rc == 125, run
    text = run.stderr.decode("utf-8", "replace")
    assert text.startswith("zmesh-sandbox: "), run
    assert len(text.rstrip("\n").splitlines()) == 1, f"message must be one line: {text!r}"


# ---- the host's view ----------------------------------------------------------------------


def sandbox_uid_processes():
    """Live host processes whose real or effective uid is in the sandbox range.

    Returns [(pid, uid, comm)]. Zombies are left out: one orphaned by a killed CLI is reaped by
    the host's init, on the host's schedule, and holds nothing but its pid meanwhile.
    """
    found = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(f"{d}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields.get("State", "").strip().startswith("Z"):
            continue
        uids = [int(x) for x in fields.get("Uid", "").split()[:2]]
        hits = [u for u in uids if UID_BASE <= u < UID_BASE + UID_SLOTS]
        if hits:
            found.append((int(os.path.basename(d)), hits[0], fields.get("Name", "").strip()))
    return found


def processes_named(comm):
    found = []
    for path in glob.glob("/proc/[0-9]*/comm"):
        try:
            with open(path) as f:
                if f.read().strip() == comm:
                    found.append(int(path.split("/")[2]))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def sandbox_cgroups():
    return sorted(p for c in CONTROLLERS for p in glob.glob(f"/sys/fs/cgroup/{c}/zmesh/sbx-*"))


def host_mounts():
    with open("/proc/self/mountinfo") as f:
        return sorted(f.read().splitlines())


def wait_until(predicate, timeout_s, interval_s=0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def kill_pids(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def assert_nothing_left(mounts_before):
    assert sandbox_cgroups() == []
    assert sandbox_uid_processes() == []
    assert host_mounts() == mounts_before


def host_addresses():
    """Every address of the host except link-local ones (they need a scope to connect)."""
    addrs = {"127.0.0.1", "::1"}
    ip = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if ip:
        out = subprocess.run([ip, "-j", "addr", "show"], stdout=subprocess.PIPE, timeout=10).stdout
        for iface in json.loads(out or b"[]"):
            for a in iface.get("addr_info", []):
                if a.get("scope") != "link" and a.get("local"):
                    addrs.add(a["local"])
    return sorted(addrs)


# ---- preconditions ------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def preconditions():
    if os.geteuid() != 0:
        pytest.fail(
            "the sandbox tests need root (namespaces, cgroups, uid switching): run them as root",
            pytrace=False,
        )
    for name, path in (("ZMESH_SANDBOX", SANDBOX), ("ZMESH_PROBE", PROBE)):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{name}: no executable at {path}", pytrace=False)


@pytest.fixture(scope="module")
def status():
    run = run_probe("status")
    assert run.rc == 0, run
    return run.json()


# ---- runtimes -----------------------------------------------------------------------------


def run_node(script, **kw):
    return run_sandbox(["/usr/bin/node", "-e", script], ["--policy", "node"], **kw)


def run_python(script, **kw):
    return run_sandbox(["/usr/bin/python3.11", "-c", script], ["--policy", "python"], **kw)


def test_node_computes_and_prints_json():
    run = run_node(
        "const o = JSON.parse('{\"xs\": [3, 4, 5]}');"
        "const sum = o.xs.reduce((a, b) => a + b, 0);"
        "console.log(JSON.stringify({sum: sum, v: process.versions.node}));"
    )
    assert run.rc == 0, run
    out = run.json()
    assert out["sum"] == 12
    assert out["v"].split(".")[0].isdigit()
    assert run.report["status"] == "exited" and run.report["exit_code"] == 0


def test_node_uses_the_tmp_workspace():
    run = run_node(
        "const fs = require('fs'), os = require('os'), path = require('path');"
        "const p = path.join(os.tmpdir(), 'n.txt'); fs.writeFileSync(p, 'hello ' + 42);"
        "fs.mkdirSync('/tmp/d/e', {recursive: true});"
        "console.log(JSON.stringify({tmp: os.tmpdir(), home: os.homedir(),"
        " read: fs.readFileSync(p, 'utf8'), ls: fs.readdirSync('/tmp').sort()}));"
    )
    assert run.rc == 0, run
    assert run.json() == {"tmp": "/tmp", "home": "/tmp", "read": "hello 42", "ls": ["d", "n.txt"]}


def test_node_runs_a_worker_thread():
    run = run_node(
        "const {Worker} = require('worker_threads');"
        "const w = new Worker('const {parentPort} = require(\"worker_threads\");"
        " let s = 0; for (let i = 1; i <= 1000; i++) s += i;"
        " parentPort.postMessage(s);', {eval: true});"
        "w.on('message', (m) => console.log(JSON.stringify({worker: m})));"
        "w.on('error', (e) => { console.error(e); process.exit(3); });"
    )
    assert run.rc == 0, run
    assert run.json() == {"worker": 500500}


def test_node_runs_a_child_process():
    run = run_node(
        "const cp = require('child_process');"
        "const sh = cp.spawnSync('/bin/sh', ['-c', 'echo from-child; exit 7']);"
        "const n = cp.execFileSync(process.execPath, ['-e', 'console.log(6 * 7)'])"
        "  .toString().trim();"
        "console.log(JSON.stringify({status: sh.status, out: sh.stdout.toString(), n: n,"
        " err: sh.error ? String(sh.error) : null}));"
    )
    assert run.rc == 0, run
    assert run.json() == {"status": 7, "out": "from-child\n", "n": "42", "err": None}


def test_python_imports_stdlib_and_finds_ca_certificates():
    run = run_python(
        "import json, ssl, sqlite3\n"
        "ctx = ssl.create_default_context()\n"
        "db = sqlite3.connect('/tmp/t.db')\n"
        "db.execute('create table t (x integer)')\n"
        "db.execute('insert into t values (41)')\n"
        "db.commit()\n"
        "v = db.execute('select x + 1 from t').fetchone()[0]\n"
        "print(json.dumps({'v': v, 'cas': ctx.cert_store_stats()['x509_ca']}))\n"
    )
    assert run.rc == 0, run
    out = run.json()
    assert out["v"] == 42
    assert out["cas"] > 0, "no CA certificates visible inside: /etc/ssl is missing"


def test_python_runs_asyncio_and_threads():
    run = run_python(
        "import asyncio, json, threading\n"
        "results = []\n"
        "lock = threading.Lock()\n"
        "def work(n):\n"
        "    with lock: results.append(sum(range(n)))\n"
        "ts = [threading.Thread(target=work, args=(k * 100,)) for k in range(1, 5)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "async def twice(x):\n"
        "    await asyncio.sleep(0.01)\n"
        "    return x * 2\n"
        "async def main():\n"
        "    loop = asyncio.get_running_loop()\n"
        "    r = await asyncio.gather(*(twice(i) for i in range(5)))\n"
        "    e = await loop.run_in_executor(None, sum, [1, 2, 3])\n"
        "    return r, e\n"
        "r, e = asyncio.run(main())\n"
        "print(json.dumps({'threads': sorted(results), 'gather': r, 'executor': e}))\n"
    )
    assert run.rc == 0, run
    assert run.json() == {
        "threads": sorted(sum(range(k * 100)) for k in range(1, 5)),
        "gather": [0, 2, 4, 6, 8],
        "executor": 6,
    }


def test_python_runs_a_subprocess():
    run = run_python(
        "import json, subprocess\n"
        "t = subprocess.run(['/bin/true']).returncode\n"
        "o = subprocess.run(['/bin/echo', 'hi'], capture_output=True).stdout.decode()\n"
        "print(json.dumps({'true': t, 'echo': o}))\n"
    )
    assert run.rc == 0, run
    assert run.json() == {"true": 0, "echo": "hi\n"}


# ---- exit status, stdio and the report ----------------------------------------------------


def test_exit_code_passes_through():
    run = run_sandbox(["/bin/sh", "-c", "exit 42"])
    assert run.rc == 42, run
    assert run.report["status"] == "exited"
    assert run.report["exit_code"] == 42
    assert run.report["signal"] is None


def test_signal_death_is_128_plus_signal():
    run = run_sandbox(["/bin/sh", "-c", "kill -TERM $$; sleep 5"])
    assert run.rc == 128 + signal.SIGTERM, run
    assert run.report["status"] == "signaled"
    assert run.report["signal"] == signal.SIGTERM
    assert run.report["exit_code"] is None


def test_stdin_passes_through():
    run = run_sandbox(["/bin/cat"], stdin=b"data\n")
    assert run.rc == 0, run
    assert run.stdout == b"data\n"


def test_binary_stdin_passes_through_intact():
    blob = os.urandom(MiB)
    run = run_sandbox(["/bin/cat"], stdin=blob)
    assert run.rc == 0, run
    assert run.stdout == blob


def test_stdout_and_stderr_stay_separate():
    run = run_sandbox(["/bin/sh", "-c", "echo out; echo err >&2"])
    assert run.rc == 0, run
    assert run.stdout == b"out\n"
    assert run.stderr == b"err\n"


def test_report_has_every_key_with_the_right_type():
    run = run_probe("memhog", 8)
    assert run.rc == 0, run
    rep = run.report
    assert set(rep) == REPORT_KEYS, rep
    assert rep["status"] == "exited"
    assert type(rep["exit_code"]) is int and rep["exit_code"] == 0
    assert rep["signal"] is None
    assert rep["timed_out"] is False
    assert rep["oom_killed"] is False
    for key in ("wall_ms", "cpu_ms"):
        assert type(rep[key]) in (int, float) and rep[key] >= 0, rep
    assert rep["wall_ms"] <= run.host_wall_s * 1000 + 50, rep
    assert type(rep["memory_peak_bytes"]) is int
    assert rep["memory_peak_bytes"] >= 8 * MiB, rep


def test_report_accounts_cpu_time():
    run = run_probe("burn", 1000)
    assert run.rc == 0, run
    own = run.json()
    assert own["cpu_ms"] >= 700, own
    assert run.report["cpu_ms"] >= 0.8 * own["cpu_ms"], (run.report, own)
    assert run.report["cpu_ms"] <= run.report["wall_ms"] * 1.1 + 50, run.report


# ---- limits -------------------------------------------------------------------------------


def test_infinite_loop_is_stopped_by_the_timeout():
    run = run_probe("spin", opts=["--timeout", "1000"])
    assert run.rc == 137, run
    rep = run.report
    assert rep["status"] == "timeout", rep
    assert rep["timed_out"] is True
    assert rep["oom_killed"] is False
    assert rep["signal"] == signal.SIGKILL
    assert rep["exit_code"] is None
    assert 950 <= rep["wall_ms"] <= 2500, rep
    assert run.host_wall_s < 5


def test_cpu_quota_throttles_a_busy_loop():
    run = run_probe("burn", 2000, opts=["--cpu", "25"])
    assert run.rc == 0, run
    own = run.json()
    # 25 % of one core over 2 s is about 500 ms; unthrottled it would be about 2000 ms.
    assert 150 <= own["cpu_ms"] <= 1000, own


def test_memory_hog_is_reported_as_oom():
    run = run_probe("memhog", 512, opts=["--memory", "64M"])
    assert run.rc == 137, run
    rep = run.report
    assert rep["status"] == "oom", rep
    assert rep["oom_killed"] is True
    assert rep["timed_out"] is False
    assert rep["signal"] == signal.SIGKILL
    assert 32 * MiB <= rep["memory_peak_bytes"] <= 64 * MiB * 1.05, rep


def test_memory_below_the_limit_is_fine():
    run = run_probe("memhog", 48, opts=["--memory", "128M"])
    assert run.rc == 0, run
    assert run.json() == {"allocated_mb": 48, "errno": None}
    assert run.report["status"] == "exited"
    assert run.report["oom_killed"] is False
    assert 48 * MiB <= run.report["memory_peak_bytes"] <= 128 * MiB, run.report


@pytest.mark.parametrize("pids", [16, None], ids=["pids16", "default64"])
def test_fork_bomb_is_held_by_the_pids_limit(pids):
    limit = pids or 64
    opts = ["--pids", str(pids)] if pids else []
    run = run_probe("forkbomb", 1000, opts=opts)
    assert run.rc == 0, run
    out = run.json()
    assert 0 < out["count"] < limit, out
    assert out["errno"] == "EAGAIN", out
    assert run.report["status"] == "exited"
    assert run.host_wall_s < 10


def test_descriptor_limit():
    run = run_probe("fds", opts=["--nofile", "32"])
    assert run.rc == 0, run
    out = run.json()
    assert out["errno"] == "EMFILE", out
    assert 0 < out["count"] < 32, out


def test_daemonised_grandchild_is_gone_when_the_run_ends():
    marker = "zd" + secrets.token_hex(5)
    run = run_probe("daemonize", marker)
    leaked = processes_named(marker)
    kill_pids(leaked)
    assert run.rc == 0, run
    assert run.json()["started"] is True, run
    assert leaked == [], f"daemon {marker} survived its sandbox as host pids {leaked}"
    assert run.host_wall_s < 5, "the run waited for the daemon instead of ending with the program"


# ---- filesystem ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/usr/zmesh-probe-ro", "/zmesh-probe-ro", "/etc/zmesh-probe-ro"])
def test_system_paths_are_read_only(path):
    run = run_probe("write", path, 1)
    assert run.rc == 0, run
    assert run.json()["errno"] == "EROFS", run


def test_tmp_is_writable():
    run = run_probe("write", "/tmp/f", "1M")
    assert run.rc == 0, run
    assert run.json() == {"path": "/tmp/f", "written": MiB, "stage": "fsync", "errno": None}


def test_workspace_size_is_bounded():
    run = run_probe("write", "/tmp/big", "16M", opts=["--tmpfs", "8M"])
    assert run.rc == 0, run
    out = run.json()
    assert out["errno"] == "ENOSPC", out
    assert out["written"] <= 8 * MiB, out


def test_file_size_is_bounded():
    run = run_probe("write", "/tmp/big", "2M", opts=["--fsize", "1M"])
    if run.rc == 128 + signal.SIGXFSZ:
        assert run.report["status"] == "signaled", run
        assert run.report["signal"] == signal.SIGXFSZ, run
    else:
        assert run.rc == 0, run
        out = run.json()
        assert out["errno"] == "EFBIG", out
        assert out["written"] == MiB, out


@pytest.mark.parametrize("path", ["/etc/shadow", "/root", "/home", "/work", "/sys/fs/cgroup"])
def test_host_paths_are_not_visible(path):
    run = run_probe("read", path, 1)
    assert run.rc == 0, run
    assert run.json()["errno"] == "ENOENT", run


@pytest.mark.parametrize("path", ["/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger"])
def test_proc_knobs_cannot_be_opened_for_writing(path):
    # Zero bytes: only the open for writing is under test, so nothing changes even if it works.
    run = run_probe("write", path, 0)
    assert run.rc == 0, run
    out = run.json()
    # ENOENT: the kernel has no such knob, or the sandbox hides it; either way it is out of reach.
    assert out["stage"] == "open" and out["errno"] in ("EROFS", "EACCES", "EPERM", "ENOENT"), out


@pytest.mark.parametrize("path", ["/proc/kcore", "/proc/keys"])
def test_sensitive_proc_files_are_masked(path):
    run = run_probe("read", path, 4096)
    assert run.rc == 0, run
    assert run.json()["bytes"] == 0, run


def test_dev_is_minimal(status):
    required = {"null": (1, 3), "zero": (1, 5), "random": (1, 8), "urandom": (1, 9)}
    # Harmless extras a runtime may expect: full (1, 7) and tty (5, 0); nothing that reaches
    # hardware, kernel memory or the kernel log.
    allowed_chr = set(required.values()) | {(1, 7), (5, 0)}
    entries = {e["name"]: e for e in status["dev"]}
    for name, (maj, mnr) in required.items():
        assert name in entries and entries[name]["type"] == "char", entries
        assert (entries[name]["major"], entries[name]["minor"]) == (maj, mnr), entries[name]
    for e in entries.values():
        assert e["type"] != "block", e
        if e["type"] == "char":
            assert (e["major"], e["minor"]) in allowed_chr, e


def test_read_only_bind_is_visible_and_read_only(tmp_path):
    (tmp_path / "hello.txt").write_bytes(b"hello from the host\n")
    tmp_path.chmod(0o755)
    opts = ["--bind", f"{tmp_path}:/data/deep/inside"]
    run = run_sandbox(["/bin/cat", "/data/deep/inside/hello.txt"], opts)
    assert run.rc == 0, run
    assert run.stdout == b"hello from the host\n"
    run = run_probe("write", "/data/deep/inside/new", 1, opts=opts)
    assert run.json()["errno"] == "EROFS", run
    assert not (tmp_path / "new").exists()


def test_read_write_bind_reaches_the_host(tmp_path):
    tmp_path.chmod(0o777)
    run = run_probe("write", "/data/out", 1000, opts=["--bind-rw", f"{tmp_path}:/data"])
    assert run.rc == 0, run
    assert run.json()["errno"] is None, run
    st = (tmp_path / "out").stat()
    assert st.st_size == 1000
    assert UID_BASE <= st.st_uid < UID_BASE + UID_SLOTS, st


# ---- identity and privileges --------------------------------------------------------------


def test_all_capabilities_are_dropped(status):
    ps = status["proc_status"]
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(ps[key], 16) == 0, (key, ps[key])


def test_no_new_privs_and_seccomp_filter(status):
    assert status["proc_status"]["NoNewPrivs"] == "1"
    assert status["proc_status"]["Seccomp"] == "2"


def test_runs_as_an_unprivileged_uid_without_groups(status):
    uid, gid = status["uid"], status["gid"]
    assert len(set(uid)) == 1 and len(set(gid)) == 1, (uid, gid)
    assert UID_BASE <= uid[0] < UID_BASE + UID_SLOTS, uid
    assert gid[0] == uid[0], (uid, gid)
    assert status["groups"] == []
    assert status["proc_status"]["Groups"] == ""


def test_concurrent_sandboxes_get_distinct_uids():
    program = ["/bin/sh", "-c", "id -u; sleep 1"]
    argv = [SANDBOX, "--", *program]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    outs = [p.communicate(timeout=HOST_TIMEOUT_S) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    uids = [int(o[0]) for o in outs]
    assert len(set(uids)) == 2, uids
    assert all(UID_BASE <= u < UID_BASE + UID_SLOTS for u in uids), uids


# ---- seccomp ------------------------------------------------------------------------------

EPERM = {"EPERM"}
REFUSED = {
    "mount": EPERM,
    "umount2": EPERM,
    "pivot_root": EPERM,
    "unshare_none": EPERM,
    "unshare_newuser": EPERM,
    "unshare_newns": EPERM,
    "unshare_newnet": EPERM,
    "unshare_newpid": EPERM,
    "setns_badfd": EPERM,
    "setns_self_uts": EPERM,
    "clone_newuser": EPERM,
    "clone_newns": EPERM,
    "clone_newpid": EPERM,
    "clone_newnet": EPERM,
    "clone_newuts": EPERM,
    "clone_newipc": EPERM,
    "clone_newcgroup": EPERM,
    "clone3": {"ENOSYS"},
    "ptrace_traceme": EPERM,
    "ptrace_attach": EPERM,
    "process_vm_readv": EPERM,
    "process_vm_writev": EPERM,
    "keyctl": EPERM,
    "add_key": EPERM,
    "request_key": EPERM,
    "bpf": EPERM,
    "perf_event_open": EPERM,
    "userfaultfd": EPERM,
    "io_uring_setup": {"ENOSYS", "EPERM"},
    "io_uring_enter": {"ENOSYS", "EPERM"},
    "io_uring_register": {"ENOSYS", "EPERM"},
    "kexec_load": EPERM,
    "kexec_file_load": EPERM,
    "init_module": EPERM,
    "finit_module": EPERM,
    "delete_module": EPERM,
    "syslog": EPERM,
    "chroot": EPERM,
    "open_by_handle_at": EPERM,
    "acct": EPERM,
    "swapon": EPERM,
    "swapoff": EPERM,
    "reboot": EPERM,
    "clock_settime": EPERM,
    "settimeofday": EPERM,
    "clock_adjtime": EPERM,
    "socket_vsock": EPERM,
}


@pytest.fixture(scope="module")
def syscalls_inside():
    run = run_probe("syscalls")
    assert run.rc == 0, run
    return run.json()


@pytest.fixture(scope="module")
def syscalls_outside():
    return probe_outside("syscalls")


def test_probe_tries_every_refused_family(syscalls_inside):
    assert set(syscalls_inside) == set(REFUSED)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_syscall_is_refused(syscalls_inside, name):
    assert syscalls_inside[name] in REFUSED[name], f"{name}: got {syscalls_inside[name]}"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_syscall_attempt_is_not_refused_outside(syscalls_outside, name):
    """Control: as host root the same attempt gets another answer.

    Without it a probe whose attempt is malformed in a way that yields EPERM anyway would make
    the refusal test pass on a sandbox with no filter at all.
    """
    got = syscalls_outside[name]
    assert got not in REFUSED[name], f"{name}: got {got} outside the sandbox too"


# ---- network ------------------------------------------------------------------------------


def test_only_loopback_interface(status):
    assert status["interfaces"] == ["lo"]


@pytest.mark.parametrize("addr", host_addresses())
def test_host_listener_is_unreachable(addr):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind((addr, 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        run = run_probe("net", addr, port)
        readable, _, _ = select.select([listener], [], [], 0.3)
    assert run.rc == 0, run
    assert run.json()["result"] != "ok", run
    assert readable == [], f"the listener on {addr}:{port} was reached from inside"


def test_outside_world_is_unreachable():
    # A documentation address (RFC 5737): nothing inside may route anywhere but lo.
    run = run_probe("net", "203.0.113.1", 80)
    assert run.rc == 0, run
    assert run.json()["result"] != "ok", run


# ---- processes, environment, hostname -----------------------------------------------------


def test_only_the_sandbox_processes_are_visible(status):
    assert status["pid"] == 2
    assert status["ppid"] == 1
    assert sorted(status["pids"]) == [1, 2]


def test_hostname_is_zmesh(status):
    assert status["hostname"] == "zmesh"
    assert status["hostname"] != socket.gethostname()


def test_caller_environment_does_not_leak():
    secret = "s3cr3t-" + secrets.token_hex(8)
    env = dict(os.environ, ZMESH_TEST_SECRET=secret, JWT_SECRET_KEY=secret, LD_PRELOAD="")
    run = run_probe("status", env=env)
    assert run.rc == 0, run
    environ = run.json()["environ"]
    assert set(environ) == {"PATH", "HOME", "TMPDIR", "LANG"}, environ
    assert secret not in json.dumps(environ)


def test_baseline_environment_values(status):
    env = status["environ"]
    assert env["HOME"] == "/tmp"
    assert env["TMPDIR"] == "/tmp"
    assert env["LANG"] == "C.UTF-8"
    assert "/usr/bin" in env["PATH"].split(":") or "/bin" in env["PATH"].split(":"), env["PATH"]


def test_env_flag_values_are_present():
    run = run_probe("status", opts=["--env", "FOO=bar", "--env", "EQ=a=b=c", "--env", "EMPTY="])
    assert run.rc == 0, run
    env = run.json()["environ"]
    assert env["FOO"] == "bar"
    assert env["EQ"] == "a=b=c"
    assert env["EMPTY"] == ""


def test_init_environment_is_not_exposed(status):
    p1 = status["proc1_environ"]
    assert p1["readable"] is False or p1["bytes"] == 0, p1


def test_init_command_line_is_its_own():
    # pid 1 is a clone of its launcher: its command line (a daemon's state
    # directory, the CLI's options) must not show through /proc/1/cmdline.
    run = run_sandbox(["/bin/cat", "/proc/1/cmdline"], opts=["--env", "MARK=x"])
    assert run.rc == 0, run
    assert run.stdout.rstrip(b"\0") == b"zmesh-init", run
    assert b"MARK" not in run.stdout and b"zmesh-sandbox" not in run.stdout, run


def test_kill_minus_one_inside_harms_nothing_outside():
    sleepers = [
        subprocess.Popen(
            ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sleep", "60"],
            stdin=subprocess.DEVNULL,
        )
        for uid in (UID_BASE, UID_BASE + 1)
    ]
    try:
        started = wait_until(lambda: len(sandbox_uid_processes()) >= 2, 5)
        assert started, "host sleepers did not start"
        run = run_probe("killall")
        assert run.rc == 0, run
        assert run.json()["result"] in ("ok", "ESRCH"), run
        alive = [s.poll() is None for s in sleepers]
        assert alive == [True, True], "kill(-1) inside reached host processes"
    finally:
        for s in sleepers:
            s.kill()
            s.wait(timeout=10)


# ---- nothing left behind ------------------------------------------------------------------


def test_nothing_left_after_a_normal_run():
    before = host_mounts()
    run = run_probe("sleep", 50)
    assert run.rc == 0, run
    assert_nothing_left(before)


def test_nothing_left_after_a_timeout():
    before = host_mounts()
    run = run_probe("spin", opts=["--timeout", "500"])
    assert run.rc == 137, run
    assert_nothing_left(before)


def test_nothing_left_after_an_oom_kill():
    before = host_mounts()
    run = run_probe("memhog", 256, opts=["--memory", "32M"])
    assert run.rc == 137, run
    assert_nothing_left(before)


def start_and_sigkill_cli():
    """Kills the CLI once its program runs, i.e. once the sandbox is completely set up."""
    comm = os.path.basename(PROBE)[:15]
    cli = popen_probe("sleep", 60000)
    try:
        started = wait_until(lambda: [p for p in sandbox_uid_processes() if p[2] == comm], 10)
        assert started, "the sandboxed program never appeared on the host"
    finally:
        cli.send_signal(signal.SIGKILL)
        cli.wait(timeout=10)


def test_cli_sigkill_takes_the_sandbox_with_it():
    start_and_sigkill_cli()
    left = wait_until(lambda: not sandbox_uid_processes(), 5) or sandbox_uid_processes()
    stray = sandbox_uid_processes()
    kill_pids([pid for pid, _, _ in stray])
    assert left is True and stray == [], f"sandbox processes outlived the killed CLI: {stray}"


def test_next_run_cleans_up_after_a_sigkilled_cli():
    before = host_mounts()
    start_and_sigkill_cli()
    wait_until(lambda: not sandbox_uid_processes(), 5)
    run = run_probe("sleep", 10)
    assert run.rc == 0, run
    assert_nothing_left(before)


# ---- bad arguments ------------------------------------------------------------------------


def test_unknown_flag_is_a_usage_error():
    assert_usage_error(run_sandbox(["/bin/true"], ["--no-such-flag"], report=False))


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--memory", "12X"),
        ("--memory", ""),
        ("--memory", "M"),
        ("--memory", "-1M"),
        ("--memory", "1.5M"),
        ("--memory", "1MB"),
        ("--memory", "99999999999999999999"),
        ("--memory", "99999999999G"),
        ("--tmpfs", "12X"),
        ("--fsize", "12X"),
        ("--pids", "abc"),
        ("--timeout", "10s"),
        ("--cpu", "x"),
        ("--nofile", "-1"),
    ],
)
def test_malformed_value_is_a_usage_error(flag, value):
    assert_usage_error(run_sandbox(["/bin/true"], [flag, value], report=False))


def test_flag_without_value_is_a_usage_error():
    run = subprocess.run([SANDBOX, "--memory"], capture_output=True, timeout=HOST_TIMEOUT_S)
    assert_usage_error(Run([SANDBOX, "--memory"], run, None, 0))


def test_env_without_equals_is_a_usage_error():
    assert_usage_error(run_sandbox(["/bin/true"], ["--env", "NOEQUALS"], report=False))


@pytest.mark.parametrize("argv", [[], ["--"]], ids=["nothing", "dashdash"])
def test_missing_program_is_a_usage_error(argv):
    proc = subprocess.run([SANDBOX, *argv], capture_output=True, timeout=HOST_TIMEOUT_S)
    assert_usage_error(Run([SANDBOX, *argv], proc, None, 0))


def assert_error_report(run):
    assert run.report is not None, run
    assert run.report["status"] == "error", run.report
    assert isinstance(run.report.get("error"), str) and run.report["error"], run.report


def test_program_not_found_is_127():
    run = run_sandbox(["/nonexistent/zmesh-program"])
    assert run.rc == 127, run
    assert_error_report(run)


def test_program_not_executable_is_126(tmp_path):
    (tmp_path / "plain").write_bytes(b"#!/bin/sh\necho should not run\n")
    (tmp_path / "plain").chmod(0o644)
    tmp_path.chmod(0o755)
    run = run_sandbox(["/opt/x/plain"], ["--bind", f"{tmp_path}:/opt/x"])
    assert run.rc == 126, run
    assert b"should not run" not in run.stdout
    assert_error_report(run)


def test_missing_bind_source_is_a_setup_error():
    run = run_sandbox(["/bin/true"], ["--bind", "/nonexistent-zmesh-source:/mnt"])
    assert_usage_error(run)
    assert_error_report(run)


def test_unknown_policy_is_a_setup_error():
    run = run_sandbox(["/bin/true"], ["--policy", "no-such-policy"])
    assert_usage_error(run)


def test_policy_that_does_not_parse_is_a_setup_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"default_action": "errno:EPERM", "allow": [')
    run = run_sandbox(["/bin/true"], ["--policy", str(bad)])
    assert_usage_error(run)
    assert_error_report(run)
