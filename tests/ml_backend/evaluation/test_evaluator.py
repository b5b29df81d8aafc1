from __future__ import annotations

import pytest

from core.birads import FIVE_WAY_SPACE, FULL_SPACE, NO_4_SPACE, Birads, Pathology, Reading
from core.results import EvaluationMetrics
from ml_backend.detector.interface import GroundTruth, ImagePrediction
from ml_backend.evaluation.evaluator import DetectionEvaluator
from ml_backend.prelabel.calibration import Calibrator
from tests.ml_backend.evaluation.helpers import det, gt, pred

BOXES = [(10.0 * i, 0.0, 10.0 * i + 8.0, 8.0) for i in range(6)]
B2, B3, B4, B5 = Birads.B2, Birads.B3, Birads.B4, Birads.B5


def _scenario() -> tuple[list[GroundTruth], list[ImagePrediction]]:
    """Six images, a 5-way model, boxes shown from 0.05 (image reading in the comment)."""
    gts = [
        gt(),  # 1 -> no box -> 1
        gt((BOXES[1], B2), pathology=Pathology.BENIGN),  # 2 -> 2
        gt((BOXES[2], B3)),  # 3 -> 3
        gt((BOXES[3], B5), pathology=Pathology.MALIGNANT),  # 5 -> 5
        gt((BOXES[4], B5), pathology=Pathology.BENIGN),  # 5 -> 4
        gt((BOXES[5], B2)),  # 2 -> box below the shown floor -> 1
    ]
    preds = [
        pred(),
        pred(det(BOXES[1], B2, 0.9, {B2: 0.9, B5: 0.1})),
        pred(det(BOXES[2], B3, 0.6, {B3: 0.6, B5: 0.4})),
        pred(det(BOXES[3], B5, 0.9, {B5: 0.9, B4: 0.1})),
        pred(det(BOXES[4], B4, 0.7, {B4: 0.7, B5: 0.3})),
        pred(det(BOXES[5], B2, 0.03, {B2: 0.3, B3: 0.25, B4: 0.25, B5: 0.2})),
    ]
    return gts, preds


def _evaluate(plain_4: Reading = Reading.MALIGNANT) -> EvaluationMetrics:
    evaluator = DetectionEvaluator(FIVE_WAY_SPACE, score_threshold=0.5, plain_4=plain_4)
    evaluator.process(*_scenario())
    return evaluator.evaluate()


def test_detection_metrics() -> None:
    result = _evaluate()
    assert result.n_images == 6
    metrics = result.detection
    # Class-aware: AP(2) = AP(3) = 1; BI-RADS 5 has 2 lesions, 1 found (the other called 4):
    # precision 1 up to recall 0.5 -> 51 of COCO's 101 recall points; BI-RADS 4 has no lesion.
    expected = (1 + 1 + 51 / 101) / 3
    assert metrics.map50 == pytest.approx(expected)
    assert metrics.map50_95 == pytest.approx(expected)
    assert metrics.lesion_map50 == pytest.approx(1.0)
    assert metrics.lesion_map50_95 == pytest.approx(1.0)
    # 5 lesions; the 0.03 box is below the 0.5 threshold -> 4 found, no false positive.
    assert metrics.lesion_recall50 == pytest.approx(0.8)
    assert metrics.fp_per_image == 0.0


def test_birads_confusion_matrix_table_1() -> None:
    birads = _evaluate().birads
    table = birads.matrix
    assert table.labels == ("1", "2", "3", "4", "5")
    assert table.counts == (
        (1, 0, 0, 0, 0),
        (1, 1, 0, 0, 0),
        (0, 0, 1, 0, 0),
        (0, 0, 0, 0, 0),
        (0, 0, 0, 1, 1),
    )
    assert table.row_normalised[1] == (0.5, 0.5, 0.0, 0.0, 0.0)
    assert table.row_normalised[3] == (0.0,) * 5
    five, four, one = (birads.per_category[c] for c in ("5", "4", "1"))
    # 5: TP 1, FN 1, FP 0, TN 4.  4: TP 0, FN 0, FP 1, TN 5.  1: TP 1, FN 0, FP 1, TN 4.
    assert five.acc is not None and five.acc.value == pytest.approx(5 / 6)
    assert five.sen is not None and five.sen.value == 0.5
    assert five.spe is not None and five.spe.value == 1.0
    assert four.sen is None
    assert four.spe is not None and four.spe.value == pytest.approx(5 / 6)
    assert one.sen is not None and one.spe is not None
    assert (one.sen.value, one.spe.value) == (1.0, 0.8)
    assert one.spe.ci_low < 0.8 < one.spe.ci_high


def test_screening_with_plain_4_malignant() -> None:
    screening = _evaluate(Reading.MALIGNANT).screening
    assert screening.plain_4_counted_as is Reading.MALIGNANT
    assert screening.matrix.labels == ("benign", "malignant")
    assert screening.matrix.counts == ((4, 0), (0, 2))
    rates = (screening.rates.acc, screening.rates.sen, screening.rates.spe)
    assert [r.value if r else None for r in rates] == [1.0, 1.0, 1.0]
    # Scores (top box, mass on 4/5): 0, .1, .4, 1.0, 1.0, .45 -> malignant ones rank first.
    assert screening.auc == pytest.approx(1.0)
    assert screening.sen_at_spe80 == 1.0
    assert screening.roc is not None and screening.roc.tpr[-1] == 1.0
    # Pathology: benign .1 and 1.0 vs malignant 1.0 -> (1 + 0.5) / 2.
    assert screening.pathology_auc == pytest.approx(0.75)
    assert screening.n_with_pathology == 3


def test_screening_with_plain_4_benign() -> None:
    screening = _evaluate(Reading.BENIGN).screening
    assert screening.plain_4_counted_as is Reading.BENIGN
    # The image called 4 now reads benign: one malignant image missed.
    assert screening.matrix.counts == ((4, 0), (1, 1))
    assert screening.rates.sen is not None and screening.rates.sen.value == 0.5
    assert screening.rates.acc is not None and screening.rates.acc.value == pytest.approx(5 / 6)
    # Scores (mass on 5 only): 0, .1, .4, .9, .3, .2; malignant .9 and .3 -> 7 of 8 pairs.
    assert screening.auc == pytest.approx(7 / 8)
    assert screening.pathology_auc == pytest.approx(1.0)


def test_plain_4_ground_truth_reading_follows_the_choice() -> None:
    # Truth plain 4, prediction 5 (malignant): the truth row moves with the choice.
    box = BOXES[0]
    expected = {
        Reading.MALIGNANT: ((0, 0), (0, 1)),  # truth malignant, called malignant
        Reading.BENIGN: ((0, 1), (0, 0)),  # truth benign, called malignant
    }
    for plain_4, counts in expected.items():
        evaluator = DetectionEvaluator(FIVE_WAY_SPACE, plain_4=plain_4)
        evaluator.process([gt((box, B4))], [pred(det(box, B5, 0.9))])
        assert evaluator.evaluate().screening.matrix.counts == counts


def test_subcategories_coarsen_in_a_five_way_space() -> None:
    box = BOXES[0]
    evaluator = DetectionEvaluator(FIVE_WAY_SPACE)
    evaluator.process([gt((box, Birads.B4A))], [pred(det(box, B4, 0.9))])
    result = evaluator.evaluate()
    assert result.birads.matrix.counts[3] == (0, 0, 0, 1, 0)
    assert result.detection.map50 == pytest.approx(1.0)


def test_plain_4_against_subcategories_raises() -> None:
    evaluator = DetectionEvaluator(FULL_SPACE)
    with pytest.raises(ValueError, match=r"BI-RADS 4 is not in the label space \(1, 2, 3, 4A"):
        evaluator.process([gt((BOXES[0], B4))], [pred()])
    no_4 = DetectionEvaluator(NO_4_SPACE)
    with pytest.raises(ValueError, match="BI-RADS 4B is not in the label space"):
        no_4.process([gt((BOXES[0], Birads.B4B))], [pred()])


def test_reset_really_resets() -> None:
    gts, preds = _scenario()
    evaluator = DetectionEvaluator(FIVE_WAY_SPACE)
    evaluator.process(gts, preds)
    evaluator.reset()
    evaluator.process(gts[:2], preds[:2])
    fresh = DetectionEvaluator(FIVE_WAY_SPACE)
    fresh.process(gts[:2], preds[:2])
    assert evaluator.evaluate() == fresh.evaluate()
    assert evaluator.evaluate().n_images == 2
    evaluator.reset()
    with pytest.raises(ValueError, match="process"):
        evaluator.evaluate()


def test_batches_accumulate() -> None:
    gts, preds = _scenario()
    batched = DetectionEvaluator(FIVE_WAY_SPACE)
    batched.process(gts[:3], preds[:3])
    batched.process(gts[3:], preds[3:])
    whole = DetectionEvaluator(FIVE_WAY_SPACE)
    whole.process(gts, preds)
    assert batched.evaluate() == whole.evaluate()


def test_mismatched_lengths_raise() -> None:
    gts, preds = _scenario()
    with pytest.raises(ValueError, match="6 ground truths but 5 predictions"):
        DetectionEvaluator(FIVE_WAY_SPACE).process(gts, preds[:5])


def test_result_round_trips_through_json() -> None:
    evaluator = DetectionEvaluator(FIVE_WAY_SPACE)
    evaluator.process(*_scenario())
    result = evaluator.evaluate()
    assert result.schema_version == 1
    assert EvaluationMetrics.model_validate_json(result.model_dump_json()) == result


def test_operating_point_is_reported_beside_the_fixed_rule_with_a_calibrator() -> None:
    assert _evaluate().screening.operating_point is None  # no calibrator: fixed rule only
    cal = Calibrator(coef=10.0, intercept=-5.0, n_fit=3, target_sensitivity=0.95, threshold=0.5)
    evaluator = DetectionEvaluator(FIVE_WAY_SPACE, calibrator=cal)
    evaluator.process(*_scenario())
    point = evaluator.evaluate().screening.operating_point
    assert point is not None and point.threshold == 0.5 and point.target_sensitivity == 0.95
    # pathology: image 2 benign (score 0.1 -> 0.02), 4 malignant (1.0), 5 benign (1.0: plain 4)
    assert point.rates.sen is not None and point.rates.sen.value == 1.0
    assert point.rates.spe is not None and (point.rates.spe.successes, point.rates.spe.total) == (
        1,
        2,
    )


def test_acr_bins_of_the_calibrated_probability_give_a_table_iii() -> None:
    """Expert 4A/4B against the ACR bin of the calibrated probability: bins 3/4A call 4A,
    bins 4B/4C/5 call 4B."""
    boxes = BOXES[:4]
    expert = [Birads.B4A, Birads.B4A, Birads.B4B, Birads.B4B]
    p_malignant = [0.05, 0.6, 0.6, 0.05]  # the mass on malignant readings (4 and 5)
    gts = [gt((b, e)) for b, e in zip(boxes, expert, strict=True)]
    preds = [
        pred(det(b, B4, 0.9, {B4: p, B2: 1 - p})) for b, p in zip(boxes, p_malignant, strict=True)
    ]
    evaluator = DetectionEvaluator(FIVE_WAY_SPACE)
    evaluator.process(gts, preds)
    assert evaluator.evaluate().acr_split is None  # no calibrator, no probability to bin
    cal = Calibrator(coef=1.0, intercept=0.0, n_fit=4, target_sensitivity=0.95, threshold=0.5)
    evaluator = DetectionEvaluator(FIVE_WAY_SPACE, calibrator=cal)
    evaluator.process(gts, preds)
    table = evaluator.evaluate().acr_split
    # sigmoid(0.05) = 0.51 and sigmoid(0.6) = 0.65: both in the 4C bin (50-95 %) -> all 4B
    assert table is not None and table.n_images == 4
    assert table.matrix.counts == ((0, 2), (0, 2))  # rows expert 4A, 4B; columns called
    steep = Calibrator(coef=20.0, intercept=-5.0, n_fit=4, target_sensitivity=0.95, threshold=0.5)
    evaluator = DetectionEvaluator(FIVE_WAY_SPACE, calibrator=steep)
    evaluator.process(gts, preds)
    table = evaluator.evaluate().acr_split
    # sigmoid(20 * 0.05 - 5) = 0.018 (bin 3 -> 4A); sigmoid(20 * 0.6 - 5) = 0.999 (bin 5 -> 4B)
    assert table is not None and table.matrix.counts == ((1, 1), (1, 1))
