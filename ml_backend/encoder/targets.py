"""Training targets from reference labels: benign/malignant class and the BI-RADS score."""

from __future__ import annotations

from core.birads import Birads, Pathology
from ml_backend.prelabel.likelihood import ACR_B5_FROM, ACR_EDGES

MALIGNANT = 1  # class index of the classifier head

# Shi et al. (BreastNet, sec. 3): "suppose suspicious degree of malignancy of samples in each
# category follows a uniform distribution. We adopt the mean of distribution of every category
# as the regression scores." The ranges are the ACR likelihoods of malignancy (likelihood.py):
# 1 and 2 essentially 0, 3 <= 2 %, 4A 2-10 %, 4B 10-50 %, 4C 50-95 %, 5 >= 95 %; plain 4
# (BUS-BRA has no subcategories) spans 4A-4C, 2-95 %. A score is a probability, 0..1.
_UPPER = {category: upper for upper, category in ACR_EDGES}
_RANGES: dict[Birads, tuple[float, float]] = {
    Birads.B1: (0.0, 0.0),
    Birads.B2: (0.0, 0.0),
    Birads.B3: (0.0, _UPPER[Birads.B3]),
    Birads.B4A: (_UPPER[Birads.B3], _UPPER[Birads.B4A]),
    Birads.B4B: (_UPPER[Birads.B4A], _UPPER[Birads.B4B]),
    Birads.B4C: (_UPPER[Birads.B4B], ACR_B5_FROM),
    Birads.B4: (_UPPER[Birads.B3], ACR_B5_FROM),
    Birads.B5: (ACR_B5_FROM, 1.0),
}


def birads_score(category: Birads) -> float:
    """The regression target of Shi et al.'s auxiliary BI-RADS head: the middle of the
    category's ACR likelihood-of-malignancy range."""
    low, high = _RANGES[category]
    return (low + high) / 2


def pathology_class(pathology: Pathology) -> int:
    """0 benign, 1 malignant; 'normal' images have no lesion and no class."""
    if pathology is Pathology.NORMAL:
        raise ValueError("a normal image has no lesion to classify")
    return MALIGNANT if pathology is Pathology.MALIGNANT else 0
