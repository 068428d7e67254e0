"""Database changes as events (cdc.<OP>.<table> triggers) against a real
daemon and cluster: a committed change reaches the trigger's function with
old and new, a rolled-back one never does, conditions filter, one row's
changes arrive in commit order under concurrent writers, the capture is
removed with the last trigger, and the project's role can neither read nor
change the outbox."""

import json
import threading
import time

from conftest import assert_error

# Records every event it gets in the project's own database.
RECORD_JS = r"""
exports.handler = async (e, zmesh) => {
  await zmesh.db.query(
    'INSERT INTO seen (op, row_id, old, new, xid, truncated, event) VALUES ($1, $2, $3, $4, $5, $6, $7)',
    [e.operation, (e.new || e.old).id, e.old, e.new, e.xid, e.truncated === true, e]);
  return {ok: true};
};
"""

SETUP_SQL = """
CREATE TABLE orders (id int PRIMARY KEY, amount int NOT NULL, note text);
CREATE TABLE seen (n serial PRIMARY KEY, op text, row_id int, old jsonb, new jsonb, xid bigint,
                   truncated boolean, event jsonb, at timestamptz DEFAULT clock_timestamp());
ALTER TABLE orders OWNER TO {role};
ALTER TABLE seen OWNER TO {role};
ALTER SEQUENCE seen_n_seq OWNER TO {role};
"""


def make_project(zd, user, **fn):
    p = user.create_project()
    zd.sql(SETUP_SQL.replace("{role}", p["database"]), db=p["database"])
    f = user.deploy(p["id"], RECORD_JS, **fn)
    return p, f


def as_role(zd, p, sql):
    """Run SQL as the project's role (what its functions and users are)."""
    return zd.sql("SET ROLE %s; %s" % (p["database"], sql), db=p["database"])


def create_trigger(user, p, f, event_type, **body):
    r = user.post("/projects/%s/triggers" % p["id"], dict(event_type=event_type, function_id=f["id"], **body))
    assert r.status == 201, str(r)
    return r.json


def seen(zd, p, want, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        rows = zd.sql("SELECT op, row_id, old::text, new::text, truncated, event::text FROM seen ORDER BY n",
                      db=p["database"])
        if len(rows) >= want or time.monotonic() > deadline:
            return [{"op": r[0], "id": int(r[1]), "old": json.loads(r[2]) if r[2] else None,
                     "new": json.loads(r[3]) if r[3] else None, "truncated": r[4] == "t", "event": json.loads(r[5])}
                    for r in rows]
        time.sleep(0.05)


def test_a_committed_change_reaches_the_function_with_old_and_new(zd, user):
    p, f = make_project(zd, user)
    t = create_trigger(user, p, f, "cdc.*.orders")
    assert t["event_type"] == "cdc.*.orders"
    as_role(zd, p, "INSERT INTO orders VALUES (1, 50, 'a')")
    as_role(zd, p, "UPDATE orders SET amount = 75 WHERE id = 1")
    as_role(zd, p, "DELETE FROM orders WHERE id = 1")
    got = seen(zd, p, 3)
    assert [(g["op"], g["id"]) for g in got] == [("INSERT", 1), ("UPDATE", 1), ("DELETE", 1)], got
    ins, upd, dele = got
    assert ins["old"] is None and ins["new"] == {"id": 1, "amount": 50, "note": "a"}
    assert upd["old"] == {"id": 1, "amount": 50, "note": "a"} and upd["new"] == {"id": 1, "amount": 75, "note": "a"}
    assert dele["old"] == {"id": 1, "amount": 75, "note": "a"} and dele["new"] is None
    e = ins["event"]
    assert e["trigger"] == "database" and e["trigger_id"] == t["id"] and e["table"] == "orders"
    assert e["schema"] == "public" and e["operation"] == "INSERT" and isinstance(e["xid"], int)
    assert e["timestamp"].endswith("Z") and "truncated" not in e
    # The records say what ran them.
    rec = zd.sql("SELECT trigger, trigger_id, status FROM invocations WHERE function_id = '%s'" % f["id"])
    assert sorted(rec) == [["database", t["id"], "success"]] * 3, rec
    assert zd.sql("SELECT count(*) FROM zmesh_cdc.outbox", db=p["database"]) == [["0"]]


def test_a_rolled_back_change_emits_nothing_and_conditions_filter(zd, user):
    p, f = make_project(zd, user)
    create_trigger(user, p, f, "cdc.INSERT.public.orders",
                   conditions=[{"field": "new.amount", "op": "gt", "value": 100}])
    as_role(zd, p, "BEGIN; INSERT INTO orders VALUES (1, 500, 'rolled back'); ROLLBACK;")
    as_role(zd, p, "INSERT INTO orders VALUES (2, 50, 'small')")
    as_role(zd, p, "INSERT INTO orders VALUES (3, 150, 'large')")
    as_role(zd, p, "UPDATE orders SET amount = 999 WHERE id = 2")  # not an INSERT
    got = seen(zd, p, 1)
    time.sleep(1.5)  # a second poll: nothing else arrives
    got = seen(zd, p, 99, timeout=0)
    assert [(g["op"], g["id"]) for g in got] == [("INSERT", 3)], got


def test_one_rows_changes_arrive_in_commit_order_under_concurrent_writers(zd, user):
    p, f = make_project(zd, user)
    create_trigger(user, p, f, "cdc.*.orders")
    rows, updates = 6, 8

    def writer(i):
        as_role(zd, p, "INSERT INTO orders VALUES (%d, 0, 'w')" % i)
        for k in range(1, updates + 1):
            as_role(zd, p, "UPDATE orders SET amount = %d WHERE id = %d" % (k, i))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(rows)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    got = seen(zd, p, rows * (updates + 1), timeout=90)
    assert len(got) == rows * (updates + 1), len(got)
    for i in range(rows):
        mine = [g for g in got if g["id"] == i]
        assert mine[0]["op"] == "INSERT", mine
        assert [g["new"]["amount"] for g in mine] == list(range(updates + 1)), mine


def test_large_rows_carry_the_primary_key_only(zd, user):
    p, f = make_project(zd, user)
    create_trigger(user, p, f, "cdc.INSERT.orders")
    as_role(zd, p, "INSERT INTO orders VALUES (7, 1, repeat('x', 300000))")
    got = seen(zd, p, 1)
    assert got[0]["new"] == {"id": 7} and got[0]["truncated"] is True, got


def test_the_project_role_cannot_read_or_change_the_outbox(zd, user):
    p, f = make_project(zd, user)
    create_trigger(user, p, f, "cdc.INSERT.orders")
    for sql in ("SELECT * FROM zmesh_cdc.outbox", "DELETE FROM zmesh_cdc.outbox",
                "INSERT INTO zmesh_cdc.outbox (tbl_schema, tbl, op) VALUES ('public', 'orders', 'INSERT')",
                "DROP TABLE zmesh_cdc.outbox", "CREATE TABLE zmesh_cdc.x (a int)"):
        r = subprocess_sql(zd, p, sql)
        assert r.returncode != 0 and "permission denied" in r.stderr, (sql, r.stderr)


def subprocess_sql(zd, p, sql):
    import subprocess
    return subprocess.run(["/usr/bin/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", zd.pg_sock, "-U", "postgres",
                           "-d", p["database"], "-c", "SET ROLE %s; %s" % (p["database"], sql)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)


def test_bad_names_and_missing_tables_are_refused(zd, user):
    p, f = make_project(zd, user)
    for et, part in (("cdc.INSERT.nosuch", "no table public.nosuch"),
                     ("cdc.TRUNCATE.orders", "names no operation"),
                     ("cdc.INSERT.a.b.c", "more than a schema and a table"),
                     ("cdc.INSERT.zmesh_cdc.outbox", "capture's own schema"),
                     ("cdc.INSERT.pg_catalog.pg_class", "system schema"),
                     ("cdc.INSERT.bad-name", "names a table")):
        r = user.post("/projects/%s/triggers" % p["id"], {"event_type": et, "function_id": f["id"]})
        assert_error(r, 400, "INVALID_TRIGGER")
        assert part in r.json["error"]["message"], (et, r.json)
    r = user.post("/projects/%s/triggers" % p["id"],
                  {"event_type": "cdc.INSERT.orders", "function_id": f["id"], "config": {"x": 1}})
    assert_error(r, 400, "INVALID_TRIGGER")


def test_removing_the_last_trigger_removes_the_capture(zd, user):
    p, f = make_project(zd, user)
    a = create_trigger(user, p, f, "cdc.INSERT.orders")
    b = create_trigger(user, p, f, "cdc.DELETE.orders")
    capture = "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'zmesh\\_cdc\\_%'"
    # Updates row by row, inserts and deletes by statement.
    assert zd.sql(capture, db=p["database"]) == [["3"]]
    assert user.delete("/projects/%s/triggers/%s" % (p["id"], a["id"])).status == 200
    assert zd.sql(capture, db=p["database"]) == [["3"]]  # still wanted by b
    assert user.delete("/projects/%s/triggers/%s" % (p["id"], b["id"])).status == 200
    assert zd.sql(capture, db=p["database"]) == [["0"]]
    assert zd.sql("SELECT count(*) FROM pg_namespace WHERE nspname = 'zmesh_cdc'", db=p["database"]) == [["0"]]
    as_role(zd, p, "INSERT INTO orders VALUES (1, 1, 'after')")
    time.sleep(1.5)
    assert seen(zd, p, 99, timeout=0) == []


def test_a_statement_of_many_rows_and_a_table_without_a_primary_key(zd, user):
    p, f = make_project(zd, user)
    create_trigger(user, p, f, "cdc.*.orders")
    as_role(zd, p, "INSERT INTO orders SELECT g, g * 10, 'bulk' FROM generate_series(1, 40) g")
    as_role(zd, p, "UPDATE orders SET amount = amount + 1 WHERE id <= 40")
    as_role(zd, p, "DELETE FROM orders WHERE id <= 40")
    got = seen(zd, p, 120, timeout=90)
    assert len(got) == 120, len(got)
    for i in range(1, 41):
        mine = [g for g in got if g["id"] == i]
        assert [g["op"] for g in mine] == ["INSERT", "UPDATE", "DELETE"], mine
        assert mine[0]["new"] == {"id": i, "amount": i * 10, "note": "bulk"} and mine[0]["old"] is None
        assert mine[1]["old"]["amount"] == i * 10 and mine[1]["new"]["amount"] == i * 10 + 1
        assert mine[2]["old"]["amount"] == i * 10 + 1 and mine[2]["new"] is None

    # Without a primary key the table's changes are ordered as a whole.
    zd.sql("CREATE TABLE notes (id int, body text); ALTER TABLE notes OWNER TO %s" % p["database"], db=p["database"])
    create_trigger(user, p, f, "cdc.INSERT.notes")
    as_role(zd, p, "INSERT INTO notes VALUES (1001, 'a'), (1002, 'b')")
    got = seen(zd, p, 122)
    assert [g["id"] for g in got[120:]] == [1001, 1002], got[120:]
    assert got[120]["event"]["table"] == "notes"
