"""ACR BI-RADS likelihood-of-malignancy bins on a calibrated probability.

ACR atlas (5th ed.): 3 is <= 2 %, 4A > 2-10 %, 4B > 10-50 %, 4C > 50-<95 %, 5 >= 95 %.
A bin edge belongs to the lower category except 95 %, which is already BI-RADS 5.
"""

from __future__ import annotations

from core.birads import Birads

ACR_EDGES: tuple[tuple[float, Birads], ...] = (
    (0.02, Birads.B3),
    (0.10, Birads.B4A),
    (0.50, Birads.B4B),
)
ACR_B5_FROM = 0.95


def acr_category(probability: float) -> Birads:
    """The ACR category whose likelihood range holds `probability` (0..1)."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability {probability} is outside 0..1")
    if probability >= ACR_B5_FROM:
        return Birads.B5
    for upper, category in ACR_EDGES:
        if probability <= upper:
            return category
    return Birads.B4C
