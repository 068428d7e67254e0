'use strict';
// zmesh invocation wrapper for Node.js, run as
//   node /opt/zmesh/sdk/js/bootstrap.js
// It reads one JSON invocation from stdin, loads the function's code, calls
// its handler with (payload, zmesh) and writes exactly one JSON object to
// the result descriptor: {"ok":true,"result":...} or
// {"ok":false,"error":{name,message,stack}}. The result descriptor is N when
// started with --result-fd=N (the platform passes 3 and makes fd 1 a copy of
// fd 2, so that whatever the function or its children write to fd 1 lands in
// the logs), else stdout. The wrapper reopens N through /proc/self/fd as a
// close-on-exec descriptor and closes N: child processes never hold it.
// Before it reads, it writes a single newline on the result descriptor
// (whitespace before the JSON): the supervisor's warm pool learns from it
// that this runtime is loaded and waiting.
// Whatever the user's code prints goes to stderr. The process always exits 0:
// the outcome is in the JSON, so a non-zero exit or an empty stdout means the
// runtime itself was killed (timeout, memory) and the supervisor says so.
//
// Start-up cost is part of every invocation, so this file loads only what the
// plain path needs; the database driver, the ESM loader and child_process are
// reached only by functions that need them.

const fs = require('fs');
const path = require('path');
const { isUtf8 } = require('buffer');
const { createZmesh, describeError, cleanStack, writeAll, truncate } = require('./lib/zmesh.js');
// The protocol's limits (common/protocol.h). The supervisor checks the same
// bounds before it writes a message; they are checked again here so that a
// malformed or hostile message is refused by name, never half-used.
const P = require('./lib/protocol.js');
const egress = require('./lib/egress.js');
const CJS_PARAMS = ['exports', 'require', 'module', '__filename', '__dirname'];

// SyntaxErrors of a CommonJS compile that mean the code is an ES module
// (the same messages Node's own module-syntax detection relies on).
const ESM_SYNTAX = new Set([
  'Cannot use import statement outside a module',
  "Unexpected token 'export'",
  "Cannot use 'import.meta' outside a module",
  "Identifier 'module' has already been declared",
  "Identifier 'exports' has already been declared",
  "Identifier 'require' has already been declared",
  "Identifier '__filename' has already been declared",
  "Identifier '__dirname' has already been declared",
  'await is only valid in async functions and the top level bodies of modules',
  'Unexpected reserved word',
]);

const realExit = process.exit;
let finished = false;
let finishing = false;
let workDir = null;
let closeDatabase = () => Promise.resolve();
let resultFd = 1;

// --result-fd=N: the result goes to descriptor N, held close-on-exec (Node
// opens every file with O_CLOEXEC, and cannot set the flag on one it
// inherited, so N is reopened and closed). Should the reopen fail, N itself
// is used: the result still arrives, only children could inherit it.
function claimResultFd() {
  const arg = process.argv.find((a) => a.startsWith('--result-fd='));
  if (arg === undefined) return;
  const n = Number(arg.slice('--result-fd='.length));
  if (!Number.isSafeInteger(n) || n < 3) return;
  resultFd = n;
  let fd;
  try {
    fd = fs.openSync(`/proc/self/fd/${n}`, fs.constants.O_WRONLY);
  } catch {
    return;
  }
  try {
    fs.closeSync(n);
    resultFd = fd;
  } catch {
    fs.closeSync(fd);
  }
}

// An outcome the wrapper has already put in protocol form.
class Outcome extends Error {
  constructor(name, message, stack) {
    super(message);
    this.report = {
      name: truncate(name, P.MAX_ERROR_NAME_BYTES),
      message: truncate(message, P.MAX_ERROR_MESSAGE_BYTES),
      stack: truncate(stack || '', P.MAX_ERROR_STACK_BYTES),
    };
  }
}

function badInvocation(message) {
  return new Outcome('BadInvocation', message, '');
}

// Unlinking the known files is several times cheaper than a recursive
// removal, which is kept for a directory the function wrote into.
function removeWorkDir() {
  if (workDir === null) return;
  const dir = workDir;
  workDir = null;
  try {
    for (const name of ['function.cjs', 'function.mjs']) {
      try {
        fs.unlinkSync(path.join(dir, name));
      } catch {
        // Only one of them exists.
      }
    }
    fs.rmdirSync(dir);
  } catch {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // A tmpfs that dies with the sandbox; nothing to report to anyone.
    }
  }
}

// The single place that writes the result; only the first outcome counts.
function emit(text) {
  if (finished) return false;
  finished = true;
  writeAll(resultFd, text);
  return true;
}

function finish() {
  if (finishing) return;
  finishing = true;
  // Ending the session politely lets the server log a clean disconnect; it
  // is bounded inside close(). Timers the handler left behind are abandoned.
  closeDatabase()
    .catch(() => {})
    .then(() => {
      removeWorkDir();
      realExit.call(process, 0);
    });
}

function fail(report) {
  if (emit(JSON.stringify({ ok: false, error: report }) + '\n')) finish();
}

// A subclass that does not set its own name (class PaymentError extends
// Error {}) is named by its class, and its stack's first line says so too:
// V8 wrote that line with the inherited name "Error".
function describeThrown(err) {
  const report = describeError(err);
  if (report.name !== 'Error' && /^Error(:|\n|$)/.test(report.stack)) {
    report.stack = truncate(report.name + report.stack.slice(5), P.MAX_ERROR_STACK_BYTES);
  }
  return report;
}

function failWith(err) {
  fail(err instanceof Outcome ? err.report : describeThrown(err));
}

function safeString(value) {
  try {
    return String(value);
  } catch {
    return '?';
  }
}

function installGuards() {
  // console.* and process.stdout.write land on stderr; the result is written
  // to its own descriptor directly, so nothing the user prints can corrupt it.
  Object.defineProperty(process, 'stdout', {
    configurable: true,
    enumerable: true,
    get: () => process.stderr,
  });
  // Logs are written synchronously: an asynchronous pipe write still queued
  // when the wrapper exits would be lost, and a reader slower than the
  // function (a busy supervisor) would see only the first pipe-full.
  // process.stderr is made on first use, as Node does: building the stream
  // loads Node's whole streams implementation, some 2 ms of CPU that a
  // function which prints nothing need not pay.
  const made = Object.getOwnPropertyDescriptor(process, 'stderr');
  let stderr = null;
  Object.defineProperty(process, 'stderr', {
    configurable: true,
    enumerable: made.enumerable,
    get() {
      if (stderr === null) {
        stderr = made.get ? made.get.call(process) : made.value;
        stderr.write = function write(chunk, encoding, cb) {
          if (typeof encoding === 'function') {
            cb = encoding;
            encoding = undefined;
          }
          const text = typeof chunk === 'string' ? Buffer.from(chunk, encoding || 'utf8') : chunk;
          writeAll(2, text);
          if (typeof cb === 'function') process.nextTick(cb);
          return true;
        };
      }
      return stderr;
    },
  });

  process.exit = function exit(code) {
    if (!finished) {
      const shown = code === undefined ? process.exitCode : code;
      const message = `the function called process.exit(${shown === undefined ? '' : safeString(shown)})`;
      const site = {};
      Error.captureStackTrace(site, exit);
      const frames = cleanStack(String(site.stack).split('\n').slice(1).join('\n'));
      emit(JSON.stringify({ ok: false, error: new Outcome('ProcessExit', message, `ProcessExit: ${message}\n${frames}`).report }) + '\n');
    }
    removeWorkDir();
    realExit.call(process, 0);
  };

  process.on('uncaughtException', failWith);
  process.on('unhandledRejection', (reason) => {
    const inner = describeThrown(reason);
    fail(new Outcome('UnhandledRejection', `${inner.name}: ${inner.message}`, inner.stack).report);
  });
  // The event loop ran dry while the handler (or a top-level await) was
  // still pending: nothing can ever settle it.
  process.on('exit', () => {
    if (!finished) {
      const report = new Outcome(
        'HandlerNeverSettled',
        'the handler never settled: it waited on a promise that nothing was left to resolve',
        '',
      ).report;
      emit(JSON.stringify({ ok: false, error: report }) + '\n');
    }
    removeWorkDir();
    process.exitCode = 0;
  });
}

function readStdin() {
  const chunks = [];
  let total = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(256 * 1024);
    let n;
    try {
      n = fs.readSync(0, chunk, 0, chunk.length, null);
    } catch (err) {
      if (err.code === 'EAGAIN') {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
        continue;
      }
      if (err.code === 'EOF') break;
      throw badInvocation(`cannot read stdin: ${err.message}`);
    }
    if (n === 0) break;
    total += n;
    if (total > P.MAX_MESSAGE_BYTES) throw badInvocation(`the invocation is larger than ${P.MAX_MESSAGE_BYTES} bytes`);
    chunks.push(chunk.subarray(0, n));
  }
  if (total === 0) throw badInvocation('stdin was empty: expected one JSON invocation');
  const bytes = Buffer.concat(chunks, total);
  if (!isUtf8(bytes)) throw badInvocation('the invocation is not valid UTF-8');
  return bytes.toString('utf8');
}

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

// UTF-8 bytes in text; encodes only when the length alone cannot decide.
function fitsBytes(text, max) {
  return text.length * 3 <= max || (text.length <= max && Buffer.byteLength(text, 'utf8') <= max);
}

function requireString(obj, key, where, max) {
  const value = obj[key];
  if (typeof value !== 'string' || value === '') throw badInvocation(`${where}${key} must be a non-empty string`);
  if (!fitsBytes(value, max)) throw badInvocation(`${where}${key} is longer than ${max} bytes`);
  return value;
}

function isEntryPoint(text) {
  if (text.length > P.MAX_ENTRY_POINT_BYTES || !P.ENTRY_POINT_FIRST_CHARS.includes(text[0])) return false;
  for (let i = 1; i < text.length; i++) if (!P.ENTRY_POINT_CHARS.includes(text[i])) return false;
  return true;
}

function checkEnv(env) {
  if (!isObject(env)) throw badInvocation('env must be an object of strings');
  const names = Object.keys(env);
  if (names.length > P.MAX_ENV_VARS) throw badInvocation(`env has more than ${P.MAX_ENV_VARS} entries`);
  let total = 0;
  for (const name of names) {
    if (name === '') throw badInvocation('env names must not be empty');
    const value = env[name];
    if (typeof value !== 'string') throw badInvocation(`env.${truncate(name, 64)} must be a string`);
    if (!fitsBytes(name, P.MAX_ENV_NAME_BYTES)) throw badInvocation(`an env name is longer than ${P.MAX_ENV_NAME_BYTES} bytes`);
    if (!fitsBytes(value, P.MAX_ENV_VALUE_BYTES)) {
      throw badInvocation(`env.${name} is longer than ${P.MAX_ENV_VALUE_BYTES} bytes`);
    }
    total += Buffer.byteLength(name, 'utf8') + Buffer.byteLength(value, 'utf8');
  }
  if (total > P.MAX_ENV_BYTES) throw badInvocation(`env holds more than ${P.MAX_ENV_BYTES} bytes`);
}

// Field by field, so a malformed message is named precisely.
function parseInvocation(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch (err) {
    throw badInvocation(`stdin is not valid JSON: ${err.message}`);
  }
  if (!isObject(msg)) throw badInvocation('the invocation must be a JSON object');

  const invocationId = requireString(msg, 'invocation_id', '', P.MAX_ID_BYTES);
  const projectId = requireString(msg, 'project_id', '', P.MAX_ID_BYTES);

  const fn = msg.function;
  if (!isObject(fn)) throw badInvocation('function must be an object {name, version, entry_point}');
  const functionName = requireString(fn, 'name', 'function.', P.MAX_NAME_BYTES);
  if (!Number.isSafeInteger(fn.version) || fn.version < 0) {
    throw badInvocation('function.version must be a non-negative integer');
  }
  let entryPoint = fn.entry_point;
  if (entryPoint === undefined || entryPoint === null || entryPoint === '') entryPoint = P.DEFAULT_ENTRY_POINT;
  if (typeof entryPoint !== 'string' || !isEntryPoint(entryPoint)) {
    throw badInvocation(
      `function.entry_point must be an identifier of [A-Za-z_$][A-Za-z0-9_$]*, at most ${P.MAX_ENTRY_POINT_BYTES} bytes`,
    );
  }

  if (typeof msg.code !== 'string') throw badInvocation('code must be a string');

  const env = msg.env === undefined || msg.env === null ? {} : msg.env;
  checkEnv(env);

  const dsn = msg.dsn === undefined || msg.dsn === null ? '' : msg.dsn;
  if (typeof dsn !== 'string') throw badInvocation('dsn must be a string');
  if (!fitsBytes(dsn, P.MAX_DSN_BYTES)) throw badInvocation(`dsn is longer than ${P.MAX_DSN_BYTES} bytes`);

  if (!Number.isSafeInteger(msg.deadline_ms) || msg.deadline_ms <= 0) {
    throw badInvocation('deadline_ms must be a positive integer (Unix epoch milliseconds)');
  }

  return {
    invocationId,
    projectId,
    functionName,
    functionVersion: fn.version,
    entryPoint,
    code: msg.code,
    env,
    dsn,
    payload: msg.payload === undefined ? null : msg.payload,
    deadlineMs: msg.deadline_ms,
    check: msg.check === true,
  };
}

// ---- check mode: {"check": true} ---------------------------------------------
// The code is compiled, never run, and the answer is a result
// {"valid": true} or {"valid": false, "error": {name, message, file, line,
// column}}: SyntaxError with the place of the error (1-based), or
// HandlerNotFound when an ES module exports neither the entry point nor a
// default (which a CommonJS module's exports cannot tell before it runs).

// The place in a decorated header: "file:LINE", the source line, a caret.
function headerPlace(header) {
  const lines = header.split('\n');
  const m = /:(\d+)$/.exec(lines[0]);
  if (!m) return null;
  const caret = lines.length > 2 ? lines[2].indexOf('^') : -1;
  return { line: Number(m[1]), column: caret >= 0 ? caret + 1 : 1 };
}

function syntaxReport(err, header, fileName) {
  const place = header ? headerPlace(header) : null;
  return {
    name: 'SyntaxError',
    message: truncate(safeString(err && err.message), P.MAX_ERROR_MESSAGE_BYTES),
    file: fileName,
    line: place ? place.line : null,
    column: place ? place.column : null,
  };
}

// An ES module's export names, without evaluating it: linked (imports of
// Node's built-in modules are given their real names) but not run. null when
// that cannot be told: vm.SourceTextModule needs --experimental-vm-modules
// (the platform starts the check's runtime with it), and an import of
// anything but a built-in module is not resolved here.
async function moduleExports(code) {
  const vm = require('vm');
  if (typeof vm.SourceTextModule !== 'function') return null;
  const { isBuiltin } = require('module');
  const mod = new vm.SourceTextModule(code, { identifier: 'function.mjs' });
  if (mod.dependencySpecifiers.some((spec) => !isBuiltin(spec))) return null;
  await mod.link(async (spec) => {
    const ns = await import(spec);
    const names = Reflect.ownKeys(ns).filter((k) => typeof k === 'string');
    return new vm.SyntheticModule(names, function init() {
      for (const n of names) this.setExport(n, ns[n]);
    });
  });
  return Reflect.ownKeys(mod.namespace).filter((k) => typeof k === 'string');
}

async function checkCode(inv) {
  const root = process.env.TMPDIR || '/tmp';
  const cjsFile = path.join(root, 'function.cjs');
  let compileError = null;
  try {
    require('vm').compileFunction(inv.code, CJS_PARAMS, { filename: cjsFile });
  } catch (err) {
    compileError = err;
  }
  if (compileError === null) return { valid: true };
  if (!(compileError instanceof SyntaxError)) throw compileError;
  if (!ESM_SYNTAX.has(compileError.message)) {
    return { valid: false, error: syntaxReport(compileError, decoratedHeader(compileError, cjsFile), 'function.cjs') };
  }
  let names;
  try {
    names = await moduleExports(inv.code);
  } catch (err) {
    if (!(err instanceof SyntaxError)) names = null;
    else {
      // Its place comes from `node --check`, as at invoke.
      const esmFile = path.join(createWorkDir(), 'function.mjs');
      writeSource(esmFile, inv.code);
      return { valid: false, error: syntaxReport(err, locateModuleSyntaxError(esmFile, inv.deadlineMs), 'function.mjs') };
    }
  }
  if (names && !names.includes(inv.entryPoint) && !names.includes('default')) {
    const listed = names.slice(0, 20).map((n) => truncate(n, 64)).join(', ');
    return {
      valid: false,
      error: {
        name: 'HandlerNotFound',
        message: `function.mjs exports no function named "${inv.entryPoint}" and no default (${listed ? 'its exports: ' + listed : 'it exports nothing'})`,
        file: 'function.mjs',
        line: null,
        column: null,
      },
    };
  }
  return { valid: true };
}

// "file:line", the offending source line and a caret, as V8 decorates a
// SyntaxError; a minified one-line source is reduced to its location.
function syntaxOutcome(err, header, fileName) {
  const message = safeString(err.message);
  let location = '';
  let shown = '';
  if (header) {
    const lines = header.split('\n');
    const m = /:(\d+)$/.exec(lines[0]);
    if (m) location = ` (${fileName}:${m[1]})`;
    shown = lines.some((line) => line.length > 300) ? lines[0] : header;
  }
  const stack = (shown ? shown + '\n\n' : '') + `SyntaxError: ${message}`;
  return new Outcome('SyntaxError', message + location, stack);
}

function decoratedHeader(err, file) {
  const stack = typeof err.stack === 'string' ? err.stack : '';
  const cut = stack.indexOf('\n\nSyntaxError');
  return stack.startsWith(file + ':') && cut > 0 ? stack.slice(0, cut) : '';
}

// A module's SyntaxError carries no location in-process (Node adds it only
// when printing a fatal error), so ask `node --check` for it. Failure to do
// so only costs the location.
function locateModuleSyntaxError(file, deadlineMs) {
  const budget = Math.min(5000, deadlineMs - Date.now() - 500);
  if (budget < 200) return '';
  try {
    const { spawnSync } = require('child_process');
    const run = spawnSync(process.execPath, ['--check', file], {
      env: {},
      encoding: 'utf8',
      timeout: budget,
      maxBuffer: 1024 * 1024,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const text = run.stderr || '';
    const cut = text.indexOf('\n\nSyntaxError');
    return text.startsWith(file + ':') && cut > 0 ? text.slice(0, cut) : '';
  } catch {
    return '';
  }
}

// An own or inherited member, but never one of Object's or Function's
// built-ins: entry_point "constructor" must not find Object().
function member(obj, key) {
  if (obj === null || (typeof obj !== 'object' && typeof obj !== 'function')) return undefined;
  try {
    for (let o = obj; o !== null && o !== Object.prototype && o !== Function.prototype; o = Object.getPrototypeOf(o)) {
      const desc = Object.getOwnPropertyDescriptor(o, key);
      if (desc) return 'value' in desc ? desc.value : desc.get ? desc.get.call(obj) : undefined;
    }
  } catch {
    // A proxy or a throwing getter: treat as absent.
  }
  return undefined;
}

function exportNames(mod) {
  try {
    if (mod === null || (typeof mod !== 'object' && typeof mod !== 'function')) return [];
    return Object.keys(mod);
  } catch {
    return [];
  }
}

function pickHandler(mod, entryPoint, fileName) {
  const named = member(mod, entryPoint);
  if (typeof named === 'function') return { fn: named, self: mod };
  if (typeof mod === 'function') return { fn: mod, self: undefined };
  const fallback = member(mod, 'default');
  if (typeof fallback === 'function') return { fn: fallback, self: undefined };
  const nested = member(fallback, entryPoint);
  if (typeof nested === 'function') return { fn: nested, self: fallback };

  const names = exportNames(mod);
  const listed = names.length
    ? names.slice(0, 20).map((name) => truncate(name, 64)).join(', ') + (names.length > 20 ? ', ...' : '')
    : '';
  return {
    error: new Outcome(
      'HandlerNotFound',
      `${fileName} exports no function named "${entryPoint}" and no default function (${listed ? 'its exports: ' + listed : 'it exports nothing'})`,
      '',
    ),
  };
}

function createWorkDir() {
  const root = process.env.TMPDIR || '/tmp';
  try {
    workDir = fs.mkdtempSync(path.join(root, 'zmesh-fn-'));
  } catch (err) {
    throw new Outcome('WrapperError', `cannot create the function's work directory under ${root}: ${err.message}`, '');
  }
  return workDir;
}

function writeSource(file, code) {
  try {
    fs.writeFileSync(file, code, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    throw new Outcome('WrapperError', `cannot write the function's code to ${file}: ${err.message}`, '');
  }
}

// Where Node can require() an ES module, that is several milliseconds cheaper
// than starting the asynchronous loader; a module with top-level await is
// refused before it is evaluated and goes through import() instead.
async function importModule(file) {
  if (process.features.require_module) {
    try {
      return require(file);
    } catch (err) {
      if (!err || err.code !== 'ERR_REQUIRE_ASYNC_MODULE') throw err;
    }
  }
  return import(require('url').pathToFileURL(file).href);
}

// Runs compiled CommonJS code the way Node's loader does: this = exports,
// a require() resolving from the module's path, and the five wrapper names.
function runCommonJs(compiled, file) {
  const Module = require('module');
  const mod = new Module(file, null);
  mod.filename = file;
  const dir = path.dirname(file);
  Reflect.apply(compiled, mod.exports, [mod.exports, Module.createRequire(file), mod, file, dir]);
  mod.loaded = true;
  return mod.exports;
}

// The code is CommonJS unless it only compiles as an ES module. Stacks name
// it function.cjs / function.mjs under TMPDIR. CommonJS runs straight from
// the compile that classified it (no file, no second compile) unless it may
// use import(): a compiled function gets a working import() only through an
// experimental vm option that prints a warning into the function's logs, so
// such code is written to a file and loaded by Node's own CommonJS loader,
// as an ES module always is.
async function loadHandler(inv) {
  const root = process.env.TMPDIR || '/tmp';
  const cjsFile = path.join(root, 'function.cjs');
  let compiled = null;
  let compileError = null;
  try {
    compiled = require('vm').compileFunction(inv.code, CJS_PARAMS, { filename: cjsFile });
  } catch (err) {
    compileError = err;
  }

  if (compileError === null) {
    if (!/\bimport\b/.test(inv.code)) return pickHandler(runCommonJs(compiled, cjsFile), inv.entryPoint, 'function.cjs');
    const file = path.join(createWorkDir(), 'function.cjs');
    writeSource(file, inv.code);
    return pickHandler(require(file), inv.entryPoint, 'function.cjs');
  }
  if (!(compileError instanceof SyntaxError)) throw compileError;
  if (!ESM_SYNTAX.has(compileError.message)) {
    throw syntaxOutcome(compileError, decoratedHeader(compileError, cjsFile), 'function.cjs');
  }

  egress.preloadFor(inv.code);
  const dir = createWorkDir();
  const esmFile = path.join(dir, 'function.mjs');
  writeSource(esmFile, inv.code);
  let namespace;
  try {
    namespace = await importModule(esmFile);
  } catch (err) {
    // A SyntaxError thrown by the module's own code has a frame in it; one
    // from compiling it has only the loader's.
    if (err instanceof SyntaxError && !cleanStack(err.stack).includes(dir)) {
      throw syntaxOutcome(err, locateModuleSyntaxError(esmFile, inv.deadlineMs), 'function.mjs');
    }
    throw err;
  }
  return pickHandler(namespace, inv.entryPoint, 'function.mjs');
}

function waitOneTurn() {
  return new Promise((resolve) => setImmediate(resolve));
}

// A message of the wrapper's own, run before the real one is read (when
// started with --warm-up, as the supervisor's warm pool does; with
// --with-db also the database driver is loaded): the path
// every invocation takes (parsing, the SDK object, compiling and running
// CommonJS, picking the handler, one event-loop turn, the result's JSON) is
// then compiled and initialised while the sandbox waits in the warm pool,
// not while a caller waits. No file is written and nothing of it stays
// reachable; user code never sees it.
const WARM_UP = JSON.stringify({
  invocation_id: 'warm-up',
  project_id: 'warm-up',
  function: { name: 'warm-up', version: 0, entry_point: 'handler' },
  code: 'exports.handler = async (payload) => payload;',
  env: {},
  dsn: '',
  payload: { warm: [1, 'up', true, null] },
  deadline_ms: 1,
});

async function warmUp() {
  if (process.argv.includes('--with-db')) {
    // For functions that use zmesh.db: the driver loaded, and a session run
    // against a scripted server in memory (connect with SCRAM, a query,
    // close), now rather than on the function's first query. No real
    // connection: that needs the invocation's DSN.
    await require('./lib/warmup.js').warmDatabase();
  }
  try {
    const inv = parseInvocation(WARM_UP);
    const { zmesh } = createZmesh(inv);
    const picked = await loadHandler(inv);
    const value = await Reflect.apply(picked.fn, picked.self, [inv.payload, zmesh]);
    await waitOneTurn();
    JSON.stringify(value);
  } catch {
    // Only time is at stake: the real invocation reports its own failures.
  }
}

async function main() {
  claimResultFd();
  installGuards();
  egress.install();
  // Only where the wait is off the request's path: the supervisor's warm pool
  // starts the wrapper with --warm-up.
  if (process.argv.includes('--warm-up')) await warmUp();
  writeAll(resultFd, '\n');

  let inv;
  try {
    inv = parseInvocation(readStdin());
  } catch (err) {
    failWith(err instanceof Outcome ? err : badInvocation(describeError(err).message));
    return;
  }

  if (inv.check) {
    let report;
    try {
      report = await checkCode(inv);
    } catch (err) {
      failWith(err);
      return;
    }
    if (emit('{"ok":true,"result":' + JSON.stringify(report) + '}\n')) finish();
    return;
  }

  const { zmesh, close, emitted } = createZmesh(inv);
  closeDatabase = close;
  Object.defineProperty(globalThis, 'zmesh', { value: zmesh, writable: true, configurable: true, enumerable: false });

  let picked;
  try {
    picked = await loadHandler(inv);
  } catch (err) {
    failWith(err);
    return;
  }
  if (picked.error) {
    failWith(picked.error);
    return;
  }

  let value;
  try {
    value = await Reflect.apply(picked.fn, picked.self, [inv.payload, zmesh]);
  } catch (err) {
    failWith(err);
    return;
  }
  // Rejections the handler left unhandled are reported at the end of this
  // turn; one turn is what they get before the result is final.
  await waitOneTurn();
  if (finished) return;

  let json;
  try {
    json = JSON.stringify(value === undefined ? null : value);
  } catch (err) {
    const inner = describeError(err);
    fail(new Outcome('ResultNotSerializable', `the handler's result cannot be serialised to JSON: ${inner.message}`, inner.stack).report);
    return;
  }
  if (typeof json !== 'string') {
    fail(new Outcome('ResultNotSerializable', `the handler returned a ${typeof value}, which has no JSON form`, '').report);
    return;
  }
  // Emitted events travel with the result: zmeshd queues them once it
  // has it (bounded like the rest of the result).
  const emits = emitted.length ? ',"emits":' + JSON.stringify(emitted) : '';
  if (emit('{"ok":true,"result":' + json + emits + '}\n')) finish();
}

main().catch(failWith);
