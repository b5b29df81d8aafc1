"""A detector set up for pre-labeling, and its output as prediction rows.

Shared by the batch job (`labeler predict`) and the HTTP backend's cache-miss path, so both
store the same boxes for the same image and version.
"""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings
from db.queries import predictions as prediction_queries
from db.schemas import BoxRecord
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.interface import ImagePrediction
from ml_backend.detector.optimize import limit_proposals, optimize_for_inference, use_bf16


def load_for_prelabel(folder: Path, settings: Settings) -> FasterRCNNDetector:
    """Load a registered version with the inference options from settings."""
    detector = FasterRCNNDetector.load(folder, device=settings.device)
    if settings.prelabel_fold_bn:
        optimize_for_inference(detector)
    use_bf16(detector, settings.prelabel_bf16)
    if settings.prelabel_proposals is not None:
        limit_proposals(detector, settings.prelabel_proposals)
    return detector


def prediction_row(
    image_id: int, pred: ImagePrediction, *, threshold: float
) -> prediction_queries.NewPrediction:
    boxes = tuple(
        BoxRecord(xyxy=d.xyxy, birads=d.category, score=d.score, probs=d.probs)
        for d in pred.detections
    )
    return prediction_queries.NewPrediction(
        image_id=image_id,
        boxes=boxes,
        image_birads=pred.image_category(threshold=threshold),
        uncertainty=pred.uncertainty,
    )
