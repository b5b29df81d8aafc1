"""BUS-BRA (Gomez-Flores et al. 2024): one lesion box per image, BI-RADS 2-5, biopsy pathology.

`-l`/`-r` images are two views of one lesion. The official 5-fold split (`fold5`) is
patient-disjoint and is kept as each image's fold.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from core.birads import parse_birads, parse_pathology
from db.schemas import BoxRecord
from labeler.importing.datasets.csvfile import box, rows
from labeler.importing.items import ImportItem, ImportProblem, Reference

NAME = "busbra"


def items(root: Path) -> Iterator[ImportItem | ImportProblem]:
    for where, row in rows(root, "annotations_derived.csv", NAME):
        try:
            yield _item(root, row)
        except (KeyError, ValueError) as exc:
            yield ImportProblem(where, _reason(exc))


def _item(root: Path, row: dict[str, str]) -> ImportItem:
    birads = parse_birads(row["birads"])
    lesion = BoxRecord(xyxy=box(row), birads=birads)
    return ImportItem(
        path=root / row["image_path"],
        dataset=NAME,
        source_id=row["image_id"],
        patient_key=row["patient_id"],
        lesion_key=row["lesion_id"],
        view=row["view"],
        fold=int(row["fold5"]),
        expected_size=(int(row["width"]), int(row["height"])),
        reference=Reference(
            birads=birads,
            pathology=parse_pathology(row["pathology"]),
            boxes=(lesion,),
            histology=row.get("histology") or None,
        ),
    )


def _reason(exc: Exception) -> str:
    return f"missing column {exc}" if isinstance(exc, KeyError) else str(exc)
