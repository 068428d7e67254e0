'use strict';
// Logs survive a slow reader: the supervisor may read a sandbox's stderr
// later than the function writes it, and the wrapper exits right after the
// result; nothing written before then may be lost.

const test = require('node:test');
const assert = require('node:assert');
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { invocation, BOOTSTRAP } = require('../testing/harness.js');

test('all of a 200 KB log reaches a reader that starts reading late', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'zmesh-sdkjs-logs-'));
  const code =
    "exports.handler = async () => { for (let i = 0; i < 200; i++) console.log(i + ':' + 'x'.repeat(1000)); return 'done'; };";
  const child = spawn(process.execPath, [BOOTSTRAP], {
    env: { PATH: '/usr/bin:/bin', HOME: tmp, TMPDIR: tmp, LANG: 'C.UTF-8' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const closed = new Promise((r) => child.on('close', r));
  child.stdin.end(JSON.stringify(invocation(code)));
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  // Read nothing of stderr for a while: the pipe fills and the wrapper
  // must wait for us rather than drop the rest.
  child.stderr.pause();
  await new Promise((r) => setTimeout(r, 700));
  let err = Buffer.alloc(0);
  child.stderr.on('data', (d) => (err = Buffer.concat([err, d])));
  child.stderr.resume();
  const status = await closed;
  fs.rmSync(tmp, { recursive: true, force: true });
  assert.strictEqual(status, 0);
  assert.deepStrictEqual(JSON.parse(out), { ok: true, result: 'done' });
  const lines = err.toString().split('\n').filter((l) => /^\d+:x+$/.test(l));
  assert.strictEqual(lines.length, 200);
  assert.strictEqual(lines[199], '199:' + 'x'.repeat(1000));
});
