"""The radiologists' baseline: their own BI-RADS against biopsy pathology, on the same images a
model is scored on (issue 14). A dataset's reference BI-RADS is what its radiologists called;
with the pathology it says how well they separated benign from malignant, so a model's AUC and
SEN/SPE on an external dataset can be read against it."""

from __future__ import annotations

from collections.abc import Sequence

from core.birads import Birads, Pathology
from core.results import ReaderBaseline
from ml_backend.evaluation.metrics import BinaryCounts, binary_metrics, roc_auc

# Rank of each category for the AUC: a plain 4 (BUS-BRA) sits in the middle of 4, with 4B.
_RANK: dict[Birads, int] = {
    Birads.B1: 1,
    Birads.B2: 2,
    Birads.B3: 3,
    Birads.B4A: 4,
    Birads.B4: 5,
    Birads.B4B: 5,
    Birads.B4C: 6,
    Birads.B5: 7,
}
_AT_4 = frozenset({Birads.B4, Birads.B4A, Birads.B4B, Birads.B4C, Birads.B5})
_AT_4B = frozenset({Birads.B4B, Birads.B4C, Birads.B5})


def reader_baseline(
    categories: Sequence[Birads], pathologies: Sequence[Pathology | None]
) -> ReaderBaseline | None:
    """The baseline over the images with a recorded pathology (normal: not malignant), the
    images the model's `Screening.pathology_auc` counts; None without any."""
    known = [
        (c, p is Pathology.MALIGNANT)
        for c, p in zip(categories, pathologies, strict=True)
        if p is not None
    ]
    if not known:
        return None
    placed = [(c, m) for c, m in known if c is not Birads.B4]
    return ReaderBaseline(
        n_images=len(known),
        n_malignant=sum(m for _, m in known),
        auc=roc_auc([m for _, m in known], [float(_RANK[c]) for c, _ in known]),
        at_4=binary_metrics(_counts(known, _AT_4)),
        at_4b=binary_metrics(_counts(placed, _AT_4B)),
        plain_4_left_out=len(known) - len(placed),
    )


def _counts(cases: Sequence[tuple[Birads, bool]], positive: frozenset[Birads]) -> BinaryCounts:
    called = [(c in positive, m) for c, m in cases]
    return BinaryCounts(
        tp=sum(p and m for p, m in called),
        fp=sum(p and not m for p, m in called),
        fn=sum(m and not p for p, m in called),
        tn=sum(not p and not m for p, m in called),
    )
