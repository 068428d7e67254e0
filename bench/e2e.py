#!/usr/bin/python3
"""End-to-end invocation benchmark: zmeshd over HTTP, with and without its
warm pool, under load, with a database query, against the alternatives
(a subprocess with rlimits, bubblewrap, zmesh-sandbox by hand, the bare
runtime), all in one run on one machine. See bench/README.md.
"""

import argparse
import math
import os
import secrets
import shutil
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
import e2e_lib  # noqa: E402
import harness  # noqa: E402
import launch  # noqa: E402

RUNTIMES = {
    # workload: (language, handler, database handler, bare argv, wrapper path in the repo, mount point)
    "node": ("javascript",
             "exports.handler = async (p) => p",
             "exports.handler = async (p, zmesh) => (await zmesh.db.queryOne('select 1 as one')).one",
             ["/usr/bin/node", "-e", "0"], "sdk-js", "bootstrap.js", "/opt/zmesh/sdk/js"),
    "python": ("python",
               "def handler(p, z):\n    return p\n",
               "def handler(p, zmesh):\n    return zmesh.db.query_one('select 1 as one')['one']\n",
               ["/usr/bin/python3.11", "-c", "0"], "sdk-python", "bootstrap.py", "/opt/zmesh/sdk/python"),
}
# What zmeshd puts between the runtime and the wrapper (bootstrap.py does
# site's work itself; see the executor).
WRAPPER_FLAGS = {"node": [], "python": ["-S"]}
PAYLOAD = {"x": 1}
DB_RESULT = 1
EXPECTED_WRAPPER_STDOUT = {"ok": True, "result": PAYLOAD}

# The limits zmeshd gives a sandbox with the default function limits
# (timeout 10 s, 256 MB): the subprocess alternative gets them as rlimits.
# RLIMIT_AS only for Python: V8 reserves far more address space than it uses.
TIMEOUT_MS = 10000
MEMORY_BYTES = 256 << 20
RLIMITS = ["--cpu=%d" % (TIMEOUT_MS // 1000 + 2), "--nofile=256", "--nproc=68", "--fsize=%d" % (64 << 20)]
RLIMIT_AS = "--as=%d" % MEMORY_BYTES

# Keeps ZMESH_CONCURRENCY above the largest load so that no request waits
# for a global slot; the project goes to the enterprise tier (256) for the
# same reason.
DAEMON_CONCURRENCY = 64
PROJECT_TIER = "enterprise"

GOAL_WARM_P50_MS = 3.0
GOAL_WARM_P99_MS = 10.0
GOAL_QUERY_ADDS_MS = 2.0
GOAL_COLD_RATIO = 1.20
GOAL_THROUGHPUT_RATIO = 0.90
GOAL_IDLE_RSS_BYTES = 30 * 1000 * 1000

DEFAULT_REQUESTS = 300
DEFAULT_DURATION_S = 10
DEFAULT_CONCURRENCY = [2, 8, 32]
SPAWN_RATE_CONCURRENCY = 2
# Loads run in slices of about this many seconds, interleaved.
LOAD_SLICE_S = 2.5
POOL_FILL_TIMEOUT_S = 120


def parse_concurrency(text):
    try:
        values = [int(x, 10) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}")
    if not values or len(values) > 8 or any(v < 1 or v > DAEMON_CONCURRENCY for v in values):
        raise argparse.ArgumentTypeError(f"1 to 8 integers between 1 and {DAEMON_CONCURRENCY}")
    return sorted(set(values))


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="End-to-end invocations through zmeshd (pool on and off, loads, database) "
                    "against a subprocess with rlimits, bubblewrap and the bare runtime, in one run.")
    p.add_argument("--zmeshd", default=os.path.join(harness.REPO_ROOT, "build/supervisor/zmeshd"),
                   help="zmeshd binary (default: build/supervisor/zmeshd of this tree)")
    p.add_argument("--sandbox",
                   help="zmesh-sandbox binary (default: sandbox/zmesh-sandbox of zmeshd's build tree)")
    p.add_argument("--bwrap", default=shutil.which("bwrap") or "/usr/bin/bwrap",
                   help="bubblewrap binary (default: bwrap on PATH)")
    p.add_argument("--prlimit", default=shutil.which("prlimit") or "/usr/bin/prlimit",
                   help="prlimit binary (default: prlimit on PATH)")
    p.add_argument("--requests", type=harness.positive_int(harness.MAX_ROUNDS),
                   help=f"sequential requests per case (default {DEFAULT_REQUESTS}; 5 with --quick)")
    p.add_argument("--warmup", type=harness.nonnegative_int(harness.MAX_WARMUP),
                   help="untimed rounds first (default 5; 1 with --quick)")
    p.add_argument("--duration", type=harness.positive_int(600),
                   help=f"seconds of each load (default {DEFAULT_DURATION_S}; 1 with --quick)")
    p.add_argument("--concurrency", type=parse_concurrency, default=DEFAULT_CONCURRENCY,
                   help="comma-separated client counts of the loads (default 2,8,32)")
    p.add_argument("--pool-size", type=harness.positive_int(64), default=4,
                   help="warm sandboxes per runtime of the pool-on daemon (default 4)")
    p.add_argument("--quick", action="store_true",
                   help="a few requests and 1 s loads to prove every case works; results go to a "
                        "temporary directory unless --out is given")
    p.add_argument("--out", help="results directory (default: bench/results)")
    p.add_argument("--seed", type=harness.nonnegative_int((1 << 32) - 1),
                   help="seed of the shuffles (default: random, recorded in the results)")
    p.add_argument("--start-timeout", type=harness.positive_int(600), default=120,
                   help="seconds to wait for zmeshd to listen (default 120)")
    return p.parse_args(argv)


def invocation_message(code):
    return harness.invocation_message(code, PAYLOAD)


def process_variants(args, runner):
    """The alternatives, per runtime: bare start, the wrapper as a plain
    subprocess with rlimits, in bubblewrap, in zmesh-sandbox, and
    zmesh-sandbox around the bare runtime (the launch overhead launch.py
    measures)."""
    cases = []
    bwrap_notes = {}
    for workload, (_, code, _, bare_argv, sdk, script, mount) in RUNTIMES.items():
        sdk_dir = os.path.join(harness.REPO_ROOT, sdk)
        runtime = bare_argv[0]
        policy = workload
        check = harness.expect_stdout(EXPECTED_WRAPPER_STDOUT)
        msg = invocation_message(code)
        limits = RLIMITS + ([RLIMIT_AS] if workload == "python" else [])
        variants = [
            harness.Variant(workload, "bare", bare_argv, check=harness.expect_empty_stdout),
            harness.Variant(workload, "subprocess-rlimits",
                            [args.prlimit, *limits, "--", runtime, *WRAPPER_FLAGS[workload],
                             os.path.join(sdk_dir, script)],
                            make_stdin=msg, check=check),
            harness.Variant(workload, "zmesh-sandbox-wrapper",
                            [args.sandbox, *launch.SANDBOX_FLAGS, "--policy", policy, "--bind",
                             f"{sdk_dir}:{mount}", "--", runtime, *WRAPPER_FLAGS[workload], f"{mount}/{script}"],
                            make_stdin=msg, check=check),
            harness.Variant(workload, "zmesh-sandbox-bare",
                            [args.sandbox, *launch.SANDBOX_FLAGS, "--policy", policy, "--", *bare_argv],
                            check=harness.expect_empty_stdout),
        ]
        for v in variants:
            c = e2e_lib.ProcessCase(v, runner)
            e2e_lib.precheck_case(c)
            cases.append(c)

        tried = []
        chosen = None
        for flags, note in launch.bwrap_candidates():
            v = harness.Variant(workload, "bwrap",
                                [args.bwrap, *flags, "--ro-bind", sdk_dir, mount, "--", runtime,
                                 *WRAPPER_FLAGS[workload], f"{mount}/{script}"],
                                make_stdin=msg, check=check, note=note)
            c = e2e_lib.ProcessCase(v, runner)
            if e2e_lib.precheck_case(c) is None:
                chosen = c
                break
            tried.append({"command": v.argv, "error": c.broken})
        if chosen is None:
            chosen = c
            chosen.broken = "pre-check failed under every flag set: " + "; ".join(t["error"] for t in tried)
        cases.append(chosen)
        bwrap_notes[workload] = {"command": chosen.variant.argv, "adjusted": chosen.note,
                                 "failed_attempts": tried}
    return cases, bwrap_notes


def setup_daemon(daemon, with_db):
    """Logs in, creates an enterprise-tier project and the functions.
    Returns (api, token, project id, {(workload, kind): function id})."""
    api = e2e_lib.Api(daemon)
    token = api.login()
    pid = api.create_project(f"bench-{daemon.label}", PROJECT_TIER)
    fids = {}
    for workload, (language, code, db_code, *_rest) in RUNTIMES.items():
        fids[(workload, "trivial")] = api.deploy(pid, f"{workload}-trivial", language, code)
        if with_db:
            fids[(workload, "db")] = api.deploy(pid, f"{workload}-db", language, db_code)
    return api, token, pid, fids


def display_path(label, workload, kind):
    return f"/projects/<bench-{label}>/functions/<{workload}-{kind}>/invoke"


def memory_snapshot(daemon):
    spawners = daemon.spawner_pids()
    return {
        "zmeshd_vmrss_bytes": e2e_lib.vmrss_bytes(daemon.pid),
        "spawner_vmrss_bytes": sum(e2e_lib.vmrss_bytes(p) or 0 for p in spawners) if spawners else None,
        "spawner_pids": len(spawners),
    }


# ---------------------------------------------------------------- records

def case_record(case, bare, seed):
    stats = e2e_lib.latency_stats(case.samples_ns)
    bare_stats = e2e_lib.latency_stats(bare.samples_ns) if bare is not None else None
    ratio = None
    if stats and bare_stats and bare_stats["median_ms"] > 0:
        ratio = stats["median_ms"] / bare_stats["median_ms"]
    rec = {
        "workload": case.workload,
        "variant": case.name,
        "kind": case.kind,
        "command": case.command(),
        "note": case.note,
        "broken": case.broken,
        "stats": stats,
        "ratio_to_bare_median": ratio,
        "ratio_to_bare_ci95": (harness.bootstrap_ratio_ci(case.samples_ns, bare.samples_ns, seed)
                               if bare is not None and bare is not case else None),
        "samples_ms": [round(s / 1e6, 4) for s in case.samples_ns],
        "failures": case.failures,
    }
    if case.kind == "http":
        n = sum(case.starts.values())
        warm_ns = [s for s, st in zip(case.samples_ns, case.sample_starts) if st == "warm"]
        rec.update({
            "daemon": case.daemon.label,
            "starts": dict(case.starts),
            "warm_fraction": case.starts.get("warm", 0) / n if n else None,
            "warm_only_stats": e2e_lib.latency_stats(warm_ns),
            "inside_sandbox_wall_ms": e2e_lib.latency_stats([w * 1e6 for w in case.wall_ms]),
            "outside_sandbox_ms": e2e_lib.latency_stats([max(0.0, o) * 1e6 for o in case.outside_ms]),
            "sandbox_cpu_ms_median": e2e_lib.median_or_none(case.cpu_ms),
            "sandbox_memory_bytes_median": e2e_lib.median_or_none(case.memory_bytes),
            "starts_per_sample": case.sample_starts,
            "wall_ms_samples": [round(w, 3) for w in case.wall_ms],
            "connections_opened": case.client.connects,
            "request_retries": case.client.retries,
        })
    return rec


def ms(v, digits=2):
    return "—" if v is None else f"{v:.{digits}f}"


def by_key(records):
    return {(r["workload"], r["variant"]): r for r in records}


def med(rec):
    return rec["stats"]["median_ms"] if rec and rec.get("stats") else None


def evaluate(records, loads, spawn_rates, memory):
    by = by_key(records)
    goals = []
    for w in RUNTIMES:
        warm = by.get((w, "zmeshd-pool"))
        ws = warm.get("warm_only_stats") if warm else None
        frac = warm.get("warm_fraction") if warm else None
        note = f"over the {ws['n']} warm answers; warm fraction {frac:.0%}" if ws and frac is not None else None
        goals.append(e2e_lib.goal(f"{w}: warm p50 end to end ≤ {GOAL_WARM_P50_MS:g} ms",
                                  ws["p50_ms"] if ws else None, GOAL_WARM_P50_MS, "at_most", "ms", note=note))
        goals.append(e2e_lib.goal(f"{w}: warm p99 end to end ≤ {GOAL_WARM_P99_MS:g} ms",
                                  ws["p99_ms"] if ws else None, GOAL_WARM_P99_MS, "at_most", "ms", note=note))
    for w in RUNTIMES:
        trivial, db = med(by.get((w, "zmeshd-pool"))), med(by.get((w, "zmeshd-pool-db")))
        added = db - trivial if trivial is not None and db is not None else None
        note = (f"p50 {db:.2f} ms with one query against {trivial:.2f} ms without, interleaved in this run"
                if added is not None else None)
        goals.append(e2e_lib.goal(f"{w}: one query through zmesh.db adds ≤ {GOAL_QUERY_ADDS_MS:g} ms at p50 (warm)",
                                  added, GOAL_QUERY_ADDS_MS, "at_most", "ms", note=note))
    for w in RUNTIMES:
        cold = by.get((w, "zmeshd-nopool"))
        goals.append(e2e_lib.goal(f"{w}: cold invoke (HTTP, pool off) ≤ ×{GOAL_COLD_RATIO:.2f} of bare runtime start",
                                  cold["ratio_to_bare_median"] if cold else None, GOAL_COLD_RATIO, "at_most", "x",
                                  ci=cold["ratio_to_bare_ci95"] if cold else None, ci_of="cold/bare"))
    for w in RUNTIMES:
        best = None
        for ld in loads:
            if ld["workload"] == w and ld.get("ok_per_s") is not None:
                if best is None or ld["ok_per_s"] > best["ok_per_s"]:
                    best = ld
        bare = spawn_rates.get(w)
        value = None
        note = None
        if best and bare and bare.get("ok_per_s"):
            value = best["ok_per_s"] / bare["ok_per_s"]
            note = (f"best zmeshd load: {best['ok_per_s']:.1f}/s at concurrency {best['concurrency']}; "
                    f"bare spawn rate {bare['ok_per_s']:.1f}/s at concurrency {bare['concurrency']}")
        goals.append(e2e_lib.goal(f"{w}: sustained fresh-process throughput ≥ {GOAL_THROUGHPUT_RATIO:.0%} of the bare "
                                  "spawn rate", value, GOAL_THROUGHPUT_RATIO, "at_least", "x", note=note))
    idle = [(label, m["idle_after_start"]["zmeshd_vmrss_bytes"]) for label, m in memory.items()
            if m.get("idle_after_start") and m["idle_after_start"]["zmeshd_vmrss_bytes"] is not None]
    worst = max(idle, key=lambda x: x[1]) if idle else None
    goals.append(e2e_lib.goal(f"zmeshd idle RSS ≤ {GOAL_IDLE_RSS_BYTES / 1e6:g} MB (the zmeshd process alone)",
                              worst[1] if worst else None, GOAL_IDLE_RSS_BYTES, "at_most", "MB",
                              note=("the larger of " + ", ".join(f"{label} {v / 1e6:.1f} MB" for label, v in idle))
                              if idle else None))
    return goals


# ---------------------------------------------------------------- Markdown

def fmt_starts(rec):
    s = rec.get("starts") or {}
    return f"{s.get('warm', 0)} / {s.get('cold', 0)}"


def slice_range(ld):
    rates = [s["ok_per_s"] for s in ld.get("slices") or [] if s.get("ok_per_s") is not None]
    if len(rates) < 2:
        return "—"
    return f"{min(rates):.1f}–{max(rates):.1f}"


def cpu_per_request(ld, key):
    cpu = ld.get("cpu_s") or {}
    v = cpu.get(key)
    n = ld.get("ok") or 0
    return v * 1000.0 / n if v is not None and n else None


CPU_PARTS = ("sandboxes_s", "spawner_s", "zmeshd_s", "postgres_s", "bench_client_s")


def rest_cpu(ld):
    cpu = ld.get("cpu_s") or {}
    parts = [cpu.get(k) for k in ("machine_s",) + CPU_PARTS]
    if None in parts or not ld.get("ok"):
        return None
    return (parts[0] - sum(parts[1:])) * 1000.0 / ld["ok"]


def breakdown(records, loads, spawn_rates, nproc):
    """Where the time goes, as numbers (rendered into sentences by the
    caller): the cold path as a telescoping sum of medians of this run, the
    warm path as in-sandbox vs outside, throughput as CPU per request."""
    by = by_key(records)
    out = {}
    for w in RUNTIMES:
        bare = med(by.get((w, "bare")))
        sbx_bare = med(by.get((w, "zmesh-sandbox-bare")))
        sbx_wrap = med(by.get((w, "zmesh-sandbox-wrapper")))
        sub = med(by.get((w, "subprocess-rlimits")))
        cold = by.get((w, "zmeshd-nopool"))
        warm = by.get((w, "zmeshd-pool"))
        steps = None
        if None not in (bare, sbx_bare, sbx_wrap, med(cold)):
            steps = {
                "bare_runtime_start_ms": bare,
                "sandbox_launch_ms": sbx_bare - bare,
                "wrapper_and_handler_ms": sbx_wrap - sbx_bare,
                "daemon_and_http_ms": med(cold) - sbx_wrap,
                "cold_round_trip_ms": med(cold),
            }
        cold_split = warm_split = None
        if cold and cold.get("inside_sandbox_wall_ms") and cold.get("outside_sandbox_ms"):
            cold_split = {"round_trip_p50_ms": cold["stats"]["p50_ms"],
                          "inside_p50_ms": cold["inside_sandbox_wall_ms"]["p50_ms"],
                          "outside_p50_ms": cold["outside_sandbox_ms"]["p50_ms"],
                          "sandbox_cpu_ms_p50": cold.get("sandbox_cpu_ms_median")}
        if warm and warm.get("inside_sandbox_wall_ms") and warm.get("outside_sandbox_ms"):
            warm_split = {"round_trip_p50_ms": warm["stats"]["p50_ms"],
                          "round_trip_p99_ms": warm["stats"]["p99_ms"],
                          "inside_p50_ms": warm["inside_sandbox_wall_ms"]["p50_ms"],
                          "inside_p99_ms": warm["inside_sandbox_wall_ms"]["p99_ms"],
                          "outside_p50_ms": warm["outside_sandbox_ms"]["p50_ms"],
                          "outside_p99_ms": warm["outside_sandbox_ms"]["p99_ms"],
                          "sandbox_cpu_ms_p50": warm.get("sandbox_cpu_ms_median")}
        throughput = []
        for ld in loads:
            if ld["workload"] != w or not ld.get("ok"):
                continue
            machine = cpu_per_request(ld, "machine_s")
            throughput.append({
                "concurrency": ld["concurrency"],
                "ok_per_s": ld["ok_per_s"],
                "machine_cpu_ms_per_ok": machine,
                "sandboxes_cpu_ms_per_ok": cpu_per_request(ld, "sandboxes_s"),
                "spawner_cpu_ms_per_ok": cpu_per_request(ld, "spawner_s"),
                "zmeshd_cpu_ms_per_ok": cpu_per_request(ld, "zmeshd_s"),
                "postgres_cpu_ms_per_ok": cpu_per_request(ld, "postgres_s"),
                "bench_client_cpu_ms_per_ok": cpu_per_request(ld, "bench_client_s"),
                "rest_cpu_ms_per_ok": rest_cpu(ld),
                "cpu_bound_per_s": nproc * 1000.0 / machine if machine else None,
            })
        sr = spawn_rates.get(w)
        bare_cpu = None
        if sr and sr.get("ok") and sr["cpu_s"].get("machine_s") is not None:
            bare_cpu = sr["cpu_s"]["machine_s"] * 1000.0 / sr["ok"]
        out[w] = {"cold_steps": steps, "cold_split": cold_split, "warm_split": warm_split,
                  "wrapper_outside_sandbox_ms": (sub - bare) if None not in (sub, bare) else None,
                  "throughput": throughput, "bare_spawn_machine_cpu_ms": bare_cpu}
    return out


def breakdown_markdown(bd):
    lines = []
    for w, b in bd.items():
        lines.append(f"**{w}**")
        lines.append("")
        s = b["cold_steps"]
        if s:
            lines.append(
                f"- Cold path, as a sum of this run's medians: bare runtime start {s['bare_runtime_start_ms']:.2f} ms "
                f"+ sandbox launch (zmesh-sandbox-bare − bare) {s['sandbox_launch_ms']:+.2f} ms "
                f"+ wrapper and handler (zmesh-sandbox-wrapper − zmesh-sandbox-bare) {s['wrapper_and_handler_ms']:+.2f} ms "
                f"+ zmeshd and HTTP (zmeshd-nopool − zmesh-sandbox-wrapper) {s['daemon_and_http_ms']:+.2f} ms "
                f"= {s['cold_round_trip_ms']:.2f} ms (×{s['cold_round_trip_ms'] / s['bare_runtime_start_ms']:.2f} "
                "of bare).")
        if b["wrapper_outside_sandbox_ms"] is not None:
            lines.append(f"- The wrapper without any sandbox (subprocess-rlimits − bare, which also holds prlimit's "
                         f"own exec): {b['wrapper_outside_sandbox_ms']:+.2f} ms.")
        c = b["cold_split"]
        if c:
            lines.append(f"- Cold, per request (p50): round trip {c['round_trip_p50_ms']:.2f} ms, of which inside "
                         f"the sandbox (metrics.wall_ms: clone to reap) {c['inside_p50_ms']:.2f} ms and outside it "
                         f"(HTTP, auth, function lookup, cgroup set-up, recording) {c['outside_p50_ms']:.2f} ms; "
                         f"sandbox CPU {ms(c['sandbox_cpu_ms_p50'])} ms.")
        wsp = b["warm_split"]
        if wsp:
            lines.append(f"- Warm, per request: round trip p50 {wsp['round_trip_p50_ms']:.2f} ms / p99 "
                         f"{wsp['round_trip_p99_ms']:.2f} ms; inside the sandbox (metrics.wall_ms: assignment to "
                         f"reap) p50 {wsp['inside_p50_ms']:.2f} / p99 {wsp['inside_p99_ms']:.2f} ms; outside it "
                         f"p50 {wsp['outside_p50_ms']:.2f} / p99 {wsp['outside_p99_ms']:.2f} ms; sandbox CPU after "
                         f"assignment {ms(wsp['sandbox_cpu_ms_p50'])} ms (p50). Against the "
                         f"{GOAL_WARM_P50_MS:g} ms goal, the larger part is "
                         f"{'inside' if wsp['inside_p50_ms'] >= wsp['outside_p50_ms'] else 'outside'} the sandbox. "
                         "The warm pool takes the runtime's "
                         "start off the request path but not the rest of a fresh process's life: reading the "
                         "invocation, compiling the handler, writing the result, exiting and the teardown.")
        for t in b["throughput"]:
            lines.append(
                f"- Load at concurrency {t['concurrency']}: {t['ok_per_s']:.1f}/s; machine CPU per successful "
                f"invoke {ms(t['machine_cpu_ms_per_ok'])} ms: the sandboxes {ms(t['sandboxes_cpu_ms_per_ok'])} "
                "(runtime, wrapper and the sandbox's init, in their cgroups, the warm pool's start-ups included), "
                f"the spawner {ms(t['spawner_cpu_ms_per_ok'])}, zmeshd {ms(t['zmeshd_cpu_ms_per_ok'])}, its "
                f"PostgreSQL {ms(t['postgres_cpu_ms_per_ok'])}, this benchmark's client "
                f"{ms(t['bench_client_cpu_ms_per_ok'])}, the rest {ms(t['rest_cpu_ms_per_ok'])} (the kernel's "
                "work outside the sandboxes' cgroups — namespace teardown in kernel threads, interrupts — and "
                f"anything else running on the machine); {ms(t['cpu_bound_per_s'], 1)}/s would saturate every "
                "CPU.")
        best = max(b["throughput"], key=lambda t: t["ok_per_s"] or 0, default=None)
        bare_cpu = b["bare_spawn_machine_cpu_ms"]
        if bare_cpu is not None:
            line = f"- A bare spawn of the runtime (the spawn-rate phase) costs {bare_cpu:.2f} ms of machine CPU"
            if best and best["machine_cpu_ms_per_ok"]:
                line += (f"; an invoke at the best load (concurrency {best['concurrency']}) costs "
                         f"{best['machine_cpu_ms_per_ok']:.2f} ms, ×{best['machine_cpu_ms_per_ok'] / bare_cpu:.2f}. "
                         "When both saturate the CPUs, that ratio is the inverse of the throughput ratio")
                if best.get("sandboxes_cpu_ms_per_ok") is not None:
                    line += (f". The sandboxes alone take {best['sandboxes_cpu_ms_per_ok']:.2f} ms "
                             f"(×{best['sandboxes_cpu_ms_per_ok'] / bare_cpu:.2f} of a bare spawn): the runtime "
                             "running the wrapper, under seccomp, charged to its own memory cgroup, plus the "
                             "sandbox's init; everything else the platform does per invoke is "
                             f"{best['machine_cpu_ms_per_ok'] - best['sandboxes_cpu_ms_per_ok']:.2f} ms")
            lines.append(line + ".")
        lines.append("")
    return "\n".join(lines)


def render_markdown(data, records, goals, bwrap_notes):
    cfg = data["config"]
    by = by_key(records)
    parts = [
        f"# End-to-end invocations, {data['date_local']}",
        "",
        f"zmeshd (`{cfg['zmeshd']}`) started twice for this run, each with its own embedded PostgreSQL: "
        f"**pool on** (`--pool-size {cfg['pool_size']}`) and **pool off** (`--pool-size 0`), both with "
        f"`ZMESH_CONCURRENCY={DAEMON_CONCURRENCY}` and the project on the `{PROJECT_TIER}` tier, so that no "
        "limit of the platform interferes. HTTP timings are taken by a client on one keep-alive connection "
        "per case (TCP set-up is outside every timing), from just before the request is written to just "
        "after the whole answer is read. Process timings are launch.py's: `posix_spawn` to `waitpid`. "
        f"Sequential cases interleaved round-robin, order shuffled per round (seed {cfg['seed']}); "
        f"warm-up rounds, not recorded: {cfg['warmup']}; timed requests per case: {cfg['requests']}. "
        f"Loads: {cfg['duration_s']} s each, run as {cfg['load_slices']} interleaved slice(s) in an order "
        "shuffled per round."
        + (" **Quick mode: too few requests to mean anything.**" if cfg["quick"] else ""),
        "",
        "**zmeshd's numbers include HTTP over loopback, JSON, authentication, the database lookups and the "
        "recording of each invocation; the alternatives' do not** (they are a process fed the invocation "
        "on a pipe).",
        "",
        "## Machine",
        "",
        harness.machine_markdown(data["machine"], data["date_utc"], "measured tree", data["commit"]),
        "",
        "Other work runs on this machine at the same time: see the load averages, here and per load below "
        "(during a load they also count this benchmark's own sandboxes: "
        f"{max(cfg['concurrency'])} concurrent invocations are up to {max(cfg['concurrency'])} "
        "runnable processes). Load average over the sequential phase: "
        f"{harness._fmt_load(data['sequential_loadavg'].get('start'))} → "
        f"{harness._fmt_load(data['sequential_loadavg'].get('end'))}.",
        "",
        "## 1. Sequential invokes over HTTP",
        "",
        "`POST /projects/{pid}/functions/{fid}/invoke {\"payload\":{\"x\":1}}`. *warm / cold*: the answers' "
        "`start`. *in sandbox*: the answer's `metrics.wall_ms`; *outside*: round trip − wall_ms, per request.",
        "",
        "| runtime | case | warm / cold | p50 ms | p95 | p99 | mean | n | in sandbox p50 | outside p50 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {"zmeshd-pool": "trivial, pool on", "zmeshd-nopool": "trivial, pool off",
              "zmeshd-pool-db": "one query via zmesh.db, pool on"}
    for w in RUNTIMES:
        for name, label in labels.items():
            r = by.get((w, name))
            if r is None:
                continue
            s = r["stats"]
            if s is None:
                parts.append(f"| {w} | {label} | | no clean run | | | | 0 | | |")
                continue
            fails = f" ({len(r['failures'])} failed)" if r["failures"] else ""
            inside = r["inside_sandbox_wall_ms"]
            outside = r["outside_sandbox_ms"]
            parts.append(f"| {w} | {label} | {fmt_starts(r)} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | "
                         f"{s['p99_ms']:.2f} | {s['mean_ms']:.2f} | {s['n']}{fails} | "
                         f"{ms(inside['p50_ms'] if inside else None)} | {ms(outside['p50_ms'] if outside else None)} |")
    parts += [
        "",
        "## 2. Alternatives side by side (medians, ms)",
        "",
        "Same handlers, same run. *zmeshd* columns are HTTP round trips; the others are one process per "
        "invocation, timed from spawn to reap, with no HTTP: *subprocess + rlimits* is the wrapper run with "
        "prlimit (the approach of platforms without namespaces), *bwrap* the wrapper in bubblewrap with "
        "launch.py's flags plus a read-only bind of the SDK, *zmesh-sandbox* the wrapper in zmeshd's sandbox "
        "run by hand, *bare* the runtime doing nothing (`node -e 0`, `python3.11 -c 0`).",
        "",
        "| runtime | zmeshd warm (HTTP) | zmeshd cold (HTTP) | subprocess + rlimits | bwrap | zmesh-sandbox | bare |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for w in RUNTIMES:
        cols = [med(by.get((w, n))) for n in ("zmeshd-pool", "zmeshd-nopool", "subprocess-rlimits", "bwrap",
                                              "zmesh-sandbox-wrapper", "bare")]
        parts.append(f"| {w} | " + " | ".join(ms(c) for c in cols) + " |")
    parts += [
        "",
        "Every sequential case:",
        "",
        "| workload | variant | median ms | p10 | p90 | p99 | n | ratio to bare | 95% CI |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        s = r["stats"]
        if s is None:
            why = "not run" if r["broken"] else "no clean run"
            parts.append(f"| {r['workload']} | {r['variant']} | {why} | | | | 0 | — | — |")
            continue
        fails = f" ({len(r['failures'])} failed)" if r["failures"] else ""
        ratio = f"×{r['ratio_to_bare_median']:.3f}" if r["ratio_to_bare_median"] is not None else "—"
        parts.append(f"| {r['workload']} | {r['variant']} | {s['median_ms']:.3f} | {s['p10_ms']:.3f} | "
                     f"{s['p90_ms']:.3f} | {s['p99_ms']:.3f} | {s['n']}{fails} | {ratio} | "
                     f"{harness.fmt_ci(r['ratio_to_bare_ci95'])} |")
    parts += [
        "",
        f"## 3. Throughput, pool on ({cfg['duration_s']} s per load)",
        "",
        "Each client on its own keep-alive connection, requests back to back. *200/s* counts successful "
        "answers over the time the clients were busy; latencies are of the 200s. CPU is per successful "
        "invoke: the whole machine, and of it the sandboxes (their cgroups), zmeshd's spawner, zmeshd's process, "
        "its PostgreSQL cluster and this benchmark. "
        f"*bare spawn*: {SPAWN_RATE_CONCURRENCY} threads spawning and reaping the bare runtime back to back "
        "for the same duration. Before each slice of a load the warm pool is left to refill, so each slice "
        "starts with up to the pool's size of sandboxes spawned outside it (see warm / cold).",
        "",
        "| runtime | load | requests | 200 | non-200 | 200/s | 200/s per slice | p50 ms | p99 ms | warm / cold | "
        "CPU ms: machine | sandboxes | spawner | zmeshd | postgres | bench | load avg (start → end) |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for w in RUNTIMES:
        for ld in data["loads"]:
            if ld["workload"] != w:
                continue
            if ld.get("error"):
                parts.append(f"| {w} | concurrency {ld['concurrency']} | | | {ld['error']} | | | | | | | | | | | | |")
                continue
            lat = ld["latency_ok"] or {}
            non = dict(ld["non_200"])
            for k, v in ld["transport_errors"].items():
                non[f"transport: {k}"] = v
            non_s = "; ".join(f"{k}: {v}" for k, v in non.items()) or "0"
            st = ld["starts"]
            parts.append(
                f"| {w} | concurrency {ld['concurrency']} | {ld['requests']} | {ld['ok']} | {non_s} | "
                f"{ms(ld['ok_per_s'], 1)} | {slice_range(ld)} | {ms(lat.get('p50_ms'))} | {ms(lat.get('p99_ms'))} | "
                f"{st.get('warm', 0)} / {st.get('cold', 0)} | {ms(cpu_per_request(ld, 'machine_s'))} | "
                f"{ms(cpu_per_request(ld, 'sandboxes_s'))} | {ms(cpu_per_request(ld, 'spawner_s'))} | "
                f"{ms(cpu_per_request(ld, 'zmeshd_s'))} | {ms(cpu_per_request(ld, 'postgres_s'))} | "
                f"{ms(cpu_per_request(ld, 'bench_client_s'))} | "
                f"{harness._fmt_load(ld['loadavg_start'])} → {harness._fmt_load(ld['loadavg_end'])} |")
        sr = data["spawn_rates"].get(w)
        if sr:
            lat = sr["latency_ok"] or {}
            errs = "; ".join(f"{k}: {v}" for k, v in sr["errors"].items()) or "0"
            cpu = sr["cpu_s"].get("machine_s")
            parts.append(
                f"| {w} | bare spawn, concurrency {sr['concurrency']} | {sr['runs']} | {sr['ok']} | {errs} | "
                f"{ms(sr['ok_per_s'], 1)} | {slice_range(sr)} | {ms(lat.get('p50_ms'))} | {ms(lat.get('p99_ms'))} | | "
                f"{ms(cpu * 1000.0 / sr['ok'] if cpu is not None and sr['ok'] else None)} | | | | | | "
                f"{harness._fmt_load(sr['loadavg_start'])} → {harness._fmt_load(sr['loadavg_end'])} |")
    parts += [
        "",
        "## 4. zmeshd's resident memory",
        "",
        "VmRSS of the zmeshd process alone (`/proc/PID/status`): not its sandboxes, not its PostgreSQL. "
        "The spawner, a small child forked from zmeshd before its threads start, is shown apart.",
        "",
        "| daemon | idle after start | end of set-up | peak during the largest loads | end of the largest loads | "
        "idle at the end | spawner, idle |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def mb(v):
        return "—" if v is None else f"{v / 1e6:.1f} MB"

    for label, m in data["memory"].items():
        idle = m.get("idle_after_start") or {}
        parts.append(
            f"| {label} | {mb(idle.get('zmeshd_vmrss_bytes'))} | "
            f"{mb((m.get('after_setup') or {}).get('zmeshd_vmrss_bytes'))} | {mb(m.get('largest_load_peak'))} | "
            f"{mb(m.get('largest_load_end'))} | {mb((m.get('idle_at_end') or {}).get('zmeshd_vmrss_bytes'))} | "
            f"{mb(idle.get('spawner_vmrss_bytes'))} |")
    parts += [
        "",
        "## Where the time goes",
        "",
        breakdown_markdown(data["breakdown"]),
        "## Goals",
        "",
        e2e_lib.goals_markdown(goals),
        "",
        "## Commands",
        "",
        "Environment of every process variant: " + ", ".join(f"`{k}={v}`" for k, v in cfg["env"].items()) + ".",
        "",
        "- zmeshd, pool on: `" + " ".join(harness.shell_quote(a) for a in data["daemons"]["pool-on"]["argv"]) + "`",
        "- zmeshd, pool off: `" + " ".join(harness.shell_quote(a) for a in data["daemons"]["pool-off"]["argv"]) + "`",
        "- daemon environment: " + ", ".join(f"`{k}`" for k in cfg["daemon_env_keys"]),
    ]
    for r in records:
        line = f"- {r['workload']}/{r['variant']}: `{r['command']}`"
        if r["note"]:
            line += f" (adjusted: {r['note']})"
        parts.append(line)
    for name, note in bwrap_notes.items():
        for attempt in note["failed_attempts"]:
            parts.append(f"- {name}/bwrap flag set rejected: {attempt['error']}")
    for w, (_, code, db_code, *_rest) in RUNTIMES.items():
        parts.append(f"- {w} handlers: `{code.strip()!r}`; with a query: `{db_code.strip()!r}`")
    if data["failures"]:
        parts += ["", "## Failures", ""] + [f"- {f}" for f in data["failures"]]
    parts.append("")
    return "\n".join(parts)


# ---------------------------------------------------------------- main

def check_tools(args):
    for prog in [args.zmeshd, args.sandbox, args.bwrap, args.prlimit, "/usr/bin/node", "/usr/bin/python3.11",
                 e2e_lib.PG_CTL]:
        if not (os.path.isfile(prog) and os.access(prog, os.X_OK)):
            hint = ""
            if prog in (args.zmeshd, args.sandbox):
                hint = " (build it first: cmake -S . -B build && cmake --build build, or pass --zmeshd/--sandbox)"
            return f"{prog} is missing or not executable{hint}"
    if shutil.which("runuser") is None:
        return "runuser is missing (util-linux)"
    return None


def load_failures(loads, spawn_rates):
    """What in the loads is a failure of the run rather than a result: a
    transport error, an answer other than 200 or 429, a client that hung, a
    load with no success at all, a bare spawn that failed."""
    out = []
    for ld in loads:
        tag = f"load {ld['workload']} at concurrency {ld['concurrency']}"
        if ld.get("error"):
            out.append(f"{tag}: {ld['error']}")
            continue
        bad = {k: v for k, v in ld["non_200"].items() if not k.startswith("429 ")}
        if bad:
            out.append(f"{tag}: answers other than 200 or 429: {bad}")
        if ld["transport_errors"]:
            out.append(f"{tag}: transport errors: {ld['transport_errors']}")
        if ld["hung_clients"]:
            out.append(f"{tag}: {ld['hung_clients']} client(s) still waiting at the end")
        if not ld["ok"]:
            out.append(f"{tag}: no successful invoke")
    for w, sr in spawn_rates.items():
        if sr["errors"] or sr["hung_threads"] or not sr["ok"]:
            out.append(f"bare spawn rate of {w}: {sr['ok']} clean runs; errors {sr['errors']}; "
                       f"{sr['hung_threads']} thread(s) hung")
    return out


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("e2e: must run as root: zmeshd creates sandboxes and runs PostgreSQL as the postgres user",
              file=sys.stderr)
        return 2
    args.zmeshd = os.path.abspath(args.zmeshd)
    if args.sandbox is None:
        args.sandbox = os.path.join(os.path.dirname(os.path.dirname(args.zmeshd)), "sandbox", "zmesh-sandbox")
    args.sandbox = os.path.abspath(args.sandbox)
    problem = check_tools(args)
    if problem:
        print(f"e2e: {problem}", file=sys.stderr)
        return 2
    harness.refresh_python_sdk_bytecode()

    requests = args.requests or (5 if args.quick else DEFAULT_REQUESTS)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    duration = args.duration or (1 if args.quick else DEFAULT_DURATION_S)
    seed, rng = harness.new_rng(args.seed)

    date_utc, date_local = harness.now_stamps()
    machine = harness.machine_description({
        "node": ["/usr/bin/node", "--version"],
        "python3.11": ["/usr/bin/python3.11", "--version"],
        "bwrap": [args.bwrap, "--version"],
        "prlimit": [args.prlimit, "--version"],
    })
    commit = ", ".join(f"{harness.git_commit(os.path.join(harness.REPO_ROOT, d))} ({d})"
                       for d in ("supervisor", "sandbox", "sdk-js", "sdk-python"))
    st = os.stat(args.zmeshd)
    binary_info = {"path": args.zmeshd, "size": st.st_size,
                   "mtime_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))}

    password = "bench-" + secrets.token_hex(12)
    env_extra = {"ZMESH_CONCURRENCY": str(DAEMON_CONCURRENCY)}
    daemons = {
        "pool-on": e2e_lib.Daemon(args.zmeshd, "pool-on", args.pool_size, env_extra, password),
        "pool-off": e2e_lib.Daemon(args.zmeshd, "pool-off", 0, env_extra, password),
    }
    home = tempfile.mkdtemp(prefix="zmesh-bench-home-")
    failures = []
    memory = {label: {} for label in daemons}
    stop_status = {}
    apis = []
    cases, loads, spawn_rates, bwrap_notes = [], [], {}, {}
    seq_load = {}
    try:
        for d in daemons.values():
            d.start()
        for d in daemons.values():
            d.wait_ready(args.start_timeout)
        pool_api = e2e_lib.Api(daemons["pool-on"])
        apis.append(pool_api)
        waited = pool_api.wait_pool_full(POOL_FILL_TIMEOUT_S)
        if waited is None:
            failures.append(f"the warm pool did not fill within {POOL_FILL_TIMEOUT_S} s of start")
        for label, d in daemons.items():
            memory[label]["idle_after_start"] = memory_snapshot(d)

        _, pool_token, pool_pid, pool_fids = setup_daemon(daemons["pool-on"], with_db=True)
        _, cold_token, cold_pid, cold_fids = setup_daemon(daemons["pool-off"], with_db=False)
        for label, d in daemons.items():
            memory[label]["after_setup"] = memory_snapshot(d)

        env = dict(harness.BENCH_ENV, HOME=home, TMPDIR=home)
        with harness.Runner(env, spawn_wait_s=0) as runner:
            cases, bwrap_notes = process_variants(args, runner)
            for w in RUNTIMES:
                cases += [
                    e2e_lib.HttpInvokeCase(w, "zmeshd-pool", daemons["pool-on"], pool_token, pool_pid,
                                           pool_fids[(w, "trivial")], PAYLOAD,
                                           display_path=display_path("pool-on", w, "trivial")),
                    e2e_lib.HttpInvokeCase(w, "zmeshd-pool-db", daemons["pool-on"], pool_token, pool_pid,
                                           pool_fids[(w, "db")], DB_RESULT,
                                           display_path=display_path("pool-on", w, "db")),
                    e2e_lib.HttpInvokeCase(w, "zmeshd-nopool", daemons["pool-off"], cold_token, cold_pid,
                                           cold_fids[(w, "trivial")], PAYLOAD, expect_start="cold",
                                           display_path=display_path("pool-off", w, "trivial")),
                ]
            for c in cases:
                if c.kind == "http":
                    e2e_lib.precheck_case(c)
            for c in cases:
                if c.broken:
                    print(f"e2e: {c.key}: {c.broken}", file=sys.stderr)
            if pool_api.wait_pool_full(POOL_FILL_TIMEOUT_S) is None:
                failures.append("the warm pool did not refill before the sequential phase")
            seq_load = {"start": harness.loadavg()}
            e2e_lib.run_cases_interleaved(cases, requests, warmup, rng, harness.progress_printer("e2e"))
            seq_load["end"] = harness.loadavg()

            # Loads and the bare spawn rates, each cut into slices run
            # round-robin in an order shuffled per round, so that a change of
            # the machine's load (a build starting elsewhere) lands on all of
            # them alike, as the sequential cases are interleaved.
            phases = [("load", w, c) for w in RUNTIMES for c in args.concurrency]
            phases += [("spawn", w, SPAWN_RATE_CONCURRENCY) for w in RUNTIMES]
            n_slices = max(1, math.ceil(duration / LOAD_SLICE_S))
            slice_s = duration / n_slices
            sliced = {p: [] for p in phases}
            for r in range(n_slices):
                order = list(phases)
                rng.shuffle(order)
                print(f"e2e: loads, round {r + 1}/{n_slices} ({len(order)} slices of {slice_s:g} s)",
                      file=sys.stderr)
                for kind, w, conc in order:
                    if kind == "spawn":
                        sliced[(kind, w, conc)].append(
                            e2e_lib.run_spawn_rate(RUNTIMES[w][3], env, conc, slice_s))
                        continue
                    if pool_api.wait_pool_full(POOL_FILL_TIMEOUT_S) is None:
                        failures.append(f"the warm pool did not refill before the load {w} at concurrency {conc}")
                    path = f"/projects/{pool_pid}/functions/{pool_fids[(w, 'trivial')]}/invoke"
                    sliced[(kind, w, conc)].append(
                        e2e_lib.run_http_load(daemons["pool-on"], path, pool_token, PAYLOAD, conc, slice_s))
            loads, spawn_rates = [], {}
            largest = max(args.concurrency)
            for (kind, w, conc), parts in sliced.items():
                merged = e2e_lib.merge_slices(parts)
                merged["workload"] = w
                if kind == "spawn":
                    spawn_rates[w] = merged
                    continue
                loads.append(merged)
                if conc == largest and merged.get("zmeshd_rss_bytes"):
                    # The larger of the runtimes' largest loads.
                    mem = memory["pool-on"]
                    for key, field in (("largest_load_peak", "peak"), ("largest_load_end", "end")):
                        values = [v for v in (mem.get(key), merged["zmeshd_rss_bytes"][field]) if v is not None]
                        mem[key] = max(values) if values else None
        if pool_api.wait_pool_full(POOL_FILL_TIMEOUT_S) is None:
            failures.append("the warm pool did not refill after the loads")
        for label, d in daemons.items():
            memory[label]["idle_at_end"] = memory_snapshot(d)
    finally:
        for api in apis:
            api.close()
        for label, d in daemons.items():
            stop_status[label] = d.stop()
            if stop_status[label] != 0:
                tail = d.log_tail()
                failures.append(f"zmeshd ({label}) exit status on SIGTERM: {stop_status[label]}; log ends: {tail}")
            d.cleanup()
        shutil.rmtree(home, ignore_errors=True)
    machine["loadavg_end"] = harness.loadavg()

    bare_of = {c.workload: c for c in cases if c.name == "bare"}
    # Table order: per runtime, zmeshd first, then the alternatives.
    order = ["zmeshd-pool", "zmeshd-pool-db", "zmeshd-nopool", "subprocess-rlimits", "bwrap",
             "zmesh-sandbox-wrapper", "zmesh-sandbox-bare", "bare"]
    cases.sort(key=lambda c: (list(RUNTIMES).index(c.workload), order.index(c.name)))
    records = [case_record(c, bare_of.get(c.workload), seed) for c in cases]
    for c in cases:
        if c.kind == "http":
            c.client.close()
    for r in records:
        if r["broken"]:
            failures.append(f"{r['workload']}/{r['variant']}: not timed: {r['broken']}")
        if r["failures"]:
            first = r["failures"][0]
            failures.append(f"{r['workload']}/{r['variant']}: {len(r['failures'])} timed run(s) failed; "
                            f"first (round {first['round']}): {first['error']}")
        elif r["stats"] is None and not r["broken"]:
            failures.append(f"{r['workload']}/{r['variant']}: no clean run")
    failures += load_failures(loads, spawn_rates)

    goals = evaluate(records, loads, spawn_rates, memory)
    bd = breakdown(records, loads, spawn_rates, machine["nproc"])
    data = {
        "benchmark": "e2e",
        "date_utc": date_utc,
        "date_local": date_local,
        "commit": commit,
        "machine": machine,
        "config": {
            "quick": args.quick,
            "requests": requests,
            "warmup": warmup,
            "duration_s": duration,
            "concurrency": args.concurrency,
            "spawn_rate_concurrency": SPAWN_RATE_CONCURRENCY,
            "load_slices": max(1, math.ceil(duration / LOAD_SLICE_S)),
            "pool_size": args.pool_size,
            "seed": seed,
            "zmeshd": args.zmeshd,
            "zmeshd_binary": binary_info,
            "daemon_concurrency": DAEMON_CONCURRENCY,
            "project_tier": PROJECT_TIER,
            "daemon_env_keys": sorted(daemons["pool-on"].env),
            "env": dict(harness.BENCH_ENV, HOME="<private temporary directory>",
                        TMPDIR="<private temporary directory>"),
            "payload": PAYLOAD,
            "timing": "HTTP: perf_counter_ns before the request is written to after the body is read, one "
                      "keep-alive connection per case; processes: perf_counter_ns before posix_spawn to after "
                      "waitpid",
        },
        "daemons": {label: {"argv": d.argv, "pool_size": d.pool_size, "stop_status": stop_status.get(label)}
                    for label, d in daemons.items()},
        "results": records,
        "sequential_loadavg": seq_load,
        "loads": loads,
        "spawn_rates": spawn_rates,
        "memory": memory,
        "breakdown": bd,
        "bwrap": bwrap_notes,
        "goals": goals,
        "failures": failures,
    }
    # Made only now, so that a run that could not start leaves no directory.
    out_dir = harness.resolve_out_dir(args.out, args.quick, "e2e")
    paths = harness.write_results(out_dir, "e2e", date_local, data,
                                  render_markdown(data, records, goals, bwrap_notes))
    print(e2e_lib.goals_markdown(goals))
    for path in paths:
        print(f"e2e: wrote {path}")
    if failures:
        for f in failures:
            print(f"e2e: failure: {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    harness.run_main("e2e", main)
