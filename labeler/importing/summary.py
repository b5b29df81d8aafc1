"""The import report printed at the end (and as JSON with --json)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from db.birads import Birads, Pathology
from db.queries import birads_histogram
from labeler.importing.items import ImportProblem


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
    dicom_deidentified: int = 0
    burned_in: Counter[str] = field(default_factory=Counter)
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
            "dicom": {
                "deidentified": self.dicom_deidentified,
                "burned_in_annotation": dict(self.burned_in),
            },
            "errors": [{"where": p.where, "message": p.message} for p in self.errors],
            "warnings": [{"where": p.where, "message": p.message} for p in self.warnings],
            "seconds": round(self.seconds, 2),
        }

    def audit_detail(self) -> dict[str, Any]:
        """What goes to the events table: counts only, no file names."""
        detail = self.to_dict()
        detail["errors"] = len(self.errors)
        detail["warnings"] = len(self.warnings)
        return detail
