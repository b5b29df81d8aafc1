"""Batch pre-labeling: every image without a prediction from the version gets one.

Each batch is committed as it finishes, so a killed run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from db.queries import predictions as prediction_queries
from labeler.context import AppContext
from labeler.jobs.inference import predict_paths
from labeler.jobs.versions import intact_path, resolve
from ml_backend.detector.prelabel import load_for_prelabel, prediction_row


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
    folder = intact_path(registry, info.id)  # a damaged version is refused, even with no work
    with app.sessions() as session:
        todo = prediction_queries.images_without_prediction(session, model_version_id=info.id)
        done = prediction_queries.count_predictions(session, model_version_id=info.id)
    if start is not None:
        start(len(todo))
    if not todo:
        return PredictSummary(info.id, 0, done)
    detector = load_for_prelabel(folder, app.settings)
    size = app.settings.predict_batch_size
    batches = predict_paths(
        detector, app.settings.home, [path for _, path in todo], batch_size=size, advance=advance
    )
    for offset, preds in zip(range(0, len(todo), size), batches, strict=True):
        ids = [image_id for image_id, _ in todo[offset : offset + size]]
        threshold = app.settings.score_threshold
        rows = [prediction_row(i, p, threshold=threshold) for i, p in zip(ids, preds, strict=True)]
        with app.sessions.begin() as session:
            prediction_queries.add_predictions(session, model_version_id=info.id, predictions=rows)
    return PredictSummary(info.id, len(todo), done)
