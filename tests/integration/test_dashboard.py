"""The dashboard served by zmeshd (web/, supervisor/api_ui.c), and its flows
in a real browser: Debian's Chromium driven by playwright-core (the version
tests/browser/package-lock.json pins), one node script per flow
(tests/browser/flow_*.js). Each script fails on any page error, console error
or warning (but the exact lines a test expects), on any request that is not
for the daemon, and prints ids that are checked here against the API.

Screenshots go to $ZMESH_SCREENSHOT_DIR (a temporary directory if unset)."""

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import http_request, make_jwt

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
WEB = os.path.join(TOP, "web")
BROWSER = os.path.join(TOP, "tests", "browser")
NODE = "/usr/bin/node"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLOW_TIMEOUT = 300

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


def csp_directives(value):
    out = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


@pytest.fixture(scope="module")
def shots():
    d = os.environ.get("ZMESH_SCREENSHOT_DIR")
    if d:
        os.makedirs(d, exist_ok=True)
        yield d
        return
    d = tempfile.mkdtemp(prefix="zmesh-shots-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_flow(zd, name, shots, user, extra=None):
    for path, what in ((NODE, "node"), (CHROMIUM, "chromium"),
                       (os.path.join(BROWSER, "node_modules", "playwright-core", "package.json"),
                        "tests/browser's playwright-core")):
        if not os.path.exists(path):
            pytest.fail("%s is missing (%s): run scripts/install-deps" % (what, path), pytrace=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZMESH_")}
    env.update({
        "ZMESH_URL": "http://127.0.0.1:%d" % zd.port,
        "ZMESH_EMAIL": user.email,
        "ZMESH_PASSWORD": user.password,
        "ZMESH_SCREENSHOT_DIR": shots,
        "ZMESH_TAG": secrets.token_hex(3),
        "CHROMIUM": CHROMIUM,
        "HOME": tempfile.gettempdir(),
    })
    env.update(extra or {})
    r = subprocess.run([NODE, os.path.join(BROWSER, name)], cwd=BROWSER, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=FLOW_TIMEOUT)
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    assert r.returncode == 0, "%s failed (exit %d)\nstdout:\n%s\nstderr:\n%s\ndaemon:\n%s" % (
        name, r.returncode, out[-4000:], err[-8000:], zd.log_tail(20))
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, "%s printed nothing" % name
    return json.loads(lines[-1])


# ---- serving ------------------------------------------------------------------------


def test_index_and_assets_are_served_from_the_binary(zd):
    index = http_request(zd.port, "GET", "/")
    assert index.status == 200, str(index)
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    with open(os.path.join(WEB, "index.html"), "rb") as f:
        assert index.data == f.read()
    for name, ctype in (("app.js", "text/javascript; charset=utf-8"), ("app.css", "text/css; charset=utf-8")):
        r = http_request(zd.port, "GET", "/ui/" + name)
        assert r.status == 200, str(r)
        assert r.headers["content-type"] == ctype
        with open(os.path.join(WEB, name), "rb") as f:
            assert r.data == f.read(), name
    # Small: the whole dashboard is well under a few hundred KiB.
    total = sum(os.path.getsize(os.path.join(WEB, n)) for n in os.listdir(WEB))
    assert total < 200 * 1024, total
    # What the page loads is the daemon's own: no absolute URL anywhere in it.
    html = index.data.decode()
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert ref.startswith("/ui/") or ref.startswith("#") or ref == "data:,", ref
    for name in os.listdir(WEB):
        with open(os.path.join(WEB, name), encoding="utf-8") as f:
            # The SVG namespace is a name, not an address that is fetched.
            text = f.read().replace("'http://www.w3.org/2000/svg'", "")
        assert not re.search(r"https?://|@import|url\(", text), name


def test_security_and_cache_headers(zd):
    for path in ("/", "/ui/app.js", "/ui/app.css"):
        r = http_request(zd.port, "GET", path)
        assert r.status == 200, str(r)
        for k, v in SECURITY_HEADERS.items():
            assert r.headers.get(k) == v, (path, k, r.headers)
        csp = csp_directives(r.headers["content-security-policy"])
        assert csp["default-src"] == ["'none'"], csp
        assert csp["script-src"] == ["'self'"], csp
        assert csp["style-src"] == ["'self'"], csp
        assert csp["connect-src"] == ["'self'"], csp
        assert csp["frame-ancestors"] == ["'none'"], csp
        assert csp["base-uri"] == ["'none'"], csp
        assert not any("unsafe" in w for ws in csp.values() for w in ws), csp
        assert r.headers["cache-control"] == "no-cache"
        etag = r.headers["etag"]
        assert re.fullmatch(r'"[0-9a-f]{32}"', etag), etag
        again = http_request(zd.port, "GET", path, headers={"If-None-Match": etag})
        assert again.status == 304 and again.data == b"", str(again)
        assert again.headers["etag"] == etag
        other = http_request(zd.port, "GET", path, headers={"If-None-Match": '"0123", W/"4567"'})
        assert other.status == 200 and other.data == r.data
    # The API's JSON answers carry nosniff too.
    assert http_request(zd.port, "GET", "/healthz").headers.get("x-content-type-options") == "nosniff"


def test_unknown_assets_are_404(zd):
    for path in ("/ui/nope.js", "/ui/index.html", "/ui/..%2Fapp.js", "/ui/", "/index.html"):
        r = http_request(zd.port, "GET", path)
        assert r.status in (400, 404), str(r)
        assert r.headers["content-type"].startswith("application/json"), str(r)
    r = http_request(zd.port, "POST", "/", b"{}", {"Content-Type": "application/json"})
    assert r.status == 405 and "GET" in r.headers.get("allow", ""), str(r)


# ---- in the browser -------------------------------------------------------------------


def test_main_flow_in_chromium(zd, user, new_user, shots):
    member = new_user()
    out = run_flow(zd, "flow_main.js", shots, user, {"ZMESH_MEMBER_EMAIL": member.email})
    pid, fid = out["project_id"], out["function_id"]
    f = user.get("/projects/%s/functions/%s" % (pid, fid))
    assert f.status == 200, str(f)
    # created (1), saved (2), rolled back to 1's code (3)
    assert f.json["version"] == 3 and "doubled" in f.json["code"], f.json
    assert f.json["timeout_ms"] == 5000 and f.json["memory_mb"] == 128, f.json
    assert f.json["env_vars"] == ["GREETING", "TARGET"], f.json
    v = user.get("/projects/%s/functions/%s/versions" % (pid, fid)).json
    # the states before the current one
    assert v["current"] == 3 and [x["version"] for x in v["versions"]] == [2, 1], v
    assert "tripled" in v["versions"][0]["code"] and "doubled" in v["versions"][1]["code"], v
    keys = user.get("/projects/%s/api-keys" % pid)
    assert keys.status == 200 and keys.json["api_keys"] == [], str(keys)
    inv = user.get("/projects/%s/functions/%s/invocations?limit=100" % (pid, fid)).json["invocations"]
    # three from the page, one by the key
    assert sorted(i["trigger"] for i in inv) == ["api", "api", "api", "api_key"], inv
    assert all(i["status"] == "success" for i in inv), inv
    assert out["load_ms"] < 1000, out
    # The member the page added sees the project.
    assert member.get("/projects/" + pid).status == 200
    for name in ("sign-in", "function-code", "invoke", "history", "invocation", "versions", "project",
                 "phone-project", "phone-function"):
        p = os.path.join(shots, name + ".png")
        assert os.path.getsize(p) > 1000, p


def test_hostile_strings_are_shown_as_text(zd, user, shots):
    out = run_flow(zd, "flow_xss.js", shots, user)
    p = user.get("/projects/" + out["project_id"])
    assert p.status == 200 and p.json["name"] == "<img src=x onerror=window.__xss=1>", str(p)
    # The page deleted the function at the end.
    f = user.get("/projects/%s/functions/%s" % (out["project_id"], out["function_id"]))
    assert f.status == 404, str(f)
    assert user.get("/projects/%s/functions" % out["project_id"]).json["functions"] == []


def test_session_expiry_and_refusal(zd, user, shots):
    now = int(time.time())
    expired = make_jwt(zd.jwt_key(), {"sub": user.user_id, "iat": now - 7200, "exp": now - 3600})
    # The daemon refuses the expired token too (the page never sends it).
    r = http_request(zd.port, "GET", "/projects", headers={"Authorization": "Bearer " + expired})
    assert r.status == 401, str(r)
    forged = make_jwt(b"not-the-daemon-key-" + secrets.token_hex(8).encode(),
                      {"sub": user.user_id, "iat": now, "exp": now + 3600})
    run_flow(zd, "flow_session.js", shots, user, {"ZMESH_EXPIRED_TOKEN": expired, "ZMESH_FORGED_TOKEN": forged})


def test_triggers_and_dead_letters(zd, user, shots):
    p = user.create_project()
    f = user.deploy(p["id"], "exports.handler = async () => { throw new Error('always <b>fails</b>'); };",
                    name="failing-" + secrets.token_hex(3), retries=0)
    r = user.post("/projects/%s/functions/%s/invoke" % (p["id"], f["id"]), {"payload": {}},
                  headers={"Prefer": "respond-async"})
    assert r.status == 202, str(r)
    path = "/projects/%s/dead-letters" % p["id"]
    deadline = time.monotonic() + 60
    while True:
        letters = user.get(path).json["dead_letters"]
        if letters or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(letters) == 1, letters
    run_flow(zd, "flow_events.js", shots, user, {"ZMESH_PROJECT_ID": p["id"], "ZMESH_FUNCTION": f["slug"]})
    triggers = user.get("/projects/%s/triggers" % p["id"]).json["triggers"]
    assert len(triggers) == 1, triggers
    t = triggers[0]
    assert t["event_type"] == "cron" and t["function_id"] == f["id"] and t["enabled"] is False, t
    assert t["config"]["schedule"] == "0 0 1 1 *" and t["config"]["timezone"] == "Europe/Paris", t
    first = [d for d in user.get(path).json["dead_letters"] if d["id"] == letters[0]["id"]]
    assert len(first) == 1 and first[0]["retried_at"] and first[0]["retry_invocation_id"], first


def test_manage_members_egress_env_and_rerun_in_chromium(zd, user, new_user, shots):
    keep, gone = new_user(), new_user()
    out = run_flow(zd, "flow_manage.js", shots, user,
                   {"ZMESH_MEMBER_EMAIL": keep.email, "ZMESH_MEMBER_PASSWORD": keep.password,
                    "ZMESH_MEMBER2_EMAIL": gone.email})
    pid, fid = out["project_id"], out["function_id"]
    m = user.get("/projects/%s/members" % pid)
    assert m.status == 200, str(m)
    assert [(x["email"], x["role"]) for x in m.json["members"]] == [(user.email, "owner"), (keep.email, "member")]
    # The removed member's token, issued before the removal: no project.
    assert gone.get("/projects/" + pid).status == 404
    assert keep.get("/projects/" + pid).status == 200
    p = user.get("/projects/" + pid).json
    assert p["tier"] == "free", p
    assert p["egress"] == {"mode": "allowlist", "allow": ["api.example.com", "*.example.org"]}, p
    f = user.get("/projects/%s/functions/%s" % (pid, fid)).json
    assert f["entry_point"] == "main" and f["env_vars"] == ["GREETING_TEXT"], f
    inv = user.get("/projects/%s/functions/%s/invocations?limit=100" % (pid, fid)).json["invocations"]
    assert len(inv) == 3 and all(i["status"] == "success" for i in inv), inv
    # The first and its re-run: the same payload, kept with both records.
    kept = [user.get("/projects/%s/functions/%s/invocations/%s" % (pid, fid, i["id"])).json for i in inv]
    big = [k for k in kept if k["id"] == out["big_invocation_id"]]
    assert len(big) == 1 and big[0]["payload_truncated"] is True and big[0]["payload"] is None, big
    small = [k for k in kept if k["id"] != out["big_invocation_id"]]
    assert [k["payload"] for k in small] == [{"who": small[0]["payload"]["who"]}] * 2, small
    assert small[0]["payload"]["who"].startswith("first "), small
    assert all(k["trigger"] == "api" for k in kept), kept
    for name in ("project-manage", "invocation-payload"):
        path = os.path.join(shots, name + ".png")
        assert os.path.getsize(path) > 1000, path


def test_live_logs_on_the_invoke_page(zd, user, shots):
    out = run_flow(zd, "flow_live.js", shots, user)
    pid, fid, iid = out["project_id"], out["function_id"], out["invocation_id"]
    inv = user.get("/projects/%s/functions/%s/invocations/%s" % (pid, fid, iid))
    assert inv.status == 200 and inv.json["status"] == "success", str(inv)
    # The record after the run is as before: both lines, in order.
    logs = inv.json["logs"]
    assert logs.index("first <b>live</b> line") < logs.index("second line"), logs
    assert os.path.getsize(os.path.join(shots, "live-logs.png")) > 1000
