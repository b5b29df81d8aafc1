"""Readers' reviews: one row per (image, reader, round), the latest annotation."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, fields

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


class ReviewChange(enum.StrEnum):
    """What an upsert did to the reviews: what `labeler sync` counts."""

    NEW = "new"  # no review at (image, reader, round) and none carrying this annotation before
    UPDATED = "updated"  # a review was there (or this annotation's, elsewhere) and now differs
    UNCHANGED = "unchanged"  # the review already said exactly this: nothing is written


def upsert_review(session: Session, *, review: ReviewUpsert) -> ReviewChange:
    """One row per (image, reader, round), carrying its latest annotation: safe to repeat and to
    run from two processes at once (INSERT ... ON CONFLICT). Says whether the review is new,
    updated or unchanged, from the rows this transaction saw (exact while one sync runs at a
    time, as `sync.lock` makes it); an unchanged review is not written (its updated_at stays)."""
    change = _change(session, review)
    if change is not ReviewChange.UNCHANGED:
        _write(session, review)
    return change


def _values(review: ReviewUpsert) -> dict[str, object]:
    """The review as stored: every field of ReviewUpsert is a column of Review."""
    return {f.name: getattr(review, f.name) for f in fields(review)} | {"boxes": list(review.boxes)}


def _change(session: Session, review: ReviewUpsert) -> ReviewChange:
    """New when neither the review's key nor its annotation has a row; unchanged when the one
    row there says exactly this; updated otherwise (a changed review, or a moved annotation)."""
    said = _values(review)
    key = tuple_(Review.image_id, Review.reader, Review.round)
    mine = tuple_(review.image_id, review.reader, review.round)
    there = (key == mine) | (Review.ls_annotation_id == review.ls_annotation_id)
    rows = session.execute(select(*(getattr(Review, c) for c in said)).where(there)).all()
    if not rows:
        return ReviewChange.NEW
    if len(rows) == 1 and rows[0]._asdict() == said:
        return ReviewChange.UNCHANGED
    return ReviewChange.UPDATED


def _write(session: Session, review: ReviewUpsert) -> None:
    key = (Review.image_id, Review.reader, Review.round)
    mine = (review.image_id, review.reader, review.round)
    session.execute(  # the annotation moved (another reader or task): its old row goes
        delete(Review)
        .where(Review.ls_annotation_id == review.ls_annotation_id, tuple_(*key) != tuple_(*mine))
        .execution_options(synchronize_session=False)
    )
    now = utcnow()
    row = _values(review) | {"created_at": now, "updated_at": now}
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
