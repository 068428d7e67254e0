#!/usr/bin/python3
"""Start-up cost of the runtime wrappers: one trivial invocation through
sdk-js/bootstrap.js and sdk-python/bootstrap.py against the bare runtime
start, interleaved in one run. See bench/README.md.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
import harness  # noqa: E402

DEFAULT_ROUNDS = {"node": 60, "python": 200}
GOAL_RATIO = 1.15
EXPECTED_RESULT = {"ok": True, "result": {"x": 1}}

RUNTIMES = {
    # name: (bare argv, wrapper argv relative to the repo, handler code)
    "node": (["/usr/bin/node", "-e", "0"],
             ["/usr/bin/node", "sdk-js/bootstrap.js"],
             "exports.handler = async (p) => p"),
    "python": (["/usr/bin/python3.11", "-c", "0"],
               ["/usr/bin/python3.11", "-S", "sdk-python/bootstrap.py"],  # as zmeshd starts it
               "def handler(payload, zmesh):\n    return payload\n"),
}


def invocation_message(code):
    return harness.invocation_message(code, {"x": 1})


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Wrapper start-up cost: bare runtime vs one trivial invocation, interleaved.")
    p.add_argument("--rounds", type=harness.positive_int(harness.MAX_ROUNDS),
                   help="timed rounds per runtime (default: 200 for python, 60 for node)")
    p.add_argument("--warmup", type=harness.nonnegative_int(harness.MAX_WARMUP),
                   help="untimed rounds first (default 5; 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="a few rounds to prove the harness and both wrappers work; results go to a "
                        "temporary directory unless --out is given")
    p.add_argument("--out", help="results directory (default: bench/results)")
    p.add_argument("--seed", type=harness.nonnegative_int((1 << 32) - 1),
                   help="seed of the per-round shuffle (default: random, recorded in the results)")
    return p.parse_args(argv)


def build_variants(runner):
    variants = []
    for name, (bare_argv, wrapper_argv, code) in RUNTIMES.items():
        # Repository paths made absolute; options stay as they are.
        wrapper_argv = [wrapper_argv[0]] + [a if a.startswith("-") else os.path.join(harness.REPO_ROOT, a)
                                            for a in wrapper_argv[1:]]
        # Both capture stdout, so both pay the same for their stdio.
        bare = harness.Variant(name, "bare", bare_argv, check=harness.expect_empty_stdout)
        wrapper = harness.Variant(name, "wrapper", wrapper_argv, make_stdin=invocation_message(code),
                                  check=harness.expect_stdout(EXPECTED_RESULT))
        if not os.path.isfile(wrapper.argv[-1]):
            wrapper.broken = f"{wrapper.argv[-1]} does not exist"
        for v in (bare, wrapper):
            if v.broken is None:
                error = harness.precheck(runner, v)
                if error is not None:
                    v.broken = f"pre-check failed: {error}"
        variants += [bare, wrapper]
    return variants


def render_markdown(data, records, goals):
    cfg = data["config"]
    rounds = ", ".join(f"{w} {n}" for w, n in cfg["rounds"].items())
    parts = [
        f"# Wrapper start-up, {data['date_local']}",
        "",
        "Wall clock from just before `posix_spawn` to just after `waitpid` reaps the exit. The wrapper "
        "variant reads one invocation from a pipe on stdin, runs a handler that returns its payload "
        "and writes its result; every run's stdout is checked (the wrapper's must be "
        f"`{json.dumps(EXPECTED_RESULT, separators=(',', ':'))}`, bare's empty). Variants interleaved "
        f"round-robin, order shuffled per round (seed {cfg['seed']}). Warm-up rounds, not recorded: "
        f"{cfg['warmup']}; timed rounds: {rounds}."
        + (" **Quick mode: too few rounds to mean anything.**" if cfg["quick"] else ""),
        "",
    ] + harness.report_body(data, "SDK commit", records, goals, cfg["env"])
    for r in records:
        cmd = " ".join(harness.shell_quote(a) for a in r["command"])
        stdin = " < invocation on a pipe" if r["variant"] == "wrapper" else ""
        parts.append(f"- {r['workload']}/{r['variant']}: `{cmd}`{stdin}")
    failures = harness.failures_markdown(records)
    if failures:
        parts += ["", "## Failures", "", failures]
    parts.append("")
    return "\n".join(parts)


def main(argv):
    args = parse_args(argv)
    for name, (bare_argv, _, _) in RUNTIMES.items():
        if not os.access(bare_argv[0], os.X_OK):
            print(f"wrapper: {bare_argv[0]} is missing or not executable", file=sys.stderr)
            return 2
    harness.refresh_python_sdk_bytecode()
    if args.quick:
        rounds_of = {w: args.rounds or 5 for w in RUNTIMES}
        warmup = 1 if args.warmup is None else args.warmup
    else:
        rounds_of = {w: args.rounds or DEFAULT_ROUNDS[w] for w in RUNTIMES}
        warmup = 5 if args.warmup is None else args.warmup
    seed, rng = harness.new_rng(args.seed)
    out_dir = harness.resolve_out_dir(args.out, args.quick, "wrapper")

    date_utc, date_local = harness.now_stamps()
    machine = harness.machine_description({
        "node": ["/usr/bin/node", "--version"],
        "python3.11": ["/usr/bin/python3.11", "--version"],
    })
    commit = harness.git_commit(os.path.join(harness.REPO_ROOT, "sdk-js")) + " (sdk-js), " + \
        harness.git_commit(os.path.join(harness.REPO_ROOT, "sdk-python")) + " (sdk-python)"

    home = tempfile.mkdtemp(prefix="zmesh-bench-home-")
    try:
        env = dict(harness.BENCH_ENV, HOME=home, TMPDIR=home)
        with harness.Runner(env, spawn_wait_s=0) as runner:
            variants = build_variants(runner)
            for v in variants:
                if v.broken:
                    print(f"wrapper: {v.key}: {v.broken}", file=sys.stderr)
            harness.run_interleaved(runner, variants, rounds_of, warmup, rng,
                                    harness.progress_printer("wrapper"))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    machine["loadavg_end"] = harness.loadavg()

    bare_of = {v.workload: v for v in variants if v.name == "bare"}
    records = [harness.variant_record(v, bare_of.get(v.workload), seed) for v in variants]
    by = {(r["workload"], r["variant"]): r for r in records}
    goals = [harness.goal(f"{w}: wrapper ≤ ×{GOAL_RATIO:.2f} of bare",
                          by[(w, "wrapper")]["ratio_to_bare_median"], GOAL_RATIO,
                          ci=by[(w, "wrapper")]["ratio_to_bare_ci95"], ci_of="wrapper/bare")
             for w in RUNTIMES]
    data = {
        "benchmark": "wrapper",
        "date_utc": date_utc,
        "date_local": date_local,
        "commit": commit,
        "machine": machine,
        "config": {
            "quick": args.quick,
            "rounds": rounds_of,
            "warmup": warmup,
            "seed": seed,
            "env": dict(harness.BENCH_ENV, HOME="<private temporary directory>",
                        TMPDIR="<private temporary directory>"),
            "timing": "perf_counter_ns before posix_spawn to after waitpid; stdin /dev/null (bare) "
                      "or a pipe holding the invocation (wrapper); stdout captured and checked; "
                      "stderr /dev/null",
            "expected_stdout": EXPECTED_RESULT,
        },
        "results": records,
        "goals": goals,
    }
    return harness.finish("wrapper", out_dir, date_local, data, render_markdown(data, records, goals), records, goals)


if __name__ == "__main__":
    harness.run_main("wrapper", main)
