"""zmesh db sql|migrate|status end to end against a real zmeshd (test_cli.py's
fixtures: embedded PostgreSQL, temporary state): tables for people, the
server's JSON for scripts, SQL errors with their line and column, and
migrations applied in order, each once, each atomically, refused when their
names or contents would break that.

$ZMESH_CLI names the client, $ZMESHD the daemon; zmeshd needs root.
"""

import json
import os

from test_cli import Cli, daemon, homes, me, unique  # noqa: F401 (fixtures)


def project(c):
    """A project of its own for one test: --project SLUG."""
    p = c.json("projects", "create", unique("db"))
    return ["--project", p["slug"]]


def write_dir(c, name, files):
    d = os.path.join(c.src, name)
    os.mkdir(d)
    for fname, text in files.items():
        with open(os.path.join(d, fname), "w") as f:
            f.write(text)
    return d


def rows(c, p, text):
    out = c.json("db", "sql", text, *p)
    return out["results"][-1]["rows"]


def test_sql_prints_tables_and_json(me):
    p = project(me)
    r = me.ok("db", "sql", "CREATE TABLE t (id int, name text, meta jsonb); "
                           "INSERT INTO t VALUES (1, 'alpha', '{\"a\": 1}'), (2, NULL, NULL); "
                           "SELECT id, name, meta FROM t ORDER BY id", *p)
    lines = r.out.splitlines()
    assert lines[0] == "CREATE TABLE" and lines[2] == "INSERT 2", r
    assert lines[4].split() == ["id", "name", "meta"], r
    assert lines[5].split() == ["1", "alpha", '{"a":1}'] and lines[6].split() == ["2", "NULL", "NULL"], r
    assert lines[7] == "(2 rows)", r
    out = me.json("db", "sql", "SELECT count(*)::int AS n FROM t", *p)
    assert out["results"][0]["rows"] == [[2]] and out["results"][0]["columns"] == [{"name": "n", "type": "int4"}]
    # from stdin
    r = me.ok("db", "sql", "-", *p, stdin=b"SELECT name FROM t WHERE id = 1")
    assert "alpha" in r.out and "(1 row)" in r.out
    # more rows than are listed
    r = me.ok("db", "sql", "SELECT g FROM generate_series(1, 1500) g", *p)
    assert "(1500 rows, the first 1000 shown)" in r.out


def test_sql_error_says_where(me):
    p = project(me)
    r = me.run("db", "sql", "SELECT 1;\nSELECT nope FROM (SELECT 1) s", *p)
    assert r.rc == 1 and r.out == "", r
    assert "line 2, column 8" in r.err and "nope" in r.err and "SQLSTATE 42703" in r.err, r
    r = me.run("db", "sql", "", *p)
    assert r.rc == 2, r
    r = me.run("db", "sql", *p)
    assert r.rc == 2, r


def test_migrate_applies_each_file_once_in_numeric_order(me):
    p = project(me)
    d = write_dir(me, unique("mig"), {
        "2_create.sql": "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);\n",
        # 10 after 2, though "10" < "2" as text
        "10_seed.sql": "INSERT INTO notes (body) VALUES ('first');\n-- a comment at the end, no newline",
        "README.md": "not a migration",
    })
    r = me.ok("db", "status", d, *p)
    assert "pending" in r.out and "2 pending." in r.out, r
    r = me.ok("db", "migrate", d, *p)
    assert r.out.splitlines()[0].startswith("Applied 2_create.sql"), r
    assert r.out.splitlines()[1].startswith("Applied 10_seed.sql"), r
    assert rows(me, p, "SELECT body FROM notes") == [["first"]]
    r = me.ok("db", "migrate", d, *p)
    assert "Nothing to apply: 2 migrations already applied." in r.out, r
    assert rows(me, p, "SELECT count(*)::int FROM notes") == [[1]]
    recorded = rows(me, p, "SELECT version::int, name, length(checksum) FROM zmesh_migrations ORDER BY version")
    assert recorded == [[2, "2_create.sql", 64], [10, "10_seed.sql", 64]]

    with open(os.path.join(d, "11_more.sql"), "w") as f:
        f.write("ALTER TABLE notes ADD COLUMN tag text DEFAULT 'x';\n")
    st = me.json("db", "status", d, *p)["migrations"]
    assert [(m["version"], m["status"]) for m in st] == [(2, "applied"), (10, "applied"), (11, "pending")]
    out = me.json("db", "migrate", d, *p)
    assert out == {"applied": [{"version": 11, "name": "11_more.sql"}], "already_applied": 2}
    assert rows(me, p, "SELECT tag FROM notes") == [["x"]]

    # a file changed after it was applied is named, and nothing runs
    with open(os.path.join(d, "10_seed.sql"), "a") as f:
        f.write("\nINSERT INTO notes (body) VALUES ('again');\n")
    with open(os.path.join(d, "12_never.sql"), "w") as f:
        f.write("CREATE TABLE never (n int);\n")
    r = me.run("db", "migrate", d, *p)
    assert r.rc == 1 and "10_seed.sql was changed after it was applied" in r.err, r
    st = me.json("db", "status", d, *p)["migrations"]
    assert [(m["version"], m["status"]) for m in st] == [(2, "applied"), (10, "changed"), (11, "applied"),
                                                          (12, "pending")]
    assert rows(me, p, "SELECT to_regclass('never') IS NULL") == [[True]]
    # without DIR: what the database records
    r = me.ok("db", "status", *p)
    assert "2_create.sql" in r.out and "11_more.sql" in r.out and "12_never" not in r.out, r


def test_a_failing_migration_leaves_nothing(me):
    p = project(me)
    d = write_dir(me, unique("mig"), {
        "001_ok.sql": "CREATE TABLE a (n int);\n",
        "002_fails.sql": "CREATE TABLE b (n int);\nINSERT INTO b VALUES (1);\nSELECT 1/0;\n",
        "003_after.sql": "CREATE TABLE c (n int);\n",
    })
    syntax = write_dir(me, unique("mig"), {"001_syntax.sql": "CREATE TABLE s (n int);\n\nCREATE TABL t (n int);\n"})
    r = me.run("db", "migrate", syntax, *p)
    assert r.rc == 1 and "001_syntax.sql: line 3, column 8: syntax error" in r.err, r
    r = me.run("db", "migrate", d, *p)
    assert r.rc == 1, r
    assert "002_fails.sql: statement 3: division by zero" in r.err, r
    assert "was not applied" in r.err and "1 applied before it" in r.err, r
    assert rows(me, p, "SELECT to_regclass('a') IS NOT NULL, to_regclass('b') IS NULL, "
                       "to_regclass('c') IS NULL") == [[True, True, True]]
    st = me.json("db", "status", d, *p)["migrations"]
    assert [(m["version"], m["status"]) for m in st] == [(1, "applied"), (2, "pending"), (3, "pending")]


def test_migrate_refuses_bad_files_before_sending_anything(me):
    p = project(me)
    cases = {
        "name": ({"001_ok.sql": "SELECT 1;", "init.sql": "SELECT 1;"}, "init.sql: not a migration's name"),
        "name_chars": ({"001_bad name.sql": "SELECT 1;"}, "not a migration's name"),
        "duplicate": ({"1_a.sql": "SELECT 1;", "001_b.sql": "SELECT 1;"}, "have the same number 1"),
        "commit": ({"001_a.sql": "CREATE TABLE x (n int);\ncommit;\n"}, "line 2: COMMIT: a migration must not"),
        "begin": ({"001_a.sql": "BEGIN;\nCREATE TABLE x (n int);\n"}, "line 1: BEGIN"),
        "start": ({"001_a.sql": "/* c */ START TRANSACTION;"}, "START"),
        "unterminated": ({"001_a.sql": "SELECT 'oops;\n"}, "line 1: a string, quoted name or comment is never"),
        "comment": ({"001_a.sql": "SELECT 1; /* never closed\n"}, "never closed"),
    }
    for label, (files, message) in cases.items():
        d = write_dir(me, unique(label), files)
        r = me.run("db", "migrate", d, *p)
        assert r.rc == 1 and message in r.err, (label, r)
    # none of it reached the database: not even the migrations table
    assert rows(me, p, "SELECT to_regclass('zmesh_migrations') IS NULL") == [[True]]
    # transaction control words inside strings, comments, dollar quotes and function bodies are fine
    d = write_dir(me, unique("fine"), {"001_fine.sql": """
        -- COMMIT; in a comment
        CREATE TABLE log (msg text DEFAULT 'BEGIN; COMMIT;');
        CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN
          NEW.msg := 'rollback;';
          RETURN NEW;
        END;
        $body$;
        CREATE FUNCTION one() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END;
        INSERT INTO log VALUES (E'it\\'s; END;');
    """})
    r = me.ok("db", "migrate", d, *p)
    assert "Applied 001_fine.sql" in r.out, r
    assert rows(me, p, "SELECT one(), (SELECT msg FROM log)") == [[1, "it's; END;"]]


def test_db_commands_need_a_project(daemon, homes):
    c = Cli(daemon, homes)
    r = c.run("db", "sql", "SELECT 1")
    assert r.rc == 1 and "not logged in" in r.err, r
    r = c.run("db", "frobnicate")
    assert r.rc == 2, r
    r = c.ok("db", "--help")
    assert "migrate DIR" in r.out
    r = c.ok("--help")
    assert "db sql SQL" in r.out and "db migrate DIR" in r.out


def test_json_output_of_status_is_json(me):
    p = project(me)
    out = me.json("db", "status", *p)
    assert out == {"migrations": []}
    json.dumps(out)
