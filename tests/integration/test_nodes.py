"""Several zmeshd nodes on one PostgreSQL cluster (DATABASE_URL), sharing the
job queue and the schedules: every job runs once (again only after its
node died and its lease lapsed), none is lost when a node is killed with
SIGKILL mid-job or when every node restarts, and every schedule tick fires
once whichever nodes run.

Three nodes on loopback against a throwaway cluster (tests/pg/pgtmp); each
has its own state directory and the same JWT secret. Functions record each
run in their project's own database, so a job that ran twice would show."""

import os
import secrets
import signal
import subprocess
import time

import pytest

from conftest import Daemon, stop_and_check

LEASE_MS = 3000
PSQL = "/usr/bin/psql"

# Sleeps, then records the run: a run killed before its end records
# nothing, a run that completes records exactly one row. The table is made
# once, by a synchronous call, before any job: concurrent CREATE TABLE IF
# NOT EXISTS of one name can fail in PostgreSQL (a unique violation in
# pg_type), which would fail a first attempt for a reason of the test's own.
RECORD_JS = r"""
exports.handler = async (p, zmesh) => {
  if (p.setup) {
    await zmesh.db.query('CREATE TABLE runs (n int NOT NULL, at timestamptz NOT NULL DEFAULT now())');
    return {};
  }
  await new Promise((r) => setTimeout(r, p.ms || 0));
  await zmesh.db.query('INSERT INTO runs (n) VALUES ($1)', [p.n]);
  return {n: p.n};
};
"""


def psql(sock, db, query):
    r = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h", sock, "-U",
                        "postgres", "-d", db, "-c", query], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    assert r.returncode == 0, "psql %r: %s" % (query, r.stderr.decode(errors="replace"))
    return [line.split("\t") for line in r.stdout.decode().splitlines() if line]


class Cluster:
    def __init__(self, sock, n):
        self.sock = sock
        psql(sock, "postgres", "CREATE DATABASE zmeshcp")
        self.url = "postgresql:///zmeshcp?host=%s&user=postgres" % sock
        self.jwt = secrets.token_hex(24)
        self.password = "Adm1n-" + secrets.token_hex(8)
        self.nodes = []
        for i in range(n):
            d = Daemon("node%d" % i, admin_password=self.password,
                       env={"DATABASE_URL": self.url, "ZMESH_PG_SOCKET_DIR": sock, "JWT_SECRET_KEY": self.jwt,
                            "ZMESH_JOB_LEASE_MS": str(LEASE_MS), "ZMESH_JOB_WORKERS": "3",
                            "ZMESH_SHUTDOWN_GRACE_MS": "20000"})
            d.pg_sock = sock
            self.nodes.append(d)
        # One at a time: the first makes the schema and the admin.
        for d in self.nodes:
            d.start()

    def sql(self, query, db="zmeshcp"):
        return psql(self.sock, db, query)

    def close(self):
        for d in self.nodes:
            if d.proc and d.proc.poll() is None:
                stop_and_check(d)
            else:
                d.cleanup()


@pytest.fixture
def cluster(pgtmp):
    c = Cluster(pgtmp, 3)
    try:
        yield c
    finally:
        c.close()


def setup_project(c):
    admin = c.nodes[0].admin()
    p = admin.create_project()
    f = admin.deploy(p["id"], RECORD_JS)
    r = admin.invoke(p["id"], f["id"], {"setup": True})
    assert r.status == 200, str(r)
    return admin, p, f


def enqueue(client, p, f, payload):
    r = client.post("/projects/%s/functions/%s/invoke" % (p["id"], f["id"]), {"payload": payload},
                    headers={"Prefer": "respond-async"})
    assert r.status == 202, str(r)
    return r.json["invocation_id"]


def wait_all_done(c, ids, timeout=90):
    deadline = time.monotonic() + timeout
    quoted = ",".join("'%s'" % i for i in ids)
    while True:
        rows = c.sql("SELECT status, count(*) FROM invocations WHERE id IN (%s) GROUP BY status" % quoted)
        done = dict((s, int(n)) for s, n in rows)
        if done.get("success", 0) == len(ids):
            return
        if time.monotonic() >= deadline or set(done) - {"queued", "running", "success"}:
            bad = c.sql("SELECT id, status, attempt, error FROM invocations WHERE function_id = "
                        "(SELECT function_id FROM invocations WHERE id = '%s') AND status <> 'success'" % ids[0])
            raise AssertionError("not all jobs succeeded: %r; the others: %r" % (done, bad))
        time.sleep(0.2)


def runs(c, p):
    return [int(r[0]) for r in c.sql("SELECT n FROM runs ORDER BY n", db=p["database"])]


def test_every_job_runs_once_across_three_nodes(cluster):
    c = cluster
    admin, p, f = setup_project(c)
    clients = [d.login(admin.email, c.password) for d in c.nodes]
    ids = [enqueue(clients[i % 3], p, f, {"n": i}) for i in range(45)]
    wait_all_done(c, ids)
    assert runs(c, p) == list(range(45)), "a job ran twice or never"
    # The work was shared: more than one node ran jobs.
    ran = [sum(1 for e in d.log_events() if e.get("event") == "invoke" and e.get("trigger") == "async")
           for d in c.nodes]
    assert sum(ran) == 45 and sum(1 for n in ran if n) >= 2, ran
    assert c.sql("SELECT count(*) FROM jobs") == [["0"]]


def api_pid(d):
    """The API process of a node (the supervisor's child that holds leases)."""
    out = subprocess.run(["pgrep", "-P", str(d.proc.pid)], stdout=subprocess.PIPE).stdout.decode().split()
    return [int(x) for x in out]


def test_a_job_whose_node_is_killed_runs_again_elsewhere(cluster):
    c = cluster
    admin, p, f = setup_project(c)
    iid = enqueue(admin, p, f, {"n": 1, "ms": 6000})
    deadline = time.monotonic() + 30
    while True:
        rows = c.sql("SELECT lease_owner FROM jobs WHERE first_invocation_id = '%s' AND lease_owner IS NOT NULL"
                     % iid)
        if rows:
            break
        assert time.monotonic() < deadline, "the job was never claimed"
        time.sleep(0.05)
    owner_pid = int(rows[0][0].split("/")[1])
    victim = [d for d in c.nodes if owner_pid in api_pid(d)]
    assert len(victim) == 1, (owner_pid, [api_pid(d) for d in c.nodes])
    victim = victim[0]
    time.sleep(0.5)  # mid-job: the sandbox is sleeping
    os.kill(owner_pid, signal.SIGKILL)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=30)
    t_kill = time.monotonic()
    wait_all_done(c, [iid], timeout=60)
    # Not before the lease lapsed; then once, by a surviving node.
    assert time.monotonic() - t_kill >= LEASE_MS / 1000.0 - 1.0
    assert runs(c, p) == [1]
    survivors = [d for d in c.nodes if d is not victim]
    assert sum(d.metrics().get("zmesh_jobs_lease_lapsed_total", 0) for d in survivors) == 1
    rec = c.sql("SELECT status, attempt FROM invocations WHERE id = '%s'" % iid)
    assert rec == [["success", "1"]]
    # The killed node left nothing running (its spawner ended its sandboxes).
    assert not victim.leftovers(wait=15), victim.leftovers(wait=0)
    victim.cleanup()


def test_a_restart_of_every_node_loses_no_queued_job(cluster):
    c = cluster
    admin, p, f = setup_project(c)
    ids = [enqueue(admin, p, f, {"n": i, "ms": 300}) for i in range(30)]
    time.sleep(0.5)  # some running, most queued
    for d in c.nodes:
        d.proc.send_signal(signal.SIGTERM)
    for d in c.nodes:
        assert d.proc.wait(timeout=60) == 0, d.log_tail()
    left = int(c.sql("SELECT count(*) FROM jobs")[0][0])
    assert left > 0, "every job finished before the stop: the test proved nothing"
    for d in c.nodes:
        d.start()
    wait_all_done(c, ids, timeout=120)
    assert runs(c, p) == list(range(30))


def test_every_tick_fires_once_across_three_nodes(cluster):
    c = cluster
    admin, p, _ = setup_project(c)
    echo = admin.deploy(p["id"], "exports.handler = async (e) => e;")
    r = admin.post("/projects/%s/triggers" % p["id"], {"event_type": "cron", "function_id": echo["id"],
                                                      "config": {"schedule": "* * * * * *", "payload": {"k": 1}}})
    assert r.status == 201, str(r)
    tid = r.json["id"]
    time.sleep(6)
    r = admin.patch("/projects/%s/triggers/%s" % (p["id"], tid), {"enabled": False})
    assert r.status == 200, str(r)
    deadline = time.monotonic() + 30
    while int(c.sql("SELECT count(*) FROM jobs WHERE trigger_id = '%s'" % tid)[0][0]) > 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    fires = [r[0] for r in c.sql("SELECT extract(epoch FROM scheduled_time)::bigint FROM cron_fires "
                                 "WHERE trigger_id = '%s' AND skipped IS NULL ORDER BY 1" % tid)]
    assert len(fires) >= 4, fires
    # One fire per second, none missing between the first and the last.
    assert [int(x) for x in fires] == list(range(int(fires[0]), int(fires[-1]) + 1))
    recs = c.sql("SELECT status, count(*), count(DISTINCT (result_excerpt::jsonb->>'scheduled_time')) "
                 "FROM invocations WHERE trigger_id = '%s' GROUP BY status" % tid)
    assert recs == [["success", str(len(fires)), str(len(fires))]], recs
    fired = [d.metrics().get("zmesh_cron_fired_total", 0) for d in c.nodes]
    assert sum(fired) == len(fires), (fired, len(fires))


CDC_JS = r"""
exports.handler = async (e, zmesh) => {
  await zmesh.db.query('INSERT INTO seen (row_id, op) VALUES ($1, $2)', [(e.new || e.old).id, e.operation]);
  return {};
};
"""


def test_a_node_killed_with_undelivered_changes_loses_none(cluster):
    """The node that drains a project's outbox is frozen while rows are
    written, then killed: another node takes the database over and every
    change is delivered (at least once)."""
    c = cluster
    admin, p, _ = setup_project(c)
    role = p["database"]
    c.sql("CREATE TABLE orders (id int PRIMARY KEY, v int); CREATE TABLE seen (row_id int, op text); "
          "ALTER TABLE orders OWNER TO %s; ALTER TABLE seen OWNER TO %s" % (role, role), db=p["database"])
    f = admin.deploy(p["id"], CDC_JS)
    r = admin.post("/projects/%s/triggers" % p["id"], {"event_type": "cdc.INSERT.orders", "function_id": f["id"]})
    assert r.status == 201, str(r)

    def write(ids):
        c.sql("SET ROLE %s; INSERT INTO orders SELECT g, 0 FROM generate_series(%d, %d) g"
              % (role, ids[0], ids[-1]), db=p["database"])

    def delivered():
        return set(int(x[0]) for x in c.sql("SELECT DISTINCT row_id FROM seen", db=p["database"]))

    write(range(1, 11))
    deadline = time.monotonic() + 30
    while delivered() != set(range(1, 11)):
        assert time.monotonic() < deadline, delivered()
        time.sleep(0.1)
    # The node draining this database said so.
    leaders = [d for d in c.nodes
               if any(e.get("event") == "cdc_draining" and e.get("database") == role for e in d.log_events())]
    assert len(leaders) == 1, [d.state_dir for d in leaders]
    victim = leaders[0]
    apis = [pid for pid in api_pid(victim) if open("/proc/%d/comm" % pid).read().strip() == "zmeshd-api"]
    assert len(apis) == 1, apis
    os.kill(apis[0], signal.SIGSTOP)
    try:
        write(range(11, 31))
        time.sleep(1.5)
        assert int(c.sql("SELECT count(*) FROM zmesh_cdc.outbox", db=p["database"])[0][0]) == 20
    finally:
        os.kill(apis[0], signal.SIGKILL)
        os.kill(apis[0], signal.SIGCONT)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=30)
    deadline = time.monotonic() + 60
    while delivered() != set(range(1, 31)):
        assert time.monotonic() < deadline, sorted(set(range(1, 31)) - delivered())
        time.sleep(0.2)
    survivors = [d for d in c.nodes if d is not victim]
    assert any(any(e.get("event") == "cdc_draining" and e.get("database") == role for e in d.log_events())
               for d in survivors)
    assert c.sql("SELECT count(*) FROM zmesh_cdc.outbox", db=p["database"]) == [["0"]]
    assert not victim.leftovers(wait=15), victim.leftovers(wait=0)
    victim.cleanup()
