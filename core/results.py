"""Typed evaluation results: what the evaluator writes, the database stores and every reader reads.

One frozen pydantic model per result, so a renamed field is a type error in every reader instead
of a silent None. Each stored model carries `schema_version`; a change of shape bumps it and adds
a migration that rewrites the stored rows (db/migrations/versions/0006_typed_metrics.py made
version 1 of evaluations and simulation points, 0007_typed_version_metrics.py of model versions).
Values are plain JSON types, so the models round-trip through JSON columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Literal, assert_never

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

from core.birads import Birads, Reading, reading
from core.settings import Precision

SCHEMA_VERSION: Literal[1] = 1
GateMetric = Literal["map50", "sen_at_spe80"]
"""The metrics the retrain gate may compare (settings.retrain_gate)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Estimate(_Frozen):
    """A proportion successes/total with its 95% Wilson confidence interval."""

    value: float
    ci_low: float
    ci_high: float
    successes: int
    total: int


class BinaryRates(_Frozen):
    """Accuracy, sensitivity and specificity of one class against the rest; None: no cases."""

    acc: Estimate | None = None
    sen: Estimate | None = None
    spe: Estimate | None = None


class ConfusionMatrix(_Frozen):
    """Counts with rows = truth, columns = prediction, in `labels` order."""

    labels: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]

    @property
    def row_normalised(self) -> tuple[tuple[float, ...], ...]:
        """Each row divided by its total (per-truth-class rates); empty rows stay all zero."""
        return tuple(tuple(c / sum(row) if sum(row) else 0.0 for c in row) for row in self.counts)


class Roc(_Frozen):
    """A ROC curve's vertices (false- and true-positive rates), as scikit-learn gives them."""

    fpr: tuple[float, ...]
    tpr: tuple[float, ...]


class Screening(_Frozen):
    """Table II: benign vs malignant reading of each image, malignant the positive class."""

    plain_4_counted_as: Reading
    matrix: ConfusionMatrix
    rates: BinaryRates
    auc: float | None
    sen_at_spe80: float | None
    roc: Roc | None
    pathology_auc: float | None = None
    n_with_pathology: int | None = None
    operating_point: OperatingPoint | None = None  # None: the version has no calibrator


class PrelabelSource(_Frozen):
    """Which parts produced a stored pre-label (predictions.produced_by)."""

    detector: str  # model version id
    grader: Literal["detector", "encoder"] = "detector"  # who scored P(malignant)
    grader_version: str | None = None  # the encoder version that graded; None: the detector
    calibrated: bool  # the version carried a calibrator (calibration.json)
    splitter: str | None = None  # BI-RADS-4-excluded version that split plain 4; None: not split
    precision: Precision = "fp32"  # the detector's arithmetic (ml_backend.detector.precision)


class OperatingPoint(_Frozen):
    """SEN/SPE by pathology at the version's own threshold on the calibrated probability, chosen
    on the validation split for `target_sensitivity`; `Screening.rates` is the paper's fixed
    rule (BI-RADS >= 4 read as malignant), reported alongside."""

    target_sensitivity: float
    threshold: float
    rates: BinaryRates


class BiradsTable(_Frozen):
    """Table I: image-level BI-RADS confusion matrix and each category against the rest."""

    matrix: ConfusionMatrix
    per_category: dict[str, BinaryRates]


class Birads4Split(_Frozen):
    """Table III: expert 4A/4B against the split of a model that never saw BI-RADS 4."""

    matrix: ConfusionMatrix
    positive: str = Birads.B4B.value
    rates: BinaryRates
    threshold: float | None = None
    n_images: int | None = None
    splits: tuple[str, ...] = ()


class DetectionScores(_Frozen):
    """COCO mAP (category-aware and lesion-only) and lesion recall at IoU 0.5."""

    map50: float | None = None
    map50_95: float | None = None
    lesion_map50: float | None = None
    lesion_map50_95: float | None = None
    lesion_recall50: float | None = None
    fp_per_image: float | None = None


class ReaderBaseline(_Frozen):
    """The radiologists' own BI-RADS (the dataset's reference label) read against biopsy
    pathology on the images the model was scored on: the number a model must beat there.

    `auc` ranks images by BI-RADS (1 < 2 < 3 < 4A < 4 = 4B < 4C < 5: a plain 4 sits in the
    middle of 4). `at_4` reads BI-RADS >= 4 as malignant; `at_4b` reads 4B, 4C and 5 as
    malignant and leaves out plain-4 images, which cannot be placed (`plain_4_left_out`).
    Images without a pathology are not counted; normal ones count as not malignant, as in
    `Screening.pathology_auc`, so both are read on the same images."""

    n_images: int
    n_malignant: int
    auc: float | None  # None: one class only
    at_4: BinaryRates
    at_4b: BinaryRates
    plain_4_left_out: int = 0


class EvaluationMetrics(_Frozen):
    """One detector scored on one split: Tables I-III and the detection scores."""

    schema_version: Literal[1] = SCHEMA_VERSION
    n_images: int
    score_threshold: float
    detection: DetectionScores
    birads: BiradsTable
    screening: Screening
    birads4_split: Birads4Split | None = None
    acr_split: Birads4Split | None = None  # Table III by the ACR bins; None: no calibrator
    split_manifest_sha256: str | None = None  # the evaluated images; None: stored before 0006
    reader_baseline: ReaderBaseline | None = None  # None: no pathology (or stored before)
    prelabel: PrelabelSource | None = None  # the parts that graded the scored boxes

    def gate_value(self, name: GateMetric) -> float | None:
        """The value the retrain gate compares."""
        match name:
            case "map50":
                return self.detection.map50
            case "sen_at_spe80":
                return self.screening.sen_at_spe80
            case _:
                assert_never(name)


class ValidationSummary(_Frozen):
    """The few validation-split numbers kept with a trained detector version."""

    n_images: int
    map50: float | None
    map50_95: float | None
    lesion_recall50: float | None
    fp_per_image: float | None
    screening_acc: float | None

    @classmethod
    def of(cls, metrics: EvaluationMetrics) -> ValidationSummary:
        d, acc = metrics.detection, metrics.screening.rates.acc
        return cls(
            n_images=metrics.n_images,
            map50=d.map50,
            map50_95=d.map50_95,
            lesion_recall50=d.lesion_recall50,
            fp_per_image=d.fp_per_image,
            screening_acc=acc.value if acc is not None else None,
        )


class Birads4Threshold(_Frozen):
    """The P(BI-RADS 5) threshold splitting 4A from 4B, and which training images chose it."""

    value: float
    chosen_from: Literal["plain-4", "subcategories", "default"]
    n_images: int


class DetectorVersionMetrics(_Frozen):
    """What a detector version records about itself when it is registered."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["detector"] = "detector"
    n_train_images: int | None  # None: registered before the size was recorded
    val: ValidationSummary | None = None  # None: no validation images
    birads4_threshold: Birads4Threshold | None = None  # set for BI-RADS-4-excluded models


class RetrievalRow(_Frozen):
    """Retrieval on held-out lesions in one gallery setting (None: no query could be scored)."""

    map_at_10: float | None
    precision_at_1: float | None
    precision_at_10: float | None
    n_queries: int
    n_skipped: int  # queries without a relevant item in their gallery


class EncoderScores(_Frozen):
    """A lesion encoder scored on held-out lesions: benign/malignant classification (rates with
    their 95% Wilson interval) and retrieval per gallery setting ("all", "same-patient",
    "cross-patient"), plus finding a lesion's other view."""

    auc: float | None  # None when the held-out part holds one class only
    precision: float
    f1: float
    mcr: float | None  # None without multi-view lesions
    acc: float | None
    acc_ci: tuple[float, float] | None
    sen: float | None
    sen_ci: tuple[float, float] | None
    spe: float | None
    spe_ci: tuple[float, float] | None
    n_images: int
    n_multiview_lesions: int
    retrieval: dict[str, RetrievalRow]
    other_view: RetrievalRow
    n_gallery: int  # gallery images beyond the held-out part's own


class EncoderVersionMetrics(_Frozen):
    """What an encoder version records: its training recipe and its held-out scores."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["encoder"] = "encoder"
    method: str
    held_out: str  # "test split" or "fold K"
    n_train_images: int
    n_train_lesions: int
    losses: tuple[float, ...]
    train_seconds: float
    train: dict[str, JsonValue]  # the training recipe (EncoderTrainConfig as JSON)
    scores: EncoderScores | None = None  # None: nothing held out to score


VersionMetrics = Annotated[
    DetectorVersionMetrics | EncoderVersionMetrics, Field(discriminator="kind")
]
"""What a model version records about itself (model_versions.metrics, version.json)."""
VERSION_METRICS: TypeAdapter[DetectorVersionMetrics | EncoderVersionMetrics] = TypeAdapter(
    VersionMetrics
)


class SimulationMetrics(_Frozen):
    """One point of a simulated learning curve: the round's model on the test split."""

    schema_version: Literal[1] = SCHEMA_VERSION
    version: str
    map50: float | None
    lesion_map50: float | None
    auc: float | None
    acc: float | None
    sen: float | None
    spe: float | None

    @classmethod
    def of(cls, metrics: EvaluationMetrics, *, version: str) -> SimulationMetrics:
        rates = metrics.screening.rates
        return cls(
            version=version,
            map50=metrics.detection.map50,
            lesion_map50=metrics.detection.lesion_map50,
            auc=metrics.screening.auc,
            acc=_value(rates.acc),
            sen=_value(rates.sen),
            spe=_value(rates.spe),
        )


def _value(estimate: Estimate | None) -> float | None:
    return estimate.value if estimate is not None else None


def malignancy_score(
    boxes: Iterable[tuple[float, Mapping[Birads, float] | None]],
    *,
    plain_4: Reading = Reading.MALIGNANT,
) -> float | None:
    """An image's malignancy score: the probability mass its top-scoring box puts on categories
    that read as malignant. 0.0 without boxes; None when the top box kept no probabilities.

    `boxes` are (detection score, class probabilities) pairs.
    """
    ranked = list(boxes)
    if not ranked:
        return 0.0
    _, probs = max(ranked, key=lambda b: b[0])
    if probs is None:
        return None
    malignant = Reading.MALIGNANT
    return float(sum(p for c, p in probs.items() if reading(c, plain_4=plain_4) is malignant))
