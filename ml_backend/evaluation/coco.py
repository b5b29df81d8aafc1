"""COCO mAP with pycocotools, from in-memory GroundTruth/ImagePrediction lists (no JSON files).

Class-aware mAP scores BI-RADS categories; class-agnostic ("lesion") mAP scores localisation
alone, so a box in the right place with the wrong category still counts there.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from typing import Any

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_convert

from core.birads import Birads
from ml_backend.detector.interface import Box, GroundTruth, ImagePrediction

LESION = "lesion"
CocoMap = dict[str, float | None]  # {"map50": ..., "map50_95": ...}


def xyxy_to_xywh(box: Box) -> list[float]:
    """COCO boxes are [x, y, width, height]; ours are [x1, y1, x2, y2]."""
    xywh: list[float] = box_convert(torch.tensor(box, dtype=torch.float64), "xyxy", "xywh").tolist()
    return xywh


def coco_map(
    ground_truths: Sequence[GroundTruth],
    predictions: Sequence[ImagePrediction],
    categories: Sequence[Birads],
) -> CocoMap:
    """Class-aware mAP@0.5 and mAP@[.5:.95] over `categories` (BI-RADS 1 has no boxes)."""
    ids = {category: i + 1 for i, category in enumerate(categories)}

    def category_id(category: Birads) -> int:
        if category not in ids:
            raise ValueError(
                f"BI-RADS {category.value} is not among the evaluated categories "
                f"{[c.value for c in categories]}"
            )
        return ids[category]

    names = {i: category.value for category, i in ids.items()}
    return _evaluate(ground_truths, predictions, names, category_id)


def lesion_map(
    ground_truths: Sequence[GroundTruth], predictions: Sequence[ImagePrediction]
) -> CocoMap:
    """Class-agnostic mAP: every box, whatever its BI-RADS category, is one 'lesion'."""
    return _evaluate(ground_truths, predictions, {1: LESION}, lambda _: 1)


def _evaluate(
    ground_truths: Sequence[GroundTruth],
    predictions: Sequence[ImagePrediction],
    names: dict[int, str],
    category_id: Callable[[Birads], int],
) -> CocoMap:
    if len(ground_truths) != len(predictions):
        raise ValueError(f"{len(ground_truths)} ground truths but {len(predictions)} predictions")
    dataset = _gt_dataset(ground_truths, names, category_id)
    results = _results(predictions, category_id)
    if not dataset["annotations"]:
        return {"map50": None, "map50_95": None}  # nothing to find: AP is undefined
    if not results:
        return {"map50": 0.0, "map50_95": 0.0}  # loadRes cannot take an empty list
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return {"map50_95": _defined(coco_eval.stats[0]), "map50": _defined(coco_eval.stats[1])}


def _gt_dataset(
    ground_truths: Sequence[GroundTruth],
    names: dict[int, str],
    category_id: Callable[[Birads], int],
) -> dict[str, list[dict[str, Any]]]:
    annotations: list[dict[str, Any]] = []
    for image_id, gt in enumerate(ground_truths):
        for box, category in zip(gt.boxes, gt.categories, strict=True):
            xywh = xyxy_to_xywh(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,  # COCOeval treats id 0 as "unmatched"
                    "image_id": image_id,
                    "category_id": category_id(category),
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": 0,
                }
            )
    return {
        "images": [{"id": i} for i in range(len(ground_truths))],
        "annotations": annotations,
        "categories": [{"id": i, "name": name} for i, name in names.items()],
    }


def _results(
    predictions: Sequence[ImagePrediction], category_id: Callable[[Birads], int]
) -> list[dict[str, Any]]:
    return [
        {
            "image_id": image_id,
            "category_id": category_id(det.category),
            "bbox": xyxy_to_xywh(det.xyxy),
            "score": float(det.score),
        }
        for image_id, prediction in enumerate(predictions)
        for det in prediction.detections
    ]


def _defined(value: float) -> float | None:
    """pycocotools reports -1 for 'undefined' (e.g. no ground truth in any category)."""
    return None if value < 0 else float(value)
