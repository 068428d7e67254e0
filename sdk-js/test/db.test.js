'use strict';
// zmesh.db against a real throwaway PostgreSQL cluster, through the real
// entry point. The function's role has a password (scram-sha-256) and owns
// one database; CONNECT on the others is revoked, as the platform does.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const { invocation, run, Cluster } = require('../testing/harness.js');

const ROLE = 'fn_role';
const PASSWORD = 'p@ss:w/rd %"x';
const DB = 'fn db';
const FORBIDDEN_DB = 'other_project';

let cluster;
let admin;
let dsn;

async function query(text, params) {
  return (await admin.query(text, params)).rows;
}

async function waitFor(what, check, timeoutMs = 5000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function connectionsLogged() {
  const log = fs.readFileSync(cluster.serverLog, 'utf8');
  return log.split('\n').filter((line) => line.includes(`connection authorized: user=${ROLE} `)).length;
}

async function invoke(code, overrides = {}) {
  const r = await run(invocation(code, { dsn, ...overrides }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.parseError, null, `stdout is not one JSON object: ${JSON.stringify(r.stdout)} / ${r.stderr}`);
  return r;
}

// Runs a handler that must succeed and returns its result.
async function result(code, overrides) {
  const r = await invoke(code, overrides);
  assert.equal(r.response.ok, true, JSON.stringify(r.response));
  return r.response.result;
}

// Runs a handler that must fail and returns the protocol error.
async function failure(code, overrides) {
  const r = await invoke(code, overrides);
  assert.equal(r.response.ok, false, JSON.stringify(r.response));
  return r.response.error;
}

function assertUserStack(stack) {
  assert.match(stack, /function\.(c|m)js:\d+:\d+/, stack);
  assert.doesNotMatch(stack, /bootstrap\.js|sdk-js[\\/]lib|node_modules|node:internal/, stack);
}

test.before(async () => {
  cluster = Cluster.start();
  admin = await cluster.admin();
  await admin.query(`CREATE ROLE ${ROLE} LOGIN PASSWORD '${PASSWORD.replace(/'/g, "''")}'`);
  await admin.query(`CREATE DATABASE "${DB}" OWNER ${ROLE}`);
  await admin.query(`REVOKE CONNECT ON DATABASE "${DB}" FROM PUBLIC`);
  await admin.query(`CREATE DATABASE ${FORBIDDEN_DB}`);
  await admin.query(`REVOKE CONNECT ON DATABASE ${FORBIDDEN_DB} FROM PUBLIC`);
  // Connections are counted from the server log (see the lazy-connect test).
  await admin.query('ALTER SYSTEM SET log_connections = on');
  await admin.query('SELECT pg_reload_conf()');
  await waitFor('log_connections', async () => {
    const probe = await cluster.admin();
    try {
      return (await probe.query('SHOW log_connections')).rows[0].log_connections === 'on';
    } finally {
      await probe.end();
    }
  });
  await admin.end();
  admin = await cluster.admin(DB);
  await admin.query(`SET ROLE ${ROLE}`);
  await admin.query(`
    CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL UNIQUE, qty int NOT NULL DEFAULT 1,
                        note text, created timestamptz NOT NULL DEFAULT '2024-05-06 07:08:09.123456+00');
    CREATE TABLE events (id serial PRIMARY KEY, label text NOT NULL);
    CREATE TABLE victims (id int);
    INSERT INTO victims VALUES (1);
    CREATE SCHEMA app;
    CREATE TABLE app.things (id serial PRIMARY KEY, v text);
    CREATE SCHEMA "odd.schema";
    CREATE TABLE "odd.schema"."dotted.table" (id serial PRIMARY KEY, v text);
    CREATE TABLE "we""ird tbl" (id serial PRIMARY KEY, "weird""name" int, "select" text);
  `);
  await admin.query('RESET ROLE');
  dsn = cluster.dsn(ROLE, PASSWORD, DB);
});

test.after(async () => {
  if (admin) await admin.end().catch(() => {});
  if (cluster) cluster.stop();
});

test('query and queryOne', async (t) => {
  await t.test('query binds $n params and returns rows', async () => {
    const rows = await result(`exports.handler = (p, z) => z.db.query('SELECT $1::int + $2::int AS sum, $3::text AS s', [2, 3, "it's"])`);
    assert.deepEqual(rows, [{ sum: 5, s: "it's" }]);
  });
  await t.test('queryOne returns the first row or null', async () => {
    const [one, none] = await result(`
      exports.handler = async (p, z) => [
        await z.db.queryOne('SELECT g AS n FROM generate_series(1, 3) g ORDER BY g'),
        await z.db.queryOne('SELECT 1 AS n WHERE false'),
      ]`);
    assert.deepEqual(one, { n: 1 });
    assert.equal(none, null);
  });
  await t.test('query without params runs several statements and returns the last rows', async () => {
    const rows = await result(`
      exports.handler = (p, z) => z.db.query("CREATE TEMP TABLE tmp_x (v int); INSERT INTO tmp_x VALUES (7), (8); SELECT v FROM tmp_x ORDER BY v")`);
    assert.deepEqual(rows, [{ v: 7 }, { v: 8 }]);
  });
  await t.test('values are bound, never spliced: an injection string is stored as text', async () => {
    const evil = "x'); DROP TABLE victims; --";
    const rows = await result(`exports.handler = (p, z) => z.db.query('SELECT $1::text AS v', [p.evil])`, { payload: { evil } });
    assert.deepEqual(rows, [{ v: evil }]);
    assert.deepEqual(await query('SELECT count(*)::int AS n FROM victims'), [{ n: 1 }]);
  });
  await t.test('many concurrent queries share the session', async () => {
    const sums = await result(`
      exports.handler = (p, z) => Promise.all(Array.from({ length: 25 }, (_, i) => z.db.queryOne('SELECT $1::int * 2 AS v', [i]).then((r) => r.v)))`);
    assert.deepEqual(sums, Array.from({ length: 25 }, (_, i) => i * 2));
  });
  await t.test('bad arguments are TypeErrors', async () => {
    const errors = await result(`
      exports.handler = async (p, z) => {
        const out = [];
        for (const args of [[''], [42], ['SELECT 1', 'not-an-array']]) {
          try { await z.db.query(...args); out.push('no error') } catch (e) { out.push(e.name) }
        }
        return out;
      }`);
    assert.deepEqual(errors, ['TypeError', 'TypeError', 'TypeError']);
  });
  await t.test('an ES module handler uses the database the same way', async () => {
    const row = await result(`export default async (p, z) => z.db.queryOne('SELECT current_user AS u, current_database() AS d')`);
    assert.deepEqual(row, { u: ROLE, d: DB });
  });
});

test('insert, select, update, remove', async (t) => {
  await t.test('insert returns the inserted row with its defaults', async () => {
    const row = await result(`exports.handler = (p, z) => z.db.insert('items', { name: 'apple', qty: 3, note: undefined })`);
    assert.equal(typeof row.id, 'number');
    assert.deepEqual({ ...row, id: 0 }, { id: 0, name: 'apple', qty: 3, note: null, created: '2024-05-06T07:08:09.123456Z' });
    assert.deepEqual(await query('SELECT name, qty FROM items WHERE id = $1', [row.id]), [{ name: 'apple', qty: 3 }]);
  });
  await t.test('insert of an empty object uses DEFAULT VALUES', async () => {
    const row = await result(`exports.handler = (p, z) => z.db.insert('app.things', {})`);
    assert.deepEqual(Object.keys(row).sort(), ['id', 'v']);
    assert.equal(row.v, null);
  });
  await t.test('select with and without a where condition', async () => {
    await query("INSERT INTO items (name, qty) VALUES ('pear', 5), ('plum', 9), ('kiwi', 5)");
    const [all, five, noneMatch, byObject, nullNote] = await result(`
      exports.handler = async (p, z) => [
        (await z.db.select('items')).map((r) => r.name).sort(),
        (await z.db.select('items', 'qty = $1 ORDER BY name', [5])).map((r) => r.name),
        await z.db.select('items', 'qty > $1', [1000]),
        (await z.db.select('items', { qty: 9 })).map((r) => r.name),
        (await z.db.select('items', { note: null, name: 'kiwi' })).map((r) => r.name),
      ]`);
    assert.deepEqual(all, ['apple', 'kiwi', 'pear', 'plum']);
    assert.deepEqual(five, ['kiwi', 'pear']);
    assert.deepEqual(noneMatch, []);
    assert.deepEqual(byObject, ['plum']);
    assert.deepEqual(nullNote, ['kiwi']);
  });
  await t.test('update binds the where params first and the new values after them', async () => {
    const rows = await result(`
      exports.handler = (p, z) => z.db.update('items', { qty: 50, note: 'restocked' }, 'qty = $1 AND name <> $2', [5, 'kiwi'])`);
    assert.deepEqual(
      rows.map((r) => [r.name, r.qty, r.note]),
      [['pear', 50, 'restocked']],
    );
    assert.deepEqual(await query("SELECT name, qty FROM items WHERE name IN ('kiwi', 'pear') ORDER BY name"), [
      { name: 'kiwi', qty: 5 },
      { name: 'pear', qty: 50 },
    ]);
  });
  await t.test('update with an object where, and with "true" for every row', async () => {
    const [one, all] = await result(`
      exports.handler = async (p, z) => [
        (await z.db.update('items', { note: 'kiwi!' }, { name: 'kiwi' })).map((r) => r.note),
        (await z.db.update('items', { qty: 1 }, 'true')).length,
      ]`);
    assert.deepEqual(one, ['kiwi!']);
    assert.equal(all, 4);
    assert.deepEqual(await query('SELECT DISTINCT qty FROM items'), [{ qty: 1 }]);
  });
  await t.test('a where that reaches past its params is refused before it can match the SET values', async () => {
    const before = await query('SELECT id, name, qty, note FROM items ORDER BY id');
    const err = await result(`
      exports.handler = async (p, z) => {
        try { await z.db.update('items', { qty: 1 }, 'id = $2', [1]); return 'updated' } catch (e) { return [e.name, e.message] }
      }`);
    assert.equal(err[0], 'TypeError');
    assert.match(err[1], /\$2 but only 1 param/);
    assert.deepEqual(await query('SELECT id, name, qty, note FROM items ORDER BY id'), before);
  });
  await t.test('placeholders inside quotes, comments and dollar quotes are not counted', async () => {
    const rows = await result(`
      exports.handler = (p, z) => z.db.update('items', { note: 'n' }, "name = $1 AND note IS DISTINCT FROM '$9' /* $8 */ AND $$ $7 $$ <> ''", ['apple'])`);
    assert.deepEqual(
      rows.map((r) => r.name),
      ['apple'],
    );
  });
  await t.test('update and remove refuse to run without a where', async () => {
    const errors = await result(`
      exports.handler = async (p, z) => {
        const out = [];
        for (const f of [() => z.db.update('items', { qty: 0 }), () => z.db.remove('items'), () => z.db.remove('items', {}), () => z.db.update('items', {}, 'true')]) {
          try { await f(); out.push('ran') } catch (e) { out.push(e.name + ': ' + e.message) }
        }
        return out;
      }`);
    assert.match(errors[0], /^TypeError: update needs a where/);
    assert.match(errors[1], /^TypeError: remove needs a where/);
    assert.match(errors[2], /^TypeError: remove needs a where/);
    assert.match(errors[3], /^TypeError: update needs at least one column/);
    assert.deepEqual(await query('SELECT count(*)::int AS n FROM items'), [{ n: 4 }]);
  });
  await t.test('remove returns the number of deleted rows', async () => {
    const [n, zero, byObject] = await result(`
      exports.handler = async (p, z) => [
        await z.db.remove('items', 'name = ANY($1)', [['pear', 'plum']]),
        await z.db.remove('items', 'name = $1', ['nothing-like-this']),
        await z.db.remove('items', { name: 'kiwi' }),
      ]`);
    assert.equal(n, 2);
    assert.equal(zero, 0);
    assert.equal(byObject, 1);
    assert.deepEqual(await query('SELECT name FROM items'), [{ name: 'apple' }]);
  });
  await t.test('schema-qualified tables: "schema.table" and [schema, table]', async () => {
    const [a, b] = await result(`
      exports.handler = async (p, z) => [
        await z.db.insert('app.things', { v: 'dot' }),
        await z.db.insert(['odd.schema', 'dotted.table'], { v: 'array' }),
      ]`);
    assert.equal(a.v, 'dot');
    assert.equal(b.v, 'array');
    assert.deepEqual(await query('SELECT v FROM "odd.schema"."dotted.table"'), [{ v: 'array' }]);
  });
});

test('identifiers are quoted, so names cannot inject SQL', async (t) => {
  await t.test('a table and a column with quotes and spaces work through every helper', async () => {
    const out = await result(`
      exports.handler = async (p, z) => {
        const t = 'we"ird tbl';
        const inserted = await z.db.insert(t, { 'weird"name': 1, select: 'kw' });
        const selected = await z.db.select(t, { 'weird"name': 1 });
        const updated = await z.db.update(t, { 'weird"name': 2 }, { select: 'kw' });
        const removed = await z.db.remove(t, { 'weird"name': 2 });
        return { inserted, selected, updated, removed };
      }`);
    assert.equal(out.inserted['weird"name'], 1);
    assert.equal(out.inserted.select, 'kw');
    assert.equal(out.selected.length, 1);
    assert.equal(out.updated[0]['weird"name'], 2);
    assert.equal(out.removed, 1);
  });
  await t.test('injection through a table name or a column name fails and harms nothing', async () => {
    const out = await result(`
      exports.handler = async (p, z) => {
        const attempts = [
          () => z.db.insert('victims"; DROP TABLE victims; --', { id: 1 }),
          () => z.db.select('victims; DROP TABLE victims'),
          () => z.db.insert('victims', { 'id") VALUES (1); DROP TABLE victims; --': 1 }),
          () => z.db.update('victims', { 'id" = 1; DROP TABLE victims; --': 1 }, 'true'),
          () => z.db.remove('app.victims"; DROP TABLE victims; --', 'true'),
        ];
        const out = [];
        for (const f of attempts) {
          try { await f(); out.push('ran') } catch (e) { out.push([e.name, e.code]) }
        }
        return out;
      }`);
    assert.deepEqual(out, [
      ['DatabaseError', '42P01'],
      ['DatabaseError', '42P01'],
      ['DatabaseError', '42703'],
      ['DatabaseError', '42703'],
      ['DatabaseError', '42P01'],
    ]);
    assert.deepEqual(await query('SELECT id FROM victims'), [{ id: 1 }]);
  });
  await t.test('names that cannot be identifiers are refused before reaching the server', async () => {
    const out = await result(`
      exports.handler = async (p, z) => {
        const out = [];
        for (const f of [
          () => z.db.insert('', { a: 1 }),
          () => z.db.insert('a.b.c', { a: 1 }),
          () => z.db.insert('x'.repeat(64), { a: 1 }),
          () => z.db.insert('victims', { ['bad\\u0000col']: 1 }),
          () => z.db.insert('victims', [1, 2]),
          () => z.db.insert('victims', new Date()),
          () => z.db.select(42),
          () => z.db.select('victims', 42),
        ]) {
          try { await f(); out.push('ran') } catch (e) { out.push(e.name) }
        }
        return out;
      }`);
    assert.deepEqual(out, Array(8).fill('TypeError'));
  });
});

test('type mapping makes rows JSON-friendly without losing precision', async (t) => {
  await t.test('scalars', async () => {
    const row = await result(`exports.handler = (p, z) => z.db.queryOne(\`SELECT
      '2024-01-02 03:04:05.123456+02'::timestamptz AS tstz,
      '2024-01-02 03:04:05'::timestamptz AS tstz_whole,
      '2024-01-02 03:04:05.5'::timestamp AS ts,
      '2024-02-29'::date AS d,
      '0044-03-15 BC'::date AS d_bc,
      '12000-01-01'::date AS d_far,
      'infinity'::timestamptz AS t_inf,
      '-infinity'::date AS d_ninf,
      9007199254740993::int8 AS big,
      (-9007199254740993)::int8 AS nbig,
      9007199254740991::int8 AS safe,
      42::int8 AS small,
      7::int4 AS i4,
      3::int2 AS i2,
      '12345678901234567890.123456789'::numeric AS num,
      '0.10'::numeric AS num_small,
      'NaN'::numeric AS num_nan,
      1.5::float8 AS f8,
      0.25::float4 AS f4,
      'NaN'::float8 AS f_nan,
      '-Infinity'::float8 AS f_ninf,
      '\\\\x00ff10'::bytea AS bin,
      ''::bytea AS bin_empty,
      '{"a": [1, 2, {"b": null}], "big": 1}'::jsonb AS jb,
      '[1, "x"]'::json AS js,
      '1 day 02:03:04'::interval AS iv,
      '1 year 2 mons'::interval AS iv2,
      true AS yes,
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id,
      'plain'::text AS txt,
      NULL::int8 AS nothing\`)`);
    assert.deepEqual(row, {
      tstz: '2024-01-02T01:04:05.123456Z',
      tstz_whole: '2024-01-02T03:04:05Z',
      ts: '2024-01-02T03:04:05.5',
      d: '2024-02-29',
      d_bc: '-0043-03-15',
      d_far: '+12000-01-01',
      t_inf: 'infinity',
      d_ninf: '-infinity',
      big: '9007199254740993',
      nbig: '-9007199254740993',
      safe: 9007199254740991,
      small: 42,
      i4: 7,
      i2: 3,
      num: '12345678901234567890.123456789',
      num_small: '0.10',
      num_nan: 'NaN',
      f8: 1.5,
      f4: 0.25,
      f_nan: 'NaN',
      f_ninf: '-Infinity',
      bin: Buffer.from([0x00, 0xff, 0x10]).toString('base64'),
      bin_empty: '',
      jb: { a: [1, 2, { b: null }], big: 1 },
      js: [1, 'x'],
      iv: 'P1DT2H3M4S',
      iv2: 'P1Y2M',
      yes: true,
      id: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      txt: 'plain',
      nothing: null,
    });
  });
  await t.test('arrays', async () => {
    const row = await result(`exports.handler = (p, z) => z.db.queryOne(\`SELECT
      ARRAY[1, 9007199254740993, NULL]::int8[] AS a_int8,
      '{{1,2},{3,4}}'::int8[] AS a_2d,
      ARRAY['1.10', '2']::numeric[] AS a_num,
      ARRAY['2024-01-02 03:04:05+00']::timestamptz[] AS a_tstz,
      ARRAY['2024-01-02']::date[] AS a_date,
      ARRAY['\\\\x01'::bytea, NULL] AS a_bin,
      ARRAY['{"k": 1}'::jsonb] AS a_jsonb,
      ARRAY[1.5, 'NaN']::float8[] AS a_f8,
      ARRAY['a,b', 'c"d']::text[] AS a_text\`)`);
    assert.deepEqual(row, {
      a_int8: [1, '9007199254740993', null],
      a_2d: [
        [1, 2],
        [3, 4],
      ],
      a_num: ['1.10', '2'],
      a_tstz: ['2024-01-02T03:04:05Z'],
      a_date: ['2024-01-02'],
      a_bin: ['AQ==', null],
      a_jsonb: [{ k: 1 }],
      a_f8: [1.5, 'NaN'],
      a_text: ['a,b', 'c"d'],
    });
  });
  await t.test('JavaScript values round-trip through insert', async () => {
    await query(`SET ROLE ${ROLE}`);
    await query(`CREATE TABLE typed (id serial PRIMARY KEY, big int8, bin bytea, doc jsonb, at timestamptz, n numeric, tags text[], flag bool)`);
    await query('RESET ROLE');
    const row = await result(`
      exports.handler = (p, z) => z.db.insert('typed', {
        big: 2n ** 60n,
        bin: Buffer.from('hello'),
        doc: { nested: { list: [1, 'two'] } },
        at: new Date(Date.UTC(2030, 11, 31, 23, 59, 58, 250)),
        n: '3.14159265358979323846264338327950288',
        tags: ['a', 'b"c'],
        flag: false,
      })`);
    assert.deepEqual({ ...row, id: 0 }, {
      id: 0,
      big: String(2n ** 60n),
      bin: Buffer.from('hello').toString('base64'),
      doc: { nested: { list: [1, 'two'] } },
      at: '2030-12-31T23:59:58.25Z',
      n: '3.14159265358979323846264338327950288',
      tags: ['a', 'b"c'],
      flag: false,
    });
    assert.deepEqual(await query('SELECT big::text, encode(bin, \'escape\') AS bin, doc->\'nested\'->\'list\'->>1 AS two FROM typed'), [
      { big: '1152921504606846976', bin: 'hello', two: 'two' },
    ]);
  });
});

test('database errors are catchable DatabaseErrors with the SQLSTATE', async (t) => {
  await t.test('caught inside the handler', async () => {
    const out = await result(`
      exports.handler = async (p, z) => {
        const out = [];
        const tries = [
          () => z.db.query('SELECT * FROM no_such_table'),
          () => z.db.insert('events', { label: null }),
          () => z.db.query("SELECT 'abc'::int"),
          async () => { await z.db.insert('items', { name: 'dup' }); await z.db.insert('items', { name: 'dup' }) },
          () => z.db.query('SELEC 1'),
        ];
        for (const f of tries) {
          try { await f(); out.push('no error') } catch (e) {
            out.push({ name: e.name, code: e.code, message: e.message, isError: e instanceof Error, constraint: e.constraint || null, stack: e.stack });
          }
        }
        return out;
      }`);
    assert.deepEqual(
      out.map((e) => [e.name, e.code, e.isError]),
      [
        ['DatabaseError', '42P01', true],
        ['DatabaseError', '23502', true],
        ['DatabaseError', '22P02', true],
        ['DatabaseError', '23505', true],
        ['DatabaseError', '42601', true],
      ],
    );
    assert.equal(out[0].message, 'relation "no_such_table" does not exist');
    assert.match(out[2].message, /invalid input syntax for type integer: "abc"/);
    assert.equal(out[3].constraint, 'items_name_key');
    for (const e of out) assertUserStack(e.stack);
  });
  await t.test('uncaught: the invocation fails with DatabaseError and a stack in the user code', async () => {
    const error = await failure("exports.handler = async (p, z) => {\n  await z.db.query('SELECT 1');\n  await z.db.query('SELECT * FROM missing_table');\n}");
    assert.equal(error.name, 'DatabaseError');
    assert.equal(error.message, 'relation "missing_table" does not exist');
    assert.match(error.stack, /function\.cjs:3:/);
    assertUserStack(error.stack);
  });
  await t.test('a DSN for a database the role may not connect to', async () => {
    const forbidden = cluster.dsn(ROLE, PASSWORD, FORBIDDEN_DB);
    const error = await failure("exports.handler = (p, z) => z.db.query('SELECT 1')", { dsn: forbidden });
    assert.equal(error.name, 'DatabaseError');
    assert.equal(error.message, `permission denied for database "${FORBIDDEN_DB}"`);
    assertUserStack(error.stack);
    const caught = await result("exports.handler = async (p, z) => { try { await z.db.query('SELECT 1') } catch (e) { return [e.name, e.code] } }", { dsn: forbidden });
    assert.deepEqual(caught, ['DatabaseError', '42501']);
  });
  await t.test('a wrong password', async () => {
    const caught = await result("exports.handler = async (p, z) => { try { await z.db.query('SELECT 1') } catch (e) { return [e.name, e.code, e.message] } }", {
      dsn: cluster.dsn(ROLE, 'wrong', DB),
    });
    assert.deepEqual(caught, ['DatabaseError', '28P01', `password authentication failed for user "${ROLE}"`]);
  });
  await t.test('no server behind the socket directory', async () => {
    const caught = await result("exports.handler = async (p, z) => { try { await z.db.query('SELECT 1') } catch (e) { return [e.name, e.code, e.message] } }", {
      dsn: `postgresql://${ROLE}:x@/${encodeURIComponent(DB)}?host=${cluster.dir}`,
    });
    assert.equal(caught[0], 'DatabaseError');
    assert.equal(caught[1], '08001');
    assert.match(caught[2], /could not connect/);
    assert.ok(!caught[2].includes('x@'), 'the DSN must not leak into messages');
  });
  await t.test('a query cannot outlive the invocation deadline', async () => {
    const started = Date.now();
    const caught = await result("exports.handler = async (p, z) => { try { await z.db.query('SELECT pg_sleep(30)') } catch (e) { return [e.name, e.code] } }", {
      deadline_ms: Date.now() + 2000,
    });
    assert.deepEqual(caught, ['DatabaseError', '57014']);
    assert.ok(Date.now() - started < 10000);
  });
});

test('transactions', async (t) => {
  await query('TRUNCATE events');
  await t.test('commit when the callback returns', async () => {
    const out = await result(`
      exports.handler = (p, z) => z.db.transaction(async (tx) => {
        await tx.insert('events', { label: 'c1' });
        await tx.query('INSERT INTO events (label) VALUES ($1)', ['c2']);
        const seen = (await tx.select('events', "label LIKE 'c%'")).length;
        return { seen, methods: Object.keys(tx).sort() };
      })`);
    assert.deepEqual(out, { seen: 2, methods: ['insert', 'query', 'queryOne', 'remove', 'select', 'transaction', 'update'] });
    assert.deepEqual(await query("SELECT label FROM events WHERE label LIKE 'c%' ORDER BY id"), [{ label: 'c1' }, { label: 'c2' }]);
  });
  await t.test('roll back when the callback throws, and rethrow', async () => {
    const error = await failure(`
      class Abort extends Error {}
      exports.handler = (p, z) => z.db.transaction(async (tx) => {
        await tx.insert('events', { label: 'r1' });
        await tx.update('events', { label: 'changed' }, { label: 'c1' });
        throw new Abort('stop');
      })`);
    assert.equal(error.name, 'Abort');
    assert.equal(error.message, 'stop');
    assert.deepEqual(await query("SELECT label FROM events ORDER BY id"), [{ label: 'c1' }, { label: 'c2' }]);
  });
  await t.test('zmesh.db inside the callback joins the transaction', async () => {
    await failure(`
      exports.handler = (p, z) => z.db.transaction(async () => {
        await z.db.insert('events', { label: 'joined' });
        throw new Error('undo');
      })`);
    assert.deepEqual(await query("SELECT count(*)::int AS n FROM events WHERE label = 'joined'"), [{ n: 0 }]);
  });
  await t.test('statements from outside the callback wait for the transaction to end', async () => {
    const out = await result(`
      exports.handler = async (p, z) => {
        const order = [];
        let release;
        const gate = new Promise((r) => { release = r; });
        const tx = z.db.transaction(async (t) => {
          await t.insert('events', { label: 'inside' });
          order.push('inside');
          await gate;
          throw new Error('roll back');
        }).catch((e) => order.push('rolled back: ' + e.message));
        const outside = z.db.insert('events', { label: 'outside' }).then(() => order.push('outside'));
        await new Promise((r) => setTimeout(r, 150));
        order.push('release');
        release();
        await Promise.all([tx, outside]);
        return order;
      }`);
    assert.deepEqual(out, ['inside', 'release', 'rolled back: roll back', 'outside']);
    assert.deepEqual(await query("SELECT label FROM events WHERE label IN ('inside', 'outside')"), [{ label: 'outside' }]);
  });
  await t.test('nested transactions are savepoints', async () => {
    await result(`
      exports.handler = (p, z) => z.db.transaction(async (tx) => {
        await tx.insert('events', { label: 'outer' });
        await tx.transaction(async (inner) => {
          await inner.insert('events', { label: 'inner-undone' });
          throw new Error('inner fails');
        }).catch(() => {});
        await tx.transaction((inner) => inner.insert('events', { label: 'inner-kept' }));
      })`);
    assert.deepEqual(await query("SELECT label FROM events WHERE label LIKE 'inner%' OR label = 'outer' ORDER BY id"), [
      { label: 'outer' },
      { label: 'inner-kept' },
    ]);
  });
  await t.test('a transaction aborted by a swallowed error is not reported as committed', async () => {
    const out = await result(`
      exports.handler = async (p, z) => {
        try {
          await z.db.transaction(async (tx) => {
            await tx.insert('events', { label: 'lost' });
            try { await tx.query('SELECT * FROM no_such_table') } catch {}
            return 'done';
          });
          return 'committed';
        } catch (e) { return [e.name, e.code] }
      }`);
    assert.deepEqual(out, ['DatabaseError', '25P02']);
    assert.deepEqual(await query("SELECT count(*)::int AS n FROM events WHERE label = 'lost'"), [{ n: 0 }]);
  });
  await t.test('a finished transaction handle cannot be used', async () => {
    const out = await result(`
      exports.handler = async (p, z) => {
        let kept;
        await z.db.transaction(async (tx) => { kept = tx; });
        try { await kept.query('SELECT 1'); return 'ran' } catch (e) { return [e.name, e.code] }
      }`);
    assert.deepEqual(out, ['DatabaseError', '25000']);
  });
  await t.test('transaction needs a function', async () => {
    const out = await result(`exports.handler = async (p, z) => { try { await z.db.transaction(42) } catch (e) { return e.name } }`);
    assert.equal(out, 'TypeError');
  });
});

test('the connection is lazy: a function that never uses the database never connects', async () => {
  const code = `
    exports.handler = async (p, z) => {
      const pgLoaded = () => Object.keys(require.cache).some((f) => /[\\\\/]node_modules[\\\\/]pg[\\\\/]/.test(f));
      const before = pgLoaded();
      if (p.use) await z.db.query('SELECT 1');
      return { before, after: pgLoaded() };
    }`;
  const start = connectionsLogged();
  const idle = await result(code, { payload: { use: false } });
  assert.deepEqual(idle, { before: false, after: false });
  // The server logs a connection while it is being authorised, before the
  // client can finish, so a finished process has left its trace already.
  assert.equal(connectionsLogged(), start, 'an unused database was connected to');

  const used = await result(code, { payload: { use: true }, invocation_id: 'inv-lazy-check' });
  assert.deepEqual(used, { before: false, after: true });
  assert.equal(connectionsLogged(), start + 1, 'the counting method must see a real connection');
  assert.match(fs.readFileSync(cluster.serverLog, 'utf8'), /application_name=zmesh inv-lazy-check/);
});

test('the session is closed when the invocation ends', async () => {
  const r = await invoke(`exports.handler = async (p, z) => { await z.db.query('SELECT 1'); setInterval(() => {}, 1000); return 'done' }`, {
    invocation_id: 'inv-close-check',
  });
  assert.deepEqual(r.response, { ok: true, result: 'done' });
  assert.ok(r.ms < 5000, `exit took ${r.ms} ms`);
  await waitFor('the backend to go away', async () => {
    const rows = await query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'zmesh inv-close-check'");
    return rows[0].n === 0;
  });
});

test('loading the driver leaves the globals as Node.js made them', async () => {
  const got = await result(
    "exports.handler = async (p, z) => { const before = typeof navigator; const one = (await z.db.queryOne('select 1 as one')).one; return [before, typeof navigator, one, typeof Response]; }",
  );
  assert.deepEqual(got, ['undefined', 'undefined', 1, 'function']);
  // A navigator of the function's own is left alone.
  const own = await result(
    "globalThis.navigator = { userAgent: 'mine' };\nexports.handler = async (p, z) => { await z.db.query('select 1'); return navigator.userAgent; }",
  );
  assert.equal(own, 'mine');
});
