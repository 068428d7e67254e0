'use strict';
// Test harness: runs bootstrap.js as the supervisor would (one JSON message
// on stdin, a minimal environment, a private TMPDIR) and manages a
// throwaway PostgreSQL cluster through tests/pg/pgtmp.

const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const SDK_DIR = path.resolve(__dirname, '..');
const BOOTSTRAP = path.join(SDK_DIR, 'bootstrap.js');
const PGTMP = path.resolve(SDK_DIR, '..', 'tests', 'pg', 'pgtmp');
const NODE = process.execPath;

function invocation(code, overrides = {}) {
  const { function: fn, ...rest } = overrides;
  return {
    invocation_id: 'inv-0001',
    project_id: 'proj-42',
    function: { name: 'hello', version: 3, entry_point: 'handler', ...fn },
    code,
    env: {},
    dsn: '',
    payload: null,
    deadline_ms: Date.now() + 60000,
    ...rest,
  };
}

// input: an invocation object (sent as JSON) or a raw string/Buffer; env
// adds to or overrides the minimal environment; args follow bootstrap.js.
// Resolves with the exit status, both streams (stdout without the leading
// ready newline, and whether it was there), the parsed stdout (or the parse
// error) and the TMPDIR left behind, which the caller may inspect.
function run(input, { timeoutMs = 30000, keepTmp = false, env = {}, args = [] } = {}) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'zmesh-sdkjs-run-'));
  const child = spawn(NODE, [BOOTSTRAP, ...args], {
    env: { PATH: '/usr/bin:/bin', HOME: tmp, TMPDIR: tmp, LANG: 'C.UTF-8', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out = [];
  const err = [];
  child.stdout.on('data', (c) => out.push(c));
  child.stderr.on('data', (c) => err.push(c));
  const started = process.hrtime.bigint();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  child.stdin.on('error', () => {});
  child.stdin.end(typeof input === 'string' || Buffer.isBuffer(input) ? input : JSON.stringify(input));
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const raw = Buffer.concat(out).toString('utf8');
      // The wrapper announces with one newline that it is loaded and about
      // to read; the result follows it.
      const ready = raw.startsWith('\n');
      const stdout = ready ? raw.slice(1) : raw;
      const stderr = Buffer.concat(err).toString('utf8');
      let response = null;
      let parseError = null;
      try {
        response = JSON.parse(stdout);
      } catch (e) {
        parseError = e;
      }
      const leftovers = fs.readdirSync(tmp);
      if (!keepTmp) fs.rmSync(tmp, { recursive: true, force: true });
      resolve({
        code,
        signal,
        timedOut,
        ready,
        stdout,
        stderr,
        response,
        parseError,
        leftovers,
        tmp,
        ms: Number(process.hrtime.bigint() - started) / 1e6,
      });
    });
  });
}

// The SDK's own pg, so the tests need nothing the wrapper does not.
function loadPg() {
  return require(path.join(SDK_DIR, 'node_modules', 'pg'));
}

class Cluster {
  constructor(dir, socketDir) {
    this.dir = dir;
    this.socketDir = socketDir;
    this.serverLog = path.join(dir, 'server.log');
  }

  static start() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zmesh-sdkjs-pg-'));
    let socketDir;
    try {
      socketDir = execFileSync(PGTMP, ['start', dir], { encoding: 'utf8', timeout: 120000 }).trim();
    } catch (e) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    return new Cluster(dir, socketDir);
  }

  stop() {
    try {
      execFileSync(PGTMP, ['stop', this.dir], { timeout: 60000, stdio: 'ignore' });
    } finally {
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }

  // A superuser client (peer authentication over the socket).
  async admin(database = 'postgres') {
    const pg = loadPg();
    const client = new pg.Client({ host: this.socketDir, user: 'postgres', database });
    await client.connect();
    return client;
  }

  dsn(user, password, database) {
    const enc = encodeURIComponent;
    return `postgresql://${enc(user)}:${enc(password)}@/${enc(database)}?host=${this.socketDir}`;
  }
}

module.exports = { invocation, run, Cluster, loadPg, BOOTSTRAP, SDK_DIR };
