"""Tests of the benchmark machinery (not of performance): that timings,
failures, checks, interleaving and the reported numbers are what they claim.

Run: /usr/bin/python3 -m pytest bench/test_harness.py
"""

import json
import os
import random
import shutil
import statistics
import sys
import threading
import time

import pytest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import launch  # noqa: E402
import wrapper  # noqa: E402


@pytest.fixture
def runner():
    with harness.Runner(harness.BENCH_ENV, spawn_wait_s=0, run_timeout_s=2) as r:
        yield r


def test_clean_run_is_timed(runner):
    v = harness.Variant("w", "true", ["/usr/bin/true"])
    elapsed, error = runner.run(v)
    assert error is None
    assert 0 < elapsed < 2e9


def test_elapsed_covers_the_whole_child_lifetime(runner):
    v = harness.Variant("w", "sleep", ["/usr/bin/sleep", "0.2"])
    elapsed, error = runner.run(v)
    assert error is None
    assert 0.2e9 <= elapsed < 1.5e9


def test_non_zero_exit_is_a_failure(runner):
    elapsed, error = runner.run(harness.Variant("w", "false", ["/usr/bin/false"]))
    assert error == "exit status 1"
    assert elapsed is not None


def test_death_by_signal_is_a_failure(runner):
    v = harness.Variant("w", "killed", ["/bin/sh", "-c", "kill -9 $$"])
    _, error = runner.run(v)
    assert error == "killed by signal 9"


def test_hung_child_is_killed_and_reported(runner):
    v = harness.Variant("w", "hang", ["/usr/bin/sleep", "30"])
    t0 = time.monotonic()
    elapsed, error = runner.run(v)
    assert time.monotonic() - t0 < 10
    assert elapsed is None
    assert error.startswith("did not exit within 2")


def test_missing_program_fails_without_waiting(runner):
    elapsed, error = runner.run(harness.Variant("w", "missing", ["/nonexistent/prog"]))
    assert elapsed is None
    assert error.startswith("spawn failed")


def test_program_appearing_late_is_retried(tmp_path):
    path = str(tmp_path / "late-true")
    v = harness.Variant("w", "late", [path])
    timer = threading.Timer(1.0, shutil.copy, args=("/usr/bin/true", path))
    timer.start()
    try:
        with harness.Runner(harness.BENCH_ENV, spawn_wait_s=10, run_timeout_s=5) as r:
            elapsed, error = r.run(v)
    finally:
        timer.cancel()
    assert error is None
    assert elapsed is not None
    assert v.spawn_retries >= 1


def test_stdout_check_and_stdin_message(runner):
    message = {"ok": True, "result": {"x": 1}}
    v = harness.Variant("w", "cat", ["/usr/bin/cat"],
                        make_stdin=lambda: json.dumps(message).encode(),
                        check=harness.expect_stdout(message))
    assert runner.run(v)[1] is None

    wrong = harness.Variant("w", "cat", ["/usr/bin/cat"],
                            make_stdin=lambda: b'{"ok":false}',
                            check=harness.expect_stdout(message))
    _, error = runner.run(wrong)
    assert "expected" in error and '{"ok":false}' in error

    garbage = harness.Variant("w", "echo", ["/usr/bin/echo", "hello"],
                              check=harness.expect_stdout(message))
    assert "not JSON" in runner.run(garbage)[1]


def test_stdout_capture_is_reset_between_runs(runner):
    noisy = harness.Variant("w", "echo", ["/usr/bin/echo", "x"], check=harness.expect_empty_stdout)
    quiet = harness.Variant("w", "true", ["/usr/bin/true"], check=harness.expect_empty_stdout)
    assert "unexpected stdout" in runner.run(noisy)[1]
    assert runner.run(quiet)[1] is None


def test_precheck_reports_stderr(runner):
    v = harness.Variant("w", "sh", ["/bin/sh", "-c", "echo broken-runtime >&2; exit 3"])
    error = harness.precheck(runner, v)
    assert error.startswith("exit status 3")
    assert "broken-runtime" in error


def test_variant_env_is_the_bench_env(runner):
    v = harness.Variant("w", "env", ["/usr/bin/env"],
                        check=lambda out: None if sorted(out.decode().split()) == sorted(
                            f"{k}={val}" for k, val in harness.BENCH_ENV.items()) else out.decode())
    assert runner.run(v)[1] is None


def test_relative_program_is_refused():
    with pytest.raises(harness.BenchError):
        harness.Variant("w", "rel", ["true"])


def test_interleaving_counts_rounds_and_shuffles(runner):
    order = []

    def recorder(name):
        def check(out):
            order.append(name)
            return None
        return check

    a1 = harness.Variant("a", "one", ["/usr/bin/true"], check=recorder("a1"))
    a2 = harness.Variant("a", "two", ["/usr/bin/true"], check=recorder("a2"))
    b1 = harness.Variant("b", "one", ["/usr/bin/true"], check=recorder("b1"))
    bad = harness.Variant("b", "bad", ["/usr/bin/false"])
    skipped = harness.Variant("b", "skipped", ["/usr/bin/true"], check=recorder("skipped"))
    skipped.broken = "pre-check failed"
    harness.run_interleaved(runner, [a1, a2, b1, bad, skipped], {"a": 4, "b": 20}, warmup=2,
                            rng=random.Random(7))

    assert [len(v.samples_ns) for v in (a1, a2, b1)] == [4, 4, 20]
    assert len(bad.samples_ns) == 0
    assert [f["round"] for f in bad.failures] == list(range(20))
    assert "skipped" not in order
    # Warm-up and the rounds where both workloads run hold all three variants,
    # the rest only b's; every round holds each variant once.
    rounds = [order[i:i + 3] for i in range(0, 18, 3)] + [order[18 + i:19 + i] for i in range(16)]
    assert all(sorted(r) == ["a1", "a2", "b1"] for r in rounds[:6])
    assert all(r == ["b1"] for r in rounds[6:])
    assert len({tuple(r) for r in rounds[:6]}) > 1


def test_summarize():
    s = harness.summarize([int(ms * 1e6) for ms in range(1, 12)])
    assert s["n"] == 11
    assert s["median_ms"] == pytest.approx(6.0)
    assert s["p10_ms"] == pytest.approx(2.0)
    assert s["p90_ms"] == pytest.approx(10.0)
    assert s["mean_ms"] == pytest.approx(6.0)
    assert (s["min_ms"], s["max_ms"]) == (pytest.approx(1.0), pytest.approx(11.0))
    assert harness.summarize([]) is None
    one = harness.summarize([3_000_000])
    assert one["p10_ms"] == one["p90_ms"] == one["median_ms"] == pytest.approx(3.0)


def test_bootstrap_interval_brackets_the_ratio():
    rng = random.Random(3)
    base = [int(rng.gauss(10e6, 0.5e6)) for _ in range(200)]
    slow = [int(rng.gauss(15e6, 0.5e6)) for _ in range(200)]
    lo, hi = harness.bootstrap_ratio_ci(slow, base, seed=5)
    point = statistics.median(slow) / statistics.median(base)
    assert lo <= point <= hi
    assert 1.4 < lo and hi < 1.6
    assert harness.bootstrap_ratio_ci(slow, base, seed=5) == [lo, hi]
    assert harness.bootstrap_ratio_ci([1], base, seed=5) is None


def test_ratio_and_goals():
    base = harness.summarize([10_000_000, 10_000_000])
    slow = harness.summarize([12_000_000, 12_000_000])
    assert harness.ratio(slow, base) == pytest.approx(1.2)
    assert harness.ratio(None, base) is None
    assert harness.goal("g", 1.2, 1.2)["status"] == "met"
    assert harness.goal("g", 1.21, 1.2)["status"] == "missed"
    assert harness.goal("g", 1.5, 1.5, kind="below")["status"] == "missed"
    assert harness.goal("g", 1.4, 1.5, kind="below")["status"] == "met"
    assert harness.goal("g", None, 1.2)["status"] == "not measured"


def test_launch_goals_compare_zmesh_with_bwrap():
    def rec(w, v, r):
        return {"workload": w, "variant": v, "ratio_to_bare_median": r}
    records = [rec("node", "zmesh", 1.05), rec("node", "bwrap", 1.3),
               rec("python", "zmesh", 1.25), rec("python", "bwrap", 1.2),
               rec("true", "zmesh", 3.0)]
    goals = {g["goal"]: g["status"] for g in launch.evaluate(records, seed=1)}
    assert goals["node: zmesh ≤ ×1.10 of bare"] == "met"
    assert goals["python: zmesh ≤ ×1.20 of bare"] == "missed"
    assert goals["node: zmesh's ratio below bwrap's (same run)"] == "met"
    assert goals["python: zmesh's ratio below bwrap's (same run)"] == "missed"
    assert goals["true: zmesh's ratio below bwrap's (same run)"] == "not measured"


def test_bwrap_fallback_binds_etc_instead_of_ld_so_cache():
    (first, note0), (second, note1) = launch.bwrap_candidates()
    assert first == launch.BWRAP_FLAGS and note0 is None
    assert "/etc/ld.so.cache" not in second
    i = second.index("/etc")
    assert second[i - 1:i + 2] == ["--ro-bind", "/etc", "/etc"]
    assert len(second) == len(first) and note1


def test_wrapper_message_has_a_fresh_deadline():
    make = wrapper.invocation_message("def handler(payload, zmesh):\n    return payload\n")
    msg = json.loads(make())
    now = time.time() * 1000
    assert now + 50000 < msg["deadline_ms"] <= now + 60000
    assert msg["payload"] == {"x": 1} and msg["function"]["entry_point"] == "handler"
    assert msg["code"].startswith("def handler")


def test_parse_cgroup_mounts():
    text = (
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
        "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
        "garbage line\n"
    )
    v2, v1 = harness.parse_cgroup_mounts(text)
    assert v1 == 2
    assert v2 == [{"mountpoint": "/sys/fs/cgroup/unified", "mount_options": "rw,nosuid",
                   "super_options": "rw,nsdelegate"}]


def test_write_results(tmp_path):
    paths = harness.write_results(str(tmp_path), "launch", "2024-01-02", {"a": [1, 2]}, "# t\n")
    assert [os.path.basename(p) for p in paths] == ["launch-2024-01-02.json", "launch-2024-01-02.md"]
    with open(paths[0]) as f:
        assert json.load(f) == {"a": [1, 2]}
    assert sorted(os.listdir(tmp_path)) == ["launch-2024-01-02.json", "launch-2024-01-02.md"]


def test_option_bounds():
    with pytest.raises(SystemExit):
        launch.parse_args(["--rounds", "0"])
    with pytest.raises(SystemExit):
        launch.parse_args(["--rounds", "1e9"])
    with pytest.raises(SystemExit):
        wrapper.parse_args(["--warmup", "-1"])
    assert launch.parse_args(["--rounds", "7"]).rounds == 7
