"""Handler styles and the context object a handler sees (no database)."""

import textwrap
import time


def src(code):
    return textwrap.dedent(code).lstrip("\n")


def test_sync_handler_gets_payload_and_context(invoke):
    run = invoke(
        src("""
            def handler(payload, zmesh):
                return {
                    "payload": payload,
                    "project_id": zmesh.project_id,
                    "invocation_id": zmesh.invocation_id,
                    "function": [zmesh.function.name, zmesh.function.version, zmesh.function.entry_point],
                    "deadline_ms": zmesh.deadline_ms,
                }
        """),
        {"n": [1, 2.5, "x", None, True]},
        project_id="p-42",
        invocation_id="inv-9",
        name="orders",
        version=12,
        deadline_ms=4_102_444_800_000,
    )
    assert run.result == {
        "payload": {"n": [1, 2.5, "x", None, True]},
        "project_id": "p-42",
        "invocation_id": "inv-9",
        "function": ["orders", 12, "handler"],
        "deadline_ms": 4_102_444_800_000,
    }


def test_handler_taking_only_the_payload(invoke):
    assert invoke("def handler(event):\n    return event * 2\n", 21).result == 42


def test_handler_taking_nothing(invoke):
    assert invoke("def handler():\n    return 'none'\n", 1).result == "none"


def test_handler_with_varargs_gets_both(invoke):
    code = "def handler(*args):\n    return [args[0], args[1].project_id]\n"
    assert invoke(code, "p", project_id="pr").result == ["p", "pr"]


def test_bound_method_as_handler(invoke):
    code = src("""
        class Service:
            def run(self, payload, zmesh):
                return [payload, zmesh.project_id]
        handler = Service().run
    """)
    assert invoke(code, 5, project_id="pr").result == [5, "pr"]


def test_callable_object_as_handler(invoke):
    code = src("""
        class Handler:
            def __call__(self, payload):
                return payload + 1
        handler = Handler()
    """)
    assert invoke(code, 1).result == 2


def test_decorated_handler_keeps_its_own_arity(invoke):
    code = src("""
        import functools
        def traced(fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                print("calling", fn.__name__)
                return fn(*args, **kwargs)
            return wrapper
        @traced
        def handler(payload):
            return payload * 3
    """)
    run = invoke(code, 2)
    assert run.result == 6
    assert "calling handler" in run.stderr


def test_async_handler(invoke):
    code = src("""
        import asyncio
        async def handler(payload, zmesh):
            await asyncio.sleep(0.01)
            results = await asyncio.gather(*(asyncio.sleep(0, result=i) for i in range(3)))
            return {"got": payload, "sum": sum(results)}
    """)
    assert invoke(code, "hi").result == {"got": "hi", "sum": 3}


def test_async_handler_that_needs_no_event_loop_runs_without_asyncio(invoke):
    # Importing asyncio costs more than the rest of an invocation: a coroutine
    # that awaits only coroutines of its own never pays for it.
    code = src("""
        import sys
        async def double(x):
            return 2 * x
        async def handler(payload, zmesh):
            return {"value": await double(payload), "asyncio": "asyncio" in sys.modules}
    """)
    assert invoke(code, 21).result == {"value": 42, "asyncio": False}


def test_async_handler_importing_asyncio_late_gets_a_running_loop(invoke):
    code = src("""
        import sys
        async def handler(payload, zmesh):
            before = "asyncio" in sys.modules
            import asyncio
            loop = asyncio.get_running_loop()
            await asyncio.sleep(0.01)
            results = await asyncio.gather(*(asyncio.sleep(0, result=i) for i in range(3)))
            task = asyncio.create_task(asyncio.sleep(0, result=5))
            try:
                await asyncio.wait_for(asyncio.sleep(5), 0.01)
                timed_out = False
            except asyncio.TimeoutError:
                timed_out = True
            return [before, sum(results), await task, timed_out, loop is asyncio.get_running_loop(), payload]
    """)
    assert invoke(code, "p").result == [False, 3, 5, True, True, "p"]


def test_async_handler_errors_without_and_with_a_loop(invoke):
    early = invoke("async def handler(p):\n    raise ValueError('early ' + p)\n", "x")
    assert early.error["name"] == "ValueError" and early.error["message"] == "early x"
    late = invoke(src("""
        async def handler(p):
            import asyncio
            await asyncio.sleep(0.01)
            raise KeyError('late')
    """), None)
    assert late.error["name"] == "KeyError" and "late" in late.error["message"]


def test_sync_handler_returning_a_coroutine_is_awaited(invoke):
    code = src("""
        async def work(p):
            return p + 1
        def handler(payload):
            return work(payload)
    """)
    assert invoke(code, 1).result == 2


def test_custom_entry_point(invoke):
    code = "def main(payload):\n    return 'main'\n\ndef handler(payload):\n    return 'handler'\n"
    assert invoke(code, None, entry_point="main").result == "main"


def test_empty_entry_point_means_handler(invoke):
    assert invoke("def handler(p):\n    return 'default'\n", None, entry_point="").result == "default"


def test_none_result_is_null(invoke):
    run = invoke("def handler(p):\n    pass\n")
    assert run.stdout == '{"ok":true,"result":null}\n'


def test_tuples_become_lists_and_big_ints_stay_exact(invoke):
    run = invoke("def handler(p):\n    return (2**70, -(2**63), 0.1)\n")
    assert run.result == [2**70, -(2**63), 0.1]
    assert "1180591620717411303424" in run.stdout


def test_zmesh_is_a_builtin_and_a_module_global(invoke):
    code = src("""
        import builtins
        at_import = zmesh.project_id
        def helper():
            return zmesh.invocation_id
        def handler(payload, z):
            return [at_import, helper(), builtins.zmesh is z, zmesh is z]
    """)
    assert invoke(code, project_id="pp", invocation_id="ii").result == ["pp", "ii", True, True]


def test_import_zmesh_reaches_the_same_context(invoke):
    code = src("""
        import zmesh
        def handler(payload, z):
            return [zmesh.project_id, zmesh.env.KEY, zmesh.log is z.log,
                    zmesh.DatabaseError is z.DatabaseError, zmesh.time_left_ms() > 0]
    """)
    assert invoke(code, project_id="pp", env={"KEY": "v"}).result == ["pp", "v", True, True, True]


def test_env_access(invoke):
    code = src("""
        def handler(payload, zmesh):
            env = zmesh.env
            try:
                env["MISSING"]
                subscript = "no error"
            except KeyError:
                subscript = "KeyError"
            return {
                "attr": env.API_KEY, "missing": env.MISSING, "item": env["API_KEY"],
                "get": env.get("NOPE", "dflt"), "subscript": subscript,
                "contains": "API_KEY" in env, "keys": sorted(env),
                "dict_method_name": env["keys"], "repr_hides_values": "s3cret" not in repr(env),
            }
    """)
    run = invoke(code, env={"API_KEY": "s3cret", "keys": "k"})
    assert run.result == {
        "attr": "s3cret", "missing": None, "item": "s3cret", "get": "dflt", "subscript": "KeyError",
        "contains": True, "keys": ["API_KEY", "keys"], "dict_method_name": "k", "repr_hides_values": True,
    }


def test_env_is_not_the_process_environment(invoke):
    code = "import os\ndef handler(p, z):\n    return [os.environ.get('SECRET'), z.env.SECRET]\n"
    assert invoke(code, env={"SECRET": "x"}).result == [None, "x"]


def test_time_left_follows_the_deadline(invoke):
    deadline = int(time.time() * 1000) + 20_000
    left = invoke("def handler(p, z):\n    return z.time_left_ms()\n", deadline_ms=deadline).result
    assert 10_000 < left <= 20_000
    past = invoke("def handler(p, z):\n    return z.time_left_ms()\n", deadline_ms=1_000).result
    assert past == 0


def test_user_module_is_importable_by_name(invoke):
    # pickle and dataclasses look classes up through sys.modules.
    code = src("""
        import dataclasses, pickle
        @dataclasses.dataclass
        class Point:
            x: int
            y: int
        def handler(p):
            back = pickle.loads(pickle.dumps(Point(1, 2)))
            return [back.x, back.y, __name__]
    """)
    assert invoke(code).result == [1, 2, "function"]


def test_started_without_site_a_function_keeps_what_it_needs_of_it(invoke):
    # -S skips site's .pth processing; bootstrap.py adds the system's package
    # directories and the exit/quit builtins itself.
    code = src("""
        import sys
        def handler(p, z):
            import psycopg2
            return [sys.flags.no_site, "site" in sys.modules, callable(exit), callable(quit),
                    psycopg2.__file__.startswith("/usr/lib/python3/dist-packages/")]
    """)
    assert invoke(code).result == [1, False, True, True, True]
    exited = invoke("def handler(p):\n    exit(3)\n")
    assert exited.error["name"] == "ProcessExit" and "3" in exited.error["message"]
