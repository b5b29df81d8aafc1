"""Reader agreement: every review as columns, and the images readers disagreed on most."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import case, func, select, tuple_
from sqlalchemy.orm import Session

from core.birads import Birads
from db.models import Image, Review
from db.reports.common import columnar, raw


@dataclass(frozen=True)
class ReviewRatings:
    """Every review as columns (one position per review); `birads` is None where a reader gave
    no category (a reject without a correction)."""

    image_id: tuple[int, ...] = ()
    review_round: tuple[int, ...] = ()
    reader: tuple[str, ...] = ()
    verdict: tuple[str, ...] = ()
    birads: tuple[str | None, ...] = ()

    def __len__(self) -> int:
        return len(self.image_id)


def review_ratings(session: Session, *, review_round: int | None = None) -> ReviewRatings:
    """Reviews for agreement statistics; enums come back as plain strings (cheaper, picklable)."""
    stmt = select(
        Review.image_id,
        Review.round,
        Review.reader,
        raw(Review.verdict),
        raw(Review.image_birads),
    )
    if review_round is not None:
        stmt = stmt.where(Review.round == review_round)
    return columnar(ReviewRatings, session.execute(stmt).all())


@dataclass(frozen=True)
class ReaderReading:
    reader: str
    verdict: str
    birads: str | None


@dataclass(frozen=True)
class DisputedImage:
    image_id: int
    review_round: int
    png_path: str
    score: int  # extra BI-RADS categories + extra verdicts beyond the first: 0 is agreement
    readings: tuple[ReaderReading, ...]

    @property
    def categories(self) -> tuple[str, ...]:
        given = {r.birads for r in self.readings if r.birads is not None}
        return tuple(c.value for c in Birads if c.value in given)


def disputed_images(
    session: Session, *, review_round: int | None = None, limit: int = 12
) -> list[DisputedImage]:
    """The images readers disagreed on most, scored in SQL so only `limit` rows come back."""
    n_birads = func.count(func.distinct(Review.image_birads))
    n_verdicts = func.count(func.distinct(Review.verdict))
    score = case((n_birads > 1, n_birads - 1), else_=0) + n_verdicts - 1
    stmt = select(Review.image_id, Review.round, score).group_by(Review.image_id, Review.round)
    if review_round is not None:
        stmt = stmt.where(Review.round == review_round)
    top = session.execute(
        stmt.having(score > 0).order_by(score.desc(), Review.image_id, Review.round).limit(limit)
    ).all()
    if not top:
        return []
    keys = [(int(i), int(r)) for i, r, _ in top]
    reviews = session.execute(
        select(
            Review.image_id, Review.round, Review.reader, Review.verdict, Review.image_birads
        ).where(tuple_(Review.image_id, Review.round).in_(keys))
    ).all()
    readings: dict[tuple[int, int], list[ReaderReading]] = defaultdict(list)
    for image_id, rnd, reader, verdict, birads in reviews:
        value = birads.value if birads is not None else None
        readings[(image_id, rnd)].append(ReaderReading(reader, verdict.value, value))
    paths = {
        image_id: png_path
        for image_id, png_path in session.execute(
            select(Image.id, Image.png_path).where(Image.id.in_([k[0] for k in keys]))
        )
    }
    return [
        DisputedImage(
            image_id,
            rnd,
            paths[image_id],
            int(s),
            tuple(sorted(readings[(image_id, rnd)], key=lambda r: r.reader)),
        )
        for (image_id, rnd), (_, _, s) in zip(keys, top, strict=True)
    ]
