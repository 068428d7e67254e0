'use strict';
// The zmesh SDK object handed to every handler, plus the small helpers the
// wrapper shares with it (error description, stack cleaning, fd writes).
// Loaded on every invocation, so it must stay cheap: nothing here touches the
// database driver; lib/db.js is required on the first zmesh.db call only.

const fs = require('fs');
const path = require('path');

const protocol = require('./protocol.js');

const { MAX_ERROR_NAME_BYTES, MAX_ERROR_MESSAGE_BYTES, MAX_ERROR_STACK_BYTES } = protocol;

const SDK_DIR = path.dirname(__dirname) + path.sep;
const TRUNCATED = '\n... (truncated)';

let sleepCell = null;
function sleepMs(ms) {
  if (!sleepCell) sleepCell = new Int32Array(new SharedArrayBuffer(4));
  Atomics.wait(sleepCell, 0, 0, ms);
}

// Synchronous so a result or log line is complete before the process can
// exit; retries EAGAIN because a pipe handed to us may be non-blocking.
// Returns false when the descriptor is gone (nobody left to read it).
function writeAll(fd, text) {
  const buf = typeof text === 'string' ? Buffer.from(text, 'utf8') : Buffer.from(text.buffer, text.byteOffset, text.byteLength);
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (err) {
      if (err && err.code === 'EAGAIN') {
        sleepMs(1);
        continue;
      }
      return false;
    }
  }
  return true;
}

function safeGet(obj, key) {
  try {
    return obj[key];
  } catch {
    return undefined;
  }
}

// At most max UTF-8 bytes, the marker included, cut on a character
// boundary: the protocol's limits are bytes, and the supervisor cuts again
// whatever exceeds them.
function truncate(text, max) {
  // A UTF-16 unit is at most three UTF-8 bytes (a pair is four).
  if (text.length * 3 <= max) return text;
  // More units than max are more bytes than max: only the head matters.
  const whole = text.length <= max;
  const buf = Buffer.from(whole ? text : text.slice(0, max), 'utf8');
  if (whole && buf.length <= max) return text;
  let cut = Math.max(0, max - TRUNCATED.length);
  while (cut > 0 && (buf[cut] & 0xc0) === 0x80) cut--;
  return buf.toString('utf8', 0, cut) + TRUNCATED;
}

function isWrapperFrame(line) {
  if (!/^\s*at\s/.test(line)) return false;
  return line.includes(SDK_DIR) || line.includes('node:internal/');
}

// Frames of the wrapper, the SDK, the driver and Node's internals say nothing
// to the author of the function; keep the message and the user's frames.
function cleanStack(stack) {
  if (typeof stack !== 'string') return '';
  return stack
    .split('\n')
    .filter((line) => !isWrapperFrame(line))
    .join('\n');
}

// Frames below the header of a stack captured with Error.captureStackTrace,
// already cleaned: what an SDK error's stack should show as its origin.
function callerFrames(site) {
  const stack = safeGet(site, 'stack');
  if (typeof stack !== 'string') return '';
  const nl = stack.indexOf('\n');
  return nl < 0 ? '' : cleanStack(stack.slice(nl + 1));
}

function describeValue(value) {
  try {
    const json = JSON.stringify(value);
    if (typeof json === 'string') return json.length > 200 ? json.slice(0, 200) + '...' : json;
  } catch {
    // fall through to String()
  }
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

// The error's own class name: an explicit .name when it says more than
// "Error", else the constructor's name (a user class that never set .name).
function errorName(err) {
  const own = safeGet(err, 'name');
  if (typeof own === 'string' && own !== '' && own !== 'Error') return own;
  const ctor = safeGet(err, 'constructor');
  const cname = typeof ctor === 'function' ? safeGet(ctor, 'name') : undefined;
  if (typeof cname === 'string' && cname !== '' && cname !== 'Object') return cname;
  return 'Error';
}

function isErrorLike(value) {
  try {
    return value instanceof Error || (value !== null && typeof value === 'object' && 'message' in value && 'stack' in value);
  } catch {
    return false;
  }
}

// Turn anything that was thrown into the protocol's {name, message, stack};
// never throws, whatever getters or proxies the thrown value carries.
function describeError(err) {
  let name = 'Error';
  let message;
  let stack = '';
  if (isErrorLike(err)) {
    name = errorName(err);
    const msg = safeGet(err, 'message');
    message = typeof msg === 'string' ? msg : describeValue(msg);
    stack = cleanStack(safeGet(err, 'stack'));
  } else if (typeof err === 'string') {
    message = err;
  } else {
    message = 'a non-Error value was thrown: ' + describeValue(err);
  }
  return {
    name: truncate(String(name), MAX_ERROR_NAME_BYTES),
    message: truncate(message, MAX_ERROR_MESSAGE_BYTES),
    stack: truncate(stack, MAX_ERROR_STACK_BYTES),
  };
}

function logMessage(msg) {
  if (typeof msg === 'string') return msg;
  if (msg instanceof Error) return `${errorName(msg)}: ${safeGet(msg, 'message')}`;
  return describeValue(msg);
}

// One JSON line per call on stderr; level, msg and time cannot be overridden
// by fields, so log processors can rely on them.
function makeLog() {
  const write = (level) =>
    function log(msg, fields) {
      const record = { level, msg: logMessage(msg), time: new Date().toISOString() };
      let line;
      try {
        if (fields !== null && typeof fields === 'object' && !Array.isArray(fields)) {
          for (const key of Object.keys(fields)) {
            if (!Object.prototype.hasOwnProperty.call(record, key)) record[key] = fields[key];
          }
        } else if (fields !== undefined) {
          record.fields = fields;
        }
        line = JSON.stringify(record);
      } catch (err) {
        line = JSON.stringify({
          level,
          msg: record.msg,
          time: record.time,
          log_error: `fields could not be serialised: ${describeError(err).message}`,
        });
      }
      writeAll(2, line + '\n');
    };
  return Object.freeze({ debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') });
}

const DB_METHODS = ['query', 'queryOne', 'insert', 'select', 'update', 'remove', 'transaction'];

function validEventType(type) {
  if (typeof type !== 'string' || type.length === 0 || type.length > protocol.MAX_EVENT_TYPE_BYTES) return false;
  if (type.startsWith('custom.')) return false;
  for (const ch of type) if (!protocol.EVENT_TYPE_CHARS.includes(ch)) return false;
  return true;
}

// inv is a validated invocation (see bootstrap.js). Returns the frozen SDK
// object and close(), which ends the database session if one was opened.
function createZmesh(inv) {
  let session = null;
  const openSession = () => {
    if (!session) {
      const { createSession } = require('./db.js');
      session = createSession({
        dsn: inv.dsn,
        deadlineMs: inv.deadlineMs,
        invocationId: inv.invocationId,
      });
    }
    return session;
  };

  const db = {};
  for (const method of DB_METHODS) {
    db[method] = function (...args) {
      return openSession().api[method](...args);
    };
  }

  const env = Object.create(null);
  for (const key of Object.keys(inv.env)) env[key] = inv.env[key];

  // Custom events the function emits: queued by the platform once the
  // handler has returned successfully (a failed run emits nothing).
  const emitted = [];
  async function emit(type, data) {
    if (!validEventType(type)) {
      throw new TypeError(
        `zmesh.emit: the type must be 1 to ${protocol.MAX_EVENT_TYPE_BYTES} of a-z 0-9 . _ - ` +
          '(not starting with "custom."), e.g. "order.paid"',
      );
    }
    if (emitted.length >= protocol.MAX_EMITS) {
      throw new RangeError(`zmesh.emit: at most ${protocol.MAX_EMITS} events per invocation`);
    }
    let json;
    try {
      json = JSON.stringify(data === undefined ? null : data);
    } catch (err) {
      throw new TypeError(`zmesh.emit: the data cannot be serialised to JSON: ${err && err.message}`);
    }
    if (typeof json !== 'string') throw new TypeError(`zmesh.emit: a ${typeof data} has no JSON form`);
    const eventId = require('crypto').randomUUID();
    // A copy as it was: later changes to data do not change the event.
    emitted.push({ event_id: eventId, type, data: JSON.parse(json) });
    return { event_id: eventId };
  }

  const zmesh = Object.freeze({
    projectId: inv.projectId,
    invocationId: inv.invocationId,
    function: Object.freeze({ name: inv.functionName, version: inv.functionVersion }),
    env: Object.freeze(env),
    deadlineMs: inv.deadlineMs,
    timeLeftMs: () => Math.max(0, inv.deadlineMs - Date.now()),
    log: makeLog(),
    db: Object.freeze(db),
    emit,
  });

  const close = () => (session ? session.close() : Promise.resolve());
  return { zmesh, close, emitted };
}

module.exports = {
  createZmesh,
  describeError,
  cleanStack,
  callerFrames,
  errorName,
  writeAll,
  truncate,
};
