"""Label Studio bookkeeping: received webhook events and the tasks we created."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import StudioEvent, StudioTask, utcnow
from db.upsert import insert_ignore


@dataclass(frozen=True)
class NewStudioEvent:
    action: str
    payload: dict[str, Any]
    ls_project_id: int | None = None
    ls_task_id: int | None = None
    ls_annotation_id: int | None = None


def add_studio_event(session: Session, *, event: NewStudioEvent) -> StudioEvent:
    row = StudioEvent(
        action=event.action,
        payload=event.payload,
        ls_project_id=event.ls_project_id,
        ls_task_id=event.ls_task_id,
        ls_annotation_id=event.ls_annotation_id,
    )
    session.add(row)
    session.flush()
    return row


def unprocessed_studio_events(session: Session, *, actions: Iterable[str]) -> list[StudioEvent]:
    return list(
        session.scalars(
            select(StudioEvent)
            .where(StudioEvent.processed_at.is_(None), StudioEvent.action.in_(list(actions)))
            .order_by(StudioEvent.id)
        )
    )


def mark_studio_events_processed(session: Session, *, ids: Iterable[int]) -> None:
    session.execute(
        update(StudioEvent).where(StudioEvent.id.in_(list(ids))).values(processed_at=utcnow())
    )


def count_studio_events(session: Session, *, action: str, processed: bool | None = None) -> int:
    query = select(func.count()).select_from(StudioEvent).where(StudioEvent.action == action)
    if processed is not None:
        column = StudioEvent.processed_at
        query = query.where(column.is_not(None) if processed else column.is_(None))
    return int(session.scalar(query) or 0)


def unprocessed_studio_event_ids(session: Session, *, actions: Iterable[str]) -> list[int]:
    return [int(e.id) for e in unprocessed_studio_events(session, actions=actions)]


def claim_studio_event(session: Session, *, event_id: int) -> StudioEvent | None:
    """Mark one waiting event processed and return it; None if it was no longer waiting.

    Written first in the sync's transaction for the event, so the write lock is taken before
    anything is read (SQLite) and the claim commits or rolls back with what the event did.
    """
    claimed = session.execute(
        update(StudioEvent)
        .where(StudioEvent.id == event_id, StudioEvent.processed_at.is_(None))
        .values(processed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return None
    return session.get(StudioEvent, event_id, populate_existing=True)


def set_aside_studio_event(session: Session, *, event_id: int, reason: str) -> None:
    """The event cannot be applied: keep it, processed, with the reason (shown in status)."""
    session.execute(
        update(StudioEvent)
        .where(StudioEvent.id == event_id)
        .values(processed_at=utcnow(), error=reason)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class SetAsideEvent:
    id: int
    action: str
    received_at: datetime
    reason: str
    ls_task_id: int | None
    ls_annotation_id: int | None


def count_set_aside_studio_events(session: Session) -> int:
    stmt = select(func.count()).select_from(StudioEvent).where(StudioEvent.error.is_not(None))
    return int(session.scalar(stmt) or 0)


def set_aside_studio_events(session: Session, *, limit: int = 5) -> list[SetAsideEvent]:
    """The newest events the sync set aside, newest first."""
    rows = session.scalars(
        select(StudioEvent)
        .where(StudioEvent.error.is_not(None))
        .order_by(StudioEvent.id.desc())
        .limit(limit)
    )
    return [
        SetAsideEvent(
            e.id, e.action, e.received_at, e.error or "", e.ls_task_id, e.ls_annotation_id
        )
        for e in rows
    ]


def studio_tasks(session: Session, *, ls_project_id: int) -> list[StudioTask]:
    return list(
        session.scalars(select(StudioTask).where(StudioTask.ls_project_id == ls_project_id))
    )


def studio_task(session: Session, *, ls_task_id: int) -> StudioTask | None:
    return session.scalars(
        select(StudioTask).where(StudioTask.ls_task_id == ls_task_id)
    ).one_or_none()


def add_studio_task(
    session: Session,
    *,
    image_id: int,
    round: int,
    ls_project_id: int,
    ls_task_id: int,
    model_version_id: str | None,
) -> StudioTask:
    """Record a task; one already recorded (same task id, or same image, round and project) is
    kept and returned, so two pushes or syncs recording the same task never collide."""
    row = {
        "image_id": image_id,
        "round": round,
        "ls_project_id": ls_project_id,
        "ls_task_id": ls_task_id,
        "model_version_id": model_version_id,
        "created_at": utcnow(),
    }
    insert_ignore(session, StudioTask, [row])
    same_place = select(StudioTask).where(
        StudioTask.image_id == image_id,
        StudioTask.round == round,
        StudioTask.ls_project_id == ls_project_id,
    )
    return studio_task(session, ls_task_id=ls_task_id) or session.scalars(same_place).one()


def set_studio_task_version(session: Session, *, ls_task_id: int, model_version_id: str) -> None:
    session.execute(
        update(StudioTask)
        .where(StudioTask.ls_task_id == ls_task_id)
        .values(model_version_id=model_version_id)
    )


def studio_tasks_for(session: Session, *, image_id: int, round: int) -> list[StudioTask]:
    return list(
        session.scalars(
            select(StudioTask)
            .where(StudioTask.image_id == image_id, StudioTask.round == round)
            .order_by(StudioTask.id.desc())
        )
    )
