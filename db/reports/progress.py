"""Progress of the loop: where each image stands, reviews per reader and day, time to decide,
webhook events set aside."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from sqlalchemy import String, Subquery, func, literal, select, union_all
from sqlalchemy.orm import Session

from db.models import Image, Label, LabelStatus, Prediction, Review
from db.queries import studio as studio_queries
from db.reports.common import columnar, day_of, instant, raw


class ImageStatus(StrEnum):
    """Where an image stands in the loop (the latest round decides)."""

    UNLABELED = "unlabeled"
    PRE_LABELED = "pre-labeled"
    IN_REVIEW = "in review"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass(frozen=True)
class StatusTimeline:
    """Images in each status at the end of each day (UTC) up to today, and right now: today's
    counts (the last) are the current ones."""

    days: tuple[date, ...]
    counts: dict[ImageStatus, tuple[int, ...]]
    current: dict[ImageStatus, int]


def _status_changes() -> Subquery:
    """Every status change of every image as rows (image_id, step, at, status), in SQL.

    Steps follow the loop: import (0), first pre-label (1), then per round r its first review
    (2r) and its decision (2r + 1). Images are ordered by step, not clock, so equal times are
    safe. Decisions of "pending" (or without a time) are no change.
    """
    imported = select(
        Image.id.label("image_id"),
        literal(0).label("step"),
        Image.imported_at.label("at"),
        literal(ImageStatus.UNLABELED.value, String).label("status"),
    )
    prelabeled = select(
        Prediction.image_id,
        literal(1),
        func.min(Prediction.created_at),
        literal(ImageStatus.PRE_LABELED.value, String),
    ).group_by(Prediction.image_id)
    reviewed = select(
        Review.image_id,
        2 * Review.round,
        func.min(Review.created_at),
        literal(ImageStatus.IN_REVIEW.value, String),
    ).group_by(Review.image_id, Review.round)
    decided = select(
        Label.image_id, 2 * Label.round + 1, Label.decided_at, raw(Label.status)
    ).where(Label.status != LabelStatus.PENDING, Label.decided_at.is_not(None))
    return union_all(imported, prelabeled, reviewed, decided).subquery("changes")


def image_statuses(session: Session) -> dict[int, ImageStatus]:
    """The current status of every image (its last change), by image id."""
    changes = _status_changes()
    newest = func.row_number().over(partition_by=changes.c.image_id, order_by=changes.c.step.desc())
    ranked = select(changes.c.image_id, changes.c.status, newest.label("n")).subquery()
    stmt = select(ranked.c.image_id, ranked.c.status).where(ranked.c.n == 1)
    return {image_id: ImageStatus(status) for image_id, status in session.execute(stmt)}


def status_timeline(session: Session, *, today: date | None = None) -> StatusTimeline:
    """Images per status at the end of each day: each change adds one image to its status and
    takes it from the previous one. Aggregated in SQL, so only days x changes come back.

    The days run from the first change to `today` (default: the UTC date now), quiet days
    included, so the last day is the state right now; changes stamped after today extend it."""
    changes = _status_changes()
    previous = func.lag(changes.c.status).over(
        partition_by=changes.c.image_id, order_by=changes.c.step
    )
    moves = select(
        func.date(changes.c.at).label("day"), changes.c.status, previous.label("previous")
    ).subquery()
    stmt = select(moves.c.day, moves.c.status, moves.c.previous, func.count()).group_by(
        moves.c.day, moves.c.status, moves.c.previous
    )
    deltas: dict[date, Counter[str]] = defaultdict(Counter)
    for day, status, before, n in session.execute(stmt):
        change = deltas[date.fromisoformat(day_of(day))]
        change[status] += n
        if before is not None:
            change[before] -= n
    if not deltas:
        return StatusTimeline((), {s: () for s in ImageStatus}, {s: 0 for s in ImageStatus})
    now = today if today is not None else datetime.now(UTC).date()
    first, last = min(deltas), max(*deltas, now)
    days = tuple(first + timedelta(days=i) for i in range((last - first).days + 1))
    running: Counter[str] = Counter()
    series: dict[ImageStatus, list[int]] = {s: [] for s in ImageStatus}
    for day in days:
        running.update(deltas.get(day, Counter()))
        for status in ImageStatus:
            series[status].append(running[status.value])
    return StatusTimeline(
        days,
        {s: tuple(v) for s, v in series.items()},
        {s: running[s.value] for s in ImageStatus},
    )


@dataclass(frozen=True)
class ReaderDay:
    reader: str
    day: date
    reviews: int


def reviews_per_reader_day(session: Session) -> list[ReaderDay]:
    """Reviews each reader submitted per UTC day, grouped in SQL (cheap on large tables)."""
    day = func.date(Review.created_at)
    stmt = (
        select(Review.reader, day, func.count(Review.id))
        .group_by(Review.reader, day)
        .order_by(day, Review.reader)
    )
    return [
        ReaderDay(reader, date.fromisoformat(day_of(d)), int(n))
        for reader, d, n in session.execute(stmt)
    ]


@dataclass(frozen=True)
class ConsensusTimes:
    """Hours from pre-label to decision, one position per decided label (columns: cheap)."""

    image_id: tuple[int, ...] = ()
    review_round: tuple[int, ...] = ()
    hours: tuple[float, ...] = ()

    def __len__(self) -> int:
        return len(self.image_id)


def consensus_times(session: Session) -> ConsensusTimes:
    """Pre-label to decision per decided label: the pre-label of the label's model version, or
    the image's first pre-label when the label names none. Labels with no pre-label are left out.
    """
    of_version = (
        select(Prediction.created_at)
        .where(
            Prediction.image_id == Label.image_id,
            Prediction.model_version_id == Label.model_version_id,
        )
        .scalar_subquery()
    )
    first = (
        select(func.min(Prediction.created_at))
        .where(Prediction.image_id == Label.image_id)
        .scalar_subquery()
    )
    stmt = select(
        Label.image_id, Label.round, raw(func.coalesce(of_version, first)), raw(Label.decided_at)
    ).where(Label.status != LabelStatus.PENDING, Label.decided_at.is_not(None))
    rows = [
        (image_id, rnd, (instant(decided) - instant(pre)).total_seconds() / 3600)
        for image_id, rnd, pre, decided in session.execute(stmt)
        if pre is not None and decided is not None
    ]
    return columnar(ConsensusTimes, rows)


@dataclass(frozen=True)
class SetAsideEvents:
    """Webhook events `labeler sync` could not apply: how many, and the newest with reasons."""

    count: int = 0
    newest: tuple[studio_queries.SetAsideEvent, ...] = ()


def set_aside_events(session: Session, *, limit: int = 20) -> SetAsideEvents:
    return SetAsideEvents(
        studio_queries.count_set_aside_studio_events(session),
        tuple(studio_queries.set_aside_studio_events(session, limit=limit)),
    )
