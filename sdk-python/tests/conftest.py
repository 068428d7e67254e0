"""Fixtures: run bootstrap.py like the supervisor does, and a throwaway PostgreSQL."""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import psycopg2
import pytest

SDK_DIR = Path(__file__).resolve().parent.parent
BOOTSTRAP = SDK_DIR / "bootstrap.py"
PGTMP = SDK_DIR.parent / "tests" / "pg" / "pgtmp"
PYTHON = "/usr/bin/python3.11"

# The unit tests import the SDK package directly; like the wrapper, they must
# not leave bytecode next to its source.
sys.dont_write_bytecode = True
if str(SDK_DIR) not in sys.path:
    sys.path.insert(0, str(SDK_DIR))


class Run:
    """One finished invocation: the parsed reply plus the raw streams."""

    def __init__(self, proc):
        self.returncode = proc.returncode
        self.stdout = proc.stdout.decode("utf-8")
        self.stderr = proc.stderr.decode("utf-8", "replace")
        assert self.returncode == 0, f"wrapper exited {self.returncode}; stderr:\n{self.stderr}"
        # The ready newline, then exactly one JSON object and nothing else.
        assert self.stdout.startswith("\n"), repr(self.stdout[:2000])
        self.stdout = self.stdout[1:]
        assert self.stdout.endswith("\n") and self.stdout.count("\n") == 1, repr(self.stdout[:2000])
        self.reply = json.loads(self.stdout)
        assert isinstance(self.reply, dict) and isinstance(self.reply.get("ok"), bool)

    @property
    def result(self):
        assert self.reply["ok"] is True, self.reply
        assert set(self.reply) == {"ok", "result"}
        return self.reply["result"]

    @property
    def error(self):
        assert self.reply["ok"] is False, self.reply
        assert set(self.reply) == {"ok", "error"}
        err = self.reply["error"]
        assert set(err) == {"name", "message", "stack"}
        assert all(isinstance(v, str) for v in err.values())
        return err

    def log_lines(self):
        """The stderr lines that are structured log records."""
        out = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out


def sandbox_env(tmpdir):
    """The only environment the platform gives a function."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmpdir), "TMPDIR": str(tmpdir), "LANG": "C.UTF-8"}


def message(code, payload=None, *, dsn="", env=None, entry_point="handler", deadline_ms=None,
            name="fn", version=7, project_id="proj-1", invocation_id="inv-1"):
    if deadline_ms is None:
        deadline_ms = int(time.time() * 1000) + 60_000
    return {
        "invocation_id": invocation_id,
        "project_id": project_id,
        "function": {"name": name, "version": version, "entry_point": entry_point},
        "code": code,
        "env": env or {},
        "dsn": dsn,
        "payload": payload,
        "deadline_ms": deadline_ms,
    }


@pytest.fixture
def invoke(tmp_path):
    """invoke(code, payload, **message fields) -> Run; or invoke(raw=bytes) for hostile stdin."""

    def _invoke(code=None, payload=None, *, raw=None, bootstrap=BOOTSTRAP, python_flags=(), timeout=60, **fields):
        data = raw if raw is not None else json.dumps(message(code, payload, **fields)).encode()
        proc = subprocess.run(
            [PYTHON, "-S", *python_flags, str(bootstrap)],  # as the supervisor starts it
            input=data,
            capture_output=True,
            env=sandbox_env(tmp_path),
            cwd=str(tmp_path),
            timeout=timeout,
        )
        return Run(proc)

    return _invoke


class Cluster:
    def __init__(self, root, sock):
        self.root = root
        self.sock = sock
        self.user = "fn_" + secrets.token_hex(4)
        # Characters that must be percent-encoded in the URI.
        self.password = "p@ss:w/rd%?&" + secrets.token_urlsafe(12)
        self.dbname = "projdb_" + secrets.token_hex(4)
        self.forbidden_db = "otherdb_" + secrets.token_hex(4)

    def admin(self, dbname="postgres"):
        conn = psycopg2.connect(host=self.sock, user="postgres", dbname=dbname)
        conn.autocommit = True
        return conn

    def execute(self, sql, params=None):
        """Runs one statement as the function's role (autocommit); returns rows or None."""
        conn = self.owner()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description is not None else None
        finally:
            conn.close()

    def dsn(self, dbname=None, password=None):
        q = urllib.parse.quote
        return (
            f"postgresql://{q(self.user, safe='')}:{q(password or self.password, safe='')}"
            f"@/{q(dbname or self.dbname, safe='')}?host={q(self.sock, safe='/')}"
        )

    def owner(self):
        """A connection as the function's role, for checking what a function did."""
        conn = psycopg2.connect(self.dsn())
        conn.autocommit = True
        return conn


@pytest.fixture(scope="session")
def pg():
    root = tempfile.mkdtemp(prefix="zmesh-sdkpy-pg-")
    started = False
    try:
        proc = subprocess.run([str(PGTMP), "start", root], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"pgtmp start failed:\n{proc.stderr}"
        started = True
        cluster = Cluster(root, proc.stdout.strip())
        conn = cluster.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE ROLE "{cluster.user}" LOGIN PASSWORD %s', [cluster.password])
                cur.execute(f'CREATE DATABASE "{cluster.dbname}" OWNER "{cluster.user}"')
                cur.execute(f'REVOKE CONNECT ON DATABASE "{cluster.dbname}" FROM PUBLIC')
                # The platform's layout: another project's database this role may not enter.
                cur.execute(f'CREATE DATABASE "{cluster.forbidden_db}"')
                cur.execute(f'REVOKE CONNECT ON DATABASE "{cluster.forbidden_db}" FROM PUBLIC')
        finally:
            conn.close()
        yield cluster
    finally:
        if started:
            subprocess.run([str(PGTMP), "stop", root], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def table(pg):
    """A fresh table name in the project database, dropped afterwards."""
    name = "t_" + secrets.token_hex(4)
    yield name
    pg.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')
