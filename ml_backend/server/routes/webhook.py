from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session, sessionmaker

from db import queries
from ml_backend.server.schemas import WebhookEvent

router = APIRouter(tags=["webhook"])
TRAINING = "START_TRAINING"


@router.post("/webhook")
def webhook(event: WebhookEvent, request: Request) -> dict[str, Any]:
    """Store and answer at once: Label Studio waits for this with a 1 s timeout."""
    return _store(request.app.state.sessions, event)


@router.post("/train")
def train(request: Request) -> dict[str, Any]:
    """Older Label Studio 'Start training': queued for the retrain job like the webhook."""
    return _store(request.app.state.sessions, WebhookEvent(action=TRAINING))


def _store(sessions: sessionmaker[Session], event: WebhookEvent) -> dict[str, Any]:
    with sessions.begin() as session:
        row = queries.add_studio_event(
            session,
            event=queries.NewStudioEvent(
                action=event.action,
                payload=event.model_dump(mode="json"),
                ls_project_id=_id(event.project),
                ls_task_id=_id(event.task) or _id(event.annotation, "task"),
                ls_annotation_id=_id(event.annotation),
            ),
        )
        if event.action == TRAINING:
            queries.record_event(
                session,
                actor="label-studio",
                action="training_requested",
                subject=f"studio_event:{row.id}",
                detail={"queued_for": "labeler retrain"},
            )
        event_id = row.id
    return {"status": "stored", "event_id": event_id}


def _id(obj: dict[str, Any] | None, key: str = "id") -> int | None:
    value = (obj or {}).get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
