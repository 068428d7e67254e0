"""Logs stay on stderr, the result alone on stdout; what start-up loads and writes."""

import json
import os
import re
import shutil
import subprocess
import textwrap

from conftest import BOOTSTRAP, PYTHON, SDK_DIR


def src(code):
    return textwrap.dedent(code).lstrip("\n")


def test_prints_go_to_stderr_not_the_result(invoke):
    code = src("""
        import os, subprocess, sys
        print("printed at import")
        def handler(payload):
            print("printed in handler")
            sys.stdout.write("written to sys.stdout\\n")
            sys.__stdout__.write("written to sys.__stdout__\\n")
            os.write(1, b"written to fd 1\\n")
            subprocess.run(["/bin/echo", "child process stdout"])
            print("partial line without newline", end="")
            return "result"
    """)
    run = invoke(code)
    assert run.stdout == '{"ok":true,"result":"result"}\n'
    for text in (
        "printed at import", "printed in handler", "written to sys.stdout", "written to sys.__stdout__",
        "written to fd 1", "child process stdout", "partial line without newline",
    ):
        assert text in run.stderr, text


def test_prints_before_an_error_are_kept(invoke):
    run = invoke("def handler(p):\n    print('about to fail')\n    raise ValueError('x')\n")
    assert run.error["name"] == "ValueError"
    assert "about to fail" in run.stderr


def test_structured_log_lines(invoke):
    code = src("""
        def handler(payload, zmesh):
            zmesh.log.info("order placed", order=17, items=["a", "b"])
            zmesh.log.warn("slow", ms=1500.5)
            zmesh.log.error("failed", level="forged", reason=ValueError("bad"))
            zmesh.log.debug({"not": "a string"})
            return "done"
    """)
    run = invoke(code)
    assert run.result == "done"
    lines = run.log_lines()
    assert [line["level"] for line in lines] == ["info", "warn", "error", "debug"]
    info, warn, error, debug = lines
    assert info["msg"] == "order placed" and info["order"] == 17 and info["items"] == ["a", "b"]
    assert warn["ms"] == 1500.5
    assert error["_level"] == "forged" and error["reason"] == "bad"
    assert debug["msg"] == "{'not': 'a string'}"
    for line in lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
        assert list(line)[:3] == ["level", "msg", "time"]


def test_log_with_non_finite_or_circular_values_still_writes_a_line(invoke):
    code = "def handler(p, z):\n    a = []\n    a.append(a)\n    z.log.info('odd', nan=float('nan'), loop=a)\n"
    run = invoke(code)
    assert run.result is None
    (line,) = run.log_lines()
    assert line["nan"] == "nan" and line["loop"] == "[[...]]"


def test_log_lines_interleave_with_prints_in_order(invoke):
    code = "def handler(p, z):\n    print('one')\n    z.log.info('two')\n    print('three')\n"
    stderr = invoke(code).stderr
    assert stderr.index("one") < stderr.index('"two"') < stderr.index("three")


def test_trivial_handler_loads_nothing_heavy(invoke):
    # Start-up cost: none of these may be imported for a plain sync handler.
    code = src("""
        import sys
        HEAVY = ["asyncio", "inspect", "typing", "traceback", "linecache", "re", "json",
                 "datetime", "decimal", "psycopg2", "zmesh._db", "zmesh._trace"]
        def handler(payload):
            return [m for m in HEAVY if m in sys.modules]
    """)
    assert invoke(code).result == []


def test_importtime_of_the_wrapper(invoke):
    run = invoke("def handler(p):\n    return 1\n", python_flags=("-X", "importtime"))
    assert run.result == 1
    imported = {line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert {"zmesh", "zmesh._runner", "zmesh._jsonio"} <= imported
    assert not imported & {"asyncio", "re", "json", "traceback", "inspect", "typing"}, imported


def test_no_bytecode_written_next_to_the_sdk(invoke, tmp_path):
    copy = tmp_path / "sdk"
    shutil.copytree(SDK_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "tests", ".pytest_cache"))
    assert invoke("def handler(p):\n    raise ValueError('x')\n", bootstrap=copy / "bootstrap.py").error
    assert invoke("async def handler(p):\n    return 1\n", bootstrap=copy / "bootstrap.py").result == 1
    assert not list(copy.rglob("__pycache__")), list(copy.rglob("*"))
    assert not list(copy.rglob("*.pyc"))


def test_runs_from_any_working_directory_and_path(tmp_path):
    # Started the way the sandbox does it: absolute path, cwd elsewhere, bare env.
    proc = subprocess.run(
        [PYTHON, "-S", str(BOOTSTRAP)],
        input=b'{"invocation_id":"i","project_id":"p","function":{"name":"f","version":1,'
              b'"entry_point":"handler"},"code":"def handler(p):\\n    return p\\n",'
              b'"payload":[1],"deadline_ms":4102444800000}',
        capture_output=True, cwd="/", env={}, timeout=60,
    )
    assert proc.returncode == 0
    assert proc.stdout == b'\n{"ok":true,"result":[1]}\n'


def test_precompiled_sdk_is_used_and_checked_against_its_source(invoke, tmp_path):
    # The install recipe from the README: checked-hash bytecode, so the
    # read-only SDK starts without compiling and a stale file is never run.
    copy = tmp_path / "sdk"
    shutil.copytree(SDK_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "tests", ".pytest_cache"))
    subprocess.run([PYTHON, "-m", "compileall", "-q", "--invalidation-mode", "checked-hash", str(copy / "zmesh")],
                   check=True, timeout=60)
    run = invoke("def handler(p):\n    return 1\n", bootstrap=copy / "bootstrap.py", python_flags=("-v",))
    assert run.result == 1
    for name in ("__init__", "_runner", "_jsonio"):
        assert f"code object from '{copy}/zmesh/__pycache__/{name}.cpython-311.pyc'" in run.stderr, name

    source = copy / "zmesh" / "_jsonio.py"
    source.write_text(source.read_text() + "\nSTALE_CHECK = 'edited'\n")
    run = invoke("import zmesh._jsonio as j\ndef handler(p):\n    return j.STALE_CHECK\n",
                 bootstrap=copy / "bootstrap.py", python_flags=("-v",))
    assert run.result == "edited"
    assert f"code object from {copy}/zmesh/_jsonio.py" in run.stderr


def test_announces_itself_with_a_newline_before_reading_the_invocation(tmp_path):
    import json
    import os
    import select

    from conftest import message, sandbox_env

    proc = subprocess.Popen([PYTHON, str(BOOTSTRAP)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=sandbox_env(tmp_path))
    try:
        # Nothing is written to stdin until the announcement is in.
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no announcement within 30 s"
        assert os.read(proc.stdout.fileno(), 1) == b"\n"
        assert proc.poll() is None
        out, err = proc.communicate(json.dumps(message("def handler(p, z):\n    return p['n'] + 1\n",
                                                       {"n": 41})).encode(), timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == b'{"ok":true,"result":42}\n'


def test_with_result_fd_the_result_has_a_descriptor_children_never_hold(tmp_path):
    # As the platform starts it: --result-fd=3, the result pipe at 3.
    from conftest import message, sandbox_env

    code = src("""
        import os, subprocess
        def handler(payload):
            os.write(1, b"to fd 1\\n")
            print("printed")
            subprocess.run(["/bin/echo", "from child"])
            forged = subprocess.run(["/bin/sh", "-c", "echo forged >&3"], capture_output=True)
            return forged.returncode
    """)
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            [PYTHON, "-S", str(BOOTSTRAP), "--result-fd=3"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=sandbox_env(tmp_path), cwd=str(tmp_path),
            close_fds=False, preexec_fn=lambda: os.dup2(w, 3),
        )
        os.close(w)
        w = -1
        out, err = proc.communicate(json.dumps(message(code, None)).encode(), timeout=60)
        with os.fdopen(r, "rb") as f:
            r = -1
            result = f.read().decode()
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    assert result == '\n{"ok":true,"result":2}\n', err
    # Python points fd 1 at stderr itself, as without --result-fd.
    assert out == b""
    for text in ("to fd 1", "printed", "from child"):
        assert text in err.decode(), text
    assert "forged" not in out.decode() + err.decode()


def test_check_mode_compiles_and_never_runs(invoke):
    def check(code, entry="handler"):
        from conftest import message

        run = invoke(raw=json.dumps(dict(message(code, entry_point=entry), check=True)).encode())
        reply = json.loads(run.stdout)
        assert reply["ok"] is True, reply
        return reply["result"]

    assert check("raise SystemExit('ran')\ndef handler(p):\n    return 1\n") == {"valid": True}
    assert check("import json\nif True:\n    handler = json.dumps\n") == {"valid": True}
    assert check("from os.path import *\n") == {"valid": True}  # unknowable: passed on
    assert check("def handler(p):\n    return 1 +\n") == {"valid": False, "error": {
        "name": "SyntaxError", "message": "invalid syntax", "file": "function.py", "line": 2, "column": 15}}
    missing = check("def main(p):\n    return 1\n")
    assert missing["valid"] is False and missing["error"]["name"] == "HandlerNotFound", missing
    assert check("def main(p):\n    return 1\n", "main") == {"valid": True}
    assert check("import handler\n") == {"valid": True}
