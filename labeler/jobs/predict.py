"""Batch pre-labeling: every image without a prediction from the version gets one.

Each batch is committed as it finishes, so a killed run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from db.queries import predictions as prediction_queries
from labeler.context import AppContext
from labeler.jobs.inference import predict_paths
from labeler.jobs.versions import intact_path, resolve
from ml_backend.detector.prelabel import load_for_prelabel
from ml_backend.prelabel.pipeline import open_pipeline


@dataclass(frozen=True)
class PredictedBox:
    xyxy: tuple[float, float, float, float]
    birads: str | None
    score: float | None
    malignancy: float | None  # the grader's P(malignant), calibrated when the version is


@dataclass(frozen=True)
class PredictedImage:
    """One image pre-labeled by this run (`labeler predict --json`): public ids only."""

    image_id: int
    birads: str
    malignancy: float | None
    splitter: str | None  # the BI-RADS-4-excluded version that split a plain 4, if one did
    boxes: list[PredictedBox]


@dataclass(frozen=True)
class PredictSummary:
    model: str
    predicted: int
    already_predicted: int
    images: list[PredictedImage] = field(default_factory=list)


def _reported(row: prediction_queries.NewPrediction) -> PredictedImage:
    return PredictedImage(
        image_id=row.image_id,
        birads=row.image_birads.value,
        malignancy=row.malignancy,
        splitter=row.produced_by.splitter if row.produced_by is not None else None,
        boxes=[
            PredictedBox(b.xyxy, b.birads.value if b.birads else None, b.score, b.malignancy)
            for b in row.boxes
        ],
    )


def predict_pool(
    app: AppContext,
    *,
    version_id: str | None,
    start: Callable[[int], None] | None = None,
    advance: Callable[[int], None] | None = None,
) -> PredictSummary:
    registry, info = resolve(app, version_id)
    intact_path(registry, info.id)  # a damaged version is refused, even with no work
    with app.sessions() as session:
        todo = prediction_queries.images_without_prediction(session, model_version_id=info.id)
        done = prediction_queries.count_predictions(session, model_version_id=info.id)
    if start is not None:
        start(len(todo))
    if not todo:
        return PredictSummary(info.id, 0, done)
    pipeline = open_pipeline(
        registry, info.id, app.settings, lambda f: load_for_prelabel(f, app.settings)
    )
    size = app.settings.predict_batch_size
    reported: list[PredictedImage] = []
    batches = predict_paths(
        pipeline, app.settings.home, [path for _, path in todo], batch_size=size, advance=advance
    )
    for offset, prelabels in zip(range(0, len(todo), size), batches, strict=True):
        ids = [image_id for image_id, _ in todo[offset : offset + size]]
        rows = [p.row(i) for i, p in zip(ids, prelabels, strict=True)]
        with app.sessions.begin() as session:
            prediction_queries.add_predictions(session, model_version_id=info.id, predictions=rows)
        reported.extend(_reported(row) for row in rows)
    return PredictSummary(info.id, len(todo), done, reported)
