"""Shared pieces of the backend tests: a stub detector, a small imported world, task bodies.

The world imports 8 PNGs of the bundled BUS-BRA sample as a plain folder with OCR off (these
tests are about the backend, not the import) and registers a random `small` detector; two images
have cached pre-labels.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.support.factories import add_prelabels, import_sample, register_random_detector
from core.birads import Birads
from core.settings import Precision, Settings
from db.models import Image
from db.queries import images as image_queries
from db.queries import predictions as prediction_queries
from ml_backend.detector.interface import Detection, ImagePrediction, RGBImage
from ml_backend.server.app import create_app
from tests.conftest import BUNDLED


class StubDetector:
    """Boxes the top-left quarter as BI-RADS 5; counts loads and images scored."""

    loads = 0
    scored = 0
    precision: Precision = "fp32"

    @property
    def label_space(self) -> tuple[Birads, ...]:
        return (Birads.B2, Birads.B5)

    def predict(self, images: Sequence[RGBImage]) -> list[ImagePrediction]:
        StubDetector.scored += len(images)
        h, w = images[0].shape[:2]
        det = Detection((0.0, 0.0, w / 2, h / 2), Birads.B5, 0.8, {Birads.B5: 0.8})
        return [ImagePrediction((det,), 0.2) for _ in images]

    def save(self, folder: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path) -> StubDetector:
        cls.loads += 1
        return cls()


@dataclass(frozen=True)
class World:
    settings: Settings
    sessions: sessionmaker[Session]
    version: str
    ids: list[int]  # ids[0], ids[1] have cached pre-labels (BI-RADS 4A); the rest do not

    def client(self, **overrides: Any) -> TestClient:
        StubDetector.loads = StubDetector.scored = 0
        settings = self.settings.model_copy(update=overrides)
        return TestClient(create_app(settings, loader=StubDetector.load))

    def png(self, image_id: int) -> Path:
        with self.sessions() as session:
            image = image_queries.image_by_id(session, image_id=image_id)
            assert image is not None
            return self.settings.home / image.png_path

    def local(self, image_id: int) -> str:
        return f"/data/local-files/?d={self.png(image_id).relative_to(self.settings.home)}"

    def cached(self, image_id: int) -> bool:
        with self.sessions() as session:
            row = prediction_queries.cached_prediction(
                session, image_id=image_id, model_version_id=self.version
            )
            return row is not None


def make_world(settings: Settings, sessions: sessionmaker[Session]) -> World:
    settings = settings.model_copy(update={"ocr": "off"})
    folder = settings.data_root / "few"
    folder.mkdir()
    for png in sorted((BUNDLED / "busbra_mini" / "Images").glob("*.png"))[:8]:
        shutil.copy(png, folder / png.name)
    import_sample(settings, sessions, folder, "folder")
    version = register_random_detector(settings, sessions)
    with sessions() as session:
        ids = sorted(i.id for i in session.scalars(select(Image).limit(8)))
    add_prelabels(sessions, version, ids[:2], Birads.B4A)
    return World(settings, sessions, version, ids)


def task(image: str, image_id: int | None = None, task_id: int = 1) -> dict[str, Any]:
    data: dict[str, Any] = {"image": image}
    if image_id is not None:
        data["image_id"] = image_id
    return {"id": task_id, "data": data}


def labels(response: Any) -> list[list[str]]:
    """The BI-RADS label of each result's first region."""
    return [r["result"][0]["value"]["rectanglelabels"] for r in response.json()["results"]]
