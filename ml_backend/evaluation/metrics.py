"""Small pure metric functions on top of sklearn and statsmodels, JSON-friendly outputs.

Every proportion carries a 95% Wilson interval: test sets are small (tens of images per
category), where the normal approximation misbehaves near 0 and 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import numpy.typing as npt
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from sklearn.metrics import roc_auc_score, roc_curve
from statsmodels.stats.proportion import proportion_confint

IntMatrix = npt.NDArray[np.int64]
FloatMatrix = npt.NDArray[np.float64]


class Estimate(TypedDict):
    """A proportion successes/total with its 95% Wilson confidence interval."""

    value: float
    ci_low: float
    ci_high: float
    successes: int
    total: int


@dataclass(frozen=True)
class BinaryCounts:
    tp: int
    fp: int
    fn: int
    tn: int


def one_vs_rest(confusion: npt.NDArray[np.integer], index: int) -> BinaryCounts:
    """Collapse a KxK confusion matrix (rows truth, columns prediction) to class `index` vs rest."""
    matrix = np.asarray(confusion, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {matrix.shape}")
    tp = int(matrix[index, index])
    fn = int(matrix[index, :].sum()) - tp
    fp = int(matrix[:, index].sum()) - tp
    tn = int(matrix.sum()) - tp - fn - fp
    return BinaryCounts(tp=tp, fp=fp, fn=fn, tn=tn)


def proportion(successes: int, total: int) -> Estimate | None:
    """successes/total with a Wilson 95% CI; None when total is 0 (undefined, not an error)."""
    if total <= 0:
        return None
    low, high = proportion_confint(successes, total, alpha=0.05, method="wilson")
    return Estimate(
        value=successes / total,
        ci_low=float(low),
        ci_high=float(high),
        successes=int(successes),
        total=int(total),
    )


def binary_metrics(counts: BinaryCounts) -> dict[str, Estimate | None]:
    """Accuracy, sensitivity (TP/(TP+FN)) and specificity (TN/(TN+FP)), each with a 95% CI."""
    c = counts
    return {
        "ACC": proportion(c.tp + c.tn, c.tp + c.tn + c.fp + c.fn),
        "SEN": proportion(c.tp, c.tp + c.fn),
        "SPE": proportion(c.tn, c.tn + c.fp),
    }


def confusion_matrix(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> IntMatrix:
    """Counts with rows = truth, columns = prediction, in the explicit `labels` order.

    Values outside `labels` raise: sklearn would silently drop them and skew every rate.
    """
    unknown = sorted({*y_true, *y_pred} - set(labels))
    if unknown:
        raise ValueError(f"values {unknown} are not among the labels {list(labels)}")
    size = len(labels)
    if not y_true:
        return np.zeros((size, size), dtype=np.int64)
    matrix = _sk_confusion_matrix(list(y_true), list(y_pred), labels=list(labels))
    return np.asarray(matrix, dtype=np.int64)


def row_normalised(confusion: npt.NDArray[np.integer]) -> FloatMatrix:
    """Each row divided by its total (per-truth-class rates); empty rows stay all zero."""
    matrix = np.asarray(confusion, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    rates: FloatMatrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    return rates


def roc_auc(y_true: Sequence[bool], scores: Sequence[float]) -> float | None:
    """ROC AUC of `scores` for the positive class; None when only one class is present."""
    if len(set(y_true)) < 2:
        return None
    return float(roc_auc_score(np.asarray(y_true, dtype=bool), np.asarray(scores, dtype=float)))


def roc_points(y_true: Sequence[bool], scores: Sequence[float]) -> dict[str, list[float]] | None:
    """The ROC curve (scikit-learn), stored so the dashboard draws what was measured."""
    if len(set(y_true)) < 2:
        return None
    fpr, tpr, _ = roc_curve(np.asarray(y_true, dtype=bool), np.asarray(scores, dtype=float))
    return {"fpr": [float(x) for x in fpr], "tpr": [float(x) for x in tpr]}


def sensitivity_at_specificity(
    y_true: Sequence[bool], scores: Sequence[float], *, specificity: float
) -> float | None:
    """Best sensitivity among thresholds whose specificity is at least `specificity`."""
    curve = roc_points(y_true, scores)
    if curve is None:
        return None
    ok = [t for f, t in zip(curve["fpr"], curve["tpr"], strict=True) if 1 - f >= specificity]
    return max(ok) if ok else 0.0
