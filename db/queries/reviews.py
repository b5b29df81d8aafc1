"""Readers' reviews: one row per (image, reader, round), the latest annotation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select, tuple_
from sqlalchemy.orm import Session

from core.birads import Birads, Pathology
from db.models import Review, Verdict, utcnow
from db.schemas import BoxRecord
from db.upsert import upsert


@dataclass(frozen=True)
class ReviewUpsert:
    image_id: int
    reader: str
    round: int
    verdict: Verdict
    boxes: tuple[BoxRecord, ...]
    image_birads: Birads | None
    pathology: Pathology | None
    prediction_id: int | None
    ls_annotation_id: int
    ls_task_id: int


def upsert_review(session: Session, *, review: ReviewUpsert) -> None:
    """One row per (image, reader, round), carrying its latest annotation: safe to repeat and to
    run from two processes at once (INSERT ... ON CONFLICT)."""
    key = (Review.image_id, Review.reader, Review.round)
    mine = (review.image_id, review.reader, review.round)
    session.execute(  # the annotation moved (another reader or task): its old row goes
        delete(Review)
        .where(Review.ls_annotation_id == review.ls_annotation_id, tuple_(*key) != tuple_(*mine))
        .execution_options(synchronize_session=False)
    )
    now = utcnow()
    row = {
        "image_id": review.image_id,
        "reader": review.reader,
        "round": review.round,
        "verdict": review.verdict,
        "boxes": list(review.boxes),
        "image_birads": review.image_birads,
        "pathology": review.pathology,
        "prediction_id": review.prediction_id,
        "ls_annotation_id": review.ls_annotation_id,
        "ls_task_id": review.ls_task_id,
        "created_at": now,
        "updated_at": now,
    }
    keys = ["image_id", "reader", "round"]
    kept = (*keys, "created_at")
    upsert(
        session, Review, row, keys=keys, update=lambda e: {c: e[c] for c in row if c not in kept}
    )


def delete_reviews(session: Session, *, ls_annotation_ids: Iterable[int]) -> list[tuple[int, int]]:
    """Remove reviews whose annotations were deleted; returns the (image, round) they touched."""
    rows = list(
        session.scalars(select(Review).where(Review.ls_annotation_id.in_(list(ls_annotation_ids))))
    )
    touched = [(r.image_id, r.round) for r in rows]
    for row in rows:
        session.delete(row)
    session.flush()
    return touched


def reviews_for(session: Session, *, image_id: int, round: int) -> list[Review]:
    return list(
        session.scalars(
            select(Review)
            .where(Review.image_id == image_id, Review.round == round)
            .order_by(Review.reader)
        )
    )


def review_annotation_ids(session: Session, *, ls_task_ids: Iterable[int]) -> set[int]:
    stmt = select(Review.ls_annotation_id).where(Review.ls_task_id.in_(list(ls_task_ids)))
    return {int(v) for v in session.scalars(stmt) if v is not None}


def round_ratings(session: Session, *, round: int) -> dict[int, dict[str, Birads]]:
    """image id -> reader -> the BI-RADS that reader gave, for one round."""
    out: dict[int, dict[str, Birads]] = {}
    stmt = select(Review.image_id, Review.reader, Review.image_birads).where(
        Review.round == round, Review.image_birads.is_not(None)
    )
    for image_id, reader, birads in session.execute(stmt).all():
        if birads is not None:
            out.setdefault(int(image_id), {})[str(reader)] = birads
    return out


def review_rounds(session: Session) -> list[int]:
    return [int(r) for r in session.scalars(select(Review.round).distinct().order_by(Review.round))]
