"""PostgreSQL values as a handler receives them, and as they reach the JSON result."""

import base64
import json

import pytest

from zmesh import _pgtypes


@pytest.mark.parametrize("text, expected", [
    ("2024-05-01 10:00:00", "2024-05-01T10:00:00"),
    ("2024-05-01 10:00:00.5", "2024-05-01T10:00:00.5"),
    ("2024-05-01 10:00:00.123456+00", "2024-05-01T10:00:00.123456+00:00"),
    ("2024-05-01 10:00:00-03", "2024-05-01T10:00:00-03:00"),
    ("2024-05-01 10:00:00+05:30", "2024-05-01T10:00:00+05:30"),
    ("2024-05-01", "2024-05-01"),
    ("12345-01-01 00:00:00+00", "12345-01-01T00:00:00+00:00"),
    ("0044-03-15 10:00:00+00 BC", "-0043-03-15T10:00:00+00:00"),
    ("0001-01-01 BC", "0000-01-01"),
    ("infinity", "infinity"),
    ("-infinity", "-infinity"),
    (None, None),
])
def test_iso_datetime(text, expected):
    assert _pgtypes._iso_datetime(text, None) == expected


@pytest.mark.parametrize("text, expected", [
    ("10:00:00+02", "10:00:00+02:00"),
    ("10:00:00.25-03:30", "10:00:00.25-03:30"),
    (None, None),
])
def test_iso_timetz(text, expected):
    assert _pgtypes._iso_timetz(text, None) == expected


def test_float_keeps_non_finite_as_text():
    assert _pgtypes._float("1.5", None) == 1.5
    assert [_pgtypes._float(t, None) for t in ("NaN", "Infinity", "-Infinity")] == ["NaN", "Infinity", "-Infinity"]


def test_bytea_hex_to_base64():
    assert _pgtypes._bytea("\\x00ff10", None) == base64.b64encode(b"\x00\xff\x10").decode()
    assert _pgtypes._bytea("\\x", None) == ""


ALL_TYPES = """
SELECT
  TIMESTAMP '2024-05-01 10:00:00.25'                AS ts,
  TIMESTAMPTZ '2024-05-01 12:00:00+02'              AS tstz,
  DATE '2024-02-29'                                 AS d,
  TIME '23:59:59.5'                                 AS t,
  TIMETZ '10:00:00+02'                              AS ttz,
  INTERVAL '1 day 2 hours 3.5 seconds'              AS iv,
  DATE '0044-03-15 BC'                              AS bc,
  'infinity'::timestamptz                           AS inf,
  12345678901234567890.000000000123::numeric        AS num,
  'NaN'::numeric                                    AS num_nan,
  9223372036854775807::int8                         AS i8max,
  (-9223372036854775808)::int8                      AS i8min,
  32767::int2                                       AS i2,
  2147483647::int4                                  AS i4,
  0.1::float8                                       AS f8,
  1.5::float4                                       AS f4,
  'NaN'::float8                                     AS f8_nan,
  '-Infinity'::float8                               AS f8_ninf,
  '\\x00ff7f'::bytea                                AS bin,
  ''::bytea                                         AS bin_empty,
  '{"a": [1, 2.5, null], "b": {"c": "d"}}'::json    AS js,
  '{"big": 12345678901234567890}'::jsonb            AS jsb,
  '[1, "x"]'::jsonb                                 AS jsb_array,
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid      AS id,
  true                                              AS yes,
  'text ''quoted'' ✓'::text                         AS txt,
  NULL::int                                         AS nothing,
  int4range(1, 10)                                  AS rng,
  '12.50'::money                                    AS cash,
  '192.168.0.1/24'::inet                            AS ip,
  ARRAY[1, 2, NULL]::int8[]                         AS i8s,
  ARRAY[1.10, 2.200]::numeric[]                     AS nums,
  ARRAY[TIMESTAMPTZ '2024-01-01 00:00:00+00']       AS tstzs,
  ARRAY['\\x01'::bytea, '\\x02'::bytea]             AS bins,
  ARRAY['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid] AS ids,
  ARRAY['{"k": 1}'::jsonb]                          AS jsbs,
  ARRAY['NaN'::float8, 2]                           AS f8s,
  ARRAY[DATE '2024-01-02']                          AS ds,
  ARRAY[INTERVAL '1 hour']                          AS ivs
"""

EXPECTED = {
    "ts": "2024-05-01T10:00:00.25",
    "tstz": "2024-05-01T10:00:00+00:00",
    "d": "2024-02-29",
    "t": "23:59:59.5",
    "ttz": "10:00:00+02:00",
    "iv": "P1DT2H3.5S",
    "bc": "-0043-03-15",
    "inf": "infinity",
    "num": "12345678901234567890.000000000123",
    "num_nan": "NaN",
    "i8max": 9223372036854775807,
    "i8min": -9223372036854775808,
    "i2": 32767,
    "i4": 2147483647,
    "f8": 0.1,
    "f4": 1.5,
    "f8_nan": "NaN",
    "f8_ninf": "-Infinity",
    "bin": base64.b64encode(b"\x00\xff\x7f").decode(),
    "bin_empty": "",
    "js": {"a": [1, 2.5, None], "b": {"c": "d"}},
    "jsb": {"big": 12345678901234567890},
    "jsb_array": [1, "x"],
    "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "yes": True,
    "txt": "text 'quoted' ✓",
    "nothing": None,
    "rng": "[1,10)",
    "cash": "$12.50",
    "ip": "192.168.0.1/24",
    "i8s": [1, 2, None],
    "nums": ["1.10", "2.200"],
    "tstzs": ["2024-01-01T00:00:00+00:00"],
    "bins": ["AQ==", "Ag=="],
    "ids": ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
    "jsbs": [{"k": 1}],
    "f8s": ["NaN", 2.0],
    "ds": ["2024-01-02"],
    "ivs": ["PT1H"],
}


def test_every_type_through_the_wrapper(invoke, pg):
    code = f"def handler(payload, zmesh):\n    return zmesh.db.query_one({ALL_TYPES!r})\n"
    run = invoke(code, dsn=pg.dsn())
    row = run.result
    assert row == EXPECTED
    # Key order is the column order, and the JSON text keeps every digit.
    assert list(row) == list(EXPECTED)
    assert '"i8max":9223372036854775807' in run.stdout
    assert '"i8min":-9223372036854775808' in run.stdout
    assert '"big":12345678901234567890' in run.stdout
    assert '"num":"12345678901234567890.000000000123"' in run.stdout


def test_values_are_json_types_inside_the_handler(invoke, pg):
    # The handler itself sees JSON types, not datetime/Decimal/memoryview.
    code = (
        "def handler(payload, zmesh):\n"
        f"    row = zmesh.db.query_one({ALL_TYPES!r})\n"
        "    ok = (str, int, float, bool, list, dict, type(None))\n"
        "    def walk(v):\n"
        "        if isinstance(v, list): return all(walk(x) for x in v)\n"
        "        if isinstance(v, dict): return all(walk(x) for x in v.values())\n"
        "        return type(v) in ok\n"
        "    return {k: type(v).__name__ for k, v in row.items() if not walk(v)}\n"
    )
    assert invoke(code, dsn=pg.dsn()).result == {}


def test_round_trip_through_a_table(invoke, pg, table):
    pg.execute(
        f'CREATE TABLE "{table}" (id int PRIMARY KEY, at timestamptz, amount numeric(20,4), blob bytea, '
        "doc jsonb, big int8, day date)"
    )
    code = f"""
def handler(payload, zmesh):
    zmesh.db.insert("{table}", {{"id": 1, "at": "2024-05-01T10:00:00+02:00", "amount": "99999999999999.1234",
                                "blob": bytes([0, 1, 255]), "doc": {{"nested": [1, {{"x": None}}]}},
                                "big": 2**63 - 1, "day": "2024-12-31"}})
    return zmesh.db.select("{table}", {{"id": 1}})[0]
"""
    row = invoke(code, dsn=pg.dsn()).result
    assert row == {
        "id": 1,
        "at": "2024-05-01T08:00:00+00:00",
        "amount": "99999999999999.1234",
        "blob": "AAH/",
        "doc": {"nested": [1, {"x": None}]},
        "big": 2**63 - 1,
        "day": "2024-12-31",
    }
    assert pg.execute(f'SELECT amount::text, big, encode(blob, \'hex\') FROM "{table}"') == [
        ("99999999999999.1234", 2**63 - 1, "0001ff")]


def test_result_json_is_exact_for_int8(invoke, pg):
    run = invoke("def handler(p, zmesh):\n    return zmesh.db.query_one('SELECT 9007199254740993::int8 AS n')\n",
                 dsn=pg.dsn())
    # 2**53 + 1: a double would round it; the written JSON must not.
    assert '{"n":9007199254740993}' in run.stdout
    assert json.loads(run.stdout)["result"]["n"] == 9007199254740993
