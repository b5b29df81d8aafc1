"""One import at a time per LABELER_HOME: a blocking `flock` on LABELER_HOME/import.lock.

A second import waits for the first rather than failing (it then finds the first one's images
already present). The kernel drops an flock when its process dies, so a killed import never
blocks the next one. Only the lock file is opened under home: never the database.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "import.lock"


@contextmanager
def import_lock(home: Path, *, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the import lock; if another import holds it, say so once and wait for it."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            if on_wait is not None:
                on_wait(f"another import is running (pid {holder}); waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def sweep_temporaries(images_dir: Path) -> int:
    """Remove `.NAME.PID.tmp` files a killed import left; safe only under the import lock."""
    removed = 0
    if not images_dir.is_dir():
        return 0
    for tmp in images_dir.glob("*/.*.tmp"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
