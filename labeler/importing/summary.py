"""The import report printed at the end (and as JSON with --json).

Every `where` in it is relative to LABELER_DATA_ROOT, and a DICOM source appears as its folder
plus a short content hash, never its file name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from core.birads import Birads, Pathology
from core.text import counts, plural
from db.models import Split
from db.queries.images import birads_histogram
from db.schemas import PixelText
from labeler.importing.items import ImportProblem

SPLITS = tuple(s.value for s in Split)


@dataclass(frozen=True)
class TextFound:
    """One newly imported image with text in its pixels (the words themselves are never kept)."""

    where: str
    image_id: int
    regions: int
    redacted: bool


@dataclass
class PixelTextTally:
    """What the OCR pass saw over the images this run added."""

    engine: str | None = None
    checked: int = 0
    not_checked: int = 0
    found: list[TextFound] = field(default_factory=list)

    def add(self, where: str, image_id: int, text: PixelText | None) -> None:
        if text is None or not text.checked:
            self.not_checked += 1
            return
        self.checked += 1
        if text.found:
            self.found.append(TextFound(where, image_id, len(text.regions), text.redacted))

    @property
    def redacted(self) -> int:
        return sum(f.redacted for f in self.found)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "checked": self.checked,
            "not_checked": self.not_checked,
            "found": len(self.found),
            "redacted": self.redacted,
            "images": [
                {
                    "where": f.where,
                    "image_id": f.image_id,
                    "regions": f.regions,
                    "redacted": f.redacted,
                }
                for f in self.found
            ],
        }


@dataclass
class ImportSummary:
    dataset: str
    images: int = 0  # files of this source that are now in the db (added + already present)
    added: int = 0
    already_present: int = 0
    labels_added: int = 0
    unlabeled: int = 0
    birads: Counter[Birads] = field(default_factory=Counter)
    pathology: Counter[Pathology] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)
    split_requested: Split | None = None  # --split; None: each image's fold decides
    kept_split: Counter[str] = field(default_factory=Counter)  # present images in another split
    patient_in_other_split: int = 0  # added to --split, their patient has images elsewhere
    dicom_deidentified: int = 0
    burned_in: Counter[str] = field(default_factory=Counter)
    held: list[int] = field(default_factory=list)  # image ids held back from Label Studio
    pixel_text: PixelTextTally = field(default_factory=PixelTextTally)
    errors: list[ImportProblem] = field(default_factory=list)
    warnings: list[ImportProblem] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "images": self.images,
            "added": self.added,
            "already_present": self.already_present,
            "labels_added": self.labels_added,
            "unlabeled": self.unlabeled,
            "birads": birads_histogram(self.birads.elements()),
            "pathology": {p.value: self.pathology[p] for p in Pathology if self.pathology[p]},
            "splits": dict(sorted(self.splits.items())),
            "split_requested": self.split_requested.value if self.split_requested else None,
            "kept_earlier_split": dict(sorted(self.kept_split.items())),
            "patient_in_other_split": self.patient_in_other_split,
            "dicom": {
                "deidentified": self.dicom_deidentified,
                "burned_in_annotation": dict(self.burned_in),
            },
            "held": {"count": len(self.held), "image_ids": self.held},
            "pixel_text": self.pixel_text.to_dict(),
            "errors": [{"where": p.where, "message": p.message} for p in self.errors],
            "warnings": [{"where": p.where, "message": p.message} for p in self.warnings],
            "seconds": round(self.seconds, 2),
        }

    def audit_detail(self) -> dict[str, Any]:
        """What goes to the events table: counts only, no file names."""
        detail = self.to_dict()
        detail["errors"] = len(self.errors)
        detail["warnings"] = len(self.warnings)
        detail["pixel_text"].pop("images")
        return detail

    def lines(self) -> list[str]:
        """The human-readable report (`labeler import` without --json)."""
        d = self.to_dict()
        lines = [
            f"{d['dataset']}: {plural(d['images'], 'image')} ({d['added']} added, "
            f"{d['already_present']} already present) in {d['seconds']} s",
            f"  BI-RADS: {counts(d['birads']) or '-'}   pathology: {counts(d['pathology']) or '-'}",
            f"  splits: {counts(d['splits'], SPLITS) or '-'}   unlabeled: {d['unlabeled']}",
        ]
        if self.kept_split:
            lines.append(
                f"  {plural(sum(self.kept_split.values()), 'image')} already stored kept their "
                f"earlier split ({counts(d['kept_earlier_split'], SPLITS)}), not "
                f"{d['split_requested']} "
                "(a re-import never moves an image between splits)"
            )
        if self.patient_in_other_split:
            lines.append(
                f"  {plural(self.patient_in_other_split, 'new image')} in {d['split_requested']} "
                "of patients with images in another split (their other views may train)"
            )
        if self.dicom_deidentified:
            lines.append(
                f"  DICOM de-identified: {self.dicom_deidentified}, "
                f"burned-in annotation: {d['dicom']['burned_in_annotation']}"
            )
        if self.held:
            lines.append(
                f"  held back from Label Studio (BurnedInAnnotation=YES): {len(self.held)}; "
                "review, then `labeler images release ID`"
            )
        lines += self._text_lines()
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  error: {e}" for e in self.errors]
        return lines

    def _text_lines(self) -> list[str]:
        t = self.pixel_text
        if not self.added:
            return []
        if t.engine is None:
            return [
                f"  text in the pixels: not checked for {plural(t.not_checked, 'image')} "
                "(LABELER_OCR=off, or no OCR engine: install Debian's tesseract-ocr)"
            ]
        line = (
            f"  text in the pixels ({t.engine}): found in {len(t.found)} of "
            f"{plural(t.checked, 'checked image')}, {t.redacted} redacted"
        )
        if t.not_checked:
            line += f", {t.not_checked} not checked (see warnings)"
        shown = [f"{f.where} (image {f.image_id})" for f in t.found if not f.redacted][:5]
        more = len([f for f in t.found if not f.redacted]) - len(shown)
        extra = [f"    with text: {', '.join(shown)}" + (f" and {more} more" if more else "")]
        return [line, *(extra if shown else [])]
