'use strict';
// A database session run against a scripted server in memory, for the warm
// pool's sandboxes that serve functions using zmesh.db: connecting (SCRAM-
// SHA-256 included), a query and its rows, closing. Node compiles code the
// first time it runs; a function's first query would otherwise pay for the
// driver's connection, protocol and authentication code. The session goes
// over a real unix socket, as a function's does: the socket's own code
// (connecting, reading, writing, closing) is set up on first use too, and
// warming it took a first real session from ~8 to ~5 ms on the host. The
// socket is abstract (no file), private to the sandbox's network namespace,
// and closed before the invocation. Where no socket can be made, the same
// server runs as a Duplex stream handed to the driver.

const crypto = require('crypto');
const net = require('net');
const { Duplex } = require('stream');

const PASSWORD = 'warm-up';

function message(type, body) {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

function int32(n) {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

function int16(n) {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
}

const cstr = (s) => Buffer.from(s + '\0', 'utf8');
const auth = (code, rest = Buffer.alloc(0)) => message('R', Buffer.concat([int32(code), rest]));
const ready = () => message('Z', Buffer.from('I'));

function rowsOfOne() {
  // RowDescription: one int4 column "one"; DataRow "1"; CommandComplete.
  const field = Buffer.concat([cstr('one'), int32(0), int16(0), int32(23), int16(4), int32(-1), int16(0)]);
  return Buffer.concat([
    message('T', Buffer.concat([int16(1), field])),
    message('D', Buffer.concat([int16(1), int32(1), Buffer.from('1')])),
    message('C', cstr('SELECT 1')),
    ready(),
  ]);
}

const hmac = (key, text) => crypto.createHmac('sha256', key).update(text).digest();

class ScriptedServer extends Duplex {
  constructor() {
    super();
    this.pending = Buffer.alloc(0);
    this.started = false;
    this.clientFirstBare = '';
    this.serverFirst = '';
    this.salted = null;
  }

  // What pg's connection calls on a socket.
  setNoDelay() {}
  setKeepAlive() {}
  ref() {}
  unref() {}
  connect() {
    process.nextTick(() => this.emit('connect'));
    return this;
  }

  _read() {}

  // Answers arrive later, as from a socket: pushed inside write() they
  // would re-enter the driver's parser while it is still parsing.
  send(buf) {
    process.nextTick(() => this.push(buf));
  }

  _write(chunk, encoding, done) {
    this.pending = Buffer.concat([this.pending, chunk]);
    for (;;) {
      if (!this.started) {
        if (this.pending.length < 4 || this.pending.length < this.pending.readInt32BE(0)) break;
        this.pending = this.pending.subarray(this.pending.readInt32BE(0));
        this.started = true;
        this.send(auth(10, Buffer.concat([cstr('SCRAM-SHA-256'), Buffer.from([0])])));
        continue;
      }
      if (this.pending.length < 5) break;
      const len = this.pending.readInt32BE(1);
      if (this.pending.length < len + 1) break;
      const type = String.fromCharCode(this.pending[0]);
      const body = this.pending.subarray(5, len + 1);
      this.pending = this.pending.subarray(len + 1);
      this.answer(type, body);
    }
    done();
  }

  answer(type, body) {
    if (type === 'p' && !this.serverFirst) {
      // SASLInitialResponse: mechanism\0, int32 length, client-first-message.
      const at = body.indexOf(0) + 1;
      const clientFirst = body.subarray(at + 4).toString('utf8');
      this.clientFirstBare = clientFirst.slice(clientFirst.indexOf('n='));
      const nonce = /r=([^,]+)/.exec(this.clientFirstBare)[1] + crypto.randomBytes(9).toString('base64');
      const salt = crypto.randomBytes(16);
      this.salted = crypto.pbkdf2Sync(PASSWORD, salt, 1, 32, 'sha256');
      this.serverFirst = `r=${nonce},s=${salt.toString('base64')},i=1`;
      this.send(auth(11, Buffer.from(this.serverFirst)));
    } else if (type === 'p') {
      // SASLResponse: client-final-message; answer with the server's signature.
      const clientFinal = body.toString('utf8');
      const withoutProof = clientFinal.slice(0, clientFinal.lastIndexOf(',p='));
      const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
      const signature = hmac(hmac(this.salted, 'Server Key'), authMessage).toString('base64');
      this.send(
        Buffer.concat([
          auth(12, Buffer.from(`v=${signature}`)),
          auth(0),
          message('S', Buffer.concat([cstr('client_encoding'), cstr('UTF8')])),
          message('S', Buffer.concat([cstr('server_version'), cstr('15')])),
          message('K', Buffer.concat([int32(1), int32(2)])),
          ready(),
        ]),
      );
    } else if (type === 'Q') {
      const text = body.toString('utf8');
      this.send(/^select 1 as one/i.test(text) ? rowsOfOne() : Buffer.concat([message('C', cstr('SET')), ready()]));
    } else if (type === 'X') {
      process.nextTick(() => {
        this.push(null);
        this.destroy();
      });
    }
  }
}

async function runSession(stream) {
  const { createSession } = require('./db.js');
  const session = createSession({
    // The shape of a function's DSN (a socket directory as host), so that
    // the same parsing and connecting code runs; the stream decides where
    // it really goes.
    dsn: `postgresql://warm-up:${PASSWORD}@/warm-up?host=/run/zmesh/pg`,
    deadlineMs: Date.now() + 5000,
    invocationId: 'warm-up',
    stream,
  });
  try {
    await session.api.queryOne('select 1 as one');
  } finally {
    await session.close();
  }
}

// The scripted server on an abstract unix socket; resolves to a function
// that closes it, or null when it cannot listen.
function listenScripted(path) {
  return new Promise((resolve) => {
    const server = net.createServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.pipe(new ScriptedServer()).pipe(socket);
    });
    server.once('error', () => resolve(null));
    server.listen(path, () => resolve(() => new Promise((done) => server.close(() => done()))));
  });
}

// Runs the session; resolves whatever happens (a failure only costs time).
async function warmDatabase() {
  const path = `\0zmesh-warm-up-${process.pid}`;
  let close = null;
  try {
    close = await listenScripted(path);
    if (close) {
      // pg connects to HOST/.s.PGSQL.PORT; this socket goes to the server.
      await runSession(() => {
        const socket = new net.Socket();
        const connect = socket.connect.bind(socket);
        socket.connect = () => connect({ path });
        return socket;
      });
    } else {
      await runSession(() => new ScriptedServer());
    }
  } catch {
    // The real session reports its own failures.
  } finally {
    if (close) await close();
  }
}

module.exports = { warmDatabase, ScriptedServer };
