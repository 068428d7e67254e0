#!/usr/bin/python3
"""A/B benchmark of two zmeshd binaries in one run: the same invocation
cases against both, interleaved round by round, with medians, tails and the
ratio B/A of medians with a bootstrap interval. See bench/README.md.

    ab.py --a OLD_ZMESHD --b NEW_ZMESHD [--label-a before --label-b after]
          [--requests N] [--quick] [--out DIR]
"""

import argparse
import json
import os
import re
import secrets
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
import e2e  # noqa: E402
import e2e_lib  # noqa: E402
import harness  # noqa: E402

PREFIX = "ab"
PAYLOAD = e2e.PAYLOAD  # {"x": 1}
DB_RESULT = PAYLOAD["x"]

# Per runtime: (language, trivial handler, handler with one query). The query
# takes the payload's x as its parameter, so the statement is the same for
# every invocation and the answer proves the round trip to PostgreSQL. psycopg2
# binds %s client-side; node-postgres sends $1 as a real parameter.
RUNTIMES = {
    "node": ("javascript",
             "exports.handler = async (p) => p",
             "exports.handler = async (p, zmesh) => (await zmesh.db.queryOne('SELECT $1::int AS v', [p.x])).v"),
    "python": ("python",
               "def handler(p, z):\n    return p\n",
               "def handler(p, zmesh):\n    return zmesh.db.query_one('SELECT %s::int AS v', [p['x']])['v']\n"),
}

# (case name, runtime, function kind, route): the table's rows, in order.
CASES = [
    ("node warm trivial", "node", "trivial", "invoke"),
    ("python warm trivial", "python", "trivial", "invoke"),
    ("node warm db SELECT $1::int", "node", "db", "invoke"),
    ("python warm db SELECT $1::int", "python", "db", "invoke"),
    ("node trivial via API key", "node", "trivial", "api_key"),
]

DEFAULT_REQUESTS = 300
QUICK_REQUESTS = 5
# Before every timed request, both daemons' warm pools are waited for (the
# sandbox the previous request used is replaced in the background): a request
# is never timed while either daemon is still spawning. Bounded per request.
SETTLE_TIMEOUT_S = 10.0
SETTLE_POLL_S = 0.005
# The whole timed phase is bounded too: past this, the remaining requests
# are recorded as failures without being sent.
DEFAULT_BUDGET_S = 1800
QUICK_BUDGET_S = 200

LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


def label_arg(text):
    if not LABEL_RE.match(text):
        raise argparse.ArgumentTypeError("1 to 32 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit")
    return text


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Two zmeshd binaries side by side in one run: warm invocations (trivial, one query, "
                    "by API key), interleaved A B per round, medians and the ratio B/A with a 95%% bootstrap CI.")
    p.add_argument("--a", required=True, help="zmeshd binary A (before)")
    p.add_argument("--b", required=True, help="zmeshd binary B (after)")
    p.add_argument("--label-a", type=label_arg, default="a", help="name of A in the results (default a)")
    p.add_argument("--label-b", type=label_arg, default="b", help="name of B in the results (default b)")
    p.add_argument("--requests", type=harness.positive_int(harness.MAX_ROUNDS),
                   help=f"timed requests per case and side (default {DEFAULT_REQUESTS}; {QUICK_REQUESTS} with --quick)")
    p.add_argument("--warmup", type=harness.nonnegative_int(harness.MAX_WARMUP),
                   help="untimed rounds first (default 5; 1 with --quick)")
    p.add_argument("--pool-size", type=harness.nonnegative_int(64), default=4,
                   help="warm sandboxes per runtime, the same for both daemons (default 4; 0: every start is "
                        "cold, the cases' \"warm\" then names the case, not the start)")
    p.add_argument("--quick", action="store_true",
                   help="a few requests to prove every case works on both sides; results go to a temporary "
                        "directory unless --out is given; exit 0 when every case worked")
    p.add_argument("--out", help="results directory (default: bench/results)")
    p.add_argument("--seed", type=harness.nonnegative_int((1 << 32) - 1),
                   help="seed of the per-round shuffle (default: random, recorded in the results)")
    p.add_argument("--budget", type=harness.positive_int(4 * 3600),
                   help=f"seconds the timed phase may take at most (default {DEFAULT_BUDGET_S}; "
                        f"{QUICK_BUDGET_S} with --quick)")
    p.add_argument("--start-timeout", type=harness.positive_int(600), default=120,
                   help="seconds to wait for each zmeshd to listen (default 120)")
    args = p.parse_args(argv)
    if args.label_a == args.label_b:
        p.error("--label-a and --label-b must differ")
    return args


# ---------------------------------------------------------------- cases

class Settler:
    """Waits, outside any timing, until every warm pool of both daemons holds
    what it aims at. Counts the waits that ran out of time."""

    def __init__(self, apis, deadline):
        self.apis = apis
        self.deadline = deadline
        self.timeouts = 0
        self.waits = 0
        self.waited_s = 0.0

    def _full(self, api):
        m = api.metrics()
        ready = e2e_lib.metric_series(m, "zmesh_pool_ready")
        target = e2e_lib.metric_series(m, "zmesh_pool_target")
        return bool(ready and target) and all(ready.get(labels, 0) >= v for labels, v in target.items())

    def settle(self):
        t0 = time.monotonic()
        limit = min(t0 + SETTLE_TIMEOUT_S, max(self.deadline, t0))
        pending = list(self.apis)
        while pending:
            pending = [a for a in pending if not self._full(a)]
            if not pending:
                break
            if time.monotonic() >= limit:
                self.timeouts += 1
                break
            time.sleep(SETTLE_POLL_S)
        self.waits += 1
        self.waited_s += time.monotonic() - t0


class ABCase(e2e_lib.HttpInvokeCase):
    """One case on one side: HttpInvokeCase's keep-alive POST and answer
    check, preceded by the settle step and stopped by the run's budget. For
    the API-key route, the path, headers and body are those of
    POST /api/functions/{slug} with x-api-key (the body is the payload)."""

    def __init__(self, case_name, side, label, daemon, token, pid, fid, expected, settler,
                 api_key=None, slug=None, runtime=None, kind=None):
        display = (f"/api/functions/{runtime}-{kind}" if api_key else
                   f"/projects/<bench-{label}>/functions/<{runtime}-{kind}>/invoke")
        super().__init__(case_name, label, daemon, token, pid, fid, expected, display_path=display)
        self.side = side
        self.settler = settler
        self.route = "api_key" if api_key else "invoke"
        if api_key:
            self.path = f"/api/functions/{slug}"
            self.headers = {"Content-Type": "application/json", "x-api-key": api_key}
            self.body = json.dumps(PAYLOAD).encode()

    def command(self):
        auth = "x-api-key" if self.route == "api_key" else "Bearer token"
        return (f"POST {self.display_path} {self.body.decode()} ({auth}; zmeshd {self.daemon.label}, "
                f"keep-alive)")

    def run(self):
        if time.monotonic() >= self.settler.deadline:
            return None, "not sent: the run's time budget (--budget) was used up", None
        self.settler.settle()
        return super().run()


def setup_daemon(daemon):
    """Logs in, creates a project on e2e's tier, the four functions and an
    API key. -> (token, project id, {(runtime, kind): (id, slug)}, key)."""
    api = e2e_lib.Api(daemon)
    try:
        token = api.login()
        pid = api.create_project(f"bench-{daemon.label}", e2e.PROJECT_TIER)
        fns = {}
        for runtime, (language, code, db_code) in RUNTIMES.items():
            for kind, src in (("trivial", code), ("db", db_code)):
                fn = api.call("POST", f"/projects/{pid}/functions",
                              {"name": f"{runtime}-{kind}", "language": language, "code": src}, (201,))
                if not isinstance(fn.get("id"), str) or not isinstance(fn.get("slug"), str):
                    raise e2e_lib.DaemonError(f"zmeshd ({daemon.label}): function without an id or slug")
                fns[(runtime, kind)] = (fn["id"], fn["slug"])
        key = api.call("POST", f"/projects/{pid}/api-keys", {"name": "bench-ab"}, (201,)).get("key")
        if not isinstance(key, str) or not key:
            raise e2e_lib.DaemonError(f"zmeshd ({daemon.label}): the new API key was not shown")
        return token, pid, fns, key
    finally:
        api.close()


def binary_info(path):
    st = os.stat(path)
    return {"path": path, "size": st.st_size,
            "mtime_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))}


def sha256_of(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- records

def side_record(case, ratio=None, ci=None):
    """A record in the shape harness.finish() reads (workload, variant, stats,
    ratio_to_bare_*, failures, broken): the workload is the case, the variant
    the side's label, and "ratio to bare" is B/A (None on A's record)."""
    n = sum(case.starts.values())
    return {
        "workload": case.workload,
        "variant": case.name,
        "side": case.side,
        "route": case.route,
        "command": case.command(),
        "note": None,
        "broken": case.broken,
        "stats": e2e_lib.latency_stats(case.samples_ns),
        "ratio_to_bare_median": ratio,
        "ratio_to_bare_ci95": ci,
        "starts": dict(case.starts),
        "warm_fraction": case.starts.get("warm", 0) / n if n else None,
        "inside_sandbox_wall_ms": e2e_lib.latency_stats([w * 1e6 for w in case.wall_ms]),
        "samples_ms": [round(s / 1e6, 4) for s in case.samples_ns],
        "starts_per_sample": case.sample_starts,
        "failures": case.failures,
        "spawn_retries": 0,
        "connections_opened": case.client.connects,
        "request_retries": case.client.retries,
    }


def compare(a, b, seed):
    """The A/B row of one case: B/A of medians and its bootstrap interval."""
    sa, sb = e2e_lib.latency_stats(a.samples_ns), e2e_lib.latency_stats(b.samples_ns)
    ratio = sb["median_ms"] / sa["median_ms"] if sa and sb and sa["median_ms"] > 0 else None
    ci = harness.bootstrap_ratio_ci(b.samples_ns, a.samples_ns, seed) if ratio is not None else None
    return ratio, ci


def fmt(v, digits=2):
    return "—" if v is None else f"{v:.{digits}f}"


def verdict(ci):
    if not ci:
        return "—"
    if ci[1] < 1.0:
        return "B faster"
    if ci[0] > 1.0:
        return "B slower"
    return "within noise"


def results_markdown(rows, label_a, label_b):
    lines = [
        f"| case | {label_a} p50 | p90 | p99 | {label_b} p50 | p90 | p99 | {label_b}/{label_a} p50 | 95% CI | "
        "reading | n | warm |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        sa, sb = r["a"]["stats"], r["b"]["stats"]

        def p(s, k):
            return fmt(s[k]) if s else "—"

        def warm(rec):
            return "—" if rec["warm_fraction"] is None else f"{rec['warm_fraction']:.0%}"

        ratio = f"×{r['ratio_b_over_a']:.3f}" if r["ratio_b_over_a"] is not None else "—"
        na = sa["n"] if sa else 0
        nb = sb["n"] if sb else 0
        lines.append(
            f"| {r['case']} | {p(sa, 'p50_ms')} | {p(sa, 'p90_ms')} | {p(sa, 'p99_ms')} | {p(sb, 'p50_ms')} | "
            f"{p(sb, 'p90_ms')} | {p(sb, 'p99_ms')} | {ratio} | {harness.fmt_ci(r['ci95'])} | {verdict(r['ci95'])} | "
            f"{na} / {nb} | {warm(r['a'])} / {warm(r['b'])} |")
    return "\n".join(lines)


def render_markdown(data, rows):
    cfg = data["config"]
    la, lb = cfg["label_a"], cfg["label_b"]
    parts = [
        f"# zmeshd A/B: {la} (A) vs {lb} (B)",
        "",
        "Produced by `bench/ab.py`" + (" in --quick mode (a smoke run: too few requests to conclude anything)"
                                       if cfg["quick"] else "") + ".",
        "",
        "## Machine",
        "",
        harness.machine_markdown(data["machine"], data["date_utc"], "commit of this tree", data["commit"]),
        "",
        "## Binaries",
        "",
        "| side | label | path | size | mtime (UTC) | sha256 |",
        "|---|---|---|---:|---|---|",
    ]
    for side in ("a", "b"):
        b = data["binaries"][side]
        parts.append(f"| {side.upper()} | {b['label']} | `{b['path']}` | {b['size']} | {b['mtime_utc']} | "
                     f"`{b['sha256'][:16]}…` |")
    parts += [
        "",
        "## Results",
        "",
        f"Milliseconds per request, end to end over HTTP (keep-alive, loopback); {cfg['requests']} timed requests "
        f"per case and side after {cfg['warmup']} untimed round(s); both daemons running at once with "
        f"`--pool-size {cfg['pool_size']}`, cases of both sides interleaved in an order shuffled per round "
        f"(seed {cfg['seed']}); every request timed with both daemons' warm pools full. "
        f"{lb}/{la} is the ratio of medians, its interval a percentile bootstrap (1000 resamples): "
        "\"within noise\" when it contains ×1.",
        "",
        results_markdown(rows, la, lb),
        "",
        f"Load average during the timed phase: {harness._fmt_load(data['timed_loadavg'].get('start'))} → "
        f"{harness._fmt_load(data['timed_loadavg'].get('end'))}; settle waits: {data['settle']['waits']} "
        f"({data['settle']['waited_s']:.1f} s in all, {data['settle']['timeouts']} ran out of time).",
        "",
        "## Commands",
        "",
    ]
    for side in ("a", "b"):
        parts.append(f"- zmeshd {side.upper()}: `" + " ".join(harness.shell_quote(x) for x in data["daemons"][side]["argv"])
                     + "`")
    parts.append("- daemon environment: " + ", ".join(f"`{k}`" for k in cfg["daemon_env_keys"]))
    for r in rows:
        parts.append(f"- {r['case']}: `{r['a']['command']}`")
    for runtime, (_, code, db_code) in RUNTIMES.items():
        parts.append(f"- {runtime} handlers: `{code.strip()!r}`; with a query: `{db_code.strip()!r}`")
    if data["failures"]:
        parts += ["", "## Failures", ""] + [f"- {f}" for f in data["failures"]]
    parts.append("")
    return "\n".join(parts)


# ---------------------------------------------------------------- main

def check_tools(args):
    for prog in (args.a, args.b, e2e_lib.PG_CTL):
        if not (os.path.isfile(prog) and os.access(prog, os.X_OK)):
            return f"{prog} is missing or not executable"
    return None


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        print(f"{PREFIX}: must run as root: zmeshd creates sandboxes and runs PostgreSQL as the postgres user",
              file=sys.stderr)
        return 2
    args.a, args.b = os.path.abspath(args.a), os.path.abspath(args.b)
    problem = check_tools(args)
    if problem:
        print(f"{PREFIX}: {problem}", file=sys.stderr)
        return 2

    requests = args.requests or (QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    budget = args.budget or (QUICK_BUDGET_S if args.quick else DEFAULT_BUDGET_S)
    seed, rng = harness.new_rng(args.seed)
    labels = {"a": args.label_a, "b": args.label_b}
    binaries = {}
    for side, path in (("a", args.a), ("b", args.b)):
        binaries[side] = dict(binary_info(path), label=labels[side], sha256=sha256_of(path))

    # Each daemon serves the SDK of its own source tree: compile each one's
    # Python bytecode as the install does, or a tree without it would pay
    # for compiling the SDK on every start and look slower than it is.
    for side, path in (("a", args.a), ("b", args.b)):
        tree = harness.source_tree_of(path)
        if tree and os.path.isdir(os.path.join(tree, "sdk-python", "zmesh")):
            harness.refresh_python_sdk_bytecode(tree)
            binaries[side]["source_tree"] = tree
        else:
            print(f"{PREFIX}: warning: no source tree found for {path}; its Python SDK's bytecode is as it is",
                  file=sys.stderr)

    date_utc, date_local = harness.now_stamps()
    machine = harness.machine_description({
        "node": ["/usr/bin/node", "--version"],
        "python3.11": ["/usr/bin/python3.11", "--version"],
    })
    commit = ", ".join(f"{harness.git_commit(os.path.join(harness.REPO_ROOT, d))} ({d})"
                       for d in ("supervisor", "sdk-js", "sdk-python"))

    password = "bench-" + secrets.token_hex(12)
    env_extra = {"ZMESH_CONCURRENCY": str(e2e.DAEMON_CONCURRENCY)}
    daemons = {side: e2e_lib.Daemon(path, labels[side], args.pool_size, env_extra, password)
               for side, path in (("a", args.a), ("b", args.b))}
    failures = []
    stop_status = {}
    apis = []
    cases = {}
    settler = None
    timed_load = {}
    try:
        for d in daemons.values():
            d.start()
        for d in daemons.values():
            d.wait_ready(args.start_timeout)
        for d in daemons.values():
            apis.append(e2e_lib.Api(d))
        settler = Settler(apis, deadline=time.monotonic() + budget)
        for side, d in daemons.items():
            token, pid, fns, key = setup_daemon(d)
            for name, runtime, kind, route in CASES:
                fid, slug = fns[(runtime, kind)]
                cases[(name, side)] = ABCase(
                    name, side, labels[side], d, token, pid, fid, DB_RESULT if kind == "db" else PAYLOAD, settler,
                    api_key=key if route == "api_key" else None, slug=slug, runtime=runtime, kind=kind)
        # The pre-check runs once more per case than the timing needs and
        # also warms each side's connection and code paths.
        for c in cases.values():
            if e2e_lib.precheck_case(c):
                print(f"{PREFIX}: {c.workload} ({c.name}): {c.broken}", file=sys.stderr)
        # The budget counts from the timed phase on.
        settler.deadline = time.monotonic() + budget
        timed_load["start"] = harness.loadavg()
        e2e_lib.run_cases_interleaved(list(cases.values()), requests, warmup, rng,
                                      harness.progress_printer(PREFIX))
        timed_load["end"] = harness.loadavg()
    finally:
        for api in apis:
            api.close()
        for c in cases.values():
            c.client.close()
        for side, d in daemons.items():
            stop_status[side] = d.stop()
            if stop_status[side] != 0:
                failures.append(f"zmeshd {side.upper()} ({d.label}) exit status on SIGTERM: {stop_status[side]}; "
                                f"log ends: {d.log_tail()}")
            d.cleanup()
    machine["loadavg_end"] = harness.loadavg()

    rows, records = [], []
    for name, *_ in CASES:
        a, b = cases[(name, "a")], cases[(name, "b")]
        ratio, ci = compare(a, b, seed)
        ra, rb = side_record(a), side_record(b, ratio, ci)
        records += [ra, rb]
        rows.append({"case": name, "a": ra, "b": rb, "ratio_b_over_a": ratio, "ci95": ci})
    for r in records:
        tag = f"{r['workload']} ({r['variant']})"
        if r["broken"]:
            failures.append(f"{tag}: not timed: {r['broken']}")
        elif r["failures"]:
            first = r["failures"][0]
            failures.append(f"{tag}: {len(r['failures'])} timed request(s) failed; first (round {first['round']}): "
                            f"{first['error']}")
        elif r["stats"] is None:
            failures.append(f"{tag}: no clean request")
    if settler is not None and settler.timeouts:
        # Not a failure: the request was still timed, from a pool not full.
        print(f"{PREFIX}: {settler.timeouts} settle wait(s) ran out after {SETTLE_TIMEOUT_S:g} s", file=sys.stderr)

    data = {
        "benchmark": "ab",
        "date_utc": date_utc,
        "date_local": date_local,
        "commit": commit,
        "machine": machine,
        "config": {
            "quick": args.quick,
            "label_a": labels["a"],
            "label_b": labels["b"],
            "requests": requests,
            "warmup": warmup,
            "pool_size": args.pool_size,
            "seed": seed,
            "budget_s": budget,
            "mode": "both daemons at once, interleaved per round, pools settled before every request",
            "settle_timeout_s": SETTLE_TIMEOUT_S,
            "daemon_concurrency": e2e.DAEMON_CONCURRENCY,
            "project_tier": e2e.PROJECT_TIER,
            "daemon_env_keys": sorted(daemons["a"].env),
            "payload": PAYLOAD,
            "timing": "perf_counter_ns before the request is written to after the body is read, one keep-alive "
                      "connection per case and side",
        },
        "binaries": binaries,
        "daemons": {side: {"label": d.label, "argv": d.argv, "pool_size": d.pool_size,
                           "stop_status": stop_status.get(side)} for side, d in daemons.items()},
        "settle": {"waits": settler.waits if settler else 0, "waited_s": settler.waited_s if settler else 0.0,
                   "timeouts": settler.timeouts if settler else 0},
        "timed_loadavg": timed_load,
        "comparisons": [{"case": r["case"], "ratio_b_over_a_median": r["ratio_b_over_a"], "ci95": r["ci95"],
                         "reading": verdict(r["ci95"])} for r in rows],
        "results": records,
        "failures": failures,
    }
    # Made only now, so that a run that could not start leaves no directory.
    out_dir = harness.resolve_out_dir(args.out, args.quick, PREFIX)
    stamp = date_local
    if (labels["a"], labels["b"]) != ("a", "b"):
        stamp += f"-{labels['a']}-vs-{labels['b']}"
    markdown = render_markdown(data, rows)
    rc = harness.finish(PREFIX, out_dir, stamp, data, markdown, records, [])
    print(results_markdown(rows, labels["a"], labels["b"]))
    for f in failures:
        print(f"{PREFIX}: failure: {f}", file=sys.stderr)
    return 1 if failures else rc


if __name__ == "__main__":
    harness.run_main(PREFIX, main)
