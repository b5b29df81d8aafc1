"""Similar confirmed lesions of a shown box: what /predict and the batch push both attach.

It sits below both (the HTTP server and `labeler.studio.push` call it; neither borrows the
other's), and is kept off the cached path's critical cost.

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

from core.settings import Settings
from db.queries import images as image_queries
from db.queries import versions as version_queries
from db.schemas import BoxRecord
from ml_backend.counters import Counters
from ml_backend.detector.interface import Box, RGBImage
from ml_backend.encoder.index import EmbeddingIndex, Match, Vector, index_file
from ml_backend.encoder.model import LesionEncoder
from ml_backend.registry import ModelRegistry
from ml_backend.registry.kinds import ENCODER_KIND

log = logging.getLogger(__name__)
CacheKey = tuple[str, int, int, Box]
CACHE_SIZE = 10_000  # answers kept per process (LRU): one per shown box, a few KB each


@dataclass(frozen=True)
class SimilarFound:
    encoder_version: str
    matches: tuple[Match, ...]


@dataclass
class SimilarLesions:
    settings: Settings
    sessions: sessionmaker[Session]
    k: int = 5
    stats: Counters = field(default_factory=lambda: Counters("encoded", "index_loads"))
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
            version = version_queries.active_model_id(session, kind=ENCODER_KIND)
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
            matches = self.matches(
                version,
                index,
                image_id=image_id,
                box=box.xyxy,
                pixels=pixels,
                lesion_key=self._lesion(image_id),
            )
            found = SimilarFound(version, matches)
            if key is not None:
                self._cache[key] = found
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return found

    def matches(
        self,
        version: str,
        index: EmbeddingIndex,
        *,
        image_id: int | None,
        box: Box,
        pixels: Callable[[], RGBImage],
        lesion_key: str | None,
    ) -> tuple[Match, ...]:
        """The k confirmed lesions nearest to one box of an image (never the image itself; its
        lesion's other views first). The box's embedding comes from the index when stored
        there, else from the encoder of `version`, loaded once and kept."""
        embedding = index.embedding_of(image_id, box) if image_id is not None else None
        if embedding is None:
            embedding = self._embed(version, pixels(), box)
        found = index.query(embedding, self.k, exclude_image_id=image_id, lesion_key=lesion_key)
        return tuple(found)

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
                self.stats.add("index_loads")
                log.info("loaded similar-lesion index of %s", version)
            return mtime, self._index[2]

    def _lesion(self, image_id: int | None) -> str | None:
        """The image's lesion key, so its other views rank first (never logged)."""
        if image_id is None:
            return None
        with self.sessions() as session:
            image = image_queries.image_by_id(session, image_id=image_id)
            return image.lesion.key if image is not None and image.lesion is not None else None

    def _embed(self, version: str, rgb: RGBImage, box: Box) -> Vector:
        from ml_backend.encoder.checkpoint import load_encoder
        from ml_backend.encoder.embed import embed_boxes

        if self._encoder is None or self._encoder[0] != version:
            folder = ModelRegistry.for_settings(self.settings, self.sessions).intact_path(version)
            self._encoder = (version, load_encoder(folder, device=self.settings.device))
            log.info("loaded encoder %s", version)
        self.stats.add("encoded")
        embedding: Vector = embed_boxes(self._encoder[1], [(rgb, box)])[0]
        return embedding
