"""db.agreement.fleiss_over: which images of a round enter Fleiss' kappa (sync and dashboard)."""

from __future__ import annotations

import pytest

from core.birads import Birads
from db.agreement import FleissOver, fleiss, fleiss_over

B2, B3 = Birads.B2, Birads.B3
THREE = [
    {"a": B2, "b": B2, "c": B2},
    {"a": B3, "b": B3, "c": B3},
    {"a": B2, "b": B2, "c": B3},
    {"a": B3, "b": B3, "c": B2},
]


def test_only_images_with_the_asked_number_of_readers_count() -> None:
    ratings = [*THREE, {"a": B2, "b": B3}]
    result = fleiss_over(ratings, readers=3)
    assert (result.images, result.readers, result.left_out) == (4, 3, 1)
    assert result.kappa == pytest.approx(1 / 3)
    pairs = fleiss_over(ratings, readers=2)
    assert (pairs.images, pairs.left_out) == (1, 4)
    assert pairs.kappa == fleiss([[B2, B3]])


def test_none_takes_the_most_common_number_of_readers() -> None:
    ratings = [*THREE, {"a": B2, "b": B2}, {"a": B3, "b": B3}]
    assert fleiss_over(ratings, readers=None).readers == 3
    tie = [*THREE[:2], {"a": B2, "b": B2}, {"a": B3, "b": B3}]
    assert fleiss_over(tie, readers=None).readers == 3  # a tie goes to the larger number
    assert fleiss_over(tie, readers=None).kappa == pytest.approx(1.0)


def test_no_kappa_without_two_readers_or_images() -> None:
    assert fleiss_over([], readers=None) == FleissOver(None, 0, 0, 0)
    assert fleiss_over([{"a": B2}, {"a": B3}], readers=None) == FleissOver(None, 2, 1, 0)
    assert fleiss_over(THREE, readers=4) == FleissOver(None, 0, 4, 4)
