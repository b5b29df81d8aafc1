"""The readers' queue order comes from the query strategy on stored predictions."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.support.factories import (
    KNOWN_MALIGNANCY,
    add_prelabels,
    import_sample,
    register_random_detector,
)
from core.birads import Birads
from core.settings import Settings
from db.models import Image, Prediction
from db.schemas import BoxRecord
from labeler import queue as review_queue
from labeler.context import AppContext
from labeler.studio.push import push, queue_order
from ml_backend.studio.format import label_config, prediction_errors
from ml_backend.studio.schema import Prediction as Prediction_
from tests.labeler.studio.fake import PushStudio


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


def test_pushed_tasks_carry_the_queue_rank_and_a_probability_as_score(
    settings: Settings, sessions: sessionmaker[Session], busbra_dir: Path
) -> None:
    """The shown score is the image's P(malignant); the queue order is task data, and
    new tasks are imported in queue order (sequential sampling serves by task id)."""
    import_sample(settings, sessions, busbra_dir, "busbra")
    version = register_random_detector(settings, sessions)
    with sessions() as s:
        ids = sorted(i.id for i in s.scalars(select(Image)))[:3]
    add_prelabels(sessions, version, ids, Birads.B4)  # plain 4, as a five-way detector says
    studio = PushStudio(label_config())
    push(AppContext(settings), studio.as_studio(), 1, model_version=version)
    ranks = [t["data"]["queue_rank"] for t in studio.imported]
    assert ranks == sorted(ranks) == list(range(len(ids)))
    for task in studio.imported:
        (prediction,) = task["predictions"]
        assert prediction["score"] == KNOWN_MALIGNANCY[Birads.B4]  # P(malignant), not a rank
        assert not prediction_errors(Prediction_.model_validate(prediction))
