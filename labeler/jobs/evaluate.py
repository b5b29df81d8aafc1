"""Evaluate a registered detector on a patient-disjoint split; store the result in `evaluations`.

A model trained without BI-RADS 4 is scored twice: on the non-4 images as usual, and on the
4A/4B images with the 4A/4B rule (the paper's Table III).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.birads import Birads
from core.errors import BadInputError
from core.results import (
    Birads4Split,
    Birads4Threshold,
    DetectorVersionMetrics,
    EvaluationMetrics,
)
from db.models import Split
from db.queries import evaluations as evaluation_queries
from labeler.context import AppContext
from labeler.jobs.inference import predict_all
from labeler.jobs.samples import LabeledImage, is_birads_4, labeled_images
from labeler.jobs.versions import NO4_KIND, intact_path, resolve
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.evaluation.birads4 import evaluate_4ab, p5_of, split_4
from ml_backend.evaluation.evaluator import DetectionEvaluator


@dataclass(frozen=True)
class VersionEvaluation:
    """A version scored on a split, as stored in `evaluations`."""

    model: str
    kind: str
    split: str
    metrics: EvaluationMetrics

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "kind": self.kind,
            "split": self.split,
            "metrics": self.metrics.model_dump(mode="json"),
        }


def evaluate_version(
    app: AppContext,
    *,
    version_id: str | None,
    split: Split,
    start: Callable[[int], None] | None = None,
    advance: Callable[[int], None] | None = None,
) -> VersionEvaluation:
    registry, info = resolve(app, version_id)
    detector = FasterRCNNDetector.load(intact_path(registry, info.id), device=app.settings.device)
    with app.sessions() as session:
        images = labeled_images(session, split=split)
    if not images:
        raise BadInputError(f"no labeled images in the {split.value} split: import a dataset first")
    if start is not None:
        start(len(images))
    metrics = score(app, detector, images, advance=advance).model_copy(
        update={"split_manifest_sha256": split_manifest(images)}
    )
    if info.kind == NO4_KIND:
        threshold = (
            info.metrics.birads4_threshold
            if isinstance(info.metrics, DetectorVersionMetrics)
            else None
        )
        table = _table_iii(app, detector, threshold, split, advance)
        metrics = metrics.model_copy(update={"birads4_split": table})
    with app.sessions.begin() as session:
        evaluation_queries.save_evaluation(
            session, model_version_id=info.id, dataset="all", split=split.value, metrics=metrics
        )
    return VersionEvaluation(info.id, info.kind, split.value, metrics)


def split_manifest(images: Sequence[LabeledImage]) -> str:
    """Identifies the images of a split (ids and contents), so two evaluations with the same
    hash were made on the same images and can be compared."""
    rows = sorted((im.image_id, im.sha256) for im in images)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def current_manifest(app: AppContext, split: Split) -> str:
    """The hash `evaluate_version` would store for `split` now."""
    with app.sessions() as session:
        return split_manifest(labeled_images(session, split=split))


def score(
    app: AppContext,
    detector: FasterRCNNDetector,
    images: list[LabeledImage],
    *,
    advance: Callable[[int], None] | None = None,
) -> EvaluationMetrics:
    """Table I/II metrics on the images the detector's label space can express."""
    space = detector.label_space
    usable = [im for im in images if Birads.B4 in space or not is_birads_4(im.image_category)]
    preds = predict_all(
        detector,
        app.settings.home,
        [im.png_path for im in usable],
        batch_size=app.settings.predict_batch_size,
        advance=advance,
    )
    evaluator = DetectionEvaluator(space, score_threshold=app.settings.score_threshold)
    evaluator.process([im.ground_truth() for im in usable], preds)
    return evaluator.evaluate()


def _table_iii(
    app: AppContext,
    detector: FasterRCNNDetector,
    threshold: Birads4Threshold | None,
    split: Split,
    advance: Callable[[int], None] | None,
) -> Birads4Split | None:
    """The 4A/4B rule against expert labels. BI-RADS 4 never trains this model, so every expert
    4A/4B image is unseen unless it helped choose the threshold (then: train split left out).
    None without expert 4A/4B images, or without a recorded threshold."""
    if threshold is None:
        return None
    splits = [split] if threshold.chosen_from == "subcategories" else list(Split)
    with app.sessions() as session:
        images = [im for s in splits for im in labeled_images(session, split=s)]
    expert = [im for im in images if im.image_category in (Birads.B4A, Birads.B4B)]
    if not expert:
        return None
    preds = predict_all(
        detector,
        app.settings.home,
        [im.png_path for im in expert],
        batch_size=app.settings.predict_batch_size,
        advance=advance,
    )
    predicted = [split_4(p5_of(p), threshold.value) for p in preds]
    table = evaluate_4ab([im.image_category for im in expert], predicted)
    return table.model_copy(
        update={"threshold": threshold.value, "splits": tuple(s.value for s in splits)}
    )
