'use strict';
// Outbound HTTP(S) through the platform's egress gateway. A sandbox has no
// route out: its only way is the gateway's listener on its own loopback,
// named by HTTPS_PROXY / HTTP_PROXY. Python's urllib and most libraries
// honour those variables by themselves; Node's http, https and fetch do not,
// so this module makes them: every connection is a CONNECT tunnel through the
// gateway (TLS runs end to end inside it, the gateway never sees plaintext).
//
// A refusal comes back as an error whose message is the gateway's own
// ("egress refused: 10.0.0.5 is a private address") and whose code is
// EGRESS_REFUSED; a request over the tier's limit is refused the same way.
//
// Nothing is loaded or connected until a function makes its first request:
// a function that never goes out pays nothing for this.

const HEAD_MAX = 16384;

function proxyAddress(env) {
  const url = env.HTTPS_PROXY || env.https_proxy || env.HTTP_PROXY || env.http_proxy;
  if (!url) return null;
  const m = /^http:\/\/(127\.0\.0\.1|localhost):(\d{1,5})\/?$/.exec(url);
  return m ? { host: m[1], port: Number(m[2]) } : null;
}

class EgressError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'EgressError';
    this.code = status === 403 || status === 429 ? 'EGRESS_REFUSED' : 'EGRESS_FAILED';
    this.status = status;
  }
}

// A host as the request line wants it: IPv6 literals in brackets.
function authority(host, port) {
  const h = host.startsWith('[') ? host : host.includes(':') ? `[${host}]` : host;
  return `${h}:${port}`;
}

// Open a tunnel to host:port; cb(err, socket) with the socket connected to
// the origin (raw TCP, ready for TLS or plain HTTP).
function tunnel(proxy, host, port, cb) {
  const net = require('net');
  const sock = net.connect({ host: proxy.host, port: proxy.port });
  let head = Buffer.alloc(0);
  let done = false;
  const finish = (err) => {
    if (done) return;
    done = true;
    sock.removeListener('data', onData);
    sock.removeListener('error', onError);
    sock.removeListener('end', onEnd);
    if (err) {
      sock.destroy();
      cb(err);
    } else cb(null, sock);
  };
  const onError = (e) =>
    finish(e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET'
      ? new EgressError('egress refused: this function may not reach the network', 403)
      : e);
  const onEnd = () => finish(new EgressError('egress gateway closed the connection', 502));
  const onData = (chunk) => {
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) {
      if (head.length > HEAD_MAX) finish(new EgressError('egress gateway: answer too long', 502));
      return;
    }
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head.toString('latin1', 0, 16)) ? RegExp.$1 : 0);
    if (status === 200) {
      const rest = head.subarray(end + 4);
      if (rest.length) sock.unshift(rest);
      finish(null);
      return;
    }
    // The gateway's refusal: its body is the reason, one short line.
    const lenMatch = /\r\ncontent-length: *(\d+)/i.exec(head.toString('latin1', 0, end));
    const want = lenMatch ? Math.min(Number(lenMatch[1]), 4096) : 0;
    const body = head.subarray(end + 4);
    if (body.length < want && !sock.readableEnded) return; // more to come
    const text = body.subarray(0, want || body.length).toString('utf8').trim();
    finish(new EgressError(text || `egress gateway answered ${status}`, status));
  };
  sock.on('data', onData);
  sock.on('error', onError);
  sock.on('end', onEnd);
  sock.once('connect', () => {
    const a = authority(host, port);
    sock.write(`CONNECT ${a} HTTP/1.1\r\nHost: ${a}\r\n\r\n`);
  });
}

// TLS over a tunnel, as https and fetch would have made it directly. Extra
// trust as Node knows it: NODE_EXTRA_CA_CERTS (read when the connection is
// made, so a function may set it in its own environment).
function extraCa(options) {
  if (options.ca) return options.ca;
  const file = process.env.NODE_EXTRA_CA_CERTS;
  if (!file) return undefined;
  const tls = require('tls');
  try {
    return [...tls.rootCertificates, require('fs').readFileSync(file, 'utf8')];
  } catch {
    return undefined;
  }
}

function tlsOver(sock, options, cb) {
  const tls = require('tls');
  const servername = options.servername || (require('net').isIP(options.host) ? undefined : options.host);
  const s = tls.connect({ ...options, socket: sock, servername, ca: extraCa(options) });
  let done = false;
  s.once('secureConnect', () => {
    if (!done) {
      done = true;
      cb(null, s);
    }
  });
  s.once('error', (e) => {
    if (!done) {
      done = true;
      cb(e);
    }
  });
}

// The agents for http and https, each made when its module is first loaded.
function httpAgent(proxy) {
  const http = require('http');
  class HttpTunnelAgent extends http.Agent {
    createConnection(options, cb) {
      tunnel(proxy, options.host || 'localhost', options.port || 80, cb);
    }
  }
  return new HttpTunnelAgent({ keepAlive: true });
}

function httpsAgent(proxy) {
  const https = require('https');
  class HttpsTunnelAgent extends https.Agent {
    createConnection(options, cb) {
      const host = options.host || 'localhost';
      tunnel(proxy, host, options.port || 443, (err, sock) => {
        if (err) return cb(err);
        tlsOver(sock, { ...options, host }, cb);
      });
    }
  }
  return new HttpsTunnelAgent({ keepAlive: true });
}

// fetch: Node's own (undici) with a dispatcher whose connector tunnels.
// undici is loaded by the first fetch, not before.
function wrapFetch(proxy) {
  const original = globalThis.fetch;
  if (typeof original !== 'function') return;
  let dispatcher = null;
  async function ensureDispatcher() {
    if (dispatcher) return dispatcher;
    const key = Symbol.for('undici.globalDispatcher.1');
    if (!globalThis[key]) await original('data:,');
    const Agent = globalThis[key].constructor;
    dispatcher = new Agent({
      connect(opts, cb) {
        const https = opts.protocol === 'https:';
        const port = Number(opts.port) || (https ? 443 : 80);
        const host = opts.hostname;
        tunnel(proxy, host, port, (err, sock) => {
          if (err) return cb(err, null);
          if (!https) return cb(null, sock);
          tlsOver(sock, { host, servername: opts.servername || undefined, ALPNProtocols: ['http/1.1'] }, (e, s) =>
            cb(e || null, e ? null : s));
        });
      },
    });
    globalThis[key] = dispatcher;
    return dispatcher;
  }
  const fetch = async function fetch(input, init) {
    await ensureDispatcher();
    try {
      return await original(input, init);
    } catch (e) {
      // undici wraps connector errors as "fetch failed": the gateway's
      // reason is the one worth reading.
      if (e && e.cause instanceof EgressError) {
        const err = new EgressError(e.cause.message, e.cause.status);
        err.cause = e;
        throw err;
      }
      throw e;
    }
  };
  Object.defineProperty(globalThis, 'fetch', { value: fetch, writable: true, configurable: true, enumerable: true });
}

let proxy = null;
let patched = { http: false, https: false };

// Make the loaded module's global agent the tunnelling one (once). http's
// setter replaces the agent ClientRequest uses; https.request reads the
// module's property.
function patchModule(name) {
  if (!proxy || patched[name]) return;
  patched[name] = true;
  require(name).globalAgent = name === 'http' ? httpAgent(proxy) : httpsAgent(proxy);
}

// Route http, https and fetch through the gateway named in env. No gateway
// named: nothing changes (the sandbox then has no way out at all). Loading
// http and https costs Node tens of milliseconds: they are patched when
// something requires them (CommonJS), or before an ES module that imports
// them is loaded (preloadFor), never eagerly.
function install(env = process.env) {
  proxy = proxyAddress(env);
  if (!proxy) return false;
  const Module = require('module');
  const load = Module._load;
  Module._load = function _load(request, parent, isMain) {
    const m = load.call(this, request, parent, isMain);
    if (typeof request === 'string') {
      const name = request.startsWith('node:') ? request.slice(5) : request;
      if ((name === 'http' || name === 'https') && !patched[name]) patchModule(name);
    }
    return m;
  };
  wrapFetch(proxy);
  return true;
}

// Before loading a function's code: an ES module's imports of http and
// https do not pass through require, so what its text names is patched
// first. Single-file functions: the text is all there is.
function preloadFor(code) {
  if (!proxy || typeof code !== 'string') return;
  const re = /(['"`])(?:node:)?(https?)\1/g;
  let m;
  while ((m = re.exec(code)) !== null) patchModule(m[2]);
}

module.exports = { install, preloadFor, EgressError, proxyAddress };
