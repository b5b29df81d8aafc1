from __future__ import annotations

import pytest

from core.birads import Birads
from ml_backend.detector.interface import GroundTruth, ImagePrediction
from ml_backend.evaluation.detection import lesion_detection, match_image
from ml_backend.evaluation.matching import iou_matrix, match_boxes
from tests.ml_backend.evaluation.helpers import det, gt, pred

G1 = (0.0, 0.0, 10.0, 10.0)
G2 = (20.0, 20.0, 30.0, 30.0)


def test_iou_matrix_by_hand() -> None:
    # Overlap 5x10 = 50, union 100 + 100 - 50 = 150.
    iou = iou_matrix([G1], [(5.0, 0.0, 15.0, 10.0), G2])
    assert iou.shape == (1, 2)
    assert iou[0, 0] == pytest.approx(1 / 3)
    assert iou[0, 1] == 0.0


def test_matching_finds_the_full_one_to_one_assignment() -> None:
    a, b = (0.0, 0.0, 10.0, 10.0), (0.0, 5.0, 10.0, 15.0)
    # (0,2,10,12): IoU 80/120 with a, 70/130 = .54 with b. (0,1,10,11): IoU 90/110 with a,
    # 60/140 < 0.5 with b. Greedy by score gave the first box a and left the second without a
    # lesion (1 found, 1 FP); the assignment gives a to the second and b to the first.
    dets = [
        det((0.0, 1.0, 10.0, 11.0), Birads.B2, 0.8),
        det((0.0, 2.0, 10.0, 12.0), Birads.B2, 0.9),
    ]
    assert match_image([a, b], dets) == (2, 0)
    assert sorted(match_boxes([d.xyxy for d in dets], [a, b], iou_threshold=0.5)) == [
        (0, 0),
        (1, 1),
    ]
    assert match_image([a, b], dets, iou_threshold=0.6) == (1, 1)


def test_matching_respects_compatibility_and_degenerate_boxes() -> None:
    same = [G1, G1]
    assert match_boxes(same, same, iou_threshold=0.5, compatible=lambda i, j: i != j) == [
        (0, 1),
        (1, 0),
    ]
    assert match_boxes([G1], [G2], iou_threshold=0.5) == []
    point = (5.0, 5.0, 5.0, 5.0)  # no area: IoU 0, never a match, not NaN
    assert iou_matrix([point], [point])[0, 0] == 0.0
    assert match_boxes([point], [point], iou_threshold=0.0 + 1e-9) == []


def _case() -> tuple[list[GroundTruth], list[ImagePrediction]]:
    gts = [gt((G1, Birads.B3), (G2, Birads.B5)), gt(), gt((G1, Birads.B2))]
    preds = [
        pred(
            det(G1, Birads.B3, 0.9),  # found G1
            det((1.0, 0.0, 11.0, 10.0), Birads.B3, 0.8),  # duplicate on G1 (IoU .82): FP
            det((100.0, 100.0, 110.0, 110.0), Birads.B5, 0.7),  # nowhere: FP
            det(G2, Birads.B5, 0.3),  # would find G2, but below 0.5
        ),
        pred(det(G1, Birads.B2, 0.6)),  # image without lesions: FP
        pred(det((5.0, 0.0, 15.0, 10.0), Birads.B2, 0.9)),  # IoU 1/3: FP, G1 missed
    ]
    return gts, preds


def test_recall_and_false_positives_per_image() -> None:
    gts, preds = _case()
    # 3 lesions, 1 found; FPs 2 + 1 + 1 = 4 over 3 images.
    result = lesion_detection(gts, preds, score_threshold=0.5)
    assert result["lesion_recall"] == pytest.approx(1 / 3)
    assert result["fp_per_image"] == pytest.approx(4 / 3)
    # Lowering the threshold lets the 0.3 box find G2; FPs unchanged.
    low = lesion_detection(gts, preds, score_threshold=0.2)
    assert low["lesion_recall"] == pytest.approx(2 / 3)
    assert low["fp_per_image"] == pytest.approx(4 / 3)


def test_no_lesions_means_recall_undefined() -> None:
    result = lesion_detection([gt()], [pred()], score_threshold=0.5)
    assert result == {"lesion_recall": None, "fp_per_image": 0.0}
