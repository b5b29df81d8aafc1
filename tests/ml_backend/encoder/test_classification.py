"""Per-image benign/malignant metrics and the inner-lesion misclassification rate."""

from __future__ import annotations

import pytest

from ml_backend.encoder.classification import classification_scores, inner_lesion_mcr

# Lesions L1 (2 views), L2 (2), L3 (1), L4 (2), and one image without a lesion id.
Y_TRUE = [1, 1, 0, 0, 1, 0, 0, 0]
PROB = [0.9, 0.4, 0.2, 0.6, 0.8, 0.1, 0.3, 0.2]
LESIONS = ["L1", "L1", "L2", "L2", "L3", None, "L4", "L4"]


def test_scores_by_hand() -> None:
    # Predictions at 0.5: 1 0 0 1 1 0 0 0 -> TP 2 (0, 4), FN 1 (1), FP 1 (3), TN 4.
    s = classification_scores(Y_TRUE, PROB, LESIONS)
    assert s.acc is not None and s.acc.value == pytest.approx(6 / 8)
    assert s.sen is not None and s.sen.value == pytest.approx(2 / 3)
    assert s.spe is not None and s.spe.value == pytest.approx(4 / 5)
    assert s.precision == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3)
    # AUC: positive/negative pairs ranked right: 0.9 beats 5, 0.4 beats 4, 0.8 beats 5 -> 14/15.
    assert s.auc == pytest.approx(14 / 15)
    # L1 (1, 0) and L2 (0, 1) disagree, L4 (0, 0) agrees; L3 has one view: MCR = 2/3.
    assert s.mcr == pytest.approx(2 / 3)
    assert (s.n_images, s.n_multiview_lesions) == (8, 3)


def test_mcr_counts_multi_view_lesions_only() -> None:
    assert inner_lesion_mcr([1, 1, 0, 0, 1], ["a", "a", "b", "b", "c"]) == (0.0, 2)
    assert inner_lesion_mcr([1, 0, 1], ["a", "a", "a"]) == (1.0, 1)  # any disagreement counts
    assert inner_lesion_mcr([1, 0], ["a", None]) == (None, 0)


def test_threshold_moves_the_predictions() -> None:
    s = classification_scores(Y_TRUE, PROB, LESIONS, threshold=0.35)
    # Predictions: 1 1 0 1 1 0 0 0 -> TP 3, FP 1: SEN 1, and every multi-view lesion but L2
    # now agrees: MCR = 1/3.
    assert s.sen is not None and s.sen.value == 1.0
    assert s.mcr == pytest.approx(1 / 3)
