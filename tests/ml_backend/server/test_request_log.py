"""The access log (issue 15): one line per request, the route's template, never a file name.

`ml-backend.log` stayed empty for a whole demo session: uvicorn runs at level warning (its own
access log prints query strings) and the app logged nothing per request. Each request now logs
`method= route= status= ms=` (and `hits= misses=` on /predict) through the app's middleware.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from db.models import Image
from tests.ml_backend.server.support import World, task

LOGGER = "ml_backend.server.request_log"
CLIENT = ("httpx", "httpcore")  # the test's own client logs the URLs it calls
Line = dict[str, str]


def _lines(caplog: pytest.LogCaptureFixture) -> list[Line]:
    return [
        dict(part.split("=", 1) for part in r.getMessage().split())
        for r in caplog.records
        if r.name == LOGGER
    ]


def _secrets(backend: World) -> set[str]:
    """What must never reach a log: every image's stored path and file name, its source id and
    its patient's key."""
    out: set[str] = set()
    with backend.sessions() as session:
        for image in session.scalars(select(Image)):
            out |= {image.png_path, Path(image.png_path).name, Path(image.png_path).stem}
            out |= {image.patient.key, image.source_id or ""}
    return {s for s in out if len(s) >= 4}


def test_each_request_logs_one_line_with_the_route_template_and_no_file_name(
    backend: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = backend.client()
    hit = task(backend.local(backend.ids[0]), backend.ids[0], 1)
    miss = task(backend.local(backend.ids[2]), None, 2)  # found by its path, then computed
    answers = [
        client.post("/predict", json={"tasks": [hit, miss]}, params={"d": "query-value.png"}),
        client.get("/health", params={"patient": "query-patient-9"}),
        client.get(backend.local(backend.ids[3])),  # a local-files URL: no route of ours
        client.get("/predict"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 404, 405]
    predict, health, unmatched, wrong_method = _lines(caplog)
    assert {k: v for k, v in predict.items() if k != "ms"} == {
        "method": "POST",
        "route": "/predict",
        "status": "200",
        "hits": "1",
        "misses": "1",
    }
    assert float(predict["ms"]) >= 0
    assert (health["route"], health["status"], "hits" in health) == ("/health", "200", False)
    assert (unmatched["method"], unmatched["route"], unmatched["status"]) == ("GET", "-", "404")
    assert (wrong_method["route"], wrong_method["status"]) == ("/predict", "405")
    assert wrong_method["hits"] == wrong_method["misses"] == "0"
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(CLIENT))
    assert "?" not in text and "query-" not in text and "local-files" not in text
    assert ".png" not in text and "images/" not in text
    assert [s for s in _secrets(backend) if s in text] == []


def test_refusals_of_the_guard_and_a_server_error_are_logged(
    backend: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = backend.client(backend_auth="bearer", backend_token=SecretStr("t0ken")).app
    client = TestClient(app, raise_server_exceptions=False)
    assert client.post("/webhook?d=x.png", json={}).status_code == 401
    service = client.app.state.service  # type: ignore[attr-defined]

    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "predict_many", boom)
    auth = {"Authorization": "Bearer t0ken"}
    body = {"tasks": [task(backend.local(backend.ids[0]), backend.ids[0])]}
    assert client.post("/predict", json=body, headers=auth).status_code == 500
    refused, failed = _lines(caplog)
    assert (refused["route"], refused["status"]) == ("/webhook", "401")
    assert (failed["route"], failed["status"], failed["hits"]) == ("/predict", "500", "0")
