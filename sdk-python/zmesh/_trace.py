"""Turns an exception from user code into the protocol's error fields.

Imported only on the error path: traceback and linecache are not free.
"""

import linecache
import os
import traceback

from zmesh._protocol import MAX_ERROR_MESSAGE_BYTES, MAX_ERROR_STACK_BYTES

USER_FILE = "function.py"

_SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _is_sdk_frame(filename):
    return filename != USER_FILE and os.path.abspath(filename).startswith(_SDK_DIR)


def _trim(exc, seen):
    """Drops the wrapper's frames from `exc` and the exceptions chained to it.

    Frames before the first one in function.py are the wrapper (and asyncio)
    calling the handler; frames of the SDK after it are the inside of a
    zmesh.db call. Neither helps the author, so the stack starts and ends in
    their code wherever it passes through it.
    """
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        nodes = []
        tb = exc.__traceback__
        while tb is not None:
            nodes.append(tb)
            tb = tb.tb_next
        files = [n.tb_frame.f_code.co_filename for n in nodes]
        start = files.index(USER_FILE) if USER_FILE in files else 0
        keep = [n for n, f in zip(nodes[start:], files[start:]) if not _is_sdk_frame(f)]
        for a, b in zip(keep, keep[1:]):
            a.tb_next = b
        if keep:
            keep[-1].tb_next = None
        exc.__traceback__ = keep[0] if keep else None
        if exc.__cause__ is not None:
            _trim(exc.__cause__, seen)
        exc = exc.__context__


def clip(text, limit):
    """Bounds `text` to `limit` UTF-8 bytes, keeping its start and its end, where
    the exception line is; the cuts fall between characters."""
    if len(text) * 4 <= limit:
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    head = limit // 4
    tail = limit - head - 64  # room for the marker
    cut = len(data) - head - tail
    start = data[:head].decode("utf-8", "ignore")
    end = data[-tail:].decode("utf-8", "ignore")
    return f"{start}\n... [{cut} bytes cut] ...\n{end}"


def safe_str(obj):
    try:
        return str(obj)
    except Exception:
        return f"<{type(obj).__name__} whose str() failed>"


def register_source(source):
    """Lets tracebacks show the lines of function.py, which exists only in memory."""
    linecache.cache[USER_FILE] = (len(source), None, source.splitlines(True), USER_FILE)


def describe(exc, source):
    """Returns (message, stack) for an exception raised by user code."""
    register_source(source)
    try:
        _trim(exc, set())
        stack = "".join(traceback.format_exception(exc))
    except Exception:
        stack = f"{type(exc).__name__}: {safe_str(exc)}\n"
    return clip(safe_str(exc), MAX_ERROR_MESSAGE_BYTES), clip(stack, MAX_ERROR_STACK_BYTES)


def describe_syntax(exc, source):
    """Returns (message, stack) for code that did not compile: no frames, just the spot."""
    register_source(source)
    try:
        stack = "".join(traceback.format_exception_only(type(exc), exc))
    except Exception:
        stack = safe_str(exc) + "\n"
    return clip(safe_str(exc), MAX_ERROR_MESSAGE_BYTES), clip(stack, MAX_ERROR_STACK_BYTES)
