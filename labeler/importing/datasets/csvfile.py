"""Reading a dataset's CSV, with row numbers for error messages."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path


def rows(root: Path, name: str, dataset: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield (where, row); `where` names the file and line for per-row errors."""
    path = root / name
    if not path.is_file():
        from labeler.importing.datasets import DatasetLayoutError

        raise DatasetLayoutError(f"the path is not a {dataset} folder: {name} is missing")
    with path.open(newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            yield f"{name} line {line}", row


def box(row: dict[str, str]) -> tuple[float, float, float, float]:
    return (float(row["x0"]), float(row["y0"]), float(row["x1"]), float(row["y1"]))
