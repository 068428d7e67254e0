"""One invocation: read the message on stdin, run the handler, answer on the result descriptor.

Protocol (the supervisor's side is in supervisor/): stdin carries exactly one
JSON object, then EOF; the result descriptor (N when started with
--result-fd=N, as the platform does with 3, else stdout) receives exactly one JSON object,
{"ok": true, "result": ...} or {"ok": false, "error": {"name", "message", "stack"}},
preceded by one newline written before stdin is read (the supervisor's warm
pool learns from it that the runtime is loaded and waiting), and the process
exits 0 whatever the handler did. Everything else anyone writes, to
sys.stdout or to file descriptor 1, ends up on stderr.

Start-up time is part of every invocation, so this module imports nothing
beyond what the interpreter has already loaded; asyncio, traceback and the
database driver are imported only when a handler needs them.
"""

import _thread
import builtins
import os
import sys

import zmesh as _sdk
from zmesh import _jsonio

# The protocol's limits (common/protocol.h). The supervisor checks the same
# bounds before it writes a message; they are checked again here so that a
# malformed or hostile message is refused by name, never half-used.
from zmesh import _protocol as _p

USER_FILE = "function.py"
USER_MODULE = "function"
_TRUNCATED = "\n... (truncated)"

_CO_VARARGS = 0x04
_CO_COROUTINE = 0x80


class _BadInvocation(Exception):
    pass


class _SourceLoader:
    """Serves function.py's source to linecache, so tracebacks show its lines."""

    def __init__(self, source):
        self._source = source

    def get_source(self, name):
        return self._source


def _result_fd_arg():
    for arg in sys.argv[1:]:
        if arg.startswith("--result-fd="):
            try:
                n = int(arg[len("--result-fd=") :])
            except ValueError:
                return -1
            return n if n >= 3 else -1
    return -1


def _claim_stdout():
    """Keeps the result descriptor for the result and points fd 1 and sys.stdout at stderr.

    The result descriptor is --result-fd=N's (the platform's sandbox has made
    fd 1 a copy of fd 2 already), made close-on-exec so that no child
    process holds it; without the option, a close-on-exec copy of stdout.
    Redirecting the descriptor, not just sys.stdout, also catches os.write(1, ...),
    C extensions and child processes.
    """
    result_fd = _result_fd_arg()
    if result_fd >= 0:
        try:
            os.set_inheritable(result_fd, False)
        except OSError:
            result_fd = -1
    if result_fd < 0:
        try:
            result_fd = os.dup(1)
        except OSError:
            result_fd = -1
    try:
        os.dup2(2, 1)
    except OSError:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.close(null)
        except OSError:
            pass
    sys.stdout = sys.stderr
    return result_fd


def _read_stdin():
    chunks = []
    total = 0
    try:
        while True:
            chunk = os.read(0, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > _p.MAX_MESSAGE_BYTES:
                raise _BadInvocation(f"invocation message is larger than {_p.MAX_MESSAGE_BYTES} bytes")
            chunks.append(chunk)
    except OSError as e:
        raise _BadInvocation(f"cannot read the invocation from stdin: {e.strerror}") from None
    if not total:
        raise _BadInvocation("no invocation message on stdin")
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as e:
        raise _BadInvocation(f"invocation message is not UTF-8 (byte {e.start})") from None
    try:
        return _jsonio.loads(text)
    except (ValueError, RecursionError) as e:
        raise _BadInvocation(f"invocation message is not valid JSON: {e}") from None


def _field(obj, key, kind, where, required=True):
    if key not in obj or obj[key] is None:
        if required:
            raise _BadInvocation(f'"{where}{key}" is missing')
        return None
    value = obj[key]
    # bool is an int subclass; a version or a deadline of `true` is a bug upstream.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _BadInvocation(f'"{where}{key}" must be {_KIND_NAMES[kind]}')
    return value


_KIND_NAMES = {str: "a string", int: "an integer", dict: "an object"}


def _utf8_len(text):
    return len(text.encode("utf-8", "surrogatepass"))


def _fits(text, limit):
    """Whether `text` is at most `limit` UTF-8 bytes; encodes only when its length cannot tell."""
    # A code point is one to four bytes.
    return len(text) * 4 <= limit or (len(text) <= limit and _utf8_len(text) <= limit)


def _cut(text, limit):
    """`text` bounded to `limit` UTF-8 bytes, the marker included, cut between characters."""
    if _fits(text, limit):
        return text
    data = text[:limit].encode("utf-8", "surrogatepass")[: max(0, limit - len(_TRUNCATED))]
    return data.decode("utf-8", "ignore") + _TRUNCATED


def _short_str(obj, key, where, limit, required=True):
    value = _field(obj, key, str, where, required)
    if value is not None and not _fits(value, limit):
        raise _BadInvocation(f'"{where}{key}" is longer than {limit} bytes')
    return value


def _is_entry_point(text):
    return (
        len(text) <= _p.MAX_ENTRY_POINT_BYTES
        and text[0] in _p.ENTRY_POINT_FIRST_CHARS
        and not text.strip(_p.ENTRY_POINT_CHARS)
    )


def _check_env(env):
    if len(env) > _p.MAX_ENV_VARS:
        raise _BadInvocation(f'"env" has more than {_p.MAX_ENV_VARS} entries')
    total = 0
    for key, value in env.items():
        if not key or not isinstance(value, str):
            raise _BadInvocation('"env" must map non-empty names to strings')
        if not _fits(key, _p.MAX_ENV_NAME_BYTES):
            raise _BadInvocation(f'an "env" name is longer than {_p.MAX_ENV_NAME_BYTES} bytes')
        if not _fits(value, _p.MAX_ENV_VALUE_BYTES):
            raise _BadInvocation(f'"env.{key}" is longer than {_p.MAX_ENV_VALUE_BYTES} bytes')
        total += _utf8_len(key) + _utf8_len(value)
    if total > _p.MAX_ENV_BYTES:
        raise _BadInvocation(f'"env" holds more than {_p.MAX_ENV_BYTES} bytes')


def _parse(msg):
    """Validates the message; returns (context fields, code, entry point, payload)."""
    if not isinstance(msg, dict):
        raise _BadInvocation("invocation message must be a JSON object")
    invocation_id = _short_str(msg, "invocation_id", "", _p.MAX_ID_BYTES)
    project_id = _short_str(msg, "project_id", "", _p.MAX_ID_BYTES)
    fn = _field(msg, "function", dict, "")
    name = _short_str(fn, "name", "function.", _p.MAX_NAME_BYTES)
    version = _field(fn, "version", int, "function.")
    entry = _short_str(fn, "entry_point", "function.", _p.MAX_ENTRY_POINT_BYTES, required=False)
    entry = entry or _p.DEFAULT_ENTRY_POINT
    # '$' passes (the protocol is shared with JavaScript) and then names no handler.
    if not _is_entry_point(entry):
        raise _BadInvocation('"function.entry_point" must be an identifier of [A-Za-z_$][A-Za-z0-9_$]*')
    code = _field(msg, "code", str, "")
    env = _field(msg, "env", dict, "", required=False) or {}
    _check_env(env)
    dsn = _short_str(msg, "dsn", "", _p.MAX_DSN_BYTES, required=False) or ""
    deadline_ms = _field(msg, "deadline_ms", int, "")
    if deadline_ms <= 0:
        raise _BadInvocation('"deadline_ms" must be a positive Unix time in milliseconds')
    context = _sdk.Context(
        invocation_id,
        project_id,
        _sdk.FunctionInfo(name, version, entry),
        _sdk.Env(env),
        dsn,
        deadline_ms,
        _sdk.Log(sys.stderr),
    )
    return context, code, entry, msg.get("payload"), msg.get("check") is True


def _arity(fn):
    """How many of (payload, zmesh) the handler takes: 0, 1 or 2."""
    target, bound = fn, 0
    if hasattr(fn, "__func__") and getattr(fn, "__self__", None) is not None:
        target, bound = fn.__func__, 1
    code = getattr(target, "__code__", None)
    # A decorator's (*args, **kwargs) wrapper says nothing; inspect follows __wrapped__.
    if code is None or hasattr(fn, "__wrapped__"):
        return _arity_slow(fn)
    if code.co_flags & _CO_VARARGS:
        return 2
    return max(0, min(2, code.co_argcount - bound))


def _arity_slow(fn):
    # Callable objects, partials, builtins: rare enough to afford inspect.
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    n = 0
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            return 2
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return min(2, n)


def _is_coroutine_function(fn):
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    return code is not None and bool(code.co_flags & _CO_COROUTINE)


async def _await(awaitable):
    return await awaitable


class _LoopOnAsyncioImport:
    """Import hook for a coroutine run without an event loop: the moment its
    code imports asyncio, an event loop is made and marked running, so that
    asyncio's API, which asks for the running loop, works from there on."""

    def __init__(self):
        self.loop = None
        self.thread = _thread.get_ident()

    def find_spec(self, name, path=None, target=None):
        # Only the coroutine's own thread gets a loop marked running.
        if name != "asyncio" or _thread.get_ident() != self.thread:
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None and spec.loader is not None:
                spec.loader = _ThenLoop(spec.loader, self)
                return spec
        return None


class _ThenLoop:
    """asyncio's loader, followed by making the loop."""

    def __init__(self, loader, hook):
        self._loader, self._hook = loader, hook

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._hook.loop = module.new_event_loop()
        module.events._set_running_loop(self._hook.loop)


class _Resume:
    """Awaiting it hands what the coroutine waits on to the event loop, then
    goes on driving the coroutine where it stopped."""

    def __init__(self, coro, pending):
        self._coro, self._pending = coro, pending

    def __await__(self):
        coro, pending = self._coro, self._pending
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:  # noqa: B036 - thrown in by the loop, passed on
                try:
                    pending = coro.throw(e)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as done:
                    return done.value


async def _resume(coro, pending):
    return await _Resume(coro, pending)


def _run_coroutine(coro):
    """Runs a coroutine to its end, like asyncio.run(). Importing asyncio costs
    some 30 ms, more than everything else an invocation does, and most
    handlers await nothing that needs an event loop: so unless the function
    has loaded asyncio already, the coroutine starts without one. Once its code
    imports asyncio (then a loop is made and marked running at once), or waits
    on anything, an event loop takes over and runs it to its end."""
    if "asyncio" in sys.modules:
        return sys.modules["asyncio"].run(coro)
    hook = _LoopOnAsyncioImport()
    sys.meta_path.insert(0, hook)
    try:
        try:
            pending = coro.send(None)
            # A bare yield asks only to let others run: there are none.
            while pending is None and hook.loop is None:
                pending = coro.send(None)
        except StopIteration as done:
            return done.value
        finally:
            if hook in sys.meta_path:
                sys.meta_path.remove(hook)
        import asyncio

        loop = hook.loop or asyncio.new_event_loop()
        asyncio.events._set_running_loop(None)
        try:
            return loop.run_until_complete(_resume(coro, pending))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()
    finally:
        coro.close()
        if hook.loop is not None and not hook.loop.is_closed():
            sys.modules["asyncio"].events._set_running_loop(None)
            hook.loop.close()


def _call(handler, payload, context):
    args = (payload, context)[: _arity(handler)]
    if _is_coroutine_function(handler):
        return _run_coroutine(handler(*args))
    result = handler(*args)
    if hasattr(type(result), "__await__"):
        return _run_coroutine(_await(result))
    return result


def _error(name, message, stack=""):
    # User exceptions arrive clipped by _trace (start and end kept); this
    # bounds the rest, such as a class name or a message quoting the result.
    error = {
        "name": _cut(name, _p.MAX_ERROR_NAME_BYTES),
        "message": _cut(message, _p.MAX_ERROR_MESSAGE_BYTES),
        "stack": _cut(stack, _p.MAX_ERROR_STACK_BYTES),
    }
    return '{"ok":false,"error":' + _jsonio.dumps(error) + "}"


def _user_error(exc, source):
    from zmesh import _trace

    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            status, note = 0, ""
        elif isinstance(code, int):
            status, note = int(code), ""
        else:
            status, note = 1, f": {_trace.safe_str(code)}"
        _, stack = _trace.describe(exc, source)
        message = _trace.clip(f"function called sys.exit() with code {status}{note}", _p.MAX_ERROR_MESSAGE_BYTES)
        return _error("ProcessExit", message, stack)
    message, stack = _trace.describe(exc, source)
    return _error(type(exc).__name__, message, stack)


def _run(context, source, entry, payload):
    try:
        code = compile(source, USER_FILE, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        from zmesh import _trace

        message, stack = _trace.describe_syntax(e, source)
        return _error("SyntaxError", message, stack)

    module = type(sys)(USER_MODULE)
    module.__file__ = USER_FILE
    module.__loader__ = _SourceLoader(source)
    module.zmesh = context
    # Registered so that pickle, dataclasses and typing find the classes it defines.
    sys.modules[USER_MODULE] = module
    try:
        exec(code, module.__dict__)
        handler = module.__dict__.get(entry)
        if handler is None:
            return _error("HandlerNotFound", f'{USER_FILE} does not define "{entry}"')
        if not callable(handler):
            kind = type(handler).__name__
            return _error("HandlerNotFound", f'"{entry}" in {USER_FILE} is a {kind}, not a function')
        result = _call(handler, payload, context)
    except BaseException as e:  # noqa: B036 - SystemExit and friends are outcomes too
        return _user_error(e, source)
    finally:
        context._close()
    try:
        # Emitted events travel with the result; zmeshd queues them.
        emits = ',"emits":[' + ",".join(context._emits) + "]" if context._emits else ""
        return '{"ok":true,"result":' + _jsonio.dumps(result) + emits + "}"
    except Exception as e:  # a dict subclass can raise anything from items()
        return _error("ResultNotSerializable", f"the handler's result cannot be written as JSON: {e}")


def _top_level_names(tree):
    """Names the module's top level binds, or None when a star import makes that unknowable."""
    import ast

    names = set()
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            # Their bodies bind nothing at the top level; decorators and
            # defaults may (walrus), which is rare enough to ignore.
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.split(".")[0])
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.Global):
            names.update(node.names)
        elif isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue
        todo.extend(ast.iter_child_nodes(node))
    return names


def _check(source, entry):
    """Check mode: compiles the code and never runs it. The result says
    {"valid": true}, or {"valid": false, "error": {name, message, file, line,
    column}} for a syntax error (line and column 1-based) or a handler its
    top level never defines."""
    try:
        code = compile(source, USER_FILE, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        line = getattr(e, "lineno", None)
        column = getattr(e, "offset", None)
        message = getattr(e, "msg", None) or str(e)
        error = {
            "name": type(e).__name__,
            "message": _cut(message, _p.MAX_ERROR_MESSAGE_BYTES),
            "file": USER_FILE,
            "line": line if isinstance(line, int) and line > 0 else None,
            "column": column if isinstance(column, int) and column > 0 else None,
        }
        return '{"ok":true,"result":' + _jsonio.dumps({"valid": False, "error": error}) + "}"
    del code
    import ast

    names = _top_level_names(ast.parse(source, USER_FILE))
    if names is not None and entry not in names:
        error = {
            "name": "HandlerNotFound",
            "message": f'{USER_FILE} does not define "{entry}" at its top level',
            "file": USER_FILE,
            "line": None,
            "column": None,
        }
        return '{"ok":true,"result":' + _jsonio.dumps({"valid": False, "error": error}) + "}"
    return '{"ok":true,"result":{"valid":true}}'


def _invoke():
    try:
        context, source, entry, payload, check = _parse(_read_stdin())
    except _BadInvocation as e:
        return _error("BadInvocation", str(e))
    if check:
        return _check(source, entry)
    _sdk._bind(context)
    builtins.zmesh = context
    return _run(context, source, entry, payload)


def _write_all(fd, data):
    while data:
        try:
            n = os.write(fd, data)
        except OSError:
            return
        data = data[n:]


def _flush_logs():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def _preload_db():
    """For functions that use zmesh.db (the supervisor's warm pool starts such
    sandboxes with --with-db): the driver, loaded before the invocation is
    read rather than on the function's first query. No connection: that needs
    the invocation's DSN. A failure here is reported on first use instead."""
    try:
        import psycopg2  # noqa: F401
        import psycopg2._json  # noqa: F401
        import psycopg2.extensions  # noqa: F401

        from zmesh import _pgtypes  # noqa: F401
    except Exception:
        return
    # libpq authenticates with SCRAM-SHA-256 through the process's OpenSSL,
    # which sets up its random generator and digests on first use: measured,
    # about 2 ms of a first connect (3.6 -> 1.6 ms on the host). The same
    # library serves hashlib, hmac and ssl, so this does it now.
    try:
        import hashlib
        import hmac
        import ssl

        ssl.RAND_bytes(16)
        hmac.digest(hashlib.pbkdf2_hmac("sha256", b"warm-up", b"salt", 1), b"Client Key", "sha256")
        hashlib.sha256(b"warm-up").digest()
    except Exception:
        pass


def main():
    """Runs one invocation and ends the process; never returns."""
    result_fd = _claim_stdout()
    if "--with-db" in sys.argv[1:]:
        _preload_db()
    _write_all(result_fd if result_fd >= 0 else 1, b"\n")
    try:
        reply = _invoke()
    except BaseException as e:  # noqa: B036 - the supervisor must get an answer
        reply = _error("InternalError", f"wrapper failure: {type(e).__name__}: {e}")
    _flush_logs()
    _write_all(result_fd if result_fd >= 0 else 1, (reply + "\n").encode())
    # os._exit: the answer is out, so skip interpreter teardown (a measurable
    # share of start-up cost) and do not wait for threads the handler left behind.
    os._exit(0)
