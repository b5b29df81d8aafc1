"""BrEaST-Lesions_USG (Pawlowska et al. 2024): BI-RADS 1-5 with 4a/4b/4c, several boxes per image.

Tumor boxes carry the image's BI-RADS; "other" findings are kept as boxes of kind "other" with no
category. The dataset has no official folds: folds come from a hash of the patient id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from core.birads import Birads, parse_birads, parse_pathology
from db.schemas import BoxRecord
from labeler.importing.datasets.csvfile import box, rows
from labeler.importing.items import ImportItem, ImportProblem, Reference

NAME = "breast-lesions-usg"


def items(root: Path) -> Iterator[ImportItem | ImportProblem]:
    boxes: dict[str, list[dict[str, str]]] = defaultdict(list)
    for _where, row in rows(root, "boxes_derived.csv", NAME):
        boxes[row["image_id"]].append(row)
    for where, row in rows(root, "images_derived.csv", NAME):
        try:
            yield _item(root, row, boxes.get(row["image_id"], []))
        except (KeyError, ValueError) as exc:
            yield ImportProblem(
                where, f"missing column {exc}" if isinstance(exc, KeyError) else str(exc)
            )


def _item(root: Path, row: dict[str, str], box_rows: list[dict[str, str]]) -> ImportItem:
    birads = parse_birads(row["birads"])
    records = tuple(_box(b, birads) for b in box_rows)
    has_lesion = any(r.kind == "lesion" for r in records)
    return ImportItem(
        path=root / row["image_path"],
        dataset=NAME,
        source_id=row["image_id"],
        patient_key=row["patient_id"],
        lesion_key=f"{row['patient_id']}_{row['image_id']}" if has_lesion else None,
        view=None,
        expected_size=(int(row["width"]), int(row["height"])),
        reference=Reference(
            birads=birads,
            pathology=parse_pathology(row["classification"]),
            boxes=records,
            histology=row.get("diagnosis") or None,
        ),
    )


def _box(row: dict[str, str], birads: Birads) -> BoxRecord:
    if row["kind"] == "tumor":
        return BoxRecord(xyxy=box(row), birads=birads, kind="lesion")
    return BoxRecord(xyxy=box(row), birads=None, kind="other")
