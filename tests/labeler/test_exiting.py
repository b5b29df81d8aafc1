"""labeler.exiting.finish: the exit code, atexit handlers and buffered output survive the fast
exit; the interpreter's teardown is skipped only when nothing else can be running."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labeler.exiting import exit_code

SCRIPT = """
import atexit, sys, threading, time, types
if {torch}:
    sys.modules["torch"] = types.ModuleType("torch")  # what the fast path looks for, cheaply

class Teardown:
    def __del__(self):
        print("teardown ran", flush=True)  # only the interpreter's own teardown calls this

kept = Teardown()
atexit.register(lambda: print("atexit ran"))
if {thread}:
    threading.Thread(target=time.sleep, args=(0.3,)).start()
sys.stdout.write("buffered, never flushed by the script")
from labeler.exiting import finish
finish(7)
"""


def _run(*, torch: bool, thread: bool) -> subprocess.CompletedProcess[str]:
    code = SCRIPT.format(torch=torch, thread=thread)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("torch", "thread", "teardown"),
    [(True, False, False), (True, True, True), (False, False, True)],
    ids=["fast", "thread-alive", "no-torch"],
)
def test_finish_keeps_code_output_and_atexit(torch: bool, thread: bool, teardown: bool) -> None:
    done = _run(torch=torch, thread=thread)
    assert done.returncode == 7, done.stderr
    assert "buffered, never flushed by the script" in done.stdout
    assert "atexit ran" in done.stdout
    assert ("teardown ran" in done.stdout) is teardown


def test_exit_code_follows_sys_exit(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(SystemExit()) == 0 and exit_code(SystemExit(3)) == 3
    assert exit_code(SystemExit("no such image")) == 1
    assert capsys.readouterr().err == "no such image\n"
