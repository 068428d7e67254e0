"""End to end: both runtime wrappers run under zmesh-sandbox with the seccomp
policy of their runtime and the database's unix-socket directory bound at
/run/zmesh/pg; a handler queries its own database, and the same handler with a
DSN for a database its role may not connect to fails with a clear error.

Needs root (sandboxes, and the throwaway PostgreSQL cluster runs as postgres).
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PGTMP = os.path.join(ROOT, "tests", "pg", "pgtmp")
SANDBOX = os.environ.get("ZMESH_SANDBOX", os.path.join(ROOT, "build", "sandbox", "zmesh-sandbox"))

RUNTIMES = {
    "javascript": {
        "policy": "node",
        "sdk": os.path.join(ROOT, "sdk-js"),
        "mount": "/opt/zmesh/sdk/js",
        "argv": ["/usr/bin/node", "/opt/zmesh/sdk/js/bootstrap.js"],
        "code": """
exports.handler = async (payload, zmesh) => {
  console.log("log line from the handler");
  const row = await zmesh.db.insert("items", { name: payload.name });
  const all = await zmesh.db.query("select name from items where name = $1", [payload.name]);
  return { inserted: row.name, found: all.length, project: zmesh.projectId };
};
""",
    },
    "python": {
        "policy": "python",
        "sdk": os.path.join(ROOT, "sdk-python"),
        "mount": "/opt/zmesh/sdk/python",
        "argv": ["/usr/bin/python3.11", "-S", "/opt/zmesh/sdk/python/bootstrap.py"],
        "code": """
def handler(payload, zmesh):
    print("log line from the handler")
    row = zmesh.db.insert("items", {"name": payload["name"]})
    rows = zmesh.db.query("select name from items where name = %s", [payload["name"]])
    return {"inserted": row["name"], "found": len(rows), "project": zmesh.project_id}
""",
    },
}


def psql(sock, db, sql):
    subprocess.run(["psql", "-h", sock, "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
                   check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.fail("these tests need root: they start sandboxes and a PostgreSQL cluster")
    d = tempfile.mkdtemp(prefix="zmesh-wrap-")
    sock = subprocess.run([PGTMP, "start", d], check=True, capture_output=True, text=True,
                          timeout=120).stdout.strip()
    try:
        # The function's role owns its database; another database exists that
        # it may not connect to (CONNECT revoked from PUBLIC, as for projects).
        psql(sock, "postgres", "CREATE ROLE fn_role LOGIN PASSWORD 'fn pass/with:odd@chars'")
        psql(sock, "postgres", "CREATE DATABASE fn_db OWNER fn_role")
        psql(sock, "postgres", "REVOKE CONNECT ON DATABASE fn_db FROM PUBLIC")
        psql(sock, "postgres", "CREATE DATABASE other_db")
        psql(sock, "postgres", "REVOKE CONNECT ON DATABASE other_db FROM PUBLIC")
        psql(sock, "fn_db", "CREATE TABLE items (id serial primary key, name text not null); "
                            "ALTER TABLE items OWNER TO fn_role")
        yield sock
    finally:
        subprocess.run([PGTMP, "stop", d], capture_output=True, timeout=120)
        shutil.rmtree(d, ignore_errors=True)


def dsn(db):
    # libpq URI, user and password percent-encoded, host a socket directory.
    return "postgresql://fn_role:fn%20pass%2Fwith%3Aodd%40chars@/" + db + "?host=/run/zmesh/pg"


def invoke(rt, sock, db, payload):
    r = RUNTIMES[rt]
    msg = {
        "invocation_id": "inv-1", "project_id": "proj-1",
        "function": {"name": "items", "version": 1, "entry_point": "handler"},
        "code": r["code"], "env": {}, "dsn": dsn(db), "payload": payload,
        "deadline_ms": int(time.time() * 1000) + 20000,
    }
    report = tempfile.NamedTemporaryFile(prefix="zmesh-wrap-report-", delete=False)
    report.close()
    try:
        p = subprocess.run(
            [SANDBOX, "--policy", r["policy"], "--memory", "256M", "--timeout", "20000",
             "--bind", r["sdk"] + ":" + r["mount"], "--bind", sock + ":/run/zmesh/pg",
             "--report", report.name, "--"] + r["argv"],
            input=json.dumps(msg).encode(), capture_output=True, timeout=60)
        with open(report.name) as f:
            rep = json.load(f)
    finally:
        os.unlink(report.name)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr, rep)
    assert rep["status"] == "exited", rep
    # Exactly one JSON object on stdout; the handler's log line on stderr.
    out = json.loads(p.stdout.decode())
    return out, p.stderr.decode()


@pytest.mark.parametrize("rt", sorted(RUNTIMES))
def test_handler_queries_its_database_in_the_sandbox(cluster, rt):
    out, err = invoke(rt, cluster, "fn_db", {"name": "from-" + rt})
    assert out == {"ok": True, "result": {"inserted": "from-" + rt, "found": 1, "project": "proj-1"}}, (out, err)
    assert "log line from the handler" in err


@pytest.mark.parametrize("rt", sorted(RUNTIMES))
def test_database_its_role_may_not_connect_to_is_a_clear_error(cluster, rt):
    out, err = invoke(rt, cluster, "other_db", {"name": "nope"})
    assert out["ok"] is False, out
    assert out["error"]["name"] == "DatabaseError", out
    assert "permission denied for database" in out["error"]["message"], out
    assert "fn pass" not in json.dumps(out), "the password must not leak into the error"
