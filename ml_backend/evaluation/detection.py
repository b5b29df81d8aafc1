"""Lesion-level detection: how many lesions are found, and at what cost in false alarms.

Class-agnostic on purpose: a reader first needs the lesion boxed; its category is checked apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ml_backend.detector.interface import Box, Detection, GroundTruth, ImagePrediction


def box_iou(a: Sequence[Box], b: Sequence[Box]) -> npt.NDArray[np.float64]:
    """Pairwise IoU of xyxy boxes, shape (len(a), len(b))."""
    boxes_a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    boxes_b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0.0, None).prod(axis=2)
    area_a = (boxes_a[:, 2:] - boxes_a[:, :2]).prod(axis=1)
    area_b = (boxes_b[:, 2:] - boxes_b[:, :2]).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    iou: npt.NDArray[np.float64] = np.divide(
        inter, union, out=np.zeros_like(inter), where=union > 0
    )
    return iou


def match_image(
    gt_boxes: Sequence[Box], detections: Sequence[Detection], *, iou_threshold: float = 0.5
) -> tuple[int, int]:
    """Greedy matching, highest score first: returns (lesions found, false positives).

    Each detection takes the still-unmatched lesion it overlaps most (IoU >= threshold);
    a detection with none, including a duplicate on a found lesion, is a false positive.
    """
    ordered = sorted(detections, key=lambda d: d.score, reverse=True)
    if not ordered:
        return 0, 0
    iou = box_iou([d.xyxy for d in ordered], gt_boxes)
    free = np.ones(len(gt_boxes), dtype=bool)
    found = 0
    for row in iou:
        candidates = np.where(free & (row >= iou_threshold), row, -1.0)
        if len(candidates) and candidates.max() >= 0:
            free[int(candidates.argmax())] = False
            found += 1
    return found, len(ordered) - found


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
