"""Evaluate a registered detector on a patient-disjoint split; store the result in `evaluations`.

A model trained without BI-RADS 4 is scored twice: on the non-4 images as usual, and on the
4A/4B images with the 4A/4B rule (the paper's Table III). `dataset` restricts the images to one
imported dataset (external validation); split None scores every split of it. Where the images
carry biopsy pathology, the radiologists' own BI-RADS is scored on them too (the baseline).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.birads import Birads
from core.errors import BadInputError
from core.results import (
    Birads4Split,
    Birads4Threshold,
    DetectorVersionMetrics,
    EvaluationMetrics,
)
from core.settings import PrecisionSetting
from db.models import Split
from db.queries import evaluations as evaluation_queries
from db.queries import images as image_queries
from labeler.context import AppContext
from labeler.jobs.inference import predict_all
from labeler.jobs.samples import LabeledImage, is_birads_4, labeled_images
from labeler.jobs.versions import NO4_KIND, intact_path, resolve
from ml_backend.detector.interface import ImagePrediction
from ml_backend.detector.prelabel import load_for_prelabel
from ml_backend.evaluation.birads4 import evaluate_4ab, p5_of, split_4
from ml_backend.evaluation.evaluator import DetectionEvaluator
from ml_backend.evaluation.readers import reader_baseline
from ml_backend.prelabel.calibration import Calibrator
from ml_backend.prelabel.category import ShownBoxes
from ml_backend.prelabel.pipeline import BoxFinder, GradedBoxes, open_pipeline

ALL = "all"  # the stored dataset / split of an evaluation over every dataset / split


@dataclass(frozen=True)
class VersionEvaluation:
    """A version scored on a split, as stored in `evaluations` (dataset and split "all": every
    dataset, every split); `by_split`: how many of the images each split holds."""

    model: str
    kind: str
    split: str
    metrics: EvaluationMetrics
    dataset: str = ALL
    by_split: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "kind": self.kind,
            "dataset": self.dataset,
            "split": self.split,
            "images_by_split": self.by_split,
            "metrics": self.metrics.model_dump(mode="json"),
        }


def evaluate_version(
    app: AppContext,
    *,
    version_id: str | None,
    split: Split | None,
    dataset: str | None = None,
    precision: PrecisionSetting | None = None,
    start: Callable[[int], None] | None = None,
    advance: Callable[[int], None] | None = None,
) -> VersionEvaluation:
    """Score a version on `split` (None: every split) of `dataset` (None: every dataset), in
    the arithmetic readers' pre-labels get (`precision` None: settings.prelabel_precision;
    "fp32": the reference), recorded with the stored tables. A damaged version, then an unknown
    dataset or no labeled image there, is refused before the model loads."""
    registry, info = resolve(app, version_id)
    intact_path(registry, info.id)
    images = _images(app, split=split, dataset=dataset)
    pipeline = open_pipeline(
        registry,
        info.id,
        app.settings,
        lambda f: load_for_prelabel(f, app.settings, precision),
        with_splitter=False,
    )
    threshold = (
        info.metrics.birads4_threshold
        if info.kind == NO4_KIND and isinstance(info.metrics, DetectorVersionMetrics)
        else None
    )
    expert, splits = _table_iii_images(app, threshold, split, dataset)
    if start is not None:
        start(len(usable_images(pipeline.label_space, images)) + len(expert))
    metrics = score(
        app, GradedBoxes(pipeline), images, advance=advance, calibrator=pipeline.calibrator
    ).model_copy(
        update={"split_manifest_sha256": split_manifest(images), "prelabel": pipeline.source}
    )
    if threshold is not None and expert:
        table = _table_iii(app, pipeline.detector, threshold, expert, splits, advance)
        metrics = metrics.model_copy(update={"birads4_split": table})
    split_name, dataset_name = split.value if split else ALL, dataset or ALL
    with app.sessions.begin() as session:
        evaluation_queries.save_evaluation(
            session,
            model_version_id=info.id,
            dataset=dataset_name,
            split=split_name,
            metrics=metrics,
        )
    by_split = Counter(im.split.value for im in images)
    return VersionEvaluation(
        info.id, info.kind, split_name, metrics, dataset_name, dict(sorted(by_split.items()))
    )


def _images(app: AppContext, *, split: Split | None, dataset: str | None) -> list[LabeledImage]:
    with app.sessions() as session:
        known = image_queries.dataset_names(session)
        if dataset is not None and dataset not in known:
            names = ", ".join(known) or "none yet, `labeler import` one"
            raise BadInputError(f"unknown dataset {dataset!r} (imported: {names})")
        images = labeled_images(session, split=split, dataset=dataset)
    if not images:
        where = f"the {split.value} split" if split else "any split"
        of = f" of {dataset}" if dataset else ""
        raise BadInputError(f"no labeled images in {where}{of}: import a dataset first")
    return images


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
    detector: BoxFinder,
    images: list[LabeledImage],
    *,
    advance: Callable[[int], None] | None = None,
    calibrator: Calibrator | None = None,
) -> EvaluationMetrics:
    """Table I/II metrics on the images the detector's label space can express; with the
    version's calibrator, also SEN/SPE at its validation-chosen operating point."""
    usable, preds = predict_usable(app, detector, images, advance=advance)
    return score_predictions(app, detector.label_space, usable, preds, calibrator=calibrator)


def predict_usable(
    app: AppContext,
    detector: BoxFinder,
    images: list[LabeledImage],
    *,
    advance: Callable[[int], None] | None = None,
) -> tuple[list[LabeledImage], list[ImagePrediction]]:
    """The images the detector's label space can express, and its predictions for them."""
    usable = usable_images(detector.label_space, images)
    preds = predict_all(
        detector,
        app.settings.home,
        [im.png_path for im in usable],
        batch_size=app.settings.predict_batch_size,
        advance=advance,
    )
    return usable, preds


def usable_images(space: Sequence[Birads], images: Sequence[LabeledImage]) -> list[LabeledImage]:
    """The images a label space can express: without plain 4 in it, no BI-RADS 4 image."""
    return [im for im in images if Birads.B4 in space or not is_birads_4(im.image_category)]


def score_predictions(
    app: AppContext,
    space: Sequence[Birads],
    usable: Sequence[LabeledImage],
    preds: Sequence[ImagePrediction],
    *,
    calibrator: Calibrator | None = None,
) -> EvaluationMetrics:
    evaluator = DetectionEvaluator(
        space,
        score_threshold=app.settings.score_threshold,
        shown=ShownBoxes.from_settings(app.settings),
        calibrator=calibrator,
    )
    evaluator.process([im.ground_truth() for im in usable], preds)
    baseline = reader_baseline(
        [im.image_category for im in usable], [im.pathology for im in usable]
    )
    return evaluator.evaluate().model_copy(update={"reader_baseline": baseline})


def _table_iii_images(
    app: AppContext, threshold: Birads4Threshold | None, split: Split | None, dataset: str | None
) -> tuple[list[LabeledImage], list[Split]]:
    """The expert 4A/4B images Table III scores, and the splits they come from. BI-RADS 4 never
    trains this model, so every expert 4A/4B image is unseen unless it helped choose the
    threshold (then: train split left out). Nothing without a recorded threshold."""
    if threshold is None:
        return [], []
    if threshold.chosen_from != "subcategories":
        splits = list(Split)
    else:
        splits = [split] if split is not None else [Split.VAL, Split.TEST]
    with app.sessions() as session:
        images = [im for s in splits for im in labeled_images(session, split=s, dataset=dataset)]
    return [im for im in images if im.image_category in (Birads.B4A, Birads.B4B)], splits


def _table_iii(
    app: AppContext,
    detector: BoxFinder,
    threshold: Birads4Threshold,
    expert: Sequence[LabeledImage],
    splits: Sequence[Split],
    advance: Callable[[int], None] | None,
) -> Birads4Split:
    """The 4A/4B rule (P(BI-RADS 5) against the stored threshold) on the expert images."""
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
