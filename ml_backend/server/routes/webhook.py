"""Label Studio's webhook: validate, store what the sync needs, commit, answer.

Label Studio waits for the answer with a 1 s timeout, so nothing here does more than one short
transaction; "stored" is answered only after the commit. The body is read here (after the auth
dependency ran) with a hard cap, and validated by `ml_backend.studio.events.WebhookEvent`: a
body that does not fit is answered 413 or 422 with a message that never echoes the input.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from db.queries import events as event_queries
from db.queries import studio as studio_queries
from ml_backend.studio.events import (
    TRAINING,
    EventTooLargeError,
    WebhookEvent,
    reason,
)

router = APIRouter(tags=["webhook"])


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON schema with its $defs inlined (a route's body schema cannot carry them)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.removeprefix("#/$defs/")]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    result: dict[str, Any] = walk(schema)
    return result


_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _inline(WebhookEvent.model_json_schema())}},
    }
}


@router.post("/webhook", openapi_extra=_BODY)
async def webhook(request: Request) -> dict[str, Any]:
    """Store and answer at once: Label Studio waits for this with a 1 s timeout."""
    limit = request.app.state.settings.max_body_bytes
    event = _parse(await _read_body(request, limit))
    if not event.stored:
        return {"status": "ignored", "action": event.action}
    try:
        payload = event.payload()
    except EventTooLargeError as exc:
        raise HTTPException(413, f"webhook event too large: {exc}") from None
    return await run_in_threadpool(_store, request.app.state.sessions, event, payload)


@router.post("/train")
async def train(request: Request) -> dict[str, Any]:
    """Older Label Studio 'Start training': queued for the retrain job like the webhook."""
    event = WebhookEvent(action=TRAINING)
    return await run_in_threadpool(_store, request.app.state.sessions, event, event.payload())


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> WebhookEvent:
    try:
        return WebhookEvent.model_validate_json(body)
    except ValidationError as exc:
        raise HTTPException(422, f"invalid webhook event: {reason(exc)}") from None


def _store(
    sessions: sessionmaker[Session], event: WebhookEvent, payload: dict[str, Any]
) -> dict[str, Any]:
    """One transaction, committed before the answer: nothing acknowledged is lost."""
    with sessions.begin() as session:
        row = studio_queries.add_studio_event(
            session,
            event=studio_queries.NewStudioEvent(
                action=event.action,
                payload=payload,
                ls_project_id=event.project.id if event.project else None,
                ls_task_id=event.task_id,
                ls_annotation_id=event.annotation.id if event.annotation else None,
            ),
        )
        if event.action == TRAINING:
            event_queries.record_event(
                session,
                actor="label-studio",
                action="training_requested",
                subject=f"studio_event:{row.id}",
                detail={"queued_for": "labeler retrain"},
            )
        event_id = row.id
    return {"status": "stored", "event_id": event_id}
