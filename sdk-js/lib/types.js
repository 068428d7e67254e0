'use strict';
// Text-format parsers that make every row JSON-friendly without silent loss.
// The session starts with DateStyle=ISO, TimeZone=UTC, IntervalStyle=iso_8601
// and bytea_output=hex (see db.js), which is the input these parsers expect;
// anything they do not recognise is passed through as the server's text.
//
//   int2, int4, oid        number
//   int8                   number when a safe integer (|n| <= 2^53-1), else string
//   numeric                string, always (exact; "NaN" included)
//   float4, float8         number; NaN and +-Infinity as the strings PostgreSQL prints
//   date                   "YYYY-MM-DD"
//   timestamp              "YYYY-MM-DDTHH:MM:SS[.ffffff]" (no zone: none is known)
//   timestamptz            "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" (or the session's offset)
//   interval               ISO-8601 duration as the server prints it, e.g. "P1Y2M3DT4H5M6S"
//   bytea                  base64 string
//   json, jsonb            parsed value
//   arrays of the above    arrays of the mapped elements (NULL stays null)
// Dates BC use astronomical years (1 BC = "0000", 2 BC = "-0001"); years past
// 9999 get a leading "+"; "infinity" and "-infinity" stay as they are.

const pgTypes = require('./pg.js').types;

function arrayOf(elementParser) {
  return (text) => pgTypes.arrayParser.create(text, elementParser).parse();
}

function int8(text) {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : text;
}

function float(text) {
  const n = Number(text);
  return Number.isFinite(n) ? n : text;
}

function exact(text) {
  return text;
}

const DATE_TIME = /^(\d{4,})-(\d\d)-(\d\d)(?: (\d\d:\d\d:\d\d(?:\.\d+)?)([+-]\d\d(?::\d\d){0,2})?)?( BC)?$/;

function isoYear(digits, bc) {
  let year = Number(digits);
  if (bc) year = 1 - year;
  if (year < 0) return '-' + String(-year).padStart(4, '0');
  if (year > 9999) return '+' + String(year);
  return String(year).padStart(4, '0');
}

function isoOffset(offset) {
  if (offset === '+00' || offset === '-00' || offset === '+00:00' || offset === '-00:00') return 'Z';
  return offset.length === 3 ? offset + ':00' : offset;
}

// One parser for date, timestamp and timestamptz: they differ only in which
// optional parts the server prints.
function isoDateTime(text) {
  const m = DATE_TIME.exec(text);
  if (!m) return text;
  const [, year, month, day, time, offset, bc] = m;
  let out = `${isoYear(year, bc)}-${month}-${day}`;
  if (time !== undefined) out += 'T' + time;
  if (offset !== undefined) out += isoOffset(offset);
  return out;
}

function bytea(text) {
  return pgTypes.getTypeParser(17, 'text')(text).toString('base64');
}

const PARSERS = new Map([
  [20, int8],
  [1016, arrayOf(int8)],
  [1700, exact],
  [1231, arrayOf(exact)],
  [700, float],
  [701, float],
  [1021, arrayOf(float)],
  [1022, arrayOf(float)],
  [1082, isoDateTime],
  [1114, isoDateTime],
  [1184, isoDateTime],
  [1182, arrayOf(isoDateTime)],
  [1115, arrayOf(isoDateTime)],
  [1185, arrayOf(isoDateTime)],
  [1186, exact],
  [1187, arrayOf(exact)],
  [17, bytea],
  [1001, arrayOf(bytea)],
]);

// The shape pg.Client accepts as its `types` option.
const types = Object.freeze({
  getTypeParser(oid, format) {
    if (format === undefined || format === 'text') {
      const parser = PARSERS.get(oid);
      if (parser) return parser;
    }
    return pgTypes.getTypeParser(oid, format);
  },
});

module.exports = { types, int8, float, isoDateTime, bytea };
