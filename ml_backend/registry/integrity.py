"""Per-file sha256 of a sealed model version, and the check that it is still what was sealed.

A version's folder is read-only, but a disk fault, a restore from backup or a person can still
delete or change a file. The checksums are stored in the version's row at registration; serving
and pre-labeling check them before trusting the weights. A check re-hashes only when a file's
size or mtime changed since the last good check in this process, so a warm server pays a stat.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

Signature = tuple[tuple[str, int, int], ...]


def file_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every regular file under `folder`, keyed by its POSIX path relative to it."""
    out: dict[str, str] = {}
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath, name)
            with path.open("rb") as fh:
                out[path.relative_to(folder).as_posix()] = hashlib.file_digest(
                    fh, "sha256"
                ).hexdigest()
    return dict(sorted(out.items()))


def problems(folder: Path, expected: dict[str, str] | None) -> list[str]:
    """What is wrong with a version folder; empty when it is intact.

    Without stored checksums (versions registered before they existed) only presence is checked.
    """
    if not folder.is_dir():
        return ["its folder is missing"]
    if expected is None:
        return [] if any(folder.iterdir()) else ["its folder is empty"]
    found: list[str] = []
    for rel, digest in expected.items():
        path = folder / rel
        if not path.is_file():
            found.append(f"{rel} is missing")
            continue
        try:
            with path.open("rb") as fh:
                actual = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as exc:
            found.append(f"{rel} cannot be read ({exc.strerror or type(exc).__name__})")
            continue
        if actual != digest:
            found.append(f"{rel} has changed (sha256 differs)")
    return found


def _signature(folder: Path, expected: dict[str, str] | None) -> Signature | None:
    try:
        names = sorted(expected) if expected is not None else []
        return tuple(
            (rel, st.st_size, st.st_mtime_ns) for rel in names for st in [(folder / rel).stat()]
        )
    except OSError:
        return None


class IntegrityCache:
    """Remembers the signature of folders found intact, so only a changed file is re-hashed."""

    def __init__(self) -> None:
        self._good: dict[Path, Signature] = {}
        self._lock = threading.Lock()

    def problems(self, folder: Path, expected: dict[str, str] | None) -> list[str]:
        signature = _signature(folder, expected)
        with self._lock:
            known = signature is not None and self._good.get(folder) == signature
        if known and expected is not None:
            return []
        found = problems(folder, expected)
        with self._lock:
            if not found and signature is not None:
                self._good[folder] = signature
            else:
                self._good.pop(folder, None)
        return found
