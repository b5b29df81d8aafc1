"""Images for the browser and the thumbnails: the stored PNG with boxes drawn on it.

PNGs are read from LABELER_HOME only (a stored path that leads outside it is refused), and a
missing file gives a grey canvas of the image's size, so boxes still show.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from db.reports.images import BoxSet
from db.schemas import BoxRecord

SOURCE_COLOURS = {
    "reference": (44, 160, 44),
    "model": (255, 127, 14),
    "model (not shown)": (253, 208, 162),  # dashboards.prelabels.HIDDEN: boxes readers never saw
}
SHORT_NAMES = {"reference": "ref"}
READER_COLOURS = ((31, 119, 180), (214, 39, 40), (148, 103, 189), (227, 119, 194), (23, 190, 207))


def png_file(home: Path, png_path: str) -> Path | None:
    """The PNG under `home`, or None when it is missing or its stored path leaves `home`."""
    root = home.resolve()
    path = (root / png_path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def load(home: Path, png_path: str, *, size: tuple[int, int]) -> tuple[Image.Image, bool]:
    """The image as RGB, and whether the PNG was found (else a grey canvas of `size`)."""
    path = png_file(home, png_path)
    if path is None:
        return Image.new("RGB", size, (128, 128, 128)), False
    with Image.open(path) as img:
        return img.convert("RGB"), True


def thumbnail(home: Path, png_path: str, *, edge: int = 200) -> Image.Image | None:
    path = png_file(home, png_path)
    if path is None:
        return None
    with Image.open(path) as img:
        return ImageOps.contain(img.convert("RGB"), (edge, edge))


def colour_of(box_set: BoxSet, readers: Sequence[str]) -> tuple[int, int, int]:
    if box_set.source in SOURCE_COLOURS:
        return SOURCE_COLOURS[box_set.source]
    index = readers.index(box_set.name) if box_set.name in readers else 0
    return READER_COLOURS[index % len(READER_COLOURS)]


def label(box_set: BoxSet, box: BoxRecord) -> str:
    """What is written by a box, short: a model's category and score ('3 0.42'; the colour says
    it is the model's), a reader's name and category ('ana: 4'), 'ref 2' for the reference."""
    category = box.birads.value if box.birads is not None else box_set.birads or "?"
    if box_set.source not in ("reference", "reader"):
        return category if box.score is None else f"{category} {box.score:.2f}"
    name = SHORT_NAMES.get(box_set.source, f"{box_set.name}:")
    return f"{name} {category}"


def draw(image: Image.Image, box_sets: Sequence[BoxSet]) -> Image.Image:
    """Each set's boxes in its colour, each with its `label`."""
    out = image.copy()
    pen = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 250))
    readers = sorted({s.name for s in box_sets if s.source == "reader"})
    for box_set in box_sets:
        colour = colour_of(box_set, readers)
        for box in box_set.boxes:
            x0, y0, x1, y1 = box.xyxy
            pen.rectangle((x0, y0, x1, y1), outline=colour, width=width)
            pen.text((x0 + width, max(0.0, y0 - 12)), label(box_set, box), fill=colour)
    return out
