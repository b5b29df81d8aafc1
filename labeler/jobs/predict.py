"""Batch pre-labeling: every image without a prediction from the version gets one.

Each batch is committed as it finishes, so a killed run resumes where it stopped. Images are
decoded in worker processes while the model runs (`workers`), and a shard K/N takes only the
images whose id % N == K - 1, so N machines can pre-label one pool without overlap.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from core.errors import BadInputError
from core.settings import Settings
from db.queries import predictions as prediction_queries
from labeler.context import AppContext
from labeler.jobs.inference import decoded_batches, predict_batches
from labeler.jobs.versions import intact_path, resolve
from ml_backend.detector.prelabel import load_for_prelabel
from ml_backend.prelabel.pipeline import open_pipeline


class BadShardError(BadInputError):
    """--shard is not K/N with 1 <= K <= N (exit 2)."""


@dataclass(frozen=True)
class Shard:
    """Part `index` of `count` (1-based) of the pool: a split by image id, so every machine
    computes the same split without talking to the others, and a resumed run keeps its part."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
        index, count = (int(match[1]), int(match[2])) if match else (0, 0)
        if not 1 <= index <= count:
            raise BadShardError(f"--shard must be K/N with 1 <= K <= N, e.g. 1/2 (got {text!r})")
        return cls(index, count)

    def takes(self, image_id: int) -> bool:
        return image_id % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


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
    already_predicted: int  # by this version, on every shard
    images: list[PredictedImage] = field(default_factory=list)
    shard: str | None = None  # "K/N" when the run took one shard of the pool


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


def decoding_workers(settings: Settings) -> int:
    """LABELER_PREDICT_WORKERS, else none on the CPU: there decoding a stored PNG takes 1-3% of
    the model's time, less than a spawned worker costs to start (bench/predict_workers.py), while
    beside a GPU's fast model it would leave the GPU waiting."""
    if settings.predict_workers is not None:
        return settings.predict_workers
    if settings.device.split(":")[0] == "cpu":
        return 0
    return max(0, min(2, (os.cpu_count() or 1) - 1))


def _in_batches(todo: Sequence[tuple[int, str]], size: int) -> Iterator[list[int]]:
    for offset in range(0, len(todo), size):
        yield [image_id for image_id, _ in todo[offset : offset + size]]


def _todo(
    app: AppContext, version_id: str, shard: Shard | None
) -> tuple[list[tuple[int, str]], int]:
    """(image id, PNG path) still to pre-label (of the shard), and the version's stored count."""
    with app.sessions() as session:
        todo = prediction_queries.images_without_prediction(session, model_version_id=version_id)
        done = prediction_queries.count_predictions(session, model_version_id=version_id)
    if shard is not None:
        todo = [(image_id, path) for image_id, path in todo if shard.takes(image_id)]
    return todo, done


def predict_pool(
    app: AppContext,
    *,
    version_id: str | None,
    workers: int | None = None,
    shard: Shard | None = None,
    start: Callable[[int], None] | None = None,
    advance: Callable[[int], None] | None = None,
) -> PredictSummary:
    """Pre-label the images (of `shard`) the version has not pre-labeled; `workers` decoding
    processes (None: the setting; 0: in this process)."""
    registry, info = resolve(app, version_id)
    intact_path(registry, info.id)  # a damaged version is refused, even with no work
    todo, done = _todo(app, info.id, shard)
    label = str(shard) if shard is not None else None
    if start is not None:
        start(len(todo))
    if not todo:
        return PredictSummary(info.id, 0, done, shard=label)
    size = app.settings.predict_batch_size
    images = decoded_batches(  # the workers decode while the model loads
        app.settings.home,
        [path for _, path in todo],
        batch_size=size,
        workers=decoding_workers(app.settings) if workers is None else workers,
    )
    pipeline = open_pipeline(
        registry, info.id, app.settings, lambda f: load_for_prelabel(f, app.settings)
    )
    reported: list[PredictedImage] = []
    batches = predict_batches(pipeline, images, advance=advance)
    for ids, prelabels in zip(_in_batches(todo, size), batches, strict=True):
        rows = [p.row(i) for i, p in zip(ids, prelabels, strict=True)]
        with app.sessions.begin() as session:
            prediction_queries.add_predictions(session, model_version_id=info.id, predictions=rows)
        reported.extend(_reported(row) for row in rows)
    return PredictSummary(info.id, len(todo), done, reported, label)
