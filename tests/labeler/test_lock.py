"""The lock's two guarantees for child processes, with real processes: a child given the lock's
descriptor holds the lock while it lives, and a child started with `die_with_parent` dies with
its parent even after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import ExitCode
from labeler.lock import AlreadyRunningError, single_flight

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(condition())  # type: ignore[operator]


def test_a_child_given_the_descriptor_holds_the_lock_after_its_parent_is_gone(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "retrain.lock"
    with single_flight(lock) as held:
        child = subprocess.Popen(SLEEPER, pass_fds=(held.fd,))
    try:  # this process closed its descriptor: the child's copy keeps the lock
        with pytest.raises(AlreadyRunningError) as caught, single_flight(lock):
            pass
        assert caught.value.exit_code == ExitCode.BUSY
    finally:
        child.kill()
        child.wait()
    with single_flight(lock):  # the last holder died: free again
        pass


PARENT = """
import subprocess, sys, time
from labeler.lock import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         preexec_fn=die_with_parent())
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_child_dies_with_its_parent_even_after_kill_9() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert alive(child)
        os.kill(parent.pid, signal.SIGKILL)  # the parent only, not its process group
        parent.wait(10)
        assert wait_until(lambda: not alive(child), timeout=5), "the child outlived its parent"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
