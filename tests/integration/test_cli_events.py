"""The client's event commands: zmesh triggers, zmesh dead-letters,
zmesh invoke --async and the retry settings of functions deploy.

Two halves. The first drives the `zmesh` binary against a small HTTP server
of this file on 127.0.0.1 that records every request and answers what the
API contract says: it proves what the client sends (methods, paths, bodies,
Prefer and Idempotency-Key headers), that it refuses bad arguments before
sending anything, and how it shows answers. The second drives it against a
real zmeshd (test_cli.py's fixtures: embedded PostgreSQL, temporary state)
end to end: async invocations, cron and webhook triggers, dead letters.

$ZMESH_CLI names the client, $ZMESHD the daemon (ctest sets both); the
second half needs root, as test_cli.py does.
"""

import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from test_cli import CLI, Cli, daemon, fn_url, homes, http, me, unique  # noqa: F401 (fixtures)

PID = "5f0b1e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
TID = "0d4c8a1e-9b7f-4c3e-a2d1-6f5e4d3c2b1a"
IID = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"
DLID = "1e2d3c4b-5a69-4788-97a6-b5c4d3e2f1a0"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def require_cli():
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.fail("set ZMESH_CLI to the zmesh binary (ctest does)", pytrace=False)


# ---- a recording server -----------------------------------------------------------


class Recorder:
    """An HTTP server on 127.0.0.1: every request is kept as
    (method, path, lower-case headers, parsed JSON body or None); answers
    come from `routes`, {(method, path): (status, body)}, else 404."""

    def __init__(self):
        self.requests, self.routes = [], {}
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                rec.requests.append((self.command, self.path, headers, body))
                status, out = rec.routes.get((self.command, self.path),
                                             (404, {"error": {"code": "NOT_FOUND", "message": "no route"}}))
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def only(self):
        """The one request made."""
        assert len(self.requests) == 1, self.requests
        return self.requests[0]


@pytest.fixture(scope="module")
def recorder():
    require_cli()
    r = Recorder()
    yield r
    r.close()


@pytest.fixture
def rec(recorder):
    recorder.requests.clear()
    recorder.routes.clear()
    return recorder


@pytest.fixture
def user(rec):
    """A client logged in to the recording server, project PID chosen."""
    root = tempfile.mkdtemp(prefix="zcli-ev-")
    config = os.path.join(root, "config.json")
    with open(config, "w") as f:
        json.dump({"url": rec.url, "token": "tok-123", "email": "a@b.c", "project": PID, "project_slug": "p"}, f)
    os.chmod(config, 0o600)
    yield Cli(None, root, config=config)
    shutil.rmtree(root, ignore_errors=True)


def base(tail=""):
    return "/projects/%s%s" % (PID, tail)


def trigger_json(**over):
    t = {"id": TID, "project_id": PID, "function_id": "9f8e7d6c-5b4a-4938-8271-605f4e3d2c1b", "function": "my-fn",
         "event_type": "cron",
         "config": {"schedule": "*/5 * * * *", "timezone": "Europe/Paris", "payload": None, "catch_up": "skip",
                    "overlap": "allow"},
         "conditions": [], "enabled": True, "created_at": "2026-12-04T10:00:00.000+00:00",
         "updated_at": "2026-12-04T10:00:00.000+00:00"}
    t.update(over)
    return t


# ---- help and usage ---------------------------------------------------------------------


def test_help_shows_the_event_commands(rec, user):
    out = user.ok("--help").out
    for words in ("triggers list", "triggers create --function NAME --cron", "--webhook standard|stripe|github",
                  "triggers get|delete|enable|disable ID", "triggers rotate-secret ID", "dead-letters list",
                  "dead-letters retry ID", "invoke NAME --async", "--retries N"):
        assert words in out, (words, out)
    for args, words in ((["triggers", "--help"], "zmesh triggers list"),
                        (["triggers", "create", "--help"], "--catch-up"),
                        (["triggers", "create", "--help"], "--condition"),
                        (["triggers", "rotate-secret", "--help"], "24 h"),
                        (["triggers", "list", "--help"], "zmesh triggers list"),
                        (["dead-letters", "--help"], "dead-letters retry ID"),
                        (["dead-letters", "retry", "--help"], "retry ID"),
                        (["invoke", "--help"], "--idempotency-key"),
                        (["functions", "invoke", "--help"], "--async"),
                        (["functions", "deploy", "--help"], "--max-event-age")):
        r = user.ok(*args)
        assert r.out.startswith("usage: ") and words in r.out, r
    assert rec.requests == []


@pytest.mark.parametrize("args", [
    ["triggers"],
    ["triggers", "frob"],
    ["triggers", "list", "extra"],
    ["triggers", "create"],
    ["triggers", "create", "--cron", "* * * * *"],
    ["triggers", "create", "--function", "f"],
    ["triggers", "create", "--function", "f", "--cron", "* * * * *", "--webhook", "github"],
    ["triggers", "create", "--function", "f", "--cron", "every minute"],
    ["triggers", "create", "--function", "f", "--cron", "* * * * * * *"],
    ["triggers", "create", "--function", "f", "--cron", "* * * * *", "--catch-up", "some"],
    ["triggers", "create", "--function", "f", "--cron", "* * * * *", "--overlap", "queue"],
    ["triggers", "create", "--function", "f", "--cron", "* * * * *", "--payload", "{nope"],
    ["triggers", "create", "--function", "f", "--cron", "* * * * *", "--timezone", ""],
    ["triggers", "create", "--function", "f", "--cron", "* * * * *", "--secret", "s3cret-s3cret-s3cret"],
    ["triggers", "create", "--function", "f", "--cron", "* * * * *", "--respond", "sync"],
    ["triggers", "create", "--function", "f", "--webhook", "github", "--timezone", "UTC"],
    ["triggers", "create", "--function", "f", "--webhook", "github", "--payload", "1"],
    ["triggers", "create", "--function", "f", "--webhook", "slack"],
    ["triggers", "create", "--function", "f", "--webhook", "hmac"],
    ["triggers", "create", "--function", "f", "--webhook", "hmac", "--header", "X Sig"],
    ["triggers", "create", "--function", "f", "--webhook", "hmac", "--header", "X-Sig", "--encoding", "b32"],
    ["triggers", "create", "--function", "f", "--webhook", "github", "--header", "X-Sig"],
    ["triggers", "create", "--function", "f", "--webhook", "standard", "--prefix", "v1="],
    ["triggers", "create", "--function", "f", "--webhook", "github", "--id-header", "X-Id"],
    ["triggers", "create", "--function", "f", "--webhook", "none", "--secret", "s3cret-s3cret-s3cret"],
    ["triggers", "create", "--function", "f", "--webhook", "github", "--secret", ""],
    ["triggers", "create", "--function", "f", "--webhook", "github", "--respond", "later"],
    ["triggers", "create", "--function", "f", "--webhook", "github", "--condition", "body.amount"],
    ["triggers", "create", "--function", "f", "--webhook", "github", "--condition", "body.amount gt"],
    ["triggers", "create", "--function", "f", "--webhook", "github", "--condition", "body.amount about 100"],
    ["triggers", "create", "--function", "f", "--webhook", "github", "--condition", "body.currency in eur"],
    ["triggers", "create", "--function", "f", "--webhook", "github", "--conditions", "{\"field\": \"a\"}"],
    ["triggers", "create", "--function", "f", "--webhook", "github", "--conditions", "[nope"],
    ["triggers", "create", "--function", "...", "--webhook", "github"],
    ["triggers", "create", "--function", "f", "--webhook", "github", "stray"],
    ["triggers", "get"],
    ["triggers", "get", "not-an-id"],
    ["triggers", "delete", TID, TID],
    ["triggers", "enable", "../" + TID],
    ["triggers", "disable", TID[:-1]],
    ["triggers", "rotate-secret"],
    ["dead-letters"],
    ["dead-letters", "purge"],
    ["dead-letters", "list", "extra"],
    ["dead-letters", "list", "--limit", "0"],
    ["dead-letters", "list", "--limit", "101"],
    ["dead-letters", "retry"],
    ["dead-letters", "retry", "1"],
    ["invoke", "f", "--idempotency-key", "k"],
    ["invoke", "f", "--async", "--idempotency-key", ""],
    ["invoke", "f", "--async", "--idempotency-key", "k" * 256],
    ["invoke", "f", "--async", "--idempotency-key", "tab\there"],
    ["invoke", "f", "--async", "--idempotency-key", "caf\u00e9"],
    ["functions", "invoke", "f", "--async", "--data", "{nope"],
    ["functions", "deploy", "f.js", "--retries", "11"],
    ["functions", "deploy", "f.js", "--retries", "-1"],
    ["functions", "deploy", "f.js", "--max-event-age", "59"],
    ["functions", "deploy", "f.js", "--max-event-age", "21601"],
    ["functions", "deploy", "f.js", "--on-failure", "!!!"],
    ["events"],
    ["events", "frob"],
    ["events", "emit"],
    ["events", "emit", "a", "b"],
    ["events", "emit", "Order.Paid"],
    ["events", "emit", "custom.order.paid"],
    ["events", "emit", "a" * 101],
    ["events", "emit", "order.paid", "--data", "{nope"],
    ["triggers", "create", "--function", "f", "--event", "order.paid"],
    ["triggers", "create", "--function", "f", "--event", "custom."],
    ["triggers", "create", "--function", "f", "--event", "custom.a", "--cron", "* * * * *"],
    ["triggers", "create", "--function", "f", "--event", "custom.a", "--timezone", "UTC"],
    ["triggers", "create", "--function", "f", "--event", "custom.a", "--verify", "none"],
])
def test_bad_usage_exits_2_before_any_request(rec, user, args):
    r = user.run(*args)
    assert r.rc == 2, r
    assert "usage:" in r.err and r.out == "", r
    assert len(r.err.splitlines()[0]) > len("zmesh: "), r
    assert rec.requests == [], "a refused command must send nothing"


def test_event_commands_need_a_login_and_a_project(rec, user):
    os.remove(user.config)
    for args in (["triggers", "list"], ["dead-letters", "list"], ["invoke", "f", "--async"],
                 ["triggers", "delete", TID]):
        r = user.run(*args)
        assert r.rc == 1 and "not logged in" in r.err, r
    with open(user.config, "w") as f:
        json.dump({"url": rec.url, "token": "tok-123"}, f)
    for args in (["triggers", "list"], ["dead-letters", "retry", DLID],
                 ["triggers", "create", "--function", "f", "--cron", "@daily"]):
        r = user.run(*args)
        assert r.rc == 1 and "zmesh use PROJECT" in r.err, r
    assert rec.requests == []
    # --project chooses one for this command only.
    rec.routes[("GET", "/projects/other/triggers")] = (200, {"triggers": []})
    r = user.ok("triggers", "list", "--project", "other")
    assert "No triggers yet" in r.out, r


# ---- invoke --async ------------------------------------------------------------------------


def test_invoke_async_sends_prefer_and_idempotency_key(rec, user):
    queued = {"invocation_id": IID, "status": "queued"}
    rec.routes[("POST", base("/functions/my-fn/invoke"))] = (202, queued)
    r = user.ok("invoke", "My Fn", "--async", "--data", '{"a": [1, 2]}', "--idempotency-key", "order-42 v1")
    method, path, headers, body = rec.only()
    assert (method, path) == ("POST", base("/functions/my-fn/invoke"))
    assert headers["prefer"] == "respond-async"
    assert headers["idempotency-key"] == "order-42 v1"
    assert headers["authorization"] == "Bearer tok-123"
    assert body == {"payload": {"a": [1, 2]}}
    assert IID in r.out and "queued" in r.out, r
    assert "zmesh logs" in r.err, r

    # No key: no header; the functions form is the same command; --json is the body.
    rec.requests.clear()
    assert user.json("functions", "invoke", "my-fn", "--async") == queued
    method, path, headers, body = rec.only()
    assert headers["prefer"] == "respond-async" and "idempotency-key" not in headers
    assert body == {"payload": None}

    # A plain invoke waits for the result and asks for nothing else.
    rec.requests.clear()
    rec.routes[("POST", base("/functions/my-fn/invoke"))] = (200, {"status": "success", "result": 3,
                                                                   "invocation_id": IID})
    assert user.ok("invoke", "my-fn").out.strip() == "3"
    assert "prefer" not in rec.only()[2]


def test_invoke_async_failures(rec, user):
    path = base("/functions/my-fn/invoke")
    rec.routes[("POST", path)] = (422, {"error": {"code": "IDEMPOTENCY_KEY_REUSED",
                                                  "message": "this key came with another payload"}})
    r = user.run("invoke", "my-fn", "--async", "--idempotency-key", "k1", "--data", "2")
    assert r.rc == 1 and "IDEMPOTENCY_KEY_REUSED" in r.err and "another payload" in r.err and r.out == "", r
    rec.routes[("POST", path)] = (429, {"error": {"code": "QUOTA_EXCEEDED", "message": "monthly cap"}})
    r = user.run("invoke", "my-fn", "--async")
    assert r.rc == 1 and "QUOTA_EXCEEDED" in r.err, r
    # A server without async invocations runs it at once: that is said, not hidden.
    rec.routes[("POST", path)] = (200, {"status": "success", "result": 1, "invocation_id": IID})
    r = user.run("invoke", "my-fn", "--async")
    assert r.rc == 1 and "does not support --async" in r.err, r


# ---- functions deploy: retry settings --------------------------------------------------------


def test_deploy_sends_the_retry_settings(rec, user):
    src = user.write("job.js", "exports.handler = async () => 1;\n")
    rec.routes[("POST", base("/functions"))] = (201, {"slug": "job", "version": 1})
    user.ok("functions", "deploy", src, "--retries", "0", "--max-event-age", "60", "--on-failure", "Failure Sink")
    get, post = rec.requests
    assert get[:2] == ("GET", base("/functions/job")) and post[:2] == ("POST", base("/functions"))
    assert post[3]["retries"] == 0 and post[3]["max_event_age_s"] == 60 and post[3]["on_failure"] == "failure-sink"

    # On update only what is given is sent; '' clears on_failure.
    rec.requests.clear()
    rec.routes[("GET", base("/functions/job"))] = (200, {"slug": "job", "version": 1})
    rec.routes[("PATCH", base("/functions/job"))] = (200, {"slug": "job", "version": 2})
    user.ok("functions", "deploy", src, "--retries", "10", "--on-failure", "")
    patch = rec.requests[1]
    assert patch[0] == "PATCH" and patch[3]["retries"] == 10 and patch[3]["on_failure"] is None
    assert "max_event_age_s" not in patch[3]
    rec.requests.clear()
    user.ok("functions", "deploy", src)
    assert not {"retries", "max_event_age_s", "on_failure"} & set(rec.requests[1][3])


# ---- triggers ----------------------------------------------------------------------------------


def test_create_cron_trigger_sends_the_contracts_body(rec, user):
    rec.routes[("POST", base("/triggers"))] = (201, trigger_json(enabled=False))
    r = user.ok("triggers", "create", "--function", "my-fn", "--cron", "*/5 * * * *", "--timezone", "Europe/Paris",
                "--payload", '{"k": [1]}', "--catch-up", "latest", "--overlap", "skip",
                "--condition", "body.amount gt 100", "--condition", "body.currency in [\"eur\", \"usd\"]",
                "--condition", "body.note = hello world ", "--condition", 'body.code eq "100"',
                "--conditions", '[{"field": "a.b", "op": "neq", "value": null}]',
                "--condition", "tags contains vip", "--disabled")
    method, path, headers, body = rec.only()
    assert (method, path) == ("POST", base("/triggers"))
    assert body == {
        "event_type": "cron", "function_id": "my-fn",
        "config": {"schedule": "*/5 * * * *", "timezone": "Europe/Paris", "payload": {"k": [1]},
                   "catch_up": "latest", "overlap": "skip"},
        "conditions": [{"field": "body.amount", "op": "gt", "value": 100},
                       {"field": "body.currency", "op": "in", "value": ["eur", "usd"]},
                       {"field": "body.note", "op": "eq", "value": "hello world"},
                       {"field": "body.code", "op": "eq", "value": "100"},
                       {"field": "a.b", "op": "neq", "value": None},
                       {"field": "tags", "op": "contains", "value": "vip"}],
        "enabled": False}
    assert TID in r.out and "*/5 * * * *" in r.out and "Europe/Paris" in r.out and "my-fn" in r.out, r
    assert "secret" not in r.out + r.err, r

    # The least a cron trigger needs; the server fills in the defaults.
    rec.requests.clear()
    user.ok("triggers", "create", "--function", TID, "--cron", "@hourly")
    assert rec.only()[3] == {"event_type": "cron", "function_id": TID, "config": {"schedule": "@hourly"}}
    rec.requests.clear()
    user.ok("triggers", "create", "--function", "f", "--cron", "0 */10 * * * 1-5")
    assert rec.only()[3]["config"]["schedule"] == "0 */10 * * * 1-5"


def test_create_webhook_trigger_shows_url_and_secret_once(rec, user):
    secret = "whsec_" + secrets.token_urlsafe(32)
    made = trigger_json(event_type="webhook", url="/webhooks/" + TID, secret=secret,
                        config={"verify": "hmac", "header": "X-Signature", "prefix": "sha256=", "encoding": "base64",
                                "id_header": "X-Delivery", "respond": "sync"})
    rec.routes[("POST", base("/triggers"))] = (201, made)
    r = user.ok("triggers", "create", "--function", "my-fn", "--webhook", "hmac", "--header", "X-Signature",
                "--prefix", "sha256=", "--encoding", "base64", "--id-header", "X-Delivery", "--respond", "sync",
                "--secret", secret)
    body = rec.only()[3]
    assert body == {"event_type": "webhook", "function_id": "my-fn",
                    "config": {"verify": "hmac", "secret": secret, "header": "X-Signature", "prefix": "sha256=",
                               "encoding": "base64", "id_header": "X-Delivery", "respond": "sync"}}
    assert rec.url + "/webhooks/" + TID in r.out, r
    assert secret in r.out and "shown once" in r.err, r

    rec.requests.clear()
    assert user.json("triggers", "create", "--function", "my-fn", "--webhook", "stripe") == made
    assert rec.only()[3] == {"event_type": "webhook", "function_id": "my-fn", "config": {"verify": "stripe"}}

    # none: no secret comes back, and the URL alone lets anyone in.
    open_hook = trigger_json(event_type="webhook", url="/webhooks/" + TID, config={"verify": "none",
                                                                                  "respond": "async"})
    rec.routes[("POST", base("/triggers"))] = (201, open_hook)
    r = user.ok("triggers", "create", "--function", "my-fn", "--webhook", "none")
    assert "shown once" not in r.err and "anyone" in r.err, r


def test_create_reports_the_servers_refusal(rec, user):
    rec.routes[("POST", base("/triggers"))] = (400, {"error": {
        "code": "INVALID_TRIGGER", "message": 'config.timezone: no such time zone "Mars/Olympus"'}})
    r = user.run("triggers", "create", "--function", "f", "--cron", "* * * * *", "--timezone", "Mars/Olympus")
    assert r.rc == 1 and "INVALID_TRIGGER" in r.err and "config.timezone" in r.err and r.out == "", r


def test_list_get_enable_disable_delete_rotate(rec, user):
    hook = trigger_json(id=DLID, event_type="webhook", url="/webhooks/" + DLID, function="hooked",
                        config={"verify": "github", "respond": "async"},
                        conditions=[{"field": "body.action", "op": "eq", "value": "opened"}])
    listed = {"triggers": [trigger_json(), hook]}
    rec.routes[("GET", base("/triggers"))] = (200, listed)
    r = user.ok("triggers", "list")
    lines = r.out.splitlines()
    assert lines[0].split() == ["ID", "FUNCTION", "TYPE", "WHEN", "CONDITIONS", "ENABLED", "CREATED"], r
    assert lines[1].startswith(TID) and "my-fn" in lines[1] and "*/5 * * * * (Europe/Paris)" in lines[1], r
    assert lines[2].startswith(DLID) and "verify github" in lines[2] and 'body.action eq "opened"' in lines[2], r
    assert user.json("triggers", "list") == listed
    rec.routes[("GET", base("/triggers"))] = (200, {"triggers": []})
    assert "No triggers yet" in user.ok("triggers", "list").out

    rec.requests.clear()
    rec.routes[("GET", base("/triggers/" + DLID))] = (200, hook)
    r = user.ok("triggers", "get", DLID)
    assert rec.url + "/webhooks/" + DLID in r.out and "github" in r.out and "hooked" in r.out, r
    assert user.json("triggers", "get", DLID) == hook

    for verb, enabled in (("enable", True), ("disable", False)):
        rec.requests.clear()
        rec.routes[("PATCH", base("/triggers/" + TID))] = (200, trigger_json(enabled=enabled))
        r = user.ok("triggers", verb, TID)
        assert rec.only()[::3] == ("PATCH", {"enabled": enabled}) and rec.only()[1] == base("/triggers/" + TID)
        assert verb + "d" in r.out, r

    rec.requests.clear()
    rec.routes[("DELETE", base("/triggers/" + TID))] = (200, {"deleted": True})
    assert TID in user.ok("triggers", "delete", TID, "--yes").out
    assert user.json("triggers", "delete", TID, "--yes") == {"deleted": True}
    r = user.run("triggers", "get", TID)  # the recorder has no such trigger
    assert r.rc == 1 and "NOT_FOUND" in r.err, r

    rec.requests.clear()
    new = "whsec_" + secrets.token_urlsafe(24)
    rotated = {"id": TID, "secret": new, "previous_secret_expires_at": "2026-12-05T10:00:00.000+00:00"}
    rec.routes[("POST", base("/triggers/%s/rotate-secret" % TID))] = (200, rotated)
    r = user.ok("triggers", "rotate-secret", TID)
    assert rec.only()[:2] == ("POST", base("/triggers/%s/rotate-secret" % TID))
    assert r.out.strip() == new and "shown once" in r.err and "2026-12-05 10:00:00" in r.err, r
    assert user.json("triggers", "rotate-secret", TID) == rotated


def test_server_text_cannot_drive_the_terminal(rec, user):
    evil = "\x1b]0;owned\x07\x1b[2J\u009b2J"
    rec.routes[("GET", base("/triggers"))] = (200, {"triggers": [trigger_json(function="f" + evil)]})
    rec.routes[("GET", base("/triggers/" + TID))] = (200, trigger_json(
        function=evil, conditions=[{"field": "a", "op": "eq", "value": evil}], config={"schedule": evil}))
    rec.routes[("GET", base("/dead-letters"))] = (200, {"dead_letters": [{
        "id": DLID, "function": evil, "attempts": 3, "last_error": {"code": "FUNCTION_ERROR", "message": evil}}]})
    for args in (["triggers", "list"], ["triggers", "get", TID], ["dead-letters", "list"]):
        r = user.ok(*args)
        for bad in ("\x1b", "\x07", "\u009b"):
            assert bad not in r.out, r


# ---- dead letters ----------------------------------------------------------------------------


def test_dead_letters_list_and_retry(rec, user):
    letter = {"id": DLID, "invocation_id": IID, "function_id": "9f8e7d6c-5b4a-4938-8271-605f4e3d2c1b",
              "function": "flaky", "event": {"n": 1}, "trigger": "async", "trigger_id": None, "attempts": 3,
              "last_error": {"code": "FUNCTION_ERROR", "name": "Error", "message": "upstream down"},
              "enqueued_at": "2026-12-04T09:00:00.000+00:00", "failed_at": "2026-12-04T09:01:02.345+00:00",
              "retried_at": None, "retry_invocation_id": None}
    rec.routes[("GET", base("/dead-letters"))] = (200, {"dead_letters": [letter]})
    r = user.ok("dead-letters", "list")
    lines = r.out.splitlines()
    assert lines[0].split() == ["ID", "FUNCTION", "TRIGGER", "ATTEMPTS", "LAST", "ERROR", "FAILED", "RETRIED"], r
    row = lines[1]
    assert row.startswith(DLID) and "flaky" in row and " 3 " in row, r
    assert "FUNCTION_ERROR: Error: upstream down" in row and "2026-12-04 09:01:02" in row, r
    assert user.json("dead-letters", "list") == {"dead_letters": [letter]}
    rec.routes[("GET", base("/dead-letters?limit=5"))] = (200, {"dead_letters": []})
    assert "No dead letters" in user.ok("dead-letters", "list", "--limit", "5").out

    rec.requests.clear()
    again = {"invocation_id": IID, "status": "queued"}
    rec.routes[("POST", base("/dead-letters/%s/retry" % DLID))] = (202, again)
    r = user.ok("dead-letters", "retry", DLID)
    assert rec.only()[:2] == ("POST", base("/dead-letters/%s/retry" % DLID))
    assert DLID in r.out and IID in r.out and "queued" in r.out, r
    assert user.json("dead-letters", "retry", DLID) == again
    r = user.run("dead-letters", "retry", TID)
    assert r.rc == 1 and "NOT_FOUND" in r.err, r


# ---- against a real zmeshd --------------------------------------------------------------------
#
# These need the server's triggers, jobs and dead-letters routes.


def wait_for(what, fn, timeout=60, step=0.25):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for " + what, pytrace=False)
        time.sleep(step)


def invocation(c, daemon, slug, iid):
    status, body = daemon.api(c.token(), "GET", fn_url(c, slug, "/invocations/" + iid))
    return body if status == 200 else None


ECHO_JS = "exports.handler = async (event) => ({ got: event });\n"


def test_async_invoke_end_to_end(daemon, me):
    me.ok("functions", "deploy", me.write("later.js", ECHO_JS))
    key = unique("order")
    r = me.ok("invoke", "later", "--async", "--data", '{"n": 1}', "--idempotency-key", key)
    iid = re.search(r"[0-9a-f]{8}-[0-9a-f-]{27}", r.out).group(0)
    assert "queued" in r.out, r
    # The same key within 24 h: the same invocation, nothing new queued.
    again = me.json("invoke", "later", "--async", "--data", '{"n": 1}', "--idempotency-key", key)
    assert again["invocation_id"] == iid and again["status"] == "queued", again
    r = me.run("invoke", "later", "--async", "--data", '{"n": 2}', "--idempotency-key", key)
    assert r.rc == 1 and "IDEMPOTENCY_KEY_REUSED" in r.err, r

    done = wait_for("the queued invocation to run",
                    lambda: (lambda i: i if i and i.get("status") == "success" else None)(
                        invocation(me, daemon, "later", iid)))
    assert done["trigger"] == "async" and done["attempt"] == 1, done
    logs = me.json("logs", "later")
    assert iid in [i["id"] for i in logs["invocations"]]


def test_deploy_retry_settings_reach_the_server(daemon, me):
    me.ok("functions", "deploy", me.write("sink.js", ECHO_JS))
    me.ok("functions", "deploy", me.write("careful.js", ECHO_JS), "--retries", "0", "--max-event-age", "60",
          "--on-failure", "sink")
    status, fn = daemon.api(me.token(), "GET", fn_url(me, "careful"))
    assert status == 200 and (fn["retries"], fn["max_event_age_s"], fn["on_failure"]) == (0, 60, "sink"), fn
    me.ok("functions", "deploy", me.write("careful.js", ECHO_JS), "--retries", "5", "--on-failure", "")
    status, fn = daemon.api(me.token(), "GET", fn_url(me, "careful"))
    assert (fn["retries"], fn["max_event_age_s"], fn["on_failure"]) == (5, 60, None), fn


def test_cron_trigger_lifecycle(daemon, me):
    me.ok("functions", "deploy", me.write("ticker.js", ECHO_JS))
    marker = secrets.token_hex(4)
    made = me.json("triggers", "create", "--function", "ticker", "--cron", "* * * * * *", "--payload",
                   json.dumps({"marker": marker}), "--overlap", "skip")
    tid = made["id"]
    assert UUID_RE.match(tid) and made["event_type"] == "cron" and made["function"] == "ticker", made
    assert made["config"]["schedule"] == "* * * * * *" and made["config"]["timezone"] == "UTC"
    assert made["config"]["overlap"] == "skip" and made["config"]["catch_up"] == "skip"
    assert made["enabled"] is True and "secret" not in made

    r = me.ok("triggers", "list")
    row = [line for line in r.out.splitlines() if line.startswith(tid)]
    assert len(row) == 1 and "ticker" in row[0] and "* * * * * * (UTC)" in row[0], r
    status, server = daemon.api(me.token(), "GET", "/projects/%s/triggers" % me.project["id"])
    assert status == 200 and me.json("triggers", "list") == server
    r = me.ok("triggers", "get", tid)
    assert "ticker" in r.out and "* * * * * *" in r.out and marker in r.out, r

    me.ok("triggers", "disable", tid)
    status, t = daemon.api(me.token(), "GET", "/projects/%s/triggers/%s" % (me.project["id"], tid))
    assert status == 200 and t["enabled"] is False
    assert me.json("triggers", "enable", tid)["enabled"] is True
    assert me.json("triggers", "delete", tid, "--yes") == {"deleted": True}
    r = me.run("triggers", "get", tid)
    assert r.rc == 1 and "NOT_FOUND" in r.err, r
    assert tid not in me.ok("triggers", "list").out

    # The server's own checks come back as they are, naming the field.
    r = me.run("triggers", "create", "--function", "ticker", "--cron", "* * * * *", "--timezone", "Mars/Olympus")
    assert r.rc == 1 and "INVALID_TRIGGER" in r.err and "config.timezone" in r.err, r
    r = me.run("triggers", "create", "--function", "ticker", "--cron", "61 * * * *")
    assert r.rc == 1 and "config.schedule" in r.err, r
    r = me.run("triggers", "create", "--function", "no-such-fn", "--cron", "@daily")
    assert r.rc == 1 and "function_id" in r.err, r


def test_a_cron_trigger_made_by_the_cli_fires(daemon, me):
    me.ok("functions", "deploy", me.write("fired.js", "exports.handler = async (event) => {\n"
                                          "  console.log(JSON.stringify(event));\n  return 1;\n};\n"))
    marker = secrets.token_hex(4)
    tid = me.json("triggers", "create", "--function", "fired", "--cron", "* * * * * *", "--payload",
                  json.dumps({"marker": marker}))["id"]

    def fired():
        for inv in me.json("logs", "fired", "--limit", "20")["invocations"]:
            if inv.get("trigger") == "schedule" and inv.get("status") == "success":
                return inv
        return None
    inv = wait_for("a scheduled run", fired, timeout=30)
    detail = invocation(me, daemon, "fired", inv["id"])
    assert detail["trigger_id"] == tid and detail["trigger"] == "schedule", detail
    event = json.loads(detail["logs"].strip().splitlines()[0])
    assert event["trigger"] == "schedule" and event["payload"] == {"marker": marker}, event
    me.ok("triggers", "delete", tid, "--yes")


def test_webhook_trigger_with_github_signatures(daemon, me):
    me.ok("functions", "deploy", me.write("hooked.js", ECHO_JS))
    r = me.ok("triggers", "create", "--function", "hooked", "--webhook", "github",
              "--condition", "body.action eq opened")
    assert "shown once" in r.err, r
    url = re.search(r"url\s+(\S+)", r.out).group(1)
    secret = re.search(r"secret\s+(\S+)", r.out).group(1)
    assert url.startswith(daemon.url + "/webhooks/"), r
    tid = url.rsplit("/", 1)[1]
    listed = me.json("triggers", "list")
    assert secret not in json.dumps(listed) and secret not in me.ok("triggers", "get", tid).out

    def post(body, key):
        raw = json.dumps(body).encode()
        sig = "sha256=" + hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()
        return http(url, "POST", raw=raw, headers={"X-Hub-Signature-256": sig,
                                                    "X-GitHub-Delivery": secrets.token_hex(8)})

    status, body = post({"action": "opened"}, secret)
    assert status == 202 and body["status"] == "queued", body
    status, body = post({"action": "closed"}, secret)
    assert status == 202 and body == {"status": "filtered"}, body
    status, body = post({"action": "opened"}, "not-the-secret")
    assert status == 401, body

    # A new secret; the previous one keeps working for a while.
    r = me.ok("triggers", "rotate-secret", tid)
    new = r.out.strip()
    assert new and new != secret and "shown once" in r.err, r
    assert post({"action": "opened"}, new)[0] == 202
    assert post({"action": "opened"}, secret)[0] == 202

    me.ok("triggers", "disable", tid)
    assert post({"action": "opened"}, new)[0] == 404
    me.ok("triggers", "delete", tid, "--yes")


def test_dead_letters_and_retry(daemon, me):
    me.ok("functions", "deploy", me.write("doomed.js",
                                          "exports.handler = async () => { throw new Error('always down'); };\n"),
          "--retries", "0")
    iid = me.json("invoke", "doomed", "--async", "--data", '{"order": 7}')["invocation_id"]

    def dead():
        for d in me.json("dead-letters", "list")["dead_letters"]:
            if d["invocation_id"] == iid:
                return d
        return None
    letter = wait_for("the dead letter", dead)
    assert letter["function"] == "doomed" and letter["attempts"] == 1, letter
    assert letter["event"] in ({"order": 7}, {"payload": {"order": 7}}), letter
    assert letter["trigger"] == "async" and letter["last_error"]["code"] == "FUNCTION_ERROR", letter
    r = me.ok("dead-letters", "list")
    row = [line for line in r.out.splitlines() if line.startswith(letter["id"])]
    assert len(row) == 1 and "doomed" in row[0] and "always down" in row[0], r
    status, server = daemon.api(me.token(), "GET", "/projects/%s/dead-letters" % me.project["id"])
    assert status == 200 and me.json("dead-letters", "list") == server
    assert invocation(me, daemon, "doomed", iid)["status"] == "dead"

    r = me.ok("dead-letters", "retry", letter["id"])
    again = re.search(r"as invocation ([0-9a-f-]{36})", r.out).group(1)
    assert again != iid, r
    wait_for("the retried run", lambda: (lambda i: i and i.get("status") in ("error", "dead"))(
        invocation(me, daemon, "doomed", again)))


# ---- custom events ----------------------------------------------------------------------------


def test_events_emit_sends_type_and_data(rec, user):
    assert "events emit TYPE" in user.ok("--help").out
    r = user.ok("events", "--help")
    assert r.out.startswith("usage: ") and "custom.TYPE" in r.out, r
    eid = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"
    rec.routes[("POST", base("/events"))] = (202, {"event_id": eid, "matched": 2})
    r = user.ok("events", "emit", "order.paid", "--data", '{"amount": 5}')
    method, path, _, body = rec.only()
    assert (method, path, body) == ("POST", base("/events"), {"type": "order.paid", "data": {"amount": 5}})
    assert eid in r.out and "matched 2 triggers" in r.out, r
    rec.requests.clear()
    assert user.json("events", "emit", "a") == {"event_id": eid, "matched": 2}
    assert rec.only()[3] == {"type": "a", "data": None}
    rec.routes[("POST", base("/events"))] = (202, {"event_id": eid, "matched": 0})
    r = user.ok("events", "emit", "order.paid")
    assert "matched 0 triggers" in r.out and "nothing runs" in r.err, r
    rec.routes[("POST", base("/events"))] = (400, {"error": {"code": "INVALID_EVENT", "message": "type: bad"}})
    r = user.run("events", "emit", "order.paid")
    assert r.rc == 1 and "INVALID_EVENT" in r.err and r.out == "", r


def test_create_event_trigger_sends_its_type(rec, user):
    t = trigger_json(event_type="custom.order.paid", config={},
                     conditions=[{"field": "data.amount", "op": "gt", "value": 100}])
    rec.routes[("POST", base("/triggers"))] = (201, t)
    r = user.ok("triggers", "create", "--function", "my-fn", "--event", "custom.order.paid", "--condition",
                "data.amount > 100")
    assert rec.only()[3] == {"event_type": "custom.order.paid", "function_id": "my-fn", "config": {},
                             "conditions": [{"field": "data.amount", "op": "gt", "value": 100}]}
    assert "custom event trigger" in r.out and "custom.order.paid" in r.out, r
    rec.routes[("GET", base("/triggers"))] = (200, {"triggers": [t]})
    assert "emit order.paid" in user.ok("triggers", "list").out


def test_create_database_change_trigger_with_where(rec, user):
    t = trigger_json(event_type="cdc.INSERT.orders", config={},
                     conditions=[{"field": "new.amount", "op": "gt", "value": 100}])
    rec.routes[("POST", base("/triggers"))] = (201, t)
    r = user.ok("triggers", "create", "--event", "cdc.INSERT.orders", "--function", "on-order", "--where",
                "new.amount > 100")
    assert rec.only()[3] == {"event_type": "cdc.INSERT.orders", "function_id": "on-order", "config": {},
                             "conditions": [{"field": "new.amount", "op": "gt", "value": 100}]}
    assert "database change trigger" in r.out and "cdc.INSERT.orders" in r.out, r
    rec.routes[("GET", base("/triggers"))] = (200, {"triggers": [t]})
    assert "change INSERT.orders" in user.ok("triggers", "list").out
    r = user.run("triggers", "create", "--function", "f", "--event", "orders")
    assert r.rc == 2 and "cdc.OP.TABLE" in r.err, r


def test_custom_event_end_to_end(daemon, me):
    me.ok("functions", "deploy", me.write("paid.js", ECHO_JS))
    t = me.json("triggers", "create", "--function", "paid", "--event", "custom.order.paid", "--condition",
                "data.amount gte 100")
    assert t["event_type"] == "custom.order.paid" and t["config"] == {}, t
    r = me.ok("events", "emit", "order.paid", "--data", '{"amount": 5}')
    assert "matched 0 triggers" in r.out, r
    out = me.json("events", "emit", "order.paid", "--data", '{"amount": 150}')
    assert out["matched"] == 1, out

    def ran():
        status, body = daemon.api(me.token(), "GET", fn_url(me, "paid", "/invocations"))
        done = [i for i in body["invocations"] if i["status"] == "success"] if status == 200 else []
        return done[0] if done else None
    rec_ = wait_for("the event's invocation", ran)
    assert rec_["trigger"] == "event" and rec_["trigger_id"] == t["id"], rec_
    got = json.loads(rec_["result_excerpt"])["got"]
    assert got["event_id"] == out["event_id"] and got["data"] == {"amount": 150} and got["source"] == "api", got
