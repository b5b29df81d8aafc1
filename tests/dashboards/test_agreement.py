"""Agreement page: kappas equal labeler.agreement's on the same readings; disputes ranked."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from core.birads import Birads
from db.agreement import fleiss, pairwise_cohen
from tests.dashboards.helpers import table
from tests.dashboards.seed import Plan


def rounds_of(plan: Plan, number: int) -> dict[int, dict[str, str | None]]:
    """image id -> reader -> category, for one review round of the plan."""
    return {
        p.image_id: p.rounds[number - 1].readings for p in plan.images if len(p.rounds) >= number
    }


def test_fleiss_per_round_matches_labeler_agreement(
    seeded: Plan, open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page("agreement")
    shown = {r["round"]: r for r in table(at, with_column="Fleiss' kappa")}
    assert sorted(shown) == [1, 2]
    for number, row in shown.items():
        readings = rounds_of(seeded, number).values()
        complete = [
            [Birads(c) for c in r.values() if c] for r in readings if None not in r.values()
        ]
        assert row["images"] == len(complete)
        assert row["images left out"] == len(readings) - len(complete)
        assert row["Fleiss' kappa"] == pytest.approx(fleiss(complete))


def test_pairwise_cohen_of_a_round_matches_labeler_agreement(
    seeded: Plan, open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page("agreement")
    at.selectbox(key="agreement_round").set_value(1).run()
    by_reader: dict[str, dict[int, Birads]] = {}
    for image_id, readings in rounds_of(seeded, 1).items():
        for reader, category in readings.items():
            if category is not None:
                by_reader.setdefault(reader, {})[image_id] = Birads(category)
    expected = pairwise_cohen(by_reader)
    rows = table(at, with_column="reader_a")
    assert len(rows) == len(expected) == 3
    for row in rows:
        assert row["kappa"] == pytest.approx(expected[f"{row['reader_a']}|{row['reader_b']}"])


def dispute_score(readings: dict[str, str | None], predicted: str | None) -> int:
    categories = {c for c in readings.values() if c is not None}
    verdicts = {
        "reject" if c is None else "accept" if c == predicted else "correct"
        for c in readings.values()
    }
    return max(len(categories) - 1, 0) + len(verdicts) - 1


def test_most_disputed_images_are_ranked_with_thumbnails(
    seeded: Plan, open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page("agreement")
    expected = sorted(
        (
            (-dispute_score(rnd.readings, p.predicted), p.image_id, number)
            for p in seeded.images
            for number, rnd in enumerate(p.rounds, start=1)
        ),
    )
    expected = [e for e in expected if e[0] < 0]
    rows = table(at, with_column="categories")
    assert [(-r["score"], r["image"], r["round"]) for r in rows] == expected
    assert len(at.get("image")) == len(rows)  # one thumbnail each: the PNGs exist


def test_plain_4_readings_count_as_their_own_category_in_the_kappas() -> None:
    """A reader's plain "BI-RADS 4" (a label the project offers) is rated, never a crash."""
    from dashboards.agreement_stats import fleiss_by_round
    from dashboards.agreement_stats import pairwise_cohen as page_cohen
    from db.reports.agreement import ReviewRatings

    cats = ("4", "4", "4A", "5", "5", "5", "4", "4A", "4A")
    ratings = ReviewRatings(
        image_id=(1, 1, 1, 2, 2, 2, 3, 3, 3),
        review_round=(1,) * 9,
        reader=("a", "b", "c") * 3,
        verdict=("accept",) * 9,
        birads=cats,
    )
    rows = [[Birads(c) for c in cats[i : i + 3]] for i in (0, 3, 6)]
    (row,) = fleiss_by_round(ratings)
    assert row["images"] == 3 and row["Fleiss' kappa"] == pytest.approx(fleiss(rows))
    (ab, _, _) = page_cohen(ratings, review_round=1)
    a = {i: Birads(c) for i, c in enumerate(cats[0::3])}
    b = {i: Birads(c) for i, c in enumerate(cats[1::3])}
    assert ab["images"] == 3 and ab["kappa"] == pytest.approx(
        pairwise_cohen({"a": a, "b": b})["a|b"]
    )
    assert 0 < ab["kappa"] < 1  # 4 vs 4A is a disagreement, 4 vs 4 an agreement
