"""zmesh.db: the project database through psycopg2.

Nothing here runs until a handler touches zmesh.db, and psycopg2 itself is
imported and the connection opened only at the first statement, so a
function that never queries pays neither.

Statements run in autocommit mode, one transaction each, except inside
db.transaction(). Values are always bound parameters (%s placeholders, or
%(name)s with a dict); table and column names are quoted as identifiers by
libpq (PQescapeIdentifier), never pasted in.
"""

import time

from zmesh import DatabaseError

# PostgreSQL silently truncates longer identifiers, which would address a
# different object than the caller named.
MAX_IDENTIFIER_BYTES = 63

# Fixed session settings the type mapping in _pgtypes relies on. Set with
# one statement after connecting, not as startup options: pgbouncer, which
# sandboxes reach the database through, passes no startup options on (its
# server connections are shared), and a pooled session starts from the
# server's defaults after DISCARD ALL.
SESSION_SETTINGS = "SET DateStyle=ISO; SET TimeZone=UTC; SET IntervalStyle=iso_8601; SET bytea_output=hex"

_INT_MAX = 2**31 - 1

# A session waits in the node's pgbouncer while every connection its
# project may hold is in use; it gives up this long before the deadline so
# that the function, not the sandbox's kill, reports why.
POOL_MARGIN_MS = 200
POOL_BUSY_MESSAGE = (
    "no database connection became free before the invocation's deadline: every connection this project "
    "may hold at once (its tier's db_connections) stayed in use")


class _PoolBusy(Exception):
    pass


def _waiter(until):
    """A psycopg2 wait callback that gives up at until (time.monotonic())."""
    import select

    import psycopg2.extensions as ext

    def wait(conn):
        while True:
            state = conn.poll()
            if state == ext.POLL_OK:
                return
            left = until - time.monotonic()
            if left <= 0:
                raise _PoolBusy()
            if state == ext.POLL_READ:
                select.select([conn.fileno()], [], [], left)
            elif state == ext.POLL_WRITE:
                select.select([], [conn.fileno()], [], left)
            else:
                raise ext.OperationalError("bad state from poll: %r" % state)

    return wait


class Database:
    """The handler's view of its database: zmesh.db."""

    def __init__(self, dsn, deadline_ms):
        self._dsn = dsn
        self._deadline_ms = deadline_ms
        self._conn = None
        self._pg = None
        self._depth = 0

    def __repr__(self):
        state = "connected" if self._conn is not None else "not connected"
        return f"<zmesh.db {state}>"

    @property
    def connected(self):
        """True once a statement has opened the connection."""
        return self._conn is not None and not self._conn.closed

    # -- connection -------------------------------------------------------

    def _connection(self):
        if self._conn is not None:
            if self._conn.closed:
                raise DatabaseError("the database connection was lost", "08006")
            return self._conn
        if not self._dsn:
            raise DatabaseError("this function has no database configured", "08001")
        import psycopg2
        import psycopg2.extensions
        from psycopg2._json import Json

        from zmesh import _pgtypes

        # A dict parameter is almost always meant for a json/jsonb column.
        psycopg2.extensions.register_adapter(dict, Json)
        self._pg = psycopg2
        # Connecting and the first statement (where a pooled session waits
        # for a server connection) are bounded by the deadline: psycopg2
        # runs them through a wait callback while it is set.
        until = time.monotonic() + (self._deadline_ms - POOL_MARGIN_MS) / 1000.0 - time.time()
        psycopg2.extensions.set_wait_callback(_waiter(until))
        conn = None
        try:
            conn = psycopg2.connect(self._dsn, **self._connect_options())
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(self._session_setup())
        except _PoolBusy:
            if conn is not None:
                conn.close()
            raise DatabaseError(POOL_BUSY_MESSAGE, "53300") from None
        except psycopg2.Error as e:
            if conn is not None:
                conn.close()
            raise DatabaseError(_redact(_clean(str(e)), self._dsn), e.pgcode or "08001") from None
        finally:
            psycopg2.extensions.set_wait_callback(None)
        _pgtypes.register(conn)
        self._conn = conn
        return conn

    def _session_setup(self):
        setup = SESSION_SETTINGS
        left = self._deadline_ms - int(time.time() * 1000)
        if left > 0:
            # The sandbox is killed at the deadline but its backend would run on;
            # the server stops the statement at the same moment instead.
            setup += f"; SET statement_timeout={min(left, _INT_MAX)}"
        return setup

    def _connect_options(self):
        left = self._deadline_ms - int(time.time() * 1000)
        return {
            "application_name": "zmesh-python",
            "connect_timeout": max(2, min(30, left // 1000)),
        }

    def close(self):
        """Closes the connection; an open transaction is rolled back by the server."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _error(self, e):
        sqlstate = e.pgcode
        diag = e.diag
        message = diag.message_primary or _clean(str(e))
        if sqlstate is None and self._conn is not None and self._conn.closed:
            sqlstate = "08006"
        return DatabaseError(message, sqlstate, diag.message_detail, diag.message_hint)

    def _execute(self, query, params, rows=True):
        """Runs one statement; returns (rows as dicts, rowcount)."""
        conn = self._connection()
        pg = self._pg
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                if not rows or cur.description is None:
                    return [], cur.rowcount
                names = [c.name for c in cur.description]
                return [dict(zip(names, r)) for r in cur.fetchall()], cur.rowcount
        except pg.Error as e:
            raise self._error(e) from None

    def _ident(self, name, what="column"):
        if not isinstance(name, str):
            raise TypeError(f"{what} name must be a string, not {type(name).__name__}")
        if not name or "\0" in name:
            raise ValueError(f"{what} name must be non-empty and free of NUL characters")
        if len(name.encode("utf-8", "surrogatepass")) > MAX_IDENTIFIER_BYTES:
            raise ValueError(f"{what} name is longer than {MAX_IDENTIFIER_BYTES} bytes: {name[:80]!r}")
        from psycopg2 import sql

        quoted = sql.Identifier(name).as_string(self._connection())
        # The statement goes through psycopg2's %-formatting; a % inside a
        # quoted name must not be read as a placeholder.
        return quoted.replace("%", "%%")

    def _table(self, table):
        """A table name, or a (schema, table) pair."""
        if isinstance(table, (tuple, list)):
            if len(table) != 2:
                raise ValueError("a qualified table name is a (schema, table) pair")
            return self._ident(table[0], "schema") + "." + self._ident(table[1], "table")
        return self._ident(table, "table")

    # -- the SDK -----------------------------------------------------------

    def query(self, sql, params=None):
        """Runs `sql` with %s placeholders bound to `params`; returns the rows as dicts.

        Without params the text is sent as is; with params, a literal % is written %%.
        A statement that returns no rows gives [].
        """
        _check_sql(sql)
        return self._execute(sql, _check_params(params))[0]

    def query_one(self, sql, params=None):
        """Like query(), but returns the first row, or None when there is none."""
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def insert(self, table, data):
        """Inserts one row from a {column: value} dict; returns the row as stored."""
        cols, values = self._columns(data, allow_empty=True)
        t = self._table(table)
        if cols:
            placeholders = ", ".join(["%s"] * len(cols))
            q = f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({placeholders}) RETURNING *"
        else:
            q = f"INSERT INTO {t} DEFAULT VALUES RETURNING *"
        rows = self._execute(q, values)[0]
        return rows[0] if rows else None

    def select(self, table, where=None, params=None):
        """Returns the rows of `table` matching `where` (every row when None).

        `where` is either SQL with %s placeholders bound to `params`, or a
        {column: value} dict of equalities (None meaning IS NULL).
        """
        clause, args = self._where(where, params, required=False)
        return self._execute(f"SELECT * FROM {self._table(table)}{clause}", args)[0]

    def update(self, table, data, where, params=None):
        """Sets the columns in `data` on the rows matching `where`; returns them as updated.

        `where` is required (pass "true" to mean every row); same forms as select().
        """
        cols, values = self._columns(data, allow_empty=False)
        clause, args = self._where(where, params, required=True)
        if isinstance(args, dict):
            named = dict(args)
            sets = []
            for i, (col, value) in enumerate(zip(cols, values)):
                key = f"zmesh_set_{i}"
                while key in named:
                    key = "_" + key
                named[key] = value
                sets.append(f"{col} = %({key})s")
            args = named
        else:
            sets = [f"{col} = %s" for col in cols]
            args = list(values) + list(args)
        q = f"UPDATE {self._table(table)} SET {', '.join(sets)}{clause} RETURNING *"
        return self._execute(q, args)[0]

    def remove(self, table, where, params=None):
        """Deletes the rows matching `where` (required; "true" for every row); returns how many."""
        clause, args = self._where(where, params, required=True)
        return self._execute(f"DELETE FROM {self._table(table)}{clause}", args, rows=False)[1]

    def transaction(self, fn=None):
        """Groups statements into one transaction.

            with zmesh.db.transaction():        # or: async with
                zmesh.db.insert(...)
                zmesh.db.update(...)

        commits when the block ends normally and rolls back when it raises.
        transaction(fn) runs fn (given zmesh.db if it takes an argument) the
        same way and returns its result. Nested transactions are savepoints.
        """
        tx = _Transaction(self)
        if fn is None:
            return tx
        if not callable(fn):
            raise TypeError("transaction() takes a function or nothing")
        from zmesh._runner import _arity

        with tx:
            result = fn(self) if _arity(fn) else fn()
            if hasattr(type(result), "__await__"):
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                raise TypeError("transaction(fn) cannot run a coroutine; use `async with zmesh.db.transaction():`")
            return result

    # -- helpers -----------------------------------------------------------

    def _columns(self, data, allow_empty):
        if not isinstance(data, dict):
            raise TypeError(f"row data must be a dict of column: value, not {type(data).__name__}")
        if not data and not allow_empty:
            raise ValueError("row data is empty: nothing to set")
        return [self._ident(c) for c in data], list(data.values())

    def _where(self, where, params, required):
        """Returns (" WHERE ..." or "", parameters) ready for %-formatting."""
        if where is None:
            if required:
                raise ValueError('a where clause is required; pass "true" to mean every row')
            if params:
                raise ValueError("params given without a where clause")
            return "", []
        if isinstance(where, dict):
            if params is not None:
                raise ValueError("params cannot be combined with a dict where clause")
            if not where:
                if required:
                    raise ValueError('an empty where dict would match every row; pass "true" to mean that')
                return "", []
            parts, args = [], []
            for col, value in where.items():
                if value is None:
                    parts.append(f"{self._ident(col)} IS NULL")
                else:
                    parts.append(f"{self._ident(col)} = %s")
                    args.append(value)
            return " WHERE " + " AND ".join(parts), args
        _check_sql(where, "where clause")
        params = _check_params(params)
        if params is None:
            # No params: the clause is literal SQL, so its % signs stay % signs.
            return f" WHERE {where.replace('%', '%%')}", []
        return f" WHERE {where}", params


class _Transaction:
    """BEGIN/COMMIT/ROLLBACK around a block; SAVEPOINTs when nested."""

    def __init__(self, db):
        self._db = db
        self._savepoint = None

    def __enter__(self):
        db = self._db
        if db._depth == 0:
            db._execute("BEGIN", None, rows=False)
        else:
            self._savepoint = f"zmesh_savepoint_{db._depth}"
            db._execute(f"SAVEPOINT {self._savepoint}", None, rows=False)
        db._depth += 1
        return db

    def __exit__(self, exc_type, exc, tb):
        db = self._db
        db._depth -= 1
        sp = self._savepoint
        if exc_type is not None:
            try:
                if sp is None:
                    db._execute("ROLLBACK", None, rows=False)
                else:
                    db._execute(f"ROLLBACK TO SAVEPOINT {sp}", None, rows=False)
                    db._execute(f"RELEASE SAVEPOINT {sp}", None, rows=False)
            except DatabaseError:
                pass  # the block's own exception is the one worth reporting
            return False
        if _aborted(db):
            # COMMIT of a failed transaction silently rolls back; say so instead.
            if sp is None:
                db._execute("ROLLBACK", None, rows=False)
            else:
                db._execute(f"ROLLBACK TO SAVEPOINT {sp}", None, rows=False)
                db._execute(f"RELEASE SAVEPOINT {sp}", None, rows=False)
            raise DatabaseError(
                "the transaction was aborted by an earlier error and has been rolled back", "25P02"
            )
        if sp is None:
            db._execute("COMMIT", None, rows=False)
        else:
            db._execute(f"RELEASE SAVEPOINT {sp}", None, rows=False)
        return False

    async def __aenter__(self):
        return self.__enter__()

    async def __aexit__(self, exc_type, exc, tb):
        return self.__exit__(exc_type, exc, tb)


def _aborted(db):
    from psycopg2.extensions import TRANSACTION_STATUS_INERROR

    conn = db._conn
    return conn is not None and not conn.closed and conn.info.transaction_status == TRANSACTION_STATUS_INERROR


def _check_sql(sql, what="sql"):
    if not isinstance(sql, str):
        raise TypeError(f"{what} must be a string, not {type(sql).__name__}")
    if not sql.strip():
        raise ValueError(f"{what} is empty")


def _check_params(params):
    if params is None or isinstance(params, (list, tuple, dict)):
        return params
    raise TypeError(f"params must be a list, tuple or dict, not {type(params).__name__}")


def _clean(message):
    return " ".join(message.split())


def _redact(message, dsn):
    """Removes the DSN's password from a libpq error that may quote the DSN."""
    secrets = set()
    try:
        from psycopg2.extensions import parse_dsn

        password = parse_dsn(dsn).get("password")
        if password:
            secrets.add(password)
    except Exception:
        pass
    # postgresql://user:password@host/...: also the raw, percent-encoded form,
    # which is what a parse error quotes.
    _, sep, rest = dsn.partition("://")
    userinfo, at, _ = rest.partition("@")
    if sep and at and "/" not in userinfo:
        raw = userinfo.partition(":")[2]
        if raw:
            secrets.add(raw)
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
    return message
