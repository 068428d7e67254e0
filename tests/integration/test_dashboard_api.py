"""The API behind the dashboard's management flows: a project's members
(list, remove, the only owner kept, a removed member's access ended at once,
also for a token issued before), the CLI's members list and remove, and the
payload kept with each invocation's record (exact, bounded at 64 KiB of its
compact JSON text)."""

import json
import os
import subprocess
import tempfile
import time

import pytest

from conftest import assert_error, new_uuid, unique

CLI = os.environ.get("ZMESH_CLI")
ECHO_JS = "exports.handler = async (payload, zmesh) => payload;"
PAYLOAD_MAX = 65536


def members_path(pid, uid=None):
    return "/projects/%s/members" % pid + ("/" + uid if uid else "")


def member_list(client, pid):
    r = client.get(members_path(pid))
    assert r.status == 200, str(r)
    return r.json["members"]


def shared_project(owner, member):
    p = owner.create_project()
    r = owner.post(members_path(p["id"]), {"email": member.email})
    assert r.status == 201, str(r)
    return p


# ---- members ---------------------------------------------------------------------


def test_members_are_listed_to_every_member(new_user):
    owner, member, stranger = new_user(), new_user(), new_user()
    p = shared_project(owner, member)
    for who in (owner, member):
        got = member_list(who, p["id"])
        assert [(m["email"], m["role"], m["user_id"]) for m in got] == [
            (owner.email, "owner", owner.user_id), (member.email, "member", member.user_id)]
        for m in got:
            assert set(m) == {"user_id", "email", "role", "added_at"}, m
            assert m["added_at"].startswith("20"), m
    # Someone else's project answers like one that does not exist.
    assert_error(stranger.get(members_path(p["id"])), 404, "NOT_FOUND")
    assert_error(stranger.delete(members_path(p["id"], member.user_id)), 404, "NOT_FOUND")
    assert len(member_list(owner, p["id"])) == 2


def test_a_removed_member_loses_the_project_at_once(new_user):
    owner, member = new_user(), new_user()
    p = shared_project(owner, member)
    fn = owner.deploy(p["id"], ECHO_JS)
    # The member's token, issued before the removal, reaches the project.
    assert member.get("/projects/" + p["id"]).status == 200
    assert member.get("/projects/%s/functions/%s" % (p["id"], fn["id"])).status == 200
    # A member is not the owner: they remove no one.
    assert_error(member.delete(members_path(p["id"], owner.user_id)), 403, "FORBIDDEN")
    r = owner.delete(members_path(p["id"], member.user_id))
    assert r.status == 200 and r.json == {"deleted": True}, str(r)
    # The same token, right away: the project is gone for them.
    assert_error(member.get("/projects/" + p["id"]), 404, "NOT_FOUND")
    assert_error(member.get(members_path(p["id"])), 404, "NOT_FOUND")
    assert_error(member.get("/projects/%s/functions/%s" % (p["id"], fn["id"])), 404, "NOT_FOUND")
    assert_error(member.invoke(p["id"], fn["id"], {}), 404, "NOT_FOUND")
    assert p["id"] not in [x["id"] for x in member.get("/projects").json["projects"]]
    assert [m["email"] for m in member_list(owner, p["id"])] == [owner.email]
    # Twice, or someone who never was: no such member.
    assert_error(owner.delete(members_path(p["id"], member.user_id)), 404, "NOT_FOUND")
    assert_error(owner.delete(members_path(p["id"], new_uuid())), 404, "NOT_FOUND")
    assert_error(owner.delete(members_path(p["id"], "not-a-uuid")), 404, "NOT_FOUND")
    # Added again, they are back.
    assert owner.post(members_path(p["id"]), {"email": member.email}).status == 201
    assert member.get("/projects/" + p["id"]).status == 200


def test_the_only_owner_is_never_removed(new_user, admin):
    owner, member = new_user(), new_user()
    p = shared_project(owner, member)
    r = owner.delete(members_path(p["id"], owner.user_id))
    assert_error(r, 409, "CONFLICT")
    assert "owner" in r.json["error"]["message"]
    # Not even by an admin, who may remove anyone else.
    r = admin.delete(members_path(p["id"], owner.user_id))
    assert_error(r, 409, "CONFLICT")
    assert "only owner" in r.json["error"]["message"]
    assert owner.get("/projects/" + p["id"]).status == 200
    assert admin.delete(members_path(p["id"], member.user_id)).status == 200
    assert [m["role"] for m in member_list(owner, p["id"])] == ["owner"]


# ---- the CLI -----------------------------------------------------------------------


def run_cli(home, *args):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8"}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("ASAN_", "UBSAN_", "LSAN_"))})
    return subprocess.run([CLI, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, timeout=120)


def test_cli_members_list_and_remove(zd, new_user):
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.fail("set ZMESH_CLI to the zmesh binary (ctest does)", pytrace=False)
    owner, member = new_user(), new_user()
    p = shared_project(owner, member)
    with tempfile.TemporaryDirectory(prefix="zcli-home-") as home:
        def ok(*args):
            r = run_cli(home, *args)
            assert r.returncode == 0, (args, r.stdout, r.stderr)
            return r.stdout.decode()

        ok("login", "--url", "http://127.0.0.1:%d" % zd.port, "--email", owner.email, "--password", owner.password)
        ok("use", p["id"])
        table = ok("projects", "members", "list")
        lines = table.splitlines()
        assert lines[0].split()[:3] == ["EMAIL", "ROLE", "USER"], table
        assert lines[1].split()[:3] == [owner.email, "owner", owner.user_id], table
        assert lines[2].split()[:3] == [member.email, "member", member.user_id], table
        listed = json.loads(ok("--json", "projects", "members", "list"))
        assert [m["email"] for m in listed["members"]] == [owner.email, member.email]
        # Without a terminal nor --yes nothing is removed.
        r = run_cli(home, "projects", "members", "remove", member.email)
        assert r.returncode == 2 and b"--yes" in r.stderr, (r.returncode, r.stderr)
        assert len(member_list(owner, p["id"])) == 2
        # Someone who is not a member.
        r = run_cli(home, "projects", "members", "remove", "nobody-%s@example.test" % unique("x"), "--yes")
        assert r.returncode != 0 and b"not a member" in r.stderr, r.stderr
        out = ok("projects", "members", "remove", member.email.upper(), "--yes")
        assert "no longer a member" in out, out
        assert [m["email"] for m in member_list(owner, p["id"])] == [owner.email]
        assert_error(member.get("/projects/" + p["id"]), 404, "NOT_FOUND")
        # The only owner: the server's 409, reported.
        r = run_cli(home, "projects", "members", "remove", owner.email, "--yes")
        assert r.returncode != 0 and b"CONFLICT" in r.stderr, r.stderr


# ---- the payload in the record -------------------------------------------------------


def inv_path(pid, fid, iid=""):
    return "/projects/%s/functions/%s/invocations%s" % (pid, fid, "/" + iid if iid else "")


def invoke_and_get(client, pid, fid, payload):
    r = client.invoke(pid, fid, payload)
    assert r.status == 200, str(r)
    assert r.json["result"] == payload
    g = client.get(inv_path(pid, fid, r.json["invocation_id"]))
    assert g.status == 200, str(g)
    return g.json


def test_the_record_keeps_the_payload(user, new_user):
    p = user.create_project()
    fn = user.deploy(p["id"], ECHO_JS)
    payload = {"order": [3, 1, 2], "name": "Zoë \"quoted\" <b>", "n": 1.5, "none": None, "deep": {"t": True}}
    rec = invoke_and_get(user, p["id"], fn["id"], payload)
    assert rec["payload"] == payload
    assert rec["payload_kept"] is True and rec["payload_truncated"] is False
    # A null payload is kept as null, told apart from one not kept.
    rec = invoke_and_get(user, p["id"], fn["id"], None)
    assert rec["payload"] is None and rec["payload_kept"] is True and rec["payload_truncated"] is False
    # Listing stays light: no payloads there.
    lst = user.get(inv_path(p["id"], fn["id"]))
    assert lst.status == 200 and len(lst.json["invocations"]) == 2
    assert all("payload" not in i for i in lst.json["invocations"])
    # Members read it; others do not.
    member, stranger = new_user(), new_user()
    assert user.post(members_path(p["id"]), {"email": member.email}).status == 201
    iid = lst.json["invocations"][1]["id"]
    r = member.get(inv_path(p["id"], fn["id"], iid))
    assert r.status == 200 and r.json["payload"] == payload, str(r)
    assert_error(stranger.get(inv_path(p["id"], fn["id"], iid)), 404, "NOT_FOUND")


def test_the_payload_is_kept_up_to_64_kib(user):
    p = user.create_project()
    fn = user.deploy(p["id"], ECHO_JS)
    # A JSON string of n characters is n + 2 bytes of JSON text.
    at_bound = "a" * (PAYLOAD_MAX - 2)
    assert len(json.dumps(at_bound, separators=(",", ":"))) == PAYLOAD_MAX
    rec = invoke_and_get(user, p["id"], fn["id"], at_bound)
    assert rec["payload"] == at_bound and rec["payload_truncated"] is False and rec["payload_kept"] is True
    over = at_bound + "a"
    rec = invoke_and_get(user, p["id"], fn["id"], over)
    assert rec["payload"] is None and rec["payload_truncated"] is True and rec["payload_kept"] is False
    big = {"rows": [{"i": i, "text": "x" * 100} for i in range(2000)]}
    rec = invoke_and_get(user, p["id"], fn["id"], big)
    assert rec["payload"] is None and rec["payload_truncated"] is True
    # The invocation itself is whole: only the record's copy is left out.
    assert rec["status"] == "success"


def test_a_queued_run_keeps_its_payload(user):
    p = user.create_project()
    fn = user.deploy(p["id"], "exports.handler = async (payload) => { throw new Error('no ' + payload.n); };",
                     retries=1)
    payload = {"n": 7, "list": ["a", {"b": None}]}
    r = user.post("/projects/%s/functions/%s/invoke" % (p["id"], fn["id"]), {"payload": payload},
                  headers={"Prefer": "respond-async"})
    assert r.status == 202, str(r)
    first = r.json["invocation_id"]
    # The first attempt fails, the retry makes a second record: both keep it.
    deadline = time.monotonic() + 60
    while True:
        lst = user.get(inv_path(p["id"], fn["id"]) + "?limit=10").json["invocations"]
        done = [i for i in lst if i["status"] in ("error", "dead")]
        if len(done) == 2:
            break
        assert time.monotonic() < deadline, lst
        time.sleep(0.1)
    assert first in [i["id"] for i in lst]
    for i in lst:
        rec = user.get(inv_path(p["id"], fn["id"], i["id"])).json
        assert rec["trigger"] == "async", rec
        assert rec["payload"] == payload and rec["payload_kept"] is True and rec["payload_truncated"] is False, rec
    # Over the bound: not kept, and said so.
    big = {"pad": "x" * PAYLOAD_MAX}
    r = user.post("/projects/%s/functions/%s/invoke" % (p["id"], fn["id"]), {"payload": big},
                  headers={"Prefer": "respond-async"})
    assert r.status == 202, str(r)
    rec = user.get(inv_path(p["id"], fn["id"], r.json["invocation_id"])).json
    assert rec["payload"] is None and rec["payload_truncated"] is True and rec["payload_kept"] is False, rec
