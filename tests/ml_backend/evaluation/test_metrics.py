from __future__ import annotations

import numpy as np
import pytest

from core.results import ConfusionMatrix
from ml_backend.evaluation.metrics import (
    BinaryCounts,
    binary_metrics,
    confusion_matrix,
    matrix_of,
    one_vs_rest,
    proportion,
    roc_auc,
    roc_points,
    sensitivity_at_specificity,
)

# Rows truth, columns prediction, labels A B C; 26 cases.
#          A  B  C
#   A   [  5, 2, 0 ]   7
#   B   [  1, 6, 3 ]  10
#   C   [  0, 1, 8 ]   9
KNOWN = np.array([[5, 2, 0], [1, 6, 3], [0, 1, 8]])


def test_one_vs_rest_on_known_matrix() -> None:
    # B: TP = 6, FN = 1 + 3 = 4, FP = 2 + 1 = 3, TN = 26 - 6 - 4 - 3 = 13 (= 5 + 0 + 0 + 8).
    assert one_vs_rest(KNOWN, 1) == BinaryCounts(tp=6, fp=3, fn=4, tn=13)
    # A: TP = 5, FN = 2, FP = 1, TN = 26 - 8 = 18.
    assert one_vs_rest(KNOWN, 0) == BinaryCounts(tp=5, fp=1, fn=2, tn=18)


def test_binary_metrics_on_known_matrix() -> None:
    # B: ACC = (6 + 13) / 26 = 0.730769, SEN = 6 / 10 = 0.6, SPE = 13 / 16 = 0.8125.
    result = binary_metrics(one_vs_rest(KNOWN, 1))
    acc, sen, spe = result.acc, result.sen, result.spe
    assert acc is not None and sen is not None and spe is not None
    assert acc.value == pytest.approx(19 / 26)
    assert (acc.successes, acc.total) == (19, 26)
    assert sen.value == pytest.approx(0.6)
    assert spe.value == pytest.approx(0.8125)
    # C: TP = 8, FN = 1, FP = 3, TN = 14 -> SEN = 8/9, SPE = 14/17.
    c = binary_metrics(one_vs_rest(KNOWN, 2))
    assert c.sen is not None and c.sen.value == pytest.approx(8 / 9)
    assert c.spe is not None and c.spe.value == pytest.approx(14 / 17)


def test_wilson_interval_matches_hand_value() -> None:
    # Wilson, z = 1.96: centre (0.8 + 0.192) / 1.384 = 0.7167, half-width 0.2266.
    estimate = proportion(8, 10)
    assert estimate is not None
    assert estimate.value == 0.8
    assert round(estimate.ci_low, 4) == 0.4902
    assert round(estimate.ci_high, 4) == 0.9433


def test_undefined_rates_are_none_not_errors() -> None:
    assert proportion(0, 0) is None
    only_negatives = binary_metrics(BinaryCounts(tp=0, fp=2, fn=0, tn=3))
    assert only_negatives.sen is None
    assert only_negatives.spe is not None and only_negatives.spe.value == 0.6


def test_confusion_matrix_uses_the_explicit_label_order() -> None:
    matrix = confusion_matrix(["5", "1", "5"], ["5", "5", "1"], labels=["5", "3", "1"])
    assert matrix.tolist() == [[1, 0, 1], [0, 0, 0], [1, 0, 0]]


def test_confusion_matrix_refuses_values_outside_the_labels() -> None:
    with pytest.raises(ValueError, match="4"):
        confusion_matrix(["1", "4"], ["1", "1"], labels=["1", "2"])


def test_row_normalised_keeps_empty_rows_at_zero() -> None:
    matrix = matrix_of(["a", "b"], np.array([[3, 1], [0, 0]]))
    assert matrix == ConfusionMatrix(labels=("a", "b"), counts=((3, 1), (0, 0)))
    assert matrix.row_normalised == ((0.75, 0.25), (0.0, 0.0))


def test_roc_auc() -> None:
    # Positives 0.35 and 0.8 vs negatives 0.1 and 0.4: 3 of 4 pairs ranked right.
    assert roc_auc([False, False, True, True], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([True, True], [0.2, 0.9]) is None


def test_roc_points_and_sensitivity_at_specificity() -> None:
    truth, scores = [False, False, True, True], [0.1, 0.4, 0.35, 0.8]
    roc = roc_points(truth, scores)
    assert roc is not None
    # Scores descending .8 (pos), .4 (neg), .35 (pos), .1 (neg): the curve passes (0, 0.5).
    assert (roc.fpr[0], roc.tpr[0]) == (0.0, 0.0) and (roc.fpr[-1], roc.tpr[-1]) == (1.0, 1.0)
    assert (0.0, 0.5) in zip(roc.fpr, roc.tpr, strict=True)
    # Specificity >= 0.5 allows one false positive (0.4): both positives are then above 0.35.
    assert sensitivity_at_specificity(truth, scores, specificity=0.5) == 1.0
    assert sensitivity_at_specificity(truth, scores, specificity=1.0) == 0.5
    assert roc_points([True, True], [0.2, 0.9]) is None
