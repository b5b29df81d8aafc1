"""Ending a process that loaded torch without paying for the interpreter's teardown.

Python's finalisation after a model command (every module's objects, torch's C++ state) costs
about 1 CPU-second, 2 after training, and does nothing a finished command needs: our files are
written in `with` blocks and the database has committed. `finish` runs what a normal exit runs
first (the atexit handlers: logging, temporary folders, multiprocessing's children), flushes
stdout and stderr, and ends the process with the exit code. It exits the normal way when torch
was never imported, while another thread is alive, or under a profiler or tracer (cProfile and
debuggers write their results after the program returns).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def finish(code: int) -> NoReturn:
    """End the process with `code`; the fast way only when nothing else can still be running."""
    watched = sys.getprofile() is not None or sys.gettrace() is not None
    if "torch" not in sys.modules or threading.active_count() > 1 or watched:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or gone: nothing to flush
            stream.flush()
    os._exit(code)


def exit_code(exc: SystemExit) -> int:
    """The status `sys.exit` would give: None is 0, a message is printed and gives 1."""
    if exc.code is None or isinstance(exc.code, int):
        return int(exc.code or 0)
    print(exc.code, file=sys.stderr)
    return 1
