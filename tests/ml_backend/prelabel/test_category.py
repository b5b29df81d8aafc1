from __future__ import annotations

from core.birads import Birads
from db.schemas import BoxRecord
from ml_backend.prelabel.category import ShownBoxes, image_category, most_suspicious
from ml_backend.studio.format import image_birads
from tests.ml_backend.evaluation.helpers import det

BOX = (0.0, 0.0, 8.0, 8.0)


def test_the_most_suspicious_shown_box_decides_not_the_most_confident() -> None:
    """The issue's case: 3 at 0.8 and 5 at 0.06 is a BI-RADS 5 image, stored and accepted."""
    three = det(BOX, Birads.B3, 0.8, {Birads.B3: 0.8, Birads.B5: 0.05})
    five = det(BOX, Birads.B5, 0.06, {Birads.B5: 0.06, Birads.B3: 0.9})
    call = image_category([three, five], ShownBoxes(0.05, 3))
    assert call.category is Birads.B5
    assert call.deciding is five
    boxes = [BoxRecord(xyxy=d.xyxy, birads=d.category, score=d.score) for d in (three, five)]
    assert image_birads(boxes) is call.category  # consensus reads the same rule


def test_boxes_not_shown_do_not_count() -> None:
    low = det(BOX, Birads.B5, 0.04)
    assert image_category([low], ShownBoxes(0.05, 3)).category is Birads.B1
    many = [det(BOX, Birads.B2, 0.9 - i / 10) for i in range(3)] + [det(BOX, Birads.B5, 0.5)]
    assert image_category(many, ShownBoxes(0.05, 3)).category is Birads.B2  # 4th box unseen
    assert image_category(many, ShownBoxes(0.05, 4)).category is Birads.B5


def test_no_box_is_birads_1_with_probability_0() -> None:
    call = image_category([], ShownBoxes())
    assert (call.category, call.probability, call.deciding) == (Birads.B1, 0.0, None)
    assert most_suspicious([]) is Birads.B1


def test_probability_is_the_malignancy_score_then_calibrated() -> None:
    top = det(BOX, Birads.B4, 0.7, {Birads.B4: 0.7, Birads.B2: 0.3})
    assert image_category([top], ShownBoxes()).probability == 0.7  # plain 4 read malignant
    halved = image_category([top], ShownBoxes(), calibrate=lambda s: s / 2)
    assert halved.probability == 0.35
