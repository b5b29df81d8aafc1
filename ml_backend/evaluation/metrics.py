"""Small pure metric functions on top of sklearn and statsmodels, returning core.results types.

The one place that computes a Wilson interval or a ROC curve. Every proportion carries a 95%
Wilson interval: test sets are small (tens of images per category), where the normal
approximation misbehaves near 0 and 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.results import BinaryRates, BiradsTable, ConfusionMatrix, Estimate, Roc

IntMatrix = npt.NDArray[np.int64]


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
    from statsmodels.stats.proportion import proportion_confint  # 1 s (pandas): only here

    low, high = proportion_confint(successes, total, alpha=0.05, method="wilson")
    return Estimate(
        value=successes / total,
        ci_low=float(low),
        ci_high=float(high),
        successes=int(successes),
        total=int(total),
    )


def binary_metrics(counts: BinaryCounts) -> BinaryRates:
    """Accuracy, sensitivity (TP/(TP+FN)) and specificity (TN/(TN+FP)), each with a 95% CI."""
    c = counts
    return BinaryRates(
        acc=proportion(c.tp + c.tn, c.tp + c.tn + c.fp + c.fn),
        sen=proportion(c.tp, c.tp + c.fn),
        spe=proportion(c.tn, c.tn + c.fp),
    )


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
    from sklearn.metrics import confusion_matrix as _sk_confusion_matrix  # 1.4 s: only here

    matrix = _sk_confusion_matrix(list(y_true), list(y_pred), labels=list(labels))
    return np.asarray(matrix, dtype=np.int64)


def matrix_of(labels: Sequence[str], counts: npt.NDArray[np.integer]) -> ConfusionMatrix:
    """A confusion matrix as stored: the labels and the counts (rows truth)."""
    rows = np.asarray(counts, dtype=np.int64).tolist()
    return ConfusionMatrix(labels=tuple(labels), counts=tuple(tuple(r) for r in rows))


def per_class_table(labels: Sequence[str], counts: npt.NDArray[np.integer]) -> BiradsTable:
    """A confusion matrix with each class's one-vs-rest rates (Table I's layout)."""
    rates = {label: binary_metrics(one_vs_rest(counts, i)) for i, label in enumerate(labels)}
    return BiradsTable(matrix=matrix_of(labels, counts), per_category=rates)


def roc_auc(y_true: Sequence[bool], scores: Sequence[float]) -> float | None:
    """ROC AUC of `scores` for the positive class; None when only one class is present."""
    if len(set(y_true)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(y_true, dtype=bool), np.asarray(scores, dtype=float)))


def roc_points(y_true: Sequence[bool], scores: Sequence[float]) -> Roc | None:
    """The ROC curve (scikit-learn), stored so the dashboard draws what was measured; None
    when only one class is present."""
    if len(set(y_true)) < 2:
        return None
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(y_true, dtype=bool), np.asarray(scores, dtype=float))
    return Roc(fpr=tuple(float(x) for x in fpr), tpr=tuple(float(x) for x in tpr))


def sensitivity_at_specificity(
    y_true: Sequence[bool], scores: Sequence[float], *, specificity: float
) -> float | None:
    """Best sensitivity among thresholds whose specificity is at least `specificity`."""
    curve = roc_points(y_true, scores)
    if curve is None:
        return None
    ok = [t for f, t in zip(curve.fpr, curve.tpr, strict=True) if 1 - f >= specificity]
    return max(ok) if ok else 0.0
