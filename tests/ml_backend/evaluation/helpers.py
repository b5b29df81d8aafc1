"""Tiny builders for ground truths and predictions, so each test reads as its scenario."""

from __future__ import annotations

from core.birads import Birads, Pathology
from ml_backend.detector.interface import Box, Detection, GroundTruth, ImagePrediction


def det(
    box: Box, category: Birads, score: float, probs: dict[Birads, float] | None = None
) -> Detection:
    return Detection(xyxy=box, category=category, score=score, probs=probs or {category: score})


def pred(*detections: Detection) -> ImagePrediction:
    ordered = tuple(sorted(detections, key=lambda d: d.score, reverse=True))
    return ImagePrediction(detections=ordered, uncertainty=0.0)


def gt(
    *boxes: tuple[Box, Birads],
    image: Birads | None = None,
    pathology: Pathology | None = None,
) -> GroundTruth:
    """Image category defaults to the single box's category, or BI-RADS 1 without boxes."""
    if image is None:
        image = boxes[0][1] if boxes else Birads.B1
    return GroundTruth(
        boxes=tuple(b for b, _ in boxes),
        categories=tuple(c for _, c in boxes),
        image_category=image,
        pathology=pathology,
    )
