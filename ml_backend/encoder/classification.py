"""Benign/malignant metrics per image, plus Guo et al.'s inner-lesion misclassification rate.

AUC, precision and F1 come from scikit-learn; ACC/SEN/SPE with Wilson 95% CIs from
ml_backend.evaluation.metrics, the same functions as the detector's Table II.

MCR (Guo et al.): the fraction of multi-view lesions whose views do not all get the same
prediction. Only lesions with at least two views count: one view cannot disagree with itself.
All views of a lesion share its label, so with two classes "views predicted differently" is the
same as "some views right and some wrong": MCR measures view-inconsistency, which a single
per-image accuracy hides.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from core.results import Estimate
from ml_backend.evaluation.metrics import BinaryCounts, binary_metrics, roc_auc


@dataclass(frozen=True)
class ClassificationScores:
    auc: float | None  # None when the test set holds one class only
    acc: Estimate | None
    sen: Estimate | None
    spe: Estimate | None
    precision: float
    f1: float
    mcr: float | None  # None without multi-view lesions
    n_images: int
    n_multiview_lesions: int


def inner_lesion_mcr(
    predictions: Sequence[int], lesion_ids: Sequence[Hashable | None]
) -> tuple[float | None, int]:
    """(MCR, number of lesions with >= 2 views); images without a lesion id are skipped."""
    by_lesion: defaultdict[Hashable, set[int]] = defaultdict(set)
    views: defaultdict[Hashable, int] = defaultdict(int)
    for pred, lesion in zip(predictions, lesion_ids, strict=True):
        if lesion is not None:
            by_lesion[lesion].add(int(pred))
            views[lesion] += 1
    multiview = [lesion for lesion, n in views.items() if n >= 2]
    if not multiview:
        return None, 0
    inconsistent = sum(len(by_lesion[lesion]) > 1 for lesion in multiview)
    return inconsistent / len(multiview), len(multiview)


def binary_counts(y_true: Sequence[int], y_pred: Sequence[int]) -> BinaryCounts:
    """Malignant (1) is the positive class."""
    from sklearn.metrics import confusion_matrix  # 1.4 s: only when scoring

    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    return BinaryCounts(tp=int(tp), fp=int(fp), fn=int(fn), tn=int(tn))


def classification_scores(
    y_true: Sequence[int],
    malignant_prob: Sequence[float],
    lesion_ids: Sequence[Hashable | None],
    *,
    threshold: float = 0.5,
) -> ClassificationScores:
    """Per-image metrics at `threshold` on P(malignant); 1 = malignant in y_true."""
    from sklearn.metrics import f1_score, precision_score

    y_pred = [int(p >= threshold) for p in malignant_prob]
    rates = binary_metrics(binary_counts(y_true, y_pred))
    mcr, n_multiview = inner_lesion_mcr(y_pred, lesion_ids)
    truth = np.asarray(y_true, dtype=int)
    return ClassificationScores(
        auc=roc_auc([bool(v) for v in truth], list(malignant_prob)),
        acc=rates.acc,
        sen=rates.sen,
        spe=rates.spe,
        precision=float(precision_score(truth, y_pred, zero_division=0)),
        f1=float(f1_score(truth, y_pred, zero_division=0)),
        mcr=mcr,
        n_images=len(truth),
        n_multiview_lesions=n_multiview,
    )
