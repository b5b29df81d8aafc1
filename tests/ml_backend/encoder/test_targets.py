"""Regression and class targets from reference labels."""

from __future__ import annotations

import pytest

from core.birads import Birads, Pathology
from ml_backend.encoder.targets import birads_score, pathology_class


def test_birads_score_keeps_the_acr_order() -> None:
    order = [Birads.B1, Birads.B2, Birads.B3, Birads.B4A, Birads.B4B, Birads.B4C, Birads.B5]
    scores = [birads_score(c) for c in order]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)
    assert birads_score(Birads.B4) == 4.0 and birads_score(Birads.B5) == 5.0


def test_pathology_class() -> None:
    assert pathology_class(Pathology.MALIGNANT) == 1
    assert pathology_class(Pathology.BENIGN) == 0
    with pytest.raises(ValueError, match="no lesion"):
        pathology_class(Pathology.NORMAL)
