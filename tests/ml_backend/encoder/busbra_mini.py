"""LesionSamples straight from the bundled BUS-BRA sample's CSV: real crops without a database."""

from __future__ import annotations

import csv
from functools import cache

from core.birads import parse_birads
from ml_backend.encoder.data import LesionSample
from tests.conftest import BUNDLED

HOME = BUNDLED / "busbra_mini"  # png paths are relative to it


@cache
def mini_samples() -> tuple[LesionSample, ...]:
    """The 62 images, one lesion box each; `-l`/`-r` views share their lesion key."""
    with (HOME / "annotations_derived.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return tuple(
        LesionSample(
            image_id=i,
            png_path=row["image_path"],
            box=(float(row["x0"]), float(row["y0"]), float(row["x1"]), float(row["y1"])),
            lesion_key=row["lesion_id"],
            patient_key=row["patient_id"],
            fold=int(row["fold5"]),
            pathology=int(row["pathology"] == "malignant"),
            birads=parse_birads(row["birads"]),
            view=row["view"],
            split="train",
        )
        for i, row in enumerate(rows)
    )
