"""Each strategy ranks constructed predictions as its definition says; rank is deterministic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.birads import Birads
from ml_backend.active import (
    CoreSet,
    Entropy,
    FlipDisagreement,
    LeastConfidence,
    Margin,
    PoolImage,
    RandomStrategy,
    by_name,
    rank,
)
from ml_backend.active.strategies import NAMES, build, needs_of
from ml_backend.detector.interface import Box, Detection, ImagePrediction

B2, B3, B4, B5 = Birads.B2, Birads.B3, Birads.B4, Birads.B5
BOX: Box = (10.0, 10.0, 30.0, 30.0)


def det(probs: dict[Birads, float], box: Box = BOX) -> Detection:
    category = max(probs, key=lambda c: probs[c])
    return Detection(xyxy=box, category=category, score=probs[category], probs=probs)


def pred(*detections: Detection) -> ImagePrediction:
    return ImagePrediction(detections=detections, uncertainty=0.0)


def item(
    image_id: int, *detections: Detection, flipped: ImagePrediction | None = None
) -> PoolImage:
    return PoolImage(image_id=image_id, prediction=pred(*detections), width=100, flipped=flipped)


def test_least_confidence_puts_the_unsure_image_first() -> None:
    pool = [item(1, det({B2: 0.95, B3: 0.05})), item(2, det({B2: 0.4, B3: 0.35}))]
    # distributions with background: (0.95, 0.05, 0) and (0.4, 0.35, 0.25)
    assert LeastConfidence().scores(pool) == pytest.approx([0.05, 0.6])
    assert rank(LeastConfidence(), pool) == [2, 1]


def test_margin_tells_a_tie_from_a_clear_winner() -> None:
    pool = [item(1, det({B2: 0.9, B3: 0.1})), item(2, det({B2: 0.5, B3: 0.5}))]
    assert Margin().scores(pool) == pytest.approx([1 - (0.9 - 0.1), 1 - 0.0])
    assert rank(Margin(), pool) == [2, 1]


def test_background_counts_as_an_outcome() -> None:
    # a 0.1-score box is 0.9 background: a confident "no lesion", not a doubtful category
    (low,) = Margin().scores([item(1, det({B2: 0.05, B3: 0.05}))])
    assert low == pytest.approx(1 - (0.9 - 0.05))


def test_entropy_is_highest_for_the_uniform_distribution() -> None:
    uniform = {B2: 0.2, B3: 0.2, B4: 0.2, B5: 0.2}  # background 0.2: 5 equal outcomes
    skewed = {B2: 0.6, B3: 0.2, B4: 0.1, B5: 0.1}  # background 0
    certain = {B2: 1.0, B3: 0.0, B4: 0.0, B5: 0.0}
    pool = [item(1, det(certain)), item(2, det(skewed)), item(3, det(uniform))]
    h_skewed = -(0.6 * math.log(0.6) + 0.2 * math.log(0.2) + 2 * 0.1 * math.log(0.1)) / math.log(5)
    assert Entropy().scores(pool) == pytest.approx([0.0, h_skewed, 1.0])
    assert rank(Entropy(), pool) == [3, 2, 1]


def test_aggregation_over_boxes_is_configurable() -> None:
    two = item(1, det({B2: 0.9, B3: 0.1}), det({B2: 0.5, B3: 0.5}))  # box scores 0.1 and 0.5
    assert LeastConfidence().scores([two]) == pytest.approx([0.5])  # max by default
    assert LeastConfidence(aggregate="mean").scores([two]) == pytest.approx([0.3])
    assert LeastConfidence(aggregate="sum").scores([two]) == pytest.approx([0.6])


def test_an_image_without_detections_ranks_first() -> None:
    pool = [item(1, det({B2: 0.5, B3: 0.5})), item(2)]
    assert Margin().scores(pool) == [1.0, 1.0]  # a tie at the top of the scale...
    assert rank(Margin(), pool) == [1, 2]  # ...broken by image id
    assert rank(Entropy(), pool) == [2, 1]  # the tie's entropy is log2/log3 < 1
    assert Entropy(empty=0.0).scores(pool)[1] == 0.0


def test_flip_ranks_a_category_change_first() -> None:
    moved: Box = (20.0, 10.0, 40.0, 30.0)  # IoU with BOX: 10*20 / (400 + 400 - 200) = 1/3
    same = item(1, det({B3: 0.8}), flipped=pred(det({B3: 0.7})))
    shifted = item(2, det({B3: 0.8}), flipped=pred(det({B3: 0.8}, moved)))
    changed = item(3, det({B3: 0.8}), flipped=pred(det({B5: 0.6})))
    vanished = item(4, det({B3: 0.8}), flipped=pred())
    both_empty = item(5, flipped=pred())
    pool = [same, shifted, changed, vanished, both_empty]
    assert FlipDisagreement().scores(pool) == pytest.approx([0.0, 2 / 3, 1.0, 2.0, 0.0])
    assert rank(FlipDisagreement(), pool) == [4, 3, 2, 1, 5]


def test_flip_needs_the_flipped_prediction() -> None:
    with pytest.raises(ValueError, match="image 7 has no flipped"):
        FlipDisagreement().scores([item(7, det({B3: 0.8}))])


def feat(image_id: int, *xy: float) -> PoolImage:
    return PoolImage(image_id, pred(), 100, features=np.array(xy, dtype=np.float32))


def test_coreset_picks_the_farthest_from_labeled_then_from_both() -> None:
    labeled = np.array([[0.0, 0.0]])
    # distances to (0,0): a 1, b 10, c 9 (but 1 from b), d 6 (and 10 from b)
    pool = [feat(1, 1, 0), feat(2, 10, 0), feat(3, 9, 0), feat(4, 0, 6)]
    assert rank(CoreSet(labeled), pool) == [2, 4, 1, 3]  # after b: a 1, c 1, d 6 -> d; a=c -> id
    assert CoreSet(labeled).scores(pool) == [2.0, 4.0, 1.0, 3.0]


def test_coreset_orders_duplicates_once_each() -> None:
    pool = [feat(2, 0, 0), feat(1, 0, 0), feat(3, 0, 0)]  # all on the labeled center
    assert CoreSet(np.zeros((1, 2))).scores(pool) == [2.0, 3.0, 1.0]


def test_coreset_without_labeled_starts_from_the_outlier() -> None:
    pool = [feat(5, 0, 0), feat(6, 1, 0), feat(7, 0, 1), feat(8, 9, 9)]  # mean (2.5, 2.5)
    assert rank(CoreSet(np.zeros((0, 2))), pool, k=2) == [8, 5]


def test_coreset_refuses_missing_features() -> None:
    with pytest.raises(ValueError, match="images \\[3\\] have none"):
        CoreSet(np.zeros((1, 2))).scores([feat(1, 0, 0), item(3)])


def test_random_is_seeded_and_independent_of_pool_order() -> None:
    pool = [item(i) for i in range(20)]
    first = rank(RandomStrategy(seed=1), pool)
    assert first == rank(RandomStrategy(seed=1), list(reversed(pool)))
    assert sorted(first) == list(range(20))
    assert first != rank(RandomStrategy(seed=2), pool)
    assert first != list(range(20))


def test_rank_breaks_ties_by_image_id_and_cuts_at_k() -> None:
    pool = [item(i, det({B2: 0.9, B3: 0.1})) for i in (9, 3, 7)] + [item(5, det({B2: 0.5}))]
    assert rank(LeastConfidence(), pool) == [5, 3, 7, 9]
    assert rank(LeastConfidence(), pool, k=2) == [5, 3]


def test_by_name_builds_every_strategy() -> None:
    assert isinstance(by_name("random", seed=3), RandomStrategy)
    assert by_name("entropy", aggregate="mean") == Entropy(aggregate="mean")
    assert by_name("coreset", labeled=np.zeros((1, 2))).name == "coreset"
    names = ["random", "least-confidence", "margin", "entropy", "flip"]
    assert [by_name(n).name for n in names] == names
    with pytest.raises(ValueError, match="unknown strategy 'bald'"):
        by_name("bald")


def test_each_strategy_says_what_it_needs_and_takes_only_its_own_options() -> None:
    assert {n: needs_of(n) for n in NAMES if needs_of(n)} == {
        "flip": {"flipped"},
        "coreset": {"features"},
    }
    offered = {"seed": 3, "labeled": np.zeros((1, 2))}
    assert build("random", **offered) == RandomStrategy(seed=3)
    assert build("entropy", **offered) == Entropy()
    assert isinstance(build("coreset", **offered), CoreSet)


def test_a_box_stored_without_probabilities_uses_its_score() -> None:
    bare = ImagePrediction((Detection((0, 0, 10, 10), Birads.B3, 0.8, {}),), 0.2)
    pool = [PoolImage(image_id=1, prediction=bare, width=20)]
    assert LeastConfidence().scores(pool) == [pytest.approx(0.2)]  # 1 - max(0.8, 0.2)
    assert Margin().scores(pool) == [pytest.approx(0.4)]  # 1 - (0.8 - 0.2)
    expected = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2)) / math.log(2)
    assert Entropy().scores(pool) == [pytest.approx(expected)]
