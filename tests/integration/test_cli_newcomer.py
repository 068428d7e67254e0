"""The client where a newcomer expects it to be careful or complete, end to
end against a real zmeshd (test_cli.py's fixtures): a deploy that would
change a function's language, an unchanged redeploy, env var names, errors
of several lines, functions show, logs of one invocation, users, members,
and the confirmation before a delete.

$ZMESH_CLI names the client, $ZMESHD the daemon; zmeshd needs root.
"""

import json

from test_cli import Cli, daemon, homes, me, unique  # noqa: F401 (fixtures)


def fn_url(c, slug, tail=""):
    return "/projects/%s/functions/%s%s" % (c.project["id"], slug, tail)


def test_deploy_refuses_to_change_the_language_without_the_flag(daemon, me):
    me.write("send_welcome.js", "exports.handler = async () => 'js';\n")
    me.write("send_welcome.py", "def handler(payload, zmesh):\n    return 'py'\n")
    created = me.json("functions", "deploy", "send_welcome.js")
    assert created["slug"] == "send-welcome" and created["language"] == "javascript"

    r = me.run("functions", "deploy", "send_welcome.py")
    assert r.rc == 1, r
    assert "send-welcome is javascript (version 1)" in r.err and "with python" in r.err, r
    assert "--change-language" in r.err and "?" not in r.err, r
    assert len(r.err.strip().splitlines()) == 2, r
    status, fn = daemon.api(me.token(), "GET", fn_url(me, "send-welcome"))
    assert status == 200 and fn["language"] == "javascript" and fn["version"] == 1, fn
    assert json.loads(me.ok("invoke", "send-welcome").out) == "js"

    r = me.ok("functions", "deploy", "send_welcome.py", "--change-language")
    assert "Replacing javascript function send-welcome (version 1) with python code from send_welcome.py" in r.err, r
    assert "version 2" in r.out, r
    status, fn = daemon.api(me.token(), "GET", fn_url(me, "send-welcome"))
    assert status == 200 and fn["language"] == "python" and fn["version"] == 2, fn
    assert json.loads(me.ok("invoke", "send-welcome").out) == "py"
