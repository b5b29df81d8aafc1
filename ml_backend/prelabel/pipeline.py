"""The one pre-label pipeline: detector -> grader -> calibrator -> image category -> 4A/4B split.

Every place that makes a pre-label (`labeler predict`, the backend's `/predict` cache miss, the
retrain job's pre-label step through `labeler predict`, and the similar-lesion query) calls
`PrelabelPipeline.predict` and stores `Prelabel.row`, so the stored call, the score Label Studio
shows and the label a reader accepts come from the same rule. The evaluator scores the boxes of
`PrelabelPipeline.graded` with the same rule and calibrator; `labeler simulate` reviews with it.

- The detector finds the boxes.
- The grader (prelabel.grading) gives each box its P(malignant) and BI-RADS estimate: the active
  lesion encoder when there is one, else the detector's own class probabilities.
- The grader's calibrator (calibration.json of the encoder version, or of the detector version
  when the detector grades; fitted on the validation split) maps that score to a probability,
  per box and per image.
- The image's category is prelabel.category.image_category over the boxes readers are shown.
- A plain-4 call is split into 4A/4B by the active BI-RADS-4-excluded model (Table III of
  paper 001): its P(BI-RADS 5) on the image against the threshold stored with that version.
  Every shown plain-4 box then carries the split category, so readers see 4A or 4B.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from core.birads import Birads, Reading
from core.results import DetectorVersionMetrics, PrelabelSource
from core.settings import Precision, Settings
from db.queries.predictions import NewPrediction
from db.schemas import BoxRecord
from ml_backend.detector.interface import ImagePrediction, RGBImage
from ml_backend.encoder.checkpoint import load_encoder
from ml_backend.evaluation.birads4 import p5_of, split_4
from ml_backend.prelabel.calibration import Calibrator
from ml_backend.prelabel.category import ShownBoxes, box_malignancy, image_category
from ml_backend.prelabel.grading import DetectorGrader, EncoderGrader, Grader
from ml_backend.registry import ModelRegistry
from ml_backend.registry.kinds import ENCODER_KIND, NO4_KIND


class BoxFinder(Protocol):
    """What the pipeline needs of a detector (interface.Detector without load/save)."""

    @property
    def label_space(self) -> tuple[Birads, ...]: ...

    @property
    def precision(self) -> Precision: ...  # the arithmetic it runs in (detector.precision)

    def predict(self, images: Sequence[RGBImage]) -> list[ImagePrediction]: ...


Loader = Callable[[Path], BoxFinder]


@dataclass(frozen=True)
class Prelabel:
    """One image's pre-label: every box (plain 4 split when a splitter ran), the image's
    category by the one rule, its P(malignant) and each box's, and what produced it."""

    prediction: ImagePrediction
    category: Birads
    probability: float  # calibrated when source.calibrated
    box_probabilities: tuple[float | None, ...]  # per detection, same order
    source: PrelabelSource

    def row(self, image_id: int) -> NewPrediction:
        """The prediction row to store: every box, with its grader probability."""
        boxes = tuple(
            BoxRecord(xyxy=d.xyxy, birads=d.category, score=d.score, probs=d.probs, malignancy=p)
            for d, p in zip(self.prediction.detections, self.box_probabilities, strict=True)
        )
        return NewPrediction(
            image_id=image_id,
            boxes=boxes,
            image_birads=self.category,
            uncertainty=self.prediction.uncertainty,
            malignancy=self.probability,
            produced_by=self.source,
        )


@dataclass(frozen=True)
class Splitter:
    """The BI-RADS-4-excluded model and its P(BI-RADS 5) threshold (evaluation.birads4)."""

    version: str
    detector: BoxFinder
    threshold: float

    def split(self, image: RGBImage) -> Birads:
        return split_4(p5_of(self.detector.predict([image])[0]), self.threshold)


@dataclass(frozen=True)
class PrelabelPipeline:
    version: str
    detector: BoxFinder
    shown: ShownBoxes
    calibrator: Calibrator | None = None  # the grader's
    splitter: Splitter | None = None
    grader: Grader = field(default_factory=DetectorGrader)
    plain_4: Reading = Reading.MALIGNANT

    @property
    def label_space(self) -> tuple[Birads, ...]:
        return self.detector.label_space

    @property
    def source(self) -> PrelabelSource:
        return PrelabelSource(
            detector=self.version,
            grader=self.grader.name,
            grader_version=self.grader.version,
            calibrated=self.calibrator is not None,
            splitter=self.splitter.version if self.splitter is not None else None,
            precision=self.detector.precision,
        )

    def graded(self, images: Sequence[RGBImage]) -> list[ImagePrediction]:
        """The detector's boxes with the grader's P(malignant) and category (what the
        evaluator scores)."""
        preds = self.detector.predict(list(images))
        return [self.grader.grade(image, p) for p, image in zip(preds, images, strict=True)]

    def predict(self, images: Sequence[RGBImage]) -> list[Prelabel]:
        graded = self.graded(images)
        return [self.finish(p, image) for p, image in zip(graded, images, strict=True)]

    def finish(self, prediction: ImagePrediction, image: RGBImage) -> Prelabel:
        """Calibrate, categorise and split one graded prediction of `image`."""
        call = image_category(prediction.detections, self.shown, plain_4=self.plain_4)
        source = self.source
        if call.category is Birads.B4 and self.splitter is not None:
            prediction = _relabel_4(prediction, self.splitter.split(image))
            call = image_category(prediction.detections, self.shown, plain_4=self.plain_4)
        elif self.splitter is not None:
            source = source.model_copy(update={"splitter": None})  # nothing was split
        return Prelabel(
            prediction=prediction,
            category=call.category,
            probability=self._calibrate(call.probability),
            box_probabilities=tuple(
                self._calibrate(box_malignancy(d, plain_4=self.plain_4))
                for d in prediction.detections
            ),
            source=source,
        )

    def _calibrate(self, score: float) -> float:
        return self.calibrator(score) if self.calibrator is not None else score


@dataclass(frozen=True)
class GradedBoxes:
    """A pipeline seen as a detector whose boxes carry the grader's P(malignant) and category:
    what the evaluator scores, so its tables rate the boxes readers are shown."""

    pipeline: PrelabelPipeline

    @property
    def label_space(self) -> tuple[Birads, ...]:
        return self.pipeline.label_space

    @property
    def precision(self) -> Precision:
        return self.pipeline.detector.precision

    def predict(self, images: Sequence[RGBImage]) -> list[ImagePrediction]:
        return self.pipeline.graded(images)


def _relabel_4(prediction: ImagePrediction, category: Birads) -> ImagePrediction:
    detections = tuple(
        replace(d, category=category) if d.category is Birads.B4 else d
        for d in prediction.detections
    )
    return replace(prediction, detections=detections)


def open_pipeline(
    registry: ModelRegistry,
    version_id: str,
    settings: Settings,
    load: Loader,
    *,
    with_splitter: bool = True,
) -> PrelabelPipeline:
    """The pipeline for a detector version: the active encoder as grader when there is one
    (with its calibrator), else the detector grading itself (with the detector's), and the
    active splitter when the detector can call plain 4 and a BI-RADS-4-excluded version with a
    threshold is active (`with_splitter`; the evaluator scores Tables I-II without it)."""
    folder = registry.intact_path(version_id)
    detector = load(folder)
    splitter = None
    if with_splitter and Birads.B4 in detector.label_space:
        splitter = active_splitter(registry, load)
    grader: Grader = DetectorGrader()
    calibrator = Calibrator.load(folder)
    encoder = registry.active(ENCODER_KIND) if settings.grader == "auto" else None
    if encoder is not None:
        graded_by = registry.intact_path(encoder.id)
        calibrator = Calibrator.load(graded_by)
        grader = EncoderGrader(
            encoder.id,
            load_encoder(graded_by, device=settings.device),
            detector.label_space,
            cuts=calibrator.birads_cuts if calibrator is not None else None,
            flip_tta=settings.grader_flip_tta,
        )
    return PrelabelPipeline(
        version=version_id,
        detector=detector,
        shown=ShownBoxes.from_settings(settings),
        calibrator=calibrator,
        splitter=splitter,
        grader=grader,
    )


def active_splitter(registry: ModelRegistry, load: Loader) -> Splitter | None:
    """The active BI-RADS-4-excluded version with its stored 4A/4B threshold, or None."""
    info = registry.active(NO4_KIND)
    if info is None or not isinstance(info.metrics, DetectorVersionMetrics):
        return None
    threshold = info.metrics.birads4_threshold
    if threshold is None:
        return None
    return Splitter(info.id, load(registry.intact_path(info.id)), threshold.value)
