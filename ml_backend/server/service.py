"""Predictions for tasks: from the cache when we have them, from the model (loaded once) if not.

With an active lesion encoder and its index, each prediction also carries the confirmed lesions
most similar to its top box (ml_backend/server/similar.py); without one it is unchanged.
"""

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
from db.lesion_boxes import top_box
from db.schemas import BoxRecord
from db.settings import Settings
from ml_backend.detector.interface import Detector, RGBImage
from ml_backend.detector.prelabel import load_for_prelabel, prediction_row
from ml_backend.registry import ModelRegistry
from ml_backend.registry.kinds import DETECTOR_KIND
from ml_backend.server.images import ImageRef, StudioAccess, load_rgb, resolve
from ml_backend.server.schemas import Task
from ml_backend.server.similar import SimilarLesions
from ml_backend.studio.format import prediction_payload, prelabel_rule
from ml_backend.studio.similar import declares_similar, similar_payload, similar_region

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
    similar: SimilarLesions = field(init=False)

    def __post_init__(self) -> None:
        self.similar = SimilarLesions(self.settings, self.sessions)

    def model_version(self) -> str:
        with self.sessions() as session:
            return queries.active_model_id(session, kind=DETECTOR_KIND) or NO_MODEL

    def versions(self) -> list[str]:
        with self.sessions() as session:
            return [v.id for v in queries.model_versions(session, kind=DETECTOR_KIND)]

    def predict(self, task: Task, *, label_config: str | None = None) -> dict[str, Any]:
        """The task's prediction; with an active encoder, plus its similar confirmed lesions."""
        version = self.model_version()
        if version == NO_MODEL:
            raise NoActiveModel("no active detector: train one (`labeler train`) first")
        ref = resolve(task.data.image, self.settings, self.studio)
        image_id, size = self._known_image(task, ref)
        hit = self._cached(image_id, version)
        rgb: RGBImage | None = None
        if hit is not None:
            self.stats["hits"] += 1
            boxes, uncertainty = hit
        else:
            rgb = load_rgb(ref, self.studio)
            boxes, uncertainty = self._compute(rgb, image_id, version)
            size = (rgb.shape[1], rgb.shape[0])
        payload = self._payload(boxes, size, version, uncertainty)

        def pixels() -> RGBImage:
            return rgb if rgb is not None else load_rgb(ref, self.studio)

        self._attach_similar(payload, image_id, boxes, pixels, label_config)
        return payload

    def _cached(self, image_id: int | None, version: str) -> tuple[list[BoxRecord], float] | None:
        if image_id is None:
            return None
        with self.sessions() as session:
            row = queries.cached_prediction(session, image_id=image_id, model_version_id=version)
            return (list(row.boxes), row.uncertainty) if row is not None else None

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

    def _compute(
        self, rgb: RGBImage, image_id: int | None, version: str
    ) -> tuple[list[BoxRecord], float]:
        self.stats["misses"] += 1
        with self._lock:
            detector = self._detector(version)
            pred = detector.predict([rgb])[0]
        row = prediction_row(image_id or 0, pred, threshold=self.settings.score_threshold)
        if image_id is not None:
            self._store(version, row)
        return list(row.boxes), row.uncertainty

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

    def _attach_similar(
        self,
        payload: dict[str, Any],
        image_id: int | None,
        boxes: list[BoxRecord],
        pixels: Callable[[], RGBImage],
        label_config: str | None,
    ) -> None:
        """Add the matches of the top shown box; a failure here never costs the pre-label."""
        try:
            box = top_box(prelabel_rule(self.settings).shown(boxes))
            found = self.similar.find(image_id=image_id, box=box, pixels=pixels)
        except Exception:
            log.exception(
                "similar lesions failed for image %s; the prediction goes without", image_id
            )
            return
        if found is None:
            return
        payload["similar"] = similar_payload(found.matches, encoder_version=found.encoder_version)
        if declares_similar(label_config):
            region = similar_region(found.matches, encoder_version=found.encoder_version)
            payload["result"].append(region)

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
