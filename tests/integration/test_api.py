"""zmeshd's HTTP API, control plane: layer errors, login and tokens, users,
projects, members, API keys, functions and their validation, versions and
rollback. Invocations are in test_api_invoke.py, daemon life in
test_api_lifecycle.py."""

import json
import re
import time
from datetime import datetime

import pytest

from conftest import (UUID_RE, assert_error, http_request, invoke_by_key, make_jwt, new_uuid, post_large, unique)

ECHO_JS = "exports.handler = async (payload, zmesh) => payload;"


def fn_path(pid, fid=None, tail=""):
    p = "/projects/%s/functions" % pid
    if fid is not None:
        p += "/" + fid
    return p + tail


# ---- HTTP layer ----------------------------------------------------------------


def test_healthz(zd):
    r = http_request(zd.port, "GET", "/healthz")
    assert r.status == 200, str(r)
    assert r.json == {"status": "ok"}
    assert r.headers["content-type"].startswith("application/json")


def test_unknown_route_is_404(zd, admin):
    for method, path in [("GET", "/nope"), ("GET", "/projects/a/b/c/d/e/f"), ("POST", "/api"),
                         ("GET", "/api/functions"), ("POST", "/auth/login/x")]:
        assert_error(admin.request(method, path), 404, "NOT_FOUND")


def test_wrong_method_is_405_with_allow(zd, admin):
    cases = [("DELETE", "/healthz", {"GET"}), ("PUT", "/projects", {"GET", "POST"}),
             ("GET", "/auth/login", {"POST"}), ("GET", "/api/functions/x", {"POST"}),
             ("PUT", "/projects/p/functions/f", {"GET", "PATCH", "DELETE"}),
             ("GET", "/projects/p/functions/f/invoke", {"POST"}), ("POST", "/metrics", {"GET"})]
    for method, path, allowed in cases:
        r = admin.request(method, path)
        assert_error(r, 405, "METHOD_NOT_ALLOWED")
        got = {m.strip() for m in r.headers.get("allow", "").split(",") if m.strip()}
        assert allowed <= got, str((r, r.headers))
        assert method not in got, str((r, r.headers))


@pytest.fixture(scope="module")
def malformed_target(zd):
    admin = zd.admin()
    p = admin.create_project()
    f = admin.deploy(p["id"], ECHO_JS)
    key = admin.create_key(p["id"])["key"]
    return admin, p, f, key


MALFORMED = [b"{bad", b'{"name": "x"', b"[1, 2", b"\xff\xfe{}", b'{"a": 1} trailing']


@pytest.mark.parametrize("method,route", [
    ("POST", "/auth/login"), ("POST", "/users"), ("POST", "/projects"), ("PATCH", "/projects/{pid}"),
    ("POST", "/projects/{pid}/members"), ("POST", "/projects/{pid}/api-keys"), ("POST", "/projects/{pid}/functions"),
    ("PATCH", "/projects/{pid}/functions/{fid}"), ("POST", "/projects/{pid}/functions/{fid}/invoke")])
def test_malformed_json_is_400(malformed_target, method, route):
    admin, p, f, _ = malformed_target
    path = route.format(pid=p["id"], fid=f["id"])
    for raw in MALFORMED:
        r = admin.request(method, path, raw=raw, headers={"Content-Type": "application/json"})
        assert_error(r, 400, "BAD_REQUEST")
    # nothing above changed anything
    assert admin.get(fn_path(p["id"], f["id"])).json["version"] == 1
    assert len(admin.get("/projects/%s/api-keys" % p["id"]).json["api_keys"]) == 1


def test_malformed_json_by_api_key_is_400(zd, malformed_target):
    _, _, f, key = malformed_target
    for raw in MALFORMED:
        assert_error(invoke_by_key(zd, key, f["slug"], raw=raw), 400, "BAD_REQUEST")


def test_body_over_the_limit_is_413(zd):
    limit = 6 * 1024 * 1024
    head = '{"email":"nobody@example.test","password":"wrong-password","pad":"'
    exact = head + "x" * (limit - len(head) - 2) + '"}'
    assert len(exact) == limit
    # a body of exactly the limit is read and judged on its content
    r = http_request(zd.port, "POST", "/auth/login", exact.encode(), {"Content-Type": "application/json"})
    assert_error(r, 401, "INVALID_CREDENTIALS")
    r = post_large(zd.port, "/auth/login", exact.encode() + b" ", {"Content-Type": "application/json"})
    assert_error(r, 413, "PAYLOAD_TOO_LARGE")
    # the daemon still serves
    assert http_request(zd.port, "GET", "/healthz").status == 200


# ---- login and tokens -------------------------------------------------------------


def test_login(zd):
    r = http_request(zd.port, "POST", "/auth/login",
                     json.dumps({"email": zd.admin_email, "password": zd.admin_password}).encode())
    assert r.status == 200, str(r)
    body = r.json
    assert isinstance(body["token"], str) and body["token"].count(".") == 2
    assert body["user"]["email"] == zd.admin_email
    assert body["user"]["is_admin"] is True
    assert UUID_RE.match(body["user"]["id"])
    expires = datetime.strptime(body["expires_at"].replace("Z", "+00:00"), "%Y-%m-%dT%H:%M:%S%z")
    assert abs(expires.timestamp() - (time.time() + 86400)) < 120, body["expires_at"]
    # the token works
    assert zd.login(zd.admin_email, zd.admin_password).get("/projects").status == 200


def test_login_refusals(zd):
    def login(body):
        return http_request(zd.port, "POST", "/auth/login", json.dumps(body).encode())

    assert_error(login({"email": zd.admin_email, "password": zd.admin_password + "x"}), 401, "INVALID_CREDENTIALS")
    assert_error(login({"email": "nobody@example.test", "password": zd.admin_password}), 401, "INVALID_CREDENTIALS")
    r = login({"email": zd.admin_email, "password": ""})
    assert r.status in (400, 401) and r.code, str(r)
    for body in [{"email": zd.admin_email}, {"password": zd.admin_password}, {}, {"email": 1, "password": 2}]:
        r = login(body)
        assert r.status == 400, str(r)
        assert r.code, str(r)


def test_missing_token_is_401(zd, admin):
    p = admin.create_project()
    anon = zd.anonymous()
    for method, path in [("GET", "/projects"), ("POST", "/projects"), ("GET", "/projects/%s" % p["id"]),
                         ("POST", "/users"), ("GET", fn_path(p["id"])), ("GET", "/projects/%s/api-keys" % p["id"])]:
        assert_error(anon.request(method, path, body={}), 401, "UNAUTHORIZED")


def test_forged_tokens_are_401(zd, admin):
    key = zd.jwt_key()
    now = int(time.time())
    good = {"sub": admin.user_id, "iat": now, "exp": now + 600}
    # The forging below is right: the same recipe with the real key is accepted.
    r = admin.request("GET", "/projects", headers={"Authorization": "Bearer " + make_jwt(key, good)})
    assert r.status == 200, str(r)
    head, body, sig = admin.token.split(".")
    other = dict(good, sub=new_uuid())
    forged = [
        "garbage",
        "a.b.c",
        make_jwt(b"not-the-key-" * 4, good),
        make_jwt(key, good, header={"alg": "none", "typ": "JWT"}).rsplit(".", 1)[0] + ".",
        "%s.%s.%s" % (head, make_jwt(key, other).split(".")[1], sig),  # claims swapped, signature kept
        make_jwt(key, other),  # a valid signature for a user that does not exist
        "%s.%s.%s" % (head, body, ("B" if sig[0] == "A" else "A") + sig[1:]),
    ]
    for tok in forged:
        r = admin.request("GET", "/projects", headers={"Authorization": "Bearer " + tok})
        assert_error(r, 401, "INVALID_TOKEN")


def test_expired_token_is_401(zd, admin):
    key = zd.jwt_key()
    now = int(time.time())
    live = make_jwt(key, {"sub": admin.user_id, "iat": now - 60, "exp": now + 600})
    assert admin.request("GET", "/projects", headers={"Authorization": "Bearer " + live}).status == 200
    dead = make_jwt(key, {"sub": admin.user_id, "iat": now - 7200, "exp": now - 5})
    assert_error(admin.request("GET", "/projects", headers={"Authorization": "Bearer " + dead}), 401,
                 "TOKEN_EXPIRED")


# ---- users ----------------------------------------------------------------------------


def test_admin_creates_users(zd, admin):
    email = "%s@example.test" % unique("alice")
    r = admin.post("/users", {"email": email, "password": "correct-horse"})
    assert r.status == 201, str(r)
    body = r.json
    assert UUID_RE.match(body["id"]) and body["email"] == email and body["is_admin"] is False
    alice = zd.login(email, "correct-horse")
    assert alice.user_id == body["id"]
    # a user who is not an admin creates nobody
    assert_error(alice.post("/users", {"email": "x-" + email, "password": "long-enough"}), 403, "FORBIDDEN")
    assert_error(admin.post("/users", {"email": email, "password": "another-one-2"}), 409, "CONFLICT")
    assert_error(admin.post("/users", {"email": email.upper(), "password": "another-one-2"}), 409, "CONFLICT")
    for bad in ["", "no-at-sign", "@", "a" * 300 + "@example.test"]:
        assert_error(admin.post("/users", {"email": bad, "password": "long-enough"}), 400, "INVALID_EMAIL")
    assert_error(admin.post("/users", {"password": "long-enough"}), 400, "INVALID_EMAIL")
    for bad in ["", "short7!"]:
        assert_error(admin.post("/users", {"email": "p-" + email, "password": bad}), 400, "INVALID_PASSWORD")
    assert_error(admin.post("/users", {"email": "p-" + email}), 400, "INVALID_PASSWORD")
    # an admin made by an admin may create users
    r = admin.post("/users", {"email": "boss-" + email, "password": "boss-password", "is_admin": True})
    assert r.status == 201 and r.json["is_admin"] is True, str(r)
    boss = zd.login("boss-" + email, "boss-password")
    r = boss.post("/users", {"email": "hired-" + email, "password": "hired-password"})
    assert r.status == 201, str(r)


# ---- projects --------------------------------------------------------------------------


def test_project_crud(zd, user):
    suffix = unique("x")[2:]
    r = user.post("/projects", {"name": "My Shop %s!" % suffix})
    assert r.status == 201, str(r)
    p = r.json
    assert set(p) >= {"id", "name", "slug", "tier", "monthly_cap", "concurrency", "database", "created_at"}
    assert UUID_RE.match(p["id"])
    assert p["name"] == "My Shop %s!" % suffix
    assert p["slug"] == "my-shop-%s" % suffix
    assert p["tier"] == "free" and p["monthly_cap"] is None and p["concurrency"] is None
    # the project has its own database
    assert zd.sql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % p["database"]) == [["1"]]

    for ref in (p["id"], p["slug"]):
        r = user.get("/projects/" + ref)
        assert r.status == 200 and r.json == p, str(r)
    listed = user.get("/projects").json["projects"]
    assert [x["id"] for x in listed] == [p["id"]]

    r = user.patch("/projects/" + p["slug"], {"name": "Renamed"})
    assert r.status == 200, str(r)
    assert r.json["name"] == "Renamed" and r.json["tier"] == "free" and r.json["slug"] == p["slug"]
    assert user.get("/projects/" + p["id"]).json["name"] == "Renamed"

    r = user.delete("/projects/" + p["id"])
    assert r.status == 200 and r.json == {"deleted": True}, str(r)
    assert_error(user.get("/projects/" + p["id"]), 404, "NOT_FOUND")
    assert_error(user.delete("/projects/" + p["id"]), 404, "NOT_FOUND")
    assert user.get("/projects").json["projects"] == []
    assert zd.sql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % p["database"]) == [["0"]]


def test_project_validation(zd, user):
    for body, code in [({}, "INVALID_NAME"), ({"name": ""}, "INVALID_NAME"), ({"name": 7}, "INVALID_NAME"),
                       ({"name": "n" * 129}, "INVALID_NAME"),
                       ({"name": "ok", "slug": "Bad_Slug"}, "INVALID_SLUG"),
                       ({"name": "ok", "slug": "-dash"}, "INVALID_SLUG"),
                       ({"name": "ok", "slug": "dash-"}, "INVALID_SLUG"),
                       ({"name": "ok", "slug": "s" * 64}, "INVALID_SLUG"),
                       ({"name": "ok", "slug": new_uuid()}, "INVALID_SLUG"),
                       ({"name": "!!!"}, "INVALID_SLUG"),
                       ({"name": "ok", "tier": "platinum"}, "INVALID_TIER")]:
        assert_error(user.post("/projects", body), 400, code)
    assert user.get("/projects").json["projects"] == []

    slug = unique("taken")
    p = user.create_project(slug=slug)
    assert p["slug"] == slug
    assert_error(user.post("/projects", {"name": "again", "slug": slug}), 409, "CONFLICT")
    # a refused project leaves no database behind
    orphans = zd.sql("SELECT count(*) FROM pg_database WHERE datname NOT IN "
                     "('postgres', 'template0', 'template1', 'zmesh') AND datname NOT IN (SELECT db_name FROM projects)")
    assert orphans == [["0"]]
    assert_error(user.patch("/projects/" + slug, {"tier": "platinum"}), 400, "INVALID_TIER")
    assert_error(user.patch("/projects/" + slug, {"name": ""}), 400, "INVALID_NAME")
    assert user.get("/projects/" + slug).json == p


def test_users_see_only_their_own_projects(zd, new_user):
    alice, bob = new_user(), new_user()
    p = alice.create_project()
    f = alice.deploy(p["id"], ECHO_JS)
    k = alice.create_key(p["id"])
    inv = alice.invoke(p["id"], f["id"], 1).json["invocation_id"]
    assert all(x["id"] != p["id"] for x in bob.get("/projects").json["projects"])
    for ref in (p["id"], p["slug"]):
        calls = [("GET", "/projects/" + ref, None), ("PATCH", "/projects/" + ref, {"name": "mine"}),
                 ("DELETE", "/projects/" + ref, None),
                 ("POST", "/projects/%s/members" % ref, {"email": bob.email}),
                 ("GET", "/projects/%s/api-keys" % ref, None), ("POST", "/projects/%s/api-keys" % ref, {"name": "k"}),
                 ("DELETE", "/projects/%s/api-keys/%s" % (ref, k["id"]), None),
                 ("GET", fn_path(ref), None), ("POST", fn_path(ref), {"name": "x", "language": "javascript",
                                                                      "code": ECHO_JS})]
        for fref in (f["id"], f["slug"]):
            calls += [("GET", fn_path(ref, fref), None), ("PATCH", fn_path(ref, fref), {"code": "x"}),
                      ("DELETE", fn_path(ref, fref), None), ("POST", fn_path(ref, fref, "/invoke"), {"payload": 1}),
                      ("GET", fn_path(ref, fref, "/versions"), None),
                      ("POST", fn_path(ref, fref, "/versions/1/rollback"), None),
                      ("GET", fn_path(ref, fref, "/invocations"), None),
                      ("GET", fn_path(ref, fref, "/invocations/" + inv), None)]
        for method, path, body in calls:
            assert_error(bob.request(method, path, body), 404, "NOT_FOUND")
    # none of that touched alice's project
    assert alice.get("/projects/" + p["id"]).json == p
    assert alice.get(fn_path(p["id"], f["id"])).json["version"] == 1
    assert [x["id"] for x in alice.get("/projects/%s/api-keys" % p["id"]).json["api_keys"]] == [k["id"]]
    assert len(alice.get(fn_path(p["id"], f["id"], "/invocations")).json["invocations"]) == 1


def test_members_share_a_project(zd, new_user):
    alice, bob = new_user(), new_user()
    p = alice.create_project()
    f = alice.deploy(p["id"], ECHO_JS)
    assert_error(bob.get("/projects/" + p["id"]), 404, "NOT_FOUND")
    assert_error(alice.post("/projects/%s/members" % p["id"], {"email": "nobody-%s@example.test" % unique("n")}),
                 404, "NOT_FOUND")
    r = alice.post("/projects/%s/members" % p["id"], {"email": bob.email})
    assert r.status == 201, str(r)
    assert r.json["user_id"] == bob.user_id and r.json["email"] == bob.email
    assert [x["id"] for x in bob.get("/projects").json["projects"]] == [p["id"]]
    assert bob.get("/projects/" + p["slug"]).status == 200
    assert [x["id"] for x in bob.get(fn_path(p["id"])).json["functions"]] == [f["id"]]
    r = bob.invoke(p["id"], f["slug"], {"from": "bob"})
    assert r.status == 200 and r.json["result"] == {"from": "bob"}, str(r)
    # A member uses the project; only its owner changes, shares or deletes it.
    carol = new_user()
    assert_error(bob.patch("/projects/" + p["id"], {"tier": "enterprise"}), 403, "FORBIDDEN")
    assert_error(bob.post("/projects/%s/members" % p["id"], {"email": carol.email}), 403, "FORBIDDEN")
    assert_error(bob.delete("/projects/" + p["id"]), 403, "FORBIDDEN")
    assert alice.get("/projects/" + p["id"]).json["tier"] == "free"
    assert alice.patch("/projects/" + p["id"], {"name": "renamed"}).status == 200


def test_project_egress_policy(zd, new_user):
    # Open by default; the owner changes it, normalized; a member cannot.
    alice, bob = new_user(), new_user()
    p = alice.create_project()
    assert p["egress"] == {"mode": "open", "allow": []}
    body = {"egress": {"mode": "allowlist", "allow": ["API.Stripe.com", "*.Example.com.", "203.0.113.0/24"]}}
    r = alice.patch("/projects/" + p["id"], body)
    assert r.status == 200, str(r)
    want = {"mode": "allowlist", "allow": ["api.stripe.com", "*.example.com", "203.0.113.0/24"]}
    assert r.json["egress"] == want and r.json["name"] == p["name"]
    assert alice.get("/projects/" + p["slug"]).json["egress"] == want
    for bad, words in [({"mode": "closed"}, "egress.mode"), ({"allow": ["a..b"]}, "egress.allow[0]"),
                       ({"allow": ["10.0.0.1/8"]}, "did you mean 10.0.0.0/8?"), ({"other": 1}, "unknown field"),
                       ({"allow": ["h%d.example.com" % i for i in range(101)]}, "at most 100"), ("open", "want")]:
        r = alice.patch("/projects/" + p["id"], {"egress": bad})
        assert_error(r, 400, "INVALID_EGRESS")
        assert words in r.json["error"]["message"], str(r)
    assert_error(alice.post("/projects", {"name": "x", "egress": {"mode": "none"}}), 400, "UNKNOWN_FIELD")
    assert alice.post("/projects/%s/members" % p["id"], {"email": bob.email}).status == 201
    assert_error(bob.patch("/projects/" + p["id"], {"egress": {"mode": "open"}}), 403, "FORBIDDEN")
    r = alice.patch("/projects/" + p["id"], {"egress": {"mode": "none"}})
    assert r.status == 200 and r.json["egress"] == {"mode": "none", "allow": []}, str(r)
    assert zd.sql("SELECT egress->>'mode' FROM projects WHERE id = '%s'" % p["id"]) == [["none"]]


def test_only_admins_grant_tiers(zd, admin, user, new_user):
    # An owner cannot buy themselves a plan: creating at another tier and
    # changing the tier are the operator's.
    assert_error(user.post("/projects", {"name": unique("p"), "tier": "enterprise"}), 403, "FORBIDDEN")
    assert [x for x in user.get("/projects").json["projects"]] == [], "a refused create made nothing"
    p = user.create_project(tier="free")  # naming the default is allowed
    assert p["tier"] == "free"
    assert_error(user.patch("/projects/" + p["id"], {"tier": "enterprise"}), 403, "FORBIDDEN")
    assert_error(user.patch("/projects/" + p["id"], {"name": "x", "tier": "pro"}), 403, "FORBIDDEN")
    assert user.get("/projects/" + p["id"]).json == dict(p), "a refused change changed nothing"
    # On a free project the limits of the enterprise plan are refused, on
    # create and on change.
    big = {"name": "big", "language": "javascript", "code": ECHO_JS, "timeout_ms": 900000, "memory_mb": 4096}
    assert_error(user.post(fn_path(p["id"]), big), 400, "INVALID_TIMEOUT")
    f = user.deploy(p["id"], ECHO_JS)
    assert_error(user.patch(fn_path(p["id"], f["id"]), {"memory_mb": 4096}), 400, "INVALID_MEMORY")
    # An admin grants the tier on any project, without being a member of
    # it; then the owner may use its limits.
    r = admin.patch("/projects/" + p["id"], {"tier": "enterprise"})
    assert r.status == 200 and r.json["tier"] == "enterprise", str(r)
    r = user.patch(fn_path(p["id"], f["id"]), {"memory_mb": 4096, "timeout_ms": 900000})
    assert r.status == 200 and r.json["memory_mb"] == 4096, str(r)
    # Another user still sees nothing of it.
    assert_error(new_user().get("/projects/" + p["id"]), 404, "NOT_FOUND")
    # An admin creates a project at any tier.
    r = admin.post("/projects", {"name": unique("p"), "tier": "pro"})
    assert r.status == 201 and r.json["tier"] == "pro", str(r)
    assert admin.delete("/projects/" + r.json["id"]).status == 200


def test_a_user_owns_a_bounded_number_of_projects(zd, new_user):
    u = new_user()
    for i in range(20):
        assert u.post("/projects", {"name": "p%d" % i}).status == 201
    assert_error(u.post("/projects", {"name": "one too many"}), 403, "PROJECT_LIMIT")
    assert len(u.get("/projects").json["projects"]) == 20


def test_login_bounds_the_password_before_looking_the_user_up(zd, user):
    for pw in ("", "x" * 1025):
        for email in (user.email, "nobody@example.test"):
            r = http_request(zd.port, "POST", "/auth/login", json.dumps({"email": email, "password": pw}))
            assert_error(r, 400, "BAD_REQUEST")


# ---- API keys -----------------------------------------------------------------------------


def test_api_keys_shown_once_and_stored_hashed(zd, user, project):
    pid = project["id"]
    f = user.deploy(pid, ECHO_JS)
    assert user.get("/projects/%s/api-keys" % pid).json == {"api_keys": []}
    r = user.post("/projects/%s/api-keys" % pid, {"name": "ci"})
    assert r.status == 201, str(r)
    k = r.json
    assert set(k) >= {"id", "name", "prefix", "created_at", "key"}
    assert k["name"] == "ci" and k["key"].startswith("zmk_") and re.fullmatch(r"[A-Za-z0-9_-]+", k["key"])
    assert k["key"].startswith(k["prefix"]) and len(k["prefix"]) < len(k["key"]) - 16
    r = user.get("/projects/%s/api-keys" % pid)
    listed = r.json["api_keys"]
    assert [x["id"] for x in listed] == [k["id"]]
    assert "key" not in listed[0] and listed[0]["prefix"] == k["prefix"] and listed[0]["last_used_at"] is None
    assert k["key"].encode() not in r.data
    # only a hash is kept: the key appears in no column of the control plane
    assert zd.sql("SELECT count(*) FROM api_keys a WHERE position('%s' IN a::text) > 0" % k["key"]) == [["0"]]
    assert zd.sql("SELECT count(*) FROM api_keys WHERE id = '%s'" % k["id"]) == [["1"]]

    r = invoke_by_key(zd, k["key"], f["slug"], b'{"hello": "key"}')
    assert r.status == 200 and r.json["result"] == {"hello": "key"}, str(r)
    assert user.get("/projects/%s/api-keys" % pid).json["api_keys"][0]["last_used_at"] is not None

    assert_error(user.post("/projects/%s/api-keys" % pid, {}), 400, "INVALID_NAME")
    assert_error(user.post("/projects/%s/api-keys" % pid, {"name": ""}), 400, "INVALID_NAME")
    r = user.delete("/projects/%s/api-keys/%s" % (pid, k["id"]))
    assert r.status == 200 and r.json == {"deleted": True}, str(r)
    assert_error(invoke_by_key(zd, k["key"], f["slug"], b"1"), 401, "INVALID_API_KEY")
    assert_error(user.delete("/projects/%s/api-keys/%s" % (pid, k["id"])), 404, "NOT_FOUND")
    assert_error(user.delete("/projects/%s/api-keys/not-a-key" % pid), 404, "NOT_FOUND")
    assert user.get("/projects/%s/api-keys" % pid).json == {"api_keys": []}


def test_api_key_invokes_only_its_own_project(zd, user):
    a, b = user.create_project(), user.create_project()
    slug = unique("shared")
    user.deploy(a["id"], "exports.handler = async () => 'from A';", slug=slug)
    user.deploy(b["id"], "exports.handler = async () => 'from B';", slug=slug)
    only_b = user.deploy(b["id"], ECHO_JS)
    ka, kb = user.create_key(a["id"])["key"], user.create_key(b["id"])["key"]
    assert invoke_by_key(zd, ka, slug).json["result"] == "from A"
    assert invoke_by_key(zd, kb, slug).json["result"] == "from B"
    assert_error(invoke_by_key(zd, ka, only_b["slug"], b"1"), 404, "NOT_FOUND")
    assert_error(invoke_by_key(zd, ka, only_b["id"], b"1"), 404, "NOT_FOUND")
    assert_error(invoke_by_key(zd, kb, unique("missing"), b"1"), 404, "NOT_FOUND")
    assert_error(invoke_by_key(zd, None, slug, b"1"), 401, "UNAUTHORIZED")
    for bad in ["zmk_" + "0" * 40, "not-a-key", "", ka[:-1], ka + "x"]:
        r = http_request(zd.port, "POST", "/api/functions/" + slug, b"1", {"x-api-key": bad})
        assert r.status == 401 and r.code in ("INVALID_API_KEY", "UNAUTHORIZED"), str(r)
        if bad:
            assert r.code == "INVALID_API_KEY", str(r)
    # a JWT is not an API key
    r = http_request(zd.port, "POST", "/api/functions/" + slug, b"1", {"Authorization": "Bearer " + user.token})
    assert_error(r, 401, "INVALID_API_KEY")


def test_api_key_body_is_the_payload(zd, user, project):
    f = user.deploy(project["id"], "exports.handler = async (p) => ({type: p === null ? 'null' : typeof p, p});")
    key = user.create_key(project["id"])["key"]
    for raw, expect in [(b"", {"type": "null", "p": None}), (b"42", {"type": "number", "p": 42}),
                        (b'"text"', {"type": "string", "p": "text"}), (b"[1,[2]]", {"type": "object", "p": [1, [2]]}),
                        (b'{"payload": 5}', {"type": "object", "p": {"payload": 5}}), (b"null", {"type": "null", "p": None})]:
        r = invoke_by_key(zd, key, f["slug"], raw)
        assert r.status == 200 and r.json["result"] == expect, str((raw, r))


# ---- functions -------------------------------------------------------------------------------


def test_function_crud(zd, user, project):
    pid = project["id"]
    suffix = unique("s")[2:]
    secret_a, secret_b = "sa-" + unique("v"), "sb-" + unique("v")
    r = user.post(fn_path(pid), {"name": "Hello World %s" % suffix, "language": "javascript",
                                 "code": "exports.handler = async (p, z) => [z.env.B_VAR, z.env.A_VAR];",
                                 "env_vars": {"B_VAR": secret_b, "A_VAR": secret_a}})
    assert r.status == 201, str(r)
    f = r.json
    assert set(f) >= {"id", "project_id", "name", "slug", "language", "entry_point", "timeout_ms", "memory_mb",
                      "status", "version", "env_vars", "created_at", "updated_at"}
    assert UUID_RE.match(f["id"]) and f["project_id"] == pid
    assert f["slug"] == "hello-world-%s" % suffix and f["language"] == "javascript"
    assert f["entry_point"] == "handler" and f["timeout_ms"] == 10000 and f["memory_mb"] == 256
    assert f["status"] == "active" and f["version"] == 1
    assert sorted(f["env_vars"]) == ["A_VAR", "B_VAR"]
    assert secret_a.encode() not in r.data and secret_b.encode() not in r.data

    for ref in (f["id"], f["slug"]):
        r = user.get(fn_path(pid, ref))
        assert r.status == 200, str(r)
        assert r.json["code"] == "exports.handler = async (p, z) => [z.env.B_VAR, z.env.A_VAR];"
        assert {k: v for k, v in r.json.items() if k != "code"} == f
        assert secret_a.encode() not in r.data and secret_b.encode() not in r.data
    r = user.get(fn_path(pid))
    assert [x["id"] for x in r.json["functions"]] == [f["id"]]
    assert secret_a.encode() not in r.data
    # the values are kept: the function sees them
    assert user.invoke(pid, f["slug"]).json["result"] == [secret_b, secret_a]

    r = user.patch(fn_path(pid, f["slug"]), {"code": "exports.handler = async () => 'second';"})
    assert r.status == 200 and r.json["version"] == 2, str(r)
    assert user.invoke(pid, f["id"]).json["result"] == "second"
    r = user.patch(fn_path(pid, f["id"]), {"timeout_ms": 5000, "memory_mb": 128, "env_vars": {"C_VAR": "c"}})
    assert r.status == 200, str(r)
    assert r.json["version"] == 3 and r.json["timeout_ms"] == 5000 and r.json["memory_mb"] == 128
    assert r.json["env_vars"] == ["C_VAR"]
    r = user.patch(fn_path(pid, f["id"]), {"name": "Renamed", "slug": "renamed-" + suffix, "entry_point": "main",
                                           "code": "exports.main = async () => 'main';"})
    assert r.status == 200 and r.json["slug"] == "renamed-" + suffix and r.json["entry_point"] == "main", str(r)
    assert user.invoke(pid, "renamed-" + suffix).json["result"] == "main"
    assert_error(user.get(fn_path(pid, f["slug"])), 404, "NOT_FOUND")
    versions = user.get(fn_path(pid, f["id"], "/versions")).data
    assert secret_a.encode() not in versions and secret_b.encode() not in versions

    r = user.delete(fn_path(pid, f["id"]))
    assert r.status == 200 and r.json == {"deleted": True}, str(r)
    for method, tail in [("GET", ""), ("DELETE", ""), ("PATCH", ""), ("POST", "/invoke"), ("GET", "/versions"),
                         ("GET", "/invocations")]:
        assert_error(user.request(method, fn_path(pid, f["id"], tail), body={}), 404, "NOT_FOUND")
    assert user.get(fn_path(pid)).json == {"functions": []}
    assert_error(user.get(fn_path(pid, new_uuid())), 404, "NOT_FOUND")


def _create_errors():
    long_code = "//" + "x" * (1024 * 1024 - 1)
    return [
        ({"bogus": 1}, "UNKNOWN_FIELD"),
        ({"name": ""}, "INVALID_NAME"),
        ({"name": "n" * 129}, "INVALID_NAME"),
        ({"slug": "Upper"}, "INVALID_SLUG"),
        ({"slug": "under_score"}, "INVALID_SLUG"),
        ({"slug": "-lead"}, "INVALID_SLUG"),
        ({"slug": "trail-"}, "INVALID_SLUG"),
        ({"slug": "a" * 64}, "INVALID_SLUG"),
        ({"slug": ""}, "INVALID_SLUG"),
        ({"slug": "has space"}, "INVALID_SLUG"),
        ({"slug": "0f8fad5b-d9cb-469f-a165-70867728950e"}, "INVALID_SLUG"),
        ({"name": "!!!"}, "INVALID_SLUG"),
        ({"language": "ruby"}, "INVALID_LANGUAGE"),
        ({"language": "typescript"}, "INVALID_LANGUAGE"),
        ({"entry_point": "1abc"}, "INVALID_ENTRY_POINT"),
        ({"entry_point": "a b"}, "INVALID_ENTRY_POINT"),
        ({"entry_point": "a.b"}, "INVALID_ENTRY_POINT"),
        ({"entry_point": ""}, "INVALID_ENTRY_POINT"),
        ({"code": ""}, "INVALID_CODE"),
        ({"code": long_code}, "INVALID_CODE"),
        ({"timeout_ms": 30001}, "INVALID_TIMEOUT"),
        ({"timeout_ms": 0}, "INVALID_TIMEOUT"),
        ({"timeout_ms": -5}, "INVALID_TIMEOUT"),
        ({"timeout_ms": "1000"}, "INVALID_TIMEOUT"),
        ({"memory_mb": 257}, "INVALID_MEMORY"),
        ({"memory_mb": 63}, "INVALID_MEMORY"),
        ({"memory_mb": 1.5}, "INVALID_MEMORY"),
        ({"env_vars": ["A"]}, "INVALID_ENV_VARS"),
        ({"env_vars": "A=1"}, "INVALID_ENV_VARS"),
        ({"env_vars": {"A": 1}}, "INVALID_ENV_VARS"),
        ({"env_vars": {"A": None}}, "INVALID_ENV_VARS"),
        ({"env_vars": {"1A": "x"}}, "INVALID_ENV_VARS"),
        ({"env_vars": {"A-B": "x"}}, "INVALID_ENV_VARS"),
        ({"env_vars": {"": "x"}}, "INVALID_ENV_VARS"),
        ({"env_vars": {"A": "v" * 100000}}, "INVALID_ENV_VARS"),
    ] + [({"env_vars": {"OK_VAR": "x", name: "x"}}, "RESERVED_ENV_VAR") for name in [
        "NODE_OPTIONS", "NODE_PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME",
        "ZMESH_X", "ZMESH_DSN", "PGPASSWORD", "PGHOST", "PATH", "HOME", "JWT_SECRET_KEY", "DATABASE_URL"]]


def test_function_create_validation(zd, user, project):
    pid = project["id"]
    base = {"name": "valid", "language": "javascript", "code": ECHO_JS}
    for change, code in _create_errors():
        body = dict(base, **change)
        assert_error(user.post(fn_path(pid), body), 400, code)
    for missing in ("name", "language", "code"):
        r = user.post(fn_path(pid), {k: v for k, v in base.items() if k != missing})
        assert r.status == 400 and r.code, str(r)
    assert_error(user.post(fn_path(pid), [base]), 400, "BAD_REQUEST")
    assert user.get(fn_path(pid)).json == {"functions": []}, "a refused create left a function behind"

    # the limits: code of exactly the size limit, the free tier's maxima
    r = user.post(fn_path(pid), dict(base, name="big", code="//" + "x" * (1024 * 1024 - 2)))
    assert r.status == 201, str(r)
    r = user.post(fn_path(pid), dict(base, name="edge", timeout_ms=30000, memory_mb=256))
    assert r.status == 201 and r.json["timeout_ms"] == 30000 and r.json["memory_mb"] == 256, str(r)
    r = user.post(fn_path(pid), dict(base, name="small", timeout_ms=1, memory_mb=64))
    assert r.status == 201, str(r)
    # slugs are unique per project
    assert_error(user.post(fn_path(pid), dict(base, name="edge")), 409, "CONFLICT")
    other = user.create_project()
    r = user.post(fn_path(other["id"]), dict(base, name="edge"))
    assert r.status == 201 and r.json["slug"] == "edge", str(r)


def test_function_limits_follow_the_tier(zd, user, grant_tier):
    p = grant_tier(user.create_project(), "pro")
    base = {"name": "x", "language": "python", "code": "def handler(p):\n    return p\n"}
    r = user.post(fn_path(p["id"]), dict(base, timeout_ms=300000, memory_mb=1024))
    assert r.status == 201, str(r)
    assert_error(user.post(fn_path(p["id"]), dict(base, name="y", timeout_ms=300001)), 400, "INVALID_TIMEOUT")
    assert_error(user.post(fn_path(p["id"]), dict(base, name="y", memory_mb=1025)), 400, "INVALID_MEMORY")
    e = grant_tier(user.create_project(), "enterprise")
    r = user.post(fn_path(e["id"]), dict(base, timeout_ms=900000, memory_mb=4096))
    assert r.status == 201, str(r)
    assert_error(user.post(fn_path(e["id"]), dict(base, name="y", timeout_ms=900001)), 400, "INVALID_TIMEOUT")
    assert_error(user.post(fn_path(e["id"]), dict(base, name="y", memory_mb=4097)), 400, "INVALID_MEMORY")


def test_function_patch_validation(zd, user, project):
    pid = project["id"]
    f = user.deploy(pid, ECHO_JS, env_vars={"KEEP": "kept-value"})
    other = user.deploy(pid, ECHO_JS)
    for change, code in [({"bogus": 1}, "UNKNOWN_FIELD"), ({"name": ""}, "INVALID_NAME"),
                         ({"slug": "Bad"}, "INVALID_SLUG"), ({"language": "go"}, "INVALID_LANGUAGE"),
                         ({"entry_point": "9"}, "INVALID_ENTRY_POINT"), ({"code": ""}, "INVALID_CODE"),
                         ({"timeout_ms": 999999}, "INVALID_TIMEOUT"), ({"memory_mb": 2048}, "INVALID_MEMORY"),
                         ({"env_vars": {"LD_PRELOAD": "/x.so"}}, "RESERVED_ENV_VAR"),
                         ({"env_vars": {"NODE_OPTIONS": "--require /x"}}, "RESERVED_ENV_VAR"),
                         ({"env_vars": {"A": 5}}, "INVALID_ENV_VARS")]:
        assert_error(user.patch(fn_path(pid, f["id"]), change), 400, code)
    assert_error(user.patch(fn_path(pid, f["id"]), {"slug": other["slug"]}), 409, "CONFLICT")
    after = user.get(fn_path(pid, f["id"])).json
    assert after["version"] == 1 and after["slug"] == f["slug"] and after["env_vars"] == ["KEEP"]
    assert user.get(fn_path(pid, f["id"], "/versions")).json["versions"] == []
    assert user.invoke(pid, f["id"], "still").json["result"] == "still"


# ---- versions -----------------------------------------------------------------------------------


def code_returning(value):
    return "exports.handler = async () => %s;" % json.dumps(value)


def test_versions_and_rollback_of_a_rollback(zd, user, project):
    pid = project["id"]
    a, b, c = code_returning("A"), code_returning("B"), code_returning("C")
    f = user.deploy(pid, a)
    fid = f["id"]

    def state():
        g = user.get(fn_path(pid, fid)).json
        r = user.invoke(pid, fid)
        assert r.status == 200, str(r)
        return g["version"], g["code"], g["timeout_ms"], r.json["result"]

    assert user.get(fn_path(pid, fid, "/versions")).json == {"current": 1, "versions": []}
    assert user.patch(fn_path(pid, fid), {"code": b}).json["version"] == 2
    assert user.patch(fn_path(pid, f["slug"]), {"code": c, "timeout_ms": 2000}).json["version"] == 3
    assert state() == (3, c, 2000, "C")

    v = user.get(fn_path(pid, fid, "/versions")).json
    assert v["current"] == 3
    assert [(x["version"], x["code"], x["timeout_ms"]) for x in v["versions"]] == [(2, b, 10000), (1, a, 10000)]
    for x in v["versions"]:
        assert set(x) >= {"version", "code", "entry_point", "language", "timeout_ms", "memory_mb", "created_at"}
        assert x["language"] == "javascript" and x["entry_point"] == "handler" and x["memory_mb"] == 256

    r = user.post(fn_path(pid, fid, "/versions/1/rollback"))
    assert r.status == 200, str(r)
    assert r.json["rolled_back_to"] == 1 and r.json["version"] == 4 and r.json["id"] == fid
    assert state() == (4, a, 10000, "A")
    v = user.get(fn_path(pid, fid, "/versions")).json
    assert v["current"] == 4
    assert [(x["version"], x["code"]) for x in v["versions"]] == [(3, c), (2, b), (1, a)]

    # the rollback itself is rolled back: version 3 was the state it replaced
    r = user.post(fn_path(pid, f["slug"], "/versions/3/rollback"))
    assert r.status == 200 and r.json["rolled_back_to"] == 3 and r.json["version"] == 5, str(r)
    assert state() == (5, c, 2000, "C")
    # and back again to what the first rollback made
    r = user.post(fn_path(pid, fid, "/versions/4/rollback"))
    assert r.status == 200 and r.json["version"] == 6, str(r)
    assert state() == (6, a, 10000, "A")
    assert [x["version"] for x in user.get(fn_path(pid, fid, "/versions")).json["versions"]] == [5, 4, 3, 2, 1]

    for bad in ["99", "0", "-1", "abc", "1.5", "99999999999999999999"]:
        assert_error(user.post(fn_path(pid, fid, "/versions/%s/rollback" % bad)), 404, "NOT_FOUND")
    assert user.get(fn_path(pid, fid, "/versions")).json["current"] == 6, "a refused rollback changed the function"

    # every invocation recorded the version that ran
    runs = user.get(fn_path(pid, fid, "/invocations")).json["invocations"]
    assert [x["version"] for x in runs] == [6, 5, 4, 3]


def test_rollback_restores_language_entry_point_and_env(zd, user, project):
    pid = project["id"]
    f = user.deploy(pid, "exports.main = async (p, z) => 'js ' + z.env.WHO;", entry_point="main",
                    env_vars={"WHO": "first"})
    r = user.patch(fn_path(pid, f["id"]), {"language": "python", "change_language": True, "entry_point": "handler",
                                           "code": "def handler(p, zmesh):\n    return 'py ' + zmesh.env.WHO\n",
                                           "env_vars": {"WHO": "second"}})
    assert r.status == 200 and r.json["language"] == "python", str(r)
    assert user.invoke(pid, f["id"]).json["result"] == "py second"
    r = user.post(fn_path(pid, f["id"], "/versions/1/rollback"))
    assert r.status == 200, str(r)
    assert r.json["language"] == "javascript" and r.json["entry_point"] == "main"
    assert user.invoke(pid, f["id"]).json["result"] == "js first"
    r = user.post(fn_path(pid, f["id"], "/versions/2/rollback"))
    assert r.status == 200 and r.json["language"] == "python", str(r)
    assert user.invoke(pid, f["id"]).json["result"] == "py second"


def test_one_lookup_answers_in_the_order_token_project_function(zd, user, new_user):
    # The user, the project and the function come from one query; which one
    # is missing still decides the answer, in that order.
    p = user.create_project()
    f = user.deploy(p["id"], ECHO_JS)
    key = zd.jwt_key()
    now = int(time.time())
    ghost = "Bearer " + make_jwt(key, {"sub": new_uuid(), "iat": now, "exp": now + 600})
    path = "/projects/%s/functions/%s/invoke" % (p["id"], f["id"])
    assert_error(user.request("POST", path, {"payload": 1}, headers={"Authorization": ghost}), 401, "INVALID_TOKEN")
    assert_error(user.post("/projects/%s/functions/%s/invoke" % (new_uuid(), f["id"]), {"payload": 1}), 404,
                 "NOT_FOUND")
    assert_error(user.post("/projects/%s/functions/%s/invoke" % (p["id"], new_uuid()), {"payload": 1}), 404,
                 "NOT_FOUND")
    assert_error(user.post("/projects/%s/functions/%s/invoke" % (p["id"], "no-such-slug"), {"payload": 1}), 404,
                 "NOT_FOUND")
    # Another user's project is as absent as a missing one, function or not.
    other = new_user()
    assert_error(other.post(path, {"payload": 1}), 404, "NOT_FOUND")
    r = user.post("/projects/%s/functions/%s/invoke" % (p["slug"], f["slug"]), {"payload": 7})
    assert r.status == 200 and r.json["result"] == 7, str(r)


def test_api_key_last_use_is_written_at_most_once_a_minute(zd, user, project):
    f = user.deploy(project["id"], ECHO_JS)
    k = user.create_key(project["id"])

    def last_used():
        return zd.sql("SELECT last_used_at FROM api_keys WHERE id = '%s'" % k["id"])[0][0]

    assert invoke_by_key(zd, k["key"], f["slug"], b"1").status == 200
    first = last_used()
    assert first
    assert invoke_by_key(zd, k["key"], f["slug"], b"2").status == 200
    assert last_used() == first
    # A minute later, the next use is written again.
    zd.sql("UPDATE api_keys SET last_used_at = now() - interval '2 minutes' WHERE id = '%s'" % k["id"])
    aged = last_used()
    assert invoke_by_key(zd, k["key"], f["slug"], b"3").status == 200
    assert last_used() > aged


def test_project_role_verifier_is_scram_with_one_iteration(zd, user):
    # The project's role authenticates with SCRAM-SHA-256 against a verifier
    # of one iteration (its password is 192 random bits): a function's
    # connection works, and pays no 4096 PBKDF2 rounds on either side.
    p = user.create_project()
    role = zd.sql("SELECT db_role FROM projects WHERE id = '%s'" % p["id"])[0][0]
    stored = zd.sql("SELECT rolpassword FROM pg_authid WHERE rolname = '%s'" % role, db="postgres")[0][0]
    assert re.fullmatch(r"SCRAM-SHA-256\$1:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=", stored), stored
    f = user.deploy(p["id"], "exports.handler = async (p, zmesh) => (await zmesh.db.queryOne('select current_user as u')).u;")
    r = user.invoke(p["id"], f["id"])
    assert r.status == 200 and r.json["result"] == role, str(r)
