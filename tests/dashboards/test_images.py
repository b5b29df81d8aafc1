"""Image browser: filters by category and status, and every box of an image is drawn."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Image

from db.models import Patient, Prediction, ReferenceLabel, Review
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
    model = next(r for r in rows if r["source"] == "model")  # the grader's probability
    assert model["P(malignant)"] == planned.p_malignant
    assert f"P(malignant) {planned.p_malignant:.2f} (calibrated)" in model["detail"]
    (image,) = at.get("image")
    assert isinstance(image, Image)
    assert image.captions == [f"image {image_id} · busbra · {planned.split.value}"]
    text = " ".join(str(e.value) for e in [*at.caption, *at.markdown, *at.dataframe])
    assert not any(key in text for key in patient_keys)
