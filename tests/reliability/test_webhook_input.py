"""Issue 12 items 3 and 6, the HTTP side: malformed and oversized webhook bodies.

Malformed events (a string `result`, wrong types, not JSON at all, a nesting bomb) get an answer
below 500 without a traceback, and a valid event after them is stored. (That `labeler sync` sets
stored bad events aside and goes on is tested in tests/labeler/studio and in test_kill.py.)
A 50 MB body, declared or chunked, is refused with 413 before it is read, and the database does
not grow; a near-limit event with unknown fields stores only what the sync needs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx

from bench.support.harness import (
    Backend,
    annotation_event,
    column,
    db_bytes,
    has_traceback,
    post_event,
)

MB = 1024 * 1024


def _annotation(**fields: object) -> bytes:
    event = annotation_event(7001)
    annotation = dict(event["annotation"])  # type: ignore[call-overload]
    annotation.update(fields)
    return json.dumps({**event, "annotation": annotation}).encode()


MALFORMED: list[bytes] = [
    _annotation(result="oops"),
    _annotation(result={"type": "rectanglelabels"}),
    _annotation(result=["x", 1, None]),
    _annotation(result=[{"type": "rectanglelabels", "value": "x", "from_name": "lesion"}]),
    _annotation(id="7"),
    _annotation(id=1.5),
    _annotation(id=True),
    _annotation(id=2**80),
    _annotation(task=-(2**70)),
    _annotation(completed_by={"id": "x"}),
    json.dumps({"action": "ANNOTATION_CREATED", "annotation": []}).encode(),
    json.dumps({"action": "ANNOTATION_CREATED", "annotation": "x", "task": "y"}).encode(),
    json.dumps({"action": "ANNOTATIONS_DELETED", "annotations": "x"}).encode(),
    json.dumps({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": "x"}, 3]}).encode(),
    json.dumps({"action": ""}).encode(),
    json.dumps({"action": 123}).encode(),
    json.dumps({"action": "A" * 10_000}).encode(),
    json.dumps({"project": {"id": 1}}).encode(),
    b"[1, 2]",
    b"null",
    b'"ANNOTATION_CREATED"',
    b"not json",
    b"",
    b"\xff\xfe\x00garbage",
    b'{"action": "ANNOTATION_CREATED", "annotation": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    b'{"action": "ANNOTATION_CREATED", "annotation": {"id": 1e400}}',
]


def _problem(
    client: httpx.Client, body: bytes, content_type: str = "application/json"
) -> str | None:
    """What is wrong with the answer to one malformed body, or None."""
    shown = body[:80]
    try:
        response = client.post("/webhook", content=body, headers={"content-type": content_type})
    except httpx.TransportError as exc:
        return f"{shown!r} -> connection dropped ({type(exc).__name__})"
    if response.status_code >= 500 or has_traceback(response.text):
        return f"{shown!r} -> {response.status_code} {response.text[:200]}"
    if response.status_code == 200 and response.json().get("status") not in ("stored", "ignored"):
        return f"{shown!r} -> 200 without a status: {response.text[:200]}"
    return None


def test_malformed_events_get_an_answer_and_a_valid_one_after_them_is_stored(
    backend: Backend,
) -> None:
    with backend.client() as client:
        wrong = [p for body in MALFORMED if (p := _problem(client, body)) is not None]
        if (problem := _problem(client, MALFORMED[0], "text/plain")) is not None:
            wrong.append(problem)
        assert post_event(client, 7999), "a valid event after malformed ones was not stored"
        assert client.get("/health").status_code == 200
    assert wrong == []
    sql = "SELECT count(*) FROM studio_events WHERE ls_annotation_id = 7999"
    assert column(backend.home.db, sql) == [1]


def _chunks(total: int, size: int = MB) -> Iterator[bytes]:
    head = b'{"action": "ANNOTATION_CREATED", "junk": "'
    yield head
    sent = len(head)
    while sent < total:
        yield b"x" * size
        sent += size


def _send(client: httpx.Client, content: bytes | Iterator[bytes]) -> int | None:
    """The status, or None when the server cut the upload off (also a refusal)."""
    try:
        return client.post(
            "/webhook", content=content, headers={"content-type": "application/json"}
        ).status_code
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        return None


def test_a_50_mb_body_is_refused_before_it_is_read(backend: Backend) -> None:
    before = db_bytes(backend.home)
    with backend.client(timeout=30) as client:
        start = time.monotonic()
        declared = _send(client, b"".join(_chunks(50 * MB)))
        chunked = _send(client, _chunks(50 * MB))
        elapsed = time.monotonic() - start
        assert post_event(client, 7998), "the server stopped storing events after a huge body"
    assert declared in (413, None) and chunked in (413, None), (declared, chunked)
    assert declared == 413 or chunked == 413, "neither upload got its 413"
    assert elapsed < 20, f"two refused uploads took {elapsed:.1f} s"
    assert db_bytes(backend.home) - before < MB


def test_a_near_limit_event_stores_only_what_sync_needs(backend: Backend) -> None:
    event = {**annotation_event(7997), "junk": "x" * (3 * MB), "task": {"id": 1, "data": "y" * MB}}
    before = db_bytes(backend.home)
    with backend.client() as client:
        response = client.post("/webhook", json=event)
    assert response.status_code in (200, 413, 422), response.text[:300]
    assert not has_traceback(response.text)
    assert db_bytes(backend.home) - before < MB // 2, "unknown fields were stored"
