"""Pushed tasks carry the same "similar confirmed lesions" result that /predict adds.

Label Studio is faked here (a unit test of what push sends); tests/integration pushes to a real
server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
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
from labeler.context import AppContext
from labeler.jobs.similar import build_index
from labeler.studio.push import push
from ml_backend.studio.format import label_config
from tests.labeler.studio.fake import PushStudio


@pytest.fixture
def world(
    settings: Settings, sessions: sessionmaker[Session], busbra_dir: Path
) -> tuple[AppContext, str, dict[str, int]]:
    import_sample(settings, sessions, busbra_dir, "busbra")
    version = register_random_detector(settings, sessions)
    with sessions() as s:
        ids = {str(i.source_id): i.id for i in s.scalars(select(Image))}
    add_prelabels(sessions, version, [ids["bus_0001-l"], ids["bus_0002-l"]], Birads.B4A)
    return AppContext(settings), version, ids


def _similar(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in task["predictions"][0]["result"] if r["from_name"] == "similar"]


def test_pushed_predictions_carry_the_similar_lesions(
    world: tuple[AppContext, str, dict[str, int]],
) -> None:
    app, version, ids = world
    register_encoder(app.settings, app.sessions)
    build_index(app)
    studio = PushStudio(label_config())
    summary = push(app, studio.as_studio(), 1, model_version=version)
    assert summary.tasks_created == 2
    by_image = {t["data"]["image_id"]: t for t in studio.imported}
    (region,) = _similar(by_image[ids["bus_0001-l"]])
    assert region["readonly"] is True
    assert "bus_0001-r (same lesion, other view)" in region["value"]["text"][0]
    assert region["meta"]["matches"][0]["source_id"] == "bus_0001-r"
    assert all(len(_similar(t)) == 1 for t in studio.imported)


def test_no_encoder_or_an_old_label_config_pushes_plain_predictions(
    world: tuple[AppContext, str, dict[str, int]],
) -> None:
    app, version, _ = world
    studio = PushStudio(label_config())
    push(app, studio.as_studio(), 1, model_version=version)
    assert studio.imported and not any(_similar(t) for t in studio.imported)

    register_encoder(app.settings, app.sessions)
    build_index(app)
    old = label_config().replace('name="similar"', 'name="notes"')
    legacy = PushStudio(old)
    push(app, legacy.as_studio(), 1, model_version=version)
    assert legacy.imported and not any(_similar(t) for t in legacy.imported)
