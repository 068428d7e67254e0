'use strict';
// The PostgreSQL driver, loaded once, on the first database call.
//
// At load, pg asks whether it runs in a Cloudflare Worker. Where there is no
// navigator global (Node.js 20 has none) it asks by constructing a fetch
// Response, which loads Node's whole fetch implementation: about 15 ms of CPU,
// half of what loading the driver costs. A navigator defined for the time of
// the require answers the question at once; it is removed again, so the
// function's globals are what Node.js gives it.
//
// pg computes SCRAM-SHA-256 with WebCrypto: eight asynchronous steps, each a
// trip through libuv's thread pool. Node's synchronous crypto gives the same
// bytes at once: measured, a session (connect, authenticate, one query) took
// ~0.8 ms less. The iteration count is the server's; the node's pgbouncer
// offers what the project role's verifier holds.

function syncScram(pg) {
  const nodeCrypto = require('crypto');
  let utils;
  try {
    utils = require('pg/lib/crypto/utils.js');
  } catch {
    return pg;
  }
  if (typeof utils.deriveKey !== 'function' || typeof utils.hmacSha256 !== 'function' || typeof utils.sha256 !== 'function')
    return pg;
  utils.deriveKey = (password, salt, iterations) => nodeCrypto.pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  utils.hmacSha256 = (key, text) => nodeCrypto.createHmac('sha256', Buffer.from(key)).update(text).digest();
  utils.sha256 = (data) => nodeCrypto.createHash('sha256').update(Buffer.from(data)).digest();
  return pg;
}

function load() {
  if (Object.getOwnPropertyDescriptor(globalThis, 'navigator')) return syncScram(require('pg'));
  Object.defineProperty(globalThis, 'navigator', {
    value: Object.freeze({ userAgent: `Node.js/${process.versions.node}` }),
    configurable: true,
    writable: true,
    enumerable: false,
  });
  try {
    return syncScram(require('pg'));
  } finally {
    delete globalThis.navigator;
  }
}

module.exports = load();
