"""Progress page: status counts, status over time, reviews per reader, time to consensus."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from datetime import date

from streamlit.testing.v1 import AppTest

from db.reports.progress import ImageStatus
from tests.dashboards.helpers import chart_marked, metric, table
from tests.dashboards.seed import T0, Plan, Planned


def status_on(planned: Planned, day: int) -> str:
    """Where the plan puts an image at the end of `day` (days after T0)."""
    if planned.predicted is None:
        return "unlabeled"
    status = "pre-labeled" if day >= 1 else "unlabeled"
    for rnd in planned.rounds:
        if day >= rnd.reviewed_day:
            status = "in review"
        if rnd.decided_day is not None and day >= rnd.decided_day and rnd.decision is not None:
            status = rnd.decision.value
    return status


def test_status_counts_equal_the_plan(
    seeded: Plan, open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page("progress")
    for status in ImageStatus:
        assert metric(at, status.value) == str(len(seeded.with_status(status.value)))
    assert sum(int(metric(at, s.value)) for s in ImageStatus) == len(seeded.images)


def test_status_over_time_follows_each_image(
    seeded: Plan, open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page("progress")
    shown = {(r["day"][:10], r["status"]): r["images"] for r in chart_marked(at, "area")}
    days = sorted({d for d, _ in shown})
    assert days[0] == T0.date().isoformat()
    for day in days:
        offset = (date.fromisoformat(day) - T0.date()).days
        expected = Counter(status_on(p, offset) for p in seeded.images)
        for status in ImageStatus:
            assert shown[(day, status.value)] == expected[status.value], (day, status)


def test_reviews_per_reader_and_time_to_consensus(
    seeded: Plan, open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page("progress")
    reviews: Counter[str] = Counter()
    days: dict[str, set[int]] = {}
    hours: list[float] = []
    for planned in seeded.images:
        for rnd in planned.rounds:
            for reader in rnd.readings:
                reviews[reader] += 1
                days.setdefault(reader, set()).add(rnd.reviewed_day)
            if rnd.decided_day is not None:
                hours.append(24.0 * (rnd.decided_day - 1))  # pre-labelled on day 1, same hour
    rows = {r["reader"]: r for r in table(at, with_column="per day")}
    assert {r: rows[r]["reviews"] for r in rows} == dict(reviews)
    assert {r: rows[r]["days"] for r in rows} == {r: len(d) for r, d in days.items()}
    assert metric(at, "decided labels") == str(len(hours))
    assert metric(at, "median hours") == f"{statistics.median(hours):.1f}"
