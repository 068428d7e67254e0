'use strict';
// Handler styles and every failure the wrapper reports, through the real
// entry point: one JSON message in, one JSON object out.

const test = require('node:test');
const assert = require('node:assert/strict');
const { invocation, run } = require('../testing/harness.js');

async function ok(code, overrides) {
  const r = await run(invocation(code, overrides));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.parseError, null, `stdout is not one JSON object: ${JSON.stringify(r.stdout)}`);
  assert.equal(r.response.ok, true, JSON.stringify(r.response));
  return r;
}

async function failure(code, overrides) {
  const r = await run(invocation(code, overrides));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.parseError, null, `stdout is not one JSON object: ${JSON.stringify(r.stdout)}`);
  assert.equal(r.response.ok, false, JSON.stringify(r.response));
  const { error } = r.response;
  assert.deepEqual(Object.keys(error).sort(), ['message', 'name', 'stack']);
  for (const key of ['name', 'message', 'stack']) assert.equal(typeof error[key], 'string');
  return { ...r, error };
}

function assertUserStack(stack, fileName) {
  assert.match(stack, new RegExp(`${fileName.replace('.', '\\.')}:\\d+`), stack);
  assert.doesNotMatch(stack, /bootstrap\.js|sdk-js[\\/]lib|node:internal/, stack);
}

test('handler styles', async (t) => {
  const cases = [
    ['exports.handler, async', 'exports.handler = async (payload, zmesh) => ({ got: payload, project: zmesh.projectId })'],
    ['exports.handler, sync', 'exports.handler = (payload, zmesh) => ({ got: payload, project: zmesh.projectId })'],
    ['module.exports = async fn', 'module.exports = async (payload, zmesh) => ({ got: payload, project: zmesh.projectId })'],
    ['module.exports = sync fn', 'module.exports = function (payload, zmesh) { return { got: payload, project: zmesh.projectId } }'],
    ['ESM export default async function', 'export default async function (input, zmesh) { return { got: input, project: zmesh.projectId } }'],
    ['ESM export default sync arrow', 'export default (input, zmesh) => ({ got: input, project: zmesh.projectId })'],
    ['ESM export async function handler', 'export async function handler(event, zmesh) { return { got: event, project: zmesh.projectId } }'],
    ['ESM with imports', "import { strict as a } from 'node:assert';\nexport function handler(e, z) { a.ok(true); return { got: e, project: z.projectId } }"],
    ['ESM with top-level await', 'const base = await Promise.resolve("proj-42");\nexport const handler = (e) => ({ got: e, project: base })'],
    ['ESM default object with handler', 'export default { handler(e, z) { return { got: e, project: z.projectId } } }'],
    ['CJS using require', "const path = require('path');\nexports.handler = (e, z) => ({ got: e, project: path.basename('/x/' + z.projectId) })"],
  ];
  for (const [name, code] of cases) {
    await t.test(name, async () => {
      const payload = { n: 1, list: [1, 'two', null], nested: { ok: true } };
      const r = await ok(code, { payload });
      assert.deepEqual(r.response.result, { got: payload, project: 'proj-42' });
    });
  }
});

test('CommonJS semantics', async (t) => {
  await t.test('module scope: this, module, exports, __filename, require', async () => {
    const r = await ok(`
const top = this === module.exports && exports === module.exports;
exports.handler = () => ({ top, file: require('path').basename(__filename), dir: __dirname === require('path').dirname(__filename),
  resolves: require.resolve('node:fs') === 'node:fs' });`);
    assert.deepEqual(r.response.result, { top: true, file: 'function.cjs', dir: true, resolves: true });
  });
  await t.test('dynamic import() works and prints no warning', async () => {
    const r = await ok('exports.handler = async () => { const { basename } = await import("node:path"); return basename("/a/b.txt") }');
    assert.equal(r.response.result, 'b.txt');
    assert.doesNotMatch(r.stderr, /Warning/);
  });
});

test('entry point name is configurable and falls back to the default export', async (t) => {
  await t.test('CommonJS named entry point', async () => {
    const r = await ok('exports.main = () => "main"; exports.handler = () => "handler"', { function: { entry_point: 'main' } });
    assert.equal(r.response.result, 'main');
  });
  await t.test('ESM named entry point', async () => {
    const r = await ok('export const run = () => "run"; export default () => "default"', { function: { entry_point: 'run' } });
    assert.equal(r.response.result, 'run');
  });
  await t.test('missing named entry point falls back to the ESM default export', async () => {
    const r = await ok('export default () => "default"', { function: { entry_point: 'main' } });
    assert.equal(r.response.result, 'default');
  });
  await t.test('missing named entry point falls back to module.exports = fn', async () => {
    const r = await ok('module.exports = () => "fn"', { function: { entry_point: 'main' } });
    assert.equal(r.response.result, 'fn');
  });
  await t.test('empty or absent entry point means "handler"', async () => {
    const a = await ok('exports.handler = () => "h"', { function: { entry_point: '' } });
    assert.equal(a.response.result, 'h');
    const msg = invocation('exports.handler = () => "h2"');
    delete msg.function.entry_point;
    const b = await run(msg);
    assert.deepEqual(b.response, { ok: true, result: 'h2' });
  });
  await t.test('Object.prototype members are never taken for a handler', async () => {
    const r = await failure('exports.value = 1', { function: { entry_point: 'constructor' } });
    assert.equal(r.error.name, 'HandlerNotFound');
  });
});

test('results', async (t) => {
  await t.test('undefined becomes null', async () => {
    const r = await ok('exports.handler = async () => {}');
    assert.equal(r.stdout, '{"ok":true,"result":null}\n');
  });
  await t.test('scalars and strings survive unchanged', async () => {
    for (const [code, expected] of [
      ['"a \\"quoted\\" \\u00e9 string"', 'a "quoted" é string'],
      ['42.5', 42.5],
      ['false', false],
      ['null', null],
      ['[1, [2, [3]]]', [1, [2, [3]]]],
    ]) {
      const r = await ok(`exports.handler = () => (${code})`);
      assert.deepEqual(r.response.result, expected);
    }
  });
  await t.test('toJSON is honoured (a Date becomes its ISO string)', async () => {
    const r = await ok('exports.handler = () => ({ at: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)) })');
    assert.deepEqual(r.response.result, { at: '2024-01-02T03:04:05.000Z' });
  });
  await t.test('the payload reaches the handler as sent', async () => {
    const payload = { s: 'x', n: -1.5, b: true, z: null, a: [{}], big: 12345678901234 };
    const r = await ok('exports.handler = (p) => p', { payload });
    assert.deepEqual(r.response.result, payload);
  });
  await t.test('an absent payload is null', async () => {
    const msg = invocation('exports.handler = (p) => ({ isNull: p === null })');
    delete msg.payload;
    const r = await run(msg);
    assert.deepEqual(r.response, { ok: true, result: { isNull: true } });
  });
  await t.test('timers left running do not hold the result back', async () => {
    const r = await ok('exports.handler = () => { setInterval(() => {}, 1000); setTimeout(() => {}, 60000); return 1 }');
    assert.equal(r.response.result, 1);
    assert.ok(r.ms < 10000, `took ${r.ms} ms`);
  });
});

test('syntax errors', async (t) => {
  await t.test('CommonJS', async () => {
    const r = await failure('exports.handler = async () => {\n  return 1 +;\n}');
    assert.equal(r.error.name, 'SyntaxError');
    assert.match(r.error.message, /Unexpected token/);
    assert.match(r.error.message, /function\.cjs:2/);
    assert.match(r.error.stack, /function\.cjs:2\n\s+return 1 \+;\n\s+\^/);
    assertUserStack(r.error.stack, 'function.cjs');
  });
  await t.test('ES module', async () => {
    const r = await failure('import fs from "node:fs";\nexport default function () {\n  let x = ;\n}');
    assert.equal(r.error.name, 'SyntaxError');
    assert.match(r.error.message, /Unexpected token/);
    assert.match(r.error.message, /function\.mjs:3/);
    assertUserStack(r.error.stack, 'function.mjs');
  });
  await t.test('a SyntaxError thrown at run time is not mistaken for a compile error', async () => {
    const r = await failure('export default () => JSON.parse("{nope")');
    assert.equal(r.error.name, 'SyntaxError');
    assert.doesNotMatch(r.error.message, /function\.mjs:\d+\)$/);
    assertUserStack(r.error.stack, 'function.mjs');
  });
});

test('missing handler', async (t) => {
  await t.test('CommonJS without the entry point nor a function export', async () => {
    const r = await failure('exports.other = () => 1; exports.value = 2;');
    assert.equal(r.error.name, 'HandlerNotFound');
    assert.match(r.error.message, /"handler"/);
    assert.match(r.error.message, /other, value/);
  });
  await t.test('ES module without the entry point nor a default function', async () => {
    const r = await failure('export const notIt = () => 1;', { function: { entry_point: 'main' } });
    assert.equal(r.error.name, 'HandlerNotFound');
    assert.match(r.error.message, /"main"/);
    assert.match(r.error.message, /notIt/);
  });
  await t.test('empty code', async () => {
    const r = await failure('');
    assert.equal(r.error.name, 'HandlerNotFound');
    assert.match(r.error.message, /exports nothing/);
  });
  await t.test('handler that is not a function', async () => {
    const r = await failure('exports.handler = 42');
    assert.equal(r.error.name, 'HandlerNotFound');
  });
});

test('thrown errors keep their own name and point at the user code', async (t) => {
  await t.test('TypeError from an async handler', async () => {
    const r = await failure('exports.handler = async () => {\n  null.boom;\n}');
    assert.equal(r.error.name, 'TypeError');
    assert.match(r.error.message, /Cannot read properties of null/);
    assert.match(r.error.stack, /function\.cjs:2:/);
    assertUserStack(r.error.stack, 'function.cjs');
  });
  await t.test('a user class without its own name', async () => {
    const r = await failure('class QuotaError extends Error {}\nexports.handler = () => { throw new QuotaError("over quota") }');
    assert.equal(r.error.name, 'QuotaError');
    assert.equal(r.error.message, 'over quota');
    assertUserStack(r.error.stack, 'function.cjs');
  });
  await t.test('a user class that sets name', async () => {
    const r = await failure(
      'class E extends Error { constructor(m) { super(m); this.name = "ValidationError" } }\nexport default () => { throw new E("bad input") }',
    );
    assert.equal(r.error.name, 'ValidationError');
    assert.equal(r.error.message, 'bad input');
    assertUserStack(r.error.stack, 'function.mjs');
  });
  await t.test('a rejected promise', async () => {
    const r = await failure('exports.handler = () => Promise.reject(new RangeError("out of range"))');
    assert.equal(r.error.name, 'RangeError');
    assert.equal(r.error.message, 'out of range');
  });
  await t.test('a rejected promise after awaiting', async () => {
    const r = await failure(
      'async function inner() { await new Promise((r) => setTimeout(r, 5)); throw new Error("deep") }\nexports.handler = async () => { await inner() }',
    );
    assert.equal(r.error.name, 'Error');
    assert.equal(r.error.message, 'deep');
    assert.match(r.error.stack, /function\.cjs:1:/);
    assertUserStack(r.error.stack, 'function.cjs');
  });
  await t.test('a thrown string', async () => {
    const r = await failure('exports.handler = () => { throw "plain string" }');
    assert.equal(r.error.name, 'Error');
    assert.equal(r.error.message, 'plain string');
  });
  await t.test('a thrown object', async () => {
    const r = await failure('exports.handler = () => { throw { code: 7 } }');
    assert.equal(r.error.name, 'Error');
    assert.match(r.error.message, /non-Error value.*"code":7/);
  });
  await t.test('an error thrown while the module loads', async () => {
    const r = await failure('throw new URIError("at load")\nexports.handler = () => 1');
    assert.equal(r.error.name, 'URIError');
    assertUserStack(r.error.stack, 'function.cjs');
  });
  await t.test('an exception thrown from a timer during the handler', async () => {
    const r = await failure(
      'exports.handler = () => new Promise((resolve) => { setTimeout(() => { throw new EvalError("in timer") }, 1); setTimeout(resolve, 2000) })',
    );
    assert.equal(r.error.name, 'EvalError');
    assert.equal(r.error.message, 'in timer');
    assert.ok(r.ms < 1900, `waited for the handler: ${r.ms} ms`);
  });
  await t.test('a huge message is truncated', async () => {
    const r = await failure('exports.handler = () => { throw new Error("x".repeat(1000000)) }');
    assert.ok(r.error.message.length < 10000);
    assert.match(r.error.message, /truncated/);
  });
  await t.test('a hostile error object does not break the report', async () => {
    const r = await failure(
      'exports.handler = () => { const e = new Error("m"); Object.defineProperty(e, "message", { get() { throw new Error("no") } }); throw e }',
    );
    assert.equal(r.error.name, 'Error');
  });
});

test('unhandled rejections', async (t) => {
  await t.test('left behind by a handler that returned', async () => {
    const r = await failure('exports.handler = async () => {\n  Promise.reject(new TypeError("forgotten"));\n  return "value"\n}');
    assert.equal(r.error.name, 'UnhandledRejection');
    assert.match(r.error.message, /TypeError: forgotten/);
    assert.match(r.error.stack, /function\.cjs:2:/);
    assertUserStack(r.error.stack, 'function.cjs');
  });
  await t.test('from a floating async call that fails right after return', async () => {
    const r = await failure('async function later() { await null; throw new Error("floating") }\nexports.handler = () => { later(); return 1 }');
    assert.equal(r.error.name, 'UnhandledRejection');
    assert.match(r.error.message, /floating/);
  });
  await t.test('while the handler is still running', async () => {
    const r = await failure(
      'exports.handler = async () => { Promise.reject(new Error("early")); await new Promise((r) => setTimeout(r, 3000)); return 1 }',
    );
    assert.equal(r.error.name, 'UnhandledRejection');
    assert.match(r.error.message, /early/);
    assert.ok(r.ms < 2900, `waited for the handler: ${r.ms} ms`);
  });
  await t.test('a rejection handled in time is not reported', async () => {
    const r = await ok('exports.handler = async () => { const p = Promise.reject(new Error("x")); p.catch(() => {}); return 2 }');
    assert.equal(r.response.result, 2);
  });
});

test('process.exit inside the handler', async (t) => {
  await t.test('with a code', async () => {
    const r = await failure('exports.handler = async () => {\n  process.exit(3);\n}');
    assert.equal(r.error.name, 'ProcessExit');
    assert.match(r.error.message, /process\.exit\(3\)/);
    assert.match(r.error.stack, /function\.cjs:2:/);
    assertUserStack(r.error.stack, 'function.cjs');
  });
  await t.test('without a code', async () => {
    const r = await failure('exports.handler = () => process.exit()');
    assert.equal(r.error.name, 'ProcessExit');
    assert.match(r.error.message, /process\.exit\(\)/);
  });
  await t.test('with process.exitCode set', async () => {
    const r = await failure('exports.handler = () => { process.exitCode = 9; process.exit() }');
    assert.equal(r.error.name, 'ProcessExit');
    assert.match(r.error.message, /process\.exit\(9\)/);
  });
  await t.test('at the top level of an ES module', async () => {
    const r = await failure('process.exit(4);\nexport default () => 1');
    assert.equal(r.error.name, 'ProcessExit');
    assert.match(r.error.message, /\(4\)/);
  });
  await t.test('exitCode alone does not change the outcome or the exit status', async () => {
    const r = await ok('exports.handler = () => { process.exitCode = 5; return "fine" }');
    assert.equal(r.response.result, 'fine');
  });
});

test('results that cannot be serialised', async (t) => {
  for (const [name, code, pattern] of [
    ['circular', 'const a = {}; a.self = a; exports.handler = () => a', /circular/i],
    ['BigInt', 'exports.handler = () => ({ n: 10n })', /BigInt/],
    ['a function', 'exports.handler = () => () => 1', /function/],
    ['a symbol', 'exports.handler = () => Symbol("s")', /symbol/],
    ['a throwing toJSON', 'exports.handler = () => ({ toJSON() { throw new Error("no json") } })', /no json/],
  ]) {
    await t.test(name, async () => {
      const r = await failure(code);
      assert.equal(r.error.name, 'ResultNotSerializable');
      assert.match(r.error.message, pattern);
    });
  }
});

test('a handler that can never settle', async () => {
  const r = await failure('exports.handler = () => new Promise(() => {})');
  assert.equal(r.error.name, 'HandlerNeverSettled');
});

test('the temporary source file is removed afterwards', async () => {
  for (const code of ['exports.handler = () => 1', 'export default () => 1', 'exports.handler = () => { throw new Error("x") }']) {
    const r = await run(invocation(code));
    assert.equal(r.parseError, null);
    assert.deepEqual(r.leftovers, []);
  }
});
