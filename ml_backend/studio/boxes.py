"""Pixel xyxy <-> Label Studio's percent xywh, in one place.

Label Studio stores a rectangle as x, y, width, height in percent of the original image, with a
rotation; we store pixel xyxy. Boxes are clipped to the image; rotation is always 0 (the
labeling config does not allow rotating boxes).

torch and torchvision load on the first conversion, not with this module, so a `labeler sync`
with nothing new to convert starts without them (see ml_backend/evaluation/matching.py).
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
    import torch
    from torchvision.ops import box_convert, clip_boxes_to_image

    clipped = clip_boxes_to_image(torch.tensor([xyxy], dtype=torch.float64), (height, width))
    x, y, w, h = box_convert(clipped, "xyxy", "xywh")[0].tolist()
    return PercentRect(
        x=100.0 * x / width,
        y=100.0 * y / height,
        width=100.0 * w / width,
        height=100.0 * h / height,
        rotation=0.0,
    )


def to_pixels(rect: PercentRect, *, width: int, height: int) -> Box:
    if rect.get("rotation", 0.0) not in (0, 0.0):
        raise ValueError(f"rotated boxes are not supported (rotation={rect['rotation']})")
    import torch
    from torchvision.ops import box_convert, clip_boxes_to_image

    xywh = torch.tensor(
        [[rect["x"], rect["y"], rect["width"], rect["height"]]], dtype=torch.float64
    )
    x0, y0, x1, y1 = clip_boxes_to_image(box_convert(xywh, "xywh", "xyxy"), (100, 100))[0].tolist()
    return (x0 * width / 100, y0 * height / 100, x1 * width / 100, y1 * height / 100)
