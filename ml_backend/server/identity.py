"""Which image a task's pixels are, so a prediction is cached only under the image it scored.

`data.image_id` is what the caller says; the reference is what gets scored. A prediction is read
from or stored under an image only when the reference is that image's stored PNG (a path match,
free) or its bytes hash to the image's sha256 or its stored PNG's (one read, on the miss path).
Anything else is computed and returned but never stored (issue 12, item 2: cache poisoning).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from db.models import Image
from db.queries import images as image_queries
from ml_backend.server.errors import BackendError
from ml_backend.server.images import ImageRef
from ml_backend.server.local_files import LocalFiles


@dataclass(frozen=True)
class KnownImage:
    id: int
    width: int
    height: int
    sha256: str
    png: Path  # resolved

    @classmethod
    def of(cls, image: Image, home: Path) -> KnownImage:
        png = (home / image.png_path).resolve()
        return cls(image.id, image.width, image.height, image.sha256, png)


@dataclass(frozen=True)
class Identity:
    """The image a task points at or claims, and whether its reference is that image's PNG."""

    image: KnownImage | None
    verified: bool

    @property
    def image_id(self) -> int | None:
        """The id predictions may be read and stored under without reading any bytes."""
        return self.image.id if self.verified and self.image is not None else None


def identify(session: Session, *, claimed_id: int | None, ref: ImageRef, home: Path) -> Identity:
    """The stored PNG the reference is wins over the claimed id; a claim alone is unverified."""
    rel = ref.home_relative(home)
    if rel is not None:
        image = image_queries.image_by_png_path(session, png_path=rel)
        if image is not None:
            return Identity(KnownImage.of(image, home), verified=True)
    if claimed_id is None:
        return Identity(None, verified=False)
    image = image_queries.image_by_id(session, image_id=claimed_id)
    if image is None:
        return Identity(None, verified=False)
    known = KnownImage.of(image, home)
    local = ref.local.path if ref.local is not None and ref.local.exists else None
    return Identity(known, verified=local is not None and local == known.png)


@dataclass
class PngDigests:
    """sha256 of our stored PNGs, re-hashed only when a file's stat changes."""

    files: LocalFiles
    max_bytes: int
    _known: dict[Path, tuple[tuple[int, int, int], str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def matches(self, image: KnownImage, data: bytes) -> bool:
        """Whether `data` is the image: its import sha256 or its stored PNG's."""
        digest = hashlib.sha256(data).hexdigest()
        return digest == image.sha256 or digest == self._of(image.png)

    def _of(self, png: Path) -> str | None:
        try:
            st = os.stat(png)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            with self._lock:
                known = self._known.get(png)
            if known is not None and known[0] == key:
                return known[1]
            digest = hashlib.sha256(self.files.read(self.files.judge(png), self.max_bytes))
        except (OSError, BackendError):
            return None
        with self._lock:
            self._known[png] = (key, digest.hexdigest())
        return digest.hexdigest()
