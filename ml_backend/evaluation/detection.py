"""Lesion-level detection: how many lesions are found, and at what cost in false alarms.

Class-agnostic on purpose: a reader first needs the lesion boxed; its category is checked apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from ml_backend.detector.interface import Box, Detection, GroundTruth, ImagePrediction
from ml_backend.evaluation.matching import match_boxes


def match_image(
    gt_boxes: Sequence[Box], detections: Sequence[Detection], *, iou_threshold: float = 0.5
) -> tuple[int, int]:
    """Lesions found and false positives: detections and lesions matched one-to-one at IoU >=
    threshold (`match_boxes`); a detection left over, such as a duplicate on a found lesion, is a
    false positive."""
    found = len(match_boxes([d.xyxy for d in detections], gt_boxes, iou_threshold=iou_threshold))
    return found, len(detections) - found


def lesion_detection(
    ground_truths: Sequence[GroundTruth],
    predictions: Sequence[ImagePrediction],
    *,
    score_threshold: float,
    iou_threshold: float = 0.5,
) -> dict[str, float | None]:
    """Lesion recall (found / all lesions) and false positives per image, at `score_threshold`."""
    if len(ground_truths) != len(predictions):
        raise ValueError(f"{len(ground_truths)} ground truths but {len(predictions)} predictions")
    found = false_positives = lesions = 0
    for gt, prediction in zip(ground_truths, predictions, strict=True):
        kept = [d for d in prediction.detections if d.score >= score_threshold]
        hits, misses = match_image(gt.boxes, kept, iou_threshold=iou_threshold)
        found, false_positives = found + hits, false_positives + misses
        lesions += len(gt.boxes)
    return {
        "lesion_recall": found / lesions if lesions else None,
        "fp_per_image": false_positives / len(ground_truths) if ground_truths else None,
    }
