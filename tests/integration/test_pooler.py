"""The pgbouncer zmeshd runs per node between sandboxes and the data cluster:
functions' sessions go through it and reuse server connections, no session
state leaks from one invocation to the next, a project reaches only its own
database through it, and it is restarted when it dies. --pgbouncer 0 turns
it off (sandboxes then reach the cluster directly)."""

import os
import pwd
import signal
import stat
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
