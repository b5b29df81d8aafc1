from __future__ import annotations

import pytest

from core.birads import Birads
from ml_backend.evaluation.birads4 import choose_threshold, evaluate_4ab, p5_of, split_4
from tests.ml_backend.evaluation.helpers import det, pred

A, B = Birads.B4A, Birads.B4B
BOX = (0.0, 0.0, 10.0, 10.0)


def test_split_rule_is_at_or_above_threshold() -> None:
    assert split_4(0.7, 0.7) is B
    assert split_4(0.69, 0.7) is A
    assert split_4(0.95, 0.7) is B


def test_choose_threshold_separates_separable_data() -> None:
    p5 = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    malignant = [False, False, False, True, True, True]
    threshold = choose_threshold(p5, malignant)
    assert threshold == pytest.approx(0.7)
    assert [split_4(p, threshold) for p in p5] == [A, A, A, B, B, B]


def test_choose_threshold_ties_go_to_the_higher_threshold() -> None:
    # Youden J: at 0.8 -> 0.5 - 0 = 0.5; at 0.4 -> 0.5 - 0.5 = 0; at 0.35 -> 1 - 0.5 = 0.5.
    assert choose_threshold([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.8


def test_choose_threshold_needs_both_classes_and_matching_lengths() -> None:
    with pytest.raises(ValueError, match="both"):
        choose_threshold([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="2 scores but 1"):
        choose_threshold([0.1, 0.2], [True])


def test_evaluate_4ab_by_hand() -> None:
    expert = [A, A, A, A, B, B, B]
    predicted = [A, A, A, B, B, B, A]
    # Rows expert (4A, 4B), columns predicted: [[3, 1], [1, 2]].
    # 4B positive: TP 2, FN 1, FP 1, TN 3 -> ACC 5/7, SEN 2/3, SPE 3/4.
    result = evaluate_4ab(expert, predicted)
    assert result.matrix.labels == ("4A", "4B") and result.positive == "4B"
    assert result.matrix.counts == ((3, 1), (1, 2)) and result.n_images == 7
    rates = result.rates
    assert rates.acc is not None and rates.acc.value == pytest.approx(5 / 7)
    assert rates.sen is not None and rates.sen.value == pytest.approx(2 / 3)
    assert rates.spe is not None and rates.spe.value == pytest.approx(3 / 4)


@pytest.mark.parametrize("label", [Birads.B4C, Birads.B4, Birads.B5])
def test_evaluate_4ab_refuses_other_expert_labels(label: Birads) -> None:
    with pytest.raises(ValueError, match=f"BI-RADS {label.value} is not 4A or 4B"):
        evaluate_4ab([A, label], [A, B])


def test_p5_of_uses_the_top_detection() -> None:
    top = det(BOX, Birads.B3, 0.6, {Birads.B3: 0.6, Birads.B5: 0.3, Birads.B2: 0.1})
    other = det(BOX, Birads.B5, 0.5, {Birads.B5: 0.5, Birads.B3: 0.5})
    assert p5_of(pred(other, top)) == pytest.approx(0.3)
    assert p5_of(pred()) == 0.0
