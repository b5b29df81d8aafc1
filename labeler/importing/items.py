"""What dataset adapters hand to the import pipeline."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from core.birads import Birads, Pathology
from db.schemas import BoxRecord


@dataclass(frozen=True)
class Reference:
    """A label that came with a public dataset."""

    birads: Birads
    pathology: Pathology | None
    boxes: tuple[BoxRecord, ...]
    histology: str | None = None


@dataclass(frozen=True)
class ImportItem:
    """One source file plus what its dataset says about it. None means "not known here"."""

    path: Path
    dataset: str
    source_id: str | None = None
    patient_key: str | None = None
    lesion_key: str | None = None
    view: str | None = None
    fold: int | None = None
    expected_size: tuple[int, int] | None = None  # (width, height) the labels refer to
    reference: Reference | None = None


@dataclass(frozen=True)
class ImportProblem:
    """A per-file error: the file is skipped, the batch goes on. `where` is never a patient id."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def fold_for_key(key: str, n_folds: int) -> int:
    """A stable fold in 1..n_folds for a patient key, so splits stay patient-disjoint."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % n_folds + 1
