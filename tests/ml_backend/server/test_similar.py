"""/predict with an active lesion encoder: matches in the prediction, a read-only TextArea for
Label Studio, the encoder run at most once per box; without an encoder nothing changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from label_studio_sdk.label_interface.interface import LabelInterface
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.support.factories import (
    add_prelabels,
    import_sample,
    register_encoder,
    register_random_detector,
)
from core.birads import Birads
from core.settings import Settings
from db.models import Image
from db.queries import images as image_queries
from labeler.context import AppContext
from labeler.jobs.similar import build_index
from ml_backend.server.app import create_app
from ml_backend.studio.format import label_config
from tests.ml_backend.server.support import StubDetector

World = tuple[Settings, sessionmaker[Session], dict[str, int]]


@pytest.fixture
def world(settings: Settings, sessions: sessionmaker[Session], busbra_dir: Path) -> World:
    """The sample, a detector with stored pre-labels for bus_0001-l and bus_0002-l."""
    import_sample(settings, sessions, busbra_dir, "busbra")
    version = register_random_detector(settings, sessions)
    with sessions() as s:
        ids = {str(i.source_id): i.id for i in s.scalars(select(Image))}
    add_prelabels(sessions, version, [ids["bus_0001-l"], ids["bus_0002-l"]], Birads.B4A)
    return settings, sessions, ids


def _predict(
    client: TestClient, sessions: sessionmaker[Session], image_id: int, **body: Any
) -> Any:
    with sessions() as s:
        image = image_queries.image_by_id(s, image_id=image_id)
        assert image is not None
        task = {"id": 1, "data": {"image": f"/data/local-files/?d={image.png_path}"}}
    response = client.post("/predict", json={"tasks": [task], **body})
    assert response.status_code == 200, response.text
    return response.json()["results"][0]


def test_without_an_encoder_or_its_index_predictions_are_unchanged(world: World) -> None:
    settings, sessions, ids = world
    client = TestClient(create_app(settings, loader=StubDetector.load))
    plain = _predict(client, sessions, ids["bus_0001-l"], label_config=label_config())
    assert "similar" not in plain and [r["from_name"] for r in plain["result"]] == ["lesion"]
    register_encoder(settings, sessions)  # active, but no index built yet
    assert _predict(client, sessions, ids["bus_0001-l"], label_config=label_config()) == plain


def test_predict_attaches_matches_and_a_readonly_text_for_label_studio(world: World) -> None:
    settings, sessions, ids = world
    encoder = register_encoder(settings, sessions)
    summary = build_index(AppContext(settings))
    assert summary.probes == 2  # the two stored pre-labels' top boxes
    client = TestClient(create_app(settings, loader=StubDetector.load))
    service = client.app.state.service  # type: ignore[attr-defined]

    result = _predict(client, sessions, ids["bus_0001-l"], label_config=label_config())
    similar = result["similar"]
    assert similar["encoder_version"] == encoder and len(similar["matches"]) == 5
    first = similar["matches"][0]
    assert first["source_id"] == "bus_0001-r" and first["same_lesion"] is True
    assert ids["bus_0001-l"] not in [m["image_id"] for m in similar["matches"]]
    assert {"image_id", "birads", "pathology", "distance"} <= set(first)
    assert service.similar.stats["encoded"] == 0  # the stored probe answered

    region = result["result"][-1]
    assert region["from_name"] == "similar" and region["readonly"] is True
    text = region["value"]["text"][0]
    assert text.startswith(f"Similar confirmed lesions: #{first['image_id']} bus_0001-r")
    assert f"BI-RADS {first['birads']} {first['pathology']} d=" in text
    assert region["meta"]["matches"] == similar["matches"]
    # the check Label Studio runs on a prediction before it stores one
    interface = LabelInterface(label_config())
    errors = interface.validate_prediction(  # type: ignore[no-untyped-call]
        {"result": result["result"]}, return_errors=True
    )
    assert errors == []


def test_the_text_area_only_goes_to_a_config_that_has_it(world: World) -> None:
    settings, sessions, ids = world
    register_encoder(settings, sessions)
    build_index(AppContext(settings))
    client = TestClient(create_app(settings, loader=StubDetector.load))
    old_config = label_config().split('  <Header value="Similar')[0] + "</View>"
    for body in ({}, {"label_config": old_config}):
        result = _predict(client, sessions, ids["bus_0002-l"], **body)
        assert result["similar"]["matches"][0]["source_id"] == "bus_0002-r"
        assert [r["from_name"] for r in result["result"]] == ["lesion"]


def test_a_box_outside_the_index_is_encoded_once(world: World) -> None:
    settings, sessions, ids = world
    register_encoder(settings, sessions)
    build_index(AppContext(settings))
    client = TestClient(create_app(settings, loader=StubDetector.load))
    service = client.app.state.service  # type: ignore[attr-defined]
    first = _predict(client, sessions, ids["bus_0003-l"])  # a miss: the stub's box, no probe
    again = _predict(client, sessions, ids["bus_0003-l"])  # a hit: the stored row
    assert service.stats["misses"] == 1 and service.stats["hits"] == 1
    assert first["similar"] == again["similar"]
    assert first["similar"]["matches"][0]["source_id"] == "bus_0003-r"
    assert service.similar.stats["encoded"] == 1
