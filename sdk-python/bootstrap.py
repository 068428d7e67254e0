"""Entry point of the Python runtime: /usr/bin/python3.11 /opt/zmesh/sdk/python/bootstrap.py

Reads one invocation on stdin, runs the function's handler and writes one JSON
result on stdout (see zmesh/_runner.py). Kept tiny because a script is never
cached as bytecode: it is compiled again on every start.
"""

import sys

# The SDK is mounted read-only; trying to write __pycache__ there only costs time.
sys.dont_write_bytecode = True

if __name__ == "__main__":
    import os.path

    # PYTHON* variables are refused by the platform, so the SDK's location comes
    # from this file's, not from PYTHONPATH.
    _sdk_dir = os.path.dirname(os.path.abspath(__file__))
    if _sdk_dir not in sys.path:
        sys.path.insert(0, _sdk_dir)

    if sys.flags.no_site:
        # The platform runs Python with -S: the site module's work, chiefly
        # executing the .pth files of every installed package, is a fifth of
        # the interpreter's start. The system's package directories are
        # added here instead (the database driver lives there), and the two
        # builtins site would have defined that a function may call.
        _v = "%d.%d" % sys.version_info[:2]
        for _dir in ("/usr/local/lib/python%s/dist-packages" % _v, "/usr/lib/python3/dist-packages"):
            if _dir not in sys.path and os.path.isdir(_dir):
                sys.path.append(_dir)
        import builtins
        import _sitebuiltins

        builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
        builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")

    if _sdk_dir == "/opt/zmesh/sdk/python":
        # In a sandbox: the egress gateway's listener on the sandbox's own
        # loopback (supervisor/executor.h, EXEC_EGRESS_PROXY), which urllib
        # and most clients read from these. Set here rather than given at
        # exec: in the environment from the start they measurably slow
        # the interpreter's invocations (see supervisor/run.c).
        for _k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            os.environ.setdefault(_k, "http://127.0.0.1:3128")
    from zmesh._runner import main

    main()
