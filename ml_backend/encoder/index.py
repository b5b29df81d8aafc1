"""Similar-lesion search: lesion-box embeddings of one encoder version, ranked by cosine.

Rows are lesion boxes. Confirmed rows (reference labels, accepted reader labels) form the
gallery that answers queries; probe rows (the active detector's top box of each pre-labeled
image, the box a reader sees first) are stored only so that the ML backend and the dashboard
find an image's neighbours without running the encoder. A probe is never returned as a match.

Ranking: distance = 1 - cosine similarity. The query image's own rows are excluded; rows of
the query's lesion (its other views, same lesion key) come first, because the other view of
the very lesion under review is the most useful confirmed lesion a reader can see; the rest
follow by distance, ties by row order. Matches say which kind they are (`same_lesion`).

Where it lives: LABELER_HOME/indexes/<encoder version>/index.npz (`index_file`), not inside
the encoder's registry folder: registry folders are sealed read-only when registered, and the
index grows with every accepted label, so it is rebuilt (`labeler encoder index`) without a
new encoder version. A rebuild writes a temporary file and renames it over the old one, so a
reader sees the old index or the new one, never half of one.

File format: a numpy .npz without pickles (the dashboard reads it with numpy alone, see
dashboards/neighbours.py): `embeddings` N x D float32, `image_id` N int64, `box` N x 4
float64 (pixel xyxy), text columns `origin birads pathology lesion_key patient_key view
dataset source_id` ("" for none), `neighbours` N x GRID int64 row numbers of each row's top
matches (-1 pads) with `neighbour_distance` (NaN pads), and `meta` (JSON: format,
encoder_version, built_at, grid).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from core.birads import Birads, Pathology
from core.errors import BadInputError
from db.lesion_boxes import BoxOrigin

FORMAT = 1
GRID = 9  # neighbours precomputed per row: the dashboard's top-9 grid
TEXT_COLUMNS = (
    "origin",
    "birads",
    "pathology",
    "lesion_key",
    "patient_key",
    "view",
    "dataset",
    "source_id",
)
Vector = npt.NDArray[np.float32]
E = TypeVar("E", Birads, Pathology)


def index_file(home: Path, encoder_version: str) -> Path:
    """Where the index of an encoder version lives (see the module docstring for why)."""
    return home / "indexes" / encoder_version / "index.npz"


@dataclass(frozen=True)
class IndexRow:
    """One lesion box. patient_key is stored for same-patient analyses, never for printing."""

    image_id: int
    box: tuple[float, float, float, float]
    origin: BoxOrigin
    birads: Birads | None = None
    pathology: Pathology | None = None
    lesion_key: str | None = None
    patient_key: str | None = None
    view: str | None = None
    dataset: str = ""
    source_id: str | None = None

    @property
    def confirmed(self) -> bool:
        return self.origin is not BoxOrigin.PREDICTED


@dataclass(frozen=True)
class Match:
    rank: int  # 1 is the best
    row: IndexRow
    distance: float  # 1 - cosine similarity, in [0, 2]
    same_lesion: bool  # another view of the query's own lesion


class IndexFormatError(BadInputError):
    """The file is not an index this code can read (another format version, or corrupt)."""


def unit_rows(embeddings: npt.ArrayLike) -> Vector:
    """Rows scaled to unit L2 norm (the encoder's are already; constructed ones may not be)."""
    z = np.asarray(embeddings, dtype=np.float32)
    if z.ndim != 2:
        raise ValueError(f"embeddings must be N x D, got shape {z.shape}")
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    out: Vector = z / np.clip(norms, 1e-12, None)
    return out


class EmbeddingIndex:
    """Embeddings (unit rows) plus one IndexRow each; `query` searches the confirmed rows."""

    def __init__(
        self, embeddings: npt.ArrayLike, rows: Sequence[IndexRow], *, encoder_version: str
    ) -> None:
        self.embeddings = unit_rows(embeddings)
        if len(rows) != len(self.embeddings):
            raise ValueError(f"{len(rows)} rows for {len(self.embeddings)} embeddings")
        self.rows = tuple(rows)
        self.encoder_version = encoder_version
        self._image_ids = np.array([r.image_id for r in rows], dtype=np.int64)
        self._lesions = np.array([r.lesion_key or "" for r in rows], dtype=str)
        self._gallery = np.array([r.confirmed for r in rows], dtype=bool)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def n_confirmed(self) -> int:
        return int(self._gallery.sum())

    def rows_of(self, image_id: int) -> list[int]:
        """Row numbers of an image's lesion boxes."""
        return [int(i) for i in np.flatnonzero(self._image_ids == image_id)]

    def embedding_of(self, image_id: int, box: Sequence[float]) -> Vector | None:
        """The stored embedding of this image's box (within half a pixel), if there is one."""
        for i in self.rows_of(image_id):
            if np.allclose(self.rows[i].box, box, atol=0.5):
                found: Vector = self.embeddings[i]
                return found
        return None

    def query(
        self,
        embedding: npt.ArrayLike,
        k: int,
        *,
        exclude_image_id: int | None = None,
        lesion_key: str | None = None,
    ) -> list[Match]:
        """The k best confirmed rows for an embedding (see the module docstring's ranking)."""
        order, distance, same = self._rank(embedding, k, exclude_image_id, lesion_key)
        return [
            Match(rank, self.rows[i], float(distance[i]), bool(same[i]))
            for rank, i in enumerate(order, start=1)
        ]

    def _rank(
        self, embedding: npt.ArrayLike, k: int, exclude_image_id: int | None, lesion_key: str | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        q = unit_rows(np.asarray(embedding, dtype=np.float32).reshape(1, -1))[0]
        if len(self) and q.shape[0] != self.embeddings.shape[1]:
            raise ValueError(f"query has {q.shape[0]} dimensions, the index {self.dim}")
        distance = np.clip(1.0 - self.embeddings.astype(np.float64) @ q, 0.0, 2.0)
        same = self._lesions == lesion_key if lesion_key else np.zeros(len(self), dtype=bool)
        candidates = self._gallery & (self._image_ids != exclude_image_id)
        rows = np.flatnonzero(candidates)
        order = rows[np.lexsort((rows, distance[rows], ~same[rows]))][: max(k, 0)]
        return order.astype(np.int64), distance, same

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def neighbours(self, k: int = GRID) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Each row's top-k matches as row numbers (-1 pads) and distances (NaN pads)."""
        index = np.full((len(self), k), -1, dtype=np.int64)
        dist = np.full((len(self), k), np.nan, dtype=np.float32)
        for i, row in enumerate(self.rows):
            order, distance, _ = self._rank(self.embeddings[i], k, row.image_id, row.lesion_key)
            index[i, : len(order)] = order
            dist[i, : len(order)] = distance[order]
        return index, dist

    # --- file -------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write atomically (temporary file, fsync, rename): readers never see half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        neighbours, distance = self.neighbours(GRID)
        meta = {
            "format": FORMAT,
            "encoder_version": self.encoder_version,
            "built_at": datetime.now(UTC).isoformat(),
            "grid": GRID,
        }
        arrays: dict[str, Any] = {
            "embeddings": self.embeddings,
            "image_id": self._image_ids,
            "box": np.array([r.box for r in self.rows], dtype=np.float64).reshape(-1, 4),
            "neighbours": neighbours,
            "neighbour_distance": distance,
            "meta": np.array(json.dumps(meta)),
        }
        for column in TEXT_COLUMNS:
            arrays[column] = np.array([_text(getattr(r, column)) for r in self.rows], dtype=str)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> EmbeddingIndex:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise IndexFormatError(f"{path}: format {meta.get('format')}, expected {FORMAT}")
            text = {c: [_none(v) for v in data[c].tolist()] for c in TEXT_COLUMNS}
            rows = [
                IndexRow(
                    image_id=int(image_id),
                    box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                    origin=BoxOrigin(text["origin"][i] or BoxOrigin.PREDICTED),
                    birads=_enum(Birads, text["birads"][i]),
                    pathology=_enum(Pathology, text["pathology"][i]),
                    lesion_key=text["lesion_key"][i],
                    patient_key=text["patient_key"][i],
                    view=text["view"][i],
                    dataset=text["dataset"][i] or "",
                    source_id=text["source_id"][i],
                )
                for i, (image_id, b) in enumerate(zip(data["image_id"], data["box"], strict=True))
            ]
            return cls(data["embeddings"], rows, encoder_version=meta["encoder_version"])


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _none(value: str) -> str | None:
    return value or None


def _enum(cls: type[E], value: str | None) -> E | None:
    return cls(value) if value else None
