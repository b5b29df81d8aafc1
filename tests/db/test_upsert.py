"""INSERT ... ON CONFLICT for reviews, labels, predictions and studio tasks: safe to repeat and
safe from several writers at once (each with its own engine, on one SQLite file)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_mock_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.birads import Birads
from core.settings import Settings
from db.engine import make_engine, make_session_factory
from db.models import Label, LabelStatus, Prediction, Review, StudioTask, Verdict
from db.queries import labels as label_queries
from db.queries import predictions as prediction_queries
from db.queries import reviews as review_queries
from db.queries import studio as studio_queries
from db.upsert import UpsertUnsupportedError, insert_for
from tests.labeler.studio.fake import PRELABEL, VERSION, seed


def _review(
    image_id: int, reader: str, ann_id: int, task_id: int = 101
) -> review_queries.ReviewUpsert:
    return review_queries.ReviewUpsert(
        image_id=image_id,
        reader=reader,
        round=1,
        verdict=Verdict.ACCEPT,
        boxes=(PRELABEL,),
        image_birads=Birads.B4A,
        pathology=None,
        prediction_id=None,
        ls_annotation_id=ann_id,
        ls_task_id=task_id,
    )


def _count(sessions: sessionmaker[Session], model: type[object]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_writers_at_once_never_collide(settings: Settings, sessions: sessionmaker[Session]) -> None:
    """The reported IntegrityError: select-then-insert upserts racing each other."""
    images = list(seed(sessions, n_images=3).values())
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        engine = make_engine(settings.db_url)
        mine = make_session_factory(engine)
        try:
            barrier.wait(10)
            for rep in range(5):
                with mine.begin() as session:
                    for i, image_id in enumerate(images):
                        for r in range(3):
                            ann = 1000 * i + r
                            review_queries.upsert_review(
                                session, review=_review(image_id, f"reader{r}", ann)
                            )
                        label_queries.upsert_label(
                            session,
                            image_id=image_id,
                            round=1,
                            status=LabelStatus.ACCEPTED if rep % 2 else LabelStatus.PENDING,
                            boxes=(PRELABEL,),
                            birads=Birads.B4A,
                            model_version_id=VERSION,
                        )
                        p = prediction_queries.NewPrediction(
                            image_id, (PRELABEL,), Birads.B4A, n / 10
                        )
                        prediction_queries.add_predictions(
                            session, model_version_id=VERSION, predictions=[p]
                        )
                        studio_queries.add_studio_task(
                            session,
                            image_id=image_id,
                            round=2,
                            ls_project_id=1,
                            ls_task_id=500 + i,
                            model_version_id=VERSION,
                        )
        except BaseException as exc:  # every failure is the test's result
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert _count(sessions, Review) == 9
    assert _count(sessions, Label) == 3
    assert _count(sessions, Prediction) == 3
    assert _count(sessions, StudioTask) == 6


def test_a_label_keeps_its_decision_time_until_its_status_changes(
    sessions: sessionmaker[Session],
) -> None:
    (image_id,) = seed(sessions, n_images=1).values()

    def put(status: LabelStatus) -> datetime | None:
        with sessions.begin() as session:
            label_queries.upsert_label(
                session,
                image_id=image_id,
                round=1,
                status=status,
                boxes=(),
                birads=None,
                model_version_id=None,
            )
        with sessions() as session:
            label = label_queries.labels_by_image(session)[image_id]
            assert label.status == status
            return label.decided_at

    assert put(LabelStatus.PENDING) is None
    accepted = put(LabelStatus.ACCEPTED)
    now = datetime.now(UTC).replace(tzinfo=None)  # SQLite gives naive UTC back
    assert accepted is not None and abs(accepted.replace(tzinfo=None) - now) < timedelta(minutes=1)
    assert put(LabelStatus.ACCEPTED) == accepted  # a repeated sync keeps the decision time
    rejected = put(LabelStatus.REJECTED)
    assert rejected is not None and rejected >= accepted
    assert put(LabelStatus.PENDING) is None


def test_a_review_follows_its_annotation_and_the_first_prediction_wins(
    sessions: sessionmaker[Session],
) -> None:
    (image_id,) = seed(sessions, n_images=1).values()
    with sessions.begin() as session:
        review_queries.upsert_review(session, review=_review(image_id, "a", 1))
        review_queries.upsert_review(session, review=_review(image_id, "a", 2))  # a new annotation
        review_queries.upsert_review(session, review=_review(image_id, "b", 2))  # it moved to b
        other = prediction_queries.NewPrediction(image_id, (), Birads.B1, 0.99)
        prediction_queries.add_predictions(session, model_version_id=VERSION, predictions=[other])
        prediction_queries.add_predictions(session, model_version_id=VERSION, predictions=[])
    with sessions() as session:
        rows = list(session.scalars(select(Review)))
        assert [(r.reader, r.ls_annotation_id) for r in rows] == [("b", 2)]
        kept = prediction_queries.cached_prediction(
            session, image_id=image_id, model_version_id=VERSION
        )
        assert kept is not None and kept.image_birads == Birads.B4A
        again = studio_queries.add_studio_task(
            session,
            image_id=image_id,
            round=1,
            ls_project_id=1,
            ls_task_id=999,  # Label Studio holds a duplicate task for the same image
            model_version_id=None,
        )
        assert again.ls_task_id == 101


def test_an_unknown_dialect_is_refused_clearly() -> None:
    engine = create_mock_engine("mysql://", executor=lambda *_: None)
    session = Session(bind=engine)  # type: ignore[arg-type]
    with pytest.raises(UpsertUnsupportedError, match="mysql"):
        insert_for(session, Review)
