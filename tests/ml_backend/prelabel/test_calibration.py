from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from core.birads import Birads, Pathology
from ml_backend.prelabel.calibration import (
    Calibrator,
    fit_birads_cuts,
    fit_calibrator,
    fit_on_predictions,
    threshold_for_sensitivity,
)
from ml_backend.prelabel.category import ShownBoxes
from tests.ml_backend.evaluation.helpers import det, gt, pred

BOX = (0.0, 0.0, 8.0, 8.0)
MALIGNANT = [False, False, False, False, True, False, True, True, True, True]
SCORES = [0.05, 0.1, 0.2, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9, 0.95]


def test_threshold_reaches_the_target_sensitivity_with_the_best_specificity() -> None:
    # positives at 0.35 .. 0.95: 4 of 5 (0.8) need 0.7; all 5 need 0.35
    assert threshold_for_sensitivity(MALIGNANT, SCORES, 0.8) == 0.7
    assert threshold_for_sensitivity(MALIGNANT, SCORES, 0.95) == 0.35


def test_platt_scaling_is_monotone_and_the_operating_point_holds_on_its_data() -> None:
    cal = fit_calibrator(MALIGNANT, SCORES, target_sensitivity=0.95)
    probs = [cal(s) for s in SCORES]
    assert probs == sorted(probs)
    assert all(0.0 < p < 1.0 for p in probs)
    assert cal.validation is not None and cal.validation.sen is not None
    assert cal.validation.sen.value >= 0.95
    assert cal.validation.spe is not None and cal.validation.spe.value == pytest.approx(0.8)


def test_the_calibrator_is_stored_with_the_version(tmp_path: Path) -> None:
    assert Calibrator.load(tmp_path) is None  # versions trained before calibration
    cal = fit_calibrator(MALIGNANT, SCORES, target_sensitivity=0.9)
    cal.save(tmp_path)
    assert Calibrator.load(tmp_path) == cal


def test_one_class_cannot_be_calibrated() -> None:
    with pytest.raises(ValueError, match="both benign and malignant"):
        fit_calibrator([True, True], [0.2, 0.3], target_sensitivity=0.95)
    truths = [gt((BOX, Birads.B5), pathology=Pathology.MALIGNANT), gt()]
    preds = [pred(det(BOX, Birads.B5, 0.9)), pred()]
    assert fit_on_predictions(truths, preds, shown=ShownBoxes(), target_sensitivity=0.95) is None


def test_fit_on_predictions_uses_only_images_with_pathology() -> None:
    truths = [
        gt((BOX, Birads.B5), pathology=Pathology.MALIGNANT),
        gt((BOX, Birads.B2), pathology=Pathology.BENIGN),
        gt((BOX, Birads.B2)),  # no biopsy: left out
    ]
    preds = [
        pred(det(BOX, Birads.B5, 0.9, {Birads.B5: 0.9, Birads.B2: 0.1})),
        pred(det(BOX, Birads.B2, 0.8, {Birads.B2: 0.8, Birads.B5: 0.2})),
        pred(det(BOX, Birads.B2, 0.8)),
    ]
    cal = fit_on_predictions(truths, preds, shown=ShownBoxes(), target_sensitivity=0.95)
    assert cal is not None and cal.n_fit == 2
    assert cal(0.9) > cal(0.2)


def test_birads_cuts_give_the_validation_splits_own_proportions() -> None:
    scores = [i / 100 for i in range(100)]
    categories = [Birads.B2] * 40 + [Birads.B3] * 10 + [Birads.B4A] * 30 + [Birads.B5] * 20
    cuts = fit_birads_cuts(scores, categories)
    assert cuts is not None and cuts.n_fit == 100
    called = Counter(cuts.coarse(s) for s in scores)
    assert called == {Birads.B2: 40, Birads.B3: 10, Birads.B4: 30, Birads.B5: 20}  # 4A is a 4
    assert [cuts.coarse(s) for s in (-5.0, 0.45, 0.7, 9.0)] == [
        Birads.B2,
        Birads.B3,
        Birads.B4,
        Birads.B5,
    ]


def test_an_empty_category_is_never_called_and_survives_json(tmp_path: Path) -> None:
    scores = [0.1, 0.2, 0.3, 0.4]
    cuts = fit_birads_cuts(scores, [Birads.B3, Birads.B3, Birads.B4, Birads.B4])
    assert cuts is not None and cuts.uppers[0] == -math.inf and cuts.uppers[2] == math.inf
    assert {cuts.coarse(s) for s in (-9.0, 0.0, 0.25, 0.35, 9.0)} == {Birads.B3, Birads.B4}
    calibrator = Calibrator(
        coef=1.0, intercept=0.0, n_fit=4, target_sensitivity=0.9, threshold=0.5, birads_cuts=cuts
    )
    calibrator.save(tmp_path)
    assert Calibrator.load(tmp_path) == calibrator


def test_birads_cuts_need_two_lesion_categories() -> None:
    assert fit_birads_cuts([0.1, 0.2], [Birads.B4, Birads.B4A]) is None  # both read as 4
    assert fit_birads_cuts([0.1, 0.2], [Birads.B1, Birads.B5]) is None  # 1 is not a lesion
    assert fit_birads_cuts([], []) is None
