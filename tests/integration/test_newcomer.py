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

from conftest import assert_error, unique

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

