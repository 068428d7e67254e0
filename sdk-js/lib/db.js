'use strict';
// zmesh.db: one lazily opened PostgreSQL session per invocation, driven by
// `pg`. Required by lib/zmesh.js on the first zmesh.db call only, so a
// function that never touches its database neither loads pg nor connects.

const pg = require('./pg.js');
const { types } = require('./types.js');
const sql = require('./sql.js');
const { callerFrames, errorName } = require('./zmesh.js');

// Fixed session settings the type parsers rely on (types.js). Set with one
// statement after connecting, not in the startup packet: pgbouncer, which
// sandboxes reach the database through, passes no startup options on (its
// server connections are shared), and a pooled session starts from the
// server's defaults after DISCARD ALL.
const SESSION_SETTINGS = 'SET DateStyle=ISO; SET TimeZone=UTC; SET IntervalStyle=iso_8601; SET bytea_output=hex';
const CLOSE_TIMEOUT_MS = 500;
// A session waits in the node's pgbouncer while every connection its
// project may hold is in use; it gives up this long before the deadline so
// that the function, not the sandbox's kill, reports why.
const POOL_MARGIN_MS = 200;
const POOL_BUSY_MESSAGE =
  "no database connection became free before the invocation's deadline: every connection this project " +
  "may hold at once (its tier's db_connections) stayed in use";

const PG_ERROR_FIELDS = ['detail', 'hint', 'position', 'schema', 'table', 'column', 'dataType', 'constraint', 'severity'];

// What user code catches for any database failure. code is the SQLSTATE:
// the server's for errors it reports, 08001 when no session could be opened
// and 08006 when an open one broke.
class DatabaseError extends Error {
  constructor(message, code, fields) {
    super(message);
    this.name = 'DatabaseError';
    this.code = code;
    this.sqlstate = code;
    if (fields) {
      for (const key of PG_ERROR_FIELDS) {
        if (fields[key] !== undefined) this[key] = fields[key];
      }
    }
  }
}

function isServerError(err) {
  return err instanceof pg.DatabaseError || (err && typeof err.code === 'string' && /^[0-9A-Z]{5}$/.test(err.code) && err.severity);
}

// Errors raised in pg's socket callbacks carry no trace of the caller; the
// stack is replaced with the frames captured when the user made the call.
// A fresh object per call: one failed connect is reported to every caller
// waiting on it, each with its own stack.
function toDatabaseError(err, site, fallbackCode) {
  let out;
  if (err instanceof DatabaseError) {
    out = new DatabaseError(err.message, err.code, err);
  } else if (isServerError(err)) {
    out = new DatabaseError(err.message, err.code, err);
  } else if (err instanceof TypeError || err instanceof RangeError) {
    // Raised by pg while preparing values (e.g. a circular object): the
    // caller's mistake, not the database's.
    return err;
  } else {
    const message = err && typeof err.message === 'string' ? err.message : String(err);
    out = new DatabaseError(message, fallbackCode);
  }
  const frames = callerFrames(site);
  out.stack = `DatabaseError: ${out.message}` + (frames ? '\n' + frames : '');
  return out;
}

function captureSite(fn) {
  const site = {};
  Error.captureStackTrace(site, fn);
  return site;
}

function applicationName(invocationId) {
  const safe = String(invocationId || '').replace(/[^\x20-\x7e]/g, '?');
  return ('zmesh ' + safe).slice(0, 63);
}

class Connection {
  // stream: the wrapper's warm-up only (lib/warmup.js), a scripted server.
  constructor({ dsn, deadlineMs, invocationId, stream }) {
    this.dsn = dsn;
    this.deadlineMs = deadlineMs;
    this.invocationId = invocationId;
    this.stream = stream;
    this.client = null;
    this.ready = null;
  }

  open() {
    if (!this.ready) {
      this.ready = this.connect().catch((err) => {
        this.ready = null;
        throw err;
      });
    }
    return this.ready;
  }

  async connect() {
    if (!this.dsn) throw new DatabaseError('this function has no database (no DSN was given)', '08001');
    const waitUntil = this.deadlineMs - POOL_MARGIN_MS;
    const timeLeft = Math.max(1, waitUntil - Date.now());
    let client;
    try {
      client = new pg.Client({
        connectionString: this.dsn,
        types,
        application_name: applicationName(this.invocationId),
        connectionTimeoutMillis: timeLeft,
        ...(this.stream ? { stream: this.stream } : {}),
      });
    } catch (err) {
      // Never echo the DSN: it holds the password.
      throw new DatabaseError(`invalid database DSN: ${errorName(err)}`, '08001');
    }
    const forget = () => {
      if (this.client === client) {
        this.client = null;
        this.ready = null;
      }
    };
    // An idle session can fail (server shutdown, admin kill); without a
    // listener pg would turn that into an uncaught exception.
    client.on('error', forget);
    client.on('end', forget);
    try {
      await client.connect();
    } catch (err) {
      if (isServerError(err)) throw new DatabaseError(err.message, err.code, err);
      if (Date.now() >= waitUntil) throw new DatabaseError(POOL_BUSY_MESSAGE, '53300');
      throw new DatabaseError(`could not connect to the database: ${err && err.message}`, '08001');
    }
    // The first statement is where a pooled session waits for a server
    // connection: bounded like the connect.
    let timer;
    const busy = new DatabaseError(POOL_BUSY_MESSAGE, '53300');
    const expired = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(busy), Math.max(1, waitUntil - Date.now()));
    });
    try {
      // A query must not outlive the invocation: the server would go on
      // running it after the sandbox is killed.
      const left = Math.max(1, Math.floor(this.deadlineMs - Date.now()));
      await Promise.race([client.query(`${SESSION_SETTINGS}; SET statement_timeout=${left}`), expired]);
    } catch (err) {
      client.end().catch(() => {});
      if (err === busy) throw err;
      if (isServerError(err)) throw new DatabaseError(err.message, err.code, err);
      throw new DatabaseError(`could not set the session up: ${err && err.message}`, '08001');
    } finally {
      clearTimeout(timer);
    }
    this.client = client;
    return client;
  }

  async run(text, values, site) {
    let client;
    try {
      client = await this.open();
      const result = await client.query(text, values);
      return Array.isArray(result) ? result[result.length - 1] : result;
    } catch (err) {
      throw toDatabaseError(err, site, client ? '08006' : '08001');
    }
  }

  async close() {
    const client = this.client;
    const pending = this.ready;
    this.client = null;
    this.ready = null;
    if (!client && pending) {
      // Still connecting: let it finish so it can be ended, not leaked.
      try {
        await pending;
      } catch {
        return;
      }
      return this.close();
    }
    if (!client) return;
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
    });
    try {
      await Promise.race([client.end(), timeout]);
    } catch {
      // The process is about to exit; the server notices the closed socket.
    } finally {
      clearTimeout(timer);
    }
  }
}

let transactionContext = null;
function contextStore() {
  if (!transactionContext) {
    const { AsyncLocalStorage } = require('async_hooks');
    transactionContext = new AsyncLocalStorage();
  }
  return transactionContext;
}

// A scope is the session itself (depth 0) or one transaction / savepoint.
// While a child transaction runs, statements issued on its parent from
// outside the child's callback wait for it to finish, so they never land
// inside it; statements issued from inside the callback (even through
// zmesh.db) join the innermost open transaction.
class Scope {
  constructor(connection, parent) {
    this.connection = connection;
    this.parent = parent;
    this.depth = parent ? parent.depth + 1 : 0;
    this.lock = null;
    this.open = true;
    this.api = makeApi(this);
  }

  isWithin(ancestor) {
    for (let s = this; s; s = s.parent) if (s === ancestor) return true;
    return false;
  }

  target() {
    const current = transactionContext ? transactionContext.getStore() : undefined;
    return current && current !== this && current.open && current.isWithin(this) ? current : this;
  }

  async run(statement, site) {
    const scope = this.target();
    while (scope.lock) await scope.lock;
    if (!scope.open) {
      throw toDatabaseError(new Error('this transaction has already finished'), site, '25000');
    }
    return scope.connection.run(statement.text, statement.values, site);
  }

  async transaction(fn, site) {
    if (typeof fn !== 'function') throw new TypeError('transaction needs a function: transaction(async (tx) => ...)');
    const store = contextStore();
    const scope = this.target();
    while (scope.lock) await scope.lock;
    if (!scope.open) {
      throw toDatabaseError(new Error('this transaction has already finished'), site, '25000');
    }
    let release;
    scope.lock = new Promise((resolve) => {
      release = resolve;
    });
    const child = new Scope(scope.connection, scope);
    const savepoint = `zmesh_savepoint_${child.depth}`;
    const conn = scope.connection;
    let began = false;
    try {
      await conn.run(scope.depth === 0 ? 'BEGIN' : `SAVEPOINT ${savepoint}`, undefined, site);
      began = true;
      const result = await store.run(child, () => fn(child.api));
      child.open = false;
      if (scope.depth === 0) {
        const done = await conn.run('COMMIT', undefined, site);
        // The server answers COMMIT of a failed transaction with ROLLBACK
        // and no error; the caller must not believe its writes were kept.
        if (done && done.command === 'ROLLBACK') {
          throw toDatabaseError(
            new DatabaseError('the transaction was aborted by an earlier error and has been rolled back', '25P02'),
            site,
          );
        }
      } else {
        await conn.run(`RELEASE SAVEPOINT ${savepoint}`, undefined, site);
      }
      return result;
    } catch (err) {
      child.open = false;
      if (began) {
        const undo = scope.depth === 0 ? 'ROLLBACK' : `ROLLBACK TO SAVEPOINT ${savepoint}; RELEASE SAVEPOINT ${savepoint}`;
        try {
          await conn.run(undo, undefined, site);
        } catch {
          // The original error is what the caller needs to see.
        }
      }
      throw err;
    } finally {
      scope.lock = null;
      release();
    }
  }
}

function checkSql(text) {
  if (typeof text !== 'string' || text.trim() === '') throw new TypeError('sql must be a non-empty string');
  return text;
}

function makeApi(scope) {
  const api = {
    async query(text, params) {
      const site = captureSite(api.query);
      checkSql(text);
      const values = params === undefined || params === null ? undefined : sql.checkParams(params);
      const result = await scope.run({ text, values }, site);
      return result.rows;
    },
    async queryOne(text, params) {
      const site = captureSite(api.queryOne);
      checkSql(text);
      const values = params === undefined || params === null ? undefined : sql.checkParams(params);
      const result = await scope.run({ text, values }, site);
      return result.rows.length > 0 ? result.rows[0] : null;
    },
    async insert(table, data) {
      const site = captureSite(api.insert);
      const result = await scope.run(sql.insertSql(table, data), site);
      return result.rows[0];
    },
    async select(table, where, params) {
      const site = captureSite(api.select);
      const result = await scope.run(sql.selectSql(table, where, params), site);
      return result.rows;
    },
    async update(table, data, where, params) {
      const site = captureSite(api.update);
      const result = await scope.run(sql.updateSql(table, data, where, params), site);
      return result.rows;
    },
    async remove(table, where, params) {
      const site = captureSite(api.remove);
      const result = await scope.run(sql.removeSql(table, where, params), site);
      return result.rowCount || 0;
    },
    transaction(fn) {
      const site = captureSite(api.transaction);
      return scope.transaction(fn, site);
    },
  };
  return Object.freeze(api);
}

function createSession(options) {
  const connection = new Connection(options);
  const root = new Scope(connection, null);
  return { api: root.api, close: () => connection.close() };
}

module.exports = { createSession, DatabaseError };
