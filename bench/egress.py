#!/usr/bin/python3
"""What the egress gateway adds to an outbound request: the same HTTP GET
to a test host on the loopback (127.0.0.2), made by the same code, once from
inside a function (through the sandbox's listener and the gateway) and once
by the same runtime on the host directly. Rounds alternate the two; each
round makes --requests requests in a row and times each one in the runtime
itself (perf_counter_ns / process.hrtime), so what is compared is the
request, not the invocation around it.

  python  urllib.request.urlopen, a new connection per request (urllib
          keeps none): through the gateway an absolute-form request, which
          the gateway forwards on a connection of its own.
  node    fetch, whose connection is kept alive: through the gateway one
          CONNECT tunnel, reused.

Results go to bench/results/egress-YYYY-MM-DD.{md,json}. Run as root:

    /usr/bin/python3 bench/egress.py [--zmeshd build/supervisor/zmeshd] [--quick]
"""

import argparse
import datetime
import http.server
import json
import os
import secrets
import socketserver
import statistics
import subprocess
import sys
import threading

sys.dont_write_bytecode = True
import e2e_lib  # noqa: E402

HOST = "127.0.0.2"
GOAL_ADDED_P50_MS = 1.0

PY = r"""
import json, sys, time, urllib.request

def run(url, n):
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        r = urllib.request.urlopen(url, timeout=10)
        body = r.read()
        out.append(time.perf_counter_ns() - t)
        assert body == b"ok", body
    return out

def handler(p, zmesh):
    return run(p["url"], p["n"])

if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]))))
"""

JS = r"""
async function run(url, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    const body = await (await fetch(url)).text();
    out.push(Number(process.hrtime.bigint() - t));
    if (body !== 'ok') throw new Error('bad body ' + body);
  }
  return out;
}
exports.handler = async (p) => run(p.url, p.n);
if (require.main === module) run(process.argv[2], Number(process.argv[3])).then((o) => console.log(JSON.stringify(o)));
"""


class Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body are two writes: without this, a kept-alive connection
    # (Node's fetch) waits on Nagle and the client's delayed ACK, ~40 ms.
    disable_nagle_algorithm = True

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def stats(ns):
    ms = sorted(x / 1e6 for x in ns)
    q = lambda p: ms[min(len(ms) - 1, int(round(p * (len(ms) - 1))))]  # noqa: E731
    return {"n": len(ms), "p50_ms": round(q(0.5), 3), "p90_ms": round(q(0.9), 3), "p99_ms": round(q(0.99), 3),
            "mean_ms": round(statistics.fmean(ms), 3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zmeshd", default=os.path.join(os.path.dirname(__file__), "..", "build", "supervisor",
                                                     "zmeshd"))
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.requests = 2, 5
    srv = Server((HOST, 0), Ok)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = "http://%s:%d/x" % (HOST, srv.server_address[1])
    d = e2e_lib.Daemon(os.path.abspath(a.zmeshd), "egress", 2, {}, "Bench-" + secrets.token_hex(8))
    d.argv += ["--egress-allow", HOST + "/32"]
    d.start()
    results = {"python": {"gateway": [], "direct": []}, "node": {"gateway": [], "direct": []}}
    tmp = d.base
    files = {"python": os.path.join(tmp, "direct.py"), "node": os.path.join(tmp, "direct.js")}
    with open(files["python"], "w") as f:
        f.write(PY)
    with open(files["node"], "w") as f:
        f.write(JS)
    direct_argv = {"python": ["/usr/bin/python3.11", "-S", files["python"]], "node": ["/usr/bin/node", files["node"]]}
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": tmp}
    try:
        d.wait_ready(180)
        api = e2e_lib.Api(d)
        api.login()
        pid = api.create_project("bench-egress", "enterprise")
        fids = {"python": api.deploy(pid, "eg-py", "python", PY), "node": api.deploy(pid, "eg-js", "javascript", JS)}
        for r in range(a.rounds):
            for rt in ("python", "node"):
                out = api.call("POST", "/projects/%s/functions/%s/invoke" % (pid, fids[rt]),
                               {"payload": {"url": url, "n": a.requests}})
                if out.get("status") != "success":
                    raise SystemExit("%s through the gateway: %r" % (rt, out))
                results[rt]["gateway"] += out["result"][1:] if r == 0 else out["result"]
                p = subprocess.run(direct_argv[rt] + [url, str(a.requests)], env=env, stdout=subprocess.PIPE,
                                   check=True, timeout=120)
                got = json.loads(p.stdout)
                results[rt]["direct"] += got[1:] if r == 0 else got
    finally:
        d.stop()
        srv.shutdown()
    report = {"date": datetime.date.today().isoformat(), "rounds": a.rounds, "requests": a.requests, "cases": {}}
    lines = ["# Egress gateway: added latency per request (%s)" % report["date"], "",
             "Same code, same test host on %s, rounds alternating; %d rounds x %d requests per side "
             "(the first request of each side's first round left out)." % (HOST, a.rounds, a.requests), "",
             "| runtime | direct p50 | gateway p50 | added p50 | direct p90 | gateway p90 | goal |",
             "|---|---|---|---|---|---|---|"]
    for rt in ("python", "node"):
        g, dr = stats(results[rt]["gateway"]), stats(results[rt]["direct"])
        added = round(g["p50_ms"] - dr["p50_ms"], 3)
        report["cases"][rt] = {"gateway": g, "direct": dr, "added_p50_ms": added}
        lines.append("| %s | %.3f ms | %.3f ms | %.3f ms | %.3f ms | %.3f ms | %s |" % (
            rt, dr["p50_ms"], g["p50_ms"], added, dr["p90_ms"], g["p90_ms"],
            "met" if added <= GOAL_ADDED_P50_MS else "missed (goal <= %.1f ms)" % GOAL_ADDED_P50_MS))
    text = "\n".join(lines) + "\n"
    print(text)
    if not a.quick:
        os.makedirs(a.out, exist_ok=True)
        base = os.path.join(a.out, "egress-%s" % report["date"])
        with open(base + ".json", "w") as f:
            json.dump(report, f, indent=1)
        with open(base + ".md", "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
