"""zmesh.db against a real PostgreSQL, through the wrapper as a function would use it."""

import textwrap
import time

import pytest


def src(code):
    return textwrap.dedent(code).lstrip("\n")


@pytest.fixture
def run_db(invoke, pg):
    """Runs `code` with the project DSN; `T` in the code is the test's table name."""

    def _run(code, payload=None, **fields):
        fields.setdefault("dsn", pg.dsn())
        return invoke(src(code), payload, **fields)

    return _run


@pytest.fixture
def items(pg, table):
    pg.execute(f'CREATE TABLE "{table}" (id serial PRIMARY KEY, name text NOT NULL UNIQUE, qty int, note text)')
    pg.execute(f"""INSERT INTO "{table}" (name, qty, note) VALUES ('apple', 3, NULL), ('pear', 5, 'ripe'), ('plum', 0, NULL)""")
    return table


def rows_of(pg, sql, params=None):
    return pg.execute(sql, params)


def test_query_with_placeholders(run_db, items):
    run = run_db(f"""
        def handler(payload, zmesh):
            return zmesh.db.query('SELECT name, qty FROM "{items}" WHERE qty > %s ORDER BY name', [payload])
    """, 1)
    assert run.result == [{"name": "apple", "qty": 3}, {"name": "pear", "qty": 5}]


def test_query_with_named_placeholders_and_literal_percent(run_db, items):
    run = run_db(f"""
        def handler(payload, zmesh):
            a = zmesh.db.query('SELECT name FROM "{items}" WHERE name LIKE %(p)s AND qty >= %(q)s', {{"p": "p%", "q": 1}})
            b = zmesh.db.query("SELECT '100%' AS raw")
            c = zmesh.db.query("SELECT '100%%' AS escaped, %s AS v", ["x"])
            return [a, b, c]
    """)
    assert run.result == [[{"name": "pear"}], [{"raw": "100%"}], [{"escaped": "100%", "v": "x"}]]


def test_query_without_rows_and_empty_result(run_db, items, pg):
    run = run_db(f"""
        def handler(payload, zmesh):
            return [zmesh.db.query('UPDATE "{items}" SET qty = qty + 1 WHERE name = %s', ["plum"]),
                    zmesh.db.query('SELECT * FROM "{items}" WHERE false')]
    """)
    assert run.result == [[], []]
    assert rows_of(pg, f'SELECT qty FROM "{items}" WHERE name = %s', ["plum"]) == [(1,)]


def test_values_are_bound_not_pasted(run_db, items, pg):
    hostile = "x'); DROP TABLE \"" + items + "\"; --"
    run = run_db(f"""
        def handler(payload, zmesh):
            zmesh.db.query('INSERT INTO "{items}" (name) VALUES (%s)', [payload])
            return zmesh.db.query_one('SELECT name FROM "{items}" WHERE name = %s', [payload])
    """, hostile)
    assert run.result == {"name": hostile}
    assert rows_of(pg, f'SELECT count(*) FROM "{items}"') == [(4,)]


def test_query_one(run_db, items):
    run = run_db(f"""
        def handler(payload, zmesh):
            return [zmesh.db.query_one('SELECT name, qty FROM "{items}" WHERE name = %s', ["pear"]),
                    zmesh.db.query_one('SELECT name FROM "{items}" WHERE name = %s', ["kiwi"]),
                    zmesh.db.query_one('SELECT name FROM "{items}" ORDER BY name')]
    """)
    assert run.result == [{"name": "pear", "qty": 5}, None, {"name": "apple"}]


def test_insert_returns_the_stored_row(run_db, items, pg):
    run = run_db(f"""
        def handler(payload, zmesh):
            return zmesh.db.insert("{items}", payload)
    """, {"name": "kiwi", "qty": 9})
    row = run.result
    assert row["name"] == "kiwi" and row["qty"] == 9 and row["note"] is None
    assert isinstance(row["id"], int) and row["id"] > 3
    assert rows_of(pg, f'SELECT name, qty FROM "{items}" WHERE id = %s', [row["id"]]) == [("kiwi", 9)]


def test_insert_default_values(run_db, pg, table):
    pg.execute(f'CREATE TABLE "{table}" (id serial PRIMARY KEY, created text DEFAULT \'now\')')
    run = run_db(f'def handler(p, zmesh):\n    return zmesh.db.insert("{table}", {{}})\n')
    assert run.result == {"id": 1, "created": "now"}


def test_select(run_db, items):
    run = run_db(f"""
        def handler(payload, zmesh):
            db = zmesh.db
            every = sorted(r["name"] for r in db.select("{items}"))
            by_sql = db.select("{items}", "qty >= %s AND name <> %s", [3, "pear"])
            by_dict = db.select("{items}", {{"name": "pear", "qty": 5}})
            by_null = sorted(r["name"] for r in db.select("{items}", {{"note": None}}))
            literal = db.select("{items}", "name LIKE 'p%'")
            return [every, [r["name"] for r in by_sql], [r["name"] for r in by_dict], by_null,
                    sorted(r["name"] for r in literal)]
    """)
    assert run.result == [["apple", "pear", "plum"], ["apple"], ["pear"], ["apple", "plum"], ["pear", "plum"]]


def test_update_returns_the_updated_rows(run_db, items, pg):
    run = run_db(f"""
        def handler(payload, zmesh):
            db = zmesh.db
            a = db.update("{items}", {{"qty": 10, "note": "restocked"}}, "name = %s", ["plum"])
            b = db.update("{items}", {{"qty": 0}}, "qty > %(min)s", {{"min": 4}})
            c = db.update("{items}", {{"note": "x"}}, {{"name": "nothing"}})
            return [[(r["name"], r["qty"], r["note"]) for r in a], [(r["name"], r["qty"]) for r in b], c]
    """)
    a, b, c = run.result
    assert a == [["plum", 10, "restocked"]]
    assert sorted(map(tuple, b)) == [("pear", 0), ("plum", 0)]
    assert c == []
    assert rows_of(pg, f'SELECT name, qty, note FROM "{items}" ORDER BY name') == [
        ("apple", 3, None), ("pear", 0, "ripe"), ("plum", 0, "restocked")]


def test_update_and_remove_need_a_where_clause(run_db, items, pg):
    run = run_db(f"""
        def handler(payload, zmesh):
            out = []
            for call in (lambda: zmesh.db.update("{items}", {{"qty": 1}}, None),
                         lambda: zmesh.db.remove("{items}", None),
                         lambda: zmesh.db.remove("{items}", {{}}),
                         lambda: zmesh.db.update("{items}", {{}}, "true")):
                try:
                    call()
                    out.append("no error")
                except ValueError as e:
                    out.append(str(e))
            return out
    """)
    assert all("no error" != m for m in run.result), run.result
    assert "where clause is required" in run.result[0]
    assert rows_of(pg, f'SELECT count(*) FROM "{items}" WHERE qty = 1') == [(0,)]
    assert rows_of(pg, f'SELECT count(*) FROM "{items}"') == [(3,)]


def test_remove_returns_the_count(run_db, items, pg):
    run = run_db(f"""
        def handler(payload, zmesh):
            return [zmesh.db.remove("{items}", "qty < %s", [4]), zmesh.db.remove("{items}", {{"name": "kiwi"}}),
                    zmesh.db.remove("{items}", "true")]
    """)
    assert run.result == [2, 0, 1]
    assert rows_of(pg, f'SELECT count(*) FROM "{items}"') == [(0,)]


def test_identifier_quoting(run_db, pg, table):
    pg.execute(f'CREATE TABLE "{table}" (id serial PRIMARY KEY, "weird""name" int, "100%" text, "Mixed Case" text)')
    run = run_db(f"""
        def handler(payload, zmesh):
            db = zmesh.db
            row = db.insert("{table}", {{'weird"name': 1, "100%": "%s", "Mixed Case": "ok"}})
            upd = db.update("{table}", {{'weird"name': 2}}, {{"100%": "%s"}})
            sel = db.select("{table}", {{'weird"name': 2, "Mixed Case": "ok"}})
            return [row, upd, sel]
    """)
    row, upd, sel = run.result
    assert row == {"id": 1, 'weird"name': 1, "100%": "%s", "Mixed Case": "ok"}
    assert upd == sel == [{"id": 1, 'weird"name': 2, "100%": "%s", "Mixed Case": "ok"}]


def test_injection_through_table_and_column_names(run_db, items, pg):
    run = run_db(f"""
        def handler(payload, zmesh):
            out = []
            attempts = [
                lambda: zmesh.db.insert('{items}" (name) VALUES (\\'x\\'); DROP TABLE "{items}"; --', {{"name": "y"}}),
                lambda: zmesh.db.select('{items}"; DROP TABLE "{items}"; --'),
                lambda: zmesh.db.insert("{items}", {{'name") VALUES (\\'a\\'); DROP TABLE "{items}"; --': 1}}),
                lambda: zmesh.db.remove("{items}", {{'name" = name OR "id': 1}}),
            ]
            for attempt in attempts:
                try:
                    attempt()
                    out.append("succeeded")
                except zmesh.DatabaseError as e:
                    out.append(e.sqlstate)
            return out
    """)
    # undefined_table, undefined_table, undefined_column, undefined_column
    assert run.result == ["42P01", "42P01", "42703", "42703"]
    assert rows_of(pg, f'SELECT count(*) FROM "{items}"') == [(3,)]


def test_schema_qualified_table(run_db, pg, table):
    pg.execute(f'CREATE SCHEMA IF NOT EXISTS "s p"; CREATE TABLE "s p"."{table}" (v int)')
    run = run_db(f"""
        def handler(payload, zmesh):
            zmesh.db.insert(("s p", "{table}"), {{"v": 1}})
            return zmesh.db.select(["s p", "{table}"])
    """)
    assert run.result == [{"v": 1}]
    pg.execute(f'DROP TABLE "s p"."{table}"')


def test_bad_identifiers_and_arguments_are_refused(run_db, items):
    run = run_db(f"""
        def handler(payload, zmesh):
            out = []
            for call in (lambda: zmesh.db.select("x" * 64),
                         lambda: zmesh.db.select("a\\0b"),
                         lambda: zmesh.db.select(""),
                         lambda: zmesh.db.select(42),
                         lambda: zmesh.db.insert("{items}", [("name", "x")]),
                         lambda: zmesh.db.insert("{items}", {{1: "x"}}),
                         lambda: zmesh.db.query("SELECT %s", "abc"),
                         lambda: zmesh.db.query(b"SELECT 1"),
                         lambda: zmesh.db.select("{items}", {{"id": 1}}, [1]),
                         lambda: zmesh.db.select(("a", "b", "c"))):
                try:
                    call()
                    out.append("accepted")
                except (TypeError, ValueError) as e:
                    out.append(type(e).__name__)
            return out
    """)
    assert run.result == ["ValueError", "ValueError", "ValueError", "TypeError", "TypeError",
                          "TypeError", "TypeError", "TypeError", "ValueError", "ValueError"]


def test_uncaught_database_error(run_db):
    run = run_db("""
        def handler(payload, zmesh):
            zmesh.db.query("SELEC 1")
    """)
    err = run.error
    assert err["name"] == "DatabaseError"
    assert err["message"] == 'syntax error at or near "SELEC"'
    assert 'File "function.py", line 2, in handler' in err["stack"]
    assert 'zmesh.DatabaseError: syntax error at or near "SELEC"' in err["stack"]
    assert "zmesh/" not in err["stack"] and "psycopg2" not in err["stack"]


def test_caught_database_error_fields(run_db, items):
    run = run_db(f"""
        import zmesh as sdk
        def handler(payload, zmesh):
            try:
                zmesh.db.insert("{items}", {{"name": "apple"}})
            except sdk.DatabaseError as e:
                return [type(e).__name__, e.sqlstate, e.message, e.detail, str(e) == e.message]
    """)
    name, sqlstate, message, detail, same = run.result
    assert name == "DatabaseError" and sqlstate == "23505" and same
    assert "duplicate key value violates unique constraint" in message
    assert detail == "Key (name)=(apple) already exists."


def test_connection_usable_after_an_error(run_db, items):
    run = run_db(f"""
        def handler(payload, zmesh):
            try:
                zmesh.db.query("SELECT * FROM no_such_table")
            except zmesh.DatabaseError as e:
                first = e.sqlstate
            return [first, zmesh.db.query_one('SELECT count(*) AS n FROM "{items}"')["n"]]
    """)
    assert run.result == ["42P01", 3]


def test_statements_autocommit_outside_transactions(run_db, items, pg):
    run = run_db(f"""
        def handler(payload, zmesh):
            zmesh.db.insert("{items}", {{"name": "kept"}})
            raise RuntimeError("after the insert")
    """)
    assert run.error["name"] == "RuntimeError"
    assert rows_of(pg, f'SELECT count(*) FROM "{items}" WHERE name = %s', ["kept"]) == [(1,)]


def test_transaction_commits(run_db, items, pg):
    run = run_db(f"""
        def handler(payload, zmesh):
            with zmesh.db.transaction() as db:
                db.insert("{items}", {{"name": "a1"}})
                db.update("{items}", {{"qty": 100}}, {{"name": "a1"}})
                inside = zmesh.db.query_one("SELECT now() = statement_timestamp() AS single")
            return inside
    """)
    # now() is fixed at BEGIN, so it differs from statement_timestamp() inside the block.
    assert run.result == {"single": False}
    assert rows_of(pg, f'SELECT qty FROM "{items}" WHERE name = %s', ["a1"]) == [(100,)]


def test_transaction_rolls_back_on_exception(run_db, items, pg):
    run = run_db(f"""
        def handler(payload, zmesh):
            try:
                with zmesh.db.transaction():
                    zmesh.db.insert("{items}", {{"name": "ghost"}})
                    zmesh.db.remove("{items}", "true")
                    raise ValueError("abort")
            except ValueError:
                pass
            return zmesh.db.query_one('SELECT count(*) AS n FROM "{items}"')["n"]
    """)
    assert run.result == 3
    assert rows_of(pg, f'SELECT count(*) FROM "{items}" WHERE name = %s', ["ghost"]) == [(0,)]


def test_transaction_with_a_function(run_db, items, pg):
    run = run_db(f"""
        def handler(payload, zmesh):
            def move(db):
                db.update("{items}", {{"qty": 2}}, {{"name": "apple"}})
                db.update("{items}", {{"qty": 6}}, {{"name": "pear"}})
                return "moved"
            def fail():
                zmesh.db.remove("{items}", "true")
                raise KeyError("nope")
            first = zmesh.db.transaction(move)
            try:
                zmesh.db.transaction(fail)
            except KeyError:
                pass
            return first
    """)
    assert run.result == "moved"
    assert rows_of(pg, f'SELECT name, qty FROM "{items}" ORDER BY name') == [("apple", 2), ("pear", 6), ("plum", 0)]


def test_nested_transaction_is_a_savepoint(run_db, items, pg):
    run = run_db(f"""
        def handler(payload, zmesh):
            with zmesh.db.transaction():
                zmesh.db.insert("{items}", {{"name": "outer"}})
                try:
                    with zmesh.db.transaction():
                        zmesh.db.insert("{items}", {{"name": "inner"}})
                        raise ValueError()
                except ValueError:
                    pass
                with zmesh.db.transaction():
                    zmesh.db.insert("{items}", {{"name": "inner2"}})
    """)
    assert run.result is None
    assert rows_of(pg, f'SELECT name FROM "{items}" WHERE id > 3 ORDER BY id') == [("outer",), ("inner2",)]


def test_async_transaction(run_db, items, pg):
    run = run_db(f"""
        import asyncio
        async def handler(payload, zmesh):
            async with zmesh.db.transaction():
                zmesh.db.insert("{items}", {{"name": "async"}})
                await asyncio.sleep(0)
            try:
                async with zmesh.db.transaction():
                    zmesh.db.insert("{items}", {{"name": "async-rolled-back"}})
                    raise RuntimeError()
            except RuntimeError:
                pass
            return zmesh.db.select("{items}", "name LIKE 'async%'")[0]["name"]
    """)
    assert run.result == "async"


def test_commit_of_an_aborted_transaction_is_an_error(run_db, items, pg):
    run = run_db(f"""
        def handler(payload, zmesh):
            with zmesh.db.transaction():
                zmesh.db.insert("{items}", {{"name": "lost"}})
                try:
                    zmesh.db.insert("{items}", {{"name": "apple"}})
                except zmesh.DatabaseError:
                    pass
    """)
    err = run.error
    assert err["name"] == "DatabaseError" and "rolled back" in err["message"]
    assert rows_of(pg, f'SELECT count(*) FROM "{items}" WHERE name = %s', ["lost"]) == [(0,)]


def test_connection_refused_for_a_forbidden_database(run_db, pg):
    run = run_db("""
        def handler(payload, zmesh):
            try:
                zmesh.db.query("SELECT 1")
            except zmesh.DatabaseError as e:
                return [e.sqlstate, e.message]
    """, dsn=pg.dsn(dbname=pg.forbidden_db))
    sqlstate, message = run.result
    assert sqlstate == "08001"
    assert "permission denied for database" in message and pg.forbidden_db in message
    assert pg.password not in run.stdout + run.stderr


def test_wrong_password_is_not_echoed(run_db, pg):
    run = run_db('def handler(p, zmesh):\n    zmesh.db.query("SELECT 1")\n', dsn=pg.dsn(password="Wr0ng%pw"))
    err = run.error
    assert err["name"] == "DatabaseError"
    assert "password authentication failed" in err["message"]
    assert "Wr0ng" not in run.stdout


def test_malformed_dsn_does_not_leak_the_password(run_db, pg):
    dsn = f"postgresql://{pg.user}:Secr3t%zz@/{pg.dbname}?host={pg.sock}"
    err = run_db('def handler(p, zmesh):\n    zmesh.db.query("SELECT 1")\n', dsn=dsn).error
    assert err["name"] == "DatabaseError" and "invalid" in err["message"]
    assert "Secr3t" not in err["message"] and "Secr3t" not in err["stack"]


def test_no_dsn_means_no_database(run_db):
    err = run_db('def handler(p, zmesh):\n    return zmesh.db.query("SELECT 1")\n', dsn="").error
    assert err["name"] == "DatabaseError" and "no database" in err["message"]


def test_statement_timeout_follows_the_deadline(run_db):
    deadline = int(time.time() * 1000) + 2_500
    run = run_db("""
        def handler(payload, zmesh):
            try:
                zmesh.db.query("SELECT pg_sleep(20)")
            except zmesh.DatabaseError as e:
                return [e.sqlstate, zmesh.time_left_ms() < 1500]
    """, deadline_ms=deadline, timeout=15)
    assert run.result == ["57014", True]


def test_session_settings_are_what_the_type_mapping_expects(run_db):
    run = run_db("""
        def handler(payload, zmesh):
            return zmesh.db.query_one("SELECT current_setting('DateStyle') AS ds, current_setting('TimeZone') AS tz,"
                                      " current_setting('IntervalStyle') AS iv, current_user AS who,"
                                      " current_setting('application_name') AS app")
    """)
    row = run.result
    assert row["ds"].startswith("ISO") and row["tz"] == "UTC" and row["iv"] == "iso_8601"
    assert row["app"] == "zmesh-python" and row["who"].startswith("fn_")


def test_dict_and_list_parameters(run_db, pg, table):
    pg.execute(f'CREATE TABLE "{table}" (doc jsonb, tags text[])')
    run = run_db(f"""
        def handler(payload, zmesh):
            return zmesh.db.insert("{table}", {{"doc": {{"a": [1, {{"b": None}}]}}, "tags": ["x", "y'z"]}})
    """)
    assert run.result == {"doc": {"a": [1, {"b": None}]}, "tags": ["x", "y'z"]}
