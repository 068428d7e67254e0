"""Every way an invocation can fail, and what the supervisor reads on stdout."""

import json
import os
import sys
import textwrap

from conftest import message

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from zmesh import _protocol as P  # noqa: E402


def src(code):
    return textwrap.dedent(code).lstrip("\n")


WRAPPER_FILES = ("bootstrap.py", "_runner.py", "zmesh/", "asyncio/")


def assert_stack_is_users(stack):
    assert 'File "function.py"' in stack
    for name in WRAPPER_FILES:
        assert name not in stack, f"wrapper frame {name!r} in stack:\n{stack}"


def test_syntax_error(invoke):
    err = invoke("def handler(payload):\n    return (1 +\n").error
    assert err["name"] == "SyntaxError"
    assert "function.py" in err["message"] and "line 2" in err["message"]
    assert 'File "function.py", line 2' in err["stack"]
    assert "bootstrap.py" not in err["stack"] and "_runner.py" not in err["stack"]


def test_indentation_error_is_a_syntax_error(invoke):
    err = invoke("def handler(p):\nreturn 1\n").error
    assert err["name"] == "SyntaxError"
    assert "indented block" in err["message"]


def test_nul_byte_in_source_is_a_syntax_error(invoke):
    err = invoke("def handler(p):\n    return 1\x00\n").error
    assert err["name"] == "SyntaxError"
    assert "null" in err["message"]


def test_missing_handler(invoke):
    err = invoke("def other(p):\n    return 1\n").error
    assert err == {"name": "HandlerNotFound", "message": 'function.py does not define "handler"', "stack": ""}


def test_missing_custom_entry_point(invoke):
    err = invoke("def handler(p):\n    return 1\n", entry_point="main").error
    assert err["name"] == "HandlerNotFound"
    assert '"main"' in err["message"]


def test_handler_that_is_not_callable(invoke):
    err = invoke("handler = 42\n").error
    assert err["name"] == "HandlerNotFound"
    assert "int" in err["message"]


def test_raised_builtin_exception(invoke):
    code = src("""
        def handler(payload):
            return parse(payload)

        def parse(value):
            raise ValueError(f"cannot parse {value!r}")
    """)
    err = invoke(code, "abc").error
    assert err["name"] == "ValueError"
    assert err["message"] == "cannot parse 'abc'"
    assert_stack_is_users(err["stack"])
    # Both user frames, with their source lines.
    assert 'File "function.py", line 2, in handler' in err["stack"]
    assert 'File "function.py", line 5, in parse' in err["stack"]
    assert 'raise ValueError(f"cannot parse {value!r}")' in err["stack"]
    assert err["stack"].rstrip().endswith("ValueError: cannot parse 'abc'")


def test_raised_user_exception_class(invoke):
    code = src("""
        class PaymentDeclined(Exception):
            pass

        def handler(payload):
            raise PaymentDeclined("card expired")
    """)
    err = invoke(code).error
    assert err["name"] == "PaymentDeclined"
    assert err["message"] == "card expired"
    assert_stack_is_users(err["stack"])


def test_type_error_from_a_bad_call(invoke):
    err = invoke("def handler(payload):\n    return len(payload)\n", 5).error
    assert err["name"] == "TypeError"
    assert "int" in err["message"]
    assert_stack_is_users(err["stack"])


def test_error_in_async_handler_has_no_asyncio_frames(invoke):
    code = src("""
        import asyncio
        async def handler(payload):
            await asyncio.sleep(0)
            raise KeyError("missing")
    """)
    err = invoke(code).error
    assert err["name"] == "KeyError"
    assert_stack_is_users(err["stack"])


def test_chained_exception_keeps_both_parts(invoke):
    code = src("""
        def handler(payload):
            try:
                {}["k"]
            except KeyError as e:
                raise RuntimeError("lookup failed") from e
    """)
    err = invoke(code).error
    assert err["name"] == "RuntimeError"
    assert "KeyError" in err["stack"] and "direct cause" in err["stack"]
    assert_stack_is_users(err["stack"])


def test_error_while_loading_the_module(invoke):
    err = invoke("import no_such_module_zz\ndef handler(p):\n    return 1\n").error
    assert err["name"] == "ModuleNotFoundError"
    assert "no_such_module_zz" in err["message"]
    assert_stack_is_users(err["stack"])


def test_sys_exit_in_handler(invoke):
    err = invoke("import sys\ndef handler(p):\n    sys.exit(3)\n").error
    assert err["name"] == "ProcessExit"
    assert "code 3" in err["message"]
    assert_stack_is_users(err["stack"])


def test_sys_exit_without_code(invoke):
    err = invoke("import sys\ndef handler(p):\n    sys.exit()\n").error
    assert err["name"] == "ProcessExit"
    assert "code 0" in err["message"]


def test_sys_exit_with_a_message(invoke):
    err = invoke("import sys\ndef handler(p):\n    sys.exit('giving up')\n").error
    assert err["name"] == "ProcessExit"
    assert "code 1" in err["message"] and "giving up" in err["message"]


def test_sys_exit_at_import_and_in_async_handler(invoke):
    assert invoke("import sys\nsys.exit(4)\n").error["name"] == "ProcessExit"
    err = invoke("import sys\nasync def handler(p):\n    sys.exit(5)\n").error
    assert err["name"] == "ProcessExit" and "code 5" in err["message"]


def test_result_not_serializable(invoke):
    for expr, hint in (("datetime.date(2024, 1, 1)", "date"), ("{1, 2}", "set"), ("object()", "object")):
        err = invoke(f"import datetime\ndef handler(p):\n    return {{'v': {expr}}}\n").error
        assert err["name"] == "ResultNotSerializable", expr
        assert hint in err["message"]


def test_non_finite_float_result_is_not_serializable(invoke):
    err = invoke("def handler(p):\n    return [float('nan')]\n").error
    assert err["name"] == "ResultNotSerializable"


def test_circular_result_is_not_serializable(invoke):
    err = invoke("def handler(p):\n    a = []\n    a.append(a)\n    return a\n").error
    assert err["name"] == "ResultNotSerializable"
    assert "Circular" in err["message"]


def test_huge_error_message_is_clipped(invoke):
    err = invoke("def handler(p):\n    raise ValueError('x' * 1_000_000)\n").error
    assert err["name"] == "ValueError"
    assert 1000 < len(err["message"]) <= P.MAX_ERROR_MESSAGE_BYTES
    assert len(err["stack"]) <= P.MAX_ERROR_STACK_BYTES
    assert "bytes cut" in err["message"]


def utf8_len(text):
    return len(text.encode("utf-8"))


def test_error_fields_are_cut_in_utf8_bytes(invoke):
    name = "N" * 300
    code = f"class {name}(Exception):\n    pass\n\ndef handler(p):\n    raise {name}('\u00e9' * 100_000)\n"
    err = invoke(code).error
    assert utf8_len(err["name"]) <= P.MAX_ERROR_NAME_BYTES and err["name"].startswith("NNN")
    assert P.MAX_ERROR_MESSAGE_BYTES - 128 < utf8_len(err["message"]) <= P.MAX_ERROR_MESSAGE_BYTES
    assert utf8_len(err["stack"]) <= P.MAX_ERROR_STACK_BYTES
    assert err["message"].startswith("\u00e9\u00e9") and err["message"].endswith("\u00e9\u00e9")


def test_unprintable_exception(invoke):
    code = src("""
        class Weird(Exception):
            def __str__(self):
                raise RuntimeError("no")
        def handler(p):
            raise Weird()
    """)
    err = invoke(code).error
    assert err["name"] == "Weird"
    assert "str() failed" in err["message"]


# -- malformed invocations ----------------------------------------------------

def bad(run):
    err = run.error
    assert err["name"] == "BadInvocation"
    assert err["stack"] == ""
    return err["message"]


def test_stdin_not_json(invoke):
    assert "not valid JSON" in bad(invoke(raw=b"{nope"))


def test_stdin_empty(invoke):
    assert "no invocation" in bad(invoke(raw=b""))


def test_stdin_not_utf8(invoke):
    assert "UTF-8" in bad(invoke(raw=b'{"code": "\xff"}'))


def test_stdin_with_trailing_data(invoke):
    body = json.dumps(message("def handler(p):\n    return 1\n")).encode()
    assert "after the JSON value" in bad(invoke(raw=body + b" {}"))


def test_stdin_not_an_object(invoke):
    assert "JSON object" in bad(invoke(raw=b"[1, 2]"))


def test_stdin_with_nan(invoke):
    body = json.dumps(message("def handler(p):\n    return p\n", float("nan"))).encode()
    assert b"NaN" in body
    assert "not valid JSON" in bad(invoke(raw=body))


def test_deeply_nested_payload(invoke):
    body = b'{"payload": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    assert "not valid JSON" in bad(invoke(raw=body))


def test_missing_and_mistyped_fields(invoke):
    good = message("def handler(p):\n    return 1\n")
    cases = [
        ("code", None, '"code" is missing'),
        ("code", 5, '"code" must be a string'),
        ("invocation_id", None, '"invocation_id" is missing'),
        ("project_id", ["x"], '"project_id" must be a string'),
        ("deadline_ms", "soon", '"deadline_ms" must be an integer'),
        ("deadline_ms", True, '"deadline_ms" must be an integer'),
        ("deadline_ms", -5, '"deadline_ms" must be a positive'),
        ("function", "fn", '"function" must be an object'),
        ("env", {"A": 1}, '"env" must map'),
        ("env", ["A"], '"env" must be an object'),
        ("dsn", 3, '"dsn" must be a string'),
    ]
    for key, value, expected in cases:
        msg = dict(good)
        if value is None:
            del msg[key]
        else:
            msg[key] = value
        assert expected in bad(invoke(raw=json.dumps(msg).encode())), (key, value)


def test_bad_function_fields(invoke):
    good = message("def handler(p):\n    return 1\n")
    for fn, expected in (
        ({"name": "f", "version": "1"}, '"function.version" must be an integer'),
        ({"name": "f", "version": False}, '"function.version" must be an integer'),
        ({"version": 1}, '"function.name" is missing'),
        ({"name": "f", "version": 1, "entry_point": "a.b"}, "identifier"),
        ({"name": "f", "version": 1, "entry_point": "x" * 300}, "longer than"),
        ({"name": "f", "version": 1, "entry_point": "x" * (P.MAX_ENTRY_POINT_BYTES + 1)}, "longer than"),
        ({"name": "f", "version": 1, "entry_point": "1handler"}, "identifier"),
        ({"name": "f", "version": 1, "entry_point": "caf\u00e9"}, "identifier"),
        ({"name": "\u00e9" * (P.MAX_NAME_BYTES // 2 + 1), "version": 1}, '"function.name" is longer than'),
    ):
        msg = dict(good, function=fn)
        assert expected in bad(invoke(raw=json.dumps(msg).encode())), fn


def test_oversized_message(invoke):
    body = json.dumps(message("def handler(p):\n    return 1\n", "x" * (P.MAX_MESSAGE_BYTES + (1 << 20)))).encode()
    assert "larger than" in bad(invoke(raw=body))


def test_fields_over_the_protocol_limits(invoke):
    good = message("def handler(p):\n    return 1\n")
    value = "x" * P.MAX_ENV_VALUE_BYTES
    cases = [
        ("invocation_id", "i" * (P.MAX_ID_BYTES + 1), '"invocation_id" is longer than'),
        ("project_id", "p" * (P.MAX_ID_BYTES + 1), '"project_id" is longer than'),
        ("dsn", "d" * (P.MAX_DSN_BYTES + 1), '"dsn" is longer than'),
        ("env", {f"V{i}": "x" for i in range(P.MAX_ENV_VARS + 1)}, "more than 64 entries"),
        ("env", {"N" * (P.MAX_ENV_NAME_BYTES + 1): "x"}, 'an "env" name is longer than'),
        ("env", {"A": value + "x"}, '"env.A" is longer than'),
        ("env", {f"V{i}": value for i in range(9)}, '"env" holds more than'),
    ]
    for key, value, expected in cases:
        msg = dict(good, **{key: value})
        assert expected in bad(invoke(raw=json.dumps(msg).encode())), key


def test_fields_at_the_protocol_limits(invoke):
    entry = "h" * P.MAX_ENTRY_POINT_BYTES
    msg = message(f"def {entry}(p):\n    return 'at the limit'\n", entry_point=entry,
                  name="\u00e9" * (P.MAX_NAME_BYTES // 2), invocation_id="i" * P.MAX_ID_BYTES,
                  env={f"V{i}": "x" * P.MAX_ENV_VALUE_BYTES for i in range(7)})
    assert invoke(raw=json.dumps(msg).encode()).result == "at the limit"


def test_dollar_entry_point_finds_no_python_handler(invoke):
    err = invoke("def handler(p):\n    return 1\n", entry_point="$handler").error
    assert err["name"] == "HandlerNotFound"


def test_optional_fields_may_be_absent(invoke):
    msg = message("def handler(p, z):\n    return [p, dict(z.env), z.function.entry_point]\n")
    for key in ("env", "dsn", "payload"):
        del msg[key]
    del msg["function"]["entry_point"]
    run = invoke(raw=json.dumps(msg).encode())
    assert run.result == [None, {}, "handler"]


def test_unknown_fields_are_ignored(invoke):
    msg = dict(message("def handler(p):\n    return p\n", 3), future_field={"x": 1})
    assert invoke(raw=json.dumps(msg).encode()).result == 3


def test_base_exception_from_handler(invoke):
    err = invoke("def handler(p):\n    raise KeyboardInterrupt('stop')\n").error
    assert err["name"] == "KeyboardInterrupt"
    assert err["message"] == "stop"
    assert_stack_is_users(err["stack"])
