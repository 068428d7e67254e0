'use strict';
// The PostgreSQL driver, loaded once, on the first database call.
//
// At load, pg asks whether it runs in a Cloudflare Worker. Where there is no
// navigator global (Node.js 20 has none) it asks by constructing a fetch
// Response, which loads Node's whole fetch implementation: about 15 ms of CPU,
// half of what loading the driver costs. A navigator defined for the time of
// the require answers the question at once; it is removed again, so the
// function's globals are what Node.js gives it.

function load() {
  if (Object.getOwnPropertyDescriptor(globalThis, 'navigator')) return require('pg');
  Object.defineProperty(globalThis, 'navigator', {
    value: Object.freeze({ userAgent: `Node.js/${process.versions.node}` }),
    configurable: true,
    writable: true,
    enumerable: false,
  });
  try {
    return require('pg');
  } finally {
    delete globalThis.navigator;
  }
}

module.exports = load();
