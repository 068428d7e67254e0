"""Strict JSON in and out for the invocation protocol.

`import json` pulls in `re` and costs several milliseconds per start, which is
most of the wrapper's budget. The C accelerator behind the json module, `_json`,
does the real work without those imports, so it is used directly; the json
module is only the fallback for an interpreter built without it.

Both directions are strict JSON: NaN and the infinities are refused (the
supervisor's parser would reject them), and anything that is not a JSON type
is an error rather than being converted behind the caller's back.
"""

try:
    import _json
except ImportError:  # pragma: no cover - CPython always builds it
    _json = None

_WS = " \t\n\r"


def _no_constant(name):
    raise ValueError(name + " is not valid JSON")


def _not_serializable(obj):
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _as_text(obj):
    try:
        return str(obj)
    except Exception:
        return f"<unprintable {type(obj).__name__}>"


class _ScanContext:
    # The attributes `_json.make_scanner` reads from its context object.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_no_constant)


if _json is not None:
    _scan = _json.make_scanner(_ScanContext)

    def _make_encoder(default):
        return _json.make_encoder(
            {}, default, _json.encode_basestring_ascii, None, ":", ",", False, False, False
        )

    def loads(text):
        """Parses one JSON document; raises ValueError if `text` is anything else."""
        start = len(text) - len(text.lstrip(_WS))
        try:
            try:
                obj, end = _scan(text, start)
            except SystemError:
                # _json builds its error from json.decoder.JSONDecodeError but
                # only finds it if that module is already loaded; load it now,
                # on the error path, and scan again for the real message.
                import json.decoder  # noqa: F401

                obj, end = _scan(text, start)
        except StopIteration as e:
            raise ValueError(f"expected a JSON value at offset {e.value}") from None
        if text[end:].strip(_WS):
            raise ValueError(f"unexpected data after the JSON value at offset {end}")
        return obj

    def dumps(obj):
        """Encodes `obj` as compact ASCII JSON.

        Raises TypeError for a value that is not a JSON type, ValueError for
        NaN, infinities and circular references, RecursionError when too deep.
        """
        # A fresh encoder per call: its circular-reference memo must start empty.
        return "".join(_make_encoder(_not_serializable)(obj, 0))

    def dumps_lenient(obj):
        """Like dumps(), but writes str() of anything that is not a JSON type."""
        return "".join(_make_encoder(_as_text)(obj, 0))

else:  # pragma: no cover
    import json as _stdjson

    def _strict_constant_hook(name):
        _no_constant(name)

    def loads(text):
        return _stdjson.loads(text, parse_constant=_strict_constant_hook)

    def dumps(obj):
        return _stdjson.dumps(obj, allow_nan=False, separators=(",", ":"), default=_not_serializable)

    def dumps_lenient(obj):
        return _stdjson.dumps(obj, allow_nan=False, separators=(",", ":"), default=_as_text)
