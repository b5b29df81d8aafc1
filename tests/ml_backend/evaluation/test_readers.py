"""ml_backend.evaluation.readers: the radiologists' BI-RADS against pathology, by hand."""

from __future__ import annotations

import pytest

from core.birads import Birads, Pathology
from ml_backend.evaluation.readers import reader_baseline

B, M, N = Pathology.BENIGN, Pathology.MALIGNANT, Pathology.NORMAL


def test_rates_at_4_and_4b_and_auc_on_known_cases() -> None:
    categories = [Birads.B3, Birads.B4A, Birads.B4B, Birads.B5, Birads.B4A, Birads.B1, Birads.B5]
    pathology = [B, B, B, M, M, N, None]  # normal: not malignant; unknown: not counted
    base = reader_baseline(categories, pathology)
    assert base is not None
    assert (base.n_images, base.n_malignant, base.plain_4_left_out) == (6, 2, 0)
    # >= 4: 4A, 4B, 5 (malignant 5 and 4A: both caught); 3 and 1 below -> SPE 2/4
    assert base.at_4.sen is not None and base.at_4.sen.value == 1.0
    assert base.at_4.spe is not None and (base.at_4.spe.successes, base.at_4.spe.total) == (2, 4)
    # >= 4B: the malignant 4A is missed (SEN 1/2); only the benign 4B called (SPE 3/4)
    assert base.at_4b.sen is not None and (base.at_4b.sen.successes, base.at_4b.sen.total) == (1, 2)
    assert base.at_4b.spe is not None and (base.at_4b.spe.successes, base.at_4b.spe.total) == (3, 4)
    # ranks: malignant {7, 4} vs not {3, 4, 5, 1}: pairs won 4 + (1 + 0.5 + 0 + 1) = 6.5 of 8
    assert base.auc == pytest.approx(6.5 / 8)


def test_plain_4_counts_at_4_and_is_left_out_at_4b() -> None:
    base = reader_baseline([Birads.B4, Birads.B4, Birads.B3], [M, B, B])
    assert base is not None
    assert base.plain_4_left_out == 2
    assert base.at_4.sen is not None and base.at_4.sen.value == 1.0
    assert base.at_4b.sen is None  # no malignant image left to place
    assert base.at_4b.spe is not None and base.at_4b.spe.total == 1


def test_none_without_pathology() -> None:
    assert reader_baseline([Birads.B3, Birads.B5], [None, None]) is None
