"""Pixel xyxy <-> Label Studio's percent xywh, in one place.

Label Studio stores a rectangle as x, y, width, height in percent of the original image, with a
rotation; we store pixel xyxy. Boxes are clipped to the image; rotation is always 0 (the
labeling config does not allow rotating boxes).
"""

from __future__ import annotations

from typing import TypedDict

Box = tuple[float, float, float, float]


class PercentRect(TypedDict):
    x: float
    y: float
    width: float
    height: float
    rotation: float


def to_percent(xyxy: Box, *, width: int, height: int) -> PercentRect:
    x0, y0, x1, y1 = (_clip(v, 0, lim) for v, lim in zip(xyxy, (width, height) * 2, strict=True))
    return PercentRect(
        x=100.0 * x0 / width,
        y=100.0 * y0 / height,
        width=100.0 * (x1 - x0) / width,
        height=100.0 * (y1 - y0) / height,
        rotation=0.0,
    )


def to_pixels(rect: PercentRect, *, width: int, height: int) -> Box:
    if rect.get("rotation", 0.0) not in (0, 0.0):
        raise ValueError(f"rotated boxes are not supported (rotation={rect['rotation']})")
    x0 = _clip(rect["x"], 0, 100) * width / 100
    y0 = _clip(rect["y"], 0, 100) * height / 100
    x1 = _clip(rect["x"] + rect["width"], 0, 100) * width / 100
    y1 = _clip(rect["y"] + rect["height"], 0, 100) * height / 100
    return (x0, y0, x1, y1)


def _clip(value: float, lo: float, hi: float) -> float:
    return min(max(float(value), lo), hi)
