"""What a newcomer expects of deploys and invocations, over HTTP against a
real zmeshd (conftest.py's daemon): a PATCH that would change a function's
language is refused unless asked for, identical redeploys make no version,
env var names are listed (values stay write-only) and travel with versions,
the public invoke takes what webhook senders send, every JSON answer ends
with a newline and its numbers are exact, a custom error keeps its class
name, and Debian's alternatives (awk) work in the sandbox.

$ZMESHD names the daemon; it needs root, as zmeshd does.
"""

import json
import re

from conftest import assert_error, http_request, unique

JS = "exports.handler = async (payload, zmesh) => ({ lang: 'js', payload });\n"
PY = "def handler(payload, zmesh):\n    return {'lang': 'py', 'payload': payload}\n"


def fn_path(project, fn, tail=""):
    return "/projects/%s/functions/%s%s" % (project["id"], fn["id"], tail)


# ---- changing a function's language --------------------------------------------------


def test_a_patch_to_another_language_is_refused_without_change_language(user, project):
    fn = user.deploy(project["id"], JS, name=unique("send-welcome"))
    r = user.patch(fn_path(project, fn), {"language": "python", "code": PY})
    assert_error(r, 409, "LANGUAGE_CHANGE")
    msg = r.json["error"]["message"]
    assert fn["slug"] in msg and "javascript" in msg and "python" in msg and "change_language" in msg, r
    after = user.get(fn_path(project, fn)).json
    assert after["language"] == "javascript" and after["version"] == 1 and after["code"] == JS, after
    assert user.get(fn_path(project, fn, "/versions")).json["versions"] == [], "a refused change makes no version"
    assert user.invoke(project["id"], fn["id"], 1).json["result"] == {"lang": "js", "payload": 1}

    assert_error(user.patch(fn_path(project, fn), {"language": "python", "code": PY, "change_language": "yes"}), 400,
                 "BAD_REQUEST")
    assert_error(user.patch(fn_path(project, fn), {"language": "python", "code": PY, "change_language": False}),
                 409, "LANGUAGE_CHANGE")

    r = user.patch(fn_path(project, fn), {"language": "python", "code": PY, "change_language": True})
    assert r.status == 200 and r.json["language"] == "python" and r.json["version"] == 2, r
    assert user.invoke(project["id"], fn["id"], 2).json["result"] == {"lang": "py", "payload": 2}


def test_a_patch_in_the_same_language_needs_no_flag(user, project):
    fn = user.deploy(project["id"], PY, language="python")
    r = user.patch(fn_path(project, fn), {"language": "python", "code": PY.replace("'py'", "'py2'")})
    assert r.status == 200 and r.json["version"] == 2, r
    r = user.patch(fn_path(project, fn), {"code": PY, "change_language": True})
    assert r.status == 200 and r.json["language"] == "python" and r.json["version"] == 3, r


# ---- identical redeploys ---------------------------------------------------------------


def test_an_identical_redeploy_makes_no_version(user, project):
    fn = user.deploy(project["id"], JS, env_vars={"MODE": "blue"})
    assert fn["version"] == 1 and "changed" not in fn, fn
    same = {"language": "javascript", "code": JS, "entry_point": "handler", "timeout_ms": fn["timeout_ms"],
            "memory_mb": fn["memory_mb"], "env_vars": {"MODE": "blue"}, "retries": fn["retries"]}
    for body in ({"code": JS}, same, {}):
        r = user.patch(fn_path(project, fn), body)
        assert r.status == 200 and r.json["changed"] is False and r.json["version"] == 1, (body, r)
    assert user.get(fn_path(project, fn, "/versions")).json == {"current": 1, "versions": []}

    # A change of the env alone is a change: a new version.
    r = user.patch(fn_path(project, fn), dict(same, env_vars={"MODE": "green"}))
    assert r.status == 200 and r.json["changed"] is True and r.json["version"] == 2, r
    r = user.patch(fn_path(project, fn), dict(same, env_vars={"MODE": "green"}))
    assert r.status == 200 and r.json["changed"] is False and r.json["version"] == 2, r
    r = user.patch(fn_path(project, fn), {"timeout_ms": 5000})
    assert r.status == 200 and r.json["changed"] is True and r.json["version"] == 3, r
    versions = user.get(fn_path(project, fn, "/versions")).json
    assert versions["current"] == 3 and [v["version"] for v in versions["versions"]] == [2, 1], versions


# ---- env vars: names listed, values write-only, part of a version ------------------------


def test_env_var_names_are_listed_and_travel_with_versions(user, project):
    secret = "s3cr3t-value-never-shown"
    fn = user.deploy(project["id"], "exports.handler = async (p, z) => z.env;\n",
                     env_vars={"API_TOKEN": secret, "MODE": "blue"})
    got = user.get(fn_path(project, fn))
    assert got.status == 200 and got.json["env_vars"] == ["API_TOKEN", "MODE"], got
    listed = user.get("/projects/%s/functions" % project["id"])
    assert secret.encode() not in got.data and secret.encode() not in listed.data

    r = user.patch(fn_path(project, fn), {"env_vars": {"MODE": "green"}})
    assert r.status == 200 and r.json["env_vars"] == ["MODE"] and r.json["version"] == 2, r
    versions = user.get(fn_path(project, fn, "/versions"))
    assert versions.json["versions"][0]["env_vars"] == ["API_TOKEN", "MODE"], versions
    assert secret.encode() not in versions.data

    # A rollback restores the version's env vars, and says so.
    r = user.post(fn_path(project, fn, "/versions/1/rollback"))
    assert r.status == 200 and r.json["version"] == 3 and r.json["rolled_back_to"] == 1, r
    assert "env_vars" in r.json["restored"] and "code" in r.json["restored"], r
    assert r.json["env_vars"] == ["API_TOKEN", "MODE"], r
    assert secret.encode() not in r.data
    assert user.invoke(project["id"], fn["id"]).json["result"] == {"API_TOKEN": secret, "MODE": "blue"}


# ---- the public invoke: empty bodies, Bearer keys, form bodies ---------------------------

ECHO = "exports.handler = async (payload) => ({ payload, isNull: payload === null });\n"


def public(zd, slug, raw=b"", headers=None):
    return http_request(zd.port, "POST", "/api/functions/" + slug, raw, headers or {})


def test_public_invoke_empty_body_bearer_key_and_form_bodies(zd, user, project):
    fn = user.deploy(project["id"], ECHO)
    key = user.create_key(project["id"])["key"]

    # An empty body is the payload null, with or without a Content-Type.
    for headers in ({"x-api-key": key}, {"x-api-key": key, "Content-Type": "application/json"}):
        r = public(zd, fn["slug"], b"", headers)
        assert r.status == 200 and r.json["result"] == {"payload": None, "isNull": True}, r
    r = public(zd, fn["slug"], b'{"a": 1}', {"x-api-key": key, "Content-Type": "application/json"})
    assert r.status == 200 and r.json["result"]["payload"] == {"a": 1}, r

    # The key as a bearer token, as webhook senders send it.
    r = public(zd, fn["slug"], b"[1]", {"Authorization": "Bearer " + key})
    assert r.status == 200 and r.json["result"]["payload"] == [1], r
    assert_error(public(zd, fn["slug"], b"", {"Authorization": "Bearer " + user.token}), 401, "INVALID_API_KEY")
    assert_error(public(zd, fn["slug"], b"", {"Authorization": "Bearer zmk_" + "A" * 43}), 401, "INVALID_API_KEY")
    r = public(zd, fn["slug"], b"", {})
    assert_error(r, 401, "UNAUTHORIZED")
    assert "Authorization: Bearer" in r.json["error"]["message"], r
    # x-api-key is taken first.
    assert_error(public(zd, fn["slug"], b"", {"x-api-key": "nope", "Authorization": "Bearer " + key}), 401,
                 "INVALID_API_KEY")

    # A form body is an object of strings; a repeated name an array of its values in order.
    form = {"x-api-key": key, "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    r = public(zd, fn["slug"], b"a=1&b=hello+world&c=%C3%A9%26%3D&a=2&flag&&a=3&empty=", form)
    assert r.status == 200, r
    assert r.json["result"]["payload"] == {"a": ["1", "2", "3"], "b": "hello world", "c": "\u00e9&=", "flag": "",
                                           "empty": ""}, r
    r = public(zd, fn["slug"], b"token=abc&text=hi", {"Authorization": "Bearer " + key,
                                                       "Content-Type": "Application/X-WWW-Form-Urlencoded"})
    assert r.status == 200 and r.json["result"]["payload"] == {"token": "abc", "text": "hi"}, r
    for bad in (b"a=%zz", b"a=%4", b"=x", b"a=%FF", b"a=%00", b"&".join(b"k%d=v" % i for i in range(1001))):
        r = public(zd, fn["slug"], bad, form)
        assert_error(r, 400, "BAD_REQUEST")
        assert "form body" in r.json["error"]["message"], r
    r = public(zd, fn["slug"], b"&".join(b"k=%d" % i for i in range(1000)), form)
    assert r.status == 200 and r.json["result"]["payload"] == {"k": [str(i) for i in range(1000)]}, r
    # Not a form: JSON, as before.
    assert_error(public(zd, fn["slug"], b"a=1", {"x-api-key": key, "Content-Type": "application/json"}), 400,
                 "BAD_REQUEST")


# ---- output: a newline at the end, exact numbers ----------------------------------------

MEASURED = re.compile(rb'"(duration_ms|cpu_ms|wall_ms|queue_ms)":\s*(-?[0-9][0-9.eE+-]*)')


def assert_measured_exactly(data):
    found = MEASURED.findall(data)
    assert found, data
    for name, value in found:
        # Microseconds: at most 3 decimals, never 6.4370000000000003.
        assert re.fullmatch(rb"-?[0-9]+(\.[0-9]{1,3})?", value), (name, value, data)


def test_json_answers_end_with_a_newline_and_numbers_print_exactly(zd, user, project):
    for r in (http_request(zd.port, "GET", "/healthz"), http_request(zd.port, "GET", "/nowhere"),
              user.get("/projects/%s/functions/nope" % project["id"]), user.post("/projects", raw=b"{"),
              user.get("/projects")):
        assert r.data.endswith(b"}\n") and r.data.count(b"\n") == 1, r
    fn = user.deploy(project["id"], "exports.handler = async () => ({ x: 6.437, y: 0.1 + 0.2 });\n")
    assert user.get(fn_path(project, fn)).data.endswith(b"}\n")
    for _ in range(3):
        r = user.invoke(project["id"], fn["id"])
        assert r.status == 200 and r.data.endswith(b"}\n"), r
        assert_measured_exactly(r.data)
        # What the function returned is as exact as it was: 0.1 + 0.2 is not 0.3.
        assert r.json["result"] == {"x": 6.437, "y": 0.1 + 0.2}, r
    r = user.get(fn_path(project, fn, "/invocations"))
    assert r.status == 200 and r.data.endswith(b"}\n"), r
    assert_measured_exactly(r.data)
    r = user.get(fn_path(project, fn, "/invocations/" + r.json["invocations"][0]["id"]))
    assert_measured_exactly(r.data)

    # A float8 of the project's database keeps every digit it has.
    r = user.post("/projects/%s/sql" % project["id"], {"sql": "SELECT 6.437::float8 AS a, 2.5::float8 AS b"})
    assert r.status == 200 and b"6.437," in r.data and b"6.4370000" not in r.data, r
    r = user.post("/projects/%s/sql" % project["id"], {"sql": "SELECT 0.1::float8 + 0.2::float8 AS c"})
    assert r.status == 200 and r.json["results"][0]["rows"][0][0] == 0.1 + 0.2, r


# ---- a custom error keeps its class name ----------------------------------------------

JS_THROWS = """
class PaymentError extends Error {}
class NamedError extends Error { constructor(m) { super(m); this.name = 'NamedError'; } }
exports.handler = async (kind) => {
  if (kind === 'named') throw new NamedError('named one');
  if (kind === 'plain') throw new Error('plain one');
  throw new PaymentError('card declined');
};
"""
PY_THROWS = """
class PaymentError(Exception):
    pass

def handler(payload, zmesh):
    if payload == 'plain':
        raise ValueError('plain one')
    raise PaymentError('card declined')
"""


def test_a_thrown_custom_error_keeps_its_class_name(user, project):
    js = user.deploy(project["id"], JS_THROWS)
    r = user.invoke(project["id"], js["id"], "custom")
    assert r.status == 500 and r.json["error"]["name"] == "PaymentError", r
    assert r.json["error"]["message"] == "card declined", r
    assert r.json["error"]["stack"].startswith("PaymentError: card declined\n"), r
    r = user.invoke(project["id"], js["id"], "named")
    assert r.json["error"]["name"] == "NamedError" and r.json["error"]["stack"].startswith("NamedError: named one"), r
    r = user.invoke(project["id"], js["id"], "plain")
    assert r.json["error"]["name"] == "Error" and r.json["error"]["stack"].startswith("Error: plain one"), r

    py = user.deploy(project["id"], PY_THROWS, language="python")
    r = user.invoke(project["id"], py["id"], "custom")
    assert r.status == 500 and r.json["error"]["name"] == "PaymentError", r
    assert r.json["error"]["message"] == "card declined", r
    assert re.search(r"(^|\n|\.)PaymentError: card declined", r.json["error"]["stack"]), r
    r = user.invoke(project["id"], py["id"], "plain")
    assert r.json["error"]["name"] == "ValueError" and "ValueError: plain one" in r.json["error"]["stack"], r


# ---- Debian's alternatives in the sandbox ------------------------------------------------

JS_TOOLS = """
const { execFileSync } = require('child_process');
exports.handler = async () => ({
  awk: execFileSync('awk', ['{ print $2 }'], { input: 'a b c\\n', encoding: 'utf8' }),
  sed: execFileSync('sed', ['s/world/sandbox/'], { input: 'hello world\\n', encoding: 'utf8' }),
  sort: execFileSync('sort', ['-n'], { input: '10\\n9\\n100\\n', encoding: 'utf8' }),
});
"""
PY_TOOLS = """
import subprocess

def run(args, text):
    return subprocess.run(args, input=text, capture_output=True, text=True, check=True).stdout

def handler(payload, zmesh):
    return {'awk': run(['awk', '{ print $2 }'], 'a b c\\n'),
            'sed': run(['sed', 's/world/sandbox/'], 'hello world\\n'),
            'sort': run(['sort', '-n'], '10\\n9\\n100\\n')}
"""


def test_tools_debian_manages_through_alternatives_run_in_the_sandbox(user, project):
    want = {"awk": "b\n", "sed": "hello sandbox\n", "sort": "9\n10\n100\n"}
    for code, language in ((JS_TOOLS, "javascript"), (PY_TOOLS, "python")):
        fn = user.deploy(project["id"], code, language=language)
        r = user.invoke(project["id"], fn["id"])
        assert r.status == 200 and r.json["result"] == want, (language, r)
