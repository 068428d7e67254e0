#!/usr/bin/python3
"""Reproduce a connection flood against an HTTP server on loopback, bounded,
and report whether health checks and authenticated requests were still
answered and whether any request got a reset instead of a status.

    /usr/bin/python3 tests/load/flood.py --port 8080 [--addresses 10]
        [--slow-body 2] [--idle 1] [--slowloris 1] [--over 3] [--seconds 6]

Each flooding address (127.0.0.2, 127.0.0.3, ...: sockets bound to them,
which Linux allows for all of 127.0.0.0/8) opens, per address:
  --slow-body   complete headers, then a body trickled a byte a second
  --idle        connections that send nothing
  --slowloris   headers trickled a byte a second, never completed
and, once those are in place, --over complete GET requests, whose answer
(status or reset) is recorded. Meanwhile a probe address outside the flood
asks for the health path and for an authenticated-looking request once every
--probe-every seconds. Everything stops after --seconds; counts and times
are bounded. Only loopback targets are accepted. Prints one JSON report."""

import argparse
import ipaddress
import json
import socket
import sys
import threading
import time

MAX_SOCKETS = 2000
MAX_SECONDS = 120


def loopback_only(host):
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise SystemExit("flood: %r is not an IP address; only loopback is allowed" % host)
    if not (ip in ipaddress.ip_network("127.0.0.0/8") or ip == ipaddress.ip_address("::1")):
        raise SystemExit("flood: %s is not loopback (127.0.0.0/8 or ::1); refusing" % host)
    return ip


def connect(host, port, source, timeout):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source and fam == socket.AF_INET:
        s.bind((source, 0))
    s.connect((host, port))
    return s


def exchange(host, port, source, request, timeout):
    """One request on its own connection: (status or None, seconds, outcome)."""
    t0 = time.monotonic()
    try:
        s = connect(host, port, source, timeout)
    except OSError as e:
        return None, time.monotonic() - t0, "connect: %s" % e.__class__.__name__
    try:
        s.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        if not data.startswith(b"HTTP/1."):
            return None, time.monotonic() - t0, "closed without a status"
        head = data.split(b"\r\n\r\n", 1)[0]
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0]
        status = int(head.split(b" ", 2)[1])
        retry_after = None
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"retry-after":
                retry_after = v.strip().decode()
        return status, time.monotonic() - t0, retry_after
    except ConnectionResetError:
        return None, time.monotonic() - t0, "reset"
    except OSError as e:
        return None, time.monotonic() - t0, e.__class__.__name__
    finally:
        s.close()


def request(method, path, headers=()):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: flood", "Connection: close", *headers, "", ""]
    return "\r\n".join(lines).encode()


def run(host, port, addresses=10, slow_body=2, idle=1, slowloris=1, over=3, seconds=6.0, probe_every=0.5,
        health_path="/healthz", over_path="/hello", probe_source="127.0.0.200", timeout=5.0):
    loopback_only(host)
    if not 1 <= addresses <= 250:
        raise SystemExit("flood: --addresses must be within 1..250")
    if addresses * (slow_body + idle + slowloris + over) > MAX_SOCKETS:
        raise SystemExit("flood: more than %d sockets asked for" % MAX_SOCKETS)
    seconds = min(float(seconds), MAX_SECONDS)
    v6 = ":" in host
    sources = [None] * addresses if v6 else ["127.0.0.%d" % (2 + i) for i in range(addresses)]
    if v6:
        probe_source = None
    end = time.monotonic() + seconds
    held, lock = [], threading.Lock()
    report = {"target": "%s:%d" % (host, port), "seconds": seconds, "held_open": 0, "held_failed": 0,
              "health": [], "auth": [], "over": [], "resets": 0}

    def hold(source, kind):
        try:
            s = connect(host, port, source, timeout)
        except OSError:
            with lock:
                report["held_failed"] += 1
            return
        with lock:
            held.append(s)
            report["held_open"] += 1
        try:
            if kind == "slow_body":
                s.sendall(b"POST /raw HTTP/1.1\r\nHost: flood\r\nContent-Length: 100000\r\n\r\n")
            elif kind == "slowloris":
                s.sendall(b"GET /hello HTTP/1.1\r\nHost: flood\r\n")
            while time.monotonic() < end:
                if kind != "idle":
                    s.sendall(b"x" if kind == "slow_body" else b"X-a: b\r\n"[:1])
                time.sleep(1)
        except OSError:
            pass  # cut off by the server: what deadlines are for

    # one kind after the other, so that the slow bodies (which a server can
    # not shed: their requests are in) are the ones holding its slots
    threads = []
    for kind, n in (("slow_body", slow_body), ("idle", idle), ("slowloris", slowloris)):
        for src in sources:
            for _ in range(n):
                t = threading.Thread(target=hold, args=(src, kind), daemon=True)
                t.start()
                threads.append(t)
        time.sleep(0.2)
    time.sleep(min(1.0, seconds / 4))  # let the flood settle in

    def over_requests(src):
        for _ in range(over):
            st, took, note = exchange(host, port, src, request("GET", over_path), timeout)
            with lock:
                report["over"].append({"source": src, "status": st, "ms": round(took * 1000), "note": note})

    over_threads = [threading.Thread(target=over_requests, args=(src,), daemon=True) for src in sources]
    for t in over_threads:
        t.start()

    probes = 0
    while time.monotonic() < end - probe_every and probes < 1000:
        probes += 1
        for key, req in (("health", request("GET", health_path)),
                         ("auth", request("GET", over_path, ["Authorization: Bearer flood-probe"]))):
            st, took, note = exchange(host, port, probe_source, req, timeout)
            report[key].append({"status": st, "ms": round(took * 1000), "note": note})
        time.sleep(probe_every)

    for t in over_threads:
        t.join(timeout=timeout * over + 1)
    while time.monotonic() < end:
        time.sleep(0.1)
    with lock:
        for s in held:
            s.close()
    for t in threads:
        t.join(timeout=2)
    every = report["health"] + report["auth"] + report["over"]
    report["resets"] = sum(1 for r in every if r["status"] is None)
    for key in ("health", "auth"):
        ms = sorted(r["ms"] for r in report[key] if r["status"] is not None)
        report[key + "_max_ms"] = ms[-1] if ms else None
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--addresses", type=int, default=10)
    ap.add_argument("--slow-body", type=int, default=2)
    ap.add_argument("--idle", type=int, default=1)
    ap.add_argument("--slowloris", type=int, default=1)
    ap.add_argument("--over", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--probe-every", type=float, default=0.5)
    ap.add_argument("--health-path", default="/healthz")
    ap.add_argument("--over-path", default="/healthz")
    a = ap.parse_args()
    r = run(a.host, a.port, a.addresses, a.slow_body, a.idle, a.slowloris, a.over, a.seconds, a.probe_every,
            a.health_path, a.over_path)
    json.dump(r, sys.stdout, indent=1)
    print()
    ok = r["resets"] == 0 and all(x["status"] == 200 for x in r["health"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
