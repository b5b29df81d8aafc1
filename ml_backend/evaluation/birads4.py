"""Splitting BI-RADS 4 into 4A/4B with a model that never saw a BI-RADS 4 image (Table III).

The model is trained on the unambiguous categories (label space 1, 2, 3, 5). On a BI-RADS 4
lesion, its P(BI-RADS 5) says how much the lesion looks like a clear malignancy: at or above a
threshold it reads as 4B (suspicious), below as 4A (low suspicion).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.birads import Birads
from core.results import Birads4Split
from ml_backend.detector.interface import ImagePrediction
from ml_backend.evaluation.metrics import binary_metrics, confusion_matrix, matrix_of, one_vs_rest

SPLIT_LABELS = (Birads.B4A, Birads.B4B)


def p5_of(prediction: ImagePrediction) -> float:
    """P(BI-RADS 5) of the top detection; 0.0 when nothing was detected."""
    if not prediction.detections:
        return 0.0
    top = max(prediction.detections, key=lambda d: d.score)
    return float(top.probs.get(Birads.B5, 0.0))


def split_4(p5: float, threshold: float) -> Birads:
    """4B when P(BI-RADS 5) >= threshold, else 4A."""
    return Birads.B4B if p5 >= threshold else Birads.B4A


def choose_threshold(p5: Sequence[float], malignant: Sequence[bool]) -> float:
    """The P(BI-RADS 5) threshold maximising Youden's J = sensitivity + specificity - 1.

    Fit it on training data only: the BI-RADS 4 training lesions with biopsy pathology
    (malignant = True), scored by the 1/2/3/5 model. Using the test lesions would leak the
    answer into the rule. Ties go to the highest threshold (fewest 4B calls); sklearn's
    extra "+inf" threshold (nothing positive) is never chosen.
    """
    if len(p5) != len(malignant):
        raise ValueError(f"{len(p5)} scores but {len(malignant)} pathology labels")
    if len(set(malignant)) < 2:
        raise ValueError("choose_threshold needs both benign and malignant lesions")
    from sklearn.metrics import roc_curve  # 1.4 s: every trainer imports this module

    fpr, tpr, thresholds = roc_curve(
        np.asarray(malignant, dtype=bool), np.asarray(p5, dtype=float), drop_intermediate=False
    )
    youden = np.where(np.isfinite(thresholds), tpr - fpr, -np.inf)
    return float(thresholds[int(np.argmax(youden))])


def evaluate_4ab(expert: Sequence[Birads], predicted: Sequence[Birads]) -> Birads4Split:
    """Expert 4A/4B vs the split: 2x2 matrix (rows expert, columns predicted), 4B positive.
    The caller adds the threshold and the splits the images came from."""
    if len(expert) != len(predicted):
        raise ValueError(f"{len(expert)} expert labels but {len(predicted)} predictions")
    for source, values in (("expert", expert), ("predicted", predicted)):
        for value in values:
            if value not in SPLIT_LABELS:
                raise ValueError(f"{source} label BI-RADS {value} is not 4A or 4B")
    labels = [c.value for c in SPLIT_LABELS]
    matrix = confusion_matrix([c.value for c in expert], [c.value for c in predicted], labels)
    return Birads4Split(
        matrix=matrix_of(labels, matrix),
        positive=Birads.B4B.value,
        rates=binary_metrics(one_vs_rest(matrix, SPLIT_LABELS.index(Birads.B4B))),
        n_images=len(expert),
    )
