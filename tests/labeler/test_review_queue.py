"""The review queue and rounds (labeler.queue, labeler.rounds) on a real SQLite file."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core.birads import Birads
from db.models import LabelStatus, Split
from db.queries import images as image_queries
from db.queries import predictions as prediction_queries
from labeler.queue import review_items
from labeler.rounds import current_rounds
from tests.db.rows import add_images, add_label, add_version, new_image


def test_queue_skips_accepted_test_and_held_images_most_uncertain_first(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        add_version(s, "v1")
        sure, unsure, rejected, accepted = add_images(s, 4)
        (test,) = add_images(s, 1, first=5, split=Split.TEST)
        held = image_queries.add_image(s, new=new_image(6, held_reason="phi"))
        uncertainty = {sure: 0.1, unsure: 0.9, rejected: 0.5, accepted: 0.95, test: 1.0, held: 1.0}
        prediction_queries.add_predictions(
            s,
            model_version_id="v1",
            predictions=[
                prediction_queries.NewPrediction(image.id, (), Birads.B1, u)
                for image, u in uncertainty.items()
            ],
        )
        add_label(s, rejected.id, 1, LabelStatus.REJECTED)
        add_label(s, rejected.id, 2, LabelStatus.REJECTED)
        add_label(s, accepted.id, 1, LabelStatus.REJECTED)
        add_label(s, accepted.id, 2, LabelStatus.ACCEPTED)
    with sessions() as s:
        assert current_rounds(s) == {rejected.id: 3, accepted.id: 2}
        items = review_items(s, model_version_id="v1")
        assert [(i.image_id, i.round) for i in items] == [
            (unsure.id, 1),
            (rejected.id, 3),
            (sure.id, 1),
        ]
        assert items[0].prediction.uncertainty == 0.9 and items[0].png_path == "images/2.png"
        assert review_items(s, model_version_id="v2") == []
