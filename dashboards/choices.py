"""Which stored item a page opens on (pure: the page modules run when imported)."""

from __future__ import annotations

from db.reports.evaluation import EvaluationKey
from ml_backend.registry.kinds import DETECTOR_KIND


def evaluations_in_page_order(keys: list[EvaluationKey]) -> list[EvaluationKey]:
    """The active detector's evaluations first (its pre-labels are what readers see), then the
    other active versions' (the BI-RADS-4 splitter), then the rest; newest first within each,
    as `keys` come. The Evaluation page opens on the first."""

    def rank(key: EvaluationKey) -> int:
        if not key.active:
            return 2
        return 0 if key.kind == DETECTOR_KIND else 1

    return sorted(keys, key=rank)
