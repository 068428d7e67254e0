"""The HTTP layer (supervisor/http.c) over real sockets, through
tests/http_echo_server.c: status codes and error bodies, path rules, body
limits (declared and chunked), request ids, logging, concurrency of blocking
handlers, the slow-client deadline and a clean stop."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

ECHO = os.environ.get("ZMESH_HTTP_ECHO")
if not ECHO:
    pytest.fail("ZMESH_HTTP_ECHO must name the http_echo_server binary (ctest sets it)", pytrace=False)

HEX16 = re.compile(r"^[0-9a-f]{16}$")


class Server:
    def __init__(self, *args):
        self.errf = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([ECHO, *args], stdout=subprocess.PIPE, stderr=self.errf)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("server did not start: %r %s" % (line, self.log_text()))
        self.port = int(line.split()[1])
        self.host = "127.0.0.1"

    def conn(self, timeout=10):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, **kw):
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=headers or {}, **kw)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def raw(self, data, timeout=10):
        """Send raw bytes, return everything the server sends until it closes."""
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            s.sendall(data)
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out
                out += chunk
        finally:
            s.close()

    def log_text(self):
        self.errf.seek(0)
        return self.errf.read().decode(errors="replace")

    def log_events(self):
        events = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events

    def wait_events(self, pred, count=1, timeout=5):
        """Log lines are written once a response is fully sent, which may be
        after the client has read it: wait for them."""
        deadline = time.monotonic() + timeout
        while True:
            got = [e for e in self.log_events() if pred(e)]
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rest = self.proc.communicate(timeout=timeout)[0].decode()
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, rest


@pytest.fixture
def srv():
    s = Server("--max-body", "1024")
    yield s
    rc, out = s.stop()
    assert rc == 0, s.log_text()
    assert "STOPPED" in out
    # the sanitizer build reports leaks and errors on stderr
    assert "Sanitizer" not in s.log_text()
    assert "runtime error" not in s.log_text()


def json_error(data):
    body = json.loads(data)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["code"]


def test_get_json_200_with_request_id(srv):
    status, h, data = srv.request("GET", "/hello")
    assert status == 200
    assert h["content-type"] == "application/json"
    body = json.loads(data)
    assert body["hello"] == "world"
    assert HEX16.match(h["x-request-id"])
    assert body["request_id"] == h["x-request-id"]
    ids = {srv.request("GET", "/hello")[1]["x-request-id"] for _ in range(20)}
    assert len(ids) == 20


def test_not_found(srv):
    for path in ["/nope", "/hello/extra", "/items", "//hello", "/items//sub", "/items/1/sub"]:
        status, h, data = srv.request("GET", path)
        assert status == 404, path
        assert json_error(data) == "NOT_FOUND"
        assert h["content-type"] == "application/json"
        assert HEX16.match(h["x-request-id"])


def test_method_not_allowed_with_allow(srv):
    status, h, data = srv.request("DELETE", "/hello")
    assert status == 405
    assert h["allow"] == "GET"
    assert json_error(data) == "METHOD_NOT_ALLOWED"
    status, h, data = srv.request("POST", "/items/5")
    assert status == 405
    assert h["allow"] == "GET, DELETE, PUT"
    # a body sent to a wrong method is not read: the answer comes at once
    status, h, data = srv.request("PATCH", "/items/5", body=b"x" * 500)
    assert status == 405 and h["allow"] == "GET, DELETE, PUT"


def test_params_are_decoded(srv):
    cases = {
        "/items/a%20b": "a b",
        "/items/%E2%82%AC": "\u20ac",
        "/items/plus+sign": "plus+sign",
        "/items/7/": "7",  # one trailing slash is ignored
        "/items/" + "x" * 128: "x" * 128,
    }
    for path, want in cases.items():
        status, _, data = srv.request("GET", path)
        assert status == 200, path
        body = json.loads(data)
        assert body["id"] == want and body["method"] == "GET"
        assert body["missing"] is None
    status, _, data = srv.request("GET", "/items/i%2D1/sub/s%201")
    assert status == 200
    assert json.loads(data)["id"] == "i-1" and json.loads(data)["sub"] == "s 1"
    status, _, data = srv.request("DELETE", "/items/d1")
    assert status == 200 and json.loads(data) == {"method": "DELETE", "id": "d1", "sub": None, "missing": None}
    status, _, data = srv.request("GET", "/hello/")
    assert status == 200 and json.loads(data)["hello"] == "world"


def test_bad_path_encodings_are_400(srv):
    for path in [
        "/items/a%2Fb",
        "/items/a%00b",
        "/items/%zz",
        "/items/%4",
        "/items/%",
        "/items/%FF",
        "/items/%0D%0A",
        "/items/" + "x" * 129,
        "/items/" + "%41" * 129,
        "/nowhere/%zz",
    ]:
        status, _, data = srv.request("GET", path)
        assert status == 400, path
        assert json_error(data) == "BAD_REQUEST"


def test_query_and_headers(srv):
    status, _, data = srv.request(
        "GET",
        "/inspect?q=a%20b+c&x=1",
        headers={"AUTHORIZATION": "Bearer tok", "X-Api-Key": "key-1"},
    )
    assert status == 200
    body = json.loads(data)
    assert body["q"] == "a b c" and body["q_rc"] == 0
    assert body["authorization"] == "Bearer tok"
    assert body["x_api_key"] == "key-1"
    assert body["client"] == "127.0.0.1"
    assert body["path"] == "/inspect"
    body = json.loads(srv.request("GET", "/inspect?q")[2])
    assert body["q"] == "" and body["q_rc"] == 0
    body = json.loads(srv.request("GET", "/inspect")[2])
    assert body["q"] is None and body["q_rc"] == -2  # -ENOENT
    for bad in ["%zz", "%00", "%FF", "%0A"]:
        body = json.loads(srv.request("GET", "/inspect?q=" + bad)[2])
        assert body["q"] is None and body["q_rc"] == -22, bad  # -EINVAL
    body = json.loads(srv.request("GET", "/inspect?q=" + "y" * 1025)[2])
    assert body["q_rc"] == -7  # -E2BIG
    body = json.loads(srv.request("GET", "/inspect?q=" + "y" * 1024)[2])
    assert body["q"] == "y" * 1024


def test_each_header_and_query_parameter(srv):
    status, _, data = srv.request("GET", "/each?a=1&b=x%20y+z&a=2&c&k%C3%A9y=%E2%82%AC",
                                  headers={"X-One": "1", "X-Two": "two words"})
    assert status == 200
    body = json.loads(data)
    assert body["query_rc"] == 0 and body["headers_rc"] == 0
    assert body["query"] == [["a", "1"], ["b", "x y z"], ["a", "2"], ["c", ""], ["k\u00e9y", "\u20ac"]]
    names = [h[0].lower() for h in body["headers"]]
    assert ["x-one", "1"] in [[h[0].lower(), h[1]] for h in body["headers"]]
    assert ["x-two", "two words"] in [[h[0].lower(), h[1]] for h in body["headers"]]
    assert "host" in names
    # A malformed name or value stops the walk with the code http_query gives.
    for bad in ["a=%zz", "%00=1", "a=1&b=%FF"]:
        body = json.loads(srv.request("GET", "/each?" + bad)[2])
        assert body["query_rc"] == -22, bad  # -EINVAL
    body = json.loads(srv.request("GET", "/each?a=" + "y" * 1025)[2])
    assert body["query_rc"] == -7  # -E2BIG
    body = json.loads(srv.request("GET", "/each")[2])
    assert body["query"] == [] and body["query_rc"] == 0


def test_body_limit_declared(srv):
    status, _, data = srv.request("POST", "/raw", body=b"a" * 1024)
    assert status == 200 and json.loads(data) == {"bytes": 1024, "terminated": True}
    status, h, data = srv.request("POST", "/raw", body=b"a" * 1025)
    assert status == 413
    assert json_error(data) == "PAYLOAD_TOO_LARGE"
    assert HEX16.match(h["x-request-id"])
    # JSON of exactly the limit is parsed
    doc = json.dumps({"k": "v" * 1000})
    doc = doc[:-2] + "v" * (1024 - len(doc)) + doc[-2:]
    assert len(doc) == 1024
    status, _, data = srv.request("POST", "/echo", body=doc.encode())
    assert status == 200 and json.loads(data)["echo"] == json.loads(doc)


def test_body_limit_expect_continue_not_uploaded(srv):
    # 413 comes straight after the headers: the client never sends the body
    out = srv.raw(
        b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n" b"Expect: 100-continue\r\n\r\n",
        timeout=5,
    )
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"100 Continue" not in head
    assert json_error(body) == "PAYLOAD_TOO_LARGE"


def chunks(total, size=300):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"b" * n


def test_body_limit_chunked(srv):
    status, _, data = srv.request(
        "POST", "/raw", body=chunks(1000), headers={"Transfer-Encoding": "chunked"}, encode_chunked=True
    )
    assert status == 200 and json.loads(data)["bytes"] == 1000
    status, _, data = srv.request(
        "POST", "/raw", body=chunks(5000), headers={"Transfer-Encoding": "chunked"}, encode_chunked=True
    )
    assert status == 413
    assert json_error(data) == "PAYLOAD_TOO_LARGE"
    events = srv.wait_events(lambda e: e.get("event") == "http_request" and e["status"] == 413)
    assert len(events) == 1 and events[0]["body_bytes"] == 5000


def test_ambiguous_framing_400(srv):
    for extra in [
        b"Content-Length: 5\r\nContent-Length: 7\r\n",
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    ]:
        out = srv.raw(b"POST /raw HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n5\r\nabcde\r\n0\r\n\r\n", timeout=5)
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), (extra, out)
        assert json_error(body) == "BAD_REQUEST"


def test_log_values_are_sanitized(srv):
    out = srv.raw(b"GET /hello\x01\xff HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", timeout=5)
    assert out.startswith(b"HTTP/1.1 400")
    rid = re.search(rb"x-request-id: ([0-9a-f]{16})", out, re.I).group(1).decode()
    line = srv.wait_events(lambda e: e.get("request_id") == rid)
    assert len(line) == 1 and line[0]["path"] == "/hello??"


def test_nul_in_request_line_400(srv):
    # a raw NUL must not end the path early: "/items/\0" is not "/items"
    for target in [b"/items/\x00", b"/items/a\x00b", b"/hello\x00", b"/inspect?q=a\x00b"]:
        out = srv.raw(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", timeout=5)
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), (target, out)
        assert json_error(body) == "BAD_REQUEST"
    assert srv.request("GET", "/hello")[0] == 200


def test_query_bounds_414(srv):
    # 3,000 parameters used to exhaust the connection's memory: no status at all
    for query in ["&".join("a%d=1" % i for i in range(3000)), "&" * 64, "q=" + "z" * 9000]:
        status, h, data = srv.request("GET", "/inspect?" + query)
        assert status == 414, query[:20]
        assert json_error(data) == "URI_TOO_LONG"
        assert HEX16.match(h["x-request-id"])
    # 64 parameters are still fine, and the connection stays usable after a 414
    c = srv.conn()
    try:
        c.request("GET", "/inspect?" + "&".join("a%d=1" % i for i in range(63)) + "&q=ok")
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["q"] == "ok"
        c.request("GET", "/inspect?" + "&" * 100)
        r = c.getresponse()
        assert r.status == 414 and json_error(r.read()) == "URI_TOO_LONG"
        c.request("GET", "/hello")
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["hello"] == "world"
    finally:
        c.close()


def test_malformed_json_400(srv):
    for body in [b"{bad", b"", b'{"a":1,"a":2}', b"[1,2", b'"\\u0000"', b"\xff\xfe"]:
        status, _, data = srv.request("POST", "/echo", body=body)
        assert status == 400, body
        assert json_error(data) == "BAD_REQUEST"
    status, _, data = srv.request("POST", "/echo", body=b"42")
    assert status == 200 and json.loads(data) == {"echo": 42}


def test_reply_helpers(srv):
    status, h, data = srv.request("GET", "/noreply")
    assert status == 500 and json_error(data) == "INTERNAL"
    status, h, data = srv.request("GET", "/twice")
    assert status == 201 and json.loads(data) == {"first": 1}
    status, h, data = srv.request("GET", "/badstatus")
    assert status == 500
    status, h, data = srv.request("GET", "/retry")
    assert status == 429 and h["retry-after"] == "7"
    assert json_error(data) == "RATE_LIMITED"
    status, h, data = srv.request("GET", "/metrics")
    assert status == 200
    assert h["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert data == b"# TYPE zmesh_test_total counter\nzmesh_test_total 1\n"
    status, h, data = srv.request("GET", "/error-utf8")
    assert status == 422
    assert json.loads(data) == {"error": {"code": "WEIRD", "message": 'bad ?? input "quoted" \u00e9'}}


def test_header_and_log_field_rules(srv):
    status, h, data = srv.request("GET", "/header-rules")
    assert status == 200
    r = json.loads(data)
    assert r["ok"] == 0 and h["x-extra"] == "yes"
    assert r["crlf"] == r["EINVAL"] and "x-evil" not in h and "set-cookie" not in h
    assert r["bad_name"] == r["EINVAL"] and r["empty_name"] == r["EINVAL"]
    assert r["owned"] == r["EPERM"] and h["content-type"] == "application/json"
    assert r["owned_id"] == r["EPERM"] and HEX16.match(h["x-request-id"])
    assert r["big"] == r["E2BIG"] and r["full"] == r["E2BIG"]
    assert r["log_ok"] == 0 and r["log_dup"] == r["EEXIST"] and r["log_layer"] == r["EEXIST"]
    assert r["log_badkey"] == r["EINVAL"]
    line = srv.wait_events(lambda e: e.get("request_id") == h["x-request-id"])
    assert len(line) == 1
    assert line[0]["invocation_id"] == "inv-42" and line[0]["status"] == 200


def test_one_log_line_per_request(srv):
    ids = []
    for path in ["/hello", "/nope", "/items/%zz"]:
        ids.append((srv.request("GET", path)[1]["x-request-id"], path))
    ids.append((srv.request("DELETE", "/hello")[1]["x-request-id"], "/hello"))
    wanted = {rid for rid, _ in ids}
    events = {e["request_id"]: e for e in srv.wait_events(lambda e: e.get("request_id") in wanted, count=len(ids))}
    want = {"/hello": [200, 405], "/nope": [404], "/items/%zz": [400]}
    for rid, path in ids:
        e = events[rid]
        assert e["path"] == path
        assert e["status"] in want[path]
        assert e["client"] == "127.0.0.1"
        assert isinstance(e["duration_ms"], int) and e["duration_ms"] >= 0
        assert e["outcome"] == "ok"
        assert e["method"] in ("GET", "DELETE")
    # every line is one JSON object
    for line in srv.log_text().splitlines():
        json.loads(line)


def test_keep_alive_across_errors(srv):
    c = srv.conn()
    try:
        for path, want in [("/hello", 200), ("/nope", 404), ("/items/%zz", 400), ("/hello", 200)]:
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            assert r.status == want
        c.request("DELETE", "/hello")
        r = c.getresponse()
        r.read()
        assert r.status == 405
        c.request("GET", "/hello")
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["hello"] == "world"
    finally:
        c.close()


def test_concurrent_slow_handlers(srv):
    results = []

    def slow():
        t = time.monotonic()
        status, _, data = srv.request("GET", "/slow?ms=1500")
        results.append((status, json.loads(data)["slept"], time.monotonic() - t))

    threads = [threading.Thread(target=slow) for _ in range(6)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.3)
    # a quick request is not queued behind the blocked handlers
    t = time.monotonic()
    assert srv.request("GET", "/hello")[0] == 200
    assert time.monotonic() - t < 0.8
    for t in threads:
        t.join(timeout=20)
    elapsed = time.monotonic() - t0
    assert [r[:2] for r in results] == [(200, 1500)] * 6
    assert elapsed < 1500 * 6 / 1000 / 2, elapsed  # well under serial time (9 s)


def test_request_deadline_cuts_slow_clients():
    s = Server("--request-timeout-ms", "1000", "--idle-timeout-s", "60")
    try:
        # headers trickled a byte at a time, never completed
        sock = socket.create_connection((s.host, s.port), timeout=10)
        t0 = time.monotonic()
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n")
        closed = False
        try:
            for _ in range(50):
                sock.sendall(b"X")
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        if not closed:
            sock.settimeout(2)
            try:
                closed = sock.recv(100) == b""
            except ConnectionResetError:
                closed = True
        took = time.monotonic() - t0
        sock.close()
        assert closed and took < 5, took

        # a body trickled after complete headers: a request, logged as cut
        sock = socket.create_connection((s.host, s.port), timeout=10)
        sock.sendall(b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
        t0 = time.monotonic()
        got = b""
        try:
            for _ in range(50):
                sock.sendall(b"y")
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(2)
        try:
            got = sock.recv(100)
        except (ConnectionResetError, socket.timeout):
            pass
        took = time.monotonic() - t0
        sock.close()
        assert got == b"" and took < 5, (got, took)

        # a handler may take longer than the deadline: it is not a slow client
        status, _, data = s.request("GET", "/slow?ms=2000")
        assert status == 200 and json.loads(data)["slept"] == 2000
        # and a normal request on the same server still works
        assert s.request("GET", "/hello")[0] == 200
    finally:
        rc, _ = s.stop()
    assert rc == 0
    events = s.log_events()
    assert any(e.get("event") == "http_request_timeout" for e in events)
    cut = [e for e in events if e.get("event") == "http_request" and e["path"] == "/raw"]
    assert len(cut) == 1 and cut[0]["outcome"] == "request_timeout" and cut[0]["status"] == 0


def test_header_limit():
    s = Server("--max-header-bytes", "8192")
    try:
        status, _, _ = s.request("GET", "/hello", headers={"X-Big": "z" * 20000})
        assert status in (413, 431)
        assert s.request("GET", "/hello", headers={"X-Ok": "z" * 2000})[0] == 200
    finally:
        rc, _ = s.stop()
    assert rc == 0


def raw_status(host, port, data, timeout=5, source=None):
    """Send data on a new connection: (status line or None on a reset/close, headers, body)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    out = b""
    try:
        s.sendall(data)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except ConnectionResetError:
        pass
    finally:
        s.close()
    if not out.startswith(b"HTTP/1.1 "):
        return None, {}, out
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def get(path, extra=b""):
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + extra + b"\r\n"


def test_connection_limit():
    # two admitted slots; the reserve (4) is for /healthz and credentials
    s = Server("--max-connections", "2", "--request-timeout-ms", "20000")
    held = []
    try:
        for _ in range(2):
            c = s.conn()
            c.request("GET", "/hello")
            r = c.getresponse()
            r.read()
            assert r.status == 200
            held.append(c)  # kept alive: each holds a slot
        # over capacity: a clear 503, not a reset
        status, h, body = raw_status(s.host, s.port, get("/hello"))
        assert status == 503, body
        assert h["retry-after"] == "2" and h["connection"].lower() == "close"
        assert json_error(body) == "OVER_CAPACITY"
        # health checks and credentials still get in
        assert raw_status(s.host, s.port, get("/healthz"))[0] == 200
        assert raw_status(s.host, s.port, get("/hello", b"Authorization: Bearer t\r\n"))[0] == 200
        assert raw_status(s.host, s.port, get("/hello", b"x-api-key: k\r\n"))[0] == 200
        # once idle for a second, a kept-alive connection gives its slot up
        time.sleep(1.2)
        assert raw_status(s.host, s.port, get("/hello"))[0] == 200
        # busy connections (handlers running) are never shed
        busy = [threading.Thread(target=s.request, args=("GET", "/slow?ms=2500")) for _ in range(2)]
        for t in busy:
            t.start()
        time.sleep(0.5)
        status, h, body = raw_status(s.host, s.port, get("/hello"))
        assert status == 503 and json_error(body) == "OVER_CAPACITY"
        assert raw_status(s.host, s.port, get("/healthz"))[0] == 200
        for t in busy:
            t.join(timeout=10)
    finally:
        for c in held:
            c.close()
        rc, _ = s.stop()
    assert rc == 0


def test_per_address_share_and_slowloris():
    # one address holding its share with slow senders: its next connection
    # gets 503, other addresses are served, and the header deadline ends them
    s = Server("--max-connections", "16", "--max-per-ip", "4", "--header-timeout-ms", "1500",
               "--request-timeout-ms", "20000")
    socks = []
    try:
        for _ in range(4):
            k = socket.create_connection((s.host, s.port), timeout=10)
            k.sendall(b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nabc")
            socks.append(k)
        time.sleep(0.3)
        status, h, body = raw_status(s.host, s.port, get("/hello"))
        assert status == 503 and h["retry-after"] == "2" and json_error(body) == "OVER_CAPACITY"
        assert raw_status(s.host, s.port, get("/hello"), source="127.0.0.2")[0] == 200
        # slowloris: headers never finished, cut at the header deadline
        slow = socket.create_connection((s.host, s.port), timeout=10, source_address=("127.0.0.3", 0))
        slow.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n")
        t0 = time.monotonic()
        slow.settimeout(5)
        try:
            got = slow.recv(100)
        except (ConnectionResetError, socket.timeout):
            got = b"?"
        assert got == b"" and 1.2 < time.monotonic() - t0 < 3.5
        slow.close()
    finally:
        for k in socks:
            k.close()
        rc, _ = s.stop()
    assert rc == 0


def test_flood_script():
    # tests/load/flood.py in small: 10 addresses hold every admitted slot with
    # slow bodies and add slowloris senders; health checks and authenticated
    # requests from another address are answered throughout, and the flooding
    # addresses' own requests get 503 + Retry-After or 200, never a reset
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "load", "flood.py")
    spec = importlib.util.spec_from_file_location("flood", path)
    flood = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flood)
    with pytest.raises(SystemExit):
        flood.run("10.0.0.1", 80)  # loopback only
    s = Server("--max-connections", "20", "--max-per-ip", "4", "--request-timeout-ms", "20000",
               "--header-timeout-ms", "2000")
    try:
        r = flood.run(s.host, s.port, addresses=10, slow_body=3, idle=0, slowloris=1, over=2, seconds=6,
                      over_path="/hello")
        # a normal request once the flood is over
        assert s.request("GET", "/hello")[0] == 200
    finally:
        rc, _ = s.stop()
    assert rc == 0
    assert r["held_open"] == 40 and r["resets"] == 0, r
    assert r["health"] and all(x["status"] == 200 for x in r["health"]), r["health"]
    assert r["auth"] and all(x["status"] == 200 for x in r["auth"]), r["auth"]
    assert r["health_max_ms"] < 1000 and r["auth_max_ms"] < 1000
    over = [x["status"] for x in r["over"]]
    assert len(over) == 20 and set(over) <= {200, 503} and 503 in over, r["over"]
    assert all(x["note"] == "2" for x in r["over"] if x["status"] == 503)


def test_ipv6():
    s = Server("--listen", "[::1]:0")
    try:
        c = http.client.HTTPConnection("::1", s.port, timeout=10)
        c.request("GET", "/inspect")
        r = c.getresponse()
        assert r.status == 200
        assert json.loads(r.read())["client"] == "::1"
        c.close()
    finally:
        rc, _ = s.stop()
    assert rc == 0


def test_stop_lets_in_flight_finish():
    s = Server("--grace-ms", "10000")
    result = {}

    def slow():
        c = s.conn(timeout=20)
        c.request("GET", "/slow?ms=2000")
        r = c.getresponse()
        result["status"] = r.status
        result["connection"] = r.getheader("Connection")
        result["body"] = json.loads(r.read())
        c.close()

    # an idle kept-alive connection, opened before the stop
    idle = s.conn()
    idle.request("GET", "/hello")
    r = idle.getresponse()
    r.read()
    assert r.status == 200

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # no new connections once stopping
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((s.host, s.port), timeout=2)
    # a new request on the old connection is told the server is going away
    idle.request("GET", "/hello")
    r = idle.getresponse()
    assert r.status == 503
    assert json_error(r.read()) == "SHUTTING_DOWN"
    assert (r.getheader("Connection") or "").lower() == "close"
    idle.close()

    t.join(timeout=20)
    assert result["status"] == 200
    assert result["body"] == {"slept": 2000, "stopping": True}
    assert (result["connection"] or "").lower() == "close"
    rc, out = s.stop(timeout=15)
    assert rc == 0 and "STOPPED" in out
    assert time.monotonic() - t0 < 5
    events = [e for e in s.log_events() if e.get("event") == "http_request"]
    slow_lines = [e for e in events if e["path"] == "/slow"]
    assert len(slow_lines) == 1 and slow_lines[0]["status"] == 200 and slow_lines[0]["outcome"] == "ok"


def test_stop_is_bounded_by_grace():
    # an in-flight request whose body never arrives does not hold the stop
    s = Server("--grace-ms", "700", "--request-timeout-ms", "60000", "--idle-timeout-s", "60")
    sock = socket.create_connection((s.host, s.port), timeout=10)
    sock.sendall(b"POST /raw HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\nabc")
    time.sleep(0.3)
    t0 = time.monotonic()
    rc, out = s.stop(timeout=15)
    took = time.monotonic() - t0
    sock.close()
    assert rc == 0 and "STOPPED" in out
    assert 0.6 < took < 4, took
    raws = [e for e in s.log_events() if e.get("event") == "http_request" and e["path"] == "/raw"]
    assert len(raws) == 1 and raws[0]["outcome"] == "shutdown" and raws[0]["status"] == 0
