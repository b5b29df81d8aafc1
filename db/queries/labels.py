"""Consensus labels: one per (image, round), with when it was decided."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from core.birads import Birads
from db.models import Image, Label, LabelStatus, Split, utcnow
from db.schemas import BoxRecord
from db.upsert import upsert


def upsert_label(
    session: Session,
    *,
    image_id: int,
    round: int,
    status: LabelStatus,
    boxes: Sequence[BoxRecord],
    birads: Birads | None,
    model_version_id: str | None,
) -> None:
    """One consensus per (image, round) (INSERT ... ON CONFLICT). `decided_at` moves only when
    the status changes (or was never set), so a repeated sync keeps the time of the decision."""
    now = utcnow()
    row = {
        "image_id": image_id,
        "round": round,
        "status": status,
        "boxes": list(boxes),
        "birads": birads,
        "model_version_id": model_version_id,
        "decided_at": now if status is not LabelStatus.PENDING else None,
        "updated_at": now,
    }

    def changes(new: Any) -> dict[str, Any]:
        moved = or_(Label.status != new.status, Label.decided_at.is_(None))
        values = {c: new[c] for c in ("status", "boxes", "birads", "model_version_id")}
        values["decided_at"] = case((moved, new.decided_at), else_=Label.decided_at)
        values["updated_at"] = new.updated_at
        return values

    upsert(session, Label, row, keys=["image_id", "round"], update=changes)


def label_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Label.status, func.count()).group_by(Label.status)).all()
    return {str(status): int(n) for status, n in rows}


def labels_by_image(session: Session, *, round: int | None = None) -> dict[int, Label]:
    stmt = select(Label)
    if round is not None:
        stmt = stmt.where(Label.round == round)
    return {row.image_id: row for row in session.scalars(stmt.order_by(Label.round))}


def accepted_labels(session: Session) -> list[tuple[Image, Label]]:
    """Images the readers accepted (their latest decided round), outside the fixed test set."""
    rows = session.execute(
        select(Image, Label)
        .join(Label, Label.image_id == Image.id)
        .where(Label.status == LabelStatus.ACCEPTED, Image.split != Split.TEST)
        .order_by(Image.id, Label.round)
    ).all()
    return list({img.id: (img, label) for img, label in rows}.values())


def count_accepted_since(session: Session, *, since: datetime | None) -> int:
    stmt = select(func.count()).select_from(Label).where(Label.status == LabelStatus.ACCEPTED)
    if since is not None:
        stmt = stmt.where(Label.decided_at > since)
    return int(session.scalar(stmt) or 0)


def rejection_counts(session: Session) -> dict[int, int]:
    """How many rounds of each image the readers rejected (images never rejected are absent)."""
    rows = session.execute(
        select(Label.image_id, func.count())
        .where(Label.status == LabelStatus.REJECTED)
        .group_by(Label.image_id)
    ).all()
    return {int(image_id): int(n) for image_id, n in rows}
