"""Shared machinery of the zmesh benchmarks: spawning and timing one process,
interleaved rounds, statistics, the machine description and the result files.

Standard library only, so a benchmark runs on any host that has the runtimes,
without a virtualenv. Every benchmark measures wall-clock time from just before
the spawn to just after the exit is reaped, because that is what an invocation
pays.
"""

import argparse
import datetime
import errno
import gc
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)

# The environment every variant starts with: the one zmesh-sandbox builds
# inside, so the runtimes do the same start-up work outside it (NODE_*, SSL_*
# and PYTHON* variables of an operator's shell change what they load).
BENCH_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
}

# Above any sane start-up time and below "the harness looks hung".
RUN_TIMEOUT_S = 30.0
# Output kept from a failing run, for the report.
MAX_CAPTURE_BYTES = 64 * 1024
MAX_REPORTED_OUTPUT = 600
# Bounds on options, so a typo cannot start a run of days.
MAX_ROUNDS = 100000
MAX_WARMUP = 1000

# Spawn errors that mean "the binary is being replaced" (a rebuild in
# progress) rather than "this variant cannot run": wait and retry.
TRANSIENT_SPAWN_ERRORS = {errno.ENOENT, errno.ETXTBSY, errno.ENOEXEC, errno.EACCES}


class BenchError(Exception):
    """A problem that stops the benchmark before or outside the timing."""


class _RunTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _RunTimeout()


class Variant:
    """One way of running one workload.

    make_stdin: None (stdin is /dev/null) or a callable returning the bytes
    to feed on stdin, called before every run (outside the timing).
    check: a callable (stdout bytes) -> error message or None; when set, every
    run's stdout is captured and checked, otherwise it goes to /dev/null.
    """

    def __init__(self, workload, name, argv, make_stdin=None, check=None, note=None):
        if not argv or not os.path.isabs(argv[0]):
            raise BenchError(f"{workload}/{name}: program must be an absolute path: {argv!r}")
        self.workload = workload
        self.name = name
        self.argv = list(argv)
        self.make_stdin = make_stdin
        self.check = check
        self.note = note
        self.samples_ns = []
        self.failures = []
        self.spawn_retries = 0
        self.broken = None  # why the variant was not timed at all

    @property
    def key(self):
        return f"{self.workload}/{self.name}"

    def command_line(self):
        return " ".join(shell_quote(a) for a in self.argv)


def shell_quote(arg):
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
    if arg and all(c in safe for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"


class Runner:
    """Spawns variants with preopened descriptors so that the timed window
    holds as little harness work as possible: posix_spawn (vfork + exec in
    glibc) and waitpid, nothing else."""

    def __init__(self, env, spawn_wait_s, run_timeout_s=RUN_TIMEOUT_S):
        self.env = dict(env)
        self.spawn_wait_s = spawn_wait_s
        self.run_timeout_s = run_timeout_s
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.capture = os.memfd_create("zmesh-bench-out", os.MFD_CLOEXEC)
        self.capture_err = os.memfd_create("zmesh-bench-err", os.MFD_CLOEXEC)
        self._old_alarm = signal.signal(signal.SIGALRM, _on_alarm)

    def close(self):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old_alarm)
        for fd in (self.devnull, self.capture, self.capture_err):
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, variant, capture_stderr=False):
        """Runs the variant once. Returns (elapsed_ns, error): error is None
        for a clean run (exit 0 and, if the variant checks it, the expected
        stdout), else a message; elapsed_ns is None when nothing ran.

        Spawn errors that look like a binary being rebuilt are retried for up
        to spawn_wait_s; the retries are counted on the variant.
        """
        deadline = time.monotonic() + self.spawn_wait_s
        while True:
            try:
                return self._run_once(variant, capture_stderr)
            except OSError as e:
                if e.errno not in TRANSIENT_SPAWN_ERRORS or time.monotonic() >= deadline:
                    return None, f"spawn failed: {e}"
                variant.spawn_retries += 1
                time.sleep(1.0)

    def _run_once(self, variant, capture_stderr):
        stdin_r = None
        if variant.make_stdin is not None:
            data = variant.make_stdin()
            # The message must fit in the pipe buffer: it is written whole
            # before the spawn, so the timing holds no harness I/O.
            if len(data) > 60 * 1024:
                raise BenchError(f"{variant.key}: stdin message too large ({len(data)} bytes)")
            stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
            try:
                os.write(stdin_w, data)
            finally:
                os.close(stdin_w)
        try:
            out_fd = self.devnull
            if variant.check is not None:
                os.ftruncate(self.capture, 0)
                os.lseek(self.capture, 0, os.SEEK_SET)
                out_fd = self.capture
            err_fd = self.devnull
            if capture_stderr:
                os.ftruncate(self.capture_err, 0)
                os.lseek(self.capture_err, 0, os.SEEK_SET)
                err_fd = self.capture_err
            actions = [
                (os.POSIX_SPAWN_DUP2, stdin_r if stdin_r is not None else self.devnull, 0),
                (os.POSIX_SPAWN_DUP2, out_fd, 1),
                (os.POSIX_SPAWN_DUP2, err_fd, 2),
            ]
            argv = variant.argv
            env = self.env
            pid = None
            status = None
            signal.setitimer(signal.ITIMER_REAL, self.run_timeout_s)
            try:
                t0 = time.perf_counter_ns()
                pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
                _, status = os.waitpid(pid, 0)
                t1 = time.perf_counter_ns()
            except _RunTimeout:
                # status set means the child is already reaped and its pid
                # may belong to someone else by now.
                if pid is not None and status is None:
                    _kill_and_reap(pid)
                return None, f"did not exit within {self.run_timeout_s:g} s"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            if stdin_r is not None:
                os.close(stdin_r)

        code = os.waitstatus_to_exitcode(status)
        error = None
        if code != 0:
            error = f"exit status {code}" if code > 0 else f"killed by signal {-code}"
        elif variant.check is not None:
            error = variant.check(_read_capture(self.capture))
        if error is not None and capture_stderr:
            err = _read_capture(self.capture_err)
            if err:
                error += "; stderr: " + _excerpt(err)
        if error is not None and variant.check is not None and code != 0:
            out = _read_capture(self.capture)
            if out:
                error += "; stdout: " + _excerpt(out)
        return t1 - t0, error


def _kill_and_reap(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _read_capture(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, MAX_CAPTURE_BYTES)


def _excerpt(data):
    text = data.decode("utf-8", "replace").strip()
    if len(text) > MAX_REPORTED_OUTPUT:
        text = text[:MAX_REPORTED_OUTPUT] + "..."
    return text


def expect_stdout(expected):
    """A check that stdout parses as JSON equal to `expected` (whitespace and
    key order do not matter; the protocol promises one JSON object)."""

    def check(out):
        try:
            got = json.loads(out.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return f"stdout is not JSON: {_excerpt(out)!r}"
        if got != expected:
            return f"stdout is {_excerpt(out)!r}, expected {json.dumps(expected, separators=(',', ':'))}"
        return None

    return check


def expect_empty_stdout(out):
    if out:
        return f"unexpected stdout: {_excerpt(out)!r}"
    return None


def refresh_python_sdk_bytecode(root=None):
    """The Python SDK is mounted read-only in a sandbox, so its bytecode is
    compiled at install (scripts/install-deps), checked against the source by
    hash. Source edited since then would be compiled again on every start and
    measured so: compile what is stale first, as the install does. root: the
    source tree whose SDK a daemon serves (default this one)."""
    subprocess.run(["/usr/bin/python3.11", "-m", "compileall", "-q", "--invalidation-mode", "checked-hash",
                    os.path.join(root or REPO_ROOT, "sdk-python", "zmesh")],
                   stdout=subprocess.DEVNULL, check=True)


def source_tree_of(binary):
    """The source tree a zmeshd built by CMake serves its SDKs from (it is
    compiled in): CMAKE_HOME_DIRECTORY of the build directory the binary
    lies in (BUILD/supervisor/zmeshd). None if that cannot be read."""
    cache = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(binary))), "CMakeCache.txt")
    try:
        with open(cache, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("CMAKE_HOME_DIRECTORY:"):
                    return line.split("=", 1)[1].strip() or None
    except OSError:
        return None
    return None


def precheck(runner, variant):
    """Runs the variant once, untimed, with stderr captured. Returns None if
    it runs cleanly, else why not."""
    _, error = runner.run(variant, capture_stderr=True)
    return error


def run_interleaved(runner, variants, rounds_of, warmup, rng, progress=None):
    """Times every variant in round-robin: each round runs each variant whose
    workload still needs rounds once, in an order shuffled per round, so that
    noise from the machine lands on all variants alike. rounds_of maps a
    workload to its number of rounds. The first `warmup` rounds are run the
    same way and not recorded (page cache, dentries, lazy kernel state).
    """
    live = [v for v in variants if v.broken is None]
    total = warmup + max((rounds_of[v.workload] for v in live), default=0)
    gc_was_enabled = gc.isenabled()
    # A collection inside a timed window would be charged to whichever
    # variant happened to be running.
    gc.disable()
    try:
        for r in range(total):
            recorded = r >= warmup
            batch = [v for v in live if r < warmup + rounds_of[v.workload]]
            rng.shuffle(batch)
            for v in batch:
                elapsed, error = runner.run(v)
                if not recorded:
                    continue
                if error is None:
                    v.samples_ns.append(elapsed)
                else:
                    v.failures.append({"round": r - warmup, "error": error})
            if progress is not None:
                progress(r + 1, total)
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()


def summarize(samples_ns):
    """Median, p10, p90, mean, min, max and stdev in milliseconds."""
    if not samples_ns:
        return None
    ms = [s / 1e6 for s in samples_ns]
    if len(ms) >= 2:
        deciles = statistics.quantiles(ms, n=10, method="inclusive")
        p10, p90 = deciles[0], deciles[-1]
        stdev = statistics.stdev(ms)
    else:
        p10 = p90 = ms[0]
        stdev = 0.0
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p10_ms": p10,
        "p90_ms": p90,
        "mean_ms": statistics.fmean(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "stdev_ms": stdev,
    }


def ratio(stats, base_stats):
    if stats is None or base_stats is None or base_stats["median_ms"] <= 0:
        return None
    return stats["median_ms"] / base_stats["median_ms"]


def bootstrap_ratio_ci(num_ns, den_ns, seed, iterations=1000, level=0.95):
    """Percentile-bootstrap interval of median(num) / median(den). Goals are
    judged on the point estimate; the interval says whether a met or missed
    is a real difference or within this run's noise."""
    if len(num_ns) < 2 or len(den_ns) < 2:
        return None
    rng = random.Random(seed)
    med = statistics.median
    ratios = []
    for _ in range(iterations):
        den = med(rng.choices(den_ns, k=len(den_ns)))
        if den > 0:
            ratios.append(med(rng.choices(num_ns, k=len(num_ns))) / den)
    if not ratios:
        return None
    ratios.sort()
    tail = (1.0 - level) / 2.0
    lo = ratios[int(tail * (len(ratios) - 1))]
    hi = ratios[int(round((1.0 - tail) * (len(ratios) - 1)))]
    return [lo, hi]


# ---------------------------------------------------------------- machine

def _read_text(path, limit=1 << 20):
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def _cpu_model():
    text = _read_text("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "cpu model"):
            return value.strip()
    return "unknown"


def _mem_total_bytes():
    text = _read_text("/proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def parse_cgroup_mounts(mountinfo):
    """The cgroup2 mounts (mount point, per-mount options, superblock
    options) and the number of cgroup v1 hierarchies in a mountinfo text."""
    v2, v1 = [], 0
    for line in mountinfo.splitlines():
        # id parent major:minor root mountpoint options [optional...] - fstype source superoptions
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        pre_f, post_f = pre.split(), post.split()
        if len(pre_f) < 6 or len(post_f) < 3:
            continue
        if post_f[0] == "cgroup2":
            v2.append({"mountpoint": pre_f[4], "mount_options": pre_f[5], "super_options": post_f[2]})
        elif post_f[0] == "cgroup":
            v1 += 1
    return v2, v1


def _cgroup_layout():
    v2, v1 = parse_cgroup_mounts(_read_text("/proc/self/mountinfo") or "")
    return {
        "controllers_present": {
            name: os.path.isdir(os.path.join("/sys/fs/cgroup", name))
            for name in ("memory", "pids", "cpu")
        },
        "cgroup2_mounts": v2,
        "cgroup1_mounts": v1,
    }


def _command_output(argv, cwd=None):
    try:
        r = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    return r.stdout.decode("utf-8", "replace").strip()[:200] or None


def loadavg():
    text = _read_text("/proc/loadavg") or ""
    parts = text.split()
    return [float(p) for p in parts[:3]] if len(parts) >= 3 else None


def git_commit(path):
    """Short commit of the tree at path, with "+dirty" when it has
    uncommitted changes: results from a modified tree must say so."""
    commit = _command_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT)
    if commit is None:
        return "unknown"
    rel = os.path.relpath(path, REPO_ROOT)
    dirty = _command_output(["git", "--no-optional-locks", "status", "--porcelain", "--", rel], cwd=REPO_ROOT)
    return commit + ("+dirty" if dirty else "")


def machine_description(extra_versions):
    """What a reader needs to compare two result files: kernel, CPU, memory,
    cgroup layout, load, tool versions. extra_versions maps a name to an argv
    that prints a version."""
    uname = os.uname()
    desc = {
        "kernel": uname.release,
        "arch": uname.machine,
        "cpu_model": _cpu_model(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "mem_total_bytes": _mem_total_bytes(),
        "cgroup": _cgroup_layout(),
        "loadavg_start": loadavg(),
        "python_harness": sys.version.split()[0],
        "versions": {},
    }
    for name, argv in extra_versions.items():
        desc["versions"][name] = _command_output(argv) or "unavailable"
    return desc


def machine_markdown(m, date_utc, commit_label, commit):
    cg = m["cgroup"]
    present = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cg["controllers_present"].items())
    mounts = "; ".join(f"{x['mountpoint']} ({x['mount_options']}; {x['super_options']})"
                       for x in cg["cgroup2_mounts"]) or "none"
    mem = m["mem_total_bytes"]
    mem_s = f"{mem / (1 << 30):.1f} GiB" if mem else "unknown"
    lines = [
        "| | |",
        "|---|---|",
        f"| date (UTC) | {date_utc} |",
        f"| {commit_label} | `{commit}` |",
        f"| kernel | {m['kernel']} ({m['arch']}) |",
        f"| CPU | {m['cpu_model']} |",
        f"| nproc | {m['nproc']} (of {m['cpu_count']}) |",
        f"| memory | {mem_s} |",
        f"| /sys/fs/cgroup/{{memory,pids,cpu}} | {present}; {cg['cgroup1_mounts']} cgroup v1 mounts |",
        f"| cgroup2 mounts | {mounts} |",
        f"| load average (start / end) | {_fmt_load(m.get('loadavg_start'))} / {_fmt_load(m.get('loadavg_end'))} |",
    ]
    for name, version in m["versions"].items():
        lines.append(f"| {name} | {version} |")
    return "\n".join(lines)


def _fmt_load(load):
    return " ".join(f"{x:.2f}" for x in load) if load else "?"


# ---------------------------------------------------------------- options and output

def positive_int(limit):
    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
        if value < 1 or value > limit:
            raise argparse.ArgumentTypeError(f"must be between 1 and {limit}")
        return value
    parse.__name__ = "integer"
    return parse


def nonnegative_int(limit):
    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
        if value < 0 or value > limit:
            raise argparse.ArgumentTypeError(f"must be between 0 and {limit}")
        return value
    parse.__name__ = "integer"
    return parse


def resolve_out_dir(out, quick, prefix):
    """The default results directory, or a fresh temporary one in quick mode
    (a smoke run must not overwrite recorded results)."""
    if out is not None:
        os.makedirs(out, exist_ok=True)
        return out
    if quick:
        return tempfile.mkdtemp(prefix=f"zmesh-bench-{prefix}-")
    path = os.path.join(BENCH_DIR, "results")
    os.makedirs(path, exist_ok=True)
    return path


def write_results(out_dir, prefix, date_local, data, markdown):
    """Writes PREFIX-YYYY-MM-DD.{json,md} atomically (a reader never sees half
    a file) and returns both paths."""
    base = os.path.join(out_dir, f"{prefix}-{date_local}")
    paths = []
    for suffix, text in ((".json", json.dumps(data, indent=1, sort_keys=False) + "\n"),
                         (".md", markdown)):
        path = base + suffix
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{prefix}-", suffix=suffix)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        paths.append(path)
    return paths


def now_stamps():
    now = datetime.datetime.now(datetime.timezone.utc)
    local = datetime.datetime.now().date().isoformat()
    return now.isoformat(timespec="seconds"), local


def variant_record(v, base, seed):
    stats = summarize(v.samples_ns)
    ci = None
    if base is not None and base is not v:
        ci = bootstrap_ratio_ci(v.samples_ns, base.samples_ns, seed)
    return {
        "workload": v.workload,
        "variant": v.name,
        "command": v.argv,
        "note": v.note,
        "broken": v.broken,
        "stats": stats,
        "ratio_to_bare_median": ratio(stats, summarize(base.samples_ns) if base else None),
        "ratio_to_bare_ci95": ci,
        "samples_ms": [round(s / 1e6, 4) for s in v.samples_ns],
        "failures": v.failures,
        "spawn_retries": v.spawn_retries,
    }


def results_table(records):
    lines = [
        "| workload | variant | median ms | p10 | p90 | mean | n | ratio to bare | 95% CI |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        s = r["stats"]
        ratio_s = f"×{r['ratio_to_bare_median']:.3f}" if r["ratio_to_bare_median"] is not None else "—"
        if s is None:
            why = "not run" if r["broken"] else "no clean run"
            lines.append(f"| {r['workload']} | {r['variant']} | {why} | | | | 0 | — | — |")
            continue
        fails = f" ({len(r['failures'])} failed)" if r["failures"] else ""
        lines.append(
            f"| {r['workload']} | {r['variant']} | {s['median_ms']:.3f} | {s['p10_ms']:.3f} | "
            f"{s['p90_ms']:.3f} | {s['mean_ms']:.3f} | {s['n']}{fails} | {ratio_s} | "
            f"{fmt_ci(r['ratio_to_bare_ci95'])} |")
    return "\n".join(lines)


def fmt_ci(ci):
    return f"×{ci[0]:.3f}–×{ci[1]:.3f}" if ci else "—"


def goal(name, value, limit, kind="ratio_at_most", ci=None, ci_of=None):
    """A goal line: value must be <= limit ("at most") or < limit ("below").
    A goal that could not be measured is reported as such, never as met.
    ci: a 95% interval of ci_of (what the interval is of), for the reader."""
    if value is None or limit is None:
        met = None
    elif kind == "below":
        met = value < limit
    elif kind == "at_least":
        met = value >= limit
    else:
        met = value <= limit
    return {"goal": name, "value": value, "limit": limit, "kind": kind,
            "status": "not measured" if met is None else ("met" if met else "missed"),
            "ci95": ci, "ci95_of": ci_of}


def goals_markdown(goals):
    lines = []
    for g in goals:
        value = f"×{g['value']:.3f}" if g["value"] is not None else "—"
        limit = f"×{g['limit']:.3f}" if g["limit"] is not None else "—"
        status = "**met**" if g["status"] == "met" else f"**{g['status'].upper()}**"
        ci = f"; 95% CI of {g['ci95_of']}: {fmt_ci(g['ci95'])}" if g.get("ci95") else ""
        lines.append(f"- {g['goal']}: {value} (limit {limit}{ci}) — {status}")
    return "\n".join(lines)



def report_body(data, commit_label, records, goals, env):
    """The sections every launch-style report shares, as lines: the machine,
    the results table, the goals, and the head of the commands section."""
    return [
        "## Machine",
        "",
        machine_markdown(data["machine"], data["date_utc"], commit_label, data["commit"]),
        "",
        "## Results",
        "",
        results_table(records),
        "",
        "## Goals",
        "",
        goals_markdown(goals),
        "",
        "## Commands",
        "",
        "Environment of every variant: " + ", ".join(f"`{k}={v}`" for k, v in env.items()) + ".",
        "",
    ]

def failures_markdown(records):
    lines = []
    for r in records:
        if r["broken"]:
            lines.append(f"- {r['workload']}/{r['variant']}: not timed: {r['broken']}")
        if r["failures"]:
            first = r["failures"][0]
            lines.append(f"- {r['workload']}/{r['variant']}: {len(r['failures'])} timed run(s) failed; "
                         f"first (round {first['round']}): {first['error']}")
        if r["spawn_retries"]:
            lines.append(f"- {r['workload']}/{r['variant']}: {r['spawn_retries']} spawn retries "
                         f"(binary missing or being replaced)")
    return "\n".join(lines)


def any_failure(records):
    return any(r["broken"] or r["failures"] or r["stats"] is None for r in records)


def progress_printer(label, stream=sys.stderr):
    """Progress on a terminal only: a log file gets the summary, not 200 lines."""
    if not stream.isatty():
        return None
    last = [0.0]

    def show(done, total):
        now = time.monotonic()
        if done == total or now - last[0] >= 0.5:
            last[0] = now
            stream.write(f"\r{label}: round {done}/{total}")
            if done == total:
                stream.write("\n")
            stream.flush()
    return show


def new_rng(seed):
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 32)
    return seed, random.Random(seed)


def invocation_message(code, payload):
    """make_stdin for a wrapper: the invocation a supervisor would write, with
    a deadline fresh for every run (a long benchmark would otherwise outlive
    a fixed one)."""

    def make():
        message = {
            "invocation_id": "bench",
            "project_id": "p",
            "function": {"name": "f", "version": 1, "entry_point": "handler"},
            "code": code,
            "env": {},
            "dsn": "",
            "payload": payload,
            "deadline_ms": int(time.time() * 1000) + 60000,
        }
        return json.dumps(message, separators=(",", ":")).encode("utf-8")

    return make


def finish(prefix, out_dir, date_local, data, markdown, records, goals):
    """Writes the results, prints their tables and where they went; the
    exit status: 1 if a variant failed, else 0."""
    paths = write_results(out_dir, prefix, date_local, data, markdown)
    print(results_table(records))
    print()
    print(goals_markdown(goals))
    for path in paths:
        print(f"{prefix}: wrote {path}")
    if any_failure(records):
        print(f"{prefix}: some variants failed to run; see the Failures section", file=sys.stderr)
        return 1
    return 0


def run_main(prefix, main):
    """The scripts' entry point: exit 2 for a run that could not start, 130 on
    ^C; SIGTERM unwinds like ^C, so that what a run started is stopped."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        print(f"{prefix}: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
