#!/usr/bin/python3
"""Launch latency of a process: bare, in zmesh-sandbox, in bubblewrap.

All variants run in one interleaved run (round-robin, order shuffled per
round) so that machine noise lands on each alike, and every ratio compares
numbers taken side by side. See bench/README.md.
"""

import argparse
import os
import shutil
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
import harness  # noqa: E402

WORKLOADS = [
    # name, argv, zmesh-sandbox policy, default rounds
    ("true", ["/usr/bin/true"], "base", 200),
    ("node", ["/usr/bin/node", "-e", "0"], "node", 60),
    ("python", ["/usr/bin/python3.11", "-c", "0"], "python", 200),
]

SANDBOX_FLAGS = ["--memory", "256M", "--pids", "64", "--timeout", "10000", "--cpu", "100"]

# Namespaces and a root comparable to what zmesh-sandbox builds: every
# namespace, read-only /usr with the merged-/usr links, fresh /proc, minimal
# /dev, tmpfs /tmp, unprivileged ids, no capabilities.
BWRAP_FLAGS = [
    "--unshare-all", "--die-with-parent", "--new-session",
    "--ro-bind", "/usr", "/usr",
    "--symlink", "usr/bin", "/bin",
    "--symlink", "usr/lib", "/lib",
    "--symlink", "usr/lib64", "/lib64",
    "--symlink", "usr/sbin", "/sbin",
    "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
    "--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache",
    "--hostname", "zmesh", "--uid", "200000", "--gid", "200000",
    "--cap-drop", "ALL",
]


def bwrap_candidates():
    """The flag sets tried in order until a workload runs cleanly under one.
    The first is the reference set; the others give the runtime more of /etc
    in case a distribution's runtime reads files there at start-up. The one
    used is recorded per workload."""
    whole_etc = []
    skip = 0
    for i, flag in enumerate(BWRAP_FLAGS):
        if skip:
            skip -= 1
            continue
        if flag == "--ro-bind" and BWRAP_FLAGS[i + 1] == "/etc/ld.so.cache":
            whole_etc += ["--ro-bind", "/etc", "/etc"]
            skip = 2
            continue
        whole_etc.append(flag)
    return [
        (BWRAP_FLAGS, None),
        (whole_etc, "read-only bind of the whole /etc instead of /etc/ld.so.cache alone"),
    ]


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Process launch latency: bare vs zmesh-sandbox vs bubblewrap, interleaved.")
    p.add_argument("--rounds", type=harness.positive_int(harness.MAX_ROUNDS),
                   help="timed rounds per workload (default: 200 for true and python, 60 for node)")
    p.add_argument("--warmup", type=harness.nonnegative_int(harness.MAX_WARMUP),
                   help="untimed rounds first (default 5; 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="a few rounds to prove the harness and every variant work; results go to a "
                        "temporary directory unless --out is given")
    p.add_argument("--sandbox", default=os.path.join(harness.REPO_ROOT, "build/sandbox/zmesh-sandbox"),
                   help="zmesh-sandbox binary (default: build/sandbox/zmesh-sandbox of this tree)")
    p.add_argument("--bwrap", default=shutil.which("bwrap") or "/usr/bin/bwrap",
                   help="bubblewrap binary (default: bwrap on PATH)")
    p.add_argument("--out", help="results directory (default: bench/results)")
    p.add_argument("--seed", type=harness.nonnegative_int((1 << 32) - 1),
                   help="seed of the per-round shuffle (default: random, recorded in the results)")
    p.add_argument("--wait", type=harness.nonnegative_int(3600), default=300,
                   help="seconds to wait for a missing or rebuilding zmesh-sandbox (default 300)")
    return p.parse_args(argv)


def wait_for_binary(path, seconds):
    """The sandbox may be mid-rebuild: wait for it rather than fail at once."""
    deadline = time.monotonic() + seconds
    announced = False
    while not (os.path.isfile(path) and os.access(path, os.X_OK)):
        if time.monotonic() >= deadline:
            return False
        if not announced:
            print(f"launch: waiting up to {seconds} s for {path}", file=sys.stderr)
            announced = True
        time.sleep(2.0)
    return True


def build_variants(args, runner):
    variants = []
    bwrap_notes = {}
    for name, prog, policy, _ in WORKLOADS:
        bare = harness.Variant(name, "bare", prog)
        zmesh = harness.Variant(name, "zmesh", [args.sandbox, *SANDBOX_FLAGS, "--policy", policy, "--", *prog])
        variants += [bare, zmesh]
        for v in (bare, zmesh):
            error = harness.precheck(runner, v)
            if error is not None:
                v.broken = f"pre-check failed: {error}"

        tried = []
        chosen = None
        for flags, note in bwrap_candidates():
            v = harness.Variant(name, "bwrap", [args.bwrap, *flags, "--", *prog], note=note)
            error = harness.precheck(runner, v)
            if error is None:
                chosen = v
                break
            tried.append({"command": v.argv, "error": error})
        if chosen is None:
            chosen = harness.Variant(name, "bwrap", [args.bwrap, *BWRAP_FLAGS, "--", *prog])
            chosen.broken = "pre-check failed under every flag set: " + \
                "; ".join(t["error"] for t in tried)
        variants.append(chosen)
        bwrap_notes[name] = {"command": chosen.argv, "adjusted": chosen.note, "failed_attempts": tried}
    return variants, bwrap_notes


def evaluate(records, seed):
    by = {(r["workload"], r["variant"]): r for r in records}

    def field(workload, variant, key):
        rec = by.get((workload, variant))
        return rec.get(key) if rec else None

    goals = []
    for name, limit in (("node", 1.10), ("python", 1.20)):
        goals.append(harness.goal(f"{name}: zmesh ≤ ×{limit:.2f} of bare",
                                  field(name, "zmesh", "ratio_to_bare_median"), limit,
                                  ci=field(name, "zmesh", "ratio_to_bare_ci95"), ci_of="zmesh/bare"))
    for name, *_ in WORKLOADS:
        zmesh_ms = field(name, "zmesh", "samples_ms") or []
        bwrap_ms = field(name, "bwrap", "samples_ms") or []
        goals.append(harness.goal(f"{name}: zmesh's ratio below bwrap's (same run)",
                                  field(name, "zmesh", "ratio_to_bare_median"),
                                  field(name, "bwrap", "ratio_to_bare_median"), kind="below",
                                  ci=harness.bootstrap_ratio_ci(zmesh_ms, bwrap_ms, seed),
                                  ci_of="zmesh/bwrap"))
    return goals


def render_markdown(data, records, goals, bwrap_notes):
    cfg = data["config"]
    rounds = ", ".join(f"{w} {n}" for w, n in cfg["rounds"].items())
    parts = [
        f"# Launch latency, {data['date_local']}",
        "",
        "Wall clock from just before `posix_spawn` to just after `waitpid` reaps the exit, "
        "stdin/stdout/stderr on /dev/null. Variants interleaved round-robin, order shuffled per round "
        f"(seed {cfg['seed']}). Warm-up rounds, not recorded: {cfg['warmup']}; timed rounds: {rounds}."
        + (" **Quick mode: too few rounds to mean anything.**" if cfg["quick"] else ""),
        "",
    ] + harness.report_body(data, "zmesh-sandbox commit", records, goals, cfg["env"])
    for r in records:
        cmd = " ".join(harness.shell_quote(a) for a in r["command"])
        line = f"- {r['workload']}/{r['variant']}: `{cmd}`"
        if r["note"]:
            line += f" (adjusted: {r['note']})"
        parts.append(line)
    for name, note in bwrap_notes.items():
        for attempt in note["failed_attempts"]:
            parts.append(f"- {name}/bwrap flag set rejected: {attempt['error']}")
    failures = harness.failures_markdown(records)
    if failures:
        parts += ["", "## Failures", "", failures]
    parts.append("")
    return "\n".join(parts)


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("launch: must run as root: zmesh-sandbox needs it to create namespaces and cgroups",
              file=sys.stderr)
        return 2
    args.sandbox = os.path.abspath(args.sandbox)
    if not wait_for_binary(args.sandbox, args.wait):
        print(f"launch: {args.sandbox} is missing or not executable (build it first: "
              f"cmake -S . -B build && cmake --build build)", file=sys.stderr)
        return 2
    for prog in sorted({w[1][0] for w in WORKLOADS} | {args.bwrap}):
        if not os.access(prog, os.X_OK):
            print(f"launch: {prog} is missing or not executable", file=sys.stderr)
            return 2

    if args.quick:
        rounds_of = {w[0]: args.rounds or 5 for w in WORKLOADS}
        warmup = 1 if args.warmup is None else args.warmup
    else:
        rounds_of = {w[0]: args.rounds or w[3] for w in WORKLOADS}
        warmup = 5 if args.warmup is None else args.warmup
    seed, rng = harness.new_rng(args.seed)
    out_dir = harness.resolve_out_dir(args.out, args.quick, "launch")

    date_utc, date_local = harness.now_stamps()
    machine = harness.machine_description({
        "node": ["/usr/bin/node", "--version"],
        "python3.11": ["/usr/bin/python3.11", "--version"],
        "bwrap": [args.bwrap, "--version"],
    })
    commit = harness.git_commit(os.path.join(harness.REPO_ROOT, "sandbox"))

    with harness.Runner(harness.BENCH_ENV, args.wait) as runner:
        variants, bwrap_notes = build_variants(args, runner)
        for v in variants:
            if v.broken:
                print(f"launch: {v.key}: {v.broken}", file=sys.stderr)
        harness.run_interleaved(runner, variants, rounds_of, warmup, rng,
                                harness.progress_printer("launch"))
    machine["loadavg_end"] = harness.loadavg()

    bare_of = {v.workload: v for v in variants if v.name == "bare"}
    records = [harness.variant_record(v, bare_of.get(v.workload), seed) for v in variants]
    goals = evaluate(records, seed)
    data = {
        "benchmark": "launch",
        "date_utc": date_utc,
        "date_local": date_local,
        "commit": commit,
        "machine": machine,
        "config": {
            "quick": args.quick,
            "rounds": rounds_of,
            "warmup": warmup,
            "seed": seed,
            "env": harness.BENCH_ENV,
            "timing": "perf_counter_ns before posix_spawn to after waitpid; stdio on /dev/null",
        },
        "bwrap": bwrap_notes,
        "results": records,
        "goals": goals,
    }
    return harness.finish("launch", out_dir, date_local, data, render_markdown(data, records, goals, bwrap_notes), records, goals)


if __name__ == "__main__":
    harness.run_main("launch", main)
