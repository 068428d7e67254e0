'use strict';
// The invocation protocol itself: malformed messages, stdout purity, logs
// on stderr, and the zmesh object every handler receives.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { invocation, run, BOOTSTRAP } = require('../testing/harness.js');
const P = require('../lib/protocol.js');

async function badInvocation(input, pattern) {
  const r = await run(input);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.ready, true, 'the ready newline comes first even for a bad message');
  assert.equal(r.parseError, null, r.stdout);
  assert.equal(r.response.ok, false);
  assert.equal(r.response.error.name, 'BadInvocation', JSON.stringify(r.response));
  assert.match(r.response.error.message, pattern);
  assert.equal(typeof r.response.error.stack, 'string');
  return r;
}

test('malformed invocations are answered with BadInvocation', async (t) => {
  const good = () => invocation('exports.handler = () => 1');
  await t.test('empty stdin', () => badInvocation('', /empty/));
  await t.test('not JSON', () => badInvocation('{"invocation_id": ', /not valid JSON/));
  await t.test('two JSON objects', () => badInvocation(JSON.stringify(good()) + JSON.stringify(good()), /not valid JSON/));
  await t.test('a JSON array', () => badInvocation('[1,2]', /must be a JSON object/));
  await t.test('invalid UTF-8', () => badInvocation(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), /UTF-8/));
  await t.test('missing invocation_id', () => {
    const m = good();
    delete m.invocation_id;
    return badInvocation(m, /invocation_id/);
  });
  await t.test('project_id of the wrong type', () => badInvocation({ ...good(), project_id: 7 }, /project_id/));
  await t.test('function not an object', () => badInvocation({ ...good(), function: 'f' }, /function must be an object/));
  await t.test('function.name missing', () => {
    const m = good();
    delete m.function.name;
    return badInvocation(m, /function\.name/);
  });
  await t.test('function.version not an integer', () => {
    const m = good();
    m.function.version = 1.5;
    return badInvocation(m, /function\.version/);
  });
  await t.test('entry_point that is not an identifier', () => {
    const m = good();
    m.function.entry_point = 'a.b; process.exit()';
    return badInvocation(m, /entry_point/);
  });
  await t.test('code missing', () => {
    const m = good();
    delete m.code;
    return badInvocation(m, /code must be a string/);
  });
  await t.test('env with a non-string value', () => badInvocation({ ...good(), env: { A: 1 } }, /env\.A must be a string/));
  await t.test('env as an array', () => badInvocation({ ...good(), env: ['A'] }, /env must be an object/));
  await t.test('dsn of the wrong type', () => badInvocation({ ...good(), dsn: {} }, /dsn must be a string/));
  await t.test('deadline_ms missing', () => {
    const m = good();
    delete m.deadline_ms;
    return badInvocation(m, /deadline_ms/);
  });
  await t.test('deadline_ms as a string', () => badInvocation({ ...good(), deadline_ms: '123' }, /deadline_ms/));
  await t.test('entry_point one byte too long', () => {
    const m = good();
    m.function.entry_point = 'h'.repeat(P.MAX_ENTRY_POINT_BYTES + 1);
    return badInvocation(m, /entry_point/);
  });
  await t.test('entry_point starting with a digit', () => {
    const m = good();
    m.function.entry_point = '1handler';
    return badInvocation(m, /entry_point/);
  });
  await t.test('entry_point outside ASCII', () => {
    const m = good();
    m.function.entry_point = 'caf\u00e9';
    return badInvocation(m, /entry_point/);
  });
  await t.test('invocation_id too long', () => badInvocation({ ...good(), invocation_id: 'i'.repeat(P.MAX_ID_BYTES + 1) }, /invocation_id is longer than/));
  await t.test('function.name counted in bytes', () => {
    const m = good();
    m.function.name = '\u00e9'.repeat(P.MAX_NAME_BYTES / 2 + 1);
    return badInvocation(m, /function\.name is longer than/);
  });
  await t.test('env with too many entries', () => {
    const env = {};
    for (let i = 0; i <= P.MAX_ENV_VARS; i++) env[`V${i}`] = 'x';
    return badInvocation({ ...good(), env }, /more than 64 entries/);
  });
  await t.test('env value too long', () => badInvocation({ ...good(), env: { A: 'x'.repeat(P.MAX_ENV_VALUE_BYTES + 1) } }, /env\.A is longer than/));
  await t.test('env too large in all', () => {
    const env = {};
    for (let i = 0; i < 9; i++) env[`V${i}`] = 'x'.repeat(P.MAX_ENV_VALUE_BYTES);
    return badInvocation({ ...good(), env }, /env holds more than/);
  });
  await t.test('dsn too long', () => badInvocation({ ...good(), dsn: 'd'.repeat(P.MAX_DSN_BYTES + 1) }, /dsn is longer than/));
  await t.test('an oversized message', async () => {
    const r = await badInvocation('"' + 'x'.repeat(P.MAX_MESSAGE_BYTES + 1024 * 1024), /larger than/);
    assert.equal(r.response.error.name, 'BadInvocation');
  });
  await t.test('a message too deep for the parser', () => badInvocation('['.repeat(200000), /not valid JSON|must be a JSON object|Maximum call stack/));
});

test('messages at the limits are accepted', async () => {
  const env = {};
  for (let i = 0; i < 7; i++) env[`V${i}`] = 'x'.repeat(P.MAX_ENV_VALUE_BYTES);
  const m = invocation('exports[' + JSON.stringify('$' + 'h'.repeat(P.MAX_ENTRY_POINT_BYTES - 1)) + '] = () => "at the limit"');
  m.function.entry_point = '$' + 'h'.repeat(P.MAX_ENTRY_POINT_BYTES - 1);
  m.function.name = '\u00e9'.repeat(P.MAX_NAME_BYTES / 2);
  m.invocation_id = 'i'.repeat(P.MAX_ID_BYTES);
  m.env = env;
  const r = await run(m);
  assert.deepEqual(r.response, { ok: true, result: 'at the limit' }, r.stderr);
});

test('error fields are cut to the protocol limits in UTF-8 bytes', async () => {
  const r = await run(
    invocation('class ' + 'N'.repeat(300) + ' extends Error {}; exports.handler = () => { throw new ' + 'N'.repeat(300) + ('("\u00e9".repeat(100000)) }')),
  );
  const e = r.response.error;
  assert.equal(r.response.ok, false, r.stderr);
  assert.ok(Buffer.byteLength(e.name) <= P.MAX_ERROR_NAME_BYTES, e.name);
  assert.ok(Buffer.byteLength(e.message) <= P.MAX_ERROR_MESSAGE_BYTES, `message of ${Buffer.byteLength(e.message)} bytes`);
  assert.ok(Buffer.byteLength(e.message) > P.MAX_ERROR_MESSAGE_BYTES - 64);
  assert.ok(Buffer.byteLength(e.stack) <= P.MAX_ERROR_STACK_BYTES, `stack of ${Buffer.byteLength(e.stack)} bytes`);
  assert.match(e.message, /^\u00e9+\n\.\.\. \(truncated\)$/);
});

test('everything the code prints goes to stderr, never into the result', async () => {
  const code = `
console.log('top-level log');
exports.handler = async (payload, zmesh) => {
  console.log('console.log', { a: 1 });
  console.info('console.info');
  console.warn('console.warn');
  console.error('console.error');
  console.debug('console.debug');
  console.table([{ a: 1 }]);
  process.stdout.write('process.stdout.write\\n');
  zmesh.log.info('sdk info', { user: 'u1' });
  return { fine: true };
};`;
  const r = await run(invocation(code));
  assert.equal(r.stdout, '{"ok":true,"result":{"fine":true}}\n');
  for (const line of ['top-level log', 'console.log { a: 1 }', 'console.info', 'console.warn', 'console.error', 'console.debug', 'process.stdout.write']) {
    assert.ok(r.stderr.includes(line), `stderr lacks ${line}: ${r.stderr}`);
  }
  assert.match(r.stderr, /"msg":"sdk info"/);
});

test('logs stay separate when the handler fails', async () => {
  const r = await run(invocation('exports.handler = () => { console.log("before"); throw new Error("after") }'));
  assert.equal(r.parseError, null, r.stdout);
  assert.equal(r.response.error.message, 'after');
  assert.match(r.stderr, /before/);
  assert.doesNotMatch(r.stdout, /before/);
});

test('zmesh.log writes one structured JSON line per call', async () => {
  const code = `
exports.handler = (p, zmesh) => {
  zmesh.log.info('hello', { user: 'u1', n: 2 });
  zmesh.log.warn('careful');
  zmesh.log.error(new TypeError('broken'), { level: 'spoofed', time: 'spoofed', msg: 'spoofed' });
  const cyc = {}; cyc.self = cyc;
  zmesh.log.info('cyclic', cyc);
  zmesh.log.info({ not: 'a string' });
  return 1;
};`;
  const before = Date.now();
  const r = await run(invocation(code));
  assert.deepEqual(r.response, { ok: true, result: 1 });
  const records = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
  assert.equal(records.length, 5);
  const [info, warn, error, cyclic, obj] = records;
  assert.equal(info.level, 'info');
  assert.equal(info.msg, 'hello');
  assert.equal(info.user, 'u1');
  assert.equal(info.n, 2);
  const at = Date.parse(info.time);
  assert.ok(at >= before - 1000 && at <= Date.now() + 1000, info.time);
  assert.match(info.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual([warn.level, warn.msg], ['warn', 'careful']);
  assert.deepEqual([error.level, error.msg], ['error', 'TypeError: broken']);
  assert.notEqual(error.time, 'spoofed');
  assert.equal(cyclic.msg, 'cyclic');
  assert.match(cyclic.log_error, /could not be serialised/);
  assert.equal(obj.msg, '{"not":"a string"}');
});

test('the zmesh object', async () => {
  const deadline = Date.now() + 45000;
  const code = `
exports.handler = (payload, zmesh) => ({
  same: zmesh === globalThis.zmesh,
  projectId: zmesh.projectId,
  invocationId: zmesh.invocationId,
  fn: zmesh.function,
  envA: zmesh.env.API_KEY,
  envMissing: zmesh.env.NOPE === undefined,
  envKeys: Object.keys(zmesh.env).sort(),
  processEnvKeys: Object.keys(process.env).sort(),
  deadline: zmesh.deadlineMs,
  left: zmesh.timeLeftMs(),
  frozen: Object.isFrozen(zmesh) && Object.isFrozen(zmesh.env) && Object.isFrozen(zmesh.db),
  dbMethods: Object.keys(zmesh.db).sort(),
});`;
  const r = await run(
    invocation(code, {
      invocation_id: 'inv-xyz',
      project_id: 'proj-7',
      function: { name: 'greeter', version: 12 },
      env: { API_KEY: 's3cret', OTHER: '' },
      deadline_ms: deadline,
    }),
  );
  assert.equal(r.response.ok, true, JSON.stringify(r.response));
  const v = r.response.result;
  assert.equal(v.same, true);
  assert.equal(v.projectId, 'proj-7');
  assert.equal(v.invocationId, 'inv-xyz');
  assert.deepEqual(v.fn, { name: 'greeter', version: 12 });
  assert.equal(v.envA, 's3cret');
  assert.equal(v.envMissing, true);
  assert.deepEqual(v.envKeys, ['API_KEY', 'OTHER']);
  assert.deepEqual(v.processEnvKeys, ['HOME', 'LANG', 'PATH', 'TMPDIR']);
  assert.equal(v.deadline, deadline);
  assert.ok(v.left > 30000 && v.left <= 45000, `timeLeftMs ${v.left}`);
  assert.equal(v.frozen, true);
  assert.deepEqual(v.dbMethods, ['insert', 'query', 'queryOne', 'remove', 'select', 'transaction', 'update']);
});

test('timeLeftMs is never negative and counts down', async () => {
  const past = await run(invocation('exports.handler = (p, z) => z.timeLeftMs()', { deadline_ms: Date.now() - 5000 }));
  assert.deepEqual(past.response, { ok: true, result: 0 });
  const r = await run(
    invocation('exports.handler = async (p, z) => { const a = z.timeLeftMs(); await new Promise((r) => setTimeout(r, 120)); return [a, z.timeLeftMs()] }'),
  );
  const [a, b] = r.response.result;
  assert.ok(a - b >= 100, `${a} -> ${b}`);
});

test('zmesh is a global while the module loads', async () => {
  const r = await run(invocation('const project = zmesh.projectId;\nexports.handler = () => project'));
  assert.deepEqual(r.response, { ok: true, result: 'proj-42' });
});

test('a database call without a DSN fails clearly', async () => {
  const r = await run(
    invocation('exports.handler = async (p, z) => { try { await z.db.query("select 1") } catch (e) { return [e.name, e.code, e.message] } }'),
  );
  assert.equal(r.response.ok, true, JSON.stringify(r.response));
  const [name, code, message] = r.response.result;
  assert.equal(name, 'DatabaseError');
  assert.equal(code, '08001');
  assert.match(message, /no database/);
});

test('an unusable TMPDIR is reported as the wrapper failing, not the function', async () => {
  const r = await run(invocation('export default () => 1'), { env: { TMPDIR: '/nonexistent/zmesh-tmp' } });
  assert.equal(r.parseError, null, r.stdout);
  assert.equal(r.response.ok, false);
  assert.equal(r.response.error.name, 'WrapperError');
  assert.match(r.response.error.message, /work directory/);
  // CommonJS without import() needs no file at all.
  const cjs = await run(invocation('exports.handler = () => 2'), { env: { TMPDIR: '/nonexistent/zmesh-tmp' } });
  assert.deepEqual(cjs.response, { ok: true, result: 2 });
});

test('the wrapper announces itself with one newline before it reads the invocation', async () => {
  const child = spawn(process.execPath, [BOOTSTRAP], {
    env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const chunks = [];
  // Nothing is written to stdin until the announcement is in.
  const first = await new Promise((resolve, reject) => {
    child.stdout.once('data', (c) => resolve(c));
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`exited ${code} before announcing itself`)));
  });
  assert.equal(first.toString('utf8'), '\n');
  child.stdout.on('data', (c) => chunks.push(c));
  const done = new Promise((resolve) => child.on('close', resolve));
  child.stdin.end(JSON.stringify(invocation('exports.handler = (p) => p.n + 1', { payload: { n: 41 } })));
  assert.equal(await done, 0);
  assert.equal(Buffer.concat(chunks).toString('utf8'), '{"ok":true,"result":42}\n');
});

test("the wrapper's own warm-up run leaves nothing a function can see", async () => {
  const r = await run(
    invocation(
      'exports.handler = async (p, z) => [z.invocationId, z.projectId, z.function.name, globalThis.zmesh.invocationId, ' +
        "Object.keys(require.cache).filter((k) => !k.startsWith('/opt/zmesh/') && !k.includes('/sdk-js/')), " +
        "typeof exports.handler, module.exports === exports, p]",
      { payload: 'real' },
    ),
    { args: ['--warm-up'] },
  );
  assert.equal(r.parseError, null, r.stdout);
  assert.deepEqual(r.response, { ok: true, result: ['inv-0001', 'proj-42', 'hello', 'inv-0001', [], 'function', true, 'real'] });
  assert.deepEqual(r.leftovers, []);
});

test('a function that prints nothing never builds the stderr stream; one that prints gets it', async () => {
  const streams = "process.moduleLoadList.includes('NativeModule internal/streams/writable')";
  const quiet = await run(invocation(`exports.handler = async () => ${streams};`));
  assert.deepEqual(quiet.response, { ok: true, result: false });
  const loud = await run(
    invocation(
      "exports.handler = async () => { console.log('hi'); process.stderr.write('there\\n'); " +
        `return [${streams}, process.stderr === process.stderr, process.stdout === process.stderr]; };`,
    ),
  );
  assert.deepEqual(loud.response, { ok: true, result: [true, true, true] });
  assert.equal(loud.stderr, 'hi\nthere\n');
});

test("the pool's database warm-up runs a whole session against its scripted server", async () => {
  const { ScriptedServer } = require('../lib/warmup.js');
  const { createSession } = require('../lib/db.js');
  const session = createSession({
    dsn: 'postgresql://warm-up:warm-up@localhost/warm-up',
    deadlineMs: Date.now() + 5000,
    invocationId: 'test',
    stream: () => new ScriptedServer(),
  });
  // SCRAM-SHA-256 both ways (the driver checks the server's signature), a
  // query with a row, a clean close: every path a function's first query takes.
  assert.deepEqual(await session.api.queryOne('select 1 as one'), { one: 1 });
  await session.close();
});

test("the database warm-up's session goes over a unix socket that is closed afterwards", async () => {
  const net = require('net');
  const { warmDatabase } = require('../lib/warmup.js');
  const seen = [];
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function (...args) {
    seen.push(args[0]);
    return connect.apply(this, args);
  };
  try {
    await warmDatabase();
  } finally {
    net.Socket.prototype.connect = connect;
  }
  const path = `\0zmesh-warm-up-${process.pid}`;
  assert.deepEqual(seen, [{ path }]);
  // Nothing listens there any more.
  const err = await new Promise((resolve) => {
    const s = net.connect({ path }, () => {
      s.destroy();
      resolve(null);
    });
    s.on('error', resolve);
  });
  assert.equal(err && err.code, 'ECONNREFUSED');
});

test("pg's SCRAM steps, computed synchronously, give WebCrypto's bytes", async () => {
  require('../lib/pg.js');
  const utils = require('pg/lib/crypto/utils.js');
  const { subtle } = require('crypto').webcrypto;
  const salt = Buffer.from('0123456789abcdef');
  for (const iterations of [1, 4096]) {
    const key = await subtle.importKey('raw', Buffer.from('pässword'), 'PBKDF2', false, ['deriveBits']);
    const want = Buffer.from(await subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, key, 256));
    const got = await utils.deriveKey('pässword', salt, iterations);
    assert.ok(Buffer.isBuffer(got));
    assert.equal(got.toString('hex'), want.toString('hex'));
  }
  const hkey = await subtle.importKey('raw', Buffer.from('k'), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const mac = Buffer.from(await subtle.sign('HMAC', hkey, Buffer.from('Client Key')));
  assert.equal(Buffer.from(await utils.hmacSha256(new Uint8Array([0x6b]).buffer, 'Client Key')).toString('hex'),
    mac.toString('hex'));
  const digest = Buffer.from(await subtle.digest('SHA-256', Buffer.from('x')));
  assert.equal(Buffer.from(await utils.sha256(Buffer.from('x'))).toString('hex'), digest.toString('hex'));
});

test('a wrapper warmed up for the database leaves no session behind for the function', async () => {
  const r = await run(
    invocation(
      'exports.handler = async (p, z) => [Object.keys(require.cache).some((k) => k.includes("/node_modules/pg/")), ' +
        "await z.db.query('select 1').then(() => 'connected', (e) => e.code)];",
    ),
    { args: ['--warm-up', '--with-db'] },
  );
  // The driver is loaded; the function's own session is its own: without a
  // DSN it has no database at all.
  assert.deepEqual(r.response, { ok: true, result: [true, '08001'] });
  assert.equal(r.stderr, '');
});

// As the platform starts it: --result-fd=3, the result pipe at 3. The result
// arrives there alone; the wrapper holds it close-on-exec, so a child that
// aims at descriptor 3 finds nothing.
test('with --result-fd the result has a descriptor of its own that children never hold', async () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'zmesh-sdkjs-fd3-'));
  const code = [
    "const fs = require('fs');",
    "const { execSync, spawnSync } = require('child_process');",
    'exports.handler = async () => {',
    "  fs.writeSync(1, 'to-fd-1\\n');",
    "  console.log('to-console');",
    "  execSync('echo from-child', { stdio: 'inherit' });",
    "  const forged = spawnSync('/bin/sh', ['-c', 'echo forged >&3'], { encoding: 'utf8' });",
    '  return { status: forged.status };',
    '};',
  ].join('\n');
  const child = spawn(process.execPath, [BOOTSTRAP, '--result-fd=3'], {
    env: { PATH: '/usr/bin:/bin', HOME: tmp, TMPDIR: tmp, LANG: 'C.UTF-8' },
    stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
  });
  const streams = { out: [], err: [], result: [] };
  child.stdout.on('data', (c) => streams.out.push(c));
  child.stderr.on('data', (c) => streams.err.push(c));
  child.stdio[3].on('data', (c) => streams.result.push(c));
  child.stdin.end(JSON.stringify(invocation(code)));
  await new Promise((resolve) => child.on('close', resolve));
  fs.rmSync(tmp, { recursive: true, force: true });
  const text = (k) => Buffer.concat(streams[k]).toString('utf8');
  assert.equal(text('result'), '\n{"ok":true,"result":{"status":2}}\n', text('err'));
  assert.match(text('out'), /to-fd-1\n/);
  assert.match(text('out'), /from-child\n/);
  assert.doesNotMatch(text('out') + text('err'), /forged/);
  assert.match(text('err'), /to-console\n/);
});

// Check mode ({"check": true}): compiled, never run; the result says whether
// the code is valid, and where it is not.
test('check mode reports syntax errors with their place and never runs the code', async () => {
  const check = async (code, entryPoint = 'handler', args = ['--experimental-vm-modules', '--no-warnings']) => {
    const msg = { ...invocation(code, { function: { entry_point: entryPoint } }), check: true };
    const child = spawn(process.execPath, [...args, BOOTSTRAP], { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin' } });
    const out = [];
    child.stdout.on('data', (c) => out.push(c));
    child.stdin.end(JSON.stringify(msg));
    await new Promise((resolve) => child.on('close', resolve));
    const text = Buffer.concat(out).toString('utf8');
    assert.ok(text.startsWith('\n'), text);
    const reply = JSON.parse(text);
    assert.equal(reply.ok, true, text);
    return reply.result;
  };
  assert.deepEqual(await check('exports.handler = 1;\nthrow new Error("ran");\n'), { valid: true });
  assert.deepEqual(await check('export const handler = 1;\nthrow new Error("ran");\n'), { valid: true });
  assert.deepEqual(await check('const a = 1;\nexports.handler = () => {\n  return a +;\n};\n'), {
    valid: false,
    error: { name: 'SyntaxError', message: "Unexpected token ';'", file: 'function.cjs', line: 3, column: 13 },
  });
  const esm = await check('export const handler = 1;\n\nconst b = (1 + ;\n');
  assert.deepEqual(esm.error, { name: 'SyntaxError', message: "Unexpected token ';'", file: 'function.mjs', line: 3, column: 16 });
  const missing = await check("import { join } from 'node:path';\nexport const main = () => join('a');\n");
  assert.equal(missing.valid, false);
  assert.equal(missing.error.name, 'HandlerNotFound');
  assert.match(missing.error.message, /its exports: main/);
  assert.deepEqual(await check("import { join } from 'node:path';\nexport const main = () => join('a');\n", 'main'), { valid: true });
  // Without --experimental-vm-modules the exports cannot be read: passed on.
  assert.deepEqual(await check('export const main = 1;\n', 'handler', []), { valid: true });
});
