from __future__ import annotations

import pytest

from core.birads import Birads
from ml_backend.evaluation.coco import coco_map, lesion_map, xyxy_to_xywh
from tests.ml_backend.evaluation.helpers import det, gt, pred

A = (10.0, 10.0, 50.0, 40.0)
B = (60.0, 20.0, 90.0, 80.0)
SPACE = (Birads.B2, Birads.B3, Birads.B5)
GTS = [gt((A, Birads.B2)), gt((B, Birads.B5)), gt((A, Birads.B3), (B, Birads.B5))]


def test_xyxy_to_xywh() -> None:
    assert xyxy_to_xywh((10.0, 20.0, 40.0, 60.0)) == [10.0, 20.0, 30.0, 40.0]


def test_perfect_predictions_score_one() -> None:
    preds = [
        pred(det(A, Birads.B2, 0.9)),
        pred(det(B, Birads.B5, 0.8)),
        pred(det(A, Birads.B3, 0.7), det(B, Birads.B5, 0.6)),
    ]
    assert coco_map(GTS, preds, SPACE) == {"map50": 1.0, "map50_95": 1.0}
    assert lesion_map(GTS, preds) == {"map50": 1.0, "map50_95": 1.0}


def test_wrong_class_is_zero_class_aware_but_one_as_lesions() -> None:
    preds = [
        pred(det(A, Birads.B5, 0.9)),
        pred(det(B, Birads.B2, 0.8)),
        pred(det(A, Birads.B2, 0.7), det(B, Birads.B3, 0.6)),
    ]
    assert coco_map(GTS, preds, SPACE) == {"map50": 0.0, "map50_95": 0.0}
    assert lesion_map(GTS, preds) == {"map50": 1.0, "map50_95": 1.0}


def test_no_predictions_at_all_is_zero() -> None:
    empty = [pred() for _ in GTS]
    assert coco_map(GTS, empty, SPACE) == {"map50": 0.0, "map50_95": 0.0}
    assert lesion_map(GTS, empty) == {"map50": 0.0, "map50_95": 0.0}


def test_no_ground_truth_boxes_is_undefined() -> None:
    assert lesion_map([gt(), gt()], [pred(), pred(det(A, Birads.B2, 0.9))]) == {
        "map50": None,
        "map50_95": None,
    }


def test_false_positive_on_an_image_without_lesions_counts() -> None:
    # The FP (0.95) ranks above the TP (0.9): precision 0.5 at every recall -> AP 0.5.
    gts = [gt((A, Birads.B2)), gt()]
    preds = [pred(det(A, Birads.B2, 0.9)), pred(det(B, Birads.B2, 0.95))]
    result = lesion_map(gts, preds)
    assert result["map50"] == pytest.approx(0.5)
    assert result["map50_95"] == pytest.approx(0.5)
    # Ranked below the TP, the same FP costs nothing.
    low = [pred(det(A, Birads.B2, 0.9)), pred(det(B, Birads.B2, 0.5))]
    assert lesion_map(gts, low)["map50"] == pytest.approx(1.0)


def test_category_outside_the_space_raises() -> None:
    with pytest.raises(ValueError, match="BI-RADS 4A"):
        coco_map([gt((A, Birads.B4A))], [pred()], SPACE)
