from __future__ import annotations

import pytest

from core.birads import Birads
from ml_backend.prelabel.likelihood import acr_category


@pytest.mark.parametrize(
    ("probability", "category"),
    [
        (0.0, Birads.B3),
        (0.02, Birads.B3),
        (0.0201, Birads.B4A),
        (0.10, Birads.B4A),
        (0.1001, Birads.B4B),
        (0.50, Birads.B4B),
        (0.5001, Birads.B4C),
        (0.9499, Birads.B4C),
        (0.95, Birads.B5),
        (1.0, Birads.B5),
    ],
)
def test_acr_bins_at_their_edges(probability: float, category: Birads) -> None:
    assert acr_category(probability) is category


@pytest.mark.parametrize("probability", [-0.01, 1.01])
def test_a_probability_outside_0_1_is_refused(probability: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        acr_category(probability)
