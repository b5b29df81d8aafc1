"""The readers' queue order comes from the query strategy on stored predictions."""

from __future__ import annotations

from core.birads import Birads
from db.models import Prediction
from db.schemas import BoxRecord
from labeler import queue as review_queue
from labeler.studio.push import queue_order


def _item(image_id: int, probs: dict[Birads, float]) -> review_queue.ReviewItem:
    top = max(probs, key=lambda c: probs[c])
    box = BoxRecord(xyxy=(10, 10, 50, 50), birads=top, score=probs[top], probs=probs)
    row = Prediction(
        image_id=image_id,
        model_version_id="v",
        boxes=[box],
        image_birads=top,
        uncertainty=1 - probs[top],
    )
    return review_queue.ReviewItem(image_id, 1, f"images/{image_id}.png", 100, 100, row)


def test_the_most_uncertain_prediction_goes_first() -> None:
    sure = _item(1, {Birads.B2: 0.97, Birads.B5: 0.01})
    torn = _item(2, {Birads.B2: 0.45, Birads.B5: 0.45})
    middling = _item(3, {Birads.B2: 0.7, Birads.B5: 0.2})
    for strategy in ("least-confidence", "margin", "entropy"):
        assert queue_order([sure, torn, middling], strategy) == {2: 0, 3: 1, 1: 2}, strategy


def test_random_order_is_a_permutation_and_empty_is_empty() -> None:
    items = [_item(i, {Birads.B3: 0.6}) for i in range(1, 6)]
    assert sorted(queue_order(items, "random").values()) == [0, 1, 2, 3, 4]
    assert queue_order([], "entropy") == {}
