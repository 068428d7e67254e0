"""zmeshd's HTTP API, invocations: the envelope and outcomes (error, timeout,
OOM, bad result), the SDK examples against the project's own database,
tenant isolation in PostgreSQL, secret stripping, invocation records and
logs, metrics, the monthly cap and the concurrency limits."""

import json
import threading
import time
from datetime import datetime

import pytest

from conftest import (CANARY_NAME, CANARY_VALUE, UUID_RE, ZMESH_CANARY_NAME, ZMESH_CANARY_VALUE, assert_error,
                      invoke_by_key, post_large)

MULTI_JS = r"""
exports.handler = async (p, zmesh) => {
  switch (p && p.mode) {
    case 'throw': throw new TypeError('bad thing ' + p.n);
    case 'custom': {
      class PaymentDeclined extends Error { constructor(m) { super(m); this.name = 'PaymentDeclined'; } }
      throw new PaymentDeclined('card ' + p.n + ' declined');
    }
    case 'spin': for (;;) {}
    case 'oom': { const keep = []; for (;;) keep.push(Buffer.alloc(8 << 20, 1)); }
    case 'heap': { const keep = []; for (;;) keep.push(new Array(1 << 20).fill(p.n + 0.5)); }
    // What it prints to fd 1 is logs; leaving without the wrapper's answer
    // is what makes no result.
    case 'badresult': require('fs').writeSync(1, 'this is not json'); process.reallyExit(0); return 1;
    case 'huge': return 'x'.repeat(p.n);
    case 'sleep': await new Promise((r) => setTimeout(r, p.ms)); return 'slept ' + p.ms;
    case 'log': console.log(p.text); zmesh.log.info('structured', {k: 1}); return 'logged';
    case 'flood': for (let i = 0; i < p.lines; i++) console.log(i + ':' + 'x'.repeat(1000)); return 'flooded';
    default: return {echo: p};
  }
};
"""

MULTI_PY = r"""
import os
import time

def handler(p, zmesh):
    mode = (p or {}).get("mode") if isinstance(p, dict) else None
    if mode == "raise":
        raise ValueError("nope %s" % p["n"])
    if mode == "sleep":
        time.sleep(p["s"])
        return "slept"
    if mode == "oom":
        keep = []
        while True:
            keep.append(b"\x01" * (8 << 20))
    if mode == "exit":
        os._exit(0)
    if mode == "log":
        print(p["text"])
        return "logged"
    if mode == "flood":
        for i in range(p["lines"]):
            print("%d:%s" % (i, "y" * 1000))
        return "flooded"
    return {"echo": p}
"""


def fn(pid, fid, tail=""):
    return "/projects/%s/functions/%s%s" % (pid, fid, tail)


def assert_envelope(r, status_word):
    body = r.json
    assert set(body) >= {"status", "result", "error", "invocation_id", "duration_ms", "start", "metrics"}, str(r)
    assert body["status"] == status_word, str(r)
    assert UUID_RE.match(body["invocation_id"]), str(r)
    assert isinstance(body["duration_ms"], (int, float)) and body["duration_ms"] >= 0, str(r)
    assert body["start"] == "cold", str(r)
    m = body["metrics"]
    assert set(m) >= {"wall_ms", "cpu_ms", "memory_bytes"}, str(r)
    assert all(isinstance(m[k], (int, float)) and m[k] >= 0 for k in ("wall_ms", "cpu_ms", "memory_bytes")), str(r)
    return body


@pytest.fixture(scope="module")
def multi(zd):
    """One user, one project with a JS and a Python function that do what
    their payload says."""
    admin = zd.admin()
    p = admin.create_project()
    js = admin.deploy(p["id"], MULTI_JS, timeout_ms=2000, memory_mb=128)
    py = admin.deploy(p["id"], MULTI_PY, language="python", timeout_ms=2000, memory_mb=128)
    return admin, p, js, py


# ---- envelope and outcomes ---------------------------------------------------------------------


def test_success_envelope(zd, multi):
    c, p, js, py = multi
    for f in (js, py):
        payload = {"a": [1, "two", {"3": None}], "b": 1.5, "u": "\u00e9\u4e2d"}
        r = c.invoke(p["id"], f["id"], payload)
        assert r.status == 200, str(r)
        body = assert_envelope(r, "success")
        assert body["result"] == {"echo": payload} and body["error"] is None
        assert body["metrics"]["memory_bytes"] > 0 and body["metrics"]["wall_ms"] > 0
        # no body and an empty object both mean a null payload
        r = c.request("POST", fn(p["id"], f["slug"], "/invoke"), raw=b"")
        assert r.status == 200 and r.json["result"] == {"echo": None}, str(r)
        assert c.post(fn(p["id"], f["slug"], "/invoke"), {}).json["result"] == {"echo": None}
    assert_error(c.post(fn(p["id"], js["id"], "/invoke"), [1]), 400, "BAD_REQUEST")
    assert_error(c.post(fn(p["id"], js["id"], "/invoke"), "text"), 400, "BAD_REQUEST")


@pytest.mark.parametrize("lang,payload,name,message", [
    ("js", {"mode": "throw", "n": 42}, "TypeError", "bad thing 42"),
    ("js", {"mode": "custom", "n": 7}, "PaymentDeclined", "card 7 declined"),
    ("py", {"mode": "raise", "n": 9}, "ValueError", "nope 9"),
])
def test_thrown_error_is_500(zd, multi, lang, payload, name, message):
    c, p, js, py = multi
    r = c.invoke(p["id"], (js if lang == "js" else py)["id"], payload)
    assert r.status == 500, str(r)
    body = assert_envelope(r, "error")
    assert body["result"] is None
    err = body["error"]
    assert err["code"] == "FUNCTION_ERROR" and err["name"] == name and err["message"] == message, str(r)
    assert isinstance(err["stack"], str) and message in err["stack"], str(r)


@pytest.mark.parametrize("lang,payload", [("js", {"mode": "spin"}), ("py", {"mode": "sleep", "s": 60})])
def test_timeout_is_504(zd, multi, lang, payload):
    c, p, js, py = multi
    t0 = time.monotonic()
    r = c.invoke(p["id"], (js if lang == "js" else py)["id"], payload)
    elapsed = time.monotonic() - t0
    assert r.status == 504, str(r)
    body = assert_envelope(r, "timeout")
    assert body["error"]["code"] == "FUNCTION_TIMEOUT", str(r)
    assert body["result"] is None
    # killed at its 2 s timeout, not later
    assert 1.9 <= elapsed < 7, elapsed
    assert body["duration_ms"] >= 1900, str(r)


@pytest.mark.parametrize("lang,payload", [("js", {"mode": "oom"}), ("js", {"mode": "heap", "n": 1}),
                                          ("py", {"mode": "oom"})])
def test_out_of_memory_is_507(zd, multi, lang, payload):
    c, p, js, py = multi
    r = c.invoke(p["id"], (js if lang == "js" else py)["id"], payload)
    assert r.status == 507, str(r)
    body = assert_envelope(r, "error")
    assert body["error"]["code"] == "FUNCTION_OOM", str(r)


@pytest.mark.parametrize("lang,payload", [("js", {"mode": "badresult"}), ("js", {"mode": "huge", "n": 7 << 20}),
                                          ("py", {"mode": "exit"})])
def test_bad_result_is_502(zd, multi, lang, payload):
    c, p, js, py = multi
    r = c.invoke(p["id"], (js if lang == "js" else py)["id"], payload)
    assert r.status == 502, str(r)
    body = assert_envelope(r, "error")
    assert body["error"]["code"] == "BAD_RESULT" and body["result"] is None, str(r)
    # the daemon serves on
    assert c.invoke(p["id"], js["id"], 1).status == 200


def test_result_may_hold_any_json_string(zd, multi):
    c, p, _, _ = multi
    f = c.deploy(p["id"], "exports.handler = async () => ({s: 'a\\u0000b\\u2028c\\ud83d\\ude00', n: -0.5e-7});")
    r = c.invoke(p["id"], f["id"])
    assert r.status == 200, str(r)
    assert r.json["result"] == {"s": "a\u0000b\u2028c\U0001F600", "n": -0.5e-7}


# ---- the SDK against the project's database ------------------------------------------------------

SDK_JS = r"""
exports.handler = async (payload, zmesh) => {
  const db = zmesh.db;
  switch (payload.op) {
    case 'setup':
      await db.query('CREATE TABLE IF NOT EXISTS todos (id serial PRIMARY KEY, title text NOT NULL, done boolean NOT NULL DEFAULT false)');
      return [await db.insert('todos', {title: 'write tests'}), await db.insert('todos', {title: "ship it'); DROP TABLE todos; --"})];
    case 'list':
      return db.query('SELECT id, title, done FROM todos ORDER BY id');
    case 'get':
      return db.queryOne('SELECT id, title, done FROM todos WHERE id = $1', [payload.id]);
    case 'missing':
      return db.queryOne('SELECT id FROM todos WHERE id = $1', [-1]);
    case 'done':
      return db.update('todos', {done: true}, 'id = $1', [payload.id]);
    case 'remove':
      return db.remove('todos', 'id = $1', [payload.id]);
    case 'select':
      return db.select('todos', {done: true});
    case 'env':
      return {greeting: zmesh.env.GREETING, missing: zmesh.env.NOT_SET === undefined, project: zmesh.projectId,
              database: (await db.queryOne('SELECT current_database() AS d')).d};
  }
  throw new Error('unknown op ' + payload.op);
};
"""

SDK_PY = r"""
def handler(payload, zmesh):
    db = zmesh.db
    op = payload["op"]
    if op == "setup":
        db.query("CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL, stars int NOT NULL DEFAULT 0)")
        return [db.insert("notes", {"body": "first"}), db.insert("notes", {"body": "100% second", "stars": 2})]
    if op == "list":
        return db.query("SELECT id, body, stars FROM notes ORDER BY id")
    if op == "get":
        return db.query_one("SELECT id, body, stars FROM notes WHERE id = %s", [payload["id"]])
    if op == "missing":
        return db.query_one("SELECT id FROM notes WHERE id = %s", [-1])
    if op == "star":
        return db.update("notes", {"stars": 5}, "id = %s", [payload["id"]])
    if op == "remove":
        return db.remove("notes", "id = %s", [payload["id"]])
    if op == "select":
        return db.select("notes", {"stars": 5})
    if op == "todos":
        return db.query("SELECT title FROM todos ORDER BY id")
    if op == "env":
        return {"greeting": zmesh.env.GREETING, "missing": zmesh.env.NOT_SET, "project": zmesh.project_id,
                "database": db.query_one("SELECT current_database() AS d")["d"]}
    raise ValueError("unknown op %s" % op)
"""


@pytest.fixture(scope="module")
def sdk_project(zd):
    c = zd.admin()
    p = c.create_project()
    js = c.deploy(p["id"], SDK_JS, env_vars={"GREETING": "hello from js"})
    py = c.deploy(p["id"], SDK_PY, language="python", env_vars={"GREETING": "hello from python"})
    return c, p, js, py


def run_ok(c, p, f, payload):
    r = c.invoke(p["id"], f["id"], payload)
    assert r.status == 200, str(r)
    return r.json["result"]


def test_sdk_javascript_example(zd, sdk_project):
    c, p, js, _ = sdk_project
    evil = "ship it'); DROP TABLE todos; --"
    assert run_ok(c, p, js, {"op": "setup"}) == [{"id": 1, "title": "write tests", "done": False},
                                                 {"id": 2, "title": evil, "done": False}]
    # each invocation is a new process: what it sees was stored
    assert run_ok(c, p, js, {"op": "list"}) == [{"id": 1, "title": "write tests", "done": False},
                                                {"id": 2, "title": evil, "done": False}]
    assert run_ok(c, p, js, {"op": "get", "id": 2}) == {"id": 2, "title": evil, "done": False}
    assert run_ok(c, p, js, {"op": "missing"}) is None
    assert run_ok(c, p, js, {"op": "done", "id": 1}) == [{"id": 1, "title": "write tests", "done": True}]
    assert run_ok(c, p, js, {"op": "remove", "id": 2}) == 1
    assert run_ok(c, p, js, {"op": "remove", "id": 2}) == 0
    assert run_ok(c, p, js, {"op": "select"}) == [{"id": 1, "title": "write tests", "done": True}]
    assert run_ok(c, p, js, {"op": "env"}) == {"greeting": "hello from js", "missing": True, "project": p["id"],
                                              "database": p["database"]}
    # the rows live in the project's database, seen from outside
    assert zd.sql("SELECT id, title, done FROM todos ORDER BY id", db=p["database"]) == [["1", "write tests", "t"]]


def test_sdk_python_example(zd, sdk_project):
    c, p, js, py = sdk_project
    assert run_ok(c, p, py, {"op": "setup"}) == [{"id": 1, "body": "first", "stars": 0},
                                                 {"id": 2, "body": "100% second", "stars": 2}]
    assert run_ok(c, p, py, {"op": "list"}) == [{"id": 1, "body": "first", "stars": 0},
                                                {"id": 2, "body": "100% second", "stars": 2}]
    assert run_ok(c, p, py, {"op": "get", "id": 2}) == {"id": 2, "body": "100% second", "stars": 2}
    assert run_ok(c, p, py, {"op": "missing"}) is None
    assert run_ok(c, p, py, {"op": "star", "id": 1}) == [{"id": 1, "body": "first", "stars": 5}]
    assert run_ok(c, p, py, {"op": "remove", "id": 2}) == 1
    assert run_ok(c, p, py, {"op": "select"}) == [{"id": 1, "body": "first", "stars": 5}]
    assert run_ok(c, p, py, {"op": "env"}) == {"greeting": "hello from python", "missing": None, "project": p["id"],
                                              "database": p["database"]}
    assert zd.sql("SELECT id, body, stars FROM notes ORDER BY id", db=p["database"]) == [["1", "first", "5"]]
    # both runtimes of a project share its one database
    run_ok(c, p, js, {"op": "setup"})
    todos = run_ok(c, p, py, {"op": "todos"})
    assert todos and todos[0] == {"title": "write tests"}


def test_sdk_database_errors_are_function_errors(zd, sdk_project):
    c, p, js, py = sdk_project
    r = c.invoke(p["id"], js["id"], {"op": "get", "id": "not-a-number"})
    assert r.status == 500 and r.json["error"]["code"] == "FUNCTION_ERROR", str(r)
    assert r.json["error"]["name"] == "DatabaseError", str(r)


# ---- tenant isolation in PostgreSQL ------------------------------------------------------------

CONNECT_PY = r"""
import psycopg2

def handler(p, zmesh):
    out = {}
    for label, t in p["targets"].items():
        try:
            c = psycopg2.connect(host="/run/zmesh/pg", user=t["user"], password=t.get("password"),
                                 dbname=t["db"], connect_timeout=5)
            try:
                cur = c.cursor()
                cur.execute("SELECT current_database()")
                out[label] = {"ok": cur.fetchone()[0]}
            finally:
                c.close()
        except Exception as e:
            out[label] = {"error": "%s: %s" % (type(e).__name__, str(e)[:300])}
    out["sdk"] = zmesh.db.query_one("SELECT current_database() AS db, current_user AS role")
    out["powers"] = zmesh.db.query_one(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    return out
"""


def test_function_reaches_only_its_own_database(zd, user):
    a, b = user.create_project(), user.create_project()
    role_a, pw_a = zd.sql("SELECT db_role, db_password FROM projects WHERE id = '%s'" % a["id"])[0]
    role_b, pw_b = zd.sql("SELECT db_role, db_password FROM projects WHERE id = '%s'" % b["id"])[0]
    assert role_a != role_b and a["database"] != b["database"]
    zd.sql("CREATE TABLE secret (v text); INSERT INTO secret VALUES ('b-only')", db=b["database"])
    f = user.deploy(a["id"], CONNECT_PY, language="python")
    targets = {
        "own": {"user": role_a, "password": pw_a, "db": a["database"]},
        "other_project": {"user": role_a, "password": pw_a, "db": b["database"]},
        "control_plane": {"user": role_a, "password": pw_a, "db": "zmesh"},
        "maintenance": {"user": role_a, "password": pw_a, "db": "postgres"},
        "template": {"user": role_a, "password": pw_a, "db": "template1"},
        "superuser_control_plane": {"user": "postgres", "db": "zmesh"},
        "superuser_other_project": {"user": "postgres", "db": b["database"]},
        "other_role_wrong_password": {"user": role_b, "password": pw_a, "db": b["database"]},
    }
    r = user.invoke(a["id"], f["id"], {"targets": targets})
    assert r.status == 200, str(r)
    out = r.json["result"]
    # the method works: with its own credentials the function reaches its own database
    assert out["own"] == {"ok": a["database"]}, str(out)
    for label in targets:
        if label != "own":
            assert "error" in out[label] and "ok" not in out[label], str((label, out[label]))
    assert out["sdk"] == {"db": a["database"], "role": role_a}
    assert out["powers"] == {"rolsuper": False, "rolcreatedb": False, "rolcreaterole": False,
                             "rolreplication": False, "rolbypassrls": False}


# ---- secrets ---------------------------------------------------------------------------------------------

PEEK_JS = r"""
const fs = require('fs');
const read = (f) => { try { return {ok: fs.readFileSync(f, 'latin1').slice(0, 4000).replace(/\0/g, '\n')}; } catch (e) { return {error: e.code || String(e)}; } };
const list = (d) => { try { return {ok: fs.readdirSync(d)}; } catch (e) { return {error: e.code || String(e)}; } };
exports.handler = async (p) => ({
  env: process.env,
  files: {key: read(p.state + '/jwt.key'), pgconf: read(p.state + '/pg/data/postgresql.conf')},
  dirs: {state: list(p.state), pg: list(p.state + '/pg')},
  proc: {init: read('/proc/1/environ'), self: read('/proc/self/environ'), parent: read('/proc/' + process.ppid + '/environ')},
});
"""

PEEK_PY = r"""
import os

def read(path):
    try:
        with open(path, "rb") as f:
            return {"ok": f.read(4000).replace(b"\0", b"\n").decode("latin1")}
    except OSError as e:
        return {"error": type(e).__name__}

def listdir(path):
    try:
        return {"ok": os.listdir(path)}
    except OSError as e:
        return {"error": type(e).__name__}

def handler(p, zmesh):
    return {
        "env": dict(os.environ),
        "files": {"key": read(p["state"] + "/jwt.key"), "pgconf": read(p["state"] + "/pg/data/postgresql.conf")},
        "dirs": {"state": listdir(p["state"]), "pg": listdir(p["state"] + "/pg")},
        "proc": {"init": read("/proc/1/environ"), "self": read("/proc/self/environ"),
                 "parent": read("/proc/%d/environ" % os.getppid())},
    }
"""


def check_no_secrets(out, state_dir, secret_values):
    env = out["env"]
    # the dump is the real environment: the runtime's own allowlisted PATH is there
    assert "PATH" in env, str(env)
    for name in env:
        assert name not in ("JWT_SECRET_KEY", "DATABASE_URL", CANARY_NAME, ZMESH_CANARY_NAME), str((name, env))
        assert not name.startswith("ZMESH_"), str((name, env))
    for what, res in list(out["files"].items()) + list(out["dirs"].items()):
        assert "error" in res and "ok" not in res, str((what, res))
    text = json.dumps(out)
    for v in secret_values:
        assert v not in text, "a secret of zmeshd reached the function"


@pytest.mark.parametrize("lang", ["javascript", "python"])
def test_function_sees_no_secret(zd, user, project, lang):
    f = user.deploy(project["id"], PEEK_JS if lang == "javascript" else PEEK_PY, language=lang)
    r = user.invoke(project["id"], f["id"], {"state": zd.state_dir})
    assert r.status == 200, str(r)
    secrets_ = [CANARY_VALUE, ZMESH_CANARY_VALUE, zd.admin_password, zd.jwt_key().decode()]
    secrets_ += [row[0] for row in zd.sql("SELECT db_password FROM projects WHERE id <> '%s'" % project["id"])]
    check_no_secrets(r.json["result"], zd.state_dir, secrets_)


# ---- invocation records ------------------------------------------------------------------------------


def test_one_record_per_invocation(zd, user, project):
    pid = project["id"]
    f = user.deploy(pid, MULTI_JS, timeout_ms=1500, memory_mb=128)
    key = user.create_key(pid)["key"]
    expect = {}  # invocation id -> (status word, trigger, error code)

    def track(r, status_word, trigger, code):
        assert r.json["status"] == status_word, str(r)
        expect[r.json["invocation_id"]] = (status_word, trigger, code)

    track(user.invoke(pid, f["id"], {"n": 1}), "success", "api", None)
    track(invoke_by_key(zd, key, f["slug"], b'{"n": 2}'), "success", "api_key", None)
    track(user.invoke(pid, f["id"], {"mode": "throw", "n": 3}), "error", "api", "FUNCTION_ERROR")
    track(user.invoke(pid, f["id"], {"mode": "spin"}), "timeout", "api", "FUNCTION_TIMEOUT")
    track(invoke_by_key(zd, key, f["slug"], b'{"mode": "oom"}'), "error", "api_key", "FUNCTION_OOM")
    track(user.invoke(pid, f["id"], {"mode": "badresult"}), "error", "api", "BAD_RESULT")
    assert len(expect) == 6
    zd.sql("UPDATE projects SET monthly_cap = 0 WHERE id = '%s'" % pid)
    assert_error(user.invoke(pid, f["id"], {"n": 7}), 429, "QUOTA_EXCEEDED")
    assert_error(invoke_by_key(zd, key, f["slug"], b'{"n": 8}'), 429, "QUOTA_EXCEEDED")

    listing = user.get(fn(pid, f["id"], "/invocations")).json
    runs = listing["invocations"]
    assert len(runs) == 8, str(runs)
    assert zd.sql("SELECT count(*) FROM invocations WHERE function_id = '%s'" % f["id"]) == [["8"]]
    ran = [x for x in runs if x["status"] != "rejected"]
    assert {x["id"]: (x["status"], x["trigger"], (x["error"] or {}).get("code")) for x in ran} == expect
    rejected = [x for x in runs if x["status"] == "rejected"]
    assert sorted(x["trigger"] for x in rejected) == ["api", "api_key"]
    assert all(x["error"]["code"] == "QUOTA_EXCEEDED" for x in rejected), str(rejected)
    # newest first: the two rejections came last
    assert {x["status"] for x in runs[:2]} == {"rejected"}
    assert [x["started_at"] for x in runs] == sorted((x["started_at"] for x in runs), reverse=True)
    for x in runs:
        assert set(x) >= {"id", "version", "trigger", "start", "status", "started_at", "duration_ms", "cpu_ms",
                          "memory_bytes", "result_excerpt", "error", "logs_truncated"}, x
        assert x["version"] == 1
    for x in ran:
        assert x["start"] == "cold" and x["duration_ms"] > 0 and x["memory_bytes"] > 0, str(x)
    ok = [x for x in ran if x["status"] == "success"]
    assert all("echo" in json.dumps(x["result_excerpt"]) for x in ok), str(ok)

    for x in runs:
        r = user.get(fn(pid, f["id"], "/invocations/" + x["id"]))
        assert r.status == 200, str(r)
        one = r.json
        assert "logs" in one and isinstance(one["logs"], str), str(one)
        assert {k: one[k] for k in x} == x
    assert_error(user.get(fn(pid, f["id"], "/invocations/0f8fad5b-d9cb-469f-a165-70867728950e")), 404, "NOT_FOUND")
    assert_error(user.get(fn(pid, f["id"], "/invocations/not-an-id")), 404, "NOT_FOUND")
    other = user.deploy(pid, MULTI_JS)
    assert_error(user.get(fn(pid, other["id"], "/invocations/" + runs[0]["id"])), 404, "NOT_FOUND")
    assert user.get(fn(pid, other["id"], "/invocations")).json["invocations"] == []


def test_invocations_are_paginated(zd, user, project):
    pid = project["id"]
    f = user.deploy(pid, MULTI_JS)
    ids = [user.invoke(pid, f["id"], {"n": i}).json["invocation_id"] for i in range(7)]
    pages, offset = [], 0
    while True:
        body = user.get(fn(pid, f["id"], "/invocations?limit=3&offset=%d" % offset)).json
        assert body["limit"] == 3 and body["offset"] == offset, str(body)
        pages.append([x["id"] for x in body["invocations"]])
        if "next_offset" not in body or body["next_offset"] is None:
            break
        assert body["next_offset"] == offset + 3, str(body)
        offset = body["next_offset"]
        assert len(pages) < 10
    assert [len(pg) for pg in pages] == [3, 3, 1]
    assert [i for pg in pages for i in pg] == list(reversed(ids))
    for bad in ["limit=abc", "limit=-1", "offset=-3", "offset=x"]:
        r = user.get(fn(pid, f["id"], "/invocations?" + bad))
        assert r.status == 400 and r.code, str(r)


@pytest.mark.parametrize("lang", ["javascript", "python"])
def test_logs_are_kept_and_bounded(zd, user, project, lang):
    pid = project["id"]
    f = user.deploy(pid, MULTI_JS if lang == "javascript" else MULTI_PY, language=lang)
    r = user.invoke(pid, f["id"], {"mode": "log", "text": "marker-7731"})
    assert r.status == 200 and r.json["result"] == "logged", str(r)
    one = user.get(fn(pid, f["id"], "/invocations/" + r.json["invocation_id"])).json
    assert "marker-7731" in one["logs"] and one["logs_truncated"] is False, str(one)

    r = user.invoke(pid, f["id"], {"mode": "flood", "lines": 200})
    assert r.status == 200 and r.json["result"] == "flooded", str(r)
    one = user.get(fn(pid, f["id"], "/invocations/" + r.json["invocation_id"])).json
    assert one["logs_truncated"] is True, {k: v for k, v in one.items() if k != "logs"}
    assert 60 * 1024 <= len(one["logs"].encode()) <= 64 * 1024, len(one["logs"].encode())
    assert one["logs"].startswith("0:"), one["logs"][:100]
    listed = user.get(fn(pid, f["id"], "/invocations?limit=1")).json["invocations"][0]
    assert listed["id"] == one["id"] and listed["logs_truncated"] is True


# ---- metrics ---------------------------------------------------------------------------------------------


def series(metrics, name):
    return {k: v for k, v in metrics.items() if k == name or k.startswith(name + "{")}


def deltas(before, after, name):
    b, a = series(before, name), series(after, name)
    return {k: a[k] - b.get(k, 0) for k in a if a[k] != b.get(k, 0)}


def test_metrics_move(zd, user, project):
    r = zd.anonymous().get("/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain"), str(r)
    text = r.data.decode()
    for name, kind in [("zmesh_invocations_total", "counter"), ("zmesh_rejections_total", "counter"),
                       ("zmesh_invocation_duration_ms", "histogram"), ("zmesh_active_sandboxes", "gauge"),
                       ("zmesh_queue_waiting", "gauge")]:
        assert "# TYPE %s %s" % (name, kind) in text, name
    pid = project["id"]
    f = user.deploy(pid, MULTI_JS)

    m0 = zd.metrics()
    assert user.invoke(pid, f["id"], 1).status == 200
    m1 = zd.metrics()
    d = deltas(m0, m1, "zmesh_invocations_total")
    assert list(d.values()) == [1], str(d)
    (ok_series,) = d
    assert "outcome=" in ok_series and any(w in ok_series.lower() for w in ("ok", "success")), ok_series

    assert user.invoke(pid, f["id"], {"mode": "throw", "n": 1}).status == 500
    m2 = zd.metrics()
    d = deltas(m1, m2, "zmesh_invocations_total")
    assert list(d.values()) == [1] and "error" in list(d)[0].lower(), str(d)

    count = "zmesh_invocation_duration_ms_count"
    assert m2[count] - m0[count] == 2
    assert m2["zmesh_invocation_duration_ms_bucket{le=\"+Inf\"}"] == m2[count]
    assert m2["zmesh_invocation_duration_ms_sum"] >= m0["zmesh_invocation_duration_ms_sum"]
    assert m2["zmesh_active_sandboxes"] == 0 and m2["zmesh_queue_waiting"] == 0

    zd.sql("UPDATE projects SET monthly_cap = 0 WHERE id = '%s'" % pid)
    assert user.invoke(pid, f["id"], 1).status == 429
    m3 = zd.metrics()
    d = deltas(m2, m3, "zmesh_rejections_total")
    assert list(d.values()) == [1] and "quota" in list(d)[0].lower(), str(d)
    assert deltas(m2, m3, "zmesh_invocations_total") == {}
    assert m3[count] == m2[count]


# ---- monthly cap --------------------------------------------------------------------------------------------


def test_every_invocation_is_counted_once(zd, user, project):
    """Far from the cap, a node counts in memory and writes the counts in
    batches; each invocation still lands in the month's count exactly once,
    and /metrics says where each was counted."""
    pid = project["id"]
    f = user.deploy(pid, MULTI_JS)
    where = lambda m: {k: v for k, v in m.items() if k.startswith("zmesh_usage_counted_total")}
    m0 = where(zd.metrics())
    assert set(m0) == {'zmesh_usage_counted_total{where="memory"}', 'zmesh_usage_counted_total{where="database"}'}
    for i in range(5):
        assert user.invoke(pid, f["id"], i).status == 200
    m1 = where(zd.metrics())
    assert sum(m1.values()) - sum(m0.values()) == 5, (m0, m1)
    q = "SELECT coalesce(sum(invocations), 0) FROM usage_counters WHERE project_id = '%s'" % pid
    deadline = time.monotonic() + 10
    while zd.sql(q) != [["5"]] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert zd.sql(q) == [["5"]]



def test_monthly_cap_is_429_quota_exceeded(zd, user, project):
    pid = project["id"]
    f = user.deploy(pid, MULTI_JS)
    key = user.create_key(pid)["key"]
    zd.sql("UPDATE projects SET monthly_cap = 2 WHERE id = '%s'" % pid)
    assert user.get("/projects/" + pid).json["monthly_cap"] == 2
    assert user.invoke(pid, f["id"], 1).status == 200
    assert invoke_by_key(zd, key, f["slug"], b"2").status == 200
    assert_error(user.invoke(pid, f["id"], 3), 429, "QUOTA_EXCEEDED")
    assert_error(invoke_by_key(zd, key, f["slug"], b"4"), 429, "QUOTA_EXCEEDED")
    # another project of the same user is not affected
    other = user.create_project()
    g = user.deploy(other["id"], MULTI_JS)
    assert user.invoke(other["id"], g["id"], 5).status == 200
    # a higher cap lets exactly one more through
    zd.sql("UPDATE projects SET monthly_cap = 3 WHERE id = '%s'" % pid)
    assert user.invoke(pid, f["id"], 6).status == 200
    assert_error(user.invoke(pid, f["id"], 7), 429, "QUOTA_EXCEEDED")
    statuses = sorted(x["status"] for x in user.get(fn(pid, f["id"], "/invocations")).json["invocations"])
    assert statuses == ["rejected"] * 3 + ["success"] * 3


# ---- concurrency -----------------------------------------------------------------------------------------------


class Background:
    """An invocation running in a thread."""

    def __init__(self, call):
        self.resp, self.error, self.done_at = None, None, None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call):
        try:
            self.resp = call()
        except Exception as e:  # reported by result()
            self.error = e
        self.done_at = time.monotonic()

    def result(self, timeout=60):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the background invocation did not finish"
        if self.error:
            raise self.error
        return self.resp


def retry_after(r):
    v = r.headers.get("retry-after")
    assert v is not None and v.isdigit() and int(v) >= 1, r.headers
    return int(v)


def test_global_concurrency_is_429(zd_tight):
    c = zd_tight.admin()
    p, q = c.create_project(), c.create_project()
    slow = c.deploy(p["id"], MULTI_JS)
    fast = c.deploy(q["id"], MULTI_JS)
    key = c.create_key(q["id"])["key"]
    assert c.invoke(q["id"], fast["id"], 0).status == 200
    m0 = zd_tight.metrics()
    bg = Background(lambda: c.invoke(p["id"], slow["id"], {"mode": "sleep", "ms": 3000}))
    try:
        zd_tight.wait_metric("zmesh_active_sandboxes", lambda v: v == 1)
        t0 = time.monotonic()
        r = c.invoke(q["id"], fast["id"], 1)
        assert_error(r, 429, "RATE_LIMITED")
        retry_after(r)
        r = invoke_by_key(zd_tight, key, fast["slug"], b"2")
        assert_error(r, 429, "RATE_LIMITED")
        retry_after(r)
        assert time.monotonic() - t0 < 2, "with no queue wait the refusal is immediate"
    finally:
        r = bg.result()
    assert r.status == 200 and r.json["result"] == "slept 3000", str(r)
    assert c.invoke(q["id"], fast["id"], 3).status == 200
    m1 = zd_tight.metrics()
    d = deltas(m0, m1, "zmesh_rejections_total")
    assert list(d.values()) == [2] and "rate" in list(d)[0].lower(), str(d)
    runs = c.get(fn(q["id"], fast["id"], "/invocations")).json["invocations"]
    assert [x["status"] for x in runs] == ["success", "rejected", "rejected", "success"]
    assert sorted(x["trigger"] for x in runs[1:3]) == ["api", "api_key"]
    assert all(x["error"]["code"] == "RATE_LIMITED" for x in runs[1:3]), str(runs)


def test_configured_body_limit(zd_tight):
    c = zd_tight.admin()
    p = c.create_project()
    f = c.deploy(p["id"], "exports.handler = async (p) => p.length;")
    key = c.create_key(p["id"])["key"]
    limit = 64 * 1024
    body = b'"' + b"a" * (limit - 2) + b'"'
    r = invoke_by_key(zd_tight, key, f["slug"], body)
    assert r.status == 200 and r.json["result"] == limit - 2, str(r)
    r = post_large(zd_tight.port, "/api/functions/" + f["slug"], body + b" ",
                   {"x-api-key": key, "Content-Type": "application/json"})
    assert_error(r, 413, "PAYLOAD_TOO_LARGE")
    assert len(c.get(fn(p["id"], f["id"], "/invocations")).json["invocations"]) == 1


def test_project_concurrency_queues_then_refuses(zd, user):
    p, other = user.create_project(), user.create_project()
    zd.sql("UPDATE projects SET concurrency = 1 WHERE id = '%s'" % p["id"])
    f = user.deploy(p["id"], MULTI_JS, timeout_ms=10000)
    g = user.deploy(other["id"], MULTI_JS)

    # a short wait in the queue: the second invocation runs once the first is done
    first = Background(lambda: user.invoke(p["id"], f["id"], {"mode": "sleep", "ms": 1200}))
    try:
        zd.wait_metric("zmesh_active_sandboxes", lambda v: v >= 1)
        second = Background(lambda: user.invoke(p["id"], f["id"], {"n": 2}))
        zd.wait_metric("zmesh_queue_waiting", lambda v: v == 1)
        assert second.resp is None
    finally:
        r1 = first.result()
    r2 = second.result()
    assert r1.status == 200 and r2.status == 200 and r2.json["result"] == {"echo": {"n": 2}}, str((r1, r2))
    # one after the other: the second started once the first was over
    rec1, rec2 = (user.get(fn(p["id"], f["id"], "/invocations/" + r.json["invocation_id"])).json for r in (r1, r2))
    start1, start2 = (datetime.fromisoformat(x["started_at"]).timestamp() * 1000 for x in (rec1, rec2))
    assert start2 >= start1 + rec1["duration_ms"] - 5, str((rec1, rec2))

    # past the queue wait (2 s by default) the project's own limit answers 429
    slow = Background(lambda: user.invoke(p["id"], f["id"], {"mode": "sleep", "ms": 5000}))
    try:
        zd.wait_metric("zmesh_active_sandboxes", lambda v: v >= 1)
        t0 = time.monotonic()
        r = user.invoke(p["id"], f["id"], {"n": 3})
        waited = time.monotonic() - t0
        assert_error(r, 429, "RATE_LIMITED")
        retry_after(r)
        assert 1.5 <= waited < 4.5, waited
        # the limit is the project's: another project runs meanwhile
        t0 = time.monotonic()
        r = user.invoke(other["id"], g["id"], {"n": 4})
        assert r.status == 200 and time.monotonic() - t0 < 1.5, str(r)
    finally:
        r = slow.result()
    assert r.status == 200, str(r)


def test_free_tier_runs_four_at_once(zd, user, grant_tier):
    free, pro = user.create_project(), grant_tier(user.create_project(), "pro")
    assert free["tier"] == "free" and free["concurrency"] is None
    f = user.deploy(free["id"], MULTI_JS)
    g = user.deploy(pro["id"], MULTI_JS)
    running = [Background(lambda: user.invoke(free["id"], f["id"], {"mode": "sleep", "ms": 4500})) for _ in range(4)]
    try:
        zd.wait_metric("zmesh_active_sandboxes", lambda v: v == 4)
        t0 = time.monotonic()
        r = user.invoke(free["id"], f["id"], {"n": 5})
        assert_error(r, 429, "RATE_LIMITED")
        assert time.monotonic() - t0 >= 1.5, "refused without waiting in the queue"
        r = user.invoke(pro["id"], g["id"], {"n": 6})
        assert r.status == 200, str(r)
    finally:
        results = [b.result() for b in running]
    assert [r.status for r in results] == [200] * 4, str(results)
