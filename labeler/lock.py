"""A single-flight lock for cron jobs: `flock` on a file under LABELER_HOME.

The kernel drops an flock when the last process holding its descriptor dies, so a lock left by a
killed run never blocks the next one; the pid written inside only serves the "already running"
message. A child started with the descriptor (`pass_fds`, or inherited by a spawned
multiprocessing child) holds the lock as long as it lives, and `die_with_parent` (a subprocess's
`preexec_fn`) or `exit_with_parent` (a spawned child's first call) makes it die with its parent.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.errors import BusyError

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class AlreadyRunningError(BusyError):
    """Another live process holds the lock (exit code 4)."""


@dataclass(frozen=True)
class HeldLock:
    path: Path
    fd: int  # pass it to a child (`pass_fds`) and the child holds the lock too


@contextmanager
def single_flight(path: Path) -> Iterator[HeldLock]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise AlreadyRunningError(
                f"another run holds {path.name} (pid {holder}); this one exits"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield HeldLock(path, fd)
    finally:
        os.close(fd)  # closing releases the flock


@contextmanager
def wait_for_lock(path: Path, timeout_s: float, *, poll_s: float = 0.2) -> Iterator[None]:
    """`single_flight`, but wait up to `timeout_s` for the holder to finish (0: do not wait).

    Raises AlreadyRunningError when the lock is still held after the wait.
    """
    deadline = time.monotonic() + max(0.0, timeout_s)
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(single_flight(path))
                break
            except AlreadyRunningError as exc:
                if time.monotonic() >= deadline:
                    raise AlreadyRunningError(f"{exc} (waited {timeout_s:g} s)") from None
                time.sleep(poll_s)
        yield


def exit_with_parent(parent: int) -> None:
    """The first call of a spawned child that must not outlive `parent` (even after kill -9):
    ask Linux for SIGKILL when the parent dies, then exit at once if it already has."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` for a child that must not outlive this process (even after kill -9).

    In the child, before exec: ask Linux for SIGKILL when the parent dies (the setting survives
    exec), then check that the parent is still the one that forked it; if it died before the
    request, exit at once. libc is looked up here, in the parent, so the child only makes calls.
    """
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec
