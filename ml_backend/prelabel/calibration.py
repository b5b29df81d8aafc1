"""Calibrator and operating point, fitted on the validation split and stored with the version.

The grader's raw score (today the detector's class probabilities through
core.results.malignancy_score; the encoder's P(malignant) later) is not a probability: Platt
scaling (a 1-D logistic regression) maps it to one. The operating point is the lowest threshold
on the calibrated probability whose validation sensitivity (malignant vs benign by pathology)
reaches settings.target_sensitivity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from core.birads import Birads, Pathology, Reading
from core.results import BinaryRates
from ml_backend.detector.interface import GroundTruth, ImagePrediction
from ml_backend.evaluation.metrics import BinaryCounts, binary_metrics
from ml_backend.prelabel.category import ShownBoxes, image_category

CALIBRATION_FILE = "calibration.json"


LESION_STEPS = (Birads.B2, Birads.B3, Birads.B4, Birads.B5)  # a lesion's coarse categories


class BiradsCuts(BaseModel):
    """Where the encoder's regressed BI-RADS score changes category (2|3, 3|4, 4|5), fitted on
    the validation lesions so that the calls there come in the validation split's own
    proportions (quantile matching). A regression head trained with MSE pulls every score
    towards the training mean; fixed cut points (the middle between two categories' targets)
    then call one category for nearly every lesion, learned ones keep the order and spread it.
    An empty category has an infinite cut point (JSON `Infinity`)."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")

    uppers: tuple[float, float, float]  # score <= uppers[k] reads as LESION_STEPS[k]
    n_fit: int = Field(ge=0)

    def coarse(self, score: float) -> Birads:
        for upper, category in zip(self.uppers, LESION_STEPS, strict=False):
            if score <= upper:
                return category
        return Birads.B5


def fit_birads_cuts(scores: Sequence[float], categories: Sequence[Birads]) -> BiradsCuts | None:
    """Quantile-matched cut points; None without two lesion categories among the labels."""
    known = [
        (s, c.coarse) for s, c in zip(scores, categories, strict=True) if c.coarse in LESION_STEPS
    ]
    if len({c for _, c in known}) < 2:
        return None
    ranked = np.sort(np.asarray([s for s, _ in known], dtype=float))
    share = np.cumsum([sum(c is step for _, c in known) for step in LESION_STEPS]) / len(known)
    uppers = [float(np.quantile(ranked, q)) if q < 1 else float("inf") for q in share[:3]]
    for k in range(3):  # an empty category shares its neighbour's cut point
        if share[k] == 0:
            uppers[k] = -float("inf")
    return BiradsCuts(uppers=(uppers[0], uppers[1], uppers[2]), n_fit=len(known))


class Calibrator(BaseModel):
    """Platt scaling p = sigmoid(coef * score + intercept); the typed JSON of a version."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["platt"] = "platt"
    grader: Literal["detector", "encoder"] = "detector"
    coef: float
    intercept: float
    n_fit: int = Field(ge=0)
    target_sensitivity: float = Field(ge=0, le=1)
    threshold: float = Field(ge=0, le=1, description="On the calibrated probability.")
    validation: BinaryRates | None = None  # SEN/SPE (Wilson) at `threshold` on the fit data
    birads_cuts: BiradsCuts | None = None  # the encoder's BI-RADS head, read ordinally

    def __call__(self, score: float) -> float:
        z = self.coef * score + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def save(self, folder: Path) -> Path:
        path = folder / CALIBRATION_FILE
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, folder: Path) -> Calibrator | None:
        """The version's calibrator, or None for a version trained before calibration."""
        path = folder / CALIBRATION_FILE
        return cls.model_validate_json(path.read_text()) if path.exists() else None


def rates_at(malignant: Sequence[bool], probs: Sequence[float], threshold: float) -> BinaryRates:
    """SEN/SPE (Wilson intervals, evaluation.metrics) calling `probs >= threshold` malignant."""
    tp = sum(m and p >= threshold for m, p in zip(malignant, probs, strict=True))
    fn = sum(m and p < threshold for m, p in zip(malignant, probs, strict=True))
    fp = sum((not m) and p >= threshold for m, p in zip(malignant, probs, strict=True))
    tn = sum((not m) and p < threshold for m, p in zip(malignant, probs, strict=True))
    return binary_metrics(BinaryCounts(tp=tp, fp=fp, fn=fn, tn=tn))


def threshold_for_sensitivity(
    malignant: Sequence[bool], probs: Sequence[float], target: float
) -> float:
    """The highest threshold (best specificity) whose sensitivity still reaches `target`."""
    positives = sorted((p for m, p in zip(malignant, probs, strict=True) if m), reverse=True)
    if not positives:
        return 0.0
    needed = max(1, math.ceil(target * len(positives) - 1e-9))
    return float(positives[needed - 1])


def fit_calibrator(
    malignant: Sequence[bool],
    scores: Sequence[float],
    *,
    target_sensitivity: float,
    grader: Literal["detector", "encoder"] = "detector",
) -> Calibrator:
    """Platt-scale `scores` against pathology, then choose the operating point on them."""
    from sklearn.linear_model import LogisticRegression  # here: pre-labeling never imports it

    if len(set(malignant)) < 2:
        raise ValueError("calibration needs both benign and malignant validation images")
    x = np.asarray(scores, dtype=float).reshape(-1, 1)
    model = LogisticRegression(C=1e4).fit(x, np.asarray(malignant, dtype=int))
    base = Calibrator(
        grader=grader,
        coef=float(model.coef_[0, 0]),
        intercept=float(model.intercept_[0]),
        n_fit=len(scores),
        target_sensitivity=target_sensitivity,
        threshold=0.0,
    )
    probs = [base(s) for s in scores]
    threshold = threshold_for_sensitivity(malignant, probs, target_sensitivity)
    return base.model_copy(
        update={"threshold": threshold, "validation": rates_at(malignant, probs, threshold)}
    )


def fit_on_predictions(
    truths: Sequence[GroundTruth],
    predictions: Sequence[ImagePrediction],
    *,
    shown: ShownBoxes,
    target_sensitivity: float,
    plain_4: Reading = Reading.MALIGNANT,
) -> Calibrator | None:
    """The detector grader's calibrator from validation predictions: the raw score is the one
    pre-label rule's probability, the truth the biopsy. None without both benign and malignant
    images with pathology (the version is then stored without a calibrator)."""
    known = [
        (gt.pathology is Pathology.MALIGNANT, image_category(p.detections, shown, plain_4=plain_4))
        for gt, p in zip(truths, predictions, strict=True)
        if gt.pathology is not None
    ]
    if len({m for m, _ in known}) < 2:
        return None
    return fit_calibrator(
        [m for m, _ in known],
        [c.probability for _, c in known],
        target_sensitivity=target_sensitivity,
    )
