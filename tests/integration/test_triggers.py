"""zmeshd's triggers and webhooks over HTTP, against a real daemon: the
triggers resource (CRUD, tenants, validation), and POST /webhooks/{tid}
with every signature scheme (signatures computed here with hmac/hashlib),
stale timestamps, secret rotation, replays, conditions, the event, the body
limit, and synchronous answers from a real function.

Queued deliveries are checked on the rows they leave in the control plane
(invocations, jobs, webhook_deliveries): a queued (or later) invocation
record with trigger 'webhook' and the trigger's id, and its job."""

import base64
import calendar
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid

import pytest

from conftest import UUID_RE, assert_error, http_request, post_large

ECHO_JS = "exports.handler = async (e) => ({ got: e });\n"

# Keeps its job row while it runs, so that the event can be read from the
# jobs table even where queue workers run jobs as soon as they are queued.
SLOW_JS = "exports.handler = async (e) => { await new Promise((r) => setTimeout(r, 4000)); return 1; };\n"

SYNC_JS = r"""
exports.handler = async (e) => {
  const mode = e.body && e.body.mode;
  if (mode === 'shaped') return { statusCode: 201, headers: { 'X-Thing': 'yes', 'Content-Type': 'text/csv',
      'Connection': 'close', 'Content-Length': '1', 'X-Number': 5 }, body: 'a,b\n1,2' };
  if (mode === 'json') return { statusCode: 418, body: { teapot: true, query: e.query } };
  if (mode === 'empty') return { statusCode: 204 };
  if (mode === 'throw') throw new TypeError('no way');
  return { statusCode: 'nope', seen: { trigger: e.trigger, trigger_id: e.trigger_id, body: e.body } };
};
"""


# ---- signing, as a sender computes it --------------------------------------


def sign_standard(secret, body, msg_id=None, ts=None):
    key = base64.b64decode(secret[len("whsec_"):])
    msg_id = msg_id or "msg_" + secrets.token_hex(8)
    ts = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(key, ("%s.%s." % (msg_id, ts)).encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def sign_stripe(secret, body, ts=None):
    ts = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": "t=%s,v1=%s" % (ts, mac)}


def sign_github(secret, body, delivery=None):
    h = {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    if delivery:
        h["X-GitHub-Delivery"] = delivery
    return h


def sign_hmac(secret, body, header, prefix="", encoding="hex"):
    mac = hmac.new(secret.encode(), body, hashlib.sha256)
    text = mac.hexdigest() if encoding == "hex" else base64.b64encode(mac.digest()).decode()
    return {header: prefix + text}


def deliver(zd, tid, body=b"{}", headers=None, path_suffix="", content_type="application/json"):
    h = {"Content-Type": content_type} if content_type else {}
    h.update(headers or {})
    return http_request(zd.port, "POST", "/webhooks/" + tid + path_suffix, body, h)


# ---- fixtures ---------------------------------------------------------------


@pytest.fixture
def fn(user, project):
    return user.deploy(project["id"], ECHO_JS)


def create(user, project, body, status=201):
    r = user.post("/projects/%s/triggers" % project["id"], body)
    assert r.status == status, str(r)
    return r.json


def webhook(user, project, fn, **config):
    return create(user, project, {"event_type": "webhook", "function_id": fn["slug"], "config": config})


def one(zd, query):
    rows = zd.sql(query)
    assert len(rows) == 1 and len(rows[0]) == 1, rows
    return rows[0][0]


def invocations_of(zd, tid):
    """First attempts recorded for trigger tid: [(id, trigger, status)]."""
    return zd.sql("SELECT id, trigger, status FROM invocations WHERE trigger_id = '%s' AND attempt = 1 "
                  "ORDER BY started_at" % tid)


def jobs_for(zd, iid):
    return int(one(zd, "SELECT count(*) FROM jobs WHERE first_invocation_id = '%s'" % iid))


def assert_queued(zd, tid, iid):
    """iid is a webhook invocation of tid, queued or later, made of one job
    (which may already have run and gone)."""
    rows = [r for r in invocations_of(zd, tid) if r[0] == iid]
    assert rows, "no invocation record %s for trigger %s" % (iid, tid)
    _, trigger, status = rows[0]
    assert trigger == "webhook"
    assert status in ("queued", "running", "success", "error", "timeout", "dead"), status
    n = jobs_for(zd, iid)
    assert n == 1 or (n == 0 and status != "queued"), (n, status)


# ---- the resource ---------------------------------------------------------------


def test_cron_trigger_crud(zd, user, project, fn):
    pid = project["id"]
    t = create(user, project, {"event_type": "cron", "function_id": fn["id"],
                               "config": {"schedule": "*/5 * * * *"}})
    assert UUID_RE.match(t["id"])
    assert t["project_id"] == pid and t["function_id"] == fn["id"] and t["function"] == fn["slug"]
    assert t["event_type"] == "cron" and t["enabled"] is True and t["conditions"] == []
    assert t["config"] == {"schedule": "*/5 * * * *", "timezone": "UTC", "payload": None, "catch_up": "skip",
                           "overlap": "allow"}
    assert "url" not in t and "secret" not in t
    assert t["created_at"] and t["updated_at"]

    t2 = create(user, project, {"event_type": "cron", "function_id": fn["slug"], "enabled": False,
                                "conditions": [{"field": "payload.n", "op": "gte", "value": 2}],
                                "config": {"schedule": "0 9 * * MON-FRI", "timezone": "Europe/Paris",
                                           "payload": {"n": 3}, "catch_up": "latest", "overlap": "skip"}})
    assert t2["enabled"] is False and t2["config"]["timezone"] == "Europe/Paris"
    assert t2["conditions"] == [{"field": "payload.n", "op": "gte", "value": 2}]

    listed = user.get("/projects/%s/triggers" % pid)
    assert listed.status == 200
    assert [x["id"] for x in listed.json["triggers"]] == [t2["id"], t["id"]]  # newest first
    got = user.get("/projects/%s/triggers/%s" % (pid, t["id"]))
    assert got.status == 200 and got.json == t

    other = user.deploy(pid, ECHO_JS)
    r = user.patch("/projects/%s/triggers/%s" % (pid, t["id"]),
                   {"enabled": False, "function_id": other["slug"], "config": {"schedule": "@hourly"},
                    "conditions": [{"field": "payload", "op": "eq", "value": None}]})
    assert r.status == 200, str(r)
    assert r.json["enabled"] is False and r.json["function_id"] == other["id"] and r.json["function"] == other["slug"]
    assert r.json["config"]["schedule"] == "@hourly" and r.json["config"]["catch_up"] == "skip"
    assert r.json["conditions"] == [{"field": "payload", "op": "eq", "value": None}]
    # A field left out stays.
    r = user.patch("/projects/%s/triggers/%s" % (pid, t["id"]), {"enabled": True})
    assert r.status == 200 and r.json["enabled"] is True and r.json["config"]["schedule"] == "@hourly"

    r = user.delete("/projects/%s/triggers/%s" % (pid, t["id"]))
    assert r.status == 200 and r.json == {"deleted": True}
    assert_error(user.get("/projects/%s/triggers/%s" % (pid, t["id"])), 404, "NOT_FOUND")
    assert_error(user.delete("/projects/%s/triggers/%s" % (pid, t["id"])), 404, "NOT_FOUND")
    assert_error(user.get("/projects/%s/triggers/not-an-id" % pid), 404, "NOT_FOUND")


def test_other_users_triggers_are_not_found(zd, user, project, fn, new_user):
    pid = project["id"]
    t = webhook(user, project, fn, verify="github")
    stranger = new_user()
    own = stranger.create_project()
    base = "/projects/%s/triggers/%s" % (pid, t["id"])
    assert_error(stranger.get(base), 404, "NOT_FOUND")
    assert_error(stranger.patch(base, {"enabled": False}), 404, "NOT_FOUND")
    assert_error(stranger.delete(base), 404, "NOT_FOUND")
    assert_error(stranger.post(base + "/rotate-secret"), 404, "NOT_FOUND")
    assert_error(stranger.get("/projects/%s/triggers" % pid), 404, "NOT_FOUND")
    # Through a project of their own, the id is still not theirs.
    assert_error(stranger.get("/projects/%s/triggers/%s" % (own["id"], t["id"])), 404, "NOT_FOUND")
    assert_error(stranger.patch("/projects/%s/triggers/%s" % (own["id"], t["id"]), {"enabled": False}), 404,
                 "NOT_FOUND")
    assert user.get(base).json["enabled"] is True
    assert_error(zd.anonymous().get("/projects/%s/triggers" % pid), 401, "UNAUTHORIZED")


def test_bad_input_names_the_field(zd, user, project, fn, new_user):
    pid = project["id"]
    path = "/projects/%s/triggers" % pid

    def bad(body, prefix, code="INVALID_TRIGGER"):
        r = user.post(path, body)
        assert_error(r, 400, code)
        assert r.json["error"]["message"].startswith(prefix), str(r)

    cron = {"event_type": "cron", "function_id": fn["slug"]}
    bad({"event_type": "queue", "function_id": fn["slug"]}, "event_type:")
    bad({"event_type": "custom.Order Paid", "function_id": fn["slug"]}, "event_type:")
    bad({"event_type": "custom.order.paid", "function_id": fn["slug"], "config": {"verify": "none"}},
        "config.verify: unknown key")
    bad({"event_type": "cdc.INSERT.orders", "function_id": fn["slug"]}, "event_type:")
    bad(dict(cron, config={"schedule": "61 * * * *"}), "config.schedule:")
    bad(dict(cron, config={"schedule": "* * * * *", "timezone": "Mars/Olympus"}),
        'config.timezone: no such time zone "Mars/Olympus"')
    bad(dict(cron, config={"schedule": "* * * * *", "catch_up": "never"}), "config.catch_up:")
    bad(dict(cron, config={"schedule": "* * * * *", "every": 5}), "config.every:")
    bad(dict(cron, config={"schedule": "@daily"}, conditions=[{"field": "a", "op": "eq", "value": 1},
                                                              {"field": "b", "op": "like", "value": "x"}]),
        "conditions[1].op:")
    bad({"event_type": "webhook", "function_id": fn["slug"], "config": {"verify": "md5"}}, "config.verify:")
    bad({"event_type": "webhook", "function_id": fn["slug"], "config": {"verify": "hmac"}}, "config.header:")
    bad({"event_type": "webhook", "function_id": fn["slug"], "config": {"verify": "stripe", "secret": "short"}},
        "config.secret:")
    bad(dict(cron, config={"schedule": "@daily"}, function_id="no-such-fn"), "function_id: no such function")
    bad(dict(cron, config={"schedule": "@daily"}, function_id=str(uuid.uuid4())), "function_id: no such function")
    bad(dict(cron, config={"schedule": "@daily"}, extra=1), "unknown field", code="UNKNOWN_FIELD")
    # A function of another project of the same user, and one of a stranger.
    other_project = user.create_project()
    theirs = user.deploy(other_project["id"], ECHO_JS)
    bad(dict(cron, config={"schedule": "@daily"}, function_id=theirs["id"]), "function_id: no such function")
    bad(dict(cron, config={"schedule": "@daily"}, function_id=theirs["slug"]), "function_id: no such function")
    stranger = new_user()
    sp = stranger.create_project()
    sf = stranger.deploy(sp["id"], ECHO_JS)
    bad(dict(cron, config={"schedule": "@daily"}, function_id=sf["id"]), "function_id: no such function")
    # Not JSON at all.
    r = user.post(path, raw=b"{nope", headers={"Content-Type": "application/json"})
    assert_error(r, 400, "BAD_REQUEST")

    t = create(user, project, dict(cron, config={"schedule": "@daily"}))
    tpath = "%s/%s" % (path, t["id"])
    for body, prefix in [({"event_type": "webhook"}, "event_type: cannot change"),
                         ({"config": {"schedule": "@sometimes"}}, "config.schedule:"),
                         ({"config": {"verify": "none"}}, "config.verify:"),
                         ({"function_id": theirs["id"]}, "function_id: no such function"),
                         ({"enabled": "no"}, "enabled:")]:
        r = user.patch(tpath, body)
        assert_error(r, 400, "INVALID_TRIGGER")
        assert r.json["error"]["message"].startswith(prefix), str(r)
    assert user.get(tpath).json == t  # nothing changed
    assert_error(user.post(tpath + "/rotate-secret"), 400, "INVALID_TRIGGER")


def test_triggers_per_project_are_bounded(zd, user, project, fn):
    zd.sql("INSERT INTO triggers (project_id, function_id, event_type, config, enabled) SELECT '%s', '%s', "
           "'webhook', '{\"verify\": \"none\", \"respond\": \"async\"}', false FROM generate_series(1, 100)"
           % (project["id"], fn["id"]))
    r = user.post("/projects/%s/triggers" % project["id"],
                  {"event_type": "webhook", "function_id": fn["slug"], "config": {"verify": "none"}})
    assert_error(r, 403, "PROJECT_LIMIT")
    # A function that does not exist is still named as such.
    r = user.post("/projects/%s/triggers" % project["id"],
                  {"event_type": "webhook", "function_id": "gone", "config": {"verify": "none"}})
    assert_error(r, 400, "INVALID_TRIGGER")
    assert len(user.get("/projects/%s/triggers" % project["id"]).json["triggers"]) == 100


def test_webhook_secret_shown_on_create_and_rotate_only(zd, user, project, fn):
    pid = project["id"]
    t = webhook(user, project, fn, verify="standard")
    assert t["url"] == "/webhooks/" + t["id"]
    assert t["secret"].startswith("whsec_") and len(base64.b64decode(t["secret"][6:])) == 32
    assert "secret" not in t["config"]
    assert t["config"] == {"verify": "standard", "respond": "async"}
    got = user.get("/projects/%s/triggers/%s" % (pid, t["id"])).json
    listed = user.get("/projects/%s/triggers" % pid).json["triggers"]
    for view in [got] + listed:
        assert "secret" not in view and "secret" not in view["config"]
        assert t["secret"] not in json.dumps(view)
    given = webhook(user, project, fn, verify="stripe", secret="s" * 20)
    assert given["secret"] == "s" * 20
    none = webhook(user, project, fn, verify="none")
    assert "secret" not in none
    # The secret never reaches the log.
    assert t["secret"] not in zd.log_text() and "s" * 20 not in zd.log_text()


# ---- webhooks: 404 and signatures ------------------------------------------------


def test_webhook_not_found(zd, user, project, fn):
    assert_error(deliver(zd, str(uuid.uuid4())), 404, "NOT_FOUND")
    assert_error(deliver(zd, "not-an-id"), 404, "NOT_FOUND")
    cron = create(user, project, {"event_type": "cron", "function_id": fn["slug"], "config": {"schedule": "@daily"}})
    assert_error(deliver(zd, cron["id"]), 404, "NOT_FOUND")
    t = webhook(user, project, fn, verify="none")
    assert deliver(zd, t["id"]).status == 202
    r = user.patch("/projects/%s/triggers/%s" % (project["id"], t["id"]), {"enabled": False})
    assert r.status == 200
    assert_error(deliver(zd, t["id"]), 404, "NOT_FOUND")
    user.delete("/projects/%s/triggers/%s" % (project["id"], t["id"]))
    assert_error(deliver(zd, t["id"]), 404, "NOT_FOUND")


def check_scheme(zd, t, sign, bad_headers):
    body = json.dumps({"n": secrets.token_hex(4)}).encode()
    r = deliver(zd, t["id"], body, sign(body))
    assert r.status == 202, str(r)
    assert r.json["status"] == "queued" and UUID_RE.match(r.json["invocation_id"])
    assert_queued(zd, t["id"], r.json["invocation_id"])
    for h in bad_headers(body):
        r = deliver(zd, t["id"], body, h)
        assert_error(r, 401, "INVALID_SIGNATURE")
    # A signature of other bytes does not sign these.
    assert_error(deliver(zd, t["id"], body + b" ", sign(body)), 401, "INVALID_SIGNATURE")


def test_standard_webhooks(zd, user, project, fn):
    t = webhook(user, project, fn, verify="standard")
    other = "whsec_" + base64.b64encode(b"k" * 32).decode()
    check_scheme(zd, t, lambda b: sign_standard(t["secret"], b),
                 lambda b: [{}, sign_standard(other, b),
                            dict(sign_standard(t["secret"], b), **{"webhook-signature": "v1,AAAA"}),
                            {k: v for k, v in sign_standard(t["secret"], b).items() if k != "webhook-id"}])
    # Several signatures in the header: one good one is enough.
    body = b"{}"
    h = sign_standard(t["secret"], body)
    h["webhook-signature"] = "v1,bm9wZQ== " + h["webhook-signature"]
    assert deliver(zd, t["id"], body, h).status == 202


def test_stripe_webhooks(zd, user, project, fn):
    t = webhook(user, project, fn, verify="stripe")
    assert len(t["secret"]) == 64
    check_scheme(zd, t, lambda b: sign_stripe(t["secret"], b),
                 lambda b: [{}, sign_stripe("x" * 32, b), {"Stripe-Signature": "t=1,v1=zz"}])


def test_github_webhooks(zd, user, project, fn):
    t = webhook(user, project, fn, verify="github")
    check_scheme(zd, t, lambda b: sign_github(t["secret"], b),
                 lambda b: [{}, sign_github("y" * 32, b), {"X-Hub-Signature-256": "sha1=abc"}])


def test_hmac_webhooks(zd, user, project, fn):
    t = webhook(user, project, fn, verify="hmac", header="X-Shop-Signature", prefix="sha256=", secret="z" * 24)
    assert t["secret"] == "z" * 24
    check_scheme(zd, t, lambda b: sign_hmac(t["secret"], b, "X-Shop-Signature", "sha256="),
                 lambda b: [{}, sign_hmac(t["secret"], b, "X-Shop-Signature"),  # no prefix
                            sign_hmac(t["secret"], b, "X-Other", "sha256="),
                            sign_hmac("w" * 24, b, "X-Shop-Signature", "sha256=")])
    t64 = webhook(user, project, fn, verify="hmac", header="X-Sig", encoding="base64")
    check_scheme(zd, t64, lambda b: sign_hmac(t64["secret"], b, "X-Sig", encoding="base64"),
                 lambda b: [{}, sign_hmac(t64["secret"], b, "X-Sig", encoding="hex"), {"X-Sig": "!!notbase64"}])


def test_unsigned_webhook_needs_verify_none(zd, user, project, fn):
    t = webhook(user, project, fn, verify="none")
    r = deliver(zd, t["id"], b'{"a": 1}')
    assert r.status == 202 and r.json["status"] == "queued"
    assert_queued(zd, t["id"], r.json["invocation_id"])


def test_stale_timestamps(zd, user, project, fn):
    before = zd.metrics()["zmesh_webhooks_rejected_total"]
    std = webhook(user, project, fn, verify="standard")
    body = b'{"late": true}'
    for skew in (-400, 400):
        r = deliver(zd, std["id"], body, sign_standard(std["secret"], body, ts=int(time.time()) + skew))
        assert_error(r, 401, "STALE_TIMESTAMP")
    stripe = webhook(user, project, fn, verify="stripe")
    r = deliver(zd, stripe["id"], body, sign_stripe(stripe["secret"], body, ts=int(time.time()) - 400))
    assert_error(r, 401, "STALE_TIMESTAMP")
    # Within the tolerance is fine.
    r = deliver(zd, stripe["id"], body, sign_stripe(stripe["secret"], body, ts=int(time.time()) - 200))
    assert r.status == 202, str(r)
    assert zd.metrics()["zmesh_webhooks_rejected_total"] >= before + 3
    assert not invocations_of(zd, std["id"])


def test_rotation_keeps_the_previous_secret(zd, user, project, fn):
    pid = project["id"]
    t = webhook(user, project, fn, verify="github")
    old = t["secret"]
    r = user.post("/projects/%s/triggers/%s/rotate-secret" % (pid, t["id"]))
    assert r.status == 200, str(r)
    new = r.json["secret"]
    assert r.json["id"] == t["id"] and new != old and len(new) == 64
    expires = r.json["previous_secret_expires_at"]
    assert expires
    body = b'{"rot": 1}'
    for secret in (old, new):
        assert deliver(zd, t["id"], body, sign_github(secret, body)).status == 202
    assert_error(deliver(zd, t["id"], body, sign_github("q" * 40, body)), 401, "INVALID_SIGNATURE")
    assert "secret" not in user.get("/projects/%s/triggers/%s" % (pid, t["id"])).json
    # Once its 24 h are over, the previous secret is refused.
    zd.sql("UPDATE triggers SET previous_secret_until = now() - interval '1 second' WHERE id = '%s'" % t["id"])
    assert_error(deliver(zd, t["id"], body, sign_github(old, body)), 401, "INVALID_SIGNATURE")
    assert deliver(zd, t["id"], body, sign_github(new, body)).status == 202
    # Standard secrets rotate into standard secrets.
    s = webhook(user, project, fn, verify="standard")
    r = user.post("/projects/%s/triggers/%s/rotate-secret" % (pid, s["id"]))
    assert r.status == 200 and r.json["secret"].startswith("whsec_")
    for secret in (s["secret"], r.json["secret"]):
        assert deliver(zd, s["id"], body, sign_standard(secret, body)).status == 202
    # Nothing to rotate without a signature.
    n = webhook(user, project, fn, verify="none")
    assert_error(user.post("/projects/%s/triggers/%s/rotate-secret" % (pid, n["id"])), 400, "INVALID_TRIGGER")


def test_patch_webhook_secret_follows_the_scheme(zd, user, project, fn):
    pid = project["id"]
    t = webhook(user, project, fn, verify="github")
    path = "/projects/%s/triggers/%s" % (pid, t["id"])
    # Another scheme the old secret fits: kept, not shown.
    r = user.patch(path, {"config": {"verify": "stripe"}})
    assert r.status == 200 and "secret" not in r.json
    body = b"{}"
    assert deliver(zd, t["id"], body, sign_stripe(t["secret"], body)).status == 202
    # standard needs a whsec_ secret: a new one, shown once.
    r = user.patch(path, {"config": {"verify": "standard"}})
    assert r.status == 200 and r.json["secret"].startswith("whsec_")
    assert deliver(zd, t["id"], body, sign_standard(r.json["secret"], body)).status == 202
    assert_error(deliver(zd, t["id"], body, sign_stripe(t["secret"], body)), 401, "INVALID_SIGNATURE")


# ---- replays, conditions, the event ---------------------------------------------


def test_replay_answers_the_first_delivery(zd, user, project, fn):
    t = webhook(user, project, fn, verify="standard")
    body = b'{"order": 7}'
    h = sign_standard(t["secret"], body, msg_id="msg_replay_" + secrets.token_hex(4))
    before = zd.metrics()["zmesh_webhooks_replayed_total"]
    first = deliver(zd, t["id"], body, h)
    assert first.status == 202, str(first)
    iid = first.json["invocation_id"]
    again = deliver(zd, t["id"], body, h)
    assert again.status == 202 and again.json == first.json
    assert zd.metrics()["zmesh_webhooks_replayed_total"] == before + 1
    assert [r[0] for r in invocations_of(zd, t["id"])] == [iid]
    assert_queued(zd, t["id"], iid)
    assert one(zd, "SELECT invocation_id FROM webhook_deliveries WHERE trigger_id = '%s' AND delivery_id = '%s'"
               % (t["id"], h["webhook-id"])) == iid
    # Another id is another delivery.
    h2 = sign_standard(t["secret"], body)
    second = deliver(zd, t["id"], body, h2)
    assert second.status == 202 and second.json["invocation_id"] != iid
    # A delivery seen more than 24 h ago counts as new.
    zd.sql("UPDATE webhook_deliveries SET created_at = now() - interval '25 hours' WHERE trigger_id = '%s' "
           "AND delivery_id = '%s'" % (t["id"], h["webhook-id"]))
    h = sign_standard(t["secret"], body, msg_id=h["webhook-id"])
    third = deliver(zd, t["id"], body, h)
    assert third.status == 202 and third.json["invocation_id"] not in (iid, second.json["invocation_id"])
    assert_queued(zd, t["id"], third.json["invocation_id"])
    assert len(invocations_of(zd, t["id"])) == 3
    assert one(zd, "SELECT invocation_id FROM webhook_deliveries WHERE trigger_id = '%s' AND delivery_id = '%s'"
               % (t["id"], h["webhook-id"])) == third.json["invocation_id"]


def test_concurrent_deliveries_of_one_id_make_one_job(zd, user, project, fn):
    t = webhook(user, project, fn, verify="standard")
    body = b'{"race": true}'
    h = sign_standard(t["secret"], body)
    answers = []
    lock = threading.Lock()

    def send():
        r = deliver(zd, t["id"], body, h)
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert len(answers) == 8 and all(r.status == 202 for r in answers), answers
    ids = {r.json["invocation_id"] for r in answers}
    assert len(ids) == 1, ids
    assert [r[0] for r in invocations_of(zd, t["id"])] == list(ids)
    assert_queued(zd, t["id"], ids.pop())


def test_replay_github_and_configured_id_header(zd, user, project, fn):
    gh = webhook(user, project, fn, verify="github")
    body = b'{"push": 1}'
    h = sign_github(gh["secret"], body, delivery=str(uuid.uuid4()))
    a, b = deliver(zd, gh["id"], body, h), deliver(zd, gh["id"], body, h)
    assert a.status == b.status == 202 and a.json["invocation_id"] == b.json["invocation_id"]
    st = webhook(user, project, fn, verify="stripe", id_header="Idempotency-Key")
    h = dict(sign_stripe(st["secret"], body), **{"Idempotency-Key": "evt_" + secrets.token_hex(6)})
    a, b = deliver(zd, st["id"], body, h), deliver(zd, st["id"], body, h)
    assert a.json["invocation_id"] == b.json["invocation_id"]
    assert len(invocations_of(zd, st["id"])) == 1
    # Without the id header, every delivery is new.
    h = sign_stripe(st["secret"], body)
    a, b = deliver(zd, st["id"], body, h), deliver(zd, st["id"], body, h)
    assert a.json["invocation_id"] != b.json["invocation_id"]


def test_conditions_filter_before_any_job(zd, user, project, fn):
    t = create(user, project, {"event_type": "webhook", "function_id": fn["slug"], "config": {"verify": "none"},
                               "conditions": [{"field": "body.amount", "op": "gt", "value": 100},
                                              {"field": "headers.x-shop", "op": "eq", "value": "main"}]})
    before = zd.metrics()["zmesh_events_filtered_total"]
    for body, shop in [(b'{"amount": 5}', "main"), (b'{"amount": 500}', "other"), (b'{"total": 500}', "main"),
                       (b'"amount"', "main")]:
        r = deliver(zd, t["id"], body, {"X-Shop": shop})
        assert r.status == 202 and r.json == {"status": "filtered"}, str(r)
    assert zd.metrics()["zmesh_events_filtered_total"] == before + 4
    assert invocations_of(zd, t["id"]) == []
    assert int(one(zd, "SELECT count(*) FROM jobs WHERE trigger_id = '%s'" % t["id"])) == 0
    r = deliver(zd, t["id"], b'{"amount": 500}', {"X-Shop": "main"})
    assert r.status == 202 and r.json["status"] == "queued"
    assert_queued(zd, t["id"], r.json["invocation_id"])


def test_event_shape(zd, user, project):
    slow = user.deploy(project["id"], SLOW_JS)
    t = webhook(user, project, slow, verify="hmac", header="X-Sig")
    body = b'{"amount": 12.5, "items": [1, 2]}'
    h = sign_hmac(t["secret"], body, "X-Sig")
    h.update({"X-Custom-Header": "Value One"})
    r = deliver(zd, t["id"], body, h, path_suffix="?a=1&b=two%20words&a=3&flag")
    assert r.status == 202, str(r)
    iid = r.json["invocation_id"]
    rows = zd.sql("SELECT event::text, trigger, trigger_id FROM jobs WHERE first_invocation_id = '%s'" % iid)
    assert len(rows) == 1, rows
    event, trigger, trigger_id = json.loads(rows[0][0]), rows[0][1], rows[0][2]
    assert trigger == "webhook" and trigger_id == t["id"]
    assert set(event) == {"trigger", "trigger_id", "method", "path", "query", "headers", "body", "timestamp"}
    assert event["trigger"] == "webhook" and event["trigger_id"] == t["id"]
    assert event["method"] == "POST" and event["path"] == "/webhooks/" + t["id"]
    assert event["query"] == {"a": "1,3", "b": "two words", "flag": ""}
    assert event["body"] == {"amount": 12.5, "items": [1, 2]}
    assert event["headers"]["x-custom-header"] == "Value One"
    assert event["headers"]["x-sig"] == h["X-Sig"]
    assert event["headers"]["content-type"] == "application/json"
    assert all(k == k.lower() for k in event["headers"])
    ts = event["timestamp"]
    assert len(ts) == 24 and ts[10] == "T" and ts[19] == "." and ts.endswith("Z"), ts
    assert abs(calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) - time.time()) < 60
    # Not JSON: the body is the text.
    r = deliver(zd, t["id"], b"plain words", sign_hmac(t["secret"], b"plain words", "X-Sig"),
                content_type="text/plain")
    assert r.status == 202
    ev = json.loads(one(zd, "SELECT event::text FROM jobs WHERE first_invocation_id = '%s'" % r.json["invocation_id"]))
    assert ev["body"] == "plain words" and ev["query"] == {}


def test_bad_bodies(zd, user, project):
    t = webhook(user, project, user.deploy(project["id"], SLOW_JS), verify="none")
    assert_error(deliver(zd, t["id"], b"{not json"), 400, "BAD_REQUEST")
    assert_error(deliver(zd, t["id"], b"\xff\xfe", content_type="text/plain"), 400, "BAD_REQUEST")
    assert_error(deliver(zd, t["id"], b'{"a":1,"a":2}'), 400, "BAD_REQUEST")
    assert invocations_of(zd, t["id"]) == []
    # +json types are JSON too; an empty JSON body is null.
    r = deliver(zd, t["id"], b'{"x": 1}', content_type="application/vnd.api+json; charset=utf-8")
    assert r.status == 202
    assert json.loads(one(zd, "SELECT event::text FROM jobs WHERE first_invocation_id = '%s'"
                          % r.json["invocation_id"]))["body"] == {"x": 1}
    r = deliver(zd, t["id"], b"")
    assert r.status == 202
    assert json.loads(one(zd, "SELECT event::text FROM jobs WHERE first_invocation_id = '%s'"
                          % r.json["invocation_id"]))["body"] is None


def test_oversized_body_413(zd, user, project, fn):
    t = webhook(user, project, fn, verify="none")
    r = post_large(zd.port, "/webhooks/" + t["id"], b"x" * (7 << 20), {"Content-Type": "text/plain"})
    assert_error(r, 413, "PAYLOAD_TOO_LARGE")
    assert invocations_of(zd, t["id"]) == []


# ---- respond: sync ----------------------------------------------------------------


def test_sync_webhook_answers_with_the_function(zd, user, project):
    f = user.deploy(project["id"], SYNC_JS)
    t = webhook(user, project, f, verify="github", respond="sync")
    body = b'{"mode": "shaped"}'
    r = deliver(zd, t["id"], body, sign_github(t["secret"], body))
    assert r.status == 201, str(r)
    assert r.data == b"a,b\n1,2"
    assert r.headers["content-type"] == "text/csv" and r.headers["x-thing"] == "yes"
    assert "x-number" not in r.headers  # not a string
    assert r.headers.get("connection", "").lower() != "close"
    assert r.headers["content-length"] == str(len(r.data))

    body = b'{"mode": "json"}'
    r = deliver(zd, t["id"], body, sign_github(t["secret"], body), path_suffix="?q=1")
    assert r.status == 418 and r.headers["content-type"] == "application/json"
    assert r.json == {"teapot": True, "query": {"q": "1"}}

    body = b'{"mode": "empty"}'
    r = deliver(zd, t["id"], body, sign_github(t["secret"], body))
    assert r.status == 204 and r.data == b""

    body = b'{"mode": "other"}'
    r = deliver(zd, t["id"], body, sign_github(t["secret"], body))
    assert r.status == 200, str(r)
    assert r.json == {"statusCode": "nope", "seen": {"trigger": "webhook", "trigger_id": t["id"],
                                                     "body": {"mode": "other"}}}

    body = b'{"mode": "throw"}'
    r = deliver(zd, t["id"], body, sign_github(t["secret"], body))
    assert r.status == 500 and r.json["status"] == "error"
    assert r.json["error"]["code"] == "FUNCTION_ERROR" and "no way" in r.json["error"]["message"]

    # The runs are recorded as webhook invocations of this trigger.
    deadline = time.monotonic() + 20
    while len(invocations_of(zd, t["id"])) < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    rows = invocations_of(zd, t["id"])
    assert len(rows) == 5 and all(r[1] == "webhook" for r in rows), rows
    assert sorted(r[2] for r in rows) == ["error", "success", "success", "success", "success"]
    assert_error(deliver(zd, t["id"], body, {}), 401, "INVALID_SIGNATURE")


def test_sync_replay_runs_nothing(zd, user, project):
    f = user.deploy(project["id"], SYNC_JS)
    t = webhook(user, project, f, verify="github", respond="sync")
    body = b'{"mode": "json"}'
    h = sign_github(t["secret"], body, delivery=str(uuid.uuid4()))
    first = deliver(zd, t["id"], body, h)
    assert first.status == 418
    again = deliver(zd, t["id"], body, h)
    assert again.status == 202 and again.json["status"] == "duplicate"
    iid = one(zd, "SELECT invocation_id FROM webhook_deliveries WHERE trigger_id = '%s'" % t["id"])
    assert again.json["invocation_id"] == iid
    deadline = time.monotonic() + 20
    while not invocations_of(zd, t["id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    assert [r[0] for r in invocations_of(zd, t["id"])] == [iid]
