"""Items 6 and 8 of issue 12: bodies are capped before they are read, auth is checked before
the body, the docs need credentials, and hostile JSON (lone surrogates, huge ids) is a 4xx."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from core.settings import Settings
from db.queries import studio as studio_queries
from ml_backend.server.app import create_app
from ml_backend.server.auth import Credentials
from ml_backend.server.errors import BackendConfigError
from ml_backend.server.guard import Guard, lone_surrogate
from tests.ml_backend.server.support import World, task

ROUTES = ("/predict", "/setup", "/webhook")


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * size
        sent += size


def test_bodies_over_the_cap_are_413_declared_or_streamed(backend: World) -> None:
    client = backend.client(max_body_bytes=64 * 1024)
    event = {
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": 1, "task": 1},
        "pad": "x" * 70_000,
    }
    for route in ROUTES:
        declared = client.post(route, content=json.dumps(event).encode())
        assert declared.status_code == 413, (route, declared.text)
        streamed = client.post(route, content=_chunks(1024 * 1024))  # chunked, no Content-Length
        assert streamed.status_code == 413, (route, streamed.text)
    with backend.sessions() as session:
        assert studio_queries.count_studio_events(session, action="ANNOTATION_CREATED") == 0
    small = client.post("/predict", json={"tasks": [task(backend.local(backend.ids[0]))]})
    assert small.status_code == 200


def test_auth_is_checked_before_the_body_is_read() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the app ran without credentials")

    async def receive() -> Message:
        raise AssertionError("the body was read before auth")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    guard = Guard(app, credentials=Credentials("Bearer", "", "tok"), max_body=1024)
    scope = {"type": "http", "path": "/webhook", "headers": [(b"content-length", b"99999999")]}
    asyncio.run(guard(scope, receive, send))
    assert sent[0]["status"] == 401


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_docs_and_every_route_need_credentials_but_health(backend: World, scheme: str) -> None:
    client = backend.client(
        backend_auth=scheme, backend_password=_secret("pw-123"), backend_token=_secret("tok-456")
    )
    good = {
        "Authorization": "Basic " + base64.b64encode(b"labelstudio:pw-123").decode()
        if scheme == "basic"
        else "Bearer tok-456"
    }
    for path in ("/docs", "/redoc", "/openapi.json", "/versions", "/nope"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/openapi.json", headers=good).status_code == 200
    assert client.get("/docs", headers=good).status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/").status_code == 200
    huge = client.post("/webhook", content=_chunks(10 * 1024 * 1024))
    assert huge.status_code == 401


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_auth_on_without_a_secret_refuses_to_build_the_app(settings: Settings, scheme: str) -> None:
    for empty in (None, _secret("")):
        settings = settings.model_copy(
            update={"backend_auth": scheme, "backend_password": empty, "backend_token": empty}
        )
        with pytest.raises(BackendConfigError, match="LABELER_BACKEND_"):
            create_app(settings)


def test_lone_surrogates_are_a_400_on_every_route(backend: World) -> None:
    client = backend.client()
    bodies = {
        "/predict": '{"tasks": [{"id": 1, "data": {"image": %s}}]}',
        "/setup": '{"project": %s, "hostname": %s}',
        "/webhook": '{"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "x": %s}}',
    }
    texts = ['"\\ud800"', '"a\\udfff"', '"\\ud800\\u0041"', '"\\uD83D"', '"\\ud800\\n"']
    for route, template in bodies.items():
        for text in [*texts, '{"\\udc00": 1}']:
            body = template.replace("%s", text).encode()
            headers = {"content-type": "application/json"}
            response = client.post(route, content=body, headers=headers)
            assert response.status_code == 400, (route, text, response.text)


def test_lone_surrogate_scan_tells_pairs_and_escaped_backslashes_apart() -> None:
    assert not lone_surrogate(b'"\\ud83d\\ude00"')  # a proper pair (an emoji)
    assert not lone_surrogate(b'"\\\\ud800"')  # an escaped backslash, then text
    assert not lone_surrogate(b'"plain"')
    assert lone_surrogate(b'"\\\\\\ud800"')
    assert lone_surrogate(b'"\\ude00\\ud83d"')


def test_out_of_range_ids_are_a_422(backend: World) -> None:
    client = backend.client()
    ref = backend.local(backend.ids[0])
    for bad in (2**31, 2**63, 2**64 + 1, -1, 10**40):
        for body in (
            {"tasks": [{"id": bad, "data": {"image": ref}}]},
            {"tasks": [{"id": 1, "data": {"image": ref, "image_id": bad}}]},
        ):
            response = client.post("/predict", json=body)
            assert response.status_code == 422, (bad, response.text)
            assert str(bad) not in response.text  # the input is not echoed


def test_no_body_carries_a_traceback_or_a_path(backend: World) -> None:
    client = backend.client()
    home = str(backend.settings.home)
    probes: list[dict[str, Any]] = [
        {"tasks": [task("/data/local-files/?d=images/missing.png")]},
        {"tasks": [task(str(backend.settings.data_root / "nope.png"))]},
        {"tasks": [task("/etc/passwd")]},
        {"tasks": [{"id": 1, "data": {"image": home + "/x.png", "image_id": "x"}}]},
        {"tasks": [{"id": 1, "data": {"img": home + "/x.png"}}]},
        {"tasks": [{"id": home, "data": {"image": "x.png"}}]},
    ]
    for body in probes:
        response = client.post("/predict", json=body)
        assert 400 <= response.status_code < 500, response.text
        assert "Traceback" not in response.text and home not in response.text
        assert str(backend.settings.data_root) not in response.text


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def test_hostile_references_are_a_4xx_never_a_500(backend: World) -> None:
    client = backend.client()
    refs = [
        "http://[::1",
        "http://127.0.0.1:99999/a.png",
        "http://%zz/a.png",
        "https://user:pw@127.0.0.1:8080/a.png",
        "\\\\server\\share\\a.png",
        "~/a.png",
        "a" * 4000 + ".png",
        "/data/local-files/?d=" + "a/" * 1500 + "x.png",
        "/data/local-files/?d=",
        "/data/local-files/?d=images",
        "/data/local-files/?d=images/",
        "/data/local-files/?d=/dev/zero.png",
        "/proc/self/environ",
        "/dev/stdin",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        " ",
        "\u202e.png",
        "%00.png",
    ]
    for ref in refs:
        response = client.post("/predict", json={"tasks": [task(ref)]})
        assert 400 <= response.status_code < 500, (ref[:60], response.text)
        assert "Traceback" not in response.text
