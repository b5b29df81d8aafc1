"""Progress page: status counts, status over time, reviews per reader, time to consensus."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime

from streamlit.testing.v1 import AppTest

from db.reports.progress import ImageStatus
from tests.dashboards.helpers import chart_encoding, encodings, metric, table
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


def test_status_over_time_follows_each_image_up_to_today(
    seeded: Plan, open_page: Callable[[str | None], AppTest]
) -> None:
    before = datetime.now(UTC).date()
    at = open_page("progress")
    after = datetime.now(UTC).date()
    spec, rows = chart_encoding(at, "status")
    assert spec["mark"]["type"] == "bar"  # a bar per day: today is drawn, not a zero-width step
    shown = {(r["day"][:10], r["status"]): r["images"] for r in rows}
    days = sorted({d for d, _ in shown})
    assert days[0] == T0.date().isoformat()
    assert days[-1] in (before.isoformat(), after.isoformat())  # the history ends today
    assert len(days) == (date.fromisoformat(days[-1]) - T0.date()).days + 1  # quiet days too
    for day in days:
        offset = (date.fromisoformat(day) - T0.date()).days
        expected = Counter(status_on(p, offset) for p in seeded.images)
        for status in ImageStatus:
            assert shown[(day, status.value)] == expected[status.value], (day, status)
    for status in ImageStatus:  # today's bar is the tiles above it
        assert str(shown[(days[-1], status.value)]) == metric(at, status.value)
    assert f"the last bar, {days[-1]}, is now" in " ".join(c.value for c in at.caption)


def test_counts_are_said_in_words_on_whole_number_axes(
    seeded: Plan, open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page("progress")
    splits = Counter(p.split.value for p in seeded.images)
    caption = (
        f"{len(seeded.images)} images in 1 dataset "
        f"(train {splits['train']}, val {splits['val']}, test {splits['test']})."
    )
    assert caption in [c.value for c in at.caption]
    for field in ("reviews", "images", "labels"):  # per reader and day, by status, per hour bin
        spec, _ = chart_encoding(at, field)
        (axis,) = [c["axis"] for c in encodings(spec) if c.get("field") == field]
        assert (axis["format"], axis["tickMinStep"]) == ("d", 1), field


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
