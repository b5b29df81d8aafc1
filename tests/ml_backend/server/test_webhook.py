"""The webhook receiver: bounded, typed, committed before "stored", never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from db.models import StudioEvent
from db.queries import events as event_queries
from db.queries import studio as studio_queries
from ml_backend.server.app import create_app
from ml_backend.studio.events import MAX_REGIONS, WebhookEvent

VALUE: dict[str, Any] = {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0}
BOX: dict[str, Any] = {
    "id": "r1",
    "from_name": "lesion",
    "to_name": "image",
    "type": "rectanglelabels",
    "origin": "manual",
    "original_width": 640,
    "original_height": 480,
    "image_rotation": 0,
    "value": {
        "x": 10,
        "y": 10,
        "width": 20,
        "height": 20,
        "rotation": 0,
        "rectanglelabels": ["BI-RADS 3"],
    },
}


def _event(**annotation: Any) -> dict[str, Any]:
    """An ANNOTATION_CREATED as Label Studio sends it, with the fields we never need."""
    ann = {
        "id": 7,
        "task": 3,
        "result": [BOX],
        "was_cancelled": False,
        "completed_by": 2,
        "lead_time": 12.5,
        "draft_created_at": None,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        **annotation,
    }
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 1, "title": "BI-RADS review", "label_config": "<View/>" * 50},
        "task": {"id": 3, "data": {"image": "/data/local-files/?d=images/a.png", "image_id": 5}},
        "annotation": ann,
    }


@pytest.fixture
def client(settings: Settings, sessions: sessionmaker[Session]) -> TestClient:
    return TestClient(create_app(settings), raise_server_exceptions=False)


def _stored(sessions: sessionmaker[Session]) -> list[StudioEvent]:
    with sessions() as session:
        return list(session.query(StudioEvent).order_by(StudioEvent.id))


def test_stores_only_what_the_sync_needs_and_commits_first(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    answer = client.post("/webhook", json=_event())
    assert answer.status_code == 200 and answer.json()["status"] == "stored"
    (row,) = _stored(sessions)  # a fresh session sees it: committed before the answer
    assert row.id == answer.json()["event_id"]
    assert (row.ls_project_id, row.ls_task_id, row.ls_annotation_id) == (1, 3, 7)
    assert set(row.payload) == {"action", "project", "task", "annotation"}
    assert row.payload["project"] == {"id": 1} and row.payload["task"] == {"id": 3}
    ann = row.payload["annotation"]
    assert "lead_time" not in ann and ann["completed_by"] == 2
    assert ann["result"][0]["value"]["rectanglelabels"] == ["BI-RADS 3"]
    assert "origin" not in ann["result"][0]
    deleted = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 7}, {"id": 8}]}
    assert client.post("/webhook", json=deleted).json()["status"] == "stored"
    assert _stored(sessions)[-1].payload["annotations"] == [{"id": 7}, {"id": 8}]


@pytest.mark.parametrize(
    "body",
    [
        _event(result="BI-RADS 3"),  # the reported event
        _event(result=[1, 2]),
        _event(result=[BOX] * (MAX_REGIONS + 1)),
        _event(id=2**31),
        _event(id=-1),
        _event(id=True),
        _event(id="7"),
        _event(id=7.5),
        _event(task=2**63),
        _event(completed_by={"id": 2**40}),
        {**_event(), "project": {"id": 10**30}},
        {"action": "ANNOTATION_CREATED"},
        {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": "x"}]},
        {"action": "annotation created"},
        {"no": "action"},
        [],
        "x",
    ],
)
def test_malformed_events_are_422_and_not_stored(
    client: TestClient, sessions: sessionmaker[Session], body: Any
) -> None:
    answer = client.post("/webhook", json=body)
    assert answer.status_code == 422, answer.text
    assert "invalid webhook event" in answer.json()["detail"]
    assert _stored(sessions) == []


@pytest.mark.parametrize(
    "raw",
    [
        b'{"action": "\\ud800"}',
        b'{"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "created_at": "\\udfff"}}',
        b'{"action": "X", "extra": "\\ud800"}',
        b'{"action": "ANNOTATION_CREATED", "annotation": {"id": 1e400}}',
        b'{"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "result": '
        b'[{"value": {"x": NaN}}]}}',
        b"[" * 10_000,
        b"\xff\xfe not json",
    ],
)
def test_hostile_json_is_a_422_never_a_500(
    client: TestClient, sessions: sessionmaker[Session], raw: bytes
) -> None:
    answer = client.post("/webhook", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code in (400, 422), answer.text  # 400: the app's surrogate guard
    assert _stored(sessions) == []
    with pytest.raises(ValidationError):  # the model alone refuses it too
        WebhookEvent.model_validate_json(raw)


def test_bodies_over_the_limits_are_413_and_nothing_is_stored(
    client: TestClient, sessions: sessionmaker[Session], settings: Settings
) -> None:
    padding = "x" * (settings.max_body_bytes + 1)
    answer = client.post("/webhook", content=json.dumps({**_event(), "pad": padding}))
    assert answer.status_code == 413
    names = [f"n{i:02d}".ljust(100, "x") for i in range(20)]
    wide = {**BOX, "value": {**VALUE, "rectanglelabels": names, "choices": names}}
    big = _event(result=[wide] * MAX_REGIONS)  # within the body limit, over the stored size
    assert len(json.dumps(big)) < settings.max_body_bytes
    answer = client.post("/webhook", json=big)
    assert answer.status_code == 413 and "too large" in answer.json()["detail"]
    assert _stored(sessions) == []


def test_other_actions_are_answered_not_stored(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    answer = client.post("/webhook", json={"action": "TASKS_CREATED", "tasks": [{"id": 1}] * 500})
    assert answer.status_code == 200 and answer.json()["status"] == "ignored"
    assert client.post("/webhook", json={"action": "START_TRAINING"}).json()["status"] == "stored"
    assert client.post("/train").json()["status"] == "stored"
    with sessions() as session:
        assert studio_queries.count_studio_events(session, action="START_TRAINING") == 2
        assert event_queries.count_events(session, action="training_requested") == 2
    assert [e.action for e in _stored(sessions)] == ["START_TRAINING"] * 2


def test_the_openapi_schema_describes_the_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/webhook"]["post"]["requestBody"]["content"]["application/json"]
    schema = body["schema"]
    assert "$defs" not in json.dumps(schema) and "action" in schema["required"]
    assert (
        schema["properties"]["annotation"]["anyOf"][0]["properties"]["id"]["maximum"] == 2**31 - 1
    )
