"""The pgbouncer zmeshd runs per node between sandboxes and the data cluster:
functions' sessions go through it and reuse server connections, no session
state leaks from one invocation to the next, a project reaches only its own
database through it, and it is restarted when it dies. --pgbouncer 0 turns
it off (sandboxes then reach the cluster directly)."""

import os
import pwd
import signal
import stat
import threading
import time

from conftest import Daemon, processes_under, stop_and_check
from test_api_invoke import CONNECT_PY

# One JS function with modes: what a session is, what state it leaves.
SESSION_JS = r"""
exports.handler = async (p, zmesh) => {
  const db = zmesh.db;
  const me = async () => db.queryOne(
    "SELECT pg_backend_pid() AS pid, backend_start::text AS started, current_setting('DateStyle') AS ds," +
    " current_setting('TimeZone') AS tz, current_setting('IntervalStyle') AS iv FROM pg_stat_activity" +
    " WHERE pid = pg_backend_pid()");
  switch (p.mode) {
    case 'dirty':
      await db.query("SET work_mem = '7MB'");
      await db.query("SET zmesh_test.mark = 'leaked'");
      await db.query("CREATE TEMP TABLE leak_tmp (x int)");
      await db.query("PREPARE leak_stmt AS SELECT 42");
      await db.query("LISTEN leak_channel");
      return me();
    case 'check': {
      const s = await me();
      s.state = await db.queryOne(
        "SELECT current_setting('work_mem') AS work_mem, current_setting('zmesh_test.mark', true) AS mark," +
        " (SELECT count(*)::int FROM pg_class WHERE relname = 'leak_tmp' AND relpersistence = 't') AS temp_tables," +
        " (SELECT count(*)::int FROM pg_prepared_statements) AS prepared," +
        " (SELECT count(*)::int FROM pg_listening_channels()) AS listening," +
        " now() = statement_timestamp() AS fresh_transaction");
      s.rows = (await db.queryOne("SELECT count(*)::int AS n FROM pooled_rows")).n;
      return s;
    }
    case 'hang':
      // A transaction left open when the function times out.
      await db.query("BEGIN");
      await db.query("INSERT INTO pooled_rows VALUES (1)");
      await db.query("LOCK TABLE pooled_rows IN ACCESS EXCLUSIVE MODE");
      await new Promise(() => {});
    default:
      return me();
  }
};
"""

PY_SESSION = r"""
def handler(p, zmesh):
    return zmesh.db.query_one(
        "SELECT pg_backend_pid() AS pid, current_setting('DateStyle') AS ds, current_setting('TimeZone') AS tz,"
        " current_setting('IntervalStyle') AS iv, '1 day 2 hours'::interval::text AS iv_text")
"""


def pgbouncer_procs(d):
    ini = os.path.join(d.state_dir, "pgbouncer", "pgbouncer.ini")
    return [pid for pid, cmd in processes_under(d.state_dir) if ini in cmd]


def invoke_ok(c, pid, fid, payload=None):
    r = c.invoke(pid, fid, payload)
    assert r.status == 200 and r.json["status"] == "success", str(r)
    return r.json["result"]


def test_pgbouncer_runs_unprivileged_with_private_files(zd):
    procs = pgbouncer_procs(zd)
    assert len(procs) == 1, processes_under(zd.state_dir)
    pg = pwd.getpwnam("postgres")
    with open("/proc/%d/status" % procs[0]) as f:
        uids = [line.split()[1:] for line in f if line.startswith(("Uid:", "Gid:"))]
    assert uids[0] == [str(pg.pw_uid)] * 4 and uids[1] == [str(pg.pw_gid)] * 4, uids
    base = os.path.join(zd.state_dir, "pgbouncer")
    for name in ("pgbouncer.ini", "hba.conf", "users.txt"):
        st = os.lstat(os.path.join(base, name))
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, name
        assert st.st_uid == pg.pw_uid, name
    assert os.path.exists(os.path.join(base, "run", ".s.PGSQL.5432"))
    with open(os.path.join(base, "pgbouncer.ini")) as f:
        ini = f.read()
    assert "listen_addr =\n" in ini and "pool_mode = session" in ini and "server_reset_query = DISCARD ALL" in ini


def test_invocations_of_a_project_reuse_one_server_connection(zd, user):
    p = user.create_project()
    f = user.deploy(p["id"], SESSION_JS)
    first = invoke_ok(user, p["id"], f["id"], {"mode": "me"})
    second = invoke_ok(user, p["id"], f["id"], {"mode": "me"})
    # The same backend, opened once: the pooler kept it between invocations.
    assert (first["pid"], first["started"]) == (second["pid"], second["started"]), (first, second)
    assert first["ds"].startswith("ISO") and first["tz"] == "UTC" and first["iv"] == "iso_8601", first
    g = user.deploy(p["id"], PY_SESSION, language="python")
    a = invoke_ok(user, p["id"], g["id"])
    b = invoke_ok(user, p["id"], g["id"])
    assert a["pid"] == b["pid"] == first["pid"], (a, b, first)
    assert a["ds"].startswith("ISO") and a["tz"] == "UTC" and a["iv"] == "iso_8601", a
    assert a["iv_text"] == "P1DT2H", a


def test_session_state_never_leaks_between_invocations(zd, user):
    p = user.create_project()
    zd.sql("CREATE TABLE pooled_rows (x int); ALTER TABLE pooled_rows OWNER TO %s" % p["database"],
           db=p["database"])
    f = user.deploy(p["id"], SESSION_JS, timeout_ms=1500)
    dirty = invoke_ok(user, p["id"], f["id"], {"mode": "dirty"})
    check = invoke_ok(user, p["id"], f["id"], {"mode": "check"})
    assert check["pid"] == dirty["pid"], "the server connection was not reused: %r %r" % (dirty, check)
    # A custom setting once made stays defined in the backend after DISCARD
    # ALL (PostgreSQL keeps the placeholder), but with an empty value.
    assert check["state"].pop("mark") in (None, ""), check
    assert check["state"] == {"work_mem": "4MB", "temp_tables": 0, "prepared": 0, "listening": 0,
                              "fresh_transaction": True}, check
    assert check["ds"].startswith("ISO") and check["tz"] == "UTC", check

    r = user.invoke(p["id"], f["id"], {"mode": "hang"})
    assert r.status == 504 and r.json["status"] == "timeout", str(r)
    # The next invocation is not inside the timed-out one's transaction: its
    # row is gone, its lock released (the count would wait for it).
    check = invoke_ok(user, p["id"], f["id"], {"mode": "check"})
    assert check["rows"] == 0 and check["state"]["fresh_transaction"] is True, check
    assert zd.sql("SELECT count(*) FROM pooled_rows", db=p["database"]) == [["0"]]


def test_a_project_reaches_only_its_own_database_through_the_pooler(zd, user):
    a, b = user.create_project(), user.create_project()
    role_a, pw_a = zd.sql("SELECT db_role, db_password FROM projects WHERE id = '%s'" % a["id"])[0]
    role_b, pw_b = zd.sql("SELECT db_role, db_password FROM projects WHERE id = '%s'" % b["id"])[0]
    f = user.deploy(a["id"], CONNECT_PY, language="python")
    targets = {
        "own": {"user": role_a, "password": pw_a, "db": a["database"]},
        "other_project": {"user": role_a, "password": pw_a, "db": b["database"]},
        "other_role_right_password": {"user": role_b, "password": pw_b, "db": b["database"]},
        "control_plane": {"user": role_a, "password": pw_a, "db": "zmesh"},
        "maintenance": {"user": role_a, "password": pw_a, "db": "postgres"},
        "superuser": {"user": "postgres", "db": "postgres"},
        "superuser_own_db": {"user": "postgres", "db": a["database"]},
        "api_role": {"user": "zmesh", "db": "zmesh"},
        "admin_console": {"user": "pgbouncer", "db": "pgbouncer"},
        "admin_console_as_project": {"user": role_a, "password": pw_a, "db": "pgbouncer"},
    }
    r = user.invoke(a["id"], f["id"], {"targets": targets})
    assert r.status == 200, str(r)
    out = r.json["result"]
    assert out["own"] == {"ok": a["database"]}, str(out)
    # Another project's role with its own password is a different tenant's
    # session: the socket serves it (a leaked password is a leaked password),
    # but only into that project's database.
    assert out["other_role_right_password"] == {"ok": b["database"]}, str(out)
    for label in targets:
        if label not in ("own", "other_role_right_password"):
            assert "error" in out[label] and "ok" not in out[label], str((label, out[label]))
    assert out["sdk"] == {"db": a["database"], "role": role_a}


def test_pgbouncer_and_cluster_deaths_are_survived():
    d = Daemon("pooler")
    try:
        d.start()
        c = d.admin()
        p = c.create_project()
        f = c.deploy(p["id"], SESSION_JS)
        before = invoke_ok(c, p["id"], f["id"], {"mode": "me"})
        old = pgbouncer_procs(d)
        assert len(old) == 1, processes_under(d.state_dir)
        os.kill(old[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "pgbouncer_restarted" not in d.log_text():
            time.sleep(0.1)
        assert "pgbouncer_died" in d.log_text() and "pgbouncer_restarted" in d.log_text(), d.log_tail()
        new = pgbouncer_procs(d)
        assert len(new) == 1 and new != old, (old, new)
        after = invoke_ok(c, p["id"], f["id"], {"mode": "me"})
        assert after["pid"] != before["pid"], (before, after)

        # The cluster restarted under it: pgbouncer reconnects.
        with open(os.path.join(d.state_dir, "pg", "data", "postmaster.pid")) as fh:
            postmaster = int(fh.readline())
        os.kill(postmaster, signal.SIGKILL)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and "embedded_postgresql_restarted" not in d.log_text():
            time.sleep(0.2)
        assert "embedded_postgresql_restarted" in d.log_text(), d.log_tail()
        deadline = time.monotonic() + 20
        while True:
            r = c.invoke(p["id"], f["id"], {"mode": "me"})
            if r.status == 200 and r.json["status"] == "success" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert r.status == 200 and r.json["status"] == "success", str(r)
        assert pgbouncer_procs(d) == new
    except BaseException:
        d.cleanup()
        raise
    stop_and_check(d)


def test_pgbouncer_can_be_turned_off():
    d = Daemon("nopool", env={"ZMESH_PGBOUNCER": "0"})
    try:
        d.start()
        assert not pgbouncer_procs(d)
        assert not os.path.exists(os.path.join(d.state_dir, "pgbouncer"))
        c = d.admin()
        p = c.create_project()
        f = c.deploy(p["id"], SESSION_JS)
        first = invoke_ok(c, p["id"], f["id"], {"mode": "me"})
        second = invoke_ok(c, p["id"], f["id"], {"mode": "me"})
        # Direct connections: a new backend each time.
        assert first["pid"] != second["pid"], (first, second)
        assert first["ds"].startswith("ISO") and first["tz"] == "UTC" and first["iv"] == "iso_8601", first
    except BaseException:
        d.cleanup()
        raise
    stop_and_check(d)


# Opens n sessions of its own (with the DSN the SDK has) at once, each
# holding a server connection for `hold` seconds; returns after `wait`
# seconds, with how many finished and the first errors.
GREEDY_PY = r"""
import threading
import time

import psycopg2

def handler(p, zmesh):
    done, errors = [], []
    lock = threading.Lock()

    def one():
        try:
            c = psycopg2.connect(zmesh._dsn, connect_timeout=30)
            c.autocommit = True
            c.cursor().execute("SELECT pg_sleep(%s)", [p["hold"]])
            c.close()
            with lock:
                done.append(1)
        except Exception as e:
            with lock:
                errors.append(str(e)[:200])

    threads = [threading.Thread(target=one, daemon=True) for _ in range(p["n"])]
    for t in threads:
        t.start()
    end = time.monotonic() + p["wait"]
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    return {"done": len(done), "errors": errors[:3]}
"""

QUERY_JS = "exports.handler = async (p, zmesh) => zmesh.db.queryOne('SELECT 7 AS seven');"
QUERY_PY = "def handler(p, zmesh):\n    return zmesh.db.query_one('SELECT 7 AS seven')\n"


def project_backends(zd, p):
    """The cluster's sessions of a project's role in its database."""
    return int(zd.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' AND usename = '%s'"
                      % (p["database"], p["database"]))[0][0])


def run_in_background(fn, *args):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", fn(*args)), daemon=True)
    t.start()
    return t, out


def databases_ini(zd):
    with open(os.path.join(zd.state_dir, "pgbouncer", "databases.ini")) as f:
        return f.read()


def test_hostile_projects_holding_every_connection_do_not_starve_a_third(zd, new_user):
    """Two projects whose functions open 45 sessions each, twice at once
    (180 client connections, above what the cluster has), hold only their
    tier's server connections; the clients beyond wait in pgbouncer, none is
    refused, and a third project's query is answered at once."""
    users = [new_user() for _ in range(3)]
    a, b, c = (u.create_project() for u in users)
    tier_pool = 5  # policies/tiers.json: free
    greedy = [users[i].deploy(p["id"], GREEDY_PY, language="python", timeout_ms=12000) for i, p in enumerate((a, b))]
    query = users[2].deploy(c["id"], QUERY_JS)
    hostile = []
    for i, p in enumerate((a, b)):
        for _ in range(2):
            hostile.append(run_in_background(users[i].invoke, p["id"], greedy[i]["id"],
                                             {"n": 45, "hold": 3, "wait": 7}))
    # Every greedy client is connected and most wait for a server connection.
    try:
        for p in (a, b):
            zd.wait_metric('zmesh_db_pool_clients{database="%s",state="waiting"}' % p["database"],
                           lambda v: v >= 60)
    except AssertionError:
        for t, _ in hostile:
            t.join(60)
        raise AssertionError("the greedy functions: %r" % [str(out.get("r")) for _, out in hostile])
    for p in (a, b):
        assert project_backends(zd, p) <= tier_pool
        # Its role's pool, and one for pgbouncer's auth_query in that database.
        assert int(zd.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = '%s'"
                          % p["database"])[0][0]) <= tier_pool + 1
    t0 = time.monotonic()
    r = users[2].invoke(c["id"], query["id"])
    took = time.monotonic() - t0
    assert r.status == 200 and r.json["result"] == {"seven": 7}, str(r)
    assert took < 3.0, took
    m = zd.metrics()
    for p in (a, b):
        assert m['zmesh_db_pool_server_connections{database="%s",state="active"}' % p["database"]] <= tier_pool + 1
    for t, _ in hostile:
        t.join(60)
    results = [out["r"] for _, out in hostile]
    for r in results:
        assert r.status == 200 and r.json["status"] == "success", str(r)
        # No client was refused (max_client_conn), none failed to connect.
        assert r.json["result"]["errors"] == [], r.json["result"]
    # In 7 s a pool of 5 serves at most 2 rounds of 3 s sessions per project.
    for pair in (results[:2], results[2:]):
        done = sum(r.json["result"]["done"] for r in pair)
        assert tier_pool <= done <= 2 * tier_pool, [r.json["result"] for r in pair]


def test_a_session_that_finds_the_pool_in_use_until_its_deadline_gets_a_clear_error(zd, user):
    p = user.create_project()
    greedy = user.deploy(p["id"], GREEDY_PY, language="python", timeout_ms=12000)
    js = user.deploy(p["id"], QUERY_JS, timeout_ms=1500)
    py = user.deploy(p["id"], QUERY_PY, language="python", timeout_ms=1500)
    holder = run_in_background(user.invoke, p["id"], greedy["id"], {"n": 5, "hold": 6, "wait": 7})
    zd.wait_metric('zmesh_db_pool_server_connections{database="%s",state="active"}' % p["database"],
                   lambda v: v == 5)
    for f in (js, py):
        r = user.invoke(p["id"], f["id"])
        assert r.status == 500 and r.json["status"] == "error", str(r)
        err = r.json["error"]
        assert err["name"] == "DatabaseError", err
        assert "no database connection became free before the invocation's deadline" in err["message"], err
        assert "db_connections" in err["message"], err
    holder[0].join(30)
    assert holder[1]["r"].json["result"]["done"] == 5, str(holder[1]["r"])
    for f in (js, py):
        assert invoke_ok(user, p["id"], f["id"]) == {"seven": 7}


def test_a_projects_pool_follows_its_tier(zd, user, grant_tier):
    p = user.create_project()
    line = "%s = host=" % p["database"]
    deadline = time.monotonic() + 15
    while line not in databases_ini(zd):
        assert time.monotonic() < deadline, databases_ini(zd)
        time.sleep(0.1)
    entry = [x for x in databases_ini(zd).splitlines() if x.startswith(line)][0]
    assert entry.endswith(" pool_size=5 max_db_connections=6"), entry
    grant_tier(p, "pro")
    while True:
        entry = [x for x in databases_ini(zd).splitlines() if x.startswith(line)][0]
        if entry.endswith(" pool_size=20 max_db_connections=21"):
            break
        assert time.monotonic() < deadline + 15, entry
        time.sleep(0.1)
    # The file the API process writes is data: pgbouncer's own files stay
    # root's and postgres's.
    limits = os.path.join(zd.state_dir, "pgbouncer", "limits")
    st = os.stat(limits)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == pwd.getpwnam("zmesh").pw_uid
    st = os.stat(os.path.join(zd.state_dir, "pgbouncer", "databases.ini"))
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == pwd.getpwnam("postgres").pw_uid
    with open(os.path.join(limits, "roles")) as f:
        assert "%s 20\n" % p["database"] in f.read()


def test_pool_metrics_and_a_deleted_projects_connections(zd, user):
    p = user.create_project()
    f = user.deploy(p["id"], QUERY_JS)
    assert invoke_ok(user, p["id"], f["id"]) == {"seven": 7}
    # The answer comes before the sandbox is reaped: its client connection
    # closes (and the server connection goes back to the pool) just after.
    idle = 'zmesh_db_pool_server_connections{database="%s",state="idle"}' % p["database"]
    active = 'zmesh_db_pool_server_connections{database="%s",state="active"}' % p["database"]
    deadline = time.monotonic() + 10
    while True:
        m = zd.metrics()
        if m[active] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert m["zmesh_db_pool_up"] == 1
    # The role's connection, kept for the next invocation, and the one
    # pgbouncer's auth_query used in that database.
    assert m[idle] == 2 and m[active] == 0, (m[idle], m[active])
    assert m['zmesh_db_pool_transactions_total{database="%s"}' % p["database"]] >= 1
    assert project_backends(zd, p) == 1
    r = user.delete("/projects/" + p["id"])
    assert r.status == 200, str(r)
    assert project_backends(zd, p) == 0
    assert zd.sql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % p["database"]) == [["0"]]


def test_limits_the_root_process_refuses_change_nothing(zd, user):
    """The role limits are the unprivileged process's data: a file that is
    not "ROLE N" lines (here written by hand) is refused and logged, and
    pgbouncer's databases.ini stays as it was until a good one comes."""
    p = user.create_project()
    line = "%s = host=" % p["database"]
    deadline = time.monotonic() + 15
    while line not in databases_ini(zd):
        assert time.monotonic() < deadline, databases_ini(zd)
        time.sleep(0.1)
    before = databases_ini(zd)
    roles = os.path.join(zd.state_dir, "pgbouncer", "limits", "roles")
    with open(roles, "w") as f:
        f.write("[pgbouncer]\nauth_type = trust\n")
    deadline = time.monotonic() + 15
    while "pgbouncer_limits_refused" not in zd.log_text():
        assert time.monotonic() < deadline, zd.log_tail()
        time.sleep(0.1)
    refused = [e for e in zd.log_events() if e.get("event") == "pgbouncer_limits_refused"]
    assert "line 1" in refused[-1]["error"], refused
    assert databases_ini(zd) == before
    # The next change the API process makes writes a good file again.
    q = user.create_project()
    deadline = time.monotonic() + 15
    while "%s = host=" % q["database"] not in databases_ini(zd):
        assert time.monotonic() < deadline, databases_ini(zd)
        time.sleep(0.1)
    assert line in databases_ini(zd) and "auth_type" not in databases_ini(zd)
