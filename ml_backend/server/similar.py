"""Similar confirmed lesions for /predict, kept off the cached path's critical cost.

The active encoder's index is loaded once and reloaded when its file changes (a rebuild
renames a new file into place). A query embedding comes from the index itself when the image's
box is stored there (every confirmed lesion, and every pool image the active detector had
pre-labeled when the index was built); only other boxes run the encoder, once each: the
matches are kept in memory per (encoder, index file, image, box). So a cached prediction costs
one small query, a stat and, the first time, a dot product with the index.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db import queries
from db.schemas import BoxRecord
from core.settings import Settings
from ml_backend.detector.interface import Box, RGBImage
from ml_backend.encoder.index import EmbeddingIndex, Match, Vector, index_file
from ml_backend.encoder.model import LesionEncoder
from ml_backend.registry import ModelRegistry
from ml_backend.registry.kinds import ENCODER_KIND

log = logging.getLogger(__name__)
CacheKey = tuple[str, int, int, Box]


@dataclass(frozen=True)
class SimilarFound:
    encoder_version: str
    matches: tuple[Match, ...]


@dataclass
class SimilarLesions:
    settings: Settings
    sessions: sessionmaker[Session]
    k: int = 5
    cache_size: int = 10_000
    stats: dict[str, int] = field(default_factory=lambda: {"encoded": 0, "index_loads": 0})
    _index: tuple[Path, int, EmbeddingIndex] | None = None
    _encoder: tuple[str, LesionEncoder] | None = None
    _cache: OrderedDict[CacheKey, SimilarFound] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _warned: set[str] = field(default_factory=set)

    def find(
        self, *, image_id: int | None, box: BoxRecord | None, pixels: Callable[[], RGBImage]
    ) -> SimilarFound | None:
        """Matches for a shown box; None without an active encoder, its index, or a box."""
        with self.sessions() as session:
            version = queries.active_model_id(session, kind=ENCODER_KIND)
        if version is None or box is None:
            return None
        loaded = self._load_index(version)
        if loaded is None:
            return None
        mtime, index = loaded
        key = (version, mtime, image_id, box.xyxy) if image_id is not None else None
        with self._lock:
            if key is not None and key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            embedding = index.embedding_of(image_id, box.xyxy) if image_id is not None else None
            if embedding is None:
                embedding = self._embed(version, pixels(), box.xyxy)
            matches = index.query(
                embedding, self.k, exclude_image_id=image_id, lesion_key=self._lesion(image_id)
            )
            found = SimilarFound(version, tuple(matches))
            if key is not None:
                self._cache[key] = found
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return found

    def _load_index(self, version: str) -> tuple[int, EmbeddingIndex] | None:
        path = index_file(self.settings.home, version)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            if version not in self._warned:
                self._warned.add(version)
                log.warning("encoder %s has no index: run `labeler encoder index`", version)
            return None
        with self._lock:
            if self._index is None or self._index[:2] != (path, mtime):
                self._index = (path, mtime, EmbeddingIndex.load(path))
                self.stats["index_loads"] += 1
                log.info("loaded similar-lesion index of %s", version)
            return mtime, self._index[2]

    def _lesion(self, image_id: int | None) -> str | None:
        """The image's lesion key, so its other views rank first (never logged)."""
        if image_id is None:
            return None
        with self.sessions() as session:
            image = queries.image_by_id(session, image_id=image_id)
            return image.lesion.key if image is not None and image.lesion is not None else None

    def _embed(self, version: str, rgb: RGBImage, box: Box) -> Vector:
        from ml_backend.encoder.checkpoint import load_encoder
        from ml_backend.encoder.embed import embed_boxes

        if self._encoder is None or self._encoder[0] != version:
            folder = ModelRegistry.for_settings(self.settings, self.sessions).intact_path(version)
            self._encoder = (version, load_encoder(folder, device=self.settings.device))
            log.info("loaded encoder %s", version)
        self.stats["encoded"] += 1
        embedding: Vector = embed_boxes(self._encoder[1], [(rgb, box)])[0]
        return embedding
