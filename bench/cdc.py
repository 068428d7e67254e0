#!/usr/bin/python3
"""Database changes as events, on one zmeshd with its embedded PostgreSQL:

  latency    commit -> function start for a single-row insert on an idle
             node: the insert's commit time (clock_timestamp() read right
             after it, in the same session) to its invocation record's
             started_at (a worker took the job), both on the database's
             clock; one insert at a time.
  overhead   what the capture adds to writes: 10,000 single-row INSERT
             statements, and one 10,000-row INSERT ... SELECT, into a table
             with a cdc trigger (disabled, so that nothing runs: the capture
             writes the outbox all the same) and into one without,
             alternating, --rounds times each; timed inside the database.
  dispatch   events per second from the outbox into the queue: 10,000 rows
             in one statement, timed until the outbox is empty, on a daemon
             whose workers finish jobs without running them (--jobs-noop).

Results go to bench/results/cdc-YYYY-MM-DD.{md,json}. Standard library only;
run as root (zmeshd starts sandboxes):

    /usr/bin/python3 bench/cdc.py [--zmeshd build/supervisor/zmeshd] [--quick]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import e2e_lib
import harness
from events import start, stats_ms

PREFIX = "cdc"
PSQL = "/usr/bin/psql"
GOALS = {"latency_p50_ms": 20.0, "single_row_ratio": 1.5}

RECORD_JS = "exports.handler = async (e) => ({id: e.new && e.new.id});"

# Timed inside the database: n single-row INSERT statements, or one
# n-row statement, into table t; returns milliseconds.
TIMING_SQL = r"""
CREATE OR REPLACE FUNCTION bench_rows(t text, n int) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  FOR i IN 1 .. n LOOP
    EXECUTE format('INSERT INTO %I (v) VALUES ($1)', t) USING i;
  END LOOP;
  RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;
CREATE OR REPLACE FUNCTION bench_statement(t text, n int) RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  EXECUTE format('INSERT INTO %I (v) SELECT g FROM generate_series(1, $1) g', t) USING n;
  RETURN extract(epoch FROM clock_timestamp() - t0) * 1000;
END $$;
"""


class Bench:
    def __init__(self, daemon, trigger_enabled):
        self.d = daemon
        self.api = e2e_lib.Api(daemon)
        self.api.login()
        self.pid = self.api.create_project("bench-cdc", "enterprise")
        self.db = self.api.call("GET", "/projects/%s" % self.pid, None, (200,))["database"]
        self.sql("CREATE TABLE orders (id serial PRIMARY KEY, v int); CREATE TABLE plain (id serial PRIMARY KEY, v int);"
                 "ALTER TABLE orders OWNER TO %s; ALTER TABLE plain OWNER TO %s;" % (self.db, self.db) + TIMING_SQL,
                 db=self.db)
        self.fid = self.api.deploy(self.pid, "record", "javascript", RECORD_JS)
        self.tid = self.api.call("POST", "/projects/%s/triggers" % self.pid,
                                 {"event_type": "cdc.INSERT.orders", "function_id": self.fid,
                                  "enabled": trigger_enabled}, (201,))["id"]

    def sql(self, query, db="zmesh"):
        sock = os.path.join(self.d.state_dir, "pg", "run")
        r = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h", sock, "-U",
                            "postgres", "-d", db, "-c", query], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=300)
        if r.returncode != 0:
            raise e2e_lib.DaemonError("psql: " + r.stderr.decode(errors="replace")[:300])
        return [line.split("\t") for line in r.stdout.decode().splitlines() if line]

    def records(self):
        return int(self.sql("SELECT count(*) FROM invocations WHERE trigger_id = '%s'" % self.tid)[0][0])

    def latency(self, n, warmup):
        samples = []
        for i in range(n + warmup):
            self.api.wait_pool_full(30)
            before = self.records()
            committed = self.sql("INSERT INTO orders (v) VALUES (%d); SELECT extract(epoch FROM clock_timestamp())"
                                 % i, db=self.db)[0][0]
            deadline = time.monotonic() + 30
            while True:
                rows = self.sql("SELECT extract(epoch FROM started_at), status FROM invocations WHERE trigger_id = "
                                "'%s' ORDER BY started_at DESC LIMIT 1" % self.tid)
                if self.records() > before and rows and rows[0][1] in ("success", "error", "timeout"):
                    break
                if time.monotonic() > deadline:
                    raise e2e_lib.DaemonError("insert %d: no function ran in 30 s" % i)
                time.sleep(0.005)
            if rows[0][1] != "success":
                raise e2e_lib.DaemonError("insert %d: the function ended %s" % (i, rows[0][1]))
            if i >= warmup:
                samples.append((float(rows[0][0]) - float(committed)) * 1000.0)
        return {"commit_to_start_ms": stats_ms(samples)}

    def overhead(self, n, rounds):
        out = {"rows": {"plain": [], "captured": []}, "statement": {"plain": [], "captured": []}}
        for _ in range(rounds):
            for kind, fn in (("rows", "bench_rows"), ("statement", "bench_statement")):
                for label, table in (("plain", "plain"), ("captured", "orders")):
                    ms = float(self.sql("SELECT %s('%s', %d)" % (fn, table, n), db=self.db)[0][0])
                    out[kind][label].append(ms)
                    self.sql("TRUNCATE %s" % table, db=self.db)
        res = {}
        for kind in out:
            p, c = statistics.median(out[kind]["plain"]), statistics.median(out[kind]["captured"])
            res[kind] = {"n": n, "rounds": rounds, "plain_ms": round(p, 2), "captured_ms": round(c, 2),
                         "ratio": round(c / p, 3) if p > 0 else None, "samples": out[kind]}
        return res

    def dispatch(self, n):
        t0 = time.monotonic()
        self.sql("INSERT INTO orders (v) SELECT g FROM generate_series(1, %d) g" % n, db=self.db)
        t_write = time.monotonic() - t0
        deadline = time.monotonic() + 600
        while int(self.sql("SELECT count(*) FROM zmesh_cdc.outbox", db=self.db)[0][0]) > 0:
            if time.monotonic() > deadline:
                raise e2e_lib.DaemonError("the outbox did not drain in 600 s")
            time.sleep(0.02)
        total = time.monotonic() - t0
        queued = int(self.sql("SELECT count(*) FROM invocations WHERE trigger_id = '%s'" % self.tid)[0][0])
        return {"rows": n, "write_s": round(t_write, 3), "drained_s": round(total, 3),
                "events_per_s": round(n / max(total - t_write, 1e-6), 1), "jobs_queued": queued}


def markdown(data):
    m = data["machine"]
    lines = ["# Database changes benchmark, %s" % data["date_utc"], "",
             harness.machine_markdown(m, data["date_utc"], "zmeshd", data["commit"]), "",
             "Command: `%s`" % data["command"], "", "## Results", ""]
    lat = data["latency"]["commit_to_start_ms"]
    lines += ["| measure | n | p50 ms | p90 ms | p99 ms | mean ms | max ms |", "|---|---:|---:|---:|---:|---:|---:|",
              "| commit → function start | %d | %s | %s | %s | %s | %s |" % (
                  lat["n"], lat["p50_ms"], lat["p90_ms"], lat["p99_ms"], lat["mean_ms"], lat["max_ms"]), ""]
    lines += ["| write (medians of %d rounds, alternating) | plain ms | with capture ms | ratio |"
              % data["overhead"]["rows"]["rounds"], "|---|---:|---:|---:|"]
    for kind, name in (("rows", "10,000 single-row INSERTs"), ("statement", "one 10,000-row INSERT")):
        o = data["overhead"][kind]
        lines.append("| %s | %s | %s | ×%s |" % (name, o["plain_ms"], o["captured_ms"], o["ratio"]))
    d = data["dispatch"]
    lines += ["", "Dispatch (`--jobs-noop` daemon): %d rows in one statement, written in %s s, outbox empty "
              "after %s s: **%s events/s** into the queue (%d jobs)." % (
                  d["rows"], d["write_s"], d["drained_s"], d["events_per_s"], d["jobs_queued"]), ""]
    lines += [harness.goals_markdown(data["goals"]), ""]
    return "\n".join(lines)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--zmeshd", default=os.path.join(harness.REPO_ROOT, "build", "supervisor", "zmeshd"))
    p.add_argument("--requests", type=harness.positive_int(100000), default=100)
    p.add_argument("--rows", type=harness.positive_int(1000000), default=10000)
    p.add_argument("--rounds", type=harness.positive_int(100), default=5)
    p.add_argument("--quick", action="store_true", help="a few of each: proves the harness works, times nothing")
    p.add_argument("--out", help="results directory (default: bench/results)")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        raise harness.BenchError("run as root: zmeshd starts sandboxes")
    if not os.access(a.zmeshd, os.X_OK):
        raise harness.BenchError("no zmeshd at %s (build first)" % a.zmeshd)
    if a.quick:
        a.requests, a.rows, a.rounds = 3, 200, 1
    out_dir = harness.resolve_out_dir(a.out, a.quick, PREFIX)
    date_utc, date_local = harness.now_stamps()
    data = {"date_utc": date_utc, "machine": harness.machine_description({}),
            "commit": harness.git_commit(harness.REPO_ROOT), "command": " ".join(["bench/cdc.py"] + argv)}
    d = start(a.zmeshd, "cdc", 4, {})
    try:
        b = Bench(d, True)
        data["latency"] = b.latency(a.requests, 1 if a.quick else 10)
    finally:
        d.stop()
        d.cleanup()
    d = start(a.zmeshd, "cdc-noop", 0, {"ZMESH_JOBS_NOOP": "1", "ZMESH_JOB_WORKERS": "8"})
    try:
        b = Bench(d, True)
        data["dispatch"] = b.dispatch(a.rows)
        b.api.call("PATCH", "/projects/%s/triggers/%s" % (b.pid, b.tid), {"enabled": False}, (200,))
        data["overhead"] = b.overhead(a.rows, a.rounds)
    finally:
        d.stop()
        d.cleanup()
    data["goals"] = [
        harness.goal("commit → function start p50 ms", data["latency"]["commit_to_start_ms"]["p50_ms"],
                     GOALS["latency_p50_ms"], kind="at_most"),
        harness.goal("single-row INSERTs with capture / without", data["overhead"]["rows"]["ratio"],
                     GOALS["single_row_ratio"], kind="ratio_at_most"),
    ]
    text = markdown(data)
    paths = harness.write_results(out_dir, PREFIX, date_local, data, text)
    print(text)
    for path in paths:
        print("cdc: wrote %s" % path)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    harness.run_main(PREFIX, main)
