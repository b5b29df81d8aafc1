"""Image browser: filters by category and status, and every box of an image is drawn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Image

from core.settings import Settings
from db.models import Patient, Prediction, ReferenceLabel, Review
from ml_backend.studio.format import image_birads, prelabel_rule
from tests.dashboards.helpers import table
from tests.dashboards.seed import Plan


def listed(at: AppTest) -> list[int]:
    return [int(o) for o in at.selectbox(key="image_id").options]


def test_filters_by_status_and_category(
    seeded: Plan, open_page: Callable[[str | None], AppTest]
) -> None:
    at = open_page("images")
    assert listed(at) == [p.image_id for p in seeded.images]
    at.multiselect(key="f_status").set_value(["accepted", "in review"]).run()
    wanted = [p.image_id for p in seeded.images if p.status in ("accepted", "in review")]
    assert listed(at) == wanted
    assert f"{len(wanted)} images match the filters." in [c.value for c in at.caption]
    at.multiselect(key="f_birads").set_value(["4", "5"]).run()
    both = [
        p.image_id
        for p in seeded.images
        if p.status in ("accepted", "in review") and p.reference in ("4", "5")
    ]
    assert both and listed(at) == both


def test_image_shows_reference_model_and_reader_boxes(
    seeded: Plan, sessions: sessionmaker[Session], open_page: Callable[[str | None], AppTest]
) -> None:
    planned = max(seeded.images, key=lambda p: len(p.rounds))  # two review rounds
    image_id = planned.image_id
    with sessions() as s:
        expected = (
            [
                ("reference", r.source, b.xyxy)
                for r in s.scalars(
                    select(ReferenceLabel).where(ReferenceLabel.image_id == image_id)
                )
                for b in r.boxes
            ]
            + [
                ("model", p.model_version_id, b.xyxy)
                for p in s.scalars(select(Prediction).where(Prediction.image_id == image_id))
                for b in p.boxes
            ]
            + [
                ("reader", r.reader, b.xyxy)
                for r in s.scalars(
                    select(Review)
                    .where(Review.image_id == image_id)
                    .order_by(Review.round, Review.reader)
                )
                for b in r.boxes
            ]
        )
        patient_keys = list(s.scalars(select(Patient.key)))
    at = open_page("images")
    at.selectbox(key="image_id").set_value(image_id).run()
    rows = table(at, with_column="x0")
    shown = [(r["source"], r["by"], (r["x0"], r["y0"], r["x1"], r["y1"])) for r in rows]
    assert shown == expected
    labels = {
        "reference": lambda r: f"ref {r['box BI-RADS']}",
        "model": lambda r: f"{r['box BI-RADS']} {r['score']:.2f}",
        "reader": lambda r: f"{r['by']}: {r['box BI-RADS']}",
    }
    assert [r["label"] for r in rows] == [labels[r["source"]](r) for r in rows]
    model = next(r for r in rows if r["source"] == "model")  # the grader's probability
    assert model["P(malignant)"] == planned.p_malignant
    assert f"P(malignant) {planned.p_malignant:.2f} (calibrated)" in model["detail"]
    (image,) = at.get("image")
    assert isinstance(image, Image)
    assert image.captions == [f"image {image_id} · busbra · {planned.split.value}"]
    text = " ".join(str(e.value) for e in [*at.caption, *at.markdown, *at.dataframe])
    assert not any(key in text for key in patient_keys)


def stored_prelabel(sessions: sessionmaker[Session], image_id: int) -> Prediction:
    with sessions() as s:
        return s.scalars(select(Prediction).where(Prediction.image_id == image_id)).one()


def model_rows(at: AppTest) -> list[dict[str, Any]]:
    return [r for r in table(at, with_column="x0") if r["source"].startswith("model")]


def test_pre_label_shows_what_readers_were_shown_with_short_labels(
    seeded: Plan,
    settings: Settings,
    sessions: sessionmaker[Session],
    open_page: Callable[[str | None], AppTest],
) -> None:
    stored = stored_prelabel(sessions, seeded.crowded_image)
    rule = prelabel_rule(settings)
    shown = rule.pick(stored.boxes)
    assert (len(stored.boxes), len(shown), rule.max_boxes, rule.min_score) == (10, 3, 3, 0.05)
    category = image_birads(shown).value  # the one rule, on the shown boxes
    assert category != stored.image_birads.value  # the seed stored an older rule's category
    assert category != image_birads(stored.boxes).value  # a hidden box is more suspicious
    at = open_page("images")
    at.selectbox(key="image_id").set_value(seeded.crowded_image).run()
    rows = model_rows(at)
    assert [(r["x0"], r["score"]) for r in rows] == [(b.xyxy[0], b.score) for b in shown]
    assert {r["source"] for r in rows} == {"model"}
    assert [r["label"] for r in rows] == [f"{b.birads} {b.score:.2f}" for b in shown]
    assert {r["image BI-RADS"] for r in rows} == {category}
    assert not any(stored.model_version_id in r["label"] for r in rows)
    hidden = len(stored.boxes) - len(shown)
    assert any(
        f"BI-RADS {category}, from the 3 boxes shown to readers" in c.value
        and f"{hidden} more boxes with the toggle" in c.value
        for c in at.caption
    )

    at.toggle(key="raw_boxes").set_value(True).run()
    rows = model_rows(at)
    assert sorted((r["x0"], r["score"]) for r in rows) == sorted(
        (b.xyxy[0], b.score) for b in stored.boxes
    )
    assert [r["source"] for r in rows] == ["model"] * len(shown) + ["model (not shown)"] * hidden
    assert {r["image BI-RADS"] for r in rows} == {category}  # the boxes shown still decide


def test_pre_label_follows_the_configured_rule(
    seeded: Plan,
    settings: Settings,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    open_page: Callable[[str | None], AppTest],
) -> None:
    """More boxes allowed: the score floor is what leaves boxes out, and decides the category."""
    monkeypatch.setenv("LABELER_PRELABEL_MAX_BOXES", "10")
    stored = stored_prelabel(sessions, seeded.crowded_image)
    rule = prelabel_rule(Settings(_env_file=None))
    shown = rule.pick(stored.boxes)
    assert 3 < len(shown) < len(stored.boxes)
    assert all(b.score is not None and b.score >= rule.min_score for b in shown)
    at = open_page("images")
    at.selectbox(key="image_id").set_value(seeded.crowded_image).run()
    rows = model_rows(at)
    assert [r["x0"] for r in rows] == [b.xyxy[0] for b in shown]
    assert {r["image BI-RADS"] for r in rows} == {image_birads(shown).value}
