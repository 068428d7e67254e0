"""The invocation protocol's limits agree on all three sides.

common/protocol.h is the definition; sdk-js/lib/protocol.js and
sdk-python/zmesh/_protocol.py carry copies (a file read at every wrapper
start would cost every invocation). This fails when a value differs or a
name exists on one side only. ZPROTO_X in C is X in the wrappers.
"""

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADER = os.path.join(ROOT, "common", "protocol.h")
JS_MODULE = os.path.join(ROOT, "sdk-js", "lib", "protocol.js")
PY_MODULE = os.path.join(ROOT, "sdk-python", "zmesh", "_protocol.py")
PREFIX = "ZPROTO_"

_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)(?:[ \t]+(.*?))?[ \t]*$", re.M)
_INT_SUFFIX = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)(?:[uU]?[lL]{0,2}|[lL]{1,2}[uU])\b")
_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_STRINGS = re.compile(r'(?:"(?:[^"\\\n]|\\.)*"\s*)+')
_ALLOWED = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub, ast.Mult,
            ast.FloorDiv, ast.LShift, ast.RShift, ast.BitOr, ast.USub, ast.UAdd)


def _strip_comments(text):
    text = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _evaluate(name, expr):
    """The value of a #define: adjacent string literals, or an integer
    expression of literals and + - * / << >> | (what the header may hold)."""
    if expr.startswith('"'):
        if not _STRINGS.fullmatch(expr):
            raise ValueError(f"{name}: cannot read the string {expr!r}")
        return "".join(ast.literal_eval(f'"{p}"') for p in _STRING.findall(expr))
    py = _INT_SUFFIX.sub(lambda m: str(int(m.group(1), 0)), expr).replace("/", "//")
    tree = ast.parse(py, mode="eval")
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED) or (isinstance(node, ast.Constant) and type(node.value) is not int):
            raise ValueError(f"{name}: {expr!r} is not a plain integer expression")
    return eval(compile(tree, HEADER, "eval"), {"__builtins__": {}})  # only the nodes allowed above


def c_constants():
    with open(HEADER, encoding="utf-8") as f:
        text = _strip_comments(f.read())
    out = {}
    for name, expr in _DEFINE.findall(text):
        if not name.startswith(PREFIX):
            raise AssertionError(f"common/protocol.h defines {name}: every name there starts with {PREFIX}")
        if name in out:
            raise AssertionError(f"common/protocol.h defines {name} twice")
        out[name[len(PREFIX):]] = _evaluate(name, expr or "")
    return out


def python_constants():
    spec = importlib.util.spec_from_file_location("zmesh_protocol_under_test", PY_MODULE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return {k: v for k, v in vars(mod).items() if k.isupper()}


def js_constants():
    node = shutil.which("node") or "/usr/bin/node"
    run = subprocess.run(
        [node, "-e", "process.stdout.write(JSON.stringify(require(process.argv[1])))", JS_MODULE],
        capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, f"node could not load {JS_MODULE}:\n{run.stderr}"
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def sides():
    return {"common/protocol.h": c_constants(),
            "sdk-js/lib/protocol.js": js_constants(),
            "sdk-python/zmesh/_protocol.py": python_constants()}


def test_the_header_defines_the_limits(sides):
    c = sides["common/protocol.h"]
    assert c, "common/protocol.h defines no ZPROTO_ constant"
    for name, value in c.items():
        assert isinstance(value, (int, str)), f"ZPROTO_{name}: {value!r}"


def test_every_side_has_the_same_names(sides):
    names = set().union(*(set(v) for v in sides.values()))
    problems = []
    for name in sorted(names):
        missing = [side for side, values in sides.items() if name not in values]
        if missing:
            present = [side for side in sides if side not in missing]
            problems.append(f"{PREFIX}{name} ({name} in the wrappers) is in {', '.join(present)} "
                            f"but not in {', '.join(missing)}")
    assert not problems, "\n".join(problems)


def test_every_side_has_the_same_values(sides):
    c, js, py = sides.values()
    problems = []
    for name in sorted(set(c) & set(js) & set(py)):
        values = [c[name], js[name], py[name]]
        # bool is an int in Python and True == 1; JSON gives no such slack.
        if any(type(v) is not type(values[0]) or v != values[0] for v in values):
            problems.append(f"{PREFIX}{name} differs: common/protocol.h {c[name]!r}, "
                            f"sdk-js/lib/protocol.js {js[name]!r}, sdk-python/zmesh/_protocol.py {py[name]!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler to check the header with")
def test_the_c_compiler_reads_the_same_values(tmp_path):
    """What this file's parser reads is what C sees, and the header compiles alone."""
    c = c_constants()
    lines = ['#include <stdio.h>', '#include "protocol.h"', "int main(void)", "{"]
    for name, value in c.items():
        fmt = '"%s=%s\\n"' if isinstance(value, str) else '"%s=%lld\\n"'
        arg = f"{PREFIX}{name}" if isinstance(value, str) else f"(long long)({PREFIX}{name})"
        lines.append(f'\tprintf({fmt}, "{name}", {arg});')
    lines += ["\treturn 0;", "}"]
    src = tmp_path / "limits.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "limits"
    cc = subprocess.run(["cc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-I", os.path.dirname(HEADER),
                         "-o", str(exe), str(src)], capture_output=True, text=True, check=False)
    assert cc.returncode == 0, cc.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    seen = dict(line.split("=", 1) for line in out.splitlines())
    for name, value in c.items():
        assert seen[name] == str(value), f"{PREFIX}{name}: C says {seen[name]!r}, the parser read {value!r}"


def test_the_parser_evaluates_what_the_header_may_hold():
    assert _evaluate("A", "(32 << 20)") == 32 << 20
    assert _evaluate("B", "(16u * 1024)") == 16384
    assert _evaluate("C", "64ull") == 64
    assert _evaluate("D", '"ab" "c$"') == "abc$"
    with pytest.raises(ValueError):
        _evaluate("E", "sizeof(int)")
    with pytest.raises(ValueError):
        _evaluate("F", "1.5")
