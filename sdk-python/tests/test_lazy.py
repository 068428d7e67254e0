"""A function that never queries neither imports the driver nor connects."""

import time


def sessions(pg):
    """Sessions ever opened to the project database, from the server's statistics."""
    conn = pg.admin()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", [pg.dbname])
            return cur.fetchone()[0]
    finally:
        conn.close()


def wait_for_sessions(pg, at_least, seconds=10):
    deadline = time.monotonic() + seconds
    while True:
        n = sessions(pg)
        if n >= at_least or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


UNUSED = (
    "import sys\n"
    "def handler(payload, zmesh):\n"
    "    db = zmesh.db\n"
    "    return ['psycopg2' in sys.modules, db.connected, repr(db)]\n"
)
USED = "def handler(payload, zmesh):\n    return zmesh.db.query_one('SELECT 1 AS one')\n"


def test_no_connection_unless_used(invoke, pg):
    before = sessions(pg)
    assert invoke(UNUSED, dsn=pg.dsn()).result == [False, False, "<zmesh.db not connected>"]
    assert invoke(USED, dsn=pg.dsn()).result == {"one": 1}
    # The second invocation's session shows up; had the first connected, there would be two.
    assert wait_for_sessions(pg, before + 1) == before + 1
    time.sleep(0.2)
    assert sessions(pg) == before + 1


def test_unreachable_dsn_is_harmless_until_used(invoke, tmp_path):
    dsn = f"postgresql://nobody:pw@/nodb?host={tmp_path}/no-such-socket-dir"
    assert invoke(UNUSED, dsn=dsn).result == [False, False, "<zmesh.db not connected>"]
    err = invoke(USED, dsn=dsn).error
    assert err["name"] == "DatabaseError"
    assert "no-such-socket-dir" in err["message"]


def test_driver_loaded_and_connected_on_first_query(invoke, pg):
    code = (
        "import sys\n"
        "def handler(payload, zmesh):\n"
        "    before = ['psycopg2' in sys.modules, zmesh.db.connected]\n"
        "    zmesh.db.query('SELECT 1')\n"
        "    return before + ['psycopg2' in sys.modules, zmesh.db.connected]\n"
    )
    assert invoke(code, dsn=pg.dsn()).result == [False, False, True, True]
