"""db.queries.reviews: one row per (image, reader, round), following its annotation."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core.birads import Birads
from db.models import Verdict
from db.queries import reviews as review_queries
from tests.db.rows import add_images


def _review(
    image_id: int,
    reader: str,
    annotation: int,
    *,
    round: int = 1,
    birads: Birads | None = Birads.B3,
) -> review_queries.ReviewUpsert:
    return review_queries.ReviewUpsert(
        image_id=image_id,
        reader=reader,
        round=round,
        verdict=Verdict.ACCEPT,
        boxes=(),
        image_birads=birads,
        pathology=None,
        prediction_id=None,
        ls_annotation_id=annotation,
        ls_task_id=100 + round,
    )


def test_upsert_keeps_one_row_per_reader_and_round(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        (image,) = add_images(s, 1)
        review_queries.upsert_review(s, review=_review(image.id, "ann", 1))
        review_queries.upsert_review(s, review=_review(image.id, "ann", 1, birads=Birads.B5))
        review_queries.upsert_review(s, review=_review(image.id, "bob", 2))
        review_queries.upsert_review(s, review=_review(image.id, "ann", 3, round=2, birads=None))
    with sessions() as s:
        rows = review_queries.reviews_for(s, image_id=image.id, round=1)
        assert [(r.reader, r.image_birads) for r in rows] == [
            ("ann", Birads.B5),
            ("bob", Birads.B3),
        ]
        assert review_queries.review_rounds(s) == [1, 2]
        assert review_queries.round_ratings(s, round=1) == {
            image.id: {"ann": Birads.B5, "bob": Birads.B3}
        }
        assert review_queries.round_ratings(s, round=2) == {}  # no BI-RADS given
        assert review_queries.review_annotation_ids(s, ls_task_ids=[101]) == {1, 2}


def test_an_annotation_that_moves_leaves_its_old_row(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        (image,) = add_images(s, 1)
        review_queries.upsert_review(s, review=_review(image.id, "ann", 1))
        review_queries.upsert_review(s, review=_review(image.id, "bob", 1))  # reassigned
    with sessions() as s:
        assert [r.reader for r in review_queries.reviews_for(s, image_id=image.id, round=1)] == [
            "bob"
        ]


def test_delete_reviews_reports_what_it_touched(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        a, b = add_images(s, 2)
        review_queries.upsert_review(s, review=_review(a.id, "ann", 1))
        review_queries.upsert_review(s, review=_review(b.id, "ann", 2, round=2))
        review_queries.upsert_review(s, review=_review(b.id, "bob", 3))
        touched = review_queries.delete_reviews(s, ls_annotation_ids=[2, 3, 99])
    assert sorted(touched) == [(b.id, 1), (b.id, 2)]
    with sessions() as s:
        assert review_queries.review_annotation_ids(s, ls_task_ids=[101, 102]) == {1}
