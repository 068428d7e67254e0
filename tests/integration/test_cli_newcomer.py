"""The client where a newcomer expects it to be careful or complete, end to
end against a real zmeshd (test_cli.py's fixtures): a deploy that would
change a function's language, an unchanged redeploy, env var names, errors
of several lines, functions show, logs of one invocation, users, members,
and the confirmation before a delete.

$ZMESH_CLI names the client, $ZMESHD the daemon; zmeshd needs root.
"""

import json
import os
import pty
import re
import secrets
import select
import subprocess
import time

from test_cli import CLI, Cli, daemon, homes, me, unique  # noqa: F401 (fixtures)


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


def test_an_identical_redeploy_says_unchanged(daemon, me):
    path = me.write("same.py", "def handler(payload, zmesh):\n    return 'same'\n")
    assert me.json("functions", "deploy", path, "--env", "A=1")["version"] == 1
    r = me.ok("functions", "deploy", path)
    assert "unchanged" in r.out and "still version 1" in r.out, r
    r = me.ok("functions", "deploy", path, "--env", "A=1")
    assert "unchanged" in r.out and "still version 1" in r.out, r
    out = me.json("functions", "deploy", path)
    assert out["changed"] is False and out["version"] == 1, out
    r = me.ok("functions", "deploy", path, "--env", "A=2")
    assert "Updated function same" in r.out and "version 2" in r.out, r
    assert me.json("versions", "same")["current"] == 2


def test_env_lists_names_and_rollback_says_what_it_restores(daemon, me):
    path = me.write("envy.js", "exports.handler = async (p, z) => z.env.MODE;\n")
    me.ok("functions", "deploy", path, "--env", "MODE=blue", "--env", "API_TOKEN=t0ps3cret")
    r = me.ok("env", "envy")
    assert r.out.splitlines() == ["Env vars of envy (values are write-only):", "API_TOKEN", "MODE"], r
    assert "t0ps3cret" not in r.out
    assert me.json("functions", "env", "envy") == {"env_vars": ["API_TOKEN", "MODE"]}
    me.ok("functions", "deploy", path, "--env", "MODE=green")
    assert me.ok("env", "envy").out.splitlines()[1:] == ["MODE"]
    r = me.ok("rollback", "envy", "1")
    assert "code, config and env vars" in r.out and "version 3" in r.out, r
    assert me.ok("env", "envy").out.splitlines()[1:] == ["API_TOKEN", "MODE"]
    assert json.loads(me.ok("invoke", "envy").out) == "blue"
    me.ok("functions", "deploy", me.write("bare.py", "def handler(p, z):\n    return 1\n"))
    assert me.ok("env", "bare").out.strip() == "bare has no env vars."


def test_errors_of_several_lines_print_as_lines_and_numbers_exactly(daemon, me):
    me.write("twolines.js", "exports.handler = async () => { throw new Error('first line\\nsecond line'); };\n")
    me.ok("functions", "deploy", "twolines.js")
    r = me.run("invoke", "twolines")
    assert r.rc == 1 and "first line\nsecond line" in r.err and "first line?" not in r.err, r
    r = me.run("db", "sql", "DO $$ BEGIN RAISE EXCEPTION E'first line\\nsecond line'; END $$")
    assert r.rc == 1 and "first line\nsecond line" in r.err and "first line?" not in r.err, r

    me.write("exact.py", "def handler(payload, zmesh):\n    return {'x': 6.437, 'y': 0.1 + 0.2}\n")
    me.ok("functions", "deploy", "exact.py")
    out = me.ok("invoke", "exact").out
    assert "6.437" in out and "6.4370000" not in out and json.loads(out) == {"x": 6.437, "y": 0.1 + 0.2}, out
    logs = me.ok("--json", "logs", "exact").out
    for value in re.findall(r'"(?:duration_ms|cpu_ms)": (-?[0-9][0-9.eE+-]*)', logs):
        assert re.fullmatch(r"-?[0-9]+(\.[0-9]{1,3})?", value), (value, logs)
    assert '"duration_ms"' in logs


def on_terminal(c, args, prompt, answer):
    """The client with a pseudo-terminal as stdin, stdout and stderr; once it
    shows prompt, type answer. Returns (exit status, what it showed)."""
    master, slave = pty.openpty()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": c.home, "LANG": "C.UTF-8"}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_", "LSAN_"))})
    proc = subprocess.Popen([CLI, *args], stdin=slave, stdout=slave, stderr=slave, env=env, cwd=c.src,
                            start_new_session=True)
    shown, typed = b"", False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    chunk = b""
                shown += chunk
            if not typed and prompt in shown:
                os.write(master, answer)
                typed = True
            if proc.poll() is not None and not ready:
                break
        else:
            proc.kill()
        rc = proc.wait(10)
    finally:
        os.close(master)
        os.close(slave)
    return rc, shown.decode(errors="replace")


def test_every_delete_asks_first_or_needs_yes(daemon, me):
    me.ok("functions", "deploy", me.write("doomed.py", "def handler(p, z):\n    return 1\n"))
    r = me.run("delete", "doomed")
    assert r.rc == 2 and "--yes" in r.err, r
    assert daemon.api(me.token(), "GET", fn_url(me, "doomed"))[0] == 200, "a refused delete deletes nothing"

    rc, shown = on_terminal(me, ["delete", "doomed"], b"[y/N]", b"n\n")
    assert rc == 1 and "Delete function doomed?" in shown and "Not deleted" in shown, shown
    assert daemon.api(me.token(), "GET", fn_url(me, "doomed"))[0] == 200
    rc, shown = on_terminal(me, ["delete", "doomed"], b"[y/N]", b"y\n")
    assert rc == 0 and "Deleted function doomed" in shown, shown
    assert daemon.api(me.token(), "GET", fn_url(me, "doomed"))[0] == 404

    me.ok("functions", "deploy", me.write("doomed2.py", "def handler(p, z):\n    return 1\n"))
    assert "Deleted function doomed2" in me.ok("delete", "doomed2", "--yes").out
    me.ok("functions", "deploy", me.write("doomed3.py", "def handler(p, z):\n    return 1\n"))
    assert "Deleted function doomed3" in me.ok("--yes", "functions", "delete", "doomed3").out

    kid = me.json("keys", "create", "short-lived")["id"]
    r = me.run("keys", "delete", kid)
    assert r.rc == 2 and "--yes" in r.err, r
    assert kid in [k["id"] for k in me.json("keys", "list")["api_keys"]]
    me.ok("keys", "delete", kid, "--yes")
    assert kid not in [k["id"] for k in me.json("keys", "list")["api_keys"]]

    me.ok("functions", "deploy", me.write("ticker.py", "def handler(p, z):\n    return 1\n"))
    tid = me.json("triggers", "create", "--function", "ticker", "--cron", "@daily")["id"]
    r = me.run("triggers", "delete", tid)
    assert r.rc == 2 and "--yes" in r.err, r
    assert me.json("triggers", "get", tid)["id"] == tid
    me.ok("triggers", "delete", tid, "--yes")


def test_functions_show_prints_config_and_code(daemon, me):
    code = "exports.handler = async (p, z) => 'shown';\n"
    me.ok("functions", "deploy", me.write("showme.js", code), "--env", "SECRET_ONE=hidden-value", "--timeout",
          "3000")
    r = me.ok("functions", "show", "showme")
    lines = r.out.splitlines()
    assert "Language           javascript" in lines and "Timeout (ms)       3000" in lines, r
    assert "Version            1" in lines and "Entry point        handler" in lines, r
    assert "Env vars           SECRET_ONE (values are write-only)" in lines, r
    assert r.out.endswith("\n" + code) and "hidden-value" not in r.out, r
    shown = me.json("functions", "show", "showme")
    assert shown["code"] == code and shown["env_vars"] == ["SECRET_ONE"], shown
    r = me.run("functions", "show", "nothing-here")
    assert r.rc == 1 and "NOT_FOUND" in r.err, r


def test_logs_of_one_invocation(daemon, me):
    me.write("chatty.py", "def handler(payload, zmesh):\n    print('said', payload)\n    return payload\n")
    me.ok("functions", "deploy", "chatty.py")
    me.ok("invoke", "chatty", "--data", '"first"')
    me.ok("invoke", "chatty", "--data", '"second"')
    listed = me.json("logs", "chatty")["invocations"]
    assert len(listed) == 2
    older = listed[1]["id"]
    r = me.ok("logs", "chatty", "--invocation", older)
    assert older in r.out and "said first" in r.out and "said second" not in r.out, r
    one = me.json("logs", "chatty", "--invocation", older)
    assert one["id"] == older and "said first" in one["logs"], one
    r = me.run("logs", "chatty", "--invocation", "not-an-id")
    assert r.rc == 2, r
    r = me.run("logs", "chatty", "--invocation", "00000000-0000-4000-8000-000000000000")
    assert r.rc == 1 and "NOT_FOUND" in r.err, r


def test_users_create_list_and_members_add(daemon, me, homes):
    email = "%s@example.test" % unique("member")
    password = "Member-" + secrets.token_hex(8)
    r = me.ok("users", "create", email, "--password", password)
    assert "Created user " + email in r.out, r
    r = me.run("users", "create", "weak-" + email, "--password", "short")
    assert r.rc == 1 and "INVALID_PASSWORD" in r.err, r
    other = "%s@example.test" % unique("stdin")
    r = me.ok("users", "create", other, "--admin", stdin=("Stdin-" + secrets.token_hex(8) + "\n").encode())
    assert "Created admin " + other in r.out, r
    users = {u["email"]: u for u in me.json("users", "list")["users"]}
    assert users[email]["is_admin"] is False and users[other]["is_admin"] is True, users
    assert all("password" not in k for u in users.values() for k in u)
    table = me.ok("users", "list").out
    assert email in table and other in table and "ADMIN" in table.splitlines()[0], table

    member = Cli(daemon, homes)
    member.ok("login", "--url", daemon.url, "--email", email, "--password", password)
    r = member.run("users", "list")
    assert r.rc == 1 and "FORBIDDEN" in r.err, r
    assert me.project["slug"] not in [p["slug"] for p in member.json("projects", "list")["projects"]]

    r = me.ok("projects", "members", "add", email)
    assert email in r.out and "member" in r.out, r
    assert me.project["slug"] in [p["slug"] for p in member.json("projects", "list")["projects"]]
    # A member is not the owner: sharing is the owner's.
    r = member.run("--project", me.project["slug"], "projects", "members", "add", other)
    assert r.rc == 1 and "FORBIDDEN" in r.err, r
    r = me.run("projects", "members", "add", "nobody-%s@example.test" % unique("x"))
    assert r.rc == 1 and "NOT_FOUND" in r.err, r
