"""Agreement page: kappas equal labeler.agreement's on the same readings; disputes ranked."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from core.birads import Birads
from core.settings import Settings
from db.agreement import fleiss, pairwise_cohen
from labeler.cli import app
from tests.dashboards.helpers import page_texts, table
from tests.dashboards.seed import Plan
from tests.labeler.studio.fake import PROJECT, FakeStudio, annotation, created, store_event
from tests.labeler.studio.fake import seed as studio_seed


def rounds_of(plan: Plan, number: int) -> dict[int, dict[str, str | None]]:
    """image id -> reader -> category, for one review round of the plan."""
    return {
        p.image_id: p.rounds[number - 1].readings for p in plan.images if len(p.rounds) >= number
    }


NO_KAPPA = "n/a (fewer than 2 readers on an image)"


def test_fleiss_per_round_matches_labeler_agreement(
    seeded: Plan, open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page("agreement")
    shown = {r["round"]: r for r in table(at, with_column="Fleiss' kappa")}
    rounds = max(len(p.rounds) for p in seeded.images)
    assert sorted(shown) == list(range(1, rounds + 1))
    for number, row in shown.items():
        readings = rounds_of(seeded, number).values()
        readers = max(len(r) for r in readings)  # the plan reads each image of a round alike
        complete = [
            [Birads(c) for c in r.values() if c] for r in readings if None not in r.values()
        ]
        assert row["images"] == len(complete)
        assert row["images left out"] == len(readings) - len(complete)
        if readers < 2:  # the plan's last round: one reader so far
            assert row["Fleiss' kappa"] == NO_KAPPA
        else:
            kappa = fleiss(complete)
            assert kappa is not None and row["Fleiss' kappa"] == f"{kappa:.3f}"
    assert NO_KAPPA in {r["Fleiss' kappa"] for r in shown.values()}


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
        kappa = expected[f"{row['reader_a']}|{row['reader_b']}"]
        assert kappa is not None and row["kappa"] == f"{kappa:.3f}"


def test_a_round_with_one_reader_says_why_it_has_no_kappa(
    seeded: Plan, open_page: Callable[[str | None], AppTest]
) -> None:
    last = max(len(p.rounds) for p in seeded.images)
    assert all(len(r) == 1 for r in rounds_of(seeded, last).values())
    at = open_page("agreement")
    at.selectbox(key="agreement_round").set_value(last).run()
    (row,) = [r for r in table(at, with_column="Fleiss' kappa") if r["round"] == last]
    assert row["Fleiss' kappa"] == NO_KAPPA
    assert "Cohen's kappa needs at least two readers." in [i.value for i in at.info]
    assert not any("None" in text for text in page_texts(at))


def test_labeler_sync_and_the_page_word_a_missing_kappa_alike(
    settings: Settings,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    open_page: Callable[[str | None], AppTest],
) -> None:
    """One reader on one image: `labeler sync` and the page both print db.agreement.kappa_text.

    The sync's Fleiss kappa counts images read by the quorum; with a quorum of 2 both need the
    same 2 readers, so both say the very same words."""
    fake = FakeStudio()
    monkeypatch.setattr("labeler.studio.client.connect", lambda _settings: fake)
    monkeypatch.setattr("labeler.studio.project.find_project", lambda _studio, _name: PROJECT)
    monkeypatch.setenv("LABELER_CONSENSUS_QUORUM", "2")
    studio_seed(sessions)
    store_event(sessions, created(annotation(1, 101, reader=1)))
    result = CliRunner().invoke(app, ["sync", "--no-reconcile"])
    assert result.exit_code == 0, result.output
    assert f"round 1: Fleiss kappa {NO_KAPPA} on 0 images" in result.output.splitlines()
    at = open_page("agreement")
    (row,) = table(at, with_column="Fleiss' kappa")
    assert (row["round"], row["images"], row["Fleiss' kappa"]) == (1, 1, NO_KAPPA)
    monkeypatch.setenv("LABELER_CONSENSUS_QUORUM", "3")  # the default: Fleiss needs 3 readers
    result = CliRunner().invoke(app, ["sync", "--no-reconcile"])
    assert "round 1: Fleiss kappa n/a (fewer than 3 readers on an image) on 0 images" in (
        result.output.splitlines()
    )


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
