"""A stored pre-label as readers saw it: the pre-label rule's boxes and the image category.

Label Studio shows readers the best few boxes above a score floor (ml_backend.prelabel.category
ShownBoxes, from settings.prelabel_*; ml_backend.studio.format.prelabel_rule), and the image's
category is the most suspicious of those (image_category). The browser draws and names the same:
a stored pre-label's other boxes are kept apart, and its category is read again by the rule,
since pre-labels stored by an older rule may carry another one.
"""

from __future__ import annotations

from dataclasses import replace

from core.settings import Settings
from core.text import plural
from db.reports.images import BoxSet
from db.schemas import BoxRecord
from ml_backend.detector.interface import Detection
from ml_backend.prelabel.category import ShownBoxes, image_category

MODEL = "model"
HIDDEN = "model (not shown)"


def rule(settings: Settings) -> ShownBoxes:
    """The boxes readers are shown (what ml_backend.studio.format.prelabel_rule returns)."""
    return ShownBoxes.from_settings(settings)


def category(shown: tuple[BoxRecord, ...], shown_by: ShownBoxes) -> str:
    """The image category of the shown boxes: image_category, the one rule everywhere."""
    detections = [
        Detection(b.xyxy, b.birads, b.score or 0.0, dict(b.probs or {}), b.malignancy)
        for b in shown
        if b.birads is not None
    ]
    return image_category(detections, shown_by).category.value


def split(box_set: BoxSet, shown_by: ShownBoxes) -> tuple[BoxSet, BoxSet]:
    """A model's box set as (the boxes readers were shown, the rest as HIDDEN); both carry the
    rule's image category, and say so where the stored category differs."""
    shown = shown_by.pick(box_set.boxes)
    rest = tuple(b for b in box_set.boxes if not any(b is s for s in shown))
    birads = category(shown, shown_by)
    detail = box_set.detail
    if box_set.birads is not None and box_set.birads != birads:
        detail += f", stored as BI-RADS {box_set.birads} by an older rule"
    return (
        replace(box_set, source=MODEL, birads=birads, boxes=shown, detail=detail),
        replace(box_set, source=HIDDEN, birads=birads, boxes=rest, detail=detail),
    )


def rule_text(shown_by: ShownBoxes) -> str:
    """'the best 3 boxes at score >= 0.05'."""
    return f"the best {plural(shown_by.max_boxes, 'box')} at score >= {shown_by.min_score:g}"
