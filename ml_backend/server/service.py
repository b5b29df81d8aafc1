"""Predictions for tasks: from the cache when we have them, from the model (loaded once) if not."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import queries
from db.schemas import BoxRecord
from db.settings import Settings
from ml_backend.detector.interface import Detector
from ml_backend.detector.prelabel import load_for_prelabel, prediction_row
from ml_backend.registry import ModelRegistry
from ml_backend.registry.kinds import DETECTOR_KIND
from ml_backend.server.images import ImageRef, StudioAccess, load_rgb, resolve
from ml_backend.server.schemas import Task
from ml_backend.studio.format import prediction_payload, prelabel_rule

log = logging.getLogger(__name__)
NO_MODEL = "no-model"


class NoActiveModel(RuntimeError):
    pass


@dataclass
class PredictionService:
    settings: Settings
    sessions: sessionmaker[Session]
    loader: Callable[[Path], Detector] | None = None
    studio: StudioAccess = field(default_factory=StudioAccess)
    stats: dict[str, int] = field(default_factory=lambda: {"hits": 0, "misses": 0, "loads": 0})
    _model: tuple[str, Detector] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def model_version(self) -> str:
        with self.sessions() as session:
            return queries.active_model_id(session, kind=DETECTOR_KIND) or NO_MODEL

    def versions(self) -> list[str]:
        with self.sessions() as session:
            return [v.id for v in queries.model_versions(session, kind=DETECTOR_KIND)]

    def predict(self, task: Task) -> dict[str, Any]:
        version = self.model_version()
        if version == NO_MODEL:
            raise NoActiveModel("no active detector: train one (`labeler train`) first")
        ref = resolve(task.data.image, self.settings, self.studio)
        image_id, size = self._known_image(task, ref)
        if image_id is not None:
            with self.sessions() as session:
                cached = queries.cached_prediction(
                    session, image_id=image_id, model_version_id=version
                )
                if cached is not None:
                    self.stats["hits"] += 1
                    return self._payload(cached.boxes, size, version, cached.uncertainty)
        return self._compute(ref, image_id, version)

    def _known_image(self, task: Task, ref: ImageRef) -> tuple[int | None, tuple[int, int]]:
        with self.sessions() as session:
            image = None
            if task.data.image_id is not None:
                image = queries.image_by_id(session, image_id=task.data.image_id)
            rel = ref.home_relative(self.settings.home)
            if image is None and rel is not None:
                image = queries.image_by_png_path(session, png_path=rel)
            if image is None or (rel is not None and rel != image.png_path):
                return None, (0, 0)
            return image.id, (image.width, image.height)

    def _compute(self, ref: ImageRef, image_id: int | None, version: str) -> dict[str, Any]:
        self.stats["misses"] += 1
        rgb = load_rgb(ref, self.studio)
        with self._lock:
            detector = self._detector(version)
            pred = detector.predict([rgb])[0]
        row = prediction_row(image_id or 0, pred, threshold=self.settings.score_threshold)
        if image_id is not None:
            self._store(version, row)
        size = (rgb.shape[1], rgb.shape[0])
        return self._payload(list(row.boxes), size, version, row.uncertainty)

    def _detector(self, version: str) -> Detector:
        if self._model is None or self._model[0] != version:
            registry = ModelRegistry.for_settings(self.settings, self.sessions)
            folder = registry.path_of(version)
            load = self.loader or (lambda p: load_for_prelabel(p, self.settings))
            self._model = (version, load(folder))
            self.stats["loads"] += 1
            log.info("loaded detector %s", version)
        return self._model[1]

    def _store(self, version: str, row: queries.NewPrediction) -> None:
        try:
            with self.sessions.begin() as session:
                queries.add_predictions(session, model_version_id=version, predictions=[row])
        except IntegrityError:
            pass  # another request stored the same (image, version) first

    def _payload(
        self, boxes: list[BoxRecord], size: tuple[int, int], version: str, uncertainty: float
    ) -> dict[str, Any]:
        return prediction_payload(
            boxes,
            width=size[0],
            height=size[1],
            model_version=version,
            score=1.0 - uncertainty,
            rule=prelabel_rule(self.settings),
        )
