#!/usr/bin/python3
"""The event path's own costs, on one zmeshd with its embedded PostgreSQL:

  latency     enqueue -> start on an idle node: an async invocation of a
              trivial function, one at a time; the queue's wait is the
              record's queue_ms (from the job being due to a worker holding
              it, both read on the database's clock); the caller's view
              (202 answered -> record done) is reported beside it.
  throughput  jobs per second through the queue: N jobs queued in one
              statement, timed until the last one is finished, with the
              trivial function (sandboxes and all) and on a second daemon
              whose workers finish jobs without running them (--jobs-noop:
              the queue's own ceiling).
  cron        actual_time - scheduled_time of a six-field schedule firing
              every second (the function returns its event).
  webhook     verify + enqueue: a signed (standard) webhook posted one at a
              time, from request to its 202.

Results go to bench/results/events-YYYY-MM-DD.{md,json}. Standard library
only; run as root (zmeshd starts sandboxes):

    /usr/bin/python3 bench/events.py [--zmeshd build/supervisor/zmeshd] [--quick]
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import statistics
import subprocess
import sys
import time

import e2e_lib
import harness

PREFIX = "events"
PSQL = "/usr/bin/psql"
TRIVIAL_JS = "exports.handler = async (e) => e;"
GOALS = {"latency_p50_ms": 5.0, "noop_jobs_per_s": 2000.0, "cron_p99_ms": 250.0}


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def stats_ms(values):
    if not values:
        return None
    return {"n": len(values), "p50_ms": round(pct(values, 50), 3), "p90_ms": round(pct(values, 90), 3),
            "p99_ms": round(pct(values, 99), 3), "mean_ms": round(statistics.fmean(values), 3),
            "max_ms": round(max(values), 3)}


class Bench:
    def __init__(self, daemon):
        self.d = daemon
        self.api = e2e_lib.Api(daemon)
        self.api.login()
        self.client = e2e_lib.Client(daemon.port)
        self.pid = self.api.create_project("bench-events", "enterprise")
        self.fid = self.api.deploy(self.pid, "echo", "javascript", TRIVIAL_JS)

    def sql(self, query):
        sock = os.path.join(self.d.state_dir, "pg", "run")
        r = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h", sock, "-U",
                            "postgres", "-d", "zmesh", "-c", query], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        if r.returncode != 0:
            raise e2e_lib.DaemonError("psql: " + r.stderr.decode(errors="replace")[:300])
        return [line.split("\t") for line in r.stdout.decode().splitlines() if line]

    def request(self, method, path, body=None, headers=None):
        h = {"Authorization": "Bearer " + self.api.token, "Content-Type": "application/json"}
        h.update(headers or {})
        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        status, out, hdrs = self.client.request(method, path, data, h)
        return status, e2e_lib.body_json(out), hdrs

    def wait_record(self, iid, timeout_s=30):
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.sql("SELECT status, coalesce(queue_ms, -1) FROM invocations WHERE id = '%s'" % iid)
            if rows and rows[0][0] in ("success", "error", "timeout", "dead"):
                return rows[0][0], float(rows[0][1])
            if time.monotonic() > deadline:
                raise e2e_lib.DaemonError("invocation %s not done in %d s" % (iid, timeout_s))
            time.sleep(0.002)

    # ---- phases

    def latency(self, n, warmup):
        queue, caller = [], []
        path = "/projects/%s/functions/%s/invoke" % (self.pid, self.fid)
        for i in range(n + warmup):
            self.api.wait_pool_full(30)
            t0 = time.perf_counter_ns()
            status, body, _ = self.request("POST", path, {"payload": {"i": i}}, {"Prefer": "respond-async"})
            t1 = time.perf_counter_ns()
            if status != 202:
                raise e2e_lib.DaemonError("async invoke -> %d %r" % (status, body))
            st, qms = self.wait_record(body["invocation_id"])
            t2 = time.perf_counter_ns()
            if st != "success":
                raise e2e_lib.DaemonError("async invocation ended %s" % st)
            if i >= warmup:
                queue.append(qms)
                caller.append((t2 - t1) / 1e6)
        return {"queue_ms": stats_ms(queue), "answered_to_done_ms": stats_ms(caller)}

    def throughput(self, n):
        self.sql("SELECT count(zmesh_enqueue('%s', NULL, '1', 'async', NULL)) FROM generate_series(1, 1)" % self.fid)
        self.drain(60)
        t0 = time.monotonic()
        self.sql("SELECT count(zmesh_enqueue('%s', NULL, to_jsonb(g), 'async', NULL)) FROM generate_series(1, %d) g"
                 % (self.fid, n))
        t_enq = time.monotonic() - t0
        self.drain(600)
        total = time.monotonic() - t0
        bad = int(self.sql("SELECT count(*) FROM invocations WHERE function_id = '%s' AND status <> 'success'"
                           % self.fid)[0][0])
        # jobs_per_s: the workers' rate, from the jobs' commit to the
        # last one finished; with_enqueue_per_s counts the queueing too.
        return {"jobs": n, "enqueue_s": round(t_enq, 3), "total_s": round(total, 3),
                "jobs_per_s": round(n / max(total - t_enq, 1e-6), 1),
                "with_enqueue_per_s": round(n / total, 1), "not_success": bad}

    def drain(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while int(self.sql("SELECT count(*) FROM jobs")[0][0]) > 0:
            if time.monotonic() > deadline:
                raise e2e_lib.DaemonError("the queue did not drain in %d s" % timeout_s)
            time.sleep(0.02)

    def cron(self, seconds):
        status, trig, _ = self.request("POST", "/projects/%s/triggers" % self.pid,
                                       {"event_type": "cron", "function_id": self.fid,
                                        "config": {"schedule": "* * * * * *"}})
        if status != 201:
            return {"error": "POST /triggers -> %d %r" % (status, trig)}
        time.sleep(seconds)
        self.request("PATCH", "/projects/%s/triggers/%s" % (self.pid, trig["id"]), {"enabled": False})
        self.drain(60)
        rows = self.sql("SELECT extract(epoch FROM (result_excerpt::jsonb->>'actual_time')::timestamptz - "
                        "(result_excerpt::jsonb->>'scheduled_time')::timestamptz) * 1000 FROM invocations "
                        "WHERE trigger_id = '%s' AND status = 'success'" % trig["id"])
        lags = [float(r[0]) for r in rows]
        fires = int(self.sql("SELECT count(*) FROM cron_fires WHERE trigger_id = '%s'" % trig["id"])[0][0])
        return {"seconds": seconds, "fires": fires, "lag_ms": stats_ms(lags)}

    def webhook(self, n, warmup):
        status, trig, _ = self.request("POST", "/projects/%s/triggers" % self.pid,
                                       {"event_type": "webhook", "function_id": self.fid,
                                        "config": {"verify": "standard"}})
        if status != 201:
            return {"error": "POST /triggers -> %d %r" % (status, trig)}
        key = base64.b64decode(trig["secret"][len("whsec_"):])
        samples = []
        for i in range(n + warmup):
            body = json.dumps({"i": i}).encode()
            mid, ts = "msg_%d_%s" % (i, secrets.token_hex(4)), str(int(time.time()))
            sig = base64.b64encode(hmac.new(key, b"%s.%s.%s" % (mid.encode(), ts.encode(), body),
                                            hashlib.sha256).digest()).decode()
            h = {"Content-Type": "application/json", "webhook-id": mid, "webhook-timestamp": ts,
                 "webhook-signature": "v1," + sig}
            t0 = time.perf_counter_ns()
            st, out, _ = self.client.request("POST", trig["url"], body, h)
            t1 = time.perf_counter_ns()
            if st != 202:
                return {"error": "webhook -> %d %r" % (st, out[:200])}
            if i >= warmup:
                samples.append((t1 - t0) / 1e6)
        self.drain(120)
        return {"verify_enqueue_ms": stats_ms(samples)}


def start(binary, label, pool, env):
    d = e2e_lib.Daemon(binary, label, pool, env, "Bench-" + secrets.token_hex(8))
    d.start()
    d.wait_ready(180)
    return d


def markdown(data):
    m = data["machine"]
    lines = ["# Events benchmark, %s" % data["date_utc"], "",
             harness.machine_markdown(m, data["date_utc"], "zmeshd", data["commit"]), "",
             "Command: `%s`" % data["command"], "", "## Results", ""]
    lat = data["latency"]
    lines += ["| measure | n | p50 ms | p90 ms | p99 ms | mean ms | max ms |", "|---|---:|---:|---:|---:|---:|---:|"]

    def row(name, s):
        if s:
            lines.append("| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f |" % (
                name, s["n"], s["p50_ms"], s["p90_ms"], s["p99_ms"], s["mean_ms"], s["max_ms"]))
        else:
            lines.append("| %s | 0 | — | — | — | — | — |" % name)

    row("enqueue → start (queue_ms: due → claimed)", lat["queue_ms"])
    row("async: 202 answered → record done (caller's view)", lat["answered_to_done_ms"])
    row("cron: actual_time − scheduled_time", data["cron"].get("lag_ms"))
    row("webhook: verify + enqueue (request → 202)", data["webhook"].get("verify_enqueue_ms"))
    lines += ["", "| throughput | jobs | enqueue s (one statement) | total s | jobs/s after enqueue | "
              "jobs/s with enqueue | not success |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in ("trivial", "noop"):
        t = data["throughput"][name]
        lines.append("| %s | %d | %.3f | %.3f | %.1f | %.1f | %d |" % (
            name, t["jobs"], t["enqueue_s"], t["total_s"], t["jobs_per_s"], t["with_enqueue_per_s"],
            t["not_success"]))
    lines += ["", "## Goals", ""]
    for g in data["goals"]:
        lines.append("- %s: %s (goal %s %s) — **%s**" % (g["goal"], g["value"], g["kind"], g["limit"], g["status"]))
    for k in ("cron", "webhook"):
        if data[k].get("error"):
            lines.append("- %s not measured: %s" % (k, data[k]["error"]))
    return "\n".join(lines) + "\n"


def noop_ab(a, out_dir, date_utc, date_local, argv):
    """The queue's own ceiling, binary A against binary B, alternating."""
    runs = {"A": [], "B": []}
    env = {"ZMESH_JOBS_NOOP": "1", "ZMESH_JOB_WORKERS": str(max(a.workers, 8))}
    for r in range(a.rounds):
        for label, binary in (("A", a.noop_ab), ("B", a.zmeshd)) if r % 2 == 0 else (("B", a.zmeshd), ("A", a.noop_ab)):
            d = start(binary, "ab-" + label, 0, env)
            try:
                runs[label].append(Bench(d).throughput(a.noop_jobs)["jobs_per_s"])
            finally:
                d.stop()
                d.cleanup()
    med = {k: statistics.median(v) for k, v in runs.items()}
    data = {"date_utc": date_utc, "machine": harness.machine_description({}),
            "commit": harness.git_commit(harness.REPO_ROOT), "command": " ".join(["bench/events.py"] + argv),
            "a": a.noop_ab, "b": a.zmeshd, "jobs": a.noop_jobs, "runs_jobs_per_s": runs, "median_jobs_per_s": med,
            "ratio_b_to_a": round(med["B"] / med["A"], 3)}
    text = "\n".join(["# Events benchmark: the queue's ceiling, A/B, %s" % date_utc, "",
                      harness.machine_markdown(data["machine"], date_utc, "zmeshd", data["commit"]), "",
                      "Command: `%s`" % data["command"], "",
                      "%d jobs queued in one statement, drained by workers that finish them without running them "
                      "(--jobs-noop), %d rounds each, alternating." % (a.noop_jobs, a.rounds), "",
                      "| binary | runs (jobs/s) | median jobs/s |", "|---|---|---:|",
                      "| A `%s` | %s | %.1f |" % (a.noop_ab, ", ".join("%.0f" % x for x in runs["A"]), med["A"]),
                      "| B `%s` | %s | %.1f |" % (a.zmeshd, ", ".join("%.0f" % x for x in runs["B"]), med["B"]),
                      "", "B/A: ×%.3f" % data["ratio_b_to_a"], ""])
    paths = harness.write_results(out_dir, PREFIX + "-ab", date_local, data, text)
    print(text)
    for path in paths:
        print("events: wrote %s" % path)
    return 0


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zmeshd", default=os.path.join(harness.REPO_ROOT, "build", "supervisor", "zmeshd"))
    p.add_argument("--requests", type=harness.positive_int(100000), default=300)
    p.add_argument("--jobs", type=harness.positive_int(1000000), default=3000)
    p.add_argument("--noop-jobs", type=harness.positive_int(1000000), default=20000)
    p.add_argument("--cron-seconds", type=harness.positive_int(3600), default=60)
    p.add_argument("--workers", type=harness.positive_int(256), default=4)
    p.add_argument("--quick", action="store_true", help="a few of each: proves the harness works, times nothing")
    p.add_argument("--out", help="results directory (default: bench/results)")
    p.add_argument("--noop-ab", metavar="ZMESHD",
                   help="instead: the queue's ceiling (--jobs-noop) of this binary (A) and of --zmeshd (B), "
                        "alternating, --rounds times each")
    p.add_argument("--rounds", type=harness.positive_int(100), default=3)
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        raise harness.BenchError("run as root: zmeshd starts sandboxes")
    if not os.access(a.zmeshd, os.X_OK):
        raise harness.BenchError("no zmeshd at %s (build first)" % a.zmeshd)
    if a.quick:
        a.requests, a.jobs, a.noop_jobs, a.cron_seconds = 5, 20, 200, 3
    out_dir = harness.resolve_out_dir(a.out, a.quick, PREFIX)
    date_utc, date_local = harness.now_stamps()
    if a.noop_ab:
        return noop_ab(a, out_dir, date_utc, date_local, argv)
    data = {"date_utc": date_utc, "machine": harness.machine_description({}),
            "commit": harness.git_commit(harness.REPO_ROOT), "command": " ".join(["bench/events.py"] + argv)}
    env = {"ZMESH_JOB_WORKERS": str(a.workers)}
    d = start(a.zmeshd, "events", 4, env)
    try:
        b = Bench(d)
        data["latency"] = b.latency(a.requests, 2 if a.quick else 20)
        data["webhook"] = b.webhook(a.requests, 2 if a.quick else 20)
        data["cron"] = b.cron(a.cron_seconds)
        data["throughput"] = {"trivial": b.throughput(a.jobs)}
    finally:
        d.stop()
        d.cleanup()
    d = start(a.zmeshd, "noop", 0, dict(env, ZMESH_JOBS_NOOP="1", ZMESH_JOB_WORKERS=str(max(a.workers, 8))))
    try:
        data["throughput"]["noop"] = Bench(d).throughput(a.noop_jobs)
    finally:
        d.stop()
        d.cleanup()
    lag = data["cron"].get("lag_ms")
    data["goals"] = [
        harness.goal("enqueue → start p50 ms", data["latency"]["queue_ms"]["p50_ms"], GOALS["latency_p50_ms"],
                     kind="at_most"),
        harness.goal("queue ceiling jobs/s (noop)", data["throughput"]["noop"]["jobs_per_s"],
                     GOALS["noop_jobs_per_s"], kind="at_least"),
        harness.goal("cron actual − scheduled p99 ms", lag["p99_ms"] if lag else None, GOALS["cron_p99_ms"],
                     kind="at_most"),
    ]
    text = markdown(data)
    paths = harness.write_results(out_dir, PREFIX, date_local, data, text)
    print(text)
    for path in paths:
        print("events: wrote %s" % path)
    failed = any(data[k].get("error") for k in ("cron", "webhook")) or any(
        t["not_success"] for t in data["throughput"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    harness.run_main(PREFIX, main)
