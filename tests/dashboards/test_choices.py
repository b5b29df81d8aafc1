"""Which stored item a dashboard page opens on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboards.choices import evaluations_in_page_order
from db.reports.evaluation import EvaluationKey
from ml_backend.registry.kinds import DETECTOR_KIND, NO4_KIND


def test_the_page_opens_on_the_active_detectors_evaluation() -> None:
    """Not on the splitter's, even when it was scored later: the detector's pre-labels are what
    readers see."""

    def key(id_: int, kind: str, active: bool) -> EvaluationKey:
        when = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(hours=id_)
        return EvaluationKey(id_, f"v{id_}", kind, "busbra", "test", when, active)

    newest_first = [
        key(4, NO4_KIND, active=True),
        key(3, DETECTOR_KIND, active=False),
        key(2, DETECTOR_KIND, active=True),
        key(1, DETECTOR_KIND, active=True),  # an older evaluation of the same version
    ]
    assert [k.id for k in evaluations_in_page_order(newest_first)] == [2, 1, 4, 3]
    assert evaluations_in_page_order([]) == []
