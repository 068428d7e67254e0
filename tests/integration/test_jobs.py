"""The job queue on one node: async invocations (Prefer: respond-async) and
their records, Idempotency-Key, retries with backoff, dead letters and their
retry, on_failure functions, jobs of a deleted function, and the project's
concurrency limit (a queued job waits, it is never refused)."""

import json
import time

import pytest

from conftest import UUID_RE, assert_error, invoke_by_key

ECHO_JS = "exports.handler = async (p) => ({echo: p});"
FAIL_JS = "exports.handler = async (p) => { throw new Error('always fails ' + JSON.stringify(p)); };"
SLEEP_JS = r"""
exports.handler = async (p) => {
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, p.ms));
  return {t0, t1: Date.now()};
};
"""
ASYNC = {"Prefer": "respond-async"}


def wait_invocation(client, pid, fid, iid, statuses, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/projects/%s/functions/%s/invocations/%s" % (pid, fid, iid))
        if r.status == 200 and r.json["status"] in statuses:
            return r.json
        assert time.monotonic() < deadline, "invocation %s never reached %r: %s" % (iid, statuses, r)
        time.sleep(0.05)


def invocations(client, pid, fid):
    r = client.get("/projects/%s/functions/%s/invocations?limit=100" % (pid, fid))
    assert r.status == 200, str(r)
    return r.json["invocations"]


def test_async_invoke_answers_202_and_runs(zd, user, project):
    f = user.deploy(project["id"], ECHO_JS)
    t0 = time.monotonic()
    r = user.post("/projects/%s/functions/%s/invoke" % (project["id"], f["id"]), {"payload": {"n": 7}},
                  headers=ASYNC)
    assert r.status == 202, str(r)
    assert r.json["status"] == "queued" and UUID_RE.match(r.json["invocation_id"])
    iid = r.json["invocation_id"]
    assert r.headers["location"] == "/projects/%s/functions/%s/invocations/%s" % (project["id"], f["id"], iid)
    rec = wait_invocation(user, project["id"], f["id"], iid, ("success",))
    assert time.monotonic() - t0 < 20
    assert rec["trigger"] == "async" and rec["attempt"] == 1 and rec["trigger_id"] is None
    assert json.loads(rec["result_excerpt"]) == {"echo": {"n": 7}}
    # The Location answers for the caller, like any invocation of theirs.
    assert user.get(r.headers["location"]).status == 200


def test_async_by_api_key(zd, user, project):
    f = user.deploy(project["id"], ECHO_JS)
    key = user.create_key(project["id"])["key"]
    from conftest import http_request
    r = http_request(zd.port, "POST", "/api/functions/" + f["slug"], b'{"k": 1}',
                     {"x-api-key": key, "Content-Type": "application/json", "Prefer": "wait=5, respond-async"})
    assert r.status == 202, str(r)
    rec = wait_invocation(user, project["id"], f["id"], r.json["invocation_id"], ("success",))
    assert rec["trigger"] == "async" and json.loads(rec["result_excerpt"]) == {"echo": {"k": 1}}
    # Without the preference the call is synchronous, as before.
    r = invoke_by_key(zd, key, f["slug"], b'{"k": 2}')
    assert r.status == 200 and r.json["result"] == {"echo": {"k": 2}}


def test_idempotency_key(zd, user, project):
    f = user.deploy(project["id"], ECHO_JS)
    path = "/projects/%s/functions/%s/invoke" % (project["id"], f["id"])
    h = dict(ASYNC, **{"Idempotency-Key": "order-42"})
    a = user.post(path, {"payload": {"order": 42}}, headers=h)
    b = user.post(path, {"payload": {"order": 42}}, headers=h)
    assert a.status == 202 and b.status == 202, (a, b)
    assert a.json["invocation_id"] == b.json["invocation_id"]
    wait_invocation(user, project["id"], f["id"], a.json["invocation_id"], ("success",))
    assert len(invocations(user, project["id"], f["id"])) == 1
    # The same key with another payload is refused; another key is another job.
    assert_error(user.post(path, {"payload": {"order": 43}}, headers=h), 422, "IDEMPOTENCY_KEY_REUSED")
    c = user.post(path, {"payload": {"order": 42}}, headers=dict(ASYNC, **{"Idempotency-Key": "order-42b"}))
    assert c.status == 202 and c.json["invocation_id"] != a.json["invocation_id"]
    # Keys are per function: the same key on another function is its own.
    g = user.deploy(project["id"], ECHO_JS)
    d = user.post("/projects/%s/functions/%s/invoke" % (project["id"], g["id"]), {"payload": {"order": 42}},
                  headers=h)
    assert d.status == 202 and d.json["invocation_id"] != a.json["invocation_id"]
    for bad in ("", "x" * 256, "tab\there"):
        assert_error(user.post(path, {"payload": 1}, headers=dict(ASYNC, **{"Idempotency-Key": bad})), 400,
                     "INVALID_IDEMPOTENCY_KEY")


def test_retries_then_dead_letter_then_retry_by_hand(zd, user, project):
    f = user.deploy(project["id"], FAIL_JS, retries=1)
    assert f["retries"] == 1 and f["max_event_age_s"] == 21600 and f["on_failure"] is None
    r = user.post("/projects/%s/functions/%s/invoke" % (project["id"], f["id"]), {"payload": {"n": 1}},
                  headers=ASYNC)
    assert r.status == 202, str(r)
    first = r.json["invocation_id"]
    t0 = time.monotonic()
    rec = wait_invocation(user, project["id"], f["id"], first, ("dead",), timeout=40)
    waited = time.monotonic() - t0
    # Attempt 2 waited about e^1 s (2.7 s, +-20%).
    assert 2.0 < waited < 30, waited
    assert rec["error"]["message"].startswith("always fails")
    recs = sorted(invocations(user, project["id"], f["id"]), key=lambda x: x["attempt"])
    assert [x["attempt"] for x in recs] == [1, 2]
    assert recs[0]["id"] == first and recs[0]["status"] == "dead"
    assert recs[1]["status"] == "error" and recs[1]["trigger"] == "async"

    dl = user.get("/projects/%s/dead-letters" % project["id"])
    assert dl.status == 200, str(dl)
    mine = [d for d in dl.json["dead_letters"] if d["invocation_id"] == first]
    assert len(mine) == 1
    d = mine[0]
    assert d["function_id"] == f["id"] and d["function"] == f["slug"] and d["attempts"] == 2
    assert d["event"] == {"n": 1} and d["last_error"]["code"] == "FUNCTION_ERROR"
    assert d["retried_at"] is None

    # By hand: the event runs again (and fails again, as a new job).
    r = user.post("/projects/%s/dead-letters/%s/retry" % (project["id"], d["id"]))
    assert r.status == 202, str(r)
    again = r.json["invocation_id"]
    assert again != first
    wait_invocation(user, project["id"], f["id"], again, ("error", "dead"), timeout=20)
    d2 = [x for x in user.get("/projects/%s/dead-letters" % project["id"]).json["dead_letters"] if x["id"] == d["id"]]
    assert d2[0]["retried_at"] is not None and d2[0]["retry_invocation_id"] == again
    assert_error(user.post("/projects/%s/dead-letters/%s/retry" % (project["id"], "0" * 8 + "-0000-4000-8000-" + "0" * 12)),
                 404, "NOT_FOUND")


def test_dead_letters_are_the_projects_own(zd, user, new_user, project):
    f = user.deploy(project["id"], FAIL_JS, retries=0)
    r = user.post("/projects/%s/functions/%s/invoke" % (project["id"], f["id"]), {"payload": 1}, headers=ASYNC)
    wait_invocation(user, project["id"], f["id"], r.json["invocation_id"], ("dead",))
    dl = user.get("/projects/%s/dead-letters" % project["id"]).json["dead_letters"]
    other = new_user()
    assert_error(other.get("/projects/%s/dead-letters" % project["id"]), 404, "NOT_FOUND")
    assert_error(other.post("/projects/%s/dead-letters/%s/retry" % (project["id"], dl[0]["id"])), 404, "NOT_FOUND")
    theirs = other.create_project()
    assert_error(other.post("/projects/%s/dead-letters/%s/retry" % (theirs["id"], dl[0]["id"])), 404, "NOT_FOUND")


def test_on_failure_function_gets_the_event(zd, user, project):
    sink = user.deploy(project["id"], "exports.handler = async (e) => e;")
    f = user.deploy(project["id"], FAIL_JS, retries=0, on_failure=sink["slug"])
    assert f["on_failure"] == sink["slug"]
    r = user.post("/projects/%s/functions/%s/invoke" % (project["id"], f["id"]), {"payload": {"order": 9}},
                  headers=ASYNC)
    wait_invocation(user, project["id"], f["id"], r.json["invocation_id"], ("dead",))
    deadline = time.monotonic() + 20
    while True:
        got = [x for x in invocations(user, project["id"], sink["id"]) if x["status"] == "success"]
        if got:
            break
        assert time.monotonic() < deadline, "the on_failure function never ran"
        time.sleep(0.1)
    assert got[0]["trigger"] == "dead_letter"
    ev = json.loads(got[0]["result_excerpt"])
    assert ev["trigger"] == "dead_letter" and ev["original_event"] == {"order": 9} and ev["attempts"] == 1
    assert ev["error"]["code"] == "FUNCTION_ERROR" and ev["invocation_id"] == r.json["invocation_id"]


def test_event_settings_are_validated(zd, user, project):
    path = "/projects/%s/functions" % project["id"]
    base = {"name": "x", "language": "javascript", "code": ECHO_JS}
    for extra in ({"retries": 11}, {"retries": -1}, {"retries": "2"}, {"max_event_age_s": 59},
                  {"max_event_age_s": 21601}, {"on_failure": "Not A Slug"}, {"on_failure": "no-such-fn"}):
        r = user.post(path, dict(base, **extra))
        assert_error(r, 400, "INVALID_EVENT_SETTINGS")
    f = user.deploy(project["id"], ECHO_JS)
    assert_error(user.patch("%s/%s" % (path, f["id"]), {"on_failure": f["slug"]}), 400, "INVALID_EVENT_SETTINGS")
    g = user.deploy(project["id"], ECHO_JS)
    r = user.patch("%s/%s" % (path, f["id"]), {"on_failure": g["slug"], "retries": 0, "max_event_age_s": 60})
    assert r.status == 200 and r.json["on_failure"] == g["slug"] and r.json["retries"] == 0, str(r)
    r = user.patch("%s/%s" % (path, f["id"]), {"on_failure": None})
    assert r.status == 200 and r.json["on_failure"] is None and r.json["retries"] == 0


def test_disabled_function_refuses_async(zd, user, project):
    f = user.deploy(project["id"], ECHO_JS)
    zd.sql("UPDATE functions SET status = 'disabled' WHERE id = '%s'" % f["id"])
    r = user.post("/projects/%s/functions/%s/invoke" % (project["id"], f["id"]), {"payload": 1}, headers=ASYNC)
    assert_error(r, 409, "FUNCTION_DISABLED")


def test_jobs_of_a_deleted_function_are_dropped(zd, user, project):
    f = user.deploy(project["id"], ECHO_JS)
    before = zd.metrics().get("zmesh_jobs_dropped_total", 0)
    # Due in two seconds: still queued when the function goes.
    zd.sql("SELECT zmesh_enqueue('%s', NULL, '1', 'async', NULL, now() + interval '2 seconds')" % f["id"])
    assert user.delete("/projects/%s/functions/%s" % (project["id"], f["id"])).status == 200
    zd.wait_metric("zmesh_jobs_dropped_total", lambda v: v >= before + 1, timeout=20)
    assert zd.sql("SELECT count(*) FROM jobs WHERE function_id = '%s'" % f["id"]) == [["0"]]
    assert any(e.get("event") == "job_dropped" and e.get("reason") for e in zd.log_events())


def test_a_queued_job_waits_for_a_slot_instead_of_failing(zd, user, project):
    zd.sql("UPDATE projects SET concurrency = 1 WHERE id = '%s'" % project["id"])
    f = user.deploy(project["id"], SLEEP_JS)
    path = "/projects/%s/functions/%s/invoke" % (project["id"], f["id"])
    ids = []
    for _ in range(3):
        r = user.post(path, {"payload": {"ms": 400}}, headers=ASYNC)
        assert r.status == 202, str(r)
        ids.append(r.json["invocation_id"])
    spans = []
    for iid in ids:
        rec = wait_invocation(user, project["id"], f["id"], iid, ("success", "error", "timeout", "rejected"),
                              timeout=60)
        assert rec["status"] == "success", rec
        res = json.loads(rec["result_excerpt"])
        spans.append((res["t0"], res["t1"]))
    spans.sort()
    for a, b in zip(spans, spans[1:]):
        assert b[0] >= a[1] - 5, "two ran at once on a project limited to one: %r" % spans
    assert all(x["status"] == "success" for x in invocations(user, project["id"], f["id"]))


def test_version_is_pinned_at_enqueue(zd, user, project):
    f = user.deploy(project["id"], "exports.handler = async () => 'v1';")
    # Queued to run in a second; the function changes meanwhile.
    iid = zd.sql("SELECT zmesh_enqueue('%s', NULL, 'null', 'async', NULL, now() + interval '1 second')"
                 % f["id"])[0][0]
    r = user.patch("/projects/%s/functions/%s" % (project["id"], f["id"]), {"code": "exports.handler = async () => 'v2';"})
    assert r.status == 200 and r.json["version"] == 2
    rec = wait_invocation(user, project["id"], f["id"], iid, ("success",))
    assert rec["version"] == 1 and json.loads(rec["result_excerpt"]) == "v1"


def test_metrics_count_the_queue(zd, user, project):
    f = user.deploy(project["id"], ECHO_JS)
    m0 = zd.metrics()
    r = user.post("/projects/%s/functions/%s/invoke" % (project["id"], f["id"]), {"payload": 1}, headers=ASYNC)
    wait_invocation(user, project["id"], f["id"], r.json["invocation_id"], ("success",))
    zd.wait_metric("zmesh_jobs_finished_total", lambda v: v >= m0["zmesh_jobs_finished_total"] + 1)
    assert zd.metrics()["zmesh_jobs_enqueued_total"] >= m0["zmesh_jobs_enqueued_total"] + 1
