"""Code is checked at deploy, in a sandbox (the API process never compiles
it): a syntax error in CommonJS, an ES module or Python is 400 SYNTAX_ERROR
with its file, line and column, on create and on PATCH, and makes no new
version; an entry point the code surely does not define (Python's top
level, an ES module's exports) is 400 HANDLER_NOT_FOUND; correct code
deploys; the client prints FILE:LINE:COLUMN: message. Against real daemons
(conftest.py, test_cli.py).

$ZMESH_CLI names the client, $ZMESHD the daemon; zmeshd needs root.
"""

import pytest

from conftest import assert_error, unique
from test_cli import CLI, Cli, daemon, homes, me  # noqa: F401 (fixtures)

CJS_BAD = "const x = 1;\nexports.handler = async () => {\n  return x +;\n};\n"
ESM_BAD = "export async function handler() {\n  return 1;\n}\nexport const y = (2 + ;\n"
PY_BAD = "def handler(p, z):\n    return 1\n\ndef other(:\n    pass\n"

# (language, code, file, line, column)
BROKEN = [
    ("javascript", CJS_BAD, "function.cjs", 3, 13),
    ("javascript", ESM_BAD, "function.mjs", 4, 23),
    ("python", PY_BAD, "function.py", 4, 11),
]

CJS_OK = "exports.handler = async (p) => ({ ok: p });\n"
ESM_OK = "import { basename } from 'node:path';\nexport async function handler(p) { return { ok: p, b: basename('/a/b') }; }\n"
PY_OK = "import json\n\ndef handler(p, z):\n    return {'ok': p}\n"


def fn_path(project, fn, tail=""):
    return "/projects/%s/functions/%s%s" % (project["id"], fn["id"], tail)


def assert_syntax_error(r, file, line, column):
    assert_error(r, 400, "SYNTAX_ERROR")
    e = r.json["error"]
    assert (e["file"], e["line"], e["column"]) == (file, line, column), e
    assert e["message"].startswith("%s:%d:%d: " % (file, line, column)), e


@pytest.mark.parametrize("lang,code,file,line,column", BROKEN, ids=["cjs", "esm", "python"])
def test_a_syntax_error_is_refused_on_create(user, project, lang, code, file, line, column):
    name = unique("broken")
    r = user.post("/projects/%s/functions" % project["id"], {"name": name, "language": lang, "code": code})
    assert_syntax_error(r, file, line, column)
    listed = user.get("/projects/%s/functions" % project["id"]).json
    assert name not in str(listed), listed


@pytest.mark.parametrize("lang,code,file,line,column", BROKEN, ids=["cjs", "esm", "python"])
def test_a_syntax_error_is_refused_on_patch_and_makes_no_version(user, project, lang, code, file, line, column):
    good = CJS_OK if lang == "javascript" else PY_OK
    fn = user.deploy(project["id"], good, language=lang)
    r = user.patch(fn_path(project, fn), {"code": code})
    assert_syntax_error(r, file, line, column)
    after = user.get(fn_path(project, fn)).json
    assert after["version"] == 1 and after["code"] == good, after
    assert user.get(fn_path(project, fn, "/versions")).json["versions"] == []
    assert user.invoke(project["id"], fn["id"], 5).json["result"] == {"ok": 5}


def test_a_missing_handler_is_refused_where_it_can_be_known(user, project):
    pid = project["id"]
    r = user.post("/projects/%s/functions" % pid,
                  {"name": unique("nohandler"), "language": "python", "code": "def main(p, z):\n    return 1\n"})
    assert_error(r, 400, "HANDLER_NOT_FOUND")
    assert '"handler"' in r.json["error"]["message"] and r.json["error"]["file"] == "function.py", r
    # The entry point named: then it is there.
    ok = user.deploy(pid, "def main(p, z):\n    return 1\n", language="python", entry_point="main")
    assert user.invoke(pid, ok["id"]).json["result"] == 1

    r = user.post("/projects/%s/functions" % pid,
                  {"name": unique("noexport"), "language": "javascript",
                   "code": "export async function main() { return 1; }\n"})
    assert_error(r, 400, "HANDLER_NOT_FOUND")
    assert "main" in r.json["error"]["message"] and r.json["error"]["file"] == "function.mjs", r
    # A PATCH to an entry point the module does not export is refused too.
    esm = user.deploy(pid, ESM_OK)
    r = user.patch(fn_path(project, esm), {"entry_point": "nothere"})
    assert_error(r, 400, "HANDLER_NOT_FOUND")
    assert user.get(fn_path(project, esm)).json["entry_point"] == "handler"

    # CommonJS cannot tell before it runs: deployed, and said at invoke.
    cjs = user.deploy(pid, "exports.main = async () => 1;\n")
    r = user.invoke(pid, cjs["id"])
    assert r.status == 500 and r.json["error"]["name"] == "HandlerNotFound", r


def test_correct_code_deploys_and_is_never_run_by_the_check(user, project):
    pid = project["id"]
    for lang, code in (("javascript", CJS_OK), ("javascript", ESM_OK), ("python", PY_OK)):
        fn = user.deploy(pid, code, language=lang)
        assert fn["version"] == 1, fn
        result = user.invoke(pid, fn["id"], 3).json["result"]
        assert result["ok"] == 3, result
    # Top-level code that would fail if it ran: the check compiles only.
    for lang, code in (("javascript", "throw new Error('ran');\nexports.handler = () => 1;\n"),
                       ("javascript", "throw new Error('ran');\nexport const handler = () => 1;\n"),
                       ("python", "raise SystemExit('ran')\ndef handler(p, z):\n    return 1\n")):
        fn = user.deploy(pid, code, language=lang)
        assert fn["version"] == 1, fn


def test_the_client_prints_file_line_column(daemon, me):  # noqa: F811
    path = me.write("broken.js", CJS_BAD)
    r = me.run("functions", "deploy", path)
    assert r.rc == 1, r
    assert r.err.startswith("%s:3:13: SyntaxError: Unexpected token ';'\n" % path), r
    assert "SYNTAX_ERROR" in r.err, r
    path = me.write("broken.py", PY_BAD)
    r = me.run("functions", "deploy", path)
    assert r.rc == 1 and r.err.startswith("%s:4:11: SyntaxError: " % path), r
    path = me.write("fine.py", PY_OK)
    r = me.ok("functions", "deploy", path)
    assert "Created function fine" in r.out, r
