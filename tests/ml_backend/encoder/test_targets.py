"""Regression and class targets from reference labels."""

from __future__ import annotations

import pytest

from core.birads import Birads, Pathology
from ml_backend.encoder.targets import birads_score, pathology_class


def test_birads_score_is_the_middle_of_the_acr_likelihood_range() -> None:
    # Shi et al.: the mean of a uniform malignancy likelihood over each category's ACR range.
    expected = {
        Birads.B1: 0.0,  # essentially 0 %
        Birads.B2: 0.0,
        Birads.B3: 0.01,  # 0-2 %
        Birads.B4A: 0.06,  # 2-10 %
        Birads.B4B: 0.30,  # 10-50 %
        Birads.B4C: 0.725,  # 50-95 %
        Birads.B4: 0.485,  # 2-95 %: 4A-4C
        Birads.B5: 0.975,  # 95-100 %
    }
    assert {c: birads_score(c) for c in Birads} == pytest.approx(expected)
    order = [Birads.B2, Birads.B3, Birads.B4A, Birads.B4B, Birads.B4C, Birads.B5]
    scores = [birads_score(c) for c in order]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)


def test_pathology_class() -> None:
    assert pathology_class(Pathology.MALIGNANT) == 1
    assert pathology_class(Pathology.BENIGN) == 0
    with pytest.raises(ValueError, match="no lesion"):
        pathology_class(Pathology.NORMAL)
