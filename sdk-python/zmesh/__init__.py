"""The zmesh SDK for Python functions.

A handler receives the invocation's context object as its second argument;
the same object is the builtin name `zmesh`, and `import zmesh` gives this
module, whose attributes fall through to that object. So all of these work:

    def handler(payload, zmesh): return zmesh.db.query("SELECT 1 AS one")
    def handler(payload): return zmesh.project_id          # builtin
    import zmesh; zmesh.log.info("hello", user=42)          # module

This module is imported on every start: it must stay small and must not
import anything that costs (no psycopg2, datetime, json, asyncio...).
"""

import time as _time

__all__ = ["DatabaseError", "Context", "Env", "FunctionInfo", "Log"]


class DatabaseError(Exception):
    """A database operation failed.

    `message` is PostgreSQL's primary message, `sqlstate` its five-character
    SQLSTATE (None when the driver refused the call before reaching the
    server), `detail` and `hint` the server's extra fields when it sent them.
    Connection failures carry "08001" (could not connect) or "08006" (the
    connection was lost), since libpq reports no SQLSTATE for those, and
    "53300" when no pooled connection became free before the deadline.
    """

    def __init__(self, message, sqlstate=None, detail=None, hint=None):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint

    def __str__(self):
        return self.message


class Env(dict):
    """The function's environment variables.

    `env.KEY` is None when KEY is not set; `env["KEY"]` raises KeyError like any
    mapping; `env.get("KEY", default)` works as usual. Names that collide with
    dict methods (`keys`, `items`...) or start with "_" are only reachable by
    subscription.
    """

    __slots__ = ()

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)

    def __setattr__(self, name, value):
        raise AttributeError("zmesh.env attributes are read-only; use env[name] = value")

    def __repr__(self):
        # Values are secrets more often than not; keep them out of logs.
        return f"<zmesh.Env {sorted(self)!r}>"


class FunctionInfo:
    """Which function is running: `name`, `version`, `entry_point`."""

    __slots__ = ("name", "version", "entry_point")

    def __init__(self, name, version, entry_point):
        self.name = name
        self.version = version
        self.entry_point = entry_point

    def __repr__(self):
        return f"<zmesh.FunctionInfo {self.name!r} v{self.version}>"


class Log:
    """Structured log lines on stderr: one JSON object per line.

    `log.info("charged", amount=12)` writes
    {"level":"info","msg":"charged","time":"2024-05-01T10:00:00.123Z","amount":12}.
    Fields named level, msg or time are written with a leading underscore so
    they cannot forge the line's own keys. Values that are not JSON types are
    written as their str().
    """

    __slots__ = ("_stream",)

    def __init__(self, stream):
        self._stream = stream

    def _write(self, level, msg, fields):
        t = _time.time()
        ms = int(t * 1000) % 1000
        line = {
            "level": level,
            "msg": msg if isinstance(msg, str) else _text(msg),
            "time": _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(t)) + f".{ms:03d}Z",
        }
        for key, value in fields.items():
            while key in line:
                key = "_" + key
            line[key] = value
        from ._jsonio import dumps_lenient

        try:
            text = dumps_lenient(line)
        except (ValueError, RecursionError):
            # NaN, infinities or a circular structure: keep the line, lose the shape.
            text = dumps_lenient({k: v if isinstance(v, str) else _text(v) for k, v in line.items()})
        stream = self._stream
        if stream is not None:
            stream.write(text + "\n")
            stream.flush()

    def debug(self, msg, /, **fields):
        self._write("debug", msg, fields)

    def info(self, msg, /, **fields):
        self._write("info", msg, fields)

    def warn(self, msg, /, **fields):
        self._write("warn", msg, fields)

    warning = warn

    def error(self, msg, /, **fields):
        self._write("error", msg, fields)


def _text(obj):
    try:
        return str(obj)
    except Exception:
        return f"<unprintable {type(obj).__name__}>"


class Context:
    """What a handler sees as `zmesh`: one invocation's identity, env, log and db."""

    __slots__ = ("invocation_id", "project_id", "function", "env", "log", "deadline_ms", "_dsn", "_db", "_emits")

    DatabaseError = DatabaseError

    def __init__(self, invocation_id, project_id, function, env, dsn, deadline_ms, log):
        self.invocation_id = invocation_id
        self.project_id = project_id
        self.function = function
        self.env = env
        self.deadline_ms = deadline_ms
        self.log = log
        self._dsn = dsn
        self._db = None
        self._emits = []

    @property
    def db(self):
        """The project database (zmesh._db.Database); connects on first query."""
        if self._db is None:
            from ._db import Database

            self._db = Database(self._dsn, self.deadline_ms)
        return self._db

    def emit(self, type, data=None):
        """Emits a custom event of the function's own project: every trigger
        "custom.<type>" whose conditions hold runs once the handler has
        returned successfully (a failed run emits nothing). Returns
        {"event_id": ...}."""
        from . import _protocol

        if (not isinstance(type, str) or not 0 < len(type) <= _protocol.MAX_EVENT_TYPE_BYTES
                or type.startswith("custom.") or any(c not in _protocol.EVENT_TYPE_CHARS for c in type)):
            raise ValueError(f"zmesh.emit: the type must be 1 to {_protocol.MAX_EVENT_TYPE_BYTES} of a-z 0-9 . _ - "
                             '(not starting with "custom."), e.g. "order.paid"')
        if len(self._emits) >= _protocol.MAX_EMITS:
            raise ValueError(f"zmesh.emit: at most {_protocol.MAX_EMITS} events per invocation")
        from . import _jsonio

        try:
            text = _jsonio.dumps(data)
        except (TypeError, ValueError, RecursionError) as e:
            raise TypeError(f"zmesh.emit: the data cannot be written as JSON: {e}") from None
        import uuid

        event_id = str(uuid.uuid4())
        # Kept as JSON text: later changes to data do not change the event.
        self._emits.append('{"event_id":"%s","type":"%s","data":%s}' % (event_id, type, text))
        return {"event_id": event_id}

    def time_left_ms(self):
        """Milliseconds until the invocation is killed (0 once the deadline has passed)."""
        left = self.deadline_ms - int(_time.time() * 1000)
        return left if left > 0 else 0

    def _close(self):
        if self._db is not None:
            self._db.close()

    def __repr__(self):
        return f"<zmesh.Context invocation={self.invocation_id!r} project={self.project_id!r}>"


_current = None


def _bind(context):
    """Makes `context` what `zmesh.<attr>` resolves to for code that imports this module."""
    global _current
    _current = context


def __getattr__(name):
    if _current is not None and not name.startswith("__"):
        try:
            return getattr(_current, name)
        except AttributeError:
            pass
    raise AttributeError(f"module 'zmesh' has no attribute {name!r}")
