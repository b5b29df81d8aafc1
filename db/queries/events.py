"""The audit trail: who did what to which subject, and when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Event


def record_event(
    session: Session, *, actor: str, action: str, subject: str, detail: dict[str, Any]
) -> Event:
    event = Event(actor=actor, action=action, subject=subject, detail=detail)
    session.add(event)
    return event


def latest_event_at(session: Session, *, action: str) -> datetime | None:
    """When the newest event of `action` happened (None if never)."""
    return session.scalar(select(func.max(Event.at)).where(Event.action == action))


def count_events(session: Session, *, action: str | None = None) -> int:
    stmt = select(func.count(Event.id))
    if action is not None:
        stmt = stmt.where(Event.action == action)
    return int(session.scalar(stmt) or 0)
