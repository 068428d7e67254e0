"""POST /projects/{pid}/sql against a real zmeshd (conftest's daemon): a
member's SQL runs in the project's own database as the project's role, its
results come back as JSON values, its errors as 400 SQL_ERROR with the
server's message, SQLSTATE and position; the limits hold; and nothing beyond
the project's database is reachable through it: not another project, not the
control plane, not a superuser's powers.
"""

import json
import time

from conftest import assert_error, unique  # noqa: F401


def sql(client, pid, text, params=None, **kw):
    body = {"sql": text}
    if params is not None:
        body["params"] = params
    return client.post("/projects/%s/sql" % pid, body, **kw)


def ok(client, pid, text, params=None):
    r = sql(client, pid, text, params)
    assert r.status == 200, str(r)
    return r.json


def sql_error(client, pid, text, params=None, sqlstate=None):
    r = sql(client, pid, text, params)
    assert_error(r, 400, "SQL_ERROR")
    err = r.json["error"]
    if sqlstate:
        assert err["sqlstate"] == sqlstate, str(r)
    return err


# ---- results ---------------------------------------------------------------------------------------


def test_results_shape_and_types(user, project):
    pid = project["id"]
    out = ok(user, pid, """
        CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL, price numeric(10,2), qty int,
                            ratio float8, big bigint, whole numeric, active bool, tags text[], meta jsonb,
                            doc json, at timestamptz, uid uuid, missing text);
        INSERT INTO items (name, price, qty, ratio, big, whole, active, tags, meta, doc, at, uid)
        VALUES ('pen', 1.50, 3, 0.25, 9007199254740993, 12345678901234, true, '{a,b}', '{"k": [1, 2]}',
                '[true, null]', '2026-01-02 03:04:05+00', '6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f'),
               ('ink', NULL, 0, 1e300, -1, 1.5, false, '{}', 'null', '"s"', NULL, NULL);
        SELECT name, price, qty, ratio, big, whole, active, tags, meta, doc, at, uid, missing, id
        FROM items ORDER BY id;
    """)
    assert set(out) == {"results", "truncated"} and out["truncated"] is False
    create, insert, select = out["results"]
    assert create == {"command": "CREATE TABLE", "row_count": None, "columns": [], "rows": [], "truncated": False}
    assert insert["command"] == "INSERT" and insert["row_count"] == 2 and insert["rows"] == []
    assert select["command"] == "SELECT" and select["row_count"] == 2 and select["truncated"] is False
    assert [c["name"] for c in select["columns"]] == ["name", "price", "qty", "ratio", "big", "whole", "active",
                                                      "tags", "meta", "doc", "at", "uid", "missing", "id"]
    assert [c["type"] for c in select["columns"]] == ["text", "numeric", "int4", "float8", "int8", "numeric",
                                                      "bool", "text[]", "jsonb", "json", "timestamptz", "uuid",
                                                      "text", "int8"]
    pen, ink = select["rows"]
    # numeric with a fraction stays text (a double would lose digits); whole numerics and
    # integers are numbers, even beyond 2^53
    assert pen[:8] == ["pen", "1.50", 3, 0.25, 9007199254740993, 12345678901234, True, "{a,b}"]
    assert pen[8] == {"k": [1, 2]} and pen[9] == [True, None]
    assert pen[10] == "2026-01-02 03:04:05+00" and pen[11] == "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
    assert pen[12] is None and pen[13] == 1
    assert ink[:8] == ["ink", None, 0, 1e300, -1, "1.5", False, "{}"]
    assert ink[8] is None and ink[9] == "s" and ink[10] is None


def test_special_values_and_user_types(user, project):
    pid = project["id"]
    out = ok(user, pid, "CREATE TYPE mood AS ENUM ('sad', 'happy');"
                        "SELECT 'NaN'::float8 AS nan, 'Infinity'::float8 AS inf, 'happy'::mood AS m,"
                        " ARRAY['sad']::mood[] AS ms, '\\xdead'::bytea AS b, 'é'::text AS accent")
    cols = out["results"][1]["columns"]
    assert [c["type"] for c in cols] == ["float8", "float8", "mood", "mood[]", "bytea", "text"]
    assert out["results"][1]["rows"] == [["NaN", "Infinity", "happy", "{sad}", "\\xdead", "é"]]


def test_params_are_values_of_one_statement(user, project):
    pid = project["id"]
    out = ok(user, pid, "SELECT $1::int + 1 AS n, $2::text AS s, $3::jsonb AS j, $4::text IS NULL AS isnull,"
                        " $5::bool AS b, $6::float8 AS f", [41, "it's; DROP TABLE x", '{"a": 1}', None, True, 0.5])
    assert out["results"][0]["rows"] == [[42, "it's; DROP TABLE x", {"a": 1}, True, True, 0.5]]
    # a text parameter is never SQL
    ok(user, pid, "CREATE TABLE notes (body text)")
    ok(user, pid, "INSERT INTO notes VALUES ($1)", ["x'); DROP TABLE notes; --"])
    assert ok(user, pid, "SELECT body FROM notes")["results"][0]["rows"] == [["x'); DROP TABLE notes; --"]]
    # with params, exactly one statement
    sql_error(user, pid, "SELECT $1::int; SELECT 2", [1], sqlstate="42601")
    # an empty params array still means the extended protocol
    assert ok(user, pid, "SELECT 1 AS one", [])["results"][0]["rows"] == [[1]]


def test_multi_statement_is_one_implicit_transaction(user, project):
    pid = project["id"]
    err = sql_error(user, pid, "CREATE TABLE half (n int); INSERT INTO half VALUES (1); SELECT 1/0", sqlstate="22012")
    assert err["statement"] == 2 and "division by zero" in err["message"]
    # the statements before the failure were rolled back with it
    sql_error(user, pid, "SELECT * FROM half", sqlstate="42P01")


def test_sql_error_has_position_and_statement(user, project):
    pid = project["id"]
    text = "SELECT 1;\nSELECT nosuchcolumn FROM (SELECT 1) s"
    err = sql_error(user, pid, text, sqlstate="42703")
    assert err["statement"] == 1
    assert err["position"] == text.index("nosuchcolumn") + 1
    assert "nosuchcolumn" in err["message"]
    err = sql_error(user, pid, "SELEC 1", sqlstate="42601")
    assert err["position"] == 1 and err["statement"] == 0
    # a unique violation says which key
    ok(user, pid, "CREATE TABLE u (k int PRIMARY KEY); INSERT INTO u VALUES (1)")
    err = sql_error(user, pid, "INSERT INTO u VALUES (1)", sqlstate="23505")
    assert "detail" in err and "(k)=(1)" in err["detail"]


def test_statement_timeout(user, project):
    pid = project["id"]
    assert ok(user, pid, "SHOW statement_timeout")["results"][0]["rows"] == [["30s"]]
    t0 = time.monotonic()
    err = sql_error(user, pid, "SET statement_timeout = '300ms'; SELECT pg_sleep(20)", sqlstate="57014")
    assert time.monotonic() - t0 < 10 and err["statement"] == 1


def test_row_cap_and_size_cap(user, project):
    pid = project["id"]
    res = ok(user, pid, "SELECT g FROM generate_series(1, 5000) g")
    r = res["results"][0]
    assert len(r["rows"]) == 1000 and r["rows"][999] == [1000]
    assert r["row_count"] == 5000 and r["truncated"] is True and res["truncated"] is True
    # 10 values of 1 MB: the answer keeps what fits in 4 MiB
    res = ok(user, pid, "SELECT repeat('x', 1000000) AS v FROM generate_series(1, 10)")
    r = res["results"][0]
    assert 1 <= len(r["rows"]) < 10 and r["row_count"] == 10 and r["truncated"] is True
    # a later statement still runs and is listed
    res = ok(user, pid, "SELECT g FROM generate_series(1, 2000) g; SELECT 'after' AS a")
    assert res["results"][1]["rows"] == [["after"]] and res["results"][1]["truncated"] is False


def test_copy(user, project):
    pid = project["id"]
    out = ok(user, pid, "COPY (SELECT 1 UNION ALL SELECT 2) TO STDOUT")
    assert out["results"][0]["command"] == "COPY" and out["results"][0]["row_count"] == 2
    ok(user, pid, "CREATE TABLE c (n int)")
    err = sql_error(user, pid, "COPY c FROM STDIN")
    assert "not supported" in err["message"]


def test_session_is_fresh_each_request(user, project):
    pid = project["id"]
    ok(user, pid, "CREATE TABLE t (n int)")
    ok(user, pid, "BEGIN; INSERT INTO t VALUES (1)")  # left open: rolled back when the session ends
    assert ok(user, pid, "SELECT count(*)::int AS n FROM t")["results"][0]["rows"] == [[0]]
    ok(user, pid, "SET search_path = nowhere; CREATE TEMP TABLE tmp (n int)")
    assert ok(user, pid, "SHOW search_path")["results"][0]["rows"] == [['"$user", public']]
    sql_error(user, pid, "SELECT * FROM tmp", sqlstate="42P01")


# ---- requests --------------------------------------------------------------------------------------


def test_bad_bodies(user, project):
    path = "/projects/%s/sql" % project["id"]
    assert_error(user.post(path, {"sql": "SELECT 1", "extra": 1}), 400, "UNKNOWN_FIELD")
    assert_error(user.post(path, {}), 400, "BAD_REQUEST")
    assert_error(user.post(path, {"sql": ""}), 400, "BAD_REQUEST")
    assert_error(user.post(path, {"sql": 1}), 400, "BAD_REQUEST")
    assert_error(user.post(path, ["SELECT 1"]), 400, "BAD_REQUEST")
    assert_error(user.post(path, {"sql": "SELECT $1", "params": [{"a": 1}]}), 400, "BAD_REQUEST")
    assert_error(user.post(path, {"sql": "SELECT $1", "params": "x"}), 400, "BAD_REQUEST")
    assert_error(user.post(path, {"sql": "SELECT 1", "params": [1] * 1001}), 400, "BAD_REQUEST")
    r = user.post(path, {"sql": "SELECT 1 -- " + "x" * (1 << 20)})
    assert_error(r, 400, "BAD_REQUEST")
    assert "sql:" in r.json["error"]["message"]


def test_who_may_call(zd, user, new_user, project):
    path = "/projects/%s/sql" % project["id"]
    assert_error(zd.anonymous().post(path, {"sql": "SELECT 1"}), 401, "UNAUTHORIZED")
    other = new_user()
    # a project of others is not there
    assert_error(other.post(path, {"sql": "SELECT 1"}), 404, "NOT_FOUND")
    # a member may, as with functions
    r = user.post("/projects/%s/members" % project["id"], {"email": other.email})
    assert r.status == 201, str(r)
    assert ok(other, project["id"], "SELECT 1 AS one")["results"][0]["rows"] == [[1]]
    # a deleted project is gone
    p2 = user.create_project()
    assert user.delete("/projects/" + p2["id"]).status == 200
    assert_error(user.post("/projects/%s/sql" % p2["id"], {"sql": "SELECT 1"}), 404, "NOT_FOUND")
    assert_error(user.post("/projects/%s/sql" % unique("nope"), {"sql": "SELECT 1"}), 404, "NOT_FOUND")


def test_log_line_names_commands_not_sql(zd, user, project):
    marker = "secret-" + unique("m")
    r = sql(user, project["id"], "SELECT '%s' AS v" % marker)
    assert r.status == 200, str(r)
    rid = r.headers["x-request-id"]
    r = sql(user, project["id"], "SELECT $1::text AS v", [marker + "-param"])
    assert r.status == 200, str(r)
    time.sleep(0.2)
    lines = [e for e in zd.log_events() if e.get("event") == "project_sql" and e.get("request_id") == rid]
    assert len(lines) == 1 and lines[0]["project"] == project["id"] and lines[0]["commands"] == "SELECT"
    assert float(lines[0]["duration_ms"]) >= 0
    assert marker not in zd.log_text()


# ---- isolation ---------------------------------------------------------------------------------------


def test_runs_as_the_projects_role_in_its_database(zd, user, project):
    role, = zd.sql("SELECT db_role FROM projects WHERE id = '%s'" % project["id"])[0]
    out = ok(user, project["id"], "SELECT current_user::text AS u, session_user::text AS s, "
                                  "current_database()::text AS d, "
                                  "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su")
    assert out["results"][0]["rows"] == [[role, role, project["database"], False]]


def test_cannot_reach_other_projects_or_the_control_plane(zd, user):
    a, b = user.create_project(), user.create_project()
    ok(user, b["id"], "CREATE TABLE secret (v text); INSERT INTO secret VALUES ('b-only')")
    assert ok(user, b["id"], "SELECT v FROM secret")["results"][0]["rows"] == [["b-only"]]
    sql_error(user, a["id"], "SELECT v FROM secret", sqlstate="42P01")
    # another database is never one statement away
    sql_error(user, a["id"], 'SELECT v FROM "%s".public.secret' % b["database"], sqlstate="0A000")
    sql_error(user, a["id"], "SELECT * FROM zmesh.public.users", sqlstate="0A000")
    sql_error(user, a["id"], "SELECT * FROM users", sqlstate="42P01")
    sql_error(user, a["id"], "SELECT * FROM zmesh.users", sqlstate="42P01")
    # no extension that connects elsewhere can be had
    for ext in ("dblink", "postgres_fdw"):
        err = sql_error(user, a["id"], "CREATE EXTENSION %s" % ext)
        assert err["sqlstate"] in ("42501", "58P01", "0A000"), err
    sql_error(user, a["id"], "SELECT dblink_connect('dbname=zmesh')", sqlstate="42883")


def test_no_superuser_powers(zd, user, project):
    pid = project["id"]
    role, = zd.sql("SELECT db_role FROM projects WHERE id = '%s'" % pid)[0]
    denied = [
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "COPY (SELECT 1) TO '/tmp/zmesh-sql-test'",
        "CREATE TABLE f (t text); COPY f FROM '/etc/passwd'",
        "ALTER ROLE %s SUPERUSER" % role,
        "ALTER ROLE %s CREATEDB" % role,
        "ALTER ROLE postgres PASSWORD 'x'",
        "SELECT * FROM pg_authid",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT lo_import('/etc/passwd')",
        "CREATE DATABASE evil",
        "CREATE ROLE evil",
        "SET ROLE postgres",
        "SET ROLE zmesh",
        "SET SESSION AUTHORIZATION postgres",
        "CREATE EXTENSION file_fdw",
        "CREATE LANGUAGE plpython3u",
        "ALTER SYSTEM SET log_statement = 'all'",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'zmesh'",
        "LOAD 'auto_explain'",
    ]
    for text in denied:
        r = sql(user, pid, text)
        assert_error(r, 400, "SQL_ERROR")
        # refused for privilege (42501), or the thing does not exist for this role (extension
        # files, untrusted languages): never run
        assert r.json["error"]["sqlstate"] in ("42501", "58P01", "42704", "0A000", "55000", "42P01"), \
            (text, r.json)
    # pg_terminate_backend on another role's backend is refused row by row (a warning, not an
    # error): whatever it said, the control plane is still there
    assert zd.sql("SELECT count(*) FROM users")[0][0] != "0"
    # and after all that, still the project's role
    out = ok(user, pid, "SELECT current_user::text, session_user::text")
    assert out["results"][0]["rows"] == [[role, role]]


def test_set_role_cannot_escape(zd, user):
    a, b = user.create_project(), user.create_project()
    role_b, = zd.sql("SELECT db_role FROM projects WHERE id = '%s'" % b["id"])[0]
    for text in ("SET ROLE %s" % role_b, "SET SESSION AUTHORIZATION %s" % role_b,
                 "SET LOCAL ROLE %s" % role_b, "SELECT set_config('role', '%s', false)" % role_b,
                 "RESET SESSION AUTHORIZATION; SET ROLE postgres"):
        err = sql_error(user, a["id"], text)
        assert err["sqlstate"] in ("42501", "22023"), (text, err)


def test_without_pgbouncer_the_clusters_socket():
    """--pgbouncer 0: the session goes to the cluster's socket, as the
    sandboxes' would, and is the project's role all the same."""
    from conftest import start_daemon, stop_and_check
    d = start_daemon("sqlnopgb", env={"ZMESH_PGBOUNCER": "0"})
    try:
        admin = d.admin()
        p = admin.create_project()
        role, = d.sql("SELECT db_role FROM projects WHERE id = '%s'" % p["id"])[0]
        out = ok(admin, p["id"], "CREATE TABLE t (n int); INSERT INTO t VALUES (7); "
                                 "SELECT n, current_user::text, current_database()::text FROM t")
        assert out["results"][2]["rows"] == [[7, role, p["database"]]]
        sql_error(admin, p["id"], "SET ROLE postgres", sqlstate="42501")
        sql_error(admin, p["id"], "SELECT * FROM zmesh.public.users", sqlstate="0A000")
    except BaseException:
        d.cleanup()
        raise
    stop_and_check(d)


def test_connection_failure_is_503(zd, user):
    p = user.create_project()
    role, = zd.sql("SELECT db_role FROM projects WHERE id = '%s'" % p["id"])[0]
    # the role's password no longer matches what the control plane holds
    zd.sql("ALTER ROLE %s PASSWORD 'not-the-stored-one'" % role)
    r = sql(user, p["id"], "SELECT 1")
    assert_error(r, 503, "UNAVAILABLE")
    assert "project's database" in r.json["error"]["message"]
    assert "/" not in r.json["error"]["message"]  # no host path reaches the client
    rid = r.headers["x-request-id"]
    time.sleep(0.2)
    assert any(e.get("event") == "project_sql_unavailable" and e.get("request_id") == rid for e in zd.log_events())


def test_deadline_cancels_a_statement_that_lifted_its_timeout(user, project):
    """The server's statement_timeout is the session's to change; the
    request's 60 s deadline is not."""
    t0 = time.monotonic()
    # The client waits longer than the server's deadline (the default 60 s
    # would race the answer that comes at 60 s and a little).
    r = sql(user, project["id"], "SET statement_timeout = 0; SELECT pg_sleep(120)", timeout=120)
    took = time.monotonic() - t0
    assert_error(r, 400, "SQL_ERROR")
    err = r.json["error"]
    assert err["sqlstate"] == "57014", str(r)
    assert 55 < took < 75, took
    assert "60 s" in err["message"] and err["statement"] == 1
    # the session is gone: nothing still sleeps as the project's role
    assert ok(user, project["id"], "SELECT count(*)::int FROM pg_stat_activity WHERE query LIKE '%pg_sleep(120)%' "
                                   "AND pid <> pg_backend_pid()")["results"][0]["rows"] == [[0]]
