'use strict';
// Statement builders for the table helpers. Table and column names are
// quoted as identifiers; values only ever travel as bound parameters.
// A where clause is either the caller's own SQL condition with $1..$n
// placeholders (numbered against its own params), or an object of
// column: value equalities (null means IS NULL) joined with AND.

const { escapeIdentifier } = require('./pg.js');

// Longer names would be truncated by the server (NAMEDATALEN - 1), so two
// different keys could silently hit one column.
const MAX_IDENT_BYTES = 63;
// The protocol counts bind parameters in 16 bits.
const MAX_PARAMS = 65535;
const MAX_COLUMNS = 1600;

function preview(text) {
  return text.length > 64 ? JSON.stringify(text.slice(0, 64)) + '...' : JSON.stringify(text);
}

function isPlainObject(value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function ident(name, what) {
  if (typeof name !== 'string' || name === '') throw new TypeError(`${what} must be a non-empty string`);
  if (name.includes('\0')) throw new TypeError(`${what} ${preview(name)} contains a NUL character`);
  if (Buffer.byteLength(name, 'utf8') > MAX_IDENT_BYTES) {
    throw new TypeError(`${what} ${preview(name)} is longer than ${MAX_IDENT_BYTES} bytes`);
  }
  return escapeIdentifier(name);
}

// "table" or "schema.table"; [schema, table] names parts that contain dots.
function tableName(table) {
  let parts;
  if (Array.isArray(table)) {
    parts = table;
  } else if (typeof table === 'string') {
    parts = table.split('.');
  } else {
    throw new TypeError('table must be a string ("table" or "schema.table") or an array [schema, table]');
  }
  if (parts.length < 1 || parts.length > 2) {
    throw new TypeError(`table ${preview(String(table))} must be "table" or "schema.table"; use [schema, table] for names that contain dots`);
  }
  return parts.map((part) => ident(part, 'table name')).join('.');
}

function checkParams(params) {
  if (params === undefined || params === null) return [];
  if (!Array.isArray(params)) throw new TypeError('params must be an array');
  if (params.length > MAX_PARAMS) throw new TypeError(`at most ${MAX_PARAMS} params are allowed`);
  return params.slice();
}

function isIdentChar(ch) {
  return ch !== undefined && /[\p{L}\p{N}_$]/u.test(ch);
}

// The highest $n placeholder in an SQL fragment, skipping string constants,
// quoted identifiers, dollar-quoted bodies and comments. Used to refuse a
// where clause that reaches past its own params, which would otherwise bind
// to the SET values of an update and touch the wrong rows.
function maxPlaceholder(sql) {
  let max = 0;
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const ch = sql[i];
    if (ch === "'") {
      const escapes = (sql[i - 1] === 'E' || sql[i - 1] === 'e') && !isIdentChar(sql[i - 2]);
      i++;
      while (i < n) {
        if (escapes && sql[i] === '\\') {
          i += 2;
        } else if (sql[i] === "'") {
          if (sql[i + 1] === "'") i += 2;
          else break;
        } else {
          i++;
        }
      }
      i++;
    } else if (ch === '"') {
      const end = sql.indexOf('"', i + 1);
      i = end < 0 ? n : end + 1;
    } else if (ch === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? n : end + 1;
    } else if (ch === '/' && sql[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else {
          i++;
        }
      }
    } else if (ch === '$' && !isIdentChar(sql[i - 1])) {
      const num = /^\$(\d+)/.exec(sql.slice(i, i + 12));
      if (num) {
        max = Math.max(max, Number(num[1]));
        i += num[0].length;
        continue;
      }
      const tag = /^\$(?:[\p{L}_][\p{L}\p{N}_]*)?\$/u.exec(sql.slice(i, i + 128));
      if (tag) {
        const end = sql.indexOf(tag[0], i + tag[0].length);
        i = end < 0 ? n : end + tag[0].length;
      } else {
        i++;
      }
    } else {
      i++;
    }
  }
  return max;
}

function whereClause(where, params, verb, required) {
  if (where === undefined || where === null || where === '') {
    if (required) throw new TypeError(`${verb} needs a where condition; pass "true" to ${verb} every row`);
    if (checkParams(params).length) throw new TypeError('params were given without a where condition');
    return { sql: '', values: [] };
  }
  if (typeof where === 'string') {
    const values = checkParams(params);
    const highest = maxPlaceholder(where);
    if (highest > values.length) {
      throw new TypeError(`the where condition uses $${highest} but only ${values.length} param(s) were given`);
    }
    return { sql: ` WHERE ${where}`, values };
  }
  if (isPlainObject(where)) {
    if (params !== undefined && params !== null) {
      throw new TypeError('params belong to a where string; an object where carries its own values');
    }
    const conditions = [];
    const values = [];
    for (const key of Object.keys(where)) {
      const value = where[key];
      if (value === undefined) continue;
      const column = ident(key, 'column name');
      if (value === null) {
        conditions.push(`${column} IS NULL`);
      } else {
        values.push(value);
        conditions.push(`${column} = $${values.length}`);
      }
    }
    if (conditions.length === 0) {
      if (required) throw new TypeError(`${verb} needs a where condition; pass "true" to ${verb} every row`);
      return { sql: '', values: [] };
    }
    return { sql: ` WHERE ${conditions.join(' AND ')}`, values };
  }
  throw new TypeError('where must be an SQL condition string or an object of column values');
}

// Keys whose value is undefined are left out, so the column's default applies.
function columns(data, what) {
  if (!isPlainObject(data)) throw new TypeError(`${what} must be a plain object of column: value pairs`);
  const names = [];
  const values = [];
  for (const key of Object.keys(data)) {
    const value = data[key];
    if (value === undefined) continue;
    names.push(ident(key, 'column name'));
    values.push(value);
  }
  if (names.length > MAX_COLUMNS) throw new TypeError(`at most ${MAX_COLUMNS} columns are allowed`);
  return { names, values };
}

function insertSql(table, data) {
  const target = tableName(table);
  const { names, values } = columns(data, 'insert data');
  if (names.length === 0) return { text: `INSERT INTO ${target} DEFAULT VALUES RETURNING *`, values };
  const slots = values.map((_, i) => `$${i + 1}`);
  return {
    text: `INSERT INTO ${target} (${names.join(', ')}) VALUES (${slots.join(', ')}) RETURNING *`,
    values,
  };
}

function selectSql(table, where, params) {
  const target = tableName(table);
  const w = whereClause(where, params, 'select', false);
  return { text: `SELECT * FROM ${target}${w.sql}`, values: w.values };
}

// The where keeps its own numbering ($1..$m for its m params); the SET values
// are bound after them as $m+1..$m+k, so the caller's SQL is never rewritten.
function updateSql(table, data, where, params) {
  const target = tableName(table);
  const { names, values } = columns(data, 'update data');
  if (names.length === 0) throw new TypeError('update needs at least one column to set');
  const w = whereClause(where, params, 'update', true);
  const offset = w.values.length;
  if (offset + values.length > MAX_PARAMS) throw new TypeError(`at most ${MAX_PARAMS} params are allowed`);
  const set = names.map((name, i) => `${name} = $${offset + i + 1}`);
  return {
    text: `UPDATE ${target} SET ${set.join(', ')}${w.sql} RETURNING *`,
    values: w.values.concat(values),
  };
}

function removeSql(table, where, params) {
  const target = tableName(table);
  const w = whereClause(where, params, 'remove', true);
  return { text: `DELETE FROM ${target}${w.sql}`, values: w.values };
}

module.exports = {
  ident,
  tableName,
  checkParams,
  maxPlaceholder,
  insertSql,
  selectSql,
  updateSql,
  removeSql,
  MAX_PARAMS,
};
