"""How PostgreSQL values come back to a handler: always as JSON types.

The connection is opened with DateStyle=ISO, TimeZone=UTC,
IntervalStyle=iso_8601 and bytea_output=hex (see _db.SESSION_SETTINGS), so
the server's text forms below are known and can be passed on or reshaped
without a round trip through datetime or Decimal, which cannot hold every
PostgreSQL value (years beyond 9999 or BC, infinity, NaN).

    timestamp            "2024-05-01T10:00:00.5"          (ISO-8601, no offset)
    timestamptz          "2024-05-01T10:00:00.5+00:00"    (ISO-8601, UTC)
    date, time           "2024-05-01", "10:00:00"
    timetz               "10:00:00+02:00"
    interval             "P1DT2H"                          (ISO-8601 duration)
    BC dates             astronomical years: 1 BC is "0000", 2 BC is "-0001"
    infinity             "infinity" / "-infinity"
    numeric, money       string, every digit kept: "12.3400"
    float4, float8       float; NaN and the infinities as "NaN", "Infinity", "-Infinity"
    int2, int4, int8     int (exact; see README about JSON readers that use doubles)
    bytea                base64 string
    json, jsonb          the parsed value (psycopg2's own caster)
    uuid                 string
    range types          PostgreSQL's text form, e.g. "[1,10)"
    arrays of the above  lists
    anything else        PostgreSQL's text form (str)
"""

import binascii


def _bc_year(year_text):
    astronomical = 1 - int(year_text)
    return "0000" if astronomical == 0 else f"-{-astronomical:04d}"


def _iso_offset(text, after):
    """Writes a "+HH" zone suffix as "+HH:00"; "+HH:MM" is already ISO-8601."""
    cut = max(text.rfind("+"), text.rfind("-"))
    if cut > after and len(text) - cut == 3:
        return text + ":00"
    return text


def _iso_datetime(text, cursor):
    if text is None:
        return None
    if not text[:1].isdigit():
        return text  # infinity, -infinity
    if text.endswith(" BC"):
        text = text[:-3]
        year, _, rest = text.partition("-")
        text = _bc_year(year) + "-" + rest
    date, sep, time = text.partition(" ")
    if not sep:
        return text  # a date
    # The year may have more than four digits; the offset search starts after the date.
    return _iso_offset(date + "T" + time, len(date) + 1)


def _iso_timetz(text, cursor):
    return None if text is None else _iso_offset(text, 0)


def _text(text, cursor):
    return text


def _float(text, cursor):
    if text is None:
        return None
    value = float(text)
    # NaN and the infinities have no JSON form; PostgreSQL's spelling is kept.
    return value if value - value == 0.0 else text


def _bytea(text, cursor):
    if text is None:
        return None
    if text.startswith("\\x"):
        data = bytes.fromhex(text[2:])
    else:  # bytea_output=escape set by the function itself
        import psycopg2.extensions

        data = bytes(psycopg2.extensions.BINARY(text, cursor))
    return binascii.b2a_base64(data, newline=False).decode("ascii")


# (name, scalar oids, array oids, cast)
CASTERS = (
    ("ZMESH_TIMESTAMP", (1114, 1184, 1082), (1115, 1185, 1182), _iso_datetime),
    ("ZMESH_TIMETZ", (1266,), (1270,), _iso_timetz),
    ("ZMESH_TEXT", (1083, 1186, 1700, 790, 2950, 3904, 3906, 3908, 3910, 3912, 3926),
     (1183, 1187, 1231, 791, 2951, 3905, 3907, 3909, 3911, 3913, 3927), _text),
    ("ZMESH_FLOAT", (700, 701), (1021, 1022), _float),
    ("ZMESH_BYTEA", (17,), (1001,), _bytea),
)


def register(conn):
    """Installs the casters above on one psycopg2 connection."""
    from psycopg2 import extensions

    for name, oids, array_oids, cast in CASTERS:
        scalar = extensions.new_type(oids, name, cast)
        extensions.register_type(scalar, conn)
        extensions.register_type(extensions.new_array_type(array_oids, name + "_ARRAY", scalar), conn)
