"""Training targets from reference labels: benign/malignant class and the BI-RADS score."""

from __future__ import annotations

from core.birads import Birads, Pathology

MALIGNANT = 1  # class index of the classifier head

# Plain 4 (BUS-BRA has no subcategories) sits at 4, the centre of 4A/4B/4C, which are spread
# one third apart so that the score keeps the ACR order 3 < 4A < 4B < 4C < 5.
_SCORES: dict[Birads, float] = {
    Birads.B1: 1.0,
    Birads.B2: 2.0,
    Birads.B3: 3.0,
    Birads.B4A: 4.0 - 1 / 3,
    Birads.B4: 4.0,
    Birads.B4B: 4.0,
    Birads.B4C: 4.0 + 1 / 3,
    Birads.B5: 5.0,
}


def birads_score(category: Birads) -> float:
    """The regression target of Shi et al.'s auxiliary BI-RADS head."""
    return _SCORES[category]


def pathology_class(pathology: Pathology) -> int:
    """0 benign, 1 malignant; 'normal' images have no lesion and no class."""
    if pathology is Pathology.NORMAL:
        raise ValueError("a normal image has no lesion to classify")
    return MALIGNANT if pathology is Pathology.MALIGNANT else 0
