"""Functions reach the network only through the node's egress gateway.

Test hosts live in network namespaces this module makes, joined to the host
by veth pairs: a "public" host at 198.51.100.2 (HTTP, HTTPS with a
self-signed certificate, UDP), which the daemon lets through with
--egress-allow 198.51.100.0/24, and a private host at 10.253.0.2, which must
stay unreachable. A listener on the host's loopback (127.0.0.3) must stay
unreachable too; 127.0.0.1 is lifted with --egress-allow 127.0.0.1/32 so that
the daemon's own port is refused for being the platform's, not for being
loopback. Names resolve through an /etc/hosts of the test's own, bind-mounted
in a mount namespace the daemon runs in. No packet goes anywhere else: every
address used is on the loopback or inside those namespaces, and each host's
log proves what reached it."""

import os
import secrets
import socket
import subprocess
import threading
import time

import pytest

from conftest import Daemon, stop_and_check

PUB, PRIV = "198.51.100.2", "10.253.0.2"
HERE = os.path.dirname(os.path.abspath(__file__))


def sh(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Netns:
    """One namespace with one veth to the host: host side .1, inside .2."""

    def __init__(self, tag, prefix):
        self.name = "zmeg-%s-%s" % (tag, secrets.token_hex(3))
        self.host_if = "zmg%s%s" % (tag[0], secrets.token_hex(3))
        sh("ip", "netns", "add", self.name)
        try:
            sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", self.name)
            sh("ip", "addr", "add", prefix + ".1/24", "dev", self.host_if)
            sh("ip", "link", "set", self.host_if, "up")
            sh("ip", "-n", self.name, "addr", "add", prefix + ".2/24", "dev", "eth0")
            sh("ip", "-n", self.name, "link", "set", "eth0", "up")
            sh("ip", "-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        self.procs = []

    def run(self, *args):
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def close(self):
        for p in getattr(self, "procs", []):
            p.kill()
            p.wait()
        subprocess.run(["ip", "link", "del", self.host_if], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", self.name], stderr=subprocess.DEVNULL)


def hits(log):
    try:
        with open(log) as f:
            return [l for l in f.read().splitlines() if l != "ready"]
    except FileNotFoundError:
        return []


def wait_ready(log, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(log) and "ready" in open(log).read().split("\n"):
            return
        assert time.monotonic() < deadline, "test host did not start"
        time.sleep(0.05)


class LoopSink:
    """A listener on the host's loopback that notes every connection."""

    def __init__(self, addr):
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.bind((addr, 0))
        self.s.listen(16)
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]
        self.seen = []
        self.stop = False
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while not self.stop:
            try:
                c, peer = self.s.accept()
            except (socket.timeout, OSError):
                continue
            self.seen.append(peer)
            c.close()

    def close(self):
        self.stop = True
        self.t.join(2)
        self.s.close()


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    d = tmp_path_factory.mktemp("egress")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
       "-subj", "/CN=public.test", "-addext", "subjectAltName=DNS:public.test,IP:" + PUB)
    pub = Netns("pub", "198.51.100")
    priv = None
    loop = None
    try:
        priv = Netns("prv", "10.253.0")
        pub_log, priv_log = str(d / "public.log"), str(d / "private.log")
        pub.run("/usr/bin/python3", os.path.join(HERE, "egress_hosts.py"), "public", pub_log, cert, key)
        priv.run("/usr/bin/python3", os.path.join(HERE, "egress_hosts.py"), "sink", priv_log, "80", "443", "9999")
        wait_ready(pub_log)
        wait_ready(priv_log)
        loop = LoopSink("127.0.0.3")
        allowed_loop = LoopSink("127.0.0.1")
        yield {"cert": open(cert).read(), "pub_log": pub_log, "priv_log": priv_log, "loop": loop,
               "allowed_loop": allowed_loop, "dir": str(d)}
        allowed_loop.close()
    finally:
        if loop:
            loop.close()
        pub.close()
        if priv:
            priv.close()


@pytest.fixture(scope="module")
def egd(net):
    """A daemon whose gateway lets the public test range (and 127.0.0.1)
    through, in a mount namespace with the test's /etc/hosts."""
    hosts = os.path.join(net["dir"], "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n%s public.test\n%s private.test\n%s rebind.test\n%s rebind.test\n"
                % (PUB, PRIV, PRIV, PUB))
    d = Daemon("egress")
    wrapper = os.path.join(d.base, "zmeshd-hosts")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec /usr/bin/unshare -m --propagation private /bin/sh -c "
                "'mount --bind \"$0\" /etc/hosts && exec \"$@\"' %s %s \"$@\"\n" % (hosts, d.binary))
    os.chmod(wrapper, 0o755)
    d.binary = wrapper
    # A port of its own: "127.0.0.1:0" would make every port of 127.0.0.1
    # the platform's.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        d.start("--listen", "127.0.0.1:%d" % port, "--egress-allow", "198.51.100.0/24",
                "--egress-allow", "127.0.0.1/32")
    except BaseException:
        d.cleanup()
        raise
    yield d
    stop_and_check(d)


@pytest.fixture
def owner(egd):
    admin = egd.admin()
    email = "eg-%s@example.test" % secrets.token_hex(4)
    pw = "pw-" + secrets.token_hex(8)
    r = admin.post("/users", {"email": email, "password": pw})
    assert r.status == 201, str(r)
    return egd.login(email, pw)


def run(client, code, payload=None, language="javascript", project=None):
    p = project or client.create_project()
    f = client.deploy(p["id"], code, language=language)
    r = client.invoke(p["id"], f["id"], payload)
    assert r.status == 200, str(r)
    body = r.json
    assert body["status"] == "success", body
    return body, p, f


URLLIB_PY = r"""
import json, ssl, urllib.request, urllib.error

def handler(p, zmesh):
    out = []
    ctx = ssl.create_default_context(cadata=p.get("ca")) if p.get("ca") else None
    for url in p["urls"]:
        try:
            r = urllib.request.urlopen(url, timeout=8, context=ctx if url.startswith("https") else None)
            out.append({"ok": json.loads(r.read())})
        except urllib.error.HTTPError as e:
            out.append({"error": "%d %s" % (e.code, e.read().decode().strip())})
        except Exception as e:
            out.append({"error": str(getattr(e, "reason", e))})
    return out
"""

FETCH_JS = r"""
const fs = require('fs');
exports.handler = async (p) => {
  if (p.ca) { fs.writeFileSync('/tmp/ca.pem', p.ca); process.env.NODE_EXTRA_CA_CERTS = '/tmp/ca.pem'; }
  const out = [];
  for (const url of p.urls) {
    try { out.push({ ok: await (await fetch(url)).json() }); }
    catch (e) { out.push({ error: e.message + (e.cause && e.cause.message ? ' (' + e.cause.message + ')' : '') }); }
  }
  return out;
};
"""

MODULES_JS = r"""
const http = require('http'), https = require('https');
const get = (mod, url, opts) => new Promise((ok, ko) => mod.get(url, opts, (res) => {
  let s = ''; res.on('data', (d) => (s += d)); res.on('end', () => ok(JSON.parse(s)));
}).on('error', ko));
exports.handler = async (p) => [await get(http, p.http, {}), await get(https, p.https, { ca: p.ca })];
"""


def test_urllib_reaches_an_allowed_host_over_http_and_https(owner, net):
    before = len(hits(net["pub_log"]))
    body, p, f = run(owner, URLLIB_PY, {"urls": ["http://public.test/u1?x=1", "https://public.test/u2"],
                                         "ca": net["cert"]}, language="python")
    assert body["result"] == [{"ok": {"path": "/u1?x=1", "host": "public.test", "tls": False, "method": "GET"}},
                              {"ok": {"path": "/u2", "host": "public.test", "tls": True, "method": "GET"}}]
    assert hits(net["pub_log"])[before:] == ["http GET public.test /u1?x=1", "https GET public.test /u2"]
    m = body["metrics"]
    assert m["egress_requests"] == 2 and m["egress_refused"] == 0 and m["egress_bytes"] > 1000, m
    # The record keeps them.
    deadline = time.monotonic() + 10
    while True:
        r = owner.get("/projects/%s/functions/%s/invocations/%s" % (p["id"], f["id"], body["invocation_id"]))
        if r.status == 200:
            break
        assert time.monotonic() < deadline, str(r)
        time.sleep(0.1)
    assert r.json["metrics"]["egress_requests"] == 2 and r.json["metrics"]["egress_bytes"] == m["egress_bytes"]


def test_node_fetch_and_the_http_modules_reach_an_allowed_host(owner, net):
    before = len(hits(net["pub_log"]))
    body, _, _ = run(owner, FETCH_JS, {"urls": ["http://public.test/f1", "https://public.test/f2"],
                                        "ca": net["cert"]})
    assert body["result"] == [{"ok": {"path": "/f1", "host": "public.test", "tls": False, "method": "GET"}},
                              {"ok": {"path": "/f2", "host": "public.test", "tls": True, "method": "GET"}}]
    body, _, _ = run(owner, MODULES_JS, {"http": "http://public.test/m1", "https": "https://public.test/m2",
                                          "ca": net["cert"]})
    assert [x["path"] for x in body["result"]] == ["/m1", "/m2"] and body["result"][1]["tls"] is True
    assert hits(net["pub_log"])[before:] == ["http GET public.test /f1", "https GET public.test /f2",
                                             "http GET public.test /m1", "https GET public.test /m2"]
    assert body["metrics"]["egress_requests"] == 2


def test_private_loopback_and_own_addresses_are_refused_and_reach_nothing(owner, egd, net):
    loop, allowed = net["loop"], net["allowed_loop"]
    urls = ["http://%s/" % PRIV, "https://private.test/", "http://127.0.0.3:%d/" % loop.port,
            "http://127.0.0.1:%d/healthz" % egd.port, "http://169.254.169.254/latest/meta-data/",
            "http://public.test:25/", "http://127.0.0.1:%d/" % allowed.port]
    # Pro: 25 requests per invocation, room for all seven.
    p = owner.create_project()
    r = egd.admin().patch("/projects/" + p["id"], {"tier": "pro"})
    assert r.status == 200, str(r)
    t0 = time.monotonic()
    py, _, _ = run(owner, URLLIB_PY, {"urls": urls}, language="python", project=p)
    js, _, _ = run(owner, FETCH_JS, {"urls": urls}, project=p)
    # Refusals are immediate, not timeouts.
    assert time.monotonic() - t0 < 8
    why = ["10.253.0.2 is a private address", "10.253.0.2 is a private address", "127.0.0.3 is a loopback address",
           "an address of the platform itself", "cloud metadata", "port 25 is closed"]
    for out in (py["result"], js["result"][:5]):
        for got, reason in zip(out[:6], why):
            assert "error" in got and "egress refused" in got["error"] and reason in got["error"], (got, reason)
    # Node's fetch refuses the mail ports itself ("bad port"), before any
    # connection.
    assert "bad port" in js["result"][5]["error"], js["result"][5]
    # The lifted 127.0.0.1 is reachable: the own port was refused for being
    # the platform's (its listener answers nothing JSON, so an error, but a
    # connection).
    assert len(allowed.seen) == 2
    assert hits(net["priv_log"]) == [] and loop.seen == []
    assert py["metrics"]["egress_refused"] == 6 and py["metrics"]["egress_requests"] == 7
    refused = [e for e in egd.log_events() if e.get("event") == "egress_refused"]
    assert any(e.get("reason", "").endswith("10.253.0.2 is a private address") for e in refused)


UDP_RAW_PY = r"""
import errno, socket

def handler(p, zmesh):
    out = {}
    try:
        socket.create_connection((p["pub"], 80), timeout=3)
        out["tcp"] = "connected"
    except OSError as e:
        out["tcp"] = errno.errorcode.get(e.errno, str(e))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.sendto(b"hello", (p["pub"], 9999))
        out["udp"] = "sent"
    except OSError as e:
        out["udp"] = errno.errorcode.get(e.errno, str(e))
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        out["raw"] = "made"
    except OSError as e:
        out["raw"] = errno.errorcode.get(e.errno, str(e))
    try:
        socket.getaddrinfo("public.test", 80)
        out["dns"] = "resolved"
    except OSError as e:
        out["dns"] = "no"
    return out
"""


def test_udp_raw_sockets_and_direct_tcp_go_nowhere(owner, net):
    before = len(hits(net["pub_log"]))
    body, _, _ = run(owner, UDP_RAW_PY, {"pub": PUB}, language="python")
    assert body["result"] == {"tcp": "ENETUNREACH", "udp": "ENETUNREACH", "raw": "EPERM", "dns": "no"}
    time.sleep(0.3)
    assert hits(net["pub_log"])[before:] == []


def test_a_name_that_also_resolves_to_a_private_address_reaches_only_the_allowed_one(owner, net):
    before = len(hits(net["pub_log"]))
    body, _, _ = run(owner, URLLIB_PY, {"urls": ["http://rebind.test/r1", "http://private.test/r2"]},
                     language="python")
    assert body["result"][0] == {"ok": {"path": "/r1", "host": "rebind.test", "tls": False, "method": "GET"}}
    assert "egress refused: 10.253.0.2 is a private address" in body["result"][1]["error"]
    assert hits(net["pub_log"])[before:] == ["http GET rebind.test /r1"]
    assert hits(net["priv_log"]) == []


def test_allowlist_and_none_modes(owner, net):
    p = owner.create_project()

    def mode(m, allow=()):
        r = owner.patch("/projects/" + p["id"], {"egress": {"mode": m, "allow": list(allow)}})
        assert r.status == 200, str(r)

    urls = ["http://public.test/a1", "http://%s/a2" % PUB]
    mode("allowlist", ["public.test"])
    body, _, _ = run(owner, URLLIB_PY, {"urls": urls}, language="python", project=p)
    assert body["result"][0]["ok"]["path"] == "/a1"
    assert "not in the project's allowlist" in body["result"][1]["error"]
    # IP and CIDR entries hold against the address a name resolves to.
    mode("allowlist", ["203.0.113.0/24"])
    body, _, _ = run(owner, URLLIB_PY, {"urls": urls}, language="python", project=p)
    assert all("not in the project's allowlist" in x["error"] for x in body["result"]), body["result"]
    mode("allowlist", ["198.51.100.0/24"])
    body, _, _ = run(owner, URLLIB_PY, {"urls": urls}, language="python", project=p)
    assert [x["ok"]["path"] for x in body["result"]] == ["/a1", "/a2"]
    mode("none")
    before = len(hits(net["pub_log"]))
    body, _, _ = run(owner, FETCH_JS, {"urls": urls}, project=p)
    assert all("egress refused" in x["error"] for x in body["result"]), body["result"]
    assert hits(net["pub_log"])[before:] == []
    mode("open")
    body, _, _ = run(owner, FETCH_JS, {"urls": urls}, project=p)
    assert [x["ok"]["path"] for x in body["result"]] == ["/a1", "/a2"]


def test_tier_limits_on_requests_and_bytes(owner, egd, net):
    # Free: 5 requests and 10 MiB per invocation.
    urls = ["http://public.test/t%d" % i for i in range(7)]
    body, p, _ = run(owner, URLLIB_PY, {"urls": urls}, language="python")
    ok = [x for x in body["result"] if "ok" in x]
    assert len(ok) == 5 and all("more than 5 requests" in x["error"] for x in body["result"][5:]), body["result"]
    assert body["metrics"]["egress_requests"] == 7 and body["metrics"]["egress_refused"] == 2
    big = r"""
exports.handler = async () => {
  try { const b = await (await fetch('http://public.test/big?bytes=33554432')).arrayBuffer(); return b.byteLength; }
  catch (e) { return 'cut: ' + e.message; }
};"""
    body, _, _ = run(owner, big)
    assert isinstance(body["result"], str) and body["result"].startswith("cut"), body["result"]
    assert 10 << 20 <= body["metrics"]["egress_bytes"] <= (10 << 20) + (1 << 20), body["metrics"]
    m = egd.metrics()
    assert m['zmesh_egress_requests_total{project="%s"}' % p["id"]] == 7
    assert m['zmesh_egress_refused_total{project="%s"}' % p["id"]] == 2


FLOOD_PY = r"""
import socket, time

def handler(p, zmesh):
    socks, failed = [], 0
    for i in range(1000):
        try:
            s = socket.create_connection(("127.0.0.1", 3128), timeout=2)
            s.sendall(b"CONNECT public.test:80 HTTP/1.1\r\n\r\n")
            socks.append(s)
        except OSError:
            failed += 1
    time.sleep(p["hold"])
    return {"opened": len(socks), "failed": failed}
"""


def test_the_gateway_survives_a_flood_and_others_are_unaffected(owner, net):
    """One function opens as many connections as it can (its descriptor limit
    stops it first, the gateway's bounds next) and holds them; another
    project's function meanwhile fetches as usual."""
    result = {}

    def flood():
        result["flood"] = run(owner, FLOOD_PY, {"hold": 4}, language="python")[0]

    t = threading.Thread(target=flood)
    t.start()
    time.sleep(2)
    body, _, _ = run(owner, FETCH_JS, {"urls": ["http://public.test/calm"]})
    assert body["result"] == [{"ok": {"path": "/calm", "host": "public.test", "tls": False, "method": "GET"}}]
    t.join(60)
    flood_body = result["flood"]
    assert flood_body["result"]["opened"] + flood_body["result"]["failed"] == 1000
    # Past the per-sandbox bound (64 at once) every connection is refused.
    assert flood_body["metrics"]["egress_refused"] >= flood_body["result"]["opened"] - 64


class Relay:
    """127.0.0.1:port -> a unix socket, both ways: a cluster of the test's
    own reached over TCP, as an external DATABASE_URL would be."""

    def __init__(self, path):
        self.path = path
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(64)
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]
        self.stop = False
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    @staticmethod
    def pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def loop(self):
        while not self.stop:
            try:
                c, _ = self.s.accept()
            except (socket.timeout, OSError):
                continue
            u = socket.socket(socket.AF_UNIX)
            try:
                u.connect(self.path)
            except OSError:
                c.close()
                continue
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    def close(self):
        self.stop = True
        self.t.join(2)
        self.s.close()


def test_an_external_databases_address_is_refused_though_its_range_is_lifted(pgtmp):
    """zmeshd on a DATABASE_URL at 127.0.0.1:PORT (a relay to a cluster of
    the test's own), with 127.0.0.1 lifted for functions: the database's
    address and port stay refused, as the platform's own."""
    sock = pgtmp
    r = subprocess.run(["/usr/bin/psql", "-X", "-q", "-h", sock, "-U", "postgres", "-d", "postgres", "-c",
                        "CREATE DATABASE zmeshcp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 0, r.stderr
    relay = Relay(os.path.join(sock, ".s.PGSQL.5432"))
    url = "postgresql://postgres@127.0.0.1:%d/zmeshcp" % relay.port
    d = Daemon("egress-dburl", env={"DATABASE_URL": url, "ZMESH_PG_SOCKET_DIR": sock})
    d.pg_sock = sock
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        d.start("--listen", "127.0.0.1:%d" % port, "--pgbouncer", "0", "--egress-allow", "127.0.0.1/32")
        c = d.admin()
        body, _, _ = run(c, URLLIB_PY, {"urls": ["http://127.0.0.1:%d/" % relay.port]}, language="python")
        assert "egress refused: 127.0.0.1 is an address of the platform itself" in body["result"][0]["error"], body
        assert body["metrics"]["egress_refused"] == 1
    except BaseException:
        d.cleanup()
        relay.close()
        raise
    stop_and_check(d)
    relay.close()
