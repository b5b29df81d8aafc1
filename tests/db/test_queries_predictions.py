"""db.queries.predictions: one pre-label per (image, version), the first one wins."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core.birads import Birads
from core.results import PrelabelSource
from db.models import LabelStatus, Split
from db.queries import images as image_queries
from db.queries import labels as label_queries
from db.queries import predictions as prediction_queries
from db.schemas import BoxRecord
from tests.db.rows import add_images, add_version, new_image

BOX = BoxRecord(xyxy=(10.0, 10.0, 50.0, 40.0), birads=Birads.B3, score=0.8)


def _prediction(image_id: int, uncertainty: float) -> prediction_queries.NewPrediction:
    return prediction_queries.NewPrediction(image_id, (BOX,), Birads.B3, uncertainty)


def test_first_prediction_wins_and_counts(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_version(s, "v1")
        add_version(s, "v2")
        a, b, c = add_images(s, 3)
        prediction_queries.add_predictions(
            s, model_version_id="v1", predictions=[_prediction(a.id, 0.2), _prediction(b.id, 0.4)]
        )
        prediction_queries.add_predictions(
            s, model_version_id="v1", predictions=[_prediction(a.id, 0.9)]
        )
    with sessions() as s:
        assert prediction_queries.count_predictions(s, model_version_id="v1") == 2
        assert prediction_queries.count_predictions(s, model_version_id="v2") == 0
        cached = prediction_queries.cached_prediction(s, image_id=a.id, model_version_id="v1")
        assert cached is not None and cached.uncertainty == 0.2 and cached.boxes == [BOX]
        assert prediction_queries.cached_prediction(s, image_id=c.id, model_version_id="v1") is None
        assert prediction_queries.images_without_prediction(s, model_version_id="v1") == [
            (c.id, "images/3.png")
        ]
        assert len(prediction_queries.images_without_prediction(s, model_version_id="v2")) == 3


def test_predicted_images_filters(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        add_version(s, "v1")
        train, accepted = add_images(s, 2)
        (test,) = add_images(s, 1, first=3, split=Split.TEST)
        held = image_queries.add_image(s, new=new_image(4, held_reason="phi"))
        ids = [train.id, accepted.id, test.id, held.id]
        prediction_queries.add_predictions(
            s, model_version_id="v1", predictions=[_prediction(i, 0.5) for i in ids]
        )
        label_queries.upsert_label(
            s,
            image_id=accepted.id,
            round=1,
            status=LabelStatus.ACCEPTED,
            boxes=[BOX],
            birads=Birads.B3,
            model_version_id="v1",
        )
    with sessions() as s:
        every = prediction_queries.predicted_images(s, model_version_id="v1")
        no_test = prediction_queries.predicted_images(
            s, model_version_id="v1", skip_split=Split.TEST
        )
        no_held = prediction_queries.predicted_images(s, model_version_id="v1", skip_held=True)
        open_ = prediction_queries.predicted_images(
            s, model_version_id="v1", skip_status=LabelStatus.ACCEPTED
        )
        no_rejected = prediction_queries.predicted_images(
            s, model_version_id="v1", skip_status=LabelStatus.REJECTED
        )
    assert [image.id for image, _ in every] == ids
    assert all(p.model_version_id == "v1" and p.image_id == i.id for i, p in every)
    assert [image.id for image, _ in no_test] == [train.id, accepted.id, held.id]
    assert [image.id for image, _ in no_held] == [train.id, accepted.id, test.id]
    assert [image.id for image, _ in open_] == [train.id, test.id, held.id]
    assert [image.id for image, _ in no_rejected] == ids


def test_a_prediction_records_which_parts_produced_it(sessions: sessionmaker[Session]) -> None:
    source = PrelabelSource(detector="v1", calibrated=True)
    with sessions.begin() as s:
        add_version(s, "v1")
        a, b = add_images(s, 2)
        made = prediction_queries.NewPrediction(a.id, (BOX,), Birads.B3, 0.1, produced_by=source)
        prediction_queries.add_predictions(
            s, model_version_id="v1", predictions=[made, _prediction(b.id, 0.2)]
        )
    with sessions() as s:
        stored = prediction_queries.cached_prediction(s, image_id=a.id, model_version_id="v1")
        assert stored is not None and stored.produced_by == source
        unknown = prediction_queries.cached_prediction(s, image_id=b.id, model_version_id="v1")
        assert unknown is not None and unknown.produced_by is None
