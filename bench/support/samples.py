"""Copies of the bundled samples for tests and benchmarks: torch-free, so the test run's
controller process (which loads tests/conftest.py but runs no test) starts without torch."""

from __future__ import annotations

import shutil
from pathlib import Path

from labeler.sample import bundled


def copy_sample(name: str, data_root: Path) -> Path:
    """Copy a bundled sample under a data root (symlinks would point outside it)."""
    dest = data_root / name
    shutil.copytree(bundled(name), dest)
    return dest
