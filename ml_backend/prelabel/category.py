"""One rule for an image's BI-RADS category and its probability, used everywhere.

A radiologist reads the boxes shown to her (the best `max_boxes` at score >= `min_score`,
the same floor and count as the Label Studio pre-label) and calls the image by its most
suspicious lesion, not by its most confident one. So a pre-label with BI-RADS 3 at 0.8 and
BI-RADS 5 at 0.06 is a BI-RADS 5 image, both when stored and when accepted in Label Studio.
The old "top box at score >= 0.5" rule is gone. No shown box reads as BI-RADS 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from core.birads import Birads, Reading
from core.results import malignancy_score
from core.settings import Settings
from ml_backend.detector.interface import Detection


class Scored(Protocol):
    @property
    def score(self) -> float | None: ...


S = TypeVar("S", bound=Scored)


@dataclass(frozen=True)
class ShownBoxes:
    """Which boxes readers see: the best few above a floor (settings.prelabel_*).

    One rule for detections and stored boxes (db.schemas.BoxRecord) alike: the Label Studio
    pre-label, the stored category and consensus all read the boxes this picks.
    """

    min_score: float = 0.05
    max_boxes: int = 3

    def pick(self, boxes: Iterable[S]) -> tuple[S, ...]:
        """Highest score first; a box without a score counts as 0."""
        kept = [b for b in boxes if (b.score or 0.0) >= self.min_score]
        kept.sort(key=lambda b: -(b.score or 0.0))
        return tuple(kept[: self.max_boxes])

    @classmethod
    def from_settings(cls, settings: Settings) -> ShownBoxes:
        return cls(settings.prelabel_min_score, settings.prelabel_max_boxes)


@dataclass(frozen=True)
class ImageCategory:
    """An image's call: its category (decided by `deciding`, the most suspicious shown box) and
    its malignancy probability (0.0 with no shown box; calibrated when a calibrator was given)."""

    category: Birads
    probability: float
    deciding: Detection | None


def most_suspicious(categories: Iterable[Birads]) -> Birads:
    """The most suspicious category; none is BI-RADS 1. Also consensus's rule (studio.format)."""
    return max(categories, key=lambda c: c.order, default=Birads.B1)


def image_category(
    detections: Sequence[Detection],
    shown: ShownBoxes,
    *,
    plain_4: Reading = Reading.MALIGNANT,
    calibrate: Callable[[float], float] | None = None,
) -> ImageCategory:
    """The most suspicious shown box decides the category (ties go to the higher score).

    The probability is the grader's P(malignant) of the top-scoring shown box (box_malignancy),
    mapped through `calibrate` (the grader's Calibrator) when given. Ranking the images, this is
    also the evaluator's ROC score, so the AUC and the operating point rate what readers see."""
    boxes = shown.pick(detections)
    if not boxes:
        return ImageCategory(Birads.B1, 0.0, None)
    top = most_suspicious(d.category for d in boxes)
    deciding = next(d for d in boxes if d.category is top)  # boxes are highest score first
    score = box_malignancy(boxes[0], plain_4=plain_4)
    return ImageCategory(top, calibrate(score) if calibrate is not None else score, deciding)


def box_malignancy(detection: Detection, *, plain_4: Reading = Reading.MALIGNANT) -> float:
    """A box's raw P(malignant): the grader's when it graded the box (prelabel.grading), else
    the mass the detector's class probabilities put on malignant readings."""
    if detection.malignancy is not None:
        return detection.malignancy
    raw = malignancy_score([(detection.score, detection.probs)], plain_4=plain_4)
    return 0.0 if raw is None else raw
