'use strict';
// The wrapper routes Node's fetch, http and https through the proxy named
// by HTTPS_PROXY (in a sandbox, the platform's egress gateway): every
// connection is a CONNECT tunnel, TLS runs inside it, and the gateway's
// refusal reaches the function as an error that says why. Here a small
// CONNECT proxy of the test's own stands in for the gateway; every address
// is on the loopback.

const test = require('node:test');
const assert = require('node:assert');
const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const http = require('http');
const https = require('https');
const net = require('net');
const os = require('os');
const path = require('path');
const { invocation, BOOTSTRAP } = require('../testing/harness.js');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'zmesh-sdkjs-egress-'));
const keyFile = path.join(tmp, 'key.pem');
const certFile = path.join(tmp, 'cert.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile,
  '-days', '1', '-subj', '/CN=127.0.0.2', '-addext', 'subjectAltName=IP:127.0.0.2'], { stdio: 'ignore' });

// The origin: plain and TLS, answering with what it was asked.
function answer(req, res) {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ path: req.url, host: req.headers.host, tls: !!req.socket.encrypted }));
}
const plain = http.createServer(answer);
const secure = https.createServer({ key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) }, answer);

// The proxy: 127.0.0.2 is the origin (its port picks plain or TLS); any
// other target is refused as the gateway refuses (with the reason it gives
// for a private address); every CONNECT is recorded. Every target is on
// the loopback, so a wrapper that failed to use the proxy would reach
// nothing else.
const connects = [];
const proxy = net.createServer((c) => {
  let head = '';
  c.on('data', function onData(d) {
    head += d.toString('latin1');
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    c.removeListener('data', onData);
    const m = /^CONNECT (\S+):(\d+) HTTP\/1\.1\r\n/.exec(head);
    connects.push(m ? `${m[1]}:${m[2]}` : head.split('\r\n')[0]);
    if (!m || m[1] !== '127.0.0.2') {
      const body = 'egress refused: 10.0.0.5 is a private address\n';
      c.end(`HTTP/1.1 403 Forbidden\r\nContent-Length: ${body.length}\r\nX-Zmesh-Egress: refused\r\n\r\n${body}`);
      return;
    }
    const o = net.connect(Number(m[2]), '127.0.0.1', () => {
      c.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      const rest = head.slice(end + 4);
      if (rest) o.write(Buffer.from(rest, 'latin1'));
      c.pipe(o);
      o.pipe(c);
    });
    o.on('error', () => c.destroy());
    c.on('error', () => o.destroy());
  });
});

function listen(server) {
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(server.address().port)));
}

let ports;
test.before(async () => {
  ports = { plain: await listen(plain), secure: await listen(secure), proxy: await listen(proxy) };
});
test.after(() => {
  plain.close();
  secure.close();
  proxy.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function run(code, payload, extraEnv = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BOOTSTRAP], {
      env: { PATH: '/usr/bin:/bin', HOME: tmp, TMPDIR: tmp, LANG: 'C.UTF-8',
        HTTPS_PROXY: `http://127.0.0.1:${ports.proxy}`, HTTP_PROXY: `http://127.0.0.1:${ports.proxy}`, ...extraEnv },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', () => {
      try {
        resolve(JSON.parse(out));
      } catch {
        resolve({ unparsable: out, logs: err });
      }
    });
    child.stdin.end(JSON.stringify(invocation(code, { payload })));
  });
}

test('fetch reaches an origin over HTTP and HTTPS through CONNECT tunnels', async () => {
  connects.length = 0;
  const code = `exports.handler = async (p) => {
    process.env.NODE_EXTRA_CA_CERTS = p.ca;
    const a = await (await fetch('http://127.0.0.2:' + p.plain + '/a?x=1')).json();
    const b = await (await fetch('https://127.0.0.2:' + p.secure + '/b')).json();
    return { a, b };
  };`;
  const r = await run(code, { plain: ports.plain, secure: ports.secure, ca: certFile });
  assert.deepStrictEqual(r, { ok: true, result: {
    a: { path: '/a?x=1', host: `127.0.0.2:${ports.plain}`, tls: false },
    b: { path: '/b', host: `127.0.0.2:${ports.secure}`, tls: true } } });
  assert.deepStrictEqual(connects, [`127.0.0.2:${ports.plain}`, `127.0.0.2:${ports.secure}`]);
});

test('the http and https modules go through the proxy, from CommonJS and from an ES module', async () => {
  const get = (mod) => `(url, opts) => new Promise((ok, ko) => ${mod}.get(url, opts || {}, (res) => {
      let s = ''; res.on('data', (d) => (s += d)); res.on('end', () => ok(JSON.parse(s)));
    }).on('error', ko))`;
  const cjs = `const http = require('node:http'); const https = require('https'); const fs = require('fs');
    exports.handler = async (p) => {
      const a = await (${get('http')})('http://127.0.0.2:' + p.plain + '/cjs');
      const b = await (${get('https')})('https://127.0.0.2:' + p.secure + '/cjs', { ca: fs.readFileSync(p.ca) });
      return [a.tls, b.tls, a.path];
    };`;
  const esm = `import http from 'node:http'; import https from 'https'; import fs from 'fs';
    export async function handler(p) {
      const a = await (${get('http')})('http://127.0.0.2:' + p.plain + '/esm');
      const b = await (${get('https')})('https://127.0.0.2:' + p.secure + '/esm', { ca: fs.readFileSync(p.ca) });
      return [a.tls, b.tls, a.path];
    }`;
  const payload = { plain: ports.plain, secure: ports.secure, ca: certFile };
  assert.deepStrictEqual(await run(cjs, payload), { ok: true, result: [false, true, '/cjs'] });
  assert.deepStrictEqual(await run(esm, payload), { ok: true, result: [false, true, '/esm'] });
});

test("a refusal is an error inside the function with the gateway's reason", async () => {
  const code = `const http = require('http');
    exports.handler = async () => {
      const out = {};
      try { await fetch('http://127.0.0.9/'); } catch (e) { out.fetch = [e.name, e.code, e.message]; }
      await new Promise((ok) => http.get('http://127.0.0.9:8080/', () => ok()).on('error', (e) => {
        out.http = [e.name, e.code, e.message]; ok(); }));
      return out;
    };`;
  const r = await run(code, null);
  const why = 'egress refused: 10.0.0.5 is a private address';
  assert.deepStrictEqual(r, { ok: true, result: {
    fetch: ['EgressError', 'EGRESS_REFUSED', why], http: ['EgressError', 'EGRESS_REFUSED', why] } });
});

test('no proxy named: nothing is patched', async () => {
  const code = `exports.handler = async () => [require('http').globalAgent.constructor.name, String(fetch).includes('ensureDispatcher')];`;
  const r = await run(code, null, { HTTPS_PROXY: '', HTTP_PROXY: '' });
  assert.deepStrictEqual(r, { ok: true, result: ['Agent', false] });
});
