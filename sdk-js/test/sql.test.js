'use strict';
// The statement builders and type parsers on their own, without a server:
// the exact SQL text and parameter order each helper produces.

const test = require('node:test');
const assert = require('node:assert/strict');
const sql = require('../lib/sql.js');
const types = require('../lib/types.js');

test('identifiers are double-quoted with embedded quotes doubled', () => {
  assert.equal(sql.ident('plain', 'column name'), '"plain"');
  assert.equal(sql.ident('weird"name', 'column name'), '"weird""name"');
  assert.equal(sql.ident('x"; DROP TABLE t; --', 'column name'), '"x""; DROP TABLE t; --"');
  assert.equal(sql.ident('ünïcode', 'column name'), '"ünïcode"');
  assert.throws(() => sql.ident('', 'column name'), TypeError);
  assert.throws(() => sql.ident(7, 'column name'), TypeError);
  assert.throws(() => sql.ident('a\0b', 'column name'), /NUL/);
  assert.equal(sql.ident('é'.repeat(31), 'column name'), `"${'é'.repeat(31)}"`);
  assert.throws(() => sql.ident('é'.repeat(32), 'column name'), /longer than 63 bytes/);
});

test('table names: plain, schema-qualified, or explicit parts', () => {
  assert.equal(sql.tableName('items'), '"items"');
  assert.equal(sql.tableName('app.items'), '"app"."items"');
  assert.equal(sql.tableName(['odd.schema', 'dotted.table']), '"odd.schema"."dotted.table"');
  assert.equal(sql.tableName(['only']), '"only"');
  assert.equal(sql.tableName('t"; DROP TABLE x; --'), '"t""; DROP TABLE x; --"');
  assert.throws(() => sql.tableName('a.b.c'), /schema\.table/);
  assert.throws(() => sql.tableName('a.'), TypeError);
  assert.throws(() => sql.tableName([]), TypeError);
  assert.throws(() => sql.tableName(['a', 'b', 'c']), TypeError);
  assert.throws(() => sql.tableName(null), TypeError);
});

test('insert', () => {
  assert.deepEqual(sql.insertSql('logs', { 'weird"name': 1, msg: 'hi', skipped: undefined, none: null }), {
    text: 'INSERT INTO "logs" ("weird""name", "msg", "none") VALUES ($1, $2, $3) RETURNING *',
    values: [1, 'hi', null],
  });
  assert.deepEqual(sql.insertSql('logs', {}), { text: 'INSERT INTO "logs" DEFAULT VALUES RETURNING *', values: [] });
  for (const bad of [null, [], 'x', new Date(), new Map(), 5]) assert.throws(() => sql.insertSql('logs', bad), TypeError);
});

test('select', () => {
  assert.deepEqual(sql.selectSql('items'), { text: 'SELECT * FROM "items"', values: [] });
  assert.deepEqual(sql.selectSql('items', 'qty > $1 AND name = $2', [3, 'a']), {
    text: 'SELECT * FROM "items" WHERE qty > $1 AND name = $2',
    values: [3, 'a'],
  });
  assert.deepEqual(sql.selectSql('items', { name: 'a', note: null, ignored: undefined, 'we"ird': 2 }), {
    text: 'SELECT * FROM "items" WHERE "name" = $1 AND "note" IS NULL AND "we""ird" = $2',
    values: ['a', 2],
  });
  assert.deepEqual(sql.selectSql('items', {}), { text: 'SELECT * FROM "items"', values: [] });
  assert.throws(() => sql.selectSql('items', 'id = $2', [1]), /\$2 but only 1/);
  assert.throws(() => sql.selectSql('items', { a: 1 }, [1]), /object where/);
  assert.throws(() => sql.selectSql('items', undefined, [1]), /without a where/);
  assert.throws(() => sql.selectSql('items', 42), TypeError);
  assert.throws(() => sql.selectSql('items', 'id = $1', 'not an array'), /params must be an array/);
});

test('update numbers the where params first and the SET values after them', () => {
  assert.deepEqual(sql.updateSql('items', { qty: 5, note: 'n' }, 'id = $1 AND owner = $2', [10, 'bob']), {
    text: 'UPDATE "items" SET "qty" = $3, "note" = $4 WHERE id = $1 AND owner = $2 RETURNING *',
    values: [10, 'bob', 5, 'n'],
  });
  assert.deepEqual(sql.updateSql('items', { qty: 0 }, 'true'), {
    text: 'UPDATE "items" SET "qty" = $1 WHERE true RETURNING *',
    values: [0],
  });
  assert.deepEqual(sql.updateSql('items', { qty: 1 }, { id: 7, gone: null }), {
    text: 'UPDATE "items" SET "qty" = $2 WHERE "id" = $1 AND "gone" IS NULL RETURNING *',
    values: [7, 1],
  });
  assert.throws(() => sql.updateSql('items', { qty: 1 }), /needs a where/);
  assert.throws(() => sql.updateSql('items', { qty: 1 }, {}), /needs a where/);
  assert.throws(() => sql.updateSql('items', {}, 'true'), /at least one column/);
  assert.throws(() => sql.updateSql('items', { a: 1 }, 'id = $2', [1]), /\$2 but only 1/);
});

test('remove', () => {
  assert.deepEqual(sql.removeSql('items', 'id = ANY($1)', [[1, 2]]), { text: 'DELETE FROM "items" WHERE id = ANY($1)', values: [[1, 2]] });
  assert.deepEqual(sql.removeSql('items', { id: 3 }), { text: 'DELETE FROM "items" WHERE "id" = $1', values: [3] });
  assert.throws(() => sql.removeSql('items'), /needs a where/);
  assert.throws(() => sql.removeSql('items', ''), /needs a where/);
});

test('placeholder scanning skips quotes, identifiers, comments and dollar quotes', () => {
  const cases = [
    ['id = $1', 1],
    ['a = $2 OR b = $10', 10],
    ["note = '$9'", 0],
    ["note = 'it''s $9'", 0],
    ["note = E'\\' $9'", 0],
    ['"$9" = 1', 0],
    ['"a""$9" = 1', 0],
    ['x = 1 -- $9\nAND y = $2', 2],
    ['x = 1 /* $9 /* nested $8 */ still $7 */ AND y = $1', 1],
    ['x = $$ $9 $$', 0],
    ['x = $tag$ $9 $x$ $tag$ AND y = $3', 3],
    ['col$1 = 2', 0],
    ["'unterminated $5", 0],
  ];
  for (const [text, expected] of cases) assert.equal(sql.maxPlaceholder(text), expected, text);
});

test('parameter count is bounded by the protocol', () => {
  assert.throws(() => sql.checkParams(new Array(sql.MAX_PARAMS + 1).fill(0)), /at most/);
  assert.equal(sql.checkParams(new Array(3).fill(0)).length, 3);
});

test('type parsers', () => {
  assert.equal(types.int8('9007199254740991'), 9007199254740991);
  assert.equal(types.int8('-9007199254740991'), -9007199254740991);
  assert.equal(types.int8('9007199254740992'), '9007199254740992');
  assert.equal(types.int8('-9223372036854775808'), '-9223372036854775808');
  assert.equal(types.float('0.5'), 0.5);
  assert.equal(types.float('Infinity'), 'Infinity');
  assert.equal(types.isoDateTime('2024-01-02 03:04:05.123456+00'), '2024-01-02T03:04:05.123456Z');
  assert.equal(types.isoDateTime('2024-01-02 03:04:05+05:30'), '2024-01-02T03:04:05+05:30');
  assert.equal(types.isoDateTime('2024-01-02 03:04:05-08'), '2024-01-02T03:04:05-08:00');
  assert.equal(types.isoDateTime('2024-01-02 03:04:05'), '2024-01-02T03:04:05');
  assert.equal(types.isoDateTime('0001-01-01 BC'), '0000-01-01');
  assert.equal(types.isoDateTime('0002-06-01 10:00:00+00 BC'), '-0001-06-01T10:00:00Z');
  assert.equal(types.isoDateTime('infinity'), 'infinity');
  assert.equal(types.bytea('\\x'), '');
  assert.equal(types.bytea('\\xdeadbeef'), Buffer.from('deadbeef', 'hex').toString('base64'));
  const parse = (oid, text) => types.types.getTypeParser(oid, 'text')(text);
  assert.deepEqual(parse(1016, '{1,NULL,9007199254740993}'), [1, null, '9007199254740993']);
  assert.deepEqual(parse(1231, '{1.50,NaN}'), ['1.50', 'NaN']);
  assert.equal(parse(1700, '1.000000000000000000001'), '1.000000000000000000001');
  assert.equal(parse(3802, '{"a":1}').a, 1);
  assert.equal(parse(25, 'text'), 'text');
});
