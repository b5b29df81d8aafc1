"""Batch pre-labeling: every image without a prediction from the version gets one.

Each batch is committed as it finishes, so a killed run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from db import queries
from db.schemas import BoxRecord
from labeler.context import AppContext
from labeler.jobs.inference import predict_paths
from labeler.jobs.versions import resolve
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.interface import ImagePrediction
from ml_backend.detector.optimize import limit_proposals, optimize_for_inference, use_bf16


@dataclass(frozen=True)
class PredictSummary:
    model: str
    predicted: int
    already_predicted: int


def predict_pool(
    app: AppContext,
    *,
    version_id: str | None,
    start: Callable[[int], None] | None = None,
    advance: Callable[[int], None] | None = None,
) -> PredictSummary:
    registry, info = resolve(app, version_id)
    with app.sessions() as session:
        todo = queries.images_without_prediction(session, model_version_id=info.id)
        done = queries.count_predictions(session, model_version_id=info.id)
    if start is not None:
        start(len(todo))
    if not todo:
        return PredictSummary(info.id, 0, done)
    detector = FasterRCNNDetector.load(registry.path_of(info.id), device=app.settings.device)
    if app.settings.prelabel_fold_bn:
        optimize_for_inference(detector)
    use_bf16(detector, app.settings.prelabel_bf16)
    if app.settings.prelabel_proposals is not None:
        limit_proposals(detector, app.settings.prelabel_proposals)
    size = app.settings.predict_batch_size
    batches = predict_paths(
        detector, app.settings.home, [path for _, path in todo], batch_size=size, advance=advance
    )
    for offset, preds in zip(range(0, len(todo), size), batches, strict=True):
        ids = [image_id for image_id, _ in todo[offset : offset + size]]
        rows = [_row(i, p, app.settings.score_threshold) for i, p in zip(ids, preds, strict=True)]
        with app.sessions.begin() as session:
            queries.add_predictions(session, model_version_id=info.id, predictions=rows)
    return PredictSummary(info.id, len(todo), done)


def _row(image_id: int, pred: ImagePrediction, threshold: float) -> queries.NewPrediction:
    boxes = tuple(
        BoxRecord(xyxy=d.xyxy, birads=d.category, score=d.score, probs=d.probs)
        for d in pred.detections
    )
    return queries.NewPrediction(
        image_id=image_id,
        boxes=boxes,
        image_birads=pred.image_category(threshold=threshold),
        uncertainty=pred.uncertainty,
    )
