"""Test hosts for the egress tests, run inside network namespaces the tests
make (never reachable from anywhere else).

  egress_hosts.py public LOG CERT KEY   HTTP on 80, HTTPS on 443 (CERT/KEY),
                                         UDP on 9999
  egress_hosts.py sink LOG PORT...       accept on each PORT, close at once

Every request, datagram or connection is appended to LOG as one line, so a
test can prove what reached a host and, as much, what never did. Requests:
  /big?bytes=N   N bytes of "x" (streamed), for the byte limits
  anything else  JSON {path, host, tls, method}
The process ends by itself after 20 minutes."""

import http.server
import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time

LIFETIME_S = 1200
lock = threading.Lock()


def note(log, line):
    with lock, open(log, "a") as f:
        f.write(line + "\n")


def public(log, cert, key):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def answer(self):
            tls = isinstance(self.connection, ssl.SSLSocket)
            note(log, "%s %s %s %s" % ("https" if tls else "http", self.command, self.headers.get("host"), self.path))
            if self.path.startswith("/big?bytes="):
                n = min(int(self.path.split("=", 1)[1]), 1 << 30)
                self.send_response(200)
                self.send_header("content-length", str(n))
                self.end_headers()
                chunk = b"x" * 65536
                try:
                    while n > 0:
                        k = min(n, len(chunk))
                        self.wfile.write(chunk[:k])
                        n -= k
                except OSError:
                    pass
                return
            body = json.dumps({"path": self.path, "host": self.headers.get("host"), "tls": tls,
                               "method": self.command}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    plain = Server(("0.0.0.0", 80), Handler)
    secure = Server(("0.0.0.0", 443), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    secure.socket = ctx.wrap_socket(secure.socket, server_side=True)
    for s in (plain, secure):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", 9999))

    def datagrams():
        while True:
            data, peer = udp.recvfrom(2048)
            note(log, "udp %s %r" % (peer[0], data[:64]))

    threading.Thread(target=datagrams, daemon=True).start()


def sink(log, ports):
    def serve(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(64)
        while True:
            c, peer = s.accept()
            note(log, "tcp %d %s" % (port, peer[0]))
            c.close()

    for p in ports:
        threading.Thread(target=serve, args=(p,), daemon=True).start()


def main():
    kind, log = sys.argv[1], sys.argv[2]
    if kind == "public":
        public(log, sys.argv[3], sys.argv[4])
    else:
        sink(log, [int(p) for p in sys.argv[3:]])
    note(log, "ready")
    deadline = time.monotonic() + LIFETIME_S
    while time.monotonic() < deadline and os.getppid() != 1:
        time.sleep(0.5)


if __name__ == "__main__":
    main()
