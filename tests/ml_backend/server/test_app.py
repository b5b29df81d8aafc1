"""The ML backend app on a real SQLite file, through FastAPI's TestClient.

The detector is a stub here (a unit test): it counts loads and calls, so the tests can tell a
cache hit from a miss and see that the model is loaded once per process.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from bench.support.factories import KNOWN_MALIGNANCY
from core.birads import Birads
from core.settings import Settings
from db.queries import events as event_queries
from db.queries import images as image_queries
from db.queries import predictions as prediction_queries
from db.queries import studio as studio_queries
from ml_backend.server.app import create_app
from tests.conftest import copy_sample
from tests.ml_backend.server.support import StubDetector, make_world


@pytest.fixture
def world(
    settings: Settings, sessions: sessionmaker[Session]
) -> tuple[Settings, sessionmaker[Session], str, list[int]]:
    built = make_world(settings, sessions)  # 8 images, ids[0] and ids[1] pre-labeled 4A
    return settings, sessions, built.version, built.ids[:3]


def _client(settings: Settings) -> TestClient:
    StubDetector.loads = 0
    return TestClient(create_app(settings, loader=StubDetector.load))


def _task(image: str, image_id: int | None = None, task_id: int = 1) -> dict[str, Any]:
    data: dict[str, Any] = {"image": image}
    if image_id is not None:
        data["image_id"] = image_id
    return {"id": task_id, "data": data}


def _local(sessions: sessionmaker[Session], image_id: int) -> str:
    with sessions() as session:
        image = image_queries.image_by_id(session, image_id=image_id)
        assert image is not None
        return f"/data/local-files/?d={image.png_path}"


def test_setup_health_and_versions_name_the_active_version(world: Any) -> None:
    settings, _, version, _ = world
    client = _client(settings)
    assert client.get("/health").json()["status"] == "UP"
    assert client.post("/setup", json={"project": "1.1", "schema": "<View/>"}).json() == {
        "model_version": version
    }
    assert client.get("/versions").json() == {"versions": [version], "active": version}


def test_cached_prediction_is_served_without_loading_the_model(world: Any) -> None:
    settings, sessions, version, ids = world
    client = _client(settings)
    body = client.post("/predict", json={"tasks": [_task(_local(sessions, ids[0]), ids[0])]})
    assert body.status_code == 200, body.text
    result = body.json()["results"][0]
    assert result["model_version"] == version
    stored = KNOWN_MALIGNANCY[Birads.B4A]  # the stored P(malignant), not the box's 0.91
    assert result["score"] == pytest.approx(stored)
    assert result["malignancy"] == {"image": pytest.approx(stored), "boxes": [stored]}
    region = result["result"][0]
    assert region["value"]["rectanglelabels"] == ["BI-RADS 4A"]
    assert region["value"]["x"] == pytest.approx(25.0) and region["value"][
        "width"
    ] == pytest.approx(35.0)
    assert StubDetector.loads == 0


def test_a_miss_computes_once_stores_and_then_hits(world: Any) -> None:
    settings, sessions, version, ids = world
    client = _client(settings)
    task = _task(_local(sessions, ids[2]))  # no image_id: found by its path
    first = client.post("/predict", json={"tasks": [task]}).json()["results"][0]
    second = client.post("/predict", json={"tasks": [task]}).json()["results"][0]
    assert first == second
    assert first["result"][0]["value"]["rectanglelabels"] == ["BI-RADS 5"]
    assert StubDetector.loads == 1
    stats = client.app.state.service.stats  # type: ignore[attr-defined]
    assert stats.snapshot() == {"hits": 1, "misses": 1, "loads": 1}
    with sessions() as session:
        assert prediction_queries.cached_prediction(
            session, image_id=ids[2], model_version_id=version
        )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"tasks": []}, 422),
        ({"tasks": [{"id": 1, "data": {}}]}, 422),
        ({"tasks": [{"id": 1, "data": {"image": 42}}]}, 422),
        ({"tasks": [_task("ftp://example.org/a.png")]}, 400),
        ({"tasks": [_task("/data/upload/1/a.png")]}, 422),  # fetched from Label Studio: down
        ({"tasks": [_task("/etc/passwd")]}, 400),
        ({"tasks": [_task("../../etc/passwd")]}, 400),
        ({"tasks": [_task("/data/local-files/?d=../../etc/passwd")]}, 400),
        ({"tasks": [_task("/data/local-files/?d=images/missing.png")]}, 422),
    ],
)
def test_malformed_tasks_get_a_4xx_with_a_message(world: Any, body: Any, status: int) -> None:
    response = _client(world[0]).post("/predict", json=body)
    assert response.status_code == status
    assert response.json()["detail"]


def test_a_corrupt_image_is_a_422_not_a_500(world: Any, data_root: Path) -> None:
    bad = data_root / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really")
    response = _client(world[0]).post("/predict", json={"tasks": [_task(str(bad))]})
    assert response.status_code == 422
    assert "decoded" in response.json()["detail"]


def test_no_active_model_is_a_503(settings: Settings, sessions: sessionmaker[Session]) -> None:
    image = copy_sample("busbra_mini", settings.data_root) / "Images"
    png = next(iter(sorted(image.glob("*.png"))))
    response = _client(settings).post("/predict", json={"tasks": [_task(str(png))]})
    assert response.status_code == 503 and "no active detector" in response.json()["detail"]


def test_webhook_stores_events_and_queues_training(world: Any) -> None:
    settings, sessions, _, _ = world
    client = _client(settings)
    ann = {"action": "ANNOTATION_CREATED", "annotation": {"id": 7, "task": 3}, "project": {"id": 1}}
    assert client.post("/webhook", json=ann).json()["status"] == "stored"
    assert (
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}}).status_code
        == 200
    )
    assert client.post("/webhook", json={"no": "action"}).status_code == 422
    with sessions() as session:
        assert studio_queries.count_studio_events(session, action="ANNOTATION_CREATED") == 1
        assert studio_queries.count_studio_events(session, action="START_TRAINING") == 1
        assert event_queries.count_events(session, action="training_requested") == 1
        (event,) = studio_queries.unprocessed_studio_events(session, actions=["ANNOTATION_CREATED"])
        assert (event.ls_task_id, event.ls_annotation_id) == (3, 7)
    assert StubDetector.loads == 0  # nothing trained or loaded in the request


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_auth_refuses_without_credentials(
    world: Any, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    monkeypatch.setenv("LABELER_BACKEND_AUTH", scheme)
    monkeypatch.setenv("LABELER_BACKEND_PASSWORD", "pw-123")
    monkeypatch.setenv("LABELER_BACKEND_TOKEN", "tok-456")
    client = _client(Settings(_env_file=None))
    good = (
        "Basic " + base64.b64encode(b"labelstudio:pw-123").decode()
        if scheme == "basic"
        else "Bearer tok-456"
    )
    for path in ("/setup", "/webhook"):
        assert client.post(path, json={"action": "X"}).status_code == 401
        assert (
            client.post(
                path, json={"action": "X"}, headers={"Authorization": "Bearer nope"}
            ).status_code
            == 401
        )
        assert (
            client.post(path, json={"action": "X"}, headers={"Authorization": good}).status_code
            == 200
        )
    assert client.get("/health").status_code == 200  # the connection check stays open


def test_an_image_not_on_disk_is_fetched_from_label_studio_with_the_setup_token(
    world: Any, tmp_path: Path
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    settings, sessions, _, ids = world
    with sessions() as session:
        image = image_queries.image_by_id(session, image_id=ids[2])
        assert image is not None
        png = (settings.home / image.png_path).read_bytes()
    seen: list[str | None] = []

    class Studio(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            ok = self.headers.get("Authorization") == "Token secret-token"
            self.send_response(200 if ok else 401)
            self.end_headers()
            if ok:
                self.wfile.write(png)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Studio)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"http://127.0.0.1:{server.server_port}"
        client = _client(settings.model_copy(update={"studio_url": host}))
        client.post("/setup", json={"hostname": host, "access_token": "secret-token"})
        task = _task("/data/local-files/?d=images/elsewhere/remote.png")
        response = client.post("/predict", json={"tasks": [task]})
    finally:
        server.shutdown()
    assert response.status_code == 200, response.text
    assert seen == ["Token secret-token"]
    assert response.json()["results"][0]["result"][0]["value"]["rectanglelabels"] == ["BI-RADS 5"]
