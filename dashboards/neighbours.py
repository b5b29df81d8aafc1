"""The similar-lesion index, read with numpy alone: dashboards never import ml_backend.

`labeler encoder index` writes LABELER_HOME/indexes/<encoder version>/index.npz with each
row's top-9 matches already ranked (ml_backend/encoder/index.py documents the format and the
ranking), so this module only reads and displays; it never ranks. Lesion and patient keys stay
in the file: only a "same lesion" flag derived from them is kept here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import BadInputError
from dashboards import drawing

FORMAT = 1  # ml_backend.encoder.index.FORMAT; tests build an index there and read it here
ENCODER_KIND = "encoder"  # ml_backend.registry.kinds.ENCODER_KIND
CROP_MARGIN = 0.1  # as the encoder's default crop: box + 10% of its longer side


def index_file(home: Path, encoder_version: str) -> Path:
    return home / "indexes" / encoder_version / "index.npz"


@dataclass(frozen=True)
class Neighbour:
    row: int
    distance: float
    same_lesion: bool


@dataclass(frozen=True)
class NeighbourTable:
    """Columns of the index rows, plus each row's precomputed matches (row numbers)."""

    encoder_version: str
    built_at: str
    image_id: tuple[int, ...]
    box: tuple[tuple[float, float, float, float], ...]
    origin: tuple[str, ...]
    birads: tuple[str, ...]
    pathology: tuple[str, ...]
    source_id: tuple[str, ...]
    neighbours: tuple[tuple[Neighbour, ...], ...]

    def query_rows(self) -> dict[int, int]:
        """Image id -> the row that queries for it: a confirmed box first, else the predicted."""
        rows: dict[int, int] = {}
        for i, (image_id, origin) in enumerate(zip(self.image_id, self.origin, strict=True)):
            if image_id not in rows or (
                origin != "predicted" and self.origin[rows[image_id]] == "predicted"
            ):
                rows[image_id] = i
        return dict(sorted(rows.items()))


class UnreadableIndex(BadInputError):
    pass


def read_table(path: Path) -> NeighbourTable:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != FORMAT:
            raise UnreadableIndex(f"index format {meta.get('format')}; this page reads {FORMAT}")
        lesion = data["lesion_key"].tolist()
        neighbours = tuple(
            tuple(
                Neighbour(int(j), float(d), bool(lesion[i]) and lesion[int(j)] == lesion[i])
                for j, d in zip(rows, dists, strict=True)
                if j >= 0
            )
            for i, (rows, dists) in enumerate(
                zip(data["neighbours"], data["neighbour_distance"], strict=True)
            )
        )
        return NeighbourTable(
            encoder_version=str(meta["encoder_version"]),
            built_at=str(meta.get("built_at", "")),
            image_id=tuple(int(i) for i in data["image_id"]),
            box=tuple((float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in data["box"]),
            origin=tuple(data["origin"].tolist()),
            birads=tuple(data["birads"].tolist()),
            pathology=tuple(data["pathology"].tolist()),
            source_id=tuple(data["source_id"].tolist()),
            neighbours=neighbours,
        )


def lesion_crop(
    home: Path, png_path: str, box: tuple[float, float, float, float], *, edge: int = 160
) -> Image.Image | None:
    """The square window around the box (plus margin), black outside the image, resized."""
    path = drawing.png_file(home, png_path)
    if path is None:
        return None
    x0, y0, x1, y1 = box
    half = max(max(x1 - x0, y1 - y0) * (0.5 + CROP_MARGIN), 1.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    window = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    with Image.open(path) as img:
        patch = img.convert("RGB").crop(window)  # PIL fills outside the image with black
    return patch.resize((edge, edge))


def blank(edge: int = 160) -> Image.Image:
    """A grey square where a crop's PNG is missing, so the grid keeps its shape."""
    return Image.new("RGB", (edge, edge), (128, 128, 128))
