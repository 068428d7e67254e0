"""Custom events over HTTP, against a real daemon: triggers "custom.<type>"
(the resource's rules for them), and POST /projects/{pid}/events by a
member's token and by a project's API key, which queues one job per enabled
trigger of that type whose conditions hold, before answering 202
{event_id, matched}.

What a function receives is read back from its invocation record (an echo
function's result); jobs and records are also checked in the control plane."""

import calendar
import json
import time

import pytest

from conftest import UUID_RE, assert_error, http_request, post_large

ECHO_JS = "exports.handler = async (e) => e;\n"
FAIL_JS = "exports.handler = async () => { throw new Error('refused'); };\n"
EVENT_KEYS = {"trigger", "trigger_id", "type", "data", "event_id", "timestamp", "source", "depth"}


# ---- helpers ------------------------------------------------------------------


def trigger(user, project, fn, event_type, status=201, **fields):
    body = {"event_type": event_type, "function_id": fn["slug"]}
    body.update(fields)
    r = user.post("/projects/%s/triggers" % project["id"], body)
    assert r.status == status, str(r)
    return r.json


def emit(client, pid, body):
    return client.post("/projects/%s/events" % pid, body)


def emit_by_key(zd, pid, key, body):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http_request(zd.port, "POST", "/projects/%s/events" % pid, raw, headers)


def accepted(r, matched):
    assert r.status == 202, str(r)
    assert set(r.json) == {"event_id", "matched"}, str(r)
    assert UUID_RE.match(r.json["event_id"]) and r.json["matched"] == matched, str(r)
    return r.json["event_id"]


def records_of(zd, tid):
    """First attempts recorded for trigger tid: [(id, trigger, function_id)]."""
    return zd.sql("SELECT id, trigger, function_id FROM invocations WHERE trigger_id = '%s' AND attempt = 1 "
                  "ORDER BY started_at" % tid)


def jobs_of(zd, tid):
    return int(zd.sql("SELECT count(*) FROM jobs WHERE trigger_id = '%s'" % tid)[0][0])


def wait_record(client, pid, fid, iid, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/projects/%s/functions/%s/invocations/%s" % (pid, fid, iid))
        if r.status == 200 and r.json["status"] in ("success", "error", "timeout", "dead"):
            return r.json
        assert time.monotonic() < deadline, "invocation %s never ended: %s" % (iid, r)
        time.sleep(0.05)


def received(zd, client, pid, fn, tid):
    """The event fn received for trigger tid (one record, ran successfully)."""
    rows = records_of(zd, tid)
    assert len(rows) == 1, rows
    iid, trig, fid = rows[0]
    assert trig == "event" and fid == fn["id"], rows
    rec = wait_record(client, pid, fn["id"], iid)
    assert rec["status"] == "success", rec
    assert rec["trigger"] == "event" and rec["trigger_id"] == tid, rec
    return json.loads(rec["result_excerpt"])


def assert_event(ev, tid, type_, data, event_id, source, depth=1):
    assert set(ev) == EVENT_KEYS, ev
    assert ev["depth"] == depth, ev
    assert ev["trigger"] == "event" and ev["trigger_id"] == tid and ev["type"] == type_, ev
    assert ev["data"] == data and ev["event_id"] == event_id and ev["source"] == source, ev
    ts = ev["timestamp"]
    assert len(ts) == 24 and ts[10] == "T" and ts[19] == "." and ts.endswith("Z"), ts
    assert abs(calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) - time.time()) < 60


@pytest.fixture
def fn(user, project):
    return user.deploy(project["id"], ECHO_JS)


# ---- the triggers resource --------------------------------------------------------


def test_custom_trigger_crud(zd, user, project, fn):
    pid = project["id"]
    t = trigger(user, project, fn, "custom.order.paid")
    assert t["event_type"] == "custom.order.paid" and t["config"] == {} and t["conditions"] == []
    assert t["enabled"] is True and "url" not in t and "secret" not in t
    t2 = trigger(user, project, fn, "custom.a-z_0.9", config={}, enabled=False,
                 conditions=[{"field": "data.amount", "op": "gte", "value": 100}])
    assert t2["enabled"] is False and t2["conditions"][0]["field"] == "data.amount"
    path = "/projects/%s/triggers/%s" % (pid, t["id"])
    r = user.patch(path, {"conditions": [{"field": "data.currency", "op": "in", "value": ["eur"]}],
                          "event_type": "custom.order.paid", "config": {}})
    assert r.status == 200 and r.json["conditions"][0]["op"] == "in", str(r)
    for body, prefix in [({"event_type": "custom.order.shipped"}, "event_type: cannot change"),
                         ({"config": {"verify": "none"}}, "config.verify: unknown key")]:
        r = user.patch(path, body)
        assert_error(r, 400, "INVALID_TRIGGER")
        assert r.json["error"]["message"].startswith(prefix), str(r)
    for event_type in ["custom.", "custom.Order", "custom.order paid", "custom.custom.x", "custom." + "a" * 101]:
        r = user.post("/projects/%s/triggers" % pid, {"event_type": event_type, "function_id": fn["slug"]})
        assert_error(r, 400, "INVALID_TRIGGER")
        assert r.json["error"]["message"].startswith("event_type: "), str(r)
    r = user.post("/projects/%s/triggers" % pid, {"event_type": "cdc.INSERT.orders", "function_id": fn["slug"]})
    assert_error(r, 400, "INVALID_TRIGGER")
    assert "no table public.orders" in r.json["error"]["message"]
    trigger(user, project, fn, "custom." + "a" * 100)
    assert user.delete(path).status == 200


# ---- emitting -----------------------------------------------------------------------


def test_emit_by_token_runs_matching_triggers(zd, user, project, fn):
    pid = project["id"]
    other = user.deploy(pid, ECHO_JS)
    plain = trigger(user, project, fn, "custom.order.paid")
    big = trigger(user, project, other, "custom.order.paid",
                  conditions=[{"field": "data.amount", "op": "gt", "value": 100}])
    off = trigger(user, project, other, "custom.order.paid", enabled=False)
    elsewhere = trigger(user, project, fn, "custom.order.shipped")
    before = zd.metrics()

    eid = accepted(emit(user, pid, {"type": "order.paid", "data": {"amount": 50, "items": [1, 2]}}), 1)
    assert_event(received(zd, user, pid, fn, plain["id"]), plain["id"], "order.paid",
                 {"amount": 50, "items": [1, 2]}, eid, "api")
    assert records_of(zd, big["id"]) == [] and jobs_of(zd, big["id"]) == 0

    eid2 = accepted(emit(user, project["slug"], {"type": "order.paid", "data": {"amount": 500}}), 2)
    assert eid2 != eid
    assert_event(received(zd, user, pid, other, big["id"]), big["id"], "order.paid", {"amount": 500}, eid2, "api")
    assert len(records_of(zd, plain["id"])) == 2

    # Disabled, or of another type: nothing, ever.
    for t in (off, elsewhere):
        assert records_of(zd, t["id"]) == [] and jobs_of(zd, t["id"]) == 0

    after = zd.metrics()
    assert after["zmesh_custom_events_total"] == before["zmesh_custom_events_total"] + 2
    assert after["zmesh_custom_event_jobs_total"] == before["zmesh_custom_event_jobs_total"] + 3
    assert after["zmesh_events_filtered_total"] >= before["zmesh_events_filtered_total"] + 1


def test_no_match_is_still_accepted(zd, user, project, fn):
    pid = project["id"]
    t = trigger(user, project, fn, "custom.signup",
                conditions=[{"field": "data.plan", "op": "eq", "value": "pro"}])
    # No trigger of the type at all, a condition that fails, a field that is
    # missing, a type mismatch: 202, no job and no record.
    accepted(emit(user, pid, {"type": "nobody.listens"}), 0)
    for data in [{"plan": "free"}, {"seats": 3}, None, "pro", {"plan": ["pro"]}]:
        accepted(emit(user, pid, {"type": "signup", "data": data}), 0)
    assert records_of(zd, t["id"]) == [] and jobs_of(zd, t["id"]) == 0
    eid = accepted(emit(user, pid, {"type": "signup", "data": {"plan": "pro"}}), 1)
    assert_event(received(zd, user, pid, fn, t["id"]), t["id"], "signup", {"plan": "pro"}, eid, "api")


def test_emit_by_api_key(zd, user, project, fn, new_user):
    pid = project["id"]
    t = trigger(user, project, fn, "custom.invoice.sent",
                conditions=[{"field": "source", "op": "eq", "value": "api_key"}])
    key = user.create_key(pid)["key"]
    eid = accepted(emit_by_key(zd, pid, key, {"type": "invoice.sent", "data": [1, "two"]}), 1)
    assert_event(received(zd, user, pid, fn, t["id"]), t["id"], "invoice.sent", [1, "two"], eid, "api_key")
    # The project by its slug too; data defaults to null.
    accepted(emit_by_key(zd, project["slug"], key, {"type": "invoice.sent"}), 1)
    # The condition on source: the same event by token runs nothing.
    accepted(emit(user, pid, {"type": "invoice.sent"}), 0)

    # A key of another project (of the same user, or a stranger's) is not
    # this project's, whether or not the project exists.
    other = user.create_project()
    other_key = user.create_key(other["id"])["key"]
    stranger = new_user()
    sp = stranger.create_project()
    stranger_key = stranger.create_key(sp["id"])["key"]
    for k in (other_key, stranger_key):
        assert_error(emit_by_key(zd, pid, k, {"type": "invoice.sent"}), 403, "FORBIDDEN")
    assert_error(emit_by_key(zd, "no-such-project", key, {"type": "invoice.sent"}), 403, "FORBIDDEN")
    gone = user.create_key(pid, name="gone")
    assert user.delete("/projects/%s/api-keys/%s" % (pid, gone["id"])).status == 200
    assert_error(emit_by_key(zd, pid, gone["key"], {"type": "invoice.sent"}), 401, "INVALID_API_KEY")
    assert_error(emit_by_key(zd, pid, "not-a-key", {"type": "invoice.sent"}), 401, "INVALID_API_KEY")
    assert_error(emit_by_key(zd, pid, "", {"type": "invoice.sent"}), 401, "INVALID_API_KEY")
    assert_error(emit_by_key(zd, pid, None, {"type": "invoice.sent"}), 401, "UNAUTHORIZED")
    # With both, the key decides: a bad key is refused even beside a good token.
    r = user.post("/projects/%s/events" % pid, {"type": "invoice.sent"}, headers={"x-api-key": "not-a-key"})
    assert_error(r, 401, "INVALID_API_KEY")
    # A stranger's token sees no such project.
    assert_error(emit(stranger, pid, {"type": "invoice.sent"}), 404, "NOT_FOUND")
    assert len(records_of(zd, t["id"])) == 2


def test_bad_bodies(zd, user, project, fn):
    pid = project["id"]
    t = trigger(user, project, fn, "custom.order.paid")
    for body in [{}, {"type": ""}, {"type": 5}, {"type": None}, {"type": "Order.Paid"}, {"type": "order paid"},
                 {"type": "custom.order.paid"}, {"type": "a" * 101}, {"type": "ordér"}]:
        r = emit(user, pid, body)
        assert_error(r, 400, "INVALID_EVENT")
        assert r.json["error"]["message"].startswith("type: "), str(r)
    r = emit(user, pid, {"type": "order.paid", "payload": {}})
    assert_error(r, 400, "UNKNOWN_FIELD")
    assert "payload" in r.json["error"]["message"]
    assert_error(emit(user, pid, ["order.paid"]), 400, "BAD_REQUEST")
    r = user.post("/projects/%s/events" % pid, raw=b'{"type": "order.paid"', headers={"Content-Type": "application/json"})
    assert_error(r, 400, "BAD_REQUEST")
    r = user.post("/projects/%s/events" % pid, raw=b"", headers={"Content-Type": "application/json"})
    assert_error(r, 400, "BAD_REQUEST")
    # The body limit (max-body, 6 MiB here) bounds data, as an async
    # invocation's payload.
    big = b'{"type": "order.paid", "data": "' + b"x" * (6 * 1024 * 1024) + b'"}'
    r = post_large(zd.port, "/projects/%s/events" % pid, big,
                   {"Authorization": "Bearer " + user.token, "Content-Type": "application/json"})
    assert r.status == 413, str(r)
    assert_error(zd.anonymous().post("/projects/%s/events" % pid, {"type": "order.paid"}), 401, "UNAUTHORIZED")
    assert records_of(zd, t["id"]) == [] and jobs_of(zd, t["id"]) == 0


def test_failures_retry_and_become_dead_letters(zd, user, project):
    pid = project["id"]
    f = user.deploy(pid, FAIL_JS, retries=0)
    t = trigger(user, project, f, "custom.job.failed")
    eid = accepted(emit(user, pid, {"type": "job.failed", "data": {"n": 1}}), 1)
    deadline = time.monotonic() + 30
    while True:
        dl = user.get("/projects/%s/dead-letters" % pid).json["dead_letters"]
        if dl:
            break
        assert time.monotonic() < deadline, "no dead letter"
        time.sleep(0.1)
    assert len(dl) == 1
    d = dl[0]
    assert d["trigger"] == "event" and d["trigger_id"] == t["id"] and d["attempts"] == 1, d
    assert d["event"]["event_id"] == eid and d["event"]["data"] == {"n": 1} and d["event"]["type"] == "job.failed"


# ---- zmesh.emit from inside a function ------------------------------------------

EMIT_JS = r"""
exports.handler = async (p, zmesh) => {
  const a = await zmesh.emit('order.paid', {amount: p.amount, by: 'js'});
  for (let i = 0; i < (p.more || 0); i++) await zmesh.emit('noise', {i});
  if (p.fail) throw new Error('after emitting');
  let refused = null;
  try { await zmesh.emit('Bad Type', 1); } catch (e) { refused = e.name; }
  return {event_id: a.event_id, refused};
};
"""

EMIT_PY = r"""
def handler(p, zmesh):
    a = zmesh.emit("order.paid", {"amount": p["amount"], "by": "python"})
    try:
        zmesh.emit("custom.x", 1)
        refused = None
    except ValueError:
        refused = "ValueError"
    return {"event_id": a["event_id"], "refused": refused}
"""

# Emits "ping" again for every ping it gets: a chain the depth limit stops.
PING_JS = r"""
exports.handler = async (e, zmesh) => { await zmesh.emit('ping', {}); return {depth: e && e.depth}; };
"""


def test_functions_emit_events_in_both_runtimes(zd, user, project, fn):
    pid = project["id"]
    t = trigger(user, project, fn, "custom.order.paid")
    js = user.deploy(pid, EMIT_JS)
    py = user.deploy(pid, EMIT_PY, language="python")
    r = user.invoke(pid, js["id"], {"amount": 7})
    assert r.status == 200 and r.json["result"]["refused"] == "TypeError", str(r)
    eid = r.json["result"]["event_id"]
    assert_event(received(zd, user, pid, fn, t["id"]), t["id"], "order.paid", {"amount": 7, "by": "js"}, eid,
                 r.json["invocation_id"], depth=1)
    r = user.invoke(pid, py["id"], {"amount": 9})
    assert r.status == 200 and r.json["result"]["refused"] == "ValueError", str(r)
    deadline = time.monotonic() + 30
    while len(records_of(zd, t["id"])) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    iid = records_of(zd, t["id"])[1][0]
    ev = json.loads(wait_record(user, pid, fn["id"], iid)["result_excerpt"])
    assert_event(ev, t["id"], "order.paid", {"amount": 9, "by": "python"}, r.json["result"]["event_id"],
                 r.json["invocation_id"], depth=1)

    # A run that fails emits nothing; one past its tier's limit (free: 10)
    # fails, saying so, and emits nothing either.
    before = len(records_of(zd, t["id"]))
    r = user.invoke(pid, js["id"], {"amount": 1, "fail": True})
    assert r.status == 500, str(r)
    r = user.invoke(pid, js["id"], {"amount": 1, "more": 10})
    assert r.status == 500 and r.json["error"]["name"] == "EmitError", str(r)
    assert "emitted 11 events; the free tier allows 10" in r.json["error"]["message"], str(r)
    time.sleep(1.5)
    assert len(records_of(zd, t["id"])) == before


def test_an_event_chain_stops_at_depth_8(zd, user, project):
    pid = project["id"]
    ping = user.deploy(pid, PING_JS, retries=0)
    t = trigger(user, project, ping, "custom.ping")
    accepted(emit(user, pid, {"type": "ping"}), 1)
    deadline = time.monotonic() + 90
    while True:
        rows = zd.sql("SELECT status, error->>'message', result_excerpt FROM invocations WHERE trigger_id = '%s' "
                      "ORDER BY started_at" % t["id"])
        if len(rows) >= 8 and rows[-1][0] in ("error", "dead"):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)
    time.sleep(1)
    rows = zd.sql("SELECT status, error->>'message', result_excerpt FROM invocations WHERE trigger_id = '%s' "
                  "ORDER BY started_at" % t["id"])
    assert len(rows) == 8, rows
    assert [json.loads(r[2])["depth"] for r in rows[:7]] == list(range(1, 8)), rows
    assert rows[-1][0] in ("error", "dead") and "an event chain stops at depth 8" in rows[-1][1], rows[-1]
